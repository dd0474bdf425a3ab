//! Operations commands on real processes over 127.0.0.1: `aether doctor`.

#[path = "../cluster/harness.rs"]
mod harness;

mod doctor;
