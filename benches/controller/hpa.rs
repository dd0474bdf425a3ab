//! The baseline: the Kubernetes HPA algorithm on cpu utilisation with its default behaviour.

use super::*;

/// The Kubernetes HPA algorithm on cpu utilisation with its default behaviour.
pub(crate) struct Hpa {
    pub(crate) target: f64,
    /// Served cores and seconds summed over the current sync period, since the active count
    /// last changed (metrics-server style: the utilisation averaged over the period, not one
    /// sample; seconds with another set of ready pods do not mix in).
    pub(crate) used_sum: f64,
    pub(crate) secs: u32,
    pub(crate) last_active: u32,
    /// Recommendations of the stabilisation window: (second, count).
    pub(crate) recs: VecDeque<(u64, u32)>,
}

impl Hpa {
    pub(crate) fn new(target: f64) -> Hpa {
        Hpa {
            target,
            used_sum: 0.0,
            secs: 0,
            last_active: 0,
            recs: VecDeque::new(),
        }
    }
}

impl Controller for Hpa {
    fn step(&mut self, t: u64, seen: &Seen) -> Option<u32> {
        if seen.active != self.last_active {
            (self.used_sum, self.secs, self.last_active) = (0.0, 0, seen.active);
        }
        self.used_sum += seen.used;
        self.secs += 1;
        if (t + 1) % HPA_SYNC_S != 0 {
            return None;
        }
        let (used, secs) = (self.used_sum, self.secs);
        (self.used_sum, self.secs) = (0.0, 0);
        if seen.active == 0 {
            return None;
        }
        let u = used / (f64::from(secs) * f64::from(seen.active) * CAPACITY);
        let ratio = u / self.target;
        // Within the tolerance the recommendation is the current count.
        let rec = if (ratio - 1.0).abs() <= HPA_TOLERANCE {
            seen.desired
        } else {
            (seen.active as f64 * ratio).ceil() as u32
        }
        .clamp(MIN, MAX);
        self.recs.push_back((t, rec));
        while self
            .recs
            .front()
            .is_some_and(|(at, _)| at + HPA_DOWN_WINDOW_S <= t)
        {
            self.recs.pop_front();
        }
        let cur = seen.desired;
        let new = if rec > cur {
            // Scale-up: no stabilisation; policy max(4 pods, 100 %) per 15 s.
            let limit = (cur + HPA_UP_PODS).max(cur + cur * HPA_UP_PERCENT / 100);
            rec.min(limit)
        } else {
            // Scale-down: the highest recommendation of the window.
            let stable = self.recs.iter().map(|(_, r)| *r).max().unwrap_or(rec);
            stable.min(cur)
        };
        (new != cur).then_some(new)
    }
}
