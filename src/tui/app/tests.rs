//! The console's state as plain data: keys in, effects and views out.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::*;
use crate::domain::{DecisionStatus, RolloutOp};
use crate::tui::fixture::{NOW, update};

fn app(readonly: bool) -> App {
    let mut a = App::new(Keymap::default(), readonly);
    a.apply(update(false), NOW);
    a.tick(NOW);
    a
}

fn press(a: &mut App, code: KeyCode) -> Vec<Effect> {
    a.key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn typed(a: &mut App, text: &str) -> Vec<Effect> {
    let mut out = Vec::new();
    for c in text.chars() {
        out.extend(press(a, KeyCode::Char(c)));
    }
    out
}

fn names(a: &App) -> Vec<String> {
    a.nodes().into_iter().map(|r| r.name).collect()
}

fn flash(a: &App) -> String {
    a.flash.as_ref().map(|f| f.text.clone()).unwrap_or_default()
}

#[test]
fn filter_narrows_inverts_and_clears() {
    let mut a = app(false);
    assert_eq!(names(&a), ["gpu-box", "n1", "n3"]);
    typed(&mut a, "/n3");
    assert_eq!(a.mode, Mode::Filter);
    assert_eq!(names(&a), ["n3"], "the filter applies while typing");
    press(&mut a, KeyCode::Enter);
    assert_eq!(a.mode, Mode::Normal);
    assert_eq!(names(&a), ["n3"], "enter keeps it");
    // Matching covers role, state and health too, case-insensitively.
    typed(&mut a, "/");
    press(&mut a, KeyCode::Backspace);
    press(&mut a, KeyCode::Backspace);
    typed(&mut a, "DRAINING");
    assert_eq!(names(&a), ["n3"]);
    press(&mut a, KeyCode::Backspace);
    for _ in 0..8 {
        press(&mut a, KeyCode::Backspace);
    }
    typed(&mut a, "!n");
    assert_eq!(names(&a), ["gpu-box"], "! inverts: rows without 'n'");
    press(&mut a, KeyCode::Enter);
    press(&mut a, KeyCode::Esc);
    assert_eq!(names(&a).len(), 3, "esc clears the filter");
    // Each list has its own filter.
    typed(&mut a, "4/vetoed");
    press(&mut a, KeyCode::Enter);
    assert_eq!(a.decisions().len(), 1);
    typed(&mut a, "1");
    assert_eq!(names(&a).len(), 3);
}

#[test]
fn navigation_and_views() {
    let mut a = app(false);
    assert_eq!(a.view, View::Overview);
    press(&mut a, KeyCode::Tab);
    assert_eq!(a.view, View::Nodes);
    a.key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT));
    a.key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT));
    assert_eq!(a.view, View::Events, "shift-tab wraps around");
    typed(&mut a, "1G");
    assert_eq!(a.selected(), 2);
    typed(&mut a, "jjj");
    assert_eq!(a.selected(), 2, "the selection stops at the last row");
    typed(&mut a, "k");
    assert_eq!(a.selected(), 1);
    // Enter on a node opens its charts, and the feed is asked for its history.
    let fx = press(&mut a, KeyCode::Enter);
    assert_eq!(a.view, View::Nodes);
    assert_eq!(
        fx,
        vec![Effect::Watch(Watch {
            node: Some("n1".into()),
            range_secs: 900,
            points: 60,
        })]
    );
    let fx = typed(&mut a, ">");
    assert!(
        matches!(&fx[..], [Effect::Watch(w)] if w.range_secs == 1800),
        "{fx:?}"
    );
    let fx = typed(&mut a, "3");
    assert_eq!(
        fx,
        vec![Effect::Watch(Watch::default())],
        "no history off the Nodes view"
    );
    typed(&mut a, "g");
    press(&mut a, KeyCode::Enter);
    assert!(a.detail, "enter opens the slice's instances");
    press(&mut a, KeyCode::Esc);
    assert!(!a.detail);
    typed(&mut a, "?");
    assert!(a.help);
    press(&mut a, KeyCode::Esc);
    assert!(!a.help);
    let fx = a.key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert_eq!(fx, vec![Effect::Quit]);
    let mut b = app(false);
    assert_eq!(typed(&mut b, "q"), vec![Effect::Quit]);
    assert!(b.quit);
}

#[test]
fn veto_and_approve_ask_first_and_show_the_action() {
    let mut a = app(false);
    typed(&mut a, "v");
    assert_eq!(a.mode, Mode::Normal);
    assert!(flash(&a).contains("Controller view (4)"), "{}", flash(&a));
    typed(&mut a, "4v");
    let Mode::Confirm(c) = &a.mode else {
        panic!("no confirm dialog: {:?}", a.mode)
    };
    assert_eq!(c.title, "Veto d-12?");
    assert_eq!(
        c.detail[0],
        "scale shop/web 2 → 4  (pending, applies in 12s)"
    );
    // Other keys do nothing in the dialog; n cancels.
    assert!(typed(&mut a, "jx").is_empty());
    assert!(matches!(a.mode, Mode::Confirm(_)));
    assert!(typed(&mut a, "n").is_empty());
    assert_eq!(a.mode, Mode::Normal);
    assert_eq!(flash(&a), "cancelled");
    typed(&mut a, "v");
    let fx = typed(&mut a, "y");
    assert_eq!(
        fx,
        vec![Effect::Write {
            cmd: Command::VetoDecision {
                id: 12,
                reason: None
            },
            what: "vetoed d-12".into(),
        }]
    );
    // A final decision cannot be vetoed: said, nothing asked.
    typed(&mut a, "j");
    assert_eq!(a.selected_decision().unwrap().id, 11);
    assert!(typed(&mut a, "v").is_empty());
    assert_eq!(a.mode, Mode::Normal);
    assert!(flash(&a).contains("d-11 is vetoed"), "{}", flash(&a));
    typed(&mut a, "k");
    typed(&mut a, "a");
    let fx = typed(&mut a, "y");
    assert_eq!(
        fx,
        vec![Effect::Write {
            cmd: Command::ApproveDecision { id: 12 },
            what: "approved d-12".into(),
        }]
    );
    // p pauses (the controller runs), with a dialog.
    typed(&mut a, "p");
    assert!(
        matches!(&a.mode, Mode::Confirm(c) if c.cmd == Command::PauseController { reason: None })
    );
    press(&mut a, KeyCode::Esc);
    let mut b = App::new(Keymap::default(), false);
    b.apply(update(true), NOW);
    typed(&mut b, "p");
    assert!(matches!(&b.mode, Mode::Confirm(c) if c.cmd == Command::ResumeController));
}

#[test]
fn rollout_keys_ask_then_send_the_act_for_the_selected_slice() {
    let mut a = app(false);
    let write = |op: RolloutOp, slice: &str, what: &str| Effect::Write {
        cmd: Command::RolloutOp {
            blueprint: "shop".into(),
            slice: slice.into(),
            op,
        },
        what: what.into(),
    };
    // Outside the Blueprints view the keys say where to go.
    assert!(typed(&mut a, "4P").is_empty());
    assert_eq!(a.mode, Mode::Normal);
    assert_eq!(
        flash(&a),
        "promote: select a slice in the Blueprints view (3) first"
    );
    // shop/web runs the canary r-3: promote and abort, each after a yes.
    typed(&mut a, "3P");
    let Mode::Confirm(c) = a.mode.clone() else {
        panic!("no confirm dialog: {:?}", a.mode)
    };
    assert_eq!(c.title, "Promote r-3?");
    assert_eq!(
        c.detail[0],
        "shop/web canary v6 → v7, running at analysis 2"
    );
    assert_eq!(
        typed(&mut a, "y"),
        [write(RolloutOp::Promote, "web", "promoted r-3")]
    );
    typed(&mut a, "X");
    assert!(matches!(&a.mode, Mode::Confirm(c) if c.title == "Abort r-3?"));
    assert_eq!(
        typed(&mut a, "y"),
        [write(
            RolloutOp::Abort,
            "web",
            "aborted r-3: going back to v6"
        )]
    );
    typed(&mut a, "U");
    assert!(matches!(&a.mode, Mode::Confirm(c) if c.title == "Undo r-3?"));
    assert!(typed(&mut a, "n").is_empty());
    // shop/worker's last rollout r-1 succeeded: nothing to promote or abort, an undo goes
    // back to v3.
    typed(&mut a, "j");
    assert!(typed(&mut a, "P").is_empty());
    assert!(
        flash(&a).starts_with("promote: shop/worker has no rollout in progress"),
        "{}",
        flash(&a)
    );
    assert!(typed(&mut a, "X").is_empty());
    assert!(flash(&a).starts_with("abort: shop/worker has no rollout in progress"));
    typed(&mut a, "U");
    let Mode::Confirm(c) = a.mode.clone() else {
        panic!("no confirm dialog: {:?}", a.mode)
    };
    assert_eq!(c.title, "Undo r-1 of shop/worker?");
    assert_eq!(
        c.detail[1],
        "v3's worker is stored again and rolled out to every copy at once"
    );
    assert_eq!(
        typed(&mut a, "y"),
        [write(
            RolloutOp::Undo { to: None },
            "worker",
            "undo of r-1: rolling shop/worker back to v3"
        )]
    );
    // A canary past its promotion is not promoted again.
    let mut b = app(false);
    let mut u = update(false);
    u.full = false;
    let mut r = u.rollouts.clone().unwrap();
    r[0].promotable = false;
    r[0].step = "replace".into();
    u.rollouts = Some(r);
    b.apply(u, NOW);
    assert!(typed(&mut b, "3P").is_empty());
    assert_eq!(
        flash(&b),
        "promote: r-3 is running at 'replace': only a canary before its promotion is promoted"
    );
    // A read-only console refuses them.
    let mut ro = app(true);
    assert!(typed(&mut ro, "3X").is_empty());
    assert_eq!(a.mode, Mode::Normal);
    assert!(flash(&ro).contains("read-only console (--readonly): abort is disabled"));
}

#[test]
fn command_line() {
    let mut a = app(false);
    typed(&mut a, ":veto d-12 load test ends soon");
    assert_eq!(a.input, "veto d-12 load test ends soon");
    press(&mut a, KeyCode::Enter);
    let Mode::Confirm(c) = a.mode.clone() else {
        panic!("no confirm dialog: {:?}", a.mode)
    };
    assert_eq!(
        c.cmd,
        Command::VetoDecision {
            id: 12,
            reason: Some("load test ends soon".into())
        }
    );
    assert!(c.detail.iter().any(|l| l == "reason: load test ends soon"));
    press(&mut a, KeyCode::Esc);
    typed(&mut a, ":drain n3");
    press(&mut a, KeyCode::Enter);
    assert!(
        matches!(&a.mode, Mode::Confirm(c) if c.cmd == Command::SetNodeState { id: 3, state: NodeState::Draining })
    );
    assert_eq!(typed(&mut a, "y").len(), 1);
    typed(&mut a, ":mode propose");
    press(&mut a, KeyCode::Enter);
    assert!(
        matches!(&a.mode, Mode::Confirm(c) if c.cmd == Command::SetControllerMode { mode: ControllerMode::Propose, grace_ms: None })
    );
    press(&mut a, KeyCode::Esc);
    // Bad commands are named, with the fix, and change nothing.
    for (line, says) in [
        (":mode yolo", "observe, propose, guarded or auto"),
        (
            ":drain n9",
            "no member named 'n9'; members: n1, gpu-box, n3",
        ),
        (":veto twelve", "expected d-<number>"),
        (":veto", "needs a decision id, e.g. ':veto d-12'"),
        (":approve d-999", "no decision d-999"),
        (":frobnicate", "unknown command ':frobnicate'"),
    ] {
        typed(&mut a, line);
        assert!(press(&mut a, KeyCode::Enter).is_empty(), "{line}");
        assert_eq!(a.mode, Mode::Normal, "{line}");
        assert!(flash(&a).contains(says), "{line}: {}", flash(&a));
    }
    // Esc and an emptied line leave the command line.
    typed(&mut a, ":ve");
    press(&mut a, KeyCode::Esc);
    assert_eq!(a.mode, Mode::Normal);
    typed(&mut a, ":v");
    press(&mut a, KeyCode::Backspace);
    press(&mut a, KeyCode::Backspace);
    assert_eq!(a.mode, Mode::Normal);
    typed(&mut a, ":events");
    press(&mut a, KeyCode::Enter);
    assert_eq!(a.view, View::Events);
    typed(&mut a, ":2");
    press(&mut a, KeyCode::Enter);
    assert_eq!(a.view, View::Nodes);
    typed(&mut a, ":q");
    assert_eq!(press(&mut a, KeyCode::Enter), vec![Effect::Quit]);
}

#[test]
fn readonly_refuses_every_change_and_keeps_navigation() {
    let mut a = app(true);
    typed(&mut a, "4");
    for keys in [
        "v",
        "a",
        "p",
        ":veto d-12\n",
        ":approve 12\n",
        ":pause\n",
        ":resume\n",
        ":mode auto\n",
        ":drain n3\n",
        ":undrain n3\n",
    ] {
        let mut fx = Vec::new();
        for c in keys.chars() {
            fx.extend(if c == '\n' {
                press(&mut a, KeyCode::Enter)
            } else {
                press(&mut a, KeyCode::Char(c))
            });
        }
        assert!(fx.is_empty(), "{keys}: {fx:?}");
        assert_eq!(a.mode, Mode::Normal, "{keys}");
        assert!(
            flash(&a).contains("read-only console (--readonly)"),
            "{keys}: {}",
            flash(&a)
        );
    }
    typed(&mut a, "j");
    assert_eq!(a.selected(), 1, "navigation still works");
    press(&mut a, KeyCode::Enter);
    assert!(a.detail);
}

#[test]
fn frames_merge_and_a_full_frame_replaces() {
    let mut a = app(false);
    let mut d = a.data.decisions[0].clone();
    d.status = DecisionStatus::Vetoed {
        at: NOW,
        by: "op".into(),
        reason: None,
        reverted: None,
    };
    let mut newer = d.clone();
    newer.id = 13;
    let event = AuditRecord {
        seq: 43,
        at: NOW,
        actor: "op".into(),
        what: "veto d-12".into(),
        outcome: "ok".into(),
    };
    a.apply(
        LiveUpdate {
            at: NOW + 1_000,
            decisions: vec![newer, d],
            events: vec![event],
            ..LiveUpdate::default()
        },
        NOW + 1_000,
    );
    let ids: Vec<u64> = a.data.decisions.iter().map(|d| d.id).collect();
    assert_eq!(ids, [13, 12, 11, 10], "newest first, no duplicate");
    assert_eq!(a.data.decisions[1].status.word(), "vetoed");
    assert_eq!(a.events()[0].seq, 43, "events newest first");
    assert_eq!(a.data.nodes.len(), 3, "parts not in the frame are kept");
    assert_eq!(a.data.sparks["n1"].cpu.len(), 60);
    a.lost("gone".into());
    assert!(matches!(a.link, LinkState::Reconnecting { .. }));
    a.apply(update(false), NOW + 2_000);
    assert_eq!(a.link, LinkState::Live);
    assert_eq!(a.data.decisions.len(), 3, "a full frame replaces");
    assert_eq!(a.data.sparks["n1"].cpu.len(), 60);
}

#[test]
fn scale_asks_then_sends_the_same_write_as_the_cli() {
    let mut a = app(false);
    typed(&mut a, ":scale shop/web 4");
    assert!(
        press(&mut a, KeyCode::Enter).is_empty(),
        "nothing before the yes"
    );
    let Mode::Confirm(c) = a.mode.clone() else {
        panic!("no confirm dialog: {:?} {}", a.mode, flash(&a))
    };
    assert_eq!(c.title, "Scale shop/web to 4?");
    assert!(c.detail[0].contains("2 → 4 (range 1..8)"), "{:?}", c.detail);
    let out = typed(&mut a, "y");
    assert_eq!(
        out,
        [Effect::Write {
            cmd: Command::ScaleSlice {
                blueprint: "shop".into(),
                slice: "web".into(),
                instances: 4,
            },
            what: "scaled shop/web to 4".into(),
        }]
    );
    // `:scale N` scales the slice selected in the Blueprints view.
    press(&mut a, KeyCode::Char('3'));
    press(&mut a, KeyCode::Char('j'));
    typed(&mut a, ":scale 3");
    press(&mut a, KeyCode::Enter);
    assert!(
        matches!(&a.mode, Mode::Confirm(c) if c.cmd == Command::ScaleSlice { blueprint: "shop".into(), slice: "worker".into(), instances: 3 }),
        "{:?} {}",
        a.mode,
        flash(&a)
    );
    press(&mut a, KeyCode::Esc);
    // Bad input is named, with the fix, and changes nothing.
    press(&mut a, KeyCode::Char('1'));
    for (line, says) in [
        (
            ":scale 3",
            "needs a slice and a count, e.g. ':scale shop/web 4'",
        ),
        (":scale shop/web", "needs a slice and a count"),
        (":scale shop/web many", "'many' is not a count of instances"),
        (
            ":scale shop/db 2",
            "no slice 'shop/db' (BLUEPRINT/SLICE); slices: shop/web, shop/worker",
        ),
        (":scale shop/web 9", "shop/web takes 1..8 instances"),
    ] {
        typed(&mut a, line);
        assert!(press(&mut a, KeyCode::Enter).is_empty(), "{line}");
        assert_eq!(a.mode, Mode::Normal, "{line}");
        assert!(flash(&a).contains(says), "{line}: {}", flash(&a));
    }
    // Read-only: refused before anything else.
    let mut r = app(true);
    typed(&mut r, ":scale shop/web 4");
    press(&mut r, KeyCode::Enter);
    assert_eq!(r.mode, Mode::Normal);
    assert!(flash(&r).contains("read-only"), "{}", flash(&r));
}

#[test]
fn a_closed_decision_says_who_closed_it() {
    let a = app(false);
    let mut d = a.data.decisions[0].clone();
    let applied = |by: &str| DecisionStatus::Applied {
        at: NOW,
        by: by.into(),
    };
    d.status = applied("uid:1000@n1");
    assert_eq!(a.status_text(&d), "applied by uid:1000@n1");
    d.status = applied("controller");
    d.mode = ControllerMode::Guarded;
    assert_eq!(a.status_text(&d), "applied at grace");
    d.mode = ControllerMode::Auto;
    assert_eq!(a.status_text(&d), "applied (auto)");
    // As the leader writes it.
    d.status = applied("controller@n1");
    assert_eq!(a.status_text(&d), "applied (auto)");
    d.mode = ControllerMode::Guarded;
    assert_eq!(a.status_text(&d), "applied at grace");
    d.status = DecisionStatus::Vetoed {
        at: NOW,
        by: "alice@ops".into(),
        reason: None,
        reverted: None,
    };
    assert_eq!(a.status_text(&d), "vetoed by alice@ops");
}

/// `t` fills in `:take` with the first advice item; Enter asks the node to propose it.
#[test]
fn t_takes_an_advice_item() {
    let mut a = app(false);
    press(&mut a, KeyCode::Char('t'));
    assert!(flash(&a).contains("no advice items"), "{}", flash(&a));
    let mut u = update(false);
    u.full = false;
    u.advice = Some(Box::new(crate::view::fixture::advice()));
    a.apply(u, NOW);
    press(&mut a, KeyCode::Char('t'));
    assert_eq!(a.mode, Mode::Command);
    assert_eq!(a.input, "take a-4");
    press(&mut a, KeyCode::Backspace);
    typed(&mut a, "5");
    assert_eq!(
        press(&mut a, KeyCode::Enter),
        vec![Effect::Take { id: "a-5".into() }]
    );
    let mut ro = app(true);
    typed(&mut ro, ":take a-5");
    assert!(press(&mut ro, KeyCode::Enter).is_empty());
    assert!(flash(&ro).contains("read-only"), "{}", flash(&ro));
    // An empty view from the node: the advice is gone.
    let mut u = update(false);
    u.full = false;
    u.advice = Some(Box::default());
    a.apply(u, NOW);
    assert_eq!(a.data.advice, None);
}
