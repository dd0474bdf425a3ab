//! A node's carbon-intensity signal (issue 25): the JSON an Electricity Maps, Carbon Aware SDK
//! or WattTime endpoint answers (or a file holding it), read into a [`CarbonSignal`]: the
//! grid's intensity now in gCO2eq/kWh and a few forecast windows. Pure: text in, data or a
//! located error out; the loop that reads the source is `controller::carbon`.
//!
//! The shape is recognised from the JSON itself:
//! - Electricity Maps `/v3/carbon-intensity/latest`: `{"zone", "carbonIntensity", "datetime"}`
//!   (with the forecast's `"forecast"` list beside it, when a file merges both answers: the
//!   measured value is the one now);
//! - Electricity Maps `/v3/carbon-intensity/forecast`: `{"forecast": [{"carbonIntensity",
//!   "datetime"}]}`;
//! - Carbon Aware SDK `/emissions/forecasts/current`: `[{"location", "forecastData":
//!   [{"timestamp", "duration", "value"}]}]`;
//! - WattTime v3 `/v3/forecast`: `{"data": [{"point_time", "value"}], "meta": {"units"}}`
//!   (`lbs_co2_per_mwh` is converted to g/kWh).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::Millis;

/// Forecast windows a signal keeps (a longer forecast is merged into this many, each keeping
/// its lowest value: the low windows are what time shifting looks for).
pub const MAX_WINDOWS: usize = 24;

/// How far ahead forecast windows are kept.
pub const HORIZON_MS: Millis = 48 * 3_600_000;

/// One pound per megawatt-hour in grams per kilowatt-hour.
const LBS_PER_MWH_IN_G_PER_KWH: f64 = 0.453_592_37;

/// Which service's shape the JSON had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CarbonFormat {
    ElectricityMapsLatest,
    ElectricityMapsForecast,
    CarbonAwareSdk,
    WattTime,
}

impl CarbonFormat {
    /// Its name in views: `electricity-maps`, `carbon-aware-sdk`, `watttime`.
    pub fn name(self) -> &'static str {
        match self {
            CarbonFormat::ElectricityMapsLatest => "electricity-maps",
            CarbonFormat::ElectricityMapsForecast => "electricity-maps-forecast",
            CarbonFormat::CarbonAwareSdk => "carbon-aware-sdk",
            CarbonFormat::WattTime => "watttime",
        }
    }
}

/// A forecast window: the intensity expected from `at` until `until`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CarbonWindow {
    pub at: Millis,
    pub until: Millis,
    /// gCO2eq/kWh.
    pub grams: f32,
}

/// A node's carbon-intensity signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarbonSignal {
    /// The grid's intensity now, gCO2eq/kWh.
    pub grams: f32,
    /// The zone or location: the config's `carbon.zone`, else what the JSON names.
    pub zone: String,
    pub format: CarbonFormat,
    /// Windows still open at the read (the one covering it, and those after), oldest first,
    /// at most [`MAX_WINDOWS`].
    pub forecast: Vec<CarbonWindow>,
}

impl CarbonSignal {
    /// The lowest forecast window that is still open at `now` and begins before `until`.
    pub fn lowest_before(&self, now: Millis, until: Millis) -> Option<CarbonWindow> {
        self.forecast
            .iter()
            .filter(|w| w.until > now && w.at < until)
            .copied()
            .min_by(|a, b| a.grams.total_cmp(&b.grams))
    }

    /// One line: `450 g/kWh in 'DE' (electricity-maps-forecast); forecast min 100 g/kWh at
    /// 06:00:20Z`.
    pub fn summary(&self) -> String {
        let mut s = format!("{} g/kWh", self.grams.round());
        if !self.zone.is_empty() {
            s.push_str(&format!(" in '{}'", self.zone));
        }
        s.push_str(&format!(" ({})", self.format.name()));
        if let Some(low) = self
            .forecast
            .iter()
            .min_by(|a, b| a.grams.total_cmp(&b.grams))
        {
            s.push_str(&format!(
                "; forecast min {} g/kWh at {}",
                low.grams.round(),
                crate::domain::clock_time(low.at)
            ));
        }
        s
    }
}

/// Why a source's JSON was refused: the JSON path (`forecast[2].carbonIntensity`, empty for
/// the whole document) and what was wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct CarbonError {
    pub path: String,
    pub message: String,
}

fn err(path: impl Into<String>, message: impl Into<String>) -> CarbonError {
    CarbonError {
        path: path.into(),
        message: message.into(),
    }
}

/// A point as read: when, how long (when the source says), gCO2eq/kWh.
type Point = (Millis, Option<u64>, f64);

/// Read `text` (the answer of one of the services above) at `now`; `zone` (the config's, may
/// be empty) names the signal, else the zone the JSON names.
pub fn parse(text: &str, now: Millis, zone: &str) -> Result<CarbonSignal, CarbonError> {
    let v: Value = serde_json::from_str(text).map_err(|e| {
        err(
            "",
            format!("not JSON (line {}, column {}): {e}", e.line(), e.column()),
        )
    })?;
    let (format, named, current, points) = match &v {
        Value::Object(o) if o.contains_key("carbonIntensity") => {
            let g = grams(&v, "carbonIntensity", "carbonIntensity", 1.0)?;
            // The latest value with its forecast beside it (both answers in one file).
            let pts = match o.contains_key("forecast") {
                true => points(&v, "forecast", "datetime", None, "carbonIntensity", 1.0)?,
                false => vec![],
            };
            (
                CarbonFormat::ElectricityMapsLatest,
                text_of(&v, "zone"),
                Some(g),
                pts,
            )
        }
        Value::Object(o) if o.contains_key("forecast") => {
            let pts = points(&v, "forecast", "datetime", None, "carbonIntensity", 1.0)?;
            (
                CarbonFormat::ElectricityMapsForecast,
                text_of(&v, "zone"),
                None,
                pts,
            )
        }
        Value::Object(o) if o.contains_key("data") => {
            let units = v
                .pointer("/meta/units")
                .and_then(Value::as_str)
                .unwrap_or("");
            let scale = if units.contains("lbs") {
                LBS_PER_MWH_IN_G_PER_KWH
            } else {
                1.0
            };
            let pts = points(&v, "data", "point_time", None, "value", scale)?;
            let region = v
                .pointer("/meta/region")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            (CarbonFormat::WattTime, region, None, pts)
        }
        Value::Array(a) => {
            let Some(first) = a.first() else {
                return Err(err(
                    "",
                    "an empty list: expected a Carbon Aware SDK forecast with one location",
                ));
            };
            if first.get("forecastData").is_none() {
                return Err(err(
                    "[0]",
                    "expected a Carbon Aware SDK forecast ({\"location\", \"forecastData\": [...]})",
                ));
            }
            let pts = points(
                first,
                "forecastData",
                "timestamp",
                Some("duration"),
                "value",
                1.0,
            )
            .map_err(|e| CarbonError {
                path: format!("[0].{}", e.path),
                ..e
            })?;
            (
                CarbonFormat::CarbonAwareSdk,
                text_of(first, "location"),
                None,
                pts,
            )
        }
        other => {
            let found = match other {
                Value::Object(o) => format!(
                    "an object with keys {}",
                    o.keys()
                        .map(|k| format!("'{k}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Value::Null => "null".into(),
                Value::Bool(_) => "a boolean".into(),
                Value::Number(_) => "a number".into(),
                Value::String(_) => "a string".into(),
                Value::Array(_) => unreachable!("arrays are matched above"),
            };
            return Err(err(
                "",
                format!(
                    "unknown shape: expected Electricity Maps ('carbonIntensity' or 'forecast'), \
                     Carbon Aware SDK (a list with 'forecastData') or WattTime ('data'), found {found}"
                ),
            ));
        }
    };
    let windows = windows(&points);
    let current = match current {
        Some(g) => g,
        // The window covering now, else the first one.
        None => windows
            .iter()
            .rev()
            .find(|w| w.at <= now)
            .or(windows.first())
            .map(|w| w.grams as f64)
            .ok_or_else(|| {
                err(
                    "",
                    "a forecast without a single point: expected at least one",
                )
            })?,
    };
    let forecast = merge(
        windows
            .into_iter()
            .filter(|w| w.until > now && w.at <= now + HORIZON_MS)
            .collect(),
    );
    Ok(CarbonSignal {
        grams: current as f32,
        zone: if zone.is_empty() {
            named
        } else {
            zone.to_string()
        },
        format,
        forecast,
    })
}

fn text_of(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

/// The non-negative number at `key` of `v` (gCO2eq/kWh after `scale`).
fn grams(v: &Value, key: &str, path: &str, scale: f64) -> Result<f64, CarbonError> {
    match v.get(key) {
        None | Some(Value::Null) => Err(err(path, "missing: expected gCO2eq/kWh, e.g. 312")),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(g) if g.is_finite() && g >= 0.0 => Ok(g * scale),
            _ => Err(err(
                path,
                format!("expected gCO2eq/kWh of 0 or more, found {n}"),
            )),
        },
        Some(other) => Err(err(
            path,
            format!("expected a number (gCO2eq/kWh), found {other}"),
        )),
    }
}

/// The RFC 3339 time at `key` of `v`.
fn time_at(v: &Value, key: &str, path: &str) -> Result<Millis, CarbonError> {
    let s = v.get(key).and_then(Value::as_str).ok_or_else(|| {
        err(
            path,
            "missing: expected an RFC 3339 time, e.g. \"2026-12-05T06:00:00Z\"",
        )
    })?;
    crate::domain::parse_time(s).map_err(|m| err(path, m))
}

/// The points of the list at `list`.
fn points(
    v: &Value,
    list: &str,
    at: &str,
    minutes: Option<&str>,
    value: &str,
    scale: f64,
) -> Result<Vec<Point>, CarbonError> {
    let items = v
        .get(list)
        .and_then(Value::as_array)
        .ok_or_else(|| err(list, "expected a list of points"))?;
    let mut out = Vec::with_capacity(items.len());
    for (i, p) in items.iter().enumerate() {
        let here = |f: &str| format!("{list}[{i}].{f}");
        let t = time_at(p, at, &here(at))?;
        let g = grams(p, value, &here(value), scale)?;
        let d = match minutes.and_then(|m| p.get(m)) {
            None => None,
            Some(m) => Some(
                m.as_u64().filter(|m| *m > 0).ok_or_else(|| {
                    err(
                        here(minutes.unwrap_or_default()),
                        format!("expected whole minutes above 0, found {m}"),
                    )
                })? * 60_000,
            ),
        };
        out.push((t, d, g));
    }
    out.sort_by_key(|p| p.0);
    Ok(out)
}

/// Points as windows: each lasts its stated duration, else until the next point (the last one
/// as long as the one before it, or an hour alone).
fn windows(points: &[Point]) -> Vec<CarbonWindow> {
    let mut out: Vec<CarbonWindow> = Vec::with_capacity(points.len());
    for (i, (at, dur, g)) in points.iter().enumerate() {
        let gap = match (points.get(i + 1), out.last()) {
            (Some(next), _) => next.0.saturating_sub(*at),
            (None, Some(prev)) => prev.until - prev.at,
            (None, None) => 3_600_000,
        };
        out.push(CarbonWindow {
            at: *at,
            until: at + dur.unwrap_or(gap).max(1),
            grams: *g as f32,
        });
    }
    out
}

/// At most [`MAX_WINDOWS`] windows: consecutive ones merged, each keeping the span of its
/// group and the lowest value in it.
fn merge(w: Vec<CarbonWindow>) -> Vec<CarbonWindow> {
    if w.len() <= MAX_WINDOWS {
        return w;
    }
    let per = w.len().div_ceil(MAX_WINDOWS);
    w.chunks(per)
        .map(|c| CarbonWindow {
            at: c[0].at,
            until: c[c.len() - 1].until,
            grams: c.iter().map(|x| x.grams).fold(f32::INFINITY, f32::min),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-05T06:00:00Z.
    const SIX: Millis = 1_796_450_400_000;

    #[test]
    fn electricity_maps_latest_is_the_value_now() {
        let s = parse(
            r#"{"zone":"DE","carbonIntensity":302,"datetime":"2026-12-05T06:00:00.000Z","updatedAt":"x"}"#,
            SIX,
            "",
        )
        .unwrap();
        assert_eq!(s.grams, 302.0);
        assert_eq!(s.zone, "DE");
        assert_eq!(s.format, CarbonFormat::ElectricityMapsLatest);
        assert!(s.forecast.is_empty());
        assert_eq!(s.summary(), "302 g/kWh in 'DE' (electricity-maps)");
        // The latest value with a forecast merged in: the measured value is now's.
        let s = parse(
            r#"{"carbonIntensity":480,"forecast":[{"carbonIntensity":100,"datetime":"2026-12-05T05:59:00Z"},
                {"carbonIntensity":500,"datetime":"2026-12-05T07:00:00Z"}]}"#,
            SIX,
            "",
        )
        .unwrap();
        assert_eq!(s.grams, 480.0);
        assert_eq!(s.lowest_before(SIX, SIX + 60_000).unwrap().grams, 100.0);
        // The config's zone names the signal.
        assert_eq!(
            parse(r#"{"carbonIntensity":1}"#, SIX, "here").unwrap().zone,
            "here"
        );
    }

    #[test]
    fn electricity_maps_forecast_takes_now_from_the_window_covering_it() {
        let s = parse(
            r#"{"zone":"FR","forecast":[
                {"carbonIntensity":400,"datetime":"2026-12-05T05:00:00Z"},
                {"carbonIntensity":90,"datetime":"2026-12-05T07:00:00Z"},
                {"carbonIntensity":300,"datetime":"2026-12-05T08:00:00+00:00"}]}"#,
            SIX + 60_000,
            "",
        )
        .unwrap();
        assert_eq!(s.grams, 400.0);
        // The window covering now is kept while it is open.
        assert_eq!(s.forecast.len(), 3);
        assert_eq!(s.forecast[0].until, SIX + 3_600_000);
        assert_eq!(s.forecast[1].at, SIX + 3_600_000);
        assert_eq!(s.forecast[1].until, SIX + 2 * 3_600_000);
        // The last window lasts as long as the one before it.
        assert_eq!(s.forecast[2].until, SIX + 3 * 3_600_000);
        let low = s.lowest_before(SIX, SIX + 10 * 3_600_000).unwrap();
        assert_eq!(low.grams, 90.0);
        assert_eq!(
            s.summary(),
            "400 g/kWh in 'FR' (electricity-maps-forecast); forecast min 90 g/kWh at 07:00:00Z"
        );
        // Before 07:00 only the window covering now is forecast.
        assert_eq!(
            s.lowest_before(SIX, SIX + 30 * 60_000).map(|w| w.grams),
            Some(400.0)
        );
    }

    #[test]
    fn carbon_aware_sdk_uses_the_stated_durations() {
        let s = parse(
            r#"[{"location":"westus","generatedAt":"2026-12-05T05:55:00Z","forecastData":[
                {"location":"westus","timestamp":"2026-12-05T06:00:00Z","duration":5,"value":250.5},
                {"location":"westus","timestamp":"2026-12-05T06:05:00Z","duration":5,"value":120}]}]"#,
            SIX + 1_000,
            "",
        )
        .unwrap();
        assert_eq!(s.format, CarbonFormat::CarbonAwareSdk);
        assert_eq!(s.zone, "westus");
        assert_eq!(s.grams, 250.5);
        assert_eq!(
            s.forecast[1],
            CarbonWindow {
                at: SIX + 300_000,
                until: SIX + 600_000,
                grams: 120.0
            }
        );
        assert_eq!(s.forecast[0].until, SIX + 300_000);
    }

    #[test]
    fn watttime_pounds_per_megawatt_hour_become_grams_per_kilowatt_hour() {
        let s = parse(
            r#"{"data":[{"point_time":"2026-12-05T06:00:00Z","value":1000},
                        {"point_time":"2026-12-05T06:05:00Z","value":500}],
                "meta":{"region":"CAISO_NORTH","units":"lbs_co2_per_mwh"}}"#,
            SIX,
            "",
        )
        .unwrap();
        assert_eq!(s.zone, "CAISO_NORTH");
        assert!((s.grams - 453.59).abs() < 0.01, "{}", s.grams);
        assert!((s.forecast[1].grams - 226.8).abs() < 0.01);
    }

    #[test]
    fn a_long_forecast_keeps_its_lowest_values_in_few_windows() {
        let pts: Vec<String> = (1..=288)
            .map(|i| {
                let g = if i == 200 { 5 } else { 300 };
                let t = SIX / 1000 + i * 300;
                let (h, m) = ((t % 86_400) / 3600, (t % 3600) / 60);
                let day = 5 + (t - SIX / 1000 + 6 * 3600) / 86_400;
                format!(r#"{{"point_time":"2026-12-{day:02}T{h:02}:{m:02}:00Z","value":{g}}}"#)
            })
            .collect();
        let s = parse(&format!(r#"{{"data":[{}]}}"#, pts.join(",")), SIX, "").unwrap();
        assert_eq!(s.forecast.len(), MAX_WINDOWS);
        let low = s.lowest_before(SIX, SIX + 86_400_000).unwrap();
        assert_eq!(low.grams, 5.0);
    }

    #[test]
    fn bad_input_names_where_it_is_wrong() {
        let e = parse("not json", SIX, "").unwrap_err();
        assert!(
            e.to_string().starts_with("not JSON (line 1, column 2)"),
            "{e}"
        );
        let e = parse(r#"{"something":1}"#, SIX, "").unwrap_err();
        assert!(
            e.message.contains("unknown shape") && e.message.contains("'something'"),
            "{e}"
        );
        let e = parse(
            r#"{"forecast":[{"carbonIntensity":10,"datetime":"2026-12-05T06:00:00Z"},
                           {"carbonIntensity":-3,"datetime":"2026-12-05T07:00:00Z"}]}"#,
            SIX,
            "",
        )
        .unwrap_err();
        assert_eq!(e.path, "forecast[1].carbonIntensity");
        assert!(e.message.contains("0 or more, found -3"), "{e}");
        let e = parse(
            r#"{"data":[{"point_time":"yesterday","value":1}]}"#,
            SIX,
            "",
        )
        .unwrap_err();
        assert_eq!(e.path, "data[0].point_time");
        let e = parse(
            r#"[{"forecastData":[{"timestamp":"2026-12-05T06:00:00Z","value":"x"}]}]"#,
            SIX,
            "",
        )
        .unwrap_err();
        assert_eq!(e.path, "[0].forecastData[0].value");
        let e = parse(r#"{"carbonIntensity":null}"#, SIX, "").unwrap_err();
        assert_eq!(e.path, "carbonIntensity");
        assert!(parse("[]", SIX, "").is_err());
        assert!(parse(r#"{"forecast":[]}"#, SIX, "").is_err());
    }
}
