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

use aether::controller::brain::{Brain, SliceView, World};
use aether::controller::decide;
use aether::controller::forecast::ForecastConfig;
use aether::controller::rules::{self, Rules};
use aether::controller::safety::{self, Bounds, Check, Clamp, Context, StopReason};
use aether::domain::{Action, ControllerMode, Decision, DecisionStatus, Millis};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const USAGE: &str = "\
controller simulator: the real controller core (rules, forecast, safety bounds) against a
Kubernetes-HPA-style reactive baseline, on a fluid-queue model of a slice's instances

usage: cargo bench --bench controller -- [options]

  --trace NAME     daily, spike, step, noise, recurring (an extra, not in `all`) or all [all]
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
}

/// Parse the command line (`cargo bench` adds `--bench`, ignored).
fn parse_opts() -> Result<Opts, String> {
    let mut o = Opts {
        trace: None,
        seed: 1,
        startup: 20,
        target: None,
        timeline: false,
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

// ---------------------------------------------------------------------------------------------
// Traces

/// The goal's traces, then `recurring` (an extra: not in the `all` totals).
const TRACES: [&str; 5] = ["daily", "spike", "step", "noise", "recurring"];

/// One load trace: demand in cores for each second.
struct Trace {
    name: &'static str,
    /// How it is built, for the header.
    what: String,
    load: Vec<f64>,
    /// First second that counts in the results (the daily trace skips its learning day).
    report_from: usize,
    /// What the reported window is, for the table.
    window: &'static str,
    /// The seconds `--timeline` prints.
    event: std::ops::Range<usize>,
    /// Not one of the four traces of the goal: reported apart, not in the `all` totals.
    extra: bool,
}

/// Uniform multiplicative noise `1 ± frac`.
fn jitter(rng: &mut StdRng, frac: f64) -> f64 {
    1.0 + rng.random_range(-frac..=frac)
}

/// Build trace `name` from `seed`; `lead` (Aether's lead time) is only for its description.
fn build_trace(name: &str, seed: u64, lead: u64) -> Trace {
    // Each trace has its own stream, so one trace does not change with the selection.
    let idx = TRACES.iter().position(|t| *t == name).expect("known trace") as u64;
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ idx);
    match name {
        "daily" => {
            let (base, amp, noise) = (10.0, 8.0, 0.10);
            let load = (0..3 * DAY)
                .map(|t| {
                    let clean = base + amp * (TAU * t as f64 / DAY as f64).sin();
                    (clean * jitter(&mut rng, noise)).max(0.0)
                })
                .collect();
            let steepest = amp * TAU / DAY as f64 * lead as f64;
            Trace {
                name: "daily",
                what: format!(
                    "3 days of {base} + {amp}·sin(2πt/86400) cores × (1 ± {noise}) uniform per second; \
                     real 86 400 s season (forecast season_secs unchanged); reported: days 2–3 \
                     (day 1 is the forecaster's learning day, excluded for both controllers); \
                     steepest noise-free change over Aether's {lead} s lead: {steepest:.3} cores"
                ),
                load,
                report_from: DAY as usize,
                window: "days 2-3",
                // Day 2 begins on the steepest rise (the sine crosses upwards at midnight).
                event: DAY as usize..DAY as usize + 600,
                extra: false,
            }
        }
        "spike" => {
            let (base, factor, noise, at, len, total) = (8.0, 3.0, 0.05, 1_800, 300, 3_900);
            let load = (0..total)
                .map(|t| {
                    let clean = if (at..at + len).contains(&t) {
                        base * factor
                    } else {
                        base
                    };
                    clean * jitter(&mut rng, noise)
                })
                .collect();
            Trace {
                name: "spike",
                what: format!(
                    "{base} cores × (1 ± {noise}), ×{factor} from {at} s for {len} s, back; {total} s, all reported"
                ),
                load,
                report_from: 0,
                window: "all",
                event: at as usize - 30..(at + len) as usize + 600,
                extra: false,
            }
        }
        "step" => {
            let (from, to, noise, at, total) = (6.0, 14.0, 0.05, 1_800, 5_400);
            let load = (0..total)
                .map(|t| if t < at { from } else { to } * jitter(&mut rng, noise))
                .collect();
            Trace {
                name: "step",
                what: format!(
                    "{from} → {to} cores at {at} s, stays; × (1 ± {noise}); {total} s, all reported"
                ),
                load,
                report_from: 0,
                window: "all",
                event: at as usize - 30..at as usize + 600,
                extra: false,
            }
        }
        "noise" => {
            let (base, noise, total) = (10.0, 0.30, 7_200);
            let load = (0..total).map(|_| base * jitter(&mut rng, noise)).collect();
            Trace {
                name: "noise",
                what: format!(
                    "steady {base} cores × (1 ± {noise}) uniform per second; {total} s, all reported"
                ),
                load,
                report_from: 0,
                window: "all",
                event: 1_800..2_100,
                extra: false,
            }
        }
        "recurring" => {
            let (base, factor, noise, at, len) = (8.0, 3.0, 0.05, 9 * 3_600, 300);
            let load = (0..3 * DAY)
                .map(|t| {
                    let clean = if (at..at + len).contains(&(t % DAY)) {
                        base * factor
                    } else {
                        base
                    };
                    clean * jitter(&mut rng, noise)
                })
                .collect();
            Trace {
                name: "recurring",
                what: format!(
                    "extra, not in `all`: the spike trace's ×{factor} for {len} s, every day at 09:00 \
                     over {base} cores × (1 ± {noise}); 3 days, reported: days 2–3 (what a seasonal \
                     forecast could see coming)"
                ),
                load,
                report_from: DAY as usize,
                window: "days 2-3",
                event: (DAY + at) as usize - 300..(DAY + at + len) as usize + 120,
                extra: true,
            }
        }
        _ => unreachable!("checked by parse_opts"),
    }
}

// ---------------------------------------------------------------------------------------------
// The model

/// What a controller sees at the end of a second.
struct Seen {
    desired: u32,
    active: u32,
    /// Cores the active instances served (the measured cpu_used).
    used: f64,
}

/// A scaling controller under test: called at the end of every simulated second, it returns
/// the new desired instance count when it acts (applied at once).
trait Controller {
    /// Second `t` ended with `seen`; the new desired count, if it changes it.
    fn step(&mut self, t: u64, seen: &Seen) -> Option<u32>;

    /// The highest load it forecasts within its lead time, if it forecasts (`--timeline`).
    fn forecast(&self) -> Option<f64> {
        None
    }
}

/// Results over the reported window of one trace.
#[derive(Debug, Clone, Copy, Default)]
struct Score {
    /// Seconds reported.
    secs: u64,
    /// Seconds whose latency exceeded the SLO.
    violations: u64,
    /// Sum over the seconds of the active plus starting instances.
    instance_secs: u64,
    /// Sum over the seconds of 1 − served / (active × capacity).
    slack_sum: f64,
    /// Changes of the desired count.
    actions: u64,
}

impl Score {
    /// Mean slack over the seconds.
    fn slack(&self) -> f64 {
        if self.secs == 0 {
            0.0
        } else {
            self.slack_sum / self.secs as f64
        }
    }

    fn add(&mut self, o: &Score) {
        self.secs += o.secs;
        self.violations += o.violations;
        self.instance_secs += o.instance_secs;
        self.slack_sum += o.slack_sum;
        self.actions += o.actions;
    }
}

/// The parameters the command line changes.
#[derive(Clone, Copy)]
struct Model {
    /// Seconds from an applied scale-up to the new instances active.
    startup: u64,
    /// Target utilisation of both controllers.
    target: f64,
}

/// Instances at the start: what the first minute's mean load needs at the target.
fn initial_instances(load: &[f64], target: f64) -> u32 {
    let minute = &load[..load.len().min(60)];
    let mean = minute.iter().sum::<f64>() / minute.len() as f64;
    ((mean / (CAPACITY * target)).ceil() as u32).clamp(MIN, MAX)
}

/// One second of a simulation, for `--timeline`.
#[derive(Debug, Clone, Copy)]
struct Sample {
    desired: u32,
    active: u32,
    backlog: f64,
    u: f64,
    violated: bool,
    forecast: Option<f64>,
}

/// Replay `trace` through `ctl` on the fluid-queue model; `log` gets every second when given.
fn simulate(
    m: Model,
    trace: &Trace,
    ctl: &mut dyn Controller,
    mut log: Option<&mut Vec<Sample>>,
) -> Score {
    let mut desired = initial_instances(&trace.load, m.target);
    let mut active = desired;
    // Activation times of the starting instances, oldest first.
    let mut starting: VecDeque<u64> = VecDeque::new();
    let mut backlog = 0.0f64;
    let mut score = Score::default();
    for (i, &load) in trace.load.iter().enumerate() {
        let t = i as u64;
        while starting.front().is_some_and(|&at| at <= t) {
            starting.pop_front();
            active += 1;
        }
        let cap = active as f64 * CAPACITY;
        let served = (load + backlog).min(cap);
        backlog = (backlog + load - served).max(0.0);
        let u = if cap > 0.0 { served / cap } else { 1.0 };
        let latency = if cap > 0.0 {
            SERVICE_S / (1.0 - u.min(U_CAP)) + backlog / cap
        } else {
            f64::INFINITY
        };
        let counted = i >= trace.report_from;
        if counted {
            score.secs += 1;
            score.violations += u64::from(latency > SLO_S);
            score.instance_secs += u64::from(active) + starting.len() as u64;
            score.slack_sum += 1.0 - u;
        }
        let seen = Seen {
            desired,
            active,
            used: served,
        };
        let decided = ctl.step(t, &seen);
        if let Some(log) = log.as_deref_mut() {
            log.push(Sample {
                desired,
                active,
                backlog,
                u,
                violated: latency > SLO_S,
                forecast: ctl.forecast(),
            });
        }
        if let Some(to) = decided {
            let to = to.clamp(MIN, MAX);
            if to == desired {
                continue;
            }
            if counted {
                score.actions += 1;
            }
            if to > desired {
                for _ in desired..to {
                    starting.push_back(t + m.startup);
                }
            } else {
                for _ in to..desired {
                    if starting.pop_back().is_none() {
                        active -= 1;
                    }
                }
            }
            desired = to;
        }
    }
    score
}

// ---------------------------------------------------------------------------------------------
// Aether: the real core

/// One Aether configuration: the rules (settings tweaked or not) and the bounds.
#[derive(Clone)]
struct Variant {
    name: String,
    rules: Rules,
    bounds: Bounds,
    predictive: bool,
}

/// What happened to Aether's proposals (diagnostics).
#[derive(Debug, Clone, Copy, Default)]
struct Diag {
    /// Applied decisions by who started them: a rule alone, a rule raised by the forecast, the
    /// forecast alone.
    by_rule: u64,
    by_rule_raised: u64,
    by_forecast: u64,
    ups: u64,
    downs: u64,
    /// Applied scale-ups cut by max_step, and the instances cut.
    step_clamps: u64,
    step_cut: u64,
    /// Seconds a proposal was held back, by reason.
    held_converging: u64,
    held_up_cooldown: u64,
    held_down_cooldown: u64,
    held_rate: u64,
    held_bound: u64,
    held_other: u64,
}

impl Diag {
    fn add(&mut self, o: &Diag) {
        self.by_rule += o.by_rule;
        self.by_rule_raised += o.by_rule_raised;
        self.by_forecast += o.by_forecast;
        self.ups += o.ups;
        self.downs += o.downs;
        self.step_clamps += o.step_clamps;
        self.step_cut += o.step_cut;
        self.held_converging += o.held_converging;
        self.held_up_cooldown += o.held_up_cooldown;
        self.held_down_cooldown += o.held_down_cooldown;
        self.held_rate += o.held_rate;
        self.held_bound += o.held_bound;
        self.held_other += o.held_other;
    }
}

/// Aether's leader loop in mode auto, minus the I/O: the real [`Brain`], [`decide::context`]
/// and [`safety::check`], over the decisions it applied.
struct Aether {
    brain: Brain,
    /// The policy's settings: the variant's bounds and rule settings, the `[controller]`
    /// defaults otherwise.
    settings: decide::Settings,
    /// Seconds ahead a scale-up must look (`Brain::propose`'s `lead_secs`).
    lead: u64,
    /// The one slice, updated each second.
    world: World,
    /// Applied decisions, oldest first (the policy reads them newest first).
    applied: Vec<Decision>,
    /// Diagnostics count from this second (the trace's reported window).
    report_from: u64,
    diag: Diag,
}

impl Aether {
    /// A fresh controller (empty history, cold forecaster) for variant `v`.
    fn new(v: &Variant, m: Model, report_from: u64) -> Aether {
        let slice = SliceView {
            blueprint: "sim".into(),
            slice: "web".into(),
            desired: 0,
            min: MIN,
            max: MAX,
            active: 0,
            cpu_reserved: CAPACITY,
            cpu_used: None,
            calls_per_s: None,
            latency_ms: None,
            target_cpu: None,
            target_latency_ms: None,
            predictive: Some(v.predictive),
            up_cooldown_ms: None,
            down_cooldown_ms: None,
        };
        let defaults = aether::config::ControllerConfig::default();
        Aether {
            settings: decide::Settings {
                bounds: v.bounds.clone(),
                ..decide::Settings::new(&defaults, &v.rules.settings)
            },
            brain: Brain::new(v.rules.clone(), ForecastConfig::default(), D.horizon_s),
            // Mode auto: start-up plus one decision interval (decide::lead_secs).
            lead: m.startup + 1,
            world: World {
                now: 0,
                slices: vec![slice],
                nodes: vec![],
            },
            applied: Vec::new(),
            report_from,
            diag: Diag::default(),
        }
    }

    /// The safety context of `action`, from the applied decisions (as the leader builds it).
    fn context(&self, action: &Action) -> Context {
        let newest_first = || self.applied.iter().rev();
        let recent = decide::recent(newest_first(), self.world.now);
        decide::context(action, &self.world, newest_first(), recent, &self.settings)
    }

    /// Record `action` as applied now (mode auto: decided and applied at once).
    fn apply(&mut self, action: Action, rule: String) {
        let now = self.world.now;
        self.applied.push(Decision {
            id: self.applied.len() as u64 + 1,
            at: now,
            by: "sim".into(),
            mode: ControllerMode::Auto,
            layers: Vec::new(),
            action,
            rule,
            reasoning: Vec::new(),
            inputs: Vec::new(),
            review: None,
            status: DecisionStatus::Applied {
                at: now,
                by: "sim".into(),
            },
            timeline: Vec::new(),
            outcome: None,
        });
    }
}

impl Controller for Aether {
    fn forecast(&self) -> Option<f64> {
        let f = self.brain.forecaster(&self.world.slices[0].target())?;
        f.peak(self.lead).map(|(_, v)| v)
    }

    fn step(&mut self, t: u64, seen: &Seen) -> Option<u32> {
        let now = t * 1000;
        self.world.now = now;
        let s = &mut self.world.slices[0];
        s.desired = seen.desired;
        s.active = seen.active;
        s.cpu_used = Some(seen.used);
        self.brain.observe(&self.world);
        let p = self
            .brain
            .propose(&self.world, self.lead)
            .into_iter()
            .next()?;
        let counted = t >= self.report_from;
        let mut action = p.action;
        let ctx = self.context(&action);
        let wanted = match action {
            Action::Scale { to, .. } => to,
            _ => return None,
        };
        match safety::check(&mut action, &ctx, &self.settings.bounds) {
            Check::Go { notes } => {
                let Action::Scale { from, to, .. } = action else {
                    return None;
                };
                let up = to > from;
                if counted {
                    let d = &mut self.diag;
                    if p.rule == "forecast" {
                        d.by_forecast += 1;
                    } else if p.layers.iter().any(|l| l == "forecast") {
                        d.by_rule_raised += 1;
                    } else {
                        d.by_rule += 1;
                    }
                    if up {
                        d.ups += 1;
                    } else {
                        d.downs += 1;
                    }
                    if up && notes.iter().any(|n| matches!(n, Clamp::Step { .. })) {
                        d.step_clamps += 1;
                        d.step_cut += u64::from(wanted.min(MAX).abs_diff(to));
                    }
                }
                self.apply(action, p.rule);
                Some(to)
            }
            Check::Stop(reason) => {
                if counted {
                    let d = &mut self.diag;
                    let slot = match reason {
                        StopReason::Converging { .. } => &mut d.held_converging,
                        StopReason::Cooldown { up: true, .. } => &mut d.held_up_cooldown,
                        StopReason::Cooldown { up: false, .. } => &mut d.held_down_cooldown,
                        StopReason::RateLimit { .. } => &mut d.held_rate,
                        StopReason::AtBound { .. } => &mut d.held_bound,
                        StopReason::Vetoed { .. } | StopReason::LastReadyNode { .. } => {
                            &mut d.held_other
                        }
                    };
                    *slot += 1;
                }
                None
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The baseline: Kubernetes HPA

/// The Kubernetes HPA algorithm on cpu utilisation with its default behaviour.
struct Hpa {
    target: f64,
    /// Served cores and seconds summed over the current sync period, since the active count
    /// last changed (metrics-server style: the utilisation averaged over the period, not one
    /// sample; seconds with another set of ready pods do not mix in).
    used_sum: f64,
    secs: u32,
    last_active: u32,
    /// Recommendations of the stabilisation window: (second, count).
    recs: VecDeque<(u64, u32)>,
}

impl Hpa {
    fn new(target: f64) -> Hpa {
        Hpa {
            target,
            used_sum: 0.0,
            secs: 0,
            last_active: 0,
            recs: VecDeque::new(),
        }
    }
}

impl Controller for Hpa {
    fn step(&mut self, t: u64, seen: &Seen) -> Option<u32> {
        if seen.active != self.last_active {
            (self.used_sum, self.secs, self.last_active) = (0.0, 0, seen.active);
        }
        self.used_sum += seen.used;
        self.secs += 1;
        if (t + 1) % HPA_SYNC_S != 0 {
            return None;
        }
        let (used, secs) = (self.used_sum, self.secs);
        (self.used_sum, self.secs) = (0.0, 0);
        if seen.active == 0 {
            return None;
        }
        let u = used / (f64::from(secs) * f64::from(seen.active) * CAPACITY);
        let ratio = u / self.target;
        // Within the tolerance the recommendation is the current count.
        let rec = if (ratio - 1.0).abs() <= HPA_TOLERANCE {
            seen.desired
        } else {
            (seen.active as f64 * ratio).ceil() as u32
        }
        .clamp(MIN, MAX);
        self.recs.push_back((t, rec));
        while self
            .recs
            .front()
            .is_some_and(|(at, _)| at + HPA_DOWN_WINDOW_S <= t)
        {
            self.recs.pop_front();
        }
        let cur = seen.desired;
        let new = if rec > cur {
            // Scale-up: no stabilisation; policy max(4 pods, 100 %) per 15 s.
            let limit = (cur + HPA_UP_PODS).max(cur + cur * HPA_UP_PERCENT / 100);
            rec.min(limit)
        } else {
            // Scale-down: the highest recommendation of the window.
            let stable = self.recs.iter().map(|(_, r)| *r).max().unwrap_or(rec);
            stable.min(cur)
        };
        (new != cur).then_some(new)
    }
}

// ---------------------------------------------------------------------------------------------
// Running and printing

/// One simulation to run on some core.
type Job<'a, T> = Box<dyn FnOnce() -> T + Send + 'a>;

/// Run `jobs` on the available cores; results in job order.
fn run_parallel<T: Send>(jobs: Vec<Job<'_, T>>) -> Vec<T> {
    let n = jobs.len();
    let threads = std::thread::available_parallelism()
        .map(|p| p.get())
        .unwrap_or(1)
        .min(n.max(1));
    let queue: Mutex<Vec<(usize, Job<'_, T>)>> =
        Mutex::new(jobs.into_iter().enumerate().rev().collect());
    let results: Mutex<Vec<Option<T>>> = Mutex::new((0..n).map(|_| None).collect());
    let done = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let Some((i, job)) = queue.lock().expect("queue").pop() else {
                        break;
                    };
                    let r = job();
                    results.lock().expect("results")[i] = Some(r);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(done.load(Ordering::Relaxed), n);
    results
        .into_inner()
        .expect("results")
        .into_iter()
        .map(|r| r.expect("every job ran"))
        .collect()
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// `a / b` as a percentage, or a word when `b` is 0.
fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 {
        if a == 0.0 { "0/0".into() } else { "∞".into() }
    } else {
        pct(a / b)
    }
}

/// The goal's three criteria on Aether against the HPA: (violations, cost, slack).
fn criteria(a: &Score, h: &Score) -> [bool; 3] {
    [
        a.violations as f64 <= GOAL_VIOLATIONS * h.violations as f64,
        a.instance_secs as f64 <= GOAL_COST * h.instance_secs as f64,
        a.slack() <= GOAL_SLACK,
    ]
}

fn mark(ok: bool) -> &'static str {
    if ok { "pass" } else { "FAIL" }
}

fn describe_rules(r: &Rules) -> Vec<String> {
    let s = &r.settings;
    let mut out = vec![format!(
        "settings: target_cpu {:.2}, tolerance {:.2} (band {:.3}..{:.3}), stabilization {}s, up_cooldown {}s, down_cooldown {}s, predictive {}",
        s.target_cpu,
        s.tolerance,
        s.target_cpu * (1.0 - s.tolerance),
        s.target_cpu * (1.0 + s.tolerance),
        s.stabilization_secs,
        s.up_cooldown_secs,
        s.down_cooldown_secs,
        s.predictive
    )];
    for rule in r.rules.iter().filter(|r| r.scope == rules::Scope::Slice) {
        let when: Vec<String> = rule.when.iter().map(|c| c.to_string()).collect();
        out.push(format!(
            "rule {} (priority {}): {} → {:?} {:?}",
            rule.name,
            rule.priority,
            when.join(" and "),
            rule.action,
            rule.step
        ));
    }
    out
}

/// Aether's configurations: the default first, then one knob changed at a time.
fn variants(base: &Rules) -> Vec<Variant> {
    let default = Variant {
        name: "default (as the header)".into(),
        rules: base.clone(),
        bounds: D.bounds.clone(),
        predictive: true,
    };
    let variant = |name: &str, f: &dyn Fn(&mut Variant)| {
        let mut v = default.clone();
        v.name = name.into();
        f(&mut v);
        v
    };
    let cpu_high_for = |v: &mut Variant, secs: u64| {
        for rule in v.rules.rules.iter_mut().filter(|r| r.name == "cpu-high") {
            rule.when[0].for_secs = secs;
        }
    };
    vec![
        default.clone(),
        variant("predictive off (rules only)", &|v| v.predictive = false),
        variant("rules: up_cooldown 0s", &|v| {
            v.rules.settings.up_cooldown_secs = 0
        }),
        variant("rules: cpu-high for 10s", &|v| cpu_high_for(v, 10)),
        variant("rules: down_cooldown 60s", &|v| {
            v.rules.settings.down_cooldown_secs = 60
        }),
        variant(
            &format!("config: max_step {MAX} (not a rules knob)"),
            &|v| v.bounds.max_step = MAX,
        ),
        variant(
            &format!("up_cooldown 0s + for 10s + max_step {MAX}"),
            &|v| {
                v.rules.settings.up_cooldown_secs = 0;
                cpu_high_for(v, 10);
                v.bounds.max_step = MAX;
            },
        ),
        variant("without the cpu-saturated rule", &|v| {
            v.rules.rules.retain(|r| r.name != "cpu-saturated")
        }),
        variant("config: max_step_percent 100 (the HPA's)", &|v| {
            v.bounds.max_step_percent = 100
        }),
    ]
}

/// One line of the results: Aether and the HPA on a trace (or the totals).
struct Row {
    name: String,
    aether: Score,
    hpa: Score,
}

/// Rows of one Aether configuration: the goal's traces, `all` (their totals, when more than one),
/// then the extras.
fn rows(traces: &[Trace], aether: &[Score], hpa: &[Score]) -> Vec<Row> {
    let row = |i: usize| Row {
        name: format!("{} ({})", traces[i].name, traces[i].window),
        aether: aether[i],
        hpa: hpa[i],
    };
    let goal: Vec<usize> = (0..traces.len()).filter(|&i| !traces[i].extra).collect();
    let mut out: Vec<Row> = goal.iter().map(|&i| row(i)).collect();
    if goal.len() > 1 {
        let mut all = Row {
            name: "all".into(),
            aether: Score::default(),
            hpa: Score::default(),
        };
        for &i in &goal {
            all.aether.add(&aether[i]);
            all.hpa.add(&hpa[i]);
        }
        out.push(all);
    }
    out.extend((0..traces.len()).filter(|&i| traces[i].extra).map(row));
    out
}

/// The row the goal is judged on: `all` when there is one, else the first.
fn goal_row(rows: &[Row]) -> &Row {
    rows.iter().find(|r| r.name == "all").unwrap_or(&rows[0])
}

fn print_header(o: &Opts, rules: &Rules, model: Model, traces: &[Trace]) {
    let lead = model.startup + 1;
    println!(
        "controller simulator: does prediction pay? (seed {})",
        o.seed
    );
    println!();
    println!("model");
    println!(
        "  time step 1 s; load = demand in cores; each instance serves capacity {CAPACITY:.1} core (reserved cpu {CAPACITY:.1})"
    );
    println!(
        "  fluid queue: served = min(load + backlog, active × capacity) = the measured cpu_used; backlog += load − served"
    );
    println!(
        "  start-up {} s from the applied decision to active; scale-in removes instances at once (starting ones first)",
        model.startup
    );
    println!(
        "  instances min {MIN}, max {MAX}; initial = ceil(mean load of the first minute / (capacity × target)), all active"
    );
    println!(
        "  latency = {:.0} ms / (1 − min(u, {U_CAP})) + backlog / (active × capacity) s, u = served / (active × capacity)",
        SERVICE_S * 1000.0
    );
    println!(
        "  SLO {:.0} ms: a second violates when latency > SLO (u > {:.2}, or a backlog over {:.2} s of capacity)",
        SLO_S * 1000.0,
        1.0 - SERVICE_S / SLO_S,
        SLO_S - SERVICE_S
    );
    println!(
        "  cost = instance-seconds of active + starting instances; slack = 1 − served / (active × capacity), mean over seconds"
    );
    println!(
        "  target utilisation, both controllers: {:.2} ({})",
        model.target,
        if o.target.is_some() {
            "--target"
        } else {
            "the built-in rules' target_cpu"
        }
    );
    println!("aether (the real core, mode auto)");
    println!(
        "  Brain::new(rules::parse(\"assets\", DEFAULT_RULES){}, ForecastConfig::default(), horizon {} s)",
        if o.target.is_some() {
            " with settings.target_cpu = --target"
        } else {
            ""
        },
        D.horizon_s
    );
    for line in describe_rules(rules) {
        println!("    {line}");
    }
    println!("    forecast: {:?}", ForecastConfig::default());
    println!(
        "  SliceView: cpu_reserved {CAPACITY:.1}, cpu_used = served, predictive Some(true); calls_per_s and latency_ms None \
         (no ingress yet, as flow.rs builds it)"
    );
    println!(
        "  observe + propose every second, the decision applied at once; lead = startup + 1 s = {lead} s \
         (guarded mode would apply {grace} s later and need a lead {grace} s longer)",
        grace = D.grace_s
    );
    println!(
        "  safety::check with {:?} (the [controller] defaults); cooldowns from the rule settings; converging = the newest \
         applied decision (≤ {} s old) while active < desired; recent_decisions = applied in the last 60 s",
        D.bounds,
        D.converge_timeout_ms / 1000
    );
    println!("hpa baseline (the Kubernetes HPA algorithm on cpu utilisation)");
    println!(
        "  every {HPA_SYNC_S} s: u = mean utilisation of the active instances over the period (since the active count last \
         changed); within |u/target − 1| ≤ {HPA_TOLERANCE} the recommendation is the current count, else ceil(active × u / target)"
    );
    println!(
        "  scale-up: no stabilisation, at most max({HPA_UP_PODS} pods, {HPA_UP_PERCENT}%) per {HPA_SYNC_S} s; \
         scale-down: to the highest recommendation of the last {HPA_DOWN_WINDOW_S} s; same min/max and start-up"
    );
    println!("traces (seeded; each trace its own stream)");
    for tr in traces {
        println!("  {:<9} {}", tr.name, tr.what);
    }
    println!(
        "goal: Aether ≤ {:.0}% of the HPA's SLO-violation seconds, ≤ {:.0}% of its instance-seconds, slack ≤ {:.0}%",
        GOAL_VIOLATIONS * 100.0,
        GOAL_COST * 100.0,
        GOAL_SLACK * 100.0
    );
    println!();
}

fn print_results(rows: &[Row]) {
    println!("results (default run)");
    println!(
        "  {:<22} {:<11} {:>10} {:>12} {:>8} {:>8}",
        "trace (window)", "controller", "SLO viol s", "instance-s", "slack", "actions"
    );
    for r in rows {
        for (ctl, s) in [("aether", &r.aether), ("hpa", &r.hpa)] {
            println!(
                "  {:<22} {:<11} {:>10} {:>12} {:>8} {:>8}",
                if ctl == "aether" { r.name.as_str() } else { "" },
                ctl,
                s.violations,
                s.instance_secs,
                pct(s.slack()),
                s.actions
            );
        }
        let (a, h) = (&r.aether, &r.hpa);
        println!(
            "  {:<22} {:<11} {:>10} {:>12} {:>8} {:>8}",
            "",
            "aether/hpa",
            ratio(a.violations as f64, h.violations as f64),
            ratio(a.instance_secs as f64, h.instance_secs as f64),
            format!("{:+.1}pt", (a.slack() - h.slack()) * 100.0),
            ratio(a.actions as f64, h.actions as f64)
        );
    }
    println!();
}

fn print_verdict(rows: &[Row]) {
    println!(
        "verdict (SLO-violation seconds ≤ {:.0}% of the HPA's | instance-seconds ≤ {:.0}% of the HPA's | slack ≤ {:.0}%)",
        GOAL_VIOLATIONS * 100.0,
        GOAL_COST * 100.0,
        GOAL_SLACK * 100.0
    );
    for r in rows {
        let (a, h) = (&r.aether, &r.hpa);
        let [v, c, s] = criteria(a, h);
        println!(
            "  {:<22} violations {} ({} vs {}) | cost {} ({}) | slack {} ({}) => {}",
            r.name,
            mark(v),
            a.violations,
            h.violations,
            mark(c),
            ratio(a.instance_secs as f64, h.instance_secs as f64),
            mark(s),
            pct(a.slack()),
            if v && c && s {
                "goal met"
            } else {
                "goal MISSED"
            }
        );
    }
    let g = goal_row(rows);
    let [v, c, s] = criteria(&g.aether, &g.hpa);
    println!(
        "  overall ({}): {}",
        g.name,
        if v && c && s {
            "GOAL MET"
        } else {
            "GOAL MISSED"
        }
    );
    println!();
}

fn print_diagnostics(traces: &[Trace], runs: &[(Score, Diag)]) {
    println!(
        "aether diagnostics (default run, reported window): applied decisions by origin; seconds a proposal was held back \
         by safety::check, by reason"
    );
    let line = |name: &str, d: &Diag| {
        println!(
            "  {:<10} {:>4} {:>5} {:>5} {:>7} {:>7} {:>10} {:>7} {:>9} {:>5} {:>8} {:>15}",
            name,
            d.ups,
            d.downs,
            d.by_rule,
            d.by_rule_raised,
            d.by_forecast,
            d.held_converging,
            d.held_up_cooldown,
            d.held_down_cooldown,
            d.held_rate,
            d.held_bound + d.held_other,
            format!("{} (−{} inst)", d.step_clamps, d.step_cut)
        );
    };
    println!(
        "  {:<10} {:>4} {:>5} {:>5} {:>7} {:>7} {:>10} {:>7} {:>9} {:>5} {:>8} {:>15}",
        "trace",
        "ups",
        "downs",
        "rule",
        "rule+fc",
        "fc only",
        "converging",
        "up-cool",
        "down-cool",
        "rate",
        "at-bound",
        "max_step clamps"
    );
    let mut all = Diag::default();
    let goal = traces.iter().filter(|t| !t.extra).count();
    for (tr, (_, d)) in traces.iter().zip(runs).filter(|(t, _)| !t.extra) {
        all.add(d);
        line(tr.name, d);
    }
    if goal > 1 {
        line("all", &all);
    }
    for (tr, (_, d)) in traces.iter().zip(runs).filter(|(t, _)| t.extra) {
        line(tr.name, d);
    }
    println!(
        "  (rule: a rule alone; rule+fc: a rule's count raised, or a scale-in limited, by the forecast; fc only: the forecast"
    );
    println!(
        "   alone; at-bound: at min/max already; max_step clamps: applied scale-ups cut to a step of {}, and the instances cut)",
        D.bounds.max_step
    );
    println!();
}

fn print_variants(traces: &[Trace], vars: &[Variant], runs: &[Vec<(Score, Diag)>], hpa: &[Score]) {
    println!(
        "variants (Aether with one knob changed; the HPA and the model unchanged; for the analysis: the verdict above is the default's)"
    );
    let base_rows = rows(
        traces,
        &hpa.iter().map(|_| Score::default()).collect::<Vec<_>>(),
        hpa,
    );
    let goal = goal_row(&base_rows).name.clone();
    print!("  {:<42}", "SLO-violation s / instance-s vs the HPA");
    for r in &base_rows {
        print!(" {:>20}", r.name);
    }
    println!("   goal on {goal}");
    print!("  {:<42}", "hpa baseline");
    for r in &base_rows {
        print!(" {:>20}", format!("{} / 100%", r.hpa.violations));
    }
    println!();
    for (v, run) in vars.iter().zip(runs) {
        let scores: Vec<Score> = run.iter().map(|(s, _)| *s).collect();
        let rs = rows(traces, &scores, hpa);
        print!("  {:<42}", v.name);
        for r in &rs {
            let cell = format!(
                "{} / {}",
                r.aether.violations,
                ratio(r.aether.instance_secs as f64, r.hpa.instance_secs as f64)
            );
            print!(" {cell:>20}");
        }
        let g = goal_row(&rs);
        let [vi, c, s] = criteria(&g.aether, &g.hpa);
        println!(
            "   viol {} cost {} slack {} ({})",
            mark(vi),
            mark(c),
            mark(s),
            pct(g.aether.slack())
        );
    }
    println!();
}

/// Per 10 s of `tr.event`: the mean load, then for each controller its desired/active count at
/// the end, the mean utilisation, the largest backlog and the violating seconds; for Aether also
/// the forecaster's peak over the lead time at the end of the row.
fn print_timeline(model: Model, tr: &Trace, base: &Rules) {
    let mut logs = [Vec::new(), Vec::new()];
    let mut a = Aether::new(&variants(base)[0], model, 0);
    simulate(model, tr, &mut a, Some(&mut logs[0]));
    simulate(model, tr, &mut Hpa::new(model.target), Some(&mut logs[1]));
    println!(
        "timeline of {} (per 10 s: mean load; desired/active at the end, mean u, largest backlog in core-seconds, \
         violating seconds; fc = Aether's forecast peak within its {} s lead at the end, in cores)",
        tr.name,
        model.startup + 1
    );
    println!(
        "  {:>7} {:>6}   {:>7} {:>5} {:>7} {:>4} {:>6}   {:>7} {:>5} {:>7} {:>4}",
        "t", "load", "aether", "u", "backlog", "viol", "fc", "hpa", "u", "backlog", "viol"
    );
    let end = tr.event.end.min(tr.load.len());
    for start in (tr.event.start..end).step_by(10) {
        let stop = (start + 10).min(end);
        let load = tr.load[start..stop].iter().sum::<f64>() / (stop - start) as f64;
        print!("  {start:>7} {load:>6.2}");
        for (i, log) in logs.iter().enumerate() {
            let w = &log[start..stop];
            let last = w[w.len() - 1];
            let u = w.iter().map(|s| s.u).sum::<f64>() / w.len() as f64;
            let backlog = w.iter().map(|s| s.backlog).fold(0.0, f64::max);
            let viol = w.iter().filter(|s| s.violated).count();
            print!(
                "   {:>7} {u:>5.2} {backlog:>7.1} {viol:>4}",
                format!("{}/{}", last.desired, last.active)
            );
            if i == 0 {
                let fc = last.forecast.map_or("-".into(), |v| format!("{v:.2}"));
                print!(" {fc:>6}");
            }
        }
        println!();
    }
    println!();
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
    let traces: Vec<Trace> = TRACES
        .iter()
        .filter(|n| o.trace.as_deref().is_none_or(|t| t == **n))
        .map(|n| build_trace(n, o.seed, model.startup + 1))
        .collect();
    print_header(&o, &base, model, &traces);

    // Jobs: the HPA on each trace, then each Aether variant on each trace.
    let vars = variants(&base);
    let mut jobs: Vec<Job<'_, (Score, Diag)>> = Vec::new();
    for tr in &traces {
        jobs.push(Box::new(move || {
            let s = simulate(model, tr, &mut Hpa::new(target), None);
            (s, Diag::default())
        }));
    }
    for v in &vars {
        for tr in &traces {
            jobs.push(Box::new(move || {
                let mut a = Aether::new(v, model, tr.report_from as u64);
                let s = simulate(model, tr, &mut a, None);
                (s, a.diag)
            }));
        }
    }
    let mut results = run_parallel(jobs).into_iter();
    let hpa: Vec<Score> = results
        .by_ref()
        .take(traces.len())
        .map(|(s, _)| s)
        .collect();
    let runs: Vec<Vec<(Score, Diag)>> = vars
        .iter()
        .map(|_| results.by_ref().take(traces.len()).collect())
        .collect();

    let default: Vec<Score> = runs[0].iter().map(|(s, _)| *s).collect();
    let table = rows(&traces, &default, &hpa);
    print_results(&table);
    print_verdict(&table);
    print_diagnostics(&traces, &runs[0]);
    print_variants(&traces, &vars, &runs, &hpa);
    if o.timeline {
        for tr in &traces {
            print_timeline(model, tr, &base);
        }
    }
    println!(
        "ran in {:.1} s ({} simulated seconds per controller configuration, {} configurations)",
        started.elapsed().as_secs_f64(),
        traces.iter().map(|t| t.load.len()).sum::<usize>(),
        vars.len() + 1
    );
}
