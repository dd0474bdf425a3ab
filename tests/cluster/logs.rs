//! What a node says on stderr and at a glance: plain text when stderr is a file, no ERROR on a
//! clean stop, a silent peer noted once (not openraft's line per retry), and a status that
//! answers promptly after the leader died without calling it healthy.

use std::time::{Duration, Instant};

use crate::harness::*;

#[test]
fn a_node_logs_plain_text_and_a_clean_stop_logs_no_error() {
    let mut c = TestCluster::single("n1", &[]);
    let bp = c.root.path().join("idle.toml");
    std::fs::write(
        &bp,
        "name = \"idle\"\n[[slices]]\nname = \"w\"\ncommand = [\"sleep\", \"1000\"]\ninstances = 1\n",
    )
    .unwrap();
    let n = &c.nodes[0];
    let out = n.cli(&["blueprint", "apply", bp.to_str().unwrap()]);
    assert!(out.status.success(), "apply: {}", stderr(&out));
    wait_for("idle/w/0 active", Duration::from_secs(30), || {
        stdout(&n.cli(&["blueprint", "show", "idle"]))
            .lines()
            .any(|l| l.starts_with("idle/w/0 ") && l.contains(" active"))
            .then_some(())
    });
    let asked = Instant::now();
    let st = c.nodes[0].terminate();
    let took = asked.elapsed();
    let log = c.nodes[0].log_text();
    assert!(st.success(), "exit {st}; log:\n{log}");
    assert!(
        !log.contains("\x1b["),
        "stderr is a file: no colour codes; log:\n{log}"
    );
    let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert!(errors.is_empty(), "a clean stop logs no ERROR: {errors:#?}");
    assert!(
        took < Duration::from_secs(2),
        "SIGTERM with one instance running took {took:?}; log:\n{log}"
    );
}

#[test]
fn a_dead_leader_is_reported_unreachable_promptly_and_noted_once() {
    let mut c = TestCluster::three();
    let l = c.leader_index();
    let dead = c.nodes[l].name.clone();
    let dead_addr = c.nodes[l].addr();
    c.nodes[l].kill9();
    let asker = (l + 1) % 3;

    // Right after the death: the survivor answers within its wait from what it knows, and
    // never names the dead node as a healthy leader.
    let asked = Instant::now();
    let out = c.nodes[asker].cli(&["status"]);
    let took = asked.elapsed();
    let text = stdout(&out);
    assert!(out.status.success(), "status: {}", stderr(&out));
    let line = text.lines().find(|l| l.starts_with("leader:")).unwrap();
    assert!(
        !line.contains(&format!(" {dead} ")) || line.contains("UNREACHABLE"),
        "the dead leader named as healthy:\n{text}"
    );
    assert!(
        took < Duration::from_millis(1_500),
        "status took {took:?} after the leader died:\n{text}"
    );

    // The new leader notes the silent peer once, not on every retry.
    let new = wait_for("a new leader", Duration::from_secs(20), || {
        c.nodes[asker].leader().filter(|n| *n != dead)
    });
    let lead = c.nodes.iter().find(|n| n.name == new).unwrap();
    let noted = format!("at {dead_addr} does not answer");
    wait_for(
        &format!("{new} notes that {dead} does not answer"),
        Duration::from_secs(20),
        || lead.log_text().contains(&noted).then_some(()),
    );
    // An observation window, not a wait for a condition: openraft retries every 100-200 ms,
    // so 4 s of retries would show dozens of its lines, and our note comes again after 10 s.
    std::thread::sleep(Duration::from_secs(4));
    let log = lead.log_text();
    let retries: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("openraft::replication") || l.contains("replication_handler"))
        .collect();
    assert!(
        retries.is_empty(),
        "openraft's per-retry lines: {retries:#?}"
    );
    assert_eq!(
        log.matches(&noted).count(),
        1,
        "noted once in its first 10 s; log:\n{log}"
    );
}
