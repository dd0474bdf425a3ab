//! The evaluation set of `benches/model.rs`: fixed situations, each with the verdict an
//! experienced operator expects.
//!
//! Each situation is what the controller would hand the reviewer: the proposal after the safety
//! bounds (rule, action, reasoning and inputs worded as `brain.rs` words them), the cluster at a
//! fixed `NOW` and the latest decisions. The numbers hold together: a slice's `desired` is the
//! proposal's `from`, `cpu_used` is cpu per instance × active × cores reserved, and for every
//! `Adjust` the count that fits lies within the slice's bounds, within 4 instances (the default
//! `max_step`) of `from`, and among the counts `prompt::candidates` offers.

use aether::controller::brain::{NodeView, Proposal, SliceView, World};
use aether::controller::review::Situation;
use aether::domain::{
    Action, ControllerMode, Decision, DecisionStatus, Millis, NodeState, Outcome,
};

/// One fixed situation and the verdict expected of the reviewer.
pub struct Scenario {
    /// Short, unique, at most 40 characters (the bench prints it in a column).
    pub name: &'static str,
    pub expected: Expected,
    pub situation: Situation,
}

/// The verdict an operator expects; for `Adjust` any count counts (the situations are built so
/// that only one direction makes sense).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Expected {
    Approve,
    Reject,
    Adjust,
}

/// A fixed "now" (2023-11-14T22:13:20Z).
const NOW: Millis = 1_700_000_000_000;
const MIN: u64 = 60_000;
/// `controller.horizon` (5 minutes) as the brain names it in `forecast_in_…` and its sentences.
const HORIZON: &str = "5m0s";
/// `settings.target_cpu` and `settings.tolerance` of the default rules.
const TARGET_CPU: f64 = 0.60;
const TOLERANCE: f64 = 0.10;
/// The default grace window of `guarded` mode.
const GRACE: u64 = 15_000;
const OPERATOR: &str = "uid:1000@n1";

fn f2(v: f64) -> String {
    format!("{v:.2}")
}

// ---------------------------------------------------------------------------------------------
// Slices and their proposals

/// Slice `blueprint/slice` with `instances` desired and active, each reserving `reserved` cores
/// and using `per_instance` of them.
fn slice(
    target: &str,
    instances: u32,
    (min, max): (u32, u32),
    reserved: f64,
    per_instance: f64,
) -> SliceView {
    let (blueprint, name) = target.split_once('/').expect("blueprint/slice");
    SliceView {
        blueprint: blueprint.into(),
        slice: name.into(),
        desired: instances,
        min,
        max,
        active: instances,
        cpu_reserved: reserved,
        cpu_used: Some(per_instance * instances as f64 * reserved),
        ..SliceView::default()
    }
}

/// The same slice with measured calls and latency against a latency target.
fn with_latency(mut s: SliceView, calls_per_s: f64, latency_ms: f64, target_ms: f64) -> SliceView {
    s.calls_per_s = Some(calls_per_s);
    s.latency_ms = Some(latency_ms);
    s.target_latency_ms = Some(target_ms);
    s
}

fn per_instance(s: &SliceView) -> f64 {
    s.cpu_used.unwrap_or(0.0) / (s.active.max(1) as f64 * s.cpu_reserved)
}

fn target_cpu(s: &SliceView) -> f64 {
    s.target_cpu.unwrap_or(TARGET_CPU)
}

/// A rule condition on cpu per instance against the target and its band, as `describe` words it:
/// `cpu per instance 0.85 > target 0.60 (band limit 0.66) for 44s`.
fn cpu_vs_target(s: &SliceView, above: bool, tolerance: f64, held_s: u64) -> String {
    let t = target_cpu(s);
    let (op, limit) = if above {
        (">", t * (1.0 + tolerance))
    } else {
        ("<", t * (1.0 - tolerance))
    };
    format!(
        "cpu per instance {} {op} target {} (band limit {}) for {held_s}s",
        f2(per_instance(s)),
        f2(t),
        f2(limit)
    )
}

/// `cpu-high` held for `held_s`.
fn hot(s: &SliceView, held_s: u64) -> String {
    cpu_vs_target(s, true, TOLERANCE, held_s)
}

/// `cpu-high` of a rule set without a band (`tolerance = 0`).
fn hot_no_band(s: &SliceView, held_s: u64) -> String {
    cpu_vs_target(s, true, 0.0, held_s)
}

/// `cpu-low` held for `held_s`.
fn cold(s: &SliceView, held_s: u64) -> String {
    cpu_vs_target(s, false, TOLERANCE, held_s)
}

/// `cpu-low` of a rule set without a band.
fn cold_no_band(s: &SliceView, held_s: u64) -> String {
    cpu_vs_target(s, false, 0.0, held_s)
}

/// `cpu-saturated` held for `held_s`.
fn saturated(s: &SliceView, held_s: u64) -> String {
    format!(
        "cpu per instance {} > 0.90 for {held_s}s",
        f2(per_instance(s))
    )
}

/// `latency-high` held for `held_s`.
fn slow(s: &SliceView, held_s: u64) -> String {
    let (v, t) = (
        s.latency_ms.unwrap_or(0.0),
        s.target_latency_ms.unwrap_or(0.0),
    );
    format!(
        "latency p95 {v:.0} ms > target {t:.0} ms (band limit {:.0} ms) for {held_s}s",
        t * (1.0 + TOLERANCE)
    )
}

/// The proportional step on `value` against `target`:
/// `6 instances bring it to the target: ceil(4 × 0.85 / 0.60)`.
fn bring(s: &SliceView, value: f64, target: f64) -> String {
    let a = s.active.max(1);
    let want = (a as f64 * value / target - 1e-9).ceil() as u32;
    format!(
        "{want} instances bring it to the target: ceil({a} × {} / {})",
        f2(value),
        f2(target)
    )
}

/// The proportional step on cpu per instance.
fn bring_cpu(s: &SliceView) -> String {
    bring(s, per_instance(s), target_cpu(s))
}

/// The proportional step on latency.
fn bring_latency(s: &SliceView) -> String {
    bring(
        s,
        s.latency_ms.unwrap_or(0.0),
        s.target_latency_ms.unwrap_or(1.0),
    )
}

/// The proportional scale-in: `3 instances are enough: the highest recommendation of the last 3m0s`.
fn enough(n: u32) -> String {
    format!("{n} instances are enough: the highest recommendation of the last 3m0s")
}

/// A fixed or percentage rule step: `rule step 100%: 3 → 6`.
fn step(by: &str, from: u32, to: u32) -> String {
    format!("rule step {by}: {from} → {to}")
}

/// A scale proposal on `s`, from its desired count to `to`, with the inputs the brain records.
fn scale(s: &SliceView, rule: &str, to: u32, reasoning: Vec<String>) -> Proposal {
    let mut inputs = vec![
        (
            "instances".to_string(),
            format!("{} desired, {} active", s.desired, s.active),
        ),
        ("bounds".into(), format!("{}..={}", s.min, s.max)),
        ("target_cpu".into(), f2(target_cpu(s))),
    ];
    if let Some(u) = s.cpu_used {
        inputs.push(("cpu_used".into(), f2(u)));
        if s.active > 0 {
            inputs.push(("cpu_per_instance".into(), f2(per_instance(s))));
        }
    }
    if let Some(v) = s.calls_per_s {
        inputs.push(("calls_per_s".into(), f2(v)));
        if s.active > 0 {
            inputs.push(("calls_per_instance".into(), f2(v / s.active as f64)));
        }
        inputs.push(("target_calls_per_instance".into(), "100.00".into()));
    }
    if let Some(v) = s.latency_ms {
        inputs.push(("latency_p95_ms".into(), format!("{v:.0}")));
    }
    if let Some(v) = s.target_latency_ms {
        inputs.push(("target_latency_ms".into(), format!("{v:.0}")));
    }
    let layers = if rule == "forecast" {
        vec!["forecast".to_string()]
    } else {
        vec![format!("rules:{rule}")]
    };
    Proposal {
        rule: rule.into(),
        action: Action::Scale {
            blueprint: s.blueprint.clone(),
            slice: s.slice.clone(),
            from: s.desired,
            to,
        },
        layers,
        reasoning,
        inputs,
    }
}

/// Add the forecaster's numbers (cores now, trend in cores a minute, cores at the horizon) to a
/// scale proposal, the `forecast` layer when a rule's count was changed by it, and the forecast
/// sentence when no reasoning line speaks of the forecast yet.
fn forecast(
    mut p: Proposal,
    level: f64,
    trend_per_min: f64,
    ahead: f64,
    seasonal: bool,
) -> Proposal {
    p.inputs.push(("forecast_level".into(), f2(level)));
    p.inputs
        .push(("forecast_trend_per_min".into(), f2(trend_per_min)));
    p.inputs.push((format!("forecast_in_{HORIZON}"), f2(ahead)));
    p.inputs
        .push(("forecast_seasonal".into(), seasonal.to_string()));
    if p.rule != "forecast" && p.reasoning.iter().any(|r| r.starts_with("forecast load")) {
        p.layers.push("forecast".into());
    }
    if !p.reasoning.iter().any(|r| r.starts_with("forecast ")) {
        p.reasoning.push(format!(
            "forecast {:+.0}% in {HORIZON} ({} → {} cores{})",
            (ahead / level - 1.0) * 100.0,
            f2(level),
            f2(ahead),
            if seasonal {
                ", with the daily profile"
            } else {
                ""
            }
        ));
    }
    p
}

fn scale_action(target: &str, from: u32, to: u32) -> Action {
    let (blueprint, slice) = target.split_once('/').expect("blueprint/slice");
    Action::Scale {
        blueprint: blueprint.into(),
        slice: slice.into(),
        from,
        to,
    }
}

// ---------------------------------------------------------------------------------------------
// Nodes and their proposals

/// `n` ready, live members n1..n<n>, moderately loaded; with GPUs at ordinary temperatures
/// (65–80 °C) when `gpu`.
fn nodes(n: u64, gpu: bool) -> Vec<NodeView> {
    (1..=n)
        .map(|i| NodeView {
            id: i,
            name: format!("n{i}"),
            state: NodeState::Ready,
            live: true,
            cpu: 0.30 + 0.07 * i as f64,
            mem: 0.35 + 0.05 * i as f64,
            gpu_util: gpu.then_some(0.50 + 0.05 * i as f64),
            gpu_temp: gpu.then_some(62.0 + 3.0 * i as f64),
            anomalies: 0,
            drained_by_controller: false,
        })
        .collect()
}

/// Node `id` of `ns`, to change it.
fn at(ns: &mut [NodeView], id: u64) -> &mut NodeView {
    ns.iter_mut().find(|n| n.id == id).expect("node")
}

/// `gpu-hot` on `n`, its GPU above 90 °C for `held_s`.
fn drain(n: &NodeView, held_s: u64) -> Proposal {
    Proposal {
        rule: "gpu-hot".into(),
        action: Action::Drain {
            node: n.id,
            name: n.name.clone(),
        },
        layers: vec!["rules:gpu-hot".into()],
        reasoning: vec![format!(
            "gpu temp {} > 90.00 for {held_s}s",
            f2(n.gpu_temp.unwrap_or(0.0))
        )],
        inputs: n.inputs(),
    }
}

/// `gpu-cooled` on `n`, its GPU below 75 °C for `held_s`.
fn undrain(n: &NodeView, held_s: u64) -> Proposal {
    Proposal {
        rule: "gpu-cooled".into(),
        action: Action::Undrain {
            node: n.id,
            name: n.name.clone(),
        },
        layers: vec!["rules:gpu-cooled".into()],
        reasoning: vec![format!(
            "gpu temp {} < 75.00 for {held_s}s",
            f2(n.gpu_temp.unwrap_or(0.0))
        )],
        inputs: n.inputs(),
    }
}

// ---------------------------------------------------------------------------------------------
// Earlier decisions

fn past(id: u64, at: Millis, rule: &str, action: Action, status: DecisionStatus) -> Decision {
    let mut timeline = vec![(at, "pending".to_string())];
    match &status {
        DecisionStatus::Applied { at, by } => timeline.push((*at, format!("applied by {by}"))),
        DecisionStatus::Vetoed { at, by, reason, .. } => timeline.push((
            *at,
            match reason {
                Some(r) => format!("vetoed by {by}: {r}"),
                None => format!("vetoed by {by}"),
            },
        )),
        _ => {}
    }
    Decision {
        id,
        at,
        by: "n1".into(),
        mode: ControllerMode::Guarded,
        layers: vec![format!("rules:{rule}"), "safety".into()],
        action,
        rule: rule.into(),
        reasoning: vec![],
        inputs: vec![],
        review: None,
        status,
        timeline,
        outcome: None,
    }
}

/// Decision `d-<id>`, made `ago_min` minutes ago and applied after the grace window.
fn applied(id: u64, ago_min: u64, rule: &str, action: Action) -> Decision {
    let at = NOW - ago_min * MIN;
    past(
        id,
        at,
        rule,
        action,
        DecisionStatus::Applied {
            at: at + GRACE,
            by: "controller".into(),
        },
    )
}

/// Decision `d-<id>`, made `ago_min` minutes ago and vetoed by an operator within its grace.
fn vetoed(id: u64, ago_min: u64, rule: &str, action: Action, reason: &str) -> Decision {
    let at = NOW - ago_min * MIN;
    past(
        id,
        at,
        rule,
        action,
        DecisionStatus::Vetoed {
            at: at + 9_000,
            by: OPERATOR.into(),
            reason: Some(reason.into()),
            reverted: None,
        },
    )
}

/// The same decision with its outcome, recorded 3 minutes after it was made.
fn outcome(mut d: Decision, verdict: &str, detail: &str) -> Decision {
    d.outcome = Some(Outcome {
        at: (d.at + 3 * MIN).min(NOW),
        verdict: verdict.into(),
        detail: detail.into(),
    });
    d
}

// ---------------------------------------------------------------------------------------------

fn scenario(
    name: &'static str,
    expected: Expected,
    proposal: Proposal,
    slices: Vec<SliceView>,
    nodes: Vec<NodeView>,
    recent: Vec<Decision>,
) -> Scenario {
    assert!(name.len() <= 40, "scenario name too long: {name}");
    Scenario {
        name,
        expected,
        situation: Situation {
            proposal,
            world: World {
                now: NOW,
                slices,
                nodes,
            },
            recent,
        },
    }
}

/// The evaluation set: 15 approve, 14 reject, 7 adjust.
pub fn scenarios() -> Vec<Scenario> {
    use Expected::{Adjust, Approve, Reject};
    let mut out = Vec::new();

    // ---- Approve: the action fits the load. ------------------------------------------------

    // Hot again after a scale-up that worked, and still rising.
    let s = slice("shop/web", 4, (2, 12), 1.0, 0.82);
    let p = scale(&s, "cpu-high", 6, vec![hot(&s, 17), bring_cpu(&s)]);
    out.push(scenario(
        "still hot after a scale-up that worked",
        Approve,
        forecast(p, 3.28, 0.10, 3.78, false),
        vec![s, slice("shop/api", 3, (2, 10), 1.0, 0.55)],
        nodes(3, false),
        vec![outcome(
            applied(40, 12, "cpu-high", scale_action("shop/web", 2, 4)),
            "as intended",
            "cpu per instance 0.93 → 0.64 (target 0.60) with 4 instances",
        )],
    ));

    let s = slice("shop/api", 3, (2, 10), 1.0, 0.88);
    out.push(scenario(
        "cpu far above target",
        Approve,
        scale(&s, "cpu-high", 5, vec![hot(&s, 21), bring_cpu(&s)]),
        vec![s, slice("shop/web", 4, (2, 12), 1.0, 0.58)],
        nodes(3, false),
        vec![applied(33, 25, "cpu-low", scale_action("media/web", 6, 4))],
    ));

    let s = slice("media/worker", 2, (1, 12), 0.5, 0.97);
    out.push(scenario(
        "saturated slice tripled",
        Approve,
        scale(
            &s,
            "cpu-saturated",
            6,
            vec![saturated(&s, 4), step("200%", 2, 6)],
        ),
        vec![s],
        nodes(4, false),
        vec![],
    ));

    let s = slice("ml/infer", 1, (1, 6), 2.0, 0.99);
    out.push(scenario(
        "saturated single ml instance",
        Approve,
        scale(
            &s,
            "cpu-saturated",
            3,
            vec![saturated(&s, 5), step("200%", 1, 3)],
        ),
        vec![s],
        nodes(2, true),
        vec![],
    ));

    let s = slice("shop/web", 6, (2, 10), 1.0, 0.28);
    let p = scale(&s, "cpu-low", 3, vec![cold(&s, 187), enough(3)]);
    out.push(scenario(
        "measured low load for minutes",
        Approve,
        forecast(p, 1.68, -0.01, 1.63, false),
        vec![s],
        nodes(5, false),
        vec![],
    ));

    let s = slice("ml/infer", 5, (1, 8), 2.0, 0.33);
    out.push(scenario(
        "scale-in long after the scale-up",
        Approve,
        scale(&s, "cpu-low", 3, vec![cold(&s, 240), enough(3)]),
        vec![s],
        nodes(3, true),
        vec![outcome(
            applied(57, 50, "cpu-high", scale_action("ml/infer", 3, 5)),
            "as intended",
            "cpu per instance 0.88 → 0.55 (target 0.60) with 5 instances",
        )],
    ));

    let s = slice("shop/api", 4, (2, 10), 1.0, 0.84);
    out.push(scenario(
        "same action vetoed 2h ago",
        Approve,
        scale(&s, "cpu-high", 6, vec![hot(&s, 30), bring_cpu(&s)]),
        vec![s],
        nodes(3, false),
        vec![vetoed(
            31,
            120,
            "cpu-high",
            scale_action("shop/api", 4, 6),
            "load test, not real traffic",
        )],
    ));

    let s = slice("shop/worker", 2, (1, 6), 1.0, 0.85);
    out.push(scenario(
        "veto was on another slice",
        Approve,
        scale(&s, "cpu-high", 3, vec![hot(&s, 19), bring_cpu(&s)]),
        vec![s, slice("shop/web", 3, (2, 12), 1.0, 0.74)],
        nodes(2, false),
        vec![vetoed(
            63,
            5,
            "cpu-high",
            scale_action("shop/web", 3, 5),
            "deploy in progress",
        )],
    ));

    let mut ns = nodes(4, true);
    {
        let n3 = at(&mut ns, 3);
        n3.gpu_temp = Some(94.0);
        n3.gpu_util = Some(0.97);
    }
    out.push(scenario(
        "gpu overheating, 3 nodes stay ready",
        Approve,
        drain(&ns[2], 131),
        vec![slice("ml/infer", 4, (1, 8), 2.0, 0.58)],
        ns,
        vec![],
    ));

    let mut ns = nodes(6, true);
    {
        let n5 = at(&mut ns, 5);
        n5.gpu_temp = Some(92.0);
        n5.gpu_util = Some(0.99);
        n5.anomalies = 1;
    }
    out.push(scenario(
        "gpu hot on one of six nodes",
        Approve,
        drain(&ns[4], 160),
        vec![slice("ml/infer", 6, (2, 10), 2.0, 0.61)],
        ns,
        vec![applied(118, 30, "cpu-high", scale_action("ml/infer", 4, 6))],
    ));

    let mut ns = nodes(3, true);
    {
        let n2 = at(&mut ns, 2);
        n2.state = NodeState::Drained;
        n2.gpu_temp = Some(61.0);
        n2.gpu_util = Some(0.0);
        n2.cpu = 0.03;
        n2.mem = 0.08;
        n2.drained_by_controller = true;
    }
    out.push(scenario(
        "gpu cooled, undrain",
        Approve,
        undrain(&ns[1], 612),
        vec![slice("ml/infer", 3, (1, 8), 2.0, 0.57)],
        ns,
        vec![applied(
            95,
            48,
            "gpu-hot",
            Action::Drain {
                node: 2,
                name: "n2".into(),
            },
        )],
    ));

    let s = slice("shop/web", 3, (2, 10), 1.0, 0.58);
    let p = scale(
        &s,
        "forecast",
        4,
        vec![
            "forecast load 2.04 cores in 60s exceeds the capacity of 3 instances (3 × 1.00 cores × target 0.60); 4 instances needed, started now to be active in time (lead 60s)"
                .into(),
        ],
    );
    out.push(scenario(
        "forecast-led scale-up, rising trend",
        Approve,
        forecast(p, 1.74, 0.30, 3.24, false),
        vec![s],
        nodes(3, false),
        vec![],
    ));

    let s = slice("media/api", 4, (2, 12), 0.5, 0.75);
    let p = scale(
        &s,
        "cpu-high",
        6,
        vec![
            hot(&s, 22),
            bring_cpu(&s),
            "forecast load 1.75 cores in 45s needs 6 instances; raised from 5".into(),
        ],
    );
    out.push(scenario(
        "cpu high, forecast raises the step",
        Approve,
        forecast(p, 1.50, 0.33, 3.15, true),
        vec![s],
        nodes(4, false),
        vec![],
    ));

    let s = with_latency(
        slice("shop/api", 3, (2, 10), 1.0, 0.63),
        420.0,
        260.0,
        200.0,
    );
    out.push(scenario(
        "latency above target, one more",
        Approve,
        scale(&s, "latency-high", 4, vec![slow(&s, 41), bring_latency(&s)]),
        vec![s],
        nodes(3, false),
        vec![],
    ));

    let s = slice("shop/web", 1, (1, 4), 1.0, 0.80);
    out.push(scenario(
        "one instance on one node, hot",
        Approve,
        scale(&s, "cpu-high", 2, vec![hot(&s, 16), bring_cpu(&s)]),
        vec![s],
        nodes(1, false),
        vec![],
    ));

    // ---- Reject: a veto, flapping, a forecast-only scale-in, or the load does not need it. --

    let s = slice("shop/web", 5, (2, 10), 1.0, 0.61);
    out.push(scenario(
        "no-op: 0.61 against target 0.60",
        Reject,
        scale(&s, "cpu-high", 6, vec![hot_no_band(&s, 16), bring_cpu(&s)]),
        vec![s],
        nodes(3, false),
        vec![],
    ));

    let mut s = slice("media/worker", 6, (2, 12), 0.5, 0.71);
    s.target_cpu = Some(0.70);
    out.push(scenario(
        "no-op: 0.71 against target 0.70",
        Reject,
        scale(&s, "cpu-high", 7, vec![hot_no_band(&s, 20), bring_cpu(&s)]),
        vec![s],
        nodes(4, false),
        vec![],
    ));

    // One fewer of 5 at 0.56 leaves 0.70, above the band: the rule's fixed step overshoots.
    let s = slice("shop/api", 5, (2, 10), 1.0, 0.56);
    out.push(scenario(
        "scale-in would push cpu above band",
        Reject,
        scale(
            &s,
            "cpu-low",
            4,
            vec![cold_no_band(&s, 130), step("1", 5, 4)],
        ),
        vec![s],
        nodes(3, false),
        vec![],
    ));

    let s = slice("shop/worker", 3, (1, 8), 1.0, 0.68);
    out.push(scenario(
        "flapping: up 6m after a scale-in",
        Reject,
        scale(&s, "cpu-high", 4, vec![hot(&s, 15), bring_cpu(&s)]),
        vec![s],
        nodes(2, false),
        vec![applied(70, 6, "cpu-low", scale_action("shop/worker", 4, 3))],
    ));

    let s = slice("media/web", 5, (2, 10), 0.5, 0.46);
    out.push(scenario(
        "flapping: in, up, in again",
        Reject,
        scale(&s, "cpu-low", 4, vec![cold(&s, 125), enough(4)]),
        vec![s],
        nodes(4, false),
        vec![
            applied(76, 13, "cpu-low", scale_action("media/web", 5, 4)),
            applied(81, 7, "cpu-high", scale_action("media/web", 4, 5)),
        ],
    ));

    let s = slice("media/worker", 4, (2, 12), 0.5, 0.85);
    out.push(scenario(
        "same scale-up vetoed 6m ago",
        Reject,
        scale(&s, "cpu-high", 6, vec![hot(&s, 24), bring_cpu(&s)]),
        vec![s],
        nodes(4, false),
        vec![vetoed(
            88,
            6,
            "cpu-high",
            scale_action("media/worker", 4, 6),
            "nightly transcode batch, leave it",
        )],
    ));

    let s = slice("shop/api", 6, (2, 10), 1.0, 0.38);
    out.push(scenario(
        "same scale-in vetoed 3m ago",
        Reject,
        scale(&s, "cpu-low", 4, vec![cold(&s, 200), enough(4)]),
        vec![s],
        nodes(3, false),
        vec![vetoed(
            92,
            3,
            "cpu-low",
            scale_action("shop/api", 6, 4),
            "campaign starts at 23:00",
        )],
    ));

    let mut ns = nodes(5, true);
    {
        let n4 = at(&mut ns, 4);
        n4.gpu_temp = Some(91.0);
        n4.gpu_util = Some(0.98);
    }
    out.push(scenario(
        "same drain vetoed 9m ago",
        Reject,
        drain(&ns[3], 545),
        vec![slice("ml/infer", 5, (1, 8), 2.0, 0.66)],
        ns,
        vec![vetoed(
            101,
            9,
            "gpu-hot",
            Action::Drain {
                node: 4,
                name: "n4".into(),
            },
            "training run finishes at 23:30",
        )],
    ));

    let mut ns = nodes(1, true);
    ns[0].gpu_temp = Some(93.0);
    ns[0].gpu_util = Some(0.96);
    out.push(scenario(
        "drain the only node",
        Reject,
        drain(&ns[0], 125),
        vec![slice("ml/infer", 2, (1, 4), 2.0, 0.70)],
        ns,
        vec![],
    ));

    let mut ns = nodes(3, true);
    {
        let n1 = at(&mut ns, 1);
        n1.gpu_temp = Some(92.0);
        n1.gpu_util = Some(0.95);
    }
    {
        let n2 = at(&mut ns, 2);
        n2.state = NodeState::Drained;
        n2.gpu_temp = Some(55.0);
        n2.gpu_util = Some(0.0);
        n2.cpu = 0.04;
        n2.mem = 0.10;
    }
    {
        let n3 = at(&mut ns, 3);
        n3.state = NodeState::Asleep;
        n3.live = false;
        n3.gpu_temp = None;
        n3.gpu_util = None;
        n3.cpu = 0.0;
        n3.mem = 0.0;
    }
    out.push(scenario(
        "drain leaves no ready node",
        Reject,
        drain(&ns[0], 140),
        vec![slice("ml/infer", 3, (1, 6), 2.0, 0.64)],
        ns,
        vec![],
    ));

    let s = slice("shop/api", 6, (2, 10), 1.0, 0.57);
    let p = scale(
        &s,
        "forecast",
        4,
        vec![format!(
            "forecast load 2.22 cores in {HORIZON} needs 4 instances"
        )],
    );
    out.push(scenario(
        "forecast-only scale-in",
        Reject,
        forecast(p, 3.42, -0.24, 2.22, false),
        vec![s],
        nodes(3, false),
        vec![],
    ));

    let s = slice("media/web", 8, (2, 12), 0.5, 0.55);
    let p = scale(
        &s,
        "forecast",
        5,
        vec![format!(
            "forecast load 1.50 cores in {HORIZON} needs 5 instances, with the daily profile"
        )],
    );
    out.push(scenario(
        "forecast-only scale-in, daily profile",
        Reject,
        forecast(p, 2.20, -0.14, 1.50, true),
        vec![s],
        nodes(5, false),
        vec![],
    ));

    // The last scale-up did not lower cpu per instance: more of the same will not either.
    let s = slice("shop/worker", 4, (1, 8), 1.0, 0.80);
    out.push(scenario(
        "last scale-up not as intended",
        Reject,
        scale(&s, "cpu-high", 6, vec![hot(&s, 26), bring_cpu(&s)]),
        vec![s],
        nodes(3, false),
        vec![outcome(
            applied(110, 9, "cpu-high", scale_action("shop/worker", 2, 4)),
            "not as intended",
            "cpu per instance 0.78 → 0.80 (target 0.60) with 4 instances",
        )],
    ));

    // Latency is high but every instance idles at half the target: instances are not the cause.
    let s = with_latency(
        slice("media/api", 4, (2, 12), 0.5, 0.31),
        950.0,
        480.0,
        300.0,
    );
    out.push(scenario(
        "latency high, cpu half the target",
        Reject,
        scale(&s, "latency-high", 7, vec![slow(&s, 45), bring_latency(&s)]),
        vec![s],
        nodes(4, false),
        vec![],
    ));

    // ---- Adjust: the direction is right, the count is not. ---------------------------------

    // 2 × 0.70 needs 3 (0.47 each); 5 is far more than the load needs.
    let s = slice("shop/worker", 2, (1, 8), 1.0, 0.70);
    out.push(scenario(
        "step 3 where one more is enough",
        Adjust,
        scale(&s, "cpu-high", 5, vec![hot(&s, 16), step("3", 2, 5)]),
        vec![s],
        nodes(3, false),
        vec![],
    ));

    // 3 × 0.74 needs 4 (0.56 each); doubling to 6 overshoots.
    let s = slice("media/web", 3, (2, 12), 0.5, 0.74);
    out.push(scenario(
        "doubling where 4 of 6 suffice",
        Adjust,
        scale(&s, "cpu-high", 6, vec![hot(&s, 18), step("100%", 3, 6)]),
        vec![s],
        nodes(4, false),
        vec![],
    ));

    // 1 × 0.75 of 2 cores needs 2; 4 is double that.
    let s = slice("ml/infer", 1, (1, 6), 2.0, 0.75);
    out.push(scenario(
        "ml step 3 where 2 instances suffice",
        Adjust,
        scale(&s, "cpu-high", 4, vec![hot(&s, 25), step("3", 1, 4)]),
        vec![s],
        nodes(2, true),
        vec![],
    ));

    // 4 × 0.88 needs 6 (0.59 each); 5 leaves 0.70, still above the band.
    let s = slice("shop/api", 4, (2, 10), 1.0, 0.88);
    out.push(scenario(
        "step 1 short of what the load needs",
        Adjust,
        scale(&s, "cpu-high", 5, vec![hot(&s, 20), step("1", 4, 5)]),
        vec![s],
        nodes(3, false),
        vec![],
    ));

    // 6 × 0.27 needs 3 (0.54 each); 2 leaves 0.81.
    let s = slice("shop/web", 6, (2, 10), 1.0, 0.27);
    out.push(scenario(
        "scale-in too deep: 6 to 2",
        Adjust,
        scale(&s, "cpu-low", 2, vec![cold(&s, 190), step("4", 6, 2)]),
        vec![s],
        nodes(4, false),
        vec![],
    ));

    // 5 × 0.35 needs 3 (0.58 each); 2 leaves 0.88, near saturation.
    let s = slice("ml/infer", 5, (1, 8), 2.0, 0.35);
    out.push(scenario(
        "ml scale-in too deep: 5 to 2",
        Adjust,
        scale(&s, "cpu-low", 2, vec![cold(&s, 260), step("60%", 5, 2)]),
        vec![s],
        nodes(3, true),
        vec![],
    ));

    // 8 × 0.36 needs 5 (0.58 each); 4 leaves 0.72, above the band.
    let s = slice("media/api", 8, (2, 12), 0.5, 0.36);
    out.push(scenario(
        "halving where 5 of 8 are needed",
        Adjust,
        scale(&s, "cpu-low", 4, vec![cold(&s, 150), step("50%", 8, 4)]),
        vec![s],
        nodes(5, false),
        vec![],
    ));

    out
}
