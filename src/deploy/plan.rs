//! The placement plan of a blueprint change: which instances start or stop on which node.
//! Pure: the assignment loop's own choice ([`assign`]) with the new version in place, against
//! the assignments stored now.

use serde::{Deserialize, Serialize};

use super::assign::{World, assign};
use crate::domain::NodeId;

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

/// The steps that take the current assignments of blueprint `name` to what the assignment loop
/// will choose once `w.blueprints` (which holds the new version) is stored. Instances that stay
/// are `keep`; a moved instance starts on its new node before it stops on the old one.
pub fn plan(w: &World, name: &str) -> Vec<PlanStep> {
    let (after, _) = assign(w);
    let name_of = |id: NodeId| {
        w.members
            .iter()
            .find(|m| m.slot.id == id)
            .map(|m| m.slot.name.clone())
    };
    let prefix = format!("{name}/");
    let mut steps = Vec::new();
    let step = |action: &str, key: &str, node: Option<NodeId>, reason: Option<String>| PlanStep {
        action: action.into(),
        instance: key.into(),
        node: node.and_then(name_of),
        reason,
    };
    for (key, a) in after.iter().filter(|(k, _)| k.starts_with(&prefix)) {
        let was = w.current.get(key).and_then(|c| c.node);
        match a.node {
            None => steps.push(step("pending", key, None, a.pending.clone())),
            Some(n) if was == Some(n) => steps.push(step("keep", key, Some(n), None)),
            Some(n) => {
                steps.push(step("start", key, Some(n), None));
                if let Some(o) = was {
                    steps.push(step("stop", key, Some(o), None));
                }
            }
        }
    }
    for (key, a) in w.current.iter().filter(|(k, _)| k.starts_with(&prefix)) {
        if !after.contains_key(key) && a.node.is_some() {
            steps.push(step("stop", key, a.node, None));
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::deploy::assign::Member;
    use crate::deploy::assign::tests::{bp, member};
    use crate::domain::{Assignment, Blueprint};

    fn world<'a>(
        bps: &'a [Blueprint],
        members: &'a [Member],
        current: &'a BTreeMap<String, Assignment>,
    ) -> World<'a> {
        World {
            blueprints: bps,
            members,
            current,
            instances: &[],
            grace: Duration::from_secs(30),
            now: 1,
            versions: &[],
            rollouts: &[],
            flexible: &crate::deploy::assign::NO_FLEXIBLE,
        }
    }

    #[test]
    fn a_new_blueprint_starts_every_instance_and_a_scale_down_stops_the_surplus() {
        let members = [member(1), member(2), member(3)];
        let none = BTreeMap::new();
        let four = [bp(4)];
        let steps = plan(&world(&four, &members, &none), "shop");
        assert_eq!(steps.len(), 4);
        assert!(
            steps
                .iter()
                .all(|s| s.action == "start" && s.node.is_some())
        );
        let spread: std::collections::BTreeSet<_> = steps.iter().map(|s| s.node.clone()).collect();
        assert!(spread.len() >= 2, "{steps:?}");
        let (current, _) = assign(&world(&four, &members, &none));
        let two = [bp(2)];
        let steps = plan(&world(&two, &members, &current), "shop");
        let stops: Vec<_> = steps
            .iter()
            .filter(|s| s.action == "stop")
            .map(|s| s.instance.as_str())
            .collect();
        assert_eq!(stops, ["shop/web/2", "shop/web/3"]);
        assert_eq!(steps.iter().filter(|s| s.action == "keep").count(), 2);
        let one = [bp(1)];
        let steps = plan(&world(&one, &[], &none), "shop");
        assert_eq!(steps[0].action, "pending");
        assert!(steps[0].reason.as_ref().unwrap().contains("no nodes"));
    }
}
