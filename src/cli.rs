//! The command line: the command tree (clap derive, `args`), the client commands (`run`) and
//! their renderers (`output`, tested in `tests`). Every command other than `node` talks to a
//! node through [`crate::admin::client::Client`].

mod args;
mod diag;
mod doctor;
#[cfg(test)]
mod fixture;
mod output;
mod run;
#[cfg(test)]
mod tests;

use crate::admin::client::ClientError;
use crate::admin::protocol::AdminError;

pub use args::{
    BlueprintCmd, Cli, Cmd, DecisionsCmd, DiagCmd, DrillCmd, KvCmd, ModelCmd, NodeArgs,
    OutputFormat, OverrideCmd, RolloutCmd, SnapshotCmd, TokenCmd, TokenTtl, write_man_pages,
};
pub use run::{node_config, run_client};

/// Exit codes (DESIGN §11).
pub mod exit {
    /// It worked.
    pub const OK: i32 = 0;
    /// It ran and failed.
    pub const FAILED: i32 = 1;
    /// Bad usage or bad input.
    pub const USAGE: i32 = 2;
    /// The node is unreachable or has no quorum.
    pub const UNREACHABLE: i32 = 3;
}

/// A failed command: what to print and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// One of [`exit`]'s codes.
    pub code: i32,
    /// Printed after `error: ` on stderr.
    pub message: String,
}

impl Failure {
    /// A failure with this exit code and message.
    pub fn new(code: i32, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

/// The node's error: its exit code by its kind ([`AdminError::exit_code`]).
impl From<AdminError> for Failure {
    fn from(e: AdminError) -> Failure {
        Failure {
            code: e.exit_code(),
            message: e.message,
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure {
            code: exit::FAILED,
            message: format!("{e:#}"),
        }
    }
}

/// A typed request's error: its exit code by its variant ([`ClientError::exit_code`]).
impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        Failure {
            code: e.exit_code(),
            message: e.to_string(),
        }
    }
}
