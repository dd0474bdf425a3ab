//! Carbon-aware scheduling on a real node (issue 25, item 4): the node reads its carbon signal
//! from a file that the test changes; a flexible slice is held while the grid is dirtier than a
//! forecast window before its latest start, and starts when the file says the low window came;
//! where it never comes, the slice starts at its latest start and not before. A carbon file
//! that is not JSON is reported with its path, and the node keeps running.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::harness::*;
use serde_json::Value;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// RFC 3339 of `now + offset` seconds (UTC).
fn at(offset: i64) -> String {
    let t = (now_secs() as i64 + offset) as u64;
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t)).to_string()
}

/// An Electricity Maps forecast: `(seconds from now, gCO2eq/kWh)` per point.
fn write_forecast(file: &Path, points: &[(i64, u32)]) {
    let pts: Vec<String> = points
        .iter()
        .map(|(o, g)| format!(r#"{{"carbonIntensity":{g},"datetime":"{}"}}"#, at(*o)))
        .collect();
    let text = format!(r#"{{"zone":"test-zone","forecast":[{}]}}"#, pts.join(","));
    // Written whole, then renamed: the node never reads half a file.
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

/// Electricity Maps' latest value with its forecast beside it: the measured value stays
/// `grams` whatever the forecast says of now.
fn write_latest_with_forecast(file: &Path, grams: u32, points: &[(i64, u32)]) {
    write_forecast(file, points);
    let text = std::fs::read_to_string(file).unwrap();
    let merged = text.replacen('{', &format!(r#"{{"carbonIntensity":{grams},"#), 1);
    std::fs::write(file.with_extension("tmp"), merged).unwrap();
    std::fs::rename(file.with_extension("tmp"), file).unwrap();
}

/// A node that reads `file` every second, and a reaper for its instances.
fn node(file: &Path, run: &str) -> TestCluster {
    TestCluster::single(
        "c1",
        &[
            ("AETHER_CARBON_SOURCE", file.to_str().unwrap()),
            ("AETHER_CARBON_REFRESH", "1s"),
            ("AETHER_CONTROLLER_INTERVAL", "500ms"),
            ("TEST_RUN", run),
        ],
    )
}

/// The node's carbon intensity in `aether metrics`, once it shows `grams`.
fn wait_carbon(n: &Node, grams: f64) {
    wait_for(
        &format!("aether metrics shows {grams} gCO2eq/kWh"),
        Duration::from_secs(20),
        || (n.metrics(&[])?["nodes"][0]["carbon"]["grams"].as_f64()? == grams).then_some(()),
    );
}

/// Apply a blueprint whose slice `train` is flexible, to be started within `within`.
fn apply_flexible(c: &TestCluster, within: &str) {
    let file = c.root.path().join("batch.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"batch\"\n\n[[slices]]\nname = \"train\"\ncommand = [\"sleep\", \"3600\"]\ninstances = 1\nmin = 0\nstop_timeout = \"1s\"\n\n[slices.flexible]\nwithin = \"{within}\"\n"
        ),
    )
    .unwrap();
    let out = c.nodes[0].cli(&["blueprint", "apply", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `blueprint show batch --output json`.
fn show(n: &Node) -> Option<Value> {
    let out = n.cli(&["blueprint", "show", "batch", "--output", "json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice::<Value>(&out.stdout).ok())
        .flatten()
        .map(|v| v[0].clone())
}

/// Active instances of `batch/train`.
fn active(b: &Value) -> usize {
    b["instances"]
        .as_array()
        .map(|a| a.iter().filter(|i| i["state"] == "active").count())
        .unwrap_or(0)
}

/// The held line, once the leader judged the slice held.
fn wait_held(n: &Node) -> String {
    wait_for(
        "the flexible slice is held, with the numbers",
        Duration::from_secs(20),
        || {
            let b = show(n)?;
            let f = &b["flexible"][0];
            assert!(f["started"].is_null(), "started early: {b}");
            assert_eq!(active(&b), 0, "an instance runs while held: {b}");
            f["held"].as_str().map(String::from)
        },
    )
}

/// The start (when, the line) and the latest start, once the slice started and runs.
fn wait_started(n: &Node, what: &str) -> (u64, String, u64) {
    wait_for(what, Duration::from_secs(90), || {
        let b = show(n)?;
        let f = &b["flexible"][0];
        let started = f["started"].as_array()?;
        (active(&b) == 1).then_some(())?;
        Some((
            started[0].as_u64().unwrap(),
            started[1].as_str().unwrap().to_string(),
            f["latest_start"].as_u64().unwrap(),
        ))
    })
}

#[test]
fn a_flexible_slice_waits_for_the_low_window_and_starts_in_it_before_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("carbon.json");
    // Dirty now; a cleaner window opens in 15 s and lasts an hour.
    write_forecast(&file, &[(-60, 500), (15, 100), (3600, 500)]);
    let run = format!("carbon-low-{}", std::process::id());
    let _reaper = Reaper(run.clone());
    let c = node(&file, &run);
    let n = &c.nodes[0];
    wait_carbon(n, 500.0);
    let (_, text) = n.http_get("/metrics").unwrap();
    assert!(
        text.contains("aether_carbon_intensity_grams{node=\"c1\",zone=\"test-zone\"} 500"),
        "{text}"
    );
    apply_flexible(&c, "60s");
    let held = wait_held(n);
    assert!(
        held.starts_with("held: now 500 g/kWh on c1, forecast min 100 g/kWh at "),
        "{held}"
    );
    let out = n.cli(&["blueprint", "show", "batch"]);
    assert!(
        stdout(&out).contains("train: flexible, 1 instance(s) start by "),
        "{}",
        stdout(&out)
    );

    // The low window comes: the grid is clean now.
    write_forecast(&file, &[(-5, 90), (10, 95), (3600, 500)]);
    let (started, line, latest) = wait_started(n, "the slice starts in the low window");
    assert!(
        line.starts_with("starts in a low window: now 90 g/kWh on c1, forecast min 90 g/kWh"),
        "{line}"
    );
    assert!(
        started < latest,
        "started at {started}, after its latest start {latest}"
    );
    // Nothing starts it twice or holds it again.
    let b = show(n).unwrap();
    assert!(
        b["flexible"][0]["held"]
            .as_str()
            .unwrap()
            .starts_with("held: now 500")
    );
    assert_eq!(b["blueprint"]["slices"][0]["instances"], 1);
}

#[test]
fn a_low_window_that_never_comes_starts_the_slice_at_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("carbon.json");
    // The forecast promises a clean hour from 5 s on; the measured grid never gets there.
    write_latest_with_forecast(&file, 480, &[(5, 100), (3600, 500)]);
    let run = format!("carbon-late-{}", std::process::id());
    let _reaper = Reaper(run.clone());
    let c = node(&file, &run);
    let n = &c.nodes[0];
    wait_carbon(n, 480.0);
    apply_flexible(&c, "20s");
    let held = wait_held(n);
    assert!(held.starts_with("held: now 480 g/kWh on c1"), "{held}");
    let (started, line, latest) = wait_started(n, "the slice starts at its latest start");
    assert!(
        line.starts_with("latest start ")
            && line.contains("reached: starts regardless (now 480 g/kWh on c1)"),
        "{line}"
    );
    assert!(
        started >= latest,
        "started at {started}, before its latest start {latest}"
    );
}

#[test]
fn a_carbon_file_that_is_not_json_is_reported_with_its_path_and_the_node_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("carbon.json");
    std::fs::write(&file, "carbon intensity: high\n").unwrap();
    let c = TestCluster::single(
        "c1",
        &[
            ("AETHER_CARBON_SOURCE", file.to_str().unwrap()),
            ("AETHER_CARBON_REFRESH", "1s"),
        ],
    );
    let n = &c.nodes[0];
    let error = wait_for(
        "aether metrics reports the carbon source's error",
        Duration::from_secs(20),
        || {
            n.metrics(&[])?["nodes"][0]["carbon_error"]
                .as_str()
                .map(String::from)
        },
    );
    let path = file.display().to_string();
    assert!(
        error.starts_with(&format!(
            "carbon source '{path}': not JSON (line 1, column 1)"
        )),
        "{error}"
    );
    let out = n.cli(&["metrics"]);
    assert!(
        stdout(&out).contains(&format!(
            "carbon source on c1 failed: carbon source '{path}'"
        )),
        "{}",
        stdout(&out)
    );
    assert!(n.status().is_some(), "the node keeps running");
    // A negative value is refused with its JSON path; a good file then reads.
    std::fs::write(&file, r#"{"carbonIntensity":-4,"zone":"x"}"#).unwrap();
    wait_for(
        "the negative value is refused",
        Duration::from_secs(20),
        || {
            n.metrics(&[])?["nodes"][0]["carbon_error"]
                .as_str()?
                .contains("carbonIntensity: expected gCO2eq/kWh of 0 or more, found -4")
                .then_some(())
        },
    );
    std::fs::write(&file, r#"{"carbonIntensity":212,"zone":"x"}"#).unwrap();
    wait_carbon(n, 212.0);
    assert!(n.metrics(&[]).unwrap()["nodes"][0]["carbon_error"].is_null());
    // Said once in the log (when it changed), not at every refresh.
    let said = n
        .log_text()
        .lines()
        .filter(|l| l.contains("not JSON"))
        .count();
    assert_eq!(
        said,
        1,
        "the error is logged once per change:\n{}",
        n.log_text()
    );
}
