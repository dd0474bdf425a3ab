//! Snapshots as streamed files: the versioned record format, building one from a consistent
//! read of the store, and installing one received from the leader.

use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::PathBuf;

use openraft::{LogId, SnapshotMeta, StoredMembership};
use redb::{ReadTransaction, ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::Node;
use super::store::{
    ASSIGNMENTS, AUDIT, BLUEPRINT_VERSIONS, BLUEPRINTS, DECISIONS, FLEXIBLE, HEALTH, INSTANCES, KV,
    NODES, OPERATORS, POWER, ROLLOUTS, ROLLOUTS_OPEN, SESSIONS, SM_META, SPOT_NOTICES, Store,
    TOKENS, dec, enc, io,
};
use super::txn::{
    K_APPLIED, K_AUDIT_SEQ, K_CLUSTER, K_MEMBERSHIP, K_PLACEMENT_SEQ, K_SNAPSHOT, meta_put,
};
use super::txn::{K_CONTROL, K_DECISION_SEQ, K_ROLLOUT_SEQ};
use crate::domain::NodeId;

/// The snapshot on disk: which file holds which log position.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SnapshotRef {
    pub(super) meta: SnapshotMeta<NodeId, Node>,
    pub(super) file: String,
}

/// One record of a snapshot file (each a length-prefixed postcard frame).
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum SnapRecord {
    Header { format: u32 },
    Meta(String, Vec<u8>),
    Kv(String, Vec<u8>),
    Node(u64, Vec<u8>),
    Token(String, Vec<u8>),
    Session(u128, Vec<u8>),
    Audit(u64, Vec<u8>),
    End { records: u64 },
    Health(u64, Vec<u8>),
    Blueprint(String, Vec<u8>),
    Assignment(String, Vec<u8>),
    Instance(String, Vec<u8>),
    Decision(u64, Vec<u8>),
    BlueprintVersion(String, Vec<u8>),
    Rollout(u64, Vec<u8>),
    Operator(String, Vec<u8>),
    SpotNotice(u64, Vec<u8>),
    Power(u64, Vec<u8>),
    Flexible(String, Vec<u8>),
}

/// Bumped whenever a record's encoding changes (2: assignments and instance statuses carry a
/// placement number; 3: slices carry a service, and scaling an idle_to_zero and a
/// target_calls_per_instance; 4: slices carry an update policy, assignments a version, and
/// blueprint versions and rollouts are records; 5: slices carry a user; 6: operator
/// certificates are records; 7: spot notices, power records and flexible slices), so a
/// snapshot from a node of another format is refused at its header rather than misread.
pub(super) const SNAPSHOT_FORMAT: u32 = 7;

/// A snapshot file's first record for `format` (tests write older snapshots with it).
#[cfg(test)]
pub(super) fn old_header(format: u32) -> impl Serialize {
    SnapRecord::Header { format }
}

pub(super) fn write_record(w: &mut impl Write, r: &SnapRecord) -> Result<(), std::io::Error> {
    let b = enc(r);
    w.write_all(&(b.len() as u32).to_be_bytes())?;
    w.write_all(&b)
}

pub(super) fn read_record(r: &mut impl Read) -> Result<SnapRecord, std::io::Error> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > 64 << 20 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("snapshot record of {len} bytes is corrupt"),
        ));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    dec(&buf, "snapshot record")
}

pub(super) fn sync_dir(dir: &std::path::Path) -> Result<(), std::io::Error> {
    std::fs::File::open(dir)?.sync_all()
}

/// Remove every snapshot file except `keep`.
fn remove_other_snapshots(dir: &std::path::Path, keep: &str) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name != keep {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// The last applied log id and the membership of a state machine.
pub(super) type AppliedState = (Option<LogId<NodeId>>, StoredMembership<NodeId, Node>);

/// The last applied log id and membership as the state machine in `txn` holds them.
pub(super) fn applied_state(txn: &ReadTransaction) -> Result<AppliedState, std::io::Error> {
    let meta_t = txn.open_table(SM_META).map_err(io)?;
    let get = |k: &str| -> Result<Option<Vec<u8>>, std::io::Error> {
        Ok(meta_t.get(k).map_err(io)?.map(|v| v.value().to_vec()))
    };
    let applied: Option<LogId<NodeId>> = get(K_APPLIED)?
        .map(|b| dec::<Option<LogId<NodeId>>>(&b, K_APPLIED))
        .transpose()?
        .flatten();
    let membership: StoredMembership<NodeId, Node> = get(K_MEMBERSHIP)?
        .map(|b| dec(&b, K_MEMBERSHIP))
        .transpose()?
        .unwrap_or_default();
    Ok((applied, membership))
}

/// Write the state machine read in `txn` as snapshot records, `Header` first and `End` (with
/// the count of the records between) last. Returns that count.
pub(super) fn write_state(
    txn: &ReadTransaction,
    w: &mut impl Write,
) -> Result<u64, std::io::Error> {
    let meta_t = txn.open_table(SM_META).map_err(io)?;
    let mut n = 0u64;
    write_record(
        w,
        &SnapRecord::Header {
            format: SNAPSHOT_FORMAT,
        },
    )?;
    for row in meta_t.iter().map_err(io)? {
        let (k, v) = row.map_err(io)?;
        if [
            K_CLUSTER,
            K_AUDIT_SEQ,
            K_PLACEMENT_SEQ,
            K_CONTROL,
            K_DECISION_SEQ,
            K_ROLLOUT_SEQ,
        ]
        .contains(&k.value())
        {
            write_record(w, &SnapRecord::Meta(k.value().into(), v.value().to_vec()))?;
            n += 1;
        }
    }
    macro_rules! dump {
        ($table:expr, $variant:ident, $conv:expr) => {
            for row in txn.open_table($table).map_err(io)?.iter().map_err(io)? {
                let (k, v) = row.map_err(io)?;
                write_record(
                    w,
                    &SnapRecord::$variant($conv(k.value()), v.value().to_vec()),
                )?;
                n += 1;
            }
        };
    }
    dump!(KV, Kv, |k: &str| k.to_string());
    dump!(NODES, Node, |k: u64| k);
    dump!(TOKENS, Token, |k: &str| k.to_string());
    dump!(SESSIONS, Session, |k: u128| k);
    dump!(AUDIT, Audit, |k: u64| k);
    dump!(HEALTH, Health, |k: u64| k);
    dump!(BLUEPRINTS, Blueprint, |k: &str| k.to_string());
    dump!(ASSIGNMENTS, Assignment, |k: &str| k.to_string());
    dump!(INSTANCES, Instance, |k: &str| k.to_string());
    dump!(DECISIONS, Decision, |k: u64| k);
    dump!(BLUEPRINT_VERSIONS, BlueprintVersion, |k: &str| k
        .to_string());
    dump!(ROLLOUTS, Rollout, |k: u64| k);
    dump!(OPERATORS, Operator, |k: &str| k.to_string());
    dump!(SPOT_NOTICES, SpotNotice, |k: u64| k);
    dump!(POWER, Power, |k: u64| k);
    dump!(FLEXIBLE, Flexible, |k: &str| k.to_string());
    write_record(w, &SnapRecord::End { records: n })?;
    Ok(n)
}

impl Store {
    pub(super) fn current_snapshot_ref(&self) -> Result<Option<SnapshotRef>, std::io::Error> {
        self.read_meta(SM_META, K_SNAPSHOT)
    }

    /// The format of the current snapshot file, if it has one that reads.
    pub(super) fn current_snapshot_format(&self) -> Result<Option<u32>, std::io::Error> {
        let Some(r) = self.current_snapshot_ref()? else {
            return Ok(None);
        };
        let Ok(f) = std::fs::File::open(self.snap_dir().join(&r.file)) else {
            return Ok(None);
        };
        Ok(match read_record(&mut BufReader::new(f)) {
            Ok(SnapRecord::Header { format }) => Some(format),
            _ => None,
        })
    }

    /// After an upgrade the current snapshot file may be of the snapshot format before, and
    /// every node it were sent to would refuse it: rebuild it from the state machine (whose
    /// records the store format's migrations have brought up to date). Called at open.
    pub(super) fn refresh_old_snapshot(&self) -> Result<(), std::io::Error> {
        let Some(r) = self.current_snapshot_ref()? else {
            return Ok(());
        };
        let found = self.current_snapshot_format()?;
        if found == Some(SNAPSHOT_FORMAT) {
            return Ok(());
        }
        tracing::info!(
            "snapshot '{}' is in format {}, this aether writes format {SNAPSHOT_FORMAT}: rebuilding it from the state machine",
            r.meta.snapshot_id,
            found.map_or_else(|| "'unreadable'".to_string(), |f| format!("'{f}'"))
        );
        self.build_snapshot_file()?;
        Ok(())
    }
    /// Stream the state machine into a new snapshot file and make it current.
    pub(super) fn build_snapshot_file(
        &self,
    ) -> Result<(SnapshotMeta<NodeId, Node>, PathBuf), std::io::Error> {
        let txn = self.db.begin_read().map_err(io)?;
        let (applied, membership) = applied_state(&txn)?;
        let snapshot_id = match applied {
            Some(l) => format!(
                "{}-{}-{}",
                l.leader_id.term,
                l.index,
                crate::domain::now_millis()
            ),
            None => format!("0-0-{}", crate::domain::now_millis()),
        };
        let dir = self.snap_dir();
        let tmp = dir.join(format!("{snapshot_id}.building"));
        let final_name = format!("{snapshot_id}.snap");
        let mut w = BufWriter::new(std::fs::File::create(&tmp)?);
        write_state(&txn, &mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        drop(f);
        let path = dir.join(&final_name);
        std::fs::rename(&tmp, &path)?;
        sync_dir(&dir)?;
        let meta = SnapshotMeta {
            last_log_id: applied,
            last_membership: membership,
            snapshot_id,
        };
        self.set_current_snapshot(&meta, &final_name)?;
        Ok((meta, path))
    }

    fn set_current_snapshot(
        &self,
        meta: &SnapshotMeta<NodeId, Node>,
        file: &str,
    ) -> Result<(), std::io::Error> {
        let txn = self.db.begin_write().map_err(io)?;
        meta_put(
            &txn,
            K_SNAPSHOT,
            &SnapshotRef {
                meta: meta.clone(),
                file: file.into(),
            },
        )?;
        txn.commit().map_err(io)?;
        remove_other_snapshots(&self.snap_dir(), file);
        Ok(())
    }

    /// Replace the state machine with the snapshot in `file` (already complete on disk).
    pub(super) fn install_snapshot_file(
        &self,
        meta: &SnapshotMeta<NodeId, Node>,
        file: std::fs::File,
    ) -> Result<(), std::io::Error> {
        let dir = self.snap_dir();
        let final_name = format!("{}.snap", meta.snapshot_id);
        let path = dir.join(&final_name);
        // Keep our own durable copy: the received handle may be a temporary file.
        let mut src = file;
        src.seek(std::io::SeekFrom::Start(0))?;
        let tmp = dir.join(format!("{}.installing", meta.snapshot_id));
        {
            let mut dst = std::fs::File::create(&tmp)?;
            std::io::copy(&mut src, &mut dst)?;
            dst.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        sync_dir(&dir)?;

        let mut r = BufReader::new(std::fs::File::open(&path)?);
        match read_record(&mut r)? {
            SnapRecord::Header {
                format: SNAPSHOT_FORMAT,
            } => {}
            SnapRecord::Header { format } => {
                return Err(io(format!(
                    "snapshot '{}' is in format '{format}', this aether reads format '{SNAPSHOT_FORMAT}': a node of another aether version sent it; run one aether version on every node",
                    meta.snapshot_id
                )));
            }
            other => {
                return Err(io(format!(
                    "snapshot '{}' has a bad header: {other:?}",
                    meta.snapshot_id
                )));
            }
        }
        let txn = self.db.begin_write().map_err(io)?;
        {
            // Every state-machine table, emptied: the snapshot replaces the whole state.
            macro_rules! emptied {
                ($table:expr) => {{
                    let mut t = txn.open_table($table).map_err(io)?;
                    t.retain(|_, _| false).map_err(io)?;
                    t
                }};
            }
            let mut sm = emptied!(SM_META);
            let mut kv = emptied!(KV);
            let mut nodes = emptied!(NODES);
            let mut tokens = emptied!(TOKENS);
            let mut sessions = emptied!(SESSIONS);
            let mut audit = emptied!(AUDIT);
            let mut health = emptied!(HEALTH);
            let mut blueprints = emptied!(BLUEPRINTS);
            let mut assignments = emptied!(ASSIGNMENTS);
            let mut instances = emptied!(INSTANCES);
            let mut decisions = emptied!(DECISIONS);
            let mut versions = emptied!(BLUEPRINT_VERSIONS);
            let mut rollouts = emptied!(ROLLOUTS);
            let mut open_rollouts = emptied!(ROLLOUTS_OPEN);
            let mut operators = emptied!(OPERATORS);
            let mut spot = emptied!(SPOT_NOTICES);
            let mut power = emptied!(POWER);
            let mut flexible = emptied!(FLEXIBLE);
            let mut n = 0u64;
            loop {
                match read_record(&mut r)? {
                    SnapRecord::Header { .. } => return Err(io("snapshot has a second header")),
                    SnapRecord::Meta(k, v) => sm.insert(k.as_str(), v.as_slice()).map(|_| ()),
                    SnapRecord::Kv(k, v) => kv.insert(k.as_str(), v.as_slice()).map(|_| ()),
                    SnapRecord::Node(k, v) => nodes.insert(k, v.as_slice()).map(|_| ()),
                    SnapRecord::Token(k, v) => tokens.insert(k.as_str(), v.as_slice()).map(|_| ()),
                    SnapRecord::Session(k, v) => sessions.insert(k, v.as_slice()).map(|_| ()),
                    SnapRecord::Audit(k, v) => audit.insert(k, v.as_slice()).map(|_| ()),
                    SnapRecord::Health(k, v) => health.insert(k, v.as_slice()).map(|_| ()),
                    SnapRecord::Blueprint(k, v) => {
                        blueprints.insert(k.as_str(), v.as_slice()).map(|_| ())
                    }
                    SnapRecord::Assignment(k, v) => {
                        assignments.insert(k.as_str(), v.as_slice()).map(|_| ())
                    }
                    SnapRecord::Instance(k, v) => {
                        instances.insert(k.as_str(), v.as_slice()).map(|_| ())
                    }
                    SnapRecord::Decision(k, v) => decisions.insert(k, v.as_slice()).map(|_| ()),
                    SnapRecord::BlueprintVersion(k, v) => {
                        versions.insert(k.as_str(), v.as_slice()).map(|_| ())
                    }
                    SnapRecord::Rollout(k, v) => {
                        let open = dec::<crate::domain::Rollout>(&v, "rollout")?
                            .state
                            .is_open();
                        if open {
                            open_rollouts.insert(k, [].as_slice()).map_err(io)?;
                        }
                        rollouts.insert(k, v.as_slice()).map(|_| ())
                    }
                    SnapRecord::Operator(k, v) => {
                        operators.insert(k.as_str(), v.as_slice()).map(|_| ())
                    }
                    SnapRecord::SpotNotice(k, v) => spot.insert(k, v.as_slice()).map(|_| ()),
                    SnapRecord::Power(k, v) => power.insert(k, v.as_slice()).map(|_| ()),
                    SnapRecord::Flexible(k, v) => {
                        flexible.insert(k.as_str(), v.as_slice()).map(|_| ())
                    }
                    SnapRecord::End { records } if records == n => break,
                    SnapRecord::End { records } => {
                        return Err(io(format!(
                            "snapshot '{}' is truncated: {n} of {records} records",
                            meta.snapshot_id
                        )));
                    }
                }
                .map_err(io)?;
                n += 1;
            }
            sm.insert(K_APPLIED, enc(&meta.last_log_id).as_slice())
                .map_err(io)?;
            sm.insert(K_MEMBERSHIP, enc(&meta.last_membership).as_slice())
                .map_err(io)?;
            sm.insert(
                K_SNAPSHOT,
                enc(&SnapshotRef {
                    meta: meta.clone(),
                    file: final_name.clone(),
                })
                .as_slice(),
            )
            .map_err(io)?;
        }
        txn.commit().map_err(io)?;
        remove_other_snapshots(&dir, &final_name);
        self.applied_tx
            .send_replace(meta.last_log_id.map(|l| l.index).unwrap_or(0));
        self.workloads_tx.send_modify(|g| *g += 1);
        Ok(())
    }
}
