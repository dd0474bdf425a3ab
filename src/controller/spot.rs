//! Spot interruption notices (the pure core). A node's signal loop ([`watch`]) asks its cloud's
//! metadata service and keeps what it says in the replicated store (`SetSpotNotice`); the
//! leader's controller reads the stored notices each tick and:
//!
//! - on an **interruption** drains the node at once, whatever the mode and even while the
//!   controller is paused (the machine goes away at the deadline whether or not anyone
//!   approves), and records that as an applied decision whose reasoning gives the deadline and
//!   the instances that move; once they run elsewhere, the decision's outcome says where each
//!   went and how long it took ([`interruptions`]);
//! - on a **rebalance recommendation** proposes a drain like any rule would, so it passes the
//!   safety bounds, the mode and the grace window ([`rebalance`]).
//!
//! The ingress takes an interrupted node's instances out of rotation while other copies are
//! ready (`ingress::table`), and the assignment loop starts replacements before the old copies
//! stop, so requests do not fail while the node empties.

pub mod watch;

use std::collections::BTreeMap;

use super::brain::Proposal;
use super::world::World;
use crate::domain::{
    Action, Assignment, ControlState, Decision, DecisionStatus, Millis, NodeId, NodeState, Outcome,
    SpotKind, SpotNotice, clock_time, human_millis,
};

/// The rule name of a drain on an interruption notice.
pub const INTERRUPTION_RULE: &str = crate::domain::SPOT_INTERRUPTION_RULE;
/// The rule name of a drain proposed on a rebalance recommendation.
pub const REBALANCE_RULE: &str = "spot-rebalance";
/// The layer every spot decision names.
pub const LAYER: &str = "signals:spot";
/// An interruption decision not judged this long after its deadline is judged as it stands.
const JUDGE_AFTER_DEADLINE_MS: u64 = 60_000;

/// Why an answer of the metadata service was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoticeError {
    #[error("expected JSON such as {expected}, found '{found}'")]
    Shape {
        expected: &'static str,
        found: String,
    },
    #[error(
        "expected an RFC 3339 time such as '2026-12-05T05:12:02Z' in '{field}', found '{found}'"
    )]
    Time { field: &'static str, found: String },
}

fn shape(expected: &'static str, body: &[u8]) -> NoticeError {
    let text = String::from_utf8_lossy(&body[..body.len().min(120)]);
    NoticeError::Shape {
        expected,
        found: text.replace(char::is_control, " "),
    }
}

fn time(field: &'static str, v: &str) -> Result<Millis, NoticeError> {
    crate::domain::parse_time(v).map_err(|_| NoticeError::Time {
        field,
        found: v.chars().take(40).collect(),
    })
}

/// `spot/instance-action`'s answer: `{"action": "terminate", "time": "2026-…Z"}`.
pub fn parse_instance_action(body: &[u8], source: &str) -> Result<SpotNotice, NoticeError> {
    const EXPECTED: &str = r#"{"action": "terminate", "time": "2026-12-05T05:12:02Z"}"#;
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|_| shape(EXPECTED, body))?;
    let (Some(action), Some(at)) = (
        v.get("action").and_then(|a| a.as_str()),
        v.get("time").and_then(|t| t.as_str()),
    ) else {
        return Err(shape(EXPECTED, body));
    };
    Ok(SpotNotice {
        kind: SpotKind::Interruption {
            action: action.to_ascii_lowercase(),
        },
        at: time("time", at)?,
        source: source.into(),
    })
}

/// `events/recommendations/rebalance`'s answer: `{"noticeTime": "2026-…Z"}`.
pub fn parse_rebalance(body: &[u8], source: &str) -> Result<SpotNotice, NoticeError> {
    const EXPECTED: &str = r#"{"noticeTime": "2026-12-05T05:10:00Z"}"#;
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|_| shape(EXPECTED, body))?;
    let Some(at) = v.get("noticeTime").and_then(|t| t.as_str()) else {
        return Err(shape(EXPECTED, body));
    };
    Ok(SpotNotice {
        kind: SpotKind::Rebalance,
        at: time("noticeTime", at)?,
        source: source.into(),
    })
}

/// What the node's notice should be given what the service said: an interruption outranks a
/// rebalance recommendation.
pub fn observed(
    interruption: Option<SpotNotice>,
    rebalance: Option<SpotNotice>,
) -> Option<SpotNotice> {
    interruption.or(rebalance)
}

/// What the signal loop of provider `source` writes, if anything: the notice it observed when
/// the store holds another, or a clear when the service says nothing any more and the stored
/// notice is its own (a drill's notice is the drill's to clear). An interruption outranks a
/// rebalance recommendation: a recommendation never replaces another source's interruption
/// (a drill's).
pub fn to_write(
    observed: Option<&SpotNotice>,
    stored: Option<&SpotNotice>,
    source: &str,
) -> Option<Option<SpotNotice>> {
    match (observed, stored) {
        (Some(o), Some(s)) if s.source != source && s.is_interruption() && !o.is_interruption() => {
            None
        }
        (Some(o), s) if s != Some(o) => Some(Some(o.clone())),
        (None, Some(s)) if s.source == source => Some(None),
        _ => None,
    }
}

/// Instances held by `node`: assigned to it, or still served there while a new copy starts.
pub fn held_by(assignments: &BTreeMap<String, Assignment>, node: NodeId) -> Vec<String> {
    assignments
        .iter()
        .filter(|(_, a)| a.node == Some(node) || a.handoff == Some(node))
        .map(|(k, _)| k.clone())
        .collect()
}

/// One write the interruption policy asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Set the node draining (when `drain`) and record `decision`, already applied.
    Interrupt {
        node: NodeId,
        drain: bool,
        decision: Box<Decision>,
    },
    /// Record how an interruption drain went.
    Outcome { id: u64, outcome: Outcome },
}

fn input<'a>(d: &'a Decision, key: &str) -> Option<&'a str> {
    d.inputs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// `terminate` → `terminated`.
fn done(action: &str) -> String {
    match action {
        "terminate" => "terminated".into(),
        "stop" => "stopped".into(),
        "hibernate" => "hibernated".into(),
        other => format!("taken away ('{other}')"),
    }
}

fn who(n: &SpotNotice) -> String {
    if n.source == crate::domain::SPOT_DRILL_SOURCE {
        "a drill (aether drill run spot-interruption)".into()
    } else {
        format!("the cloud ({})", n.source)
    }
}

/// The interruption policy: a drain decision for each interrupted node that has none for its
/// notice yet (recorded applied, with the drain itself unless the node is draining already),
/// and the outcome of each applied one whose instances all run elsewhere now (or whose
/// deadline is a minute past). `decisions` are the recent ones, newest first; `by` is the
/// leader's actor (`controller@n1`).
pub fn interruptions(
    notices: &BTreeMap<NodeId, SpotNotice>,
    world: &World,
    assignments: &BTreeMap<String, Assignment>,
    decisions: &[Decision],
    control: &ControlState,
    by: &str,
) -> Vec<Step> {
    let decide = notices
        .iter()
        .filter(|(_, n)| n.is_interruption())
        .filter(|(id, n)| !decided(decisions, **id, n))
        .filter_map(|(id, n)| interrupt(*id, n, world, assignments, control, by));
    let judge = decisions
        .iter()
        .filter_map(|d| judge(d, world, assignments));
    decide.chain(judge).collect()
}

/// Whether an interruption decision on `node` for this notice (its deadline) is recorded.
fn decided(decisions: &[Decision], node: NodeId, notice: &SpotNotice) -> bool {
    decisions.iter().any(|d| decides(d, node, notice))
}

/// Whether `d` is the interruption decision on `node` for this notice (its deadline).
pub fn decides(d: &Decision, node: NodeId, notice: &SpotNotice) -> bool {
    d.rule == INTERRUPTION_RULE
        && matches!(d.action, Action::Drain { node: n, .. } if n == node)
        && input(d, "deadline") == Some(notice.at.to_string().as_str())
}

/// The interruption notices with no decision among `decisions` (the recent ones): new, or
/// decided so long ago that the decision is older than those; the caller looks further back
/// before [`interruptions`] decides them again.
pub fn undecided<'a>(
    notices: &'a BTreeMap<NodeId, SpotNotice>,
    decisions: &[Decision],
) -> Vec<(NodeId, &'a SpotNotice)> {
    notices
        .iter()
        .filter(|(_, n)| n.is_interruption())
        .filter(|(id, n)| !decided(decisions, **id, n))
        .map(|(id, n)| (*id, n))
        .collect()
}

/// The drain of interrupted member `id` and its decision, already applied, whose reasoning
/// gives the deadline and the instances that move.
fn interrupt(
    id: NodeId,
    notice: &SpotNotice,
    world: &World,
    assignments: &BTreeMap<String, Assignment>,
    control: &ControlState,
    by: &str,
) -> Option<Step> {
    let now = world.now;
    let node = world.nodes.iter().find(|n| n.id == id)?;
    let SpotKind::Interruption { action } = &notice.kind else {
        return None;
    };
    let drain = node.state == NodeState::Ready;
    let held = held_by(assignments, id);
    let left = if notice.at > now {
        format!("{} from now", human_millis(notice.at - now))
    } else {
        format!("{} ago", human_millis(now - notice.at))
    };
    let mut reasoning = vec![
        format!(
            "{} announced that {}'s machine will be {} at {} ({left}): a spot interruption",
            who(notice),
            node.name,
            done(action),
            clock_time(notice.at)
        ),
        format!(
            "carried out at once whatever the mode ({}){}: the machine is going away, so there is no grace window to veto in; recorded for the audit trail",
            control.mode,
            if control.paused.is_some() {
                " and although the controller is paused"
            } else {
                ""
            }
        ),
    ];
    reasoning.push(if held.is_empty() {
        format!("{} holds no instances: nothing moves", node.name)
    } else {
        format!(
            "moving {} instance(s) off {}: {}; replacements start on other nodes before these stop, and the ingress stops sending {} requests first",
            held.len(),
            node.name,
            held.join(", "),
            node.name
        )
    });
    if !drain {
        reasoning.push(format!(
            "{} was {} already: the drain goes on",
            node.name, node.state
        ));
    }
    let mut d = Decision::bare(
        0,
        now,
        by,
        INTERRUPTION_RULE,
        Action::Drain {
            node: id,
            name: node.name.clone(),
        },
        DecisionStatus::Applied {
            at: now,
            by: by.into(),
        },
    );
    d.mode = control.mode;
    d.layers = vec![LAYER.into()];
    d.reasoning = reasoning;
    d.inputs = vec![
        ("deadline".into(), notice.at.to_string()),
        ("deadline_at".into(), clock_time(notice.at)),
        ("action".into(), action.clone()),
        ("source".into(), notice.source.clone()),
        ("state".into(), node.state.to_string()),
        ("instances".into(), held.join(",")),
    ];
    d.timeline = vec![(
        now,
        format!("applied at once by {by}: an interruption does not wait for the mode"),
    )];
    Some(Step::Interrupt {
        node: id,
        drain,
        decision: Box::new(d),
    })
}

/// The outcome of applied interruption decision `d` once the instances it moved all run
/// elsewhere (where each went, how long it took, the time left to the deadline), or a minute
/// after its deadline if they do not; `None` before that or when it has one.
fn judge(d: &Decision, world: &World, assignments: &BTreeMap<String, Assignment>) -> Option<Step> {
    let now = world.now;
    if d.rule != INTERRUPTION_RULE || d.outcome.is_some() {
        return None;
    }
    let (Action::Drain { node, name }, DecisionStatus::Applied { at, .. }) = (&d.action, &d.status)
    else {
        return None;
    };
    let name_of = |id: NodeId| {
        world
            .nodes
            .iter()
            .find(|n| n.id == id)
            .map(|n| n.name.clone())
            .unwrap_or_else(|| format!("id {id}"))
    };
    let deadline: Option<Millis> = input(d, "deadline").and_then(|v| v.parse().ok());
    let instances: Vec<&str> = input(d, "instances")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .collect();
    let still: Vec<&str> = instances
        .iter()
        .copied()
        .filter(|i| {
            assignments
                .get(*i)
                .is_some_and(|a| a.node == Some(*node) || a.handoff == Some(*node))
        })
        .collect();
    let late = deadline.is_some_and(|dl| now > dl + JUDGE_AFTER_DEADLINE_MS);
    if !still.is_empty() && !late {
        return None;
    }
    let moves: Vec<String> = instances
        .iter()
        .filter(|i| !still.contains(i))
        .map(|i| match assignments.get(*i).and_then(|a| a.node) {
            Some(to) => format!("{i} → {}", name_of(to)),
            None => format!("{i} pending"),
        })
        .collect();
    let took = human_millis(now.saturating_sub(*at));
    let spare = match deadline {
        Some(dl) if dl >= now => format!(", {} before the deadline", human_millis(dl - now)),
        Some(dl) => format!(", {} AFTER the deadline", human_millis(now - dl)),
        None => String::new(),
    };
    let outcome = if still.is_empty() {
        Outcome {
            at: now,
            verdict: "as intended".into(),
            detail: if moves.is_empty() {
                format!("{name} held no instances; drained after {took}{spare}")
            } else {
                format!("{name} drained after {took}{spare}: {}", moves.join(", "))
            },
        }
    } else {
        Outcome {
            at: now,
            verdict: "not as intended".into(),
            detail: format!(
                "{name} still held {} at the deadline{}",
                still.join(", "),
                if moves.is_empty() {
                    String::new()
                } else {
                    format!("; moved: {}", moves.join(", "))
                }
            ),
        }
    };
    Some(Step::Outcome { id: d.id, outcome })
}

/// A drain proposal for each ready, live node whose cloud recommends moving work off it; it
/// goes through the safety bounds, the mode and the grace window like a rule's.
pub fn rebalance(notices: &BTreeMap<NodeId, SpotNotice>, world: &World) -> Vec<Proposal> {
    let now = world.now;
    notices
        .iter()
        .filter(|(_, n)| n.kind == SpotKind::Rebalance)
        .filter_map(|(id, n)| {
            let node = world.nodes.iter().find(|v| v.id == *id)?;
            (node.state == NodeState::Ready && node.live).then(|| {
                let mut inputs = node.inputs();
                inputs.push(("notice_time".into(), clock_time(n.at)));
                inputs.push(("source".into(), n.source.clone()));
                Proposal {
                    rule: REBALANCE_RULE.into(),
                    action: Action::Drain {
                        node: *id,
                        name: node.name.clone(),
                    },
                    layers: vec![LAYER.into()],
                    reasoning: vec![
                        format!(
                            "{} recommends moving work off {}'s machine (a rebalance recommendation at {}, {} ago): it is at elevated risk of a spot interruption",
                            who(n),
                            node.name,
                            clock_time(n.at),
                            human_millis(now.saturating_sub(n.at))
                        ),
                        "draining it now moves its instances while there is time; an interruption notice would drain it at once".into(),
                    ],
                    inputs,
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
