//! A fixed cluster for the renderers' tests, the console's (`tui/fixture.rs`) seen through the
//! CLI: three nodes (`n1` leads, `gpu-box` has a GPU, `n3` is draining and suspect), the
//! blueprint `shop` with two slices, decisions in every interesting state, a few events, the
//! model. Times are relative to [`NOW`].

use crate::admin::protocol::{
    BlueprintView, HistoryView, InstanceView, MemberView, MetricsView, ModelBenchView,
    NodeMetricsView, PlanView, PointView, RolloutActView, RolloutStart, RolloutView, SeriesView,
    SliceTraffic, SliceTrafficView, StatusView, TokenView, TrafficView,
};
use crate::admin::protocol::{GpuHealthNote, SlicePower};
use crate::config::ModelFormat;
use crate::controller::model::{FileInfo, ModelState, ModelStatus, Pulled};
use crate::deploy::logs::LogChunk;
use crate::deploy::plan::PlanStep;
use crate::domain::*;
use crate::metrics::gpu::GpuSample;
use crate::metrics::update::{AnomalyFlag, DiskSample, NetSample, NodeMetrics, ProcessSample};

pub use crate::view::fixture::NOW;
use crate::view::fixture::{decision, scale};

/// The members as `n1` sees them; `n3` is unreachable.
pub fn members() -> Vec<MemberView> {
    let mut m = crate::view::fixture::members();
    let n3 = &mut m[2];
    n3.reachable = Some(false);
    n3.last_contact_ms = Some(3_200);
    n3.matched_index = Some(117);
    m
}

/// `aether status` on `n1`; `paused` pauses the controller 5 s before [`NOW`].
pub fn status(paused: bool) -> StatusView {
    crate::view::fixture::status(paused, members())
}

/// The newest audit records, oldest first.
pub fn events() -> Vec<AuditRecord> {
    vec![
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
    ]
}

/// A join token for two nodes, valid for an hour from [`NOW`].
pub fn token() -> TokenView {
    TokenView {
        token: "aether1.c-e2a72f3c.t-7f3a.3q2nXq0gU5o6bqzCZk1yVw".into(),
        id: "t-7f3a".into(),
        expires_at: Some(NOW + 3_600_000),
        uses: 2,
    }
}

/// Join tokens in each state at [`NOW`].
pub fn tokens() -> Vec<crate::admin::protocol::TokenInfo> {
    let t = |id: &str, created_ago: u64, expires: Option<i64>, left: u32, total: u32, revoked| {
        crate::admin::protocol::TokenInfo {
            id: id.into(),
            created_at: NOW - created_ago,
            expires_at: expires.map(|e| (NOW as i64 + e) as u64),
            uses_left: left,
            uses_total: total,
            revoked,
        }
    };
    vec![
        t("4be1a09c55d2", 600_000, Some(3_000_000), 2, 3, false),
        t("81f0c3aa9e17", 7_200_000, Some(-3_600_000), 1, 1, false),
        t("a3d95e02b7c4", 86_400_000, None, 0, 1, false),
        t("f07b6d1e2c38", 120_000, Some(3_480_000), 1, 1, true),
    ]
}

fn series(name: &str, value: f32, trend: Option<f32>, min: f32, max: f32) -> SeriesView {
    SeriesView {
        name: name.into(),
        value,
        trend_1m: trend,
        min_1m: Some(min),
        max_1m: Some(max),
    }
}

fn node_metrics(id: NodeId, name: &str, cpu: f32, mem: f32, gpu: bool) -> NodeMetricsView {
    let mem_total = 16u64 << 30;
    let gpus = if gpu {
        vec![GpuSample {
            index: 0,
            name: "NVIDIA H100".into(),
            util: 0.81,
            mem_used: 30 << 30,
            mem_total: 80 << 30,
            temp_c: 74.0,
            power_w: 412.0,
            processes: vec![(4_002, 29 << 30)],
            slowdown_c: 87.0,
            xid_errors: 0,
            last_xid: 0,
            ecc_uncorrected: 0,
            throttle: 0,
        }]
    } else {
        Vec::new()
    };
    let detail = NodeMetrics {
        at: NOW - 400,
        cpu,
        cores: vec![(cpu * 100.0) as u8, (cpu * 80.0) as u8, 12, 3],
        mem_used: (mem_total as f32 * mem) as u64,
        mem_total,
        swap_used: 0,
        swap_total: 2 << 30,
        load: [cpu * 4.0, cpu * 3.5, cpu * 3.0],
        disks: vec![DiskSample {
            mount: "/".into(),
            read_bps: 12_000.0,
            write_bps: 340_000.0,
            free_bytes: 61 << 30,
            total_bytes: 100 << 30,
        }],
        nets: vec![NetSample {
            iface: "eth0".into(),
            rx_bps: 1.5e6,
            tx_bps: 2.0e5,
        }],
        gpus,
        procs: vec![ProcessSample {
            pid: 4_000 + id as u32,
            cpu: 0.42,
            rss: 180 << 20,
        }],
        traffic: Vec::new(),
        waiting: Vec::new(),
        listen_errors: Vec::new(),
    };
    let mut s = vec![
        series("cpu", cpu, Some(0.08), cpu - 0.1, cpu + 0.02),
        series("mem", mem, Some(-0.01), mem - 0.01, mem + 0.01),
        series("swap", 0.0, None, 0.0, 0.0),
        series("load1", cpu * 4.0, Some(0.3), cpu * 3.0, cpu * 4.2),
        series("disk_read", 12_000.0, Some(-3_000.0), 0.0, 20_000.0),
        series(
            "disk_write",
            340_000.0,
            Some(10_000.0),
            200_000.0,
            400_000.0,
        ),
        series("disk_used", 0.39, Some(0.0), 0.39, 0.39),
        series("net_rx", 1.5e6, Some(2.0e5), 1.2e6, 1.6e6),
        series("net_tx", 2.0e5, Some(-1.0e4), 1.8e5, 2.2e5),
    ];
    if gpu {
        s.extend([
            series("gpu0_util", 0.81, Some(0.05), 0.7, 0.86),
            series("gpu0_mem", 0.375, Some(0.0), 0.375, 0.375),
            series("gpu0_temp", 74.0, Some(2.0), 71.0, 75.0),
            series("gpu0_power", 412.0, Some(-8.0), 390.0, 430.0),
        ]);
    }
    NodeMetricsView {
        id,
        name: name.into(),
        member: true,
        health: if name == "n3" {
            Health::Suspect
        } else {
            Health::Ready
        },
        sample_age_ms: if name == "n3" { 3_500 } else { 700 },
        gpu: if gpu {
            "gpu: 0 NVIDIA H100".into()
        } else if name == "n3" {
            "gpu: unavailable (libnvidia-ml.so.1 not found)".into()
        } else {
            "gpu: none".into()
        },
        gpu_health: GpuHealthNote {
            gpus: u32::from(gpu),
            unavailable: (name == "n3").then(|| "libnvidia-ml.so.1 not found".into()),
            findings: Vec::new(),
            margin_c: gpu.then_some(13.0),
        },
        series: s,
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
        carbon: None,
        carbon_error: None,
        detail,
    }
}

/// `aether metrics` with carbon signals: n1 reads a forecast, n3's source is not JSON.
pub fn metrics_carbon() -> MetricsView {
    use crate::metrics::carbon::{CarbonFormat, CarbonSignal, CarbonWindow};
    let mut m = metrics();
    m.nodes[0].carbon = Some(CarbonSignal {
        grams: 452.4,
        zone: "DE".into(),
        format: CarbonFormat::ElectricityMapsForecast,
        forecast: vec![
            CarbonWindow {
                at: NOW + 1_800_000,
                until: NOW + 3_600_000,
                grams: 180.0,
            },
            CarbonWindow {
                at: NOW + 3_600_000,
                until: NOW + 7_200_000,
                grams: 96.6,
            },
        ],
    });
    m.nodes[2].carbon_error = Some(
        "carbon source '/etc/aether/carbon.json': not JSON (line 1, column 1): expected value at line 1 column 1".into(),
    );
    m
}

/// `aether metrics` on `n1`: every node.
pub fn metrics() -> MetricsView {
    MetricsView {
        seen_by: "n1".into(),
        leader: Some("n1".into()),
        term: 3,
        snapshot_age_ms: Some(300),
        interval_ms: 1_000,
        nodes: vec![
            node_metrics(1, "n1", 0.42, 0.55, false),
            node_metrics(2, "gpu-box", 0.12, 0.31, true),
            node_metrics(3, "n3", 0.95, 0.92, false),
        ],
        history: None,
        energy: vec![
            SlicePower {
                slice: "ml/train".into(),
                instances: 1,
                cpu_cores: 0.9,
                cpu_watts_estimate: 4.5,
                gpus: 1,
                gpu_watts: 412.0,
            },
            SlicePower {
                slice: "shop/web".into(),
                instances: 3,
                cpu_cores: 1.2,
                cpu_watts_estimate: 6.0,
                gpus: 0,
                gpu_watts: 0.0,
            },
        ],
        cpu_watts_per_core: 5.0,
    }
}

/// `aether metrics --node gpu-box`.
pub fn node_metrics_view() -> MetricsView {
    MetricsView {
        nodes: vec![node_metrics(2, "gpu-box", 0.12, 0.31, true)],
        energy: Vec::new(),
        ..metrics()
    }
}

/// `aether metrics --node gpu-box --series gpu0_temp --since 5s`.
pub fn history() -> MetricsView {
    let to = NOW / 1000;
    MetricsView {
        history: Some(HistoryView {
            node: "gpu-box".into(),
            series: "gpu0_temp".into(),
            from: to - 4,
            to,
            points: [71.0, 72.5, 74.0, 73.0, 74.0]
                .iter()
                .enumerate()
                .map(|(i, v)| PointView {
                    t: to - 4 + i as u64,
                    value: *v,
                    max: *v,
                })
                .collect(),
        }),
        ..node_metrics_view()
    }
}

/// `aether metrics` on a node that has not received a snapshot yet.
pub fn no_metrics() -> MetricsView {
    MetricsView {
        seen_by: "n2".into(),
        leader: None,
        term: 0,
        snapshot_age_ms: None,
        interval_ms: 1_000,
        nodes: Vec::new(),
        history: None,
        energy: Vec::new(),
        cpu_watts_per_core: 5.0,
    }
}

fn slice(name: &str, instances: u32, max: u32, gpu: u32) -> Slice {
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
            gpu,
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
        pid: node.map(|_| 4_000 + restarts),
        restarts,
        last_exit: (restarts > 0).then(|| "exit status 1".into()),
        health: node.map(|_| "ok".into()),
        since: Some(NOW - 60_000),
        gpus: Vec::new(),
        note: (state == "pending")
            .then(|| "needs cpu=0.5: n1 and gpu-box are full, n3 is draining".into()),
        version: Some(3),
    }
}

/// The stored blueprints: `shop` (web 2/2 active, worker 1/2 with one pending) and `infer`
/// (one GPU slice, its copy handed off from `n3` to `gpu-box`).
pub fn blueprints() -> Vec<BlueprintView> {
    let mut infer_new = instance("infer/llm/0", Some("gpu-box"), "active", 0);
    infer_new.gpus = vec![0];
    let mut infer_old = instance("infer/llm/0", Some("n3"), "stopping", 0);
    infer_old.pid = Some(3_811);
    infer_old.note = Some("hand-off: stops once the copy on gpu-box is active".into());
    vec![
        BlueprintView {
            version: 3,
            applied_at: NOW - 400_000,
            blueprint: Blueprint {
                name: "shop".into(),
                slices: vec![
                    slice("web", 2, 8, 0),
                    Slice {
                        user: Some("www".into()),
                        ..slice("worker", 2, 4, 0)
                    },
                ],
            },
            instances: vec![
                instance("shop/web/0", Some("n1"), "active", 0),
                instance("shop/web/1", Some("gpu-box"), "active", 2),
                instance("shop/worker/0", Some("n1"), "active", 0),
                instance("shop/worker/1", None, "pending", 0),
            ],
            unserved: vec![crate::view::blueprints::Unserved {
                node: "gpu-box".into(),
                port: 8080,
                message: "cannot listen on 0.0.0.0:8080 for shop/web: Address already in use \
                          (os error 98); free the port or set ingress.bind"
                    .into(),
            }],
            flexible: Vec::new(),
        },
        BlueprintView {
            version: 1,
            applied_at: NOW - 7_200_000,
            blueprint: Blueprint {
                name: "infer".into(),
                slices: vec![Slice {
                    user: Some("root".into()),
                    ..slice("llm", 1, 1, 1)
                }],
            },
            instances: vec![infer_new, infer_old],
            unserved: Vec::new(),
            flexible: Vec::new(),
        },
    ]
}

/// `aether blueprint show batch`: two flexible slices, one held for a low-carbon window, one
/// started in it.
pub fn blueprint_flexible() -> Vec<BlueprintView> {
    let rec = |slice: &str, held: Option<&str>, started: Option<(Millis, &str)>| FlexibleRecord {
        blueprint: "batch".into(),
        slice: slice.into(),
        policy: FlexiblePolicy {
            deadline: FlexDeadline::Within(6 * 3_600_000),
            run_ms: 3_600_000,
        },
        instances: 2,
        applied_at: NOW - 600_000,
        latest_start: NOW - 600_000 + 5 * 3_600_000,
        held: held.map(Into::into),
        started: started.map(|(at, l)| (at, l.into())),
    };
    vec![BlueprintView {
        version: 2,
        applied_at: NOW - 600_000,
        blueprint: Blueprint {
            name: "batch".into(),
            slices: vec![
                Slice {
                    min: 0,
                    ..slice("train", 0, 2, 0)
                },
                Slice {
                    min: 0,
                    ..slice("index", 2, 2, 0)
                },
            ],
        },
        instances: vec![
            instance("batch/index/0", Some("n1"), "active", 0),
            instance("batch/index/1", Some("n1"), "active", 0),
        ],
        unserved: Vec::new(),
        flexible: vec![
            rec(
                "train",
                Some(
                    "held: now 452 g/kWh on n1, forecast min 97 g/kWh at 14:00:00Z, latest start 16:50:00Z",
                ),
                None,
            ),
            rec(
                "index",
                None,
                Some((
                    NOW - 120_000,
                    "starts in a low window: now 97 g/kWh on n1, forecast min 97 g/kWh before latest start 16:50:00Z",
                )),
            ),
        ],
    }]
}

/// `aether blueprint apply shop.toml` raising `web` to 3 and changing its command (a canary
/// rollout of v3 → v4, superseding `r-2`); `dry_run` stores nothing.
pub fn plan(dry_run: bool) -> PlanView {
    let step = |action: &str, instance: &str, node: Option<&str>, reason: Option<&str>| PlanStep {
        action: action.into(),
        instance: instance.into(),
        node: node.map(Into::into),
        reason: reason.map(Into::into),
    };
    PlanView {
        blueprint: "shop".into(),
        previous_version: Some(3),
        version: (!dry_run).then_some(4),
        dry_run,
        steps: vec![
            step("keep", "shop/web/0", Some("n1"), None),
            step("keep", "shop/web/1", Some("gpu-box"), None),
            step("start", "shop/web/2", Some("n1"), None),
            step("keep", "shop/worker/0", Some("n1"), None),
            step(
                "pending",
                "shop/worker/1",
                None,
                Some("needs cpu=0.5: n1 and gpu-box are full, n3 is draining"),
            ),
        ],
        rollouts: vec![RolloutStart {
            rollout: (!dry_run).then(|| "r-3".into()),
            target: "shop/web".into(),
            strategy: Strategy::Canary,
            from: 3,
            to: 4,
            plan: "1 canary with 10% of the requests, then 1 at a time".into(),
            copies: 2,
            supersedes: Some("r-2".into()),
        }],
    }
}

/// Decisions, newest first: d-12 pending (grace running), d-11 vetoed, d-10 applied.
pub fn decisions() -> Vec<Decision> {
    let review = ReviewRecord {
        verdict: "approve".into(),
        adjust_to: None,
        reason: "CPU has stayed high for half a minute and the forecast rises; two more web instances fit.".into(),
        reviewer: "model (f16, 1 thread)".into(),
        latency_ms: 2_140,
    };
    let mut drain = decision(
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
    );
    drain.rule = "node-suspect".into();
    drain.layers = vec!["rules:node-suspect".into(), "safety".into()];
    drain.reasoning = vec!["n3 sent no metrics update for 3.2 s (suspect)".into()];
    drain.inputs = vec![("last_update_ms".into(), "3200".into())];
    vec![
        decision(
            12,
            scale("web", 2, 4),
            DecisionStatus::Pending {
                deadline: NOW + 12_000,
            },
            Some(review.clone()),
        ),
        drain,
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
    ]
}

fn file_info() -> FileInfo {
    FileInfo {
        path: "/var/lib/aether/models/model.gguf".into(),
        size: 270_898_752,
        arch: "llama".into(),
        name: "SmolLM2 135M Instruct".into(),
        quant: "Q8_0×211 F32×61".into(),
        blocks: 30,
        width: 576,
        context: 8_192,
        vocab: 49_152,
    }
}

/// The model on `n1`: loaded, nine reviews done.
pub fn model() -> ModelStatus {
    ModelStatus {
        state: ModelState::Ready,
        path: "/var/lib/aether/models/model.gguf".into(),
        file: Some(file_info()),
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
        last_review: Some("approve: CPU has stayed high for half a minute".into()),
        last_text: None,
    }
}

/// A model file that is there but not loaded (this node does not lead).
pub fn idle_model() -> ModelStatus {
    ModelStatus {
        state: ModelState::Idle,
        file: None,
        load_ms: None,
        prefix_tokens: 0,
        reviews: 0,
        timeouts: 0,
        replaced_reasons: 0,
        chooser: String::new(),
        last_latency_ms: None,
        last_prompt_tokens: None,
        prefill_tok_s: None,
        decode_tok_s: None,
        last_review: None,
        last_text: None,
        ..model()
    }
}

/// `aether model bench --seconds 10`.
pub fn bench() -> ModelBenchView {
    ModelBenchView {
        reviews: 6,
        failed: 1,
        p50_ms: 1_480,
        p95_ms: 2_310,
        status: ModelStatus {
            reviews: 15,
            ..model()
        },
    }
}

/// `aether model review FILE` of the example situation.
pub fn review() -> crate::controller::model::engine::ReviewView {
    crate::controller::model::engine::ReviewView {
        verdict: "reject".into(),
        adjust_to: None,
        reason: "The copies crash on OutOfMemoryError; more copies would crash too.".into(),
        replaced: false,
        chooser: "head".into(),
        scores: vec![
            ("approve".into(), -2.31),
            ("reject".into(), -0.14),
            ("adjust".into(), -2.87),
        ],
        candidates: vec![
            "approve".into(),
            "reject".into(),
            "adjust to 3".into(),
            "adjust to 5".into(),
        ],
        latency_ms: 812,
        prompt_tokens: 171,
        prefill_ms: 466,
        generated: 16,
        decode_ms: 331,
        budget_ms: 3_000,
        text: "Now 16:02 UTC.\nProposal: scale_up shop/web from 2 to 4 (rule cpu-high).\nLogs (2 lines):\n  shop/web/1 8s ago: java.lang.OutOfMemoryError: Java heap space (x2)\nRisks: none.".into(),
    }
}

/// `aether model pull` of a known file.
pub fn pulled() -> Pulled {
    Pulled {
        info: file_info(),
        sha256: "5f1a0d2c9e8b7a6f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a098f7e".into(),
        known: Some("SmolLM2 135M Instruct, Q8_0".into()),
        source: "https://example.invalid/smollm2-135m-instruct-q8_0.gguf".into(),
    }
}

/// Two instances' new output.
pub fn logs() -> Vec<LogChunk> {
    vec![
        LogChunk {
            instance: "shop/web/0".into(),
            node: "n1".into(),
            data: "Serving HTTP on 0.0.0.0 port 41010\nGET / 200\n".into(),
            next: 52,
        },
        LogChunk {
            instance: "shop/web/1".into(),
            node: "gpu-box".into(),
            data: "Serving HTTP on 0.0.0.0 port 41010\n".into(),
            next: 35,
        },
    ]
}

/// `aether traffic` on `n1`: `shop/web` busy (three entry points, two instances), `infer/llm`
/// scaled to zero with requests waiting, `shop/worker` asked for by name but without a service.
pub fn traffic() -> TrafficView {
    TrafficView {
        seen_by: "n1".into(),
        snapshot_age_ms: Some(300),
        window_secs: 10,
        slices: vec![
            SliceTrafficView {
                slice: "infer/llm".into(),
                port: Some(9000),
                traffic: SliceTraffic {
                    slice: "infer/llm".into(),
                    waiting: 3,
                    last_call_at: Some(NOW - 2_460_000),
                    entries: vec![crate::admin::protocol::EntryTraffic {
                        name: "generate".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            },
            SliceTrafficView {
                slice: "shop/web".into(),
                port: Some(8080),
                traffic: crate::view::fixture::web_traffic(),
            },
            SliceTrafficView {
                slice: "shop/worker".into(),
                port: None,
                traffic: SliceTraffic {
                    slice: "shop/worker".into(),
                    ..Default::default()
                },
            },
        ],
    }
}

/// `aether traffic` where no slice declares a service.
pub fn no_traffic() -> TrafficView {
    TrafficView {
        slices: Vec::new(),
        ..traffic()
    }
}

/// The rollouts of `shop`, newest first (`r-3` in progress, `r-2` rolled back, `r-1` done).
pub fn rollouts() -> Vec<RolloutView> {
    crate::view::fixture::rollout_views()
}

/// `aether rollout promote shop/web` during `r-3`'s analysis.
pub fn promoted() -> RolloutActView {
    let mut r = rollouts().remove(0);
    r.step = "replace".into();
    r.step_since = NOW;
    r.promotable = false;
    r.traffic = "by copies".into();
    r.history.push(crate::view::rollouts::HistoryLine {
        at: NOW,
        what: "promoted by uid:1000@n1: replacing the rest".into(),
    });
    RolloutActView {
        target: "shop/web".into(),
        op: "promote".into(),
        rollout: Some(r),
        version: None,
    }
}
