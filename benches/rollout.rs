//! Rollout benchmark: how long a rolling update of a slice takes against its floor, and how
//! fast a bad canary goes back, both under steady load through the ingress, on this machine's
//! loopback.
//!
//! Three real Aether nodes (release build), each binding its service ports on its own loopback
//! address (127.0.0.51–53, `AETHER_INGRESS_BIND`), the controller off (no scaling during the
//! runs). The instances are this very program in backend mode (`--backend PORT`: a hyper
//! HTTP/1.1 server on one tokio thread). From its environment: `VERSION` (put in every body as
//! `version=vN`), `FAIL_PCT` (that share of the non-health requests, evenly spread, answered
//! 500), `BENCH_STARTUP_MS` (a simulated start-up: it sleeps that long before it binds its
//! port) and `BENCH_RECORDS` (a directory where it writes, as JSON, when it was spawned, began
//! listening, first answered its health check, first served a request and first answered 500,
//! and at SIGTERM how many requests and errors it served). The load generator here keeps
//! several keep-alive connections spread over the three nodes' ingresses, each paced to its
//! share of a steady rate (a closed loop per connection: a slot missed while a request was out
//! is skipped, not sent in a burst); every answer other than 200, and every transport error,
//! counts as a failed request. Two parts:
//!
//! 1. Rolling update: N copies (default 12) of v1, then v2 applied with `strategy = "rolling"`,
//!    `max_parallel` and `min_healthy_time`. The duration from `blueprint apply` until
//!    `rollout status` shows `succeeded`, and from the record's `started_at` to `ended_at`;
//!    the floor `(instance start-up + min_healthy_time) × batches`, with the start-up timed
//!    directly (this program spawned in backend mode, to its first 200 answer, median of 5),
//!    and the ratio; the start-up as the cluster saw it per v2 copy (from its batch's record to
//!    its first health-check answer, split into the node's part, the app's and the probe's);
//!    requests sent and failed during the rollout, and the goal of zero failed.
//! 2. Bad canary: 4 copies of v1, then v2 as a canary whose copies fail 20 % of requests, with
//!    an analysis (interval, min_requests, max_error_rate) and a share of the traffic. The time
//!    from the canary's first error (the first 500 a v2 copy answered, by its own record; the
//!    first 5xx from v2 the client saw is printed too) to the rollout being `rolled-back` and
//!    every answer coming from v1 again, against the goal of one analysis interval + 2 s; the
//!    reason it recorded; the requests that failed at the client against what the analysis
//!    counted and what the canary copies served (the ingress retries some failures elsewhere).
//!
//! Run it with `scripts/bench/rollout.sh` (or `cargo bench --bench rollout -- --help`).

#[path = "common/http.rs"]
mod http;
#[path = "common/nodes.rs"]
mod nodes;
#[path = "common/procstat.rs"]
mod procstat;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use http::{connect, parse_response};
use nodes::{AetherNode, cli, start_node_env, wait_until};
use procstat::alive;

const USAGE: &str = "\
rollout benchmark: a rolling update's duration against its floor, and a bad canary's way back,
both under steady load through the ingress of 3 real nodes

usage: cargo bench --bench rollout -- [options]

  --aether-bin PATH        aether binary [env AETHER_BIN; default target/release/aether]
  --only PARTS             comma-separated: rolling, canary [both]
  --rate N                 load in requests/s, spread over the connections [200]
  --connections N          keep-alive connections, spread over the 3 nodes' ingresses [8]
  --startup-ms N           the instance's simulated start-up: it sleeps this long before it
                           binds its port [500]
  --health-interval-ms N   the slice's health check interval [200]
rolling update:
  --instances N            copies [12]
  --max-parallel N         copies replaced at a time [2]
  --min-healthy-ms N       min_healthy_time [2000]
bad canary:
  --canary-base N          copies of v1 [4]
  --canary-copies N        canary copies of v2 [1]
  --fail-pct N             share of its requests a v2 copy answers 500 [20]
  --canary-traffic-pct N   canary_traffic [20]
  --interval-ms N          analysis interval [10000]
  --min-requests N         analysis min_requests [50]
  --max-error-rate-pct X   analysis max_error_rate [1]
  --canary-min-healthy-ms N  the canary's min_healthy_time [1000]
  --keep                   keep the temp dir (data dirs, logs, blueprints, the instances' records)
  -h, --help               this text

One other mode: --backend PORT (the blueprint's command: the instance on 127.0.0.1:PORT).
";

struct Opts {
    aether_bin: PathBuf,
    rolling: bool,
    canary: bool,
    rate: f64,
    connections: usize,
    startup_ms: u64,
    health_interval_ms: u64,
    instances: u32,
    max_parallel: u32,
    min_healthy_ms: u64,
    canary_base: u32,
    canary_copies: u32,
    fail_pct: u32,
    canary_traffic_pct: u32,
    interval_ms: u64,
    min_requests: u64,
    max_error_rate_pct: f64,
    canary_min_healthy_ms: u64,
    keep: bool,
}

fn parse_opts() -> Result<Opts> {
    let mut o = Opts {
        aether_bin: nodes::default_aether_bin(),
        rolling: true,
        canary: true,
        rate: 200.0,
        connections: 8,
        startup_ms: 500,
        health_interval_ms: 200,
        instances: 12,
        max_parallel: 2,
        min_healthy_ms: 2000,
        canary_base: 4,
        canary_copies: 1,
        fail_pct: 20,
        canary_traffic_pct: 20,
        interval_ms: 10_000,
        min_requests: 50,
        max_error_rate_pct: 1.0,
        canary_min_healthy_ms: 1000,
        keep: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or_else(|| anyhow!("{name} needs a value"));
        macro_rules! num {
            ($field:ident) => {
                o.$field = val(&a)?.parse().with_context(|| a.clone())?
            };
        }
        match a.as_str() {
            "--aether-bin" => o.aether_bin = val(&a)?.into(),
            "--only" => {
                let v = val(&a)?;
                (o.rolling, o.canary) = (false, false);
                for part in v.split(',') {
                    match part.trim() {
                        "rolling" => o.rolling = true,
                        "canary" => o.canary = true,
                        other => bail!(
                            "--only takes rolling and canary (comma-separated), found '{other}'"
                        ),
                    }
                }
            }
            "--rate" => num!(rate),
            "--connections" => num!(connections),
            "--startup-ms" => num!(startup_ms),
            "--health-interval-ms" => num!(health_interval_ms),
            "--instances" => num!(instances),
            "--max-parallel" => num!(max_parallel),
            "--min-healthy-ms" => num!(min_healthy_ms),
            "--canary-base" => num!(canary_base),
            "--canary-copies" => num!(canary_copies),
            "--fail-pct" => num!(fail_pct),
            "--canary-traffic-pct" => num!(canary_traffic_pct),
            "--interval-ms" => num!(interval_ms),
            "--min-requests" => num!(min_requests),
            "--max-error-rate-pct" => num!(max_error_rate_pct),
            "--canary-min-healthy-ms" => num!(canary_min_healthy_ms),
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
    if o.rate.is_nan() || o.rate <= 0.0 || o.connections == 0 {
        bail!("--rate must be positive and --connections at least 1");
    }
    if o.instances == 0 || o.max_parallel == 0 || o.canary_base == 0 || o.canary_copies == 0 {
        bail!("--instances, --max-parallel, --canary-base and --canary-copies must be at least 1");
    }
    if o.fail_pct > 100 || o.canary_traffic_pct > 100 {
        bail!("--fail-pct and --canary-traffic-pct are percentages from 0 to 100");
    }
    if o.health_interval_ms == 0 || o.interval_ms == 0 {
        bail!("--health-interval-ms and --interval-ms must be at least 1");
    }
    if !(0.0..=100.0).contains(&o.max_error_rate_pct) {
        bail!("--max-error-rate-pct is a percentage from 0 to 100");
    }
    nodes::check_aether_bin(&o.aether_bin)?;
    Ok(o)
}

/// Wall-clock time in Unix milliseconds (the rollout records' clock; every process here
/// shares this machine's).
fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

// ---------------------------------------------------------------------------------------------
// The instance

/// What one instance process says of itself (`BENCH_RECORDS/<pid>.json`), in Unix ms.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AppRecord {
    pid: u32,
    instance: String,
    version: String,
    spawned_at: f64,
    listening_at: Option<f64>,
    first_health_at: Option<f64>,
    first_request_at: Option<f64>,
    first_error_at: Option<f64>,
    /// Non-health requests served and answered 500, written at SIGTERM.
    requests: u64,
    errors: u64,
    term_at: Option<f64>,
}

struct AppState {
    record: Mutex<AppRecord>,
    file: Option<PathBuf>,
    fail_pct: u64,
    served: AtomicU64,
    errors: AtomicU64,
}

impl AppState {
    /// Update the record and write it (a temp file renamed over the old one).
    fn note(&self, f: impl FnOnce(&mut AppRecord) -> bool) {
        let mut r = self.record.lock().expect("record");
        if !f(&mut r) {
            return;
        }
        r.requests = self.served.load(Ordering::Relaxed);
        r.errors = self.errors.load(Ordering::Relaxed);
        if let Some(file) = &self.file {
            let tmp = file.with_extension("tmp");
            if let Ok(text) = serde_json::to_vec(&*r)
                && std::fs::write(&tmp, text).is_ok()
            {
                let _ = std::fs::rename(&tmp, file);
            }
        }
    }
}

/// Set `slot` to `now` when it is empty; whether it was.
fn first(slot: &mut Option<f64>, now: f64) -> bool {
    let empty = slot.is_none();
    if empty {
        *slot = Some(now);
    }
    empty
}

/// `--backend PORT`: the instance (see the module's doc). Exits at SIGTERM (after writing its
/// counts) and when its parent (the Aether node) is gone.
fn backend(port: u16) -> ! {
    use http_body_util::Full;
    use hyper::body::Bytes;

    let spawned_at = unix_ms();
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let version = env("VERSION");
    let state = Arc::new(AppState {
        record: Mutex::new(AppRecord {
            pid: std::process::id(),
            instance: env("AETHER_INSTANCE"),
            version: version.clone(),
            spawned_at,
            ..Default::default()
        }),
        file: std::env::var_os("BENCH_RECORDS")
            .map(|d| PathBuf::from(d).join(format!("{}.json", std::process::id()))),
        fail_pct: env("FAIL_PCT").parse().unwrap_or(0),
        served: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    state.note(|_| true);
    // The simulated start-up: nothing listens yet.
    let startup: u64 = env("BENCH_STARTUP_MS").parse().unwrap_or(0);
    std::thread::sleep(Duration::from_millis(startup));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the instance's port");
        state.note(|r| {
            r.listening_at = Some(unix_ms());
            true
        });
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
        let st = state.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            term.recv().await;
            st.note(|r| {
                r.term_at = Some(unix_ms());
                true
            });
            std::process::exit(0);
        });
        let body_ok: Bytes = format!("version={version} ok\n").into();
        let body_bad: Bytes = format!("version={version} failed on purpose\n").into();
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (st, ok, bad) = (state.clone(), body_ok.clone(), body_bad.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let (st, ok, bad) = (st.clone(), ok.clone(), bad.clone());
                    async move {
                        let now = unix_ms();
                        let mut resp = hyper::Response::new(Full::new(ok));
                        if req.uri().path() == "/health" {
                            st.note(|r| first(&mut r.first_health_at, now));
                            return Ok::<_, std::convert::Infallible>(resp);
                        }
                        // Exactly FAIL_PCT % of the requests, evenly spread.
                        let n = st.served.fetch_add(1, Ordering::Relaxed);
                        let p = st.fail_pct;
                        let fail = p > 0 && (n + 1) * p / 100 > n * p / 100;
                        st.note(|r| first(&mut r.first_request_at, now));
                        if fail {
                            st.errors.fetch_add(1, Ordering::Relaxed);
                            st.note(|r| first(&mut r.first_error_at, now));
                            resp = hyper::Response::new(Full::new(bad));
                            *resp.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                        }
                        Ok(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    std::process::exit(0)
}

/// Every record under `dir`.
fn app_records(dir: &Path) -> Vec<AppRecord> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Processes: the nodes are killed at the end, on an error and on Ctrl-C / SIGTERM; the
// instances stop by themselves once their node is gone.

static PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static ROOT: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Kill the nodes this run started and remove its temp dir (Ctrl-C / SIGTERM).
fn kill_nodes_and_root() {
    for pid in PIDS.lock().expect("pids").iter() {
        // SAFETY: kill(2) of a node this run started (a child: not reaped while we run).
        unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
    }
    if let Some(root) = ROOT.lock().expect("root").take() {
        // The instances notice their node is gone within 0.5 s.
        std::thread::sleep(Duration::from_millis(800));
        let _ = std::fs::remove_dir_all(root);
    }
    eprintln!("interrupted: stopped every node this run started");
}

// ---------------------------------------------------------------------------------------------
// HTTP: a minimal HTTP/1.1 client, one request at a time on a keep-alive connection.

/// One answer: status, the version its body names (`version=vN`; 0 when none) and, for a
/// failure, the body's start.
struct Answer {
    status: u16,
    version: u32,
    body: String,
    close: bool,
}

fn version_in(body: &[u8]) -> u32 {
    let s = String::from_utf8_lossy(body);
    s.split_whitespace()
        .find_map(|w| w.strip_prefix("version=v"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn request(s: &mut TcpStream, path: &str) -> std::io::Result<Answer> {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").as_bytes())?;
    let mut buf = Vec::with_capacity(512);
    let mut tmp = [0u8; 4096];
    loop {
        if let Some((status, head, total, close)) = parse_response(&buf)? {
            let body = &buf[head..total];
            return Ok(Answer {
                status,
                version: version_in(body),
                body: if status == 200 {
                    String::new()
                } else {
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                        .trim()
                        .to_string()
                },
                close,
            });
        }
        let n = s.read(&mut tmp)?;
        if n == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

/// One GET on a new connection.
fn get_once(addr: SocketAddr, path: &str) -> Option<Answer> {
    request(&mut connect(addr).ok()?, path).ok()
}

// ---------------------------------------------------------------------------------------------
// The load generator

/// One request: when it was sent and answered (Unix ms), its status (0: a transport error),
/// the version that answered (0: none named) and, for a failure, what it said.
struct Rec {
    sent: f64,
    done: f64,
    status: u16,
    version: u32,
    what: String,
}

impl Rec {
    fn failed(&self) -> bool {
        self.status != 200
    }
}

struct Load {
    stop: Arc<AtomicBool>,
    /// Per version 0..8: the Unix ms (as f64 bits) of its last answer.
    last: Arc<[AtomicU64; 8]>,
    threads: Vec<std::thread::JoinHandle<Vec<Rec>>>,
}

impl Load {
    /// `connections` keep-alive connections, round robin over `addrs`, each sending its share
    /// of `rate` on an evenly spaced schedule (staggered between connections).
    fn start(addrs: &[SocketAddr], rate: f64, connections: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let last: Arc<[AtomicU64; 8]> = Arc::new(Default::default());
        let period = Duration::from_secs_f64(connections as f64 / rate);
        let t0 = Instant::now() + Duration::from_millis(50);
        let threads = (0..connections)
            .map(|i| {
                let addr = addrs[i % addrs.len()];
                let (stop, last) = (stop.clone(), last.clone());
                let first = t0 + period.mul_f64(i as f64 / connections as f64);
                std::thread::spawn(move || {
                    let mut recs = Vec::new();
                    let mut conn: Option<TcpStream> = None;
                    let mut next = first;
                    while !stop.load(Ordering::Relaxed) {
                        let now = Instant::now();
                        if next > now {
                            std::thread::sleep(next - now);
                        }
                        // A slot missed while the previous request was out is skipped.
                        next = (next + period).max(Instant::now());
                        let sent = unix_ms();
                        let answer = match conn.take() {
                            Some(s) => Ok(s),
                            None => connect(addr),
                        }
                        .and_then(|mut s| request(&mut s, "/").map(|a| (s, a)));
                        let done = unix_ms();
                        match answer {
                            Ok((s, a)) => {
                                if let Some(l) = last.get(a.version as usize) {
                                    l.store(done.to_bits(), Ordering::Relaxed);
                                }
                                if !a.close {
                                    conn = Some(s);
                                }
                                recs.push(Rec {
                                    sent,
                                    done,
                                    status: a.status,
                                    version: a.version,
                                    what: a.body,
                                });
                            }
                            Err(e) => recs.push(Rec {
                                sent,
                                done,
                                status: 0,
                                version: 0,
                                what: format!("{addr}: {e}"),
                            }),
                        }
                    }
                    recs
                })
            })
            .collect();
        Load {
            stop,
            last,
            threads,
        }
    }

    /// The Unix ms of the last answer from `version` (0 when none yet).
    fn last_from(&self, version: u32) -> f64 {
        self.last
            .get(version as usize)
            .map_or(0.0, |l| f64::from_bits(l.load(Ordering::Relaxed)))
    }

    /// Stop; every request, by send time.
    fn finish(self) -> Vec<Rec> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all: Vec<Rec> = self
            .threads
            .into_iter()
            .flat_map(|t| t.join().unwrap_or_default())
            .collect();
        all.sort_by(|a, b| a.sent.total_cmp(&b.sent));
        all
    }
}

// ---------------------------------------------------------------------------------------------
// The cluster

/// Node i binds its service ports on its own loopback address.
const NODE_IPS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(127, 0, 0, 51),
    Ipv4Addr::new(127, 0, 0, 52),
    Ipv4Addr::new(127, 0, 0, 53),
];

/// A port free on 127.0.0.1 and on every node's address.
fn service_port() -> u16 {
    loop {
        let p = nodes::free_port();
        if NODE_IPS
            .iter()
            .all(|ip| TcpListener::bind((IpAddr::V4(*ip), p)).is_ok())
        {
            return p;
        }
    }
}

fn start_cluster(o: &Opts, root: &Path) -> Result<Vec<AetherNode>> {
    let nodes = nodes::start_three_with(&o.aether_bin, |i, join| {
        let ip = NODE_IPS[i].to_string();
        let env = [
            ("AETHER_INGRESS_BIND", ip.as_str()),
            // A fixed number of copies: no scaling decisions during the runs.
            ("AETHER_CONTROLLER_ENABLED", "false"),
        ];
        let n = start_node_env(&o.aether_bin, root, &format!("n{}", i + 1), join, &env)?;
        PIDS.lock().expect("pids").push(n.proc.pid());
        Ok(n)
    })?;
    Ok(Vec::from(nodes))
}

/// One slice `web` of blueprint `name`: `instances` copies of this program in backend mode.
struct Slice<'a> {
    name: &'a str,
    port: u16,
    instances: u32,
    version: &'a str,
    fail_pct: u32,
    update: String,
}

fn write_blueprint(o: &Opts, root: &Path, s: &Slice) -> Result<PathBuf> {
    let exe = nodes::instance_exe(root)?;
    let records = root.join("records");
    std::fs::create_dir_all(&records)?;
    // The instances run as an unprivileged user (issue 18): they must write their records here.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&records, std::fs::Permissions::from_mode(0o777))?;
    }
    // Resources are limits too since issue 18: 0.05 cores throttled the instance's start-up
    // (timed against the floor, measured unthrottled) and 16 MiB was near its footprint. Up to
    // 0.25 cores each, within what the 3 nodes offer to the most copies alive at once.
    let most = (o.instances + o.max_parallel).max(o.canary_base + o.canary_copies) as usize;
    let cpu = nodes::cpu_per_instance(3, most, 0.25);
    let file = root.join(format!("{}-{}.toml", s.name, s.version));
    std::fs::write(
        &file,
        format!(
            r#"name = "{name}"

[[slices]]
name = "web"
command = [{exe:?}, "--backend", "${{PORT}}"]
instances = {instances}
min = 1
max = {max}
resources = {{ cpu = {cpu:?}, memory = "64MiB" }}
env = {{ VERSION = "{version}", FAIL_PCT = "{fail}", BENCH_STARTUP_MS = "{startup}", BENCH_RECORDS = {records:?} }}

[slices.health]
http = "/health"
interval = "{health}ms"
threshold = 1

[slices.service]
port = {port}

[slices.update]
{update}
"#,
            name = s.name,
            exe = exe.display().to_string(),
            instances = s.instances,
            max = s.instances.max(16) * 2,
            version = s.version,
            fail = s.fail_pct,
            startup = o.startup_ms,
            records = records.display().to_string(),
            health = o.health_interval_ms,
            port = s.port,
            update = s.update,
        ),
    )?;
    Ok(file)
}

/// `blueprint apply`; the rollout it started (`r-N`), if any.
fn apply(o: &Opts, n: &AetherNode, file: &Path) -> Result<Option<String>> {
    let out = cli(
        &o.aether_bin,
        n,
        &["blueprint", "apply", file.to_str().context("temp path")?],
    )?;
    Ok(out.split_whitespace().find_map(|w| {
        let w = w.trim_matches(|c: char| !c.is_alphanumeric() && c != '-');
        (w.starts_with("r-") && w[2..].chars().all(|c| c.is_ascii_digit()) && w.len() > 2)
            .then(|| w.to_string())
    }))
}

fn rollout_status(o: &Opts, n: &AetherNode, target: &str) -> Option<Value> {
    let out = cli(
        &o.aether_bin,
        n,
        &["rollout", "status", target, "--output", "json"],
    )
    .ok()?;
    serde_json::from_str(&out).ok()
}

/// Wait until `id` reaches a final or paused state; the record and when it was seen (Unix ms).
fn wait_final(
    o: &Opts,
    n: &AetherNode,
    target: &str,
    id: &str,
    within: Duration,
) -> Result<(Value, f64)> {
    let start = Instant::now();
    let mut last = Value::Null;
    loop {
        if let Some(r) = rollout_status(o, n, target)
            && r["name"] == id
        {
            let state = r["state"].as_str().unwrap_or_default().to_string();
            if state != "running" {
                return Ok((r, unix_ms()));
            }
            last = r;
        }
        if start.elapsed() > within {
            bail!(
                "rollout {id} still not done after {within:?}; last seen:\n{}",
                serde_json::to_string_pretty(&last).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Wait until blueprint `name` runs `count` active, passing copies, only `version` answers
/// through every node's ingress, and as many processes of `version` wrote their record.
fn settled(
    o: &Opts,
    root: &Path,
    nodes: &[AetherNode],
    name: &str,
    count: u32,
    version: &str,
    port: u16,
) -> Result<()> {
    let want: u32 = version.trim_start_matches('v').parse().unwrap_or(0);
    wait_until(
        &format!("{count} active copies of {name} {version}, answering through every ingress"),
        Duration::from_secs(90),
        || {
            let out = cli(
                &o.aether_bin,
                &nodes[0],
                &["blueprint", "show", name, "--output", "json"],
            )
            .ok()?;
            let v: Value = serde_json::from_str(&out).ok()?;
            let rows = v[0]["instances"].as_array()?;
            let up = rows
                .iter()
                .filter(|r| {
                    r["state"] == "active" && r["health"] == "passing" && r["note"].is_null()
                })
                .count();
            if rows.len() != count as usize || up != count as usize {
                return None;
            }
            let running = app_records(&root.join("records"))
                .iter()
                .filter(|r| r.version == version && r.term_at.is_none() && r.listening_at.is_some())
                .count();
            if running < count as usize {
                return None;
            }
            NODE_IPS
                .iter()
                .all(|ip| {
                    (0..count + 2).all(|_| {
                        get_once(SocketAddr::new(IpAddr::V4(*ip), port), "/")
                            .is_some_and(|a| a.status == 200 && a.version == want)
                    })
                })
                .then_some(())
        },
    )
}

/// `blueprint rm`, and wait until its processes are gone.
fn remove(o: &Opts, root: &Path, nodes: &[AetherNode], name: &str) -> Result<()> {
    cli(&o.aether_bin, &nodes[0], &["blueprint", "rm", name])?;
    let prefix = format!("{name}/");
    wait_until(
        &format!("{name}'s copies stop"),
        Duration::from_secs(60),
        || {
            app_records(&root.join("records"))
                .iter()
                .all(|a| !a.instance.starts_with(&prefix) || !alive(a.pid))
                .then_some(())
        },
    )
}

fn ingress_addrs(port: u16) -> Vec<SocketAddr> {
    NODE_IPS
        .iter()
        .map(|ip| SocketAddr::new(IpAddr::V4(*ip), port))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Figures

fn secs(ms: f64) -> String {
    format!("{:.2} s", ms / 1000.0)
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn stats(v: &[f64]) -> String {
    let mut v = v.to_vec();
    if v.is_empty() {
        return "-".into();
    }
    let m = median(&mut v);
    format!(
        "median {m:.0} ms (min {:.0}, max {:.0}, n {})",
        v[0],
        v[v.len() - 1],
        v.len()
    )
}

/// The record's history, with times from `t0`.
fn print_history(r: &Value, t0: f64) {
    for h in r["history"].as_array().into_iter().flatten() {
        println!(
            "  {:>+8.2} s  {}",
            (h["at"].as_f64().unwrap_or(0.0) - t0) / 1000.0,
            h["what"].as_str().unwrap_or_default()
        );
    }
}

fn print_failures(recs: &[&Rec], t0: f64, limit: usize) {
    for r in recs.iter().take(limit) {
        println!(
            "  {:>+8.3} s  {}  {}{}",
            (r.sent - t0) / 1000.0,
            if r.status == 0 {
                "transport error".to_string()
            } else {
                format!("status {}", r.status)
            },
            if r.version > 0 {
                format!("(from v{}) ", r.version)
            } else {
                String::new()
            },
            r.what
        );
    }
    if recs.len() > limit {
        println!("  … and {} more", recs.len() - limit);
    }
}

// ---------------------------------------------------------------------------------------------
// Start-up, timed directly

/// Spawn this program in backend mode as the blueprint does, time it to its first 200 answer
/// (probing every 2 ms on new connections), `n` times; the times in ms.
fn direct_startup(o: &Opts, n: usize) -> Result<Vec<f64>> {
    let exe = std::env::current_exe()?;
    let mut out = Vec::new();
    for _ in 0..n {
        let port = nodes::free_port();
        let t0 = Instant::now();
        let mut child = Command::new(&exe)
            .args(["--backend", &port.to_string()])
            .env("BENCH_STARTUP_MS", o.startup_ms.to_string())
            .env("VERSION", "v0")
            .env_remove("BENCH_RECORDS")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let r = wait_until_every("the instance answers", Duration::from_secs(30), || {
            get_once(addr, "/health")
                .filter(|a| a.status == 200)
                .map(|_| t0.elapsed())
        });
        let _ = child.kill();
        let _ = child.wait();
        out.push(r?.as_secs_f64() * 1000.0);
    }
    Ok(out)
}

fn wait_until_every<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Result<T> {
    nodes::wait_every(what, timeout, Duration::from_millis(2), &mut f)
}

// ---------------------------------------------------------------------------------------------
// Part 1: a rolling update

fn rolling(o: &Opts, root: &Path, nodes: &[AetherNode]) -> Result<()> {
    let batches = o.instances.div_ceil(o.max_parallel);
    println!(
        "== rolling update: {} copies across 3 nodes, max_parallel {}, min_healthy_time {} ms ({batches} batches), under {:.0} req/s over {} keep-alive connections ==",
        o.instances, o.max_parallel, o.min_healthy_ms, o.rate, o.connections
    );
    let mut direct = direct_startup(o, 5)?;
    let startup = median(&mut direct);
    println!(
        "instance start-up, timed directly (spawned as the node does, to its first 200 answer, probing every 2 ms, 5 runs): median {startup:.0} ms (min {:.0}, max {:.0}); of it {} ms simulated (--startup-ms)",
        direct[0],
        direct[direct.len() - 1],
        o.startup_ms
    );

    let port = service_port();
    let update = format!(
        "strategy = \"rolling\"\nmax_parallel = {}\nmin_healthy_time = \"{}ms\"",
        o.max_parallel, o.min_healthy_ms
    );
    let slice = |version| Slice {
        name: "rolling",
        port,
        instances: o.instances,
        version,
        fail_pct: 0,
        update: update.clone(),
    };
    let t = Instant::now();
    apply(o, &nodes[0], &write_blueprint(o, root, &slice("v1"))?)?;
    settled(o, root, nodes, "rolling", o.instances, "v1", port)?;
    println!(
        "{} copies of v1 active and answering through every ingress after {:.1} s",
        o.instances,
        t.elapsed().as_secs_f64()
    );

    let load = Load::start(&ingress_addrs(port), o.rate, o.connections);
    std::thread::sleep(Duration::from_secs(2));
    let t_apply = unix_ms();
    let id = apply(o, &nodes[0], &write_blueprint(o, root, &slice("v2"))?)?
        .ok_or_else(|| anyhow!("applying v2 started no rollout"))?;
    let (r, t_seen) = wait_final(o, &nodes[0], "rolling/web", &id, Duration::from_secs(600))?;
    std::thread::sleep(Duration::from_secs(1));
    let recs = load.finish();
    let t_end = unix_ms();

    let state = r["state"].as_str().unwrap_or_default();
    let started = r["started_at"].as_f64().unwrap_or(f64::NAN);
    let ended = r["ended_at"].as_f64().unwrap_or(f64::NAN);
    println!("rollout {id}: {state}");
    let during: Vec<&Rec> = recs
        .iter()
        .filter(|x| x.sent >= t_apply && x.sent <= t_seen)
        .collect();
    let failed: Vec<&Rec> = during.iter().copied().filter(|x| x.failed()).collect();
    let outside: Vec<&Rec> = recs
        .iter()
        .filter(|x| (x.sent < t_apply || x.sent > t_seen) && x.failed())
        .collect();
    let from_v2_at_end = recs
        .iter()
        .filter(|x| x.sent > t_seen && x.status == 200)
        .all(|x| x.version == 2);

    let floor = (startup + o.min_healthy_ms as f64) * batches as f64;
    let duration = ended - started;
    println!(
        "duration: apply → 'succeeded' seen {} (polling every 0.1 s); record started_at → ended_at {} (apply → started_at {:.0} ms)",
        secs(t_seen - t_apply),
        secs(duration),
        started - t_apply
    );
    println!(
        "floor: (start-up {startup:.0} ms + min_healthy_time {} ms) × {batches} batches = {}; duration / floor = {:.2}",
        o.min_healthy_ms,
        secs(floor),
        duration / floor
    );

    // Start-up as the cluster saw it: from its batch's record to the copy's first answer.
    let mut starts: Vec<f64> = vec![started];
    for h in r["history"].as_array().into_iter().flatten() {
        if h["what"]
            .as_str()
            .is_some_and(|w| w.starts_with("starting v"))
        {
            starts.push(h["at"].as_f64().unwrap_or(f64::NAN));
        }
    }
    let gaps: Vec<f64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    let apps: Vec<AppRecord> = app_records(&root.join("records"))
        .into_iter()
        .filter(|a| a.version == "v2" && a.spawned_at >= started - 1.0)
        .collect();
    let (mut node_part, mut app_part, mut probe_part, mut total) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for a in &apps {
        let Some(batch) = starts
            .iter()
            .copied()
            .filter(|s| *s <= a.spawned_at)
            .reduce(f64::max)
        else {
            continue;
        };
        node_part.push(a.spawned_at - batch);
        if let (Some(l), Some(h)) = (a.listening_at, a.first_health_at) {
            app_part.push(l - a.spawned_at);
            probe_part.push(h - l);
            total.push(h - batch);
        }
    }
    let mut tot = total.clone();
    let in_cluster = median(&mut tot);
    println!(
        "start-up in the cluster, per v2 copy, from its batch's record to its first health-check answer: {}",
        stats(&total)
    );
    println!(
        "  of it: record → process spawned (assignment, the node's reconcile) {}; spawned → listening (the app) {}; listening → first probe {}",
        stats(&node_part),
        stats(&app_part),
        stats(&probe_part)
    );
    println!(
        "  time between batches (record to record): {}; floor per batch with the in-cluster start-up {:.0} ms (that floor × {batches} = {}, ratio {:.2})",
        stats(&gaps),
        in_cluster + o.min_healthy_ms as f64,
        secs((in_cluster + o.min_healthy_ms as f64) * batches as f64),
        duration / ((in_cluster + o.min_healthy_ms as f64) * batches as f64)
    );
    if apps.len() != o.instances as usize {
        println!(
            "  note: {} v2 processes started for {} copies (a restart or a copy started twice?)",
            apps.len(),
            o.instances
        );
    }
    println!(
        "requests during the rollout (sent from apply to 'succeeded' seen): {} sent, {} failed; over the whole load ({:.1} s, from 2 s before the apply to 1 s after): {} sent, {} failed",
        during.len(),
        failed.len(),
        (t_end - recs.first().map_or(t_end, |x| x.sent)) / 1000.0,
        recs.len(),
        failed.len() + outside.len()
    );
    println!(
        "goal: zero failed requests during the rolling update: {}{}",
        met(failed.is_empty() && state == "succeeded"),
        if state == "succeeded" {
            ""
        } else {
            " (the rollout did not succeed)"
        }
    );
    if !from_v2_at_end {
        println!("note: answers after 'succeeded' came from a version other than v2");
    }
    if !failed.is_empty() || !outside.is_empty() {
        println!("failed requests (time from the apply):");
        let all: Vec<&Rec> = failed.iter().chain(outside.iter()).copied().collect();
        print_failures(&all, t_apply, 40);
    }
    println!("history (time from the apply):");
    print_history(&r, t_apply);
    remove(o, root, nodes, "rolling")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Part 2: a bad canary

fn canary(o: &Opts, root: &Path, nodes: &[AetherNode]) -> Result<()> {
    let interval = o.interval_ms as f64;
    println!(
        "== bad canary: {} copies of v1, then {} canary copy of v2 that fails {}% of requests; canary_traffic {}%, analysis interval {} ms, min_requests {}, max_error_rate {}%; {:.0} req/s over {} keep-alive connections ==",
        o.canary_base,
        o.canary_copies,
        o.fail_pct,
        o.canary_traffic_pct,
        o.interval_ms,
        o.min_requests,
        o.max_error_rate_pct,
        o.rate,
        o.connections
    );
    let port = service_port();
    let update = format!(
        "strategy = \"canary\"\nmin_healthy_time = \"{}ms\"\ncanary = {}\ncanary_traffic = \"{}%\"\nanalysis = {{ interval = \"{}ms\", min_requests = {}, max_error_rate = \"{}%\" }}",
        o.canary_min_healthy_ms,
        o.canary_copies,
        o.canary_traffic_pct,
        o.interval_ms,
        o.min_requests,
        o.max_error_rate_pct
    );
    let slice = |version, fail_pct| Slice {
        name: "canary",
        port,
        instances: o.canary_base,
        version,
        fail_pct,
        update: update.clone(),
    };
    apply(o, &nodes[0], &write_blueprint(o, root, &slice("v1", 0))?)?;
    settled(o, root, nodes, "canary", o.canary_base, "v1", port)?;
    // The v2 processes of part 1 are gone: only this part's v2 copies write v2 records now.
    let before: Vec<u32> = app_records(&root.join("records"))
        .iter()
        .map(|a| a.pid)
        .collect();

    let load = Load::start(&ingress_addrs(port), o.rate, o.connections);
    std::thread::sleep(Duration::from_secs(2));
    let t_apply = unix_ms();
    let id = apply(
        o,
        &nodes[0],
        &write_blueprint(o, root, &slice("v2", o.fail_pct))?,
    )?
    .ok_or_else(|| anyhow!("applying v2 started no rollout"))?;
    let (r, t_seen) = wait_final(o, &nodes[0], "canary/web", &id, Duration::from_secs(300))?;
    let state = r["state"].as_str().unwrap_or_default().to_string();
    // Every answer from v1 again: no v2 answer for 2 s.
    let quiet = wait_until("no answer from v2 for 2 s", Duration::from_secs(60), || {
        (unix_ms() - load.last_from(2) >= 2000.0).then_some(())
    });
    let recs = load.finish();
    quiet?;

    // The canary copies' own records (written at SIGTERM once they stop).
    let _ = wait_until("the canary copies stop", Duration::from_secs(20), || {
        let v2: Vec<AppRecord> = app_records(&root.join("records"))
            .into_iter()
            .filter(|a| a.version == "v2" && !before.contains(&a.pid))
            .collect();
        (!v2.is_empty() && v2.iter().all(|a| a.term_at.is_some())).then_some(())
    });
    let v2: Vec<AppRecord> = app_records(&root.join("records"))
        .into_iter()
        .filter(|a| a.version == "v2" && !before.contains(&a.pid))
        .collect();

    println!("rollout {id}: {state}");
    let started = r["started_at"].as_f64().unwrap_or(f64::NAN);
    let ended = r["ended_at"].as_f64().unwrap_or(f64::NAN);
    let first_error_app = v2.iter().filter_map(|a| a.first_error_at).reduce(f64::min);
    let first_request_app = v2
        .iter()
        .filter_map(|a| a.first_request_at)
        .reduce(f64::min);
    let after: Vec<&Rec> = recs.iter().filter(|x| x.sent >= t_apply).collect();
    let first_5xx_v2 = after
        .iter()
        .find(|x| x.status >= 500 && x.version == 2)
        .map(|x| x.done);
    let first_5xx = after.iter().find(|x| x.status >= 500).map(|x| x.done);
    let last_v2 = recs
        .iter()
        .filter(|x| x.version == 2)
        .map(|x| x.done)
        .reduce(f64::max);
    let all_v1_again = last_v2.unwrap_or(f64::NAN);
    let back = ended.max(all_v1_again);
    let rel = |t: Option<f64>| {
        t.map_or("none".to_string(), |t| {
            format!("{:+.2} s", (t - t_apply) / 1000.0)
        })
    };
    println!(
        "times from the apply: canary's first request served {}, its first 500 (by its own record) {}; first 5xx at the client from v2 {}, first 5xx at the client at all {}",
        rel(first_request_app),
        rel(first_error_app),
        rel(first_5xx_v2),
        rel(first_5xx)
    );
    println!(
        "  record started_at {}, ended_at (rolled back) {}, seen by polling {}; last answer from v2 at the client {} (every answer from v1 after it)",
        rel(Some(started)),
        rel(Some(ended)),
        rel(Some(t_seen)),
        rel(last_v2)
    );
    let goal = interval + 2000.0;
    match first_error_app {
        Some(e) => {
            let took = back - e;
            println!(
                "canary's first error (its first 500, by its own record) → rolled back and every answer from v1: {} (to rolled-back {}, to the last v2 answer {})",
                secs(took),
                secs(ended - e),
                secs(all_v1_again - e)
            );
            if let Some(c) = first_5xx_v2 {
                println!(
                    "  from the first 5xx from v2 the client saw: {}",
                    secs(back - c)
                );
            }
            println!(
                "goal: ≤ one analysis interval + 2 s ({}): {}",
                secs(goal),
                met(state == "rolled-back" && took <= goal)
            );
        }
        None => println!(
            "the canary never answered 500 (did it get traffic?): no time to the rollback; goal NOT met"
        ),
    }
    println!(
        "reason recorded: {}",
        r["reason"].as_str().unwrap_or("(none)")
    );
    let window: Vec<&Rec> = recs
        .iter()
        .filter(|x| x.sent >= t_apply && x.sent <= back)
        .collect();
    let failed: Vec<&Rec> = window.iter().copied().filter(|x| x.failed()).collect();
    let from_v2 = failed.iter().filter(|x| x.version == 2).count();
    let transport = failed.iter().filter(|x| x.status == 0).count();
    let v2_answers = window.iter().filter(|x| x.version == 2).count();
    println!(
        "at the client, from the apply to the rollback: {} sent, {} answered by v2, {} failed ({} 5xx from v2, {} other statuses, {} transport errors)",
        window.len(),
        v2_answers,
        failed.len(),
        from_v2,
        failed.len() - from_v2 - transport,
        transport
    );
    let served: u64 = v2.iter().map(|a| a.requests).sum();
    let errors: u64 = v2.iter().map(|a| a.errors).sum();
    println!(
        "the canary copies served {served} requests and answered {errors} with 500 (their own counts): {} of those 500s reached the client, the ingress retried {} on another copy",
        from_v2,
        errors.saturating_sub(from_v2 as u64)
    );
    let a = &r["analysis"];
    if a.is_null() {
        println!("analysis: none recorded");
    } else {
        println!(
            "analysis counted (round {}, {} ms): canary v{} {} requests, {} errors ({:.2}%); stable v{} {} requests, {} errors; verdict {}",
            a["round"],
            a["to_at"].as_f64().unwrap_or(0.0) - a["from_at"].as_f64().unwrap_or(0.0),
            a["canary"]["version"],
            a["canary"]["requests"],
            a["canary"]["errors"],
            a["canary"]["error_rate"].as_f64().unwrap_or(0.0) * 100.0,
            a["stable"]["version"],
            a["stable"]["requests"],
            a["stable"]["errors"],
            a["verdict"].as_str().unwrap_or_default()
        );
    }
    if !failed.is_empty() {
        println!("failed requests (time from the apply):");
        print_failures(&failed, t_apply, 20);
    }
    let late: Vec<&Rec> = recs
        .iter()
        .filter(|x| x.sent > back && x.failed())
        .collect();
    if !late.is_empty() {
        println!("failed requests after the rollback:");
        print_failures(&late, t_apply, 20);
    }
    println!("history (time from the apply):");
    print_history(&r, t_apply);
    remove(o, root, nodes, "canary")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------

fn run(o: &Opts, root: &Path) -> Result<()> {
    println!(
        "rollout benchmark on {} cores; aether {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        o.aether_bin.display()
    );
    let t = Instant::now();
    let nodes = start_cluster(o, root)?;
    println!(
        "3 nodes up in {:.1} s; service ports on {}",
        t.elapsed().as_secs_f64(),
        NODE_IPS.map(|i| i.to_string()).join(", ")
    );
    if o.rolling {
        rolling(o, root, &nodes)?;
        println!();
    }
    if o.canary {
        canary(o, root, &nodes)?;
    }
    drop(nodes);
    // The instances notice their node is gone within 0.5 s.
    std::thread::sleep(Duration::from_millis(800));
    Ok(())
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
    let o = nodes::opts_or_exit(parse_opts());
    nodes::on_interrupt(kill_nodes_and_root);
    nodes::in_temp_dir("rollout", o.keep, |root| {
        if !o.keep {
            *ROOT.lock().expect("root") = Some(root.to_path_buf());
        }
        run(&o, root)
    });
}
