//! The leader's side of the pipeline: keeps every node's latest update, judges liveness, flags
//! anomalies and builds the [`ClusterMetricsSnapshot`]; and [`View`], which every node (the
//! leader included) builds from the snapshots: the latest snapshot plus the 2-hour window.
//! No I/O and no clock: callers pass `now`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::anomaly::Detector;
use super::requests::{SliceTraffic, merge_samples};
use super::traffic::ClusterTraffic;
use super::update::{
    AnomalyFlag, ClusterMetricsSnapshot, MetricsUpdate, NodeEntry, NodeInfo, NodeMetrics,
};
use super::window::Window;
use crate::domain::{Health, Millis, NodeId, NodeRecord};

/// Liveness and anomaly settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub suspect_after: Duration,
    pub down_after: Duration,
    pub anomaly_threshold: f32,
    /// Seconds of history an anomaly is judged against.
    pub anomaly_window_secs: u64,
    /// What GPU health judges against.
    pub gpu: super::gpu_health::Settings,
}

/// Anomaly checks are spread over this many ticks (each node is checked every Nth tick), so the
/// leader's cost per tick stays flat as the cluster grows.
pub const ANOMALY_EVERY: u64 = 5;

/// The detector for a series, by its kind: the smallest change worth flagging differs (a CPU
/// moving 0.2 is news, a temperature moving 0.2 °C is not). `None`: not judged.
pub fn detector_for(series: &str, threshold: f32) -> Option<Detector> {
    let min_change = match series {
        "cpu" => 0.2,
        "mem" | "swap" => 0.1,
        "disk_used" => 0.05,
        s if s.ends_with("_temp") => 8.0,
        s if s.ends_with("_util") => 0.3,
        s if s.starts_with("gpu") && s.ends_with("_mem") => 0.1,
        _ => return None,
    };
    Some(Detector {
        threshold,
        min_change,
        min_points: 30,
    })
}

struct Latest {
    info: NodeInfo,
    m: NodeMetrics,
    received: Instant,
    anomalies: Vec<AnomalyFlag>,
    /// Whether `m` went out in a snapshot: until it has, a newer sample carries its request
    /// deltas along.
    published: bool,
}

/// The leader's aggregation state for one term.
pub struct Aggregator {
    pub term: u64,
    leader: NodeId,
    seq: u64,
    /// When this node became leader: nobody is judged silent for longer than it has listened.
    since: Instant,
    latest: HashMap<NodeId, Latest>,
    settings: Settings,
    ticks: u64,
}

/// A liveness verdict that differs from what the replicated store records.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub node: NodeId,
    pub health: Health,
    /// The numbers, e.g. `no metrics update for 3.1 s`.
    pub why: String,
}

impl Aggregator {
    /// Start a term, seeded from the last snapshot this node received (`received` is when).
    pub fn new(
        leader: NodeId,
        term: u64,
        settings: Settings,
        seed: Option<(&ClusterMetricsSnapshot, Instant)>,
        now: Instant,
    ) -> Aggregator {
        let mut latest = HashMap::new();
        if let Some((snap, got)) = seed {
            for e in &snap.nodes {
                let received = got
                    .checked_sub(Duration::from_millis(e.age_ms))
                    .unwrap_or(got);
                latest.insert(
                    e.node,
                    Latest {
                        info: e.info.clone(),
                        m: e.m.clone(),
                        received,
                        anomalies: e.anomalies.clone(),
                        published: true,
                    },
                );
            }
        }
        Aggregator {
            term,
            leader,
            seq: 0,
            since: now,
            latest,
            settings,
            ticks: 0,
        }
    }

    /// Take one update. An update older than the one held (reordered datagrams) is ignored,
    /// its request deltas with it. When a newer sample replaces one no snapshot carried yet,
    /// the older one's request deltas are added to it; the same sample sent again (same `at`,
    /// same deltas) just replaces it.
    pub fn receive(&mut self, mut u: MetricsUpdate, now: Instant) {
        match self.latest.get_mut(&u.node) {
            Some(l) if u.m.at < l.m.at => {}
            Some(l) => {
                if let Some(info) = u.info {
                    l.info = info;
                }
                if u.m.at != l.m.at {
                    if !l.published {
                        let older = std::mem::take(&mut l.m.traffic);
                        merge_samples(&mut u.m.traffic, older);
                    }
                    l.published = false;
                }
                l.m = u.m;
                l.received = now;
            }
            None => {
                self.latest.insert(
                    u.node,
                    Latest {
                        info: u.info.unwrap_or_default(),
                        m: u.m,
                        received: now,
                        anomalies: Vec::new(),
                        published: false,
                    },
                );
            }
        }
    }

    /// Nodes whose [`NodeInfo`] is unknown (an update without it came first).
    pub fn missing_info(&self) -> Vec<NodeId> {
        self.latest
            .iter()
            .filter(|(_, l)| l.info.version.is_empty())
            .map(|(id, _)| *id)
            .collect()
    }

    fn verdict(&self, node: NodeId, now: Instant) -> (Health, Duration) {
        let seen = self
            .latest
            .get(&node)
            .map(|l| l.received.max(self.since))
            .unwrap_or(self.since);
        let silent = now.saturating_duration_since(seen);
        let h = if node == self.leader || silent < self.settings.suspect_after {
            Health::Ready
        } else if silent < self.settings.down_after {
            Health::Suspect
        } else {
            Health::Down
        };
        (h, silent)
    }

    /// Build the snapshot of this tick, and the liveness verdicts that differ from `recorded`
    /// (the replicated health; absent means ready). `members` are the registered nodes;
    /// `window` is the history this node keeps (for anomaly checks).
    pub fn tick(
        &mut self,
        now: Instant,
        wall: Millis,
        members: &[NodeRecord],
        recorded: &BTreeMap<NodeId, Health>,
        window: &Window,
    ) -> (ClusterMetricsSnapshot, Vec<Transition>) {
        self.ticks += 1;
        self.seq += 1;
        let member_ids: HashMap<NodeId, &NodeRecord> = members.iter().map(|m| (m.id, m)).collect();
        // Non-members are shown while they send; removed members' entries go at once.
        let down_after = self.settings.down_after;
        self.latest.retain(|id, l| {
            member_ids.contains_key(id) || now.saturating_duration_since(l.received) < down_after
        });
        let mut transitions = Vec::new();
        let mut health: HashMap<NodeId, Health> = HashMap::with_capacity(members.len());
        for m in members {
            let (h, silent) = self.verdict(m.id, now);
            health.insert(m.id, h);
            if h != recorded.get(&m.id).copied().unwrap_or_default() {
                let why = match h {
                    Health::Ready => "metrics updates resumed".to_string(),
                    _ => format!(
                        "no metrics update for {:.1} s (suspect after {:.1} s, down after {:.1} s)",
                        silent.as_secs_f32(),
                        self.settings.suspect_after.as_secs_f32(),
                        down_after.as_secs_f32()
                    ),
                };
                transitions.push(Transition {
                    node: m.id,
                    health: h,
                    why,
                });
            }
        }
        let settings = self.settings;
        let ticks = self.ticks;
        for (id, l) in self.latest.iter_mut() {
            if (id + ticks) % ANOMALY_EVERY != 0 {
                continue;
            }
            l.anomalies = anomalies(*id, &l.m, window, &settings);
        }
        let mut nodes: Vec<NodeEntry> = Vec::with_capacity(self.latest.len());
        for (id, l) in self.latest.iter_mut() {
            l.published = true;
            let member = member_ids.get(id);
            let mut info = l.info.clone();
            if let Some(rec) = member {
                info.name = rec.name.clone();
            }
            nodes.push(NodeEntry {
                node: *id,
                info,
                m: l.m.clone(),
                age_ms: now.saturating_duration_since(l.received).as_millis() as u64,
                health: health.get(id).copied().unwrap_or_default(),
                member: member.is_some(),
                anomalies: l.anomalies.clone(),
            });
        }
        nodes.sort_by_key(|e| e.node);
        (
            ClusterMetricsSnapshot {
                leader: self.leader,
                term: self.term,
                seq: self.seq,
                built_at: wall,
                nodes,
            },
            transitions,
        )
    }
}

/// Judge the newest value of each judged series of `node` against its window.
fn anomalies(node: NodeId, m: &NodeMetrics, window: &Window, s: &Settings) -> Vec<AnomalyFlag> {
    let mut out = Vec::new();
    for (name, value) in m.series() {
        let Some(det) = detector_for(&name, s.anomaly_threshold) else {
            continue;
        };
        let Some(series) = window.series(node, &name) else {
            continue;
        };
        let mut hist = series.recent(s.anomaly_window_secs);
        // The window may already hold this very sample: judge it against what came before.
        if series.latest().is_some_and(|(t, _)| t == m.at / 1000) {
            hist.pop();
        }
        if let Some(a) = det.check(&name, &hist, value) {
            out.push(AnomalyFlag {
                series: name,
                value,
                median: a.median,
                z: a.z,
                reason: a.reason,
            });
        }
    }
    out.extend(gpu_health(node, m, window, &s.gpu));
    out
}

/// The GPU-health findings of `node`'s GPUs over their window, as anomaly flags (`median` holds
/// the limit judged against, `z` is 0: these are not z-scores).
fn gpu_health(
    node: NodeId,
    m: &NodeMetrics,
    window: &Window,
    s: &super::gpu_health::Settings,
) -> Vec<AnomalyFlag> {
    let secs = s
        .trend_secs
        .max(s.errors_for_secs)
        .max(s.throttled_for_secs);
    let mut out = Vec::new();
    for g in &m.gpus {
        let recent = |kind: &str| {
            window
                .series(node, &format!("gpu{}_{kind}", g.index))
                .map(|x| x.recent(secs))
                .unwrap_or_default()
        };
        let (temps, xids, ecc, throttle) = (
            recent("temp"),
            recent("xid"),
            recent("ecc"),
            recent("throttle"),
        );
        let h = super::gpu_health::History {
            gpu: g,
            temps: &temps,
            xids: &xids,
            ecc: &ecc,
            throttle: &throttle,
        };
        for i in super::gpu_health::judge(&h, s) {
            out.push(AnomalyFlag {
                series: i.kind.series(i.gpu),
                value: i.value,
                median: i.limit,
                z: 0.0,
                reason: i.reason,
            });
        }
    }
    out
}

/// What a node knows of the cluster's metrics: the newest snapshot and the history built from
/// every snapshot it saw, request traffic summed over the nodes included.
#[derive(Default)]
pub struct View {
    pub snapshot: Option<ClusterMetricsSnapshot>,
    /// When the snapshot arrived (this node's clock).
    pub received: Option<Instant>,
    /// Every node's series, and the cluster's traffic series under
    /// [`super::traffic::CLUSTER`] (see [`super::traffic::series_name`]).
    pub window: Window,
    /// Per node, the sample time last recorded into the window.
    recorded: HashMap<NodeId, Millis>,
    traffic: ClusterTraffic,
    /// Deltas that came ahead of the snapshot (see [`super::delta::apply_in_order`]).
    early: super::delta::Early,
}

impl View {
    /// Take a snapshot unless it comes from an older term than the one held, and record every
    /// new sample into the window; the request deltas of each new sample are added to the
    /// cluster's traffic once (a sample is new when its `at` is). Returns whether it was taken.
    pub fn apply(&mut self, snap: ClusterMetricsSnapshot, now: Instant) -> bool {
        // One leader per term, and its seq grows: anything not newer is a late duplicate.
        if let Some(cur) = &self.snapshot
            && (snap.term, snap.seq) <= (cur.term, cur.seq)
        {
            return false;
        }
        let mut fresh = Vec::new();
        for e in &snap.nodes {
            if self.recorded.get(&e.node).is_some_and(|at| *at >= e.m.at) {
                continue;
            }
            let t = e.m.at / 1000;
            let window = &mut self.window;
            e.m.visit_series(|name, v| window.record(e.node, name, t, v));
            self.recorded.insert(e.node, e.m.at);
            fresh.extend(e.m.traffic.iter());
        }
        // Requests waiting now: every node's latest count, but a node judged down's is stale.
        let mut waiting: BTreeMap<String, u32> = BTreeMap::new();
        for e in snap.nodes.iter().filter(|e| e.health != Health::Down) {
            for (slice, n) in &e.m.waiting {
                *waiting.entry(slice.clone()).or_default() += n;
            }
        }
        self.traffic
            .add(snap.built_at, fresh, waiting, &mut self.window);
        let present: std::collections::HashSet<NodeId> =
            snap.nodes.iter().map(|e| e.node).collect();
        let gone: Vec<NodeId> = self
            .recorded
            .keys()
            .filter(|id| !present.contains(id))
            .copied()
            .collect();
        for id in gone {
            self.window.remove_node(id);
            self.recorded.remove(&id);
        }
        self.snapshot = Some(snap);
        self.received = Some(now);
        true
    }

    /// Take a view update from the leader (or a relay): a full snapshot, or a delta applied to
    /// the snapshot held (see [`super::delta::apply_in_order`]: one that overtook the one
    /// before it waits), then [`View::apply`] the result (when deltas that waited apply with
    /// it, the history records the last one's samples). A [`Gap`](super::delta::Gap) leaves
    /// the view as it was: the caller asks for a full view.
    pub fn apply_update(
        &mut self,
        u: super::delta::ViewUpdate,
        now: Instant,
    ) -> Result<super::delta::Applied, super::delta::Gap> {
        let mut held = self.snapshot.take();
        let r = super::delta::apply_in_order(&mut held, &mut self.early, u);
        match (&r, held) {
            (Ok(super::delta::Applied::Taken), Some(s)) => {
                // Newer than nothing: always taken.
                self.apply(s, now);
            }
            (_, held) => self.snapshot = held,
        }
        r
    }

    /// Each slice's traffic over the cluster (keyed by `blueprint/slice`): rates and latency
    /// quantiles over the last [`super::traffic::RATE_SECS`] (histograms of every node merged),
    /// per entry point and instance, the requests waiting now and the last call. Slices not
    /// called for two hours and with nothing waiting are absent: read absent as idle.
    pub fn traffic(&self) -> BTreeMap<String, SliceTraffic> {
        self.traffic.traffic()
    }

    /// What each version of `slice` (`blueprint/slice`) answered since this view began.
    pub fn version_tallies(&self, slice: &str) -> BTreeMap<u64, crate::metrics::requests::Tally> {
        self.traffic.version_tallies(slice)
    }

    /// How old the snapshot is, by this node's clock.
    pub fn age(&self, now: Instant) -> Option<Duration> {
        self.received.map(|r| now.saturating_duration_since(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::NodeState;

    fn settings() -> Settings {
        Settings {
            suspect_after: Duration::from_secs(3),
            down_after: Duration::from_secs(10),
            anomaly_threshold: 6.0,
            anomaly_window_secs: 600,
            gpu: crate::metrics::gpu_health::Settings::default(),
        }
    }

    fn member(id: NodeId) -> NodeRecord {
        NodeRecord {
            id,
            name: format!("n{id}"),
            addr: format!("127.0.0.1:{}", 7000 + id),
            state: NodeState::Ready,
            joined_at: 0,
        }
    }

    fn update(node: NodeId, at: Millis, cpu: f32) -> MetricsUpdate {
        MetricsUpdate {
            node,
            seq: at,
            info: Some(NodeInfo {
                name: format!("n{node}"),
                gpu_unavailable: Some("no driver".into()),
                version: "test".into(),
                gpu_offer: None,
                ..Default::default()
            }),
            m: NodeMetrics {
                at,
                cpu,
                mem_used: 1,
                mem_total: 4,
                ..Default::default()
            },
        }
    }

    #[test]
    fn silent_nodes_go_suspect_then_down_and_come_back() {
        let t0 = Instant::now();
        let mut agg = Aggregator::new(1, 5, settings(), None, t0);
        let members = [member(1), member(2)];
        let mut recorded = BTreeMap::new();
        let w = Window::default();
        agg.receive(update(2, 1_000, 0.1), t0);
        let at = |s: u64| t0 + Duration::from_secs(s);
        let (snap, tr) = agg.tick(at(1), 0, &members, &recorded, &w);
        assert!(tr.is_empty(), "{tr:?}");
        assert_eq!(snap.nodes.len(), 1);
        assert_eq!(snap.nodes[0].age_ms, 1000);
        let (_, tr) = agg.tick(at(4), 0, &members, &recorded, &w);
        assert_eq!(tr.len(), 1, "{tr:?}");
        assert_eq!((tr[0].node, tr[0].health), (2, Health::Suspect));
        assert!(
            tr[0].why.contains("no metrics update for 4.0 s"),
            "{}",
            tr[0].why
        );
        recorded.insert(2, Health::Suspect);
        let (snap, tr) = agg.tick(at(5), 0, &members, &recorded, &w);
        assert!(tr.is_empty(), "a recorded verdict is not repeated: {tr:?}");
        assert_eq!(snap.nodes[0].health, Health::Suspect);
        let (_, tr) = agg.tick(at(11), 0, &members, &recorded, &w);
        assert_eq!(tr[0].health, Health::Down);
        recorded.insert(2, Health::Down);
        agg.receive(update(2, 12_000, 0.1), at(12));
        let (snap, tr) = agg.tick(at(12), 0, &members, &recorded, &w);
        assert_eq!(tr[0].health, Health::Ready);
        assert_eq!(tr[0].why, "metrics updates resumed");
        assert_eq!(snap.nodes[0].health, Health::Ready);
    }

    /// A GPU whose XID count rises is flagged by GPU health within a few ticks, with the
    /// finding's sentence; a node without GPUs never is.
    #[test]
    fn gpu_health_findings_become_anomaly_flags() {
        let t0 = Instant::now();
        let mut agg = Aggregator::new(1, 5, settings(), None, t0);
        let members = [member(1), member(2)];
        let recorded = BTreeMap::new();
        let mut w = Window::default();
        let mut last = None;
        for sec in 1..=30u64 {
            let mut u = update(2, sec * 1_000, 0.1);
            u.m.gpus = vec![crate::metrics::gpu::GpuSample {
                xid_errors: u32::from(sec > 20),
                last_xid: if sec > 20 { 48 } else { 0 },
                ..crate::metrics::gpu::GpuSample::quiet(0)
            }];
            u.m.visit_series(|name, v| w.record(2, name, sec, v));
            let quiet = update(1, sec * 1_000, 0.1);
            quiet.m.visit_series(|name, v| w.record(1, name, sec, v));
            agg.receive(u, t0);
            agg.receive(quiet, t0);
            let (snap, _) = agg.tick(t0, 0, &members, &recorded, &w);
            if sec < 20 {
                assert!(
                    snap.nodes.iter().all(|n| n.anomalies.is_empty()),
                    "{snap:?}"
                );
            }
            last = Some(snap);
        }
        let snap = last.unwrap();
        assert!(
            snap.nodes[0].anomalies.is_empty(),
            "no GPU, nothing to judge"
        );
        let flags = &snap.nodes[1].anomalies;
        assert_eq!(flags.len(), 1, "{flags:?}");
        assert_eq!(flags[0].series, "gpu0_xid_new");
        assert_eq!(
            flags[0].reason,
            "gpu0 had 1 new critical XID error in the last 15 min (newest XID 48)"
        );
    }

    /// The leader's aggregator and view on one side, a follower's view fed only what the
    /// pipeline sends on the other: the first view full, then deltas (through a member's
    /// removal and new nodes), a missed delta answered by a full view, and a new leader's
    /// first view full. The follower's snapshot, window and traffic equal the leader's.
    #[test]
    fn a_follower_fed_deltas_holds_the_leaders_view() {
        use crate::metrics::delta::{Applied, ViewUpdate, diff};
        use crate::metrics::requests::TrafficSample;
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut agg = Aggregator::new(1, 5, settings(), None, t0);
        let (mut leader, mut follower) = (View::default(), View::default());
        let mut members = vec![member(1), member(2), member(3), member(4)];
        let recorded = BTreeMap::new();
        let mut prev: Option<ClusterMetricsSnapshot> = None;
        let mut sent = Vec::new();
        for sec in 1..=14u64 {
            if sec == 4 {
                // Node 3 removed (and stopped): shown as a non-member until `down_after`.
                members.retain(|m| m.id != 3);
            }
            if sec == 6 {
                members.push(member(7)); // node 7 joins
            }
            for m in &members {
                let mut u = update(m.id, sec * 1_000, (m.id * sec % 10) as f32 / 10.0);
                if m.id == 2 {
                    u.m.traffic = vec![TrafficSample {
                        slice: "shop/web".into(),
                        entry: "home".into(),
                        calls: sec as u32,
                        ..Default::default()
                    }];
                }
                agg.receive(u, at(sec * 1_000 - 10));
            }
            let (snap, _) = agg.tick(
                at(sec * 1_000),
                sec * 1_000,
                &members,
                &recorded,
                &leader.window,
            );
            let u = match prev.as_ref().and_then(|p| diff(p, &snap)) {
                Some(d) => ViewUpdate::Delta(d),
                None => ViewUpdate::Full(snap.clone()),
            };
            prev = Some(snap.clone());
            leader.apply(snap.clone(), at(sec * 1_000));
            sent.push((u, snap));
        }
        assert!(
            matches!(sent[0].0, ViewUpdate::Full(_)),
            "the first view is full"
        );
        assert!(
            sent[1..]
                .iter()
                .all(|(u, _)| matches!(u, ViewUpdate::Delta(_)))
        );
        let removals: Vec<(usize, Vec<NodeId>)> = sent
            .iter()
            .enumerate()
            .filter_map(|(i, (u, _))| match u {
                ViewUpdate::Delta(d) if !d.removed.is_empty() => Some((i, d.removed.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(removals, vec![(12, vec![3])], "the removal travels, once");
        let mut lossy = View::default();
        for (i, (u, snap)) in sent.iter().enumerate() {
            let now = at(i as u64 * 1_000 + 1_005);
            assert_eq!(
                follower.apply_update(u.clone(), now),
                Ok(Applied::Taken),
                "view {i}"
            );
            assert_eq!(follower.snapshot.as_ref(), Some(snap), "view {i}");
            // The lossy follower misses delta 5: the next ones wait for it (it may only be
            // late) until one too many is a gap, and the full view it then asks for puts it
            // back in step.
            if i == 4 {
                continue;
            }
            let r = lossy.apply_update(u.clone(), now);
            if i == 5 || i == 6 {
                assert_eq!(r, Ok(Applied::Early), "view {i} waits");
                assert_eq!(lossy.snapshot.as_ref().unwrap().seq, 4, "left as it was");
                continue;
            }
            if i == 7 {
                let gap = r.expect_err("a missed delta is a gap");
                assert_eq!(gap.held, "5/4");
                let full = ViewUpdate::Full(snap.clone());
                assert_eq!(lossy.apply_update(full, now), Ok(Applied::Taken));
            } else {
                assert_eq!(r, Ok(Applied::Taken), "view {i}");
            }
            assert_eq!(lossy.snapshot.as_ref(), Some(snap), "view {i}");
        }
        assert_eq!(follower.snapshot, leader.snapshot);
        assert_eq!(lossy.snapshot, leader.snapshot);
        // By bits: a second without a value is NaN on both sides.
        let bits = |v: &View| {
            v.window
                .series(2, "cpu")
                .map(|s| s.recent(60).iter().map(|x| x.to_bits()).collect::<Vec<_>>())
        };
        assert_eq!(bits(&follower), bits(&leader));
        assert!(
            follower.window.series(3, "cpu").is_none(),
            "node 3's history went"
        );
        assert!(follower.window.series(7, "cpu").is_some(), "node 7's came");
        assert_eq!(follower.window.len(), leader.window.len());
        assert_eq!(follower.traffic(), leader.traffic());

        // A new leader (node 4, term 6) seeded from its view: its first view is full, and
        // no delta spans the two terms.
        let seed = leader.snapshot.as_ref().unwrap();
        let mut agg = Aggregator::new(4, 6, settings(), Some((seed, at(14_000))), at(14_500));
        let (snap, _) = agg.tick(at(15_000), 15_000, &members, &recorded, &Window::default());
        assert_eq!(diff(leader.snapshot.as_ref().unwrap(), &snap), None);
        let ViewUpdate::Delta(old_term) = &sent[13].0 else {
            unreachable!()
        };
        let mut late = old_term.clone();
        late.seq = 15;
        late.base = 14;
        assert!(
            follower
                .apply_update(ViewUpdate::Full(snap.clone()), at(15_010))
                .is_ok()
        );
        assert_eq!(follower.snapshot.as_ref(), Some(&snap));
        assert_eq!(
            follower.apply_update(ViewUpdate::Delta(late), at(15_020)),
            Ok(Applied::Stale),
            "the deposed leader's delta"
        );
    }

    #[test]
    fn a_new_leader_gives_every_node_a_full_grace_period() {
        let t0 = Instant::now();
        let mut agg = Aggregator::new(1, 5, settings(), None, t0);
        agg.receive(update(2, 1_000, 0.1), t0);
        let (snap, _) = agg.tick(
            t0,
            0,
            &[member(1), member(2)],
            &BTreeMap::new(),
            &Window::default(),
        );
        // The snapshot reaches node 3 late; node 3 becomes leader 2.5 s after it was built.
        let got = t0 + Duration::from_millis(500);
        let start = t0 + Duration::from_millis(2_500);
        let mut agg = Aggregator::new(3, 6, settings(), Some((&snap, got)), start);
        let members = [member(1), member(2), member(3)];
        let (snap, tr) = agg.tick(
            start + Duration::from_secs(2),
            0,
            &members,
            &BTreeMap::new(),
            &Window::default(),
        );
        assert!(
            tr.is_empty(),
            "no verdict before suspect_after since becoming leader: {tr:?}"
        );
        assert_eq!(snap.nodes[0].node, 2);
        assert_eq!(
            snap.nodes[0].age_ms, 4000,
            "age counts from the original receipt"
        );
        let (_, tr) = agg.tick(
            start + Duration::from_secs(3),
            0,
            &members,
            &BTreeMap::new(),
            &Window::default(),
        );
        assert_eq!(tr.len(), 2, "nodes 1 and 2 silent for 3 s: {tr:?}");
    }

    #[test]
    fn reordered_updates_and_stale_snapshots_are_ignored() {
        let t0 = Instant::now();
        let mut agg = Aggregator::new(1, 5, settings(), None, t0);
        agg.receive(update(2, 2_000, 0.2), t0);
        agg.receive(update(2, 1_000, 0.9), t0);
        let (snap, _) = agg.tick(t0, 0, &[member(2)], &BTreeMap::new(), &Window::default());
        assert_eq!(snap.nodes[0].m.cpu, 0.2);

        let mut view = View::default();
        assert!(view.apply(snap.clone(), t0));
        assert_eq!(
            view.window.series(2, "cpu").unwrap().latest(),
            Some((2, 0.2))
        );
        let mut old = snap.clone();
        old.term = 4;
        old.seq = 99;
        assert!(!view.apply(old, t0), "an older term's snapshot is ignored");
        let mut next = snap;
        next.seq += 1;
        next.nodes.clear();
        assert!(view.apply(next, t0));
        assert!(
            view.window.series(2, "cpu").is_none(),
            "a node gone from the snapshot leaves the window"
        );
    }

    /// An update of node 2 sampled at `at` with `calls` requests of `shop/web` since its last.
    fn busy(at: Millis, calls: u32) -> MetricsUpdate {
        let mut u = update(2, at, 0.1);
        let mut h = crate::metrics::requests::Histogram::default();
        h.add(3, u64::from(calls));
        u.m.traffic = vec![crate::metrics::requests::TrafficSample {
            slice: "shop/web".into(),
            entry: "home".into(),
            calls,
            errors: 0,
            hist: h.sparse(),
            instances: vec![(0, calls)],
            versions: Vec::new(),
        }];
        u.m.waiting = vec![("shop/web".into(), 1)];
        u
    }

    #[test]
    fn request_deltas_count_once_whatever_updates_and_snapshots_do() {
        use crate::metrics::traffic::CLUSTER;
        let t0 = Instant::now();
        let mut agg = Aggregator::new(1, 5, settings(), None, t0);
        let members = [member(1), member(2)];
        let mut view = View::default();
        let wall = 1_700_000_010_000;
        let tick = |agg: &mut Aggregator, view: &mut View, s: u64| {
            let (snap, _) = agg.tick(
                t0,
                wall + s * 1000,
                &members,
                &BTreeMap::new(),
                &view.window,
            );
            assert!(view.apply(snap, t0));
        };
        // Two updates between snapshots: the first's requests ride on the second.
        agg.receive(busy(1_000, 5), t0);
        agg.receive(busy(1_500, 3), t0);
        tick(&mut agg, &mut view, 0);
        // The same sample sent again (its update was re-sent), then no update at all: the
        // snapshots repeat the sample, the view counts it once.
        agg.receive(busy(1_500, 3), t0);
        tick(&mut agg, &mut view, 1);
        tick(&mut agg, &mut view, 2);
        // A reordered older update is dropped.
        agg.receive(busy(1_200, 50), t0);
        tick(&mut agg, &mut view, 3);
        let web = &view.traffic()["shop/web"];
        // 8 requests over the 4 s this view has seen (the first snapshot's deltas cover ~1 s).
        assert!((web.calls_per_s - 2.0).abs() < 1e-9, "{web:?}");
        assert_eq!(web.waiting, 1);
        assert_eq!(web.last_call_at, Some(wall));
        assert_eq!(web.instances, vec![(0, 1.0)]);

        // Node 2 leaves: its own series go, the cluster's stay.
        let series = |v: &View| v.window.series(CLUSTER, "shop/web:calls_per_s").is_some();
        assert!(series(&view));
        let (mut snap, _) = agg.tick(t0, wall + 4_000, &members, &BTreeMap::new(), &view.window);
        snap.nodes.retain(|e| e.node != 2);
        assert!(view.apply(snap, t0));
        assert!(view.window.series(2, "cpu").is_none());
        assert!(
            series(&view),
            "the cluster's traffic series are not a node's"
        );
        assert_eq!(
            view.traffic()["shop/web"].waiting,
            0,
            "nobody waits on a node gone"
        );
    }

    #[test]
    fn a_spike_in_the_window_is_flagged_on_the_leader() {
        let t0 = Instant::now();
        let mut agg = Aggregator::new(1, 5, settings(), None, t0);
        let mut view = View::default();
        let members = [member(1)];
        for s in 0..120u64 {
            let cpu = if s == 119 {
                0.97
            } else {
                0.10 + (s % 3) as f32 * 0.01
            };
            agg.receive(update(1, s * 1000, cpu), t0);
            let (snap, _) = agg.tick(t0, 0, &members, &BTreeMap::new(), &view.window);
            if s < 119 {
                assert!(snap.nodes[0].anomalies.is_empty(), "noise is not flagged");
            }
            view.apply(snap, t0);
        }
        // Each node is checked every ANOMALY_EVERY ticks: the spike is caught within that many.
        let mut flagged = None;
        for _ in 0..ANOMALY_EVERY {
            let (snap, _) = agg.tick(t0, 0, &members, &BTreeMap::new(), &view.window);
            if let Some(f) = snap.nodes[0].anomalies.first() {
                flagged = Some(f.clone());
            }
        }
        let f = flagged.expect("the spike is flagged");
        assert_eq!(f.series, "cpu");
        assert!(
            f.reason.contains("cpu 0.97 is far above its normal 0.11"),
            "{}",
            f.reason
        );
    }
}
