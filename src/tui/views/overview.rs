//! `1` Overview: what an operator looks at first, filling the screen as btop and k9s do:
//! cluster health, leader, controller mode and model; a row per node with CPU, memory and GPU
//! values and sparklines; every slice (active/desired, load, traffic when it has any, its open
//! rollout); the open decisions with their grace countdown; then the newest events.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table};

use super::{Theme, empty, list_table, pct, spark, window};
use crate::domain::{clock_time, human_millis};
use crate::tui::app::App;

pub fn draw(f: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let summary = summary_lines(app, theme);
    let [summary_area, rest] =
        Layout::vertical([Constraint::Length(summary.len() as u16), Constraint::Min(1)])
            .areas(area);
    f.render_widget(Paragraph::new(summary), summary_area);
    let rows = app.nodes();
    if app.data.status.is_none() || rows.is_empty() {
        return nodes(f, rest, app, theme);
    }
    // Nodes first (at most half of what is left), then the slices and the open decisions
    // (each at most a quarter), a blank line between sections; events take the rest.
    let h = rest.height;
    let node_h = (rows.len() as u16 + 1).min((h / 2).max(3));
    let slices = slice_rows(app, theme, rest.width);
    let quarter = (h / 4).max(2);
    let (decisions, status_w) = decision_rows(app, theme, quarter.saturating_sub(1) as usize);
    let slice_h = (slices.len().max(1) as u16 + 1).min(quarter);
    let dec_h = (decisions.len().max(1) as u16 + 1).min(quarter);
    let [node_area, _, slice_area, _, dec_area, _, event_area] = Layout::vertical([
        Constraint::Length(node_h),
        Constraint::Length(1),
        Constraint::Length(slice_h),
        Constraint::Length(1),
        Constraint::Length(dec_h),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(rest);
    nodes(f, node_area, app, theme);
    section(
        f,
        slice_area,
        slices,
        theme,
        SLICE_HEAD,
        &slice_widths(rest.width),
        "no blueprints stored: 'aether blueprint apply FILE' adds one",
    );
    section(
        f,
        dec_area,
        decisions,
        theme,
        &["DECISION", "STATUS", "ACTION"],
        &[
            Constraint::Length(8),
            Constraint::Length(status_w),
            Constraint::Min(10),
        ],
        "no open decisions: the controller proposes one when a rule or the forecast calls for a change",
    );
    let events = event_rows(app, theme, event_area.height.saturating_sub(1) as usize);
    section(
        f,
        event_area,
        events,
        theme,
        &["TIME", "WHO", "EVENT"],
        &[
            Constraint::Length(9),
            Constraint::Length(14),
            Constraint::Min(10),
        ],
        "no events yet",
    );
}

/// A sample older than this is shown as stale.
const STALE_MS: u64 = 5_000;

/// Column heads of the slice section.
const SLICE_HEAD: &[&str] = &["SLICE", "ACTIVE", "LOAD", "CALL/S", "ERR", "P99", "ROLLOUT"];

fn slice_widths(width: u16) -> Vec<Constraint> {
    vec![
        Constraint::Length(14),
        Constraint::Length(6),
        Constraint::Length(load_width(width) as u16),
        Constraint::Length(6),
        Constraint::Length(5),
        Constraint::Length(6),
        Constraint::Min(10),
    ]
}

/// The LOAD column: the last value, and a sparkline of the last minutes when there is room.
fn load_width(width: u16) -> usize {
    if width >= 110 { 5 + 1 + 24 } else { 5 }
}

/// A table of `rows` under `head` in `area`, or `none` dimmed under the head when empty.
fn section(
    f: &mut Frame,
    area: Rect,
    rows: Vec<Row<'static>>,
    theme: &Theme,
    head: &[&'static str],
    widths: &[Constraint],
    none: &str,
) {
    if area.height == 0 {
        return;
    }
    if rows.is_empty() {
        let [h, b] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
        f.render_widget(
            Paragraph::new(Line::from(Span::styled(head[0], theme.title()))),
            h,
        );
        return empty(f, b, none, theme);
    }
    let n = area.height.saturating_sub(1) as usize;
    let more = rows.len().saturating_sub(n);
    let mut rows: Vec<Row> = rows.into_iter().take(n).collect();
    if more > 0
        && let Some(last) = rows.last_mut()
    {
        *last = Row::new(vec![Line::from(Span::styled(
            format!("+{} more", more + 1),
            theme.dim(),
        ))]);
    }
    f.render_widget(
        Table::new(rows, widths.to_vec())
            .header(Row::new(head.to_vec()).style(theme.title()))
            .column_spacing(1),
        area,
    );
}

/// A row per slice of every stored blueprint (the node filter does not apply here).
fn slice_rows(app: &App, theme: &Theme, width: u16) -> Vec<Row<'static>> {
    let Some(bps) = &app.data.blueprints else {
        return Vec::new();
    };
    let loadw = load_width(width);
    // One scale per unit, so that the sparklines compare slices.
    let peak = |units: &str| {
        let p = app
            .data
            .loads
            .iter()
            .filter(|l| l.units == units)
            .flat_map(|l| l.load.iter().map(|p| p.1))
            .fold(0.0f32, f32::max);
        if p > 0.0 { p } else { 1.0 }
    };
    let mut out = Vec::new();
    for b in bps {
        for s in &b.blueprint.slices {
            let target = format!("{}/{}", b.blueprint.name, s.name);
            let prefix = format!("{target}/");
            let copies: Vec<_> = b
                .instances
                .iter()
                .filter(|i| i.instance.starts_with(&prefix))
                .collect();
            let active = copies.iter().filter(|c| c.counts_active()).count() as u32;
            let failing = copies
                .iter()
                .filter(|c| matches!(c.state.as_str(), "unhealthy" | "backoff"))
                .count();
            let want = s.instances;
            let mut active_cell = vec![Span::styled(
                format!("{active}/{want}"),
                if failing > 0 {
                    theme.bad()
                } else if active >= want {
                    theme.ok()
                } else {
                    theme.warn()
                },
            )];
            if failing > 0 {
                active_cell.push(Span::styled("!", theme.bad()));
            }
            let load = app.data.loads.iter().find(|l| l.target == target);
            let load_cell = match load.and_then(|l| l.load.last().map(|p| (l, p.1))) {
                Some((l, v)) => {
                    let mut spans = vec![Span::raw(format!("{v:>5.2}"))];
                    if loadw > 5 {
                        let peak = peak(&l.units);
                        spans.push(Span::raw(" "));
                        spans.push(Span::styled(
                            spark(l.load.iter().map(|p| p.1 / peak), loadw - 6),
                            theme.accent(),
                        ));
                    }
                    Line::from(spans)
                }
                None => Line::from(Span::styled("    -", theme.dim())),
            };
            let dash = || Line::from(Span::styled("-", theme.dim()));
            let (calls, errors, p99) = match load.and_then(|l| l.traffic.as_ref()) {
                Some(t) => (
                    Line::from(super::blueprints::calls_per_s(t.calls_per_s)),
                    Line::from(super::blueprints::error_rate(
                        t.calls_per_s,
                        t.error_rate,
                        theme,
                    )),
                    Line::from(crate::view::rollouts::millis(t.p99_ms)),
                ),
                None => (dash(), dash(), dash()),
            };
            let rollout = match app
                .data
                .rollouts
                .iter()
                .find(|r| r.blueprint == b.blueprint.name && r.slice == s.name)
            {
                Some(r) if r.open => {
                    let split = r.traffic.split(" / ").next().unwrap_or("").to_string();
                    Line::from(vec![
                        Span::styled(format!("{} ", r.name), theme.title()),
                        Span::styled(
                            if r.state == "running" {
                                r.step.clone()
                            } else {
                                format!("{} at {}", r.state, r.step)
                            },
                            if r.state == "running" {
                                theme.accent()
                            } else {
                                theme.warn()
                            },
                        ),
                        Span::raw(format!(" v{}→v{} {split}", r.from, r.to)),
                    ])
                }
                _ => Line::from(Span::styled(format!("v{}", b.version), theme.dim())),
            };
            out.push(Row::new(vec![
                Line::from(target),
                Line::from(active_cell),
                load_cell,
                calls,
                errors,
                p99,
                rollout,
            ]));
        }
    }
    out
}

/// The open decisions (proposed or pending), the soonest to apply first; then, while fewer
/// than `room`, the newest closed ones, dimmed, with who closed them and when.
/// Also the width of the widest status.
fn decision_rows(app: &App, theme: &Theme, room: usize) -> (Vec<Row<'static>>, u16) {
    let mut open: Vec<&crate::domain::Decision> = app
        .data
        .decisions
        .iter()
        .filter(|d| d.status.is_open())
        .collect();
    open.sort_by_key(|d| match d.status {
        crate::domain::DecisionStatus::Pending { deadline } => (0, deadline),
        _ => (1, u64::MAX - d.id),
    });
    let closed = app
        .data
        .decisions
        .iter()
        .filter(|d| !d.status.is_open())
        .take(room.saturating_sub(open.len()));
    let mut widest = 6;
    let mut row = |d: &crate::domain::Decision, status: String| {
        widest = widest.max(status.chars().count());
        Row::new(vec![
            Line::from(d.name()),
            Line::from(status),
            Line::from(d.action.to_string()),
        ])
    };
    let mut rows: Vec<Row<'static>> = open
        .iter()
        .map(|d| row(d, app.status_text(d)).style(theme.warn()))
        .collect();
    rows.extend(closed.map(|d| {
        let status = format!(
            "{}, {} ago",
            crate::tui::app::outcome(d),
            human_millis(app.now.saturating_sub(d.at))
        );
        row(d, status).style(theme.dim())
    }));
    (rows, widest.min(40) as u16)
}

/// The newest `n` events, newest first (the outcome after the text when it is not `ok`).
fn event_rows(app: &App, theme: &Theme, n: usize) -> Vec<Row<'static>> {
    app.data
        .events
        .iter()
        .rev()
        .take(n)
        .map(|e| {
            let mut what = vec![Span::raw(e.what.clone())];
            if e.outcome != "ok" {
                what.push(Span::styled(format!(" → {}", e.outcome), theme.bad()));
            }
            Row::new(vec![
                Line::from(Span::styled(clock_time(e.at), theme.dim())),
                Line::from(e.actor.clone()),
                Line::from(what),
            ])
        })
        .collect()
}

/// The node table in `table`.
fn nodes(f: &mut Frame, table: Rect, app: &App, theme: &Theme) {
    let rows = app.nodes();
    if rows.is_empty() {
        let text = if app.data.status.is_none() {
            "waiting for the first frame from the node…"
        } else if !app.filter().is_empty() {
            "no node matches the filter (esc clears it)"
        } else {
            "no members yet"
        };
        return empty(f, table, text, theme);
    }
    // name, role, health, then three equal columns of value + sparkline.
    let fixed = 10 + 7 + 9 + 5;
    let col = ((table.width as usize).saturating_sub(fixed) / 3).max(8);
    let sparkw = col.saturating_sub(6);
    let body: Vec<(usize, Row)> = window(app, table, rows.len())
        .map(|i| {
            let r = &rows[i];
            let m = r.member;
            let role = match m {
                Some(m) if m.leader => "leader".to_string(),
                Some(m) => m.role.clone(),
                None => "?".into(),
            };
            let (health, hstyle) = match (m, r.metrics) {
                // Down says more than draining.
                (Some(m), _) if m.health == crate::domain::Health::Down => {
                    ("down".into(), theme.bad())
                }
                // Its cloud is taking it away (the Nodes view gives the deadline); the
                // column is too narrow for `interrupting`.
                (Some(m), _) if m.spot.as_ref().is_some_and(|n| n.is_interruption()) => {
                    ("leaving".into(), theme.bad())
                }
                (Some(m), _) if m.state != crate::domain::NodeState::Ready => {
                    (m.state.to_string(), theme.warn())
                }
                (Some(m), _) => (
                    m.health.to_string(),
                    match m.health {
                        crate::domain::Health::Ready => theme.ok(),
                        crate::domain::Health::Suspect => theme.warn(),
                        crate::domain::Health::Down => theme.bad(),
                    },
                ),
                (None, Some(n)) => (n.health.to_string(), theme.warn()),
                (None, None) => ("?".into(), theme.dim()),
            };
            let sp = app.data.sparks.get(&r.name);
            let n = r.metrics;
            // A node that is down (or whose last sample is old) keeps its last values, dimmed
            // and marked with their age, never coloured as if they were current.
            let stale = n.and_then(|n| {
                let down = n.health == crate::domain::Health::Down
                    || m.is_some_and(|m| m.health == crate::domain::Health::Down);
                let age = human_millis(n.sample_age_ms);
                if down {
                    Some(format!("down {age}"))
                } else if n.sample_age_ms >= STALE_MS {
                    Some(format!("stale {age}"))
                } else {
                    None
                }
            });
            let cell = |v: Option<f32>,
                        series: Option<&std::collections::VecDeque<f32>>,
                        extra: Option<String>,
                        mark: bool| match v {
                Some(v) if stale.is_some() => {
                    let mut spans = vec![Span::styled(pct(v), theme.dim())];
                    if let Some(e) = extra {
                        spans.push(Span::styled(e, theme.dim()));
                    }
                    if mark {
                        spans.push(Span::styled(
                            format!(" {}", stale.clone().unwrap_or_default()),
                            theme.warn(),
                        ));
                    }
                    Line::from(spans)
                }
                Some(v) => {
                    let extra_w = extra.as_ref().map_or(0, |e| e.chars().count());
                    let mut spans = vec![Span::styled(pct(v), theme.level(v))];
                    if let Some(e) = extra {
                        spans.push(Span::raw(e));
                    }
                    spans.push(Span::raw(" "));
                    spans.push(Span::styled(
                        spark(
                            series.into_iter().flatten().copied(),
                            sparkw.saturating_sub(extra_w),
                        ),
                        theme.level(v),
                    ));
                    Line::from(spans)
                }
                None => Line::from(Span::styled("  — no sample", theme.dim())),
            };
            let gpu = match n {
                Some(n) if n.gpu_util.is_some() => cell(
                    n.gpu_util,
                    sp.map(|s| &s.gpu),
                    n.gpu_temp.map(|t| format!(" {t:.0}°C")),
                    false,
                ),
                // The reason NVML is unavailable is long: the Nodes view shows it.
                Some(n) => Line::from(Span::styled(
                    format!(
                        "  {}",
                        n.gpu
                            .trim_start_matches("gpu: ")
                            .split(" (")
                            .next()
                            .unwrap_or("")
                    ),
                    theme.dim(),
                )),
                None => Line::from(""),
            };
            let mut name = r.name.clone();
            if n.is_some_and(|n| !n.anomalies.is_empty()) {
                name.push_str(" !");
            }
            let row = Row::new(vec![
                Line::from(name),
                Line::from(role),
                Line::from(Span::styled(health, hstyle)),
                cell(n.map(|n| n.cpu), sp.map(|s| &s.cpu), None, true),
                cell(n.map(|n| n.mem), sp.map(|s| &s.mem), None, false),
                gpu,
            ]);
            (i, row)
        })
        .collect();
    let widths = [
        Constraint::Length(10),
        Constraint::Length(7),
        Constraint::Length(9),
        Constraint::Length(col as u16),
        Constraint::Length(col as u16),
        Constraint::Min(col as u16),
    ];
    f.render_widget(
        list_table(
            &["NODE", "ROLE", "HEALTH", "CPU", "MEM", "GPU"],
            &widths,
            body,
            app,
            theme,
        ),
        table,
    );
}

fn summary_lines(app: &App, theme: &Theme) -> Vec<Line<'static>> {
    let Some(s) = &app.data.status else {
        return vec![Line::from(Span::styled(
            "cluster: waiting for the node's first frame",
            theme.dim(),
        ))];
    };
    let label = |t: &str| Span::styled(format!(" {t:<11}"), theme.title());
    let total = s.members.len();
    let count = |h: crate::domain::Health| s.members.iter().filter(|m| m.health == h).count();
    let (ready, suspect, down) = (
        count(crate::domain::Health::Ready),
        count(crate::domain::Health::Suspect),
        count(crate::domain::Health::Down),
    );
    let mut health = vec![
        label("cluster"),
        Span::styled(
            format!("{total} nodes: {ready} ready"),
            if ready == total {
                theme.ok()
            } else {
                theme.warn()
            },
        ),
    ];
    if suspect > 0 {
        health.push(Span::styled(format!(", {suspect} suspect"), theme.warn()));
    }
    if down > 0 {
        health.push(Span::styled(format!(", {down} down"), theme.bad()));
    }
    match &s.leader {
        // This node has not heard from it: say so rather than show a dead node as leader.
        Some(l) if s.leader_unreachable() => health.push(Span::styled(
            format!(" · leader {} UNREACHABLE · term {}", l.name, s.term),
            theme.bad(),
        )),
        Some(l) => health.push(Span::raw(format!(
            " · leader {} · term {} · applied {}",
            l.name, s.term, s.applied_index
        ))),
        None => health.push(Span::styled(" · no leader", theme.bad())),
    }
    // Certificates that expire within 30 days (`aether status` names them).
    if !s.certs.is_empty() {
        health.push(Span::styled(
            format!(" · {} cert(s) expiring: see 'aether status'", s.certs.len()),
            theme.warn(),
        ));
    }
    let control = match &s.controller {
        None => vec![
            label("controller"),
            Span::styled("state unreadable", theme.bad()),
        ],
        Some(c) => {
            let mut v = vec![label("controller")];
            if let Some(p) = &c.paused {
                v.push(Span::styled(
                    format!(
                        "PAUSED by {}{}",
                        p.by,
                        p.reason
                            .as_ref()
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default()
                    ),
                    theme.bad(),
                ));
                v.push(Span::raw(format!(" · mode {}", c.mode)));
            } else {
                v.push(Span::raw(format!(
                    "{} (grace {})",
                    c.mode,
                    crate::domain::human_millis(c.grace_ms)
                )));
            }
            v.push(Span::styled(
                format!(" · {} pending · {} proposed", c.pending, c.proposed),
                if c.pending + c.proposed > 0 {
                    theme.warn()
                } else {
                    theme.dim()
                },
            ));
            if !c.enabled {
                v.push(Span::styled(" · off on this node", theme.dim()));
            }
            for cap in &c.capped {
                v.push(Span::styled(
                    format!(
                        " · capped {} at {}={}{}",
                        cap.target,
                        cap.bound,
                        cap.limit,
                        cap.wanted
                            .map(|w| format!(" (wants {w})"))
                            .unwrap_or_default()
                    ),
                    theme.warn(),
                ));
            }
            v
        }
    };
    let leader_model = s
        .controller
        .as_ref()
        .and_then(|c| c.leader_reviewer.as_ref())
        .filter(|r| r.node != s.node.name);
    let mut model = vec![label("model")];
    if let Some(r) = leader_model {
        // On a follower: the leader's model decides; this node's own is idle by design.
        model.push(Span::raw(format!(
            "{} on {} (leader, reviewing) · {} reviews, {} timeouts{}",
            r.state,
            r.node,
            r.reviews,
            r.timeouts,
            r.last_latency_ms
                .map(|ms| format!(", last {}", crate::domain::human_millis(ms)))
                .unwrap_or_default()
        )));
        if let Some(m) = &app.data.model {
            model.push(Span::styled(
                format!(" · here {}", super::model_word(&m.state)),
                theme.dim(),
            ));
        }
    } else {
        model.push(match &app.data.model {
            Some(m) => Span::raw(format!("{} (on {})", m.state, s.node.name)),
            None => Span::styled("no status from the node", theme.dim()),
        });
    }
    let metrics = vec![
        label("metrics"),
        match (
            app.data.have_metrics,
            &app.data.leader,
            app.data.snapshot_age_ms,
        ) {
            (true, Some(l), Some(age)) => Span::raw(format!(
                "metrics from {l}, {} old",
                crate::domain::human_millis(age)
            )),
            _ => Span::styled(
                "no metrics snapshot yet (the leader broadcasts one every second)",
                theme.dim(),
            ),
        },
    ];
    let mut last = model;
    last.push(Span::styled(" · ", theme.dim()));
    last.extend(metrics.into_iter().skip(1));
    vec![Line::from(health), Line::from(control), Line::from(last)]
}
