//! Child processes of the kv benchmark (an Aether node or an etcd member): every one is killed
//! when its owner drops (also while unwinding a panic), and on Ctrl-C through the pid registry;
//! free ports, and polling until a condition holds.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Proc, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Pids of live children, for the Ctrl-C handler.
pub(crate) static PIDS: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// One supervised child process (an Aether node or an etcd member).
pub(crate) struct Daemon {
    pub(crate) name: String,
    program: PathBuf,
    pub(crate) args: Vec<String>,
    log: PathBuf,
    pub(crate) child: Option<Child>,
}

impl Daemon {
    pub(crate) fn new(name: &str, program: &Path, args: Vec<String>, log: PathBuf) -> Daemon {
        Daemon {
            name: name.into(),
            program: program.into(),
            args,
            log,
            child: None,
        }
    }

    /// Start it (again), appending its output to its log file.
    pub(crate) fn start(&mut self) -> Result<()> {
        assert!(self.child.is_none(), "{} is already running", self.name);
        if let Some(dir) = self.log.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open {}", self.log.display()))?;
        let mut cmd = Proc::new(&self.program);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .env("NO_COLOR", "1");
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AETHER_")
                || k.to_string_lossy().starts_with("ETCD")
                || k == "RUST_LOG"
            {
                cmd.env_remove(k);
            }
        }
        // For digging into a run: the nodes' log filter (their logs are in the temp dir).
        if let Some(f) = std::env::var_os("KV_BENCH_NODE_LOG") {
            cmd.env("RUST_LOG", f);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {} ({})", self.name, self.program.display()))?;
        PIDS.lock().unwrap().insert(child.id());
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL and reap. Returns the instant the signal was sent.
    pub(crate) fn kill(&mut self) -> Instant {
        let at = Instant::now();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            PIDS.lock().unwrap().remove(&c.id());
        }
        at
    }

    /// Fail if it exited on its own.
    pub(crate) fn check_alive(&mut self) -> Result<()> {
        if let Some(c) = self.child.as_mut() {
            if let Some(st) = c.try_wait()? {
                PIDS.lock().unwrap().remove(&c.id());
                self.child = None;
                bail!(
                    "{} exited unexpectedly ({st}); last log lines:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
        }
        Ok(())
    }

    /// Whether it was started and has exited since (without reaping it; Linux /proc).
    fn exited(&self) -> bool {
        let Some(c) = self.child.as_ref() else {
            return false;
        };
        match std::fs::read_to_string(format!("/proc/{}/stat", c.id())) {
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
            Err(_) => true,
        }
    }

    /// Fail with its last log lines when it exited.
    pub(crate) fn ensure_running(&self) -> Result<()> {
        if self.exited() {
            return Err(Exited(format!(
                "{} exited unexpectedly; last log lines:\n{}",
                self.name,
                self.log_tail()
            ))
            .into());
        }
        Ok(())
    }

    pub(crate) fn log_tail(&self) -> String {
        let Ok(mut f) = File::open(&self.log) else {
            return "(no log)".into();
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(3000)));
        let mut s = String::new();
        let _ = f.read_to_string(&mut s);
        s.lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .map(|l| format!("    {l}\n"))
            .collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Free ports on 127.0.0.1, never the same one twice in this run.
pub(crate) struct Ports(pub(crate) BTreeSet<u16>);

impl Ports {
    pub(crate) fn tcp(&mut self) -> Result<u16> {
        for _ in 0..100 {
            let p = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            if self.0.insert(p) {
                return Ok(p);
            }
        }
        bail!("no free TCP port found on 127.0.0.1")
    }

    pub(crate) fn udp(&mut self) -> Result<u16> {
        for _ in 0..100 {
            let p = UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port();
            if self.0.insert(p) {
                return Ok(p);
            }
        }
        bail!("no free UDP port found on 127.0.0.1")
    }
}

/// A child process died: waiting longer is pointless.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Exited(String);

/// Poll `f` every `every` until it returns `Some`, failing with `what` and the last reason after
/// `timeout`.
pub(crate) async fn wait_for<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut f: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer yet");
    loop {
        match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) if e.is::<Exited>() => {
                return Err(e.context(format!("while waiting until {what}")));
            }
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting until {what} (last: {last})");
        }
        tokio::time::sleep(every).await;
    }
}
