//! The replicated state machine on redb: applying [`Request`]s (with at-most-once client
//! sessions and an audit trail), building and installing snapshots as streamed files, and the
//! read-side queries views use.

use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::PathBuf;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use redb::{Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::control::{K_CONTROL, K_DECISION_SEQ};
use super::store::{
    ASSIGNMENTS, AUDIT, BLUEPRINTS, DECISIONS, HEALTH, INSTANCES, KV, NODES, SESSIONS, SM_META,
    Store, TOKENS, blocking, dec, enc, fatal, inline, io,
};
use super::types::{ClusterInit, Command, Request, Response};
use super::{Entry, Node, TypeConfig};
use crate::domain::{
    Assignment, AuditRecord, Blueprint, Health, InstanceStatus, Millis, NodeId, NodeRecord,
    NodeState, StoredBlueprint, TokenRecord, TokenRefusal,
};

// Keys of SM_META.
const K_APPLIED: &str = "applied";
const K_MEMBERSHIP: &str = "membership";
const K_CLUSTER: &str = "cluster";
const K_SNAPSHOT: &str = "snapshot";
const K_AUDIT_SEQ: &str = "audit_seq";
/// The last placement number given out (`Assignment::placement`).
const K_PLACEMENT_SEQ: &str = "placement_seq";

/// Audit entries kept (oldest dropped first).
pub const AUDIT_KEEP: u64 = 10_000;
/// Client sessions (for at-most-once writes) older than this are forgotten.
pub const SESSION_TTL_MS: Millis = 3_600_000;

/// The cluster record: set by `InitCluster`, then the id allocator for members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterMeta {
    pub init: ClusterInit,
    pub next_node_id: NodeId,
}

#[derive(Debug, Serialize, Deserialize)]
struct Session {
    serial: u64,
    at: Millis,
    response: Response,
}

/// The snapshot on disk: which file holds which log position.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SnapshotRef {
    meta: SnapshotMeta<NodeId, Node>,
    file: String,
}

/// One record of a snapshot file (each a length-prefixed postcard frame).
#[derive(Debug, Serialize, Deserialize)]
enum SnapRecord {
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
}

/// Bumped whenever a record's encoding changes (2: assignments and instance statuses carry a placement number), so a snapshot
/// from a node of another format is refused at its header rather than misread.
const SNAPSHOT_FORMAT: u32 = 2;

pub(super) fn meta_get<T: for<'de> Deserialize<'de>>(
    txn: &WriteTransaction,
    key: &str,
) -> Result<Option<T>, std::io::Error> {
    let t = txn.open_table(SM_META).map_err(io)?;
    let v = t.get(key).map_err(io)?;
    v.map(|v| dec(v.value(), key)).transpose()
}

pub(super) fn meta_put<T: Serialize>(
    txn: &WriteTransaction,
    key: &str,
    v: &T,
) -> Result<(), std::io::Error> {
    txn.open_table(SM_META)
        .map_err(io)?
        .insert(key, enc(v).as_slice())
        .map_err(io)?;
    Ok(())
}

/// Apply one request inside `txn`. Deterministic: depends only on the state and the request.
fn apply_request(txn: &WriteTransaction, req: &Request) -> Result<Response, std::io::Error> {
    if let Command::Batch(reqs) = &req.cmd {
        let mut out = Vec::with_capacity(reqs.len());
        for r in reqs {
            out.push(match &r.cmd {
                Command::Batch(_) => Response::Refused("a batch may not hold a batch".into()),
                _ => apply_request(txn, r)?,
            });
        }
        return Ok(Response::Batch(out));
    }
    let mut sessions = txn.open_table(SESSIONS).map_err(io)?;
    if let Some(prev) = sessions.get(req.id.client).map_err(io)? {
        let s: Session = dec(prev.value(), "session")?;
        if s.serial == req.id.serial {
            return Ok(s.response);
        }
        if s.serial > req.id.serial {
            // The client has moved on, so this older request was applied before: never twice.
            return Ok(Response::Refused(format!(
                "stale retry: request {} of this client was superseded by request {}",
                req.id.serial, s.serial
            )));
        }
    }
    let response = apply_command(txn, &req.cmd, req.at, &req.actor)?;
    let session = Session {
        serial: req.id.serial,
        at: req.at,
        response: response.clone(),
    };
    sessions
        .insert(req.id.client, enc(&session).as_slice())
        .map_err(io)?;

    let seq: u64 = meta_get(txn, K_AUDIT_SEQ)?.unwrap_or(0) + 1;
    meta_put(txn, K_AUDIT_SEQ, &seq)?;
    let outcome = match &response {
        Response::TokenRefused(r) => format!("refused: {r}"),
        Response::Refused(m) => format!("refused: {m}"),
        Response::Cas { swapped: false, .. } => "not swapped".into(),
        _ => "ok".into(),
    };
    let rec = AuditRecord {
        seq,
        at: req.at,
        actor: req.actor.clone(),
        what: req.cmd.summary(),
        outcome,
    };
    let mut audit = txn.open_table(AUDIT).map_err(io)?;
    audit.insert(seq, enc(&rec).as_slice()).map_err(io)?;
    if seq > AUDIT_KEEP {
        audit.remove(seq - AUDIT_KEEP).map_err(io)?;
    }
    if seq % 1024 == 0 {
        let cutoff = req.at.saturating_sub(SESSION_TTL_MS);
        sessions
            .retain(|_, v| {
                postcard::from_bytes::<Session>(v)
                    .map(|s| s.at >= cutoff)
                    .unwrap_or(false)
            })
            .map_err(io)?;
    }
    Ok(response)
}

pub(super) fn apply_command(
    txn: &WriteTransaction,
    cmd: &Command,
    at: Millis,
    actor: &str,
) -> Result<Response, std::io::Error> {
    if let Some(r) = super::control::apply(txn, cmd, at, actor)? {
        return Ok(r);
    }
    let cluster: Option<ClusterMeta> = meta_get(txn, K_CLUSTER)?;
    Ok(match cmd {
        Command::InitCluster(init) => match cluster {
            Some(c) if c.init.cluster_id == init.cluster_id => Response::Ok,
            Some(c) => Response::Refused(format!(
                "the cluster is already initialised as '{}'",
                c.init.cluster_id
            )),
            None => {
                let rec = NodeRecord {
                    id: init.founder_id,
                    name: init.founder_name.clone(),
                    addr: init.founder_addr.clone(),
                    state: NodeState::Ready,
                    joined_at: at,
                };
                txn.open_table(NODES)
                    .map_err(io)?
                    .insert(rec.id, enc(&rec).as_slice())
                    .map_err(io)?;
                meta_put(
                    txn,
                    K_CLUSTER,
                    &ClusterMeta {
                        init: init.clone(),
                        next_node_id: init.founder_id + 1,
                    },
                )?;
                Response::Ok
            }
        },
        Command::Join {
            token_id,
            secret_sha256,
            name,
            addr,
        } => {
            let Some(mut meta) = cluster else {
                return Ok(Response::Refused(
                    "the cluster is not initialised yet: retry in a moment".into(),
                ));
            };
            let mut tokens = txn.open_table(TOKENS).map_err(io)?;
            let Some(raw) = tokens
                .get(token_id.as_str())
                .map_err(io)?
                .map(|v| v.value().to_vec())
            else {
                return Ok(Response::TokenRefused(TokenRefusal::Unknown(
                    token_id.clone(),
                )));
            };
            let mut tok: TokenRecord = dec(&raw, "token")?;
            let refusal = match tok.check(secret_sha256, at) {
                Err(r) => Some(r),
                Ok(()) if find_node_by_name(txn, name)?.is_some() => {
                    Some(TokenRefusal::NameTaken(name.clone()))
                }
                Ok(()) => None,
            };
            if let Some(r) = refusal {
                return Ok(Response::TokenRefused(r));
            }
            tok.uses_left -= 1;
            tokens
                .insert(token_id.as_str(), enc(&tok).as_slice())
                .map_err(io)?;
            Response::Joined {
                id: register_node(txn, &mut meta, name, addr, at)?,
            }
        }
        Command::AddNode { name, addr } => {
            let Some(mut meta) = cluster else {
                return Ok(Response::Refused(
                    "the cluster is not initialised yet".into(),
                ));
            };
            if find_node_by_name(txn, name)?.is_some() {
                return Ok(Response::TokenRefused(TokenRefusal::NameTaken(
                    name.clone(),
                )));
            }
            Response::Joined {
                id: register_node(txn, &mut meta, name, addr, at)?,
            }
        }
        Command::RemoveNode { id } => {
            txn.open_table(HEALTH)
                .map_err(io)?
                .remove(*id)
                .map_err(io)?;
            match txn.open_table(NODES).map_err(io)?.remove(*id).map_err(io)? {
                Some(_) => Response::Ok,
                None => Response::Refused(format!("node id {id} is not a member")),
            }
        }
        Command::SetNodeState { id, state } => {
            let mut nodes = txn.open_table(NODES).map_err(io)?;
            let raw = nodes.get(*id).map_err(io)?.map(|v| v.value().to_vec());
            match raw {
                Some(raw) => {
                    let mut rec: NodeRecord = dec(&raw, "node")?;
                    // `drained` only ever follows `draining`: the leader's assignment loop may
                    // compute it from a snapshot taken before an undrain was applied, and that
                    // late write must not undo the operator's undrain.
                    if *state == NodeState::Drained && rec.state != NodeState::Draining {
                        Response::Refused(format!(
                            "node '{}' is {}, not draining; only a draining node becomes drained",
                            rec.name, rec.state
                        ))
                    } else {
                        rec.state = *state;
                        nodes.insert(*id, enc(&rec).as_slice()).map_err(io)?;
                        Response::Ok
                    }
                }
                None => Response::Refused(format!("node id {id} is not a member")),
            }
        }
        Command::SetNodeHealth { id, health, .. } => {
            if txn
                .open_table(NODES)
                .map_err(io)?
                .get(*id)
                .map_err(io)?
                .is_none()
            {
                Response::Refused(format!("node id {id} is not a member"))
            } else {
                let mut t = txn.open_table(HEALTH).map_err(io)?;
                if *health == Health::Ready {
                    t.remove(*id).map_err(io)?;
                } else {
                    t.insert(*id, enc(health).as_slice()).map_err(io)?;
                }
                Response::Ok
            }
        }
        Command::IssueJoinToken {
            id,
            secret_sha256,
            expires_at,
            uses,
        } => {
            let rec = TokenRecord {
                id: id.clone(),
                secret_sha256: *secret_sha256,
                created_at: at,
                expires_at: *expires_at,
                uses_left: *uses,
                uses_total: *uses,
                revoked: false,
            };
            txn.open_table(TOKENS)
                .map_err(io)?
                .insert(id.as_str(), enc(&rec).as_slice())
                .map_err(io)?;
            Response::Ok
        }
        Command::RevokeJoinToken { id } => {
            let mut tokens = txn.open_table(TOKENS).map_err(io)?;
            let raw = tokens
                .get(id.as_str())
                .map_err(io)?
                .map(|v| v.value().to_vec());
            match raw {
                Some(raw) => {
                    let mut t: TokenRecord = dec(&raw, "token")?;
                    t.revoked = true;
                    tokens.insert(id.as_str(), enc(&t).as_slice()).map_err(io)?;
                    Response::Ok
                }
                None => Response::Refused(format!("join token '{id}' is unknown")),
            }
        }
        Command::ApplyBlueprint(b) => {
            let mut t = txn.open_table(BLUEPRINTS).map_err(io)?;
            let prev: Option<StoredBlueprint> = t
                .get(b.name.as_str())
                .map_err(io)?
                .map(|v| dec(v.value(), "blueprint"))
                .transpose()?;
            let version = prev.map(|p| p.version + 1).unwrap_or(1);
            let stored = StoredBlueprint {
                version,
                applied_at: at,
                blueprint: b.clone(),
            };
            t.insert(b.name.as_str(), enc(&stored).as_slice())
                .map_err(io)?;
            prune_assignments(txn, &b.name, Some(b))?;
            Response::Version(version)
        }
        Command::RemoveBlueprint { name } => {
            match txn
                .open_table(BLUEPRINTS)
                .map_err(io)?
                .remove(name.as_str())
                .map_err(io)?
            {
                Some(_) => {
                    prune_assignments(txn, name, None)?;
                    Response::Ok
                }
                None => Response::Refused(format!(
                    "no blueprint named '{name}': 'aether blueprint list' shows the stored ones"
                )),
            }
        }
        Command::ScaleSlice {
            blueprint,
            slice,
            instances,
        } => {
            let mut t = txn.open_table(BLUEPRINTS).map_err(io)?;
            let prev: Option<StoredBlueprint> = t
                .get(blueprint.as_str())
                .map_err(io)?
                .map(|v| dec(v.value(), "blueprint"))
                .transpose()?;
            match prev {
                None => Response::Refused(format!(
                    "no blueprint named '{blueprint}': 'aether blueprint list' shows the stored ones"
                )),
                Some(mut stored) => {
                    let names: Vec<String> = stored
                        .blueprint
                        .slices
                        .iter()
                        .map(|s| s.name.clone())
                        .collect();
                    match stored
                        .blueprint
                        .slices
                        .iter_mut()
                        .find(|s| s.name == *slice)
                    {
                        None => Response::Refused(format!(
                            "blueprint '{blueprint}' has no slice '{slice}'; its slices: {}",
                            names.join(", ")
                        )),
                        Some(s) if *instances < s.min || *instances > s.max => {
                            Response::Refused(format!(
                                "'{blueprint}/{slice}' takes {}..={} instances, found {instances}: change min/max in the blueprint to go further",
                                s.min, s.max
                            ))
                        }
                        Some(s) => {
                            s.instances = *instances;
                            stored.version += 1;
                            stored.applied_at = at;
                            let version = stored.version;
                            t.insert(blueprint.as_str(), enc(&stored).as_slice())
                                .map_err(io)?;
                            prune_assignments(txn, blueprint, Some(&stored.blueprint))?;
                            Response::Version(version)
                        }
                    }
                }
            }
        }
        Command::AssignInstances { set, remove } => {
            let mut t = txn.open_table(ASSIGNMENTS).map_err(io)?;
            let first: u64 = meta_get(txn, K_PLACEMENT_SEQ)?.unwrap_or(0);
            let mut seq = first;
            for (key, a) in set {
                let prev: Option<Assignment> = t
                    .get(key.as_str())
                    .map_err(io)?
                    .map(|v| dec(v.value(), "assignment"))
                    .transpose()?;
                let a = a.clone().stamped(prev.as_ref(), &mut seq);
                t.insert(key.as_str(), enc(&a).as_slice()).map_err(io)?;
            }
            if seq != first {
                meta_put(txn, K_PLACEMENT_SEQ, &seq)?;
            }
            for key in remove {
                t.remove(key.as_str()).map_err(io)?;
            }
            Response::Ok
        }
        Command::ReportInstances {
            node,
            reports,
            gone,
            ..
        } => {
            let mut t = txn.open_table(INSTANCES).map_err(io)?;
            for r in reports {
                let r = InstanceStatus {
                    node: *node,
                    ..r.clone()
                };
                t.insert(
                    format!("{}@{node}", r.instance).as_str(),
                    enc(&r).as_slice(),
                )
                .map_err(io)?;
            }
            for g in gone {
                t.remove(format!("{g}@{node}").as_str()).map_err(io)?;
            }
            Response::Ok
        }
        Command::Put { key, value } => {
            let mut kv = txn.open_table(KV).map_err(io)?;
            let prev = kv
                .insert(key.as_str(), value.as_slice())
                .map_err(io)?
                .map(|v| v.value().to_vec());
            Response::Previous(prev)
        }
        Command::Delete { key } => {
            let mut kv = txn.open_table(KV).map_err(io)?;
            let prev = kv
                .remove(key.as_str())
                .map_err(io)?
                .map(|v| v.value().to_vec());
            Response::Previous(prev)
        }
        Command::Batch(_) => Response::Refused("a batch is applied by its parts".into()),
        Command::RecordDecision(_)
        | Command::ApplyDecision { .. }
        | Command::ApproveDecision { .. }
        | Command::VetoDecision { .. }
        | Command::CloseDecision { .. }
        | Command::RecordOutcome { .. }
        | Command::SetControllerMode { .. }
        | Command::PauseController { .. }
        | Command::ResumeController => unreachable!("control commands are applied by control"),
        Command::CompareAndSwap { key, expected, new } => {
            let mut kv = txn.open_table(KV).map_err(io)?;
            let current = kv
                .get(key.as_str())
                .map_err(io)?
                .map(|v| v.value().to_vec());
            if current == *expected {
                match new {
                    Some(v) => kv.insert(key.as_str(), v.as_slice()).map_err(io)?,
                    None => kv.remove(key.as_str()).map_err(io)?,
                };
                Response::Cas {
                    swapped: true,
                    current: new.clone(),
                }
            } else {
                Response::Cas {
                    swapped: false,
                    current,
                }
            }
        }
    })
}

/// Drop the assignments of blueprint `name` that `now` (none: the blueprint is gone) no longer
/// wants, so nodes stop those instances without waiting for the leader's assignment loop.
fn prune_assignments(
    txn: &WriteTransaction,
    name: &str,
    now: Option<&Blueprint>,
) -> Result<(), std::io::Error> {
    let prefix = format!("{name}/");
    let mut t = txn.open_table(ASSIGNMENTS).map_err(io)?;
    t.retain(|k, _| {
        let Some(rest) = k.strip_prefix(&prefix) else {
            return true;
        };
        let Some((slice, index)) = rest.rsplit_once('/') else {
            return false;
        };
        let index: u32 = index.parse().unwrap_or(u32::MAX);
        now.and_then(|b| b.slices.iter().find(|s| s.name == slice))
            .is_some_and(|s| index < s.instances)
    })
    .map_err(io)?;
    Ok(())
}

/// Allocate the next member id and record the member as ready.
fn register_node(
    txn: &WriteTransaction,
    meta: &mut ClusterMeta,
    name: &str,
    addr: &str,
    at: Millis,
) -> Result<NodeId, std::io::Error> {
    let id = meta.next_node_id;
    meta.next_node_id += 1;
    meta_put(txn, K_CLUSTER, meta)?;
    let rec = NodeRecord {
        id,
        name: name.into(),
        addr: addr.into(),
        state: NodeState::Ready,
        joined_at: at,
    };
    txn.open_table(NODES)
        .map_err(io)?
        .insert(id, enc(&rec).as_slice())
        .map_err(io)?;
    Ok(id)
}

/// Members whose state is `ready`.
pub(super) fn ready_nodes(txn: &WriteTransaction) -> Result<Vec<NodeRecord>, std::io::Error> {
    let t = txn.open_table(NODES).map_err(io)?;
    let mut out = Vec::new();
    for row in t.iter().map_err(io)? {
        let (_, v) = row.map_err(io)?;
        let rec: NodeRecord = dec(v.value(), "node")?;
        if rec.state == NodeState::Ready {
            out.push(rec);
        }
    }
    Ok(out)
}

fn find_node_by_name(
    txn: &WriteTransaction,
    name: &str,
) -> Result<Option<NodeRecord>, std::io::Error> {
    let t = txn.open_table(NODES).map_err(io)?;
    for row in t.iter().map_err(io)? {
        let (_, v) = row.map_err(io)?;
        let rec: NodeRecord = dec(v.value(), "node")?;
        if rec.name == name {
            return Ok(Some(rec));
        }
    }
    Ok(None)
}

// ---- read side ----

impl Store {
    fn scan<K: redb::Key + 'static, T: for<'de> Deserialize<'de>>(
        &self,
        table: TableDefinition<K, &[u8]>,
        what: &str,
    ) -> Result<Vec<T>, std::io::Error> {
        let txn = self.db.begin_read().map_err(io)?;
        let t = txn.open_table(table).map_err(io)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(io)? {
            let (_, v) = row.map_err(io)?;
            out.push(dec(v.value(), what)?);
        }
        Ok(out)
    }

    /// The last applied log id.
    pub fn applied_log_id(&self) -> Result<Option<LogId<NodeId>>, std::io::Error> {
        Ok(self
            .read_meta::<Option<LogId<NodeId>>>(SM_META, K_APPLIED)?
            .flatten())
    }

    /// The cluster record, once the founder wrote it.
    pub fn cluster(&self) -> Result<Option<ClusterMeta>, std::io::Error> {
        self.read_meta(SM_META, K_CLUSTER)
    }

    /// Every member record, by id.
    pub fn nodes(&self) -> Result<Vec<NodeRecord>, std::io::Error> {
        self.scan(NODES, "node")
    }

    /// Every row of `table`, by key (`key` makes an owned key of a stored one).
    fn scan_map<K: redb::Key + 'static, O: Ord, T: for<'de> Deserialize<'de>>(
        &self,
        table: TableDefinition<K, &[u8]>,
        what: &str,
        key: impl Fn(K::SelfType<'_>) -> O,
    ) -> Result<BTreeMap<O, T>, std::io::Error> {
        let txn = self.db.begin_read().map_err(io)?;
        let t = txn.open_table(table).map_err(io)?;
        let mut out = BTreeMap::new();
        for row in t.iter().map_err(io)? {
            let (k, v) = row.map_err(io)?;
            out.insert(key(k.value()), dec(v.value(), what)?);
        }
        Ok(out)
    }

    /// Members whose health is not `ready` (a member absent here is ready).
    pub fn health(&self) -> Result<BTreeMap<NodeId, Health>, std::io::Error> {
        self.scan_map(HEALTH, "health", |k| k)
    }

    /// Every stored blueprint, by name.
    pub fn blueprints(&self) -> Result<Vec<StoredBlueprint>, std::io::Error> {
        self.scan(BLUEPRINTS, "blueprint")
    }

    /// Every assignment, by instance key.
    pub fn assignments(&self) -> Result<BTreeMap<String, Assignment>, std::io::Error> {
        self.scan_map(ASSIGNMENTS, "assignment", |k: &str| k.to_string())
    }

    /// The controller's mode, grace window and pause (the defaults until someone set them).
    pub fn control(&self) -> Result<crate::domain::ControlState, std::io::Error> {
        Ok(self.read_meta(SM_META, K_CONTROL)?.unwrap_or_default())
    }

    /// Up to `limit` decisions, newest first; only the open ones (proposed, pending) and those
    /// of the last `recent_ms` unless `all`.
    pub fn decisions(
        &self,
        limit: usize,
        all: bool,
        recent_ms: u64,
        now: Millis,
    ) -> Result<Vec<crate::domain::Decision>, std::io::Error> {
        let txn = self.db.begin_read().map_err(io)?;
        let t = txn.open_table(DECISIONS).map_err(io)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(io)?.rev() {
            if out.len() >= limit {
                break;
            }
            let (_, v) = row.map_err(io)?;
            let d: crate::domain::Decision = dec(v.value(), "decision")?;
            if all || d.status.is_open() || now.saturating_sub(d.at) <= recent_ms {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// One decision.
    pub fn decision(&self, id: u64) -> Result<Option<crate::domain::Decision>, std::io::Error> {
        let txn = self.db.begin_read().map_err(io)?;
        let t = txn.open_table(DECISIONS).map_err(io)?;
        let v = t.get(id).map_err(io)?;
        v.map(|v| dec(v.value(), "decision")).transpose()
    }

    /// Every reported instance status, by instance then node.
    pub fn instances(&self) -> Result<Vec<InstanceStatus>, std::io::Error> {
        self.scan(INSTANCES, "instance status")
    }

    /// One join token record.
    pub fn token(&self, id: &str) -> Result<Option<TokenRecord>, std::io::Error> {
        let txn = self.db.begin_read().map_err(io)?;
        let t = txn.open_table(TOKENS).map_err(io)?;
        t.get(id)
            .map_err(io)?
            .map(|v| dec(v.value(), "token"))
            .transpose()
    }

    /// Audit records after `seq` (all when `None`), oldest first, at most the newest `n`.
    pub fn audit_after(
        &self,
        seq: Option<u64>,
        n: usize,
    ) -> Result<Vec<AuditRecord>, std::io::Error> {
        let Some(seq) = seq else {
            return self.audit(n);
        };
        let txn = self.db.begin_read().map_err(io)?;
        let t = txn.open_table(AUDIT).map_err(io)?;
        let mut out = Vec::new();
        for row in t.range(seq + 1..).map_err(io)?.rev().take(n) {
            let (_, v) = row.map_err(io)?;
            out.push(dec(v.value(), "audit record")?);
        }
        out.reverse();
        Ok(out)
    }

    /// The newest `n` audit records, oldest first.
    pub fn audit(&self, n: usize) -> Result<Vec<AuditRecord>, std::io::Error> {
        let txn = self.db.begin_read().map_err(io)?;
        let t = txn.open_table(AUDIT).map_err(io)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(io)?.rev().take(n) {
            let (_, v) = row.map_err(io)?;
            out.push(dec(v.value(), "audit record")?);
        }
        out.reverse();
        Ok(out)
    }

    /// A kv value.
    pub fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, std::io::Error> {
        let txn = self.db.begin_read().map_err(io)?;
        let t = txn.open_table(KV).map_err(io)?;
        Ok(t.get(key).map_err(io)?.map(|v| v.value().to_vec()))
    }

    /// kv pairs whose key starts with `prefix`, in key order, at most `limit`.
    pub fn kv_list(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, std::io::Error> {
        let txn = self.db.begin_read().map_err(io)?;
        let t = txn.open_table(KV).map_err(io)?;
        let mut out = Vec::new();
        for row in t.range(prefix..).map_err(io)? {
            let (k, v) = row.map_err(io)?;
            if !k.value().starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn current_snapshot_ref(&self) -> Result<Option<SnapshotRef>, std::io::Error> {
        self.read_meta(SM_META, K_SNAPSHOT)
    }
}

// ---- snapshots ----

fn write_record(w: &mut impl Write, r: &SnapRecord) -> Result<(), std::io::Error> {
    let b = enc(r);
    w.write_all(&(b.len() as u32).to_be_bytes())?;
    w.write_all(&b)
}

fn read_record(r: &mut impl Read) -> Result<SnapRecord, std::io::Error> {
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

fn sync_dir(dir: &std::path::Path) -> Result<(), std::io::Error> {
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

impl Store {
    /// Stream the state machine into a new snapshot file and make it current.
    fn build_snapshot_file(&self) -> Result<(SnapshotMeta<NodeId, Node>, PathBuf), std::io::Error> {
        let txn = self.db.begin_read().map_err(io)?;
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
        let mut n = 0u64;
        write_record(
            &mut w,
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
            ]
            .contains(&k.value())
            {
                write_record(
                    &mut w,
                    &SnapRecord::Meta(k.value().into(), v.value().to_vec()),
                )?;
                n += 1;
            }
        }
        macro_rules! dump {
            ($table:expr, $variant:ident, $conv:expr) => {
                for row in txn.open_table($table).map_err(io)?.iter().map_err(io)? {
                    let (k, v) = row.map_err(io)?;
                    write_record(
                        &mut w,
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
        write_record(&mut w, &SnapRecord::End { records: n })?;
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
    fn install_snapshot_file(
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
    use crate::raft::types::RequestId;

    fn apply(store: &Store, req: &Request) -> Response {
        let txn = store.db.begin_write().unwrap();
        let r = apply_request(&txn, req).unwrap();
        txn.commit().unwrap();
        r
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
        let req = |serial, cmd| Request {
            id: RequestId { client: 1, serial },
            actor: "test".into(),
            at: 1,
            cmd,
        };
        let init = Command::InitCluster(ClusterInit {
            cluster_id: "c".into(),
            ca_cert_pem: String::new(),
            ca_key_pem: String::new(),
            founder_id: 3,
            founder_name: "n3".into(),
            founder_addr: "127.0.0.1:1".into(),
        });
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
}
