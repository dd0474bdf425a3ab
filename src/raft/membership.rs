//! Membership: joining nodes (a token consumed through Raft, a signed certificate) and the loop
//! that promotes learners to voters and keeps the voter count at `raft.voters`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::{BasicNode, ChangeMembers};
use tokio_util::sync::CancellationToken;

use super::Cluster;
use super::api::ErrorKind;
use super::api::RequestError;
use super::network::{
    JOIN_ROUTE, JoinAccepted, JoinRefused, JoinRequest, MemberOp, PeerRequest, PeerResponse, ROUTE,
};
use super::types::{ClusterInit, Command, Request, RequestId, Response};
use crate::domain::{NodeId, now_millis, validate_name};
use crate::net::tls::{self, CaPem, TlsError};
use crate::net::{BoxFut, PeerCtx, Service};

impl Cluster {
    /// Handle a join request: on the leader, consume the token through Raft and sign the CSR;
    /// elsewhere, forward to the leader.
    pub async fn join(&self, j: JoinRequest, forward: bool) -> Result<JoinAccepted, JoinRefused> {
        validate_name("node name", &j.name)?;
        crate::config::parse_host_port(&j.addr)
            .map_err(|m| JoinRefused::fatal(format!("bad advertise address: {m}")))?;
        let deadline = Instant::now() + self.write_timeout;
        loop {
            match self.leader() {
                Some((id, _)) if id == self.id => break,
                Some((_, addr)) if forward => {
                    return match self
                        .ep
                        .call::<_, Result<JoinAccepted, JoinRefused>>(
                            &addr,
                            JOIN_ROUTE,
                            &j,
                            Some(self.write_timeout),
                        )
                        .await
                    {
                        Ok(r) => r,
                        Err(e) => Err(JoinRefused::transient(format!(
                            "the member could not reach its leader: {e}"
                        ))),
                    };
                }
                Some(_) => return Err(JoinRefused::transient("this node is no longer the leader")),
                None if Instant::now() > deadline => {
                    return Err(JoinRefused::transient(
                        "the cluster has no leader: retry when 'aether status' shows one",
                    ));
                }
                None => {
                    let _ = tokio::time::timeout(
                        Duration::from_millis(200),
                        self.raft.metrics().changed(),
                    )
                    .await;
                }
            }
        }
        if self.store.restore_unsealed().map_err(|e| e.to_string())? {
            return Err(JoinRefused::transient(
                "this cluster was just restored from a backup and is sealing that state into a snapshot; retry in a moment",
            ));
        }
        // Refuse bad tokens before they cost a log entry; the state machine checks again, with
        // the same rules, when the join is applied.
        let secret_sha256 = tls::hash_secret(&j.secret);
        let at = now_millis();
        let known = self.store.token(&j.token_id).map_err(|e| e.to_string())?;
        let taken = self
            .store
            .nodes()
            .map_err(|e| e.to_string())?
            .iter()
            .any(|n| n.name == j.name);
        let pre = match &known {
            None => Err(crate::domain::TokenRefusal::Unknown(j.token_id.clone())),
            Some(t) => t.check(&secret_sha256, at).and_then(|()| match taken {
                true => Err(crate::domain::TokenRefusal::NameTaken(j.name.clone())),
                false => Ok(()),
            }),
        };
        if let Err(r) = pre {
            tracing::warn!("refused a join of '{}' from {}: {r}", j.name, j.addr);
            return Err(JoinRefused::fatal(r.to_string()));
        }
        if self.store.cluster().map_err(|e| e.to_string())?.is_none() {
            return Err(JoinRefused::transient(
                "the new cluster has not written its record yet",
            ));
        }
        let req = Request {
            id: j.request,
            actor: format!("join:{}", j.name),
            at,
            cmd: Command::Join {
                token_id: j.token_id.clone(),
                secret_sha256,
                name: j.name.clone(),
                addr: j.addr.clone(),
            },
        };
        let node_id = match self.write(req, false).await {
            Ok(Response::Joined { id }) => id,
            Ok(Response::TokenRefused(r)) => return Err(JoinRefused::fatal(r.to_string())),
            Ok(Response::Refused(m)) => return Err(JoinRefused::fatal(m)),
            Ok(other) => return Err(JoinRefused::fatal(format!("unexpected answer {other:?}"))),
            Err(e) if e.kind == ErrorKind::Failed || e.kind == ErrorKind::Invalid => {
                return Err(JoinRefused::fatal(e.message));
            }
            Err(e) => return Err(JoinRefused::transient(e.message)),
        };
        let meta = self
            .store
            .cluster()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| JoinRefused::fatal("the cluster record is missing"))?;
        let ca = CaPem {
            cert_pem: meta.init.ca_cert_pem.clone(),
            key_pem: meta.init.ca_key_pem.clone(),
        };
        let now = (crate::domain::now_millis() / 1000) as i64;
        let ttl = self.node_cert_ttl.as_secs() as i64;
        let cert_pem = tls::sign_csr(&ca, &j.csr_pem, &j.name, now, ttl)
            .map_err(|e: TlsError| e.to_string())?;
        if let Err(e) = self
            .raft
            .add_learner(node_id, BasicNode::new(&j.addr), false)
            .await
        {
            // The membership loop adds registered nodes it finds missing; not fatal here.
            tracing::warn!("adding {} as a learner failed for now: {e}", j.name);
        }
        tracing::info!("{} joined as node {node_id} from {}", j.name, j.addr);
        Ok(JoinAccepted {
            node_id,
            cluster_id: meta.init.cluster_id,
            ca_pem: meta.init.ca_cert_pem,
            cert_pem,
        })
    }

    /// Membership upkeep, every `period` until `shutdown`. On the leader: write the cluster
    /// record (founder), add registered nodes as learners, promote caught-up learners while
    /// voters are wanted. On every member: when the membership has this node at another address
    /// than the one it advertises now, tell the leader.
    pub async fn run_membership(self: Arc<Self>, period: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut moved_told = Instant::now() - Duration::from_secs(3600);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Some(old) = self.stale_address()
                && moved_told.elapsed() >= Duration::from_secs(1)
            {
                moved_told = Instant::now();
                match self.announce_address(&old).await {
                    Ok(done) => tracing::info!("{done}"),
                    Err(e) => tracing::warn!(
                        "telling the leader this node moved from '{old}' to '{}': {e}; trying again",
                        self.advertise
                    ),
                }
            }
            if self.raft.metrics().borrow().current_leader != Some(self.id) {
                continue;
            }
            let _held = self.member_lock.lock().await;
            if let Err(e) = self.membership_step().await {
                tracing::warn!("membership upkeep: {e}");
            }
        }
    }

    /// The address the membership has for this node, when it is not the one it advertises
    /// (and the new one is not a local-only address replacing a reachable one: a node started
    /// before its network was up advertises loopback, which its peers cannot reach).
    fn stale_address(&self) -> Option<String> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        let known = m.membership().get_node(&self.id)?.addr.clone();
        let reachable = !local_only(&self.advertise) || local_only(&known);
        (known != self.advertise && reachable).then_some(known)
    }

    /// Ask the members, the known leader first, to record this node's new address. Any member
    /// may be asked: it forwards to the leader. The leader cannot reach this node before it
    /// knows the address, so this node may not know who leads.
    async fn announce_address(&self, old: &str) -> Result<String, String> {
        let op = MemberOp::Address {
            name: self.name.clone(),
            addr: self.advertise.clone(),
        };
        if self.leader().is_some_and(|(id, _)| id == self.id) {
            return self.member_op(op, false).await.map_err(|e| e.message);
        }
        let m = self.raft.metrics().borrow().clone();
        let mut peers: Vec<(NodeId, String)> = m
            .membership_config
            .membership()
            .nodes()
            .filter(|(id, _)| **id != self.id)
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect();
        peers.sort_by_key(|(id, _)| Some(*id) != m.current_leader);
        let mut why = Vec::new();
        for (id, addr) in peers {
            let req = PeerRequest::Member {
                op: op.clone(),
                relay: true,
            };
            let r = self
                .ep
                .call::<_, PeerResponse>(&addr, ROUTE, &req, Some(self.forward_timeout))
                .await;
            match r {
                Ok(PeerResponse::Member(Ok(done))) => {
                    return Ok(format!("moved from '{old}': {done}"));
                }
                Ok(PeerResponse::Member(Err(e))) => why.push(format!("node id {id}: {e}")),
                Ok(_) => why.push(format!("node id {id}: it answered with the wrong message")),
                Err(e) => why.push(format!("node id {id} at '{addr}': {e}")),
            }
        }
        Err(if why.is_empty() {
            "no other member is known".into()
        } else {
            why.join("; ")
        })
    }

    /// Carry out a membership change: on the leader, or forwarded to it when `forward` is set.
    pub async fn member_op(&self, op: MemberOp, forward: bool) -> Result<String, RequestError> {
        match self.leader() {
            Some((id, _)) if id == self.id => {}
            Some((id, addr)) if forward => {
                let pick = |r| match r {
                    PeerResponse::Member(r) => Some(r),
                    _ => None,
                };
                let req = PeerRequest::Member { op, relay: false };
                // The leader may commit two membership changes and a write before it answers.
                let limit = self.write_timeout * 2 + self.timing.max;
                return match self.forward(id, &addr, req, limit, pick).await? {
                    Ok(done) => Ok(done),
                    Err(why) => Err(RequestError::new(
                        ErrorKind::NoQuorum,
                        format!("{why}; retry once 'aether status' shows a leader"),
                    )),
                };
            }
            Some(_) => {
                return Err(RequestError::new(
                    ErrorKind::NotLeader,
                    "this node is not the leader",
                ));
            }
            None => {
                return Err(RequestError::new(
                    ErrorKind::NoQuorum,
                    "no leader is known; retry once 'aether status' shows one",
                ));
            }
        }
        let _held = self.member_lock.lock().await;
        match op {
            MemberOp::Remove { name, actor } => self.remove_member(&name, &actor).await,
            MemberOp::Address { name, addr } => self.move_member(&name, &addr).await,
        }
    }

    fn member_named(&self, name: &str) -> Result<crate::domain::NodeRecord, RequestError> {
        let nodes = self
            .store
            .nodes()
            .map_err(|e| RequestError::new(ErrorKind::Failed, e.to_string()))?;
        let known: Vec<String> = nodes.iter().map(|n| format!("'{}'", n.name)).collect();
        nodes.into_iter().find(|n| n.name == name).ok_or_else(|| {
            RequestError::new(
                ErrorKind::Invalid,
                format!("no member named '{name}'; members: {}", known.join(", ")),
            )
        })
    }

    /// What the leader knows of the voters now, for [`plan_removal`].
    fn member_facts(&self) -> Members {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        Members {
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            answering: membership
                .voter_ids()
                .filter(|id| {
                    *id == self.id
                        || self
                            .contact
                            .ack_age(*id)
                            .is_some_and(|age| age <= self.timing.max)
                })
                .collect(),
            leader: self.id,
        }
    }

    /// A membership change that gives up (no quorum) rather than hold the membership lock
    /// forever.
    async fn change_members(
        &self,
        change: ChangeMembers<NodeId, super::Node>,
        retain: bool,
    ) -> Result<(), RequestError> {
        let limit = self.write_timeout + self.timing.max;
        match tokio::time::timeout(limit, self.raft.change_membership(change, retain)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(RequestError::new(
                ErrorKind::Failed,
                format!("the membership change failed: {e}"),
            )),
            Err(_) => Err(RequestError::new(
                ErrorKind::NoQuorum,
                format!(
                    "the membership change was not committed within {}: check 'aether status'; the leader's upkeep finishes it once a quorum answers",
                    humantime::format_duration(limit)
                ),
            )),
        }
    }

    async fn remove_member(&self, name: &str, actor: &str) -> Result<String, RequestError> {
        let rec = self.member_named(name)?;
        let names: std::collections::BTreeMap<NodeId, String> = self
            .store
            .nodes()
            .map_err(|e| RequestError::new(ErrorKind::Failed, e.to_string()))?
            .into_iter()
            .map(|n| (n.id, n.name))
            .collect();
        let name_of = |id: NodeId| names.get(&id).cloned().unwrap_or(format!("id {id}"));
        let removal = plan_removal(&self.member_facts(), rec.id, &name_of)?;
        // The record goes first: it is the intent. Should the membership change not finish
        // (a leader change, no quorum), the upkeep of whichever node leads takes a member
        // without a record out of the membership (see `drop_unrecorded`).
        let mut req = self.own_request(Command::RemoveNode { id: rec.id });
        req.actor = actor.to_string();
        match self.write(req, false).await? {
            Response::Ok => {}
            Response::Refused(why) => return Err(RequestError::new(ErrorKind::Failed, why)),
            _ => {
                return Err(RequestError::new(
                    ErrorKind::Failed,
                    "removing the member record got an unexpected answer; check 'aether nodes'",
                ));
            }
        }
        let change = match removal {
            Removal::Voter => Some(ChangeMembers::RemoveVoters(BTreeSet::from([rec.id]))),
            Removal::Learner => Some(ChangeMembers::RemoveNodes(BTreeSet::from([rec.id]))),
            Removal::RecordOnly => None,
        };
        if let Some(change) = change {
            tracing::info!("removing {name} (id {}) from the membership", rec.id);
            self.change_members(change, false).await?;
        }
        let voters: Vec<String> = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .map(name_of)
            .collect();
        let warning = if voters.len() == 2 {
            " (two voters: one more failure stops writes; add a node, or a learner is promoted when there is one)"
        } else {
            ""
        };
        Ok(format!(
            "removed '{name}' ({}); voters now: {}{warning}",
            removal.what(),
            voters.join(", ")
        ))
    }

    /// Leader upkeep: a member of Raft's membership without a record (a removal that did not
    /// finish) leaves it, when that keeps a quorum.
    async fn drop_unrecorded(&self) -> Result<(), String> {
        let recorded: BTreeSet<NodeId> = self
            .store
            .nodes()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|n| n.id)
            .collect();
        let facts = self.member_facts();
        let strays: Vec<NodeId> = facts
            .voters
            .iter()
            .chain(&facts.learners)
            .copied()
            .filter(|id| *id != self.id && !recorded.contains(id))
            .collect();
        for id in strays {
            let name_of = |id: NodeId| format!("id {id}");
            let change = match plan_removal(&facts, id, &name_of) {
                Ok(Removal::Voter) => ChangeMembers::RemoveVoters(BTreeSet::from([id])),
                Ok(_) => ChangeMembers::RemoveNodes(BTreeSet::from([id])),
                Err(e) => {
                    tracing::warn!("node id {id} has no member record but stays: {e}");
                    continue;
                }
            };
            tracing::info!("node id {id} has no member record (a removal); taking it out");
            self.change_members(change, false)
                .await
                .map_err(|e| e.message)?;
            return Ok(());
        }
        Ok(())
    }

    async fn move_member(&self, name: &str, addr: &str) -> Result<String, RequestError> {
        crate::config::parse_host_port(addr).map_err(|m| {
            RequestError::new(ErrorKind::Invalid, format!("bad address '{addr}': {m}"))
        })?;
        let rec = self.member_named(name)?;
        if local_only(addr) && !local_only(&rec.addr) {
            return Err(RequestError::new(
                ErrorKind::Invalid,
                format!(
                    "'{name}' would move from '{}' to the local-only address '{addr}', which its peers cannot reach; start it with --advertise HOST:PORT",
                    rec.addr
                ),
            ));
        }
        if rec.addr != addr {
            let req = self.own_request(Command::SetNodeAddr {
                id: rec.id,
                addr: addr.to_string(),
            });
            match self.write(req, false).await? {
                Response::Ok => {}
                Response::Refused(why) => return Err(RequestError::new(ErrorKind::Invalid, why)),
                _ => {
                    return Err(RequestError::new(
                        ErrorKind::Failed,
                        "recording the address got an unexpected answer; check 'aether nodes'",
                    ));
                }
            }
        }
        let m = self.raft.metrics().borrow().clone();
        let in_membership = m.membership_config.membership().get_node(&rec.id).cloned();
        if in_membership.is_some_and(|n| n.addr != addr) {
            let nodes = std::collections::BTreeMap::from([(rec.id, BasicNode::new(addr))]);
            self.change_members(ChangeMembers::SetNodes(nodes), true)
                .await?;
        }
        tracing::info!("node {name} (id {}) is now at {addr}", rec.id);
        Ok(format!("'{name}' is now at '{addr}'"))
    }

    /// A request this node makes on its own behalf (a fresh id; retried writes keep it).
    fn own_request(&self, cmd: Command) -> Request {
        Request {
            id: RequestId {
                client: rand::random(),
                serial: 1,
            },
            actor: format!("node:{}", self.name),
            at: now_millis(),
            cmd,
        }
    }

    /// A restored store's state is in no log entry: take a snapshot and purge the log up to it,
    /// so that every node that joins installs the snapshot rather than replaying the log.
    async fn seal_restore(&self) -> Result<(), String> {
        let applied = self.store.applied_index();
        tracing::info!("sealing the restored state into a snapshot at index {applied}");
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| format!("snapshot of the restored state: {e}"))?;
        let m = self
            .raft
            .wait(Some(self.write_timeout))
            .metrics(
                |m| m.snapshot.is_some_and(|s| s.index >= applied),
                "a snapshot of the restored state",
            )
            .await
            .map_err(|e| format!("snapshot of the restored state: {e}"))?;
        let upto = m.snapshot.map(|s| s.index).unwrap_or(applied);
        self.raft
            .trigger()
            .purge_log(upto)
            .await
            .map_err(|e| format!("purging the log up to the snapshot: {e}"))?;
        self.raft
            .wait(Some(self.write_timeout))
            .metrics(
                |m| m.purged.is_some_and(|p| p.index >= upto),
                "the log purged up to the snapshot",
            )
            .await
            .map_err(|e| format!("purging the log up to the snapshot: {e}"))?;
        self.store
            .set_restore_unsealed(false)
            .map_err(|e| e.to_string())?;
        tracing::info!("the restored state is in the snapshot at index {upto}; joins are open");
        Ok(())
    }

    async fn membership_step(&self) -> Result<(), String> {
        if let Some((cluster_id, ca)) = &self.founder_ca {
            if self.store.cluster().map_err(|e| e.to_string())?.is_none() {
                let init = ClusterInit {
                    cluster_id: cluster_id.clone(),
                    ca_cert_pem: ca.cert_pem.clone(),
                    ca_key_pem: ca.key_pem.clone(),
                    founder_id: self.id,
                    founder_name: self.name.clone(),
                    founder_addr: self
                        .raft
                        .metrics()
                        .borrow()
                        .membership_config
                        .membership()
                        .get_node(&self.id)
                        .map(|n| n.addr.clone())
                        .unwrap_or_default(),
                };
                let req = Request {
                    id: RequestId {
                        client: self.id as u128,
                        serial: 1,
                    },
                    actor: format!("node:{}", self.name),
                    at: now_millis(),
                    cmd: Command::InitCluster(init),
                };
                self.write(req, false).await.map_err(|e| e.message)?;
            }
        }
        if self.initialised() && self.store.restore_unsealed().map_err(|e| e.to_string())? {
            self.seal_restore().await?;
        }
        if self.initialised() {
            self.drop_unrecorded().await?;
        }
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        for rec in self.store.nodes().map_err(|e| e.to_string())? {
            if membership.get_node(&rec.id).is_none() {
                tracing::info!("adding {} (id {}) as a learner", rec.name, rec.id);
                self.raft
                    .add_learner(rec.id, BasicNode::new(&rec.addr), false)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        if voters.len() >= self.voters_wanted {
            return Ok(());
        }
        // Promote caught-up learners, two at a time past the first voter, so the number of
        // voters stays odd (a 2-voter cluster would stop on either failure).
        let last = m.last_log_index.unwrap_or(0);
        let replication = m.replication.unwrap_or_default();
        let ready: Vec<NodeId> = membership
            .learner_ids()
            .filter(|id| {
                replication
                    .get(id)
                    .cloned()
                    .flatten()
                    .is_some_and(|l| l.index + 50 >= last)
            })
            .collect();
        let step = if voters.len() % 2 == 1 { 2 } else { 1 };
        if ready.len() >= step && voters.len() + step <= self.voters_wanted {
            let add: BTreeSet<NodeId> = ready.into_iter().take(step).collect();
            tracing::info!("promoting {add:?} to voters");
            self.raft
                .change_membership(ChangeMembers::AddVoterIds(add), true)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// Whether `addr` (`host:port`) is a loopback or unspecified address: reachable from this
/// host only. A host name is taken as reachable.
fn local_only(addr: &str) -> bool {
    addr.parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback() || a.ip().is_unspecified())
}

/// What the leader knows when asked to remove a member.
#[derive(Debug, Clone)]
pub struct Members {
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    /// Voters that answered the leader within the lease (the leader itself included).
    pub answering: BTreeSet<NodeId>,
    pub leader: NodeId,
}

/// How a member leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Out of the voter set (a joint change), then its record.
    Voter,
    /// Out of the learners, then its record.
    Learner,
    /// Registered but never added to Raft's membership: only its record.
    RecordOnly,
}

impl Removal {
    fn what(self) -> &'static str {
        match self {
            Removal::Voter => "a voter",
            Removal::Learner => "a learner",
            Removal::RecordOnly => "registered, not yet a learner",
        }
    }
}

/// Whether `target` may leave, and how. A voter leaves only when both the current voter set and
/// the one without it have a quorum that answers now (a joint change needs both); the leader
/// does not remove itself (openraft 0.9 cannot hand leadership over, so the cluster would sit
/// leaderless until an election).
pub fn plan_removal(
    m: &Members,
    target: NodeId,
    name: &dyn Fn(NodeId) -> String,
) -> Result<Removal, RequestError> {
    let refused = |why: String| RequestError::new(ErrorKind::Failed, why);
    let list = |ids: &BTreeSet<NodeId>| {
        ids.iter()
            .map(|id| format!("'{}'", name(*id)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if target == m.leader && m.voters.len() <= 1 {
        return Err(refused(format!(
            "'{}' is the cluster's only voter; a cluster cannot remove its last voter (to retire the whole cluster, stop its nodes)",
            name(target)
        )));
    }
    if target == m.leader {
        return Err(refused(format!(
            "'{0}' is the leader and cannot remove itself; stop its daemon first (another voter takes over within seconds), then run 'aether remove {0}' on another node",
            name(target)
        )));
    }
    if !m.voters.contains(&target) {
        return Ok(if m.learners.contains(&target) {
            Removal::Learner
        } else {
            Removal::RecordOnly
        });
    }
    let quorum = |set: &BTreeSet<NodeId>| set.len() / 2 + 1;
    let answering_now: BTreeSet<NodeId> = m.voters.intersection(&m.answering).copied().collect();
    if answering_now.len() < quorum(&m.voters) {
        let silent: BTreeSet<NodeId> = m.voters.difference(&m.answering).copied().collect();
        return Err(RequestError::new(
            ErrorKind::NoQuorum,
            format!(
                "the cluster has no quorum now: {} of {} voters answer (silent: {}); bring voters back before changing the membership",
                answering_now.len(),
                m.voters.len(),
                list(&silent)
            ),
        ));
    }
    let rest: BTreeSet<NodeId> = m.voters.iter().copied().filter(|v| *v != target).collect();
    let answering_rest: BTreeSet<NodeId> = rest.intersection(&m.answering).copied().collect();
    if answering_rest.len() < quorum(&rest) {
        let silent: BTreeSet<NodeId> = rest.difference(&m.answering).copied().collect();
        return Err(refused(format!(
            "removing '{}' would lose quorum: the voters left ({}) need {} answering, only {} do; bring {} back first, then remove '{}'",
            name(target),
            list(&rest),
            quorum(&rest),
            answering_rest.len(),
            list(&silent),
            name(target)
        )));
    }
    Ok(Removal::Voter)
}

/// Joins on the peer endpoint ([`JOIN_ROUTE`]): a joining node may ask any member, which
/// forwards to the leader; a member forwarding to us expects us to be the leader.
pub struct Joins(pub Arc<Cluster>);

impl Service for Joins {
    type Req = JoinRequest;
    type Resp = Result<JoinAccepted, JoinRefused>;

    fn handle(self: Arc<Self>, ctx: PeerCtx, j: JoinRequest) -> BoxFut<Result<Self::Resp, String>> {
        Box::pin(async move { Ok(self.0.join(j, !ctx.authenticated).await) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(voters: &[NodeId], learners: &[NodeId], answering: &[NodeId]) -> Members {
        Members {
            voters: voters.iter().copied().collect(),
            learners: learners.iter().copied().collect(),
            answering: answering.iter().copied().collect(),
            leader: 1,
        }
    }

    fn name(id: NodeId) -> String {
        format!("n{id}")
    }

    #[test]
    fn a_dead_voter_leaves_when_the_rest_has_a_quorum() {
        let m = members(&[1, 2, 3], &[], &[1, 2]);
        assert_eq!(plan_removal(&m, 3, &name), Ok(Removal::Voter));
        // Five voters, two dead: removing one dead leaves four, three of which answer.
        let m = members(&[1, 2, 3, 4, 5], &[], &[1, 2, 3]);
        assert_eq!(plan_removal(&m, 5, &name), Ok(Removal::Voter));
    }

    #[test]
    fn removing_a_live_voter_beside_a_dead_one_is_refused_naming_the_dead() {
        let m = members(&[1, 2, 3], &[], &[1, 2]);
        let why = plan_removal(&m, 2, &name).unwrap_err().message;
        assert!(why.contains("would lose quorum"), "{why}");
        assert!(why.contains("'n3'"), "{why}");
        assert!(why.contains("need 2 answering, only 1"), "{why}");
    }

    #[test]
    fn without_a_quorum_now_nothing_is_removed() {
        let m = members(&[1, 2, 3, 4, 5], &[], &[1, 2]);
        let why = plan_removal(&m, 5, &name).unwrap_err();
        assert_eq!(why.kind, ErrorKind::NoQuorum);
        assert!(why.message.contains("no quorum now: 2 of 5"), "{why}");
    }

    #[test]
    fn the_leader_does_not_remove_itself() {
        let m = members(&[1, 2, 3], &[], &[1, 2, 3]);
        let why = plan_removal(&m, 1, &name).unwrap_err().message;
        assert!(why.contains("'n1' is the leader"), "{why}");
        assert!(why.contains("stop its daemon first"), "{why}");
        let alone = members(&[1], &[], &[1]);
        let why = plan_removal(&alone, 1, &name).unwrap_err().message;
        assert!(why.contains("only voter"), "{why}");
    }

    #[test]
    fn loopback_and_unspecified_addresses_are_local_only() {
        assert!(local_only("127.0.0.1:7420"));
        assert!(local_only("[::1]:7420"));
        assert!(local_only("0.0.0.0:7420"));
        assert!(!local_only("10.0.0.7:7420"));
        assert!(!local_only("gpu-3.lan:7420"));
    }

    #[test]
    fn learners_and_registered_nodes_leave_without_a_quorum_check() {
        let m = members(&[1, 2, 3], &[4], &[1]);
        assert_eq!(plan_removal(&m, 4, &name), Ok(Removal::Learner));
        assert_eq!(plan_removal(&m, 5, &name), Ok(Removal::RecordOnly));
    }
}
