//! Health probes of an instance (DESIGN §8): one probe (an HTTP GET, a TCP connect or a
//! command, within the check's timeout), and the watch that runs them at the check's interval:
//! the first pass makes the instance active, and `threshold` failures in a row after it make it
//! unhealthy.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::process;
use crate::domain::{HealthCheck, Probe, human_millis};

/// Probe the instance on `port` every `check.interval_ms` (clamped to 50 ms .. 1 h), calling
/// `on_first_pass` when a probe first passes. Until then failures do not count (the instance is
/// starting); after it, `check.threshold` failures in a row end the watch with why.
pub(super) async fn watch(
    check: &HealthCheck,
    port: u16,
    env: &[(String, String)],
    run_as: Option<&super::user::RunAs>,
    mut on_first_pass: impl FnMut(),
) -> String {
    let mut tick = tokio::time::interval(Duration::from_millis(
        check.interval_ms.clamp(50, 3_600_000),
    ));
    let mut failures = 0u32;
    let mut active = false;
    loop {
        tick.tick().await;
        match probe(check, port, env, run_as).await {
            Ok(()) => {
                failures = 0;
                if !active {
                    active = true;
                    on_first_pass();
                }
            }
            // Until the first pass the instance is starting: failures do not count.
            Err(_) if !active => {}
            Err(why) => {
                failures += 1;
                if failures >= check.threshold.max(1) {
                    return format!("health check failed {failures} times in a row: {why}");
                }
            }
        }
    }
}

/// Why a health probe failed. Its text goes into the instance's health and last exit.
#[derive(Debug, thiserror::Error)]
pub(super) enum ProbeError {
    /// The TCP probe could not connect.
    #[error("tcp connect to port {port}: {source}")]
    Connect {
        /// The instance's port.
        port: u16,
        /// Why not.
        source: std::io::Error,
    },
    /// The HTTP probe could not connect.
    #[error("GET {path} on port {port}: {source}")]
    HttpConnect {
        /// The path asked for.
        path: String,
        /// The instance's port.
        port: u16,
        /// Why not.
        source: std::io::Error,
    },
    /// The HTTP request or its answer broke off.
    #[error("GET {path}: {source}")]
    HttpIo {
        /// The path asked for.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// What came back is not an HTTP status line.
    #[error("GET {path}: not an HTTP answer ('{line}')")]
    NotHttp {
        /// The path asked for.
        path: String,
        /// The first line of the answer (at most 64 bytes).
        line: String,
    },
    /// The answer's status is not 2xx or 3xx.
    #[error("GET {path}: status {code}")]
    Status {
        /// The path asked for.
        path: String,
        /// The HTTP status.
        code: u16,
    },
    /// The command could not be started.
    #[error("exec '{program}': {source}")]
    ExecStart {
        /// The command's program.
        program: String,
        /// Why not.
        source: std::io::Error,
    },
    /// The command did not exit 0.
    #[error("exec '{program}': {exit}")]
    ExecFailed {
        /// The command's program.
        program: String,
        /// How it ended (`exit 1`).
        exit: String,
    },
    /// No answer within the check's timeout.
    #[error("no answer within {}", human_millis(*.timeout_ms))]
    Timeout {
        /// The check's timeout.
        timeout_ms: u64,
    },
}

/// One health probe against the instance on `port`, within the check's timeout; `env` is the
/// environment a command probe gets.
pub(super) async fn probe(
    check: &HealthCheck,
    port: u16,
    env: &[(String, String)],
    run_as: Option<&super::user::RunAs>,
) -> Result<(), ProbeError> {
    let timeout = Duration::from_millis(check.timeout_ms);
    let run = async {
        match &check.probe {
            Probe::Tcp => tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .map(|_| ())
                .map_err(|source| ProbeError::Connect { port, source }),
            Probe::Http(path) => http(path, port).await,
            Probe::Exec(cmd) => exec(cmd, env, run_as).await,
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(ProbeError::Timeout {
            timeout_ms: check.timeout_ms,
        }),
    }
}

/// `GET path` over HTTP/1.0 on `port`: healthy on a 2xx or 3xx status.
async fn http(path: &str, port: u16) -> Result<(), ProbeError> {
    let io = |source| ProbeError::HttpIo {
        path: path.to_string(),
        source,
    };
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|source| ProbeError::HttpConnect {
            path: path.to_string(),
            port,
            source,
        })?;
    s.write_all(
        format!(
            "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: aether-health\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .map_err(io)?;
    // Read the whole answer (HTTP/1.0: until the server closes, at most 64 KiB) so the server
    // never sees its client vanish mid-reply.
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) if head.len() < 65536 => head.extend_from_slice(&buf[..n]),
            Ok(_) => break,
            Err(e) if head.len() >= 12 => {
                tracing::debug!("health check read ended early: {e}");
                break;
            }
            Err(e) => return Err(io(e)),
        }
    }
    let line = String::from_utf8_lossy(&head[..head.len().min(64)]);
    let line = line.lines().next().unwrap_or("");
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| ProbeError::NotHttp {
            path: path.to_string(),
            line: line.trim().to_string(),
        })?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(ProbeError::Status {
            path: path.to_string(),
            code,
        })
    }
}

/// Run `cmd` with the instance's environment `env`, as its user: healthy when it exits 0.
async fn exec(
    cmd: &[String],
    env: &[(String, String)],
    run_as: Option<&super::user::RunAs>,
) -> Result<(), ProbeError> {
    let mut c = tokio::process::Command::new(&cmd[0]);
    if let Some(u) = run_as {
        c.uid(u.uid).gid(u.gid);
    }
    c.args(&cmd[1..])
        .env_clear()
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let st = c.status().await.map_err(|source| ProbeError::ExecStart {
        program: cmd[0].clone(),
        source,
    })?;
    if st.success() {
        Ok(())
    } else {
        Err(ProbeError::ExecFailed {
            program: cmd[0].clone(),
            exit: process::describe(&st),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn check(probe: Probe) -> HealthCheck {
        HealthCheck {
            probe,
            interval_ms: 50,
            timeout_ms: 2000,
            threshold: 2,
        }
    }

    /// A server on a free port that answers every connection with `answer` and closes.
    async fn server(answer: &'static str) -> u16 {
        let l = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                // The whole request first: closing with some of it unread would reset the
                // connection under the answer.
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.ends_with(b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(answer.as_bytes()).await;
                let _ = s.shutdown().await;
            }
        });
        port
    }

    /// A port nothing listens on.
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        l.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn http_probes_pass_on_2xx_and_3xx_and_say_what_else_came() {
        let ok = server("HTTP/1.0 204 No Content\r\n\r\n").await;
        let http = check(Probe::Http("/healthz".into()));
        probe(&http, ok, &[], None).await.unwrap();
        let bad = server("HTTP/1.0 503 Unavailable\r\n\r\n").await;
        let e = probe(&http, bad, &[], None).await.unwrap_err();
        assert!(matches!(e, ProbeError::Status { code: 503, .. }), "{e:?}");
        assert_eq!(e.to_string(), "GET /healthz: status 503");
        let junk = server("hello there\r\n").await;
        assert_eq!(
            probe(&http, junk, &[], None).await.unwrap_err().to_string(),
            "GET /healthz: not an HTTP answer ('hello there')"
        );
        let port = closed_port();
        let e = probe(&http, port, &[], None).await.unwrap_err();
        assert!(matches!(e, ProbeError::HttpConnect { .. }), "{e:?}");
        assert!(
            e.to_string()
                .starts_with(&format!("GET /healthz on port {port}: "))
        );
    }

    #[tokio::test]
    async fn tcp_and_exec_probes() {
        let l = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let open = l.local_addr().unwrap().port();
        probe(&check(Probe::Tcp), open, &[], None).await.unwrap();
        let e = probe(&check(Probe::Tcp), closed_port(), &[], None)
            .await
            .unwrap_err();
        assert!(matches!(e, ProbeError::Connect { .. }), "{e:?}");
        let sh = |script: &str| check(Probe::Exec(vec!["sh".into(), "-c".into(), script.into()]));
        let env = [("PORT".to_string(), "7".to_string())];
        probe(&sh("test \"$PORT\" = 7"), 0, &env, None)
            .await
            .unwrap();
        assert_eq!(
            probe(&sh("exit 3"), 0, &env, None)
                .await
                .unwrap_err()
                .to_string(),
            "exec 'sh': exit 3"
        );
        let mut slow = sh("sleep 5");
        slow.timeout_ms = 100;
        assert_eq!(
            probe(&slow, 0, &env, None).await.unwrap_err().to_string(),
            "no answer within 100ms"
        );
    }

    #[tokio::test]
    async fn the_watch_waits_for_a_first_pass_then_counts_failures_in_a_row() {
        // Fails twice, passes once, then fails for good: the early failures do not count.
        let dir = tempfile::tempdir().unwrap();
        let n = dir.path().join("n");
        let script = format!(
            "n=$(cat {0} 2>/dev/null || echo 0); echo $((n+1)) > {0}; test $n = 2",
            n.display()
        );
        let h = check(Probe::Exec(vec!["sh".into(), "-c".into(), script]));
        let mut passes = 0;
        let why = tokio::time::timeout(
            Duration::from_secs(10),
            watch(&h, 0, &[], None, || passes += 1),
        )
        .await
        .expect("the watch ends within 10 s");
        assert_eq!(passes, 1);
        assert_eq!(
            why,
            "health check failed 2 times in a row: exec 'sh': exit 1"
        );
        let runs: u32 = std::fs::read_to_string(&n).unwrap().trim().parse().unwrap();
        assert_eq!(runs, 5, "2 failures before the pass, the pass, 2 after");
    }
}
