//! The cluster as one node's Raft sees it: its own position, the leader, the members with their
//! reachability and replication. Built by [`crate::raft::Cluster::status`]; the controller's part is
//! filled in by the read model above.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::ServerState;
use serde::{Deserialize, Serialize};

use super::api::RequestError;
use super::{Cluster, REACHABLE_WITHIN, store_err};
use crate::domain::{Health, Millis, NodeId, NodeRecord, NodeState};

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
    /// The membership is changing (a joint configuration of old and new voters, a majority
    /// of each needed to elect or commit) as this node's log has it: the voters it lists are
    /// not yet what a failure can count on.
    #[serde(default)]
    pub membership_changing: bool,
    pub members: Vec<MemberView>,
    /// Whose view of reachability `members` shows.
    pub members_seen_by: String,
    /// The controller: mode, pause, open decisions (`None` while the store cannot be read).
    pub controller: Option<ControlView>,
    /// How the answering node isolates its instances (user, environment, limits), and which
    /// protections are off and why; filled in above this layer.
    pub workloads: Option<String>,
    /// Certificates that expire within [`CERT_WARN_MS`] (or have expired): the answering
    /// node's own and the operators' (from the replicated records), soonest first.
    pub certs: Vec<CertExpiry>,
}

/// How far ahead `aether status` warns of a certificate's expiry (30 days, as `aether doctor`).
pub const CERT_WARN_MS: Millis = 30 * 86_400_000;

/// A certificate that expires soon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertExpiry {
    /// Whose certificate: `node` or `operator`.
    pub kind: CertHolder,
    /// The node's or operator's name.
    pub name: String,
    /// When it stops being valid (Unix milliseconds).
    pub expires_at: Millis,
}

/// Who holds a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertHolder {
    Node,
    Operator,
}

/// The certificates to warn about at `now`: this node's (`node`: its name and expiry), when
/// it expires within [`CERT_WARN_MS`] or has expired, and every operator certificate that is
/// not revoked and expires within [`CERT_WARN_MS`] (an expired one is no longer shown: its
/// record says so in `aether operator cert list`). Soonest first.
pub fn expiring_certs(
    now: Millis,
    node: Option<(&str, Millis)>,
    operators: &[crate::domain::OperatorRecord],
) -> Vec<CertExpiry> {
    let horizon = now.saturating_add(CERT_WARN_MS);
    let mut out: Vec<CertExpiry> = node
        .filter(|(_, at)| *at <= horizon)
        .map(|(name, at)| CertExpiry {
            kind: CertHolder::Node,
            name: name.to_string(),
            expires_at: at,
        })
        .into_iter()
        .collect();
    out.extend(
        operators
            .iter()
            .filter(|o| !o.revoked && o.expires_at > now && o.expires_at <= horizon)
            .map(|o| CertExpiry {
                kind: CertHolder::Operator,
                name: o.name.clone(),
                expires_at: o.expires_at,
            }),
    );
    out.sort_by(|a, b| (a.expires_at, &a.name).cmp(&(b.expires_at, &b.name)));
    out
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
    /// Slices the controller would scale past a bound but cannot: a standing condition, said
    /// once in the decision log and shown here while it lasts.
    pub capped: Vec<CappedView>,
    /// The leader's reviewer, the one that decides, as the leader last reported it (on the
    /// leader: its own); `None` when no report is fresh (or the leader's controller is off).
    pub leader_reviewer: Option<ReviewerView>,
}

/// The leader's reviewer (its language model) as it reports itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReviewerView {
    /// The leader's name.
    pub node: String,
    /// The reviewer (`model smollm2 (q8_0, 1 thread)`), or why there is none.
    pub reviewer: String,
    /// The model's state in one word (`ready`, `loading`, `absent` …).
    pub state: String,
    /// Reviews made and missed since the leader's node started, the last one's latency.
    pub reviews: u64,
    pub timeouts: u64,
    pub last_latency_ms: Option<u64>,
}

impl std::fmt::Display for ReviewerView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "on {} (leader): {}", self.node, self.reviewer)?;
        // An absent or failed model is already said by the reviewer's own line.
        if !self.reviewer.contains(self.state.as_str()) {
            write!(f, ", {}", self.state)?;
        }
        write!(
            f,
            " · {} review(s), {} timeout(s)",
            self.reviews, self.timeouts
        )?;
        if let Some(ms) = self.last_latency_ms {
            write!(f, ", last {}", crate::domain::human_millis(ms))?;
        }
        Ok(())
    }
}

/// A slice at its max (or min) that the controller wants past it (`aether status`, the console,
/// `/metrics`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CappedView {
    /// `blueprint/slice`.
    pub target: String,
    /// `max` or `min`.
    pub bound: String,
    /// The bound's value, the slice's count now.
    pub limit: u32,
    /// The count the controller wanted when it last said so.
    pub wanted: Option<u32>,
    /// When it was first said (this run), and last said.
    pub since: Millis,
    pub said: Millis,
}

impl std::fmt::Display for CappedView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {}={}", self.target, self.bound, self.limit)?;
        if let Some(w) = self.wanted {
            write!(f, " (wanted {w})")?;
        }
        write!(f, " since {}", crate::domain::clock_time(self.since))
    }
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
    /// What its cloud announced about its machine (a spot interruption and its deadline, or
    /// a rebalance recommendation); `None` when nothing.
    pub spot: Option<crate::domain::SpotNotice>,
    /// Where it stands in sleep and wake (`[power]`); `None`: it never slept.
    pub power: Option<crate::domain::PowerRecord>,
}

impl MemberView {
    /// Its state as `nodes` and the console show it: `draining (to sleep)`, `asleep
    /// (waking)`, `draining, interrupting (deadline 05:12:02Z)`.
    pub fn state_text(&self) -> String {
        use crate::domain::PowerState;
        let power = match self.power.as_ref().map(|p| p.state) {
            Some(PowerState::Sleeping) => " (to sleep)",
            Some(PowerState::Waking) => " (waking)",
            Some(PowerState::Down) => " (down)",
            _ => "",
        };
        match &self.spot {
            Some(n) => format!("{}{power}, {}", self.state, n.state_word()),
            None => format!("{}{power}", self.state),
        }
    }
}

impl StatusView {
    /// Member `id` did not answer this node just now.
    pub fn mark_unreachable(&mut self, id: NodeId) {
        for m in self.members.iter_mut().filter(|m| m.id == id) {
            m.reachable = Some(false);
        }
    }

    /// The leader, unless the answering node found it unreachable.
    pub fn leader_unreachable(&self) -> bool {
        let Some(l) = &self.leader else { return false };
        self.members
            .iter()
            .any(|m| m.id == l.id && m.reachable == Some(false))
    }
}

impl Cluster {
    /// [`expiring_certs`] from this node's certificate file and replica. A file or table that
    /// cannot be read is logged and left out: status still answers.
    fn expiring_certs(&self) -> Vec<CertExpiry> {
        let node = self.node_cert_not_after();

        let operators = self.store.operators().unwrap_or_else(|e| {
            tracing::warn!("status: cannot read the operator records: {e}");
            Vec::new()
        });
        expiring_certs(
            crate::domain::now_millis(),
            node.map(|at| (self.name.as_str(), at)),
            &operators,
        )
    }

    /// When this node's certificate expires (Unix ms). Status is built each second for the
    /// live feed and at every scrape, so the file is parsed again only when it changed (the
    /// renewal loop replaces it); one that cannot be read is logged once per change.
    fn node_cert_not_after(&self) -> Option<Millis> {
        let path = self.data_dir().join("tls").join("node.crt");
        let changed = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let mut cache = self.node_cert.lock().expect("node cert cache");
        if let (Some(t), Some((seen, at))) = (changed, *cache)
            && t == seen
        {
            return at;
        }
        let at = match crate::net::tls::cert_not_after(&path) {
            Ok(secs) => Some(secs.max(0) as Millis * 1000),
            Err(e) => {
                tracing::warn!("status: {e}");
                None
            }
        };
        *cache = changed.map(|t| (t, at));
        at
    }

    /// Status as this node sees it.
    pub fn local_status(&self) -> Result<StatusView, RequestError> {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let records: BTreeMap<NodeId, NodeRecord> = self
            .store
            .nodes()
            .map_err(store_err)?
            .into_iter()
            .map(|n| (n.id, n))
            .collect();
        let name_of = |id: NodeId| {
            records
                .get(&id)
                .map(|r| r.name.clone())
                .unwrap_or_else(|| format!("node-{id}"))
        };
        let health = self.store.health().map_err(store_err)?;
        let mut spot = self.store.spot_notices().map_err(store_err)?;
        let power = self.store.power().map_err(store_err)?;
        let is_leader = m.current_leader == Some(self.id);
        let replication = m.replication.clone().unwrap_or_default();
        let mut ids: BTreeSet<NodeId> = records.keys().copied().collect();
        ids.extend(membership.nodes().map(|(id, _)| *id));
        let members = ids
            .into_iter()
            .map(|id| {
                let rec = records.get(&id);
                let addr = membership
                    .get_node(&id)
                    .map(|n| n.addr.clone())
                    .or_else(|| rec.map(|r| r.addr.clone()))
                    .unwrap_or_default();
                let role = if voters.contains(&id) {
                    "voter"
                } else if membership.get_node(&id).is_some() {
                    "learner"
                } else {
                    "pending"
                };
                let contact = if id == self.id {
                    Some(Duration::ZERO)
                } else {
                    self.ep.last_contact(&addr).map(|t| t.elapsed())
                };
                // A follower only talks to the leader; it cannot judge the others.
                let judged = id == self.id || is_leader || m.current_leader == Some(id);
                let reachable = judged.then(|| contact.is_some_and(|c| c < REACHABLE_WITHIN));
                MemberView {
                    id,
                    name: name_of(id),
                    addr,
                    role: role.into(),
                    state: rec
                        .map(|r| r.state)
                        .unwrap_or(crate::domain::NodeState::Ready),
                    leader: m.current_leader == Some(id),
                    reachable,
                    last_contact_ms: contact.map(|c| c.as_millis() as u64),
                    matched_index: if id == self.id && is_leader {
                        m.last_log_index
                    } else {
                        replication.get(&id).cloned().flatten().map(|l| l.index)
                    },
                    joined_at: rec.map(|r| r.joined_at).unwrap_or(0),
                    health: health.get(&id).copied().unwrap_or_default(),
                    spot: spot.remove(&id),
                    power: power.get(&id).cloned(),
                }
            })
            .collect();
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        let leader = m.current_leader.map(|id| LeaderView {
            id,
            name: name_of(id),
            addr: membership
                .get_node(&id)
                .map(|n| n.addr.clone())
                .unwrap_or_default(),
        });
        let node = LocalView {
            id: self.id,
            name: self.name.clone(),
            role: role.into(),
            term: m.current_term,
            commit_index: self.store.committed_index(),
            applied_index: self.store.applied_index(),
            last_log_index: m.last_log_index,
            snapshot_index: m.snapshot.map(|l| l.index),
            ready: self.ready(),
        };
        Ok(StatusView {
            cluster_id: self
                .store
                .cluster()
                .map_err(store_err)?
                .map(|c| c.init.cluster_id),
            commit_index: node.commit_index,
            applied_index: node.applied_index,
            term: m.current_term,
            leader,
            voters_wanted: self.voters_wanted as u8,
            membership_changing: membership.get_joint_config().len() > 1,
            members,
            members_seen_by: self.name.clone(),
            node,
            controller: None,
            workloads: None,
            certs: self.expiring_certs(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{OperatorRecord, Role};

    const DAY: Millis = 86_400_000;

    fn op(name: &str, expires_at: Millis, revoked: bool) -> OperatorRecord {
        OperatorRecord {
            name: name.into(),
            role: Role::Viewer,
            cert_sha256: String::new(),
            serial: String::new(),
            created_at: 0,
            expires_at,
            revoked,
        }
    }

    #[test]
    fn status_warns_of_certificates_expiring_within_30_days() {
        let now = 1_000 * DAY;
        let ops = [
            op("vera", now + 3 * DAY, false),
            op("walt", now + 31 * DAY, false),
            op("rev", now + DAY, true),
            op("gone", now - DAY, false),
            op("ana", now + 3 * DAY, false),
        ];
        let got = expiring_certs(now, Some(("n1", now + 10 * DAY)), &ops);
        let names: Vec<_> = got.iter().map(|c| (c.kind, c.name.as_str())).collect();
        assert_eq!(
            names,
            [
                (CertHolder::Operator, "ana"),
                (CertHolder::Operator, "vera"),
                (CertHolder::Node, "n1")
            ]
        );
        // A node certificate far from expiry is not shown; an expired one is.
        assert!(expiring_certs(now, Some(("n1", now + 365 * DAY)), &[]).is_empty());
        assert_eq!(
            expiring_certs(now, Some(("n1", now - 1)), &[])[0].expires_at,
            now - 1
        );
    }
}
