//! The one fixed cluster the renderers' tests draw (the console's and the CLI's): `n1` leads,
//! `gpu-box` has a GPU, `n3` is draining; the blueprint `shop`; decisions built on one
//! template. Times are relative to [`NOW`].

use crate::domain::*;
use crate::metrics::requests::{EntryTraffic, SliceTraffic};
use crate::raft::status::{ControlView, LeaderView, LocalView, MemberView, StatusView};

/// 2026-11-22 12:00:00Z.
pub const NOW: Millis = 1_795_262_400_000;

/// A voter, reachable from `n1` 20 ms ago, caught up to index 120.
pub fn member(
    id: NodeId,
    name: &str,
    leader: bool,
    state: NodeState,
    health: Health,
) -> MemberView {
    MemberView {
        id,
        name: name.into(),
        addr: format!("127.0.0.1:74{id}0"),
        role: "voter".into(),
        state,
        leader,
        reachable: Some(true),
        last_contact_ms: Some(20),
        matched_index: Some(120),
        joined_at: NOW - 3_600_000,
        health,
        spot: None,
        power: None,
    }
}

/// The three members as the console shows them.
pub fn members() -> Vec<MemberView> {
    vec![
        member(1, "n1", true, NodeState::Ready, Health::Ready),
        member(2, "gpu-box", false, NodeState::Ready, Health::Ready),
        member(3, "n3", false, NodeState::Draining, Health::Suspect),
    ]
}

/// `aether status` on `n1` with `members`; `paused` pauses the controller 5 s before [`NOW`].
pub fn status(paused: bool, members: Vec<MemberView>) -> StatusView {
    StatusView {
        cluster_id: Some("c-e2a72f3c".into()),
        node: LocalView {
            id: 1,
            name: "n1".into(),
            role: "leader".into(),
            term: 3,
            commit_index: Some(120),
            applied_index: 120,
            last_log_index: Some(120),
            snapshot_index: None,
            ready: true,
        },
        leader: Some(LeaderView {
            id: 1,
            name: "n1".into(),
            addr: "127.0.0.1:7410".into(),
        }),
        term: 3,
        commit_index: Some(120),
        applied_index: 120,
        voters_wanted: 3,
        membership_changing: false,
        members,
        members_seen_by: "n1".into(),
        controller: Some(ControlView {
            mode: ControllerMode::Guarded,
            grace_ms: 15_000,
            paused: paused.then(|| Pause {
                by: "uid:0@n1".into(),
                at: NOW - 5_000,
                reason: Some("maintenance".into()),
            }),
            pending: 1,
            proposed: 0,
            enabled: true,
            reviewer: "model (f16, 1 thread)".into(),
            rules: "built-in".into(),
            capped: Vec::new(),
            leader_reviewer: None,
        }),
        workloads: Some("instances run as 'nobody' (deploy.user) unless their slice names one, root only with deploy.allow_root; clean environment; no_new_privs; cpu and memory limits on (cgroup v1: cpu, memory; OOM kills from memory.oom_control)".into()),
        certs: Vec::new(),
    }
}

/// A decision of `n1` in guarded mode on the `cpu-high` rule, with its reasoning.
pub fn decision(
    id: u64,
    action: Action,
    status: DecisionStatus,
    review: Option<ReviewRecord>,
) -> Decision {
    Decision {
        id,
        at: NOW - (20 - id) * 30_000,
        by: "n1".into(),
        mode: ControllerMode::Guarded,
        layers: vec![
            "rules:cpu-high".into(),
            "safety".into(),
            "review:model".into(),
        ],
        action,
        rule: "cpu-high".into(),
        reasoning: vec![
            "cpu per instance 0.91 > target 0.60 (+10% tolerance) for 34s".into(),
            "the forecast expects 2.4 cores in 5m (now 1.8)".into(),
            "step 2 → 4 within max_step 4 and max=8".into(),
        ],
        inputs: vec![("cpu_per_instance".into(), "0.91".into())],
        review,
        status,
        timeline: vec![(NOW - 30_000, "pending".into())],
        outcome: None,
    }
}

/// Scale `shop/<slice>` from `from` to `to`.
pub fn scale(slice: &str, from: u32, to: u32) -> Action {
    Action::Scale {
        blueprint: "shop".into(),
        slice: slice.into(),
        from,
        to,
    }
}

/// One entry point's traffic.
fn entry(name: &str, calls_per_s: f64, error_rate: f64, p: [f64; 3]) -> EntryTraffic {
    EntryTraffic {
        name: name.into(),
        calls_per_s,
        error_rate,
        p50_ms: Some(p[0]),
        p95_ms: Some(p[1]),
        p99_ms: Some(p[2]),
    }
}

/// `shop/web`'s traffic: busy, a few errors at checkout, called 200 ms before [`NOW`], its two
/// instances sharing the calls.
pub fn web_traffic() -> SliceTraffic {
    SliceTraffic {
        slice: "shop/web".into(),
        calls_per_s: 42.7,
        error_rate: 0.0047,
        p50_ms: Some(3.4),
        p95_ms: Some(21.0),
        p99_ms: Some(88.0),
        waiting: 0,
        last_call_at: Some(NOW - 200),
        entries: vec![
            entry("home", 30.1, 0.0, [2.9, 9.8, 14.0]),
            entry("checkout", 12.2, 0.0164, [6.2, 48.0, 96.0]),
            entry("other", 0.4, 0.0, [0.8, 1.9, 1.9]),
        ],
        instances: vec![(0, 0.52), (1, 0.48)],
    }
}

/// One analysis interval of a canary from `v_from` to `v_to` ending `ago` ms before [`NOW`].
fn interval(
    round: u32,
    ago: Millis,
    canary: (u64, u64, f64),
    stable: (u64, u64, f64),
) -> AnalysisRecord {
    let fail = canary.1 * 100 > canary.0;
    AnalysisRecord {
        round,
        from_at: NOW - ago - 30_000,
        to_at: NOW - ago,
        canary: VersionNumbers {
            calls: canary.0,
            errors: canary.1,
            p99_ms: Some(canary.2),
        },
        stable: VersionNumbers {
            calls: stable.0,
            errors: stable.1,
            p99_ms: Some(stable.2),
        },
        verdict: if fail { "fail" } else { "pass" }.into(),
        detail: if fail {
            format!(
                "error rate {:.1}% over {} requests is above max_error_rate 1.0%",
                canary.1 as f64 * 100.0 / canary.0 as f64,
                canary.0
            )
        } else {
            format!(
                "error rate {:.1}% over {} requests is within max_error_rate 1.0%, p99 {:.0}ms within max_p99 50ms",
                canary.1 as f64 * 100.0 / canary.0.max(1) as f64,
                canary.0,
                canary.2
            )
        },
    }
}

/// A canary policy: one canary with 10% of the requests, analysed every 30 s.
pub fn canary_policy() -> UpdatePolicy {
    UpdatePolicy {
        strategy: Strategy::Canary,
        analysis: Some(AnalysisPolicy {
            interval_ms: 30_000,
            min_requests: 100,
            max_error_rate: 0.01,
            max_p99_ms: Some(50),
        }),
        ..UpdatePolicy::default()
    }
}

/// The kept rollouts, oldest first: `r-1` rolled `shop/worker` v3 → v4 three hours ago;
/// `r-2`, a canary of `shop/web` v4 → v5, went back 45 minutes ago (its analysis failed);
/// `r-3`, a canary of `shop/web` v6 → v7, runs its second analysis interval.
pub fn rollouts() -> Vec<Rollout> {
    let base = |id: u64, slice: &str, from: u64, to: u64, started: Millis| Rollout {
        id,
        blueprint: "shop".into(),
        slice: slice.into(),
        from,
        to,
        policy: UpdatePolicy::default(),
        cause: "applied by uid:1000@n1".into(),
        state: RolloutState::Succeeded,
        step: RolloutStep::Done,
        step_since: started,
        want_to: 2,
        want_from: 0,
        traffic: TrafficSplit::ByCopies,
        progress_at: started,
        started_at: started,
        ended_at: None,
        base: None,
        analysis: Vec::new(),
        reason: None,
        history: Vec::new(),
        rev: 1,
    };
    let t1 = NOW - 10_800_000;
    let r1 = Rollout {
        ended_at: Some(t1 + 95_000),
        history: vec![
            (
                t1,
                "started (applied by uid:1000@n1): v3 → v4, rolling of 2, 1 at a time".into(),
            ),
            (
                t1 + 41_000,
                "shop/worker/2 (v4) healthy; shop/worker/0 (v3) retired".into(),
            ),
            (
                t1 + 95_000,
                "shop/worker/3 (v4) healthy; shop/worker/1 (v3) retired".into(),
            ),
            (t1 + 95_000, "succeeded: 2 of 2 on v4".into()),
        ],
        ..base(1, "worker", 3, 4, t1)
    };
    let t2 = NOW - 3_000_000;
    let why2 = "analysis 2 failed: error rate 7.5% over 412 requests is above max_error_rate 1.0%";
    let r2 = Rollout {
        policy: canary_policy(),
        state: RolloutState::RolledBack { reason: why2.into() },
        step_since: t2 + 290_000,
        ended_at: Some(t2 + 300_000),
        want_to: 0,
        want_from: 2,
        analysis: vec![
            interval(1, 3_000_000 - 200_000, (398, 2, 31.0), (3590, 1, 34.0)),
            interval(2, 3_000_000 - 260_000, (412, 31, 38.0), (3702, 0, 35.0)),
        ],
        reason: Some(why2.into()),
        history: vec![
            (t2, "started (applied by uid:1000@n1): v4 → v5, canary of 2, 1 canary with 10% of the requests".into()),
            (t2 + 140_000, "canary shop/web/2 (v5) healthy: analysis 1 begins with 10% of the requests".into()),
            (t2 + 200_000, "analysis 1 passed: error rate 0.5% over 398 requests".into()),
            (t2 + 260_000, why2.into()),
            (t2 + 260_000, "going back to v4: its copies take all requests, v5 copies stop".into()),
            (t2 + 300_000, "rolled back to v4; v4 stored again as v6".into()),
        ],
        ..base(2, "web", 4, 5, t2)
    };
    let t3 = NOW - 240_000;
    let r3 = Rollout {
        policy: canary_policy(),
        state: RolloutState::Running,
        step: RolloutStep::Analysis { round: 2 },
        step_since: NOW - 40_000,
        want_to: 1,
        want_from: 2,
        traffic: TrafficSplit::Weighted { to_pct: 10 },
        analysis: vec![interval(1, 40_000, (405, 1, 36.0), (3655, 2, 34.0))],
        history: vec![
            (t3, "started (applied by uid:1000@n1): v6 → v7, canary of 2, 1 canary with 10% of the requests".into()),
            (NOW - 70_000, "canary shop/web/2 (v7) healthy: analysis 1 begins with 10% of the requests".into()),
            (NOW - 40_000, "analysis 1 passed: error rate 0.2% over 405 requests".into()),
        ],
        ..base(3, "web", 6, 7, t3)
    };
    vec![r1, r2, r3]
}

/// The copies of `shop` during `r-3`: two of v6 and the v7 canary on `web`, active; two of v4
/// on `worker`, one active and one pending.
pub fn rollout_copies() -> (
    std::collections::BTreeMap<String, Assignment>,
    Vec<InstanceStatus>,
) {
    let copy = |node: Option<NodeId>, placement: u64, version: u64| Assignment {
        node,
        handoff: None,
        pending: None,
        since: NOW - 60_000,
        placement,
        version,
    };
    let assignments = std::collections::BTreeMap::from([
        ("shop/web/0".to_string(), copy(Some(1), 11, 6)),
        ("shop/web/1".to_string(), copy(Some(2), 12, 6)),
        ("shop/web/2".to_string(), copy(Some(1), 13, 7)),
        ("shop/worker/0".to_string(), copy(Some(1), 14, 4)),
        ("shop/worker/1".to_string(), copy(None, 0, 4)),
    ]);
    let active = |instance: &str, node: NodeId, placement: u64| InstanceStatus {
        instance: instance.into(),
        node,
        placement,
        state: InstanceState::Active,
        port: 41_000,
        pid: Some(4_000),
        restarts: 0,
        last_exit: None,
        health: "passing".into(),
        since: NOW - 60_000,
        gpus: Vec::new(),
    };
    let statuses = vec![
        active("shop/web/0", 1, 11),
        active("shop/web/1", 2, 12),
        active("shop/web/2", 1, 13),
        active("shop/worker/0", 1, 14),
    ];
    (assignments, statuses)
}

/// [`rollouts`] as views with [`rollout_copies`], newest first.
pub fn rollout_views() -> Vec<crate::view::rollouts::RolloutView> {
    let (assignments, statuses) = rollout_copies();
    rollouts()
        .iter()
        .rev()
        .map(|r| crate::view::rollouts::rollout_view(r, &assignments, &statuses))
        .collect()
}

/// The leader's advice: three items (a scale, a prescale, a drain of the GPU box) answered
/// 20 s before [`NOW`], after one timeout.
pub fn advice() -> AdviceView {
    let item = |n: u64, kind, target: &str, count, when: Option<&str>, reason: &str| AdviceItem {
        id: format!("a-{n}"),
        kind,
        target: target.into(),
        count,
        when: when.map(str::to_string),
        reason: reason.into(),
    };
    AdviceView {
        node: "n1".into(),
        model: "smollm2-135m".into(),
        endpoint: "127.0.0.1:8080".into(),
        interval_ms: 60_000,
        at: Some(NOW - 20_000),
        latency_ms: Some(2_340),
        items: vec![
            item(
                4,
                AdviceKind::RaiseMax,
                "shop/web",
                Some(6),
                None,
                "capped at max=4 for 12m while calls/s rose from 40 to 95",
            ),
            item(
                5,
                AdviceKind::Prescale,
                "shop/web",
                Some(5),
                Some("08:45 UTC"),
                "the daily peak starts at 09:00 and the last three reached 5 instances",
            ),
            item(
                6,
                AdviceKind::Drain,
                "gpu-box",
                None,
                None,
                "gpu temp rose from 71 to 86 °C over the hour",
            ),
        ],
        requests: 14,
        ok: 12,
        invalid: 1,
        failed: 0,
        timeouts: 1,
        last_error: Some("no answer within 20s".into()),
        last_error_at: Some(NOW - 300_000),
    }
}
