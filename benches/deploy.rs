//! Workload benchmark on 3 real nodes over 127.0.0.1: the time from `aether blueprint apply` to
//! every instance active (health check passing) for 100 instances of a tiny HTTP server, and
//! from `aether blueprint rm` to every process gone. Several rounds; prints each and the median.
//!
//! The tiny server is this program itself, started by the supervisor with
//! `BENCH_TINY_SERVER=1`: it answers every HTTP request on `$PORT` with 200.
//!
//! Run it with `scripts/bench/deploy.sh` (or `cargo bench --bench deploy -- --help`).

#[path = "common/nodes.rs"]
mod nodes;
#[path = "common/procstat.rs"]
mod procstat;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use nodes::{AetherNode, cli, start_three, wait_every, wait_until};

const USAGE: &str = "\
workload benchmark: blueprint apply to all instances active, on 3 nodes

usage: cargo bench --bench deploy -- [options]

  --aether-bin PATH   aether binary [env AETHER_BIN; default target/release/aether]
  --instances N       instances per round [100]
  --rounds N          rounds [3]
  --poll MS           how often the timed waits look, in ms [20]; each look runs the CLI
  --keep              keep the temp dir (data dirs, logs)
  -h, --help          this text
";

struct Opts {
    aether_bin: PathBuf,
    instances: u32,
    rounds: u32,
    /// How often the timed waits look: finer than the figures they time.
    poll: Duration,
    keep: bool,
}

fn parse_opts() -> Result<Opts> {
    let mut o = Opts {
        aether_bin: nodes::default_aether_bin(),
        instances: 100,
        rounds: 3,
        poll: Duration::from_millis(20),
        keep: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or_else(|| anyhow!("{name} needs a value"));
        match a.as_str() {
            "--aether-bin" => o.aether_bin = val(&a)?.into(),
            "--instances" => o.instances = val(&a)?.parse().context("--instances")?,
            "--rounds" => o.rounds = val(&a)?.parse().context("--rounds")?,
            "--poll" => {
                o.poll = Duration::from_millis(val(&a)?.parse().context("--poll")?);
            }
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
    if o.instances == 0 || o.rounds == 0 {
        bail!("--instances and --rounds must be at least 1");
    }
    Ok(o)
}

/// The tiny server: answer every request on 127.0.0.1:$PORT with `200 ok`, one at a time.
fn tiny_server() -> ! {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .expect("PORT");
    let l = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind $PORT");
    for s in l.incoming() {
        let Ok(mut s) = s else { continue };
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        let _ = s.write_all(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok");
    }
    std::process::exit(0)
}

/// The rows of `blueprint show tiny` on `n`.
fn rows(o: &Opts, n: &AetherNode) -> Option<Vec<Value>> {
    let out = cli(
        &o.aether_bin,
        n,
        &["blueprint", "show", "tiny", "--output", "json"],
    )
    .ok()?;
    let v: Value = serde_json::from_str(&out).ok()?;
    v[0]["instances"].as_array().cloned()
}

/// Instances whose placed copy is active and passing, as `blueprint show` on `n` says (a row
/// with a note is an old or stopping copy, not the placed one).
fn active(o: &Opts, n: &AetherNode) -> Option<usize> {
    Some(
        rows(o, n)?
            .iter()
            .filter(|r| r["state"] == "active" && r["health"] == "passing" && r["note"].is_null())
            .count(),
    )
}

/// Rows reported active whose pid does not run (what a mismatch is explained by).
fn dead_rows(o: &Opts, n: &AetherNode) -> Vec<String> {
    rows(o, n)
        .unwrap_or_default()
        .iter()
        .filter(|r| r["state"] == "active")
        .filter(|r| !procstat::alive(r["pid"].as_u64().unwrap_or(0) as u32))
        .map(|r| format!("{}@{}", r["instance"], r["node"]))
        .collect()
}

/// Live processes started for blueprint `tiny` by this run.
fn tiny_processes(run: &str) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter(|e| {
            let env = std::fs::read(e.path().join("environ")).unwrap_or_default();
            let has = |needle: &str| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes());
            has("AETHER_BLUEPRINT=tiny") && has(&format!("BENCH_RUN={run}"))
        })
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(|s| s.parse().ok())
                .is_some_and(procstat::alive)
        })
        .count()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn run(o: &Opts, root: &Path) -> Result<()> {
    let run_id = std::process::id().to_string();
    let [n1, n2, n3] = start_three(&o.aether_bin, root)?;
    let me = nodes::instance_exe(root)?;
    // Since issue 18 resources are limits too (a cgroup per instance): 1 MiB is below the
    // tiny server's footprint (about 2 MiB RSS; it only ran under it because cgroup v1 does
    // not charge what it touched before it was moved in) and 0.01 cores is a 1 ms quota per
    // 100 ms. 32 MiB is room for it, and the CPU share keeps it unthrottled while every copy
    // still fits on the 3 nodes.
    // Instances see only their blueprint's env, so BENCH_RUN (how this run finds its
    // processes) is set there.
    let cpu = nodes::cpu_per_instance(3, o.instances as usize, 0.05);
    let file = root.join("tiny.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"tiny\"\n\n[[slices]]\nname = \"http\"\ncommand = [{:?}]\ninstances = {n}\nmax = {n}\nenv = {{ BENCH_TINY_SERVER = \"1\", BENCH_RUN = \"{run_id}\" }}\nresources = {{ cpu = {cpu:?}, memory = \"32MiB\" }}\nstop_timeout = \"5s\"\n\n[slices.health]\nhttp = \"/\"\ninterval = \"200ms\"\ntimeout = \"1s\"\n",
            me.display().to_string(),
            n = o.instances
        ),
    )?;
    let f = file.to_str().unwrap();
    println!(
        "{} instances of a tiny HTTP server on 3 nodes, health checked over HTTP every 200 ms; \
         looking every {} ms\n",
        o.instances,
        o.poll.as_millis()
    );
    println!("round  apply→all active  apply→first active  rm→all processes gone");
    let (mut ups, mut firsts, mut downs) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=o.rounds {
        let t0 = Instant::now();
        cli(&o.aether_bin, &n2, &["blueprint", "apply", f])?;
        let mut first = None;
        wait_every(
            "every instance active",
            Duration::from_secs(300),
            o.poll,
            || {
                let active = active(o, &n1)?;
                if active > 0 && first.is_none() {
                    first = Some(t0.elapsed());
                }
                (active == o.instances as usize).then_some(())
            },
        )?;
        let up = t0.elapsed();
        let procs = tiny_processes(&run_id);
        if procs != o.instances as usize {
            bail!(
                "{procs} tiny processes run, want {}; rows reported active whose pid does not \
                 run: {:?}",
                o.instances,
                dead_rows(o, &n1)
            );
        }
        let t1 = Instant::now();
        cli(&o.aether_bin, &n3, &["blueprint", "rm", "tiny"])?;
        wait_every(
            "every process gone",
            Duration::from_secs(120),
            o.poll,
            || (tiny_processes(&run_id) == 0).then_some(()),
        )?;
        let down = t1.elapsed();
        wait_until("no instance listed", Duration::from_secs(30), || {
            cli(
                &o.aether_bin,
                &n1,
                &["blueprint", "list", "--output", "json"],
            )
            .ok()
            .filter(|s| s.trim() == "[]")
        })?;
        let first = first.unwrap_or(up);
        println!(
            "{round:>5}  {:>14.2} s  {:>16.2} s  {:>19.2} s",
            up.as_secs_f64(),
            first.as_secs_f64(),
            down.as_secs_f64()
        );
        ups.push(up.as_secs_f64());
        firsts.push(first.as_secs_f64());
        downs.push(down.as_secs_f64());
    }
    println!(
        "\nmedian: apply→all {} active {:.2} s (first after {:.2} s); rm→all gone {:.2} s",
        o.instances,
        median(ups),
        median(firsts),
        median(downs)
    );
    Ok(())
}

fn main() {
    if std::env::var_os("BENCH_TINY_SERVER").is_some() {
        tiny_server();
    }
    let o = nodes::opts_or_exit(parse_opts());
    nodes::in_temp_dir("deploy", o.keep, |root| run(&o, root));
}
