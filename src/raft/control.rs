//! The control family of the state machine (DESIGN §9): decisions and their lifecycle, the
//! controller's mode and pause. Deterministic like the rest of the state machine.
//!
//! Invariants:
//! - A decision's action runs only inside the entry that moves it to `applied` (an
//!   `ApplyDecision` from the leader, or an operator's `ApproveDecision`), and only from an open
//!   status. A veto closes it, so whichever of apply and veto is first in the log wins, on every
//!   member, whoever the leader is.
//! - `ApplyDecision` of a `pending` decision is refused before its grace deadline (the entry's
//!   time) and while the controller is paused; a `proposed` one waits for an operator.
//! - Only a veto of a decision applied in `auto` mode reverts it, and only when the target still
//!   shows what the decision set.

use redb::{ReadableTable, WriteTransaction};

use std::collections::{BTreeMap, BTreeSet};

use super::store::{BLUEPRINTS, DECISIONS, NODES, POWER, SPOT_NOTICES, dec, enc, io};
use super::txn::{K_CONTROL, K_DECISION_SEQ, K_MEMBERSHIP, meta_get, meta_put};
use super::types::{Command, Response};
use crate::domain::{
    Action, ControlState, ControllerMode, Decision, DecisionStatus, Millis, NodeId, NodeRecord,
    NodeState, Pause, PowerRecord, PowerState, StoredBlueprint, human_millis,
};

/// The newest decisions kept; older ones are removed as new ones are recorded.
pub const DECISIONS_KEEP: u64 = 10_000;
/// Timeline entries kept per decision.
const TIMELINE_KEEP: usize = 32;

/// The stored controller state (the defaults until someone set it).
fn control(txn: &WriteTransaction) -> Result<ControlState, std::io::Error> {
    Ok(meta_get(txn, K_CONTROL)?.unwrap_or_default())
}

fn get(txn: &WriteTransaction, id: u64) -> Result<Option<Decision>, std::io::Error> {
    let t = txn.open_table(DECISIONS).map_err(io)?;
    let v = t.get(id).map_err(io)?;
    v.map(|v| dec(v.value(), "decision")).transpose()
}

fn put(txn: &WriteTransaction, d: &mut Decision) -> Result<(), std::io::Error> {
    if d.timeline.len() > TIMELINE_KEEP {
        let cut = d.timeline.len() - TIMELINE_KEEP;
        d.timeline.drain(..cut);
    }
    txn.open_table(DECISIONS)
        .map_err(io)?
        .insert(d.id, enc(d).as_slice())
        .map_err(io)?;
    Ok(())
}

/// Why an operator cannot act on `d` any more.
fn final_state(d: &Decision) -> String {
    let when = |at: &Millis| format!("at {}", crate::domain::clock_time(*at));
    match &d.status {
        DecisionStatus::Applied { at, by } => {
            format!("{} is already applied ({} by {by})", d.name(), when(at))
        }
        DecisionStatus::Vetoed { at, by, .. } => {
            format!("{} is already vetoed ({} by {by})", d.name(), when(at))
        }
        DecisionStatus::Rejected { reason } => format!("{} was rejected: {reason}", d.name()),
        DecisionStatus::Superseded { reason } => format!("{} was superseded: {reason}", d.name()),
        DecisionStatus::Failed { error } => format!("{} failed: {error}", d.name()),
        DecisionStatus::Expired { reason } => format!("{} expired: {reason}", d.name()),
        s => format!("{} is {}", d.name(), s.word()),
    }
}

fn unknown(id: u64) -> Response {
    Response::Refused(format!(
        "no decision d-{id}: 'aether decisions --all' lists them"
    ))
}

/// Applies a command of another family inside the same transaction (a decision's action, a
/// revert): the dispatcher hands itself in, so this family does not import it.
pub(super) type ApplyFn =
    fn(&WriteTransaction, &Command, Millis, &str) -> Result<Response, std::io::Error>;

/// Apply one control command; `None` when `cmd` is not of this family.
pub(super) fn apply(
    txn: &WriteTransaction,
    cmd: &Command,
    at: Millis,
    actor: &str,
    run: ApplyFn,
) -> Result<Option<Response>, std::io::Error> {
    Ok(Some(match cmd {
        Command::RecordDecision(d) => {
            let id: u64 = meta_get(txn, K_DECISION_SEQ)?.unwrap_or(0) + 1;
            meta_put(txn, K_DECISION_SEQ, &id)?;
            let mut d = (**d).clone();
            d.id = id;
            d.at = at;
            if d.timeline.is_empty() {
                d.timeline
                    .push((at, format!("{} by {}", d.status.word(), d.by)));
            }
            put(txn, &mut d)?;
            if id > DECISIONS_KEEP {
                txn.open_table(DECISIONS)
                    .map_err(io)?
                    .remove(id - DECISIONS_KEEP)
                    .map_err(io)?;
            }
            Response::Decision(id)
        }
        Command::ApplyDecision { id } => {
            let Some(mut d) = get(txn, *id)? else {
                return Ok(Some(unknown(*id)));
            };
            match d.status {
                DecisionStatus::Pending { deadline } if at < deadline => {
                    Response::Refused(format!(
                        "{} is pending until its grace deadline ({} from now)",
                        d.name(),
                        human_millis(deadline - at)
                    ))
                }
                DecisionStatus::Pending { .. } => {
                    if let Some(p) = control(txn)?.paused {
                        Response::Refused(format!(
                            "the controller is paused (by {}): {} is not applied",
                            p.by,
                            d.name()
                        ))
                    } else {
                        execute(txn, &mut d, at, actor, run)?
                    }
                }
                DecisionStatus::Proposed => Response::Refused(format!(
                    "{} is proposed: only an operator's approve applies it",
                    d.name()
                )),
                _ => Response::Refused(final_state(&d)),
            }
        }
        Command::ApproveDecision { id } => {
            let Some(mut d) = get(txn, *id)? else {
                return Ok(Some(unknown(*id)));
            };
            if !d.status.is_open() {
                return Ok(Some(Response::Refused(final_state(&d))));
            }
            d.timeline.push((at, format!("approved by {actor}")));
            execute(txn, &mut d, at, actor, run)?
        }
        Command::VetoDecision { id, reason } => {
            let Some(mut d) = get(txn, *id)? else {
                return Ok(Some(unknown(*id)));
            };
            let reverted = match &d.status {
                s if s.is_open() => None,
                DecisionStatus::Applied { .. } if d.mode == ControllerMode::Auto => {
                    Some(revert(txn, &d, at, run)?)
                }
                DecisionStatus::Applied { .. } => {
                    return Ok(Some(Response::Refused(format!(
                        "{}; it was made in {} mode, where a veto must come before its grace deadline (only decisions applied in auto mode are reverted by a veto): change it back by hand, e.g. 'aether scale'",
                        final_state(&d),
                        d.mode
                    ))));
                }
                _ => return Ok(Some(Response::Refused(final_state(&d)))),
            };
            let mut line = format!("vetoed by {actor}");
            if let Some(r) = reason {
                line.push_str(&format!(": {r}"));
            }
            if let Some(r) = &reverted {
                line.push_str(&format!("; {r}"));
            }
            d.timeline.push((at, line));
            d.status = DecisionStatus::Vetoed {
                at,
                by: actor.to_string(),
                reason: reason.clone(),
                reverted,
            };
            put(txn, &mut d)?;
            Response::Ok
        }
        Command::CloseDecision { id, status } => {
            let Some(mut d) = get(txn, *id)? else {
                return Ok(Some(unknown(*id)));
            };
            if status.is_open()
                || matches!(
                    status,
                    DecisionStatus::Applied { .. } | DecisionStatus::Vetoed { .. }
                )
            {
                return Ok(Some(Response::Refused(format!(
                    "a decision is closed as rejected, superseded, failed or expired, not {}",
                    status.word()
                ))));
            }
            if !d.status.is_open() {
                return Ok(Some(Response::Refused(final_state(&d))));
            }
            d.timeline.push((at, describe(status)));
            d.status = status.clone();
            put(txn, &mut d)?;
            Response::Ok
        }
        Command::RecordOutcome { id, outcome } => {
            let Some(mut d) = get(txn, *id)? else {
                return Ok(Some(unknown(*id)));
            };
            d.timeline.push((
                at,
                format!("outcome: {} ({})", outcome.verdict, outcome.detail),
            ));
            d.outcome = Some(outcome.clone());
            put(txn, &mut d)?;
            Response::Ok
        }
        Command::SetControllerMode { mode, grace_ms } => {
            let mut c = control(txn)?;
            c.mode = *mode;
            if grace_ms.is_some() {
                c.grace_ms = *grace_ms;
            }
            c.mode_set = Some((at, actor.to_string()));
            meta_put(txn, K_CONTROL, &c)?;
            // A pending decision waits for a veto only in guarded mode; in observe or propose
            // it waits for an operator instead.
            if matches!(mode, ControllerMode::Observe | ControllerMode::Propose) {
                let open: Vec<Decision> = open_decisions(txn)?;
                for mut d in open {
                    if matches!(d.status, DecisionStatus::Pending { .. }) {
                        d.status = DecisionStatus::Proposed;
                        d.timeline.push((
                            at,
                            format!("proposed: mode set to {mode}, it waits for an approve"),
                        ));
                        put(txn, &mut d)?;
                    }
                }
            }
            Response::Ok
        }
        Command::PauseController { reason } => {
            let mut c = control(txn)?;
            c.paused = Some(Pause {
                by: actor.to_string(),
                at,
                reason: reason.clone(),
            });
            meta_put(txn, K_CONTROL, &c)?;
            Response::Ok
        }
        Command::ResumeController => {
            let mut c = control(txn)?;
            if c.paused.take().is_none() {
                return Ok(Some(Response::Refused(
                    "the controller is not paused".into(),
                )));
            }
            meta_put(txn, K_CONTROL, &c)?;
            Response::Ok
        }
        _ => return Ok(None),
    }))
}

fn describe(s: &DecisionStatus) -> String {
    match s {
        DecisionStatus::Rejected { reason } => format!("rejected: {reason}"),
        DecisionStatus::Superseded { reason } => format!("superseded: {reason}"),
        DecisionStatus::Failed { error } => format!("failed: {error}"),
        DecisionStatus::Expired { reason } => format!("expired: {reason}"),
        s => s.word().to_string(),
    }
}

fn open_decisions(txn: &WriteTransaction) -> Result<Vec<Decision>, std::io::Error> {
    let t = txn.open_table(DECISIONS).map_err(io)?;
    let mut out = Vec::new();
    for row in t.iter().map_err(io)?.rev().take(256) {
        let (_, v) = row.map_err(io)?;
        let d: Decision = dec(v.value(), "decision")?;
        if d.status.is_open() {
            out.push(d);
        }
    }
    Ok(out)
}

fn node(txn: &WriteTransaction, id: u64) -> Result<Option<NodeRecord>, std::io::Error> {
    let t = txn.open_table(NODES).map_err(io)?;
    let v = t.get(id).map_err(io)?;
    v.map(|v| dec(v.value(), "node")).transpose()
}

/// Whether node `id` may be drained (by a drain or a sleep): a member, ready, and not the
/// last ready node.
fn may_drain(
    txn: &WriteTransaction,
    id: u64,
    name: &str,
) -> Result<Result<(), DecisionStatus>, std::io::Error> {
    Ok(match node(txn, id)? {
        None => Err(DecisionStatus::Failed {
            error: format!("node '{name}' is no longer a member"),
        }),
        Some(n) if n.state != NodeState::Ready => Err(DecisionStatus::Superseded {
            reason: format!("node '{name}' is {} already", n.state),
        }),
        Some(_) => {
            let others = super::txn::ready_nodes(txn)?
                .into_iter()
                .filter(|r| r.id != id)
                .count();
            if others == 0 {
                Err(DecisionStatus::Rejected {
                    reason: format!("'{name}' is the last ready node"),
                })
            } else {
                Ok(())
            }
        }
    })
}

fn power(txn: &WriteTransaction, id: u64) -> Result<Option<PowerRecord>, std::io::Error> {
    let t = txn.open_table(POWER).map_err(io)?;
    let v = t.get(id).map_err(io)?;
    v.map(|v| dec(v.value(), "power record")).transpose()
}

/// Whether the cloud announced something about node `id`'s machine (a spot notice): power then
/// leaves its node state to the interruption policy.
fn has_notice(txn: &WriteTransaction, id: u64) -> Result<bool, std::io::Error> {
    let t = txn.open_table(SPOT_NOTICES).map_err(io)?;
    Ok(t.get(id).map_err(io)?.is_some())
}

/// The Raft voters, from the membership the state machine last applied.
fn voters(txn: &WriteTransaction) -> Result<BTreeSet<NodeId>, std::io::Error> {
    let m: Option<openraft::StoredMembership<NodeId, super::Node>> = meta_get(txn, K_MEMBERSHIP)?;
    Ok(m.map(|m| m.membership().voter_ids().collect())
        .unwrap_or_default())
}

/// Why putting node `id` to sleep could lose the quorum, if it could: the other voters that
/// are ready and neither asleep nor going to sleep must stay a majority of all voters. Only
/// replicated state decides (no clock, no local settings), so every member agrees.
pub(super) fn sleep_loses_quorum(
    id: NodeId,
    name: &str,
    voters: &BTreeSet<NodeId>,
    nodes: &BTreeMap<NodeId, NodeRecord>,
    power: &BTreeMap<NodeId, PowerRecord>,
) -> Option<String> {
    if !voters.contains(&id) {
        return None;
    }
    let left = voters
        .iter()
        .filter(|v| **v != id)
        .filter(|v| nodes.get(v).is_some_and(|n| n.state == NodeState::Ready))
        .filter(|v| {
            power.get(v).is_none_or(|p| {
                !matches!(
                    p.state,
                    PowerState::Asleep | PowerState::Sleeping | PowerState::Down
                )
            })
        })
        .count();
    (left <= voters.len() / 2).then(|| {
        format!(
            "'{name}' is a voter and only {left} of the {} voters would stay ready and awake, not a majority: one node sleeps at a time",
            voters.len()
        )
    })
}

/// [`sleep_loses_quorum`] over the stored members, power records and membership.
fn sleep_quorum(
    txn: &WriteTransaction,
    id: NodeId,
    name: &str,
) -> Result<Option<String>, std::io::Error> {
    let voters = voters(txn)?;
    if !voters.contains(&id) {
        return Ok(None);
    }
    let mut nodes = BTreeMap::new();
    for row in txn.open_table(NODES).map_err(io)?.iter().map_err(io)? {
        let (k, v) = row.map_err(io)?;
        nodes.insert(k.value(), dec::<NodeRecord>(v.value(), "node")?);
    }
    let mut power = BTreeMap::new();
    for row in txn.open_table(POWER).map_err(io)?.iter().map_err(io)? {
        let (k, v) = row.map_err(io)?;
        power.insert(k.value(), dec::<PowerRecord>(v.value(), "power record")?);
    }
    Ok(sleep_loses_quorum(id, name, &voters, &nodes, &power))
}

/// Move node `id` to power state `to` (keeping its measured wake time), and the node itself to
/// `state` when given.
#[allow(clippy::too_many_arguments)]
fn set_power(
    txn: &WriteTransaction,
    id: u64,
    name: &str,
    to: PowerState,
    state: Option<NodeState>,
    at: Millis,
    actor: &str,
    run: ApplyFn,
) -> Result<Result<(), DecisionStatus>, std::io::Error> {
    let wake_ms = power(txn, id)?.and_then(|p| p.wake_ms);
    let record = PowerRecord {
        node: id,
        name: name.to_string(),
        state: to,
        since: at,
        wake_ms,
        reason: None,
    };
    Ok(
        match run(txn, &Command::SetPower { record, state }, at, actor)? {
            Response::Refused(m) => Err(DecisionStatus::Failed { error: m }),
            _ => Ok(()),
        },
    )
}

fn slice_instances(
    txn: &WriteTransaction,
    blueprint: &str,
    slice: &str,
) -> Result<Option<u32>, std::io::Error> {
    let t = txn.open_table(BLUEPRINTS).map_err(io)?;
    let v = t.get(blueprint).map_err(io)?;
    let stored: Option<StoredBlueprint> = v.map(|v| dec(v.value(), "blueprint")).transpose()?;
    Ok(stored.and_then(|s| {
        s.blueprint
            .slices
            .iter()
            .find(|s| s.name == slice)
            .map(|s| s.instances)
    }))
}

/// Run the decision's action and record the result: applied, superseded (the target moved on
/// since the decision was made) or failed.
fn execute(
    txn: &WriteTransaction,
    d: &mut Decision,
    at: Millis,
    actor: &str,
    run: ApplyFn,
) -> Result<Response, std::io::Error> {
    let outcome: Result<(), DecisionStatus> = match &d.action {
        Action::Scale {
            blueprint,
            slice,
            from,
            to,
        } => match slice_instances(txn, blueprint, slice)? {
            None => Err(DecisionStatus::Failed {
                error: format!("'{blueprint}/{slice}' no longer exists"),
            }),
            Some(now) if now != *from => Err(DecisionStatus::Superseded {
                reason: format!(
                    "'{blueprint}/{slice}' has {now} instances now, not the {from} the decision was made for"
                ),
            }),
            Some(_) => {
                let cmd = Command::ScaleSlice {
                    blueprint: blueprint.clone(),
                    slice: slice.clone(),
                    instances: *to,
                };
                match run(txn, &cmd, at, actor)? {
                    Response::Refused(m) => Err(DecisionStatus::Failed { error: m }),
                    _ => Ok(()),
                }
            }
        },
        Action::Drain { node: id, name } => match may_drain(txn, *id, name)? {
            Err(e) => Err(e),
            Ok(()) => set_state(txn, *id, NodeState::Draining, at, actor, run)?,
        },
        Action::Undrain { node: id, name } => match node(txn, *id)? {
            None => Err(DecisionStatus::Failed {
                error: format!("node '{name}' is no longer a member"),
            }),
            Some(n) if n.state == NodeState::Ready => Err(DecisionStatus::Superseded {
                reason: format!("node '{name}' is ready already"),
            }),
            Some(_) => set_state(txn, *id, NodeState::Ready, at, actor, run)?,
        },
        Action::Rollback { rollout, .. } => Err(DecisionStatus::Rejected {
            reason: format!(
                "a rollback is carried out by its rollout (r-{rollout}), never by a decision"
            ),
        }),
        // Sleep drains the node; the leader's power loop suspends it once it is drained.
        Action::Sleep { node: id, name } => match may_drain(txn, *id, name)? {
            Err(e) => Err(e),
            Ok(()) if has_notice(txn, *id)? => Err(DecisionStatus::Superseded {
                reason: format!(
                    "the cloud announced something about '{name}''s machine (a spot notice): it is not put to sleep"
                ),
            }),
            Ok(()) => match sleep_quorum(txn, *id, name)? {
                Some(reason) => Err(DecisionStatus::Superseded { reason }),
                None => match set_state(txn, *id, NodeState::Draining, at, actor, run)? {
                    Ok(()) => {
                        set_power(txn, *id, name, PowerState::Sleeping, None, at, actor, run)?
                    }
                    Err(e) => Err(e),
                },
            },
        },
        // Wake marks the node waking; the leader's power loop runs its resume command.
        Action::Wake { node: id, name } => match node(txn, *id)? {
            None => Err(DecisionStatus::Failed {
                error: format!("node '{name}' is no longer a member"),
            }),
            Some(n) if n.state != NodeState::Asleep => Err(DecisionStatus::Superseded {
                reason: format!("node '{name}' is {}, not asleep", n.state),
            }),
            // A second wake must not restart the resume, its timeout and the wake measurement.
            Some(_) if power(txn, *id)?.is_some_and(|p| p.state == PowerState::Waking) => {
                Err(DecisionStatus::Superseded {
                    reason: format!("node '{name}' is waking already"),
                })
            }
            Some(_) => set_power(txn, *id, name, PowerState::Waking, None, at, actor, run)?,
        },
    };
    let resp = match outcome {
        Ok(()) => {
            d.timeline.push((at, format!("applied by {actor}")));
            d.status = DecisionStatus::Applied {
                at,
                by: actor.to_string(),
            };
            Response::Ok
        }
        Err(status) => {
            let msg = format!("{} not applied: {}", d.name(), describe(&status));
            d.timeline.push((at, describe(&status)));
            d.status = status;
            Response::Refused(msg)
        }
    };
    put(txn, d)?;
    Ok(resp)
}

fn set_state(
    txn: &WriteTransaction,
    id: u64,
    state: NodeState,
    at: Millis,
    actor: &str,
    run: ApplyFn,
) -> Result<Result<(), DecisionStatus>, std::io::Error> {
    Ok(
        match run(txn, &Command::SetNodeState { id, state }, at, actor)? {
            Response::Refused(m) => Err(DecisionStatus::Failed { error: m }),
            _ => Ok(()),
        },
    )
}

/// Undo an applied `auto` decision when its target still shows what it set; says what it did.
fn revert(
    txn: &WriteTransaction,
    d: &Decision,
    at: Millis,
    run: ApplyFn,
) -> Result<String, std::io::Error> {
    let actor = "revert";
    Ok(match &d.action {
        Action::Scale {
            blueprint,
            slice,
            from,
            to,
        } => match slice_instances(txn, blueprint, slice)? {
            Some(now) if now == *to => {
                let cmd = Command::ScaleSlice {
                    blueprint: blueprint.clone(),
                    slice: slice.clone(),
                    instances: *from,
                };
                match run(txn, &cmd, at, actor)? {
                    Response::Refused(m) => format!("not reverted: {m}"),
                    _ => format!("reverted: {blueprint}/{slice} back to {from} instances"),
                }
            }
            Some(now) => format!(
                "not reverted: {blueprint}/{slice} has {now} instances now, not the {to} it set"
            ),
            None => format!("not reverted: '{blueprint}/{slice}' no longer exists"),
        },
        Action::Drain { node: id, name } => match node(txn, *id)? {
            Some(n) if matches!(n.state, NodeState::Draining | NodeState::Drained) => {
                match set_state(txn, *id, NodeState::Ready, at, actor, run)? {
                    Ok(()) => format!("reverted: {name} is ready again"),
                    Err(s) => format!("not reverted: {}", describe(&s)),
                }
            }
            _ => format!("not reverted: {name} is no longer draining"),
        },
        Action::Undrain { node: id, name } => match node(txn, *id)? {
            Some(n) if n.state == NodeState::Ready => {
                match set_state(txn, *id, NodeState::Draining, at, actor, run)? {
                    Ok(()) => format!("reverted: {name} is draining again"),
                    Err(s) => format!("not reverted: {}", describe(&s)),
                }
            }
            _ => format!("not reverted: {name} is no longer ready"),
        },
        Action::Rollback {
            blueprint,
            slice,
            from,
            ..
        } => format!(
            "not reverted: a rollback is undone by rolling out again ('aether rollout undo {blueprint}/{slice} --to {from}')"
        ),
        // Only a node not yet suspended can be kept awake.
        Action::Sleep { node: id, name } => match (node(txn, *id)?, power(txn, *id)?) {
            (Some(n), Some(p))
                if matches!(n.state, NodeState::Draining | NodeState::Drained)
                    && p.state == PowerState::Sleeping =>
            {
                // A node with a spot notice stays draining: the interruption policy owns it.
                let notice = has_notice(txn, *id)?;
                let to = (!notice).then_some(NodeState::Ready);
                match set_power(txn, *id, name, PowerState::Awake, to, at, actor, run)? {
                    Ok(()) if notice => format!(
                        "reverted: {name} stays awake; it stays {} (a spot notice)",
                        n.state
                    ),
                    Ok(()) => format!("reverted: {name} stays awake and is ready again"),
                    Err(s) => format!("not reverted: {}", describe(&s)),
                }
            }
            _ => format!("not reverted: {name} is suspended already; wake it instead"),
        },
        Action::Wake { name, .. } => {
            format!("not reverted: {name} was resumed already; it can be put to sleep again")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(states: &[(NodeId, NodeState)]) -> BTreeMap<NodeId, NodeRecord> {
        states
            .iter()
            .map(|(id, state)| {
                let rec = NodeRecord {
                    id: *id,
                    name: format!("n{id}"),
                    addr: String::new(),
                    state: *state,
                    joined_at: 0,
                };
                (*id, rec)
            })
            .collect()
    }

    fn record(id: NodeId, state: PowerState) -> (NodeId, PowerRecord) {
        let rec = PowerRecord {
            node: id,
            name: format!("n{id}"),
            state,
            since: 0,
            wake_ms: None,
            reason: None,
        };
        (id, rec)
    }

    #[test]
    fn a_sleep_that_would_lose_the_quorum_is_refused_from_replicated_state_alone() {
        let voters: BTreeSet<NodeId> = [1, 2, 3, 4, 5].into();
        let ready = NodeState::Ready;
        let all = members(&[(1, ready), (2, ready), (3, ready), (4, ready), (5, ready)]);
        let none = BTreeMap::new();
        // Five voters, all awake: one may sleep (four of five stay).
        assert_eq!(sleep_loses_quorum(5, "n5", &voters, &all, &none), None);
        // Two already going to sleep (one applied, its node draining): a third would leave two.
        let mut nodes = all.clone();
        nodes.get_mut(&4).unwrap().state = NodeState::Draining;
        let power: BTreeMap<_, _> = [
            record(3, PowerState::Sleeping),
            record(4, PowerState::Sleeping),
        ]
        .into();
        let why = sleep_loses_quorum(5, "n5", &voters, &nodes, &power).unwrap();
        assert!(
            why.contains("'n5' is a voter and only 2 of the 5 voters would stay"),
            "{why}"
        );
        // Asleep and down count as away too; awake and waking-by-record on a ready node do not.
        let power: BTreeMap<_, _> =
            [record(3, PowerState::Asleep), record(4, PowerState::Awake)].into();
        assert_eq!(sleep_loses_quorum(5, "n5", &voters, &all, &power), None);
        let power: BTreeMap<_, _> =
            [record(3, PowerState::Asleep), record(4, PowerState::Down)].into();
        assert!(sleep_loses_quorum(5, "n5", &voters, &all, &power).is_some());
        // A learner's sleep never touches the quorum.
        assert_eq!(sleep_loses_quorum(9, "n9", &voters, &nodes, &power), None);
        // The last of three voters that are awake stays.
        let three: BTreeSet<NodeId> = [1, 2, 3].into();
        let power: BTreeMap<_, _> = [record(3, PowerState::Sleeping)].into();
        assert!(sleep_loses_quorum(2, "n2", &three, &all, &power).is_some());
    }
}
