//! Per-slice load forecast for the predictive autoscaler: additive Holt-Winters
//! (seasonal profile plus damped level/trend), fed about once per second.
//!
//! Observations are averaged into buckets of `bucket_secs`; a bucket completes
//! when an observation of a later bucket arrives, and only completed buckets
//! are smoothed. With `x` a bucket mean, `s(t)` the seasonal term at its centre
//! (0 until the season is in use) and `k` buckets since the previous one:
//!
//! ```text
//! D(h) = phi + phi^2 + ... + phi^h = phi (1 - phi^h) / (1 - phi)    (h if phi = 1)
//! a    = 1 - (1 - alpha)^k                           (alpha without gaps)
//! l'   = a (x - s(t)) + (1 - a) (l + b D(k))
//! b'   = beta (l' - l) / k + (1 - beta) phi^k b
//! S_i' = S_i + max(g, 1/n_i) (x - l' - S_i),  g = 1 - (1 - gamma)^(bucket_secs / slot_secs)
//! F    = max(0, l + b~ D(h) + s(t + ahead)),  h = (t + ahead - c) / bucket_secs
//! ```
//!
//! `t` is the last observation, `c` the centre of the last completed bucket
//! (`h` is fractional). A gap projects the damped trend over the missed
//! buckets and weighs the next one as they would have been; nothing is
//! fabricated. `i` is the slot of the bucket and `n_i` its bucket count, so a
//! young slot is a running mean and `gamma` weighs one pass through a slot.
//!
//! *Warm*: at least 3 completed buckets; before that every query is `None`.
//!
//! *Season*: `season_secs / slot_secs` slots, `s(t)` interpolated linearly
//! between the centres of seen slots. During the first season a slot averages
//! the raw `x` and the age of its buckets. Once a whole season and one slot
//! have passed since the first observation, the drift over a season `D` (the
//! mean of that extra slot minus the mean of the first slot: same phase, so the
//! season cancels) is taken out of each slot in proportion to its age, the
//! profile is centred on the mean of the seen slots, level and trend are
//! rebased by `s` and its slope, and the residual update above takes over.
//!
//! *Noise*: `sigma^2` is a running mean of `(x - 2 x_-1 + x_-2)^2 / 6` over
//! consecutive buckets (0 on any straight line); `se = sigma sqrt(G)` is the
//! standard error of `b` under white noise, `G` the sum of the squared impulse
//! response of `b`. Forecasts and `trend_per_sec` use the shrunk trend
//! `b~ = sign(b) max(0, |b| - se)`, so noise does not pose as a trend.
//!
//! Limits: memory is the slots only (at most 65 536; finer configurations get
//! wider slots); `season_secs` should be a multiple of `slot_secs`; a drift in
//! the first season is assumed linear (and 0 if a gap hides either end);
//! non-finite, negative and older-bucket observations are ignored; `peak`
//! samples at most 100 000 points.

/// Largest number of seasonal slots kept.
const MAX_SLOTS: u64 = 1 << 16;
/// Largest number of points [`Forecaster::peak`] evaluates.
const MAX_PEAK_SAMPLES: u64 = 100_000;
/// Completed buckets needed before forecasting.
const WARM_BUCKETS: u64 = 3;
/// Weight of one bucket in the running noise estimate.
const NOISE_WEIGHT: f64 = 0.05;
/// Trends within this many standard errors of zero are shrunk away.
const TREND_SIGNIFICANCE: f64 = 1.0;

/// Tuning of a [`Forecaster`]; `Default` gives the values below.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForecastConfig {
    /// Observations are averaged into buckets of this many seconds before smoothing (default 10).
    pub bucket_secs: u64,
    /// Level smoothing 0..1 (default 0.3).
    pub alpha: f64,
    /// Trend smoothing 0..1 (default 0.1).
    pub beta: f64,
    /// Trend damping per bucket 0..=1 (default 0.98); the trend's contribution over h buckets
    /// is trend*(phi + phi^2 + ... + phi^h).
    pub phi: f64,
    /// Length of the season in seconds (default `86_400`, a day).
    pub season_secs: u64,
    /// Width of one seasonal slot in seconds (default 300); `season_secs / slot_secs` slots.
    pub slot_secs: u64,
    /// Seasonal smoothing 0..1 per observation of a slot (default 0.3); an observation is one
    /// pass through the slot (once a season), spread over the slot's buckets.
    pub gamma: f64,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        ForecastConfig {
            bucket_secs: 10,
            alpha: 0.3,
            beta: 0.1,
            phi: 0.98,
            season_secs: 86_400,
            slot_secs: 300,
            gamma: 0.3,
        }
    }
}

/// One slice's forecaster.
#[derive(Debug, Clone)]
pub struct Forecaster {
    cfg: ForecastConfig,
    first_t: Option<u64>,
    last_t: u64,
    cur_bucket: u64,
    cur_sum: f64,
    cur_n: u64,
    /// Last completed bucket: the forecast origin.
    origin: Option<u64>,
    completed: u64,
    /// Deseasonalised level (raw level while the season is not in use).
    level: f64,
    /// Trend per bucket.
    trend: f64,
    /// Variance of `b` per unit of bucket noise variance.
    trend_gain: f64,
    /// Running estimate of the bucket noise variance, and buckets behind it.
    noise_var: f64,
    noise_n: u32,
    /// Previous two deseasonalised bucket means, and how many of them are valid.
    prev: [f64; 2],
    chain: u8,
    slots: Vec<f64>,
    /// Buckets seen per slot.
    seen: Vec<u32>,
    /// First season only: mean age (seconds since the first observation) of each slot's
    /// buckets, and (sum, count) of the buckets aged `0..slot_secs` and one season older.
    age: Vec<f64>,
    ends: [(f64, f64); 2],
    season_on: bool,
    /// Seasonal weight of one bucket: `gamma` spread over a slot's buckets.
    slot_gamma: f64,
}

/// Sum of the squared impulse response of the trend to one bucket's input.
fn trend_gain(alpha: f64, beta: f64, phi: f64) -> f64 {
    let (mut l, mut b, mut sum) = (0.0, 0.0, 0.0);
    for i in 0..4_096 {
        let x = if i == 0 { 1.0 } else { 0.0 };
        let next = alpha * x + (1.0 - alpha) * (l + phi * b);
        b = beta * (next - l) + (1.0 - beta) * phi * b;
        l = next;
        sum += b * b;
    }
    sum
}

/// phi + phi^2 + ... + phi^h, continued to fractional `h`.
fn damp_sum(phi: f64, h: f64) -> f64 {
    if (1.0 - phi).abs() < 1e-9 {
        h
    } else {
        phi * (1.0 - phi.powf(h)) / (1.0 - phi)
    }
}

impl Forecaster {
    /// A cold forecaster. Out-of-range tuning is clamped: fractions to 0..=1 (non-finite ones
    /// to their default), zero widths to 1 s, and slots widened to at most 65 536 per season.
    pub fn new(cfg: ForecastConfig) -> Forecaster {
        let d = ForecastConfig::default();
        let unit = |x: f64, d: f64| if x.is_finite() { x.clamp(0.0, 1.0) } else { d };
        let slot_secs = cfg
            .slot_secs
            .max(cfg.season_secs.div_ceil(MAX_SLOTS))
            .max(1);
        let cfg = ForecastConfig {
            bucket_secs: cfg.bucket_secs.max(1),
            alpha: unit(cfg.alpha, d.alpha),
            beta: unit(cfg.beta, d.beta),
            phi: unit(cfg.phi, d.phi),
            season_secs: cfg.season_secs,
            slot_secs,
            gamma: unit(cfg.gamma, d.gamma),
        };
        let n = usize::try_from(cfg.season_secs / slot_secs).unwrap_or(0);
        let bucket_share = (cfg.bucket_secs as f64 / slot_secs as f64).min(1.0);
        Forecaster {
            cfg,
            first_t: None,
            last_t: 0,
            cur_bucket: 0,
            cur_sum: 0.0,
            cur_n: 0,
            origin: None,
            completed: 0,
            level: 0.0,
            trend: 0.0,
            trend_gain: trend_gain(cfg.alpha, cfg.beta, cfg.phi),
            noise_var: 0.0,
            noise_n: 0,
            prev: [0.0; 2],
            chain: 0,
            slots: vec![0.0; n],
            seen: vec![0; n],
            age: vec![0.0; n],
            ends: [(0.0, 0.0); 2],
            season_on: false,
            slot_gamma: 1.0 - (1.0 - cfg.gamma).powf(bucket_share),
        }
    }

    /// Record the load at unix second `t`. Out-of-order or repeated seconds older than the
    /// current bucket are ignored, as are non-finite and negative values. Gaps (missing
    /// seconds/buckets) just continue smoothing from the next bucket; no zeros are fabricated.
    pub fn observe(&mut self, t: u64, value: f64) {
        if !value.is_finite() || value < 0.0 {
            return;
        }
        let bucket = t / self.cfg.bucket_secs;
        let first = *self.first_t.get_or_insert(t);
        if self.cur_n == 0 {
            self.cur_bucket = bucket;
        } else if bucket < self.cur_bucket {
            return;
        } else if bucket > self.cur_bucket {
            self.complete_bucket();
            self.cur_bucket = bucket;
        }
        self.cur_sum += value;
        self.cur_n += 1;
        self.last_t = self.last_t.max(t);
        if !self.season_on
            && t.saturating_sub(first) >= self.cfg.season_secs.saturating_add(self.cfg.slot_secs)
            && self.seen.iter().any(|&n| n > 0)
        {
            self.start_season();
        }
    }

    /// Whether enough buckets were seen to forecast (at least 3 completed buckets).
    pub fn warm(&self) -> bool {
        self.completed >= WARM_BUCKETS
    }

    /// Whether the seasonal profile is in use: at least one whole season (plus one slot, to
    /// measure the drift) observed since the first observation. Forecasts apply it only where
    /// the slots involved were seen.
    pub fn seasonal(&self) -> bool {
        self.season_on
    }

    /// Point forecast of the load `ahead` seconds after the last observation; None until warm.
    /// Never negative.
    pub fn forecast(&self, ahead: u64) -> Option<f64> {
        let origin = self.origin.filter(|_| self.warm())?;
        let target = self.last_t as f64 + ahead as f64;
        let h = (target - self.centre(origin)) / self.cfg.bucket_secs as f64;
        let v = self.level + self.shrunk_trend() * damp_sum(self.cfg.phi, h) + self.season(target);
        Some(if v.is_finite() { v.max(0.0) } else { 0.0 })
    }

    /// The highest point forecast over (0, horizon] sampled every bucket (and at horizon):
    /// (seconds ahead, value); the earliest wins a tie. None until warm.
    pub fn peak(&self, horizon: u64) -> Option<(u64, f64)> {
        let step = self.cfg.bucket_secs.max(horizon.div_ceil(MAX_PEAK_SAMPLES));
        let points = (1..)
            .map_while(|i: u64| i.checked_mul(step))
            .take_while(|&a| a < horizon)
            .chain(std::iter::once(horizon));
        let mut best: Option<(u64, f64)> = None;
        for ahead in points {
            let v = self.forecast(ahead)?;
            if best.is_none_or(|(_, b)| v > b) {
                best = Some((ahead, v));
            }
        }
        best
    }

    /// Current smoothed level (deseasonalised level + current seasonal term), None until warm.
    /// Never negative.
    pub fn level(&self) -> Option<f64> {
        let origin = self.origin.filter(|_| self.warm())?;
        Some((self.level + self.season(self.centre(origin))).max(0.0))
    }

    /// Current trend in load units per second (undamped), None until warm.
    pub fn trend_per_sec(&self) -> Option<f64> {
        self.warm()
            .then(|| self.shrunk_trend() / self.cfg.bucket_secs as f64)
    }

    /// Trend per bucket with its noise-level part shrunk away.
    fn shrunk_trend(&self) -> f64 {
        let se = (self.noise_var * self.trend_gain).sqrt();
        self.trend.signum() * (self.trend.abs() - TREND_SIGNIFICANCE * se).max(0.0)
    }

    /// Centre time of bucket `b` in seconds.
    fn centre(&self, b: u64) -> f64 {
        let bs = self.cfg.bucket_secs as f64;
        b as f64 * bs + bs / 2.0
    }

    /// Slot holding time `t`.
    fn slot_of(&self, t: f64) -> usize {
        let phase = t.rem_euclid(self.cfg.season_secs as f64);
        ((phase / self.cfg.slot_secs as f64) as usize).min(self.slots.len() - 1)
    }

    /// Seasonal term at time `t` while the profile is in use, else 0.
    fn season(&self, t: f64) -> f64 {
        if self.season_on {
            self.season_at(t)
        } else {
            0.0
        }
    }

    /// Profile value at time `t`, interpolated between seen slot centres.
    fn season_at(&self, t: f64) -> f64 {
        let n = self.slots.len();
        if n == 0 {
            return 0.0;
        }
        let p = t.rem_euclid(self.cfg.season_secs as f64) / self.cfg.slot_secs as f64 - 0.5;
        let w = p - p.floor();
        let i0 = (p.floor() as i64).rem_euclid(n as i64) as usize;
        let i1 = (i0 + 1) % n;
        match (self.seen[i0] > 0, self.seen[i1] > 0) {
            (true, true) => (1.0 - w) * self.slots[i0] + w * self.slots[i1],
            (true, false) => self.slots[i0],
            (false, true) => self.slots[i1],
            (false, false) => 0.0,
        }
    }

    /// Smooth the current bucket's mean into level, trend and season.
    fn complete_bucket(&mut self) {
        let x = self.cur_sum / self.cur_n as f64;
        let bucket = self.cur_bucket;
        self.cur_sum = 0.0;
        self.cur_n = 0;
        let s = self.season(self.centre(bucket));
        if let Some(prev) = self.origin {
            let ForecastConfig {
                alpha, beta, phi, ..
            } = self.cfg;
            let k = (bucket - prev) as f64;
            let a = 1.0 - (1.0 - alpha).powf(k);
            let predicted = self.level + self.trend * damp_sum(phi, k);
            let level = a * (x - s) + (1.0 - a) * predicted;
            self.trend = beta * (level - self.level) / k + (1.0 - beta) * phi.powf(k) * self.trend;
            self.level = level;
            if k > 1.0 {
                self.chain = 0;
            }
        } else {
            self.level = x - s;
            self.trend = 0.0;
        }
        self.learn_noise(x - s);
        self.origin = Some(bucket);
        self.completed += 1;
        self.learn_season(bucket, x);
    }

    /// Update the noise estimate from the second difference of bucket means.
    fn learn_noise(&mut self, x: f64) {
        if self.chain == 2 {
            let d2 = x - 2.0 * self.prev[1] + self.prev[0];
            self.noise_n = self.noise_n.saturating_add(1);
            let w = (1.0 / f64::from(self.noise_n)).max(NOISE_WEIGHT);
            self.noise_var += w * (d2 * d2 / 6.0 - self.noise_var);
        }
        self.prev = [self.prev[1], x];
        self.chain = (self.chain + 1).min(2);
    }

    /// Feed the bucket mean `x` of `bucket` into the seasonal profile: the
    /// raw value during the first season, the residual from the level after.
    fn learn_season(&mut self, bucket: u64, x: f64) {
        if self.slots.is_empty() {
            return;
        }
        let c = self.centre(bucket);
        let i = self.slot_of(c);
        self.seen[i] = self.seen[i].saturating_add(1);
        let w = (1.0 / f64::from(self.seen[i])).max(self.slot_gamma);
        if self.season_on {
            self.slots[i] += w * (x - self.level - self.slots[i]);
            return;
        }
        let age = c - self.first_t.unwrap_or_default() as f64;
        self.slots[i] += w * (x - self.slots[i]);
        self.age[i] += w * (age - self.age[i]);
        let (slot, season) = (self.cfg.slot_secs as f64, self.cfg.season_secs as f64);
        let end = if age < slot {
            0
        } else if (season..season + slot).contains(&age) {
            1
        } else {
            return;
        };
        self.ends[end].0 += x;
        self.ends[end].1 += 1.0;
    }

    /// Detrend and centre the first-season slot means, and rebase level and trend onto them.
    fn start_season(&mut self) {
        let [(s0, n0), (s1, n1)] = self.ends;
        let drift = if n0 > 0.0 && n1 > 0.0 {
            s1 / n1 - s0 / n0
        } else {
            0.0
        };
        let season = self.cfg.season_secs as f64;
        for (s, age) in self.slots.iter_mut().zip(&self.age) {
            *s -= drift * age / season;
        }
        self.age = Vec::new();
        let seen = self.slots.iter().zip(&self.seen).filter(|&(_, &n)| n > 0);
        let (sum, n) = seen.fold((0.0, 0.0), |(s, c), (v, _)| (s + v, c + 1.0));
        // Unseen slots are skipped by `season_at` and overwritten when first seen.
        self.slots.iter_mut().for_each(|s| *s -= sum / n);
        if let Some(origin) = self.origin {
            let c = self.centre(origin);
            let s_now = self.season_at(c);
            self.level -= s_now;
            self.trend -= s_now - self.season_at(c - self.cfg.bucket_secs as f64);
        }
        self.chain = 0; // raw and deseasonalised means do not mix
        self.season_on = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(from: u64, to: u64, step: usize, load: impl FnMut(u64) -> f64) -> Forecaster {
        let mut f = Forecaster::new(ForecastConfig::default());
        feed(&mut f, from, to, step, load);
        f
    }

    fn feed(f: &mut Forecaster, from: u64, to: u64, step: usize, mut load: impl FnMut(u64) -> f64) {
        for t in (from..to).step_by(step) {
            f.observe(t, load(t));
        }
    }

    /// Deterministic pseudo-noise uniform in [-amp, amp).
    fn noise(amp: f64) -> impl FnMut() -> f64 {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            amp * ((state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
        }
    }

    #[test]
    fn cold_start_until_three_buckets() {
        // (last second observed, warm?) with 10 s buckets starting at t = 0.
        for (last, warm) in [(0, false), (19, false), (29, false), (30, true), (45, true)] {
            let f = run(0, last + 1, 1, |_| 2.0);
            assert_eq!(f.warm(), warm, "last={last}");
            assert_eq!(f.forecast(10).is_some(), warm, "last={last}");
            assert_eq!(f.peak(60).is_some(), warm, "last={last}");
            assert_eq!(f.level().is_some(), warm, "last={last}");
            assert_eq!(f.trend_per_sec().is_some(), warm, "last={last}");
        }
    }

    #[test]
    fn constant_load() {
        let f = run(1_000, 1_600, 1, |_| 5.0);
        let v = f.forecast(300).unwrap();
        assert!((v - 5.0).abs() <= 0.05, "forecast {v}");
        assert!(f.trend_per_sec().unwrap().abs() < 1e-9);
        assert!((f.level().unwrap() - 5.0).abs() < 1e-9);
    }

    #[test]
    fn linear_ramp() {
        let load = |t: u64| 1.0 + 0.01 * t as f64;
        for amp in [0.0, 0.5] {
            let mut n = noise(amp);
            let f = run(0, 1_200, 1, |t| load(t) + n());
            let (now, truth, v) = (load(1_199), load(1_259), f.forecast(60).unwrap());
            assert!(
                (v - truth).abs() <= 0.1 * truth,
                "amp {amp}: {v} vs {truth}"
            );
            assert!(v > now, "amp {amp}: forecast {v} not above current {now}");
            let (at, peak) = f.peak(300).unwrap();
            assert!(at >= 290 && peak >= v, "amp {amp}: peak {peak} at {at}");
        }
    }

    #[test]
    fn daily_sinusoid_uses_season() {
        const DAY: u64 = 86_400;
        // (drift in load units per day): the first day's profile must not keep the drift.
        for drift in [0.0, 1.5] {
            let load = |t: u64| {
                let phase = std::f64::consts::TAU * t as f64 / DAY as f64;
                10.0 + 8.0 * phase.sin() + drift * t as f64 / DAY as f64
            };
            let mut f = run(0, DAY, 5, load);
            assert!(!f.seasonal(), "drift {drift}: seasonal during day 1");
            let mut t = DAY;
            // Hours on the trough (18 h) to peak (6 h) upswing, days 2 and 3.
            for hour in [24.5, 43.0, 47.75, 50.0, 52.0, 67.0, 69.0, 71.75] {
                let until = (hour * 3_600.0) as u64;
                feed(&mut f, t, until, 5, load);
                t = until;
                let (truth, v) = (load(t - 5 + 1_800), f.forecast(1_800).unwrap());
                let (err, naive) = ((v - truth).abs(), (load(t - 5) - truth).abs());
                assert!(f.seasonal(), "drift {drift}, {hour} h: not seasonal");
                assert!(
                    err <= 0.2 * naive && err <= 0.1 * truth,
                    "drift {drift}, {hour} h: {v} vs {truth}, naive error {naive}"
                );
            }
        }
    }

    #[test]
    fn noise_does_not_make_trend() {
        let mut n = noise(1.0);
        let mut f = Forecaster::new(ForecastConfig::default());
        let (mut flat, mut samples) = (0, 0);
        for t in 0..3_600 {
            f.observe(t, 5.0 + n());
            if t >= 600 && t % 10 == 5 {
                samples += 1;
                flat += usize::from(f.trend_per_sec() == Some(0.0));
            }
            if t >= 600 && t % 300 == 299 {
                let v = f.forecast(300).unwrap();
                assert!((v - 5.0).abs() <= 0.5, "t={t}: forecast {v}");
            }
        }
        // Trends within a standard error of zero are shrunk to exactly zero.
        assert!(
            flat * 2 > samples,
            "flat trend in {flat} of {samples} buckets"
        );
    }

    #[test]
    fn gap_then_new_level() {
        let mut f = run(0, 600, 1, |_| 5.0);
        feed(&mut f, 1_200, 1_320, 1, |_| 8.0);
        let v = f.forecast(60).unwrap();
        assert!(v.is_finite() && (v - 8.0).abs() <= 0.4, "forecast {v}");
        assert!(f.trend_per_sec().unwrap().abs() < 0.01);
    }

    #[test]
    fn falling_ramp_never_negative() {
        let f = run(0, 590, 1, |t| 6.0 - 0.01 * t as f64);
        let projected = f.level().unwrap() + f.trend_per_sec().unwrap() * 600.0;
        assert!(
            projected < 0.0,
            "ramp should project below zero: {projected}"
        );
        assert_eq!(f.forecast(600), Some(0.0));
        assert!(f.peak(600).unwrap().1 >= 0.0);
    }

    #[test]
    fn bad_inputs_ignored() {
        let load = |t: u64| 3.0 + (t % 7) as f64;
        let clean = run(0, 301, 1, load);
        let mut dirty = Forecaster::new(ForecastConfig::default());
        for t in 0..300 {
            for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0, load(t)] {
                dirty.observe(t, bad);
            }
        }
        dirty.observe(5, 1_000.0); // from an older bucket
        dirty.observe(300, load(300)); // completes the current bucket
        assert_eq!(
            (clean.forecast(120), clean.level()),
            (dirty.forecast(120), dirty.level())
        );
        assert!(!run(0, 100, 1, |t| if t % 2 == 0 { f64::NAN } else { -2.0 }).warm());
    }

    #[test]
    fn earlier_second_in_current_bucket_is_averaged() {
        let mut f = Forecaster::new(ForecastConfig::default());
        f.observe(45, 4.0);
        f.observe(41, 6.0); // before the first observation, same bucket
        feed(&mut f, 50, 90, 1, |_| 2.0);
        let g = run(40, 90, 10, |t| if t == 40 { 5.0 } else { 2.0 });
        let h = run(50, 90, 1, |_| 2.0);
        assert_eq!(f.level(), g.level());
        assert!(f.level() > h.level());
    }
}
