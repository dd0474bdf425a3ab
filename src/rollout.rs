//! Rollouts (DESIGN §8): a changed blueprint version moves onto a slice's copies as a durable
//! step machine in Raft — rolling, canary (with analysis of the ingress's per-version numbers)
//! or blue/green — with a deadline per step, pause/promote/abort/undo, and automatic rollback
//! with a written reason.
//!
//! The record (`domain::Rollout`) lives in the replicated store: the state machine opens it
//! when a stored version needs new processes (`raft::rollouts`), and it says how many copies of
//! each version the slice runs (the assignment loop follows) and how the ingress splits the
//! requests. [`engine`] is the pure step machine; [`run`] is the leader's loop around it: each
//! round it reads what the cluster shows, asks the engine, and writes the next record over the
//! revision it read. A new leader continues from the record alone, so a rollout resumes at its
//! step after a failover, and no copy is started twice or left behind (the assignment loop
//! derives copies from the record and the stored assignments, never from memory).

pub mod engine;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::domain::{
    Action, Assignment, ControllerMode, Decision, DecisionStatus, InstanceState, InstanceStatus,
    Millis, Rollout, RolloutState, RolloutStep, StoredBlueprint, now_millis,
};
use crate::metrics::pipeline::Pipeline;
use crate::raft::types::{Command, Response};
use crate::raft::{Cluster, Writer};
use engine::{Copies, Observed};

/// A rollout's automatic rollback as a decision (applied by the rollout itself), so the
/// Controller view and `aether decisions` show it with its reasoning and numbers.
pub fn rollback_decision(r: &Rollout, leader: &str, mode: ControllerMode) -> Decision {
    let now = r.step_since;
    let mut inputs = vec![
        ("strategy".to_string(), r.policy.strategy.to_string()),
        (
            "step".to_string(),
            r.history
                .iter()
                .rev()
                .nth(1)
                .map_or(String::new(), |(_, h)| h.clone()),
        ),
    ];
    if let Some(a) = r.analysis.last() {
        inputs.push(("canary_calls".into(), a.canary.calls.to_string()));
        inputs.push((
            "canary_error_rate".into(),
            format!("{:.4}", a.canary.error_rate()),
        ));
        inputs.push((
            "canary_p99_ms".into(),
            a.canary.p99_ms.map_or("-".into(), |p| format!("{p:.1}")),
        ));
        inputs.push(("stable_calls".into(), a.stable.calls.to_string()));
        inputs.push((
            "stable_error_rate".into(),
            format!("{:.4}", a.stable.error_rate()),
        ));
    }
    if let Some(a) = &r.policy.analysis {
        inputs.push(("max_error_rate".into(), format!("{:.4}", a.max_error_rate)));
        if let Some(p) = a.max_p99_ms {
            inputs.push(("max_p99_ms".into(), p.to_string()));
        }
    }
    Decision {
        id: 0,
        at: now,
        by: leader.to_string(),
        mode,
        layers: vec![format!("rollout:{}", r.name())],
        action: Action::Rollback {
            blueprint: r.blueprint.clone(),
            slice: r.slice.clone(),
            from: r.to,
            to: r.from,
            rollout: r.id,
        },
        rule: format!("rollout-{}", r.policy.strategy),
        reasoning: vec![
            r.reason.clone().unwrap_or_default(),
            format!(
                "auto_revert: v{} copies start at once and take the traffic; v{} copies stop when they are up",
                r.from, r.to
            ),
        ],
        inputs,
        review: None,
        status: DecisionStatus::Applied {
            at: now,
            by: format!("rollout {}", r.name()),
        },
        timeline: Vec::new(),
        outcome: None,
    }
}

/// How often the leader looks at its rollouts besides when the store changes: a step that
/// waits for time (min_healthy_time, an analysis interval, a deadline) ends at most this late.
/// A round without a running rollout reads one table only.
const TICK: Duration = Duration::from_millis(200);

/// The copies of `r`'s slice: the new version's and the others', as the cluster shows them
/// at `now`.
pub fn copies(
    r: &Rollout,
    assignments: &BTreeMap<String, Assignment>,
    statuses: &[InstanceStatus],
    now: Millis,
) -> (Copies, Copies) {
    let prefix = format!("{}/{}/", r.blueprint, r.slice);
    let (mut to, mut from) = (Copies::default(), Copies::default());
    for (key, a) in assignments
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
    {
        let side = if a.version == r.to {
            &mut to
        } else {
            &mut from
        };
        side.assigned += 1;
        let st = statuses
            .iter()
            .find(|s| s.instance == *key && a.reported_by(s));
        let active = st.filter(|s| s.state == InstanceState::Active);
        if let Some(s) = active {
            side.active += 1;
            if now.saturating_sub(s.since) >= r.policy.min_healthy_ms {
                side.healthy += 1;
            }
        } else if a.version == r.to {
            let started = a.since.max(r.step_since);
            if now.saturating_sub(started) > r.policy.healthy_deadline_ms && side.overdue.is_none()
            {
                let said = match st {
                    Some(s) => format!("{}: {}", s.state, s.health),
                    None if a.node.is_none() => {
                        format!("pending: {}", a.pending.as_deref().unwrap_or("no node"))
                    }
                    None => "not started".into(),
                };
                side.overdue = Some((key.clone(), said));
            }
        }
    }
    (to, from)
}

/// One round: every open rollout that the engine moves on, as it should be written.
fn round(
    cluster: &Cluster,
    metrics: &Pipeline,
    source: &str,
) -> Result<Vec<(Rollout, Rollout)>, std::io::Error> {
    let rollouts: Vec<Rollout> = cluster
        .store
        .open_rollouts()?
        .into_iter()
        .filter(|r| r.state == RolloutState::Running)
        .collect();
    if rollouts.is_empty() {
        return Ok(Vec::new());
    }
    let blueprints: Vec<StoredBlueprint> = cluster.store.blueprints()?;
    let assignments = cluster.store.assignments()?;
    let statuses = cluster.store.instances()?;
    let now = now_millis();
    let mut out = Vec::new();
    for r in rollouts {
        let Some(instances) = blueprints
            .iter()
            .find(|b| b.blueprint.name == r.blueprint)
            .and_then(|b| b.blueprint.slices.iter().find(|s| s.name == r.slice))
            .map(|s| s.instances)
        else {
            continue;
        };
        let (to, from) = copies(&r, &assignments, &statuses, now);
        let numbers = metrics.with_state(|st| {
            st.view
                .snapshot
                .as_ref()
                .map(|_| (source.to_string(), st.view.version_tallies(&r.target())))
        });
        let o = Observed {
            now,
            instances,
            to,
            from,
            numbers,
        };
        if let Some(next) = engine::advance(&r, &o) {
            out.push((r, next));
        }
    }
    Ok(out)
}

/// Run the rollout engine until `shutdown`: while this node leads, after every applied change
/// that may move work and every `TICK` (200 ms), move each running rollout on and write it.
pub async fn run(cluster: Arc<Cluster>, metrics: Arc<Pipeline>, shutdown: CancellationToken) {
    let mut changed = cluster.store.subscribe_workloads();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut w = Writer::new(cluster.clone(), "rollout");
    let source = format!("{}:{}", cluster.name, now_millis());
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
            r = changed.changed() => if r.is_err() { return },
        }
        if cluster.raft.metrics().borrow().current_leader != Some(cluster.id) {
            continue;
        }
        let next = match round(&cluster, &metrics, &source) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("rollout engine: reading the store failed: {e}");
                continue;
            }
        };
        for (was, r) in next {
            match w.call(Command::UpdateRollout(Box::new(r.clone()))).await {
                Ok(Response::Refused(why)) => {
                    tracing::debug!("rollout {}: not written ({why}); reading again", r.name())
                }
                Ok(_) => {
                    for (_, line) in r.history.iter().skip(was.history.len()) {
                        tracing::info!("rollout {} of {}: {line}", r.name(), r.target());
                    }
                    if was.step != RolloutStep::Revert && r.step == RolloutStep::Revert {
                        let mode = cluster.store.control().map(|c| c.mode).unwrap_or_default();
                        let d = rollback_decision(&r, &cluster.name, mode);
                        if let Err(e) = w.call(Command::RecordDecision(Box::new(d))).await {
                            tracing::warn!(
                                "rollout {}: its rollback not recorded as a decision: {e}",
                                r.name()
                            );
                        }
                    }
                }
                Err(e) => tracing::warn!("rollout {}: not written ({e}); trying again", r.name()),
            }
        }
    }
}
