//! State-machine tests that go through the dispatcher and more than one family.

use crate::domain::{Resources, Slice};

/// A slice `name` running `true`, `instances` of `min..=max`, with a tenth of a core and 1 MiB.
fn slice(name: &str, instances: u32, min: u32, max: u32) -> Slice {
    Slice {
        name: name.into(),
        command: vec!["true".into()],
        instances,
        min,
        max,
        env: Default::default(),
        resources: Resources {
            cpu: 0.1,
            memory: 1 << 20,
            gpu: 0,
        },
        stop_timeout_ms: 1000,
        health: None,
        scaling: None,
        service: None,
        update: None,
        user: None,
    }
}

mod control {
    //! The control family applied through the whole dispatcher.
    use super::super::apply::apply_command;
    use super::super::types::{Command, Response};
    use crate::domain::*;
    use crate::raft::store::Store;
    use crate::raft::types::ClusterInit;

    /// A store with a founder node `n1` and blueprint `shop` (slice `web`, 2 of 1..=8).
    fn store() -> (tempfile::TempDir, std::sync::Arc<Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let init = Command::InitCluster(ClusterInit {
            cluster_id: "c".into(),
            ca_cert_pem: String::new(),
            ca_key_pem: String::new(),
            founder_id: 1,
            founder_name: "n1".into(),
            founder_addr: "127.0.0.1:1".into(),
        });
        let bp = Blueprint {
            name: "shop".into(),
            slices: vec![super::slice("web", 2, 1, 8)],
        };
        run(&store, 0, "setup", init);
        run(&store, 0, "setup", Command::ApplyBlueprint(bp));
        (dir, store)
    }

    fn run(store: &Store, at: Millis, actor: &str, cmd: Command) -> Response {
        let txn = store.db.begin_write().unwrap();
        let r = apply_command(&txn, &cmd, at, actor).unwrap();
        txn.commit().unwrap();
        r
    }

    fn decision(status: DecisionStatus, mode: ControllerMode, to: u32) -> Command {
        let scale = Action::Scale {
            blueprint: "shop".into(),
            slice: "web".into(),
            from: 2,
            to,
        };
        Command::RecordDecision(Box::new(Decision {
            mode,
            layers: vec!["rules:cpu-high".into()],
            ..Decision::bare(0, 0, "n1", "cpu-high", scale, status)
        }))
    }

    /// An operator's `aether scale shop/web n`.
    fn scale(n: u32) -> Command {
        Command::ScaleSlice {
            blueprint: "shop".into(),
            slice: "web".into(),
            instances: n,
        }
    }

    fn instances(store: &Store) -> u32 {
        store.blueprints().unwrap()[0].blueprint.slices[0].instances
    }

    fn refused(r: Response) -> String {
        match r {
            Response::Refused(m) => m,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_veto_first_in_the_log_means_the_action_never_runs() {
        let (_d, s) = store();
        let pending = DecisionStatus::Pending { deadline: 15_000 };
        assert_eq!(
            run(
                &s,
                1_000,
                "n1",
                decision(pending, ControllerMode::Guarded, 4)
            ),
            Response::Decision(1)
        );
        // Not due yet: refused, nothing changes.
        let m = refused(run(&s, 10_000, "n1", Command::ApplyDecision { id: 1 }));
        assert!(m.contains("pending until its grace deadline"), "{m}");
        assert_eq!(instances(&s), 2);
        let veto = Command::VetoDecision {
            id: 1,
            reason: Some("no".into()),
        };
        assert_eq!(run(&s, 12_000, "uid:0@n2", veto), Response::Ok);
        // The leader's apply at the deadline comes after the veto in the log.
        let m = refused(run(&s, 15_000, "n1", Command::ApplyDecision { id: 1 }));
        assert!(m.contains("d-1 is already vetoed"), "{m}");
        assert_eq!(instances(&s), 2, "the vetoed scale never ran");
        let m = refused(run(&s, 16_000, "op", Command::ApproveDecision { id: 1 }));
        assert!(
            m.contains("already vetoed") && m.contains("by uid:0@n2"),
            "{m}"
        );
        let d = s.decision(1).unwrap().unwrap();
        assert!(
            d.timeline
                .iter()
                .any(|(_, t)| t == "vetoed by uid:0@n2: no")
        );
        let m = refused(run(
            &s,
            16_000,
            "op",
            Command::VetoDecision {
                id: 9,
                reason: None,
            },
        ));
        assert!(m.contains("no decision d-9"), "{m}");
    }

    #[test]
    fn an_apply_runs_once_and_only_when_due_and_not_paused() {
        let (_d, s) = store();
        let pending = DecisionStatus::Pending { deadline: 5_000 };
        run(
            &s,
            1_000,
            "n1",
            decision(pending, ControllerMode::Guarded, 4),
        );
        run(&s, 2_000, "op", Command::PauseController { reason: None });
        let m = refused(run(&s, 6_000, "n1", Command::ApplyDecision { id: 1 }));
        assert!(m.contains("paused"), "{m}");
        assert_eq!(
            run(&s, 6_500, "op", Command::ResumeController),
            Response::Ok
        );
        assert!(refused(run(&s, 6_600, "op", Command::ResumeController)).contains("not paused"));
        assert_eq!(
            run(&s, 7_000, "n1", Command::ApplyDecision { id: 1 }),
            Response::Ok
        );
        assert_eq!(instances(&s), 4);
        // A new leader that applies it again changes nothing.
        let m = refused(run(&s, 8_000, "n2", Command::ApplyDecision { id: 1 }));
        assert!(m.contains("already applied"), "{m}");
        // Guarded: an applied decision is final for a veto.
        let m = refused(run(
            &s,
            9_000,
            "op",
            Command::VetoDecision {
                id: 1,
                reason: None,
            },
        ));
        assert!(
            m.contains("already applied") && m.contains("guarded mode"),
            "{m}"
        );
        assert_eq!(instances(&s), 4);
    }

    #[test]
    fn a_stale_decision_is_superseded_and_an_auto_veto_reverts() {
        let (_d, s) = store();
        let due = DecisionStatus::Pending { deadline: 0 };
        run(
            &s,
            1_000,
            "n1",
            decision(due.clone(), ControllerMode::Auto, 5),
        );
        // An operator scaled meanwhile: the decision was made for 2 instances, not 3.
        assert!(matches!(
            run(&s, 1_100, "op", scale(3)),
            Response::Version(_)
        ));
        let m = refused(run(&s, 1_200, "n1", Command::ApplyDecision { id: 1 }));
        assert!(
            m.contains("superseded") && m.contains("has 3 instances now"),
            "{m}"
        );
        assert_eq!(instances(&s), 3);
        run(&s, 1_300, "op", scale(2));
        run(&s, 2_000, "n1", decision(due, ControllerMode::Auto, 5));
        assert_eq!(
            run(&s, 2_000, "n1", Command::ApplyDecision { id: 2 }),
            Response::Ok
        );
        assert_eq!(instances(&s), 5);
        let veto = Command::VetoDecision {
            id: 2,
            reason: None,
        };
        assert_eq!(run(&s, 3_000, "op", veto), Response::Ok);
        assert_eq!(instances(&s), 2, "the veto reverted the auto decision");
        match s.decision(2).unwrap().unwrap().status {
            DecisionStatus::Vetoed { reverted, .. } => assert_eq!(
                reverted.as_deref(),
                Some("reverted: shop/web back to 2 instances")
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn modes_that_wait_for_an_operator_turn_pending_into_proposed() {
        let (_d, s) = store();
        let pending = DecisionStatus::Pending { deadline: 5_000 };
        run(
            &s,
            1_000,
            "n1",
            decision(pending, ControllerMode::Guarded, 4),
        );
        let mode = Command::SetControllerMode {
            mode: ControllerMode::Propose,
            grace_ms: Some(30_000),
        };
        assert_eq!(run(&s, 2_000, "op", mode), Response::Ok);
        let c = s.control().unwrap();
        assert_eq!(
            (c.mode, c.grace_ms),
            (ControllerMode::Propose, Some(30_000))
        );
        assert_eq!(
            s.decision(1).unwrap().unwrap().status,
            DecisionStatus::Proposed
        );
        let m = refused(run(&s, 6_000, "n1", Command::ApplyDecision { id: 1 }));
        assert!(m.contains("only an operator's approve"), "{m}");
        assert_eq!(
            run(&s, 7_000, "op", Command::ApproveDecision { id: 1 }),
            Response::Ok
        );
        assert_eq!(instances(&s), 4);
        // The leader may only close open decisions, and only as a closing status.
        let close = Command::CloseDecision {
            id: 1,
            status: DecisionStatus::Expired {
                reason: "late".into(),
            },
        };
        assert!(refused(run(&s, 8_000, "n1", close)).contains("already applied"));
    }

    #[test]
    fn a_second_wake_of_a_waking_node_is_superseded_and_restarts_nothing() {
        let (_d, s) = store();
        let waking = PowerRecord {
            node: 1,
            name: "n1".into(),
            state: PowerState::Waking,
            since: 5_000,
            wake_ms: Some(30_000),
            reason: None,
        };
        let set = Command::SetPower {
            record: waking.clone(),
            state: Some(NodeState::Asleep),
        };
        assert_eq!(run(&s, 5_000, "power", set), Response::Ok);
        let wake = Action::Wake {
            node: 1,
            name: "n1".into(),
        };
        let d = Command::RecordDecision(Box::new(Decision {
            mode: ControllerMode::Propose,
            ..Decision::bare(0, 0, "n1", "power", wake, DecisionStatus::Proposed)
        }));
        assert_eq!(run(&s, 6_000, "n1", d), Response::Decision(1));
        let m = refused(run(&s, 7_000, "op", Command::ApproveDecision { id: 1 }));
        assert!(m.contains("node 'n1' is waking already"), "{m}");
        assert!(matches!(
            s.decision(1).unwrap().unwrap().status,
            DecisionStatus::Superseded { .. }
        ));
        // The resume's start, its timeout and the wake measurement are untouched.
        assert_eq!(s.power().unwrap()[&1], waking);
    }

    #[test]
    fn power_leaves_a_node_with_a_spot_notice_to_the_interruption_policy() {
        let (_d, s) = store();
        let add = Command::AddNode {
            name: "n2".into(),
            addr: "127.0.0.1:2".into(),
        };
        run(&s, 1_000, "setup", add);
        let n2 = s
            .nodes()
            .unwrap()
            .into_iter()
            .find(|n| n.name == "n2")
            .unwrap();
        run(
            &s,
            1_000,
            "setup",
            Command::SetNodeState {
                id: n2.id,
                state: NodeState::Ready,
            },
        );
        let notice = |kind| Command::SetSpotNotice {
            id: n2.id,
            name: "n2".into(),
            notice: Some(SpotNotice {
                kind,
                at: 9_000,
                source: "aws".into(),
            }),
        };
        let sleep = |mode| {
            let action = Action::Sleep {
                node: n2.id,
                name: "n2".into(),
            };
            Command::RecordDecision(Box::new(Decision {
                mode,
                ..Decision::bare(0, 0, "n1", "power", action, DecisionStatus::Proposed)
            }))
        };
        // With a notice it is not put to sleep.
        run(&s, 2_000, "n2", notice(SpotKind::Rebalance));
        assert_eq!(
            run(&s, 2_000, "n1", sleep(ControllerMode::Propose)),
            Response::Decision(1)
        );
        let m = refused(run(&s, 3_000, "op", Command::ApproveDecision { id: 1 }));
        assert!(m.contains("a spot notice"), "{m}");
        assert_eq!(s.nodes().unwrap()[1].state, NodeState::Ready);
        // Put to sleep before the notice came, then vetoed: awake, its drain left alone.
        let clear = Command::SetSpotNotice {
            id: n2.id,
            name: "n2".into(),
            notice: None,
        };
        run(&s, 4_000, "n2", clear);
        assert_eq!(
            run(&s, 4_000, "n1", sleep(ControllerMode::Auto)),
            Response::Decision(2)
        );
        assert_eq!(
            run(&s, 5_000, "op", Command::ApproveDecision { id: 2 }),
            Response::Ok
        );
        assert_eq!(s.power().unwrap()[&n2.id].state, PowerState::Sleeping);
        let interruption = SpotKind::Interruption {
            action: "terminate".into(),
        };
        run(&s, 6_000, "n2", notice(interruption));
        let veto = Command::VetoDecision {
            id: 2,
            reason: None,
        };
        assert_eq!(run(&s, 7_000, "op", veto), Response::Ok);
        assert_eq!(s.power().unwrap()[&n2.id].state, PowerState::Awake);
        let node = s
            .nodes()
            .unwrap()
            .into_iter()
            .find(|n| n.id == n2.id)
            .unwrap();
        assert_eq!(
            node.state,
            NodeState::Draining,
            "the interruption's drain goes on"
        );
        let DecisionStatus::Vetoed { reverted, .. } = s.decision(2).unwrap().unwrap().status else {
            panic!("not vetoed")
        };
        assert_eq!(
            reverted.as_deref(),
            Some("reverted: n2 stays awake; it stays draining (a spot notice)")
        );
    }

    #[test]
    fn a_decision_is_found_however_far_back_it_is() {
        let (_d, s) = store();
        for to in 3..=6 {
            let d = decision(DecisionStatus::Proposed, ControllerMode::Propose, to);
            run(&s, 1_000, "n1", d);
        }
        let to_of = |d: &Decision| matches!(d.action, Action::Scale { to, .. } if to == 3);
        let found = s.find_decision(to_of).unwrap().unwrap();
        assert_eq!(found.id, 1);
        assert!(s.find_decision(|d| d.rule == "none").unwrap().is_none());
    }
}

mod rollouts {
    //! The rollouts family: versions kept, relabelling in place, rollouts opened, updated by
    //! revision, acted on by operators, and a rollback that stores the old slice again.
    use super::super::apply::apply_command;
    use super::super::types::{Command, Response};
    use crate::domain::*;
    use crate::raft::store::Store;

    fn run(store: &Store, at: Millis, cmd: Command) -> Response {
        let txn = store.db.begin_write().unwrap();
        let r = apply_command(&txn, &cmd, at, "op").unwrap();
        txn.commit().unwrap();
        r
    }

    fn shop(instances: u32, greeting: &str) -> Blueprint {
        Blueprint {
            name: "shop".into(),
            slices: vec![Slice {
                env: [("GREETING".to_string(), greeting.to_string())].into(),
                ..super::slice("web", instances, 0, 8)
            }],
        }
    }

    /// Every copy of `shop/web` with its version.
    fn versions(store: &Store) -> Vec<(String, u64)> {
        store
            .assignments()
            .unwrap()
            .into_iter()
            .map(|(k, a)| (k, a.version))
            .collect()
    }

    fn op(o: RolloutOp) -> Command {
        Command::RolloutOp {
            blueprint: "shop".into(),
            slice: "web".into(),
            op: o,
        }
    }

    fn refused(r: Response) -> String {
        match r {
            Response::Refused(m) => m,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn versions_rollouts_operators_and_a_rollback_in_one_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            run(&store, 1, Command::ApplyBlueprint(shop(2, "hi"))),
            Response::Version(1)
        );
        let placed = |v: u64| Assignment {
            node: Some(1),
            handoff: None,
            pending: None,
            since: 1,
            placement: 0,
            version: v,
        };
        run(
            &store,
            2,
            Command::AssignInstances {
                set: vec![
                    ("shop/web/0".into(), placed(1)),
                    ("shop/web/1".into(), placed(1)),
                ],
                remove: vec![],
            },
        );

        // A new count needs no new processes: the copies are relabelled, nothing rolls out.
        assert_eq!(
            run(&store, 3, Command::ApplyBlueprint(shop(3, "hi"))),
            Response::Version(2)
        );
        assert_eq!(
            versions(&store),
            [("shop/web/0".into(), 2), ("shop/web/1".into(), 2)]
        );
        assert!(store.rollouts().unwrap().is_empty());

        // A new environment does: a rolling rollout from v2 to v3 opens in the same entry, and
        // the copies keep running v2.
        assert_eq!(
            run(&store, 4, Command::ApplyBlueprint(shop(3, "hello"))),
            Response::Version(3)
        );
        let r = store.rollouts().unwrap().pop().unwrap();
        assert_eq!(
            (r.id, r.from, r.to, r.state.clone()),
            (1, 2, 3, RolloutState::Running)
        );
        assert_eq!(
            (r.step.clone(), r.want_to, r.want_from),
            (RolloutStep::Replace, 1, 3)
        );
        assert!(versions(&store).iter().all(|(_, v)| *v == 2));
        assert!(
            store.blueprint_version("shop", 2).unwrap().is_some(),
            "v2 is kept while copies run it"
        );

        // The engine's writes apply over the revision they read, once.
        let mut next = r.clone();
        next.want_to = 2;
        assert_eq!(
            run(&store, 5, Command::UpdateRollout(Box::new(next.clone()))),
            Response::Rollout(1)
        );
        assert!(
            refused(run(&store, 6, Command::UpdateRollout(Box::new(next))))
                .contains("changed since it was read")
        );

        // Operators: pause, resume; promote is for canaries.
        assert_eq!(run(&store, 7, op(RolloutOp::Pause)), Response::Rollout(1));
        assert!(refused(run(&store, 8, op(RolloutOp::Pause))).contains("is paused, not running"));
        assert_eq!(run(&store, 9, op(RolloutOp::Resume)), Response::Rollout(1));
        assert!(
            refused(run(&store, 10, op(RolloutOp::Promote))).contains("only a canary is promoted")
        );
        assert!(
            refused(run(&store, 10, op(RolloutOp::Undo { to: Some(1) })))
                .contains("undo goes back to v2")
        );

        // Abort goes back; when the engine says it is back, v2's slice is stored again as v4,
        // the v3 copies are dropped and the v2 copies become v4's, all in one entry.
        assert_eq!(run(&store, 11, op(RolloutOp::Abort)), Response::Rollout(1));
        let mut r = store.rollouts().unwrap().pop().unwrap();
        assert_eq!(r.step, RolloutStep::Revert);
        assert_eq!(r.traffic, TrafficSplit::Only { version: 2 });
        assert_eq!(r.reason.as_deref(), Some("abort by op"));
        run(
            &store,
            12,
            Command::AssignInstances {
                set: vec![("shop/web/2".into(), placed(3))],
                remove: vec![],
            },
        );
        r.state = RolloutState::RolledBack {
            reason: "abort by op; rolled back to v2 in 1.0s".into(),
        };
        r.step = RolloutStep::Done;
        r.want_to = 0;
        assert_eq!(
            run(&store, 13, Command::UpdateRollout(Box::new(r))),
            Response::Rollout(1)
        );
        let stored = store.blueprints().unwrap().pop().unwrap();
        assert_eq!(stored.version, 4);
        assert_eq!(stored.blueprint.slices[0].env["GREETING"], "hi");
        assert_eq!(stored.blueprint.slices[0].instances, 3, "the count is kept");
        assert_eq!(
            versions(&store),
            [("shop/web/0".into(), 4), ("shop/web/1".into(), 4)]
        );
        let r = store.rollouts().unwrap().pop().unwrap();
        assert!(!r.state.is_open(), "{:?}", r.state);
        assert!(
            r.history
                .last()
                .unwrap()
                .1
                .contains("v2 stored again as v4"),
            "{:?}",
            r.history
        );
        assert!(
            refused(run(&store, 14, op(RolloutOp::Pause))).contains("has no rollout in progress")
        );

        // Undo with nothing in progress: the last rollout went back, so a version is needed.
        assert!(
            refused(run(&store, 15, op(RolloutOp::Undo { to: None })))
                .contains("name a version with --to")
        );
        assert!(
            refused(run(&store, 15, op(RolloutOp::Undo { to: Some(2) })))
                .contains("runs the same processes")
        );
        assert!(
            refused(run(&store, 15, op(RolloutOp::Undo { to: Some(99) })))
                .contains("v99 of 'shop/web' is not kept")
        );
        // Back to v3's slice: stored as v5, rolled out all at once.
        assert!(matches!(
            run(&store, 16, op(RolloutOp::Undo { to: Some(3) })),
            Response::Rollout(2)
        ));
        let u = store.rollouts().unwrap().pop().unwrap();
        assert_eq!(
            (u.from, u.to, u.want_to, u.policy.min_healthy_ms),
            (4, 5, 3, 0)
        );
        assert_eq!(u.cause, "undo to v3 by op");
        assert_eq!(
            store.blueprints().unwrap()[0].blueprint.slices[0].env["GREETING"],
            "hello"
        );

        // A new apply supersedes the open rollout; its old copies stay on the old side.
        assert_eq!(
            run(&store, 17, Command::ApplyBlueprint(shop(3, "hey"))),
            Response::Version(6)
        );
        let all = store.rollouts().unwrap();
        assert_eq!(all[1].state, RolloutState::Superseded { by: 3 });
        assert_eq!((all[2].from, all[2].to), (4, 6));

        // The version its copies run applied again mid-rollout: nothing is left to roll out.
        assert_eq!(
            run(&store, 17, Command::ApplyBlueprint(shop(3, "hi"))),
            Response::Version(7)
        );
        let last = store.rollouts().unwrap().pop().unwrap();
        assert_eq!(last.state, RolloutState::Superseded { by: 0 });
        assert!(store.open_rollouts().unwrap().is_empty());
        assert!(
            versions(&store).iter().all(|(_, v)| *v == 7),
            "{:?}",
            versions(&store)
        );

        // Removing the blueprint ends its rollouts and forgets its versions.
        run(
            &store,
            18,
            Command::RemoveBlueprint {
                name: "shop".into(),
            },
        );
        assert!(store.rollouts().unwrap().iter().all(|r| !r.state.is_open()));
        assert!(store.blueprint_versions("shop").unwrap().is_empty());
    }

    #[test]
    fn rollouts_versions_and_the_open_index_travel_in_snapshots() {
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = Store::open(a_dir.path()).unwrap();
        run(&a, 1, Command::ApplyBlueprint(shop(2, "hi")));
        let placed = Assignment {
            node: Some(1),
            handoff: None,
            pending: None,
            since: 1,
            placement: 0,
            version: 1,
        };
        run(
            &a,
            2,
            Command::AssignInstances {
                set: vec![("shop/web/0".into(), placed)],
                remove: vec![],
            },
        );
        run(&a, 3, Command::ApplyBlueprint(shop(2, "hello")));
        run(&a, 4, op(RolloutOp::Abort));
        run(&a, 5, Command::ApplyBlueprint(shop(2, "hey")));
        let open: Vec<u64> = a.open_rollouts().unwrap().iter().map(|r| r.id).collect();
        assert_eq!(open, [2], "r-1 was superseded, r-2 is open");
        let (meta, path) = a.build_snapshot_file().unwrap();
        let b = Store::open(b_dir.path()).unwrap();
        b.install_snapshot_file(&meta, std::fs::File::open(path).unwrap())
            .unwrap();
        assert_eq!(b.rollouts().unwrap(), a.rollouts().unwrap());
        assert_eq!(b.open_rollouts().unwrap(), a.open_rollouts().unwrap());
        assert_eq!(
            b.blueprint_versions("shop").unwrap(),
            a.blueprint_versions("shop").unwrap()
        );
        // Ids go on from the snapshot's.
        run(&b, 6, op(RolloutOp::Abort));
        run(&b, 7, Command::ApplyBlueprint(shop(2, "hallo")));
        assert_eq!(b.open_rollouts().unwrap()[0].id, 3);
    }
}

mod audit {
    //! The audit trail as the events view reads it.
    use super::super::apply::apply_request;
    use super::super::types::{ClusterInit, Command, Request, RequestId};
    use crate::domain::*;
    use crate::raft::store::Store;

    fn run(store: &Store, serial: u64, cmd: Command) {
        let txn = store.db.begin_write().unwrap();
        let req = Request {
            id: RequestId { client: 7, serial },
            actor: "operator".into(),
            at: serial,
            cmd,
        };
        apply_request(&txn, &req).unwrap();
        txn.commit().unwrap();
    }

    /// Events name nodes as the CLI does everywhere (`n3`), never by id, so `/n3` in the
    /// console or `grep n3` finds every event about n3, a removal included.
    #[test]
    fn events_name_nodes_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        run(
            &store,
            1,
            Command::InitCluster(ClusterInit {
                cluster_id: "c".into(),
                ca_cert_pem: String::new(),
                ca_key_pem: String::new(),
                founder_id: 1,
                founder_name: "n1".into(),
                founder_addr: "127.0.0.1:1".into(),
            }),
        );
        run(
            &store,
            2,
            Command::AddNode {
                name: "n3".into(),
                addr: "127.0.0.1:3".into(),
            },
        );
        let n3 = store
            .nodes()
            .unwrap()
            .into_iter()
            .find(|n| n.name == "n3")
            .unwrap()
            .id;
        assert_ne!(n3.to_string(), "n3");
        run(
            &store,
            3,
            Command::SetNodeState {
                id: n3,
                state: NodeState::Draining,
            },
        );
        let placed = |node, handoff| Assignment {
            node: Some(node),
            handoff,
            pending: None,
            since: 0,
            placement: 0,
            version: 1,
        };
        run(
            &store,
            4,
            Command::AssignInstances {
                set: vec![
                    ("shop/web/0".into(), placed(1, Some(n3))),
                    ("shop/web/1".into(), placed(n3, None)),
                ],
                remove: vec![],
            },
        );
        run(&store, 5, Command::RemoveNode { id: n3 });
        run(&store, 6, Command::RemoveNode { id: 99 });
        let what: Vec<String> = store
            .audit(10)
            .unwrap()
            .into_iter()
            .skip(2)
            .map(|a| a.what)
            .collect();
        assert_eq!(
            what,
            [
                "set node n3 draining",
                "assign instances: shop/web/0→n1 (from n3), shop/web/1→n3",
                "remove node n3",
                "remove node id 99",
            ]
        );
    }
}

mod operators {
    //! Operator certificate records: issued, replaced, revoked; in snapshots; not restored.
    use super::super::apply::apply_command;
    use super::super::types::{Command, Response};
    use crate::domain::*;
    use crate::raft::store::Store;

    fn run(store: &Store, cmd: Command) -> Response {
        let txn = store.db.begin_write().unwrap();
        let r = apply_command(&txn, &cmd, 1, "root@n1").unwrap();
        txn.commit().unwrap();
        r
    }

    fn rec(name: &str, sha: &str) -> OperatorRecord {
        OperatorRecord {
            name: name.into(),
            role: Role::Operator,
            cert_sha256: sha.repeat(32),
            serial: "01".into(),
            created_at: 1,
            expires_at: 1_000,
            revoked: false,
        }
    }

    #[test]
    fn issued_replaced_revoked_and_carried_by_snapshots_but_not_restores() {
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = Store::open(a_dir.path()).unwrap();
        assert_eq!(
            run(&a, Command::IssueOperatorCert(rec("alice", "aa"))),
            Response::Ok
        );
        assert_eq!(
            run(&a, Command::IssueOperatorCert(rec("bob", "bb"))),
            Response::Ok
        );
        // A new certificate for a name replaces the old one: the old one no longer checks.
        run(&a, Command::IssueOperatorCert(rec("alice", "cc")));
        let alice = a.operator("alice").unwrap().unwrap();
        assert!(alice.check(&"aa".repeat(32), 10).is_err());
        assert_eq!(alice.check(&"cc".repeat(32), 10), Ok(()));
        assert_eq!(
            run(&a, Command::RevokeOperatorCert { name: "bob".into() }),
            Response::Ok
        );
        assert!(a.operator("bob").unwrap().unwrap().revoked);
        let Response::Refused(m) = run(&a, Command::RevokeOperatorCert { name: "eve".into() })
        else {
            panic!("revoking an unknown operator is refused")
        };
        assert!(m.contains("no operator 'eve'"), "{m}");
        let Response::Refused(m) = run(&a, Command::IssueOperatorCert(rec("Bad Name", "dd")))
        else {
            panic!("a bad name is refused")
        };
        assert!(m.contains("not a valid name"), "{m}");
        assert_eq!(a.operators().unwrap().len(), 2);

        // A follower that installs a snapshot has them.
        let (meta, path) = a.build_snapshot_file().unwrap();
        let b = Store::open(b_dir.path()).unwrap();
        b.install_snapshot_file(&meta, std::fs::File::open(path).unwrap())
            .unwrap();
        assert_eq!(b.operators().unwrap(), a.operators().unwrap());

        // A restore starts a new cluster with a new CA: no operator record survives.
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("b.snap");
        let mut out = Vec::new();
        a.write_backup(&mut out, "n1").unwrap();
        std::fs::write(&file, &out).unwrap();
        let v = crate::raft::backup::restore(&file, &tmp.path().join("new")).unwrap();
        assert!(
            v.dropped.iter().any(|t| t == "operators"),
            "{:?}",
            v.dropped
        );
        assert!(!v.kept.contains_key("operators"), "{:?}", v.kept);
        let r = Store::open(&tmp.path().join("new")).unwrap();
        assert!(r.operators().unwrap().is_empty());
    }
}

mod flexible {
    //! Flexible slices: held at apply, judged, started once; a new apply says its own.
    use super::super::apply::apply_command;
    use super::super::types::{Command, Response};
    use crate::domain::*;
    use crate::raft::store::Store;

    fn run(store: &Store, at: Millis, cmd: Command) -> Response {
        let txn = store.db.begin_write().unwrap();
        let r = apply_command(&txn, &cmd, at, "test").unwrap();
        txn.commit().unwrap();
        r
    }

    fn batch(min: u32) -> Blueprint {
        Blueprint {
            name: "batch".into(),
            slices: vec![super::slice("train", 2, min, 4)],
        }
    }

    fn with(min: u32) -> Command {
        Command::ApplyBlueprintWith {
            blueprint: batch(min),
            flexible: vec![(
                "train".into(),
                FlexiblePolicy {
                    deadline: FlexDeadline::Within(60_000),
                    run_ms: 10_000,
                },
            )],
        }
    }

    fn step(start: bool, line: &str) -> Command {
        Command::FlexibleStep {
            blueprint: "batch".into(),
            slice: "train".into(),
            start,
            line: line.into(),
        }
    }

    fn instances(store: &Store) -> u32 {
        store.blueprints().unwrap()[0].blueprint.slices[0].instances
    }

    #[test]
    fn held_at_apply_started_once_and_forgotten_by_a_plain_apply() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let Response::Refused(m) = run(&store, 1_000, with(1)) else {
            panic!("a flexible slice with min 1 is refused")
        };
        assert!(m.contains("set min = 0"), "{m}");
        assert!(store.blueprints().unwrap().is_empty() && store.flexible().unwrap().is_empty());

        assert_eq!(run(&store, 1_000, with(0)), Response::Version(1));
        assert_eq!(instances(&store), 0, "stored held");
        let f = &store.flexible().unwrap()[0];
        assert_eq!((f.instances, f.latest_start), (2, 51_000));
        assert_eq!(
            run(&store, 2_000, step(false, "held: now 500")),
            Response::Ok
        );
        assert_eq!(
            store.flexible().unwrap()[0].held.as_deref(),
            Some("held: now 500")
        );
        assert_eq!(instances(&store), 0);

        assert_eq!(
            run(&store, 3_000, step(true, "starts in a low window")),
            Response::Ok
        );
        assert_eq!(instances(&store), 2);
        let f = &store.flexible().unwrap()[0];
        assert_eq!(f.started, Some((3_000, "starts in a low window".into())));
        assert!(matches!(
            run(&store, 4_000, step(true, "again")),
            Response::Refused(_)
        ));
        assert_eq!(store.blueprints().unwrap()[0].version, 2, "started once");

        assert_eq!(
            run(&store, 5_000, Command::ApplyBlueprint(batch(0))),
            Response::Version(3)
        );
        assert!(store.flexible().unwrap().is_empty());
        assert_eq!(run(&store, 6_000, with(0)), Response::Version(4));
        assert_eq!(
            run(
                &store,
                7_000,
                Command::RemoveBlueprint {
                    name: "batch".into()
                }
            ),
            Response::Ok
        );
        assert!(store.flexible().unwrap().is_empty());
    }
}
