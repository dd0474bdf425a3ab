//! The processes of an instance (DESIGN §8): spawning one in a process group of its own that dies
//! with the daemon, copying its output into its log, signalling and killing its whole group,
//! waiting until the group is gone, and the records in `<data-dir>/run/` through which a
//! restarted daemon kills what its previous run left behind.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Child;
use tokio::task::JoinHandle;

use crate::deploy::logs::LogFile;
use crate::domain::human_millis;

/// Where the process groups of this node's instances are recorded.
pub(super) fn run_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("run")
}

/// The record of `instance`'s process group: `<pgid> <start time>`.
pub(super) fn pid_file(data_dir: &Path, instance: &str) -> PathBuf {
    run_dir(data_dir).join(format!("{}.pgid", instance.replace('/', "_")))
}

/// What `/proc/<pid>/stat` says of a live process (not a zombie).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct ProcStat {
    pub ppid: u32,
    pub pgrp: u32,
    /// Start time in clock ticks since boot.
    pub start: u64,
}

/// [`ProcStat`] of `pid`; `None` when it is gone or a zombie.
pub(super) fn proc_stat(pid: u32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    if *f.first()? == "Z" {
        return None;
    }
    Some(ProcStat {
        ppid: f.get(1)?.parse().ok()?,
        pgrp: f.get(2)?.parse().ok()?,
        start: f.get(19)?.parse().ok()?,
    })
}

/// Kill every process of the groups recorded in `dir` that started no earlier than the group's
/// leader did (so a reused pid or group id is left alone), and forget the records.
pub(super) fn reap_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "pgid") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut it = text.split_whitespace().map(|s| s.parse::<u64>().ok());
        if let (Some(Some(pgid)), Some(Some(start))) = (it.next(), it.next()) {
            let mut killed = Vec::new();
            if let Ok(procs) = std::fs::read_dir("/proc") {
                for p in procs.flatten() {
                    let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok())
                    else {
                        continue;
                    };
                    if let Some(ProcStat {
                        pgrp,
                        start: started,
                        ..
                    }) = proc_stat(pid)
                        && pgrp as u64 == pgid
                        && started >= start
                    {
                        // SAFETY: kill(2) with a pid we just read; no memory is touched.
                        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                        killed.push(pid);
                    }
                }
            }
            if !killed.is_empty() {
                // Gone before anything starts that could need what they held.
                let until = Instant::now() + GROUP_EXIT_LIMIT;
                while killed.iter().any(|p| proc_stat(*p).is_some()) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(10));
                }
                tracing::warn!(
                    "killed {} process(es) left by the previous run of this node (process group {pgid}, {})",
                    killed.len(),
                    path.file_stem().and_then(|s| s.to_str()).unwrap_or("?")
                );
            }
        }
        let _ = std::fs::remove_file(&path);
    }
}

/// `exit 1`, `signal 9 (SIGKILL)`.
pub(super) fn describe(st: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => {
            let name = match s {
                libc::SIGKILL => " (SIGKILL)",
                libc::SIGTERM => " (SIGTERM)",
                libc::SIGSEGV => " (SIGSEGV)",
                libc::SIGABRT => " (SIGABRT)",
                libc::SIGINT => " (SIGINT)",
                _ => "",
            };
            format!("signal {s}{name}")
        }
        _ => "ended".into(),
    }
}

/// How long a SIGKILLed process group may take to be gone before the instance moves on.
pub(super) const GROUP_EXIT_LIMIT: Duration = Duration::from_secs(5);

/// Whether process group `pgid` still has a live process. Usually one syscall says it has
/// none (many instances may stop at once); only when something is left is /proc read, since a
/// zombie nobody reaps (PID 1 of some containers does not) holds nothing.
fn group_exists(pgid: u32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks; no memory is touched.
    if pgid <= 1 || unsafe { libc::kill(-(pgid as i32), 0) } != 0 {
        return false;
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .any(|pid| proc_stat(pid).is_some_and(|s| s.pgrp == pgid))
}

/// Wait until process group `pgid` is gone (SIGKILL lands asynchronously, and its last
/// members are reaped by init), at most `limit`; whether it went.
pub(super) async fn group_gone(pgid: u32, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    loop {
        if !group_exists(pgid) {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Send `sig` to every process of group `pgid` (never to group 0 or 1). Also used by the
/// controller's power commands, which run in a group of their own.
pub fn signal_group(pgid: u32, sig: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) on a process group the caller created; no memory is touched.
        unsafe { libc::kill(-(pgid as i32), sig) };
    }
}

/// Copy one of the child's output streams into its log file.
async fn pump(mut from: impl AsyncRead + Unpin, log: Arc<Mutex<LogFile>>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut l = log.lock().expect("log lock");
                if let Err(e) = l.write(&buf[..n]) {
                    tracing::warn!("instance log write failed: {e}");
                }
            }
        }
    }
}

/// Start `program` with `args` in `work`, in a process group of its own (its pid is the group
/// id), output piped, with exactly `env` (nothing of the daemon's), as `run_as` when given, and
/// with `no_new_privs` (no set-user-id binary gains it privileges), moving itself into the
/// cgroups whose `cgroup.procs` files `join` names before it execs. The child gets SIGKILL when
/// the daemon dies, and exits at once if the daemon is gone already.
pub(super) fn spawn(
    program: &str,
    args: &[String],
    env: &[(String, String)],
    work: &Path,
    run_as: Option<&super::user::RunAs>,
    join: &[PathBuf],
) -> std::io::Result<Child> {
    // Made before the fork: the child only opens and writes them.
    let join: Vec<std::ffi::CString> = join
        .iter()
        .filter_map(|p| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).ok())
        .collect();
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(env.iter().cloned())
        .current_dir(work)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let user = run_as.map(|u| (u.uid, u.gid));
    // SAFETY: only async-signal-safe calls (open, write, close, setgroups, setgid, setuid,
    // prctl, getppid, _exit) between fork and exec.
    let parent = std::process::id() as i32;
    unsafe {
        cmd.pre_exec(move || {
            // Into its cgroup first, while still the node's user (a move on cgroup v2 needs
            // write access to the common ancestor's cgroup.procs, which only root has), so
            // nothing it runs or forks is ever outside its limits. "0": the writer itself.
            // A failure leaves it to the daemon, which moves it in after the spawn.
            for path in &join {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd >= 0 {
                    libc::write(fd, b"0".as_ptr().cast(), 1);
                    libc::close(fd);
                }
            }
            // Then its user: no supplementary groups (when root), its group, its uid.
            if let Some((uid, gid)) = user {
                if libc::geteuid() == 0 && libc::setgroups(0, std::ptr::null()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // After the switch of user, which clears the parent-death signal.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Record the process group `pgid` of `instance` (with its leader's start time, so a reused
/// id is told apart) for a restarted daemon to kill.
pub(super) fn record_group(data_dir: &Path, instance: &str, pgid: u32) {
    if let Some(ProcStat { start, .. }) = proc_stat(pgid) {
        let _ = std::fs::write(pid_file(data_dir, instance), format!("{pgid} {start}\n"));
    }
}

/// Forget the record of `instance`'s process group (it is gone).
pub(super) fn forget_group(data_dir: &Path, instance: &str) {
    let _ = std::fs::remove_file(pid_file(data_dir, instance));
}

/// Copy the child's stdout and stderr into `log`, each on a task of its own.
pub(super) fn capture_output(
    child: &mut Child,
    log: &Arc<Mutex<LogFile>>,
) -> [Option<JoinHandle<()>>; 2] {
    [
        child
            .stdout
            .take()
            .map(|o| tokio::spawn(pump(o, log.clone()))),
        child
            .stderr
            .take()
            .map(|e| tokio::spawn(pump(e, log.clone()))),
    ]
}

/// Stop the child whose group is `pgid`: SIGTERM to the group, SIGKILL after `timeout` (said
/// through `note`), then SIGKILL to whatever is left of the group. How the child ended.
pub(super) async fn terminate(
    child: &mut Child,
    pgid: u32,
    timeout: Duration,
    note: impl Fn(&str),
) -> String {
    signal_group(pgid, libc::SIGTERM);
    let st = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(st)) => describe(&st),
        _ => {
            note(&format!(
                "still running {} after SIGTERM: sending SIGKILL",
                human_millis(timeout.as_millis() as u64)
            ));
            signal_group(pgid, libc::SIGKILL);
            child
                .wait()
                .await
                .map(|s| describe(&s))
                .unwrap_or_else(|e| e.to_string())
        }
    };
    signal_group(pgid, libc::SIGKILL);
    st
}
