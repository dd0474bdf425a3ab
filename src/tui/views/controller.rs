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
    let advice = advice_lines(app, theme, area.width);
    let [head, adv, rest] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(advice.len() as u16),
        Constraint::Min(3),
    ])
    .areas(area);
    f.render_widget(Paragraph::new(head_line(app, theme)), head);
    f.render_widget(Paragraph::new(advice), adv);
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
    // Columns as wide as their widest text in view (within bounds); what is left goes to
    // WHY: the first reason, or the review's verdict when there is none.
    let shown = window(app, table, rows.len());
    let texts: Vec<[String; 4]> = shown
        .clone()
        .map(|i| {
            let d = rows[i];
            [
                app.status_text(d),
                d.action.to_string(),
                d.rule.clone(),
                d.reasoning
                    .first()
                    .cloned()
                    .or_else(|| d.review.as_ref().map(|r| format!("review: {}", r.verdict)))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    let widest = |k: usize, head: &str, max: usize| {
        texts
            .iter()
            .map(|t| t[k].chars().count())
            .chain([head.len()])
            .max()
            .unwrap_or(0)
            .min(max) as u16
    };
    let (status_w, action_w, rule_w) = (
        widest(0, "STATUS", 40),
        widest(1, "ACTION", 40),
        widest(2, "RULE", 16),
    );
    // ID, AGE, the three above and the spaces between six columns.
    let why_w = usize::from(table.width)
        .saturating_sub(6 + 6 + usize::from(status_w + action_w + rule_w) + 5);
    let body: Vec<(usize, Row)> = shown
        .zip(texts)
        .map(|(i, [status, action, rule, why])| {
            let why = if why_w < 16 {
                String::new()
            } else if why.chars().count() > why_w {
                let mut cut: String = why.chars().take(why_w - 1).collect();
                cut.push('…');
                cut
            } else {
                why
            };
            let d = rows[i];
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
                Line::from(action),
                Line::from(rule),
                Line::from(Span::styled(why, theme.dim())),
            ]);
            (i, row)
        })
        .collect();
    let widths = [
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(status_w),
        Constraint::Length(action_w),
        Constraint::Length(rule_w),
        Constraint::Fill(1),
    ];
    f.render_widget(
        list_table(
            &[
                "ID",
                "AGE",
                "STATUS",
                "ACTION",
                "RULE",
                if why_w < 16 { "" } else { "WHY" },
            ],
            &widths,
            body,
            app,
            theme,
        ),
        table,
    );
    reasoning(f, detail, sel, theme);
}

/// Most advice items listed above the decisions.
const ADVICE_SHOWN: usize = 3;

/// The leader's advice, when its strategic layer runs: a line of where it comes from and its
/// counters, then its items (at most [`ADVICE_SHOWN`]), each cut to `width`. None when off.
fn advice_lines(app: &App, theme: &Theme, width: u16) -> Vec<Line<'static>> {
    let Some(a) = &app.data.advice else {
        return Vec::new();
    };
    let cut = |s: String| -> String {
        let w = usize::from(width).max(8);
        if s.chars().count() > w {
            s.chars().take(w - 1).chain(['…']).collect()
        } else {
            s
        }
    };
    let age = |at: u64| human_millis(app.now.saturating_sub(at));
    let mut head = format!(
        " advice ({} via {}): {} ok, {} invalid, {} failed, {} timeouts",
        a.model, a.endpoint, a.ok, a.invalid, a.failed, a.timeouts
    );
    if let Some(at) = a.at {
        head.push_str(&format!(" · answered {} ago", age(at)));
    }
    if !a.items.is_empty() {
        head.push_str(" · t takes one");
    }
    let mut out = vec![Line::from(Span::styled(cut(head), theme.title()))];
    if let (Some(e), Some(at)) = (&a.last_error, a.last_error_at)
        && a.at.is_none_or(|ok| at > ok)
    {
        out.push(Line::from(Span::styled(
            cut(format!("   last error {} ago: {e}", age(at))),
            theme.warn(),
        )));
    }
    for i in a.items.iter().take(ADVICE_SHOWN) {
        let what = match (i.count, &i.when) {
            (Some(c), Some(w)) => format!("{} {} {c} ({w})", i.kind, i.target),
            (Some(c), None) => format!("{} {} {c}", i.kind, i.target),
            _ => format!("{} {}", i.kind, i.target),
        };
        out.push(Line::from(vec![
            Span::styled(format!("   {} ", i.id), theme.title()),
            Span::raw(cut(format!("{} — {}", what.trim_end(), i.reason))),
        ]));
    }
    if a.items.len() > ADVICE_SHOWN {
        out.push(Line::from(Span::styled(
            format!(
                "   … {} more: 'aether advice' lists them",
                a.items.len() - ADVICE_SHOWN
            ),
            theme.dim(),
        )));
    }
    out
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
    // Beside the reasoning when the review fits there (given up to half the width), else
    // under it, as tall as its text.
    let review = Paragraph::new(review).wrap(Wrap { trim: true });
    let rows_at = |w: u16| review.line_count(w.saturating_sub(2)) as u16 + 2;
    let beside = (area.width >= 120)
        .then(|| {
            [40u16, 50].into_iter().find_map(|pct| {
                let w = area.width * pct / 100;
                (rows_at(w) <= area.height).then_some(w)
            })
        })
        .flatten();
    let (a, b) = match beside {
        Some(w) => {
            let [a, b] =
                Layout::horizontal([Constraint::Min(20), Constraint::Length(w)]).areas(area);
            (a, b)
        }
        None => {
            let review_h =
                rows_at(area.width).min(area.height.saturating_sub(4).max(area.height / 2));
            let [a, b] =
                Layout::vertical([Constraint::Min(2), Constraint::Length(review_h)]).areas(area);
            (a, b)
        }
    };
    f.render_widget(
        Paragraph::new(why)
            .wrap(Wrap { trim: true })
            .block(Block::bordered().title(" reasoning (rules) ")),
        a,
    );
    let title = if rows_at(b.width) > b.height {
        " review (model) · cut: Enter shows it all "
    } else {
        " review (model) "
    };
    f.render_widget(review.block(Block::bordered().title(title)), b);
}
