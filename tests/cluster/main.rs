//! Cluster core on real processes over 127.0.0.1: election, replication, forwarding, kill -9 of
//! the leader under writes, restarts, snapshots, joins and refusals, transport security, bad input.

mod harness;
mod logs;
mod loops;
mod rejoins;
mod secrets;
mod systemd;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aether::admin::protocol::{AdminRequest, AdminResponse, ErrorKind};
use aether::config::NetConfig;
use aether::net::tls::{CaPem, NodeTls, issue_node_cert};
use aether::net::{Endpoint, Reply};
use aether::raft::network::{PeerRequest, PeerResponse};
use harness::*;

/// Every key and value in a node's own replica.
fn local_kv(node: &Node) -> BTreeMap<String, String> {
    let out = node.cli(&[
        "kv", "list", "--local", "--limit", "100000", "--output", "json",
    ]);
    assert!(
        out.status.success(),
        "kv list on {}: {}",
        node.name,
        stderr(&out)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["key"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn wait_replica_has(node: &Node, want: &BTreeMap<String, String>, what: &str) {
    wait_for(
        &format!("{} holds {what}", node.name),
        Duration::from_secs(30),
        || {
            let have = local_kv(node);
            want.iter()
                .all(|(k, v)| have.get(k) == Some(v))
                .then_some(())
        },
    );
}

#[test]
fn three_nodes_elect_one_leader_and_replicate_through_followers() {
    let c = TestCluster::three();
    let leader = c.leader_index();
    let follower = (leader + 1) % 3;

    // Every node names the same leader, 3 voters, ready; health endpoints agree.
    for n in &c.nodes {
        let s = n.status().unwrap();
        assert_eq!(s["leader"]["name"], c.nodes[leader].name.as_str());
        assert_eq!(voters(&s), 3);
        assert_eq!(n.http_status("/healthz"), Some(200));
        assert_eq!(n.http_status("/readyz"), Some(200));
        let mode = std::fs::metadata(n.dir.join("aether.sock")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600,
            "admin socket mode"
        );
    }

    // A put through a follower is forwarded and read back from every node.
    let out = c.nodes[follower].cli(&["kv", "put", "greeting", "hello world"]);
    assert!(out.status.success(), "put via follower: {}", stderr(&out));
    for n in &c.nodes {
        let out = n.cli(&["kv", "get", "greeting"]);
        assert!(out.status.success(), "get on {}: {}", n.name, stderr(&out));
        assert_eq!(stdout(&out), "hello world");
        wait_for("replica has the value", Duration::from_secs(10), || {
            (n.local_get("greeting")? == "hello world").then_some(())
        });
    }

    // Status names every member with its role and reachability, in JSON with stable fields.
    let s = c.nodes[follower].status().unwrap();
    let members = s["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    for m in members {
        assert_eq!(m["role"], "voter");
        assert_eq!(m["reachable"], true, "{m}");
        assert!(m["addr"].as_str().unwrap().starts_with("127.0.0.1:"));
    }
    assert!(
        s["commit_index"].as_u64().unwrap() >= s["node"]["applied_index"].as_u64().unwrap().min(1)
    );

    // Missing keys and deletes.
    let out = c.nodes[0].cli(&["kv", "get", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("key 'nope' not found"));
    assert!(c.nodes[2].cli(&["kv", "del", "greeting"]).status.success());
    assert_eq!(
        c.nodes[1].cli(&["kv", "get", "greeting"]).status.code(),
        Some(1)
    );

    // Every write left an audit record on the leader's replica.
    let nodes = c.nodes[0].cli(&["nodes", "--output", "json"]);
    let nodes: serde_json::Value = serde_json::from_slice(&nodes.stdout).unwrap();
    assert_eq!(nodes.as_array().unwrap().len(), 3);
}

#[test]
fn kill9_of_the_leader_loses_no_acknowledged_write() {
    let mut c = TestCluster::three();
    let dirs: Vec<std::path::PathBuf> = c.nodes.iter().map(|n| n.dir.clone()).collect();
    let alive = Arc::new(Mutex::new(vec![true; 3]));
    let acked: Arc<Mutex<Vec<usize>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));

    // Four concurrent writers, so the leader groups their writes into batch entries.
    let writers: Vec<_> = (0..4usize)
        .map(|w| {
            let (alive, acked, stop, dirs) =
                (alive.clone(), acked.clone(), stop.clone(), dirs.clone());
            std::thread::spawn(move || {
                for n in 0..1000usize {
                    let i = n * 4 + w;
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let target = (0..3)
                        .map(|k| (i + k) % 3)
                        .find(|k| alive.lock().unwrap()[*k])
                        .unwrap();
                    let out = std::process::Command::new(BIN)
                        .arg("--data-dir")
                        .arg(&dirs[target])
                        .args(["kv", "put", &format!("key-{i:05}"), &format!("value-{i}")])
                        .output()
                        .unwrap();
                    if out.status.success() {
                        acked.lock().unwrap().push(i);
                    }
                }
            })
        })
        .collect();

    let acks = || acked.lock().unwrap().len();
    wait_for(
        "40 acknowledged writes before the kill",
        Duration::from_secs(60),
        || (acks() >= 40).then_some(()),
    );
    let leader = c.leader_index();
    alive.lock().unwrap()[leader] = false;
    c.nodes[leader].kill9();
    let at_kill = acks();
    wait_for(
        "40 more acknowledged writes through the survivors",
        Duration::from_secs(60),
        || (acks() >= at_kill + 40).then_some(()),
    );
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }

    let want: BTreeMap<String, String> = acked
        .lock()
        .unwrap()
        .iter()
        .map(|i| (format!("key-{i:05}"), format!("value-{i}")))
        .collect();
    assert!(want.len() >= 80);
    for (i, n) in c.nodes.iter().enumerate().filter(|(i, _)| *i != leader) {
        wait_replica_has(
            n,
            &want,
            &format!("every acknowledged write (survivor {i})"),
        );
        let out = n.cli(&["kv", "get", "key-00000"]);
        if want.contains_key("key-00000") {
            assert_eq!(stdout(&out), "value-0");
        }
    }

    // The killed node restarts on its data dir, without a token, and catches up.
    c.nodes[leader].start(None);
    wait_replica_has(
        &c.nodes[leader],
        &want,
        "every acknowledged write after restart",
    );
    c.wait_voters(3);

    // A full cluster restart keeps everything; SIGTERM exits 0.
    for n in c.nodes.iter_mut() {
        let st = n.terminate();
        assert!(
            st.success(),
            "{} exit on SIGTERM: {st}; log:\n{}",
            n.name,
            n.log_text()
        );
        assert!(
            n.log_text().contains("node stopped cleanly"),
            "{} did not log its teardown",
            n.name
        );
    }
    for n in c.nodes.iter_mut() {
        n.start(None);
    }
    c.wait_voters(3);
    for n in &c.nodes {
        wait_replica_has(n, &want, "every acknowledged write after a full restart");
    }
    let out = c.nodes[1].cli(&[
        "kv", "list", "key-", "--output", "json", "--limit", "100000",
    ]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(listed.as_array().unwrap().len() >= want.len());
}

#[test]
fn late_joiners_catch_up_from_a_streamed_snapshot() {
    let env = [
        ("AETHER_RAFT_SNAPSHOT_AFTER_ENTRIES", "20"),
        ("AETHER_RAFT_KEEP_AFTER_SNAPSHOT", "5"),
    ];
    let mut c = TestCluster::single("s1", &env);
    let mut want = BTreeMap::new();
    for i in 0..60 {
        let (k, v) = (format!("snap-{i:03}"), format!("v{i}"));
        assert!(c.nodes[0].cli(&["kv", "put", &k, &v]).status.success());
        want.insert(k, v);
    }
    wait_for(
        "a snapshot and a compacted log",
        Duration::from_secs(20),
        || {
            let s = c.nodes[0].status()?;
            (s["node"]["snapshot_index"].as_u64()? >= 20).then_some(())
        },
    );
    let snaps: Vec<_> = std::fs::read_dir(c.nodes[0].dir.join("snapshots"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(snaps.len(), 1, "one current snapshot file");

    c.join(&["s2", "s3"], &env);
    c.wait_voters(3);
    for n in &c.nodes[1..] {
        wait_replica_has(n, &want, "every key, via snapshot install");
        assert!(
            n.log_text().contains("installed snapshot"),
            "{} should have installed a snapshot",
            n.name
        );
    }
}

#[test]
fn bad_tokens_are_refused_and_change_nothing() {
    let mut c = TestCluster::single("j1", &[]);
    let other = TestCluster::single("x1", &[]);
    let token = |node: &Node, args: &[&str]| {
        let mut a = vec!["token", "create"];
        a.extend_from_slice(args);
        let out = node.cli(&a);
        assert!(out.status.success(), "token create: {}", stderr(&out));
        stdout(&out)
    };
    let members = |c: &TestCluster| {
        let out = c.nodes[0].cli(&["nodes", "--output", "json"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    };

    // One use: the first join works, the second is refused as used up.
    let once = token(&c.nodes[0], &["--uses", "1"]);
    c.join_with_token("j2", &once);
    assert_eq!(members(&c), 2);

    let good = token(&c.nodes[0], &["--uses", "5"]);
    let wrong_secret = format!(
        "{}{}",
        &good[..good.len() - 1],
        if good.ends_with('0') { '1' } else { '0' }
    );
    let cases: Vec<(String, String, &str)> = vec![
        (
            "foreign".into(),
            token(&other.nodes[0], &[]),
            "does not belong to the cluster",
        ),
        (
            "expired".into(),
            token(&c.nodes[0], &["--ttl", "1ms"]),
            "expired",
        ),
        ("used-up".into(), once.clone(), "used up"),
        ("wrong-secret".into(), wrong_secret, "wrong secret"),
        ("garbage".into(), "AETHER1.nope".into(), "bad join token"),
        ("j2".into(), good.clone(), "already a member"),
    ];
    let via = c.nodes[0].addr();
    for (name, tok, expect) in &cases {
        let mut n = Node::new(c.root.path(), &format!("r-{name}"));
        if name == "j2" {
            n.name = "j2".into(); // a second node under a taken name, in its own data dir
        }
        let out = n.run_to_exit(Some((&via, tok)), Duration::from_secs(40));
        assert!(!out.status.success(), "{name}: join must fail");
        let err = stderr(&out);
        assert!(
            err.contains(expect),
            "{name}: expected '{expect}' in:\n{err}"
        );
        assert!(
            !n.dir.join("identity.json").exists(),
            "{name}: a refused join must leave no identity behind"
        );
        assert_eq!(members(&c), 2, "{name}: membership must not change");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_refuses_strangers_and_survives_bad_frames() {
    let c = tokio::task::spawn_blocking(|| TestCluster::single("t1", &[]))
        .await
        .unwrap();
    let other = tokio::task::spawn_blocking(|| TestCluster::single("x2", &[]))
        .await
        .unwrap();
    let n = &c.nodes[0];
    let tls_dir = n.dir.join("tls");
    let ca = NodeTls::load(&tls_dir).unwrap();

    // No client certificate: the handshake completes, the first read says refused.
    let r = aether::net::unauthenticated_probe(&n.addr(), &ca.ca, b"hello").await;
    let err = r.expect_err("a client without a certificate must be refused");
    assert!(err.contains("refused"), "{err}");

    // A certificate from another cluster's CA: refused.
    let foreign = NodeTls::load(&other.nodes[0].dir.join("tls")).unwrap();
    let ep = Endpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        &foreign,
        &[1; 32],
        &NetConfig::default(),
    )
    .unwrap();
    let r = ep
        .call::<_, PeerResponse>(
            &n.addr(),
            aether::raft::network::ROUTE,
            &PeerRequest::Status,
            Some(Duration::from_secs(5)),
        )
        .await;
    assert!(r.is_err(), "a foreign certificate must be refused");

    // A member-grade certificate (signed by this CA) for probing with raw bytes.
    let ca_pem = CaPem {
        cert_pem: std::fs::read_to_string(tls_dir.join("ca.crt")).unwrap(),
        key_pem: std::fs::read_to_string(tls_dir.join("ca.key")).unwrap(),
    };
    let (cert, key) = issue_node_cert(
        &ca_pem,
        "probe",
        (aether::domain::now_millis() / 1000) as i64,
        3_600,
    )
    .unwrap();
    let probe_dir = tempfile::tempdir().unwrap();
    let probe = NodeTls::save(probe_dir.path(), &ca_pem.cert_pem, &cert, &key).unwrap();
    let ep = Endpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        &probe,
        &[2; 32],
        &NetConfig::default(),
    )
    .unwrap();
    use aether::net::frame::PROTOCOL_VERSION;
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "garbage",
            vec![0, 0, 0, 5, PROTOCOL_VERSION, 1, 0xff, 0xff, 0xff],
            "does not decode",
        ),
        (
            "no such route",
            vec![0, 0, 0, 3, PROTOCOL_VERSION, 200, 0],
            "no route 200",
        ),
        (
            "oversized",
            vec![0xff, 0xff, 0xff, 0xff, PROTOCOL_VERSION, 0],
            "over the limit",
        ),
        (
            "truncated",
            vec![0, 0, 0, 100, PROTOCOL_VERSION, 2, 3],
            "truncated",
        ),
    ];
    for (what, bytes, expect) in cases {
        let raw = aether::net::raw_exchange(&ep, &n.addr(), &bytes)
            .await
            .unwrap();
        let mut slice = raw.as_slice();
        let reply: Reply<PeerResponse> = aether::net::frame::read_frame(&mut slice, 1 << 20)
            .await
            .unwrap();
        match reply {
            Reply::Err(m) => assert!(m.contains("bad frame") && m.contains(expect), "{what}: {m}"),
            Reply::Ok(r) => panic!("{what}: expected an error reply, got {r:?}"),
        }
    }
    // A peer of the version before: every request is refused in its own version, naming both
    // versions, and the node says so once in its log, not once per frame.
    let old = PROTOCOL_VERSION - 1;
    let frame = aether::net::frame::encode_versioned(
        old,
        &(aether::raft::network::ROUTE.id, PeerRequest::Status),
    )
    .unwrap();
    for _ in 0..3 {
        let raw = aether::net::raw_exchange(&ep, &n.addr(), &frame)
            .await
            .unwrap();
        assert_eq!(raw[4], old, "the refusal is in the caller's version");
        let reply: Reply<PeerResponse> =
            postcard::from_bytes(&raw[5..]).expect("the refusal decodes in the old version");
        match reply {
            Reply::Err(m) => assert!(
                m.contains(&format!(
                    "this peer speaks protocol {PROTOCOL_VERSION}, the caller speaks {old}: run one aether version on every node"
                )),
                "{m}"
            ),
            Reply::Ok(r) => panic!("an old peer's request was answered: {r:?}"),
        }
    }
    let line = format!("speaks protocol {old}, this aether speaks {PROTOCOL_VERSION}");
    let log = wait_for(
        "the node logs the old peer",
        Duration::from_secs(10),
        || {
            let log = n.log_text();
            log.contains(&line).then_some(log)
        },
    );
    assert_eq!(
        log.matches(&line).count(),
        1,
        "said once per peer; log:\n{log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.contains("bad frame") && l.contains("protocol")),
        "no decode error per frame; log:\n{log}"
    );

    // The same connection and the node still serve good requests.
    let r = ep
        .call::<_, PeerResponse>(
            &n.addr(),
            aether::raft::network::ROUTE,
            &PeerRequest::Status,
            None,
        )
        .await
        .unwrap();
    assert!(matches!(r, PeerResponse::Status(_)));

    // A frame of another version on the admin socket gets an error frame naming both versions;
    // the node carries on.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::UnixStream::connect(n.dir.join("aether.sock"))
            .await
            .unwrap();
        s.write_all(&[0, 0, 0, 3, 1, 0xfe, 0xfe]).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        let resp: AdminResponse = aether::net::frame::read_frame(&mut buf.as_slice(), 1 << 20)
            .await
            .unwrap();
        assert!(
            matches!(resp, AdminResponse::Error(ref e) if e.kind == ErrorKind::Invalid && e.message.contains(&format!("this node speaks protocol {PROTOCOL_VERSION}, the client speaks 1: run the aether binary of the node's version"))),
            "{resp:?}"
        );
        let mut client = aether::admin::client::Client::connect(&n.dir.join("aether.sock"))
            .await
            .unwrap();
        assert!(matches!(
            client.call(&AdminRequest::Status).await.unwrap(),
            AdminResponse::Status(_)
        ));
    }
}

#[test]
fn bad_config_flags_and_commands_get_clear_errors() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("d");
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = std::process::Command::new(BIN);
        c.args(args).env_remove("RUST_LOG");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let d = dir.to_str().unwrap();

    let cfg = root.path().join("bad.toml");
    std::fs::write(&cfg, "listen = \"127.0.0.1:7999\"\n[raft]\nvoterz = 3\n").unwrap();
    let out = run(
        &["node", "--data-dir", d, "--config", cfg.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("voterz") && e.contains("bad.toml") && e.contains("line 3"),
        "{e}"
    );
    assert!(
        !dir.exists(),
        "a refused config must not create the data dir"
    );

    let out = run(&["node", "--data-dir", d], &[("AETHER_RAFT_VOTERS", "4")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("raft.voters") && stderr(&out).contains("odd"),
        "{}",
        stderr(&out)
    );

    // A bad rule file is refused like a bad config, with its location, before anything is made.
    let rules = root.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[[rules]]\nname = \"up\"\nscope = \"slice\"\nwhen = [{ metric = \"cpu_per_instanse\", above = 0.5 }]\naction = \"scale_up\"\nstep = 1\n",
    )
    .unwrap();
    let out = run(
        &["node", "--data-dir", d],
        &[("AETHER_CONTROLLER_RULES", rules.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "rules.toml:4:20: rules[0].when[0].metric: unknown slice metric 'cpu_per_instanse'"
        ),
        "{}",
        stderr(&out)
    );
    assert!(
        !dir.exists(),
        "a refused rule file must not create the data dir"
    );

    let out = run(&["node", "--data-dir", d, "--name", "Bad_Name"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a valid name"),
        "{}",
        stderr(&out)
    );

    for args in [
        &["node", "--listen", "nowhere"][..],
        &["--output", "yaml", "status"],
        &["kv"],
        &["node", "--join", "127.0.0.1:1"],
        &["token", "create", "--ttl", "soon"],
        &["token", "create", "--ttl", "2 sec"],
        // A blueprint file that is not there is bad input, not a failure.
        &["blueprint", "apply", "/nonexistent/shop.toml"],
    ] {
        let out = run(args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }

    let out = run(&["--data-dir", d, "status"], &[]);
    assert_eq!(out.status.code(), Some(3), "no node: exit 3");
    assert!(
        stderr(&out).contains("cannot reach the node"),
        "{}",
        stderr(&out)
    );

    let out = run(&["--data-dir", d, "metrics"], &[]);
    assert_eq!(out.status.code(), Some(3), "no node: exit 3");
    let out = run(&["--data-dir", d, "doctor", "no-such-check"], &[]);
    assert_eq!(out.status.code(), Some(2), "an unknown check is bad usage");
    assert!(stderr(&out).contains("no-such-check"), "{}", stderr(&out));

    let out = run(&["completions", "bash"], &[]);
    assert!(out.status.success() && stdout(&out).contains("aether"));
}

#[test]
fn a_failed_storage_commit_stops_the_node() {
    let root = tempfile::tempdir().unwrap();
    let disk = root.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&disk)
        .output()
        .is_ok_and(|o| o.status.success());
    if !mounted {
        eprintln!("skipped: cannot mount a 4 MiB tmpfs here (needs root) to fill the disk");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(disk.clone());

    // The data dir is on the small disk; the log file is not.
    let mut n = Node::new(root.path(), "full");
    n.dir = disk.join("full");
    n.start(None);
    wait_for("the node leads", Duration::from_secs(20), || {
        (n.status()?["node"]["ready"] == true).then_some(())
    });

    let value = "x".repeat(100_000);
    let failed = (0..200)
        .map(|i| n.cli(&["kv", "put", &format!("k{i}"), &value]))
        .find(|out| !out.status.success())
        .expect("a 4 MiB disk must fill up");
    assert_eq!(failed.status.code(), Some(3), "{}", stderr(&failed));
    let e = stderr(&failed);
    assert!(
        e.contains("raft store stopped") && e.contains("No space left"),
        "{e}"
    );

    let st = wait_for("the node stops by itself", Duration::from_secs(20), || {
        n.try_exit()
    });
    assert_eq!(
        st.code(),
        Some(1),
        "a failed commit must stop the node with a non-zero exit"
    );
    let log = n.log_text();
    assert!(
        log.contains("raft store commit failed")
            && log.contains("the raft store failed and the node stopped"),
        "{log}"
    );
}
