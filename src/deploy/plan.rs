//! The placement plan of a blueprint change: which instances start or stop on which node.
//! Pure: placement of every blueprint's instances before and after, and the difference for the
//! blueprint being changed.

use serde::{Deserialize, Serialize};

use super::placement::{Needs, NodeSlot, Options, place};
use crate::domain::Blueprint;

/// One line of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanStep {
    /// `start`, `stop`, `keep` or `pending`.
    pub action: String,
    /// `blueprint/slice/index`.
    pub instance: String,
    /// The node, by name (for `pending`, none).
    pub node: Option<String>,
    /// Why an instance cannot be placed.
    pub reason: Option<String>,
}

fn instances(bps: &[&Blueprint]) -> Vec<(String, Needs)> {
    let mut out = Vec::new();
    for b in bps {
        for s in &b.slices {
            for i in 0..s.instances {
                out.push((
                    format!("{}/{}/{i}", b.name, s.name),
                    Needs {
                        cpu: s.resources.cpu,
                        memory: s.resources.memory,
                        gpu: s.resources.gpu,
                    },
                ));
            }
        }
    }
    out
}

/// The steps that take `old` (none for a new blueprint) to `new`, with `others` (every other
/// stored blueprint) taking their share of the nodes first.
pub fn plan(
    nodes: &[NodeSlot],
    others: &[Blueprint],
    old: Option<&Blueprint>,
    new: &Blueprint,
) -> Vec<PlanStep> {
    let mut sorted: Vec<&Blueprint> = others.iter().filter(|b| b.name != new.name).collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let name_of = |id| nodes.iter().find(|n| n.id == id).map(|n| n.name.clone());
    let with = |b: Option<&Blueprint>| {
        let mut all = sorted.clone();
        all.extend(b);
        place(nodes, &instances(&all), Options::default())
    };
    let before = with(old);
    let after = with(Some(new));
    let prefix = format!("{}/", new.name);
    let mut steps = Vec::new();
    for (key, _) in instances(&[new]) {
        let now = after.assigned.get(&key).copied();
        let was = before.assigned.get(&key).copied();
        match (was, now) {
            (_, None) => steps.push(PlanStep {
                action: "pending".into(),
                instance: key.clone(),
                node: None,
                reason: after.pending.get(&key).cloned(),
            }),
            (Some(w), Some(n)) if w == n => steps.push(PlanStep {
                action: "keep".into(),
                instance: key.clone(),
                node: name_of(n),
                reason: None,
            }),
            (w, Some(n)) => {
                if let Some(w) = w {
                    steps.push(PlanStep {
                        action: "stop".into(),
                        instance: key.clone(),
                        node: name_of(w),
                        reason: None,
                    });
                }
                steps.push(PlanStep {
                    action: "start".into(),
                    instance: key.clone(),
                    node: name_of(n),
                    reason: None,
                });
            }
        }
    }
    for (key, node) in &before.assigned {
        if key.starts_with(&prefix)
            && !after.assigned.contains_key(key)
            && !after.pending.contains_key(key)
        {
            steps.push(PlanStep {
                action: "stop".into(),
                instance: key.clone(),
                node: name_of(*node),
                reason: None,
            });
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::blueprint::parse;

    fn node(id: u64) -> NodeSlot {
        NodeSlot {
            id,
            name: format!("n{id}"),
            cpu: 8.0,
            memory: 16 << 30,
            gpus: 0,
            schedulable: Ok(()),
        }
    }

    fn bp(instances: u32) -> Blueprint {
        parse(
            "t.toml",
            &format!(
                "name = \"shop\"\n[[slices]]\nname = \"web\"\ncommand = [\"true\"]\ninstances = {instances}\nmax = 10\n"
            ),
        )
        .unwrap()
    }

    #[test]
    fn a_new_blueprint_starts_every_instance_and_a_scale_down_stops_the_surplus() {
        let nodes = [node(1), node(2), node(3)];
        let steps = plan(&nodes, &[], None, &bp(4));
        assert_eq!(steps.len(), 4);
        assert!(
            steps
                .iter()
                .all(|s| s.action == "start" && s.node.is_some())
        );
        let spread: std::collections::BTreeSet<_> = steps.iter().map(|s| s.node.clone()).collect();
        assert!(spread.len() >= 2, "{steps:?}");
        let steps = plan(&nodes, &[], Some(&bp(4)), &bp(2));
        let stops: Vec<_> = steps
            .iter()
            .filter(|s| s.action == "stop")
            .map(|s| s.instance.as_str())
            .collect();
        assert_eq!(stops, ["shop/web/2", "shop/web/3"]);
        assert_eq!(steps.iter().filter(|s| s.action == "keep").count(), 2);
        let steps = plan(&[], &[], None, &bp(1));
        assert_eq!(steps[0].action, "pending");
        assert!(steps[0].reason.as_ref().unwrap().contains("no nodes"));
    }
}
