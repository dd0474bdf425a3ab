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
    mut on_first_pass: impl FnMut(),
) -> String {
    let mut tick = tokio::time::interval(Duration::from_millis(
        check.interval_ms.clamp(50, 3_600_000),
    ));
    let mut failures = 0u32;
    let mut active = false;
    loop {
        tick.tick().await;
        match probe(check, port, env).await {
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

/// One health probe against the instance on `port`.
pub(super) async fn probe(
    check: &HealthCheck,
    port: u16,
    env: &[(String, String)],
) -> Result<(), String> {
    let timeout = Duration::from_millis(check.timeout_ms);
    let run = async {
        match &check.probe {
            Probe::Tcp => tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .map(|_| ())
                .map_err(|e| format!("tcp connect to port {port}: {e}")),
            Probe::Http(path) => {
                let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .map_err(|e| format!("GET {path} on port {port}: {e}"))?;
                s.write_all(
                    format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: aether-health\r\n\r\n")
                        .as_bytes(),
                )
                .await
                .map_err(|e| format!("GET {path}: {e}"))?;
                // Read the whole answer (HTTP/1.0: until the server closes, at most 64 KiB) so
                // the server never sees its client vanish mid-reply.
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
                        Err(e) => return Err(format!("GET {path}: {e}")),
                    }
                }
                let line = String::from_utf8_lossy(&head[..head.len().min(64)]);
                let line = line.lines().next().unwrap_or("");
                let code: u16 = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .ok_or_else(|| format!("GET {path}: not an HTTP answer ('{}')", line.trim()))?;
                if (200..400).contains(&code) {
                    Ok(())
                } else {
                    Err(format!("GET {path}: status {code}"))
                }
            }
            Probe::Exec(cmd) => {
                let mut c = tokio::process::Command::new(&cmd[0]);
                c.args(&cmd[1..])
                    .envs(env.iter().cloned())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .kill_on_drop(true);
                let st = c
                    .status()
                    .await
                    .map_err(|e| format!("exec '{}': {e}", cmd[0]))?;
                if st.success() {
                    Ok(())
                } else {
                    Err(format!("exec '{}': {}", cmd[0], process::describe(&st)))
                }
            }
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer within {}",
            human_millis(check.timeout_ms)
        )),
    }
}
