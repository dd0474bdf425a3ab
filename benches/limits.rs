//! Isolation benchmark (issue 18): the node's cost of a cgroup per instance. One release node on
//! 127.0.0.1 runs N (default 100) copies of an idle process (`sleep 3600`), twice in the same
//! run: with limits on (a cgroup per instance with its CPU quota and memory limit) and with
//! `AETHER_DEPLOY_LIMITS=false` (no cgroups), each on a fresh node. Per mode: the time from
//! `aether blueprint apply` to all N active; the node process's CPU time (utime + stime from
//! /proc) during that start-up and over a steady window; its RSS; the instance cgroups under
//! `/sys/fs/cgroup/memory/aether/<node>-*/` while they run and after `aether blueprint rm`.
//! Then the difference on − off, per instance: the cost of the cgroup bookkeeping.
//!
//! The CLI's polls during the start-up hit the node the same way in both modes.
//!
//! Run it with `scripts/bench/limits.sh` (or `cargo bench --bench limits -- --help`).

#[path = "common/nodes.rs"]
mod nodes;
#[path = "common/procstat.rs"]
mod procstat;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use nodes::{AetherNode, cli, start_node_env, wait_every, wait_until};
use procstat::{cpu_time, status_bytes};

const USAGE: &str = "\
isolation benchmark: the node's CPU and memory cost of a cgroup per instance, limits on vs off

usage: cargo bench --bench limits -- [options]

  --aether-bin PATH   aether binary [env AETHER_BIN; default target/release/aether]
  --instances N       idle instances (sleep 3600) on the node [100]
  --steady SECS       steady window measured once all are active [10]
  --keep              keep the temp dir (data dirs, logs)
  -h, --help          this text
";

const BLUEPRINT: &str = "idle";
const V1_MEMORY: &str = "/sys/fs/cgroup/memory/aether";

struct Opts {
    aether_bin: PathBuf,
    instances: u32,
    steady: Duration,
    keep: bool,
}

fn parse_opts() -> Result<Opts> {
    let mut o = Opts {
        aether_bin: nodes::default_aether_bin(),
        instances: 100,
        steady: Duration::from_secs(10),
        keep: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or_else(|| anyhow!("{name} needs a value"));
        match a.as_str() {
            "--aether-bin" => o.aether_bin = val(&a)?.into(),
            "--instances" => o.instances = val(&a)?.parse().context("--instances")?,
            "--steady" => o.steady = Duration::from_secs(val(&a)?.parse().context("--steady")?),
            "--keep" => o.keep = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "--bench" => {}
            other => bail!("unknown option '{other}'\n\n{USAGE}"),
        }
    }
    nodes::check_aether_bin(&o.aether_bin)?;
    if o.instances == 0 || o.steady.is_zero() {
        bail!("--instances and --steady must be at least 1");
    }
    Ok(o)
}

/// What one mode measured.
struct Figures {
    up: Duration,
    cpu_startup: Duration,
    /// Node CPU per second of the steady window.
    cpu_steady: Duration,
    rss: u64,
    hwm: u64,
    cgroups_running: usize,
    cgroups_after_rm: usize,
    /// From `blueprint rm` to every instance cgroup gone (None: limits off, or some stayed).
    cgroups_gone: Option<Duration>,
}

/// Instance cgroups of node `name` under the v1 memory hierarchy: the dirs inside
/// `aether/<name>-<hash of its data dir>/`.
fn cgroup_leaves(name: &str) -> usize {
    let Ok(dir) = std::fs::read_dir(V1_MEMORY) else {
        return 0;
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&format!("{name}-")))
        })
        .filter_map(|e| std::fs::read_dir(e.path()).ok())
        .map(|d| d.flatten().filter(|e| e.path().is_dir()).count())
        .sum()
}

/// Rows of `blueprint show` that are active, with a live pid.
fn active(o: &Opts, n: &AetherNode) -> Option<usize> {
    let out = cli(
        &o.aether_bin,
        n,
        &["blueprint", "show", BLUEPRINT, "--output", "json"],
    )
    .ok()?;
    let v: Value = serde_json::from_str(&out).ok()?;
    Some(
        v[0]["instances"]
            .as_array()?
            .iter()
            .filter(|r| r["state"] == "active" && r["note"].is_null())
            .count(),
    )
}

fn run_mode(o: &Opts, root: &Path, limits: bool) -> Result<Figures> {
    let name = if limits {
        "limbench-on"
    } else {
        "limbench-off"
    };
    let flag = if limits { "true" } else { "false" };
    let n = start_node_env(
        &o.aether_bin,
        root,
        name,
        None,
        &[
            ("AETHER_DEPLOY_LIMITS", flag),
            // A fixed set of instances: no scaling decisions during the run.
            ("AETHER_CONTROLLER_ENABLED", "false"),
        ],
    )?;
    let pid = n.proc.pid();
    wait_until("the node leads", Duration::from_secs(30), || {
        cli(&o.aether_bin, &n, &["status"])
            .ok()
            .filter(|s| s.contains("(leader)"))
    })?;
    let status = cli(&o.aether_bin, &n, &["status"])?;
    if let Some(l) = status.lines().find(|l| l.starts_with("workloads:")) {
        println!("  {name}: {}", l.trim());
    }
    // All N on one node: a CPU share that fits them in its cores (an idle sleep needs none).
    let cpu = nodes::cpu_per_instance(1, o.instances as usize, 0.05);
    let file = root.join(format!("{name}.toml"));
    std::fs::write(
        &file,
        format!(
            "name = \"{BLUEPRINT}\"\n\n[[slices]]\nname = \"sleep\"\ncommand = [\"/bin/sleep\", \"3600\"]\n\
             instances = {n}\nmax = {n}\nresources = {{ cpu = {cpu:?}, memory = \"16MiB\" }}\n\
             stop_timeout = \"5s\"\n",
            n = o.instances
        ),
    )?;
    // Let the node settle after its start before the start-up is measured.
    std::thread::sleep(Duration::from_secs(1));
    let (c0, t0) = (cpu_time(&[pid]), Instant::now());
    cli(
        &o.aether_bin,
        &n,
        &["blueprint", "apply", file.to_str().context("temp path")?],
    )?;
    wait_every(
        "every instance active",
        Duration::from_secs(300),
        Duration::from_millis(50),
        || (active(o, &n)? == o.instances as usize).then_some(()),
    )?;
    let up = t0.elapsed();
    let cpu_startup = cpu_time(&[pid]).saturating_sub(c0);
    let cgroups_running = cgroup_leaves(name);

    std::thread::sleep(Duration::from_secs(1));
    let (c1, t1) = (cpu_time(&[pid]), Instant::now());
    std::thread::sleep(o.steady);
    let cpu_steady = cpu_time(&[pid])
        .saturating_sub(c1)
        .div_f64(t1.elapsed().as_secs_f64());
    let rss = status_bytes(pid, "VmRSS").unwrap_or(0);
    let hwm = status_bytes(pid, "VmHWM").unwrap_or(0);
    let still = active(o, &n).unwrap_or(0);
    if still != o.instances as usize {
        println!(
            "  {name}: only {still} of {} active after the steady window",
            o.instances
        );
    }

    let t2 = Instant::now();
    cli(&o.aether_bin, &n, &["blueprint", "rm", BLUEPRINT])?;
    wait_until("no blueprint listed", Duration::from_secs(60), || {
        cli(
            &o.aether_bin,
            &n,
            &["blueprint", "list", "--output", "json"],
        )
        .ok()
        .filter(|s| s.trim() == "[]")
    })?;
    let cgroups_gone = wait_every(
        "every instance cgroup gone",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || (cgroup_leaves(name) == 0).then(|| t2.elapsed()),
    )
    .ok()
    .filter(|_| limits);
    let cgroups_after_rm = cgroup_leaves(name);
    drop(n);
    Ok(Figures {
        up,
        cpu_startup,
        cpu_steady,
        rss,
        hwm,
        cgroups_running,
        cgroups_after_rm,
        cgroups_gone,
    })
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn run(o: &Opts, root: &Path) -> Result<()> {
    println!(
        "{} idle instances (/bin/sleep 3600) on one node; steady window {} s\n",
        o.instances,
        o.steady.as_secs()
    );
    let on = run_mode(o, root, true)?;
    let off = run_mode(o, root, false)?;
    println!(
        "\nmode  apply→all active  node CPU start-up  node CPU steady  RSS (peak)         \
         cgroups running  after rm"
    );
    for (mode, f) in [("on", &on), ("off", &off)] {
        println!(
            "{mode:<4}  {:>14.2} s  {:>14} ms  {:>10.1} ms/s  {:>6.1} MiB ({:>5.1})  {:>15}  {:>8}",
            f.up.as_secs_f64(),
            f.cpu_startup.as_millis(),
            f.cpu_steady.as_secs_f64() * 1e3,
            mib(f.rss),
            mib(f.hwm),
            f.cgroups_running,
            f.cgroups_after_rm,
        );
    }
    let n = o.instances as f64;
    println!(
        "\non − off per instance: start-up {:+.2} ms wall, {:+.2} ms node CPU; steady {:+.1} µs \
         node CPU per s; RSS {:+.1} KiB",
        (on.up.as_secs_f64() - off.up.as_secs_f64()) * 1e3 / n,
        (on.cpu_startup.as_secs_f64() - off.cpu_startup.as_secs_f64()) * 1e3 / n,
        (on.cpu_steady.as_secs_f64() - off.cpu_steady.as_secs_f64()) * 1e6 / n,
        (on.rss as f64 - off.rss as f64) / 1024.0 / n,
    );
    match on.cgroups_gone {
        Some(t) => println!(
            "instance cgroups: {} while running (want {}), all gone {:.2} s after blueprint rm",
            on.cgroups_running,
            o.instances,
            t.as_secs_f64()
        ),
        None => println!(
            "instance cgroups: {} while running (want {}), {} left 30 s after blueprint rm",
            on.cgroups_running, o.instances, on.cgroups_after_rm
        ),
    }
    if on.cgroups_running != o.instances as usize || on.cgroups_after_rm != 0 {
        bail!("the instance cgroups are not one per running instance, or outlived blueprint rm");
    }
    if off.cgroups_running != 0 {
        bail!("limits off, yet {} instance cgroups", off.cgroups_running);
    }
    Ok(())
}

fn main() {
    let o = nodes::opts_or_exit(parse_opts());
    nodes::in_temp_dir("limits", o.keep, |root| run(&o, root));
}
