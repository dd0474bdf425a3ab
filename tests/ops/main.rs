//! Day-2 operations on real nodes over 127.0.0.1: `aether doctor`, membership (remove, moved
//! addresses), join tokens, backup and restore, fire drills, diagnostics bundles, remote
//! operators, node certificate renewal.

#[path = "../cluster/harness.rs"]
mod harness;

mod certs;
mod diag;
mod doctor;
mod drill;
mod membership;
mod remote;
mod snapshot;
