//! Live feeds ([`AdminRequest::Subscribe`]): what the console subscribes to. The first frame
//! carries everything; later frames carry only what changed since the previous one, sent when
//! the Raft state moves (coalesced) and on the metrics period. Each subscriber keeps what it was
//! last sent, so a slow console costs its own connection, nothing else.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;

use super::protocol::MAX_ADMIN_FRAME;
use super::protocol::{
    AdminError, AdminRequest, AdminResponse, BlueprintView, ErrorKind, LiveMetrics, LiveNode,
    LiveUpdate, NodeHistory, PointView, SliceLoad, StatusView, Watch,
};
use crate::controller::flow::Controller;
use crate::controller::model::ModelStatus;
use crate::domain::{Decision, NodeId, now_millis};
use crate::metrics::aggregate::View;
use crate::metrics::pipeline::Pipeline;
use crate::metrics::update::NodeEntry;
use crate::net::frame::{FrameError, read_frame, write_frame};
use crate::raft::Cluster;
use crate::view::blueprints::blueprint_views;
use crate::view::status::control_view;

/// Decisions a feed tracks (open and recent ones, newest first).
const DECISIONS: usize = 200;
/// Audit records in the first frame.
const EVENTS: usize = 500;
/// Seconds of sparkline in the first frame.
const SPARK_SECS: u64 = 60;
/// Raft changes closer together than this share one frame.
const COALESCE: Duration = Duration::from_millis(50);

/// What one subscriber was last sent.
#[derive(Default)]
struct Feed {
    watch: Watch,
    /// The applied index the Raft-derived parts were last read at.
    applied: Option<u64>,
    /// The controller part of the status, read at `applied`.
    control: Option<super::protocol::ControlView>,
    status: Option<StatusView>,
    blueprints: Option<Vec<BlueprintView>>,
    loads: Option<Vec<SliceLoad>>,
    decisions: HashMap<u64, Decision>,
    last_event: Option<u64>,
    model: Option<ModelStatus>,
    /// Per node: the newest sparkline second sent.
    spark_to: HashMap<NodeId, u64>,
    history: Option<NodeHistory>,
}

/// Serve one subscription until the client goes away or the node shuts down.
pub async fn serve(
    stream: UnixStream,
    watch: Watch,
    cluster: Arc<Cluster>,
    metrics: Arc<Pipeline>,
    controller: Arc<Controller>,
    shutdown: CancellationToken,
) {
    let (mut rd, mut wr) = stream.into_split();
    let mut feed = Feed {
        watch,
        ..Feed::default()
    };
    let mut applied = cluster.store.subscribe_applied();
    let mut tick = tokio::time::interval(metrics.interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Watches from the client arrive on their own task so a half-read frame is never dropped.
    let (watch_tx, mut watch_rx) = tokio::sync::mpsc::channel::<Result<Watch, String>>(4);
    let reader = tokio::spawn(async move {
        loop {
            let msg = match read_frame::<_, AdminRequest>(&mut rd, MAX_ADMIN_FRAME).await {
                Ok(AdminRequest::Subscribe(w)) => Ok(w),
                Ok(_) => Err("a live feed accepts only 'Subscribe' frames".to_string()),
                Err(FrameError::Closed) => return,
                Err(e) => Err(format!("bad admin frame: {e}")),
            };
            let stop = msg.is_err();
            if watch_tx.send(msg).await.is_err() || stop {
                return;
            }
        }
    });
    let mut full = true;
    loop {
        let update = feed.update(&cluster, &metrics, &controller, full);
        full = false;
        if let Some(u) = update
            && write_frame(&mut wr, &AdminResponse::Live(Box::new(u)))
                .await
                .is_err()
        {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
            changed = applied.changed() => {
                if changed.is_err() {
                    break;
                }
                tokio::time::sleep(COALESCE).await;
                applied.borrow_and_update();
            }
            w = watch_rx.recv() => match w {
                Some(Ok(w)) => {
                    feed.history = None;
                    feed.watch = w;
                }
                Some(Err(m)) => {
                    let e = AdminError::new(ErrorKind::Invalid, m);
                    let _ = write_frame(&mut wr, &AdminResponse::Error(e)).await;
                    break;
                }
                None => break,
            },
        }
    }
    reader.abort();
}

impl Feed {
    /// The next frame: everything when `full`, else what changed; `None` when nothing did.
    fn update(
        &mut self,
        cluster: &Cluster,
        metrics: &Pipeline,
        controller: &Controller,
        full: bool,
    ) -> Option<LiveUpdate> {
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
            self.control = control_view(cluster, controller);
        }
        if let Ok(mut s) = cluster.local_status() {
            s.controller = self.control.clone().map(|mut c| {
                // The reviewer line is this node's own and changes without the log.
                c.reviewer = controller.local_status().reviewer;
                c
            });
            if self.status.as_ref() != Some(&s) {
                u.status = Some(Box::new(s.clone()));
                self.status = Some(s);
            }
        }
        let model = controller.model().status();
        if self.model.as_ref() != Some(&model) {
            u.model = Some(Box::new(model.clone()));
            self.model = Some(model);
        }
        if raft_moved
            && let Ok(b) = blueprint_views(cluster, None)
            && self.blueprints.as_ref() != Some(&b)
        {
            u.blueprints = Some(b.clone());
            self.blueprints = Some(b);
        }
        if let Some(bps) = &self.blueprints {
            let loads: Vec<SliceLoad> = bps
                .iter()
                .flat_map(|b| {
                    b.blueprint
                        .slices
                        .iter()
                        .map(move |s| format!("{}/{}", b.blueprint.name, s.name))
                })
                .map(|target| {
                    let (load, forecast) = controller.load_chart(&target, now / 1000);
                    let f =
                        |v: Vec<(u64, f64)>| v.into_iter().map(|(t, x)| (t, x as f32)).collect();
                    SliceLoad {
                        target,
                        load: f(load),
                        forecast: f(forecast),
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
            && u.history.is_none();
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
