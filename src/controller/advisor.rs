//! The strategic layer's pure core (DESIGN §9): the shaped summary of the last hour the leader
//! sends to an OpenAI-compatible endpoint, the request body with the advice schema, the strict
//! validation of the answer, and what an operator's `aether advice take` turns an item into.
//! Advice never writes: the loop that asks lives in [`super::advise`], and a taken item goes
//! through the safety bounds like any proposal ([`super::flow::Controller::propose_advice`]).
//!
//! The schema is written once ([`schema`]): the request carries it as `response_format` and
//! the tests check that [`parse`] accepts what it allows and refuses what it does not.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;
use serde_json::{Value, json};

use super::brain::{Proposal, World};
use crate::domain::{
    Action, AdviceItem, AdviceKind, Decision, DecisionStatus, Millis, NodeState, human_millis,
};
use crate::raft::status::CappedView;

/// Longest reason of one item, in characters.
pub const REASON_MAX: usize = 240;
/// Longest `when` of a prescale, in characters.
pub const WHEN_MAX: usize = 40;
/// Longest target, in characters.
pub const TARGET_MAX: usize = 120;
/// Largest instance count or max an item may name.
pub const COUNT_MAX: u32 = 1000;
/// Longest summary sent, in bytes: the rest is cut at a line, and the cut said.
pub const SUMMARY_MAX: usize = 12_000;
/// Most slices, nodes and decisions the summary lists one by one.
const SLICES_MAX: usize = 40;
const NODES_MAX: usize = 40;
const DECISIONS_MAX: usize = 30;
/// The summary covers this much history.
pub const HOUR_MS: Millis = 3_600_000;

/// What the model is told about its job; the summary follows as the user's message.
pub const SYSTEM_PROMPT: &str = "You advise the operator of an Aether cluster. You read a \
summary of the last hour (per slice load and traffic trends, the controller's decisions and \
their outcomes, vetoes, slices capped at their max, node anomalies and GPU temperatures) and \
answer with JSON only: {\"items\": [...]}, each item {\"kind\", \"target\", \"count\", \
\"when\", \"reason\"}. kind is one of raise_max, lower_max, prescale, scale, drain, undrain, \
note. target is a slice as blueprint/slice, a node's name for drain and undrain, or empty for \
a note. count is the instance count for scale and prescale, the new max for raise_max and \
lower_max. when says when to prescale. reason is one short sentence with the numbers that \
drive it. Advise only what the numbers support; an empty list is a good answer.";

/// The JSON schema of an answer, with at most `max_items` items.
pub fn schema(max_items: u32) -> Value {
    let kinds: Vec<&str> = AdviceKind::ALL.iter().map(|k| k.word()).collect();
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["items"],
        "properties": {
            "items": {
                "type": "array",
                "maxItems": max_items,
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["kind", "target", "reason"],
                    "properties": {
                        "kind": { "type": "string", "enum": kinds },
                        "target": { "type": "string", "maxLength": TARGET_MAX },
                        "count": { "type": "integer", "minimum": 0, "maximum": COUNT_MAX },
                        "when": { "type": "string", "maxLength": WHEN_MAX },
                        "reason": { "type": "string", "minLength": 1, "maxLength": REASON_MAX }
                    }
                }
            }
        }
    })
}

/// The OpenAI chat/completions request: the model, the prompt and the summary, temperature 0,
/// and the schema as `response_format` in the shape `format` names (vLLM and llama.cpp's
/// servers constrain their output to it).
pub fn request(
    model: &str,
    summary: &str,
    max_items: u32,
    format: crate::config::ResponseFormat,
) -> Value {
    let response_format = match format {
        crate::config::ResponseFormat::JsonSchema => json!({
            "type": "json_schema",
            "json_schema": { "name": "advice", "schema": schema(max_items) }
        }),
        crate::config::ResponseFormat::JsonObject => json!({
            "type": "json_object",
            "schema": schema(max_items)
        }),
    };
    json!({
        "model": model,
        "temperature": 0,
        "max_tokens": 200 + 120 * max_items,
        "messages": [
            { "role": "system", "content": SYSTEM_PROMPT },
            { "role": "user", "content": summary }
        ],
        "response_format": response_format
    })
}

/// How a series moved over the span it covers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trend {
    /// The newest value, the oldest one, and the mean, least and most in between.
    pub now: f64,
    pub first: f64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    /// Seconds from the oldest point to the newest.
    pub span_s: u64,
}

impl Trend {
    /// The trend of `(unix second, value)` points, oldest first; `None` without a finite one.
    pub fn of(points: &[(u64, f64)]) -> Option<Trend> {
        let finite: Vec<(u64, f64)> = points
            .iter()
            .copied()
            .filter(|(_, v)| v.is_finite())
            .collect();
        let (&(t0, first), &(t1, now)) = (finite.first()?, finite.last()?);
        let values = finite.iter().map(|(_, v)| *v);
        Some(Trend {
            now,
            first,
            mean: values.clone().sum::<f64>() / finite.len() as f64,
            min: values.clone().fold(f64::INFINITY, f64::min),
            max: values.fold(f64::NEG_INFINITY, f64::max),
            span_s: t1.saturating_sub(t0),
        })
    }

    /// `now 12.0, over 1h: from 4.0, mean 8.1, 2.0–20.0`.
    fn line(&self, digits: usize) -> String {
        let f = |v: f64| format!("{v:.digits$}");
        format!(
            "now {}, over {}: from {}, mean {}, {}–{}",
            f(self.now),
            human_millis(self.span_s * 1000),
            f(self.first),
            f(self.mean),
            f(self.min),
            f(self.max)
        )
    }
}

/// A slice's history as the summary shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SliceTrends {
    /// The controller's load (`cores` or `calls/s`) and its unit.
    pub load: Option<Trend>,
    pub unit: &'static str,
    /// Calls per second over the cluster (slices with a service).
    pub calls: Option<Trend>,
    /// The forecast's highest value over the horizon, and in how many seconds.
    pub forecast_peak: Option<(f64, u64)>,
}

/// A node's history as the summary shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeTrends {
    pub cpu: Option<Trend>,
    /// The hottest GPU's temperature (°C).
    pub gpu_temp: Option<Trend>,
}

/// What the summary is made of, gathered by the controller on the leader.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub world: World,
    /// The leader's name and the controller's mode.
    pub leader: String,
    pub mode: String,
    /// Decisions, newest first (those of the last hour are listed).
    pub decisions: Vec<Decision>,
    pub capped: Vec<CappedView>,
    /// Per `blueprint/slice`.
    pub slices: BTreeMap<String, SliceTrends>,
    /// Per node name.
    pub nodes: BTreeMap<String, NodeTrends>,
}

/// The shaped summary of the last hour, at most [`SUMMARY_MAX`] bytes: per slice its counts,
/// load and traffic trends, latency, errors and whether it is capped; per node its state,
/// CPU and GPU temperature trends and anomalies; the decisions of the hour with their
/// outcomes and vetoes.
pub fn summary(i: &Inputs) -> String {
    let w = &i.world;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cluster at unix ms {}; leader {}; controller mode {}; {} slices, {} nodes",
        w.now,
        i.leader,
        i.mode,
        w.slices.len(),
        w.nodes.len()
    );
    out.push_str("\nslices (desired/active instances, min-max; trends over the last hour):\n");
    if w.slices.is_empty() {
        out.push_str("- none\n");
    }
    for s in w.slices.iter().take(SLICES_MAX) {
        let target = s.target();
        let _ = write!(
            out,
            "- {target}: {}/{} instances, min {}, max {}",
            s.desired, s.active, s.min, s.max
        );
        let t = i.slices.get(&target).cloned().unwrap_or_default();
        if let Some(l) = &t.load {
            let _ = write!(out, "; load {} {}", t.unit, l.line(2));
        }
        if let Some(c) = &t.calls {
            let _ = write!(out, "; calls/s {}", c.line(1));
        }
        if let Some((v, secs)) = t.forecast_peak {
            let _ = write!(
                out,
                "; forecast peak {v:.2} {} in {}",
                t.unit,
                human_millis(secs * 1000)
            );
        }
        if let Some(p) = s.latency_ms {
            let _ = write!(out, "; p95 {p:.0}ms");
        }
        if let Some(e) = s.error_rate {
            let _ = write!(out, "; errors {:.1}%", e * 100.0);
        }
        if s.waiting > 0 {
            let _ = write!(out, "; {} requests waiting", s.waiting);
        }
        if let Some(c) = i.capped.iter().find(|c| c.target == target) {
            let _ = write!(
                out,
                "; CAPPED at {}={} for {}",
                c.bound,
                c.limit,
                human_millis(w.now.saturating_sub(c.since))
            );
            if let Some(n) = c.wanted {
                let _ = write!(out, " (wanted {n})");
            }
        }
        out.push('\n');
    }
    more(&mut out, w.slices.len(), SLICES_MAX, "slices");
    out.push_str("\nnodes:\n");
    for n in w.nodes.iter().take(NODES_MAX) {
        let _ = write!(
            out,
            "- {}: {}{}, cpu {:.2}, mem {:.2}",
            n.name,
            n.state,
            if n.live { "" } else { " (not live)" },
            n.cpu,
            n.mem
        );
        let t = i.nodes.get(&n.name).cloned().unwrap_or_default();
        if let Some(c) = &t.cpu {
            let _ = write!(out, " (cpu {})", c.line(2));
        }
        if let Some(g) = n.gpu_util {
            let _ = write!(out, ", gpu util {g:.2}");
        }
        match (&t.gpu_temp, n.gpu_temp) {
            (Some(g), _) => {
                let _ = write!(out, ", gpu temp °C {}", g.line(0));
            }
            (None, Some(g)) => {
                let _ = write!(out, ", gpu temp {g:.0}°C");
            }
            _ => {}
        }
        if n.anomalies > 0 {
            let _ = write!(out, ", anomalies now {}", n.anomalies);
        }
        out.push('\n');
    }
    more(&mut out, w.nodes.len(), NODES_MAX, "nodes");
    out.push_str("\ndecisions of the last hour (newest first):\n");
    let hour: Vec<&Decision> = i
        .decisions
        .iter()
        .filter(|d| w.now.saturating_sub(d.at) <= HOUR_MS)
        .collect();
    if hour.is_empty() {
        out.push_str("- none\n");
    }
    for d in hour.iter().take(DECISIONS_MAX) {
        let _ = write!(
            out,
            "- {} {} ago: {} ({}), {}",
            d.name(),
            human_millis(w.now.saturating_sub(d.at)),
            d.action,
            d.rule,
            d.status.word()
        );
        match &d.status {
            DecisionStatus::Vetoed { by, reason, .. } => {
                let _ = write!(out, " by {by}");
                if let Some(r) = reason {
                    let _ = write!(out, ": {}", one_line(r, 120));
                }
            }
            DecisionStatus::Rejected { reason }
            | DecisionStatus::Superseded { reason }
            | DecisionStatus::Expired { reason } => {
                let _ = write!(out, ": {}", one_line(reason, 120));
            }
            DecisionStatus::Failed { error } => {
                let _ = write!(out, ": {}", one_line(error, 120));
            }
            _ => {}
        }
        if let Some(o) = &d.outcome {
            let _ = write!(out, "; outcome {}: {}", o.verdict, one_line(&o.detail, 120));
        }
        out.push('\n');
    }
    more(&mut out, hour.len(), DECISIONS_MAX, "decisions");
    bound(out, SUMMARY_MAX)
}

fn more(out: &mut String, n: usize, max: usize, what: &str) {
    if n > max {
        let _ = writeln!(out, "- … and {} more {what}", n - max);
    }
}

/// `s` on one line, at most `max` characters.
fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        flat
    } else {
        flat.chars().take(max - 1).chain(['…']).collect()
    }
}

/// `text` cut at a line so that it and the note of the cut fit in `max` bytes.
fn bound(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let note_room = 64;
    let mut cut = 0;
    for (i, _) in text.match_indices('\n') {
        if i + 1 > max - note_room {
            break;
        }
        cut = i + 1;
    }
    let dropped = text[cut..].lines().count();
    let mut out = text[..cut].to_string();
    let _ = writeln!(out, "(cut: {dropped} more lines)");
    out
}

/// Why an answer was refused (counted as invalid; the previous advice stands).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdviceError {
    /// The body is not an OpenAI chat completion with a message.
    #[error("the answer is not a chat completion: {0}")]
    NotCompletion(String),
    /// The message holds no JSON (also not inside ``` fences).
    #[error("the advice is not JSON: {0}")]
    NotJson(String),
    /// The JSON does not match the schema (unknown field, wrong type, unknown kind …).
    #[error("the advice does not match the schema: {0}")]
    Schema(String),
    /// An item breaks a rule the schema cannot say (its target is unknown, a count is
    /// missing or out of bounds, the reason is empty or too long).
    #[error("item {index}: {why}")]
    Item { index: usize, why: String },
}

impl AdviceError {
    /// One word for counters and logs: `not_completion`, `not_json`, `schema`, `item`.
    pub fn word(&self) -> &'static str {
        match self {
            AdviceError::NotCompletion(_) => "not_completion",
            AdviceError::NotJson(_) => "not_json",
            AdviceError::Schema(_) => "schema",
            AdviceError::Item { .. } => "item",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    items: Vec<RawItem>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItem {
    kind: AdviceKind,
    target: String,
    #[serde(default)]
    count: Option<u32>,
    #[serde(default)]
    when: Option<String>,
    reason: String,
}

/// The message content of an OpenAI chat completion body.
pub fn content(body: &[u8]) -> Result<String, AdviceError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| AdviceError::NotCompletion(format!("{e}; it begins '{}'", head(body))))?;
    v.pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            AdviceError::NotCompletion("no 'choices[0].message.content' string in it".into())
        })
}

/// The first 60 characters of `body`, on one line.
fn head(body: &[u8]) -> String {
    one_line(&String::from_utf8_lossy(&body[..body.len().min(240)]), 60)
}

/// The JSON in `text`: all of it, or what stands between the first ``` fence line (```json
/// too) and the next.
fn unfenced(text: &str) -> &str {
    let t = text.trim();
    let Some(start) = t.find("```") else {
        return t;
    };
    let after = &t[start + 3..];
    let body = after.split_once('\n').map_or("", |(_, b)| b);
    body.find("```").map_or(body, |end| &body[..end]).trim()
}

/// Validate the model's message against the schema and the world: every item's kind is known,
/// its target exists (a slice as `blueprint/slice`, a node's name for drain and undrain, empty
/// or either for a note), its count is present where the kind needs one and within bounds, its
/// texts are short, non-empty where required and free of control characters. At most
/// `max_items`. Any break refuses the whole answer. Ids are `a-<first_id>` on.
pub fn parse(
    message: &str,
    world: &World,
    max_items: u32,
    first_id: u64,
) -> Result<Vec<AdviceItem>, AdviceError> {
    let json = unfenced(message);
    let v: Value = serde_json::from_str(json)
        .map_err(|e| AdviceError::NotJson(format!("{e}; it begins '{}'", head(json.as_bytes()))))?;
    let a: Answer = serde_json::from_value(v).map_err(|e| AdviceError::Schema(e.to_string()))?;
    if a.items.len() > max_items as usize {
        return Err(AdviceError::Schema(format!(
            "{} items, at most {max_items} allowed",
            a.items.len()
        )));
    }
    a.items
        .into_iter()
        .enumerate()
        .map(|(i, raw)| {
            let item = AdviceItem {
                id: format!("a-{}", first_id + i as u64),
                kind: raw.kind,
                target: raw.target.trim().to_string(),
                count: raw.count,
                when: raw.when.map(|w| w.trim().to_string()),
                reason: raw.reason.trim().to_string(),
            };
            check(&item, world).map_err(|why| AdviceError::Item { index: i, why })?;
            Ok(item)
        })
        .collect()
}

/// The rules of one item the schema does not say.
fn check(item: &AdviceItem, world: &World) -> Result<(), String> {
    let text_ok = |field: &str, s: &str, max: usize| {
        if s.chars().any(char::is_control) {
            return Err(format!("its {field} holds control characters"));
        }
        let n = s.chars().count();
        if n > max {
            return Err(format!("its {field} has {n} characters, at most {max}"));
        }
        Ok(())
    };
    text_ok("target", &item.target, TARGET_MAX)?;
    text_ok("reason", &item.reason, REASON_MAX)?;
    if item.reason.is_empty() {
        return Err("its reason is empty".into());
    }
    if let Some(w) = &item.when {
        text_ok("when", w, WHEN_MAX)?;
    }
    if let Some(c) = item.count
        && c > COUNT_MAX
    {
        return Err(format!("count {c} is above {COUNT_MAX}"));
    }
    let kind = item.kind;
    let slice = || {
        world
            .slices
            .iter()
            .find(|s| s.target() == item.target)
            .ok_or_else(|| format!("{kind}: no slice '{}' in the cluster", item.target))
    };
    let node = || {
        world
            .nodes
            .iter()
            .find(|n| n.name == item.target)
            .ok_or_else(|| format!("{kind}: no node '{}' in the cluster", item.target))
    };
    let count = || item.count.ok_or_else(|| format!("{kind} needs a count"));
    let no_count = || match item.count {
        Some(c) => Err(format!("{kind} takes no count, found {c}")),
        None => Ok(()),
    };
    match kind {
        AdviceKind::Scale | AdviceKind::Prescale => {
            let s = slice()?;
            let c = count()?;
            if c > s.max.max(1) * 10 {
                return Err(format!(
                    "{kind} {} to {c}: more than ten times its max ({})",
                    item.target, s.max
                ));
            }
        }
        AdviceKind::RaiseMax => {
            let s = slice()?;
            let c = count()?;
            if c <= s.max {
                return Err(format!(
                    "raise_max {} to {c}: its max is {} already",
                    item.target, s.max
                ));
            }
        }
        AdviceKind::LowerMax => {
            let s = slice()?;
            let c = count()?;
            if c >= s.max || c < s.min {
                return Err(format!(
                    "lower_max {} to {c}: expected from its min {} to below its max {}",
                    item.target, s.min, s.max
                ));
            }
        }
        AdviceKind::Drain | AdviceKind::Undrain => {
            node()?;
            no_count()?;
        }
        AdviceKind::Note => {
            if !item.target.is_empty() && slice().is_err() && node().is_err() {
                return Err(format!(
                    "note: '{}' is neither a slice nor a node in the cluster",
                    item.target
                ));
            }
        }
    }
    if item.when.is_some() && kind != AdviceKind::Prescale {
        return Err(format!("{kind} takes no 'when'"));
    }
    Ok(())
}

/// Why an item cannot be taken as a proposal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TakeError {
    /// The kind changes a blueprint (raise_max, lower_max) or acts on nothing (note).
    #[error("{0}")]
    NotAnAction(String),
    /// The target is gone, or already where the item would bring it.
    #[error("{0}")]
    Stale(String),
}

/// The action an item stands for, in the cluster as it is now: scale and prescale scale the
/// slice to the count now (the operator chose the time), drain and undrain act on the node.
/// A change of max is a blueprint edit, and a note names nothing to do.
pub fn action(item: &AdviceItem, world: &World) -> Result<Action, TakeError> {
    match item.kind {
        AdviceKind::Scale | AdviceKind::Prescale => {
            let s = world
                .slices
                .iter()
                .find(|s| s.target() == item.target)
                .ok_or_else(|| {
                    TakeError::Stale(format!("no slice '{}' in the cluster now", item.target))
                })?;
            let to = item.count.unwrap_or(s.desired);
            if to == s.desired {
                return Err(TakeError::Stale(format!(
                    "{} runs {to} instances already: nothing to propose",
                    item.target
                )));
            }
            Ok(Action::Scale {
                blueprint: s.blueprint.clone(),
                slice: s.slice.clone(),
                from: s.desired,
                to,
            })
        }
        AdviceKind::Drain | AdviceKind::Undrain => {
            let n = world
                .nodes
                .iter()
                .find(|n| n.name == item.target)
                .ok_or_else(|| {
                    TakeError::Stale(format!("no node '{}' in the cluster now", item.target))
                })?;
            let (node, name) = (n.id, n.name.clone());
            match (item.kind, n.state) {
                (AdviceKind::Drain, NodeState::Ready) => Ok(Action::Drain { node, name }),
                (AdviceKind::Undrain, NodeState::Draining | NodeState::Drained) => {
                    Ok(Action::Undrain { node, name })
                }
                (_, state) => Err(TakeError::Stale(format!(
                    "node {name} is {state}: nothing to {}",
                    item.kind
                ))),
            }
        }
        AdviceKind::RaiseMax | AdviceKind::LowerMax => {
            let (blueprint, slice) = item.target.split_once('/').unwrap_or((&item.target, "?"));
            Err(TakeError::NotAnAction(format!(
                "{} is a blueprint change, not a decision: set max = {} for slice '{slice}' in \
                 blueprint '{blueprint}' and 'aether blueprint apply' it",
                item.kind,
                item.count.map_or("?".into(), |c| c.to_string())
            )))
        }
        AdviceKind::Note => Err(TakeError::NotAnAction(
            "a note names nothing to do; it is for reading".into(),
        )),
    }
}

/// The rule of decisions made from advice.
pub const RULE: &str = "advisor";

/// The proposal an operator (`by`) takes from `item` of the advice `model` gave: rule
/// `advisor`, layer `advisor:<model>`, the item's reason as its reasoning. It goes through the
/// safety bounds like any proposal.
pub fn proposal(
    item: &AdviceItem,
    world: &World,
    model: &str,
    by: &str,
) -> Result<Proposal, TakeError> {
    let action = action(item, world)?;
    let mut inputs = vec![
        ("advice".to_string(), item.id.clone()),
        ("advice_kind".to_string(), item.kind.word().to_string()),
        ("taken_by".to_string(), by.to_string()),
    ];
    if let Some(w) = &item.when {
        inputs.push(("advice_when".into(), w.clone()));
    }
    Ok(Proposal {
        rule: RULE.into(),
        action,
        layers: vec![format!("advisor:{model}")],
        reasoning: vec![
            item.reason.clone(),
            format!("advice {} taken by {by}", item.id),
        ],
        inputs,
    })
}

#[cfg(test)]
mod tests;
