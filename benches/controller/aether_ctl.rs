//! The Aether side: the real controller core (brain, safety, decide) driven one simulated second at
//! a time.

use super::*;

/// What drives Aether's core: the cores the instances use (as without an ingress), or the
/// ingress's request figures (calls/s, p95 latency, requests waiting) with the cores too.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Drive {
    Cpu,
    Requests,
}

impl Drive {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Drive::Cpu => "cpu",
            Drive::Requests => "requests",
        }
    }
}

/// One Aether configuration: the rules (settings tweaked or not) and the bounds.
#[derive(Clone)]
pub(crate) struct Variant {
    pub(crate) name: String,
    pub(crate) rules: Rules,
    pub(crate) bounds: Bounds,
    pub(crate) predictive: bool,
}

/// What happened to Aether's proposals (diagnostics).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Diag {
    /// Applied decisions by who started them: a rule alone, a rule raised by the forecast, the
    /// forecast alone.
    pub(crate) by_rule: u64,
    pub(crate) by_rule_raised: u64,
    pub(crate) by_forecast: u64,
    /// Applied scales from zero on demand, and to zero after idle_to_zero.
    pub(crate) from_zero: u64,
    pub(crate) to_zero: u64,
    pub(crate) ups: u64,
    pub(crate) downs: u64,
    /// Applied scale-ups cut by max_step, and the instances cut.
    pub(crate) step_clamps: u64,
    pub(crate) step_cut: u64,
    /// Seconds a proposal was held back, by reason.
    pub(crate) held_converging: u64,
    pub(crate) held_up_cooldown: u64,
    pub(crate) held_down_cooldown: u64,
    pub(crate) held_rate: u64,
    pub(crate) held_bound: u64,
    pub(crate) held_other: u64,
}

impl Diag {
    pub(crate) fn add(&mut self, o: &Diag) {
        self.by_rule += o.by_rule;
        self.by_rule_raised += o.by_rule_raised;
        self.by_forecast += o.by_forecast;
        self.from_zero += o.from_zero;
        self.to_zero += o.to_zero;
        self.ups += o.ups;
        self.downs += o.downs;
        self.step_clamps += o.step_clamps;
        self.step_cut += o.step_cut;
        self.held_converging += o.held_converging;
        self.held_up_cooldown += o.held_up_cooldown;
        self.held_down_cooldown += o.held_down_cooldown;
        self.held_rate += o.held_rate;
        self.held_bound += o.held_bound;
        self.held_other += o.held_other;
    }
}

/// Aether's leader loop in mode auto, minus the I/O: the real [`Brain`], [`decide::context`]
/// and [`safety::check`], over the decisions it applied.
pub(crate) struct Aether {
    pub(crate) brain: Brain,
    /// The policy's settings: the variant's bounds and rule settings, the `[controller]`
    /// defaults otherwise.
    pub(crate) settings: decide::Settings,
    /// Seconds ahead a scale-up must look (`Brain::propose`'s `lead_secs`).
    pub(crate) lead: u64,
    /// The one slice, updated each second.
    pub(crate) world: World,
    /// Applied decisions, oldest first (the policy reads them newest first).
    pub(crate) applied: Vec<Decision>,
    /// Diagnostics count from this second (the trace's reported window).
    pub(crate) report_from: u64,
    pub(crate) diag: Diag,
    pub(crate) drive: Drive,
}

/// The slice's min for Aether on `tr` with `drive`: 0 where it may scale to zero.
pub(crate) fn aether_min(tr: &Trace, drive: Drive) -> u32 {
    if tr.to_zero && drive == Drive::Requests {
        0
    } else {
        MIN
    }
}

impl Aether {
    /// A fresh controller (empty history, cold forecaster) for variant `v` on `tr`, driven
    /// by `drive`. The request drive's slice has a service, a target of calls per instance
    /// equal to the target utilisation (target × capacity ÷ service time) and the SLO as its
    /// target latency; on a `to_zero` trace min = 0 and idle_to_zero.
    pub(crate) fn new(v: &Variant, m: Model, tr: &Trace, drive: Drive) -> Aether {
        let requests = drive == Drive::Requests;
        let slice = SliceView {
            blueprint: "sim".into(),
            slice: "web".into(),
            desired: 0,
            min: aether_min(tr, drive),
            max: MAX,
            active: 0,
            cpu_reserved: CAPACITY,
            cpu_used: None,
            predictive: Some(v.predictive),
            service: requests,
            target_calls_per_instance: requests.then_some(m.target * CAPACITY / SERVICE_S),
            target_latency_ms: requests.then_some(SLO_S * 1000.0),
            idle_to_zero_ms: (requests && tr.to_zero).then_some(IDLE_TO_ZERO_S * 1000),
            ..SliceView::default()
        };
        let defaults = aether::config::ControllerConfig::default();
        Aether {
            settings: decide::Settings {
                bounds: v.bounds.clone(),
                ..decide::Settings::new(&defaults, &v.rules.settings)
            },
            brain: Brain::new(v.rules.clone(), ForecastConfig::default(), D.horizon_s),
            // Mode auto: start-up plus one decision interval (decide::lead_secs).
            lead: m.startup + 1,
            world: World {
                now: 0,
                slices: vec![slice],
                nodes: vec![],
            },
            applied: Vec::new(),
            report_from: tr.report_from as u64,
            diag: Diag::default(),
            drive,
        }
    }

    /// The safety context of `action`, from the applied decisions (as the leader builds it).
    pub(crate) fn context(&self, action: &Action) -> Context {
        let newest_first = || self.applied.iter().rev();
        let recent = decide::recent(newest_first(), self.world.now);
        decide::context(action, &self.world, newest_first(), recent, &self.settings)
    }

    /// Record `action` as applied now (mode auto: decided and applied at once).
    pub(crate) fn apply(&mut self, action: Action, rule: String) {
        let now = self.world.now;
        self.applied.push(Decision {
            id: self.applied.len() as u64 + 1,
            at: now,
            by: "sim".into(),
            mode: ControllerMode::Auto,
            layers: Vec::new(),
            action,
            rule,
            reasoning: Vec::new(),
            inputs: Vec::new(),
            review: None,
            status: DecisionStatus::Applied {
                at: now,
                by: "sim".into(),
            },
            timeline: Vec::new(),
            outcome: None,
        });
    }
}

impl Controller for Aether {
    fn forecast(&self) -> Option<f64> {
        let f = self.brain.forecaster(&self.world.slices[0].target())?;
        f.peak(self.lead).map(|(_, v)| v)
    }

    fn step(&mut self, t: u64, seen: &Seen) -> Option<u32> {
        let now = t * 1000;
        self.world.now = now;
        let s = &mut self.world.slices[0];
        s.desired = seen.desired;
        s.active = seen.active;
        // No process, no CPU sample.
        s.cpu_used = (seen.active > 0).then_some(seen.used);
        if self.drive == Drive::Requests {
            s.calls_per_s = Some(seen.calls);
            s.latency_ms = seen.latency_ms.filter(|_| seen.calls > 0.0);
            s.latency_p99_ms = s.latency_ms;
            s.error_rate = (seen.calls > 0.0).then_some(0.0);
            s.waiting = seen.waiting;
            s.last_call_at = (seen.calls > 0.0 || seen.waiting > 0).then_some(now);
        }
        self.brain.observe(&self.world);
        let p = self
            .brain
            .propose(&self.world, self.lead)
            .into_iter()
            .next()?;
        let counted = t >= self.report_from;
        let mut action = p.action;
        let ctx = self.context(&action);
        let wanted = match action {
            Action::Scale { to, .. } => to,
            _ => return None,
        };
        match safety::check(&mut action, &ctx, &self.settings.bounds) {
            Check::Go { notes } => {
                let Action::Scale { from, to, .. } = action else {
                    return None;
                };
                let up = to > from;
                if counted {
                    let d = &mut self.diag;
                    if p.rule == FROM_ZERO {
                        d.from_zero += 1;
                    } else if p.rule == IDLE_TO_ZERO {
                        d.to_zero += 1;
                    } else if p.rule == "forecast" {
                        d.by_forecast += 1;
                    } else if p.layers.iter().any(|l| l == "forecast") {
                        d.by_rule_raised += 1;
                    } else {
                        d.by_rule += 1;
                    }
                    if up {
                        d.ups += 1;
                    } else {
                        d.downs += 1;
                    }
                    if up && notes.iter().any(|n| matches!(n, Clamp::Step { .. })) {
                        d.step_clamps += 1;
                        d.step_cut += u64::from(wanted.min(MAX).abs_diff(to));
                    }
                }
                self.apply(action, p.rule);
                Some(to)
            }
            Check::Stop(reason) => {
                if counted {
                    let d = &mut self.diag;
                    let slot = match reason {
                        StopReason::Converging { .. } => &mut d.held_converging,
                        StopReason::Cooldown { up: true, .. } => &mut d.held_up_cooldown,
                        StopReason::Cooldown { up: false, .. } => &mut d.held_down_cooldown,
                        StopReason::RateLimit { .. } => &mut d.held_rate,
                        StopReason::AtBound { .. } => &mut d.held_bound,
                        StopReason::Vetoed { .. }
                        | StopReason::LastReadyNode { .. }
                        | StopReason::OperatorHold { .. } => &mut d.held_other,
                    };
                    *slot += 1;
                }
                None
            }
        }
    }
}
