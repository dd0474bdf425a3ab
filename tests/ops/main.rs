//! Day-2 operations on real nodes over 127.0.0.1: membership (remove, moved addresses), join
//! tokens, backup and restore.

#[path = "../cluster/harness.rs"]
mod harness;
mod membership;
mod snapshot;
