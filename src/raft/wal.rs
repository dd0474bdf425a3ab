//! The Raft log of a node: `<data-dir>/raft-log/`, an append-only write-ahead log (the
//! `raft-log` crate: chunk files of checksummed records) holding the entries, the vote, the
//! last purged id and, lazily, the committed id.
//!
//! Every change is applied to the in-memory state at once (appended entries are readable at
//! once, as openraft requires) and queued for the flusher thread, which syncs everything
//! queued with one write and one `fdatasync` (group commit) and only then reports each change
//! done. A change that was never reported done may be lost in a crash; one that was is on disk.
//! After a failed sync every later change fails too: the node stops to protect the log.
//!
//! On open, a record cut short at the end of the last chunk (a write that never finished, so
//! was never acknowledged) is dropped; any other damaged record refuses the open.

use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use openraft::storage::LogFlushed;
use openraft::{LogId, Vote};
use raft_log::RaftLog;
use raft_log::api::raft_log_writer::RaftLogWriter;
use raft_log::codeq::{Decode, Encode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Entry, TypeConfig};
use crate::domain::NodeId;

/// The folder of the log inside a data dir.
pub const WAL_DIR: &str = "raft-log";

/// A chunk file is closed at this size; whole chunks are deleted once purged.
const CHUNK_MAX_BYTES: usize = 64 << 20;
/// Payloads kept in memory for replication and apply (the newest first).
const CACHE_MAX_ITEMS: usize = 16 * 1024;
const CACHE_MAX_BYTES: usize = 64 << 20;
/// Most queued changes answered by one sync.
const MAX_BATCH: usize = 4096;

/// The record types of the log (see `raft_log::Types`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct WalTypes;

/// A log id as the log stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct WalLogId(pub LogId<NodeId>);

/// A vote as the log stores it. Ordered by term alone: `raft-log` refuses a vote that orders
/// below the stored one, while openraft may save again, uncommitted, the committed vote it read
/// back (see `store::restarted_vote`); openraft itself never lets a term go backwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct WalVote(pub Vote<NodeId>);

impl PartialOrd for WalVote {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.0.leader_id.term.cmp(&other.0.leader_id.term))
    }
}

/// An entry, encoded (postcard) once when appended.
#[derive(Debug, Clone)]
pub(super) struct WalEntry(bytes::Bytes);

/// No user data is kept in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NoData;

fn put<W: io::Write, T: Serialize>(mut w: W, v: &T) -> Result<usize, io::Error> {
    let b = postcard::to_allocvec(v).map_err(io::Error::other)?;
    write_bytes(&mut w, &b)
}

fn write_bytes<W: io::Write>(mut w: W, b: &[u8]) -> Result<usize, io::Error> {
    let len = u32::try_from(b.len()).map_err(io::Error::other)?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(b)?;
    Ok(4 + b.len())
}

fn read_bytes<R: io::Read>(mut r: R) -> Result<Vec<u8>, io::Error> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let mut b = vec![0u8; u32::from_be_bytes(len) as usize];
    r.read_exact(&mut b)?;
    Ok(b)
}

fn get<R: io::Read, T: DeserializeOwned>(r: R, what: &str) -> Result<T, io::Error> {
    postcard::from_bytes(&read_bytes(r)?).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("corrupt {what} in the raft log: {e}"),
        )
    })
}

/// `Encode`/`Decode` of a wrapper as its inner value in postcard, length-prefixed.
macro_rules! postcard_codec {
    ($wrapper:ident, $what:literal) => {
        impl Encode for $wrapper {
            fn encode<W: io::Write>(&self, w: W) -> Result<usize, io::Error> {
                put(w, &self.0)
            }
        }
        impl Decode for $wrapper {
            fn decode<R: io::Read>(r: R) -> Result<Self, io::Error> {
                get(r, $what).map($wrapper)
            }
        }
    };
}
postcard_codec!(WalLogId, "log id");
postcard_codec!(WalVote, "vote");
impl Encode for WalEntry {
    fn encode<W: io::Write>(&self, w: W) -> Result<usize, io::Error> {
        write_bytes(w, &self.0)
    }
}
impl Decode for WalEntry {
    fn decode<R: io::Read>(r: R) -> Result<Self, io::Error> {
        read_bytes(r).map(|b| WalEntry(b.into()))
    }
}
impl Encode for NoData {
    fn encode<W: io::Write>(&self, _w: W) -> Result<usize, io::Error> {
        Ok(0)
    }
}
impl Decode for NoData {
    fn decode<R: io::Read>(_r: R) -> Result<Self, io::Error> {
        Ok(NoData)
    }
}

impl raft_log::Types for WalTypes {
    type LogId = WalLogId;
    type LogPayload = WalEntry;
    type Vote = WalVote;
    type Callback = mpsc::SyncSender<Result<(), io::Error>>;
    type UserData = NoData;

    fn log_index(log_id: &WalLogId) -> u64 {
        log_id.0.index
    }

    fn payload_size(payload: &WalEntry) -> u64 {
        payload.0.len() as u64
    }
}

/// What to tell once a change is on disk.
pub(super) enum Done {
    /// openraft's callback for appended entries.
    Flushed(LogFlushed<TypeConfig>),
    /// A waiting caller (vote, truncate, purge).
    Wait(tokio::sync::oneshot::Sender<Result<(), io::Error>>),
    /// A caller blocked off the async runtime.
    Block(mpsc::SyncSender<Result<(), io::Error>>),
}

impl Done {
    fn send(self, r: Result<(), io::Error>) {
        match self {
            Done::Flushed(cb) => cb.log_io_completed(r),
            Done::Wait(tx) => {
                let _ = tx.send(r);
            }
            Done::Block(tx) => {
                let _ = tx.send(r);
            }
        }
    }
}

struct Inner {
    log: RaftLog<WalTypes>,
    /// Number of changes made; the flusher syncs up to it.
    seq: u64,
}

/// The open log: changes in memory at once, on disk when their [`Done`] is told.
pub(super) struct Wal {
    inner: Arc<Mutex<Inner>>,
    queue: mpsc::Sender<(u64, Done)>,
    flusher: Option<std::thread::JoinHandle<()>>,
}

/// Dropping the log waits for the flusher to finish what was queued, so that the folder is
/// unlocked when the drop returns and a reopen succeeds at once.
impl Drop for Wal {
    fn drop(&mut self) {
        drop(std::mem::replace(&mut self.queue, mpsc::channel().0));
        if let Some(t) = self.flusher.take() {
            let _ = t.join();
        }
    }
}

/// What the log holds, read back from memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct WalState {
    pub vote: Option<Vote<NodeId>>,
    pub last: Option<LogId<NodeId>>,
    pub committed: Option<LogId<NodeId>>,
    pub purged: Option<LogId<NodeId>>,
}

/// Remove the entries from `index` on. A log that does not start right after its purged id
/// (openraft's own suite writes such logs) is emptied when `index` is at or before its first
/// entry.
fn cut(log: &mut RaftLog<WalTypes>, index: u64) -> Result<(), io::Error> {
    let next = log.log_state().purged().map_or(0, |p| p.0.index + 1);
    let first = log
        .read(0, u64::MAX)
        .next()
        .transpose()?
        .map(|(id, _)| id.0.index);
    let at = if first.is_some_and(|f| index <= f) {
        next
    } else {
        index
    };
    log.truncate(at).map(|_| ())
}

fn encode(entries: &[Entry]) -> Result<Vec<(WalLogId, WalEntry)>, io::Error> {
    entries
        .iter()
        .map(|e| {
            let b = postcard::to_allocvec(e).map_err(io::Error::other)?;
            Ok((WalLogId(e.log_id), WalEntry(b.into())))
        })
        .collect()
}

fn stopped() -> io::Error {
    io::Error::other("the raft log flusher has stopped")
}

impl Wal {
    /// Open the log in `dir` (created when missing), replaying its records.
    pub fn open(dir: &Path) -> Result<Wal, io::Error> {
        std::fs::create_dir_all(dir)?;
        let mut wal = raft_log::chunked_wal::Config::new(dir.display());
        wal.chunk_max_size = Some(CHUNK_MAX_BYTES);
        wal.read_buffer_size = Some(1 << 20);
        // The flusher below batches; the worker syncs what it is handed at once.
        wal.flush_batch_wait = Some(std::time::Duration::ZERO);
        let config = raft_log::Config {
            wal,
            log_cache_max_items: Some(CACHE_MAX_ITEMS),
            log_cache_capacity: Some(CACHE_MAX_BYTES),
        };
        let log = RaftLog::<WalTypes>::open(Arc::new(config))?;
        let inner = Arc::new(Mutex::new(Inner { log, seq: 0 }));
        let (queue, rx) = mpsc::channel();
        let flusher = inner.clone();
        let flusher = std::thread::Builder::new()
            .name("raft-log-flusher".into())
            .spawn(move || flush_loop(flusher, rx))?;
        Ok(Wal {
            inner,
            queue,
            flusher: Some(flusher),
        })
    }

    /// Make a change in memory under the lock, then queue its sync. A change that fails in
    /// memory (one the log's own checks refuse) is an error at once.
    fn change(
        &self,
        done: Option<Done>,
        f: impl FnOnce(&mut RaftLog<WalTypes>) -> Result<(), io::Error>,
    ) -> Result<(), io::Error> {
        let seq = {
            let mut inner = self.inner.lock().expect("lock");
            f(&mut inner.log)?;
            inner.seq += 1;
            inner.seq
        };
        match done {
            Some(done) => self.queue.send((seq, done)).map_err(|_| stopped()),
            None => Ok(()),
        }
    }

    /// Append `entries` (readable at once); `done` is told when they are on disk.
    pub fn append(&self, entries: Vec<Entry>, done: Done) -> Result<(), io::Error> {
        let mut rows = encode(&entries)?;
        self.change(Some(done), |log| {
            // Entries at or below the purged id are already in the state machine: not kept.
            if let Some(p) = log.log_state().purged() {
                rows.retain(|(id, _)| id.0.index > p.0.index);
            }
            // Entries from an index the log holds replace it and what follows (openraft
            // truncates first; this keeps the storage contract of a map).
            if let Some((first, _)) = rows.first()
                && log
                    .log_state()
                    .last()
                    .is_some_and(|l| l.0.index >= first.0.index)
            {
                cut(log, first.0.index)?;
            }
            log.append(rows).map(|_| ())
        })
    }

    /// Queue a change and wait until it is on disk.
    async fn wait(
        &self,
        f: impl FnOnce(&mut RaftLog<WalTypes>) -> Result<(), io::Error>,
    ) -> Result<(), io::Error> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.change(Some(Done::Wait(tx)), f)?;
        rx.await.map_err(|_| stopped())?
    }

    /// Save the vote; on disk when this returns.
    pub async fn save_vote(&self, vote: Vote<NodeId>) -> Result<(), io::Error> {
        self.wait(|log| log.save_vote(WalVote(vote)).map(|_| ()))
            .await
    }

    /// Remove the entries from `index` on; on disk when this returns.
    pub async fn truncate(&self, index: u64) -> Result<(), io::Error> {
        self.wait(|log| {
            if log.log_state().last().is_some_and(|l| l.0.index >= index) {
                cut(log, index)?;
            }
            Ok(())
        })
        .await
    }

    /// Remove the entries up to `upto`; on disk when this returns.
    pub async fn purge(&self, upto: LogId<NodeId>) -> Result<(), io::Error> {
        self.wait(|log| log.purge(WalLogId(upto)).map(|_| ())).await
    }

    /// Record the committed id; on disk with the next sync (losing it only delays re-applying
    /// after a restart). An id the log cannot hold yet (beyond its last entry, as after a
    /// snapshot install) or an older one is left out.
    pub fn save_committed(&self, committed: Option<LogId<NodeId>>) -> Result<(), io::Error> {
        let Some(c) = committed else { return Ok(()) };
        self.change(None, |log| {
            let s = log.log_state();
            let ahead = s.committed().is_none_or(|k| k.0 < c);
            let held = s.last().is_some_and(|l| l.0 >= c);
            if ahead && held {
                log.commit(WalLogId(c))?;
            }
            Ok(())
        })
    }

    /// Save a vote and wait for it, blocking.
    #[cfg(test)]
    pub fn save_vote_blocking_for_tests(&self, vote: Vote<NodeId>) {
        self.change(None, |log| log.save_vote(WalVote(vote)).map(|_| ()))
            .unwrap();
        self.sync_blocking().unwrap();
    }

    /// Sync everything changed so far and wait for it.
    #[cfg(test)]
    pub async fn sync(&self) -> Result<(), io::Error> {
        self.wait(|_| Ok(())).await
    }

    /// Sync everything changed so far, blocking (for use off the async runtime).
    pub fn sync_blocking(&self) -> Result<(), io::Error> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.change(Some(Done::Block(tx)), |_| Ok(()))?;
        rx.recv().map_err(|_| stopped())?
    }

    /// Load a log kept elsewhere into this empty one (a migration): the vote, the purged id,
    /// the entries after it, the committed id. Durable after the next sync.
    pub fn import(
        &self,
        vote: Option<Vote<NodeId>>,
        purged: Option<LogId<NodeId>>,
        entries: Vec<Entry>,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), io::Error> {
        if let Some(v) = vote {
            self.change(None, |log| log.save_vote(WalVote(v)).map(|_| ()))?;
        }
        if let Some(p) = purged {
            self.change(None, |log| log.purge(WalLogId(p)).map(|_| ()))?;
        }
        for chunk in entries.chunks(1024) {
            let rows = encode(chunk)?;
            self.change(None, |log| log.append(rows).map(|_| ()))?;
        }
        self.save_committed(committed)
    }

    /// What the log holds (in memory, flushed or not).
    pub fn state(&self) -> WalState {
        let inner = self.inner.lock().expect("lock");
        let s = inner.log.log_state();
        WalState {
            vote: s.vote().map(|v| v.0),
            last: s.last().map(|l| l.0),
            committed: s.committed().map(|l| l.0),
            purged: s.purged().map(|l| l.0),
        }
    }

    /// Entries in `range` that the log holds.
    pub fn read(&self, range: impl RangeBounds<u64>) -> Result<Vec<Entry>, io::Error> {
        let from = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(i) => i.saturating_add(1),
            Bound::Excluded(i) => *i,
            Bound::Unbounded => u64::MAX,
        };
        if from >= to {
            return Ok(Vec::new());
        }
        let rows: Vec<WalEntry> = {
            let inner = self.inner.lock().expect("lock");
            inner
                .log
                .read(from, to)
                .map(|r| r.map(|(_, p)| p))
                .collect::<Result<_, io::Error>>()?
        };
        rows.iter()
            .map(|p| {
                postcard::from_bytes(&p.0).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("corrupt log entry in the raft log: {e}"),
                    )
                })
            })
            .collect()
    }
}

/// Take every queued change, sync once, tell each one. A change already covered by an
/// earlier sync (its seq at or below what that sync covered) is told at once.
fn flush_loop(inner: Arc<Mutex<Inner>>, rx: mpsc::Receiver<(u64, Done)>) {
    let mut durable = 0u64;
    let mut failed: Option<String> = None;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let want = batch.iter().map(|(s, _)| *s).max().unwrap_or(0);
        let result = match &failed {
            Some(e) => Err(io::Error::other(format!("an earlier sync failed: {e}"))),
            None if want <= durable => Ok(()),
            None => sync_all(&inner).map(|upto| durable = upto),
        };
        if let Err(e) = &result
            && failed.is_none()
        {
            tracing::error!(
                "raft store commit failed while writing the log: {e}; the node stops to protect the log (check the disk holding the data dir)"
            );
            failed = Some(e.to_string());
        }
        for (_, done) in batch {
            done.send(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            });
        }
    }
}

/// Write and fdatasync every change made so far; returns the seq it covers.
fn sync_all(inner: &Mutex<Inner>) -> Result<u64, io::Error> {
    let (tx, rx) = mpsc::sync_channel(1);
    let upto = {
        let mut inner = inner.lock().expect("lock");
        inner.log.flush(true, Some(tx))?;
        inner.seq
    };
    rx.recv().map_err(|_| stopped())??;
    Ok(upto)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};
    use std::path::PathBuf;

    fn id(term: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: id(term, index),
            payload: EntryPayload::Blank,
        }
    }

    async fn append(w: &Wal, es: Vec<Entry>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        w.append(es, Done::Wait(tx)).unwrap();
        rx.await.unwrap().unwrap();
    }

    fn indexes(w: &Wal, r: impl RangeBounds<u64>) -> Vec<u64> {
        w.read(r).unwrap().iter().map(|e| e.log_id.index).collect()
    }

    /// Reopen until the previous handle's flusher has let go of the directory lock.
    fn reopen(dir: &Path) -> Wal {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match Wal::open(dir) {
                Ok(w) => return w,
                Err(e) if std::time::Instant::now() > deadline => {
                    panic!("the log does not reopen within 5 s: {e}")
                }
                Err(_) => std::thread::yield_now(),
            }
        }
    }

    /// The chunk files of the log, oldest first.
    fn chunks(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "wal"))
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn appends_votes_and_commits_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let w = Wal::open(dir.path()).unwrap();
        assert_eq!(w.state(), WalState::default());
        let mut v = Vote::new(3, 1);
        v.commit();
        w.save_vote(v).await.unwrap();
        append(&w, (1..=5).map(|i| entry(3, i)).collect()).await;
        w.save_committed(Some(id(3, 4))).unwrap();
        w.sync().await.unwrap();
        assert_eq!(indexes(&w, 2..4), vec![2, 3]);
        drop(w);

        let w = reopen(dir.path());
        let s = w.state();
        assert_eq!(s.vote, Some(v));
        assert_eq!(s.last, Some(id(3, 5)));
        assert_eq!(s.committed, Some(id(3, 4)));
        assert_eq!(s.purged, None);
        assert_eq!(indexes(&w, ..), vec![1, 2, 3, 4, 5]);
        assert_eq!(w.read(3..=3).unwrap()[0].log_id, id(3, 3));
    }

    #[tokio::test]
    async fn a_commit_beyond_the_last_entry_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let w = Wal::open(dir.path()).unwrap();
        append(&w, vec![entry(1, 1)]).await;
        w.save_committed(Some(id(1, 9))).unwrap();
        w.save_committed(Some(id(1, 1))).unwrap();
        w.save_committed(None).unwrap();
        assert_eq!(w.state().committed, Some(id(1, 1)));
    }

    #[tokio::test]
    async fn a_vote_read_back_uncommitted_may_be_saved_again() {
        let dir = tempfile::tempdir().unwrap();
        let w = Wal::open(dir.path()).unwrap();
        let mut v = Vote::new(4, 2);
        v.commit();
        w.save_vote(v).await.unwrap();
        w.save_vote(Vote::new(4, 2)).await.unwrap();
        w.save_vote(Vote::new(5, 3)).await.unwrap();
        assert_eq!(w.state().vote, Some(Vote::new(5, 3)));
        assert!(
            w.save_vote(Vote::new(4, 1)).await.is_err(),
            "a term never goes back"
        );
    }

    #[tokio::test]
    async fn truncate_and_purge_last_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let w = Wal::open(dir.path()).unwrap();
        append(&w, (1..=6).map(|i| entry(1, i)).collect()).await;
        w.truncate(5).await.unwrap();
        assert_eq!(w.state().last, Some(id(1, 4)));
        append(&w, vec![entry(2, 5)]).await;
        w.purge(id(1, 2)).await.unwrap();
        assert_eq!(indexes(&w, ..), vec![3, 4, 5]);
        // A truncate of nothing is no change.
        w.truncate(9).await.unwrap();
        drop(w);

        let w = reopen(dir.path());
        let s = w.state();
        assert_eq!((s.purged, s.last), (Some(id(1, 2)), Some(id(2, 5))));
        assert_eq!(indexes(&w, ..), vec![3, 4, 5]);
        // A purge beyond the last entry (after a snapshot install) empties the log.
        w.purge(id(3, 9)).await.unwrap();
        assert_eq!(indexes(&w, ..), Vec::<u64>::new());
        append(&w, vec![entry(3, 10)]).await;
        drop(w);
        let w = reopen(dir.path());
        assert_eq!(indexes(&w, ..), vec![10]);
        assert_eq!(w.state().purged, Some(id(3, 9)));
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let w = Wal::open(dir.path()).unwrap();
        append(&w, (1..=3).map(|i| entry(1, i)).collect()).await;
        append(&w, vec![entry(1, 4)]).await;
        drop(w);
        let last = chunks(dir.path()).pop().unwrap();
        let len = std::fs::metadata(&last).unwrap().len();
        // The last write stopped half way: its record never completed.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&last)
            .unwrap()
            .set_len(len - 5)
            .unwrap();

        let w = reopen(dir.path());
        assert_eq!(indexes(&w, ..), vec![1, 2, 3]);
        assert_eq!(w.state().last, Some(id(1, 3)));
        append(&w, vec![entry(2, 4)]).await;
        drop(w);
        let w = reopen(dir.path());
        assert_eq!(w.state().last, Some(id(2, 4)));
    }

    #[tokio::test]
    async fn a_corrupt_record_before_the_tail_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let w = Wal::open(dir.path()).unwrap();
        for i in 1..=6 {
            append(&w, vec![entry(1, i)]).await;
        }
        drop(w);
        let last = chunks(dir.path()).pop().unwrap();
        let mut bytes = std::fs::read(&last).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&last, &bytes).unwrap();
        // Wait for the old handle to let go, then expect a refusal, not a lock error.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let e = loop {
            match Wal::open(dir.path()) {
                Ok(_) => panic!("a log with a corrupt record in the middle opened"),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < deadline, "still locked: {e}");
                    std::thread::yield_now();
                }
                Err(e) => break e,
            }
        };
        assert!(e.to_string().contains("checksum mismatch"), "{e}");
    }
}
