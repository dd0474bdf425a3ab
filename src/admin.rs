//! The admin API: protocol types, the server on the node's Unix socket and for remote operators
//! over QUIC, the role each request needs, the client the CLI and the console use, live feeds for
//! the console, and the small HTTP endpoint for health checks.

pub mod client;
pub mod diag;
pub mod http;
pub mod live;
pub mod protocol;
pub mod roles;
pub mod server;
