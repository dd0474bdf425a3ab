//! The 2-hour history of every series, with a fixed memory bound.
//!
//! Each series keeps two rings preallocated at creation: one value per second for the last
//! [`FINE_SECS`] (15 min), and one mean and maximum per [`COARSE_STEP`] seconds (10 s) for the
//! whole [`WINDOW_SECS`] (2 h). A series therefore takes [`SERIES_BYTES`] whatever is recorded,
//! and a window of N series takes N times that plus its index. No I/O, no clock: callers pass
//! whole Unix seconds.

use std::collections::HashMap;

use crate::domain::NodeId;

/// Whole history kept per series.
pub const WINDOW_SECS: u64 = 2 * 3600;
/// Span kept at one-second resolution.
pub const FINE_SECS: u64 = 15 * 60;
// The anomaly window is read from the per-second points.
const _: () = assert!(crate::config::ANOMALY_WINDOW_MAX_SECS <= FINE_SECS);
/// Resolution beyond [`FINE_SECS`].
pub const COARSE_STEP: u64 = 10;
const COARSE_SLOTS: usize = (WINDOW_SECS / COARSE_STEP) as usize;
const FINE_SLOTS: usize = FINE_SECS as usize;

/// Memory of one series' rings, in bytes: 900 × f32 + 720 × (f32 mean + f32 max) = 9,360.
pub const SERIES_BYTES: usize = FINE_SLOTS * 4 + COARSE_SLOTS * 8;

/// One point of a query: Unix second and value. Coarse points carry the bucket's mean and
/// stand at the bucket's first second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub t: u64,
    pub value: f32,
    /// The largest sample in a coarse bucket (the value itself for fine points).
    pub max: f32,
}

/// History of one series.
pub struct Series {
    fine: Box<[f32]>,
    coarse_mean: Box<[f32]>,
    coarse_max: Box<[f32]>,
    /// Last second recorded; `None` before the first sample.
    last: Option<u64>,
    /// Running bucket: (bucket number, sum, count, max).
    acc: (u64, f64, u32, f32),
}

impl Default for Series {
    fn default() -> Self {
        Series {
            fine: vec![f32::NAN; FINE_SLOTS].into_boxed_slice(),
            coarse_mean: vec![f32::NAN; COARSE_SLOTS].into_boxed_slice(),
            coarse_max: vec![f32::NAN; COARSE_SLOTS].into_boxed_slice(),
            last: None,
            acc: (0, 0.0, 0, f32::NAN),
        }
    }
}

impl Series {
    /// Record `value` at second `t`. A sample older than the last one is ignored (the window
    /// only moves forward); a second one in the same second replaces the first in the fine ring.
    pub fn record(&mut self, t: u64, value: f32) {
        if let Some(last) = self.last {
            if t < last {
                return;
            }
            // Seconds skipped since the last sample hold no value.
            for s in (last + 1).max(t.saturating_sub(FINE_SECS - 1))..t {
                self.fine[(s % FINE_SECS) as usize] = f32::NAN;
            }
        }
        self.fine[(t % FINE_SECS) as usize] = value;
        let bucket = t / COARSE_STEP;
        if self.last.is_some() && bucket != self.acc.0 {
            self.flush_bucket();
            for b in (self.acc.0 + 1).max(bucket.saturating_sub(COARSE_SLOTS as u64 - 1))..bucket {
                self.coarse_mean[(b % COARSE_SLOTS as u64) as usize] = f32::NAN;
                self.coarse_max[(b % COARSE_SLOTS as u64) as usize] = f32::NAN;
            }
        }
        if self.last.is_none() || bucket != self.acc.0 {
            self.acc = (bucket, 0.0, 0, f32::NAN);
        }
        self.acc.1 += value as f64;
        self.acc.2 += 1;
        self.acc.3 = if self.acc.3.is_nan() {
            value
        } else {
            self.acc.3.max(value)
        };
        self.flush_bucket();
        self.last = Some(t);
    }

    fn flush_bucket(&mut self) {
        let (b, sum, n, max) = self.acc;
        if n > 0 {
            let slot = (b % COARSE_SLOTS as u64) as usize;
            self.coarse_mean[slot] = (sum / n as f64) as f32;
            self.coarse_max[slot] = max;
        }
    }

    /// The newest sample.
    pub fn latest(&self) -> Option<(u64, f32)> {
        let t = self.last?;
        Some((t, self.fine[(t % FINE_SECS) as usize]))
    }

    /// Points with `from <= t <= to`, oldest first: one per second within the last 15 minutes,
    /// one per 10 s before that, back to 2 hours.
    pub fn query(&self, from: u64, to: u64) -> Vec<Point> {
        let Some(last) = self.last else {
            return Vec::new();
        };
        let to = to.min(last);
        let fine_start = last.saturating_sub(FINE_SECS - 1);
        let window_start =
            (last / COARSE_STEP).saturating_sub(COARSE_SLOTS as u64 - 1) * COARSE_STEP;
        let mut out = Vec::new();
        // Coarse buckets that end before the fine span begins.
        let first_bucket = from.max(window_start) / COARSE_STEP;
        let mut b = first_bucket;
        while b * COARSE_STEP < fine_start.min(to + 1) {
            let slot = (b % COARSE_SLOTS as u64) as usize;
            let (mean, max) = (self.coarse_mean[slot], self.coarse_max[slot]);
            if !mean.is_nan() && b * COARSE_STEP + COARSE_STEP > from {
                out.push(Point {
                    t: (b * COARSE_STEP).max(from),
                    value: mean,
                    max,
                });
            }
            b += 1;
        }
        let start = from.max(fine_start).max(b * COARSE_STEP);
        for s in start..=to {
            let v = self.fine[(s % FINE_SECS) as usize];
            if !v.is_nan() {
                out.push(Point {
                    t: s,
                    value: v,
                    max: v,
                });
            }
        }
        out
    }

    /// The last `secs` seconds of one-second values (at most 15 minutes), oldest first; seconds
    /// without a sample are NaN.
    pub fn recent(&self, secs: u64) -> Vec<f32> {
        let Some(last) = self.last else {
            return Vec::new();
        };
        let n = secs.clamp(1, FINE_SECS).min(last + 1);
        (last + 1 - n..=last)
            .map(|t| self.fine[(t % FINE_SECS) as usize])
            .collect()
    }
}

/// Every series of every node: node → series name (`cpu`, `mem`, `gpu0_temp` …) → history.
#[derive(Default)]
pub struct Window {
    nodes: HashMap<NodeId, HashMap<String, Series>>,
}

impl Window {
    /// Record one sample.
    pub fn record(&mut self, node: NodeId, name: &str, t: u64, value: f32) {
        let series = self.nodes.entry(node).or_default();
        // Look up before inserting: the name is only allocated for a new series.
        match series.get_mut(name) {
            Some(s) => s.record(t, value),
            None => series.entry(name.to_string()).or_default().record(t, value),
        }
    }

    /// One series.
    pub fn series(&self, node: NodeId, name: &str) -> Option<&Series> {
        self.nodes.get(&node)?.get(name)
    }

    /// Forget a node (it left the cluster).
    pub fn remove_node(&mut self, node: NodeId) {
        self.nodes.remove(&node);
    }

    /// Keep only the series of `node` for which `keep` (name, history) says so.
    pub fn retain_series(&mut self, node: NodeId, mut keep: impl FnMut(&str, &Series) -> bool) {
        if let Some(m) = self.nodes.get_mut(&node) {
            m.retain(|name, s| keep(name, s));
            if m.is_empty() {
                self.nodes.remove(&node);
            }
        }
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.nodes.values().map(|m| m.len()).sum()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Upper bound of the memory held, in bytes: rings, names and both index levels.
    pub fn memory_bytes(&self) -> usize {
        let entry = std::mem::size_of::<String>() + std::mem::size_of::<Series>() + 16;
        let node_entry =
            std::mem::size_of::<NodeId>() + std::mem::size_of::<HashMap<String, Series>>() + 16;
        self.nodes.capacity() * node_entry
            + self
                .nodes
                .values()
                .map(|m| {
                    m.capacity() * entry
                        + m.len() * SERIES_BYTES
                        + m.keys().map(|k| k.capacity()).sum::<usize>()
                })
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000;

    #[test]
    fn recent_seconds_are_kept_at_one_second() {
        let mut s = Series::default();
        for i in 0..120 {
            s.record(T0 + i, i as f32);
        }
        let pts = s.query(T0 + 100, T0 + 119);
        assert_eq!(pts.len(), 20);
        assert_eq!(
            pts[0],
            Point {
                t: T0 + 100,
                value: 100.0,
                max: 100.0
            }
        );
        assert_eq!(s.latest(), Some((T0 + 119, 119.0)));
        assert_eq!(s.recent(5), vec![115.0, 116.0, 117.0, 118.0, 119.0]);
    }

    #[test]
    fn older_history_is_kept_at_ten_seconds_for_two_hours() {
        let mut s = Series::default();
        let t0 = T0 - T0 % 10;
        for i in 0..(3 * 3600) {
            s.record(t0 + i, (i % 10) as f32); // mean 4.5, max 9 in every bucket
        }
        let last = t0 + 3 * 3600 - 1;
        let all = s.query(0, u64::MAX);
        let coarse: Vec<&Point> = all
            .iter()
            .filter(|p| p.t < last - (FINE_SECS - 1))
            .collect();
        let fine = all.len() - coarse.len();
        assert_eq!(fine, FINE_SECS as usize);
        assert!(
            (coarse.len() as i64 - (COARSE_SLOTS as i64 - 90)).abs() <= 1,
            "{}",
            coarse.len()
        );
        assert!(
            coarse
                .iter()
                .all(|p| p.value == 4.5 && p.max == 9.0 && p.t % 10 == 0)
        );
        // Nothing older than two hours.
        assert!(all[0].t + WINDOW_SECS > last);
    }

    #[test]
    fn gaps_hold_no_values_and_old_samples_are_ignored() {
        let mut s = Series::default();
        s.record(T0, 1.0);
        s.record(T0 + 5, 2.0);
        s.record(T0 + 3, 9.0); // older than the last: ignored
        let pts: Vec<u64> = s.query(T0, T0 + 5).iter().map(|p| p.t).collect();
        assert_eq!(pts, vec![T0, T0 + 5]);
        // A gap longer than the whole window clears everything before it.
        s.record(T0 + 5 + 3 * 3600, 3.0);
        assert_eq!(s.query(0, u64::MAX).len(), 1);
    }

    #[test]
    fn memory_bound_holds_at_100_nodes() {
        let names = [
            "cpu",
            "mem_used",
            "mem_total",
            "swap_used",
            "load1",
            "disk_read",
            "disk_write",
            "net_rx",
            "net_tx",
            "gpu0_util",
            "gpu0_mem",
            "gpu0_temp",
            "gpu0_power",
        ];
        let mut w = Window::default();
        for node in 1..=100 {
            for n in names {
                for i in 0..30 {
                    w.record(node, n, T0 + i, i as f32);
                }
            }
        }
        assert_eq!(w.len(), 100 * names.len());
        let bound = 100 * names.len() * (SERIES_BYTES + 256);
        assert!(w.memory_bytes() <= bound, "{} > {bound}", w.memory_bytes());
        // Recording two more hours adds nothing: the rings are preallocated.
        let before = w.memory_bytes();
        for i in 30..7230 {
            w.record(1, "cpu", T0 + i, 0.5);
        }
        assert_eq!(w.memory_bytes(), before);
        assert!(names.iter().all(|n| w.series(7, n).is_some()));
        w.remove_node(7);
        assert!(names.iter().all(|n| w.series(7, n).is_none()));
        assert_eq!(w.len(), 99 * names.len());
    }
}
