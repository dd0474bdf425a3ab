//! The read model: what operators see, built from the layers below (raft's status, the metrics
//! window and the cluster's request traffic, the store's blueprints, decisions and rollouts, the controller's published state). The admin
//! server sends these views; the CLI and the console render them. Pure: no I/O, no writes.

use std::sync::Arc;

use crate::controller::flow::Published;
use crate::controller::model::Engine;
use crate::metrics::pipeline::Pipeline;
use crate::raft::Cluster;

pub mod blueprints;
pub mod decision;
#[cfg(test)]
pub mod fixture;
pub mod live;
pub mod metrics;
pub mod rollouts;
pub mod status;
pub mod traffic;

/// What the read model reads: this node's replica, its metrics pipeline, what its controller
/// publishes, and its language model's engine. Cloned per admin connection.
#[derive(Clone)]
pub struct Sources {
    pub cluster: Arc<Cluster>,
    pub metrics: Arc<Pipeline>,
    pub controller: tokio::sync::watch::Receiver<Published>,
    pub model: Arc<Engine>,
    /// Proposes advice items operators take (`aether advice take`).
    pub proposer: Arc<crate::controller::flow::Controller>,
    /// The node's effective configuration (shown, secrets redacted, by `aether diag bundle`).
    pub config: Arc<crate::config::Config>,
}
