//! Admin server: the node's Unix socket `<data-dir>/aether.sock` (mode 0600). One connection
//! carries any number of request/response frames.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::protocol::{
    AdminError, AdminRequest, AdminResponse, BlueprintView, ControlView, ErrorKind, InstanceView,
    PlanView, TokenView,
};
use crate::controller::flow::Controller;
use crate::deploy::logs::LogChunk;
use crate::domain::{Assignment, Health, InstanceStatus, NodeId, now_millis};
use crate::metrics::pipeline::Pipeline;
use crate::net::frame::{FrameError, read_frame, write_frame};
use crate::net::tls::JoinToken;
use crate::raft::Cluster;
use crate::raft::network::{PeerRequest, PeerResponse};
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
    controller: Arc<Controller>,
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
            let (cluster, metrics, controller, shutdown) = (
                cluster.clone(),
                metrics.clone(),
                controller.clone(),
                shutdown.clone(),
            );
            tracker.spawn(async move {
                connection(stream, cluster, metrics, controller, shutdown).await
            });
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
    controller: Arc<Controller>,
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
            Ok(AdminRequest::Subscribe(w)) => {
                super::live::serve(stream, w, cluster, metrics, controller, shutdown).await;
                return;
            }
            Ok(req) => handle(&cluster, &metrics, &controller, req, &actor).await,
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

/// `aether decisions` without `--all` shows open decisions and those of the last hour.
const RECENT_DECISIONS_MS: u64 = 3_600_000;

fn failed(m: impl Into<String>) -> AdminResponse {
    AdminResponse::Error(AdminError::new(ErrorKind::Failed, m))
}

/// The controller as this node's replica and config show it.
pub(super) fn control_view(cluster: &Cluster, controller: &Controller) -> Option<ControlView> {
    let local = controller.local_status();
    let cfg = controller.config();
    let state = cluster.store.control().ok()?;
    let open = cluster
        .store
        .decisions(usize::MAX, false, 0, now_millis())
        .ok()?;
    let count = |w: &str| open.iter().filter(|d| d.status.word() == w).count() as u32;
    Some(ControlView {
        mode: state.mode,
        grace_ms: controller.grace_ms(&state),
        paused: state.paused,
        pending: count("pending"),
        proposed: count("proposed"),
        enabled: cfg.enabled,
        reviewer: local.reviewer,
        rules: local.rules,
    })
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
pub async fn handle(
    cluster: &Cluster,
    metrics: &Pipeline,
    controller: &Controller,
    req: AdminRequest,
    actor: &str,
) -> AdminResponse {
    let out = |r: Result<AdminResponse, AdminError>| r.unwrap_or_else(AdminResponse::Error);
    match req {
        AdminRequest::Status => out(cluster.status().await.map(|mut s| {
            s.controller = control_view(cluster, controller);
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
        AdminRequest::Model => AdminResponse::Model(Box::new(controller.model().status())),
        AdminRequest::ModelBench { seconds } => {
            let engine = controller.model();
            let seconds = seconds.clamp(1, 600);
            match tokio::task::spawn_blocking(move || engine.bench(seconds)).await {
                Ok(Ok(b)) => AdminResponse::ModelBench(Box::new(b)),
                Ok(Err(e)) => failed(e),
                Err(e) => failed(format!("the model bench stopped: {e}")),
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
        AdminRequest::Metrics {
            node,
            series,
            since_secs,
        } => {
            let interval_ms = metrics.interval().as_millis() as u64;
            match metrics.with_state(|st| {
                crate::view::metrics::metrics_view(
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
            out(blueprint_views(cluster, name.as_deref()).map(AdminResponse::Blueprints))
        }
        AdminRequest::Logs {
            target,
            cursors,
            tail,
        } => out(logs(cluster, &target, &cursors, tail).await),
        AdminRequest::Subscribe(_) => invalid(
            "a live feed needs its own connection: send 'Subscribe' first on a new connection",
        ),
        AdminRequest::Audit { limit } => out(cluster
            .store
            .audit(limit as usize)
            .map(AdminResponse::Audit)
            .map_err(|e| AdminError::new(ErrorKind::Failed, e.to_string()))),
    }
}

/// Stored blueprints (one when `name` is set) with a row per copy of each instance.
pub(super) fn blueprint_views(
    cluster: &Cluster,
    name: Option<&str>,
) -> Result<Vec<BlueprintView>, AdminError> {
    let failed = |e: std::io::Error| AdminError::new(ErrorKind::Failed, e.to_string());
    let all = cluster.store.blueprints().map_err(failed)?;
    if let Some(n) = name
        && !all.iter().any(|b| b.blueprint.name == n)
    {
        let known: Vec<&str> = all.iter().map(|b| b.blueprint.name.as_str()).collect();
        return Err(AdminError::new(
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
    let assignments = cluster.store.assignments().map_err(failed)?;
    let statuses = cluster.store.instances().map_err(failed)?;
    let health = cluster.store.health().map_err(failed)?;
    let names: BTreeMap<NodeId, String> = cluster
        .store
        .nodes()
        .map_err(failed)?
        .into_iter()
        .map(|n| (n.id, n.name))
        .collect();
    let copies = Copies::new(&assignments, &statuses, &health, &names);
    Ok(all
        .into_iter()
        .filter(|b| name.is_none_or(|n| b.blueprint.name == n))
        .map(|b| BlueprintView {
            instances: copies.rows(&b.blueprint.name),
            version: b.version,
            applied_at: b.applied_at,
            blueprint: b.blueprint,
        })
        .collect())
}

/// What the store says of every copy of every instance: the rows of `blueprint show`.
struct Copies<'a> {
    assignments: &'a BTreeMap<String, Assignment>,
    statuses: &'a [InstanceStatus],
    /// The report of each copy, by instance and node (the store keeps one per pair).
    reports: HashMap<(&'a str, NodeId), &'a InstanceStatus>,
    health: &'a BTreeMap<NodeId, Health>,
    names: &'a BTreeMap<NodeId, String>,
}

impl<'a> Copies<'a> {
    fn new(
        assignments: &'a BTreeMap<String, Assignment>,
        statuses: &'a [InstanceStatus],
        health: &'a BTreeMap<NodeId, Health>,
        names: &'a BTreeMap<NodeId, String>,
    ) -> Copies<'a> {
        Copies {
            assignments,
            statuses,
            reports: statuses
                .iter()
                .map(|s| ((s.instance.as_str(), s.node), s))
                .collect(),
            health,
            names,
        }
    }

    fn name_of(&self, id: NodeId) -> String {
        self.names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("node-{id}"))
    }

    /// The row of `key`'s copy on `node`, from the report of that copy: of placement number
    /// `placement` (a hand-off's old copy: `None`, any), never one left from an earlier one.
    fn row(
        &self,
        key: &str,
        node: NodeId,
        placement: Option<u64>,
        note: Option<String>,
    ) -> InstanceView {
        // A report from a node that is not ready may be stale: say so.
        let note = match self.health.get(&node) {
            Some(h) if *h != Health::Ready => Some(match note {
                Some(n) => format!("{} is {h}: last report; {n}", self.name_of(node)),
                None => format!("{} is {h}: last report", self.name_of(node)),
            }),
            _ => note,
        };
        let report = self
            .reports
            .get(&(key, node))
            .filter(|s| placement.is_none_or(|p| s.placement == p));
        match report {
            Some(s) => InstanceView {
                instance: key.into(),
                node: Some(self.name_of(node)),
                state: s.state.to_string(),
                port: Some(s.port),
                pid: s.pid,
                restarts: s.restarts,
                last_exit: s.last_exit.clone(),
                health: Some(s.health.clone()),
                since: Some(s.since),
                gpus: s.gpus.clone(),
                note,
            },
            None => InstanceView {
                instance: key.into(),
                node: Some(self.name_of(node)),
                state: "assigned".into(),
                note,
                ..Default::default()
            },
        }
    }

    /// A row per copy of each instance of blueprint `name`: the placed (or pending) copy, a
    /// hand-off's old copy, and reported copies no placement wants (stopping), each with a
    /// note.
    fn rows(&self, name: &str) -> Vec<InstanceView> {
        let prefix = format!("{name}/");
        let mut rows = Vec::new();
        for (key, a) in self
            .assignments
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
        {
            match a.node {
                Some(n) => rows.push(self.row(key, n, Some(a.placement), None)),
                None => rows.push(InstanceView {
                    instance: key.clone(),
                    state: "pending".into(),
                    since: Some(a.since),
                    note: a.pending.clone(),
                    ..Default::default()
                }),
            }
            if let Some(h) = a.handoff {
                let to = a
                    .node
                    .map(|n| self.name_of(n))
                    .unwrap_or_else(|| "a new node".into());
                rows.push(self.row(
                    key,
                    h,
                    None,
                    Some(format!("old copy: stops once the copy on {to} is active")),
                ));
            }
        }
        for s in self
            .statuses
            .iter()
            .filter(|s| s.instance.starts_with(&prefix))
        {
            let note = match self.assignments.get(&s.instance) {
                Some(a) if a.reported_by(s) || a.handoff == Some(s.node) => continue,
                Some(a) if a.node == Some(s.node) => "a copy of an earlier placement: stopping",
                _ => "no longer assigned here: stopping",
            };
            rows.push(self.row(&s.instance, s.node, Some(s.placement), Some(note.into())));
        }
        rows.sort_by(|x, y| {
            let idx = |v: &InstanceView| {
                let (slice, i) = v.instance.rsplit_once('/').unwrap_or(("", "0"));
                (slice.to_string(), i.parse::<u32>().unwrap_or(0))
            };
            idx(x)
                .cmp(&idx(y))
                .then(x.note.is_some().cmp(&y.note.is_some()))
        });
        rows
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
            let req = PeerRequest::ReadLog {
                instance: instance.clone(),
                offset,
                tail,
            };
            match cluster
                .ep
                .call::<_, PeerResponse>(&m.addr, &req, Some(Duration::from_secs(5)))
                .await
            {
                Ok(PeerResponse::ReadLog(r)) => r,
                Ok(_) => Err(format!("{} answered with the wrong message", m.name)),
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
    let failed = |e: std::io::Error| AdminError::new(ErrorKind::Failed, e.to_string());
    let stored = cluster.store.blueprints().map_err(failed)?;
    let old = stored.iter().find(|s| s.blueprint.name == bp.name);
    let mut snap =
        crate::deploy::cluster::Snapshot::read(cluster, metrics, &mut Default::default())
            .map_err(failed)?;
    snap.blueprints.retain(|b| b.name != bp.name);
    snap.blueprints.push(bp.clone());
    let steps = crate::deploy::plan::plan(&snap.world(Duration::MAX), &bp.name);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::InstanceState;

    fn report(instance: &str, node: NodeId, placement: u64, pid: u32) -> InstanceStatus {
        InstanceStatus {
            instance: instance.into(),
            node,
            placement,
            state: InstanceState::Active,
            port: 8000,
            pid: Some(pid),
            restarts: 0,
            last_exit: None,
            health: "passing".into(),
            since: 1,
            gpus: Vec::new(),
        }
    }

    fn placed(node: NodeId, placement: u64, handoff: Option<NodeId>) -> Assignment {
        Assignment {
            node: Some(node),
            handoff,
            pending: None,
            since: 1,
            placement,
        }
    }

    #[test]
    fn a_report_of_an_earlier_placement_is_never_shown_as_the_current_copy() {
        let assignments = BTreeMap::from([
            // Removed and applied again: placement 7 on n1, whose copy has not reported yet;
            // n1's report of placement 3 is still in the store.
            ("shop/web/0".to_string(), placed(1, 7, None)),
            // Drained off n2 to n3: n2's copy (any placement) runs until n3's is active.
            ("shop/web/1".to_string(), placed(3, 9, Some(2))),
        ]);
        let statuses = vec![
            report("shop/web/0", 1, 3, 100),
            report("shop/web/1", 2, 4, 200),
            report("shop/web/1", 3, 9, 300),
            // Scaled down: n3 still reports a copy no placement wants.
            report("shop/web/2", 3, 5, 400),
        ];
        let health = BTreeMap::from([(1, Health::Ready), (2, Health::Ready), (3, Health::Ready)]);
        let names = (1..=3).map(|i| (i, format!("n{i}"))).collect();
        let copies = Copies::new(&assignments, &statuses, &health, &names);
        let rows = copies.rows("shop");
        let got: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{} {} {} {} {}",
                    r.instance,
                    r.node.as_deref().unwrap_or("-"),
                    r.state,
                    r.pid.map_or("-".into(), |p| p.to_string()),
                    r.note.as_deref().unwrap_or("-")
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                "shop/web/0 n1 assigned - -",
                "shop/web/0 n1 active 100 a copy of an earlier placement: stopping",
                "shop/web/1 n3 active 300 -",
                "shop/web/1 n2 active 200 old copy: stops once the copy on n3 is active",
                "shop/web/2 n3 active 400 no longer assigned here: stopping",
            ]
        );
    }
}
