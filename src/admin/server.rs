//! Admin server: the node's Unix socket `<data-dir>/aether.sock` (mode 0600), and remote
//! operators' streams on the QUIC endpoint ([`Remote`]). One connection carries any number of
//! request/response frames; a remote one has each request checked against the operator's
//! record and role first ([`super::roles`]).

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::protocol::{
    AdminError, AdminRequest, AdminResponse, ErrorKind, MAX_ADMIN_FRAME, PlanView, RolloutActView,
    SNAPSHOT_CHUNK, TokenView,
};
use super::roles::{Operator, authorize};
use crate::deploy::logs::LogChunk;
use crate::domain::{NodeId, now_millis};
use crate::metrics::pipeline::Pipeline;
use crate::net::frame::{FrameError, read_frame, write_frame};
use crate::net::tls::JoinToken;
use crate::net::{AdminService, BoxFut, OperatorPeer, PeerStream};
use crate::raft::Cluster;
use crate::raft::types::{Command, Request, RequestId, Response};
use crate::view::Sources;
use crate::view::rollouts::Reader;

/// Largest kv key, in bytes.
pub const MAX_KEY: usize = 1024;
/// Largest kv value, in bytes.
pub const MAX_VALUE: usize = 1 << 20;

/// Bind the socket, replacing a stale one, and restrict it to the owner.
pub fn bind(path: &Path) -> Result<UnixListener, String> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!(
                "another node is serving the admin socket '{}': stop it, or give this node its own --data-dir",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove stale socket '{}': {e}", path.display()))?;
    }
    let l = UnixListener::bind(path)
        .map_err(|e| format!("cannot bind admin socket '{}': {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot set mode 0600 on '{}': {e}", path.display()))?;
    Ok(l)
}

/// Serve the admin socket until `shutdown`; each connection runs on `tracker`.
pub fn serve(
    listener: UnixListener,
    path: PathBuf,
    src: Sources,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = shutdown.cancelled() => break,
                s = listener.accept() => match s {
                    Ok((s, _)) => s,
                    Err(e) => { tracing::warn!("admin socket accept failed: {e}"); continue; }
                },
            };
            let (src, shutdown) = (src.clone(), shutdown.clone());
            let uid = stream.peer_cred().map(|c| c.uid()).unwrap_or(u32::MAX);
            let caller = Caller::Local { uid };
            tracker.spawn(async move { connection(stream, src, shutdown, caller).await });
        }
        drop(listener);
        let _ = std::fs::remove_file(&path);
        tracing::info!("admin socket closed");
    })
}

/// Who is on the other end of an admin connection.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The local socket (mode 0600): root on the node, or the user the node runs as. May do
    /// anything.
    Local { uid: u32 },
    /// A remote operator: each request is checked against its record and role.
    Remote(Operator),
}

impl Caller {
    /// The actor of this caller's writes in the audit trail on node `node`: `root@n1`,
    /// `uid:1000@n1`, `alice (operator)`.
    pub fn actor(&self, node: &str) -> String {
        match self {
            Caller::Local { uid: 0 } => format!("root@{node}"),
            Caller::Local { uid } => format!("uid:{uid}@{node}"),
            Caller::Remote(op) => op.actor(),
        }
    }

    /// May this caller send `req` now? The local socket may; a remote operator's record is read
    /// from this node's replica at every request (a revocation holds once applied here).
    fn authorize(&self, cluster: &Cluster, req: &AdminRequest) -> Result<(), AdminError> {
        let Caller::Remote(op) = self else {
            return Ok(());
        };
        let record = cluster.store.operator(&op.name).map_err(|e| {
            AdminError::new(
                ErrorKind::Unavailable,
                format!("cannot read the operator records: {e}"),
            )
        })?;
        let r = authorize(op, record.as_ref(), req, now_millis());
        if let Err(e) = &r {
            tracing::info!("refused a remote admin request of '{}': {e}", op.name);
            if let Some(ip) = op.remote {
                cluster.ep.note_refused(ip);
            }
        }
        r
    }
}

/// Remote admin: the streams the QUIC endpoint accepts from operator certificates, served
/// like connections of the local socket, with every request checked first.
pub struct Remote {
    pub src: Sources,
    pub shutdown: CancellationToken,
}

impl AdminService for Remote {
    fn serve(self: Arc<Self>, who: OperatorPeer, stream: PeerStream) -> BoxFut<()> {
        let caller = Caller::Remote(Operator {
            name: who.name,
            role: who.role,
            cert_sha256: who.cert_sha256,
            remote: Some(who.remote.ip()),
        });
        Box::pin(async move {
            connection(stream, self.src.clone(), self.shutdown.clone(), caller).await
        })
    }
}

async fn connection<S>(mut stream: S, src: Sources, shutdown: CancellationToken, caller: Caller)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let actor = caller.actor(&src.cluster.name);
    loop {
        let req = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = read_frame::<_, AdminRequest>(&mut stream, MAX_ADMIN_FRAME) => r,
        };
        // Refused before anything is done for it: no Raft entry, no work.
        let req = match req.map(|r| caller.authorize(&src.cluster, &r).map(|()| r)) {
            Ok(Err(e)) => {
                if write_frame(&mut stream, &AdminResponse::Error(e))
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
            Ok(Ok(r)) => Ok(r),
            Err(e) => Err(e),
        };
        let resp = match req {
            Ok(AdminRequest::Subscribe(w)) => {
                super::live::serve(stream, w, src, shutdown).await;
                return;
            }
            Ok(AdminRequest::Drill {
                scenario,
                hold_ms,
                dry_run,
            }) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let job = tokio::spawn(drill(
                    src.clone(),
                    scenario,
                    hold_ms,
                    dry_run,
                    actor.clone(),
                    Some(tx),
                ));
                // A lost client stops the lines, never the drill: it runs on and heals.
                while let Some(line) = rx.recv().await {
                    if write_frame(&mut stream, &AdminResponse::DrillProgress(line))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                job.await
                    .unwrap_or_else(|e| failed(format!("the drill stopped: {e}")))
            }
            Ok(AdminRequest::SnapshotSave) => {
                if snapshot_save(&mut stream, &src.cluster).await.is_err() {
                    return;
                }
                continue;
            }
            Ok(req) => handle(&src, req, &actor).await,
            Err(FrameError::Closed) => return,
            Err(e) => {
                // A client of another version reads this reply's version byte and says so
                // itself (see `admin::client`); older clients show this message.
                let message = match e {
                    FrameError::Version { got, want } => format!(
                        "this node speaks protocol {want}, the client speaks {got}: run the aether binary of the node's version, or upgrade the node"
                    ),
                    e => format!("bad admin frame: {e}"),
                };
                tracing::debug!("admin request refused: {message}");
                let resp = AdminResponse::Error(AdminError::new(ErrorKind::Invalid, message));
                let _ = write_frame(&mut stream, &resp).await;
                return;
            }
        };
        if write_frame(&mut stream, &resp).await.is_err() {
            return;
        }
    }
}

/// Hands what is written on to the connection's task in chunks of at most [`SNAPSHOT_CHUNK`]
/// bytes (blocking: for a `spawn_blocking` writer). Fails once the receiver is gone.
struct ChunkSender(tokio::sync::mpsc::Sender<Vec<u8>>);

impl std::io::Write for ChunkSender {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(SNAPSHOT_CHUNK);
        self.0.blocking_send(buf[..n].to_vec()).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the client went away during the snapshot",
            )
        })?;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A snapshot save gives up when its client takes no chunk for this long.
const SNAPSHOT_STALL: std::time::Duration = std::time::Duration::from_secs(30);

/// `aether snapshot save`: a read barrier through the leader, then the backup of this node's
/// replica streamed as chunks while it is read (never whole in memory), then its summary.
/// `Err`: the connection is lost.
async fn snapshot_save<S: tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    cluster: &std::sync::Arc<Cluster>,
) -> Result<(), FrameError> {
    if let Err(e) = cluster.read_barrier().await {
        return write_frame(stream, &AdminResponse::Error(e)).await;
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let c = cluster.clone();
    let job = tokio::task::spawn_blocking(move || {
        let mut w = std::io::BufWriter::with_capacity(SNAPSHOT_CHUNK, ChunkSender(tx));
        let sum = c.store.write_backup(&mut w, &c.name)?;
        std::io::Write::flush(&mut w)?;
        Ok::<_, std::io::Error>(sum)
    });
    while let Some(chunk) = rx.recv().await {
        // On a lost or stalled client `rx` is dropped here and the writer stops at its next
        // chunk, letting go of its read transaction.
        let resp = AdminResponse::SnapshotChunk(chunk);
        match tokio::time::timeout(SNAPSHOT_STALL, write_frame(stream, &resp)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(FrameError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "the client took no snapshot data for {} s; giving up",
                        SNAPSHOT_STALL.as_secs()
                    ),
                )));
            }
        }
    }
    let resp = match job.await {
        Ok(Ok(sum)) => AdminResponse::SnapshotDone(Box::new(sum)),
        Ok(Err(e)) => failed(format!("cannot read the store for the snapshot: {e}")),
        Err(e) => failed(format!("the snapshot writer stopped: {e}")),
    };
    write_frame(stream, &resp).await
}

/// `aether decisions` without `--all` shows open decisions and those of the last hour.
const RECENT_DECISIONS_MS: u64 = 3_600_000;

fn failed(m: impl Into<String>) -> AdminResponse {
    AdminResponse::Error(AdminError::new(ErrorKind::Failed, m))
}

fn invalid(m: impl Into<String>) -> AdminResponse {
    AdminResponse::Error(AdminError::new(ErrorKind::Invalid, m))
}

/// Check a client's write before it reaches the log.
fn check_write(cmd: &Command) -> Result<(), String> {
    let key_ok = |k: &str| -> Result<(), String> {
        if k.is_empty() || k.len() > MAX_KEY {
            return Err(format!(
                "kv key must be 1 to {MAX_KEY} bytes, found {} bytes",
                k.len()
            ));
        }
        Ok(())
    };
    let val_ok = |v: &[u8]| -> Result<(), String> {
        if v.len() > MAX_VALUE {
            return Err(format!(
                "kv value must be at most {MAX_VALUE} bytes, found {} bytes",
                v.len()
            ));
        }
        Ok(())
    };
    match cmd {
        Command::Put { key, value } => {
            key_ok(key)?;
            val_ok(value)
        }
        Command::Delete { key } => key_ok(key),
        Command::CompareAndSwap { key, expected, new } => {
            key_ok(key)?;
            val_ok(expected.as_deref().unwrap_or_default())?;
            val_ok(new.as_deref().unwrap_or_default())
        }
        Command::RemoveBlueprint { name } => crate::domain::validate_name("blueprint name", name),
        Command::ScaleSlice {
            blueprint, slice, ..
        }
        | Command::RolloutOp {
            blueprint, slice, ..
        } => crate::domain::validate_name("blueprint name", blueprint)
            .and_then(|_| crate::domain::validate_name("slice name", slice)),
        Command::VetoDecision {
            reason: Some(r), ..
        }
        | Command::PauseController { reason: Some(r) }
            if r.len() > 1024 =>
        {
            Err(format!(
                "a reason must be at most 1024 bytes, found {} bytes",
                r.len()
            ))
        }
        Command::RevokeJoinToken { .. }
        | Command::RevokeOperatorCert { .. }
        | Command::SetNodeState { .. }
        | Command::RemoveNode { .. }
        | Command::VetoDecision { .. }
        | Command::ApproveDecision { .. }
        | Command::SetControllerMode { .. }
        | Command::PauseController { .. }
        | Command::ResumeController => Ok(()),
        other => Err(format!(
            "'{}' is not accepted from clients",
            other.summary()
        )),
    }
}

/// Answer one admin request on behalf of `actor`.
pub async fn handle(src: &Sources, req: AdminRequest, actor: &str) -> AdminResponse {
    let (cluster, metrics) = (&*src.cluster, &*src.metrics);
    let out = |r: Result<AdminResponse, AdminError>| r.unwrap_or_else(AdminResponse::Error);
    match req {
        AdminRequest::Status => out(cluster.status().await.map(|mut s| {
            s.controller =
                crate::view::status::control_view(cluster, &src.controller.borrow(), metrics);
            s.workloads = crate::deploy::supervisor::user::protections();
            AdminResponse::Status(Box::new(s))
        })),
        AdminRequest::Decisions { all, limit } => {
            let limit = limit.clamp(1, 10_000) as usize;
            match cluster
                .store
                .decisions(limit, all, RECENT_DECISIONS_MS, now_millis())
            {
                Ok(d) => AdminResponse::Decisions(d),
                Err(e) => failed(format!("cannot read the decisions: {e}")),
            }
        }
        AdminRequest::Model => AdminResponse::Model(Box::new(src.model.status())),
        AdminRequest::ModelBench { seconds } => {
            let engine = src.model.clone();
            let seconds = seconds.clamp(1, 600);
            match tokio::task::spawn_blocking(move || engine.bench(seconds)).await {
                Ok(Ok(b)) => AdminResponse::ModelBench(Box::new(b)),
                Ok(Err(e)) => failed(e),
                Err(e) => failed(format!("the model bench stopped: {e}")),
            }
        }
        AdminRequest::ModelReview { situation } => {
            let parsed = match crate::controller::review::file::parse(&situation, now_millis()) {
                Ok(p) => p,
                Err(e) => {
                    return AdminResponse::Error(AdminError::new(
                        ErrorKind::Invalid,
                        format!("the situation: {e}"),
                    ));
                }
            };
            let engine = src.model.clone();
            match tokio::task::spawn_blocking(move || engine.review_file(parsed.situation)).await {
                Ok(Ok(v)) => AdminResponse::ModelReview(Box::new(v)),
                Ok(Err(e)) => failed(e),
                Err(e) => failed(format!("the review stopped: {e}")),
            }
        }
        AdminRequest::Decision { id } => match cluster.store.decision(id) {
            Ok(Some(d)) => AdminResponse::Decision(Box::new(d)),
            Ok(None) => failed(format!(
                "no decision d-{id}: 'aether decisions --all' lists them"
            )),
            Err(e) => failed(format!("cannot read the decisions: {e}")),
        },
        AdminRequest::Nodes => out(cluster
            .status()
            .await
            .map(|s| AdminResponse::Nodes(s.members))),
        AdminRequest::Write { id, cmd } => {
            if let Err(m) = check_write(&cmd) {
                return invalid(m);
            }
            let req = Request {
                id,
                actor: actor.into(),
                at: now_millis(),
                cmd,
            };
            out(cluster.write(req, true).await.map(AdminResponse::Written))
        }
        AdminRequest::Read(q) => out(cluster.read(q, true).await.map(AdminResponse::Read)),
        AdminRequest::ReadLocal(q) => out(cluster.read_local(&q).map(AdminResponse::Read)),
        AdminRequest::TokenCreate { ttl_ms, uses } => {
            if uses == 0 {
                return invalid("--uses must be at least 1");
            }
            let token = JoinToken::generate(cluster.ca_sha256());
            let expires_at = ttl_ms.map(|t| now_millis() + t);
            let cmd = Command::IssueJoinToken {
                id: token.id.clone(),
                secret_sha256: token.secret_sha256(),
                expires_at,
                uses,
            };
            let req = Request {
                id: RequestId::new_random(),
                actor: actor.into(),
                at: now_millis(),
                cmd,
            };
            out(cluster.write(req, true).await.and_then(|r| match r {
                Response::Ok => Ok(AdminResponse::Token(TokenView {
                    token: token.to_string(),
                    id: token.id,
                    expires_at,
                    uses,
                })),
                other => Err(AdminError::new(
                    ErrorKind::Failed,
                    format!("token not created: {other:?}"),
                )),
            }))
        }
        AdminRequest::Remove { name } => out(cluster
            .member_op(
                crate::raft::network::MemberOp::Remove {
                    name,
                    actor: actor.into(),
                },
                true,
            )
            .await
            .map(AdminResponse::Done)),
        AdminRequest::Metrics {
            node,
            series,
            since_secs,
        } => {
            let interval_ms = metrics.interval().as_millis() as u64;
            // The instance reports give the power per slice; without them it is left out.
            let instances = if node.is_none() {
                cluster.store.instances().unwrap_or_else(|e| {
                    tracing::warn!("metrics: cannot read the instances for energy per slice: {e}");
                    Vec::new()
                })
            } else {
                Vec::new()
            };
            match metrics.with_state(|st| {
                crate::view::metrics::metrics_view(
                    &st.view,
                    &cluster.name,
                    interval_ms,
                    node.as_deref(),
                    series.as_deref(),
                    since_secs.unwrap_or(crate::metrics::window::WINDOW_SECS),
                    std::time::Instant::now(),
                    &instances,
                    metrics.cpu_watts_per_core(),
                )
            }) {
                Ok(v) => AdminResponse::Metrics(Box::new(v)),
                Err(e) => invalid(e.to_string()),
            }
        }
        AdminRequest::Traffic { target } => {
            let stored = match cluster.store.blueprints() {
                Ok(b) => b,
                Err(e) => return failed(format!("cannot read the blueprints: {e}")),
            };
            let blueprints: Vec<crate::domain::Blueprint> =
                stored.into_iter().map(|b| b.blueprint).collect();
            let (traffic, age) = metrics.with_state(|st| {
                let age = st.view.age(std::time::Instant::now());
                (st.view.traffic(), age.map(|a| a.as_millis() as u64))
            });
            out(crate::view::traffic::traffic_view(
                &blueprints,
                &traffic,
                target.as_deref(),
                &cluster.name,
                age,
            )
            .map(|v| AdminResponse::Traffic(Box::new(v))))
        }
        AdminRequest::BlueprintApply {
            file,
            text,
            dry_run,
        } => out(apply_blueprint(cluster, metrics, &file, &text, dry_run, actor).await),
        AdminRequest::Blueprints { name } => out(crate::view::blueprints::blueprint_views(
            cluster,
            name.as_deref(),
            &crate::view::blueprints::unserved(metrics),
        )
        .map(AdminResponse::Blueprints)),
        AdminRequest::Logs {
            target,
            cursors,
            tail,
        } => out(logs(cluster, &target, &cursors, tail).await),
        AdminRequest::SnapshotSave => {
            invalid("a snapshot streams on its connection: send 'SnapshotSave' on the admin socket")
        }
        AdminRequest::Drill {
            scenario,
            hold_ms,
            dry_run,
        } => {
            let run = drill(src.clone(), scenario, hold_ms, dry_run, actor.into(), None);
            tokio::spawn(run)
                .await
                .unwrap_or_else(|e| failed(format!("the drill stopped: {e}")))
        }
        AdminRequest::Doctor => out(super::diag::doctor(cluster)
            .await
            .map(|d| AdminResponse::Doctor(Box::new(d)))),
        AdminRequest::Subscribe(_) => invalid(
            "a live feed needs its own connection: send 'Subscribe' first on a new connection",
        ),
        AdminRequest::Rollouts => out(Reader::new(cluster)
            .list(now_millis())
            .map(AdminResponse::Rollouts)),
        AdminRequest::Rollout { blueprint, slice } => {
            let read = || Reader::new(cluster).status(&blueprint, slice.as_deref());
            // Asked right after an apply through another node: this replica may be a few
            // entries behind; give it a moment before saying there is none.
            let mut applied = cluster.store.subscribe_applied();
            let until = tokio::time::Instant::now() + Duration::from_millis(500);
            while read().is_err() {
                match tokio::time::timeout_at(until, applied.changed()).await {
                    Ok(Ok(())) => {}
                    _ => break,
                }
            }
            out(read().map(|r| AdminResponse::Rollout(Box::new(r))))
        }
        AdminRequest::RolloutHistory {
            blueprint,
            slice,
            limit,
        } => out(Reader::new(cluster)
            .history(
                blueprint.as_deref(),
                slice.as_deref(),
                limit.clamp(1, 10_000) as usize,
            )
            .map(AdminResponse::Rollouts)),
        AdminRequest::RolloutOp {
            blueprint,
            slice,
            op,
        } => out(rollout_op(cluster, blueprint, slice, op, actor).await),
        AdminRequest::Advice => AdminResponse::Advice(Box::new(metrics.leader_advice())),
        AdminRequest::AdviceTake { id } => advice_take(src, &id, actor).await,
        AdminRequest::DiagNode { name, since_secs } => {
            out(diag_node(src, &name, Duration::from_secs(since_secs)).await)
        }
        AdminRequest::OperatorCertCreate {
            name,
            role,
            ttl_ms,
            csr_pem,
        } => out(operator_cert_create(src, &name, role, ttl_ms, &csr_pem, actor).await),
        AdminRequest::OperatorCerts => match cluster.store.operators() {
            Ok(o) => AdminResponse::Operators(o),
            Err(e) => failed(format!("cannot read the operator records: {e}")),
        },
        AdminRequest::Audit { limit } => out(cluster
            .store
            .audit(limit as usize)
            .map(AdminResponse::Audit)
            .map_err(|e| AdminError::new(ErrorKind::Failed, e.to_string()))),
    }
}

/// `aether operator cert create`: check the name and lifetime, sign the CSR's key with the
/// cluster CA and record the certificate through Raft (replacing any earlier one of the name).
async fn operator_cert_create(
    src: &Sources,
    name: &str,
    role: crate::domain::Role,
    ttl_ms: u64,
    csr_pem: &str,
    actor: &str,
) -> Result<AdminResponse, AdminError> {
    let invalid = |m: String| AdminError::new(ErrorKind::Invalid, m);
    let cluster = &src.cluster;
    crate::domain::validate_name("operator name", name).map_err(invalid)?;
    let max = src.config.admin.operator_cert_max_ttl.0;
    if ttl_ms == 0 || u128::from(ttl_ms) > max.as_millis() {
        let show = |ms: u128| {
            if ms > 0 && ms % 86_400_000 == 0 {
                format!("{}d", ms / 86_400_000)
            } else {
                crate::config::Dur(Duration::from_millis(ms as u64)).to_string()
            }
        };
        return Err(invalid(format!(
            "--ttl must be between 1s and {} ([admin] operator_cert_max_ttl), found {}: ask for less, or raise the maximum in the node's config",
            show(max.as_millis()),
            show(u128::from(ttl_ms))
        )));
    }
    let meta = cluster
        .store
        .cluster()
        .map_err(|e| AdminError::new(ErrorKind::Failed, e.to_string()))?
        .ok_or_else(|| {
            AdminError::new(
                ErrorKind::Unavailable,
                "the cluster is not initialised yet: retry in a moment",
            )
        })?;
    let ca = crate::net::tls::CaPem {
        cert_pem: meta.init.ca_cert_pem.clone(),
        key_pem: meta.init.ca_key_pem.clone(),
    };
    let now = now_millis();
    let expires_at = now + ttl_ms;
    let cert = crate::net::tls::sign_operator_csr(
        &ca,
        csr_pem,
        name,
        role,
        (now / 1000) as i64,
        (expires_at / 1000) as i64,
    )
    .map_err(|e| invalid(e.to_string()))?;
    let record = crate::domain::OperatorRecord {
        name: name.into(),
        role,
        cert_sha256: cert.sha256.clone(),
        serial: cert.serial.clone(),
        created_at: now,
        expires_at,
        revoked: false,
    };
    let req = Request {
        id: RequestId::new_random(),
        actor: actor.into(),
        at: now,
        cmd: Command::IssueOperatorCert(record.clone()),
    };
    match cluster.write(req, true).await? {
        Response::Ok => {}
        Response::Refused(m) => return Err(AdminError::new(ErrorKind::Failed, m)),
        other => {
            return Err(AdminError::new(
                ErrorKind::Failed,
                format!("operator certificate not recorded: {other:?}"),
            ));
        }
    }
    Ok(AdminResponse::OperatorCert(Box::new(
        super::protocol::OperatorCertView {
            record,
            cert_pem: cert.cert_pem,
            ca_pem: meta.init.ca_cert_pem,
        },
    )))
}

/// `aether advice take ID`: the item from the leader's latest advice, proposed through the
/// controller of this node (safety bounds, recorded as proposed through Raft).
async fn advice_take(src: &Sources, id: &str, actor: &str) -> AdminResponse {
    use crate::controller::advisor::TakeError;
    use crate::controller::flow::ProposeError;
    let id = id.trim();
    let wanted = if id.starts_with("a-") {
        id.to_string()
    } else {
        format!("a-{id}")
    };
    let Some(advice) = src.metrics.leader_advice() else {
        return failed(
            "no advice: the leader's strategic layer is off ([controller.advisor] enabled = false) or has not answered yet",
        );
    };
    let Some(item) = advice.items.iter().find(|i| i.id == wanted) else {
        let ids: Vec<&str> = advice.items.iter().map(|i| i.id.as_str()).collect();
        return failed(format!(
            "no advice item '{wanted}' in the latest advice (it has {}): 'aether advice' lists them",
            if ids.is_empty() {
                "none".to_string()
            } else {
                ids.join(", ")
            }
        ));
    };
    match src
        .proposer
        .propose_advice(item, &advice.model, actor)
        .await
    {
        Ok(d) => AdminResponse::Decision(Box::new(d)),
        Err(ProposeError::Take(TakeError::NotAnAction(m))) => invalid(m),
        Err(ProposeError::Write(e)) => AdminResponse::Error(e),
        Err(e) => failed(e.to_string()),
    }
}

/// Log chunks of the instances matching `target`, read locally or from the node that holds them.
async fn logs(
    cluster: &Cluster,
    target: &str,
    cursors: &[(String, u64)],
    tail: u32,
) -> Result<AdminResponse, AdminError> {
    let failed = |e: std::io::Error| AdminError::new(ErrorKind::Failed, e.to_string());
    let parts: Vec<&str> = target.split('/').collect();
    if !(parts.len() == 2 || parts.len() == 3) || parts.iter().any(|p| p.is_empty()) {
        return Err(AdminError::new(
            ErrorKind::Invalid,
            format!("expected BLUEPRINT/SLICE or BLUEPRINT/SLICE/INDEX, found '{target}'"),
        ));
    }
    let stored = cluster.store.blueprints().map_err(failed)?;
    let Some(bp) = stored.iter().find(|b| b.blueprint.name == parts[0]) else {
        return Err(AdminError::new(
            ErrorKind::Failed,
            format!(
                "no blueprint named '{}': 'aether blueprint list' shows the stored ones",
                parts[0]
            ),
        ));
    };
    if !bp.blueprint.slices.iter().any(|s| s.name == parts[1]) {
        let names: Vec<&str> = bp
            .blueprint
            .slices
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        return Err(AdminError::new(
            ErrorKind::Failed,
            format!(
                "blueprint '{}' has no slice '{}'; its slices: {}",
                parts[0],
                parts[1],
                names.join(", ")
            ),
        ));
    }
    let matches = |k: &str| {
        if parts.len() == 3 {
            k == target
        } else {
            k.strip_prefix(target).is_some_and(|r| r.starts_with('/'))
        }
    };
    let members = cluster.store.nodes().map_err(failed)?;
    let mut copies: BTreeSet<(String, NodeId)> = BTreeSet::new();
    for s in cluster.store.instances().map_err(failed)? {
        if matches(&s.instance) {
            copies.insert((s.instance, s.node));
        }
    }
    for (k, a) in cluster.store.assignments().map_err(failed)? {
        if matches(&k) {
            copies.extend(a.node.into_iter().chain(a.handoff).map(|n| (k.clone(), n)));
        }
    }
    if copies.is_empty() {
        return Err(AdminError::new(
            ErrorKind::Failed,
            format!(
                "'{target}' has no instances on any node: 'aether blueprint show {}' shows why",
                parts[0]
            ),
        ));
    }
    let mut chunks = Vec::new();
    for (instance, node) in copies {
        let Some(m) = members.iter().find(|m| m.id == node) else {
            continue;
        };
        let key = format!("{instance}@{}", m.name);
        let offset = cursors.iter().find(|(k, _)| *k == key).map(|(_, o)| *o);
        let read = if node == cluster.id {
            crate::deploy::logs::read_local(cluster.data_dir(), &instance, offset, tail).await
        } else {
            let req = crate::deploy::logs::LogRequest {
                instance: instance.clone(),
                offset,
                tail,
            };
            let route = crate::deploy::logs::ROUTE;
            match cluster
                .ep
                .call::<_, crate::deploy::logs::LogReply>(
                    &m.addr,
                    route,
                    &req,
                    Some(Duration::from_secs(5)),
                )
                .await
            {
                Ok(r) => r,
                Err(e) => Err(format!("cannot reach {}: {e}", m.name)),
            }
        };
        match read {
            Ok((data, next)) => chunks.push(LogChunk {
                instance,
                node: m.name.clone(),
                data,
                next,
            }),
            Err(why) => chunks.push(LogChunk {
                instance,
                node: m.name.clone(),
                data: format!("[aether] log unavailable: {why}\n"),
                next: offset.unwrap_or(0),
            }),
        }
    }
    Ok(AdminResponse::Logs(chunks))
}

/// How long an answer that shows what a write did waits for this node's replica to apply it
/// (a write forwarded to the leader is applied here a moment later).
const LOCAL_APPLY_WAIT: Duration = Duration::from_secs(2);

/// Wait until `seen` says this node's replica shows a write (at most [`LOCAL_APPLY_WAIT`]).
async fn until_applied_here(cluster: &Cluster, seen: impl Fn() -> bool) {
    let mut applied = cluster.store.subscribe_applied();
    let deadline = tokio::time::Instant::now() + LOCAL_APPLY_WAIT;
    while !seen() {
        match tokio::time::timeout_at(deadline, applied.changed()).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
}

/// `aether rollout pause|resume|promote|abort|undo`: check the names, write the act through
/// Raft on behalf of `actor`, and show the rollout it touched or started.
async fn rollout_op(
    cluster: &Cluster,
    blueprint: String,
    slice: String,
    op: crate::domain::RolloutOp,
    actor: &str,
) -> Result<AdminResponse, AdminError> {
    let invalid = |m: String| AdminError::new(ErrorKind::Invalid, m);
    crate::domain::validate_name("blueprint name", &blueprint).map_err(invalid)?;
    crate::domain::validate_name("slice name", &slice).map_err(invalid)?;
    let reader = Reader::new(cluster);
    crate::view::rollouts::check_stored(&blueprint, &slice, &reader.blueprints()?)?;
    let rev_of = |id: u64| -> Option<u64> {
        cluster
            .store
            .rollouts()
            .ok()?
            .into_iter()
            .find(|r| r.id == id)
            .map(|r| r.rev)
    };
    let before: Vec<(u64, u64)> = reader.rollouts()?.iter().map(|r| (r.id, r.rev)).collect();
    let req = Request {
        id: RequestId::new_random(),
        actor: actor.into(),
        at: now_millis(),
        cmd: Command::RolloutOp {
            blueprint: blueprint.clone(),
            slice: slice.clone(),
            op: op.clone(),
        },
    };
    let mut view = RolloutActView {
        target: format!("{blueprint}/{slice}"),
        op: op.to_string(),
        rollout: None,
        version: None,
    };
    match cluster.write(req, true).await? {
        Response::Rollout(id) => {
            let was = before.iter().find(|(i, _)| *i == id).map(|(_, rev)| *rev);
            until_applied_here(cluster, || {
                rev_of(id).is_some_and(|rev| was.is_none_or(|w| rev > w))
            })
            .await;
            let all = reader.rollouts()?;
            view.rollout = reader.views(all.iter().filter(|r| r.id == id))?.pop();
        }
        Response::Version(v) => view.version = Some(v),
        Response::Refused(m) => return Err(AdminError::new(ErrorKind::Failed, m)),
        other => {
            return Err(AdminError::new(
                ErrorKind::Failed,
                format!(
                    "the rollout act was answered with {other:?}: are the CLI and the node the same aether version?"
                ),
            ));
        }
    }
    Ok(AdminResponse::RolloutActed(Box::new(view)))
}

async fn apply_blueprint(
    cluster: &Cluster,
    metrics: &Pipeline,
    file: &str,
    text: &str,
    dry_run: bool,
    actor: &str,
) -> Result<AdminResponse, AdminError> {
    let (bp, flexible) = crate::deploy::blueprint::parse_with_flexible(file, text)
        .map_err(|e| AdminError::new(ErrorKind::Invalid, e.to_string()))?;
    let failed = |e: std::io::Error| AdminError::new(ErrorKind::Failed, e.to_string());
    let stored = cluster.store.blueprints().map_err(failed)?;
    if let Some((i, port, other)) = crate::domain::port_taken(&bp, &stored) {
        let (line, column) = crate::deploy::blueprint::service_port_at(text, i).unwrap_or((1, 1));
        let e = crate::deploy::blueprint::FileError {
            file: file.into(),
            line,
            column,
            path: format!("slices[{i}].service.port"),
            message: format!(
                "port {port} is the service port of '{other}': choose another port, or change '{other}' first"
            ),
        };
        return Err(AdminError::new(ErrorKind::Invalid, e.to_string()));
    }
    // A user this node does not have cannot run anything here: said at once, where it is
    // written (other nodes check again when they start an instance).
    for (i, s) in bp.slices.iter().enumerate() {
        if let Some(u) = &s.user
            && crate::deploy::supervisor::user::lookup(u).is_none()
        {
            let (line, column) = crate::deploy::blueprint::user_at(text, i).unwrap_or((1, 1));
            let e = crate::deploy::blueprint::FileError {
                file: file.into(),
                line,
                column,
                path: format!("slices[{i}].user"),
                message: format!(
                    "user '{u}' does not exist on node '{}': create it there (useradd --system {u}), or run the slice as another user",
                    cluster.name
                ),
            };
            return Err(AdminError::new(ErrorKind::Invalid, e.to_string()));
        }
    }
    let old = stored.iter().find(|s| s.blueprint.name == bp.name);
    let mut snap =
        crate::deploy::cluster::Snapshot::read(cluster, metrics, &mut Default::default())
            .map_err(failed)?;
    snap.blueprints.retain(|b| b.name != bp.name);
    // A flexible slice is stored held at no instance: the plan shows it so.
    let mut planned = bp.clone();
    for s in planned
        .slices
        .iter_mut()
        .filter(|s| flexible.iter().any(|(n, _)| *n == s.name))
    {
        s.instances = 0;
    }
    snap.blueprints.push(planned);
    let steps = crate::deploy::plan::plan(&snap.world(Duration::MAX), &bp.name);
    let versions = cluster.store.blueprint_versions(&bp.name).map_err(failed)?;
    let spec = |v: u64, slice: &str| {
        versions
            .iter()
            .find(|b| b.version == v)
            .and_then(|b| b.blueprint.slices.iter().find(|s| s.name == slice).cloned())
    };
    let assignments = cluster.store.assignments().map_err(failed)?;
    let mut view = PlanView {
        blueprint: bp.name.clone(),
        previous_version: old.map(|o| o.version),
        version: None,
        dry_run,
        steps,
        rollouts: crate::view::rollouts::planned(
            &bp,
            old.map_or(1, |o| o.version + 1),
            &assignments,
            &spec,
            &cluster.store.rollouts().map_err(failed)?,
        ),
    };
    // A copy of a slice that rolls out is replaced (a new copy first), not kept as it runs.
    for r in &view.rollouts {
        let prefix = format!("{}/", r.target);
        for st in view
            .steps
            .iter_mut()
            .filter(|st| st.action == "keep" && st.instance.starts_with(&prefix))
        {
            st.action = "replace".into();
            st.reason = Some(format!(
                "rolls out to v{}: {}, {}",
                r.to, r.strategy, r.plan
            ));
        }
    }
    if !dry_run {
        let req = Request {
            id: RequestId::new_random(),
            actor: actor.into(),
            at: now_millis(),
            cmd: if flexible.is_empty() {
                Command::ApplyBlueprint(bp)
            } else {
                Command::ApplyBlueprintWith {
                    blueprint: bp,
                    flexible,
                }
            },
        };
        match cluster.write(req, true).await? {
            Response::Version(v) => {
                view.version = Some(v);
                let name = view.blueprint.as_str();
                let stored_here = || {
                    cluster
                        .store
                        .blueprints()
                        .is_ok_and(|b| b.iter().any(|b| b.blueprint.name == name && b.version >= v))
                };
                until_applied_here(cluster, stored_here).await;
                let stored = cluster.store.blueprints().map_err(failed)?;
                // Not applied here yet, or stored again since: what was planned stays.
                if let Some(b) = stored
                    .iter()
                    .find(|b| b.blueprint.name == name && b.version == v)
                {
                    view.rollouts = crate::view::rollouts::started(
                        &cluster.store.rollouts().map_err(failed)?,
                        name,
                        v,
                        b.applied_at,
                        &cluster.store.assignments().map_err(failed)?,
                    );
                }
            }
            Response::Refused(m) => return Err(AdminError::new(ErrorKind::Failed, m)),
            other => {
                return Err(AdminError::new(
                    ErrorKind::Failed,
                    format!("blueprint not stored: {other:?}"),
                ));
            }
        }
    }
    Ok(AdminResponse::Plan(view))
}

/// Run a fire drill, sending its progress lines to `progress`. The admin socket runs it in a
/// task of its own, so that it runs to its end (and puts the cluster back) even when the
/// asking client goes away.
async fn drill(
    src: Sources,
    scenario: crate::deploy::drill::Scenario,
    hold_ms: Option<u64>,
    dry_run: bool,
    actor: String,
    progress: Option<tokio::sync::mpsc::UnboundedSender<String>>,
) -> AdminResponse {
    use crate::deploy::drill::{Refusal, runner::RunError};
    let run = crate::deploy::drill::runner::run(
        src.cluster.clone(),
        scenario,
        hold_ms.map(Duration::from_millis),
        dry_run,
        actor,
        src.metrics.down_after(),
        progress,
    );
    match run.await {
        Ok(r) => AdminResponse::Drill(Box::new(r)),
        Err(RunError::Refused(Refusal::Unknown(m))) => invalid(m),
        Err(RunError::Refused(Refusal::Unsafe(m))) => failed(format!("drill refused: {m}")),
        Err(RunError::Unavailable(m)) => {
            AdminResponse::Error(AdminError::new(ErrorKind::NoQuorum, m))
        }
    }
}

/// Member `name`'s part of a diagnostics bundle: this node's gathered here, another's asked
/// over the peer endpoint (`Unavailable` when it does not answer in time).
async fn diag_node(
    src: &Sources,
    name: &str,
    since: Duration,
) -> Result<AdminResponse, AdminError> {
    let cluster = &*src.cluster;
    if name == cluster.name {
        let part = super::diag::gather(src, since).await;
        return Ok(AdminResponse::DiagNode(Box::new(part)));
    }
    let members = cluster
        .store
        .nodes()
        .map_err(|e| AdminError::new(ErrorKind::Failed, format!("cannot read the members: {e}")))?;
    let Some(m) = members.iter().find(|m| m.name == name) else {
        return Err(AdminError::new(
            ErrorKind::Invalid,
            format!("no member named '{name}': 'aether nodes' lists them"),
        ));
    };
    super::diag::ask(cluster, &m.addr, since)
        .await
        .map(|p| AdminResponse::DiagNode(Box::new(p)))
        .map_err(|e| {
            AdminError::new(
                ErrorKind::Unavailable,
                format!(
                    "node '{name}' at '{}' did not answer within {} s: {e}",
                    m.addr,
                    super::diag::NODE_TIMEOUT.as_secs()
                ),
            )
        })
}
