//! Safety bounds (DESIGN §9): the last word before a proposal becomes a decision. Pure.
//!
//! In order: an operator's recent veto of the same action on the target, the target still
//! converging from the previous action, the cooldowns, never draining the last ready node,
//! min/max, the largest step, the cluster-wide rate limit. A bound that changes the proposal
//! says so in the returned notes (`clamped to max=8`); one that stops it says why.

use crate::domain::{Action, Millis, human_millis};

/// The configured bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounds {
    /// Most instances one decision adds or removes: this many, or `max_step_percent` of the
    /// current count when that is more (the HPA's default policy is 4 pods or 100 %).
    pub max_step: u32,
    pub max_step_percent: u32,
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
    /// Decisions recorded in the last minute, cluster-wide.
    pub recent_decisions: u32,
    /// Ready members, the target included.
    pub ready_nodes: u32,
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
    Go { notes: Vec<String> },
    /// Not now. `record`: worth a `rejected` decision (an operator would want to see it), as
    /// opposed to the quiet waits (converging, cooldown).
    Stop { reason: String, record: bool },
}

fn stop(reason: String, record: bool) -> Check {
    Check::Stop { reason, record }
}

/// Check `action` against the bounds, clamping it in place.
pub fn check(action: &mut Action, ctx: &Context, b: &Bounds) -> Check {
    let verb = action.verb();
    let target = action.target();
    if let Some((id, at)) = &ctx.vetoed {
        let ago = ctx.now.saturating_sub(*at);
        if ago < b.veto_cooldown_ms {
            return stop(
                format!(
                    "operator vetoed {id} {} ago; no {verb} on {target} for another {}",
                    human_millis(ago),
                    human_millis(b.veto_cooldown_ms - ago)
                ),
                true,
            );
        }
    }
    if let Some(why) = &ctx.converging {
        return stop(format!("{target} is still converging: {why}"), false);
    }
    let mut notes = Vec::new();
    match action {
        Action::Scale { from, to, .. } => {
            let up = *to > *from;
            let cooldown = |since: Option<Millis>, len: u64, what: &str| {
                since
                    .map(|at| ctx.now.saturating_sub(at))
                    .filter(|ago| *ago < len)
                    .map(|ago| {
                        format!(
                            "{what} cooldown: last change {} ago, waits {}",
                            human_millis(ago),
                            human_millis(len)
                        )
                    })
            };
            let waiting = if up {
                cooldown(ctx.last_up, ctx.up_cooldown_ms, "scale-up")
            } else {
                cooldown(ctx.last_change, ctx.down_cooldown_ms, "scale-down")
            };
            if let Some(w) = waiting {
                return stop(w, false);
            }
            let wanted = *to;
            if *to > ctx.max {
                *to = ctx.max;
                notes.push(format!("clamped to max={} (wanted {wanted})", ctx.max));
            }
            if *to < ctx.min {
                *to = ctx.min;
                notes.push(format!("clamped to min={} (wanted {wanted})", ctx.min));
            }
            let step = to.abs_diff(*from);
            let limit = b
                .max_step
                .max((*from as u64 * b.max_step_percent as u64).div_ceil(100) as u32);
            if step > limit {
                let before = *to;
                *to = if up { *from + limit } else { *from - limit };
                notes.push(format!(
                    "clamped to a step of {limit} (max_step={}, max_step_percent={}; wanted {before})",
                    b.max_step, b.max_step_percent
                ));
            }
            if *to == *from {
                let bound = if up {
                    format!("max={}", ctx.max)
                } else {
                    format!("min={}", ctx.min)
                };
                return stop(
                    format!("{target} is at {bound} already (wanted {wanted})"),
                    true,
                );
            }
        }
        Action::Drain { name, .. } => {
            if ctx.ready_nodes <= 1 {
                return stop(
                    format!("{name} is the last ready node: never drained"),
                    true,
                );
            }
        }
        Action::Undrain { .. } => {}
    }
    if ctx.recent_decisions >= b.per_minute {
        return stop(
            format!(
                "the cluster-wide limit of {} decisions a minute is reached",
                b.per_minute
            ),
            false,
        );
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
            ("drain with others ready", drain, |_| {}, Ok(0)),
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
                            notes.iter().any(|n| n.starts_with("clamped")),
                            "{what}: the clamp is in the reasoning: {notes:?}"
                        );
                    }
                }
                (Err(msg), Check::Stop { reason, .. }) => {
                    assert!(reason.contains(msg), "{what}: {reason}")
                }
                (want, got) => panic!("{what}: wanted {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn a_clamp_names_the_bound() {
        let mut a = scale(7, 12);
        let Check::Go { notes } = check(&mut a, &ctx(), &B) else {
            panic!("stopped")
        };
        assert_eq!(notes, vec!["clamped to max=8 (wanted 12)".to_string()]);
    }

    #[test]
    fn applied_actions_newest_first_set_the_last_change_and_the_last_scale_up() {
        let mut c = Context::default();
        assert!(c.applied(30, false), "the newest");
        assert!(!c.applied(20, true));
        assert!(!c.applied(10, true));
        assert_eq!((c.last_change, c.last_up), (Some(30), Some(20)));
    }
}
