//! Sleep and wake on real nodes: suspend and resume scripts that stop (SIGSTOP) and continue
//! (SIGCONT) a node's daemon, by the PID this test started it with.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::harness::*;

const WAIT: Duration = Duration::from_secs(90);

fn run_id(test: &str) -> String {
    format!("{}-power-{test}", std::process::id())
}

/// A script at `dir/name` that appends its arguments to `dir/<name>.args`, then runs `then`
/// with the node's PID file in `$PID` (the first argument is the node's name).
fn script(dir: &Path, name: &str, then: &str) -> String {
    let path = dir.join(name);
    let args = dir.join(format!("{name}.args"));
    let pids = dir.join("pids");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\nPID=\"$(cat '{}'/\"$1\".pid)\"\n{then}\n",
            args.display(),
            pids.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

/// A cluster of `names` (the first founds it and leads) with sleep and wake on, `auto` mode,
/// and the PID of each node in `dir/pids/<name>.pid`.
fn power_cluster(names: &[&str], voters: usize, dir: &Path, env: &[(&str, &str)]) -> TestCluster {
    let c = guarded_power_cluster(names, voters, dir, env);
    let out = c.nodes[0].cli(&["override", "mode", "auto"]);
    assert!(out.status.success(), "mode auto: {}", stderr(&out));
    c
}

/// [`power_cluster`] in the default mode, guarded.
fn guarded_power_cluster(
    names: &[&str],
    voters: usize,
    dir: &Path,
    env: &[(&str, &str)],
) -> TestCluster {
    let mut e: Vec<(&str, &str)> = vec![
        ("AETHER_POWER_ENABLED", "true"),
        ("AETHER_POWER_IDLE_FOR", "2s"),
        // Without a slice nothing is needed; any slice below makes the awake cores too few.
        ("AETHER_POWER_TARGET_UTILISATION", "0.1"),
    ];
    e.extend_from_slice(env);
    let voters_s = voters.to_string();
    e.push(("AETHER_RAFT_VOTERS", &voters_s));
    let mut c = TestCluster::single(names[0], &e);
    c.join(&names[1..], &e);
    c.wait_voters(voters);
    std::fs::create_dir_all(dir.join("pids")).unwrap();
    for n in &c.nodes {
        std::fs::write(
            dir.join("pids").join(format!("{}.pid", n.name)),
            n.pid().unwrap().to_string(),
        )
        .unwrap();
    }
    c
}

/// `aether nodes --output json`'s entry for `name`.
fn member(n: &Node, name: &str) -> Option<Value> {
    let out = n.cli(&["nodes", "--output", "json"]);
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v.as_array()?.iter().find(|m| m["name"] == name).cloned()
}

/// A slice that reserves every core of a node: more than a tenth of the awake cores.
fn demanding_blueprint(dir: &Path, run: &str) -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let path = dir.join("big.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"big\"\n\n[[slices]]\nname = \"work\"\ncommand = [\"sleep\", \"3600\"]\n\
             instances = 1\nresources = {{ cpu = {cores}, memory = \"16MiB\" }}\n\
             env = {{ TEST_RUN = \"{run}\" }}\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

fn sleeps(c: &TestCluster, name: &str) -> Value {
    wait_for(&format!("{name} asleep"), WAIT, || {
        let m = member(&c.nodes[0], name)?;
        (m["state"] == "asleep" && m["power"]["state"] == "asleep").then_some(m)
    })
}

#[test]
fn a_quiet_cluster_of_four_puts_a_node_to_sleep_and_a_demanding_slice_wakes_it() {
    let run = run_id("wake");
    let _reaper = Reaper(run.clone());
    let dir = tempfile::tempdir().unwrap();
    let suspend = script(dir.path(), "suspend", "kill -STOP \"$PID\"");
    let resume = script(dir.path(), "resume", "kill -CONT \"$PID\"");
    let (suspend, resume) = (format!("[\"{suspend}\"]"), format!("[\"{resume}\"]"));
    let c = power_cluster(
        &["n1", "n2", "n3", "n4"],
        3,
        dir.path(),
        &[
            ("TEST_RUN", &run),
            ("AETHER_POWER_SUSPEND_COMMAND", &suspend),
            ("AETHER_POWER_RESUME_COMMAND", &resume),
            // Voters could sleep too (two of three stay awake); n4 is the one asked for.
            ("AETHER_POWER_NEVER_SLEEP", "[\"n2\", \"n3\"]"),
        ],
    );
    sleeps(&c, "n4");
    let args = std::fs::read_to_string(dir.path().join("suspend.args")).unwrap();
    assert_eq!(
        args.trim_end(),
        format!("n4 {}", c.nodes[3].addr()),
        "name, address and an empty MAC"
    );
    let text = stdout(&c.nodes[0].cli(&["nodes"]));
    assert!(
        text.lines()
            .any(|l| l.contains("n4") && l.contains("asleep")),
        "{text}"
    );
    let metrics = c.nodes[0].http_get("/metrics").unwrap().1;
    assert!(
        metrics.contains("aether_node_power_state{node=\"n4\",state=\"asleep\"} 1"),
        "{metrics}"
    );
    let decisions = stdout(&c.nodes[0].cli(&["decisions"]));
    assert!(decisions.contains("sleep n4"), "{decisions}");
    let json = stdout(&c.nodes[0].cli(&["decisions", "--output", "json"]));
    assert!(
        json.contains("the load fits without n4: 0.0 cores needed now")
            && json.contains("n4's wake time is not measured yet"),
        "{json}"
    );
    let events = stdout(&c.nodes[0].cli(&["events"]));
    assert!(
        events.contains("power of n4: asleep, node asleep"),
        "{events}"
    );

    let bp = demanding_blueprint(dir.path(), &run);
    let out = c.nodes[0].cli(&["blueprint", "apply", &bp]);
    assert!(out.status.success(), "apply: {}", stderr(&out));
    let back = wait_for("n4 awake again with its wake time", WAIT, || {
        let m = member(&c.nodes[0], "n4")?;
        (m["state"] == "ready" && m["power"]["state"] == "awake").then_some(m)
    });
    assert!(back["power"]["wake_ms"].as_u64().is_some(), "{back}");
    assert!(dir.path().join("resume.args").exists());
    let decisions = stdout(&c.nodes[0].cli(&["decisions"]));
    assert!(decisions.contains("wake n4"), "{decisions}");
    let json = stdout(&c.nodes[0].cli(&["decisions", "--output", "json"]));
    assert!(json.contains("the slices need"), "{json}");
}

#[test]
fn a_resume_that_never_completes_marks_the_node_down_with_a_reason() {
    let run = run_id("timeout");
    let _reaper = Reaper(run.clone());
    let dir = tempfile::tempdir().unwrap();
    let suspend = script(dir.path(), "suspend", "kill -STOP \"$PID\"");
    // It answers but the node never comes back.
    let resume = script(dir.path(), "resume", "true");
    let (suspend, resume) = (format!("[\"{suspend}\"]"), format!("[\"{resume}\"]"));
    let c = power_cluster(
        &["n1", "n2"],
        1,
        dir.path(),
        &[
            ("TEST_RUN", &run),
            ("AETHER_POWER_SUSPEND_COMMAND", &suspend),
            ("AETHER_POWER_RESUME_COMMAND", &resume),
            ("AETHER_POWER_RESUME_TIMEOUT", "3s"),
        ],
    );
    let why = wake_given_up(&c, dir.path(), &run, "n2 down after its resume timeout");
    assert!(
        why.contains("after its resume (power.resume_timeout 3s"),
        "{why}"
    );
    assert!(dir.path().join("resume.args").exists());
    let text = stdout(&c.nodes[0].cli(&["nodes"]));
    assert!(text.contains("asleep (down)"), "{text}");
    c.nodes[1].signal(libc::SIGCONT);
}

#[test]
fn a_resume_command_that_does_not_exist_is_reported_and_the_leader_keeps_running() {
    let run = run_id("missing");
    let _reaper = Reaper(run.clone());
    let dir = tempfile::tempdir().unwrap();
    let suspend = script(dir.path(), "suspend", "kill -STOP \"$PID\"");
    let suspend = format!("[\"{suspend}\"]");
    let c = power_cluster(
        &["n1", "n2"],
        1,
        dir.path(),
        &[
            ("TEST_RUN", &run),
            ("AETHER_POWER_SUSPEND_COMMAND", &suspend),
            (
                "AETHER_POWER_RESUME_COMMAND",
                "[\"/nonexistent/aether-resume\"]",
            ),
        ],
    );
    let why = wake_given_up(&c, dir.path(), &run, "the missing resume command reported");
    assert!(
        why.contains("power.resume_command '/nonexistent/aether-resume' does not exist")
            && why.contains("leader n1's config")
            && why.contains("AETHER_POWER_RESUME_COMMAND"),
        "{why}"
    );
    let st = c.nodes[0].status().expect("the leader answers");
    assert_eq!(st["node"]["ready"], true, "{st}");
    c.nodes[1].signal(libc::SIGCONT);
}

/// Put n2 to sleep, apply a slice that needs it awake, and wait (`what`) until the leader
/// marks it down; returns the reason its power record gives.
fn wake_given_up(c: &TestCluster, dir: &Path, run: &str, what: &str) -> String {
    sleeps(c, "n2");
    let bp = demanding_blueprint(dir, run);
    let out = c.nodes[0].cli(&["blueprint", "apply", &bp]);
    assert!(out.status.success(), "apply: {}", stderr(&out));
    let down = wait_for(what, WAIT, || {
        let m = member(&c.nodes[0], "n2")?;
        (m["power"]["state"] == "down").then_some(m)
    });
    down["power"]["reason"].as_str().unwrap().to_string()
}

/// Every decision, newest first.
fn decisions(n: &Node) -> Vec<Value> {
    let out = n.cli(&["decisions", "--all", "--output", "json"]);
    serde_json::from_slice::<Value>(&out.stdout)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

fn sleeps_of<'a>(all: &'a [Value], name: &str) -> Vec<&'a Value> {
    all.iter()
        .filter(|d| d["action"]["kind"] == "sleep" && d["action"]["name"] == name)
        .collect()
}

/// When the leader's newest own metrics sample was taken (Unix ms): it moves every second.
fn leader_sampled_at(n: &Node) -> Option<u64> {
    let m = n.metrics(&["--node", &n.name])?;
    m["nodes"][0]["detail"]["at"].as_u64()
}

#[test]
fn in_guarded_mode_a_pending_sleep_is_recorded_once_and_a_veto_holds() {
    let run = run_id("guarded");
    let _reaper = Reaper(run.clone());
    let dir = tempfile::tempdir().unwrap();
    let suspend = script(dir.path(), "suspend", "kill -STOP \"$PID\"");
    let suspend = format!("[\"{suspend}\"]");
    let c = guarded_power_cluster(
        &["n1", "n2"],
        1,
        dir.path(),
        &[
            ("TEST_RUN", &run),
            ("AETHER_POWER_SUSPEND_COMMAND", &suspend),
            // Pending for the whole test: only a veto ends it.
            ("AETHER_CONTROLLER_GRACE", "10m"),
        ],
    );
    let n1 = &c.nodes[0];
    let first = wait_for("a pending sleep of n2", WAIT, || {
        let all = decisions(n1);
        sleeps_of(&all, "n2")
            .first()
            .filter(|d| d["status"]["status"] == "pending")
            .map(|d| (*d).clone())
    });
    // Several controller ticks (one a second) while it is pending.
    let at = first["at"].as_u64().unwrap();
    wait_for("the leader three seconds on", WAIT, || {
        leader_sampled_at(n1).filter(|t| *t >= at + 3_000)
    });
    let all = decisions(n1);
    let sleeps = sleeps_of(&all, "n2");
    assert_eq!(
        sleeps.len(),
        1,
        "one sleep decision while it is pending: {sleeps:#?}"
    );
    let id = first["name"].as_str().unwrap();
    let out = n1.cli(&["override", "veto", id]);
    assert!(out.status.success(), "veto: {}", stderr(&out));
    // The next proposal meets the veto: recorded once as stopped by it, nothing pending.
    let stopped = format!("vetoed {id}");
    let rejected = wait_for("the sleep proposal stopped by the veto", WAIT, || {
        let all = decisions(n1);
        sleeps_of(&all, "n2")
            .into_iter()
            .find(|d| {
                d["status"]["status"] == "rejected"
                    && d["inputs"]
                        .as_array()
                        .is_some_and(|i| i.iter().any(|kv| kv[1] == stopped.as_str()))
            })
            .cloned()
    });
    let at = rejected["at"].as_u64().unwrap();
    wait_for("the leader three seconds on", WAIT, || {
        leader_sampled_at(n1).filter(|t| *t >= at + 3_000)
    });
    let all = decisions(n1);
    let open: Vec<_> = sleeps_of(&all, "n2")
        .into_iter()
        .filter(|d| matches!(d["status"]["status"].as_str(), Some("pending" | "proposed")))
        .collect();
    assert!(
        open.is_empty(),
        "no sleep of n2 within the veto cooldown: {open:#?}"
    );
    assert_eq!(
        sleeps_of(&all, "n2").len(),
        2,
        "the vetoed one and its stop"
    );
    let n2 = member(n1, "n2").unwrap();
    assert_eq!(n2["state"], "ready", "{n2}");
    assert!(!dir.path().join("suspend.args").exists(), "never suspended");
}
