//! Rollouts on real nodes, real processes and load through the ingress: a rolling update
//! under steady load fails no request; a bad canary goes back by itself with the numbers; a
//! silent canary pauses as inconclusive; abort, undo, pause/resume, an expired progress
//! deadline and blue/green's instant undo; a leader killed -9 mid-rollout, for each strategy,
//! and the rollout resumes at its step on the new leader with no copy twice or left behind.

#[path = "../cluster/harness.rs"]
#[macro_use]
mod harness;
#[path = "../ingress/http.rs"]
#[allow(dead_code)]
mod http;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use harness::*;
use serde_json::Value;

/// An instance that answers with its VERSION; with FAIL=some, one request in five (by a
/// counter) gets a 500; with FAIL=all, every one (so its health check fails too).
const APP: &str = r#"
import http.server, itertools, os, sys
n = itertools.count()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        fail = os.environ.get("FAIL", "")
        bad = fail == "all" or (fail == "some" and self.path != "/health" and next(n) % 5 == 0)
        b = ("%s %s\n" % (os.environ["AETHER_INSTANCE"], os.environ.get("VERSION", ""))).encode()
        self.send_response(500 if bad else 200)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

/// The mark of one test's processes (the tests of this binary run side by side).
fn run_id(test: &str) -> String {
    format!("rollout-{}-{test}", std::process::id())
}

/// `n` nodes serving service ports on 127.0.0.1(i+1), marked with `run` (their instances get
/// the mark through `deploy.pass_env`).
fn cluster(n: usize, run: &str) -> TestCluster {
    TestCluster::with_ingress(n, &[("TEST_RUN", run)])
}

/// Write `shop.toml`: slice `web` with `instances`, VERSION `version`, FAIL `fail`, and
/// `update` as its `[slices.update]` table.
fn blueprint(
    c: &TestCluster,
    port: u16,
    instances: u32,
    version: &str,
    fail: &str,
    update: &str,
) -> String {
    let app = c.root.path().join("app.py");
    std::fs::write(&app, APP).unwrap();
    let file = c.root.path().join("shop.toml");
    std::fs::write(
        &file,
        format!(
            r#"name = "shop"

[[slices]]
name = "web"
command = ["python3", "{}", "${{PORT}}"]
instances = {instances}
min = 1
max = 8
resources = {{ cpu = 0.1, memory = "32MiB" }}
env = {{ VERSION = "{version}", FAIL = "{fail}" }}

[slices.health]
http = "/health"
interval = "300ms"
threshold = 1

[slices.service]
port = {port}

[slices.update]
{update}
"#,
            app.display()
        ),
    )
    .unwrap();
    file.to_str().unwrap().to_string()
}

fn apply(n: &Node, file: &str) -> String {
    let out = n.cli(&["blueprint", "apply", file]);
    assert!(out.status.success(), "apply: {}", stderr(&out));
    stdout(&out)
}

/// `shop/web`'s rollout as `n` shows it (the one in progress, else the latest).
fn rollout(n: &Node) -> Option<Value> {
    let out = n.cli(&["rollout", "status", "shop/web", "--output", "json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

/// Wait until rollout `id` of `shop/web` is in `state`; the rollout.
fn wait_state(n: &Node, id: &str, state: &str, within: Duration) -> Value {
    let mut last = Value::Null;
    let start = Instant::now();
    loop {
        if let Some(r) = rollout(n) {
            if r["name"] == id && r["state"] == state {
                return r;
            }
            last = r;
        }
        assert!(
            start.elapsed() < within,
            "rollout {id} not {state} after {within:?}; last seen:\n{}",
            serde_json::to_string_pretty(&last).unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `shop`'s instance rows as `n` shows them.
fn rows(n: &Node) -> Vec<Value> {
    let out = n.cli(&["blueprint", "show", "shop", "--output", "json"]);
    if !out.status.success() {
        return Vec::new();
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v[0]["instances"].as_array().cloned().unwrap_or_default()
}

/// The VERSIONs that answer `n` requests through `addr`.
fn versions_answering(addr: &str, n: usize) -> BTreeSet<String> {
    (0..n)
        .filter_map(|_| http::get(addr, "/x").ok())
        .filter(|a| a.status == 200)
        .filter_map(|a| a.body.split_whitespace().nth(1).map(str::to_string))
        .collect()
}

/// Wait until every one of `n` instances is active and passing, `blueprint show` and the
/// process table agree on them (one live process per instance, the pid it shows), and only
/// `version` answers through `addr`.
fn settled(c: &TestCluster, at: usize, n: usize, version: &str, addr: &str) {
    let app = c.root.path().join("app.py").display().to_string();
    wait_for(
        &format!("{n} instances of {version}, and the process table agrees"),
        Duration::from_secs(90),
        || {
            let r = rows(&c.nodes[at]);
            let shown: BTreeSet<(String, u64)> = r
                .iter()
                .filter(|r| r["state"] == "active")
                .filter_map(|r| Some((r["instance"].as_str()?.to_string(), r["pid"].as_u64()?)))
                .collect();
            if r.len() != n || shown.len() != n {
                return None;
            }
            let running: BTreeSet<(String, u64)> = live_processes()
                .into_iter()
                .filter(|p| p.cmdline.contains(&app))
                .filter_map(|p| Some((p.env.get("AETHER_INSTANCE")?.clone(), u64::from(p.pid))))
                .collect();
            if running != shown {
                return None;
            }
            (versions_answering(addr, 12) == BTreeSet::from([version.to_string()])).then_some(())
        },
    );
}

const ROLLING: &str = "strategy = \"rolling\"\nmax_parallel = 2\nmin_healthy_time = \"1s\"";

#[test]
fn every_strategy_survives_a_leader_killed_mid_rollout_and_rolling_fails_no_request() {
    let run = run_id("strategies");
    let _reaper = Reaper(run.clone());
    let mut c = cluster(3, &run);
    let port = free_port();
    let file = blueprint(&c, port, 6, "v1", "", ROLLING);
    apply(&c.nodes[0], &file);
    // Load goes through a node that stays up: n1 is the founder and leads, so through n2.
    let target = format!("127.0.0.12:{port}");
    settled(&c, 1, 6, "v1", &target);
    let load = http::Load::start(&target, "/", 4, Duration::from_secs(600));
    let progress = |load: &http::Load, what: &str| {
        let before = load.ok();
        wait_for(
            &format!("requests keep succeeding {what}"),
            Duration::from_secs(30),
            || (load.ok() > before + 50).then_some(()),
        );
    };
    progress(&load, "at the start");

    // A rolling update of 6 across 3 nodes: zero failed requests, every copy on v2.
    let out = apply(&c.nodes[0], &blueprint(&c, port, 6, "v2", "", ROLLING));
    assert!(out.contains("rollout r-1 of shop/web started"), "{out}");
    let r = wait_state(&c.nodes[1], "r-1", "succeeded", Duration::from_secs(120));
    assert_eq!(r["to"], 2);
    settled(&c, 1, 6, "v2", &target);
    progress(&load, "after the rolling update");
    assert_eq!(
        load.failures(),
        Vec::<String>::new(),
        "the rolling update failed requests"
    );

    // For each strategy: kill -9 the leader mid-rollout and bring it back; the rollout
    // resumes at its step on the new leader and completes.
    let strategies = [
        (
            "r-2",
            "v3",
            "strategy = \"rolling\"\nmax_parallel = 1\nmin_healthy_time = \"2s\"",
            "starting v3 copies 2",
        ),
        (
            "r-3",
            "v4",
            // The killed node may hold the canary: the requests in flight on it fail when
            // their hop times out and land in one analysis window. The load below may lose
            // up to 4 of them, so the analysis allows that many among at least 30 requests.
            "strategy = \"canary\"\nmin_healthy_time = \"1s\"\ncanary = 1\ncanary_traffic = \"30%\"\nauto_promote = true\nanalysis = { interval = \"4s\", min_requests = 30, max_error_rate = \"15%\" }",
            "analysis 1 begins",
        ),
        (
            "r-4",
            "v5",
            "strategy = \"blue-green\"\nmin_healthy_time = \"1s\"\nstandby = \"6s\"",
            "traffic switched to v5",
        ),
    ];
    load.finish();
    for (id, version, update, mid) in strategies {
        // Load through a node that is not the leader, which is the one killed.
        let leader = c.leader_index();
        let at = (leader + 1) % 3;
        let target = format!("127.0.0.1{}:{port}", at + 1);
        let load = http::Load::start(&target, "/", 4, Duration::from_secs(300));
        apply(&c.nodes[at], &blueprint(&c, port, 6, version, "", update));
        wait_for(
            &format!("{id} reaches '{mid}'"),
            Duration::from_secs(60),
            || {
                let r = rollout(&c.nodes[at])?;
                (r["name"] == id
                    && r["history"]
                        .as_array()?
                        .iter()
                        .any(|h| h["what"].as_str().is_some_and(|w| w.contains(mid))))
                .then_some(())
            },
        );
        let step_before = rollout(&c.nodes[at]).unwrap()["step"].clone();
        c.nodes[leader].kill9();
        c.nodes[leader].start(None);
        let r = wait_state(&c.nodes[at], id, "succeeded", Duration::from_secs(150));
        let lines: Vec<&str> = r["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|h| h["what"].as_str())
            .collect();
        assert!(
            lines.iter().filter(|l| l.starts_with("started")).count() == 1,
            "{id} ran once from {step_before}: {lines:#?}"
        );
        settled(&c, at, 6, version, &target);
        let (ok, failures) = load.finish();
        // The crash may cost the requests in flight on the killed node's copies.
        assert!(
            failures.len() <= 4,
            "{id}: {} failures of {ok}: {failures:?}",
            failures.len()
        );
    }
}

#[test]
fn canaries_operators_and_deadlines_on_one_node() {
    let run = run_id("one-node");
    let _reaper = Reaper(run.clone());
    let c = cluster(1, &run);
    let n = &c.nodes[0];
    let port = free_port();
    let target = format!("127.0.0.11:{port}");
    let canary = |extra: &str| {
        format!(
            "strategy = \"canary\"\nmin_healthy_time = \"1s\"\ncanary = 1\ncanary_traffic = \"40%\"\nanalysis = {{ interval = \"5s\", min_requests = 30, max_error_rate = \"1%\" }}\n{extra}"
        )
    };

    // Bad input changes nothing and names the place.
    for (update, want) in [
        (
            "strategy = \"big-bang\"",
            "slices[0].update.strategy: unknown strategy 'big-bang'",
        ),
        (
            "canary_traffic = \"110%\"",
            "slices[0].update.canary_traffic: expected a percentage from 0% to 100%",
        ),
        (
            "max_parallel = 0",
            "slices[0].update.max_parallel: expected a whole number from 1 to 1000, found 0",
        ),
    ] {
        let out = n.cli(&[
            "blueprint",
            "apply",
            &blueprint(&c, port, 3, "v0", "", update),
        ]);
        assert_eq!(out.status.code(), Some(2), "{update}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("shop.toml:") && stderr(&out).contains(want),
            "{}",
            stderr(&out)
        );
    }
    assert!(rows(n).is_empty(), "nothing was stored");

    apply(n, &blueprint(&c, port, 3, "v1", "", ROLLING));
    settled(&c, 0, 3, "v1", &target);

    // A canary that fails one request in five goes back by itself, with the numbers.
    let load = http::Load::start(&target, "/", 4, Duration::from_secs(300));
    apply(n, &blueprint(&c, port, 3, "v2", "some", &canary("")));
    let r = wait_state(n, "r-1", "rolled-back", Duration::from_secs(60));
    let reason = r["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("canary v2: error rate ")
            && reason.contains("> max 1.0% over ")
            && reason.contains("; rolled back to v1 in "),
        "{reason}"
    );
    settled(&c, 0, 3, "v1", &target);
    let (ok, failures) = load.finish();
    assert!(ok > 0, "load ran");
    eprintln!(
        "bad canary: {} of {ok} requests failed at the client",
        failures.len()
    );
    let out = n.cli(&["decisions", "--output", "json"]);
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = d.to_string();
    assert!(
        text.contains("rollback") && text.contains("canary v2: error rate"),
        "the rollback is a decision: {text}"
    );

    // A canary nobody calls is inconclusive, never a pass: it pauses past its deadline;
    // promote goes on and replaces the rest.
    apply(
        n,
        &blueprint(&c, port, 3, "v4", "", &canary("progress_deadline = \"6s\"")),
    );
    let r = wait_state(n, "r-2", "paused", Duration::from_secs(60));
    assert!(
        r["reason"].as_str().unwrap().contains("inconclusive"),
        "{r}"
    );
    let out = n.cli(&["rollout", "promote", "shop/web"]);
    assert!(out.status.success(), "promote: {}", stderr(&out));
    wait_state(n, "r-2", "succeeded", Duration::from_secs(60));
    settled(&c, 0, 3, "v4", &target);

    // Undo goes back to the version before, all at once.
    let out = n.cli(&["rollout", "undo", "shop/web"]);
    assert!(out.status.success(), "undo: {}", stderr(&out));
    wait_state(n, "r-3", "succeeded", Duration::from_secs(60));
    settled(&c, 0, 3, "v1", &target);

    // Pause holds a slow rolling update, resume continues it, abort goes back.
    let slow = "strategy = \"rolling\"\nmax_parallel = 1\nmin_healthy_time = \"30s\"";
    apply(n, &blueprint(&c, port, 3, "v5", "", slow));
    wait_state(n, "r-4", "running", Duration::from_secs(10));
    let out = n.cli(&["rollout", "pause", "shop/web"]);
    assert!(out.status.success(), "pause: {}", stderr(&out));
    wait_state(n, "r-4", "paused", Duration::from_secs(10));
    let out = n.cli(&["rollout", "pause", "shop/web"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a second pause is refused: {}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("not running: nothing to pause"),
        "{}",
        stderr(&out)
    );
    let out = n.cli(&["rollout", "resume", "shop/web"]);
    assert!(out.status.success(), "resume: {}", stderr(&out));
    wait_state(n, "r-4", "running", Duration::from_secs(10));
    // A scale during a rollout (the controller's, or an operator's) is followed by it.
    let out = n.cli(&["scale", "shop/web", "4"]);
    assert!(out.status.success(), "scale: {}", stderr(&out));
    let out = n.cli(&["rollout", "abort", "shop/web"]);
    assert!(out.status.success(), "abort: {}", stderr(&out));
    let r = wait_state(n, "r-4", "rolled-back", Duration::from_secs(60));
    assert!(
        r["reason"].as_str().unwrap().starts_with("abort by "),
        "{r}"
    );
    settled(&c, 0, 4, "v1", &target);

    // A version that never gets healthy: no progress within the deadline, back at once.
    let stuck = "strategy = \"rolling\"\nmin_healthy_time = \"1s\"\nprogress_deadline = \"4s\"";
    apply(n, &blueprint(&c, port, 3, "v6", "all", stuck));
    let r = wait_state(n, "r-5", "rolled-back", Duration::from_secs(60));
    assert!(
        r["reason"].as_str().unwrap().contains("no progress for"),
        "{r}"
    );
    settled(&c, 0, 3, "v1", &target);

    // Blue/green: the whole new set, one switch, and an instant undo during the standby.
    let bg = "strategy = \"blue-green\"\nmin_healthy_time = \"1s\"\nstandby = \"5m\"";
    apply(n, &blueprint(&c, port, 3, "v7", "", bg));
    wait_for("blue/green switched", Duration::from_secs(60), || {
        (rollout(n)?["step"] == "standby").then_some(())
    });
    assert_eq!(
        versions_answering(&target, 12),
        BTreeSet::from(["v7".to_string()])
    );
    assert_eq!(rows(n).len(), 6, "the old set stays up, out of traffic");
    let out = n.cli(&["rollout", "undo", "shop/web"]);
    assert!(out.status.success(), "undo: {}", stderr(&out));
    wait_state(n, "r-6", "rolled-back", Duration::from_secs(10));
    settled(&c, 0, 3, "v1", &target);
}
