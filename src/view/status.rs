//! The controller's part of `aether status`: its mode, pause and open decisions from this node's
//! replica, its rules and reviewer as the local controller published them, and the slices it
//! would scale past a bound but cannot (a standing condition, said once in the decision log).

use crate::controller::decide;
use crate::controller::flow::Published;
use crate::domain::now_millis;
use crate::metrics::pipeline::Pipeline;
use crate::raft::Cluster;
use crate::raft::status::{CappedView, ControlView, ReviewerView};

/// Decisions read for the capped slices (newest first; as many as the controller reads).
const RECENT: usize = 500;

/// This node's reviewer line, as a leader or a follower says it (by this node's role now).
pub fn reviewer_line(cluster: &Cluster, controller: &Published) -> String {
    let leads = cluster.raft.metrics().borrow().current_leader == Some(cluster.id);
    controller.local.reviewer_line(leads)
}

/// The leader's reviewer as the metrics pipeline last heard of it (this node's own while it
/// leads).
pub fn leader_reviewer(metrics: &Pipeline) -> Option<ReviewerView> {
    metrics.leader_reviewer().map(|r| r.view)
}

/// The controller as this node's replica, its published state and the leader's reviewer report
/// show it.
pub fn control_view(
    cluster: &Cluster,
    controller: &Published,
    metrics: &Pipeline,
) -> Option<ControlView> {
    let state = cluster.store.control().ok()?;
    let open = cluster
        .store
        .decisions(usize::MAX, false, 0, now_millis())
        .ok()?;
    let count = |w: &str| open.iter().filter(|d| d.status.word() == w).count() as u32;
    Some(ControlView {
        mode: state.mode,
        grace_ms: controller.settings.grace_ms(&state),
        paused: state.paused,
        pending: count("pending"),
        proposed: count("proposed"),
        enabled: controller.enabled,
        reviewer: reviewer_line(cluster, controller),
        rules: controller.local.rules.clone(),
        capped: capped(cluster).ok()?,
        leader_reviewer: leader_reviewer(metrics),
    })
}

/// The slices capped at a bound now ([`decide::capped`]), from this node's replica.
pub fn capped(cluster: &Cluster) -> Result<Vec<CappedView>, std::io::Error> {
    let now = now_millis();
    let recent = cluster.store.decisions(RECENT, true, 0, now)?;
    let blueprints = cluster.store.blueprints()?;
    let desired = |b: &str, s: &str| {
        blueprints
            .iter()
            .find(|x| x.blueprint.name == b)
            .and_then(|x| x.blueprint.slices.iter().find(|x| x.name == s))
            .map(|x| x.instances)
    };
    Ok(decide::capped(&recent, desired, now))
}
