//! `5` Events: the audit log, newest first: when, who, what, and the outcome.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Cell, Paragraph, Row, Wrap};

use super::{Theme, empty, list_table, scrolled, window};
use crate::domain::{clock_time, human_millis};
use crate::tui::app::App;

pub fn draw(f: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let rows = app.events();
    if rows.is_empty() {
        let text = if !app.filter().is_empty() {
            "no event matches the filter (esc clears it)"
        } else {
            "no events yet"
        };
        return empty(f, area, text, theme);
    }
    if app.detail {
        let e = rows[app.selected().min(rows.len() - 1)];
        let text = vec![
            Line::from(format!(
                "#{}  {}  ({} ago)",
                e.seq,
                clock_time(e.at),
                human_millis(app.now.saturating_sub(e.at))
            )),
            Line::from(format!("who:      {}", e.actor)),
            Line::from(format!("what:     {}", e.what)),
            Line::from(format!("outcome:  {}", e.outcome)),
        ];
        return f.render_widget(
            scrolled(
                Paragraph::new(text).wrap(Wrap { trim: false }),
                " event (esc back) ",
                app,
                area,
            ),
            area,
        );
    }
    // WHO and OUTCOME as wide as their text in view (WHAT keeps 24 columns), WHAT takes the
    // rest and ends in … when cut; an outcome wider than its column wraps onto a second line.
    let shown = window(app, area, rows.len());
    let widest = |f: &dyn Fn(&crate::domain::AuditRecord) -> usize, head: &str, max: usize| {
        shown
            .clone()
            .map(|i| f(rows[i]))
            .chain([head.len()])
            .max()
            .unwrap_or(0)
            .min(max)
    };
    let width = usize::from(area.width);
    let who_w = widest(&|e| e.actor.chars().count(), "WHO", 20);
    let outcome_w = widest(
        &|e| e.outcome.chars().count(),
        "OUTCOME",
        (width / 3).max(7),
    );
    let what_w = width.saturating_sub(9 + who_w + outcome_w + 3).max(10);
    let cut = |s: &str, w: usize| {
        if s.chars().count() > w {
            let mut c: String = s.chars().take(w.saturating_sub(1)).collect();
            c.push('…');
            c
        } else {
            s.to_string()
        }
    };
    let body: Vec<(usize, Row)> = shown
        .map(|i| {
            let e = rows[i];
            let row = Row::new(vec![
                Cell::from(clock_time(e.at)),
                Cell::from(cut(&e.actor, who_w)),
                Cell::from(cut(&e.what, what_w)),
                Cell::from(Text::from(
                    wrap2(&e.outcome, outcome_w)
                        .into_iter()
                        .map(|l| {
                            Line::from(Span::styled(
                                l,
                                if e.outcome == "ok" {
                                    theme.ok()
                                } else {
                                    theme.bad()
                                },
                            ))
                        })
                        .collect::<Vec<_>>(),
                )),
            ]);
            let row = if e.outcome.chars().count() > outcome_w {
                row.height(2)
            } else {
                row
            };
            (i, row)
        })
        .collect();
    let widths = [
        Constraint::Length(9),
        Constraint::Length(who_w as u16),
        Constraint::Length(what_w as u16),
        Constraint::Length(outcome_w as u16),
    ];
    f.render_widget(
        list_table(
            &["TIME", "WHO", "WHAT", "OUTCOME"],
            &widths,
            body,
            app,
            theme,
        ),
        area,
    );
}

/// `s` in at most two lines of `w` characters, broken at a space where one is near, the
/// second ending in … when even that is not enough.
fn wrap2(s: &str, w: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= w || w < 4 {
        return vec![s.to_string()];
    }
    let at = chars[..=w]
        .iter()
        .rposition(|c| *c == ' ')
        .filter(|p| *p > w / 2)
        .unwrap_or(w);
    let first: String = chars[..at].iter().collect();
    let rest: String = chars[at..]
        .iter()
        .collect::<String>()
        .trim_start()
        .to_string();
    let second = if rest.chars().count() > w {
        let mut c: String = rest.chars().take(w - 1).collect();
        c.push('…');
        c
    } else {
        rest
    };
    vec![first.trim_end().to_string(), second]
}
