//! Spot interruption notices on real nodes: a local IMDS server (IMDSv2 token, instance-action,
//! rebalance) announces an interruption two minutes ahead and the node is drained with no
//! failed request through the ingress, the decision citing the deadline; 404s and a server
//! that is down are handled quietly; an unknown provider is refused with its location; the
//! drill feeds a node a notice and puts it back.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::harness::*;
use super::http;

/// What the fake metadata service answers, and what it saw.
#[derive(Default)]
struct Imds {
    /// `spot/instance-action`'s body; 404 when `None`.
    action: Option<String>,
    /// `events/recommendations/rebalance`'s body; 404 when `None`.
    rebalance: Option<String>,
    /// Drop every connection without answering (a service that is down).
    down: bool,
    /// Connections accepted.
    connections: u64,
    /// GETs of a notice path that carried the session token.
    with_token: u64,
    /// GETs of a notice path without it.
    without_token: u64,
}

/// A local IMDSv2 on 127.0.0.1: its base URL and its state.
fn imds() -> (String, Arc<Mutex<Imds>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let state = Arc::new(Mutex::new(Imds::default()));
    let st = state.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(conn) = conn else { continue };
            let down = {
                let mut s = st.lock().unwrap();
                s.connections += 1;
                s.down
            };
            if !down {
                let _ = answer(conn, &st);
            }
        }
    });
    (url, state)
}

fn answer(conn: TcpStream, st: &Mutex<Imds>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut r = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut token = false;
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        if h.trim().is_empty() {
            break;
        }
        token |= h
            .to_ascii_lowercase()
            .starts_with("x-aws-ec2-metadata-token: tok-1");
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let body = {
        let mut s = st.lock().unwrap();
        match (method, path) {
            ("PUT", "/latest/api/token") => Some("tok-1".to_string()),
            ("GET", p) if p.starts_with("/latest/meta-data/") => {
                if token {
                    s.with_token += 1;
                } else {
                    s.without_token += 1;
                }
                match p {
                    "/latest/meta-data/spot/instance-action" => s.action.clone(),
                    "/latest/meta-data/events/recommendations/rebalance" => s.rebalance.clone(),
                    _ => None,
                }
            }
            _ => None,
        }
    };
    let mut w = conn;
    match body {
        Some(b) => write!(
            w,
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{b}",
            b.len()
        ),
        None => write!(
            w,
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        ),
    }
}

/// `env` as owned pairs with the spot settings for a node watching `url`.
fn spot_env(url: &str) -> Vec<(String, String)> {
    vec![
        ("AETHER_SIGNALS_SPOT".into(), "aws".into()),
        ("AETHER_SIGNALS_SPOT_URL".into(), url.into()),
        ("AETHER_SIGNALS_SPOT_POLL".into(), "200ms".into()),
    ]
}

fn borrowed(e: &[(String, String)]) -> Vec<(&str, &str)> {
    e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Three nodes, node i serving service ports on 127.0.0.1(i+1); `n2` (only) watches `url`.
fn cluster(url: Option<&str>) -> TestCluster {
    let env = |i: usize| {
        let mut e = vec![
            (
                "AETHER_INGRESS_BIND".to_string(),
                format!("127.0.0.1{}", i + 1),
            ),
            ("AETHER_INGRESS_QUEUE_TIMEOUT".into(), "15s".into()),
        ];
        if i == 1
            && let Some(u) = url
        {
            e.extend(spot_env(u));
        }
        e
    };
    let mut c = TestCluster::single("n1", &borrowed(&env(0)));
    c.join(&["n2"], &borrowed(&env(1)));
    c.join(&["n3"], &borrowed(&env(2)));
    c.wait_voters(3);
    wait_for(
        "every node in n1's metrics",
        Duration::from_secs(20),
        || (c.nodes[0].metrics(&[])?["nodes"].as_array()?.len() == 3).then_some(()),
    );
    c
}

/// An instance that answers with the node it runs on.
const APP: &str = r#"
import http.server, os, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        b = ("%s %s\n" % (os.environ["AETHER_NODE"], os.environ["AETHER_INSTANCE"])).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

/// Apply `shop` with 3 instances of `web` behind service `port`, and wait until they are
/// active on every node; returns the service address on n1.
fn shop(c: &TestCluster, port: u16) -> String {
    let app = c.root.path().join("app.py");
    std::fs::write(&app, APP).unwrap();
    let file = c.root.path().join("shop.toml");
    std::fs::write(
        &file,
        format!(
            r#"name = "shop"

[[slices]]
name = "web"
command = ["python3", "{}", "${{PORT}}"]
instances = 3
min = 1
max = 3
resources = {{ cpu = 0.1, memory = "32MiB" }}
stop_timeout = "10s"

[slices.health]
http = "/"
interval = "300ms"

[slices.service]
port = {port}
entry_points = [{{ name = "home", path = "/" }}]
"#,
            app.display()
        ),
    )
    .unwrap();
    let out = c.nodes[0].cli(&["blueprint", "apply", file.to_str().unwrap()]);
    assert!(out.status.success(), "apply: {}", stderr(&out));
    wait_for(
        "3 instances active, one on each node",
        Duration::from_secs(60),
        || {
            let on = nodes_running(&c.nodes[0])?;
            (on.len() == 3 && on.iter().collect::<std::collections::BTreeSet<_>>().len() == 3)
                .then_some(())
        },
    );
    let addr = format!("127.0.0.11:{port}");
    wait_for("n1 routes", Duration::from_secs(20), || {
        (http::get(&addr, "/").ok()?.status == 200).then_some(())
    });
    addr
}

/// The nodes `shop/web`'s active, passing instances run on (`None` until all three are).
fn nodes_running(n: &Node) -> Option<Vec<String>> {
    let out = n.cli(&["blueprint", "show", "shop", "--output", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    let rows = v[0]["instances"].as_array()?;
    rows.iter()
        .map(|r| {
            (r["state"] == "active" && r["health"] == "passing")
                .then(|| r["node"].as_str().map(String::from))
                .flatten()
        })
        .collect()
}

/// Member `name` as `nodes --output json` on `n` shows it.
fn member(n: &Node, name: &str) -> Option<Value> {
    let out = n.cli(&["nodes", "--output", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v.as_array()?.iter().find(|m| m["name"] == name).cloned()
}

/// The decisions `n` lists (all of them).
fn decisions(n: &Node) -> Vec<Value> {
    let out = n.cli(&["decisions", "--all", "--output", "json"]);
    serde_json::from_slice::<Value>(&out.stdout)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

#[test]
fn an_interruption_notice_drains_the_node_with_no_failed_request() {
    let (url, state) = imds();
    let c = cluster(Some(&url));
    let port = free_port();
    let addr = shop(&c, port);
    // Polled quietly: 404s, with the session token.
    wait_for(
        "n2 polls the metadata service",
        Duration::from_secs(20),
        || (state.lock().unwrap().with_token >= 4).then_some(()),
    );
    assert_eq!(
        state.lock().unwrap().without_token,
        0,
        "IMDSv2 needs the token"
    );
    assert_eq!(member(&c.nodes[0], "n2").unwrap()["spot"], Value::Null);

    let load = http::Load::start(&addr, "/", 4, Duration::from_secs(240));
    let before = load.ok();
    wait_for(
        "requests succeed under load",
        Duration::from_secs(20),
        || (load.ok() > before + 50).then_some(()),
    );
    // The notice, two minutes ahead.
    let deadline =
        humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(120)).to_string();
    let clock = format!("{}Z", &deadline[11..19]);
    state.lock().unwrap().action = Some(format!(
        r#"{{"action": "terminate", "time": "{deadline}"}}"#
    ));
    wait_for(
        "n2 drained, its instance active elsewhere",
        Duration::from_secs(90),
        || {
            let m = member(&c.nodes[0], "n2")?;
            let on = nodes_running(&c.nodes[0])?;
            (m["state"] == "drained" && on.len() == 3 && !on.iter().any(|n| n == "n2"))
                .then_some(())
        },
    );
    let before = load.ok();
    wait_for("requests keep succeeding", Duration::from_secs(20), || {
        (load.ok() > before + 50).then_some(())
    });
    let (ok, failures) = load.finish();
    assert!(ok > 100, "{ok} requests answered");
    assert_eq!(failures, Vec::<String>::new(), "the drain failed requests");

    // `nodes` shows it with its deadline.
    let out = c.nodes[0].cli(&["nodes"]);
    let text = stdout(&out);
    assert!(
        text.contains(&format!("drained, interrupting (deadline {clock})")),
        "{text}"
    );
    // One decision, applied at once in guarded mode, citing the deadline and what moved.
    let spot: Vec<Value> = decisions(&c.nodes[0])
        .into_iter()
        .filter(|d| d["rule"] == "spot-interruption")
        .collect();
    assert_eq!(spot.len(), 1, "{spot:#?}");
    let d = &spot[0];
    assert_eq!(d["status"]["status"], "applied", "{d:#}");
    assert_eq!(d["mode"], "guarded", "{d:#}");
    let reasoning = d["reasoning"].to_string();
    assert!(
        reasoning.contains(&format!("terminated at {clock}")),
        "{reasoning}"
    );
    assert!(
        reasoning.contains("whatever the mode (guarded)"),
        "{reasoning}"
    );
    assert!(reasoning.contains("shop/web/"), "{reasoning}");
    let id = d["name"].as_str().unwrap().to_string();
    let outcome = wait_for("the decision's outcome", Duration::from_secs(20), || {
        let d = decisions(&c.nodes[0])
            .into_iter()
            .find(|d| d["name"] == id.as_str())?;
        d["outcome"]["detail"].as_str().map(String::from)
    });
    assert!(
        outcome.contains("n2 drained after") && outcome.contains("before the deadline"),
        "{outcome}"
    );
    assert!(outcome.contains("shop/web/"), "{outcome}");
    // Not undrained by the rules while the notice stands.
    assert_eq!(member(&c.nodes[0], "n2").unwrap()["state"], "drained");
}

#[test]
fn not_found_and_a_service_that_is_down_are_quiet() {
    let (url, state) = imds();
    let env = spot_env(&url);
    let c = TestCluster::single("n1", &borrowed(&env));
    wait_for("n1 polls", Duration::from_secs(20), || {
        (state.lock().unwrap().with_token >= 10).then_some(())
    });
    let spot_lines = |log: &str, what: &str| log.lines().filter(|l| l.contains(what)).count();
    let log = c.nodes[0].log_text();
    assert_eq!(spot_lines(&log, "spot: "), 1, "only the start line: {log}");
    // Down: said once, however many polls fail.
    let seen = {
        let mut s = state.lock().unwrap();
        s.down = true;
        s.connections
    };
    wait_for(
        "n1 keeps polling a server that is down",
        Duration::from_secs(20),
        || (state.lock().unwrap().connections >= seen + 20).then_some(()),
    );
    let log = c.nodes[0].log_text();
    assert_eq!(
        spot_lines(&log, "cannot reach the metadata service"),
        1,
        "said once: {log}"
    );
    assert!(c.nodes[0].status().is_some(), "the node keeps running");
    // Back: said once too, and quiet again.
    let seen = {
        let mut s = state.lock().unwrap();
        s.down = false;
        s.with_token
    };
    wait_for("n1 polls again", Duration::from_secs(20), || {
        (state.lock().unwrap().with_token >= seen + 10).then_some(())
    });
    let log = c.nodes[0].log_text();
    assert_eq!(spot_lines(&log, "answers again"), 1, "{log}");
    assert_eq!(spot_lines(&log, "spot: "), 3, "{log}");
    assert_eq!(member(&c.nodes[0], "n1").unwrap()["spot"], Value::Null);
}

#[test]
fn an_unknown_spot_provider_is_refused_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("aether.toml");
    std::fs::write(&file, "[signals]\nspot = \"gcp\"\n").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["node", "--config"])
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for want in [file.to_str().unwrap(), "line 2", "gcp", "none", "aws"] {
        assert!(err.contains(want), "'{want}' missing: {err}");
    }
    assert!(
        !dir.path().join("data").join("raft.redb").exists(),
        "nothing was created"
    );
    // The same from the environment names the variable.
    let out = std::process::Command::new(BIN)
        .args(["node", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("AETHER_SIGNALS_SPOT", "gcp")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("AETHER_SIGNALS_SPOT") && err.contains("gcp"),
        "{err}"
    );
}

#[test]
fn the_spot_drill_drains_and_restores_the_node() {
    let c = cluster(None);
    let port = free_port();
    shop(&c, port);
    let out = c.nodes[0].cli(&["drill", "run", "spot-interruption", "n2", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("spot interruption notice"), "{text}");
    assert_eq!(member(&c.nodes[0], "n2").unwrap()["state"], "ready");

    let out = c.nodes[0].cli(&["drill", "run", "spot-interruption", "n2", "--for", "90s"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("spot-interruption: decision d-"), "{text}");
    assert!(text.contains("1 instance moved after"), "{text}");
    assert!(text.contains("restored; recovered"), "{text}");
    assert!(text.contains("shop/web/"), "{text}");
    // Put back: ready, no notice, and the decision stays for the audit trail.
    let n2 = member(&c.nodes[0], "n2").unwrap();
    assert_eq!(n2["state"], "ready", "{n2:#}");
    assert_eq!(n2["spot"], Value::Null, "{n2:#}");
    assert!(
        decisions(&c.nodes[0])
            .iter()
            .any(|d| d["rule"] == "spot-interruption"),
        "the drill's decision is recorded"
    );
    let out = c.nodes[0].cli(&["events", "--output", "json"]);
    let events = stdout(&out);
    assert!(
        events.contains("drill spot-interruption started on n2"),
        "{events}"
    );
    assert!(events.contains("spot notice cleared"), "{events}");
}

#[test]
fn a_rebalance_recommendation_proposes_a_drain_that_waits_for_the_grace_window() {
    let (url, state) = imds();
    let c = cluster(Some(&url));
    let at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    state.lock().unwrap().rebalance = Some(format!(r#"{{"noticeTime": "{at}"}}"#));
    let d = wait_for(
        "a pending drain of n2 on the rebalance recommendation",
        Duration::from_secs(30),
        || {
            decisions(&c.nodes[0])
                .into_iter()
                .find(|d| d["rule"] == "spot-rebalance")
        },
    );
    assert_eq!(d["status"]["status"], "pending", "guarded waits: {d:#}");
    assert_eq!(d["action"]["name"], "n2", "{d:#}");
    let reasoning = d["reasoning"].to_string();
    assert!(
        reasoning.contains("rebalance recommendation at"),
        "{reasoning}"
    );
    let text = stdout(&c.nodes[0].cli(&["nodes"]));
    assert!(
        text.contains(&format!("ready, rebalance recommended ({}Z)", &at[11..19])),
        "{text}"
    );
    // Vetoable like any proposal: n2 stays ready.
    let id = d["name"].as_str().unwrap();
    let out = c.nodes[0].cli(&["override", "veto", id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let vetoed = decisions(&c.nodes[0])
        .into_iter()
        .find(|x| x["name"] == id)
        .unwrap();
    assert_eq!(vetoed["status"]["status"], "vetoed", "{vetoed:#}");
    assert_eq!(member(&c.nodes[0], "n2").unwrap()["state"], "ready");
}
