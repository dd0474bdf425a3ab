//! The decision policy (DESIGN §9), pure: from the world, the replicated decisions, the
//! settings and the time to what the leader writes. No Raft, no runtime, no clock, no I/O; the
//! loop ([`super::flow`]) reads the inputs, writes the returned [`Command`]s in order (a failed
//! write ends the tick) and runs the reviewer.
//!
//! One leader tick, in the loop's order:
//!
//! 1. [`advance`]: open decisions at their deadline are applied (or expire when paused), old
//!    proposals expire;
//! 2. [`judge`]: per applied scale decision, whether it converged and moved its metric as
//!    intended (an [`Outcome`]);
//! 3. per proposal of the brain (skipped while paused; it looks [`lead_secs`] ahead):
//!    [`screen`] (an open decision on the target stands or is superseded; the safety bounds
//!    over the [`context`] of the target), then the reviewer's verdict if it wants one, then
//!    [`conclude`]: the decision to record, its status set by the mode.
//!
//! [`context`] is the one builder of a target's [`safety::Context`]; the simulator
//! (`benches/controller.rs`) uses it too.

use std::collections::HashMap;

use super::brain::Proposal;
use super::review::Verdict;
use super::rules::{self, Metric};
use super::safety::{self, Bounds, Check, StopReason};
use super::world::World;
use crate::config::ControllerConfig;
use crate::domain::{
    Action, ControlState, ControllerMode, Decision, DecisionStatus, Millis, NodeState, Outcome,
    ReviewRecord, human_millis,
};

/// A rejected proposal is recorded again for the same target and action only after this long.
pub const REJECT_QUIET_MS: u64 = 300_000;
/// Decisions count towards the rate limit for this long.
const RATE_WINDOW_MS: u64 = 60_000;

/// What the policy needs besides the world and the decisions: `[controller]` and the rule
/// settings, in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub bounds: Bounds,
    /// `controller.grace`: guarded mode's window when the replicated state sets none.
    pub grace_ms: u64,
    /// `controller.interval`: one tick.
    pub interval_ms: u64,
    /// `controller.proposal_ttl`: how long a proposal waits for an operator.
    pub proposal_ttl_ms: u64,
    /// `controller.converge_timeout`: an applied decision older than this no longer holds its
    /// target back as converging, and is judged `did not converge` if it has not.
    pub converge_timeout_ms: u64,
    /// `controller.outcome_after`: how long after converging an outcome is judged.
    pub outcome_after_ms: u64,
    /// The rule file's settings: cooldowns, target CPU, tolerance.
    pub rules: rules::Settings,
}

impl Settings {
    /// The settings `[controller]` and the rule file give.
    pub fn new(cfg: &ControllerConfig, rules: &rules::Settings) -> Settings {
        let ms = |d: std::time::Duration| d.as_millis() as u64;
        Settings {
            bounds: Bounds::from_config(cfg),
            grace_ms: ms(cfg.grace.0),
            interval_ms: ms(cfg.interval.0),
            proposal_ttl_ms: ms(cfg.proposal_ttl.0),
            converge_timeout_ms: ms(cfg.converge_timeout.0),
            outcome_after_ms: ms(cfg.outcome_after.0),
            rules: rules.clone(),
        }
    }

    /// The grace window of guarded mode: the replicated one, else `controller.grace`.
    pub fn grace_ms(&self, c: &ControlState) -> u64 {
        c.grace_ms.unwrap_or(self.grace_ms)
    }
}

/// A write the policy asks for, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Apply a pending decision at its deadline (the state machine refuses it if it was vetoed
    /// or closed meanwhile).
    Apply { id: u64, action: Action },
    /// Close an open decision (expired, superseded).
    Close { id: u64, status: DecisionStatus },
    /// Record how an applied decision turned out.
    Outcome { id: u64, outcome: Outcome },
    /// Record a new decision; `apply`: apply it at once (mode `auto`).
    Record {
        decision: Box<Decision>,
        apply: bool,
    },
}

/// Apply pending decisions whose deadline passed (expire them instead while paused); expire
/// proposals not approved within `proposal_ttl`.
pub fn advance(
    decisions: &[Decision],
    control: &ControlState,
    now: Millis,
    s: &Settings,
) -> Vec<Command> {
    let mut out = Vec::new();
    for d in decisions.iter().filter(|d| d.status.is_open()) {
        match d.status {
            DecisionStatus::Pending { deadline } if now >= deadline => {
                if control.paused.is_some() {
                    let reason = "the controller was paused at its grace deadline".into();
                    out.push(Command::Close {
                        id: d.id,
                        status: DecisionStatus::Expired { reason },
                    });
                    continue;
                }
                out.push(Command::Apply {
                    id: d.id,
                    action: d.action.clone(),
                });
            }
            DecisionStatus::Proposed if now.saturating_sub(d.at) > s.proposal_ttl_ms => {
                let reason = format!("not approved within {}", human_millis(s.proposal_ttl_ms));
                out.push(Command::Close {
                    id: d.id,
                    status: DecisionStatus::Expired { reason },
                });
            }
            _ => {}
        }
    }
    out
}

/// Judge one decision's outcome, if it is an applied scale decision without one: `did not
/// converge` past the converge timeout; once it converged and `outcome_after` passed, whether
/// the slice's CPU per instance moved as intended. `converged_at` is the leader's memory of when
/// each decision was first seen converged (the loop forgets an entry once its outcome is
/// written); a scale-up seen converged for the first time feeds its start-up time into
/// `startup_ms` (a moving average).
pub fn judge(
    d: &Decision,
    world: &World,
    converged_at: &mut HashMap<u64, Millis>,
    startup_ms: &mut u64,
    s: &Settings,
) -> Option<Outcome> {
    let now = world.now;
    if d.outcome.is_some() {
        return None;
    }
    let DecisionStatus::Applied { at: applied, .. } = d.status else {
        return None;
    };
    let Action::Scale {
        blueprint,
        slice,
        from,
        to,
    } = &d.action
    else {
        return None;
    };
    let sv = world
        .slices
        .iter()
        .find(|sv| &sv.blueprint == blueprint && &sv.slice == slice)?;
    let converged = sv.active == *to && sv.desired == *to;
    if !converged && !converged_at.contains_key(&d.id) {
        if now.saturating_sub(applied) > s.converge_timeout_ms {
            return Some(Outcome {
                at: now,
                verdict: "did not converge".into(),
                detail: format!(
                    "{} of {to} instances active after {}",
                    sv.active,
                    human_millis(now - applied)
                ),
            });
        }
        return None;
    }
    let since = *converged_at.entry(d.id).or_insert_with(|| {
        if to > from {
            let measured = now.saturating_sub(applied);
            *startup_ms = (*startup_ms * 3 + measured) / 4;
        }
        now
    });
    if now.saturating_sub(since) < s.outcome_after_ms {
        return None;
    }
    let input = |name: &str| -> Option<f64> {
        d.inputs
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.parse().ok())
    };
    let before = input("cpu_per_instance");
    // The target the decision was made against; the slice's current one if the decision did
    // not record it.
    let target = input("target_cpu").unwrap_or(sv.target_cpu.unwrap_or(s.rules.target_cpu));
    let limit = target * (1.0 + s.rules.tolerance);
    let now_v = sv.value(Metric::CpuPerInstance);
    let (verdict, detail) = match (before, now_v) {
        (_, None) => ("unknown", "no CPU sample of the slice".to_string()),
        (Some(b), Some(v)) if to > from => (
            if v < b || v <= limit {
                "as intended"
            } else {
                "not as intended"
            },
            format!("cpu per instance {b:.2} → {v:.2} (target {target:.2}) with {to} instances"),
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
    Some(Outcome {
        at: now,
        verdict: verdict.into(),
        detail,
    })
}

/// Seconds ahead a scale-up must look: the start-up time, the grace window in guarded mode,
/// and one tick.
pub fn lead_secs(control: &ControlState, startup_ms: u64, s: &Settings) -> u64 {
    let grace = if control.mode == ControllerMode::Guarded {
        s.grace_ms(control)
    } else {
        0
    };
    (startup_ms + grace + s.interval_ms).div_ceil(1000)
}

/// Decisions (newest first) that count towards the rate limit at `now`: the last minute's,
/// rejections aside.
pub fn recent<'a>(decisions: impl IntoIterator<Item = &'a Decision>, now: Millis) -> u32 {
    decisions
        .into_iter()
        .filter(|d| {
            now.saturating_sub(d.at) < RATE_WINDOW_MS
                && !matches!(d.status, DecisionStatus::Rejected { .. })
        })
        .count() as u32
}

/// Whether two actions are on the same target (`Action::target` without building the text).
fn same_target(a: &Action, b: &Action) -> bool {
    match (a, b) {
        (
            Action::Scale {
                blueprint: b1,
                slice: s1,
                ..
            },
            Action::Scale {
                blueprint: b2,
                slice: s2,
                ..
            },
        ) => b1 == b2 && s1 == s2,
        (
            Action::Drain { name: n1, .. } | Action::Undrain { name: n1, .. },
            Action::Drain { name: n2, .. } | Action::Undrain { name: n2, .. },
        ) => n1 == n2,
        _ => false,
    }
}

/// The safety context of `action`'s target, from the world and the decisions (newest first):
/// the slice's min, max and cooldowns (the rule settings' unless the blueprint sets them), the
/// ready members, the newest veto of the same action, the last scale-up and the last change,
/// and whether the newest applied action is still converging; `recent` decisions count towards
/// the rate limit.
pub fn context<'a>(
    action: &Action,
    world: &World,
    decisions: impl IntoIterator<Item = &'a Decision>,
    recent: u32,
    s: &Settings,
) -> safety::Context {
    let verb = action.verb();
    let mut c = safety::Context {
        now: world.now,
        ready_nodes: world
            .nodes
            .iter()
            .filter(|n| n.state == NodeState::Ready)
            .count() as u32,
        up_cooldown_ms: s.rules.up_cooldown_secs * 1000,
        down_cooldown_ms: s.rules.down_cooldown_secs * 1000,
        recent_decisions: recent,
        ..safety::Context::default()
    };
    if let Action::Scale {
        blueprint, slice, ..
    } = action
        && let Some(sv) = world
            .slices
            .iter()
            .find(|sv| &sv.blueprint == blueprint && &sv.slice == slice)
    {
        c.min = sv.min;
        c.max = sv.max;
        if let Some(u) = sv.up_cooldown_ms {
            c.up_cooldown_ms = u;
        }
        if let Some(d) = sv.down_cooldown_ms {
            c.down_cooldown_ms = d;
        }
    }
    for d in decisions
        .into_iter()
        .filter(|d| same_target(&d.action, action))
    {
        match &d.status {
            DecisionStatus::Vetoed { at, .. } if d.action.verb() == verb && c.vetoed.is_none() => {
                c.vetoed = Some((d.name(), *at));
            }
            DecisionStatus::Applied { at, .. } => {
                let newest = c.applied(*at, d.action.verb() == "scale_up");
                if newest && world.now.saturating_sub(*at) < s.converge_timeout_ms {
                    c.converging = converging(d, world);
                }
            }
            _ => {}
        }
    }
    c
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

/// What becomes of one proposal before the reviewer.
#[derive(Debug, Clone, PartialEq)]
pub struct Screened {
    /// The open decision on the target that the proposal replaces, to close first.
    pub close: Option<Command>,
    pub next: Next,
}

/// The proposal's way on after [`screen`].
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// The open decision on the target stands (the same action, in the same way): nothing.
    Stands,
    /// Held back quietly by the safety bounds (a wait, not worth a decision).
    Held { action: Action, reason: StopReason },
    /// Stopped by the bounds, but a rejection of it was recorded within the quiet period.
    Quiet,
    /// To be recorded: after the reviewer (if there is one and [`Candidate::wants_review`]),
    /// by [`conclude`].
    Candidate(Candidate),
}

/// A proposal through the safety bounds, on its way to becoming a decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The proposal as the bounds left it (clamped, with their notes in its reasoning).
    pub proposal: Proposal,
    /// The context it was checked in (an adjustment by the reviewer is checked again in it).
    ctx: safety::Context,
    /// Set when the bounds rejected it (recorded as rejected, without a review).
    rejected: Option<String>,
}

impl Candidate {
    /// Whether the reviewer has a say (the bounds did not reject it already).
    pub fn wants_review(&self) -> bool {
        self.rejected.is_none()
    }
}

/// Screen one proposal: an open decision on its target stands while the same action is wanted
/// the same way (an opposite one, or a change of mode between asking an operator and not, is
/// closed as superseded); then the safety bounds over the target's [`context`], with `recent`
/// decisions towards the rate limit. A recorded stop is recorded once per [`REJECT_QUIET_MS`].
pub fn screen(
    mut p: Proposal,
    world: &World,
    decisions: &[Decision],
    control: &ControlState,
    recent: u32,
    s: &Settings,
) -> Screened {
    let verb = p.action.verb();
    let mut close = None;
    if let Some(open) = decisions
        .iter()
        .find(|d| d.status.is_open() && same_target(&d.action, &p.action))
    {
        let waits_for_operator = matches!(open.status, DecisionStatus::Proposed);
        let mode_wants_operator = matches!(
            control.mode,
            ControllerMode::Observe | ControllerMode::Propose
        );
        if open.action.verb() == verb && waits_for_operator == mode_wants_operator {
            return Screened {
                close: None,
                next: Next::Stands,
            };
        }
        let reason = if open.action.verb() == verb {
            format!("the mode is {} now; proposed again", control.mode)
        } else {
            format!("the load changed: now proposing {}", p.action)
        };
        close = Some(Command::Close {
            id: open.id,
            status: DecisionStatus::Superseded { reason },
        });
    }
    let ctx = context(&p.action, world, decisions, recent, s);
    if let Some((id, at)) = &ctx.vetoed
        && world.now.saturating_sub(*at) >= s.bounds.veto_cooldown_ms
    {
        p.reasoning.push(format!(
            "operator vetoed {id} {} ago (cooldown over)",
            human_millis(world.now - at)
        ));
    }
    p.layers.push("safety".into());
    let rejected = match safety::check(&mut p.action, &ctx, &s.bounds) {
        Check::Go { notes } => {
            p.reasoning.extend(notes);
            None
        }
        Check::Stop(reason) => {
            if !reason.recorded() {
                let next = Next::Held {
                    action: p.action,
                    reason,
                };
                return Screened { close, next };
            }
            let target = p.action.target();
            let quiet = decisions.iter().any(|d| {
                matches!(d.status, DecisionStatus::Rejected { .. })
                    && d.action.target() == target
                    && d.action.verb() == verb
                    && world.now.saturating_sub(d.at) < REJECT_QUIET_MS
            });
            if quiet {
                return Screened {
                    close,
                    next: Next::Quiet,
                };
            }
            p.reasoning
                .push(format!("stopped by the safety bounds: {reason}"));
            Some(reason.to_string())
        }
    };
    let next = Next::Candidate(Candidate {
        proposal: p,
        ctx,
        rejected,
    });
    Screened { close, next }
}

/// Turn a candidate into the decision to record: the reviewer's record and verdict if it had
/// its say (a reject rejects, an adjustment goes through the bounds again), the status by the
/// mode otherwise (observe/propose: proposed; guarded: pending until the grace deadline; auto:
/// pending until now, and applied at once). `by` is the leader's name.
pub fn conclude(
    c: Candidate,
    review: Option<(ReviewRecord, Option<Verdict>)>,
    world: &World,
    control: &ControlState,
    by: &str,
    s: &Settings,
) -> Command {
    let Candidate {
        proposal: mut p,
        ctx,
        rejected,
    } = c;
    let mut status = rejected.map(|reason| DecisionStatus::Rejected { reason });
    let mut record = None;
    if status.is_none()
        && let Some((rec, verdict)) = review
    {
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
                match safety::check(&mut p.action, &ctx, &s.bounds) {
                    Check::Go { notes } => p.reasoning.extend(notes),
                    Check::Stop(reason) => {
                        status = Some(DecisionStatus::Rejected {
                            reason: format!("the reviewer's adjustment is out of bounds: {reason}"),
                        })
                    }
                }
            }
            _ => {}
        }
        record = Some(rec);
    }
    let status = status.unwrap_or(match control.mode {
        ControllerMode::Observe | ControllerMode::Propose => DecisionStatus::Proposed,
        ControllerMode::Guarded => DecisionStatus::Pending {
            deadline: world.now + s.grace_ms(control),
        },
        ControllerMode::Auto => DecisionStatus::Pending {
            deadline: world.now,
        },
    });
    let apply = status.is_open() && control.mode == ControllerMode::Auto;
    Command::Record {
        decision: Box::new(Decision {
            id: 0,
            at: world.now,
            by: by.to_string(),
            mode: control.mode,
            layers: p.layers,
            action: p.action,
            rule: p.rule,
            reasoning: p.reasoning,
            inputs: p.inputs,
            review: record,
            status,
            timeline: Vec::new(),
            outcome: None,
        }),
        apply,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::world::{NodeView, SliceView};
    use crate::domain::Pause;

    const NOW: Millis = 10_000_000;

    fn settings() -> Settings {
        Settings {
            bounds: Bounds {
                max_step: 3,
                max_step_percent: 50,
                per_minute: 6,
                veto_cooldown_ms: 900_000,
            },
            grace_ms: 30_000,
            interval_ms: 1_000,
            proposal_ttl_ms: 600_000,
            converge_timeout_ms: 300_000,
            outcome_after_ms: 60_000,
            rules: rules::Settings::default(),
        }
    }

    fn slice(desired: u32, active: u32) -> SliceView {
        SliceView {
            blueprint: "shop".into(),
            slice: "web".into(),
            desired,
            min: 1,
            max: 8,
            active,
            cpu_reserved: 1.0,
            cpu_used: Some(active as f64 * 0.5),
            calls_per_s: None,
            latency_ms: None,
            target_cpu: None,
            target_latency_ms: None,
            predictive: None,
            up_cooldown_ms: None,
            down_cooldown_ms: None,
        }
    }

    fn node(id: u64, state: NodeState) -> NodeView {
        NodeView {
            id,
            name: format!("n{id}"),
            state,
            live: true,
            cpu: 0.5,
            mem: 0.5,
            gpu_util: None,
            gpu_temp: None,
            anomalies: 0,
            drained_by_controller: false,
        }
    }

    fn world(desired: u32, active: u32) -> World {
        World {
            now: NOW,
            slices: vec![slice(desired, active)],
            nodes: vec![node(1, NodeState::Ready), node(2, NodeState::Ready)],
        }
    }

    fn scale(from: u32, to: u32) -> Action {
        Action::Scale {
            blueprint: "shop".into(),
            slice: "web".into(),
            from,
            to,
        }
    }

    fn proposal(action: Action) -> Proposal {
        Proposal {
            rule: "cpu-high".into(),
            action,
            layers: vec!["rules:cpu-high".into()],
            reasoning: vec!["cpu per instance 0.90 over 0.66 for 30s".into()],
            inputs: vec![("cpu_per_instance".into(), "0.90".into())],
        }
    }

    fn decision(id: u64, at: Millis, action: Action, status: DecisionStatus) -> Decision {
        Decision {
            id,
            at,
            by: "n1".into(),
            mode: ControllerMode::Guarded,
            layers: Vec::new(),
            action,
            rule: "cpu-high".into(),
            reasoning: Vec::new(),
            inputs: Vec::new(),
            review: None,
            status,
            timeline: Vec::new(),
            outcome: None,
        }
    }

    fn applied(id: u64, at: Millis, action: Action) -> Decision {
        let by = "n1".into();
        decision(id, at, action, DecisionStatus::Applied { at, by })
    }

    fn control(mode: ControllerMode) -> ControlState {
        ControlState {
            mode,
            ..ControlState::default()
        }
    }

    fn candidate(s: Screened) -> Candidate {
        match s.next {
            Next::Candidate(c) => c,
            other => panic!("not a candidate: {other:?}"),
        }
    }

    /// Screen and conclude without a reviewer: the recorded decision and whether it is applied
    /// at once.
    fn decide_one(
        p: Proposal,
        w: &World,
        decisions: &[Decision],
        mode: ControllerMode,
    ) -> (Decision, bool) {
        let c = control(mode);
        let s = settings();
        let screened = screen(p, w, decisions, &c, 0, &s);
        match conclude(candidate(screened), None, w, &c, "n1", &s) {
            Command::Record { decision, apply } => (*decision, apply),
            other => panic!("not a record: {other:?}"),
        }
    }

    #[test]
    fn a_scale_up_within_the_bounds_is_decided_by_the_mode() {
        let w = world(2, 2);
        let cases = [
            (ControllerMode::Observe, DecisionStatus::Proposed, false),
            (ControllerMode::Propose, DecisionStatus::Proposed, false),
            (
                ControllerMode::Guarded,
                DecisionStatus::Pending {
                    deadline: NOW + 30_000,
                },
                false,
            ),
            (
                ControllerMode::Auto,
                DecisionStatus::Pending { deadline: NOW },
                true,
            ),
        ];
        for (mode, status, apply_now) in cases {
            let (d, apply) = decide_one(proposal(scale(2, 4)), &w, &[], mode);
            assert_eq!((&d.status, apply), (&status, apply_now), "{mode}");
            assert_eq!(d.action, scale(2, 4), "{mode}");
            assert_eq!((d.mode, d.at, d.by.as_str()), (mode, NOW, "n1"));
            assert_eq!(d.layers, vec!["rules:cpu-high", "safety"], "{mode}");
            assert_eq!(d.review, None);
        }
        // The replicated grace window wins over `controller.grace`.
        let c = ControlState {
            grace_ms: Some(5_000),
            ..control(ControllerMode::Guarded)
        };
        let s = settings();
        let Command::Record { decision, .. } = conclude(
            candidate(screen(proposal(scale(2, 4)), &w, &[], &c, 0, &s)),
            None,
            &w,
            &c,
            "n1",
            &s,
        ) else {
            panic!("not a record")
        };
        assert_eq!(
            decision.status,
            DecisionStatus::Pending {
                deadline: NOW + 5_000
            }
        );
    }

    #[test]
    fn the_bounds_clamp_a_proposal_and_say_so() {
        let (d, _) = decide_one(
            proposal(scale(7, 12)),
            &world(7, 7),
            &[],
            ControllerMode::Auto,
        );
        assert_eq!(d.action, scale(7, 8));
        assert!(d.status.is_open(), "{:?}", d.status);
        assert_eq!(
            d.reasoning.last().map(String::as_str),
            Some("clamped to max=8 (wanted 12)")
        );
    }

    #[test]
    fn a_recorded_stop_is_rejected_once_per_quiet_period() {
        let w = world(8, 8);
        let (d, apply) = decide_one(proposal(scale(8, 10)), &w, &[], ControllerMode::Auto);
        let reason = "shop/web is at max=8 already (wanted 10)";
        assert_eq!(
            d.status,
            DecisionStatus::Rejected {
                reason: reason.into()
            }
        );
        assert!(!apply);
        assert_eq!(
            d.reasoning.last().unwrap(),
            &format!("stopped by the safety bounds: {reason}")
        );
        // Recorded a minute ago: quiet now; six minutes ago: recorded again.
        let c = control(ControllerMode::Auto);
        for (ago, quiet) in [(60_000, true), (360_000, false)] {
            let rejected = DecisionStatus::Rejected {
                reason: reason.into(),
            };
            let earlier = [decision(3, NOW - ago, scale(8, 10), rejected)];
            let s = screen(proposal(scale(8, 10)), &w, &earlier, &c, 0, &settings());
            assert_eq!(s.next == Next::Quiet, quiet, "{ago}: {:?}", s.next);
        }
    }

    #[test]
    fn a_quiet_stop_holds_the_proposal_back_without_a_decision() {
        let w = world(2, 2);
        let c = control(ControllerMode::Auto);
        // Scaled up 10 s ago: the scale-up cooldown (30 s) holds the next one back.
        let earlier = [applied(7, NOW - 10_000, scale(1, 2))];
        let s = screen(proposal(scale(2, 4)), &w, &earlier, &c, 0, &settings());
        assert_eq!(s.close, None);
        assert_eq!(
            s.next,
            Next::Held {
                action: scale(2, 4),
                reason: StopReason::Cooldown {
                    up: true,
                    ago: 10_000,
                    len: 30_000
                }
            }
        );
        // The rate limit counts this tick's decisions too.
        let s = screen(proposal(scale(2, 4)), &w, &[], &c, 6, &settings());
        assert!(
            matches!(
                s.next,
                Next::Held {
                    reason: StopReason::RateLimit { per_minute: 6 },
                    ..
                }
            ),
            "{:?}",
            s.next
        );
    }

    #[test]
    fn an_open_decision_stands_or_is_superseded() {
        let w = world(2, 2);
        let pending = DecisionStatus::Pending {
            deadline: NOW + 10_000,
        };
        let open = [decision(5, NOW - 1_000, scale(2, 4), pending)];
        let guarded = control(ControllerMode::Guarded);
        let s = screen(proposal(scale(2, 4)), &w, &open, &guarded, 0, &settings());
        assert_eq!(
            s,
            Screened {
                close: None,
                next: Next::Stands
            }
        );
        // The opposite action replaces it.
        let s = screen(proposal(scale(2, 1)), &w, &open, &guarded, 0, &settings());
        let reason = "the load changed: now proposing scale shop/web 2 → 1".to_string();
        assert_eq!(
            s.close,
            Some(Command::Close {
                id: 5,
                status: DecisionStatus::Superseded { reason }
            })
        );
        assert!(matches!(s.next, Next::Candidate(_)));
        // The same action, but the mode now asks an operator: proposed again.
        let propose = control(ControllerMode::Propose);
        let s = screen(proposal(scale(2, 4)), &w, &open, &propose, 0, &settings());
        let reason = "the mode is propose now; proposed again".to_string();
        assert_eq!(
            s.close,
            Some(Command::Close {
                id: 5,
                status: DecisionStatus::Superseded { reason }
            })
        );
    }

    #[test]
    fn the_safety_context_comes_from_the_decisions_newest_first() {
        let mut w = world(4, 3);
        w.nodes.push(node(3, NodeState::Draining));
        w.slices[0].down_cooldown_ms = Some(60_000);
        let vetoed = DecisionStatus::Vetoed {
            at: NOW - 100_000,
            by: "op".into(),
            reason: None,
            reverted: None,
        };
        let decisions = [
            applied(9, NOW - 20_000, scale(3, 4)),
            decision(8, NOW - 200_000, scale(2, 5), vetoed),
            applied(6, NOW - 400_000, scale(4, 3)),
            applied(4, NOW - 500_000, scale(2, 4)),
            // Another target: not this one's.
            applied(
                2,
                NOW - 1_000,
                Action::Drain {
                    node: 3,
                    name: "n3".into(),
                },
            ),
        ];
        let c = context(&scale(4, 6), &w, &decisions, 2, &settings());
        let want = safety::Context {
            now: NOW,
            min: 1,
            max: 8,
            converging: Some("d-9: 3 of 4 instances active".into()),
            vetoed: Some(("d-8".into(), NOW - 100_000)),
            last_up: Some(NOW - 20_000),
            last_change: Some(NOW - 20_000),
            up_cooldown_ms: 30_000,
            down_cooldown_ms: 60_000,
            recent_decisions: 2,
            ready_nodes: 2,
        };
        assert_eq!(c, want);
        // Past the converge timeout the newest no longer counts as converging; a scale-down
        // is not held back by a veto of scale-ups.
        let old = [applied(9, NOW - 300_000, scale(3, 4)), decisions[1].clone()];
        let c = context(&scale(4, 3), &w, &old, 0, &settings());
        assert_eq!((c.converging, c.vetoed), (None, None));
        // A drain still draining is converging.
        let c = context(&decisions[4].action, &w, &decisions, 0, &settings());
        assert_eq!(c.converging.as_deref(), Some("d-2: n3 is still draining"));
        assert_eq!(recent(&decisions, NOW), 2);
    }

    #[test]
    fn the_reviewer_rejects_or_adjusts_within_the_bounds() {
        let w = world(2, 2);
        let c = control(ControllerMode::Guarded);
        let s = settings();
        let rec = |verdict: &str, adjust_to| ReviewRecord {
            verdict: verdict.into(),
            adjust_to,
            reason: "logs show a deploy".into(),
            reviewer: "fake".into(),
            latency_ms: 12,
        };
        let run = |review: (ReviewRecord, Option<Verdict>)| {
            let cand = candidate(screen(proposal(scale(2, 4)), &w, &[], &c, 0, &s));
            assert!(cand.wants_review());
            match conclude(cand, Some(review), &w, &c, "n1", &s) {
                Command::Record { decision, .. } => *decision,
                other => panic!("{other:?}"),
            }
        };
        let d = run((rec("reject", None), Some(Verdict::Reject)));
        assert_eq!(
            d.status,
            DecisionStatus::Rejected {
                reason: "the reviewer rejected it: logs show a deploy".into()
            }
        );
        assert_eq!(d.layers.last().unwrap(), "review:fake");
        assert_eq!(d.review.unwrap().verdict, "reject");
        let d = run((rec("adjust", Some(3)), Some(Verdict::Adjust(3))));
        assert_eq!((d.action, d.status.is_open()), (scale(2, 3), true));
        // Back to the current count: the bounds stop it.
        let d = run((rec("adjust", Some(2)), Some(Verdict::Adjust(2))));
        assert_eq!(
            d.status,
            DecisionStatus::Rejected {
                reason: "the reviewer's adjustment is out of bounds: shop/web is at min=1 \
                         already (wanted 2)"
                    .into()
            }
        );
        // A timeout: no verdict, the mode decides.
        let d = run((rec("timeout", None), None));
        assert!(d.status.is_open());
        // Rejected by the bounds: no review.
        let cand = candidate(screen(proposal(scale(8, 10)), &world(8, 8), &[], &c, 0, &s));
        assert!(!cand.wants_review());
    }

    #[test]
    fn open_decisions_are_applied_at_their_deadline_or_expire() {
        let s = settings();
        let due = DecisionStatus::Pending { deadline: NOW };
        let later = DecisionStatus::Pending {
            deadline: NOW + 1_000,
        };
        let decisions = [
            decision(4, NOW - 30_000, scale(2, 4), due),
            decision(3, NOW - 1_000, scale(1, 2), later),
            decision(2, NOW - 700_000, scale(5, 6), DecisionStatus::Proposed),
            decision(1, NOW - 100_000, scale(6, 7), DecisionStatus::Proposed),
            applied(0, NOW - 800_000, scale(1, 2)),
        ];
        let expired = |reason: &str| Command::Close {
            id: 2,
            status: DecisionStatus::Expired {
                reason: reason.into(),
            },
        };
        assert_eq!(
            advance(&decisions, &control(ControllerMode::Guarded), NOW, &s),
            vec![
                Command::Apply {
                    id: 4,
                    action: scale(2, 4)
                },
                expired("not approved within 10m0s"),
            ]
        );
        let paused = ControlState {
            paused: Some(Pause {
                by: "op".into(),
                at: NOW - 5_000,
                reason: None,
            }),
            ..control(ControllerMode::Guarded)
        };
        assert_eq!(
            advance(&decisions, &paused, NOW, &s)[0],
            Command::Close {
                id: 4,
                status: DecisionStatus::Expired {
                    reason: "the controller was paused at its grace deadline".into()
                }
            }
        );
    }

    #[test]
    fn outcomes_are_judged_after_converging_or_not_converging() {
        let s = settings();
        let mut d = applied(7, NOW - 20_000, scale(2, 4));
        d.inputs = vec![
            ("cpu_per_instance".into(), "0.90".into()),
            ("target_cpu".into(), "0.60".into()),
        ];
        let mut converged = HashMap::new();
        let mut startup = 10_000;
        // Not converged yet, within the timeout: nothing.
        let w = world(4, 3);
        assert_eq!(judge(&d, &w, &mut converged, &mut startup, &s), None);
        assert!(converged.is_empty());
        // Converged: remembered, and its start-up time (20 s) feeds the average.
        let mut w = world(4, 4);
        assert_eq!(judge(&d, &w, &mut converged, &mut startup, &s), None);
        assert_eq!((converged.get(&7), startup), (Some(&NOW), 12_500));
        // A minute later: 0.90 → 0.50 per instance, as intended.
        w.now = NOW + 60_000;
        let o = judge(&d, &w, &mut converged, &mut startup, &s).expect("an outcome");
        assert_eq!(o.verdict, "as intended");
        assert_eq!(
            o.detail,
            "cpu per instance 0.90 → 0.50 (target 0.60) with 4 instances"
        );
        assert_eq!(startup, 12_500, "measured once");
        // A scale-down that left the instances over the limit: not as intended.
        let mut down = applied(8, NOW - 20_000, scale(4, 2));
        down.inputs = vec![("target_cpu".into(), "0.40".into())];
        let mut w = world(2, 2);
        judge(&down, &w, &mut converged, &mut startup, &s);
        w.now = NOW + 60_000;
        let o = judge(&down, &w, &mut converged, &mut startup, &s).expect("an outcome");
        assert_eq!(o.verdict, "not as intended");
        assert_eq!(
            o.detail,
            "cpu per instance ? → 0.50 (target 0.40, limit 0.44) with 2 instances"
        );
        // Never converged within the timeout.
        let late = applied(9, NOW - 400_000, scale(2, 4));
        let o =
            judge(&late, &world(4, 3), &mut HashMap::new(), &mut startup, &s).expect("an outcome");
        assert_eq!(
            (o.verdict.as_str(), o.detail.as_str()),
            ("did not converge", "3 of 4 instances active after 6m40s")
        );
        // Judged already, or not a scale: nothing.
        let mut done = late.clone();
        done.outcome = Some(o);
        assert_eq!(
            judge(&done, &world(4, 3), &mut HashMap::new(), &mut startup, &s),
            None
        );
    }

    #[test]
    fn the_lead_time_covers_start_up_grace_and_a_tick() {
        let s = settings();
        assert_eq!(lead_secs(&control(ControllerMode::Auto), 20_000, &s), 21);
        assert_eq!(lead_secs(&control(ControllerMode::Guarded), 20_000, &s), 51);
        assert_eq!(lead_secs(&control(ControllerMode::Guarded), 20_400, &s), 52);
    }
}
