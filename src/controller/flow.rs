//! The controller loop: every node builds the world each tick and feeds its brain; the leader
//! also asks the policy ([`super::decide`]) what to write — open decisions to apply or expire,
//! outcomes, new proposals through the safety bounds — writes it through Raft in order, and
//! runs the reviewer (off the runtime, within its budget) for the proposals that want one.
//!
//! Everything the leader needs to carry on is replicated: decisions with their deadlines, mode,
//! pause. A new leader resumes from the store; the state machine refuses an apply of a decision
//! that is not pending or not due, so nothing is applied twice and a vetoed decision never runs.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::advisor;
use super::brain::{Brain, Proposal, Series, World};
use super::context;
use super::decide::{self, Command, Next};
use super::forecast::ForecastConfig;
use super::model::{Engine, ModelReviewer};
use super::review::{Review, Reviewer, Situation, Verdict, in_time};
use super::rules::{self, Rules};
use super::spot;
use super::world::{GpuHealth, Inputs, NodeSample};
use crate::config::ControllerConfig;
use crate::domain::{ControlState, Decision, Millis, ReviewRecord, now_millis};
use crate::metrics::pipeline::Pipeline;
use crate::raft::types::{Command as RaftCommand, Response};
use crate::raft::{Cluster, Writer};

/// Decisions read back each tick (open ones, recent vetoes, applies and rejections).
const RECENT: usize = 500;
/// Traffic figures from a metrics snapshot older than this (by this node's clock) are not
/// used: the world has none for the second, which no scale-in to zero takes for quiet.
const TRAFFIC_FRESH: Duration = Duration::from_secs(5);
pub use super::review::REVIEW_BUDGET;

/// What the controller tells `aether status` about itself (this node's view).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LocalStatus {
    /// The reviewer, or why there is none, as this node says it while it leads.
    pub reviewer: String,
    /// The same as said on a follower, where an idle model is by design (the leader's
    /// decides); [`LocalStatus::reviewer_line`] picks one.
    pub reviewer_following: String,
    /// Where the rules came from.
    pub rules: String,
    /// Measured start-up time of scaled-up instances (ms), or the configured estimate.
    pub startup_ms: u64,
}

impl LocalStatus {
    /// The reviewer line for a node that leads (`leads`) or follows: read when the status is
    /// built, so that it agrees with the role the status shows, not with the last tick's.
    pub fn reviewer_line(&self, leads: bool) -> String {
        if leads || self.reviewer_following.is_empty() {
            self.reviewer.clone()
        } else {
            self.reviewer_following.clone()
        }
    }
}

/// What the controller shows the read model, published after every tick (see
/// [`Controller::published`]): readers never lock the controller.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// This node's reviewer (and whether it is available), rules and start-up estimate.
    pub local: LocalStatus,
    /// `controller.enabled` on this node.
    pub enabled: bool,
    /// What the policy reads of the config (the grace window of guarded mode among it).
    pub settings: decide::Settings,
    /// Per `blueprint/slice` the controller observes: its load and forecast (see
    /// [`Brain::load_chart`]) as of the last tick.
    pub charts: BTreeMap<String, (Series, Series)>,
    /// Per `blueprint/slice`: what its chart counts, `cores` or (with a service) `calls/s`.
    pub chart_units: BTreeMap<String, &'static str>,
}

/// Why a leader tick stopped early (it runs again on the next tick).
#[derive(Debug, thiserror::Error)]
pub enum TickError {
    /// A write did not go through (no leader or quorum in time, the store stopped).
    #[error(transparent)]
    Write(#[from] crate::raft::api::RequestError),
    /// Reading this node's replica failed.
    #[error(transparent)]
    Store(#[from] std::io::Error),
    /// The state machine answered a write with something else than it should.
    #[error("recording a decision answered {0}")]
    Unexpected(String),
}

/// Why an advice item taken by an operator was not recorded as a proposal.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// The item is not an action, or it is stale (see [`advisor::TakeError`]).
    #[error(transparent)]
    Take(#[from] advisor::TakeError),
    /// A decision on the same target is open.
    #[error("{0}")]
    Open(String),
    /// The safety bounds stopped it.
    #[error("the safety bounds stop it: {0}")]
    Bounds(String),
    /// Reading this node's replica failed.
    #[error(transparent)]
    Store(#[from] std::io::Error),
    /// The write did not go through.
    #[error(transparent)]
    Write(#[from] crate::raft::api::RequestError),
}

/// The controller of one node.
pub struct Controller {
    cluster: Arc<Cluster>,
    metrics: Arc<Pipeline>,
    cfg: ControllerConfig,
    /// What the policy reads of `cfg` and the rule settings.
    settings: decide::Settings,
    brain: Mutex<Brain>,
    reviewer: Option<Arc<dyn Reviewer>>,
    /// The language model's thread (also when it is disabled: it says so).
    model: Arc<Engine>,
    status: Mutex<LocalStatus>,
    /// What the read model sees of this controller.
    published: tokio::sync::watch::Sender<Published>,
    /// Woken when a review finishes, so its decision is recorded without waiting for a tick.
    wake: Arc<tokio::sync::Notify>,
    /// Sleep and wake, with `[power] enabled`.
    power: Option<super::power::run::Power>,
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
    /// Sleep and wake stuck without `[power]` here was warned about (once per leadership).
    power_off_warned: bool,
    /// Interruption decisions found older than the recent ones, by (node, notice deadline).
    spot_decided: HashMap<(crate::domain::NodeId, Millis), u64>,
    /// Notices the whole decision table was searched for in vain since this leader last wrote
    /// an interruption step: only such a write can add their decision, so they are not
    /// searched again every tick (a notice whose node left the world stays undecided).
    spot_missed: std::collections::HashSet<(crate::domain::NodeId, Millis)>,
}

/// Where a review on a blocking thread leaves its answer and how long it took from the
/// review's start; it is there before the loop is woken. Closed without an answer: the
/// reviewer panicked.
type ReviewResult = tokio::sync::oneshot::Receiver<(Result<Review, String>, Duration)>;

/// A review's answer: its verdict or the reviewer's error, or why there is none (it panicked).
type Answered = Result<Result<Review, String>, String>;

/// Whether a review is still running; its answer and how long it took once it is done.
fn poll_review(rx: &mut ReviewResult) -> Option<(Answered, Option<Duration>)> {
    use tokio::sync::oneshot::error::TryRecvError;
    match rx.try_recv() {
        Ok((r, took)) => Some((Ok(r), Some(took))),
        Err(TryRecvError::Empty) => None,
        Err(TryRecvError::Closed) => Some((Err("it stopped without an answer".into()), None)),
    }
}

/// The read of a slice's last log lines, run before its review.
type LogsFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Vec<crate::controller::review::LogLine>> + Send>,
>;

/// The words around a proposal, gathered when its review starts.
#[derive(Default)]
struct Gathered {
    context: crate::controller::review::Context,
    logs: Option<LogsFuture>,
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
        power: &crate::config::PowerConfig,
    ) -> Arc<Controller> {
        let reviewer = cfg
            .model
            .enabled
            .then(|| Arc::new(ModelReviewer(model.clone())) as Arc<dyn Reviewer>);
        let status = LocalStatus {
            reviewer: reviewer.as_ref().map(|r| r.name()).unwrap_or_else(|| {
                "none (controller.model.enabled = false; rules and forecast only)".into()
            }),
            reviewer_following: String::new(),
            rules: rules_source,
            startup_ms: cfg.startup.0.as_millis() as u64,
        };
        let settings = decide::Settings::new(&cfg, &rules.settings);
        let (published, _) = tokio::sync::watch::channel(Published {
            local: status.clone(),
            enabled: cfg.enabled,
            settings: settings.clone(),
            charts: BTreeMap::new(),
            chart_units: BTreeMap::new(),
        });
        let c = Arc::new(Controller {
            settings,
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
            published,
            wake: Arc::new(tokio::sync::Notify::new()),
            power: super::power::run::Power::new(power),
        });
        c.publish(&[]);
        c
    }

    /// What this controller publishes for the read model: its status, settings and the load
    /// charts of the slices it observes, renewed after every tick.
    pub fn published(&self) -> tokio::sync::watch::Receiver<Published> {
        self.published.subscribe()
    }

    /// Publish the status and the charts of `slices` (`blueprint/slice`) as of now; readers are
    /// woken only when something changed.
    fn publish(&self, slices: &[String]) {
        let at = now_millis();
        let step = (self.cfg.horizon.0.as_secs() / 60).max(1);
        let (charts, chart_units) = {
            let brain = self.brain.lock().expect("brain");
            let charts = slices
                .iter()
                .map(|t| (t.clone(), brain.load_chart(t, at / 1000, step)))
                .collect();
            let units = slices
                .iter()
                .map(|t| (t.clone(), brain.load_unit(t)))
                .collect();
            (charts, units)
        };
        let p = Published {
            local: self.local_status(),
            enabled: self.cfg.enabled,
            settings: self.settings.clone(),
            charts,
            chart_units,
        };
        self.published.send_if_modified(|old| {
            let changed = *old != p;
            if changed {
                *old = p;
            }
            changed
        });
    }

    /// This node's view of the controller.
    fn local_status(&self) -> LocalStatus {
        let mut s = self.status.lock().expect("controller status").clone();
        if let Some(r) = &self.reviewer {
            (s.reviewer, s.reviewer_following) = match r.available() {
                Ok(()) => (r.name(), r.name()),
                Err(u) => (
                    format!("{} — {}; rules and forecast decide", r.name(), u.why),
                    // On a follower the model is idle by design: the leader's decides.
                    format!("{} — {} on this node", r.name(), u.why),
                ),
            };
        }
        s
    }

    /// What this node, leading, tells every member about its reviewer (sent with each metrics
    /// snapshot; the pipeline fills in the leader and term).
    fn reviewer_report(&self) -> crate::metrics::update::LeaderReviewer {
        let m = self.model.status();
        crate::metrics::update::LeaderReviewer {
            view: crate::raft::status::ReviewerView {
                node: self.cluster.name.clone(),
                reviewer: self.local_status().reviewer,
                state: m.state.word().into(),
                reviews: m.reviews,
                timeouts: m.timeouts,
                last_latency_ms: m.last_latency_ms,
            },
            ..Default::default()
        }
    }

    /// The language model's engine.
    pub fn model(&self) -> Arc<Engine> {
        self.model.clone()
    }

    /// What the strategic layer's summary is made of, from this node's replica, metrics
    /// window and brain: the world now, the decisions, the capped slices, and per slice and
    /// node their trends over the last hour.
    pub fn advice_inputs(&self) -> Result<advisor::Inputs, std::io::Error> {
        let now = now_millis();
        let decisions = self.cluster.store.decisions(RECENT, true, 0, now)?;
        let world = self.world(&decisions)?;
        let control = self.cluster.store.control()?;
        let desired = |b: &str, s: &str| {
            world
                .slices
                .iter()
                .find(|x| x.blueprint == b && x.slice == s)
                .map(|x| x.desired)
        };
        let capped = decide::capped(&decisions, desired, now);
        let (secs, from) = (now / 1000, (now - now.min(advisor::HOUR_MS)) / 1000);
        let step = (self.cfg.horizon.0.as_secs() / 60).max(1);
        let mut slices = BTreeMap::new();
        {
            let brain = self.brain.lock().expect("brain");
            for s in &world.slices {
                let t = s.target();
                let (load, forecast) = brain.load_chart(&t, secs, step);
                let peak = forecast
                    .iter()
                    .copied()
                    .reduce(|a, b| if b.1 > a.1 { b } else { a })
                    .map(|(at, v)| (v, at.saturating_sub(secs)));
                slices.insert(
                    t.clone(),
                    advisor::SliceTrends {
                        load: advisor::Trend::of(&load),
                        unit: brain.load_unit(&t),
                        calls: None,
                        forecast_peak: peak,
                    },
                );
            }
        }
        let mut nodes = BTreeMap::new();
        self.metrics.with_state(|st| {
            let points = |node: u64, name: &str| -> Vec<(u64, f64)> {
                st.view
                    .window
                    .series(node, name)
                    .map(|s| {
                        s.query(from, secs)
                            .into_iter()
                            .map(|p| (p.t, p.value as f64))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            for s in &world.slices {
                let name = crate::metrics::traffic::series_name(
                    &s.target(),
                    None,
                    crate::metrics::traffic::CALLS_PER_S,
                );
                if let Some(t) = slices.get_mut(&s.target()) {
                    t.calls = advisor::Trend::of(&points(crate::metrics::traffic::CLUSTER, &name));
                }
            }
            for n in &world.nodes {
                // The hottest GPU's series: the one with the highest newest value.
                let gpu_temp = (0..8)
                    .filter_map(|i| advisor::Trend::of(&points(n.id, &format!("gpu{i}_temp"))))
                    .reduce(|a, b| if b.now > a.now { b } else { a });
                nodes.insert(
                    n.name.clone(),
                    advisor::NodeTrends {
                        cpu: advisor::Trend::of(&points(n.id, "cpu")),
                        gpu_temp,
                    },
                );
            }
        });
        Ok(advisor::Inputs {
            world,
            leader: self.cluster.name.clone(),
            mode: control.mode.to_string(),
            decisions,
            capped,
            slices,
            nodes,
        })
    }

    /// Turn an advice item an operator took (`by`) into a proposed decision: mapped to its
    /// action in the cluster as this node's replica has it, through the safety bounds like any
    /// proposal, recorded as `proposed` (whatever the mode) through Raft, so that it waits for
    /// an operator's approve. Returns the decision as recorded; `Err` says why nothing was
    /// recorded (not an action, an open decision on the target, stopped by the bounds).
    pub async fn propose_advice(
        &self,
        item: &crate::domain::AdviceItem,
        model: &str,
        by: &str,
    ) -> Result<Decision, ProposeError> {
        let now = now_millis();
        let decisions = self.cluster.store.decisions(RECENT, true, 0, now)?;
        let mut world = self.world(&decisions)?;
        self.count_set_at(&mut world)?;
        let control = self.cluster.store.control()?;
        let p = advisor::proposal(item, &world, model, by)?;
        let target = p.action.target();
        if let Some(open) = decisions
            .iter()
            .find(|d| d.status.is_open() && d.action.target() == target)
        {
            return Err(ProposeError::Open(format!(
                "{} is open on {target} ({}: {}): approve or veto it first",
                open.name(),
                open.status.word(),
                open.action
            )));
        }
        let recent = decide::recent(&decisions, world.now);
        let screened = decide::screen(p, &world, &decisions, &control, recent, &self.settings);
        let candidate = match screened.next {
            Next::Candidate(c) => c,
            Next::Held { action, reason } => {
                return Err(ProposeError::Bounds(format!("{action}: {reason}")));
            }
            Next::Quiet | Next::Stands => {
                return Err(ProposeError::Bounds(format!(
                    "the bounds stopped the same action on {target} a moment ago: 'aether decisions' shows why"
                )));
            }
        };
        // An item taken from advice always waits for an operator's approve.
        let asking = ControlState {
            mode: crate::domain::ControllerMode::Propose,
            ..control
        };
        let Command::Record { decision, .. } =
            decide::conclude(candidate, None, &world, &asking, by, &self.settings)
        else {
            return Err(ProposeError::Bounds("nothing to record".into()));
        };
        if let crate::domain::DecisionStatus::Rejected { reason } = &decision.status {
            return Err(ProposeError::Bounds(reason.clone()));
        }
        let req = crate::raft::types::Request {
            id: crate::raft::types::RequestId::new_random(),
            actor: by.to_string(),
            at: now_millis(),
            cmd: RaftCommand::RecordDecision(decision.clone()),
        };
        match self.cluster.write(req, true).await? {
            Response::Decision(id) => Ok(Decision { id, ..*decision }),
            other => Err(ProposeError::Bounds(format!(
                "recording the decision answered {other:?}"
            ))),
        }
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
            let leads =
                self.cluster.raft.metrics().borrow().current_leader == Some(self.cluster.id);
            let deciding = self.cfg.enabled && leads;
            if leads && let Err(e) = self.shift(&mut w, deciding).await {
                tracing::warn!("controller: time shifting: {e}; trying again next tick");
            }
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
            let mut world = match self.world(decisions) {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!("controller: reading the store failed: {e}");
                    continue;
                }
            };
            if deciding && let Err(e) = self.count_set_at(&mut world) {
                tracing::warn!("controller: reading the blueprint versions failed: {e}");
                continue;
            }
            self.brain.lock().expect("brain").observe(&world);
            let slices: Vec<String> = world.slices.iter().map(|s| s.target()).collect();
            self.publish(&slices);
            self.metrics
                .set_reviewer(deciding.then(|| self.reviewer_report()));
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
            // Deciding may have measured a new start-up time.
            self.publish(&slices);
        }
    }

    /// Time shifting (the leader, each tick): judge every held flexible slice by the cleanest
    /// live node's carbon signal ([`super::shift::judge`]) and write a new hold line or its
    /// start. Without `deciding` (controller.enabled off), held slices start.
    async fn shift(&self, w: &mut Writer, deciding: bool) -> Result<(), TickError> {
        let held: Vec<_> = self
            .cluster
            .store
            .flexible()?
            .into_iter()
            .filter(|r| r.started.is_none())
            .collect();
        if held.is_empty() {
            return Ok(());
        }
        let control = self.cluster.store.control()?;
        let no_shift = if !deciding {
            Some("controller.enabled is off".to_string())
        } else if let Some(p) = &control.paused {
            Some(format!("the controller is paused by {}", p.by))
        } else if control.mode == crate::domain::ControllerMode::Observe {
            Some("the controller is in observe mode".to_string())
        } else {
            None
        };
        let signals: Vec<(String, crate::metrics::carbon::CarbonSignal)> =
            self.metrics.with_state(|st| {
                st.view
                    .snapshot
                    .iter()
                    .flat_map(|snap| &snap.nodes)
                    // Members and nodes still sending (a new member's first snapshots may
                    // not know it yet); never a node judged down.
                    .filter(|e| e.health != crate::domain::Health::Down)
                    .filter_map(|e| Some((e.name(), e.info.carbon.clone()?)))
                    .collect()
            });
        let cleanest = super::shift::cleanest(signals.iter().map(|(n, s)| (n.as_str(), s)));
        let now = now_millis();
        for rec in held {
            let (start, line) = match super::shift::judge(&rec, now, cleanest, no_shift.as_deref())
            {
                super::shift::Verdict::Hold(l) => (false, l),
                super::shift::Verdict::Start(l) => (true, l),
            };
            if !start && rec.held.as_deref() == Some(line.as_str()) {
                continue;
            }
            let target = rec.target();
            match w
                .call(RaftCommand::FlexibleStep {
                    blueprint: rec.blueprint,
                    slice: rec.slice,
                    start,
                    line: line.clone(),
                })
                .await?
            {
                Response::Refused(m) => tracing::info!("controller: {m}"),
                _ => tracing::info!("controller: flexible {target}: {line}"),
            }
        }
        Ok(())
    }

    /// The cluster this second, from this node's replica and metrics snapshot (its traffic
    /// figures only while it is fresh); `decisions` (newest first) mark the nodes the
    /// controller drained.
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
        let (cpu_of, entries, mut traffic, fresh) = self.metrics.with_state(|st| {
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
                        gpu_health: GpuHealth::judge(&e.anomalies, &e.m.gpus),
                    },
                );
            }
            let fresh = st
                .view
                .age(Instant::now())
                .is_some_and(|age| age <= TRAFFIC_FRESH);
            let traffic = if fresh {
                st.view.traffic()
            } else {
                BTreeMap::new()
            };
            (cpu_of, entries, traffic, fresh)
        });
        // With a fresh snapshot, a slice with a service that has no traffic figures had no
        // call in the window: it is quiet, not unknown.
        if fresh {
            for b in &blueprints {
                for s in b.blueprint.slices.iter().filter(|s| s.service.is_some()) {
                    let key = format!("{}/{}", b.blueprint.name, s.name);
                    traffic.entry(key.clone()).or_insert_with(|| {
                        crate::metrics::requests::SliceTraffic {
                            slice: key,
                            ..Default::default()
                        }
                    });
                }
            }
        }
        let noticed = store.spot_notices()?;
        let mut world = World::build(&Inputs {
            now,
            blueprints: &blueprints,
            assignments: &assignments,
            statuses: &statuses,
            members: &members,
            health: &health,
            cpu_of: &cpu_of,
            samples: &entries,
            decisions,
            traffic: &traffic,
        });
        // A node the cloud is taking away stays drained: no rule undrains it.
        for n in world
            .nodes
            .iter_mut()
            .filter(|n| noticed.contains_key(&n.id))
        {
            n.drained_by_controller = false;
        }
        Ok(world)
    }

    /// Fill in when each slice's count was set, from its blueprint's kept versions (what tells
    /// an operator's count from the controller's; see [`decide::context`]).
    fn count_set_at(&self, world: &mut World) -> Result<(), std::io::Error> {
        let mut versions: HashMap<String, Vec<crate::domain::StoredBlueprint>> = HashMap::new();
        for sv in &mut world.slices {
            if !versions.contains_key(&sv.blueprint) {
                let v = self.cluster.store.blueprint_versions(&sv.blueprint)?;
                versions.insert(sv.blueprint.clone(), v);
            }
            sv.count_set_at = super::world::count_set_at(&versions[&sv.blueprint], &sv.slice);
        }
        Ok(())
    }

    /// Write `cmd`. A refusal by the state machine is logged; a failed write ends the tick.
    /// The id of a recorded decision.
    async fn write(w: &mut Writer, cmd: Command) -> Result<Option<u64>, TickError> {
        match cmd {
            Command::Apply { id, action } => {
                match w.call(RaftCommand::ApplyDecision { id }).await? {
                    Response::Refused(m) => tracing::info!("controller: {m}"),
                    _ => tracing::info!("controller: applied d-{id}: {action}"),
                }
            }
            Command::Close { id, status } => {
                if let Response::Refused(m) =
                    w.call(RaftCommand::CloseDecision { id, status }).await?
                {
                    tracing::info!("controller: {m}");
                }
            }
            Command::Outcome { id, outcome } => {
                w.call(RaftCommand::RecordOutcome { id, outcome }).await?;
            }
            Command::Record { decision, apply } => {
                let summary = format!("{} ({})", decision.action, decision.status.word());
                let id = match w.call(RaftCommand::RecordDecision(decision)).await? {
                    Response::Decision(id) => id,
                    other => return Err(TickError::Unexpected(format!("{other:?}"))),
                };
                tracing::info!("controller: d-{id}: {summary}");
                if apply
                    && let Response::Refused(m) = w.call(RaftCommand::ApplyDecision { id }).await?
                {
                    tracing::info!("controller: {m}");
                }
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// Write one step of the interruption policy: the drain first (so the node empties even if
    /// the leader fails before the record), then its decision, already applied.
    async fn write_spot(w: &mut Writer, step: spot::Step) -> Result<(), TickError> {
        match step {
            spot::Step::Interrupt {
                node,
                drain,
                decision,
            } => {
                let summary = format!("{} at once ({})", decision.action, decision.rule);
                if drain {
                    let cmd = RaftCommand::SetNodeState {
                        id: node,
                        state: crate::domain::NodeState::Draining,
                    };
                    if let Response::Refused(m) = w.call(cmd).await? {
                        tracing::warn!("controller: {summary}: {m}");
                    }
                }
                match w.call(RaftCommand::RecordDecision(decision)).await? {
                    Response::Decision(id) => tracing::warn!("controller: d-{id}: {summary}"),
                    other => return Err(TickError::Unexpected(format!("{other:?}"))),
                }
            }
            spot::Step::Outcome { id, outcome } => {
                tracing::info!("controller: d-{id}: {}", outcome.detail);
                w.call(RaftCommand::RecordOutcome { id, outcome }).await?;
            }
        }
        Ok(())
    }

    /// One leader tick: the policy ([`decide`]) says what to write; this writes it, in order,
    /// and runs the reviewer.
    async fn decide(
        &self,
        w: &mut Writer,
        state: &mut Leading,
        world: &World,
        decisions: &[Decision],
    ) -> Result<(), TickError> {
        let now = world.now;
        let control = self.cluster.store.control()?;
        for cmd in decide::advance(decisions, &control, world, &self.settings) {
            Self::write(w, cmd).await?;
        }
        for d in decisions {
            let outcome = {
                let mut st = self.status.lock().expect("controller status");
                let converged_at = &mut state.converged_at;
                decide::judge(d, world, converged_at, &mut st.startup_ms, &self.settings)
            };
            if let Some(outcome) = outcome {
                Self::write(w, Command::Outcome { id: d.id, outcome }).await?;
                state.converged_at.remove(&d.id);
            }
        }
        // An interruption does not wait for the mode or a pause: the machine is going away.
        let notices = self.cluster.store.spot_notices()?;
        let judging = decisions
            .iter()
            .any(|d| d.rule == spot::INTERRUPTION_RULE && d.outcome.is_none());
        if !notices.is_empty() || judging {
            let assignments = self.cluster.store.assignments()?;
            let by = format!("controller@{}", self.cluster.name);
            // A notice that stays outlives the recent decisions: its decision is looked up
            // further back (once per leadership), never recorded again.
            let mut decisions = std::borrow::Cow::Borrowed(decisions);
            for (id, notice) in spot::undecided(&notices, &decisions) {
                let key = (id, notice.at);
                let older = match state.spot_decided.get(&key) {
                    Some(d) => self.cluster.store.decision(*d)?,
                    None if state.spot_missed.contains(&key) => None,
                    None => self
                        .cluster
                        .store
                        .find_decision(|d| spot::decides(d, id, notice))?,
                };
                match older {
                    Some(d) => {
                        state.spot_decided.insert(key, d.id);
                        decisions.to_mut().push(d);
                    }
                    None => {
                        state.spot_missed.insert(key);
                    }
                }
            }
            for step in
                spot::interruptions(&notices, world, &assignments, &decisions, &control, &by)
            {
                state.spot_missed.clear();
                Self::write_spot(w, step).await?;
            }
        }
        // Sleep and wake carry on while paused (a drained node is suspended, a waking one
        // waited for); only their new proposals wait.
        let power = match &self.power {
            Some(p) => p
                .tick(
                    &self.cluster,
                    &self.metrics,
                    &self.brain,
                    world,
                    decisions,
                    w,
                )
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!("controller: sleep and wake could not read the store: {e}");
                    Vec::new()
                }),
            None => {
                if !state.power_off_warned {
                    let power = self.cluster.store.power()?;
                    let name = &self.cluster.name;
                    if let Some(m) = super::power::stuck_without_power(power.values(), name) {
                        tracing::warn!("controller: {m}");
                        state.power_off_warned = true;
                    }
                }
                Vec::new()
            }
        };
        if control.paused.is_some() {
            return Ok(());
        }
        let startup = self.status.lock().expect("controller status").startup_ms;
        let lead_secs = decide::lead_secs(&control, startup, &self.settings);
        let mut proposals = self.brain.lock().expect("brain").propose(world, lead_secs);
        proposals.extend(spot::rebalance(&notices, world));
        proposals.extend(power);
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
        let mut recent = decide::recent(decisions, now);
        for p in proposals {
            self.consider(w, state, p, world, decisions, &control, &mut recent)
                .await?;
        }
        Ok(())
    }

    /// Start, wait for or finish the review of `p`: one review at a time, no closer than the
    /// reviewer's interval, and never waited for past its budget.
    /// `wake` is notified when a review finishes.
    /// `gather` gives the words around the proposal when a review starts.
    fn review_step(
        state: &mut Leading,
        r: &Arc<dyn Reviewer>,
        p: &Proposal,
        world: &World,
        decisions: &[Decision],
        wake: &Arc<tokio::sync::Notify>,
        gather: impl FnOnce() -> Gathered,
    ) -> ReviewStep {
        let (target, verb) = (p.action.target(), p.action.verb());
        let budget = r.budget();
        if let Some(mut inr) = state
            .review
            .take_if(|x| x.target == target && x.verb == verb)
        {
            // One rule for the budget (review::in_time), on the latency from the review's
            // start to its answer, whenever the loop looks: an answer after the budget is a
            // timeout, however soon after it the loop polled.
            if let Some((res, took)) = poll_review(&mut inr.answer) {
                let latency = took.unwrap_or_else(|| inr.started.elapsed());
                let res = in_time(latency, budget).then_some(res);
                let (rec, v) = review_record(r.name(), latency, budget, res);
                return ReviewStep::Done(rec, v);
            }
            if !in_time(inr.started.elapsed(), budget) {
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
        if let Err(u) = r.available() {
            let (mut rec, _) = review_record(
                r.name(),
                Duration::ZERO,
                budget,
                Some(Ok(Err(format!("{}; the rules decide", u.why)))),
            );
            if u.expected {
                // An expected state (no model pulled, not loaded yet), not a failure.
                rec.verdict = "skipped".into();
                rec.reason = format!("no model: {}; the rules decide", u.why);
            }
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
        let started = Instant::now();
        let gathered = gather();
        let mut situation = Situation {
            proposal: p.clone(),
            world: world.clone(),
            recent: decisions.iter().take(20).cloned().collect(),
            context: gathered.context,
        };
        let (reviewer, wake) = (r.clone(), wake.clone());
        let (tx, answer) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            if let Some(logs) = gathered.logs {
                situation.context.logs = logs.await;
            }
            let _ = tokio::task::spawn_blocking(move || {
                let res = reviewer.review(&situation);
                let _ = tx.send((res, started.elapsed()));
                wake.notify_one();
            })
            .await;
        });
        state.review = Some(InReview {
            target,
            verb,
            started,
            answer,
        });
        state.next_review = Some(Instant::now() + r.interval());
        ReviewStep::Wait
    }

    /// The words around `p` from this node's replica, and the read of its slice's logs (run
    /// when the review starts, within [`context::LOG_WAIT`] per node). A store that cannot be
    /// read gives no words: the review goes on with the numbers.
    fn gather(&self, p: &Proposal, now: Millis, decisions: &[Decision]) -> Gathered {
        let store = &self.cluster.store;
        let (Ok(audit), Ok(statuses), Ok(members)) =
            (store.audit(2_000), store.instances(), store.nodes())
        else {
            return Gathered::default();
        };
        let name = |id: u64| {
            members
                .iter()
                .find(|m| m.id == id)
                .map(|m| m.name.clone())
                .unwrap_or_else(|| format!("node {id}"))
        };
        let context = context::gather(&p.action, now, &audit, &statuses, decisions, name);
        let sources = context::log_sources(&p.action, &statuses);
        let addrs: HashMap<u64, String> = members.iter().map(|m| (m.id, m.addr.clone())).collect();
        let cluster = self.cluster.clone();
        let logs = (!sources.is_empty()).then(|| {
            Box::pin(async move {
                context::logs(&cluster, sources, |id| addrs.get(&id).cloned(), now).await
            }) as LogsFuture
        });
        Gathered { context, logs }
    }

    /// Turn one proposal into a decision, or not: screened by the policy, reviewed if the
    /// reviewer has a say, concluded by the policy and recorded.
    #[allow(clippy::too_many_arguments)]
    async fn consider(
        &self,
        w: &mut Writer,
        state: &mut Leading,
        p: Proposal,
        world: &World,
        decisions: &[Decision],
        control: &ControlState,
        recent: &mut u32,
    ) -> Result<(), TickError> {
        let screened = decide::screen(p, world, decisions, control, *recent, &self.settings);
        if let Some(close) = screened.close {
            Self::write(w, close).await?;
        }
        let candidate = match screened.next {
            Next::Stands | Next::Quiet => return Ok(()),
            Next::Held { action, reason } => {
                tracing::debug!("controller: {action} held back: {reason}");
                return Ok(());
            }
            Next::Candidate(c) => c,
        };
        let mut review = None;
        if candidate.wants_review()
            && let Some(r) = &self.reviewer
        {
            let p = &candidate.proposal;
            let gather = || self.gather(p, world.now, decisions);
            match Self::review_step(state, r, p, world, decisions, &self.wake, gather) {
                ReviewStep::Wait => return Ok(()),
                ReviewStep::Done(rec, verdict) => review = Some((rec, verdict)),
            }
        }
        let cmd = decide::conclude(
            candidate,
            review,
            world,
            control,
            &self.cluster.name,
            &self.settings,
        );
        let actionable =
            matches!(&cmd, Command::Record { decision, .. } if decision.status.is_open());
        Self::write(w, cmd).await?;
        if actionable {
            *recent += 1;
        }
        Ok(())
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
    use crate::domain::Action;

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

    /// A leader whose model is not there says the rules decide; a follower, whose model is
    /// idle by design, does not.
    #[test]
    fn the_reviewer_line_follows_the_role() {
        let s = LocalStatus {
            reviewer: "model — the model is idle; rules and forecast decide".into(),
            reviewer_following: "model — the model is idle on this node".into(),
            ..LocalStatus::default()
        };
        assert!(s.reviewer_line(true).ends_with("rules and forecast decide"));
        assert_eq!(
            s.reviewer_line(false),
            "model — the model is idle on this node"
        );
        let disabled = LocalStatus {
            reviewer: "none (controller.model.enabled = false; rules and forecast only)".into(),
            ..LocalStatus::default()
        };
        assert_eq!(disabled.reviewer_line(false), disabled.reviewer);
    }

    /// A reviewer whose model is not there.
    struct NoModel(bool);

    impl Reviewer for NoModel {
        fn name(&self) -> String {
            "model".into()
        }
        fn review(&self, _: &Situation) -> Result<Review, String> {
            unreachable!("not available")
        }
        fn available(&self) -> Result<(), crate::controller::review::Unavailable> {
            Err(crate::controller::review::Unavailable {
                why: "the model is absent (pull one with `aether model pull`)".into(),
                expected: self.0,
            })
        }
    }

    /// An absent model is an expected state: the review is skipped, not an error; a failed
    /// one is an error.
    #[tokio::test]
    async fn an_absent_model_is_skipped_not_an_error() {
        let wake = Arc::new(tokio::sync::Notify::new());
        let p = crate::controller::model::engine::demo().proposal;
        let mut state = Leading::default();
        let absent: Arc<dyn Reviewer> = Arc::new(NoModel(true));
        let (rec, v) = done(step(&mut state, &absent, &p, &wake));
        assert_eq!(v, None);
        assert_eq!(rec.verdict, "skipped");
        assert_eq!(
            rec.reason,
            "no model: the model is absent (pull one with `aether model pull`); the rules decide"
        );
        let failed: Arc<dyn Reviewer> = Arc::new(NoModel(false));
        let (rec, _) = done(step(&mut state, &failed, &p, &wake));
        assert_eq!(rec.verdict, "error");
    }

    /// The budget is one rule on the latency from start to answer: an answer that came after
    /// the budget is a timeout even when the loop finds it already there.
    #[tokio::test]
    async fn an_answer_after_the_budget_is_a_timeout_whenever_the_loop_looks() {
        let wake = Arc::new(tokio::sync::Notify::new());
        let p = crate::controller::model::engine::demo().proposal;
        for (delay, counted) in [(0, true), (120, false)] {
            let mut state = Leading::default();
            let r: Arc<dyn Reviewer> = Arc::new(Fake {
                verdict: Verdict::Approve,
                delay: Duration::from_millis(delay),
                budget: Duration::from_millis(60),
            });
            assert!(matches!(step(&mut state, &r, &p, &wake), ReviewStep::Wait));
            // The loop looks only once the answer is there (as after a late tick).
            tokio::time::timeout(Duration::from_secs(5), wake.notified())
                .await
                .expect("the finished review wakes the loop");
            let (rec, v) = done(step(&mut state, &r, &p, &wake));
            assert_eq!(v.is_some(), counted, "{delay} ms: {rec:?}");
            assert_eq!(rec.verdict, if counted { "approve" } else { "timeout" });
            assert!(rec.latency_ms >= delay, "{rec:?}");
        }
    }

    fn step(
        state: &mut Leading,
        r: &Arc<dyn Reviewer>,
        p: &Proposal,
        wake: &Arc<tokio::sync::Notify>,
    ) -> ReviewStep {
        let s = crate::controller::model::engine::demo();
        Controller::review_step(state, r, p, &s.world, &s.recent, wake, Gathered::default)
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
