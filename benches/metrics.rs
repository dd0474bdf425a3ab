//! Metrics pipeline benchmark, two parts, all on 127.0.0.1.
//!
//! 1. Agent cost: an idle 3-node Aether cluster sampling every second, side by side for the same
//!    minutes with Debian's `prometheus-node-exporter` scraped every second by a loop here. Prints
//!    CPU seconds and peak RSS per process and the ratios.
//! 2. Leader scale: one real Aether leader and N simulated nodes (default 1,000) played by this
//!    program, each with its own QUIC endpoint and connection, sending a `MetricsUpdate` every
//!    second built from a real sample of this host. Prints leader CPU (% of one core), bytes per
//!    node per second on the wire (loopback interface counters, both directions, IP/UDP headers
//!    included, and the payload alone), snapshot size, history memory.
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
use aether::metrics::prometheus::sample_value;
use aether::metrics::sample::Sampler;
use aether::metrics::update::{INFO_EVERY, MetricsMsg, MetricsUpdate, NodeInfo};
use aether::net::Endpoint;
use aether::net::tls::{CaPem, NodeTls, issue_node_cert};
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
    let (cert, key) = issue_node_cert(&ca, "sim")?;
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
        .worker_threads(1)
        .enable_all()
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let leader_addr = format!("127.0.0.1:{}", leader.quic);
    let net_cfg = NetConfig::default();
    let mut endpoints = Vec::with_capacity(o.nodes);
    for _ in 0..o.nodes {
        let _guard = rt.enter();
        endpoints.push(Endpoint::bind(
            "127.0.0.1:0".parse()?,
            &tls,
            &reset,
            &net_cfg,
        )?);
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
        let n = o.nodes;
        rt.spawn(async move {
            // Spread the nodes over the second, as real clocks would be.
            tokio::time::sleep(Duration::from_millis((i * 1000 / n) as u64)).await;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                seq += 1;
                let mut m = base.clone();
                m.at = aether::domain::now_millis();
                m.cpu = ((i as u64 * 7 + seq) % 100) as f32 / 100.0;
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
        Duration::from_secs(120),
        || {
            let body = scrape();
            (body.matches("aether_node_cpu_ratio{").count() > o.nodes).then_some(())
        },
    )?;
    // Warm-up: connections are up, the window fills; then measure.
    std::thread::sleep(Duration::from_secs(5));
    let before = scrape();
    let (cpu0, lo0, sent0, t0) = (
        cpu_time(&[leader.proc.pid()]),
        lo_rx_bytes()?,
        sent.load(Ordering::Relaxed),
        Instant::now(),
    );
    let mut peak_rss = 0;
    while t0.elapsed() < Duration::from_secs(o.scale_secs) {
        peak_rss = peak_rss.max(status_bytes(leader.proc.pid(), "VmRSS").unwrap_or(0));
        std::thread::sleep(Duration::from_millis(500));
    }
    let secs = t0.elapsed().as_secs_f64();
    let (cpu1, lo1, sent1) = (
        cpu_time(&[leader.proc.pid()]),
        lo_rx_bytes()?,
        sent.load(Ordering::Relaxed),
    );
    let after = scrape();
    stop.store(true, Ordering::Relaxed);

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
        "bytes per node per second on the wire (lo, both directions, headers included): {wire:.0} B; payload alone {payload:.0} B"
    );
    println!(
        "snapshot: {:.0} KiB ({:.0} B per node); broadcasting it to N members would send {:.1} MiB/s",
        snapshot / 1024.0,
        snapshot / (n + 1.0),
        snapshot * n / (1024.0 * 1024.0)
    );
    println!(
        "history window: {:.1} MiB for {series:.0} series ({:.0} KiB per node); leader peak RSS {:.1} MiB",
        history / (1024.0 * 1024.0),
        history / (n + 1.0) / 1024.0,
        mib(peak_rss)
    );
    println!(
        "goal: <= 400 B per node per second: {}; < 10% of one core: {}",
        if wire <= 400.0 { "met" } else { "NOT met" },
        if cpu_pct < 10.0 { "met" } else { "NOT met" }
    );
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
