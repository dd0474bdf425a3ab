//! `aether traffic`: per slice and entry point calls/s, error rate and latency quantiles, the
//! requests waiting, the last call, and each instance's share.

use std::io::{self, Write};

use super::{table, write_json};
use crate::admin::protocol::TrafficView;
use crate::domain::{Millis, human_millis};

/// A latency in ms, short: `0.8ms`, `48ms`, `1.2s`; `-` without calls.
pub(crate) fn latency(ms: Option<f64>) -> String {
    match ms {
        None => "-".into(),
        Some(v) if v < 10.0 => format!("{v:.1}ms"),
        Some(v) if v < 1000.0 => format!("{v:.0}ms"),
        Some(v) => format!("{:.1}s", v / 1000.0),
    }
}

/// An error rate as a percent; `-` without calls.
pub(crate) fn error_rate(rate: f64, calls_per_s: f64) -> String {
    if calls_per_s > 0.0 {
        format!("{:.1}%", rate * 100.0)
    } else {
        "-".into()
    }
}

/// Calls per second, one decimal.
pub(crate) fn rate(v: f64) -> String {
    format!("{v:.1}")
}

/// `aether traffic`. The last call's age is counted from `now` (Unix ms).
pub fn traffic(w: &mut dyn Write, t: &TrafficView, now: Millis, json: bool) -> io::Result<()> {
    if json {
        return write_json(w, t);
    }
    if t.slices.is_empty() {
        return writeln!(
            w,
            "no slice declares a service: add [slices.service] (a port and its entry points) to a \
             blueprint; 'aether blueprint list' shows the stored ones"
        );
    }
    match t.snapshot_age_ms {
        Some(age) => writeln!(
            w,
            "requests over the last {}s, seen by {} (metrics snapshot {} old)",
            t.window_secs,
            t.seen_by,
            human_millis(age)
        )?,
        None => writeln!(
            w,
            "no metrics snapshot yet on {}: the counts below start with the first one",
            t.seen_by
        )?,
    }
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for s in &t.slices {
        let x = &s.traffic;
        let Some(port) = s.port else {
            notes.push(format!(
                "{} declares no [slices.service]: no request reaches it through the ingress",
                s.slice
            ));
            continue;
        };
        rows.push(vec![
            s.slice.clone(),
            port.to_string(),
            "(all)".into(),
            rate(x.calls_per_s),
            error_rate(x.error_rate, x.calls_per_s),
            latency(x.p50_ms),
            latency(x.p95_ms),
            latency(x.p99_ms),
            x.waiting.to_string(),
            match x.last_call_at {
                Some(at) => format!("{} ago", human_millis(now.saturating_sub(at))),
                None => "-".into(),
            },
        ]);
        for e in &x.entries {
            rows.push(vec![
                String::new(),
                String::new(),
                e.name.clone(),
                rate(e.calls_per_s),
                error_rate(e.error_rate, e.calls_per_s),
                latency(e.p50_ms),
                latency(e.p95_ms),
                latency(e.p99_ms),
                String::new(),
                String::new(),
            ]);
        }
        if !x.instances.is_empty() {
            let shares: Vec<String> = x
                .instances
                .iter()
                .map(|(i, share)| format!("{}/{i} {:.0}%", s.slice, share * 100.0))
                .collect();
            notes.push(format!("{} instances: {}", s.slice, shares.join(", ")));
        }
    }
    if !rows.is_empty() {
        write!(
            w,
            "{}",
            table(
                &[
                    "SLICE",
                    "PORT",
                    "ENTRY",
                    "CALLS/S",
                    "ERRORS",
                    "P50",
                    "P95",
                    "P99",
                    "WAITING",
                    "LAST CALL"
                ],
                &rows
            )
        )?;
    }
    for n in notes {
        writeln!(w, "{n}")?;
    }
    Ok(())
}
