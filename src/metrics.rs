//! Metrics (DESIGN §7). Metrics never touch Raft.
//!
//! - [`sample`]: host, disk, network and process sampling (sysinfo); [`gpu`]: NVML, loaded at run
//!   time (`gpu: unavailable (<reason>)` without it).
//! - [`update`]: the wire types, a node's `MetricsUpdate` and the leader's
//!   `ClusterMetricsSnapshot`; [`delta`]: the snapshot as it travels, full or as a delta
//!   against the previous one, and the relay plan that spreads it (pure).
//! - [`aggregate`]: the leader's aggregation, liveness and anomaly flags, and the [`aggregate::View`]
//!   every node builds from snapshots; [`window`]: the 2-hour history with a fixed memory bound;
//!   [`anomaly`]: values far outside a node's own normal; [`traffic`]: the cluster's request
//!   traffic summed from the snapshots; [`gpu_health`]: the GPU signals that predict trouble
//!   (temperature trend, XID and ECC errors, throttling); [`energy`]: power per slice. All pure.
//! - [`requests`]: what the ingress counts (the node's [`requests::Recorder`]) and the wire and
//!   read forms of request traffic.
//! - [`carbon`]: a node's carbon-intensity signal, read from the JSON of Electricity Maps,
//!   the Carbon Aware SDK or WattTime (pure).
//! - [`pipeline`]: the loops that sample, push, aggregate and spread the view.
//! - [`prometheus`]: `/metrics` in the Prometheus text format. What `aether metrics` shows is
//!   built in `view/metrics.rs`.

pub mod aggregate;
pub mod anomaly;
pub mod carbon;
pub mod delta;
pub mod energy;
pub mod gpu;
pub mod gpu_health;
pub mod pipeline;
pub mod prometheus;
pub mod requests;
pub mod sample;
pub mod traffic;
pub mod update;
pub mod window;
