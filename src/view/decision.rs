//! A decision as text: its status column and its full account, as `aether decisions` and the
//! console's details show them.

use crate::domain::human_millis;

/// The status column of a decision: `pending (9s left)`, `vetoed by uid:0@n1`.
pub fn state(d: &crate::domain::Decision, now: u64) -> String {
    use crate::domain::DecisionStatus as S;
    match &d.status {
        S::Pending { deadline } if *deadline > now => {
            format!("pending ({} left)", human_millis(deadline - now))
        }
        S::Pending { .. } => "pending (due)".into(),
        S::Vetoed { by, reverted, .. } => match reverted {
            Some(r) => format!("vetoed by {by} ({r})"),
            None => format!("vetoed by {by}"),
        },
        S::Applied { by, .. } => format!("applied by {by}"),
        s => s.word().into(),
    }
}

/// A decision in full, as `aether decisions show` prints it and the console's details show it.
pub fn text(d: &crate::domain::Decision, now: u64) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    macro_rules! w {
        ($($t:tt)*) => {{
            let _ = writeln!(out, $($t)*);
        }};
    }
    w!("{}  {}", d.name(), d.action);
    w!("status:   {}", state(d, now));
    use crate::domain::DecisionStatus as S;
    match &d.status {
        S::Vetoed {
            reason: Some(r), ..
        } => w!("          reason: {r}"),
        S::Rejected { reason } | S::Superseded { reason } | S::Expired { reason } => {
            w!("          {reason}")
        }
        S::Failed { error } => w!("          {error}"),
        _ => {}
    }
    w!(
        "made:     {} ago by {} in {} mode, rule {}",
        human_millis(now.saturating_sub(d.at)),
        d.by,
        d.mode,
        d.rule
    );
    w!("layers:   {}", d.layers.join(" → "));
    w!("\nreasoning:");
    for r in &d.reasoning {
        w!("  - {r}");
    }
    if let Some(r) = &d.review {
        w!(
            "\nreview ({}, {} ms): {}{}: {}",
            r.reviewer,
            r.latency_ms,
            r.verdict,
            r.adjust_to.map(|n| format!(" to {n}")).unwrap_or_default(),
            r.reason
        );
    }
    w!("\ninputs:");
    for (k, v) in &d.inputs {
        w!("  {k:<24} {v}");
    }
    w!("\ntimeline:");
    for (at, what) in &d.timeline {
        w!(
            "  {}  ({} ago)  {what}",
            crate::domain::clock_time(*at),
            human_millis(now.saturating_sub(*at))
        );
    }
    match &d.outcome {
        Some(o) => w!("\noutcome:  {}: {}", o.verdict, o.detail),
        None if matches!(d.status, S::Applied { .. }) => {
            w!("\noutcome:  not checked yet (after it converges and controller.outcome_after)")
        }
        None => {}
    }
    out
}
