//! `4` Controller: the decision stream, newest first, with status (pending ones count down
//! their grace window), action and rule; the selected decision's reasoning wrapped to the
//! width, with the model's review beside it; Enter shows it in full.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Paragraph, Row, Wrap};

use super::{Theme, empty, list_table, scrolled, window};
use crate::domain::{Decision, human_millis};
use crate::tui::app::App;

pub fn draw(f: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let [head, rest] = Layout::vertical([Constraint::Length(1), Constraint::Min(3)]).areas(area);
    f.render_widget(Paragraph::new(head_line(app, theme)), head);
    let rows = app.decisions();
    if rows.is_empty() {
        let text = if !app.filter().is_empty() {
            "no decision matches the filter (esc clears it)"
        } else {
            "no decisions yet: the leader's controller records one when a rule or the forecast \
             calls for a change"
        };
        return empty(f, rest, text, theme);
    }
    let sel = rows[app.selected().min(rows.len() - 1)];
    if app.detail {
        let text = crate::view::decision::text(sel, app.now);
        return f.render_widget(
            scrolled(
                Paragraph::new(text).wrap(Wrap { trim: false }),
                format!(" {} (esc back, j/k scroll) ", sel.name()),
                app,
                rest,
            ),
            rest,
        );
    }
    let list_h = (rows.len() as u16 + 1).clamp(3, (rest.height / 2).max(3));
    let [table, detail] =
        Layout::vertical([Constraint::Length(list_h), Constraint::Min(3)]).areas(rest);
    let body: Vec<(usize, Row)> = window(app, table, rows.len())
        .map(|i| {
            let d = rows[i];
            let status = app.status_text(d);
            let style = match d.status.word() {
                "pending" | "proposed" => theme.warn(),
                "applied" => theme.ok(),
                "vetoed" | "rejected" | "failed" => theme.bad(),
                _ => theme.dim(),
            };
            let row = Row::new(vec![
                Line::from(d.name()),
                Line::from(human_millis(app.now.saturating_sub(d.at))),
                Line::from(Span::styled(status, style)),
                Line::from(d.action.to_string()),
                Line::from(d.rule.clone()),
            ]);
            (i, row)
        })
        .collect();
    let widths = [
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(26),
        Constraint::Min(18),
        Constraint::Length(14),
    ];
    f.render_widget(
        list_table(
            &["ID", "AGE", "STATUS", "ACTION", "RULE"],
            &widths,
            body,
            app,
            theme,
        ),
        table,
    );
    reasoning(f, detail, sel, theme);
}

fn head_line(app: &App, theme: &Theme) -> Line<'static> {
    let Some(c) = app.data.status.as_ref().and_then(|s| s.controller.as_ref()) else {
        return Line::from(Span::styled("controller state not known yet", theme.dim()));
    };
    let mut v = vec![Span::styled(format!(" mode {}", c.mode), theme.title())];
    if c.mode == crate::domain::ControllerMode::Guarded {
        v.push(Span::raw(format!(" (grace {})", human_millis(c.grace_ms))));
    }
    match &c.paused {
        Some(p) => v.push(Span::styled(format!(" · PAUSED by {}", p.by), theme.bad())),
        None => v.push(Span::styled(" · running", theme.ok())),
    }
    v.push(Span::raw(format!(
        " · {} pending · {} proposed",
        c.pending, c.proposed
    )));
    if app.width >= 120 {
        v.push(Span::styled(
            format!(" · reviewer: {}", c.reviewer),
            theme.dim(),
        ));
    }
    Line::from(v)
}

fn reasoning(f: &mut Frame, area: Rect, d: &Decision, theme: &Theme) {
    let mut why: Vec<Line> = vec![Line::from(vec![
        Span::styled(format!("{} ", d.name()), theme.title()),
        Span::raw(d.action.to_string()),
    ])];
    why.push(Line::from(Span::styled(
        format!("rule {} · layers {}", d.rule, d.layers.join(" → ")),
        theme.dim(),
    )));
    why.extend(d.reasoning.iter().map(|r| Line::from(format!("· {r}"))));
    let review: Text = match &d.review {
        Some(r) => {
            let style = match r.verdict.as_str() {
                "approve" => theme.ok(),
                "reject" => theme.bad(),
                _ => theme.warn(),
            };
            Text::from(vec![
                Line::from(vec![
                    Span::styled(
                        format!(
                            "{}{}",
                            r.verdict,
                            r.adjust_to.map(|n| format!(" to {n}")).unwrap_or_default()
                        ),
                        style,
                    ),
                    Span::styled(
                        format!("  {} · {} ms", r.reviewer, r.latency_ms),
                        theme.dim(),
                    ),
                ]),
                Line::from(r.reason.clone()),
            ])
        }
        None => Text::from(Span::styled(
            "no review: the rules and the forecast decided alone",
            theme.dim(),
        )),
    };
    let wide = area.width >= 120;
    let (a, b) = if wide {
        let [a, b] = Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)])
            .areas(area);
        (a, b)
    } else {
        // The review's text wrapped to the width, plus its first line and the borders.
        let inner = area.width.saturating_sub(2).max(1) as usize;
        let text_lines = d
            .review
            .as_ref()
            .map(|r| r.reason.chars().count().div_ceil(inner) as u16)
            .unwrap_or(1);
        let review_h = (text_lines + 3).min(area.height / 2);
        let [a, b] =
            Layout::vertical([Constraint::Min(2), Constraint::Length(review_h)]).areas(area);
        (a, b)
    };
    f.render_widget(
        Paragraph::new(why)
            .wrap(Wrap { trim: true })
            .block(Block::bordered().title(" reasoning (rules) ")),
        a,
    );
    f.render_widget(
        Paragraph::new(review)
            .wrap(Wrap { trim: true })
            .block(Block::bordered().title(" review (model) ")),
        b,
    );
}
