//! The operator's side of rollouts on a real node: a dry run names the slice that would roll
//! out, an apply that changes a slice's command opens a rollout and says so, `rollout list`,
//! `status` (with and without the slice), `history` and `events` show it, a refused act prints
//! the cluster's message (exit 1), bad names are exit 2, and pause and abort go through Raft
//! with the operator's name. The policy keeps the rollout at its first step (a new copy counts
//! as healthy only after an hour), so what is asserted holds with the leader's engine running.

use std::time::Duration;

use super::harness::*;
use serde_json::Value;

/// The blueprint with `command` (a sleep of `secs`) and a policy that holds at `replace`.
fn blueprint(secs: u32) -> String {
    format!(
        "name = \"roll\"\n\n[[slices]]\nname = \"web\"\ncommand = [\"sleep\", \"{secs}\"]\ninstances = 2\nmin = 1\nmax = 4\nresources = {{ cpu = 0.01, memory = \"8MiB\" }}\nstop_timeout = \"1s\"\n\n[slices.update]\nmin_healthy_time = \"1h\"\nhealthy_deadline = \"24h\"\nprogress_deadline = \"24h\"\n\n[[slices]]\nname = \"side\"\ncommand = [\"sleep\", \"3600\"]\ninstances = 1\nmin = 1\nmax = 1\nresources = {{ cpu = 0.01, memory = \"8MiB\" }}\nstop_timeout = \"1s\"\n"
    )
}

fn ok(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", stderr(out));
    stdout(out)
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_str(&ok(out)).unwrap()
}

#[test]
fn a_changed_command_rolls_out_and_operators_follow_and_steer_it() {
    let c = TestCluster::single("n1", &[]);
    let n = &c.nodes[0];
    wait_for("n1 in its metrics", Duration::from_secs(20), || {
        (n.metrics(&[])?["nodes"].as_array()?.len() == 1).then_some(())
    });
    let file = c.root.path().join("roll.toml");
    let f = file.to_str().unwrap();
    std::fs::write(&file, blueprint(3600)).unwrap();
    ok(&n.cli(&["blueprint", "apply", f]));
    wait_for("3 copies active", Duration::from_secs(30), || {
        let v: Value = serde_json::from_slice(
            &n.cli(&["blueprint", "show", "roll", "--output", "json"])
                .stdout,
        )
        .ok()?;
        let rows = v[0]["instances"].as_array()?;
        (rows.iter().filter(|r| r["state"] == "active").count() == 3).then_some(())
    });
    assert!(ok(&n.cli(&["rollout", "list"])).contains("no rollout in progress"));

    // A dry run says what would roll out; nothing is stored.
    std::fs::write(&file, blueprint(3601)).unwrap();
    let dry = ok(&n.cli(&["blueprint", "apply", f, "--dry-run"]));
    assert!(
        dry.contains(
            "roll/web would roll out: rolling v1 → v2, 1 at a time, over its 2 copies (new copies start before old ones stop"
        ),
        "{dry}"
    );
    assert!(!dry.contains("roll/side would"), "{dry}");
    assert!(
        dry.contains("replace  roll/web/0")
            && dry.contains("rolls out to v2: rolling, 1 at a time"),
        "the copies of a slice that rolls out are replaced, not kept: {dry}"
    );
    assert!(dry.contains("keep     roll/side/0"), "{dry}");
    assert!(ok(&n.cli(&["rollout", "list"])).contains("no rollout in progress"));

    // The apply starts it and says how to follow it.
    let applied = ok(&n.cli(&["blueprint", "apply", f]));
    assert!(
        applied.contains(
            "rollout r-1 of roll/web started: rolling v1 → v2, 1 at a time; follow it with 'aether rollout status roll/web --watch'"
        ),
        "{applied}"
    );
    let list = json(&n.cli(&["rollout", "list", "--output", "json"]));
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["name"], "r-1");
    // Without a slice: the only slice of 'roll' with a rollout.
    let status = ok(&n.cli(&["rollout", "status", "roll"]));
    assert!(
        status.starts_with("r-1 roll/web rolling v1 → v2 running at replace"),
        "{status}"
    );
    wait_for(
        "a v2 copy beside the v1 copies",
        Duration::from_secs(30),
        || {
            let v = json(&n.cli(&["rollout", "status", "roll/web", "--output", "json"]));
            let copies = v["copies"].as_array()?;
            let of = |ver: u64| copies.iter().find(|c| c["version"] == ver).cloned();
            (of(2)?["active"] == 1 && of(1)?["assigned"] == 2).then_some(())
        },
    );

    // A refusal is the cluster's message, exit 1; bad names are exit 2.
    let refused = n.cli(&["rollout", "promote", "roll/web"]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("r-1: is at 'replace': only a canary is promoted"),
        "{}",
        stderr(&refused)
    );
    for (args, says) in [
        (
            vec!["rollout", "pause", "roll"],
            "expected BLUEPRINT/SLICE (e.g. shop/web), found 'roll'",
        ),
        (
            vec!["rollout", "pause", "roll/db"],
            "blueprint 'roll' has no slice 'db'; its slices: web, side",
        ),
        (
            vec!["rollout", "status", "roll/db"],
            "blueprint 'roll' has no slice 'db'; its slices: web, side",
        ),
        (
            vec!["rollout", "abort", "nope/web"],
            "no blueprint named 'nope'",
        ),
        (
            vec!["rollout", "undo", "roll/web", "--to", "x1"],
            "expected a blueprint version such as 7 or v7, found 'x1'",
        ),
    ] {
        let out = n.cli(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    let never = n.cli(&["rollout", "status", "roll/side"]);
    assert_eq!(never.status.code(), Some(1), "{}", stderr(&never));
    assert!(stderr(&never).contains("'roll/side' has never rolled out"));

    // Pause and abort go through Raft, named after the operator.
    let paused = ok(&n.cli(&["rollout", "pause", "roll/web"]));
    let me = local_actor(&n.name);
    assert!(
        paused.starts_with(&format!("r-1 roll/web: paused by {me}")),
        "{paused}"
    );
    let v = json(&n.cli(&["rollout", "status", "roll/web", "--output", "json"]));
    assert_eq!(v["state"], "paused", "{v}");
    let aborted = ok(&n.cli(&["rollout", "abort", "roll/web"]));
    assert!(
        aborted.contains(&format!("abort by {me}")) && aborted.contains("going back to v1"),
        "{aborted}"
    );
    let v = json(&n.cli(&["rollout", "status", "roll/web", "--output", "json"]));
    assert!(
        v["step"] == "revert" || v["state"] == "rolled-back",
        "aborted: {v}"
    );
    let history = ok(&n.cli(&["rollout", "history", "roll/web"]));
    assert!(
        history
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("r-1  roll/web  rolling")),
        "{history}"
    );
    let events = ok(&n.cli(&["events", "--limit", "50"]));
    assert!(events.contains("rollout pause roll/web"), "{events}");
    assert!(events.contains("rollout abort roll/web"), "{events}");
}
