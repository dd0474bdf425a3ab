//! The controller's proposals: from what the cluster looks like each second ([`super::world`])
//! to proposals with their reasoning. No I/O and no clock: the simulator
//! (`benches/controller.rs`) drives the same code with simulated time.
//!
//! Per slice, in order:
//!
//! 1. **scale from zero**: a slice at 0 desired instances with requests waiting at the ingress
//!    is proposed 1 at once (no rule, no hold time; the policy applies it without the grace
//!    window, see [`super::decide`]);
//! 2. **rules** by priority: the first whose conditions all held for their duration; a scale-up
//!    may be raised by the forecast; a `hold` rule stops scale-in;
//! 3. **idle to zero**: a slice with `scaling.idle_to_zero` and min = 0 that had no request for
//!    that long (and this node saw its traffic figures for that long) is proposed 0, before a
//!    rule's scale-in; the forecast holds it back when it expects a call within the lead time;
//! 4. a rule's scale-in: to the highest recommendation of the stabilisation window over every
//!    measured per-instance metric (CPU, calls), never below 1 (only idle-to-zero empties a
//!    slice), not while latency is over its target, limited by the forecast;
//! 5. no rule: the forecast alone may start a scale-up, early enough; never a scale-in.
//!
//! The forecaster learns a slice's request rate (calls/s) when it declares a service — the
//! demand itself — and the cores it uses otherwise (a lower bound of the demand once the
//! instances saturate).
//!
//! Every node feeds its brain every second (so a new leader starts with the history and the
//! learned forecast of the old one); only the leader asks it for proposals.

use std::collections::{HashMap, VecDeque};

use super::forecast::{ForecastConfig, Forecaster};
use super::rules::{Cmp, Condition, Metric, Rule, RuleAction, Rules, Scope, Step, Threshold};
use super::world::f2;
pub use super::world::{NodeView, SliceView, World};
use crate::domain::{Action, Millis, NodeState, human_millis};

/// A proposed action with why, before the safety bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    /// The rule that fired (`forecast` when only the forecast did; `scale-from-zero` and
    /// `idle-to-zero` for the slice's own scaling policy).
    pub rule: String,
    pub action: Action,
    /// `rules:<rule>`, `forecast`, `scaling:from_zero`, `scaling:idle_to_zero`.
    pub layers: Vec<String>,
    pub reasoning: Vec<String>,
    pub inputs: Vec<(String, String)>,
}

/// The rule name of a scale from zero on demand.
pub const FROM_ZERO: &str = "scale-from-zero";
/// The rule name of a scale to zero after `scaling.idle_to_zero` without requests.
pub const IDLE_TO_ZERO: &str = "idle-to-zero";
/// Traffic figures missing for longer than this break the idle window's cover.
const GAP_MS: Millis = 5_000;

/// Seconds of per-second history, with the time of each value.
#[derive(Debug, Default, Clone)]
struct History(VecDeque<(u64, f64)>);

impl History {
    fn push(&mut self, t: u64, v: f64, keep: u64) {
        if self.0.back().is_some_and(|(last, _)| *last >= t) {
            return;
        }
        self.0.push_back((t, v));
        while self.0.front().is_some_and(|(t0, _)| *t0 + keep < t) {
            self.0.pop_front();
        }
    }

    /// How long, up to `now`, the values have met `ok` without a break (a gap over 5 s breaks
    /// it); `None` when the newest value is stale or fails.
    fn streak(&self, now: u64, ok: impl Fn(f64) -> bool) -> Option<u64> {
        let (last_t, last_v) = *self.0.back()?;
        if now.saturating_sub(last_t) > 5 || !ok(last_v) {
            return None;
        }
        let mut start = last_t;
        let mut prev = last_t;
        for (t, v) in self.0.iter().rev() {
            if !ok(*v) || prev - t > 5 {
                break;
            }
            start = *t;
            prev = *t;
        }
        Some(now - start)
    }

    fn max_since(&self, from: u64) -> Option<f64> {
        self.0
            .iter()
            .filter(|(t, _)| *t >= from)
            .map(|(_, v)| *v)
            .reduce(f64::max)
    }
}

/// (Unix second, value) points, oldest first.
pub type Series = Vec<(u64, f64)>;

/// What a slice's forecaster learns and its proportional steps count in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// Cores used: slices without a service (a lower bound of the demand once saturated).
    Cpu,
    /// Calls per second through the ingress: slices with a service (the demand itself).
    Calls,
}

impl Load {
    /// A slice's: calls when it declares a service, cores otherwise.
    pub fn of(s: &SliceView) -> Load {
        if s.service { Load::Calls } else { Load::Cpu }
    }

    /// Its unit in reasoning and charts.
    pub fn unit(self) -> &'static str {
        match self {
            Load::Cpu => "cores",
            Load::Calls => "calls/s",
        }
    }

    fn metric(self) -> Metric {
        match self {
            Load::Cpu => Metric::SliceCpu,
            Load::Calls => Metric::CallsPerSec,
        }
    }

    /// The per-instance metric whose target sizes the slice for this load.
    fn per_instance(self) -> Metric {
        match self {
            Load::Cpu => Metric::CpuPerInstance,
            Load::Calls => Metric::CallsPerInstance,
        }
    }
}

/// What this node knows of a slice's requests, for idle-to-zero.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Quiet {
    /// Since when this node has seen the slice's traffic figures without a gap over
    /// [`GAP_MS`].
    covered_since: Millis,
    /// When it last saw them.
    seen_at: Millis,
    /// The newest request it knows of (a call, or one waiting).
    last_call: Option<Millis>,
}

/// Per-instance metrics with a target: their recommendations size a scale-in.
const SIZED: [Metric; 2] = [Metric::CpuPerInstance, Metric::CallsPerInstance];

/// The controller's pure state: history per target and metric, and a forecaster per slice.
pub struct Brain {
    rules: Rules,
    forecast_cfg: ForecastConfig,
    /// How far ahead the forecast is reported (`controller.horizon`).
    horizon_secs: u64,
    history: HashMap<(String, Metric), History>,
    /// Per slice and sized metric: the proportional recommendation each second (for scale-in
    /// stabilisation).
    recommendations: HashMap<(String, Metric), History>,
    /// Per slice: its forecaster and what it learns (a change of kind starts a new one).
    forecasters: HashMap<String, (Load, Forecaster)>,
    /// Per slice with traffic figures: what this node knows of its requests.
    quiet: HashMap<String, Quiet>,
}

impl Brain {
    pub fn new(rules: Rules, forecast_cfg: ForecastConfig, horizon_secs: u64) -> Brain {
        Brain {
            rules,
            forecast_cfg,
            horizon_secs,
            history: HashMap::new(),
            recommendations: HashMap::new(),
            forecasters: HashMap::new(),
            quiet: HashMap::new(),
        }
    }

    /// The rules in use.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// A slice's measured load (per second, oldest first, in [`Brain::load_unit`]) and, once
    /// the forecast is warm, what it expects every `step` seconds up to the horizon: what the
    /// console charts.
    pub fn load_chart(&self, target: &str, now: u64, step: u64) -> (Series, Series) {
        let kind = self.load_kind(target);
        let load = self
            .history
            .get(&(target.to_string(), kind.metric()))
            .map(|h| h.0.iter().copied().collect())
            .unwrap_or_default();
        let forecast = match self.forecaster(target).filter(|f| f.warm()) {
            Some(f) => (1..=self.horizon_secs / step.max(1))
                .filter_map(|i| f.forecast(i * step).map(|v| (now + i * step, v.max(0.0))))
                .collect(),
            None => Vec::new(),
        };
        (load, forecast)
    }

    /// What `target`'s load chart and forecast count: `cores` or `calls/s`.
    pub fn load_unit(&self, target: &str) -> &'static str {
        self.load_kind(target).unit()
    }

    fn load_kind(&self, target: &str) -> Load {
        self.forecasters.get(target).map_or(Load::Cpu, |(k, _)| *k)
    }

    /// The forecaster of `target`, once it has seen the slice.
    pub fn forecaster(&self, target: &str) -> Option<&Forecaster> {
        self.forecasters.get(target).map(|(_, f)| f)
    }

    /// The CPU per instance `s` aims at: its blueprint's, else the rules'.
    pub(super) fn target_cpu(&self, s: &SliceView) -> f64 {
        s.target_cpu.unwrap_or(self.rules.settings.target_cpu)
    }

    /// The calls per second per instance `s` aims at: its blueprint's, else the rules'.
    pub(super) fn target_calls(&self, s: &SliceView) -> f64 {
        s.target_calls_per_instance
            .unwrap_or(self.rules.settings.target_calls_per_instance)
    }

    fn target_of(&self, s: &SliceView, m: Metric) -> Option<f64> {
        match m {
            Metric::CpuPerInstance => Some(self.target_cpu(s)),
            Metric::CallsPerInstance => Some(self.target_calls(s)),
            Metric::LatencyMs => s.target_latency_ms,
            _ => None,
        }
    }

    /// The load one instance carries at its target, in the slice's [`Load`] unit.
    fn capacity(&self, s: &SliceView, kind: Load) -> f64 {
        match kind {
            Load::Cpu => s.cpu_reserved * self.target_cpu(s),
            Load::Calls => self.target_calls(s),
        }
    }

    /// Record this second: every rule metric of every slice and node, the scale-in
    /// recommendations, what is known of each slice's requests, and the slice's load (calls/s
    /// with a service, cores otherwise) into its forecaster.
    pub fn observe(&mut self, w: &World) {
        let t = w.now / 1000;
        let keep = self.rules.history_secs() + 10;
        for s in &w.slices {
            let target = s.target();
            for (_, m) in Metric::SLICE {
                if let Some(v) = s.value(m) {
                    self.history
                        .entry((target.clone(), m))
                        .or_default()
                        .push(t, v, keep);
                }
            }
            for m in SIZED {
                if let (Some(v), Some(goal)) = (s.value(m), self.target_of(s, m)) {
                    let rec = (s.active as f64 * v / goal).ceil();
                    self.recommendations
                        .entry((target.clone(), m))
                        .or_default()
                        .push(t, rec, keep);
                }
            }
            if let Some(calls) = s.calls_per_s {
                let now = w.now;
                let q = self.quiet.entry(target.clone()).or_insert(Quiet {
                    covered_since: now,
                    seen_at: now,
                    last_call: None,
                });
                if now.saturating_sub(q.seen_at) > GAP_MS {
                    q.covered_since = now;
                }
                q.seen_at = now;
                let mut last = s.last_call_at;
                if (calls > 0.0 && last.is_none()) || s.waiting > 0 {
                    last = Some(now);
                }
                q.last_call = q.last_call.max(last);
            }
            let kind = Load::of(s);
            if let Some(load) = s.value(kind.metric()) {
                let cfg = self.forecast_cfg;
                let (k, f) = self
                    .forecasters
                    .entry(target)
                    .or_insert_with(|| (kind, Forecaster::new(cfg)));
                if *k != kind {
                    *k = kind;
                    *f = Forecaster::new(cfg);
                }
                f.observe(t, load);
            }
        }
        for n in &w.nodes {
            for (_, m) in Metric::NODE {
                if let Some(v) = n.value(m) {
                    self.history
                        .entry((format!("node {}", n.name), m))
                        .or_default()
                        .push(t, v, keep);
                }
            }
        }
        let live: std::collections::HashSet<String> = w
            .slices
            .iter()
            .map(|s| s.target())
            .chain(w.nodes.iter().map(|n| format!("node {}", n.name)))
            .collect();
        self.history.retain(|(k, _), _| live.contains(k));
        self.recommendations.retain(|(k, _), _| live.contains(k));
        self.forecasters.retain(|k, _| live.contains(k));
        self.quiet.retain(|k, _| live.contains(k));
    }

    /// Whether every condition of `rule` holds on `target` for its duration; the reasoning
    /// sentences when it does.
    fn matches(
        &self,
        rule: &Rule,
        target: &str,
        now: u64,
        target_of: impl Fn(Metric) -> Option<f64>,
        current: impl Fn(Metric) -> Option<f64>,
    ) -> Option<Vec<String>> {
        let tol = self.rules.settings.tolerance;
        let mut why = Vec::new();
        for c in &rule.when {
            let limit = c.limit(target_of(c.metric), tol)?;
            let h = self.history.get(&(target.to_string(), c.metric))?;
            let held = h.streak(now, |v| c.holds(v, limit))?;
            if held < c.for_secs {
                return None;
            }
            let v = current(c.metric)?;
            why.push(describe(c, v, limit, target_of(c.metric), held));
        }
        Some(why)
    }

    /// The proposals of this second, one per target at most. `lead_secs`: how far ahead a
    /// scale-up must look to be in place in time (instance start-up plus the grace window).
    pub fn propose(&self, w: &World, lead_secs: u64) -> Vec<Proposal> {
        let mut out = Vec::new();
        for s in &w.slices {
            if let Some(p) = self.propose_slice(s, w.now, lead_secs) {
                out.push(p);
            }
        }
        let now = w.now / 1000;
        for n in &w.nodes {
            if let Some(p) = self.propose_node(n, now) {
                out.push(p);
            }
        }
        out
    }

    fn slice_inputs(&self, s: &SliceView, now: Millis) -> Vec<(String, String)> {
        let mut inputs = vec![
            (
                "instances".into(),
                format!("{} desired, {} active", s.desired, s.active),
            ),
            ("bounds".into(), format!("{}..={}", s.min, s.max)),
            ("target_cpu".into(), f2(self.target_cpu(s))),
        ];
        if let Some(u) = s.cpu_used {
            inputs.push(("cpu_used".into(), f2(u)));
        }
        if let Some(v) = s.value(Metric::CpuPerInstance) {
            inputs.push(("cpu_per_instance".into(), f2(v)));
        }
        if s.service || s.calls_per_s.is_some() {
            if let Some(v) = s.calls_per_s {
                inputs.push(("calls_per_s".into(), f2(v)));
            }
            if let Some(v) = s.value(Metric::CallsPerInstance) {
                inputs.push(("calls_per_instance".into(), f2(v)));
            }
            inputs.push(("target_calls_per_instance".into(), f2(self.target_calls(s))));
            if let Some(v) = s.latency_ms {
                inputs.push(("latency_p95_ms".into(), format!("{v:.0}")));
            }
            if let Some(v) = s.latency_p99_ms {
                inputs.push(("latency_p99_ms".into(), format!("{v:.0}")));
            }
            if let Some(v) = s.error_rate {
                inputs.push(("error_rate".into(), format!("{v:.4}")));
            }
            inputs.push(("waiting".into(), s.waiting.to_string()));
            if let Some(at) = s.last_call_at {
                inputs.push((
                    "last_call".into(),
                    format!("{} ago", human_millis(now.saturating_sub(at))),
                ));
            }
        }
        if let Some(v) = s.target_latency_ms {
            inputs.push(("target_latency_ms".into(), format!("{v:.0}")));
        }
        if let Some(v) = s.idle_to_zero_ms {
            inputs.push(("idle_to_zero".into(), human_millis(v)));
        }
        if let Some((kind, f)) = self.forecasters.get(&s.target())
            && let (Some(l), Some(tr), Some(h)) =
                (f.level(), f.trend_per_sec(), f.forecast(self.horizon_secs))
        {
            inputs.push(("forecast_of".into(), kind.unit().into()));
            inputs.push(("forecast_level".into(), f2(l)));
            inputs.push(("forecast_trend_per_min".into(), f2(tr * 60.0)));
            inputs.push((
                format!("forecast_in_{}", human_millis(self.horizon_secs * 1000)),
                f2(h),
            ));
            inputs.push(("forecast_seasonal".into(), f.seasonal().to_string()));
        }
        inputs
    }

    /// One sentence with the slice's request figures, when it has them: `ingress: 600.00
    /// calls/s over 4 active instances (150.00 per instance, target 100.00), p95 180 ms, p99
    /// 240 ms (target 200 ms), errors 0.2%`.
    fn requests_sentence(&self, s: &SliceView) -> Option<String> {
        let calls = s.calls_per_s?;
        let mut t = format!(
            "ingress: {} calls/s over {} active instances",
            f2(calls),
            s.active
        );
        if let Some(v) = s.value(Metric::CallsPerInstance) {
            t.push_str(&format!(
                " ({} per instance, target {})",
                f2(v),
                f2(self.target_calls(s))
            ));
        }
        if let Some(p95) = s.latency_ms {
            t.push_str(&format!(", p95 {p95:.0} ms"));
            if let Some(p99) = s.latency_p99_ms {
                t.push_str(&format!(", p99 {p99:.0} ms"));
            }
            if let Some(goal) = s.target_latency_ms {
                t.push_str(&format!(" (target {goal:.0} ms)"));
            }
        }
        if let Some(e) = s.error_rate {
            t.push_str(&format!(", errors {}", Metric::ErrorRate.show(e)));
        }
        if s.waiting > 0 {
            t.push_str(&format!(", {} waiting", s.waiting));
        }
        Some(t)
    }

    /// One sentence on the forecast over the horizon, when there is one.
    fn forecast_sentence(&self, s: &SliceView) -> Option<String> {
        let (kind, f) = self.forecasters.get(&s.target())?;
        let (now, ahead) = (f.level()?, f.forecast(self.horizon_secs)?);
        let h = human_millis(self.horizon_secs * 1000);
        let unit = kind.unit();
        Some(if now > 0.01 {
            format!(
                "forecast {:+.0}% in {h} ({} → {} {unit}{})",
                (ahead / now - 1.0) * 100.0,
                f2(now),
                f2(ahead),
                if f.seasonal() {
                    ", with the daily profile"
                } else {
                    ""
                }
            )
        } else {
            format!("forecast {} {unit} in {h}", f2(ahead))
        })
    }

    /// A slice at zero with requests waiting at the ingress: one instance, at once.
    fn start_on_demand(&self, s: &SliceView, now: Millis) -> Proposal {
        let n = s.waiting;
        let mut reasoning = vec![format!(
            "{n} request{} waiting at the ingress; min = {}: an instance starts on demand",
            if n == 1 { "" } else { "s" },
            s.min
        )];
        reasoning.extend(self.requests_sentence(s));
        Proposal {
            rule: FROM_ZERO.into(),
            action: scale(s, 1),
            layers: vec!["scaling:from_zero".into()],
            reasoning,
            inputs: self.slice_inputs(s, now),
        }
    }

    /// How long `target` has been without a request as far as this node knows — from its
    /// newest request, or from when this node began to see the slice's traffic figures if it
    /// has seen none since — and that newest request; `None` without figures now.
    fn quiet_for(&self, target: &str, now: Millis) -> Option<(Millis, Option<Millis>)> {
        let q = self.quiet.get(target)?;
        if now.saturating_sub(q.seen_at) > GAP_MS {
            return None;
        }
        let since = q.covered_since.max(q.last_call.unwrap_or(0));
        Some((now.saturating_sub(since), q.last_call))
    }

    /// A slice with `idle_to_zero` and min = 0, without a request for that long: to zero
    /// (to what the forecast needs, when it expects a call within the lead time).
    fn idle_to_zero(
        &self,
        s: &SliceView,
        now: Millis,
        lead_secs: u64,
        forecast: Option<(u64, f64, u32)>,
    ) -> Option<Proposal> {
        let idle = s.idle_to_zero_ms?;
        if s.min > 0 || s.desired == 0 || s.waiting > 0 {
            return None;
        }
        let (quiet, last) = self.quiet_for(&s.target(), now)?;
        if quiet < idle {
            return None;
        }
        let mut layers = vec!["scaling:idle_to_zero".into()];
        let mut reasoning = vec![match last {
            Some(at) if now.saturating_sub(at) == quiet => format!(
                "no request for {} (idle_to_zero {}): the last one came {} ago",
                human_millis(quiet),
                human_millis(idle),
                human_millis(now.saturating_sub(at))
            ),
            _ => format!(
                "no request for {} (idle_to_zero {}): none since this node began to receive the slice's traffic figures",
                human_millis(quiet),
                human_millis(idle)
            ),
        }];
        let mut to = 0;
        if let Some((at, load, need)) = forecast
            && expects_calls(load, lead_secs)
        {
            let keep = need.max(1);
            if keep >= s.desired {
                return None;
            }
            layers.push("forecast".into());
            reasoning.push(format!(
                "forecast {} calls/s in {at}s: a call is expected within the lead time ({lead_secs}s); kept {keep}",
                f2(load)
            ));
            to = keep;
        } else {
            reasoning.push(
                "min = 0: scaled to zero; the next request waits at the ingress while an instance starts"
                    .into(),
            );
        }
        if let Some(f) = self.forecast_sentence(s)
            && !reasoning.iter().any(|r| r.starts_with("forecast "))
        {
            reasoning.push(f);
        }
        let mut inputs = self.slice_inputs(s, now);
        inputs.push(("quiet_for".into(), human_millis(quiet)));
        Some(Proposal {
            rule: IDLE_TO_ZERO.into(),
            action: scale(s, to),
            layers,
            reasoning,
            inputs,
        })
    }

    fn propose_slice(&self, s: &SliceView, now_ms: Millis, lead_secs: u64) -> Option<Proposal> {
        if s.desired == 0 && s.waiting > 0 {
            return Some(self.start_on_demand(s, now_ms));
        }
        let now = now_ms / 1000;
        let target = s.target();
        let kind = Load::of(s);
        let capacity = self.capacity(s, kind);
        let predictive = s.predictive.unwrap_or(self.rules.settings.predictive);
        // A CPU forecaster learns nothing while the slice is at zero: not trusted there.
        let forecaster = self
            .forecasters
            .get(&target)
            .filter(|(k, f)| *k == kind && f.warm() && (s.desired > 0 || kind == Load::Calls))
            .map(|(_, f)| f);
        // The instances the forecast load needs at its peak within the lead time.
        let forecast_need = forecaster
            .filter(|_| predictive && capacity > 0.0)
            .and_then(|f| f.peak(lead_secs.max(1)))
            .map(|(at, load)| (at, load, (load / capacity).ceil() as u32));
        let unit = kind.unit();
        let mut fired: Option<(&Rule, Vec<String>)> = None;
        for r in self.rules.rules.iter().filter(|r| r.scope == Scope::Slice) {
            if let Some(why) =
                self.matches(r, &target, now, |m| self.target_of(s, m), |m| s.value(m))
            {
                fired = Some((r, why));
                break;
            }
        }
        if !matches!(fired, Some((r, _)) if matches!(r.action, RuleAction::ScaleUp | RuleAction::Hold))
            && let Some(p) = self.idle_to_zero(s, now_ms, lead_secs, forecast_need)
        {
            return Some(p);
        }
        let mut layers = Vec::new();
        let mut reasoning;
        let rule;
        let mut to;
        let mut scaled_on = kind.per_instance();
        match fired.filter(|(r, _)| r.action != RuleAction::Hold) {
            Some((r, why)) => {
                layers.push(format!("rules:{}", r.name));
                reasoning = why;
                rule = r.name.clone();
                let first = &r.when[0];
                scaled_on = first.metric;
                to = match (r.action, r.step) {
                    (RuleAction::ScaleUp, Step::By(n)) => s.desired + n,
                    (RuleAction::ScaleDown, Step::By(n)) => s.desired.saturating_sub(n),
                    (RuleAction::ScaleUp, Step::Percent(p)) => {
                        s.desired + (s.desired as u64 * p as u64).div_ceil(100).max(1) as u32
                    }
                    (RuleAction::ScaleDown, Step::Percent(p)) => s
                        .desired
                        .saturating_sub((s.desired as u64 * p as u64).div_ceil(100).max(1) as u32),
                    (RuleAction::ScaleUp, Step::Proportional) => {
                        let v = s.value(first.metric)?;
                        let t = self.target_of(s, first.metric)?;
                        let want = (s.active.max(1) as f64 * v / t).ceil() as u32;
                        reasoning.push(format!(
                            "{} instances bring it to the target: ceil({} × {} / {})",
                            want,
                            s.active.max(1),
                            f2(v),
                            f2(t)
                        ));
                        want
                    }
                    (RuleAction::ScaleDown, Step::Proportional) => {
                        let secs = self.rules.settings.stabilization_secs;
                        let from = now.saturating_sub(secs);
                        let rec = |m: Metric| {
                            self.recommendations
                                .get(&(target.clone(), m))
                                .and_then(|h| h.max_since(from))
                                .map(|v| v as u32)
                        };
                        // The rule's own metric must have a recommendation; every other
                        // measured one may only raise it (the most demanding wins).
                        let own = if SIZED.contains(&first.metric) {
                            rec(first.metric)?
                        } else {
                            0
                        };
                        let all: Vec<(Metric, u32)> = SIZED
                            .iter()
                            .filter_map(|m| rec(*m).map(|r| (*m, r)))
                            .collect();
                        if all.is_empty() {
                            return None;
                        }
                        let best = all.iter().map(|(_, r)| *r).max().unwrap_or(own).max(own);
                        let window = human_millis(secs * 1000);
                        reasoning.push(if all.len() > 1 {
                            let each: Vec<String> = all
                                .iter()
                                .map(|(m, r)| format!("{} {r}", m.label()))
                                .collect();
                            format!(
                                "{best} instances are enough: the highest recommendation of the last {window} ({})",
                                each.join(", ")
                            )
                        } else {
                            format!(
                                "{best} instances are enough: the highest recommendation of the last {window}"
                            )
                        });
                        best
                    }
                    _ => return None,
                };
                match r.step {
                    Step::By(n) => reasoning.push(format!("rule step {n}: {} → {to}", s.desired)),
                    Step::Percent(p) => {
                        reasoning.push(format!("rule step {p}%: {} → {to}", s.desired))
                    }
                    Step::Proportional => {}
                }
                match r.action {
                    RuleAction::ScaleUp => {
                        if let Some((at, load, need)) = forecast_need
                            && need > to
                        {
                            layers.push("forecast".into());
                            reasoning.push(format!(
                                "forecast load {} {unit} in {at}s needs {need} instances; raised from {to}",
                                f2(load)
                            ));
                            to = need;
                        }
                        if to <= s.desired {
                            return None;
                        }
                    }
                    _ => {
                        // Only idle-to-zero empties a slice.
                        to = to.max(1);
                        // More copies are what keeps latency down: none removed while it is
                        // over its target.
                        if let (Some(v), Some(goal)) = (s.latency_ms, s.target_latency_ms)
                            && v > goal
                        {
                            return None;
                        }
                        // Scale in on measured load only; the forecast may only hold it back.
                        if let Some((at, load, need)) = forecast_need
                            && need > to
                        {
                            if need >= s.desired {
                                return None;
                            }
                            layers.push("forecast".into());
                            reasoning.push(format!(
                                "forecast load {} {unit} in {at}s needs {need} instances; scale-in limited to that",
                                f2(load)
                            ));
                            to = need;
                        }
                        if to >= s.desired {
                            return None;
                        }
                    }
                }
            }
            None => {
                // No rule (or a hold): the forecast alone may only start a scale-up, early
                // enough — from zero only when it expects a call within the lead time.
                let (at, load, need) = forecast_need?;
                if need <= s.desired
                    || load <= s.desired as f64 * capacity * (1.0 + self.rules.settings.tolerance)
                    || (s.desired == 0 && !expects_calls(load, lead_secs))
                {
                    return None;
                }
                rule = "forecast".into();
                layers.push("forecast".into());
                reasoning = vec![match kind {
                    Load::Cpu => format!(
                        "forecast load {} cores in {at}s exceeds the capacity of {} instances ({} × {} cores × target {}); {need} instances needed, started now to be active in time (lead {lead_secs}s)",
                        f2(load),
                        s.desired,
                        s.desired,
                        f2(s.cpu_reserved),
                        f2(self.target_cpu(s))
                    ),
                    Load::Calls => format!(
                        "forecast load {} calls/s in {at}s exceeds the capacity of {} instances ({} × target {} calls/s per instance); {need} instances needed, started now to be active in time (lead {lead_secs}s)",
                        f2(load),
                        s.desired,
                        s.desired,
                        f2(capacity)
                    ),
                }];
                to = need;
            }
        }
        reasoning.extend(self.requests_sentence(s));
        if let Some(f) = self.forecast_sentence(s)
            && !reasoning.iter().any(|r| r.starts_with("forecast "))
        {
            reasoning.push(f);
        }
        let mut inputs = self.slice_inputs(s, now_ms);
        inputs.push(("scaled_on".into(), scaled_on.name().into()));
        Some(Proposal {
            rule,
            action: scale(s, to),
            layers,
            reasoning,
            inputs,
        })
    }

    fn propose_node(&self, n: &NodeView, now: u64) -> Option<Proposal> {
        let target = format!("node {}", n.name);
        for r in self.rules.rules.iter().filter(|r| r.scope == Scope::Node) {
            let applicable = match r.action {
                RuleAction::Drain => n.state == NodeState::Ready && n.live,
                RuleAction::Undrain => {
                    matches!(n.state, NodeState::Draining | NodeState::Drained)
                        && n.drained_by_controller
                }
                _ => false,
            };
            if !applicable {
                continue;
            }
            if let Some(why) = self.matches(r, &target, now, |_| None, |m| n.value(m)) {
                let action = match r.action {
                    RuleAction::Drain => Action::Drain {
                        node: n.id,
                        name: n.name.clone(),
                    },
                    _ => Action::Undrain {
                        node: n.id,
                        name: n.name.clone(),
                    },
                };
                let inputs = n.inputs();
                let mut reasoning = why;
                // A rule on GPU health cites the findings themselves, with their numbers.
                if r.when.iter().any(|c| c.metric.is_gpu_health())
                    && let Some(g) = &n.gpu_health
                {
                    reasoning.extend(
                        g.reasons
                            .iter()
                            .map(|why| format!("gpu health on {}: {why}", n.name)),
                    );
                }
                return Some(Proposal {
                    rule: r.name.clone(),
                    action,
                    layers: vec![format!("rules:{}", r.name)],
                    reasoning,
                    inputs,
                });
            }
        }
        None
    }
}

/// `s` scaled from its desired count to `to`.
fn scale(s: &SliceView, to: u32) -> Action {
    Action::Scale {
        blueprint: s.blueprint.clone(),
        slice: s.slice.clone(),
        from: s.desired,
        to,
    }
}

/// Whether a forecast rate (calls/s) means at least one call within `lead_secs`.
fn expects_calls(per_s: f64, lead_secs: u64) -> bool {
    per_s * lead_secs.max(1) as f64 >= 1.0
}

/// `cpu per instance 0.91 > target 0.60 (band limit 0.66) for 45s`;
/// `latency p95 412 ms > target 200 ms (band limit 220 ms) for 31s`.
fn describe(c: &Condition, value: f64, limit: f64, target: Option<f64>, held: u64) -> String {
    let m = c.metric;
    let name = m.label();
    let op = match c.cmp {
        Cmp::Above => ">",
        Cmp::Below => "<",
    };
    match (c.threshold, target) {
        (Threshold::Target, Some(t)) => format!(
            "{name} {} {op} target {} (band limit {}) for {held}s",
            m.show(value),
            m.show(t),
            m.show(limit)
        ),
        _ => format!(
            "{name} {} {op} {} for {held}s",
            m.show(value),
            m.show(limit)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::rules::{DEFAULT_RULES, parse};

    fn slice(desired: u32, active: u32, used: f64) -> SliceView {
        SliceView {
            blueprint: "shop".into(),
            slice: "web".into(),
            desired,
            min: 1,
            max: 10,
            active,
            cpu_reserved: 1.0,
            cpu_used: Some(used),
            predictive: Some(false),
            ..SliceView::default()
        }
    }

    fn brain() -> Brain {
        Brain::new(
            parse("rules", DEFAULT_RULES).unwrap(),
            ForecastConfig::default(),
            300,
        )
    }

    /// Feed `secs` seconds of the same slice, then propose.
    fn run(b: &mut Brain, s: &SliceView, from: u64, secs: u64) -> Vec<Proposal> {
        let mut w = World::default();
        for t in from..from + secs {
            w = World {
                now: t * 1000,
                slices: vec![s.clone()],
                nodes: vec![],
            };
            b.observe(&w);
        }
        b.propose(&w, 30)
    }

    fn scale_to(p: &[Proposal]) -> Option<u32> {
        p.iter().find_map(|p| match p.action {
            Action::Scale { to, .. } => Some(to),
            _ => None,
        })
    }

    #[test]
    fn rules_fire_only_after_their_duration_and_outside_the_band() {
        // (what, desired, active, cores used, seconds, expected new count)
        type Case = (&'static str, u32, u32, f64, u64, Option<u32>);
        let cases: &[Case] = &[
            ("hot for 20s: proportional up", 4, 4, 3.4, 20, Some(6)),
            ("hot for 10s only", 4, 4, 3.4, 10, None),
            ("saturated for 5s: tripled", 4, 4, 3.92, 5, Some(12)),
            ("saturated for 2s only", 4, 4, 3.92, 2, None),
            ("inside the band", 4, 4, 2.6, 60, None),
            ("cold for 3m: in to the need", 4, 4, 0.8, 200, Some(2)),
            ("cold for 1m only", 4, 4, 0.8, 60, None),
            ("no samples of the slice", 4, 0, 0.0, 60, None),
        ];
        for (what, desired, active, used, secs, want) in cases {
            let mut b = brain();
            let p = run(&mut b, &slice(*desired, *active, *used), 1_000, *secs);
            assert_eq!(scale_to(&p), *want, "{what}: {p:?}");
        }
    }

    #[test]
    fn reasoning_carries_the_numbers() {
        let mut b = brain();
        let p = run(&mut b, &slice(4, 4, 3.4), 1_000, 45);
        let text = p[0].reasoning.join("; ");
        assert!(
            text.contains("cpu per instance 0.85 > target 0.60 (band limit 0.66) for 44s"),
            "{text}"
        );
        assert!(text.contains("ceil(4 × 0.85 / 0.60)"), "{text}");
        assert_eq!(p[0].layers, vec!["rules:cpu-high".to_string()]);
        assert!(
            p[0].inputs
                .iter()
                .any(|(k, v)| k == "cpu_per_instance" && v == "0.85"),
            "{:?}",
            p[0].inputs
        );
    }

    #[test]
    fn scale_in_keeps_the_highest_recommendation_of_the_window() {
        let mut b = brain();
        // A minute at 3 cores, then 3 minutes at 0.8: the busy minute is inside the 3 m window.
        run(&mut b, &slice(4, 4, 2.2), 1_000, 60);
        let p = run(&mut b, &slice(4, 4, 0.8), 1_060, 150);
        assert_eq!(
            scale_to(&p),
            None,
            "the busy minute is still in the window: {p:?}"
        );
        let p = run(&mut b, &slice(4, 4, 0.8), 1_210, 60);
        assert_eq!(scale_to(&p), Some(2), "after the window: {p:?}");
    }

    #[test]
    fn the_forecast_scales_up_early_and_never_scales_in_alone() {
        let mut b = brain();
        let mut s = slice(2, 2, 0.0);
        s.predictive = Some(true);
        // A ramp of 0.004 cores a second: inside capacity now (2 × 0.6 = 1.2), above it soon.
        let mut w = World::default();
        let mut fired = None;
        for t in 0..400u64 {
            s.cpu_used = Some(0.4 + 0.004 * t as f64);
            w = World {
                now: (10_000 + t) * 1000,
                slices: vec![s.clone()],
                nodes: vec![],
            };
            b.observe(&w);
            let p = b.propose(&w, 60);
            if let Some(p) = p.into_iter().next() {
                fired = Some((t, p));
                break;
            }
        }
        let (t, p) = fired.expect("the forecast proposes a scale-up");
        let load_then = 0.4 + 0.004 * t as f64;
        assert!(
            load_then < 1.2 * 1.1,
            "proposed before the measured load crossed capacity (load {load_then} at {t}s)"
        );
        assert_eq!(p.rule, "forecast");
        assert!(
            p.reasoning[0].contains("exceeds the capacity of 2 instances"),
            "{p:?}"
        );
        // A falling forecast with a measured load inside the band proposes nothing.
        let mut b = brain();
        let mut s = slice(4, 4, 0.0);
        s.predictive = Some(true);
        for t in 0..300u64 {
            s.cpu_used = Some((2.4 - 0.006 * t as f64).max(0.0));
            w.now = (20_000 + t) * 1000;
            w.slices = vec![s.clone()];
            b.observe(&w);
            let p = b.propose(&w, 60);
            let measured = s.value(Metric::CpuPerInstance).unwrap();
            if measured > 0.54 {
                assert!(p.is_empty(), "scale-in on a forecast alone at {t}s: {p:?}");
            }
        }
    }

    #[test]
    fn node_rules_drain_hot_nodes_and_undrain_only_their_own() {
        let rules = parse(
            "r",
            "[[rules]]\nname = \"hot\"\nscope = \"node\"\nwhen = [{ metric = \"gpu_temp\", above = 90, for = \"10s\" }]\naction = \"drain\"\n[[rules]]\nname = \"cool\"\nscope = \"node\"\nwhen = [{ metric = \"gpu_temp\", below = 70, for = \"10s\" }]\naction = \"undrain\"\n",
        )
        .unwrap();
        let node = |temp: f64, state: NodeState, ours: bool| NodeView {
            id: 2,
            name: "n2".into(),
            state,
            live: true,
            cpu: 0.5,
            mem: 0.5,
            gpu_util: Some(0.9),
            gpu_temp: Some(temp),
            anomalies: 0,
            drained_by_controller: ours,
            gpu_health: None,
        };
        let cases = [
            (
                "hot and ready",
                node(95.0, NodeState::Ready, false),
                Some("drain n2"),
            ),
            (
                "cool, drained by us",
                node(60.0, NodeState::Drained, true),
                Some("undrain n2"),
            ),
            (
                "cool, drained by an operator",
                node(60.0, NodeState::Drained, false),
                None,
            ),
            (
                "hot, already draining",
                node(95.0, NodeState::Draining, true),
                None,
            ),
        ];
        for (what, n, want) in cases {
            let mut b = Brain::new(rules.clone(), ForecastConfig::default(), 300);
            let mut w = World::default();
            for t in 0..15u64 {
                w = World {
                    now: (5_000 + t) * 1000,
                    slices: vec![],
                    nodes: vec![n.clone()],
                };
                b.observe(&w);
            }
            let p = b.propose(&w, 30);
            let got = p.first().map(|p| p.action.to_string());
            assert_eq!(got.as_deref(), want, "{what}");
        }
    }

    #[test]
    fn a_gpu_health_rule_drains_and_cites_the_findings_and_is_quiet_without_gpus() {
        let rules = parse(
            "r",
            "[[rules]]\nname = \"gpu-unhealthy\"\nscope = \"node\"\nwhen = [{ metric = \"gpu_health\", above = 0, for = \"10s\" }]\naction = \"drain\"\n",
        )
        .unwrap();
        let node = |health: Option<crate::controller::world::GpuHealth>| NodeView {
            id: 2,
            name: "n2".into(),
            state: NodeState::Ready,
            live: true,
            cpu: 0.5,
            mem: 0.5,
            gpu_util: health.as_ref().map(|_| 0.9),
            gpu_temp: health.as_ref().map(|_| 70.0),
            anomalies: 0,
            drained_by_controller: false,
            gpu_health: health,
        };
        let sick = crate::controller::world::GpuHealth {
            trouble: 1,
            errors: 1,
            reasons: vec![
                "gpu0 had 1 new critical XID error in the last 15 min (newest XID 79)".into(),
            ],
            ..Default::default()
        };
        for (what, n, want) in [
            ("xid", node(Some(sick)), Some("drain n2")),
            ("healthy", node(Some(Default::default())), None),
            ("no gpu", node(None), None),
        ] {
            let mut b = Brain::new(rules.clone(), ForecastConfig::default(), 300);
            let mut w = World::default();
            for t in 0..15u64 {
                w = World {
                    now: (5_000 + t) * 1000,
                    slices: vec![],
                    nodes: vec![n.clone()],
                };
                b.observe(&w);
            }
            let p = b.propose(&w, 30);
            assert_eq!(
                p.first().map(|p| p.action.to_string()).as_deref(),
                want,
                "{what}"
            );
            if let Some(p) = p.first() {
                assert!(
                    p.reasoning.iter().any(|r| r
                        == "gpu health on n2: gpu0 had 1 new critical XID error in the last 15 min (newest XID 79)"),
                    "{:?}",
                    p.reasoning
                );
                assert!(p.inputs.contains(&("gpu_health".into(), "1".into())));
            }
        }
    }
}
