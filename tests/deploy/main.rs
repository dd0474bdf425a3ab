//! Blueprints on real processes over 127.0.0.1: apply with a placement plan (dry run and for
//! real), versions, list and show from any node, scale within bounds, removal, and malformed
//! files refused with a located message and nothing changed. `rollouts.rs`: the operator's
//! side of a rollout (dry run, apply, list, status, history, pause, abort, refusals).
//! `isolation.rs`: instances as their own user, a clean environment, the node out of reach.
//! `limits.rs`: cgroup limits from a slice's resources (an OOM kill shown as such, a CPU quota).

mod gpus;
#[path = "../cluster/harness.rs"]
mod harness;
mod isolation;
mod limits;
mod processes;
mod rollouts;

use std::time::Duration;

use harness::*;
use serde_json::Value;

fn json(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The `blueprint show` rows of `blueprint` as node `n` sees them.
fn instance_rows(n: &Node, blueprint: &str) -> Option<Vec<Value>> {
    let out = n.cli(&["blueprint", "show", blueprint, "--output", "json"]);
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v[0]["instances"].as_array().cloned()
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|b| b["blueprint"]["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn blueprints_apply_with_a_plan_scale_within_bounds_and_bad_files_change_nothing() {
    let c = TestCluster::three();
    let (n1, n2, n3) = (&c.nodes[0], &c.nodes[1], &c.nodes[2]);
    // Placement needs each node's size from the metrics view of the node that plans (the
    // dry run below plans on n2, the apply on the leader).
    for n in [n1, n2] {
        wait_for(
            &format!("every node in {}'s metrics", n.name),
            Duration::from_secs(20),
            || (n.metrics(&[])?["nodes"].as_array()?.len() == 3).then_some(()),
        );
    }
    let file = c.root.path().join("shop.toml");
    std::fs::write(
        &file,
        "name = \"shop\"\n\n[[slices]]\nname = \"web\"\ncommand = [\"python3\", \"-m\", \"http.server\", \"${PORT}\"]\ninstances = 4\nmin = 1\nmax = 8\nresources = { cpu = 0.1, memory = \"64MiB\" }\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();

    let plan = json(&n2.cli(&["blueprint", "apply", f, "--dry-run", "--output", "json"]));
    let steps = plan["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 4, "{plan}");
    assert!(steps.iter().all(|s| s["action"] == "start"), "{plan}");
    let nodes: std::collections::BTreeSet<&str> =
        steps.iter().map(|s| s["node"].as_str().unwrap()).collect();
    assert!(nodes.len() >= 2, "spread over at least 2 nodes: {plan}");
    assert_eq!(plan["version"], Value::Null);
    assert!(names(&json(&n1.cli(&["blueprint", "list", "--output", "json"]))).is_empty());

    let applied = json(&n2.cli(&["blueprint", "apply", f, "--output", "json"]));
    assert_eq!(applied["version"], 1);
    let shown = wait_for("n3 has shop", Duration::from_secs(10), || {
        let out = n3.cli(&["blueprint", "show", "shop", "--output", "json"]);
        out.status.success().then(|| json(&out))
    });
    assert_eq!(shown[0]["blueprint"]["slices"][0]["instances"], 4);
    let again = json(&n1.cli(&["blueprint", "apply", f, "--output", "json"]));
    assert_eq!(again["version"], 2);
    assert!(
        again["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["action"] == "keep"),
        "re-applying the same file keeps every instance: {again}"
    );

    // Scale within min..=max; outside is refused with the bounds.
    let out = n3.cli(&["scale", "shop/web", "6"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "shop is now version 3");
    let out = n3.cli(&["scale", "shop/web", "9"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("'shop/web' takes 1..=8 instances, found 9"),
        "{}",
        stderr(&out)
    );
    let out = n3.cli(&["scale", "shop/api", "2"]);
    assert!(
        stderr(&out).contains("blueprint 'shop' has no slice 'api'"),
        "{}",
        stderr(&out)
    );
    let out = n3.cli(&["scale", "shop", "2"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let list = json(&n1.cli(&["blueprint", "list", "--output", "json"]));
    assert_eq!(list[0]["version"], 3);
    assert_eq!(list[0]["blueprint"]["slices"][0]["instances"], 6);

    // Malformed files: a located message, exit 2, and the stored blueprint unchanged.
    let bad = [
        (
            "instances = 4",
            "instances = 40",
            "slices[0].instances: expected a number within min..=max (1..=8), found 40",
        ),
        (
            "max = 8",
            "max = 8\nreplicas = 2",
            "slices[0].replicas: unknown field `replicas`",
        ),
        (
            "name = \"web\"",
            "name = \"web\"\nname = \"api\"",
            "duplicate key",
        ),
        (
            "command = [\"python3\", \"-m\", \"http.server\", \"${PORT}\"]",
            "command = []",
            "slices[0].command: expected a program",
        ),
    ];
    let good = std::fs::read_to_string(&file).unwrap();
    for (from, to, want) in bad {
        std::fs::write(&file, good.replacen(from, to, 1)).unwrap();
        let out = n2.cli(&["blueprint", "apply", f]);
        assert_eq!(out.status.code(), Some(2), "{to}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(f) && err.contains(want), "{to}:\n{err}");
    }
    // The stored blueprints, not their instances' rows (those move on as copies start).
    let stored = |v: &Value| -> Vec<Value> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|b| {
                let mut b = b.clone();
                b.as_object_mut().unwrap().remove("instances");
                b
            })
            .collect()
    };
    let after = json(&n1.cli(&["blueprint", "list", "--output", "json"]));
    assert_eq!(
        stored(&after),
        stored(&list),
        "refused files changed nothing"
    );

    // Drain: placement leaves the node out, `nodes` shows it; undrain brings it back.
    std::fs::write(&file, &good).unwrap();
    let out = n1.cli(&["drain", "n3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let state_of = |name: &str| -> String {
        let nodes = json(&n2.cli(&["nodes", "--output", "json"]));
        nodes
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .map(|m| m["state"].as_str().unwrap().to_string())
            .unwrap()
    };
    wait_for("n3 draining", Duration::from_secs(10), || {
        (state_of("n3") == "draining").then_some(())
    });
    let plan = json(&n2.cli(&["blueprint", "apply", f, "--dry-run", "--output", "json"]));
    let steps = plan["steps"].as_array().unwrap();
    assert!(
        steps
            .iter()
            .all(|s| s["node"] != "n3" || s["action"] == "stop"),
        "nothing starts or stays on a draining node: {plan}"
    );
    let out = n1.cli(&["drain", "n9"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no member named 'n9'"),
        "{}",
        stderr(&out)
    );
    assert!(n1.cli(&["undrain", "n3"]).status.success());
    wait_for("n3 ready", Duration::from_secs(10), || {
        (state_of("n3") == "ready").then_some(())
    });

    // Remove; removing again says so; show of an unknown blueprint names the stored ones.
    let out = n1.cli(&["blueprint", "rm", "shop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = n1.cli(&["blueprint", "rm", "shop"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no blueprint named 'shop'"));
    let out = n2.cli(&["blueprint", "show", "shop"]);
    assert_eq!(out.status.code(), Some(1));
    let events = stdout(&n1.cli(&["events", "--limit", "50"]));
    for what in [
        "apply blueprint shop (1 slices, 4 instances)",
        "scale shop/web to 6",
        "remove blueprint shop",
    ] {
        assert!(events.contains(what), "{what} missing:\n{events}");
    }
}
