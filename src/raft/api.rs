//! What the layers above ask of the replicated store and what they get back: fresh reads and
//! their results, and the error classes of a request. The admin protocol carries these as they are.

use serde::{Deserialize, Serialize};

/// Reads that must be fresh.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ReadQuery {
    KvGet {
        key: String,
    },
    KvList {
        prefix: String,
        limit: u32,
    },
    /// Every join token, without its secret's hash.
    Tokens,
    /// The answering leader's applied index once it has confirmed its leadership with a quorum:
    /// a read barrier (a replica that has applied this far holds every acknowledged write).
    AppliedIndex,
}

/// Their results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ReadResult {
    Value(Option<Vec<u8>>),
    List(Vec<(String, Vec<u8>)>),
    Tokens(Vec<TokenInfo>),
    Index(u64),
}

/// A join token as `aether token list` shows it: everything but the secret's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: String,
    pub created_at: crate::domain::Millis,
    /// `None`: never expires.
    pub expires_at: Option<crate::domain::Millis>,
    pub uses_left: u32,
    pub uses_total: u32,
    pub revoked: bool,
}

impl From<crate::domain::TokenRecord> for TokenInfo {
    fn from(t: crate::domain::TokenRecord) -> TokenInfo {
        TokenInfo {
            id: t.id,
            created_at: t.created_at,
            expires_at: t.expires_at,
            uses_left: t.uses_left,
            uses_total: t.uses_total,
            revoked: t.revoked,
        }
    }
}

impl TokenInfo {
    /// `active`, `revoked`, `expired` or `used up`, at time `now`.
    pub fn state(&self, now: crate::domain::Millis) -> &'static str {
        if self.revoked {
            "revoked"
        } else if self.expires_at.is_some_and(|e| e <= now) {
            "expired"
        } else if self.uses_left == 0 {
            "used up"
        } else {
            "active"
        }
    }
}

/// Error classes; callers decide on these (the CLI maps each to an exit code, DESIGN §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// No leader or no quorum within the write timeout (exit 3).
    NoQuorum,
    /// The node is shutting down or its store stopped (exit 3).
    Unavailable,
    /// This node is not the leader and may not forward (internal; retried).
    NotLeader,
    /// The request itself is wrong (exit 2).
    Invalid,
    /// It ran and failed (exit 1).
    Failed,
    /// The remote operator's certificate is unknown, revoked or expired, or its role does not
    /// allow the request (exit 1). Nothing was written.
    Forbidden,
}

/// Why a write, read or status request to the cluster failed: a class callers match on and a
/// message that says what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct RequestError {
    pub kind: ErrorKind,
    pub message: String,
}

impl RequestError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> RequestError {
        RequestError {
            kind,
            message: message.into(),
        }
    }
}
