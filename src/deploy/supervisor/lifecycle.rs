//! One instance's life on this node (DESIGN §8), on a task of its own: LOAD (log file, working
//! dir, port, environment) → ACTIVATE (spawn; wait for the first passing health check) → ACTIVE
//! (keep checking). A crash, or `threshold` failed checks in a row, ends the run: the rest of its
//! process group is killed and it restarts after an exponential backoff (reset by a run that
//! lasted the longest backoff). Told to stop, it sends SIGTERM and then SIGKILL to its group.
//! Every transition is sent as an [`Event`]; the last one is [`Event::Gone`], once its whole
//! process group has gone.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::process::Child;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::cgroup::{Cgroups, Group, Limits};
use super::probe;
use super::process::{self, GROUP_EXIT_LIMIT};
use super::user::{self, RunAs};
use crate::config::DeployConfig;
use crate::deploy::logs::{self, LogFile};
use crate::domain::{
    HealthCheck, InstanceState, InstanceStatus, NodeId, Slice, human_millis, now_millis,
};

/// What the supervisor tells the reporter.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A transition of the instance (or its wait for GPUs).
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
    /// The program and its arguments (`${PORT}` in an argument is the instance's port).
    pub command: Vec<String>,
    /// Environment variables of the slice.
    pub env: BTreeMap<String, String>,
    /// How long it has after SIGTERM before SIGKILL.
    pub stop_timeout: Duration,
    /// Its health check, if it has one.
    pub health: Option<HealthCheck>,
    /// GPUs it gets for itself (`resources.gpu`).
    pub gpus: u32,
    /// The user it asks to run as (the slice's `user`).
    pub user: Option<String>,
    /// Its CPU and memory limits (the slice's `resources`).
    pub limits: Limits,
}

impl Spec {
    /// Instance `instance` of `slice`, for `placement`.
    pub fn new(instance: String, placement: Option<u64>, slice: &Slice) -> Spec {
        Spec {
            instance,
            placement,
            command: slice.command.clone(),
            env: slice.env.clone(),
            stop_timeout: Duration::from_millis(slice.stop_timeout_ms),
            health: slice.health.clone(),
            gpus: slice.resources.gpu,
            user: slice.user.clone(),
            limits: Limits {
                cpu: slice.resources.cpu,
                memory: slice.resources.memory,
            },
        }
    }

    /// Whether the copy started for `running` may go on as this spec. A new placement of the
    /// same instance (removed and created again before this node looked) is a new copy.
    pub(super) fn keeps(&self, running: &Spec) -> bool {
        let Spec {
            instance,
            placement,
            command,
            env,
            stop_timeout,
            health,
            gpus,
            user,
            limits,
        } = self;
        *instance == running.instance
            && placement.is_none_or(|p| running.placement == Some(p))
            && *command == running.command
            && *env == running.env
            && *stop_timeout == running.stop_timeout
            && *health == running.health
            && *user == running.user
            && *gpus == running.gpus
            && *limits == running.limits
    }
}

/// What every instance task of this node shares.
pub(super) struct Ctx {
    /// This node.
    pub(super) node: NodeId,
    /// Its name (`AETHER_NODE`).
    pub(super) node_name: String,
    /// Where logs, working dirs and process-group records go.
    pub(super) data_dir: PathBuf,
    /// Backoff and log settings.
    pub(super) cfg: DeployConfig,
    /// Where transitions go (the reporter).
    pub(super) events: mpsc::UnboundedSender<Event>,
    /// Takes an instance out of traffic before it is stopped.
    pub(super) drain: Option<Arc<dyn crate::deploy::Drain>>,
    /// The user this node runs as (root switches instances to theirs).
    pub(super) node_uid: u32,
    /// The node's variables every instance also gets (`deploy.pass_env`).
    pub(super) passed_env: Vec<(String, String)>,
    /// Where instance cgroups go, or why there are none.
    pub(super) cgroups: Cgroups,
}

/// Why a run of the instance could not start (it is tried again after the backoff). Its text
/// is the instance's last exit.
#[derive(Debug, thiserror::Error)]
enum StartError {
    /// Its log file cannot be opened.
    #[error("cannot open log file '{}': {source}", .path.display())]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Its working dir cannot be made.
    #[error("cannot create working dir '{}': {source}", .path.display())]
    WorkDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// No port can be bound.
    #[error("no free port: {0}")]
    Port(std::io::Error),
    /// It cannot run as the user it asks for here.
    #[error("{0}")]
    User(String),
    /// Its program cannot be started.
    #[error("cannot start '{program}': {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
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

/// The instance's log for one run: notes go to its log file, or nowhere when it could not be
/// opened.
struct RunLog(Option<Arc<Mutex<LogFile>>>);

impl RunLog {
    fn note(&self, s: &str) {
        if let Some(l) = &self.0 {
            l.lock().expect("log lock").note(s);
        }
    }
}

/// A run that started: its process, and what its health checks need.
struct Launched {
    child: Child,
    log: Arc<Mutex<LogFile>>,
    port: u16,
    /// Its whole environment (health check commands get it too).
    env: Vec<(String, String)>,
    /// The user it runs as (`None`: the node's own).
    run_as: Option<RunAs>,
    /// The command line as started, for the log.
    shown: String,
    /// Its cgroup (`None`: no limits).
    cgroup: Option<Group>,
}

/// One instance on this node: what it runs and what its reports carry.
struct Instance {
    ctx: Arc<Ctx>,
    spec: Spec,
    /// The GPUs it sees (`None`: its environment's GPU variables are left alone).
    gpus: Option<Vec<u32>>,
    stop: CancellationToken,
    /// The pid of its running process (0 while none), for the metrics sampler.
    pid_slot: Arc<AtomicU32>,
    life: Life,
    /// The next wait before a restart.
    backoff: Duration,
    /// The health its reports show while no check has passed.
    health_none: &'static str,
}

/// The life of one instance on this node, until `stop`. `gpus`: the GPUs it sees (`None`:
/// its environment's GPU variables are left alone).
pub(super) async fn run_instance(
    ctx: Arc<Ctx>,
    spec: Spec,
    gpus: Option<Vec<u32>>,
    stop: CancellationToken,
    pid_slot: Arc<AtomicU32>,
) {
    let mut inst = Instance {
        backoff: ctx.cfg.restart_backoff.0,
        health_none: if spec.health.is_some() {
            "pending"
        } else {
            "none"
        },
        ctx,
        spec,
        gpus,
        stop,
        pid_slot,
        life: Life::default(),
    };
    loop {
        let (log, launched) = inst.load();
        let started = Instant::now();
        let outcome = match launched {
            Ok(run) => match inst.run(run, &log).await {
                Some(ended) => Ok(ended),
                None => break,
            },
            Err(why) => Err(why),
        };
        if !inst.back_off(&log, outcome, started).await {
            break;
        }
    }
    let _ = inst
        .ctx
        .events
        .send(Event::Gone(inst.spec.instance.clone()));
}

impl Instance {
    /// Send the instance's status in `state`.
    fn report(&self, state: InstanceState, pid: Option<u32>, health: &str) {
        let _ = self.ctx.events.send(Event::Status(InstanceStatus {
            instance: self.spec.instance.clone(),
            node: self.ctx.node,
            placement: self.spec.placement.unwrap_or(0),
            state,
            port: self.life.port,
            pid,
            restarts: self.life.restarts,
            last_exit: self.life.last_exit.clone(),
            health: health.into(),
            since: now_millis(),
            gpus: self.gpus.clone().unwrap_or_default(),
        }));
    }

    /// LOAD: open its log file, make its working dir, pick its port (the last one when it is
    /// still free) and start its process; or why not.
    fn load(&mut self) -> (RunLog, Result<Launched, StartError>) {
        self.report(InstanceState::Loading, None, self.health_none);
        let cfg = &self.ctx.cfg;
        let log_path = logs::path(&self.ctx.data_dir, &self.spec.instance)
            .unwrap_or_else(|| self.ctx.data_dir.join("logs").join("invalid.log"));
        let log = match LogFile::open(log_path.clone(), cfg.log_max_bytes, cfg.log_keep) {
            Ok(l) => Arc::new(Mutex::new(l)),
            Err(source) => {
                let why = StartError::Log {
                    path: log_path,
                    source,
                };
                return (RunLog(None), Err(why));
            }
        };
        let run_log = RunLog(Some(log.clone()));
        let run_as = match user::resolve(self.spec.user.as_deref(), cfg, self.ctx.node_uid) {
            Ok(r) => r,
            Err(why) => return (run_log, Err(StartError::User(why))),
        };
        let work = self.ctx.data_dir.join("work").join(&self.spec.instance);
        if let Err(source) = prepare_work(&work, run_as.as_ref()) {
            let why = StartError::WorkDir { path: work, source };
            return (run_log, Err(why));
        }
        let port = match free_port(self.life.port) {
            Ok(p) => p,
            Err(e) => return (run_log, Err(StartError::Port(e))),
        };
        self.life.port = port;
        let env = user::environment(&work, &self.ctx.passed_env, &self.spec.env, &self.env(port));
        let program = &self.spec.command[0];
        let args: Vec<String> = self.spec.command[1..]
            .iter()
            .map(|a| a.replace("${PORT}", &port.to_string()))
            .collect();
        let shown = std::iter::once(program.as_str())
            .chain(args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        let join = self
            .ctx
            .cgroups
            .prepare(&self.spec.instance, self.spec.limits);
        let launched = match process::spawn(program, &args, &env, &work, run_as.as_ref(), &join) {
            Ok(child) => Ok(Launched {
                // The child moved itself in before it exec'd; where that failed it has run
                // for a few ms outside its limits, and goes in now.
                cgroup: self.limit(child.id().unwrap_or(0), &run_log),
                child,
                log,
                port,
                env,
                run_as,
                shown,
            }),
            Err(source) => {
                let closed = run_as
                    .as_ref()
                    .filter(|_| source.kind() == std::io::ErrorKind::PermissionDenied)
                    .and_then(|u| user::unreachable(&work, u));
                Err(match closed {
                    Some(why) => StartError::User(format!("cannot start '{program}': {why}")),
                    None => StartError::Spawn {
                        program: program.clone(),
                        source,
                    },
                })
            }
        };
        (run_log, launched)
    }

    /// Put the process `pid` just started into a cgroup with its limits. Where that fails it
    /// runs without them, and its log and the node's say why.
    fn limit(&self, pid: u32, log: &RunLog) -> Option<Group> {
        match self
            .ctx
            .cgroups
            .attach(&self.spec.instance, self.spec.limits, pid)
        {
            Ok(g) => g,
            Err(e) => {
                let why = format!("running without cpu and memory limits: {e}");
                tracing::warn!("{}: {why}", self.spec.instance);
                log.note(&why);
                None
            }
        }
    }

    /// The variables the supervisor sets for a run on `port`: the port, its names, and with
    /// GPUs to hand out the ones it sees.
    fn env(&self, port: u16) -> Vec<(String, String)> {
        let mut it = self.spec.instance.split('/');
        let bp = it.next().unwrap_or("");
        let slice = it.next().unwrap_or("");
        let mut env = vec![
            ("PORT".into(), port.to_string()),
            ("AETHER_BLUEPRINT".into(), bp.to_string()),
            ("AETHER_SLICE".into(), format!("{bp}/{slice}")),
            ("AETHER_INSTANCE".into(), self.spec.instance.clone()),
            ("AETHER_NODE".into(), self.ctx.node_name.clone()),
        ];
        if let Some(g) = &self.gpus {
            let ids: Vec<String> = g.iter().map(u32::to_string).collect();
            // NVML numbers GPUs in PCI bus order; CUDA must count them the same way.
            env.push(("CUDA_DEVICE_ORDER".into(), "PCI_BUS_ID".into()));
            env.push(("CUDA_VISIBLE_DEVICES".into(), ids.join(",")));
            env.push(("NVIDIA_VISIBLE_DEVICES".into(), ids.join(",")));
        }
        env
    }

    /// ACTIVATE, then ACTIVE until the run ends, and clean up after it: its pid and how it
    /// ended, or `None` when it was told to stop (and has stopped).
    async fn run(&self, run: Launched, log: &RunLog) -> Option<(u32, String)> {
        let Launched {
            mut child,
            log: file,
            port,
            env,
            run_as,
            shown,
            cgroup,
        } = run;
        let pid = child.id().unwrap_or(0);
        self.pid_slot.store(pid, Ordering::Relaxed);
        process::record_group(&self.ctx.data_dir, &self.spec.instance, pid);
        log.note(&format!("started pid {pid} on port {port}: {shown}"));
        let pumps = process::capture_output(&mut child, &file);
        self.report(InstanceState::Activating, Some(pid), self.health_none);
        let end = self
            .until_end(&mut child, pid, port, &env, run_as.as_ref())
            .await;
        let stopping = matches!(end, End::Stop);
        let how = self.end(&mut child, pid, end, log).await;
        self.release(pid, pumps).await;
        // Its group is gone: an OOM kill in its cgroup is counted by now.
        let how = match cgroup {
            Some(g) => {
                let how = g.explain(how);
                g.remove().await;
                how
            }
            None => how,
        };
        if stopping {
            log.note(&format!("stopped pid {pid}: {how}"));
            return None;
        }
        Some((pid, how))
    }

    /// Wait for whichever comes first: the order to stop, the process's exit, or (with a
    /// health check) its failing; the first passing check (or none to pass) makes it ACTIVE.
    async fn until_end(
        &self,
        child: &mut Child,
        pid: u32,
        port: u16,
        env: &[(String, String)],
        run_as: Option<&RunAs>,
    ) -> End {
        let health = async {
            match &self.spec.health {
                None => {
                    self.report(InstanceState::Active, Some(pid), "none");
                    std::future::pending::<String>().await
                }
                Some(h) => {
                    probe::watch(h, port, env, run_as, || {
                        self.report(InstanceState::Active, Some(pid), "passing")
                    })
                    .await
                }
            }
        };
        tokio::pin!(health);
        tokio::select! {
            _ = self.stop.cancelled() => End::Stop,
            st = child.wait() => match st {
                Ok(st) => End::Exited(st),
                Err(e) => End::Unhealthy(format!("waiting for the process failed: {e}")),
            },
            why = &mut health => End::Unhealthy(why),
        }
    }

    /// End the run: after an exit, kill the rest of its group; when told to stop or unhealthy,
    /// report it and stop its group (SIGTERM, then SIGKILL after the stop timeout). How it
    /// ended.
    async fn end(&self, child: &mut Child, pid: u32, end: End, log: &RunLog) -> String {
        match end {
            End::Exited(st) => {
                process::signal_group(pid, libc::SIGKILL);
                process::describe(&st)
            }
            End::Unhealthy(why) => {
                log.note(&why);
                let failing = format!("failing: {why}");
                self.report(InstanceState::Unhealthy, Some(pid), &failing);
                let st =
                    process::terminate(child, pid, self.spec.stop_timeout, |s| log.note(s)).await;
                format!("{st} after {why}")
            }
            End::Stop => {
                self.report(InstanceState::Stopping, Some(pid), self.health_none);
                // Out of routing on every node, its requests finished, then SIGTERM; the
                // drain and the stop share the stop timeout.
                let started = Instant::now();
                if let Some(d) = &self.ctx.drain {
                    d.clone()
                        .drain(&self.spec.instance, pid, self.spec.stop_timeout)
                        .await;
                }
                let left = self.spec.stop_timeout.saturating_sub(started.elapsed());
                process::terminate(child, pid, left.max(Duration::from_secs(1)), |s| {
                    log.note(s)
                })
                .await
            }
        }
    }

    /// Once the run has ended: wait until its whole group has gone (whatever it held, a GPU or
    /// a port, is free only then), let its output drain into the log, forget its group.
    async fn release(&self, pid: u32, pumps: [Option<JoinHandle<()>>; 2]) {
        if !process::group_gone(pid, GROUP_EXIT_LIMIT).await {
            tracing::warn!(
                "{}: process group {pid} still has members {}s after SIGKILL",
                self.spec.instance,
                GROUP_EXIT_LIMIT.as_secs()
            );
        }
        for p in pumps.into_iter().flatten() {
            let _ = tokio::time::timeout(Duration::from_secs(1), p).await;
        }
        self.pid_slot.store(0, Ordering::Relaxed);
        process::forget_group(&self.ctx.data_dir, &self.spec.instance);
    }

    /// After a run that ended (`Ok((pid, how))`) or never started (`Err(why)`): record it,
    /// report BACKOFF and wait before the next run; `false` when told to stop meanwhile.
    async fn back_off(
        &mut self,
        log: &RunLog,
        outcome: Result<(u32, String), StartError>,
        started: Instant,
    ) -> bool {
        let (exit, ended) = match outcome {
            Ok((pid, how)) => {
                tracing::info!(
                    "{}: pid {pid} ended ({how}); restarting",
                    self.spec.instance
                );
                (how.clone(), format!("pid {pid} ended ({how})"))
            }
            Err(e) => {
                tracing::warn!("{}: {e}", self.spec.instance);
                (e.to_string(), e.to_string())
            }
        };
        let (first, longest) = (
            self.ctx.cfg.restart_backoff.0,
            self.ctx.cfg.restart_backoff_max.0,
        );
        // A run that lasted the longest backoff resets it.
        if started.elapsed() >= longest {
            self.backoff = first;
        }
        self.life.restarts += 1;
        log.note(&format!(
            "{ended}; restart {} in {}",
            self.life.restarts,
            human_millis(self.backoff.as_millis() as u64)
        ));
        self.life.last_exit = Some(exit);
        self.report(InstanceState::Backoff, None, self.health_none);
        if wait_or_stop(&self.stop, self.backoff).await {
            return false;
        }
        self.backoff = (self.backoff * 2).min(longest);
        true
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

/// Sleep `d`; `true` when told to stop first.
async fn wait_or_stop(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

/// Make `work` (the instance's working dir, its HOME and TMPDIR), owned by the user it runs as
/// and private to it.
fn prepare_work(work: &std::path::Path, run_as: Option<&RunAs>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(work)?;
    if let Some(u) = run_as {
        std::os::unix::fs::chown(work, Some(u.uid), Some(u.gid))?;
    }
    std::fs::set_permissions(work, std::fs::Permissions::from_mode(0o700))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_program_that_cannot_start_backs_off_saying_why_until_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let ctx = Arc::new(Ctx {
            node: 1,
            node_name: "n1".into(),
            data_dir: dir.path().into(),
            cfg: DeployConfig {
                restart_backoff: crate::config::Dur::ms(50),
                ..DeployConfig::default()
            },
            events: tx,
            drain: None,
            // As a node that is not root: no user to switch to.
            node_uid: 4242,
            passed_env: Vec::new(),
            cgroups: Cgroups::off("a test"),
        });
        let spec = Spec {
            instance: "t/s/0".into(),
            placement: Some(4),
            command: vec!["/nonexistent/program".into()],
            env: BTreeMap::new(),
            stop_timeout: Duration::from_secs(1),
            health: None,
            gpus: 0,
            user: None,
            limits: Limits::default(),
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(run_instance(
            ctx,
            spec,
            None,
            stop.clone(),
            Arc::new(AtomicU32::new(0)),
        ));
        let mut states = Vec::new();
        let last = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match rx.recv().await.expect("the task is alive") {
                    Event::Status(st) if st.restarts == 2 => return st,
                    Event::Status(st) => states.push(st.state),
                    Event::Gone(k) => panic!("{k} gone before it was told to stop"),
                }
            }
        })
        .await
        .expect("two restarts within 10 s");
        assert_eq!(
            states,
            [
                InstanceState::Loading,
                InstanceState::Backoff,
                InstanceState::Loading
            ]
        );
        assert_eq!(last.state, InstanceState::Backoff);
        assert_eq!(last.placement, 4);
        let exit = last.last_exit.unwrap();
        assert!(
            exit.starts_with("cannot start '/nonexistent/program': "),
            "{exit}"
        );
        let log = std::fs::read_to_string(logs::path(dir.path(), "t/s/0").unwrap()).unwrap();
        assert!(log.contains("; restart 2 in "), "{log}");
        stop.cancel();
        task.await.unwrap();
        let mut rest = Vec::new();
        while let Ok(e) = rx.try_recv() {
            rest.push(e);
        }
        assert_eq!(rest.last(), Some(&Event::Gone("t/s/0".into())), "{rest:?}");
    }
}
