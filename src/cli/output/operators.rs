//! `aether operator cert create|list`: operator certificate records (never a key).

use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;

use super::{table, write_json};
use crate::domain::{Millis, OperatorRecord, human_millis};

/// The state of a record at `now`: `active`, `expired` or `revoked`.
fn state(o: &OperatorRecord, now: Millis) -> &'static str {
    if o.revoked {
        "revoked"
    } else if o.expires_at <= now {
        "expired"
    } else {
        "active"
    }
}

fn when(at: Millis, now: Millis) -> String {
    if at > now {
        format!("in {}", human_millis(at - now))
    } else {
        format!("{} ago", human_millis(now - at))
    }
}

#[derive(Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    operator: &'a OperatorRecord,
    state: &'static str,
}

#[derive(Serialize)]
struct Created<'a> {
    #[serde(flatten)]
    operator: &'a OperatorRecord,
    identity: String,
}

/// `aether operator cert create`: what was recorded and where the identity is.
pub fn operator_created(
    w: &mut dyn Write,
    o: &OperatorRecord,
    dir: &Path,
    now: Millis,
    json: bool,
) -> io::Result<()> {
    if json {
        return write_json(
            w,
            &Created {
                operator: o,
                identity: dir.display().to_string(),
            },
        );
    }
    writeln!(
        w,
        "operator '{}' ({}), certificate serial {} expires {}",
        o.name,
        o.role,
        o.serial,
        when(o.expires_at, now)
    )?;
    writeln!(
        w,
        "identity written to '{}' (operator.key, operator.crt, ca.crt); keep operator.key secret",
        dir.display()
    )?;
    writeln!(
        w,
        "use it: aether --remote NODE:7420 --identity {} status",
        dir.display()
    )
}

/// `aether operator cert list`.
pub fn operators(
    w: &mut dyn Write,
    list: &[OperatorRecord],
    now: Millis,
    json: bool,
) -> io::Result<()> {
    if json {
        let rows: Vec<Row> = list
            .iter()
            .map(|o| Row {
                operator: o,
                state: state(o, now),
            })
            .collect();
        return write_json(w, &rows);
    }
    if list.is_empty() {
        return writeln!(
            w,
            "no operator certificates; 'aether operator cert create NAME --role ROLE' makes one"
        );
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|o| {
            vec![
                o.name.clone(),
                o.role.to_string(),
                state(o, now).into(),
                format!("{} ago", human_millis(now.saturating_sub(o.created_at))),
                when(o.expires_at, now),
                o.serial.clone(),
            ]
        })
        .collect();
    write!(
        w,
        "{}",
        table(
            &["NAME", "ROLE", "STATE", "CREATED", "EXPIRES", "SERIAL"],
            &rows
        )
    )
}
