//! `aether metrics`: the cluster's latest snapshot, one node in detail, or one series' history.

use std::io::{self, Write};

use super::{table, write_json};
use crate::admin::protocol::{GpuHealthNote, MetricsView, NodeMetricsView, SeriesView};
use crate::domain::human_millis;

/// Bytes as a short human figure (binary units).
pub fn bytes(v: f64) -> String {
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

/// The series called `name` of a node.
fn find<'a>(n: &'a NodeMetricsView, name: &str) -> Option<&'a SeriesView> {
    n.series.iter().find(|s| s.name == name)
}

/// `aether metrics`; `detail` when one node was asked for.
pub fn metrics(w: &mut dyn Write, m: &MetricsView, detail: bool, json: bool) -> io::Result<()> {
    if json {
        return write_json(w, m);
    }
    let Some(age) = m.snapshot_age_ms else {
        writeln!(
            w,
            "no metrics snapshot yet on {}: the leader broadcasts one every {}; try again in a moment",
            m.seen_by,
            human_millis(m.interval_ms)
        )?;
        return Ok(());
    };
    writeln!(
        w,
        "snapshot from leader {} (term {}), {} old, seen by {}",
        m.leader.as_deref().unwrap_or("?"),
        m.term,
        human_millis(age),
        m.seen_by
    )?;
    if let Some(h) = &m.history {
        writeln!(
            w,
            "{} {} from {} to {} ({} points)",
            h.node,
            h.series,
            h.from,
            h.to,
            h.points.len()
        )?;
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
        write!(w, "{}", table(&["UNIX TIME", "VALUE", "MAX"], &rows))?;
        return Ok(());
    }
    if detail && let Some(n) = m.nodes.first() {
        return node_detail(w, n);
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
    write!(
        w,
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
    )?;
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
        writeln!(w, "{r} on {}", on.join(", "))?;
    }
    for n in &m.nodes {
        for a in &n.anomalies {
            writeln!(w, "anomaly on {}: {}", n.name, a.reason)?;
        }
    }
    gpu_health(w, &m.nodes)?;
    energy(w, m)?;
    for n in &m.nodes {
        carbon_lines(w, n, &format!(" on {}", n.name))?;
    }
    Ok(())
}

/// A node's carbon signal and the error of its source, when it has them.
fn carbon_lines(w: &mut dyn Write, n: &NodeMetricsView, on: &str) -> io::Result<()> {
    if let Some(c) = &n.carbon {
        writeln!(w, "carbon{on}: {}", c.summary())?;
    }
    if let Some(e) = &n.carbon_error {
        writeln!(w, "carbon source{on} failed: {e}")?;
    }
    Ok(())
}

/// Why a node has no GPU to judge: `NVML lists none` or `NVML: <reason>`.
fn no_gpu_why(g: &GpuHealthNote) -> String {
    match &g.unavailable {
        Some(r) => format!("NVML: {r}"),
        None => "NVML lists none".into(),
    }
}

/// What GPU health watches on a node with GPUs, and what holds now.
fn gpu_watch(g: &GpuHealthNote) -> String {
    let gpus = if g.gpus == 1 {
        "1 GPU watched".to_string()
    } else {
        format!("{} GPUs watched", g.gpus)
    };
    let found = if g.findings.is_empty() {
        ", nothing predicts trouble".to_string()
    } else {
        format!(": {} (see the anomalies)", g.findings.join(", "))
    };
    let margin = g
        .margin_c
        .map(|m| format!(", {m:.0} °C below slowdown at the hottest"))
        .unwrap_or_default();
    format!("{gpus}{found}{margin}")
}

/// One line for the nodes without a GPU (why, per node), one per node with GPUs.
fn gpu_health(w: &mut dyn Write, nodes: &[NodeMetricsView]) -> io::Result<()> {
    // Nodes that give the same reason share it: `n1, n2 (NVML: …), n3 (NVML lists none)`.
    let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
    for n in nodes.iter().filter(|n| n.gpu_health.gpus == 0) {
        let why = no_gpu_why(&n.gpu_health);
        match groups.iter_mut().find(|(w, _)| *w == why) {
            Some((_, names)) => names.push(&n.name),
            None => groups.push((why, vec![&n.name])),
        }
    }
    let none: Vec<String> = groups
        .iter()
        .map(|(why, names)| format!("{} ({why})", names.join(", ")))
        .collect();
    if !none.is_empty() {
        writeln!(
            w,
            "gpu health: no GPU on {}; GPU-health rules stay quiet there",
            none.join(", ")
        )?;
    }
    for n in nodes.iter().filter(|n| n.gpu_health.gpus > 0) {
        writeln!(w, "gpu health on {}: {}", n.name, gpu_watch(&n.gpu_health))?;
    }
    Ok(())
}

/// Power per slice: GPU measured, CPU estimated.
fn energy(w: &mut dyn Write, m: &MetricsView) -> io::Result<()> {
    if m.energy.is_empty() {
        return writeln!(w, "energy per slice: no active instances");
    }
    writeln!(
        w,
        "energy per slice (GPU as NVML measures it; CPU estimated at {} W per busy core):",
        m.cpu_watts_per_core
    )?;
    let rows: Vec<Vec<String>> = m
        .energy
        .iter()
        .map(|p| {
            vec![
                p.slice.clone(),
                p.instances.to_string(),
                p.gpus.to_string(),
                format!("{:.0}", p.gpu_watts),
                format!("{:.2}", p.cpu_cores),
                format!("{:.1}", p.cpu_watts_estimate),
                format!("{:.1}", p.total_watts()),
            ]
        })
        .collect();
    write!(
        w,
        "{}",
        table(
            &[
                "SLICE",
                "INSTANCES",
                "GPUS",
                "GPU W",
                "CPU CORES",
                "CPU W (EST.)",
                "TOTAL W"
            ],
            &rows
        )
    )
}

/// `aether metrics --node NAME`: one node in detail.
fn node_detail(w: &mut dyn Write, n: &NodeMetricsView) -> io::Result<()> {
    writeln!(
        w,
        "node {} (id {}{}): {}, sample {} old",
        n.name,
        n.id,
        if n.member { "" } else { ", not a member" },
        n.health,
        human_millis(n.sample_age_ms)
    )?;
    writeln!(w, "{}", n.gpu)?;
    carbon_lines(w, n, "")?;
    if n.gpu_health.gpus == 0 {
        writeln!(
            w,
            "gpu health: no GPU ({}); GPU-health rules stay quiet here",
            no_gpu_why(&n.gpu_health)
        )?;
    } else {
        writeln!(w, "gpu health: {}", gpu_watch(&n.gpu_health))?;
    }
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
    write!(
        w,
        "{}",
        table(&["SERIES", "NOW", "1M TREND", "1M MIN", "1M MAX"], &rows)
    )?;
    let d = &n.detail;
    writeln!(
        w,
        "cores: {}",
        d.cores
            .iter()
            .map(|c| format!("{c}%"))
            .collect::<Vec<_>>()
            .join(" ")
    )?;
    writeln!(
        w,
        "memory: {} of {} used; swap {} of {}; load {:.2} {:.2} {:.2}",
        bytes(d.mem_used as f64),
        bytes(d.mem_total as f64),
        bytes(d.swap_used as f64),
        bytes(d.swap_total as f64),
        d.load[0],
        d.load[1],
        d.load[2]
    )?;
    for disk in &d.disks {
        writeln!(
            w,
            "mount {}: {} free of {}, read {}/s, write {}/s",
            disk.mount,
            bytes(disk.free_bytes as f64),
            bytes(disk.total_bytes as f64),
            bytes(disk.read_bps as f64),
            bytes(disk.write_bps as f64)
        )?;
    }
    for net in &d.nets {
        writeln!(
            w,
            "interface {}: rx {}/s, tx {}/s",
            net.iface,
            bytes(net.rx_bps as f64),
            bytes(net.tx_bps as f64)
        )?;
    }
    for g in &d.gpus {
        writeln!(
            w,
            "gpu {} {}: {:.0}% busy, {} of {} memory, {:.0} °C (slowdown {:.0} °C), {:.0} W, {} processes; {} XID, {} uncorrected ECC errors, throttle bits {}",
            g.index,
            g.name,
            g.util * 100.0,
            bytes(g.mem_used as f64),
            bytes(g.mem_total as f64),
            g.temp_c,
            g.slowdown_c,
            g.power_w,
            g.processes.len(),
            g.xid_errors,
            g.ecc_uncorrected,
            g.throttle
        )?;
    }
    for p in &d.procs {
        writeln!(
            w,
            "process {}: cpu {:.2} cores, rss {}",
            p.pid,
            p.cpu,
            bytes(p.rss as f64)
        )?;
    }
    if n.anomalies.is_empty() {
        writeln!(w, "anomalies: none")?;
    }
    for a in &n.anomalies {
        writeln!(w, "anomaly: {}", a.reason)?;
    }
    Ok(())
}
