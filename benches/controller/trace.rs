//! The load traces: each a seeded stream of demand per second and the event it tests.

use super::*;

/// The goal's traces, then `recurring` (an extra: not in the `all` totals), then `sporadic`
/// (the request drive only: scale to zero and back).
pub(crate) const TRACES: [&str; 6] = ["daily", "spike", "step", "noise", "recurring", "sporadic"];

/// How long `sporadic` lets Aether's slice idle before it scales to zero (its
/// `scaling.idle_to_zero`).
pub(crate) const IDLE_TO_ZERO_S: u64 = 600;

/// One load trace: demand in cores for each second.
#[derive(Clone)]
pub(crate) struct Trace {
    pub(crate) name: &'static str,
    /// How it is built, for the header.
    pub(crate) what: String,
    pub(crate) load: Vec<f64>,
    /// First second that counts in the results (the daily trace skips its learning day).
    pub(crate) report_from: usize,
    /// What the reported window is, for the table.
    pub(crate) window: &'static str,
    /// The seconds `--timeline` prints.
    pub(crate) event: std::ops::Range<usize>,
    /// Not one of the four traces of the goal: reported apart, not in the `all` totals.
    pub(crate) extra: bool,
    /// Only for the request drive, where Aether's slice has min = 0 and idle_to_zero (the HPA
    /// keeps min 1: it cannot scale to zero).
    pub(crate) to_zero: bool,
}

/// Uniform multiplicative noise `1 ± frac`.
pub(crate) fn jitter(rng: &mut StdRng, frac: f64) -> f64 {
    1.0 + rng.random_range(-frac..=frac)
}

/// Build trace `name` from `seed`; `lead` (Aether's lead time) is only for its description.
pub(crate) fn build_trace(name: &str, seed: u64, lead: u64) -> Trace {
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
                to_zero: false,
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
                to_zero: false,
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
                to_zero: false,
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
                to_zero: false,
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
                to_zero: false,
            }
        }
        "sporadic" => {
            // Bursts of a few requests a second with long silences: an internal tool.
            let (cores, len, gap, noise, total) = (0.5, 120u64, 40 * 60u64, 0.2, 6 * 3_600u64);
            let mut next = 300u64;
            let mut bursts = Vec::new();
            while next + len < total {
                bursts.push(next);
                // A silence of gap ± 50 %.
                next += len + (gap as f64 * jitter(&mut rng, 0.5)) as u64;
            }
            let load = (0..total)
                .map(|t| {
                    if bursts.iter().any(|b| (*b..b + len).contains(&t)) {
                        cores * jitter(&mut rng, noise)
                    } else {
                        0.0
                    }
                })
                .collect();
            let second = bursts.get(1).copied().unwrap_or(0) as usize;
            Trace {
                name: "sporadic",
                what: format!(
                    "extra, request drive only: {} bursts of {len} s at {cores} cores ({:.0} calls/s) × (1 ± {noise}) \
                     every {} ± 50 %, silence between; {} h, all reported; Aether's slice min = 0 with \
                     idle_to_zero {} (scales to zero, and from zero on the first waiting request), the HPA's min 1",
                    bursts.len(),
                    cores / SERVICE_S,
                    aether::domain::human_millis(gap * 1000),
                    total / 3_600,
                    aether::domain::human_millis(IDLE_TO_ZERO_S * 1000),
                ),
                load,
                report_from: 0,
                window: "all",
                event: second.saturating_sub(30)..second + 240,
                extra: true,
                to_zero: true,
            }
        }
        _ => unreachable!("checked by parse_opts"),
    }
}
