//! Placement (DESIGN §8): which node runs each instance. A pure function of the nodes, their
//! free resources and the instances wanted; no I/O, deterministic.
//!
//! Consistent hashing with bounded loads: every node owns virtual points on a hash ring (150 per
//! node by default, scaled by its CPU capacity); an instance goes to the first node clockwise from
//! its own hash that is schedulable, has the resources left, and holds fewer than its share of
//! instances (`load_factor` × its capacity-weighted fair share, rounded up). Adding a node moves
//! only the instances whose points it takes over (about 1/N of them), plus the few pushed on by
//! the load bound. An instance no node can take stays pending with a reason naming every node.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::domain::NodeId;

/// A node as placement sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSlot {
    /// The node.
    pub id: NodeId,
    /// Its name, for pending reasons.
    pub name: String,
    /// Cores free for instances.
    pub cpu: f32,
    /// Bytes of memory free for instances.
    pub memory: u64,
    /// GPUs free for instances.
    pub gpus: u32,
    /// `Err(why)` when the node may not take instances (`is draining`, `is down`).
    pub schedulable: Result<(), String>,
    /// `Some(finding)` while a GPU-health finding holds on the node: it takes no new instance
    /// that needs a GPU (those it runs stay).
    pub gpu_trouble: Option<String>,
    /// The carbon intensity of its grid now (gCO2eq/kWh), when it reads a signal.
    pub carbon: Option<f32>,
}

/// What one instance needs.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Needs {
    /// Cores.
    pub cpu: f32,
    /// Bytes of memory.
    pub memory: u64,
    /// Whole GPUs.
    pub gpu: u32,
}

/// Placement settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// Virtual points per node of average capacity.
    pub vnodes: u32,
    /// A node takes at most this many times its fair share of the instances.
    pub load_factor: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            vnodes: 150,
            load_factor: 1.25,
        }
    }
}

/// The result: instance key → node, and the instances left pending with the reason.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Placement {
    /// Instance key → the node it goes to.
    pub assigned: BTreeMap<String, NodeId>,
    /// Instance key → why no node can take it.
    pub pending: BTreeMap<String, String>,
    /// Instance key → why it went where it went, where a preference chose the node (a flexible
    /// slice's instance on the lowest-carbon node that takes it).
    pub notes: BTreeMap<String, String>,
}

/// FNV-1a then a splitmix64 finaliser: stable across runs, builds and machines.
fn hash(bytes: &[u8], salt: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

fn human_bytes(b: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if b >= 1024 * MIB {
        format!("{:.1}GiB", b as f64 / (1024 * MIB) as f64)
    } else {
        format!("{}MiB", b / MIB)
    }
}

/// Place `instances` (key, needs), in the order given, on `nodes`.
pub fn place(nodes: &[NodeSlot], instances: &[(String, Needs)], opts: Options) -> Placement {
    place_sticky(nodes, instances, &BTreeMap::new(), opts)
}

/// Like [`place`], but an instance in `pinned` stays on its node (when that node is in `nodes`):
/// it is counted and its resources taken first, then the others are placed around it. This is
/// how running instances keep their place while new ones are added.
pub fn place_sticky(
    nodes: &[NodeSlot],
    instances: &[(String, Needs)],
    pinned: &BTreeMap<String, NodeId>,
    opts: Options,
) -> Placement {
    place_preferring(nodes, instances, pinned, opts, &|_| false)
}

/// Like [`place_sticky`], but an instance for which `low_carbon` holds (a flexible slice's)
/// goes to the node with the lowest carbon intensity that takes it (within its load bound),
/// rather than its place on the ring: a preference, never a reason to leave it pending. Its
/// note says so with the numbers. Without any node's signal it is placed as usual.
pub fn place_preferring(
    nodes: &[NodeSlot],
    instances: &[(String, Needs)],
    pinned: &BTreeMap<String, NodeId>,
    opts: Options,
    low_carbon: &dyn Fn(&str) -> bool,
) -> Placement {
    let mut out = Placement::default();
    let usable: Vec<usize> = (0..nodes.len())
        .filter(|i| nodes[*i].schedulable.is_ok())
        .collect();
    // Capacity weight: CPU cores, at least a little so a node with no CPU left still has points.
    let weight = |i: usize| (nodes[i].cpu as f64).max(0.1);
    let total_weight: f64 = usable.iter().map(|i| weight(*i)).sum();
    let mean_weight = if usable.is_empty() {
        1.0
    } else {
        total_weight / usable.len() as f64
    };
    let mut ring: Vec<(u64, u32)> = Vec::new();
    for &i in &usable {
        let points = ((opts.vnodes as f64 * weight(i) / mean_weight).round() as u32).max(1);
        let id = nodes[i].id.to_le_bytes();
        for r in 0..points {
            ring.push((hash(&id, r as u64 + 1), i as u32));
        }
    }
    ring.sort_unstable();
    let n = instances.len() as f64;
    let bound: Vec<u32> = (0..nodes.len())
        .map(|i| {
            if nodes[i].schedulable.is_err() {
                0
            } else {
                (opts.load_factor * n * weight(i) / total_weight).ceil() as u32
            }
        })
        .collect();
    let mut count = vec![0u32; nodes.len()];
    let mut free: Vec<(f32, u64, u32)> = nodes.iter().map(|s| (s.cpu, s.memory, s.gpus)).collect();
    // Which instance last looked at a node: each node is judged once per instance.
    let mut seen = vec![usize::MAX; nodes.len()];
    let fits =
        |f: &(f32, u64, u32), w: &Needs| f.0 + 1e-4 >= w.cpu && f.1 >= w.memory && f.2 >= w.gpu;
    let gpu_ok = |i: usize, w: &Needs| w.gpu == 0 || nodes[i].gpu_trouble.is_none();
    let index_of: BTreeMap<NodeId, usize> =
        nodes.iter().enumerate().map(|(i, n)| (n.id, i)).collect();
    let mut is_pinned = vec![false; instances.len()];
    for (k, (key, needs)) in instances.iter().enumerate() {
        if let Some(&i) = pinned.get(key).and_then(|id| index_of.get(id)) {
            is_pinned[k] = true;
            count[i] += 1;
            free[i].0 -= needs.cpu;
            free[i].1 = free[i].1.saturating_sub(needs.memory);
            free[i].2 = free[i].2.saturating_sub(needs.gpu);
            out.assigned.insert(key.clone(), nodes[i].id);
        }
    }
    for (k, (key, needs)) in instances.iter().enumerate() {
        if is_pinned[k] {
            continue;
        }
        let mut chosen = None;
        if low_carbon(key) {
            let mut by_carbon: Vec<usize> = usable
                .iter()
                .copied()
                .filter(|i| nodes[*i].carbon.is_some())
                .collect();
            by_carbon.sort_by(|a, b| {
                let g = |i: &usize| nodes[*i].carbon.unwrap_or(f32::INFINITY);
                g(a).total_cmp(&g(b)).then(nodes[*a].id.cmp(&nodes[*b].id))
            });
            if let Some(&i) = by_carbon
                .iter()
                .find(|i| count[**i] < bound[**i] && fits(&free[**i], needs))
            {
                chosen = Some(i);
                let others: Vec<String> = by_carbon
                    .iter()
                    .filter(|j| **j != i)
                    .map(|j| {
                        format!(
                            "{} {} g/kWh",
                            nodes[*j].name,
                            nodes[*j].carbon.unwrap_or_default().round()
                        )
                    })
                    .collect();
                out.notes.insert(
                    key.clone(),
                    format!(
                        "flexible: prefers the lowest-carbon node that takes it, {} at {} g/kWh{}",
                        nodes[i].name,
                        nodes[i].carbon.unwrap_or_default().round(),
                        if others.is_empty() {
                            String::new()
                        } else {
                            format!(" (others: {})", others.join(", "))
                        }
                    ),
                );
            }
        }
        if chosen.is_none() && !ring.is_empty() {
            let h = hash(key.as_bytes(), 0);
            let start = ring.partition_point(|(p, _)| *p < h);
            let mut distinct = 0;
            for step in 0..ring.len() {
                let i = ring[(start + step) % ring.len()].1 as usize;
                if seen[i] == k {
                    continue;
                }
                seen[i] = k;
                distinct += 1;
                if count[i] < bound[i] && fits(&free[i], needs) && gpu_ok(i, needs) {
                    chosen = Some(i);
                    break;
                }
                if distinct == usable.len() {
                    break;
                }
            }
        }
        match chosen {
            Some(i) => {
                count[i] += 1;
                free[i].0 -= needs.cpu;
                free[i].1 -= needs.memory;
                free[i].2 -= needs.gpu;
                out.assigned.insert(key.clone(), nodes[i].id);
            }
            None => {
                out.pending
                    .insert(key.clone(), why_not(nodes, &free, &count, &bound, needs));
            }
        }
    }
    out
}

/// `needs cpu=0.5 memory=256MiB gpu=1: n1 has 0 GPUs free, n2 is draining`.
fn why_not(
    nodes: &[NodeSlot],
    free: &[(f32, u64, u32)],
    count: &[u32],
    bound: &[u32],
    needs: &Needs,
) -> String {
    let mut s = format!(
        "needs cpu={} memory={} gpu={}: ",
        needs.cpu,
        human_bytes(needs.memory),
        needs.gpu
    );
    if nodes.is_empty() {
        s.push_str("the cluster has no nodes");
        return s;
    }
    let mut parts = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let f = free[i];
        let mut p = String::new();
        if let Err(why) = &node.schedulable {
            let _ = write!(p, "{} {why}", node.name);
        } else if let Some(finding) = node.gpu_trouble.as_ref().filter(|_| needs.gpu > 0) {
            let _ = write!(p, "{} takes no new GPU work ({finding})", node.name);
        } else if f.2 < needs.gpu {
            let _ = write!(p, "{} has {} GPUs free", node.name, f.2);
        } else if f.0 + 1e-4 < needs.cpu {
            let _ = write!(p, "{} has {:.2} cpu free", node.name, f.0.max(0.0));
        } else if f.1 < needs.memory {
            let _ = write!(p, "{} has {} memory free", node.name, human_bytes(f.1));
        } else if count[i] >= bound[i] {
            let _ = write!(p, "{} holds its share ({} instances)", node.name, count[i]);
        } else {
            let _ = write!(p, "{} was not reached", node.name);
        }
        parts.push(p);
    }
    s.push_str(&parts.join(", "));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: NodeId, cpu: f32) -> NodeSlot {
        NodeSlot {
            id,
            name: format!("n{id}"),
            cpu,
            memory: 64 << 30,
            gpus: 0,
            schedulable: Ok(()),
            gpu_trouble: None,
            carbon: None,
        }
    }

    fn instances(n: usize, cpu: f32) -> Vec<(String, Needs)> {
        (0..n)
            .map(|i| {
                (
                    format!("shop/web/{i}"),
                    Needs {
                        cpu,
                        memory: 64 << 20,
                        gpu: 0,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn instances_spread_within_the_load_bound() {
        let nodes: Vec<NodeSlot> = (1..=3).map(|i| node(i, 16.0)).collect();
        let p = place(&nodes, &instances(300, 0.1), Options::default());
        assert!(p.pending.is_empty(), "{:?}", p.pending);
        for id in 1..=3 {
            let c = p.assigned.values().filter(|n| **n == id).count();
            assert!((60..=125).contains(&c), "node {id} got {c} of 300");
        }
        assert_eq!(
            p,
            place(&nodes, &instances(300, 0.1), Options::default()),
            "deterministic"
        );
    }

    #[test]
    fn adding_a_fourth_node_moves_about_a_quarter() {
        let three: Vec<NodeSlot> = (1..=3).map(|i| node(i, 16.0)).collect();
        let mut four = three.clone();
        four.push(node(4, 16.0));
        let want = instances(1000, 0.01);
        let (a, b) = (
            place(&three, &want, Options::default()),
            place(&four, &want, Options::default()),
        );
        let moved = a
            .assigned
            .iter()
            .filter(|(k, n)| b.assigned[*k] != **n)
            .count();
        let to_new = b.assigned.values().filter(|n| **n == 4).count();
        assert!(moved <= 300, "moved {moved} of 1000 (a quarter is 250)");
        assert!(to_new >= 150, "the new node takes its share: {to_new}");
    }

    #[test]
    fn capacity_weights_the_share() {
        let nodes = vec![node(1, 32.0), node(2, 8.0)];
        let p = place(&nodes, &instances(400, 0.01), Options::default());
        let big = p.assigned.values().filter(|n| **n == 1).count();
        assert!(big > 260, "the 4× larger node takes most: {big} of 400");
    }

    #[test]
    fn a_node_with_gpu_trouble_takes_no_new_gpu_work_but_still_cpu_work() {
        let mut nodes = vec![node(1, 8.0), node(2, 8.0)];
        nodes[0].gpus = 2;
        nodes[0].gpu_trouble = Some("gpu0 had 1 new critical XID error in the last 15 min".into());
        nodes[1].gpus = 0;
        let gpu_work = vec![(
            "ml/train/0".to_string(),
            Needs {
                cpu: 1.0,
                memory: 1 << 30,
                gpu: 1,
            },
        )];
        let p = place(&nodes, &gpu_work, Options::default());
        assert!(p.assigned.is_empty(), "{p:?}");
        assert_eq!(
            p.pending["ml/train/0"],
            "needs cpu=1 memory=1.0GiB gpu=1: n1 takes no new GPU work (gpu0 had 1 new critical XID error in the last 15 min), n2 has 0 GPUs free"
        );
        // CPU work still goes there; and once the finding clears, GPU work does too.
        let p = place(&nodes[..1], &instances(3, 0.5), Options::default());
        assert_eq!(p.assigned.len(), 3, "{p:?}");
        nodes[0].gpu_trouble = None;
        let p = place(&nodes, &gpu_work, Options::default());
        assert_eq!(p.assigned.get("ml/train/0"), Some(&1));
    }

    #[test]
    fn unplaceable_instances_say_why_for_every_node() {
        let mut nodes = vec![node(1, 4.0), node(2, 4.0), node(3, 0.2)];
        nodes[1].schedulable = Err("is draining".into());
        nodes[0].gpus = 0;
        let want = vec![(
            "ml/train/0".to_string(),
            Needs {
                cpu: 1.0,
                memory: 1 << 30,
                gpu: 1,
            },
        )];
        let p = place(&nodes, &want, Options::default());
        assert!(p.assigned.is_empty());
        assert_eq!(
            p.pending["ml/train/0"],
            "needs cpu=1 memory=1.0GiB gpu=1: n1 has 0 GPUs free, n2 is draining, n3 has 0 GPUs free"
        );
        let want = instances(2, 0.15);
        let p = place(&[node(1, 0.2)], &want, Options::default());
        assert_eq!(p.assigned.len(), 1);
        assert_eq!(
            p.pending.values().next().unwrap(),
            "needs cpu=0.15 memory=64MiB gpu=0: n1 has 0.05 cpu free"
        );
        let p = place(&[], &want, Options::default());
        assert!(
            p.pending
                .values()
                .all(|r| r.ends_with("the cluster has no nodes"))
        );
    }

    #[test]
    fn resources_are_never_overcommitted() {
        let nodes: Vec<NodeSlot> = (1..=4).map(|i| node(i, 2.0)).collect();
        let p = place(&nodes, &instances(20, 0.5), Options::default());
        assert_eq!(p.assigned.len(), 16, "4 nodes × 2 cores / 0.5");
        assert_eq!(p.pending.len(), 4);
        for id in 1..=4 {
            assert_eq!(p.assigned.values().filter(|n| **n == id).count(), 4);
        }
    }

    #[test]
    fn a_flexible_instance_prefers_the_lowest_carbon_node_that_takes_it() {
        let mut nodes: Vec<NodeSlot> = (1..=3).map(|id| node(id, 4.0)).collect();
        nodes[0].carbon = Some(420.0);
        nodes[1].carbon = Some(95.4);
        nodes[2].carbon = Some(210.0);
        let want = instances(2, 1.0);
        let flexible = |k: &str| k.starts_with("shop/web/");
        let prefer = |nodes: &[NodeSlot], want: &[_]| {
            place_preferring(nodes, want, &BTreeMap::new(), Options::default(), &flexible)
        };
        let p = prefer(&nodes, &want);
        // Two instances, bound 1 each (1.25 × 2 / 3, rounded up): the cleanest, then the next.
        assert_eq!(p.assigned["shop/web/0"], 2);
        assert_eq!(p.assigned["shop/web/1"], 3);
        assert_eq!(
            p.notes["shop/web/0"],
            "flexible: prefers the lowest-carbon node that takes it, n2 at 95 g/kWh (others: n3 210 g/kWh, n1 420 g/kWh)"
        );
        // A node that cannot take it is passed over; no signal at all: the ring as usual.
        nodes[1].schedulable = Err("is draining".into());
        let p = prefer(&nodes, &want[..1]);
        assert_eq!(p.assigned["shop/web/0"], 3);
        for n in &mut nodes {
            n.carbon = None;
        }
        let p = prefer(&nodes, &want);
        let q = place_sticky(&nodes, &want, &BTreeMap::new(), Options::default());
        assert_eq!((p.assigned, p.notes.len()), (q.assigned, 0));
    }
}
