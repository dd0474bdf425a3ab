//! Remote operators (`aether operator cert`, `aether --remote`): real nodes, real certificates.
//! Roles are enforced on every node for every request, the console included (in tmux);
//! revoked, expired, foreign and node certificates are refused; an operator certificate is
//! never a member; refusals are limited per IP; the audit trail names the operator.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use aether::config::NetConfig;
use aether::net::Endpoint;
use aether::net::tls::NodeTls;
use aether::raft::network::{PeerRequest, PeerResponse};
use aether::raft::types::{Command as RaftCommand, Request, RequestId};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;

use super::harness::*;

#[allow(dead_code)]
#[path = "../tui/tmux.rs"]
mod tmux;

/// `aether --remote ADDR --identity DIR ARGS…`, from no node's data dir.
fn remote(addr: &str, identity: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--remote")
        .arg(addr)
        .arg("--identity")
        .arg(identity)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("AETHER_REMOTE")
        .env_remove("AETHER_IDENTITY")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        stderr(out)
    );
    stdout(out)
}

/// Refused with exit 1 and a message containing `want`.
fn refused(out: &Output, want: &str) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected a refusal ({want}), got: {}{}",
        stdout(out),
        stderr(out)
    );
    assert!(stderr(out).contains(want), "{}", stderr(out));
}

/// Create an identity for `name` with `role` on `node` into `dir`.
fn identity(node: &Node, name: &str, role: &str, ttl: &str, dir: &Path) {
    ok(&node.cli(&[
        "operator",
        "cert",
        "create",
        name,
        "--role",
        role,
        "--ttl",
        ttl,
        "-o",
        dir.to_str().unwrap(),
    ]));
}

const BLUEPRINT: &str = "name = \"app\"\n\n[[slices]]\nname = \"web\"\ncommand = [\"sleep\", \"3600\"]\ninstances = 1\nmin = 1\nmax = 4\nresources = { cpu = 0.01, memory = \"16MiB\" }\n";

#[test]
fn roles_are_enforced_on_every_node_and_revocation_reaches_them_all() {
    let c = TestCluster::three();
    let ids = tempfile::tempdir().unwrap();
    let (viewer, op, admin) = (
        ids.path().join("vera"),
        ids.path().join("otto"),
        ids.path().join("ada"),
    );
    let n1 = &c.nodes[0];
    identity(n1, "vera", "viewer", "1h", &viewer);
    identity(n1, "otto", "operator", "1h", &op);
    identity(n1, "ada", "admin", "1h", &admin);
    // Only the key's owner may read it.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(viewer.join("operator.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // The list shows names and roles, never a key.
    let list = ok(&n1.cli(&["operator", "cert", "list"]));
    assert!(
        list.contains("vera") && list.contains("viewer") && list.contains("admin"),
        "{list}"
    );
    assert!(!list.contains("PRIVATE"), "{list}");

    let n2 = c.nodes[1].addr();
    // The viewer reads …
    for args in [&["status"][..], &["decisions"], &["traffic"], &["events"]] {
        ok(&remote(&n2, &viewer, args));
    }
    // … and is refused every change, naming the role needed.
    refused(
        &remote(&n2, &viewer, &["override", "veto", "1"]),
        "'override veto' needs the 'operator' role; 'vera' is a 'viewer'",
    );
    refused(
        &remote(&n2, &viewer, &["scale", "app/web", "2"]),
        "'scale' needs the 'operator' role; 'vera' is a 'viewer'",
    );
    let bp = ids.path().join("app.toml");
    std::fs::write(&bp, BLUEPRINT).unwrap();
    refused(
        &remote(&n2, &viewer, &["blueprint", "apply", bp.to_str().unwrap()]),
        "'blueprint apply' needs the 'admin' role; 'vera' is a 'viewer'",
    );
    let x = ids.path().join("x");
    refused(
        &remote(
            &n2,
            &viewer,
            &[
                "operator",
                "cert",
                "create",
                "x",
                "--role",
                "viewer",
                "-o",
                x.to_str().unwrap(),
            ],
        ),
        "'operator cert create' needs the 'admin' role; 'vera' is a 'viewer'",
    );
    assert!(!x.exists(), "a refused create writes nothing");

    // The operator steers but does not administer.
    ok(&remote(&n2, &op, &["override", "pause"]));
    ok(&remote(&n2, &op, &["override", "resume"]));
    ok(&remote(&n2, &op, &["drain", "n3"]));
    ok(&remote(&n2, &op, &["undrain", "n3"]));
    refused(
        &remote(&n2, &op, &["token", "create"]),
        "'token create' needs the 'admin' role; 'otto' is an 'operator'",
    );
    // The admin administers.
    let tok = ok(&remote(&n2, &admin, &["token", "create"]));
    assert!(tok.contains("AETHER1."), "{tok}");

    // Every write names its operator in the audit trail; the socket is root's.
    let events: Value = serde_json::from_str(&ok(
        &n1.cli(&["events", "--limit", "50", "--output", "json"])
    ))
    .unwrap();
    let actors: Vec<(String, String)> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_string(),
                e["what"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (actor, what) in [
        ("otto (operator)", "pause controller"),
        ("otto (operator)", "resume controller"),
        ("otto (operator)", "set node n3 draining"),
        ("ada (admin)", "issue join token"),
    ] {
        assert!(
            actors
                .iter()
                .any(|(a, w)| a == actor && w.starts_with(what)),
            "no '{what}' by '{actor}' in {actors:?}"
        );
    }
    let root_actor = local_actor("n1");
    assert!(
        actors
            .iter()
            .any(|(a, w)| *a == root_actor && w.starts_with("issue operator certificate for vera")),
        "{actors:?}"
    );
    // Refused requests cost no entry.
    assert!(
        !actors.iter().any(|(a, _)| a.starts_with("vera")),
        "{actors:?}"
    );

    // The console, remote, in a real terminal: the viewer sees the cluster live; a change it
    // asks for is refused, naming the role.
    if let Err(why) = tmux::available() {
        panic!("this test needs tmux ({why}); .ci/run installs it");
    }
    let argv: Vec<String> = [
        BIN,
        "--remote",
        &c.nodes[2].addr(),
        "--identity",
        viewer.to_str().unwrap(),
        "tui",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let t = tmux::Tmux::start(ids.path(), "tui", &argv, 120, 30);
    t.wait_screen("the remote console names the three nodes, live", |s| {
        ["n1", "n2", "n3", "● live"].iter().all(|w| s.contains(w))
    });
    t.keys(&["p"]);
    t.wait_screen("the pause dialog", |s| s.contains("Pause the controller?"));
    t.keys(&["y"]);
    t.wait_screen("the pause is refused, naming the role", |s| {
        s.contains("needs the 'operator' role")
    });
    t.keys(&["q"]);
    assert_eq!(t.wait_exit(), 0, "q quits with status 0");
    drop(t);

    // A revoked certificate is refused by every node, as soon as each has applied it.
    ok(&n1.cli(&["operator", "cert", "revoke", "vera"]));
    for n in &c.nodes {
        let addr = n.addr();
        wait_for(
            &format!("{} to refuse the revoked certificate", n.name),
            Duration::from_secs(10),
            || {
                let out = remote(&addr, &viewer, &["status"]);
                (out.status.code() == Some(1) && stderr(&out).contains("is revoked")).then_some(())
            },
        );
    }
    let list = ok(&n1.cli(&["operator", "cert", "list"]));
    assert!(list.contains("revoked"), "{list}");
    // The others still work.
    ok(&remote(&c.nodes[2].addr(), &op, &["status"]));
}

#[test]
fn expired_foreign_node_and_missing_certificates_are_refused() {
    let c = TestCluster::single("r1", &[]);
    let n = &c.nodes[0];
    let ids = tempfile::tempdir().unwrap();

    // Expired: a second's lifetime, then past it.
    let brief = ids.path().join("brief");
    identity(n, "brief", "admin", "1s", &brief);
    wait_for(
        "the one-second certificate to be refused",
        Duration::from_secs(15),
        || {
            let out = remote(&n.addr(), &brief, &["status"]);
            (out.status.code() == Some(1) && stderr(&out).contains("expired")).then_some(())
        },
    );
    // Longer than the node allows: refused, nothing recorded or written.
    let long = ids.path().join("long");
    let out = n.cli(&[
        "operator",
        "cert",
        "create",
        "long",
        "--role",
        "viewer",
        "--ttl",
        "91d",
        "-o",
        long.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--ttl must be between 1s and 90d"),
        "{}",
        stderr(&out)
    );
    assert!(!long.exists());

    // Signed by another cluster's CA.
    let other = TestCluster::single("x1", &[]);
    let foreign = ids.path().join("foreign");
    identity(&other.nodes[0], "eve", "admin", "1h", &foreign);
    ok(&remote(&other.nodes[0].addr(), &foreign, &["status"]));
    refused(&remote(&n.addr(), &foreign, &["status"]), "refused");

    // A node's certificate presented as an operator's.
    let stolen = ids.path().join("stolen");
    std::fs::create_dir(&stolen).unwrap();
    let tls = n.dir.join("tls");
    for (from, to) in [
        ("node.crt", "operator.crt"),
        ("node.key", "operator.key"),
        ("ca.crt", "ca.crt"),
    ] {
        std::fs::copy(tls.join(from), stolen.join(to)).unwrap();
    }
    refused(
        &remote(&n.addr(), &stolen, &["status"]),
        "remote admin needs an operator certificate",
    );

    // No identity at all: bad input, said so.
    let none = ids.path().join("none");
    let out = remote(&n.addr(), &none, &["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot use the operator identity"),
        "{}",
        stderr(&out)
    );
    // No client certificate on the admin protocol: refused at the first read.
    let ca = NodeTls::load(&tls).unwrap().ca;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(aether::net::unauthenticated_probe_alpn(
        &n.addr(),
        &ca,
        aether::net::ALPN_ADMIN,
        b"hello",
    ));
    let err = r.expect_err("a client without a certificate must be refused");
    assert!(err.contains("operator certificate"), "{err}");

    // An operator certificate is never a member: a forwarded write on the peer protocol is
    // refused and writes nothing.
    let admin = ids.path().join("admin");
    identity(n, "ada", "admin", "1h", &admin);
    // The streaming requests work remotely too: a backup, chunk by chunk.
    let backup = ids.path().join("remote.snap");
    ok(&remote(
        &n.addr(),
        &admin,
        &["snapshot", "save", backup.to_str().unwrap()],
    ));
    ok(&n.cli(&["snapshot", "inspect", backup.to_str().unwrap()]));
    let out = remote(&n.addr(), &admin, &["doctor"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let pem = |f: &str| std::fs::read(admin.join(f)).unwrap();
    let as_member = NodeTls {
        ca: CertificateDer::from_pem_slice(&pem("ca.crt")).unwrap(),
        cert: CertificateDer::from_pem_slice(&pem("operator.crt")).unwrap(),
        key: std::sync::Arc::new(PrivateKeyDer::from_pem_slice(&pem("operator.key")).unwrap()),
    };
    let refused_write = rt.block_on(async {
        let ep = Endpoint::bind(
            "127.0.0.1:0".parse().unwrap(),
            &as_member,
            &[3; 32],
            &NetConfig::default(),
        )
        .unwrap();
        let write = PeerRequest::Write(Request {
            id: RequestId::new_random(),
            actor: "ada (admin)".into(),
            at: 0,
            cmd: RaftCommand::Put {
                key: "smuggled".into(),
                value: b"yes".to_vec(),
            },
        });
        ep.call::<_, PeerResponse>(
            &n.addr(),
            aether::raft::network::ROUTE,
            &write,
            Some(Duration::from_secs(5)),
        )
        .await
    });
    let e = refused_write.expect_err("an operator certificate must not be a member");
    assert!(e.to_string().contains("not a member's"), "{e}");
    let out = n.cli(&["kv", "get", "smuggled"]);
    assert!(!stdout(&out).contains("yes"), "{}", stdout(&out));

    // Refusals from one IP are limited: after at most 20 in a row, its new remote admin
    // connections are refused for a minute (the members' own traffic is not affected).
    let viewer = ids.path().join("viewer");
    identity(n, "vic", "viewer", "1h", &viewer);
    let mut shut = None;
    for i in 0..=20 {
        let out = remote(&n.addr(), &viewer, &["override", "pause"]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        if stderr(&out).contains("too many refused attempts") {
            shut = Some(i);
            break;
        }
        assert!(
            stderr(&out).contains("needs the 'operator' role"),
            "{}",
            stderr(&out)
        );
    }
    assert!(shut.is_some(), "20 refusals in a row shut the IP out");
    refused(
        &remote(&n.addr(), &admin, &["status"]),
        "too many refused attempts",
    );
    ok(&n.cli(&["kv", "put", "after", "fine"]));
}
