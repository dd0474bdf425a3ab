//! What the Raft log carries: typed intents ([`Command`]) wrapped in a [`Request`] with a client
//! request id, and what applying one answers ([`Response`]).
//!
//! Encoding is postcard, which numbers enum variants: new commands are added at the end of
//! [`Command`], never in the middle, so old logs and snapshots still decode.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::{
    Assignment, Blueprint, ControllerMode, Decision, DecisionStatus, FlexiblePolicy, Health,
    InstanceStatus, Millis, NodeId, NodeState, OperatorRecord, Outcome, PowerRecord, PowerState,
    Rollout, RolloutOp, SpotNotice, TokenRefusal,
};

/// Identifies one logical write across retries: applying the same id twice answers the first
/// result again instead of applying twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RequestId {
    /// Random per client process (CLI invocation, node, controller).
    pub client: u128,
    /// Increases per write of that client.
    pub serial: u64,
}

impl RequestId {
    /// A fresh id for a one-shot client.
    pub fn new_random() -> RequestId {
        RequestId {
            client: rand::random(),
            serial: 1,
        }
    }
}

/// One log entry's application payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub id: RequestId,
    /// Who asked, for the audit trail.
    pub actor: String,
    /// Stamped by the proposing node; the state machine's only clock.
    pub at: Millis,
    pub cmd: Command,
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} by {}", self.cmd.summary(), self.actor)
    }
}

/// The cluster-wide facts set once by the founding node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInit {
    pub cluster_id: String,
    pub ca_cert_pem: String,
    /// The CA key is replicated so any leader can sign a joining node's certificate; the data
    /// dir (mode 0700) is therefore secret on every member.
    pub ca_key_pem: String,
    pub founder_id: NodeId,
    pub founder_name: String,
    pub founder_addr: String,
}

/// Typed intents (DESIGN §5). Workload and control families are appended by later issues.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    // cluster
    /// Written once by the founding node: cluster id, CA, founder record.
    InitCluster(ClusterInit),
    /// Consume a join token and register a new member; the state machine allocates its id.
    Join {
        token_id: String,
        secret_sha256: [u8; 32],
        name: String,
        addr: String,
    },
    /// Register a member directly (no token), e.g. when restoring.
    AddNode {
        name: String,
        addr: String,
    },
    RemoveNode {
        id: NodeId,
    },
    SetNodeState {
        id: NodeId,
        state: NodeState,
    },
    IssueJoinToken {
        id: String,
        secret_sha256: [u8; 32],
        expires_at: Option<Millis>,
        uses: u32,
    },
    RevokeJoinToken {
        id: String,
    },
    // kv
    Put {
        key: String,
        value: Vec<u8>,
    },
    Delete {
        key: String,
    },
    /// Set `key` to `new` (delete when `None`) if its current value equals `expected` (absent
    /// when `None`).
    CompareAndSwap {
        key: String,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    },
    /// Concurrent writes proposed together by the leader (see `raft::batch`); each inner request
    /// is applied, deduplicated and audited as if it had its own entry. Never nested.
    Batch(Vec<Request>),
    /// The leader's liveness verdict on a member changed (an event in the audit trail); `why`
    /// carries the numbers, e.g. `no metrics update for 3.1 s`.
    SetNodeHealth {
        id: NodeId,
        /// The member's name, for the audit trail.
        name: String,
        health: Health,
        why: String,
    },
    // workloads
    /// Store a new version of a blueprint (validated by the proposing node).
    ApplyBlueprint(Blueprint),
    RemoveBlueprint {
        name: String,
    },
    /// Set a slice's desired instances, within its min..=max.
    ScaleSlice {
        blueprint: String,
        slice: String,
        instances: u32,
    },
    /// The leader's assignment loop: instances placed, moved or left pending (`set`), and
    /// instances no longer wanted (`remove`).
    AssignInstances {
        set: Vec<(String, Assignment)>,
        remove: Vec<String>,
    },
    /// Instance transitions on `node` (its supervisor reports them; the leader reports for a
    /// node that is down); `gone` lists instances no longer running there.
    ReportInstances {
        node: NodeId,
        /// The node's name, for the audit trail.
        name: String,
        reports: Vec<InstanceStatus>,
        gone: Vec<String>,
    },
    // control (DESIGN §9)
    /// A controller decision; the state machine allocates its id and answers
    /// [`Response::Decision`].
    RecordDecision(Box<Decision>),
    /// Apply an open decision's action now: the leader, at the grace deadline or in `auto` mode.
    /// Refused (and nothing changes) when the decision was vetoed, closed, or is not due yet.
    ApplyDecision {
        id: u64,
    },
    /// An operator's approve: applies an open decision at once.
    ApproveDecision {
        id: u64,
    },
    /// An operator's veto of an open decision; in `auto` mode also of an applied one, which is
    /// then reverted.
    VetoDecision {
        id: u64,
        reason: Option<String>,
    },
    /// Close an open decision as superseded, expired, rejected or failed (the leader).
    CloseDecision {
        id: u64,
        status: DecisionStatus,
    },
    /// The outcome check of an applied decision.
    RecordOutcome {
        id: u64,
        outcome: Outcome,
    },
    /// Set the controller's mode and, optionally, the grace window of `guarded`.
    SetControllerMode {
        mode: ControllerMode,
        grace_ms: Option<u64>,
    },
    PauseController {
        reason: Option<String>,
    },
    ResumeController,
    /// The leader's rollout engine moved a rollout on. Refused unless the stored rollout is
    /// open and still at `rev` (so a deposed leader's late write changes nothing).
    UpdateRollout(Box<Rollout>),
    /// An operator's act on a slice's rollout (pause, resume, promote, abort, undo).
    RolloutOp {
        blueprint: String,
        slice: String,
        op: RolloutOp,
    },
    /// A member now listens at another address (it restarted with a new `--listen` or
    /// `--advertise`); the leader also sets it in Raft's membership.
    SetNodeAddr {
        id: NodeId,
        addr: String,
    },
    /// A fire drill began or ended (`aether drill run`): an audit record only, changes
    /// nothing else. `what` is its line, e.g. `leader-loss started on n1 (isolated 5 s)`.
    RecordDrill {
        what: String,
    },
    // operators (DESIGN §6)
    /// Record an operator certificate a node signed with the cluster CA; it replaces any
    /// earlier certificate of that name, which is refused from then on.
    IssueOperatorCert(OperatorRecord),
    /// Revoke operator `name`'s certificate: every node refuses it at its next request.
    RevokeOperatorCert {
        name: String,
    },
    // signals
    /// What a cloud announced about member `id`'s machine (its signal loop, or a drill), or
    /// `None`: nothing any more. The leader's controller drains an interrupted node at once.
    SetSpotNotice {
        id: NodeId,
        /// The member's name, for the audit trail.
        name: String,
        notice: Option<SpotNotice>,
    },
    // power (`[power]`)
    /// The leader's power loop moved a node on in sleep and wake: store its record and, with
    /// `state`, set the node's state in the same write (asleep once suspended, ready once back).
    SetPower {
        record: PowerRecord,
        state: Option<NodeState>,
    },
    // workloads, carbon-aware (issue 25)
    /// [`Command::ApplyBlueprint`] with the flexible policies of some of its slices
    /// (`[slices.flexible]`), in one transaction: those slices are stored with no instance and
    /// held, each with a [`crate::domain::FlexibleRecord`] that keeps the count it asked for.
    ApplyBlueprintWith {
        blueprint: Blueprint,
        /// Slice name → its policy.
        flexible: Vec<(String, FlexiblePolicy)>,
    },
    /// The controller's judgement on a held flexible slice: still held (`start` false: `line`
    /// says why, with the numbers), or started now (its instances set to what it asked for).
    /// Refused when the slice is not held.
    FlexibleStep {
        blueprint: String,
        slice: String,
        start: bool,
        line: String,
    },
}

impl Command {
    /// Whether applying it may change what runs where (members, their state or health,
    /// blueprints, assignments, instance states): the workload loops wake on these only, not on
    /// kv or token writes.
    pub fn touches_workloads(&self) -> bool {
        match self {
            Command::Put { .. }
            | Command::Delete { .. }
            | Command::CompareAndSwap { .. }
            | Command::IssueJoinToken { .. }
            | Command::RevokeJoinToken { .. }
            | Command::IssueOperatorCert(_)
            | Command::RevokeOperatorCert { .. }
            | Command::RecordDecision(_)
            | Command::CloseDecision { .. }
            | Command::RecordOutcome { .. }
            | Command::SetControllerMode { .. }
            | Command::PauseController { .. }
            | Command::ResumeController
            | Command::RecordDrill { .. } => false,
            Command::Batch(reqs) => reqs.iter().any(|r| r.cmd.touches_workloads()),
            _ => true,
        }
    }

    /// One line for logs; values are summarised by size, secrets omitted; nodes by id (the
    /// audit trail names them: [`Command::summary_named`]).
    pub fn summary(&self) -> String {
        self.summary_named(&|id| format!("id {id}"))
    }

    /// [`Command::summary`] with each node named by `node` (its name, e.g. `n3`, as the CLI
    /// names nodes everywhere), so that filtering events by a node's name finds them.
    pub fn summary_named(&self, node: &dyn Fn(NodeId) -> String) -> String {
        match self {
            Command::InitCluster(i) => format!(
                "init cluster {} with founder {}",
                i.cluster_id, i.founder_name
            ),
            Command::Join {
                token_id,
                name,
                addr,
                ..
            } => format!("join {name} at {addr} with token {token_id}"),
            Command::AddNode { name, addr } => format!("add node {name} at {addr}"),
            Command::RemoveNode { id } => format!("remove node {}", node(*id)),
            Command::SetNodeAddr { id, addr } => format!("move node {} to {addr}", node(*id)),
            Command::SetNodeState { id, state } => format!("set node {} {state}", node(*id)),
            Command::IssueJoinToken {
                id,
                uses,
                expires_at,
                ..
            } => {
                format!(
                    "issue join token {id} ({uses} uses{})",
                    if expires_at.is_some() {
                        ", expiring"
                    } else {
                        ""
                    }
                )
            }
            Command::RevokeJoinToken { id } => format!("revoke join token {id}"),
            Command::IssueOperatorCert(o) => format!(
                "issue operator certificate for {} ({}, serial {})",
                o.name, o.role, o.serial
            ),
            Command::RevokeOperatorCert { name } => {
                format!("revoke operator certificate of {name}")
            }
            Command::Put { key, value } => format!("put {key} ({} bytes)", value.len()),
            Command::Delete { key } => format!("delete {key}"),
            Command::CompareAndSwap { key, .. } => format!("compare-and-swap {key}"),
            Command::Batch(reqs) => format!("batch of {} writes", reqs.len()),
            Command::SetNodeHealth {
                id,
                name,
                health,
                why,
            } => format!("mark node {name} (id {id}) {health}: {why}"),
            Command::ApplyBlueprint(b) => format!(
                "apply blueprint {} ({} slices, {} instances)",
                b.name,
                b.slices.len(),
                b.slices.iter().map(|s| s.instances).sum::<u32>()
            ),
            Command::RemoveBlueprint { name } => format!("remove blueprint {name}"),
            Command::ScaleSlice {
                blueprint,
                slice,
                instances,
            } => format!("scale {blueprint}/{slice} to {instances}"),
            Command::AssignInstances { set, remove } => {
                let mut parts: Vec<String> = set
                    .iter()
                    .take(4)
                    .map(|(k, a)| match (a.node, a.handoff) {
                        (Some(n), Some(h)) => format!("{k}→{} (from {})", node(n), node(h)),
                        (Some(n), None) => format!("{k}→{}", node(n)),
                        (None, _) => format!("{k} pending"),
                    })
                    .collect();
                if set.len() > 4 {
                    parts.push(format!("… {} more", set.len() - 4));
                }
                if !remove.is_empty() {
                    parts.push(format!("{} removed", remove.len()));
                }
                format!("assign instances: {}", parts.join(", "))
            }
            Command::ReportInstances {
                name,
                reports,
                gone,
                ..
            } => {
                let mut parts: Vec<String> = reports
                    .iter()
                    .take(4)
                    .map(|r| match (&r.state, &r.last_exit) {
                        // Why it went down is the event worth reading (oom-killed, exit 1).
                        (crate::domain::InstanceState::Backoff, Some(why)) => {
                            format!("{} {} ({why})", r.instance, r.state)
                        }
                        _ => format!("{} {}", r.instance, r.state),
                    })
                    .collect();
                if reports.len() > 4 {
                    parts.push(format!("… {} more", reports.len() - 4));
                }
                parts.extend(gone.iter().take(4).map(|g| format!("{g} stopped")));
                if gone.len() > 4 {
                    parts.push(format!("… {} more stopped", gone.len() - 4));
                }
                format!("instances on {name}: {}", parts.join(", "))
            }
            Command::RecordDecision(d) => {
                format!("record decision: {} (rule {})", d.action, d.rule)
            }
            Command::ApplyDecision { id } => format!("apply d-{id}"),
            Command::ApproveDecision { id } => format!("approve d-{id}"),
            Command::VetoDecision { id, reason } => match reason {
                Some(r) => format!("veto d-{id}: {r}"),
                None => format!("veto d-{id}"),
            },
            Command::CloseDecision { id, status } => format!("close d-{id} as {}", status.word()),
            Command::RecordOutcome { id, outcome } => {
                format!("outcome of d-{id}: {}", outcome.verdict)
            }
            Command::SetControllerMode { mode, grace_ms } => match grace_ms {
                Some(g) => format!(
                    "set controller mode {mode} (grace {})",
                    crate::domain::human_millis(*g)
                ),
                None => format!("set controller mode {mode}"),
            },
            Command::PauseController { reason } => match reason {
                Some(r) => format!("pause controller: {r}"),
                None => "pause controller".into(),
            },
            Command::ResumeController => "resume controller".into(),
            Command::UpdateRollout(r) => format!(
                "rollout {} of {}: {} at {}{}",
                r.name(),
                r.target(),
                r.state.word(),
                r.step.name(),
                r.reason
                    .as_ref()
                    .map(|w| format!(" ({w})"))
                    .unwrap_or_default()
            ),
            Command::RolloutOp {
                blueprint,
                slice,
                op,
            } => format!("rollout {op} {blueprint}/{slice}"),
            Command::RecordDrill { what } => format!("drill {what}"),
            Command::SetSpotNotice { name, notice, .. } => match notice {
                Some(n) => format!("node {name} {} (from {})", n.state_word(), n.source),
                None => format!("node {name}: spot notice cleared"),
            },
            Command::SetPower { record, state } => {
                let mut line = format!("power of {}: {}", record.name, record.state);
                if let Some(s) = state {
                    line.push_str(&format!(", node {s}"));
                }
                if let Some(ms) = record.wake_ms.filter(|_| record.state == PowerState::Awake) {
                    line.push_str(&format!(" (woke in {})", crate::domain::human_millis(ms)));
                }
                if let Some(r) = &record.reason {
                    line.push_str(&format!(": {r}"));
                }
                line
            }
            Command::ApplyBlueprintWith {
                blueprint: b,
                flexible,
            } => format!(
                "apply blueprint {} ({} slices, {} flexible)",
                b.name,
                b.slices.len(),
                flexible.len()
            ),
            Command::FlexibleStep {
                blueprint,
                slice,
                start,
                line,
            } => format!(
                "{} flexible {blueprint}/{slice}: {line}",
                if *start { "start" } else { "hold" }
            ),
        }
    }
}

/// What applying a [`Request`] answered. Refusals are decided by the state machine, so every
/// member agrees on them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub enum Response {
    #[default]
    Ok,
    /// A kv write's previous value.
    Previous(Option<Vec<u8>>),
    /// A compare-and-swap: whether it swapped, and the value now stored.
    Cas {
        swapped: bool,
        current: Option<Vec<u8>>,
    },
    /// A member was registered with this id.
    Joined { id: NodeId },
    /// A join was refused.
    TokenRefused(TokenRefusal),
    /// The command was refused for another reason, with a message that says why.
    Refused(String),
    /// The answers to a [`Command::Batch`], in order.
    Batch(Vec<Response>),
    /// A blueprint is stored at this version.
    Version(u64),
    /// A decision was recorded with this id (`d-<id>`).
    Decision(u64),
    /// The rollout (`r-<id>`) an operator's act touched or started.
    Rollout(u64),
}
