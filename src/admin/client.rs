//! Admin client: one connection to a node's Unix socket.

use std::path::{Path, PathBuf};

use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::protocol::{AdminError, AdminRequest, AdminResponse, ErrorKind, LiveUpdate, Watch};
use super::server::MAX_ADMIN_FRAME;
use crate::net::frame::{read_frame, write_frame};
use crate::raft::types::{Command, RequestId, Response};

/// A connection to a node's admin socket.
pub struct Client {
    stream: UnixStream,
    path: PathBuf,
}

impl Client {
    /// Connect to the socket at `path`.
    pub async fn connect(path: &Path) -> Result<Client, AdminError> {
        let stream = UnixStream::connect(path).await.map_err(|e| {
            AdminError::new(
                ErrorKind::Unavailable,
                format!(
                    "cannot reach the node at '{}': {e}; is 'aether node' running with the same --data-dir (or pass --socket)?",
                    path.display()
                ),
            )
        })?;
        Ok(Client {
            stream,
            path: path.to_path_buf(),
        })
    }

    /// Send one request and wait for its answer. An error answer becomes `Err`.
    pub async fn call(&mut self, req: &AdminRequest) -> Result<AdminResponse, AdminError> {
        let lost = |e: &dyn std::fmt::Display| {
            AdminError::new(
                ErrorKind::Unavailable,
                format!(
                    "lost the connection to the node at '{}': {e}",
                    self.path.display()
                ),
            )
        };
        write_frame(&mut self.stream, req)
            .await
            .map_err(|e| lost(&e))?;
        match read_frame::<_, AdminResponse>(&mut self.stream, MAX_ADMIN_FRAME)
            .await
            .map_err(|e| lost(&e))?
        {
            AdminResponse::Error(e) => Err(e),
            r => Ok(r),
        }
    }
}

impl Client {
    /// A write through Raft (forwarded to the leader) with a fresh request id. A refusal by the
    /// state machine becomes `Err` (kind `Failed`) with its message.
    pub async fn write(&mut self, cmd: Command) -> Result<Response, AdminError> {
        let req = AdminRequest::Write {
            id: RequestId::new_random(),
            cmd,
        };
        match self.call(&req).await? {
            AdminResponse::Written(Response::Refused(m)) => {
                Err(AdminError::new(ErrorKind::Failed, m))
            }
            AdminResponse::Written(r) => Ok(r),
            other => Err(AdminError::new(
                ErrorKind::Failed,
                format!(
                    "the node answered a write with {other:?}: are the client and the node the same aether version?"
                ),
            )),
        }
    }
}

/// The reading half of a live feed.
pub struct FeedReader {
    rd: OwnedReadHalf,
    path: PathBuf,
}

/// The writing half of a live feed: moves its watch.
pub struct FeedWriter {
    wr: OwnedWriteHalf,
    path: PathBuf,
}

fn lost(path: &Path, e: &dyn std::fmt::Display) -> AdminError {
    AdminError::new(
        ErrorKind::Unavailable,
        format!(
            "lost the connection to the node at '{}': {e}",
            path.display()
        ),
    )
}

impl Client {
    /// Turn this connection into a live feed (see [`AdminRequest::Subscribe`]).
    pub async fn subscribe(self, watch: Watch) -> Result<(FeedReader, FeedWriter), AdminError> {
        let (rd, mut wr) = self.stream.into_split();
        write_frame(&mut wr, &AdminRequest::Subscribe(watch))
            .await
            .map_err(|e| lost(&self.path, &e))?;
        Ok((
            FeedReader {
                rd,
                path: self.path.clone(),
            },
            FeedWriter {
                wr,
                path: self.path,
            },
        ))
    }
}

impl FeedReader {
    /// The next frame. Not cancel-safe: keep it on its own task.
    pub async fn next(&mut self) -> Result<LiveUpdate, AdminError> {
        match read_frame::<_, AdminResponse>(&mut self.rd, MAX_ADMIN_FRAME)
            .await
            .map_err(|e| lost(&self.path, &e))?
        {
            AdminResponse::Live(u) => Ok(*u),
            AdminResponse::Error(e) => Err(e),
            other => Err(AdminError::new(
                ErrorKind::Failed,
                format!("the node answered a live feed with {other:?}"),
            )),
        }
    }
}

impl FeedWriter {
    /// Move the feed's watch.
    pub async fn watch(&mut self, w: Watch) -> Result<(), AdminError> {
        write_frame(&mut self.wr, &AdminRequest::Subscribe(w))
            .await
            .map_err(|e| lost(&self.path, &e))
    }
}
