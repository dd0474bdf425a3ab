//! GPU health: the NVML signals that predict trouble, judged over a GPU's recent history. Pure:
//! the leader's aggregation passes each GPU's newest sample and its last seconds from the
//! metrics window, and turns what is found into anomaly flags (series `gpu<N>_<kind>`, see
//! [`Kind::series`]).
//!
//! - **Temperature trend**: a least-squares line through the last [`Settings::trend_secs`] of
//!   temperatures; a GPU at or over its slowdown threshold, or rising at least
//!   [`Settings::min_rise_per_min`] toward it and due to reach it within
//!   [`Settings::warn_within_secs`], is flagged with the fit's numbers.
//! - **XID errors** and **uncorrected ECC errors**: a counter that rose within
//!   [`Settings::errors_for_secs`] (a counter that falls — the node or the driver restarted —
//!   starts again from its new value).
//! - **Power capping** and **thermal slowdown**: the throttle bit held in at least
//!   [`SUSTAINED_SHARE`] of the samples of the last [`Settings::throttled_for_secs`].
//!
//! A GPU whose slowdown threshold is unknown has no trend verdict; a node without GPUs has
//! nothing to judge (its `gpu: unavailable (<reason>)` says why).

use super::gpu::{GpuSample, throttle};

/// Share of the samples of the throttle window that must have the bit for it to count as
/// sustained.
pub const SUSTAINED_SHARE: f32 = 0.9;

/// What GPU health judges against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Temperature history the trend line is fitted over, seconds.
    pub trend_secs: u64,
    /// A GPU the trend brings to its slowdown threshold within this many seconds is flagged.
    pub warn_within_secs: u64,
    /// Smallest rise that counts as a trend, °C per minute.
    pub min_rise_per_min: f32,
    /// A new XID or ECC error keeps its GPU flagged this long, seconds.
    pub errors_for_secs: u64,
    /// Power capping or thermal slowdown held this long is flagged, seconds.
    pub throttled_for_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            trend_secs: 600,
            warn_within_secs: 900,
            min_rise_per_min: 0.2,
            errors_for_secs: 900,
            throttled_for_secs: 300,
        }
    }
}

/// What is wrong with a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// At its slowdown threshold, or rising toward it.
    TempTrend,
    /// New critical XID errors.
    Xid,
    /// New uncorrected ECC errors.
    Ecc,
    /// Clocks held back by thermal or hardware slowdown, sustained.
    Thermal,
    /// Held at its power limit, sustained: a busy GPU often is, so it is reported but does not
    /// count as trouble ([`Kind::is_trouble`]).
    PowerCap,
}

impl Kind {
    const ALL: [(Kind, &'static str); 5] = [
        (Kind::TempTrend, "temp_trend"),
        (Kind::Xid, "xid_new"),
        (Kind::Ecc, "ecc_new"),
        (Kind::Thermal, "thermal"),
        (Kind::PowerCap, "power_cap"),
    ];

    /// The anomaly flag's series: `gpu0_temp_trend`, `gpu0_xid_new`, `gpu0_ecc_new`,
    /// `gpu0_thermal`, `gpu0_power_cap`.
    pub fn series(self, gpu: u32) -> String {
        let suffix = Self::ALL
            .iter()
            .find(|(k, _)| *k == self)
            .map_or("?", |(_, s)| s);
        format!("gpu{gpu}_{suffix}")
    }

    /// The kind an anomaly flag's series names, if it is a GPU-health flag.
    pub fn of_series(series: &str) -> Option<Kind> {
        let rest = series.strip_prefix("gpu")?;
        let (index, suffix) = rest.split_once('_')?;
        if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Self::ALL
            .iter()
            .find(|(_, s)| *s == suffix)
            .map(|(k, _)| *k)
    }

    /// Whether it predicts a failure: everything but power capping. A node with trouble takes
    /// no new GPU instances.
    pub fn is_trouble(self) -> bool {
        self != Kind::PowerCap
    }
}

/// One finding, with its numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub gpu: u32,
    pub kind: Kind,
    /// The figure judged: °C (trend), new errors (XID, ECC), share of samples (throttle).
    pub value: f32,
    /// What it was judged against: the slowdown threshold, 0 errors, [`SUSTAINED_SHARE`].
    pub limit: f32,
    /// One sentence with the numbers, e.g. `gpu0 81 °C rising 0.9 °C/min, slowdown at 87 °C in
    /// ~7 min`.
    pub reason: String,
}

/// One GPU: its newest sample and the last seconds of its series, one value per second, oldest
/// first (NaN: no sample that second), as long as the window holds.
#[derive(Debug, Clone, Copy)]
pub struct History<'a> {
    pub gpu: &'a GpuSample,
    pub temps: &'a [f32],
    pub xids: &'a [f32],
    pub ecc: &'a [f32],
    pub throttle: &'a [f32],
}

/// The last `secs` values of `v`.
fn last(v: &[f32], secs: u64) -> &[f32] {
    &v[v.len().saturating_sub(secs as usize)..]
}

/// Slope (per second) of the least-squares line through the finite values of `v` (x = index),
/// and how many points it used; `None` with fewer than 30 points.
fn slope(v: &[f32]) -> Option<(f64, usize)> {
    let pts: Vec<(f64, f64)> = v
        .iter()
        .enumerate()
        .filter(|(_, y)| y.is_finite())
        .map(|(x, y)| (x as f64, *y as f64))
        .collect();
    let n = pts.len();
    if n < 30 {
        return None;
    }
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n as f64;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n as f64;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| (sxy / sxx, n))
}

/// How much a counter rose over `v` (finite values only; a fall restarts it).
fn rise(v: &[f32]) -> f32 {
    let mut prev: Option<f32> = None;
    let mut total = 0.0;
    for x in v.iter().copied().filter(|x| x.is_finite()) {
        if let Some(p) = prev
            && x > p
        {
            total += x - p;
        }
        prev = Some(x);
    }
    total
}

/// `N s` under two minutes, else whole minutes.
fn span(secs: u64) -> String {
    if secs < 120 {
        format!("{secs} s")
    } else {
        format!("{} min", secs / 60)
    }
}

fn temp_trend(h: &History, s: &Settings) -> Option<Issue> {
    let g = h.gpu;
    let (temp, slow) = (g.temp_c, g.slowdown_c);
    if !(temp.is_finite() && slow.is_finite() && slow > 0.0) {
        return None;
    }
    let issue = |reason: String| Issue {
        gpu: g.index,
        kind: Kind::TempTrend,
        value: temp,
        limit: slow,
        reason,
    };
    if temp >= slow {
        return Some(issue(format!(
            "gpu{} {temp:.0} °C is at or above its slowdown threshold {slow:.0} °C",
            g.index
        )));
    }
    let window = last(h.temps, s.trend_secs);
    let (per_sec, points) = slope(window)?;
    let per_min = per_sec * 60.0;
    if per_min < s.min_rise_per_min as f64 {
        return None;
    }
    let eta_secs = (slow - temp) as f64 / per_sec;
    if eta_secs > s.warn_within_secs as f64 {
        return None;
    }
    Some(issue(format!(
        "gpu{} {temp:.0} °C rising {per_min:.1} °C/min, slowdown at {slow:.0} °C in ~{:.0} min (fit over {} samples, {})",
        g.index,
        (eta_secs / 60.0).ceil(),
        points,
        span(window.len() as u64)
    )))
}

fn errors(h: &History, s: &Settings, kind: Kind) -> Option<Issue> {
    let (series, what) = match kind {
        Kind::Xid => (h.xids, "critical XID error"),
        _ => (h.ecc, "uncorrected ECC error"),
    };
    let new = rise(last(series, s.errors_for_secs));
    if new < 1.0 {
        return None;
    }
    let plural = if new >= 2.0 { "s" } else { "" };
    let detail = match kind {
        Kind::Xid if h.gpu.last_xid != 0 => format!(" (newest XID {})", h.gpu.last_xid),
        Kind::Ecc => format!(" ({} since the driver loaded)", h.gpu.ecc_uncorrected),
        _ => String::new(),
    };
    Some(Issue {
        gpu: h.gpu.index,
        kind,
        value: new,
        limit: 0.0,
        reason: format!(
            "gpu{} had {new:.0} new {what}{plural} in the last {}{detail}",
            h.gpu.index,
            span(s.errors_for_secs)
        ),
    })
}

fn throttled(h: &History, s: &Settings, kind: Kind) -> Option<Issue> {
    let bits = match kind {
        Kind::PowerCap => throttle::POWER_CAP | throttle::POWER_BRAKE,
        _ => throttle::THERMAL | throttle::HW_SLOWDOWN,
    };
    let window = last(h.throttle, s.throttled_for_secs);
    let seen: Vec<u8> = window
        .iter()
        .filter(|v| v.is_finite())
        .map(|v| *v as u8)
        .collect();
    // Too few samples (a GPU just appeared, updates lost) is not evidence.
    if (seen.len() as u64) * 2 < s.throttled_for_secs {
        return None;
    }
    let held = seen.iter().filter(|b| *b & bits != 0).count();
    let share = held as f32 / seen.len() as f32;
    if share < SUSTAINED_SHARE {
        return None;
    }
    let g = h.gpu;
    let (what, now) = match kind {
        Kind::PowerCap => ("held at its power limit", format!("{:.0} W", g.power_w)),
        _ => (
            "slowed down by heat or hardware",
            format!("{:.0} °C", g.temp_c),
        ),
    };
    Some(Issue {
        gpu: g.index,
        kind,
        value: share,
        limit: SUSTAINED_SHARE,
        reason: format!(
            "gpu{} {what} in {held} of the last {} samples ({}), now {now}",
            g.index,
            seen.len(),
            span(window.len() as u64)
        ),
    })
}

/// Everything that predicts trouble for one GPU, in [`Kind`] order.
pub fn judge(h: &History, s: &Settings) -> Vec<Issue> {
    [
        temp_trend(h, s),
        errors(h, s, Kind::Xid),
        errors(h, s, Kind::Ecc),
        throttled(h, s, Kind::Thermal),
        throttled(h, s, Kind::PowerCap),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The lowest headroom of `gpus` to their slowdown thresholds, °C; `None` without a GPU that
/// says both.
pub fn temp_margin(gpus: &[GpuSample]) -> Option<f32> {
    gpus.iter()
        .filter(|g| g.temp_c.is_finite() && g.slowdown_c.is_finite())
        .map(|g| g.slowdown_c - g.temp_c)
        .reduce(f32::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(temp: f32) -> GpuSample {
        GpuSample {
            temp_c: temp,
            power_w: 400.0,
            ..GpuSample::quiet(0)
        }
    }

    /// A GPU with `temps` as its history (the newest is the sample's) and flat other series.
    fn judge_temps(temps: &[f32], g: &GpuSample) -> Vec<Issue> {
        let flat = vec![0.0; temps.len()];
        judge(
            &History {
                gpu: g,
                temps,
                xids: &flat,
                ecc: &flat,
                throttle: &flat,
            },
            &Settings::default(),
        )
    }

    /// Deterministic noise in [-0.5, 0.5].
    fn noise(i: usize) -> f32 {
        (((i as u64).wrapping_mul(2_654_435_761) >> 7) % 1000) as f32 / 1000.0 - 0.5
    }

    #[test]
    fn a_rising_temperature_is_flagged_before_it_reaches_slowdown() {
        // 10 minutes rising 0.9 °C/min to 81 °C, with noise; slowdown at 87 °C.
        let temps: Vec<f32> = (0..600)
            .map(|i| 72.0 + 0.9 * i as f32 / 60.0 + noise(i))
            .collect();
        let g = gpu(81.0);
        let issues = judge_temps(&temps, &g);
        assert_eq!(issues.len(), 1, "{issues:?}");
        let i = &issues[0];
        assert_eq!(i.kind, Kind::TempTrend);
        assert!(i.kind.is_trouble());
        assert!(
            i.reason
                .starts_with("gpu0 81 °C rising 0.9 °C/min, slowdown at 87 °C in ~7 min"),
            "{}",
            i.reason
        );
        assert_eq!(Kind::TempTrend.series(0), "gpu0_temp_trend");
    }

    #[test]
    fn a_flat_or_slow_or_distant_trend_is_quiet() {
        let g = gpu(70.0);
        let flat: Vec<f32> = (0..600).map(|i| 70.0 + noise(i)).collect();
        assert_eq!(judge_temps(&flat, &g), vec![]);
        // Rising 0.5 °C/min but 17 °C away: 34 min, beyond the 15 min warning.
        let slow: Vec<f32> = (0..600)
            .map(|i| 65.0 + 0.5 * i as f32 / 60.0 + noise(i))
            .collect();
        assert_eq!(judge_temps(&slow, &g), vec![]);
        // Cooling.
        let cooling: Vec<f32> = (0..600).map(|i| 80.0 - i as f32 / 60.0).collect();
        assert_eq!(judge_temps(&cooling, &g), vec![]);
        // Too few points to fit a line.
        let short = [60.0, 70.0, 80.0];
        assert_eq!(judge_temps(&short, &gpu(80.0)), vec![]);
        // Unknown threshold: no verdict on the trend at all.
        let mut unknown = gpu(86.0);
        unknown.slowdown_c = f32::NAN;
        let rising: Vec<f32> = (0..600).map(|i| 76.0 + i as f32 / 60.0).collect();
        assert_eq!(judge_temps(&rising, &unknown), vec![]);
    }

    #[test]
    fn at_the_threshold_is_flagged_without_a_trend() {
        let i = judge_temps(&[88.0], &gpu(88.0));
        assert_eq!(i.len(), 1);
        assert_eq!(
            i[0].reason,
            "gpu0 88 °C is at or above its slowdown threshold 87 °C"
        );
        assert_eq!((i[0].value, i[0].limit), (88.0, 87.0));
    }

    #[test]
    fn new_xid_and_ecc_errors_are_flagged_and_old_ones_are_not() {
        let mut g = gpu(60.0);
        g.last_xid = 79;
        g.ecc_uncorrected = 3;
        let temps = vec![60.0; 900];
        // XID count 0 then 2 (with a gap of missing samples); ECC 1 → 3.
        let mut xids = vec![0.0; 900];
        xids[500] = f32::NAN;
        for x in &mut xids[600..] {
            *x = 2.0;
        }
        let mut ecc = vec![1.0; 900];
        ecc[899] = 3.0;
        let flat = vec![0.0; 900];
        let h = History {
            gpu: &g,
            temps: &temps,
            xids: &xids,
            ecc: &ecc,
            throttle: &flat,
        };
        let issues = judge(&h, &Settings::default());
        let kinds: Vec<Kind> = issues.iter().map(|i| i.kind).collect();
        assert_eq!(kinds, vec![Kind::Xid, Kind::Ecc]);
        assert_eq!(
            issues[0].reason,
            "gpu0 had 2 new critical XID errors in the last 15 min (newest XID 79)"
        );
        assert_eq!(
            issues[1].reason,
            "gpu0 had 2 new uncorrected ECC errors in the last 15 min (3 since the driver loaded)"
        );
        assert_eq!(Kind::of_series(&Kind::Xid.series(3)), Some(Kind::Xid));
        // Counters that stayed where they were (errors from before the window), or that fell
        // (the node restarted and counts from 0 again), are not new.
        let old = vec![5.0; 900];
        let restarted: Vec<f32> = (0..900).map(|i| if i < 300 { 4.0 } else { 0.0 }).collect();
        let h = History {
            xids: &old,
            ecc: &restarted,
            ..h
        };
        assert_eq!(judge(&h, &Settings::default()), vec![]);
    }

    #[test]
    fn sustained_power_capping_and_thermal_slowdown_are_flagged_brief_ones_are_not() {
        let g = gpu(70.0);
        let temps = vec![70.0; 300];
        let flat = vec![0.0; 300];
        let capped = vec![f32::from(throttle::POWER_CAP); 300];
        let h = History {
            gpu: &g,
            temps: &temps,
            xids: &flat,
            ecc: &flat,
            throttle: &capped,
        };
        let issues = judge(&h, &Settings::default());
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].kind, Kind::PowerCap);
        assert!(!issues[0].kind.is_trouble());
        assert_eq!(
            issues[0].reason,
            "gpu0 held at its power limit in 300 of the last 300 samples (5 min), now 400 W"
        );
        // Thermal slowdown in 280 of 300 samples: sustained; in half of them: not.
        let thermal: Vec<f32> = (0..300)
            .map(|i| f32::from(if i % 15 == 0 { 0 } else { throttle::THERMAL }))
            .collect();
        let issues = judge(
            &History {
                throttle: &thermal,
                ..h
            },
            &Settings::default(),
        );
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].kind, Kind::Thermal);
        assert!(issues[0].reason.contains("in 280 of the last 300 samples"));
        let half: Vec<f32> = (0..300)
            .map(|i| f32::from(if i % 2 == 0 { 0 } else { throttle::HW_SLOWDOWN }))
            .collect();
        assert_eq!(
            judge(
                &History {
                    throttle: &half,
                    ..h
                },
                &Settings::default()
            ),
            vec![]
        );
        // A minute of capping is too little evidence for a 5-minute window.
        let brief = vec![f32::from(throttle::POWER_CAP); 60];
        assert_eq!(
            judge(
                &History {
                    throttle: &brief,
                    ..h
                },
                &Settings::default()
            ),
            vec![]
        );
    }

    #[test]
    fn series_names_round_trip_and_others_are_not_gpu_health() {
        for (k, _) in Kind::ALL {
            assert_eq!(Kind::of_series(&k.series(12)), Some(k));
        }
        for other in [
            "gpu0_temp",
            "gpu0_xid",
            "cpu",
            "gpux_thermal",
            "gpu_thermal",
        ] {
            assert_eq!(Kind::of_series(other), None, "{other}");
        }
    }

    #[test]
    fn no_gpu_has_no_margin_and_the_margin_is_the_lowest() {
        assert_eq!(temp_margin(&[]), None);
        let mut b = gpu(80.0);
        b.index = 1;
        assert_eq!(temp_margin(&[gpu(60.0), b]), Some(7.0));
    }
}
