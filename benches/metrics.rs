//! Metrics pipeline benchmark, two parts, all on 127.0.0.1.
//!
//! 1. Agent cost: an idle 3-node Aether cluster sampling every second, side by side for the same
//!    minutes with Debian's `prometheus-node-exporter` scraped every second by a loop here. Prints
//!    CPU seconds and peak RSS per process and the ratios.
//! 2. Leader scale: one real Aether leader and N simulated nodes (default 1,000) played by this
//!    program, each with its own QUIC endpoint and connection, sending a `MetricsUpdate` every
//!    second built from a real sample of this host (CPU, cores, memory, load and network varied
//!    per node and second), and receiving the cluster view as a real node does: it decodes every
//!    view the leader or its relay sends, rebuilds the snapshot from the deltas, forwards the
//!    view to its group when it is a relay, and asks the leader for a full view on a gap.
//!    Prints leader CPU (% of one core), the leader's bytes sent per second in all (payload),
//!    bytes per node per second (received; relays' forwarding apart), the view age on the
//!    simulated nodes (p50, p99: the leader's build time of the view each node holds, read
//!    every 100 ms), snapshot and delta sizes, history memory, and what broadcasting the whole
//!    snapshot to every node (the path before deltas and relays) would send.
//!
//! Run it with `scripts/bench/metrics.sh` (or `cargo bench --bench metrics -- --help`).

#[path = "common/nodes.rs"]
mod nodes;
#[path = "common/procstat.rs"]
mod procstat;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use aether::config::NetConfig;
use aether::domain::NodeId;
use aether::metrics::delta::{self, Applied, ViewUpdate};
use aether::metrics::prometheus::sample_value;
use aether::metrics::sample::Sampler;
use aether::metrics::update::{
    ClusterMetricsSnapshot, INFO_EVERY, MetricsMsg, MetricsUpdate, NodeInfo,
};
use aether::net::tls::{CaPem, NodeTls, issue_node_cert};
use aether::net::{Endpoint, Inbox, PeerCtx, Router};
use nodes::{Proc, cli, free_port, start_node, wait_until};
use procstat::{cpu_time, status_bytes};

const USAGE: &str = "\
metrics benchmark: agent cost vs prometheus-node-exporter, and leader scale

usage: cargo bench --bench metrics -- [options]

  --aether-bin PATH       aether binary [env AETHER_BIN; default target/release/aether]
  --exporter-bin PATH     node exporter [env EXPORTER_BIN; default prometheus-node-exporter]
  --agent-secs N          length of the side-by-side agent run [60]
  --nodes N               simulated nodes for the leader-scale run [1000]
  --scale-secs N          measured length of the leader-scale run [30]
  --sim-threads N         runtime threads of the simulated nodes [2]
  --vary all|cpu          what the simulated samples vary each second: CPU, cores, memory,
                          load and network (all), or CPU alone (cpu: lighter on this process,
                          which decodes every simulated node's views) [all]
  --only agent|scale      run one part only
  --keep                  keep the temp dir (data dirs and logs)
  -h, --help              this text
";

struct Opts {
    aether_bin: PathBuf,
    exporter_bin: PathBuf,
    agent_secs: u64,
    nodes: usize,
    scale_secs: u64,
    sim_threads: usize,
    vary_all: bool,
    agent: bool,
    scale: bool,
    keep: bool,
}

fn parse_opts() -> Result<Opts> {
    let mut o = Opts {
        aether_bin: nodes::default_aether_bin(),
        exporter_bin: std::env::var_os("EXPORTER_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| "prometheus-node-exporter".into()),
        agent_secs: 60,
        nodes: 1000,
        scale_secs: 30,
        sim_threads: 2,
        vary_all: true,
        agent: true,
        scale: true,
        keep: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or_else(|| anyhow!("{name} needs a value"));
        match a.as_str() {
            "--aether-bin" => o.aether_bin = val(&a)?.into(),
            "--exporter-bin" => o.exporter_bin = val(&a)?.into(),
            "--agent-secs" => o.agent_secs = val(&a)?.parse().context("--agent-secs")?,
            "--nodes" => o.nodes = val(&a)?.parse().context("--nodes")?,
            "--scale-secs" => o.scale_secs = val(&a)?.parse().context("--scale-secs")?,
            "--sim-threads" => o.sim_threads = val(&a)?.parse().context("--sim-threads")?,
            "--vary" => match val(&a)?.as_str() {
                "all" => o.vary_all = true,
                "cpu" => o.vary_all = false,
                other => bail!("--vary takes all or cpu, found '{other}'"),
            },
            "--only" => match val(&a)?.as_str() {
                "agent" => o.scale = false,
                "scale" => o.agent = false,
                other => bail!("--only takes agent or scale, found '{other}'"),
            },
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
    nodes::check_aether_bin(&o.aether_bin)?;
    Ok(o)
}

/// GET `path` on 127.0.0.1:`port`; the body.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    Some(text.split_once("\r\n\r\n")?.1.to_string())
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

// ---------------------------------------------------------------------------------------------
// Part 1: agent cost

fn agent_cost(o: &Opts, root: &Path) -> Result<()> {
    println!(
        "== agent cost: idle 3-node Aether cluster vs prometheus-node-exporter, {} s ==",
        o.agent_secs
    );
    let nodes = nodes::start_three(&o.aether_bin, root)?;

    let exporter_port = free_port();
    let exporter = Proc {
        name: "node_exporter".into(),
        child: Command::new(&o.exporter_bin)
            .arg(format!("--web.listen-address=127.0.0.1:{exporter_port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join("node_exporter.log"))?)
            .spawn()
            .with_context(|| {
                format!(
                    "start '{}' (Debian: prometheus-node-exporter)",
                    o.exporter_bin.display()
                )
            })?,
    };
    wait_until("node_exporter answers", Duration::from_secs(20), || {
        http_get(exporter_port, "/metrics").filter(|b| b.contains("node_cpu_seconds_total"))
    })?;

    // Settle: let start-up work (joins, first snapshots, first scrapes) pass.
    std::thread::sleep(Duration::from_secs(5));
    let procs: Vec<&Proc> = nodes.iter().map(|n| &n.proc).chain([&exporter]).collect();
    let cpu0: Vec<Duration> = procs.iter().map(|p| cpu_time(&[p.pid()])).collect();
    // Peak RSS of each process, sampled every second (VmHWM, the kernel's peak, is printed too).
    let mut rss: Vec<u64> = vec![0; procs.len()];
    let start = Instant::now();
    let mut scrapes = 0u64;
    let mut scrape_bytes = 0u64;
    // The scrape loop: node_exporter does its work when scraped, once a second.
    while start.elapsed() < Duration::from_secs(o.agent_secs) {
        let t = Instant::now();
        if let Some(b) = http_get(exporter_port, "/metrics") {
            scrapes += 1;
            scrape_bytes += b.len() as u64;
        }
        for (r, p) in rss.iter_mut().zip(&procs) {
            *r = (*r).max(status_bytes(p.pid(), "VmRSS").unwrap_or(0));
        }
        std::thread::sleep(Duration::from_secs(1).saturating_sub(t.elapsed()));
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu: Vec<f64> = procs
        .iter()
        .zip(&cpu0)
        .map(|(p, c0)| (cpu_time(&[p.pid()]) - *c0).as_secs_f64())
        .collect();
    println!(
        "{:<16} {:>10} {:>10} {:>14} {:>14}",
        "process", "cpu s", "cpu %", "peak RSS MiB", "VmHWM MiB"
    );
    for (i, p) in procs.iter().enumerate() {
        println!(
            "{:<16} {:>10.2} {:>9.2}% {:>14.1} {:>14.1}",
            p.name,
            cpu[i],
            cpu[i] / secs * 100.0,
            mib(rss[i]),
            mib(status_bytes(p.pid(), "VmHWM").unwrap_or(0))
        );
    }
    let exp_cpu = cpu[3];
    let aether_cpu = cpu[..3].iter().sum::<f64>() / 3.0;
    let aether_peak = rss[..3].iter().copied().max().unwrap_or(0);
    println!(
        "node_exporter scraped {scrapes} times ({:.0} KiB per scrape)",
        scrape_bytes as f64 / scrapes.max(1) as f64 / 1024.0
    );
    println!(
        "ratio aether node / node_exporter: cpu {:.2} (aether mean {:.2} s vs {:.2} s), peak RSS {:.2} ({:.1} MiB vs {:.1} MiB)",
        aether_cpu / exp_cpu.max(1e-9),
        aether_cpu,
        exp_cpu,
        aether_peak as f64 / rss[3].max(1) as f64,
        mib(aether_peak),
        mib(rss[3])
    );
    println!(
        "goal: aether cpu <= node_exporter cpu: {}; aether RSS < 40 MB: {}",
        if aether_cpu <= exp_cpu {
            "met"
        } else {
            "NOT met"
        },
        if aether_peak < 40_000_000 {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Part 2: leader scale

/// Loopback bytes received so far (every packet on lo is received once).
fn lo_rx_bytes() -> Result<u64> {
    let dev = std::fs::read_to_string("/proc/net/dev")?;
    let line = dev
        .lines()
        .find(|l| l.trim_start().starts_with("lo:"))
        .ok_or_else(|| anyhow!("no loopback interface in /proc/net/dev"))?;
    let v: u64 = line
        .split_once(':')
        .and_then(|(_, r)| r.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow!("cannot read lo counters"))?;
    Ok(v)
}

/// What the simulated nodes received, all together.
#[derive(Default)]
struct SimTotals {
    bytes_received: AtomicU64,
    /// Views taken (full or delta).
    views: AtomicU64,
    fulls: AtomicU64,
    stale: AtomicU64,
    /// Deltas that did not apply (then a full view is asked for).
    gaps: AtomicU64,
    /// Views forwarded as a relay (one per target), and their bytes.
    relayed: AtomicU64,
    relayed_bytes: AtomicU64,
}

/// One simulated node's receiving side: decodes what it is sent, keeps the cluster view
/// rebuilt from the deltas, relays, and asks for a full view on a gap, as `metrics::pipeline`
/// does on a real node.
struct Sim {
    id: NodeId,
    leader: String,
    ep: std::sync::OnceLock<Arc<Endpoint>>,
    held: std::sync::Mutex<Option<ClusterMetricsSnapshot>>,
    /// Deltas that came ahead of the view held.
    early: std::sync::Mutex<delta::Early>,
    /// The first simulated node also keeps the view before the last one (to size the
    /// alternatives).
    prev: Option<std::sync::Mutex<Option<ClusterMetricsSnapshot>>>,
    /// Bytes this node received.
    received: AtomicU64,
    totals: Arc<SimTotals>,
}

impl Sim {
    fn take(&self, u: ViewUpdate) {
        let full = matches!(u, ViewUpdate::Full(_));
        let mut held = self.held.lock().unwrap();
        if let Some(prev) = &self.prev {
            *prev.lock().unwrap() = held.clone();
        }
        let r = delta::apply_in_order(&mut held, &mut self.early.lock().unwrap(), u);
        drop(held);
        let t = &self.totals;
        match r {
            Ok(Applied::Taken) => {
                t.views.fetch_add(1, Ordering::Relaxed);
                if full {
                    t.fulls.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(Applied::Stale) => {
                t.stale.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Applied::Early) => {}
            Err(gap) => {
                t.gaps.fetch_add(1, Ordering::Relaxed);
                if let Some(ep) = self.ep.get() {
                    let (ep, leader) = (ep.clone(), self.leader.clone());
                    let msg = MetricsMsg::Resync {
                        node: self.id,
                        term: gap.term,
                    };
                    tokio::spawn(async move { ep.send_oneway(&leader, &msg).await });
                }
            }
        }
    }

    /// How old the view held is (ms since the leader built it), if any.
    fn age_ms(&self, now: u64) -> Option<u64> {
        let held = self.held.lock().unwrap();
        held.as_ref().map(|s| now.saturating_sub(s.built_at))
    }
}

impl Inbox for Sim {
    type Msg = MetricsMsg;

    fn deliver(&self, _ctx: PeerCtx, msg: MetricsMsg, size: usize) {
        self.received.fetch_add(size as u64, Ordering::Relaxed);
        self.totals
            .bytes_received
            .fetch_add(size as u64, Ordering::Relaxed);
        match msg {
            MetricsMsg::View(u) => self.take(u),
            MetricsMsg::Relay { to, view, .. } => {
                let body = aether::net::frame::encode_body(&MetricsMsg::View(view.clone()))
                    .expect("a view encodes");
                self.totals
                    .relayed
                    .fetch_add(to.len() as u64, Ordering::Relaxed);
                self.totals
                    .relayed_bytes
                    .fetch_add((body.len() * to.len()) as u64, Ordering::Relaxed);
                if let Some(ep) = self.ep.get() {
                    let (ep, body) = (ep.clone(), Arc::new(body));
                    tokio::spawn(async move {
                        for addr in to {
                            let (ep, body) = (ep.clone(), body.clone());
                            tokio::spawn(async move { ep.send_oneway_body(&addr, &body).await });
                        }
                    });
                }
                self.take(view);
            }
            _ => {}
        }
    }
}

/// Size the ways of getting the view to every node, from two consecutive snapshots as a
/// simulated node rebuilt them, and print what each would make the leader send per second.
fn candidates(prev: &ClusterMetricsSnapshot, next: &ClusterMetricsSnapshot, n: f64) -> Result<()> {
    let len = |m: &MetricsMsg| aether::net::frame::encode_body(m).map(|b| b.len() as f64);
    let full = len(&MetricsMsg::View(ViewUpdate::Full(next.clone())))?;
    let d = delta::diff(prev, next).ok_or_else(|| anyhow!("views not consecutive"))?;
    let fields = len(&MetricsMsg::View(ViewUpdate::Delta(d.clone())))?;
    // Whole entries for every node that changed at all.
    let mut whole = d.clone();
    for p in &mut whole.changed {
        let e = next
            .nodes
            .iter()
            .find(|e| e.node == p.node)
            .expect("in next");
        p.fields = delta::diff_entry(None, e);
    }
    let whole = len(&MetricsMsg::View(ViewUpdate::Delta(whole)))?;
    // A compact summary: per node id, CPU and memory in percent, health, age.
    let summary: Vec<(u64, u8, u8, u8, u64)> = next
        .nodes
        .iter()
        .map(|e| {
            let mem = e.m.mem_used as f64 / e.m.mem_total.max(1) as f64;
            (
                e.node,
                (e.m.cpu * 100.0) as u8,
                (mem * 100.0) as u8,
                e.health as u8,
                e.age_ms,
            )
        })
        .collect();
    let summary = aether::net::frame::encode_body(&summary)?.len() as f64;
    let relays = n.sqrt().ceil();
    let mb = |b: f64| b / 1e6;
    println!("ways to get the view to {n} nodes (sizes from two consecutive views; leader MB/s):");
    for (what, bytes, copies) in [
        ("whole snapshot to every node (before)", full, n),
        ("whole snapshot through sqrt(N) relays", full, relays),
        ("changed nodes, whole entries, to every node", whole, n),
        ("changed fields (delta) to every node", fields, n),
        (
            "compact summary to every node (detail on demand)",
            summary,
            n,
        ),
        (
            "changed fields through sqrt(N) relays (chosen)",
            fields,
            relays,
        ),
    ] {
        println!(
            "  {what:<52} {:>9.1} KiB x {copies:>5.0} = {:>8.2} MB/s",
            bytes / 1024.0,
            mb(bytes * copies)
        );
    }
    Ok(())
}

/// The `q` quantile (0–1) of sorted `v`.
fn quantile(v: &[u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn leader_scale(o: &Opts, root: &Path) -> Result<()> {
    println!(
        "== leader scale: one leader, {} simulated nodes at 1 Hz, {} s measured ==",
        o.nodes, o.scale_secs
    );
    procstat::raise_fd_limit();
    let leader = start_node(&o.aether_bin, root, "leader", None)?;
    wait_until("the leader leads", Duration::from_secs(30), || {
        cli(&o.aether_bin, &leader, &["status"])
            .ok()
            .filter(|s| s.contains("(leader)"))
    })?;
    // The simulated nodes hold certificates signed by the cluster CA (read from the leader's
    // data dir, as any member could): the leader accepts updates from certified peers.
    let tls_dir = leader.dir.join("tls");
    let ca = CaPem {
        cert_pem: std::fs::read_to_string(tls_dir.join("ca.crt"))?,
        key_pem: std::fs::read_to_string(tls_dir.join("ca.key"))?,
    };
    let sim_dir = root.join("sim-tls");
    let (cert, key) = issue_node_cert(
        &ca,
        "sim",
        (aether::domain::now_millis() / 1000) as i64,
        86_400,
    )?;
    NodeTls::save(&sim_dir, &ca.cert_pem, &cert, &key)?;
    let tls = NodeTls::load(&sim_dir)?;
    let reset = NodeTls::reset_secret(&sim_dir)?;

    // One real sample of this host, varied per node and second.
    let mut sampler = Sampler::new()?;
    std::thread::sleep(Duration::from_millis(300));
    let base = sampler.sample(&[]);
    let info = NodeInfo {
        name: String::new(),
        gpu_unavailable: sampler.gpu_unavailable(),
        version: "bench".into(),
        gpu_offer: None,
        carbon: None,
        carbon_error: None,
    };
    let update_bytes =
        aether::net::frame::encode_body(&MetricsMsg::Update(Box::new(MetricsUpdate {
            node: 10_000,
            seq: 2,
            info: None,
            m: base.clone(),
        })))?
        .len();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(o.sim_threads)
        .enable_all()
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let leader_addr = format!("127.0.0.1:{}", leader.quic);
    let net_cfg = NetConfig::default();
    let mut endpoints = Vec::with_capacity(o.nodes);
    let mut sims = Vec::with_capacity(o.nodes);
    let totals = Arc::new(SimTotals::default());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let router = Arc::new(Router::new());
    for i in 0..o.nodes {
        let _guard = rt.enter();
        let ep = Endpoint::bind("127.0.0.1:0".parse()?, &tls, &reset, &net_cfg)?;
        // Each simulated node serves its endpoint: the leader and relays send it views there.
        let sim = Arc::new(Sim {
            id: 10_000 + i as u64,
            leader: leader_addr.clone(),
            ep: std::sync::OnceLock::new(),
            held: std::sync::Mutex::new(None),
            early: Default::default(),
            prev: (i == 0).then(Default::default),
            received: AtomicU64::new(0),
            totals: totals.clone(),
        });
        let _ = sim.ep.set(ep.clone());
        ep.serve(
            router.clone(),
            sim.clone(),
            shutdown.clone(),
            tokio_util::task::TaskTracker::new(),
        );
        sims.push(sim);
        endpoints.push(ep);
    }
    for (i, ep) in endpoints.iter().enumerate() {
        let (ep, stop, sent, failed, addr) = (
            ep.clone(),
            stop.clone(),
            sent.clone(),
            failed.clone(),
            leader_addr.clone(),
        );
        let (base, mut info) = (base.clone(), info.clone());
        info.name = format!("sim-{i:04}");
        let (n, vary_all) = (o.nodes, o.vary_all);
        rt.spawn(async move {
            // Spread the nodes over the second, as real clocks would be.
            tokio::time::sleep(Duration::from_millis((i * 1000 / n) as u64)).await;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                seq += 1;
                // What moves second to second on a real host: CPU (all and per core),
                // memory, load, network rates.
                let mut m = base.clone();
                m.at = aether::domain::now_millis();
                let wiggle = (i as u64 * 7 + seq) % 100;
                m.cpu = wiggle as f32 / 100.0;
                for (k, c) in m.cores.iter_mut().enumerate().filter(|_| vary_all) {
                    *c = ((wiggle + k as u64 * 13) % 100) as u8;
                }
                if vary_all {
                    m.mem_used = m.mem_used.saturating_sub(wiggle << 20);
                    m.load[0] += wiggle as f32 / 1000.0;
                    if let Some(n) = m.nets.first_mut() {
                        n.rx_bps += (wiggle * 1024) as f32;
                        n.tx_bps += (wiggle * 512) as f32;
                    }
                }
                let u = MetricsUpdate {
                    node: 10_000 + i as u64,
                    seq,
                    info: (seq % INFO_EVERY == 1).then(|| info.clone()),
                    m,
                };
                match ep
                    .send_oneway(&addr, &MetricsMsg::Update(Box::new(u)))
                    .await
                {
                    Ok(_) => sent.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    let scrape = || http_get(leader.http, "/metrics").unwrap_or_default();
    wait_until(
        "the leader's snapshot holds every simulated node",
        Duration::from_secs(180),
        || {
            let body = scrape();
            (body.matches("aether_node_cpu_ratio{").count() > o.nodes).then_some(())
        },
    )?;
    let mut last_report = Instant::now();
    wait_until(
        "every simulated node holds a view with every simulated node",
        Duration::from_secs(90),
        || {
            let (mut some, mut all) = (0, 0);
            for s in &sims {
                if let Some(v) = s.held.lock().unwrap().as_ref() {
                    some += 1;
                    all += usize::from(v.nodes.len() > o.nodes);
                }
            }
            if last_report.elapsed() > Duration::from_secs(10) {
                last_report = Instant::now();
                let t = &totals;
                println!(
                    "  waiting: {some} simulated nodes hold a view, {all} with every node; views {} ({} full), stale {}, gaps {}, relayed {}",
                    t.views.load(Ordering::Relaxed),
                    t.fulls.load(Ordering::Relaxed),
                    t.stale.load(Ordering::Relaxed),
                    t.gaps.load(Ordering::Relaxed),
                    t.relayed.load(Ordering::Relaxed)
                );
            }
            (all == sims.len()).then_some(())
        },
    )?;
    // Warm-up: connections are up, the window fills; then measure.
    std::thread::sleep(Duration::from_secs(5));
    let before = scrape();
    let snap_totals = |t: &SimTotals| {
        [
            &t.bytes_received,
            &t.views,
            &t.fulls,
            &t.stale,
            &t.gaps,
            &t.relayed,
            &t.relayed_bytes,
        ]
        .map(|a| a.load(Ordering::Relaxed))
    };
    let sim0 = snap_totals(&totals);
    let got0: Vec<u64> = sims
        .iter()
        .map(|s| s.received.load(Ordering::Relaxed))
        .collect();
    let (cpu0, lo0, sent0, t0) = (
        cpu_time(&[leader.proc.pid()]),
        lo_rx_bytes()?,
        sent.load(Ordering::Relaxed),
        Instant::now(),
    );
    let mut peak_rss = 0;
    // View age on every simulated node, every 100 ms.
    let mut ages: Vec<u64> = Vec::new();
    let mut no_view = 0u64;
    let mut next_rss = Instant::now();
    while t0.elapsed() < Duration::from_secs(o.scale_secs) {
        if next_rss <= Instant::now() {
            peak_rss = peak_rss.max(status_bytes(leader.proc.pid(), "VmRSS").unwrap_or(0));
            next_rss += Duration::from_millis(500);
        }
        let now = aether::domain::now_millis();
        for s in &sims {
            match s.age_ms(now) {
                Some(a) => ages.push(a),
                None => no_view += 1,
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let secs = t0.elapsed().as_secs_f64();
    let (cpu1, lo1, sent1) = (
        cpu_time(&[leader.proc.pid()]),
        lo_rx_bytes()?,
        sent.load(Ordering::Relaxed),
    );
    let sim1 = snap_totals(&totals);
    let got: Vec<u64> = sims
        .iter()
        .zip(&got0)
        .map(|(s, g0)| s.received.load(Ordering::Relaxed) - g0)
        .collect();
    let after = scrape();
    let pair = (
        sims[0]
            .prev
            .as_ref()
            .and_then(|p| p.lock().unwrap().clone()),
        sims[0].held.lock().unwrap().clone(),
    );
    stop.store(true, Ordering::Relaxed);
    shutdown.cancel();
    let d = |k: usize| sim1[k] - sim0[k];

    let n = o.nodes as f64;
    let cpu_pct = (cpu1 - cpu0).as_secs_f64() / secs * 100.0;
    let wire = (lo1 - lo0) as f64 / secs / n;
    let payload = (sample_value(&after, "aether_metrics_bytes_received_total").unwrap_or(0.0)
        - sample_value(&before, "aether_metrics_bytes_received_total").unwrap_or(0.0))
        / secs
        / n;
    let received = sample_value(&after, "aether_metrics_updates_received_total").unwrap_or(0.0)
        - sample_value(&before, "aether_metrics_updates_received_total").unwrap_or(0.0);
    let snapshot = sample_value(&after, "aether_metrics_snapshot_bytes").unwrap_or(0.0);
    let view = sample_value(&after, "aether_metrics_view_bytes").unwrap_or(0.0);
    let leader_sent = (sample_value(&after, "aether_metrics_bytes_sent_total").unwrap_or(0.0)
        - sample_value(&before, "aether_metrics_bytes_sent_total").unwrap_or(0.0))
        / secs;
    let resyncs = sample_value(&after, "aether_metrics_resyncs_total").unwrap_or(0.0)
        - sample_value(&before, "aether_metrics_resyncs_total").unwrap_or(0.0);
    ages.sort_unstable();
    let mut per_node: Vec<f64> = got.iter().map(|&b| b as f64 / secs).collect();
    per_node.sort_by(f64::total_cmp);
    let broadcast = snapshot * n;
    let history = sample_value(&after, "aether_metrics_history_bytes").unwrap_or(0.0);
    let series = sample_value(&after, "aether_metrics_history_series").unwrap_or(0.0);
    println!("update size (postcard, one datagram): {update_bytes} B");
    println!(
        "updates sent {} / received by the leader {:.0} over {secs:.1} s ({} send failures)",
        sent1 - sent0,
        received,
        failed.load(Ordering::Relaxed)
    );
    println!("leader cpu: {cpu_pct:.2}% of one core");
    println!(
        "bytes per node per second on the wire (lo, all traffic: updates, views, relays; both directions, headers included): {wire:.0} B; update payload to the leader {payload:.0} B"
    );
    println!(
        "leader sends in all (payload): {:.2} MB/s ({:.0} B/s per node)",
        leader_sent / 1e6,
        leader_sent / n
    );
    println!(
        "simulated nodes received (payload, per node per second): mean {:.0} B, p50 {:.0} B, max {:.0} B; relays forwarded {} views, {:.2} MB/s in all",
        per_node.iter().sum::<f64>() / n,
        per_node.get(per_node.len() / 2).copied().unwrap_or(0.0),
        per_node.last().copied().unwrap_or(0.0),
        d(5),
        d(6) as f64 / secs / 1e6
    );
    println!(
        "views taken by the simulated nodes: {} ({:.2} per node per second; {} full), {} stale, {} gaps; full views the leader sent on request: {resyncs:.0}",
        d(1),
        d(1) as f64 / secs / n,
        d(2),
        d(3),
        d(4)
    );
    println!(
        "view age on the simulated nodes: p50 {} ms, p99 {} ms, max {} ms ({} readings, {no_view} without a view)",
        quantile(&ages, 0.5),
        quantile(&ages, 0.99),
        ages.last().copied().unwrap_or(0),
        ages.len()
    );
    println!(
        "snapshot: {:.0} KiB ({:.0} B per node); last view message (delta) {:.1} KiB",
        snapshot / 1024.0,
        snapshot / (n + 1.0),
        view / 1024.0
    );
    println!(
        "before (the whole snapshot to every node each second): the leader would send {:.1} MB/s; after: {:.2} MB/s ({:.0}x less)",
        broadcast / 1e6,
        leader_sent / 1e6,
        broadcast / leader_sent.max(1.0)
    );
    println!(
        "history window: {:.1} MiB for {series:.0} series ({:.0} KiB per node); leader peak RSS {:.1} MiB",
        history / (1024.0 * 1024.0),
        history / (n + 1.0) / 1024.0,
        mib(peak_rss)
    );
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "goal: leader sends <= 10 MB/s: {}; view age p99 <= 2 s: {}; leader < 10% of one core: {}",
        met(leader_sent <= 10e6),
        met(quantile(&ages, 0.99) <= 2_000 && no_view == 0),
        met(cpu_pct < 10.0)
    );
    match pair {
        (Some(prev), Some(next)) if next.seq == prev.seq + 1 => candidates(&prev, &next, n)?,
        _ => println!("(no two consecutive views held to size the alternatives)"),
    }
    rt.shutdown_timeout(Duration::from_secs(2));
    Ok(())
}

fn main() {
    let o = nodes::opts_or_exit(parse_opts());
    nodes::in_temp_dir("metrics", o.keep, |root| {
        if o.agent {
            agent_cost(&o, root)?;
        }
        if o.scale {
            leader_scale(&o, root)?;
        }
        Ok(())
    });
}
