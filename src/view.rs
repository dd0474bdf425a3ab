//! The read model: what operators see, built from the layers below (raft's status, the metrics
//! window, the store's blueprints and decisions, the controller's published state). The admin
//! server sends these views; the CLI and the console render them. Pure: no I/O, no writes.

pub mod blueprints;
pub mod decision;
pub mod live;
pub mod metrics;
pub mod status;
