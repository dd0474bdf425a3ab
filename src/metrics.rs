//! Metrics (DESIGN §7). Metrics never touch Raft.
//!
//! Built so far, as pure cores without I/O: [`window`], the 2-hour history of every series with
//! a fixed memory bound, and [`anomaly`], the robust detector that flags values far outside a
//! node's own normal. Sampling (sysinfo, NVML), push to the leader and the cluster snapshot
//! broadcast come next (issue 3).

pub mod anomaly;
pub mod window;
