//! The pure assignment core (DESIGN §8): from the cluster's blueprints, members, current
//! assignments and instance reports, decide every wanted instance's node and what to write to get
//! there. No Raft, no runtime, no I/O: the leader's loop ([`super::cluster`]) reads a snapshot,
//! calls [`assign`] and writes the [`Changes`]; `blueprint apply --dry-run` ([`super::plan`])
//! calls it with the new version in place.
//!
//! Assignments are sticky: an instance stays where it is while its node is a ready member; only
//! new instances and those that must move are placed (on the consistent-hash ring, around the
//! ones that stay). An instance moves when:
//! - its node is draining (or drained, asleep): the new copy starts first and the old node keeps
//!   running its copy (`handoff`) until the new one is active, so capacity never dips;
//! - its node has been down for `deploy.reschedule_after` (the grace period), or left the
//!   cluster: it is placed elsewhere at once, with no hand-off;
//! - its node no longer offers the GPUs it asks for: it moves with a hand-off.
//!
//! An instance that cannot be placed stays pending with the reason; one that would lose its only
//! running copy to a pending move keeps its place instead. A draining node with nothing left on
//! it is marked drained. Statuses left behind by a lost node are cleared for it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use super::placement::{Needs, NodeSlot, Options, place_preferring};
use crate::domain::{
    Assignment, Blueprint, Health, InstanceState, InstanceStatus, Millis, NodeId, NodeState,
    Rollout, StoredBlueprint,
};

/// A member as the assignment loop sees it.
#[derive(Debug, Clone)]
pub struct Member {
    /// Capacity and whether new instances may go there.
    pub slot: NodeSlot,
    /// Its membership state (ready, draining, drained, asleep).
    pub state: NodeState,
    /// Whether the leader hears from it.
    pub health: Health,
    /// How long the leader has seen it down (`None` while not down).
    pub down_for: Option<Duration>,
}

/// Everything [`assign`] decides from.
pub struct World<'a> {
    /// Every stored blueprint.
    pub blueprints: &'a [Blueprint],
    /// Every member of the cluster.
    pub members: &'a [Member],
    /// The stored assignments, by instance (`blueprint/slice/index`).
    pub current: &'a BTreeMap<String, Assignment>,
    /// What every node reports of the instances it runs.
    pub instances: &'a [InstanceStatus],
    /// `deploy.reschedule_after`.
    pub grace: Duration,
    /// The time stamped on assignments that change now.
    pub now: Millis,
    /// The kept blueprint versions (the stored ones among them): the newest of a blueprint is
    /// the version its new copies run; older ones give the resources of copies a rollout holds.
    pub versions: &'a [StoredBlueprint],
    /// The open rollouts: how many copies of each version their slices run.
    pub rollouts: &'a [Rollout],
    /// The flexible slices (`blueprint/slice`): their instances prefer low-carbon nodes.
    pub flexible: &'a BTreeSet<String>,
}

/// No flexible slice (a world without any).
pub static NO_FLEXIBLE: BTreeSet<String> = BTreeSet::new();

/// What the loop writes.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    /// Assignments that are new or changed (`Command::AssignInstances`'s `set`).
    pub set: Vec<(String, Assignment)>,
    /// Assignments of instances no blueprint wants any more.
    pub remove: Vec<String>,
    /// Draining members with nothing left on them.
    pub drained: Vec<NodeId>,
    /// Instance statuses of lost members that no longer run there, to clear for them.
    pub clear: Vec<(NodeId, Vec<String>)>,
    /// Why an instance placed anew went where it went, where a preference chose (a flexible
    /// slice on a low-carbon node): for the log, nothing to write.
    pub notes: Vec<(String, String)>,
}

impl Changes {
    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
            && self.remove.is_empty()
            && self.drained.is_empty()
            && self.clear.is_empty()
    }
}

/// Which of a slice's copies a group of a rollout counts.
enum Side {
    /// Every copy (no rollout).
    Any,
    /// Those of this version (the rollout's new one).
    Is(u64),
    /// Those of any other version.
    Not(u64),
}

impl Side {
    fn holds(&self, version: u64) -> bool {
        match self {
            Side::Any => true,
            Side::Is(v) => version == *v,
            Side::Not(v) => version != *v,
        }
    }
}

/// One copy the blueprints want.
struct Want {
    /// `blueprint/slice/index`.
    key: String,
    needs: Needs,
    /// The blueprint version it runs.
    version: u64,
}

/// Every copy the blueprints want, blueprints by name. A slice keeps the copies it has (lowest
/// indices first) up to its count and takes the lowest free indices for more. Without an open
/// rollout every copy runs the newest version; with one, `want_to` copies run the rollout's
/// new version and `want_from` the others (those that run another version keep it; new ones
/// run the version the rollout started from).
fn wanted(w: &World) -> Vec<Want> {
    let mut sorted: Vec<&Blueprint> = w.blueprints.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let newest = |name: &str| {
        w.versions
            .iter()
            .filter(|v| v.blueprint.name == name)
            .map(|v| v.version)
            .max()
            .unwrap_or(0)
    };
    let mut out = Vec::new();
    for b in sorted {
        let v_now = newest(&b.name);
        for s in &b.slices {
            let needs_of = |version: u64| {
                let r = w
                    .versions
                    .iter()
                    .find(|v| v.blueprint.name == b.name && v.version == version)
                    .and_then(|v| v.blueprint.slices.iter().find(|x| x.name == s.name))
                    .map_or(s.resources, |x| x.resources);
                Needs {
                    cpu: r.cpu,
                    memory: r.memory,
                    gpu: r.gpu,
                }
            };
            let prefix = format!("{}/{}/", b.name, s.name);
            // (index, version) of the copies assigned now, lowest index first.
            let mut have: Vec<(u32, u64)> = w
                .current
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .filter_map(|(k, a)| Some((k[prefix.len()..].parse::<u32>().ok()?, a.version)))
                .collect();
            have.sort_unstable();
            let rollout = w
                .rollouts
                .iter()
                .find(|r| r.blueprint == b.name && r.slice == s.name && r.state.is_open());
            // (version of new copies, how many, which copies count towards it).
            let groups: Vec<(u64, u32, Side)> = match rollout {
                None => vec![(v_now, s.instances, Side::Any)],
                Some(r) => vec![
                    (r.to, r.want_to, Side::Is(r.to)),
                    (r.from, r.want_from, Side::Not(r.to)),
                ],
            };
            let mut chosen: Vec<(u32, u64)> = Vec::new();
            let mut missing: Vec<(u64, u32)> = Vec::new();
            for (version, count, side) in &groups {
                let mine: Vec<(u32, u64)> = have
                    .iter()
                    .filter(|(_, v)| side.holds(*v))
                    .take(*count as usize)
                    .map(|(i, v)| (*i, if rollout.is_none() { *version } else { *v }))
                    .collect();
                missing.push((*version, count.saturating_sub(mine.len() as u32)));
                chosen.extend(mine);
            }
            let mut taken: BTreeSet<u32> = chosen.iter().map(|(i, _)| *i).collect();
            // Indices still assigned (surplus about to go) are not reused in the same round.
            let busy: BTreeSet<u32> = have.iter().map(|(i, _)| *i).collect();
            let mut next = 0u32;
            for (version, n) in missing {
                for _ in 0..n {
                    while taken.contains(&next) || busy.contains(&next) {
                        next += 1;
                    }
                    taken.insert(next);
                    chosen.push((next, version));
                }
            }
            chosen.sort_unstable();
            for (i, version) in chosen {
                out.push(Want {
                    key: format!("{prefix}{i}"),
                    needs: needs_of(version),
                    version,
                });
            }
        }
    }
    out
}

/// The assignments after this round, and what to write to get there.
pub fn assign(w: &World) -> (BTreeMap<String, Assignment>, Changes) {
    let by_id: HashMap<NodeId, &Member> = w.members.iter().map(|m| (m.slot.id, m)).collect();
    let alive = |id: NodeId| by_id.get(&id).is_some_and(|m| m.health != Health::Down);
    let lost = |id: NodeId| match by_id.get(&id) {
        None => true,
        Some(m) => m.down_for.is_some_and(|d| d >= w.grace),
    };
    // Active copies by placement: a report left from an earlier placement never counts.
    let active: BTreeSet<(&str, NodeId, u64)> = w
        .instances
        .iter()
        .filter(|s| s.state == InstanceState::Active)
        .map(|s| (s.instance.as_str(), s.node, s.placement))
        .collect();
    let want = wanted(w);
    let mut changes = Changes::default();
    let want_keys: BTreeSet<&str> = want.iter().map(|x| x.key.as_str()).collect();
    changes.remove = w
        .current
        .keys()
        .filter(|k| !want_keys.contains(k.as_str()))
        .cloned()
        .collect();

    // Which instances keep their node, and which running copy may hand off to a new one.
    let mut pinned = BTreeMap::new();
    let mut old_copy: BTreeMap<&str, NodeId> = BTreeMap::new();
    // GPUs are handed out one instance each, so a node keeps only the GPU instances its offer
    // still covers (a slice may now ask for more, a node may offer fewer); the rest move, with
    // a hand-off, rather than wait there for ever. Only where the offer is known (schedulable):
    // a node that is down or has not said what it offers keeps what it has.
    let mut gpus_left: HashMap<NodeId, u32> =
        w.members.iter().map(|m| (m.slot.id, m.slot.gpus)).collect();
    for Want { key, needs, .. } in &want {
        let Some(a) = w.current.get(key) else {
            continue;
        };
        if let Some(h) = a.handoff.filter(|h| alive(*h)) {
            old_copy.insert(key, h);
        }
        let Some(n) = a.node else { continue };
        if lost(n) {
            continue;
        }
        match by_id.get(&n) {
            Some(m) if m.state == NodeState::Ready => {
                if needs.gpu > 0 && m.slot.schedulable.is_ok() {
                    let left = gpus_left.entry(n).or_default();
                    if *left < needs.gpu {
                        old_copy.entry(key).or_insert(n);
                        continue;
                    }
                    *left -= needs.gpu;
                }
                pinned.insert(key.clone(), n);
            }
            _ if alive(n) => {
                old_copy.entry(key).or_insert(n);
            }
            _ => {}
        }
    }
    let slots: Vec<NodeSlot> = w.members.iter().map(|m| m.slot.clone()).collect();
    let want_needs: Vec<(String, Needs)> = want.iter().map(|x| (x.key.clone(), x.needs)).collect();
    let flexible = |key: &str| {
        key.rsplit_once('/')
            .is_some_and(|(slice, _)| w.flexible.contains(slice))
    };
    let placed = place_preferring(&slots, &want_needs, &pinned, Options::default(), &flexible);
    changes.notes = placed
        .notes
        .iter()
        .filter(|(key, _)| {
            w.current
                .get(*key)
                .is_none_or(|c| placed.assigned.get(*key) != c.node.as_ref())
        })
        .map(|(k, n)| (k.clone(), n.clone()))
        .collect();

    let mut out = BTreeMap::new();
    for Want { key, version, .. } in &want {
        let version = *version;
        let cur = w.current.get(key);
        let next = match placed.assigned.get(key) {
            Some(&node) => {
                let kept = cur.filter(|c| c.node == Some(node));
                // The old copy stops once the copy on `node` is active.
                let new_active =
                    kept.is_some_and(|c| active.contains(&(key.as_str(), node, c.placement)));
                let handoff = old_copy
                    .get(key.as_str())
                    .copied()
                    .filter(|h| *h != node && !new_active);
                Assignment {
                    node: Some(node),
                    handoff,
                    pending: None,
                    since: kept.map_or(w.now, |c| c.since),
                    // The state machine stamps a new one when the node changes.
                    placement: kept.map_or(0, |c| c.placement),
                    version,
                }
            }
            None => match (cur, old_copy.get(key.as_str())) {
                // Nowhere to move it: the running copy stays where it is.
                (Some(c), Some(h)) if c.node == Some(*h) => Assignment {
                    version,
                    ..c.clone()
                },
                _ => Assignment {
                    node: None,
                    handoff: old_copy.get(key.as_str()).copied(),
                    pending: placed.pending.get(key).cloned(),
                    since: match cur {
                        Some(c) if c.node.is_none() => c.since,
                        _ => w.now,
                    },
                    placement: 0,
                    version,
                },
            },
        };
        let same = cur.is_some_and(|c| {
            c.node == next.node
                && c.handoff == next.handoff
                && c.pending == next.pending
                && c.version == next.version
        });
        if !same {
            changes.set.push((key.clone(), next.clone()));
        }
        out.insert(key.clone(), next);
    }

    let holds = |id: NodeId| {
        out.values()
            .any(|a| a.node == Some(id) || a.handoff == Some(id))
            || w.instances.iter().any(|s| s.node == id)
    };
    changes.drained = w
        .members
        .iter()
        .filter(|m| m.state == NodeState::Draining && !holds(m.slot.id))
        .map(|m| m.slot.id)
        .collect();
    let mut clear: BTreeMap<NodeId, Vec<String>> = BTreeMap::new();
    for s in w.instances {
        let still_there = out
            .get(&s.instance)
            .is_some_and(|a| a.node == Some(s.node) || a.handoff == Some(s.node));
        if lost(s.node) && !still_there {
            clear.entry(s.node).or_default().push(s.instance.clone());
        }
    }
    changes.clear = clear.into_iter().collect();
    (out, changes)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::deploy::blueprint::parse;

    /// A ready member with 8 cores and 16 GiB.
    pub(in crate::deploy) fn member(id: NodeId) -> Member {
        Member {
            slot: NodeSlot {
                id,
                name: format!("n{id}"),
                cpu: 8.0,
                memory: 16 << 30,
                gpus: 0,
                schedulable: Ok(()),
                gpu_trouble: None,
                carbon: None,
            },
            state: NodeState::Ready,
            health: Health::Ready,
            down_for: None,
        }
    }

    /// Blueprint `shop` with slice `web` of `instances` (max 10).
    pub(in crate::deploy) fn bp(instances: u32) -> Blueprint {
        parse(
            "t.toml",
            &format!(
                "name = \"shop\"\n[[slices]]\nname = \"web\"\ncommand = [\"true\"]\ninstances = {instances}\nmax = 10\n"
            ),
        )
        .unwrap()
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
            port: 1,
            pid: Some(1),
            restarts: 0,
            last_exit: None,
            health: "passing".into(),
            since: 0,
            gpus: Vec::new(),
        }
    }

    struct Case {
        bps: Vec<Blueprint>,
        members: Vec<Member>,
        current: BTreeMap<String, Assignment>,
        instances: Vec<InstanceStatus>,
        /// The store's placement numbers.
        seq: u64,
        versions: Vec<StoredBlueprint>,
        rollouts: Vec<Rollout>,
    }

    impl Case {
        fn new(n: u32, nodes: u64) -> Case {
            Case {
                bps: vec![bp(n)],
                members: (1..=nodes).map(member).collect(),
                current: BTreeMap::new(),
                instances: Vec::new(),
                seq: 0,
                versions: Vec::new(),
                rollouts: Vec::new(),
            }
        }
        /// One round; its changes, stamped as the state machine does, become the current
        /// state.
        fn round(&mut self) -> Changes {
            let (_, ch) = assign(&World {
                blueprints: &self.bps,
                members: &self.members,
                current: &self.current,
                instances: &self.instances,
                grace: Duration::from_secs(30),
                now: 1,
                versions: &self.versions,
                rollouts: &self.rollouts,
                flexible: &NO_FLEXIBLE,
            });
            for (k, a) in &ch.set {
                let a = a.clone().stamped(self.current.get(k), &mut self.seq);
                self.current.insert(k.clone(), a);
            }
            for k in &ch.remove {
                self.current.remove(k);
            }
            ch
        }
        fn drain(&mut self, i: usize) {
            self.members[i].state = NodeState::Draining;
            self.members[i].slot.schedulable = Err("is draining".into());
        }
        fn nodes_of(&self) -> BTreeMap<String, Option<NodeId>> {
            self.current
                .iter()
                .map(|(k, a)| (k.clone(), a.node))
                .collect()
        }
        fn run_all_active(&mut self) {
            self.instances = self
                .current
                .iter()
                .flat_map(|(k, a)| {
                    a.node
                        .map(|n| status(k, n, a.placement, InstanceState::Active))
                        .into_iter()
                        .chain(a.handoff.map(|h| status(k, h, 0, InstanceState::Active)))
                })
                .collect();
        }
    }

    #[test]
    fn a_rollout_sets_the_copies_of_each_version_and_new_ones_take_free_indices() {
        use crate::domain::{RolloutState, RolloutStep, TrafficSplit, UpdatePolicy};
        let mut c = Case::new(3, 2);
        let stored = |version| StoredBlueprint {
            version,
            applied_at: 0,
            blueprint: bp(3),
        };
        c.versions = vec![stored(1)];
        c.round();
        let versions = |c: &Case| -> Vec<(String, u64)> {
            c.current
                .iter()
                .map(|(k, a)| (k.clone(), a.version))
                .collect()
        };
        assert!(versions(&c).iter().all(|(_, v)| *v == 1));
        let mut r = Rollout {
            id: 1,
            blueprint: "shop".into(),
            slice: "web".into(),
            from: 1,
            to: 2,
            policy: UpdatePolicy::default(),
            cause: String::new(),
            state: RolloutState::Running,
            step: RolloutStep::Replace,
            step_since: 0,
            want_to: 1,
            want_from: 3,
            traffic: TrafficSplit::ByCopies,
            progress_at: 0,
            started_at: 0,
            ended_at: None,
            base: None,
            analysis: Vec::new(),
            reason: None,
            history: Vec::new(),
            rev: 1,
        };
        c.versions.push(stored(2));
        c.rollouts = vec![r.clone()];
        c.round();
        let v = |k: &str, c: &Case| c.current.get(k).map(|a| a.version);
        assert_eq!(
            versions(&c).len(),
            4,
            "one new copy beside the three: {:?}",
            versions(&c)
        );
        assert_eq!(
            (v("shop/web/0", &c), v("shop/web/3", &c)),
            (Some(1), Some(2))
        );
        // Retire one old copy (the highest index), then start the next new one: it takes the
        // freed index.
        r.want_from = 2;
        c.rollouts = vec![r.clone()];
        let ch = c.round();
        assert_eq!(ch.remove, ["shop/web/2"]);
        r.want_to = 2;
        c.rollouts = vec![r.clone()];
        c.round();
        assert_eq!(v("shop/web/2", &c), Some(2));
        // Going back: the old version's copies return, the new ones go.
        r.want_to = 0;
        r.want_from = 3;
        c.rollouts = vec![r.clone()];
        c.round();
        assert_eq!(
            versions(&c),
            [
                ("shop/web/0".into(), 1),
                ("shop/web/1".into(), 1),
                ("shop/web/4".into(), 1)
            ]
        );
        // With no rollout open, every copy runs the newest version: relabelled where it runs.
        let before = c.current.clone();
        c.rollouts.clear();
        c.round();
        for (k, a) in &c.current {
            assert_eq!(a.version, 2, "{k}");
            assert_eq!(
                (a.node, a.placement),
                (before[k].node, before[k].placement),
                "{k} stays put"
            );
        }
    }

    #[test]
    fn instances_stay_where_they_are_while_their_node_is_ready() {
        let mut c = Case::new(4, 3);
        let ch = c.round();
        assert_eq!(ch.set.len(), 4);
        let before = c.nodes_of();
        assert!(before.values().all(|n| n.is_some()));
        // A fourth node joins and the slice grows: nothing already placed moves.
        c.members.push(member(4));
        c.bps = vec![bp(8)];
        let ch = c.round();
        assert_eq!(ch.set.len(), 4, "only the 4 new instances: {ch:?}");
        for (k, n) in &before {
            assert_eq!(c.current[k].node, *n, "{k} moved");
        }
        assert!(c.round().is_empty(), "a second round changes nothing");
        // Scale down: the surplus is removed, the rest stays.
        c.bps = vec![bp(2)];
        let ch = c.round();
        assert_eq!(ch.remove.len(), 6);
        assert!(ch.set.is_empty());
    }

    #[test]
    fn a_drain_hands_off_and_the_old_copy_stops_only_when_the_new_one_is_active() {
        let mut c = Case::new(4, 3);
        c.round();
        c.run_all_active();
        let on_n1: Vec<String> = c
            .current
            .iter()
            .filter(|(_, a)| a.node == Some(1))
            .map(|(k, _)| k.clone())
            .collect();
        assert!(!on_n1.is_empty());
        c.drain(0);
        let ch = c.round();
        for k in &on_n1 {
            let a = &c.current[k];
            assert_ne!(a.node, Some(1));
            assert_eq!(
                a.handoff,
                Some(1),
                "{k} keeps its old copy until the new one runs"
            );
        }
        assert!(ch.drained.is_empty(), "n1 still runs its copies");
        // The new copies are still starting: the hand-off stays.
        assert!(c.round().is_empty());
        // New copies active: the hand-off is cleared, and n1's copies stop.
        c.run_all_active();
        let ch = c.round();
        assert_eq!(ch.set.len(), on_n1.len());
        assert!(c.current.values().all(|a| a.handoff.is_none()));
        assert!(ch.drained.is_empty(), "n1 has not reported its copies gone");
        c.run_all_active();
        let ch = c.round();
        assert_eq!(ch.drained, vec![1]);
    }

    #[test]
    fn a_report_left_from_an_earlier_placement_does_not_end_a_hand_off() {
        let mut c = Case::new(4, 3);
        c.round();
        c.run_all_active();
        let (key, _) = c
            .current
            .iter()
            .find(|(_, a)| a.node == Some(1))
            .map(|(k, a)| (k.clone(), a.clone()))
            .expect("an instance on n1");
        c.drain(0);
        c.round();
        let moved = c.current[&key].clone();
        let to = moved.node.unwrap();
        assert_eq!(moved.handoff, Some(1));
        // The new node still lists an active copy of this instance from an earlier placement
        // (its report that the copy is gone is not written yet).
        c.instances
            .push(status(&key, to, moved.placement - 1, InstanceState::Active));
        c.round();
        assert_eq!(
            c.current[&key].handoff,
            Some(1),
            "the old copy must run on until this placement's copy is active"
        );
        c.run_all_active();
        c.round();
        assert_eq!(c.current[&key].handoff, None);
    }

    #[test]
    fn a_node_keeps_only_the_gpu_instances_its_offer_covers() {
        let gpu_bp = |gpu: u32| {
            parse(
                "t.toml",
                &format!(
                    "name = \"ml\"\n[[slices]]\nname = \"train\"\ncommand = [\"true\"]\ninstances = 2\nresources = {{ gpu = {gpu} }}\n"
                ),
            )
            .unwrap()
        };
        let mut c = Case::new(0, 2);
        c.bps = vec![gpu_bp(1)];
        c.members[0].slot.gpus = 2;
        c.round();
        c.run_all_active();
        let before = c.nodes_of();
        assert!(before.values().all(|n| *n == Some(1)), "{before:?}");
        // n2 now offers 2 GPUs too, and each instance asks for 2: n1 keeps one, the other
        // moves to n2, handing off from n1; nothing is left pending.
        c.members[1].slot.gpus = 2;
        c.bps = vec![gpu_bp(2)];
        c.round();
        assert_eq!(c.current.values().filter(|a| a.node == Some(2)).count(), 1);
        let mut per_node: BTreeMap<NodeId, u32> = BTreeMap::new();
        for (k, a) in &c.current {
            let n = a.node.unwrap_or_else(|| panic!("{k} pending: {a:?}"));
            *per_node.entry(n).or_default() += 2;
            if Some(n) != before[k] {
                assert_eq!(a.handoff, before[k], "{k} hands off from its old node");
            }
        }
        assert!(per_node.values().all(|g| *g <= 2), "{per_node:?}");
        // With 2 GPUs per node taken, a third instance stays pending.
        c.run_all_active();
        c.round();
        assert!(c.current.values().all(|a| a.handoff.is_none()));
        let mut three = gpu_bp(2);
        three.slices[0].instances = 3;
        c.bps = vec![three];
        c.round();
        assert_eq!(c.current["ml/train/2"].node, None);
        assert_eq!(c.current.values().filter(|a| a.node.is_some()).count(), 2);
    }

    #[test]
    fn a_drain_with_nowhere_to_go_keeps_the_running_copy() {
        let mut c = Case::new(2, 1);
        c.round();
        c.drain(0);
        let ch = c.round();
        assert!(ch.set.is_empty(), "{ch:?}");
        assert!(c.current.values().all(|a| a.node == Some(1)));
        assert!(ch.drained.is_empty());
    }

    #[test]
    fn a_down_node_keeps_its_instances_for_the_grace_period_then_loses_them() {
        let mut c = Case::new(6, 3);
        c.round();
        c.run_all_active();
        let on_n2 = c.current.values().filter(|a| a.node == Some(2)).count();
        assert!(on_n2 > 0);
        c.members[1].health = Health::Down;
        c.members[1].slot.schedulable = Err("is down".into());
        c.members[1].down_for = Some(Duration::from_secs(5));
        assert!(
            c.round().is_empty(),
            "within the grace period nothing moves"
        );
        c.members[1].down_for = Some(Duration::from_secs(31));
        let ch = c.round();
        assert_eq!(ch.set.len(), on_n2);
        assert!(
            c.current
                .values()
                .all(|a| a.node.is_some_and(|n| n != 2) && a.handoff.is_none())
        );
        assert_eq!(ch.clear.len(), 1);
        assert_eq!(ch.clear[0].0, 2);
        assert_eq!(ch.clear[0].1.len(), on_n2);
    }

    #[test]
    fn an_instance_nobody_can_take_is_pending_with_every_node_named() {
        let mut c = Case::new(1, 2);
        c.bps = vec![
            parse(
                "t.toml",
                "name = \"ml\"\n[[slices]]\nname = \"gpu\"\ncommand = [\"true\"]\ninstances = 1\nresources = { gpu = 1 }\n",
            )
            .unwrap(),
        ];
        c.drain(1);
        c.round();
        let a = &c.current["ml/gpu/0"];
        assert_eq!(a.node, None);
        let why = a.pending.as_deref().unwrap();
        assert!(why.contains("n1 has 0 GPUs free"), "{why}");
        assert!(why.contains("n2 is draining"), "{why}");
        let ch = c.round();
        assert!(ch.set.is_empty(), "the same reason is not written again");
        assert_eq!(
            ch.drained,
            vec![2],
            "n2 holds nothing, so its drain is done"
        );
    }

    #[test]
    fn instances_of_a_node_that_left_move_at_once_and_its_statuses_are_cleared() {
        let mut c = Case::new(6, 3);
        c.round();
        c.run_all_active();
        let on_n3: BTreeSet<String> = c
            .current
            .iter()
            .filter(|(_, a)| a.node == Some(3))
            .map(|(k, _)| k.clone())
            .collect();
        assert!(!on_n3.is_empty());
        // n3 left the cluster: no grace period, no hand-off to a node that is gone.
        c.members.pop();
        let ch = c.round();
        assert_eq!(ch.set.len(), on_n3.len(), "{ch:?}");
        for k in &on_n3 {
            let a = &c.current[k];
            assert!(a.node.is_some_and(|n| n != 3), "{k}: {a:?}");
            assert_eq!(a.handoff, None, "{k}");
        }
        assert_eq!(ch.clear.len(), 1);
        assert_eq!(ch.clear[0].0, 3);
        let cleared: BTreeSet<String> = ch.clear[0].1.iter().cloned().collect();
        assert_eq!(cleared, on_n3);
    }

    #[test]
    fn a_removed_blueprint_removes_its_assignments_and_nothing_else() {
        let mut c = Case::new(3, 2);
        c.round();
        let other = parse(
            "t.toml",
            "name = \"blog\"\n[[slices]]\nname = \"web\"\ncommand = [\"true\"]\ninstances = 1\n",
        )
        .unwrap();
        c.bps.push(other);
        let ch = c.round();
        assert_eq!(ch.set.len(), 1);
        assert_eq!(ch.set[0].0, "blog/web/0");
        c.bps.retain(|b| b.name != "shop");
        let ch = c.round();
        assert!(ch.set.is_empty(), "{ch:?}");
        assert_eq!(ch.remove, vec!["shop/web/0", "shop/web/1", "shop/web/2"]);
        assert_eq!(c.current.keys().collect::<Vec<_>>(), vec!["blog/web/0"]);
        assert!(c.round().is_empty());
    }

    #[test]
    fn a_pending_instance_keeps_the_time_it_first_waited() {
        let mut c = Case::new(1, 1);
        c.drain(0);
        let (after, _) = assign(&World {
            blueprints: &c.bps,
            members: &c.members,
            current: &c.current,
            instances: &c.instances,
            grace: Duration::from_secs(30),
            now: 5,
            versions: &[],
            rollouts: &[],
            flexible: &NO_FLEXIBLE,
        });
        let a = &after["shop/web/0"];
        assert_eq!((a.node, a.since), (None, 5));
        c.current = after;
        let (later, ch) = assign(&World {
            blueprints: &c.bps,
            members: &c.members,
            current: &c.current,
            instances: &c.instances,
            grace: Duration::from_secs(30),
            now: 9,
            versions: &[],
            rollouts: &[],
            flexible: &NO_FLEXIBLE,
        });
        assert_eq!(later["shop/web/0"].since, 5);
        assert!(
            ch.set.is_empty(),
            "the same pending is not written again: {ch:?}"
        );
    }
}
