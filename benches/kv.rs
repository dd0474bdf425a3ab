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
//! hand-written HTTP client below. Run it with `scripts/bench/kv.sh` (or
//! `cargo bench --bench kv -- --help`).

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Proc, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[path = "common/procstat.rs"]
mod procstat;

use aether::admin::client::Client;
use aether::admin::protocol::{AdminRequest, AdminResponse, StatusView};
use aether::raft::types::{Command, RequestId, Response};
use procstat::cpu_time;

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
// Child processes: every one is killed when its owner drops (also while unwinding a panic), and
// on Ctrl-C through the pid registry.

/// Pids of live children, for the Ctrl-C handler.
static PIDS: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// One supervised child process (an Aether node or an etcd member).
struct Daemon {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    fn new(name: &str, program: &Path, args: Vec<String>, log: PathBuf) -> Daemon {
        Daemon {
            name: name.into(),
            program: program.into(),
            args,
            log,
            child: None,
        }
    }

    /// Start it (again), appending its output to its log file.
    fn start(&mut self) -> Result<()> {
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
    fn kill(&mut self) -> Instant {
        let at = Instant::now();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            PIDS.lock().unwrap().remove(&c.id());
        }
        at
    }

    /// Fail if it exited on its own.
    fn check_alive(&mut self) -> Result<()> {
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
    fn ensure_running(&self) -> Result<()> {
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

    fn log_tail(&self) -> String {
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
struct Ports(BTreeSet<u16>);

impl Ports {
    fn tcp(&mut self) -> Result<u16> {
        for _ in 0..100 {
            let p = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            if self.0.insert(p) {
                return Ok(p);
            }
        }
        bail!("no free TCP port found on 127.0.0.1")
    }

    fn udp(&mut self) -> Result<u16> {
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
async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, every: Duration, mut f: F) -> Result<T>
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

// ---------------------------------------------------------------------------------------------
// Aether cluster.

struct AetherNode {
    name: String,
    dir: PathBuf,
    quic: SocketAddr,
    daemon: Daemon,
}

impl AetherNode {
    fn socket(&self) -> PathBuf {
        self.dir.join("aether.sock")
    }
}

struct AetherCluster {
    nodes: Vec<AetherNode>,
}

async fn aether_status(sock: &Path) -> Result<StatusView> {
    let mut c = Client::connect(sock).await?;
    match tokio::time::timeout(Duration::from_secs(3), c.call(&AdminRequest::Status))
        .await
        .map_err(|_| anyhow!("status timed out"))??
    {
        AdminResponse::Status(s) => Ok(*s),
        other => bail!("unexpected answer to Status: {other:?}"),
    }
}

impl AetherCluster {
    async fn start(bin: &Path, base: &Path, ports: &mut Ports) -> Result<AetherCluster> {
        if !bin.exists() {
            bail!(
                "aether binary '{}' not found: run 'cargo build --release' or pass --aether-bin / AETHER_BIN",
                bin.display()
            );
        }
        let mut nodes = Vec::new();
        for i in 1..=3 {
            let name = format!("n{i}");
            let dir = base.join(&name);
            let quic: SocketAddr = format!("127.0.0.1:{}", ports.udp()?).parse()?;
            let http = format!("127.0.0.1:{}", ports.tcp()?);
            let args = vec![
                "--data-dir".into(),
                dir.display().to_string(),
                "node".into(),
                "--name".into(),
                name.clone(),
                "--listen".into(),
                quic.to_string(),
                "--http".into(),
                http,
            ];
            let daemon = Daemon::new(
                &format!("aether {name}"),
                bin,
                args,
                base.join(format!("{name}.log")),
            );
            nodes.push(AetherNode {
                name,
                dir,
                quic,
                daemon,
            });
        }
        let mut cl = AetherCluster { nodes };
        cl.nodes[0].daemon.start()?;
        let sock1 = cl.nodes[0].socket();
        // Joins are refused until the founder has written the cluster record, which comes a
        // moment after it is ready.
        let n1 = &cl.nodes[0].daemon;
        wait_for(
            "aether n1 leads its new cluster and has written the cluster record",
            Duration::from_secs(30),
            Duration::from_millis(100),
            || {
                let sock1 = sock1.clone();
                async move {
                    n1.ensure_running()?;
                    let s = aether_status(&sock1).await?;
                    Ok((s.node.ready && s.cluster_id.is_some()).then_some(()))
                }
            },
        )
        .await
        .map_err(|e| e.context(n1.log_tail()))?;
        let token = {
            let mut c = Client::connect(&sock1).await?;
            match c
                .call(&AdminRequest::TokenCreate {
                    ttl_ms: Some(3_600_000),
                    uses: 2,
                })
                .await?
            {
                AdminResponse::Token(t) => t.token,
                other => bail!("unexpected answer to TokenCreate: {other:?}"),
            }
        };
        let first = cl.nodes[0].quic.to_string();
        for n in &mut cl.nodes[1..] {
            n.daemon.args.extend([
                "--join".into(),
                first.clone(),
                "--token".into(),
                token.clone(),
            ]);
            n.daemon.start()?;
        }
        let r = wait_for(
            "the aether cluster has 3 reachable voters and a leader",
            Duration::from_secs(60),
            Duration::from_millis(100),
            || {
                let (sock1, nodes) = (sock1.clone(), &cl.nodes);
                async move {
                    nodes.iter().try_for_each(|n| n.daemon.ensure_running())?;
                    Ok(healthy_aether(&aether_status(&sock1).await?).then_some(()))
                }
            },
        )
        .await;
        if let Err(e) = r {
            let logs: String = cl
                .nodes
                .iter()
                .map(|n| format!("  {}:\n{}", n.name, n.daemon.log_tail()))
                .collect();
            return Err(e.context(logs));
        }
        // A restart must not join again: drop --join/--token.
        for n in &mut cl.nodes[1..] {
            n.daemon.args.truncate(n.daemon.args.len() - 4);
        }
        Ok(cl)
    }

    /// Index of the current leader, asked of any live node.
    async fn leader(&self) -> Result<usize> {
        for n in &self.nodes {
            if n.daemon.child.is_none() {
                continue;
            }
            if let Ok(s) = aether_status(&n.socket()).await {
                if let Some(l) = s.leader {
                    return self
                        .nodes
                        .iter()
                        .position(|n| n.name == l.name)
                        .ok_or_else(|| anyhow!("unknown leader {}", l.name));
                }
            }
        }
        bail!("no node knows a leader")
    }

    fn pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(|n| n.daemon.child.as_ref().map(|c| c.id()))
            .collect()
    }

    fn sockets(&self) -> Vec<PathBuf> {
        self.nodes.iter().map(|n| n.socket()).collect()
    }

    fn check_alive(&mut self) -> Result<()> {
        self.nodes
            .iter_mut()
            .try_for_each(|n| n.daemon.check_alive())
    }

    /// Wait until the restarted node `i` is back: the leader replicates to it again (its matched
    /// index, as the leader sees it, reaches the leader's commit index as of the restart), it
    /// knows the leader and has applied what it knows to be committed, and the leader sees 3
    /// reachable voters.
    async fn wait_rejoined(&self, i: usize) -> Result<()> {
        let name = self.nodes[i].name.clone();
        let survivors: Vec<PathBuf> = (0..3)
            .filter(|j| *j != i)
            .map(|j| self.nodes[j].socket())
            .collect();
        let since = wait_for(
            "the surviving aether nodes know a leader",
            Duration::from_secs(30),
            Duration::from_millis(50),
            || async {
                for s in &survivors {
                    if let Ok(st) = aether_status(s).await {
                        if st.leader.is_some() {
                            return Ok(Some(st.commit_index.unwrap_or(0)));
                        }
                    }
                }
                Ok(None)
            },
        )
        .await?;
        wait_for(
            &format!(
                "aether {name} is back (the leader replicates to it past index {since}) and the cluster has 3 reachable voters"
            ),
            Duration::from_secs(60),
            Duration::from_millis(50),
            || async {
                self.nodes[i].daemon.ensure_running()?;
                let mine = aether_status(&self.nodes[i].socket()).await?;
                let Some(leader) = mine.leader.clone() else {
                    return Ok(None);
                };
                if !mine.node.ready {
                    return Ok(None);
                }
                let lnode = self
                    .nodes
                    .iter()
                    .find(|n| n.name == leader.name)
                    .ok_or_else(|| anyhow!("unknown leader {}", leader.name))?;
                let ls = aether_status(&lnode.socket()).await?;
                let matched = ls.members.iter().find(|m| m.name == name).and_then(|m| m.matched_index);
                let same_leader = ls.leader.as_ref().is_some_and(|l| l.name == leader.name);
                Ok((same_leader && healthy_aether(&ls) && matched.is_some_and(|m| m >= since)).then_some(()))
            },
        )
        .await
    }
}

/// 3 voters, all reachable, and a leader.
fn healthy_aether(s: &StatusView) -> bool {
    s.leader.is_some()
        && s.members
            .iter()
            .filter(|m| m.role == "voter" && m.reachable == Some(true))
            .count()
            == 3
}

// ---------------------------------------------------------------------------------------------
// etcd cluster and its HTTP/JSON client.

struct EtcdMember {
    client: SocketAddr,
    daemon: Daemon,
}

struct EtcdCluster {
    members: Vec<EtcdMember>,
}

/// Minimal HTTP/1.1 keep-alive client: one connection, one request at a time.
struct Http {
    stream: BufReader<TcpStream>,
    host: String,
    buf: Vec<u8>,
}

impl Http {
    async fn connect(addr: SocketAddr) -> std::io::Result<Http> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Http {
            stream: BufReader::new(s),
            host: addr.to_string(),
            buf: Vec::with_capacity(1024),
        })
    }

    /// POST a JSON body; answers the status code and the body.
    async fn post(&mut self, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        use std::io::{Error, ErrorKind::InvalidData};
        self.buf.clear();
        self.buf.extend_from_slice(
            format!("POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", self.host, body.len()).as_bytes(),
        );
        self.buf.extend_from_slice(body);
        self.stream.get_mut().write_all(&self.buf).await?;

        let mut line = String::new();
        if self.stream.read_line(&mut line).await? == 0 {
            return Err(Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::new(InvalidData, format!("bad status line {line:?}")))?;
        let (mut len, mut chunked, mut close) = (None, false, false);
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                return Err(Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed in headers",
                ));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                match k.as_str() {
                    "content-length" => len = v.parse::<usize>().ok(),
                    "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                    "connection" => close = v.eq_ignore_ascii_case("close"),
                    _ => {}
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.stream.read_line(&mut line).await?;
                let n = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| Error::new(InvalidData, "bad chunk size"))?;
                let start = body.len();
                body.resize(start + n, 0);
                self.stream.read_exact(&mut body[start..]).await?;
                let mut crlf = [0u8; 2];
                self.stream.read_exact(&mut crlf).await?;
                if n == 0 {
                    break;
                }
            }
        } else if let Some(n) = len {
            body.resize(n, 0);
            self.stream.read_exact(&mut body).await?;
        } else {
            return Err(Error::new(InvalidData, "response without length"));
        }
        if close {
            return Err(Error::new(
                std::io::ErrorKind::ConnectionAborted,
                format!("server closed the connection (status {status})"),
            ));
        }
        Ok((status, body))
    }
}

/// Standard base64 with padding.
fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// What `/v3/maintenance/status` says: (this member's id, the leader's id, raft index).
async fn etcd_status(addr: SocketAddr) -> Result<(u64, u64, u64)> {
    let mut h = tokio::time::timeout(Duration::from_secs(2), Http::connect(addr)).await??;
    let (code, body) = tokio::time::timeout(
        Duration::from_secs(3),
        h.post("/v3/maintenance/status", b"{}"),
    )
    .await??;
    if code != 200 {
        bail!("status {code}: {}", String::from_utf8_lossy(&body));
    }
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    // The gateway prints 64-bit integers as strings.
    let num = |v: &serde_json::Value| {
        v.as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .or_else(|| v.as_u64())
            .unwrap_or(0)
    };
    Ok((
        num(&v["header"]["member_id"]),
        num(&v["leader"]),
        num(&v["raftIndex"]),
    ))
}

impl EtcdCluster {
    fn start(bin: &Path, base: &Path, ports: &mut Ports, election_ms: u64) -> Result<EtcdCluster> {
        let mut spec = Vec::new();
        for i in 1..=3 {
            spec.push((format!("e{i}"), ports.tcp()?, ports.tcp()?));
        }
        let initial: Vec<String> = spec
            .iter()
            .map(|(n, _, p)| format!("{n}=http://127.0.0.1:{p}"))
            .collect();
        let mut members = Vec::new();
        for (name, cport, pport) in &spec {
            let args: Vec<String> = [
                "--name",
                name,
                "--data-dir",
                &base.join(name).display().to_string(),
                "--listen-client-urls",
                &format!("http://127.0.0.1:{cport}"),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{cport}"),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{pport}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{pport}"),
                "--initial-cluster",
                &initial.join(","),
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                "aether-bench",
                "--heartbeat-interval",
                "100",
                "--election-timeout",
                &election_ms.to_string(),
                "--logger",
                "zap",
                "--log-outputs",
                "stderr",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let mut daemon = Daemon::new(
                &format!("etcd {name}"),
                bin,
                args,
                base.join(format!("{name}.log")),
            );
            daemon.start().with_context(|| format!("is etcd installed? (apt-get install etcd-server, or pass --etcd-bin / ETCD_BIN '{}')", bin.display()))?;
            members.push(EtcdMember {
                client: format!("127.0.0.1:{cport}").parse()?,
                daemon,
            });
        }
        Ok(EtcdCluster { members })
    }

    /// Every listed member answers and all agree on one leader; answers the leader's index and
    /// raft index.
    async fn agreed_leader(&self, which: &[usize]) -> Result<Option<(usize, u64)>> {
        let mut ids = Vec::new();
        let mut leaders = BTreeSet::new();
        let mut indexes = Vec::new();
        for &i in which {
            let (id, leader, idx) = etcd_status(self.members[i].client).await?;
            ids.push((i, id));
            leaders.insert(leader);
            indexes.push(idx);
        }
        if leaders.len() != 1 || leaders.contains(&0) {
            return Ok(None);
        }
        let leader = *leaders.iter().next().unwrap();
        let Some(&(li, _)) = ids.iter().find(|(_, id)| *id == leader) else {
            return Ok(None);
        };
        Ok(Some((li, indexes.iter().copied().max().unwrap_or(0))))
    }

    async fn wait_healthy(&self) -> Result<()> {
        wait_for(
            "the 3 etcd members answer and agree on a leader",
            Duration::from_secs(60),
            Duration::from_millis(100),
            || async {
                self.members
                    .iter()
                    .try_for_each(|m| m.daemon.ensure_running())?;
                Ok(self.agreed_leader(&[0, 1, 2]).await?.map(|_| ()))
            },
        )
        .await
        .map_err(|e| {
            let logs: String = self
                .members
                .iter()
                .map(|m| format!("  {}:\n{}", m.daemon.name, m.daemon.log_tail()))
                .collect();
            e.context(logs)
        })
    }

    async fn leader(&self) -> Result<usize> {
        let alive: Vec<usize> = (0..3)
            .filter(|i| self.members[*i].daemon.child.is_some())
            .collect();
        self.agreed_leader(&alive)
            .await?
            .map(|(l, _)| l)
            .ok_or_else(|| anyhow!("etcd members do not agree on a leader"))
    }

    /// Wait until restarted member `i` is back: all 3 agree on a leader and it holds entries
    /// written after it restarted (the survivors' raft index then, plus a few), so the leader
    /// replicates to it again.
    async fn wait_rejoined(&self, i: usize) -> Result<()> {
        let survivors: Vec<usize> = (0..3).filter(|j| *j != i).collect();
        let (_, since) = wait_for(
            "the surviving etcd members agree on a leader",
            Duration::from_secs(30),
            Duration::from_millis(50),
            || self.agreed_leader(&survivors),
        )
        .await?;
        wait_for(
            &format!("etcd e{} is back (holds raft index {} or later) and all 3 members agree on a leader", i + 1, since + 10),
            Duration::from_secs(60),
            Duration::from_millis(50),
            || async move {
                self.members[i].daemon.ensure_running()?;
                if self.agreed_leader(&[0, 1, 2]).await?.is_none() {
                    return Ok(None);
                }
                let (_, _, mine) = etcd_status(self.members[i].client).await?;
                Ok((mine >= since + 10).then_some(()))
            },
        )
        .await
    }

    fn pids(&self) -> Vec<u32> {
        self.members
            .iter()
            .filter_map(|m| m.daemon.child.as_ref().map(|c| c.id()))
            .collect()
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.members.iter().map(|m| m.client).collect()
    }

    fn check_alive(&mut self) -> Result<()> {
        self.members
            .iter_mut()
            .try_for_each(|m| m.daemon.check_alive())
    }
}

// ---------------------------------------------------------------------------------------------
// Load: one connection per client, to either system.

#[derive(Clone)]
enum Target {
    Aether(Vec<PathBuf>),
    Etcd(Vec<SocketAddr>),
}

impl Target {
    fn len(&self) -> usize {
        match self {
            Target::Aether(v) => v.len(),
            Target::Etcd(v) => v.len(),
        }
    }
}

enum Conn {
    Aether { c: Client, id: RequestId },
    Etcd(Http),
}

/// A client connection and where it goes; reconnects (to the next node when its own is down).
struct Worker {
    target: Target,
    home: usize,
    at: usize,
    conn: Option<Conn>,
    client_id: u128,
    serial: u64,
    value: Arc<Vec<u8>>,
    value_b64: Arc<String>,
}

impl Worker {
    fn new(target: Target, home: usize, value: Arc<Vec<u8>>, value_b64: Arc<String>) -> Worker {
        Worker {
            target,
            home,
            at: home,
            conn: None,
            client_id: rand::random(),
            serial: 0,
            value,
            value_b64,
        }
    }

    async fn connect(&mut self) -> Result<()> {
        let n = self.target.len();
        let mut last = None;
        for k in 0..n {
            let i = (self.at + k) % n;
            let r = match &self.target {
                Target::Aether(socks) => Client::connect(&socks[i])
                    .await
                    .map(|c| Conn::Aether {
                        c,
                        id: RequestId {
                            client: self.client_id,
                            serial: 0,
                        },
                    })
                    .map_err(|e| anyhow!(e)),
                Target::Etcd(addrs) => Http::connect(addrs[i])
                    .await
                    .map(Conn::Etcd)
                    .map_err(|e| anyhow!(e)),
            };
            match r {
                Ok(c) => {
                    self.conn = Some(c);
                    self.at = i;
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("no nodes")))
    }

    /// Go back to the home node on the next connect.
    fn go_home(&mut self) {
        if self.at != self.home {
            self.at = self.home;
            self.conn = None;
        }
    }

    /// Start a new logical write (a new request id for Aether).
    fn next_write(&mut self) {
        self.serial += 1;
    }

    /// One attempt at the current write. On error the connection is dropped, so the next attempt
    /// reconnects; Aether retries keep the request id, so a write applies once.
    async fn attempt(&mut self, key: &str, timeout: Duration) -> Result<()> {
        if self.conn.is_none() {
            self.connect().await?;
        }
        let serial = self.serial;
        let r = tokio::time::timeout(timeout, async {
            match self.conn.as_mut().expect("connected") {
                Conn::Aether { c, id } => {
                    id.serial = serial;
                    let req = AdminRequest::Write {
                        id: *id,
                        cmd: Command::Put {
                            key: key.to_string(),
                            value: self.value.to_vec(),
                        },
                    };
                    match c.call(&req).await? {
                        AdminResponse::Written(Response::Refused(m)) => bail!("refused: {m}"),
                        AdminResponse::Written(_) => Ok(()),
                        other => bail!("unexpected answer {other:?}"),
                    }
                }
                Conn::Etcd(h) => {
                    let body = format!(
                        r#"{{"key":"{}","value":"{}"}}"#,
                        base64(key.as_bytes()),
                        self.value_b64
                    );
                    let (code, resp) = h.post("/v3/kv/put", body.as_bytes()).await?;
                    if code != 200 || !resp.starts_with(b"{\"header\"") {
                        bail!("etcd answered {code}: {}", String::from_utf8_lossy(&resp));
                    }
                    Ok(())
                }
            }
        })
        .await
        .unwrap_or_else(|_| Err(anyhow!("no answer within {timeout:?}")));
        if r.is_err() {
            self.conn = None;
        }
        r
    }
}

/// Results of one load run.
struct LoadResult {
    puts: u64,
    errors: u64,
    elapsed: Duration,
    lat: Vec<Duration>,
    /// CPU time the 3 server processes used during the run.
    server_cpu: Duration,
}

impl LoadResult {
    /// Server CPU per write, in microseconds.
    fn cpu_us(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.puts as f64
    }

    fn rate(&self) -> f64 {
        self.puts as f64 / self.elapsed.as_secs_f64()
    }
    fn pct_ms(&self, p: f64) -> f64 {
        percentile(&self.lat, p).as_secs_f64() * 1000.0
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Keys: 8 bytes, hex of a counter shared by every run, so every put writes a new key.
static NEXT_KEY: AtomicU64 = AtomicU64::new(0);

fn key(n: u64) -> String {
    format!("{:08x}", n as u32)
}

/// `clients` clients, each with its own connection (client i to node `home(i)`), put `total`
/// keys between them; latency is per put, from first send to acknowledgement.
async fn run_load(
    target: &Target,
    clients: usize,
    total: u64,
    home: impl Fn(usize) -> usize,
    value: &Arc<Vec<u8>>,
    value_b64: &Arc<String>,
    pids: &[u32],
) -> Result<LoadResult> {
    let mut workers = Vec::new();
    for i in 0..clients {
        let mut w = Worker::new(target.clone(), home(i), value.clone(), value_b64.clone());
        w.connect().await.context("connecting a client")?;
        workers.push(w);
    }
    let remaining = Arc::new(AtomicU64::new(total));
    let errors = Arc::new(AtomicU64::new(0));
    let cpu0 = cpu_time(pids);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut w in workers {
        let (remaining, errors) = (remaining.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while remaining
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1))
                .is_ok()
            {
                let k = key(NEXT_KEY.fetch_add(1, Ordering::Relaxed));
                w.next_write();
                let t0 = Instant::now();
                let mut tries = 0;
                loop {
                    match w.attempt(&k, Duration::from_secs(10)).await {
                        Ok(()) => break,
                        Err(e) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            tries += 1;
                            if tries >= 20 {
                                return Err(e.context(format!("put {k} failed {tries} times")));
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                lat.push(t0.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut lat = Vec::with_capacity(total as usize);
    for t in tasks {
        lat.extend(t.await??);
    }
    let elapsed = start.elapsed();
    lat.sort_unstable();
    let server_cpu = cpu_time(pids).saturating_sub(cpu0);
    Ok(LoadResult {
        puts: total,
        errors: errors.load(Ordering::Relaxed),
        elapsed,
        lat,
        server_cpu,
    })
}

/// A light steady load for failover: acknowledged writes are recorded as (sent, acked).
struct SteadyLoad {
    stop: Arc<AtomicBool>,
    /// Bumped once a round: clients go back to their own node.
    epoch: Arc<AtomicU64>,
    acks: Arc<Mutex<Vec<(Instant, Instant)>>>,
    errors: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    target: Target,
    value: Arc<Vec<u8>>,
    value_b64: Arc<String>,
}

/// During a failover, a fresh one-shot write is sent this often to a surviving node, so the
/// measured time does not hinge on when a steady client happens to give up on a stuck request.
const PROBE_EVERY: Duration = Duration::from_millis(20);

impl SteadyLoad {
    fn start(
        target: &Target,
        clients: usize,
        value: &Arc<Vec<u8>>,
        value_b64: &Arc<String>,
    ) -> SteadyLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let epoch = Arc::new(AtomicU64::new(0));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(AtomicU64::new(0));
        let n = target.len();
        let tasks = (0..clients)
            .map(|i| {
                let mut w = Worker::new(target.clone(), i % n, value.clone(), value_b64.clone());
                let (stop, epoch, acks, errors) =
                    (stop.clone(), epoch.clone(), acks.clone(), errors.clone());
                tokio::spawn(async move {
                    let mut seen = 0;
                    w.next_write();
                    // A failed write is retried with the same key (and, for Aether, request id).
                    let mut k = key(NEXT_KEY.fetch_add(1, Ordering::Relaxed));
                    while !stop.load(Ordering::Relaxed) {
                        let e = epoch.load(Ordering::Relaxed);
                        if e != seen {
                            seen = e;
                            w.go_home();
                        }
                        let sent = Instant::now();
                        // A client that hears nothing for 1 s gives up on that connection and
                        // tries again (the same request id, for Aether).
                        match w.attempt(&k, Duration::from_secs(1)).await {
                            Ok(()) => {
                                acks.lock().unwrap().push((sent, Instant::now()));
                                w.next_write();
                                k = key(NEXT_KEY.fetch_add(1, Ordering::Relaxed));
                            }
                            Err(_) => {
                                errors.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                        }
                    }
                })
            })
            .collect();
        SteadyLoad {
            stop,
            epoch,
            acks,
            errors,
            tasks,
            target: target.clone(),
            value: value.clone(),
            value_b64: value_b64.clone(),
        }
    }

    /// Until `done`, every [`PROBE_EVERY`] send one new write on a new connection to the next of
    /// `survivors`; its acknowledgement is recorded like the steady clients'.
    fn probe(&self, survivors: Vec<usize>, done: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
        let (target, value, b64, acks) = (
            self.target.clone(),
            self.value.clone(),
            self.value_b64.clone(),
            self.acks.clone(),
        );
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut i = 0;
            while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
                let mut w = Worker::new(
                    target.clone(),
                    survivors[i % survivors.len()],
                    value.clone(),
                    b64.clone(),
                );
                let acks = acks.clone();
                tokio::spawn(async move {
                    w.next_write();
                    let k = key(NEXT_KEY.fetch_add(1, Ordering::Relaxed));
                    let sent = Instant::now();
                    if w.attempt(&k, Duration::from_secs(5)).await.is_ok() {
                        acks.lock().unwrap().push((sent, Instant::now()));
                    }
                });
                i += 1;
                tokio::time::sleep(PROBE_EVERY).await;
            }
        })
    }

    /// Start a round: clients go back to their own nodes, old acknowledgements are dropped.
    fn new_round(&self) {
        self.epoch.fetch_add(1, Ordering::Relaxed);
        self.acks.lock().unwrap().clear();
    }

    /// The first acknowledgement of a write sent at or after `t`.
    fn first_ack_after(&self, t: Instant) -> Option<Instant> {
        self.acks
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, _)| *s >= t)
            .map(|(_, a)| *a)
            .min()
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// After a kill at `t`: probe the survivors and wait until a write sent after `t` is
/// acknowledged; answers how long after `t` that was.
async fn wait_failover(
    load: &SteadyLoad,
    survivors: Vec<usize>,
    t: Instant,
    what: &str,
) -> Result<Duration> {
    let done = Arc::new(AtomicBool::new(false));
    let prober = load.probe(survivors, done.clone());
    let r = wait_ack_after(load, t, what).await;
    done.store(true, Ordering::Relaxed);
    let _ = prober.await;
    r
}

/// Wait until a write sent after `t` is acknowledged; answers how long after `t` that was.
async fn wait_ack_after(load: &SteadyLoad, t: Instant, what: &str) -> Result<Duration> {
    wait_for(
        what,
        Duration::from_secs(30),
        Duration::from_millis(5),
        || async { Ok(load.first_ack_after(t)) },
    )
    .await?;
    // Acks are pushed by several clients; give late pushers a moment, then take the earliest.
    tokio::time::sleep(Duration::from_millis(20)).await;
    Ok(load.first_ack_after(t).expect("seen above") - t)
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
