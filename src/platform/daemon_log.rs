//! The daemon's own log, kept in the data dir for `aether diag bundle`: every line `aether node`
//! logs to stderr also goes to `<data-dir>/logs/aether.log`, rotated at [`MAX_BYTES`] to
//! `aether.log.1` (one rotated file: at most 2 × 4 MiB on disk). Lines logged before the data
//! dir is known (configuration errors) reach stderr only.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Size at which `aether.log` is rotated to `aether.log.1`.
pub const MAX_BYTES: u64 = 4 << 20;

/// `<data-dir>/logs/aether.log`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("logs").join("aether.log")
}

/// The rotated file beside `path` (`aether.log.1`).
fn rotated(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".1");
    PathBuf::from(p)
}

/// An open log file and its size; rotates before a write would pass `max`.
struct Rotating {
    path: PathBuf,
    file: File,
    size: u64,
    max: u64,
}

impl Rotating {
    fn open(path: PathBuf, max: u64) -> std::io::Result<Rotating> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)?;
        let size = file.metadata()?.len();
        Ok(Rotating {
            path,
            file,
            size,
            max,
        })
    }

    fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        if self.size > 0 && self.size + buf.len() as u64 > self.max {
            std::fs::rename(&self.path, rotated(&self.path))?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&self.path)?;
            self.size = 0;
        }
        self.file.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(())
    }
}

/// The file the daemon's log lines go to, once [`install`]ed.
static FILE: Mutex<Option<Rotating>> = Mutex::new(None);

/// Send the daemon's log lines to `<data-dir>/logs/aether.log` from now on.
pub fn install(data_dir: &Path) -> std::io::Result<()> {
    let f = Rotating::open(path(data_dir), MAX_BYTES)?;
    *FILE.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
    Ok(())
}

/// A `tracing_subscriber` writer to the installed file; writes nothing before [`install`].
/// The formatter hands it one whole line per write, so rotation never splits a line.
pub struct FileWriter;

impl Write for FileWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(f) = FILE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            // A full disk must not stop the node's logging to stderr: the line is dropped here.
            let _ = f.write(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for FileWriter {
    type Writer = FileWriter;
    fn make_writer(&'a self) -> FileWriter {
        FileWriter
    }
}

/// The end of a file, at most `max` bytes, from a line start when it was cut. A missing file
/// reads as empty.
fn tail_bytes(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let from = len.saturating_sub(max);
    f.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::new();
    f.take(len - from).read_to_end(&mut buf)?;
    if from > 0 {
        let cut = buf
            .iter()
            .position(|b| *b == b'\n')
            .map_or(buf.len(), |i| i + 1);
        buf.drain(..cut);
    }
    Ok(buf)
}

/// The daemon's log lines of the last `since` before `now`, at most `max` bytes (the newest),
/// from `aether.log.1` and `aether.log` in the data dir.
pub fn recent(
    data_dir: &Path,
    since: Duration,
    now: SystemTime,
    max: u64,
) -> std::io::Result<String> {
    let p = path(data_dir);
    let newer = tail_bytes(&p, max)?;
    let mut text = if (newer.len() as u64) < max {
        tail_bytes(&rotated(&p), max - newer.len() as u64)?
    } else {
        Vec::new()
    };
    text.extend_from_slice(&newer);
    let text = String::from_utf8_lossy(&text);
    Ok(since_cut(
        &text,
        now.checked_sub(since).unwrap_or(SystemTime::UNIX_EPOCH),
    )
    .to_string())
}

/// `text` from its first line stamped at or after `from` (a line starts with an RFC 3339
/// time, as the daemon's formatter writes it); lines without a stamp belong to the line
/// before them. Empty when every stamped line is older.
pub fn since_cut(text: &str, from: SystemTime) -> &str {
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let stamp = line.split_whitespace().next().unwrap_or("");
        if let Ok(t) = humantime::parse_rfc3339(stamp)
            && t >= from
        {
            return &text[at..];
        }
        at += line.len();
    }
    ""
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SystemTime {
        humantime::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn lines_older_than_since_are_cut_with_their_continuations() {
        let text = "2026-12-05T01:00:00.000001Z  INFO old\n  continued old\n\
                    2026-12-05T02:00:00.5Z  WARN new\n  continued new\n\
                    2026-12-05T02:10:00Z  INFO newer\n";
        assert_eq!(
            since_cut(text, at("2026-12-05T01:30:00Z")),
            "2026-12-05T02:00:00.5Z  WARN new\n  continued new\n\
             2026-12-05T02:10:00Z  INFO newer\n"
        );
        assert_eq!(since_cut(text, at("2026-12-05T00:00:00Z")), text);
        assert_eq!(since_cut(text, at("2026-12-05T03:00:00Z")), "");
    }

    #[test]
    fn the_file_rotates_once_and_reads_back_newest_last_within_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        let mut f = Rotating::open(p.clone(), 100).unwrap();
        for i in 0..12 {
            // 40 bytes a line: two lines a file.
            f.write(format!("2026-12-05T02:00:{i:02}Z  INFO line {i:02} ......\n").as_bytes())
                .unwrap();
        }
        assert!(!dir.path().join("logs/aether.log.2").exists());
        let one = std::fs::read_to_string(rotated(&p)).unwrap();
        assert!(one.contains("line 08") && one.contains("line 09"), "{one}");
        let now = at("2026-12-05T02:01:00Z");
        let all = recent(dir.path(), Duration::from_secs(3600), now, 1 << 20).unwrap();
        assert!(all.starts_with("2026-12-05T02:00:08Z"), "{all}");
        assert!(all.ends_with("line 11 ......\n"), "{all}");
        // A bound cuts the oldest lines, at a line start.
        let some = recent(dir.path(), Duration::from_secs(3600), now, 100).unwrap();
        assert_eq!(some.lines().count(), 2, "{some}");
        assert!(some.ends_with("line 11 ......\n"), "{some}");
        // Only the last 51 s: lines from 02:00:09 on.
        let late = recent(dir.path(), Duration::from_secs(51), now, 1 << 20).unwrap();
        assert!(late.starts_with("2026-12-05T02:00:09Z"), "{late}");
        // No file yet: empty.
        let none = tempfile::tempdir().unwrap();
        assert_eq!(
            recent(none.path(), Duration::from_secs(1), now, 10).unwrap(),
            ""
        );
    }
}
