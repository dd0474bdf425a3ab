//! The node's store in `<data-dir>`: the Raft log (entries, vote, committed and purged ids) in
//! the write-ahead log `raft-log/` (see [`super::wal`]), and the state machine and snapshot
//! metadata in the redb file `raft.redb`. Snapshot data lives in `snapshots/<id>.snap`.
//!
//! Durability: votes, appends, truncates and purges are on disk (one write and one fdatasync
//! for everything queued: group commit) before openraft is told. State-machine applies commit
//! with `Durability::None`: redb makes such a commit durable with the next durable one. The
//! two media are kept in step by one rule: before the log is purged up to X, a durable redb
//! commit makes every applied entry (so X) durable in the state machine, so no applied entry
//! can be lost from both. After a crash openraft re-applies from the last durable applied id.

use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{LogId, RaftLogReader, StorageError, StorageIOError, Vote};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::wal::{Done, WAL_DIR, Wal};
use super::{Entry, TypeConfig};
use crate::domain::NodeId;

// Every table of raft.redb, declared once.
/// The log of formats up to 4 (read by the migration to format 5, which moves it to the
/// write-ahead log and deletes it).
pub(super) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
pub(super) const RAFT_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
pub(super) const SM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");
pub(super) const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
pub(super) const NODES: TableDefinition<u64, &[u8]> = TableDefinition::new("nodes");
pub(super) const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
pub(super) const SESSIONS: TableDefinition<u128, &[u8]> = TableDefinition::new("sessions");
pub(super) const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// Node id → [`crate::domain::Health`] as the leader's metrics liveness last recorded it.
pub(super) const HEALTH: TableDefinition<u64, &[u8]> = TableDefinition::new("health");
/// Blueprint name → [`crate::domain::StoredBlueprint`].
pub(super) const BLUEPRINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("blueprints");
/// Instance key (`blueprint/slice/index`) → `Assignment`.
pub(super) const ASSIGNMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("assignments");
/// `<instance>@<node id>` → `InstanceStatus`.
pub(super) const INSTANCES: TableDefinition<&str, &[u8]> = TableDefinition::new("instances");
/// Controller decisions by id (`d-<id>`).
pub(super) const DECISIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("decisions");
/// `<blueprint>@<version, 12 digits>` → `StoredBlueprint`: the versions copies may still run
/// and an undo may go back to.
pub(super) const BLUEPRINT_VERSIONS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("blueprint_versions");
/// Rollouts by id (`r-<id>`).
pub(super) const ROLLOUTS: TableDefinition<u64, &[u8]> = TableDefinition::new("rollouts");
/// The ids of the open rollouts (an index of ROLLOUTS, kept with it and rebuilt from it when a
/// snapshot is installed): the loops read these every round, not the whole history.
pub(super) const ROLLOUTS_OPEN: TableDefinition<u64, &[u8]> = TableDefinition::new("rollouts_open");
/// Operator name → [`crate::domain::OperatorRecord`]: the certificate each remote operator may
/// use, its role, expiry and revocation.
pub(super) const OPERATORS: TableDefinition<&str, &[u8]> = TableDefinition::new("operators");
/// Node id → [`crate::domain::SpotNotice`]: what a cloud announced about that node's machine
/// (an interruption with its deadline, or a rebalance recommendation); absent when nothing.
pub(super) const SPOT_NOTICES: TableDefinition<u64, &[u8]> = TableDefinition::new("spot_notices");
/// Node id → [`crate::domain::PowerRecord`]: where each node that ever slept stands in sleep
/// and wake, and its last measured wake time.
pub(super) const POWER: TableDefinition<u64, &[u8]> = TableDefinition::new("power");
/// `<blueprint>/<slice>` → [`crate::domain::FlexibleRecord`]: the flexible slices of the
/// stored blueprints, held until the controller starts them.
pub(super) const FLEXIBLE: TableDefinition<&str, &[u8]> = TableDefinition::new("flexible");

/// The encoding of every record in `raft.redb` and of the log's commands. Bumped whenever one
/// changes, with a row in [`OLDER_FORMATS`] that migrates the format before it; a binary
/// refuses a store it cannot migrate rather than misread it (1: the first versioned format,
/// with blueprint versions, per-version assignments and rollouts; 2: slices carry a user; 0
/// and 1 were development builds only; 2 is the first released format; 3: the operators
/// table, and the log's operator commands; 4: the spot notices, power and flexible tables,
/// and their commands; 5: the log, vote, committed and purged ids move from raft.redb to the
/// write-ahead log `raft-log/`).
pub const STORE_FORMAT: u32 = 5;

/// One step from a format to the next, inside the write transaction of the open that
/// migrates: a failed step commits nothing.
pub(super) type Step = fn(&redb::WriteTransaction) -> Result<(), redb::Error>;

/// What this binary does with a store of a format before [`STORE_FORMAT`].
#[derive(Clone, Copy)]
pub(super) enum Older {
    /// Written by development builds only (never released): refused.
    Development,
    /// Rewritten into the next format by the step (the next format's row uses it).
    Migrate(Step),
}

/// Every format before [`STORE_FORMAT`], oldest first. To go from format N to N + 1: bump
/// [`STORE_FORMAT`], write `fn migrate_N_to_N1(txn)` and add the row `(N, Older::Migrate(…))`;
/// `tests/store_upgrade.rs` opens the committed format-2 store with this binary.
pub(super) const OLDER_FORMATS: &[(u32, Older)] = &[
    (0, Older::Development),
    (1, Older::Development),
    (2, Older::Migrate(migrate_2_to_3)),
    (3, Older::Migrate(migrate_3_to_4)),
    (4, Older::Migrate(migrate_4_to_5)),
];

/// Format 2 → 3: the operators table appears, empty (no record of format 2 changes).
fn migrate_2_to_3(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(OPERATORS)?;
    Ok(())
}

/// Format 3 → 4: the spot notices, power and flexible tables appear, empty (no record of
/// format 3 changes).
fn migrate_3_to_4(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(SPOT_NOTICES)?;
    txn.open_table(POWER)?;
    txn.open_table(FLEXIBLE)?;
    Ok(())
}

/// Format 4 → 5: the log rows and the vote, committed and purged ids leave raft.redb. They
/// were copied to the write-ahead log, and made durable there, before this step runs (see
/// [`open_log`]); this step deletes them in the commit that records format 5, so a crash
/// before that commit leaves format 4 whole and the next start copies them again.
fn migrate_4_to_5(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    txn.delete_table(LOG)?;
    let mut meta = txn.open_table(RAFT_META)?;
    for k in [K_VOTE, K_COMMITTED, K_PURGED] {
        meta.remove(k)?;
    }
    Ok(())
}

/// Whether this binary opens a store of `format`: its own, or one its migrations lead from.
pub fn reads_format(format: u32) -> bool {
    plan(Path::new(""), format, STORE_FORMAT, OLDER_FORMATS).is_ok()
}

/// The steps from `found` to `want`, or why a store of `found` is refused.
fn plan(
    path: &Path,
    found: u32,
    want: u32,
    table: &[(u32, Older)],
) -> Result<Vec<Step>, StoreError> {
    if found > want {
        return Err(StoreError::Newer {
            path: path.into(),
            found,
            want,
        });
    }
    let mut steps = Vec::new();
    for from in found..want {
        match table.iter().find(|(f, _)| *f == from).map(|(_, o)| *o) {
            Some(Older::Migrate(step)) => steps.push(step),
            // A format bump without its row (`every_older_format_has_a_row` catches it).
            None => {
                return Err(StoreError::Migration {
                    path: path.into(),
                    from,
                    to: want,
                    message: format!("this aether knows no step from format '{from}'"),
                });
            }
            Some(Older::Development) => {
                return Err(StoreError::Development {
                    path: path.into(),
                    found,
                    note: if found == 0 {
                        ", from before formats were recorded"
                    } else {
                        ""
                    },
                    want,
                });
            }
        }
    }
    Ok(steps)
}

/// Bring a store of format `from` to `want` with the steps of `table`, in one write transaction
/// that also records the new format: a step that fails leaves the store as it was.
pub(super) fn migrate(
    db: &Database,
    path: &Path,
    from: u32,
    want: u32,
    table: &[(u32, Older)],
) -> Result<(), StoreError> {
    let steps = plan(path, from, want, table)?;
    if steps.is_empty() {
        return Ok(());
    }
    let failed = |message: String| StoreError::Migration {
        path: path.into(),
        from,
        to: want,
        message,
    };
    let txn = db.begin_write().map_err(|e| failed(e.to_string()))?;
    for (i, step) in steps.iter().enumerate() {
        step(&txn).map_err(|e| failed(format!("step from format '{}': {e}", from + i as u32)))?;
    }
    txn.open_table(RAFT_META)
        .map_err(redb::Error::from)
        .and_then(|mut m| {
            m.insert(K_FORMAT, enc(&want).as_slice())?;
            Ok(())
        })
        .map_err(|e| failed(e.to_string()))?;
    txn.commit().map_err(|e| failed(e.to_string()))?;
    tracing::info!(
        "migrated raft store '{}' from format {from} to {want}",
        path.display()
    );
    Ok(())
}

// Keys of RAFT_META (the vote, committed and purged ids only up to format 4).
const K_VOTE: &str = "vote";
/// The store's [`STORE_FORMAT`] (in RAFT_META, which a snapshot install leaves alone).
const K_FORMAT: &str = "format";
const K_COMMITTED: &str = "committed";
const K_PURGED: &str = "last_purged";
/// Set by `aether snapshot restore`: the state machine holds state no log entry or snapshot
/// carries yet. Until the first leader has taken a snapshot and purged the log up to it (so a
/// joining node installs that snapshot instead of replaying an empty history), joins wait.
const K_RESTORED: &str = "restored";

/// Storage errors before openraft is involved (opening the file).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot open raft store '{path}': {message}; if another aether node uses this data dir, stop it or pick another --data-dir"
    )]
    Open { path: PathBuf, message: String },
    #[error("raft store '{path}': {message}")]
    Io { path: PathBuf, message: String },
    #[error(
        "cannot open the raft log '{path}': {message}; a damaged record that is not the last write cannot be repaired here: restore this node from a backup or remove its data dir and join it again"
    )]
    Log { path: PathBuf, message: String },
    #[error(
        "raft log '{log}' holds a vote or entries but its store '{path}' is missing or new; starting would forget this node's vote: put back the raft.redb that belongs to it, or remove the whole data dir and join the node again"
    )]
    StoreMissing { path: PathBuf, log: PathBuf },
    #[error(
        "raft store '{path}' is in format '{format}' but its log '{log}' is missing; the vote and log of this node are lost: remove its data dir and join it again"
    )]
    LogMissing {
        path: PathBuf,
        format: u32,
        log: PathBuf,
    },
    #[error(
        "raft store '{path}' is in format '{found}'{note}, and this aether reads format '{want}': this data dir was written by a development build before format 2; start from a fresh data dir or run the aether that wrote it"
    )]
    Development {
        path: PathBuf,
        found: u32,
        /// What else is known of the format (`", from before formats were recorded"`).
        note: &'static str,
        want: u32,
    },
    #[error(
        "raft store '{path}' was written by a newer aether (format '{found}'); this aether reads format '{want}': install that version or newer"
    )]
    Newer {
        path: PathBuf,
        found: u32,
        want: u32,
    },
    #[error(
        "cannot migrate raft store '{path}' from format '{from}' to '{to}': {message}; the store is unchanged: run the aether that wrote it until this is fixed"
    )]
    Migration {
        path: PathBuf,
        from: u32,
        to: u32,
        message: String,
    },
}

/// Shared handle on the store; the log storage, the state machine and readers hold one each.
pub struct Store {
    pub(super) db: Arc<Database>,
    pub(crate) dir: PathBuf,
    /// The Raft log (entries, vote, committed and purged ids).
    wal: Wal,
    /// Last committed log id as openraft reported it (also persisted, lazily).
    committed: Mutex<Option<LogId<NodeId>>>,
    /// Index of the last applied entry; views wait on it.
    pub(super) applied_tx: watch::Sender<u64>,
    /// Bumped when applied entries may change what runs where (see
    /// `Command::touches_workloads`) and on snapshot install.
    pub(super) workloads_tx: watch::Sender<u64>,
    /// Path of a snapshot being received.
    pub(super) receiving: Mutex<Option<PathBuf>>,
}

pub(super) fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).expect("in-memory values always encode")
}

pub(super) fn dec<T: DeserializeOwned>(b: &[u8], what: &str) -> Result<T, std::io::Error> {
    postcard::from_bytes(b).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("corrupt {what} in raft.redb: {e}"),
        )
    })
}

/// Run blocking storage work off the async runtime.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, std::io::Error> + Send + 'static,
) -> Result<T, std::io::Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(std::io::Error::other)?
}

/// Run short storage work in place: redb reads and non-durable commits take microseconds, less
/// than handing them to another thread.
pub(super) fn inline<T>(
    f: impl FnOnce() -> Result<T, std::io::Error>,
) -> Result<T, std::io::Error> {
    f()
}

pub(super) fn io<E: std::fmt::Display>(e: E) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl Store {
    /// Open (or create) `<dir>/raft.redb` and `<dir>/snapshots/` with the default cache.
    pub fn open(dir: &Path) -> Result<Arc<Store>, StoreError> {
        Store::open_with_cache(dir, 32 << 20)
    }

    /// Open with a page cache of `cache_bytes`.
    pub fn open_with_cache(dir: &Path, cache_bytes: usize) -> Result<Arc<Store>, StoreError> {
        let path = dir.join("raft.redb");
        precheck(&path)?;
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(&path)
            .map_err(|e| StoreError::Open {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let wal = open_log(&db, &path, &dir.join(WAL_DIR))?;
        let snaps = dir.join("snapshots");
        std::fs::create_dir_all(&snaps).map_err(|e| StoreError::Io {
            path: snaps.clone(),
            message: e.to_string(),
        })?;
        let db = Arc::new(db);
        let store = Arc::new(Store {
            db,
            wal,
            dir: dir.to_path_buf(),
            committed: Mutex::new(None),
            applied_tx: watch::channel(0).0,
            workloads_tx: watch::channel(0).0,
            receiving: Mutex::new(None),
        });
        // Create every table so readers never meet a missing one.
        let init = || -> Result<(), redb::Error> {
            let txn = store.db.begin_write()?;
            txn.open_table(RAFT_META)?;
            txn.open_table(SM_META)?;
            txn.open_table(KV)?;
            txn.open_table(NODES)?;
            txn.open_table(TOKENS)?;
            txn.open_table(SESSIONS)?;
            txn.open_table(AUDIT)?;
            txn.open_table(HEALTH)?;
            txn.open_table(BLUEPRINTS)?;
            txn.open_table(ASSIGNMENTS)?;
            txn.open_table(INSTANCES)?;
            txn.open_table(DECISIONS)?;
            txn.open_table(BLUEPRINT_VERSIONS)?;
            txn.open_table(ROLLOUTS)?;
            txn.open_table(ROLLOUTS_OPEN)?;
            txn.open_table(OPERATORS)?;
            txn.open_table(SPOT_NOTICES)?;
            txn.open_table(POWER)?;
            txn.open_table(FLEXIBLE)?;
            txn.commit()?;
            Ok(())
        };
        init().map_err(|e| StoreError::Io {
            path: path.clone(),
            message: e.to_string(),
        })?;
        *store.committed.lock().expect("lock") = store.wal.state().committed;
        let applied = store.applied_log_id().map_err(|e| StoreError::Io {
            path,
            message: e.to_string(),
        })?;
        store
            .applied_tx
            .send_replace(applied.map(|l| l.index).unwrap_or(0));
        store.refresh_old_snapshot().map_err(|e| StoreError::Io {
            path: dir.join("snapshots"),
            message: format!("cannot rebuild the snapshot of an older format: {e}"),
        })?;
        Ok(store)
    }

    /// Snapshot folder.
    pub(super) fn snap_dir(&self) -> PathBuf {
        self.dir.join("snapshots")
    }

    pub(super) fn read_meta<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<T>, std::io::Error> {
        let txn = self.db.begin_read().map_err(io)?;
        let t = txn.open_table(table).map_err(io)?;
        match t.get(key).map_err(io)? {
            Some(v) => Ok(Some(dec(v.value(), key)?)),
            None => Ok(None),
        }
    }

    /// Last committed log index known to this node.
    pub fn committed_index(&self) -> Option<u64> {
        self.committed.lock().expect("lock").map(|l| l.index)
    }

    /// Wakes when applied entries may change what runs where (members, blueprints,
    /// assignments, instance states) and on snapshot install; kv writes do not wake it.
    pub fn subscribe_workloads(&self) -> watch::Receiver<u64> {
        self.workloads_tx.subscribe()
    }

    /// Wakes whenever entries are applied (the console's live feed).
    pub fn subscribe_applied(&self) -> watch::Receiver<u64> {
        self.applied_tx.subscribe()
    }

    /// Last applied log index.
    pub fn applied_index(&self) -> u64 {
        *self.applied_tx.borrow()
    }

    /// Whether this store was restored from a backup and no snapshot carries that state yet.
    pub fn restore_unsealed(&self) -> Result<bool, std::io::Error> {
        Ok(self
            .read_meta::<bool>(RAFT_META, K_RESTORED)?
            .unwrap_or(false))
    }

    /// Mark the store as restored (`aether snapshot restore`) or, with `false`, the restored
    /// state as carried by a snapshot. Durable before it returns.
    pub fn set_restore_unsealed(&self, unsealed: bool) -> Result<(), std::io::Error> {
        let txn = self.db.begin_write().map_err(io)?;
        {
            let mut meta = txn.open_table(RAFT_META).map_err(io)?;
            if unsealed {
                meta.insert(K_RESTORED, enc(&true).as_slice()).map_err(io)?;
            } else {
                meta.remove(K_RESTORED).map_err(io)?;
            }
        }
        txn.commit().map_err(io)
    }

    /// Entries in `range` (from memory where the log still holds them).
    fn read_entries(&self, range: (Bound<u64>, Bound<u64>)) -> Result<Vec<Entry>, std::io::Error> {
        self.wal.read(range)
    }

    /// The id of the last entry in the log (flushed or not), or of the last purged one.
    pub(super) fn last_log_id(&self) -> Result<Option<LogId<NodeId>>, std::io::Error> {
        Ok(self.log_state()?.last_log_id)
    }

    fn log_state(&self) -> Result<LogState<TypeConfig>, std::io::Error> {
        let s = self.wal.state();
        Ok(LogState {
            last_purged_log_id: s.purged,
            last_log_id: s.last.or(s.purged),
        })
    }

    /// Make every state-machine commit so far durable (the applies commit without an fsync).
    fn sync_state_machine(&self) -> Result<(), std::io::Error> {
        let txn = self.db.begin_write().map_err(io)?;
        // A commit that writes something, so that redb does not skip it.
        txn.open_table(RAFT_META)
            .map_err(io)?
            .insert(K_FORMAT, enc(&STORE_FORMAT).as_slice())
            .map_err(io)?;
        txn.commit().map_err(io)
    }
}

/// What `raft.redb` says of its format.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    /// Nothing recorded and nothing written: a new store.
    Fresh,
    /// This format; 0 when written before formats were recorded.
    Format(u32),
}

fn read_format(db: &impl ReadableDatabase) -> Result<Found, redb::Error> {
    let txn = db.begin_read()?;
    let meta = match txn.open_table(RAFT_META) {
        Ok(t) => Some(t),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(m) = &meta
        && let Some(v) = m.get(K_FORMAT)?
    {
        // A format that does not decode was not written by any aether we know: newer.
        return Ok(Found::Format(
            postcard::from_bytes(v.value()).unwrap_or(u32::MAX),
        ));
    }
    let voted = match &meta {
        Some(m) => m.get(K_VOTE)?.is_some(),
        None => false,
    };
    let logged = match txn.open_table(LOG) {
        Ok(t) => t.first()?.is_some(),
        Err(redb::TableError::TableDoesNotExist(_)) => false,
        Err(e) => return Err(e.into()),
    };
    Ok(if voted || logged {
        Found::Format(0)
    } else {
        Found::Fresh
    })
}

/// Refuse a store this binary cannot read before opening it for writing, so that the refusal
/// leaves the file as it was. A file that needs recovery (after a crash) does not open
/// read-only; [`check_format`] checks it once the writable open has repaired it.
fn precheck(path: &Path) -> Result<(), StoreError> {
    if !path.exists() {
        return Ok(());
    }
    let Ok(ro) = redb::ReadOnlyDatabase::open(path) else {
        return Ok(());
    };
    match read_format(&ro) {
        Ok(Found::Format(f)) => plan(path, f, STORE_FORMAT, OLDER_FORMATS).map(|_| ()),
        _ => Ok(()),
    }
}

/// Open the log in `wal_dir` for the store `db` at `path`: stamp a new store with
/// [`STORE_FORMAT`] (a log left in the folder without a store is discarded); migrate an older
/// one it can read (copying the log out of raft.redb first, see [`migrate_4_to_5`]); refuse
/// the rest.
fn open_log(db: &Database, path: &Path, wal_dir: &Path) -> Result<Wal, StoreError> {
    let io_err = |e: &dyn std::fmt::Display| StoreError::Io {
        path: path.into(),
        message: e.to_string(),
    };
    let log_err = |e: std::io::Error| StoreError::Log {
        path: wal_dir.into(),
        message: e.to_string(),
    };
    let fresh_log = || -> Result<Wal, StoreError> {
        if wal_dir.exists() {
            std::fs::remove_dir_all(wal_dir).map_err(log_err)?;
        }
        Wal::open(wal_dir).map_err(log_err)
    };
    match read_format(db).map_err(|e| io_err(&e))? {
        Found::Fresh => {
            // A log left by a start that died before stamping the store holds nothing; one
            // that holds a vote or entries belongs to a store that is gone, and forgetting its
            // vote could let this node vote twice in a term.
            if wal_dir.exists() {
                let held = Wal::open(wal_dir).map_err(log_err)?.state();
                if held.vote.is_some() || held.last.is_some() || held.purged.is_some() {
                    return Err(StoreError::StoreMissing {
                        path: path.into(),
                        log: wal_dir.into(),
                    });
                }
            }
            let wal = fresh_log()?;
            let stamp = || -> Result<(), redb::Error> {
                let txn = db.begin_write()?;
                txn.open_table(RAFT_META)?
                    .insert(K_FORMAT, enc(&STORE_FORMAT).as_slice())?;
                txn.commit()?;
                Ok(())
            };
            stamp().map_err(|e| io_err(&e))?;
            Ok(wal)
        }
        Found::Format(f) if f >= STORE_FORMAT => {
            plan(path, f, STORE_FORMAT, OLDER_FORMATS)?;
            if !wal_dir.exists() {
                return Err(StoreError::LogMissing {
                    path: path.into(),
                    format: f,
                    log: wal_dir.into(),
                });
            }
            Wal::open(wal_dir).map_err(log_err)
        }
        Found::Format(f) => {
            // Refuse what cannot be migrated before writing anything.
            plan(path, f, STORE_FORMAT, OLDER_FORMATS)?;
            let failed = |message: String| StoreError::Migration {
                path: path.into(),
                from: f,
                to: STORE_FORMAT,
                message,
            };
            // A log left by a migration that did not finish is rebuilt from raft.redb.
            let wal = fresh_log()?;
            copy_log(db, &wal).map_err(|e| failed(format!("copying the log: {e}")))?;
            migrate(db, path, f, STORE_FORMAT, OLDER_FORMATS)?;
            Ok(wal)
        }
    }
}

/// Copy the log of a store of format 4 or before (rows of LOG, the vote, committed and purged
/// ids in RAFT_META) into `wal`, durable when this returns.
fn copy_log(db: &Database, wal: &Wal) -> Result<(), std::io::Error> {
    let txn = db.begin_read().map_err(io)?;
    let get = |meta: &redb::ReadOnlyTable<&str, &[u8]>,
               k: &str|
     -> Result<Option<Vec<u8>>, std::io::Error> {
        Ok(meta.get(k).map_err(io)?.map(|v| v.value().to_vec()))
    };
    let (vote, committed, purged) = match txn.open_table(RAFT_META) {
        Ok(meta) => (
            get(&meta, K_VOTE)?
                .map(|b| dec::<Vote<NodeId>>(&b, K_VOTE))
                .transpose()?,
            get(&meta, K_COMMITTED)?
                .map(|b| dec::<Option<LogId<NodeId>>>(&b, K_COMMITTED))
                .transpose()?
                .flatten(),
            get(&meta, K_PURGED)?
                .map(|b| dec::<Option<LogId<NodeId>>>(&b, K_PURGED))
                .transpose()?
                .flatten(),
        ),
        Err(redb::TableError::TableDoesNotExist(_)) => (None, None, None),
        Err(e) => return Err(io(e)),
    };
    let mut entries = Vec::new();
    match txn.open_table(LOG) {
        Ok(t) => {
            for row in t.iter().map_err(io)? {
                let (_, v) = row.map_err(io)?;
                entries.push(dec::<Entry>(v.value(), "log entry")?);
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(io(e)),
    }
    wal.import(vote, purged, entries, committed)?;
    wal.sync_blocking()
}

/// The log half of the store, handed to openraft.
#[derive(Clone)]
pub struct LogStore(pub Arc<Store>);

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let store = self.0.clone();
        let range = (range.start_bound().cloned(), range.end_bound().cloned());
        store
            .read_entries(range)
            .map_err(|e| StorageIOError::read_logs(&e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let store = self.0.clone();
        store
            .log_state()
            .map_err(|e| StorageIOError::read_logs(&e).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.0
            .wal
            .save_vote(*vote)
            .await
            .map_err(|e| fatal("saving the vote", e, |e| StorageIOError::write_vote(e)))
    }

    /// The vote is read back uncommitted (see [`restarted_vote`]).
    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.0.wal.state().vote.map(restarted_vote))
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        *self.0.committed.lock().expect("lock") = committed;
        // Not waited for: losing it only delays re-applying after a restart.
        self.0
            .wal
            .save_committed(committed)
            .map_err(|e| fatal("saving the committed id", e, |e| StorageIOError::write(e)))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.0.wal.state().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        // Readable at once (openraft's contract); durable when the log calls back.
        self.0
            .wal
            .append(entries.into_iter().collect(), Done::Flushed(callback))
            .map_err(|e| {
                fatal("appending log entries", e, |e| {
                    StorageIOError::write_logs(e)
                })
            })
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.0
            .wal
            .truncate(log_id.index)
            .await
            .map_err(|e| fatal("truncating the log", e, |e| StorageIOError::write_logs(e)))
    }

    /// Applied entries up to `log_id` are first made durable in the state machine, so that
    /// none is lost from both it and the log.
    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let store = self.0.clone();
        blocking(move || store.sync_state_machine())
            .await
            .map_err(|e| {
                fatal("making the state machine durable before a purge", e, |e| {
                    StorageIOError::write(e)
                })
            })?;
        self.0
            .wal
            .purge(log_id)
            .await
            .map_err(|e| fatal("purging the log", e, |e| StorageIOError::write_logs(e)))
    }
}

/// A failed write to the Raft store is fatal: log it loudly; openraft stops on the returned
/// error and the node exits non-zero (see `node::run`).
pub(super) fn fatal(
    doing: &str,
    e: std::io::Error,
    kind: impl FnOnce(&std::io::Error) -> StorageIOError<NodeId>,
) -> StorageError<NodeId> {
    tracing::error!(
        "raft store commit failed while {doing}: {e}; the node stops to protect the log (check the disk holding the data dir)"
    );
    kind(&e).into()
}

/// The vote a node starts with: the stored one, uncommitted. openraft 0.9 restores a node whose
/// stored vote is a committed vote for itself as the leader of that term at once, with the
/// commit index it last saved (saved lazily) and its term's first entry as the floor of its
/// linearizable reads, so a restarted leader could serve a read from before a write it had
/// acknowledged; and an entry that its followers committed before its own log flushed would be
/// missing from its log, and the same log id would be given to a new entry. Read back
/// uncommitted, the vote keeps its place in the order of leaders but the node starts as a
/// follower, and the cluster elects a leader of a new term whose first entry lies beyond
/// everything acknowledged before.
pub(super) fn restarted_vote(mut v: Vote<NodeId>) -> Vote<NodeId> {
    v.committed = false;
    v
}

#[cfg(test)]
mod vote_tests {
    use super::*;
    use openraft::storage::RaftLogStorage;

    #[tokio::test]
    async fn a_committed_vote_is_read_back_uncommitted_in_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut log = LogStore(store.clone());
        let mut committed = Vote::new(4, 2);
        committed.commit();
        log.save_vote(&committed).await.unwrap();
        let read = log.read_vote().await.unwrap().unwrap();
        assert!(!read.is_committed(), "{read:?}");
        assert_eq!(read.leader_id(), committed.leader_id());
        // It still orders below every later leader and above every earlier one.
        assert!(Vote::new(5, 1) > read);
        assert!(Vote::new(3, 3) < read);
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;

    /// A data dir whose `raft.redb` holds a vote and, when given, the format `format`.
    fn store_of(format: Option<u32>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("raft.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(RAFT_META).unwrap();
            meta.insert(K_VOTE, b"a vote".as_slice()).unwrap();
            if let Some(f) = format {
                meta.insert(K_FORMAT, enc(&f).as_slice()).unwrap();
            }
            txn.open_table(KV)
                .unwrap()
                .insert("k", b"v".as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
        dir
    }

    /// Open must fail with a message containing `says`, and leave the data dir as it was.
    fn refused(dir: &Path, says: &str) {
        let file = dir.join("raft.redb");
        let before = std::fs::read(&file).unwrap();
        let e = match Store::open(dir) {
            Ok(_) => panic!("a store that must be refused opened"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(says), "'{says}' missing from: {e}");
        assert!(
            std::fs::read(&file).unwrap() == before,
            "a refused open changes nothing on disk"
        );
        assert!(!dir.join("snapshots").exists(), "nor creates anything");
    }

    fn format_of(db: &Database) -> Found {
        read_format(db).unwrap()
    }

    #[test]
    fn a_new_store_is_stamped_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        // The log writer thread lets go of the file when it sees the store dropped.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let store = loop {
            match Store::open(dir.path()) {
                Ok(s) => break s,
                Err(e) if std::time::Instant::now() > deadline => {
                    panic!("the store does not reopen within 5 s: {e}")
                }
                Err(_) => std::thread::yield_now(),
            }
        };
        assert_eq!(format_of(&store.db), Found::Format(STORE_FORMAT));
    }

    #[test]
    fn development_formats_are_refused_with_the_remedy() {
        let unversioned = store_of(None);
        refused(
            unversioned.path(),
            &format!(
                "is in format '0', from before formats were recorded, and this aether reads format '{STORE_FORMAT}': this data dir was written by a development build before format 2; start from a fresh data dir or run the aether that wrote it"
            ),
        );
        let one = store_of(Some(1));
        refused(
            one.path(),
            &format!(
                "is in format '1', and this aether reads format '{STORE_FORMAT}': this data dir was written by a development build"
            ),
        );
    }

    #[test]
    fn a_newer_format_is_refused() {
        let newer = store_of(Some(STORE_FORMAT + 1));
        refused(
            newer.path(),
            &format!(
                "was written by a newer aether (format '{}'); this aether reads format '{STORE_FORMAT}': install that version or newer",
                STORE_FORMAT + 1
            ),
        );
    }

    #[test]
    fn every_older_format_has_a_row() {
        for f in 0..STORE_FORMAT {
            assert!(
                OLDER_FORMATS.iter().any(|(g, _)| *g == f),
                "format {f} has no row in OLDER_FORMATS: say whether it migrates or is refused"
            );
        }
        assert!(reads_format(STORE_FORMAT));
        assert!(!reads_format(1) && !reads_format(STORE_FORMAT + 1));
    }

    fn log_id(term: u64, index: u64) -> LogId<NodeId> {
        LogId::new(openraft::CommittedLeaderId::new(term, 1), index)
    }

    /// A data dir as format 4 left it: the log in raft.redb (purged up to 1, entries 2..=4,
    /// committed 3), and a `raft-log/` folder as a migration cut short might leave it.
    fn format_4_store() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("raft.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(RAFT_META).unwrap();
            meta.insert(K_FORMAT, enc(&4u32).as_slice()).unwrap();
            let mut vote = Vote::new(1, 1);
            vote.commit();
            meta.insert(K_VOTE, enc(&vote).as_slice()).unwrap();
            meta.insert(K_COMMITTED, enc(&Some(log_id(1, 3))).as_slice())
                .unwrap();
            meta.insert(K_PURGED, enc(&Some(log_id(1, 1))).as_slice())
                .unwrap();
            let mut log = txn.open_table(LOG).unwrap();
            for i in 2..=4 {
                let e = Entry {
                    log_id: log_id(1, i),
                    payload: openraft::EntryPayload::Blank,
                };
                log.insert(i, enc(&e).as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
        drop(db);
        let partial = Wal::open(&dir.path().join(WAL_DIR)).unwrap();
        partial.save_committed(None).unwrap();
        partial.save_vote_blocking_for_tests(Vote::new(9, 9));
        drop(partial);
        dir
    }

    #[test]
    fn format_4_moves_its_log_out_of_raft_redb() {
        let dir = format_4_store();
        let store = Store::open(dir.path()).unwrap();
        let check = |store: &Store| {
            let s = store.wal.state();
            assert_eq!(s.vote.map(|v| v.leader_id().term), Some(1), "{s:?}");
            assert_eq!(s.purged, Some(log_id(1, 1)));
            assert_eq!(s.last, Some(log_id(1, 4)));
            assert_eq!(s.committed, Some(log_id(1, 3)));
            let got: Vec<u64> = store
                .read_entries((Bound::Unbounded, Bound::Unbounded))
                .unwrap()
                .iter()
                .map(|e| e.log_id.index)
                .collect();
            assert_eq!(got, vec![2, 3, 4]);
            assert_eq!(format_of(&store.db), Found::Format(STORE_FORMAT));
            let txn = store.db.begin_read().unwrap();
            assert!(
                matches!(
                    txn.open_table(LOG),
                    Err(redb::TableError::TableDoesNotExist(_))
                ),
                "the old log rows are gone"
            );
            let meta = txn.open_table(RAFT_META).unwrap();
            for k in [K_VOTE, K_COMMITTED, K_PURGED] {
                assert!(meta.get(k).unwrap().is_none(), "{k} is gone");
            }
        };
        check(&store);
        assert_eq!(store.committed_index(), Some(3));
        drop(store);
        check(&Store::open(dir.path()).unwrap());
    }

    #[test]
    fn a_current_store_without_its_log_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        std::fs::remove_dir_all(dir.path().join(WAL_DIR)).unwrap();
        let e = Store::open(dir.path()).err().unwrap().to_string();
        assert!(
            e.contains("its log") && e.contains("is missing") && e.contains("join it again"),
            "{e}"
        );
    }

    #[test]
    fn a_log_that_holds_a_vote_is_not_dropped_for_a_missing_store() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.wal.save_vote_blocking_for_tests(Vote::new(3, 1));
        }
        std::fs::remove_file(dir.path().join("raft.redb")).unwrap();
        let e = Store::open(dir.path()).err().unwrap().to_string();
        assert!(
            e.contains("holds a vote or entries") && e.contains("join the node again"),
            "{e}"
        );
        // Refused before anything changed: the vote is still there.
        let wal = Wal::open(&dir.path().join(WAL_DIR)).unwrap();
        assert_eq!(wal.state().vote, Some(Vote::new(3, 1)));
    }

    #[test]
    fn an_empty_log_left_by_a_cut_short_first_start_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        drop(Wal::open(&dir.path().join(WAL_DIR)).unwrap());
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.wal.state(), Default::default());
    }

    /// A pretend format 3 whose records gain a mark: the shape of a real next migration.
    fn mark_kv(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
        txn.open_table(KV)?.insert("migrated", b"yes".as_slice())?;
        Ok(())
    }

    fn fail_after_writing(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
        mark_kv(txn)?;
        Err(redb::StorageError::Corrupted("pretend failure".into()).into())
    }

    #[test]
    fn a_migration_is_one_table_row_and_a_failed_one_changes_nothing() {
        let dir = store_of(Some(2));
        let path = dir.path().join("raft.redb");
        let db = Database::create(&path).unwrap();
        let get = |db: &Database, k: &str| {
            let txn = db.begin_read().unwrap();
            let t = txn.open_table(KV).unwrap();
            t.get(k).unwrap().map(|v| v.value().to_vec())
        };

        let broken = [
            (0, Older::Development),
            (1, Older::Development),
            (2, Older::Migrate(fail_after_writing)),
        ];
        let e = migrate(&db, &path, 2, 3, &broken).unwrap_err().to_string();
        assert!(
            e.contains("cannot migrate raft store")
                && e.contains("from format '2' to '3'")
                && e.contains("the store is unchanged"),
            "{e}"
        );
        assert_eq!(format_of(&db), Found::Format(2));
        assert_eq!(get(&db, "migrated"), None, "a failed step commits nothing");

        let table = [
            (0, Older::Development),
            (1, Older::Development),
            (2, Older::Migrate(mark_kv)),
        ];
        migrate(&db, &path, 2, 3, &table).unwrap();
        assert_eq!(format_of(&db), Found::Format(3));
        assert_eq!(get(&db, "migrated").as_deref(), Some(b"yes".as_slice()));
        assert_eq!(
            get(&db, "k").as_deref(),
            Some(b"v".as_slice()),
            "the rest stays"
        );
        let e = migrate(&db, &path, 1, 3, &table).unwrap_err().to_string();
        assert!(e.contains("development build"), "{e}");
    }
}
