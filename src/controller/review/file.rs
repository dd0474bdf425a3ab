//! The situation file: a [`Situation`] as an operator writes it, in JSON, for
//! `aether model review FILE` and the reviewer's evaluation (`benches/model.rs`). Times are
//! written as how long before `now` (`"ago": "4m"`). README.md documents the format;
//! [`EXAMPLE`] is the one `aether model review --example` prints. Pure: text in, data out.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Context, Event, LogLine, Note, Situation};
use crate::controller::brain::{NodeView, Proposal, SliceView, World};
use crate::domain::{Action, Decision, DecisionStatus, Millis, NodeState};

/// The example `aether model review --example` prints: a scale-up while the copies crash on
/// an out-of-memory error.
pub const EXAMPLE: &str = r#"{
  "now": "2026-12-04T16:02:00Z",
  "proposal": {
    "rule": "cpu-high",
    "scale": { "slice": "shop/web", "from": 2, "to": 4 },
    "why": ["cpu per instance 0.93 > target 0.60 (band limit 0.66) for 44s"],
    "inputs": { "cpu_per_instance": "0.93", "target_cpu": "0.60" }
  },
  "slices": [
    { "name": "shop/web", "desired": 2, "active": 2, "min": 1, "max": 8,
      "cpu_per_instance": 0.93, "calls_per_s": 120.0, "latency_ms": 180.0,
      "target_latency_ms": 250.0, "error_rate": 0.01 }
  ],
  "nodes": [
    { "name": "n1", "state": "ready", "cpu": 0.70, "mem": 0.40 },
    { "name": "n2", "state": "ready", "cpu": 0.65, "mem": 0.35, "gpu_temp": 71.0 }
  ],
  "recent": [
    { "id": 12, "scale": { "slice": "shop/web", "from": 2, "to": 3 }, "status": "vetoed",
      "ago": "2h", "by": "uid:1000@n1", "reason": "load test until 14:30" }
  ],
  "logs": [
    { "instance": "shop/web/0", "ago": "20s",
      "line": "Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space" },
    { "instance": "shop/web/1", "ago": "8s",
      "line": "Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space" }
  ],
  "events": [ { "ago": "15s", "what": "shop/web/0 exited (exit code 1), restart 4" } ],
  "notes": [ { "ago": "1h", "by": "alice", "text": "web heap is 256m until the config change lands" } ]
}
"#;

/// What is wrong with a situation file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{0}")]
    Json(String),
    #[error("{field}: {why}")]
    Field { field: String, why: String },
}

fn field(field: impl Into<String>, why: impl Into<String>) -> FileError {
    FileError::Field {
        field: field.into(),
        why: why.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    now: Option<String>,
    proposal: ProposalFile,
    #[serde(default)]
    slices: Vec<SliceFile>,
    #[serde(default)]
    nodes: Vec<NodeFile>,
    #[serde(default)]
    recent: Vec<RecentFile>,
    #[serde(default)]
    logs: Vec<LogFile>,
    #[serde(default)]
    events: Vec<EventFile>,
    #[serde(default)]
    notes: Vec<NoteFile>,
    /// For evaluation; the reviewer never reads it.
    #[serde(default)]
    label: Option<Label>,
}

/// The verdict an operator expects of a situation (evaluation only).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Label {
    /// `approve`, `reject` or `adjust`.
    pub expect: Expect,
    /// The logs, events or notes decide the verdict, not the numbers.
    #[serde(default)]
    pub text_decides: bool,
    /// The operator's one sentence.
    #[serde(default)]
    pub why: String,
}

/// An expected verdict; for `adjust` any count counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    Approve,
    Reject,
    Adjust,
}

impl Expect {
    /// The expectation a verdict meets.
    pub fn of(v: &super::Verdict) -> Expect {
        match v {
            super::Verdict::Approve => Expect::Approve,
            super::Verdict::Reject => Expect::Reject,
            super::Verdict::Adjust(_) => Expect::Adjust,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Target {
    #[serde(default)]
    scale: Option<ScaleFile>,
    #[serde(default)]
    drain: Option<NodeRef>,
    #[serde(default)]
    undrain: Option<NodeRef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProposalFile {
    rule: String,
    #[serde(flatten)]
    target: Target,
    #[serde(default)]
    why: Vec<String>,
    #[serde(default)]
    inputs: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleFile {
    slice: String,
    from: u32,
    to: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeRef {
    node: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SliceFile {
    name: String,
    desired: u32,
    #[serde(default)]
    active: Option<u32>,
    min: u32,
    max: u32,
    #[serde(default)]
    cpu_per_instance: Option<f64>,
    #[serde(default)]
    cpu_reserved: Option<f64>,
    #[serde(default)]
    calls_per_s: Option<f64>,
    #[serde(default)]
    latency_ms: Option<f64>,
    #[serde(default)]
    target_latency_ms: Option<f64>,
    #[serde(default)]
    target_cpu: Option<f64>,
    #[serde(default)]
    error_rate: Option<f64>,
    #[serde(default)]
    waiting: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    name: String,
    #[serde(default = "ready")]
    state: String,
    #[serde(default)]
    cpu: f64,
    #[serde(default)]
    mem: f64,
    #[serde(default)]
    gpu_util: Option<f64>,
    #[serde(default)]
    gpu_temp: Option<f64>,
    #[serde(default)]
    live: Option<bool>,
}

fn ready() -> String {
    "ready".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecentFile {
    id: u64,
    #[serde(flatten)]
    target: Target,
    status: String,
    ago: String,
    #[serde(default)]
    by: String,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogFile {
    instance: String,
    #[serde(default)]
    ago: Option<String>,
    line: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventFile {
    #[serde(default)]
    ago: Option<String>,
    what: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteFile {
    #[serde(default)]
    ago: Option<String>,
    #[serde(default)]
    by: String,
    text: String,
}

/// A parsed situation file: the situation and its label, if it has one.
pub struct Parsed {
    pub situation: Situation,
    pub label: Option<Label>,
}

/// Parse a situation file; `now` stands in for an absent `now`. Errors name the field and
/// what it should be.
pub fn parse(text: &str, now: Millis) -> Result<Parsed, FileError> {
    let f: File = serde_json::from_str(text).map_err(|e| {
        FileError::Json(format!(
            "{e}; 'aether model review --example' prints a valid situation"
        ))
    })?;
    let now = match &f.now {
        None => now,
        Some(t) => humantime::parse_rfc3339_weak(t)
            .map_err(|e| {
                field(
                    "now",
                    format!("'{t}' is not a time ({e}); write e.g. '2026-12-04T16:02:00Z'"),
                )
            })?
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as Millis)
            .unwrap_or(0),
    };
    let ago = |name: &str, v: &Option<String>| -> Result<Millis, FileError> {
        match v {
            None => Ok(now),
            Some(a) => humantime::parse_duration(a.trim())
                .map(|d| now.saturating_sub(d.as_millis() as Millis))
                .map_err(|e| {
                    field(
                        name,
                        format!("'{a}' is not a duration ({e}); write e.g. '90s', '4m' or '2h'"),
                    )
                }),
        }
    };
    let mut nodes = Vec::new();
    for (i, n) in f.nodes.iter().enumerate() {
        let at = format!("nodes[{i}]");
        let (state, live) = match n.state.as_str() {
            "ready" => (NodeState::Ready, true),
            "draining" => (NodeState::Draining, true),
            "drained" => (NodeState::Drained, true),
            "asleep" => (NodeState::Asleep, true),
            "down" => (NodeState::Ready, false),
            s => {
                return Err(field(
                    format!("{at}.state"),
                    format!("'{s}' is not a node state: ready, draining, drained, asleep or down"),
                ));
            }
        };
        for (name, v) in [
            ("cpu", Some(n.cpu)),
            ("mem", Some(n.mem)),
            ("gpu_util", n.gpu_util),
        ] {
            if let Some(v) = v
                && !(0.0..=1.0).contains(&v)
            {
                return Err(field(
                    format!("{at}.{name}"),
                    format!("{v} is not a fraction: write 0 to 1"),
                ));
            }
        }
        nodes.push(NodeView {
            id: i as u64 + 1,
            name: n.name.clone(),
            state,
            live: n.live.unwrap_or(live),
            cpu: n.cpu,
            mem: n.mem,
            gpu_util: n.gpu_util,
            gpu_temp: n.gpu_temp,
            anomalies: 0,
            drained_by_controller: false,
            gpu_health: None,
        });
    }
    let node_id = |at: &str, name: &str| -> Result<u64, FileError> {
        nodes
            .iter()
            .find(|n| n.name == name)
            .map(|n| n.id)
            .ok_or_else(|| {
                field(
                    at,
                    format!("node '{name}' is not among 'nodes'; list it there"),
                )
            })
    };
    let split = |at: &str, s: &str| -> Result<(String, String), FileError> {
        match s.split_once('/') {
            Some((b, n)) if !b.is_empty() && !n.is_empty() && !n.contains('/') => {
                Ok((b.into(), n.into()))
            }
            _ => Err(field(
                at,
                format!("'{s}' is not a slice: write blueprint/slice, e.g. 'shop/web'"),
            )),
        }
    };
    let action = |at: &str, t: &Target| -> Result<Action, FileError> {
        match (&t.scale, &t.drain, &t.undrain) {
            (Some(s), None, None) => {
                let (blueprint, slice) = split(&format!("{at}.scale.slice"), &s.slice)?;
                Ok(Action::Scale {
                    blueprint,
                    slice,
                    from: s.from,
                    to: s.to,
                })
            }
            (None, Some(d), None) => Ok(Action::Drain {
                node: node_id(&format!("{at}.drain.node"), &d.node)?,
                name: d.node.clone(),
            }),
            (None, None, Some(d)) => Ok(Action::Undrain {
                node: node_id(&format!("{at}.undrain.node"), &d.node)?,
                name: d.node.clone(),
            }),
            _ => Err(field(
                at,
                "give exactly one of 'scale', 'drain' or 'undrain'",
            )),
        }
    };
    let mut slices = Vec::new();
    for (i, s) in f.slices.iter().enumerate() {
        let at = format!("slices[{i}]");
        let (blueprint, slice) = split(&format!("{at}.name"), &s.name)?;
        if s.min > s.max {
            return Err(field(
                format!("{at}.min"),
                format!("min {} is above max {}", s.min, s.max),
            ));
        }
        if let Some(e) = s.error_rate
            && !(0.0..=1.0).contains(&e)
        {
            return Err(field(
                format!("{at}.error_rate"),
                format!("{e} is not a fraction: write 0 to 1 (0.05 is 5%)"),
            ));
        }
        let active = s.active.unwrap_or(s.desired);
        let reserved = s.cpu_reserved.unwrap_or(1.0);
        slices.push(SliceView {
            blueprint,
            slice,
            desired: s.desired,
            min: s.min,
            max: s.max,
            active,
            cpu_reserved: reserved,
            cpu_used: s.cpu_per_instance.map(|c| c * active as f64 * reserved),
            service: s.calls_per_s.is_some(),
            calls_per_s: s.calls_per_s,
            latency_ms: s.latency_ms,
            error_rate: s.error_rate,
            waiting: s.waiting,
            target_cpu: s.target_cpu,
            target_latency_ms: s.target_latency_ms,
            ..SliceView::default()
        });
    }
    let p = &f.proposal;
    let proposal = Proposal {
        rule: p.rule.clone(),
        action: action("proposal", &p.target)?,
        layers: vec![format!("rules:{}", p.rule)],
        reasoning: p.why.clone(),
        inputs: p
            .inputs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    if let Action::Scale {
        blueprint, slice, ..
    } = &proposal.action
        && !slices
            .iter()
            .any(|s| &s.blueprint == blueprint && &s.slice == slice)
    {
        return Err(field(
            "proposal.scale.slice",
            format!("'{blueprint}/{slice}' is not among 'slices'; list it there"),
        ));
    }
    let mut recent = Vec::new();
    for (i, r) in f.recent.iter().enumerate() {
        let at_field = format!("recent[{i}]");
        let at = ago(&format!("{at_field}.ago"), &Some(r.ago.clone()))?;
        let by = r.by.clone();
        let status = match r.status.as_str() {
            "proposed" => DecisionStatus::Proposed,
            "pending" => DecisionStatus::Pending { deadline: at },
            "applied" => DecisionStatus::Applied { at, by: by.clone() },
            "vetoed" => DecisionStatus::Vetoed {
                at,
                by: by.clone(),
                reason: r.reason.clone(),
                reverted: None,
            },
            "rejected" => DecisionStatus::Rejected {
                reason: r.reason.clone().unwrap_or_default(),
            },
            "superseded" => DecisionStatus::Superseded {
                reason: r.reason.clone().unwrap_or_default(),
            },
            "failed" => DecisionStatus::Failed {
                error: r.reason.clone().unwrap_or_default(),
            },
            "expired" => DecisionStatus::Expired {
                reason: r.reason.clone().unwrap_or_default(),
            },
            s => {
                return Err(field(
                    format!("{at_field}.status"),
                    format!(
                        "'{s}' is not a decision status: proposed, pending, applied, vetoed, \
                         rejected, superseded, failed or expired"
                    ),
                ));
            }
        };
        let act = action(&at_field, &r.target)?;
        recent.push(Decision::bare(r.id, at, "controller", "", act, status));
    }
    // Newest first, as the controller hands them over.
    recent.sort_by_key(|d| std::cmp::Reverse(d.at));
    let mut context = Context::default();
    for (i, l) in f.logs.iter().enumerate() {
        context.logs.push(LogLine {
            at: ago(&format!("logs[{i}].ago"), &l.ago)?,
            instance: l.instance.clone(),
            line: l.line.clone(),
        });
    }
    for (i, e) in f.events.iter().enumerate() {
        context.events.push(Event {
            at: ago(&format!("events[{i}].ago"), &e.ago)?,
            what: e.what.clone(),
        });
    }
    for (i, n) in f.notes.iter().enumerate() {
        context.notes.push(Note {
            at: ago(&format!("notes[{i}].ago"), &n.ago)?,
            by: n.by.clone(),
            text: n.text.clone(),
        });
    }
    context.logs.sort_by_key(|l| l.at);
    context.events.sort_by_key(|e| e.at);
    context.notes.sort_by_key(|n| n.at);
    Ok(Parsed {
        situation: Situation {
            proposal,
            world: World { now, slices, nodes },
            recent,
            context,
        },
        label: f.label,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_parses_into_the_situation_it_describes() {
        let p = parse(EXAMPLE, 0).expect("the example parses");
        let s = &p.situation;
        assert_eq!(s.world.now, 1_796_400_120_000, "2026-12-04T16:02:00Z");
        assert_eq!(
            s.proposal.action,
            Action::Scale {
                blueprint: "shop".into(),
                slice: "web".into(),
                from: 2,
                to: 4
            }
        );
        let web = &s.world.slices[0];
        assert!(
            (web.cpu_used.unwrap() - 1.86).abs() < 1e-9,
            "0.93 × 2 × 1 core"
        );
        assert_eq!(s.context.logs.len(), 2);
        assert_eq!(s.context.logs[0].at, s.world.now - 20_000, "oldest first");
        assert!(matches!(
            &s.recent[0].status,
            DecisionStatus::Vetoed { reason: Some(r), .. } if r == "load test until 14:30"
        ));
        assert_eq!(s.context.notes[0].by, "alice");
        assert!(p.label.is_none());
    }

    #[test]
    fn bad_files_name_the_field_and_the_fix() {
        let cases = [
            ("{", "EOF while parsing"),
            (
                r#"{"proposal": {"rule": "x", "scale": {"slice": "web", "from": 1, "to": 2}}}"#,
                "proposal.scale.slice: 'web' is not a slice: write blueprint/slice",
            ),
            (
                r#"{"proposal": {"rule": "x", "scale": {"slice": "a/b", "from": 1, "to": 2}}}"#,
                "proposal.scale.slice: 'a/b' is not among 'slices'",
            ),
            (
                r#"{"proposal": {"rule": "x"}}"#,
                "proposal: give exactly one of 'scale', 'drain' or 'undrain'",
            ),
            (
                r#"{"proposal": {"rule": "x", "drain": {"node": "n9"}}}"#,
                "proposal.drain.node: node 'n9' is not among 'nodes'",
            ),
            (
                r#"{"now": "yesterday", "proposal": {"rule": "x", "drain": {"node": "n9"}}}"#,
                "now: 'yesterday' is not a time",
            ),
            (
                r#"{"proposal": {"rule": "x", "drain": {"node": "n1"}}, "nodes": [{"name": "n1"}],
                   "notes": [{"ago": "soon", "text": "x"}]}"#,
                "notes[0].ago: 'soon' is not a duration",
            ),
            (
                r#"{"proposal": {"rule": "x", "drain": {"node": "n1"}}, "nodes": [{"name": "n1", "state": "gone"}]}"#,
                "nodes[0].state: 'gone' is not a node state",
            ),
            (
                r#"{"proposal": {"rule": "x", "drain": {"node": "n1"}}, "nodse": []}"#,
                "unknown field `nodse`",
            ),
        ];
        for (text, want) in cases {
            let e = parse(text, 0).err().expect(text).to_string();
            assert!(e.contains(want), "{text}\n  gave: {e}\n  want: {want}");
        }
    }

    #[test]
    fn a_label_is_read_for_the_evaluation() {
        let text = r#"{"proposal": {"rule": "x", "drain": {"node": "n1"}}, "nodes": [{"name": "n1"}],
            "label": {"expect": "reject", "text_decides": true, "why": "a job runs there"}}"#;
        let p = parse(text, 5).unwrap();
        assert_eq!(p.situation.world.now, 5, "no 'now': the time given");
        let l = p.label.unwrap();
        assert_eq!((l.expect, l.text_decides), (Expect::Reject, true));
    }
}
