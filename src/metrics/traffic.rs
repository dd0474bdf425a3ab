//! The cluster's request traffic, summed by every node's [`View`](super::aggregate::View) from
//! the snapshots it applies: what each snapshot brought that is new (each node's deltas, once
//! per sample) is one [`ClusterTraffic::add`]. It answers two things:
//!
//! - [`ClusterTraffic::traffic`]: per slice, rates over the last [`RATE_SECS`], latency
//!   quantiles from the histograms of every node merged over that span, per entry point, each
//!   instance's share, the requests waiting now and when the last request came;
//! - per-second series in the 2-hour [`Window`] under the reserved node id [`CLUSTER`] (named by
//!   [`series_name`]): calls/s, error rate, p50/p95/p99 per slice and per entry point, and the
//!   requests waiting per slice. A second is written once the next one begins, so it is whole.
//!
//! Time is the leader's clock (each snapshot's `built_at`): every node's deltas that a snapshot
//! carries for the first time are counted in the second the snapshot was built, and divided by
//! the time since the previous snapshot. Pure: no I/O, no clock.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::requests::{EntryTraffic, Histogram, SliceTraffic, Tally, TrafficSample};
use super::window::{WINDOW_SECS, Window};
use crate::domain::{Millis, NodeId};

/// The reserved node id under which the cluster-wide traffic series live in the window. Node
/// ids are handed out from 1 upwards, so no node has it; it is never in a snapshot, so it is
/// never pruned as a node that left.
pub const CLUSTER: NodeId = NodeId::MAX;

/// The span [`ClusterTraffic::traffic`] reports rates and quantiles over.
pub const RATE_SECS: u64 = 10;

/// A slice or entry point goes on being recorded (zeros while idle) this long after its last
/// call or waiting request, then its series pause until it is called again.
pub const IDLE_RECORD_SECS: u64 = 600;

/// Series kinds under [`CLUSTER`]: calls per second.
pub const CALLS_PER_S: &str = "calls_per_s";
/// Errors ÷ calls (0 in a second without calls).
pub const ERROR_RATE: &str = "error_rate";
/// Latency quantiles, ms (no point in a second without calls).
pub const P50_MS: &str = "p50_ms";
/// See [`P50_MS`].
pub const P95_MS: &str = "p95_ms";
/// See [`P50_MS`].
pub const P99_MS: &str = "p99_ms";
/// Requests waiting for an instance (slices only).
pub const WAITING: &str = "waiting";

/// The window's name of a cluster traffic series: `shop/web:calls_per_s` for a slice,
/// `shop/web/home:p99_ms` for an entry point.
pub fn series_name(slice: &str, entry: Option<&str>, kind: &str) -> String {
    match entry {
        Some(e) => format!("{slice}/{e}:{kind}"),
        None => format!("{slice}:{kind}"),
    }
}

/// Calls, errors and durations of one entry point, or of a whole slice.
#[derive(Debug, Clone, Default)]
struct Counts {
    calls: u64,
    errors: u64,
    hist: Histogram,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.calls += o.calls;
        self.errors += o.errors;
        self.hist.merge(&o.hist);
    }

    fn error_rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.errors as f64 / self.calls as f64
        }
    }
}

/// One slice's counts: per entry point, and answered calls per instance index.
#[derive(Debug, Clone, Default)]
struct SliceCounts {
    entries: BTreeMap<String, Counts>,
    instances: BTreeMap<u32, u64>,
}

impl SliceCounts {
    fn add(&mut self, o: &SliceCounts) {
        for (e, c) in &o.entries {
            self.entries.entry(e.clone()).or_default().add(c);
        }
        for (i, n) in &o.instances {
            *self.instances.entry(*i).or_default() += n;
        }
    }

    fn total(&self) -> Counts {
        let mut t = Counts::default();
        for c in self.entries.values() {
            t.add(c);
        }
        t
    }
}

/// What one snapshot brought: every node's new deltas summed, and the requests waiting then.
#[derive(Debug, Clone)]
struct Contribution {
    /// When the snapshot was built (leader's clock), made to increase.
    at: Millis,
    slices: BTreeMap<String, SliceCounts>,
    waiting: BTreeMap<String, u32>,
}

/// The cluster's request traffic (see the module's doc).
#[derive(Debug, Default)]
pub struct ClusterTraffic {
    /// Newest last: those within [`RATE_SECS`] of the newest, and the one before them.
    recent: VecDeque<Contribution>,
    /// The last second written to the window.
    flushed: Option<u64>,
    /// Per slice, when it was last called.
    last_call: HashMap<String, Millis>,
    /// Per slice (`shop/web`) and entry point (`shop/web/home`): the last second it was
    /// called (or, for a slice, had requests waiting).
    active: HashMap<String, u64>,
    /// The second of the last sweep of old series.
    swept: u64,
    /// Per slice and blueprint version, everything its copies answered since this view
    /// began (a rollout's analysis takes differences).
    versions: BTreeMap<(String, u64), Tally>,
}

/// How often (seconds) series unrecorded for two hours are dropped from the window.
const SWEEP_SECS: u64 = 60;

impl ClusterTraffic {
    /// Take what a snapshot built at `at` (leader's clock, Unix ms) brought: the `samples` it
    /// carries for the first time and the requests `waiting` over all nodes. Seconds that are
    /// now complete go into `window` under [`CLUSTER`].
    pub fn add<'a>(
        &mut self,
        at: Millis,
        samples: impl IntoIterator<Item = &'a TrafficSample>,
        waiting: BTreeMap<String, u32>,
        window: &mut Window,
    ) {
        // A new leader's clock may be behind the old one's: time only moves forward here.
        let at = match self.recent.back() {
            Some(b) if at <= b.at => b.at + 1,
            _ => at,
        };
        let mut slices: BTreeMap<String, SliceCounts> = BTreeMap::new();
        for s in samples {
            for v in &s.versions {
                self.versions
                    .entry((s.slice.clone(), v.version))
                    .or_default()
                    .add(v);
            }
            if s.calls == 0 {
                continue;
            }
            let sl = slices.entry(s.slice.clone()).or_default();
            let e = sl.entries.entry(s.entry.clone()).or_default();
            e.calls += u64::from(s.calls);
            e.errors += u64::from(s.errors);
            e.hist.merge(&Histogram::from_sparse(&s.hist));
            for (i, n) in &s.instances {
                *sl.instances.entry(*i).or_default() += u64::from(*n);
            }
        }
        let sec = at / 1000;
        for (slice, sl) in &slices {
            self.last_call.insert(slice.clone(), at);
            self.active.insert(slice.clone(), sec);
            for e in sl.entries.keys() {
                self.active.insert(format!("{slice}/{e}"), sec);
            }
        }
        for (slice, n) in &waiting {
            if *n > 0 {
                self.active.insert(slice.clone(), sec);
            }
        }
        self.flush_before(sec, window);
        self.recent.push_back(Contribution {
            at,
            slices,
            waiting,
        });
        let from = at.saturating_sub(RATE_SECS * 1000);
        while self.recent.len() > 1 && self.recent[1].at <= from {
            self.recent.pop_front();
        }
        if sec >= self.swept + SWEEP_SECS {
            self.swept = sec;
            self.sweep(sec, window);
        }
    }

    /// Write the newest pending second into the window when `sec` is later.
    fn flush_before(&mut self, sec: u64, window: &mut Window) {
        let Some(s) = self.recent.back().map(|c| c.at / 1000) else {
            return;
        };
        if s >= sec || self.flushed.is_some_and(|f| f >= s) {
            return;
        }
        self.flushed = Some(s);
        let last = self.recent.back().expect("checked above");
        let first = self
            .recent
            .iter()
            .position(|c| c.at / 1000 == s)
            .expect("the newest is in its own second");
        let since = match first.checked_sub(1) {
            Some(i) => self.recent[i].at,
            // Nothing before: the first deltas cover about one interval.
            None => self.recent[first].at.saturating_sub(1000),
        };
        // At least a quarter second: an irregular snapshot does not make a spike.
        let span = (last.at - since).max(250) as f64 / 1000.0;
        let mut per_slice: BTreeMap<&str, SliceCounts> = BTreeMap::new();
        for c in self.recent.iter().skip(first) {
            for (slice, sl) in &c.slices {
                per_slice.entry(slice).or_default().add(sl);
            }
        }
        let waiting = &last.waiting;
        let empty = Counts::default();
        let mut record = |name: String, v: f64| window.record(CLUSTER, &name, s, v as f32);
        for (key, seen) in &self.active {
            if seen + IDLE_RECORD_SECS < s {
                continue;
            }
            let (slice, entry) = match key.matches('/').count() {
                2 => match key.rsplit_once('/') {
                    Some((slice, entry)) => (slice, Some(entry)),
                    None => continue,
                },
                _ => (key.as_str(), None),
            };
            let total;
            let c = match (per_slice.get(slice), entry) {
                (Some(sl), Some(e)) => sl.entries.get(e).unwrap_or(&empty),
                (Some(sl), None) => {
                    total = sl.total();
                    &total
                }
                (None, _) => &empty,
            };
            record(
                series_name(slice, entry, CALLS_PER_S),
                c.calls as f64 / span,
            );
            record(series_name(slice, entry, ERROR_RATE), c.error_rate());
            for (kind, q) in [(P50_MS, 0.5), (P95_MS, 0.95), (P99_MS, 0.99)] {
                if let Some(v) = c.hist.quantile(q) {
                    record(series_name(slice, entry, kind), v);
                }
            }
            if entry.is_none() {
                let w = waiting.get(slice).copied().unwrap_or(0);
                record(series_name(slice, None, WAITING), f64::from(w));
            }
        }
    }

    /// Forget slices and entry points idle for long, and drop series not recorded for two
    /// hours (a removed slice's).
    fn sweep(&mut self, sec: u64, window: &mut Window) {
        self.active
            .retain(|_, seen| *seen + IDLE_RECORD_SECS >= sec);
        let horizon = sec.saturating_sub(WINDOW_SECS) * 1000;
        self.last_call.retain(|_, at| *at >= horizon);
        window.retain_series(CLUSTER, |_, s| {
            s.latest().is_some_and(|(t, _)| t + WINDOW_SECS >= sec)
        });
    }

    /// What each version of `slice` (`blueprint/slice`) answered since this view began.
    pub fn version_tallies(&self, slice: &str) -> BTreeMap<u64, Tally> {
        self.versions
            .range((slice.to_string(), 0)..=(slice.to_string(), u64::MAX))
            .map(|((_, v), t)| (*v, t.clone()))
            .collect()
    }

    /// Each slice's traffic over the cluster, keyed by `blueprint/slice`: every slice called
    /// within the 2-hour window or with requests waiting. Rates and quantiles cover the last
    /// [`RATE_SECS`] (less while this view is younger); entry points and instances are those
    /// called in that span.
    pub fn traffic(&self) -> BTreeMap<String, SliceTraffic> {
        let mut out = BTreeMap::new();
        let Some(newest) = self.recent.back() else {
            return out;
        };
        let from = newest.at.saturating_sub(RATE_SECS * 1000);
        let (since, span) = match self.recent.front() {
            Some(f) if f.at <= from => (1, newest.at - f.at),
            // Younger than the span: the first deltas cover about one interval.
            Some(f) => (0, newest.at - f.at + 1000),
            None => (0, 1000),
        };
        let secs = span.max(1000) as f64 / 1000.0;
        let mut sum: BTreeMap<&str, SliceCounts> = BTreeMap::new();
        for c in self.recent.iter().skip(since) {
            for (slice, sl) in &c.slices {
                sum.entry(slice).or_default().add(sl);
            }
        }
        let mut names: Vec<&str> = sum.keys().copied().collect();
        names.extend(
            newest
                .waiting
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(s, _)| s.as_str()),
        );
        names.extend(self.last_call.keys().map(String::as_str));
        names.sort_unstable();
        names.dedup();
        let empty = SliceCounts::default();
        for name in names {
            let sl = sum.get(name).unwrap_or(&empty);
            let t = sl.total();
            let answered: u64 = sl.instances.values().sum();
            out.insert(
                name.to_string(),
                SliceTraffic {
                    slice: name.to_string(),
                    calls_per_s: t.calls as f64 / secs,
                    error_rate: t.error_rate(),
                    p50_ms: t.hist.quantile(0.5),
                    p95_ms: t.hist.quantile(0.95),
                    p99_ms: t.hist.quantile(0.99),
                    waiting: newest.waiting.get(name).copied().unwrap_or(0),
                    last_call_at: self.last_call.get(name).copied(),
                    entries: sl
                        .entries
                        .iter()
                        .map(|(e, c)| EntryTraffic {
                            name: e.clone(),
                            calls_per_s: c.calls as f64 / secs,
                            error_rate: c.error_rate(),
                            p50_ms: c.hist.quantile(0.5),
                            p95_ms: c.hist.quantile(0.95),
                            p99_ms: c.hist.quantile(0.99),
                        })
                        .collect(),
                    instances: sl
                        .instances
                        .iter()
                        .map(|(i, n)| (*i, *n as f64 / answered.max(1) as f64))
                        .collect(),
                },
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = 1_700_000_000_000;

    /// `calls` requests of `slice`/`entry` that took `ms`, `errors` of them failed, answered
    /// by instance `instance`.
    fn sample(
        slice: &str,
        entry: &str,
        calls: u32,
        errors: u32,
        ms: f64,
        instance: u32,
    ) -> TrafficSample {
        let mut h = Histogram::default();
        h.add(Histogram::bucket(ms), u64::from(calls));
        TrafficSample {
            slice: slice.into(),
            entry: entry.into(),
            calls,
            errors,
            hist: h.sparse(),
            instances: vec![(instance, calls)],
            versions: Vec::new(),
        }
    }

    /// Two nodes each second: one answers `home` fast from instance 0 (30/s), the other
    /// `api` slowly from instance 1 (10/s, one error a second).
    fn busy_second(t: &mut ClusterTraffic, w: &mut Window, at: Millis, waiting: u32) {
        let a = sample("shop/web", "home", 30, 0, 2.0, 0);
        let b = sample("shop/web", "api", 10, 1, 90.0, 1);
        let waiting = BTreeMap::from([("shop/web".to_string(), waiting)]);
        t.add(at, [&a, &b], waiting, w);
    }

    #[test]
    fn rates_and_quantiles_cover_the_last_ten_seconds_of_every_node() {
        let (mut t, mut w) = (ClusterTraffic::default(), Window::default());
        for s in 0..20 {
            busy_second(&mut t, &mut w, T0 + s * 1000, 2);
        }
        let all = t.traffic();
        let web = &all["shop/web"];
        assert!((web.calls_per_s - 40.0).abs() < 1e-9, "{web:?}");
        assert!((web.error_rate - 0.025).abs() < 1e-9, "{web:?}");
        let p50 = web.p50_ms.unwrap();
        assert!(p50 > 1.0 && p50 <= 2.0, "the fast three quarters: {p50}");
        let p99 = web.p99_ms.unwrap();
        assert!(p99 > 75.0 && p99 <= 100.0, "the slow quarter: {p99}");
        assert_eq!(web.waiting, 2);
        assert_eq!(web.last_call_at, Some(T0 + 19_000));
        let names: Vec<&str> = web.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["api", "home"]);
        assert!((web.entries[0].calls_per_s - 10.0).abs() < 1e-9);
        assert!((web.entries[0].error_rate - 0.1).abs() < 1e-9);
        assert!(
            web.entries[1].p99_ms.unwrap() <= 2.0,
            "{:?}",
            web.entries[1]
        );
        assert_eq!(web.instances, vec![(0, 0.75), (1, 0.25)]);
    }

    #[test]
    fn a_young_view_divides_by_what_it_has_seen() {
        let (mut t, mut w) = (ClusterTraffic::default(), Window::default());
        busy_second(&mut t, &mut w, T0, 0);
        // The first deltas cover about one interval.
        assert!((t.traffic()["shop/web"].calls_per_s - 40.0).abs() < 1e-9);
        busy_second(&mut t, &mut w, T0 + 1_000, 0);
        assert!((t.traffic()["shop/web"].calls_per_s - 40.0).abs() < 1e-9);
    }

    #[test]
    fn an_idle_slice_stays_with_its_last_call_and_zero_rates() {
        let (mut t, mut w) = (ClusterTraffic::default(), Window::default());
        busy_second(&mut t, &mut w, T0, 1);
        for s in 1..=15 {
            t.add(T0 + s * 1000, [], BTreeMap::new(), &mut w);
        }
        let web = &t.traffic()["shop/web"];
        assert_eq!(web.calls_per_s, 0.0);
        assert_eq!((web.p99_ms, web.waiting), (None, 0));
        assert!(
            web.entries.is_empty() && web.instances.is_empty(),
            "{web:?}"
        );
        assert_eq!(web.last_call_at, Some(T0));
        // Requests waiting for a slice never called yet make it appear.
        let waiting = BTreeMap::from([("infer/llm".to_string(), 4)]);
        t.add(T0 + 16_000, [], waiting, &mut w);
        let llm = &t.traffic()["infer/llm"];
        assert_eq!((llm.waiting, llm.last_call_at), (4, None));
    }

    #[test]
    fn whole_seconds_go_into_the_window_under_the_cluster_id() {
        let (mut t, mut w) = (ClusterTraffic::default(), Window::default());
        for s in 0..5 {
            busy_second(&mut t, &mut w, T0 + s * 1000, 3);
        }
        // Two snapshots in one second (a new leader's first comes early): one point, both
        // snapshots' calls over the time since the previous second's.
        busy_second(&mut t, &mut w, T0 + 5_000, 3);
        busy_second(&mut t, &mut w, T0 + 5_500, 3);
        t.add(T0 + 6_000, [], BTreeMap::new(), &mut w);
        let s = |name: &str| w.series(CLUSTER, name).unwrap();
        let sec = T0 / 1000;
        assert_eq!(
            s("shop/web:calls_per_s").query(sec, sec + 10),
            (0..6)
                .map(|i| crate::metrics::window::Point {
                    t: sec + i,
                    value: if i == 5 { 80.0 / 1.5 } else { 40.0 },
                    max: if i == 5 { 80.0 / 1.5 } else { 40.0 },
                })
                .collect::<Vec<_>>()
        );
        assert_eq!(s("shop/web:calls_per_s").latest().unwrap().0, sec + 5);
        assert_eq!(s("shop/web/api:error_rate").latest(), Some((sec + 5, 0.1)));
        assert_eq!(s("shop/web:waiting").latest(), Some((sec + 5, 3.0)));
        let p99 = s("shop/web/home:p99_ms").latest().unwrap().1;
        assert!(p99 > 1.0 && p99 <= 2.0, "{p99}");
        assert!(w.series(CLUSTER, "shop/web/api:waiting").is_none());
        // An idle second is recorded as zero calls and no latency.
        t.add(T0 + 7_000, [], BTreeMap::new(), &mut w);
        let s = |name: &str| w.series(CLUSTER, name).unwrap();
        assert_eq!(s("shop/web:calls_per_s").latest(), Some((sec + 6, 0.0)));
        assert_eq!(s("shop/web:p99_ms").latest().unwrap().0, sec + 5);
    }

    #[test]
    fn series_of_a_slice_gone_for_two_hours_leave_the_window() {
        let (mut t, mut w) = (ClusterTraffic::default(), Window::default());
        busy_second(&mut t, &mut w, T0, 0);
        t.add(T0 + 1_000, [], BTreeMap::new(), &mut w);
        assert!(w.series(CLUSTER, "shop/web:calls_per_s").is_some());
        let later = T0 + (WINDOW_SECS + 2 * SWEEP_SECS) * 1000;
        t.add(later, [], BTreeMap::new(), &mut w);
        t.add(later + 1_000, [], BTreeMap::new(), &mut w);
        assert!(w.series(CLUSTER, "shop/web:calls_per_s").is_none());
        assert!(t.traffic().is_empty(), "{:?}", t.traffic());
    }
}
