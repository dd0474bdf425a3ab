//! Text and JSON rendering of command results. JSON field names are the protocol's and stable.

use serde::Serialize;

use crate::admin::protocol::{MemberView, StatusView, TokenView};
use crate::domain::human_millis;

fn print_json<T: Serialize>(v: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("views serialise")
    );
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// Render rows as aligned columns.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
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

fn member_rows(members: &[MemberView]) -> Vec<Vec<String>> {
    members
        .iter()
        .map(|m| {
            vec![
                m.id.to_string(),
                m.name.clone(),
                if m.leader {
                    format!("{} (leader)", m.role)
                } else {
                    m.role.clone()
                },
                m.state.to_string(),
                m.addr.clone(),
                match m.reachable {
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                    None => "?".into(),
                },
                m.last_contact_ms
                    .map(|ms| format!("{} ago", human_millis(ms)))
                    .unwrap_or_else(|| "-".into()),
                opt(m.matched_index),
            ]
        })
        .collect()
}

const MEMBER_HEADER: [&str; 8] = [
    "ID",
    "NAME",
    "ROLE",
    "STATE",
    "ADDRESS",
    "REACHABLE",
    "LAST CONTACT",
    "MATCHED",
];

/// `aether status`.
pub fn status(s: &StatusView, json: bool) {
    if json {
        return print_json(s);
    }
    let leader = s
        .leader
        .as_ref()
        .map(|l| format!("{} (id {}, {})", l.name, l.id, l.addr))
        .unwrap_or_else(|| "none (no quorum?)".into());
    let voters = s.members.iter().filter(|m| m.role == "voter").count();
    print!(
        "cluster:  {}\nleader:   {leader}\nterm:     {}\ncommit:   {}   applied: {}\nvoters:   {voters} of {} wanted\nthis node: {} (id {}) {}, applied {}, last log {}, snapshot {}, {}\n\n",
        s.cluster_id.as_deref().unwrap_or("(initialising)"),
        s.term,
        opt(s.commit_index),
        s.applied_index,
        s.voters_wanted,
        s.node.name,
        s.node.id,
        s.node.role,
        s.node.applied_index,
        opt(s.node.last_log_index),
        opt(s.node.snapshot_index),
        if s.node.ready { "ready" } else { "NOT READY" },
    );
    print!("{}", table(&MEMBER_HEADER, &member_rows(&s.members)));
    if s.members_seen_by != s.node.name {
        println!("(reachability as seen by {})", s.members_seen_by);
    }
}

/// `aether nodes`.
pub fn nodes(n: &[MemberView], json: bool) {
    if json {
        return print_json(&n);
    }
    print!("{}", table(&MEMBER_HEADER, &member_rows(n)));
}

/// `aether token create`: the token alone on stdout, details on stderr.
pub fn token(t: &TokenView, json: bool) {
    if json {
        return print_json(t);
    }
    println!("{}", t.token);
    let exp = match t.expires_at {
        Some(at) => format!(
            "expires in {}",
            human_millis(at.saturating_sub(crate::domain::now_millis()))
        ),
        None => "never expires".into(),
    };
    eprintln!(
        "join token {} ({exp}, {} use{}): aether node --join <member-addr> --token <token>",
        t.id,
        t.uses,
        if t.uses == 1 { "" } else { "s" }
    );
}

/// A write that succeeded.
pub fn ok(json: bool) {
    if json {
        println!("{{\"ok\": true}}");
    } else {
        println!("ok");
    }
}

#[derive(Serialize)]
struct Kv<'a> {
    key: &'a str,
    value: String,
}

/// `aether kv get`.
pub fn value(key: &str, v: &[u8], json: bool) {
    let value = String::from_utf8_lossy(v).to_string();
    if json {
        print_json(&Kv { key, value });
    } else {
        println!("{value}");
    }
}

/// `aether kv list`.
pub fn list(items: &[(String, Vec<u8>)], json: bool) {
    if json {
        let v: Vec<Kv> = items
            .iter()
            .map(|(k, v)| Kv {
                key: k,
                value: String::from_utf8_lossy(v).to_string(),
            })
            .collect();
        return print_json(&v);
    }
    for (k, v) in items {
        println!("{k}\t{}", String::from_utf8_lossy(v));
    }
}
