//! `aether decisions` and `decisions show`: the controller's decisions, as a table, one in full,
//! or as flat JSON objects.

use std::io::{self, Write};

use super::{table, write_json};
use crate::domain::{Decision, Millis, human_millis};

/// A serde enum value (`"proposed"` or `{"pending": {"deadline": 1}}`) as one flat object
/// with its variant under `key`: `{"status": "pending", "deadline": 1}`.
fn flat_variant(v: serde_json::Value, key: &str) -> serde_json::Value {
    use serde_json::{Map, Value};
    match v {
        Value::String(s) => Value::Object(Map::from_iter([(key.to_string(), Value::String(s))])),
        Value::Object(o) if o.len() == 1 => {
            let (variant, inner) = o.into_iter().next().expect("one entry");
            let mut out = match inner {
                Value::Object(fields) => fields,
                other => Map::from_iter([("value".to_string(), other)]),
            };
            out.insert(key.to_string(), Value::String(variant));
            Value::Object(out)
        }
        other => other,
    }
}

/// A decision for `--output json`: `action` and `status` as flat objects with `kind` and
/// `status` fields, the id also as `name` (`d-12`).
fn decision_json(d: &Decision) -> serde_json::Value {
    let mut v = serde_json::to_value(d).expect("a decision serialises");
    if let Some(o) = v.as_object_mut() {
        for (field, key) in [("action", "kind"), ("status", "status")] {
            if let Some(x) = o.remove(field) {
                o.insert(field.into(), flat_variant(x, key));
            }
        }
        o.insert("name".into(), d.name().into());
    }
    v
}

/// `aether decisions`.
/// Ages are counted from `now` (Unix ms).
pub fn decisions(w: &mut dyn Write, list: &[Decision], now: Millis, json: bool) -> io::Result<()> {
    if json {
        let v: Vec<serde_json::Value> = list.iter().map(decision_json).collect();
        return write_json(w, &v);
    }
    if list.is_empty() {
        writeln!(
            w,
            "no decisions in the last hour ('aether decisions --all' lists older ones)"
        )?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|d| {
            vec![
                d.name(),
                format!("{} ago", human_millis(now.saturating_sub(d.at))),
                d.action.to_string(),
                crate::view::decision::state(d, now),
                d.rule.clone(),
                d.reasoning.first().cloned().unwrap_or_default(),
            ]
        })
        .collect();
    write!(
        w,
        "{}",
        table(&["ID", "WHEN", "ACTION", "STATUS", "RULE", "WHY"], &rows)
    )?;
    Ok(())
}

/// `aether decisions show ID`.
/// Times are shown relative to `now` (Unix ms).
pub fn decision(w: &mut dyn Write, d: &Decision, now: Millis, json: bool) -> io::Result<()> {
    if json {
        return write_json(w, &decision_json(d));
    }
    write!(w, "{}", crate::view::decision::text(d, now))?;
    Ok(())
}
