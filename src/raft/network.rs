//! Raft's messages on the peer endpoint: votes, append entries, snapshot chunks, forwarded
//! writes and reads, and the leader's status ([`ROUTE`]); joins on their own route
//! ([`JOIN_ROUTE`], open to nodes without a certificate).

use std::sync::Arc;
use std::time::Duration;

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
}

/// openraft's handle on one peer.
pub struct PeerClient {
    ep: Arc<Endpoint>,
    target: NodeId,
    addr: String,
    backoff_max: Duration,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        PeerClient {
            ep: self.ep.clone(),
            target,
            addr: node.addr.clone(),
            backoff_max: self.backoff_max,
        }
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
        let resp = self
            .ep
            .call(&self.addr, ROUTE, &req, Some(option.hard_ttl()))
            .await
            .map_err(transport_err)?;
        match pick(resp) {
            Some(r) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            None => Err(unexpected(what)),
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
        self.rpc(PeerRequest::Append(rpc), &option, "append", pick)
            .await
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
