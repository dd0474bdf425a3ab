//! `5` Events: the audit log, newest first: when, who, what, and the outcome.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Wrap};

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
    let body: Vec<(usize, Row)> = window(app, area, rows.len())
        .map(|i| {
            let e = rows[i];
            let row = Row::new(vec![
                Line::from(clock_time(e.at)),
                Line::from(e.actor.clone()),
                Line::from(e.what.clone()),
                Line::from(Span::styled(
                    e.outcome.clone(),
                    if e.outcome == "ok" {
                        theme.ok()
                    } else {
                        theme.bad()
                    },
                )),
            ]);
            (i, row)
        })
        .collect();
    let widths = [
        Constraint::Length(9),
        Constraint::Length(16),
        Constraint::Min(20),
        Constraint::Length(14),
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
