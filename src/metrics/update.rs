//! What travels between nodes: a node's compact [`MetricsUpdate`] to the leader, and the
//! leader's [`ClusterMetricsSnapshot`] to every node, whole when a node starts and as deltas
//! after (see [`super::delta`]). Plain data, no I/O.
//!
//! An update is kept small (one QUIC datagram, about 110 bytes on a GPU-less host without
//! traffic, 215 with three busy entry points): per-core CPU as whole percents, at most
//! [`MAX_DISKS`] mounts and [`MAX_NETS`] interfaces, request deltas only for entry points that
//! had calls (non-empty histogram buckets only), and the slowly changing facts ([`NodeInfo`])
//! only every [`INFO_EVERY`]th update or when asked.

use serde::{Deserialize, Serialize};

use super::gpu::{GpuSample, GpuState};
use super::requests::TrafficSample;
use crate::domain::{Health, Millis, NodeId};

/// Mounts kept per sample (the largest first).
pub const MAX_DISKS: usize = 8;
/// Interfaces kept per sample (the busiest first; loopback left out).
pub const MAX_NETS: usize = 8;

/// One disk (mount point).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskSample {
    pub mount: String,
    pub read_bps: f32,
    pub write_bps: f32,
    pub free_bytes: u64,
    pub total_bytes: u64,
}

/// One network interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetSample {
    pub iface: String,
    pub rx_bps: f32,
    pub tx_bps: f32,
}

/// One supervised process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessSample {
    pub pid: u32,
    /// CPU in cores (1.0 = one core busy).
    pub cpu: f32,
    pub rss: u64,
}

/// An update carries [`NodeInfo`] this often (and on the first update, and when the leader asks).
pub const INFO_EVERY: u64 = 30;

/// Facts about a node that rarely change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    /// `Some(reason)` when NVML cannot be used on this node.
    pub gpu_unavailable: Option<String>,
    /// The aether version the node runs.
    pub version: String,
    /// The GPUs (NVML indices) the node hands to instances when `deploy.gpus` lists them;
    /// `None`: every GPU of its samples.
    pub gpu_offer: Option<Vec<u32>>,
    /// The node's carbon-intensity signal (`[carbon]`), the last one that read well.
    pub carbon: Option<super::carbon::CarbonSignal>,
    /// Why the carbon source did not read at its last refresh (its location and the JSON
    /// path); `None` when it read well or none is configured.
    pub carbon_error: Option<String>,
}

impl NodeInfo {
    /// `gpu: unavailable (<reason>)`, `gpu: none` or `gpu: 0 <name>, …`.
    pub fn gpu_state(&self, gpus: &[GpuSample]) -> String {
        match &self.gpu_unavailable {
            Some(r) => GpuState::Unavailable(r.clone()).to_string(),
            None => GpuState::Gpus(gpus.to_vec()).to_string(),
        }
    }
}

/// One node's measurements at one moment, in wire form.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeMetrics {
    /// Sample time on the node's clock (Unix ms).
    pub at: Millis,
    /// All cores, 0.0–1.0.
    pub cpu: f32,
    /// Each core in whole percents.
    pub cores: Vec<u8>,
    pub mem_used: u64,
    pub mem_total: u64,
    pub swap_used: u64,
    pub swap_total: u64,
    pub load: [f32; 3],
    pub disks: Vec<DiskSample>,
    pub nets: Vec<NetSample>,
    pub gpus: Vec<GpuSample>,
    /// Supervised processes the node was asked to sample.
    pub procs: Vec<ProcessSample>,
    /// Requests through this node's ingress since its previous update, per slice and entry
    /// point; entries without calls are left out (see [`super::requests::Recorder::take`]).
    /// A sample sent again (same `at`) carries the same deltas: they count once per `at`.
    pub traffic: Vec<TrafficSample>,
    /// Requests waiting for an instance on this node now, per `blueprint/slice` (none: zero).
    pub waiting: Vec<(String, u32)>,
    /// Service ports this node's ingress cannot listen on: (port, why); none normally.
    pub listen_errors: Vec<(u16, String)>,
}

fn ratio(a: u64, b: u64) -> f32 {
    if b == 0 { 0.0 } else { a as f32 / b as f32 }
}

impl NodeMetrics {
    /// The headline series this sample adds to the history window, as (name, value). Ratios are
    /// 0.0–1.0, rates bytes per second, temperatures °C, power W.
    pub fn series(&self) -> Vec<(String, f32)> {
        let mut out = Vec::with_capacity(9 + 7 * self.gpus.len());
        self.visit_series(|name, v| out.push((name.to_string(), v)));
        out
    }

    /// [`NodeMetrics::series`] without allocating a name per series (the leader records every
    /// node's series every second).
    pub fn visit_series(&self, mut f: impl FnMut(&str, f32)) {
        let sum = |g: &dyn Fn(&NetSample) -> f32| self.nets.iter().map(g).sum::<f32>();
        f("cpu", self.cpu);
        f("mem", ratio(self.mem_used, self.mem_total));
        f("swap", ratio(self.swap_used, self.swap_total));
        f("load1", self.load[0]);
        f("disk_read", self.disks.iter().map(|d| d.read_bps).sum());
        f("disk_write", self.disks.iter().map(|d| d.write_bps).sum());
        f(
            "disk_used",
            self.disks
                .iter()
                .map(|d| 1.0 - ratio(d.free_bytes, d.total_bytes))
                .fold(0.0, f32::max),
        );
        f("net_rx", sum(&|n| n.rx_bps));
        f("net_tx", sum(&|n| n.tx_bps));
        let mut name = String::new();
        for g in &self.gpus {
            // Besides load, the counters and flags GPU health judges (super::gpu_health).
            for (kind, v) in [
                ("util", g.util),
                ("mem", ratio(g.mem_used, g.mem_total)),
                ("temp", g.temp_c),
                ("power", g.power_w),
                ("xid", g.xid_errors as f32),
                ("ecc", g.ecc_uncorrected as f32),
                ("throttle", f32::from(g.throttle)),
            ] {
                name.clear();
                use std::fmt::Write;
                let _ = write!(name, "gpu{}_{kind}", g.index);
                f(&name, v);
            }
        }
    }
}

/// What a node pushes to the leader every `metrics.interval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsUpdate {
    pub node: NodeId,
    /// Increases by one per update of this node process.
    pub seq: u64,
    /// Present on the first update, every [`INFO_EVERY`]th, and when the leader asked.
    pub info: Option<NodeInfo>,
    pub m: NodeMetrics,
}

/// A flagged value (see [`super::anomaly`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyFlag {
    pub series: String,
    pub value: f32,
    pub median: f32,
    pub z: f32,
    /// One sentence with the numbers.
    pub reason: String,
}

/// One node in the cluster snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeEntry {
    pub node: NodeId,
    pub info: NodeInfo,
    pub m: NodeMetrics,
    /// How long before the snapshot was built the leader received this node's last update.
    pub age_ms: u64,
    /// The leader's liveness verdict.
    pub health: Health,
    /// Whether the node is a registered member (updates from others are shown, not tracked).
    pub member: bool,
    pub anomalies: Vec<AnomalyFlag>,
}

impl NodeEntry {
    /// How many GPUs the node hands to instances (`deploy.gpus`, else every GPU it samples).
    pub fn gpus_offered(&self) -> u32 {
        self.info
            .gpu_offer
            .as_ref()
            .map_or(self.m.gpus.len(), Vec::len) as u32
    }

    /// The node's name, or `node-<id>` before its name is known.
    pub fn name(&self) -> String {
        if self.info.name.is_empty() {
            format!("node-{}", self.node)
        } else {
            self.info.name.clone()
        }
    }
}

/// The cluster-wide view the leader broadcasts every `metrics.interval`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterMetricsSnapshot {
    pub leader: NodeId,
    /// The leader's Raft term: a node ignores snapshots from an older term.
    pub term: u64,
    /// Increases per snapshot within a term.
    pub seq: u64,
    /// When the leader built it (Unix ms, leader's clock).
    pub built_at: Millis,
    pub nodes: Vec<NodeEntry>,
}

/// The cluster view's wire form; computed and applied by `metrics::delta`.
/// What the leader sends a node about the cluster each `metrics.interval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ViewUpdate {
    /// The whole snapshot: the first of a term, or for a node that asked (a gap: see `delta::Gap`).
    Full(ClusterMetricsSnapshot),
    /// What changed since the previous snapshot of the same term.
    Delta(ViewDelta),
}

impl ViewUpdate {
    /// (term, seq) of the snapshot this update yields.
    pub fn position(&self) -> (u64, u64) {
        match self {
            ViewUpdate::Full(s) => (s.term, s.seq),
            ViewUpdate::Delta(d) => (d.term, d.seq),
        }
    }

    /// When the leader built the snapshot this update yields (leader's clock, Unix ms).
    pub fn built_at(&self) -> Millis {
        match self {
            ViewUpdate::Full(s) => s.built_at,
            ViewUpdate::Delta(d) => d.built_at,
        }
    }

    /// The leader that sent it.
    pub fn leader(&self) -> NodeId {
        match self {
            ViewUpdate::Full(s) => s.leader,
            ViewUpdate::Delta(d) => d.leader,
        }
    }
}

/// The changes from snapshot `base` to snapshot `seq` of one term of one leader.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ViewDelta {
    pub leader: NodeId,
    pub term: u64,
    /// The seq of the snapshot this delta applies to.
    pub base: u64,
    /// The seq of the snapshot it yields.
    pub seq: u64,
    pub built_at: Millis,
    /// Nodes new or changed, in node order. A new node carries every field.
    pub changed: Vec<NodePatch>,
    /// Nodes no longer in the snapshot.
    pub removed: Vec<NodeId>,
}

/// One node's changed fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodePatch {
    pub node: NodeId,
    pub fields: Vec<Field>,
}

/// One field of a [`NodeEntry`] (its metrics' fields flattened), with its new value. Only
/// changed fields travel: a tag byte plus the value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Field {
    Info(NodeInfo),
    AgeMs(u64),
    Health(Health),
    Member(bool),
    Anomalies(Vec<AnomalyFlag>),
    At(Millis),
    Cpu(f32),
    Cores(Vec<u8>),
    MemUsed(u64),
    MemTotal(u64),
    SwapUsed(u64),
    SwapTotal(u64),
    Load([f32; 3]),
    Disks(Vec<DiskSample>),
    Nets(Vec<NetSample>),
    Gpus(Vec<GpuSample>),
    Procs(Vec<ProcessSample>),
    Traffic(Vec<TrafficSample>),
    Waiting(Vec<(String, u32)>),
    ListenErrors(Vec<(u16, String)>),
}

/// The one-way messages of the metrics pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MetricsMsg {
    /// Node → leader.
    Update(Box<MetricsUpdate>),
    /// Leader (or a relay) → a node: the cluster view, full or as a delta against the
    /// previous snapshot (see [`super::delta`]). Replaced the whole `Snapshot` every second
    /// in protocol 7.
    View(ViewUpdate),
    /// A new leader → every member: sample now and include [`NodeInfo`].
    SampleNow { term: u64 },
    /// Leader → every member, with each snapshot: the leader's reviewer (its language model),
    /// so that every node reports the reviewer that decides, not only its own idle one.
    /// Appended last: a node that does not know it drops this message only.
    Reviewer(LeaderReviewer),
    /// Leader → every member, with each snapshot while its strategic layer runs: its latest
    /// advice and counters, so that `aether advice` and the console show them on every node.
    /// Appended last, like `Reviewer`.
    Advice(LeaderAdvice),
    /// Leader → a relay: take `view`, and forward it as [`MetricsMsg::View`] to the nodes at
    /// `to` (the leader reaches N nodes with about √N sends; see [`super::delta::plan_relays`]).
    /// The relay also forwards `also` (the leader's [`MetricsMsg::Reviewer`] and
    /// [`MetricsMsg::Advice`] of the same tick) and takes them itself.
    Relay {
        to: Vec<String>,
        view: ViewUpdate,
        also: Vec<MetricsMsg>,
    },
    /// A node → the leader: its view has a gap (a delta was missed, or none came for a
    /// while): send `node` a full view of term `term`.
    Resync { node: NodeId, term: u64 },
}

/// The leader's strategic layer as it reports itself, with who sent it and in which term.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LeaderAdvice {
    /// The leader that sent it.
    pub leader: NodeId,
    /// The leader's Raft term: a node ignores one from an older term.
    pub term: u64,
    pub view: crate::domain::AdviceView,
}

/// The leader's reviewer as it reports itself (the controller fills in the view), with who
/// sent it and in which term. Encoded as its fields in order, the view's inline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LeaderReviewer {
    pub leader: NodeId,
    /// The leader's Raft term: a node ignores one from an older term.
    pub term: u64,
    pub view: crate::raft::status::ReviewerView,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NodeMetrics {
        NodeMetrics {
            at: 1_700_000_000_123,
            cpu: 0.25,
            cores: vec![50, 0],
            mem_used: 3 << 30,
            mem_total: 8 << 30,
            swap_used: 0,
            swap_total: 0,
            load: [0.5, 0.4, 0.3],
            disks: vec![DiskSample {
                mount: "/".into(),
                read_bps: 1000.0,
                write_bps: 2000.0,
                free_bytes: 60 << 30,
                total_bytes: 100 << 30,
            }],
            nets: vec![NetSample {
                iface: "eth0".into(),
                rx_bps: 300.0,
                tx_bps: 100.0,
            }],
            gpus: Vec::new(),
            procs: Vec::new(),
            traffic: Vec::new(),
            waiting: Vec::new(),
            listen_errors: Vec::new(),
        }
    }

    #[test]
    fn headline_series_are_ratios_and_totals() {
        let m = sample();
        let s: std::collections::HashMap<String, f32> = m.series().into_iter().collect();
        assert_eq!(s["cpu"], 0.25);
        assert_eq!(s["mem"], 0.375);
        assert_eq!(s["swap"], 0.0, "no swap is 0, not NaN");
        assert!((s["disk_used"] - 0.4).abs() < 1e-6);
        assert_eq!(s["net_rx"], 300.0);
        assert_eq!(s["disk_write"], 2000.0);
        assert!(!s.keys().any(|k| k.starts_with("gpu")));
    }

    #[test]
    fn an_update_fits_in_one_datagram() {
        let u = MetricsUpdate {
            node: 3,
            seq: 1234,
            info: None,
            m: sample(),
        };
        let n = crate::net::frame::encode_body(&MetricsMsg::Update(Box::new(u)))
            .unwrap()
            .len();
        assert!(n < 200, "update is {n} bytes");
    }

    /// A busy node: two slices, three entry points with spread-out latencies, two instances
    /// each, requests waiting. Still one datagram, within DESIGN §7's ~400 bytes a second.
    #[test]
    fn an_update_with_traffic_fits_the_budget() {
        use super::super::requests::{Outcome, Recorder};
        let r = Recorder::new();
        for (slice, entry, ms) in [
            ("shop/web", "home", [0.8, 2.5, 4.0, 9.0, 14.0, 45.0]),
            ("shop/web", "checkout", [3.0, 6.0, 12.0, 25.0, 60.0, 180.0]),
            (
                "infer/llm",
                "generate",
                [90.0, 140.0, 280.0, 450.0, 900.0, 1_800.0],
            ),
        ] {
            for (i, ms) in ms.iter().enumerate() {
                for _ in 0..(40 + i * 7) {
                    r.record(
                        slice,
                        entry,
                        Some(i as u32 % 2),
                        if i == 5 {
                            Outcome::ServerError(503)
                        } else {
                            Outcome::Answered(200)
                        },
                        std::time::Duration::from_secs_f64(ms / 1000.0),
                    );
                }
            }
        }
        r.waiting("infer/llm", 3);
        let (traffic, waiting) = r.take();
        assert_eq!(traffic.len(), 3);
        let mut m = sample();
        m.traffic = traffic;
        m.waiting = waiting;
        let u = MetricsUpdate {
            node: 3,
            seq: 1234,
            info: None,
            m,
        };
        let n = crate::net::frame::encode_body(&MetricsMsg::Update(Box::new(u)))
            .unwrap()
            .len();
        println!("an update with three busy entry points is {n} bytes");
        assert!(n < 400, "update is {n} bytes");
    }
}
