//! Join secrets stay off the command line: a node joins with its token from a file
//! (`AETHER_TOKEN_FILE`) or the environment (`AETHER_TOKEN`) and the address from `AETHER_JOIN`;
//! a restart with the same settings (systemd's env file) comes back as the same member; a bad
//! token file is refused before anything is created.

use std::time::Duration;

use crate::harness::*;

/// The process's command line as `ps` shows it.
fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

fn identity(n: &Node) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(n.dir.join("identity.json")).unwrap()).unwrap()
}

#[test]
fn a_node_joins_with_its_token_from_a_file_or_the_environment_and_restarts_as_a_member() {
    let mut c = TestCluster::single("n1", &[]);
    let out = c.nodes[0].cli(&["token", "create", "--uses", "2"]);
    assert!(out.status.success(), "token create: {}", stderr(&out));
    let token = stdout(&out);
    let via = c.nodes[0].addr();
    let file = c.root.path().join("join.token");
    std::fs::write(&file, format!("{token}\n")).unwrap();

    let mut n2 = Node::new(c.root.path(), "n2");
    n2.env = vec![
        ("AETHER_JOIN".into(), via.clone()),
        ("AETHER_TOKEN_FILE".into(), file.display().to_string()),
    ];
    let mut n3 = Node::new(c.root.path(), "n3");
    n3.env = vec![
        ("AETHER_JOIN".into(), via.clone()),
        ("AETHER_TOKEN".into(), token.clone()),
    ];
    for n in [&mut n2, &mut n3] {
        n.start(None);
        let line = cmdline(n.pid().unwrap());
        assert!(line.contains("node"), "read the command line: '{line}'");
        assert!(
            !line.contains(&token) && !line.contains("--token"),
            "{}: the token must not show in ps: '{line}'",
            n.name
        );
    }
    c.nodes.push(n2);
    c.nodes.push(n3);
    c.wait_voters(3);

    // systemd restarts it with the same env file: no second join (the token has no use
    // left), the same member.
    let before = identity(&c.nodes[1]);
    assert!(c.nodes[1].terminate().success());
    c.nodes[1].start(None);
    c.wait_voters(3);
    assert_eq!(
        identity(&c.nodes[1]),
        before,
        "the same node id and cluster"
    );
    let log = c.nodes[1].log_text();
    let cluster_id = before["cluster_id"].as_str().unwrap();
    assert_eq!(
        log.matches(&format!("already a member of cluster '{cluster_id}'"))
            .count(),
        1,
        "the restart says once that it ignores the join settings; log:\n{log}"
    );
    assert_eq!(
        log.matches("joining the cluster at").count(),
        1,
        "it joined once only; log:\n{log}"
    );
}

#[test]
fn a_bad_token_file_is_refused_before_anything_is_created() {
    let root = tempfile::tempdir().unwrap();
    let empty = root.path().join("empty.token");
    std::fs::write(&empty, "\n \n").unwrap();
    let missing = root.path().join("missing.token");
    for (file, says) in [(&missing, "cannot read"), (&empty, "is empty")] {
        let mut n = Node::new(root.path(), "n9");
        n.env = vec![
            ("AETHER_JOIN".into(), "127.0.0.1:9".into()),
            ("AETHER_TOKEN_FILE".into(), file.display().to_string()),
        ];
        let out = n.run_to_exit(None, Duration::from_secs(20));
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(2),
            "a bad token file is bad input (exit 2); stderr:\n{err}"
        );
        assert!(
            err.contains(&format!("the join token file '{}'", file.display()))
                && err.contains(says)
                && err.contains("aether token create") | err.contains("check the path"),
            "the error names the file, what is wrong and what to do; stderr:\n{err}"
        );
        assert!(!n.dir.exists(), "no data dir is created");
    }
}
