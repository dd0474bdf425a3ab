//! Load balancing (pure): the better of two random instances by cost — an EWMA of latency
//! times the requests in flight (Linkerd's peak-EWMA idea, Knative's "better of two") —
//! ejection of failing instances for a growing time, and a retry budget. Data in, data out;
//! the caller passes the clock and the random numbers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Ejection and retry settings (`[ingress]`).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Consecutive 5xx after which an instance is ejected.
    pub eject_after: u32,
    pub eject_for: Duration,
    pub eject_max: Duration,
    /// Retries allowed per request over the budget's window, plus [`RETRY_FLOOR`].
    pub retry_budget: f32,
}

/// Retries always allowed per budget window, however few requests came.
pub const RETRY_FLOOR: u32 = 10;
/// The retry budget's window.
const BUDGET_WINDOW: Duration = Duration::from_secs(10);
/// Weight of the newest latency in the EWMA.
const EWMA_NEW: f64 = 0.3;
/// Costs within this factor of each other are a tie.
const TIE: f64 = 1.25;
/// An instance's latency estimate fades towards zero with this time constant while it gets no
/// answers, so one slow answer does not starve it of traffic for good (it is tried again and
/// measured afresh).
const EWMA_FADE: Duration = Duration::from_secs(5);

/// How a try on an instance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tried {
    /// A response below 500.
    Ok,
    /// A 5xx.
    ServerError,
    /// The connection could not be made (nothing was sent).
    ConnectFailed,
    /// No response head in time, or the connection broke after sending.
    Broken,
}

#[derive(Debug, Clone, Default)]
struct Stats {
    in_flight: u32,
    /// Milliseconds and when it was last updated; `None` until the first answer.
    ewma_ms: Option<(f64, Instant)>,
    failures: u32,
    ejected_until: Option<Instant>,
    /// Ejections in a row (reset by a success after one).
    ejections: u32,
}

/// Per-instance state of one node's balancer, keyed by `blueprint/slice/index@node`.
#[derive(Debug)]
pub struct Balancer {
    settings: Settings,
    stats: HashMap<String, Stats>,
    /// Requests and retries in the current and the previous budget window.
    budget: [(u32, u32); 2],
    budget_since: Option<Instant>,
}

/// The balancer's key of an instance copy.
pub fn key(instance: &str, node: u64) -> String {
    format!("{instance}@{node}")
}

/// `ewma` measured at `at`, faded to `now`.
fn faded(ewma: f64, at: Instant, now: Instant) -> f64 {
    let idle = now.saturating_duration_since(at).as_secs_f64();
    ewma * (-idle / EWMA_FADE.as_secs_f64()).exp()
}

impl Balancer {
    pub fn new(settings: Settings) -> Balancer {
        Balancer {
            settings,
            stats: HashMap::new(),
            budget: [(0, 0); 2],
            budget_since: None,
        }
    }

    fn cost(&self, k: &str, now: Instant) -> f64 {
        let s = self.stats.get(k);
        let in_flight = s.map_or(0, |s| s.in_flight) as f64;
        // Unknown latency: assume cheap, so a new instance gets traffic to learn from.
        let ewma = s
            .and_then(|s| s.ewma_ms)
            .map_or(0.0, |(e, at)| faded(e, at, now));
        (ewma + 1.0) * (in_flight + 1.0)
    }

    fn ejected(&self, k: &str, now: Instant) -> bool {
        self.stats
            .get(k)
            .and_then(|s| s.ejected_until)
            .is_some_and(|u| u > now)
    }

    /// Choose among `keys` (skipping `tried`): the cheaper of two picked by `r1`, `r2` (any
    /// numbers; reduced modulo the choices). Ejected instances are left out unless every
    /// candidate is ejected (then ejection is ignored: a guess beats a certain failure).
    /// `None` when nothing is left.
    pub fn pick(
        &self,
        keys: &[&str],
        tried: &[String],
        now: Instant,
        r1: usize,
        r2: usize,
    ) -> Option<usize> {
        let fresh: Vec<usize> = (0..keys.len())
            .filter(|i| !tried.iter().any(|t| t == keys[*i]))
            .collect();
        let healthy: Vec<usize> = fresh
            .iter()
            .copied()
            .filter(|i| !self.ejected(keys[*i], now))
            .collect();
        let pool = if healthy.is_empty() { fresh } else { healthy };
        match pool.len() {
            0 => None,
            1 => Some(pool[0]),
            n => {
                let a = pool[r1 % n];
                let mut b = pool[r2 % (n - 1)];
                if b == a {
                    b = pool[n - 1];
                }
                // Near-equal costs are a tie, won by the first pick (random): instances that
                // answer about as fast share the traffic even when it comes one at a time.
                Some(if self.cost(keys[b], now) * TIE < self.cost(keys[a], now) {
                    b
                } else {
                    a
                })
            }
        }
    }

    /// A request goes to `k`.
    pub fn start(&mut self, k: &str) {
        self.stats.entry(k.to_string()).or_default().in_flight += 1;
    }

    /// The try on `k` that [`Balancer::start`] began was given up (its client went away):
    /// no longer in flight, nothing learnt.
    pub fn abandon(&mut self, k: &str) {
        if let Some(s) = self.stats.get_mut(k) {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
    }

    /// The try on `k` that [`Balancer::start`] began ended as `t` after `took`.
    pub fn end(&mut self, k: &str, t: Tried, took: Duration, now: Instant) {
        let settings = self.settings;
        let s = self.stats.entry(k.to_string()).or_default();
        s.in_flight = s.in_flight.saturating_sub(1);
        let ms = took.as_secs_f64() * 1_000.0;
        s.ewma_ms = Some(match s.ewma_ms {
            Some((e, at)) => (faded(e, at, now) * (1.0 - EWMA_NEW) + ms * EWMA_NEW, now),
            None => (ms, now),
        });
        match t {
            Tried::Ok => {
                s.failures = 0;
                if s.ejected_until.is_some_and(|u| u <= now) {
                    s.ejected_until = None;
                    s.ejections = 0;
                }
            }
            Tried::ServerError | Tried::Broken | Tried::ConnectFailed => {
                s.failures += 1;
                let now_out = t == Tried::ConnectFailed || s.failures >= settings.eject_after;
                if now_out && s.ejected_until.is_none_or(|u| u <= now) {
                    let factor = 1u32 << s.ejections.min(16);
                    let d = settings
                        .eject_for
                        .saturating_mul(factor)
                        .min(settings.eject_max);
                    s.ejected_until = Some(now + d);
                    s.ejections += 1;
                    s.failures = 0;
                }
            }
        }
    }

    /// Whether `k` is ejected now, and until when.
    pub fn ejected_until(&self, k: &str, now: Instant) -> Option<Instant> {
        self.stats
            .get(k)
            .and_then(|s| s.ejected_until)
            .filter(|u| *u > now)
    }

    fn roll(&mut self, now: Instant) {
        match self.budget_since {
            Some(since) if now.duration_since(since) < BUDGET_WINDOW => {}
            Some(since) if now.duration_since(since) < BUDGET_WINDOW * 2 => {
                self.budget = [(0, 0), self.budget[0]];
                self.budget_since = Some(since + BUDGET_WINDOW);
            }
            _ => {
                self.budget = [(0, 0); 2];
                self.budget_since = Some(now);
            }
        }
    }

    /// Count one request (first tries only).
    pub fn count_request(&mut self, now: Instant) {
        self.roll(now);
        self.budget[0].0 += 1;
    }

    /// Take a retry from the budget: allowed while retries stay within `retry_budget` of the
    /// requests of the window (current and previous), plus [`RETRY_FLOOR`].
    pub fn take_retry(&mut self, now: Instant) -> bool {
        self.roll(now);
        let requests = self.budget[0].0 + self.budget[1].0;
        let retries = self.budget[0].1 + self.budget[1].1;
        let allowed = (requests as f32 * self.settings.retry_budget) as u32 + RETRY_FLOOR;
        if retries < allowed {
            self.budget[0].1 += 1;
            true
        } else {
            false
        }
    }

    /// Forget instances no longer routed to (keeps the map from growing).
    pub fn retain(&mut self, live: &std::collections::HashSet<&str>) {
        self.stats
            .retain(|k, s| live.contains(k.as_str()) || s.in_flight > 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            eject_after: 3,
            eject_for: Duration::from_secs(10),
            eject_max: Duration::from_secs(25),
            retry_budget: 0.2,
        }
    }

    fn refs(k: &[String]) -> Vec<&str> {
        k.iter().map(String::as_str).collect()
    }

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| key(&format!("shop/web/{i}"), 1)).collect()
    }

    #[test]
    fn the_cheaper_of_two_wins_by_latency_and_load() {
        let now = Instant::now();
        let mut b = Balancer::new(settings());
        let k = keys(2);
        b.start(&k[0]);
        b.end(&k[0], Tried::Ok, Duration::from_millis(50), now);
        b.start(&k[1]);
        b.end(&k[1], Tried::Ok, Duration::from_millis(2), now);
        for (r1, r2) in [(0, 0), (1, 0), (5, 3)] {
            assert_eq!(
                b.pick(&refs(&k), &[], now, r1, r2),
                Some(1),
                "the faster one"
            );
        }
        // Unanswered for a while, the slow one's estimate fades and it is tried again.
        let later = now + Duration::from_secs(30);
        assert_eq!(
            b.pick(&refs(&k), &[], later, 0, 1),
            Some(0),
            "the faded one"
        );
        // Load the fast one until its cost passes the slow one's.
        for _ in 0..30 {
            b.start(&k[1]);
        }
        assert_eq!(b.pick(&refs(&k), &[], now, 0, 0), Some(0), "the idle one");
        assert_eq!(
            b.pick(&refs(&k), &[k[0].clone()], now, 0, 0),
            Some(1),
            "not tried twice"
        );
        assert_eq!(b.pick(&refs(&k), &k, now, 0, 0), None);
    }

    #[test]
    fn failing_instances_are_ejected_for_longer_each_time() {
        let t0 = Instant::now();
        let mut b = Balancer::new(settings());
        let k = keys(2);
        for _ in 0..3 {
            b.start(&k[0]);
            b.end(&k[0], Tried::ServerError, Duration::from_millis(1), t0);
        }
        let until = b
            .ejected_until(&k[0], t0)
            .expect("ejected after 3 in a row");
        assert_eq!(until - t0, Duration::from_secs(10));
        for r in 0..4 {
            assert_eq!(b.pick(&refs(&k), &[], t0, r, r + 1), Some(1));
        }
        // Everyone ejected: ejection is ignored rather than failing the request.
        assert_eq!(b.pick(&refs(&k), &[k[1].clone()], t0, 0, 0), Some(0));
        // Back after the ejection; failing again doubles it, capped.
        let t1 = t0 + Duration::from_secs(11);
        assert!(b.ejected_until(&k[0], t1).is_none());
        b.start(&k[0]);
        b.end(&k[0], Tried::ConnectFailed, Duration::from_millis(1), t1);
        let until = b
            .ejected_until(&k[0], t1)
            .expect("a failed connect ejects at once");
        assert_eq!(until - t1, Duration::from_secs(20));
        let t2 = t1 + Duration::from_secs(21);
        b.start(&k[0]);
        b.end(&k[0], Tried::ConnectFailed, Duration::from_millis(1), t2);
        assert_eq!(
            b.ejected_until(&k[0], t2).unwrap() - t2,
            Duration::from_secs(25)
        );
        // A success after the ejection resets the count.
        let t3 = t2 + Duration::from_secs(26);
        b.start(&k[0]);
        b.end(&k[0], Tried::Ok, Duration::from_millis(1), t3);
        b.start(&k[0]);
        b.end(&k[0], Tried::ConnectFailed, Duration::from_millis(1), t3);
        assert_eq!(
            b.ejected_until(&k[0], t3).unwrap() - t3,
            Duration::from_secs(10)
        );
    }

    #[test]
    fn retries_stay_within_the_budget() {
        let now = Instant::now();
        let mut b = Balancer::new(settings());
        for _ in 0..100 {
            b.count_request(now);
        }
        let granted = (0..100).filter(|_| b.take_retry(now)).count();
        assert_eq!(granted, 20 + RETRY_FLOOR as usize);
        // Two windows later the budget is fresh.
        let later = now + Duration::from_secs(25);
        assert!(b.take_retry(later));
    }
}
