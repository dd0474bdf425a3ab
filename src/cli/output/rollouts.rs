//! `aether rollout list|status|history` and the answer to an operator's act: rollouts as a
//! table, one in full (what `status --watch` redraws), or as JSON objects.

use std::io::{self, Write};

use super::{table, write_json};
use crate::admin::protocol::{RolloutActView, RolloutStart, RolloutView};
use crate::domain::{Millis, clock_time, human_millis};
use crate::view::rollouts::copies_words;

/// History lines `status` shows (the newest).
const HISTORY_LINES: usize = 10;

/// `r-3 shop/web canary v6 → v7 running at analysis 2` (a finished one: `… succeeded`).
pub fn headline(v: &RolloutView) -> String {
    let at = if v.open {
        format!(" at {}", v.step)
    } else {
        String::new()
    };
    format!(
        "{} {} {} v{} → v{} {}{at}",
        v.name, v.target, v.strategy, v.from, v.to, v.state
    )
}

/// `3m10s ago`.
fn ago(now: Millis, at: Millis) -> String {
    format!("{} ago", human_millis(now.saturating_sub(at)))
}

/// `aether rollout status`: one rollout in full; with `watch`, as a frame of `--watch` (JSON:
/// one object per line).
pub fn rollout(
    w: &mut dyn Write,
    v: &RolloutView,
    now: Millis,
    json: bool,
    watch: bool,
) -> io::Result<()> {
    if json {
        if watch {
            return writeln!(w, "{}", serde_json::to_string(v).expect("views serialise"));
        }
        return write_json(w, v);
    }
    writeln!(w, "{}", headline(v))?;
    let label = |w: &mut dyn Write, name: &str, text: &str| writeln!(w, "{:<11}{text}", name);
    if v.open {
        label(w, "copies:", &copies_words(&v.copies))?;
        label(
            w,
            "wanted:",
            &format!("v{} {}, others {}", v.to, v.want_to, v.want_from),
        )?;
        label(w, "traffic:", &v.traffic)?;
        label(
            w,
            "step:",
            &format!(
                "{} for {}",
                v.step,
                human_millis(now.saturating_sub(v.step_since))
            ),
        )?;
    }
    label(w, "plan:", &format!("{}, {}", v.strategy, v.plan))?;
    if let Some(t) = &v.thresholds {
        label(w, "analysis:", t)?;
    }
    if let Some(a) = &v.analysis {
        label(
            w,
            "interval:",
            &format!(
                "round {} ({}–{}): {}",
                a.round,
                clock_time(a.from_at),
                clock_time(a.to_at),
                a.line()
            ),
        )?;
        if !a.detail.is_empty() {
            label(w, "", &a.detail)?;
        }
    }
    if let Some(r) = &v.reason {
        label(w, "reason:", r)?;
    }
    label(
        w,
        "started:",
        &format!(
            "{} ({}), {}",
            clock_time(v.started_at),
            ago(now, v.started_at),
            v.cause
        ),
    )?;
    if let Some(e) = v.ended_at {
        label(
            w,
            "ended:",
            &format!(
                "{} ({}), took {}",
                clock_time(e),
                ago(now, e),
                human_millis(e.saturating_sub(v.started_at))
            ),
        )?;
    }
    let skip = v.history.len().saturating_sub(HISTORY_LINES);
    if skip > 0 {
        writeln!(
            w,
            "history (the last {HISTORY_LINES} of {}):",
            v.history.len()
        )?;
    } else {
        writeln!(w, "history:")?;
    }
    for h in &v.history[skip..] {
        writeln!(w, "  {}  {}", clock_time(h.at), h.what)?;
    }
    if watch {
        if v.open {
            writeln!(
                w,
                "\nwatching {}: redrawn every second until it ends (ctrl-c stops watching, not the rollout)",
                v.name
            )?;
        } else {
            writeln!(w, "\n{} {}", v.name, v.state)?;
        }
    }
    Ok(())
}

/// Whether a watch of `v` is over, and with which exit code: 0 when it succeeded, 1 when it
/// failed (it then waits for an operator) or ended any other way.
pub fn watch_exit(v: &RolloutView) -> Option<i32> {
    match v.state.as_str() {
        "succeeded" => Some(0),
        "failed" => Some(1),
        _ if !v.open => Some(1),
        _ => None,
    }
}

/// `aether rollout list`.
pub fn rollouts(
    w: &mut dyn Write,
    list: &[RolloutView],
    now: Millis,
    json: bool,
) -> io::Result<()> {
    if json {
        return write_json(w, list);
    }
    if list.is_empty() {
        return writeln!(
            w,
            "no rollout in progress or in the last hour ('aether rollout history' lists older ones)"
        );
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|v| {
            vec![
                v.name.clone(),
                v.target.clone(),
                v.strategy.to_string(),
                format!("v{} → v{}", v.from, v.to),
                v.state.clone(),
                if v.open { v.step.clone() } else { "-".into() },
                if v.open {
                    copies_words(&v.copies)
                } else {
                    "-".into()
                },
                if v.open {
                    v.traffic.clone()
                } else {
                    "-".into()
                },
                ago(now, v.started_at),
            ]
        })
        .collect();
    write!(
        w,
        "{}",
        table(
            &[
                "ID", "SLICE", "STRATEGY", "VERSIONS", "STATE", "STEP", "COPIES", "TRAFFIC",
                "STARTED",
            ],
            &rows
        )
    )
}

/// `aether rollout history`; `target` is what was asked for (none: every slice).
pub fn rollout_history(
    w: &mut dyn Write,
    list: &[RolloutView],
    target: Option<&str>,
    now: Millis,
    json: bool,
) -> io::Result<()> {
    if json {
        return write_json(w, list);
    }
    if list.is_empty() {
        return match target {
            Some(t) => writeln!(
                w,
                "'{t}' has no rollouts: one starts when 'aether blueprint apply' changes a slice's processes"
            ),
            None => writeln!(
                w,
                "no rollouts yet: one starts when 'aether blueprint apply' changes a slice's processes"
            ),
        };
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|v| {
            vec![
                v.name.clone(),
                v.target.clone(),
                v.strategy.to_string(),
                format!("v{} → v{}", v.from, v.to),
                v.state.clone(),
                format!("{} ({})", clock_time(v.started_at), ago(now, v.started_at)),
                v.ended_at
                    .map(|e| human_millis(e.saturating_sub(v.started_at)))
                    .unwrap_or_else(|| "-".into()),
                v.reason.clone().unwrap_or_else(|| v.cause.clone()),
            ]
        })
        .collect();
    write!(
        w,
        "{}",
        table(
            &[
                "ID", "SLICE", "STRATEGY", "VERSIONS", "STATE", "STARTED", "TOOK", "WHY"
            ],
            &rows
        )
    )
}

/// The answer to `rollout pause|resume|promote|abort|undo`: what the act did, and where the
/// rollout is now.
pub fn rollout_acted(w: &mut dyn Write, a: &RolloutActView, json: bool) -> io::Result<()> {
    if json {
        return write_json(w, a);
    }
    match (&a.rollout, a.version) {
        (Some(v), _) => {
            if let Some(h) = v.history.last() {
                writeln!(w, "{} {}: {}", v.name, v.target, h.what)?;
            }
            writeln!(w, "now: {}", headline(v))?;
            if v.open {
                writeln!(
                    w,
                    "follow it with 'aether rollout status {} --watch'",
                    v.target
                )?;
            }
            Ok(())
        }
        (None, Some(version)) => writeln!(
            w,
            "{}: {} stored version {version}; no copy needed new processes, so nothing rolls out",
            a.target, a.op
        ),
        (None, None) => writeln!(w, "{}: {} sent", a.target, a.op),
    }
}

/// The lines `blueprint apply` adds for the rollouts it started (a dry run: would start).
pub fn started(w: &mut dyn Write, starts: &[RolloutStart], dry_run: bool) -> io::Result<()> {
    for s in starts {
        let how = format!("{} v{} → v{}, {}", s.strategy, s.from, s.to, s.plan);
        let copies = format!(
            "{} cop{}",
            s.copies,
            if s.copies == 1 { "y" } else { "ies" }
        );
        let instead = s
            .supersedes
            .as_ref()
            .map(|r| format!(", superseding {r}"))
            .unwrap_or_default();
        match (&s.rollout, dry_run) {
            (_, true) => writeln!(
                w,
                "{} would roll out: {how}, over its {copies}{instead} (new copies start before old ones stop; nothing restarts in place)",
                s.target
            )?,
            (Some(r), false) => writeln!(
                w,
                "rollout {r} of {} started: {how}{instead}; follow it with 'aether rollout status {} --watch'",
                s.target, s.target
            )?,
            (None, false) => writeln!(
                w,
                "{} rolls out: {how}{instead}; follow it with 'aether rollout status {} --watch'",
                s.target, s.target
            )?,
        }
    }
    Ok(())
}
