//! Write benchmark: a 3-node Aether cluster against a 3-member etcd cluster on 127.0.0.1.
//!
//! Both systems get the same load: N clients (1, 16, 64 by default), each with its own
//! connection, 8-byte keys and 256-byte values, every put a new key. Clients are spread
//! round-robin over the three nodes (or all sent to the leader with `--target leader`) for both
//! systems, so both pay the follower-to-leader forwarding hop in the same proportion. Then the
//! leader is killed with SIGKILL, repeatedly, under a light steady write load, and the time from
//! the kill until a write sent after the kill is acknowledged by a survivor is measured.
//!
//! Aether clients use the admin Unix socket (`aether::admin::client::Client`); etcd clients use
//! HTTP/1.1 keep-alive against etcd's JSON gRPC gateway (`POST /v3/kv/put`) with the small
//! hand-written HTTP client in `kv/etcd.rs`. Run it with `scripts/bench/kv.sh` (or
//! `cargo bench --bench kv -- --help`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command as Proc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

#[path = "common/procstat.rs"]
mod procstat;

// Not `mod aether`: that would shadow the aether crate in this file.
#[path = "kv/aether.rs"]
mod aether_cluster;
#[path = "kv/daemon.rs"]
mod daemon;
#[path = "kv/etcd.rs"]
mod etcd;
#[path = "kv/load.rs"]
mod load;

use aether_cluster::AetherCluster;
use daemon::{Daemon, PIDS, Ports};
use etcd::{EtcdCluster, base64};
use load::{
    LoadResult, PROBE_EVERY, SteadyLoad, Target, percentile, run_load, wait_ack_after,
    wait_failover,
};

const USAGE: &str = "\
kv benchmark: 3 Aether nodes vs 3 etcd members on 127.0.0.1

usage: cargo bench --bench kv -- [options]

  --aether-bin PATH          aether binary [env AETHER_BIN; default target/release/aether]
  --etcd-bin PATH            etcd binary (etcd 3.4) [env ETCD_BIN; default etcd on PATH]
  --concurrency LIST         client counts, comma separated [1,16,64]
  --puts-c1 N                puts at concurrency 1 [2000]
  --puts N                   puts at every other concurrency [10000]
  --value-bytes N            value size [256]
  --target spread|leader     where clients connect, for both systems [spread]
  --failover-rounds N        Aether leader kills [20]
  --etcd-failover-rounds N   etcd leader kills [10]
  --failover-clients N       clients writing during failover, spread over the nodes [3]
  --settle-ms N              extra pause after a killed node is back, before the next kill [0]
  --etcd-election-ms N       etcd --election-timeout; etcd draws from [N, 2N) [1000, etcd's default]
  --only aether|etcd         run one system only
  --keep                     keep the temp dir (data dirs and logs) at the end
                             (env KV_BENCH_NODE_LOG sets RUST_LOG for the aether nodes)
  -h, --help                 this text
";

/// Command-line options.
#[derive(Debug, Clone)]
struct Opts {
    aether_bin: PathBuf,
    etcd_bin: PathBuf,
    concurrency: Vec<usize>,
    puts_c1: u64,
    puts: u64,
    value_bytes: usize,
    to_leader: bool,
    failover_rounds: usize,
    etcd_failover_rounds: usize,
    failover_clients: usize,
    etcd_election_ms: u64,
    settle: Duration,
    run_aether: bool,
    run_etcd: bool,
    keep: bool,
}

fn parse_opts() -> Result<Opts> {
    let default_aether = std::env::var_os("AETHER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/aether"));
    let mut o = Opts {
        aether_bin: default_aether,
        etcd_bin: std::env::var_os("ETCD_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("etcd")),
        concurrency: vec![1, 16, 64],
        puts_c1: 2000,
        puts: 10_000,
        value_bytes: 256,
        to_leader: false,
        failover_rounds: 20,
        etcd_failover_rounds: 10,
        failover_clients: 3,
        etcd_election_ms: 1000,
        settle: Duration::ZERO,
        run_aether: true,
        run_etcd: true,
        keep: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| {
            args.next()
                .ok_or_else(|| anyhow!("{name} needs a value (see --help)"))
        };
        let num = |name: &str, v: String| {
            v.parse::<u64>()
                .with_context(|| format!("{name}: '{v}' is not a whole number"))
        };
        match a.as_str() {
            "--bench" => {} // passed by `cargo bench`
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "--aether-bin" => o.aether_bin = val(&a)?.into(),
            "--etcd-bin" => o.etcd_bin = val(&a)?.into(),
            "--concurrency" => {
                o.concurrency = val(&a)?
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .parse::<usize>()
                            .with_context(|| format!("--concurrency: '{s}' is not a whole number"))
                    })
                    .collect::<Result<_>>()?;
                if o.concurrency.iter().any(|c| *c == 0 || *c > 1024) {
                    bail!("--concurrency: each value must be 1 to 1024");
                }
            }
            "--puts-c1" => o.puts_c1 = num(&a, val(&a)?)?,
            "--puts" => o.puts = num(&a, val(&a)?)?,
            "--value-bytes" => o.value_bytes = num(&a, val(&a)?)? as usize,
            "--target" => match val(&a)?.as_str() {
                "spread" => o.to_leader = false,
                "leader" => o.to_leader = true,
                other => bail!("--target: expected spread or leader, found '{other}'"),
            },
            "--failover-rounds" => o.failover_rounds = num(&a, val(&a)?)? as usize,
            "--etcd-failover-rounds" => o.etcd_failover_rounds = num(&a, val(&a)?)? as usize,
            "--failover-clients" => o.failover_clients = (num(&a, val(&a)?)? as usize).max(1),
            "--settle-ms" => o.settle = Duration::from_millis(num(&a, val(&a)?)?),
            "--etcd-election-ms" => o.etcd_election_ms = num(&a, val(&a)?)?,
            "--only" => match val(&a)?.as_str() {
                "aether" => o.run_etcd = false,
                "etcd" => o.run_aether = false,
                other => bail!("--only: expected aether or etcd, found '{other}'"),
            },
            "--keep" => o.keep = true,
            other => bail!("unknown argument '{other}' (see --help)"),
        }
    }
    if o.puts == 0 || o.puts_c1 == 0 {
        bail!("--puts and --puts-c1 must be at least 1");
    }
    Ok(o)
}

// ---------------------------------------------------------------------------------------------
// The runs.

/// Results for one system.
#[derive(Default)]
struct SystemResult {
    loads: Vec<(usize, LoadResult)>,
    failover: Vec<Duration>,
}

fn puts_for(o: &Opts, c: usize) -> u64 {
    if c == 1 { o.puts_c1 } else { o.puts }
}

async fn loads(
    o: &Opts,
    target: &Target,
    leader: usize,
    name: &str,
    value: &Arc<Vec<u8>>,
    b64: &Arc<String>,
    pids: &[u32],
) -> Result<Vec<(usize, LoadResult)>> {
    let n = target.len();
    let to_leader = o.to_leader;
    let home = move |i: usize| if to_leader { leader } else { i % n };
    // Warm-up, not measured.
    run_load(target, 4, 200, home, value, b64, pids)
        .await
        .with_context(|| format!("{name} warm-up"))?;
    let mut out = Vec::new();
    for &c in &o.concurrency {
        let total = puts_for(o, c);
        let r = run_load(target, c, total, home, value, b64, pids)
            .await
            .with_context(|| format!("{name} load at {c} clients"))?;
        eprintln!(
            "  {name:<6} c={c:<3} {:>6} puts  {:>9.1} writes/s  p50 {:>7.2} ms  p99 {:>7.2} ms  server cpu {:>5.0} us/write  errors {}",
            r.puts,
            r.rate(),
            r.pct_ms(50.0),
            r.pct_ms(99.0),
            r.cpu_us(),
            r.errors
        );
        out.push((c, r));
    }
    Ok(out)
}

/// What the failover rounds need of a 3-member cluster under test.
trait Members {
    fn daemons(&mut self) -> Vec<&mut Daemon>;
    async fn leader(&self) -> Result<usize>;
    async fn wait_rejoined(&self, i: usize) -> Result<()>;
    fn check_alive(&mut self) -> Result<()>;
}

impl Members for AetherCluster {
    fn daemons(&mut self) -> Vec<&mut Daemon> {
        self.nodes.iter_mut().map(|n| &mut n.daemon).collect()
    }
    async fn leader(&self) -> Result<usize> {
        AetherCluster::leader(self).await
    }
    async fn wait_rejoined(&self, i: usize) -> Result<()> {
        AetherCluster::wait_rejoined(self, i).await
    }
    fn check_alive(&mut self) -> Result<()> {
        AetherCluster::check_alive(self)
    }
}

impl Members for EtcdCluster {
    fn daemons(&mut self) -> Vec<&mut Daemon> {
        self.members.iter_mut().map(|m| &mut m.daemon).collect()
    }
    async fn leader(&self) -> Result<usize> {
        EtcdCluster::leader(self).await
    }
    async fn wait_rejoined(&self, i: usize) -> Result<()> {
        EtcdCluster::wait_rejoined(self, i).await
    }
    fn check_alive(&mut self) -> Result<()> {
        EtcdCluster::check_alive(self)
    }
}

/// Kill -9 the leader `rounds` times under a steady write load; each round measures the time
/// until a write sent after the kill is acknowledged, then restarts the killed member and waits
/// until it is back before the next kill.
#[allow(clippy::too_many_arguments)]
async fn failover_rounds<C: Members>(
    system: &str,
    cl: &mut C,
    rounds: usize,
    o: &Opts,
    target: &Target,
    value: &Arc<Vec<u8>>,
    b64: &Arc<String>,
) -> Result<Vec<Duration>> {
    eprintln!(
        "{system}: failover, {rounds} rounds of kill -9 of the leader under {} writing clients",
        o.failover_clients
    );
    let load = SteadyLoad::start(target, o.failover_clients, value, b64);
    let mut took_all = Vec::new();
    let r = async {
        for round in 1..=rounds {
            cl.check_alive()?;
            load.new_round();
            wait_ack_after(&load, Instant::now(), &format!("{system} takes writes before the kill")).await?;
            let l = cl.leader().await?;
            let killed_at = cl.daemons()[l].kill();
            let survivors = (0..3).filter(|i| *i != l).collect();
            let what = format!("the surviving {system} members acknowledge a write after the leader was killed");
            let took = match wait_failover(&load, survivors, killed_at, &what).await {
                Ok(t) => t,
                Err(e) => {
                    let logs: String = cl.daemons().iter().map(|d| format!("  {}:\n{}", d.name, d.log_tail())).collect();
                    return Err(e.context(logs));
                }
            };
            let restarted = Instant::now();
            cl.daemons()[l].start()?;
            if let Err(e) = cl.wait_rejoined(l).await {
                return Err(e.context(cl.daemons()[l].log_tail()));
            }
            tokio::time::sleep(o.settle).await;
            eprintln!(
                "  {system:<6} round {round:>2}: killed leader {}, writes acknowledged again after {:>6.1} ms; restarted, back after {:.1} s",
                cl.daemons()[l].name,
                took.as_secs_f64() * 1000.0,
                (restarted.elapsed() - o.settle).as_secs_f64()
            );
            took_all.push(took);
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    let errors = load.errors.load(Ordering::Relaxed);
    load.stop().await;
    r?;
    eprintln!("{system}: failover done ({errors} failed attempts retried by clients)");
    Ok(took_all)
}

async fn bench_aether(
    o: &Opts,
    base: &Path,
    ports: &mut Ports,
    value: &Arc<Vec<u8>>,
    b64: &Arc<String>,
) -> Result<SystemResult> {
    eprintln!("aether: starting 3 nodes ({})", o.aether_bin.display());
    let t = Instant::now();
    let mut cl = AetherCluster::start(&o.aether_bin, &base.join("aether"), ports).await?;
    eprintln!(
        "aether: 3 voters and a leader after {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let target = Target::Aether(cl.sockets());
    let pids = cl.pids();
    measure(
        "aether",
        &mut cl,
        &target,
        &pids,
        o.failover_rounds,
        o,
        value,
        b64,
    )
    .await
}

async fn bench_etcd(
    o: &Opts,
    base: &Path,
    ports: &mut Ports,
    value: &Arc<Vec<u8>>,
    b64: &Arc<String>,
) -> Result<SystemResult> {
    let version = Proc::new(&o.etcd_bin).arg("--version").output().map(|out| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    });
    let version = version.with_context(|| format!("cannot run '{}': install etcd (apt-get install etcd-server) or pass --etcd-bin / ETCD_BIN", o.etcd_bin.display()))?;
    eprintln!(
        "etcd: starting 3 members ({version}, election timeout {} ms)",
        o.etcd_election_ms
    );
    let t = Instant::now();
    let mut cl = EtcdCluster::start(&o.etcd_bin, &base.join("etcd"), ports, o.etcd_election_ms)?;
    cl.wait_healthy().await?;
    eprintln!(
        "etcd: 3 members and a leader after {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let target = Target::Etcd(cl.addrs());
    let pids = cl.pids();
    measure(
        "etcd",
        &mut cl,
        &target,
        &pids,
        o.etcd_failover_rounds,
        o,
        value,
        b64,
    )
    .await
}

/// The same measurement for both systems: the load at every concurrency, then `rounds` leader
/// kills, checking between them that no member died.
#[allow(clippy::too_many_arguments)]
async fn measure<C: Members>(
    system: &str,
    cl: &mut C,
    target: &Target,
    pids: &[u32],
    rounds: usize,
    o: &Opts,
    value: &Arc<Vec<u8>>,
    b64: &Arc<String>,
) -> Result<SystemResult> {
    let leader = cl.leader().await?;
    let mut res = SystemResult {
        loads: loads(o, target, leader, system, value, b64, pids).await?,
        ..Default::default()
    };
    cl.check_alive()?;
    if rounds > 0 {
        res.failover = failover_rounds(system, cl, rounds, o, target, value, b64).await?;
    }
    cl.check_alive()?;
    Ok(res)
}

fn print_report(o: &Opts, a: Option<&SystemResult>, e: Option<&SystemResult>) {
    fn cell(r: Option<&SystemResult>, c: usize) -> Option<&LoadResult> {
        r.and_then(|r| r.loads.iter().find(|(cc, _)| *cc == c).map(|(_, l)| l))
    }
    let fmt = |l: Option<&LoadResult>| match l {
        Some(l) => format!(
            "{:>9.0} {:>7.2} {:>7.2} {:>8.0}",
            l.rate(),
            l.pct_ms(50.0),
            l.pct_ms(99.0),
            l.cpu_us()
        ),
        None => format!("{:>9} {:>7} {:>7} {:>8}", "-", "-", "-", "-"),
    };
    println!();
    println!(
        "kv puts, 3 nodes each on 127.0.0.1, 8-byte keys, {}-byte values, each client its own connection, clients {}",
        o.value_bytes,
        if o.to_leader {
            "all on the leader"
        } else {
            "spread over the 3 nodes"
        }
    );
    println!("(cpu us/w: CPU time of the 3 server processes per write)");
    let head = |w: &str| format!("{w:>9} {:>7} {:>7} {:>8}", "p50 ms", "p99 ms", "cpu us/w");
    println!(
        "{:>7} {:>6} | {:<34} | {:<34} | {:>11}",
        "", "", "aether", "etcd", "aether/etcd"
    );
    println!(
        "{:>7} {:>6} | {} | {} | {:>11}",
        "clients",
        "puts",
        head("writes/s"),
        head("writes/s"),
        "writes/s"
    );
    for &c in &o.concurrency {
        let (la, le) = (cell(a, c), cell(e, c));
        let ratio = match (la, le) {
            (Some(x), Some(y)) => format!("{:>11.2}", x.rate() / y.rate()),
            _ => format!("{:>11}", "-"),
        };
        println!(
            "{:>7} {:>6} | {} | {} | {ratio}",
            c,
            puts_for(o, c),
            fmt(la),
            fmt(le)
        );
    }
    let errs: u64 = [a, e]
        .iter()
        .flatten()
        .flat_map(|r| r.loads.iter().map(|(_, l)| l.errors))
        .sum();
    if errs > 0 {
        println!("(retried failed attempts during the load runs: {errs})");
    }
    fn fo(r: Option<&SystemResult>) -> Option<(usize, f64, f64)> {
        let r = r?;
        if r.failover.is_empty() {
            return None;
        }
        let mut v = r.failover.clone();
        v.sort_unstable();
        Some((
            v.len(),
            percentile(&v, 50.0).as_secs_f64() * 1000.0,
            v.last().unwrap().as_secs_f64() * 1000.0,
        ))
    }
    let (fa, fe) = (fo(a), fo(e));
    if fa.is_some() || fe.is_some() {
        println!();
        println!(
            "failover: kill -9 of the leader until a write sent after the kill is acknowledged\n\
             ({} steady clients plus a one-shot write to a survivor every {} ms; the next kill once\n\
             the restarted node is back and caught up{})",
            o.failover_clients,
            PROBE_EVERY.as_millis(),
            if o.settle.is_zero() {
                String::new()
            } else {
                format!(", plus {} ms", o.settle.as_millis())
            }
        );
        println!(
            "{:>7} {:>6} {:>9} {:>9}",
            "system", "rounds", "p50 ms", "max ms"
        );
        for (name, f) in [("aether", fa), ("etcd", fe)] {
            if let Some((n, p50, max)) = f {
                println!("{name:>7} {n:>6} {p50:>9.0} {max:>9.0}");
            }
        }
        if let (Some(x), Some(y)) = (fa, fe) {
            println!(
                "aether/etcd failover time: p50 {:.2}, max {:.2}",
                x.1 / y.1,
                x.2 / y.2
            );
        }
        println!(
            "(election timeouts: aether 200-400 ms plus a 400 ms lease by default; etcd {}-{} ms)",
            o.etcd_election_ms,
            2 * o.etcd_election_ms
        );
    }
}

#[tokio::main]
async fn main() {
    let o = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    };
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            for pid in PIDS.lock().unwrap().iter() {
                // SAFETY: plain kill(2) of a child this process started.
                unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
            }
            eprintln!("interrupted: killed the nodes");
            std::process::exit(130);
        }
    });
    if let Err(e) = run(&o).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(o: &Opts) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("aether-kv-bench.")
        .tempdir()
        .context("cannot create a temp dir")?;
    // The temp dir is removed at the end (after every child is gone) unless --keep.
    let (base, _tmp) = if o.keep {
        (tmp.keep(), None)
    } else {
        (tmp.path().to_path_buf(), Some(tmp))
    };
    eprintln!(
        "working in {}{}",
        base.display(),
        if o.keep { " (kept)" } else { "" }
    );
    let mut ports = Ports(BTreeSet::new());
    let value: Arc<Vec<u8>> = Arc::new((0..o.value_bytes).map(|_| rand::random::<u8>()).collect());
    // harness = false runs no #[test]s: check the encoder here (RFC 4648 vectors).
    for (i, o) in [
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(i.as_bytes()), o, "base64 encoder is broken");
    }
    let b64 = Arc::new(base64(&value));
    let a = if o.run_aether {
        Some(bench_aether(o, &base, &mut ports, &value, &b64).await?)
    } else {
        None
    };
    let e = if o.run_etcd {
        Some(bench_etcd(o, &base, &mut ports, &value, &b64).await?)
    } else {
        None
    };
    print_report(o, a.as_ref(), e.as_ref());
    Ok(())
}
