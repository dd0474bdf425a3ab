//! Time shifting of flexible slices (issue 25): a held slice waits while the grid is dirtier
//! now than the lowest forecast window before its latest start, starts in that low window,
//! and starts at its latest start whatever the signal says. Pure: the leader's loop
//! (`flow`) writes what [`judge`] says as a `FlexibleStep`, with the numbers.

use crate::domain::{FlexibleRecord, Millis, clock_time};
use crate::metrics::carbon::CarbonSignal;

/// What to do with a held flexible slice now.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Keep holding it; the line says why, with the numbers.
    Hold(String),
    /// Start it now; the line says why, with the numbers.
    Start(String),
}

/// The signal a held slice is judged by: the node with the lowest intensity now (where
/// placement prefers to put it), by name.
pub fn cleanest<'a>(
    signals: impl IntoIterator<Item = (&'a str, &'a CarbonSignal)>,
) -> Option<(&'a str, &'a CarbonSignal)> {
    signals
        .into_iter()
        .min_by(|a, b| a.1.grams.total_cmp(&b.1.grams).then(a.0.cmp(b.0)))
}

fn grams(g: f32) -> String {
    format!("{} g/kWh", g.round())
}

/// Judge `rec` (held) at `now` by `signal` (the cleanest node's, by name). `no_shift` says why
/// the controller does not shift now (observe mode, paused, disabled): it starts then.
pub fn judge(
    rec: &FlexibleRecord,
    now: Millis,
    signal: Option<(&str, &CarbonSignal)>,
    no_shift: Option<&str>,
) -> Verdict {
    let latest = clock_time(rec.latest_start);
    let now_is = |s: &CarbonSignal, node: &str| format!("now {} on {node}", grams(s.grams));
    if now >= rec.latest_start {
        return Verdict::Start(format!(
            "latest start {latest} reached: starts regardless{}",
            signal
                .map(|(n, s)| format!(" ({})", now_is(s, n)))
                .unwrap_or_default()
        ));
    }
    if let Some(why) = no_shift {
        return Verdict::Start(format!("starts now, no time shifting: {why}"));
    }
    let Some((node, s)) = signal else {
        return Verdict::Start(format!(
            "starts now: no node has a carbon signal (latest start {latest})"
        ));
    };
    match s.lowest_before(now, rec.latest_start) {
        // The line names the window's own start, never `now`: a hold is written again only
        // when its line changes, so it must not change every tick while a window is open.
        Some(low) if low.grams < s.grams => Verdict::Hold(format!(
            "held: {}, forecast min {} {} {}, latest start {latest}",
            now_is(s, node),
            grams(low.grams),
            if low.at <= now {
                "in the window open since"
            } else {
                "at"
            },
            clock_time(low.at)
        )),
        Some(low) => Verdict::Start(format!(
            "starts in a low window: {}, forecast min {} before latest start {latest}",
            now_is(s, node),
            grams(low.grams)
        )),
        None => Verdict::Start(format!(
            "starts now: {}, no forecast window before latest start {latest}",
            now_is(s, node)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{FlexDeadline, FlexiblePolicy};
    use crate::metrics::carbon::{CarbonFormat, CarbonWindow};

    const T0: Millis = 1_796_450_400_000;

    fn held(latest_in: Millis) -> FlexibleRecord {
        FlexibleRecord {
            blueprint: "batch".into(),
            slice: "train".into(),
            policy: FlexiblePolicy {
                deadline: FlexDeadline::Within(latest_in),
                run_ms: 0,
            },
            instances: 1,
            applied_at: T0,
            latest_start: T0 + latest_in,
            held: None,
            started: None,
        }
    }

    fn signal(now: f32, windows: &[(Millis, Millis, f32)]) -> CarbonSignal {
        CarbonSignal {
            grams: now,
            zone: "z".into(),
            format: CarbonFormat::ElectricityMapsForecast,
            forecast: windows
                .iter()
                .map(|&(at, until, grams)| CarbonWindow { at, until, grams })
                .collect(),
        }
    }

    #[test]
    fn a_dirty_now_with_a_cleaner_window_ahead_holds_with_the_numbers() {
        let s = signal(450.0, &[(T0 + 20_000, T0 + 3_600_000, 100.0)]);
        let v = judge(&held(40_000), T0 + 1_000, Some(("n1", &s)), None);
        assert_eq!(
            v,
            Verdict::Hold(
                "held: now 450 g/kWh on n1, forecast min 100 g/kWh at 06:00:20Z, latest start 06:00:40Z"
                    .into()
            )
        );
    }

    #[test]
    fn a_hold_in_an_open_window_reads_the_same_each_tick() {
        // The measured value stays above a window that is already open: the hold's line
        // must not move with the clock (it is written again only when it changes).
        let s = signal(480.0, &[(T0 - 60_000, T0 + 600_000, 90.0)]);
        let line = |now| match judge(&held(300_000), now, Some(("n1", &s)), None) {
            Verdict::Hold(l) => l,
            v => panic!("{v:?}"),
        };
        assert_eq!(line(T0), line(T0 + 5_000));
        assert!(
            line(T0).contains("in the window open since"),
            "{}",
            line(T0)
        );
    }

    #[test]
    fn the_low_window_starts_it() {
        let s = signal(100.0, &[(T0 + 20_000, T0 + 3_600_000, 100.0)]);
        let v = judge(&held(40_000), T0 + 21_000, Some(("n1", &s)), None);
        assert!(
            matches!(&v, Verdict::Start(l) if l.starts_with("starts in a low window: now 100 g/kWh on n1")),
            "{v:?}"
        );
    }

    #[test]
    fn the_latest_start_starts_it_whatever_the_signal() {
        let s = signal(450.0, &[(T0 + 20_000, T0 + 3_600_000, 100.0)]);
        for now in [T0 + 40_000, T0 + 90_000] {
            let v = judge(&held(40_000), now, Some(("n1", &s)), None);
            assert_eq!(
                v,
                Verdict::Start(
                    "latest start 06:00:40Z reached: starts regardless (now 450 g/kWh on n1)"
                        .into()
                )
            );
        }
    }

    #[test]
    fn a_window_after_the_latest_start_does_not_hold_it() {
        let s = signal(450.0, &[(T0 + 60_000, T0 + 3_600_000, 10.0)]);
        let v = judge(&held(40_000), T0, Some(("n1", &s)), None);
        assert!(
            matches!(&v, Verdict::Start(l) if l.contains("no forecast window")),
            "{v:?}"
        );
    }

    #[test]
    fn no_signal_or_no_shifting_starts_at_once() {
        let v = judge(&held(40_000), T0, None, None);
        assert!(matches!(&v, Verdict::Start(l) if l.contains("no node has a carbon signal")));
        let s = signal(450.0, &[(T0 + 20_000, T0 + 3_600_000, 100.0)]);
        let v = judge(
            &held(40_000),
            T0,
            Some(("n1", &s)),
            Some("the controller is in observe mode"),
        );
        assert!(matches!(&v, Verdict::Start(l) if l.ends_with("observe mode")));
    }

    #[test]
    fn the_cleanest_node_is_judged_by() {
        let (a, b) = (signal(300.0, &[]), signal(120.0, &[]));
        assert_eq!(cleanest([("n1", &a), ("n2", &b)]).map(|c| c.0), Some("n2"));
        assert_eq!(cleanest(Vec::<(&str, &CarbonSignal)>::new()), None);
    }
}
