//! Raft's messages on the peer endpoint: votes, append entries, snapshot chunks, forwarded
//! writes and reads, and the leader's status ([`ROUTE`]); joins on their own route
//! ([`JOIN_ROUTE`], open to nodes without a certificate).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::LogId;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use super::api::{ReadQuery, ReadResult, RequestError};
use super::status::StatusView;
use super::types::{Request, RequestId, Response};
use super::{Node, TypeConfig};
use crate::domain::NodeId;
use crate::net::{Endpoint, NetError, Route};

/// Raft's place on the peer endpoint (members only).
pub const ROUTE: Route = Route {
    id: 1,
    name: "raft",
    open: false,
};

/// Joins: the one route open to a node without a cluster certificate.
pub const JOIN_ROUTE: Route = Route {
    id: 2,
    name: "join",
    open: true,
};

/// A request from one member to another on [`ROUTE`].
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerRequest {
    Vote(VoteRequest<NodeId>),
    Append(AppendEntriesRequest<TypeConfig>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// A write forwarded to the leader.
    Write(Request),
    /// A linearizable read forwarded to the leader.
    Read(ReadQuery),
    /// The leader's view of the cluster.
    Status,
    /// "Would you elect me?", before an election (see [`super::elect`]).
    PreVote(PreVoteRequest),
    /// A membership change for the leader (see [`super::membership`]). `relay`: the receiver
    /// may pass it on to the leader (set by a moved node, which may not know who leads; a relayed
    /// request is not passed on again).
    Member {
        op: MemberOp,
        relay: bool,
    },
}

/// The answer to a [`PeerRequest`], variant for variant.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerResponse {
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    Write(Result<Response, RequestError>),
    Read(Result<ReadResult, RequestError>),
    Status(Box<StatusView>),
    PreVote(Result<PreVoteResponse, String>),
    /// What the leader did, in words.
    Member(Result<String, RequestError>),
}

/// A membership change, carried out by the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberOp {
    /// Take the member so named out of the cluster (`aether remove`).
    Remove {
        name: String,
        /// Who asked, for the audit trail (`uid:0@n2`).
        actor: String,
    },
    /// The member so named now listens at `addr` (sent by that member).
    Address { name: String, addr: String },
}

/// "Would you elect me?", asked before an election; answering changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreVoteRequest {
    pub candidate: NodeId,
    /// The term the candidate would stand for: its current term plus one.
    pub term: u64,
    pub last_log_id: Option<LogId<NodeId>>,
}

/// The answer to a [`PreVoteRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreVoteResponse {
    pub granted: bool,
    /// The voter's current term.
    pub term: u64,
    /// Why it said no (empty when it said yes).
    pub why: String,
}

/// Why this node last held back from standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// A live leader's append or snapshot (also: the node just started).
    Leader,
    /// It gave its vote to this candidate.
    Vote(NodeId),
    /// It said yes to this candidate's pre-vote.
    PreVote(NodeId),
}

/// What the network layer saw, for elections (`super::elect`): when this node last heard from a leader
/// (or backed a candidate, which counts the same: it lets that candidate finish before it
/// stands itself), and when each peer last answered this node's appends (while it leads).
#[derive(Debug)]
pub struct Contact {
    leader: Mutex<(Instant, Heard)>,
    acks: Mutex<HashMap<NodeId, Instant>>,
}

impl Default for Contact {
    fn default() -> Contact {
        Contact {
            // A node that just started waits a whole election timeout before it stands.
            leader: Mutex::new((Instant::now(), Heard::Leader)),
            acks: Mutex::default(),
        }
    }
}

impl Contact {
    fn set(&self, h: Heard) {
        *self.leader.lock().expect("contact lock") = (Instant::now(), h);
    }

    /// A live leader was heard from (an append or snapshot accepted).
    pub fn heard_leader(&self) {
        self.set(Heard::Leader);
    }

    /// This node gave `candidate` its vote.
    pub fn voted(&self, candidate: NodeId) {
        self.set(Heard::Vote(candidate));
    }

    /// This node said yes to `candidate`'s pre-vote.
    pub fn pre_voted(&self, candidate: NodeId) {
        self.set(Heard::PreVote(candidate));
    }

    pub fn since_leader(&self) -> Duration {
        self.leader.lock().expect("contact lock").0.elapsed()
    }

    pub fn last(&self) -> (Duration, Heard) {
        let (t, h) = *self.leader.lock().expect("contact lock");
        (t.elapsed(), h)
    }

    /// `peer` answered an append this node sent.
    pub fn acked(&self, peer: NodeId) {
        self.acks
            .lock()
            .expect("contact lock")
            .insert(peer, Instant::now());
    }

    pub fn ack_age(&self, peer: NodeId) -> Option<Duration> {
        self.acks
            .lock()
            .expect("contact lock")
            .get(&peer)
            .map(|t| t.elapsed())
    }
}

/// Why a join did not go through, and whether asking again may help (no leader yet, the
/// cluster record not written yet, a leader change) or not (a bad token, a taken name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct JoinRefused {
    pub retry: bool,
    pub message: String,
}

impl JoinRefused {
    /// A refusal that asking again will not change.
    pub fn fatal(message: impl Into<String>) -> JoinRefused {
        JoinRefused {
            retry: false,
            message: message.into(),
        }
    }

    /// A refusal that may pass on a later try.
    pub fn transient(message: impl Into<String>) -> JoinRefused {
        JoinRefused {
            retry: true,
            message: message.into(),
        }
    }
}

impl From<String> for JoinRefused {
    fn from(m: String) -> JoinRefused {
        JoinRefused::fatal(m)
    }
}

/// A joining node's request. The secret travels only after the node checked the CA pin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub request: RequestId,
    pub token_id: String,
    pub secret: String,
    pub name: String,
    /// Address the new node will be reachable at.
    pub addr: String,
    pub csr_pem: String,
}

/// What a joining node gets back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinAccepted {
    pub node_id: NodeId,
    pub cluster_id: String,
    pub ca_pem: String,
    pub cert_pem: String,
}

/// Builds a [`PeerClient`] per target for openraft.
pub struct Network {
    pub ep: Arc<Endpoint>,
    pub backoff_max: Duration,
    /// What has been said about peers that do not answer (shared by every client).
    pub reports: Arc<Mutex<PeerReports>>,
    /// Where answered appends are noted (a leader's quorum, for pre-votes).
    pub contact: Arc<Contact>,
}

/// openraft's handle on one peer.
pub struct PeerClient {
    ep: Arc<Endpoint>,
    target: NodeId,
    addr: String,
    backoff_max: Duration,
    reports: Arc<Mutex<PeerReports>>,
    contact: Arc<Contact>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        PeerClient {
            ep: self.ep.clone(),
            target,
            addr: node.addr.clone(),
            backoff_max: self.backoff_max,
            reports: self.reports.clone(),
            contact: self.contact.clone(),
        }
    }
}

/// The first note about a silent peer comes at once, the next after this long, each one after
/// twice the gap before, up to [`NOTE_GAP_MAX`].
const NOTE_GAP_FIRST: Duration = Duration::from_secs(10);
/// The longest gap between notes about a peer that stays silent.
const NOTE_GAP_MAX: Duration = Duration::from_secs(300);

/// What to say about peers that do not answer Raft's RPCs: once when one stops answering,
/// then at a slowing rate while it stays silent, and once when it answers again. (openraft's
/// own per-retry lines are filtered out: see [`crate::init_tracing`].) No I/O: the caller logs.
#[derive(Debug, Default)]
pub struct PeerReports {
    down: HashMap<NodeId, Silent>,
}

#[derive(Debug)]
struct Silent {
    since: Instant,
    next: Instant,
    gap: Duration,
    failures: u64,
}

/// A note to log about a peer.
#[derive(Debug, PartialEq)]
pub enum PeerNote {
    /// It just stopped answering.
    Down,
    /// Still silent after `for_`, `failures` failed RPCs so far; the next note after `next`.
    StillDown {
        for_: Duration,
        failures: u64,
        next: Duration,
    },
    /// It answers again after `after` of silence.
    Back { after: Duration },
}

impl PeerReports {
    /// An RPC to `peer` failed at `now`: what to say, if anything.
    pub fn failed(&mut self, peer: NodeId, now: Instant) -> Option<PeerNote> {
        match self.down.get_mut(&peer) {
            None => {
                self.down.insert(
                    peer,
                    Silent {
                        since: now,
                        next: now + NOTE_GAP_FIRST,
                        gap: NOTE_GAP_FIRST,
                        failures: 1,
                    },
                );
                Some(PeerNote::Down)
            }
            Some(s) => {
                s.failures += 1;
                if now < s.next {
                    return None;
                }
                s.gap = (s.gap * 2).min(NOTE_GAP_MAX);
                s.next = now + s.gap;
                Some(PeerNote::StillDown {
                    for_: now - s.since,
                    failures: s.failures,
                    next: s.gap,
                })
            }
        }
    }

    /// An RPC to `peer` was answered at `now`.
    pub fn answered(&mut self, peer: NodeId, now: Instant) -> Option<PeerNote> {
        let s = self.down.remove(&peer)?;
        Some(PeerNote::Back {
            after: now - s.since,
        })
    }
}

fn transport_err<E: std::error::Error>(e: NetError) -> RPCError<NodeId, Node, E> {
    if e.is_unreachable() {
        RPCError::Unreachable(Unreachable::new(&e))
    } else {
        RPCError::Network(NetworkError::new(&e))
    }
}

fn unexpected<E: std::error::Error>(what: &str) -> RPCError<NodeId, Node, E> {
    let e = std::io::Error::other(format!(
        "peer answered a {what} request with the wrong message"
    ));
    RPCError::Network(NetworkError::new(&e))
}

impl PeerClient {
    /// One Raft RPC: send `req`, take this RPC's answer out of the response with `pick`, and
    /// map transport and remote errors to what openraft expects.
    async fn rpc<T, E: std::error::Error>(
        &self,
        req: PeerRequest,
        option: &RPCOption,
        what: &str,
        pick: impl FnOnce(PeerResponse) -> Option<Result<T, E>>,
    ) -> Result<T, RPCError<NodeId, Node, E>> {
        // openraft drops this future at its own deadline, which may come before the
        // transport's: a dropped call is a failure too.
        let mut pending = Pending {
            client: self,
            done: false,
        };
        let resp = self
            .ep
            .call(&self.addr, ROUTE, &req, Some(option.hard_ttl()))
            .await;
        pending.done = true;
        self.note(resp.as_ref().err().map(|e| e as &dyn std::fmt::Display));
        let resp = resp.map_err(transport_err)?;
        match pick(resp) {
            Some(r) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            None => Err(unexpected(what)),
        }
    }
}

/// An RPC in flight; noted as failed if its future is dropped before it ends.
struct Pending<'a> {
    client: &'a PeerClient,
    done: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.client.note(Some(
                &"no answer before the raft deadline" as &dyn std::fmt::Display,
            ));
        }
    }
}

impl PeerClient {
    /// Log what [`PeerReports`] says of this RPC's outcome (`err`: why it failed).
    fn note(&self, err: Option<&dyn std::fmt::Display>) {
        let now = Instant::now();
        let mut reports = self.reports.lock().expect("peer reports lock");
        let (peer, addr) = (self.target, &self.addr);
        match err {
            Some(e) => match reports.failed(peer, now) {
                Some(PeerNote::Down) => tracing::warn!(
                    "raft peer {peer} at {addr} does not answer: {e}; retrying, next note in {}s \
                     unless it answers",
                    NOTE_GAP_FIRST.as_secs()
                ),
                Some(PeerNote::StillDown {
                    for_,
                    failures,
                    next,
                }) => tracing::warn!(
                    "raft peer {peer} at {addr} still does not answer after {}s ({failures} \
                     failed requests; last: {e}); next note in {}s",
                    for_.as_secs(),
                    next.as_secs()
                ),
                _ => {}
            },
            None => {
                if let Some(PeerNote::Back { after }) = reports.answered(peer, now) {
                    tracing::info!(
                        "raft peer {peer} at {addr} answers again after {}s",
                        after.as_secs()
                    );
                }
            }
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        let pick = |r| match r {
            PeerResponse::Append(r) => Some(r),
            _ => None,
        };
        let r = self
            .rpc(PeerRequest::Append(rpc), &option, "append", pick)
            .await;
        if matches!(&r, Ok(a) if !matches!(a, AppendEntriesResponse::HigherVote(_))) {
            self.contact.acked(self.target);
        }
        r
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let pick = |r| match r {
            PeerResponse::Snapshot(r) => Some(r),
            _ => None,
        };
        self.rpc(PeerRequest::Snapshot(rpc), &option, "snapshot", pick)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        let pick = |r| match r {
            PeerResponse::Vote(r) => Some(r),
            _ => None,
        };
        self.rpc(PeerRequest::Vote(rpc), &option, "vote", pick)
            .await
    }

    fn backoff(&self) -> Backoff {
        let max = self.backoff_max;
        Backoff::new((0..).map(move |i: u32| Duration::from_millis(100u64 << i.min(6)).min(max)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A silent peer is noted once, then after 10 s, 20 s, 40 s … (at most every 5 min), and
    /// once more when it answers; a peer that answers is never noted.
    #[test]
    fn a_silent_peer_is_noted_once_then_at_a_slowing_rate() {
        let mut r = PeerReports::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(r.answered(2, at(0)), None);
        assert_eq!(r.failed(2, at(0)), Some(PeerNote::Down));
        // openraft retries every 100-200 ms (and heartbeats): silence until the first gap.
        let mut noted = Vec::new();
        let mut ms = 100;
        while ms <= 80_000 {
            if let Some(n) = r.failed(2, at(ms)) {
                noted.push((ms, n));
            }
            ms += 150;
        }
        let when: Vec<u64> = noted.iter().map(|(ms, _)| ms / 1000).collect();
        assert_eq!(when, [10, 30, 70], "{noted:?}");
        assert!(matches!(
            noted[0].1,
            PeerNote::StillDown { next, .. } if next == Duration::from_secs(20)
        ));
        // Another peer has its own count.
        assert_eq!(r.failed(3, at(80_000)), Some(PeerNote::Down));
        assert_eq!(
            r.answered(2, at(81_000)),
            Some(PeerNote::Back {
                after: Duration::from_secs(81)
            })
        );
        assert_eq!(r.answered(2, at(82_000)), None);
        assert_eq!(
            r.failed(2, at(83_000)),
            Some(PeerNote::Down),
            "down again: said again"
        );
        let mut s = PeerReports::default();
        s.failed(4, at(0));
        let mut last = None;
        for sec in 1..=3_000 {
            if let Some(PeerNote::StillDown { next, .. }) = s.failed(4, at(sec * 1000)) {
                last = Some(next);
            }
        }
        assert_eq!(last, Some(NOTE_GAP_MAX));
    }
}
