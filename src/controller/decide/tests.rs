//! The decision policy on hand-built worlds and decisions: the modes, the bounds, the
//! reviewer's verdicts, deadlines and outcomes.

use super::*;
use crate::controller::world::{NodeView, SliceView};
use crate::domain::Pause;

const NOW: Millis = 10_000_000;

fn settings() -> Settings {
    Settings {
        bounds: Bounds {
            max_step: 3,
            max_step_percent: 50,
            max_step_down: 3,
            max_step_down_percent: 50,
            per_minute: 6,
            veto_cooldown_ms: 900_000,
        },
        grace_ms: 30_000,
        interval_ms: 1_000,
        proposal_ttl_ms: 600_000,
        converge_timeout_ms: 300_000,
        outcome_after_ms: 60_000,
        operator_hold_ms: 300_000,
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
        ..SliceView::default()
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
        gpu_health: None,
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
fn a_recorded_stop_is_rejected_once_while_it_stands() {
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
    // What is recorded is the clamped action (8 → 8), and what stopped it.
    assert_eq!(d.action, scale(8, 8));
    assert_eq!(input(&d, "stopped"), Some("at max=8"));
    assert_eq!(input(&d, "wanted"), Some("10"));
    // The record as stored, a minute ago: quiet now; eleven minutes ago: said again.
    let c = control(ControllerMode::Auto);
    for (ago, quiet) in [(60_000, true), (540_000, true), (660_000, false)] {
        let earlier = [Decision {
            id: 3,
            at: NOW - ago,
            ..d.clone()
        }];
        let s = screen(proposal(scale(8, 10)), &w, &earlier, &c, 0, &settings());
        assert_eq!(s.next == Next::Quiet, quiet, "{ago}: {:?}", s.next);
    }
}

/// Tick the policy over a saturated slice at its max for `secs` seconds, wanting `wanted(t)`,
/// recording what it asks to record (newest first) into `log`.
fn saturate(log: &mut Vec<Decision>, from: Millis, secs: u64, wanted: impl Fn(u64) -> u32) {
    let c = control(ControllerMode::Guarded);
    let s = settings();
    for t in 0..secs {
        let mut w = world(8, 8);
        w.now = from + t * 1000;
        let screened = screen(proposal(scale(8, wanted(t))), &w, log, &c, 0, &s);
        if let Next::Candidate(cand) = screened.next
            && let Command::Record { decision, .. } = conclude(cand, None, &w, &c, "n1", &s)
        {
            let id = log.len() as u64 + 1;
            log.insert(0, Decision { id, ..*decision });
        }
    }
}

#[test]
fn a_capped_slice_is_said_once_not_every_tick() {
    // 90 s saturated at max=8: one rejected decision, not 90.
    let mut log = Vec::new();
    saturate(&mut log, NOW, 90, |_| 27);
    assert_eq!(
        log.len(),
        1,
        "{:#?}",
        log.iter().map(|d| &d.status).collect::<Vec<_>>()
    );
    assert_eq!(
        log[0].status,
        DecisionStatus::Rejected {
            reason: "shop/web is at max=8 already (wanted 27)".into()
        }
    );
    // The wanted count wobbles a little: still nothing new. It moves a lot: said again, once.
    saturate(&mut log, NOW + 90_000, 60, |t| 25 + (t % 5) as u32);
    assert_eq!(log.len(), 1);
    saturate(&mut log, NOW + 150_000, 60, |_| 60);
    assert_eq!(log.len(), 2);
    assert_eq!(input(&log[0], "wanted"), Some("60"));
    // An hour of it: renewed every ten minutes, no more.
    saturate(&mut log, NOW + 210_000, 3_600, |_| 60);
    assert_eq!(
        log.len(),
        2 + 6,
        "{:?}",
        log.iter().map(|d| d.at).collect::<Vec<_>>()
    );

    // Shown as capped while it stands (since its first record), not once the slice moved.
    let at_eight = |_: &str, _: &str| Some(8);
    let now = log[0].at + 5_000;
    let caps = capped(&log, at_eight, now);
    assert_eq!(caps.len(), 1);
    let cap = &caps[0];
    assert_eq!(
        (
            cap.target.as_str(),
            cap.bound.as_str(),
            cap.limit,
            cap.wanted
        ),
        ("shop/web", "max", 8, Some(60))
    );
    assert_eq!((cap.since, cap.said), (NOW, log[0].at));
    assert_eq!(
        cap.to_string(),
        format!(
            "shop/web at max=8 (wanted 60) since {}",
            crate::domain::clock_time(NOW)
        )
    );
    assert!(
        capped(&log, |_, _| Some(5), now).is_empty(),
        "the slice is not at max now"
    );
    assert!(
        capped(&log, at_eight, now + 700_000).is_empty(),
        "not renewed: it ended"
    );
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
fn sleep_and_wake_of_a_node_are_one_target_with_its_drain() {
    let w = world(2, 2);
    let sleep = Action::Sleep {
        node: 2,
        name: "n2".into(),
    };
    let pending = DecisionStatus::Pending {
        deadline: NOW + 10_000,
    };
    let guarded = control(ControllerMode::Guarded);
    // An open sleep stands: the next tick's proposal records nothing new.
    let open = [decision(5, NOW - 1_000, sleep.clone(), pending.clone())];
    let s = screen(proposal(sleep.clone()), &w, &open, &guarded, 0, &settings());
    assert_eq!(
        s,
        Screened {
            close: None,
            next: Next::Stands
        }
    );
    // An open drain of the same node is superseded by a sleep of it, and the other way round.
    let drain = Action::Drain {
        node: 2,
        name: "n2".into(),
    };
    let open = [decision(6, NOW - 1_000, drain, pending)];
    let s = screen(proposal(sleep.clone()), &w, &open, &guarded, 0, &settings());
    assert!(
        matches!(s.close, Some(Command::Close { id: 6, .. })),
        "{s:?}"
    );
    // A veto of a sleep holds for the cooldown.
    let vetoed = DecisionStatus::Vetoed {
        at: NOW - 100_000,
        by: "op".into(),
        reason: None,
        reverted: None,
    };
    let log = [decision(7, NOW - 200_000, sleep.clone(), vetoed)];
    let c = context(&sleep, &w, &log, 0, &settings());
    assert_eq!(c.vetoed, Some(("d-7".into(), NOW - 100_000)));
    let s = screen(proposal(sleep.clone()), &w, &log, &guarded, 0, &settings());
    assert!(candidate(s).rejected.is_some());
    // A wake of n2 is another verb: the sleep's veto does not hold it.
    let wake = Action::Wake {
        node: 2,
        name: "n2".into(),
    };
    assert_eq!(context(&wake, &w, &log, 0, &settings()).vetoed, None);
    // A sleep still draining is converging.
    let mut w = w;
    w.nodes[1].state = NodeState::Draining;
    let log = [applied(8, NOW - 1_000, sleep.clone())];
    let c = context(&sleep, &w, &log, 0, &settings());
    assert_eq!(c.converging.as_deref(), Some("d-8: n2 is still draining"));
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
        operator: None,
        operator_hold_ms: 300_000,
        recent_decisions: 2,
        ready_nodes: 2,
        on_demand: false,
        to_zero_when_idle: false,
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
        advance(
            &decisions,
            &control(ControllerMode::Guarded),
            &world(2, 2),
            &s
        ),
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
        advance(&decisions, &paused, &world(2, 2), &s)[0],
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
    let o = judge(&late, &world(4, 3), &mut HashMap::new(), &mut startup, &s).expect("an outcome");
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

// ---------------------------------------------------------------------------------------------
// Requests: the brain over request figures, then the policy.

use crate::controller::brain::{Brain, FROM_ZERO, IDLE_TO_ZERO};
use crate::controller::forecast::ForecastConfig;

fn brain() -> Brain {
    let rules = rules::parse("assets/rules.toml", rules::DEFAULT_RULES).unwrap();
    Brain::new(rules, ForecastConfig::default(), 300)
}

/// A slice with a service: `calls` a second over `active` instances, p95 and p99 latency,
/// an error rate; no CPU sample; no forecast unless a test turns it on.
fn service(desired: u32, active: u32, calls: f64, (p95, p99): (f64, f64)) -> SliceView {
    SliceView {
        service: true,
        cpu_used: None,
        calls_per_s: Some(calls),
        latency_ms: (calls > 0.0).then_some(p95),
        latency_p99_ms: (calls > 0.0).then_some(p99),
        error_rate: (calls > 0.0).then_some(0.001),
        last_call_at: (calls > 0.0).then_some(NOW),
        predictive: Some(false),
        ..slice(desired, active)
    }
}

/// Feed the brain `secs` seconds of `s` ending at `end` (ms), the slice as `at(t)` makes it
/// for second `t` (ms); the world of the last second.
fn feed(b: &mut Brain, secs: u64, end: Millis, at: impl Fn(Millis) -> SliceView) -> World {
    let mut w = world(0, 0);
    for i in 0..secs {
        w.now = end - (secs - 1 - i) * 1_000;
        let mut s = at(w.now);
        if s.last_call_at.is_some() {
            s.last_call_at = Some(w.now);
        }
        w.slices = vec![s];
        b.observe(&w);
    }
    w
}

fn input<'a>(d: &'a Decision, key: &str) -> Option<&'a str> {
    d.inputs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[test]
fn calls_per_instance_over_target_scale_up_citing_the_numbers() {
    let mut b = brain();
    // 600 calls/s over 4 instances: 150 each against the default target of 100.
    let s = service(4, 4, 600.0, (80.0, 120.0));
    let w = feed(&mut b, 20, NOW, |_| s.clone());
    let p = b.propose(&w, 30);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(
        (p[0].rule.as_str(), &p[0].action),
        ("calls-high", &scale(4, 6))
    );
    let (d, apply) = decide_one(p[0].clone(), &w, &[], ControllerMode::Guarded);
    assert_eq!(
        (&d.status, apply),
        (
            &DecisionStatus::Pending {
                deadline: NOW + 30_000
            },
            false
        )
    );
    assert_eq!(
        d.reasoning[..3],
        [
            "calls/s per instance 150.00 > target 100.00 (band limit 110.00) for 19s",
            "6 instances bring it to the target: ceil(4 × 150.00 / 100.00)",
            "ingress: 600.00 calls/s over 4 active instances (150.00 per instance, target 100.00), \
             p95 80 ms, p99 120 ms, errors 0.1%",
        ]
    );
    for (k, v) in [
        ("calls_per_s", "600.00"),
        ("calls_per_instance", "150.00"),
        ("target_calls_per_instance", "100.00"),
        ("latency_p95_ms", "80"),
        ("latency_p99_ms", "120"),
        ("error_rate", "0.0010"),
        ("waiting", "0"),
        ("scaled_on", "calls_per_instance"),
    ] {
        assert_eq!(input(&d, k), Some(v), "{k}: {:?}", d.inputs);
    }
    // The slice's own target wins over the rules' default: 150 is within 160's band.
    let mut b = brain();
    let own = SliceView {
        target_calls_per_instance: Some(160.0),
        ..s.clone()
    };
    let w = feed(&mut b, 20, NOW, |_| own.clone());
    assert!(b.propose(&w, 30).is_empty());
}

#[test]
fn latency_over_target_scale_up_cites_calls_and_latency() {
    let mut b = brain();
    // Few calls per instance (20 against 100), but the p95 is twice the slice's target.
    let s = SliceView {
        target_latency_ms: Some(200.0),
        ..service(2, 2, 40.0, (412.0, 900.0))
    };
    let w = feed(&mut b, 29, NOW, |_| s.clone());
    assert!(b.propose(&w, 30).is_empty(), "held 28s of the 30s");
    let w = feed(&mut b, 3, NOW + 3_000, |_| s.clone());
    let p = b.propose(&w, 30);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(
        (p[0].rule.as_str(), &p[0].action),
        ("latency-high", &scale(2, 5))
    );
    let (d, _) = decide_one(p[0].clone(), &w, &[], ControllerMode::Auto);
    let text = d.reasoning.join("; ");
    for want in [
        "latency p95 412 ms > target 200 ms (band limit 220 ms) for 31s",
        "5 instances bring it to the target: ceil(2 × 412.00 / 200.00)",
        "ingress: 40.00 calls/s over 2 active instances (20.00 per instance, target 100.00), \
         p95 412 ms, p99 900 ms (target 200 ms)",
    ] {
        assert!(text.contains(want), "{want}\nin: {text}");
    }
    assert_eq!(input(&d, "scaled_on"), Some("latency_ms"));
    assert_eq!(input(&d, "target_latency_ms"), Some("200"));
    assert_eq!(input(&d, "latency_p99_ms"), Some("900"));
    // Converged, a minute on: judged on the latency it scaled on.
    let mut d = d;
    d.status = DecisionStatus::Applied {
        at: NOW,
        by: "n1".into(),
    };
    let mut later = World {
        slices: vec![SliceView {
            target_latency_ms: Some(200.0),
            ..service(5, 5, 40.0, (150.0, 300.0))
        }],
        ..w.clone()
    };
    let (mut converged, mut startup) = (HashMap::new(), 10_000);
    later.now = NOW + 20_000;
    assert_eq!(
        judge(&d, &later, &mut converged, &mut startup, &settings()),
        None
    );
    later.now = NOW + 80_000;
    let o = judge(&d, &later, &mut converged, &mut startup, &settings()).expect("an outcome");
    assert_eq!(
        (o.verdict.as_str(), o.detail.as_str()),
        (
            "as intended",
            "latency p95 412 ms → 150 ms (target 200 ms) with 5 instances"
        )
    );
}

#[test]
fn scale_from_zero_applies_at_once_in_guarded_mode() {
    let mut b = brain();
    let mut s = service(0, 0, 0.0, (0.0, 0.0));
    s.min = 0;
    s.waiting = 3;
    // One second is enough: no rule hold time.
    let mut w = feed(&mut b, 1, NOW, |_| s.clone());
    // Still stopping the instance of a scale to zero 2 s ago (converging), scaled up 20 s ago
    // (the up cooldown), and the rate limit reached: none of it holds a waiting client back.
    w.slices[0].active = 1;
    let earlier = [
        applied(9, NOW - 2_000, scale(1, 0)),
        applied(8, NOW - 20_000, scale(0, 1)),
    ];
    let p = b.propose(&w, 30);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(
        (p[0].rule.as_str(), &p[0].action),
        (FROM_ZERO, &scale(0, 1))
    );
    assert_eq!(on_demand(&p[0].action, &w), Some(3));
    let (c, st) = (control(ControllerMode::Guarded), settings());
    let cand = candidate(screen(p[0].clone(), &w, &earlier, &c, 6, &st));
    assert!(!cand.wants_review(), "a client is waiting: no review");
    let Command::Record { decision: d, apply } = conclude(cand, None, &w, &c, "n1", &st) else {
        panic!("not a record")
    };
    assert_eq!(
        (&d.status, apply),
        (&DecisionStatus::Pending { deadline: NOW }, true)
    );
    assert_eq!(d.layers, ["scaling:from_zero", "safety"]);
    assert_eq!(
        d.reasoning[0],
        "3 requests waiting at the ingress; min = 0: an instance starts on demand"
    );
    assert_eq!(
        d.reasoning.last().unwrap(),
        "applied at once, without the grace window: a client is waiting and min = 0 declares \
         start on demand"
    );
    assert_eq!(input(&d, "waiting"), Some("3"));
    // In propose mode it stays a proposal, and says so.
    let c = control(ControllerMode::Propose);
    let cand = candidate(screen(p[0].clone(), &w, &earlier, &c, 0, &st));
    let Command::Record { decision: d, apply } = conclude(cand, None, &w, &c, "n1", &st) else {
        panic!("not a record")
    };
    assert_eq!((&d.status, apply), (&DecisionStatus::Proposed, false));
    assert!(
        d.reasoning
            .last()
            .unwrap()
            .starts_with("mode propose: a proposal only"),
        "{:?}",
        d.reasoning
    );
    // Max = 0 (the slice is switched off): rejected, not started.
    w.slices[0].max = 0;
    let cand = candidate(screen(
        p[0].clone(),
        &w,
        &[],
        &control(ControllerMode::Guarded),
        0,
        &st,
    ));
    assert!(!cand.wants_review());
    let Command::Record { decision: d, apply } =
        conclude(cand, None, &w, &control(ControllerMode::Guarded), "n1", &st)
    else {
        panic!("not a record")
    };
    assert!(
        matches!(d.status, DecisionStatus::Rejected { .. }) && !apply,
        "{:?}",
        d.status
    );
}

#[test]
fn idle_to_zero_after_the_idle_time_and_not_before() {
    const IDLE: u64 = 600_000;
    let idle = |calls: f64| {
        let mut s = service(1, 1, calls, (20.0, 40.0));
        s.min = 0;
        s.idle_to_zero_ms = Some(IDLE);
        if calls == 0.0 {
            // The metrics window no longer holds the last call.
            s.last_call_at = None;
        }
        s
    };
    let start = NOW - 2_000_000;
    let mut b = brain();
    // Calls for a minute, then none: idle counts from the last call the brain saw.
    feed(&mut b, 60, start + 59_000, |_| idle(5.0));
    let last_call = start + 59_000;
    let w = feed(&mut b, 599, last_call + 599_000, |_| idle(0.0));
    assert!(b.propose(&w, 30).is_empty(), "599 s without a request");
    let w = feed(&mut b, 1, last_call + IDLE, |_| idle(0.0));
    let p = b.propose(&w, 30);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(
        (p[0].rule.as_str(), &p[0].action),
        (IDLE_TO_ZERO, &scale(1, 0))
    );
    assert_eq!(
        p[0].reasoning[0],
        "no request for 10m0s (idle_to_zero 10m0s): the last one came 10m0s ago"
    );
    // A scale-in like any other: the grace window applies.
    let mut w = w;
    w.now = last_call + IDLE;
    let c = control(ControllerMode::Guarded);
    let cand = candidate(screen(p[0].clone(), &w, &[], &c, 0, &settings()));
    assert!(cand.wants_review());
    let Command::Record { decision: d, apply } = conclude(cand, None, &w, &c, "n1", &settings())
    else {
        panic!("not a record")
    };
    assert_eq!(
        (&d.status, apply),
        (
            &DecisionStatus::Pending {
                deadline: w.now + 30_000
            },
            false
        )
    );
    // A request after it was decided withdraws it before its deadline.
    let mut open = *d;
    open.id = 12;
    let mut woke = w.clone();
    woke.now += 5_000;
    woke.slices[0].last_call_at = Some(woke.now - 1_000);
    assert_eq!(
        advance(&[open], &c, &woke, &settings()),
        vec![Command::Close {
            id: 12,
            status: DecisionStatus::Superseded {
                reason: "a request came 4s after it was decided: no longer idle".into()
            }
        }]
    );

    // A node that has seen the slice's figures for less than idle_to_zero does not take the
    // silence before for quiet; a gap in the figures starts the cover again.
    let mut b = brain();
    let w = feed(&mut b, 300, NOW - 400_000, |_| idle(0.0));
    assert!(b.propose(&w, 30).is_empty());
    let gap = |_| SliceView {
        calls_per_s: None,
        ..idle(0.0)
    };
    feed(&mut b, 10, NOW - 390_000, gap);
    let w = feed(&mut b, 390, NOW, |_| idle(0.0));
    assert!(b.propose(&w, 30).is_empty(), "covered 389 s since the gap");
    let w = feed(&mut b, 211, NOW + 211_000, |_| idle(0.0));
    let p = b.propose(&w, 30);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(
        p[0].reasoning[0],
        "no request for 10m0s (idle_to_zero 10m0s): none since this node began to receive the \
         slice's traffic figures"
    );
    // Without idle_to_zero a rule never empties a slice: calls-low stops at 1.
    let mut b = brain();
    let w = feed(&mut b, 900, NOW, |_| SliceView {
        idle_to_zero_ms: None,
        ..idle(0.0)
    });
    assert!(b.propose(&w, 30).is_empty());
}

#[test]
fn a_high_error_rate_holds_a_scale_in_back() {
    // 40 calls/s over 4 instances: calls-low after 2 minutes, to 1 (the recommendation).
    let quiet = service(4, 4, 40.0, (20.0, 40.0));
    let mut b = brain();
    let w = feed(&mut b, 200, NOW, |_| quiet.clone());
    let p = b.propose(&w, 30);
    assert_eq!(
        (p[0].rule.as_str(), &p[0].action),
        ("calls-low", &scale(4, 1))
    );
    // Failing: the same figures with 20 % errors propose nothing.
    let failing = SliceView {
        error_rate: Some(0.2),
        ..quiet.clone()
    };
    let mut b = brain();
    let w = feed(&mut b, 200, NOW, |_| failing.clone());
    assert!(b.propose(&w, 30).is_empty());
    // Nor does a slice whose latency is over its target.
    let slow = SliceView {
        target_latency_ms: Some(200.0),
        latency_ms: Some(210.0),
        ..quiet
    };
    let mut b = brain();
    let w = feed(&mut b, 200, NOW, |_| slow.clone());
    assert!(b.propose(&w, 30).is_empty());
}

#[test]
fn the_forecast_learns_calls_and_never_scales_in_alone() {
    let mut b = brain();
    // 4 instances; calls fall from 400 to 250 a second over 5 minutes (per instance 100 → 62):
    // the forecast sees the fall coming, the measured load stays above the band's lower edge
    // (90 per instance) for the first 100 s.
    let s = |t: Millis| SliceView {
        predictive: Some(true),
        ..service(
            4,
            4,
            400.0 - 0.5 * ((t - (NOW - 299_000)) / 1_000) as f64,
            (20.0, 40.0),
        )
    };
    for i in 0..300u64 {
        let w = feed(&mut b, 1, NOW - 299_000 + i * 1_000, s);
        let measured = w.slices[0].value(Metric::CallsPerInstance).unwrap();
        for p in b.propose(&w, 60) {
            assert!(
                p.rule != "forecast" || p.action.verb() == "scale_up",
                "a scale-in on a forecast alone at {i}s: {p:?}"
            );
            if measured > 90.0 {
                assert_ne!(p.action.verb(), "scale_down", "measured {measured}: {p:?}");
            }
        }
    }
    assert_eq!(b.load_unit("shop/web"), "calls/s");
    let f = b.forecaster("shop/web").expect("a forecaster");
    let level = f.level().unwrap();
    assert!(
        (240.0..=300.0).contains(&level),
        "learns calls/s, not cores: level {level}"
    );
}

#[test]
fn an_operators_count_holds_a_scale_in_back_and_says_so() {
    // The operator scaled shop/web to 6 two minutes ago; the blueprint's down cooldown is 5m.
    let mut w = world(6, 6);
    w.slices[0].down_cooldown_ms = Some(300_000);
    w.slices[0].count_set_at = Some(NOW - 120_000);
    let c = control(ControllerMode::Guarded);
    // The configured defaults: a step may be 4 or 200 %, a scale-in 2 or 50 %.
    let mut s = settings();
    s.bounds.max_step = 4;
    s.bounds.max_step_percent = 200;
    s.bounds.max_step_down = 2;
    s.bounds.max_step_down_percent = 50;
    let screened = screen(proposal(scale(6, 1)), &w, &[], &c, 0, &s);
    let cand = candidate(screened);
    let Command::Record { decision, apply } = conclude(cand, None, &w, &c, "n1", &s) else {
        panic!("not a record");
    };
    assert!(!apply);
    let reason = format!(
        "held: the operator set shop/web to 6 at {}; no scale-in below 6 until {} \
         (controller.operator_hold, at least the down cooldown)",
        crate::domain::clock_time(NOW - 120_000),
        crate::domain::clock_time(NOW + 180_000)
    );
    assert_eq!(
        decision.status,
        DecisionStatus::Rejected {
            reason: reason.clone()
        }
    );
    assert!(decision.reasoning.last().unwrap().ends_with(&reason));
    // Said once: the next ticks of the hold are quiet.
    let log = [Decision { id: 9, ..*decision }];
    let mut later = w.clone();
    later.now = NOW + 60_000;
    let again = screen(proposal(scale(6, 1)), &later, &log, &c, 0, &s);
    assert_eq!(again.next, Next::Quiet);

    // A scale-up is not held.
    let up = screen(proposal(scale(6, 7)), &w, &[], &c, 0, &s);
    assert!(matches!(up.next, Next::Candidate(_)), "{:?}", up.next);

    // After the hold (and the cooldown, counted from the operator's scale): one step of at
    // most max(max_step_down, max_step_down_percent) = 3 of 6, not 6 → 1 in one jump.
    let mut after = w.clone();
    after.now = NOW + 181_000;
    let cand = candidate(screen(proposal(scale(6, 1)), &after, &log, &c, 0, &s));
    assert_eq!(cand.proposal.action, scale(6, 3));
    assert!(
        cand.proposal
            .reasoning
            .iter()
            .any(|r| r.starts_with("clamped to a scale-in step of 3")),
        "{:?}",
        cand.proposal.reasoning
    );

    // The count set by the controller's own applied decision is no operator's: only the
    // down cooldown holds it (a quiet wait).
    let mut own = w.clone();
    own.slices[0].count_set_at = Some(NOW - 120_000);
    let ours = [applied(4, NOW - 120_000, scale(4, 6))];
    let held = screen(proposal(scale(6, 1)), &own, &ours, &c, 0, &s);
    assert!(
        matches!(
            held.next,
            Next::Held {
                reason: StopReason::Cooldown { up: false, .. },
                ..
            }
        ),
        "{:?}",
        held.next
    );
}
