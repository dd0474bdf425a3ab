//! Who may ask what: the role each admin request needs (DESIGN §6), and the check every remote
//! request passes before it is answered. Pure: unit-tested without a node.
//!
//! Viewers read (status, members, events, metrics, traffic, decisions, rollouts, logs,
//! blueprints, model and advice, the console). Operators also steer (veto, approve, pause and
//! resume the controller, scale, drain and undrain, rollout acts, take advice, run the model).
//! Admins also change what the cluster is and who may reach it (blueprints, the controller's
//! mode, members, join tokens, operator certificates, snapshots, fire drills, diagnostics
//! bundles, the kv store, reads of tokens and kv included: the kv store is free-form and may
//! hold secrets).

use super::protocol::{AdminError, AdminRequest, ErrorKind, ReadQuery};
use crate::domain::{Millis, NodeState, OperatorRecord, Role};
use crate::raft::types::Command;

/// The role a remote operator needs for `req`. The local admin socket is root's: it may do all.
pub fn required_role(req: &AdminRequest) -> Role {
    use AdminRequest as R;
    match req {
        R::Status
        | R::Nodes
        | R::Audit { .. }
        | R::Metrics { .. }
        | R::Blueprints { .. }
        | R::Logs { .. }
        | R::Decisions { .. }
        | R::Decision { .. }
        | R::Model
        | R::Subscribe(_)
        | R::Traffic { .. }
        | R::Rollouts
        | R::Rollout { .. }
        | R::RolloutHistory { .. }
        | R::Advice
        | R::Doctor => Role::Viewer,
        // A dry run changes nothing: it shows the plan.
        R::BlueprintApply { dry_run: true, .. } => Role::Viewer,
        R::BlueprintApply { dry_run: false, .. } => Role::Admin,
        R::Read(q) | R::ReadLocal(q) => match q {
            ReadQuery::AppliedIndex => Role::Viewer,
            ReadQuery::KvGet { .. } | ReadQuery::KvList { .. } | ReadQuery::Tokens => Role::Admin,
        },
        // The model runs on the answering node's CPUs for up to minutes.
        R::ModelBench { .. } | R::ModelReview { .. } => Role::Operator,
        R::RolloutOp { .. } | R::AdviceTake { .. } => Role::Operator,
        // A dry run only says what the drill would do; a drill breaks the cluster on purpose.
        R::Drill { dry_run: true, .. } => Role::Viewer,
        R::Drill { dry_run: false, .. } => Role::Admin,
        // A node's daemon log and effective configuration (redacted, but whole).
        R::DiagNode { .. } => Role::Admin,
        R::TokenCreate { .. }
        | R::Remove { .. }
        | R::SnapshotSave
        | R::OperatorCertCreate { .. }
        | R::OperatorCerts => Role::Admin,
        R::Write { cmd, .. } => command_role(cmd),
    }
}

/// The role a remote operator needs to write `cmd`. Commands clients may not send at all
/// (the server refuses them anyway) need admin.
pub fn command_role(cmd: &Command) -> Role {
    match cmd {
        Command::VetoDecision { .. }
        | Command::ApproveDecision { .. }
        | Command::PauseController { .. }
        | Command::ResumeController
        | Command::ScaleSlice { .. }
        | Command::RolloutOp { .. } => Role::Operator,
        // Drain and undrain steer; other states are the cluster's own.
        Command::SetNodeState {
            state: NodeState::Draining | NodeState::Ready,
            ..
        } => Role::Operator,
        Command::SetNodeState { .. }
        | Command::SetControllerMode { .. }
        | Command::RemoveNode { .. }
        | Command::ApplyBlueprint(_)
        | Command::ApplyBlueprintWith { .. }
        | Command::RemoveBlueprint { .. }
        | Command::Put { .. }
        | Command::Delete { .. }
        | Command::CompareAndSwap { .. }
        | Command::IssueJoinToken { .. }
        | Command::RevokeJoinToken { .. }
        | Command::IssueOperatorCert(_)
        | Command::RevokeOperatorCert { .. } => Role::Admin,
        // Written by nodes, the leader's loops and the controller only.
        Command::InitCluster(_)
        | Command::Join { .. }
        | Command::AddNode { .. }
        | Command::Batch(_)
        | Command::SetNodeHealth { .. }
        | Command::AssignInstances { .. }
        | Command::ReportInstances { .. }
        | Command::RecordDecision(_)
        | Command::ApplyDecision { .. }
        | Command::CloseDecision { .. }
        | Command::RecordOutcome { .. }
        | Command::UpdateRollout(_)
        | Command::SetNodeAddr { .. }
        | Command::RecordDrill { .. }
        | Command::SetSpotNotice { .. }
        | Command::SetPower { .. }
        | Command::FlexibleStep { .. } => Role::Admin,
    }
}

/// The CLI command that sends `req`, for refusals (`override veto`).
pub fn command_name(req: &AdminRequest) -> &'static str {
    use AdminRequest as R;
    match req {
        R::Status => "status",
        R::Nodes => "nodes",
        R::Audit { .. } => "events",
        R::Metrics { .. } => "metrics",
        R::Blueprints { .. } => "blueprint list",
        R::Logs { .. } => "logs",
        R::Decisions { .. } => "decisions",
        R::Decision { .. } => "decisions show",
        R::Model => "model status",
        R::ModelBench { .. } => "model bench",
        R::ModelReview { .. } => "model review",
        R::Subscribe(_) => "tui",
        R::Traffic { .. } => "traffic",
        R::Rollouts => "rollout list",
        R::Rollout { .. } => "rollout status",
        R::RolloutHistory { .. } => "rollout history",
        R::RolloutOp { .. } => "rollout",
        R::Advice => "advice",
        R::AdviceTake { .. } => "advice take",
        R::Doctor => "doctor",
        R::BlueprintApply { .. } => "blueprint apply",
        R::Read(ReadQuery::Tokens) | R::ReadLocal(ReadQuery::Tokens) => "token list",
        R::Read(ReadQuery::AppliedIndex) | R::ReadLocal(ReadQuery::AppliedIndex) => "status",
        R::Read(_) | R::ReadLocal(_) => "kv get",
        R::TokenCreate { .. } => "token create",
        R::Remove { .. } => "remove",
        R::SnapshotSave => "snapshot save",
        R::OperatorCertCreate { .. } => "operator cert create",
        R::OperatorCerts => "operator cert list",
        R::Drill { .. } => "drill run",
        R::DiagNode { .. } => "diag bundle",
        R::Write { cmd, .. } => match cmd {
            Command::VetoDecision { .. } => "override veto",
            Command::ApproveDecision { .. } => "override approve",
            Command::PauseController { .. } => "override pause",
            Command::ResumeController => "override resume",
            Command::SetControllerMode { .. } => "override mode",
            Command::ScaleSlice { .. } => "scale",
            Command::RolloutOp { .. } => "rollout",
            Command::SetNodeState {
                state: NodeState::Ready,
                ..
            } => "undrain",
            Command::SetNodeState { .. } => "drain",
            Command::RemoveNode { .. } => "remove",
            Command::ApplyBlueprint(_) | Command::ApplyBlueprintWith { .. } => "blueprint apply",
            Command::RemoveBlueprint { .. } => "blueprint rm",
            Command::Put { .. } | Command::CompareAndSwap { .. } => "kv put",
            Command::Delete { .. } => "kv del",
            Command::RevokeJoinToken { .. } => "token revoke",
            Command::IssueJoinToken { .. } => "token create",
            Command::RevokeOperatorCert { .. } => "operator cert revoke",
            Command::IssueOperatorCert(_) => "operator cert create",
            _ => "this write",
        },
    }
}

/// A remote operator as the node knows it: the name and role its certificate carries, and the
/// certificate's fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub name: String,
    pub role: Role,
    pub cert_sha256: String,
    /// The IP it connected from (refusals are counted per IP).
    pub remote: Option<std::net::IpAddr>,
}

impl Operator {
    /// The actor of its writes in the audit trail: `alice (operator)`.
    pub fn actor(&self) -> String {
        format!("{} ({})", self.name, self.role)
    }
}

/// May `op` (whose record this node's replica holds as `record`) send `req` at `now`? Checked
/// on every request before anything is done for it, so a refused request costs no Raft entry,
/// and a revocation holds as soon as this replica has applied it.
pub fn authorize(
    op: &Operator,
    record: Option<&OperatorRecord>,
    req: &AdminRequest,
    now: Millis,
) -> Result<(), AdminError> {
    let forbidden = |m: String| AdminError::new(ErrorKind::Forbidden, m);
    let Some(record) = record else {
        return Err(forbidden(format!(
            "operator '{}' is unknown to this cluster: ask an admin for a certificate ('aether operator cert create {} --role {}')",
            op.name, op.name, op.role
        )));
    };
    record.check(&op.cert_sha256, now).map_err(forbidden)?;
    let need = required_role(req);
    if record.role < need {
        let article = if record.role == Role::Viewer {
            "a"
        } else {
            "an"
        };
        return Err(forbidden(format!(
            "'{}' needs the '{need}' role; '{}' is {article} '{}'",
            command_name(req),
            op.name,
            record.role
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ControllerMode, RolloutOp};
    use crate::raft::types::RequestId;

    fn write(cmd: Command) -> AdminRequest {
        AdminRequest::Write {
            id: RequestId::new_random(),
            cmd,
        }
    }

    fn drill() -> crate::deploy::drill::Scenario {
        crate::deploy::drill::Scenario::parse("leader-loss", None).unwrap()
    }

    #[test]
    fn every_request_needs_the_role_the_table_says() {
        use AdminRequest as R;
        let viewer = [
            R::Status,
            R::Nodes,
            R::Audit { limit: 5 },
            R::Metrics {
                node: None,
                series: None,
                since_secs: None,
            },
            R::Blueprints { name: None },
            R::Logs {
                target: "a/b".into(),
                cursors: vec![],
                tail: 5,
            },
            R::Decisions {
                all: false,
                limit: 5,
            },
            R::Decision { id: 1 },
            R::Model,
            R::Subscribe(Default::default()),
            R::Traffic { target: None },
            R::Rollouts,
            R::Rollout {
                blueprint: "a".into(),
                slice: None,
            },
            R::RolloutHistory {
                blueprint: None,
                slice: None,
                limit: 5,
            },
            R::Advice,
            R::Doctor,
            R::BlueprintApply {
                file: "f".into(),
                text: String::new(),
                dry_run: true,
            },
            R::Read(ReadQuery::AppliedIndex),
            R::Drill {
                scenario: drill(),
                hold_ms: None,
                dry_run: true,
            },
        ];
        let operator = [
            R::ModelBench { seconds: 1 },
            R::ModelReview {
                situation: String::new(),
            },
            R::RolloutOp {
                blueprint: "a".into(),
                slice: "b".into(),
                op: RolloutOp::Pause,
            },
            R::AdviceTake { id: "a-1".into() },
            write(Command::VetoDecision {
                id: 1,
                reason: None,
            }),
            write(Command::ApproveDecision { id: 1 }),
            write(Command::PauseController { reason: None }),
            write(Command::ResumeController),
            write(Command::ScaleSlice {
                blueprint: "a".into(),
                slice: "b".into(),
                instances: 2,
            }),
            write(Command::SetNodeState {
                id: 2,
                state: NodeState::Draining,
            }),
            write(Command::SetNodeState {
                id: 2,
                state: NodeState::Ready,
            }),
        ];
        let admin = [
            R::BlueprintApply {
                file: "f".into(),
                text: String::new(),
                dry_run: false,
            },
            R::Read(ReadQuery::KvGet { key: "k".into() }),
            R::ReadLocal(ReadQuery::KvList {
                prefix: String::new(),
                limit: 1,
            }),
            R::Read(ReadQuery::Tokens),
            R::TokenCreate {
                ttl_ms: None,
                uses: 1,
            },
            R::Remove { name: "n2".into() },
            R::SnapshotSave,
            R::OperatorCerts,
            R::OperatorCertCreate {
                name: "x".into(),
                role: Role::Viewer,
                ttl_ms: 1,
                csr_pem: String::new(),
            },
            write(Command::SetControllerMode {
                mode: ControllerMode::Auto,
                grace_ms: None,
            }),
            write(Command::RemoveBlueprint { name: "a".into() }),
            write(Command::Put {
                key: "k".into(),
                value: vec![],
            }),
            write(Command::Delete { key: "k".into() }),
            write(Command::RevokeJoinToken { id: "t".into() }),
            write(Command::RevokeOperatorCert { name: "x".into() }),
            write(Command::RemoveNode { id: 2 }),
            write(Command::ApplyDecision { id: 1 }),
            R::DiagNode {
                name: "n1".into(),
                since_secs: 60,
            },
            R::Drill {
                scenario: drill(),
                hold_ms: None,
                dry_run: false,
            },
        ];
        for (reqs, role) in [
            (&viewer[..], Role::Viewer),
            (&operator[..], Role::Operator),
            (&admin[..], Role::Admin),
        ] {
            for r in reqs {
                assert_eq!(required_role(r), role, "{r:?}");
            }
        }
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
    }

    fn record(role: Role) -> OperatorRecord {
        OperatorRecord {
            name: "alice".into(),
            role,
            cert_sha256: "ab".repeat(32),
            serial: "01".into(),
            created_at: 1_000,
            expires_at: 10_000,
            revoked: false,
        }
    }

    #[test]
    fn a_refusal_names_the_role_needed_and_why() {
        let op = Operator {
            name: "alice".into(),
            role: Role::Viewer,
            cert_sha256: "ab".repeat(32),
            remote: None,
        };
        let veto = write(Command::VetoDecision {
            id: 1,
            reason: None,
        });
        let v = record(Role::Viewer);
        assert_eq!(
            authorize(&op, Some(&v), &AdminRequest::Status, 5_000),
            Ok(())
        );
        let e = authorize(&op, Some(&v), &veto, 5_000).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Forbidden);
        assert_eq!(
            e.message,
            "'override veto' needs the 'operator' role; 'alice' is a 'viewer'"
        );
        assert_eq!(e.exit_code(), 1);
        assert_eq!(
            authorize(&op, Some(&record(Role::Operator)), &veto, 5_000),
            Ok(())
        );
        let e = authorize(&op, None, &AdminRequest::Status, 5_000).unwrap_err();
        assert!(e.message.contains("operator 'alice' is unknown"), "{e}");
        let e = authorize(&op, Some(&v), &AdminRequest::Status, 10_000).unwrap_err();
        assert!(e.message.contains("expired"), "{e}");
        let revoked = OperatorRecord {
            revoked: true,
            ..v.clone()
        };
        let e = authorize(&op, Some(&revoked), &AdminRequest::Status, 5_000).unwrap_err();
        assert!(e.message.contains("is revoked"), "{e}");
        let other = Operator {
            cert_sha256: "cd".repeat(32),
            ..op.clone()
        };
        let e = authorize(&other, Some(&v), &AdminRequest::Status, 5_000).unwrap_err();
        assert!(e.message.contains("replaced by a newer one"), "{e}");
        assert_eq!(op.actor(), "alice (viewer)");
    }
}
