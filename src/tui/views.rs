//! Drawing: the frame around every view (header, tabs, status bar), the overlays (help,
//! confirm, details) and small text widgets shared by the views. Reads [`App`]; changes nothing.

mod blueprints;
mod controller;
mod events;
mod nodes;
mod overview;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use super::app::{App, LinkState, Mode, View};
use super::keymap::{Action, TABLE};
use crate::domain::human_millis;

/// Colours: the 16 basic ones only (they follow the terminal's palette), or none at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    /// Colour unless `NO_COLOR` is set (to anything non-empty, per no-color.org).
    pub fn from_env() -> Theme {
        Theme {
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }

    fn fg(&self, c: Color, fallback: Modifier) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new().add_modifier(fallback)
        }
    }

    pub fn ok(&self) -> Style {
        self.fg(Color::Green, Modifier::empty())
    }
    pub fn warn(&self) -> Style {
        self.fg(Color::Yellow, Modifier::BOLD)
    }
    pub fn bad(&self) -> Style {
        self.fg(Color::Red, Modifier::BOLD | Modifier::UNDERLINED)
    }
    pub fn accent(&self) -> Style {
        self.fg(Color::Cyan, Modifier::BOLD)
    }
    pub fn dim(&self) -> Style {
        self.fg(Color::DarkGray, Modifier::empty())
    }
    pub fn title(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }
    pub fn selected(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }
    /// A second series in a chart (the forecast, tx, temperature).
    pub fn second(&self) -> Style {
        self.fg(Color::Magenta, Modifier::empty())
    }
    /// A ratio's style: calm, busy, near full.
    pub fn level(&self, v: f32) -> Style {
        if v >= 0.9 {
            self.bad()
        } else if v >= 0.7 {
            self.warn()
        } else {
            self.ok()
        }
    }
}

/// Draw the whole console.
pub fn draw(f: &mut Frame, app: &App, theme: &Theme) {
    let [header, tabs, body, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(f.area());
    f.render_widget(Paragraph::new(header_line(app, theme)), header);
    f.render_widget(Paragraph::new(tabs_line(app, theme)), tabs);
    if app.help {
        help(f, body, app, theme);
    } else {
        match app.view {
            View::Overview => overview::draw(f, body, app, theme),
            View::Nodes => nodes::draw(f, body, app, theme),
            View::Blueprints => blueprints::draw(f, body, app, theme),
            View::Controller => controller::draw(f, body, app, theme),
            View::Events => events::draw(f, body, app, theme),
        }
    }
    f.render_widget(Paragraph::new(status_line(app, theme)), status);
    if let Mode::Confirm(c) = &app.mode {
        let mut lines = vec![
            Line::from(Span::styled(c.title.clone(), theme.title())),
            Line::from(""),
        ];
        lines.extend(c.detail.iter().map(|d| Line::from(d.clone())));
        lines.push(Line::from(""));
        lines.push(Line::from(vec![
            Span::styled("y", theme.accent()),
            Span::raw(" yes   "),
            Span::styled("n", theme.accent()),
            Span::raw("/"),
            Span::styled("esc", theme.accent()),
            Span::raw(" no"),
        ]));
        popup(f, f.area(), "confirm", Text::from(lines), theme);
    }
}

/// A centred box over the body with `text` wrapped inside.
pub fn popup(f: &mut Frame, area: Rect, title: &str, text: Text<'_>, theme: &Theme) {
    let w = area.width.saturating_sub(4).clamp(20, 72);
    let inner_w = w.saturating_sub(4).max(1) as usize;
    let lines: u16 = text
        .lines
        .iter()
        .map(|l| (l.width().max(1).div_ceil(inner_w)) as u16)
        .sum();
    let h = (lines + 2).min(area.height.saturating_sub(2)).max(3);
    let r = Rect {
        x: area.x + (area.width.saturating_sub(w)) / 2,
        y: area.y + (area.height.saturating_sub(h)) / 2,
        width: w.min(area.width),
        height: h,
    };
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(text).wrap(Wrap { trim: false }).block(
            Block::bordered()
                .title(format!(" {title} "))
                .border_style(theme.accent())
                .padding(ratatui::widgets::Padding::horizontal(1)),
        ),
        r,
    );
}

fn header_line(app: &App, theme: &Theme) -> Line<'static> {
    let mut spans = vec![Span::styled(
        " aether ",
        theme.accent().add_modifier(Modifier::REVERSED),
    )];
    let sep = || Span::styled(" · ", theme.dim());
    let Some(s) = &app.data.status else {
        spans.push(Span::raw(" waiting for the node…"));
        return Line::from(spans);
    };
    spans.push(Span::raw(format!(" {} ", s.node.name)));
    spans.push(sep());
    match &s.leader {
        Some(l) if s.leader_unreachable() => spans.push(Span::styled(
            format!("leader {} unreachable (term {})", l.name, s.term),
            theme.bad(),
        )),
        Some(l) => spans.push(Span::raw(format!("leader {} (term {})", l.name, s.term))),
        None => spans.push(Span::styled("no leader: election under way", theme.bad())),
    }
    let total = s.members.len();
    let ready = s
        .members
        .iter()
        .filter(|m| m.health == crate::domain::Health::Ready)
        .count();
    spans.push(sep());
    spans.push(Span::styled(
        format!("{ready}/{total} ready"),
        if ready == total {
            theme.ok()
        } else {
            theme.warn()
        },
    ));
    if let Some(c) = &s.controller {
        spans.push(sep());
        if let Some(p) = &c.paused {
            spans.push(Span::styled(format!("PAUSED by {}", p.by), theme.bad()));
        } else {
            spans.push(Span::raw(c.mode.to_string()));
        }
    }
    if let Some(d) = app.running_drill() {
        spans.push(sep());
        spans.push(Span::styled(format!("DRILL {d}"), theme.warn()));
    }
    // The model that decides is the leader's; on a follower its own is idle by design.
    let leader_model = s
        .controller
        .as_ref()
        .and_then(|c| c.leader_reviewer.as_ref())
        .filter(|r| r.node != s.node.name);
    if let Some(r) = leader_model {
        spans.push(sep());
        spans.push(Span::raw(format!("model {} on {}", r.state, r.node)));
    } else if let Some(m) = &app.data.model {
        spans.push(sep());
        spans.push(Span::raw(format!("model {}", model_word(&m.state))));
    }
    Line::from(spans)
}

/// The model's state in one word.
pub fn model_word(s: &crate::controller::model::ModelState) -> &'static str {
    use crate::controller::model::ModelState as M;
    match s {
        M::Disabled => "disabled",
        M::Absent => "absent",
        M::Idle => "idle",
        M::Loading => "loading",
        M::Ready => "ready",
        M::Failed(_) => "failed",
    }
}

fn tabs_line(app: &App, theme: &Theme) -> Line<'static> {
    let mut spans = vec![Span::raw(" ")];
    for v in View::ALL {
        let label = format!(" {} {} ", v.index() + 1, v.title());
        spans.push(if v == app.view {
            Span::styled(label, theme.selected().add_modifier(Modifier::BOLD))
        } else {
            Span::raw(label)
        });
    }
    if !app.filter().is_empty() && app.mode != Mode::Filter {
        spans.push(Span::styled(format!("  /{}", app.filter()), theme.accent()));
    }
    Line::from(spans)
}

fn status_line(app: &App, theme: &Theme) -> Line<'static> {
    match &app.mode {
        Mode::Filter => {
            return Line::from(vec![
                Span::styled("/", theme.accent()),
                Span::raw(app.input.clone()),
                Span::styled("█", theme.dim()),
                Span::styled("   enter keep · esc clear · ! first inverts", theme.dim()),
            ]);
        }
        Mode::Command => {
            return Line::from(vec![
                Span::styled(":", theme.accent()),
                Span::raw(app.input.clone()),
                Span::styled("█", theme.dim()),
                Span::styled("   enter run · esc cancel · :help", theme.dim()),
            ]);
        }
        _ => {}
    }
    let mut spans = Vec::new();
    let mut reason = None;
    match &app.link {
        LinkState::Connecting => spans.push(Span::styled(" connecting… ", theme.warn())),
        LinkState::Live => spans.push(Span::styled(" ● live ", theme.ok())),
        LinkState::Reconnecting { reason: r, since } => {
            spans.push(Span::styled(
                format!(
                    " reconnecting… data as of {} ago ",
                    human_millis(app.now.saturating_sub(*since))
                ),
                theme.bad(),
            ));
            reason = Some(r.clone());
        }
    }
    if app.readonly {
        spans.push(Span::styled(
            " READ-ONLY ",
            theme.warn().add_modifier(Modifier::REVERSED),
        ));
    }
    if let Some(fl) = &app.flash {
        spans.push(Span::styled(
            format!(" {} ", fl.text),
            if fl.error {
                theme.bad()
            } else {
                theme.accent()
            },
        ));
    } else if let Some(r) = reason {
        spans.push(Span::styled(format!(" {r}"), theme.dim()));
    } else {
        spans.push(Span::styled(
            format!(
                " {} help · {} quit",
                app.keys.keys_of(Action::Help),
                app.keys.keys_of(Action::Quit)
            ),
            theme.dim(),
        ));
    }
    Line::from(spans)
}

/// What the marks in the views mean, for the help.
pub const MARKS: &[(&str, &str)] = &[
    (
        "! beside a node",
        "an anomaly: one of its series is far from its median (Enter on it in Nodes says which)",
    ),
    (
        "down 12s, stale 12s",
        "the node is down, or its last sample is that old: the values shown are its last ones, dimmed",
    ),
    (
        "2/3! (slices)",
        "active/desired instances; ! some copies fail their health check or are in backoff",
    ),
    (
        "dimmed decisions",
        "on the Overview, after the open ones: the newest closed ones and who closed them",
    ),
];

fn help(f: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let mut lines = vec![Line::from(Span::styled("Keys", theme.title()))];
    for (action, _, _, text) in TABLE {
        let off = app.readonly
            && matches!(
                action,
                Action::Veto
                    | Action::Approve
                    | Action::Pause
                    | Action::Promote
                    | Action::Abort
                    | Action::Undo
            );
        lines.push(Line::from(vec![
            Span::styled(
                format!("  {:<14}", app.keys.keys_of(*action)),
                theme.accent(),
            ),
            Span::styled(
                format!("{text}{}", if off { " (disabled: --readonly)" } else { "" }),
                if off { theme.dim() } else { Style::new() },
            ),
        ]));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        "Commands (after :)",
        theme.title(),
    )));
    for (c, text) in App::COMMANDS {
        lines.push(Line::from(vec![
            Span::styled(format!("  {c:<20}"), theme.accent()),
            Span::raw(*text),
        ]));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled("Marks", theme.title())));
    for (mark, text) in MARKS {
        lines.push(Line::from(vec![
            Span::styled(format!("  {mark:<20}"), theme.accent()),
            Span::raw(*text),
        ]));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        "In a dialog: y confirms, n or esc cancels. Keys can be changed in [tui.keys] of the config file.",
        theme.dim(),
    )));
    f.render_widget(
        scrolled(
            Paragraph::new(lines),
            " help (esc closes, j/k scroll) ",
            app,
            area,
        ),
        area,
    );
}

/// Empty-state text: the view's source is not there (yet), and why.
pub fn empty(f: &mut Frame, area: Rect, text: &str, theme: &Theme) {
    f.render_widget(
        Paragraph::new(Line::from(Span::styled(text.to_string(), theme.dim())))
            .wrap(Wrap { trim: true }),
        area,
    );
}

/// `▕████░░░░▏ 45%` in `width` cells.
pub fn bar(v: f32, width: usize) -> String {
    let v = if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let cells = width.max(1);
    let full = ((v * cells as f32).round() as usize).min(cells);
    format!("{}{}", "█".repeat(full), "░".repeat(cells - full))
}

/// A sparkline of 0.0–1.0 values in `width` cells (the newest at the right).
pub fn spark(values: impl IntoIterator<Item = f32>, width: usize) -> String {
    const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let v: Vec<f32> = values.into_iter().collect();
    let start = v.len().saturating_sub(width);
    let mut s: String = v[start..]
        .iter()
        .map(|x| {
            if x.is_finite() {
                LEVELS[((x.clamp(0.0, 1.0) * 7.0).round() as usize).min(7)]
            } else {
                ' '
            }
        })
        .collect();
    let pad = width.saturating_sub(v.len() - start);
    s.insert_str(0, &" ".repeat(pad));
    s
}

/// Bytes per second as `12.3 MB/s`.
pub fn rate(v: f32) -> String {
    let v = v.max(0.0) as f64;
    if v >= 1e9 {
        format!("{:.1} GB/s", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.1} MB/s", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} kB/s", v / 1e3)
    } else {
        format!("{v:.0} B/s")
    }
}

/// A percentage, `45%`.
pub fn pct(v: f32) -> String {
    format!("{:>3.0}%", (v * 100.0).clamp(0.0, 999.0))
}

/// The rows of a list of `n` that fit a table in `area` (one line for its header), with the
/// selected one in view.
pub fn window(app: &App, area: Rect, n: usize) -> std::ops::Range<usize> {
    let height = area.height.saturating_sub(1) as usize;
    let start = scroll_start(app.selected(), height);
    start..n.min(start + height)
}

/// A table of (row index, row) under `header`, the selected row reversed.
pub fn list_table<'a>(
    header: &[&'a str],
    widths: &[Constraint],
    rows: Vec<(usize, ratatui::widgets::Row<'a>)>,
    app: &App,
    theme: &Theme,
) -> ratatui::widgets::Table<'a> {
    let rows = rows.into_iter().map(|(i, r)| {
        if i == app.selected() {
            r.style(theme.selected())
        } else {
            r
        }
    });
    ratatui::widgets::Table::new(rows, widths.to_vec())
        .header(ratatui::widgets::Row::new(header.to_vec()).style(theme.title()))
        .column_spacing(1)
}

/// Rows of a list that fit `height` with the selected one in view: the first row to show.
pub fn scroll_start(selected: usize, height: usize) -> usize {
    if height == 0 {
        return 0;
    }
    selected.saturating_sub(height - 1)
}

/// `p` in a bordered box titled `title`, scrolled by the app's offset but never past its
/// content (the last line stays at the bottom); the limit is left in `app.scroll_max` for the
/// next key.
pub fn scrolled<'a>(
    p: Paragraph<'a>,
    title: impl Into<Line<'a>>,
    app: &App,
    area: Rect,
) -> Paragraph<'a> {
    let p = p.block(Block::bordered().title(title));
    let max = p
        .line_count(area.width.saturating_sub(2))
        .saturating_sub(usize::from(area.height));
    let max = max.min(usize::from(u16::MAX)) as u16;
    app.scroll_max.set(max);
    p.scroll((app.scroll.min(max), 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_and_sparks_fit_their_width() {
        assert_eq!(bar(0.5, 8), "████░░░░");
        assert_eq!(bar(f32::NAN, 4), "░░░░");
        assert_eq!(bar(3.0, 4), "████");
        assert_eq!(spark([0.0, 0.5, 1.0], 5), "  ▁▅█");
        assert_eq!(spark((0..10).map(|_| 1.0), 4), "████");
        assert_eq!(spark([f32::NAN], 2), "  ");
    }
}
