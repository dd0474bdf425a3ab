//! What `aether metrics` shows: the answering node's snapshot with each series' last minute,
//! and a series' history on request. Reads the pipeline state; no I/O.

use std::time::Instant;

use crate::domain::{Health, InstanceStatus, NodeId};
use crate::metrics::aggregate::View;
use crate::metrics::energy::{SlicePower, slice_power};
use crate::metrics::gpu_health::Kind as GpuIssue;
use crate::metrics::update::{AnomalyFlag, NodeEntry, NodeMetrics};
use serde::{Deserialize, Serialize};

/// What went wrong with a metrics query; the message names the choices.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("no node named '{name}' in the metrics snapshot; known: {known}")]
    UnknownNode { name: String, known: String },
    #[error("node '{node}' has no series '{series}'; its series: {known}")]
    UnknownSeries {
        node: String,
        series: String,
        known: String,
    },
}

fn node_view(e: &NodeEntry, v: &View, snapshot_age_ms: u64) -> NodeMetricsView {
    let series =
        e.m.series()
            .into_iter()
            .map(|(name, value)| {
                let last_minute: Vec<f32> = v
                    .window
                    .series(e.node, &name)
                    .map(|s| s.recent(60))
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|x| x.is_finite())
                    .collect();
                let (first, min, max) = (
                    last_minute.first().copied(),
                    last_minute.iter().copied().reduce(f32::min),
                    last_minute.iter().copied().reduce(f32::max),
                );
                SeriesView {
                    trend_1m: first.filter(|_| last_minute.len() > 1).map(|f| value - f),
                    min_1m: min,
                    max_1m: max,
                    name,
                    value,
                }
            })
            .collect();
    NodeMetricsView {
        id: e.node,
        name: e.name(),
        member: e.member,
        health: e.health,
        sample_age_ms: e.age_ms + snapshot_age_ms,
        gpu: e.info.gpu_state(&e.m.gpus),
        gpu_health: gpu_health(e),
        series,
        anomalies: e.anomalies.clone(),
        carbon: e.info.carbon.clone(),
        carbon_error: e.info.carbon_error.clone(),
        detail: e.m.clone(),
    }
}

/// What GPU health says of a node: why there is nothing to judge (no GPU, and NVML's reason),
/// or how many GPUs are watched and which findings hold now.
pub fn gpu_health(e: &NodeEntry) -> GpuHealthNote {
    GpuHealthNote {
        gpus: e.m.gpus.len() as u32,
        unavailable: e.info.gpu_unavailable.clone(),
        findings: e
            .anomalies
            .iter()
            .filter(|a| GpuIssue::of_series(&a.series).is_some())
            .map(|a| a.series.clone())
            .collect(),
        margin_c: crate::metrics::gpu_health::temp_margin(&e.m.gpus),
    }
}

/// Build the answer to `aether metrics [--node NAME [--series S --since N]]`; `instances` (the
/// instance reports) and `cpu_watts_per_core` give the power per slice.
#[allow(clippy::too_many_arguments)]
pub fn metrics_view(
    v: &View,
    seen_by: &str,
    interval_ms: u64,
    node: Option<&str>,
    series: Option<&str>,
    since_secs: u64,
    now: Instant,
    instances: &[InstanceStatus],
    cpu_watts_per_core: f64,
) -> Result<MetricsView, QueryError> {
    let age_ms = v.age(now).map(|a| a.as_millis() as u64);
    let mut out = MetricsView {
        seen_by: seen_by.into(),
        leader: None,
        term: 0,
        snapshot_age_ms: age_ms,
        interval_ms,
        nodes: Vec::new(),
        history: None,
        energy: Vec::new(),
        cpu_watts_per_core,
    };
    let Some(snap) = &v.snapshot else {
        return Ok(out);
    };
    if node.is_none() {
        out.energy = slice_power(snap, instances, cpu_watts_per_core);
    }
    out.term = snap.term;
    out.leader = Some(
        snap.nodes
            .iter()
            .find(|e| e.node == snap.leader)
            .map(|e| e.name())
            .unwrap_or_else(|| format!("node-{}", snap.leader)),
    );
    // Only the nodes asked for are turned into views (each reads its window).
    let nodes: Vec<NodeMetricsView> = snap
        .nodes
        .iter()
        .filter(|e| node.is_none_or(|name| e.name() == name))
        .map(|e| node_view(e, v, age_ms.unwrap_or(0)))
        .collect();
    if let Some(name) = node {
        let Some(n) = nodes.first() else {
            let known = snap
                .nodes
                .iter()
                .map(|e| e.name())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(QueryError::UnknownNode {
                name: name.into(),
                known: if known.is_empty() {
                    "none yet".into()
                } else {
                    known
                },
            });
        };
        if let Some(s) = series {
            let Some(hist) = v.window.series(n.id, s) else {
                return Err(QueryError::UnknownSeries {
                    node: name.into(),
                    series: s.into(),
                    known: n
                        .series
                        .iter()
                        .map(|s| s.name.clone())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            };
            let to = hist.latest().map(|(t, _)| t).unwrap_or(0);
            let from = to.saturating_sub(since_secs.saturating_sub(1));
            out.history = Some(HistoryView {
                node: name.into(),
                series: s.into(),
                from,
                to,
                points: hist
                    .query(from, to)
                    .into_iter()
                    .map(PointView::from)
                    .collect(),
            });
        }
    }
    out.nodes = nodes;
    Ok(out)
}

/// `aether metrics`: the answering node's latest cluster snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsView {
    /// The node that answered.
    pub seen_by: String,
    /// Who built the snapshot, and in which term.
    pub leader: Option<String>,
    pub term: u64,
    /// How long ago the answering node received (or, on the leader, built) the snapshot.
    pub snapshot_age_ms: Option<u64>,
    /// The broadcast period (`metrics.interval`).
    pub interval_ms: u64,
    pub nodes: Vec<NodeMetricsView>,
    /// One series' history, when asked for.
    pub history: Option<HistoryView>,
    /// Power per slice now (the whole cluster's view only): GPU watts as NVML measures them,
    /// CPU watts estimated as cores × `cpu_watts_per_core`.
    pub energy: Vec<SlicePower>,
    /// The CPU estimate's watts per core (`gpu.cpu_watts_per_core` of the answering node).
    pub cpu_watts_per_core: f64,
}

/// One node in [`MetricsView`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeMetricsView {
    pub id: NodeId,
    pub name: String,
    /// False for a sender that is not a registered member.
    pub member: bool,
    pub health: Health,
    /// Age of the node's newest sample (leader receipt plus snapshot age).
    pub sample_age_ms: u64,
    /// `gpu: unavailable (<reason>)`, `gpu: none` or the GPUs.
    pub gpu: String,
    /// What GPU health says of the node (see [`gpu_health`]).
    pub gpu_health: GpuHealthNote,
    /// Headline series: current value, change over the last minute, range over the last minute.
    pub series: Vec<SeriesView>,
    pub anomalies: Vec<AnomalyFlag>,
    /// The node's carbon-intensity signal (`[carbon]`), the last that read well.
    #[serde(default)]
    pub carbon: Option<crate::metrics::carbon::CarbonSignal>,
    /// Why its carbon source did not read at the last refresh.
    #[serde(default)]
    pub carbon_error: Option<String>,
    /// Everything in the node's newest update: per core, per mount, per interface, per GPU, per
    /// supervised process.
    pub detail: NodeMetrics,
}

/// GPU health on one node: what is watched and what holds now. Without a GPU the GPU-health
/// rules stay quiet, and `unavailable` says why when NVML cannot be used.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuHealthNote {
    /// GPUs watched (0: none).
    pub gpus: u32,
    /// Why GPUs cannot be read on the node (NVML's reason), when they cannot.
    pub unavailable: Option<String>,
    /// The GPU-health anomaly flags holding now, by series (`gpu0_temp_trend`, `gpu0_xid_new` …).
    pub findings: Vec<String>,
    /// The lowest headroom of its GPUs to their slowdown thresholds, °C.
    pub margin_c: Option<f32>,
}

/// One series' current value and its last minute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesView {
    pub name: String,
    pub value: f32,
    /// Newest minus the oldest value of the last minute.
    pub trend_1m: Option<f32>,
    pub min_1m: Option<f32>,
    pub max_1m: Option<f32>,
}

/// A series' history: one point per second for the last 15 minutes, one per 10 s (mean, max)
/// before that, back to 2 hours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryView {
    pub node: String,
    pub series: String,
    /// Unix seconds.
    pub from: u64,
    pub to: u64,
    pub points: Vec<PointView>,
}

/// One history point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PointView {
    /// Unix second.
    pub t: u64,
    pub value: f32,
    pub max: f32,
}

impl From<crate::metrics::window::Point> for PointView {
    fn from(p: crate::metrics::window::Point) -> PointView {
        PointView {
            t: p.t,
            value: p.value,
            max: p.max,
        }
    }
}
