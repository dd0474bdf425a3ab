//! Admin client: one connection to a node's Unix socket. [`Client::call`] sends any request;
//! the typed methods (one per request kind) return the view that request answers with, or a
//! [`ClientError`] that says whether the node refused it or answered with something else.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::UnixStream;

use super::protocol::MAX_ADMIN_FRAME;
use super::protocol::{
    AdminError, AdminRequest, AdminResponse, BlueprintView, DoctorView, DrillReport, ErrorKind,
    LiveUpdate, MemberView, MetricsView, ModelBenchView, OperatorCertView, PlanView, ReadQuery,
    ReadResult, RolloutActView, RolloutView, StatusView, TokenInfo, TokenView, TrafficView, Watch,
};
use crate::controller::model::ModelStatus;
use crate::deploy::logs::LogChunk;
use crate::domain::{AuditRecord, Decision, OperatorRecord, RolloutOp};
use crate::net::frame::{FrameError, read_frame, write_frame};
use crate::raft::backup::BackupSummary;
use crate::raft::types::{Command, RequestId, Response};

/// Why a typed request failed: callers decide on the variant (the CLI maps each to an exit
/// code), never on the message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// The node could not be reached, or it answered with an error (its kind says which).
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// The node answered with a response of another kind than the request asks for: the
    /// client and the node are most likely different aether versions.
    #[error(
        "the node answered with an unexpected message: are the CLI and the node the same aether version?"
    )]
    Unexpected {
        /// The request sent (its variant name).
        request: &'static str,
        /// The answer received (its variant name).
        response: &'static str,
    },
}

impl ClientError {
    /// The CLI exit code for this error (DESIGN §11): the node's error by its kind; an
    /// unexpected answer is a failure (1).
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Admin(e) => e.exit_code(),
            ClientError::Unexpected { .. } => 1,
        }
    }
}

/// The variant name of a response, for [`ClientError::Unexpected`].
fn response_kind(r: &AdminResponse) -> &'static str {
    match r {
        AdminResponse::Status(_) => "Status",
        AdminResponse::Nodes(_) => "Nodes",
        AdminResponse::Written(_) => "Written",
        AdminResponse::Read(_) => "Read",
        AdminResponse::Token(_) => "Token",
        AdminResponse::Audit(_) => "Audit",
        AdminResponse::Metrics(_) => "Metrics",
        AdminResponse::Plan(_) => "Plan",
        AdminResponse::Blueprints(_) => "Blueprints",
        AdminResponse::Logs(_) => "Logs",
        AdminResponse::Error(_) => "Error",
        AdminResponse::Decisions(_) => "Decisions",
        AdminResponse::Decision(_) => "Decision",
        AdminResponse::Model(_) => "Model",
        AdminResponse::ModelBench(_) => "ModelBench",
        AdminResponse::ModelReview(_) => "ModelReview",
        AdminResponse::Live(_) => "Live",
        AdminResponse::Traffic(_) => "Traffic",
        AdminResponse::Rollouts(_) => "Rollouts",
        AdminResponse::Rollout(_) => "Rollout",
        AdminResponse::RolloutActed(_) => "RolloutActed",
        AdminResponse::Advice(_) => "Advice",
        AdminResponse::Done(_) => "Done",
        AdminResponse::Doctor(_) => "Doctor",
        AdminResponse::Drill(_) => "Drill",
        AdminResponse::DrillProgress(_) => "DrillProgress",
        AdminResponse::DiagNode(_) => "DiagNode",
        AdminResponse::SnapshotChunk(_) => "SnapshotChunk",
        AdminResponse::SnapshotDone(_) => "SnapshotDone",
        AdminResponse::OperatorCert(_) => "OperatorCert",
        AdminResponse::Operators(_) => "Operators",
    }
}

/// The variant name of a read result, for [`ClientError::Unexpected`].
fn read_kind(r: &ReadResult) -> &'static str {
    match r {
        ReadResult::Value(_) => "Value",
        ReadResult::List(_) => "List",
        ReadResult::Index(_) => "Index",
        ReadResult::Tokens(_) => "Tokens",
    }
}

/// Send `$req` on `$client` and take the answer apart with `$pat => $out`; any other answer is
/// [`ClientError::Unexpected`].
macro_rules! ask {
    ($client:expr, $name:literal, $req:expr, $pat:pat => $out:expr) => {
        match $client.call(&$req).await? {
            $pat => Ok($out),
            other => Err(ClientError::Unexpected {
                request: $name,
                response: response_kind(&other),
            }),
        }
    };
}

/// The byte pipe an admin connection runs on: the node's Unix socket, or a remote admin
/// stream over QUIC. The frames are the same on both.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for T {}

/// Which node a client talks to, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The node's local admin socket.
    Socket(PathBuf),
    /// A node's QUIC port (`host:port`), as the remote operator whose identity is in `identity`.
    Remote { addr: String, identity: PathBuf },
}

/// How long `--remote` waits for the node's handshake.
const REMOTE_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A connection to a node's admin API.
pub struct Client {
    stream: Box<dyn Transport>,
    /// Where the node is, for messages: its socket's path or its `host:port`.
    at: String,
}

impl Client {
    /// Connect to the socket at `path`.
    pub async fn connect(path: &Path) -> Result<Client, AdminError> {
        let stream = UnixStream::connect(path).await.map_err(|e| {
            AdminError::new(
                ErrorKind::Unavailable,
                format!(
                    "cannot reach the node at '{}': {e}; is 'aether node' running with the same --data-dir (or pass --socket)?",
                    path.display()
                ),
            )
        })?;
        Ok(Client {
            stream: Box::new(stream),
            at: path.display().to_string(),
        })
    }

    /// Connect to the node at `addr` (`host:port` of its QUIC port) as the remote operator
    /// whose identity (`operator.key`, `operator.crt`, `ca.crt`) is in `identity`.
    pub async fn connect_remote(addr: &str, identity: &Path) -> Result<Client, AdminError> {
        let id = crate::net::tls::OperatorIdentity::load(identity).map_err(|e| {
            AdminError::new(
                ErrorKind::Invalid,
                format!(
                    "cannot use the operator identity in '{}': {e}; 'aether operator cert create NAME --role ROLE -o DIR' on a node makes one",
                    identity.display()
                ),
            )
        })?;
        let cfg = crate::config::NetConfig::default();
        let stream = crate::net::admin_connect(addr, &id, &cfg, REMOTE_CONNECT_TIMEOUT)
            .await
            .map_err(|e| match e {
                crate::net::NetError::Refused { .. } => AdminError::new(
                    ErrorKind::Forbidden,
                    format!(
                        "{e}; the identity in '{}' was not accepted",
                        identity.display()
                    ),
                ),
                e => AdminError::new(
                    ErrorKind::Unavailable,
                    format!("cannot reach the node at '{addr}' as a remote operator: {e}"),
                ),
            })?;
        Ok(Client {
            stream: Box::new(stream),
            at: addr.to_string(),
        })
    }

    /// Connect to `target`.
    pub async fn connect_to(target: &Target) -> Result<Client, AdminError> {
        match target {
            Target::Socket(path) => Client::connect(path).await,
            Target::Remote { addr, identity } => Client::connect_remote(addr, identity).await,
        }
    }

    /// A client over any transport (tests, other carriers); `at` names the node in messages.
    pub fn over(stream: impl Transport, at: impl Into<String>) -> Client {
        Client {
            stream: Box::new(stream),
            at: at.into(),
        }
    }

    /// Send one request and wait for its answer. An error answer becomes `Err`.
    pub async fn call(&mut self, req: &AdminRequest) -> Result<AdminResponse, AdminError> {
        write_frame(&mut self.stream, req)
            .await
            .map_err(|e| unreadable(&self.at, e))?;
        match read_frame::<_, AdminResponse>(&mut self.stream, MAX_ADMIN_FRAME)
            .await
            .map_err(|e| unreadable(&self.at, e))?
        {
            AdminResponse::Error(e) => Err(e),
            r => Ok(r),
        }
    }
}

impl Client {
    /// A write through Raft (forwarded to the leader) with a fresh request id. A refusal by the
    /// state machine becomes `Err` (kind `Failed`) with its message.
    pub async fn write(&mut self, cmd: Command) -> Result<Response, AdminError> {
        let req = AdminRequest::Write {
            id: RequestId::new_random(),
            cmd,
        };
        match self.call(&req).await? {
            AdminResponse::Written(Response::Refused(m)) => {
                Err(AdminError::new(ErrorKind::Failed, m))
            }
            AdminResponse::Written(r) => Ok(r),
            other => Err(AdminError::new(
                ErrorKind::Failed,
                format!(
                    "the node answered a write with {other:?}: are the client and the node the same aether version?"
                ),
            )),
        }
    }
}

impl Client {
    /// A backup of the replicated state ([`AdminRequest::SnapshotSave`]), consistent with
    /// every write acknowledged before the call, streamed into `out` as the node sends it.
    /// Returns the node's account of what it sent (size, checksum).
    pub async fn snapshot_save(
        &mut self,
        out: &mut impl std::io::Write,
    ) -> Result<BackupSummary, ClientError> {
        write_frame(&mut self.stream, &AdminRequest::SnapshotSave)
            .await
            .map_err(|e| lost(&self.at, &e))?;
        loop {
            match read_frame::<_, AdminResponse>(&mut self.stream, MAX_ADMIN_FRAME)
                .await
                .map_err(|e| unreadable(&self.at, e))?
            {
                AdminResponse::SnapshotChunk(b) => out.write_all(&b).map_err(|e| {
                    AdminError::new(ErrorKind::Failed, format!("cannot write the snapshot: {e}"))
                })?,
                AdminResponse::SnapshotDone(s) => return Ok(*s),
                AdminResponse::Error(e) => return Err(e.into()),
                other => {
                    return Err(ClientError::Unexpected {
                        request: "SnapshotSave",
                        response: response_kind(&other),
                    });
                }
            }
        }
    }
}

/// The typed requests: one method per request kind, each returning what that request answers.
impl Client {
    /// Cluster status: leader, term, indexes, members ([`AdminRequest::Status`]).
    pub async fn status(&mut self) -> Result<StatusView, ClientError> {
        ask!(self, "Status", AdminRequest::Status, AdminResponse::Status(s) => *s)
    }

    /// The members with their state and reachability ([`AdminRequest::Nodes`]).
    pub async fn nodes(&mut self) -> Result<Vec<MemberView>, ClientError> {
        ask!(self, "Nodes", AdminRequest::Nodes, AdminResponse::Nodes(n) => n)
    }

    /// The newest `limit` audit records ([`AdminRequest::Audit`]).
    pub async fn audit(&mut self, limit: u32) -> Result<Vec<AuditRecord>, ClientError> {
        ask!(self, "Audit", AdminRequest::Audit { limit }, AdminResponse::Audit(a) => a)
    }

    /// Create a join token living `ttl_ms` (none: never expires) for `uses` joins
    /// ([`AdminRequest::TokenCreate`]).
    pub async fn token_create(
        &mut self,
        ttl_ms: Option<u64>,
        uses: u32,
    ) -> Result<TokenView, ClientError> {
        ask!(
            self,
            "TokenCreate",
            AdminRequest::TokenCreate { ttl_ms, uses },
            AdminResponse::Token(t) => t
        )
    }

    /// The cluster metrics; one node's with `node`; with `series`, that series' history over
    /// the last `since_secs` ([`AdminRequest::Metrics`]).
    pub async fn metrics(
        &mut self,
        node: Option<String>,
        series: Option<String>,
        since_secs: Option<u64>,
    ) -> Result<MetricsView, ClientError> {
        ask!(
            self,
            "Metrics",
            AdminRequest::Metrics {
                node,
                series,
                since_secs
            },
            AdminResponse::Metrics(m) => *m
        )
    }

    /// Requests over the cluster: every slice with a service, or the `target` blueprint's or
    /// slice's ([`AdminRequest::Traffic`]).
    pub async fn traffic(&mut self, target: Option<String>) -> Result<TrafficView, ClientError> {
        ask!(
            self,
            "Traffic",
            AdminRequest::Traffic { target },
            AdminResponse::Traffic(t) => *t
        )
    }

    /// Validate a blueprint file's `text` and show its plan; unless `dry_run`, store it
    /// ([`AdminRequest::BlueprintApply`]).
    pub async fn blueprint_apply(
        &mut self,
        file: String,
        text: String,
        dry_run: bool,
    ) -> Result<PlanView, ClientError> {
        ask!(
            self,
            "BlueprintApply",
            AdminRequest::BlueprintApply {
                file,
                text,
                dry_run
            },
            AdminResponse::Plan(p) => p
        )
    }

    /// The stored blueprints, or the one called `name` ([`AdminRequest::Blueprints`]).
    pub async fn blueprints(
        &mut self,
        name: Option<String>,
    ) -> Result<Vec<BlueprintView>, ClientError> {
        ask!(
            self,
            "Blueprints",
            AdminRequest::Blueprints { name },
            AdminResponse::Blueprints(b) => b
        )
    }

    /// Instance logs of `target`, from `cursors` or the last `tail` lines
    /// ([`AdminRequest::Logs`]).
    pub async fn logs(
        &mut self,
        target: String,
        cursors: Vec<(String, u64)>,
        tail: u32,
    ) -> Result<Vec<LogChunk>, ClientError> {
        ask!(
            self,
            "Logs",
            AdminRequest::Logs {
                target,
                cursors,
                tail
            },
            AdminResponse::Logs(l) => l
        )
    }

    /// Controller decisions, newest first: open and recent ones, or all when `all`
    /// ([`AdminRequest::Decisions`]).
    pub async fn decisions(&mut self, all: bool, limit: u32) -> Result<Vec<Decision>, ClientError> {
        ask!(
            self,
            "Decisions",
            AdminRequest::Decisions { all, limit },
            AdminResponse::Decisions(d) => d
        )
    }

    /// The leader's latest advice and counters; `None` when no leader reports any
    /// ([`AdminRequest::Advice`]).
    pub async fn advice(&mut self) -> Result<Option<crate::domain::AdviceView>, ClientError> {
        ask!(self, "Advice", AdminRequest::Advice, AdminResponse::Advice(a) => *a)
    }

    /// Turn advice item `id` into a proposed decision ([`AdminRequest::AdviceTake`]).
    pub async fn advice_take(&mut self, id: String) -> Result<Decision, ClientError> {
        ask!(self, "AdviceTake", AdminRequest::AdviceTake { id }, AdminResponse::Decision(d) => *d)
    }

    /// One decision in full ([`AdminRequest::Decision`]).
    pub async fn decision(&mut self, id: u64) -> Result<Decision, ClientError> {
        ask!(self, "Decision", AdminRequest::Decision { id }, AdminResponse::Decision(d) => *d)
    }

    /// Rollouts, newest first: open ones and those that ended in the last hour
    /// ([`AdminRequest::Rollouts`]).
    pub async fn rollouts(&mut self) -> Result<Vec<RolloutView>, ClientError> {
        ask!(self, "Rollouts", AdminRequest::Rollouts, AdminResponse::Rollouts(r) => r)
    }

    /// A slice's open rollout, else its latest; without `slice`, the only slice of `blueprint`
    /// with rollouts ([`AdminRequest::Rollout`]).
    pub async fn rollout(
        &mut self,
        blueprint: String,
        slice: Option<String>,
    ) -> Result<RolloutView, ClientError> {
        ask!(
            self,
            "Rollout",
            AdminRequest::Rollout { blueprint, slice },
            AdminResponse::Rollout(r) => *r
        )
    }

    /// Every kept rollout of a slice, a blueprint or all, newest first
    /// ([`AdminRequest::RolloutHistory`]).
    pub async fn rollout_history(
        &mut self,
        blueprint: Option<String>,
        slice: Option<String>,
        limit: u32,
    ) -> Result<Vec<RolloutView>, ClientError> {
        ask!(
            self,
            "RolloutHistory",
            AdminRequest::RolloutHistory {
                blueprint,
                slice,
                limit
            },
            AdminResponse::Rollouts(r) => r
        )
    }

    /// Pause, resume, promote, abort or undo `blueprint/slice`'s rollout through Raft
    /// ([`AdminRequest::RolloutOp`]); a refusal keeps the state machine's message.
    pub async fn rollout_op(
        &mut self,
        blueprint: String,
        slice: String,
        op: RolloutOp,
    ) -> Result<RolloutActView, ClientError> {
        ask!(
            self,
            "RolloutOp",
            AdminRequest::RolloutOp {
                blueprint,
                slice,
                op
            },
            AdminResponse::RolloutActed(r) => *r
        )
    }

    /// The node's Raft status and a clock ping to every other member ([`AdminRequest::Doctor`]).
    pub async fn doctor(&mut self) -> Result<DoctorView, ClientError> {
        ask!(self, "Doctor", AdminRequest::Doctor, AdminResponse::Doctor(d) => *d)
    }

    /// Run a fire drill, or plan it with `dry_run` ([`AdminRequest::Drill`]), handing each
    /// progress line to `progress` as the node sends it; answered when the drill is over.
    pub async fn drill(
        &mut self,
        scenario: crate::deploy::drill::Scenario,
        hold_ms: Option<u64>,
        dry_run: bool,
        mut progress: impl FnMut(&str),
    ) -> Result<DrillReport, ClientError> {
        let req = AdminRequest::Drill {
            scenario,
            hold_ms,
            dry_run,
        };
        write_frame(&mut self.stream, &req)
            .await
            .map_err(|e| unreadable(&self.at, e))?;
        loop {
            match read_frame::<_, AdminResponse>(&mut self.stream, MAX_ADMIN_FRAME)
                .await
                .map_err(|e| unreadable(&self.at, e))?
            {
                AdminResponse::DrillProgress(line) => progress(&line),
                AdminResponse::Drill(r) => return Ok(*r),
                AdminResponse::Error(e) => return Err(e.into()),
                other => {
                    return Err(ClientError::Unexpected {
                        request: "Drill",
                        response: response_kind(&other),
                    });
                }
            }
        }
    }

    /// Member `name`'s part of a diagnostics bundle ([`AdminRequest::DiagNode`]).
    pub async fn diag_node(
        &mut self,
        name: String,
        since_secs: u64,
    ) -> Result<super::protocol::NodeDiag, ClientError> {
        ask!(
            self,
            "DiagNode",
            AdminRequest::DiagNode { name, since_secs },
            AdminResponse::DiagNode(d) => *d
        )
    }

    /// The answering node's language model ([`AdminRequest::Model`]).
    pub async fn model(&mut self) -> Result<ModelStatus, ClientError> {
        ask!(self, "Model", AdminRequest::Model, AdminResponse::Model(m) => *m)
    }

    /// Review a fixed scenario with the node's model for `seconds` ([`AdminRequest::ModelBench`]).
    pub async fn model_bench(&mut self, seconds: u32) -> Result<ModelBenchView, ClientError> {
        ask!(
            self,
            "ModelBench",
            AdminRequest::ModelBench { seconds },
            AdminResponse::ModelBench(b) => *b
        )
    }

    /// Review a situation file's text with the node's model ([`AdminRequest::ModelReview`]).
    pub async fn model_review(
        &mut self,
        situation: String,
    ) -> Result<crate::controller::model::engine::ReviewView, ClientError> {
        ask!(
            self,
            "ModelReview",
            AdminRequest::ModelReview { situation },
            AdminResponse::ModelReview(r) => *r
        )
    }

    /// A read: linearizable (served by the leader), or of this node's own replica when
    /// `local` ([`AdminRequest::Read`], [`AdminRequest::ReadLocal`]).
    pub async fn read(&mut self, q: ReadQuery, local: bool) -> Result<ReadResult, ClientError> {
        if local {
            self.read_local(q).await
        } else {
            ask!(self, "Read", AdminRequest::Read(q), AdminResponse::Read(r) => r)
        }
    }

    /// A read of the answering node's own replica: no leader involved, may be stale
    /// ([`AdminRequest::ReadLocal`]).
    pub async fn read_local(&mut self, q: ReadQuery) -> Result<ReadResult, ClientError> {
        ask!(self, "ReadLocal", AdminRequest::ReadLocal(q), AdminResponse::Read(r) => r)
    }

    /// `key`'s value, none when it is not set (see [`Client::read`] for `local`).
    pub async fn kv_get(
        &mut self,
        key: String,
        local: bool,
    ) -> Result<Option<Vec<u8>>, ClientError> {
        match self.read(ReadQuery::KvGet { key }, local).await? {
            ReadResult::Value(v) => Ok(v),
            other => Err(ClientError::Unexpected {
                request: "KvGet",
                response: read_kind(&other),
            }),
        }
    }

    /// At most `limit` keys starting with `prefix`, with their values (see [`Client::read`]
    /// for `local`).
    pub async fn kv_list(
        &mut self,
        prefix: String,
        limit: u32,
        local: bool,
    ) -> Result<Vec<(String, Vec<u8>)>, ClientError> {
        match self
            .read(ReadQuery::KvList { prefix, limit }, local)
            .await?
        {
            ReadResult::List(items) => Ok(items),
            other => Err(ClientError::Unexpected {
                request: "KvList",
                response: read_kind(&other),
            }),
        }
    }

    /// Every join token (linearizable: a revoke just acknowledged shows).
    pub async fn tokens(&mut self) -> Result<Vec<TokenInfo>, ClientError> {
        match self.read(ReadQuery::Tokens, false).await? {
            ReadResult::Tokens(t) => Ok(t),
            other => Err(ClientError::Unexpected {
                request: "Tokens",
                response: read_kind(&other),
            }),
        }
    }

    /// Take the member `name` out of the cluster; what the leader did, in words.
    pub async fn remove(&mut self, name: String) -> Result<String, ClientError> {
        ask!(self, "Remove", AdminRequest::Remove { name }, AdminResponse::Done(m) => m)
    }

    /// Delete `key` through Raft: its previous value, none when it was not set.
    pub async fn kv_delete(&mut self, key: String) -> Result<Option<Vec<u8>>, ClientError> {
        match self.write(Command::Delete { key }).await? {
            Response::Previous(p) => Ok(p),
            _ => Err(ClientError::Unexpected {
                request: "Delete",
                response: "Written",
            }),
        }
    }

    /// Set a slice's desired instances through Raft: the blueprint's new version.
    pub async fn scale(
        &mut self,
        blueprint: String,
        slice: String,
        instances: u32,
    ) -> Result<u64, ClientError> {
        match self
            .write(Command::ScaleSlice {
                blueprint,
                slice,
                instances,
            })
            .await?
        {
            Response::Version(v) => Ok(v),
            _ => Err(ClientError::Unexpected {
                request: "ScaleSlice",
                response: "Written",
            }),
        }
    }
}

impl Client {
    /// Make an operator identity for `name` with `role`, living `ttl_ms`: a new key made here
    /// (it never leaves this machine), its CSR signed by the node with the cluster CA and
    /// recorded ([`AdminRequest::OperatorCertCreate`]). Returns the key's PEM and the node's
    /// answer (certificate, CA, record).
    pub async fn operator_cert_create(
        &mut self,
        name: String,
        role: crate::domain::Role,
        ttl_ms: u64,
    ) -> Result<(String, OperatorCertView), ClientError> {
        let (key_pem, csr_pem) = crate::net::tls::operator_csr(&name)
            .map_err(|e| AdminError::new(ErrorKind::Failed, format!("cannot make a key: {e}")))?;
        let view = ask!(
            self,
            "OperatorCertCreate",
            AdminRequest::OperatorCertCreate {
                name,
                role,
                ttl_ms,
                csr_pem
            },
            AdminResponse::OperatorCert(v) => *v
        )?;
        Ok((key_pem, view))
    }

    /// Every operator certificate record ([`AdminRequest::OperatorCerts`]).
    pub async fn operator_certs(&mut self) -> Result<Vec<OperatorRecord>, ClientError> {
        ask!(self, "OperatorCerts", AdminRequest::OperatorCerts, AdminResponse::Operators(o) => o)
    }
}

/// The reading half of a live feed.
pub struct FeedReader {
    rd: ReadHalf<Box<dyn Transport>>,
    at: String,
}

/// The writing half of a live feed: moves its watch.
pub struct FeedWriter {
    wr: WriteHalf<Box<dyn Transport>>,
    at: String,
}

/// A frame from the node that could not be read: a node of another protocol version is named
/// as such (the CLI and the daemon are different aether versions), the rest is a lost connection.
fn unreadable(at: &str, e: FrameError) -> AdminError {
    match e {
        FrameError::Version { got, want } => AdminError::new(
            ErrorKind::Failed,
            format!(
                "the node at '{at}' speaks protocol {got}, this aether speaks {want}: run the aether binary of the node's version (compare 'aether --version' with the node's), or upgrade the node"
            ),
        ),
        FrameError::Io(e) if e.kind() == std::io::ErrorKind::PermissionDenied => refused(at, &e),
        e => lost(at, &e),
    }
}

/// The node closed the connection on this client's certificate (see `net::AdminStream`).
fn refused(at: &str, e: &dyn std::fmt::Display) -> AdminError {
    AdminError::new(
        ErrorKind::Forbidden,
        format!("the node at '{at}' refused this connection: {e}"),
    )
}

fn lost(at: &str, e: &dyn std::fmt::Display) -> AdminError {
    AdminError::new(
        ErrorKind::Unavailable,
        format!("lost the connection to the node at '{at}': {e}"),
    )
}

impl Client {
    /// Turn this connection into a live feed (see [`AdminRequest::Subscribe`]).
    pub async fn subscribe(self, watch: Watch) -> Result<(FeedReader, FeedWriter), AdminError> {
        let (rd, mut wr) = tokio::io::split(self.stream);
        write_frame(&mut wr, &AdminRequest::Subscribe(watch))
            .await
            .map_err(|e| lost(&self.at, &e))?;
        Ok((
            FeedReader {
                rd,
                at: self.at.clone(),
            },
            FeedWriter { wr, at: self.at },
        ))
    }
}

impl FeedReader {
    /// The next frame. Not cancel-safe: keep it on its own task.
    pub async fn next(&mut self) -> Result<LiveUpdate, AdminError> {
        match read_frame::<_, AdminResponse>(&mut self.rd, MAX_ADMIN_FRAME)
            .await
            .map_err(|e| unreadable(&self.at, e))?
        {
            AdminResponse::Live(u) => Ok(*u),
            AdminResponse::Error(e) => Err(e),
            other => Err(AdminError::new(
                ErrorKind::Failed,
                format!("the node answered a live feed with {other:?}"),
            )),
        }
    }
}

impl FeedWriter {
    /// Move the feed's watch.
    pub async fn watch(&mut self, w: Watch) -> Result<(), AdminError> {
        write_frame(&mut self.wr, &AdminRequest::Subscribe(w))
            .await
            .map_err(|e| lost(&self.at, &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node that answers each request on one connection with the next of `answers`.
    async fn node(answers: Vec<AdminResponse>) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aether.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            for a in answers {
                let _: AdminRequest = read_frame(&mut s, MAX_ADMIN_FRAME).await.unwrap();
                write_frame(&mut s, &a).await.unwrap();
            }
        });
        (dir, path)
    }

    #[tokio::test]
    async fn answers_are_typed_and_a_wrong_kind_is_its_own_error() {
        let refused = AdminError::new(ErrorKind::NoQuorum, "no leader within 5s");
        let (_dir, path) = node(vec![
            AdminResponse::Nodes(Vec::new()),
            AdminResponse::Nodes(Vec::new()),
            AdminResponse::Error(refused.clone()),
            AdminResponse::Read(ReadResult::Value(None)),
            AdminResponse::Written(Response::Previous(Some(b"v".to_vec()))),
        ])
        .await;
        let mut c = Client::connect(&path).await.unwrap();
        assert_eq!(c.nodes().await, Ok(Vec::new()));
        let e = c.status().await.unwrap_err();
        assert_eq!(
            e,
            ClientError::Unexpected {
                request: "Status",
                response: "Nodes"
            }
        );
        assert_eq!(e.exit_code(), 1);
        let e = c.audit(5).await.unwrap_err();
        assert_eq!(e, ClientError::Admin(refused));
        assert_eq!(e.exit_code(), 3);
        assert_eq!(e.to_string(), "no leader within 5s");
        assert_eq!(c.kv_get("k".into(), true).await, Ok(None));
        assert_eq!(c.kv_delete("k".into()).await, Ok(Some(b"v".to_vec())));
    }

    #[tokio::test]
    async fn a_node_of_another_protocol_is_named_as_such() {
        use crate::net::frame::{PROTOCOL_VERSION, encode_versioned};
        use tokio::io::AsyncWriteExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aether.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let old = PROTOCOL_VERSION - 1;
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let _ = read_frame::<_, AdminRequest>(&mut s, MAX_ADMIN_FRAME).await;
            let reply = AdminResponse::Nodes(Vec::new());
            s.write_all(&encode_versioned(old, &reply).unwrap())
                .await
                .unwrap();
        });
        let mut c = Client::connect(&path).await.unwrap();
        let e = c.nodes().await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "the node at '{}' speaks protocol {old}, this aether speaks {PROTOCOL_VERSION}: run the aether binary of the node's version (compare 'aether --version' with the node's), or upgrade the node",
                path.display()
            )
        );
        assert_eq!(e.exit_code(), 1);
    }

    #[tokio::test]
    async fn an_absent_node_is_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let Err(e) = Client::connect(&dir.path().join("aether.sock")).await else {
            panic!("connected to nothing");
        };
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert_eq!(ClientError::from(e).exit_code(), 3);
    }
}
