//! Snapshot tests of the renderers, text and JSON, from the fixed cluster in `fixture` (the
//! console's, seen through the CLI). `cargo insta review` (or INSTA_UPDATE=always) accepts
//! intended changes; the JSON forms are the stable `--output json` contract.

use std::io::{self, Write};

use super::fixture::{self, NOW};
use super::output;

/// What a renderer writes, as text.
fn render(f: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> String {
    let mut out = Vec::new();
    f(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// A JSON rendering, checked to be one valid JSON document.
fn render_json(f: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> String {
    let s = render(f);
    serde_json::from_str::<serde_json::Value>(&s).expect("--output json prints valid JSON");
    s
}

#[test]
fn status() {
    let s = fixture::status(false);
    insta::assert_snapshot!("status", render(|w| output::status(w, &s, NOW, false)));
    insta::assert_snapshot!(
        "status_json",
        render_json(|w| output::status(w, &s, NOW, true))
    );
    // Asked on a follower while the controller is paused: reachability is the leader's.
    let mut paused = fixture::status(true);
    paused.node.id = 2;
    paused.node.name = "gpu-box".into();
    paused.node.role = "follower".into();
    insta::assert_snapshot!(
        "status_paused_on_a_follower",
        render(|w| output::status(w, &paused, NOW, false))
    );
    // No leader: nothing committed is known, the node is not ready, no controller state, and
    // no leader to say who is reachable.
    let mut lost = fixture::status(false);
    lost.node.id = 2;
    lost.node.name = "gpu-box".into();
    lost.node.role = "candidate".into();
    lost.node.ready = false;
    lost.leader = None;
    lost.commit_index = None;
    lost.members_seen_by = "gpu-box".into();
    lost.controller = None;
    for m in &mut lost.members {
        m.leader = false;
        (m.reachable, m.last_contact_ms, m.matched_index) = (None, None, None);
    }
    insta::assert_snapshot!(
        "status_no_quorum",
        render(|w| output::status(w, &lost, NOW, false))
    );
    // Just after the leader died: this node still knows n1 as leader but could not reach it;
    // status says so instead of naming a dead node as a healthy leader.
    let mut dead = fixture::status(false);
    dead.node.id = 2;
    dead.node.name = "gpu-box".into();
    dead.node.role = "follower".into();
    dead.members_seen_by = "gpu-box".into();
    let leader = dead.leader.as_ref().unwrap().id;
    assert!(!dead.leader_unreachable());
    dead.mark_unreachable(leader);
    assert!(dead.leader_unreachable());
    let text = render(|w| output::status(w, &dead, NOW, false));
    let line = text.lines().find(|l| l.starts_with("leader:")).unwrap();
    assert!(line.contains("UNREACHABLE from gpu-box"), "{text}");
    insta::assert_snapshot!("status_leader_unreachable", text);
    // A membership change under way: the voters line says the old voters still count.
    let mut changing = fixture::status(false);
    changing.membership_changing = true;
    let text = render(|w| output::status(w, &changing, NOW, false));
    let line = text.lines().find(|l| l.starts_with("voters:")).unwrap();
    assert_eq!(
        line,
        "voters:   3 of 3 wanted (membership changing: until it completes, a majority of the old voters is needed too)"
    );
}

#[test]
fn nodes() {
    let n = fixture::members();
    insta::assert_snapshot!("nodes", render(|w| output::nodes(w, &n, false)));
    insta::assert_snapshot!("nodes_json", render_json(|w| output::nodes(w, &n, true)));
}

#[test]
fn sleeping_nodes_show_as_such() {
    use crate::domain::{NodeState, PowerRecord, PowerState};
    let mut n = fixture::members();
    let power = |m: &crate::raft::status::MemberView, state, reason: Option<&str>| PowerRecord {
        node: m.id,
        name: m.name.clone(),
        state,
        since: NOW - 90_000,
        wake_ms: Some(95_000),
        reason: reason.map(String::from),
    };
    n[1].state = NodeState::Asleep;
    n[1].power = Some(power(&n[1], PowerState::Waking, None));
    n[2].state = NodeState::Asleep;
    n[2].power = Some(power(
        &n[2],
        PowerState::Down,
        Some("not back 5m0s after its resume"),
    ));
    insta::assert_snapshot!("nodes_power", render(|w| output::nodes(w, &n, false)));
    let json = render_json(|w| output::nodes(w, &n, true));
    assert!(
        json.contains("\"state\": \"waking\"") && json.contains("\"wake_ms\": 95000"),
        "{json}"
    );
}

#[test]
fn tokens() {
    let t = fixture::tokens();
    insta::assert_snapshot!("tokens", render(|w| output::tokens(w, &t, NOW, false)));
    insta::assert_snapshot!(
        "tokens_json",
        render_json(|w| output::tokens(w, &t, NOW, true))
    );
    insta::assert_snapshot!(
        "tokens_none",
        render(|w| output::tokens(w, &[], NOW, false))
    );
}

fn operator_records() -> Vec<crate::domain::OperatorRecord> {
    use crate::domain::{OperatorRecord, Role};
    let rec = |name: &str, role, expires_at, revoked| OperatorRecord {
        name: name.into(),
        role,
        cert_sha256: "3f".repeat(32),
        serial: "5a1e".repeat(8),
        created_at: NOW - 86_400_000,
        expires_at,
        revoked,
    };
    vec![
        rec("ada", Role::Admin, NOW + 29 * 86_400_000, false),
        rec("otto", Role::Operator, NOW - 60_000, false),
        rec("vera", Role::Viewer, NOW + 3_600_000, true),
    ]
}

#[test]
fn operators() {
    let o = operator_records();
    insta::assert_snapshot!(
        "operators",
        render(|w| output::operators(w, &o, NOW, false))
    );
    insta::assert_snapshot!(
        "operators_json",
        render_json(|w| output::operators(w, &o, NOW, true))
    );
    insta::assert_snapshot!(
        "operators_none",
        render(|w| output::operators(w, &[], NOW, false))
    );
    let dir = std::path::Path::new("aether-identity-ada");
    insta::assert_snapshot!(
        "operator_created",
        render(|w| output::operator_created(w, &o[0], dir, NOW, false))
    );
    insta::assert_snapshot!(
        "operator_created_json",
        render_json(|w| output::operator_created(w, &o[0], dir, NOW, true))
    );
}

#[test]
fn removed() {
    let what = "removed 'n3' (a voter); voters now: n1, n2";
    insta::assert_snapshot!("removed", render(|w| output::done(w, what, false)));
    insta::assert_snapshot!("removed_json", render_json(|w| output::done(w, what, true)));
}

#[test]
fn events() {
    // The node answers oldest first; the CLI, like the console, shows the newest first.
    let a = fixture::events();
    assert!(a.windows(2).all(|w| w[0].seq < w[1].seq));
    let text = render(|w| output::events(w, &a, NOW, false));
    let seqs: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(seqs, ["42", "41", "40"], "{text}");
    insta::assert_snapshot!("events", text);
    insta::assert_snapshot!(
        "events_json",
        render_json(|w| output::events(w, &a, NOW, true))
    );
}

#[test]
fn token_on_stdout_details_on_stderr() {
    let t = fixture::token();
    let mut err = Vec::new();
    let out = render(|w| output::token(w, &mut err, &t, NOW, false));
    let err = String::from_utf8(err).unwrap();
    insta::assert_snapshot!("token", format!("stdout:\n{out}stderr:\n{err}"));
    let mut err = Vec::new();
    insta::assert_snapshot!(
        "token_json",
        render_json(|w| output::token(w, &mut err, &t, NOW, true))
    );
    assert!(err.is_empty(), "--output json prints nothing on stderr");
}

#[test]
fn metrics() {
    let m = fixture::metrics();
    insta::assert_snapshot!("metrics", render(|w| output::metrics(w, &m, false, false)));
    let n = fixture::node_metrics_view();
    insta::assert_snapshot!(
        "metrics_node",
        render(|w| output::metrics(w, &n, true, false))
    );
    insta::assert_snapshot!(
        "metrics_node_json",
        render_json(|w| output::metrics(w, &n, true, true))
    );
    let h = fixture::history();
    insta::assert_snapshot!(
        "metrics_history",
        render(|w| output::metrics(w, &h, true, false))
    );
    let c = fixture::metrics_carbon();
    insta::assert_snapshot!(
        "metrics_carbon",
        render(|w| output::metrics(w, &c, false, false))
    );
    let none = fixture::no_metrics();
    insta::assert_snapshot!(
        "metrics_none_yet",
        render(|w| output::metrics(w, &none, false, false))
    );
}

#[test]
fn traffic() {
    let t = fixture::traffic();
    insta::assert_snapshot!("traffic", render(|w| output::traffic(w, &t, NOW, false)));
    insta::assert_snapshot!(
        "traffic_json",
        render_json(|w| output::traffic(w, &t, NOW, true))
    );
    let none = fixture::no_traffic();
    insta::assert_snapshot!(
        "traffic_no_service",
        render(|w| output::traffic(w, &none, NOW, false))
    );
}

#[test]
fn blueprints() {
    let b = fixture::blueprints();
    insta::assert_snapshot!(
        "blueprints",
        render(|w| output::blueprints(w, &b, false, NOW, false))
    );
    // `show` answers with the one blueprint asked for; a GPU slice adds the GPUS column.
    insta::assert_snapshot!(
        "blueprint_show",
        render(|w| output::blueprints(w, &b[..1], true, NOW, false))
    );
    insta::assert_snapshot!(
        "blueprint_show_gpu",
        render(|w| output::blueprints(w, &b[1..], true, NOW, false))
    );
    // A multi-line command (`sh -c` with a script) stays on its row, quoted and escaped.
    let mut script = b[..1].to_vec();
    script[0].blueprint.slices[0].command = vec![
        "sh".into(),
        "-c".into(),
        "echo 'starting'\nexec python3 -m http.server \"$PORT\"".into(),
    ];
    insta::assert_snapshot!(
        "blueprint_show_script",
        render(|w| output::blueprints(w, &script, true, NOW, false))
    );
    insta::assert_snapshot!(
        "blueprints_json",
        render_json(|w| output::blueprints(w, &b, false, NOW, true))
    );
    let f = fixture::blueprint_flexible();
    insta::assert_snapshot!(
        "blueprint_show_flexible",
        render(|w| output::blueprints(w, &f, true, NOW, false))
    );
}

#[test]
fn blueprint_apply() {
    let p = fixture::plan(false);
    insta::assert_snapshot!("plan", render(|w| output::plan(w, &p, false)));
    insta::assert_snapshot!("plan_json", render_json(|w| output::plan(w, &p, true)));
    let d = fixture::plan(true);
    insta::assert_snapshot!("plan_dry_run", render(|w| output::plan(w, &d, false)));
}

#[test]
fn decisions() {
    let d = fixture::decisions();
    insta::assert_snapshot!(
        "decisions",
        render(|w| output::decisions(w, &d, NOW, false))
    );
    insta::assert_snapshot!(
        "decisions_json",
        render_json(|w| output::decisions(w, &d, NOW, true))
    );
    insta::assert_snapshot!(
        "decisions_none",
        render(|w| output::decisions(w, &[], NOW, false))
    );
}

#[test]
fn decision() {
    let d = &fixture::decisions()[0];
    insta::assert_snapshot!("decision", render(|w| output::decision(w, d, NOW, false)));
    insta::assert_snapshot!(
        "decision_json",
        render_json(|w| output::decision(w, d, NOW, true))
    );
}

#[test]
fn rollouts() {
    let r = fixture::rollouts();
    insta::assert_snapshot!(
        "rollout_list",
        render(|w| output::rollouts(w, &r, NOW, false))
    );
    insta::assert_snapshot!(
        "rollout_list_json",
        render_json(|w| output::rollouts(w, &r[..1], NOW, true))
    );
    insta::assert_snapshot!(
        "rollout_list_none",
        render(|w| output::rollouts(w, &[], NOW, false))
    );
    insta::assert_snapshot!(
        "rollout_history",
        render(|w| output::rollout_history(w, &r, Some("shop"), NOW, false))
    );
    insta::assert_snapshot!(
        "rollout_history_none",
        render(|w| output::rollout_history(w, &[], Some("shop/db"), NOW, false))
    );
}

/// On a follower, its own model is idle by design: the leader's reviewer, the one that
/// decides, is said too.
#[test]
fn status_on_a_follower_says_the_leaders_reviewer() {
    let mut s = fixture::status(false);
    s.node.id = 2;
    s.node.name = "gpu-box".into();
    s.node.role = "follower".into();
    let c = s.controller.as_mut().unwrap();
    c.reviewer =
        "model (f16, 1 thread) — the model is idle (loads when this node leads) on this node"
            .into();
    c.leader_reviewer = Some(crate::raft::status::ReviewerView {
        node: "n1".into(),
        reviewer: "model smollm2-135m (f16, 1 thread)".into(),
        state: "ready".into(),
        reviews: 9,
        timeouts: 1,
        last_latency_ms: Some(2_140),
    });
    insta::assert_snapshot!(
        "status_on_a_follower",
        render(|w| output::status(w, &s, NOW, false))
    );
}

/// A slice held at its max is a standing condition: said as one line, with when it started.
#[test]
fn status_says_a_capped_slice() {
    let mut s = fixture::status(false);
    s.controller.as_mut().unwrap().capped = vec![crate::raft::status::CappedView {
        target: "hot/burn".into(),
        bound: "max".into(),
        limit: 3,
        wanted: Some(27),
        since: NOW - 3_600_000,
        said: NOW - 120_000,
    }];
    insta::assert_snapshot!(
        "status_capped",
        render(|w| output::status(w, &s, NOW, false))
    );
}

/// Certificates that expire within 30 days: the node's own and operators', soonest first.
#[test]
fn status_warns_of_expiring_certificates() {
    use crate::raft::status::{CertExpiry, CertHolder};
    let mut s = fixture::status(false);
    s.certs = vec![
        CertExpiry {
            kind: CertHolder::Operator,
            name: "vera".into(),
            expires_at: NOW + 3 * 86_400_000 + 3_600_000,
        },
        CertExpiry {
            kind: CertHolder::Node,
            name: "n1".into(),
            expires_at: NOW + 20 * 86_400_000,
        },
    ];
    insta::assert_snapshot!(
        "status_certs",
        render(|w| output::status(w, &s, NOW, false))
    );
    s.certs[1].expires_at = NOW - 60_000;
    insta::assert_snapshot!(
        "status_certs_expired",
        render(|w| output::status(w, &s, NOW, false))
    );
}

#[test]
fn rollout_status() {
    let r = fixture::rollouts();
    // In progress: a canary in its second analysis interval.
    insta::assert_snapshot!(
        "rollout_status",
        render(|w| output::rollout(w, &r[0], NOW, false, false))
    );
    // Went back after its analysis failed.
    insta::assert_snapshot!(
        "rollout_status_rolled_back",
        render(|w| output::rollout(w, &r[1], NOW, false, false))
    );
    // A frame of --watch; with JSON, one object per line.
    insta::assert_snapshot!(
        "rollout_status_watch",
        render(|w| output::rollout(w, &r[2], NOW, false, true))
    );
    let line = render(|w| output::rollout(w, &r[0], NOW, true, true));
    assert_eq!(line.lines().count(), 1, "{line}");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["name"], "r-3");
    assert_eq!(v["strategy"], "canary");
    insta::assert_snapshot!(
        "rollout_status_json",
        render_json(|w| output::rollout(w, &r[1], NOW, true, false))
    );
    // --watch ends with the rollout: 0 when it succeeded, 1 when it went back or failed.
    assert_eq!(output::watch_exit(&r[0]), None);
    assert_eq!(output::watch_exit(&r[1]), Some(1));
    assert_eq!(output::watch_exit(&r[2]), Some(0));
    let mut failed = r[0].clone();
    failed.state = "failed".into();
    assert_eq!(output::watch_exit(&failed), Some(1));
    let mut paused = r[0].clone();
    paused.state = "paused".into();
    assert_eq!(output::watch_exit(&paused), None);
}

#[test]
fn rollout_acts() {
    let a = fixture::promoted();
    insta::assert_snapshot!(
        "rollout_promoted",
        render(|w| output::rollout_acted(w, &a, false))
    );
    insta::assert_snapshot!(
        "rollout_promoted_json",
        render_json(|w| output::rollout_acted(w, &a, true))
    );
}

#[test]
fn model() {
    let m = fixture::model();
    insta::assert_snapshot!("model", render(|w| output::model(w, &m, false)));
    insta::assert_snapshot!("model_json", render_json(|w| output::model(w, &m, true)));
    let idle = fixture::idle_model();
    insta::assert_snapshot!("model_idle", render(|w| output::model(w, &idle, false)));
}

#[test]
fn model_bench() {
    let b = fixture::bench();
    insta::assert_snapshot!("model_bench", render(|w| output::model_bench(w, &b, false)));
    insta::assert_snapshot!(
        "model_bench_json",
        render_json(|w| output::model_bench(w, &b, true))
    );
}

#[test]
fn model_review() {
    let r = fixture::review();
    insta::assert_snapshot!(
        "model_review",
        render(|w| output::model_review(w, &r, false))
    );
    insta::assert_snapshot!(
        "model_review_json",
        render_json(|w| output::model_review(w, &r, true))
    );
    // The head's verdict generates nothing, and the timing says only what was read.
    let mut by_head = fixture::review();
    (by_head.generated, by_head.decode_ms) = (0, 1);
    let text = render(|w| output::model_review(w, &by_head, false));
    let line = text.lines().find(|l| l.starts_with("timing")).unwrap();
    assert!(line.ends_with("read 171 tokens in 466 ms"), "{line}");
}

#[test]
fn model_pull() {
    let p = fixture::pulled();
    insta::assert_snapshot!("model_pull", render(|w| output::pulled(w, &p, false)));
    insta::assert_snapshot!(
        "model_pull_json",
        render_json(|w| output::pulled(w, &p, true))
    );
}

#[test]
fn logs() {
    let l = fixture::logs();
    // One instance: its raw output; a slice: each line prefixed; following with JSON: one
    // chunk per line.
    insta::assert_snapshot!(
        "logs_one",
        render(|w| output::logs(w, &l[..1], false, false, false))
    );
    insta::assert_snapshot!(
        "logs_slice",
        render(|w| output::logs(w, &l, true, false, false))
    );
    insta::assert_snapshot!(
        "logs_follow_json",
        render(|w| output::logs(w, &l, true, true, true))
    );
}

/// The one-line answers: a write, `kv get` and `kv list`, `scale`.
#[test]
fn small_answers() {
    let items = vec![
        ("app/color".to_string(), b"blue".to_vec()),
        ("app/size".to_string(), b"3".to_vec()),
    ];
    let text = [
        render(|w| output::ok(w, false)),
        render(|w| output::value(w, "app/color", b"blue", false)),
        render(|w| output::list(w, &items, false)),
        render(|w| output::version(w, "shop", 4, false)),
    ]
    .concat();
    insta::assert_snapshot!("small_answers", text);
    let json = [
        render_json(|w| output::ok(w, true)),
        render_json(|w| output::value(w, "app/color", b"blue", true)),
        render_json(|w| output::list(w, &items, true)),
        render_json(|w| output::version(w, "shop", 4, true)),
    ]
    .concat();
    insta::assert_snapshot!("small_answers_json", json);
}

/// Errors become exit codes by their type (DESIGN §11), never by their text; an unexpected
/// answer keeps the message the CLI always printed for it.
#[test]
fn errors_map_to_exit_codes_by_type() {
    use super::{Failure, exit};
    use crate::admin::client::ClientError;
    use crate::admin::protocol::{AdminError, ErrorKind};
    let f = Failure::from(ClientError::Unexpected {
        request: "Status",
        response: "Nodes",
    });
    assert_eq!(f.code, exit::FAILED);
    assert_eq!(
        f.message,
        "the node answered with an unexpected message: are the CLI and the node the same aether version?"
    );
    for (kind, code) in [
        (ErrorKind::NoQuorum, exit::UNREACHABLE),
        (ErrorKind::Unavailable, exit::UNREACHABLE),
        (ErrorKind::NotLeader, exit::UNREACHABLE),
        (ErrorKind::Invalid, exit::USAGE),
        (ErrorKind::Failed, exit::FAILED),
    ] {
        let f = Failure::from(ClientError::Admin(AdminError::new(kind, "why")));
        assert_eq!((f.code, f.message.as_str()), (code, "why"), "{kind:?}");
    }
}

/// A blueprint file that is missing or a directory is bad input (exit 2), not a failure.
#[test]
fn an_unreadable_input_file_is_bad_input() {
    use super::exit;
    use super::run::read_input;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("shop.toml");
    let f = read_input("blueprint file", &missing).unwrap_err();
    assert_eq!(f.code, exit::USAGE, "{}", f.message);
    assert!(
        f.message.starts_with(&format!(
            "cannot read blueprint file '{}': ",
            missing.display()
        )),
        "{}",
        f.message
    );
    let f = read_input("blueprint file", dir.path()).unwrap_err();
    assert_eq!(f.code, exit::USAGE, "{}", f.message);
    std::fs::write(&missing, "name = \"shop\"\n").unwrap();
    assert_eq!(
        read_input("blueprint file", &missing).unwrap(),
        "name = \"shop\"\n"
    );
}

/// The README's `[slices.update]` example is a valid blueprint section, with the values it
/// says.
#[test]
fn the_readme_rollout_example_parses() {
    use crate::domain::{AnalysisPolicy, Strategy, UpdatePolicy};
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme.find("## Rollouts").expect("a Rollouts section")..];
    let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let block = &section[start..start + section[start..].find("```").unwrap()];
    let text = format!(
        "name = \"shop\"\n[[slices]]\nname = \"web\"\ncommand = [\"web\"]\ninstances = 4\nmin = 1\nmax = 8\nresources = {{ cpu = 0.5, memory = \"256MiB\" }}\n[slices.service]\nport = 8080\n{block}"
    );
    let bp = crate::deploy::blueprint::parse("README.md", &text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        bp.slices[0].update,
        Some(UpdatePolicy {
            strategy: Strategy::Canary,
            analysis: Some(AnalysisPolicy {
                interval_ms: 30_000,
                min_requests: 100,
                max_error_rate: 0.01,
                max_p99_ms: Some(50),
            }),
            auto_promote: true,
            ..UpdatePolicy::default()
        }),
        "the README says the other values are the defaults"
    );
}

#[test]
fn version_names_the_baseline_and_what_this_cpu_lacks() {
    let mut b = crate::platform::BuildInfo {
        version: "0.1.0".into(),
        commit: "dc7d75e1a2b3".into(),
        target: "x86_64-unknown-linux-gnu".into(),
        linkage: "static".into(),
        cpu_baseline: "x86-64-v3".into(),
        cpu_missing: vec![],
        cpu_needs: vec!["avx2".into(), "fma".into(), "bmi2".into()],
    };
    let fine = render(|w| output::build_info(w, &b, false));
    b.cpu_missing = vec!["avx2".into(), "fma".into()];
    let lacking = render(|w| output::build_info(w, &b, false));
    insta::assert_snapshot!("version", format!("{fine}---\n{lacking}"));
    render_json(|w| output::build_info(w, &b, true));
}

#[test]
fn advice() {
    let a = crate::view::fixture::advice();
    insta::assert_snapshot!(
        "advice",
        render(|w| output::advice(w, Some(&a), NOW, false))
    );
    insta::assert_snapshot!(
        "advice_json",
        render_json(|w| output::advice(w, Some(&a), NOW, true))
    );
    insta::assert_snapshot!(
        "advice_off",
        render(|w| output::advice(w, None, NOW, false))
    );
    let down = crate::domain::AdviceView {
        at: None,
        items: vec![],
        ok: 0,
        requests: 3,
        failed: 3,
        invalid: 0,
        timeouts: 0,
        last_error: Some("cannot connect to '127.0.0.1:8080': connection refused".into()),
        last_error_at: Some(NOW - 5_000),
        ..a.clone()
    };
    insta::assert_snapshot!(
        "advice_down",
        render(|w| output::advice(w, Some(&down), NOW, false))
    );
    let mut d = fixture::decisions()[0].clone();
    d.rule = "advisor".into();
    d.layers = vec!["advisor:smollm2-135m".into(), "safety".into()];
    d.reasoning = vec![
        "the daily peak starts at 09:00".into(),
        "advice a-5 taken by uid:0@n1".into(),
    ];
    d.inputs = vec![("advice".into(), "a-5".into())];
    d.status = crate::domain::DecisionStatus::Proposed;
    insta::assert_snapshot!(
        "advice_taken",
        render(|w| output::advice_taken(w, &d, false))
    );
}

/// A verified backup of a three-node cluster, as `inspect` describes it.
fn backup_info() -> crate::raft::backup::BackupInfo {
    use crate::raft::backup::{BackupInfo, BackupMember};
    let member = |id: u64, name: &str, voter| BackupMember {
        id,
        name: name.into(),
        addr: format!("10.0.0.{id}:7420"),
        voter,
    };
    BackupInfo {
        format: 1,
        snapshot_format: 5,
        cluster_id: Some("c-1a2b3c4d".into()),
        index: Some(1042),
        term: Some(3),
        members: vec![
            member(1, "n1", true),
            member(2, "gpu-box", true),
            member(3, "", false),
        ],
        node: "gpu-box".into(),
        taken_at: NOW - 90_000,
        counts: [
            ("kv", 12),
            ("nodes", 3),
            ("tokens", 1),
            ("blueprints", 2),
            ("decisions", 7),
            ("audit", 210),
        ]
        .into_iter()
        .map(|(t, n)| (t.to_string(), n))
        .collect(),
        size: 48_213,
        sha256: "9f".repeat(32),
    }
}

#[test]
fn snapshot_save_inspect_restore() {
    let info = backup_info();
    let file = std::path::Path::new("/backups/aether.snap");
    insta::assert_snapshot!(
        "snapshot_saved",
        render(|w| output::snapshot_saved(w, file, &info, false))
    );
    insta::assert_snapshot!(
        "snapshot_saved_json",
        render_json(|w| output::snapshot_saved(w, file, &info, true))
    );
    insta::assert_snapshot!(
        "snapshot_inspect",
        render(|w| output::snapshot_info(w, file, &info, NOW, false))
    );
    insta::assert_snapshot!(
        "snapshot_inspect_json",
        render_json(|w| output::snapshot_info(w, file, &info, NOW, true))
    );
    let restored = crate::raft::backup::RestoredView {
        data_dir: "/var/lib/aether-restored".into(),
        from_cluster_id: info.cluster_id.clone(),
        index: info.index,
        term: info.term,
        kept: [
            ("kv", 12),
            ("blueprints", 2),
            ("decisions", 7),
            ("audit", 211),
        ]
        .into_iter()
        .map(|(t, n)| (t.to_string(), n))
        .collect(),
        dropped: crate::raft::backup::DROPPED_TABLES
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    insta::assert_snapshot!(
        "snapshot_restored",
        render(|w| output::snapshot_restored(w, &restored, false))
    );
    insta::assert_snapshot!(
        "snapshot_restored_json",
        render_json(|w| output::snapshot_restored(w, &restored, true))
    );
}

/// A drill's plan on a three-node cluster led by n1.
fn drill_plan(s: crate::deploy::drill::Scenario) -> crate::deploy::drill::Plan {
    use crate::deploy::drill::{Facts, Member, plan};
    let members = (1..=3)
        .map(|i| Member {
            id: i,
            name: format!("n{i}"),
            addr: format!("127.0.0.1:742{i}"),
            voter: true,
            reachable: true,
            health: crate::domain::Health::Ready,
            isolated: false,
            drilling: false,
            state: crate::domain::NodeState::Ready,
            spot: None,
        })
        .collect();
    let facts = Facts {
        members,
        leader: Some(1),
        slice_instances: 3,
        slice_known: true,
        down_after: std::time::Duration::from_secs(10),
    };
    plan(&s, &facts, None).unwrap()
}

#[test]
fn drill() {
    use crate::deploy::drill::{DrillReport, Scenario};
    let dry = DrillReport {
        scenario: "leader-loss".into(),
        dry_run: true,
        plan: Some(drill_plan(Scenario::LeaderLoss)),
        recovered: true,
        verdict: "leader-loss: dry run, nothing was changed".into(),
        ..DrillReport::default()
    };
    insta::assert_snapshot!("drill_dry_run", render(|w| output::drill(w, &dry, false)));
    let mut lost = DrillReport {
        scenario: "leader-loss".into(),
        plan: Some(drill_plan(Scenario::LeaderLoss)),
        recovered: true,
        old_leader: Some("n1".into()),
        new_leader: Some("n2".into()),
        term_before: 3,
        term_after: 4,
        leader_changed: true,
        leader_after_ms: Some(812),
        writes_resumed_after_ms: Some(1_104),
        probe_writes: 1,
        probe_errors: 2,
        errors: vec!["no quorum: the write was not committed within 1 s".into()],
        last_probe: Some("leader-loss 3".into()),
        healed_after_ms: Some(1_110),
        back_ready_after_ms: Some(240),
        ..DrillReport::default()
    };
    lost.verdict = lost.verdict_line();
    insta::assert_snapshot!(
        "drill_leader_loss",
        render(|w| output::drill(w, &lost, false))
    );
    insta::assert_snapshot!(
        "drill_leader_loss_json",
        render_json(|w| output::drill(w, &lost, true))
    );
    let mut crash = DrillReport {
        scenario: "slice-crash".into(),
        target: Some("app/web".into()),
        plan: Some(drill_plan(Scenario::SliceCrash {
            blueprint: "app".into(),
            slice: "web".into(),
        })),
        recovered: false,
        instances: Some(3),
        killed: Some(3),
        restarts: Some(2),
        notes: vec!["not every instance was active again within 60.0 s".into()],
        ..DrillReport::default()
    };
    crash.verdict = crash.verdict_line();
    insta::assert_snapshot!(
        "drill_slice_crash_not_recovered",
        render(|w| output::drill(w, &crash, false))
    );
    let mut spot = DrillReport {
        scenario: "spot-interruption".into(),
        target: Some("n2".into()),
        plan: Some(drill_plan(Scenario::SpotInterruption { node: "n2".into() })),
        recovered: true,
        decision: Some("d-7".into()),
        decided_after_ms: Some(420),
        moved_instances: Some(2),
        moved_after_ms: Some(3_150),
        moves: vec!["app/web/0 → n3".into(), "app/web/2 → n1".into()],
        drained_after_ms: Some(3_600),
        deadline_after_ms: Some(120_000),
        restored: true,
        ..DrillReport::default()
    };
    spot.verdict = spot.verdict_line();
    insta::assert_snapshot!(
        "drill_spot_interruption",
        render(|w| output::drill(w, &spot, false))
    );
}

#[test]
fn nodes_show_an_interrupting_member_with_its_deadline() {
    let mut members = crate::view::fixture::members();
    members[2].spot = Some(crate::domain::SpotNotice {
        kind: crate::domain::SpotKind::Interruption {
            action: "terminate".into(),
        },
        at: crate::view::fixture::NOW + 120_000,
        source: "aws".into(),
    });
    insta::assert_snapshot!(
        "nodes_interrupting",
        render(|w| output::nodes(w, &members, false))
    );
}
