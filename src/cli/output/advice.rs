//! `aether advice` and `advice take`: the strategic layer's latest advice with its counters,
//! and the decision an item became.

use std::io::{self, Write};

use super::{opt, table, write_json};
use crate::domain::{AdviceView, Decision, Millis, human_millis};

/// `aether advice`: the items (id, kind, target, count, reason), then where they came from and
/// the request counters. `None`: no leader reports advice. Ages are counted from `now`.
pub fn advice(
    w: &mut dyn Write,
    a: Option<&AdviceView>,
    now: Millis,
    json: bool,
) -> io::Result<()> {
    if json {
        return write_json(w, &a);
    }
    let Some(a) = a else {
        writeln!(
            w,
            "no advice: the leader's strategic layer is off ([controller.advisor] enabled = false) or has not asked yet"
        )?;
        return Ok(());
    };
    match a.at {
        None => writeln!(w, "no valid advice yet")?,
        Some(_) if a.items.is_empty() => writeln!(w, "no items: the model had nothing to advise")?,
        Some(_) => {
            let rows: Vec<Vec<String>> = a
                .items
                .iter()
                .map(|i| {
                    let count = match (&i.count, &i.when) {
                        (Some(c), Some(when)) => format!("{c} ({when})"),
                        (c, _) => opt(c.as_ref()),
                    };
                    let target = if i.target.is_empty() {
                        "-".to_string()
                    } else {
                        i.target.clone()
                    };
                    vec![
                        i.id.clone(),
                        i.kind.to_string(),
                        target,
                        count,
                        i.reason.clone(),
                    ]
                })
                .collect();
            write!(
                w,
                "{}",
                table(&["ID", "KIND", "TARGET", "COUNT", "REASON"], &rows)
            )?;
        }
    }
    let age = |at: Millis| format!("{} ago", human_millis(now.saturating_sub(at)));
    write!(
        w,
        "\nfrom {} at {} (asked by {}, every {}",
        a.model,
        a.endpoint,
        a.node,
        human_millis(a.interval_ms)
    )?;
    if let (Some(at), Some(l)) = (a.at, a.latency_ms) {
        write!(w, "; answered {} in {}", age(at), human_millis(l))?;
    }
    writeln!(w, ")")?;
    writeln!(
        w,
        "requests {}: {} ok, {} invalid, {} failed, {} timeouts",
        a.requests, a.ok, a.invalid, a.failed, a.timeouts
    )?;
    if let (Some(e), Some(at)) = (&a.last_error, a.last_error_at) {
        writeln!(w, "last error {}: {}", age(at), super::one_line(e))?;
    }
    if a.items.iter().any(|i| i.kind.word() != "note") {
        writeln!(
            w,
            "advice never acts: 'aether advice take ID' proposes an item as a decision for approval"
        )?;
    }
    Ok(())
}

/// `aether advice take ID`: the proposed decision and how to approve it.
pub fn advice_taken(w: &mut dyn Write, d: &Decision, json: bool) -> io::Result<()> {
    if json {
        return write_json(w, d);
    }
    let from = d
        .inputs
        .iter()
        .find(|(k, _)| k == "advice")
        .map_or("advice", |(_, v)| v.as_str());
    writeln!(
        w,
        "proposed {}: {} (from {from}, {})",
        d.name(),
        d.action,
        d.layers.join(", ")
    )?;
    for r in &d.reasoning {
        writeln!(w, "  {}", super::one_line(r))?;
    }
    writeln!(
        w,
        "it waits for an operator: 'aether override approve {}' applies it, 'aether override veto {}' drops it",
        d.name(),
        d.name()
    )
}
