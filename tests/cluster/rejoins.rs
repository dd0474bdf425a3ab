//! Quiet rejoins: a node that comes back (resumed after a freeze, restarted after kill -9) does
//! not depose the leader its peers still follow; it asks first (a pre-vote) and is told no.

use std::time::Duration;

use crate::harness::*;

fn term(n: &Node) -> Option<u64> {
    n.status()?["node"]["term"].as_u64()
}

/// Wait until `n` follows `leader` at `term` and a write through it commits: it has heard
/// from the leader since it came back.
fn caught_up(n: &Node, leader: &str, term_now: u64, key: &str) {
    wait_for(
        &format!("{} to follow {leader} in term {term_now} again", n.name),
        Duration::from_secs(30),
        || {
            let s = n.status()?;
            (s["leader"]["name"].as_str() == Some(leader)
                && s["node"]["term"].as_u64() >= Some(term_now))
            .then_some(())
        },
    );
    let out = n.cli(&["kv", "put", key, "v"]);
    assert!(
        out.status.success(),
        "kv put via {}: {}",
        n.name,
        stderr(&out)
    );
}

/// The terms of the running nodes.
fn terms(c: &TestCluster) -> Vec<(String, Option<u64>)> {
    c.nodes
        .iter()
        .filter(|n| n.running())
        .map(|n| (n.name.clone(), term(n)))
        .collect()
}

/// Election timeouts five times the default: 2 s of silence (the lease), so that the load of
/// the other tests on a small machine does not look like a dead leader while a follower is
/// frozen; the freeze is longer than the lease and the widest wait after it.
const SLOW_ELECTIONS: [(&str, &str); 2] = [
    ("AETHER_RAFT_ELECTION_TIMEOUT_MIN", "1s"),
    ("AETHER_RAFT_ELECTION_TIMEOUT_MAX", "2s"),
];

#[test]
fn a_returning_follower_or_old_leader_costs_no_term() {
    let mut c = TestCluster::three_with(&SLOW_ELECTIONS);
    let l = c.leader_index();
    let leader = c.nodes[l].name.clone();
    let t0 = term(&c.nodes[l]).unwrap();
    let f = (l + 1) % 3;

    // A follower frozen past several election timeouts comes back.
    c.nodes[f].signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_secs(5));
    c.nodes[f].signal(libc::SIGCONT);
    caught_up(&c.nodes[f], &leader, t0, "after-freeze");
    let want = vec![Some(t0); 3];
    let got = terms(&c);
    assert_eq!(
        got.iter().map(|(_, t)| *t).collect::<Vec<_>>(),
        want,
        "a resumed follower changed the term: {got:?}"
    );

    // The leader is killed: the survivors elect one of themselves.
    c.nodes[l].kill9();
    let (next, t1) = wait_for(
        "a new leader among the survivors",
        Duration::from_secs(30),
        || {
            let s = c.nodes[f].status()?;
            let name = s["leader"]["name"].as_str()?;
            (name != leader).then(|| (name.to_string(), s["node"]["term"].as_u64().unwrap()))
        },
    );
    assert!(t1 > t0, "a new leader needs a new term ({t0} -> {t1})");

    // The old leader restarts on its data dir, believing it still leads term t0.
    c.nodes[l].start(None);
    caught_up(&c.nodes[l], &next, t1, "after-restart");
    let got = terms(&c);
    assert!(
        got.iter().all(|(_, t)| *t == Some(t1)),
        "the restarted old leader changed the term (want {t1} everywhere): {got:?}"
    );
    let s = c.nodes[f].status().unwrap();
    assert_eq!(s["leader"]["name"].as_str(), Some(next.as_str()), "{s}");
}
