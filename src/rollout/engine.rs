//! The rollout step machine (pure): from a rollout record and what the cluster shows now
//! (copies per version and their health, the ingress's numbers per version), the record's next
//! state. No I/O and no clock: the loop ([`super::run`]) reads, calls [`advance`] and writes
//! the result through Raft, so a new leader continues from the record alone.

use std::collections::BTreeMap;

use crate::domain::{
    AnalysisBase, AnalysisRecord, Millis, Rollout, RolloutState, RolloutStep, Strategy,
    TrafficSplit, VersionNumbers, human_millis,
};
use crate::metrics::requests::{Histogram, Tally};

/// One side's copies (the new version's, or every other version's).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Copies {
    /// Assigned (placed or pending).
    pub assigned: u32,
    /// Reported active by the node they are assigned to.
    pub active: u32,
    /// Active for at least the policy's `min_healthy_time`.
    pub healthy: u32,
    /// A copy not active `healthy_deadline` after it started (or the step began): its key and
    /// what its node last said.
    pub overdue: Option<(String, String)>,
}

/// What the cluster shows now, for one rollout.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub now: Millis,
    /// The slice's desired instances now (the controller may change it mid-rollout).
    pub instances: u32,
    /// The copies of the rollout's new version.
    pub to: Copies,
    /// The copies of every other version.
    pub from: Copies,
    /// What each version answered at the ingress, cumulative over the cluster, and whose
    /// counters they are; `None` while this node has no traffic view.
    pub numbers: Option<(String, BTreeMap<u64, Tally>)>,
}

/// The record after this round, or `None` when nothing changes.
pub fn advance(r: &Rollout, o: &Observed) -> Option<Rollout> {
    if r.state != RolloutState::Running {
        return None;
    }
    let mut n = r.clone();
    match r.step.clone() {
        RolloutStep::Replace => replace(&mut n, o),
        RolloutStep::CanaryStart => canary_start(&mut n, o),
        RolloutStep::Analysis { .. } | RolloutStep::AwaitPromote => analyse(&mut n, o),
        RolloutStep::GreenStart => green_start(&mut n, o),
        RolloutStep::Standby { until } => standby(&mut n, o, until),
        RolloutStep::Revert => revert(&mut n, o),
        RolloutStep::Done => {}
    }
    (n != *r).then_some(n)
}

fn say(n: &mut Rollout, at: Millis, what: String) {
    n.history.push((at, what));
}

/// `1.2s`, `30s`, `340ms`, `4m12s`: seconds to a tenth below a minute.
fn took(ms: u64) -> String {
    if (1_000..60_000).contains(&ms) && ms % 1_000 != 0 {
        format!("{:.1}s", ms as f64 / 1_000.0)
    } else {
        human_millis(ms)
    }
}

/// The traffic of a rollout going back: the old version alone while it has a ready copy.
fn back_to_old(n: &Rollout, o: &Observed) -> TrafficSplit {
    if o.from.active > 0 {
        TrafficSplit::Only { version: n.from }
    } else {
        TrafficSplit::ByCopies
    }
}

/// The step failed: go back at once (`auto_revert`), or hold as it is with the new version
/// out of traffic.
fn fail(n: &mut Rollout, o: &Observed, why: String) {
    let now = o.now;
    n.reason = Some(why.clone());
    if n.policy.auto_revert {
        n.step = RolloutStep::Revert;
        n.step_since = now;
        n.want_from = o.instances;
        n.traffic = back_to_old(n, o);
        n.base = None;
        say(n, now, format!("failed: {why}; going back to v{}", n.from));
    } else {
        n.state = RolloutState::Failed {
            reason: why.clone(),
        };
        n.traffic = back_to_old(n, o);
        say(
            n,
            now,
            format!(
                "failed: {why}; holding (auto_revert is off): 'aether rollout abort' goes back to v{}, 'resume' tries again",
                n.from
            ),
        );
    }
}

fn succeed(n: &mut Rollout, o: &Observed) {
    n.state = RolloutState::Succeeded;
    n.step = RolloutStep::Done;
    n.ended_at = Some(o.now);
    n.traffic = TrafficSplit::ByCopies;
    n.base = None;
    say(
        n,
        o.now,
        format!(
            "succeeded: {} of v{} in {}",
            o.instances,
            n.to,
            took(o.now.saturating_sub(n.started_at))
        ),
    );
}

/// Fails the rollout (`what`: its strategy) when a new copy is not healthy by its deadline;
/// whether it did.
fn overdue(n: &mut Rollout, o: &Observed, what: &str) -> bool {
    let Some((key, said)) = &o.to.overdue else {
        return false;
    };
    let why = format!(
        "{what} v{}: {key} not healthy {} after it started ({said})",
        n.to,
        human_millis(n.policy.healthy_deadline_ms)
    );
    fail(n, o, why);
    true
}

/// Fails the rollout when a new copy is overdue or nothing moved for `progress_deadline`;
/// whether it did.
fn deadlines(n: &mut Rollout, o: &Observed) -> bool {
    let what = match n.policy.strategy {
        Strategy::Canary => "canary",
        Strategy::Rolling => "rolling",
        Strategy::BlueGreen => "blue-green",
    };
    if overdue(n, o, what) {
        return true;
    }
    let idle = o.now.saturating_sub(n.progress_at);
    if idle > n.policy.progress_deadline_ms {
        let why = format!(
            "{what} v{}: no progress for {} (progress_deadline): {} of {} new copies healthy",
            n.to,
            human_millis(idle),
            o.to.healthy,
            n.want_to
        );
        fail(n, o, why);
        return true;
    }
    false
}

/// Rolling (and a promoted canary): when the copies started so far are healthy, retire as
/// many old ones and start the next batch; done when only new copies are left.
fn replace(n: &mut Rollout, o: &Observed) {
    let total = o.instances;
    let now = o.now;
    n.traffic = TrafficSplit::ByCopies;
    n.want_to = n.want_to.min(total);
    n.want_from = n.want_from.min(total);
    if n.want_to + n.want_from < total {
        // Scaled up mid-rollout: the new copies run the new version.
        n.want_to = total - n.want_from;
    }
    if deadlines(n, o) {
        return;
    }
    if o.to.healthy < n.want_to || o.to.assigned < n.want_to {
        return;
    }
    let keep_old = total - n.want_to;
    if n.want_from > keep_old {
        say(
            n,
            now,
            format!(
                "{} of {total} v{} copies healthy: retiring v{} copies down to {keep_old}",
                n.want_to, n.to, n.from
            ),
        );
        n.want_from = keep_old;
        n.progress_at = now;
    }
    if n.want_to < total {
        let next = (n.want_to + n.policy.max_parallel).min(total);
        say(
            n,
            now,
            format!(
                "starting v{} copies {}–{next} of {total}",
                n.to,
                n.want_to + 1
            ),
        );
        n.want_to = next;
        n.step_since = now;
        n.progress_at = now;
    } else if n.want_from == 0 && o.from.assigned == 0 {
        succeed(n, o);
    }
}

fn canary_start(n: &mut Rollout, o: &Observed) {
    n.want_from = o.instances;
    if deadlines(n, o) {
        return;
    }
    if o.to.healthy < n.want_to {
        return;
    }
    let now = o.now;
    n.progress_at = now;
    n.step_since = now;
    if n.policy.analysis.is_some() {
        n.step = RolloutStep::Analysis { round: 1 };
        n.base = None;
        say(
            n,
            now,
            format!("{} canary healthy: analysis 1 begins", n.want_to),
        );
    } else if n.policy.auto_promote {
        promote(
            n,
            now,
            "canaries healthy, no analysis: promoted (auto_promote)".into(),
        );
    } else {
        n.step = RolloutStep::AwaitPromote;
        say(
            n,
            now,
            "canaries healthy (no analysis): waiting for 'aether rollout promote'".into(),
        );
    }
}

fn promote(n: &mut Rollout, now: Millis, why: String) {
    n.step = RolloutStep::Replace;
    n.step_since = now;
    n.progress_at = now;
    n.traffic = TrafficSplit::ByCopies;
    n.base = None;
    say(n, now, why);
}

/// The counters an interval starts from.
fn base_of(source: &str, nums: &BTreeMap<u64, Tally>, at: Millis) -> AnalysisBase {
    AnalysisBase {
        at,
        source: source.to_string(),
        counts: nums
            .iter()
            .map(|(v, t)| (*v, t.calls, t.errors, t.hist.counts.clone()))
            .collect(),
    }
}

/// The numbers since `base` of version `to` (canary) and of every other version (stable);
/// `None` when a counter went backwards (the view restarted).
fn since(
    base: &AnalysisBase,
    nums: &BTreeMap<u64, Tally>,
    to: u64,
) -> Option<(VersionNumbers, VersionNumbers)> {
    let mut canary = (0u64, 0u64, Histogram::default());
    let mut stable = (0u64, 0u64, Histogram::default());
    for (v, t) in nums {
        let (c0, e0, h0) = base
            .counts
            .iter()
            .find(|(bv, ..)| bv == v)
            .map(|(_, c, e, h)| (*c, *e, h.clone()))
            .unwrap_or_default();
        if t.calls < c0 || t.errors < e0 {
            return None;
        }
        let side = if *v == to { &mut canary } else { &mut stable };
        side.0 += t.calls - c0;
        side.1 += t.errors - e0;
        for (i, n) in t.hist.counts.iter().enumerate() {
            let before = h0.get(i).copied().unwrap_or(0);
            side.2.add(i, n.saturating_sub(before));
        }
    }
    let numbers = |(calls, errors, h): (u64, u64, Histogram)| VersionNumbers {
        calls,
        errors,
        p99_ms: h.quantile(0.99),
    };
    Some((numbers(canary), numbers(stable)))
}

fn pct(x: f64) -> String {
    let p = x * 100.0;
    if p != 0.0 && p < 0.1 {
        format!("{p:.2}%")
    } else {
        format!("{p:.1}%")
    }
}

fn ms(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.0}ms"))
}

/// A canary's analysis: judge each interval (failing early once `min_requests` show too many
/// errors); a pass moves to promotion, a failure goes back, an inconclusive run past the
/// progress deadline pauses for an operator.
fn analyse(n: &mut Rollout, o: &Observed) {
    let now = o.now;
    n.want_from = o.instances;
    if overdue(n, o, "canary") {
        return;
    }
    let Some(a) = n.policy.analysis.clone() else {
        return;
    };
    let Some((source, nums)) = &o.numbers else {
        return;
    };
    let fresh = |n: &mut Rollout| n.base = Some(base_of(source, nums, now));
    let Some(base) = n.base.clone().filter(|b| &b.source == source) else {
        fresh(n);
        return;
    };
    let Some((canary, stable)) = since(&base, nums, n.to) else {
        fresh(n);
        return;
    };
    let span = now.saturating_sub(base.at);
    let too_slow = |p99: Option<f64>| a.max_p99_ms.zip(p99).filter(|(max, p)| *p > *max as f64);
    let enough = canary.calls >= a.min_requests;
    let failing =
        enough && (canary.error_rate() > a.max_error_rate || too_slow(canary.p99_ms).is_some());
    if !failing && span < a.interval_ms {
        return;
    }
    let round = match n.step {
        RolloutStep::Analysis { round } => round,
        _ => n.analysis.last().map_or(1, |x| x.round + 1),
    };
    let over = format!("over {} requests in {}", canary.calls, took(span));
    let stable_says = format!(
        "stable v{}: {} over {}, p99 {}",
        n.from,
        pct(stable.error_rate()),
        stable.calls,
        ms(stable.p99_ms)
    );
    let (verdict, detail) = if !enough {
        (
            "inconclusive",
            format!(
                "canary v{}: {} requests in {} (min {}): inconclusive; {stable_says}",
                n.to,
                canary.calls,
                took(span),
                a.min_requests
            ),
        )
    } else if canary.error_rate() > a.max_error_rate {
        (
            "fail",
            format!(
                "canary v{}: error rate {} > max {} {over} ({stable_says})",
                n.to,
                pct(canary.error_rate()),
                pct(a.max_error_rate)
            ),
        )
    } else if let Some((max, p)) = too_slow(canary.p99_ms) {
        (
            "fail",
            format!(
                "canary v{}: p99 {p:.0}ms > max {max}ms {over} ({stable_says})",
                n.to
            ),
        )
    } else {
        (
            "pass",
            format!(
                "canary v{}: error rate {} ≤ {}, p99 {}{} {over} ({stable_says})",
                n.to,
                pct(canary.error_rate()),
                pct(a.max_error_rate),
                ms(canary.p99_ms),
                a.max_p99_ms
                    .map(|m| format!(" ≤ {m}ms"))
                    .unwrap_or_default()
            ),
        )
    };
    n.analysis.push(AnalysisRecord {
        round,
        from_at: base.at,
        to_at: now,
        canary,
        stable,
        verdict: verdict.into(),
        detail: detail.clone(),
    });
    fresh(n);
    match verdict {
        "fail" => fail(n, o, detail),
        "inconclusive" => {
            let idle = now.saturating_sub(n.progress_at);
            if idle >= n.policy.progress_deadline_ms {
                let reason = format!(
                    "{detail}; no conclusion for {} (progress_deadline): 'aether rollout promote' goes on, 'abort' goes back",
                    human_millis(idle)
                );
                n.state = RolloutState::Paused {
                    by: "analysis".into(),
                    reason: reason.clone(),
                };
                n.reason = Some(reason.clone());
                say(n, now, format!("paused: {reason}"));
            } else if let RolloutStep::Analysis { round } = n.step {
                n.step = RolloutStep::Analysis { round: round + 1 };
                say(n, now, format!("analysis {round}: {detail}"));
            }
        }
        _ => {
            n.progress_at = now;
            match n.step {
                RolloutStep::Analysis { round } if n.policy.auto_promote => promote(
                    n,
                    now,
                    format!("analysis {round} passed: {detail}; promoted (auto_promote)"),
                ),
                RolloutStep::Analysis { round } => {
                    n.step = RolloutStep::AwaitPromote;
                    n.step_since = now;
                    say(
                        n,
                        now,
                        format!(
                            "analysis {round} passed: {detail}; waiting for 'aether rollout promote' (analysis goes on)"
                        ),
                    );
                }
                _ => {}
            }
        }
    }
}

fn green_start(n: &mut Rollout, o: &Observed) {
    n.want_to = o.instances;
    n.want_from = o.instances;
    n.traffic = TrafficSplit::Only { version: n.from };
    if deadlines(n, o) {
        return;
    }
    if o.to.healthy < o.instances || o.to.assigned < o.instances {
        return;
    }
    let now = o.now;
    let until = now + n.policy.standby_ms;
    n.step = RolloutStep::Standby { until };
    n.step_since = now;
    n.progress_at = now;
    n.traffic = TrafficSplit::Only { version: n.to };
    say(
        n,
        now,
        format!(
            "all {} v{} copies healthy: traffic switched to v{}; v{} stays up, out of traffic, for {} ('aether rollout undo' switches back at once)",
            o.instances,
            n.to,
            n.to,
            n.from,
            human_millis(n.policy.standby_ms)
        ),
    );
}

fn standby(n: &mut Rollout, o: &Observed, until: Millis) {
    n.want_to = o.instances;
    if o.now < until {
        n.want_from = o.instances;
        return;
    }
    if n.want_from > 0 {
        n.want_from = 0;
        say(
            n,
            o.now,
            format!("standby over: stopping the v{} copies", n.from),
        );
    } else if o.from.assigned == 0 {
        succeed(n, o);
    }
}

fn revert(n: &mut Rollout, o: &Observed) {
    n.want_from = o.instances;
    n.traffic = back_to_old(n, o);
    if o.from.active < o.instances || o.from.assigned < o.instances {
        let waited = o.now.saturating_sub(n.step_since);
        if waited > n.policy.healthy_deadline_ms {
            // The old version does not come back either: stop and say so, both sets kept.
            let why = format!(
                "going back to v{} did not finish: {} of {} v{} copies active after {}{}",
                n.from,
                o.from.active,
                o.instances,
                n.from,
                human_millis(waited),
                n.reason
                    .as_ref()
                    .map(|r| format!(" (it went back because: {r})"))
                    .unwrap_or_default()
            );
            n.state = RolloutState::Failed {
                reason: why.clone(),
            };
            n.reason = Some(why.clone());
            n.traffic = TrafficSplit::ByCopies;
            say(
                n,
                o.now,
                format!("failed: {why}; 'aether blueprint show' says why the copies do not start"),
            );
        }
        return;
    }
    let why = n.reason.clone().unwrap_or_else(|| "reverted".into());
    let reason = format!(
        "{why}; rolled back to v{} in {}",
        n.from,
        took(o.now.saturating_sub(n.step_since))
    );
    n.want_to = 0;
    n.state = RolloutState::RolledBack {
        reason: reason.clone(),
    };
    n.reason = Some(reason.clone());
    n.step = RolloutStep::Done;
    n.ended_at = Some(o.now);
    n.traffic = TrafficSplit::Only { version: n.from };
    say(n, o.now, format!("rolled back: {reason}"));
}

#[cfg(test)]
mod tests;
