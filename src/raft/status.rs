//! The cluster as one node's Raft sees it: its own position, the leader, the members with their
//! reachability and replication. Built by [`crate::raft::Cluster::status`]; the controller's part is
//! filled in by the read model above.

use serde::{Deserialize, Serialize};

use crate::domain::{Health, Millis, NodeId, NodeState};

/// `aether status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    pub cluster_id: Option<String>,
    /// The node that answered.
    pub node: LocalView,
    pub leader: Option<LeaderView>,
    pub term: u64,
    /// Commit and applied index as the leader sees them (this node's when no leader is known).
    pub commit_index: Option<u64>,
    pub applied_index: u64,
    pub voters_wanted: u8,
    pub members: Vec<MemberView>,
    /// Whose view of reachability `members` shows.
    pub members_seen_by: String,
    /// The controller: mode, pause, open decisions (`None` while the store cannot be read).
    pub controller: Option<ControlView>,
}

/// The controller in `aether status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlView {
    /// observe, propose, guarded or auto.
    pub mode: crate::domain::ControllerMode,
    /// The grace window of guarded mode.
    pub grace_ms: u64,
    pub paused: Option<crate::domain::Pause>,
    /// Decisions waiting for their grace deadline.
    pub pending: u32,
    /// Decisions waiting for an operator's approve.
    pub proposed: u32,
    /// Whether `controller.enabled` is set on the answering node.
    pub enabled: bool,
    /// The reviewer layer (the language model), or why there is none.
    pub reviewer: String,
    /// Where the answering node's rules came from.
    pub rules: String,
}

/// The answering node's own Raft position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalView {
    pub id: NodeId,
    pub name: String,
    /// leader, follower, candidate or learner.
    pub role: String,
    pub term: u64,
    pub commit_index: Option<u64>,
    pub applied_index: u64,
    pub last_log_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    /// Known leader and caught-up state machine (what `/readyz` says).
    pub ready: bool,
}

/// The current leader.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaderView {
    pub id: NodeId,
    pub name: String,
    pub addr: String,
}

/// One member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberView {
    pub id: NodeId,
    pub name: String,
    pub addr: String,
    /// voter, learner, or pending (registered, not yet in the Raft membership).
    pub role: String,
    pub state: NodeState,
    pub leader: bool,
    /// Whether the observing node reached it recently; `None` when it has no way to tell.
    pub reachable: Option<bool>,
    /// Milliseconds since the observing node last heard from it.
    pub last_contact_ms: Option<u64>,
    /// Highest log index known to be replicated to it (leader's view).
    pub matched_index: Option<u64>,
    pub joined_at: Millis,
    /// Liveness as the leader judges it from metrics updates.
    pub health: Health,
}
