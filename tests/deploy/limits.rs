//! CPU and memory limits on a real node (issue 18): a slice's `resources` are its instance's
//! cgroup limits. A memory hog past its 32 MiB is OOM-killed, shown `oom-killed` as its last
//! exit, and restarted; a busy loop limited to 0.5 cores uses at most about that, measured from
//! its cgroup's CPU usage. Where the node cannot write cgroups (not root, no writable cgroup
//! filesystem), the test says why and stops there.

use std::time::{Duration, Instant};

use super::harness::*;
use super::instance_rows;
use serde_json::Value;

const MEMORY_HOG: &str = r#"
import time
a = []
for i in range(20):
    a.append(b"x" * (10 << 20))
time.sleep(3600)
"#;

const CPU_HOG: &str = "while True:\n    pass\n";

/// The line in which the node said whether limits are on, once it has.
fn limits_line(n: &Node) -> String {
    wait_for(
        "the node says whether limits are on",
        Duration::from_secs(10),
        || {
            n.log_text()
                .lines()
                .find(|l| l.contains("cpu and memory limits"))
                .map(String::from)
        },
    )
}

/// CPU time (ns) used so far by the cgroup of `pid`: cgroup v1's cpuacct.usage, or v2's
/// cpu.stat usage_usec.
fn cgroup_cpu_ns(pid: u64) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for l in text.lines() {
        let mut f = l.splitn(3, ':');
        let (_, ctrl, path) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        if ctrl.split(',').any(|c| c == "cpuacct") {
            assert!(path.contains("/aether/"), "not in an aether cgroup: {text}");
            let file = format!("/sys/fs/cgroup/{ctrl}{path}/cpuacct.usage");
            return std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{file}: {e}"))
                .trim()
                .parse()
                .unwrap();
        }
    }
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup v2 line");
    assert!(
        path.contains("aether.slice"),
        "not in an aether cgroup: {text}"
    );
    let stat = std::fs::read_to_string(format!("/sys/fs/cgroup{path}/cpu.stat")).unwrap();
    stat.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .expect("usage_usec")
        * 1000
}

#[test]
fn a_memory_hog_is_oom_killed_and_restarted_and_a_cpu_hog_keeps_to_its_quota() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: limits need a node that runs as root");
        return;
    }
    let c = TestCluster::single("n1", &[]);
    let n = &c.nodes[0];
    let said = limits_line(n);
    if said.contains("limits off") {
        eprintln!("skipped: {said}");
        return;
    }
    let (mem, cpu) = (c.root.path().join("mem.py"), c.root.path().join("cpu.py"));
    std::fs::write(&mem, MEMORY_HOG).unwrap();
    std::fs::write(&cpu, CPU_HOG).unwrap();
    let file = c.root.path().join("hogs.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"hogs\"\n\n[[slices]]\nname = \"mem\"\ncommand = [\"python3\", \"{}\"]\ninstances = 1\nresources = {{ memory = \"32MiB\" }}\nstop_timeout = \"1s\"\n\n[[slices]]\nname = \"cpu\"\ncommand = [\"python3\", \"{}\"]\ninstances = 1\nresources = {{ cpu = 0.5, memory = \"64MiB\" }}\nstop_timeout = \"1s\"\n\n[[slices]]\nname = \"small\"\ncommand = [\"python3\", \"-c\", \"import time; time.sleep(3600)\"]\ninstances = 1\nresources = {{ memory = \"2MiB\" }}\nstop_timeout = \"1s\"\n",
            mem.display(),
            cpu.display()
        ),
    )
    .unwrap();
    let out = n.cli(&["blueprint", "apply", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let row = |slice: &str| -> Option<Value> {
        let prefix = format!("hogs/{slice}/");
        instance_rows(n, "hogs")?.into_iter().find(|r| {
            r["instance"]
                .as_str()
                .is_some_and(|i| i.starts_with(&prefix))
        })
    };

    // The busy loop: at most about half a core over 3 s.
    let r = wait_for("the cpu hog runs", Duration::from_secs(30), || {
        let r = row("cpu")?;
        (r["state"] == "active" && r["pid"].is_u64()).then_some(r)
    });
    let pid = r["pid"].as_u64().unwrap();
    let (t0, u0) = (Instant::now(), cgroup_cpu_ns(pid));
    std::thread::sleep(Duration::from_secs(3));
    let (t1, u1) = (Instant::now(), cgroup_cpu_ns(pid));
    let cores = (u1 - u0) as f64 / (t1 - t0).as_nanos() as f64;
    eprintln!("{said}\nthe 0.5-core busy loop used {cores:.2} cores over 3 s");
    assert!(cores <= 0.6, "a 0.5-core quota used {cores:.2} cores");
    assert!(cores >= 0.2, "the busy loop barely ran: {cores:.2} cores");

    // The memory hog: OOM-killed, said so, restarted.
    let r = wait_for(
        "the memory hog is oom-killed and restarted",
        Duration::from_secs(60),
        || {
            let r = row("mem")?;
            (r["last_exit"] == "oom-killed" && r["restarts"].as_u64()? >= 1).then_some(r)
        },
    );
    eprintln!("the memory hog: {r}");
    // What an instance touches while it starts counts too: Python alone is over 2 MiB (3 MiB charged as it starts).
    let r = wait_for(
        "a 2 MiB python is oom-killed as it starts",
        Duration::from_secs(60),
        || {
            let r = row("small")?;
            (r["last_exit"] == "oom-killed").then_some(r)
        },
    );
    eprintln!("the small one: {r}");
    let events = stdout(&n.cli(&["events", "--limit", "500"]));
    assert!(
        events.contains("hogs/mem/0 backoff (oom-killed)"),
        "events say why it went down: {events}"
    );
    assert_ne!(r["state"], "failed", "{r}");
}

#[test]
fn runaway_workloads_do_not_cost_a_three_node_cluster_its_leader() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: limits need nodes that run as root");
        return;
    }
    let c = TestCluster::three();
    let said = limits_line(&c.nodes[0]);
    if said.contains("limits off") {
        eprintln!("skipped: {said}");
        return;
    }
    wait_for(
        "every node in n1's metrics",
        Duration::from_secs(20),
        || (c.nodes[0].metrics(&[])?["nodes"].as_array()?.len() == 3).then_some(()),
    );
    let before = c.nodes[0].status().unwrap();
    let (leader, term) = (
        before["leader"]["name"].as_str().unwrap().to_string(),
        before["term"].as_u64().unwrap(),
    );
    // Three busy loops (each would take a whole core of this host's few) and three memory
    // hogs, spread over the nodes, each held to its slice's resources.
    let (mem, cpu) = (c.root.path().join("mem.py"), c.root.path().join("cpu.py"));
    std::fs::write(&mem, MEMORY_HOG).unwrap();
    std::fs::write(&cpu, CPU_HOG).unwrap();
    let file = c.root.path().join("runaway.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"runaway\"\n\n[[slices]]\nname = \"mem\"\ncommand = [\"python3\", \"{}\"]\ninstances = 3\nmax = 3\nresources = {{ cpu = 0.1, memory = \"32MiB\" }}\nstop_timeout = \"1s\"\n\n[[slices]]\nname = \"cpu\"\ncommand = [\"python3\", \"{}\"]\ninstances = 3\nmax = 3\nresources = {{ cpu = 0.3, memory = \"64MiB\" }}\nstop_timeout = \"1s\"\n",
            mem.display(),
            cpu.display()
        ),
    )
    .unwrap();
    let out = c.nodes[0].cli(&["blueprint", "apply", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for(
        "the busy loops run and every memory hog was oom-killed",
        Duration::from_secs(90),
        || {
            let rows = instance_rows(&c.nodes[0], "runaway")?;
            let busy = rows
                .iter()
                .filter(|r| {
                    r["instance"]
                        .as_str()
                        .is_some_and(|i| i.starts_with("runaway/cpu/"))
                        && r["state"] == "active"
                })
                .count();
            let killed = rows
                .iter()
                .filter(|r| r["last_exit"] == "oom-killed")
                .count();
            (busy == 3 && killed == 3).then_some(())
        },
    );
    // The log keeps committing: writes through every node succeed while they run.
    for i in 0..15 {
        let n = &c.nodes[i % 3];
        let out = n.cli(&["kv", "put", &format!("during-{i}"), "x"]);
        assert!(
            out.status.success(),
            "write {i} through {}: {}",
            n.name,
            stderr(&out)
        );
    }
    let after = c.nodes[0].status().unwrap();
    eprintln!(
        "under 3 busy loops and 3 oom-killed hogs: leader {leader}, term {term} before; {} term {} after; 15 writes committed",
        after["leader"]["name"], after["term"]
    );
    assert_eq!(
        (after["leader"]["name"].as_str(), after["term"].as_u64()),
        (Some(leader.as_str()), Some(term)),
        "the cluster kept its leader and term under the runaways"
    );
}
