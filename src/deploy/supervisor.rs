//! The supervisor (DESIGN §8): runs each instance assigned to this node as a child process.
//!
//! This file is the reconcile step: it converges the instances this node runs on what it is
//! told to run, hands out GPUs (one instance each), and starts one task per instance. The parts:
//! `lifecycle` (one instance's run: LOAD → ACTIVATE → ACTIVE, restarts with backoff, stop),
//! `process` (spawning, process groups, signals, kill and wait, leftovers of a previous run)
//! and `probe` (health checks).
//!
//! Daemon restarts: instances do not outlive the daemon. Each child gets SIGKILL when the
//! daemon dies (`PR_SET_PDEATHSIG`), and each process group is recorded in
//! `<data-dir>/run/`; a restarted daemon kills whatever is left of the groups recorded by its
//! previous run before it starts anything, then starts what is assigned to it afresh. So a
//! `kill -9` of the daemon leaves no orphan and no duplicate.

mod cgroup;
mod gpus;
mod lifecycle;
mod probe;
mod process;
pub mod user;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::DeployConfig;
use crate::domain::{InstanceState, InstanceStatus, NodeId, now_millis};
pub use cgroup::Limits;
use gpus::Shortage;
use lifecycle::{Ctx, run_instance};
pub use lifecycle::{Event, Spec};
pub use process::signal_group;
use process::{reap_leftovers, run_dir};

/// An instance's task and what it holds.
struct Running {
    spec: Spec,
    stop: CancellationToken,
    task: JoinHandle<()>,
    pid: Arc<AtomicU32>,
    /// The GPUs it holds until its task has ended.
    gpus: Vec<u32>,
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
    waiting: HashMap<String, (Option<u64>, Shortage)>,
}

/// FNV-1a of `b`: a short name that stays the same across runs and builds.
fn fnv32(b: &[u8]) -> u32 {
    b.iter().fold(0x811c_9dc5u32, |h, x| {
        (h ^ u32::from(*x)).wrapping_mul(0x0100_0193)
    })
}

/// `, plus HTTP_PROXY, NO_PROXY from the node` when the node passes some through.
fn passed_note(passed: &[(String, String)]) -> String {
    if passed.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = passed.iter().map(|(k, _)| k.as_str()).collect();
        format!(" (plus {} from the node's)", names.join(", "))
    }
}

impl Supervisor {
    /// Take each instance out of traffic with `d` before it is stopped (set before the first
    /// reconcile).
    pub fn with_drain(mut self, d: std::sync::Arc<dyn crate::deploy::Drain>) -> Supervisor {
        if let Some(ctx) = Arc::get_mut(&mut self.ctx) {
            ctx.drain = Some(d);
        }
        self
    }

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
        std::fs::create_dir_all(data_dir.join("work"))?;
        std::fs::create_dir_all(data_dir.join("logs"))?;
        user::seal_data_dir(&data_dir);
        let node_uid = user::node_uid();
        let passed_env = user::passed(&cfg.pass_env);
        let resolved = user::resolve(None, &cfg, node_uid);
        let closed = match &resolved {
            Ok(Some(u)) => user::unreachable(&data_dir.join("work"), u),
            _ => None,
        };
        let said = match resolved {
            Ok(Some(u)) if closed.is_some() => format!(
                "instances of '{}' cannot start here: {}",
                u.name,
                closed.unwrap_or_default()
            ),
            Ok(Some(u)) => format!(
                "instances run as '{}' (deploy.user) unless their slice names one, root only with deploy.allow_root; clean environment{}; no_new_privs",
                u.name,
                passed_note(&passed_env)
            ),
            Ok(None) => format!(
                "instances run as '{}', this node's own user (it is not root, so it cannot switch users); clean environment{}; no_new_privs",
                user::name_of(node_uid),
                passed_note(&passed_env)
            ),
            Err(why) => format!("instances of slices that name no user do not start here: {why}"),
        };
        // After the leftovers are killed: their cgroups are empty and go too.
        // Named after the node and its data dir: two nodes of one name on a host (test
        // clusters) never share an instance's cgroup.
        let cgroups = cgroup::Cgroups::detect(
            std::path::Path::new("/sys/fs/cgroup"),
            &format!(
                "{node_name}-{:08x}",
                fnv32(data_dir.as_os_str().as_encoded_bytes())
            ),
            cfg.limits,
            cgroup::own_v2().as_deref(),
            std::process::id(),
        );
        if cgroups.on() {
            tracing::info!("{}", cgroups.status());
        } else {
            tracing::warn!("{}", cgroups.status());
        }
        let said = format!("{said}; {}", cgroups.status());
        tracing::info!("isolation: {said}");
        user::set_protections(said);
        Ok(Supervisor {
            ctx: Arc::new(Ctx {
                node,
                node_name,
                data_dir,
                cfg,
                events,
                drain: None,
                node_uid,
                passed_env,
                cgroups,
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
        self.stop_unwanted(desired);
        self.forget_waiting(desired);
        let mut todo: Vec<(&String, &Spec)> = desired.iter().collect();
        todo.sort_by(|a, b| a.0.cmp(b.0));
        for (k, spec) in todo {
            if self.running.contains_key(k) || self.stopping.iter().any(|r| r.spec.instance == *k) {
                continue;
            }
            let offered = self.gpus.as_deref().unwrap_or_default();
            match gpus::pick(offered, &self.held_gpus(), spec.gpus) {
                Ok(gpus) => {
                    self.waiting.remove(k);
                    self.start(k, spec, gpus);
                }
                Err(why) => self.wait_for_gpus(k, spec, why),
            }
        }
    }

    /// Tell every running instance that `desired` does not keep to stop.
    fn stop_unwanted(&mut self, desired: &HashMap<String, Spec>) {
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
    }

    /// Forget the waiting instances `desired` no longer has, and say they are gone.
    fn forget_waiting(&mut self, desired: &HashMap<String, Spec>) {
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
    }

    /// Who holds which GPU: running instances by name, stopping ones as `name (stopping)`.
    fn held_gpus(&self) -> BTreeMap<u32, String> {
        self.running
            .values()
            .map(|r| (r, r.spec.instance.clone()))
            .chain(
                self.stopping
                    .iter()
                    .map(|r| (r, format!("{} (stopping)", r.spec.instance))),
            )
            .flat_map(|(r, who)| r.gpus.iter().map(move |g| (*g, who.clone())))
            .collect()
    }

    /// Hold instance `k` back until its GPUs are free, reporting it WAITING with `why` when
    /// that (or its placement) changed since it was last said.
    fn wait_for_gpus(&mut self, k: &str, spec: &Spec, why: Shortage) {
        let said = (spec.placement, why);
        if self.waiting.get(k) == Some(&said) {
            return;
        }
        let why = &said.1;
        tracing::warn!("{k}: {why}");
        let _ = self.ctx.events.send(Event::Status(InstanceStatus {
            instance: k.to_string(),
            node: self.ctx.node,
            placement: spec.placement.unwrap_or(0),
            state: InstanceState::Waiting,
            port: 0,
            pid: None,
            restarts: 0,
            last_exit: None,
            health: why.to_string(),
            since: now_millis(),
            gpus: Vec::new(),
        }));
        self.waiting.insert(k.to_string(), said);
    }

    /// Start instance `k` on a task of its own, holding `gpus`.
    fn start(&mut self, k: &str, spec: &Spec, gpus: Vec<u32>) {
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
            k.to_string(),
            Running {
                spec: spec.clone(),
                stop,
                task,
                pid,
                gpus,
            },
        );
    }

    /// Whether instances get cpu and memory limits, or which are off and why.
    pub fn limits_status(&self) -> &str {
        self.ctx.cgroups.status()
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

/// SIGKILL every process of the instance group `pgid` (a fire drill's crash: the supervisor
/// sees the instance die and restarts it as it would after any crash).
pub fn kill_group(pgid: u32) {
    process::signal_group(pgid, libc::SIGKILL);
}

#[cfg(test)]
mod tests {
    use super::process::{pid_file, proc_stat, signal_group};
    use super::*;
    use crate::deploy::logs;
    use std::time::Duration;

    fn cfg() -> DeployConfig {
        DeployConfig {
            restart_backoff: crate::config::Dur::ms(100),
            // No instance here has limits: keep off the host's cgroup tree.
            limits: false,
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
            user: None,
            limits: Default::default(),
        }
    }

    /// Live processes (not zombies) in process group `pgid`.
    fn group_size(pgid: u32) -> usize {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| proc_stat(*pid).is_some_and(|s| s.pgrp == pgid))
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
        let start = proc_stat(ours.id()).unwrap().start;
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
