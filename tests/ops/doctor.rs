//! `aether doctor` on a machine without a node (a fresh data dir), and against a running
//! three-node cluster before and after one member is killed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use super::harness::{BIN, TestCluster, free_port, stderr, stdout, wait_for};

/// `aether --data-dir DIR ARGS…` with the node's ports set to free ones (so the ports check
/// does not depend on what else runs on this machine).
fn doctor(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .arg("doctor")
        .args(args)
        .env("AETHER_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("AETHER_HTTP", format!("127.0.0.1:{}", free_port()))
        .env_remove("AETHER_CONFIG")
        .env_remove("AETHER_SOCKET")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// The JSON list a `--output json` run printed.
fn checks(out: &Output) -> Vec<Value> {
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor printed no JSON ({e}): {}", stdout(out)))
        .as_array()
        .expect("a list of checks")
        .clone()
}

fn check<'a>(list: &'a [Value], name: &str) -> &'a Value {
    list.iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no '{name}' check in {list:?}"))
}

/// A fresh, private data dir.
fn fresh() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    d
}

const LOCAL: &[&str] = &[
    "cpu", "kernel", "fd-limit", "clock", "disk", "ports", "data-dir", "certs", "gpu", "model",
];

#[test]
fn without_a_node_it_checks_this_machine_and_skips_the_cluster() {
    let d = fresh();
    let out = doctor(d.path(), &["--output", "json"]);
    let list = checks(&out);
    let names: Vec<&str> = list.iter().map(|c| c["name"].as_str().unwrap()).collect();
    let mut want = LOCAL.to_vec();
    want.extend(["raft", "peers", "skew"]);
    assert_eq!(names, want);
    for c in ["raft", "peers", "skew"] {
        let c = check(&list, c);
        assert_eq!(c["status"], "skip", "{c}");
        assert!(
            c["summary"]
                .as_str()
                .unwrap()
                .starts_with("no node running at '"),
            "{c}"
        );
    }
    for c in ["ports", "data-dir"] {
        assert_eq!(check(&list, c)["status"], "ok", "{}", check(&list, c));
    }
    // No certificates before the node's first start; no model pulled.
    assert_eq!(check(&list, "certs")["status"], "skip");
    let model = check(&list, "model");
    assert_eq!(model["status"], "warn");
    assert!(model["fix"].as_str().unwrap().contains("aether model pull"));
    // Failed checks, and only they, fail the run.
    let failed = list.iter().any(|c| c["status"] == "fail");
    assert_eq!(
        out.status.code(),
        Some(i32::from(failed)),
        "{}",
        stderr(&out)
    );

    // The text form: one line per check, led by its mark; the fix under each problem.
    let out = doctor(
        d.path(),
        &["cpu", "fd-limit", "ports", "data-dir", "model", "raft"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for (mark, name) in [
        ("✓", "cpu"),
        ("✓", "ports"),
        ("✓", "data-dir"),
        ("!", "model"),
        ("-", "raft"),
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{mark} {name} "))),
            "no '{mark} {name}' line in:\n{text}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("fix: 'aether model pull'")),
        "{text}"
    );
    assert!(text.contains("\n6 check(s): "), "{text}");
}

#[test]
fn list_names_every_check() {
    let d = fresh();
    let out = doctor(d.path(), &["--list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for name in LOCAL.iter().chain(&["raft", "peers", "skew"]) {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{name} "))),
            "'{name}' not listed:\n{text}"
        );
    }
}

#[test]
fn disk_alone_reports_the_fsync_probe_and_leaves_no_file() {
    let d = fresh();
    let out = doctor(d.path(), &["disk", "--output", "json"]);
    let list = checks(&out);
    assert_eq!(list.len(), 1, "{list:?}");
    let disk = &list[0];
    assert_eq!(disk["name"], "disk");
    let f = &disk["figures"];
    assert!(f["fsync_writes"].as_u64().unwrap() > 0, "{disk}");
    assert!(f["fsync_p50_ms"].as_f64().unwrap() <= f["fsync_p99_ms"].as_f64().unwrap());
    assert!(f["writes_per_s"].as_f64().unwrap() > 0.0, "{disk}");
    assert_eq!(f["fsync_threshold_ms"], 10.0);
    assert!(["pass", "fail"].contains(&f["fsync"].as_str().unwrap()));
    assert!(f["total_bytes"].as_u64().unwrap() >= f["free_bytes"].as_u64().unwrap());
    // The verdict follows the probe: a failed probe fails the check and the run.
    let fsync_failed = f["fsync"] == "fail";
    if fsync_failed {
        assert_eq!(disk["status"], "fail");
    }
    assert_eq!(
        out.status.code(),
        Some(i32::from(disk["status"] == "fail")),
        "{}",
        stderr(&out)
    );
    let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().flatten().collect();
    assert!(left.is_empty(), "the probe left {left:?}");
}

#[test]
fn an_unknown_check_is_bad_usage_and_runs_nothing() {
    let d = fresh();
    let out = doctor(d.path(), &["disk", "dsik"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("unknown check 'dsik'"), "{err}");
    assert!(err.contains("cpu, kernel, fd-limit, clock, disk"), "{err}");
    assert!(out.stdout.is_empty(), "{}", stdout(&out));
}

#[test]
fn a_world_writable_data_dir_fails_with_the_chmod() {
    let d = fresh();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = doctor(d.path(), &["data-dir", "--output", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let list = checks(&out);
    let c = check(&list, "data-dir");
    assert_eq!(c["status"], "fail", "{c}");
    assert!(c["summary"].as_str().unwrap().contains("mode 0777"), "{c}");
    assert_eq!(
        c["fix"].as_str().unwrap(),
        format!("chmod 0700 '{}'", d.path().display())
    );
    let text = stdout(&doctor(d.path(), &["data-dir"]));
    assert!(text.starts_with("✗ data-dir "), "{text}");
}

#[test]
fn in_a_cluster_it_sees_the_leader_every_peer_and_their_clocks_then_a_dead_peer() {
    let mut c = TestCluster::three();
    let n1 = &c.nodes[0];
    let out = doctor(&n1.dir, &["--output", "json"]);
    let list = checks(&out);
    let raft = check(&list, "raft");
    assert_eq!(raft["status"], "ok", "{raft}");
    assert!(
        ["n1", "n2", "n3"].contains(&raft["figures"]["leader"].as_str().unwrap()),
        "{raft}"
    );
    assert_eq!(raft["figures"]["voters"], 3, "{raft}");
    let peers = check(&list, "peers");
    assert_eq!(peers["status"], "ok", "{peers}");
    let skew = check(&list, "skew");
    for (i, name) in ["n2", "n3"].into_iter().enumerate() {
        let p = &peers["figures"][name];
        assert_eq!(p["reachable"], true, "{peers}");
        assert_eq!(p["addr"], c.nodes[i + 1].addr(), "{peers}");
        let rtt = p["rtt_ms"].as_f64().unwrap();
        assert!(rtt >= 0.0, "{peers}");
        // One machine, one clock: the measured skew is the ping's error alone, which the
        // middle-of-the-round-trip estimate bounds by half the round trip.
        assert!(
            skew["figures"][name].as_f64().unwrap().abs() <= rtt / 2.0 + 1.0,
            "{skew} (rtt {rtt} ms)"
        );
    }
    // A ping times out after 2 s, so one clock never looks 5 s off.
    assert_ne!(skew["status"], "fail", "{skew}");
    // The node's own files: its keys and admin socket 0600, its certificates far from expiry.
    let dir = check(&list, "data-dir");
    assert_eq!(dir["status"], "ok", "{dir}");
    assert!(
        dir["summary"]
            .as_str()
            .unwrap()
            .contains("admin socket 0600"),
        "{dir}"
    );
    let certs = check(&list, "certs");
    assert_eq!(certs["status"], "ok", "{certs}");
    for which in ["node_days_left", "ca_days_left"] {
        assert!(certs["figures"][which].as_i64().unwrap() > 30, "{certs}");
    }
    // The ports are held by the running node, which is fine; checked with the node's own.
    let held = Command::new(BIN)
        .arg("--data-dir")
        .arg(&n1.dir)
        .args(["doctor", "ports", "--output", "json"])
        .env("AETHER_LISTEN", n1.addr())
        .env("AETHER_HTTP", format!("127.0.0.1:{}", n1.http))
        .output()
        .unwrap();
    let ports = checks(&held);
    assert_eq!(ports[0]["status"], "ok", "{}", ports[0]);
    assert_eq!(
        ports[0]["figures"]["quic_udp"]["state"],
        "held by this node"
    );

    let dead = c.nodes[2].addr();
    c.nodes[2].kill9();
    let n1 = &c.nodes[0];
    let (out, peers) = wait_for(
        "n1's doctor to find n3 unreachable",
        Duration::from_secs(30),
        || {
            let out = doctor(&n1.dir, &["peers", "--output", "json"]);
            let p = checks(&out)[0].clone();
            (p["figures"]["n3"]["reachable"] == false).then_some((out, p))
        },
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(peers["status"], "fail", "{peers}");
    assert_eq!(peers["figures"]["n2"]["reachable"], true, "{peers}");
    let summary = peers["summary"].as_str().unwrap();
    assert!(
        summary.starts_with(&format!("'n3' ({dead}) unreachable")),
        "{summary}"
    );
    let text = stdout(&doctor(&n1.dir, &["peers"]));
    assert!(text.starts_with("✗ peers "), "{text}");
    assert!(
        text.contains("fix: check that 'aether node' runs"),
        "{text}"
    );
}

#[test]
fn a_single_node_has_no_peers_and_a_stopped_one_fails_instead_of_hanging() {
    let c = TestCluster::single("solo", &[]);
    let n = &c.nodes[0];
    let out = doctor(&n.dir, &["raft", "peers", "skew", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let list = checks(&out);
    assert_eq!(check(&list, "raft")["figures"]["leader"], "solo");
    assert_eq!(check(&list, "peers")["summary"], "no other members");
    assert_eq!(check(&list, "skew")["status"], "skip");

    // Stopped, the node still has its socket (connections are accepted) but never answers.
    n.signal(libc::SIGSTOP);
    let out = doctor(&n.dir, &["raft", "--output", "json"]);
    n.signal(libc::SIGCONT);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let raft = &checks(&out)[0];
    assert_eq!(raft["status"], "fail", "{raft}");
    assert!(
        raft["summary"]
            .as_str()
            .unwrap()
            .contains("did not answer: no answer within 10 s"),
        "{raft}"
    );
}
