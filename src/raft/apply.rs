//! Applying [`Request`]s to the state machine inside one redb write transaction: at-most-once
//! client sessions, the audit trail, and each command by family (kv, members and tokens,
//! blueprints and assignments here; decisions and the controller in [`super::control`]).
//! Deterministic: the result depends only on the stored state and the request.

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::store::{
    ASSIGNMENTS, AUDIT, BLUEPRINTS, FLEXIBLE, HEALTH, INSTANCES, KV, NODES, OPERATORS, POWER,
    SESSIONS, SPOT_NOTICES, TOKENS, dec, enc, io,
};
use super::txn::{K_AUDIT_SEQ, K_CLUSTER, K_PLACEMENT_SEQ, meta_get, meta_put};
use super::types::{ClusterInit, Command, Request, Response};
use crate::domain::{
    Assignment, AuditRecord, Blueprint, FlexiblePolicy, FlexibleRecord, Health, InstanceStatus,
    Millis, NodeId, NodeRecord, NodeState, OperatorRecord, StoredBlueprint, TokenRecord,
    TokenRefusal,
};

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

/// Apply one request inside `txn`. Deterministic: depends only on the state and the request.
pub(super) fn apply_request(
    txn: &WriteTransaction,
    req: &Request,
) -> Result<Response, std::io::Error> {
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
    // Named before it applies (a removed node is still in the table), as the CLI names nodes.
    let what = audit_summary(txn, &req.cmd)?;
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
        what,
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
    if let Some(r) = super::control::apply(txn, cmd, at, actor, apply_command)? {
        return Ok(r);
    }
    if let Some(r) = super::rollouts::apply(txn, cmd, at, actor)? {
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
            txn.open_table(SPOT_NOTICES)
                .map_err(io)?
                .remove(*id)
                .map_err(io)?;
            txn.open_table(POWER).map_err(io)?.remove(*id).map_err(io)?;
            match txn.open_table(NODES).map_err(io)?.remove(*id).map_err(io)? {
                Some(_) => Response::Ok,
                None => Response::Refused(format!("node id {id} is not a member")),
            }
        }
        Command::SetNodeAddr { id, addr } => {
            let mut nodes = txn.open_table(NODES).map_err(io)?;
            let mut taken_by = None;
            let mut found: Option<NodeRecord> = None;
            for row in nodes.iter().map_err(io)? {
                let (k, v) = row.map_err(io)?;
                let rec: NodeRecord = dec(v.value(), "node")?;
                if k.value() == *id {
                    found = Some(rec);
                } else if rec.addr == *addr {
                    taken_by = Some(rec.name);
                }
            }
            match (found, taken_by) {
                (None, _) => Response::Refused(format!("node id {id} is not a member")),
                (Some(_), Some(other)) => Response::Refused(format!(
                    "address '{addr}' is already node '{other}''s; give each node its own --advertise"
                )),
                (Some(mut rec), None) => {
                    rec.addr = addr.clone();
                    nodes.insert(*id, enc(&rec).as_slice()).map_err(io)?;
                    Response::Ok
                }
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
            if update(txn, TOKENS, id, "token", |t: &mut TokenRecord| {
                t.revoked = true
            })? {
                Response::Ok
            } else {
                Response::Refused(format!("join token '{id}' is unknown"))
            }
        }
        Command::ApplyBlueprint(b) => {
            let mut t = txn.open_table(BLUEPRINTS).map_err(io)?;
            // Two applies racing for one port: the first applied keeps it.
            let mut stored: Vec<StoredBlueprint> = Vec::new();
            for row in t.iter().map_err(io)? {
                let (_, v) = row.map_err(io)?;
                stored.push(dec(v.value(), "blueprint")?);
            }
            if let Some((_, port, other)) = crate::domain::port_taken(b, &stored) {
                return Ok(Response::Refused(format!(
                    "port {port} is the service port of '{other}': choose another port, or change '{other}' first"
                )));
            }
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
            drop(t);
            super::rollouts::stored(txn, &stored, at, &format!("applied by {actor}"))?;
            prune_assignments(txn, &b.name, Some(b))?;
            forget_flexible(txn, &b.name)?;
            Response::Version(version)
        }
        Command::ApplyBlueprintWith {
            blueprint,
            flexible,
        } => apply_with_flexible(txn, blueprint, flexible, at, actor)?,
        Command::FlexibleStep {
            blueprint,
            slice,
            start,
            line,
        } => flexible_step(txn, blueprint, slice, *start, line, at, actor)?,
        Command::RemoveBlueprint { name } => {
            match txn
                .open_table(BLUEPRINTS)
                .map_err(io)?
                .remove(name.as_str())
                .map_err(io)?
            {
                Some(_) => {
                    prune_assignments(txn, name, None)?;
                    forget_flexible(txn, name)?;
                    super::rollouts::removed(txn, name, at)?;
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
                            drop(t);
                            super::rollouts::stored(
                                txn,
                                &stored,
                                at,
                                &format!("scaled by {actor}"),
                            )?;
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
        // Its audit record is the whole of it.
        Command::RecordDrill { .. } => Response::Ok,
        Command::SetPower { record, state } => {
            let mut nodes = txn.open_table(NODES).map_err(io)?;
            let raw = nodes
                .get(record.node)
                .map_err(io)?
                .map(|v| v.value().to_vec());
            match raw {
                None => Response::Refused(format!("node id {} is not a member", record.node)),
                Some(raw) => {
                    if let Some(s) = state {
                        let mut rec: NodeRecord = dec(&raw, "node")?;
                        rec.state = *s;
                        nodes
                            .insert(record.node, enc(&rec).as_slice())
                            .map_err(io)?;
                    }
                    txn.open_table(POWER)
                        .map_err(io)?
                        .insert(record.node, enc(record).as_slice())
                        .map_err(io)?;
                    Response::Ok
                }
            }
        }
        Command::IssueOperatorCert(rec) => {
            if let Err(m) = crate::domain::validate_name("operator name", &rec.name) {
                return Ok(Response::Refused(m));
            }
            txn.open_table(OPERATORS)
                .map_err(io)?
                .insert(rec.name.as_str(), enc(rec).as_slice())
                .map_err(io)?;
            Response::Ok
        }
        Command::RevokeOperatorCert { name } => {
            if update(
                txn,
                OPERATORS,
                name,
                "operator",
                |r: &mut OperatorRecord| r.revoked = true,
            )? {
                Response::Ok
            } else {
                Response::Refused(format!(
                    "no operator '{name}': 'aether operator cert list' shows them"
                ))
            }
        }
        Command::SetSpotNotice { id, notice, .. } => {
            if txn
                .open_table(NODES)
                .map_err(io)?
                .get(*id)
                .map_err(io)?
                .is_none()
            {
                Response::Refused(format!("node id {id} is not a member"))
            } else {
                let mut t = txn.open_table(SPOT_NOTICES).map_err(io)?;
                match notice {
                    Some(n) => t.insert(*id, enc(n).as_slice()).map(|_| ()),
                    None => t.remove(*id).map(|_| ()),
                }
                .map_err(io)?;
                Response::Ok
            }
        }
        Command::RecordDecision(_)
        | Command::ApplyDecision { .. }
        | Command::ApproveDecision { .. }
        | Command::VetoDecision { .. }
        | Command::CloseDecision { .. }
        | Command::RecordOutcome { .. }
        | Command::SetControllerMode { .. }
        | Command::PauseController { .. }
        | Command::ResumeController => unreachable!("control commands are applied by control"),
        Command::UpdateRollout(_) | Command::RolloutOp { .. } => {
            unreachable!("rollout commands are applied by rollouts")
        }
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

/// Change record `key` of `table` with `f` in place; `false` (and nothing written) when there
/// is none.
fn update<T: Serialize + for<'de> Deserialize<'de>>(
    txn: &WriteTransaction,
    table: redb::TableDefinition<&str, &[u8]>,
    key: &str,
    what: &str,
    f: impl FnOnce(&mut T),
) -> Result<bool, std::io::Error> {
    let mut t = txn.open_table(table).map_err(io)?;
    let Some(raw) = t.get(key).map_err(io)?.map(|v| v.value().to_vec()) else {
        return Ok(false);
    };
    let mut rec: T = dec(&raw, what)?;
    f(&mut rec);
    t.insert(key, enc(&rec).as_slice()).map_err(io)?;
    Ok(true)
}

/// Drop the assignments of blueprint `name` that `now` (none: the blueprint is gone) no longer
/// wants, so nodes stop those instances without waiting for the leader's assignment loop: the
/// slices it lost, and beyond `instances` the copies with the highest indices. A slice whose
/// rollout is open is left to the assignment loop (the rollout says which versions stay).
/// Drop the flexible records of blueprint `name` (a new version says its own).
fn forget_flexible(txn: &WriteTransaction, name: &str) -> Result<(), std::io::Error> {
    let prefix = format!("{name}/");
    txn.open_table(FLEXIBLE)
        .map_err(io)?
        .retain(|k, _| !k.starts_with(&prefix))
        .map_err(io)?;
    Ok(())
}

/// Store `b` with its `flexible` slices held at no instance, and a record of each that keeps
/// the count it asked for; nothing is stored when the apply is refused.
fn apply_with_flexible(
    txn: &WriteTransaction,
    b: &Blueprint,
    flexible: &[(String, FlexiblePolicy)],
    at: Millis,
    actor: &str,
) -> Result<Response, std::io::Error> {
    let mut held = b.clone();
    let mut records = Vec::new();
    for (name, policy) in flexible {
        let Some(s) = held.slices.iter_mut().find(|s| s.name == *name) else {
            return Ok(Response::Refused(format!(
                "blueprint '{}' has no slice '{name}' to hold as flexible",
                b.name
            )));
        };
        if s.min > 0 {
            return Ok(Response::Refused(format!(
                "flexible slice '{}/{name}' has min = {}: a held slice runs no instance, set min = 0",
                b.name, s.min
            )));
        }
        records.push(FlexibleRecord {
            blueprint: b.name.clone(),
            slice: name.clone(),
            policy: *policy,
            instances: s.instances,
            applied_at: at,
            latest_start: policy.latest_start(at),
            held: None,
            started: None,
        });
        s.instances = 0;
    }
    let response = apply_command(txn, &Command::ApplyBlueprint(held), at, actor)?;
    if matches!(response, Response::Version(_)) {
        let mut t = txn.open_table(FLEXIBLE).map_err(io)?;
        for r in &records {
            t.insert(r.target().as_str(), enc(r).as_slice())
                .map_err(io)?;
        }
    }
    Ok(response)
}

/// The controller's judgement on a held flexible slice: a new hold line, or its start (the
/// instances it asked for, unless an operator scaled it meanwhile).
fn flexible_step(
    txn: &WriteTransaction,
    blueprint: &str,
    slice: &str,
    start: bool,
    line: &str,
    at: Millis,
    actor: &str,
) -> Result<Response, std::io::Error> {
    let key = format!("{blueprint}/{slice}");
    let rec: Option<FlexibleRecord> = txn
        .open_table(FLEXIBLE)
        .map_err(io)?
        .get(key.as_str())
        .map_err(io)?
        .map(|v| dec(v.value(), "flexible slice"))
        .transpose()?;
    let Some(mut rec) = rec.filter(|r| r.started.is_none()) else {
        return Ok(Response::Refused(format!(
            "'{key}' is not a held flexible slice"
        )));
    };
    if start {
        let scaled = txn
            .open_table(BLUEPRINTS)
            .map_err(io)?
            .get(blueprint)
            .map_err(io)?
            .map(|v| dec::<StoredBlueprint>(v.value(), "blueprint"))
            .transpose()?
            .and_then(|b| b.blueprint.slices.into_iter().find(|s| s.name == slice))
            .is_some_and(|s| s.instances > 0);
        if !scaled && rec.instances > 0 {
            let scale = Command::ScaleSlice {
                blueprint: blueprint.into(),
                slice: slice.into(),
                instances: rec.instances,
            };
            if let Response::Refused(m) = apply_command(txn, &scale, at, actor)? {
                return Ok(Response::Refused(m));
            }
        }
        rec.started = Some((at, line.to_string()));
    } else {
        rec.held = Some(line.to_string());
    }
    txn.open_table(FLEXIBLE)
        .map_err(io)?
        .insert(key.as_str(), enc(&rec).as_slice())
        .map_err(io)?;
    Ok(Response::Ok)
}

fn prune_assignments(
    txn: &WriteTransaction,
    name: &str,
    now: Option<&Blueprint>,
) -> Result<(), std::io::Error> {
    let prefix = format!("{name}/");
    let mut held: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    if let Some(b) = now {
        for s in &b.slices {
            if super::rollouts::open_of(txn, name, &s.name)?.is_some() {
                held.insert(s.name.clone());
            }
        }
    }
    let mut t = txn.open_table(ASSIGNMENTS).map_err(io)?;
    // Per slice, the indices assigned now (lowest first).
    let mut indices: std::collections::BTreeMap<String, Vec<u32>> = Default::default();
    for row in t.range(prefix.as_str()..).map_err(io)? {
        let (k, _) = row.map_err(io)?;
        let Some(rest) = k.value().strip_prefix(&prefix) else {
            break;
        };
        if let Some((slice, index)) = rest.rsplit_once('/') {
            let index: u32 = index.parse().unwrap_or(u32::MAX);
            indices.entry(slice.to_string()).or_default().push(index);
        }
    }
    let mut keep_below: std::collections::BTreeMap<String, u32> = Default::default();
    for (slice, mut ix) in indices {
        ix.sort_unstable();
        let wanted = now
            .and_then(|b| b.slices.iter().find(|s| s.name == slice))
            .map(|s| s.instances as usize);
        let limit = match wanted {
            None => 0,
            Some(_) if held.contains(&slice) => u32::MAX,
            Some(n) => ix.get(n).copied().unwrap_or(u32::MAX),
        };
        keep_below.insert(slice, limit);
    }
    t.retain(|k, _| {
        let Some(rest) = k.strip_prefix(&prefix) else {
            return true;
        };
        let Some((slice, index)) = rest.rsplit_once('/') else {
            return false;
        };
        let index: u32 = index.parse().unwrap_or(u32::MAX);
        keep_below.get(slice).is_none_or(|limit| index < *limit)
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

/// The audit trail's line for `cmd`: nodes by name (`set node n3 draining`), read from the
/// store, so every member writes the same line; an id no member has is written `id 7`.
fn audit_summary(txn: &WriteTransaction, cmd: &Command) -> Result<String, std::io::Error> {
    let names_nodes = matches!(
        cmd,
        Command::RemoveNode { .. }
            | Command::SetNodeState { .. }
            | Command::SetNodeAddr { .. }
            | Command::AssignInstances { .. }
    );
    if !names_nodes {
        return Ok(cmd.summary());
    }
    let mut names = std::collections::BTreeMap::new();
    let t = txn.open_table(NODES).map_err(io)?;
    for row in t.iter().map_err(io)? {
        let (id, v) = row.map_err(io)?;
        let rec: NodeRecord = dec(v.value(), "node")?;
        names.insert(id.value(), rec.name);
    }
    Ok(cmd.summary_named(&|id| {
        names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("id {id}"))
    }))
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
