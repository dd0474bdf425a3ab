//! `1` Overview: cluster health, leader, controller mode, model, and a row per node with
//! CPU, memory and GPU bars and sparklines.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row};

use super::{Theme, empty, list_table, pct, spark, window};
use crate::tui::app::App;

pub fn draw(f: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let [summary, table] =
        Layout::vertical([Constraint::Length(4), Constraint::Min(1)]).areas(area);
    f.render_widget(Paragraph::new(summary_lines(app, theme)), summary);
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
            let cell = |v: Option<f32>, series: Option<&std::collections::VecDeque<f32>>| match v {
                Some(v) => Line::from(vec![
                    Span::styled(pct(v), theme.level(v)),
                    Span::raw(" "),
                    Span::styled(
                        spark(series.into_iter().flatten().copied(), sparkw),
                        theme.level(v),
                    ),
                ]),
                None => Line::from(Span::styled("  — no sample", theme.dim())),
            };
            let n = r.metrics;
            let gpu = match n {
                Some(n) if n.gpu_util.is_some() => {
                    let mut l = cell(n.gpu_util, sp.map(|s| &s.gpu));
                    if let Some(t) = n.gpu_temp {
                        l.spans.insert(1, Span::raw(format!(" {t:.0}°C")));
                    }
                    l
                }
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
                cell(n.map(|n| n.cpu), sp.map(|s| &s.cpu)),
                cell(n.map(|n| n.mem), sp.map(|s| &s.mem)),
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
        Some(l) => health.push(Span::raw(format!(
            " · leader {} · term {} · applied {}",
            l.name, s.term, s.applied_index
        ))),
        None => health.push(Span::styled(" · no leader", theme.bad())),
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
                "snapshot from {l}, {} old",
                crate::domain::human_millis(age)
            )),
            _ => Span::styled(
                "no snapshot yet (the leader broadcasts one every second)",
                theme.dim(),
            ),
        },
    ];
    vec![
        Line::from(health),
        Line::from(control),
        Line::from(model),
        Line::from(metrics),
    ]
}
