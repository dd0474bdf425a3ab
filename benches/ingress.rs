//! Ingress benchmark: Aether's ingress against HAProxy, proxying to the same backend instance,
//! all on this machine's loopback.
//!
//! Two real Aether nodes (release build) run a one-slice blueprint whose instance is this very
//! program in backend mode (`--backend PORT`: a hyper HTTP/1.1 server on one tokio thread
//! answering 200 "ok"), supervised by Aether. The node that runs it is the "local" path (its
//! ingress forwards over pooled TCP), the other node the "remote" path (its ingress forwards
//! through the first node over QUIC, route 4). HAProxy (`mode http`, `nbthread 1`, keep-alive
//! and connection reuse to the server, `option forwardfor` like Aether's X-Forwarded-*) points
//! at the same instance's 127.0.0.1 port. Four targets: direct (no proxy), HAProxy, Aether
//! local, Aether remote. Three parts:
//!
//! 1. Saturation: `wrk -t1 -cN` closed loop against each target; the proxy's CPU time
//!    (utime + stime of its processes; both nodes for the remote path) over the run gives
//!    requests/s per proxy core, and Aether / HAProxy per core.
//! 2. Fixed rate: an open-loop generator here (one thread per keep-alive connection, each on
//!    its share of one evenly spaced schedule) at half of HAProxy's measured maximum; a
//!    request's latency runs from its scheduled send time when its connection was still busy
//!    then (no coordinated omission), else from its actual send (a late timer wake-up is the
//!    generator's, not the proxy's). p50/p99 per target and the added latency over direct.
//!    Then the same at a light load (default 1,000 requests/s): the proxies' own latency
//!    without queueing, where half of HAProxy's maximum is near another path's saturation.
//! 3. Idle connections: N client connections (default 1,000) to each proxy, each sends one
//!    request, reads the answer and stays open; the proxy's RSS before and after.
//!
//! Run it with `scripts/bench/ingress.sh` (or `cargo bench --bench ingress -- --help`).

#[path = "common/http.rs"]
mod http;
#[path = "common/nodes.rs"]
mod nodes;
#[path = "common/procstat.rs"]
mod procstat;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use hdrhistogram::Histogram;

use http::{connect, parse_response};
use nodes::{AetherNode, Proc, cli, start_node_env, wait_until};
use procstat::{alive, cpu_time, status_bytes};

const USAGE: &str = "\
ingress benchmark: Aether's ingress (local and remote through QUIC) vs HAProxy, same backend

usage: cargo bench --bench ingress -- [options]

  --aether-bin PATH       aether binary [env AETHER_BIN; default target/release/aether]
  --haproxy-bin PATH      haproxy (Debian haproxy) [env HAPROXY_BIN; default haproxy]
  --wrk-bin PATH          wrk (Debian wrk) [env WRK_BIN; default wrk]
  --secs N                measured seconds per target, saturation and fixed rate [5]
  --warmup N              warm-up seconds before each measured run [1]
  --connections N         wrk connections at saturation (one wrk thread) [32]
  --rate N                fixed rate in requests/s [half of HAProxy's measured maximum]
  --rate-connections N    keep-alive connections of the fixed-rate generator [16]
  --light-rate N          a second fixed-rate run at this light load, no goals; 0: none [1000]
  --idle N                idle client connections per proxy [1000]
  --only PARTS            comma-separated: saturation, rate, idle [all]
  --hold N                after start-up, print the targets and pids and wait N seconds before
                          the parts (to profile or load them by hand) [0]
  --keep                  keep the temp dir (data dirs, logs, haproxy.cfg)
  -h, --help              this text

Two other modes: --backend PORT (the blueprint's command: the backend on 127.0.0.1:PORT), and
--load ADDR RATE CONNECTIONS SECS (the fixed-rate generator alone against host:port ADDR, for
runs by hand, e.g. with --hold).
";

struct Opts {
    aether_bin: PathBuf,
    haproxy_bin: PathBuf,
    wrk_bin: PathBuf,
    secs: u64,
    warmup: u64,
    connections: u32,
    rate: Option<f64>,
    rate_connections: usize,
    light_rate: f64,
    idle: usize,
    saturation: bool,
    fixed_rate: bool,
    idle_part: bool,
    hold: u64,
    keep: bool,
}

fn parse_opts() -> Result<Opts> {
    let env_or = |k: &str, d: &str| std::env::var_os(k).map_or_else(|| d.into(), PathBuf::from);
    let mut o = Opts {
        aether_bin: nodes::default_aether_bin(),
        haproxy_bin: env_or("HAPROXY_BIN", "haproxy"),
        wrk_bin: env_or("WRK_BIN", "wrk"),
        secs: 5,
        warmup: 1,
        connections: 32,
        rate: None,
        rate_connections: 16,
        light_rate: 1000.0,
        idle: 1000,
        saturation: true,
        fixed_rate: true,
        idle_part: true,
        hold: 0,
        keep: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or_else(|| anyhow!("{name} needs a value"));
        match a.as_str() {
            "--aether-bin" => o.aether_bin = val(&a)?.into(),
            "--haproxy-bin" => o.haproxy_bin = val(&a)?.into(),
            "--wrk-bin" => o.wrk_bin = val(&a)?.into(),
            "--secs" => o.secs = val(&a)?.parse().context("--secs")?,
            "--warmup" => o.warmup = val(&a)?.parse().context("--warmup")?,
            "--connections" => o.connections = val(&a)?.parse().context("--connections")?,
            "--rate" => o.rate = Some(val(&a)?.parse().context("--rate")?),
            "--rate-connections" => {
                o.rate_connections = val(&a)?.parse().context("--rate-connections")?
            }
            "--light-rate" => o.light_rate = val(&a)?.parse().context("--light-rate")?,
            "--idle" => o.idle = val(&a)?.parse().context("--idle")?,
            "--only" => {
                let v = val(&a)?;
                (o.saturation, o.fixed_rate, o.idle_part) = (false, false, false);
                for part in v.split(',') {
                    match part.trim() {
                        "saturation" => o.saturation = true,
                        "rate" => o.fixed_rate = true,
                        "idle" => o.idle_part = true,
                        other => bail!(
                            "--only takes saturation, rate and idle (comma-separated), found '{other}'"
                        ),
                    }
                }
            }
            "--hold" => o.hold = val(&a)?.parse().context("--hold")?,
            "--keep" => o.keep = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            other => bail!("unknown option '{other}'\n\n{USAGE}"),
        }
    }
    if o.secs == 0 || o.connections == 0 || o.rate_connections == 0 {
        bail!("--secs, --connections and --rate-connections must be at least 1");
    }
    if o.rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
        bail!("--rate must be positive");
    }
    if o.light_rate.is_nan() || o.light_rate < 0.0 {
        bail!("--light-rate must be 0 or more");
    }
    nodes::check_aether_bin(&o.aether_bin)?;
    Ok(o)
}

// ---------------------------------------------------------------------------------------------
// The backend

/// `--backend PORT`: answer every request with 200 "ok" on 127.0.0.1:PORT, HTTP/1.1 keep-alive,
/// one tokio thread. Exits when its parent (the Aether node) is gone.
fn backend(port: u16) -> ! {
    use http_body_util::Full;
    use hyper::body::Bytes;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the backend port");
        // An orphan (the node was killed) stops too.
        // SAFETY: getppid has no preconditions.
        let parent = unsafe { libc::getppid() };
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                // SAFETY: as above.
                if unsafe { libc::getppid() } != parent {
                    std::process::exit(0);
                }
            }
        });
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        Bytes::from_static(b"ok"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    std::process::exit(0)
}

// ---------------------------------------------------------------------------------------------
// Processes: every child is killed at the end, on an error and on Ctrl-C / SIGTERM.

/// Pids of the processes this run started (nodes, HAProxy, wrk, the instance).
static PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
/// The temp dir, removed on Ctrl-C / SIGTERM too (unless --keep).
static ROOT: Mutex<Option<PathBuf>> = Mutex::new(None);

fn register(pid: u32) {
    PIDS.lock().expect("pids").push(pid);
}

fn unregister(pid: u32) {
    PIDS.lock().expect("pids").retain(|p| *p != pid);
}

/// The parent pid of `pid`, from /proc.
fn parent_of(pid: u32) -> Option<u32> {
    let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    st.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Whether `pid` is a live descendant of this process (a registered pid that ended may have
/// been reused by someone else's process).
fn ours(pid: u32) -> bool {
    let me = std::process::id();
    let mut p = pid;
    for _ in 0..4 {
        match parent_of(p) {
            Some(pp) if pp == me => return alive(pid),
            Some(pp) if pp > 1 => p = pp,
            _ => return false,
        }
    }
    false
}

/// SIGKILL every registered process that still runs as a descendant of this one.
fn kill_all() {
    let pids = PIDS.lock().expect("pids").clone();
    // The instance (a grandchild) first, while its node still runs: afterwards it would be an
    // orphan no longer known as ours.
    for pid in pids.iter().rev() {
        if ours(*pid) {
            // SAFETY: kill(2) of a live descendant this run started.
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
    }
}

/// Kill what this run started and remove its temp dir (Ctrl-C / SIGTERM).
fn kill_all_and_root() {
    kill_all();
    if let Some(root) = ROOT.lock().expect("root").take() {
        // The processes are gone once reaped; give the kernel a moment.
        std::thread::sleep(Duration::from_millis(200));
        let _ = std::fs::remove_dir_all(root);
    }
    eprintln!("interrupted: stopped every process this run started");
}

/// Kills the instance (a grandchild: the node's SIGKILL would leave it running) on drop.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if ours(self.0) {
            // SAFETY: kill(2) of the instance this run's node started.
            unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
        }
    }
}

fn fd_limit() -> u64 {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit on a valid struct.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) };
    l.rlim_cur
}

/// A port free on 127.0.0.1 and on every address in `also`.
fn free_port_on(also: &[IpAddr]) -> u16 {
    loop {
        let p = nodes::free_port();
        if also.iter().all(|ip| TcpListener::bind((*ip, p)).is_ok()) {
            return p;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client: one request at a time on a keep-alive connection.

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";

/// Read one response (Content-Length or chunked) into `buf` (blocking); its status.
fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    buf.clear();
    let mut tmp = [0u8; 4096];
    loop {
        if let Some((status, ..)) = parse_response(buf)? {
            return Ok(status);
        }
        let n = s.read(&mut tmp)?;
        if n == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

/// One GET / on a new connection; its status.
fn get_once(addr: SocketAddr) -> Option<u16> {
    let mut s = connect(addr).ok()?;
    s.write_all(REQUEST).ok()?;
    read_response(&mut s, &mut Vec::new()).ok()
}

// ---------------------------------------------------------------------------------------------
// The cluster, the instance and HAProxy

/// Node i binds its service ports on its own loopback address.
const NODE_IPS: [Ipv4Addr; 2] = [Ipv4Addr::new(127, 0, 0, 41), Ipv4Addr::new(127, 0, 0, 42)];

struct Setup {
    /// First: dropped (killed) while its node still runs.
    _instance: KillOnDrop,
    nodes: Vec<AetherNode>,
    /// Index in `nodes` of the node that runs the instance.
    local: usize,
    backend: SocketAddr,
    backend_pid: u32,
    service_port: u16,
}

fn node_addr(i: usize, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(NODE_IPS[i]), port)
}

fn start_cluster(o: &Opts, root: &Path) -> Result<Setup> {
    let env = |i: usize| -> Vec<(&'static str, String)> {
        vec![
            ("AETHER_INGRESS_BIND", NODE_IPS[i].to_string()),
            // A fixed topology: one instance, no scaling decisions during the runs.
            ("AETHER_CONTROLLER_ENABLED", "false".into()),
        ]
    };
    let start = |i: usize, name: &str, join: Option<(&str, &str)>| -> Result<AetherNode> {
        let e = env(i);
        let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let n = start_node_env(&o.aether_bin, root, name, join, &e)?;
        register(n.proc.pid());
        Ok(n)
    };
    let n1 = start(0, "n1", None)?;
    wait_until("n1 leads", Duration::from_secs(30), || {
        cli(&o.aether_bin, &n1, &["status"])
            .ok()
            .filter(|s| s.contains("(leader)"))
    })?;
    let token = cli(&o.aether_bin, &n1, &["token", "create"])?
        .trim()
        .to_string();
    let n2 = start(1, "n2", Some((&format!("127.0.0.1:{}", n1.quic), &token)))?;
    let nodes = vec![n1, n2];
    wait_until(
        "both nodes see two nodes in their metrics",
        Duration::from_secs(60),
        || {
            nodes
                .iter()
                .all(|n| {
                    cli(&o.aether_bin, n, &["metrics", "--output", "json"])
                        .ok()
                        .and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok())
                        .is_some_and(|v| v["nodes"].as_array().is_some_and(|a| a.len() == 2))
                })
                .then_some(())
        },
    )?;

    let service_port = free_port_on(&NODE_IPS.map(IpAddr::V4));
    let exe = nodes::instance_exe(root)?;
    // Since issue 18 resources are limits too: the default 0.1 cores would throttle the
    // backend under wrk's load, so it gets all of its node's cores (as before, unlimited), and
    // memory for its many connections.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let file = root.join("bench.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"bench\"\n\n[[slices]]\nname = \"web\"\ncommand = [{:?}, \"--backend\", \"${{PORT}}\"]\n\
             instances = 1\nmin = 1\nmax = 1\nresources = {{ cpu = {cores:?}, memory = \"512MiB\" }}\n\n[slices.health]\nhttp = \"/\"\ninterval = \"1s\"\n\n\
             [slices.service]\nport = {service_port}\n",
            exe.display().to_string()
        ),
    )?;
    cli(
        &o.aether_bin,
        &nodes[0],
        &["blueprint", "apply", file.to_str().context("temp path")?],
    )?;
    let (node_name, port, pid) = wait_until(
        "the instance is active and passing its health check",
        Duration::from_secs(60),
        || {
            let out = cli(
                &o.aether_bin,
                &nodes[0],
                &["blueprint", "show", "bench", "--output", "json"],
            )
            .ok()?;
            let v: serde_json::Value = serde_json::from_str(&out).ok()?;
            let rows = v[0]["instances"].as_array()?;
            let r = rows.first()?;
            (rows.len() == 1 && r["state"] == "active" && r["health"] == "passing").then(|| {
                (
                    r["node"].as_str().unwrap_or_default().to_string(),
                    r["port"].as_u64().unwrap_or(0) as u16,
                    r["pid"].as_u64().unwrap_or(0) as u32,
                )
            })
        },
    )?;
    if port == 0 || pid == 0 {
        bail!("blueprint show gave no port or pid for the instance");
    }
    register(pid);
    let local = match node_name.as_str() {
        "n1" => 0,
        "n2" => 1,
        other => bail!("the instance runs on an unknown node '{other}'"),
    };
    let backend = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    for (i, n) in nodes.iter().enumerate() {
        let addr = node_addr(i, service_port);
        wait_until(
            &format!("{}'s ingress ({addr}) answers 200", n.proc.name),
            Duration::from_secs(30),
            || (get_once(addr) == Some(200)).then_some(()),
        )?;
    }
    Ok(Setup {
        _instance: KillOnDrop(pid),
        nodes,
        local,
        backend,
        backend_pid: pid,
        service_port,
    })
}

fn start_haproxy(o: &Opts, root: &Path, backend: SocketAddr) -> Result<(Proc, SocketAddr)> {
    let port = nodes::free_port();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let cfg = root.join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n    nbthread 1\n    maxconn {maxconn}\n\n\
             defaults\n    mode http\n    option http-keep-alive\n    option forwardfor\n    \
             http-reuse always\n    timeout connect 5s\n    timeout client 120s\n    \
             timeout server 120s\n    timeout http-keep-alive 120s\n\n\
             frontend bench\n    bind {addr}\n    \
             http-request set-header X-Forwarded-Proto http\n    default_backend instance\n\n\
             backend instance\n    server instance {backend}\n",
            maxconn = o.idle + 1024,
        ),
    )?;
    let log = root.join("haproxy.log");
    let child = Command::new(&o.haproxy_bin)
        .arg("-db")
        .arg("-f")
        .arg(&cfg)
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::create(root.join("haproxy.err"))?)
        .spawn()
        .with_context(|| format!("start '{}' (Debian: haproxy)", o.haproxy_bin.display()))?;
    register(child.id());
    let mut p = Proc {
        name: "haproxy".into(),
        child,
    };
    let r = wait_until("HAProxy answers 200", Duration::from_secs(15), || {
        if let Ok(Some(st)) = p.child.try_wait() {
            return Some(Err(anyhow!(
                "haproxy exited ({st}): {}",
                std::fs::read_to_string(root.join("haproxy.err")).unwrap_or_default()
            )));
        }
        (get_once(addr) == Some(200)).then_some(Ok(()))
    });
    r??;
    Ok((p, addr))
}

// ---------------------------------------------------------------------------------------------
// Targets

struct Target {
    name: &'static str,
    addr: SocketAddr,
    /// The proxy's processes (CPU); empty for the direct path.
    proxy: Vec<u32>,
}

// ---------------------------------------------------------------------------------------------
// Part 1: saturation with wrk

struct WrkRun {
    rps: f64,
    errors: u64,
    non2xx: u64,
    p50_ms: f64,
    p99_ms: f64,
    proxy_cores: f64,
    backend_cores: f64,
}

/// A wrk duration figure (`812.00us`, `1.20ms`, `2.00s`) in ms.
fn wrk_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("m") {
        (n, 60_000.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * mult)
}

fn run_wrk(o: &Opts, t: &Target, backend_pid: u32, secs: u64) -> Result<WrkRun> {
    let child = Command::new(&o.wrk_bin)
        .args([
            "-t1",
            &format!("-c{}", o.connections),
            &format!("-d{secs}s"),
        ])
        .args(["--latency", "--timeout", "5s"])
        .arg(format!("http://{}/", t.addr))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start '{}' (Debian: wrk)", o.wrk_bin.display()))?;
    register(child.id());
    let (c0, b0, t0) = (cpu_time(&t.proxy), cpu_time(&[backend_pid]), Instant::now());
    let pid = child.id();
    let out = child.wait_with_output();
    unregister(pid);
    let out = out?;
    let (c1, b1, wall) = (
        cpu_time(&t.proxy),
        cpu_time(&[backend_pid]),
        t0.elapsed().as_secs_f64(),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "wrk against {}: {}{}",
            t.name,
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let field = |prefix: &str| -> Option<&str> {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
    };
    let rps: f64 = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no Requests/sec in wrk's output:\n{text}"))?;
    let non2xx = field("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // "Socket errors: connect 0, read 0, write 0, timeout 0"
    let errors = field("Socket errors:")
        .map(|v| {
            v.split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    let pct = |p: &str| field(p).and_then(wrk_ms).unwrap_or(f64::NAN);
    Ok(WrkRun {
        rps,
        errors,
        non2xx,
        p50_ms: pct("50%"),
        p99_ms: pct("99%"),
        proxy_cores: (c1 - c0).as_secs_f64() / wall,
        backend_cores: (b1 - b0).as_secs_f64() / wall,
    })
}

/// Requests/s per proxy core at saturation, per target (NaN for direct).
fn saturation(o: &Opts, targets: &[Target], backend_pid: u32) -> Result<Vec<WrkRun>> {
    println!(
        "== saturation: wrk -t1 -c{} closed loop, {} s per target after {} s warm-up ==",
        o.connections, o.secs, o.warmup
    );
    println!(
        "{:<14} {:>10} {:>12} {:>16} {:>14} {:>9} {:>9} {:>8}",
        "target",
        "req/s",
        "proxy cores",
        "req/s per core",
        "backend cores",
        "p50 ms",
        "p99 ms",
        "errors"
    );
    let mut runs = Vec::new();
    for t in targets {
        if o.warmup > 0 {
            run_wrk(o, t, backend_pid, o.warmup)?;
        }
        let r = run_wrk(o, t, backend_pid, o.secs)?;
        let per_core = if t.proxy.is_empty() {
            "-".to_string()
        } else {
            format!("{:.0}", r.rps / r.proxy_cores.max(1e-9))
        };
        println!(
            "{:<14} {:>10.0} {:>12} {:>16} {:>14.2} {:>9.3} {:>9.3} {:>8}",
            t.name,
            r.rps,
            if t.proxy.is_empty() {
                "-".to_string()
            } else {
                format!("{:.2}", r.proxy_cores)
            },
            per_core,
            r.backend_cores,
            r.p50_ms,
            r.p99_ms,
            r.errors + r.non2xx
        );
        runs.push(r);
    }
    Ok(runs)
}

// ---------------------------------------------------------------------------------------------
// Part 2: fixed rate, open loop

struct RateRun {
    hist: Histogram<u64>,
    sent: u64,
    errors: u64,
    /// Requests that found every connection busy at their scheduled time.
    behind: u64,
    secs: f64,
}

/// CLOCK_MONOTONIC in ns (the timerfd's clock).
fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A file descriptor closed on drop.
struct Fd(i32);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: closing a descriptor this struct owns.
        unsafe { libc::close(self.0) };
    }
}

fn check(r: i32, what: &str) -> Result<i32> {
    if r < 0 {
        bail!("{what}: {}", std::io::Error::last_os_error());
    }
    Ok(r)
}

/// Arm `timer` to fire at `at` (CLOCK_MONOTONIC ns; 0 disarms) and every `every` ns after.
fn set_timer(timer: &Fd, at: u64, every: u64) -> Result<()> {
    let ts = |ns: u64| libc::timespec {
        tv_sec: (ns / 1_000_000_000) as i64,
        tv_nsec: (ns % 1_000_000_000) as i64,
    };
    let spec = libc::itimerspec {
        it_interval: ts(every),
        it_value: ts(at),
    };
    // SAFETY: a valid timerfd and spec.
    check(
        unsafe {
            libc::timerfd_settime(
                timer.0,
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        },
        "timerfd_settime",
    )?;
    Ok(())
}

/// One keep-alive connection of the generator.
struct Conn {
    s: TcpStream,
    /// The request on it now: its latency's start, and whether it is measured.
    busy: Option<(u64, bool)>,
    buf: Vec<u8>,
}

const TIMER: u64 = u64::MAX;

fn watch(ep: &Fd, fd: i32, data: u64) -> Result<()> {
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: data,
    };
    // SAFETY: a valid epoll fd, a live fd and an event struct.
    check(
        unsafe { libc::epoll_ctl(ep.0, libc::EPOLL_CTL_ADD, fd, &mut ev) },
        "epoll_ctl",
    )?;
    Ok(())
}

fn open_conn(ep: &Fd, addr: SocketAddr, i: usize) -> Result<Conn> {
    let s = connect(addr)?;
    s.set_nonblocking(true)?;
    watch(ep, s.as_raw_fd(), i as u64)?;
    Ok(Conn {
        s,
        busy: None,
        buf: Vec::with_capacity(1024),
    })
}

/// The open-loop generator, on one thread (epoll over the connections and a periodic timerfd
/// that ticks at each send, so sends are neither held to a coarse timer nor bunched): request
/// `i` is due at `t0 + i / rate` and goes on a free connection (the most recently freed one). Its latency
/// runs from its actual send when a connection was free when it fell due, else from the time
/// it fell due (it queued behind busy connections: no coordinated omission).
fn open_loop(addr: SocketAddr, rate: f64, conns: usize, warmup: u64, secs: u64) -> Result<RateRun> {
    // SAFETY: plain syscalls creating descriptors owned by `Fd`.
    let ep = Fd(check(
        unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) },
        "epoll_create1",
    )?);
    let timer = Fd(check(
        unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        },
        "timerfd_create",
    )?);
    watch(&ep, timer.0, TIMER)?;
    let mut cs: Vec<Conn> = (0..conns)
        .map(|i| open_conn(&ep, addr, i))
        .collect::<Result<_>>()?;
    let mut free: Vec<usize> = (0..conns).rev().collect();

    let mut hist = Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3)?;
    let (mut sent, mut errors, mut behind) = (0u64, 0u64, 0u64);
    let t0 = mono_ns() + 100_000_000;
    let measure_from = t0 + warmup * 1_000_000_000;
    let end = measure_from + secs * 1_000_000_000;
    // Whole nanoseconds between sends: the timer ticks on exactly the schedule.
    let period = ((1e9 / rate) as u64).max(1);
    let total = (end - t0) / period;
    let due = |i: u64| t0 + i * period;
    set_timer(&timer, t0, period)?;
    let mut armed = true;
    // Requests due and not yet sent: (due, the pass that found it due).
    let mut backlog: std::collections::VecDeque<(u64, u64)> = Default::default();
    let mut next = 0u64;
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; conns + 1];
    let give_up = end + 10_000_000_000;
    for pass in 0u64.. {
        let now = mono_ns();
        if now > give_up {
            // Unanswered for 10 s after the end: count them and stop.
            errors += cs.iter().filter(|c| c.busy.is_some_and(|(_, m)| m)).count() as u64;
            break;
        }
        while next < total && due(next) <= now {
            backlog.push_back((due(next), pass));
            next += 1;
        }
        while !backlog.is_empty() {
            let Some(ci) = free.pop() else { break };
            let (at, found) = backlog.pop_front().expect("not empty");
            let measured = at >= measure_from;
            // Found due in this pass with a connection free: sent now.
            let from = if found == pass {
                mono_ns()
            } else {
                if measured {
                    behind += 1;
                }
                at
            };
            if measured {
                sent += 1;
            }
            let c = &mut cs[ci];
            match c.s.write(REQUEST) {
                Ok(n) if n == REQUEST.len() => c.busy = Some((from, measured)),
                _ => {
                    errors += measured as u64;
                    cs[ci] = open_conn(&ep, addr, ci)?;
                    free.push(ci);
                }
            }
        }
        if next >= total && backlog.is_empty() && free.len() == conns {
            break;
        }
        if next >= total && armed {
            set_timer(&timer, 0, 0)?;
            armed = false;
        }
        // SAFETY: a valid epoll fd and a buffer of `events.len()` events.
        let n = unsafe { libc::epoll_wait(ep.0, events.as_mut_ptr(), events.len() as i32, 1000) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            bail!("epoll_wait: {e}");
        }
        for ev in &events[..n as usize] {
            let data = ev.u64;
            if data == TIMER {
                let mut b = [0u8; 8];
                // SAFETY: reading the expiry count into an 8-byte buffer.
                unsafe { libc::read(timer.0, b.as_mut_ptr().cast(), 8) };
                continue;
            }
            let ci = data as usize;
            let c = &mut cs[ci];
            let mut tmp = [0u8; 4096];
            let mut broken = false;
            loop {
                match c.s.read(&mut tmp) {
                    Ok(0) => {
                        broken = true;
                        break;
                    }
                    Ok(k) => {
                        c.buf.extend_from_slice(&tmp[..k]);
                        // One request at a time: a complete response is all there is to read.
                        if matches!(parse_response(&c.buf), Ok(Some(_)) | Err(_)) {
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        broken = true;
                        break;
                    }
                }
            }
            let done = mono_ns();
            match parse_response(&c.buf) {
                Ok(Some((status, _, len, _))) if !broken || c.buf.len() >= len => {
                    c.buf.drain(..len);
                    if let Some((from, measured)) = c.busy.take()
                        && measured
                    {
                        if status == 200 {
                            hist.saturating_record(done - from);
                        } else {
                            errors += 1;
                        }
                    }
                    if broken {
                        cs[ci] = open_conn(&ep, addr, ci)?;
                    }
                    free.push(ci);
                }
                Ok(None) if !broken => {}
                _ => {
                    // Broken off or garbled: a new connection.
                    if let Some((_, true)) = c.busy {
                        errors += 1;
                    }
                    let was_busy = c.busy.is_some();
                    cs[ci] = open_conn(&ep, addr, ci)?;
                    if was_busy {
                        free.push(ci);
                    }
                }
            }
        }
    }
    Ok(RateRun {
        hist,
        sent,
        errors,
        behind,
        secs: (end - measure_from) as f64 / 1e9,
    })
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// The fixed-rate part at `rate`; `maxima`: each target's saturation req/s, when measured (a
/// row at or past 90 % of it is marked); `goals`: print the latency goals.
fn fixed_rate(
    o: &Opts,
    targets: &[Target],
    backend_pid: u32,
    rate: f64,
    why: &str,
    maxima: Option<&[f64]>,
    goals: bool,
) -> Result<()> {
    println!(
        "== fixed rate: {rate:.0} req/s ({why}), open loop over {} keep-alive connections, {} s per target after {} s warm-up ==",
        o.rate_connections, o.secs, o.warmup
    );
    println!(
        "{:<14} {:>7} {:>6} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>6} {:>6} {:>6}",
        "target",
        "req/s",
        "errors",
        "behind",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "+p50 ms",
        "+p99 ms",
        "proxy",
        "backnd",
        "load"
    );
    let mut p = Vec::new();
    let mut marked = false;
    for t in targets {
        let me = [std::process::id()];
        let (c0, b0, g0, t0) = (
            cpu_time(&t.proxy),
            cpu_time(&[backend_pid]),
            cpu_time(&me),
            Instant::now(),
        );
        let r = open_loop(t.addr, rate, o.rate_connections, o.warmup, o.secs)?;
        let wall = t0.elapsed().as_secs_f64();
        let cores = |c1: Duration, c0: Duration| (c1 - c0).as_secs_f64() / wall;
        let (proxy_cores, backend_cores, gen_cores) = (
            cores(cpu_time(&t.proxy), c0),
            cores(cpu_time(&[backend_pid]), b0),
            cores(cpu_time(&me), g0),
        );
        let h = &r.hist;
        let (p50, p99) = (ms(h.value_at_quantile(0.50)), ms(h.value_at_quantile(0.99)));
        let added = |v: f64, base: f64| {
            if p.is_empty() {
                "-".to_string()
            } else {
                format!("{:+.3}", v - base)
            }
        };
        let (b50, b99) = p.first().copied().unwrap_or((p50, p99));
        println!(
            "{:<14} {:>7.0} {:>6} {:>6.1}% {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>9} {:>9} {:>6} {:>6.2} {:>6.2}",
            t.name,
            r.sent as f64 / r.secs,
            r.errors,
            r.behind as f64 * 100.0 / r.sent.max(1) as f64,
            p50,
            ms(h.value_at_quantile(0.90)),
            p99,
            ms(h.value_at_quantile(0.999)),
            ms(h.max()),
            added(p50, b50),
            added(p99, b99),
            if t.proxy.is_empty() {
                "-".to_string()
            } else {
                format!("{proxy_cores:.2}")
            },
            backend_cores,
            gen_cores,
        );
        let i = p.len();
        if let Some(max) = maxima.and_then(|m| m.get(i))
            && rate >= 0.9 * max
        {
            println!(
                "{:<14} ^ at {:.0}% of this path's saturation maximum ({max:.0} req/s): mostly queueing",
                "",
                rate * 100.0 / max
            );
            marked = true;
        }
        p.push((p50, p99));
    }
    println!(
        "(latency from the due time when every connection was busy then, else from the send; 'behind': share of such requests;\n \
         proxy, backnd, load: cores used by the proxy, the backend and this load generator)"
    );
    let find = |name: &str| targets.iter().position(|t| t.name == name).map(|i| p[i]);
    let (Some(direct), Some(local), Some(remote)) =
        (find("direct"), find("aether local"), find("aether remote"))
    else {
        return Ok(());
    };
    if !goals {
        println!(
            "added over direct: aether local p50 {:+.3} ms, p99 {:+.3} ms; aether remote p50 {:+.3} ms, p99 {:+.3} ms (the hop alone p50 {:+.3} ms)",
            local.0 - direct.0,
            local.1 - direct.1,
            remote.0 - direct.0,
            remote.1 - direct.1,
            remote.0 - local.0
        );
        if let Some(h) = find("haproxy") {
            println!(
                "for reference, haproxy added p50 {:+.3} ms, p99 {:+.3} ms",
                h.0 - direct.0,
                h.1 - direct.1
            );
        }
        return Ok(());
    }
    if marked {
        println!(
            "note: a rate near a path's saturation maximum on this machine measures its queue more than the proxy's own cost; see the light-load run"
        );
    }
    let (l50, l99) = (local.0 - direct.0, local.1 - direct.1);
    println!(
        "goal: aether local added p50 {l50:.3} ms <= 0.2 ms: {}; added p99 {l99:.3} ms <= 1 ms: {}",
        met(l50 <= 0.2),
        met(l99 <= 1.0)
    );
    let r50 = remote.0 - direct.0;
    println!(
        "goal: aether remote (QUIC hop) added p50 {r50:.3} ms <= 0.5 ms: {} (the hop alone, remote - local: p50 {:+.3} ms, p99 {:+.3} ms)",
        met(r50 <= 0.5),
        remote.0 - local.0,
        remote.1 - local.1
    );
    if let Some(h) = find("haproxy") {
        println!(
            "for reference, haproxy added p50 {:+.3} ms, p99 {:+.3} ms",
            h.0 - direct.0,
            h.1 - direct.1
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Part 3: idle connections

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn rss(pid: u32) -> u64 {
    status_bytes(pid, "VmRSS").unwrap_or(0)
}

fn idle(o: &Opts, targets: &[Target], backend_pid: u32) -> Result<()> {
    println!(
        "== idle: {} client connections per proxy, each sends one request, reads the answer and stays open ==",
        o.idle
    );
    if fd_limit() < o.idle as u64 + 256 {
        bail!(
            "the open-file limit ({}) is too low for {} connections: raise it (ulimit -n 8192)",
            fd_limit(),
            o.idle
        );
    }
    println!(
        "{:<14} {:>15} {:>14} {:>14} {:>16} {:>11} {:>8}",
        "proxy",
        "RSS before MiB",
        "RSS after MiB",
        "delta MiB",
        "per conn KiB",
        "still open",
        "errors"
    );
    for t in targets {
        // The process the clients connect to (for direct, the backend: hyper's own cost).
        let pid = t.proxy.first().copied().unwrap_or(backend_pid);
        std::thread::sleep(Duration::from_millis(500));
        let before = rss(pid);
        let mut conns = Vec::with_capacity(o.idle);
        let mut errors = 0;
        let mut buf = Vec::new();
        for _ in 0..o.idle {
            let ok = connect(t.addr).and_then(|mut s| {
                s.write_all(REQUEST)?;
                match read_response(&mut s, &mut buf)? {
                    200 => Ok(s),
                    st => Err(std::io::Error::other(format!("status {st}"))),
                }
            });
            match ok {
                Ok(s) => conns.push(s),
                Err(_) => errors += 1,
            }
        }
        std::thread::sleep(Duration::from_secs(1));
        let after = rss(pid);
        // Still open: no EOF waiting to be read.
        let open = conns
            .iter()
            .filter(|s| {
                s.set_nonblocking(true).is_ok()
                    && matches!(s.peek(&mut [0u8; 1]), Err(e) if e.kind() == ErrorKind::WouldBlock)
            })
            .count();
        let delta = after as i64 - before as i64;
        println!(
            "{:<14} {:>15.1} {:>14.1} {:>14.2} {:>16.2} {:>11} {:>8}",
            t.name,
            mib(before),
            mib(after),
            delta as f64 / (1024.0 * 1024.0),
            delta as f64 / 1024.0 / conns.len().max(1) as f64,
            open,
            errors
        );
        drop(conns);
    }
    println!(
        "(RSS of the process the clients connect to: for direct the backend, a bare hyper server; for aether remote the node without the instance)"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------

fn run(o: &Opts, root: &Path) -> Result<()> {
    procstat::raise_fd_limit();
    println!(
        "ingress benchmark on {} cores; aether {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        o.aether_bin.display()
    );
    let setup = start_cluster(o, root)?;
    let (local, remote) = (&setup.nodes[setup.local], &setup.nodes[1 - setup.local]);
    let (haproxy, haproxy_addr) = start_haproxy(o, root, setup.backend)?;
    println!(
        "instance {} (pid {}) on {}; aether local = {}'s ingress {}, aether remote = {}'s ingress {} (QUIC hop to {})",
        setup.backend,
        setup.backend_pid,
        local.proc.name,
        local.proc.name,
        node_addr(setup.local, setup.service_port),
        remote.proc.name,
        node_addr(1 - setup.local, setup.service_port),
        local.proc.name,
    );
    // The nodes' own background work (Raft heartbeats, metrics, health checks), for scale.
    let pids = [local.proc.pid(), remote.proc.pid()];
    let (c0, t0) = (cpu_time(&pids), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    println!(
        "aether nodes at rest: {:.1}% of one core together",
        (cpu_time(&pids) - c0).as_secs_f64() / t0.elapsed().as_secs_f64() * 100.0
    );
    let targets = [
        Target {
            name: "direct",
            addr: setup.backend,
            proxy: vec![],
        },
        Target {
            name: "haproxy",
            addr: haproxy_addr,
            proxy: vec![haproxy.pid()],
        },
        Target {
            name: "aether local",
            addr: node_addr(setup.local, setup.service_port),
            proxy: vec![local.proc.pid()],
        },
        Target {
            name: "aether remote",
            addr: node_addr(1 - setup.local, setup.service_port),
            // Both nodes work for a remote request: the ingress and the hop service.
            proxy: vec![remote.proc.pid(), local.proc.pid()],
        },
    ];

    if o.hold > 0 {
        for t in &targets {
            println!(
                "hold: {:<14} http://{}/  proxy pids {:?}",
                t.name, t.addr, t.proxy
            );
        }
        println!(
            "hold: backend pid {}; waiting {} s",
            setup.backend_pid, o.hold
        );
        std::thread::sleep(Duration::from_secs(o.hold));
    }
    let mut haproxy_max = None;
    let mut maxima = None;
    if o.saturation {
        let runs = saturation(o, &targets, setup.backend_pid)?;
        maxima = Some(runs.iter().map(|r| r.rps).collect::<Vec<f64>>());
        let per_core = |i: usize| runs[i].rps / runs[i].proxy_cores.max(1e-9);
        haproxy_max = Some(runs[1].rps);
        let ratio = per_core(2) / per_core(1);
        println!(
            "(proxy cores: CPU time of the proxy's processes over the run; aether remote counts both nodes)"
        );
        println!(
            "goal: aether local req/s per core >= 0.8 x haproxy's: {:.2}x, {}; aether remote {:.2}x haproxy's per core",
            ratio,
            met(ratio >= 0.8),
            per_core(3) / per_core(1)
        );
        println!();
    }
    if o.fixed_rate {
        let (rate, why) = match (o.rate, haproxy_max) {
            (Some(r), _) => (r, "set with --rate".to_string()),
            (None, Some(m)) => (m / 2.0, format!("half of HAProxy's {m:.0} req/s")),
            (None, None) => {
                println!("(no saturation run: measuring HAProxy's maximum for the rate)");
                let r = run_wrk(o, &targets[1], setup.backend_pid, o.secs)?;
                (r.rps / 2.0, format!("half of HAProxy's {:.0} req/s", r.rps))
            }
        };
        fixed_rate(
            o,
            &targets,
            setup.backend_pid,
            rate,
            &why,
            maxima.as_deref(),
            true,
        )?;
        println!();
        if o.light_rate > 0.0 {
            fixed_rate(
                o,
                &targets,
                setup.backend_pid,
                o.light_rate,
                "light load: the proxies' own latency, without queueing",
                maxima.as_deref(),
                false,
            )?;
            println!();
        }
    }
    if o.idle_part {
        idle(o, &targets, setup.backend_pid)?;
    }

    // Stop the instance through Aether, then the nodes (dropped below).
    let _ = cli(
        &o.aether_bin,
        &setup.nodes[0],
        &["blueprint", "rm", "bench"],
    );
    let _ = wait_until("the instance stops", Duration::from_secs(10), || {
        (!alive(setup.backend_pid)).then_some(())
    });
    drop(haproxy);
    Ok(())
}

/// `--load ADDR RATE CONNECTIONS SECS`: the open-loop generator alone (after a 1 s warm-up).
fn load_by_hand() -> ! {
    // cargo bench adds --bench.
    let a: Vec<String> = std::env::args()
        .skip(2)
        .filter(|a| a != "--bench")
        .collect();
    let parsed = (|| -> Result<RateRun> {
        let [addr, rate, conns, secs] = a.as_slice() else {
            bail!("usage: --load ADDR RATE CONNECTIONS SECS");
        };
        let addr: SocketAddr = addr.parse().context("ADDR")?;
        let r = open_loop(
            addr,
            rate.parse().context("RATE")?,
            conns.parse().context("CONNECTIONS")?,
            1,
            secs.parse().context("SECS")?,
        )?;
        Ok(r)
    })();
    match parsed {
        Ok(r) => {
            let h = &r.hist;
            println!(
                "{:.0} req/s, {} errors, {:.1}% behind; p50 {:.3} ms, p90 {:.3}, p99 {:.3}, p99.9 {:.3}, max {:.3}",
                r.sent as f64 / r.secs,
                r.errors,
                r.behind as f64 * 100.0 / r.sent.max(1) as f64,
                ms(h.value_at_quantile(0.5)),
                ms(h.value_at_quantile(0.9)),
                ms(h.value_at_quantile(0.99)),
                ms(h.value_at_quantile(0.999)),
                ms(h.max())
            );
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2)
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("--backend") {
        let port = args.next().and_then(|p| p.parse().ok()).unwrap_or_else(|| {
            eprintln!("usage: --backend PORT");
            std::process::exit(2)
        });
        backend(port);
    }
    if std::env::args().nth(1).as_deref() == Some("--load") {
        load_by_hand();
    }
    let o = nodes::opts_or_exit(parse_opts());
    nodes::on_interrupt(kill_all_and_root);
    // On an error every process is stopped as its handle drops (the instance by
    // `KillOnDrop`, and by itself once its node is gone).
    nodes::in_temp_dir("ingress", o.keep, |root| {
        if !o.keep {
            *ROOT.lock().expect("root") = Some(root.to_path_buf());
        }
        run(&o, root)
    });
}
