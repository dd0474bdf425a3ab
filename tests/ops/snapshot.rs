//! `aether snapshot save|inspect|restore` on real nodes: a save from a follower holds every
//! acknowledged write, inspect counts the tables, a restore starts a new cluster (new id, one
//! voter) with the old state that the old cluster's tokens and certificates cannot reach, and a
//! corrupt, truncated or newer file is refused with the target dir left untouched.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use aether::config::NetConfig;
use aether::net::Endpoint;
use aether::net::tls::NodeTls;
use aether::raft::network::{PeerRequest, PeerResponse};
use serde_json::Value;

use super::harness::*;

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}", stderr(out));
    stdout(out)
}

fn json(out: &Output) -> Value {
    serde_json::from_str(&ok(out)).unwrap()
}

/// One slice of one sleeping instance.
const BLUEPRINT: &str = "name = \"keep\"\n\n[[slices]]\nname = \"web\"\ncommand = [\"sleep\", \"3600\"]\ninstances = 1\nmin = 1\nmax = 2\nresources = { cpu = 0.01, memory = \"8MiB\" }\nstop_timeout = \"1s\"\n";

/// Run `aether ARGS…` with no node behind it (offline commands).
fn offline(dir: &Path, args: &[&str]) -> Output {
    std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

#[test]
fn a_saved_snapshot_restores_into_a_new_cluster_that_the_old_one_cannot_reach() {
    let run = format!("ops-snapshot-{}", std::process::id());
    let _reaper = Reaper(run.clone());
    let env = [("TEST_RUN", run.as_str())];
    let mut c = TestCluster::three_with(&env);
    let root = c.root.path().to_path_buf();
    let root = root.as_path();
    let leader = c.leader_index();
    let follower = (leader + 1) % 3;
    let (l, f) = (&c.nodes[leader], &c.nodes[follower]);
    let old_status = l.status().unwrap();
    let old_id = old_status["cluster_id"].as_str().unwrap().to_string();

    // A token of the old cluster, a blueprint, keys written through both nodes.
    let old_token = ok(&l.cli(&["token", "create", "--uses", "5"]));
    let bp = root.join("keep.toml");
    std::fs::write(&bp, BLUEPRINT).unwrap();
    ok(&l.cli(&["blueprint", "apply", bp.to_str().unwrap()]));
    for i in 0..20 {
        let via = if i % 2 == 0 { l } else { f };
        ok(&via.cli(&["kv", "put", &format!("k{i:02}"), &format!("v{i}")]));
    }
    // Acknowledged by the leader, then saved at once from a follower: it must be in the file.
    ok(&l.cli(&["kv", "put", "last", "acknowledged"]));
    let file = root.join("backup.snap");
    let saved = ok(&f.cli(&["snapshot", "save", file.to_str().unwrap()]));
    assert!(
        saved.starts_with("saved '") && saved.contains("sha256"),
        "{saved}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the snapshot file is private");

    // Inspect: offline, every table counted, the checksum verified.
    let info = json(&offline(
        &root.join("nowhere"),
        &[
            "snapshot",
            "inspect",
            file.to_str().unwrap(),
            "--output",
            "json",
        ],
    ));
    assert_eq!(info["cluster_id"], old_id.as_str());
    assert_eq!(info["counts"]["kv"], 21, "{info}");
    assert_eq!(info["counts"]["blueprints"], 1, "{info}");
    assert_eq!(info["counts"]["nodes"], 3, "{info}");
    // The token n2 and n3 joined with, and the one above.
    assert_eq!(info["counts"]["tokens"], 2, "{info}");
    assert!(info["counts"]["audit"].as_u64().unwrap() >= 22, "{info}");
    let members = info["members"].as_array().unwrap();
    assert_eq!(members.iter().filter(|m| m["voter"] == true).count(), 3);
    assert!(!root.join("nowhere").exists(), "inspect creates nothing");
    let text = ok(&offline(
        root,
        &["snapshot", "inspect", file.to_str().unwrap()],
    ));
    assert!(
        text.contains("(verified)") && text.contains(&old_id),
        "{text}"
    );
    // A follower that missed writes (stopped while the other two committed them) and is saved
    // from the moment it runs again: its save still holds them, as it waits at the read
    // barrier until it has applied what the leader had.
    let again = root.join("again.snap");
    for i in 0..3 {
        f.signal(libc::SIGSTOP);
        for k in 0..5 {
            ok(&l.cli(&["kv", "put", &format!("round{i}-{k}"), "x"]));
        }
        f.signal(libc::SIGCONT);
        ok(&f.cli(&["snapshot", "save", again.to_str().unwrap()]));
        let info = json(&offline(
            root,
            &[
                "snapshot",
                "inspect",
                again.to_str().unwrap(),
                "--output",
                "json",
            ],
        ));
        assert_eq!(info["counts"]["kv"], 21 + 5 * (i + 1), "round {i}: {info}");
    }

    // Corrupt, truncated, newer, not a snapshot: refused (exit 2) by inspect and restore,
    // naming the check, and the target dir is not created.
    let bytes = std::fs::read(&file).unwrap();
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x10;
    let mut newer = bytes.clone();
    newer[8..12].copy_from_slice(&99u32.to_be_bytes());
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        (
            "flipped",
            flipped,
            &["checksum mismatch", "expected", "found"],
        ),
        (
            "truncated",
            bytes[..bytes.len() - 100].to_vec(),
            &["truncated", "no checksum trailer"],
        ),
        (
            "newer",
            newer,
            &["backup format '99'", "reads backup format '1'"],
        ),
        (
            "garbage",
            b"hello, world".to_vec(),
            &["not an aether snapshot"],
        ),
    ];
    for (name, content, expect) in &cases {
        let bad = root.join(format!("{name}.snap"));
        std::fs::write(&bad, content).unwrap();
        let dir = root.join(format!("restore-{name}"));
        for args in [
            vec!["snapshot", "inspect", bad.to_str().unwrap()],
            vec!["snapshot", "restore", bad.to_str().unwrap()],
        ] {
            let out = offline(&dir, &args);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{name} {args:?}: {}",
                stderr(&out)
            );
            let err = stderr(&out);
            for e in *expect {
                assert!(err.contains(e), "{name} {args:?}: expected '{e}' in: {err}");
            }
            assert!(!dir.exists(), "{name}: the target dir must not be created");
        }
    }
    // A dir that holds a store is refused and left as it is.
    let used = &c.nodes[(leader + 2) % 3];
    let before = std::fs::read_dir(&used.dir).unwrap().count();
    let out = used.cli(&["snapshot", "restore", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("already holds a store"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_dir(&used.dir).unwrap().count(), before);
    // Without --data-dir there is no target: usage.
    let out = std::process::Command::new(BIN)
        .args(["snapshot", "restore", file.to_str().unwrap()])
        .env_remove("AETHER_DATA_DIR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // Restore into a fresh dir and start a node on it: a new cluster with the old state.
    let mut r = Node::new(root, "r1");
    r.env = vec![("TEST_RUN".into(), run.clone())];
    let restored = ok(&r.cli(&["snapshot", "restore", file.to_str().unwrap()]));
    assert!(
        restored.contains(&old_id) && restored.contains("kv 21"),
        "{restored}"
    );
    r.start(None);
    wait_for(
        "r1 leads its restored cluster",
        Duration::from_secs(30),
        || (r.status()?["node"]["ready"] == true && r.leader()? == "r1").then_some(()),
    );
    for i in 0..20 {
        assert_eq!(
            ok(&r.cli(&["kv", "get", &format!("k{i:02}")])),
            format!("v{i}")
        );
    }
    assert_eq!(ok(&r.cli(&["kv", "get", "last"])), "acknowledged");
    let s = r.status().unwrap();
    let new_id = s["cluster_id"].as_str().unwrap();
    assert_ne!(new_id, old_id, "a restore is a new cluster");
    assert_eq!(voters(&s), 1, "{s}");
    assert_eq!(s["members"].as_array().unwrap().len(), 1, "{s}");
    let bps = json(&r.cli(&["blueprint", "list", "--output", "json"]));
    assert!(
        bps.as_array()
            .unwrap()
            .iter()
            .any(|b| b["blueprint"]["name"] == "keep"),
        "{bps}"
    );
    let events = ok(&r.cli(&["events", "--limit", "5"]));
    assert!(events.contains("restore of cluster"), "{events}");

    // The old cluster's join token does not work against it …
    let j = Node::new(root, "j-old");
    let out = j.run_to_exit(Some((&r.addr(), &old_token)), Duration::from_secs(40));
    assert!(!out.status.success(), "an old token must not join");
    assert!(
        stderr(&out).contains("does not belong to the cluster"),
        "{}",
        stderr(&out)
    );
    assert!(!j.dir.join("identity.json").exists());
    // … nor an old member's certificate at the transport.
    let old_tls = NodeTls::load(&f.dir.join("tls")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let refused = rt.block_on(async {
        let ep = Endpoint::bind(
            "127.0.0.1:0".parse().unwrap(),
            &old_tls,
            &[1; 32],
            &NetConfig::default(),
        )
        .unwrap();
        ep.call::<_, PeerResponse>(
            &r.addr(),
            aether::raft::network::ROUTE,
            &PeerRequest::Status,
            Some(Duration::from_secs(5)),
        )
        .await
        .is_err()
    });
    assert!(refused, "an old member's certificate must be refused");

    // A new node joins the restored cluster with a new token and reads the restored keys.
    let tok = ok(&r.cli(&["token", "create"]));
    let mut r2 = Node::new(root, "r2");
    r2.env = vec![("TEST_RUN".into(), run.clone())];
    r2.start(Some((&r.addr(), &tok)));
    wait_for(
        "r2 a member of the restored cluster",
        Duration::from_secs(30),
        || (r.status()?["members"].as_array()?.len() == 2).then_some(()),
    );
    assert_eq!(ok(&r2.cli(&["kv", "get", "last"])), "acknowledged");
    // r2's own replica holds the restored state (the restored leader sealed it into a snapshot
    // that r2 installed): no log entry carries it.
    wait_for(
        "r2's own replica to hold the restored keys",
        Duration::from_secs(30),
        || (r2.local_get("last")? == "acknowledged").then_some(()),
    );
    assert!(
        r.log_text().contains("sealing the restored state"),
        "the restored leader seals its state into a snapshot"
    );

    // Without a quorum there is no consistent copy to take: exit 3, no file, nothing partial.
    c.nodes[leader].kill9();
    c.nodes[(leader + 2) % 3].kill9();
    let lost = root.join("no-quorum.snap");
    let out = c.nodes[follower].cli(&["snapshot", "save", lost.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(!lost.exists());
    let partial = std::fs::read_dir(root)
        .unwrap()
        .any(|e| e.unwrap().file_name().to_string_lossy().contains("partial"));
    assert!(!partial, "a failed save leaves no partial file");
}

#[test]
fn a_state_larger_than_an_admin_frame_is_streamed_and_restored_whole() {
    let c = TestCluster::single("big", &[]);
    let n = &c.nodes[0];
    let root = c.root.path();
    // 50 values of 100 KiB: 5 MiB, more than one admin frame (4 MiB) can carry.
    let value = |i: usize| format!("{i:03}").repeat(100 * 1024 / 3);
    for i in 0..50 {
        ok(&n.cli(&["kv", "put", &format!("big{i:02}"), &value(i)]));
    }
    let file = root.join("big.snap");
    ok(&n.cli(&["snapshot", "save", file.to_str().unwrap()]));
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(size > 5 * 1000 * 1024, "{size} bytes");
    let info = json(&offline(
        root,
        &[
            "snapshot",
            "inspect",
            file.to_str().unwrap(),
            "--output",
            "json",
        ],
    ));
    assert_eq!(info["counts"]["kv"], 50, "{info}");
    assert_eq!(info["size"], size);
    // No partial file is left beside it.
    let left: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    let mut r = Node::new(root, "r1");
    ok(&r.cli(&["snapshot", "restore", file.to_str().unwrap()]));
    r.start(None);
    wait_for(
        "r1 leads its restored cluster",
        Duration::from_secs(30),
        || (r.status()?["node"]["ready"] == true && r.leader()? == "r1").then_some(()),
    );
    for i in [0, 17, 49] {
        assert_eq!(ok(&r.cli(&["kv", "get", &format!("big{i:02}")])), value(i));
    }
}
