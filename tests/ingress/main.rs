//! The request path on real nodes over 127.0.0.1 (each node's service ports on its own
//! loopback address): every node routes to instances on every node; scale-in, drain, a
//! blueprint change and a node's SIGTERM under steady load fail no request; a slice that cannot
//! start answers 503 with Retry-After; bad service tables are refused with their location.

#[path = "../cluster/harness.rs"]
#[macro_use]
mod harness;
mod http;

use std::collections::BTreeSet;
use std::time::Duration;

use harness::*;
use serde_json::Value;

/// An instance that answers with the node and instance it runs as (keep-alive HTTP/1.1);
/// `/slow` takes 300 ms.
const APP: &str = r#"
import http.server, os, sys, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/slow"):
            time.sleep(0.3)
        b = ("%s %s %s\n" % (os.environ["AETHER_NODE"], os.environ["AETHER_INSTANCE"], os.environ.get("VERSION", ""))).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

/// A raw HTTP/1.1 server: `Upgrade: echo` switches to echoing bytes; otherwise it answers
/// with its node, the method, the forwarding headers it got and the body it read (chunked or
/// not).
const ECHO: &str = r#"
import os, socketserver, sys
class H(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            line = self.rfile.readline()
            if not line:
                return
            method = line.decode().split(" ")[0]
            headers = {}
            while True:
                h = self.rfile.readline().decode()
                if h in ("\r\n", "\n", ""):
                    break
                k, v = h.split(":", 1)
                headers[k.strip().lower()] = v.strip()
            if headers.get("upgrade") == "echo":
                self.wfile.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
                self.wfile.flush()
                while True:
                    d = self.request.recv(4096)
                    if not d:
                        return
                    self.request.sendall(d)
            body = b""
            if headers.get("transfer-encoding", "").lower() == "chunked":
                while True:
                    n = int(self.rfile.readline().strip(), 16)
                    if n == 0:
                        self.rfile.readline()
                        break
                    body += self.rfile.read(n)
                    self.rfile.readline()
            elif "content-length" in headers:
                body = self.rfile.read(int(headers["content-length"]))
            out = ("%s %s xff=%s proto=%s body=%s" % (os.environ["AETHER_NODE"], method, headers.get("x-forwarded-for"), headers.get("x-forwarded-proto"), body.decode())).encode()
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(out) + out)
            self.wfile.flush()
class S(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
S(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

/// Three nodes; node i binds service ports on 127.0.0.1(i+1).
fn cluster() -> TestCluster {
    TestCluster::with_ingress(3, &[])
}

fn blueprint(c: &TestCluster, port: u16, instances: u32, version: &str) -> String {
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
instances = {instances}
min = 1
max = 3
resources = {{ cpu = 0.1, memory = "32MiB" }}
stop_timeout = "10s"
env = {{ VERSION = "{version}" }}

[slices.health]
http = "/"
interval = "300ms"

[slices.service]
port = {port}
entry_points = [
  {{ name = "home", path = "/" }},
  {{ name = "slow", path = "/slow" }},
]
"#,
            app.display()
        ),
    )
    .unwrap();
    file.to_str().unwrap().to_string()
}

fn apply(n: &Node, file: &str) {
    let out = n.cli(&["blueprint", "apply", file]);
    assert!(out.status.success(), "apply: {}", stderr(&out));
}

/// `shop`'s instance rows as `n` shows them.
fn rows(n: &Node) -> Vec<Value> {
    let out = n.cli(&["blueprint", "show", "shop", "--output", "json"]);
    if !out.status.success() {
        return Vec::new();
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v[0]["instances"].as_array().cloned().unwrap_or_default()
}

/// Wait until `n` shows `count` instances active and passing, each with VERSION `version`
/// answering through the ingress; returns the nodes they run on.
fn wait_active(c: &TestCluster, count: usize, why: &str) -> BTreeSet<String> {
    wait_for(why, Duration::from_secs(60), || {
        let r = rows(&c.nodes[0]);
        let active: Vec<&Value> = r
            .iter()
            .filter(|r| r["state"] == "active" && r["health"] == "passing")
            .collect();
        (active.len() == count && r.len() == count).then(|| {
            active
                .iter()
                .map(|r| r["node"].as_str().unwrap().to_string())
                .collect()
        })
    })
}

fn service_addr(i: usize, port: u16) -> String {
    format!("127.0.0.1{}:{port}", i + 1)
}

#[test]
fn every_node_routes_to_instances_on_every_node() {
    let c = cluster();
    let port = free_port();
    let file = blueprint(&c, port, 3, "v1");
    apply(&c.nodes[1], &file);
    let nodes = wait_active(&c, 3, "3 instances active");
    assert_eq!(nodes.len(), 3, "one instance per node: {nodes:?}");
    // Each node's table follows its store: wait until each routes to all three.
    for i in 0..3 {
        let addr = service_addr(i, port);
        wait_for(
            &format!("requests through {addr} reach all three nodes"),
            Duration::from_secs(20),
            || {
                let mut seen = BTreeSet::new();
                for _ in 0..30 {
                    let a = http::get(&addr, "/").ok()?;
                    if a.status != 200 {
                        return None;
                    }
                    seen.insert(a.body.split_whitespace().next()?.to_string());
                }
                (seen.len() == 3).then_some(())
            },
        );
    }
    // An unmatched method and path is still routed (the instance answers it).
    let a = http::request(&service_addr(0, port), "POST", "/nothing", "x").unwrap();
    assert_eq!(a.status, 501, "python's server has no POST: {a:?}");

    // Chunked bodies, forwarding headers and upgrades pass through, to a local instance and
    // through a hop to a remote one.
    let echo_port = free_port();
    let app = c.root.path().join("echo.py");
    std::fs::write(&app, ECHO).unwrap();
    let file = c.root.path().join("echo.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"echo\"\n\n[[slices]]\nname = \"ws\"\ncommand = [\"python3\", \"{}\", \"${{PORT}}\"]\ninstances = 1\n\n[slices.health]\ntcp = true\ninterval = \"300ms\"\n\n[slices.service]\nport = {echo_port}\n",
            app.display()
        ),
    )
    .unwrap();
    apply(&c.nodes[0], file.to_str().unwrap());
    for i in 0..3 {
        let addr = service_addr(i, echo_port);
        let body = wait_for(
            &format!("a chunked POST through {addr}"),
            Duration::from_secs(30),
            || chunked_post(&addr).ok(),
        );
        assert!(
            body.contains("POST xff=127.0.0.1 proto=http body=hello world"),
            "through {addr}: {body}"
        );
        assert_eq!(upgrade_echo(&addr), "ping-pong", "through {addr}");
    }

    // Counting: exactly the requests sent, per node on /metrics, summed over the cluster by
    // `aether traffic` on any node.
    let count_port = free_port();
    let file = c.root.path().join("count.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"count\"\n\n[[slices]]\nname = \"web\"\ncommand = [\"python3\", \"{}\", \"${{PORT}}\"]\ninstances = 2\n\n[slices.health]\nhttp = \"/\"\ninterval = \"300ms\"\n\n[slices.service]\nport = {count_port}\nentry_points = [{{ name = \"home\", path = \"/\" }}, {{ name = \"slow\", path = \"/slow\" }}]\n",
            c.root.path().join("app.py").display()
        ),
    )
    .unwrap();
    apply(&c.nodes[0], file.to_str().unwrap());
    wait_for(
        "count/web has 2 active instances",
        Duration::from_secs(30),
        || {
            let out = c.nodes[0].cli(&["blueprint", "show", "count", "--output", "json"]);
            let v: Value = serde_json::from_slice(&out.stdout).ok()?;
            let active = v[0]["instances"]
                .as_array()?
                .iter()
                .filter(|r| r["state"] == "active")
                .count();
            (active == 2).then_some(())
        },
    );
    for i in 0..3 {
        let addr = service_addr(i, count_port);
        wait_for(
            &format!("{addr} routes count/web"),
            Duration::from_secs(20),
            || {
                c.nodes[i].metrics(&[])?;
                let a = http::get(&addr, "/slow").ok()?;
                (a.status == 200).then_some(())
            },
        );
        for _ in 0..20 {
            let a = http::get(&addr, "/").unwrap();
            assert_eq!(a.status, 200, "{a:?}");
        }
    }
    // 3 /slow (one per node) and 60 /.
    let total = |n: &Node, entry: &str| -> f64 {
        let (_, text) = n.http_get("/metrics").unwrap();
        let want = format!("aether_requests_total{{slice=\"count/web\",entry=\"{entry}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(want.as_str()))
            .map_or(0.0, |v| v.trim().parse().unwrap())
    };
    for n in &c.nodes {
        assert_eq!(
            total(n, "home"),
            20.0,
            "{} counted its own requests",
            n.name
        );
        assert_eq!(total(n, "slow"), 1.0, "{}", n.name);
    }
    wait_for(
        "aether traffic on n3 counts the 63 requests sent through all three nodes",
        Duration::from_secs(15),
        || {
            let out = c.nodes[2].cli(&["traffic", "count/web", "--output", "json"]);
            let v: Value = serde_json::from_slice(&out.stdout).ok()?;
            let secs = v["window_secs"].as_f64()?;
            let t = &v["slices"][0]["traffic"];
            let calls = (t["calls_per_s"].as_f64()? * secs).round();
            let entry = |name: &str| {
                t["entries"].as_array().and_then(|e| {
                    e.iter()
                        .find(|x| x["name"] == name)
                        .and_then(|x| Some((x["calls_per_s"].as_f64()? * secs).round()))
                })
            };
            let shares: f64 = t["instances"]
                .as_array()?
                .iter()
                .filter_map(|p| p[1].as_f64())
                .sum();
            (calls == 63.0
                && entry("home") == Some(60.0)
                && entry("slow") == Some(3.0)
                && (shares - 1.0).abs() < 1e-6)
                .then_some(())
        },
    );
    // A port busy on one node is reported for that node while the others serve; once it is
    // free, that node serves too.
    let busy_port = free_port();
    let squatter = std::net::TcpListener::bind(service_addr(1, busy_port)).unwrap();
    let file = c.root.path().join("busy.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"busy\"\n\n[[slices]]\nname = \"web\"\ncommand = [\"python3\", \"{}\", \"${{PORT}}\"]\ninstances = 1\n\n[slices.service]\nport = {busy_port}\n",
            c.root.path().join("app.py").display()
        ),
    )
    .unwrap();
    apply(&c.nodes[0], file.to_str().unwrap());
    for i in [0, 2] {
        let addr = service_addr(i, busy_port);
        wait_for(
            &format!("{addr} serves busy/web"),
            Duration::from_secs(30),
            || (http::get(&addr, "/").ok()?.status == 200).then_some(()),
        );
    }
    let says = wait_for(
        "blueprint show names n2's busy port",
        Duration::from_secs(20),
        || {
            let out = c.nodes[2].cli(&["blueprint", "show", "busy"]);
            let text = stdout(&out);
            text.contains(&format!("port {busy_port} is not served on n2"))
                .then_some(text)
        },
    );
    assert!(says.contains("free the port or set ingress.bind"), "{says}");
    drop(squatter);
    let addr = service_addr(1, busy_port);
    wait_for(
        &format!("{addr} serves once the port is free"),
        Duration::from_secs(30),
        || (http::get(&addr, "/").ok()?.status == 200).then_some(()),
    );
    wait_for("the report clears", Duration::from_secs(20), || {
        let out = c.nodes[2].cli(&["blueprint", "show", "busy"]);
        (!stdout(&out).contains("is not served")).then_some(())
    });
}

/// A chunked POST of "hello world"; the answer's body.
fn chunked_post(addr: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    if !out.starts_with("HTTP/1.1 200") {
        return Err(out);
    }
    Ok(out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}

/// Upgrade to the echo protocol and send bytes both ways on the upgraded connection.
fn upgrade_echo(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut b).unwrap(),
            1,
            "closed before the 101: {head:?}"
        );
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut got = Vec::new();
    for part in [&b"ping"[..], b"-pong"] {
        s.write_all(part).unwrap();
        let mut buf = vec![0u8; part.len()];
        s.read_exact(&mut buf).unwrap();
        got.extend(buf);
    }
    String::from_utf8(got).unwrap()
}

#[test]
fn moving_instances_under_load_fails_no_request() {
    let mut c = cluster();
    let port = free_port();
    let file = blueprint(&c, port, 3, "v1");
    apply(&c.nodes[0], &file);
    wait_active(&c, 3, "3 instances active");
    // Load through n1's port; n1 stays up throughout.
    let target = service_addr(0, port);
    wait_for("n1 routes", Duration::from_secs(20), || {
        (http::get(&target, "/").ok()?.status == 200).then_some(())
    });
    let load = http::Load::start(&target, "/", 4, Duration::from_secs(240));
    let progress = |load: &http::Load, what: &str| {
        let before = load.ok();
        wait_for(
            &format!("requests keep succeeding {what}"),
            Duration::from_secs(20),
            || (load.ok() > before + 50).then_some(()),
        );
    };
    progress(&load, "at the start");

    // Scale-in: two instances stop.
    let out = c.nodes[0].cli(&["scale", "shop/web", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_active(&c, 1, "scaled in to 1");
    progress(&load, "after the scale-in");
    assert_eq!(
        load.failures(),
        Vec::<String>::new(),
        "scale-in failed requests"
    );

    // Back to three, then drain the node that runs instance 0.
    let out = c.nodes[0].cli(&["scale", "shop/web", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_active(&c, 3, "back to 3");
    let victim = rows(&c.nodes[0])
        .iter()
        .find(|r| r["node"] != "n1")
        .map(|r| r["node"].as_str().unwrap().to_string())
        .unwrap();
    let out = c.nodes[0].cli(&["drain", &victim]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for(
        "the drained node runs nothing",
        Duration::from_secs(60),
        || {
            let r = rows(&c.nodes[0]);
            (r.len() == 3
                && r.iter()
                    .all(|r| r["node"] != victim.as_str() && r["state"] == "active"))
            .then_some(())
        },
    );
    progress(&load, "after the drain");
    assert_eq!(
        load.failures(),
        Vec::<String>::new(),
        "the drain failed requests"
    );
    let out = c.nodes[0].cli(&["undrain", &victim]);
    assert!(out.status.success(), "{}", stderr(&out));

    // A blueprint change rolls out (one copy at a time, the default).
    let file = blueprint(&c, port, 3, "v2");
    apply(&c.nodes[0], &file);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let last: Vec<String> = (0..20)
            .map(|_| {
                http::get(&target, "/")
                    .map(|a| a.body)
                    .unwrap_or_else(|e| e)
            })
            .collect();
        if last.iter().all(|b| b.trim_end().ends_with("v2")) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not every answer comes from v2 after 60 s: {last:?}\n{:?}",
            rows(&c.nodes[0])
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    progress(&load, "after the blueprint change");
    assert_eq!(
        load.failures(),
        Vec::<String>::new(),
        "the blueprint change failed requests"
    );

    // kill -9 of an instance costs at most the requests in flight on it (one per load thread;
    // GETs without a body are retried, so usually none).
    let victim = rows(&c.nodes[0])
        .into_iter()
        .find(|r| r["node"] != "n1")
        .expect("an instance off n1");
    let pid = victim["pid"].as_u64().unwrap();
    let out = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "kill -9 {pid}: {}", stderr(&out));
    wait_for(
        "the killed instance restarts",
        Duration::from_secs(30),
        || {
            rows(&c.nodes[0])
                .iter()
                .find(|r| r["instance"] == victim["instance"])
                .filter(|r| r["restarts"].as_u64().unwrap_or(0) >= 1 && r["state"] == "active")
                .map(|_| ())
        },
    );
    progress(&load, "after an instance's kill -9");
    let lost = load.failures();
    assert!(
        lost.len() <= 4,
        "kill -9 cost more than the requests in flight: {lost:?}"
    );

    // SIGTERM of a node that is not n1 (and runs an instance).
    let running = wait_active(&c, 3, "3 active before the SIGTERM");
    let (i, _) = c
        .nodes
        .iter()
        .enumerate()
        .find(|(_, n)| n.name != "n1" && running.contains(&n.name))
        .expect("an instance off n1");
    let st = c.nodes[i].terminate();
    assert!(st.success(), "the node stops cleanly: {st}");
    progress(&load, "after a node's SIGTERM");
    let (ok, failures) = load.finish();
    assert_eq!(
        failures[lost.len()..],
        [] as [String; 0],
        "a node's SIGTERM failed requests"
    );
    assert!(ok > 200, "the load ran: {ok} answered");
}

#[test]
fn a_slice_that_cannot_start_answers_503_with_retry_after() {
    let c = TestCluster::single(
        "n1",
        &[
            ("AETHER_INGRESS_BIND", "127.0.0.21"),
            ("AETHER_INGRESS_QUEUE_TIMEOUT", "2s"),
        ],
    );
    let port = free_port();
    let file = c.root.path().join("broken.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"broken\"\n\n[[slices]]\nname = \"web\"\ncommand = [\"/nonexistent/program\"]\ninstances = 1\n\n[slices.service]\nport = {port}\n"
        ),
    )
    .unwrap();
    apply(&c.nodes[0], file.to_str().unwrap());
    let addr = format!("127.0.0.21:{port}");
    let a = wait_for("the port is served", Duration::from_secs(20), || {
        http::get(&addr, "/").ok()
    });
    assert_eq!(a.status, 503, "{a:?}");
    assert_eq!(a.header("retry-after"), Some("1"), "{a:?}");
    assert!(
        a.body.contains("broken/web") && a.body.contains("queue_timeout"),
        "{}",
        a.body
    );
}

#[test]
fn bad_service_tables_are_refused_with_their_location() {
    let c = TestCluster::single("n1", &[("AETHER_INGRESS_BIND", "127.0.0.31")]);
    let n = &c.nodes[0];
    let port = free_port();
    let write = |name: &str, body: String| {
        let f = c.root.path().join(name);
        std::fs::write(&f, body).unwrap();
        f.to_str().unwrap().to_string()
    };
    let slice = |bp: &str, svc: &str| {
        format!(
            "name = \"{bp}\"\n\n[[slices]]\nname = \"web\"\ncommand = [\"sleep\", \"1000\"]\ninstances = 0\n\n[slices.service]\n{svc}\n"
        )
    };
    let a = write("a.toml", slice("a", &format!("port = {port}")));
    apply(n, &a);
    // The same port in another blueprint: refused at its line, naming the holder.
    let b = write("b.toml", slice("b", &format!("port = {port}")));
    let out = n.cli(&["blueprint", "apply", &b]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("b.toml:9:8") && e.contains("slices[0].service.port") && e.contains("'a/web'"),
        "{e}"
    );
    // A malformed entry point and an unknown method.
    for (svc, says) in [
        (
            format!(
                "port = {}\nentry_points = [{{ name = \"home\", path = \"home\" }}]",
                port + 1
            ),
            "entry_points[0].path",
        ),
        (
            format!(
                "port = {}\nentry_points = [{{ name = \"buy\", path = \"/buy\", method = \"FETCH\" }}]",
                port + 1
            ),
            "unknown HTTP method 'FETCH'",
        ),
    ] {
        let f = write("c.toml", slice("c", &svc));
        let out = n.cli(&["blueprint", "apply", &f]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let e = stderr(&out);
        assert!(e.contains("c.toml:1") && e.contains(says), "{e}");
    }
    let list = n.cli(&["blueprint", "list", "--output", "json"]);
    let v: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "nothing else stored: {v}");
}

/// The node's decisions as JSON.
fn decisions(n: &Node) -> Vec<Value> {
    let out = n.cli(&["decisions", "--all", "--output", "json"]);
    serde_json::from_slice::<Value>(&out.stdout)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

/// The decisions on `target` that scale it to `to`.
fn scaled_to(n: &Node, target: &str, to: u64) -> Option<Value> {
    decisions(n).into_iter().find(|d| {
        format!(
            "{}/{}",
            d["action"]["blueprint"].as_str().unwrap_or(""),
            d["action"]["slice"].as_str().unwrap_or("")
        ) == target
            && d["action"]["to"].as_u64() == Some(to)
    })
}

#[test]
fn a_slice_at_zero_starts_on_the_first_request_and_idles_back_to_zero() {
    let c = TestCluster::single(
        "n1",
        &[
            ("AETHER_INGRESS_BIND", "127.0.0.22"),
            ("AETHER_INGRESS_QUEUE_TIMEOUT", "60s"),
        ],
    );
    let n = &c.nodes[0];
    let out = n.cli(&["override", "mode", "guarded", "--grace", "2s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let app = c.root.path().join("app.py");
    std::fs::write(&app, APP).unwrap();
    let port = free_port();
    let file = c.root.path().join("zero.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"zero\"\n\n[[slices]]\nname = \"web\"\ncommand = [\"python3\", \"{}\", \"${{PORT}}\"]\ninstances = 0\nmin = 0\nmax = 2\n\n[slices.health]\nhttp = \"/\"\ninterval = \"300ms\"\n\n[slices.service]\nport = {port}\n\n[slices.scaling]\nidle_to_zero = \"5s\"\n",
            app.display()
        ),
    )
    .unwrap();
    apply(n, file.to_str().unwrap());
    let addr = format!("127.0.0.22:{port}");
    wait_for("the port is served", Duration::from_secs(20), || {
        std::net::TcpStream::connect(&addr).ok()
    });
    // The first request waits while the leader starts an instance, then succeeds.
    let started = std::time::Instant::now();
    let a = http::get(&addr, "/").unwrap();
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.body.starts_with("n1 zero/web/0"), "{a:?}");
    eprintln!(
        "first request from zero answered after {:?}",
        started.elapsed()
    );
    let up = scaled_to(n, "zero/web", 1).expect("a scale-from-zero decision");
    let why = up["reasoning"].to_string();
    assert!(why.contains("waiting at the ingress"), "{up}");
    // Idle for idle_to_zero: back to zero, as a decision with its reasoning.
    let down = wait_for("an idle-to-zero decision", Duration::from_secs(60), || {
        scaled_to(n, "zero/web", 0)
    });
    assert!(
        down["reasoning"].to_string().contains("no request for"),
        "{down}"
    );
    wait_for("no instance runs", Duration::from_secs(60), || {
        let out = n.cli(&["blueprint", "show", "zero", "--output", "json"]);
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        v[0]["instances"].as_array()?.is_empty().then_some(())
    });
    // And a request starts it again.
    let a = http::get(&addr, "/").unwrap();
    assert_eq!(a.status, 200, "{a:?}");
}

/// Rules for the latency test: p95 above target for 3 s scales up.
const LATENCY_RULES: &str = concat!(
    quick_settings!(),
    r#"
[[rules]]
name = "latency-high"
scope = "slice"
priority = 90
when = [{ metric = "latency_ms", above = "target", for = "3s" }]
action = "scale_up"
"#
);

#[test]
fn latency_over_the_target_draws_a_scale_up_citing_calls_and_latency() {
    let root = tempfile::tempdir().unwrap();
    let rules = root.path().join("rules.toml");
    std::fs::write(&rules, LATENCY_RULES).unwrap();
    let c = TestCluster::single(
        "n1",
        &[
            ("AETHER_INGRESS_BIND", "127.0.0.23"),
            ("AETHER_CONTROLLER_RULES", rules.to_str().unwrap()),
        ],
    );
    let n = &c.nodes[0];
    let app = c.root.path().join("app.py");
    std::fs::write(&app, APP).unwrap();
    let port = free_port();
    let file = c.root.path().join("lat.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"lat\"\n\n[[slices]]\nname = \"web\"\ncommand = [\"python3\", \"{}\", \"${{PORT}}\"]\ninstances = 1\nmax = 4\n\n[slices.health]\nhttp = \"/\"\ninterval = \"300ms\"\n\n[slices.service]\nport = {port}\nentry_points = [{{ name = \"slow\", path = \"/slow\" }}]\n\n[slices.scaling]\ntarget_latency = \"100ms\"\n",
            app.display()
        ),
    )
    .unwrap();
    apply(n, file.to_str().unwrap());
    let addr = format!("127.0.0.23:{port}");
    wait_for("lat/web answers", Duration::from_secs(30), || {
        (http::get(&addr, "/").ok()?.status == 200).then_some(())
    });
    // Every request takes 300 ms: p95 three times the target.
    let load = http::Load::start(&addr, "/slow", 4, Duration::from_secs(120));
    let d = wait_for(
        "a scale-up decision on lat/web",
        Duration::from_secs(60),
        || {
            decisions(n).into_iter().find(|d| {
                d["action"]["slice"] == "web"
                    && d["action"]["blueprint"] == "lat"
                    && d["rule"] == "latency-high"
            })
        },
    );
    let (_, failures) = load.finish();
    assert!(failures.is_empty(), "{failures:?}");
    let inputs = d["inputs"].to_string();
    assert!(
        inputs.contains("calls_per_s") && inputs.contains("latency_p95_ms"),
        "the decision cites calls/s and latency: {d}"
    );
    let why = d["reasoning"].to_string();
    assert!(why.contains("p95"), "{d}");
    assert!(d["action"]["to"].as_u64().unwrap() > 1, "{d}");
}
