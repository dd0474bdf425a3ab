//! Admin client: one connection to a node's Unix socket.

use std::path::{Path, PathBuf};

use tokio::net::UnixStream;

use super::protocol::{AdminError, AdminRequest, AdminResponse, ErrorKind};
use super::server::MAX_ADMIN_FRAME;
use crate::net::frame::{read_frame, write_frame};

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
