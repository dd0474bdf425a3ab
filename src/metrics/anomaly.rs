//! Robust anomaly flags: is a value far outside this node's own normal?
//!
//! The normal is the median of the series over a recent window and its spread the median
//! absolute deviation (MAD), scaled to a standard deviation (× 1.4826). A value is flagged when
//! its robust z-score is above the threshold *and* it is further from the median than the
//! series' minimum meaningful change (so a perfectly flat series does not flag noise). Slow drift
//! and daily patterns move the median with them and are not flagged; a spike is.

/// Detector settings for one kind of series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detector {
    /// Robust z-score above which a value is anomalous.
    pub threshold: f32,
    /// Smallest deviation from the median that can count (same unit as the series).
    pub min_change: f32,
    /// Fewest points needed before judging.
    pub min_points: usize,
}

impl Default for Detector {
    fn default() -> Self {
        Detector {
            threshold: 6.0,
            min_change: 0.0,
            min_points: 30,
        }
    }
}

/// A flagged value and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    pub value: f32,
    pub median: f32,
    /// Robust standard deviation (MAD × 1.4826).
    pub spread: f32,
    pub z: f32,
    /// One sentence with the numbers, e.g. `gpu0_temp 91.0 is far above its normal 64.0 ± 1.5
    /// (robust z 12.1 over 600 samples)`.
    pub reason: String,
}

fn median(v: &mut [f32]) -> f32 {
    v.sort_by(f32::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl Detector {
    /// Judge `value` of series `name` against `history` (recent values, without `value`).
    pub fn check(&self, name: &str, history: &[f32], value: f32) -> Option<Anomaly> {
        let mut h: Vec<f32> = history.iter().copied().filter(|v| v.is_finite()).collect();
        if h.len() < self.min_points || !value.is_finite() {
            return None;
        }
        let med = median(&mut h);
        let mut dev: Vec<f32> = h.iter().map(|v| (v - med).abs()).collect();
        let spread = median(&mut dev) * 1.4826;
        let diff = value - med;
        if diff.abs() <= self.min_change {
            return None;
        }
        // A flat history has no spread: then any change past `min_change` is news.
        let z = if spread > 0.0 {
            diff / spread
        } else {
            diff.signum() * f32::INFINITY
        };
        if z.abs() < self.threshold {
            return None;
        }
        let dir = if diff > 0.0 { "above" } else { "below" };
        let z_text = if z.is_finite() {
            format!("{:.1}", z.abs())
        } else {
            "∞ (flat history)".into()
        };
        Some(Anomaly {
            value,
            median: med,
            spread,
            z,
            reason: format!(
                "{name} {value:.2} is far {dir} its normal {med:.2} ± {spread:.2} (robust z {z_text} over {} samples)",
                h.len()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic noise in [-1, 1].
    fn noise(i: usize) -> f32 {
        let x = (i as u64)
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((x >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
    }

    fn temp_detector() -> Detector {
        Detector {
            threshold: 6.0,
            min_change: 3.0,
            min_points: 30,
        }
    }

    #[test]
    fn a_spike_is_flagged_with_its_numbers() {
        let hist: Vec<f32> = (0..600).map(|i| 64.0 + noise(i)).collect();
        let a = temp_detector()
            .check("gpu0_temp", &hist, 91.0)
            .expect("spike flagged");
        assert!(a.z > 6.0);
        assert!(
            a.reason
                .contains("gpu0_temp 91.00 is far above its normal 64."),
            "{}",
            a.reason
        );
        assert!(a.reason.contains("600 samples"), "{}", a.reason);
        // And a drop.
        let a = temp_detector()
            .check("gpu0_temp", &hist, 30.0)
            .expect("drop flagged");
        assert!(a.reason.contains("below"));
    }

    #[test]
    fn ordinary_values_and_slow_drift_are_not_flagged() {
        // No minimum change: the z-score alone must keep drift quiet.
        let d = Detector {
            min_change: 0.0,
            ..temp_detector()
        };
        let hist: Vec<f32> = (0..600).map(|i| 64.0 + noise(i)).collect();
        assert_eq!(d.check("t", &hist, 65.5), None);
        // Drift: +20 degrees over two hours; the last 10 minutes hold the normal.
        let drift: Vec<f32> = (0..7200)
            .map(|i| 50.0 + 20.0 * i as f32 / 7200.0 + noise(i))
            .collect();
        for end in (600..7200).step_by(300) {
            let window = &drift[end - 600..end];
            assert_eq!(
                d.check("t", window, drift[end]),
                None,
                "drift flagged at {end}"
            );
        }
    }

    #[test]
    fn a_daily_pattern_is_not_flagged() {
        // CPU following the day: 0.2 at night, 0.8 at noon, with noise, sampled every second.
        let d = Detector {
            threshold: 6.0,
            min_change: 0.0,
            min_points: 30,
        };
        let day = 86_400.0f32;
        let cpu = |i: usize| {
            0.5 - 0.3 * (2.0 * std::f32::consts::PI * i as f32 / day).cos() + 0.02 * noise(i)
        };
        for end in (600..86_400).step_by(997) {
            let window: Vec<f32> = (end - 600..end).map(cpu).collect();
            assert_eq!(
                d.check("cpu", &window, cpu(end)),
                None,
                "daily pattern flagged at {end}"
            );
        }
        // A jump to full load in the middle of the night is flagged.
        let window: Vec<f32> = (600..1200).map(cpu).collect();
        assert!(d.check("cpu", &window, 0.99).is_some());
    }

    #[test]
    fn too_little_history_or_a_flat_series_within_min_change_is_quiet() {
        let d = temp_detector();
        assert_eq!(
            d.check("t", &[64.0; 10], 99.0),
            None,
            "fewer than min_points"
        );
        assert_eq!(
            d.check("t", &[64.0; 100], 66.0),
            None,
            "within min_change of a flat series"
        );
        let a = d.check("t", &[64.0; 100], 80.0).expect("flat then jump");
        assert!(a.reason.contains("flat history"), "{}", a.reason);
    }
}
