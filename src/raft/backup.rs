//! Backups (`aether snapshot save|inspect|restore`): the replicated state in one self-checking
//! file, and a new cluster's store built from one.
//!
//! A backup file is the snapshot record stream of [`super::snapshot`] (the format a leader sends
//! a follower) between a prefix and a checksum trailer:
//!
//! ```text
//! "AETHBKUP"  u32 BE backup format     (12 bytes, read first: a newer format is named as such)
//! u32 BE length, postcard BackupHead   (the log position and membership of the state)
//! snapshot records: Header{format} … End{records}
//! "AETHSUM1"  u64 BE length of everything before the trailer  sha256 of it   (48 bytes)
//! ```
//!
//! Reading checks, in order: the prefix (magic, format), the trailer (present, its length is
//! the file's), the sha256, then every record (the snapshot format, the record count of `End`,
//! nothing after it). A file that fails any check is refused with what was expected and found.

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use openraft::{LogId, StoredMembership};
use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Node;
use super::apply::ClusterMeta;
use super::snapshot::{SNAPSHOT_FORMAT, SnapRecord, applied_state, read_record, write_state};
use super::store::{
    AUDIT, BLUEPRINT_VERSIONS, BLUEPRINTS, DECISIONS, KV, ROLLOUTS, ROLLOUTS_OPEN, SM_META, Store,
    dec, enc, io,
};
use super::txn::{K_AUDIT_SEQ, K_CLUSTER};
use crate::domain::{AuditRecord, Millis, NodeId, NodeRecord, now_millis};

/// The first bytes of every backup file.
pub const BACKUP_MAGIC: &[u8; 8] = b"AETHBKUP";
/// The backup file format this aether writes and reads (the layout above; the records inside
/// carry their own snapshot format).
pub const BACKUP_FORMAT: u32 = 1;
/// The first bytes of the trailer.
const TRAILER_MAGIC: &[u8; 8] = b"AETHSUM1";
/// Magic and format.
const PREFIX_LEN: u64 = 12;
/// Magic, length, sha256.
pub const TRAILER_LEN: u64 = 48;
/// Largest head record (a membership of a few hundred members is a few KiB).
const MAX_HEAD: usize = 1 << 20;

/// What the state in a backup is: its log position and membership.
#[derive(Debug, Serialize, Deserialize)]
struct BackupHead {
    last_log_id: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Node>,
    /// The node that wrote the file.
    node: String,
    taken_at: Millis,
}

/// Why a backup file cannot be used, or a restore cannot be done. Callers match on the
/// variant: a bad file or target dir is bad input, the rest failures.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("cannot read snapshot file '{path}': {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "'{path}' is not an aether snapshot file: it starts with {found}, a snapshot file starts with 'AETHBKUP' (write one with 'aether snapshot save FILE')"
    )]
    NotASnapshot { path: PathBuf, found: String },
    #[error(
        "snapshot file '{path}' is in {what} format '{found}', this aether reads {what} format '{want}': {remedy}"
    )]
    Format {
        path: PathBuf,
        /// `backup` (the file's layout) or `snapshot` (its records).
        what: &'static str,
        found: u32,
        want: u32,
        remedy: &'static str,
    },
    #[error(
        "snapshot file '{path}' is truncated: {detail}; it was cut short (an interrupted copy?): use a complete copy"
    )]
    Truncated { path: PathBuf, detail: String },
    #[error(
        "snapshot file '{path}' is corrupt: checksum mismatch: expected sha256 '{expected}' (its trailer), found '{found}' (its contents); use an intact copy"
    )]
    Checksum {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("snapshot file '{path}' is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "data dir '{dir}' already holds a store ('{found}' exists): restore builds a new cluster in an empty or new dir; pick another --data-dir"
    )]
    DirInUse { dir: PathBuf, found: String },
    #[error("cannot restore into '{dir}': {message}; nothing was left behind in it")]
    Write { dir: PathBuf, message: String },
}

impl BackupError {
    /// Whether the file or the target dir is at fault (bad input) rather than the machine.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, BackupError::Write { .. })
    }
}

/// A member of the backed-up cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupMember {
    pub id: NodeId,
    /// From the nodes table; empty when the member has no record there.
    pub name: String,
    pub addr: String,
    pub voter: bool,
}

/// What `aether snapshot inspect` shows of a verified backup file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupInfo {
    /// The file's layout ([`BACKUP_FORMAT`]).
    pub format: u32,
    /// The records' format (the snapshot format Raft uses).
    pub snapshot_format: u32,
    pub cluster_id: Option<String>,
    /// The last log entry the state includes.
    pub index: Option<u64>,
    pub term: Option<u64>,
    pub members: Vec<BackupMember>,
    /// The node that wrote the file.
    pub node: String,
    pub taken_at: Millis,
    /// Records per table (`kv`, `nodes`, `tokens`, `blueprints`, `decisions`, `audit`, …).
    pub counts: BTreeMap<String, u64>,
    /// Bytes, trailer included.
    pub size: u64,
    /// Hex sha256 of everything before the trailer (verified).
    pub sha256: String,
}

/// What a restore wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoredView {
    pub data_dir: PathBuf,
    /// The cluster the snapshot came from (the restored one gets a new id at its first start).
    pub from_cluster_id: Option<String>,
    pub index: Option<u64>,
    pub term: Option<u64>,
    /// Records restored per table.
    pub kept: BTreeMap<String, u64>,
    /// Tables left out: they belong to the old cluster's members and secrets.
    pub dropped: Vec<String>,
}

/// The table a record belongs to (its name in `counts`).
fn table_of(r: &SnapRecord) -> &'static str {
    match r {
        SnapRecord::Header { .. } | SnapRecord::End { .. } => "",
        SnapRecord::Meta(..) => "meta",
        SnapRecord::Kv(..) => "kv",
        SnapRecord::Node(..) => "nodes",
        SnapRecord::Token(..) => "tokens",
        SnapRecord::Session(..) => "sessions",
        SnapRecord::Audit(..) => "audit",
        SnapRecord::Health(..) => "health",
        SnapRecord::Blueprint(..) => "blueprints",
        SnapRecord::Assignment(..) => "assignments",
        SnapRecord::Instance(..) => "instances",
        SnapRecord::Decision(..) => "decisions",
        SnapRecord::BlueprintVersion(..) => "blueprint_versions",
        SnapRecord::Rollout(..) => "rollouts",
        SnapRecord::Operator(..) => "operators",
        SnapRecord::SpotNotice(..) => "spot_notices",
        SnapRecord::Power(..) => "power",
        SnapRecord::Flexible(..) => "flexible",
    }
}

/// Tables a restore leaves out: the old members, their health, placement and reports, the
/// join tokens and client sessions, the operator certificates (signed by the old cluster's
/// CA: the restored cluster's new CA makes them void), and the old members' spot notices and
/// power records. The new cluster places the blueprints on its own members.
pub const DROPPED_TABLES: &[&str] = &[
    "nodes",
    "tokens",
    "sessions",
    "health",
    "assignments",
    "instances",
    "operators",
    "spot_notices",
    "power",
];

/// Passes writes on and hashes and counts them.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The trailer for `len` bytes hashing to `sha256`.
fn trailer(len: u64, sha256: &[u8; 32]) -> [u8; TRAILER_LEN as usize] {
    let mut t = [0u8; TRAILER_LEN as usize];
    t[..8].copy_from_slice(TRAILER_MAGIC);
    t[8..16].copy_from_slice(&len.to_be_bytes());
    t[16..].copy_from_slice(sha256);
    t
}

/// What a finished backup is: its size and checksum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupSummary {
    pub index: Option<u64>,
    pub term: Option<u64>,
    /// Bytes, trailer included.
    pub size: u64,
    pub sha256: String,
}

impl Store {
    /// Write a backup of the state machine, read in one read transaction (a consistent
    /// copy at its applied index), to `w`. `node` names the writer in the file.
    pub fn write_backup(
        &self,
        w: &mut impl Write,
        node: &str,
    ) -> Result<BackupSummary, std::io::Error> {
        let txn = self.db.begin_read().map_err(io)?;
        let (last_log_id, membership) = applied_state(&txn)?;
        let mut h = Hashing {
            inner: w,
            hash: Sha256::new(),
            len: 0,
        };
        h.write_all(BACKUP_MAGIC)?;
        h.write_all(&BACKUP_FORMAT.to_be_bytes())?;
        let head = enc(&BackupHead {
            last_log_id,
            membership,
            node: node.into(),
            taken_at: now_millis(),
        });
        h.write_all(&(head.len() as u32).to_be_bytes())?;
        h.write_all(&head)?;
        write_state(&txn, &mut h)?;
        let (len, sha) = (h.len, <[u8; 32]>::from(h.hash.finalize()));
        h.inner.write_all(&trailer(len, &sha))?;
        h.inner.flush()?;
        Ok(BackupSummary {
            index: last_log_id.map(|l| l.index),
            term: last_log_id.map(|l| l.leader_id.term),
            size: len + TRAILER_LEN,
            sha256: hex::encode(sha),
        })
    }
}

/// Check the first [`PREFIX_LEN`] bytes: the magic, then the format.
fn check_prefix(path: &Path, prefix: &[u8]) -> Result<(), BackupError> {
    let n = prefix.len().min(8);
    if prefix[..n] != BACKUP_MAGIC[..n] {
        return Err(BackupError::NotASnapshot {
            path: path.into(),
            found: format!("'{}'", prefix[..n].escape_ascii()),
        });
    }
    if prefix.len() < PREFIX_LEN as usize {
        return Err(BackupError::Truncated {
            path: path.into(),
            detail: format!(
                "{} bytes, a snapshot file has at least {}",
                prefix.len(),
                PREFIX_LEN + TRAILER_LEN
            ),
        });
    }
    let format = u32::from_be_bytes(prefix[8..12].try_into().expect("4 bytes"));
    if format != BACKUP_FORMAT {
        return Err(BackupError::Format {
            path: path.into(),
            what: "backup",
            found: format,
            want: BACKUP_FORMAT,
            remedy: if format > BACKUP_FORMAT {
                "a newer aether wrote it: inspect or restore it with that version or newer"
            } else {
                "an older development build wrote it: use that build"
            },
        });
    }
    Ok(())
}

/// Check the trailer of a file of `size` bytes whose first `size - TRAILER_LEN` bytes hash to
/// `found`: present, its length the file's, its sha256 `found`.
fn check_trailer(
    path: &Path,
    size: u64,
    trailer: &[u8],
    found: &[u8; 32],
) -> Result<(), BackupError> {
    if trailer.len() != TRAILER_LEN as usize || &trailer[..8] != TRAILER_MAGIC {
        return Err(BackupError::Truncated {
            path: path.into(),
            detail: format!(
                "no checksum trailer in its last {TRAILER_LEN} bytes ({size} bytes in all)"
            ),
        });
    }
    let len = u64::from_be_bytes(trailer[8..16].try_into().expect("8 bytes"));
    // A hostile length must not overflow: compare in u128.
    let expected = u128::from(len) + u128::from(TRAILER_LEN);
    if expected != u128::from(size) {
        return Err(BackupError::Truncated {
            path: path.into(),
            detail: format!("expected {expected} bytes (its trailer), found {size}"),
        });
    }
    if &trailer[16..] != found {
        return Err(BackupError::Checksum {
            path: path.into(),
            expected: hex::encode(&trailer[16..]),
            found: hex::encode(found),
        });
    }
    Ok(())
}

/// Verify a backup of `size` bytes in `r` (prefix, trailer, checksum) and read its records,
/// handing each to `each` (the format and count are checked here). Returns its head, its
/// Header's format and its checksum.
fn read_backup<R: Read + Seek>(
    path: &Path,
    r: &mut R,
    size: u64,
    mut each: impl FnMut(SnapRecord) -> Result<(), BackupError>,
) -> Result<(BackupHead, u32, [u8; 32]), BackupError> {
    let read_err = |e: std::io::Error| BackupError::Read {
        path: path.into(),
        source: e,
    };
    let mut prefix = Vec::with_capacity(PREFIX_LEN as usize);
    r.by_ref()
        .take(PREFIX_LEN)
        .read_to_end(&mut prefix)
        .map_err(read_err)?;
    check_prefix(path, &prefix)?;
    if size < PREFIX_LEN + TRAILER_LEN {
        return Err(BackupError::Truncated {
            path: path.into(),
            detail: format!(
                "{size} bytes, a snapshot file has at least {}",
                PREFIX_LEN + TRAILER_LEN
            ),
        });
    }
    let body = size - TRAILER_LEN;
    // The checksum first: nothing is decoded from a file that does not verify.
    let mut tail = [0u8; TRAILER_LEN as usize];
    r.seek(SeekFrom::Start(body)).map_err(read_err)?;
    r.read_exact(&mut tail).map_err(read_err)?;
    r.seek(SeekFrom::Start(0)).map_err(read_err)?;
    let mut hash = Sha256::new();
    let copied =
        std::io::copy(&mut r.by_ref().take(body), &mut HashSink(&mut hash)).map_err(read_err)?;
    if copied != body {
        return Err(BackupError::Truncated {
            path: path.into(),
            detail: format!("read {copied} of {body} bytes"),
        });
    }
    let sha = <[u8; 32]>::from(hash.finalize());
    check_trailer(path, size, &tail, &sha)?;

    let corrupt = |detail: String| BackupError::Corrupt {
        path: path.into(),
        detail,
    };
    r.seek(SeekFrom::Start(PREFIX_LEN)).map_err(read_err)?;
    let mut body_r = BufReader::new(r.by_ref().take(body - PREFIX_LEN));
    let mut len = [0u8; 4];
    body_r
        .read_exact(&mut len)
        .map_err(|e| corrupt(format!("its head does not read: {e}")))?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_HEAD {
        return Err(corrupt(format!(
            "its head is {len} bytes, at most {MAX_HEAD} expected"
        )));
    }
    let mut head = vec![0u8; len];
    body_r
        .read_exact(&mut head)
        .map_err(|e| corrupt(format!("its head does not read: {e}")))?;
    let head: BackupHead = postcard::from_bytes(&head)
        .map_err(|e| corrupt(format!("its head does not decode: {e}")))?;
    let format = match read_record(&mut body_r) {
        Ok(SnapRecord::Header {
            format: SNAPSHOT_FORMAT,
        }) => SNAPSHOT_FORMAT,
        Ok(SnapRecord::Header { format }) => {
            return Err(BackupError::Format {
                path: path.into(),
                what: "snapshot",
                found: format,
                want: SNAPSHOT_FORMAT,
                remedy: if format > SNAPSHOT_FORMAT {
                    "a newer aether wrote it: inspect or restore it with that version or newer"
                } else {
                    "an older aether wrote it: restore it with that version, then upgrade the node"
                },
            });
        }
        Ok(other) => {
            return Err(corrupt(format!(
                "its records start with '{}', not a header",
                table_of(&other)
            )));
        }
        Err(e) => return Err(corrupt(format!("its first record does not read: {e}"))),
    };
    let mut n = 0u64;
    loop {
        let rec = read_record(&mut body_r)
            .map_err(|e| corrupt(format!("record {} does not read: {e}", n + 1)))?;
        match rec {
            SnapRecord::Header { .. } => {
                return Err(corrupt(format!("record {} is a second header", n + 1)));
            }
            SnapRecord::End { records } if records == n => break,
            SnapRecord::End { records } => {
                return Err(corrupt(format!(
                    "its end says {records} records, found {n}"
                )));
            }
            rec => each(rec)?,
        }
        n += 1;
    }
    let mut rest = Vec::new();
    body_r.read_to_end(&mut rest).map_err(read_err)?;
    if !rest.is_empty() {
        return Err(corrupt(format!(
            "{} bytes after its last record",
            rest.len()
        )));
    }
    Ok((head, format, sha))
}

/// Feeds what is written to a hash.
struct HashSink<'a>(&'a mut Sha256);

impl Write for HashSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Verify a backup read from `r` (`size` bytes) and describe it; `path` names it in errors.
pub fn inspect_reader<R: Read + Seek>(
    path: &Path,
    r: &mut R,
    size: u64,
) -> Result<BackupInfo, BackupError> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut names: BTreeMap<NodeId, String> = BTreeMap::new();
    let mut cluster_id = None;
    let corrupt = |detail: String| BackupError::Corrupt {
        path: path.into(),
        detail,
    };
    let (head, snapshot_format, sha) = read_backup(path, r, size, |rec| {
        *counts.entry(table_of(&rec).into()).or_default() += 1;
        match &rec {
            SnapRecord::Node(id, v) => {
                let n: NodeRecord = dec(v, "node").map_err(|e| corrupt(e.to_string()))?;
                names.insert(*id, n.name);
            }
            SnapRecord::Meta(k, v) if k == K_CLUSTER => {
                let c: ClusterMeta = dec(v, K_CLUSTER).map_err(|e| corrupt(e.to_string()))?;
                cluster_id = Some(c.init.cluster_id);
            }
            _ => {}
        }
        Ok(())
    })?;
    counts.remove("meta");
    for t in [
        "kv",
        "nodes",
        "tokens",
        "sessions",
        "audit",
        "health",
        "blueprints",
        "blueprint_versions",
        "assignments",
        "instances",
        "decisions",
        "rollouts",
    ] {
        counts.entry(t.into()).or_default();
    }
    let m = head.membership.membership();
    let voters: std::collections::BTreeSet<NodeId> = m.voter_ids().collect();
    let members = m
        .nodes()
        .map(|(id, node)| BackupMember {
            id: *id,
            name: names.get(id).cloned().unwrap_or_default(),
            addr: node.addr.clone(),
            voter: voters.contains(id),
        })
        .collect();
    Ok(BackupInfo {
        format: BACKUP_FORMAT,
        snapshot_format,
        cluster_id,
        index: head.last_log_id.map(|l| l.index),
        term: head.last_log_id.map(|l| l.leader_id.term),
        members,
        node: head.node,
        taken_at: head.taken_at,
        counts,
        size,
        sha256: hex::encode(sha),
    })
}

/// Open the backup file at `path` with its size.
fn open(path: &Path) -> Result<(std::fs::File, u64), BackupError> {
    let read_err = |e: std::io::Error| BackupError::Read {
        path: path.into(),
        source: e,
    };
    let f = std::fs::File::open(path).map_err(read_err)?;
    let size = f.metadata().map_err(read_err)?.len();
    Ok((f, size))
}

/// Verify the backup file at `path` and describe it (offline: no node involved).
pub fn inspect(path: &Path) -> Result<BackupInfo, BackupError> {
    let (mut f, size) = open(path)?;
    inspect_reader(path, &mut f, size)
}

/// Build a new cluster's store in `dir` from the backup at `path`: `raft.redb` with the
/// replicated tables but those of [`DROPPED_TABLES`] and the old cluster record, and an audit
/// record of the restore. Started with `aether node --data-dir DIR`, the node creates a new
/// cluster (a new id and CA, itself the only voter) over this state, as a first start does.
/// Refused, with `dir` left as it was, when `dir` already holds a store or the file does not
/// verify.
pub fn restore(path: &Path, dir: &Path) -> Result<RestoredView, BackupError> {
    for f in ["raft.redb", "identity.json", "tls"] {
        if dir.join(f).exists() {
            return Err(BackupError::DirInUse {
                dir: dir.into(),
                found: dir.join(f).display().to_string(),
            });
        }
    }
    let info = inspect(path)?;
    // Built aside, in a sibling dir on the same filesystem, and moved into place whole: a
    // failure or a crash part way leaves `dir` as it was (at most the sibling stays behind).
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "aether".into());
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let aside = parent.join(format!(".{name}.restoring-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&aside);
    let result = restore_into(path, &aside, &info).and_then(|mut view| {
        move_into_place(&aside, dir)?;
        view.data_dir = dir.into();
        Ok(view)
    });
    if let Err(e) = &result {
        tracing::debug!("restore into '{}' failed: {e}", dir.display());
    }
    let _ = std::fs::remove_dir_all(&aside);
    result
}

/// Move the store built in `aside` to `dir`: the whole dir when `dir` does not exist, else its
/// log folder and then its `raft.redb` (the last rename makes it a store: until then `dir`
/// holds no `raft.redb`, and a node started on it replaces the restored log, which is empty,
/// as it does any empty log found without one).
fn move_into_place(aside: &Path, dir: &Path) -> Result<(), BackupError> {
    let failed = |e: std::io::Error| BackupError::Write {
        dir: dir.into(),
        message: e.to_string(),
    };
    if !dir.exists() {
        std::fs::rename(aside, dir).map_err(failed)?;
    } else {
        let target = dir.join("raft.redb");
        if target.exists() {
            return Err(BackupError::DirInUse {
                dir: dir.into(),
                found: target.display().to_string(),
            });
        }
        let log = dir.join(super::wal::WAL_DIR);
        if log.exists() {
            std::fs::remove_dir_all(&log).map_err(failed)?;
        }
        std::fs::rename(aside.join(super::wal::WAL_DIR), &log).map_err(failed)?;
        std::fs::rename(aside.join("raft.redb"), &target).map_err(failed)?;
    }
    // The rename is durable once the dirs holding it are.
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
    for d in std::iter::once(dir).chain(parent) {
        std::fs::File::open(d)
            .and_then(|d| d.sync_all())
            .map_err(failed)?;
    }
    Ok(())
}

fn restore_into(path: &Path, dir: &Path, info: &BackupInfo) -> Result<RestoredView, BackupError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let failed = |e: &dyn std::fmt::Display| BackupError::Write {
        dir: dir.into(),
        message: e.to_string(),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| failed(&e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| failed(&e))?;
    let store = Store::open(dir).map_err(|e| failed(&e))?;
    let (mut f, size) = open(path)?;
    let mut kept: BTreeMap<String, u64> = BTreeMap::new();
    let txn = store.db.begin_write().map_err(|e| failed(&e))?;
    {
        let mut sm = txn.open_table(SM_META).map_err(|e| failed(&e))?;
        let mut kv = txn.open_table(KV).map_err(|e| failed(&e))?;
        let mut audit = txn.open_table(AUDIT).map_err(|e| failed(&e))?;
        let mut blueprints = txn.open_table(BLUEPRINTS).map_err(|e| failed(&e))?;
        let mut decisions = txn.open_table(DECISIONS).map_err(|e| failed(&e))?;
        let mut versions = txn.open_table(BLUEPRINT_VERSIONS).map_err(|e| failed(&e))?;
        let mut rollouts = txn.open_table(ROLLOUTS).map_err(|e| failed(&e))?;
        let mut open_rollouts = txn.open_table(ROLLOUTS_OPEN).map_err(|e| failed(&e))?;
        read_backup(path, &mut f, size, |rec| {
            let table = table_of(&rec);
            let r = match rec {
                // A new cluster record is written at the first start (new id, new CA).
                SnapRecord::Meta(k, _) if k == K_CLUSTER => return Ok(()),
                SnapRecord::Meta(k, v) => sm.insert(k.as_str(), v.as_slice()).map(|_| ()),
                SnapRecord::Kv(k, v) => kv.insert(k.as_str(), v.as_slice()).map(|_| ()),
                SnapRecord::Audit(k, v) => audit.insert(k, v.as_slice()).map(|_| ()),
                SnapRecord::Blueprint(k, v) => {
                    blueprints.insert(k.as_str(), v.as_slice()).map(|_| ())
                }
                SnapRecord::Decision(k, v) => decisions.insert(k, v.as_slice()).map(|_| ()),
                SnapRecord::BlueprintVersion(k, v) => {
                    versions.insert(k.as_str(), v.as_slice()).map(|_| ())
                }
                SnapRecord::Rollout(k, v) => {
                    let open = dec::<crate::domain::Rollout>(&v, "rollout")
                        .map_err(|e| failed(&e))?
                        .state
                        .is_open();
                    if open {
                        open_rollouts
                            .insert(k, [].as_slice())
                            .map_err(|e| failed(&e))?;
                    }
                    rollouts.insert(k, v.as_slice()).map(|_| ())
                }
                _ => return Ok(()),
            };
            r.map_err(|e| failed(&e))?;
            if table != "meta" {
                *kept.entry(table.into()).or_default() += 1;
            }
            Ok(())
        })?;
        // The audit trail says where this cluster's state came from.
        let seq = sm
            .get(K_AUDIT_SEQ)
            .map_err(|e| failed(&e))?
            .map(|v| dec::<u64>(v.value(), K_AUDIT_SEQ))
            .transpose()
            .map_err(|e| failed(&e))?
            .unwrap_or(0)
            + 1;
        let rec = AuditRecord {
            seq,
            at: now_millis(),
            actor: "aether snapshot restore".into(),
            what: format!(
                "restore of cluster '{}' at index {} (term {}) from '{}' (sha256 {})",
                info.cluster_id.as_deref().unwrap_or("-"),
                info.index.unwrap_or(0),
                info.term.unwrap_or(0),
                path.display(),
                info.sha256
            ),
            outcome: "ok".into(),
        };
        audit
            .insert(seq, enc(&rec).as_slice())
            .map_err(|e| failed(&e))?;
        sm.insert(K_AUDIT_SEQ, enc(&seq).as_slice())
            .map_err(|e| failed(&e))?;
    }
    txn.commit().map_err(|e| failed(&e))?;
    store.set_restore_unsealed(true).map_err(|e| failed(&e))?;
    // Not opened by openraft yet: no log, no vote, no membership: the first start initialises.
    let untouched = store
        .db
        .begin_read()
        .map_err(|e| failed(&e))
        .and_then(|t| applied_state(&t).map_err(|e| failed(&e)))?;
    debug_assert!(untouched.0.is_none());
    close(store);
    Ok(RestoredView {
        data_dir: dir.into(),
        from_cluster_id: info.cluster_id.clone(),
        index: info.index,
        term: info.term,
        kept,
        dropped: DROPPED_TABLES.iter().map(|s| s.to_string()).collect(),
    })
}

/// Drop the only handle on `store` and wait (briefly) until its log writer thread has let go
/// of the database too, so the file can be opened again at once (by `aether node`, a test).
fn close(store: std::sync::Arc<Store>) {
    let db = store.db.clone();
    drop(store);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::sync::Arc::strong_count(&db) > 1 && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    /// A backup of a fresh store holding `kv` pairs, in memory.
    fn backup(kv: &[(&str, &str)]) -> (tempfile::TempDir, Vec<u8>, BackupSummary) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let txn = store.db.begin_write().unwrap();
        {
            let mut t = txn.open_table(KV).unwrap();
            for (k, v) in kv {
                t.insert(*k, v.as_bytes()).unwrap();
            }
        }
        txn.commit().unwrap();
        let mut out = Vec::new();
        let sum = store.write_backup(&mut out, "n1").unwrap();
        (dir, out, sum)
    }

    fn inspect_bytes(b: &[u8]) -> Result<BackupInfo, BackupError> {
        inspect_reader(Path::new("f.snap"), &mut Cursor::new(b), b.len() as u64)
    }

    #[test]
    fn a_backup_verifies_and_counts_its_records() {
        let (_d, b, sum) = backup(&[("a", "1"), ("b", "2")]);
        assert_eq!(sum.size, b.len() as u64);
        let info = inspect_bytes(&b).unwrap();
        assert_eq!(info.counts["kv"], 2);
        assert_eq!(info.counts["tokens"], 0);
        assert_eq!(info.sha256, sum.sha256);
        assert_eq!(info.format, BACKUP_FORMAT);
        assert_eq!(info.snapshot_format, SNAPSHOT_FORMAT);
        assert_eq!(info.node, "n1");
        assert_eq!(&b[..8], BACKUP_MAGIC);
        assert_eq!(&b[b.len() - 48..b.len() - 40], TRAILER_MAGIC);
    }

    #[test]
    fn a_flipped_bit_anywhere_is_refused() {
        let (_d, b, _) = backup(&[("a", "1")]);
        // In the body: the checksum; in the trailer's hash: the checksum; in its length: the
        // length; in the magic or format: those.
        for (at, expect) in [
            (20, "checksum mismatch"),
            (b.len() - 10, "checksum mismatch"),
            (b.len() - 35, "bytes (its trailer), found"),
            (b.len() - 45, "truncated"),
            (2, "not an aether snapshot file"),
            (11, "backup format '0'"),
        ] {
            let mut c = b.clone();
            c[at] ^= 1;
            let e = inspect_bytes(&c).unwrap_err().to_string();
            assert!(
                e.contains(expect),
                "bit at {at}: expected '{expect}' in: {e}"
            );
        }
    }

    #[test]
    fn a_truncated_file_is_refused_naming_what_is_missing() {
        let (_d, b, _) = backup(&[("a", "1")]);
        for cut in [b.len() - 1, b.len() - 48, b.len() / 2, 13, 5, 0] {
            let e = inspect_bytes(&b[..cut]).unwrap_err();
            assert!(
                matches!(e, BackupError::Truncated { .. }),
                "cut at {cut}: {e}"
            );
        }
        let e = inspect_bytes(&b[..b.len() - 1]).unwrap_err().to_string();
        assert!(e.contains("no checksum trailer"), "{e}");
    }

    #[test]
    fn a_newer_format_is_refused_naming_both_versions() {
        let (_d, mut b, _) = backup(&[]);
        b[8..12].copy_from_slice(&99u32.to_be_bytes());
        let e = inspect_bytes(&b).unwrap_err().to_string();
        assert!(
            e.contains("backup format '99'") && e.contains("format '1'") && e.contains("newer"),
            "{e}"
        );
    }

    #[test]
    fn a_record_count_that_does_not_match_is_corrupt_even_with_a_good_checksum() {
        let (_d, b, _) = backup(&[("a", "1")]);
        // Rebuild the file without its last record before End (and a fresh trailer).
        let body = &b[..b.len() - TRAILER_LEN as usize];
        let mut r = Cursor::new(body);
        r.set_position(PREFIX_LEN);
        let mut len = [0u8; 4];
        r.read_exact(&mut len).unwrap();
        r.set_position(r.position() + u32::from_be_bytes(len) as u64);
        let mut cuts = Vec::new();
        while (r.position() as usize) < body.len() {
            cuts.push(r.position() as usize);
            read_record(&mut r).unwrap();
        }
        // cuts: Header, …, the kv record, End.
        let kv_at = cuts[cuts.len() - 2];
        let end_at = cuts[cuts.len() - 1];
        let mut forged = body[..kv_at].to_vec();
        forged.extend_from_slice(&body[end_at..]);
        let sha = <[u8; 32]>::from(Sha256::digest(&forged));
        let len = forged.len() as u64;
        forged.extend_from_slice(&trailer(len, &sha));
        let e = inspect_bytes(&forged).unwrap_err().to_string();
        assert!(
            e.contains("end says") && e.contains("records, found"),
            "{e}"
        );
    }

    #[test]
    fn restore_keeps_the_state_drops_the_members_and_refuses_a_used_dir() {
        let (_d, b, _) = backup(&[("a", "1")]);
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("b.snap");
        std::fs::write(&file, &b).unwrap();
        let dir = tmp.path().join("new");
        let v = restore(&file, &dir).unwrap();
        assert_eq!(v.kept["kv"], 1);
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.kv_get("a").unwrap(), Some(b"1".to_vec()));
        assert!(store.cluster().unwrap().is_none(), "a new cluster record");
        let audit = store.audit(10).unwrap();
        assert!(
            audit
                .iter()
                .any(|a| a.what.starts_with("restore of cluster"))
        );
        drop(store);
        let e = restore(&file, &dir).unwrap_err();
        assert!(matches!(e, BackupError::DirInUse { .. }), "{e}");
        assert!(e.to_string().contains("already holds a store"), "{e}");

        // A corrupt file: the dir is not created.
        let mut c = b.clone();
        c[30] ^= 0x40;
        std::fs::write(&file, &c).unwrap();
        let fresh = tmp.path().join("fresh");
        assert!(matches!(
            restore(&file, &fresh).unwrap_err(),
            BackupError::Checksum { .. }
        ));
        assert!(!fresh.exists());
    }
}
