//! Certificate lifetimes on real nodes: with a 30 s `tls.node_cert_ttl` every node renews its
//! own certificate before it expires, and the cluster keeps committing and accepts a restarted
//! member (new connections) after the first certificates have expired, and a node stopped past
//! its certificate's expiry renews it at start.

use std::path::Path;
use std::time::Duration;

use super::harness::{TestCluster, stderr, stdout, wait_for};

/// The `not_after` (Unix seconds) of the certificate a node presents now.
fn not_after(dir: &Path) -> i64 {
    aether::net::tls::cert_not_after(&dir.join("tls").join("node.crt")).expect("node.crt")
}

fn unix_now() -> i64 {
    (aether::domain::now_millis() / 1000) as i64
}

/// `kv put` through `via`, then wait until every running node's replica has it.
fn put_everywhere(c: &TestCluster, key: &str, value: &str) {
    let via = &c.nodes[c.leader_index()];
    let out = via.cli(&["kv", "put", key, value]);
    assert!(
        out.status.success(),
        "kv put: {}{}",
        stdout(&out),
        stderr(&out)
    );
    wait_for(
        &format!("'{key}' on every node"),
        Duration::from_secs(30),
        || {
            c.nodes
                .iter()
                .all(|n| n.local_get(key).as_deref() == Some(value))
                .then_some(())
        },
    );
}

#[test]
fn node_certificates_renew_themselves_and_the_cluster_outlives_the_first_ones() {
    let env = [("AETHER_TLS_NODE_CERT_TTL", "30s")];
    let mut c = TestCluster::three_with(&env);
    let first: Vec<i64> = c.nodes.iter().map(|n| not_after(&n.dir)).collect();
    for (n, at) in c.nodes.iter().zip(&first) {
        assert!(
            *at <= unix_now() + 30,
            "{}'s certificate outlives tls.node_cert_ttl: not_after {at}",
            n.name
        );
    }

    wait_for(
        "every node's certificate renewed",
        Duration::from_secs(90),
        || {
            c.nodes
                .iter()
                .zip(&first)
                .all(|(n, at)| not_after(&n.dir) > *at)
                .then_some(())
        },
    );
    for n in &c.nodes {
        assert!(
            n.log_text().contains("renewed this node's certificate"),
            "{} did not log its renewal",
            n.name
        );
    }

    let last_first = *first.iter().max().unwrap();
    wait_for(
        "the first certificates expired",
        Duration::from_secs(90),
        || (unix_now() > last_first + 1).then_some(()),
    );
    put_everywhere(&c, "certs/after-expiry", "yes");

    // A restarted member makes new connections both ways: they need the renewed certificates.
    let leader = c.leader_index();
    let i = (leader + 1) % c.nodes.len();
    c.nodes[i].terminate();
    put_everywhere_but(&c, i, "certs/while-down", "1");
    c.nodes[i].start(None);
    c.wait_voters(3);
    put_everywhere(&c, "certs/after-restart", "yes");
    assert_eq!(
        c.nodes[i].local_get("certs/while-down").as_deref(),
        Some("1"),
        "the restarted node caught up"
    );

    // Status lists the answering node's certificate: it expires within 30 days.
    let s = c.nodes[i].status().expect("status");
    let certs = s["certs"].as_array().expect("certs in status");
    assert!(
        certs
            .iter()
            .any(|x| x["kind"] == "node" && x["name"] == c.nodes[i].name.as_str()),
        "status lists this node's certificate: {s}"
    );
    let out = c.nodes[i].cli(&["status"]);
    assert!(
        stdout(&out).contains(&format!(
            "warning: this node's certificate '{}' expires in",
            c.nodes[i].name
        )),
        "{}",
        stdout(&out)
    );

    // A node stopped until its certificate expired renews it at start from its replica.
    c.nodes[i].terminate();
    let expired_at = not_after(&c.nodes[i].dir);
    wait_for(
        "the stopped node's certificate expired",
        Duration::from_secs(60),
        || (unix_now() > expired_at + 1).then_some(()),
    );
    c.nodes[i].start(None);
    wait_for(
        "the node renewed its expired certificate at start",
        Duration::from_secs(30),
        || (not_after(&c.nodes[i].dir) > unix_now()).then_some(()),
    );
    c.wait_voters(3);
    put_everywhere(&c, "certs/after-expired-restart", "yes");
}

/// `kv put` through the leader while node `down` is stopped; every other node has it after.
fn put_everywhere_but(c: &TestCluster, down: usize, key: &str, value: &str) {
    let via = &c.nodes[c.leader_index()];
    let out = via.cli(&["kv", "put", key, value]);
    assert!(
        out.status.success(),
        "kv put: {}{}",
        stdout(&out),
        stderr(&out)
    );
    wait_for(
        &format!("'{key}' on the running nodes"),
        Duration::from_secs(30),
        || {
            c.nodes
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != down)
                .all(|(_, n)| n.local_get(key).as_deref() == Some(value))
                .then_some(())
        },
    );
}
