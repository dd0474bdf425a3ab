//! Carrying out sleep and wake on the leader: the suspend and resume commands (with the node's
//! name, address and MAC appended, a timeout, and the command's stderr in the error) and the
//! built-in Wake-on-LAN sender.

use std::process::Stdio;
use std::time::Duration;

use crate::domain::Mac;

/// The stderr kept in an error: its last characters.
const STDERR_TAIL: usize = 400;
/// How long stderr is read after the command exited: a process it left in the background may
/// hold stderr open for as long as it runs (`systemctl suspend &`).
const STDERR_AFTER_EXIT: Duration = Duration::from_millis(500);

/// Why a suspend or resume did not happen. The node keeps running whatever the error.
#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    #[error(
        "{key} '{program}' does not exist (set in the [power] section of leader {leader}'s config \
         or by {env}): install it there or correct the path"
    )]
    Missing {
        key: &'static str,
        program: String,
        leader: String,
        env: String,
    },
    #[error("cannot start {key} '{program}': {source}")]
    Start {
        key: &'static str,
        program: String,
        source: std::io::Error,
    },
    #[error("{key} '{program}' failed ({status}){}", tail_text(.stderr))]
    Failed {
        key: &'static str,
        program: String,
        status: String,
        stderr: String,
    },
    #[error(
        "{key} '{program}' did not finish within {timeout} (power.command_timeout) and was killed"
    )]
    TimedOut {
        key: &'static str,
        program: String,
        timeout: String,
    },
    #[error(
        "no MAC address for node '{name}' to wake it with Wake-on-LAN: set power.mac.{name} = \
         \"aa:bb:cc:dd:ee:ff\" or power.resume_command in the leader's config"
    )]
    NoMac { name: String },
    #[error("sending the Wake-on-LAN packet for {mac} to '{to}' failed: {source}")]
    Wol {
        mac: Mac,
        to: String,
        source: std::io::Error,
    },
}

fn tail_text(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

/// Which of the two commands, for errors: its option and its environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Suspend,
    Resume,
}

impl Which {
    /// Its option in the config, e.g. `power.resume_command`.
    pub fn key(self) -> &'static str {
        match self {
            Which::Suspend => "power.suspend_command",
            Which::Resume => "power.resume_command",
        }
    }
}

/// The node a command acts on: its name, address and MAC, appended in that order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub addr: String,
    pub mac: Option<Mac>,
}

/// The full argv: the configured command, then the node's name, address and MAC ("" when
/// unknown), like Slurm's SuspendProgram and ResumeProgram.
pub fn argv(command: &[String], t: &Target) -> Vec<String> {
    let mut out = command.to_vec();
    out.push(t.name.clone());
    out.push(t.addr.clone());
    out.push(t.mac.map(|m| m.to_string()).unwrap_or_default());
    out
}

/// The last [`STDERR_TAIL`] characters of `raw`, trimmed, on one line.
pub fn stderr_tail(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw).trim().replace('\n', " | ");
    let start = text
        .char_indices()
        .rev()
        .nth(STDERR_TAIL - 1)
        .map_or(0, |(i, _)| i);
    text[start..].to_string()
}

/// Run `which`'s command for `t` (leader `leader`) in a process group of its own; the whole
/// group is killed after `timeout`. Its exit decides the result: stderr is read for at most
/// [`STDERR_AFTER_EXIT`] after it, whatever it left running in the background.
pub async fn run(
    which: Which,
    command: &[String],
    t: &Target,
    leader: &str,
    timeout: Duration,
) -> Result<(), PowerError> {
    let argv = argv(command, t);
    let program = argv[0].clone();
    let key = which.key();
    let mut child = match tokio::process::Command::new(&program)
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PowerError::Missing {
                key,
                program,
                leader: leader.to_string(),
                env: crate::config::Config::env_var(key),
            });
        }
        Err(source) => {
            return Err(PowerError::Start {
                key,
                program,
                source,
            });
        }
    };
    let pgid = child.id().unwrap_or(0);
    // Read on a task of its own into a shared buffer, so what came before a background
    // process kept stderr open is still there when the reading is given up.
    let err = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = child.stderr.take().map(|mut s| {
        let err = err.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut chunk = [0u8; 4096];
            while let Ok(n) = s.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                let mut e = err.lock().expect("stderr buffer");
                e.extend_from_slice(&chunk[..n]);
                // Only the tail is ever shown (STDERR_TAIL characters, up to 4 bytes each).
                let keep = STDERR_TAIL * 4;
                if e.len() > 2 * keep {
                    let cut = e.len() - keep;
                    e.drain(..cut);
                }
            }
        })
    });
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Err(_) => {
            crate::deploy::supervisor::signal_group(pgid, libc::SIGKILL);
            let _ = child.kill().await;
            if let Some(r) = reader {
                r.abort();
            }
            return Err(PowerError::TimedOut {
                key,
                program,
                timeout: crate::domain::human_millis(timeout.as_millis() as u64),
            });
        }
        Ok(Err(source)) => {
            return Err(PowerError::Start {
                key,
                program,
                source,
            });
        }
        Ok(Ok(status)) => status,
    };
    // Left running past the grace, the reader drains what a background process still writes
    // (so it never meets a closed pipe) and ends with it.
    if let Some(mut r) = reader {
        let _ = tokio::time::timeout(STDERR_AFTER_EXIT, &mut r).await;
    }
    if status.success() {
        return Ok(());
    }
    let err = std::mem::take(&mut *err.lock().expect("stderr buffer"));
    Err(PowerError::Failed {
        key,
        program,
        status: status.to_string(),
        stderr: stderr_tail(&err),
    })
}

/// A Wake-on-LAN magic packet: six 0xff bytes, then the MAC sixteen times.
pub fn magic_packet(mac: Mac) -> [u8; 102] {
    let mut p = [0xffu8; 102];
    for chunk in p[6..].chunks_exact_mut(6) {
        chunk.copy_from_slice(&mac.0);
    }
    p
}

/// Send the magic packet for `mac` to `to` (UDP, broadcast allowed).
pub async fn wake_on_lan(mac: Mac, to: &str) -> Result<(), PowerError> {
    let err = |source| PowerError::Wol {
        mac,
        to: to.to_string(),
        source,
    };
    let sock = tokio::net::UdpSocket::bind(("0.0.0.0", 0))
        .await
        .map_err(err)?;
    sock.set_broadcast(true).map_err(err)?;
    sock.send_to(&magic_packet(mac), to).await.map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            name: "n4".into(),
            addr: "10.0.0.4:7420".into(),
            mac: Some(Mac([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])),
        }
    }

    /// `sh -c SCRIPT sh`: the appended name, address and MAC are `$1`, `$2`, `$3`.
    fn sh(script: &str) -> Vec<String> {
        ["sh", "-c", script, "sh"].map(String::from).to_vec()
    }

    /// Run `which`'s `cmd` for [`target`] as leader n1.
    async fn run_for_n4(which: Which, cmd: &[String], timeout: Duration) -> Result<(), PowerError> {
        run(which, cmd, &target(), "n1", timeout).await
    }

    #[test]
    fn the_magic_packet_is_six_ff_then_the_mac_sixteen_times() {
        let mac = Mac([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        let p = magic_packet(mac);
        assert_eq!(p.len(), 102);
        assert_eq!(&p[..6], &[0xff; 6]);
        for i in 0..16 {
            assert_eq!(&p[6 + 6 * i..12 + 6 * i], &mac.0, "repetition {i}");
        }
    }

    #[test]
    fn commands_get_name_address_and_mac_appended() {
        let cmd = vec!["/usr/local/sbin/power".to_string(), "off".to_string()];
        assert_eq!(
            argv(&cmd, &target()),
            [
                "/usr/local/sbin/power",
                "off",
                "n4",
                "10.0.0.4:7420",
                "52:54:00:12:34:56"
            ]
        );
        let no_mac = Target {
            mac: None,
            ..target()
        };
        assert_eq!(argv(&cmd, &no_mac)[4], "");
    }

    #[test]
    fn the_stderr_tail_is_the_end_on_one_line() {
        let long = format!("{}\nlast line\n", "x".repeat(1000));
        let t = stderr_tail(long.as_bytes());
        assert_eq!(t.chars().count(), STDERR_TAIL);
        assert!(t.ends_with("x | last line"), "{t}");
        assert_eq!(stderr_tail(b"short\n"), "short");
    }

    #[tokio::test]
    async fn a_missing_program_is_named_with_where_it_is_set() {
        let cmd = vec!["/nonexistent/aether-resume".to_string()];
        let e = run_for_n4(Which::Resume, &cmd, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, PowerError::Missing { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("power.resume_command '/nonexistent/aether-resume' does not exist")
                && text.contains("leader n1's config")
                && text.contains("AETHER_POWER_RESUME_COMMAND"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_failing_command_reports_its_status_and_stderr() {
        let cmd = sh("echo \"no ipmi for $1 at $2\" >&2; exit 3");
        let e = run_for_n4(Which::Suspend, &cmd, Duration::from_secs(5))
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("power.suspend_command 'sh' failed (exit status: 3)")
                && text.ends_with(": no ipmi for n4 at 10.0.0.4:7420"),
            "{text}"
        );
        let ok = vec!["true".to_string()];
        run_for_n4(Which::Suspend, &ok, Duration::from_secs(5))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_command_past_its_timeout_is_killed_and_reported() {
        let cmd = sh("exec sleep 30");
        let e = run_for_n4(Which::Resume, &cmd, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(e, PowerError::TimedOut { .. }), "{e}");
        assert!(e.to_string().contains("power.command_timeout"), "{e}");
    }

    #[tokio::test]
    async fn a_background_process_holding_stderr_does_not_hold_the_result() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        // Like `systemctl suspend &`: the command exits at once, its child keeps stderr.
        let script = format!("sleep 30 & echo $! > '{}'; exit 0", pidfile.display());
        let cmd = sh(&script);
        // Without the bounded read this waits for the sleep and times out.
        let r = run_for_n4(Which::Suspend, &cmd, Duration::from_secs(20)).await;
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Only the process this test started; a success leaves it running.
        // SAFETY: kill(2) on a PID this test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        r.unwrap();
        // A failure still reports what it wrote before exiting.
        let script = format!(
            "sleep 30 & echo $! > '{}'; echo broken >&2; exit 4",
            pidfile.display()
        );
        let cmd = sh(&script);
        let e = run_for_n4(Which::Suspend, &cmd, Duration::from_secs(20))
            .await
            .unwrap_err();
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SAFETY: kill(2) on a PID this test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        assert!(
            matches!(&e, PowerError::Failed { stderr, .. } if stderr == "broken"),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        // A grandchild in the background, and the command itself waiting on it.
        let script = format!("sleep 30 & echo $! > '{}'; wait", pidfile.display());
        let cmd = sh(&script);
        let e = run_for_n4(Which::Resume, &cmd, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(matches!(e, PowerError::TimedOut { .. }), "{e}");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Killed, it is gone once reaped (its parent, killed too, leaves it to init): the
        // state in /proc is a zombie at most, never running or sleeping.
        let gone = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| {
                    s.rsplit_once(')')
                        .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
                })
                .unwrap_or(true)
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !gone() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let alive = !gone();
        if alive {
            // SAFETY: kill(2) on a PID this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        assert!(!alive, "the grandchild {pid} outlived the timeout");
    }
}
