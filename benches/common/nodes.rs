//! Real `aether node` processes on 127.0.0.1 for the benchmarks: start, ask with the CLI, wait.
#![allow(dead_code)]

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The parsed options, or exit 2 with the error (a bad flag is a usage error).
pub fn opts_or_exit<T>(parsed: Result<T>) -> T {
    parsed.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        std::process::exit(2)
    })
}

/// `$AETHER_BIN`, else the release build of this checkout.
pub fn default_aether_bin() -> PathBuf {
    std::env::var_os("AETHER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/aether"))
}

/// Run a benchmark in a fresh temp dir: kept (and named) with `keep`, else removed, also when
/// the run fails, which then exits 1 with the error (`exit` runs no destructors).
pub fn in_temp_dir(name: &str, keep: bool, run: impl FnOnce(&Path) -> Result<()>) {
    let root = tempfile::tempdir().expect("temp dir");
    // Instances run as an unprivileged user when the bench runs as root: they must reach their
    // working dirs below this one.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755))
            .expect("temp dir mode");
    }
    let r = run(root.path());
    if keep {
        eprintln!("kept {}", root.keep().display());
    } else {
        drop(root);
    }
    if let Err(e) = r {
        eprintln!("{name} bench failed: {e:#}");
        std::process::exit(1);
    }
}

/// This program, copied into `root` (0755) for the instances that run it: they run as an
/// unprivileged user (issue 18), who may not reach the build's target dir (e.g. one under a
/// 0700 home).
pub fn instance_exe(root: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dst = root.join("bench-instance");
    if !dst.exists() {
        let me = std::env::current_exe().context("this program's path")?;
        std::fs::copy(&me, &dst).with_context(|| format!("copy {} for instances", me.display()))?;
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(dst)
}

/// Cores to give each of `instances` spread over `nodes` nodes of this machine: `cap`, or less
/// so that all of them fit in 80 % of the cores the nodes offer (each offers all of this
/// machine's). Since issue 18 `resources.cpu` is also a CPU quota, so it must be no smaller
/// than the instance needs, yet the copies must still be placed.
pub fn cpu_per_instance(nodes: usize, instances: usize, cap: f64) -> f64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let share = (0.8 * cores * nodes as f64 / instances.max(1) as f64 * 100.0).floor() / 100.0;
    share.clamp(0.01, cap)
}

/// A clear error when the binary to benchmark is missing.
pub fn check_aether_bin(bin: &Path) -> Result<()> {
    if !bin.exists() {
        bail!(
            "aether binary '{}' not found: run 'cargo build --release' or pass --aether-bin",
            bin.display()
        );
    }
    Ok(())
}

pub fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = udp.local_addr().expect("addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A child process killed on drop.
pub struct Proc {
    pub name: String,
    pub child: Child,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct AetherNode {
    pub proc: Proc,
    pub dir: PathBuf,
    pub quic: u16,
    pub http: u16,
}

pub fn start_node(
    bin: &Path,
    root: &Path,
    name: &str,
    join: Option<(&str, &str)>,
) -> Result<AetherNode> {
    start_node_env(bin, root, name, join, &[])
}

/// [`start_node`] with extra environment variables (`AETHER_*` settings).
pub fn start_node_env(
    bin: &Path,
    root: &Path,
    name: &str,
    join: Option<(&str, &str)>,
    env: &[(&str, &str)],
) -> Result<AetherNode> {
    let (quic, http) = (free_port(), free_port());
    let dir = root.join(name);
    let log = std::fs::File::create(root.join(format!("{name}.log")))?;
    let mut c = Command::new(bin);
    c.args(["node", "--data-dir"])
        .arg(&dir)
        .args(["--name", name, "--listen", &format!("127.0.0.1:{quic}")])
        .args(["--http", &format!("127.0.0.1:{http}")])
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(log.try_clone()?)
        .stderr(log);
    if let Some((addr, token)) = join {
        c.args(["--join", addr, "--token", token]);
    }
    let child = c.spawn().context("start aether node")?;
    Ok(AetherNode {
        proc: Proc {
            name: name.into(),
            child,
        },
        dir,
        quic,
        http,
    })
}

pub fn cli(bin: &Path, node: &AetherNode, args: &[&str]) -> Result<String> {
    let out = Command::new(bin)
        .arg("--data-dir")
        .arg(&node.dir)
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!("aether {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Poll `f` every 100 ms until it gives a value; fail after `timeout`, naming `what`.
pub fn wait_until<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> Result<T> {
    wait_every(what, timeout, Duration::from_millis(100), f)
}

/// [`wait_until`], looking every `every`: a timing is only as fine as its polling.
pub fn wait_every<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(every);
    }
}

/// On Ctrl-C or SIGTERM (watched from a thread of its own): run `then`, then exit 130.
pub fn on_interrupt(then: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        then();
        std::process::exit(130);
    });
}

/// Start `n1` (it founds a cluster), then `n2` and `n3` joining it with one token, and wait
/// until every node's metrics show all three.
pub fn start_three(bin: &Path, root: &Path) -> Result<[AetherNode; 3]> {
    start_three_with(bin, |i, join| {
        start_node(bin, root, &format!("n{}", i + 1), join)
    })
}

/// [`start_three`], each node started by `start` (its index 0..3 and, for n2 and n3, the
/// address and token to join with).
pub fn start_three_with(
    bin: &Path,
    mut start: impl FnMut(usize, Option<(&str, &str)>) -> Result<AetherNode>,
) -> Result<[AetherNode; 3]> {
    let n1 = start(0, None)?;
    wait_until("n1 leads", Duration::from_secs(30), || {
        cli(bin, &n1, &["status"])
            .ok()
            .filter(|s| s.contains("(leader)"))
    })?;
    let token = cli(bin, &n1, &["token", "create", "--uses", "2"])?
        .trim()
        .to_string();
    let addr = format!("127.0.0.1:{}", n1.quic);
    let n2 = start(1, Some((&addr, &token)))?;
    let n3 = start(2, Some((&addr, &token)))?;
    let nodes = [n1, n2, n3];
    wait_until(
        "every node sees three nodes in its metrics",
        Duration::from_secs(60),
        || {
            nodes
                .iter()
                .all(|n| {
                    cli(bin, n, &["metrics", "--output", "json"])
                        .ok()
                        .and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok())
                        .is_some_and(|v| v["nodes"].as_array().is_some_and(|a| a.len() == 3))
                })
                .then_some(())
        },
    )?;
    Ok(nodes)
}
