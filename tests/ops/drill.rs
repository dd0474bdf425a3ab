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
    eprintln!("{}{}", stderr(&out), report["verdict"]);
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
    for s in [
        "leader-loss",
        "partition NODE",
        "node-loss NODE",
        "slice-crash BLUEPRINT/SLICE",
    ] {
        assert!(stderr(&out).contains(s), "{}", stderr(&out));
    }
    let out = c.nodes[0].cli(&["drill", "run", "partition", "n9"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no member is named 'n9'"),
        "{}",
        stderr(&out)
    );

    // A dry run says what it would do and changes nothing.
    let (term0, events0) = (term(&c.nodes[l]), events(&c.nodes[l]));
    let out = c.nodes[l].cli(&["drill", "run", "leader-loss", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("dry run, nothing was changed"), "{text}");
    assert!(text.contains(&format!("{old} (the leader now)")), "{text}");
    assert!(text.contains("restore:"), "{text}");
    let (code, plan, err) = drill(
        &c.nodes[0],
        &["partition", "n3", "--for", "2s", "--dry-run"],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(plan["plan"]["hold_ms"], 2000, "{plan}");
    assert_eq!(term(&c.nodes[l]), term0, "a dry run holds no election");
    assert_eq!(events(&c.nodes[l]), events0, "a dry run writes nothing");
    assert_eq!(c.nodes[l].leader().as_deref(), Some(old.as_str()));

    // leader-loss, driven from the leader's own node: another node leads, writes resume, the
    // old leader follows the new one.
    let (code, r, err) = drill(&c.nodes[l], &["leader-loss"]);
    assert_eq!(code, Some(0), "{err}\n{r:#}");
    // Progress came on stderr as it went.
    assert!(err.contains("drill: leader-loss started: cut '"), "{err}");
    assert!(err.contains("drill: new leader "), "{err}");
    assert!(err.contains("drill: writes resumed after "), "{err}");
    assert_eq!(r["recovered"], true, "{r:#}");
    assert_eq!(r["old_leader"], old.as_str(), "{r:#}");
    let new = r["new_leader"].as_str().expect("a new leader").to_string();
    assert_ne!(new, old, "{r:#}");
    assert!(r["leader_after_ms"].is_u64(), "{r:#}");
    assert!(r["writes_resumed_after_ms"].is_u64(), "{r:#}");
    assert!(
        r["term_after"].as_u64() > r["term_before"].as_u64(),
        "{r:#}"
    );
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
        wait_for(
            "every node ready under one leader",
            Duration::from_secs(20),
            || settled(&c)
        ),
        new
    );
    // The drill's start and end records (n1 applies them when it does).
    wait_for("the drill's records on n1", Duration::from_secs(10), || {
        let ev = events(&c.nodes[0]);
        let started = ev
            .iter()
            .any(|e| e.starts_with("drill leader-loss started: cut '"));
        let ended = ev
            .iter()
            .any(|e| e.starts_with("drill leader-loss ended: leader-loss: new leader"));
        (started && ended).then_some(())
    });

    // partition n3 for 2 s, driven from n1: writes go on, n3 has them all afterwards.
    let (code, r, err) = drill(&c.nodes[0], &["partition", "n3", "--for", "2s"]);
    assert_eq!(code, Some(0), "{err}\n{r:#}");
    assert_eq!(r["recovered"], true, "{r:#}");
    assert!(r["probe_writes"].as_u64().unwrap() > 0, "{r:#}");
    assert!(r["caught_up_after_ms"].is_u64(), "{r:#}");
    let last = r["last_probe"]
        .as_str()
        .expect("a probe went through")
        .to_string();
    assert_eq!(
        c.nodes[2].local_get("drill/probe"),
        Some(last),
        "n3 caught up"
    );
    assert_eq!(
        c.nodes[2].status().unwrap()["node"]["ready"],
        true,
        "n3 is ready"
    );
    wait_for(
        "the drill's end record on n3",
        Duration::from_secs(10),
        || {
            events(&c.nodes[2])
                .iter()
                .any(|e| e.starts_with("drill partition ended: partition:"))
                .then_some(())
        },
    );
}

/// Marks the instance processes of this test run (they inherit it from the daemons).
fn run_id() -> String {
    format!("{}-drill", std::process::id())
}

/// `blueprint show app` rows: instance → (node, state, pid), when every one is active.
fn active(n: &Node, want: usize) -> Option<Vec<(String, String, u64)>> {
    let out = n.cli(&["blueprint", "show", "app", "--output", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    let rows = v[0]["instances"].as_array()?;
    let out: Vec<(String, String, u64)> = rows
        .iter()
        .filter(|r| r["state"] == "active" && r["note"].is_null())
        .map(|r| {
            Some((
                r["instance"].as_str()?.to_string(),
                r["node"].as_str()?.to_string(),
                r["pid"].as_u64()?,
            ))
        })
        .collect::<Option<_>>()?;
    (out.len() == want && rows.len() == want).then_some(out)
}

#[test]
fn slice_crash_and_node_loss_with_a_tiny_blueprint() {
    let id = run_id();
    let env = [
        ("AETHER_METRICS_SUSPECT_AFTER", "2s"),
        ("AETHER_METRICS_DOWN_AFTER", "3s"),
        ("AETHER_DEPLOY_RESCHEDULE_AFTER", "2s"),
        ("AETHER_DEPLOY_RESTART_BACKOFF", "200ms"),
        ("TEST_RUN", id.as_str()),
    ];
    let _reaper = Reaper(id.clone());
    let c = TestCluster::three_with(&env);
    wait_for(
        "every node in the leader's metrics",
        Duration::from_secs(20),
        || {
            let l = &c.nodes[c.leader_index()];
            (l.metrics(&[])?["nodes"].as_array()?.len() == 3).then_some(())
        },
    );
    let file = c.root.path().join("app.toml");
    std::fs::write(
        &file,
        "name = \"app\"\n\n[[slices]]\nname = \"web\"\ncommand = [\"sleep\", \"600\"]\ninstances = 3\nmax = 6\nresources = { cpu = 0.01, memory = \"8MiB\" }\nstop_timeout = \"1s\"\n",
    )
    .unwrap();
    let out = c.nodes[0].cli(&["blueprint", "apply", file.to_str().unwrap()]);
    assert!(out.status.success(), "apply: {}", stderr(&out));
    let before = wait_for("3 active instances", Duration::from_secs(60), || {
        active(&c.nodes[0], 3)
    });

    // Every instance is killed on its node and restarted by its supervisor.
    let (code, r, err) = drill(&c.nodes[0], &["slice-crash", "app/web"]);
    assert_eq!(code, Some(0), "{err}\n{r:#}");
    assert_eq!(r["instances"], 3, "{r:#}");
    assert_eq!(r["killed"], 3, "{r:#}");
    assert!(r["restarts"].as_u64().unwrap() >= 3, "{r:#}");
    assert!(r["ready_after_ms"].is_u64(), "{r:#}");
    let after = active(&c.nodes[0], 3).expect("all active after the drill");
    for (inst, _, pid) in &before {
        let now = after.iter().find(|(i, ..)| i == inst).expect("still there");
        assert_ne!(now.2, *pid, "{inst} runs a new process");
    }
    wait_for(
        "the drill's start record on n2",
        Duration::from_secs(10),
        || {
            events(&c.nodes[1])
                .iter()
                .any(|e| e.starts_with("drill slice-crash started on app/web"))
                .then_some(())
        },
    );

    // node-loss of a follower that holds an instance: marked down, its instances move, it
    // comes back ready.
    let leader = c.nodes[c.leader_index()].name.clone();
    let target = after
        .iter()
        .map(|(_, n, _)| n.clone())
        .find(|n| *n != leader)
        .expect("an instance on a follower");
    let (code, r, err) = drill(&c.nodes[0], &["node-loss", &target]);
    assert_eq!(code, Some(0), "{err}\n{r:#}");
    assert!(r["marked_down_after_ms"].is_u64(), "{r:#}");
    assert!(r["moved_instances"].as_u64().unwrap() >= 1, "{r:#}");
    assert!(r["moved_after_ms"].is_u64(), "{r:#}");
    assert!(r["back_ready_after_ms"].is_u64(), "{r:#}");
    wait_for(
        "every node ready under one leader",
        Duration::from_secs(20),
        || settled(&c),
    );
}

/// A node cut off by a drill heals by itself at the fault's deadline even when the node that
/// drives the drill dies; a second drill is refused while one runs, and so is one that would
/// take the quorum away.
#[test]
fn a_cut_off_node_heals_by_itself_when_the_driver_dies() {
    let mut c = TestCluster::three();
    let l = c.leader_index();
    let others: Vec<usize> = (0..3).filter(|i| *i != l).collect();
    let (t, s) = (others[0], others[1]);
    let target = c.nodes[t].name.clone();
    let mut driver = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(&c.nodes[l].dir)
        .args(["drill", "run", "partition", &target, "--for", "6s"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        &format!("the leader to see '{target}' cut off"),
        Duration::from_secs(10),
        || {
            let st = c.nodes[l].status()?;
            st["members"]
                .as_array()?
                .iter()
                .any(|m| m["name"] == target.as_str() && m["reachable"] == false)
                .then_some(())
        },
    );

    // One drill at a time, whichever node is asked.
    let out = c.nodes[s].cli(&["drill", "run", "leader-loss"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("another drill is running: '{target}' is cut off")),
        "{}",
        stderr(&out)
    );

    // The driving node dies mid-drill: the two left need the cut-off node for a quorum, and
    // get it back when its isolation runs out.
    c.nodes[l].kill9();
    let _ = driver.wait();
    let dead = c.nodes[l].name.clone();
    wait_for(
        "the two nodes left to elect a leader once the cut-off one heals",
        Duration::from_secs(30),
        || {
            let (a, b) = (c.nodes[s].status()?, c.nodes[t].status()?);
            let ready = a["node"]["ready"] == true && b["node"]["ready"] == true;
            let la = a["leader"]["name"].as_str()?;
            (ready && la != dead && b["leader"]["name"] == la).then_some(())
        },
    );

    // With one voter of three down, cutting off another would take the quorum away: refused
    // with the reason, and nothing changes.
    let term = c.nodes[s].status().unwrap()["term"].clone();
    let out = c.nodes[s].cli(&["drill", "run", "partition", &target]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "drill refused: cutting off '{target}' would leave 1 of 3 voters up and a quorum needs 2: bring back '{dead}' first"
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(c.nodes[s].status().unwrap()["term"], term);
    assert_eq!(c.nodes[t].status().unwrap()["node"]["ready"], true);
}
