//! The admin API: protocol types, the server on the node's Unix socket, the client the CLI and the
//! console use, live feeds for the console, and the small HTTP endpoint for health checks.

pub mod client;
pub mod diag;
pub mod http;
pub mod live;
pub mod protocol;
pub mod server;
