//! The replicated store: openraft over a redb file, reached through [`Cluster`]. The only module
//! that knows openraft and redb.
//!
//! [`Cluster`] is what the rest of the node uses: writes (forwarded to the leader, retried with
//! the same request id, bounded by `raft.write_timeout`), linearizable reads, status, joins,
//! elections after a pre-vote ([`elect`]), and the leader's membership loop that adds
//! registered nodes as learners and promotes them to voters.

pub mod api;
mod apply;
pub mod backup;
pub mod batch;
pub mod control;
pub mod elect;
mod membership;
pub use membership::Joins;
pub mod network;
mod reads;
mod rollouts;
mod snapshot;
pub mod state_machine;
pub mod status;
pub mod store;
#[cfg(test)]
mod tests;
mod txn;
pub mod types;
mod wal;

use std::collections::BTreeMap;
// `declare_raft_types!` names `Cursor` for its default snapshot type.
#[allow(unused_imports)]
use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::raft::AppendEntriesResponse;
use openraft::{BasicNode, SnapshotPolicy};

use crate::config::Config;
use crate::domain::{NodeId, now_millis};
use crate::net::tls::CaPem;
use crate::net::{BoxFut, Endpoint, PeerCtx, Service};
use api::{ErrorKind, ReadQuery, ReadResult, RequestError};
use network::{Network, PeerRequest, PeerResponse};
use state_machine::StateMachine;
use status::StatusView;
use store::{LogStore, Store};
use types::{Command, Request, RequestId, Response};

/// Writes of one of the node's own loops (the assigner, the controller, the instance
/// reporter): one client id, serials in order, the actor `<role>@<node>` in the audit trail.
pub struct Writer {
    cluster: Arc<Cluster>,
    actor: String,
    client: u128,
    serial: u64,
    /// Forward to the leader (the reporter runs on every node); the leader's loops do not.
    forward: bool,
}

impl Writer {
    /// For a loop that runs on the leader: its writes are not forwarded.
    pub fn new(cluster: Arc<Cluster>, role: &str) -> Writer {
        Writer {
            actor: format!("{role}@{}", cluster.name),
            cluster,
            client: rand::random(),
            serial: 0,
            forward: false,
        }
    }

    /// For a loop that runs on every node: its writes are forwarded to the leader.
    pub fn forwarding(cluster: Arc<Cluster>, role: &str) -> Writer {
        Writer {
            forward: true,
            ..Writer::new(cluster, role)
        }
    }

    /// Write `cmd` and return what the state machine answered, refusals included.
    pub async fn call(&mut self, cmd: Command) -> Result<Response, RequestError> {
        self.serial += 1;
        let req = Request {
            id: RequestId {
                client: self.client,
                serial: self.serial,
            },
            actor: self.actor.clone(),
            at: now_millis(),
            cmd,
        };
        self.cluster.write(req, self.forward).await
    }

    /// Write `cmd`; a refusal is an error.
    pub async fn write(&mut self, cmd: Command) -> Result<(), WriteError> {
        match self.call(cmd).await? {
            Response::Refused(m) => Err(WriteError::Refused(m)),
            _ => Ok(()),
        }
    }
}

/// Why a loop's write did not go through.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The cluster could not take it (no leader or quorum in time, the store stopped).
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The state machine refused the command; the message says why.
    #[error("{0}")]
    Refused(String),
}

/// A peer counts as reachable when it answered within this long (the leader contacts every
/// member each heartbeat, 50 ms by default).
const REACHABLE_WITHIN: Duration = Duration::from_secs(1);

/// How long `status` waits for the leader's view before answering with this node's own.
const LEADER_STATUS_WAIT: Duration = Duration::from_millis(250);

/// The Raft node's member description: its address.
pub type Node = BasicNode;

openraft::declare_raft_types!(
    /// Aether's openraft types: typed requests, snapshots streamed through files.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = Node,
        SnapshotData = tokio::fs::File,
);

/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// The openraft instance.
pub type Raft = openraft::Raft<TypeConfig>;

/// Errors starting the replicated store.
#[derive(Debug, thiserror::Error)]
pub enum RaftStartError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("invalid raft settings: {0}")]
    Config(String),
    #[error("raft failed to start: {0}")]
    Start(String),
}

/// The running replicated store and everything needed to use it from anywhere in the node.
pub struct Cluster {
    pub id: NodeId,
    pub name: String,
    pub raft: Raft,
    pub store: Arc<Store>,
    pub ep: Arc<Endpoint>,
    write_timeout: Duration,
    /// One forwarding attempt waits at most this long (`net.rpc_timeout`), so a write whose
    /// leader died is sent again to the next leader within `write_timeout`.
    forward_timeout: Duration,
    voters_wanted: usize,
    /// The CA (with key) while this node is the founder and the cluster record is not written.
    founder_ca: Option<(String, CaPem)>,
    ca_sha256: String,
    initialised: std::sync::atomic::AtomicBool,
    /// Groups concurrent writes into one log entry.
    batcher: batch::Batcher,
    /// When a leader was last heard from; what peers answered (pre-votes).
    contact: Arc<network::Contact>,
    timing: elect::Timing,
    /// The address this node advertises now (it may have moved since it joined).
    advertise: String,
    /// Held while the leader changes the membership (upkeep, removals, moves), so that upkeep
    /// does not add back a member that is being removed.
    member_lock: tokio::sync::Mutex<()>,
    /// Lifetime of the node certificates this node signs at join (`tls.node_cert_ttl`).
    node_cert_ttl: Duration,
    /// This node's certificate file as status last read it: its modification time and expiry.
    node_cert: std::sync::Mutex<Option<(std::time::SystemTime, Option<crate::domain::Millis>)>>,
}

/// Build openraft's config from ours.
fn raft_config(cfg: &Config) -> Result<openraft::Config, RaftStartError> {
    let r = &cfg.raft;
    let c = openraft::Config {
        cluster_name: "aether".into(),
        heartbeat_interval: r.heartbeat_interval.0.as_millis() as u64,
        election_timeout_min: r.election_timeout_min.0.as_millis() as u64,
        election_timeout_max: r.election_timeout_max.0.as_millis() as u64,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(r.snapshot_after_entries),
        max_in_snapshot_log_to_keep: r.keep_after_snapshot,
        snapshot_max_chunk_size: cfg.net.snapshot_chunk_bytes,
        install_snapshot_timeout: cfg.net.rpc_timeout.0.as_millis().max(1000) as u64,
        // Elections start from `Cluster::run_elections`, after a pre-vote.
        enable_elect: false,
        ..Default::default()
    };
    c.validate()
        .map_err(|e| RaftStartError::Config(e.to_string()))
}

fn unavailable(e: impl std::fmt::Display) -> RequestError {
    RequestError::new(
        ErrorKind::Unavailable,
        format!("the node's raft store stopped: {e}"),
    )
}

fn store_err(e: std::io::Error) -> RequestError {
    RequestError::new(
        ErrorKind::Failed,
        format!("reading the local store failed: {e}"),
    )
}

impl Cluster {
    /// Open the store and start openraft. `founder_ca` is set on a node that creates a new
    /// cluster; it then initialises Raft with itself as the only voter.
    pub async fn start(
        id: NodeId,
        name: String,
        cfg: &Config,
        data_dir: &std::path::Path,
        ep: Arc<Endpoint>,
        ca_sha256: String,
        founder_ca: Option<(String, CaPem)>,
    ) -> Result<Arc<Cluster>, RaftStartError> {
        let store = Store::open_with_cache(data_dir, cfg.raft.cache_bytes as usize)?;
        let contact = Arc::new(network::Contact::default());
        let net = Network {
            ep: ep.clone(),
            backoff_max: cfg.net.reconnect_backoff_max.0,
            reports: Default::default(),
            contact: contact.clone(),
        };
        let raft = Raft::new(
            id,
            Arc::new(raft_config(cfg)?),
            net,
            LogStore(store.clone()),
            StateMachine(store.clone()),
        )
        .await
        .map_err(|e| RaftStartError::Start(e.to_string()))?;
        if founder_ca.is_some()
            && !raft
                .is_initialized()
                .await
                .map_err(|e| RaftStartError::Start(e.to_string()))?
        {
            let members = BTreeMap::from([(id, BasicNode::new(cfg.advertise_addr()))]);
            raft.initialize(members)
                .await
                .map_err(|e| RaftStartError::Start(e.to_string()))?;
            tracing::info!("initialised a new cluster with {name} (id {id}) as its only voter");
        }
        Ok(Arc::new(Cluster {
            id,
            name,
            batcher: batch::Batcher::spawn(raft.clone()),
            raft,
            store,
            ep,
            write_timeout: cfg.raft.write_timeout.0,
            forward_timeout: cfg.net.rpc_timeout.0,
            voters_wanted: cfg.raft.voters as usize,
            founder_ca,
            ca_sha256,
            initialised: Default::default(),
            contact,
            timing: elect::Timing {
                min: cfg.raft.election_timeout_min.0,
                max: cfg.raft.election_timeout_max.0,
            },
            advertise: cfg.advertise_addr(),
            member_lock: Default::default(),
            node_cert_ttl: cfg.tls.node_cert_ttl.0,
            node_cert: Default::default(),
        }))
    }

    /// Why Raft's core stopped by itself (a failed store), if it did; `None` while it runs and
    /// after a requested shutdown.
    pub fn failure(&self) -> Option<String> {
        match &self.raft.metrics().borrow().running_state {
            Ok(()) | Err(openraft::error::Fatal::Stopped) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    /// The node's data dir (where `raft.redb` lives).
    pub fn data_dir(&self) -> &std::path::Path {
        &self.store.dir
    }

    pub fn ca_sha256(&self) -> &str {
        &self.ca_sha256
    }

    /// The current leader's id and address, as this node knows it.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let addr = m.membership_config.membership().get_node(&id)?.addr.clone();
        Some((id, addr))
    }

    /// The Raft voters' ids, as this node knows them.
    pub fn voters(&self) -> std::collections::BTreeSet<NodeId> {
        let m = self.raft.metrics().borrow().clone();
        m.membership_config.membership().voter_ids().collect()
    }

    /// Whether this node is ready (what `/readyz` and `status` say); see [`Cluster::readiness`].
    pub fn ready(&self) -> bool {
        self.readiness().is_ok()
    }

    /// Ready means: a leader is known, the cluster record is applied here (so the node can take
    /// joins), and everything known to be committed is applied. `Err` says which is missing.
    pub fn readiness(&self) -> Result<(), String> {
        if self.raft.metrics().borrow().current_leader.is_none() {
            return Err("no known leader".into());
        }
        if !self.initialised() {
            return Err("the cluster record is not applied yet".into());
        }
        let (applied, committed) = (
            self.store.applied_index(),
            self.store.committed_index().unwrap_or(0),
        );
        if applied < committed {
            return Err(format!(
                "applied index {applied} is behind commit index {committed}"
            ));
        }
        Ok(())
    }

    /// Whether the cluster record has been applied here (checked once true).
    pub fn initialised(&self) -> bool {
        if self.initialised.load(std::sync::atomic::Ordering::Relaxed) {
            return true;
        }
        let yes = self.store.cluster().ok().flatten().is_some();
        self.initialised
            .store(yes, std::sync::atomic::Ordering::Relaxed);
        yes
    }

    /// Write through Raft. Forwards to the leader when `forward` is set; retries with the same
    /// request id until `raft.write_timeout`, so a retried write applies once.
    pub async fn write(&self, req: Request, forward: bool) -> Result<Response, RequestError> {
        let deadline = Instant::now() + self.write_timeout;
        let mut metrics = self.raft.metrics();
        let mut last_err = String::from("no leader is known");
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(RequestError::new(
                    ErrorKind::NoQuorum,
                    format!(
                        "no quorum: the write was not committed within {} ({last_err}); check 'aether status' — retrying is safe",
                        humantime::format_duration(self.write_timeout)
                    ),
                ));
            }
            match tokio::time::timeout(remaining, self.batcher.propose(req.clone())).await {
                Err(_) => last_err = "the leader could not reach a quorum".into(),
                Ok(Ok(r)) => return Ok(r),
                Ok(Err(RaftError::Fatal(f))) => return Err(unavailable(f)),
                Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
                    return Err(RequestError::new(ErrorKind::Failed, e.to_string()));
                }
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                    if !forward {
                        return Err(RequestError::new(
                            ErrorKind::NotLeader,
                            "this node is not the leader",
                        ));
                    }
                    if let (Some(id), Some(node)) = (f.leader_id, f.leader_node) {
                        let pick = |r| match r {
                            PeerResponse::Write(r) => Some(r),
                            _ => None,
                        };
                        let attempt = remaining.min(self.forward_timeout);
                        let req = PeerRequest::Write(req.clone());
                        match self.forward(id, &node.addr, req, attempt, pick).await? {
                            Ok(r) => return Ok(r),
                            Err(why) => last_err = why,
                        }
                    }
                    // Wait for news of a (new) leader rather than spinning.
                    let _ = tokio::time::timeout(
                        Duration::from_millis(100).min(remaining),
                        metrics.changed(),
                    )
                    .await;
                }
            }
        }
    }

    /// Send a write or read to the leader `leader` at `addr`. `Ok(Ok(_))`: its answer;
    /// `Ok(Err(why))`: the leader moved or could not be reached, worth retrying; `Err`: a final
    /// error. Given up as soon as this node learns of another leader (a dead leader costs the
    /// election, not the transport's timeout); retrying is safe, a request id applies once.
    async fn forward<T>(
        &self,
        leader: NodeId,
        addr: &str,
        req: PeerRequest,
        timeout: Duration,
        pick: impl FnOnce(PeerResponse) -> Option<Result<T, RequestError>>,
    ) -> Result<Result<T, String>, RequestError> {
        let mut metrics = self.raft.metrics();
        let moved = async move {
            while metrics.borrow_and_update().current_leader == Some(leader) {
                if metrics.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        let call = self
            .ep
            .call::<_, PeerResponse>(addr, network::ROUTE, &req, Some(timeout));
        let answer = tokio::select! {
            r = call => r,
            () = moved => return Ok(Err("the leader changed while the request was forwarded".into())),
        };
        match answer {
            Err(e) => Ok(Err(format!("forwarding to the leader failed: {e}"))),
            Ok(resp) => match pick(resp) {
                Some(Ok(r)) => Ok(Ok(r)),
                Some(Err(e)) if e.kind == ErrorKind::NotLeader => {
                    Ok(Err("the leader moved".into()))
                }
                Some(Err(e)) => Err(e),
                None => Err(RequestError::new(
                    ErrorKind::Failed,
                    "the leader answered with the wrong message",
                )),
            },
        }
    }

    /// Status with the leader's view of the members when the leader can be asked.
    ///
    /// The leader's view when it answers within [`LEADER_STATUS_WAIT`]; else this node's own,
    /// with the leader marked unreachable (a dead leader costs that wait, not the transport's
    /// timeouts). Not asked at all when this node has not heard from it within its lease.
    pub async fn status(&self) -> Result<StatusView, RequestError> {
        let mut local = self.local_status()?;
        let Some((id, addr)) = self.leader().filter(|(id, _)| *id != self.id) else {
            return Ok(local);
        };
        if self.contact.since_leader() > self.timing.max {
            // Not heard from within its lease: it is gone or cut off; asking would only wait.
            local.mark_unreachable(id);
            return Ok(local);
        }
        let asked = self.ep.call::<_, PeerResponse>(
            &addr,
            network::ROUTE,
            &PeerRequest::Status,
            Some(LEADER_STATUS_WAIT),
        );
        if let Ok(Ok(PeerResponse::Status(mut s))) =
            tokio::time::timeout(LEADER_STATUS_WAIT, asked).await
        {
            s.node = local.node;
            s.certs = local.certs;
            return Ok(*s);
        }
        // It did not answer: say so, whatever the last heartbeat suggested.
        local.mark_unreachable(id);
        Ok(local)
    }

    /// A linearizable read: confirmed by the leader's quorum, then served from its state machine.
    pub async fn read(&self, q: ReadQuery, forward: bool) -> Result<ReadResult, RequestError> {
        let deadline = Instant::now() + self.write_timeout;
        let mut metrics = self.raft.metrics();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(RequestError::new(
                    ErrorKind::NoQuorum,
                    "no quorum: the leader could not confirm a linearizable read in time; check 'aether status'",
                ));
            }
            match tokio::time::timeout(remaining, self.raft.ensure_linearizable()).await {
                Err(_) => continue,
                Ok(Ok(_)) => return self.read_local(&q),
                Ok(Err(RaftError::Fatal(f))) => return Err(unavailable(f)),
                Ok(Err(RaftError::APIError(e))) => {
                    if !forward {
                        return Err(RequestError::new(ErrorKind::NotLeader, e.to_string()));
                    }
                    if let Some((id, addr)) = self.leader().filter(|(id, _)| *id != self.id) {
                        let pick = |r| match r {
                            PeerResponse::Read(r) => Some(r),
                            _ => None,
                        };
                        let attempt = remaining.min(self.forward_timeout);
                        let req = PeerRequest::Read(q.clone());
                        if let Ok(r) = self.forward(id, &addr, req, attempt, pick).await? {
                            return Ok(r);
                        }
                    }
                    let _ = tokio::time::timeout(
                        Duration::from_millis(100).min(remaining),
                        metrics.changed(),
                    )
                    .await;
                }
            }
        }
    }

    /// Serve a read from this node's replica (possibly stale).
    pub fn read_local(&self, q: &ReadQuery) -> Result<ReadResult, RequestError> {
        match q {
            ReadQuery::KvGet { key } => self
                .store
                .kv_get(key)
                .map(ReadResult::Value)
                .map_err(store_err),
            ReadQuery::KvList { prefix, limit } => self
                .store
                .kv_list(prefix, *limit as usize)
                .map(ReadResult::List)
                .map_err(store_err),
            ReadQuery::Tokens => self
                .store
                .tokens()
                .map(|t| ReadResult::Tokens(t.into_iter().map(api::TokenInfo::from).collect()))
                .map_err(store_err),
            ReadQuery::AppliedIndex => Ok(ReadResult::Index(self.store.applied_index())),
        }
    }

    /// A read barrier before reading this node's replica (a backup): the leader confirms its
    /// leadership with a quorum (`ensure_linearizable`, forwarded when this node is not the
    /// leader) and reports its applied index; this node then waits until it has applied that
    /// far. A read transaction begun after this returns holds every write acknowledged before
    /// the call. Returns the index waited for.
    pub async fn read_barrier(&self) -> Result<u64, RequestError> {
        let index = match self.read(ReadQuery::AppliedIndex, true).await? {
            ReadResult::Index(i) => i,
            _ => {
                return Err(RequestError::new(
                    ErrorKind::Failed,
                    "the leader answered the read barrier with another kind of result: run one aether version on every node",
                ));
            }
        };
        let mut applied = self.store.subscribe_applied();
        let deadline = tokio::time::Instant::now() + self.write_timeout;
        loop {
            let at = *applied.borrow_and_update();
            if at >= index {
                return Ok(index);
            }
            match tokio::time::timeout_at(deadline, applied.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(unavailable(e)),
                Err(_) => {
                    return Err(RequestError::new(
                        ErrorKind::NoQuorum,
                        format!(
                            "this node has applied up to index {at}, the leader is at {index}, and it did not catch up within {}: ask another node, or check 'aether status'",
                            humantime::format_duration(self.write_timeout)
                        ),
                    ));
                }
            }
        }
    }
}

impl Service for Cluster {
    type Req = PeerRequest;
    type Resp = PeerResponse;

    fn handle(
        self: Arc<Self>,
        _: PeerCtx,
        req: PeerRequest,
    ) -> BoxFut<Result<PeerResponse, String>> {
        Box::pin(async move {
            Ok(match req {
                PeerRequest::Vote(r) => {
                    let r = self.raft.vote(r).await;
                    if let Ok(v) = &r
                        && v.vote_granted
                    {
                        // A candidate has this node's vote: let it finish before standing.
                        self.contact
                            .voted(v.vote.leader_id().voted_for().unwrap_or_default());
                    }
                    PeerResponse::Vote(r)
                }
                PeerRequest::Append(r) => {
                    let r = self.raft.append_entries(r).await;
                    if matches!(&r, Ok(a) if !matches!(a, AppendEntriesResponse::HigherVote(_))) {
                        self.contact.heard_leader();
                    }
                    PeerResponse::Append(r)
                }
                PeerRequest::Snapshot(r) => {
                    let r = self.raft.install_snapshot(r).await;
                    if r.is_ok() {
                        self.contact.heard_leader();
                    }
                    PeerResponse::Snapshot(r)
                }
                PeerRequest::PreVote(r) => PeerResponse::PreVote(self.pre_vote(&r)),
                PeerRequest::Write(r) => PeerResponse::Write(self.write(r, false).await),
                PeerRequest::Read(q) => PeerResponse::Read(self.read(q, false).await),
                PeerRequest::Status => {
                    PeerResponse::Status(Box::new(self.local_status().map_err(|e| e.message)?))
                }
                PeerRequest::Member { op, relay } => {
                    PeerResponse::Member(self.member_op(op, relay).await)
                }
            })
        })
    }
}
