//! The world: the cluster as the controller sees it this second — each slice's counts, load
//! and scaling policy, each member's state and headline metrics. Plain data; the loop builds
//! it (`flow`), the brain learns from it and the policy decides on it (`decide`).

use super::rules::Metric;
use crate::domain::{Millis, NodeId, NodeState};

/// One slice as the controller sees it this second.
#[derive(Debug, Clone, PartialEq)]
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
    pub calls_per_s: Option<f64>,
    pub latency_ms: Option<f64>,
    /// From the blueprint's `[slices.scaling]`; `None`: the rule settings apply.
    pub target_cpu: Option<f64>,
    pub target_latency_ms: Option<f64>,
    pub predictive: Option<bool>,
    pub up_cooldown_ms: Option<u64>,
    pub down_cooldown_ms: Option<u64>,
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
            Metric::LatencyMs => self.latency_ms,
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
        inputs
    }

    pub(super) fn value(&self, m: Metric) -> Option<f64> {
        match m {
            Metric::NodeCpu => Some(self.cpu),
            Metric::NodeMem => Some(self.mem),
            Metric::GpuUtil => self.gpu_util,
            Metric::GpuTemp => self.gpu_temp,
            Metric::Anomalies => Some(self.anomalies as f64),
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

/// A figure with two decimals, as decisions record their inputs.
pub(super) fn f2(v: f64) -> String {
    format!("{v:.2}")
}
