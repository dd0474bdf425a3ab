//! The leader's assignment loop (DESIGN §8): every wanted instance is assigned to a node, and the
//! assignments are written through Raft (`Command::AssignInstances`) for every node to converge
//! on.
//!
//! The loop reads a [`Snapshot`] of the local replica (blueprints, members with their capacity
//! from the metrics pipeline, assignments, instance reports), asks the pure core
//! ([`super::assign`]) what to change, and writes it: the assignments, the instance statuses to
//! clear for lost nodes, and the draining nodes that are now drained.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

pub use super::assign::{Changes, Member, World, assign};
use super::placement::NodeSlot;
use crate::config::DeployConfig;
use crate::domain::{
    Assignment, Blueprint, Health, InstanceStatus, NodeId, NodeState, Rollout, StoredBlueprint,
    now_millis,
};
use crate::metrics::gpu_health::Kind;
use crate::metrics::pipeline::Pipeline;
use crate::raft::types::Command;
use crate::raft::{Cluster, Writer};

/// The first GPU-health finding on a node that predicts trouble, if one holds: the node takes
/// no new GPU work while it does.
fn gpu_trouble(e: &crate::metrics::update::NodeEntry) -> Option<String> {
    e.anomalies
        .iter()
        .find(|a| Kind::of_series(&a.series).is_some_and(Kind::is_trouble))
        .map(|a| a.reason.clone())
}

/// The members with their capacity (from the metrics snapshot) and whether they may take new
/// instances. `down_since` (when each member was first seen down) is brought up to date: a
/// member no longer down leaves it, a newly down one enters it now.
fn members(
    cluster: &Cluster,
    metrics: &Pipeline,
    down_since: &mut HashMap<NodeId, Instant>,
) -> Result<Vec<Member>, std::io::Error> {
    let records = cluster.store.nodes()?;
    let health = cluster.store.health()?;
    down_since.retain(|id, _| health.get(id) == Some(&Health::Down));
    for (id, h) in &health {
        if *h == Health::Down {
            down_since.entry(*id).or_insert_with(Instant::now);
        }
    }
    Ok(metrics.with_state(|st| {
        records
            .iter()
            .map(|m| {
                let entry = st
                    .view
                    .snapshot
                    .as_ref()
                    .and_then(|s| s.nodes.iter().find(|e| e.node == m.id));
                let h = health.get(&m.id).copied().unwrap_or_default();
                let schedulable = if m.state != NodeState::Ready {
                    Err(format!("is {}", m.state))
                } else if h != Health::Ready {
                    Err(format!("is {h}"))
                } else if entry.is_none() {
                    Err("has sent no metrics yet".to_string())
                } else if entry.is_some_and(|e| e.info.version.is_empty()) {
                    Err("has not said yet which GPUs it offers".to_string())
                } else {
                    Ok(())
                };
                Member {
                    slot: NodeSlot {
                        id: m.id,
                        name: m.name.clone(),
                        cpu: entry.map(|e| e.m.cores.len() as f32).unwrap_or(0.0),
                        memory: entry.map(|e| e.m.mem_total).unwrap_or(0),
                        gpus: entry.map(|e| e.gpus_offered()).unwrap_or(0),
                        schedulable,
                        gpu_trouble: entry.and_then(gpu_trouble),
                        carbon: entry.and_then(|e| e.info.carbon.as_ref()).map(|c| c.grams),
                    },
                    state: m.state,
                    health: h,
                    down_for: down_since.get(&m.id).map(|t| t.elapsed()),
                }
            })
            .collect()
    }))
}

/// The world as the local replica has it (for the loop and for `blueprint apply --dry-run`).
pub struct Snapshot {
    /// Every stored blueprint.
    pub blueprints: Vec<Blueprint>,
    /// Every member, with its capacity and whether it may take new instances.
    pub members: Vec<Member>,
    /// The stored assignments.
    pub current: BTreeMap<String, Assignment>,
    /// The instance reports of every node.
    pub instances: Vec<InstanceStatus>,
    /// The stored blueprint versions, and those open rollouts started from.
    pub versions: Vec<StoredBlueprint>,
    /// The open rollouts.
    pub rollouts: Vec<Rollout>,
    /// The flexible slices (`blueprint/slice`): placed on low-carbon nodes by preference.
    pub flexible: BTreeSet<String>,
}

impl Snapshot {
    /// Read it; `down_since` is kept by the caller across reads (see [`members`]).
    pub fn read(
        cluster: &Cluster,
        metrics: &Pipeline,
        down_since: &mut HashMap<NodeId, Instant>,
    ) -> Result<Snapshot, std::io::Error> {
        let stored = cluster.store.blueprints()?;
        let rollouts: Vec<Rollout> = cluster.store.open_rollouts()?;
        let mut versions = stored.clone();
        for r in &rollouts {
            if !versions
                .iter()
                .any(|v| v.blueprint.name == r.blueprint && v.version == r.from)
                && let Some(v) = cluster.store.blueprint_version(&r.blueprint, r.from)?
            {
                versions.push(v);
            }
        }
        Ok(Snapshot {
            blueprints: stored.into_iter().map(|s| s.blueprint).collect(),
            members: members(cluster, metrics, down_since)?,
            current: cluster.store.assignments()?,
            instances: cluster.store.instances()?,
            versions,
            rollouts,
            flexible: cluster
                .store
                .flexible()?
                .iter()
                .map(|f| f.target())
                .collect(),
        })
    }

    /// What [`assign`] decides from, with grace period `grace`, as of now.
    pub fn world(&self, grace: Duration) -> World<'_> {
        World {
            blueprints: &self.blueprints,
            members: &self.members,
            current: &self.current,
            instances: &self.instances,
            grace,
            now: now_millis(),
            versions: &self.versions,
            rollouts: &self.rollouts,
            flexible: &self.flexible,
        }
    }
}

/// Run the assignment loop until `shutdown`: on the leader, after every applied change that may
/// move work (and every second, for grace periods and capacity), compute the assignments and
/// write what changed.
pub async fn run(
    cluster: Arc<Cluster>,
    metrics: Arc<Pipeline>,
    cfg: DeployConfig,
    shutdown: CancellationToken,
) {
    let mut changed = cluster.store.subscribe_workloads();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut down_since: HashMap<NodeId, Instant> = HashMap::new();
    let mut w = Writer::new(cluster.clone(), "assigner");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
            r = changed.changed() => if r.is_err() { return },
        }
        if cluster.raft.metrics().borrow().current_leader != Some(cluster.id) {
            down_since.clear();
            continue;
        }
        let snap = match Snapshot::read(&cluster, &metrics, &mut down_since) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("assignment loop: reading the store failed: {e}");
                continue;
            }
        };
        let (_, changes) = assign(&snap.world(cfg.reschedule_after.0));
        for (key, note) in &changes.notes {
            tracing::info!("placement: {key}: {note}");
        }
        if changes.is_empty() {
            continue;
        }
        if let Err(e) = write_changes(&mut w, &snap, changes).await {
            tracing::warn!("assignment loop: {e}; trying again");
        }
    }
}

/// Write `c` through Raft: the assignments, then the statuses to clear for lost nodes, then the
/// drained nodes; the first failed write ends it (the next round computes them again).
async fn write_changes(
    w: &mut Writer,
    snap: &Snapshot,
    c: Changes,
) -> Result<(), crate::raft::WriteError> {
    let name = |id: NodeId| {
        snap.members
            .iter()
            .find(|m| m.slot.id == id)
            .map(|m| m.slot.name.clone())
            .unwrap_or_else(|| format!("node-{id}"))
    };
    if !c.set.is_empty() || !c.remove.is_empty() {
        w.write(Command::AssignInstances {
            set: c.set,
            remove: c.remove,
        })
        .await?;
    }
    for (node, gone) in c.clear {
        tracing::info!(
            "clearing {} instance(s) of lost node {}",
            gone.len(),
            name(node)
        );
        w.write(Command::ReportInstances {
            node,
            name: name(node),
            reports: Vec::new(),
            gone,
        })
        .await?;
    }
    for id in c.drained {
        tracing::info!("node {} is drained", name(id));
        w.write(Command::SetNodeState {
            id,
            state: NodeState::Drained,
        })
        .await?;
    }
    Ok(())
}
