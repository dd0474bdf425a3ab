//! Safety bounds (DESIGN §9): the last word before a proposal becomes a decision. Pure.
//!
//! In order: an operator's recent veto of the same action on the target, the target still
//! converging from the previous action, an operator's count (no scale-in below it for the
//! operator hold), the cooldowns, never draining the last ready node, min/max, the largest
//! step (smaller for a scale-in), the cluster-wide rate limit. A bound that changes the proposal
//! says so in the returned notes ([`Clamp`]: `clamped to max=8`); one that stops it says why,
//! as a [`StopReason`] (its text is what a rejected decision records).
//!
//! A scale from zero on demand ([`Context::on_demand`]: requests wait at the ingress of a
//! slice at zero) skips the waits — converging, cooldowns, the rate limit — since a client is
//! waiting and the operator declared min = 0 (start on demand); an operator's veto and the
//! slice's max still stop it.

use crate::domain::{Action, Millis, human_millis};

/// The configured bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounds {
    /// Most instances one decision adds or removes: this many, or `max_step_percent` of the
    /// current count when that is more (the HPA's default policy is 4 pods or 100 %).
    pub max_step: u32,
    pub max_step_percent: u32,
    /// Most instances one scale-in removes: this many, or `max_step_down_percent` of the
    /// current count when that is more (and never more than the step above). With the down
    /// cooldown between changes this is a rate: at most so many per cooldown period, like the
    /// HPA's scale-down policies.
    pub max_step_down: u32,
    pub max_step_down_percent: u32,
    /// Most decisions (any target) recorded per minute, cluster-wide.
    pub per_minute: u32,
    /// How long an operator's veto of an action on a target holds back the same action there.
    pub veto_cooldown_ms: u64,
}

impl Bounds {
    /// The bounds `[controller]` sets.
    pub fn from_config(c: &crate::config::ControllerConfig) -> Bounds {
        Bounds {
            max_step: c.max_step,
            max_step_percent: c.max_step_percent,
            max_step_down: c.max_step_down,
            max_step_down_percent: c.max_step_down_percent,
            per_minute: c.decisions_per_minute,
            veto_cooldown_ms: c.veto_cooldown.0.as_millis() as u64,
        }
    }
}

/// What the bounds need to know about the target and the cluster.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    pub now: Millis,
    /// The slice's min and max (scale actions).
    pub min: u32,
    pub max: u32,
    /// Why the target's previous action is still converging, if it is.
    pub converging: Option<String>,
    /// The newest operator veto of this same action on this target: decision name and when.
    pub vetoed: Option<(String, Millis)>,
    /// When this target was last scaled up, and last scaled at all (applied decisions or
    /// operator scales).
    pub last_up: Option<Millis>,
    pub last_change: Option<Millis>,
    pub up_cooldown_ms: u64,
    pub down_cooldown_ms: u64,
    /// An operator set the slice's count (`aether scale`, a blueprint apply): when, and to
    /// what. Not a decision of the controller's.
    pub operator: Option<(Millis, u32)>,
    /// How long an operator's count holds back a scale-in below it.
    pub operator_hold_ms: u64,
    /// Decisions recorded in the last minute, cluster-wide.
    pub recent_decisions: u32,
    /// Ready members, the target included.
    pub ready_nodes: u32,
    /// A scale from zero with requests waiting at the ingress: no waits.
    pub on_demand: bool,
    /// A scale to zero of a slice that declares `scaling.idle_to_zero` (and min = 0): the idle
    /// time it waited is its cooldown, the down cooldown after the last scale does not apply.
    pub to_zero_when_idle: bool,
}

impl Context {
    /// Take in one applied action on the target, newest first: the first scale-up sets
    /// `last_up`, the first of any kind `last_change`. Whether it was the newest (the only one
    /// that can still be converging).
    pub fn applied(&mut self, at: Millis, scale_up: bool) -> bool {
        let newest = self.last_change.is_none();
        if scale_up && self.last_up.is_none() {
            self.last_up = Some(at);
        }
        if newest {
            self.last_change = Some(at);
        }
        newest
    }
}

/// The verdict on one proposal.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// Go ahead, with what the bounds changed.
    Go { notes: Vec<Clamp> },
    /// Not now, and why ([`StopReason::recorded`]: worth a `rejected` decision or a quiet wait).
    Stop(StopReason),
}

/// How the bounds changed a proposal. Its text (`Display`) goes into the decision's reasoning.
#[derive(Debug, Clone, PartialEq)]
pub enum Clamp {
    /// Down to the slice's max; `wanted` is what the proposal asked.
    Max { max: u32, wanted: u32 },
    /// Up to the slice's min.
    Min { min: u32, wanted: u32 },
    /// To the largest scale-in step (`limit`, from `max_step_down` and
    /// `max_step_down_percent`); `wanted` is the count before this clamp.
    StepDown {
        limit: u32,
        max_step_down: u32,
        max_step_down_percent: u32,
        wanted: u32,
    },
    /// To the largest step (`limit`, from `max_step` and `max_step_percent`); `wanted` is the
    /// count before this clamp.
    Step {
        limit: u32,
        max_step: u32,
        max_step_percent: u32,
        wanted: u32,
    },
}

impl std::fmt::Display for Clamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Clamp::Max { max, wanted } => write!(f, "clamped to max={max} (wanted {wanted})"),
            Clamp::Min { min, wanted } => write!(f, "clamped to min={min} (wanted {wanted})"),
            Clamp::StepDown {
                limit,
                max_step_down,
                max_step_down_percent,
                wanted,
            } => write!(
                f,
                "clamped to a scale-in step of {limit} (max_step_down={max_step_down}, \
                 max_step_down_percent={max_step_down_percent}; wanted {wanted})"
            ),
            Clamp::Step {
                limit,
                max_step,
                max_step_percent,
                wanted,
            } => write!(
                f,
                "clamped to a step of {limit} (max_step={max_step}, \
                 max_step_percent={max_step_percent}; wanted {wanted})"
            ),
        }
    }
}

/// Why the bounds stopped a proposal. Its text (`Display`) is what decisions record.
#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    /// An operator vetoed the same action on the target less than the veto cooldown ago.
    Vetoed {
        /// The vetoed decision's name (`d-41`).
        decision: String,
        verb: &'static str,
        target: String,
        ago: Millis,
        /// How much longer the veto holds the action back.
        left: Millis,
    },
    /// The target's previous action has not settled (`why` says how far it is).
    Converging { target: String, why: String },
    /// A scale-up (`up`) or scale-down cooldown: the last change was `ago`, it waits `len`.
    Cooldown { up: bool, ago: Millis, len: Millis },
    /// An operator set the slice to `count` at `at`: no scale-in below it until `until`.
    OperatorHold {
        target: String,
        count: u32,
        at: Millis,
        until: Millis,
    },
    /// The target is at its max (`up`) or min already; `wanted` is what the proposal asked.
    AtBound {
        target: String,
        up: bool,
        limit: u32,
        wanted: u32,
    },
    /// Draining this node would leave no ready node.
    LastReadyNode { name: String },
    /// The cluster-wide rate limit of decisions a minute is reached.
    RateLimit { per_minute: u32 },
}

impl StopReason {
    /// Worth a `rejected` decision (an operator would want to see it), as opposed to the quiet
    /// waits (converging, cooldown, rate limit).
    pub fn recorded(&self) -> bool {
        match self {
            StopReason::Vetoed { .. }
            | StopReason::AtBound { .. }
            | StopReason::LastReadyNode { .. }
            | StopReason::OperatorHold { .. } => true,
            StopReason::Converging { .. }
            | StopReason::Cooldown { .. }
            | StopReason::RateLimit { .. } => false,
        }
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Vetoed {
                decision,
                verb,
                target,
                ago,
                left,
            } => write!(
                f,
                "operator vetoed {decision} {} ago; no {verb} on {target} for another {}",
                human_millis(*ago),
                human_millis(*left)
            ),
            StopReason::OperatorHold {
                target,
                count,
                at,
                until,
            } => write!(
                f,
                "held: the operator set {target} to {count} at {}; no scale-in below {count} \
                 until {} (controller.operator_hold, at least the down cooldown)",
                crate::domain::clock_time(*at),
                crate::domain::clock_time(*until)
            ),
            StopReason::Converging { target, why } => {
                write!(f, "{target} is still converging: {why}")
            }
            StopReason::Cooldown { up, ago, len } => write!(
                f,
                "{} cooldown: last change {} ago, waits {}",
                if *up { "scale-up" } else { "scale-down" },
                human_millis(*ago),
                human_millis(*len)
            ),
            StopReason::AtBound {
                target,
                up,
                limit,
                wanted,
            } => {
                let bound = if *up { "max" } else { "min" };
                write!(
                    f,
                    "{target} is at {bound}={limit} already (wanted {wanted})"
                )
            }
            StopReason::LastReadyNode { name } => {
                write!(f, "{name} is the last ready node: never drained")
            }
            StopReason::RateLimit { per_minute } => write!(
                f,
                "the cluster-wide limit of {per_minute} decisions a minute is reached"
            ),
        }
    }
}

/// Check `action` against the bounds, clamping it in place.
pub fn check(action: &mut Action, ctx: &Context, b: &Bounds) -> Check {
    let verb = action.verb();
    let target = action.target();
    if let Some((id, at)) = &ctx.vetoed {
        let ago = ctx.now.saturating_sub(*at);
        if ago < b.veto_cooldown_ms {
            return Check::Stop(StopReason::Vetoed {
                decision: id.clone(),
                verb,
                target,
                ago,
                left: b.veto_cooldown_ms - ago,
            });
        }
    }
    if let Some(why) = ctx.converging.as_ref().filter(|_| !ctx.on_demand) {
        return Check::Stop(StopReason::Converging {
            target,
            why: why.clone(),
        });
    }
    let mut notes = Vec::new();
    match action {
        Action::Scale { from, to, .. } => {
            let up = *to > *from;
            let cooldown = |since: Option<Millis>, len: u64| {
                since
                    .map(|at| ctx.now.saturating_sub(at))
                    .filter(|ago| *ago < len)
                    .map(|ago| StopReason::Cooldown { up, ago, len })
            };
            let waiting = if up {
                cooldown(ctx.last_up, ctx.up_cooldown_ms)
            } else {
                cooldown(ctx.last_change, ctx.down_cooldown_ms)
            };
            let exempt = ctx.on_demand || (ctx.to_zero_when_idle && !up);
            if let Some((at, count)) = ctx.operator
                && !up
                && !exempt
                && *to < count
                && ctx.now.saturating_sub(at) < ctx.operator_hold_ms
            {
                return Check::Stop(StopReason::OperatorHold {
                    target,
                    count,
                    at,
                    until: at + ctx.operator_hold_ms,
                });
            }
            if let Some(w) = waiting.filter(|_| !exempt) {
                return Check::Stop(w);
            }
            let wanted = *to;
            if *to > ctx.max {
                *to = ctx.max;
                notes.push(Clamp::Max {
                    max: ctx.max,
                    wanted,
                });
            }
            if *to < ctx.min {
                *to = ctx.min;
                notes.push(Clamp::Min {
                    min: ctx.min,
                    wanted,
                });
            }
            let step = to.abs_diff(*from);
            let limit = b
                .max_step
                .max((*from as u64 * b.max_step_percent as u64).div_ceil(100) as u32);
            let down_limit = b
                .max_step_down
                .max((*from as u64 * b.max_step_down_percent as u64).div_ceil(100) as u32)
                .min(limit);
            if !up && step > down_limit && !ctx.to_zero_when_idle {
                let before = *to;
                *to = *from - down_limit;
                notes.push(Clamp::StepDown {
                    limit: down_limit,
                    max_step_down: b.max_step_down,
                    max_step_down_percent: b.max_step_down_percent,
                    wanted: before,
                });
            } else if step > limit {
                let before = *to;
                *to = if up { *from + limit } else { *from - limit };
                notes.push(Clamp::Step {
                    limit,
                    max_step: b.max_step,
                    max_step_percent: b.max_step_percent,
                    wanted: before,
                });
            }
            if *to == *from {
                return Check::Stop(StopReason::AtBound {
                    target,
                    up,
                    limit: if up { ctx.max } else { ctx.min },
                    wanted,
                });
            }
        }
        Action::Drain { name, .. } | Action::Sleep { name, .. } => {
            if ctx.ready_nodes <= 1 {
                return Check::Stop(StopReason::LastReadyNode { name: name.clone() });
            }
        }
        Action::Undrain { .. } | Action::Rollback { .. } | Action::Wake { .. } => {}
    }
    if ctx.recent_decisions >= b.per_minute && !ctx.on_demand {
        return Check::Stop(StopReason::RateLimit {
            per_minute: b.per_minute,
        });
    }
    Check::Go { notes }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scale(from: u32, to: u32) -> Action {
        Action::Scale {
            blueprint: "shop".into(),
            slice: "web".into(),
            from,
            to,
        }
    }

    fn ctx() -> Context {
        Context {
            now: 10_000_000,
            min: 1,
            max: 8,
            ready_nodes: 3,
            up_cooldown_ms: 30_000,
            down_cooldown_ms: 180_000,
            ..Context::default()
        }
    }

    const B: Bounds = Bounds {
        max_step: 3,
        max_step_percent: 50,
        max_step_down: 3,
        max_step_down_percent: 50,
        per_minute: 6,
        veto_cooldown_ms: 900_000,
    };

    #[test]
    fn bounds_clamp_or_stop_and_say_why() {
        type Case = (
            &'static str,
            Action,
            fn(&mut Context),
            Result<u32, &'static str>,
        );
        let drain = Action::Drain {
            node: 2,
            name: "n2".into(),
        };
        let cases: Vec<Case> = vec![
            ("within bounds", scale(2, 4), |_| {}, Ok(4)),
            ("clamped to max", scale(7, 12), |_| {}, Ok(8)),
            ("clamped to a step", scale(2, 7), |_| {}, Ok(5)),
            (
                "a percentage step when larger",
                scale(8, 20),
                |c| c.max = 40,
                Ok(12),
            ),
            ("clamped to min", scale(3, 0), |_| {}, Ok(1)),
            (
                "at max already",
                scale(8, 10),
                |_| {},
                Err("at max=8 already"),
            ),
            (
                "vetoed lately",
                scale(2, 4),
                |c| c.vetoed = Some(("d-41".into(), c.now - 720_000)),
                Err("operator vetoed d-41 12m0s ago; no scale_up on shop/web for another 3m0s"),
            ),
            (
                "veto long ago",
                scale(2, 4),
                |c| c.vetoed = Some(("d-41".into(), c.now - 3_600_000)),
                Ok(4),
            ),
            (
                "converging",
                scale(2, 4),
                |c| c.converging = Some("d-7: 3 of 4 active".into()),
                Err("still converging: d-7: 3 of 4 active"),
            ),
            (
                "up cooldown",
                scale(2, 4),
                |c| c.last_up = Some(c.now - 10_000),
                Err("scale-up cooldown"),
            ),
            (
                "down cooldown after an up",
                scale(4, 2),
                |c| c.last_change = Some(c.now - 60_000),
                Err("scale-down cooldown"),
            ),
            (
                "rate limit",
                scale(2, 4),
                |c| c.recent_decisions = 6,
                Err("limit of 6 decisions a minute"),
            ),
            (
                "last ready node",
                drain.clone(),
                |c| c.ready_nodes = 1,
                Err("last ready node"),
            ),
            ("drain with others ready", drain.clone(), |_| {}, Ok(0)),
            (
                "on demand: no converging, cooldown or rate limit",
                scale(0, 1),
                |c| {
                    c.min = 0;
                    c.on_demand = true;
                    c.converging = Some("d-7: 1 of 0 instances active".into());
                    c.last_up = Some(c.now - 1_000);
                    c.last_change = Some(c.now - 1_000);
                    c.recent_decisions = 60;
                },
                Ok(1),
            ),
            (
                "on demand, but vetoed",
                scale(0, 1),
                |c| {
                    c.min = 0;
                    c.on_demand = true;
                    c.vetoed = Some(("d-41".into(), c.now - 60_000));
                },
                Err("operator vetoed d-41"),
            ),
            (
                "on demand, but max = 0",
                scale(0, 1),
                |c| {
                    (c.min, c.max) = (0, 0);
                    c.on_demand = true;
                },
                Err("at max=0 already"),
            ),
        ];
        for (what, mut action, setup, want) in cases {
            let mut c = ctx();
            setup(&mut c);
            let got = check(&mut action, &c, &B);
            match (want, got) {
                (Ok(n), Check::Go { notes }) => {
                    if let Action::Scale { to, .. } = action {
                        assert_eq!(to, n, "{what}: {notes:?}");
                    }
                    if what.starts_with("clamped") {
                        assert!(
                            notes.iter().any(|n| n.to_string().starts_with("clamped")),
                            "{what}: the clamp is in the reasoning: {notes:?}"
                        );
                    }
                }
                (Err(msg), Check::Stop(reason)) => {
                    let text = reason.to_string();
                    assert!(text.contains(msg), "{what}: {text}")
                }
                (want, got) => panic!("{what}: wanted {want:?}, got {got:?}"),
            }
        }
    }

    /// Each reason's text, word for word (decisions record it), and whether it is recorded.
    #[test]
    fn stop_reasons_keep_their_text_and_say_whether_they_are_recorded() {
        let stop = |mut a: Action, setup: fn(&mut Context)| {
            let mut c = ctx();
            setup(&mut c);
            match check(&mut a, &c, &B) {
                Check::Stop(r) => (r.to_string(), r.recorded()),
                Check::Go { notes } => panic!("went ahead: {notes:?}"),
            }
        };
        let drain = Action::Drain {
            node: 2,
            name: "n2".into(),
        };
        type Case = (Action, fn(&mut Context), &'static str, bool);
        let cases: Vec<Case> = vec![
            (
                scale(2, 4),
                |c| c.vetoed = Some(("d-41".into(), c.now - 720_000)),
                "operator vetoed d-41 12m0s ago; no scale_up on shop/web for another 3m0s",
                true,
            ),
            (
                scale(2, 4),
                |c| c.converging = Some("d-7: 3 of 4 instances active".into()),
                "shop/web is still converging: d-7: 3 of 4 instances active",
                false,
            ),
            (
                scale(2, 4),
                |c| c.last_up = Some(c.now - 10_000),
                "scale-up cooldown: last change 10s ago, waits 30s",
                false,
            ),
            (
                scale(4, 2),
                |c| c.last_change = Some(c.now - 60_000),
                "scale-down cooldown: last change 1m0s ago, waits 3m0s",
                false,
            ),
            (
                scale(8, 10),
                |_| {},
                "shop/web is at max=8 already (wanted 10)",
                true,
            ),
            (
                scale(1, 0),
                |_| {},
                "shop/web is at min=1 already (wanted 0)",
                true,
            ),
            (
                drain,
                |c| c.ready_nodes = 1,
                "n2 is the last ready node: never drained",
                true,
            ),
            (
                scale(2, 4),
                |c| c.recent_decisions = 6,
                "the cluster-wide limit of 6 decisions a minute is reached",
                false,
            ),
        ];
        for (action, setup, text, recorded) in cases {
            assert_eq!(stop(action, setup), (text.to_string(), recorded));
        }
    }

    #[test]
    fn a_clamp_names_the_bound() {
        let mut a = scale(7, 12);
        let Check::Go { notes } = check(&mut a, &ctx(), &B) else {
            panic!("stopped")
        };
        assert_eq!(notes, vec![Clamp::Max { max: 8, wanted: 12 }]);
        assert_eq!(notes[0].to_string(), "clamped to max=8 (wanted 12)");
        let mut a = scale(2, 7);
        let Check::Go { notes } = check(&mut a, &ctx(), &B) else {
            panic!("stopped")
        };
        assert_eq!(
            notes.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            vec!["clamped to a step of 3 (max_step=3, max_step_percent=50; wanted 7)"]
        );
    }

    #[test]
    fn applied_actions_newest_first_set_the_last_change_and_the_last_scale_up() {
        let mut c = Context::default();
        assert!(c.applied(30, false), "the newest");
        assert!(!c.applied(20, true));
        assert!(!c.applied(10, true));
        assert_eq!((c.last_change, c.last_up), (Some(30), Some(20)));
    }

    #[test]
    fn a_scale_to_zero_when_idle_waited_its_idle_time_not_the_down_cooldown() {
        let mut c = ctx();
        c.min = 0;
        c.last_change = Some(c.now - 10_000);
        let mut a = scale(1, 0);
        assert!(
            matches!(
                check(&mut a, &c, &B),
                Check::Stop(StopReason::Cooldown { up: false, .. })
            ),
            "a rule's scale-in waits for the down cooldown"
        );
        c.to_zero_when_idle = true;
        let mut a = scale(1, 0);
        assert!(matches!(check(&mut a, &c, &B), Check::Go { .. }));
        // Not a scale-up's cooldown, though.
        let mut up = scale(1, 2);
        c.last_up = Some(c.now - 10_000);
        assert!(matches!(
            check(&mut up, &c, &B),
            Check::Stop(StopReason::Cooldown { up: true, .. })
        ));
    }
}
