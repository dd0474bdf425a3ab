//! `aether blueprint list/show` and the console's workloads: stored blueprints with a row per copy
//! of each instance, as assigned and as its node reported it.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::domain::{Assignment, Health, InstanceStatus, Millis, NodeId};
use crate::raft::Cluster;
use crate::raft::api::{ErrorKind, RequestError as AdminError};

/// A stored blueprint with where its instances run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlueprintView {
    pub version: u64,
    pub applied_at: Millis,
    pub blueprint: crate::domain::Blueprint,
    /// One row per copy of an instance on a node, plus pending instances.
    pub instances: Vec<InstanceView>,
    /// Service ports of its slices that a node cannot listen on (the others serve them).
    #[serde(default)]
    pub unserved: Vec<Unserved>,
    /// Its flexible slices (`[slices.flexible]`): held, or started and why.
    #[serde(default)]
    pub flexible: Vec<crate::domain::FlexibleRecord>,
}

/// A service port one node cannot listen on, as its last metrics update said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unserved {
    /// The node, by name.
    pub node: String,
    pub port: u16,
    /// Why, with the remedy.
    pub message: String,
}

/// Every node's unserved service ports, from the metrics snapshot `metrics` holds.
pub fn unserved(metrics: &crate::metrics::pipeline::Pipeline) -> Vec<Unserved> {
    metrics.with_state(|st| {
        st.view
            .snapshot
            .iter()
            .flat_map(|s| s.nodes.iter())
            .flat_map(|e| {
                e.m.listen_errors.iter().map(|(port, message)| Unserved {
                    node: e.name(),
                    port: *port,
                    message: message.clone(),
                })
            })
            .collect()
    })
}

/// One copy of an instance, as assigned and as its node reported it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceView {
    /// `blueprint/slice/index`.
    pub instance: String,
    /// The node, by name (none while pending).
    pub node: Option<String>,
    /// `pending`, `assigned` (not reported yet) or the reported state (`loading`,
    /// `activating`, `active`, `unhealthy`, `backoff`, `stopping`, `waiting`).
    pub state: String,
    pub port: Option<u16>,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub last_exit: Option<String>,
    pub health: Option<String>,
    /// When it entered `state`.
    pub since: Option<Millis>,
    /// The GPUs (NVML indices) this copy holds.
    pub gpus: Vec<u32>,
    /// Why it is pending, or why this copy runs here (a hand-off, a surplus copy stopping).
    pub note: Option<String>,
    /// The blueprint version this copy runs (none for a copy no assignment wants).
    #[serde(default)]
    pub version: Option<u64>,
}

impl InstanceView {
    /// Whether this row counts toward a slice's active instances: the placed copy, active, on
    /// a ready node. Every other row (pending, a hand-off's old copy, a copy stopping, a last
    /// report from a node that is not ready) carries a note.
    pub fn counts_active(&self) -> bool {
        self.state == "active" && self.note.is_none()
    }
}

/// Stored blueprints (one when `name` is set) with a row per copy of each instance.
/// `unserved`: every node's service ports it cannot listen on ([`unserved`]).
pub fn blueprint_views(
    cluster: &Cluster,
    name: Option<&str>,
    unserved: &[Unserved],
) -> Result<Vec<BlueprintView>, AdminError> {
    let failed = |e: std::io::Error| AdminError::new(ErrorKind::Failed, e.to_string());
    let all = cluster.store.blueprints().map_err(failed)?;
    if let Some(n) = name
        && !all.iter().any(|b| b.blueprint.name == n)
    {
        let known: Vec<&str> = all.iter().map(|b| b.blueprint.name.as_str()).collect();
        return Err(AdminError::new(
            ErrorKind::Failed,
            format!(
                "no blueprint named '{n}'; stored: {}",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        ));
    }
    let assignments = cluster.store.assignments().map_err(failed)?;
    let statuses = cluster.store.instances().map_err(failed)?;
    let health = cluster.store.health().map_err(failed)?;
    let names: BTreeMap<NodeId, String> = cluster
        .store
        .nodes()
        .map_err(failed)?
        .into_iter()
        .map(|n| (n.id, n.name))
        .collect();
    let copies = Copies::new(&assignments, &statuses, &health, &names);
    let flexible = cluster.store.flexible().map_err(failed)?;
    Ok(all
        .into_iter()
        .filter(|b| name.is_none_or(|n| b.blueprint.name == n))
        .map(|b| BlueprintView {
            instances: copies.rows(&b.blueprint.name),
            unserved: unserved
                .iter()
                .filter(|u| {
                    b.blueprint
                        .slices
                        .iter()
                        .any(|s| s.service.as_ref().is_some_and(|sv| sv.port == u.port))
                })
                .cloned()
                .collect(),
            flexible: flexible
                .iter()
                .filter(|f| f.blueprint == b.blueprint.name)
                .cloned()
                .collect(),
            version: b.version,
            applied_at: b.applied_at,
            blueprint: b.blueprint,
        })
        .collect())
}

/// What the store says of every copy of every instance: the rows of `blueprint show`.
struct Copies<'a> {
    assignments: &'a BTreeMap<String, Assignment>,
    statuses: &'a [InstanceStatus],
    /// The report of each copy, by instance and node (the store keeps one per pair).
    reports: HashMap<(&'a str, NodeId), &'a InstanceStatus>,
    health: &'a BTreeMap<NodeId, Health>,
    names: &'a BTreeMap<NodeId, String>,
}

impl<'a> Copies<'a> {
    fn new(
        assignments: &'a BTreeMap<String, Assignment>,
        statuses: &'a [InstanceStatus],
        health: &'a BTreeMap<NodeId, Health>,
        names: &'a BTreeMap<NodeId, String>,
    ) -> Copies<'a> {
        Copies {
            assignments,
            statuses,
            reports: statuses
                .iter()
                .map(|s| ((s.instance.as_str(), s.node), s))
                .collect(),
            health,
            names,
        }
    }

    fn name_of(&self, id: NodeId) -> String {
        self.names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("node-{id}"))
    }

    /// The row of `key`'s copy on `node`, from the report of that copy: of placement number
    /// `placement` (a hand-off's old copy: `None`, any), never one left from an earlier one.
    fn row(
        &self,
        key: &str,
        node: NodeId,
        placement: Option<u64>,
        note: Option<String>,
    ) -> InstanceView {
        // A report from a node that is not ready may be stale: say so.
        let note = match self.health.get(&node) {
            Some(h) if *h != Health::Ready => Some(match note {
                Some(n) => format!("{} is {h}: last report; {n}", self.name_of(node)),
                None => format!("{} is {h}: last report", self.name_of(node)),
            }),
            _ => note,
        };
        let report = self
            .reports
            .get(&(key, node))
            .filter(|s| placement.is_none_or(|p| s.placement == p));
        match report {
            Some(s) => InstanceView {
                instance: key.into(),
                node: Some(self.name_of(node)),
                state: s.state.to_string(),
                port: Some(s.port),
                pid: s.pid,
                restarts: s.restarts,
                last_exit: s.last_exit.clone(),
                health: Some(s.health.clone()),
                since: Some(s.since),
                gpus: s.gpus.clone(),
                note,
                version: None,
            },
            None => InstanceView {
                instance: key.into(),
                node: Some(self.name_of(node)),
                state: "assigned".into(),
                note,
                ..Default::default()
            },
        }
    }

    /// A row per copy of each instance of blueprint `name`: the placed (or pending) copy, a
    /// hand-off's old copy, and reported copies no placement wants (stopping), each with a
    /// note.
    fn rows(&self, name: &str) -> Vec<InstanceView> {
        let prefix = format!("{name}/");
        let mut rows = Vec::new();
        for (key, a) in self
            .assignments
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
        {
            match a.node {
                Some(n) => rows.push(InstanceView {
                    version: Some(a.version),
                    ..self.row(key, n, Some(a.placement), None)
                }),
                None => rows.push(InstanceView {
                    instance: key.clone(),
                    state: "pending".into(),
                    since: Some(a.since),
                    note: a.pending.clone(),
                    version: Some(a.version),
                    ..Default::default()
                }),
            }
            if let Some(h) = a.handoff {
                let to = a
                    .node
                    .map(|n| self.name_of(n))
                    .unwrap_or_else(|| "a new node".into());
                rows.push(InstanceView {
                    version: Some(a.version),
                    ..self.row(
                        key,
                        h,
                        None,
                        Some(format!("old copy: stops once the copy on {to} is active")),
                    )
                });
            }
        }
        for s in self
            .statuses
            .iter()
            .filter(|s| s.instance.starts_with(&prefix))
        {
            let note = match self.assignments.get(&s.instance) {
                Some(a) if a.reported_by(s) || a.handoff == Some(s.node) => continue,
                Some(a) if a.node == Some(s.node) => "a copy of an earlier placement: stopping",
                _ => "no longer assigned here: stopping",
            };
            rows.push(self.row(&s.instance, s.node, Some(s.placement), Some(note.into())));
        }
        rows.sort_by(|x, y| {
            let idx = |v: &InstanceView| {
                let (slice, i) = v.instance.rsplit_once('/').unwrap_or(("", "0"));
                (slice.to_string(), i.parse::<u32>().unwrap_or(0))
            };
            idx(x)
                .cmp(&idx(y))
                .then(x.note.is_some().cmp(&y.note.is_some()))
        });
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::InstanceState;

    fn report(instance: &str, node: NodeId, placement: u64, pid: u32) -> InstanceStatus {
        InstanceStatus {
            instance: instance.into(),
            node,
            placement,
            state: InstanceState::Active,
            port: 8000,
            pid: Some(pid),
            restarts: 0,
            last_exit: None,
            health: "passing".into(),
            since: 1,
            gpus: Vec::new(),
        }
    }

    fn placed(node: NodeId, placement: u64, handoff: Option<NodeId>) -> Assignment {
        Assignment {
            node: Some(node),
            handoff,
            pending: None,
            since: 1,
            placement,
            version: 0,
        }
    }

    #[test]
    fn a_report_of_an_earlier_placement_is_never_shown_as_the_current_copy() {
        let assignments = BTreeMap::from([
            // Removed and applied again: placement 7 on n1, whose copy has not reported yet;
            // n1's report of placement 3 is still in the store.
            ("shop/web/0".to_string(), placed(1, 7, None)),
            // Drained off n2 to n3: n2's copy (any placement) runs until n3's is active.
            ("shop/web/1".to_string(), placed(3, 9, Some(2))),
        ]);
        let statuses = vec![
            report("shop/web/0", 1, 3, 100),
            report("shop/web/1", 2, 4, 200),
            report("shop/web/1", 3, 9, 300),
            // Scaled down: n3 still reports a copy no placement wants.
            report("shop/web/2", 3, 5, 400),
        ];
        let health = BTreeMap::from([(1, Health::Ready), (2, Health::Ready), (3, Health::Ready)]);
        let names = (1..=3).map(|i| (i, format!("n{i}"))).collect();
        let copies = Copies::new(&assignments, &statuses, &health, &names);
        let rows = copies.rows("shop");
        let got: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{} {} {} {} {}",
                    r.instance,
                    r.node.as_deref().unwrap_or("-"),
                    r.state,
                    r.pid.map_or("-".into(), |p| p.to_string()),
                    r.note.as_deref().unwrap_or("-")
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                "shop/web/0 n1 assigned - -",
                "shop/web/0 n1 active 100 a copy of an earlier placement: stopping",
                "shop/web/1 n3 active 300 -",
                "shop/web/1 n2 active 200 old copy: stops once the copy on n3 is active",
                "shop/web/2 n3 active 400 no longer assigned here: stopping",
            ]
        );
    }
}
