//! Concurrent clients and their history: each client puts and gets keys through one node's admin
//! socket and records every operation (invocation and outcome, ordered by one global counter);
//! afterwards each key's history is checked as a register with stateright's
//! `LinearizabilityTester`.
//!
//! Outcomes: an answer is recorded as it came. A read that failed had no effect and is left out.
//! A write that failed with an error that may come after it was proposed (no quorum within the
//! timeout, a lost connection, the client's own timeout) is *unknown*: it stays in flight forever
//! (it may take effect at any later point, or never), and that client goes on under a new thread
//! id, as Jepsen does. Only a write refused before it reached Raft (an invalid request) is
//! dropped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aether::admin::client::Client;
use aether::admin::protocol::{AdminRequest, AdminResponse, ErrorKind, ReadQuery, ReadResult};
use aether::raft::types::{Command, RequestId, Response};
use stateright::semantics::register::{Register, RegisterOp, RegisterRet};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester};

pub type Val = Option<String>;

/// The client number of the final reads.
const FINAL_READER: usize = 999;

/// Operations per key: the tester's search grows exponentially with a key's concurrent
/// operations, so keys rotate after this many invocations.
pub const OPS_PER_KEY: u64 = 12;
/// How long a client waits for an answer before it counts the operation as unknown (longer than
/// the nodes' write timeout, so a node's own answer usually comes first).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub enum Outcome {
    /// Still waiting (only while the clients run).
    Pending,
    /// Answered, at this point of the global order.
    Done(RegisterRet<Val>, u64),
    /// Had no effect: left out of the history.
    Failed(String),
    /// May or may not take effect: in flight forever.
    Unknown(String),
}

#[derive(Clone, Debug)]
pub struct Op {
    /// The tester's thread id (a client's incarnation).
    pub thread: u64,
    pub client: usize,
    /// The node whose admin socket got the request.
    pub node: usize,
    pub key: String,
    pub op: RegisterOp<Val>,
    /// Invocation, in the global order.
    pub invoked: u64,
    pub outcome: Outcome,
}

/// Every operation of a run, and marks (nemesis events) on the same order.
#[derive(Default)]
pub struct History {
    seq: AtomicU64,
    threads: AtomicU64,
    pub ops: Mutex<Vec<Op>>,
    pub marks: Mutex<Vec<(u64, String)>>,
}

impl History {
    /// The next point of the global order: taken before a request is sent and after its answer
    /// came, so an operation that ended before another began has the smaller numbers.
    pub fn tick(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::SeqCst)
    }

    pub fn new_thread(&self) -> u64 {
        self.threads.fetch_add(1, Ordering::SeqCst)
    }

    /// Note a nemesis event; returns its point in the order.
    pub fn mark(&self, what: &str) -> u64 {
        let at = self.tick();
        self.marks.lock().unwrap().push((at, what.to_string()));
        eprintln!("[faults] #{at} {what}");
        at
    }

    fn invoke(
        &self,
        thread: u64,
        client: usize,
        node: usize,
        key: &str,
        op: RegisterOp<Val>,
    ) -> usize {
        let invoked = self.tick();
        let mut ops = self.ops.lock().unwrap();
        ops.push(Op {
            thread,
            client,
            node,
            key: key.to_string(),
            op,
            invoked,
            outcome: Outcome::Pending,
        });
        ops.len() - 1
    }

    fn end(&self, i: usize, outcome: Outcome) {
        self.ops.lock().unwrap()[i].outcome = outcome;
    }

    fn done(&self, i: usize, ret: RegisterRet<Val>) {
        let at = self.tick();
        self.end(i, Outcome::Done(ret, at));
    }

    /// Acknowledged writes and answered reads so far.
    pub fn answered(&self) -> usize {
        self.ops
            .lock()
            .unwrap()
            .iter()
            .filter(|o| matches!(o.outcome, Outcome::Done(..)))
            .count()
    }

    pub fn counts(&self) -> String {
        let ops = self.ops.lock().unwrap();
        let n = |f: &dyn Fn(&Op) -> bool| ops.iter().filter(|o| f(o)).count();
        let write = |o: &Op| matches!(o.op, RegisterOp::Write(_));
        let keys: std::collections::BTreeSet<&str> = ops.iter().map(|o| o.key.as_str()).collect();
        format!(
            "{} operations on {} keys: {} writes acknowledged, {} writes unknown, {} reads answered, {} reads failed",
            ops.len(),
            keys.len(),
            n(&|o| write(o) && matches!(o.outcome, Outcome::Done(..))),
            n(&|o| write(o) && matches!(o.outcome, Outcome::Unknown(_) | Outcome::Pending)),
            n(&|o| !write(o) && matches!(o.outcome, Outcome::Done(..))),
            n(&|o| !write(o) && matches!(o.outcome, Outcome::Failed(_))),
        )
    }

    /// Check every key's history; `Err` lists the keys that are not linearizable, each with its
    /// history in order.
    pub fn check(&self) -> Result<usize, String> {
        let ops = self.ops.lock().unwrap().clone();
        let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
        for o in &ops {
            by_key.entry(&o.key).or_default().push(o);
        }
        let mut bad = String::new();
        for (key, ops) in &by_key {
            if !linearizable(ops) {
                let _ = writeln!(bad, "key {key} is not linearizable; its history:");
                bad.push_str(&render(ops, &self.marks.lock().unwrap()));
            }
        }
        if bad.is_empty() {
            Ok(by_key.len())
        } else {
            Err(bad)
        }
    }
}

/// One key's operations as a register history for the tester, events in the global order.
fn linearizable(ops: &[&Op]) -> bool {
    enum Ev {
        Invoke(u64, RegisterOp<Val>),
        Return(u64, RegisterRet<Val>),
    }
    let mut evs: Vec<(u64, Ev)> = Vec::new();
    for o in ops {
        match &o.outcome {
            Outcome::Failed(_) => {}
            Outcome::Pending | Outcome::Unknown(_) => {
                evs.push((o.invoked, Ev::Invoke(o.thread, o.op.clone())));
            }
            Outcome::Done(ret, at) => {
                evs.push((o.invoked, Ev::Invoke(o.thread, o.op.clone())));
                evs.push((*at, Ev::Return(o.thread, ret.clone())));
            }
        }
    }
    evs.sort_by_key(|(at, _)| *at);
    let mut t = LinearizabilityTester::<u64, Register<Val>>::new(Register(None));
    for (_, ev) in evs {
        let r = match ev {
            Ev::Invoke(th, op) => t.on_invoke(th, op).map(|_| ()),
            Ev::Return(th, ret) => t.on_return(th, ret).map(|_| ()),
        };
        if let Err(e) = r {
            panic!("the recorded history is malformed: {e}");
        }
    }
    t.is_consistent()
}

/// A key's history, one line per operation, with the nemesis marks between.
pub fn render(ops: &[&Op], marks: &[(u64, String)]) -> String {
    let mut lines: Vec<(u64, String)> = Vec::new();
    let first = ops.iter().map(|o| o.invoked).min().unwrap_or(0);
    // The final read comes long after: the marks up to the clients' last operation only.
    let last = ops
        .iter()
        .filter(|o| o.client != FINAL_READER)
        .map(|o| match &o.outcome {
            Outcome::Done(_, at) => *at,
            _ => o.invoked,
        })
        .max()
        .unwrap_or(0);
    for o in ops {
        let what = match &o.op {
            RegisterOp::Write(v) => format!("write {}", show(v)),
            RegisterOp::Read => "read".to_string(),
        };
        let out = match &o.outcome {
            Outcome::Done(RegisterRet::WriteOk, at) => format!("ok at #{at}"),
            Outcome::Done(RegisterRet::ReadOk(v), at) => format!("-> {} at #{at}", show(v)),
            Outcome::Failed(m) => format!("failed (no effect, left out): {m}"),
            Outcome::Unknown(m) => format!("unknown (in flight forever): {m}"),
            Outcome::Pending => "pending".into(),
        };
        lines.push((
            o.invoked,
            format!(
                "  #{:<6} thread {:<4} client {} via n{}: {what} {out}\n",
                o.invoked,
                o.thread,
                o.client,
                o.node + 1
            ),
        ));
    }
    // The marks during these operations, and the last one before them.
    let before = marks
        .iter()
        .filter(|(at, _)| *at < first)
        .max_by_key(|(at, _)| *at);
    let during = marks.iter().filter(|(at, _)| *at >= first && *at <= last);
    for (at, m) in before.into_iter().chain(during) {
        lines.push((*at, format!("  #{at:<6} ---- {m}\n")));
    }
    lines.sort_by_key(|(at, _)| *at);
    lines.into_iter().map(|(_, l)| l).collect()
}

fn show(v: &Val) -> String {
    v.as_deref().unwrap_or("(none)").to_string()
}

/// The clients of a run: `per_node` per node, each on its own node's admin socket, until
/// stopped (or for at most `limit`).
pub struct Workload {
    pub history: Arc<History>,
    stop: Arc<AtomicBool>,
    rt: Option<tokio::runtime::Runtime>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    sockets: Vec<PathBuf>,
    keys: Arc<AtomicU64>,
    prefix: String,
}

impl Workload {
    pub fn start(sockets: &[PathBuf], per_node: usize, prefix: &str, limit: Duration) -> Workload {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let history = Arc::new(History::default());
        let stop = Arc::new(AtomicBool::new(false));
        let keys = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for k in 0..per_node {
            for (node, sock) in sockets.iter().enumerate() {
                let client = k * sockets.len() + node;
                let c = ClientLoop {
                    client,
                    node,
                    sock: sock.clone(),
                    history: history.clone(),
                    stop: stop.clone(),
                    keys: keys.clone(),
                    prefix: prefix.to_string(),
                    limit,
                    max_ops: u64::MAX,
                    mode: Mode::Mixed,
                    key: None,
                };
                tasks.push(rt.spawn(c.run()));
            }
        }
        Workload {
            history,
            stop,
            rt: Some(rt),
            tasks,
            sockets: sockets.to_vec(),
            keys,
            prefix: prefix.to_string(),
        }
    }

    /// `n` more clients that each send one write of `key` through `node` at once, and one that
    /// reads recent keys through it for `reads_for` (recorded like the others'): e.g. aimed at
    /// a node cut off from the others. The writes are on a key of their own, so nobody else's
    /// write can hide one that was acknowledged and then lost: the final read sees it.
    pub fn burst(&mut self, node: usize, n: usize, key: &str, reads_for: Duration) {
        let rt = self.rt.as_ref().unwrap();
        for k in 0..=n {
            let reader = k == n;
            let c = ClientLoop {
                client: 1000 + self.tasks.len() * 10 + k,
                node,
                sock: self.sockets[node].clone(),
                history: self.history.clone(),
                stop: self.stop.clone(),
                keys: self.keys.clone(),
                prefix: self.prefix.clone(),
                limit: if reader {
                    reads_for
                } else {
                    CLIENT_TIMEOUT * 2
                },
                max_ops: if reader { u64::MAX } else { 1 },
                mode: if reader { Mode::Reads } else { Mode::Writes },
                key: (!reader).then(|| key.to_string()),
            };
            self.tasks.push(rt.spawn(c.run()));
        }
    }

    /// Stop the clients and wait for their last operations (each ends within its timeout);
    /// then read every key once more (through the first node that answers), so that a write
    /// acknowledged and then lost shows in its key's history even when no client read that key
    /// after it.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let rt = self.rt.take().unwrap();
        for t in self.tasks.drain(..) {
            rt.block_on(t).unwrap();
        }
        let keys: std::collections::BTreeSet<String> = self
            .history
            .ops
            .lock()
            .unwrap()
            .iter()
            .map(|o| o.key.clone())
            .collect();
        rt.block_on(self.final_reads(keys));
        rt.shutdown_background();
    }

    async fn final_reads(&self, keys: std::collections::BTreeSet<String>) {
        let h = &self.history;
        let thread = h.new_thread();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        for key in keys {
            loop {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the final reads did not finish within 30 s"
                );
                let mut answered = false;
                for (node, sock) in self.sockets.iter().enumerate() {
                    let Ok(mut c) = Client::connect(sock).await else {
                        continue;
                    };
                    let i = h.invoke(thread, FINAL_READER, node, &key, RegisterOp::Read);
                    let req = AdminRequest::Read(ReadQuery::KvGet { key: key.clone() });
                    match tokio::time::timeout(CLIENT_TIMEOUT, c.call(&req)).await {
                        Ok(Ok(AdminResponse::Read(ReadResult::Value(v)))) => {
                            let v = v.map(|b| String::from_utf8(b).unwrap());
                            h.done(i, RegisterRet::ReadOk(v));
                            answered = true;
                            break;
                        }
                        _ => h.end(i, Outcome::Failed("final read failed".into())),
                    }
                }
                if answered {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

struct ClientLoop {
    client: usize,
    node: usize,
    sock: PathBuf,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
    keys: Arc<AtomicU64>,
    prefix: String,
    limit: Duration,
    /// Operations to send, at most.
    max_ops: u64,
    mode: Mode,
    /// One key for every operation instead of the rotating ones.
    key: Option<String>,
}

/// What a client sends.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Writes and reads, half each.
    Mixed,
    Writes,
    Reads,
}

/// Reads go to the current key or one of the few before it (chosen at random), so that a read
/// served from a stale replica meets writes that ended before it began.
const READ_BACK: u64 = 3;

impl ClientLoop {
    async fn run(self) {
        let h = &self.history;
        let start = tokio::time::Instant::now();
        let mut thread = h.new_thread();
        let mut conn: Option<Client> = None;
        let mut n = 0u64;
        while !self.stop.load(Ordering::SeqCst) && start.elapsed() < self.limit && n < self.max_ops
        {
            let c = match conn.take() {
                Some(c) => c,
                None => match Client::connect(&self.sock).await {
                    Ok(c) => c,
                    // Nothing was sent: the node is down. Try again shortly.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let mut c = c;
            n += 1;
            let write = match self.mode {
                Mode::Mixed => rand::random::<bool>(),
                Mode::Writes => true,
                Mode::Reads => false,
            };
            let key = match &self.key {
                Some(k) => k.clone(),
                None => {
                    let mut k = self.keys.fetch_add(1, Ordering::SeqCst) / OPS_PER_KEY;
                    if !write {
                        k = k.saturating_sub(rand::random_range(0..=READ_BACK));
                    }
                    format!("{}-{k:05}", self.prefix)
                }
            };
            if write {
                let value = format!("c{}-{n}", self.client);
                let i = h.invoke(
                    thread,
                    self.client,
                    self.node,
                    &key,
                    RegisterOp::Write(Some(value.clone())),
                );
                let req = AdminRequest::Write {
                    id: RequestId::new_random(),
                    cmd: Command::Put {
                        key,
                        value: value.into_bytes(),
                    },
                };
                match tokio::time::timeout(CLIENT_TIMEOUT, c.call(&req)).await {
                    Ok(Ok(AdminResponse::Written(Response::Refused(m)))) => {
                        // Applied and refused by the state machine: no effect on the key.
                        h.end(i, Outcome::Failed(format!("refused: {m}")));
                        conn = Some(c);
                    }
                    Ok(Ok(AdminResponse::Written(_))) => {
                        h.done(i, RegisterRet::WriteOk);
                        conn = Some(c);
                    }
                    Ok(Ok(other)) => panic!("a write answered with {other:?}"),
                    Ok(Err(e)) if e.kind == ErrorKind::Invalid => {
                        h.end(i, Outcome::Failed(format!("invalid: {}", e.message)));
                        conn = Some(c);
                    }
                    Ok(Err(e)) => {
                        h.end(
                            i,
                            Outcome::Unknown(format!("{:?}: {}", e.kind, short(&e.message))),
                        );
                        thread = h.new_thread();
                    }
                    Err(_) => {
                        h.end(
                            i,
                            Outcome::Unknown(format!("no answer within {CLIENT_TIMEOUT:?}")),
                        );
                        thread = h.new_thread();
                    }
                }
            } else {
                let i = h.invoke(thread, self.client, self.node, &key, RegisterOp::Read);
                let req = AdminRequest::Read(ReadQuery::KvGet { key });
                match tokio::time::timeout(CLIENT_TIMEOUT, c.call(&req)).await {
                    Ok(Ok(AdminResponse::Read(ReadResult::Value(v)))) => {
                        let v = v.map(|b| String::from_utf8(b).unwrap());
                        h.done(i, RegisterRet::ReadOk(v));
                        conn = Some(c);
                    }
                    Ok(Ok(other)) => panic!("a read answered with {other:?}"),
                    // A read changes nothing: a failed one is left out of the history.
                    Ok(Err(e)) => {
                        h.end(
                            i,
                            Outcome::Failed(format!("{:?}: {}", e.kind, short(&e.message))),
                        );
                        // The tester needs no new thread: the read is dropped, not in flight.
                    }
                    Err(_) => {
                        h.end(
                            i,
                            Outcome::Failed(format!("no answer within {CLIENT_TIMEOUT:?}")),
                        );
                    }
                }
            }
            // A reader aimed at one node goes slower: a stale replica answers at once, and the
            // tester's search grows with every operation on a key.
            let pause = if self.mode == Mode::Reads { 100 } else { 10 };
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }
}

fn short(m: &str) -> &str {
    m.get(..120).unwrap_or(m)
}
