//! The decision policy (DESIGN §9), pure: from the world, the replicated decisions, the
//! settings and the time to what the leader writes. No Raft, no runtime, no clock, no I/O; the
//! loop ([`super::flow`]) reads the inputs, writes the returned [`Command`]s in order (a failed
//! write ends the tick) and runs the reviewer.
//!
//! One leader tick, in the loop's order:
//!
//! 1. [`advance`]: open decisions at their deadline are applied (or expire when paused), old
//!    proposals expire, a scale to zero of a slice that received a request since is withdrawn;
//! 2. [`judge`]: per applied scale decision, whether it converged and moved its metric as
//!    intended (an [`Outcome`]);
//! 3. per proposal of the brain (skipped while paused; it looks [`lead_secs`] ahead):
//!    [`screen`] (an open decision on the target stands or is superseded; the safety bounds
//!    over the [`context`] of the target), then the reviewer's verdict if it wants one, then
//!    [`conclude`]: the decision to record, its status set by the mode.
//!
//! A scale from zero on demand (a slice at 0 desired instances with requests waiting at the
//! ingress; the operator declared min = 0, i.e. start on demand) skips the waits of the bounds
//! and the reviewer, and in guarded mode applies at once, without the grace window; in observe
//! and propose mode it stays a proposal like any other.
//!
//! [`context`] is the one builder of a target's [`safety::Context`]; the simulator
//! (`benches/controller.rs`) uses it too.

use std::collections::HashMap;

use super::brain::Proposal;
use super::review::Verdict;
use super::rules::{self, Metric};
use super::safety::{self, Bounds, Check, StopReason};
use super::world::{SliceView, World};
use crate::config::ControllerConfig;
use crate::domain::{
    Action, ControlState, ControllerMode, Decision, DecisionStatus, Millis, NodeState, Outcome,
    ReviewRecord, human_millis,
};

/// A standing stop (a slice capped at its max, a veto, the last ready node) is recorded once; it
/// is recorded again while it lasts only when something material changes (the stop itself, or
/// the wanted count by half or more; see [`said_already`]) or after this long, so that the
/// decision log and the audit trail do not move every tick because of it.
pub const STANDING_RENEW_MS: u64 = 600_000;
/// How long after its last record a capped slice still shows as capped (the renewal period and
/// a minute for the leader to renew it; see [`capped`]).
const CAPPED_SHOWN_MS: u64 = STANDING_RENEW_MS + 60_000;
/// Decisions count towards the rate limit for this long.
const RATE_WINDOW_MS: u64 = 60_000;

/// What the policy needs besides the world and the decisions: `[controller]` and the rule
/// settings, in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The safety bounds `[controller]` sets.
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
    /// `controller.operator_hold`: how long an operator's count holds back a scale-in below
    /// it (at least the target's down cooldown).
    pub operator_hold_ms: u64,
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
            operator_hold_ms: ms(cfg.operator_hold.0),
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
/// proposals not approved within `proposal_ttl`; withdraw (superseded) an open scale to zero
/// of a slice that received a request after it was recorded.
pub fn advance(
    decisions: &[Decision],
    control: &ControlState,
    world: &World,
    s: &Settings,
) -> Vec<Command> {
    let now = world.now;
    let mut out = Vec::new();
    for d in decisions.iter().filter(|d| d.status.is_open()) {
        if let Some(why) = woken(d, world) {
            out.push(Command::Close {
                id: d.id,
                status: DecisionStatus::Superseded { reason: why },
            });
            continue;
        }
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

/// Why an open scale to zero no longer holds: its slice received a request after it was
/// recorded (or has one waiting).
fn woken(d: &Decision, world: &World) -> Option<String> {
    let Action::Scale {
        blueprint,
        slice,
        to: 0,
        ..
    } = &d.action
    else {
        return None;
    };
    let sv = slice_of(world, blueprint, slice)?;
    if sv.waiting > 0 {
        return Some(format!(
            "{} request(s) waiting at the ingress: no longer idle",
            sv.waiting
        ));
    }
    let at = sv.last_call_at.filter(|at| *at > d.at)?;
    Some(format!(
        "a request came {} after it was decided: no longer idle",
        human_millis(at - d.at)
    ))
}

fn slice_of<'a>(world: &'a World, blueprint: &str, slice: &str) -> Option<&'a SliceView> {
    world
        .slices
        .iter()
        .find(|sv| sv.blueprint == blueprint && sv.slice == slice)
}

/// Whether `action` is a scale from zero on demand: a scale-up of a slice at zero with
/// requests waiting at the ingress. The number waiting, if it is.
pub fn on_demand(action: &Action, world: &World) -> Option<u32> {
    let Action::Scale {
        blueprint,
        slice,
        from: 0,
        to,
    } = action
    else {
        return None;
    };
    let sv = slice_of(world, blueprint, slice)?;
    (*to > 0 && sv.desired == 0 && sv.waiting > 0).then_some(sv.waiting)
}

/// The input a decision records a per-instance metric under, and its target's.
fn input_keys(m: Metric) -> (&'static str, &'static str) {
    match m {
        Metric::CallsPerInstance => ("calls_per_instance", "target_calls_per_instance"),
        Metric::LatencyMs => ("latency_p95_ms", "target_latency_ms"),
        _ => ("cpu_per_instance", "target_cpu"),
    }
}

/// Judge one decision's outcome, if it is an applied scale decision without one: `did not
/// converge` past the converge timeout; once it converged and `outcome_after` passed, whether
/// the metric it scaled on (`scaled_on` among its inputs: CPU per instance, calls per instance
/// or p95 latency; CPU when it does not say) moved as intended. A scale from or to zero is as
/// intended once it converged. `converged_at` is the leader's memory of when
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
    let sv = slice_of(world, blueprint, slice)?;
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
    if *to == 0 {
        return Some(Outcome {
            at: now,
            verdict: "as intended".into(),
            detail: "0 instances: the next request starts one on demand".into(),
        });
    }
    if *from == 0 {
        let took = since.saturating_sub(applied);
        return Some(Outcome {
            at: now,
            verdict: "as intended".into(),
            detail: format!(
                "{to} of {to} instances active {} after the decision",
                human_millis(took)
            ),
        });
    }
    let metric = d
        .inputs
        .iter()
        .find(|(k, _)| k == "scaled_on")
        .and_then(|(_, v)| {
            [Metric::CallsPerInstance, Metric::LatencyMs]
                .into_iter()
                .find(|m| m.name() == v)
        })
        .unwrap_or(Metric::CpuPerInstance);
    let (key, target_key) = input_keys(metric);
    let before = input(key);
    // The target the decision was made against; the slice's current one if the decision did
    // not record it.
    let current = match metric {
        Metric::CallsPerInstance => sv
            .target_calls_per_instance
            .unwrap_or(s.rules.target_calls_per_instance),
        Metric::LatencyMs => sv.target_latency_ms.unwrap_or(f64::NAN),
        _ => sv.target_cpu.unwrap_or(s.rules.target_cpu),
    };
    let target = input(target_key).unwrap_or(current);
    let limit = target * (1.0 + s.rules.tolerance);
    let now_v = sv.value(metric);
    let (label, show) = (metric.label(), |v: f64| metric.show(v));
    let (verdict, detail) = match (before, now_v) {
        (_, None) => (
            "unknown",
            match metric {
                Metric::CpuPerInstance => "no CPU sample of the slice".to_string(),
                _ => format!("no {label} figure of the slice"),
            },
        ),
        (Some(b), Some(v)) if to > from => (
            if v < b || v <= limit {
                "as intended"
            } else {
                "not as intended"
            },
            format!(
                "{label} {} → {} (target {}) with {to} instances",
                show(b),
                show(v),
                show(target)
            ),
        ),
        (b, Some(v)) => (
            if v <= limit {
                "as intended"
            } else {
                "not as intended"
            },
            format!(
                "{label} {} → {} (target {}, limit {}) with {to} instances",
                b.map(show).unwrap_or("?".into()),
                show(v),
                show(target),
                show(limit)
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
        // Every node action targets the node (`node {name}`): a sleep and a drain of the same
        // node are one target, so an open one stands against (or is superseded by) the other.
        (
            Action::Drain { name: n1, .. }
            | Action::Undrain { name: n1, .. }
            | Action::Sleep { name: n1, .. }
            | Action::Wake { name: n1, .. },
            Action::Drain { name: n2, .. }
            | Action::Undrain { name: n2, .. }
            | Action::Sleep { name: n2, .. }
            | Action::Wake { name: n2, .. },
        ) => n1 == n2,
        _ => false,
    }
}

/// The safety context of `action`'s target, from the world and the decisions (newest first):
/// the slice's min, max and cooldowns (the rule settings' unless the blueprint sets them), the
/// ready members, the newest veto of the same action, the last scale-up and the last change,
/// and whether the newest applied action is still converging; `recent` decisions count towards
/// the rate limit. A count set by an operator (the slice's `count_set_at` matches no applied
/// decision) is a change too (the down cooldown counts from it) and holds back a scale-in
/// below it for the operator hold (`controller.operator_hold`, at least the down cooldown).
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
        on_demand: on_demand(action, world).is_some(),
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
        c.to_zero_when_idle = matches!(action, Action::Scale { to: 0, .. })
            && sv.min == 0
            && sv.idle_to_zero_ms.is_some();
        if let Some(u) = sv.up_cooldown_ms {
            c.up_cooldown_ms = u;
        }
        if let Some(d) = sv.down_cooldown_ms {
            c.down_cooldown_ms = d;
        }
    }
    c.operator_hold_ms = s.operator_hold_ms.max(c.down_cooldown_ms);
    let set_at = match action {
        Action::Scale {
            blueprint, slice, ..
        } => slice_of(world, blueprint, slice)
            .and_then(|sv| sv.count_set_at.map(|t| (t, sv.desired))),
        _ => None,
    };
    let mut controller_applied = Vec::new();
    for d in decisions
        .into_iter()
        .filter(|d| same_target(&d.action, action))
    {
        if let DecisionStatus::Applied { at, .. } = &d.status {
            controller_applied.push(*at);
        }
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
    // The slice's count was set by someone else than an applied decision of the controller's
    // (whose apply sets it at the decision's `applied` time): an operator's intent.
    if let Some((at, count)) = set_at
        && c.last_change != Some(at)
        && !controller_applied.contains(&at)
    {
        c.operator = Some((at, count));
        if c.last_change.is_none_or(|l| l < at) {
            c.last_change = Some(at);
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
        Action::Drain { node, .. } | Action::Sleep { node, .. } => {
            let n = world.nodes.iter().find(|n| n.id == *node)?;
            (n.state == NodeState::Draining)
                .then(|| format!("{}: {} is still draining", d.name(), n.name))
        }
        // A wake converges when the node is ready again; its power loop times it out.
        Action::Wake { node, .. } => {
            let n = world.nodes.iter().find(|n| n.id == *node)?;
            (n.state == NodeState::Asleep)
                .then(|| format!("{}: {} is still waking", d.name(), n.name))
        }
        Action::Undrain { .. } | Action::Rollback { .. } => None,
    }
}

/// What becomes of one proposal before the reviewer.
#[derive(Debug, Clone, PartialEq)]
pub struct Screened {
    /// The open decision on the target that the proposal replaces, to close first.
    pub close: Option<Command>,
    /// What becomes of the proposal.
    pub next: Next,
}

/// The proposal's way on after [`screen`].
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // one per proposal per tick, moved once: not worth a box
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
    /// Whether the reviewer has a say: the bounds did not reject it already, and it is not a
    /// scale from zero on demand (a client is waiting; the review's budget would add to it).
    pub fn wants_review(&self) -> bool {
        self.rejected.is_none() && !self.ctx.on_demand
    }
}

/// Screen one proposal: an open decision on its target stands while the same action is wanted
/// the same way (an opposite one, or a change of mode between asking an operator and not, is
/// closed as superseded); then the safety bounds over the target's [`context`], with `recent`
/// decisions towards the rate limit. A recorded stop is recorded once while it stands (see
/// [`said_already`]): its rejected decision carries the inputs `stopped` (what stopped it, see
/// [`stop_key`]) and, for a bound, `wanted`.
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
            p.reasoning.extend(notes.iter().map(|n| n.to_string()));
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
            let key = stop_key(&reason);
            let wanted = match &reason {
                StopReason::AtBound { wanted, .. } => Some(*wanted),
                _ => None,
            };
            let text = reason.to_string();
            if said_already(decisions, &p.action, &key, wanted, &text, world.now) {
                return Screened {
                    close,
                    next: Next::Quiet,
                };
            }
            p.inputs.push(("stopped".into(), key));
            if let Some(n) = wanted {
                p.inputs.push(("wanted".into(), n.to_string()));
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

/// What a recorded stop stands for, the same while the condition lasts: `at max=3`,
/// `vetoed d-41`, `last ready node`, `operator hold 6 since 1700000000000`. Recorded as the
/// rejected decision's input `stopped`.
pub fn stop_key(r: &StopReason) -> String {
    match r {
        StopReason::AtBound { up, limit, .. } => {
            format!("at {}={limit}", if *up { "max" } else { "min" })
        }
        StopReason::Vetoed { decision, .. } => format!("vetoed {decision}"),
        StopReason::LastReadyNode { .. } => "last ready node".into(),
        StopReason::OperatorHold { count, at, .. } => format!("operator hold {count} since {at}"),
        other => other.to_string(),
    }
}

/// A decision's input `key`.
fn input_of<'a>(d: &'a Decision, key: &str) -> Option<&'a str> {
    d.inputs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Whether the wanted count moved a lot: by half or more up, or to two thirds or less down.
fn moved_a_lot(before: Option<u32>, now: Option<u32>) -> bool {
    match (before, now) {
        (Some(b), Some(n)) => {
            let (b, n) = (b as u64, n as u64);
            n * 2 >= b * 3 || b * 2 >= n * 3
        }
        (None, None) => false,
        _ => true,
    }
}

/// Whether the stop `key` of `action` (wanting `wanted`; `reason` is its text) was said
/// already and still stands: the newest decision on the target (decisions newest first) is a
/// rejection by the same stop, recorded less than [`STANDING_RENEW_MS`] ago, and the wanted
/// count has not moved a lot since. A rejection recorded before stops carried their key counts
/// when its reason is the same text.
pub fn said_already(
    decisions: &[Decision],
    action: &Action,
    key: &str,
    wanted: Option<u32>,
    reason: &str,
    now: Millis,
) -> bool {
    let Some(d) = decisions.iter().find(|d| same_target(&d.action, action)) else {
        return false;
    };
    let DecisionStatus::Rejected { reason: said } = &d.status else {
        return false;
    };
    if now.saturating_sub(d.at) >= STANDING_RENEW_MS {
        return false;
    }
    match input_of(d, "stopped") {
        Some(k) => {
            let before = input_of(d, "wanted").and_then(|v| v.parse().ok());
            k == key && !moved_a_lot(before, wanted)
        }
        None => said == reason,
    }
}

/// The slices capped at their max (or held at their min) now, by target: those whose newest
/// decision (decisions newest first) is a standing rejection at that bound, recorded less than
/// the renewal period and a minute ago, while `desired` (the slice's count now, `None`: no
/// such slice) is still that bound. `since` is the first record of the run of such rejections.
pub fn capped(
    decisions: &[Decision],
    desired: impl Fn(&str, &str) -> Option<u32>,
    now: Millis,
) -> Vec<crate::raft::status::CappedView> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for (i, d) in decisions.iter().enumerate() {
        let Action::Scale {
            blueprint, slice, ..
        } = &d.action
        else {
            continue;
        };
        if !seen.insert((blueprint, slice)) {
            continue;
        }
        let Some(key) = standing(d) else { continue };
        let Some((bound, limit)) = key
            .strip_prefix("at ")
            .and_then(|k| k.split_once('='))
            .and_then(|(b, l)| Some((b, l.parse::<u32>().ok()?)))
        else {
            continue;
        };
        if now.saturating_sub(d.at) >= CAPPED_SHOWN_MS || desired(blueprint, slice) != Some(limit) {
            continue;
        }
        let since = decisions[i + 1..]
            .iter()
            .filter(|o| same_target(&o.action, &d.action))
            .take_while(|o| standing(o) == Some(key))
            .last()
            .map_or(d.at, |o| o.at);
        out.push(crate::raft::status::CappedView {
            target: format!("{blueprint}/{slice}"),
            bound: bound.to_string(),
            limit,
            wanted: input_of(d, "wanted").and_then(|v| v.parse().ok()),
            since,
            said: d.at,
        });
    }
    out
}

/// The stop a rejected decision stands for (its input `stopped`), if it is one.
fn standing(d: &Decision) -> Option<&str> {
    matches!(d.status, DecisionStatus::Rejected { .. })
        .then(|| input_of(d, "stopped"))
        .flatten()
}

/// Turn a candidate into the decision to record: the reviewer's record and verdict if it had
/// its say (a reject rejects, an adjustment goes through the bounds again), the status by the
/// mode otherwise (observe/propose: proposed; guarded: pending until the grace deadline; auto:
/// pending until now, and applied at once). A scale from zero on demand is applied at once in
/// guarded mode too, and says so. `by` is the leader's name.
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
                    Check::Go { notes } => p.reasoning.extend(notes.iter().map(|n| n.to_string())),
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
    let on_demand = ctx.on_demand && status.is_none();
    let status = status.unwrap_or(match control.mode {
        ControllerMode::Observe | ControllerMode::Propose => DecisionStatus::Proposed,
        ControllerMode::Guarded if on_demand => DecisionStatus::Pending {
            deadline: world.now,
        },
        ControllerMode::Guarded => DecisionStatus::Pending {
            deadline: world.now + s.grace_ms(control),
        },
        ControllerMode::Auto => DecisionStatus::Pending {
            deadline: world.now,
        },
    });
    if on_demand {
        p.reasoning.push(match control.mode {
            ControllerMode::Observe | ControllerMode::Propose => format!(
                "mode {}: a proposal only, though a client is waiting; approve it to start the instance (aether override approve)",
                control.mode
            ),
            ControllerMode::Guarded => {
                "applied at once, without the grace window: a client is waiting and min = 0 declares start on demand".into()
            }
            ControllerMode::Auto => "applied at once (mode auto): a client is waiting".into(),
        });
    }
    let apply = status.is_open()
        && (control.mode == ControllerMode::Auto
            || (on_demand && control.mode == ControllerMode::Guarded));
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
mod tests;
