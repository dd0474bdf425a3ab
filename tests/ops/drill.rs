//! `aether drill run` on real nodes: a dry run changes nothing, an unknown scenario is a usage
//! error, leader-loss hands leadership to another node and the old leader follows it, a
//! partitioned node catches up, a crashed slice is restarted by the supervisors.

use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

/// `aether drill run ARGS… --output json` on `node`: exit code and the report.
fn drill(node: &Node, args: &[&str]) -> (Option<i32>, Value, String) {
    let mut all = vec!["drill", "run"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--output", "json"]);
    let out = node.cli(&all);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    eprintln!("{}", report["verdict"]);
    (out.status.code(), report, stderr(&out))
}

/// The audit lines (`what`) the node shows, newest first.
fn events(node: &Node) -> Vec<String> {
    let out = node.cli(&["events", "--limit", "10000", "--output", "json"]);
    assert!(out.status.success(), "events: {}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e["what"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn term(node: &Node) -> u64 {
    node.status().unwrap()["term"].as_u64().unwrap()
}

/// Every node is ready, follows one leader, and is a voter.
fn settled(c: &TestCluster) -> Option<String> {
    let mut leaders = std::collections::BTreeSet::new();
    for n in &c.nodes {
        let s = n.status()?;
        if s["node"]["ready"] != true {
            return None;
        }
        leaders.insert(s["leader"]["name"].as_str()?.to_string());
    }
    (leaders.len() == 1).then(|| leaders.into_iter().next().unwrap())
}

#[test]
fn dry_run_leader_loss_and_partition_on_three_nodes() {
    let c = TestCluster::three();
    let l = c.leader_index();
    let old = c.nodes[l].name.clone();

    // A usage error names the scenarios, and needs no node.
    let out = c.nodes[0].cli(&["drill", "run", "leader-kill"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    for s in ["leader-loss", "partition NODE", "node-loss NODE", "slice-crash BLUEPRINT/SLICE"] {
        assert!(stderr(&out).contains(s), "{}", stderr(&out));
    }
    let out = c.nodes[0].cli(&["drill", "run", "partition", "n9"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no member is named 'n9'"), "{}", stderr(&out));

    // A dry run says what it would do and changes nothing.
    let (term0, events0) = (term(&c.nodes[l]), events(&c.nodes[l]));
    let out = c.nodes[l].cli(&["drill", "run", "leader-loss", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("dry run, nothing was changed"), "{text}");
    assert!(text.contains(&format!("{old} (the leader now)")), "{text}");
    assert!(text.contains("restore:"), "{text}");
    let (code, plan, err) = drill(&c.nodes[0], &["partition", "n3", "--for", "2s", "--dry-run"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(plan["plan"]["hold_ms"], 2000, "{plan}");
    assert_eq!(term(&c.nodes[l]), term0, "a dry run holds no election");
    assert_eq!(events(&c.nodes[l]), events0, "a dry run writes nothing");
    assert_eq!(c.nodes[l].leader().as_deref(), Some(old.as_str()));

    // leader-loss, driven from the leader's own node: another node leads, writes resume, the
    // old leader follows the new one.
    let (code, r, err) = drill(&c.nodes[l], &["leader-loss"]);
    assert_eq!(code, Some(0), "{err}\n{r:#}");
    assert_eq!(r["recovered"], true, "{r:#}");
    assert_eq!(r["old_leader"], old.as_str(), "{r:#}");
    let new = r["new_leader"].as_str().expect("a new leader").to_string();
    assert_ne!(new, old, "{r:#}");
    assert!(r["leader_after_ms"].is_u64(), "{r:#}");
    assert!(r["writes_resumed_after_ms"].is_u64(), "{r:#}");
    assert!(r["term_after"].as_u64() > r["term_before"].as_u64(), "{r:#}");
    assert!(
        r["verdict"]
            .as_str()
            .unwrap()
            .starts_with(&format!("leader-loss: new leader {new} after ")),
        "{r:#}"
    );
    let s = c.nodes[l].status().unwrap();
    assert_eq!(s["node"]["role"], "follower", "{s:#}");
    assert_eq!(s["leader"]["name"], new.as_str(), "{s:#}");
    assert_eq!(
        wait_for("every node ready under one leader", Duration::from_secs(20), || settled(&c)),
        new
    );
    let ev = events(&c.nodes[0]);
    assert!(
        ev.iter().any(|e| e.starts_with("drill leader-loss started: cut '")),
        "{ev:#?}"
    );
    assert!(
        ev.iter().any(|e| e.starts_with("drill leader-loss ended: leader-loss: new leader")),
        "{ev:#?}"
    );

    // partition n3 for 2 s, driven from n1: writes go on, n3 has them all afterwards.
    let (code, r, err) = drill(&c.nodes[0], &["partition", "n3", "--for", "2s"]);
    assert_eq!(code, Some(0), "{err}\n{r:#}");
    assert_eq!(r["recovered"], true, "{r:#}");
    assert!(r["probe_writes"].as_u64().unwrap() > 0, "{r:#}");
    assert!(r["caught_up_after_ms"].is_u64(), "{r:#}");
    let last = r["last_probe"].as_str().expect("a probe went through").to_string();
    assert_eq!(c.nodes[2].local_get("drill/probe"), Some(last), "n3 caught up");
    assert_eq!(
        c.nodes[2].status().unwrap()["node"]["ready"],
        true,
        "n3 is ready"
    );
    let ev = events(&c.nodes[2]);
    assert!(
        ev.iter().any(|e| e.starts_with("drill partition ended: partition:")),
        "{ev:#?}"
    );
}
