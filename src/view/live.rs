//! The live feed's frames (what the console subscribes to): the first carries everything, later
//! ones only what changed since the previous one. A [`Feed`] keeps what one subscriber was last
//! sent, so a slow console costs its own connection, nothing else; the admin server moves the
//! frames over the socket.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::controller::model::ModelStatus;
use crate::domain::{AuditRecord, Decision, Health, Millis, NodeId, now_millis};
use crate::metrics::aggregate::View;
use crate::metrics::requests::SliceTraffic;
use crate::metrics::update::{AnomalyFlag, NodeEntry, ProcessSample};
use crate::raft::status::{ControlView, StatusView};
use crate::view::Sources;
use crate::view::blueprints::{BlueprintView, blueprint_views};
use crate::view::metrics::PointView;
use crate::view::rollouts::{Reader, RolloutView};
use crate::view::status::control_view;

/// What a live feed charts beyond the cluster-wide view.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Watch {
    /// The node whose history is sent (by name); none: no history.
    pub node: Option<String>,
    /// How far back, in seconds (at most the 2-hour window).
    pub range_secs: u64,
    /// At most this many points per series (the chart's width); longer ranges are averaged.
    pub points: u32,
}

/// One frame of a live feed (`AdminRequest::Subscribe`). The first frame has every part;
/// later ones only the parts that changed (`None` or empty: unchanged).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveUpdate {
    /// The first frame of a feed: it replaces everything the client holds.
    pub full: bool,
    /// The answering node's clock (Unix ms): grace countdowns are computed against it.
    pub at: Millis,
    pub status: Option<Box<StatusView>>,
    pub metrics: Option<LiveMetrics>,
    /// Every stored blueprint with its instances, when any of it changed.
    pub blueprints: Option<Vec<BlueprintView>>,
    /// Per slice: its load and the forecast, when the controller has one.
    pub loads: Option<Vec<SliceLoad>>,
    /// New decisions and decisions whose status changed, newest first.
    pub decisions: Vec<crate::domain::Decision>,
    /// Audit records newer than those already sent, oldest first.
    pub events: Vec<AuditRecord>,
    pub model: Option<Box<crate::controller::model::ModelStatus>>,
    /// History of the watched node, when one is watched.
    pub history: Option<NodeHistory>,
    /// Per slice that has rollouts: its open one, else its latest, when any changed.
    pub rollouts: Option<Vec<RolloutView>>,
    /// The leader's strategic layer when it changed; an empty view (no leader's name): none.
    pub advice: Option<Box<crate::domain::AdviceView>>,
}

/// The cluster metrics of a live feed: headline values per node and, per node, the points of
/// its sparkline series since the previous frame.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveMetrics {
    /// Who built the snapshot (`None` before the first one arrived).
    pub leader: Option<String>,
    pub snapshot_age_ms: Option<u64>,
    pub nodes: Vec<LiveNode>,
}

/// One node in [`LiveMetrics`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveNode {
    pub id: NodeId,
    pub name: String,
    pub health: Health,
    pub sample_age_ms: u64,
    /// 0.0–1.0.
    pub cpu: f32,
    pub mem: f32,
    pub mem_total: u64,
    /// Mean utilisation of its GPUs (0.0–1.0) and the hottest one (°C); `None` without GPUs.
    pub gpu_util: Option<f32>,
    pub gpu_temp: Option<f32>,
    /// `gpu: none`, `gpu: unavailable (…)` or the GPUs.
    pub gpu: String,
    pub net_rx: f32,
    pub net_tx: f32,
    pub anomalies: Vec<AnomalyFlag>,
    /// `cpu`, `mem` and `gpu` (mean utilisation): the per-second values since the previous
    /// frame (the last minute in the first frame), oldest first.
    pub spark: Vec<(String, Vec<f32>)>,
    /// Its supervised processes as last sampled (pid, CPU in cores, RSS): the console shows
    /// them beside each instance.
    #[serde(default)]
    pub procs: Vec<ProcessSample>,
    /// Its carbon signal in one line (and its source's error), when it has `[carbon]`.
    #[serde(default)]
    pub carbon: Option<String>,
}

/// A node's history over the watched range.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeHistory {
    pub node: String,
    pub range_secs: u64,
    /// Unix seconds of the newest point.
    pub to: u64,
    /// `cpu`, `mem`, `net_rx`, `net_tx`, then `gpuN_util` and `gpuN_temp` per GPU.
    pub series: Vec<(String, Vec<PointView>)>,
    /// The node's current anomaly flags.
    pub anomalies: Vec<AnomalyFlag>,
}

/// A slice's load as the controller measures it (cores used) and what the forecast expects,
/// and its request traffic over the cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SliceLoad {
    /// `blueprint/slice`.
    pub target: String,
    /// What `load` and `forecast` measure: `cores` (a slice without a service) or `calls/s`.
    #[serde(default)]
    pub units: String,
    /// (Unix second, load in `units`), oldest first.
    pub load: Vec<(u64, f32)>,
    /// (Unix second, forecast cores) ahead of now; empty while the forecast is still learning.
    pub forecast: Vec<(u64, f32)>,
    /// Calls/s, error rate, latency over the last seconds (this node's metrics view); `None`:
    /// not called for two hours, or no service.
    pub traffic: Option<SliceTraffic>,
}

/// Decisions a feed tracks (open and recent ones, newest first).
const DECISIONS: usize = 200;
/// Audit records in the first frame.
const EVENTS: usize = 500;
/// Seconds of sparkline in the first frame.
const SPARK_SECS: u64 = 60;

/// What one subscriber was last sent.
#[derive(Default)]
pub struct Feed {
    watch: Watch,
    /// The applied index the Raft-derived parts were last read at.
    applied: Option<u64>,
    /// The controller part of the status, read at `applied`.
    control: Option<ControlView>,
    status: Option<StatusView>,
    blueprints: Option<Vec<BlueprintView>>,
    loads: Option<Vec<SliceLoad>>,
    decisions: HashMap<u64, Decision>,
    last_event: Option<u64>,
    model: Option<ModelStatus>,
    /// Per node: the newest sparkline second sent.
    spark_to: HashMap<NodeId, u64>,
    history: Option<NodeHistory>,
    rollouts: Option<Vec<RolloutView>>,
    advice: Option<crate::domain::AdviceView>,
}

impl Feed {
    /// A feed that has sent nothing yet.
    pub fn new(watch: Watch) -> Feed {
        Feed {
            watch,
            ..Feed::default()
        }
    }

    /// Chart `watch` from the next frame on.
    pub fn set_watch(&mut self, watch: Watch) {
        self.history = None;
        self.watch = watch;
    }
}

impl Feed {
    /// The next frame: everything when `full`, else what changed; `None` when nothing did.
    pub fn update(&mut self, src: &Sources, full: bool) -> Option<LiveUpdate> {
        let (cluster, metrics) = (&*src.cluster, &*src.metrics);
        // A copy, so the controller's next publication does not wait on the store reads below.
        let controller = src.controller.borrow().clone();
        let now = now_millis();
        let mut u = LiveUpdate {
            full,
            at: now,
            ..LiveUpdate::default()
        };
        // What lives in the replicated store is read again only when the log moved.
        let applied = cluster.store.applied_index();
        let raft_moved = full || self.applied != Some(applied);
        self.applied = Some(applied);
        if raft_moved {
            self.control = control_view(cluster, &controller, metrics);
        }
        if let Ok(mut s) = cluster.local_status() {
            s.controller = self.control.clone().map(|mut c| {
                // The reviewer lines (this node's, the leader's) change without the log.
                c.reviewer = super::status::reviewer_line(cluster, &controller);
                c.leader_reviewer = super::status::leader_reviewer(metrics);
                c
            });
            if self.status.as_ref() != Some(&s) {
                u.status = Some(Box::new(s.clone()));
                self.status = Some(s);
            }
        }
        let model = src.model.status();
        if self.model.as_ref() != Some(&model) {
            u.model = Some(Box::new(model.clone()));
            self.model = Some(model);
        }
        if raft_moved
            && let Ok(b) = blueprint_views(cluster, None, &super::blueprints::unserved(metrics))
            && self.blueprints.as_ref() != Some(&b)
        {
            u.blueprints = Some(b.clone());
            self.blueprints = Some(b);
        }
        if raft_moved
            && let Ok(r) = Reader::new(cluster).latest_per_slice()
            && self.rollouts.as_ref() != Some(&r)
        {
            u.rollouts = Some(r.clone());
            self.rollouts = Some(r);
        }
        if let Some(bps) = &self.blueprints {
            let mut traffic = metrics.with_state(|st| st.view.traffic());
            let loads: Vec<SliceLoad> = bps
                .iter()
                .flat_map(|b| {
                    b.blueprint
                        .slices
                        .iter()
                        .map(move |s| format!("{}/{}", b.blueprint.name, s.name))
                })
                .map(|target| {
                    let f = |v: &[(u64, f64)]| v.iter().map(|&(t, x)| (t, x as f32)).collect();
                    let (load, forecast) = match controller.charts.get(&target) {
                        Some((load, forecast)) => (f(load), f(forecast)),
                        None => (Vec::new(), Vec::new()),
                    };
                    SliceLoad {
                        units: controller
                            .chart_units
                            .get(&target)
                            .copied()
                            .unwrap_or("cores")
                            .to_string(),
                        traffic: traffic.remove(&target),
                        target,
                        load,
                        forecast,
                    }
                })
                .collect();
            if self.loads.as_ref() != Some(&loads) {
                u.loads = Some(loads.clone());
                self.loads = Some(loads);
            }
        }
        if raft_moved && let Ok(ds) = cluster.store.decisions(DECISIONS, true, 0, now) {
            for d in ds {
                if self.decisions.get(&d.id) != Some(&d) {
                    self.decisions.insert(d.id, d.clone());
                    u.decisions.push(d);
                }
            }
            if self.decisions.len() > 2 * DECISIONS {
                let mut ids: Vec<u64> = self.decisions.keys().copied().collect();
                ids.sort_unstable();
                for id in &ids[..ids.len() - DECISIONS] {
                    self.decisions.remove(id);
                }
            }
        }
        if raft_moved && let Ok(events) = cluster.store.audit_after(self.last_event, EVENTS) {
            u.events = events;
            if let Some(e) = u.events.last() {
                self.last_event = Some(e.seq);
            }
        }
        let advice = metrics.leader_advice().unwrap_or_default();
        if full || self.advice.as_ref() != Some(&advice) {
            u.advice = Some(Box::new(advice.clone()));
            self.advice = Some(advice);
        }
        metrics.with_state(|st| {
            u.metrics = Some(self.metrics(&st.view));
            u.history = self.history(&st.view).filter(|h| {
                let changed = self.history.as_ref() != Some(h);
                if changed {
                    self.history = Some(h.clone());
                }
                changed
            });
        });
        if u.metrics.as_ref().is_some_and(|m| {
            m.nodes
                .iter()
                .all(|n| n.spark.iter().all(|(_, v)| v.is_empty()))
        }) && !full
        {
            // The metrics part repeats the headline values; send it only with new points.
            u.metrics = None;
        }
        let empty = u.status.is_none()
            && u.metrics.is_none()
            && u.blueprints.is_none()
            && u.loads.is_none()
            && u.decisions.is_empty()
            && u.events.is_empty()
            && u.model.is_none()
            && u.history.is_none()
            && u.rollouts.is_none()
            && u.advice.is_none();
        (full || !empty).then_some(u)
    }

    fn metrics(&mut self, v: &View) -> LiveMetrics {
        let age = v.age(Instant::now()).map(|a| a.as_millis() as u64);
        let Some(snap) = &v.snapshot else {
            return LiveMetrics::default();
        };
        let leader = snap
            .nodes
            .iter()
            .find(|e| e.node == snap.leader)
            .map(|e| e.name());
        let nodes = snap
            .nodes
            .iter()
            .map(|e| {
                let from = self.spark_to.get(&e.node).map(|t| t + 1);
                let (spark, to) = sparkline(v, e, from);
                if let Some(to) = to {
                    self.spark_to.insert(e.node, to);
                }
                live_node(e, age.unwrap_or(0), spark)
            })
            .collect();
        LiveMetrics {
            leader,
            snapshot_age_ms: age,
            nodes,
        }
    }

    fn history(&self, v: &View) -> Option<NodeHistory> {
        let name = self.watch.node.as_deref()?;
        let snap = v.snapshot.as_ref()?;
        let e = snap.nodes.iter().find(|e| e.name() == name)?;
        let range = self
            .watch
            .range_secs
            .clamp(60, crate::metrics::window::WINDOW_SECS);
        let width = self.watch.points.clamp(10, 2000) as usize;
        let mut names = vec![
            "cpu".to_string(),
            "mem".into(),
            "net_rx".into(),
            "net_tx".into(),
        ];
        for g in &e.m.gpus {
            names.push(format!("gpu{}_util", g.index));
            names.push(format!("gpu{}_temp", g.index));
        }
        let to = v.window.series(e.node, "cpu")?.latest()?.0;
        let from = to.saturating_sub(range - 1);
        let series = names
            .into_iter()
            .filter_map(|n| {
                let s = v.window.series(e.node, &n)?;
                let points = s.query(from, to).into_iter().map(PointView::from).collect();
                Some((n, downsample(points, from, range, width)))
            })
            .collect();
        Some(NodeHistory {
            node: name.into(),
            range_secs: range,
            to,
            series,
            anomalies: e.anomalies.clone(),
        })
    }
}

/// Average `points` into at most `width` buckets over `[from, from + range)`; a bucket's max
/// is the largest max in it.
fn downsample(points: Vec<PointView>, from: u64, range: u64, width: usize) -> Vec<PointView> {
    if points.len() <= width {
        return points;
    }
    let bucket = range.div_ceil(width as u64).max(1);
    let mut out: BTreeMap<u64, (f32, f32, u32)> = BTreeMap::new();
    for p in points {
        let b = (p.t.saturating_sub(from)) / bucket;
        let e = out.entry(b).or_insert((0.0, f32::MIN, 0));
        e.0 += p.value;
        e.1 = e.1.max(p.max);
        e.2 += 1;
    }
    out.into_iter()
        .map(|(b, (sum, max, n))| PointView {
            t: from + b * bucket,
            value: sum / n as f32,
            max,
        })
        .collect()
}

/// The node's sparkline points from `from` (the last minute when `None`) to its newest second:
/// `cpu`, `mem` and `gpu` (mean utilisation over its GPUs, when it has any).
fn sparkline(v: &View, e: &NodeEntry, from: Option<u64>) -> (Vec<(String, Vec<f32>)>, Option<u64>) {
    let Some(to) = v
        .window
        .series(e.node, "cpu")
        .and_then(|s| s.latest())
        .map(|(t, _)| t)
    else {
        return (Vec::new(), None);
    };
    let from = from.unwrap_or(to.saturating_sub(SPARK_SECS - 1));
    if from > to {
        return (Vec::new(), Some(to));
    }
    let values = |name: &str| -> Vec<(u64, f32)> {
        v.window
            .series(e.node, name)
            .map(|s| {
                s.query(from, to)
                    .into_iter()
                    .map(|p| (p.t, p.value))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = vec![
        (
            "cpu".to_string(),
            values("cpu").into_iter().map(|(_, x)| x).collect(),
        ),
        (
            "mem".to_string(),
            values("mem").into_iter().map(|(_, x)| x).collect(),
        ),
    ];
    if !e.m.gpus.is_empty() {
        let mut by_t: BTreeMap<u64, (f32, u32)> = BTreeMap::new();
        for g in &e.m.gpus {
            for (t, x) in values(&format!("gpu{}_util", g.index)) {
                let s = by_t.entry(t).or_default();
                s.0 += x;
                s.1 += 1;
            }
        }
        out.push((
            "gpu".into(),
            by_t.into_values().map(|(s, n)| s / n as f32).collect(),
        ));
    }
    (out, Some(to))
}

fn live_node(e: &NodeEntry, snapshot_age_ms: u64, spark: Vec<(String, Vec<f32>)>) -> LiveNode {
    let m = &e.m;
    let gpus = &m.gpus;
    LiveNode {
        id: e.node,
        name: e.name(),
        health: e.health,
        sample_age_ms: e.age_ms + snapshot_age_ms,
        cpu: m.cpu,
        mem: if m.mem_total == 0 {
            0.0
        } else {
            m.mem_used as f32 / m.mem_total as f32
        },
        mem_total: m.mem_total,
        gpu_util: (!gpus.is_empty())
            .then(|| gpus.iter().map(|g| g.util).sum::<f32>() / gpus.len() as f32),
        gpu_temp: gpus.iter().map(|g| g.temp_c).reduce(f32::max),
        gpu: e.info.gpu_state(gpus),
        net_rx: m.nets.iter().map(|n| n.rx_bps).sum(),
        net_tx: m.nets.iter().map(|n| n.tx_bps).sum(),
        anomalies: e.anomalies.clone(),
        spark,
        procs: m.procs.clone(),
        carbon: carbon_line(e.info.carbon.as_ref(), e.info.carbon_error.as_deref()),
    }
}

/// `452 g/kWh in 'DE' (…); forecast min …`, with the source's error after it when the last
/// read failed.
fn carbon_line(
    signal: Option<&crate::metrics::carbon::CarbonSignal>,
    error: Option<&str>,
) -> Option<String> {
    match (signal.map(|s| s.summary()), error) {
        (None, None) => None,
        (Some(s), None) => Some(s),
        (None, Some(e)) => Some(format!("unavailable: {e}")),
        (Some(s), Some(e)) => Some(format!("{s} (last good; {e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsampling_keeps_the_mean_and_the_peak() {
        let points: Vec<PointView> = (0..100)
            .map(|i| PointView {
                t: 1000 + i,
                value: if i == 37 { 9.0 } else { 1.0 },
                max: if i == 37 { 9.0 } else { 1.0 },
            })
            .collect();
        let out = downsample(points.clone(), 1000, 100, 10);
        assert_eq!(out.len(), 10);
        assert_eq!(out[3].t, 1030);
        assert!((out[3].value - 1.8).abs() < 1e-6, "{:?}", out[3]);
        assert_eq!(out[3].max, 9.0);
        assert!(
            out.iter()
                .enumerate()
                .all(|(i, p)| i == 3 || p.value == 1.0)
        );
        // Fewer points than the width pass through unchanged.
        assert_eq!(downsample(points.clone(), 1000, 100, 200), points);
    }
}
