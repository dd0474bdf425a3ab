//! State-machine tests that go through the dispatcher and more than one family.

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
            slices: vec![Slice {
                name: "web".into(),
                command: vec!["true".into()],
                instances: 2,
                min: 1,
                max: 8,
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
            }],
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
        Command::RecordDecision(Box::new(Decision {
            id: 0,
            at: 0,
            by: "n1".into(),
            mode,
            layers: vec!["rules:cpu-high".into()],
            action: Action::Scale {
                blueprint: "shop".into(),
                slice: "web".into(),
                from: 2,
                to,
            },
            rule: "cpu-high".into(),
            reasoning: vec![],
            inputs: vec![],
            review: None,
            status,
            timeline: vec![],
            outcome: None,
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
}
