//! Metrics pipeline on real processes over 127.0.0.1: push to the leader and broadcast to every
//! node without touching Raft, `aether metrics` and `/metrics` (checked by promtool), liveness
//! (suspect, down, ready again) with events, and the snapshot after a kill -9 of the leader.

#[path = "../cluster/harness.rs"]
mod harness;

use std::process::Command;
use std::time::{Duration, Instant};

use aether::metrics::prometheus::sample_value;
use harness::*;
use serde_json::Value;

/// Every node name in a metrics document with its sample age (ms).
fn sample_ages(m: &Value) -> Vec<(String, u64)> {
    m["nodes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|n| {
                    (
                        n["name"].as_str().unwrap_or("").to_string(),
                        n["sample_age_ms"].as_u64().unwrap_or(u64::MAX),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The node's view covers exactly `names`, each sampled within `max_age_ms`, from a snapshot
/// younger than `max_age_ms`.
fn fresh_view(node: &Node, names: &[&str], max_age_ms: u64) -> Option<Value> {
    let m = node.metrics(&[])?;
    if m["snapshot_age_ms"].as_u64()? >= max_age_ms {
        return None;
    }
    let ages = sample_ages(&m);
    let mut seen: Vec<&str> = ages.iter().map(|(n, _)| n.as_str()).collect();
    seen.sort();
    let mut want = names.to_vec();
    want.sort();
    (seen == want && ages.iter().all(|(_, a)| *a < max_age_ms)).then_some(m)
}

/// The Raft position of a node: (last log index, commit index).
fn raft_position(node: &Node) -> Option<(u64, u64)> {
    let s = node.status()?;
    Some((
        s["node"]["last_log_index"].as_u64()?,
        s["node"]["commit_index"].as_u64()?,
    ))
}

/// promtool, installed from Debian's `prometheus` package when missing and possible.
fn promtool() -> String {
    let found = |p: &str| {
        Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if found("promtool") {
        return "promtool".into();
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    assert!(
        root,
        "promtool is missing and this test cannot install it (not root): apt-get install prometheus"
    );
    let ok = Command::new("sh")
        .args([
            "-c",
            "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1 \
             || (apt-get update >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1)",
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok && found("promtool"),
        "installing Debian's prometheus package (for promtool) failed"
    );
    "promtool".into()
}

#[test]
fn every_node_sees_the_cluster_and_raft_does_not_move() {
    let c = TestCluster::three();
    let names = ["n1", "n2", "n3"];
    for n in &c.nodes {
        wait_for(
            &format!("{} shows all three nodes from a fresh snapshot", n.name),
            Duration::from_secs(20),
            || fresh_view(n, &names, 3_000),
        );
    }
    let leader = &c.nodes[c.leader_index()];
    let scrape = |n: &Node| {
        let (status, body) = n.http_get("/metrics").expect("/metrics answers");
        assert_eq!(status, 200, "{body}");
        body
    };
    let before = raft_position(leader).expect("leader status");
    let received_before =
        sample_value(&scrape(leader), "aether_metrics_updates_received_total").unwrap();
    let snapshots_before: Vec<f64> = c
        .nodes
        .iter()
        .filter(|n| n.name != leader.name)
        .map(|n| sample_value(&scrape(n), "aether_metrics_snapshots_received_total").unwrap())
        .collect();

    // Ten seconds of sampling, pushing and broadcasting: the Raft log must not move at all.
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        for n in &c.nodes {
            assert_eq!(
                raft_position(n).map(|p| p.0),
                Some(before.0),
                "{}'s raft log moved while the cluster only sampled",
                n.name
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(raft_position(leader), Some(before), "raft moved");
    let received = sample_value(&scrape(leader), "aether_metrics_updates_received_total").unwrap();
    assert!(
        received - received_before >= 10.0,
        "two followers push every second: {received_before} → {received}"
    );
    for (n, b) in c
        .nodes
        .iter()
        .filter(|n| n.name != leader.name)
        .zip(snapshots_before)
    {
        let got = sample_value(&scrape(n), "aether_metrics_snapshots_received_total").unwrap();
        assert!(got - b >= 5.0, "{} took snapshots: {b} → {got}", n.name);
    }

    // A follower's view: every node, history by series, GPU state.
    let f = c.nodes.iter().find(|n| n.name != leader.name).unwrap();
    let m = fresh_view(f, &names, 3_000).expect("fresh view on a follower");
    assert_eq!(m["leader"], leader.name.as_str());
    for n in m["nodes"].as_array().unwrap() {
        let gpu = n["gpu"].as_str().unwrap();
        assert!(gpu.starts_with("gpu: "), "{gpu}");
        if !std::path::Path::new("/dev/nvidiactl").exists() {
            assert!(gpu.starts_with("gpu: unavailable ("), "{gpu}");
        }
        let cpu = n["series"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "cpu")
            .expect("cpu series");
        let v = cpu["value"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{cpu}");
        assert!(cpu["min_1m"].as_f64().is_some(), "a minute's range: {cpu}");
        assert_eq!(n["health"], "ready");
        assert!(!n["detail"]["cores"].as_array().unwrap().is_empty());
    }
    let h = f
        .metrics(&["--node", "n3", "--series", "cpu", "--since", "1m"])
        .expect("history");
    let points = h["history"]["points"].as_array().unwrap();
    assert!(points.len() >= 8, "a point per second: {}", points.len());
    let text = f.cli(&["metrics", "--node", "n2"]);
    assert!(text.status.success(), "{}", stderr(&text));
    let text = stdout(&text);
    assert!(text.contains("node n2 (id "), "{text}");
    assert!(text.contains("gpu: "), "{text}");
    assert!(text.contains("cpu "), "{text}");
    for n in &c.nodes {
        let log = n.log_text();
        if log.contains("gpu: unavailable") {
            assert_eq!(
                log.matches("gpu: unavailable").count(),
                1,
                "{}: the GPU state is logged once",
                n.name
            );
        }
    }

    // Bad queries: clear errors, usage exit code.
    let bad = f.cli(&["metrics", "--node", "nope"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = stderr(&bad);
    assert!(
        err.contains("no node named 'nope'") && err.contains("n1") && err.contains("n3"),
        "{err}"
    );
    let bad = f.cli(&["metrics", "--node", "n1", "--series", "bogus"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("no series 'bogus'") && stderr(&bad).contains("cpu"));
    let bad = f.cli(&["metrics", "--series", "cpu"]);
    assert_eq!(bad.status.code(), Some(2), "--series needs --node");
    let bad = f.cli(&[
        "metrics", "--node", "n1", "--series", "cpu", "--since", "3h",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("expected 1s to 2h"),
        "{}",
        stderr(&bad)
    );

    // `aether traffic` before any blueprint: says what to add; an unknown name says how to
    // list the stored ones.
    let t = f.cli(&["traffic"]);
    assert!(t.status.success(), "{}", stderr(&t));
    assert!(
        stdout(&t).contains("no slice declares a service"),
        "{}",
        stdout(&t)
    );
    let bad = f.cli(&["traffic", "shop/web"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("no blueprint named 'shop'")
            && stderr(&bad).contains("aether blueprint list"),
        "{}",
        stderr(&bad)
    );
    let t = f.cli(&["--output", "json", "traffic"]);
    let v: Value = serde_json::from_str(&stdout(&t)).expect("traffic JSON");
    assert_eq!(v["seen_by"], f.name.as_str());
    assert_eq!(v["window_secs"], 10);

    // /metrics on a follower: valid exposition format, every node, its own Raft health.
    let body = scrape(f);
    for n in names {
        assert!(
            body.contains(&format!("aether_node_cpu_ratio{{node=\"{n}\"}}")),
            "{n} missing:\n{body}"
        );
    }
    for name in [
        "aether_raft_term",
        "aether_raft_commit_index",
        "aether_raft_applied_index",
        "aether_metrics_snapshot_age_seconds",
        "aether_metrics_bytes_received_total",
        "aether_peer_reachable",
        "aether_node_health",
        "aether_decisions",
        "aether_model_loaded",
    ] {
        assert!(
            sample_value(&body, name).is_some(),
            "{name} missing:\n{body}"
        );
    }
    let file = c.root.path().join("scrape.prom");
    std::fs::write(&file, &body).unwrap();
    let out = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn silent_nodes_go_suspect_then_down_and_a_new_leader_has_a_fresh_snapshot() {
    let env = [
        ("AETHER_METRICS_SUSPECT_AFTER", "2s"),
        ("AETHER_METRICS_DOWN_AFTER", "4s"),
    ];
    let mut c = TestCluster::single("n1", &env);
    c.join(&["n2", "n3"], &env);
    c.wait_voters(3);
    let names = ["n1", "n2", "n3"];
    for n in &c.nodes {
        wait_for(
            &format!("{} shows all three nodes", n.name),
            Duration::from_secs(20),
            || fresh_view(n, &names, 3_000),
        );
    }
    let li = c.leader_index();
    let fi = (li + 1) % 3;
    let oi = (li + 2) % 3;
    let frozen = c.nodes[fi].name.clone();
    let health_of = |observer: &Node, name: &str| -> Option<String> {
        let out = observer.cli(&["nodes", "--output", "json"]);
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        v.as_array()?
            .iter()
            .find(|m| m["name"] == name)
            .map(|m| m["health"].as_str().unwrap_or("").to_string())
    };

    // Freeze a follower: its updates stop, the process stays.
    let pid = c.nodes[fi].pid().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let observer = &c.nodes[oi];
    wait_for(
        &format!("{frozen} marked suspect"),
        Duration::from_secs(15),
        || (health_of(observer, &frozen)? == "suspect").then_some(()),
    );
    wait_for(
        &format!("{frozen} marked down"),
        Duration::from_secs(15),
        || (health_of(observer, &frozen)? == "down").then_some(()),
    );
    let m = observer.metrics(&["--node", &frozen]).unwrap();
    assert_eq!(m["nodes"][0]["health"], "down");
    assert!(m["nodes"][0]["sample_age_ms"].as_u64().unwrap() >= 4_000);
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success()
    );
    wait_for(
        &format!("{frozen} ready again"),
        Duration::from_secs(15),
        || (health_of(observer, &frozen)? == "ready").then_some(()),
    );
    let events = observer.cli(&["events", "--limit", "50"]);
    let events = stdout(&events);
    for verdict in [
        "suspect: no metrics update for",
        "down: no metrics update for",
        "ready: metrics updates resumed",
    ] {
        assert!(
            events.contains(&format!("mark node {frozen} (id ")) && events.contains(verdict),
            "event '{verdict}' missing:\n{events}"
        );
    }

    // kill -9 of the leader: within 3 s a follower's snapshot comes from a new leader, is under
    // 2 s old and covers every live node with a sample under 2 s old.
    wait_for("every node ready again", Duration::from_secs(20), || {
        fresh_view(observer, &names, 2_000)
    });
    let old = c.nodes[li].name.clone();
    let leader_pid = c.nodes[li].pid().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-9", &leader_pid])
            .status()
            .unwrap()
            .success()
    );
    let killed = Instant::now();
    let live: Vec<&str> = names.iter().copied().filter(|n| *n != old).collect();
    let m = wait_for(
        "a follower's snapshot from a new leader covers the live nodes, fresh",
        Duration::from_secs(3),
        || {
            let m = observer.metrics(&[])?;
            if m["leader"] == old.as_str() || m["snapshot_age_ms"].as_u64()? >= 2_000 {
                return None;
            }
            let ages = sample_ages(&m);
            live.iter()
                .all(|n| ages.iter().any(|(name, a)| name == n && *a < 2_000))
                .then_some(m)
        },
    );
    eprintln!(
        "fresh snapshot from {} {} ms after the kill",
        m["leader"],
        killed.elapsed().as_millis()
    );
}
