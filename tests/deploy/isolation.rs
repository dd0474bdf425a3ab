//! Workload isolation on a real node: an instance runs as the node's `deploy.user` (when the
//! tests run as root), with `no_new_privs`, sees only the allowed environment (not a canary
//! variable set on the daemon), and cannot read the node's CA key, its Raft store or list its
//! data dir. A slice asking for root is not run on a node that does not allow it, and says
//! why; a user the node does not have is refused at apply with its location.

use std::collections::BTreeSet;
use std::time::Duration;

use super::harness::*;
use serde_json::Value;

/// Writes what the instance can see and do into `report.json` in its HOME, then sleeps.
const PROBE: &str = r#"
import json, os, time
def attempt(f):
    try:
        f()
        return "ok"
    except OSError as e:
        return e.strerror
d = os.environ["DATA_DIR"]
status = open("/proc/self/status").read()
report = {
    "uid": os.getuid(),
    "env": sorted(os.environ.keys()),
    "ca_key": attempt(lambda: open(os.path.join(d, "tls", "ca.key")).read()),
    "raft": attempt(lambda: open(os.path.join(d, "raft.redb"), "rb").read(1)),
    "list": attempt(lambda: os.listdir(d)),
    "no_new_privs": [l.split()[1] for l in status.splitlines() if l.startswith("NoNewPrivs")],
    "home": os.environ.get("HOME"),
}
tmp = os.path.join(os.environ["HOME"], "report.tmp")
with open(tmp, "w") as f:
    json.dump(report, f)
os.rename(tmp, os.path.join(os.environ["HOME"], "report.json"))
time.sleep(3600)
"#;

fn blueprint(c: &TestCluster, name: &str, user: &str) -> String {
    let probe = c.root.path().join("probe.py");
    std::fs::write(&probe, PROBE).unwrap();
    let file = c.root.path().join(format!("{name}.toml"));
    std::fs::write(
        &file,
        format!(
            "name = \"{name}\"\n\n[[slices]]\nname = \"app\"\ncommand = [\"python3\", \"{}\"]\ninstances = 1\n{user}env = {{ DATA_DIR = \"{}\" }}\nresources = {{ cpu = 0.01, memory = \"16MiB\" }}\nstop_timeout = \"1s\"\n",
            probe.display(),
            c.nodes[0].dir.display()
        ),
    )
    .unwrap();
    file.to_str().unwrap().to_string()
}

/// The row of `name`'s only instance.
fn row(n: &Node, name: &str) -> Option<Value> {
    let out = n.cli(&["blueprint", "show", name, "--output", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v[0]["instances"].as_array()?.first().cloned()
}

#[test]
fn instances_run_as_their_user_with_a_clean_environment_and_no_reach_into_the_node() {
    let c = TestCluster::single("n1", &[("AETHER_CANARY_SECRET", "do-not-leak")]);
    let n = &c.nodes[0];
    let out = n.cli(&["blueprint", "apply", &blueprint(&c, "iso", "")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = n.dir.join("work/iso/app/0/report.json");
    let r: Value = wait_for("the instance's report", Duration::from_secs(30), || {
        serde_json::from_str(&std::fs::read_to_string(&report).ok()?).ok()
    });
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        let nobody = live_uid_of("nobody");
        assert_eq!(
            r["uid"].as_u64(),
            Some(nobody),
            "runs as deploy.user 'nobody': {r}"
        );
        for what in ["ca_key", "raft", "list"] {
            assert_eq!(r[what], "Permission denied", "{what}: {r}");
        }
        let st = n.status().unwrap();
        let said = st["workloads"].as_str().unwrap_or_default();
        assert!(
            said.starts_with("instances run as 'nobody' (deploy.user)"),
            "status says: {st}"
        );
    }
    assert_eq!(r["no_new_privs"][0], "1", "{r}");
    let env: BTreeSet<&str> = r["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let allowed: BTreeSet<&str> = [
        "PATH",
        "HOME",
        "TMPDIR",
        "LANG",
        "PORT",
        "AETHER_BLUEPRINT",
        "AETHER_SLICE",
        "AETHER_INSTANCE",
        "AETHER_NODE",
        "DATA_DIR",
        "TEST_RUN",
    ]
    .into();
    assert!(
        env.is_subset(&allowed),
        "beyond the allowed list: {:?}",
        env.difference(&allowed)
    );
    assert!(!env.contains("AETHER_CANARY_SECRET"));
    assert_eq!(
        r["home"].as_str(),
        Some(n.dir.join("work/iso/app/0").to_str().unwrap())
    );
}

/// The uid of user `name` on this host.
fn live_uid_of(name: &str) -> u64 {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd
        .lines()
        .find(|l| l.split(':').next() == Some(name))
        .and_then(|l| l.split(':').nth(2)?.parse().ok())
        .unwrap_or_else(|| panic!("no user '{name}' on this host"))
}

#[test]
fn root_is_refused_unless_allowed_and_unknown_users_at_apply() {
    let c = TestCluster::single("n1", &[]);
    let n = &c.nodes[0];
    // A user this node does not have: refused where it is written, nothing stored.
    let out = n.cli(&[
        "blueprint",
        "apply",
        &blueprint(&c, "ghost", "user = \"no-such-user\"\n"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "ghost.toml:7:8: slices[0].user: user 'no-such-user' does not exist on node 'n1'"
        ),
        "{}",
        stderr(&out)
    );
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    // Root, on a node that does not allow it: stored, never started, and it says why.
    let out = n.cli(&[
        "blueprint",
        "apply",
        &blueprint(&c, "boss", "user = \"root\"\n"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r = wait_for(
        "the root slice says why it does not start",
        Duration::from_secs(30),
        || {
            let r = row(n, "boss")?;
            r["last_exit"]
            .as_str()?
            .contains("runs as 'root' (root), which this node does not allow: set deploy.allow_root = true")
            .then_some(r)
        },
    );
    assert_ne!(r["state"], "active", "{r}");
    assert!(r["pid"].is_null(), "no process: {r}");
    let show = stdout(&n.cli(&["blueprint", "show", "boss"]));
    assert!(
        show.contains(
            "app: runs as root (user = \"root\"): only on nodes with deploy.allow_root = true"
        ),
        "{show}"
    );
}
