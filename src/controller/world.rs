//! The world: the cluster as the controller sees it this second — each slice's counts, load,
//! request figures (from the ingress, through the metrics snapshot) and scaling policy, each
//! member's state and headline metrics. Plain data; the loop builds it (`flow`), the brain
//! learns from it and the policy decides on it (`decide`).

use std::collections::{BTreeMap, HashMap};

use super::rules::Metric;
use crate::domain::{
    Action, Assignment, Decision, DecisionStatus, Health, InstanceState, InstanceStatus, Millis,
    NodeId, NodeRecord, NodeState, StoredBlueprint,
};
use crate::metrics::gpu::GpuSample;
use crate::metrics::gpu_health;
use crate::metrics::requests::SliceTraffic;
use crate::metrics::update::AnomalyFlag;

/// One slice as the controller sees it this second.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SliceView {
    pub blueprint: String,
    pub slice: String,
    /// Desired instances (the blueprint's count now).
    pub desired: u32,
    pub min: u32,
    pub max: u32,
    /// Instances reported active.
    pub active: u32,
    /// Cores each instance reserves.
    pub cpu_reserved: f64,
    /// Cores used by the active instances together; `None` when no sample covers them.
    pub cpu_used: Option<f64>,
    /// The slice declares a `[slices.service]`: its demand is its request rate.
    pub service: bool,
    /// Calls per second through the ingress over the cluster; `None`: no traffic figures for
    /// the slice this second (no service, or no fresh metrics snapshot).
    pub calls_per_s: Option<f64>,
    /// The 95th percentile of call latency, ms (what `latency_ms` rules and the latency target
    /// compare); `None` without calls.
    pub latency_ms: Option<f64>,
    /// The 99th percentile, ms: cited in decisions, not compared.
    pub latency_p99_ms: Option<f64>,
    /// Errors ÷ calls, 0–1; `None` without calls.
    pub error_rate: Option<f64>,
    /// Requests waiting at the ingresses for an instance (the slice has none ready).
    pub waiting: u32,
    /// When a request last arrived (Unix ms), if one did within the metrics window.
    pub last_call_at: Option<Millis>,
    /// From the blueprint's `[slices.scaling]`; `None`: the rule settings apply.
    pub target_cpu: Option<f64>,
    pub target_latency_ms: Option<f64>,
    pub target_calls_per_instance: Option<f64>,
    pub predictive: Option<bool>,
    pub up_cooldown_ms: Option<u64>,
    pub down_cooldown_ms: Option<u64>,
    /// With `min = 0`: scale to zero after this long without a request.
    pub idle_to_zero_ms: Option<u64>,
    /// When the slice's count was last set (the blueprint version that set it: an operator's
    /// scale or apply, or a controller decision applied at that same time); `None`: not known.
    /// The leader fills it in from the kept versions ([`count_set_at`]).
    pub count_set_at: Option<Millis>,
}

impl SliceView {
    /// `blueprint/slice`.
    pub fn target(&self) -> String {
        format!("{}/{}", self.blueprint, self.slice)
    }

    pub(super) fn value(&self, m: Metric) -> Option<f64> {
        match m {
            Metric::CpuPerInstance => match (self.cpu_used, self.active) {
                (Some(u), a) if a > 0 && self.cpu_reserved > 0.0 => {
                    Some(u / (a as f64 * self.cpu_reserved))
                }
                _ => None,
            },
            Metric::SliceCpu => self.cpu_used,
            Metric::CallsPerSec => self.calls_per_s,
            Metric::CallsPerInstance => match (self.calls_per_s, self.active) {
                (Some(c), a) if a > 0 => Some(c / a as f64),
                _ => None,
            },
            Metric::LatencyMs => self.latency_ms,
            Metric::ErrorRate => self.error_rate,
            Metric::Unhealthy => Some(self.desired.saturating_sub(self.active) as f64),
            _ => None,
        }
    }
}

/// One member as the controller sees it this second.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    pub id: NodeId,
    pub name: String,
    pub state: NodeState,
    /// Liveness is `ready` (not suspect or down).
    pub live: bool,
    pub cpu: f64,
    pub mem: f64,
    pub gpu_util: Option<f64>,
    pub gpu_temp: Option<f64>,
    pub anomalies: u32,
    /// Draining or drained by an applied controller decision (only those are undrained by
    /// rules; an operator's drain stays).
    pub drained_by_controller: bool,
    /// GPU health; `None` on a node without GPUs (the GPU-health metrics are then absent, so
    /// their rules never match there).
    pub gpu_health: Option<GpuHealth>,
}

/// GPU health on a node with GPUs: its GPU-health anomaly flags (see
/// [`crate::metrics::gpu_health`]) and its newest sample, in figures rules compare.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuHealth {
    /// Findings that predict trouble (temperature trend, new XID or ECC errors, thermal
    /// slowdown).
    pub trouble: u32,
    /// New XID and uncorrected ECC errors the findings count.
    pub errors: u32,
    /// GPUs held at their power limit, sustained.
    pub power_capped: u32,
    /// The lowest headroom to a slowdown threshold, °C; `None` when no GPU says its threshold.
    pub temp_margin: Option<f64>,
    /// Each finding's sentence, with its numbers.
    pub reasons: Vec<String>,
}

impl GpuHealth {
    /// From a node's anomaly flags and GPU samples; `None` without GPUs.
    pub fn judge(flags: &[AnomalyFlag], gpus: &[GpuSample]) -> Option<GpuHealth> {
        if gpus.is_empty() {
            return None;
        }
        let mut h = GpuHealth {
            temp_margin: gpu_health::temp_margin(gpus).map(f64::from),
            ..GpuHealth::default()
        };
        for f in flags {
            let Some(kind) = gpu_health::Kind::of_series(&f.series) else {
                continue;
            };
            match kind {
                gpu_health::Kind::PowerCap => h.power_capped += 1,
                gpu_health::Kind::Xid | gpu_health::Kind::Ecc => {
                    h.trouble += 1;
                    h.errors += f.value.max(0.0) as u32;
                }
                _ => h.trouble += 1,
            }
            h.reasons.push(f.reason.clone());
        }
        Some(h)
    }
}

impl NodeView {
    /// The figures a node decision records as its inputs.
    pub fn inputs(&self) -> Vec<(String, String)> {
        let mut inputs = vec![
            ("state".into(), self.state.to_string()),
            ("cpu".into(), f2(self.cpu)),
            ("mem".into(), f2(self.mem)),
            ("anomalies".into(), self.anomalies.to_string()),
        ];
        if let Some(t) = self.gpu_temp {
            inputs.push(("gpu_temp".into(), format!("{t:.0}")));
        }
        if let Some(u) = self.gpu_util {
            inputs.push(("gpu_util".into(), f2(u)));
        }
        if let Some(g) = &self.gpu_health {
            inputs.push(("gpu_health".into(), g.trouble.to_string()));
            inputs.push(("gpu_errors".into(), g.errors.to_string()));
            inputs.push(("gpu_power_capped".into(), g.power_capped.to_string()));
            if let Some(m) = g.temp_margin {
                inputs.push(("gpu_temp_margin".into(), format!("{m:.0}")));
            }
        }
        inputs
    }

    pub(super) fn value(&self, m: Metric) -> Option<f64> {
        match m {
            Metric::NodeCpu => Some(self.cpu),
            Metric::NodeMem => Some(self.mem),
            Metric::GpuUtil => self.gpu_util,
            Metric::GpuTemp => self.gpu_temp,
            Metric::Anomalies => Some(self.anomalies as f64),
            Metric::GpuHealth => self.gpu_health.as_ref().map(|g| f64::from(g.trouble)),
            Metric::GpuErrors => self.gpu_health.as_ref().map(|g| f64::from(g.errors)),
            Metric::GpuPowerCapped => self.gpu_health.as_ref().map(|g| f64::from(g.power_capped)),
            Metric::GpuTempMargin => self.gpu_health.as_ref().and_then(|g| g.temp_margin),
            _ => None,
        }
    }
}

/// The cluster this second.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct World {
    pub now: Millis,
    pub slices: Vec<SliceView>,
    pub nodes: Vec<NodeView>,
}

/// A node's headline values from the metrics snapshot, as the world needs them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeSample {
    /// Cores busy, and the share of memory used.
    pub cpu: f64,
    pub mem: f64,
    /// The hottest and busiest GPU, if the node has any.
    pub gpu_util: Option<f64>,
    pub gpu_temp: Option<f64>,
    /// Anomalies the node's metrics show now.
    pub anomalies: u32,
    /// GPU health, on a node with GPUs.
    pub gpu_health: Option<GpuHealth>,
}

/// What the world is built from: the replica's rows and the metrics snapshot's figures.
pub struct Inputs<'a> {
    /// This second.
    pub now: Millis,
    /// The blueprints with their slices (desired counts, bounds, scaling policies).
    pub blueprints: &'a [StoredBlueprint],
    /// Where each instance is meant to run.
    pub assignments: &'a BTreeMap<String, Assignment>,
    /// What the nodes report of their instances.
    pub statuses: &'a [InstanceStatus],
    /// The members and their liveness.
    pub members: &'a [NodeRecord],
    pub health: &'a BTreeMap<NodeId, Health>,
    /// Cores each process uses: (node, pid) → cores.
    pub cpu_of: &'a HashMap<(NodeId, u32), f64>,
    /// Each node's headline values.
    pub samples: &'a HashMap<NodeId, NodeSample>,
    /// The decisions, newest first: they mark the nodes the controller drained.
    pub decisions: &'a [Decision],
    /// Each slice's traffic over the cluster, keyed `blueprint/slice`
    /// ([`crate::metrics::aggregate::View::traffic`]); empty without a fresh snapshot.
    pub traffic: &'a BTreeMap<String, SliceTraffic>,
}

impl World {
    /// The cluster at `now`: per slice its desired and active instances (only copies reported
    /// where they are assigned count), the cores they use and its traffic (calls/s, p95 and
    /// p99 latency, error rate while there are calls; requests waiting; the last call); per
    /// member its state, liveness and headline values, and whether an applied controller
    /// decision drained it.
    pub fn build(i: &Inputs) -> World {
        let mut slices = Vec::new();
        for b in i.blueprints {
            for s in &b.blueprint.slices {
                let prefix = format!("{}/{}/", b.blueprint.name, s.name);
                let mut active = 0u32;
                let mut used = 0.0;
                let mut sampled = false;
                for st in i
                    .statuses
                    .iter()
                    .filter(|st| st.instance.starts_with(&prefix))
                {
                    let assigned_here = i
                        .assignments
                        .get(&st.instance)
                        .is_some_and(|a| a.reported_by(st));
                    if !assigned_here || st.state != InstanceState::Active {
                        continue;
                    }
                    active += 1;
                    if let Some(c) = st.pid.and_then(|pid| i.cpu_of.get(&(st.node, pid))) {
                        used += c;
                        sampled = true;
                    }
                }
                let policy = s.scaling.as_ref();
                let traffic = i.traffic.get(prefix.trim_end_matches('/'));
                let calls = traffic.map(|t| t.calls_per_s).filter(|c| c.is_finite());
                let with_calls = traffic.filter(|t| t.calls_per_s > 0.0);
                slices.push(SliceView {
                    blueprint: b.blueprint.name.clone(),
                    slice: s.name.clone(),
                    desired: s.instances,
                    min: s.min,
                    max: s.max,
                    active,
                    cpu_reserved: s.resources.cpu as f64,
                    cpu_used: sampled.then_some(used),
                    service: s.service.is_some(),
                    calls_per_s: calls.map(|c| c.max(0.0)),
                    latency_ms: with_calls.and_then(|t| t.p95_ms),
                    latency_p99_ms: with_calls.and_then(|t| t.p99_ms),
                    error_rate: with_calls.map(|t| t.error_rate.clamp(0.0, 1.0)),
                    waiting: traffic.map(|t| t.waiting).unwrap_or(0),
                    last_call_at: traffic.and_then(|t| t.last_call_at),
                    target_cpu: policy.and_then(|p| p.target_cpu).map(f64::from),
                    target_latency_ms: policy.and_then(|p| p.target_latency_ms).map(|v| v as f64),
                    target_calls_per_instance: policy.and_then(|p| p.target_calls_per_instance),
                    predictive: policy.map(|p| p.predictive),
                    up_cooldown_ms: policy.and_then(|p| p.up_cooldown_ms),
                    down_cooldown_ms: policy.and_then(|p| p.down_cooldown_ms),
                    idle_to_zero_ms: policy.and_then(|p| p.idle_to_zero_ms),
                    count_set_at: None,
                });
            }
        }
        let nodes = i
            .members
            .iter()
            .map(|m| {
                let e = i.samples.get(&m.id);
                // The newest applied drain or undrain of this node says who drained it.
                let ours = i
                    .decisions
                    .iter()
                    .find_map(|d| match (&d.action, &d.status) {
                        (Action::Drain { node, .. }, DecisionStatus::Applied { .. })
                            if *node == m.id =>
                        {
                            Some(true)
                        }
                        (Action::Undrain { node, .. }, DecisionStatus::Applied { .. })
                            if *node == m.id =>
                        {
                            Some(false)
                        }
                        _ => None,
                    });
                NodeView {
                    id: m.id,
                    name: m.name.clone(),
                    state: m.state,
                    live: i.health.get(&m.id).is_none_or(|h| *h == Health::Ready),
                    cpu: e.map(|e| e.cpu).unwrap_or(0.0),
                    mem: e.map(|e| e.mem).unwrap_or(0.0),
                    gpu_util: e.and_then(|e| e.gpu_util),
                    gpu_temp: e.and_then(|e| e.gpu_temp),
                    anomalies: e.map(|e| e.anomalies).unwrap_or(0),
                    drained_by_controller: ours == Some(true),
                    gpu_health: e.and_then(|e| e.gpu_health.clone()),
                }
            })
            .collect();
        World {
            now: i.now,
            slices,
            nodes,
        }
    }
}

/// When `slice`'s count was set to what it is in the newest of `versions` (a blueprint's kept
/// versions, oldest first): the `applied_at` of the oldest version of the unbroken run at that
/// count. `None` when there are no versions, or the whole kept history has that count and does
/// not start at the first version (the change is older than what is kept).
pub fn count_set_at(versions: &[StoredBlueprint], slice: &str) -> Option<Millis> {
    let count = |v: &StoredBlueprint| {
        v.blueprint
            .slices
            .iter()
            .find(|s| s.name == slice)
            .map(|s| s.instances)
    };
    let newest = versions.last()?;
    let now = count(newest)?;
    let mut at = None;
    for v in versions.iter().rev() {
        if count(v) != Some(now) {
            return at;
        }
        at = Some(v.applied_at);
    }
    // The whole kept history has this count: set then if it holds the blueprint's first.
    versions
        .first()
        .filter(|v| v.version == 1)
        .map(|v| v.applied_at)
}

/// A figure with two decimals, as decisions record their inputs.
pub(super) fn f2(v: f64) -> String {
    format!("{v:.2}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Blueprint, Resources, Slice};

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
            port: 8000,
            pid: Some(100 + placement as u32),
            restarts: 0,
            last_exit: None,
            health: "passing".into(),
            since: 0,
            gpus: Vec::new(),
        }
    }

    fn assigned(node: NodeId, placement: u64) -> Assignment {
        Assignment {
            node: Some(node),
            handoff: None,
            pending: None,
            since: 0,
            placement,
            version: 0,
        }
    }

    fn member(id: NodeId, state: NodeState) -> NodeRecord {
        NodeRecord {
            id,
            name: format!("n{id}"),
            addr: "127.0.0.1:7000".into(),
            state,
            joined_at: 0,
        }
    }

    /// Only active copies reported where they are assigned count, with the cores of their
    /// processes and the slice's traffic figures; a node is the controller's to undrain only
    /// after its applied drain.
    #[test]
    fn the_world_counts_assigned_active_copies_and_who_drained_a_node() {
        let blueprints = [StoredBlueprint {
            version: 1,
            applied_at: 0,
            blueprint: Blueprint {
                name: "shop".into(),
                slices: vec![Slice {
                    name: "web".into(),
                    command: vec!["web".into()],
                    instances: 3,
                    min: 1,
                    max: 6,
                    env: BTreeMap::new(),
                    resources: Resources {
                        cpu: 2.0,
                        memory: 0,
                        gpu: 0,
                    },
                    stop_timeout_ms: 1_000,
                    health: None,
                    scaling: None,
                    service: None,
                    update: None,
                    user: None,
                }],
            },
        }];
        let assignments = BTreeMap::from([
            ("shop/web/0".to_string(), assigned(1, 1)),
            ("shop/web/1".to_string(), assigned(2, 2)),
            ("shop/web/2".to_string(), assigned(2, 3)),
        ]);
        let statuses = [
            status("shop/web/0", 1, 1, InstanceState::Active),
            // A hand-off's old copy: not the assigned one.
            status("shop/web/1", 1, 9, InstanceState::Active),
            status("shop/web/1", 2, 2, InstanceState::Active),
            status("shop/web/2", 2, 3, InstanceState::Activating),
        ];
        let members = [member(1, NodeState::Ready), member(2, NodeState::Draining)];
        let health = BTreeMap::from([(2, Health::Suspect)]);
        let cpu_of = HashMap::from([((1, 101), 1.5), ((1, 109), 9.0)]);
        let samples = HashMap::from([(
            2,
            NodeSample {
                cpu: 0.9,
                gpu_temp: Some(91.0),
                ..NodeSample::default()
            },
        )]);
        let drain = |id, node| Decision {
            id,
            at: 0,
            by: "n1".into(),
            mode: crate::domain::ControllerMode::Auto,
            layers: Vec::new(),
            action: Action::Drain {
                node,
                name: format!("n{node}"),
            },
            rule: "gpu-hot".into(),
            reasoning: Vec::new(),
            inputs: Vec::new(),
            review: None,
            status: DecisionStatus::Applied {
                at: 0,
                by: "n1".into(),
            },
            timeline: Vec::new(),
            outcome: None,
        };
        let decisions = [drain(4, 2)];
        let traffic = BTreeMap::from([(
            "shop/web".to_string(),
            SliceTraffic {
                slice: "shop/web".into(),
                calls_per_s: 300.0,
                error_rate: 0.02,
                p50_ms: Some(12.0),
                p95_ms: Some(180.0),
                p99_ms: Some(420.0),
                waiting: 3,
                last_call_at: Some(41),
                ..SliceTraffic::default()
            },
        )]);
        let w = World::build(&Inputs {
            now: 42,
            blueprints: &blueprints,
            assignments: &assignments,
            statuses: &statuses,
            members: &members,
            health: &health,
            cpu_of: &cpu_of,
            samples: &samples,
            decisions: &decisions,
            traffic: &traffic,
        });
        assert_eq!(w.now, 42);
        let s = &w.slices[0];
        assert_eq!(
            (s.target(), s.desired, s.active, s.cpu_reserved, s.cpu_used),
            ("shop/web".to_string(), 3, 2, 2.0, Some(1.5))
        );
        assert_eq!(s.value(Metric::CpuPerInstance), Some(0.375));
        // The request figures: p95 is the latency rules compare; calls per active instance.
        assert_eq!(
            (s.calls_per_s, s.latency_ms, s.latency_p99_ms, s.error_rate),
            (Some(300.0), Some(180.0), Some(420.0), Some(0.02))
        );
        assert_eq!((s.waiting, s.last_call_at), (3, Some(41)));
        assert_eq!(s.value(Metric::CallsPerInstance), Some(150.0));
        assert_eq!(s.value(Metric::ErrorRate), Some(0.02));
        let (n1, n2) = (&w.nodes[0], &w.nodes[1]);
        assert_eq!(
            (n1.live, n1.cpu, n1.drained_by_controller),
            (true, 0.0, false)
        );
        assert_eq!(
            (n2.live, n2.cpu, n2.gpu_temp, n2.drained_by_controller),
            (false, 0.9, Some(91.0), true)
        );
    }

    #[test]
    fn a_slices_count_was_set_by_the_oldest_version_of_its_run() {
        let version = |version: u64, applied_at: Millis, web: u32, worker: u32| {
            let slice = |name: &str, instances: u32| Slice {
                name: name.into(),
                command: vec![name.into()],
                instances,
                min: 1,
                max: 8,
                env: BTreeMap::new(),
                resources: Resources {
                    cpu: 1.0,
                    memory: 0,
                    gpu: 0,
                },
                stop_timeout_ms: 1_000,
                health: None,
                scaling: None,
                service: None,
                update: None,
                user: None,
            };
            StoredBlueprint {
                version,
                applied_at,
                blueprint: Blueprint {
                    name: "shop".into(),
                    slices: vec![slice("web", web), slice("worker", worker)],
                },
            }
        };
        // v3 scaled web to 6; v4 and v5 changed worker only.
        let kept = [
            version(2, 1_000, 2, 1),
            version(3, 2_000, 6, 1),
            version(4, 3_000, 6, 2),
            version(5, 4_000, 6, 3),
        ];
        assert_eq!(count_set_at(&kept, "web"), Some(2_000));
        assert_eq!(count_set_at(&kept, "worker"), Some(4_000));
        // The whole kept history at one count: set at creation if v1 is kept, else unknown.
        assert_eq!(count_set_at(&kept[2..3], "web"), None);
        assert_eq!(count_set_at(&[version(1, 500, 6, 1)], "web"), Some(500));
        assert_eq!(count_set_at(&[], "web"), None);
        assert_eq!(count_set_at(&kept, "db"), None);
    }

    fn flag(series: &str, value: f32, reason: &str) -> AnomalyFlag {
        AnomalyFlag {
            series: series.into(),
            value,
            median: 0.0,
            z: 0.0,
            reason: reason.into(),
        }
    }

    #[test]
    fn gpu_health_counts_findings_errors_and_capping_and_is_absent_without_gpus() {
        let gpu = GpuSample {
            util: 1.0,
            temp_c: 80.0,
            power_w: 700.0,
            xid_errors: 2,
            last_xid: 79,
            throttle: 1,
            ..GpuSample::quiet(0)
        };
        let flags = [
            flag("cpu", 0.99, "cpu far above"),
            flag("gpu0_xid_new", 2.0, "gpu0 had 2 new critical XID errors"),
            flag("gpu0_power_cap", 1.0, "gpu0 held at its power limit"),
            flag("gpu0_temp_trend", 80.0, "gpu0 80 °C rising"),
        ];
        let h = GpuHealth::judge(&flags, std::slice::from_ref(&gpu)).expect("a GPU");
        assert_eq!((h.trouble, h.errors, h.power_capped), (2, 2, 1));
        assert_eq!(h.temp_margin, Some(7.0));
        assert_eq!(h.reasons.len(), 3, "{:?}", h.reasons);
        assert_eq!(GpuHealth::judge(&flags, &[]), None);
        let node = NodeView {
            id: 1,
            name: "n1".into(),
            state: NodeState::Ready,
            live: true,
            cpu: 0.1,
            mem: 0.1,
            gpu_util: None,
            gpu_temp: None,
            anomalies: 0,
            drained_by_controller: false,
            gpu_health: None,
        };
        // Without GPUs the metrics are absent (a condition on them never holds).
        for m in [
            Metric::GpuHealth,
            Metric::GpuErrors,
            Metric::GpuPowerCapped,
            Metric::GpuTempMargin,
        ] {
            assert_eq!(node.value(m), None, "{m:?}");
        }
        let node = NodeView {
            gpu_health: Some(h),
            ..node
        };
        assert_eq!(node.value(Metric::GpuHealth), Some(2.0));
        assert_eq!(node.value(Metric::GpuTempMargin), Some(7.0));
        assert!(
            node.inputs()
                .contains(&("gpu_errors".to_string(), "2".to_string()))
        );
    }
}
