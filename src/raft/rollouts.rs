//! The rollouts family of the state machine (DESIGN §8): blueprint versions kept for copies
//! that still run them and for undo, rollouts started when a stored version needs new
//! processes, the engine's updates and the operators' acts. Deterministic like the rest.
//!
//! Invariants:
//! - A copy (assignment) always runs a version this family can read: the stored one, or one
//!   kept in `BLUEPRINT_VERSIONS` because a copy or an open rollout refers to it.
//! - A new version that needs no new processes relabels the copies in place (no restart); one
//!   that does opens a rollout in the same entry, so no loop ever sees a changed slice without
//!   the rollout that governs it. At most one rollout per slice is open.
//! - The engine's write is applied only over the revision it read, and only while open.
//! - A rollout that ends rolled back stores the old version's slice again as a new version,
//!   in the same entry, so the stored blueprint and what runs agree.

use std::collections::{BTreeMap, BTreeSet};

use redb::{ReadableTable, WriteTransaction};

use super::store::{
    ASSIGNMENTS, BLUEPRINT_VERSIONS, BLUEPRINTS, ROLLOUTS, ROLLOUTS_OPEN, dec, enc, io,
};
use super::txn::{K_ROLLOUT_SEQ, meta_get, meta_put};
use super::types::{Command, Response};
use crate::domain::{
    Assignment, Blueprint, Millis, Rollout, RolloutOp, RolloutState, RolloutStep, Slice,
    StoredBlueprint, Strategy, TrafficSplit, UpdatePolicy,
};

/// Rollouts kept (the oldest closed ones are dropped first).
const ROLLOUTS_KEEP: u64 = 500;
/// History lines kept per rollout.
const HISTORY_KEEP: usize = 64;
/// Analysis records kept per rollout.
const ANALYSIS_KEEP: usize = 32;
/// Unreferenced versions kept per blueprint (for undo), newest first.
const VERSIONS_KEEP: usize = 10;

/// The key of version `version` of blueprint `name` in `BLUEPRINT_VERSIONS`.
pub(super) fn version_key(name: &str, version: u64) -> String {
    format!("{name}@{version:012}")
}

/// Version `version` of blueprint `name`, if kept.
pub(super) fn version(
    txn: &WriteTransaction,
    name: &str,
    version: u64,
) -> Result<Option<StoredBlueprint>, std::io::Error> {
    let t = txn.open_table(BLUEPRINT_VERSIONS).map_err(io)?;
    let v = t.get(version_key(name, version).as_str()).map_err(io)?;
    v.map(|v| dec(v.value(), "blueprint version")).transpose()
}

fn get(txn: &WriteTransaction, id: u64) -> Result<Option<Rollout>, std::io::Error> {
    let t = txn.open_table(ROLLOUTS).map_err(io)?;
    let v = t.get(id).map_err(io)?;
    v.map(|v| dec(v.value(), "rollout")).transpose()
}

fn put(txn: &WriteTransaction, r: &mut Rollout) -> Result<(), std::io::Error> {
    if r.history.len() > HISTORY_KEEP {
        let cut = r.history.len() - HISTORY_KEEP;
        r.history.drain(..cut);
    }
    if r.analysis.len() > ANALYSIS_KEEP {
        let cut = r.analysis.len() - ANALYSIS_KEEP;
        r.analysis.drain(..cut);
    }
    txn.open_table(ROLLOUTS)
        .map_err(io)?
        .insert(r.id, enc(r).as_slice())
        .map_err(io)?;
    let mut open = txn.open_table(ROLLOUTS_OPEN).map_err(io)?;
    if r.state.is_open() {
        open.insert(r.id, [].as_slice()).map_err(io)?;
    } else {
        open.remove(r.id).map_err(io)?;
    }
    Ok(())
}

/// The open rollouts, by the index.
fn open(txn: &WriteTransaction) -> Result<Vec<Rollout>, std::io::Error> {
    let ids: Vec<u64> = {
        let t = txn.open_table(ROLLOUTS_OPEN).map_err(io)?;
        let mut ids = Vec::new();
        for row in t.iter().map_err(io)? {
            ids.push(row.map_err(io)?.0.value());
        }
        ids
    };
    let mut out = Vec::new();
    for id in ids {
        if let Some(r) = get(txn, id)? {
            out.push(r);
        }
    }
    Ok(out)
}

/// Every stored rollout, oldest first.
fn all(txn: &WriteTransaction) -> Result<Vec<Rollout>, std::io::Error> {
    let t = txn.open_table(ROLLOUTS).map_err(io)?;
    let mut out = Vec::new();
    for row in t.iter().map_err(io)? {
        let (_, v) = row.map_err(io)?;
        out.push(dec(v.value(), "rollout")?);
    }
    Ok(out)
}

/// The open rollout of `blueprint/slice`, if any.
pub(super) fn open_of(
    txn: &WriteTransaction,
    blueprint: &str,
    slice: &str,
) -> Result<Option<Rollout>, std::io::Error> {
    Ok(open(txn)?
        .into_iter()
        .rev()
        .find(|r| r.blueprint == blueprint && r.slice == slice && r.state.is_open()))
}

/// The assignments of blueprint `name`, by key.
fn copies(
    txn: &WriteTransaction,
    name: &str,
) -> Result<BTreeMap<String, Assignment>, std::io::Error> {
    let prefix = format!("{name}/");
    let t = txn.open_table(ASSIGNMENTS).map_err(io)?;
    let mut out = BTreeMap::new();
    for row in t.range(prefix.as_str()..).map_err(io)? {
        let (k, v) = row.map_err(io)?;
        if !k.value().starts_with(&prefix) {
            break;
        }
        out.insert(k.value().to_string(), dec(v.value(), "assignment")?);
    }
    Ok(out)
}

/// The slice of an instance key `blueprint/slice/index`.
fn slice_of(key: &str) -> Option<&str> {
    let mut parts = key.splitn(3, '/');
    parts.next()?;
    parts.next()
}

/// A rollout of `slice` from `from` to `to`, at its first step.
fn begin(
    id: u64,
    blueprint: &str,
    slice: &Slice,
    (from, to): (u64, u64),
    cause: String,
    at: Millis,
) -> Rollout {
    let policy = slice.update_policy();
    let n = slice.instances;
    let (step, want_to, traffic) = match policy.strategy {
        Strategy::Rolling => (
            RolloutStep::Replace,
            n.min(policy.max_parallel),
            TrafficSplit::ByCopies,
        ),
        Strategy::Canary => (
            RolloutStep::CanaryStart,
            policy.canary,
            TrafficSplit::Weighted {
                to_pct: policy.canary_traffic_pct,
            },
        ),
        Strategy::BlueGreen => (
            RolloutStep::GreenStart,
            n,
            TrafficSplit::Only { version: from },
        ),
    };
    let first = format!(
        "started ({cause}): v{from} → v{to}, {} of {n}, {}",
        policy.strategy,
        match policy.strategy {
            Strategy::Rolling => format!("{} at a time", policy.max_parallel),
            Strategy::Canary => format!(
                "{} canary with {}% of the requests",
                policy.canary, policy.canary_traffic_pct
            ),
            Strategy::BlueGreen => "a full new set beside the old".into(),
        }
    );
    Rollout {
        id,
        blueprint: blueprint.to_string(),
        slice: slice.name.clone(),
        from,
        to,
        policy,
        cause,
        state: RolloutState::Running,
        step,
        step_since: at,
        want_to,
        want_from: n,
        traffic,
        progress_at: at,
        started_at: at,
        ended_at: None,
        base: None,
        analysis: Vec::new(),
        reason: None,
        history: vec![(at, first)],
        rev: 1,
    }
}

fn next_id(txn: &WriteTransaction) -> Result<u64, std::io::Error> {
    let id: u64 = meta_get(txn, K_ROLLOUT_SEQ)?.unwrap_or(0) + 1;
    meta_put(txn, K_ROLLOUT_SEQ, &id)?;
    if id > ROLLOUTS_KEEP
        && let Some(old) = get(txn, id - ROLLOUTS_KEEP)?
        && !old.state.is_open()
    {
        txn.open_table(ROLLOUTS)
            .map_err(io)?
            .remove(old.id)
            .map_err(io)?;
    }
    Ok(id)
}

/// Record that `new` is now the stored version of its blueprint: keep it in the history,
/// relabel the copies that need no new processes, update or start the rollouts of the slices
/// whose copies do (`cause` says why). Returns the rollouts started.
pub(super) fn stored(
    txn: &WriteTransaction,
    new: &StoredBlueprint,
    at: Millis,
    cause: &str,
) -> Result<Vec<u64>, std::io::Error> {
    let name = new.blueprint.name.clone();
    let v = new.version;
    txn.open_table(BLUEPRINT_VERSIONS)
        .map_err(io)?
        .insert(version_key(&name, v).as_str(), enc(new).as_slice())
        .map_err(io)?;
    let mut specs: BTreeMap<u64, Option<Blueprint>> = BTreeMap::new();
    specs.insert(v, Some(new.blueprint.clone()));
    let mut spec =
        |txn: &WriteTransaction, ver: u64, slice: &str| -> Result<Option<Slice>, std::io::Error> {
            if let std::collections::btree_map::Entry::Vacant(e) = specs.entry(ver) {
                e.insert(version(txn, &name, ver)?.map(|s| s.blueprint));
            }
            Ok(specs[&ver]
                .as_ref()
                .and_then(|b| b.slices.iter().find(|s| s.name == slice).cloned()))
        };
    let all_copies = copies(txn, &name)?;
    let mut started = Vec::new();
    let mut relabel: Vec<(String, Assignment)> = Vec::new();
    for s in &new.blueprint.slices {
        let mut differing: BTreeMap<u64, u32> = BTreeMap::new();
        for (k, a) in all_copies
            .iter()
            .filter(|(k, _)| slice_of(k) == Some(s.name.as_str()))
        {
            if a.version == v {
                continue;
            }
            let same =
                spec(txn, a.version, &s.name)?.is_some_and(|old| !old.needs_new_processes(s));
            if same {
                relabel.push((
                    k.clone(),
                    Assignment {
                        version: v,
                        ..a.clone()
                    },
                ));
            } else {
                *differing.entry(a.version).or_default() += 1;
            }
        }
        let open = open_of(txn, &name, &s.name)?;
        if let Some(mut r) = open.clone()
            && spec(txn, r.to, &s.name)?.is_some_and(|to| !to.needs_new_processes(s))
        {
            if r.to != v {
                r.history.push((
                    at,
                    format!(
                        "v{v} ({cause}) needs no new processes: it continues as v{} → v{v}",
                        r.from
                    ),
                ));
                r.to = v;
                r.rev += 1;
                put(txn, &mut r)?;
            }
            continue;
        }
        if differing.is_empty() {
            // Every copy already runs what `v` runs: an open rollout to another version ends.
            if let Some(r) = open {
                let why = format!("ended: v{v} applied ({cause}), and every copy already runs it");
                supersede(txn, r, 0, at, why)?;
            }
            continue;
        }
        let id = next_id(txn)?;
        let from = match &open {
            Some(r) => r.from,
            // The version most of the old copies run.
            None => differing
                .iter()
                .max_by_key(|(ver, n)| (**n, **ver))
                .map(|(ver, _)| *ver)
                .expect("not empty"),
        };
        if let Some(r) = open {
            let why = format!("superseded by r-{id}: v{v} applied ({cause})");
            supersede(txn, r, id, at, why)?;
        }
        let mut r = begin(id, &name, s, (from, v), cause.to_string(), at);
        // Copies that already run what `v` runs (an earlier version applied again mid-rollout)
        // stay: they count as new copies from the start.
        let already = all_copies
            .iter()
            .filter(|(k, a)| slice_of(k) == Some(s.name.as_str()) && a.version == v)
            .count()
            + relabel
                .iter()
                .filter(|(k, _)| slice_of(k) == Some(s.name.as_str()))
                .count();
        r.want_to = r.want_to.max((already as u32).min(s.instances));
        put(txn, &mut r)?;
        started.push(id);
    }
    // Slices no longer in the blueprint: their rollouts end with them.
    for r in open(txn)?.into_iter().filter(|r| {
        r.blueprint == name
            && r.state.is_open()
            && !new.blueprint.slices.iter().any(|s| s.name == r.slice)
    }) {
        supersede(txn, r, 0, at, "ended: the slice was removed".into())?;
    }
    if !relabel.is_empty() {
        let mut t = txn.open_table(ASSIGNMENTS).map_err(io)?;
        for (k, a) in relabel {
            t.insert(k.as_str(), enc(&a).as_slice()).map_err(io)?;
        }
    }
    prune_versions(txn, &name)?;
    Ok(started)
}

/// End open rollout `r` as superseded (`by` the rollout that replaces it, 0: none), saying
/// why in its history.
fn supersede(
    txn: &WriteTransaction,
    mut r: Rollout,
    by: u64,
    at: Millis,
    why: String,
) -> Result<(), std::io::Error> {
    r.state = RolloutState::Superseded { by };
    r.step = RolloutStep::Done;
    r.ended_at = Some(at);
    r.history.push((at, why));
    r.rev += 1;
    put(txn, &mut r)
}

/// Blueprint `name` was removed: end its open rollouts and forget its versions.
pub(super) fn removed(
    txn: &WriteTransaction,
    name: &str,
    at: Millis,
) -> Result<(), std::io::Error> {
    for r in open(txn)?
        .into_iter()
        .filter(|r| r.blueprint == name && r.state.is_open())
    {
        supersede(txn, r, 0, at, "ended: the slice was removed".into())?;
    }
    let prefix = format!("{name}@");
    txn.open_table(BLUEPRINT_VERSIONS)
        .map_err(io)?
        .retain(|k, _| !k.starts_with(&prefix))
        .map_err(io)?;
    Ok(())
}

/// Drop the versions of `name` that no copy or open rollout runs, beyond the newest
/// [`VERSIONS_KEEP`] and those a kept rollout went from or to (undo targets).
fn prune_versions(txn: &WriteTransaction, name: &str) -> Result<(), std::io::Error> {
    let mut keep: BTreeSet<u64> = copies(txn, name)?.values().map(|a| a.version).collect();
    for r in all(txn)?.iter().filter(|r| r.blueprint == name) {
        keep.insert(r.from);
        keep.insert(r.to);
    }
    let mut versions = kept_versions(txn, name)?;
    versions.reverse();
    let mut t = txn.open_table(BLUEPRINT_VERSIONS).map_err(io)?;
    for ver in versions.into_iter().skip(VERSIONS_KEEP) {
        if !keep.contains(&ver) {
            t.remove(version_key(name, ver).as_str()).map_err(io)?;
        }
    }
    Ok(())
}

/// The kept versions of blueprint `name`, oldest first (the keys sort by version).
fn kept_versions(txn: &WriteTransaction, name: &str) -> Result<Vec<u64>, std::io::Error> {
    let prefix = format!("{name}@");
    let t = txn.open_table(BLUEPRINT_VERSIONS).map_err(io)?;
    let mut out = Vec::new();
    for row in t.range(prefix.as_str()..).map_err(io)? {
        let (k, _) = row.map_err(io)?;
        match k.value().strip_prefix(&prefix).and_then(|v| v.parse().ok()) {
            Some(v) => out.push(v),
            None => break,
        }
    }
    Ok(out)
}

/// The stored blueprint `name`.
fn current(txn: &WriteTransaction, name: &str) -> Result<Option<StoredBlueprint>, std::io::Error> {
    let t = txn.open_table(BLUEPRINTS).map_err(io)?;
    let v = t.get(name).map_err(io)?;
    v.map(|v| dec(v.value(), "blueprint")).transpose()
}

/// Store `cur` with slice `slice` as version `target` had it (keeping the instance count,
/// within that version's min..=max) as the next version; returns it.
fn store_slice_of(
    txn: &WriteTransaction,
    cur: &StoredBlueprint,
    slice: &str,
    target: &Slice,
    at: Millis,
) -> Result<StoredBlueprint, std::io::Error> {
    let mut next = cur.clone();
    next.version += 1;
    next.applied_at = at;
    if let Some(s) = next.blueprint.slices.iter_mut().find(|s| s.name == slice) {
        let instances = s.instances.clamp(target.min, target.max);
        *s = Slice {
            instances,
            ..target.clone()
        };
    }
    txn.open_table(BLUEPRINTS)
        .map_err(io)?
        .insert(next.blueprint.name.as_str(), enc(&next).as_slice())
        .map_err(io)?;
    Ok(next)
}

/// A rollout that went back: store the old version's slice again (the copies that run it are
/// relabelled to the new version), and drop the new version's copies.
fn write_back(
    txn: &WriteTransaction,
    r: &Rollout,
    at: Millis,
) -> Result<Option<u64>, std::io::Error> {
    let Some(cur) = current(txn, &r.blueprint)? else {
        return Ok(None);
    };
    let Some(old) = version(txn, &r.blueprint, r.from)?
        .and_then(|b| b.blueprint.slices.into_iter().find(|s| s.name == r.slice))
    else {
        return Ok(None);
    };
    let prefix = format!("{}/{}/", r.blueprint, r.slice);
    let to = r.to;
    txn.open_table(ASSIGNMENTS)
        .map_err(io)?
        .retain(|k, v| {
            !(k.starts_with(&prefix)
                && postcard::from_bytes::<Assignment>(v).is_ok_and(|a| a.version == to))
        })
        .map_err(io)?;
    let next = store_slice_of(txn, &cur, &r.slice, &old, at)?;
    stored(
        txn,
        &next,
        at,
        &format!("{} rolled back to v{}", r.name(), r.from),
    )?;
    Ok(Some(next.version))
}

/// Apply one rollout command; `None` when `cmd` is not of this family.
pub(super) fn apply(
    txn: &WriteTransaction,
    cmd: &Command,
    at: Millis,
    actor: &str,
) -> Result<Option<Response>, std::io::Error> {
    Ok(Some(match cmd {
        Command::UpdateRollout(r) => {
            let Some(stored_r) = get(txn, r.id)? else {
                return Ok(Some(Response::Refused(format!("no rollout r-{}", r.id))));
            };
            if !stored_r.state.is_open() {
                return Ok(Some(Response::Refused(format!(
                    "{} is {} already",
                    stored_r.name(),
                    stored_r.state.word()
                ))));
            }
            if stored_r.rev != r.rev {
                return Ok(Some(Response::Refused(format!(
                    "{} changed since it was read (revision {} now, {} read): read it again",
                    stored_r.name(),
                    stored_r.rev,
                    r.rev
                ))));
            }
            let mut next = (**r).clone();
            next.rev += 1;
            if let RolloutState::RolledBack { .. } = next.state
                && let Some(v) = write_back(txn, &next, at)?
            {
                next.history
                    .push((at, format!("v{} stored again as v{v}", next.from)));
            }
            put(txn, &mut next)?;
            Response::Rollout(next.id)
        }
        Command::RolloutOp {
            blueprint,
            slice,
            op,
        } => operate(txn, blueprint, slice, op, at, actor)?,
        _ => return Ok(None),
    }))
}

/// An operator's act on `blueprint/slice`'s rollout.
fn operate(
    txn: &WriteTransaction,
    blueprint: &str,
    slice: &str,
    op: &RolloutOp,
    at: Millis,
    actor: &str,
) -> Result<Response, std::io::Error> {
    let target = format!("{blueprint}/{slice}");
    let Some(cur) = current(txn, blueprint)? else {
        return Ok(Response::Refused(format!(
            "no blueprint named '{blueprint}': 'aether blueprint list' shows the stored ones"
        )));
    };
    let Some(cur_slice) = cur
        .blueprint
        .slices
        .iter()
        .find(|s| s.name == slice)
        .cloned()
    else {
        let names: Vec<&str> = cur
            .blueprint
            .slices
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        return Ok(Response::Refused(format!(
            "blueprint '{blueprint}' has no slice '{slice}'; its slices: {}",
            names.join(", ")
        )));
    };
    let open = open_of(txn, blueprint, slice)?;
    let Some(mut r) = open else {
        return match op {
            RolloutOp::Undo { to } => undo_closed(txn, &cur, &cur_slice, *to, at, actor),
            _ => Ok(Response::Refused(format!(
                "'{target}' has no rollout in progress: 'aether rollout history {target}' shows the past ones"
            ))),
        };
    };
    let word = r.state.word();
    let refuse = |why: String| Ok(Response::Refused(format!("{}: {why}", r.name())));
    match op {
        RolloutOp::Pause => {
            if r.state != RolloutState::Running {
                return refuse(format!("is {word}, not running: nothing to pause"));
            }
            if r.step == RolloutStep::Revert {
                return refuse(
                    "is going back to the version before: it is not paused halfway".into(),
                );
            }
            r.state = RolloutState::Paused {
                by: actor.to_string(),
                reason: format!("paused by {actor}"),
            };
            r.history.push((at, format!("paused by {actor}")));
        }
        RolloutOp::Resume => {
            match &r.state {
                RolloutState::Paused { .. } | RolloutState::Failed { .. } => {}
                _ => {
                    return refuse(format!(
                        "is {word}: only a paused or failed rollout resumes"
                    ));
                }
            }
            r.state = RolloutState::Running;
            r.step_since = at;
            r.progress_at = at;
            r.base = None;
            r.history
                .push((at, format!("resumed by {actor} at {}", r.step.name())));
        }
        RolloutOp::Promote => {
            let canary_step = matches!(
                r.step,
                RolloutStep::CanaryStart | RolloutStep::Analysis { .. } | RolloutStep::AwaitPromote
            );
            if !canary_step {
                return refuse(format!(
                    "is at '{}': only a canary is promoted (a rolling update replaces copies by itself, blue/green switches when the new set is healthy)",
                    r.step.name()
                ));
            }
            if matches!(r.state, RolloutState::Failed { .. }) {
                return refuse("failed: abort it, or resume it to try again".into());
            }
            r.state = RolloutState::Running;
            r.step = RolloutStep::Replace;
            r.step_since = at;
            r.progress_at = at;
            r.base = None;
            r.traffic = TrafficSplit::ByCopies;
            r.history
                .push((at, format!("promoted by {actor}: replacing the rest")));
        }
        RolloutOp::Abort | RolloutOp::Undo { .. } => {
            if let RolloutOp::Undo { to: Some(v) } = op
                && *v != r.from
            {
                return refuse(format!(
                    "is moving from v{} to v{}: undo goes back to v{} (abort does the same), or wait for it to end and undo --to v{v}",
                    r.from, r.to, r.from
                ));
            }
            if r.step == RolloutStep::Revert {
                return refuse(format!("is already going back to v{}", r.from));
            }
            let why = format!("{op} by {actor}");
            r.state = RolloutState::Running;
            r.reason = Some(why.clone());
            r.step = RolloutStep::Revert;
            r.step_since = at;
            r.want_from = cur_slice.instances;
            r.traffic = TrafficSplit::Only { version: r.from };
            r.history
                .push((at, format!("{why}: going back to v{}", r.from)));
        }
    }
    r.rev += 1;
    put(txn, &mut r)?;
    Ok(Response::Rollout(r.id))
}

/// Undo with no rollout in progress: store the slice as version `to` had it (default: the
/// version the last succeeded rollout started from) and roll it out all at once.
fn undo_closed(
    txn: &WriteTransaction,
    cur: &StoredBlueprint,
    slice: &Slice,
    to: Option<u64>,
    at: Millis,
    actor: &str,
) -> Result<Response, std::io::Error> {
    let target_name = format!("{}/{}", cur.blueprint.name, slice.name);
    let target = match to {
        Some(v) => v,
        None => {
            let last = all(txn)?
                .into_iter()
                .rev()
                .find(|r| r.blueprint == cur.blueprint.name && r.slice == slice.name);
            match last {
                Some(r) if r.state == RolloutState::Succeeded => r.from,
                Some(r) => {
                    return Ok(Response::Refused(format!(
                        "the last rollout of '{target_name}' ({}) is {}: there is no finished update to undo; name a version with --to",
                        r.name(),
                        r.state.word()
                    )));
                }
                None => {
                    return Ok(Response::Refused(format!(
                        "'{target_name}' has never rolled out: name a version with --to ('aether rollout history {target_name}' lists them)"
                    )));
                }
            }
        }
    };
    let Some(old) = version(txn, &cur.blueprint.name, target)?.and_then(|b| {
        b.blueprint
            .slices
            .into_iter()
            .find(|s| s.name == slice.name)
    }) else {
        let list: Vec<String> = kept_versions(txn, &cur.blueprint.name)?
            .iter()
            .map(|v| format!("v{v}"))
            .collect();
        return Ok(Response::Refused(format!(
            "v{target} of '{target_name}' is not kept (or had no such slice); kept versions: {}",
            list.join(", ")
        )));
    };
    if !old.needs_new_processes(slice) {
        return Ok(Response::Refused(format!(
            "v{target} runs the same processes as the stored v{}: nothing to undo",
            cur.version
        )));
    }
    let next = store_slice_of(txn, cur, &slice.name, &old, at)?;
    let cause = format!("undo to v{target} by {actor}");
    let started = stored(txn, &next, at, &cause)?;
    // An undo goes back at once: every copy in one batch, none waits for min_healthy_time.
    let Some(&id) = started.first() else {
        return Ok(Response::Version(next.version));
    };
    if let Some(mut r) = get(txn, id)? {
        let n = next
            .blueprint
            .slices
            .iter()
            .find(|s| s.name == slice.name)
            .map_or(1, |s| s.instances.max(1));
        r.policy = UpdatePolicy {
            strategy: Strategy::Rolling,
            max_parallel: n,
            min_healthy_ms: 0,
            ..r.policy
        };
        r.step = RolloutStep::Replace;
        r.want_to = n;
        r.traffic = TrafficSplit::ByCopies;
        r.history = vec![(
            at,
            format!(
                "started ({cause}): v{} → v{}, all {n} at once",
                r.from, r.to
            ),
        )];
        put(txn, &mut r)?;
    }
    Ok(Response::Rollout(id))
}
