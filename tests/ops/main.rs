//! Operations on real `aether node` processes over 127.0.0.1: backup and restore.

#[path = "../cluster/harness.rs"]
mod harness;
mod snapshot;
