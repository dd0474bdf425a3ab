//! Workloads (DESIGN §8): operators declare, the leader places, every node converges.
//!
//! Built so far, all pure: [`blueprint`] (TOML files to validated blueprints, with located
//! errors), [`placement`] (a consistent-hash ring with bounded loads) and [`plan`] (what a change
//! starts, keeps and stops). Blueprints are stored through Raft (`Command::ApplyBlueprint`); the
//! leader's assignment loop, the node reconciler and the supervisor come next (issue 4).

pub mod blueprint;
pub mod cluster;
pub mod logs;
pub mod node;
pub mod placement;
pub mod plan;
pub mod supervisor;
