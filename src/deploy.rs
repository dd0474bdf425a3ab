//! Workloads (DESIGN §8): operators declare, the leader places, every node converges.
//!
//! Built so far, both pure: [`blueprint`] (TOML files to validated blueprints, with located
//! errors) and [`placement`] (a consistent-hash ring with bounded loads). Applying blueprints
//! through Raft, the leader's assignment loop, the node reconciler and the supervisor come next
//! (issue 4).

pub mod blueprint;
pub mod placement;
