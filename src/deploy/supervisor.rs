//! The supervisor (DESIGN §8): runs each instance assigned to this node as a child process.
//!
//! One task per instance drives LOAD (working dir, port, environment, log file) → ACTIVATE
//! (spawn; wait for the first passing health check) → ACTIVE (keep checking). A crash, or
//! `threshold` failed checks in a row, restarts it after an exponential backoff. Stopping sends
//! SIGTERM to the instance's process group and SIGKILL after the slice's `stop_timeout`; after
//! any exit the rest of the group is killed, so an instance's children go with it. Output goes
//! to its log file. Every transition is sent to the reporter (see `deploy::node`).
//!
//! Daemon restarts: instances do not outlive the daemon. Each child gets SIGKILL when the
//! daemon dies (`PR_SET_PDEATHSIG`), and each process group is recorded in
//! `<data-dir>/run/`; a restarted daemon kills whatever is left of the groups recorded by its
//! previous run before it starts anything, then starts what is assigned to it afresh. So a
//! `kill -9` of the daemon leaves no orphan and no duplicate.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::logs::{self, LogFile};
use crate::config::DeployConfig;
use crate::domain::{HealthCheck, InstanceState, InstanceStatus, NodeId, Probe, Slice, now_millis};

/// What the supervisor tells the reporter.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Status(InstanceStatus),
    /// The instance no longer runs here.
    Gone(String),
}

/// What one instance runs: the parts of its slice whose change needs a restart, and the
/// placement it runs for.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// `blueprint/slice/index`.
    pub instance: String,
    /// The placement ([`crate::domain::Assignment::placement`]) its reports name. `None` for a
    /// hand-off's old copy: whichever copy runs is kept (and one started afresh reports 0).
    pub placement: Option<u64>,
    pub command: Vec<String>,
    pub env: std::collections::BTreeMap<String, String>,
    pub stop_timeout: Duration,
    pub health: Option<HealthCheck>,
    /// GPUs it gets for itself (`resources.gpu`).
    pub gpus: u32,
}

impl Spec {
    pub fn new(instance: String, placement: Option<u64>, slice: &Slice) -> Spec {
        Spec {
            instance,
            placement,
            command: slice.command.clone(),
            env: slice.env.clone(),
            stop_timeout: Duration::from_millis(slice.stop_timeout_ms),
            health: slice.health.clone(),
            gpus: slice.resources.gpu,
        }
    }

    /// Whether the copy started for `running` may go on as this spec. A new placement of the
    /// same instance (removed and created again before this node looked) is a new copy.
    fn keeps(&self, running: &Spec) -> bool {
        let Spec {
            instance,
            placement,
            command,
            env,
            stop_timeout,
            health,
            gpus,
        } = self;
        *instance == running.instance
            && placement.is_none_or(|p| running.placement == Some(p))
            && *command == running.command
            && *env == running.env
            && *stop_timeout == running.stop_timeout
            && *health == running.health
            && *gpus == running.gpus
    }
}

struct Running {
    spec: Spec,
    stop: CancellationToken,
    task: JoinHandle<()>,
    pid: Arc<AtomicU32>,
    /// The GPUs it holds until its task has ended.
    gpus: Vec<u32>,
}

/// Shared by the instance tasks.
struct Ctx {
    node: NodeId,
    node_name: String,
    data_dir: PathBuf,
    cfg: DeployConfig,
    events: mpsc::UnboundedSender<Event>,
}

/// The instances of this node.
pub struct Supervisor {
    ctx: Arc<Ctx>,
    running: HashMap<String, Running>,
    /// Told to stop; their tasks are finishing.
    stopping: Vec<Running>,
    /// The GPUs (NVML indices) this node hands to instances, one instance each. `None`: NVML
    /// cannot be used and none are listed, so environments are left alone.
    gpus: Option<Vec<u32>>,
    /// Instances waiting for GPUs, with the placement and reason last reported.
    waiting: HashMap<String, (Option<u64>, String)>,
}

impl Supervisor {
    /// Kill what a previous run of this daemon left behind, then start empty.
    pub fn new(
        node: NodeId,
        node_name: String,
        data_dir: PathBuf,
        cfg: DeployConfig,
        events: mpsc::UnboundedSender<Event>,
    ) -> std::io::Result<Supervisor> {
        std::fs::create_dir_all(run_dir(&data_dir))?;
        reap_leftovers(&run_dir(&data_dir));
        Ok(Supervisor {
            ctx: Arc::new(Ctx {
                node,
                node_name,
                data_dir,
                cfg,
                events,
            }),
            running: HashMap::new(),
            stopping: Vec::new(),
            gpus: None,
            waiting: HashMap::new(),
        })
    }

    /// The GPUs (NVML indices) this node may hand out from now on; `None` leaves instances'
    /// environments alone (NVML cannot be used, none listed).
    pub fn set_gpus(&mut self, gpus: Option<Vec<u32>>) {
        self.gpus = gpus;
    }

    /// Converge on `desired`: stop what is not wanted (or whose spec or placement changed),
    /// start what is missing. An instance whose old copy is still stopping, or whose GPUs are
    /// not free yet, starts on a later call.
    pub fn reconcile(&mut self, desired: &HashMap<String, Spec>) {
        self.stopping.retain(|r| !r.task.is_finished());
        let unwanted: Vec<String> = self
            .running
            .iter()
            .filter(|(k, r)| !desired.get(*k).is_some_and(|d| d.keeps(&r.spec)))
            .map(|(k, _)| k.clone())
            .collect();
        for k in unwanted {
            let r = self.running.remove(&k).expect("listed above");
            r.stop.cancel();
            self.stopping.push(r);
        }
        let gone: Vec<String> = self
            .waiting
            .keys()
            .filter(|k| !desired.contains_key(*k))
            .cloned()
            .collect();
        for k in gone {
            self.waiting.remove(&k);
            let _ = self.ctx.events.send(Event::Gone(k));
        }
        let mut todo: Vec<(&String, &Spec)> = desired.iter().collect();
        todo.sort_by(|a, b| a.0.cmp(b.0));
        for (k, spec) in todo {
            if self.running.contains_key(k) || self.stopping.iter().any(|r| r.spec.instance == *k) {
                continue;
            }
            let held: BTreeMap<u32, String> = self
                .running
                .values()
                .map(|r| (r, r.spec.instance.clone()))
                .chain(
                    self.stopping
                        .iter()
                        .map(|r| (r, format!("{} (stopping)", r.spec.instance))),
                )
                .flat_map(|(r, who)| r.gpus.iter().map(move |g| (*g, who.clone())))
                .collect();
            let offered = self.gpus.as_deref().unwrap_or_default();
            let gpus = match pick_gpus(offered, &held, spec.gpus) {
                Ok(g) => g,
                Err(why) => {
                    let said = (spec.placement, why);
                    if self.waiting.get(k) != Some(&said) {
                        let why = &said.1;
                        tracing::warn!("{k}: {why}");
                        let _ = self.ctx.events.send(Event::Status(InstanceStatus {
                            instance: k.clone(),
                            node: self.ctx.node,
                            placement: spec.placement.unwrap_or(0),
                            state: InstanceState::Waiting,
                            port: 0,
                            pid: None,
                            restarts: 0,
                            last_exit: None,
                            health: why.clone(),
                            since: now_millis(),
                            gpus: Vec::new(),
                        }));
                        self.waiting.insert(k.clone(), said);
                    }
                    continue;
                }
            };
            self.waiting.remove(k);
            // With GPUs to hand out, an instance sees only its own (none when it asked for none).
            let visible = self.gpus.is_some().then(|| gpus.clone());
            let stop = CancellationToken::new();
            let pid = Arc::new(AtomicU32::new(0));
            let task = tokio::spawn(run_instance(
                self.ctx.clone(),
                spec.clone(),
                visible,
                stop.clone(),
                pid.clone(),
            ));
            self.running.insert(
                k.clone(),
                Running {
                    spec: spec.clone(),
                    stop,
                    task,
                    pid,
                    gpus,
                },
            );
        }
    }

    /// Whether any instance is still stopping (the caller reconciles again soon).
    pub fn busy(&mut self) -> bool {
        self.stopping.retain(|r| !r.task.is_finished());
        !self.stopping.is_empty()
    }

    /// Instances this supervisor runs, is stopping, or holds back until GPUs are free.
    pub fn has(&self, instance: &str) -> bool {
        self.running.contains_key(instance)
            || self.stopping.iter().any(|r| r.spec.instance == instance)
            || self.waiting.contains_key(instance)
    }

    /// PIDs of the running instances (for the metrics sampler).
    pub fn pids(&self) -> Vec<u32> {
        self.running
            .values()
            .map(|r| r.pid.load(Ordering::Relaxed))
            .filter(|p| *p != 0)
            .collect()
    }

    /// Stop every instance (SIGTERM, then SIGKILL after its stop timeout) and wait for them.
    pub async fn stop_all(&mut self) {
        let all: Vec<Running> = self
            .running
            .drain()
            .map(|(_, r)| r)
            .chain(self.stopping.drain(..))
            .collect();
        for (k, _) in self.waiting.drain() {
            let _ = self.ctx.events.send(Event::Gone(k));
        }
        for r in &all {
            r.stop.cancel();
        }
        for r in all {
            let _ = r.task.await;
        }
    }
}

/// `n` of the GPUs in `inventory` that nobody in `held` (GPU → instance) holds, lowest first;
/// or why not, naming who holds what.
fn pick_gpus(inventory: &[u32], held: &BTreeMap<u32, String>, n: u32) -> Result<Vec<u32>, String> {
    let free: Vec<u32> = inventory
        .iter()
        .copied()
        .filter(|g| !held.contains_key(g))
        .collect();
    if free.len() >= n as usize {
        return Ok(free[..n as usize].to_vec());
    }
    let plural = if n == 1 { "" } else { "s" };
    let holders: Vec<String> = held
        .iter()
        .filter(|(g, _)| inventory.contains(g))
        .map(|(g, who)| format!("{who} holds GPU {g}"))
        .collect();
    Err(if inventory.is_empty() {
        format!("needs {n} GPU{plural}; this node offers none (deploy.gpus, or NVML lists none)")
    } else if holders.is_empty() {
        format!("needs {n} GPU{plural}; this node has {}", inventory.len())
    } else {
        format!(
            "needs {n} GPU{plural}; {} of {} free ({})",
            free.len(),
            inventory.len(),
            holders.join(", ")
        )
    })
}

fn run_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("run")
}

fn pid_file(data_dir: &Path, instance: &str) -> PathBuf {
    run_dir(data_dir).join(format!("{}.pgid", instance.replace('/', "_")))
}

/// `(pgrp, start time in clock ticks)` of a live process (not a zombie), from
/// `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(u32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    if *f.first()? == "Z" {
        return None;
    }
    Some((f.get(2)?.parse().ok()?, f.get(19)?.parse().ok()?))
}

/// Kill every process of the groups recorded in `dir` that started no earlier than the group's
/// leader did (so a reused pid or group id is left alone), and forget the records.
fn reap_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "pgid") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut it = text.split_whitespace().map(|s| s.parse::<u64>().ok());
        if let (Some(Some(pgid)), Some(Some(start))) = (it.next(), it.next()) {
            let mut killed = Vec::new();
            if let Ok(procs) = std::fs::read_dir("/proc") {
                for p in procs.flatten() {
                    let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok())
                    else {
                        continue;
                    };
                    if let Some((pgrp, started)) = proc_stat(pid)
                        && pgrp as u64 == pgid
                        && started >= start
                    {
                        // SAFETY: kill(2) with a pid we just read; no memory is touched.
                        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                        killed.push(pid);
                    }
                }
            }
            if !killed.is_empty() {
                // Gone before anything starts that could need what they held.
                let until = Instant::now() + GROUP_EXIT_LIMIT;
                while killed.iter().any(|p| proc_stat(*p).is_some()) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(10));
                }
                tracing::warn!(
                    "killed {} process(es) left by the previous run of this node (process group {pgid}, {})",
                    killed.len(),
                    path.file_stem().and_then(|s| s.to_str()).unwrap_or("?")
                );
            }
        }
        let _ = std::fs::remove_file(&path);
    }
}

/// A free TCP port: `prefer` when it can still be bound, else one the kernel picks.
fn free_port(prefer: u16) -> std::io::Result<u16> {
    if prefer != 0 && std::net::TcpListener::bind(("0.0.0.0", prefer)).is_ok() {
        return Ok(prefer);
    }
    Ok(std::net::TcpListener::bind(("0.0.0.0", 0))?
        .local_addr()?
        .port())
}

/// `exit 1`, `signal 9 (SIGKILL)`.
fn describe(st: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => {
            let name = match s {
                libc::SIGKILL => " (SIGKILL)",
                libc::SIGTERM => " (SIGTERM)",
                libc::SIGSEGV => " (SIGSEGV)",
                libc::SIGABRT => " (SIGABRT)",
                libc::SIGINT => " (SIGINT)",
                _ => "",
            };
            format!("signal {s}{name}")
        }
        _ => "ended".into(),
    }
}

/// How long a SIGKILLed process group may take to be gone before the instance moves on.
const GROUP_EXIT_LIMIT: Duration = Duration::from_secs(5);

/// Whether process group `pgid` still has a live process. Usually one syscall says it has
/// none (many instances may stop at once); only when something is left is /proc read, since a
/// zombie nobody reaps (PID 1 of some containers does not) holds nothing.
fn group_exists(pgid: u32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks; no memory is touched.
    if pgid <= 1 || unsafe { libc::kill(-(pgid as i32), 0) } != 0 {
        return false;
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .any(|pid| proc_stat(pid).is_some_and(|(g, _)| g == pgid))
}

/// Wait until process group `pgid` is gone (SIGKILL lands asynchronously, and its last
/// members are reaped by init), at most `limit`; whether it went.
async fn group_gone(pgid: u32, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    loop {
        if !group_exists(pgid) {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn signal_group(pgid: u32, sig: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) on a process group we created; no memory is touched.
        unsafe { libc::kill(-(pgid as i32), sig) };
    }
}

/// Copy one of the child's output streams into its log file.
async fn pump(mut from: impl AsyncRead + Unpin, log: Arc<std::sync::Mutex<LogFile>>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut l = log.lock().expect("log lock");
                if let Err(e) = l.write(&buf[..n]) {
                    tracing::warn!("instance log write failed: {e}");
                }
            }
        }
    }
}

/// One health probe against the instance on `port`.
async fn probe(check: &HealthCheck, port: u16, env: &[(String, String)]) -> Result<(), String> {
    let timeout = Duration::from_millis(check.timeout_ms);
    let run = async {
        match &check.probe {
            Probe::Tcp => tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .map(|_| ())
                .map_err(|e| format!("tcp connect to port {port}: {e}")),
            Probe::Http(path) => {
                let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .map_err(|e| format!("GET {path} on port {port}: {e}"))?;
                s.write_all(
                    format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: aether-health\r\n\r\n")
                        .as_bytes(),
                )
                .await
                .map_err(|e| format!("GET {path}: {e}"))?;
                // Read the whole answer (HTTP/1.0: until the server closes, at most 64 KiB) so
                // the server never sees its client vanish mid-reply.
                let mut head = Vec::with_capacity(1024);
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) if head.len() < 65536 => head.extend_from_slice(&buf[..n]),
                        Ok(_) => break,
                        Err(e) if head.len() >= 12 => {
                            tracing::debug!("health check read ended early: {e}");
                            break;
                        }
                        Err(e) => return Err(format!("GET {path}: {e}")),
                    }
                }
                let line = String::from_utf8_lossy(&head[..head.len().min(64)]);
                let line = line.lines().next().unwrap_or("");
                let code: u16 = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .ok_or_else(|| format!("GET {path}: not an HTTP answer ('{}')", line.trim()))?;
                if (200..400).contains(&code) {
                    Ok(())
                } else {
                    Err(format!("GET {path}: status {code}"))
                }
            }
            Probe::Exec(cmd) => {
                let mut c = tokio::process::Command::new(&cmd[0]);
                c.args(&cmd[1..])
                    .envs(env.iter().cloned())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .kill_on_drop(true);
                let st = c
                    .status()
                    .await
                    .map_err(|e| format!("exec '{}': {e}", cmd[0]))?;
                if st.success() {
                    Ok(())
                } else {
                    Err(format!("exec '{}': {}", cmd[0], describe(&st)))
                }
            }
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer within {}",
            crate::domain::human_millis(check.timeout_ms)
        )),
    }
}

/// What an instance's reports carry across its runs.
#[derive(Default)]
struct Life {
    port: u16,
    restarts: u32,
    last_exit: Option<String>,
}

/// How a run of the instance ended.
enum End {
    Stop,
    Exited(ExitStatus),
    Unhealthy(String),
}

/// The life of one instance on this node, until `stop`. `gpus`: the GPUs it sees (`None`:
/// its environment's GPU variables are left alone).
async fn run_instance(
    ctx: Arc<Ctx>,
    spec: Spec,
    gpus: Option<Vec<u32>>,
    stop: CancellationToken,
    pid_slot: Arc<AtomicU32>,
) {
    let cfg = &ctx.cfg;
    let mut life = Life::default();
    let mut backoff = cfg.restart_backoff.0;
    let health_none = if spec.health.is_some() {
        "pending"
    } else {
        "none"
    };
    let report = |life: &Life, state: InstanceState, pid: Option<u32>, health: &str| {
        let _ = ctx.events.send(Event::Status(InstanceStatus {
            instance: spec.instance.clone(),
            node: ctx.node,
            placement: spec.placement.unwrap_or(0),
            state,
            port: life.port,
            pid,
            restarts: life.restarts,
            last_exit: life.last_exit.clone(),
            health: health.into(),
            since: now_millis(),
            gpus: gpus.clone().unwrap_or_default(),
        }));
    };
    let log_path = logs::path(&ctx.data_dir, &spec.instance)
        .unwrap_or_else(|| ctx.data_dir.join("logs").join("invalid.log"));
    let (bp, slice) = {
        let mut it = spec.instance.split('/');
        (
            it.next().unwrap_or("").to_string(),
            it.next().unwrap_or("").to_string(),
        )
    };
    let work = ctx.data_dir.join("work").join(&spec.instance);
    'life: loop {
        // LOAD
        report(&life, InstanceState::Loading, None, health_none);
        let log = LogFile::open(log_path.clone(), cfg.log_max_bytes, cfg.log_keep)
            .map(|l| Arc::new(std::sync::Mutex::new(l)))
            .map_err(|e| format!("cannot open log file '{}': {e}", log_path.display()));
        let note = |s: &str| {
            if let Ok(l) = &log {
                l.lock().expect("log lock").note(s);
            }
        };
        let prepared = log.clone().and_then(|l| {
            std::fs::create_dir_all(&work)
                .map_err(|e| format!("cannot create working dir '{}': {e}", work.display()))?;
            let port = free_port(life.port).map_err(|e| format!("no free port: {e}"))?;
            Ok((l, port))
        });
        let mut env: Vec<(String, String)> = Vec::new();
        let mut shown = String::new();
        let port = prepared.as_ref().map_or(life.port, |(_, p)| *p);
        life.port = port;
        let spawned = prepared.and_then(|(log, _)| {
            env = vec![
                ("PORT".into(), port.to_string()),
                ("AETHER_BLUEPRINT".into(), bp.clone()),
                ("AETHER_SLICE".into(), format!("{bp}/{slice}")),
                ("AETHER_INSTANCE".into(), spec.instance.clone()),
                ("AETHER_NODE".into(), ctx.node_name.clone()),
            ];
            if let Some(g) = &gpus {
                let ids: Vec<String> = g.iter().map(u32::to_string).collect();
                // NVML numbers GPUs in PCI bus order; CUDA must count them the same way.
                env.push(("CUDA_DEVICE_ORDER".into(), "PCI_BUS_ID".into()));
                env.push(("CUDA_VISIBLE_DEVICES".into(), ids.join(",")));
                env.push(("NVIDIA_VISIBLE_DEVICES".into(), ids.join(",")));
            }
            let args: Vec<String> = spec.command[1..]
                .iter()
                .map(|a| a.replace("${PORT}", &port.to_string()))
                .collect();
            shown = std::iter::once(spec.command[0].as_str())
                .chain(args.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" ");
            let mut cmd = tokio::process::Command::new(&spec.command[0]);
            cmd.args(&args)
                .envs(spec.env.iter())
                .envs(env.iter().cloned())
                .current_dir(&work)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0);
            // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
            let parent = std::process::id() as i32;
            unsafe {
                cmd.pre_exec(move || {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    if libc::getppid() != parent {
                        libc::_exit(1);
                    }
                    Ok(())
                });
            }
            cmd.spawn()
                .map(|c| (c, log))
                .map_err(|e| format!("cannot start '{}': {e}", spec.command[0]))
        });
        let started = Instant::now();
        let outcome: Result<(u32, String), String> = 'run: {
            let (mut child, log) = match spawned {
                Ok(c) => c,
                Err(why) => break 'run Err(why),
            };
            // ACTIVATE
            let pid = child.id().unwrap_or(0);
            pid_slot.store(pid, Ordering::Relaxed);
            if let Some((_, start)) = proc_stat(pid) {
                let _ = std::fs::write(
                    pid_file(&ctx.data_dir, &spec.instance),
                    format!("{pid} {start}\n"),
                );
            }
            note(&format!("started pid {pid} on port {port}: {}", shown));
            let pumps = [
                child
                    .stdout
                    .take()
                    .map(|o| tokio::spawn(pump(o, log.clone()))),
                child
                    .stderr
                    .take()
                    .map(|e| tokio::spawn(pump(e, log.clone()))),
            ];
            report(&life, InstanceState::Activating, Some(pid), health_none);
            let end = {
                let watch = async {
                    match &spec.health {
                        None => {
                            report(&life, InstanceState::Active, Some(pid), "none");
                            std::future::pending::<String>().await
                        }
                        Some(h) => {
                            let mut tick = tokio::time::interval(Duration::from_millis(
                                h.interval_ms.clamp(50, 3_600_000),
                            ));
                            let mut failures = 0u32;
                            let mut active = false;
                            loop {
                                tick.tick().await;
                                match probe(h, port, &env).await {
                                    Ok(()) => {
                                        failures = 0;
                                        if !active {
                                            active = true;
                                            report(
                                                &life,
                                                InstanceState::Active,
                                                Some(pid),
                                                "passing",
                                            );
                                        }
                                    }
                                    // Until the first pass the instance is starting: failures do not count.
                                    Err(_) if !active => {}
                                    Err(why) => {
                                        failures += 1;
                                        if failures >= h.threshold.max(1) {
                                            break format!(
                                                "health check failed {failures} times in a row: {why}"
                                            );
                                        }
                                    }
                                }
                            }
                        }
                    }
                };
                tokio::pin!(watch);
                tokio::select! {
                    _ = stop.cancelled() => End::Stop,
                    st = child.wait() => match st {
                        Ok(st) => End::Exited(st),
                        Err(e) => End::Unhealthy(format!("waiting for the process failed: {e}")),
                    },
                    why = &mut watch => End::Unhealthy(why),
                }
            };
            let stopping = matches!(end, End::Stop);
            let how = match end {
                End::Exited(st) => {
                    signal_group(pid, libc::SIGKILL);
                    describe(&st)
                }
                End::Stop | End::Unhealthy(_) => {
                    if let End::Unhealthy(why) = &end {
                        note(why);
                        report(
                            &life,
                            InstanceState::Unhealthy,
                            Some(pid),
                            &format!("failing: {why}"),
                        );
                    } else {
                        report(&life, InstanceState::Stopping, Some(pid), health_none);
                    }
                    signal_group(pid, libc::SIGTERM);
                    let st = match tokio::time::timeout(spec.stop_timeout, child.wait()).await {
                        Ok(Ok(st)) => describe(&st),
                        _ => {
                            note(&format!(
                                "still running {} after SIGTERM: sending SIGKILL",
                                crate::domain::human_millis(spec.stop_timeout.as_millis() as u64)
                            ));
                            signal_group(pid, libc::SIGKILL);
                            child
                                .wait()
                                .await
                                .map(|s| describe(&s))
                                .unwrap_or_else(|e| e.to_string())
                        }
                    };
                    signal_group(pid, libc::SIGKILL);
                    match &end {
                        End::Unhealthy(why) => format!("{st} after {why}"),
                        _ => st,
                    }
                }
            };
            // Whatever it held (a GPU, a port) is free only once its whole group has gone.
            if !group_gone(pid, GROUP_EXIT_LIMIT).await {
                tracing::warn!(
                    "{}: process group {pid} still has members {}s after SIGKILL",
                    spec.instance,
                    GROUP_EXIT_LIMIT.as_secs()
                );
            }
            for p in pumps.into_iter().flatten() {
                let _ = tokio::time::timeout(Duration::from_secs(1), p).await;
            }
            pid_slot.store(0, Ordering::Relaxed);
            let _ = std::fs::remove_file(pid_file(&ctx.data_dir, &spec.instance));
            if stopping {
                note(&format!("stopped pid {pid}: {how}"));
                break 'life;
            }
            Ok((pid, how))
        };
        let (exit, ended) = match outcome {
            Ok((pid, how)) => {
                tracing::info!("{}: pid {pid} ended ({how}); restarting", spec.instance);
                (how.clone(), format!("pid {pid} ended ({how})"))
            }
            Err(why) => {
                tracing::warn!("{}: {why}", spec.instance);
                (why.clone(), why)
            }
        };
        // A run that lasted the longest backoff resets it.
        if started.elapsed() >= cfg.restart_backoff_max.0 {
            backoff = cfg.restart_backoff.0;
        }
        life.restarts += 1;
        note(&format!(
            "{ended}; restart {} in {}",
            life.restarts,
            crate::domain::human_millis(backoff.as_millis() as u64)
        ));
        life.last_exit = Some(exit);
        report(&life, InstanceState::Backoff, None, health_none);
        if wait_or_stop(&stop, backoff).await {
            break;
        }
        backoff = (backoff * 2).min(cfg.restart_backoff_max.0);
    }
    let _ = ctx.events.send(Event::Gone(spec.instance.clone()));
}

/// Sleep `d`; `true` when told to stop first.
async fn wait_or_stop(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> DeployConfig {
        DeployConfig {
            restart_backoff: crate::config::Dur::ms(100),
            ..DeployConfig::default()
        }
    }

    fn spec(instance: &str, script: &str, stop_ms: u64) -> Spec {
        Spec {
            instance: instance.into(),
            placement: Some(1),
            command: vec!["sh".into(), "-c".into(), script.into()],
            env: Default::default(),
            stop_timeout: Duration::from_millis(stop_ms),
            health: None,
            gpus: 0,
        }
    }

    /// Live processes (not zombies) in process group `pgid`.
    fn group_size(pgid: u32) -> usize {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| proc_stat(*pid).is_some_and(|(g, _)| g == pgid))
            .count()
    }

    /// Next status of `instance` matching `f`, within 10 s.
    async fn next(rx: &mut mpsc::UnboundedReceiver<Event>, f: impl Fn(&Event) -> bool) -> Event {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let e = rx.recv().await.expect("supervisor alive");
                if f(&e) {
                    return e;
                }
            }
        })
        .await
        .expect("the awaited event within 10 s")
    }

    #[tokio::test]
    async fn a_process_group_that_ignores_sigterm_is_killed_after_the_stop_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut sup = Supervisor::new(1, "n1".into(), dir.path().into(), cfg(), tx).unwrap();
        let s = spec(
            "t/s/0",
            "trap '' TERM; echo hello from $AETHER_INSTANCE on $PORT; while :; do sleep 0.1; done",
            300,
        );
        sup.reconcile(&HashMap::from([(s.instance.clone(), s)]));
        let Event::Status(st) = next(
            &mut rx,
            |e| matches!(e, Event::Status(s) if s.state == InstanceState::Active),
        )
        .await
        else {
            unreachable!()
        };
        let pid = st.pid.unwrap();
        assert!(group_size(pid) >= 1);
        assert_eq!(sup.pids(), vec![pid]);
        let log = logs::path(dir.path(), "t/s/0").unwrap();
        let want = format!("hello from t/s/0 on {}", st.port);
        for _ in 0..100 {
            if std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains(&want)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(std::fs::read_to_string(&log).unwrap().contains(&want));
        sup.reconcile(&HashMap::new());
        next(&mut rx, |e| matches!(e, Event::Gone(_))).await;
        // Gone is said only once the whole group has gone (what it held is free).
        assert_eq!(group_size(pid), 0, "every process of the group is gone");
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("after SIGTERM: sending SIGKILL"), "{text}");
        assert!(!pid_file(dir.path(), "t/s/0").exists());
    }

    #[tokio::test]
    async fn a_crash_is_restarted_with_its_exit_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut sup = Supervisor::new(1, "n1".into(), dir.path().into(), cfg(), tx).unwrap();
        let s = spec("t/s/1", "sleep 0.2; exit 3", 1000);
        sup.reconcile(&HashMap::from([(s.instance.clone(), s)]));
        let Event::Status(st) = next(&mut rx, |e| {
            matches!(e, Event::Status(s) if s.state == InstanceState::Activating && s.restarts == 2)
        })
        .await
        else {
            unreachable!()
        };
        assert_eq!(st.last_exit.as_deref(), Some("exit 3"));
        sup.stop_all().await;
        next(&mut rx, |e| matches!(e, Event::Gone(_))).await;
    }

    #[tokio::test]
    async fn a_hand_off_keeps_the_running_copy_and_a_new_placement_is_a_new_copy() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut sup = Supervisor::new(1, "n1".into(), dir.path().into(), cfg(), tx).unwrap();
        let s = spec("t/s/3", "while :; do sleep 0.1; done", 1000);
        let active = |placement: u64| {
            move |e: &Event| {
                matches!(e, Event::Status(s)
                    if s.state == InstanceState::Active && s.placement == placement)
            }
        };
        sup.reconcile(&HashMap::from([(s.instance.clone(), s.clone())]));
        let Event::Status(first) = next(&mut rx, active(1)).await else {
            unreachable!()
        };
        // As a hand-off's old copy (no placement of its own), the copy goes on.
        let handoff = Spec {
            placement: None,
            ..s.clone()
        };
        sup.reconcile(&HashMap::from([(s.instance.clone(), handoff)]));
        assert_eq!(sup.pids(), vec![first.pid.unwrap()], "the copy was kept");
        // Removed and created again before this node looked: a new copy reports the new one.
        let again = Spec {
            placement: Some(2),
            ..s.clone()
        };
        let want = HashMap::from([(s.instance.clone(), again)]);
        sup.reconcile(&want);
        assert!(sup.pids().is_empty(), "the old copy is stopping");
        next(&mut rx, |e| matches!(e, Event::Gone(_))).await;
        // Its successor starts on the first reconcile after the old task has ended.
        for _ in 0..200 {
            if !sup.busy() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            !sup.busy(),
            "the old copy's task ended within 2 s of its exit"
        );
        sup.reconcile(&want);
        let Event::Status(second) = next(&mut rx, active(2)).await else {
            unreachable!()
        };
        assert_ne!(second.pid, first.pid);
        sup.stop_all().await;
    }

    #[test]
    fn gpus_are_picked_lowest_free_first_or_refused_naming_who_holds_them() {
        let held = BTreeMap::from([(0, "a/w/0".to_string())]);
        assert_eq!(pick_gpus(&[0, 1, 2], &BTreeMap::new(), 2), Ok(vec![0, 1]));
        assert_eq!(pick_gpus(&[0, 1, 2], &held, 2), Ok(vec![1, 2]));
        assert_eq!(pick_gpus(&[0, 1], &held, 0), Ok(vec![]));
        assert_eq!(
            pick_gpus(&[0, 1], &held, 2),
            Err("needs 2 GPUs; 1 of 2 free (a/w/0 holds GPU 0)".into())
        );
        assert_eq!(
            pick_gpus(&[0, 1], &BTreeMap::new(), 3),
            Err("needs 3 GPUs; this node has 2".into())
        );
        assert_eq!(
            pick_gpus(&[], &BTreeMap::new(), 1),
            Err("needs 1 GPU; this node offers none (deploy.gpus, or NVML lists none)".into())
        );
    }

    /// The value of `var` in the environment of process `pid`.
    fn env_of(pid: u32, var: &str) -> Option<String> {
        let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        raw.split(|b| *b == 0).find_map(|kv| {
            let kv = std::str::from_utf8(kv).ok()?;
            kv.strip_prefix(var)?.strip_prefix('=').map(String::from)
        })
    }

    #[tokio::test]
    async fn each_instance_sees_only_its_own_gpus_and_waits_for_a_free_one() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut sup = Supervisor::new(1, "n1".into(), dir.path().into(), cfg(), tx).unwrap();
        sup.set_gpus(Some(vec![0, 1]));
        let gpu = |i: u32, n: u32| Spec {
            gpus: n,
            ..spec(&format!("t/g/{i}"), "while :; do sleep 0.1; done", 1000)
        };
        let mut want: HashMap<String, Spec> = (0..3)
            .map(|i| gpu(i, 1))
            .chain([gpu(3, 0)])
            .map(|s| (s.instance.clone(), s))
            .collect();
        sup.reconcile(&want);
        // Two get a GPU each; the third waits, saying who holds them; none hides nothing.
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        let mut waiting = None;
        while seen.len() < 3 || waiting.is_none() {
            let Event::Status(s) = next(&mut rx, |e| {
                matches!(e, Event::Status(s)
                    if s.state == InstanceState::Active || s.state == InstanceState::Waiting)
            })
            .await
            else {
                unreachable!()
            };
            if s.state == InstanceState::Waiting {
                waiting = Some(s);
            } else {
                let pid = s.pid.unwrap();
                let visible =
                    env_of(pid, "CUDA_VISIBLE_DEVICES").expect("CUDA_VISIBLE_DEVICES set");
                assert_eq!(
                    env_of(pid, "CUDA_DEVICE_ORDER").as_deref(),
                    Some("PCI_BUS_ID")
                );
                let held: Vec<String> = s.gpus.iter().map(u32::to_string).collect();
                assert_eq!(held.join(","), visible, "the report names the GPUs it sees");
                seen.insert(s.instance, visible);
            }
        }
        let waiting = waiting.unwrap();
        assert_eq!(waiting.instance, "t/g/2");
        assert_eq!(
            waiting.health,
            "needs 1 GPU; 0 of 2 free (t/g/0 holds GPU 0, t/g/1 holds GPU 1)"
        );
        assert_eq!(
            seen,
            BTreeMap::from([
                ("t/g/0".into(), "0".into()),
                ("t/g/1".into(), "1".into()),
                ("t/g/3".into(), "".into()),
            ])
        );
        // t/g/0 goes. While it stops its GPU is still held, so t/g/2 waits on, naming it as
        // stopping; only once t/g/0 is gone (its whole group) does t/g/2 take GPU 0.
        want.remove("t/g/0");
        sup.reconcile(&want);
        let Event::Status(w) = next(&mut rx, |e| {
            matches!(e, Event::Status(s)
                if s.instance == "t/g/2" && s.state == InstanceState::Waiting)
        })
        .await
        else {
            unreachable!()
        };
        assert!(
            w.health.contains("t/g/0 (stopping) holds GPU 0"),
            "{}",
            w.health
        );
        let mut gone_first = false;
        let started = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                // The node's reconciler looks again while a copy is stopping; so does this.
                sup.reconcile(&want);
                while let Ok(e) = rx.try_recv() {
                    match e {
                        Event::Gone(k) if k == "t/g/0" => gone_first = true,
                        Event::Status(s)
                            if s.instance == "t/g/2" && s.state == InstanceState::Active =>
                        {
                            return s;
                        }
                        _ => {}
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        let s = started.expect("t/g/2 active within 10 s of t/g/0's removal");
        assert!(gone_first, "t/g/2 started before t/g/0 was gone");
        assert_eq!(
            env_of(s.pid.unwrap(), "CUDA_VISIBLE_DEVICES").as_deref(),
            Some("0")
        );
        sup.stop_all().await;
    }

    #[test]
    fn leftovers_of_a_previous_run_are_killed_and_others_left_alone() {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().unwrap();
        let spawn = || {
            std::process::Command::new("sh")
                .args(["-c", "sleep 60 & wait"])
                .process_group(0)
                .spawn()
                .unwrap()
        };
        let (mut ours, mut other) = (spawn(), spawn());
        std::fs::create_dir_all(run_dir(dir.path())).unwrap();
        let (_, start) = proc_stat(ours.id()).unwrap();
        std::fs::write(
            pid_file(dir.path(), "t/s/2"),
            format!("{} {start}\n", ours.id()),
        )
        .unwrap();
        // The shell's child is in its group too.
        for _ in 0..500 {
            if group_size(ours.id()) >= 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            group_size(ours.id()) >= 2,
            "the shell's child did not start within 5 s"
        );
        let (tx, _rx) = mpsc::unbounded_channel();
        Supervisor::new(1, "n1".into(), dir.path().into(), cfg(), tx).unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(ours.wait().unwrap().signal(), Some(libc::SIGKILL));
        for _ in 0..200 {
            if group_size(ours.id()) == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            group_size(ours.id()),
            0,
            "the sleep child of the recorded group is gone"
        );
        assert!(
            other.try_wait().unwrap().is_none(),
            "an unrecorded group lives"
        );
        assert!(!pid_file(dir.path(), "t/s/2").exists());
        let _ = other.kill();
        signal_group(other.id(), libc::SIGKILL);
        let _ = other.wait();
    }
}
