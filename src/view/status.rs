//! The controller's part of `aether status`: its mode, pause and open decisions from this node's
//! replica, its rules and reviewer as the local controller published them.

use crate::controller::flow::Published;
use crate::domain::now_millis;
use crate::raft::Cluster;
use crate::raft::status::ControlView;

/// The controller as this node's replica and its published state show it.
pub fn control_view(cluster: &Cluster, controller: &Published) -> Option<ControlView> {
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
        reviewer: controller.local.reviewer.clone(),
        rules: controller.local.rules.clone(),
    })
}
