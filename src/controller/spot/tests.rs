use super::*;
use crate::controller::world::NodeView;
use crate::domain::{ControllerMode, Pause};

const T0: Millis = 1_796_000_000_000;

fn notice(kind: SpotKind, at: Millis, source: &str) -> SpotNotice {
    SpotNotice {
        kind,
        at,
        source: source.into(),
    }
}

fn terminate(at: Millis) -> SpotNotice {
    notice(
        SpotKind::Interruption {
            action: "terminate".into(),
        },
        at,
        "aws",
    )
}

fn node(id: NodeId, state: NodeState) -> NodeView {
    NodeView {
        id,
        name: format!("n{id}"),
        state,
        live: true,
        cpu: 0.5,
        mem: 0.2,
        gpu_util: None,
        gpu_temp: None,
        anomalies: 0,
        drained_by_controller: false,
        gpu_health: None,
    }
}

fn world(now: Millis, states: &[(NodeId, NodeState)]) -> World {
    World {
        now,
        slices: vec![],
        nodes: states.iter().map(|(i, s)| node(*i, *s)).collect(),
    }
}

fn on(node: Option<NodeId>, handoff: Option<NodeId>) -> Assignment {
    Assignment {
        node,
        handoff,
        pending: None,
        since: T0,
        placement: 1,
        version: 1,
    }
}

#[test]
fn instance_action_and_rebalance_answers_parse() {
    let n = parse_instance_action(
        br#"{"action": "terminate", "time": "2026-12-05T05:12:02Z"}"#,
        "aws",
    )
    .unwrap();
    assert_eq!(
        n.kind,
        SpotKind::Interruption {
            action: "terminate".into()
        }
    );
    assert_eq!(clock_time(n.at), "05:12:02Z");
    let r = parse_rebalance(br#"{"noticeTime": "2026-12-05T05:10:00Z"}"#, "aws").unwrap();
    assert_eq!(r.kind, SpotKind::Rebalance);
    assert_eq!(clock_time(r.at), "05:10:00Z");
    // An interruption outranks a recommendation.
    assert_eq!(observed(Some(n.clone()), Some(r.clone())), Some(n));
    assert_eq!(observed(None, Some(r.clone())), Some(r));
}

#[test]
fn bad_answers_say_what_was_expected() {
    let e = parse_instance_action(b"<html>busy</html>", "aws").unwrap_err();
    assert!(e.to_string().contains(r#""action": "terminate""#), "{e}");
    assert!(e.to_string().contains("<html>busy</html>"), "{e}");
    let e = parse_instance_action(br#"{"action": "stop", "time": "soon"}"#, "aws").unwrap_err();
    assert_eq!(
        e,
        NoticeError::Time {
            field: "time",
            found: "soon".into()
        }
    );
    assert!(parse_rebalance(br#"{"other": 1}"#, "aws").is_err());
}

#[test]
fn the_loop_writes_changes_only_and_never_clears_a_drills_notice() {
    let aws = terminate(T0);
    let drill = notice(aws.kind.clone(), T0, crate::domain::SPOT_DRILL_SOURCE);
    assert_eq!(to_write(Some(&aws), None, "aws"), Some(Some(aws.clone())));
    assert_eq!(to_write(Some(&aws), Some(&aws), "aws"), None);
    assert_eq!(to_write(None, Some(&aws), "aws"), Some(None));
    assert_eq!(to_write(None, None, "aws"), None);
    assert_eq!(to_write(None, Some(&drill), "aws"), None);
    // A rebalance recommendation never replaces a drill's interruption (its own, yes).
    let rebalance = notice(SpotKind::Rebalance, T0, "aws");
    assert_eq!(to_write(Some(&rebalance), Some(&drill), "aws"), None);
    assert_eq!(
        to_write(Some(&rebalance), Some(&aws), "aws"),
        Some(Some(rebalance.clone()))
    );
    // What the cloud says replaces a drill's notice.
    assert_eq!(to_write(Some(&aws), Some(&drill), "aws"), Some(Some(aws)));
}

#[test]
fn an_interruption_drains_at_once_whatever_the_mode_and_cites_the_deadline() {
    let now = T0;
    let notices = BTreeMap::from([(2, terminate(now + 120_000))]);
    let w = world(now, &[(1, NodeState::Ready), (2, NodeState::Ready)]);
    let assignments = BTreeMap::from([
        ("app/web/0".to_string(), on(Some(2), None)),
        ("app/web/1".to_string(), on(Some(1), None)),
    ]);
    let control = ControlState {
        mode: ControllerMode::Observe,
        paused: Some(Pause {
            at: now,
            by: "op".into(),
            reason: None,
        }),
        ..ControlState::default()
    };
    let steps = interruptions(&notices, &w, &assignments, &[], &control, "controller@n1");
    let [
        Step::Interrupt {
            node: 2,
            drain: true,
            decision,
        },
    ] = steps.as_slice()
    else {
        panic!("{steps:?}");
    };
    assert_eq!(decision.rule, INTERRUPTION_RULE);
    assert!(matches!(decision.status, DecisionStatus::Applied { .. }));
    let text = decision.reasoning.join(" | ");
    let at = format!("terminated at {}", clock_time(now + 120_000));
    assert!(text.contains(&at), "{text}");
    assert!(text.contains("2m0s from now"), "{text}");
    assert!(text.contains("whatever the mode (observe)"), "{text}");
    assert!(text.contains("although the controller is paused"), "{text}");
    assert!(
        text.contains("app/web/0") && !text.contains("app/web/1"),
        "{text}"
    );
    // Recorded once per notice.
    let mut d = (**decision).clone();
    d.id = 7;
    let again = interruptions(
        &notices,
        &w,
        &assignments,
        std::slice::from_ref(&d),
        &control,
        "c",
    );
    assert_eq!(again, vec![]);
    // Only a notice with no decision among those given is undecided; the same decision found
    // further back counts as well as a recent one, another deadline's does not.
    assert_eq!(undecided(&notices, &[]), vec![(2, &notices[&2])]);
    assert!(undecided(&notices, std::slice::from_ref(&d)).is_empty());
    assert!(decides(&d, 2, &notices[&2]));
    assert!(!decides(&d, 2, &terminate(now + 240_000)));
    assert!(!decides(&d, 3, &notices[&2]));
}

#[test]
fn the_outcome_says_where_each_instance_went_once_all_moved() {
    let now = T0;
    let notices = BTreeMap::from([(2, terminate(now + 120_000))]);
    let w = world(now, &[(1, NodeState::Ready), (2, NodeState::Ready)]);
    let mut assignments = BTreeMap::from([("app/web/0".to_string(), on(Some(2), None))]);
    let steps = interruptions(
        &notices,
        &w,
        &assignments,
        &[],
        &ControlState::default(),
        "c",
    );
    let Step::Interrupt { decision, .. } = &steps[0] else {
        panic!()
    };
    let mut d = (**decision).clone();
    d.id = 3;
    // Handing off: not judged yet.
    assignments.insert("app/web/0".into(), on(Some(1), Some(2)));
    let later = world(
        now + 5_000,
        &[(1, NodeState::Ready), (2, NodeState::Draining)],
    );
    let steps = interruptions(
        &notices,
        &later,
        &assignments,
        std::slice::from_ref(&d),
        &ControlState::default(),
        "c",
    );
    assert_eq!(steps, vec![]);
    assignments.insert("app/web/0".into(), on(Some(1), None));
    let steps = interruptions(
        &notices,
        &later,
        &assignments,
        std::slice::from_ref(&d),
        &ControlState::default(),
        "c",
    );
    let [Step::Outcome { id: 3, outcome }] = steps.as_slice() else {
        panic!("{steps:?}")
    };
    assert_eq!(outcome.verdict, "as intended");
    assert_eq!(
        outcome.detail,
        "n2 drained after 5s, 1m55s before the deadline: app/web/0 → n1"
    );
}

#[test]
fn a_rebalance_is_proposed_for_ready_live_nodes_only() {
    let notices = BTreeMap::from([
        (1, notice(SpotKind::Rebalance, T0 - 3_000, "aws")),
        (2, notice(SpotKind::Rebalance, T0, "aws")),
        (3, terminate(T0 + 120_000)),
    ]);
    let w = world(
        T0,
        &[
            (1, NodeState::Ready),
            (2, NodeState::Draining),
            (3, NodeState::Ready),
        ],
    );
    let p = rebalance(&notices, &w);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].rule, REBALANCE_RULE);
    assert_eq!(
        p[0].action,
        Action::Drain {
            node: 1,
            name: "n1".into()
        }
    );
    assert!(p[0].reasoning[0].contains("3s ago"), "{:?}", p[0].reasoning);
}

#[test]
fn a_drain_not_done_a_minute_after_the_deadline_is_judged_as_it_stands() {
    let notices = BTreeMap::from([(2, terminate(T0 + 120_000))]);
    let w = world(T0, &[(1, NodeState::Ready), (2, NodeState::Ready)]);
    let assignments = BTreeMap::from([
        ("app/web/0".to_string(), on(Some(2), None)),
        ("app/web/1".to_string(), on(Some(2), None)),
    ]);
    let steps = interruptions(
        &notices,
        &w,
        &assignments,
        &[],
        &ControlState::default(),
        "c",
    );
    let Step::Interrupt { decision, .. } = &steps[0] else {
        panic!()
    };
    let mut d = (**decision).clone();
    d.id = 5;
    // One moved, one still there.
    let mut now = BTreeMap::from([
        ("app/web/0".to_string(), on(Some(1), None)),
        ("app/web/1".to_string(), on(Some(2), None)),
    ]);
    let at_deadline = world(
        T0 + 120_000,
        &[(1, NodeState::Ready), (2, NodeState::Draining)],
    );
    let judge = |w: &World, a: &BTreeMap<String, Assignment>| {
        interruptions(
            &notices,
            w,
            a,
            std::slice::from_ref(&d),
            &ControlState::default(),
            "c",
        )
    };
    assert_eq!(judge(&at_deadline, &now), vec![], "a minute's grace");
    let late = world(
        T0 + 181_000,
        &[(1, NodeState::Ready), (2, NodeState::Draining)],
    );
    let steps = judge(&late, &now);
    let [Step::Outcome { id: 5, outcome }] = steps.as_slice() else {
        panic!("{steps:?}")
    };
    assert_eq!(outcome.verdict, "not as intended");
    assert_eq!(
        outcome.detail,
        "n2 still held app/web/1 at the deadline; moved: app/web/0 → n1"
    );
    now.clear();
    assert!(matches!(judge(&late, &now)[0], Step::Outcome { .. }));
}
