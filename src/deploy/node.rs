//! The node reconciler (DESIGN §8): on every node, diff what the replicated assignments give
//! this node against what its supervisor runs, and converge; report instance transitions
//! through Raft (`Command::ReportInstances`), batched, so every node shows them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::supervisor::{Event, Spec, Supervisor};
use crate::config::DeployConfig;
use crate::domain::InstanceStatus;
use crate::metrics::pipeline::Pipeline;
use crate::raft::Cluster;
use crate::raft::types::{Command, Response};

/// The instances the store assigns to `cluster`'s node (as the runner or the hand-off), each
/// with what its version runs.
fn desired(cluster: &Cluster) -> Result<HashMap<String, Spec>, std::io::Error> {
    let me = cluster.id;
    let blueprints = cluster.store.blueprints()?;
    // Older versions that copies here still run (a rollout holds them), read once each.
    let mut older: HashMap<(String, u64), Option<crate::domain::Blueprint>> = HashMap::new();
    let mut out = HashMap::new();
    for (key, a) in cluster.store.assignments()? {
        if a.node != Some(me) && a.handoff != Some(me) {
            continue;
        }
        let mut parts = key.splitn(3, '/');
        let (Some(bp), Some(slice)) = (parts.next(), parts.next()) else {
            continue;
        };
        let stored = blueprints.iter().find(|b| b.blueprint.name == bp);
        let blueprint = match stored {
            Some(b) if b.version == a.version => Some(&b.blueprint),
            Some(_) => {
                let k = (bp.to_string(), a.version);
                if !older.contains_key(&k) {
                    let v = cluster.store.blueprint_version(bp, a.version)?;
                    older.insert(k.clone(), v.map(|v| v.blueprint));
                }
                older[&k].as_ref()
            }
            None => None,
        };
        match blueprint.and_then(|b| b.slices.iter().find(|s| s.name == slice)) {
            Some(s) => {
                // The hand-off's old copy runs for an earlier placement: keep whichever runs.
                let placement = (a.node == Some(me)).then_some(a.placement);
                out.insert(key.clone(), Spec::new(key, placement, s));
            }
            None if stored.is_some() => tracing::warn!(
                "{key}: version v{} of '{bp}' is not kept here; it starts when the store catches up",
                a.version
            ),
            None => {}
        }
    }
    Ok(out)
}

/// Run the reconciler until `shutdown`, then stop every instance (each taken out of traffic by
/// `drain` first) and report them gone.
pub async fn run(
    cluster: Arc<Cluster>,
    metrics: Arc<Pipeline>,
    cfg: DeployConfig,
    drain: Option<Arc<dyn super::Drain>>,
    shutdown: CancellationToken,
) -> Result<(), std::io::Error> {
    let (tx, rx) = mpsc::unbounded_channel();
    let sup = Supervisor::new(
        cluster.id,
        cluster.name.clone(),
        cluster.data_dir().to_path_buf(),
        cfg,
        tx.clone(),
    )
    .inspect_err(|e| {
        tracing::error!(
            "workloads disabled on this node: cannot prepare '{}': {e}; check that the data dir \
             is writable by this user, then restart the node",
            cluster.data_dir().join("run").display()
        )
    })?;
    let mut sup = match drain {
        Some(d) => sup.with_drain(d),
        None => sup,
    };
    let reporter_stop = CancellationToken::new();
    let reporter = tokio::spawn(report(cluster.clone(), rx, reporter_stop.clone()));
    let mut changed = cluster.store.subscribe_workloads();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cleaned = false;
    // What this node should run; read again only when the store says assignments changed (the
    // tick only drives restarts, back-off and hand-offs).
    let mut want: Option<HashMap<String, Spec>> = None;
    loop {
        let store_moved = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => false,
            r = changed.changed() => if r.is_err() { break } else { true },
        };
        if store_moved || want.is_none() {
            match desired(&cluster) {
                Ok(w) => want = Some(w),
                Err(e) => {
                    tracing::warn!("reconciler: reading assignments failed: {e}");
                    continue;
                }
            }
        }
        let Some(want) = &want else { continue };
        sup.set_gpus(metrics.gpus_offered().await);
        sup.reconcile(want);
        metrics.set_processes(sup.pids());
        if sup.busy() {
            // An old copy is stopping: look again soon to start its successor.
            tick.reset_after(Duration::from_millis(100));
        }
        // Statuses this node reported before a restart, for instances it no longer runs.
        if !cleaned && let Ok(all) = cluster.store.instances() {
            for s in all
                .iter()
                .filter(|s| s.node == cluster.id && !sup.has(&s.instance))
            {
                let _ = tx.send(Event::Gone(s.instance.clone()));
            }
            cleaned = true;
        }
    }
    tracing::info!("stopping instances");
    sup.stop_all().await;
    metrics.set_processes(Vec::new());
    drop(tx);
    drop(sup);
    // The reporter drains what is queued (the instances just stopped), then ends. With no
    // leader to take it (the whole cluster stopping) it is not worth a wait: the leader clears
    // a lost node's instances anyway.
    if tokio::time::timeout(FINAL_REPORT_WAIT, reporter)
        .await
        .is_err()
    {
        reporter_stop.cancel();
        tracing::info!(
            "stopped instances not reported within {} ms (no leader took the write); the leader \
             clears them when it finds this node gone",
            FINAL_REPORT_WAIT.as_millis()
        );
    }
    Ok(())
}

/// How long a stopping node waits to report its stopped instances.
const FINAL_REPORT_WAIT: Duration = Duration::from_millis(1_000);

/// Batch transitions (latest per instance wins) and write them; on failure keep them and try
/// again. Ends when every sender is gone and the queue is written, or on `stop`.
async fn report(
    cluster: Arc<Cluster>,
    mut rx: mpsc::UnboundedReceiver<Event>,
    stop: CancellationToken,
) {
    let mut w = crate::raft::Writer::forwarding(cluster.clone(), "supervisor");
    let mut queued: BTreeMap<String, Option<InstanceStatus>> = BTreeMap::new();
    let mut open = true;
    loop {
        if queued.is_empty() {
            if !open {
                return;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                e = rx.recv() => match e {
                    Some(e) => add(&mut queued, e),
                    None => return,
                },
            }
        }
        // Gather what else arrives within 30 ms into the same write.
        let until = tokio::time::Instant::now() + Duration::from_millis(30);
        while open {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break,
                e = rx.recv() => match e {
                    Some(e) => add(&mut queued, e),
                    None => open = false,
                },
            }
        }
        let (mut reports, mut gone) = (Vec::new(), Vec::new());
        for (k, v) in &queued {
            match v {
                Some(s) => reports.push(s.clone()),
                None => gone.push(k.clone()),
            }
        }
        let cmd = Command::ReportInstances {
            node: cluster.id,
            name: cluster.name.clone(),
            reports,
            gone,
        };
        match w.call(cmd).await {
            Ok(Response::Refused(m)) => {
                tracing::warn!("instance report refused: {m}");
                queued.clear();
            }
            Ok(_) => queued.clear(),
            Err(e) if !open => {
                // Stopping, and the cluster cannot take it now: one try only.
                tracing::info!(
                    "stopped instances not reported ({e}); the leader clears them when it finds this node gone"
                );
                return;
            }
            Err(e) => {
                tracing::warn!("instance report not written ({e}); trying again");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }
}

fn add(queued: &mut BTreeMap<String, Option<InstanceStatus>>, e: Event) {
    match e {
        Event::Status(s) => queued.insert(s.instance.clone(), Some(s)),
        Event::Gone(k) => queued.insert(k, None),
    };
}
