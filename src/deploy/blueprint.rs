//! Blueprint files: TOML in, a validated [`Blueprint`] out, or an error that names the file, line
//! and column, the field path (`slices[0].instances`), what was expected and what was found.
//! Unknown fields are errors. No I/O beyond what the caller reads.
//!
//! Room for later fields: every table is closed (unknown keys are refused) so a typo never passes
//! silently, and new keys (update strategy, service port, entry points) are added here as they
//! are built; a file written for this version keeps parsing.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::config::parse_duration;
use crate::domain::{
    Blueprint, FlexDeadline, FlexiblePolicy, HealthCheck, Probe, Resources, ScalingPolicy, Slice,
    validate_name,
};

/// A refused file (a blueprint, the controller's rules): where, which field, what was wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct FileError {
    /// The file, as named to the reader.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Field path, e.g. `slices[0].instances`; empty for the file as a whole.
    pub path: String,
    /// What was wrong, and what would do.
    pub message: String,
}

/// A refused blueprint file.
pub type BlueprintError = FileError;

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Largest instance count a slice may declare.
pub const MAX_INSTANCES: i64 = 10_000;

/// Variables the supervisor sets from `resources.gpu` (an instance sees only its own GPUs).
pub const GPU_VARS: [&str; 3] = [
    "CUDA_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
    "NVIDIA_VISIBLE_DEVICES",
];

/// A whole number in a file: an `i64` whose type error says "expected a whole number" (not
/// serde's "expected i64"), so the reader sees the fix in words.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Whole(pub i64);

impl<'de> Deserialize<'de> for Whole {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Whole;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a whole number, e.g. 8")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Whole, E> {
                Ok(Whole(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Whole, E> {
                i64::try_from(v)
                    .map(Whole)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
        }
        d.deserialize_i64(V)
    }
}

/// A number in a file (whole or with a fraction): an `f64` whose type error says "expected a
/// number" (not serde's "expected f64").
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Number(pub f64);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Number;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number, e.g. 0.5")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Number, E> {
                Ok(Number(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Number, E> {
                Ok(Number(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Number, E> {
                Ok(Number(v as f64))
            }
        }
        d.deserialize_f64(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBlueprint {
    name: Spanned<String>,
    #[serde(default)]
    slices: Vec<Spanned<RawSlice>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlice {
    name: Spanned<String>,
    command: Spanned<Vec<String>>,
    instances: Spanned<Whole>,
    min: Option<Spanned<Whole>>,
    max: Option<Spanned<Whole>>,
    #[serde(default)]
    env: BTreeMap<String, Spanned<String>>,
    resources: Option<Spanned<RawResources>>,
    stop_timeout: Option<Spanned<String>>,
    health: Option<Spanned<RawHealth>>,
    scaling: Option<Spanned<RawScaling>>,
    service: Option<Spanned<RawService>>,
    update: Option<Spanned<RawUpdate>>,
    user: Option<Spanned<String>>,
    flexible: Option<Spanned<RawFlexible>>,
}

/// `[slices.flexible]`: batch work that may wait for a lower-carbon window.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlexible {
    deadline: Option<Spanned<String>>,
    within: Option<Spanned<String>>,
    run: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpdate {
    strategy: Option<Spanned<String>>,
    max_parallel: Option<Spanned<Whole>>,
    min_healthy_time: Option<Spanned<String>>,
    healthy_deadline: Option<Spanned<String>>,
    progress_deadline: Option<Spanned<String>>,
    auto_revert: Option<bool>,
    canary: Option<Spanned<Whole>>,
    canary_traffic: Option<Spanned<String>>,
    analysis: Option<Spanned<RawAnalysis>>,
    auto_promote: Option<bool>,
    standby: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnalysis {
    interval: Option<Spanned<String>>,
    min_requests: Option<Spanned<Whole>>,
    max_error_rate: Option<Spanned<String>>,
    max_p99: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    port: Spanned<Whole>,
    #[serde(default)]
    entry_points: Vec<Spanned<RawEntryPoint>>,
    timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntryPoint {
    name: Spanned<String>,
    path: Spanned<String>,
    method: Option<Spanned<String>>,
}

/// Methods an entry point may name.
pub const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResources {
    cpu: Option<Spanned<Number>>,
    memory: Option<Spanned<String>>,
    gpu: Option<Spanned<Whole>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    http: Option<Spanned<String>>,
    tcp: Option<Spanned<bool>>,
    exec: Option<Spanned<Vec<String>>>,
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    threshold: Option<Spanned<Whole>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScaling {
    target_cpu: Option<Spanned<Number>>,
    target_latency: Option<Spanned<String>>,
    #[serde(default)]
    predictive: bool,
    up_cooldown: Option<Spanned<String>>,
    down_cooldown: Option<Spanned<String>>,
    idle_to_zero: Option<Spanned<String>>,
    target_calls_per_instance: Option<Spanned<Number>>,
}

/// Parse a size such as `256MiB`, `1GiB`, `512KiB`, `2GB` or a plain number of bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "expected a size such as '256MiB', '1GiB' or '512KiB', found '{s}'"
            ));
        }
    };
    let n: f64 = num.parse().map_err(|_| {
        format!("expected a size such as '256MiB', '1GiB' or '512KiB', found '{s}'")
    })?;
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(format!("expected a size of at least 1 byte, found '{s}'"));
    }
    Ok(bytes as u64)
}

/// Where things are in the source: byte offset → line and column (1-based), and the field path
/// of the table the offset is in.
pub(crate) struct Source<'a> {
    /// The file's name, for errors.
    pub file: &'a str,
    /// Its text.
    pub text: &'a str,
}

impl Source<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.chars().rev().take_while(|c| *c != '\n').count() + 1;
        (line, col)
    }

    /// The error `message` about field `path` at `span`.
    pub(crate) fn err(
        &self,
        span: Range<usize>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> BlueprintError {
        let (line, column) = self.line_col(span.start);
        BlueprintError {
            file: self.file.into(),
            line,
            column,
            path: path.into(),
            message: message.into(),
        }
    }

    /// The field path at `offset` (used for errors the TOML decoder reports by position only),
    /// from the parsed document's spans: the innermost key or value at `offset`, else the
    /// `[table]` whose body `offset` is in. Comments, quoting and spacing never reach the path.
    pub(crate) fn path_at(&self, offset: usize) -> String {
        let (root, _) = toml::de::DeTable::parse_recoverable(self.text);
        let mut spans = Vec::new();
        for (k, v) in root.get_ref().iter() {
            spans_of(k.get_ref().to_string(), k.span(), v, &mut spans);
        }
        let within = |r: &Range<usize>| r.start <= offset && (offset < r.end || offset == r.start);
        if let Some((path, _)) = spans
            .iter()
            .filter(|(_, r)| within(r))
            .min_by_key(|(path, r)| (r.len(), std::cmp::Reverse(path.len())))
        {
            return path.clone();
        }
        // Between keys: the last `[table]` / `[[table]]` header before `offset`.
        spans
            .iter()
            .filter(|(_, r)| r.start <= offset && self.text[r.start..].starts_with('['))
            .max_by_key(|(path, r)| (r.start, path.len()))
            .map(|(path, _)| path.clone())
            .unwrap_or_default()
    }
}

/// Every key and value under `key` (at `key_span`), with its field path (`slices[0].health`).
fn spans_of(
    path: String,
    key_span: Range<usize>,
    v: &Spanned<toml::de::DeValue<'_>>,
    out: &mut Vec<(String, Range<usize>)>,
) {
    out.push((path.clone(), key_span));
    value_spans(path, v, out);
}

fn value_spans(
    path: String,
    v: &Spanned<toml::de::DeValue<'_>>,
    out: &mut Vec<(String, Range<usize>)>,
) {
    out.push((path.clone(), v.span()));
    match v.get_ref() {
        toml::de::DeValue::Table(t) => {
            for (k, c) in t.iter() {
                spans_of(format!("{path}.{}", k.get_ref()), k.span(), c, out);
            }
        }
        toml::de::DeValue::Array(a) => {
            for (i, e) in a.iter().enumerate() {
                value_spans(format!("{path}[{i}]"), e, out);
            }
        }
        _ => {}
    }
}

fn duration_ms(
    src: &Source,
    v: &Option<Spanned<String>>,
    path: &str,
    default_ms: u64,
    max_ms: u64,
) -> Result<u64, BlueprintError> {
    let Some(v) = v else {
        return Ok(default_ms);
    };
    let d = parse_duration(v.get_ref()).map_err(|m| src.err(v.span(), path, m))?;
    let ms = d.as_millis() as u64;
    if ms == 0 || ms > max_ms {
        return Err(src.err(
            v.span(),
            path,
            format!(
                "expected a duration above 0 and at most {}, found '{}'",
                crate::domain::human_millis(max_ms),
                v.get_ref()
            ),
        ));
    }
    Ok(ms)
}

fn count(
    src: &Source,
    v: &Spanned<Whole>,
    path: &str,
    min: i64,
    max: i64,
) -> Result<u32, BlueprintError> {
    let n = v.get_ref().0;
    if n < min || n > max {
        return Err(src.err(
            v.span(),
            path,
            format!("expected a whole number from {min} to {max}, found {n}"),
        ));
    }
    Ok(n as u32)
}

fn parse_command(
    src: &Source,
    v: &Spanned<Vec<String>>,
    path: &str,
) -> Result<Vec<String>, BlueprintError> {
    let c = v.get_ref();
    if c.is_empty() || c[0].trim().is_empty() {
        return Err(src.err(
            v.span(),
            path,
            "expected a program and its arguments, e.g. [\"python3\", \"-m\", \"http.server\", \"${PORT}\"], found an empty command",
        ));
    }
    Ok(c.clone())
}

fn slice(src: &Source, raw: &Spanned<RawSlice>, i: usize) -> Result<Slice, BlueprintError> {
    let r = raw.get_ref();
    let p = |f: &str| format!("slices[{i}].{f}");
    validate_name("slice name", r.name.get_ref())
        .map_err(|m| src.err(r.name.span(), p("name"), m))?;
    let command = parse_command(src, &r.command, &p("command"))?;
    let instances = count(src, &r.instances, &p("instances"), 0, MAX_INSTANCES)?;
    let min = match &r.min {
        Some(v) => count(src, v, &p("min"), 0, MAX_INSTANCES)?,
        None => 0,
    };
    let max = match &r.max {
        Some(v) => count(src, v, &p("max"), 1, MAX_INSTANCES)?,
        None => instances.max(min).max(1),
    };
    if min > max {
        let span = r.min.as_ref().map(|v| v.span()).unwrap_or(raw.span());
        return Err(src.err(
            span,
            p("min"),
            format!("min ({min}) must not be above max ({max})"),
        ));
    }
    if instances < min || instances > max {
        return Err(src.err(
            r.instances.span(),
            p("instances"),
            format!("expected a number within min..=max ({min}..={max}), found {instances}"),
        ));
    }
    let mut env = BTreeMap::new();
    for (k, v) in &r.env {
        let valid = !k.is_empty()
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(src.err(
                v.span(),
                format!("slices[{i}].env.{k}"),
                format!("'{k}' is not a valid variable name: use A-Z, a-z, 0-9 and '_', not starting with a digit"),
            ));
        }
        if k == "PORT" || k.starts_with("AETHER_") || GPU_VARS.contains(&k.as_str()) {
            return Err(src.err(
                v.span(),
                format!("slices[{i}].env.{k}"),
                format!(
                    "'{k}' is set by the supervisor (PORT, AETHER_*, and {} from \
                     resources.gpu): remove it",
                    GPU_VARS.join(", ")
                ),
            ));
        }
        env.insert(k.clone(), v.get_ref().clone());
    }
    let mut resources = Resources {
        cpu: 0.1,
        memory: 64 << 20,
        gpu: 0,
    };
    if let Some(res) = &r.resources {
        let res = res.get_ref();
        if let Some(cpu) = &res.cpu {
            let c = cpu.get_ref().0;
            if !(c > 0.0 && c <= 1024.0) {
                return Err(src.err(
                    cpu.span(),
                    p("resources.cpu"),
                    format!("expected cores above 0 and at most 1024, found {c}"),
                ));
            }
            resources.cpu = c as f32;
        }
        if let Some(m) = &res.memory {
            resources.memory =
                parse_size(m.get_ref()).map_err(|e| src.err(m.span(), p("resources.memory"), e))?;
        }
        if let Some(g) = &res.gpu {
            resources.gpu = count(src, g, &p("resources.gpu"), 0, 64)?;
        }
    }
    let stop_timeout_ms = duration_ms(src, &r.stop_timeout, &p("stop_timeout"), 10_000, 600_000)?;
    let health = match &r.health {
        None => None,
        Some(h) => {
            let hr = h.get_ref();
            let probes = [hr.http.is_some(), hr.tcp.is_some(), hr.exec.is_some()]
                .iter()
                .filter(|x| **x)
                .count();
            if probes != 1 {
                return Err(src.err(
                    h.span(),
                    p("health"),
                    format!("expected exactly one of http, tcp or exec, found {probes}"),
                ));
            }
            let probe = if let Some(path) = &hr.http {
                if !path.get_ref().starts_with('/') {
                    return Err(src.err(
                        path.span(),
                        p("health.http"),
                        format!(
                            "expected a path starting with '/', found '{}'",
                            path.get_ref()
                        ),
                    ));
                }
                Probe::Http(path.get_ref().clone())
            } else if let Some(t) = &hr.tcp {
                if !*t.get_ref() {
                    return Err(src.err(
                        t.span(),
                        p("health.tcp"),
                        "expected true (check that the instance's port accepts connections); leave the table out for no check",
                    ));
                }
                Probe::Tcp
            } else {
                let e = hr.exec.as_ref().expect("one probe is set");
                Probe::Exec(parse_command(src, e, &p("health.exec"))?)
            };
            let interval_ms =
                duration_ms(src, &hr.interval, &p("health.interval"), 2_000, 3_600_000)?;
            let timeout_ms = duration_ms(src, &hr.timeout, &p("health.timeout"), 1_000, 600_000)?;
            let threshold = match &hr.threshold {
                Some(t) => count(src, t, &p("health.threshold"), 1, 100)?,
                None => 3,
            };
            Some(HealthCheck {
                probe,
                interval_ms,
                timeout_ms,
                threshold,
            })
        }
    };
    let scaling = match &r.scaling {
        None => None,
        Some(s) => {
            let s = s.get_ref();
            let target_cpu = match &s.target_cpu {
                Some(t) => {
                    let v = t.get_ref().0;
                    if !(v > 0.0 && v <= 1.0) {
                        return Err(src.err(
                            t.span(),
                            p("scaling.target_cpu"),
                            format!("expected a fraction above 0 and at most 1, found {v}"),
                        ));
                    }
                    Some(v as f32)
                }
                None => None,
            };
            let opt_ms =
                |v: &Option<Spanned<String>>, f: &str| -> Result<Option<u64>, BlueprintError> {
                    match v {
                        Some(_) => duration_ms(src, v, &p(f), 0, 24 * 3_600_000).map(Some),
                        None => Ok(None),
                    }
                };
            let target_calls_per_instance = match &s.target_calls_per_instance {
                Some(t) => {
                    let v = t.get_ref().0;
                    if !(v.is_finite() && v > 0.0 && v <= 1_000_000.0) {
                        return Err(src.err(
                            t.span(),
                            p("scaling.target_calls_per_instance"),
                            format!(
                                "expected calls per second above 0 and at most 1000000, found {v}: \
                                 the rate one instance serves well (measure it with a load test)"
                            ),
                        ));
                    }
                    Some(v)
                }
                None => None,
            };
            Some(ScalingPolicy {
                target_cpu,
                target_latency_ms: opt_ms(&s.target_latency, "scaling.target_latency")?,
                predictive: s.predictive,
                up_cooldown_ms: opt_ms(&s.up_cooldown, "scaling.up_cooldown")?,
                down_cooldown_ms: opt_ms(&s.down_cooldown, "scaling.down_cooldown")?,
                idle_to_zero_ms: opt_ms(&s.idle_to_zero, "scaling.idle_to_zero")?,
                target_calls_per_instance,
            })
        }
    };
    if let (Some(sc), Some(policy)) = (&r.scaling, &scaling)
        && policy.idle_to_zero_ms.is_some()
        && min > 0
    {
        let span = sc
            .get_ref()
            .idle_to_zero
            .as_ref()
            .map_or(sc.span(), |v| v.span());
        return Err(src.err(
            span,
            p("scaling.idle_to_zero"),
            format!("scaling to zero needs 'min = 0', and min is {min}: set min = 0 or remove idle_to_zero"),
        ));
    }
    let service = match &r.service {
        None => None,
        Some(sv) => Some(service(src, sv, i)?),
    };
    let update = match &r.update {
        None => None,
        Some(u) => Some(update(src, u, i, service.is_some(), max)?),
    };
    let user = match &r.user {
        None => None,
        Some(u) => {
            let name = u.get_ref();
            let ok = !name.is_empty()
                && name.len() <= 32
                && name
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                });
            if !ok {
                return Err(src.err(
                    u.span(),
                    p("user"),
                    format!("'{name}' is not a user name: expected 1-32 of a-z, 0-9, '_' and '-', starting with a letter or '_'"),
                ));
            }
            Some(name.clone())
        }
    };
    Ok(Slice {
        name: r.name.get_ref().clone(),
        command,
        instances,
        min,
        max,
        env,
        resources,
        stop_timeout_ms,
        health,
        scaling,
        service,
        update,
        user,
    })
}

/// Where `slices[i].user` is written in `text` (line, column), for an error found after
/// parsing (a user this node does not have). `None` when the file does not parse.
pub fn user_at(text: &str, slice: usize) -> Option<(usize, usize)> {
    slice_field_at(text, slice, |s| Some(s.user.as_ref()?.span().start))
}

/// Where a field of `slices[i]` (found by `at`, a byte offset) is written in `text`.
fn slice_field_at(
    text: &str,
    slice: usize,
    at: impl Fn(&RawSlice) -> Option<usize>,
) -> Option<(usize, usize)> {
    let raw: RawBlueprint = toml::from_str(text).ok()?;
    let offset = at(raw.slices.get(slice)?.get_ref())?;
    Some(Source { file: "", text }.line_col(offset))
}

/// A percentage such as `10%` (or `0.5%`), as a fraction 0–1 at most `max_pct` percent.
fn percent(
    src: &Source,
    v: &Spanned<String>,
    path: &str,
    max_pct: f64,
) -> Result<f64, BlueprintError> {
    let t = v.get_ref().trim();
    let n = t
        .strip_suffix('%')
        .and_then(|n| n.trim().parse::<f64>().ok())
        .filter(|n| n.is_finite() && *n >= 0.0 && *n <= max_pct);
    match n {
        Some(n) => Ok(n / 100.0),
        None => Err(src.err(
            v.span(),
            path,
            format!("expected a percentage from 0% to {max_pct}%, e.g. \"10%\", found '{t}'"),
        )),
    }
}

/// A duration that may be zero (`"0s"`), at most `max_ms`.
fn duration_or_zero(
    src: &Source,
    v: &Option<Spanned<String>>,
    path: &str,
    default_ms: u64,
    max_ms: u64,
) -> Result<u64, BlueprintError> {
    match v {
        Some(d) if parse_duration(d.get_ref()).is_ok_and(|d| d.is_zero()) => Ok(0),
        _ => duration_ms(src, v, path, default_ms, max_ms),
    }
}

fn update(
    src: &Source,
    raw: &Spanned<RawUpdate>,
    i: usize,
    has_service: bool,
    max: u32,
) -> Result<crate::domain::UpdatePolicy, BlueprintError> {
    use crate::domain::{AnalysisPolicy, Strategy, UpdatePolicy};
    let r = raw.get_ref();
    let p = |f: &str| format!("slices[{i}].update.{f}");
    let d = UpdatePolicy::default();
    let strategy = match &r.strategy {
        None => d.strategy,
        Some(s) => match s.get_ref().as_str() {
            "rolling" => Strategy::Rolling,
            "canary" => Strategy::Canary,
            "blue-green" => Strategy::BlueGreen,
            other => {
                return Err(src.err(
                    s.span(),
                    p("strategy"),
                    format!("unknown strategy '{other}': expected rolling, canary or blue-green"),
                ));
            }
        },
    };
    let max_parallel = match &r.max_parallel {
        Some(m) => count(src, m, &p("max_parallel"), 1, 1_000)?,
        None => d.max_parallel,
    };
    let day = 24 * 3_600_000;
    let min_healthy_ms = duration_or_zero(
        src,
        &r.min_healthy_time,
        &p("min_healthy_time"),
        d.min_healthy_ms,
        day,
    )?;
    let healthy_deadline_ms = duration_ms(
        src,
        &r.healthy_deadline,
        &p("healthy_deadline"),
        d.healthy_deadline_ms,
        day,
    )?;
    let progress_deadline_ms = duration_ms(
        src,
        &r.progress_deadline,
        &p("progress_deadline"),
        d.progress_deadline_ms,
        day,
    )?;
    let canary = match &r.canary {
        Some(c) => count(src, c, &p("canary"), 1, max.max(1) as i64)?,
        None => d.canary,
    };
    let canary_traffic_pct = match &r.canary_traffic {
        Some(t) => (percent(src, t, &p("canary_traffic"), 100.0)? * 100.0).round() as u8,
        None => d.canary_traffic_pct,
    };
    let analysis = match &r.analysis {
        None => None,
        Some(a) => {
            if !has_service {
                return Err(src.err(
                    a.span(),
                    p("analysis"),
                    "an analysis reads the ingress's numbers, and this slice has no [slices.service]: add a service port, or remove the analysis",
                ));
            }
            if strategy != Strategy::Canary {
                return Err(src.err(
                    a.span(),
                    p("analysis"),
                    format!("an analysis judges canaries, and the strategy is '{strategy}': set strategy = \"canary\" or remove the analysis"),
                ));
            }
            let ar = a.get_ref();
            let pa = |f: &str| p(&format!("analysis.{f}"));
            Some(AnalysisPolicy {
                interval_ms: duration_ms(src, &ar.interval, &pa("interval"), 30_000, 3_600_000)?,
                min_requests: match &ar.min_requests {
                    Some(m) => count(src, m, &pa("min_requests"), 1, 100_000_000)? as u64,
                    None => 100,
                },
                max_error_rate: match &ar.max_error_rate {
                    Some(e) => percent(src, e, &pa("max_error_rate"), 100.0)?,
                    None => 0.01,
                },
                max_p99_ms: match &ar.max_p99 {
                    Some(_) => Some(duration_ms(src, &ar.max_p99, &pa("max_p99"), 0, 600_000)?),
                    None => None,
                },
            })
        }
    };
    if let Some(t) = &r.canary_traffic
        && strategy == Strategy::Canary
        && !has_service
    {
        return Err(src.err(
            t.span(),
            p("canary_traffic"),
            "a traffic share needs the ingress, and this slice has no [slices.service]: add a service port, or remove canary_traffic",
        ));
    }
    Ok(UpdatePolicy {
        strategy,
        max_parallel,
        min_healthy_ms,
        healthy_deadline_ms,
        progress_deadline_ms,
        auto_revert: r.auto_revert.unwrap_or(d.auto_revert),
        canary,
        canary_traffic_pct,
        analysis,
        auto_promote: r.auto_promote.unwrap_or(d.auto_promote),
        standby_ms: duration_or_zero(src, &r.standby, &p("standby"), d.standby_ms, day)?,
    })
}

fn service(
    src: &Source,
    raw: &Spanned<RawService>,
    i: usize,
) -> Result<crate::domain::Service, BlueprintError> {
    use crate::domain::{EntryPoint, OTHER_ENTRY, Service};
    let r = raw.get_ref();
    let p = |f: &str| format!("slices[{i}].service.{f}");
    let port = count(src, &r.port, &p("port"), 1, 65_535)? as u16;
    let mut entry_points: Vec<EntryPoint> = Vec::new();
    for (j, e) in r.entry_points.iter().enumerate() {
        let er = e.get_ref();
        let ep = |f: &str| p(&format!("entry_points[{j}].{f}"));
        let name = er.name.get_ref();
        validate_name("entry point name", name)
            .map_err(|m| src.err(er.name.span(), ep("name"), m))?;
        if name == OTHER_ENTRY {
            return Err(src.err(
                er.name.span(),
                ep("name"),
                format!("'{OTHER_ENTRY}' counts the requests that match no entry point: choose another name"),
            ));
        }
        if entry_points.iter().any(|x| &x.name == name) {
            return Err(src.err(
                er.name.span(),
                ep("name"),
                format!("entry point '{name}' is declared twice: give each a name of its own"),
            ));
        }
        let path = er.path.get_ref();
        if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
            return Err(src.err(
                er.path.span(),
                ep("path"),
                format!("expected a path prefix starting with '/' (no query, fragment or space), found '{path}'"),
            ));
        }
        let method = match &er.method {
            None => None,
            Some(m) => {
                if !METHODS.contains(&m.get_ref().as_str()) {
                    return Err(src.err(
                        m.span(),
                        ep("method"),
                        format!(
                            "unknown HTTP method '{}': expected one of {} (upper case), or leave it out for any",
                            m.get_ref(),
                            METHODS.join(", ")
                        ),
                    ));
                }
                Some(m.get_ref().clone())
            }
        };
        if entry_points
            .iter()
            .any(|x| x.path == *path && x.method == method)
        {
            return Err(src.err(
                er.path.span(),
                ep("path"),
                format!(
                    "another entry point already routes {} '{path}': one would never be counted",
                    method.as_deref().unwrap_or("any method to")
                ),
            ));
        }
        entry_points.push(EntryPoint {
            name: name.clone(),
            path: path.clone(),
            method,
        });
    }
    let timeout_ms = match &r.timeout {
        Some(_) => Some(duration_ms(src, &r.timeout, &p("timeout"), 0, 3_600_000)?),
        None => None,
    };
    Ok(Service {
        port,
        entry_points,
        timeout_ms,
    })
}

/// Where `slices[i].service.port` is written in `text` (line, column), for an error found
/// after parsing (a port another blueprint holds). `None` when the file does not parse.
pub fn service_port_at(text: &str, slice: usize) -> Option<(usize, usize)> {
    slice_field_at(text, slice, |s| {
        Some(s.service.as_ref()?.get_ref().port.span().start)
    })
}

/// The longest `within` of a flexible slice.
pub const MAX_FLEXIBLE_MS: u64 = 30 * 86_400_000;

/// A slice's `[slices.flexible]`, if it has one.
fn flexible(
    src: &Source,
    raw: &Spanned<RawSlice>,
    i: usize,
    min: u32,
) -> Result<Option<FlexiblePolicy>, BlueprintError> {
    let Some(f) = &raw.get_ref().flexible else {
        return Ok(None);
    };
    let p = |k: &str| format!("slices[{i}].flexible.{k}");
    let r = f.get_ref();
    if min > 0 {
        return Err(src.err(
            f.span(),
            format!("slices[{i}].flexible"),
            format!("a flexible slice is held with no instance until it starts, and min is {min}: set min = 0"),
        ));
    }
    let deadline = match (&r.deadline, &r.within) {
        (Some(d), None) => FlexDeadline::At(
            crate::domain::parse_time(d.get_ref())
                .map_err(|m| src.err(d.span(), p("deadline"), m))?,
        ),
        (None, Some(_)) => FlexDeadline::Within(duration_ms(
            src,
            &r.within,
            &p("within"),
            0,
            MAX_FLEXIBLE_MS,
        )?),
        (Some(d), Some(_)) => {
            return Err(src.err(
                d.span(),
                p("deadline"),
                "expected one of deadline (an RFC 3339 time) or within (a duration after the apply), found both",
            ));
        }
        (None, None) => {
            return Err(src.err(
                f.span(),
                format!("slices[{i}].flexible"),
                "expected deadline = \"2026-12-05T18:00:00Z\" or within = \"6h\": when the work must be done",
            ));
        }
    };
    let run_ms = match &r.run {
        Some(_) => duration_ms(src, &r.run, &p("run"), 0, MAX_FLEXIBLE_MS)?,
        None => 0,
    };
    if let FlexDeadline::Within(w) = deadline
        && run_ms > w
    {
        return Err(src.err(
            r.run.as_ref().map_or(f.span(), |v| v.span()),
            p("run"),
            format!(
                "the work runs {} and must be done within {}: it could never wait; raise within or lower run",
                crate::domain::human_millis(run_ms),
                crate::domain::human_millis(w)
            ),
        ));
    }
    Ok(Some(FlexiblePolicy { deadline, run_ms }))
}

/// Parse and validate the blueprint in `text`; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Blueprint, BlueprintError> {
    parse_with_flexible(file, text).map(|(b, _)| b)
}

/// [`parse`], and the policy of each slice with a `[slices.flexible]` table (by slice name),
/// which is kept beside the blueprint, not in it.
pub fn parse_with_flexible(
    file: &str,
    text: &str,
) -> Result<(Blueprint, Vec<(String, FlexiblePolicy)>), BlueprintError> {
    let src = Source { file, text };
    let raw: RawBlueprint = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let path = src.path_at(span.start);
        let message = e.message().trim().to_string();
        src.err(span, path, message)
    })?;
    validate_name("blueprint name", raw.name.get_ref())
        .map_err(|m| src.err(raw.name.span(), "name", m))?;
    if raw.slices.is_empty() {
        return Err(src.err(
            0..0,
            "slices",
            "expected at least one [[slices]] table (a command to run), found none",
        ));
    }
    let mut slices: Vec<Slice> = Vec::new();
    let mut flexibles = Vec::new();
    for (i, s) in raw.slices.iter().enumerate() {
        let parsed = slice(&src, s, i)?;
        if let Some(f) = flexible(&src, s, i, parsed.min)? {
            flexibles.push((parsed.name.clone(), f));
        }
        if let Some(j) = slices.iter().position(|o| o.name == parsed.name) {
            return Err(src.err(
                s.get_ref().name.span(),
                format!("slices[{i}].name"),
                format!(
                    "slice '{}' is declared twice (also slices[{j}]): slice names are unique within a blueprint",
                    parsed.name
                ),
            ));
        }
        if let Some(port) = parsed.service.as_ref().map(|sv| sv.port)
            && let Some(other) = slices
                .iter()
                .find(|o| o.service.as_ref().is_some_and(|sv| sv.port == port))
        {
            let span = s
                .get_ref()
                .service
                .as_ref()
                .map_or(s.span(), |sv| sv.get_ref().port.span());
            return Err(src.err(
                span,
                format!("slices[{i}].service.port"),
                format!("port {port} is already the service port of slice '{}': each slice needs its own", other.name),
            ));
        }
        slices.push(parsed);
    }
    Ok((
        Blueprint {
            name: raw.name.into_inner(),
            slices,
        },
        flexibles,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"name = "shop"

[[slices]]
name = "web"
command = ["python3", "-m", "http.server", "${PORT}", "--bind", "127.0.0.1"]
instances = 4
min = 1
max = 8
env = { GREETING = "hi" }
resources = { cpu = 0.5, memory = "256MiB", gpu = 0 }
stop_timeout = "10s"

[slices.health]
http = "/"

[slices.scaling]
target_cpu = 0.6
predictive = true
"#;

    #[test]
    fn the_design_example_parses() {
        let b = parse("shop.toml", GOOD).unwrap();
        assert_eq!(b.name, "shop");
        let s = &b.slices[0];
        assert_eq!((s.instances, s.min, s.max), (4, 1, 8));
        assert_eq!(s.resources.memory, 256 << 20);
        assert_eq!(s.stop_timeout_ms, 10_000);
        assert_eq!(s.health.as_ref().unwrap().probe, Probe::Http("/".into()));
        assert_eq!(s.scaling.as_ref().unwrap().target_cpu, Some(0.6));
        assert_eq!(s.scaling.as_ref().unwrap().target_calls_per_instance, None);
        assert_eq!(s.env["GREETING"], "hi");
        // A whole number of calls is taken as it is written.
        let b = parse(
            "shop.toml",
            &GOOD.replace("target_cpu = 0.6", "target_calls_per_instance = 80"),
        )
        .unwrap();
        let sc = b.slices[0].scaling.as_ref().unwrap();
        assert_eq!(
            (sc.target_cpu, sc.target_calls_per_instance),
            (None, Some(80.0))
        );
    }

    /// Replace `from` in the good file by `to` and parse; the error as text.
    fn refused(from: &str, to: &str) -> String {
        assert!(GOOD.contains(from), "{from}");
        parse("shop.toml", &GOOD.replacen(from, to, 1))
            .expect_err(&format!("'{to}' must be refused"))
            .to_string()
    }

    #[test]
    fn malformed_blueprints_are_refused_with_a_located_message() {
        let cases: &[(&str, &str, &str)] = &[
            // (replace, with, the error must contain)
            (
                "instances = 4",
                "instances = \"four\"",
                "shop.toml:6:13: slices[0].instances: invalid type: string \"four\", expected a whole number, e.g. 8",
            ),
            (
                "instances = 4",
                "instances = -1",
                "shop.toml:6:13: slices[0].instances: expected a whole number from 0 to 10000, found -1",
            ),
            (
                "instances = 4",
                "instances = 9",
                "shop.toml:6:13: slices[0].instances: expected a number within min..=max (1..=8), found 9",
            ),
            (
                "min = 1",
                "min = 9",
                "shop.toml:7:7: slices[0].min: min (9) must not be above max (8)",
            ),
            (
                "stop_timeout = \"10s\"",
                "stop_timeout = \"10s\"\ncolour = \"red\"",
                "shop.toml:12:1: slices[0].colour: unknown field `colour`",
            ),
            (
                "name = \"shop\"",
                "name = \"shop\"\nversion = 2",
                "shop.toml:2:1: version: unknown field `version`",
            ),
            ("instances = 4", "instances = 4 4", "shop.toml:6:"),
            (
                "command = [\"python3\", \"-m\", \"http.server\", \"${PORT}\", \"--bind\", \"127.0.0.1\"]",
                "command = []",
                "shop.toml:5:11: slices[0].command: expected a program and its arguments",
            ),
            (
                "name = \"web\"",
                "name = \"Web_1\"",
                "shop.toml:4:8: slices[0].name: slice name 'Web_1' is not a valid name",
            ),
            (
                "name = \"shop\"",
                "name = \"-shop\"",
                "shop.toml:1:8: name: blueprint name '-shop' is not a valid name",
            ),
            (
                "stop_timeout = \"10s\"",
                "stop_timeout = \"ten seconds\"",
                "shop.toml:11:16: slices[0].stop_timeout: expected a duration such as '500ms', '5s', '1m30s' or '1h' (units ms, s, m, h, d; no spaces), found 'ten seconds'",
            ),
            (
                "http = \"/\"",
                "http = \"/\"\ninterval = \"2 sec\"",
                "shop.toml:15:12: slices[0].health.interval: expected a duration such as '500ms', '5s', '1m30s' or '1h' (units ms, s, m, h, d; no spaces), found '2 sec'",
            ),
            (
                "memory = \"256MiB\"",
                "memory = \"256 parsecs\"",
                "slices[0].resources.memory: expected a size such as '256MiB', '1GiB' or '512KiB', found '256 parsecs'",
            ),
            (
                "cpu = 0.5",
                "cpu = 0",
                "slices[0].resources.cpu: expected cores above 0 and at most 1024, found 0",
            ),
            (
                "gpu = 0",
                "gpu = -2",
                "slices[0].resources.gpu: expected a whole number from 0 to 64, found -2",
            ),
            (
                "http = \"/\"",
                "http = \"/\"\ntcp = true",
                "slices[0].health: expected exactly one of http, tcp or exec, found 2",
            ),
            (
                "http = \"/\"",
                "http = \"health\"",
                "shop.toml:14:8: slices[0].health.http: expected a path starting with '/', found 'health'",
            ),
            (
                "GREETING = \"hi\"",
                "PORT = \"80\"",
                "slices[0].env.PORT: 'PORT' is set by the supervisor",
            ),
            (
                "GREETING = \"hi\"",
                "CUDA_VISIBLE_DEVICES = \"0\"",
                "slices[0].env.CUDA_VISIBLE_DEVICES: 'CUDA_VISIBLE_DEVICES' is set by the supervisor (PORT, AETHER_*, and CUDA_VISIBLE_DEVICES, CUDA_DEVICE_ORDER, NVIDIA_VISIBLE_DEVICES from resources.gpu)",
            ),
            (
                "target_cpu = 0.6",
                "target_cpu = 1.5",
                "slices[0].scaling.target_cpu: expected a fraction above 0 and at most 1, found 1.5",
            ),
            (
                "target_cpu = 0.6",
                "target_cpu = 0.6\ntarget_calls_per_instance = 0",
                "shop.toml:18:29: slices[0].scaling.target_calls_per_instance: expected calls per second above 0 and at most 1000000, found 0",
            ),
            (
                "target_cpu = 0.6",
                "target_cpu = 0.6\ntarget_calls_per_instance = -2.5",
                "slices[0].scaling.target_calls_per_instance: expected calls per second above 0",
            ),
            (
                "target_cpu = 0.6",
                "target_cpu = 0.6\ntarget_calls_per_instance = \"many\"",
                "slices[0].scaling.target_calls_per_instance: invalid type: string \"many\", expected a number, e.g. 0.5",
            ),
            (
                "target_cpu = 0.6",
                "target_cpu = 0.6\nmagic = true",
                "slices[0].scaling.magic: unknown field `magic`",
            ),
        ];
        for (from, to, want) in cases {
            let got = refused(from, to);
            assert!(got.contains(want), "for '{to}':\n got: {got}\nwant: {want}");
        }
        assert!(cases.len() >= 15);
    }

    const UPDATE: &str = r#"
[slices.service]
port = 8080

[slices.update]
strategy = "canary"
max_parallel = 2
min_healthy_time = "5s"
canary = 1
canary_traffic = "10%"
analysis = { interval = "30s", min_requests = 100, max_error_rate = "1%", max_p99 = "300ms" }
"#;

    #[test]
    fn update_policies_parse_with_defaults_and_bad_ones_are_refused_with_their_location() {
        use crate::domain::{Strategy, UpdatePolicy};
        let b = parse("shop.toml", &format!("{GOOD}{UPDATE}")).unwrap();
        let u = b.slices[0].update.clone().unwrap();
        assert_eq!(u.strategy, Strategy::Canary);
        assert_eq!(
            (u.max_parallel, u.min_healthy_ms, u.canary_traffic_pct),
            (2, 5_000, 10)
        );
        let a = u.analysis.unwrap();
        assert_eq!(
            (a.interval_ms, a.min_requests, a.max_p99_ms),
            (30_000, 100, Some(300))
        );
        assert!((a.max_error_rate - 0.01).abs() < 1e-9);
        assert_eq!(
            u.progress_deadline_ms,
            UpdatePolicy::default().progress_deadline_ms
        );
        assert!(u.auto_revert, "auto_revert is on unless turned off");
        let plain = parse("shop.toml", GOOD).unwrap();
        assert_eq!(plain.slices[0].update_policy(), UpdatePolicy::default());
        let zero = parse(
            "shop.toml",
            &format!("{GOOD}{UPDATE}").replace("\"5s\"", "\"0s\""),
        )
        .unwrap();
        assert_eq!(zero.slices[0].update.as_ref().unwrap().min_healthy_ms, 0);

        let bad = |from: &str, to: &str| {
            let text = format!("{GOOD}{UPDATE}");
            assert!(text.contains(from), "{from}");
            parse("shop.toml", &text.replacen(from, to, 1))
                .expect_err(&format!("'{to}' must be refused"))
                .to_string()
        };
        let cases = [
            (
                "strategy = \"canary\"",
                "strategy = \"big-bang\"",
                "shop.toml:24:12: slices[0].update.strategy: unknown strategy 'big-bang': expected rolling, canary or blue-green",
            ),
            (
                "canary_traffic = \"10%\"",
                "canary_traffic = \"110%\"",
                "shop.toml:28:18: slices[0].update.canary_traffic: expected a percentage from 0% to 100%, e.g. \"10%\", found '110%'",
            ),
            (
                "max_parallel = 2",
                "max_parallel = 0",
                "shop.toml:25:16: slices[0].update.max_parallel: expected a whole number from 1 to 1000, found 0",
            ),
            (
                "[slices.service]\nport = 8080\n",
                "",
                "slices[0].update.analysis: an analysis reads the ingress's numbers, and this slice has no [slices.service]",
            ),
            (
                "strategy = \"canary\"",
                "strategy = \"rolling\"",
                "slices[0].update.analysis: an analysis judges canaries, and the strategy is 'rolling'",
            ),
            (
                "max_error_rate = \"1%\"",
                "max_error_rate = \"1\"",
                "slices[0].update.analysis.max_error_rate: expected a percentage",
            ),
            (
                "canary = 1",
                "canary = 9",
                "slices[0].update.canary: expected a whole number from 1 to 8, found 9",
            ),
            (
                "canary = 1",
                "canaries = 1",
                "slices[0].update.canaries: unknown field `canaries`",
            ),
        ];
        for (from, to, want) in cases {
            let got = bad(from, to);
            assert!(got.contains(want), "for '{to}':\n got: {got}\nwant: {want}");
        }
    }

    #[test]
    fn whole_file_mistakes_are_refused() {
        let dup =
            format!("{GOOD}\n[[slices]]\nname = \"web\"\ncommand = [\"true\"]\ninstances = 1\n");
        let e = parse("shop.toml", &dup).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "shop.toml:21:8: slices[1].name: slice 'web' is declared twice (also slices[0])"
            ),
            "{e}"
        );
        let e = parse("x.toml", "name = \"x\"\n").unwrap_err().to_string();
        assert!(
            e.contains("slices: expected at least one [[slices]] table"),
            "{e}"
        );
        let e = parse("x.toml", "name = \"x\"\n[[slices]\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("x.toml:2:"), "broken TOML is located: {e}");
        let e = parse(
            "x.toml",
            "[[slices]]\nname = \"a\"\ncommand = [\"true\"]\ninstances = 1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("missing field `name`"), "{e}");
    }

    #[test]
    fn field_paths_come_from_the_document_not_the_header_text() {
        // The shipped example: headers carry trailing comments, keys are quoted or spaced.
        let shop = include_str!("../../config/blueprints/shop.toml");
        let typo = shop.replacen("http = \"/\"", "htp = \"/\"", 1);
        let e = parse("shop-typo.toml", &typo).unwrap_err();
        assert_eq!(e.path, "slices[0].health.htp", "{e}");
        assert!(e.message.starts_with("unknown field `htp`"), "{e}");
        let e = parse(
            "x.toml",
            "name = \"x\"\n[[slices]]   # first\nname = \"a\"\ncommand = [\"true\"]\ninstances = 1\n\
             [[ slices ]] # second\nname = \"b\"\ncommand = [\"true\"]\n\"instances\" = \"eight\"\n\
             [ slices.resources ]  # [comment] with brackets\n cpu = \"lots\"\n",
        )
        .unwrap_err();
        assert_eq!(e.path, "slices[1].instances", "{e}");
        assert_eq!((e.line, e.column), (9, 15), "{e}");
        let e = parse(
            "x.toml",
            "name = \"x\"\n[[slices]]\nname = \"a\"\ncommand = [\"true\"]\ninstances = 1\n\
             [slices.resources]   # what it needs\ncpu = \"lots\"\n",
        )
        .unwrap_err();
        assert_eq!(e.path, "slices[0].resources.cpu", "{e}");
        assert!(e.message.contains("expected a number"), "{e}");
    }

    #[test]
    fn the_example_blueprints_are_valid() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/blueprints");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                if let Err(e) = parse(&path.display().to_string(), &text) {
                    panic!("{e}");
                }
                n += 1;
            }
        }
        assert!(n >= 2, "examples in {}", dir.display());
    }

    #[test]
    fn sizes_and_defaults() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("1.5MiB"), Ok(3 << 19));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0MiB").is_err());
        assert!(parse_size("lots").is_err());
        let b = parse(
            "t.toml",
            "name = \"t\"\n[[slices]]\nname = \"w\"\ncommand = [\"sleep\", \"60\"]\ninstances = 2\n",
        )
        .unwrap();
        let s = &b.slices[0];
        assert_eq!((s.min, s.max), (0, 2));
        assert_eq!(s.resources.cpu, 0.1);
        assert!(s.health.is_none() && s.scaling.is_none());
    }

    const BATCH: &str = "name = \"batch\"\n[[slices]]\nname = \"train\"\ncommand = [\"sleep\", \"60\"]\ninstances = 1\n";

    #[test]
    fn flexible_slices_are_parsed_beside_the_blueprint() {
        let (b, f) = parse_with_flexible(
            "b.toml",
            &format!("{BATCH}[slices.flexible]\nwithin = \"40s\"\nrun = \"10s\"\n"),
        )
        .unwrap();
        assert_eq!(b.slices[0].instances, 1);
        assert_eq!(
            f,
            vec![(
                "train".to_string(),
                FlexiblePolicy {
                    deadline: FlexDeadline::Within(40_000),
                    run_ms: 10_000
                }
            )]
        );
        let (_, f) = parse_with_flexible(
            "b.toml",
            &format!("{BATCH}[slices.flexible]\ndeadline = \"2026-12-05T07:00:00+01:00\"\n"),
        )
        .unwrap();
        assert_eq!(f[0].1.deadline, FlexDeadline::At(1_796_450_400_000));
        assert!(parse_with_flexible("b.toml", BATCH).unwrap().1.is_empty());
    }

    #[test]
    fn a_bad_flexible_table_is_located() {
        let e = parse(
            "b.toml",
            &format!("{BATCH}[slices.flexible]\nrun = \"1m\"\n"),
        )
        .unwrap_err();
        assert_eq!(e.path, "slices[0].flexible");
        assert!(e.message.contains("within = \"6h\""), "{e}");
        let e = parse(
            "b.toml",
            &format!("{BATCH}[slices.flexible]\ndeadline = \"soon\"\n"),
        )
        .unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.line),
            ("slices[0].flexible.deadline", 7)
        );
        let e = parse(
            "b.toml",
            &format!("{BATCH}[slices.flexible]\nwithin = \"1m\"\nrun = \"2m\"\n"),
        )
        .unwrap_err();
        assert!(e.message.contains("could never wait"), "{e}");
        let e = parse(
            "b.toml",
            &format!("{BATCH}min = 1\n[slices.flexible]\nwithin = \"1h\"\n"),
        )
        .unwrap_err();
        assert!(e.message.contains("set min = 0"), "{e}");
        let e = parse(
            "b.toml",
            &format!("{BATCH}[slices.flexible]\nwithin = \"1h\"\ncolour = 1\n"),
        )
        .unwrap_err();
        assert!(e.message.contains("colour"), "{e}");
    }
}
