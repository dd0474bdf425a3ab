//! `3` Blueprints: each slice with desired vs active instances, its CPU (cores used) and
//! requests (calls/s, error rate, p99 over the cluster), placement per node, health and
//! restarts; a line per rollout in progress (step, versions, split, the last analysis interval,
//! the reason); the selected slice's load with the forecast overlaid; Enter lists its
//! instances (with their process's CPU and RSS from the metrics snapshot).

use std::collections::BTreeMap;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, Paragraph, Row, Table};

use super::{Theme, empty, list_table, window};
use crate::admin::protocol::RolloutView;
use crate::tui::app::{App, SliceRow};
use crate::view::rollouts::{millis, percent};

pub fn draw(f: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let Some(_) = &app.data.blueprints else {
        return empty(f, area, "waiting for the blueprints…", theme);
    };
    let rows = app.slices();
    if rows.is_empty() {
        let text = if app.filter().is_empty() {
            "no blueprints stored: 'aether blueprint apply FILE' adds one (config/blueprints/ has examples)"
        } else {
            "no slice matches the filter (esc clears it)"
        };
        return empty(f, area, text, theme);
    }
    let sel = &rows[app.selected().min(rows.len() - 1)];
    if app.detail {
        return instances(f, area, sel, app, theme);
    }
    let list_h = (rows.len() as u16 + 1).clamp(3, area.height / 2);
    // A line per open rollout of the listed slices (at most three).
    let rollouts: Vec<&RolloutView> = rows
        .iter()
        .filter_map(|r| r.rollout(&app.data).filter(|v| v.open))
        .take(3)
        .collect();
    let [table, rollout_area, chart] = Layout::vertical([
        Constraint::Length(list_h),
        Constraint::Length(rollouts.len() as u16),
        Constraint::Min(3),
    ])
    .areas(area);
    let lines: Vec<Line> = rollouts
        .iter()
        .map(|v| rollout_line(v, usize::from(rollout_area.width), theme))
        .collect();
    f.render_widget(Paragraph::new(lines), rollout_area);
    let body: Vec<(usize, Row)> = window(app, table, rows.len())
        .map(|i| {
            let r = &rows[i];
            let copies: Vec<_> = r.instances().collect();
            let active = copies.iter().filter(|c| c.counts_active()).count() as u32;
            let want = r.slice.instances;
            let mut per_node: BTreeMap<String, u32> = BTreeMap::new();
            for c in &copies {
                if let Some(n) = &c.node {
                    *per_node.entry(n.clone()).or_default() += 1;
                }
            }
            let pending = copies.iter().filter(|c| c.state == "pending").count();
            let mut placement: Vec<String> =
                per_node.iter().map(|(n, c)| format!("{n}:{c}")).collect();
            if pending > 0 {
                placement.push(format!("pending:{pending}"));
            }
            let unhealthy = copies
                .iter()
                .filter(|c| matches!(c.state.as_str(), "unhealthy" | "backoff"))
                .count();
            let restarts: u32 = copies.iter().map(|c| c.restarts).sum();
            let target = r.target();
            let load = app.data.loads.iter().find(|l| l.target == target);
            let cpu = load
                .and_then(|l| l.load.last())
                .map_or("-".into(), |(_, v)| format!("{v:.2}"));
            let traffic = load.and_then(|l| l.traffic.as_ref());
            let (calls, errors, p99) = match traffic {
                Some(t) => (
                    Span::raw(calls_per_s(t.calls_per_s)),
                    error_rate(t.calls_per_s, t.error_rate, theme),
                    Span::raw(millis(t.p99_ms)),
                ),
                None => (
                    Span::styled("-", theme.dim()),
                    Span::styled("-", theme.dim()),
                    Span::styled("-", theme.dim()),
                ),
            };
            let row = Row::new(vec![
                Line::from(target),
                Line::from(Span::styled(
                    format!("{active}/{want}"),
                    if active >= want {
                        theme.ok()
                    } else {
                        theme.warn()
                    },
                )),
                Line::from(format!("{}..{}", r.slice.min, r.slice.max)),
                Line::from(cpu),
                Line::from(calls),
                Line::from(errors),
                Line::from(p99),
                Line::from(placement.join(" ")),
                Line::from(Span::styled(
                    if unhealthy > 0 {
                        // Unhealthy or in backoff: failing its checks or exiting.
                        format!("{unhealthy} failing")
                    } else if active >= want {
                        "ok".into()
                    } else {
                        "starting".into()
                    },
                    if unhealthy > 0 {
                        theme.bad()
                    } else {
                        theme.dim()
                    },
                )),
                Line::from(restarts.to_string()),
            ]);
            (i, row)
        })
        .collect();
    let widths = [
        Constraint::Length(14),
        Constraint::Length(6),
        Constraint::Length(5),
        Constraint::Length(5),
        Constraint::Length(6),
        Constraint::Length(5),
        Constraint::Length(6),
        Constraint::Min(10),
        Constraint::Length(9),
        Constraint::Length(3),
    ];
    f.render_widget(
        list_table(
            &[
                "SLICE",
                "ACTIVE",
                "RANGE",
                "CPU",
                "CALL/S",
                "ERR",
                "P99",
                "PLACEMENT",
                "HEALTH",
                "RST",
            ],
            &widths,
            body,
            app,
            theme,
        ),
        table,
    );
    load_chart(f, chart, sel, app, theme);
}

/// `spans` cut to `width` characters, the last one ending in `…` when something was cut.
fn fit(spans: Vec<Span<'static>>, width: usize) -> Line<'static> {
    let mut out = Vec::new();
    let mut used = 0;
    for s in spans {
        let n = s.content.chars().count();
        if used + n <= width {
            used += n;
            out.push(s);
            continue;
        }
        let keep = width.saturating_sub(used + 1);
        let text: String = s.content.chars().take(keep).collect();
        out.push(Span::styled(format!("{text}…"), s.style));
        break;
    }
    Line::from(out)
}

/// An open rollout in one line: id and slice, state and step, versions, the traffic split, the
/// last analysis interval's numbers and verdict, the reason; shorter forms when the long ones
/// do not fit `width`, then cut.
fn rollout_line(v: &RolloutView, width: usize, theme: &Theme) -> Line<'static> {
    let state_style = match v.state.as_str() {
        "running" if v.step != "revert" => theme.accent(),
        "failed" => theme.bad(),
        _ => theme.warn(),
    };
    let verdict_style = |verdict: &str| match verdict {
        "pass" => theme.ok(),
        "fail" => theme.bad(),
        _ => theme.warn(),
    };
    // `long`: the long head and split; `numbers`: the long analysis numbers.
    let build = |long: bool, numbers: bool| -> Vec<Span<'static>> {
        let mut spans = vec![Span::styled(
            format!("{} {} ", v.name, v.target),
            theme.title(),
        )];
        let step = if v.state == "running" {
            v.step.clone()
        } else {
            format!("{} at {}", v.state, v.step)
        };
        if long {
            spans.push(Span::raw(format!(
                "{} v{} → v{} ",
                v.strategy, v.from, v.to
            )));
            spans.push(Span::styled(step, state_style));
            spans.push(Span::raw(format!(" · {}", v.traffic)));
        } else {
            spans.push(Span::styled(step, state_style));
            let split = match v.traffic.split_once(" / ") {
                Some((to, _)) => to.to_string(),
                None => v.traffic.clone(),
            };
            spans.push(Span::raw(format!(" v{}→v{} {split}", v.from, v.to)));
        }
        if let Some(a) = &v.analysis {
            let (c, st) = (&a.canary, &a.stable);
            let numbers = if numbers {
                format!(
                    " · canary v{} {} req {} p99 {}, stable v{} {} req {} p99 {} ",
                    c.version,
                    c.requests,
                    percent(c.error_rate),
                    millis(c.p99_ms),
                    st.version,
                    st.requests,
                    percent(st.error_rate),
                    millis(st.p99_ms)
                )
            } else {
                format!(
                    " · v{} {} {} vs v{} {} {} ",
                    c.version,
                    percent(c.error_rate),
                    millis(c.p99_ms),
                    st.version,
                    percent(st.error_rate),
                    millis(st.p99_ms)
                )
            };
            spans.push(Span::raw(numbers));
            spans.push(Span::styled(a.verdict.clone(), verdict_style(&a.verdict)));
        }
        if let Some(r) = &v.reason {
            spans.push(Span::raw(" · "));
            spans.push(Span::styled(r.clone(), theme.warn()));
        }
        spans
    };
    let len = |spans: &[Span]| {
        spans
            .iter()
            .map(|s| s.content.chars().count())
            .sum::<usize>()
    };
    let pick = [(true, true), (true, false)]
        .into_iter()
        .map(|(l, n)| build(l, n))
        .find(|s| len(s) <= width)
        .unwrap_or_else(|| build(false, false));
    fit(pick, width)
}

/// A slice's error rate, red from 1 %; a dash without calls.
pub(super) fn error_rate(calls_per_s: f64, rate: f64, theme: &Theme) -> Span<'static> {
    if calls_per_s > 0.0 {
        Span::styled(
            format!("{:.1}%", rate * 100.0),
            if rate >= 0.01 {
                theme.bad()
            } else {
                theme.dim()
            },
        )
    } else {
        Span::styled("-", theme.dim())
    }
}

/// Calls per second in at most six characters: `42.7`, `1234`, `12.3k`.
pub(super) fn calls_per_s(v: f64) -> String {
    if v < 1000.0 {
        format!("{v:.1}")
    } else if v < 10_000.0 {
        format!("{v:.0}")
    } else {
        format!("{:.1}k", v / 1000.0)
    }
}

fn load_chart(f: &mut Frame, area: Rect, sel: &SliceRow<'_>, app: &App, theme: &Theme) {
    let target = sel.target();
    let l = app.data.loads.iter().find(|l| l.target == target);
    let units = match l.map(|l| l.units.as_str()) {
        Some("calls/s") => "calls/s",
        _ => "cores used",
    };
    let block = Block::bordered().title(format!(" {target}: load ({units}) and forecast "));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let Some(l) = l else {
        return empty(
            f,
            inner,
            "the controller has not seen this slice yet",
            theme,
        );
    };
    if l.load.is_empty() {
        return empty(
            f,
            inner,
            &format!(
                "no load measured for {target} yet: it is sampled from the slice's active processes each second"
            ),
            theme,
        );
    }
    let load: Vec<(f64, f64)> = l.load.iter().map(|(t, v)| (*t as f64, *v as f64)).collect();
    let fc: Vec<(f64, f64)> = l
        .forecast
        .iter()
        .map(|(t, v)| (*t as f64, *v as f64))
        .collect();
    // "now" in the middle: the past on the left, the forecast on the right.
    let now = app.now as f64 / 1000.0;
    let first = load.first().map(|p| p.0).unwrap_or(now);
    let last = fc.last().map(|p| p.0).unwrap_or(now);
    let span = (now - first).max(last - now).max(60.0);
    let (x0, x1) = (now - span, now + span);
    let top = load
        .iter()
        .chain(fc.iter())
        .map(|p| p.1)
        .fold(0.0f64, f64::max)
        .max(0.1)
        * 1.15;
    let mut sets = vec![
        Dataset::default()
            .name("load")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(theme.accent())
            .data(&load),
    ];
    let label = if fc.is_empty() {
        "forecast: still learning".to_string()
    } else {
        "forecast".to_string()
    };
    sets.push(
        Dataset::default()
            .name(label)
            .marker(Marker::Dot)
            .graph_type(GraphType::Scatter)
            .style(theme.second())
            .data(&fc),
    );
    let chart = Chart::new(sets)
        .x_axis(Axis::default().bounds([x0, x1]).labels([
            Span::raw(format!(
                "-{}",
                crate::domain::human_millis((span * 1000.0) as u64)
            )),
            Span::raw("now"),
            Span::raw(format!(
                "+{}",
                crate::domain::human_millis((span * 1000.0) as u64)
            )),
        ]))
        .y_axis(
            Axis::default()
                .bounds([0.0, top])
                .labels([Span::raw("0"), Span::raw(format!("{top:.2}"))]),
        )
        .hidden_legend_constraints((Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)));
    f.render_widget(chart, inner);
}

fn instances(f: &mut Frame, area: Rect, sel: &SliceRow<'_>, app: &App, theme: &Theme) {
    // The instances on top (as many rows as they take, at most half), their log tail under.
    let target = sel.target();
    let tail = app.logs.as_ref().filter(|l| l.target == target);
    let area = match tail {
        Some(t) => {
            let n = sel.instances().count() + sel.blueprint.unserved.len();
            let h = (n as u16 + 3).min(area.height / 2).max(4);
            let [top, bottom] =
                Layout::vertical([Constraint::Length(h), Constraint::Min(3)]).areas(area);
            log_tail(f, bottom, t, theme);
            top
        }
        None => area,
    };
    // Borders and the header take 3 lines; the last row stays at the bottom.
    let max = sel
        .instances()
        .count()
        .saturating_sub(usize::from(area.height.saturating_sub(3)));
    let max = max.min(usize::from(u16::MAX)) as u16;
    app.scroll_max.set(max);
    let rows: Vec<Row> = sel
        .instances()
        .skip(usize::from(app.scroll.min(max)))
        .map(|i| {
            // Its process as its node last sampled it (the metrics snapshot carries it).
            let proc = i.node.as_ref().zip(i.pid).and_then(|(n, pid)| {
                app.data
                    .nodes
                    .iter()
                    .find(|x| &x.name == n)
                    .and_then(|x| x.procs.iter().find(|p| p.pid == pid))
            });
            let (cpu, rss) = match proc {
                Some(p) => (Line::from(format!("{:.2}", p.cpu)), Line::from(mib(p.rss))),
                None => (
                    Line::from(Span::styled("-", theme.dim())),
                    Line::from(Span::styled("-", theme.dim())),
                ),
            };
            let style = match i.state.as_str() {
                "active" => theme.ok(),
                "unhealthy" | "backoff" => theme.bad(),
                _ => theme.warn(),
            };
            Row::new(vec![
                Line::from(i.instance.rsplit('/').next().unwrap_or("").to_string()),
                Line::from(i.node.clone().unwrap_or_else(|| "—".into())),
                Line::from(Span::styled(i.state.clone(), style)),
                Line::from(i.port.map(|p| p.to_string()).unwrap_or_default()),
                Line::from(i.pid.map(|p| p.to_string()).unwrap_or_default()),
                cpu,
                rss,
                Line::from(i.restarts.to_string()),
                Line::from(i.health.clone().unwrap_or_default()),
                Line::from(
                    i.note
                        .clone()
                        .or(i.last_exit.clone().map(|e| format!("last exit: {e}")))
                        .unwrap_or_default(),
                ),
            ])
        })
        .collect();
    // Nodes that cannot listen on the slice's service port (the others serve it).
    let port = sel.slice.service.as_ref().map(|s| s.port);
    let rows: Vec<Row> = rows
        .into_iter()
        .chain(
            sel.blueprint
                .unserved
                .iter()
                .filter(|u| Some(u.port) == port)
                .map(|u| {
                    Row::new(vec![
                        Line::from("—"),
                        Line::from(u.node.clone()),
                        Line::from(Span::styled("no port", theme.bad())),
                        Line::from(u.port.to_string()),
                        Line::from(""),
                        Line::from(""),
                        Line::from(""),
                        Line::from(""),
                        Line::from(""),
                        Line::from(u.message.clone()),
                    ])
                }),
        )
        .collect();
    let widths = [
        Constraint::Length(3),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(5),
        Constraint::Length(7),
        Constraint::Length(5),
        Constraint::Length(6),
        Constraint::Length(3),
        Constraint::Length(8),
        Constraint::Min(10),
    ];
    let header = Row::new([
        "#", "NODE", "STATE", "PORT", "PID", "CPU", "RSS", "RST", "HEALTH", "NOTE",
    ])
    .style(theme.title());
    f.render_widget(
        Table::new(rows, widths)
            .header(header)
            .column_spacing(1)
            .block(Block::bordered().title(format!(" {} instances (esc back) ", sel.target()))),
        area,
    );
}

/// The last lines of each instance's log, an equal share of `area` each, prefixed with the
/// instance's index; the newest line of each at the bottom of its share.
fn log_tail(f: &mut Frame, area: Rect, t: &crate::tui::app::LogTail, theme: &Theme) {
    let title = format!(
        " logs: last lines per instance, as of {} (enter again refreshes) ",
        crate::domain::clock_time(t.asked)
    );
    let lines: Vec<Line> = match &t.chunks {
        None => vec![Line::from(Span::styled("reading the logs…", theme.dim()))],
        Some(Err(e)) => vec![Line::from(Span::styled(
            format!("cannot read the logs: {e}"),
            theme.bad(),
        ))],
        Some(Ok(chunks)) if chunks.iter().all(|c| c.data.trim().is_empty()) => {
            vec![Line::from(Span::styled(
                "no log lines yet (an instance's stdout and stderr go to its log)",
                theme.dim(),
            ))]
        }
        Some(Ok(chunks)) => {
            let rows = usize::from(area.height.saturating_sub(2));
            let share = (rows / chunks.len().max(1)).max(1);
            let mut out = Vec::new();
            for c in chunks {
                let index = c.instance.rsplit('/').next().unwrap_or("?");
                let text: Vec<&str> = c.data.lines().collect();
                for l in &text[text.len().saturating_sub(share)..] {
                    out.push(Line::from(vec![
                        Span::styled(format!("{index}@{} ", c.node), theme.dim()),
                        Span::raw(l.to_string()),
                    ]));
                }
            }
            out
        }
    };
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(title)),
        area,
    );
}

/// Bytes as `180M`, `2.3G`.
fn mib(b: u64) -> String {
    let m = b as f64 / (1u64 << 20) as f64;
    if m >= 1024.0 {
        format!("{:.1}G", m / 1024.0)
    } else {
        format!("{m:.0}M")
    }
}
