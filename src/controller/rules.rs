//! The rule file (`config/rules.toml`; the defaults are embedded from `assets/rules.toml`): an
//! ordered decision list. Each rule has a scope (`slice` or `node`), conditions that must all
//! hold for their whole `for` duration, an action and a priority; for each target the matching
//! rule with the highest priority wins. Pure: parsing and evaluation, no I/O.
//!
//! ```toml
//! [settings]
//! target_cpu = 0.6          # slices without [slices.scaling] target_cpu
//! target_calls_per_instance = 100   # slices without [slices.scaling] target_calls_per_instance
//! tolerance = 0.1           # "above target" means above target × 1.1
//! stabilization = "3m"      # scale-in uses the highest recommendation of this window
//! up_cooldown = "30s"
//! down_cooldown = "3m"
//! predictive = true
//!
//! [[rules]]
//! name = "cpu-high"
//! scope = "slice"
//! priority = 100
//! when = [{ metric = "cpu_per_instance", above = "target", for = "30s" }]
//! action = "scale_up"
//! step = "proportional"     # or a whole number of instances, or "100%" of them
//!
//! [[rules]]
//! name = "errors-high"
//! scope = "slice"
//! priority = 60
//! when = [{ metric = "error_rate", above = 0.05, for = "10s" }]
//! action = "hold"           # no scale-in while it matches
//! ```
//!
//! Errors name the file, line, column and field, like blueprint errors.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use toml::Spanned;

use crate::config::parse_duration;
use crate::deploy::blueprint::{FileError, Number, Source, Whole};

/// The rules built into the binary (`assets/rules.toml`).
pub const DEFAULT_RULES: &str = include_str!("../../assets/rules.toml");

/// What a rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Slice,
    Node,
}

/// A measured value a condition reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// Slice: cores used per active instance ÷ cores reserved per instance (0–1, may exceed 1).
    CpuPerInstance,
    /// Slice: cores used by all its instances.
    SliceCpu,
    /// Slice: calls per second through the ingress, over the cluster (absent without traffic
    /// figures for the slice).
    CallsPerSec,
    /// Slice: calls per second ÷ active instances (absent without traffic figures or active
    /// instances).
    CallsPerInstance,
    /// Slice: the 95th percentile of call latency at the ingress, ms (absent without calls).
    LatencyMs,
    /// Slice: errors ÷ calls at the ingress, 0–1 (5xx, connect failures, timeouts; absent
    /// without calls).
    ErrorRate,
    /// Slice: instances not active.
    Unhealthy,
    /// Node: CPU 0–1.
    NodeCpu,
    /// Node: memory used 0–1.
    NodeMem,
    /// Node: highest GPU utilisation 0–1 (absent without GPUs).
    GpuUtil,
    /// Node: highest GPU temperature, °C (absent without GPUs).
    GpuTemp,
    /// Node: number of anomaly flags.
    Anomalies,
    /// Node: GPU-health findings that predict trouble — temperature trend toward the slowdown
    /// threshold, new XID or uncorrected ECC errors, thermal slowdown (absent without GPUs).
    GpuHealth,
    /// Node: new XID and uncorrected ECC errors (absent without GPUs).
    GpuErrors,
    /// Node: GPUs held at their power limit, sustained (absent without GPUs).
    GpuPowerCapped,
    /// Node: lowest headroom of a GPU to its slowdown threshold, °C (absent without GPUs or a
    /// known threshold).
    GpuTempMargin,
}

impl Metric {
    pub(super) const SLICE: [(&'static str, Metric); 7] = [
        ("cpu_per_instance", Metric::CpuPerInstance),
        ("cpu", Metric::SliceCpu),
        ("calls_per_s", Metric::CallsPerSec),
        ("calls_per_instance", Metric::CallsPerInstance),
        ("latency_ms", Metric::LatencyMs),
        ("error_rate", Metric::ErrorRate),
        ("unhealthy", Metric::Unhealthy),
    ];
    pub(super) const NODE: [(&'static str, Metric); 9] = [
        ("cpu", Metric::NodeCpu),
        ("mem", Metric::NodeMem),
        ("gpu_util", Metric::GpuUtil),
        ("gpu_temp", Metric::GpuTemp),
        ("anomalies", Metric::Anomalies),
        ("gpu_health", Metric::GpuHealth),
        ("gpu_errors", Metric::GpuErrors),
        ("gpu_power_capped", Metric::GpuPowerCapped),
        ("gpu_temp_margin", Metric::GpuTempMargin),
    ];

    /// The name in rule files.
    pub fn name(self) -> &'static str {
        Self::SLICE
            .iter()
            .chain(Self::NODE.iter())
            .find(|(_, m)| *m == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }

    fn parse(scope: Scope, s: &str) -> Result<Metric, String> {
        let table: &[(&str, Metric)] = match scope {
            Scope::Slice => &Self::SLICE,
            Scope::Node => &Self::NODE,
        };
        table
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, m)| *m)
            .ok_or_else(|| {
                let names: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
                format!(
                    "unknown {} metric '{s}': expected one of {}",
                    match scope {
                        Scope::Slice => "slice",
                        Scope::Node => "node",
                    },
                    names.join(", ")
                )
            })
    }

    /// Whether it is one of the GPU-health metrics (their findings explain a decision).
    pub fn is_gpu_health(self) -> bool {
        matches!(
            self,
            Metric::GpuHealth | Metric::GpuErrors | Metric::GpuPowerCapped | Metric::GpuTempMargin
        )
    }

    /// Whether `target` means something for this metric (the slice's target CPU, calls per
    /// instance or latency).
    pub fn has_target(self) -> bool {
        matches!(
            self,
            Metric::CpuPerInstance | Metric::CallsPerInstance | Metric::LatencyMs
        )
    }

    /// How reasoning names it: `cpu per instance`, `calls/s per instance`, `latency p95`.
    pub fn label(self) -> &'static str {
        match self {
            Metric::CallsPerSec => "calls/s",
            Metric::CallsPerInstance => "calls/s per instance",
            Metric::LatencyMs => "latency p95",
            Metric::ErrorRate => "error rate",
            Metric::SliceCpu => "cpu",
            Metric::CpuPerInstance => "cpu per instance",
            Metric::Unhealthy => "unhealthy",
            Metric::NodeCpu => "cpu",
            Metric::NodeMem => "mem",
            Metric::GpuUtil => "gpu util",
            Metric::GpuTemp => "gpu temp",
            Metric::Anomalies => "anomalies",
            Metric::GpuHealth => "gpu health findings",
            Metric::GpuErrors => "gpu errors",
            Metric::GpuPowerCapped => "gpus power-capped",
            Metric::GpuTempMargin => "gpu °C below slowdown",
        }
    }

    /// A value of this metric as reasoning writes it: `412 ms`, `4.2%`, `0.85`.
    pub fn show(self, v: f64) -> String {
        match self {
            Metric::LatencyMs => format!("{v:.0} ms"),
            Metric::ErrorRate => format!("{:.1}%", v * 100.0),
            _ => format!("{v:.2}"),
        }
    }
}

/// A threshold: a number, or the target (with the tolerance band).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    Value(f64),
    Target,
}

/// Above or below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Above,
    Below,
}

/// One condition: `metric` above/below `threshold` for `for_secs` seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub metric: Metric,
    pub cmp: Cmp,
    pub threshold: Threshold,
    pub for_secs: u64,
}

impl Condition {
    /// The number `value` is compared with, given the target and tolerance; `None` when the
    /// threshold is the target and there is none.
    pub fn limit(&self, target: Option<f64>, tolerance: f64) -> Option<f64> {
        match (self.threshold, self.cmp) {
            (Threshold::Value(v), _) => Some(v),
            (Threshold::Target, Cmp::Above) => target.map(|t| t * (1.0 + tolerance)),
            (Threshold::Target, Cmp::Below) => target.map(|t| t * (1.0 - tolerance)),
        }
    }

    /// Whether `value` meets the condition against `limit`.
    pub fn holds(&self, value: f64, limit: f64) -> bool {
        match self.cmp {
            Cmp::Above => value > limit,
            Cmp::Below => value < limit,
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cmp = match self.cmp {
            Cmp::Above => ">",
            Cmp::Below => "<",
        };
        match self.threshold {
            Threshold::Value(v) => write!(f, "{} {cmp} {v}", self.metric.name())?,
            Threshold::Target => write!(f, "{} {cmp} target", self.metric.name())?,
        }
        write!(f, " for {}s", self.for_secs)
    }
}

/// What a rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    ScaleUp,
    ScaleDown,
    /// Slice: while it matches, no scale-in (lower-priority rules are not tried); scale-ups of
    /// higher-priority rules and of the forecast still go ahead.
    Hold,
    Drain,
    Undrain,
}

/// How many instances a scale action adds or removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// To the count that brings the first condition's metric to its target (the HPA formula,
    /// `ceil(instances × value / target)`).
    Proportional,
    By(u32),
    /// This percentage of the current count, at least one instance (`"100%"` doubles).
    Percent(u32),
}

/// One rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub scope: Scope,
    pub priority: i64,
    pub when: Vec<Condition>,
    pub action: RuleAction,
    pub step: Step,
}

/// Tuning shared by every rule; a slice's `[slices.scaling]` overrides the target and cooldowns.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub target_cpu: f64,
    /// Calls per second per active instance, for slices that do not set
    /// `[slices.scaling] target_calls_per_instance`.
    pub target_calls_per_instance: f64,
    pub tolerance: f64,
    pub stabilization_secs: u64,
    pub up_cooldown_secs: u64,
    pub down_cooldown_secs: u64,
    pub predictive: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            target_cpu: 0.6,
            target_calls_per_instance: 100.0,
            tolerance: 0.1,
            stabilization_secs: 180,
            up_cooldown_secs: 30,
            down_cooldown_secs: 180,
            predictive: true,
        }
    }
}

/// A parsed rule file: settings, and the rules by descending priority (file order on ties).
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub settings: Settings,
    pub rules: Vec<Rule>,
}

impl Rules {
    /// The longest history any rule needs, in seconds.
    pub fn history_secs(&self) -> u64 {
        self.rules
            .iter()
            .flat_map(|r| r.when.iter().map(|c| c.for_secs))
            .chain([self.settings.stabilization_secs])
            .max()
            .unwrap_or(0)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    settings: Option<RawSettings>,
    #[serde(default)]
    rules: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    target_cpu: Option<Spanned<Number>>,
    target_calls_per_instance: Option<Spanned<Number>>,
    tolerance: Option<Spanned<Number>>,
    stabilization: Option<Spanned<String>>,
    up_cooldown: Option<Spanned<String>>,
    down_cooldown: Option<Spanned<String>>,
    predictive: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    scope: Spanned<String>,
    #[serde(default)]
    priority: Whole,
    when: Spanned<Vec<Spanned<RawCondition>>>,
    action: Spanned<String>,
    step: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCondition {
    metric: Spanned<String>,
    above: Option<Spanned<toml::Value>>,
    below: Option<Spanned<toml::Value>>,
    #[serde(rename = "for")]
    for_: Option<Spanned<String>>,
}

const MAX_WINDOW_SECS: u64 = 3600;

fn secs(src: &Source, v: &Spanned<String>, path: &str, zero_ok: bool) -> Result<u64, FileError> {
    let d = parse_duration(v.get_ref()).map_err(|m| src.err(v.span(), path, m))?;
    let s = d.as_secs();
    if (!zero_ok && s == 0) || s > MAX_WINDOW_SECS {
        return Err(src.err(
            v.span(),
            path,
            format!(
                "expected a duration of {} to 1h, found '{}'",
                if zero_ok { "0s" } else { "1s" },
                v.get_ref()
            ),
        ));
    }
    Ok(s)
}

fn fraction(src: &Source, v: &Spanned<Number>, path: &str, max: f64) -> Result<f64, FileError> {
    let x = v.get_ref().0;
    if !(x > 0.0 && x <= max) {
        return Err(src.err(
            v.span(),
            path,
            format!("expected a number above 0 and at most {max}, found {x}"),
        ));
    }
    Ok(x)
}

fn condition(
    src: &Source,
    scope: Scope,
    raw: &Spanned<RawCondition>,
    path: &str,
) -> Result<Condition, FileError> {
    let c = raw.get_ref();
    let metric = Metric::parse(scope, c.metric.get_ref())
        .map_err(|m| src.err(c.metric.span(), format!("{path}.metric"), m))?;
    let (cmp, v, key) = match (&c.above, &c.below) {
        (Some(v), None) => (Cmp::Above, v, "above"),
        (None, Some(v)) => (Cmp::Below, v, "below"),
        _ => {
            return Err(src.err(
                raw.span(),
                path,
                "expected exactly one of 'above' or 'below' (a number, or \"target\")",
            ));
        }
    };
    let threshold = match v.get_ref() {
        toml::Value::Integer(i) => Threshold::Value(*i as f64),
        toml::Value::Float(f) if f.is_finite() => Threshold::Value(*f),
        toml::Value::String(s) if s == "target" && metric.has_target() => Threshold::Target,
        toml::Value::String(s) if s == "target" => {
            return Err(src.err(
                v.span(),
                format!("{path}.{key}"),
                format!(
                    "'{}' has no target: use a number (only cpu_per_instance, calls_per_instance and latency_ms compare with \"target\")",
                    metric.name()
                ),
            ));
        }
        other => {
            return Err(src.err(
                v.span(),
                format!("{path}.{key}"),
                format!("expected a number or \"target\", found {other}"),
            ));
        }
    };
    let for_secs = match &c.for_ {
        Some(f) => secs(src, f, &format!("{path}.for"), true)?,
        None => 0,
    };
    Ok(Condition {
        metric,
        cmp,
        threshold,
        for_secs,
    })
}

fn rule(src: &Source, raw: &Spanned<RawRule>, i: usize) -> Result<Rule, FileError> {
    let r = raw.get_ref();
    let p = |f: &str| format!("rules[{i}].{f}");
    crate::domain::validate_name("rule name", r.name.get_ref())
        .map_err(|m| src.err(r.name.span(), p("name"), m))?;
    let scope = match r.scope.get_ref().as_str() {
        "slice" => Scope::Slice,
        "node" => Scope::Node,
        other => {
            return Err(src.err(
                r.scope.span(),
                p("scope"),
                format!("expected \"slice\" or \"node\", found '{other}'"),
            ));
        }
    };
    let action = match (r.action.get_ref().as_str(), scope) {
        ("scale_up", Scope::Slice) => RuleAction::ScaleUp,
        ("scale_down", Scope::Slice) => RuleAction::ScaleDown,
        ("hold", Scope::Slice) => RuleAction::Hold,
        ("drain", Scope::Node) => RuleAction::Drain,
        ("undrain", Scope::Node) => RuleAction::Undrain,
        (other, Scope::Slice) => {
            return Err(src.err(
                r.action.span(),
                p("action"),
                format!("a slice rule's action is \"scale_up\", \"scale_down\" or \"hold\", found '{other}'"),
            ));
        }
        (other, Scope::Node) => {
            return Err(src.err(
                r.action.span(),
                p("action"),
                format!("a node rule's action is \"drain\" or \"undrain\", found '{other}'"),
            ));
        }
    };
    if r.when.get_ref().is_empty() {
        return Err(src.err(
            r.when.span(),
            p("when"),
            "expected at least one condition, e.g. [{ metric = \"cpu_per_instance\", above = \"target\", for = \"30s\" }]",
        ));
    }
    let when = r
        .when
        .get_ref()
        .iter()
        .enumerate()
        .map(|(j, c)| condition(src, scope, c, &p(&format!("when[{j}]"))))
        .collect::<Result<Vec<_>, _>>()?;
    let step = match (&r.step, scope) {
        (None, _) if action == RuleAction::Hold => Step::By(0),
        (Some(s), _) if action == RuleAction::Hold => {
            return Err(src.err(
                s.span(),
                p("step"),
                "a hold rule changes no count: remove 'step'",
            ));
        }
        (None, Scope::Slice) => Step::Proportional,
        (None, Scope::Node) => Step::By(1),
        (Some(s), Scope::Node) => {
            return Err(src.err(
                s.span(),
                p("step"),
                "a node rule acts on one node: remove 'step'",
            ));
        }
        (Some(s), Scope::Slice) => match s.get_ref() {
            toml::Value::String(v) if v == "proportional" => {
                if !when[0].metric.has_target() || when[0].threshold != Threshold::Target {
                    return Err(src.err(
                        s.span(),
                        p("step"),
                        "\"proportional\" scales by the first condition's distance from its target: make when[0] compare cpu_per_instance, calls_per_instance or latency_ms with \"target\", or give a whole number",
                    ));
                }
                Step::Proportional
            }
            toml::Value::Integer(n) if (1..=1000).contains(n) => Step::By(*n as u32),
            toml::Value::String(v)
                if v.strip_suffix('%')
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_some_and(|n| (1..=1000).contains(&n)) =>
            {
                Step::Percent(v.trim_end_matches('%').parse().expect("checked"))
            }
            other => {
                return Err(src.err(
                        s.span(),
                        p("step"),
                        format!("expected \"proportional\", a whole number from 1 to 1000 or a percentage such as \"100%\", found {other}"),
                    ));
            }
        },
    };
    if step == Step::Proportional
        && scope == Scope::Slice
        && r.step.is_none()
        && (!when[0].metric.has_target() || when[0].threshold != Threshold::Target)
    {
        return Err(src.err(
            raw.span(),
            p("step"),
            "give a step (a whole number): the default, \"proportional\", needs when[0] to compare with \"target\"",
        ));
    }
    Ok(Rule {
        name: r.name.get_ref().clone(),
        scope,
        priority: r.priority.0,
        when,
        action,
        step,
    })
}

/// Parse and validate a rule file; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Rules, FileError> {
    let src = Source { file, text };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        src.err(span.clone(), src.path_at(span.start), e.message().trim())
    })?;
    let mut settings = Settings::default();
    if let Some(s) = &raw.settings {
        if let Some(v) = &s.target_cpu {
            settings.target_cpu = fraction(&src, v, "settings.target_cpu", 1.0)?;
        }
        if let Some(v) = &s.target_calls_per_instance {
            let x = v.get_ref().0;
            if !(x.is_finite() && x > 0.0 && x <= 1_000_000.0) {
                return Err(src.err(
                    v.span(),
                    "settings.target_calls_per_instance",
                    format!("expected calls per second above 0 and at most 1000000, found {x}"),
                ));
            }
            settings.target_calls_per_instance = x;
        }
        if let Some(v) = &s.tolerance {
            settings.tolerance = fraction(&src, v, "settings.tolerance", 0.5)?;
        }
        if let Some(v) = &s.stabilization {
            settings.stabilization_secs = secs(&src, v, "settings.stabilization", true)?;
        }
        if let Some(v) = &s.up_cooldown {
            settings.up_cooldown_secs = secs(&src, v, "settings.up_cooldown", true)?;
        }
        if let Some(v) = &s.down_cooldown {
            settings.down_cooldown_secs = secs(&src, v, "settings.down_cooldown", true)?;
        }
        if let Some(v) = s.predictive {
            settings.predictive = v;
        }
    }
    let mut rules: Vec<Rule> = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, r) in raw.rules.iter().enumerate() {
        let parsed = rule(&src, r, i)?;
        if let Some(j) = seen.insert(parsed.name.clone(), i) {
            return Err(src.err(
                r.get_ref().name.span(),
                format!("rules[{i}].name"),
                format!(
                    "rule '{}' is declared twice (also rules[{j}]): rule names are unique",
                    parsed.name
                ),
            ));
        }
        rules.push(parsed);
    }
    // Stable: equal priorities keep file order.
    rules.sort_by_key(|r| std::cmp::Reverse(r.priority));
    Ok(Rules { settings, rules })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_and_shipped_rules_parse() {
        let r = parse("assets/rules.toml", DEFAULT_RULES).unwrap();
        assert!(r.rules.iter().any(|r| r.action == RuleAction::ScaleUp));
        assert!(r.rules.iter().any(|r| r.action == RuleAction::ScaleDown));
        assert!(
            r.rules.windows(2).all(|w| w[0].priority >= w[1].priority),
            "rules are ordered by priority"
        );
        let shipped = include_str!("../../config/rules.toml");
        assert_eq!(
            parse("config/rules.toml", shipped).unwrap(),
            r,
            "config/rules.toml documents the embedded defaults: keep them the same rules"
        );
    }

    #[test]
    fn bad_rule_files_get_located_errors() {
        let ok = "[[rules]]\nname = \"up\"\nscope = \"slice\"\nwhen = [{ metric = \"cpu_per_instance\", above = \"target\", for = \"30s\" }]\naction = \"scale_up\"\n";
        assert!(parse("r.toml", ok).is_ok());
        let cases: &[(&str, &str, usize, &str, &str)] = &[
            (
                "unknown metric",
                "[[rules]]\nname = \"up\"\nscope = \"slice\"\nwhen = [{ metric = \"cpu_per_instanse\", above = 0.5 }]\naction = \"scale_up\"\nstep = 1\n",
                4,
                "rules[0].when[0].metric",
                "unknown slice metric 'cpu_per_instanse'",
            ),
            (
                "bad duration",
                "[[rules]]\nname = \"up\"\nscope = \"slice\"\nwhen = [{ metric = \"cpu\", above = 2, for = \"30 parsecs\" }]\naction = \"scale_up\"\nstep = 1\n",
                4,
                "rules[0].when[0].for",
                "30 parsecs",
            ),
            (
                "node action on a slice",
                "[[rules]]\nname = \"up\"\nscope = \"slice\"\nwhen = [{ metric = \"cpu\", above = 2 }]\naction = \"drain\"\nstep = 1\n",
                5,
                "rules[0].action",
                "a slice rule's action is \"scale_up\", \"scale_down\" or \"hold\"",
            ),
            (
                "a hold with a step",
                "[[rules]]\nname = \"e\"\nscope = \"slice\"\nwhen = [{ metric = \"error_rate\", above = 0.05 }]\naction = \"hold\"\nstep = 1\n",
                6,
                "rules[0].step",
                "a hold rule changes no count: remove 'step'",
            ),
            (
                "an error rate has no target",
                "[[rules]]\nname = \"e\"\nscope = \"slice\"\nwhen = [{ metric = \"error_rate\", above = \"target\" }]\naction = \"hold\"\n",
                4,
                "rules[0].when[0].above",
                "'error_rate' has no target",
            ),
            (
                "bad calls target",
                "[settings]\ntarget_calls_per_instance = 0\n",
                2,
                "settings.target_calls_per_instance",
                "expected calls per second above 0 and at most 1000000, found 0",
            ),
            (
                "unknown field",
                "[settings]\ntolerence = 0.1\n",
                2,
                "settings.tolerence",
                "unknown field `tolerence`",
            ),
            (
                "target without one",
                "[[rules]]\nname = \"hot\"\nscope = \"node\"\nwhen = [{ metric = \"gpu_temp\", above = \"target\" }]\naction = \"drain\"\n",
                4,
                "rules[0].when[0].above",
                "'gpu_temp' has no target",
            ),
            (
                "both above and below",
                "[[rules]]\nname = \"x\"\nscope = \"slice\"\nwhen = [{ metric = \"cpu\", above = 1, below = 2 }]\naction = \"scale_up\"\nstep = 1\n",
                4,
                "rules[0].when[0]",
                "exactly one of 'above' or 'below'",
            ),
            (
                "duplicate name",
                "[[rules]]\nname = \"x\"\nscope = \"node\"\nwhen = [{ metric = \"cpu\", above = 0.9 }]\naction = \"drain\"\n[[rules]]\nname = \"x\"\nscope = \"node\"\nwhen = [{ metric = \"cpu\", below = 0.1 }]\naction = \"undrain\"\n",
                7,
                "rules[1].name",
                "declared twice",
            ),
            (
                "bad tolerance",
                "[settings]\ntolerance = 2.0\n",
                2,
                "settings.tolerance",
                "at most 0.5, found 2",
            ),
            (
                "a word for a number",
                "[settings]   # comment\ntolerance = \"a little\"\n",
                2,
                "settings.tolerance",
                "expected a number, e.g. 0.5",
            ),
            (
                "a word for a priority",
                "[[rules]]  # the first\nname = \"x\"\nscope = \"node\"\npriority = \"high\"\nwhen = [{ metric = \"cpu\", above = 0.9 }]\naction = \"drain\"\n",
                4,
                "rules[0].priority",
                "expected a whole number, e.g. 8",
            ),
        ];
        for (what, text, line, path, msg) in cases {
            let e = parse("r.toml", text).expect_err(what);
            assert_eq!(e.file, "r.toml", "{what}");
            assert_eq!(e.line, *line, "{what}: {e}");
            assert_eq!(e.path, *path, "{what}: {e}");
            assert!(e.message.contains(msg), "{what}: {e}");
        }
    }

    #[test]
    fn request_metrics_parse_with_their_targets_and_a_hold() {
        let text = "[settings]\ntarget_calls_per_instance = 40\n[[rules]]\nname = \"calls-high\"\nscope = \"slice\"\nwhen = [{ metric = \"calls_per_instance\", above = \"target\", for = \"15s\" }]\naction = \"scale_up\"\n[[rules]]\nname = \"errors-high\"\nscope = \"slice\"\nwhen = [{ metric = \"error_rate\", above = 0.05 }]\naction = \"hold\"\n";
        let r = parse("r.toml", text).unwrap();
        assert_eq!(r.settings.target_calls_per_instance, 40.0);
        assert_eq!(
            (r.rules[0].when[0].metric, r.rules[0].step),
            (Metric::CallsPerInstance, Step::Proportional)
        );
        assert_eq!(
            (r.rules[1].when[0].metric, r.rules[1].action),
            (Metric::ErrorRate, RuleAction::Hold)
        );
        assert_eq!(Metric::LatencyMs.show(412.4), "412 ms");
        assert_eq!(Metric::ErrorRate.show(0.042), "4.2%");
    }

    #[test]
    fn the_tolerance_band_is_around_the_target() {
        let c = Condition {
            metric: Metric::CpuPerInstance,
            cmp: Cmp::Above,
            threshold: Threshold::Target,
            for_secs: 0,
        };
        let limit = c.limit(Some(0.6), 0.1).unwrap();
        assert!((limit - 0.66).abs() < 1e-9);
        assert!(!c.holds(0.65, limit), "inside the band: no action");
        assert!(c.holds(0.67, limit));
        let below = Condition {
            cmp: Cmp::Below,
            ..c.clone()
        };
        assert!((below.limit(Some(0.6), 0.1).unwrap() - 0.54).abs() < 1e-9);
        assert_eq!(c.limit(None, 0.1), None, "no target, no limit");
    }
}
