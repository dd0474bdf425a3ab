//! The command line: the command tree (clap derive, `args`), the client commands (`run`) and
//! their renderers (`output`, tested in `tests`). Every command other than `node` talks to a
//! node through [`crate::admin::client::Client`].

mod args;
#[cfg(test)]
mod fixture;
mod output;
mod run;
#[cfg(test)]
mod tests;

use crate::admin::client::ClientError;
use crate::admin::protocol::AdminError;

pub use args::{
    BlueprintCmd, Cli, Cmd, DecisionsCmd, KvCmd, ModelCmd, NodeArgs, OutputFormat, OverrideCmd,
    Stub, TokenCmd, TokenTtl, write_man_pages,
};
pub use run::{node_config, run_client};

/// Exit codes (DESIGN §11).
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const UNREACHABLE: i32 = 3;
}

/// A failed command: what to print and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    pub fn new(code: i32, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

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

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        Failure {
            code: e.exit_code(),
            message: e.to_string(),
        }
    }
}
