//! `aether status`, `nodes` and `events`: the cluster, its members and the audit trail.

use std::io::{self, Write};

use super::{opt, table, write_json};
use crate::admin::protocol::CertHolder;
use crate::admin::protocol::{MemberView, StatusView};
use crate::domain::{AuditRecord, Millis, human_millis};

/// A span as days when it is one or more (`3 d`), else as [`human_millis`] (`5h`).
fn human_days(ms: Millis) -> String {
    if ms >= 86_400_000 {
        format!("{} d", ms / 86_400_000)
    } else {
        human_millis(ms)
    }
}

/// One row per member, in [`MEMBER_HEADER`]'s columns.
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
                m.state_text(),
                m.health.to_string(),
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

/// The columns of the member table (`status` and `nodes`).
const MEMBER_HEADER: [&str; 9] = [
    "ID",
    "NAME",
    "ROLE",
    "STATE",
    "HEALTH",
    "ADDRESS",
    "REACHABLE",
    "LAST CONTACT",
    "MATCHED",
];

/// `aether status`.
/// `now` (Unix ms) is what a pause's age is counted from.
/// The `leader:` line: who leads, or that the answering node cannot reach it (then an election
/// follows), or that none is known (an election is under way, or there is no quorum).
fn leader_line(s: &StatusView) -> String {
    match &s.leader {
        Some(l) if s.leader_unreachable() => format!(
            "{} (id {}, {}): UNREACHABLE from {}; a new leader is elected if it stays silent",
            l.name, l.id, l.addr, s.members_seen_by
        ),
        Some(l) => format!("{} (id {}, {})", l.name, l.id, l.addr),
        None if s.node.role == "candidate" => format!(
            "none: election under way ({} is a candidate in term {})",
            s.node.name, s.term
        ),
        None => "none known: an election is under way, or there is no quorum".into(),
    }
}

pub fn status(w: &mut dyn Write, s: &StatusView, now: Millis, json: bool) -> io::Result<()> {
    if json {
        return write_json(w, s);
    }
    let leader = leader_line(s);
    let voters = s.members.iter().filter(|m| m.role == "voter").count();
    write!(
        w,
        "cluster:  {}\nleader:   {leader}\nterm:     {}\ncommit:   {}   applied: {}\nvoters:   {voters} of {} wanted{}\nthis node: {} (id {}) {}, applied {}, last log {}, snapshot {}, {}\n\n",
        s.cluster_id.as_deref().unwrap_or("(initialising)"),
        s.term,
        opt(s.commit_index),
        s.applied_index,
        s.voters_wanted,
        if s.membership_changing {
            " (membership changing: until it completes, a majority of the old voters is needed too)"
        } else {
            ""
        },
        s.node.name,
        s.node.id,
        s.node.role,
        s.node.applied_index,
        opt(s.node.last_log_index),
        opt(s.node.snapshot_index),
        if s.node.ready { "ready" } else { "NOT READY" },
    )?;
    if let Some(c) = &s.controller {
        let paused = match &c.paused {
            Some(p) => format!(
                "PAUSED by {} {} ago{}",
                p.by,
                human_millis(now.saturating_sub(p.at)),
                p.reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
            None => "running".into(),
        };
        writeln!(
            w,
            "controller: mode {} (grace {}), {paused}, {} pending, {} proposed{}\n            rules: {}; reviewer: {}",
            c.mode,
            human_millis(c.grace_ms),
            c.pending,
            c.proposed,
            if c.enabled {
                ""
            } else {
                " (disabled on this node)"
            },
            c.rules,
            c.reviewer
        )?;
        // On a follower its own reviewer is idle by design: the leader's decides.
        if let Some(r) = c.leader_reviewer.as_ref().filter(|r| r.node != s.node.name) {
            writeln!(w, "            deciding: {r}")?;
        }
        for cap in &c.capped {
            writeln!(
                w,
                "            capped: {cap}; said {} ago",
                human_millis(now.saturating_sub(cap.said))
            )?;
        }
        writeln!(w)?;
    }
    if let Some(wl) = &s.workloads {
        writeln!(w, "workloads: {wl}\n")?;
    }
    for c in &s.certs {
        let whose = match c.kind {
            CertHolder::Node => "this node's certificate",
            CertHolder::Operator => "operator",
        };
        let when = if c.expires_at > now {
            format!("expires in {}", human_days(c.expires_at - now))
        } else {
            format!("EXPIRED {} ago", human_days(now - c.expires_at))
        };
        let remedy = match c.kind {
            CertHolder::Node => {
                "; it renews itself at two thirds of tls.node_cert_ttl: check the node's log"
            }
            CertHolder::Operator => "; issue a new one with 'aether operator cert create'",
        };
        writeln!(w, "warning: {whose} '{}' {when}{remedy}", c.name)?;
    }
    if !s.certs.is_empty() {
        writeln!(w)?;
    }
    write!(w, "{}", table(&MEMBER_HEADER, &member_rows(&s.members)))?;
    if s.members_seen_by != s.node.name {
        writeln!(w, "(reachability as seen by {})", s.members_seen_by)?;
    }
    Ok(())
}

/// `aether events`.
/// Ages are counted from `now` (Unix ms).
pub fn events(w: &mut dyn Write, a: &[AuditRecord], now: Millis, json: bool) -> io::Result<()> {
    // Newest first, as the console's Events view and every other list here (decisions, rollout
    // history) show them: `--limit` keeps the newest, and the newest is read first.
    let newest_first: Vec<&AuditRecord> = a.iter().rev().collect();
    if json {
        return write_json(w, &newest_first);
    }
    let rows: Vec<Vec<String>> = newest_first
        .into_iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                format!("{} ago", human_millis(now.saturating_sub(e.at))),
                e.actor.clone(),
                e.what.clone(),
                e.outcome.clone(),
            ]
        })
        .collect();
    write!(
        w,
        "{}",
        table(&["SEQ", "WHEN", "WHO", "WHAT", "OUTCOME"], &rows)
    )?;
    Ok(())
}

/// `aether nodes`.
pub fn nodes(w: &mut dyn Write, n: &[MemberView], json: bool) -> io::Result<()> {
    if json {
        return write_json(w, &n);
    }
    write!(w, "{}", table(&MEMBER_HEADER, &member_rows(n)))?;
    Ok(())
}
