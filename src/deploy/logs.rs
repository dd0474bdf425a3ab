//! Instance logs: `<data-dir>/logs/<blueprint>/<slice>/<index>.log`, rotated by size
//! (`.log.1` is the newest rotated file), and reading them back for `aether logs`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::net::{BoxFut, PeerCtx, Route, Service};

/// Most bytes one read returns; `logs -f` asks again from where it stopped.
pub const MAX_CHUNK: u64 = 256 * 1024;

/// The log file of `instance` (`blueprint/slice/index`), or `None` for a key that is not one.
pub fn path(data_dir: &Path, instance: &str) -> Option<PathBuf> {
    let parts: Vec<&str> = instance.split('/').collect();
    let [bp, slice, index] = parts.as_slice() else {
        return None;
    };
    let label = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if !label(bp) || !label(slice) || index.parse::<u32>().is_err() {
        return None;
    }
    Some(
        data_dir
            .join("logs")
            .join(bp)
            .join(slice)
            .join(format!("{index}.log")),
    )
}

/// An instance's log file, appended to by its supervisor and rotated at `max_bytes`.
pub struct LogFile {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    keep: u32,
}

impl LogFile {
    /// Open (appending) or create the file and its folders.
    pub fn open(path: PathBuf, max_bytes: u64, keep: u32) -> std::io::Result<LogFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(LogFile {
            path,
            file,
            size,
            max_bytes,
            keep,
        })
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    /// Append `buf`, rotating first when it would pass the size limit.
    pub fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.size > 0 && self.size + buf.len() as u64 > self.max_bytes {
            for n in (1..self.keep).rev() {
                let from = self.rotated(n);
                if from.exists() {
                    std::fs::rename(&from, self.rotated(n + 1))?;
                }
            }
            std::fs::rename(&self.path, self.rotated(1))?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.size = 0;
        }
        self.file.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(())
    }

    /// A line from the supervisor itself, marked so it stands out from the instance's output.
    pub fn note(&mut self, line: &str) {
        let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        if let Err(e) = self.write(format!("[aether {stamp}] {line}\n").as_bytes()) {
            tracing::warn!("cannot write to '{}': {e}", self.path.display());
        }
    }
}

/// Part of a log file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogChunk {
    /// `blueprint/slice/index`.
    pub instance: String,
    /// The node whose file this is, by name.
    pub node: String,
    /// The text read.
    pub data: String,
    /// Where the next read starts.
    pub next: u64,
}

/// Read from `offset` (the last `tail` lines when `None`; from the start when the file was
/// rotated below `offset`), at most [`MAX_CHUNK`] bytes. A missing file reads as empty.
pub fn read(path: &Path, offset: Option<u64>, tail: u32) -> std::io::Result<(String, u64)> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((String::new(), 0)),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let start = match offset {
        Some(o) if o <= len => o,
        Some(_) => 0,
        None => {
            // Scan back from the end for `tail` line breaks, at most MAX_CHUNK bytes.
            let from = len.saturating_sub(MAX_CHUNK);
            f.seek(SeekFrom::Start(from))?;
            let mut buf = Vec::new();
            Read::by_ref(&mut f)
                .take(len - from)
                .read_to_end(&mut buf)?;
            let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
            let mut cut = 0;
            let mut lines = 0;
            for (i, b) in body.iter().enumerate().rev() {
                if *b == b'\n' {
                    lines += 1;
                    if lines == tail {
                        cut = i + 1;
                        break;
                    }
                }
            }
            if tail == 0 {
                cut = buf.len();
            }
            let data = String::from_utf8_lossy(&buf[cut..]).into_owned();
            return Ok((data, len));
        }
    };
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    f.take((len - start).min(MAX_CHUNK)).read_to_end(&mut buf)?;
    let next = start + buf.len() as u64;
    Ok((String::from_utf8_lossy(&buf).into_owned(), next))
}

/// Read an instance log of this node off the async runtime.
pub async fn read_local(
    data_dir: &std::path::Path,
    instance: &str,
    offset: Option<u64>,
    tail: u32,
) -> Result<(String, u64), String> {
    let Some(path) = path(data_dir, instance) else {
        return Err(format!("'{instance}' is not an instance name"));
    };
    tokio::task::spawn_blocking(move || read(&path, offset, tail))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Instance logs on the peer endpoint: `aether logs` on one node reads the copies on others.
pub const ROUTE: Route = Route {
    id: 3,
    name: "logs",
    open: false,
};

/// Part of an instance's log on the answering node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogRequest {
    /// `blueprint/slice/index`.
    pub instance: String,
    /// From this byte offset; none: the last `tail` lines.
    pub offset: Option<u64>,
    pub tail: u32,
}

/// The text and the offset after it, or why it could not be read.
pub type LogReply = Result<(String, u64), String>;

/// Serves [`LogRequest`]s from this node's data dir.
pub struct LogService {
    pub data_dir: PathBuf,
}

impl Service for LogService {
    type Req = LogRequest;
    type Resp = LogReply;

    fn handle(self: Arc<Self>, _: PeerCtx, r: LogRequest) -> BoxFut<Result<LogReply, String>> {
        Box::pin(async move { Ok(read_local(&self.data_dir, &r.instance, r.offset, r.tail).await) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_instance_keys_map_to_files() {
        let d = Path::new("/d");
        assert_eq!(
            path(d, "shop/web/2"),
            Some(PathBuf::from("/d/logs/shop/web/2.log"))
        );
        for bad in [
            "shop/web",
            "shop/../2",
            "../web/2",
            "shop/web/x",
            "a/b/1/2",
            "",
        ] {
            assert_eq!(path(d, bad), None, "{bad}");
        }
    }

    #[test]
    fn files_rotate_at_the_limit_and_reads_follow() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("logs/a/b/0.log");
        let mut f = LogFile::open(p.clone(), 100, 2).unwrap();
        for i in 0..10 {
            f.write(format!("line {i:02} ...........\n").as_bytes())
                .unwrap();
        }
        // 20 bytes a line, so 5 lines a file: lines 0-4 were rotated to `.1`.
        let now = std::fs::read_to_string(&p).unwrap();
        assert!(now.starts_with("line 05"), "{now}");
        let one = std::fs::read_to_string(dir.path().join("logs/a/b/0.log.1")).unwrap();
        assert!(one.starts_with("line 00"), "{one}");
        assert!(!dir.path().join("logs/a/b/0.log.3").exists());
        let (tail, next) = read(&p, None, 2).unwrap();
        assert_eq!(tail, "line 08 ...........\nline 09 ...........\n");
        assert_eq!(next, 100);
        f.write(b"more\n").unwrap();
        // The write rotated (100 + 5 > 100): a reader past the end starts again at 0.
        let (data, next) = read(&p, Some(next), 0).unwrap();
        assert_eq!(data, "more\n");
        assert_eq!(next, 5);
        let (data, _) = read(&dir.path().join("missing.log"), None, 10).unwrap();
        assert_eq!(data, "");
    }
}
