//! `aether diag bundle` against a three-node cluster with a blueprint and a join token: every
//! member's part is in the archive, nothing secret is, and a killed member is listed as
//! unreachable while the bundle is still written.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::harness::{BIN, TestCluster, stderr, stdout, wait_for};

const BLUEPRINT: &str = "name = \"diag\"\n\n[[slices]]\nname = \"web\"\ncommand = [\"sh\", \"-c\", \"echo hello-from-instance; exec sleep 3600\"]\ninstances = 3\nmin = 1\nmax = 3\nresources = { cpu = 0.01, memory = \"8MiB\" }\nstop_timeout = \"1s\"\n";

/// Every file of a `.tar.gz`, by path.
fn unpack(file: &Path) -> BTreeMap<String, Vec<u8>> {
    let f = std::fs::File::open(file).unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut out = BTreeMap::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.insert(path, data);
    }
    out
}

fn text(files: &BTreeMap<String, Vec<u8>>, path: &str) -> String {
    String::from_utf8(
        files
            .get(path)
            .unwrap_or_else(|| panic!("no '{path}' in the bundle: {:?}", files.keys()))
            .clone(),
    )
    .unwrap()
}

/// What must never be in a bundle: the body lines of every file under each node's `tls/`
/// (keys, the CA key, certificates), other files of it whole, and the token's secret and its
/// hash.
fn secrets(c: &TestCluster, token: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for n in &c.nodes {
        let tls = n.dir.join("tls");
        for e in std::fs::read_dir(&tls).unwrap() {
            let p = e.unwrap().path();
            let body = std::fs::read_to_string(&p).unwrap_or_default();
            let what = p.display().to_string();
            if body.contains("-----BEGIN") {
                for line in body
                    .lines()
                    .filter(|l| !l.starts_with("-----") && l.len() >= 32)
                {
                    out.push((what.clone(), line.to_string()));
                }
            } else if body.trim().len() >= 16 {
                out.push((what.clone(), body.trim().to_string()));
            }
        }
    }
    assert!(
        out.iter().any(|(w, _)| w.ends_with("ca.key")),
        "the founder's CA key is among the secrets: {out:?}"
    );
    assert!(
        out.iter().filter(|(w, _)| w.ends_with("node.key")).count() >= 3,
        "every node's key is among the secrets"
    );
    let secret = token.trim().rsplit('.').next().unwrap().to_string();
    assert_eq!(
        secret.len(),
        40,
        "a token's secret is its last part: {token}"
    );
    let hash = hex::encode(Sha256::digest(secret.as_bytes()));
    out.push(("the token's secret".into(), secret));
    out.push(("the token secret's sha256".into(), hash));
    out
}

fn bundle(c: &TestCluster, file: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["diag", "bundle", "-o", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    c.nodes[0].cli(&args)
}

#[test]
fn without_a_node_it_exits_3_and_bad_input_exits_2_writing_nothing() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("b.tar.gz");
    let run = |extra: &[&str]| {
        std::process::Command::new(BIN)
            .arg("--data-dir")
            .arg(d.path())
            .args(["diag", "bundle", "-o", file.to_str().unwrap()])
            .args(extra)
            .env_remove("AETHER_SOCKET")
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot reach the node"),
        "{}",
        stderr(&out)
    );
    let out = run(&["--since", "8d"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("expected 1s to 7d, found '8d'"),
        "{}",
        stderr(&out)
    );
    assert!(!file.exists());
    assert_eq!(
        std::fs::read_dir(d.path()).unwrap().count(),
        0,
        "nothing left behind"
    );
}

#[test]
fn a_bundle_holds_every_node_and_no_secret_and_names_the_unreachable() {
    // A credential put in a URL by mistake (the advisor is off, so it is only configuration).
    let mut c = TestCluster::three_with(&[(
        "AETHER_CONTROLLER_ADVISOR_URL",
        "http://bob:hunter2-in-a-url@127.0.0.1:9/v1",
    )]);
    let bp = c.root.path().join("diag.toml");
    std::fs::write(&bp, BLUEPRINT).unwrap();
    let out = c.nodes[0].cli(&["blueprint", "apply", bp.to_str().unwrap()]);
    assert!(out.status.success(), "apply: {}", stderr(&out));
    let out = c.nodes[0].cli(&["token", "create", "--uses", "1"]);
    assert!(out.status.success(), "token create: {}", stderr(&out));
    let token = stdout(&out);
    let mut seen = String::new();
    wait_for(
        "every instance's first line in its log (the last answer is printed above)",
        Duration::from_secs(60),
        || {
            let out = c.nodes[0].cli(&["logs", "diag/web"]);
            let now = format!("{}{}", stdout(&out), stderr(&out));
            if now != seen {
                eprintln!("aether logs diag/web:\n{now}");
                seen = now;
            }
            let said = stdout(&out)
                .lines()
                .filter(|l| l.ends_with("] hello-from-instance"))
                .count();
            (said == 3).then_some(())
        },
    );

    let file = c.root.path().join("out/bundle.tar.gz");
    let out = bundle(&c, &file, &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a missing directory is bad input"
    );
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    assert!(!file.exists());

    let file = c.root.path().join("bundle.tar.gz");
    let out = bundle(&c, &file, &["--since", "1h"]);
    assert!(out.status.success(), "diag bundle: {}", stderr(&out));
    assert!(stdout(&out).contains("bundle.tar.gz"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("unreachable: none"),
        "{}",
        stdout(&out)
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let files = unpack(&file);
    let manifest: Value = serde_json::from_str(&text(&files, "manifest.json")).unwrap();
    assert_eq!(manifest["answered_by"], "n1");
    assert_eq!(
        manifest["nodes_included"],
        serde_json::json!(["n1", "n2", "n3"])
    );
    assert_eq!(manifest["nodes_unreachable"], serde_json::json!([]));
    // Every file but the manifest is listed with its size and sha256.
    let listed: BTreeMap<String, (u64, String)> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                (
                    f["size"].as_u64().unwrap(),
                    f["sha256"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect();
    assert_eq!(listed.len(), files.len() - 1);
    for (path, data) in files.iter().filter(|(p, _)| *p != "manifest.json") {
        let (size, sha) = &listed[path];
        assert_eq!(*size, data.len() as u64, "{path}");
        assert_eq!(*sha, hex::encode(Sha256::digest(data)), "{path}");
    }
    for n in ["n1", "n2", "n3"] {
        let status: Value =
            serde_json::from_str(&text(&files, &format!("nodes/{n}/status.json"))).unwrap();
        assert_eq!(status["node"]["name"], n);
        let config = text(&files, &format!("nodes/{n}/config.toml"));
        assert!(config.contains(&format!("name = \"{n}\"")), "{config}");
        assert!(
            config.contains("url = \"http://<redacted>@127.0.0.1:9/v1\""),
            "{config}"
        );
        assert_eq!(
            manifest["redacted"][n],
            serde_json::json!(["controller.advisor.url (user information in the URL)"])
        );
        let log = text(&files, &format!("nodes/{n}/aether.log"));
        assert!(log.contains("is up"), "{n}'s daemon log: {log}");
        let doctor: Value =
            serde_json::from_str(&text(&files, &format!("nodes/{n}/doctor.json"))).unwrap();
        assert_eq!(doctor["peers"].as_array().unwrap().len(), 2, "{doctor}");
        text(&files, &format!("nodes/{n}/metrics.json"));
        text(&files, &format!("nodes/{n}/instances.json"));
    }
    let instance_logs: Vec<&String> = files
        .keys()
        .filter(|p| p.contains("/logs/diag/web/"))
        .collect();
    assert_eq!(instance_logs.len(), 3, "{:?}", files.keys());
    for p in instance_logs {
        let log = text(&files, p);
        assert!(
            log.lines().any(|l| l == "hello-from-instance"),
            "{p}: {log}"
        );
    }
    let events = text(&files, "cluster/events.json");
    assert!(events.contains("apply blueprint diag"), "{events}");
    for f in [
        "members",
        "decisions",
        "blueprints",
        "rollouts",
        "rollout-history",
        "controller",
        "tokens",
    ] {
        text(&files, &format!("cluster/{f}.json"));
    }
    let mut secrets = secrets(&c, &token);
    secrets.push(("the URL's password".into(), "hunter2-in-a-url".into()));
    for (path, data) in &files {
        let data = String::from_utf8_lossy(data);
        for (what, s) in &secrets {
            assert!(!data.contains(s.as_str()), "{path} holds {what}");
        }
    }

    // One member down: still written (exit 0), the others included, it named with a reason.
    c.nodes[2].kill9();
    let file = c.root.path().join("bundle-2.tar.gz");
    let out = bundle(&c, &file, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("node 'n3'") && stderr(&out).contains("could not be reached"),
        "{}",
        stderr(&out)
    );
    let files = unpack(&file);
    let manifest: Value = serde_json::from_str(&text(&files, "manifest.json")).unwrap();
    assert_eq!(manifest["nodes_included"], serde_json::json!(["n1", "n2"]));
    let gone = &manifest["nodes_unreachable"][0];
    assert_eq!(gone["name"], "n3");
    assert_eq!(gone["addr"], c.nodes[2].addr());
    assert!(
        gone["reason"].as_str().unwrap().contains("did not answer"),
        "{gone}"
    );
    assert!(files.contains_key("nodes/n2/aether.log"));
    assert!(!files.keys().any(|p| p.starts_with("nodes/n3/")));
}
