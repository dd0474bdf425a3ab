//! `/metrics` in the Prometheus text exposition format (version 0.0.4): per-node gauges from
//! this node's cluster snapshot; this node's own health (Raft position, peer reachability,
//! pipeline and transport counters); the requests through this node's ingress (counters and a
//! duration histogram per slice and entry point); and, from [`Extra`], instances by state,
//! per slice its counts, bounds and restarts, decisions by status, recorded and open, capped
//! slices, reviews by verdict and their latency, and the language model.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::pipeline::Pipeline;
use super::requests::{BUCKETS_MS, TrafficTotal};
use crate::domain::{Decision, Health, InstanceState, InstanceStatus};
use crate::net::NetStats;
use crate::raft::status::StatusView;

/// What `/metrics` shows beyond the pipeline's own: read by the caller from the replicated store
/// and from the layers above metrics (the language model lives in the controller).
#[derive(Debug, Clone, Default)]
pub struct Extra {
    /// Every reported instance status (one per copy of an instance on a node).
    pub instances: Vec<InstanceStatus>,
    /// Stored decisions per status word (`pending`, `applied` …; see [`decision_counts`]).
    pub decisions: BTreeMap<String, u64>,
    /// This node's language model; `None`: not known.
    pub model: Option<ModelGauges>,
    /// The slices and the controller, from the replicated store; `None`: not known.
    pub controller: Option<ControllerGauges>,
}

/// The slices' bounds and the controller's figures, as plain numbers, from the replicated
/// store (every node shows the same).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ControllerGauges {
    /// Per `blueprint/slice`: desired, min and max instances.
    pub slices: BTreeMap<String, (u32, u32, u32)>,
    /// Decisions recorded since the cluster began (the newest decision's id).
    pub recorded: u64,
    /// Open decisions (pending and proposed), and how long the oldest has been open (seconds).
    pub open: u64,
    pub oldest_open_seconds: Option<f64>,
    /// Slices the controller would scale past a bound but cannot: `blueprint/slice`, the bound
    /// (`max` or `min`) and the count it wanted.
    pub capped: Vec<(String, String, Option<u32>)>,
    /// Stored decisions' reviews per verdict (`approve`, `timeout`, `skipped` …).
    pub reviews: BTreeMap<String, u64>,
    /// Latency of the newest stored reviews that ran (up to [`REVIEW_SAMPLE`]), seconds.
    pub review_p50_seconds: Option<f64>,
    pub review_p95_seconds: Option<f64>,
    /// The leader's model, the one that reviews: the leader's name and its state (one of
    /// [`MODEL_STATES`]), as the leader last reported it.
    pub leader_model: Option<(String, String)>,
}

/// Every sleep-and-wake state, so that each node has a series per state.
const POWER_STATES: [crate::domain::PowerState; 5] = [
    crate::domain::PowerState::Awake,
    crate::domain::PowerState::Sleeping,
    crate::domain::PowerState::Asleep,
    crate::domain::PowerState::Waking,
    crate::domain::PowerState::Down,
];

/// How many of the newest reviews the latency quantiles cover.
pub const REVIEW_SAMPLE: usize = 100;

/// The `q` quantile (0–1) of `values` (nearest rank), if there are any.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// The language model's figures, as plain numbers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelGauges {
    /// One of [`MODEL_STATES`].
    pub state: String,
    /// How long loading took, seconds.
    pub load_seconds: Option<f64>,
    /// The last review's latency, seconds.
    pub last_latency_seconds: Option<f64>,
    /// Reviews made since the node started.
    pub reviews: u64,
    /// Reviews that missed their deadline.
    pub timeouts: u64,
    /// Reviews whose generated reason was replaced by a plain one (it cited numbers the
    /// situation does not hold).
    pub replaced_reasons: u64,
}

/// The model's states, as `/metrics` labels them.
pub const MODEL_STATES: [&str; 6] = ["disabled", "absent", "idle", "loading", "ready", "failed"];

/// Every decision status word, so that each has a series (zero when none).
const DECISION_STATUSES: [&str; 8] = [
    "proposed",
    "pending",
    "applied",
    "vetoed",
    "rejected",
    "superseded",
    "failed",
    "expired",
];

/// Every instance state, so that each slice has a series per state (zero when none).
const INSTANCE_STATES: [InstanceState; 7] = [
    InstanceState::Loading,
    InstanceState::Activating,
    InstanceState::Active,
    InstanceState::Unhealthy,
    InstanceState::Backoff,
    InstanceState::Stopping,
    InstanceState::Waiting,
];

/// Decisions counted by their status word.
pub fn decision_counts(decisions: &[Decision]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for d in decisions {
        *out.entry(d.status.word().to_string()).or_default() += 1;
    }
    out
}

/// Content type of the exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Escape a label value (backslash, double quote, newline).
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Format a sample value as Prometheus reads it.
fn num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if (v as f32) as f64 == v {
        // Values measured as f32 print at f32 precision (0.81, not 0.8100000023841858).
        format!("{}", v as f32)
    } else {
        format!("{v}")
    }
}

/// Accumulates metric families: each family's HELP and TYPE once, then its samples.
#[derive(Default)]
struct Out {
    text: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
        if samples.is_empty() {
            return;
        }
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        for (labels, v) in samples {
            if labels.is_empty() {
                let _ = writeln!(self.text, "{name} {}", num(*v));
            } else {
                let _ = writeln!(self.text, "{name}{{{labels}}} {}", num(*v));
            }
        }
    }

    fn gauge(&mut self, name: &str, help: &str, samples: &[(String, f64)]) {
        self.family(name, "gauge", help, samples)
    }

    fn counter(&mut self, name: &str, help: &str, samples: &[(String, f64)]) {
        self.family(name, "counter", help, samples)
    }
}

fn one(v: f64) -> Vec<(String, f64)> {
    vec![(String::new(), v)]
}

/// The value of the first sample of metric `name` in a scrape (for tests and benchmarks that
/// read a node's figures back).
pub fn sample_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Render everything for one scrape.
pub fn render(p: &Pipeline, status: &StatusView, net: &NetStats, extra: &Extra) -> String {
    let mut o = Out::default();
    let now = Instant::now();
    let watts_per_core = p.cpu_watts_per_core();
    p.with_state(|st| {
        let v = &st.view;
        let age = v.age(now);
        o.gauge(
            "aether_metrics_snapshot_age_seconds",
            "Age of this node's latest cluster metrics snapshot.",
            &age.map(|a| one(a.as_secs_f64())).unwrap_or_default(),
        );
        o.gauge(
            "aether_metrics_history_bytes",
            "Memory held by this node's 2-hour history window (bounded per series).",
            &one(v.window.memory_bytes() as f64),
        );
        o.gauge(
            "aether_metrics_history_series",
            "Series in this node's history window.",
            &one(v.window.len() as f64),
        );
        let Some(snap) = &v.snapshot else { return };
        let age_ms = age.map(|a| a.as_millis() as u64).unwrap_or(0);
        let node_label = |e: &super::update::NodeEntry| format!("node=\"{}\"", esc(&e.name()));
        // (metric, help, series name in NodeMetrics::series)
        const HEADLINE: &[(&str, &str, &str)] = &[
            (
                "aether_node_cpu_ratio",
                "CPU busy over all cores (0-1).",
                "cpu",
            ),
            (
                "aether_node_memory_used_ratio",
                "Memory in use (0-1).",
                "mem",
            ),
            ("aether_node_swap_used_ratio", "Swap in use (0-1).", "swap"),
            ("aether_node_load1", "One-minute load average.", "load1"),
            (
                "aether_node_disk_read_bytes_per_second",
                "Disk reads over all carried mounts.",
                "disk_read",
            ),
            (
                "aether_node_disk_write_bytes_per_second",
                "Disk writes over all carried mounts.",
                "disk_write",
            ),
            (
                "aether_node_disk_used_ratio",
                "Fullest mount's used space (0-1).",
                "disk_used",
            ),
            (
                "aether_node_network_receive_bytes_per_second",
                "Received over all interfaces but loopback.",
                "net_rx",
            ),
            (
                "aether_node_network_transmit_bytes_per_second",
                "Sent over all interfaces but loopback.",
                "net_tx",
            ),
        ];
        let series: Vec<(String, Vec<(String, f32)>)> = snap
            .nodes
            .iter()
            .map(|e| (node_label(e), e.m.series()))
            .collect();
        for (metric, help, name) in HEADLINE {
            let samples: Vec<(String, f64)> = series
                .iter()
                .filter_map(|(l, s)| {
                    s.iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| (l.clone(), *v as f64))
                })
                .collect();
            o.gauge(metric, help, &samples);
        }
        let per_node = |f: &dyn Fn(&super::update::NodeEntry) -> f64| -> Vec<(String, f64)> {
            snap.nodes.iter().map(|e| (node_label(e), f(e))).collect()
        };
        o.gauge(
            "aether_node_memory_total_bytes",
            "Memory installed.",
            &per_node(&|e| e.m.mem_total as f64),
        );
        o.gauge(
            "aether_node_memory_used_bytes",
            "Memory in use.",
            &per_node(&|e| e.m.mem_used as f64),
        );
        o.gauge(
            "aether_node_sample_age_seconds",
            "Age of the node's newest sample as this node sees it.",
            &per_node(&|e| (e.age_ms + age_ms) as f64 / 1000.0),
        );
        o.gauge(
            "aether_node_anomalies",
            "Series of the node flagged as anomalous now.",
            &per_node(&|e| e.anomalies.len() as f64),
        );
        o.gauge(
            "aether_node_gpu_available",
            "1 when NVML works on the node, 0 when GPU metrics are unavailable.",
            &per_node(&|e| f64::from(u8::from(e.info.gpu_unavailable.is_none()))),
        );
        let carbon: Vec<(String, f64)> = snap
            .nodes
            .iter()
            .filter_map(|e| {
                let c = e.info.carbon.as_ref()?;
                Some((
                    format!("{},zone=\"{}\"", node_label(e), esc(&c.zone)),
                    c.grams as f64,
                ))
            })
            .collect();
        o.gauge(
            "aether_carbon_intensity_grams",
            "Carbon intensity of the node's grid now, gCO2eq/kWh ([carbon] source).",
            &carbon,
        );
        let mut health = Vec::new();
        for e in &snap.nodes {
            for h in [Health::Ready, Health::Suspect, Health::Down] {
                health.push((
                    format!("{},state=\"{h}\"", node_label(e)),
                    f64::from(u8::from(e.health == h)),
                ));
            }
        }
        o.gauge(
            "aether_node_health",
            "Liveness as the leader judges it from metrics updates (1 for the current state).",
            &health,
        );
        // From the replicated store: a sleeping node sends no metrics.
        let power: Vec<(String, f64)> = status
            .members
            .iter()
            .flat_map(|m| {
                let now = m
                    .power
                    .as_ref()
                    .map_or(crate::domain::PowerState::Awake, |p| p.state);
                POWER_STATES.iter().map(move |s| {
                    (
                        format!("node=\"{}\",state=\"{s}\"", esc(&m.name)),
                        f64::from(u8::from(now == *s)),
                    )
                })
            })
            .collect();
        o.gauge(
            "aether_node_power_state",
            "Where the node stands in sleep and wake (1 for the current state; asleep: suspended).",
            &power,
        );
        type GpuField = fn(&super::gpu::GpuSample) -> f64;
        const GPU: &[(&str, &str, GpuField)] = &[
            ("aether_gpu_utilization_ratio", "GPU busy (0-1).", |g| {
                g.util as f64
            }),
            ("aether_gpu_memory_used_bytes", "GPU memory in use.", |g| {
                g.mem_used as f64
            }),
            (
                "aether_gpu_memory_total_bytes",
                "GPU memory installed.",
                |g| g.mem_total as f64,
            ),
            ("aether_gpu_temperature_celsius", "GPU temperature.", |g| {
                g.temp_c as f64
            }),
            ("aether_gpu_power_watts", "GPU power draw.", |g| {
                g.power_w as f64
            }),
            (
                "aether_gpu_slowdown_temperature_celsius",
                "Temperature at which the GPU slows itself down (NaN: unknown).",
                |g| g.slowdown_c as f64,
            ),
            (
                "aether_gpu_xid_errors",
                "Critical XID errors seen since the node process started.",
                |g| g.xid_errors as f64,
            ),
            (
                "aether_gpu_ecc_uncorrected_errors",
                "Uncorrected ECC errors since the driver loaded (volatile).",
                |g| g.ecc_uncorrected as f64,
            ),
            (
                "aether_gpu_throttle_reasons",
                "Why clocks are held back, as bits: 1 power cap, 2 hardware slowdown, 4 thermal, 8 power brake.",
                |g| g.throttle as f64,
            ),
        ];
        for (metric, help, field) in GPU {
            let samples: Vec<(String, f64)> = snap
                .nodes
                .iter()
                .flat_map(|e| {
                    e.m.gpus
                        .iter()
                        .map(move |g| (format!("{},gpu=\"{}\"", node_label(e), g.index), field(g)))
                })
                .collect();
            o.gauge(metric, help, &samples);
        }
        let mut power = Vec::new();
        for sp in super::energy::slice_power(snap, &extra.instances, watts_per_core) {
            let slice = esc(&sp.slice);
            power.push((format!("slice=\"{slice}\",source=\"gpu\""), sp.gpu_watts));
            power.push((
                format!("slice=\"{slice}\",source=\"cpu_estimate\""),
                sp.cpu_watts_estimate,
            ));
        }
        o.gauge(
            "aether_slice_power_watts",
            "Power of the slice's active instances now: source gpu as NVML measures the GPUs they hold, cpu_estimate as the cores they use x gpu.cpu_watts_per_core (an estimate).",
            &power,
        );
    });

    let n = &status.node;
    o.gauge(
        "aether_raft_term",
        "Current Raft term.",
        &one(n.term as f64),
    );
    o.gauge(
        "aether_raft_is_leader",
        "1 when this node is the Raft leader.",
        &one(f64::from(u8::from(n.role == "leader"))),
    );
    o.gauge(
        "aether_raft_has_leader",
        "1 when this node knows a leader.",
        &one(f64::from(u8::from(status.leader.is_some()))),
    );
    o.gauge(
        "aether_raft_commit_index",
        "Highest log index known committed.",
        &one(n.commit_index.unwrap_or(0) as f64),
    );
    o.gauge(
        "aether_raft_applied_index",
        "Highest log index applied to the state machine.",
        &one(n.applied_index as f64),
    );
    o.gauge(
        "aether_raft_last_log_index",
        "Highest log index stored.",
        &one(n.last_log_index.unwrap_or(0) as f64),
    );
    o.gauge(
        "aether_raft_snapshot_index",
        "Log index covered by the latest Raft snapshot.",
        &one(n.snapshot_index.unwrap_or(0) as f64),
    );
    o.gauge(
        "aether_ready",
        "1 when the node is ready (what /readyz says).",
        &one(f64::from(u8::from(n.ready))),
    );
    let peers: Vec<&crate::raft::status::MemberView> = status
        .members
        .iter()
        .filter(|m| m.id != n.id && m.reachable.is_some())
        .collect();
    o.gauge(
        "aether_peer_reachable",
        "1 when this node heard from the peer within the last second (only peers it talks to).",
        &peers
            .iter()
            .map(|m| {
                (
                    format!("peer=\"{}\"", esc(&m.name)),
                    f64::from(u8::from(m.reachable == Some(true))),
                )
            })
            .collect::<Vec<_>>(),
    );
    let c = |a: &std::sync::atomic::AtomicU64| one(a.load(Ordering::Relaxed) as f64);
    o.counter(
        "aether_metrics_bytes_sent_total",
        "Metrics pipeline payload bytes sent (updates, views, relayed views).",
        &c(&net.oneway_bytes_sent),
    );
    o.counter(
        "aether_metrics_bytes_received_total",
        "Metrics pipeline payload bytes received.",
        &c(&net.oneway_bytes_received),
    );
    o.counter(
        "aether_metrics_messages_failed_total",
        "Metrics messages that could not be sent (peer unreachable) or arrived undecodable.",
        &c(&net.oneway_failed),
    );
    let s = &p.stats;
    o.counter(
        "aether_metrics_updates_sent_total",
        "Updates this node pushed to the leader.",
        &c(&s.updates_sent),
    );
    o.counter(
        "aether_metrics_updates_received_total",
        "Updates this node received as leader.",
        &c(&s.updates_received),
    );
    o.counter(
        "aether_metrics_snapshots_sent_total",
        "View messages this node sent as leader (full or delta, direct or to a relay).",
        &c(&s.snapshots_sent),
    );
    o.counter(
        "aether_metrics_snapshots_received_total",
        "Views (full or delta) this node took from the leader or a relay.",
        &c(&s.snapshots_received),
    );
    o.counter(
        "aether_metrics_updates_misdirected_total",
        "Updates that reached this node while it was not the leader (during a leader change).",
        &c(&s.updates_misdirected),
    );
    o.counter(
        "aether_metrics_snapshots_stale_total",
        "Snapshots ignored as older than the one held.",
        &c(&s.snapshots_stale),
    );
    o.gauge(
        "aether_metrics_snapshot_bytes",
        "Size of the latest full snapshot built or received.",
        &c(&s.snapshot_bytes),
    );
    o.gauge(
        "aether_metrics_view_bytes",
        "Size of the latest view message (a delta, or a full snapshot) built or received.",
        &c(&s.view_bytes),
    );
    o.counter(
        "aether_metrics_views_relayed_total",
        "Views this node forwarded as a relay (one per target).",
        &c(&s.views_relayed),
    );
    o.counter(
        "aether_metrics_resyncs_total",
        "Full views this node asked for (a gap in its deltas), or sent as leader on request.",
        &c(&s.resyncs),
    );
    o.counter(
        "aether_transport_bytes_sent_total",
        "Request/response bytes sent (Raft, admin, joins).",
        &c(&net.bytes_sent),
    );
    o.counter(
        "aether_transport_bytes_received_total",
        "Request/response bytes received.",
        &c(&net.bytes_received),
    );
    o.counter(
        "aether_transport_refused_total",
        "Connections refused for lack of a cluster certificate.",
        &c(&net.refused),
    );
    o.counter(
        "aether_transport_bad_frames_total",
        "Frames or one-way messages that did not decode.",
        &c(&net.bad_frames),
    );
    requests(&mut o, &p.recorder().totals(), &p.recorder().waiting_now());
    workloads(&mut o, extra);
    advisor(&mut o, p.leader_advice().as_ref());
    o.text
}

/// `slice="…",entry="…"`.
fn slice_entry(slice: &str, entry: &str) -> String {
    format!("slice=\"{}\",entry=\"{}\"", esc(slice), esc(entry))
}

/// This node's ingress: counters and the duration histogram per slice and entry point, and
/// the requests waiting per slice.
fn requests(o: &mut Out, totals: &[((String, String), TrafficTotal)], waiting: &[(String, u32)]) {
    let per = |f: &dyn Fn(&TrafficTotal) -> f64| -> Vec<(String, f64)> {
        totals
            .iter()
            .map(|((s, e), t)| (slice_entry(s, e), f(t)))
            .collect()
    };
    o.counter(
        "aether_requests_total",
        "Requests through this node's ingress, per slice and entry point.",
        &per(&|t| t.calls as f64),
    );
    o.counter(
        "aether_request_errors_total",
        "Requests through this node's ingress that failed (5xx, no instance reachable, timeout).",
        &per(&|t| t.errors as f64),
    );
    let name = "aether_request_duration_seconds";
    if !totals.is_empty() {
        let _ = writeln!(
            o.text,
            "# HELP {name} Duration of requests through this node's ingress, to the response's head."
        );
        let _ = writeln!(o.text, "# TYPE {name} histogram");
    }
    for ((s, e), t) in totals {
        let labels = slice_entry(s, e);
        let mut seen = 0u64;
        for (i, le) in BUCKETS_MS.iter().enumerate() {
            seen += t.hist.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(
                o.text,
                "{name}_bucket{{{labels},le=\"{}\"}} {seen}",
                num(le / 1000.0)
            );
        }
        let _ = writeln!(o.text, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", t.calls);
        let _ = writeln!(o.text, "{name}_sum{{{labels}}} {}", num(t.seconds));
        let _ = writeln!(o.text, "{name}_count{{{labels}}} {}", t.calls);
    }
    o.gauge(
        "aether_requests_waiting",
        "Requests waiting on this node for an instance of the slice (none ready, or scaled to zero).",
        &waiting
            .iter()
            .map(|(s, n)| (format!("slice=\"{}\"", esc(s)), f64::from(*n)))
            .collect::<Vec<_>>(),
    );
}

/// The strategic layer as the leader reports it: requests by result, and the items of its
/// latest advice by kind. Nothing when no leader reports one (it is off).
fn advisor(o: &mut Out, a: Option<&crate::domain::AdviceView>) {
    let Some(a) = a else { return };
    let leader = format!("leader=\"{}\"", esc(&a.node));
    o.counter(
        "aether_advisor_requests_total",
        "Requests of the leader's strategic layer to its endpoint, by result (ok, invalid: \
         refused by validation, failed, timeout), since the leader's node started.",
        &[
            ("ok", a.ok),
            ("invalid", a.invalid),
            ("failed", a.failed),
            ("timeout", a.timeouts),
        ]
        .map(|(r, n)| (format!("{leader},result=\"{r}\""), n as f64)),
    );
    o.gauge(
        "aether_advice_items",
        "Items in the strategic layer's latest valid advice.",
        &[(leader.clone(), a.items.len() as f64)],
    );
    o.gauge(
        "aether_advice_age_seconds",
        "Seconds since the latest valid advice arrived.",
        &a.at
            .map(|at| one(crate::domain::now_millis().saturating_sub(at) as f64 / 1000.0))
            .unwrap_or_default(),
    );
}

/// Instances by slice and state, decisions by status, the language model.
fn workloads(o: &mut Out, extra: &Extra) {
    let mut per: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
    for i in &extra.instances {
        let slice = i
            .instance
            .rsplit_once('/')
            .map_or(i.instance.as_str(), |(s, _)| s);
        *per.entry(slice)
            .or_default()
            .entry(i.state.to_string())
            .or_default() += 1;
    }
    let mut samples = Vec::new();
    for (slice, states) in &per {
        for st in INSTANCE_STATES {
            let st = st.to_string();
            let n = states.get(&st).copied().unwrap_or(0);
            samples.push((format!("slice=\"{}\",state=\"{st}\"", esc(slice)), n as f64));
        }
    }
    o.gauge(
        "aether_instances",
        "Copies of instances as their nodes report them, per slice and state (this node's replica).",
        &samples,
    );
    let mut words: Vec<&str> = DECISION_STATUSES.to_vec();
    words.extend(
        extra
            .decisions
            .keys()
            .map(String::as_str)
            .filter(|w| !DECISION_STATUSES.contains(w)),
    );
    o.gauge(
        "aether_decisions",
        "Stored controller decisions per status (the store keeps the newest 10,000).",
        &words
            .iter()
            .map(|w| {
                (
                    format!("status=\"{}\"", esc(w)),
                    extra.decisions.get(*w).copied().unwrap_or(0) as f64,
                )
            })
            .collect::<Vec<_>>(),
    );
    slices(o, extra);
    if let Some(c) = &extra.controller {
        controller(o, c);
    }
    let Some(m) = &extra.model else { return };
    o.gauge(
        "aether_model_loaded",
        "1 when this node's language model is loaded and reviewing.",
        &one(f64::from(u8::from(m.state == "ready"))),
    );
    o.gauge(
        "aether_model_state",
        "This node's language model: 1 for its current state.",
        &MODEL_STATES
            .iter()
            .map(|s| (format!("state=\"{s}\""), f64::from(u8::from(m.state == *s))))
            .collect::<Vec<_>>(),
    );
    o.gauge(
        "aether_model_load_seconds",
        "How long loading the language model took.",
        &m.load_seconds.map(one).unwrap_or_default(),
    );
    o.gauge(
        "aether_model_last_review_seconds",
        "Latency of the language model's last review.",
        &m.last_latency_seconds.map(one).unwrap_or_default(),
    );
    o.counter(
        "aether_model_reviews_total",
        "Reviews the language model made on this node.",
        &one(m.reviews as f64),
    );
    o.counter(
        "aether_model_review_timeouts_total",
        "Reviews that missed their deadline.",
        &one(m.timeouts as f64),
    );
    o.counter(
        "aether_model_reasons_replaced_total",
        "Reviews whose reason cited numbers the situation does not hold, replaced by a plain one.",
        &one(m.replaced_reasons as f64),
    );
}

/// Per slice: desired, min, max and active instances, and restarts.
fn slices(o: &mut Out, extra: &Extra) {
    let slice_of = |i: &InstanceStatus| {
        i.instance
            .rsplit_once('/')
            .map_or(i.instance.clone(), |(s, _)| s.to_string())
    };
    let mut active: BTreeMap<String, u64> = BTreeMap::new();
    let mut restarts: BTreeMap<String, u64> = BTreeMap::new();
    let known = extra.controller.as_ref().map(|c| &c.slices);
    for s in known.into_iter().flat_map(|k| k.keys()) {
        active.insert(s.clone(), 0);
        restarts.insert(s.clone(), 0);
    }
    for i in &extra.instances {
        let s = slice_of(i);
        *active.entry(s.clone()).or_default() += u64::from(i.state == InstanceState::Active);
        *restarts.entry(s).or_default() += u64::from(i.restarts);
    }
    let per = |m: &BTreeMap<String, u64>| {
        m.iter()
            .map(|(s, n)| (format!("slice=\"{}\"", esc(s)), *n as f64))
            .collect::<Vec<_>>()
    };
    if let Some(k) = known {
        let bound = |f: fn(&(u32, u32, u32)) -> u32| {
            k.iter()
                .map(|(s, v)| (format!("slice=\"{}\"", esc(s)), f64::from(f(v))))
                .collect::<Vec<_>>()
        };
        o.gauge(
            "aether_slice_desired_instances",
            "Instances the slice's blueprint wants now (aether scale and the controller set it).",
            &bound(|v| v.0),
        );
        o.gauge(
            "aether_slice_min_instances",
            "The slice's min: the controller never scales below it.",
            &bound(|v| v.1),
        );
        o.gauge(
            "aether_slice_max_instances",
            "The slice's max: the controller never scales above it.",
            &bound(|v| v.2),
        );
    }
    o.gauge(
        "aether_slice_active_instances",
        "Copies of the slice's instances reported active.",
        &per(&active),
    );
    o.counter(
        "aether_slice_restarts_total",
        "Restarts of the slice's current instances, as their supervisors count them.",
        &per(&restarts),
    );
}

/// The controller's decisions, capped slices and reviews.
fn controller(o: &mut Out, c: &ControllerGauges) {
    o.counter(
        "aether_decisions_recorded_total",
        "Decisions the controller recorded since the cluster began (the newest decision id).",
        &one(c.recorded as f64),
    );
    o.gauge(
        "aether_decisions_open",
        "Decisions waiting for their grace deadline or an operator (pending and proposed).",
        &one(c.open as f64),
    );
    o.gauge(
        "aether_decisions_open_oldest_seconds",
        "How long the oldest open decision has waited.",
        &c.oldest_open_seconds.map(one).unwrap_or_default(),
    );
    // Every slice gets a series (0 when not capped), so an alert can watch each.
    let capped: Vec<(String, f64)> = c
        .slices
        .keys()
        .map(|s| {
            let cap = c.capped.iter().find(|(t, _, _)| t == s);
            (
                format!(
                    "slice=\"{}\",bound=\"{}\"",
                    esc(s),
                    cap.map_or("max", |(_, b, _)| b.as_str())
                ),
                f64::from(u8::from(cap.is_some())),
            )
        })
        .collect();
    o.gauge(
        "aether_slice_capped",
        "1 while the controller wants the slice past its max (or min) and cannot.",
        &capped,
    );
    o.gauge(
        "aether_slice_capped_wanted_instances",
        "The count the controller wanted for a capped slice when it last said so.",
        &c.capped
            .iter()
            .filter_map(|(s, _, w)| Some((format!("slice=\"{}\"", esc(s)), f64::from((*w)?))))
            .collect::<Vec<_>>(),
    );
    o.gauge(
        "aether_reviews",
        "Stored decisions' reviews per verdict (approve, reject, adjust, timeout, error, skipped).",
        &c.reviews
            .iter()
            .map(|(v, n)| (format!("verdict=\"{}\"", esc(v)), *n as f64))
            .collect::<Vec<_>>(),
    );
    if let Some((node, state)) = &c.leader_model {
        o.gauge(
            "aether_leader_model_state",
            "The leader's language model, the one that reviews: 1 for its current state.",
            &MODEL_STATES
                .iter()
                .map(|s| {
                    (
                        format!("leader=\"{}\",state=\"{s}\"", esc(node)),
                        f64::from(u8::from(state == s)),
                    )
                })
                .collect::<Vec<_>>(),
        );
    }
    o.gauge(
        "aether_review_latency_p50_seconds",
        "Median review latency over the newest stored reviews that ran (up to 100).",
        &c.review_p50_seconds.map(one).unwrap_or_default(),
    );
    o.gauge(
        "aether_review_latency_p95_seconds",
        "95th percentile of review latency over the newest stored reviews that ran (up to 100).",
        &c.review_p95_seconds.map(one).unwrap_or_default(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::requests::{Outcome, Recorder};
    use std::time::Duration;

    /// The ingress's and the store's families of a busy node, with a label that needs escaping.
    fn busy() -> String {
        let r = Recorder::new();
        for ms in [0.1, 0.3, 4.0, 60.0, 40_000.0] {
            r.record(
                "shop/web",
                "home",
                Some(0),
                Outcome::Answered(200),
                Duration::from_secs_f64(ms / 1000.0),
            );
        }
        r.record(
            "shop/web",
            "we\"ird\\",
            None,
            Outcome::Timeout,
            Duration::from_secs(5),
        );
        r.waiting("shop/web", 2);
        let status = |instance: &str, state| InstanceStatus {
            instance: instance.into(),
            node: 1,
            placement: 1,
            state,
            port: 8000,
            pid: Some(1),
            restarts: 0,
            last_exit: None,
            health: "ok".into(),
            since: 0,
            gpus: Vec::new(),
        };
        let extra = Extra {
            instances: vec![
                status("shop/web/0", InstanceState::Active),
                status("shop/web/1", InstanceState::Active),
                status("shop/web/2", InstanceState::Backoff),
            ],
            decisions: BTreeMap::from([("applied".into(), 3), ("pending".into(), 1)]),
            model: Some(ModelGauges {
                state: "ready".into(),
                load_seconds: Some(0.41),
                last_latency_seconds: Some(2.14),
                reviews: 9,
                timeouts: 1,
                replaced_reasons: 2,
            }),
            controller: Some(ControllerGauges {
                slices: BTreeMap::from([
                    ("shop/web".into(), (3, 1, 8)),
                    ("hot/burn".into(), (3, 1, 3)),
                ]),
                recorded: 1042,
                open: 1,
                oldest_open_seconds: Some(12.0),
                capped: vec![("hot/burn".into(), "max".into(), Some(27))],
                reviews: BTreeMap::from([("approve".into(), 7), ("timeout".into(), 2)]),
                review_p50_seconds: Some(1.8),
                review_p95_seconds: Some(2.9),
                leader_model: Some(("n1".into(), "ready".into())),
            }),
        };
        let mut o = Out::default();
        requests(&mut o, &r.totals(), &r.waiting_now());
        workloads(&mut o, &extra);
        o.text
    }

    #[test]
    fn the_advisor_is_exposed_when_the_leader_reports_it() {
        let mut o = Out::default();
        advisor(&mut o, None);
        assert!(o.text.is_empty(), "off: nothing");
        let item = crate::domain::AdviceItem {
            id: "a-1".into(),
            kind: crate::domain::AdviceKind::Note,
            target: String::new(),
            count: None,
            when: None,
            reason: "quiet".into(),
        };
        let a = crate::domain::AdviceView {
            node: "n1".into(),
            items: vec![item.clone(), item],
            ok: 12,
            timeouts: 1,
            ..Default::default()
        };
        advisor(&mut o, Some(&a));
        for line in [
            "aether_advisor_requests_total{leader=\"n1\",result=\"ok\"} 12",
            "aether_advisor_requests_total{leader=\"n1\",result=\"timeout\"} 1",
            "aether_advice_items{leader=\"n1\"} 2",
            "# TYPE aether_advisor_requests_total counter",
        ] {
            assert!(
                o.text.lines().any(|l| l == line),
                "{line} not in:\n{}",
                o.text
            );
        }
    }

    #[test]
    fn requests_instances_decisions_and_the_model_are_exposed() {
        let text = busy();
        let line = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"))
                .to_string()
        };
        let home = "slice=\"shop/web\",entry=\"home\"";
        assert_eq!(
            line(&format!("aether_requests_total{{{home}}}"))
                .rsplit(' ')
                .next(),
            Some("5")
        );
        assert_eq!(
            line("aether_request_errors_total{slice=\"shop/web\",entry=\"we\\\"ird\\\\\"}"),
            "aether_request_errors_total{slice=\"shop/web\",entry=\"we\\\"ird\\\\\"} 1"
        );
        // Buckets are cumulative, in seconds, and end with +Inf = the count.
        let bucket = |le: &str| {
            line(&format!(
                "aether_request_duration_seconds_bucket{{{home},le=\"{le}\"}}"
            ))
            .rsplit(' ')
            .next()
            .unwrap()
            .to_string()
        };
        assert_eq!(bucket("0.00025"), "1");
        assert_eq!(bucket("0.005"), "3");
        assert_eq!(bucket("30"), "4");
        assert_eq!(bucket("+Inf"), "5");
        let sum: f64 = line(&format!("aether_request_duration_seconds_sum{{{home}}}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - 40.0644).abs() < 1e-9, "{sum}");
        assert!(text.contains("aether_requests_waiting{slice=\"shop/web\"} 2\n"));
        assert!(text.contains("aether_instances{slice=\"shop/web\",state=\"active\"} 2\n"));
        assert!(text.contains("aether_instances{slice=\"shop/web\",state=\"backoff\"} 1\n"));
        assert!(text.contains("aether_instances{slice=\"shop/web\",state=\"loading\"} 0\n"));
        assert!(text.contains("aether_decisions{status=\"applied\"} 3\n"));
        assert!(text.contains("aether_decisions{status=\"vetoed\"} 0\n"));
        assert!(text.contains("aether_model_loaded 1\n"));
        assert!(text.contains("aether_model_state{state=\"ready\"} 1\n"));
        assert!(text.contains("aether_model_last_review_seconds 2.14\n"));
        assert!(text.contains("aether_model_reviews_total 9\n"));
        assert!(text.contains("aether_model_reasons_replaced_total 2\n"));
    }

    /// What an operator alerts on: slices' counts and restarts, decisions recorded and open,
    /// capped slices, reviews by verdict and their latency.
    #[test]
    fn slices_decisions_capped_and_reviews_are_exposed() {
        let text = busy();
        for family in [
            "# TYPE aether_slice_desired_instances gauge\n",
            "# TYPE aether_slice_restarts_total counter\n",
            "# TYPE aether_decisions_recorded_total counter\n",
            "# TYPE aether_slice_capped gauge\n",
            "# TYPE aether_review_latency_p95_seconds gauge\n",
        ] {
            assert!(text.contains(family), "no {family} in:\n{text}");
        }
        for sample in [
            "aether_slice_desired_instances{slice=\"shop/web\"} 3\n",
            "aether_slice_max_instances{slice=\"hot/burn\"} 3\n",
            "aether_slice_active_instances{slice=\"shop/web\"} 2\n",
            "aether_slice_active_instances{slice=\"hot/burn\"} 0\n",
            "aether_slice_restarts_total{slice=\"shop/web\"} 0\n",
            "aether_decisions_recorded_total 1042\n",
            "aether_decisions_open 1\n",
            "aether_decisions_open_oldest_seconds 12\n",
            "aether_slice_capped{slice=\"hot/burn\",bound=\"max\"} 1\n",
            "aether_slice_capped{slice=\"shop/web\",bound=\"max\"} 0\n",
            "aether_slice_capped_wanted_instances{slice=\"hot/burn\"} 27\n",
            "aether_reviews{verdict=\"timeout\"} 2\n",
            "aether_review_latency_p95_seconds 2.9\n",
            "aether_leader_model_state{leader=\"n1\",state=\"ready\"} 1\n",
            "aether_leader_model_state{leader=\"n1\",state=\"idle\"} 0\n",
        ] {
            assert!(text.contains(sample), "no {sample} in:\n{text}");
        }
        assert_eq!(quantile(&[3.0, 1.0, 2.0, 4.0], 0.5), Some(2.0));
        assert_eq!(quantile(&[3.0, 1.0, 2.0, 4.0], 0.95), Some(4.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    /// `promtool check metrics` accepts the families above (it is in Debian's `prometheus`;
    /// `tests/metrics` checks a whole scrape of a running node, installing it when missing).
    #[test]
    fn promtool_accepts_the_request_and_workload_families() {
        use std::io::Write as _;
        use std::process::{Command, Stdio};
        let text = busy();
        let Ok(mut child) = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        else {
            eprintln!("promtool is not installed (apt-get install prometheus): not checked here");
            return;
        };
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool refused:\n{}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn values_and_labels_are_written_as_prometheus_reads_them() {
        assert_eq!(num(f64::NAN), "NaN");
        assert_eq!(num(f64::INFINITY), "+Inf");
        assert_eq!(num(0.25), "0.25");
        assert_eq!(num(3.0), "3");
        assert_eq!(num(0.81f32 as f64), "0.81");
        let text = "# HELP a_total x\na_total 7\nab{node=\"n1\"} 2.5\n";
        assert_eq!(sample_value(text, "a_total"), Some(7.0));
        assert_eq!(sample_value(text, "ab"), Some(2.5));
        assert_eq!(sample_value(text, "a"), None, "a prefix is not a match");
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        let mut o = Out::default();
        o.gauge("x_ratio", "Help.", &[("node=\"n1\"".into(), 0.5)]);
        o.gauge("empty", "Left out.", &[]);
        assert_eq!(
            o.text,
            "# HELP x_ratio Help.\n# TYPE x_ratio gauge\nx_ratio{node=\"n1\"} 0.5\n"
        );
    }
}
