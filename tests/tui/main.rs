//! The console in a real terminal: `aether tui` in tmux at 80×24 against 3 real nodes on
//! 127.0.0.1. The overview names the nodes; help opens; every view shows its data; a pending
//! decision is vetoed with `v` and a confirm, and `aether decisions show` then says vetoed; the
//! node behind the console is killed -9 (the console says reconnecting… and keeps its data) and
//! restarted (it resumes by itself); `q` quits with exit status 0 and the terminal restored. A
//! `--readonly` console refuses `v`. The same console is then run through SSH when this
//! machine can run an sshd on 127.0.0.1 (`sshd.rs`).

#[path = "../cluster/harness.rs"]
mod harness;
mod sshd;
mod tmux;

use std::time::Duration;

use harness::*;
use serde_json::Value;
use tmux::Tmux;

/// One instance that burns a tenth of a core against 0.02 reserved.
fn blueprint() -> String {
    let burn = "import time\nwhile True:\n    t = time.time()\n    while time.time() - t < 0.01: pass\n    time.sleep(0.09)";
    format!(
        "name = \"ctl\"\n\n[[slices]]\nname = \"web\"\ncommand = [\"python3\", \"-c\", {burn:?}]\ninstances = 1\nmin = 1\nmax = 2\nresources = {{ cpu = 0.02, memory = \"16MiB\" }}\nstop_timeout = \"2s\"\n"
    )
}

fn json(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The id (`d-N`) of a pending decision on ctl/web.
fn pending(n: &Node) -> Option<String> {
    json(&n.cli(&["decisions", "--output", "json"]))
        .as_array()?
        .iter()
        .find(|d| d["status"]["status"] == "pending" && d["action"]["slice"] == "web")
        .map(|d| format!("d-{}", d["id"]))
}

fn tui_command(n: &Node, extra: &[&str]) -> Vec<String> {
    let mut v = vec![
        BIN.to_string(),
        "--data-dir".into(),
        n.dir.display().to_string(),
        "tui".into(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

#[test]
fn console_in_tmux_overview_help_views_veto_reconnect_quit() {
    if let Err(why) = tmux::available() {
        panic!("this test needs tmux ({why}); .ci/run installs it");
    }
    let run = format!("{}-tui", std::process::id());
    let _reaper = Reaper(run.clone());
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, SCALE_UP_RULES).unwrap();
    let env = [
        ("AETHER_CONTROLLER_RULES", rules.to_str().unwrap()),
        ("AETHER_CONTROLLER_DECISIONS_PER_MINUTE", "60"),
        ("TEST_RUN", run.as_str()),
        // The instances burn more CPU than they reserve, which is what the rules see: no CPU
        // quota (it would hold them to their reservation).
        ("AETHER_DEPLOY_LIMITS", "false"),
    ];
    let mut c = TestCluster::three_with(&env);
    // A long grace window: the decision stays pending while the console vetoes it.
    let out = c.nodes[0].cli(&["override", "mode", "guarded", "--grace", "10m"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let file = dir.path().join("ctl.toml");
    std::fs::write(&file, blueprint()).unwrap();
    let out = c.nodes[0].cli(&["blueprint", "apply", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The console of n2 (any node serves it; the veto is forwarded to the leader).
    let t = Tmux::start(dir.path(), "tui", &tui_command(&c.nodes[1], &[]), 80, 24);
    let screen = t.wait_screen("the overview names the three nodes, live", |s| {
        ["n1", "n2", "n3", "● live", "1 Overview", "NODE"]
            .iter()
            .all(|w| s.contains(w))
    });
    assert!(screen.contains("3/3 ready"), "{screen}");

    t.keys(&["?"]);
    t.wait_screen("help lists every key", |s| {
        s.contains("Keys") && s.contains("veto the selected decision")
    });
    t.keys(&["Escape", "2"]);
    t.wait_screen("the Nodes view charts a node", |s| {
        s.contains("last 15m") && s.contains("cpu")
    });
    t.keys(&["3"]);
    t.wait_screen("the Blueprints view lists the slice", |s| {
        s.contains("ctl/web") && s.contains("PLACEMENT")
    });
    t.keys(&["5"]);
    t.wait_screen("the Events view shows the audit log", |s| {
        s.contains("WHO") && s.contains("blueprint")
    });

    let id = wait_for(
        "a pending scale-up of ctl/web",
        Duration::from_secs(60),
        || pending(&c.nodes[0]),
    );
    t.keys(&["4"]);
    t.wait_screen("the Controller view shows the pending decision", |s| {
        s.contains(&id) && s.contains("pending, applies in")
    });
    // A remote console with a viewer's certificate, on another node, sees the same decision
    // and is refused its veto, naming the role that would be needed.
    let viewer = dir.path().join("vic");
    let out = c.nodes[0].cli(&[
        "operator",
        "cert",
        "create",
        "vic",
        "--role",
        "viewer",
        "-o",
        viewer.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let remote: Vec<String> = [
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
    let r = Tmux::start(dir.path(), "remote", &remote, 120, 30);
    r.wait_screen("the remote console is live", |s| s.contains("● live"));
    r.keys(&["4", "/"]);
    r.type_text(&id);
    r.keys(&["Enter", "v"]);
    r.wait_screen("the remote viewer's veto dialog", |s| {
        s.contains(&format!("Veto {id}?"))
    });
    r.keys(&["y"]);
    r.wait_screen("the veto is refused, naming the role", |s| {
        s.contains("needs the 'operator' role")
    });
    r.keys(&["q"]);
    assert_eq!(r.wait_exit(), 0, "q quits the remote console with status 0");
    drop(r);
    assert!(
        pending(&c.nodes[0]).as_deref() == Some(id.as_str()),
        "a refused veto changes nothing: {id} is still pending"
    );

    // Select it by filtering, then veto through the dialog.
    t.keys(&["/"]);
    t.type_text(&id);
    t.keys(&["Enter", "v"]);
    let dialog = t.wait_screen("the confirm dialog shows the exact action", |s| {
        s.contains(&format!("Veto {id}?"))
    });
    assert!(dialog.contains("scale ctl/web 1 → 2"), "{dialog}");
    t.keys(&["y"]);
    t.wait_screen("the console shows the veto", |s| {
        s.contains(&format!("vetoed {id}")) || s.contains("vetoed  ")
    });
    let shown = stdout(&c.nodes[0].cli(&["decisions", "show", &id]));
    assert!(
        shown.contains(&format!(
            "status:   vetoed by {}",
            local_actor(&c.nodes[1].name)
        )),
        "the CLI agrees:\n{shown}"
    );

    // The node behind the console goes away: reconnecting…, the data stays; it comes back.
    c.nodes[1].kill9();
    let lost = t.wait_screen("reconnecting… with the data kept", |s| {
        s.contains("reconnecting…")
    });
    assert!(lost.contains(&id), "the last data stays visible:\n{lost}");
    c.nodes[1].start(None);
    t.wait_screen("live again by itself", |s| {
        s.contains("● live") && s.contains(&id)
    });

    t.keys(&["q"]);
    assert_eq!(t.wait_exit(), 0, "q quits with status 0");
    let after = t.capture();
    assert!(
        !after.contains("1 Overview"),
        "the alternate screen is gone after quit:\n{after}"
    );
    drop(t);

    // Read-only: the status bar says so and `v` changes nothing.
    let t = Tmux::start(
        dir.path(),
        "ro",
        &tui_command(&c.nodes[0], &["--readonly"]),
        80,
        24,
    );
    t.wait_screen("the read-only console is live", |s| {
        s.contains("READ-ONLY") && s.contains("● live")
    });
    t.keys(&["4", "v"]);
    t.wait_screen("v is refused", |s| {
        s.contains("read-only console (--readonly)")
    });
    t.keys(&["C-c"]);
    assert_eq!(t.wait_exit(), 0, "ctrl-c quits with status 0");
    drop(t);

    // The same console through SSH, when an sshd can run here.
    match sshd::Sshd::start(&dir.path().join("sshd")) {
        Err(why) => eprintln!("SKIPPED the SSH part: {why}"),
        Ok(ssh) => {
            let remote = tui_command(&c.nodes[2], &[]).join(" ");
            let t = Tmux::start(dir.path(), "ssh", &ssh.ssh_command(&remote), 80, 24);
            t.wait_screen("the console over ssh names the nodes", |s| {
                ["n1", "n2", "n3", "● live"].iter().all(|w| s.contains(w))
            });
            t.keys(&["4"]);
            t.wait_screen("the vetoed decision over ssh", |s| {
                s.contains(&id) && s.contains("vetoed")
            });
            t.keys(&["q"]);
            assert_eq!(t.wait_exit(), 0, "q over ssh: status 0");
        }
    }
}

/// `aether --data-dir DIR tui ARGS…` with stdin not a terminal: its exit code and stderr.
fn tui_refused(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .arg("tui")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (out.status.code(), stderr(&out))
}

#[test]
fn console_without_a_terminal_or_with_bad_keys_says_why() {
    let dir = tempfile::tempdir().unwrap();
    // Not a terminal: a clear error, exit 1, nothing left behind.
    let (code, err) = tui_refused(dir.path(), &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot set up the terminal"), "{err}");
    // Bad key overrides: named, exit 2, before the terminal is looked at.
    let cfg = dir.path().join("aether.toml");
    let cfg_arg = cfg.to_str().unwrap();
    for (keys, says) in [
        (
            "veto = \"q\"",
            "tui.keys.veto: key 'q' is already bound to 'quit'",
        ),
        ("vetoo = \"x\"", "unknown action 'vetoo'"),
        ("veto = \"ctrl-alt-x\"", "'ctrl-alt-x' is not a key"),
    ] {
        std::fs::write(&cfg, format!("[tui.keys]\n{keys}\n")).unwrap();
        let (code, err) = tui_refused(dir.path(), &["--config", cfg_arg]);
        assert_eq!(code, Some(2), "{keys}: {err}");
        assert!(err.contains(says), "{keys}: {err}");
    }
}

/// The feed behind the console: one full frame, then frames with only what changed; a watch
/// moves the history it sends.
#[test]
fn live_feed_sends_everything_once_then_changes() {
    use aether::admin::client::Client;
    use aether::admin::protocol::Watch;
    let c = TestCluster::single("n1", &[]);
    let sock = c.nodes[0].dir.join("aether.sock");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut rd, mut wr) = Client::connect(&sock)
            .await
            .unwrap()
            .subscribe(Watch::default())
            .await
            .unwrap();
        let first = rd.next().await.unwrap();
        assert!(first.full, "the first frame is full");
        let status = first.status.expect("status in the first frame");
        assert_eq!(status.node.name, "n1");
        assert!(first.blueprints.is_some() && first.model.is_some());
        assert!(
            first.events.iter().any(|e| e.what.contains("init cluster")),
            "{:?}",
            first.events
        );
        let last_seq = first.events.last().unwrap().seq;
        // A write: the next frames carry its audit record, and no blueprints (unchanged).
        assert!(c.nodes[0].cli(&["kv", "put", "feed", "x"]).status.success());
        let mut seen = false;
        for _ in 0..20 {
            let u = tokio::time::timeout(Duration::from_secs(10), rd.next())
                .await
                .expect("a frame within 10 s")
                .unwrap();
            assert!(!u.full);
            assert!(
                u.blueprints.is_none(),
                "unchanged blueprints are not sent again"
            );
            assert!(u.events.iter().all(|e| e.seq > last_seq), "no event twice");
            if u.events.iter().any(|e| e.what.contains("feed")) {
                seen = true;
                break;
            }
        }
        assert!(seen, "the kv put's audit record arrived");
        // Watch n1: its history arrives, at most `points` per series.
        wr.watch(Watch {
            node: Some("n1".into()),
            range_secs: 900,
            points: 50,
        })
        .await
        .unwrap();
        let h = loop {
            let u = tokio::time::timeout(Duration::from_secs(10), rd.next())
                .await
                .expect("a frame within 10 s")
                .unwrap();
            if let Some(h) = u.history {
                break h;
            }
        };
        assert_eq!(h.node, "n1");
        assert_eq!(h.range_secs, 900);
        let cpu = &h
            .series
            .iter()
            .find(|(n, _)| n == "cpu")
            .expect("cpu history")
            .1;
        assert!(!cpu.is_empty() && cpu.len() <= 50, "{} points", cpu.len());
    });
}
