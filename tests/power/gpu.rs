//! GPU health and energy per slice on real nodes: without a GPU the health rules stay quiet and
//! `aether metrics` says why, while energy per slice reports a busy instance's CPU estimate with
//! 0 GPU watts; with fake GPU samples (`AETHER_FAKE_GPU`), a new XID error becomes an anomaly,
//! keeps GPU work off the node and drains it through the `gpu-unhealthy` rule.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{Node, TestCluster, stderr, stdout, wait_for};

fn json(n: &Node, args: &[&str]) -> Option<Value> {
    let out = n.cli(args);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// A unique mark for this run's instances (the harness's reaper finds them by it).
fn run_mark(what: &str) -> String {
    format!("power-gpu-{what}-{}", std::process::id())
}

#[test]
fn without_a_gpu_the_rules_say_why_and_energy_counts_the_cpu_estimate() {
    let mark = run_mark("energy");
    let c = TestCluster::single(
        "n1",
        &[
            ("AETHER_GPU_CPU_WATTS_PER_CORE", "10"),
            ("TEST_RUN", mark.as_str()),
        ],
    );
    let _reaper = crate::harness::Reaper(mark.clone());
    let n = &c.nodes[0];
    // A busy loop, held to a fifth of a core where the node can limit it.
    let bp = c.root.path().join("burn.toml");
    std::fs::write(
        &bp,
        "name = \"gpu\"\n\n[[slices]]\nname = \"burn\"\ncommand = [\"sh\", \"-c\", \"while :; do :; done\"]\ninstances = 1\nmin = 1\nmax = 1\nresources = { cpu = 0.2, memory = \"8MiB\" }\nstop_timeout = \"1s\"\n",
    )
    .unwrap();
    let out = n.cli(&["blueprint", "apply", bp.to_str().unwrap()]);
    assert!(out.status.success(), "apply: {}", stderr(&out));

    let m = wait_for(
        "energy per slice for gpu/burn with the CPU it uses",
        Duration::from_secs(60),
        || {
            let m = n.metrics(&[])?;
            let e = m["energy"]
                .as_array()?
                .iter()
                .find(|e| e["slice"] == "gpu/burn")?;
            (e["cpu_cores"].as_f64()? > 0.05).then_some(m)
        },
    );
    let e = m["energy"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["slice"] == "gpu/burn")
        .unwrap();
    let cores = e["cpu_cores"].as_f64().unwrap();
    assert_eq!(e["instances"], 1, "{e}");
    assert_eq!(e["gpus"], 0, "{e}");
    assert_eq!(e["gpu_watts"].as_f64(), Some(0.0), "{e}");
    let est = e["cpu_watts_estimate"].as_f64().unwrap();
    assert!((est - cores * 10.0).abs() < 1e-6, "{e}");
    assert_eq!(m["cpu_watts_per_core"].as_f64(), Some(10.0));

    let gh = &m["nodes"][0]["gpu_health"];
    let text = stdout(&n.cli(&["metrics"]));
    if gh["gpus"] == 0 {
        // The usual case here: NVML is missing, and the node says so instead of judging.
        let why = match gh["unavailable"].as_str() {
            Some(r) => format!("NVML: {r}"),
            None => "NVML lists none".to_string(),
        };
        assert!(
            text.contains(&format!(
                "gpu health: no GPU on n1 ({why}); GPU-health rules stay quiet there"
            )),
            "{text}"
        );
        assert!(gh["findings"].as_array().unwrap().is_empty(), "{gh}");
        let doctor = stdout(&n.cli(&["doctor"]));
        assert!(
            doctor.contains("GPU-health rules stay quiet here"),
            "{doctor}"
        );
    } else {
        assert!(text.contains("gpu health on n1: "), "{text}");
    }
    assert!(
        text.contains(
            "energy per slice (GPU as NVML measures it; CPU estimated at 10 W per busy core):"
        ),
        "{text}"
    );
    let (status, body) = n.http_get("/metrics").expect("/metrics answers");
    assert_eq!(status, 200);
    let line = |source: &str| {
        body.lines()
            .find(|l| {
                l.starts_with(&format!(
                    "aether_slice_power_watts{{slice=\"gpu/burn\",source=\"{source}\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    assert_eq!(line("gpu"), Some(0.0), "{body}");
    assert!(line("cpu_estimate").is_some_and(|w| w > 0.0), "{body}");
}

/// Replace `path` whole (the node may read it at any moment).
fn replace(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// One fake GPU sample, as `AETHER_FAKE_GPU` reads it.
fn fake_gpu(xid_errors: u32) -> String {
    serde_json::json!([{
        "index": 0, "name": "Fake H100", "util": 0.5, "mem_used": 1_073_741_824_u64,
        "mem_total": 85_899_345_920_u64, "temp_c": 62.0, "power_w": 310.0, "processes": [],
        "slowdown_c": 87.0, "xid_errors": xid_errors, "last_xid": if xid_errors > 0 { 79 } else { 0 },
        "ecc_uncorrected": 0, "throttle": 0
    }])
    .to_string()
}

#[test]
fn a_new_xid_error_keeps_gpu_work_off_and_drains_the_node_through_the_rule() {
    let mark = run_mark("xid");
    let root = tempfile::tempdir().unwrap();
    let fake = root.path().join("gpus.json");
    std::fs::write(&fake, fake_gpu(0)).unwrap();
    let rules = root.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[[rules]]\nname = \"gpu-unhealthy\"\nscope = \"node\"\npriority = 110\nwhen = [{ metric = \"gpu_health\", above = 0, for = \"3s\" }]\naction = \"drain\"\n",
    )
    .unwrap();
    let common = [
        ("AETHER_CONTROLLER_RULES", rules.to_str().unwrap()),
        ("TEST_RUN", mark.as_str()),
    ];
    let with_gpu = [
        ("AETHER_CONTROLLER_RULES", rules.to_str().unwrap()),
        ("TEST_RUN", mark.as_str()),
        ("AETHER_FAKE_GPU", fake.to_str().unwrap()),
    ];
    let mut c = TestCluster::single("n1", &common);
    let _reaper = crate::harness::Reaper(mark.clone());
    c.join(&["n2"], &with_gpu);
    c.join(&["n3"], &common);
    c.wait_voters(3);
    let n1 = &c.nodes[0];
    let out = n1.cli(&["override", "mode", "observe"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let health_of = |name: &str| -> Option<Value> {
        let m = n1.metrics(&[])?;
        m["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["name"] == name)
            .map(|n| n["gpu_health"].clone())
    };
    wait_for(
        "n2's fake GPU watched, with its margin to slowdown",
        Duration::from_secs(30),
        || {
            let h = health_of("n2")?;
            (h["gpus"] == 1 && h["margin_c"].as_f64() == Some(25.0)).then_some(())
        },
    );

    // The driver reports a critical XID error.
    replace(&fake, &fake_gpu(1));
    wait_for("the XID finding on n2", Duration::from_secs(30), || {
        let h = health_of("n2")?;
        h["findings"]
            .as_array()?
            .iter()
            .any(|f| f == "gpu0_xid_new")
            .then_some(())
    });
    let text = stdout(&n1.cli(&["metrics"]));
    assert!(
        text.contains(
            "anomaly on n2: gpu0 had 1 new critical XID error in the last 15 min (newest XID 79)"
        ),
        "{text}"
    );

    // GPU work is not placed there (n2 is the only node with a GPU).
    let bp = root.path().join("train.toml");
    std::fs::write(
        &bp,
        "name = \"ml\"\n\n[[slices]]\nname = \"train\"\ncommand = [\"sleep\", \"3600\"]\ninstances = 1\nmin = 1\nmax = 1\nresources = { cpu = 0.01, memory = \"8MiB\", gpu = 1 }\nstop_timeout = \"1s\"\n",
    )
    .unwrap();
    let out = n1.cli(&["blueprint", "apply", bp.to_str().unwrap()]);
    assert!(out.status.success(), "apply: {}", stderr(&out));
    let note = wait_for(
        "ml/train/0 pending with a reason",
        Duration::from_secs(30),
        || {
            let b = json(n1, &["blueprint", "show", "ml", "--output", "json"])?;
            let row = b[0]["instances"]
                .as_array()?
                .iter()
                .find(|r| r["instance"] == "ml/train/0" && r["state"] == "pending")?
                .clone();
            row["note"].as_str().map(String::from)
        },
    );
    assert!(
        note.contains("n2 takes no new GPU work (gpu0 had 1 new critical XID error"),
        "{note}"
    );

    // The rule proposes the drain (observe mode records it), citing the finding.
    let decision = wait_for(
        "a gpu-unhealthy drain decision for n2",
        Duration::from_secs(60),
        || {
            let all = json(n1, &["decisions", "--all", "--output", "json"])?;
            all.as_array()?
                .iter()
                .find(|d| d["rule"] == "gpu-unhealthy" && d["action"]["name"] == "n2")
                .cloned()
        },
    );
    let reasoning: Vec<&str> = decision["reasoning"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r.as_str())
        .collect();
    assert!(
        reasoning.contains(
            &"gpu health on n2: gpu0 had 1 new critical XID error in the last 15 min (newest XID 79)"
        ),
        "{decision}"
    );
    let state = |name: &str| -> Option<String> {
        let nodes = json(n1, &["nodes", "--output", "json"])?;
        nodes.as_array()?.iter().find(|n| n["name"] == name)?["state"]
            .as_str()
            .map(String::from)
    };
    assert_eq!(
        state("n2").as_deref(),
        Some("ready"),
        "observe mode applies nothing"
    );

    // In auto mode the drain is applied.
    let out = n1.cli(&["override", "mode", "auto"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for(
        "n2 drained by the controller",
        Duration::from_secs(60),
        || {
            state("n2")
                .filter(|s| s == "draining" || s == "drained")
                .map(|_| ())
        },
    );
    for other in ["n1", "n3"] {
        assert_eq!(state(other).as_deref(), Some("ready"), "{other}");
    }
}
