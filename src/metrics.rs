//! Metrics (DESIGN §7). Metrics never touch Raft.
//!
//! Built so far: [`sample`] (host, disk, network and process sampling with sysinfo) and [`gpu`]
//! (NVML, loaded at run time; `gpu: unavailable (<reason>)` without it), and the pure cores
//! [`window`] (the 2-hour history of every series with a fixed memory bound) and [`anomaly`]
//! (values far outside a node's own normal). Push to the leader, the cluster snapshot broadcast
//! and the outputs come next (issue 3).

pub mod anomaly;
pub mod gpu;
pub mod sample;
pub mod window;
