//! Load generators of the kv benchmark: one connection per client to either system, a measured
//! run of puts, and the light steady load (with probes) under which leaders are killed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use aether::admin::client::Client;
use aether::admin::protocol::{AdminRequest, AdminResponse};
use aether::raft::types::{Command, RequestId, Response};

use crate::daemon::wait_for;
use crate::etcd::{Http, base64};
use crate::procstat::cpu_time;

#[derive(Clone)]
pub(crate) enum Target {
    Aether(Vec<PathBuf>),
    Etcd(Vec<SocketAddr>),
}

impl Target {
    pub(crate) fn len(&self) -> usize {
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
pub(crate) struct LoadResult {
    pub(crate) puts: u64,
    pub(crate) errors: u64,
    elapsed: Duration,
    lat: Vec<Duration>,
    /// CPU time the 3 server processes used during the run.
    server_cpu: Duration,
}

impl LoadResult {
    /// Server CPU per write, in microseconds.
    pub(crate) fn cpu_us(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.puts as f64
    }

    pub(crate) fn rate(&self) -> f64 {
        self.puts as f64 / self.elapsed.as_secs_f64()
    }
    pub(crate) fn pct_ms(&self, p: f64) -> f64 {
        percentile(&self.lat, p).as_secs_f64() * 1000.0
    }
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
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
pub(crate) async fn run_load(
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
pub(crate) struct SteadyLoad {
    stop: Arc<AtomicBool>,
    /// Bumped once a round: clients go back to their own node.
    epoch: Arc<AtomicU64>,
    acks: Arc<Mutex<Vec<(Instant, Instant)>>>,
    pub(crate) errors: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    target: Target,
    value: Arc<Vec<u8>>,
    value_b64: Arc<String>,
}

/// During a failover, a fresh one-shot write is sent this often to a surviving node, so the
/// measured time does not hinge on when a steady client happens to give up on a stuck request.
pub(crate) const PROBE_EVERY: Duration = Duration::from_millis(20);

impl SteadyLoad {
    pub(crate) fn start(
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
    pub(crate) fn new_round(&self) {
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

    pub(crate) async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// After a kill at `t`: probe the survivors and wait until a write sent after `t` is
/// acknowledged; answers how long after `t` that was.
pub(crate) async fn wait_failover(
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
pub(crate) async fn wait_ack_after(load: &SteadyLoad, t: Instant, what: &str) -> Result<Duration> {
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
