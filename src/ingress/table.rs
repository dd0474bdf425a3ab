//! The routing table (pure): which service ports this node listens on and, per port, the
//! instances that may take a request — built from the replicated rows alone, so every node
//! routes the same way without asking anyone.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use crate::domain::{
    Assignment, Health, InstanceState, InstanceStatus, NodeId, NodeRecord, Rollout, Service,
    StoredBlueprint, TrafficSplit,
};

/// One instance that may take a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Backend {
    /// `blueprint/slice/index`.
    pub instance: String,
    pub index: u32,
    pub node: NodeId,
    /// The instance's port on its node.
    pub port: u16,
    /// The process of this copy (a restarted copy is another one, even on the same port).
    pub pid: u32,
    /// The balancer's key of this copy ([`super::balance::key`]), made once per table.
    pub key: String,
    /// Where its node's QUIC endpoint is (`host:port`); requests to a remote instance go
    /// through it.
    pub addr: String,
    /// The blueprint version this copy runs.
    pub version: u64,
}

/// One slice's service as this node routes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// `blueprint/slice`.
    pub slice: String,
    pub service: Service,
    /// Ready instances, local ones first.
    pub backends: Vec<Backend>,
    /// Instances of the slice not ready (starting, stopping, backing off), for messages.
    pub not_ready: u32,
    /// While a rollout is open: its new version and how requests are split between versions.
    pub split: Option<(u64, TrafficSplit)>,
}

impl Route {
    /// The backends a request may go to under the route's split: for a weighted split,
    /// `roll` (0–99) picks the new version's copies when below its share; a version named
    /// alone takes everything. A side with no ready copy never strands a request: then every
    /// backend is offered.
    pub fn offered(&self, roll: u8) -> Vec<&Backend> {
        let all = || self.backends.iter().collect::<Vec<_>>();
        let Some((to, split)) = self.split else {
            return all();
        };
        let pick = |b: &Backend| match split {
            TrafficSplit::ByCopies => true,
            TrafficSplit::Only { version } => b.version == version,
            TrafficSplit::Weighted { to_pct } => (b.version == to) == (roll < to_pct),
        };
        let chosen: Vec<&Backend> = self.backends.iter().filter(|b| pick(b)).collect();
        if chosen.is_empty() { all() } else { chosen }
    }
}

/// Every service port of the cluster and its route.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub routes: BTreeMap<u16, Arc<Route>>,
}

/// What the table is built from.
pub struct Rows<'a> {
    /// This node.
    pub me: NodeId,
    pub blueprints: &'a [StoredBlueprint],
    pub assignments: &'a BTreeMap<String, Assignment>,
    pub statuses: &'a [InstanceStatus],
    pub members: &'a [NodeRecord],
    pub health: &'a BTreeMap<NodeId, Health>,
    /// The open rollouts (their traffic splits).
    pub rollouts: &'a [Rollout],
    /// Members whose machine the cloud is taking away (a spot interruption notice).
    pub interrupting: &'a BTreeSet<NodeId>,
}

impl Table {
    /// The routes of `rows`: per service, the instances reported active by the node they are
    /// assigned to (or by the node handing them off, whose copy serves until the new one is
    /// active), on members not judged down. Copies on an interrupted member leave the rotation
    /// as soon as another copy is ready, before they are stopped.
    pub fn build(rows: &Rows) -> Table {
        let addr_of: BTreeMap<NodeId, &str> = rows
            .members
            .iter()
            .filter(|m| rows.health.get(&m.id) != Some(&Health::Down))
            .map(|m| (m.id, m.addr.as_str()))
            .collect();
        let mut routes = BTreeMap::new();
        for b in rows.blueprints {
            for s in &b.blueprint.slices {
                let Some(service) = &s.service else { continue };
                let slice = format!("{}/{}", b.blueprint.name, s.name);
                let prefix = format!("{slice}/");
                let mut backends = Vec::new();
                let mut seen = HashSet::new();
                let mut not_ready = 0;
                for st in rows
                    .statuses
                    .iter()
                    .filter(|st| st.instance.starts_with(&prefix))
                {
                    let Some(a) = rows.assignments.get(&st.instance) else {
                        continue;
                    };
                    let serving = a.reported_by(st) || a.handoff == Some(st.node);
                    if !serving {
                        continue;
                    }
                    let index = st.instance[prefix.len()..].parse::<u32>().unwrap_or(0);
                    match addr_of.get(&st.node) {
                        Some(addr) if st.state == InstanceState::Active && st.port != 0 => {
                            if seen.insert((st.instance.clone(), st.node)) {
                                backends.push(Backend {
                                    instance: st.instance.clone(),
                                    index,
                                    node: st.node,
                                    port: st.port,
                                    pid: st.pid.unwrap_or(0),
                                    key: super::balance::key(&st.instance, st.node),
                                    addr: addr.to_string(),
                                    version: a.version,
                                });
                            }
                        }
                        _ => not_ready += 1,
                    }
                }
                if backends
                    .iter()
                    .any(|be| !rows.interrupting.contains(&be.node))
                {
                    backends.retain(|be| !rows.interrupting.contains(&be.node));
                }
                backends.sort_by_key(|be| (be.node != rows.me, be.index, be.node));
                routes.insert(
                    service.port,
                    Arc::new(Route {
                        slice,
                        service: service.clone(),
                        backends,
                        not_ready,
                        split: rows
                            .rollouts
                            .iter()
                            .find(|r| {
                                r.state.is_open()
                                    && r.blueprint == b.blueprint.name
                                    && r.slice == s.name
                            })
                            .map(|r| (r.to, r.traffic)),
                    }),
                );
            }
        }
        Table { routes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Blueprint, EntryPoint, NodeState, Resources, Slice};

    fn member(id: NodeId) -> NodeRecord {
        NodeRecord {
            id,
            name: format!("n{id}"),
            addr: format!("127.0.0.{id}:7420"),
            state: NodeState::Ready,
            joined_at: 0,
        }
    }

    fn status(
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
            port: 40_000 + node as u16,
            pid: Some(1),
            restarts: 0,
            last_exit: None,
            health: "passing".into(),
            since: 0,
            gpus: Vec::new(),
        }
    }

    fn assigned(node: NodeId, placement: u64, handoff: Option<NodeId>) -> Assignment {
        Assignment {
            node: Some(node),
            handoff,
            pending: None,
            since: 0,
            placement,
            version: 0,
        }
    }

    #[test]
    fn only_active_instances_where_they_are_assigned_take_requests() {
        let bp = StoredBlueprint {
            version: 1,
            applied_at: 0,
            blueprint: Blueprint {
                name: "shop".into(),
                slices: vec![Slice {
                    name: "web".into(),
                    command: vec!["x".into()],
                    instances: 3,
                    min: 0,
                    max: 3,
                    env: Default::default(),
                    resources: Resources {
                        cpu: 0.1,
                        memory: 1,
                        gpu: 0,
                    },
                    stop_timeout_ms: 1_000,
                    health: None,
                    scaling: None,
                    service: Some(Service {
                        port: 8080,
                        entry_points: vec![EntryPoint {
                            name: "home".into(),
                            path: "/".into(),
                            method: None,
                        }],
                        timeout_ms: None,
                    }),
                    update: None,
                    user: None,
                }],
            },
        };
        let assignments = BTreeMap::from([
            ("shop/web/0".to_string(), assigned(1, 7, None)),
            ("shop/web/1".to_string(), assigned(2, 8, Some(3))),
            ("shop/web/2".to_string(), assigned(3, 9, None)),
        ]);
        let statuses = vec![
            status("shop/web/0", 1, 7, InstanceState::Active),
            // A copy left from an earlier placement does not serve.
            status("shop/web/0", 2, 3, InstanceState::Active),
            // Starting: not yet.
            status("shop/web/1", 2, 8, InstanceState::Activating),
            // The hand-off's old copy serves until the new one is active.
            status("shop/web/1", 3, 0, InstanceState::Active),
            // On a node judged down.
            status("shop/web/2", 4, 9, InstanceState::Active),
        ];
        let members = vec![member(1), member(2), member(3), member(4)];
        let health = BTreeMap::from([(4, Health::Down)]);
        let t = Table::build(&Rows {
            me: 3,
            blueprints: std::slice::from_ref(&bp),
            assignments: &assignments,
            statuses: &statuses,
            members: &members,
            health: &health,
            rollouts: &[],
            interrupting: &BTreeSet::new(),
        });
        let r = &t.routes[&8080];
        let got: Vec<(&str, NodeId)> = r
            .backends
            .iter()
            .map(|b| (b.instance.as_str(), b.node))
            .collect();
        assert_eq!(
            got,
            vec![("shop/web/1", 3), ("shop/web/0", 1)],
            "local first"
        );
        assert_eq!(r.backends[1].addr, "127.0.0.1:7420");
        assert_eq!(r.not_ready, 1);
        // An interrupted member's copies leave the rotation while another copy is ready, and
        // stay in it when they are the last ones.
        let rows = |interrupting: &BTreeSet<NodeId>| {
            Table::build(&Rows {
                me: 3,
                blueprints: std::slice::from_ref(&bp),
                assignments: &assignments,
                statuses: &statuses,
                members: &members,
                health: &health,
                rollouts: &[],
                interrupting,
            })
        };
        let nodes = |t: &Table| -> Vec<NodeId> {
            t.routes[&8080].backends.iter().map(|b| b.node).collect()
        };
        assert_eq!(nodes(&rows(&BTreeSet::from([3]))), vec![1]);
        assert_eq!(nodes(&rows(&BTreeSet::from([1, 3]))), vec![3, 1]);
    }
}
