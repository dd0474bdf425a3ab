//! Supervised instances on 3 real nodes: spread, answering on their ports, scaled down and up,
//! restarted after kill -9, moved off a drained node with no dip below the desired count, moved
//! off a node whose daemon was killed -9, and no orphan or duplicate once that daemon is back;
//! a node cut off while its instances run on has them replaced, and stops its surplus copies
//! when it comes back; a blueprint removed and applied again gets new copies only.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::harness::*;
use serde_json::Value;

/// The blueprint of this test; its name keeps its processes apart from other tests'.
const BP: &str = "proc";

/// An instance process found in /proc by its environment.
#[derive(Debug, Clone)]
struct Proc {
    pid: u32,
    pgrp: u32,
    instance: String,
    node: String,
    port: u16,
    cmdline: String,
}

/// Marks the processes of this test run (inherited from the daemons by their instances).
fn run_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| format!("{}-{}", std::process::id(), BP))
}

/// Live processes (not zombies) of this test run whose environment says they belong to
/// blueprint `BP`.
fn procs() -> Vec<Proc> {
    live_processes()
        .into_iter()
        .filter(|p| {
            p.env.get("AETHER_BLUEPRINT").map(String::as_str) == Some(BP)
                && p.env.get("TEST_RUN").map(String::as_str) == Some(run_id())
        })
        .map(|p| Proc {
            pid: p.pid,
            pgrp: p.stat[2].parse().unwrap(),
            instance: p.env["AETHER_INSTANCE"].clone(),
            node: p.env["AETHER_NODE"].clone(),
            port: p.env["PORT"].parse().unwrap(),
            cmdline: p.cmdline,
        })
        .collect()
}

/// The HTTP servers (not their `sh` wrappers).
fn servers() -> Vec<Proc> {
    procs()
        .into_iter()
        .filter(|p| p.cmdline.contains("http.server") && !p.cmdline.starts_with("sh "))
        .collect()
}

fn http_ok(port: u16) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200")
}

/// `blueprint show` rows of `BP` as one node sees them.
fn rows(n: &Node) -> Option<Vec<Value>> {
    super::instance_rows(n, BP)
}

/// Instance → (node, port, pid) when exactly `n` instances each have one active, passing copy
/// and nothing else is listed.
fn settled(node: &Node, n: usize) -> Option<BTreeMap<String, (String, u16, u32)>> {
    let rows = rows(node)?;
    let mut out = BTreeMap::new();
    for r in &rows {
        if r["state"] != "active" || r["health"] != "passing" || !r["note"].is_null() {
            return None;
        }
        out.insert(
            r["instance"].as_str()?.to_string(),
            (
                r["node"].as_str()?.to_string(),
                r["port"].as_u64()? as u16,
                r["pid"].as_u64()? as u32,
            ),
        );
    }
    (out.len() == n && rows.len() == n).then_some(out)
}

/// Each instance has exactly one server process, in the process group of the pid its node
/// reported, on the reported node and port, answering HTTP.
fn one_server_each(want: &BTreeMap<String, (String, u16, u32)>) -> Result<(), String> {
    let found = servers();
    let mut per: BTreeMap<&str, Vec<&Proc>> = BTreeMap::new();
    for p in &found {
        per.entry(p.instance.as_str()).or_default().push(p);
    }
    if per.len() != want.len() {
        return Err(format!(
            "{} instances have processes, want {}: {found:?}",
            per.len(),
            want.len()
        ));
    }
    for (inst, (node, port, pid)) in want {
        let Some(ps) = per.get(inst.as_str()) else {
            return Err(format!("no process for {inst}"));
        };
        if ps.len() != 1 {
            return Err(format!("{} processes for {inst}: {ps:?}", ps.len()));
        }
        let p = ps[0];
        if p.pgrp != *pid || p.node != *node || p.port != *port {
            return Err(format!(
                "{inst}: process {p:?} does not match the report ({node}, port {port}, pid {pid})"
            ));
        }
        if !http_ok(*port) {
            return Err(format!("{inst} does not answer HTTP on port {port}"));
        }
    }
    Ok(())
}

/// Wait until `f` is `Ok`; on timeout, panic with its last error.
fn wait_ok<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = std::time::Instant::now();
    loop {
        let last = match f() {
            Ok(v) => return v,
            Err(e) => e,
        };
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for: {what}; last: {last}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Member `name` as `aether nodes` on `n` lists it.
fn member(n: &Node, name: &str) -> Option<Value> {
    let out = n.cli(&["nodes", "--output", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v.as_array()?.iter().find(|m| m["name"] == name).cloned()
}

/// Node `back` (which lost its instances while away) is ready again in the eyes of node
/// `watcher`, and, as `back` itself sees it, the 6 instances run where they were moved to
/// (`moved`), one server each: nothing ran twice and nothing moved back.
fn back_and_unmoved(
    c: &TestCluster,
    watcher: usize,
    back: usize,
    moved: &BTreeMap<String, (String, u16, u32)>,
) -> BTreeMap<String, (String, u16, u32)> {
    let name = &c.nodes[back].name;
    wait_for(
        &format!("{name} ready again"),
        Duration::from_secs(30),
        || (member(&c.nodes[watcher], name)?["health"] == "ready").then_some(()),
    );
    let now = wait_ok(
        "one server per instance, none left on the returned node",
        Duration::from_secs(30),
        || {
            let s = settled(&c.nodes[back], 6)
                .ok_or("the returned node does not show the 6 settled yet")?;
            one_server_each(&s).map(|_| s)
        },
    );
    assert_eq!(&now, moved, "instances moved again after {name} came back");
    now
}

fn scale(n: &Node, to: u32) {
    let out = n.cli(&["scale", &format!("{BP}/web"), &to.to_string()]);
    assert!(out.status.success(), "scale {to}: {}", stderr(&out));
}

#[test]
fn instances_spread_scale_restart_drain_and_survive_a_lost_daemon_and_a_cut_off_node() {
    let env = [
        ("AETHER_METRICS_SUSPECT_AFTER", "2s"),
        ("AETHER_METRICS_DOWN_AFTER", "3s"),
        ("AETHER_DEPLOY_RESCHEDULE_AFTER", "2s"),
        ("AETHER_DEPLOY_RESTART_BACKOFF", "200ms"),
    ];
    let env = [env.as_slice(), &[("TEST_RUN", run_id())]].concat();
    // Instances of a daemon killed -9 outlive it until it restarts; kill them also on a failure.
    let _reaper = Reaper(run_id().to_string());
    let mut c = TestCluster::three_with(&env);
    let leader = c.leader_index();
    wait_for(
        "every node in the leader's metrics",
        Duration::from_secs(20),
        || (c.nodes[leader].metrics(&[])?["nodes"].as_array()?.len() == 3).then_some(()),
    );
    // `sh` runs the server as its child, so killing the group (and only that) stops both.
    let file = c.root.path().join("proc.toml");
    std::fs::write(
        &file,
        format!(
            r#"name = "{BP}"

[[slices]]
name = "web"
command = ["sh", "-c", "python3 -m http.server \"$1\" --bind 127.0.0.1 & wait", "sh", "${{PORT}}"]
instances = 4
min = 1
max = 8
resources = {{ cpu = 0.1, memory = "32MiB" }}
stop_timeout = "5s"
# An instance's environment is its own: Python writes "Serving HTTP" at once only when told.
env = {{ PYTHONUNBUFFERED = "1" }}

[slices.health]
http = "/"
interval = "300ms"
timeout = "2s"
threshold = 2
"#
        ),
    )
    .unwrap();
    let out = c.nodes[0].cli(&["blueprint", "apply", file.to_str().unwrap()]);
    assert!(out.status.success(), "apply: {}", stderr(&out));

    // 4 healthy instances over at least 2 nodes, each answering on its port, with its identity
    // in its environment; every node shows the same.
    let four = wait_for("4 active instances", Duration::from_secs(60), || {
        settled(&c.nodes[1], 4)
    });
    let spread: BTreeSet<&String> = four.values().map(|(n, _, _)| n).collect();
    assert!(spread.len() >= 2, "spread over at least 2 nodes: {four:?}");
    wait_ok("one server per instance", Duration::from_secs(20), || {
        one_server_each(&four)
    });
    for n in &c.nodes {
        wait_for(
            &format!("{} shows the 4", n.name),
            Duration::from_secs(10),
            || settled(n, 4),
        );
    }
    // Logs come from the node that runs the instance, whichever node is asked.
    let (inst0, (node0, port0, _)) = four.iter().next().unwrap();
    let asker = c.nodes.iter().find(|n| n.name != *node0).unwrap();
    let logs = wait_for("the instance's log", Duration::from_secs(10), || {
        let out = asker.cli(&["logs", inst0]);
        let text = stdout(&out);
        (out.status.success() && text.contains("Serving HTTP")).then_some(text)
    });
    assert!(logs.contains(&format!("on port {port0}")), "{logs}");

    // Scale down: the surplus processes stop.
    scale(&c.nodes[2], 2);
    let two = wait_for("2 active instances", Duration::from_secs(30), || {
        settled(&c.nodes[0], 2)
    });
    wait_ok("only 2 servers left", Duration::from_secs(20), || {
        one_server_each(&two)
    });
    // Scale up.
    scale(&c.nodes[0], 6);
    let six = wait_for("6 active instances", Duration::from_secs(60), || {
        settled(&c.nodes[0], 6)
    });
    wait_ok("6 servers", Duration::from_secs(20), || {
        one_server_each(&six)
    });

    // kill -9 an instance: restarted in place, with a restart counted.
    let (victim, (vnode, _, vpid)) = six
        .iter()
        .next()
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap();
    // SAFETY: kill(2) on a process this test's cluster started.
    unsafe { libc::kill(vpid as i32, libc::SIGKILL) };
    let restarted = wait_for(
        "the killed instance restarted",
        Duration::from_secs(30),
        || {
            let rows = rows(&c.nodes[0])?;
            let r = rows.iter().find(|r| r["instance"] == victim.as_str())?;
            (r["state"] == "active"
                && r["pid"].as_u64()? as u32 != vpid
                && r["restarts"].as_u64()? >= 1
                && r["node"] == vnode.as_str())
            .then(|| r.clone())
        },
    );
    assert!(
        restarted["last_exit"]
            .as_str()
            .unwrap()
            .contains("signal 9"),
        "{restarted}"
    );
    let six = wait_for("6 active again", Duration::from_secs(30), || {
        settled(&c.nodes[0], 6)
    });
    wait_ok("6 servers again", Duration::from_secs(20), || {
        one_server_each(&six)
    });

    // Drain the busiest node: replacements start before the old copies stop, so at no moment
    // are fewer than 6 instances active; then it is empty and `nodes` says drained.
    let mut count: BTreeMap<&String, usize> = BTreeMap::new();
    for (n, _, _) in six.values() {
        *count.entry(n).or_default() += 1;
    }
    let busiest = count.iter().max_by_key(|(_, k)| **k).unwrap().0.to_string();
    let watcher = c.nodes.iter().position(|n| n.name != busiest).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let least = Arc::new(AtomicUsize::new(usize::MAX));
    let looks = Arc::new(AtomicUsize::new(0));
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let sock = c.nodes[watcher].dir.clone();
    let poll = {
        let (stop, least, seen, looks) = (stop.clone(), least.clone(), seen.clone(), looks.clone());
        std::thread::spawn(move || {
            let mut polls = 0;
            while !stop.load(Ordering::Relaxed) && polls < 3000 {
                polls += 1;
                let out = std::process::Command::new(BIN)
                    .args(["blueprint", "show", BP, "--output", "json", "--data-dir"])
                    .arg(&sock)
                    .output()
                    .unwrap();
                let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) else {
                    continue;
                };
                let active: BTreeSet<String> = v[0]["instances"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|r| r["state"] == "active" && r["health"] == "passing")
                    .map(|r| r["instance"].as_str().unwrap().to_string())
                    .collect();
                least.fetch_min(active.len(), Ordering::Relaxed);
                looks.fetch_add(1, Ordering::Relaxed);
                if active.len() < 6 {
                    seen.lock().unwrap().push(v.to_string());
                }
            }
        })
    };
    let out = c.nodes[0].cli(&["drain", &busiest]);
    assert!(out.status.success(), "drain: {}", stderr(&out));
    wait_for(
        &format!("{busiest} drained"),
        Duration::from_secs(60),
        || (member(&c.nodes[0], &busiest)?["state"] == "drained").then_some(()),
    );
    stop.store(true, Ordering::Relaxed);
    poll.join().unwrap();
    assert!(
        looks.load(Ordering::Relaxed) >= 5,
        "the watcher saw too little of the drain"
    );
    assert!(
        least.load(Ordering::Relaxed) >= 6,
        "fewer than 6 active during the drain: {:?}",
        seen.lock().unwrap()
    );
    let six = wait_for("6 active after the drain", Duration::from_secs(30), || {
        settled(&c.nodes[0], 6)
    });
    assert!(
        six.values().all(|(n, _, _)| *n != busiest),
        "{busiest} still runs instances: {six:?}"
    );
    wait_ok(
        "6 servers, none on the drained node",
        Duration::from_secs(20),
        || one_server_each(&six),
    );
    let out = c.nodes[0].cli(&["undrain", &busiest]);
    assert!(out.status.success(), "undrain: {}", stderr(&out));

    // kill -9 a node daemon that runs instances (not the leader): its instances run elsewhere
    // within the grace period plus a few seconds.
    let leader = c.leader_index();
    let lost = c
        .nodes
        .iter()
        .position(|n| {
            n.name != c.nodes[leader].name && six.values().any(|(node, _, _)| *node == n.name)
        })
        .expect("a follower with instances");
    let lost_name = c.nodes[lost].name.clone();
    c.nodes[lost].kill9();
    let moved = wait_for(
        "the lost node's instances active elsewhere",
        Duration::from_secs(45),
        || {
            let s = settled(&c.nodes[leader], 6)?;
            s.values().all(|(n, _, _)| *n != lost_name).then_some(s)
        },
    );
    // The daemon comes back: what its previous run left is killed, nothing runs twice.
    c.nodes[lost].start(None);
    c.wait_voters(3);
    let last = back_and_unmoved(&c, leader, lost, &moved);
    assert!(
        servers().iter().all(|p| p.node != lost_name),
        "a process of the restarted node's previous run is still alive"
    );

    // A node cut off while its instances run on (its daemon stopped with SIGSTOP, so nothing
    // of it answers, but its instances keep serving): after the grace period they are
    // replaced elsewhere; when it comes back it stops its surplus copies, and nothing moves.
    let leader = c.leader_index();
    let frozen = c
        .nodes
        .iter()
        .position(|n| {
            n.name != c.nodes[leader].name && last.values().any(|(node, _, _)| *node == n.name)
        })
        .expect("a follower with instances");
    let frozen_name = c.nodes[frozen].name.clone();
    let stranded: Vec<u32> = servers()
        .iter()
        .filter(|p| p.node == frozen_name)
        .map(|p| p.pid)
        .collect();
    assert!(
        !stranded.is_empty(),
        "{frozen_name} runs no server: {last:?}"
    );
    let thaw = Thaw(c.nodes[frozen].pid().unwrap());
    // SAFETY: kill(2) on the daemon this test started; `thaw` resumes it on any exit.
    unsafe { libc::kill(thaw.0 as i32, libc::SIGSTOP) };
    let replaced = wait_for(
        "the cut-off node's instances active elsewhere",
        Duration::from_secs(45),
        || {
            let s = settled(&c.nodes[leader], 6)?;
            s.values().all(|(n, _, _)| *n != frozen_name).then_some(s)
        },
    );
    let alive: BTreeSet<u32> = servers().iter().map(|p| p.pid).collect();
    assert!(
        stranded.iter().all(|p| alive.contains(p)),
        "the cut-off node's servers should still run while it is stopped: {stranded:?}"
    );
    // SAFETY: as above.
    unsafe { libc::kill(thaw.0 as i32, libc::SIGCONT) };
    back_and_unmoved(&c, leader, frozen, &replaced);
    let alive: BTreeSet<u32> = servers().iter().map(|p| p.pid).collect();
    assert!(
        stranded.iter().all(|p| !alive.contains(p)),
        "a surplus copy on the returned node still runs: {stranded:?}"
    );

    // Removed and applied again at once: every instance is a new copy, and no report of an
    // old copy is ever taken for a new one (a settled view names live, new processes only).
    let old: BTreeSet<u32> = servers().iter().map(|p| p.pgrp).collect();
    let out = c.nodes[1].cli(&["blueprint", "rm", BP]);
    assert!(out.status.success(), "rm: {}", stderr(&out));
    let out = c.nodes[2].cli(&["blueprint", "apply", file.to_str().unwrap()]);
    assert!(out.status.success(), "apply again: {}", stderr(&out));
    let again = wait_for(
        "4 active after rm and apply",
        Duration::from_secs(60),
        || settled(&c.nodes[0], 4),
    );
    let live: BTreeSet<u32> = servers().iter().map(|p| p.pgrp).collect();
    for (inst, (_, _, pid)) in &again {
        assert!(
            !old.contains(pid),
            "{inst} is reported by an old copy (pid {pid}): {again:?}"
        );
        assert!(
            live.contains(pid),
            "{inst} is reported active with pid {pid}, which does not run: {again:?}"
        );
    }
    wait_ok(
        "one new server per instance",
        Duration::from_secs(20),
        || one_server_each(&again),
    );
}

/// Sends SIGCONT to a daemon when dropped, so a failed assertion never leaves it stopped.
struct Thaw(u32);

impl Drop for Thaw {
    fn drop(&mut self) {
        // SAFETY: kill(2) on a daemon this test started.
        unsafe { libc::kill(self.0 as i32, libc::SIGCONT) };
    }
}
