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
        for (w, h) in [(80, 24), (120, 40), (160, 48)] {
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

/// Right after the leader died, the console on a survivor says the leader is unreachable
/// instead of showing it as the healthy leader.
#[test]
fn an_unreachable_leader_is_said() {
    let mut u = update(false);
    let s = u.status.as_mut().unwrap();
    let id = s.leader.as_ref().unwrap().id;
    (s.node.id, s.node.name, s.node.role) = (2, "gpu-box".into(), "follower".into());
    s.members_seen_by = "gpu-box".into();
    s.mark_unreachable(id);
    let mut a = App::new(Keymap::default(), false);
    a.apply(u, NOW);
    a.tick(NOW);
    let text = render(&mut a, 80, 24);
    assert!(text.contains("UNREACHABLE"), "{text}");
    insta::assert_snapshot!("leader_unreachable_80x24", text);
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

#[test]
fn the_overview_fills_the_screen_with_slices_open_decisions_and_events() {
    // 30 events: the newest fill what the nodes, slices and decisions leave, at both sizes.
    let mut a = app();
    let mut u = update(false);
    u.full = false;
    u.events = (0..30)
        .map(|i| crate::domain::AuditRecord {
            seq: 100 + i,
            at: NOW - 1_000 * (30 - i),
            actor: "controller".into(),
            what: format!("event number {i}"),
            outcome: if i == 29 {
                "refused: no quorum".into()
            } else {
                "ok".into()
            },
        })
        .collect();
    a.apply(u, NOW);
    for (w, h) in [(80, 24), (120, 40)] {
        let text = render(&mut a, w, h);
        for want in [
            "shop/web       2/2",
            "shop/worker    1/2",
            "42.7",
            "r-3 analysis 2",
            "d-12     pending, applies in 12s",
            "scale shop/web 2 → 4",
            "vetoed by uid:1000@n1",
            "event number 29 → refused: no quorum",
        ] {
            assert!(text.contains(want), "{w}×{h}: no '{want}':\n{text}");
        }
        let rows: Vec<&str> = text.lines().collect();
        // The row above the status bar is an event: nothing left blank.
        assert!(
            rows[rows.len() - 2].contains("event number"),
            "{w}×{h}:\n{text}"
        );
        insta::assert_snapshot!(format!("overview_busy_{w}x{h}"), text);
    }
}

#[test]
fn a_down_node_shows_its_last_values_dimmed_with_their_age() {
    let mut a = app();
    let mut u = update(false);
    u.full = false;
    let mut s = u.status.clone().unwrap();
    for m in &mut s.members {
        if m.name == "n3" {
            m.health = crate::domain::Health::Down;
        }
    }
    u.status = Some(s);
    let mut metrics = u.metrics.clone().unwrap();
    for n in &mut metrics.nodes {
        if n.name == "n3" {
            n.health = crate::domain::Health::Down;
            n.sample_age_ms = 12_000;
            n.spark.clear();
        }
    }
    u.metrics = Some(metrics);
    a.apply(u, NOW);
    for (w, h) in [(80, 24), (120, 40)] {
        (a.width, a.height) = (w, h);
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| draw(f, &a, &Theme { color: true })).unwrap();
        let text = t.backend().to_string();
        let (y, row) = text
            .lines()
            .enumerate()
            .find(|(_, l)| l.contains("n3 !"))
            .unwrap_or_else(|| panic!("no n3 row:\n{text}"));
        assert!(row.contains("95% down 12s"), "{w}×{h}: {row}");
        // Its last CPU is dimmed, not red: the cell under "95%".
        // (each row is quoted in the text)
        let x = row.chars().position(|c| c == '9').unwrap() - 1;
        let cell = &t.backend().buffer()[(x as u16, y as u16)];
        assert_eq!(cell.symbol(), "9", "{row}");
        assert_eq!(cell.fg, ratatui::style::Color::DarkGray, "{w}×{h}: {row}");
        // A live node keeps its colour.
        assert!(!text.contains("42% down"), "{text}");
    }
    insta::assert_snapshot!("overview_node_down_80x24", render(&mut a, 80, 24));
}

#[test]
fn node_charts_share_a_time_axis_and_say_their_units_and_the_gpu_line_is_whole() {
    let mut a = app();
    key(&mut a, '2');
    for (w, h) in [(80, 24), (120, 40)] {
        let text = render(&mut a, w, h);
        let axis = text
            .lines()
            .find(|l| l.contains("└-15m"))
            .unwrap_or_else(|| panic!("{w}×{h}: no time axis:\n{text}"));
        assert!(axis.contains("now│"), "{axis}");
        // The net chart's title says kB/s; its axis says the same unit.
        assert!(text.contains("1.8 MB/s│"), "{w}×{h}:\n{text}");
        assert!(text.contains("    100%│"), "{w}×{h}:\n{text}");
    }
    // A node without GPUs: the reason NVML is unavailable, however long, is shown whole.
    let mut u = update(false);
    u.full = false;
    let mut hist = u.history.clone().unwrap();
    hist.node = "n1".into();
    hist.series.retain(|(n, _)| !n.starts_with("gpu"));
    u.history = Some(hist);
    let mut metrics = u.metrics.clone().unwrap();
    let reason = "gpu: unavailable (nvidia-smi not found in PATH: install the NVIDIA driver \
                  utilities or set [metrics] gpu = false to stop looking for them)";
    for n in &mut metrics.nodes {
        if n.name == "n1" {
            n.gpu = reason.into();
        }
    }
    u.metrics = Some(metrics);
    a.apply(u, NOW);
    key(&mut a, 'j');
    assert_eq!(a.selected_node().as_deref(), Some("n1"));
    let text = render(&mut a, 80, 24);
    assert!(
        text.contains("looking for them)"),
        "the GPU line is cut:\n{text}"
    );
    insta::assert_snapshot!("nodes_no_gpu_80x24", text);
}

#[test]
fn the_help_explains_the_marks() {
    let mut a = app();
    key(&mut a, '?');
    let text = render(&mut a, 160, 80);
    for want in ["! beside a node", "an anomaly", "down 12s, stale 12s"] {
        assert!(text.contains(want), "no '{want}' in the help:\n{text}");
    }
}

#[test]
fn the_controller_list_uses_its_width_and_the_review_is_whole_at_120_columns() {
    // Many decisions (the list takes half the height) and a long review.
    let mut a = app();
    let mut u = update(false);
    u.full = false;
    let mut d = u.decisions[0].clone();
    let long = "CPU has stayed high for half a minute and the forecast rises; two more web \
                instances fit on gpu-box and n1 without moving anything, the error rate is flat \
                at 0.5%, the last rollout of shop/web finished an hour ago and nothing in the \
                logs of the last five minutes points at a fault that more copies would hide; \
                approve, and look again if p99 stays above 80ms after the scale-up settles. The \
                operator note from this morning asks for no scale-in before the sale ends at \
                noon, which this scale-up respects; the forecast's error over the last hour was \
                small, so its rise is worth acting on now rather than after the grace. \
                end-of-review";
    d.review.as_mut().unwrap().reason = long.into();
    let mut more = Vec::new();
    for id in 13..=24 {
        let mut x = u.decisions[2].clone();
        x.id = id;
        more.push(x);
    }
    d.id = 25;
    more.push(d);
    u.decisions = more;
    a.apply(u, NOW);
    key(&mut a, '4');
    let text = render(&mut a, 120, 40);
    assert!(
        text.contains("CPU has stayed") && text.contains("end-of-review"),
        "the review is cut:\n{text}"
    );
    let head = text.lines().find(|l| l.contains("ID ")).unwrap();
    let row = text.lines().find(|l| l.contains("d-24")).unwrap();
    // Every column's text is whole, and the room left goes to the first reason.
    assert!(row.contains("applied at grace"), "{row}");
    assert!(row.contains("scale shop/worker 1 → 2"), "{row}");
    assert!(
        head.contains("WHY") && row.contains("cpu per instance 0.91"),
        "{head}\n{row}"
    );
    insta::assert_snapshot!("controller_many_120x40", text);
    let narrow = render(&mut a, 80, 24);
    let row = narrow.lines().find(|l| l.contains("d-24")).unwrap();
    assert!(row.contains("scale shop/worker 1 → 2"), "{row}");
    insta::assert_snapshot!("controller_many_80x24", narrow);
}

#[test]
fn an_events_outcome_is_whole() {
    let mut a = app();
    let mut u = update(false);
    u.full = false;
    u.events = vec![crate::domain::AuditRecord {
        seq: 50,
        at: NOW - 1_000,
        actor: "uid:1000@n1".into(),
        what: "scale shop/web 4".into(),
        outcome: "refused: shop/web allows at most 8 (max)".into(),
    }];
    a.apply(u, NOW);
    key(&mut a, '5');
    for (w, h) in [(80, 24), (120, 40)] {
        let text = render(&mut a, w, h);
        let rows: Vec<&str> = text.lines().collect();
        let at = rows
            .iter()
            .position(|l| l.contains("scale shop/web 4"))
            .unwrap();
        // Whole, on one line or wrapped onto the next.
        let both = format!("{} {}", rows[at], rows[at + 1]);
        let joined = both.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            joined.contains("refused: shop/web allows") && joined.contains("at most 8 (max)"),
            "{w}×{h}:\n{text}"
        );
        // A long text is cut with … rather than mid-word without a sign.
        let row = text
            .lines()
            .find(|l| l.contains("node n3 suspect"))
            .unwrap();
        assert!(row.contains("3.2 s") || row.contains('…'), "{w}×{h}: {row}");
    }
    insta::assert_snapshot!("events_outcomes_80x24", render(&mut a, 80, 24));
}

#[test]
fn an_instance_shows_its_process_cpu_and_rss() {
    let mut a = app();
    key(&mut a, '3');
    a.key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    for (w, h) in [(80, 24), (120, 40)] {
        let text = render(&mut a, w, h);
        let head = text.lines().find(|l| l.contains("PID")).unwrap();
        assert!(head.contains("CPU") && head.contains("RSS"), "{head}");
        let row = text.lines().find(|l| l.contains("gpu-box")).unwrap();
        assert!(
            row.contains("1.38") && row.contains("2.3G"),
            "{w}×{h}: {row}"
        );
        let row = text.lines().find(|l| l.contains("4010")).unwrap();
        assert!(
            row.contains("0.42") && row.contains("180M"),
            "{w}×{h}: {row}"
        );
    }
    insta::assert_snapshot!("slice_instances_120x40", render(&mut a, 120, 40));
}

#[test]
fn a_slices_instances_come_with_their_log_tail() {
    use super::app::Effect;
    let mut a = app();
    key(&mut a, '3');
    let out = a.key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    // The link task reads them; the UI only asks.
    assert!(
        out.contains(&Effect::Logs {
            target: "shop/web".into()
        }),
        "{out:?}"
    );
    let waiting = render(&mut a, 80, 24);
    assert!(waiting.contains("reading the logs…"), "{waiting}");
    let chunk = |i: u32, node: &str, data: &str| crate::deploy::logs::LogChunk {
        instance: format!("shop/web/{i}"),
        node: node.into(),
        data: data.into(),
        next: 0,
    };
    a.logs_arrived(
        "shop/web".into(),
        Ok(vec![
            chunk(0, "n1", "GET /cart 200 12ms\nGET /cart 200 9ms\n"),
            chunk(
                1,
                "gpu-box",
                "Traceback (most recent call last):\nMemoryError\n",
            ),
        ]),
    );
    let text = render(&mut a, 80, 24);
    assert!(text.contains("0@n1 GET /cart 200 9ms"), "{text}");
    assert!(text.contains("1@gpu-box MemoryError"), "{text}");
    insta::assert_snapshot!("slice_instances_logs_80x24", text);
    // Another slice's answer does not land here.
    a.logs_arrived("shop/worker".into(), Err("late".into()));
    assert!(!render(&mut a, 80, 24).contains("late"));
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

/// The leader's advice sits above the decisions: its counters, then its items.
#[test]
fn the_controller_view_lists_the_leaders_advice() {
    let mut u = update(false);
    u.advice = Some(Box::new(crate::view::fixture::advice()));
    let mut a = App::new(Keymap::default(), false);
    a.apply(u, NOW);
    a.tick(NOW);
    key(&mut a, '4');
    insta::assert_snapshot!("controller_advice_80x24", render(&mut a, 80, 24));
    insta::assert_snapshot!("controller_advice_120x40", render(&mut a, 120, 40));
}

#[test]
fn a_running_drill_shows_in_the_header_until_it_ends() {
    let mut a = app();
    let record = |seq, what: &str| crate::domain::AuditRecord {
        seq,
        at: NOW - 1_000,
        actor: "uid:0@n1".into(),
        what: what.into(),
        outcome: "ok".into(),
    };
    let mut u = update(false);
    u.full = false;
    u.events = vec![record(
        60,
        "drill partition started on n3: cut 'n3' off from its peers for at most 5.0 s",
    )];
    a.apply(u, NOW);
    assert_eq!(
        a.running_drill().as_deref(),
        Some("partition started on n3")
    );
    let text = render(&mut a, 160, 48);
    assert!(
        text.lines()
            .next()
            .unwrap()
            .contains("DRILL partition started on n3"),
        "{text}"
    );
    let mut u = update(false);
    u.full = false;
    u.events = vec![record(
        61,
        "drill partition ended: partition: leader unchanged; writes continued (40 ok, 0 errors); n3 caught up after 0.1 s; recovered",
    )];
    a.apply(u, NOW);
    assert_eq!(a.running_drill(), None);
    assert!(!render(&mut a, 160, 48).contains("DRILL"));
}

#[test]
fn an_interrupting_node_shows_its_deadline() {
    let mut a = App::new(Keymap::default(), false);
    let mut u = update(false);
    // The node the Nodes view selects first.
    if let Some(m) = u
        .status
        .as_mut()
        .and_then(|s| s.members.iter_mut().find(|m| m.name == "gpu-box"))
    {
        m.spot = Some(crate::domain::SpotNotice {
            kind: crate::domain::SpotKind::Interruption {
                action: "terminate".into(),
            },
            at: NOW + 120_000,
            source: "aws".into(),
        });
    }
    a.apply(u, NOW);
    a.tick(NOW);
    key(&mut a, '1');
    insta::assert_snapshot!("overview_interrupting_80x24", render(&mut a, 80, 24));
    key(&mut a, '2');
    insta::assert_snapshot!("nodes_interrupting_80x24", render(&mut a, 80, 24));
    a.key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    insta::assert_snapshot!("node_facts_interrupting_80x24", render(&mut a, 80, 24));
}
