//! The state machine handed to openraft: applying entries through `raft/apply.rs`, snapshots
//! through `raft/snapshot.rs`, reads in `raft/reads.rs`.

use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use redb::Durability;

use super::apply::apply_request;
pub use super::apply::{AUDIT_KEEP, ClusterMeta, SESSION_TTL_MS};
use super::store::{SM_META, Store, blocking, fatal, inline, io};
use super::txn::{K_APPLIED, K_MEMBERSHIP, meta_put};
use super::types::Response;
use super::{Entry, Node, TypeConfig};
use crate::domain::NodeId;

/// The state-machine half of the store, handed to openraft.
pub struct StateMachine(pub Arc<Store>);

/// Builds snapshots from a consistent read of the store.
pub struct SnapshotBuilder(Arc<Store>);

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let store = self.0.clone();
        let (meta, path) = blocking(move || store.build_snapshot_file())
            .await
            .map_err(|e| {
                fatal("building a snapshot", e, |e| {
                    StorageIOError::write_snapshot(None, e)
                })
            })?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        tracing::info!(
            "built snapshot {} at index {:?}",
            meta.snapshot_id,
            meta.last_log_id.map(|l| l.index)
        );
        Ok(Snapshot {
            meta,
            snapshot: Box::new(file),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>), StorageError<NodeId>> {
        let store = self.0.clone();
        inline(|| {
            let applied = store.applied_log_id()?;
            let membership = store.read_meta(SM_META, K_MEMBERSHIP)?.unwrap_or_default();
            Ok((applied, membership))
        })
        .map_err(|e| StorageIOError::read_state_machine(&e).into())
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| e.log_id) else {
            return Ok(Vec::new());
        };
        let store = self.0.clone();
        // In place, not on a blocking thread: a non-durable redb commit takes microseconds,
        // less than the thread hand-off (which dominated a profile of the write path).
        let responses = inline(|| {
            let mut txn = store.db.begin_write().map_err(io)?;
            txn.set_durability(Durability::None).map_err(io)?;
            let mut out = Vec::with_capacity(entries.len());
            for e in &entries {
                out.push(match &e.payload {
                    EntryPayload::Blank => Response::Ok,
                    EntryPayload::Normal(req) => apply_request(&txn, req)?,
                    EntryPayload::Membership(m) => {
                        meta_put(
                            &txn,
                            K_MEMBERSHIP,
                            &StoredMembership::new(Some(e.log_id), m.clone()),
                        )?;
                        Response::Ok
                    }
                });
            }
            meta_put(&txn, K_APPLIED, &Some(last))?;
            txn.commit().map_err(io)?;
            Ok(out)
        })
        .map_err(|e| fatal("applying entries", e, |e| StorageIOError::apply(last, e)))?;
        self.0.applied_tx.send_replace(last.index);
        if entries.iter().any(|e| match &e.payload {
            EntryPayload::Blank => false,
            EntryPayload::Normal(req) => req.cmd.touches_workloads(),
            EntryPayload::Membership(_) => true,
        }) {
            self.0.workloads_tx.send_modify(|g| *g += 1);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder(self.0.clone())
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<tokio::fs::File>, StorageError<NodeId>> {
        let path = self
            .0
            .snap_dir()
            .join(format!("receiving-{:016x}", rand::random::<u64>()));
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        *self.0.receiving.lock().expect("lock") = Some(path);
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError<NodeId>> {
        let file = snapshot.into_std().await;
        let (store, m) = (self.0.clone(), meta.clone());
        let received = self.0.receiving.lock().expect("lock").take();
        blocking(move || {
            let r = store.install_snapshot_file(&m, file);
            if let Some(p) = received {
                let _ = std::fs::remove_file(p);
            }
            r
        })
        .await
        .map_err(|e| {
            fatal("installing a snapshot", e, |e| {
                StorageIOError::write_snapshot(Some(meta.signature()), e)
            })
        })?;
        tracing::info!(
            "installed snapshot {} at index {:?}",
            meta.snapshot_id,
            meta.last_log_id.map(|l| l.index)
        );
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let store = self.0.clone();
        let r = store
            .current_snapshot_ref()
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        let Some(r) = r else { return Ok(None) };
        let path = self.0.snap_dir().join(&r.file);
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| StorageIOError::read_snapshot(Some(r.meta.signature()), &e))?;
        Ok(Some(Snapshot {
            meta: r.meta,
            snapshot: Box::new(file),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Assignment, NodeState};
    use crate::raft::types::{ClusterInit, Command, Request, RequestId};

    fn apply(store: &Store, req: &Request) -> Response {
        let txn = store.db.begin_write().unwrap();
        let r = apply_request(&txn, req).unwrap();
        txn.commit().unwrap();
        r
    }

    /// Request `serial` of client 1 carrying `cmd`.
    fn req(serial: u64, cmd: Command) -> Request {
        Request {
            id: RequestId { client: 1, serial },
            actor: "test".into(),
            at: 1,
            cmd,
        }
    }

    /// A cluster founded by node 3, `n3`.
    fn founder_n3() -> Command {
        Command::InitCluster(ClusterInit {
            cluster_id: "c".into(),
            ca_cert_pem: String::new(),
            ca_key_pem: String::new(),
            founder_id: 3,
            founder_name: "n3".into(),
            founder_addr: "127.0.0.1:1".into(),
        })
    }

    fn put(client: u128, serial: u64, key: &str, value: &str) -> Request {
        Request {
            id: RequestId { client, serial },
            actor: "test".into(),
            at: 1_000,
            cmd: Command::Put {
                key: key.into(),
                value: value.into(),
            },
        }
    }

    #[test]
    fn a_retried_request_applies_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            apply(&store, &put(7, 1, "k", "a")),
            Response::Previous(None)
        );
        // The same id again answers the first result and writes nothing.
        assert_eq!(
            apply(&store, &put(7, 1, "k", "a")),
            Response::Previous(None)
        );
        assert_eq!(store.audit(10).unwrap().len(), 1);
        assert_eq!(
            apply(&store, &put(7, 2, "k", "b")),
            Response::Previous(Some(b"a".to_vec()))
        );
        // An older serial of the same client never applies again.
        assert!(
            matches!(apply(&store, &put(7, 1, "k", "a")), Response::Refused(m) if m.contains("stale retry"))
        );
        assert_eq!(store.kv_get("k").unwrap(), Some(b"b".to_vec()));
        // Another client is independent.
        assert_eq!(
            apply(&store, &put(8, 1, "k", "c")),
            Response::Previous(Some(b"b".to_vec()))
        );
    }

    #[test]
    fn a_batch_applies_each_part_once_with_its_own_session() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            apply(&store, &put(1, 1, "a", "x")),
            Response::Previous(None)
        );
        let batch = |serial| Request {
            id: RequestId { client: 99, serial },
            actor: "batch".into(),
            at: 1_000,
            cmd: Command::Batch(vec![
                put(1, 1, "a", "x"),
                put(2, 1, "b", "y"),
                put(3, 1, "a", "z"),
            ]),
        };
        // The retried part answers its first result; the others apply in order.
        let want = Response::Batch(vec![
            Response::Previous(None),
            Response::Previous(None),
            Response::Previous(Some(b"x".to_vec())),
        ]);
        assert_eq!(apply(&store, &batch(1)), want);
        assert_eq!(store.kv_get("a").unwrap(), Some(b"z".to_vec()));
        assert_eq!(
            store.audit(10).unwrap().len(),
            3,
            "one audit record per applied part"
        );
        // The whole batch proposed again changes nothing.
        assert_eq!(apply(&store, &batch(2)), want);
        assert_eq!(store.audit(10).unwrap().len(), 3);
    }

    #[test]
    fn compare_and_swap_only_swaps_on_match() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cas = |serial, expected: Option<&str>, new: Option<&str>| Request {
            id: RequestId { client: 1, serial },
            actor: "test".into(),
            at: 1,
            cmd: Command::CompareAndSwap {
                key: "k".into(),
                expected: expected.map(|v| v.as_bytes().to_vec()),
                new: new.map(|v| v.as_bytes().to_vec()),
            },
        };
        assert_eq!(
            apply(&store, &cas(1, None, Some("a"))),
            Response::Cas {
                swapped: true,
                current: Some(b"a".to_vec())
            }
        );
        assert_eq!(
            apply(&store, &cas(2, None, Some("b"))),
            Response::Cas {
                swapped: false,
                current: Some(b"a".to_vec())
            }
        );
        assert_eq!(
            apply(&store, &cas(3, Some("a"), None)),
            Response::Cas {
                swapped: true,
                current: None
            }
        );
        assert_eq!(store.kv_get("k").unwrap(), None);
    }

    #[test]
    fn drained_only_follows_draining_so_a_late_write_cannot_undo_an_undrain() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let init = founder_n3();
        assert_eq!(apply(&store, &req(1, init)), Response::Ok);
        let id = 3;
        let set = |state| Command::SetNodeState { id, state };
        let state = || store.nodes().unwrap()[0].state;
        assert_eq!(
            apply(&store, &req(2, set(NodeState::Draining))),
            Response::Ok
        );
        assert_eq!(apply(&store, &req(3, set(NodeState::Ready))), Response::Ok);
        // The assignment loop's write, computed before the undrain, arrives late.
        let late = apply(&store, &req(4, set(NodeState::Drained)));
        assert!(
            matches!(&late, Response::Refused(m) if m.contains("'n3' is ready, not draining")),
            "{late:?}"
        );
        assert_eq!(state(), NodeState::Ready);
        assert_eq!(
            apply(&store, &req(5, set(NodeState::Draining))),
            Response::Ok
        );
        assert_eq!(
            apply(&store, &req(6, set(NodeState::Drained))),
            Response::Ok
        );
        assert_eq!(state(), NodeState::Drained);
    }

    #[test]
    fn spot_notices_are_kept_per_member_travel_in_snapshots_and_leave_with_the_member() {
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = Store::open(a_dir.path()).unwrap();
        let init = founder_n3();
        assert_eq!(apply(&a, &req(1, init)), Response::Ok);
        let notice = crate::domain::SpotNotice {
            kind: crate::domain::SpotKind::Interruption {
                action: "terminate".into(),
            },
            at: 120_000,
            source: "aws".into(),
        };
        let set = |id, notice| Command::SetSpotNotice {
            id,
            name: format!("n{id}"),
            notice,
        };
        assert_eq!(
            apply(&a, &req(2, set(3, Some(notice.clone())))),
            Response::Ok
        );
        let stranger = apply(&a, &req(3, set(9, Some(notice.clone()))));
        assert!(
            matches!(&stranger, Response::Refused(m) if m.contains("not a member")),
            "{stranger:?}"
        );
        assert_eq!(
            a.spot_notices().unwrap(),
            std::collections::BTreeMap::from([(3, notice.clone())])
        );
        let (meta, path) = a.build_snapshot_file().unwrap();
        let b = Store::open(b_dir.path()).unwrap();
        b.install_snapshot_file(&meta, std::fs::File::open(&path).unwrap())
            .unwrap();
        assert_eq!(
            b.spot_notices().unwrap(),
            std::collections::BTreeMap::from([(3, notice)])
        );
        assert_eq!(apply(&a, &req(4, set(3, None))), Response::Ok);
        assert!(a.spot_notices().unwrap().is_empty());
        assert_eq!(
            apply(&b, &req(5, Command::RemoveNode { id: 3 })),
            Response::Ok
        );
        assert!(b.spot_notices().unwrap().is_empty(), "gone with the member");
    }

    #[test]
    fn placements_are_numbered_by_the_store_kept_on_their_node_and_new_after_a_move_or_removal() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut serial = 0;
        let mut assign = |set: Vec<(&str, Option<NodeId>)>, remove: Vec<&str>| {
            serial += 1;
            assert_eq!(
                apply(&store, &assign_req(serial, set, remove)),
                Response::Ok
            );
        };
        let placement = |k: &str| store.assignments().unwrap().get(k).map(|a| a.placement);
        assign(
            vec![("a/w/0", Some(1)), ("a/w/1", Some(2)), ("a/w/2", None)],
            vec![],
        );
        assert_eq!(
            (placement("a/w/0"), placement("a/w/1"), placement("a/w/2")),
            (Some(1), Some(2), Some(0))
        );
        // Written again on the same node (a hand-off cleared, say): the same placement.
        assign(vec![("a/w/0", Some(1))], vec![]);
        assert_eq!(placement("a/w/0"), Some(1));
        // Moved, placed after pending, removed and created again: each a new placement.
        assign(vec![("a/w/0", Some(2)), ("a/w/2", Some(1))], vec!["a/w/1"]);
        assert_eq!((placement("a/w/0"), placement("a/w/2")), (Some(3), Some(4)));
        assign(vec![("a/w/1", Some(2))], vec![]);
        assert_eq!(placement("a/w/1"), Some(5), "not the removed copy's 2");
    }

    /// `AssignInstances` of `set` (instance → node) and `remove`, as request `serial`.
    fn assign_req(serial: u64, set: Vec<(&str, Option<NodeId>)>, remove: Vec<&str>) -> Request {
        let set = set
            .into_iter()
            .map(|(k, node)| {
                let a = Assignment {
                    node,
                    handoff: None,
                    pending: None,
                    since: 1,
                    // Whatever the writer sends is overwritten.
                    placement: 77,
                    version: 0,
                };
                (k.to_string(), a)
            })
            .collect();
        Request {
            id: RequestId { client: 1, serial },
            actor: "test".into(),
            at: 1,
            cmd: Command::AssignInstances {
                set,
                remove: remove.into_iter().map(String::from).collect(),
            },
        }
    }

    #[test]
    fn the_placement_counter_travels_in_snapshots() {
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = Store::open(a_dir.path()).unwrap();
        let req = assign_req(1, vec![("a/w/0", Some(1)), ("a/w/1", Some(2))], vec![]);
        assert_eq!(apply(&a, &req), Response::Ok);
        let (meta, path) = a.build_snapshot_file().unwrap();
        let b = Store::open(b_dir.path()).unwrap();
        b.install_snapshot_file(&meta, std::fs::File::open(path).unwrap())
            .unwrap();
        assert_eq!(b.assignments().unwrap()["a/w/1"].placement, 2);
        // A node that starts from the snapshot numbers on from it, never reusing a number a
        // stale report might still carry.
        let req = assign_req(2, vec![("a/w/2", Some(1))], vec![]);
        assert_eq!(apply(&b, &req), Response::Ok);
        assert_eq!(b.assignments().unwrap()["a/w/2"].placement, 3);
    }

    /// Open `dir` again once the store dropped before has let go of the file.
    fn reopen(dir: &std::path::Path) -> std::sync::Arc<Store> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match Store::open(dir) {
                Ok(s) => return s,
                Err(e) if std::time::Instant::now() > deadline => {
                    panic!("the store does not reopen within 5 s: {e}")
                }
                Err(_) => std::thread::yield_now(),
            }
        }
    }

    #[test]
    fn a_snapshot_of_an_older_format_is_rebuilt_at_open_and_refused_when_sent() {
        use crate::raft::snapshot::SNAPSHOT_FORMAT;
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = Store::open(a_dir.path()).unwrap();
        let req = assign_req(1, vec![("a/w/0", Some(1))], vec![]);
        assert_eq!(apply(&a, &req), Response::Ok);
        let (meta, path) = a.build_snapshot_file().unwrap();
        // What the binary before an upgrade left: the same snapshot, an older format.
        let mut bytes = std::fs::read(&path).unwrap();
        let old_header =
            crate::raft::store::enc(&crate::raft::snapshot::old_header(SNAPSHOT_FORMAT - 1));
        let new_header =
            crate::raft::store::enc(&crate::raft::snapshot::old_header(SNAPSHOT_FORMAT));
        assert_eq!(&bytes[4..4 + new_header.len()], new_header.as_slice());
        bytes.splice(4..4 + new_header.len(), old_header);
        std::fs::write(&path, &bytes).unwrap();

        let b = Store::open(b_dir.path()).unwrap();
        let e = b
            .install_snapshot_file(&meta, std::fs::File::open(&path).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!(
                "is in format '{}', this aether reads format '{SNAPSHOT_FORMAT}': a node of another aether version sent it",
                SNAPSHOT_FORMAT - 1
            )),
            "{e}"
        );

        assert_eq!(
            a.current_snapshot_format().unwrap(),
            Some(SNAPSHOT_FORMAT - 1)
        );
        drop(a);
        let a = reopen(a_dir.path());
        assert_eq!(
            a.current_snapshot_format().unwrap(),
            Some(SNAPSHOT_FORMAT),
            "rebuilt in this format at open"
        );
        let r = a.current_snapshot_ref().unwrap().unwrap();
        let file = std::fs::File::open(a.snap_dir().join(&r.file)).unwrap();
        let c_dir = tempfile::tempdir().unwrap();
        let c = Store::open(c_dir.path()).unwrap();
        c.install_snapshot_file(&r.meta, file).unwrap();
        assert_eq!(c.assignments().unwrap().len(), 1, "and it installs");
    }
}
