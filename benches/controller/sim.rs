//! The fluid-queue model of a slice's instances, what a controller sees each second, and the score.

use super::*;

/// What a controller sees at the end of a second.
pub(crate) struct Seen {
    pub(crate) desired: u32,
    pub(crate) active: u32,
    /// Cores the active instances served (the measured cpu_used).
    pub(crate) used: f64,
    /// What the ingress sees (the request drive): calls per second — the arrivals, load ÷
    /// service time, while an instance is active (0 at zero: nothing is answered, requests
    /// wait) —, the second's latency (ms; `None` when nothing was served), and the requests
    /// waiting at the ingress (the backlog ÷ service time while no instance is active).
    pub(crate) calls: f64,
    pub(crate) latency_ms: Option<f64>,
    pub(crate) waiting: u32,
}

/// A scaling controller under test: called at the end of every simulated second, it returns
/// the new desired instance count when it acts (applied at once).
pub(crate) trait Controller {
    /// Second `t` ended with `seen`; the new desired count, if it changes it.
    fn step(&mut self, t: u64, seen: &Seen) -> Option<u32>;

    /// The highest load it forecasts within its lead time, if it forecasts (`--timeline`).
    fn forecast(&self) -> Option<f64> {
        None
    }
}

/// Results over the reported window of one trace.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Score {
    /// Seconds reported.
    pub(crate) secs: u64,
    /// Seconds whose latency exceeded the SLO.
    pub(crate) violations: u64,
    /// Sum over the seconds of the active plus starting instances.
    pub(crate) instance_secs: u64,
    /// Sum over the seconds of 1 − served / (active × capacity).
    pub(crate) slack_sum: f64,
    /// Changes of the desired count.
    pub(crate) actions: u64,
}

impl Score {
    /// Mean slack over the seconds.
    pub(crate) fn slack(&self) -> f64 {
        if self.secs == 0 {
            0.0
        } else {
            self.slack_sum / self.secs as f64
        }
    }

    pub(crate) fn add(&mut self, o: &Score) {
        self.secs += o.secs;
        self.violations += o.violations;
        self.instance_secs += o.instance_secs;
        self.slack_sum += o.slack_sum;
        self.actions += o.actions;
    }
}

/// The parameters the command line changes.
#[derive(Clone, Copy)]
pub(crate) struct Model {
    /// Seconds from an applied scale-up to the new instances active.
    pub(crate) startup: u64,
    /// Target utilisation of both controllers.
    pub(crate) target: f64,
}

/// Instances at the start: what the first minute's mean load needs at the target (at least
/// one).
pub(crate) fn initial_instances(load: &[f64], target: f64) -> u32 {
    let minute = &load[..load.len().min(60)];
    let mean = minute.iter().sum::<f64>() / minute.len() as f64;
    ((mean / (CAPACITY * target)).ceil() as u32).clamp(MIN.max(1), MAX)
}

/// One second of a simulation, for `--timeline`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) desired: u32,
    pub(crate) active: u32,
    pub(crate) backlog: f64,
    pub(crate) u: f64,
    pub(crate) violated: bool,
    pub(crate) forecast: Option<f64>,
}

/// Replay `trace` through `ctl` on the fluid-queue model; `log` gets every second when given.
/// Counts are clamped to `min..=MAX`; a controller that may scale to zero passes `min = 0`.
/// A second with no requests at all (no load, no backlog) never violates, even at zero.
pub(crate) fn simulate(
    m: Model,
    trace: &Trace,
    min: u32,
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
        } else if load + backlog > 0.0 {
            f64::INFINITY
        } else {
            0.0
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
            calls: if active > 0 { load / SERVICE_S } else { 0.0 },
            latency_ms: (served > 0.0).then_some(latency * 1000.0),
            waiting: if active == 0 {
                (backlog / SERVICE_S).ceil() as u32
            } else {
                0
            },
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
            let to = to.clamp(min, MAX);
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
