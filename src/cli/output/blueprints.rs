//! `aether blueprint apply`, `list` and `show`, and `aether logs`: blueprints, their plans,
//! instances and output.

use std::io::{self, Write};

use super::{table, write_json};
use crate::admin::protocol::{BlueprintView, PlanView};
use crate::deploy::logs::LogChunk;
use crate::domain::{Millis, human_millis};

/// `aether blueprint apply`.
pub fn plan(w: &mut dyn Write, p: &PlanView, json: bool) -> io::Result<()> {
    if json {
        return write_json(w, p);
    }
    let rows: Vec<Vec<String>> = p
        .steps
        .iter()
        .map(|s| {
            vec![
                s.action.clone(),
                s.instance.clone(),
                s.node.clone().unwrap_or_else(|| "-".into()),
                s.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    write!(
        w,
        "{}",
        table(&["ACTION", "INSTANCE", "NODE", "WHY"], &rows)
    )?;
    match (p.dry_run, p.version) {
        (true, _) => writeln!(
            w,
            "dry run: nothing stored ({} is at {})",
            p.blueprint,
            p.previous_version
                .map(|v| format!("version {v}"))
                .unwrap_or_else(|| "no version yet".into())
        )?,
        (false, Some(v)) => writeln!(w, "{} stored as version {v}", p.blueprint)?,
        (false, None) => {}
    }
    super::rollouts::started(w, &p.rollouts, p.dry_run)
}

/// A command as a shell would read it back: an argument with a space, quote or control
/// character is single-quoted (the table then escapes a newline inside it as `\n`).
fn command_line(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && !a
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || "'\"\\".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A flexible slice: held (until when, and why) or started (when, and why).
fn flexible_line(
    w: &mut dyn Write,
    f: &crate::domain::FlexibleRecord,
    now: Millis,
) -> io::Result<()> {
    let latest = crate::domain::clock_time(f.latest_start);
    match &f.started {
        Some((at, why)) => writeln!(
            w,
            "{}: flexible, started {} ago with {} instance(s): {why}",
            f.slice,
            human_millis(now.saturating_sub(*at)),
            f.instances
        ),
        None => writeln!(
            w,
            "{}: flexible, {} instance(s) start by {latest} at the latest (in {}); {}",
            f.slice,
            f.instances,
            human_millis(f.latest_start.saturating_sub(now)),
            f.held
                .as_deref()
                .unwrap_or("waiting for the leader's judgement")
        ),
    }
}

/// `aether blueprint list` and `show`.
/// Ages are counted from `now` (Unix ms).
pub fn blueprints(
    w: &mut dyn Write,
    list: &[BlueprintView],
    detail: bool,
    now: Millis,
    json: bool,
) -> io::Result<()> {
    if json {
        return write_json(w, &list);
    }
    let active = |b: &BlueprintView, slice: &str| {
        let prefix = format!("{}/{slice}/", b.blueprint.name);
        b.instances
            .iter()
            .filter(|i| i.instance.starts_with(&prefix) && i.counts_active())
            .count()
    };
    if !detail {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|b| {
                vec![
                    b.blueprint.name.clone(),
                    b.version.to_string(),
                    b.blueprint
                        .slices
                        .iter()
                        .map(|s| format!("{}={}/{}", s.name, active(b, &s.name), s.instances))
                        .collect::<Vec<_>>()
                        .join(" "),
                    format!("{} ago", human_millis(now.saturating_sub(b.applied_at))),
                ]
            })
            .collect();
        write!(
            w,
            "{}",
            table(
                &["BLUEPRINT", "VERSION", "SLICES (ACTIVE/DESIRED)", "APPLIED"],
                &rows
            )
        )?;
        return Ok(());
    }
    for b in list {
        writeln!(
            w,
            "blueprint {} version {}, applied {} ago",
            b.blueprint.name,
            b.version,
            human_millis(now.saturating_sub(b.applied_at))
        )?;
        let rows: Vec<Vec<String>> = b
            .blueprint
            .slices
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    format!("{}/{}", active(b, &s.name), s.instances),
                    format!("{}..={}", s.min, s.max),
                    format!(
                        "cpu={} memory={}MiB gpu={}",
                        s.resources.cpu,
                        s.resources.memory >> 20,
                        s.resources.gpu
                    ),
                    command_line(&s.command),
                ]
            })
            .collect();
        write!(
            w,
            "{}",
            table(
                &[
                    "SLICE",
                    "ACTIVE/DESIRED",
                    "MIN..=MAX",
                    "RESOURCES",
                    "COMMAND"
                ],
                &rows
            )
        )?;
        // Who a slice's instances run as, where the blueprint says (root stands out).
        for s in &b.blueprint.slices {
            match s.user.as_deref() {
                Some("root") => writeln!(
                    w,
                    "{}: runs as root (user = \"root\"): only on nodes with deploy.allow_root = true",
                    s.name
                )?,
                Some(u) => writeln!(w, "{}: runs as '{u}'", s.name)?,
                None => {}
            }
        }
        for f in &b.flexible {
            flexible_line(w, f, now)?;
        }
        writeln!(w)?;
        let dash = || "-".to_string();
        // The GPUS column (which GPUs each copy holds) only where a slice asks for GPUs.
        let gpus = b.blueprint.slices.iter().any(|s| s.resources.gpu > 0);
        let rows: Vec<Vec<String>> = b
            .instances
            .iter()
            .map(|i| {
                let mut row = vec![
                    i.instance.clone(),
                    i.node.clone().unwrap_or_else(dash),
                    match i.since {
                        Some(t) => format!("{} {}", i.state, human_millis(now.saturating_sub(t))),
                        None => i.state.clone(),
                    },
                    i.port.map(|p| p.to_string()).unwrap_or_else(dash),
                    i.pid.map(|p| p.to_string()).unwrap_or_else(dash),
                    i.restarts.to_string(),
                    i.last_exit.clone().unwrap_or_else(dash),
                    i.health.clone().unwrap_or_else(dash),
                ];
                if gpus {
                    let held: Vec<String> = i.gpus.iter().map(u32::to_string).collect();
                    row.insert(
                        5,
                        if held.is_empty() {
                            dash()
                        } else {
                            held.join(",")
                        },
                    );
                }
                row
            })
            .collect();
        if rows.is_empty() {
            writeln!(w, "no instances")?;
            continue;
        }
        let mut head = vec![
            "INSTANCE",
            "NODE",
            "STATE",
            "PORT",
            "PID",
            "RESTARTS",
            "LAST EXIT",
            "HEALTH",
        ];
        if gpus {
            head.insert(5, "GPUS");
        }
        write!(w, "{}", table(&head, &rows))?;
        for u in &b.unserved {
            writeln!(
                w,
                "port {} is not served on {}: {}",
                u.port, u.node, u.message
            )?;
        }
        for i in b.instances.iter().filter(|i| i.note.is_some()) {
            writeln!(
                w,
                "{}{}: {}",
                i.instance,
                i.node
                    .as_ref()
                    .map(|n| format!(" on {n}"))
                    .unwrap_or_default(),
                i.note.as_deref().unwrap_or("")
            )?;
        }
    }
    Ok(())
}

/// `aether logs`: raw text for one instance; each line prefixed with `[instance@node]` for
/// several; JSON lines when following.
pub fn logs(
    w: &mut dyn Write,
    chunks: &[LogChunk],
    prefix: bool,
    json: bool,
    follow: bool,
) -> io::Result<()> {
    if json {
        if follow {
            for c in chunks.iter().filter(|c| !c.data.is_empty()) {
                writeln!(w, "{}", serde_json::to_string(c).expect("serialisable"))?;
            }
            return Ok(());
        }
        return write_json(w, &chunks);
    }
    for c in chunks {
        if prefix {
            for line in c.data.lines() {
                writeln!(w, "[{}@{}] {line}", c.instance, c.node)?;
            }
        } else {
            w.write_all(c.data.as_bytes())?;
        }
    }
    w.flush()
}
