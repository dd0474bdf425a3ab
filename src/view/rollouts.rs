//! `aether rollout …` and the console's rollout lines: each rollout as an operator reads it
//! (strategy, state, step, versions, copies per version, the traffic split in words, the last
//! analysis interval's numbers, the reason, the history), which rollouts `list`, `status` and
//! `history` show, and what a `blueprint apply` started or would start. Pure functions over the
//! store's records; [`Reader`] is the thin part that reads them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::{
    AnalysisPolicy, AnalysisRecord, Assignment, Blueprint, InstanceState, InstanceStatus, Millis,
    Rollout, RolloutState, RolloutStep, Slice, StoredBlueprint, Strategy, TrafficSplit,
    UpdatePolicy, VersionNumbers,
};
use crate::raft::Cluster;
use crate::raft::api::{ErrorKind, RequestError as AdminError};

/// `rollout list` shows open rollouts and those that ended within this long.
pub const RECENT_MS: Millis = 3_600_000;

/// One rollout as `aether rollout status` and `list` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutView {
    pub id: u64,
    /// `r-<id>`.
    pub name: String,
    /// `blueprint/slice`.
    pub target: String,
    pub blueprint: String,
    pub slice: String,
    pub strategy: Strategy,
    /// `running`, `paused`, `failed`, `succeeded`, `rolled-back` or `superseded`.
    pub state: String,
    /// Running, paused or failed: the rollout still decides how many copies of each version run.
    pub open: bool,
    /// `replace`, `canary-start`, `analysis 2`, `await-promote`, `green-start`, `standby`,
    /// `revert` or `done`.
    pub step: String,
    /// When the step began.
    pub step_since: Millis,
    /// Whether `rollout promote` applies now: an open canary before its promotion, not failed.
    pub promotable: bool,
    /// The version the slice ran.
    pub from: u64,
    /// The version it moves to.
    pub to: u64,
    /// Why it began: `applied by uid:0@n1`, `undo to v6 by …`.
    pub cause: String,
    /// How it moves, in words: `1 at a time`, `1 canary with 10% of the requests, then 1 at
    /// a time`, `a full new set beside the old`.
    pub plan: String,
    /// Copies of `to` and of the others the rollout wants now (while it is open).
    pub want_to: u32,
    pub want_from: u32,
    /// While it is open, the slice's copies per version, `to` first: assigned, and active as
    /// their nodes report. Empty once it ended.
    pub copies: Vec<VersionCopies>,
    /// Where the ingress sends the slice's requests, in words: `v7 10% / v6 90%`, `v7 only`,
    /// `by copies`.
    pub traffic: String,
    /// The canary analysis' thresholds, in words (none without an analysis).
    pub thresholds: Option<String>,
    /// The last analysis interval judged.
    pub analysis: Option<AnalysisView>,
    /// What made it fail, pause or go back (or what replaced it), with the numbers.
    pub reason: Option<String>,
    pub started_at: Millis,
    pub ended_at: Option<Millis>,
    /// Every step and state change, oldest first.
    pub history: Vec<HistoryLine>,
}

/// The copies of one version of a rollout's slice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionCopies {
    pub version: u64,
    /// Copies assigned to run it (placed or pending).
    pub assigned: u32,
    /// Of those, the ones their node reports active.
    pub active: u32,
}

/// One version's numbers over an analysis interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumbersView {
    pub version: u64,
    pub requests: u64,
    pub errors: u64,
    /// Errors ÷ requests, 0–1.
    pub error_rate: f64,
    pub p99_ms: Option<f64>,
}

/// An analysis interval of a canary as judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisView {
    pub round: u32,
    pub from_at: Millis,
    pub to_at: Millis,
    /// The new version's numbers.
    pub canary: NumbersView,
    /// The version before's.
    pub stable: NumbersView,
    /// `pass`, `fail` or `inconclusive`.
    pub verdict: String,
    /// The sentence with the numbers and the threshold.
    pub detail: String,
}

/// One line of a rollout's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryLine {
    pub at: Millis,
    pub what: String,
}

/// A rollout a `blueprint apply` started, or on a dry run would start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutStart {
    /// `r-<id>`; `None` on a dry run.
    pub rollout: Option<String>,
    /// `blueprint/slice`.
    pub target: String,
    pub strategy: Strategy,
    pub from: u64,
    pub to: u64,
    /// How it moves, in words (see [`RolloutView::plan`]).
    pub plan: String,
    /// The slice's copies that run other processes and are replaced.
    pub copies: u32,
    /// The open rollout of the slice it replaces (`r-<id>`).
    pub supersedes: Option<String>,
}

/// `1 at a time`, `1 canary with 10% of the requests, then 2 at a time`, `a full new set
/// beside the old`.
pub fn plan_words(p: &UpdatePolicy) -> String {
    match p.strategy {
        Strategy::Rolling => format!("{} at a time", p.max_parallel),
        Strategy::Canary => format!(
            "{} {} with {}% of the requests, then {} at a time",
            p.canary,
            if p.canary == 1 { "canary" } else { "canaries" },
            p.canary_traffic_pct,
            p.max_parallel
        ),
        Strategy::BlueGreen => "a full new set beside the old".into(),
    }
}

/// The split as words: `v7 10% / v6 90%`, `v7 only`, `by copies`.
pub fn traffic_words(split: &TrafficSplit, from: u64, to: u64) -> String {
    match *split {
        TrafficSplit::ByCopies => "by copies".into(),
        TrafficSplit::Weighted { to_pct } => {
            let to_pct = to_pct.min(100);
            format!("v{to} {to_pct}% / v{from} {}%", 100 - to_pct)
        }
        TrafficSplit::Only { version } => format!("v{version} only"),
    }
}

/// `at least 100 requests per 30s, error rate at most 1.0%, p99 at most 50ms`.
pub fn threshold_words(a: &AnalysisPolicy) -> String {
    let mut s = format!(
        "at least {} requests per {}, error rate at most {}",
        a.min_requests,
        crate::domain::human_millis(a.interval_ms),
        percent(a.max_error_rate)
    );
    if let Some(p) = a.max_p99_ms {
        s.push_str(&format!(", p99 at most {p}ms"));
    }
    s
}

/// A 0–1 rate as `7.5%`.
pub fn percent(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

/// A latency as `38ms`, `0.8ms`, `1.2s`; `-` without one.
pub fn millis(ms: Option<f64>) -> String {
    match ms {
        None => "-".into(),
        Some(v) if v < 10.0 => format!("{v:.1}ms"),
        Some(v) if v < 1000.0 => format!("{v:.0}ms"),
        Some(v) => format!("{:.1}s", v / 1000.0),
    }
}

fn numbers(version: u64, n: &VersionNumbers) -> NumbersView {
    NumbersView {
        version,
        requests: n.calls,
        errors: n.errors,
        error_rate: n.error_rate(),
        p99_ms: n.p99_ms,
    }
}

/// An analysis record of a rollout from `from` to `to`.
pub fn analysis_view(a: &AnalysisRecord, from: u64, to: u64) -> AnalysisView {
    AnalysisView {
        round: a.round,
        from_at: a.from_at,
        to_at: a.to_at,
        canary: numbers(to, &a.canary),
        stable: numbers(from, &a.stable),
        verdict: a.verdict.clone(),
        detail: a.detail.clone(),
    }
}

impl AnalysisView {
    /// `canary v7: 412 requests, error rate 7.5%, p99 38ms; stable v6: 3702 requests, 0.0%,
    /// p99 35ms → fail`.
    pub fn line(&self) -> String {
        let (c, s) = (&self.canary, &self.stable);
        format!(
            "canary v{}: {} requests, error rate {}, p99 {}; stable v{}: {} requests, {}, p99 {} → {}",
            c.version,
            c.requests,
            percent(c.error_rate),
            millis(c.p99_ms),
            s.version,
            s.requests,
            percent(s.error_rate),
            millis(s.p99_ms),
            self.verdict
        )
    }
}

/// The copies of `blueprint/slice` per version, `to` first then the others newest first;
/// `to` and `from` are always listed. A copy is active when the report of its placement on
/// its node says so.
pub fn copies(
    blueprint: &str,
    slice: &str,
    from: u64,
    to: u64,
    assignments: &BTreeMap<String, Assignment>,
    statuses: &[InstanceStatus],
) -> Vec<VersionCopies> {
    let prefix = format!("{blueprint}/{slice}/");
    let mut by: BTreeMap<u64, VersionCopies> = BTreeMap::new();
    for v in [from, to] {
        by.insert(
            v,
            VersionCopies {
                version: v,
                assigned: 0,
                active: 0,
            },
        );
    }
    for (key, a) in assignments
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
    {
        let c = by.entry(a.version).or_insert(VersionCopies {
            version: a.version,
            assigned: 0,
            active: 0,
        });
        c.assigned += 1;
        let active = statuses
            .iter()
            .any(|s| s.instance == *key && a.reported_by(s) && s.state == InstanceState::Active);
        if active {
            c.active += 1;
        }
    }
    let mut out: Vec<VersionCopies> = by.into_values().collect();
    out.sort_by_key(|c| (c.version != to, std::cmp::Reverse(c.version)));
    out
}

/// `v7 1/1 active, v6 4/4 active` (a version without copies: `v6 none`).
pub fn copies_words(copies: &[VersionCopies]) -> String {
    copies
        .iter()
        .map(|c| {
            if c.assigned == 0 {
                format!("v{} none", c.version)
            } else {
                format!("v{} {}/{} active", c.version, c.active, c.assigned)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a rollout is where it is: its state's reason, or while it goes back the one it
/// recorded (a reason left from an earlier pause or failure is not shown once it runs on).
fn reason(r: &Rollout) -> Option<String> {
    match &r.state {
        RolloutState::Failed { reason }
        | RolloutState::RolledBack { reason }
        | RolloutState::Paused { reason, .. } => Some(reason.clone()),
        RolloutState::Superseded { by: 0 } => Some("the slice was removed".into()),
        RolloutState::Superseded { by } => Some(format!("superseded by r-{by}")),
        RolloutState::Running if r.step == RolloutStep::Revert => r.reason.clone(),
        RolloutState::Running | RolloutState::Succeeded => None,
    }
}

/// A rollout as operators read it; `assignments` and `statuses` give its slice's copies.
pub fn rollout_view(
    r: &Rollout,
    assignments: &BTreeMap<String, Assignment>,
    statuses: &[InstanceStatus],
) -> RolloutView {
    let promotable = r.state.is_open()
        && !matches!(r.state, RolloutState::Failed { .. })
        && matches!(
            r.step,
            RolloutStep::CanaryStart | RolloutStep::Analysis { .. } | RolloutStep::AwaitPromote
        );
    RolloutView {
        id: r.id,
        name: r.name(),
        target: r.target(),
        blueprint: r.blueprint.clone(),
        slice: r.slice.clone(),
        strategy: r.policy.strategy,
        state: r.state.word().into(),
        open: r.state.is_open(),
        step: r.step.name(),
        step_since: r.step_since,
        promotable,
        from: r.from,
        to: r.to,
        cause: r.cause.clone(),
        plan: plan_words(&r.policy),
        want_to: r.want_to,
        want_from: r.want_from,
        copies: if r.state.is_open() {
            copies(&r.blueprint, &r.slice, r.from, r.to, assignments, statuses)
        } else {
            Vec::new()
        },
        traffic: traffic_words(&r.traffic, r.from, r.to),
        thresholds: r.policy.analysis.as_ref().map(threshold_words),
        analysis: r.analysis.last().map(|a| analysis_view(a, r.from, r.to)),
        reason: reason(r),
        started_at: r.started_at,
        ended_at: r.ended_at,
        history: r
            .history
            .iter()
            .map(|(at, what)| HistoryLine {
                at: *at,
                what: what.clone(),
            })
            .collect(),
    }
}

/// `rollout list`: the open rollouts and those that ended within `recent_ms` of `now`,
/// newest first. `rollouts` are the store's, oldest first.
pub fn listed(rollouts: &[Rollout], now: Millis, recent_ms: Millis) -> Vec<&Rollout> {
    rollouts
        .iter()
        .rev()
        .filter(|r| {
            r.state.is_open()
                || r.ended_at
                    .is_some_and(|e| now.saturating_sub(e) <= recent_ms)
        })
        .collect()
}

/// `rollout history`: every kept rollout of `blueprint` (all when none) and `slice` (all of
/// the blueprint's when none), newest first, at most `limit`.
pub fn history<'a>(
    rollouts: &'a [Rollout],
    blueprint: Option<&str>,
    slice: Option<&str>,
    limit: usize,
) -> Vec<&'a Rollout> {
    rollouts
        .iter()
        .rev()
        .filter(|r| blueprint.is_none_or(|b| r.blueprint == b))
        .filter(|r| slice.is_none_or(|s| r.slice == s))
        .take(limit)
        .collect()
}

/// A slice's rollout as `status` shows it: the open one, else the latest.
pub fn current<'a>(rollouts: &'a [Rollout], blueprint: &str, slice: &str) -> Option<&'a Rollout> {
    let of = || {
        rollouts
            .iter()
            .rev()
            .filter(|r| r.blueprint == blueprint && r.slice == slice)
    };
    of().find(|r| r.state.is_open()).or_else(|| of().next())
}

/// Per slice that has rollouts, its [`current`] one, the most recently started first.
pub fn per_slice(rollouts: &[Rollout]) -> Vec<&Rollout> {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    let mut out: Vec<&Rollout> = Vec::new();
    for r in rollouts.iter().rev() {
        if seen.contains(&(r.blueprint.as_str(), r.slice.as_str())) {
            continue;
        }
        seen.push((&r.blueprint, &r.slice));
        out.extend(current(rollouts, &r.blueprint, &r.slice));
    }
    out
}

fn invalid(m: impl Into<String>) -> AdminError {
    AdminError::new(ErrorKind::Invalid, m)
}

/// The slices of `blueprint` an operator may name: the stored ones, then those only its
/// kept rollouts know (a slice or blueprint removed since).
fn slices_of(blueprint: &str, stored: &[StoredBlueprint], rollouts: &[Rollout]) -> Vec<String> {
    let mut out: Vec<String> = stored
        .iter()
        .filter(|b| b.blueprint.name == blueprint)
        .flat_map(|b| b.blueprint.slices.iter().map(|s| s.name.clone()))
        .collect();
    for r in rollouts.iter().filter(|r| r.blueprint == blueprint) {
        if !out.contains(&r.slice) {
            out.push(r.slice.clone());
        }
    }
    out
}

/// Check an operator's `blueprint` and `slice` names against what is stored or has rollouts;
/// without a slice, the only slice of `blueprint` with a rollout. Bad input is `Invalid`.
pub fn pick_slice(
    blueprint: &str,
    slice: Option<&str>,
    stored: &[StoredBlueprint],
    rollouts: &[Rollout],
) -> Result<String, AdminError> {
    let known = slices_of(blueprint, stored, rollouts);
    if known.is_empty() {
        return Err(invalid(format!(
            "no blueprint named '{blueprint}': 'aether blueprint list' shows the stored ones"
        )));
    }
    if let Some(s) = slice {
        if known.iter().any(|k| k == s) {
            return Ok(s.to_string());
        }
        return Err(invalid(format!(
            "blueprint '{blueprint}' has no slice '{s}'; its slices: {}",
            known.join(", ")
        )));
    }
    let with: Vec<&String> = known
        .iter()
        .filter(|s| {
            rollouts
                .iter()
                .any(|r| r.blueprint == blueprint && r.slice == **s)
        })
        .collect();
    match with.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(invalid(format!(
            "no slice of '{blueprint}' has rolled out; name one as {blueprint}/SLICE (its slices: {})",
            known.join(", ")
        ))),
        many => {
            let list: Vec<String> = many
                .iter()
                .map(|s| {
                    let r = current(rollouts, blueprint, s).expect("has a rollout");
                    format!("{s} ({} {})", r.name(), r.state.word())
                })
                .collect();
            Err(invalid(format!(
                "several slices of '{blueprint}' have rollouts: name one, e.g. '{blueprint}/{}' (slices: {})",
                many[0],
                list.join(", ")
            )))
        }
    }
}

/// Check that `blueprint/slice` is stored, for an operator's act on its rollout.
pub fn check_stored(
    blueprint: &str,
    slice: &str,
    stored: &[StoredBlueprint],
) -> Result<(), AdminError> {
    let Some(b) = stored.iter().find(|b| b.blueprint.name == blueprint) else {
        return Err(invalid(format!(
            "no blueprint named '{blueprint}': 'aether blueprint list' shows the stored ones"
        )));
    };
    if b.blueprint.slices.iter().any(|s| s.name == slice) {
        return Ok(());
    }
    let names: Vec<&str> = b.blueprint.slices.iter().map(|s| s.name.as_str()).collect();
    Err(invalid(format!(
        "blueprint '{blueprint}' has no slice '{slice}'; its slices: {}",
        names.join(", ")
    )))
}

/// The rollouts that storing `version` of `blueprint` (at `applied_at`) started: those it
/// opened, with the rollouts they replaced.
pub fn started(
    rollouts: &[Rollout],
    blueprint: &str,
    version: u64,
    applied_at: Millis,
    assignments: &BTreeMap<String, Assignment>,
) -> Vec<RolloutStart> {
    rollouts
        .iter()
        .filter(|r| r.blueprint == blueprint && r.to == version && r.started_at == applied_at)
        .map(|r| {
            let prefix = format!("{blueprint}/{}/", r.slice);
            let old = assignments
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .filter(|(_, a)| a.version != r.to)
                .count() as u32;
            RolloutStart {
                rollout: Some(r.name()),
                target: r.target(),
                strategy: r.policy.strategy,
                from: r.from,
                to: r.to,
                plan: plan_words(&r.policy),
                copies: old,
                supersedes: rollouts
                    .iter()
                    .find(|o| o.state == RolloutState::Superseded { by: r.id })
                    .map(Rollout::name),
            }
        })
        .collect()
}

/// The rollouts storing `new` as `version` would start, as the state machine decides it: a
/// slice whose copies run processes `new` changes (`spec(version, slice)` gives the slice a
/// copy runs), unless its open rollout already moves to the same processes.
pub fn planned(
    new: &Blueprint,
    version: u64,
    assignments: &BTreeMap<String, Assignment>,
    spec: &dyn Fn(u64, &str) -> Option<Slice>,
    rollouts: &[Rollout],
) -> Vec<RolloutStart> {
    let mut out = Vec::new();
    for s in &new.slices {
        let prefix = format!("{}/{}/", new.name, s.name);
        let mut differing: BTreeMap<u64, u32> = BTreeMap::new();
        for (_, a) in assignments
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
        {
            let same = spec(a.version, &s.name).is_some_and(|old| !old.needs_new_processes(s));
            if !same {
                *differing.entry(a.version).or_default() += 1;
            }
        }
        let open = rollouts
            .iter()
            .rev()
            .find(|r| r.blueprint == new.name && r.slice == s.name && r.state.is_open());
        if let Some(r) = open
            && spec(r.to, &s.name).is_some_and(|to| !to.needs_new_processes(s))
        {
            continue;
        }
        if differing.is_empty() {
            continue;
        }
        let from = match open {
            Some(r) => r.from,
            None => differing
                .iter()
                .max_by_key(|(v, n)| (**n, **v))
                .map(|(v, _)| *v)
                .expect("not empty"),
        };
        let policy = s.update_policy();
        out.push(RolloutStart {
            rollout: None,
            target: format!("{}/{}", new.name, s.name),
            strategy: policy.strategy,
            from,
            to: version,
            plan: plan_words(&policy),
            copies: differing.values().sum(),
            supersedes: open.map(Rollout::name),
        });
    }
    out
}

/// Reads the rollouts and what their views need from this node's replica.
pub struct Reader<'a> {
    cluster: &'a Cluster,
}

fn failed(e: std::io::Error) -> AdminError {
    AdminError::new(ErrorKind::Failed, format!("cannot read the rollouts: {e}"))
}

impl<'a> Reader<'a> {
    pub fn new(cluster: &'a Cluster) -> Reader<'a> {
        Reader { cluster }
    }

    /// Every kept rollout, oldest first.
    pub fn rollouts(&self) -> Result<Vec<Rollout>, AdminError> {
        self.cluster.store.rollouts().map_err(failed)
    }

    /// The stored blueprints.
    pub fn blueprints(&self) -> Result<Vec<StoredBlueprint>, AdminError> {
        self.cluster.store.blueprints().map_err(failed)
    }

    /// Views of `rollouts`, with their slices' copies as stored now.
    pub fn views<'r>(
        &self,
        rollouts: impl IntoIterator<Item = &'r Rollout>,
    ) -> Result<Vec<RolloutView>, AdminError> {
        let assignments = self.cluster.store.assignments().map_err(failed)?;
        let statuses = self.cluster.store.instances().map_err(failed)?;
        Ok(rollouts
            .into_iter()
            .map(|r| rollout_view(r, &assignments, &statuses))
            .collect())
    }

    /// `rollout list`: open rollouts and those that ended within [`RECENT_MS`], newest first.
    pub fn list(&self, now: Millis) -> Result<Vec<RolloutView>, AdminError> {
        let all = self.rollouts()?;
        self.views(listed(&all, now, RECENT_MS))
    }

    /// `rollout status`: a slice's open rollout, else its latest (`slice` may be left out when
    /// only one slice of `blueprint` has rollouts).
    pub fn status(&self, blueprint: &str, slice: Option<&str>) -> Result<RolloutView, AdminError> {
        let all = self.rollouts()?;
        let slice = pick_slice(blueprint, slice, &self.blueprints()?, &all)?;
        let Some(r) = current(&all, blueprint, &slice) else {
            return Err(AdminError::new(
                ErrorKind::Failed,
                format!(
                    "'{blueprint}/{slice}' has never rolled out: a rollout starts when 'aether blueprint apply' changes its processes (command, env, health, stop_timeout or resources)"
                ),
            ));
        };
        Ok(self.views([r])?.remove(0))
    }

    /// `rollout history`: every kept rollout of a slice, a blueprint or all, newest first.
    pub fn history(
        &self,
        blueprint: Option<&str>,
        slice: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RolloutView>, AdminError> {
        let all = self.rollouts()?;
        if let Some(b) = blueprint {
            let stored = self.blueprints()?;
            // Names are checked; a blueprint with no rollout yet has an empty history.
            if slice.is_some() || slices_of(b, &stored, &all).is_empty() {
                pick_slice(b, slice, &stored, &all)?;
            }
        }
        self.views(history(&all, blueprint, slice, limit))
    }

    /// The open rollout of each slice, else its latest: what the console shows.
    pub fn latest_per_slice(&self) -> Result<Vec<RolloutView>, AdminError> {
        let all = self.rollouts()?;
        self.views(per_slice(&all))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{NodeId, Resources};

    fn slice(name: &str, command: &str) -> Slice {
        Slice {
            name: name.into(),
            command: vec![command.into()],
            instances: 2,
            min: 1,
            max: 4,
            env: Default::default(),
            resources: Resources {
                cpu: 0.5,
                memory: 64 << 20,
                gpu: 0,
            },
            stop_timeout_ms: 10_000,
            health: None,
            scaling: None,
            service: None,
            update: None,
            user: None,
        }
    }

    fn rollout(id: u64, slice: &str, from: u64, to: u64, state: RolloutState) -> Rollout {
        Rollout {
            id,
            blueprint: "shop".into(),
            slice: slice.into(),
            from,
            to,
            policy: UpdatePolicy::default(),
            cause: "applied by uid:0@n1".into(),
            step: if state.is_open() {
                RolloutStep::Replace
            } else {
                RolloutStep::Done
            },
            ended_at: (!state.is_open()).then_some(1_000 * id + 500),
            state,
            step_since: 1_000 * id,
            want_to: 1,
            want_from: 2,
            traffic: TrafficSplit::ByCopies,
            progress_at: 1_000 * id,
            started_at: 1_000 * id,
            base: None,
            analysis: Vec::new(),
            reason: None,
            history: vec![(1_000 * id, "started".into())],
            rev: 1,
        }
    }

    fn assigned(node: NodeId, placement: u64, version: u64) -> Assignment {
        Assignment {
            node: Some(node),
            handoff: None,
            pending: None,
            since: 1,
            placement,
            version,
        }
    }

    fn report(
        instance: &str,
        node: NodeId,
        placement: u64,
        state: InstanceState,
    ) -> InstanceStatus {
        InstanceStatus {
            instance: instance.into(),
            node,
            placement,
            state,
            port: 8000,
            pid: Some(1),
            restarts: 0,
            last_exit: None,
            health: "passing".into(),
            since: 1,
            gpus: Vec::new(),
        }
    }

    #[test]
    fn copies_count_each_version_and_only_active_reports_of_the_current_placement() {
        let assignments = BTreeMap::from([
            ("shop/web/0".to_string(), assigned(1, 1, 6)),
            ("shop/web/1".to_string(), assigned(2, 2, 6)),
            ("shop/web/2".to_string(), assigned(1, 3, 7)),
            ("shop/web/3".to_string(), assigned(2, 4, 7)),
            ("shop/web/4".to_string(), assigned(3, 5, 5)),
            ("shop/webby/0".to_string(), assigned(1, 6, 7)),
        ]);
        let statuses = vec![
            report("shop/web/0", 1, 1, InstanceState::Active),
            report("shop/web/1", 2, 2, InstanceState::Active),
            report("shop/web/2", 1, 3, InstanceState::Active),
            // Still starting; and a report of an earlier placement.
            report("shop/web/3", 2, 4, InstanceState::Activating),
            report("shop/web/4", 3, 1, InstanceState::Active),
            report("shop/webby/0", 1, 6, InstanceState::Active),
        ];
        let c = copies("shop", "web", 6, 7, &assignments, &statuses);
        assert_eq!(
            copies_words(&c),
            "v7 1/2 active, v6 2/2 active, v5 0/1 active"
        );
        // A version without copies is still listed.
        let c = copies("shop", "web", 4, 7, &BTreeMap::new(), &[]);
        assert_eq!(copies_words(&c), "v7 none, v4 none");
    }

    #[test]
    fn the_split_and_the_plan_in_words() {
        assert_eq!(
            traffic_words(&TrafficSplit::Weighted { to_pct: 10 }, 6, 7),
            "v7 10% / v6 90%"
        );
        assert_eq!(
            traffic_words(&TrafficSplit::Only { version: 7 }, 6, 7),
            "v7 only"
        );
        assert_eq!(traffic_words(&TrafficSplit::ByCopies, 6, 7), "by copies");
        let mut p = UpdatePolicy::default();
        assert_eq!(plan_words(&p), "1 at a time");
        p.strategy = Strategy::Canary;
        p.canary = 2;
        p.max_parallel = 3;
        assert_eq!(
            plan_words(&p),
            "2 canaries with 10% of the requests, then 3 at a time"
        );
        p.strategy = Strategy::BlueGreen;
        assert_eq!(plan_words(&p), "a full new set beside the old");
        let a = AnalysisPolicy {
            interval_ms: 30_000,
            min_requests: 100,
            max_error_rate: 0.01,
            max_p99_ms: Some(50),
        };
        assert_eq!(
            threshold_words(&a),
            "at least 100 requests per 30s, error rate at most 1.0%, p99 at most 50ms"
        );
    }

    #[test]
    fn a_view_carries_the_last_analysis_and_the_reason() {
        let mut r = rollout(3, "web", 6, 7, RolloutState::Running);
        r.policy.strategy = Strategy::Canary;
        r.step = RolloutStep::Analysis { round: 2 };
        r.traffic = TrafficSplit::Weighted { to_pct: 10 };
        let rec = |round, calls, errors| AnalysisRecord {
            round,
            from_at: 0,
            to_at: 30_000,
            canary: VersionNumbers {
                calls,
                errors,
                p99_ms: Some(38.0),
            },
            stable: VersionNumbers {
                calls: 3702,
                errors: 0,
                p99_ms: Some(35.2),
            },
            verdict: if errors > 0 { "fail" } else { "pass" }.into(),
            detail: "error rate 7.5% is above 1.0%".into(),
        };
        r.analysis = vec![rec(1, 400, 0), rec(2, 412, 31)];
        let v = rollout_view(&r, &BTreeMap::new(), &[]);
        assert!(v.promotable && v.open);
        assert_eq!(v.step, "analysis 2");
        assert_eq!(v.traffic, "v7 10% / v6 90%");
        assert_eq!(
            v.analysis.as_ref().unwrap().line(),
            "canary v7: 412 requests, error rate 7.5%, p99 38ms; stable v6: 3702 requests, 0.0%, p99 35ms → fail"
        );
        r.state = RolloutState::RolledBack {
            reason: "analysis 2 failed: error rate 7.5% is above 1.0%".into(),
        };
        r.step = RolloutStep::Done;
        let v = rollout_view(&r, &BTreeMap::new(), &[]);
        assert!(!v.promotable && !v.open);
        assert_eq!(
            v.reason.as_deref(),
            Some("analysis 2 failed: error rate 7.5% is above 1.0%")
        );
        let v = rollout_view(
            &rollout(4, "web", 6, 7, RolloutState::Superseded { by: 9 }),
            &BTreeMap::new(),
            &[],
        );
        assert_eq!(v.reason.as_deref(), Some("superseded by r-9"));
        // Going back: the recorded reason; running on after a resume: none.
        let mut back = rollout(5, "web", 6, 7, RolloutState::Running);
        back.reason = Some("abort by uid:0@n1".into());
        back.step = RolloutStep::Revert;
        let v = rollout_view(&back, &BTreeMap::new(), &[]);
        assert_eq!(v.reason.as_deref(), Some("abort by uid:0@n1"));
        back.step = RolloutStep::Replace;
        assert_eq!(rollout_view(&back, &BTreeMap::new(), &[]).reason, None);
    }

    #[test]
    fn list_status_and_history_pick_their_rollouts() {
        let all = vec![
            rollout(1, "web", 5, 6, RolloutState::Succeeded),
            rollout(2, "worker", 1, 2, RolloutState::Succeeded),
            rollout(3, "web", 6, 7, RolloutState::Running),
        ];
        let ids = |v: Vec<&Rollout>| v.iter().map(|r| r.id).collect::<Vec<_>>();
        // r-1 ended at 1.5 s, r-2 at 2.5 s.
        assert_eq!(ids(listed(&all, 2_600, 1_000)), [3, 2]);
        assert_eq!(ids(listed(&all, 9_000, 1_000)), [3]);
        assert_eq!(ids(history(&all, None, None, 10)), [3, 2, 1]);
        assert_eq!(ids(history(&all, Some("shop"), Some("web"), 10)), [3, 1]);
        assert_eq!(ids(history(&all, None, None, 1)), [3]);
        assert_eq!(current(&all, "shop", "web").map(|r| r.id), Some(3));
        assert_eq!(current(&all, "shop", "worker").map(|r| r.id), Some(2));
        assert!(current(&all, "shop", "db").is_none());
        assert_eq!(ids(per_slice(&all)), [3, 2]);
    }

    #[test]
    fn a_slice_is_picked_or_the_error_lists_the_slices() {
        let stored = vec![StoredBlueprint {
            version: 7,
            applied_at: 1,
            blueprint: Blueprint {
                name: "shop".into(),
                slices: vec![slice("web", "a"), slice("worker", "b")],
            },
        }];
        let one = vec![rollout(3, "web", 6, 7, RolloutState::Running)];
        assert_eq!(pick_slice("shop", None, &stored, &one).unwrap(), "web");
        assert_eq!(
            pick_slice("shop", Some("worker"), &stored, &one).unwrap(),
            "worker"
        );
        let e = pick_slice("shop", Some("db"), &stored, &one).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert_eq!(
            e.message,
            "blueprint 'shop' has no slice 'db'; its slices: web, worker"
        );
        let e = pick_slice("shop", None, &stored, &[]).unwrap_err();
        assert_eq!(
            e.message,
            "no slice of 'shop' has rolled out; name one as shop/SLICE (its slices: web, worker)"
        );
        let two = vec![
            rollout(2, "worker", 1, 2, RolloutState::Succeeded),
            rollout(3, "web", 6, 7, RolloutState::Running),
        ];
        let e = pick_slice("shop", None, &stored, &two).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert_eq!(
            e.message,
            "several slices of 'shop' have rollouts: name one, e.g. 'shop/web' (slices: web (r-3 running), worker (r-2 succeeded))"
        );
        let e = pick_slice("cart", None, &stored, &two).unwrap_err();
        assert!(e.message.starts_with("no blueprint named 'cart'"), "{e:?}");
        // A removed slice keeps its history.
        let gone = vec![rollout(1, "db", 1, 2, RolloutState::Succeeded)];
        assert_eq!(
            pick_slice("shop", Some("db"), &stored, &gone).unwrap(),
            "db"
        );
        assert!(check_stored("shop", "db", &stored).is_err());
        assert!(check_stored("shop", "web", &stored).is_ok());
    }

    #[test]
    fn planned_rollouts_follow_the_state_machine() {
        let v6 = Blueprint {
            name: "shop".into(),
            slices: vec![slice("web", "old"), slice("worker", "w")],
        };
        let mut v7 = v6.clone();
        v7.slices[0].command = vec!["new".into()];
        v7.slices[0].update = Some(UpdatePolicy {
            strategy: Strategy::Canary,
            ..UpdatePolicy::default()
        });
        // Only the instance count changes for the worker: it applies in place.
        v7.slices[1].instances = 3;
        let specs = BTreeMap::from([(6u64, v6.clone()), (7u64, v7.clone())]);
        let spec = |v: u64, s: &str| {
            specs
                .get(&v)
                .and_then(|b| b.slices.iter().find(|x| x.name == s).cloned())
        };
        let assignments = BTreeMap::from([
            ("shop/web/0".to_string(), assigned(1, 1, 6)),
            ("shop/web/1".to_string(), assigned(2, 2, 6)),
            ("shop/worker/0".to_string(), assigned(1, 3, 6)),
        ]);
        let p = planned(&v7, 7, &assignments, &spec, &[]);
        assert_eq!(
            p,
            [RolloutStart {
                rollout: None,
                target: "shop/web".into(),
                strategy: Strategy::Canary,
                from: 6,
                to: 7,
                plan: "1 canary with 10% of the requests, then 1 at a time".into(),
                copies: 2,
                supersedes: None,
            }]
        );
        // An open rollout to the same processes goes on; one to others is superseded.
        let open = vec![rollout(3, "web", 6, 7, RolloutState::Running)];
        let mut v8 = v7.clone();
        v8.slices[0].max = 8;
        assert!(planned(&v8, 8, &assignments, &spec, &open).is_empty());
        v8.slices[0].command = vec!["newer".into()];
        let p = planned(&v8, 8, &assignments, &spec, &open);
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].from, p[0].to), (6, 8));
        assert_eq!(p[0].supersedes.as_deref(), Some("r-3"));
        // No copies: nothing rolls out.
        assert!(planned(&v7, 7, &BTreeMap::new(), &spec, &[]).is_empty());
    }

    #[test]
    fn an_apply_reports_the_rollouts_it_opened() {
        let mut old = rollout(3, "web", 6, 7, RolloutState::Superseded { by: 4 });
        old.started_at = 100;
        let mut new = rollout(4, "web", 6, 8, RolloutState::Running);
        new.started_at = 5_000;
        // Carried on to v8 from an earlier apply: not started by this one.
        let mut other = rollout(2, "worker", 1, 8, RolloutState::Running);
        other.started_at = 50;
        let assignments = BTreeMap::from([
            ("shop/web/0".to_string(), assigned(1, 1, 6)),
            ("shop/web/1".to_string(), assigned(2, 2, 6)),
            ("shop/web/2".to_string(), assigned(1, 3, 8)),
        ]);
        let s = started(&[other, old, new], "shop", 8, 5_000, &assignments);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].rollout.as_deref(), Some("r-4"));
        assert_eq!(s[0].copies, 2);
        assert_eq!(s[0].supersedes.as_deref(), Some("r-3"));
    }
}
