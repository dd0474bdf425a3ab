//! Sleep and wake: consolidation within quorum, never_sleep and capacity; waking ahead by the
//! measured wake time; giving up on a node that does not come back.

use super::*;

const MIN: u64 = 60_000;

fn settings() -> Settings {
    Settings {
        idle_for_ms: 10 * MIN,
        resume_timeout_ms: 5 * MIN,
        target: 0.7,
        never_sleep: vec![],
    }
}

fn node(id: NodeId, voter: bool) -> PowerNode {
    PowerNode {
        id,
        name: format!("n{id}"),
        state: NodeState::Ready,
        live: true,
        voter,
        leader: false,
        cores: 4.0,
        used: 0.2,
        reserved: 0.0,
        instances: 0,
        seen_at: Some(0),
        power: None,
        spot: None,
        open: None,
    }
}

/// Four nodes, three of them voters; 16 cores.
fn four() -> Vec<PowerNode> {
    vec![node(1, true), node(2, true), node(3, true), node(4, false)]
}

fn quiet() -> Load {
    Load {
        measured: 1.0,
        forecast: vec![(5 * MIN, 1.5)],
    }
}

fn record(n: &PowerNode, state: PowerState, since: Millis, wake_ms: Option<u64>) -> PowerRecord {
    PowerRecord {
        node: n.id,
        name: n.name.clone(),
        state,
        since,
        wake_ms,
        reason: None,
    }
}

fn asleep(mut n: PowerNode, wake_ms: Option<u64>) -> PowerNode {
    n.state = NodeState::Asleep;
    n.live = false;
    n.power = Some(record(&n, PowerState::Asleep, 0, wake_ms));
    n
}

fn proposals(steps: &[Step]) -> Vec<&Proposal> {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::Propose(p) => Some(p),
            _ => None,
        })
        .collect()
}

#[test]
fn a_quiet_cluster_puts_one_node_to_sleep_after_idle_for() {
    let nodes = four();
    // No slices at all: nothing needed, written as such.
    let mut t = Tracker::default();
    plan(&nodes, &Load::default(), &settings(), &mut t, 0);
    let steps = plan(&nodes, &Load::default(), &settings(), &mut t, 10 * MIN);
    let text = proposals(&steps)[0].reasoning.join(" | ");
    assert!(
        text.contains("fits without n4: 0.0 cores needed now and 0.0 at"),
        "{text}"
    );
    let mut t = Tracker::default();
    let s = settings();
    assert!(plan(&nodes, &quiet(), &s, &mut t, 1_000).is_empty());
    assert_eq!(t.fits_since, Some(1_000));
    assert!(plan(&nodes, &quiet(), &s, &mut t, 1_000 + 10 * MIN - 1).is_empty());
    let steps = plan(&nodes, &quiet(), &s, &mut t, 1_000 + 10 * MIN);
    let p = proposals(&steps);
    assert_eq!(p.len(), 1);
    // The non-voter with nothing on it goes first (n4: the newest of the equals).
    assert_eq!(
        p[0].action,
        Action::Sleep {
            node: 4,
            name: "n4".into()
        }
    );
    assert_eq!(p[0].rule, RULE);
    let text = p[0].reasoning.join(" | ");
    assert!(
        text.contains("1.0 cores needed now and 1.5 at the forecast peak")
            && text.contains("12.0 cores left")
            && text.contains("for 10m")
            && text.contains("n4's wake time is not measured yet: 5m"),
        "{text}"
    );
    assert!(
        p[0].inputs
            .contains(&("forecast_peak".into(), "1.5".into()))
    );
}

#[test]
fn a_busy_moment_restarts_the_idle_window() {
    let nodes = four();
    let mut t = Tracker::default();
    let s = settings();
    plan(&nodes, &quiet(), &s, &mut t, 0);
    // 9 cores do not fit in 70% of 12.
    let busy = Load {
        measured: 9.0,
        forecast: vec![],
    };
    assert!(proposals(&plan(&nodes, &busy, &s, &mut t, 5 * MIN)).is_empty());
    assert_eq!(t.fits_since, None);
    assert!(proposals(&plan(&nodes, &quiet(), &s, &mut t, 11 * MIN)).is_empty());
    assert_eq!(
        proposals(&plan(&nodes, &quiet(), &s, &mut t, 21 * MIN)).len(),
        1
    );
}

#[test]
fn a_forecast_peak_keeps_every_node_awake() {
    let nodes = four();
    let mut t = Tracker::default();
    let load = Load {
        measured: 1.0,
        forecast: vec![(MIN, 1.0), (30 * MIN, 9.0)],
    };
    for now in [0, 20 * MIN] {
        assert!(proposals(&plan(&nodes, &load, &settings(), &mut t, now)).is_empty());
    }
}

#[test]
fn never_below_a_majority_of_voters_awake() {
    // Three voters, one asleep already: the two awake voters are the majority, neither sleeps.
    let mut nodes = vec![node(1, true), node(2, true), asleep(node(3, true), None)];
    nodes.push(node(4, false));
    let mut t = Tracker::default();
    let s = settings();
    plan(&nodes, &quiet(), &s, &mut t, 0);
    let steps = plan(&nodes, &quiet(), &s, &mut t, 10 * MIN);
    let p = proposals(&steps);
    assert_eq!(p.len(), 1);
    assert!(
        matches!(p[0].action, Action::Sleep { node: 4, .. }),
        "{p:?}"
    );
    // Without n4 nothing may sleep.
    nodes.pop();
    let mut t = Tracker::default();
    plan(&nodes, &quiet(), &s, &mut t, 0);
    assert!(proposals(&plan(&nodes, &quiet(), &s, &mut t, 10 * MIN)).is_empty());
}

#[test]
fn a_voter_may_sleep_when_a_majority_stays_and_says_so() {
    let nodes: Vec<PowerNode> = (1..=4).map(|i| node(i, i <= 3)).collect();
    let s = Settings {
        never_sleep: vec!["n4".into()],
        ..settings()
    };
    let mut t = Tracker::default();
    plan(&nodes, &quiet(), &s, &mut t, 0);
    let steps = plan(&nodes, &quiet(), &s, &mut t, 10 * MIN);
    let p = proposals(&steps);
    assert!(
        matches!(p[0].action, Action::Sleep { node: 3, .. }),
        "{p:?}"
    );
    assert!(
        p[0].reasoning
            .iter()
            .any(|r| r == "2 of 3 voters stay awake, a majority"),
        "{:?}",
        p[0].reasoning
    );
}

#[test]
fn the_leader_never_sleeps() {
    let mut nodes = vec![node(1, false), node(2, false)];
    nodes[1].leader = true;
    nodes[0].reserved = 3.5;
    let mut t = Tracker::default();
    let load = Load::default();
    plan(&nodes, &load, &settings(), &mut t, 0);
    // n2 has nothing on it but leads; n1's 3.5 reserved cores fit on n2.
    let steps = plan(&nodes, &load, &settings(), &mut t, 10 * MIN);
    let p = proposals(&steps);
    assert!(
        matches!(p[0].action, Action::Sleep { node: 1, .. }),
        "{p:?}"
    );
}

#[test]
fn never_sleep_and_instances_that_cannot_move_are_respected() {
    let mut nodes = vec![node(1, true), node(2, false)];
    nodes[0].cores = 8.0;
    nodes[0].reserved = 7.5;
    nodes[0].instances = 3;
    let s = Settings {
        never_sleep: vec!["n2".into()],
        ..settings()
    };
    let mut t = Tracker::default();
    let load = Load {
        measured: 0.5,
        forecast: vec![],
    };
    plan(&nodes, &load, &s, &mut t, 0);
    // n1's 7.5 reserved cores do not fit in n2's 4; n2 never sleeps.
    assert!(proposals(&plan(&nodes, &load, &s, &mut t, 10 * MIN)).is_empty());
}

#[test]
fn one_change_at_a_time() {
    let mut nodes = four();
    nodes[3].state = NodeState::Draining;
    nodes[3].power = Some(record(&nodes[3], PowerState::Sleeping, 0, None));
    let mut t = Tracker::default();
    plan(&nodes, &quiet(), &settings(), &mut t, 0);
    assert!(proposals(&plan(&nodes, &quiet(), &settings(), &mut t, 20 * MIN)).is_empty());
}

#[test]
fn a_drained_sleeping_node_is_suspended() {
    let mut nodes = four();
    nodes[3].state = NodeState::Drained;
    nodes[3].power = Some(record(&nodes[3], PowerState::Sleeping, 0, None));
    let steps = plan(&nodes, &quiet(), &settings(), &mut Tracker::default(), MIN);
    assert_eq!(
        steps[0],
        Step::Suspend {
            node: 4,
            name: "n4".into()
        }
    );
}

#[test]
fn the_forecast_wakes_a_node_ahead_by_its_measured_wake_time() {
    let nodes = vec![
        node(1, true),
        node(2, true),
        node(3, true),
        asleep(node(4, false), Some(2 * MIN)),
    ];
    // 12 awake cores at 70%: 8.4. The peak of 10 cores is 3 minutes away.
    let load = Load {
        measured: 5.0,
        forecast: vec![(MIN, 6.0), (3 * MIN, 10.0)],
    };
    let mut t = Tracker::default();
    // More than the 2-minute wake time ahead: not yet.
    assert!(proposals(&plan(&nodes, &load, &settings(), &mut t, 0)).is_empty());
    // Within it: wake now.
    let steps = plan(&nodes, &load, &settings(), &mut t, MIN + 1);
    let p = proposals(&steps);
    assert_eq!(
        p[0].action,
        Action::Wake {
            node: 4,
            name: "n4".into()
        }
    );
    let text = p[0].reasoning.join(" | ");
    assert!(
        text.contains(
            "the forecast reaches 10.0 cores within 2m0s, above 70% of the 12.0 awake cores (8.4)"
        ) && text.contains("n4 woke in 2m0s last time"),
        "{text}"
    );
    assert!(p[0].inputs.contains(&("wake_lead".into(), "2m0s".into())));
}

#[test]
fn measured_load_wakes_the_quickest_sleeper() {
    let nodes = vec![
        node(1, true),
        asleep(node(2, true), None),
        asleep(node(3, false), Some(40_000)),
    ];
    let load = Load {
        measured: 3.5,
        forecast: vec![],
    };
    let steps = plan(&nodes, &load, &settings(), &mut Tracker::default(), 0);
    let p = proposals(&steps);
    assert!(matches!(p[0].action, Action::Wake { node: 3, .. }), "{p:?}");
    assert!(
        p[0].reasoning[0].contains("the slices need 3.5 cores, above 70% of the 4.0 awake cores"),
        "{:?}",
        p[0].reasoning
    );
}

#[test]
fn a_waking_node_is_resumed_then_recorded_back_with_its_wake_time() {
    let mut n = node(4, false);
    n.state = NodeState::Asleep;
    n.live = false;
    n.seen_at = Some(500);
    n.power = Some(record(&n, PowerState::Waking, 1_000, Some(MIN)));
    let mut nodes = vec![node(1, true), node(2, true), node(3, true), n];
    let s = settings();
    let steps = plan(&nodes, &quiet(), &s, &mut Tracker::default(), 2_000);
    assert_eq!(
        steps[0],
        Step::Resume {
            node: 4,
            name: "n4".into(),
            since: 1_000
        }
    );
    nodes[3].live = true;
    nodes[3].seen_at = Some(96_000);
    let steps = plan(&nodes, &quiet(), &s, &mut Tracker::default(), 97_000);
    match &steps[0] {
        Step::Record { record, state } => {
            assert_eq!(record.state, PowerState::Awake);
            assert_eq!(record.wake_ms, Some(95_000));
            assert_eq!(*state, Some(NodeState::Ready));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_node_not_back_within_resume_timeout_is_marked_down_and_not_counted_on() {
    let mut n = node(4, false);
    n.state = NodeState::Asleep;
    n.live = false;
    n.power = Some(record(&n, PowerState::Waking, 0, None));
    let mut nodes = vec![node(1, true), n];
    let s = settings();
    assert!(matches!(
        plan(&nodes, &quiet(), &s, &mut Tracker::default(), 5 * MIN)[0],
        Step::Resume { .. }
    ));
    let steps = plan(&nodes, &quiet(), &s, &mut Tracker::default(), 5 * MIN + 1);
    let Step::Record { record, state } = &steps[0] else {
        panic!("{steps:?}")
    };
    assert_eq!(record.state, PowerState::Down);
    assert_eq!(*state, None);
    let why = record.reason.as_deref().unwrap();
    assert!(
        why.contains("not back 5m0s after its resume (power.resume_timeout 5m0s)"),
        "{why}"
    );
    // Down: never proposed to wake, even when the load needs it.
    nodes[1].power = Some(record.clone());
    let busy = Load {
        measured: 3.9,
        forecast: vec![],
    };
    assert!(proposals(&plan(&nodes, &busy, &s, &mut Tracker::default(), 6 * MIN)).is_empty());
}

#[test]
fn slice_forecasts_become_cluster_cores() {
    // 2 cores now; a slice of 1 core at 10 calls/s expected at 30, another of 0.5 cores
    // expected at half its load.
    let parts = vec![
        (1.0, 10.0, vec![(1_000, 10.0), (2_000, 30.0)]),
        (0.5, 4.0, vec![(2_000, 2.0)]),
    ];
    assert_eq!(
        forecast_cores(2.0, &parts),
        vec![(1_000, 2.0), (2_000, 2.0 + 2.0 - 0.25)]
    );
}

#[test]
fn a_node_that_does_not_drain_or_is_undrained_stays_awake() {
    let mut nodes = four();
    nodes[3].state = NodeState::Draining;
    nodes[3].power = Some(record(&nodes[3], PowerState::Sleeping, 0, Some(MIN)));
    let s = settings();
    assert!(plan(&nodes, &quiet(), &s, &mut Tracker::default(), 5 * MIN).is_empty());
    let steps = plan(&nodes, &quiet(), &s, &mut Tracker::default(), 5 * MIN + 1);
    let Step::Record { record, state } = &steps[0] else {
        panic!("{steps:?}")
    };
    assert_eq!(
        (record.state, *state, record.wake_ms),
        (PowerState::Awake, Some(NodeState::Ready), Some(MIN))
    );
    assert!(
        record
            .reason
            .as_deref()
            .unwrap()
            .contains("not drained within 5m0s")
    );
    // An operator's undrain: awake again, the node's state left as the operator set it.
    nodes[3].state = NodeState::Ready;
    let steps = plan(&nodes, &quiet(), &s, &mut Tracker::default(), MIN);
    assert!(
        matches!(&steps[0], Step::Record { record, state: None } if record.state == PowerState::Awake),
        "{steps:?}"
    );
}

#[test]
fn a_down_node_that_comes_back_is_counted_on_again() {
    let mut n = node(4, false);
    n.state = NodeState::Asleep;
    n.live = false;
    n.seen_at = Some(500);
    n.power = Some(record(&n, PowerState::Down, 1_000, None));
    let mut nodes = vec![node(1, true), n];
    let s = settings();
    assert!(plan(&nodes, &quiet(), &s, &mut Tracker::default(), 2_000).is_empty());
    nodes[1].live = true;
    nodes[1].seen_at = Some(3_000);
    let steps = plan(&nodes, &quiet(), &s, &mut Tracker::default(), 3_500);
    assert!(
        matches!(&steps[0], Step::Record { record, state: Some(NodeState::Ready) } if record.state == PowerState::Awake),
        "{steps:?}"
    );
}

fn sleep_of(n: NodeId) -> Action {
    Action::Sleep {
        node: n,
        name: format!("n{n}"),
    }
}

#[test]
fn an_open_sleep_is_the_only_sleep_proposed_while_it_is_open() {
    let mut nodes = four();
    // A sleep of n3 is pending; n4 would now be the cheaper one to move.
    nodes[2].open = Some(sleep_of(3));
    let s = settings();
    let mut t = Tracker::default();
    plan(&nodes, &quiet(), &s, &mut t, 0);
    let steps = plan(&nodes, &quiet(), &s, &mut t, 10 * MIN);
    let p = proposals(&steps);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].action, sleep_of(3), "the open one again (it stands)");
    // Once n3 no longer fits (it holds what cannot move), no other node is proposed.
    nodes[2].reserved = 20.0;
    let steps = plan(&nodes, &quiet(), &s, &mut Tracker::default(), 0);
    assert!(proposals(&steps).is_empty(), "{steps:?}");
    // An open wake holds every sleep back, and a drain decided on a node keeps it awake.
    let mut nodes = four();
    nodes[0] = asleep(node(1, true), None);
    nodes[0].open = Some(Action::Wake {
        node: 1,
        name: "n1".into(),
    });
    let mut t = Tracker::default();
    plan(&nodes, &Load::default(), &s, &mut t, 0);
    assert!(proposals(&plan(&nodes, &Load::default(), &s, &mut t, 20 * MIN)).is_empty());
    let mut nodes = four();
    nodes[3].open = Some(Action::Drain {
        node: 4,
        name: "n4".into(),
    });
    let mut t = Tracker::default();
    plan(&nodes, &quiet(), &s, &mut t, 0);
    let steps = plan(&nodes, &quiet(), &s, &mut t, 10 * MIN);
    assert_eq!(proposals(&steps)[0].action, sleep_of(3));
}

#[test]
fn nothing_more_is_woken_while_a_node_wakes() {
    let mut waking = asleep(node(3, false), Some(40_000));
    waking.power = Some(record(&waking, PowerState::Waking, 0, Some(40_000)));
    let nodes = vec![node(1, true), asleep(node(2, true), None), waking];
    // The load needs more than the one awake node, every tick while n3 wakes.
    let load = Load {
        measured: 3.5,
        forecast: vec![],
    };
    let steps = plan(&nodes, &load, &settings(), &mut Tracker::default(), 1_000);
    assert!(proposals(&steps).is_empty(), "{steps:?}");
    assert!(matches!(steps[0], Step::Resume { node: 3, .. }));
    // The same with a wake decided but not applied yet.
    let mut nodes = nodes;
    nodes[2] = asleep(node(3, false), Some(40_000));
    nodes[2].open = Some(Action::Wake {
        node: 3,
        name: "n3".into(),
    });
    let steps = plan(&nodes, &load, &settings(), &mut Tracker::default(), 1_000);
    assert!(proposals(&steps).is_empty(), "{steps:?}");
}

#[test]
fn spot_notices_keep_nodes_awake_and_interruptions_stop_consolidation() {
    let s = settings();
    // A rebalance recommendation on n4: the next cheapest sleeps instead.
    let mut nodes = four();
    nodes[3].spot = Some(SpotKind::Rebalance);
    let mut t = Tracker::default();
    plan(&nodes, &quiet(), &s, &mut t, 0);
    let steps = plan(&nodes, &quiet(), &s, &mut t, 10 * MIN);
    assert_eq!(proposals(&steps)[0].action, sleep_of(3));
    // An interruption anywhere: nothing is consolidated.
    nodes[3].spot = Some(SpotKind::Interruption {
        action: "terminate".into(),
    });
    let mut t = Tracker::default();
    plan(&nodes, &quiet(), &s, &mut t, 0);
    assert!(proposals(&plan(&nodes, &quiet(), &s, &mut t, 20 * MIN)).is_empty());
    // A node going to sleep that did not drain in time stays awake, its drain left alone.
    nodes[3].state = NodeState::Draining;
    nodes[3].power = Some(record(&nodes[3], PowerState::Sleeping, 0, None));
    let steps = plan(&nodes, &quiet(), &s, &mut Tracker::default(), 5 * MIN + 1);
    assert!(
        matches!(&steps[0], Step::Record { record, state: None } if record.state == PowerState::Awake),
        "{steps:?}"
    );
}

#[test]
fn the_leader_is_never_suspended_after_a_failover() {
    let mut nodes = four();
    nodes[3].state = NodeState::Drained;
    nodes[3].power = Some(record(&nodes[3], PowerState::Sleeping, 0, None));
    nodes[3].leader = true;
    let steps = plan(&nodes, &quiet(), &settings(), &mut Tracker::default(), MIN);
    let Step::Record { record, state } = &steps[0] else {
        panic!("{steps:?}")
    };
    assert_eq!(
        (record.state, *state),
        (PowerState::Awake, Some(NodeState::Ready))
    );
    let why = record.reason.as_deref().unwrap();
    assert!(why.contains("n4 leads the cluster now"), "{why}");
    assert!(!steps.iter().any(|s| matches!(s, Step::Suspend { .. })));
}

#[test]
fn a_leader_without_power_names_what_is_stuck_and_the_remedy() {
    let n = |id| node(id, false);
    let records = [
        record(&n(2), PowerState::Asleep, 0, None),
        record(&n(3), PowerState::Awake, 0, None),
        record(&n(4), PowerState::Sleeping, 0, None),
        record(&n(5), PowerState::Down, 0, None),
    ];
    let m = stuck_without_power(&records, "n1").unwrap();
    assert!(
        m.starts_with(
            "n2 is asleep, n4 is going to sleep but [power] is not enabled on this leader (n1)"
        ) && m.ends_with("enable [power] with the same settings on every node that may lead"),
        "{m}"
    );
    assert_eq!(stuck_without_power(&records[1..2], "n1"), None);
}
