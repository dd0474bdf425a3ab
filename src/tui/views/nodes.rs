//! `2` Nodes: the node list and the selected node's history over the chosen range: CPU,
//! memory, network, GPU utilisation and temperature, with its anomaly flags marked.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, List, ListItem, Paragraph};

use super::{Theme, empty, rate, scroll_start, scrolled};
use crate::admin::protocol::PointView;
use crate::tui::app::{App, RANGES};

pub fn draw(f: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let [list, charts] =
        Layout::horizontal([Constraint::Length(14), Constraint::Min(20)]).areas(area);
    let rows = app.nodes();
    let height = list.height.saturating_sub(2) as usize;
    let start = scroll_start(app.selected(), height);
    let items: Vec<ListItem> = rows
        .iter()
        .enumerate()
        .skip(start)
        .map(|(i, r)| {
            let mark = match r.metrics.map(|m| !m.anomalies.is_empty()) {
                Some(true) => "!",
                _ => " ",
            };
            let item = ListItem::new(format!("{mark}{}", r.name));
            if i == app.selected() {
                item.style(theme.selected())
            } else {
                item
            }
        })
        .collect();
    f.render_widget(
        List::new(items).block(Block::bordered().title(" nodes ")),
        list,
    );
    let Some(sel) = rows.get(app.selected()) else {
        return empty(f, charts, "no nodes to chart", theme);
    };
    if app.detail {
        return facts(f, charts, sel, app, theme);
    }
    let range = RANGES[app.range];
    // A node its cloud is taking away says so where the eye is.
    let notice = sel
        .member
        .and_then(|m| m.spot.as_ref())
        .map(|n| format!(" · {}", n.state_word()))
        .unwrap_or_default();
    let title = format!(
        " {}{notice} · last {} · {}/{} range ",
        sel.name,
        range_label(range),
        app.keys.keys_of(crate::tui::keymap::Action::Narrower),
        app.keys.keys_of(crate::tui::keymap::Action::Wider),
    );
    let block = Block::bordered().title(title);
    let inner = block.inner(charts);
    f.render_widget(block, charts);
    let h = match app.data.history.as_ref().filter(|h| h.node == sel.name) {
        Some(h) if h.range_secs == range || !h.series.is_empty() => h,
        _ => {
            let why = if sel.metrics.is_none() {
                format!(
                    "no metrics from {} in the snapshot: it has not reported to the leader (is it running?)",
                    sel.name
                )
            } else {
                format!("waiting for {}'s history…", sel.name)
            };
            return empty(f, inner, &why, theme);
        }
    };
    let get = |n: &str| {
        h.series
            .iter()
            .find(|(name, _)| name == n)
            .map(|(_, p)| p.as_slice())
    };
    let flagged = |n: &str| h.anomalies.iter().find(|a| a.series == n);
    let from = h.to.saturating_sub(range - 1) as f64;
    let x = [from, h.to as f64];
    let mut panels: Vec<Panel> = vec![
        Panel::ratio("cpu", get("cpu"), flagged("cpu").map(|a| a.reason.clone())),
        Panel::ratio("mem", get("mem"), flagged("mem").map(|a| a.reason.clone())),
        Panel {
            title: format!(
                "net rx {} · tx {}",
                rate(last(get("net_rx"))),
                rate(last(get("net_tx")))
            ),
            first: get("net_rx").unwrap_or(&[]).to_vec(),
            second: get("net_tx").map(|p| p.to_vec()),
            max: None,
            anomaly: None,
        },
    ];
    let gpus: Vec<String> = h
        .series
        .iter()
        .filter_map(|(n, _)| n.strip_suffix("_util").map(str::to_string))
        .collect();
    for g in &gpus {
        let util = get(&format!("{g}_util"));
        let temp = get(&format!("{g}_temp"));
        panels.push(Panel {
            title: format!(
                "{g} util {:.0}% · temp {:.0}°C",
                last(util) * 100.0,
                last(temp)
            ),
            first: util
                .unwrap_or(&[])
                .iter()
                .map(|p| PointView {
                    value: p.value * 100.0,
                    max: p.max * 100.0,
                    ..*p
                })
                .collect(),
            second: temp.map(|p| p.to_vec()),
            max: Some(100.0),
            anomaly: flagged(&format!("{g}_util"))
                .or(flagged(&format!("{g}_temp")))
                .map(|a| a.reason.clone()),
        });
    }
    let notes: Vec<Line> = h
        .anomalies
        .iter()
        .map(|a| {
            Line::from(Span::styled(
                format!("! {}: {}", a.series, a.reason),
                theme.bad(),
            ))
        })
        .collect();
    let gpu_note = if gpus.is_empty() {
        sel.metrics
            .map(|m| m.gpu.clone())
            .unwrap_or_else(|| "gpu: unknown".into())
    } else {
        String::new()
    };
    let mut lines = notes;
    if !gpu_note.is_empty() {
        lines.push(Line::from(Span::styled(gpu_note, theme.dim())));
    }
    // The notes wrap: count the rows they take at this width, so none is cut.
    let w = usize::from(inner.width.max(1));
    let note_rows: u16 = lines
        .iter()
        .map(|l| l.width().max(1).div_ceil(w) as u16)
        .sum();
    let [charts_area, axis_area, notes_area] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(note_rows.min(inner.height / 3)),
    ])
    .areas(inner);
    let areas = Layout::vertical(vec![
        Constraint::Ratio(1, panels.len() as u32);
        panels.len()
    ])
    .split(charts_area);
    // Every chart's y labels take the same width, so their time axes line up with the one
    // drawn under them.
    let label_w = panels
        .iter()
        .map(|p| p.top_label().chars().count())
        .max()
        .unwrap_or(1);
    for (p, a) in panels.iter().zip(areas.iter()) {
        p.draw(f, *a, x, label_w, theme);
    }
    f.render_widget(
        Paragraph::new(time_axis(range, label_w, usize::from(axis_area.width))).style(theme.dim()),
        axis_area,
    );
    f.render_widget(
        Paragraph::new(lines).wrap(ratatui::widgets::Wrap { trim: true }),
        notes_area,
    );
}

/// The time axis under the charts: `-15m` at the left of the plot, the middle, `now` at the
/// right; the plot starts after the y labels (`label_w`) and their axis line.
fn time_axis(range: u64, label_w: usize, width: usize) -> String {
    let plot = width.saturating_sub(label_w + 1);
    let left = format!("-{}", range_label(range));
    let mid = format!("-{}", human_secs(range / 2));
    let right = "now";
    let mut line: Vec<char> = " ".repeat(width).chars().collect();
    let mut put = |at: usize, text: &str| {
        for (i, c) in text.chars().enumerate() {
            if let Some(slot) = line.get_mut(at + i) {
                *slot = c;
            }
        }
    };
    put(label_w, &format!("└{left}"));
    if plot > left.len() + mid.len() + right.len() + 6 {
        put(label_w + 1 + plot / 2 - mid.len() / 2, &mid);
    }
    put(width.saturating_sub(right.len()), right);
    line.into_iter().collect()
}

/// `7m30s`, `30m`, `1h`.
fn human_secs(s: u64) -> String {
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

fn last(p: Option<&[PointView]>) -> f32 {
    p.and_then(|p| p.last()).map(|p| p.value).unwrap_or(0.0)
}

/// One chart: a series (and maybe a second one on the same axes).
struct Panel {
    title: String,
    first: Vec<PointView>,
    second: Option<Vec<PointView>>,
    /// A fixed top of the y axis; `None`: the data's peak.
    max: Option<f64>,
    anomaly: Option<String>,
}

impl Panel {
    fn ratio(name: &str, p: Option<&[PointView]>, anomaly: Option<String>) -> Panel {
        Panel {
            title: format!("{name} {:.0}%", last(p) * 100.0),
            first: p
                .unwrap_or(&[])
                .iter()
                .map(|x| PointView {
                    value: x.value * 100.0,
                    max: x.max * 100.0,
                    ..*x
                })
                .collect(),
            second: None,
            max: Some(100.0),
            anomaly,
        }
    }

    /// The label at the top of its y axis.
    fn top_label(&self) -> String {
        let (a, b) = (self.first.iter(), self.second.iter().flatten());
        let peak = a.chain(b).map(|p| p.value as f64).fold(0.0f64, f64::max);
        fmt_top(self.top(peak), self.max.is_some())
    }

    fn top(&self, peak: f64) -> f64 {
        self.max.map(|m| m.max(peak)).unwrap_or(peak.max(1.0) * 1.1)
    }

    fn draw(&self, f: &mut Frame, area: Rect, x: [f64; 2], label_w: usize, theme: &Theme) {
        let pts = |v: &[PointView]| -> Vec<(f64, f64)> {
            v.iter().map(|p| (p.t as f64, p.value as f64)).collect()
        };
        let a = pts(&self.first);
        let b = self.second.as_deref().map(pts).unwrap_or_default();
        let peak = a.iter().chain(b.iter()).map(|p| p.1).fold(0.0f64, f64::max);
        let top = self.top(peak);
        let mark: Vec<(f64, f64)> = match (&self.anomaly, a.last()) {
            (Some(_), Some(p)) => vec![*p],
            _ => Vec::new(),
        };
        let mut sets = vec![
            Dataset::default()
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(theme.accent())
                .data(&a),
        ];
        if !b.is_empty() {
            sets.push(
                Dataset::default()
                    .marker(Marker::Braille)
                    .graph_type(GraphType::Line)
                    .style(theme.second())
                    .data(&b),
            );
        }
        if !mark.is_empty() {
            sets.push(
                Dataset::default()
                    .marker(Marker::Block)
                    .graph_type(GraphType::Scatter)
                    .style(theme.bad())
                    .data(&mark),
            );
        }
        let mut title = vec![Span::styled(self.title.clone(), theme.title())];
        if self.anomaly.is_some() {
            title.push(Span::styled(" ! anomaly", theme.bad()));
        }
        let chart = Chart::new(sets)
            .block(Block::new().title(Line::from(title)))
            .x_axis(Axis::default().bounds(x))
            .y_axis(Axis::default().bounds([0.0, top]).labels([
                Span::raw(format!("{:>label_w$}", "0")),
                Span::styled(
                    format!("{:>label_w$}", fmt_top(top, self.max.is_some())),
                    Style::new(),
                ),
            ]));
        f.render_widget(chart, area);
    }
}

/// The top of a y axis: a percentage, or a rate in the unit the chart's title uses.
fn fmt_top(v: f64, percent: bool) -> String {
    if percent {
        format!("{v:.0}%")
    } else {
        rate(v as f32)
    }
}

/// `5m`, `15m`, `1h`, `2h`.
pub fn range_label(secs: u64) -> String {
    if secs >= 3600 && secs % 3600 == 0 {
        format!("{}h", secs / 3600)
    } else {
        format!("{}m", secs / 60)
    }
}

/// Enter on a node: what the cluster knows about it.
fn facts(f: &mut Frame, area: Rect, r: &crate::tui::app::NodeRow<'_>, app: &App, theme: &Theme) {
    let mut lines = Vec::new();
    let kv = |k: &str, v: String| {
        Line::from(vec![
            Span::styled(format!("{k:<14}"), theme.title()),
            Span::raw(v),
        ])
    };
    match r.member {
        Some(m) => {
            lines.push(kv("address", m.addr.clone()));
            lines.push(kv(
                "role",
                format!("{}{}", m.role, if m.leader { ", leader" } else { "" }),
            ));
            lines.push(kv("state", m.state_text()));
            if let Some(p) = &m.power {
                let mut v = format!(
                    "{} for {}",
                    p.state,
                    crate::domain::human_millis(app.now.saturating_sub(p.since))
                );
                if let Some(ms) = p.wake_ms {
                    v.push_str(&format!(", wakes in {}", crate::domain::human_millis(ms)));
                }
                if let Some(r) = &p.reason {
                    v.push_str(&format!(": {r}"));
                }
                lines.push(kv("power", v));
            }
            lines.push(kv("health", m.health.to_string()));
            lines.push(kv(
                "joined",
                format!(
                    "{} ago",
                    crate::domain::human_millis(app.now.saturating_sub(m.joined_at))
                ),
            ));
            lines.push(kv(
                "reachable",
                match (m.reachable, m.last_contact_ms) {
                    (Some(true), Some(c)) => {
                        format!("yes (heard {} ago)", crate::domain::human_millis(c))
                    }
                    (Some(false), Some(c)) => {
                        format!("no (last heard {} ago)", crate::domain::human_millis(c))
                    }
                    (Some(false), None) => "no (never heard)".into(),
                    _ => "not judged from this node".into(),
                },
            ));
            if let Some(i) = m.matched_index {
                lines.push(kv("replicated to", format!("index {i}")));
            }
        }
        None => lines.push(Line::from(Span::styled(
            "not a registered member (it sends metrics, but the store has no record of it)",
            theme.warn(),
        ))),
    }
    match r.metrics {
        Some(n) => {
            lines.push(kv(
                "cpu / mem",
                format!(
                    "{:.0}% / {:.0}% of {:.1} GiB",
                    n.cpu * 100.0,
                    n.mem * 100.0,
                    n.mem_total as f64 / (1u64 << 30) as f64
                ),
            ));
            lines.push(kv(
                "network",
                format!("rx {} · tx {}", rate(n.net_rx), rate(n.net_tx)),
            ));
            lines.push(kv("gpu", n.gpu.trim_start_matches("gpu: ").to_string()));
            if let Some(c) = &n.carbon {
                lines.push(kv("carbon", c.clone()));
            }
            lines.push(kv(
                "sample age",
                crate::domain::human_millis(n.sample_age_ms),
            ));
            for a in &n.anomalies {
                lines.push(Line::from(Span::styled(
                    format!("! {}: {}", a.series, a.reason),
                    theme.bad(),
                )));
            }
        }
        None => lines.push(Line::from(Span::styled(
            "no metrics in the snapshot",
            theme.dim(),
        ))),
    }
    f.render_widget(
        scrolled(
            Paragraph::new(lines).wrap(ratatui::widgets::Wrap { trim: false }),
            format!(" {} (esc back) ", r.name),
            app,
            area,
        ),
        area,
    );
}
