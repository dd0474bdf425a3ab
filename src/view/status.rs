//! The controller's part of `aether status`: its mode, pause and open decisions from this node's
//! replica, its rules and reviewer from the local controller.

use crate::controller::flow::Controller;
use crate::domain::now_millis;
use crate::raft::Cluster;
use crate::raft::status::ControlView;

/// The controller as this node's replica and config show it.
pub fn control_view(cluster: &Cluster, controller: &Controller) -> Option<ControlView> {
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
