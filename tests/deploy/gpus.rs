//! GPUs on 3 real nodes: each node offers the GPUs `deploy.gpus` lists (this machine may have
//! none, so they are listed by hand), placement counts them, every instance sees only its own
//! (CUDA_VISIBLE_DEVICES), an instance that asks for none sees none, and one more than the
//! cluster has stays pending with every node named.

use std::collections::BTreeMap;
use std::time::Duration;

use super::harness::*;
use serde_json::Value;

const BP: &str = "train";

fn run_id() -> String {
    format!("{}-{BP}", std::process::id())
}

/// Rows of `blueprint show` for `BP` on `n`.
fn rows(n: &Node) -> Option<Vec<Value>> {
    super::instance_rows(n, BP)
}

/// Instance → (node, GPUs reported, CUDA_VISIBLE_DEVICES of its process) once every row of
/// `slice` is its placed copy, active.
fn seen(n: &Node, slice: &str, count: usize) -> Option<BTreeMap<String, (String, String, String)>> {
    let procs = live_processes();
    let mut out = BTreeMap::new();
    for r in rows(n)?.iter().filter(|r| {
        r["instance"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{BP}/{slice}/"))
    }) {
        if r["state"] != "active" || !r["note"].is_null() {
            return None;
        }
        let pid = r["pid"].as_u64()? as u32;
        let p = procs.iter().find(|p| p.pid == pid)?;
        let gpus: Vec<String> = r["gpus"]
            .as_array()?
            .iter()
            .map(|g| g.to_string())
            .collect();
        out.insert(
            r["instance"].as_str()?.to_string(),
            (
                r["node"].as_str()?.to_string(),
                gpus.join(","),
                p.env.get("CUDA_VISIBLE_DEVICES")?.clone(),
            ),
        );
    }
    (out.len() == count).then_some(out)
}

#[test]
fn instances_get_their_own_gpus_from_what_each_node_offers() {
    let run = run_id();
    let _reaper = Reaper(run.clone());
    let with = |gpus: &'static str| [("AETHER_DEPLOY_GPUS", gpus), ("TEST_RUN", run.as_str())];
    let mut c = TestCluster::single("n1", &with("0,1"));
    c.join(&["n2"], &with("1"));
    c.join(&["n3"], &with("none"));
    c.wait_voters(3);
    let n1 = &c.nodes[0];
    wait_for(
        "every node in n1's metrics",
        Duration::from_secs(20),
        || (n1.metrics(&[])?["nodes"].as_array()?.len() == 3).then_some(()),
    );
    let file = c.root.path().join("train.toml");
    let slice = |name: &str, n: u32, gpu: u32| {
        format!(
            "[[slices]]\nname = \"{name}\"\ncommand = [\"sleep\", \"600\"]\ninstances = {n}\n\
             max = 8\nresources = {{ cpu = 0.1, memory = \"16MiB\", gpu = {gpu} }}\n\
             stop_timeout = \"2s\"\n\n"
        )
    };
    std::fs::write(
        &file,
        format!(
            "name = \"{BP}\"\n\n{}{}",
            slice("gpu", 3, 1),
            slice("cpu", 1, 0)
        ),
    )
    .unwrap();
    let out = n1.cli(&["blueprint", "apply", file.to_str().unwrap()]);
    assert!(out.status.success(), "apply: {}", stderr(&out));

    // 3 GPUs in the cluster (n1: 0 and 1, n2: 1, n3: none), 3 instances asking for one each.
    let gpu = wait_for("3 GPU instances active", Duration::from_secs(60), || {
        seen(n1, "gpu", 3)
    });
    let mut held: Vec<(String, String)> = gpu
        .values()
        .map(|(node, reported, visible)| {
            assert_eq!(
                reported, visible,
                "the report names the GPUs it sees: {gpu:?}"
            );
            (node.clone(), visible.clone())
        })
        .collect();
    held.sort();
    assert_eq!(
        held,
        [
            ("n1".to_string(), "0".to_string()),
            ("n1".into(), "1".into()),
            ("n2".into(), "1".into())
        ],
        "{gpu:?}"
    );
    // Asking for none, it sees none.
    let cpu = wait_for("the cpu instance active", Duration::from_secs(30), || {
        seen(n1, "cpu", 1)
    });
    let (_, reported, visible) = cpu.values().next().unwrap();
    assert_eq!((reported.as_str(), visible.as_str()), ("", ""), "{cpu:?}");

    // One more than the cluster has: pending, with each node's reason.
    let out = n1.cli(&["scale", &format!("{BP}/gpu"), "4"]);
    assert!(out.status.success(), "scale: {}", stderr(&out));
    let why = wait_for("a pending GPU instance", Duration::from_secs(30), || {
        rows(n1)?
            .iter()
            .find(|r| r["state"] == "pending")
            .and_then(|r| r["note"].as_str().map(String::from))
    });
    for node in ["n1", "n2", "n3"] {
        assert!(why.contains(&format!("{node} has 0 GPUs")), "{why}");
    }
}
