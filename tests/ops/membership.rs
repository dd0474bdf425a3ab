//! `aether remove`, `aether token list|revoke`, and a member that comes back at a new address.

use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

/// `status --output json` members by name: (role, addr).
fn members(node: &Node) -> Option<Vec<(String, String, String)>> {
    let s = node.status()?;
    Some(
        s["members"]
            .as_array()?
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap_or_default().to_string(),
                    m["role"].as_str().unwrap_or_default().to_string(),
                    m["addr"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect(),
    )
}

fn put(node: &Node, key: &str, value: &str) {
    let out = node.cli(&["kv", "put", key, value]);
    assert!(out.status.success(), "kv put {key}: {}", stderr(&out));
}

#[test]
fn a_dead_voter_is_removed_and_a_removal_that_would_lose_quorum_is_refused() {
    let mut c = TestCluster::three();
    let l = c.leader_index();
    let followers: Vec<usize> = (0..3).filter(|i| *i != l).collect();
    let (live, dead) = (followers[0], followers[1]);
    let (leader_name, live_name, dead_name) = (
        c.nodes[l].name.clone(),
        c.nodes[live].name.clone(),
        c.nodes[dead].name.clone(),
    );
    c.nodes[dead].kill9();

    // The leader refuses to remove itself, naming the way out.
    let out = c.nodes[live].cli(&["remove", &leader_name]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("is the leader"), "{}", stderr(&out));

    // Removing the live follower would leave {leader, dead}: one of two answers.
    wait_for(
        &format!("the leader to see '{dead_name}' unreachable"),
        Duration::from_secs(20),
        || {
            let s = c.nodes[l].status()?;
            s["members"]
                .as_array()?
                .iter()
                .any(|m| m["name"] == dead_name.as_str() && m["reachable"] == false)
                .then_some(())
        },
    );
    let refused = c.nodes[l].cli(&["remove", &live_name]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    let why = stderr(&refused);
    assert!(why.contains("would lose quorum"), "{why}");
    assert!(
        why.contains(&format!("'{dead_name}'")),
        "names the silent voter: {why}"
    );
    assert_eq!(
        voters(&c.nodes[l].status().unwrap()),
        3,
        "a refused removal changes nothing"
    );

    // An unknown name is bad input.
    let out = c.nodes[l].cli(&["remove", "nobody"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no member named 'nobody'"),
        "{}",
        stderr(&out)
    );

    // The dead voter goes, asked through a follower (forwarded to the leader).
    let out = c.nodes[live].cli(&["remove", &dead_name, "--output", "json"]);
    assert!(out.status.success(), "remove {dead_name}: {}", stderr(&out));
    let done: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        done["done"]
            .as_str()
            .unwrap()
            .contains(&format!("removed '{dead_name}'")),
        "{done}"
    );
    for i in [l, live] {
        wait_for(
            &format!("{} to see two voters and no '{dead_name}'", c.nodes[i].name),
            Duration::from_secs(20),
            || {
                let m = members(&c.nodes[i])?;
                (m.len() == 2
                    && m.iter()
                        .all(|(n, role, _)| n != &dead_name && role == "voter"))
                .then_some(())
            },
        );
    }
    // The two voters left commit writes: the removed one no longer counts.
    put(&c.nodes[live], "after-remove", "yes");
    let audit = c.nodes[l].cli(&["events", "--output", "json"]);
    let events: Vec<Value> = serde_json::from_slice(&audit.stdout).unwrap();
    let removal = events
        .iter()
        .find(|e| e["what"] == format!("remove node {dead_name}").as_str())
        .unwrap_or_else(|| panic!("the audit trail names the removed node: {events:?}"));
    assert!(
        removal["actor"]
            .as_str()
            .unwrap()
            .ends_with(&format!("@{live_name}")),
        "the operator who asked (through '{live_name}') is audited: {removal}"
    );
}

#[test]
fn tokens_are_listed_without_secrets_and_a_revoked_one_is_refused() {
    let mut c = TestCluster::single("n1", &[]);
    let token_of = |args: &[&str]| {
        let out = c.nodes[0].cli(args);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).trim().to_string()
    };
    let kept = token_of(&["token", "create", "--uses", "2", "--ttl", "1h"]);
    let revoked = token_of(&["token", "create"]);
    let list = |c: &TestCluster| -> Vec<Value> {
        let out = c.nodes[0].cli(&["token", "list", "--output", "json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let before = list(&c);
    assert_eq!(before.len(), 2, "{before:?}");
    assert!(before.iter().all(|t| t["state"] == "active"), "{before:?}");
    let id_of = |tok: &str| {
        before
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .find(|id| tok.contains(id.as_str()))
            .expect("a token's text carries its id")
    };
    let revoked_id = id_of(&revoked);

    let out = c.nodes[0].cli(&["token", "revoke", &revoked_id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let after = list(&c);
    let state = |id: &str| {
        after
            .iter()
            .find(|t| t["id"] == id)
            .map(|t| t["state"].as_str().unwrap().to_string())
    };
    assert_eq!(state(&revoked_id).as_deref(), Some("revoked"));
    assert_eq!(state(&id_of(&kept)).as_deref(), Some("active"));
    let text = stdout(&c.nodes[0].cli(&["token", "list"]));
    assert!(text.contains("revoked") && text.contains("2/2"), "{text}");
    for secret in [&kept, &revoked] {
        let secret_part = secret.rsplit('.').next().unwrap();
        assert!(
            !text.contains(secret_part)
                && !serde_json::to_string(&after).unwrap().contains(secret_part),
            "token list shows no secret"
        );
    }

    // Unknown id: bad input, nothing changes.
    let out = c.nodes[0].cli(&["token", "revoke", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no join token with id 'nope'"),
        "{}",
        stderr(&out)
    );

    // The revoked token no longer admits a node; the kept one does.
    let n2 = Node::new(c.root.path(), "n2");
    let out = n2.run_to_exit(
        Some((&c.nodes[0].addr(), &revoked)),
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("revoked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.join_with_token("n2", &kept);
    c.wait_voters(1);
    let after = list(&c);
    let kept_row = after.iter().find(|t| t["id"] == id_of(&kept)).unwrap();
    assert_eq!(kept_row["uses_left"], 1, "{kept_row}");
}

#[test]
fn a_member_restarted_at_a_new_address_is_found_there() {
    let mut c = TestCluster::three();
    let l = c.leader_index();
    let m = (0..3).find(|i| *i != l).unwrap();
    let name = c.nodes[m].name.clone();
    assert_eq!(c.nodes[m].terminate().code(), Some(0));
    let old = c.nodes[m].addr();
    c.nodes[m].quic = free_port();
    let new = c.nodes[m].addr();
    c.nodes[m].start(None);
    for i in 0..3 {
        wait_for(
            &format!("{} to have '{name}' at {new} (was {old})", c.nodes[i].name),
            Duration::from_secs(30),
            || {
                let ms = members(&c.nodes[i])?;
                ms.iter()
                    .any(|(n, _, a)| n == &name && a == &new)
                    .then_some(())
            },
        );
    }
    // The leader replicates to the new address: a write lands in the moved node's replica.
    put(&c.nodes[l], "moved", "here");
    wait_for(
        &format!("'{name}' to apply a write made after it moved"),
        Duration::from_secs(20),
        || (c.nodes[m].local_get("moved")? == "here").then_some(()),
    );
    c.wait_voters(3);
}
