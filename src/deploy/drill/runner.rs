//! The drill runner (in the node that received `aether drill run`) and the drill's peer
//! service ([`ROUTE`]), which carries out each step on the node it concerns: report its Raft
//! state, cut itself off or heal, write a probe, kill its own instances of a slice, or say
//! what its replica shows of a node and its instances.
//!
//! The drill's own route is the one route an isolated node still serves and uses, so the
//! runner can watch and heal the node it cut off, wherever it runs (the cut-off node included).
//! Every fault carries its deadline to the node: the node heals itself then, whether or not
//! the runner is still there.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{DrillReport, Facts, MAX_HOLD, Member, Plan, Refusal, Scenario, plan};
use crate::domain::{
    Action, Health, InstanceState, Millis, NodeId, NodeState, SPOT_DRILL_SOURCE,
    SPOT_INTERRUPTION_RULE, SpotKind, SpotNotice, now_millis,
};
use crate::net::{BoxFut, PeerCtx, Route, Service};
use crate::raft::Cluster;
use crate::raft::types::{Command, Request, RequestId, Response};

/// The drill's place on the peer endpoint (members only).
pub const ROUTE: Route = Route {
    id: 6,
    name: "drill",
    open: false,
};

/// The kv key the drill's probe writes go to (`<scenario> <n>`).
pub const PROBE_KEY: &str = "drill/probe";

/// Between two probe writes (and state polls).
const TICK: Duration = Duration::from_millis(50);
/// A step asked of a node.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);
/// One probe write.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Writing a drill's audit record.
const RECORD_TIMEOUT: Duration = Duration::from_secs(10);
/// Probe errors kept in the report (distinct ones, first seen first).
const ERRORS_KEPT: usize = 5;

/// One step asked of a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Ask {
    /// Its Raft state and whether it is cut off.
    State,
    /// Cut itself off from its peers for `ms` (at most [`MAX_HOLD`]).
    Isolate { ms: u64 },
    /// End its isolation now.
    Heal,
    /// Write `value` to [`PROBE_KEY`] through Raft (forwarded to the leader).
    Probe { value: String },
    /// SIGKILL its own instances of `blueprint/slice`.
    KillSlice { blueprint: String, slice: String },
    /// What its replica shows: `node`'s health, and how many of `instances` are assigned to
    /// another node and active there.
    Watch {
        node: NodeId,
        instances: Vec<String>,
    },
}

/// A node's answer to an [`Ask`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Answer {
    State(PeerState),
    Done,
    Killed(u32),
    Watch { health: Health, moved: u32 },
}

/// A node's Raft state as a drill watches it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PeerState {
    pub leader: Option<NodeId>,
    pub term: u64,
    pub applied: u64,
    pub ready: bool,
    /// How long it stays cut off, ms; `None` when it is not.
    pub isolated_ms: Option<u64>,
    /// It runs a drill now.
    pub drilling: bool,
}

/// Answers the drill's steps on this node.
pub struct DrillService(pub Arc<Cluster>);

impl Service for DrillService {
    type Req = Ask;
    type Resp = Answer;
    fn handle(self: Arc<Self>, _: PeerCtx, req: Ask) -> BoxFut<Result<Answer, String>> {
        Box::pin(async move { answer(&self.0, req).await })
    }
}

fn state(c: &Cluster) -> PeerState {
    let (leader, term) = {
        let m = c.raft.metrics();
        let m = m.borrow();
        (m.current_leader, m.current_term)
    };
    PeerState {
        leader,
        term,
        applied: c.store.applied_index(),
        ready: c.ready(),
        isolated_ms: c.ep.isolated_for().map(|d| d.as_millis() as u64),
        drilling: RUNNING.load(Ordering::SeqCst),
    }
}

async fn answer(c: &Cluster, req: Ask) -> Result<Answer, String> {
    Ok(match req {
        Ask::State => Answer::State(state(c)),
        Ask::Isolate { ms } => {
            let hold = Duration::from_millis(ms).min(MAX_HOLD);
            c.ep.isolate(Instant::now() + hold, ROUTE);
            Answer::Done
        }
        Ask::Heal => {
            c.ep.heal();
            Answer::Done
        }
        Ask::Probe { value } => {
            let req = Request {
                id: RequestId::new_random(),
                actor: format!("drill@{}", c.name),
                at: now_millis(),
                cmd: Command::Put {
                    key: PROBE_KEY.into(),
                    value: value.into_bytes(),
                },
            };
            match tokio::time::timeout(PROBE_TIMEOUT, c.write(req, true)).await {
                Ok(Ok(_)) => Answer::Done,
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => {
                    return Err(format!(
                        "not committed within {} ms",
                        PROBE_TIMEOUT.as_millis()
                    ));
                }
            }
        }
        Ask::KillSlice { blueprint, slice } => {
            let prefix = format!("{blueprint}/{slice}/");
            let mut killed = 0;
            let instances = c.store.instances().map_err(|e| e.to_string())?;
            for i in instances
                .iter()
                .filter(|i| i.node == c.id && i.instance.starts_with(&prefix))
            {
                if let Some(pid) = i.pid {
                    tracing::warn!("fire drill: SIGKILL to instance {} (pid {pid})", i.instance);
                    crate::deploy::supervisor::kill_group(pid);
                    killed += 1;
                }
            }
            Answer::Killed(killed)
        }
        Ask::Watch { node, instances } => {
            let health = c
                .store
                .health()
                .map_err(|e| e.to_string())?
                .get(&node)
                .copied()
                .unwrap_or_default();
            let assignments = c.store.assignments().map_err(|e| e.to_string())?;
            let statuses = c.store.instances().map_err(|e| e.to_string())?;
            let moved = instances
                .iter()
                .filter(|name| {
                    let Some(to) = assignments
                        .get(*name)
                        .and_then(|a| a.node)
                        .filter(|n| *n != node)
                    else {
                        return false;
                    };
                    statuses.iter().any(|s| {
                        s.instance == **name && s.node == to && s.state == InstanceState::Active
                    })
                })
                .count() as u32;
            Answer::Watch { health, moved }
        }
    })
}

/// What a spot drill's poll saw.
struct SpotSeen {
    decision: Option<String>,
    moves: Vec<String>,
    drained: bool,
}

/// Why a drill did not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Refused before anything changed.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The cluster could not be asked (no leader, no quorum).
    #[error("{0}")]
    Unavailable(String),
}

/// One drill at a time on a node.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Clears [`RUNNING`] when the drill ends, however it ends.
struct Running;

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.store(false, Ordering::SeqCst);
    }
}

/// Run drill `scenario` (or only plan it, with `dry_run`) on behalf of `actor`; `hold` is the
/// operator's `--for`, `down_after` the node-down detection this node is configured with. Says
/// what it does and sees, a line at a time, to `progress`.
pub async fn run(
    cluster: Arc<Cluster>,
    scenario: Scenario,
    hold: Option<Duration>,
    dry_run: bool,
    actor: String,
    down_after: Duration,
    progress: Option<tokio::sync::mpsc::UnboundedSender<String>>,
) -> Result<DrillReport, RunError> {
    if RUNNING.swap(true, Ordering::SeqCst) {
        return Err(Refusal::Unsafe(
            "another drill is running (started on this node); wait for it to end".into(),
        )
        .into());
    }
    let _running = Running;
    let d = Drill {
        cluster,
        actor,
        progress,
    };
    let facts = d.facts(&scenario, down_after).await?;
    let plan = plan(&scenario, &facts, hold)?;
    let mut r = DrillReport {
        scenario: scenario.name().into(),
        target: scenario.target(),
        dry_run,
        plan: Some(plan.clone()),
        ..DrillReport::default()
    };
    if dry_run {
        r.recovered = true;
        r.verdict = format!("{}: dry run, nothing was changed", r.scenario);
        return Ok(r);
    }
    let start = format!(
        "{} started{}: {}",
        r.scenario,
        r.target
            .as_ref()
            .map(|t| format!(" on {t}"))
            .unwrap_or_default(),
        plan.fault
    );
    if let Err(e) = d.record(start).await {
        return Err(RunError::Unavailable(format!(
            "the drill was not started: its audit record could not be written ({e}); check 'aether status'"
        )));
    }
    d.say(format!("{} started: {}", r.scenario, plan.fault));
    r.term_before = d
        .observe(&facts, plan.node)
        .await
        .map(|s| s.term)
        .unwrap_or(0);
    r.old_leader = facts.leader.and_then(|l| name_of(&facts, l));
    match &scenario {
        Scenario::LeaderLoss => d.leader_loss(&facts, &plan, &mut r).await,
        Scenario::Partition { .. } => d.partition(&facts, &plan, &mut r).await,
        Scenario::NodeLoss { .. } => d.node_loss(&facts, &plan, &mut r).await,
        Scenario::SliceCrash { blueprint, slice } => {
            d.slice_crash(&facts, &plan, blueprint, slice, &mut r).await
        }
        Scenario::SpotInterruption { .. } => d.spot_interruption(&facts, &plan, &mut r).await,
    }
    if let Some(s) = d.observe(&facts, None).await {
        r.term_after = s.term;
        if r.new_leader.is_none() {
            r.new_leader = s.leader.and_then(|l| name_of(&facts, l));
        }
    }
    r.verdict = r.verdict_line();
    if let Err(e) = d
        .record(format!("{} ended: {}", r.scenario, r.verdict))
        .await
    {
        r.notes
            .push(format!("the drill's end record was not written: {e}"));
    }
    Ok(r)
}

fn name_of(facts: &Facts, id: NodeId) -> Option<String> {
    facts
        .members
        .iter()
        .find(|m| m.id == id)
        .map(|m| m.name.clone())
}

fn since(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

/// Probe writes and what they met.
#[derive(Default)]
struct Probes {
    sent: u32,
    ok: u32,
    failed: u32,
    /// The first distinct errors.
    errors: Vec<String>,
    last: Option<String>,
}

impl Probes {
    /// Add the counts to the report.
    fn into_report(self, r: &mut DrillReport) {
        r.probe_writes += self.ok;
        r.probe_errors += self.failed;
        r.errors.extend(self.errors);
        r.last_probe = self.last.or(r.last_probe.take());
    }
}

struct Drill {
    cluster: Arc<Cluster>,
    actor: String,
    progress: Option<tokio::sync::mpsc::UnboundedSender<String>>,
}

impl Drill {
    /// One progress line (dropped when nobody listens).
    fn say(&self, line: String) {
        if let Some(p) = &self.progress {
            let _ = p.send(line);
        }
    }

    /// Ask `m` for one step: answered here when it is this node, else over the drill's route.
    async fn ask(&self, m: &Member, a: Ask) -> Result<Answer, String> {
        if m.id == self.cluster.id {
            return answer(&self.cluster, a).await;
        }
        self.cluster
            .ep
            .call::<_, Answer>(&m.addr, ROUTE, &a, Some(ASK_TIMEOUT))
            .await
            .map_err(|e| e.to_string())
    }

    async fn state_of(&self, m: &Member) -> Option<PeerState> {
        match self.ask(m, Ask::State).await {
            Ok(Answer::State(s)) => Some(s),
            _ => None,
        }
    }

    /// A voter other than `not` that answers, to write and read through (this node first).
    fn observer<'a>(&self, facts: &'a Facts, not: Option<NodeId>) -> Option<&'a Member> {
        let ok = |m: &&Member| m.voter && m.reachable && Some(m.id) != not;
        facts
            .members
            .iter()
            .filter(ok)
            .find(|m| m.id == self.cluster.id)
            .or_else(|| facts.members.iter().find(ok))
    }

    /// The state of an observer other than `not`.
    async fn observe(&self, facts: &Facts, not: Option<NodeId>) -> Option<PeerState> {
        self.state_of(self.observer(facts, not)?).await
    }

    /// Write the drill's audit record `what`.
    async fn record(&self, what: String) -> Result<(), String> {
        let req = Request {
            id: RequestId::new_random(),
            actor: self.actor.clone(),
            at: now_millis(),
            cmd: Command::RecordDrill { what },
        };
        match tokio::time::timeout(RECORD_TIMEOUT, self.cluster.write(req, true)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "not committed within {} s",
                RECORD_TIMEOUT.as_secs()
            )),
        }
    }

    /// The members (each asked for its state at once), the leader, and for `slice-crash` the
    /// slice's instances.
    async fn facts(&self, s: &Scenario, down_after: Duration) -> Result<Facts, RunError> {
        let c = &self.cluster;
        let status = c
            .status()
            .await
            .map_err(|e| RunError::Unavailable(e.to_string()))?;
        let members: Vec<Member> = status
            .members
            .iter()
            .map(|m| Member {
                id: m.id,
                name: m.name.clone(),
                addr: m.addr.clone(),
                voter: m.role == "voter",
                reachable: true,
                health: m.health,
                isolated: false,
                drilling: false,
                state: m.state,
                spot: m.spot.clone(),
            })
            .collect();
        let states = futures::future::join_all(members.iter().map(|m| self.state_of(m))).await;
        let members = members
            .into_iter()
            .zip(states)
            .map(|(m, s)| Member {
                reachable: s.is_some(),
                isolated: s.is_some_and(|s| s.isolated_ms.is_some()),
                // This node runs the drill being planned.
                drilling: m.id != c.id && s.is_some_and(|s| s.drilling),
                ..m
            })
            .collect();
        let (mut slice_known, mut slice_instances) = (false, 0);
        if let Scenario::SliceCrash { blueprint, slice } = s {
            let store = |e: std::io::Error| RunError::Unavailable(format!("store: {e}"));
            slice_known = c.store.blueprints().map_err(store)?.iter().any(|b| {
                b.blueprint.name == *blueprint
                    && b.blueprint.slices.iter().any(|x| x.name == *slice)
            });
            let prefix = format!("{blueprint}/{slice}/");
            slice_instances = c
                .store
                .instances()
                .map_err(store)?
                .iter()
                .filter(|i| i.instance.starts_with(&prefix) && i.pid.is_some())
                .count() as u32;
        }
        Ok(Facts {
            members,
            leader: status.leader.map(|l| l.id),
            slice_instances,
            slice_known,
            down_after,
        })
    }

    fn target<'a>(&self, facts: &'a Facts, plan: &Plan) -> &'a Member {
        facts
            .members
            .iter()
            .find(|m| Some(m.id) == plan.node)
            .expect("a planned target is a member")
    }

    /// One probe write of `scenario` through `via`, counted in `p`; whether it went through.
    async fn probe(&self, via: &Member, scenario: &str, p: &mut Probes) -> bool {
        p.sent += 1;
        let value = format!("{scenario} {}", p.sent);
        let ask = Ask::Probe {
            value: value.clone(),
        };
        match self.ask(via, ask).await {
            Ok(_) => {
                p.ok += 1;
                p.last = Some(value);
                true
            }
            Err(e) => {
                p.failed += 1;
                if p.errors.len() < ERRORS_KEPT && !p.errors.contains(&e) {
                    p.errors.push(e);
                }
                false
            }
        }
    }

    /// Probe writes through `via` every tick from `t0` for `hold`, until one goes through when
    /// `first_only`: the probes and when the first went through, ms from `t0`.
    async fn probes(
        &self,
        via: &Member,
        scenario: &str,
        t0: Instant,
        hold: Duration,
        first_only: bool,
    ) -> (Probes, Option<u64>) {
        let mut p = Probes::default();
        let mut first = None;
        while t0.elapsed() < hold {
            let tick = tokio::time::Instant::now();
            if self.probe(via, scenario, &mut p).await && first.is_none() {
                first = Some(since(t0));
                if first_only {
                    self.say(format!("writes resumed after {}", super::ms(since(t0))));
                    break;
                }
            }
            tokio::time::sleep_until(tick + TICK).await;
        }
        (p, first)
    }

    /// Watch `via`'s leader every tick from `t0` for `hold`: the first leader other than
    /// `not`, and when it was seen, ms from `t0`.
    async fn new_leader(
        &self,
        via: &Member,
        not: Option<NodeId>,
        t0: Instant,
        hold: Duration,
    ) -> Option<(NodeId, u64)> {
        while t0.elapsed() < hold {
            let tick = tokio::time::Instant::now();
            let now = self.state_of(via).await.and_then(|s| s.leader);
            if let Some(l) = now.filter(|l| Some(*l) != not) {
                return Some((l, since(t0)));
            }
            tokio::time::sleep_until(tick + TICK).await;
        }
        None
    }

    /// Cut `m` off for `hold_ms`; a failure is noted and ends the drill unrecovered.
    async fn isolate(&self, m: &Member, hold_ms: u64, r: &mut DrillReport) -> bool {
        match self.ask(m, Ask::Isolate { ms: hold_ms }).await {
            Ok(_) => {
                self.say(format!("'{}' is cut off", m.name));
                true
            }
            Err(e) => {
                r.notes
                    .push(format!("'{}' could not be cut off: {e}", m.name));
                false
            }
        }
    }

    /// Heal `m` (it heals by itself at its deadline anyway).
    async fn heal(&self, m: &Member, r: &mut DrillReport) {
        self.say(format!("healing '{}'", m.name));
        if let Err(e) = self.ask(m, Ask::Heal).await {
            r.notes.push(format!(
                "'{}' was not reached to heal it ({e}); it heals by itself at the fault's deadline",
                m.name
            ));
        }
    }

    /// Wait up to `bound` for `f` (polled every tick) to hold; how long it took, ms.
    async fn until<F, Fut>(&self, bound: Duration, mut f: F) -> Option<u64>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let t = Instant::now();
        while t.elapsed() < bound {
            if f().await {
                return Some(since(t));
            }
            tokio::time::sleep(TICK).await;
        }
        None
    }

    async fn leader_loss(&self, facts: &Facts, plan: &Plan, r: &mut DrillReport) {
        let old = self.target(facts, plan);
        let Some(via) = self.observer(facts, Some(old.id)) else {
            r.notes.push("no other voter answers".into());
            return;
        };
        if !self.isolate(old, plan.hold_ms, r).await {
            return;
        }
        let t0 = Instant::now();
        let hold = Duration::from_millis(plan.hold_ms);
        // The leader is watched and writes probed side by side, each timed on its own.
        let watch = async {
            let seen = self.new_leader(via, Some(old.id), t0, hold).await;
            if let Some((l, at)) = seen {
                let name = name_of(facts, l).unwrap_or_else(|| format!("id {l}"));
                self.say(format!("new leader {name} after {}", super::ms(at)));
            }
            seen
        };
        let (leader, (probes, resumed)) =
            tokio::join!(watch, self.probes(via, &r.scenario, t0, hold, true));
        probes.into_report(r);
        r.writes_resumed_after_ms = resumed;
        let new = leader.map(|(l, at)| {
            r.leader_after_ms = Some(at);
            r.leader_changed = true;
            r.new_leader = name_of(facts, l);
            l
        });
        self.heal(old, r).await;
        r.healed_after_ms = Some(since(t0));
        let Some(new) = new else {
            r.notes.push(format!(
                "no other node took over within {}",
                super::ms(plan.hold_ms)
            ));
            return;
        };
        // The old leader rejoins as a follower of the new one, and is ready.
        let back = self
            .until(Duration::from_millis(plan.bound_ms), || async {
                self.state_of(old)
                    .await
                    .is_some_and(|s| s.leader == Some(new) && s.ready && s.isolated_ms.is_none())
            })
            .await;
        match back {
            Some(ms) => {
                self.say(format!(
                    "'{}' follows the new leader after {}",
                    old.name,
                    super::ms(ms)
                ));
                r.back_ready_after_ms = Some(ms)
            }
            None => r.notes.push(format!(
                "'{}' did not follow the new leader within {}",
                old.name,
                super::ms(plan.bound_ms)
            )),
        }
        r.recovered = r.writes_resumed_after_ms.is_some() && back.is_some();
    }

    async fn partition(&self, facts: &Facts, plan: &Plan, r: &mut DrillReport) {
        let node = self.target(facts, plan);
        let Some(via) = self.observer(facts, Some(node.id)) else {
            r.notes.push("no other voter answers".into());
            return;
        };
        if !self.isolate(node, plan.hold_ms, r).await {
            return;
        }
        let t0 = Instant::now();
        let hold = Duration::from_millis(plan.hold_ms);
        // The leader is watched and writes probed side by side for the whole fault.
        let watch = async {
            let seen = self.new_leader(via, facts.leader, t0, hold).await;
            if let Some((l, at)) = seen {
                let name = name_of(facts, l).unwrap_or_else(|| format!("id {l}"));
                self.say(format!("leader changed to {name} after {}", super::ms(at)));
            }
            seen
        };
        let (leader, (probes, _)) =
            tokio::join!(watch, self.probes(via, &r.scenario, t0, hold, false));
        probes.into_report(r);
        if let Some((l, at)) = leader {
            r.leader_changed = true;
            r.leader_after_ms = Some(at);
            r.new_leader = name_of(facts, l);
        }
        self.say(format!(
            "{} probe writes ok, {} errors while '{}' was cut off",
            r.probe_writes, r.probe_errors, node.name
        ));
        self.heal(node, r).await;
        r.healed_after_ms = Some(since(t0));
        // Caught up: the node has applied what the leader has (no probes run any more).
        r.caught_up_after_ms = self
            .until(Duration::from_millis(plan.bound_ms), || async {
                let Some(leader) = self
                    .state_of(via)
                    .await
                    .and_then(|s| s.leader)
                    .and_then(|l| facts.members.iter().find(|m| m.id == l))
                else {
                    return false;
                };
                let (Some(l), Some(n)) = (self.state_of(leader).await, self.state_of(node).await)
                else {
                    return false;
                };
                n.isolated_ms.is_none() && n.applied >= l.applied && n.ready
            })
            .await;
        self.say(format!(
            "caught up: {}",
            r.caught_up_after_ms
                .map(super::ms)
                .unwrap_or_else(|| "not seen".into())
        ));
        if r.caught_up_after_ms.is_none() {
            r.notes.push(format!(
                "'{}' did not catch up within {}",
                node.name,
                super::ms(plan.bound_ms)
            ));
        }
        r.recovered = r.probe_writes > 0 && r.caught_up_after_ms.is_some();
    }

    async fn node_loss(&self, facts: &Facts, plan: &Plan, r: &mut DrillReport) {
        let node = self.target(facts, plan);
        let Some(via) = self.observer(facts, Some(node.id)) else {
            r.notes.push("no other voter answers".into());
            return;
        };
        let held: Vec<String> = match self.cluster.store.assignments() {
            Ok(a) => a
                .into_iter()
                .filter(|(_, a)| a.node == Some(node.id))
                .map(|(k, _)| k)
                .collect(),
            Err(e) => {
                r.notes.push(format!("store: {e}"));
                return;
            }
        };
        r.moved_instances = Some(held.len() as u32);
        if !self.isolate(node, plan.hold_ms, r).await {
            return;
        }
        let t0 = Instant::now();
        let hold = Duration::from_millis(plan.hold_ms);
        let watch = Ask::Watch {
            node: node.id,
            instances: held.clone(),
        };
        while t0.elapsed() < hold {
            let tick = tokio::time::Instant::now();
            if let Ok(Answer::Watch { health, moved }) = self.ask(via, watch.clone()).await {
                if health == Health::Down && r.marked_down_after_ms.is_none() {
                    r.marked_down_after_ms = Some(since(t0));
                    self.say(format!(
                        "'{}' marked down after {}",
                        node.name,
                        super::ms(since(t0))
                    ));
                }
                if r.marked_down_after_ms.is_some() && moved as usize == held.len() {
                    r.moved_after_ms = Some(since(t0));
                    self.say(format!(
                        "{} instance(s) active elsewhere after {}",
                        held.len(),
                        super::ms(since(t0))
                    ));
                    break;
                }
            }
            tokio::time::sleep_until(tick + TICK * 2).await;
        }
        self.heal(node, r).await;
        r.healed_after_ms = Some(since(t0));
        r.back_ready_after_ms = self
            .until(Duration::from_millis(plan.bound_ms), || async {
                let marked = matches!(
                    self.ask(via, watch.clone()).await,
                    Ok(Answer::Watch {
                        health: Health::Ready,
                        ..
                    })
                );
                marked && self.state_of(node).await.is_some_and(|s| s.ready)
            })
            .await;
        self.say(format!(
            "back ready: {}",
            r.back_ready_after_ms
                .map(super::ms)
                .unwrap_or_else(|| "not seen".into())
        ));
        r.recovered = r.marked_down_after_ms.is_some()
            && r.moved_after_ms.is_some()
            && r.back_ready_after_ms.is_some();
    }

    /// Write `cmd` through Raft as the drill's operator; a refusal is an error.
    async fn write(&self, cmd: Command) -> Result<(), String> {
        let req = Request {
            id: RequestId::new_random(),
            actor: self.actor.clone(),
            at: now_millis(),
            cmd,
        };
        match tokio::time::timeout(RECORD_TIMEOUT, self.cluster.write(req, true)).await {
            Ok(Ok(Response::Refused(m))) => Err(m),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "not committed within {} s",
                RECORD_TIMEOUT.as_secs()
            )),
        }
    }

    /// What this node's replica shows of a spot drill on `node` with the notice's deadline
    /// `deadline`: the leader's decision, where each of `held` runs (active) now, and whether
    /// the node is drained.
    fn spot_seen(
        &self,
        node: NodeId,
        deadline: Millis,
        held: &[String],
        facts: &Facts,
    ) -> Result<SpotSeen, std::io::Error> {
        let store = &self.cluster.store;
        let deadline = deadline.to_string();
        let decision = store
            .decisions(200, true, 0, now_millis())?
            .into_iter()
            .find(|d| {
                d.rule == SPOT_INTERRUPTION_RULE
                    && matches!(d.action, Action::Drain { node: n, .. } if n == node)
                    && d.inputs
                        .iter()
                        .any(|(k, v)| k == "deadline" && *v == deadline)
            })
            .map(|d| d.name());
        let assignments = store.assignments()?;
        let statuses = store.instances()?;
        let moves: Vec<String> = held
            .iter()
            .filter_map(|i| {
                let to = assignments
                    .get(i)
                    .and_then(|a| a.node)
                    .filter(|n| *n != node)?;
                statuses
                    .iter()
                    .any(|s| s.instance == *i && s.node == to && s.state == InstanceState::Active)
                    .then(|| format!("{i} → {}", name_of(facts, to).unwrap_or(to.to_string())))
            })
            .collect();
        let drained = store
            .nodes()?
            .iter()
            .any(|n| n.id == node && n.state == NodeState::Drained);
        Ok(SpotSeen {
            decision,
            moves,
            drained,
        })
    }

    async fn spot_interruption(&self, facts: &Facts, plan: &Plan, r: &mut DrillReport) {
        let node = self.target(facts, plan);
        let held: Vec<String> = match self.cluster.store.assignments() {
            Ok(a) => a
                .into_iter()
                .filter(|(_, a)| a.node == Some(node.id))
                .map(|(k, _)| k)
                .collect(),
            Err(e) => {
                r.notes.push(format!("store: {e}"));
                return;
            }
        };
        r.moved_instances = Some(held.len() as u32);
        r.deadline_after_ms = Some(plan.hold_ms);
        let deadline = now_millis() + plan.hold_ms;
        let notice = SpotNotice {
            kind: SpotKind::Interruption {
                action: "terminate".into(),
            },
            at: deadline,
            source: SPOT_DRILL_SOURCE.into(),
        };
        let t0 = Instant::now();
        let set = Command::SetSpotNotice {
            id: node.id,
            name: node.name.clone(),
            notice: Some(notice),
        };
        if let Err(e) = self.write(set).await {
            r.notes
                .push(format!("the notice was not written: {e}; nothing changed"));
            return;
        }
        self.say(format!(
            "'{}' has a spot interruption notice, deadline in {}",
            node.name,
            super::ms(plan.hold_ms)
        ));
        let bound = Duration::from_millis(plan.bound_ms);
        while t0.elapsed() < bound {
            let tick = tokio::time::Instant::now();
            match self.spot_seen(node.id, deadline, &held, facts) {
                Ok(seen) => {
                    if let Some(d) = seen.decision.filter(|_| r.decision.is_none()) {
                        r.decided_after_ms = Some(since(t0));
                        self.say(format!(
                            "the leader decided {d} after {}",
                            super::ms(since(t0))
                        ));
                        r.decision = Some(d);
                    }
                    if seen.moves.len() == held.len() && r.moved_after_ms.is_none() {
                        r.moved_after_ms = Some(since(t0));
                        r.moves = seen.moves;
                        self.say(format!(
                            "{} instance(s) active elsewhere after {}{}",
                            held.len(),
                            super::ms(since(t0)),
                            if r.moves.is_empty() {
                                String::new()
                            } else {
                                format!(": {}", r.moves.join(", "))
                            }
                        ));
                    }
                    if seen.drained && r.drained_after_ms.is_none() {
                        r.drained_after_ms = Some(since(t0));
                        self.say(format!(
                            "'{}' drained after {}",
                            node.name,
                            super::ms(since(t0))
                        ));
                    }
                    if r.decision.is_some()
                        && r.moved_after_ms.is_some()
                        && r.drained_after_ms.is_some()
                    {
                        break;
                    }
                }
                Err(e) => r.notes.push(format!("store: {e}")),
            }
            tokio::time::sleep_until(tick + TICK * 2).await;
        }
        // Put it back whatever happened: the notice first (so the controller leaves the node
        // alone), then the undrain.
        let clear = Command::SetSpotNotice {
            id: node.id,
            name: node.name.clone(),
            notice: None,
        };
        let undrain = Command::SetNodeState {
            id: node.id,
            state: NodeState::Ready,
        };
        r.restored = true;
        for (what, cmd) in [("clearing the notice", clear), ("undraining", undrain)] {
            if let Err(e) = self.write(cmd).await {
                r.restored = false;
                r.notes.push(format!(
                    "{what} of '{}' failed: {e}; do it by hand ('aether undrain {}')",
                    node.name, node.name
                ));
            }
        }
        self.say(format!(
            "'{}' {}",
            node.name,
            if r.restored {
                "is ready again; its notice is cleared"
            } else {
                "was NOT restored"
            }
        ));
        if r.decision.is_none() {
            r.notes.push(format!(
                "no interruption decision within {}: is the controller enabled on the leader (controller.enabled)?",
                super::ms(plan.bound_ms)
            ));
        }
        r.recovered = r.decision.is_some()
            && r.moved_after_ms.is_some()
            && r.drained_after_ms.is_some()
            && r.restored;
    }

    async fn slice_crash(
        &self,
        facts: &Facts,
        plan: &Plan,
        blueprint: &str,
        slice: &str,
        r: &mut DrillReport,
    ) {
        let prefix = format!("{blueprint}/{slice}/");
        let instances =
            |c: &Cluster| -> BTreeMap<String, (NodeId, u32, Option<u32>, InstanceState)> {
                c.store
                    .instances()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|i| i.instance.starts_with(&prefix))
                    .map(|i| (i.instance, (i.node, i.restarts, i.pid, i.state)))
                    .collect()
            };
        let before = instances(&self.cluster);
        r.instances = Some(before.len() as u32);
        let t0 = Instant::now();
        let mut killed = 0;
        for m in facts
            .members
            .iter()
            .filter(|m| before.values().any(|(n, ..)| *n == m.id))
        {
            let ask = Ask::KillSlice {
                blueprint: blueprint.into(),
                slice: slice.into(),
            };
            match self.ask(m, ask).await {
                Ok(Answer::Killed(n)) => killed += n,
                Ok(_) => {}
                Err(e) => r
                    .notes
                    .push(format!("'{}' did not kill its instances: {e}", m.name)),
            }
        }
        r.killed = Some(killed);
        self.say(format!("{killed} instance(s) killed"));
        // Ready again: every instance active with a new process (a restart counted).
        let again = |now: &BTreeMap<String, (NodeId, u32, Option<u32>, InstanceState)>| {
            before.iter().all(|(name, (_, restarts, pid, _))| {
                now.get(name).is_some_and(|(_, r, p, s)| {
                    *s == InstanceState::Active && (r > restarts || p != pid)
                })
            })
        };
        let bound = Duration::from_millis(plan.bound_ms);
        while t0.elapsed() < bound {
            if again(&instances(&self.cluster)) {
                r.ready_after_ms = Some(since(t0));
                self.say(format!(
                    "every instance active again after {}",
                    super::ms(since(t0))
                ));
                break;
            }
            tokio::time::sleep(TICK).await;
        }
        let now = instances(&self.cluster);
        r.restarts = Some(
            before
                .iter()
                .map(|(name, (_, restarts, ..))| {
                    now.get(name)
                        .map(|(_, r, ..)| r.saturating_sub(*restarts))
                        .unwrap_or(0)
                })
                .sum(),
        );
        if r.ready_after_ms.is_none() {
            r.notes.push(format!(
                "not every instance was active again within {}",
                super::ms(plan.bound_ms)
            ));
        }
        r.recovered = r.ready_after_ms.is_some();
    }
}
