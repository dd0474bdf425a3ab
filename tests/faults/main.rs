//! Fault suite (DESIGN §13): concurrent clients put and get keys through every node of a real
//! 3-node cluster on 127.0.0.1 while a nemesis kills (SIGKILL, then a restart on the same data
//! dir), freezes (SIGSTOP/SIGCONT), partitions (UDP relays, see `relay.rs`) and restarts nodes,
//! and fills one node's disk. Every key's history is then checked for linearizability with
//! stateright's `LinearizabilityTester` (`history.rs`); besides, a write sent to a node cut off
//! from the others must not succeed while it is cut off, a cut-off node must never answer a read
//! with the value a majority has overwritten, and the cluster must make progress after each fault
//! heals.
//!
//! The tests run one at a time (they share two cores with the nodes): see [`serial`].

#[path = "../cluster/harness.rs"]
mod harness;
mod history;
mod relay;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use harness::*;
use history::{History, Outcome, Workload};
use relay::Net;
use stateright::semantics::register::{RegisterOp, RegisterRet};

/// One test at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Nodes' settings for the suite: a write or read gives up after 3 s (the default is 5 s), so
/// clients learn of a fault sooner.
const NODE_ENV: &[(&str, &str)] = &[("AETHER_RAFT_WRITE_TIMEOUT", "3s")];

/// A cluster whose nodes reach each other only through the relays of `net`.
struct FaultCluster {
    c: TestCluster,
    net: Net,
    probes: u64,
}

impl FaultCluster {
    /// `n` nodes, node 0 founding, the others joining through its relay; `prepare` runs on each
    /// node before it first starts (e.g. to mount its data dir).
    fn start(n: usize, mut prepare: impl FnMut(&Node)) -> FaultCluster {
        let root = tempfile::tempdir().unwrap();
        let mut nodes: Vec<Node> = (0..n)
            .map(|i| Node::new(root.path(), &format!("n{}", i + 1)))
            .collect();
        let net = Net::new(&nodes.iter().map(|n| n.quic).collect::<Vec<_>>());
        for (i, node) in nodes.iter_mut().enumerate() {
            node.env = NODE_ENV
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            node.env
                .push(("AETHER_ADVERTISE".into(), net.addrs[i].to_string()));
            node.env.push(("AETHER_RAFT_VOTERS".into(), n.to_string()));
            prepare(node);
        }
        nodes[0].start(None);
        wait_for(
            "n1 leads its new cluster and has written the cluster record",
            Duration::from_secs(30),
            || {
                let s = nodes[0].status()?;
                (s["node"]["ready"] == true && !s["cluster_id"].is_null()).then_some(())
            },
        );
        let out = nodes[0].cli(&["token", "create", "--uses", &(n - 1).to_string()]);
        assert!(out.status.success(), "token create: {}", stderr(&out));
        let token = stdout(&out);
        let via = net.addrs[0].to_string();
        for node in &mut nodes[1..] {
            node.start(Some((&via, &token)));
        }
        let c = TestCluster { nodes, root };
        c.wait_voters(n);
        FaultCluster { c, net, probes: 0 }
    }

    fn sockets(&self) -> Vec<PathBuf> {
        self.c
            .nodes
            .iter()
            .map(|n| n.dir.join("aether.sock"))
            .collect()
    }

    fn node(&mut self, i: usize) -> &mut Node {
        &mut self.c.nodes[i]
    }

    /// The leader as the running nodes agree on it.
    fn leader(&self) -> usize {
        let name = wait_for(
            "the running nodes agree on a leader",
            Duration::from_secs(30),
            || {
                let mut names = std::collections::BTreeSet::new();
                for n in self.c.nodes.iter().filter(|n| n.running()) {
                    names.insert(n.leader()?);
                }
                (names.len() == 1).then(|| names.pop_first().unwrap())
            },
        );
        self.c.nodes.iter().position(|n| n.name == name).unwrap()
    }

    /// Wait until one of the running nodes among `these` leads (each polled on its own thread:
    /// a follower's status waits up to 0.5 s for an unreachable leader). Returns how long that
    /// took.
    fn elected_among(&self, these: &[usize]) -> Duration {
        let start = Instant::now();
        let others: Vec<&Node> = these
            .iter()
            .filter(|i| self.c.nodes[**i].running())
            .map(|i| &self.c.nodes[*i])
            .collect();
        let done = std::sync::atomic::AtomicBool::new(false);
        let when = Mutex::new(None);
        std::thread::scope(|s| {
            for n in &others {
                let (done, when) = (&done, &when);
                s.spawn(move || {
                    while !done.load(std::sync::atomic::Ordering::SeqCst)
                        && start.elapsed() < Duration::from_secs(30)
                    {
                        if n.status().is_some_and(|s| s["node"]["role"] == "leader") {
                            when.lock().unwrap().get_or_insert(start.elapsed());
                            done.store(true, std::sync::atomic::Ordering::SeqCst);
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                });
            }
        });
        let took = when.lock().unwrap().take();
        took.unwrap_or_else(|| panic!("no leader among {these:?} (by index) within 30 s"))
    }

    /// Each running node's own term and role, for the log.
    fn terms(&self) -> String {
        self.c
            .nodes
            .iter()
            .filter(|n| n.running())
            .map(|n| match n.status() {
                Some(s) => format!(
                    "{} {} t{}",
                    n.name,
                    s["node"]["role"].as_str().unwrap_or("?"),
                    s["node"]["term"]
                ),
                None => format!("{} ?", n.name),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The highest term any running node reports.
    fn term(&self) -> u64 {
        self.c
            .nodes
            .iter()
            .filter(|n| n.running())
            .filter_map(|n| n.status()?["node"]["term"].as_u64())
            .max()
            .unwrap_or(0)
    }

    /// Wait until a write through every running node commits and a linearizable read through
    /// it returns that write: the cluster makes progress. Returns how long that took.
    fn progress(&mut self, after: &str) -> Duration {
        let start = Instant::now();
        self.probes += 1;
        let running: Vec<usize> = (0..self.c.nodes.len())
            .filter(|i| self.c.nodes[*i].running())
            .collect();
        for i in running {
            let key = format!("progress-{}-n{}", self.probes, i + 1);
            let node = &self.c.nodes[i];
            wait_for(
                &format!("a write and a read through {} {after}", node.name),
                Duration::from_secs(40),
                || {
                    node.cli(&["kv", "put", &key, after])
                        .status
                        .success()
                        .then_some(())?;
                    (stdout(&node.cli(&["kv", "get", &key])) == after).then_some(())
                },
            );
        }
        start.elapsed()
    }
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    Kill,
    Freeze,
    /// Cut one node off from the others.
    Isolate,
    /// Cut two nodes (the target and another) off from the other three.
    Split,
    Restart,
}

#[derive(Clone, Copy, Debug)]
enum Target {
    Leader,
    Follower,
}

/// A fault window on the history: writes through `node` invoked inside it must not succeed
/// inside it.
struct Cut {
    node: usize,
    from: u64,
    to: u64,
}

#[test]
fn nemesis_kills_freezes_partitions_and_restarts_nodes_under_concurrent_clients() {
    nemesis(
        3,
        &[
            (Fault::Isolate, Target::Leader),
            (Fault::Kill, Target::Leader),
            (Fault::Freeze, Target::Leader),
            (Fault::Isolate, Target::Follower),
            (Fault::Kill, Target::Follower),
            (Fault::Freeze, Target::Follower),
            (Fault::Restart, Target::Leader),
            (Fault::Isolate, Target::Leader),
        ],
    );
}

#[test]
fn five_nodes_split_two_three_with_the_leader_on_either_side() {
    nemesis(
        5,
        &[
            (Fault::Split, Target::Leader),
            (Fault::Split, Target::Follower),
        ],
    );
}

/// `n` nodes under the faults of `plan`, one after the other, with clients (two per node) all
/// along; then the checks.
fn nemesis(n: usize, plan: &[(Fault, Target)]) {
    let _one = serial();
    let started = Instant::now();
    let mut cl = FaultCluster::start(n, |_| {});
    eprintln!("[faults] {n} nodes up in {:?}", started.elapsed());
    let mut w = Workload::start(&cl.sockets(), 2, "reg", Duration::from_secs(170));
    let h = w.history.clone();
    wait_for(
        "30 answered operations before the first fault",
        Duration::from_secs(30),
        || (h.answered() >= 30).then_some(()),
    );

    let mut cuts = Vec::new();
    let mut report = Vec::new();
    // Failed checks, reported together with the linearizability check's verdict at the end.
    let mut problems: Vec<String> = Vec::new();
    for (round, &(fault, target)) in plan.iter().enumerate() {
        let leader = cl.leader();
        let t = match target {
            Target::Leader => leader,
            Target::Follower => (leader + 1) % n,
        };
        let term_before = cl.term();
        let what = format!("{fault:?} {target:?} n{}", t + 1);
        let begin = Instant::now();
        match fault {
            Fault::Kill => {
                h.mark(&format!("kill -9 n{}", t + 1));
                cl.node(t).kill9();
                if t == leader {
                    let others: Vec<usize> = (0..n).filter(|i| *i != t).collect();
                    let took = cl.elected_among(&others);
                    eprintln!(
                        "[faults] the others elected a new leader {took:?} after the kill (polled)"
                    );
                }
                std::thread::sleep(Duration::from_secs(2).saturating_sub(begin.elapsed()));
                h.mark(&format!("restart n{}", t + 1));
                cl.node(t).start(None);
            }
            Fault::Freeze => {
                h.mark(&format!("SIGSTOP n{}", t + 1));
                cl.c.nodes[t].signal(libc::SIGSTOP);
                std::thread::sleep(Duration::from_secs(3));
                h.mark(&format!("SIGCONT n{}", t + 1));
                cl.c.nodes[t].signal(libc::SIGCONT);
            }
            Fault::Restart => {
                h.mark(&format!("SIGTERM n{}", t + 1));
                let st = cl.node(t).terminate();
                assert!(st.success(), "n{} exit on SIGTERM: {st}", t + 1);
                h.mark(&format!("restart n{}", t + 1));
                cl.node(t).start(None);
            }
            Fault::Isolate | Fault::Split => {
                // The minority side: the target alone, or with one more node (not the leader
                // unless it is the target) out of five.
                let mut side = vec![t];
                if matches!(fault, Fault::Split) {
                    let second = (0..n).find(|i| *i != t && *i != leader).unwrap();
                    side.push(second);
                }
                let names: Vec<String> = side.iter().map(|i| format!("n{}", i + 1)).collect();
                let names = names.join("+");
                // A key the cut-off nodes hold, then overwritten by the majority while they are
                // cut off: they must never answer a read with the old value.
                let key = format!("stale-{round}");
                let majority: Vec<usize> = (0..n).filter(|i| !side.contains(i)).collect();
                let m = majority[0];
                let out = cl.c.nodes[m].cli(&["kv", "put", &key, "old"]);
                assert!(out.status.success(), "put {key}: {}", stderr(&out));
                for s in &side {
                    let sn = &cl.c.nodes[*s];
                    wait_for(
                        &format!("{} applies {key}=old", sn.name),
                        Duration::from_secs(20),
                        || (sn.local_get(&key)? == "old").then_some(()),
                    );
                }
                // Cut first, then mark: a write invoked after the mark is sent after the cut.
                cl.net.split(&side);
                let from = h.mark(&format!("cut off {names}"));
                // Writes and reads sent to the cut-off nodes (besides their own clients').
                for s in &side {
                    w.burst(
                        *s,
                        4,
                        &format!("cut-{round}-n{}", s + 1),
                        Duration::from_secs(3),
                    );
                }
                // The majority elects a leader of its own (when the leader was cut off) and
                // commits without the minority.
                let mn = &cl.c.nodes[m];
                let took = Instant::now();
                if side.contains(&leader) {
                    let took = cl.elected_among(&majority);
                    eprintln!(
                        "[faults] the majority elected a new leader {took:?} after the cut (polled, within 0.5 s)"
                    );
                }
                wait_for(
                    &format!(
                        "the majority (n{}) commits {key}=new while {names} are cut off",
                        m + 1,
                    ),
                    Duration::from_secs(30),
                    || {
                        mn.cli(&["kv", "put", &key, "new"])
                            .status
                            .success()
                            .then_some(())
                    },
                );
                eprintln!(
                    "[faults] majority committed {:?} after the cut",
                    took.elapsed()
                );
                // The cut-off nodes must not serve the old value (they should not answer at all).
                for s in &side {
                    let sn = &cl.c.nodes[*s];
                    let out = sn.cli(&["kv", "get", &key]);
                    if out.status.success() && stdout(&out) == "old" {
                        problems.push(format!(
                            "stale read: {} cut off from the majority answered {key}=old after the majority wrote new",
                            sn.name
                        ));
                    }
                    if out.status.success() {
                        eprintln!(
                            "[faults] note: cut-off {} answered a linearizable read ({})",
                            sn.name,
                            stdout(&out)
                        );
                    }
                }
                // Let the clients pinned to the cut-off nodes try their writes there.
                let left = Duration::from_secs(4).saturating_sub(begin.elapsed());
                std::thread::sleep(left);
                let to = h.mark(&format!("heal {names}"));
                cl.net.heal();
                for s in &side {
                    cuts.push(Cut { node: *s, from, to });
                }
                // After healing, a read through each returns the new value (never old).
                for s in &side {
                    let sn = &cl.c.nodes[*s];
                    wait_for(
                        &format!(
                            "a linearizable read through {} returns {key}=new after healing",
                            sn.name
                        ),
                        Duration::from_secs(30),
                        || {
                            let out = sn.cli(&["kv", "get", &key]);
                            if !out.status.success() {
                                return None;
                            }
                            let v = stdout(&out);
                            if v != "new" {
                                problems.push(format!(
                                    "stale read: {} answered {key}={v} after healing (new expected)",
                                    sn.name
                                ));
                            }
                            Some(())
                        },
                    );
                }
            }
        }
        let recovered = cl.progress(&format!("after {what}"));
        let term_after = cl.term();
        let line = format!(
            "{what}: fault {:?}, progress {:?} after healing, term {term_before} -> {term_after}, leader now n{}",
            begin.elapsed() - recovered,
            recovered,
            cl.leader() + 1
        );
        eprintln!("[faults] {line}; nodes: {}", cl.terms());
        // Quiet rejoins: a follower's fault and return cost no term; a leader's costs the one
        // election that replaces it (a second only when two candidates collide), never the
        // runaway terms of a node that stood for election while cut off.
        let spent = term_after - term_before;
        let allowed = match (fault, target) {
            (_, Target::Follower) => 0..=0,
            (Fault::Restart, Target::Leader) => 0..=2,
            (_, Target::Leader) => 1..=2,
        };
        if !allowed.contains(&spent) {
            problems.push(format!(
                "{what} cost {spent} terms ({term_before} -> {term_after}), expected {allowed:?}"
            ));
        }
        report.push(line);
        // Traffic between faults, so a key's history spans a fault and the calm after it.
        more_traffic(&h, &what);
    }
    w.stop();
    eprintln!("[faults] {}", h.counts());
    eprintln!("[faults] relays dropped {} packets", cl.net.dropped());
    for l in &report {
        eprintln!("[faults] {l}");
    }

    problems.extend(minority_commits(&h, &cuts));
    match h.check() {
        Ok(keys) => eprintln!("[faults] {keys} keys checked: every history is linearizable"),
        Err(e) => problems.push(format!("linearizability violated:\n{e}")),
    }
    eprintln!(
        "[faults] {n}-node nemesis test took {:?}",
        started.elapsed()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Wait until the clients have 20 more answered operations than now, after `what`.
fn more_traffic(h: &History, what: &str) {
    let answered = h.answered();
    wait_for(
        &format!("20 answered operations after {what}"),
        Duration::from_secs(30),
        || (h.answered() >= answered + 20).then_some(()),
    );
}

/// Writes sent to a cut-off node (invoked after the cut) that succeeded before the cut healed:
/// none may.
fn minority_commits(h: &History, cuts: &[Cut]) -> Vec<String> {
    let ops = h.ops.lock().unwrap();
    let mut tried = 0;
    let mut bad = Vec::new();
    for cut in cuts {
        for o in ops.iter().filter(|o| {
            o.node == cut.node && o.invoked > cut.from && matches!(o.op, RegisterOp::Write(_))
        }) {
            if let Outcome::Done(RegisterRet::WriteOk, at) = o.outcome {
                if at < cut.to {
                    bad.push(format!(
                        "a write sent to cut-off n{} succeeded while it was cut off: {o:?}",
                        cut.node + 1
                    ));
                }
            }
            if o.invoked < cut.to {
                tried += 1;
            }
        }
    }
    eprintln!(
        "[faults] {tried} writes were sent to cut-off nodes; {} succeeded while cut off",
        bad.len()
    );
    assert!(
        tried > 0,
        "no client wrote to a cut-off node: the check checked nothing"
    );
    bad
}

/// A tmpfs mounted on a dir, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(stderr(&out));
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .output();
    }
}

/// Fill the file system holding `dir` with one file until it is full; returns the file.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xa5u8; 64 << 10];
    let mut small = false;
    loop {
        let r = if small {
            f.write(&chunk[..512])
        } else {
            f.write(&chunk)
        };
        match r {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                if small {
                    break;
                }
                small = true;
            }
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    let _ = f.sync_all();
    path
}

#[test]
fn a_follower_whose_disk_fills_stops_cleanly_and_rejoins_after_space_is_freed() {
    full_disk(2);
}

#[test]
fn a_leader_whose_disk_fills_stops_cleanly_the_others_take_over_and_it_rejoins() {
    full_disk(0);
}

/// Node `full` (n1 founds the cluster and leads it at first; n3 joins last, a follower) has its
/// data dir on a small tmpfs; it is filled under load. The node must stop cleanly (the failed
/// commit named in its log, no panic), the others go on, and after the space is freed it
/// restarts and catches up; the histories stay linearizable throughout.
fn full_disk(full: usize) {
    let _one = serial();
    let started = Instant::now();
    let name = format!("n{}", full + 1);
    // Probe whether this machine lets the test mount a tmpfs at all.
    let probe = tempfile::tempdir().unwrap();
    if let Err(e) = Tmpfs::mount(&probe.path().join("m"), "1m") {
        eprintln!(
            "SKIPPED the full-disk test of {name}: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {e}"
        );
        return;
    }
    let mut mounts = Vec::new();
    let mut cl = FaultCluster::start(3, |n| {
        if n.name == name {
            mounts.push(Tmpfs::mount(&n.dir, "48m").expect("mount a tmpfs for the data dir"));
        }
    });
    let leader = cl.leader();
    eprintln!(
        "[faults] {name}'s disk will fill; it is {}",
        if leader == full {
            "the leader"
        } else {
            "a follower"
        }
    );
    let other = (full + 1) % 3;
    let mut w = Workload::start(&cl.sockets(), 2, "disk", Duration::from_secs(120));
    let h = w.history.clone();
    wait_for(
        "30 answered operations before the disk fills",
        Duration::from_secs(30),
        || (h.answered() >= 30).then_some(()),
    );
    h.mark(&format!("fill {name}'s disk"));
    let filler = fill(&cl.c.nodes[full].dir);
    // Big values make every node's log grow, so the full one must allocate soon.
    let writer = cl.c.nodes[other].dir.clone();
    let big = "x".repeat(100 << 10);
    let stopped = Instant::now();
    let how = wait_for(
        &format!("{name} (its disk full) stops or refuses writes"),
        Duration::from_secs(60),
        || {
            let n = &mut cl.c.nodes[full];
            if let Some(st) = n.try_exit() {
                return Some(format!("{name} exited with {st}"));
            }
            let out = n.cli(&["kv", "put", "disk-probe", "x"]);
            if !out.status.success() && stderr(&out).contains("stop") {
                return Some(format!("{name} refuses writes: {}", stderr(&out).trim()));
            }
            let _ = std::process::Command::new(BIN)
                .arg("--data-dir")
                .arg(&writer)
                .args(["kv", "put", "disk-big", &big])
                .output();
            None
        },
    );
    eprintln!("[faults] full disk: {how} after {:?}", stopped.elapsed());
    let log = cl.c.nodes[full].log_text();
    for l in log.lines().filter(|l| {
        [
            "failed",
            "Error",
            "in-flight",
            "raft stopped",
            "endpoint closed",
        ]
        .iter()
        .any(|w| l.contains(w))
    }) {
        eprintln!("[faults] {name}: {l}");
    }
    assert!(
        log.contains("raft store commit failed"),
        "{name} stopped without saying the store failed; log tail:\n{}",
        tail(&log, 30)
    );
    // A panic or abort is not a clean stop.
    assert!(
        !log.contains("panicked"),
        "{name} panicked on a full disk; log tail:\n{}",
        tail(&log, 30)
    );
    if cl.c.nodes[full].running() {
        // It refused writes while up: it must not take them later either; it must exit.
        wait_for(
            &format!("{name} exits after its store failed"),
            Duration::from_secs(30),
            || cl.c.nodes[full].try_exit(),
        );
    }
    h.mark(&format!("{name} stopped"));
    // The two others go on (electing a leader of their own when it led).
    let recovered = cl.progress(&format!("with {name}'s disk full"));
    eprintln!("[faults] the others committed {recovered:?} after {name} stopped");

    // Free the space and restart: it rejoins and catches up.
    std::fs::remove_file(&filler).unwrap();
    h.mark(&format!("free {name}'s disk, restart {name}"));
    let back = Instant::now();
    cl.node(full).start(None);
    eprintln!(
        "[faults] {name} restarted (admin socket up) in {:?}",
        back.elapsed()
    );
    cl.c.wait_voters(3);
    eprintln!("[faults] 3 voters, {name} ready in {:?}", back.elapsed());
    let key = format!("progress-{}-n{}", cl.probes, other + 1);
    let n = &cl.c.nodes[full];
    wait_for(
        &format!("{name} holds the writes made while it was down"),
        Duration::from_secs(60),
        || (n.local_get(&key).is_some()).then_some(()),
    );
    let caught_up = back.elapsed();
    eprintln!(
        "[faults] {name} holds the writes made while it was down {caught_up:?} after its restart"
    );
    if caught_up > Duration::from_secs(5) {
        // Slow (seen now and then): show why, for whoever reads the test's output.
        let l = cl.leader();
        for i in [full, l] {
            let node = &cl.c.nodes[i];
            eprintln!(
                "[faults] slow catch-up: {}'s log since the restart:\n{}",
                node.name,
                tail(&node.log_text(), 40)
            );
        }
    }
    cl.progress(&format!("after {name} came back"));
    more_traffic(&h, &format!("{name} came back"));
    w.stop();
    eprintln!("[faults] {}", h.counts());
    match h.check() {
        Ok(keys) => eprintln!("[faults] {keys} keys checked: every history is linearizable"),
        Err(e) => panic!("linearizability violated:\n{e}"),
    }
    // Nodes down, then the tmpfs, then the temp dir (which can then remove the mount point).
    for n in cl.c.nodes.iter_mut() {
        n.kill9();
    }
    drop(mounts);
    drop(cl);
    eprintln!(
        "[faults] full-disk test of {name} took {:?}",
        started.elapsed()
    );
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
