//! Admin server: the node's Unix socket `<data-dir>/aether.sock` (mode 0600). One connection
//! carries any number of request/response frames.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::protocol::{AdminError, AdminRequest, AdminResponse, ErrorKind, PlanView, TokenView};
use crate::deploy::placement::NodeSlot;
use crate::domain::now_millis;
use crate::metrics::pipeline::Pipeline;
use crate::net::frame::{FrameError, read_frame, write_frame};
use crate::net::tls::JoinToken;
use crate::raft::Cluster;
use crate::raft::types::{Command, Request, RequestId, Response};

/// Largest admin frame (a kv value is at most [`MAX_VALUE`]).
pub const MAX_ADMIN_FRAME: u64 = 4 << 20;
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
    cluster: Arc<Cluster>,
    metrics: Arc<Pipeline>,
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
            let (cluster, metrics, shutdown) = (cluster.clone(), metrics.clone(), shutdown.clone());
            tracker.spawn(async move { connection(stream, cluster, metrics, shutdown).await });
        }
        drop(listener);
        let _ = std::fs::remove_file(&path);
        tracing::info!("admin socket closed");
    })
}

async fn connection(
    mut stream: UnixStream,
    cluster: Arc<Cluster>,
    metrics: Arc<Pipeline>,
    shutdown: CancellationToken,
) {
    let uid = stream.peer_cred().map(|c| c.uid()).unwrap_or(u32::MAX);
    let actor = format!("uid:{uid}@{}", cluster.name);
    loop {
        let req = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = read_frame::<_, AdminRequest>(&mut stream, MAX_ADMIN_FRAME) => r,
        };
        let resp = match req {
            Ok(req) => handle(&cluster, &metrics, req, &actor).await,
            Err(FrameError::Closed) => return,
            Err(e) => {
                let resp = AdminResponse::Error(AdminError::new(
                    ErrorKind::Invalid,
                    format!("bad admin frame: {e}"),
                ));
                let _ = write_frame(&mut stream, &resp).await;
                return;
            }
        };
        if write_frame(&mut stream, &resp).await.is_err() {
            return;
        }
    }
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
        } => crate::domain::validate_name("blueprint name", blueprint)
            .and_then(|_| crate::domain::validate_name("slice name", slice)),
        Command::RevokeJoinToken { .. }
        | Command::SetNodeState { .. }
        | Command::RemoveNode { .. } => Ok(()),
        other => Err(format!(
            "'{}' is not accepted from clients",
            other.summary()
        )),
    }
}

/// Answer one admin request on behalf of `actor`.
pub async fn handle(
    cluster: &Cluster,
    metrics: &Pipeline,
    req: AdminRequest,
    actor: &str,
) -> AdminResponse {
    let out = |r: Result<AdminResponse, AdminError>| r.unwrap_or_else(AdminResponse::Error);
    match req {
        AdminRequest::Status => out(cluster
            .status()
            .await
            .map(|s| AdminResponse::Status(Box::new(s)))),
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
        AdminRequest::Metrics {
            node,
            series,
            since_secs,
        } => {
            let interval_ms = metrics.interval().as_millis() as u64;
            match metrics.with_state(|st| {
                crate::metrics::view::metrics_view(
                    &st.view,
                    &cluster.name,
                    interval_ms,
                    node.as_deref(),
                    series.as_deref(),
                    since_secs.unwrap_or(crate::metrics::window::WINDOW_SECS),
                    std::time::Instant::now(),
                )
            }) {
                Ok(v) => AdminResponse::Metrics(Box::new(v)),
                Err(e) => invalid(e.to_string()),
            }
        }
        AdminRequest::BlueprintApply {
            file,
            text,
            dry_run,
        } => out(apply_blueprint(cluster, metrics, &file, &text, dry_run, actor).await),
        AdminRequest::Blueprints { name } => {
            let all = match cluster.store.blueprints() {
                Ok(a) => a,
                Err(e) => {
                    return AdminResponse::Error(AdminError::new(ErrorKind::Failed, e.to_string()));
                }
            };
            match name {
                None => AdminResponse::Blueprints(all),
                Some(n) => {
                    let found: Vec<_> = all
                        .iter()
                        .filter(|b| b.blueprint.name == n)
                        .cloned()
                        .collect();
                    if found.is_empty() {
                        let known: Vec<&str> =
                            all.iter().map(|b| b.blueprint.name.as_str()).collect();
                        return AdminResponse::Error(AdminError::new(
                            ErrorKind::Failed,
                            format!(
                                "no blueprint named '{n}'; stored: {}",
                                if known.is_empty() {
                                    "none".to_string()
                                } else {
                                    known.join(", ")
                                }
                            ),
                        ));
                    }
                    AdminResponse::Blueprints(found)
                }
            }
        }
        AdminRequest::Audit { limit } => out(cluster
            .store
            .audit(limit as usize)
            .map(AdminResponse::Audit)
            .map_err(|e| AdminError::new(ErrorKind::Failed, e.to_string()))),
    }
}

/// What placement knows of each member: its size from the metrics snapshot, and whether it may
/// take instances (ready, not draining, metrics seen).
fn node_slots(cluster: &Cluster, metrics: &Pipeline) -> Result<Vec<NodeSlot>, AdminError> {
    let failed = |e: std::io::Error| AdminError::new(ErrorKind::Failed, e.to_string());
    let members = cluster.store.nodes().map_err(failed)?;
    let health = cluster.store.health().map_err(failed)?;
    Ok(metrics.with_state(|st| {
        members
            .iter()
            .map(|m| {
                let entry = st
                    .view
                    .snapshot
                    .as_ref()
                    .and_then(|s| s.nodes.iter().find(|e| e.node == m.id));
                let h = health.get(&m.id).copied().unwrap_or_default();
                let schedulable = if m.state != crate::domain::NodeState::Ready {
                    Err(format!("is {}", m.state))
                } else if h != crate::domain::Health::Ready {
                    Err(format!("is {h}"))
                } else if entry.is_none() {
                    Err("has sent no metrics yet".to_string())
                } else {
                    Ok(())
                };
                NodeSlot {
                    id: m.id,
                    name: m.name.clone(),
                    cpu: entry.map(|e| e.m.cores.len() as f32).unwrap_or(0.0),
                    memory: entry.map(|e| e.m.mem_total).unwrap_or(0),
                    gpus: entry.map(|e| e.m.gpus.len() as u32).unwrap_or(0),
                    schedulable,
                }
            })
            .collect()
    }))
}

async fn apply_blueprint(
    cluster: &Cluster,
    metrics: &Pipeline,
    file: &str,
    text: &str,
    dry_run: bool,
    actor: &str,
) -> Result<AdminResponse, AdminError> {
    let bp = crate::deploy::blueprint::parse(file, text)
        .map_err(|e| AdminError::new(ErrorKind::Invalid, e.to_string()))?;
    let stored = cluster
        .store
        .blueprints()
        .map_err(|e| AdminError::new(ErrorKind::Failed, e.to_string()))?;
    let old = stored.iter().find(|s| s.blueprint.name == bp.name);
    let others: Vec<crate::domain::Blueprint> = stored
        .iter()
        .filter(|s| s.blueprint.name != bp.name)
        .map(|s| s.blueprint.clone())
        .collect();
    let steps = crate::deploy::plan::plan(
        &node_slots(cluster, metrics)?,
        &others,
        old.map(|o| &o.blueprint),
        &bp,
    );
    let mut view = PlanView {
        blueprint: bp.name.clone(),
        previous_version: old.map(|o| o.version),
        version: None,
        dry_run,
        steps,
    };
    if !dry_run {
        let req = Request {
            id: RequestId::new_random(),
            actor: actor.into(),
            at: now_millis(),
            cmd: Command::ApplyBlueprint(bp),
        };
        match cluster.write(req, true).await? {
            Response::Version(v) => view.version = Some(v),
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
