//! Nodes that sleep, wake and leave on notice, on real nodes over 127.0.0.1: power (suspend,
//! resume, consolidation), spot-interruption notices from a local IMDS server, GPU health
//! signals, and carbon intensity with flexible slices.

mod carbon;
mod gpu;
#[path = "../cluster/harness.rs"]
mod harness;
#[path = "../ingress/http.rs"]
#[allow(dead_code)]
mod http;
mod sleep;
mod spot;
