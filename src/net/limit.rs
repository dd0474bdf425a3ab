//! Refusals per peer IP (remote admin): each refused connection or request takes a token from
//! its IP's bucket (`burst` tokens, refilled at `burst` per `window`); an IP that empties its
//! bucket is refused new remote admin connections for `window`. Pure: the caller passes the
//! time, so it is unit-tested without a clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Refusals in a row (at most this many per window) before an IP is shut out.
pub const REFUSALS_BURST: u32 = 20;
/// How fast the bucket refills (`REFUSALS_BURST` per window), and how long an IP is shut out.
pub const REFUSALS_WINDOW: Duration = Duration::from_secs(60);

/// Above this many IPs, those with a full bucket and not shut out are forgotten.
const KEEP: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
    shut_until: Option<Instant>,
}

/// The refusal buckets of every IP seen refused.
#[derive(Debug)]
pub struct Refusals {
    burst: u32,
    window: Duration,
    ips: HashMap<IpAddr, Bucket>,
}

impl Default for Refusals {
    fn default() -> Self {
        Refusals::new(REFUSALS_BURST, REFUSALS_WINDOW)
    }
}

impl Refusals {
    /// Buckets of `burst` tokens refilled at `burst` per `window`.
    pub fn new(burst: u32, window: Duration) -> Refusals {
        Refusals {
            burst: burst.max(1),
            window,
            ips: HashMap::new(),
        }
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let rate = f64::from(self.burst) / self.window.as_secs_f64().max(1e-9);
        let dt = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + dt * rate).min(f64::from(self.burst));
        b.at = now;
    }

    /// `ip` was refused at `now`. Returns true when this refusal shut it out.
    pub fn refused(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.ips.len() >= KEEP {
            let burst = f64::from(self.burst);
            self.ips
                .retain(|_, b| b.tokens < burst || b.shut_until.is_some_and(|u| u > now));
        }
        let mut b = self.ips.get(&ip).copied().unwrap_or(Bucket {
            tokens: f64::from(self.burst),
            at: now,
            shut_until: None,
        });
        self.refill(&mut b, now);
        b.tokens -= 1.0;
        let shut = b.tokens < 1.0 && b.shut_until.is_none_or(|u| u <= now);
        if shut {
            b.shut_until = Some(now + self.window);
        }
        self.ips.insert(ip, b);
        shut
    }

    /// How much longer `ip` is shut out at `now`, if it is. When its time is over its bucket
    /// starts full.
    pub fn shut_out(&mut self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let burst = f64::from(self.burst);
        let b = self.ips.get_mut(&ip)?;
        match b.shut_until {
            Some(until) if until > now => Some(until - now),
            Some(_) => {
                *b = Bucket {
                    tokens: burst,
                    at: now,
                    shut_until: None,
                };
                None
            }
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ip_is_shut_out_after_its_burst_for_a_window_then_starts_afresh() {
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.7".parse().unwrap(), "10.0.0.8".parse().unwrap());
        let t0 = Instant::now();
        let mut r = Refusals::new(20, Duration::from_secs(60));
        for i in 0..19 {
            assert!(!r.refused(a, t0), "refusal {i} does not shut it out yet");
            assert_eq!(r.shut_out(a, t0), None);
        }
        assert!(r.refused(a, t0), "the 20th in a row does");
        assert_eq!(r.shut_out(a, t0), Some(Duration::from_secs(60)));
        assert_eq!(
            r.shut_out(a, t0 + Duration::from_secs(59)),
            Some(Duration::from_secs(1))
        );
        // Another IP is not affected.
        assert_eq!(r.shut_out(b, t0), None);
        assert!(!r.refused(b, t0));
        // After the window, a full bucket again.
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(r.shut_out(a, t1), None);
        for _ in 0..19 {
            assert!(!r.refused(a, t1));
        }
        assert!(r.refused(a, t1));
    }

    #[test]
    fn refusals_spread_over_time_refill_the_bucket() {
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let t0 = Instant::now();
        let mut r = Refusals::new(20, Duration::from_secs(60));
        // One every 3 s is exactly the refill rate: never shut out.
        for i in 0..200u64 {
            let now = t0 + Duration::from_secs(3 * i);
            assert!(!r.refused(ip, now), "refusal {i}");
            assert_eq!(r.shut_out(ip, now), None);
        }
    }
}
