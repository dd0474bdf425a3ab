//! The controller loop: every node builds the world each tick and feeds its brain; the leader
//! also advances open decisions (apply at the deadline, expire), checks outcomes, and turns new
//! proposals into decisions through the safety bounds and the reviewer.
//!
//! Everything the leader needs to carry on is replicated: decisions with their deadlines, mode,
//! pause. A new leader resumes from the store; the state machine refuses an apply of a decision
//! that is not pending or not due, so nothing is applied twice and a vetoed decision never runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::brain::{Brain, NodeView, Proposal, SliceView, World};
use super::forecast::ForecastConfig;
use super::model::{Engine, ModelReviewer};
use super::review::{Review, Reviewer, Situation, Verdict};
use super::rules::{self, Rules};
use super::safety::{self, Bounds, Check};
use crate::config::ControllerConfig;
use crate::domain::{
    Action, ControlState, ControllerMode, Decision, DecisionStatus, Health, InstanceState, Millis,
    NodeState, Outcome, ReviewRecord, now_millis,
};
use crate::metrics::pipeline::Pipeline;
use crate::raft::types::{Command, Response};
use crate::raft::{Cluster, Writer};

/// Decisions read back each tick (open ones, recent vetoes, applies and rejections).
const RECENT: usize = 500;
/// A rejected proposal is recorded again for the same target and action only after this long.
const REJECT_QUIET_MS: u64 = 300_000;
pub use super::review::REVIEW_BUDGET;

/// What the controller tells `aether status` about itself (this node's view).
#[derive(Debug, Clone, Default)]
pub struct LocalStatus {
    /// The reviewer, or why there is none.
    pub reviewer: String,
    /// Where the rules came from.
    pub rules: String,
    /// Measured start-up time of scaled-up instances (ms), or the configured estimate.
    pub startup_ms: u64,
}

/// The controller of one node.
pub struct Controller {
    cluster: Arc<Cluster>,
    metrics: Arc<Pipeline>,
    cfg: ControllerConfig,
    brain: Mutex<Brain>,
    reviewer: Option<Arc<dyn Reviewer>>,
    /// The language model's thread (also when it is disabled: it says so).
    model: Arc<Engine>,
    status: Mutex<LocalStatus>,
    /// Woken when a review finishes, so its decision is recorded without waiting for a tick.
    wake: Arc<tokio::sync::Notify>,
}

/// Load the rule file named in the config, or the built-in rules.
pub fn load_rules(cfg: &ControllerConfig) -> anyhow::Result<(Rules, String)> {
    if cfg.rules.is_empty() {
        let r = rules::parse("built-in rules", rules::DEFAULT_RULES)?;
        return Ok((r, "built-in".into()));
    }
    let text = std::fs::read_to_string(&cfg.rules).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the rule file '{}' (controller.rules): {e}",
            cfg.rules
        )
    })?;
    Ok((rules::parse(&cfg.rules, &text)?, cfg.rules.clone()))
}

/// The leader's memory between ticks; rebuilt from the store after a leader change.
#[derive(Default)]
struct Leading {
    /// When each applied decision was first seen converged.
    converged_at: HashMap<u64, Millis>,
    /// The review in flight; its proposal waits for it (up to the reviewer's budget).
    review: Option<InReview>,
    /// A review abandoned at its budget that is still running: the next waits for it.
    busy: Option<ReviewResult>,
    /// The reviewer's interval: no review starts before this.
    next_review: Option<Instant>,
    /// Proposals waiting for the reviewer to be free: (target, verb) → since.
    waiting: HashMap<(String, &'static str), Instant>,
}

/// A node's headline values from the metrics snapshot, as the world needs them.
struct NodeSample {
    cpu: f64,
    mem: f64,
    gpu_util: Option<f64>,
    gpu_temp: Option<f64>,
    anomalies: u32,
}

/// Where a review on a blocking thread leaves its answer; it is there before the loop is
/// woken. Closed without an answer: the reviewer panicked.
type ReviewResult = tokio::sync::oneshot::Receiver<Result<Review, String>>;

/// Whether a review is still running; its answer once it is done.
fn poll_review(rx: &mut ReviewResult) -> Option<Result<Result<Review, String>, String>> {
    use tokio::sync::oneshot::error::TryRecvError;
    match rx.try_recv() {
        Ok(r) => Some(Ok(r)),
        Err(TryRecvError::Empty) => None,
        Err(TryRecvError::Closed) => Some(Err("it stopped without an answer".into())),
    }
}

/// A review running on a blocking thread.
struct InReview {
    target: String,
    verb: &'static str,
    started: Instant,
    answer: ReviewResult,
}

/// What the reviewer layer says about a proposal this tick.
enum ReviewStep {
    /// Not yet: the proposal is considered again next tick.
    Wait,
    Done(ReviewRecord, Option<Verdict>),
}

impl Controller {
    pub fn new(
        cluster: Arc<Cluster>,
        metrics: Arc<Pipeline>,
        cfg: ControllerConfig,
        rules: Rules,
        rules_source: String,
        model: Arc<Engine>,
    ) -> Arc<Controller> {
        let reviewer = cfg
            .model
            .enabled
            .then(|| Arc::new(ModelReviewer(model.clone())) as Arc<dyn Reviewer>);
        let status = LocalStatus {
            reviewer: reviewer.as_ref().map(|r| r.name()).unwrap_or_else(|| {
                "none (controller.model.enabled = false; rules and forecast only)".into()
            }),
            rules: rules_source,
            startup_ms: cfg.startup.0.as_millis() as u64,
        };
        Arc::new(Controller {
            brain: Mutex::new(Brain::new(
                rules,
                ForecastConfig::default(),
                cfg.horizon.0.as_secs(),
            )),
            cluster,
            metrics,
            cfg,
            reviewer,
            model,
            status: Mutex::new(status),
            wake: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// The controller's configuration.
    pub fn config(&self) -> &ControllerConfig {
        &self.cfg
    }

    /// This node's view of the controller.
    pub fn local_status(&self) -> LocalStatus {
        let mut s = self.status.lock().expect("controller status").clone();
        if let Some(r) = &self.reviewer {
            s.reviewer = match r.available() {
                Ok(()) => r.name(),
                Err(why) => format!("{} — {why}; rules and forecast decide", r.name()),
            };
        }
        s
    }

    /// A slice's load and forecast for the console (see [`Brain::load_chart`]).
    pub fn load_chart(
        &self,
        target: &str,
        now_secs: u64,
    ) -> (super::brain::Series, super::brain::Series) {
        let step = (self.cfg.horizon.0.as_secs() / 60).max(1);
        self.brain
            .lock()
            .expect("brain")
            .load_chart(target, now_secs, step)
    }

    /// The language model's engine.
    pub fn model(&self) -> Arc<Engine> {
        self.model.clone()
    }

    /// Run until `shutdown`: observe on every node, decide on the leader.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.cfg.interval.0);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut w = Writer::new(self.cluster.clone(), "controller");
        let mut leading: Option<Leading> = None;
        // The decisions (newest first) as of an applied index.
        let mut seen: (Option<u64>, Vec<Decision>) = (None, Vec::new());
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
                _ = self.wake.notified() => {}
            }
            let deciding = self.cfg.enabled
                && self.cluster.raft.metrics().borrow().current_leader == Some(self.cluster.id);
            // Only the deciding leader reads the decisions: they are what it decides on, and
            // they say who drained a node, which only proposals use. They are read again only
            // when the log moved.
            if !deciding {
                seen = (None, Vec::new());
            } else {
                let applied = self.cluster.store.applied_index();
                if seen.0 != Some(applied) {
                    match self.cluster.store.decisions(RECENT, true, 0, now_millis()) {
                        Ok(d) => seen = (Some(applied), d),
                        Err(e) => {
                            tracing::warn!("controller: reading the decisions failed: {e}");
                            continue;
                        }
                    }
                }
            }
            let decisions = &seen.1;
            let world = match self.world(decisions) {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!("controller: reading the store failed: {e}");
                    continue;
                }
            };
            self.brain.lock().expect("brain").observe(&world);
            if !deciding {
                if leading.take().is_some() {
                    tracing::info!("controller: no longer the leader; stopped deciding");
                }
                continue;
            }
            if let Some(r) = &self.reviewer {
                r.warm();
            }
            let state = leading.get_or_insert_with(|| {
                tracing::info!("controller: leading; resuming from the replicated decisions");
                Leading::default()
            });
            if let Err(e) = self.decide(&mut w, state, &world, decisions).await {
                tracing::warn!("controller: {e}; trying again next tick");
            }
        }
    }

    /// The cluster this second, from this node's replica and metrics snapshot; `decisions`
    /// (newest first) mark the nodes the controller drained.
    fn world(&self, decisions: &[Decision]) -> Result<World, std::io::Error> {
        let store = &self.cluster.store;
        let now = now_millis();
        let blueprints = store.blueprints()?;
        let assignments = store.assignments()?;
        let statuses = store.instances()?;
        let members = store.nodes()?;
        let health = store.health()?;
        // What the world needs of the metrics snapshot, read in place (no copy of it):
        // pid → cores per node, and each node's headline values.
        let (cpu_of, entries) = self.metrics.with_state(|st| {
            let mut cpu_of: HashMap<(u64, u32), f64> = HashMap::new();
            let mut entries: HashMap<u64, NodeSample> = HashMap::new();
            for e in st.view.snapshot.iter().flat_map(|snap| &snap.nodes) {
                for p in &e.m.procs {
                    cpu_of.insert((e.node, p.pid), p.cpu as f64);
                }
                let max = |f: fn(&crate::metrics::gpu::GpuSample) -> f32| {
                    e.m.gpus.iter().map(|g| f(g) as f64).reduce(f64::max)
                };
                entries.insert(
                    e.node,
                    NodeSample {
                        cpu: e.m.cpu as f64,
                        mem: e.m.mem_used as f64 / e.m.mem_total.max(1) as f64,
                        gpu_util: max(|g| g.util),
                        gpu_temp: max(|g| g.temp_c),
                        anomalies: e.anomalies.len() as u32,
                    },
                );
            }
            (cpu_of, entries)
        });
        let mut slices = Vec::new();
        for b in &blueprints {
            for s in &b.blueprint.slices {
                let prefix = format!("{}/{}/", b.blueprint.name, s.name);
                let mut active = 0u32;
                let mut used = 0.0;
                let mut sampled = false;
                for st in statuses
                    .iter()
                    .filter(|st| st.instance.starts_with(&prefix))
                {
                    let assigned_here = assignments
                        .get(&st.instance)
                        .is_some_and(|a| a.reported_by(st));
                    if !assigned_here || st.state != InstanceState::Active {
                        continue;
                    }
                    active += 1;
                    if let Some(c) = st.pid.and_then(|pid| cpu_of.get(&(st.node, pid))) {
                        used += c;
                        sampled = true;
                    }
                }
                let policy = s.scaling.as_ref();
                slices.push(SliceView {
                    blueprint: b.blueprint.name.clone(),
                    slice: s.name.clone(),
                    desired: s.instances,
                    min: s.min,
                    max: s.max,
                    active,
                    cpu_reserved: s.resources.cpu as f64,
                    cpu_used: sampled.then_some(used),
                    calls_per_s: None,
                    latency_ms: None,
                    target_cpu: policy.and_then(|p| p.target_cpu).map(f64::from),
                    target_latency_ms: policy.and_then(|p| p.target_latency_ms).map(|v| v as f64),
                    predictive: policy.map(|p| p.predictive),
                    up_cooldown_ms: policy.and_then(|p| p.up_cooldown_ms),
                    down_cooldown_ms: policy.and_then(|p| p.down_cooldown_ms),
                });
            }
        }
        let nodes = members
            .iter()
            .map(|m| {
                let e = entries.get(&m.id);
                // The newest applied drain or undrain of this node says who drained it.
                let ours = decisions.iter().find_map(|d| match (&d.action, &d.status) {
                    (Action::Drain { node, .. }, DecisionStatus::Applied { .. })
                        if *node == m.id =>
                    {
                        Some(true)
                    }
                    (Action::Undrain { node, .. }, DecisionStatus::Applied { .. })
                        if *node == m.id =>
                    {
                        Some(false)
                    }
                    _ => None,
                });
                NodeView {
                    id: m.id,
                    name: m.name.clone(),
                    state: m.state,
                    live: health.get(&m.id).is_none_or(|h| *h == Health::Ready),
                    cpu: e.map(|e| e.cpu).unwrap_or(0.0),
                    mem: e.map(|e| e.mem).unwrap_or(0.0),
                    gpu_util: e.and_then(|e| e.gpu_util),
                    gpu_temp: e.and_then(|e| e.gpu_temp),
                    anomalies: e.map(|e| e.anomalies).unwrap_or(0),
                    drained_by_controller: ours == Some(true),
                }
            })
            .collect();
        Ok(World { now, slices, nodes })
    }

    /// The grace window of guarded mode: the replicated one, else `controller.grace`.
    pub fn grace_ms(&self, c: &ControlState) -> u64 {
        c.grace_ms.unwrap_or(self.cfg.grace.0.as_millis() as u64)
    }

    /// One leader tick.
    async fn decide(
        &self,
        w: &mut Writer,
        state: &mut Leading,
        world: &World,
        decisions: &[Decision],
    ) -> Result<(), String> {
        let now = world.now;
        let control = self.cluster.store.control().map_err(|e| e.to_string())?;
        self.advance(w, &control, decisions, now).await?;
        self.check_outcomes(w, state, decisions, world).await?;
        if control.paused.is_some() {
            return Ok(());
        }
        let grace = self.grace_ms(&control);
        let startup = self.status.lock().expect("controller status").startup_ms;
        let lead_secs = (startup
            + if control.mode == ControllerMode::Guarded {
                grace
            } else {
                0
            }
            + self.cfg.interval.0.as_millis() as u64)
            .div_ceil(1000);
        let proposals = self.brain.lock().expect("brain").propose(world, lead_secs);
        // A review whose proposal is gone is dropped (or left to finish, if it runs).
        let wanted = |t: &str, v: &str| {
            proposals
                .iter()
                .any(|p| p.action.target() == t && p.action.verb() == v)
        };
        if let Some(mut r) = state.review.take_if(|r| !wanted(&r.target, r.verb))
            && poll_review(&mut r.answer).is_none()
        {
            state.busy = Some(r.answer);
        }
        state.waiting.retain(|(t, v), _| wanted(t, v));
        let mut recent = decisions
            .iter()
            .filter(|d| {
                now.saturating_sub(d.at) < 60_000
                    && !matches!(d.status, DecisionStatus::Rejected { .. })
            })
            .count() as u32;
        for p in proposals {
            self.consider(w, state, p, world, decisions, &control, &mut recent)
                .await?;
        }
        Ok(())
    }

    /// Apply pending decisions whose deadline passed; expire what waited too long.
    async fn advance(
        &self,
        w: &mut Writer,
        control: &ControlState,
        decisions: &[Decision],
        now: Millis,
    ) -> Result<(), String> {
        for d in decisions.iter().filter(|d| d.status.is_open()) {
            match d.status {
                DecisionStatus::Pending { deadline } if now >= deadline => {
                    if control.paused.is_some() {
                        let reason = "the controller was paused at its grace deadline".into();
                        self.close(w, d.id, DecisionStatus::Expired { reason })
                            .await?;
                        continue;
                    }
                    match w.call(Command::ApplyDecision { id: d.id }).await? {
                        Response::Refused(m) => tracing::info!("controller: {m}"),
                        _ => tracing::info!("controller: applied {}: {}", d.name(), d.action),
                    }
                }
                DecisionStatus::Proposed
                    if now.saturating_sub(d.at) > self.cfg.proposal_ttl.0.as_millis() as u64 =>
                {
                    let reason = format!(
                        "not approved within {}",
                        crate::domain::human_millis(self.cfg.proposal_ttl.0.as_millis() as u64)
                    );
                    self.close(w, d.id, DecisionStatus::Expired { reason })
                        .await?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn close(&self, w: &mut Writer, id: u64, status: DecisionStatus) -> Result<(), String> {
        if let Response::Refused(m) = w.call(Command::CloseDecision { id, status }).await? {
            tracing::info!("controller: {m}");
        }
        Ok(())
    }

    /// Record whether applied scale decisions moved their metric as intended.
    async fn check_outcomes(
        &self,
        w: &mut Writer,
        state: &mut Leading,
        decisions: &[Decision],
        world: &World,
    ) -> Result<(), String> {
        let now = world.now;
        let timeout = self.cfg.converge_timeout.0.as_millis() as u64;
        let after = self.cfg.outcome_after.0.as_millis() as u64;
        for d in decisions.iter().filter(|d| d.outcome.is_none()) {
            let DecisionStatus::Applied { at: applied, .. } = d.status else {
                continue;
            };
            let Action::Scale {
                blueprint,
                slice,
                from,
                to,
            } = &d.action
            else {
                continue;
            };
            let Some(s) = world
                .slices
                .iter()
                .find(|s| &s.blueprint == blueprint && &s.slice == slice)
            else {
                continue;
            };
            let converged = s.active == *to && s.desired == *to;
            if !converged && !state.converged_at.contains_key(&d.id) {
                if now.saturating_sub(applied) > timeout {
                    let outcome = Outcome {
                        at: now,
                        verdict: "did not converge".into(),
                        detail: format!(
                            "{} of {to} instances active after {}",
                            s.active,
                            crate::domain::human_millis(now - applied)
                        ),
                    };
                    w.call(Command::RecordOutcome { id: d.id, outcome }).await?;
                }
                continue;
            }
            let since = *state.converged_at.entry(d.id).or_insert_with(|| {
                if to > from {
                    let mut st = self.status.lock().expect("controller status");
                    let measured = now.saturating_sub(applied);
                    st.startup_ms = (st.startup_ms * 3 + measured) / 4;
                }
                now
            });
            if now.saturating_sub(since) < after {
                continue;
            }
            let before: Option<f64> = d
                .inputs
                .iter()
                .find(|(k, _)| k == "cpu_per_instance")
                .and_then(|(_, v)| v.parse().ok());
            let (target, tolerance) = {
                let brain = self.brain.lock().expect("brain");
                // The target the decision was made against; the slice's current one if the
                // decision did not record it.
                let recorded = d
                    .inputs
                    .iter()
                    .find(|(k, _)| k == "target_cpu")
                    .and_then(|(_, v)| v.parse().ok());
                (
                    recorded.unwrap_or_else(|| brain.target_cpu(s)),
                    brain.rules().settings.tolerance,
                )
            };
            let limit = target * (1.0 + tolerance);
            let now_v = s.value(rules::Metric::CpuPerInstance);
            let (verdict, detail) = match (before, now_v) {
                (_, None) => ("unknown", "no CPU sample of the slice".to_string()),
                (Some(b), Some(v)) if to > from => (
                    if v < b || v <= limit {
                        "as intended"
                    } else {
                        "not as intended"
                    },
                    format!(
                        "cpu per instance {b:.2} → {v:.2} (target {target:.2}) with {to} instances"
                    ),
                ),
                (b, Some(v)) => (
                    if v <= limit {
                        "as intended"
                    } else {
                        "not as intended"
                    },
                    format!(
                        "cpu per instance {} → {v:.2} (target {target:.2}, limit {limit:.2}) with {to} instances",
                        b.map(|b| format!("{b:.2}")).unwrap_or("?".into())
                    ),
                ),
            };
            let outcome = Outcome {
                at: now,
                verdict: verdict.into(),
                detail,
            };
            w.call(Command::RecordOutcome { id: d.id, outcome }).await?;
            state.converged_at.remove(&d.id);
        }
        Ok(())
    }

    /// Safety context of one target from the replicated decisions and the world.
    fn context(&self, p: &Proposal, world: &World, decisions: &[Decision]) -> safety::Context {
        let target = p.action.target();
        let verb = p.action.verb();
        let mut c = safety::Context {
            now: world.now,
            ready_nodes: world
                .nodes
                .iter()
                .filter(|n| n.state == NodeState::Ready)
                .count() as u32,
            up_cooldown_ms: self.brain_setting(|s| s.up_cooldown_secs) * 1000,
            down_cooldown_ms: self.brain_setting(|s| s.down_cooldown_secs) * 1000,
            ..safety::Context::default()
        };
        if let Action::Scale {
            blueprint, slice, ..
        } = &p.action
            && let Some(s) = world
                .slices
                .iter()
                .find(|s| &s.blueprint == blueprint && &s.slice == slice)
        {
            c.min = s.min;
            c.max = s.max;
            if let Some(u) = s.up_cooldown_ms {
                c.up_cooldown_ms = u;
            }
            if let Some(d) = s.down_cooldown_ms {
                c.down_cooldown_ms = d;
            }
        }
        let timeout = self.cfg.converge_timeout.0.as_millis() as u64;
        for d in decisions.iter().filter(|d| d.action.target() == target) {
            match &d.status {
                DecisionStatus::Vetoed { at, .. }
                    if d.action.verb() == verb && c.vetoed.is_none() =>
                {
                    c.vetoed = Some((d.name(), *at));
                }
                DecisionStatus::Applied { at, .. } => {
                    let newest = c.applied(*at, d.action.verb() == "scale_up");
                    if newest && world.now.saturating_sub(*at) < timeout {
                        c.converging = converging(d, world);
                    }
                }
                _ => {}
            }
        }
        c
    }

    fn brain_setting(&self, f: impl Fn(&rules::Settings) -> u64) -> u64 {
        f(&self.brain.lock().expect("brain").rules().settings)
    }

    /// Start, wait for or finish the review of `p`: one review at a time, no closer than the
    /// reviewer's interval, and never waited for past its budget.
    /// `wake` is notified when a review finishes.
    fn review_step(
        state: &mut Leading,
        r: &Arc<dyn Reviewer>,
        p: &Proposal,
        world: &World,
        decisions: &[Decision],
        wake: &Arc<tokio::sync::Notify>,
    ) -> ReviewStep {
        let (target, verb) = (p.action.target(), p.action.verb());
        let budget = r.budget();
        if let Some(mut inr) = state
            .review
            .take_if(|x| x.target == target && x.verb == verb)
        {
            if let Some(res) = poll_review(&mut inr.answer) {
                let latency = inr.started.elapsed();
                let (rec, v) = review_record(r.name(), latency, budget, Some(res));
                return ReviewStep::Done(rec, v);
            }
            if inr.started.elapsed() >= budget {
                let latency = inr.started.elapsed();
                state.busy = Some(inr.answer);
                let (rec, v) = review_record(r.name(), latency, budget, None);
                return ReviewStep::Done(rec, v);
            }
            state.review = Some(inr);
            return ReviewStep::Wait;
        }
        if state.review.is_some() {
            return ReviewStep::Wait;
        }
        if let Err(why) = r.available() {
            let (rec, _) = review_record(
                r.name(),
                Duration::ZERO,
                budget,
                Some(Ok(Err(format!("{why}; the rules decide")))),
            );
            return ReviewStep::Done(rec, None);
        }
        if let Some(b) = &mut state.busy
            && poll_review(b).is_some()
        {
            state.busy = None;
        }
        let early = state.next_review.is_some_and(|t| Instant::now() < t);
        if state.busy.is_some() || early {
            let since = *state
                .waiting
                .entry((target.clone(), verb))
                .or_insert_with(Instant::now);
            if since.elapsed() < budget {
                return ReviewStep::Wait;
            }
            state.waiting.remove(&(target, verb));
            let why = if state.busy.is_some() {
                "the reviewer was still busy with an earlier review"
            } else {
                "the reviewer's interval had not passed"
            };
            let (mut rec, _) = review_record(r.name(), since.elapsed(), budget, None);
            rec.verdict = "skipped".into();
            rec.reason = format!("{why}; the rules decide");
            return ReviewStep::Done(rec, None);
        }
        state.waiting.remove(&(target.clone(), verb));
        let situation = Situation {
            proposal: p.clone(),
            world: world.clone(),
            recent: decisions.iter().take(20).cloned().collect(),
        };
        let (reviewer, wake) = (r.clone(), wake.clone());
        let (tx, answer) = tokio::sync::oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let _ = tx.send(reviewer.review(&situation));
            wake.notify_one();
        });
        state.review = Some(InReview {
            target,
            verb,
            started: Instant::now(),
            answer,
        });
        state.next_review = Some(Instant::now() + r.interval());
        ReviewStep::Wait
    }

    /// Turn one proposal into a decision, or not.
    #[allow(clippy::too_many_arguments)]
    async fn consider(
        &self,
        w: &mut Writer,
        state: &mut Leading,
        mut p: Proposal,
        world: &World,
        decisions: &[Decision],
        control: &ControlState,
        recent: &mut u32,
    ) -> Result<(), String> {
        let target = p.action.target();
        let verb = p.action.verb();
        // An open decision on the target stands while the same action is wanted; an opposite
        // one replaces it.
        if let Some(open) = decisions
            .iter()
            .find(|d| d.status.is_open() && d.action.target() == target)
        {
            let waits_for_operator = matches!(open.status, DecisionStatus::Proposed);
            let mode_wants_operator = matches!(
                control.mode,
                ControllerMode::Observe | ControllerMode::Propose
            );
            if open.action.verb() == verb && waits_for_operator == mode_wants_operator {
                return Ok(());
            }
            let reason = if open.action.verb() == verb {
                format!("the mode is {} now; proposed again", control.mode)
            } else {
                format!("the load changed: now proposing {}", p.action)
            };
            self.close(w, open.id, DecisionStatus::Superseded { reason })
                .await?;
        }
        let mut ctx = self.context(&p, world, decisions);
        ctx.recent_decisions = *recent;
        let bounds = Bounds::from_config(&self.cfg);
        if let Some((id, at)) = &ctx.vetoed
            && world.now.saturating_sub(*at) >= bounds.veto_cooldown_ms
        {
            p.reasoning.push(format!(
                "operator vetoed {id} {} ago (cooldown over)",
                crate::domain::human_millis(world.now - at)
            ));
        }
        p.layers.push("safety".into());
        let mut status = match safety::check(&mut p.action, &ctx, &bounds) {
            Check::Go { notes } => {
                p.reasoning.extend(notes);
                None
            }
            Check::Stop(reason) => {
                if !reason.recorded() {
                    tracing::debug!("controller: {} held back: {reason}", p.action);
                    return Ok(());
                }
                // A rejection is recorded once per quiet period (the recorded decisions say
                // when the last one was).
                let quiet = decisions.iter().any(|d| {
                    matches!(d.status, DecisionStatus::Rejected { .. })
                        && d.action.target() == target
                        && d.action.verb() == verb
                        && world.now.saturating_sub(d.at) < REJECT_QUIET_MS
                });
                if quiet {
                    return Ok(());
                }
                p.reasoning
                    .push(format!("stopped by the safety bounds: {reason}"));
                Some(DecisionStatus::Rejected {
                    reason: reason.to_string(),
                })
            }
        };
        let mut review = None;
        if status.is_none()
            && let Some(r) = &self.reviewer
        {
            let (rec, verdict) = match Self::review_step(state, r, &p, world, decisions, &self.wake)
            {
                ReviewStep::Wait => return Ok(()),
                ReviewStep::Done(rec, verdict) => (rec, verdict),
            };
            p.layers.push(format!("review:{}", rec.reviewer));
            match verdict {
                Some(Verdict::Reject) => {
                    status = Some(DecisionStatus::Rejected {
                        reason: format!("the reviewer rejected it: {}", rec.reason),
                    });
                }
                Some(Verdict::Adjust(n)) => {
                    if let Action::Scale { to, .. } = &mut p.action {
                        *to = n;
                    }
                    match safety::check(&mut p.action, &ctx, &bounds) {
                        Check::Go { notes } => p.reasoning.extend(notes),
                        Check::Stop(reason) => {
                            status = Some(DecisionStatus::Rejected {
                                reason: format!(
                                    "the reviewer's adjustment is out of bounds: {reason}"
                                ),
                            })
                        }
                    }
                }
                _ => {}
            }
            review = Some(rec);
        }
        let status = status.unwrap_or(match control.mode {
            ControllerMode::Observe | ControllerMode::Propose => DecisionStatus::Proposed,
            ControllerMode::Guarded => DecisionStatus::Pending {
                deadline: world.now + self.grace_ms(control),
            },
            ControllerMode::Auto => DecisionStatus::Pending {
                deadline: world.now,
            },
        });
        let actionable = status.is_open();
        let d = Decision {
            id: 0,
            at: world.now,
            by: self.cluster.name.clone(),
            mode: control.mode,
            layers: p.layers,
            action: p.action,
            rule: p.rule,
            reasoning: p.reasoning,
            inputs: p.inputs,
            review,
            status,
            timeline: Vec::new(),
            outcome: None,
        };
        let summary = format!("{} ({})", d.action, d.status.word());
        let id = match w.call(Command::RecordDecision(Box::new(d))).await? {
            Response::Decision(id) => id,
            other => return Err(format!("recording a decision answered {other:?}")),
        };
        tracing::info!("controller: d-{id}: {summary}");
        if actionable {
            *recent += 1;
            if control.mode == ControllerMode::Auto
                && let Response::Refused(m) = w.call(Command::ApplyDecision { id }).await?
            {
                tracing::info!("controller: {m}");
            }
        }
        Ok(())
    }
}

/// Why an applied decision's target has not settled yet, if it has not.
fn converging(d: &Decision, world: &World) -> Option<String> {
    match &d.action {
        Action::Scale {
            blueprint,
            slice,
            to,
            ..
        } => {
            let s = world
                .slices
                .iter()
                .find(|s| &s.blueprint == blueprint && &s.slice == slice)?;
            // After an operator's own scale the decision's count is gone: nothing to wait for.
            (s.desired == *to && s.active != s.desired).then(|| {
                format!(
                    "{}: {} of {} instances active",
                    d.name(),
                    s.active,
                    s.desired
                )
            })
        }
        Action::Drain { node, .. } => {
            let n = world.nodes.iter().find(|n| n.id == *node)?;
            (n.state == NodeState::Draining)
                .then(|| format!("{}: {} is still draining", d.name(), n.name))
        }
        Action::Undrain { .. } => None,
    }
}

/// The review record of a finished (or abandoned) review.
fn review_record(
    name: String,
    latency: Duration,
    budget: Duration,
    res: Option<Result<Result<Review, String>, String>>,
) -> (ReviewRecord, Option<Verdict>) {
    let record = |verdict: &str, adjust_to, reason: String| ReviewRecord {
        verdict: verdict.into(),
        adjust_to,
        reason,
        reviewer: name.clone(),
        latency_ms: latency.as_millis() as u64,
    };
    match res {
        None => (
            record(
                "timeout",
                None,
                format!(
                    "no verdict within {}; the rules decide",
                    crate::domain::human_millis(budget.as_millis() as u64)
                ),
            ),
            None,
        ),
        Some(Err(e)) => (
            record("error", None, format!("the reviewer failed: {e}")),
            None,
        ),
        Some(Ok(Err(e))) => (record("error", None, e), None),
        Some(Ok(Ok(review))) => {
            let (word, n) = match review.verdict {
                Verdict::Approve => ("approve", None),
                Verdict::Reject => ("reject", None),
                Verdict::Adjust(n) => ("adjust", Some(n)),
            };
            (record(word, n, review.reason), Some(review.verdict))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::review::Review;

    /// Answers `verdict` after `delay`, with a budget.
    struct Fake {
        verdict: Verdict,
        delay: Duration,
        budget: Duration,
    }

    impl Reviewer for Fake {
        fn name(&self) -> String {
            "fake".into()
        }
        fn review(&self, s: &Situation) -> Result<Review, String> {
            std::thread::sleep(self.delay);
            Ok(Review {
                verdict: self.verdict.clone(),
                reason: format!("looked at {}", s.proposal.action),
            })
        }
        fn budget(&self) -> Duration {
            self.budget
        }
    }

    fn step(
        state: &mut Leading,
        r: &Arc<dyn Reviewer>,
        p: &Proposal,
        wake: &Arc<tokio::sync::Notify>,
    ) -> ReviewStep {
        let s = crate::controller::model::engine::demo();
        Controller::review_step(state, r, p, &s.world, &s.recent, wake)
    }

    fn done(s: ReviewStep) -> (ReviewRecord, Option<Verdict>) {
        match s {
            ReviewStep::Done(rec, v) => (rec, v),
            ReviewStep::Wait => panic!("the review is still waiting"),
        }
    }

    /// The leader's review step across ticks: the review runs off the runtime and wakes the
    /// loop; the proposal waits for it; past the budget it is recorded as a timeout and the
    /// reviewer counts as busy, so the next proposal waits, then is recorded as skipped.
    #[tokio::test]
    async fn reviews_run_off_the_runtime_within_their_budget() {
        let wake = Arc::new(tokio::sync::Notify::new());
        let p = crate::controller::model::engine::demo().proposal;
        let mut state = Leading::default();
        let adjust: Arc<dyn Reviewer> = Arc::new(Fake {
            verdict: Verdict::Adjust(3),
            delay: Duration::ZERO,
            budget: Duration::from_secs(5),
        });
        assert!(matches!(
            step(&mut state, &adjust, &p, &wake),
            ReviewStep::Wait
        ));
        tokio::time::timeout(Duration::from_secs(5), wake.notified())
            .await
            .expect("the finished review wakes the loop");
        let (rec, v) = done(step(&mut state, &adjust, &p, &wake));
        assert_eq!(v, Some(Verdict::Adjust(3)));
        assert_eq!(
            (rec.verdict.as_str(), rec.adjust_to, rec.reviewer.as_str()),
            ("adjust", Some(3), "fake")
        );
        assert_eq!(rec.reason, "looked at scale shop/web 2 → 4");
        assert!(state.review.is_none() && state.busy.is_none());

        // Past the budget: no verdict, recorded as a timeout; the reviewer is still busy.
        let budget = Duration::from_millis(50);
        let slow: Arc<dyn Reviewer> = Arc::new(Fake {
            verdict: Verdict::Reject,
            delay: Duration::from_millis(2_000),
            budget,
        });
        assert!(matches!(
            step(&mut state, &slow, &p, &wake),
            ReviewStep::Wait
        ));
        // The budget is the condition: a review is abandoned once it has run this long.
        tokio::time::sleep(budget).await;
        let (rec, v) = done(step(&mut state, &slow, &p, &wake));
        assert_eq!(v, None);
        assert_eq!(rec.verdict, "timeout");
        assert!(rec.reason.contains("the rules decide"), "{}", rec.reason);
        assert!(state.busy.is_some(), "the abandoned review still runs");

        // The next proposal waits for the busy reviewer, then goes on without it.
        let mut other = p.clone();
        other.action = Action::Scale {
            blueprint: "shop".into(),
            slice: "worker".into(),
            from: 1,
            to: 2,
        };
        assert!(matches!(
            step(&mut state, &slow, &other, &wake),
            ReviewStep::Wait
        ));
        tokio::time::sleep(budget).await;
        let (rec, v) = done(step(&mut state, &slow, &other, &wake));
        assert_eq!(v, None);
        assert_eq!(rec.verdict, "skipped");
        assert!(
            rec.reason.contains("still busy with an earlier review"),
            "{}",
            rec.reason
        );
    }
}
