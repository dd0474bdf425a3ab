//! Text and JSON rendering of command results. JSON field names are the protocol's and stable.

use serde::Serialize;

use crate::admin::protocol::{
    BlueprintView, MemberView, MetricsView, NodeMetricsView, StatusView, TokenView,
};
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
    if let Some(c) = &s.controller {
        let paused = match &c.paused {
            Some(p) => format!(
                "PAUSED by {} {} ago{}",
                p.by,
                human_millis(crate::domain::now_millis().saturating_sub(p.at)),
                p.reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
            None => "running".into(),
        };
        println!(
            "controller: mode {} (grace {}), {paused}, {} pending, {} proposed{}\n            rules: {}; reviewer: {}\n",
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
        );
    }
    print!("{}", table(&MEMBER_HEADER, &member_rows(&s.members)));
    if s.members_seen_by != s.node.name {
        println!("(reachability as seen by {})", s.members_seen_by);
    }
}

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
fn decision_json(d: &crate::domain::Decision) -> serde_json::Value {
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
pub fn decisions(list: &[crate::domain::Decision], json: bool) {
    if json {
        let v: Vec<serde_json::Value> = list.iter().map(decision_json).collect();
        return print_json(&v);
    }
    if list.is_empty() {
        println!("no decisions in the last hour ('aether decisions --all' lists older ones)");
        return;
    }
    let now = crate::domain::now_millis();
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
    print!(
        "{}",
        table(&["ID", "WHEN", "ACTION", "STATUS", "RULE", "WHY"], &rows)
    );
}

/// `aether decisions show ID`.
pub fn decision(d: &crate::domain::Decision, json: bool) {
    if json {
        return print_json(&decision_json(d));
    }
    print!(
        "{}",
        crate::view::decision::text(d, crate::domain::now_millis())
    );
}

/// `aether events`.
pub fn events(a: &[crate::domain::AuditRecord], json: bool) {
    if json {
        return print_json(&a);
    }
    let now = crate::domain::now_millis();
    let rows: Vec<Vec<String>> = a
        .iter()
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
    print!(
        "{}",
        table(&["SEQ", "WHEN", "WHO", "WHAT", "OUTCOME"], &rows)
    );
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

/// Bytes as a short human figure (binary units).
fn bytes(v: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = v.max(0.0);
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A series value in its unit: ratios as percents, rates as bytes per second.
fn series_value(name: &str, v: f32) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let v64 = v as f64;
    if matches!(name, "cpu" | "mem" | "swap" | "disk_used")
        || name.ends_with("_util")
        || (name.starts_with("gpu") && name.ends_with("_mem"))
    {
        format!("{:.1}%", v64 * 100.0)
    } else if matches!(name, "disk_read" | "disk_write" | "net_rx" | "net_tx") {
        format!("{}/s", bytes(v64))
    } else if name.ends_with("_temp") {
        format!("{v:.0} °C")
    } else if name.ends_with("_power") {
        format!("{v:.0} W")
    } else {
        format!("{v:.2}")
    }
}

/// A change over the last minute in the series' unit, signed.
fn series_trend(name: &str, d: Option<f32>) -> String {
    match d {
        None => "-".into(),
        Some(d) => {
            let sign = if d >= 0.0 { "+" } else { "-" };
            let mag = series_value(name, d.abs());
            // Percent-valued changes are percentage points.
            let mag = mag
                .strip_suffix('%')
                .map(|m| format!("{m} pts"))
                .unwrap_or(mag);
            format!("{sign}{mag}")
        }
    }
}

fn find<'a>(n: &'a NodeMetricsView, name: &str) -> Option<&'a crate::admin::protocol::SeriesView> {
    n.series.iter().find(|s| s.name == name)
}

/// `aether metrics`; `detail` when one node was asked for.
pub fn metrics(m: &MetricsView, detail: bool, json: bool) {
    if json {
        return print_json(m);
    }
    let Some(age) = m.snapshot_age_ms else {
        println!(
            "no metrics snapshot yet on {}: the leader broadcasts one every {}; try again in a moment",
            m.seen_by,
            human_millis(m.interval_ms)
        );
        return;
    };
    println!(
        "snapshot from leader {} (term {}), {} old, seen by {}",
        m.leader.as_deref().unwrap_or("?"),
        m.term,
        human_millis(age),
        m.seen_by
    );
    if let Some(h) = &m.history {
        println!(
            "{} {} from {} to {} ({} points)",
            h.node,
            h.series,
            h.from,
            h.to,
            h.points.len()
        );
        let rows: Vec<Vec<String>> = h
            .points
            .iter()
            .map(|p| {
                vec![
                    p.t.to_string(),
                    series_value(&h.series, p.value),
                    series_value(&h.series, p.max),
                ]
            })
            .collect();
        print!("{}", table(&["UNIX TIME", "VALUE", "MAX"], &rows));
        return;
    }
    if detail && let Some(n) = m.nodes.first() {
        return node_detail(n);
    }
    let v = |n: &NodeMetricsView, s: &str| {
        find(n, s)
            .map(|x| series_value(s, x.value))
            .unwrap_or_else(|| "-".into())
    };
    let rows: Vec<Vec<String>> = m
        .nodes
        .iter()
        .map(|n| {
            vec![
                if n.member {
                    n.name.clone()
                } else {
                    format!("{} (not a member)", n.name)
                },
                n.health.to_string(),
                human_millis(n.sample_age_ms),
                v(n, "cpu"),
                find(n, "cpu")
                    .map(|s| series_trend("cpu", s.trend_1m))
                    .unwrap_or_default(),
                v(n, "mem"),
                v(n, "load1"),
                format!("{} / {}", v(n, "net_rx"), v(n, "net_tx")),
                v(n, "disk_used"),
                // The reason, which can be long, is printed once below the table.
                n.gpu
                    .trim_start_matches("gpu: ")
                    .split(" (")
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                if n.anomalies.is_empty() {
                    "-".into()
                } else {
                    n.anomalies
                        .iter()
                        .map(|a| a.series.clone())
                        .collect::<Vec<_>>()
                        .join(",")
                },
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "NODE",
                "HEALTH",
                "AGE",
                "CPU",
                "CPU 1M",
                "MEM",
                "LOAD",
                "NET RX / TX",
                "DISK",
                "GPU",
                "ANOMALIES"
            ],
            &rows
        )
    );
    let mut reasons: Vec<&str> = m
        .nodes
        .iter()
        .filter(|n| n.gpu.contains(" ("))
        .map(|n| n.gpu.as_str())
        .collect();
    reasons.sort();
    reasons.dedup();
    for r in reasons {
        let on: Vec<&str> = m
            .nodes
            .iter()
            .filter(|n| n.gpu == r)
            .map(|n| n.name.as_str())
            .collect();
        println!("{r} on {}", on.join(", "));
    }
    for n in &m.nodes {
        for a in &n.anomalies {
            println!("anomaly on {}: {}", n.name, a.reason);
        }
    }
}

fn node_detail(n: &NodeMetricsView) {
    println!(
        "node {} (id {}{}): {}, sample {} old",
        n.name,
        n.id,
        if n.member { "" } else { ", not a member" },
        n.health,
        human_millis(n.sample_age_ms)
    );
    println!("{}", n.gpu);
    let rows: Vec<Vec<String>> = n
        .series
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                series_value(&s.name, s.value),
                series_trend(&s.name, s.trend_1m),
                s.min_1m
                    .map(|v| series_value(&s.name, v))
                    .unwrap_or("-".into()),
                s.max_1m
                    .map(|v| series_value(&s.name, v))
                    .unwrap_or("-".into()),
            ]
        })
        .collect();
    print!(
        "{}",
        table(&["SERIES", "NOW", "1M TREND", "1M MIN", "1M MAX"], &rows)
    );
    let d = &n.detail;
    println!(
        "cores: {}",
        d.cores
            .iter()
            .map(|c| format!("{c}%"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "memory: {} of {} used; swap {} of {}; load {:.2} {:.2} {:.2}",
        bytes(d.mem_used as f64),
        bytes(d.mem_total as f64),
        bytes(d.swap_used as f64),
        bytes(d.swap_total as f64),
        d.load[0],
        d.load[1],
        d.load[2]
    );
    for disk in &d.disks {
        println!(
            "mount {}: {} free of {}, read {}/s, write {}/s",
            disk.mount,
            bytes(disk.free_bytes as f64),
            bytes(disk.total_bytes as f64),
            bytes(disk.read_bps as f64),
            bytes(disk.write_bps as f64)
        );
    }
    for net in &d.nets {
        println!(
            "interface {}: rx {}/s, tx {}/s",
            net.iface,
            bytes(net.rx_bps as f64),
            bytes(net.tx_bps as f64)
        );
    }
    for g in &d.gpus {
        println!(
            "gpu {} {}: {:.0}% busy, {} of {} memory, {:.0} °C, {:.0} W, {} processes",
            g.index,
            g.name,
            g.util * 100.0,
            bytes(g.mem_used as f64),
            bytes(g.mem_total as f64),
            g.temp_c,
            g.power_w,
            g.processes.len()
        );
    }
    for p in &d.procs {
        println!(
            "process {}: cpu {:.2} cores, rss {}",
            p.pid,
            p.cpu,
            bytes(p.rss as f64)
        );
    }
    if n.anomalies.is_empty() {
        println!("anomalies: none");
    }
    for a in &n.anomalies {
        println!("anomaly: {}", a.reason);
    }
}

/// `aether scale`: the blueprint's new version.
pub fn version(blueprint: &str, v: u64, json: bool) {
    if json {
        println!(
            "{{\"blueprint\": {}, \"version\": {v}}}",
            serde_json::to_string(blueprint).expect("string")
        );
    } else {
        println!("{blueprint} is now version {v}");
    }
}

/// `aether blueprint apply`.
pub fn plan(p: &crate::admin::protocol::PlanView, json: bool) {
    if json {
        return print_json(p);
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
    print!("{}", table(&["ACTION", "INSTANCE", "NODE", "WHY"], &rows));
    match (p.dry_run, p.version) {
        (true, _) => println!(
            "dry run: nothing stored ({} is at {})",
            p.blueprint,
            p.previous_version
                .map(|v| format!("version {v}"))
                .unwrap_or_else(|| "no version yet".into())
        ),
        (false, Some(v)) => println!("{} stored as version {v}", p.blueprint),
        (false, None) => {}
    }
}

/// `aether blueprint list` and `show`.
pub fn blueprints(list: &[BlueprintView], detail: bool, json: bool) {
    if json {
        return print_json(&list);
    }
    let now = crate::domain::now_millis();
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
        print!(
            "{}",
            table(
                &["BLUEPRINT", "VERSION", "SLICES (ACTIVE/DESIRED)", "APPLIED"],
                &rows
            )
        );
        return;
    }
    for b in list {
        println!(
            "blueprint {} version {}, applied {} ago",
            b.blueprint.name,
            b.version,
            human_millis(now.saturating_sub(b.applied_at))
        );
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
                    s.command.join(" "),
                ]
            })
            .collect();
        print!(
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
        );
        println!();
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
            println!("no instances");
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
        print!("{}", table(&head, &rows));
        for i in b.instances.iter().filter(|i| i.note.is_some()) {
            println!(
                "{}{}: {}",
                i.instance,
                i.node
                    .as_ref()
                    .map(|n| format!(" on {n}"))
                    .unwrap_or_default(),
                i.note.as_deref().unwrap_or("")
            );
        }
    }
}

/// `aether logs`: raw text for one instance; each line prefixed with `[instance@node]` for
/// several; JSON lines when following.
pub fn logs(chunks: &[crate::deploy::logs::LogChunk], prefix: bool, json: bool, follow: bool) {
    use std::io::Write;
    if json {
        if follow {
            for c in chunks.iter().filter(|c| !c.data.is_empty()) {
                println!("{}", serde_json::to_string(c).expect("serialisable"));
            }
            return;
        }
        return print_json(&chunks);
    }
    let mut out = std::io::stdout().lock();
    for c in chunks {
        if prefix {
            for line in c.data.lines() {
                let _ = writeln!(out, "[{}@{}] {line}", c.instance, c.node);
            }
        } else {
            let _ = out.write_all(c.data.as_bytes());
        }
    }
    let _ = out.flush();
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// `aether model pull`.
pub fn pulled(p: &crate::controller::model::Pulled, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(p).expect("json"));
        return;
    }
    let i = &p.info;
    println!("pulled '{}' to {} ({})", p.source, i.path, mb(i.size));
    println!(
        "model   {} · {} · {} blocks × {} · context {} · vocab {} · {}",
        i.name, i.arch, i.blocks, i.width, i.context, i.vocab, i.quant
    );
    match &p.known {
        Some(what) => println!("sha256  {} (verified: {what})", p.sha256),
        None => println!(
            "sha256  {} (not a file aether knows; pin it with --sha256 next time)",
            p.sha256
        ),
    }
    println!(
        "a running node loads it within a few seconds when it leads; see `aether model status`"
    );
}

/// `aether model status`.
pub fn model(m: &crate::controller::model::ModelStatus, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(m).expect("json"));
        return;
    }
    println!("state     {}", m.state);
    match &m.file {
        Some(i) => {
            println!("path      {} ({})", m.path, mb(i.size));
            println!(
                "model     {} · {} · {} blocks × {} · context {} · vocab {} · {}",
                i.name, i.arch, i.blocks, i.width, i.context, i.vocab, i.quant
            );
        }
        None => println!("path      {}", m.path),
    }
    let loaded = m
        .load_ms
        .map(|ms| {
            format!(
                " · loaded in {ms} ms · prefix {} tokens cached",
                m.prefix_tokens
            )
        })
        .unwrap_or_default();
    println!("memory    {} · {} thread(s){loaded}", m.format, m.threads);
    let tok_s = |v: Option<f64>| v.map(|v| format!("{v:.0}")).unwrap_or("-".into());
    println!(
        "reviews   {} ({} past the budget) · last {} · {} prompt tokens · prefill {} tok/s · decode {} tok/s",
        m.reviews,
        m.timeouts,
        m.last_latency_ms
            .map(crate::domain::human_millis)
            .unwrap_or("-".into()),
        m.last_prompt_tokens
            .map(|t| t.to_string())
            .unwrap_or("-".into()),
        tok_s(m.prefill_tok_s),
        tok_s(m.decode_tok_s),
    );
    if let Some(r) = &m.last_review {
        println!("last      {r}");
    }
}

/// `aether model bench`.
pub fn model_bench(b: &crate::admin::protocol::ModelBenchView, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(b).expect("json"));
        return;
    }
    println!(
        "{} reviews ({} failed) · p50 {} ms · p95 {} ms",
        b.reviews, b.failed, b.p50_ms, b.p95_ms
    );
    model(&b.status, false);
}
