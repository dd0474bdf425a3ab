//! Workloads (DESIGN §8): operators declare, the leader places, every node converges.
//!
//! Pure cores: [`blueprint`] (TOML files to validated blueprints, with located errors),
//! [`placement`] (a consistent-hash ring with bounded loads), [`assign`] (sticky assignments,
//! drain hand-offs, re-placement after a lost node's grace period) and [`plan`] (what a change
//! starts, keeps and stops). Loops: [`cluster::run`] on the leader writes
//! assignments through Raft; [`node::run`] on every node converges on its share through the
//! [`supervisor`] (processes, health checks, restarts) and reports transitions through Raft;
//! [`logs`] keeps and reads instance output; [`drill`] runs fire drills on the real cluster.

pub mod assign;
pub mod blueprint;
pub mod cluster;
pub mod drill;
pub mod logs;
pub mod node;
pub mod placement;
pub mod plan;
pub mod supervisor;

/// Takes an instance out of traffic before its process is stopped (the ingress implements it;
/// the supervisor calls it between reporting `stopping` and sending SIGTERM).
pub trait Drain: Send + Sync + 'static {
    /// Stop sending new requests to `instance`'s copy `pid` on this node, and wait — at most
    /// `limit` — for the requests in flight to it (from every node) to finish.
    fn drain(
        self: std::sync::Arc<Self>,
        instance: &str,
        pid: u32,
        limit: std::time::Duration,
    ) -> crate::net::BoxFut<()>;
}
