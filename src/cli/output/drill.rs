//! `aether drill run`.

use std::io::{self, Write};

use super::write_json;
use crate::admin::protocol::DrillReport;
use crate::deploy::drill::ms;

/// `aether drill run`: the verdict line, then what was measured (or, for a dry run, what it
/// would do).
pub fn drill(w: &mut dyn Write, r: &DrillReport, json: bool) -> io::Result<()> {
    if json {
        return write_json(w, r);
    }
    if r.dry_run {
        writeln!(w, "{}", r.verdict)?;
        if let Some(p) = &r.plan {
            let target = match (&r.target, &p.node_name) {
                (Some(t), _) => t.clone(),
                (None, Some(n)) => format!("{n} (the leader now)"),
                (None, None) => "-".into(),
            };
            writeln!(w, "  target:   {target}")?;
            writeln!(w, "  fault:    {}", p.fault)?;
            if p.hold_ms > 0 {
                writeln!(w, "  for:      at most {}", ms(p.hold_ms))?;
            }
            for (i, m) in p.measures.iter().enumerate() {
                let label = if i == 0 { "measures:" } else { "" };
                writeln!(w, "  {label:<9} {m}")?;
            }
            writeln!(w, "  restore:  {}", p.restore)?;
            writeln!(
                w,
                "  bound:    recovered within {} after the fault, or exit 1",
                ms(p.bound_ms)
            )?;
        }
        return Ok(());
    }
    writeln!(w, "{}", r.verdict)?;
    let line = |w: &mut dyn Write, k: &str, v: String| writeln!(w, "  {k:<21} {v}");
    if let Some(p) = &r.plan {
        line(w, "fault", p.fault.clone())?;
    }
    if r.old_leader.is_some() || r.new_leader.is_some() {
        line(
            w,
            "leader",
            format!(
                "{} (term {}) → {} (term {})",
                r.old_leader.as_deref().unwrap_or("-"),
                r.term_before,
                r.new_leader.as_deref().unwrap_or("-"),
                r.term_after
            ),
        )?;
    }
    let t = |v: Option<u64>| v.map(ms).unwrap_or_else(|| "not seen".into());
    let moved = |r: &DrillReport| {
        format!(
            "{} after {}",
            r.moved_instances.unwrap_or(0),
            t(r.moved_after_ms)
        )
    };
    if r.leader_changed {
        line(w, "new leader after", t(r.leader_after_ms))?;
    }
    if r.probe_writes + r.probe_errors > 0 {
        line(
            w,
            "probe writes",
            format!("{} ok, {} errors", r.probe_writes, r.probe_errors),
        )?;
    }
    if r.writes_resumed_after_ms.is_some() {
        line(w, "writes resumed after", t(r.writes_resumed_after_ms))?;
    }
    for e in &r.errors {
        line(w, "error", e.clone())?;
    }
    if r.healed_after_ms.is_some() {
        line(w, "healed after", t(r.healed_after_ms))?;
    }
    if r.scenario == "partition" {
        line(
            w,
            "caught up after",
            format!("{} (from healing)", t(r.caught_up_after_ms)),
        )?;
    }
    if r.scenario == "node-loss" {
        line(w, "marked down after", t(r.marked_down_after_ms))?;
        line(w, "instances moved", moved(r))?;
    }
    if r.back_ready_after_ms.is_some() || r.scenario == "node-loss" {
        line(
            w,
            "back ready after",
            format!("{} (from healing)", t(r.back_ready_after_ms)),
        )?;
    }
    if r.scenario == "slice-crash" {
        line(
            w,
            "instances",
            format!(
                "{} ({} killed)",
                r.instances.unwrap_or(0),
                r.killed.unwrap_or(0)
            ),
        )?;
        line(w, "restarts", r.restarts.unwrap_or(0).to_string())?;
        line(w, "all ready after", t(r.ready_after_ms))?;
    }
    if r.scenario == "spot-interruption" {
        line(
            w,
            "deadline",
            format!("{} after the notice", t(r.deadline_after_ms)),
        )?;
        line(
            w,
            "decision",
            format!(
                "{} after {}",
                r.decision.as_deref().unwrap_or("none"),
                t(r.decided_after_ms)
            ),
        )?;
        line(w, "instances moved", moved(r))?;
        for m in &r.moves {
            line(w, "moved", m.clone())?;
        }
        line(w, "drained after", t(r.drained_after_ms))?;
        line(
            w,
            "restored",
            if r.restored {
                "notice cleared, node undrained".into()
            } else {
                "NO (see the notes)".to_string()
            },
        )?;
    }
    for n in &r.notes {
        line(w, "note", n.clone())?;
    }
    Ok(())
}
