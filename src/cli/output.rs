//! Text and JSON rendering of command results, one file per topic. Every renderer writes to
//! the writer it is given (the CLI passes stdout, the tests a buffer) and takes the time it
//! counts ages from, so its output can be snapshot-tested. JSON field names are the protocol's
//! and stable.

mod advice;
mod blueprints;
mod decisions;
mod drill;
mod metrics;
mod model;
mod operators;
mod rollouts;
mod snapshot;
mod status;
mod traffic;

use std::io::{self, Write};

use serde::Serialize;

use crate::admin::protocol::{TokenInfo, TokenView};
use crate::domain::{Millis, human_millis};

pub use advice::{advice, advice_taken};
pub use blueprints::{blueprints, logs, plan};
pub use decisions::{decision, decisions};
pub use drill::drill;
pub use metrics::{bytes, metrics};
pub use model::{model, model_bench, model_review, pulled};
pub use operators::{operator_created, operators};
pub use rollouts::{rollout, rollout_acted, rollout_history, rollouts, watch_exit};
pub use snapshot::{snapshot_info, snapshot_restored, snapshot_saved};
pub use status::{events, nodes, status};
pub use traffic::traffic;

/// `v` as pretty JSON on a line of its own (`--output json`).
fn write_json<T: Serialize + ?Sized>(w: &mut dyn Write, v: &T) -> io::Result<()> {
    writeln!(
        w,
        "{}",
        serde_json::to_string_pretty(v).expect("views serialise")
    )
}

/// An optional value, or `-`.
fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// A cell on one line: a newline, tab or other control character (a multi-line command, a
/// process's last words) is written escaped (`\n`), so it never breaks the table's rows.
fn one_line(c: &str) -> String {
    if !c.chars().any(char::is_control) {
        return c.to_string();
    }
    c.chars()
        .map(|ch| match ch {
            '\n' => "\\n".to_string(),
            '\r' => "\\r".to_string(),
            '\t' => "\\t".to_string(),
            ch if ch.is_control() => ch.escape_default().to_string(),
            ch => ch.to_string(),
        })
        .collect()
}

/// Render rows as aligned columns, each cell on one line ([`one_line`]).
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| one_line(c)).collect())
        .collect();
    let rows = &rows;
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        s.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out += &line(r.clone());
    }
    out
}

/// `aether version`.
pub fn build_info(w: &mut dyn Write, b: &crate::platform::BuildInfo, json: bool) -> io::Result<()> {
    if json {
        return write_json(w, b);
    }
    writeln!(w, "aether {}", b.version)?;
    writeln!(w, "commit:  {}", b.commit)?;
    writeln!(w, "target:  {} ({})", b.target, b.linkage)?;
    let cpu = if b.cpu_needs.is_empty() {
        format!("built for {}", b.cpu_baseline)
    } else if b.cpu_missing.is_empty() {
        format!(
            "built for {} ({}); this cpu has them all",
            b.cpu_baseline,
            b.cpu_needs.join(", ")
        )
    } else {
        format!(
            "built for {} ({}); this cpu lacks {}: install the baseline build",
            b.cpu_baseline,
            b.cpu_needs.join(", "),
            b.cpu_missing.join(", ")
        )
    };
    writeln!(w, "cpu:     {cpu}")
}

/// `aether token create`: the token alone on stdout, details on stderr.
pub fn token(
    w: &mut dyn Write,
    err: &mut dyn Write,
    t: &TokenView,
    now: Millis,
    json: bool,
) -> io::Result<()> {
    if json {
        return write_json(w, t);
    }
    writeln!(w, "{}", t.token)?;
    let exp = match t.expires_at {
        Some(at) => format!("expires in {}", human_millis(at.saturating_sub(now))),
        None => "never expires".into(),
    };
    writeln!(
        err,
        "join token {} ({exp}, {} use{}): aether node --join <member-addr> --token <token>",
        t.id,
        t.uses,
        if t.uses == 1 { "" } else { "s" }
    )
}

#[derive(Serialize)]
struct TokenRow<'a> {
    #[serde(flatten)]
    token: &'a TokenInfo,
    state: &'static str,
}

/// `aether token list`: every join token and its state at `now`; never a secret.
pub fn tokens(w: &mut dyn Write, list: &[TokenInfo], now: Millis, json: bool) -> io::Result<()> {
    if json {
        let rows: Vec<TokenRow> = list
            .iter()
            .map(|t| TokenRow {
                token: t,
                state: t.state(now),
            })
            .collect();
        return write_json(w, &rows);
    }
    if list.is_empty() {
        return writeln!(w, "no join tokens; 'aether token create' makes one");
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.state(now).into(),
                format!("{}/{}", t.uses_left, t.uses_total),
                format!("{} ago", human_millis(now.saturating_sub(t.created_at))),
                match t.expires_at {
                    None => "never".into(),
                    Some(at) if at > now => format!("in {}", human_millis(at - now)),
                    Some(at) => format!("{} ago", human_millis(now - at)),
                },
            ]
        })
        .collect();
    write!(
        w,
        "{}",
        table(&["ID", "STATE", "USES LEFT", "CREATED", "EXPIRES"], &rows)
    )
}

/// What a node did, in words (`aether remove`).
pub fn done(w: &mut dyn Write, what: &str, json: bool) -> io::Result<()> {
    if json {
        writeln!(
            w,
            "{{\"ok\": true, \"done\": {}}}",
            serde_json::to_string(what).expect("string")
        )
    } else {
        writeln!(w, "{what}")
    }
}

/// A write that succeeded.
pub fn ok(w: &mut dyn Write, json: bool) -> io::Result<()> {
    if json {
        writeln!(w, "{{\"ok\": true}}")
    } else {
        writeln!(w, "ok")
    }
}

#[derive(Serialize)]
struct Kv<'a> {
    key: &'a str,
    value: String,
}

/// `aether kv get`.
pub fn value(w: &mut dyn Write, key: &str, v: &[u8], json: bool) -> io::Result<()> {
    let value = String::from_utf8_lossy(v).to_string();
    if json {
        write_json(w, &Kv { key, value })
    } else {
        writeln!(w, "{value}")
    }
}

/// `aether kv list`.
pub fn list(w: &mut dyn Write, items: &[(String, Vec<u8>)], json: bool) -> io::Result<()> {
    if json {
        let v: Vec<Kv> = items
            .iter()
            .map(|(k, v)| Kv {
                key: k,
                value: String::from_utf8_lossy(v).to_string(),
            })
            .collect();
        return write_json(w, &v);
    }
    for (k, v) in items {
        writeln!(w, "{k}\t{}", String::from_utf8_lossy(v))?;
    }
    Ok(())
}

/// `aether scale`: the blueprint's new version.
pub fn version(w: &mut dyn Write, blueprint: &str, v: u64, json: bool) -> io::Result<()> {
    if json {
        writeln!(
            w,
            "{{\"blueprint\": {}, \"version\": {v}}}",
            serde_json::to_string(blueprint).expect("string")
        )
    } else {
        writeln!(w, "{blueprint} is now version {v}")
    }
}
