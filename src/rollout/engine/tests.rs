//! The step machine without a runtime: each case feeds what the cluster shows and checks the
//! record the leader would write.

use std::collections::BTreeMap;

use super::*;
use crate::domain::{AnalysisPolicy, UpdatePolicy};

fn rollout(policy: UpdatePolicy, n: u32) -> Rollout {
    let (step, want_to, traffic) = match policy.strategy {
        Strategy::Rolling => (
            RolloutStep::Replace,
            policy.max_parallel.min(n),
            TrafficSplit::ByCopies,
        ),
        Strategy::Canary => (
            RolloutStep::CanaryStart,
            policy.canary,
            TrafficSplit::Weighted {
                to_pct: policy.canary_traffic_pct,
            },
        ),
        Strategy::BlueGreen => (
            RolloutStep::GreenStart,
            n,
            TrafficSplit::Only { version: 6 },
        ),
    };
    Rollout {
        id: 1,
        blueprint: "shop".into(),
        slice: "web".into(),
        from: 6,
        to: 7,
        policy,
        cause: "applied".into(),
        state: RolloutState::Running,
        step,
        step_since: 0,
        want_to,
        want_from: n,
        traffic,
        progress_at: 0,
        started_at: 0,
        ended_at: None,
        base: None,
        analysis: Vec::new(),
        reason: None,
        history: Vec::new(),
        rev: 1,
    }
}

fn side(assigned: u32, healthy: u32) -> Copies {
    Copies {
        assigned,
        active: healthy,
        healthy,
        overdue: None,
    }
}

fn seen(now: Millis, n: u32, to: Copies, from: Copies) -> Observed {
    Observed {
        now,
        instances: n,
        to,
        from,
        numbers: None,
    }
}

fn rolling(max_parallel: u32) -> UpdatePolicy {
    UpdatePolicy {
        max_parallel,
        min_healthy_ms: 1_000,
        ..UpdatePolicy::default()
    }
}

#[test]
fn rolling_replaces_a_batch_at_a_time_and_succeeds_when_only_new_copies_are_left() {
    let mut r = rollout(rolling(2), 6);
    assert_eq!((r.want_to, r.want_from), (2, 6));
    // The first batch is not healthy yet: nothing moves.
    assert_eq!(advance(&r, &seen(100, 6, side(2, 1), side(6, 6))), None);
    let mut now = 100;
    let mut old = 6;
    while r.state == RolloutState::Running {
        now += 1_000;
        let o = seen(now, 6, side(r.want_to, r.want_to), side(old, old));
        r = advance(&r, &o).expect("a healthy batch moves the rollout on");
        assert!(
            r.want_to + r.want_from <= 6 + 2,
            "never more than max_parallel extra: {r:?}"
        );
        assert!(
            r.want_from + r.want_to >= 6,
            "never below the slice's size: {r:?}"
        );
        old = r.want_from;
    }
    assert_eq!(r.state, RolloutState::Succeeded);
    assert_eq!((r.want_to, r.want_from), (6, 0));
    assert!(
        r.history
            .last()
            .unwrap()
            .1
            .starts_with("succeeded: 6 of v7"),
        "{:?}",
        r.history
    );
}

#[test]
fn the_old_copies_must_be_gone_before_a_rolling_update_succeeds() {
    let mut r = rollout(rolling(1), 2);
    r.want_to = 2;
    r.want_from = 0;
    assert_eq!(advance(&r, &seen(10, 2, side(2, 2), side(1, 1))), None);
    let done = advance(&r, &seen(10, 2, side(2, 2), side(0, 0))).unwrap();
    assert_eq!(done.state, RolloutState::Succeeded);
}

#[test]
fn a_copy_not_healthy_by_its_deadline_fails_the_step_and_goes_back_at_once() {
    let r = rollout(rolling(1), 3);
    let mut o = seen(200_000, 3, side(1, 0), side(3, 3));
    o.to.overdue = Some(("shop/web/3".into(), "backoff: exit 1".into()));
    let n = advance(&r, &o).unwrap();
    assert_eq!(n.step, RolloutStep::Revert);
    assert_eq!(n.traffic, TrafficSplit::Only { version: 6 });
    let why = n.reason.clone().unwrap();
    assert!(
        why.contains("shop/web/3 not healthy 2m0s after it started (backoff: exit 1)"),
        "{why}"
    );
    // Going back completes once every old copy is active; the new ones are dropped then.
    assert_eq!(advance(&n, &seen(200_500, 3, side(1, 0), side(2, 2))), None);
    let back = advance(&n, &seen(202_600, 3, side(1, 0), side(3, 3))).unwrap();
    assert_eq!(back.want_to, 0);
    match &back.state {
        RolloutState::RolledBack { reason } => {
            assert!(reason.ends_with("rolled back to v6 in 2.6s"), "{reason}")
        }
        s => panic!("{s:?}"),
    }
}

#[test]
fn without_auto_revert_a_failure_holds_with_the_new_version_out_of_traffic() {
    let r = rollout(
        UpdatePolicy {
            auto_revert: false,
            ..rolling(1)
        },
        3,
    );
    let n = advance(&r, &seen(700_000, 3, side(1, 0), side(3, 3))).unwrap();
    match &n.state {
        RolloutState::Failed { reason } => {
            assert!(
                reason.contains("no progress for 11m40s (progress_deadline)"),
                "{reason}"
            )
        }
        s => panic!("{s:?}"),
    }
    assert_eq!(n.traffic, TrafficSplit::Only { version: 6 });
    // A failed rollout waits for an operator: the engine leaves it alone.
    assert_eq!(advance(&n, &seen(800_000, 3, side(1, 1), side(3, 3))), None);
}

#[test]
fn a_scale_up_mid_rollout_adds_new_version_copies() {
    let mut r = rollout(rolling(1), 4);
    r.want_to = 2;
    r.want_from = 2;
    let n = advance(&r, &seen(10, 6, side(2, 0), side(2, 2))).unwrap();
    assert_eq!((n.want_to, n.want_from), (4, 2));
}

fn canary(analysis: Option<AnalysisPolicy>) -> UpdatePolicy {
    UpdatePolicy {
        strategy: Strategy::Canary,
        canary: 1,
        canary_traffic_pct: 20,
        min_healthy_ms: 0,
        progress_deadline_ms: 60_000,
        analysis,
        ..UpdatePolicy::default()
    }
}

fn analysis() -> AnalysisPolicy {
    AnalysisPolicy {
        interval_ms: 30_000,
        min_requests: 100,
        max_error_rate: 0.01,
        max_p99_ms: Some(300),
    }
}

/// Cumulative numbers: `(version, calls, errors, ms each)`.
fn numbers(v: &[(u64, u64, u64, f64)]) -> Option<(String, BTreeMap<u64, Tally>)> {
    let mut m = BTreeMap::new();
    for (ver, calls, errors, ms) in v {
        let mut hist = Histogram::default();
        hist.add(Histogram::bucket(*ms), *calls);
        m.insert(
            *ver,
            Tally {
                calls: *calls,
                errors: *errors,
                hist,
            },
        );
    }
    Some(("n1:1".into(), m))
}

/// A canary whose canaries are healthy and whose analysis interval began at `at` with the
/// counters of `base`.
fn analysing(base: &[(u64, u64, u64, f64)], at: Millis) -> Rollout {
    let r = rollout(canary(Some(analysis())), 4);
    let start = advance(&r, &seen(at, 4, side(1, 1), side(4, 4))).unwrap();
    assert_eq!(start.step, RolloutStep::Analysis { round: 1 });
    let mut o = seen(at, 4, side(1, 1), side(4, 4));
    o.numbers = numbers(base);
    let based = advance(&start, &o).unwrap();
    assert_eq!(based.base.as_ref().unwrap().at, at);
    based
}

#[test]
fn a_failing_canary_is_rolled_back_with_the_numbers_and_the_threshold() {
    let r = analysing(&[(6, 1_000, 0, 20.0), (7, 0, 0, 20.0)], 1_000);
    // 412 requests to the canary, 31 of them failed, before the interval ends: fail early.
    let mut o = seen(11_000, 4, side(1, 1), side(4, 4));
    o.numbers = numbers(&[(6, 4_702, 0, 20.0), (7, 412, 31, 20.0)]);
    let n = advance(&r, &o).unwrap();
    assert_eq!(n.step, RolloutStep::Revert);
    let why = n.reason.clone().unwrap();
    assert_eq!(
        why,
        "canary v7: error rate 7.5% > max 1.0% over 412 requests in 10s (stable v6: 0.0% over 3702, p99 20ms)"
    );
    assert_eq!(n.analysis.last().unwrap().verdict, "fail");
    assert_eq!(n.analysis.last().unwrap().canary.errors, 31);
    // The old set is whole: the revert completes at once.
    let back = advance(&n, &seen(11_400, 4, side(1, 1), side(4, 4))).unwrap();
    assert!(
        matches!(&back.state, RolloutState::RolledBack { reason } if reason.starts_with(&why) && reason.ends_with("rolled back to v6 in 400ms")),
        "{:?}",
        back.state
    );
}

#[test]
fn a_slow_canary_fails_on_its_p99() {
    let r = analysing(&[(6, 0, 0, 20.0), (7, 0, 0, 20.0)], 1_000);
    let mut o = seen(31_000, 4, side(1, 1), side(4, 4));
    o.numbers = numbers(&[(6, 900, 0, 20.0), (7, 150, 0, 400.0)]);
    let n = advance(&r, &o).unwrap();
    assert!(
        n.reason.unwrap().starts_with("canary v7: p99 "),
        "p99 threshold"
    );
}

#[test]
fn no_traffic_is_inconclusive_never_a_pass_and_pauses_past_the_deadline() {
    let r = analysing(&[(6, 0, 0, 1.0)], 1_000);
    let mut o = seen(31_000, 4, side(1, 1), side(4, 4));
    o.numbers = numbers(&[(6, 0, 0, 1.0)]);
    let n = advance(&r, &o).unwrap();
    assert_eq!(n.state, RolloutState::Running);
    assert_eq!(n.step, RolloutStep::Analysis { round: 2 });
    assert_eq!(n.analysis.last().unwrap().verdict, "inconclusive");
    let mut o = seen(61_500, 4, side(1, 1), side(4, 4));
    o.numbers = numbers(&[(6, 0, 0, 1.0), (7, 12, 0, 1.0)]);
    let p = advance(&n, &o).unwrap();
    match &p.state {
        RolloutState::Paused { reason, .. } => {
            assert!(
                reason.contains("12 requests in 30.5s (min 100): inconclusive"),
                "{reason}"
            );
            assert!(
                reason.contains("'aether rollout promote' goes on"),
                "{reason}"
            );
        }
        s => panic!("an inconclusive canary past its deadline pauses: {s:?}"),
    }
    assert_eq!(p.want_to, 1, "the canary stays while paused");
}

#[test]
fn a_passing_canary_waits_for_promote_and_keeps_being_analysed() {
    let r = analysing(&[(6, 0, 0, 10.0), (7, 0, 0, 10.0)], 1_000);
    let mut o = seen(31_000, 4, side(1, 1), side(4, 4));
    o.numbers = numbers(&[(6, 800, 1, 10.0), (7, 200, 0, 10.0)]);
    let n = advance(&r, &o).unwrap();
    assert_eq!(n.step, RolloutStep::AwaitPromote);
    assert_eq!(n.analysis.last().unwrap().verdict, "pass");
    // Still judged while waiting: a later bad interval goes back.
    let mut o = seen(61_000, 4, side(1, 1), side(4, 4));
    o.numbers = numbers(&[(6, 1_600, 1, 10.0), (7, 400, 50, 10.0)]);
    let m = advance(&n, &o).unwrap();
    assert_eq!(m.step, RolloutStep::Revert);
}

#[test]
fn auto_promote_replaces_the_rest_after_a_pass() {
    let mut r = analysing(&[(7, 0, 0, 10.0)], 1_000);
    r.policy.auto_promote = true;
    let mut o = seen(31_000, 4, side(1, 1), side(4, 4));
    o.numbers = numbers(&[(7, 150, 0, 10.0)]);
    let n = advance(&r, &o).unwrap();
    assert_eq!(
        (&n.step, n.traffic),
        (&RolloutStep::Replace, TrafficSplit::ByCopies)
    );
    // The canary counts as the first replaced copy.
    let m = advance(&n, &seen(32_000, 4, side(1, 1), side(4, 4))).unwrap();
    assert_eq!((m.want_to, m.want_from), (2, 3));
}

#[test]
fn counters_of_another_leader_start_a_fresh_interval() {
    let r = analysing(&[(7, 500, 0, 10.0)], 1_000);
    let mut o = seen(31_000, 4, side(1, 1), side(4, 4));
    let (_, m) = numbers(&[(7, 90, 0, 10.0)]).unwrap();
    o.numbers = Some(("n2:5".into(), m));
    let n = advance(&r, &o).unwrap();
    assert!(n.analysis.is_empty(), "nothing judged on mixed counters");
    assert_eq!(n.base.as_ref().unwrap().source, "n2:5");
}

#[test]
fn blue_green_switches_in_one_step_and_keeps_the_old_set_for_the_standby() {
    let r = rollout(
        UpdatePolicy {
            strategy: Strategy::BlueGreen,
            min_healthy_ms: 0,
            standby_ms: 60_000,
            ..UpdatePolicy::default()
        },
        3,
    );
    assert_eq!(advance(&r, &seen(10, 3, side(3, 2), side(3, 3))), None);
    let s = advance(&r, &seen(20, 3, side(3, 3), side(3, 3))).unwrap();
    assert_eq!(s.step, RolloutStep::Standby { until: 60_020 });
    assert_eq!(s.traffic, TrafficSplit::Only { version: 7 });
    assert_eq!(s.want_from, 3, "the old set stays up");
    assert_eq!(advance(&s, &seen(30_000, 3, side(3, 3), side(3, 3))), None);
    let e = advance(&s, &seen(60_020, 3, side(3, 3), side(3, 3))).unwrap();
    assert_eq!(e.want_from, 0);
    let done = advance(&e, &seen(60_500, 3, side(3, 3), side(0, 0))).unwrap();
    assert_eq!(done.state, RolloutState::Succeeded);
}

#[test]
fn paused_rollouts_do_not_move() {
    let mut r = rollout(rolling(1), 3);
    r.state = RolloutState::Paused {
        by: "op".into(),
        reason: "paused by op".into(),
    };
    assert_eq!(
        advance(&r, &seen(10_000_000, 3, side(1, 1), side(3, 3))),
        None
    );
}

#[test]
fn a_revert_that_cannot_finish_fails_and_says_so() {
    let mut r = rollout(rolling(1), 3);
    r.step = RolloutStep::Revert;
    r.step_since = 1_000;
    r.reason = Some("abort by op".into());
    r.traffic = TrafficSplit::Only { version: 6 };
    assert_eq!(advance(&r, &seen(60_000, 3, side(1, 1), side(3, 1))), None);
    let n = advance(&r, &seen(200_000, 3, side(1, 1), side(3, 1))).unwrap();
    match &n.state {
        RolloutState::Failed { reason } => assert_eq!(
            reason,
            "going back to v6 did not finish: 1 of 3 v6 copies active after 3m19s (it went back because: abort by op)"
        ),
        s => panic!("{s:?}"),
    }
}
