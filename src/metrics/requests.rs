//! Request metrics (DESIGN §7): what the ingress counts per slice and entry point — calls,
//! errors and a duration histogram — kept on each node by a [`Recorder`], sent to the leader as
//! per-interval deltas ([`TrafficSample`]) inside the node's metrics update, and summed over
//! the cluster into [`SliceTraffic`] for the controller, `aether traffic` and the console.
//! Plain data and a lock; no I/O.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::OTHER_ENTRY;

/// Upper bounds (ms) of the duration histogram's buckets; a last, unbounded bucket follows.
/// The same bounds are the `le` labels of the Prometheus histograms.
pub const BUCKETS_MS: [f64; 24] = [
    0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 200.0,
    300.0, 500.0, 750.0, 1_000.0, 2_000.0, 5_000.0, 10_000.0, 30_000.0,
];

/// Counts per bucket of [`BUCKETS_MS`] (the last one for anything slower).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Histogram {
    /// `BUCKETS_MS.len() + 1` counts once anything was observed; empty before.
    pub counts: Vec<u64>,
}

impl Histogram {
    /// The bucket a duration of `ms` falls in.
    pub fn bucket(ms: f64) -> usize {
        BUCKETS_MS.partition_point(|b| *b < ms)
    }

    /// Count one duration of `ms`.
    pub fn observe(&mut self, ms: f64) {
        self.add(Self::bucket(ms), 1);
    }

    /// Add `n` to bucket `i` (ignored when `i` is out of range: a peer of another version).
    pub fn add(&mut self, i: usize, n: u64) {
        if i > BUCKETS_MS.len() {
            return;
        }
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS_MS.len() + 1];
        }
        self.counts[i] += n;
    }

    /// Add every count of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (i, n) in other.counts.iter().enumerate() {
            if *n > 0 {
                self.add(i, *n);
            }
        }
    }

    /// Everything observed.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `q` quantile (0–1) in ms, interpolated within its bucket; `None` when empty. The
    /// unbounded bucket answers its lower bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut seen = 0.0;
        for (i, n) in self.counts.iter().enumerate() {
            let n = *n as f64;
            if n > 0.0 && seen + n >= rank {
                let lo = if i == 0 { 0.0 } else { BUCKETS_MS[i - 1] };
                let Some(hi) = BUCKETS_MS.get(i) else {
                    return Some(lo);
                };
                return Some(lo + (hi - lo) * ((rank - seen) / n));
            }
            seen += n;
        }
        BUCKETS_MS.last().copied()
    }

    /// Non-empty buckets as (index, count), for the wire.
    pub fn sparse(&self) -> Vec<(u8, u32)> {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (i as u8, (*n).min(u32::MAX as u64) as u32))
            .collect()
    }

    /// The histogram of [`Histogram::sparse`]'s pairs.
    pub fn from_sparse(s: &[(u8, u32)]) -> Histogram {
        let mut h = Histogram::default();
        for (i, n) in s {
            h.add(*i as usize, *n as u64);
        }
        h
    }
}

/// How one request through the ingress ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response below 500 (a 4xx is the client's error, not the slice's).
    Answered(u16),
    /// A 5xx from the instance, or from the ingress when no instance could answer.
    ServerError(u16),
    /// No instance could be reached (every try failed to connect).
    ConnectFailed,
    /// No response head within the timeout.
    Timeout,
}

impl Outcome {
    /// Counts as an error of the slice: 5xx, connect failures, timeouts.
    pub fn is_error(self) -> bool {
        !matches!(self, Outcome::Answered(_))
    }
}

/// One slice and entry point's requests on one node over one metrics interval, in wire form.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TrafficSample {
    /// `blueprint/slice`.
    pub slice: String,
    pub entry: String,
    pub calls: u32,
    pub errors: u32,
    /// Non-empty buckets of the duration histogram ([`Histogram::sparse`]).
    pub hist: Vec<(u8, u32)>,
    /// Calls per instance index (`blueprint/slice/INDEX`) that answered.
    pub instances: Vec<(u32, u32)>,
    /// Per blueprint version of the copies that answered: what a rollout's analysis compares.
    pub versions: Vec<VersionSample>,
}

/// The requests one version's copies answered (a [`TrafficSample`]'s part).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct VersionSample {
    pub version: u64,
    pub calls: u32,
    pub errors: u32,
    /// Non-empty buckets of the duration histogram ([`Histogram::sparse`]).
    pub hist: Vec<(u8, u32)>,
}

/// Cumulative calls, errors and durations of one version of a slice over the cluster.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tally {
    pub calls: u64,
    pub errors: u64,
    pub hist: Histogram,
}

impl Tally {
    /// Add a node's sample.
    pub fn add(&mut self, v: &VersionSample) {
        self.calls += u64::from(v.calls);
        self.errors += u64::from(v.errors);
        self.hist.merge(&Histogram::from_sparse(&v.hist));
    }
}

/// Fold the per-version parts `more` into `into` (the same version's counts added).
fn merge_versions(into: &mut Vec<VersionSample>, more: &[VersionSample]) {
    for v in more {
        match into.iter_mut().find(|x| x.version == v.version) {
            Some(x) => {
                x.calls = x.calls.saturating_add(v.calls);
                x.errors = x.errors.saturating_add(v.errors);
                let mut h = Histogram::from_sparse(&x.hist);
                h.merge(&Histogram::from_sparse(&v.hist));
                x.hist = h.sparse();
            }
            None => into.push(v.clone()),
        }
    }
}

impl TrafficSample {
    /// Add `other`'s counts to these (the same slice and entry point, another interval).
    pub fn add(&mut self, other: &TrafficSample) {
        self.calls = self.calls.saturating_add(other.calls);
        self.errors = self.errors.saturating_add(other.errors);
        let mut h = Histogram::from_sparse(&self.hist);
        h.merge(&Histogram::from_sparse(&other.hist));
        self.hist = h.sparse();
        let mut per: BTreeMap<u32, u32> = self.instances.iter().copied().collect();
        for (i, n) in &other.instances {
            let c = per.entry(*i).or_default();
            *c = c.saturating_add(*n);
        }
        self.instances = per.into_iter().collect();
        merge_versions(&mut self.versions, &other.versions);
    }
}

/// Fold `more` into `into`, one sample per slice and entry point (counts of the same one
/// added): two intervals' deltas sent as one.
pub fn merge_samples(into: &mut Vec<TrafficSample>, more: Vec<TrafficSample>) {
    for s in more {
        match into
            .iter_mut()
            .find(|x| x.slice == s.slice && x.entry == s.entry)
        {
            Some(x) => x.add(&s),
            None => into.push(s),
        }
    }
}

/// Cumulative counts of one slice and entry point on this node (Prometheus counters).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrafficTotal {
    pub calls: u64,
    pub errors: u64,
    /// Sum of durations, seconds.
    pub seconds: f64,
    pub hist: Histogram,
}

#[derive(Default)]
struct Counts {
    total: TrafficTotal,
    /// Since the last [`Recorder::take`].
    delta: TrafficSample,
    delta_hist: Histogram,
    delta_instances: BTreeMap<u32, u32>,
}

/// Tries per version since the last take: (tries, failed, durations).
type Tries = BTreeMap<u64, (u32, u32, Histogram)>;

#[derive(Default)]
struct Inner {
    /// Keyed by `blueprint/slice`, then entry point (nested, so counting a request of a known
    /// pair allocates nothing).
    counts: BTreeMap<String, BTreeMap<String, Counts>>,
    /// Requests waiting for an instance, per `blueprint/slice` (a slice at zero, or with none
    /// ready).
    waiting: BTreeMap<String, u32>,
    /// Per `blueprint/slice`, the tries that reached a copy, by the copy's version.
    tries: BTreeMap<String, Tries>,
}

impl Inner {
    /// The counts of (`slice`, `entry`), made on first use.
    fn counts_of(&mut self, slice: &str, entry: &str) -> &mut Counts {
        if !self.counts.contains_key(slice) {
            self.counts.insert(slice.to_string(), BTreeMap::new());
        }
        let m = self.counts.get_mut(slice).expect("just made");
        if !m.contains_key(entry) {
            m.insert(entry.to_string(), Counts::default());
        }
        m.get_mut(entry).expect("just made")
    }
}

/// The node's request counters, written by the ingress and read by the metrics pipeline
/// (deltas each interval) and `/metrics` (totals).
#[derive(Default)]
pub struct Recorder {
    inner: Mutex<Inner>,
    /// Service ports the ingress cannot listen on: (port, why).
    listen_errors: Mutex<Vec<(u16, String)>>,
}

impl Recorder {
    /// The service ports this node cannot listen on now (the ingress says), sent with each
    /// update.
    pub fn set_listen_errors(&self, errors: Vec<(u16, String)>) {
        *self.listen_errors.lock().expect("listen errors lock") = errors;
    }

    /// What [`Recorder::set_listen_errors`] last said.
    pub fn listen_errors(&self) -> Vec<(u16, String)> {
        self.listen_errors
            .lock()
            .expect("listen errors lock")
            .clone()
    }

    /// A recorder with nothing counted.
    pub fn new() -> Recorder {
        Recorder::default()
    }

    /// Count one request of `slice` (`blueprint/slice`) under `entry`, answered by instance
    /// `instance` (its index) if one answered, that ended as `outcome` after `took`.
    pub fn record(
        &self,
        slice: &str,
        entry: &str,
        instance: Option<u32>,
        outcome: Outcome,
        took: Duration,
    ) {
        let ms = took.as_secs_f64() * 1_000.0;
        let mut g = self.inner.lock().expect("recorder lock");
        let c = g.counts_of(slice, entry);
        let err = outcome.is_error();
        c.total.calls += 1;
        c.total.errors += err as u64;
        c.total.seconds += took.as_secs_f64();
        c.total.hist.observe(ms);
        c.delta.calls = c.delta.calls.saturating_add(1);
        c.delta.errors = c.delta.errors.saturating_add(err as u32);
        c.delta_hist.observe(ms);
        if let Some(i) = instance {
            *c.delta_instances.entry(i).or_default() += 1;
        }
    }

    /// Count one try of a request of `slice` that reached a copy of blueprint version
    /// `version`: whether it failed there (5xx, broke off, timed out) and how long it took.
    /// Kept apart from the requests' own counts, which retries may have rescued.
    pub fn record_try(&self, slice: &str, version: u64, error: bool, took: Duration) {
        let mut g = self.inner.lock().expect("recorder lock");
        if !g.tries.contains_key(slice) {
            g.tries.insert(slice.to_string(), Tries::new());
        }
        let t = g.tries.get_mut(slice).expect("just made");
        let v = t.entry(version).or_default();
        v.0 = v.0.saturating_add(1);
        v.1 = v.1.saturating_add(error as u32);
        v.2.observe(took.as_secs_f64() * 1_000.0);
    }

    /// One more (`+1`) or one fewer (`-1`) request of `slice` waiting for an instance; how
    /// many wait now.
    pub fn waiting(&self, slice: &str, change: i32) -> u32 {
        let mut g = self.inner.lock().expect("recorder lock");
        let n = g.waiting.entry(slice.to_string()).or_default();
        *n = n.saturating_add_signed(change);
        let now = *n;
        if now == 0 {
            g.waiting.remove(slice);
        }
        now
    }

    /// The deltas since the last call (entries without calls left out), and the requests
    /// waiting now per slice.
    pub fn take(&self) -> (Vec<TrafficSample>, Vec<(String, u32)>) {
        let mut g = self.inner.lock().expect("recorder lock");
        let mut out = Vec::new();
        for (slice, entry, c) in g
            .counts
            .iter_mut()
            .flat_map(|(s, m)| m.iter_mut().map(move |(e, c)| (s, e, c)))
        {
            if c.delta.calls == 0 {
                continue;
            }
            out.push(TrafficSample {
                slice: slice.clone(),
                entry: entry.clone(),
                calls: c.delta.calls,
                errors: c.delta.errors,
                hist: c.delta_hist.sparse(),
                instances: std::mem::take(&mut c.delta_instances).into_iter().collect(),
                versions: Vec::new(),
            });
            c.delta = TrafficSample::default();
            c.delta_hist = Histogram::default();
        }
        // A slice's tries ride on its first sample (one with no calls when a request is still
        // on its way).
        for (slice, tries) in std::mem::take(&mut g.tries) {
            let versions: Vec<VersionSample> = tries
                .into_iter()
                .map(|(version, (calls, errors, h))| VersionSample {
                    version,
                    calls,
                    errors,
                    hist: h.sparse(),
                })
                .collect();
            match out.iter_mut().find(|s| s.slice == slice) {
                Some(s) => s.versions = versions,
                None => out.push(TrafficSample {
                    slice,
                    entry: OTHER_ENTRY.to_string(),
                    versions,
                    ..TrafficSample::default()
                }),
            }
        }
        let waiting = g.waiting.iter().map(|(k, v)| (k.clone(), *v)).collect();
        (out, waiting)
    }

    /// Give back deltas that [`Recorder::take`] handed out but that never left the node (no
    /// leader, a failed send): the next `take` includes them. Totals are not touched.
    pub fn put_back(&self, samples: Vec<TrafficSample>) {
        let mut g = self.inner.lock().expect("recorder lock");
        for s in samples {
            if s.calls > 0 {
                let c = g.counts_of(&s.slice, &s.entry);
                c.delta.calls = c.delta.calls.saturating_add(s.calls);
                c.delta.errors = c.delta.errors.saturating_add(s.errors);
                c.delta_hist.merge(&Histogram::from_sparse(&s.hist));
                for (i, n) in s.instances {
                    *c.delta_instances.entry(i).or_default() += n;
                }
            }
            let t = g.tries.entry(s.slice.clone()).or_default();
            for v in s.versions {
                let d = t.entry(v.version).or_default();
                d.0 = d.0.saturating_add(v.calls);
                d.1 = d.1.saturating_add(v.errors);
                d.2.merge(&Histogram::from_sparse(&v.hist));
            }
        }
    }

    /// The requests waiting for an instance now, per slice (without taking any deltas).
    pub fn waiting_now(&self) -> Vec<(String, u32)> {
        let g = self.inner.lock().expect("recorder lock");
        g.waiting.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Cumulative counts per (`blueprint/slice`, entry point) since the node started.
    pub fn totals(&self) -> Vec<((String, String), TrafficTotal)> {
        let g = self.inner.lock().expect("recorder lock");
        g.counts
            .iter()
            .flat_map(|(s, m)| {
                m.iter()
                    .map(move |(e, c)| ((s.clone(), e.clone()), c.total.clone()))
            })
            .collect()
    }
}

/// A slice's traffic over the whole cluster, as the controller and the read model see it:
/// recent rates and latency quantiles from the metrics window.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SliceTraffic {
    /// `blueprint/slice`.
    pub slice: String,
    pub calls_per_s: f64,
    /// Errors ÷ calls, 0–1 (0 without calls).
    pub error_rate: f64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Requests waiting for an instance now, over all nodes.
    pub waiting: u32,
    /// When a request last arrived (leader's clock, Unix ms); `None`: none in the window.
    pub last_call_at: Option<crate::domain::Millis>,
    /// Per entry point: (name, calls/s, error rate, p99 ms).
    pub entries: Vec<EntryTraffic>,
    /// Per instance index: share of the calls (0–1).
    pub instances: Vec<(u32, f64)>,
}

/// One entry point's part of a [`SliceTraffic`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EntryTraffic {
    pub name: String,
    pub calls_per_s: f64,
    pub error_rate: f64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_buckets() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        for _ in 0..90 {
            h.observe(0.8); // (0.5, 1]
        }
        for _ in 0..10 {
            h.observe(40.0); // (30, 50]
        }
        let p50 = h.quantile(0.5).unwrap();
        assert!(p50 > 0.5 && p50 <= 1.0, "{p50}");
        let p99 = h.quantile(0.99).unwrap();
        assert!(p99 > 30.0 && p99 <= 50.0, "{p99}");
        h.observe(1e9);
        assert_eq!(Histogram::bucket(1e9), BUCKETS_MS.len());
        assert_eq!(Histogram::from_sparse(&h.sparse()), h);
    }

    #[test]
    fn the_recorder_hands_out_deltas_once_and_keeps_totals() {
        let r = Recorder::new();
        let ms = Duration::from_millis(3);
        r.record("shop/web", "home", Some(0), Outcome::Answered(200), ms);
        r.record("shop/web", "home", Some(1), Outcome::ServerError(502), ms);
        r.record("shop/web", "home", None, Outcome::ConnectFailed, ms);
        r.waiting("shop/web", 1);
        let (d, waiting) = r.take();
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].calls, d[0].errors), (3, 2));
        assert_eq!(d[0].instances, vec![(0, 1), (1, 1)]);
        assert_eq!(waiting, vec![("shop/web".to_string(), 1)]);
        r.waiting("shop/web", -1);
        let (again, waiting) = r.take();
        assert!(
            again.is_empty() && waiting.is_empty(),
            "{again:?} {waiting:?}"
        );
        let t = r.totals();
        assert_eq!((t[0].1.calls, t[0].1.errors), (3, 2));
    }

    #[test]
    fn deltas_given_back_come_out_with_the_next_ones() {
        let r = Recorder::new();
        let ms = Duration::from_millis(40);
        r.record("shop/web", "home", Some(0), Outcome::Answered(200), ms);
        let (d, _) = r.take();
        r.put_back(d);
        r.record("shop/web", "home", Some(1), Outcome::Timeout, ms);
        r.record("shop/web", "api", Some(1), Outcome::Answered(200), ms);
        let (d, _) = r.take();
        assert_eq!(d.len(), 2, "{d:?}");
        let home = d.iter().find(|s| s.entry == "home").unwrap();
        assert_eq!((home.calls, home.errors), (2, 1));
        assert_eq!(home.instances, vec![(0, 1), (1, 1)]);
        assert_eq!(home.hist, vec![(Histogram::bucket(40.0) as u8, 2)]);
        assert_eq!(r.totals()[1].1.calls, 2, "totals count each request once");

        let mut into = vec![home.clone()];
        merge_samples(&mut into, d.clone());
        assert_eq!(into.len(), 2);
        assert_eq!((into[0].calls, into[0].errors), (4, 2));
        assert_eq!(into[0].instances, vec![(0, 2), (1, 2)]);
    }
}
