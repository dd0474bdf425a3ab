//! The controller's proposals: from what the cluster looks like each second ([`super::world`])
//! to proposals with their reasoning. Rules first, then the forecast; the safety bounds and the operator come
//! after ([`super::safety`], [`super::flow`]). No I/O and no clock: the simulator
//! (`benches/controller.rs`) drives the same code with simulated time.
//!
//! Every node feeds its brain every second (so a new leader starts with the history and the
//! learned forecast of the old one); only the leader asks it for proposals.

use std::collections::{HashMap, VecDeque};

use super::forecast::{ForecastConfig, Forecaster};
use super::rules::{Cmp, Condition, Metric, Rule, RuleAction, Rules, Scope, Step, Threshold};
use super::world::f2;
pub use super::world::{NodeView, SliceView, World};
use crate::domain::{Action, NodeState};

/// A proposed action with why, before the safety bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    /// The rule that fired (`forecast` when only the forecast did).
    pub rule: String,
    pub action: Action,
    /// `rules:<rule>`, `forecast`.
    pub layers: Vec<String>,
    pub reasoning: Vec<String>,
    pub inputs: Vec<(String, String)>,
}

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

/// The controller's pure state: history per target and metric, and a forecaster per slice.
pub struct Brain {
    rules: Rules,
    forecast_cfg: ForecastConfig,
    /// How far ahead the forecast is reported (`controller.horizon`).
    horizon_secs: u64,
    history: HashMap<(String, Metric), History>,
    /// Per slice: the proportional recommendation each second (for scale-in stabilisation).
    recommendations: HashMap<String, History>,
    forecasters: HashMap<String, Forecaster>,
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
        }
    }

    /// The rules in use.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// A slice's measured load (cores used, per second, oldest first) and, once the forecast
    /// is warm, what it expects every `step` seconds up to the horizon: what the console charts.
    pub fn load_chart(&self, target: &str, now: u64, step: u64) -> (Series, Series) {
        let load = self
            .history
            .get(&(target.to_string(), Metric::SliceCpu))
            .map(|h| h.0.iter().copied().collect())
            .unwrap_or_default();
        let forecast = match self.forecasters.get(target).filter(|f| f.warm()) {
            Some(f) => (1..=self.horizon_secs / step.max(1))
                .filter_map(|i| f.forecast(i * step).map(|v| (now + i * step, v.max(0.0))))
                .collect(),
            None => Vec::new(),
        };
        (load, forecast)
    }

    /// The forecaster of `target`, once it has seen the slice.
    pub fn forecaster(&self, target: &str) -> Option<&Forecaster> {
        self.forecasters.get(target)
    }

    /// The CPU per instance `s` aims at: its blueprint's, else the rules'.
    pub(super) fn target_cpu(&self, s: &SliceView) -> f64 {
        s.target_cpu.unwrap_or(self.rules.settings.target_cpu)
    }

    fn target_of(&self, s: &SliceView, m: Metric) -> Option<f64> {
        match m {
            Metric::CpuPerInstance => Some(self.target_cpu(s)),
            Metric::LatencyMs => s.target_latency_ms,
            _ => None,
        }
    }

    /// Record this second: every rule metric of every slice and node, the scale-in
    /// recommendation, and the slice load into its forecaster.
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
            if let Some(u) = s.value(Metric::CpuPerInstance) {
                let rec = (s.active as f64 * u / self.target_cpu(s)).ceil() as u32;
                self.recommendations
                    .entry(target.clone())
                    .or_default()
                    .push(t, rec as f64, keep);
            }
            if let Some(load) = s.cpu_used {
                self.forecasters
                    .entry(target)
                    .or_insert_with(|| Forecaster::new(self.forecast_cfg))
                    .observe(t, load);
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
        self.recommendations.retain(|k, _| live.contains(k));
        self.forecasters.retain(|k, _| live.contains(k));
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
        let now = w.now / 1000;
        let mut out = Vec::new();
        for s in &w.slices {
            if let Some(p) = self.propose_slice(s, now, lead_secs) {
                out.push(p);
            }
        }
        for n in &w.nodes {
            if let Some(p) = self.propose_node(n, now) {
                out.push(p);
            }
        }
        out
    }

    fn slice_inputs(&self, s: &SliceView) -> Vec<(String, String)> {
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
        if let Some(v) = s.calls_per_s {
            inputs.push(("calls_per_s".into(), f2(v)));
        }
        if let Some(v) = s.latency_ms {
            inputs.push(("latency_ms".into(), f2(v)));
        }
        if let Some(f) = self.forecasters.get(&s.target())
            && let (Some(l), Some(tr), Some(h)) =
                (f.level(), f.trend_per_sec(), f.forecast(self.horizon_secs))
        {
            inputs.push(("forecast_level".into(), f2(l)));
            inputs.push(("forecast_trend_per_min".into(), f2(tr * 60.0)));
            inputs.push((
                format!(
                    "forecast_in_{}",
                    crate::domain::human_millis(self.horizon_secs * 1000)
                ),
                f2(h),
            ));
            inputs.push(("forecast_seasonal".into(), f.seasonal().to_string()));
        }
        inputs
    }

    /// One sentence on the forecast over the horizon, when there is one.
    fn forecast_sentence(&self, s: &SliceView) -> Option<String> {
        let f = self.forecasters.get(&s.target())?;
        let (now, ahead) = (f.level()?, f.forecast(self.horizon_secs)?);
        let h = crate::domain::human_millis(self.horizon_secs * 1000);
        Some(if now > 0.01 {
            format!(
                "forecast {:+.0}% in {h} ({} → {} cores{})",
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
            format!("forecast {} cores in {h}", f2(ahead))
        })
    }

    fn propose_slice(&self, s: &SliceView, now: u64, lead_secs: u64) -> Option<Proposal> {
        let target = s.target();
        let target_cpu = self.target_cpu(s);
        let per_instance = s.cpu_reserved * target_cpu;
        let predictive = s.predictive.unwrap_or(self.rules.settings.predictive);
        let forecaster = self.forecasters.get(&target).filter(|f| f.warm());
        // The instances the forecast load needs at its peak within the lead time.
        let forecast_need = forecaster
            .filter(|_| predictive && per_instance > 0.0)
            .and_then(|f| f.peak(lead_secs.max(1)))
            .map(|(at, load)| (at, load, (load / per_instance).ceil() as u32));
        let mut fired: Option<(&Rule, Vec<String>)> = None;
        for r in self.rules.rules.iter().filter(|r| r.scope == Scope::Slice) {
            if let Some(why) =
                self.matches(r, &target, now, |m| self.target_of(s, m), |m| s.value(m))
            {
                fired = Some((r, why));
                break;
            }
        }
        let mut layers = Vec::new();
        let mut reasoning;
        let rule;
        let mut to;
        match fired {
            Some((r, why)) => {
                layers.push(format!("rules:{}", r.name));
                reasoning = why;
                rule = r.name.clone();
                let first = &r.when[0];
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
                        let from = now.saturating_sub(self.rules.settings.stabilization_secs);
                        let rec = self.recommendations.get(&target)?.max_since(from)? as u32;
                        reasoning.push(format!(
                            "{rec} instances are enough: the highest recommendation of the last {}",
                            crate::domain::human_millis(
                                self.rules.settings.stabilization_secs * 1000
                            )
                        ));
                        rec
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
                                "forecast load {} cores in {at}s needs {need} instances; raised from {to}",
                                f2(load)
                            ));
                            to = need;
                        }
                        if to <= s.desired {
                            return None;
                        }
                    }
                    _ => {
                        // Scale in on measured load only; the forecast may only hold it back.
                        if let Some((at, load, need)) = forecast_need
                            && need > to
                        {
                            if need >= s.desired {
                                return None;
                            }
                            layers.push("forecast".into());
                            reasoning.push(format!(
                                "forecast load {} cores in {at}s needs {need} instances; scale-in limited to that",
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
                // No rule: the forecast alone may only start a scale-up, early enough.
                let (at, load, need) = forecast_need?;
                if need <= s.desired
                    || load
                        <= s.desired as f64 * per_instance * (1.0 + self.rules.settings.tolerance)
                {
                    return None;
                }
                rule = "forecast".into();
                layers.push("forecast".into());
                reasoning = vec![format!(
                    "forecast load {} cores in {at}s exceeds the capacity of {} instances ({} × {} cores × target {}); {need} instances needed, started now to be active in time (lead {lead_secs}s)",
                    f2(load),
                    s.desired,
                    s.desired,
                    f2(s.cpu_reserved),
                    f2(target_cpu)
                )];
                to = need;
            }
        }
        if let Some(f) = self.forecast_sentence(s)
            && !reasoning.iter().any(|r| r.starts_with("forecast "))
        {
            reasoning.push(f);
        }
        Some(Proposal {
            rule,
            action: Action::Scale {
                blueprint: s.blueprint.clone(),
                slice: s.slice.clone(),
                from: s.desired,
                to,
            },
            layers,
            reasoning,
            inputs: self.slice_inputs(s),
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
                return Some(Proposal {
                    rule: r.name.clone(),
                    action,
                    layers: vec![format!("rules:{}", r.name)],
                    reasoning: why,
                    inputs,
                });
            }
        }
        None
    }
}

/// `cpu per instance 0.91 > target 0.60 (+10% band) for 45s`.
fn describe(c: &Condition, value: f64, limit: f64, target: Option<f64>, held: u64) -> String {
    let name = c.metric.name().replace('_', " ");
    let op = match c.cmp {
        Cmp::Above => ">",
        Cmp::Below => "<",
    };
    match (c.threshold, target) {
        (Threshold::Target, Some(t)) => format!(
            "{name} {} {op} target {} (band limit {}) for {held}s",
            f2(value),
            f2(t),
            f2(limit)
        ),
        _ => format!("{name} {} {op} {} for {held}s", f2(value), f2(limit)),
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
            calls_per_s: None,
            latency_ms: None,
            target_cpu: None,
            target_latency_ms: None,
            predictive: Some(false),
            up_cooldown_ms: None,
            down_cooldown_ms: None,
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
}
