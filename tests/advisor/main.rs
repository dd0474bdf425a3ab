//! The strategic layer against a real OpenAI-compatible server on 127.0.0.1, written here with
//! hyper: a node whose endpoint is down, then answers garbage, then JSON off the schema, then
//! too slowly, then good advice; each is counted, said once in the log, and the node stays
//! fine. `aether advice` lists good items on the node, `/metrics` counts the requests, and
//! `aether advice take` turns an item into a proposed decision that waits for an approve, which
//! applies it.

#[path = "../cluster/harness.rs"]
mod harness;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use harness::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// How the fake endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// Valid advice about the slice `adv/web`.
    Good,
    /// Not JSON at all.
    Garbage,
    /// A chat completion whose message is JSON that does not match the schema.
    OffSchema,
    /// Valid advice, 4 s late (the node's budget is 1 s).
    Slow,
    /// HTTP 503.
    Overloaded,
}

/// One request as the endpoint saw it.
struct Seen {
    path: String,
    auth: Option<String>,
    body: String,
}

struct Fake {
    mode: Mutex<Mode>,
    seen: Mutex<Vec<Seen>>,
}

const GOOD: &str = r#"{"items": [
  {"kind": "scale", "target": "adv/web", "count": 2, "reason": "calls/s doubled over the hour"},
  {"kind": "raise_max", "target": "adv/web", "count": 5, "reason": "capped at max=3 for 10m"},
  {"kind": "note", "target": "", "reason": "nothing else stands out"}
]}"#;

fn completion(content: &str) -> String {
    serde_json::json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "test-model",
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": content },
            "finish_reason": "stop"
        }]
    })
    .to_string()
}

async fn answer(
    fake: Arc<Fake>,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    fake.seen.lock().unwrap().push(Seen {
        path,
        auth,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let mode = *fake.mode.lock().unwrap();
    let (status, text) = match mode {
        Mode::Good => (200, completion(GOOD)),
        Mode::Garbage => (200, "<html>surprise</html>".to_string()),
        Mode::OffSchema => (200, completion(r#"{"advice": "scale everything"}"#)),
        Mode::Slow => {
            // The endpoint is slow on purpose: this is the behaviour under test.
            tokio::time::sleep(Duration::from_secs(4)).await;
            (200, completion(GOOD))
        }
        Mode::Overloaded => (503, "overloaded".to_string()),
    };
    Ok(hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(text)))
        .unwrap())
}

/// The endpoint on `port`: listening from [`Endpoint::up`] until [`Endpoint::down`].
struct Endpoint {
    rt: tokio::runtime::Runtime,
    port: u16,
    fake: Arc<Fake>,
    accept: Option<tokio::task::JoinHandle<()>>,
}

impl Endpoint {
    fn new(port: u16) -> Endpoint {
        Endpoint {
            rt: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap(),
            port,
            fake: Arc::new(Fake {
                mode: Mutex::new(Mode::Garbage),
                seen: Mutex::new(Vec::new()),
            }),
            accept: None,
        }
    }

    fn set(&self, mode: Mode) {
        *self.fake.mode.lock().unwrap() = mode;
    }

    fn up(&mut self) {
        let fake = self.fake.clone();
        let listener = self
            .rt
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", self.port)))
            .unwrap();
        self.accept = Some(self.rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let fake = fake.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| answer(fake.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        }));
    }

    fn requests(&self) -> usize {
        self.fake.seen.lock().unwrap().len()
    }
}

fn json(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn advice(n: &Node) -> Value {
    json(&n.cli(&["advice", "--output", "json"]))
}

fn count(n: &Node, field: &str) -> u64 {
    advice(n)[field].as_u64().unwrap_or(0)
}

/// Wait until the advice's counter `field` grows past `from`; the advice then.
fn wait_count(n: &Node, field: &str, from: u64) -> Value {
    wait_for(
        &format!("advice counter '{field}' above {from}"),
        Duration::from_secs(30),
        || {
            let a = advice(n);
            (a[field].as_u64().unwrap_or(0) > from).then_some(a)
        },
    )
}

fn run_id() -> String {
    format!("{}-adv", std::process::id())
}

#[test]
fn advice_is_counted_when_the_endpoint_is_down_slow_or_wrong_and_taken_as_a_proposal() {
    let _reaper = Reaper(run_id());
    let port = free_port();
    let mut ep = Endpoint::new(port);
    let url = format!("http://127.0.0.1:{port}/v1");
    let run = run_id();
    let env = [
        ("TEST_RUN", run.as_str()),
        ("AETHER_CONTROLLER_MODEL_ENABLED", "false"),
        ("AETHER_CONTROLLER_ADVISOR_ENABLED", "true"),
        ("AETHER_CONTROLLER_ADVISOR_URL", url.as_str()),
        ("AETHER_CONTROLLER_ADVISOR_MODEL", "test-model"),
        // The shortest interval the config accepts (30s to 60s is the intended range).
        ("AETHER_CONTROLLER_ADVISOR_INTERVAL", "1s"),
        ("AETHER_CONTROLLER_ADVISOR_BUDGET", "1s"),
        ("AETHER_CONTROLLER_ADVISOR_API_KEY_ENV", "ADVISOR_TEST_KEY"),
        ("ADVISOR_TEST_KEY", "sekrit-key"),
    ];
    let c = TestCluster::single("n1", &env);
    let n = &c.nodes[0];

    // Down: nothing listens on the port. Counted as failed, said once in the log.
    let a = wait_count(n, "failed", 2);
    assert!(
        a["last_error"]
            .as_str()
            .unwrap()
            .contains(&format!("cannot connect to '127.0.0.1:{port}'")),
        "{a}"
    );
    assert_eq!(a["items"], serde_json::json!([]));
    assert_eq!(a["model"], "test-model");
    let log = n.log_text();
    assert_eq!(
        log.matches("advisor: cannot connect").count(),
        1,
        "a lasting condition is said once:\n{log}"
    );
    assert!(!log.contains("sekrit-key"), "the key is never logged");
    assert!(n.status().is_some(), "the node answers");

    // Garbage: not JSON. Counted as invalid; no items.
    ep.up();
    let a = wait_count(n, "invalid", 0);
    assert!(
        a["last_error"]
            .as_str()
            .unwrap()
            .contains("the answer is not a chat completion"),
        "{a}"
    );
    assert_eq!(a["items"], serde_json::json!([]));
    {
        let seen = ep.fake.seen.lock().unwrap();
        let first = &seen[0];
        assert_eq!(first.path, "/v1/chat/completions");
        assert_eq!(first.auth.as_deref(), Some("Bearer sekrit-key"));
        let body: Value = serde_json::from_str(&first.body).unwrap();
        assert_eq!(body["model"], "test-model");
        assert_eq!(body["temperature"], 0);
        assert_eq!(body["response_format"]["type"], "json_schema");
        let summary = body["messages"][1]["content"].as_str().unwrap();
        assert!(summary.contains("leader n1"), "{summary}");
    }

    // JSON off the schema: refused with the reason, counted as invalid.
    ep.set(Mode::OffSchema);
    let invalid = count(n, "invalid");
    let a = wait_for(
        "an answer refused by the schema",
        Duration::from_secs(30),
        || {
            let a = wait_count(n, "invalid", invalid);
            a["last_error"]
                .as_str()
                .unwrap()
                .contains("does not match the schema: unknown field `advice`")
                .then_some(a)
        },
    );
    assert_eq!(a["items"], serde_json::json!([]));

    // Slow: past the budget is a timeout; the node is fine meanwhile.
    ep.set(Mode::Slow);
    let timeouts = count(n, "timeouts");
    wait_count(n, "timeouts", timeouts);
    assert!(n.status().is_some(), "the node answers");
    let log = n.log_text();
    assert!(log.contains("counted as a timeout"), "{log}");

    // Good: advice about a slice that exists. Items before the slice exists are refused.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("adv.toml");
    std::fs::write(
        &file,
        "name = \"adv\"\n\n[[slices]]\nname = \"web\"\ncommand = [\"sleep\", \"3600\"]\n\
         instances = 1\nmin = 1\nmax = 3\nresources = { cpu = 0.02, memory = \"16MiB\" }\n\
         stop_timeout = \"2s\"\n",
    )
    .unwrap();
    let out = n.cli(&["blueprint", "apply", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    ep.set(Mode::Good);
    let a = wait_for("advice with items", Duration::from_secs(30), || {
        let a = advice(n);
        (a["items"].as_array().is_some_and(|i| i.len() == 3)).then_some(a)
    });
    // Keep these items: later answers fail, which leaves the last advice standing.
    ep.set(Mode::Overloaded);
    let failed = count(n, "failed");
    wait_count(n, "failed", failed);
    let a_now = advice(n);
    assert_eq!(a_now["items"].as_array().unwrap().len(), 3, "{a_now}");
    let items = a_now["items"].as_array().unwrap().clone();
    let id_of = |kind: &str| {
        items
            .iter()
            .find(|i| i["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in {a}"))["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let text = stdout(&n.cli(&["advice"]));
    for part in [
        "raise_max",
        "adv/web",
        "calls/s doubled over the hour",
        "test-model",
    ] {
        assert!(text.contains(part), "{part} missing:\n{text}");
    }
    let (_, metrics) = n.http_get("/metrics").unwrap();
    for line in [
        "aether_advisor_requests_total{leader=\"n1\",result=\"invalid\"}",
        "aether_advisor_requests_total{leader=\"n1\",result=\"timeout\"}",
        "aether_advice_items{leader=\"n1\"} 3",
    ] {
        assert!(metrics.contains(line), "{line} missing");
    }

    // Take: a change of max is not a decision; an unknown id is named; a scale is proposed.
    let out = n.cli(&["advice", "take", &id_of("raise_max")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("blueprint change"),
        "{}",
        stderr(&out)
    );
    let out = n.cli(&["advice", "take", "a-999"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no advice item 'a-999'"),
        "{}",
        stderr(&out)
    );
    let scale = id_of("scale");
    let out = n.cli(&["advice", "take", &scale]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("proposed d-"), "{}", stdout(&out));
    let ds = json(&n.cli(&["decisions", "--output", "json"]));
    let d = ds
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["rule"] == "advisor")
        .unwrap_or_else(|| panic!("no advisor decision in {ds}"))
        .clone();
    assert_eq!(d["status"]["status"], "proposed", "{d}");
    assert_eq!(d["action"]["to"], 2, "{d}");
    assert!(
        d["layers"]
            .as_array()
            .unwrap()
            .contains(&Value::from("advisor:test-model")),
        "{d}"
    );
    assert!(
        d["reasoning"].to_string().contains("calls/s doubled"),
        "{d}"
    );
    // Nothing was scaled: the proposal waits for an approve.
    let b = json(&n.cli(&["blueprint", "show", "adv", "--output", "json"]));
    assert_eq!(b[0]["blueprint"]["slices"][0]["instances"], 1);
    // The same again: the open proposal stands in the way.
    let out = n.cli(&["advice", "take", &scale]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is open on adv/web"),
        "{}",
        stderr(&out)
    );
    // An operator's approve applies it, like any proposal.
    let out = n.cli(&["override", "approve", d["name"].as_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let b = json(&n.cli(&["blueprint", "show", "adv", "--output", "json"]));
    assert_eq!(b[0]["blueprint"]["slices"][0]["instances"], 2, "{b}");
    let events = stdout(&n.cli(&["events", "--limit", "50"]));
    assert!(
        events.contains("record decision: scale adv/web 1 → 2 (rule advisor)")
            && events.contains(&local_actor(&n.name)),
        "audited with the operator's name:\n{events}"
    );
    assert!(ep.requests() >= 6);
    let out = n.cli(&["decisions", "show", d["name"].as_str().unwrap()]);
    assert!(
        stdout(&out).contains(&format!("proposed by {}", local_actor(&n.name))),
        "{}",
        stdout(&out)
    );
}
