//! Snapshot tests of every view at 80×24 and 160×48 from the fixed cluster in `fixture`.
//! `cargo insta review` (or INSTA_UPDATE=always) accepts intended changes.

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{App, View};
use super::fixture::{NOW, update};
use super::keymap::Keymap;
use super::views::{Theme, draw};

fn app() -> App {
    let mut app = App::new(Keymap::default(), false);
    app.apply(update(false), NOW);
    app.tick(NOW);
    app
}

fn render(app: &mut App, w: u16, h: u16) -> String {
    (app.width, app.height) = (w, h);
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| draw(f, app, &Theme { color: true })).unwrap();
    let colour = t.backend().to_string();
    // NO_COLOR changes styles only, never the text.
    t.draw(|f| draw(f, app, &Theme { color: false })).unwrap();
    assert_eq!(t.backend().to_string(), colour);
    colour
}

fn key(app: &mut App, c: char) {
    app.key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
}

#[test]
fn every_view_at_80x24_and_160x48() {
    for (i, view) in View::ALL.iter().enumerate() {
        let mut a = app();
        key(&mut a, char::from(b'1' + i as u8));
        assert_eq!(a.view, *view);
        for (w, h) in [(80, 24), (160, 48)] {
            let name = format!("{}_{w}x{h}", view.title().to_lowercase());
            insta::assert_snapshot!(name, render(&mut a, w, h));
        }
    }
}

#[test]
fn details_help_and_dialogs() {
    let mut a = app();
    key(&mut a, '4');
    a.key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    insta::assert_snapshot!("controller_details_80x24", render(&mut a, 80, 24));
    a.key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
    key(&mut a, 'v');
    insta::assert_snapshot!("veto_confirm_80x24", render(&mut a, 80, 24));
    let mut a = app();
    key(&mut a, '3');
    a.key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    insta::assert_snapshot!("slice_instances_80x24", render(&mut a, 80, 24));
    let mut a = app();
    key(&mut a, '2');
    a.key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    insta::assert_snapshot!("node_facts_80x24", render(&mut a, 80, 24));
    let mut a = app();
    key(&mut a, '?');
    insta::assert_snapshot!("help_160x48", render(&mut a, 160, 48));
    // P on the selected slice: the same dialog as a veto, for the rollout.
    let mut a = app();
    key(&mut a, '3');
    a.key(KeyEvent::new(KeyCode::Char('P'), KeyModifiers::SHIFT));
    insta::assert_snapshot!("promote_confirm_80x24", render(&mut a, 80, 24));
}

#[test]
fn a_rollout_line_fits_80_columns_and_says_more_when_wider() {
    // A paused canary with a reason: at 80 columns the short forms, cut with '…'.
    let mut a = app();
    let mut u = update(false);
    u.full = false;
    let mut r = u.rollouts.clone().unwrap();
    r[0].state = "paused".into();
    r[0].reason = Some("paused by uid:1000@n1: reading the v7 logs first".into());
    u.rollouts = Some(r);
    a.apply(u, NOW);
    key(&mut a, '3');
    let narrow = render(&mut a, 80, 24);
    let line = narrow
        .lines()
        .find(|l| l.contains("r-3 shop/web"))
        .unwrap_or_else(|| panic!("no rollout line:\n{narrow}"));
    assert!(
        line.contains("paused at analysis 2 v6→v7 v7 10%") && line.contains("…"),
        "{line}"
    );
    let wide = render(&mut a, 160, 48);
    let line = wide.lines().find(|l| l.contains("r-3 shop/web")).unwrap();
    assert!(
        line.contains("canary v6 → v7 paused at analysis 2 · v7 10% / v6 90%")
            && line.contains("reading the v7 logs first"),
        "{line}"
    );
}

#[test]
fn readonly_paused_and_reconnecting_are_said() {
    let mut a = App::new(Keymap::default(), true);
    a.apply(update(true), NOW);
    a.tick(NOW);
    a.lost("cannot reach the node at '/var/lib/aether/aether.sock': connection refused".into());
    a.tick(NOW + 7_000);
    insta::assert_snapshot!("readonly_paused_reconnecting_80x24", render(&mut a, 80, 24));
}

#[test]
fn before_the_first_frame() {
    let mut a = App::new(Keymap::default(), false);
    for v in ['1', '2', '3', '4', '5'] {
        key(&mut a, v);
        let text = render(&mut a, 80, 24);
        assert!(text.contains("connecting…"), "{text}");
    }
    insta::assert_snapshot!("empty_overview_80x24", {
        key(&mut a, '1');
        render(&mut a, 80, 24)
    });
}

#[test]
fn scrolling_stops_at_the_last_line() {
    // Help at 80×24 is longer than the screen: G shows its last line at the bottom, and one
    // k moves up by one line (not from somewhere past the end).
    let mut a = app();
    key(&mut a, '?');
    let top = render(&mut a, 80, 24);
    let last = "In a dialog: y confirms";
    assert!(
        !top.contains(last),
        "help fits 80×24; the test needs it longer"
    );
    key(&mut a, 'G');
    let bottom = render(&mut a, 80, 24);
    let rows: Vec<&str> = bottom.lines().collect();
    let at = rows.iter().position(|r| r.contains(last));
    assert!(at.is_some(), "G shows the last line:\n{bottom}");
    let max = a.scroll;
    assert!(max > 0 && max < u16::MAX / 2, "scroll {max}");
    key(&mut a, 'j');
    assert_eq!(a.scroll, max, "j at the end stays at the end");
    key(&mut a, 'k');
    assert_eq!(a.scroll, max - 1);
    let up = render(&mut a, 80, 24);
    let up: Vec<&str> = up.lines().collect();
    let at = at.unwrap();
    assert!(!up[at].contains(last), "the last line went below the box");
    assert_eq!(up[at], rows[at - 1], "the text moved down by one line");
}

/// A slice capped at its max shows on the overview's controller line.
#[test]
fn the_overview_says_a_capped_slice() {
    let mut u = update(false);
    if let Some(st) = u.status.as_mut()
        && let Some(c) = st.controller.as_mut()
    {
        c.capped = vec![crate::raft::status::CappedView {
            target: "hot/burn".into(),
            bound: "max".into(),
            limit: 3,
            wanted: Some(27),
            since: NOW - 3_600_000,
            said: NOW - 120_000,
        }];
    }
    let mut a = App::new(Keymap::default(), false);
    a.apply(u, NOW);
    a.tick(NOW);
    let text = render(&mut a, 160, 48);
    let line = text
        .lines()
        .find(|l| l.contains("controller"))
        .expect("a controller line");
    assert!(
        line.contains("capped hot/burn at max=3 (wants 27)"),
        "{line}"
    );
}

/// On a follower the console shows the leader's model (reviewing) and its own beside it.
#[test]
fn a_follower_shows_the_leaders_model() {
    let mut u = update(false);
    if let Some(st) = u.status.as_mut() {
        st.node.id = 2;
        st.node.name = "gpu-box".into();
        st.node.role = "follower".into();
        if let Some(c) = st.controller.as_mut() {
            c.leader_reviewer = Some(crate::raft::status::ReviewerView {
                node: "n1".into(),
                reviewer: "model smollm2-135m (f16, 1 thread)".into(),
                state: "ready".into(),
                reviews: 9,
                timeouts: 1,
                last_latency_ms: Some(2_140),
            });
        }
    }
    if let Some(m) = u.model.as_mut() {
        m.state = crate::controller::model::ModelState::Idle;
    }
    let mut a = App::new(Keymap::default(), false);
    a.apply(u, NOW);
    a.tick(NOW);
    insta::assert_snapshot!("follower_overview_160x48", render(&mut a, 160, 48));
}
