//! Workloads (DESIGN §8): operators declare, the leader places, every node converges.
//!
//! Built so far: [`placement`], the pure placement function (consistent-hash ring with bounded
//! loads). Blueprints, the leader's assignment loop, the node reconciler and the supervisor come
//! next (issue 4).

pub mod placement;
