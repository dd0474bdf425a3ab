//! Power per slice, from a metrics snapshot and the instance reports: the GPU power NVML
//! measures on the GPUs each instance holds (an instance sees only its own GPUs, so a GPU's
//! power is its holder's), and the CPU power *estimated* as the cores the instance's process
//! uses × a configured watts per core (`gpu.cpu_watts_per_core`). Pure.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::update::ClusterMetricsSnapshot;
use crate::domain::{InstanceState, InstanceStatus, NodeId};

/// One slice's power now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlicePower {
    /// `blueprint/slice`.
    pub slice: String,
    /// Its active instances.
    pub instances: u32,
    /// Cores their processes use now (those the snapshot sampled).
    pub cpu_cores: f64,
    /// CPU power, an estimate: `cpu_cores` × watts per core.
    pub cpu_watts_estimate: f64,
    /// GPUs they hold.
    pub gpus: u32,
    /// GPU power NVML measures on those GPUs; 0 without any (or where NVML gives no figure).
    pub gpu_watts: f64,
}

impl SlicePower {
    /// GPU watts plus the CPU estimate.
    pub fn total_watts(&self) -> f64 {
        self.gpu_watts + self.cpu_watts_estimate
    }
}

/// Every slice with an active instance, by name: its cores, GPUs and power now.
/// `watts_per_core` is the CPU estimate's factor.
pub fn slice_power(
    snap: &ClusterMetricsSnapshot,
    instances: &[InstanceStatus],
    watts_per_core: f64,
) -> Vec<SlicePower> {
    let mut cpu_of: HashMap<(NodeId, u32), f64> = HashMap::new();
    let mut gpu_watts: HashMap<(NodeId, u32), f64> = HashMap::new();
    for e in &snap.nodes {
        for p in &e.m.procs {
            cpu_of.insert((e.node, p.pid), f64::from(p.cpu));
        }
        for g in &e.m.gpus {
            if g.power_w.is_finite() {
                gpu_watts.insert((e.node, g.index), f64::from(g.power_w));
            }
        }
    }
    let active: Vec<&InstanceStatus> = instances
        .iter()
        .filter(|i| i.state == InstanceState::Active)
        .collect();
    // A GPU held by two copies (one stopping) is shared between them.
    let mut holders: HashMap<(NodeId, u32), u32> = HashMap::new();
    for i in &active {
        for g in &i.gpus {
            *holders.entry((i.node, *g)).or_default() += 1;
        }
    }
    let mut out: BTreeMap<String, SlicePower> = BTreeMap::new();
    for i in active {
        let slice = i
            .instance
            .rsplit_once('/')
            .map_or(i.instance.as_str(), |(s, _)| s);
        let p = out.entry(slice.to_string()).or_insert_with(|| SlicePower {
            slice: slice.to_string(),
            instances: 0,
            cpu_cores: 0.0,
            cpu_watts_estimate: 0.0,
            gpus: 0,
            gpu_watts: 0.0,
        });
        p.instances += 1;
        if let Some(c) = i.pid.and_then(|pid| cpu_of.get(&(i.node, pid))) {
            p.cpu_cores += c;
        }
        for g in &i.gpus {
            p.gpus += 1;
            let key = (i.node, *g);
            if let Some(w) = gpu_watts.get(&key) {
                p.gpu_watts += w / f64::from(holders[&key].max(1));
            }
        }
    }
    out.into_values()
        .map(|mut p| {
            p.cpu_watts_estimate = p.cpu_cores * watts_per_core;
            p
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::gpu::GpuSample;
    use crate::metrics::update::{NodeEntry, NodeMetrics, ProcessSample};

    fn status(instance: &str, node: NodeId, pid: u32, gpus: Vec<u32>) -> InstanceStatus {
        InstanceStatus {
            instance: instance.into(),
            node,
            placement: 1,
            state: InstanceState::Active,
            port: 0,
            pid: Some(pid),
            restarts: 0,
            last_exit: None,
            health: "none".into(),
            since: 0,
            gpus,
        }
    }

    fn gpu(index: u32, power_w: f32) -> GpuSample {
        GpuSample {
            util: 1.0,
            power_w,
            ..GpuSample::quiet(index)
        }
    }

    fn entry(node: NodeId, procs: &[(u32, f32)], gpus: Vec<GpuSample>) -> NodeEntry {
        NodeEntry {
            node,
            info: Default::default(),
            m: NodeMetrics {
                procs: procs
                    .iter()
                    .map(|(pid, cpu)| ProcessSample {
                        pid: *pid,
                        cpu: *cpu,
                        rss: 0,
                    })
                    .collect(),
                gpus,
                ..Default::default()
            },
            age_ms: 0,
            health: Default::default(),
            member: true,
            anomalies: Vec::new(),
        }
    }

    #[test]
    fn gpu_power_goes_to_the_holder_and_cpu_power_is_estimated_from_cores() {
        let snap = ClusterMetricsSnapshot {
            nodes: vec![
                entry(
                    1,
                    &[(10, 0.5), (11, 1.0)],
                    vec![gpu(0, 300.0), gpu(1, 250.0)],
                ),
                entry(2, &[(20, 2.0)], Vec::new()),
            ],
            ..Default::default()
        };
        let mut stopped = status("shop/web/9", 2, 99, Vec::new());
        stopped.state = InstanceState::Backoff;
        let instances = vec![
            status("ml/train/0", 1, 10, vec![0]),
            status("ml/train/1", 1, 11, vec![1]),
            status("shop/web/0", 2, 20, Vec::new()),
            stopped,
        ];
        let p = slice_power(&snap, &instances, 5.0);
        assert_eq!(p.len(), 2, "{p:?}");
        let train = &p[0];
        assert_eq!(
            (train.slice.as_str(), train.instances, train.gpus),
            ("ml/train", 2, 2)
        );
        assert_eq!(train.gpu_watts, 550.0);
        assert_eq!(train.cpu_cores, 1.5);
        assert_eq!(train.cpu_watts_estimate, 7.5);
        assert_eq!(train.total_watts(), 557.5);
        let web = &p[1];
        assert_eq!((web.instances, web.gpus, web.gpu_watts), (1, 0, 0.0));
        assert_eq!(web.cpu_watts_estimate, 10.0);
    }

    #[test]
    fn a_shared_gpu_is_split_and_an_unknown_power_counts_zero() {
        let snap = ClusterMetricsSnapshot {
            nodes: vec![entry(1, &[], vec![gpu(0, 200.0), gpu(1, f32::NAN)])],
            ..Default::default()
        };
        let instances = vec![
            status("a/w/0", 1, 1, vec![0]),
            status("a/w/1", 1, 2, vec![0, 1]),
        ];
        let p = slice_power(&snap, &instances, 5.0);
        assert_eq!(p[0].gpu_watts, 200.0);
        assert_eq!(p[0].gpus, 3);
        assert_eq!(p[0].cpu_cores, 0.0, "processes not sampled count no cores");
    }
}
