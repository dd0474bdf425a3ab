//! Under systemd (`Type=notify`, `WatchdogSec=`): the node says READY=1 when `/readyz` answers
//! 200, pings the watchdog while it runs, and says STOPPING=1 when SIGTERM stops it.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::harness::*;

/// The service manager's side: the notify socket and every line received on it so far.
struct Manager {
    sock: UnixDatagram,
    seen: Vec<String>,
}

impl Manager {
    /// Receive until a datagram carries the line `want`; panic naming it after `timeout`.
    fn wait_line(&mut self, want: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "timed out after {timeout:?} waiting for '{want}' on NOTIFY_SOCKET; received so far: {:?}",
                    self.seen
                );
            }
            self.sock.set_read_timeout(Some(left)).unwrap();
            match self.sock.recv(&mut buf) {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]).to_string();
                    let hit = text.lines().any(|l| l == want);
                    self.seen.extend(text.lines().map(String::from));
                    if hit {
                        return;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("recv on the notify socket: {e}"),
            }
        }
    }
}

#[test]
fn the_node_tells_systemd_ready_watchdog_and_stopping() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("notify.sock");
    let mut mgr = Manager {
        sock: UnixDatagram::bind(&path).unwrap(),
        seen: Vec::new(),
    };
    let mut n = Node::new(root.path(), "sd1");
    n.env = vec![
        ("NOTIFY_SOCKET".into(), path.display().to_string()),
        ("WATCHDOG_USEC".into(), "2000000".into()),
    ];
    n.start(None);

    mgr.wait_line("READY=1", Duration::from_secs(30));
    assert_eq!(
        n.http_status("/readyz"),
        Some(200),
        "READY=1 is sent only once /readyz answers 200; log:\n{}",
        n.log_text()
    );
    assert!(
        mgr.seen
            .iter()
            .any(|l| l.starts_with("STATUS=role: leader; leader: 'sd1' (id 1); term: ")),
        "the STATUS= line of the role it is ready in comes first: {:?}",
        mgr.seen
    );
    // Pings may have come before READY=1: wait for one after it.
    mgr.seen.clear();
    mgr.wait_line("WATCHDOG=1", Duration::from_secs(10));

    let pid = n.pid().expect("running");
    assert!(pid > 0);
    let st = n.terminate(); // SIGTERM to that pid
    assert!(st.success(), "clean stop; log:\n{}", n.log_text());
    mgr.wait_line("STOPPING=1", Duration::from_secs(5));
}

#[test]
fn without_notify_socket_nothing_is_said() {
    let root = tempfile::tempdir().unwrap();
    let mut n = Node::new(root.path(), "plain");
    n.env = vec![("WATCHDOG_USEC".into(), "2000000".into())];
    n.start(None);
    wait_for("plain is ready", Duration::from_secs(30), || {
        (n.http_status("/readyz") == Some(200)).then_some(())
    });
    assert!(n.terminate().success());
    let log = n.log_text();
    assert!(
        !log.contains("systemd") && !log.contains("NOTIFY_SOCKET"),
        "no word of systemd without NOTIFY_SOCKET; log:\n{log}"
    );
}
