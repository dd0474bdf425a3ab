//! A fixed cluster for the console's tests: three nodes (one with a GPU, one draining), a
//! blueprint of two slices, decisions in every interesting state, a few events. Times are
//! relative to [`NOW`].

use crate::admin::protocol::{
    BlueprintView, InstanceView, LiveMetrics, LiveNode, LiveUpdate, NodeHistory, PointView,
    SliceLoad,
};
use crate::config::ModelFormat;
use crate::controller::model::{ModelState, ModelStatus};
use crate::domain::*;
use crate::metrics::update::{AnomalyFlag, ProcessSample};
pub use crate::view::fixture::NOW;
use crate::view::fixture::{decision, members, scale};

fn wave(n: usize, base: f32, amp: f32, phase: f32) -> Vec<f32> {
    (0..n)
        .map(|i| (base + amp * ((i as f32 / 7.0) + phase).sin()).clamp(0.0, 1.0))
        .collect()
}

fn node(id: NodeId, name: &str, cpu: f32, mem: f32, gpu: bool) -> LiveNode {
    LiveNode {
        id,
        name: name.into(),
        health: Health::Ready,
        sample_age_ms: 400,
        cpu,
        mem,
        mem_total: 16 << 30,
        gpu_util: gpu.then_some(0.81),
        gpu_temp: gpu.then_some(74.0),
        gpu: if gpu {
            "gpu: 0 NVIDIA H100".into()
        } else {
            "gpu: none".into()
        },
        net_rx: 1.5e6,
        net_tx: 2.0e5,
        anomalies: if name == "n3" {
            vec![AnomalyFlag {
                series: "cpu".into(),
                value: 0.97,
                median: 0.2,
                z: 6.2,
                reason: "cpu 0.97 is far above its median 0.20 (z 6.2)".into(),
            }]
        } else {
            Vec::new()
        },
        spark: {
            let mut s = vec![
                ("cpu".to_string(), wave(60, cpu, 0.2, id as f32)),
                ("mem".to_string(), wave(60, mem, 0.02, 0.0)),
            ];
            if gpu {
                s.push(("gpu".into(), wave(60, 0.8, 0.15, 1.0)));
            }
            s
        },
        // The instances' processes (see `instance`): shop/web/0 and shop/worker/0 on n1,
        // shop/web/1 on gpu-box.
        procs: match name {
            "n1" => vec![
                ProcessSample {
                    pid: 4010,
                    cpu: 0.42,
                    rss: 180 << 20,
                },
                ProcessSample {
                    pid: 4013,
                    cpu: 0.35,
                    rss: 96 << 20,
                },
            ],
            "gpu-box" => vec![ProcessSample {
                pid: 4012,
                cpu: 1.38,
                rss: 2_400 << 20,
            }],
            _ => Vec::new(),
        },
        carbon: (name == "gpu-box").then(|| {
            "452 g/kWh in 'DE' (electricity-maps-forecast); forecast min 97 g/kWh at 14:00:00Z"
                .into()
        }),
    }
}

fn slice(name: &str, instances: u32, max: u32) -> Slice {
    Slice {
        name: name.into(),
        command: vec!["python3".into(), "-m".into(), "http.server".into()],
        instances,
        min: 1,
        max,
        env: Default::default(),
        resources: Resources {
            cpu: 0.5,
            memory: 256 << 20,
            gpu: 0,
        },
        stop_timeout_ms: 10_000,
        health: None,
        scaling: None,
        service: None,
        update: None,
        user: None,
    }
}

fn instance(key: &str, node: Option<&str>, state: &str, restarts: u32) -> InstanceView {
    InstanceView {
        instance: key.into(),
        node: node.map(Into::into),
        state: state.into(),
        port: node.map(|_| 41_000 + key.len() as u16),
        pid: node.map(|_| 4_000 + key.len() as u32 + restarts),
        restarts,
        last_exit: (restarts > 0).then(|| "exit status 1".into()),
        health: node.map(|_| "ok".into()),
        since: Some(NOW - 60_000),
        gpus: Vec::new(),
        note: (state == "pending").then(|| "needs gpu=1: n1 has 0 GPUs, n3 is draining".into()),
        version: Some(3),
    }
}

/// The first frame of a feed from `n1`; `paused` pauses the controller.
pub fn update(paused: bool) -> LiveUpdate {
    let review = ReviewRecord {
        verdict: "approve".into(),
        adjust_to: None,
        reason: "CPU has stayed high for half a minute and the forecast rises; two more web instances fit.".into(),
        reviewer: "model (f16, 1 thread)".into(),
        latency_ms: 2_140,
    };
    let decisions = vec![
        decision(
            12,
            scale("web", 2, 4),
            DecisionStatus::Pending {
                deadline: NOW + 12_000,
            },
            Some(review.clone()),
        ),
        decision(
            11,
            Action::Drain {
                node: 3,
                name: "n3".into(),
            },
            DecisionStatus::Vetoed {
                at: NOW - 40_000,
                by: "uid:1000@n1".into(),
                reason: Some("n3 is being repaired".into()),
                reverted: None,
            },
            None,
        ),
        decision(
            10,
            scale("worker", 1, 2),
            DecisionStatus::Applied {
                at: NOW - 200_000,
                by: "controller".into(),
            },
            Some(ReviewRecord {
                verdict: "adjust".into(),
                adjust_to: Some(2),
                ..review
            }),
        ),
    ];
    let events = vec![
        AuditRecord {
            seq: 40,
            at: NOW - 400_000,
            actor: "uid:1000@n1".into(),
            what: "apply blueprint 'shop' version 3".into(),
            outcome: "ok".into(),
        },
        AuditRecord {
            seq: 41,
            at: NOW - 40_000,
            actor: "uid:1000@n1".into(),
            what: "veto d-11".into(),
            outcome: "ok".into(),
        },
        AuditRecord {
            seq: 42,
            at: NOW - 10_000,
            actor: "leader:n1".into(),
            what: "node n3 suspect: no metrics update for 3.2 s".into(),
            outcome: "ok".into(),
        },
    ];
    let history = NodeHistory {
        node: "gpu-box".into(),
        range_secs: 900,
        to: NOW / 1000,
        series: ["cpu", "mem", "net_rx", "net_tx", "gpu0_util", "gpu0_temp"]
            .iter()
            .enumerate()
            .map(|(k, name)| {
                let scale = match *name {
                    n if n.starts_with("net") => 2.0e6,
                    "gpu0_temp" => 90.0,
                    _ => 1.0,
                };
                (
                    name.to_string(),
                    wave(900, 0.5, 0.3, k as f32)
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| PointView {
                            t: NOW / 1000 - 899 + i as u64,
                            value: v * scale,
                            max: v * scale,
                        })
                        .collect(),
                )
            })
            .collect(),
        anomalies: vec![AnomalyFlag {
            series: "gpu0_temp".into(),
            value: 84.0,
            median: 61.0,
            z: 5.1,
            reason: "gpu0_temp 84.0 is far above its median 61.0 (z 5.1)".into(),
        }],
    };
    LiveUpdate {
        full: true,
        at: NOW,
        status: Some(Box::new(crate::view::fixture::status(paused, members()))),
        metrics: Some(LiveMetrics {
            leader: Some("n1".into()),
            snapshot_age_ms: Some(300),
            nodes: vec![
                node(1, "n1", 0.42, 0.55, false),
                node(2, "gpu-box", 0.12, 0.31, true),
                node(3, "n3", 0.95, 0.92, false),
            ],
        }),
        blueprints: Some(vec![BlueprintView {
            version: 3,
            applied_at: NOW - 400_000,
            blueprint: Blueprint {
                name: "shop".into(),
                slices: vec![slice("web", 2, 8), slice("worker", 2, 4)],
            },
            instances: vec![
                instance("shop/web/0", Some("n1"), "active", 0),
                instance("shop/web/1", Some("gpu-box"), "active", 2),
                instance("shop/worker/0", Some("n1"), "active", 0),
                instance("shop/worker/1", None, "pending", 0),
            ],
            unserved: Vec::new(),
            flexible: Vec::new(),
        }]),
        loads: Some(vec![
            SliceLoad {
                units: "cores".into(),
                target: "shop/web".into(),
                load: (0..120)
                    .map(|i| (NOW / 1000 - 119 + i, 1.2 + 0.6 * (i as f32 / 120.0)))
                    .collect(),
                forecast: (1..=10)
                    .map(|i| (NOW / 1000 + i * 30, 1.8 + 0.06 * i as f32))
                    .collect(),
                traffic: Some(crate::view::fixture::web_traffic()),
            },
            // A worker takes no requests: load, no traffic.
            SliceLoad {
                units: "cores".into(),
                target: "shop/worker".into(),
                load: (0..120).map(|i| (NOW / 1000 - 119 + i, 0.35)).collect(),
                forecast: Vec::new(),
                traffic: None,
            },
        ]),
        decisions,
        events,
        model: Some(Box::new(ModelStatus {
            state: ModelState::Ready,
            path: "/var/lib/aether/models/model.gguf".into(),
            file: None,
            format: ModelFormat::F16,
            threads: 1,
            load_ms: Some(410),
            prefix_tokens: 472,
            reviews: 9,
            timeouts: 1,
            replaced_reasons: 0,
            chooser: "head".into(),
            last_latency_ms: Some(2_140),
            last_prompt_tokens: Some(153),
            prefill_tok_s: Some(93.0),
            decode_tok_s: Some(41.0),
            last_review: Some("approve".into()),
            last_text: None,
        })),
        history: Some(history),
        // shop/web's canary r-3 runs; shop/worker's last rollout r-1 succeeded.
        rollouts: Some({
            let all = crate::view::fixture::rollouts();
            let (assignments, statuses) = crate::view::fixture::rollout_copies();
            crate::view::rollouts::per_slice(&all)
                .into_iter()
                .map(|r| crate::view::rollouts::rollout_view(r, &assignments, &statuses))
                .collect()
        }),
        advice: None,
    }
}
