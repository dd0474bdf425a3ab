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
        }),
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
