//! What `aether metrics` shows: the answering node's snapshot with each series' last minute,
//! and a series' history on request. Reads the pipeline state; no I/O.

use std::time::Instant;

use crate::domain::{Health, NodeId};
use crate::metrics::aggregate::View;
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
        series,
        anomalies: e.anomalies.clone(),
        carbon: e.info.carbon.clone(),
        carbon_error: e.info.carbon_error.clone(),
        detail: e.m.clone(),
    }
}

/// Build the answer to `aether metrics [--node NAME [--series S --since N]]`.
pub fn metrics_view(
    v: &View,
    seen_by: &str,
    interval_ms: u64,
    node: Option<&str>,
    series: Option<&str>,
    since_secs: u64,
    now: Instant,
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
    };
    let Some(snap) = &v.snapshot else {
        return Ok(out);
    };
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
