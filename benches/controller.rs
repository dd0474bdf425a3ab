//! Controller simulator: does prediction pay?
//!
//! Replays synthetic load traces, one simulated second at a time, through the controller's
//! real pure core: [`Brain::observe`] and [`Brain::propose`] (the built-in rules,
//! `assets/rules.toml`, and the Holt-Winters forecast), then [`safety::check`] with the
//! [`safety::Context`] the leader's policy builds ([`decide::context`], from the decisions it
//! applied: min/max, converging, last scale-up / last change, cooldowns from the rule settings,
//! decisions in the last minute; bounds = the `[controller]` config defaults). Decisions are
//! applied at once (mode `auto`). The same traces go through a reactive baseline written to the
//! Kubernetes HPA algorithm, on the same model of a slice's instances:
//!
//! - load is demand in cores per second; each instance serves `capacity` cores; what is not
//!   served queues (a fluid backlog) and drains when there is spare capacity; the measured
//!   `cpu_used` is what the instances served;
//! - a new instance is active `startup` seconds after the decision; a scale-in removes instances
//!   at once (starting ones first);
//! - latency per second = `service / (1 − u)` (u capped at 0.99) plus `backlog / capacity`; a
//!   second over the SLO is a violation.
//!
//! The **request drive** runs Aether's core again on what the ingress would show (issue 16): the
//! slice declares a service, so the core sees calls/s (the arrivals, load ÷ service time), the
//! second's latency as its p95 against the SLO as target latency, a target of calls per instance
//! equal to the target utilisation, and the requests waiting while no instance is active; its
//! forecaster learns calls/s instead of capped cores. The HPA stays on CPU. A further trace,
//! `sporadic` (bursts with long silences), runs only there: Aether's slice has min = 0 and
//! idle_to_zero, so it scales to zero and back from zero on demand; the HPA keeps min 1.
//!
//! Run it with `scripts/bench/controller.sh` (or `cargo bench --bench controller -- --help`).
//!
//! Traces: a daily sinusoid (3 days, the real 86 400 s season; days 2–3 reported, day 1 is the
//! forecaster's learning day), a flash spike, a step and noise; their totals are `all`. An extra,
//! `recurring` (the flash spike every day at 09:00, days 2–3 reported), is the case a seasonal
//! forecast could see coming; it is reported apart and not in `all`.
//!
//! Reading the output: the header prints every parameter of the model, of both controllers and
//! of each trace. Then one block per trace: SLO-violation seconds, instance-seconds (the cost;
//! starting instances count), mean slack (unused capacity of the active instances) and number of
//! scaling actions for Aether and for the HPA, and the Aether/HPA ratios; `all` sums the goal's
//! traces (slack weighted by seconds). The verdict checks the goal on each trace and overall on
//! `all`: at least 50 % fewer violation seconds than the HPA, at most 10 % more
//! instance-seconds, slack at most 25 % (`0/0`: neither violated). The diagnostics say where
//! Aether's applied decisions came from and what the safety bounds did to its proposals; the
//! variants table reruns Aether with one knob changed at a time (the HPA unchanged) to show
//! which piece limits it; `--timeline` prints both controllers per 10 s around each trace's
//! event, with Aether's forecast. Everything is deterministic for a given `--seed`.

use std::collections::VecDeque;
use std::f64::consts::TAU;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use aether::controller::brain::{Brain, FROM_ZERO, IDLE_TO_ZERO, SliceView, World};
use aether::controller::decide;
use aether::controller::forecast::ForecastConfig;
use aether::controller::rules::{self, Rules};
use aether::controller::safety::{self, Bounds, Check, Clamp, Context, StopReason};
use aether::domain::{Action, ControllerMode, Decision, DecisionStatus, Millis};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[path = "controller/aether_ctl.rs"]
mod aether_ctl;
#[path = "controller/hpa.rs"]
mod hpa;
#[path = "controller/report.rs"]
mod report;
#[path = "controller/sim.rs"]
mod sim;
#[path = "controller/trace.rs"]
mod trace;

use aether_ctl::*;
use hpa::*;
use report::*;
use sim::*;
use trace::*;

const USAGE: &str = "\
controller simulator: the real controller core (rules, forecast, safety bounds) against a
Kubernetes-HPA-style reactive baseline, on a fluid-queue model of a slice's instances

usage: cargo bench --bench controller -- [options]

  --trace NAME     daily, spike, step, noise, recurring (an extra, not in `all`), sporadic (an
                   extra of the request drive: scale to zero and back) or all [all]
  --drive WHICH    what drives Aether's core: cpu (the cores used), requests (the ingress's
                   calls/s, p95 latency and waiting requests, with the cores) or both [both]
  --seed N         seed of the load noise [1]
  --startup SECS   seconds from a scale-up decision to the new instances active [20]
  --target F       target utilisation per instance for both controllers [the rules' target_cpu, 0.6]
  --timeline       also print, per 10 s around each trace's event, what both controllers did
  -h, --help       this text
";

/// Cores one instance serves (its reserved cpu).
const CAPACITY: f64 = 1.0;
/// Seconds one request takes on an idle instance.
const SERVICE_S: f64 = 0.050;
/// Latency objective, seconds.
const SLO_S: f64 = 0.250;
/// Utilisation cap of the M/M/1-style term.
const U_CAP: f64 = 0.99;
/// The slice's min and max instances (40 × 0.6 = 24 cores: the spike's peak at the target).
const MIN: u32 = 1;
const MAX: u32 = 40;
/// The `[controller]` defaults the simulation runs with, read from `ControllerConfig::default()`
/// so the bench follows the product: the safety bounds; `converge_timeout` (an applied decision
/// older than this no longer makes its target "converging"); `grace` (guarded mode; printed
/// only, the simulation runs mode auto); `horizon` (how far ahead the forecast is reported).
struct Defaults {
    bounds: Bounds,
    converge_timeout_ms: Millis,
    grace_s: u64,
    horizon_s: u64,
}

static D: std::sync::LazyLock<Defaults> = std::sync::LazyLock::new(|| {
    let c = aether::config::ControllerConfig::default();
    Defaults {
        bounds: Bounds::from_config(&c),
        converge_timeout_ms: c.converge_timeout.0.as_millis() as u64,
        grace_s: c.grace.0.as_secs(),
        horizon_s: c.horizon.0.as_secs(),
    }
});
/// HPA defaults: sync period, tolerance, scale-down stabilisation window, scale-up policy.
const HPA_SYNC_S: u64 = 15;
const HPA_TOLERANCE: f64 = 0.1;
const HPA_DOWN_WINDOW_S: u64 = 300;
const HPA_UP_PODS: u32 = 4;
const HPA_UP_PERCENT: u32 = 100;
/// The goal: Aether's violation seconds and instance-seconds as fractions of the HPA's, and its
/// slack.
const GOAL_VIOLATIONS: f64 = 0.5;
const GOAL_COST: f64 = 1.1;
const GOAL_SLACK: f64 = 0.25;

/// Seconds in a day: the daily traces' period and the forecaster's default season.
const DAY: u64 = 86_400;

/// The command line.
struct Opts {
    trace: Option<String>,
    seed: u64,
    startup: u64,
    target: Option<f64>,
    timeline: bool,
    drives: Vec<Drive>,
}

/// Parse the command line (`cargo bench` adds `--bench`, ignored).
fn parse_opts() -> Result<Opts, String> {
    let mut o = Opts {
        trace: None,
        seed: 1,
        startup: 20,
        target: None,
        timeline: false,
        drives: vec![Drive::Cpu, Drive::Requests],
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--trace" => {
                let v = val()?;
                if v != "all" {
                    if !TRACES.contains(&v.as_str()) {
                        return Err(format!(
                            "unknown trace '{v}': expected {} or all",
                            TRACES.join(", ")
                        ));
                    }
                    o.trace = Some(v);
                }
            }
            "--seed" => o.seed = val()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--startup" => o.startup = val()?.parse().map_err(|e| format!("--startup: {e}"))?,
            "--target" => {
                let t: f64 = val()?.parse().map_err(|e| format!("--target: {e}"))?;
                if !(t > 0.0 && t <= 1.0) {
                    return Err(format!("--target must be in (0, 1], found {t}"));
                }
                o.target = Some(t);
            }
            "--timeline" => o.timeline = true,
            "--drive" => {
                o.drives = match val()?.as_str() {
                    "cpu" => vec![Drive::Cpu],
                    "requests" => vec![Drive::Requests],
                    "both" => vec![Drive::Cpu, Drive::Requests],
                    other => {
                        return Err(format!(
                            "unknown drive '{other}': expected cpu, requests or both"
                        ));
                    }
                }
            }
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "--bench" => {}
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    Ok(o)
}

fn main() {
    let o = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    let mut base = rules::parse("assets", rules::DEFAULT_RULES).expect("the built-in rules parse");
    let target = o.target.unwrap_or(base.settings.target_cpu);
    base.settings.target_cpu = target;
    let model = Model {
        startup: o.startup,
        target,
    };
    let cpu_drive = o.drives.contains(&Drive::Cpu);
    let req_drive = o.drives.contains(&Drive::Requests);
    // Every selected trace; the cpu drive leaves out the request drive's own.
    let all: Vec<Trace> = TRACES
        .iter()
        .filter(|n| o.trace.as_deref().is_none_or(|t| t == **n))
        .map(|n| build_trace(n, o.seed, model.startup + 1))
        .filter(|t| req_drive || !t.to_zero)
        .collect();
    if all.is_empty() {
        eprintln!("the trace sporadic runs with the request drive only: add --drive requests");
        std::process::exit(2);
    }
    let on = |d: Drive| -> Vec<usize> {
        (0..all.len())
            .filter(|&i| o.drives.contains(&d) && (d == Drive::Requests || !all[i].to_zero))
            .collect()
    };
    let (cpu_idx, req_idx) = (on(Drive::Cpu), on(Drive::Requests));
    print_header(&o, &base, model, &all);

    // Jobs: the HPA on each trace, then each Aether variant on each trace of the cpu drive, and
    // on each trace of the request drive.
    let vars = variants(&base);
    let mut jobs: Vec<Job<'_, (Score, Diag)>> = Vec::new();
    for tr in &all {
        jobs.push(Box::new(move || {
            let s = simulate(model, tr, MIN, &mut Hpa::new(target), None);
            (s, Diag::default())
        }));
    }
    for v in vars.iter().filter(|_| cpu_drive) {
        for &i in &cpu_idx {
            let tr = &all[i];
            jobs.push(Box::new(move || {
                let mut a = Aether::new(v, model, tr, Drive::Cpu);
                let s = simulate(model, tr, aether_min(tr, Drive::Cpu), &mut a, None);
                (s, a.diag)
            }));
        }
    }
    for v in vars.iter().filter(|_| req_drive) {
        for &i in &req_idx {
            let tr = &all[i];
            jobs.push(Box::new(move || {
                let mut a = Aether::new(v, model, tr, Drive::Requests);
                let s = simulate(model, tr, aether_min(tr, Drive::Requests), &mut a, None);
                (s, a.diag)
            }));
        }
    }
    let mut results = run_parallel(jobs).into_iter();
    let hpa_all: Vec<Score> = results.by_ref().take(all.len()).map(|(s, _)| s).collect();
    let pick = |idx: &[usize]| -> (Vec<Trace>, Vec<Score>) {
        let traces = idx.iter().map(|&i| all[i].clone()).collect();
        (traces, idx.iter().map(|&i| hpa_all[i]).collect())
    };
    let runs: Vec<Vec<(Score, Diag)>> = vars
        .iter()
        .filter(|_| cpu_drive)
        .map(|_| results.by_ref().take(cpu_idx.len()).collect())
        .collect();
    let req_runs: Vec<Vec<(Score, Diag)>> = vars
        .iter()
        .filter(|_| req_drive)
        .map(|_| results.by_ref().take(req_idx.len()).collect())
        .collect();

    let mut configurations = 1;
    if cpu_drive {
        let (traces, hpa) = pick(&cpu_idx);
        let default: Vec<Score> = runs[0].iter().map(|(s, _)| *s).collect();
        let table = rows(&traces, &default, &hpa);
        println!("== cpu drive: Aether's core on the cores used (no ingress figures)");
        println!();
        print_results(&table);
        print_verdict(&table);
        print_diagnostics(&traces, &runs[0]);
        print_variants(&traces, &vars, &runs, &hpa);
        configurations += vars.len();
    }
    if req_drive {
        let (traces, hpa) = pick(&req_idx);
        let scores: Vec<Score> = req_runs[0].iter().map(|(s, _)| *s).collect();
        let table = rows(&traces, &scores, &hpa);
        println!(
            "== request drive: Aether's core on the ingress's calls/s, p95 latency and waiting requests \
             (its forecaster learns calls/s); the HPA on CPU as before"
        );
        println!();
        print_results(&table);
        print_verdict(&table);
        print_diagnostics(&traces, &req_runs[0]);
        print_variants(&traces, &vars, &req_runs, &hpa);
        if cpu_drive {
            print_drives(&traces, &vars, &cpu_idx, &req_idx, &runs, &req_runs);
        }
        configurations += vars.len();
    }
    if o.timeline {
        for &d in &o.drives {
            for &i in &on(d) {
                print_timeline(model, &all[i], &base, d);
            }
        }
    }
    println!(
        "ran in {:.1} s ({} simulated seconds over the traces, {} configurations)",
        started.elapsed().as_secs_f64(),
        all.iter().map(|t| t.load.len()).sum::<usize>(),
        configurations
    );
}
