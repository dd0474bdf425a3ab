//! Fire drills (`aether drill run SCENARIO`): break the real cluster on purpose, measure how it
//! responds, and put it back.
//!
//! The pure core is here: which scenarios exist ([`Scenario::parse`]), what a drill would do
//! and whether it may run at all ([`plan`]: never one that would take quorum away, never two
//! at once), and the report and its verdict line ([`DrillReport`]). The runner and the peer
//! service that carries out the faults on each node are in [`runner`].
//!
//! The fault is the net layer's isolation switch ([`crate::net::Endpoint::isolate`]): it has a
//! deadline on the node itself, so a drill whose driver dies never leaves a node cut off.

pub mod runner;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::{Health, NodeId};

/// The scenarios, with the target each takes and what each does, for usage errors and
/// `--help`.
pub const SCENARIOS: &[(&str, &str)] = &[
    (
        "leader-loss",
        "the leader is cut off from its peers until another leads; time to a new leader and until writes resume",
    ),
    (
        "partition NODE",
        "NODE is cut off for --for (default 5 s); whether the leader changed, whether writes went on, NODE's catch-up",
    ),
    (
        "node-loss NODE",
        "NODE is cut off past node-down detection; time until marked down, until its instances run elsewhere, until back ready",
    ),
    (
        "slice-crash BLUEPRINT/SLICE",
        "every instance of the slice is killed (SIGKILL) on every node; restarts counted, time until all are ready",
    ),
    (
        "spot-interruption NODE",
        "NODE gets a spot interruption notice with a deadline --for ahead (default 2 min); time until the leader's decision, until its instances run elsewhere and where, until drained; then NODE is undrained and the notice cleared",
    ),
];

/// How long `partition` cuts its node off unless `--for` says otherwise.
pub const DEFAULT_PARTITION: Duration = Duration::from_secs(5);
/// The longest fault a drill may hold.
pub const MAX_HOLD: Duration = Duration::from_secs(300);
/// `leader-loss`: the longest the old leader stays cut off (healed as soon as another leads
/// and writes go through).
pub const LEADER_LOSS_HOLD: Duration = Duration::from_secs(10);
/// Time allowed after the fault for the cluster to be whole again (caught up, ready).
pub const RECOVERY_BOUND: Duration = Duration::from_secs(20);
/// `node-loss`: time allowed, after the node is marked down, for its instances to run elsewhere.
pub const MOVE_BOUND: Duration = Duration::from_secs(30);
/// `spot-interruption`: how far ahead the notice's deadline is unless `--for` says otherwise
/// (what AWS gives).
pub const SPOT_DEADLINE: Duration = Duration::from_secs(120);

/// A drill and its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    LeaderLoss,
    Partition { node: String },
    NodeLoss { node: String },
    SliceCrash { blueprint: String, slice: String },
    SpotInterruption { node: String },
}

/// A usage error naming the scenarios.
fn usage(msg: String) -> String {
    let list: Vec<String> = SCENARIOS
        .iter()
        .map(|(n, what)| format!("  {n}: {what}"))
        .collect();
    format!("{msg}; the scenarios are:\n{}", list.join("\n"))
}

impl Scenario {
    /// `name` and its `target` as typed on the command line.
    pub fn parse(name: &str, target: Option<&str>) -> Result<Scenario, String> {
        let node = |what: &str| -> Result<String, String> {
            let t = target.ok_or_else(|| {
                usage(format!(
                    "'{what}' needs a node: 'aether drill run {what} NODE' (see 'aether nodes')"
                ))
            })?;
            crate::domain::validate_name("node name", t)?;
            Ok(t.to_string())
        };
        let s = match name {
            "leader-loss" => {
                if let Some(t) = target {
                    return Err(usage(format!(
                        "'leader-loss' takes no target, found '{t}': it always cuts off the current leader"
                    )));
                }
                Scenario::LeaderLoss
            }
            "partition" => Scenario::Partition {
                node: node("partition")?,
            },
            "node-loss" => Scenario::NodeLoss {
                node: node("node-loss")?,
            },
            "spot-interruption" => Scenario::SpotInterruption {
                node: node("spot-interruption")?,
            },
            "slice-crash" => {
                let t = target.ok_or_else(|| {
                    usage("'slice-crash' needs a slice: 'aether drill run slice-crash BLUEPRINT/SLICE'".into())
                })?;
                let Some((blueprint, slice)) = t.split_once('/') else {
                    return Err(format!(
                        "expected BLUEPRINT/SLICE, found '{t}' (e.g. 'shop/web')"
                    ));
                };
                crate::domain::validate_name("blueprint name", blueprint)?;
                crate::domain::validate_name("slice name", slice)?;
                Scenario::SliceCrash {
                    blueprint: blueprint.into(),
                    slice: slice.into(),
                }
            }
            other => return Err(usage(format!("unknown drill scenario '{other}'"))),
        };
        Ok(s)
    }

    /// The scenario's name (`leader-loss`).
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::LeaderLoss => "leader-loss",
            Scenario::Partition { .. } => "partition",
            Scenario::NodeLoss { .. } => "node-loss",
            Scenario::SliceCrash { .. } => "slice-crash",
            Scenario::SpotInterruption { .. } => "spot-interruption",
        }
    }

    /// Its target as typed (`n3`, `app/web`); none for `leader-loss`.
    pub fn target(&self) -> Option<String> {
        match self {
            Scenario::LeaderLoss => None,
            Scenario::Partition { node }
            | Scenario::NodeLoss { node }
            | Scenario::SpotInterruption { node } => Some(node.clone()),
            Scenario::SliceCrash { blueprint, slice } => Some(format!("{blueprint}/{slice}")),
        }
    }
}

/// A member as the drill sees it before it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub id: NodeId,
    pub name: String,
    pub addr: String,
    pub voter: bool,
    /// It answered the drill's state request.
    pub reachable: bool,
    pub health: Health,
    /// It is cut off by a drill now.
    pub isolated: bool,
    /// It runs a drill now.
    pub drilling: bool,
    /// Its membership state (ready, draining …).
    pub state: crate::domain::NodeState,
    /// Its cloud's notice, if it has one.
    pub spot: Option<crate::domain::SpotNotice>,
}

/// What the drill knows of the cluster before it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub members: Vec<Member>,
    pub leader: Option<NodeId>,
    /// `slice-crash`: the slice's instances with a process (0 when the slice has none).
    pub slice_instances: u32,
    /// Whether the slice's blueprint is stored (`slice-crash`).
    pub slice_known: bool,
    /// After how long without metrics the leader marks a node down.
    pub down_after: Duration,
}

/// What a drill will do: its fault, how long, what it measures, how it restores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub scenario: Scenario,
    /// The node cut off (none for `slice-crash`).
    pub node: Option<NodeId>,
    pub node_name: Option<String>,
    /// The fault, in words.
    pub fault: String,
    /// The longest the fault is held, ms (the node heals itself then whatever happens).
    pub hold_ms: u64,
    /// What is measured, in words.
    pub measures: Vec<String>,
    /// How the cluster is put back, in words.
    pub restore: String,
    /// How long the cluster has to recover after the fault before the drill fails, ms.
    pub bound_ms: u64,
}

/// Why a drill may not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The target does not exist (bad input).
    #[error("{0}")]
    Unknown(String),
    /// Running it now would hurt the cluster, or another drill runs.
    #[error("{0}")]
    Unsafe(String),
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Whether cutting `target` off leaves a quorum of voters up: refused with the numbers when it
/// would not.
pub fn quorum_without(members: &[Member], target: NodeId) -> Result<(), Refusal> {
    let voters: Vec<&Member> = members.iter().filter(|m| m.voter).collect();
    let need = voters.len() / 2 + 1;
    let up: Vec<&Member> = voters
        .iter()
        .copied()
        .filter(|m| m.id != target && m.reachable && !m.isolated && m.health != Health::Down)
        .collect();
    if up.len() >= need {
        return Ok(());
    }
    let name = members
        .iter()
        .find(|m| m.id == target)
        .map(|m| m.name.as_str())
        .unwrap_or("?");
    let down: Vec<&str> = voters
        .iter()
        .filter(|m| m.id != target && !up.iter().any(|u| u.id == m.id))
        .map(|m| m.name.as_str())
        .collect();
    let remedy = if down.is_empty() {
        "add voters first ('aether token create', then 'aether node --join' on another machine)"
            .to_string()
    } else {
        format!("bring back '{}' first", down.join("', '"))
    };
    Err(Refusal::Unsafe(format!(
        "cutting off '{name}' would leave {} of {} voters up and a quorum needs {need}: {remedy}",
        up.len(),
        voters.len()
    )))
}

/// What the drill `s` would do on a cluster described by `facts`, holding its fault for `hold`
/// where the scenario takes one; refused when the target is unknown, when it would take quorum
/// away, or when another drill runs (a node is cut off now).
pub fn plan(s: &Scenario, facts: &Facts, hold: Option<Duration>) -> Result<Plan, Refusal> {
    if let Some(m) = facts.members.iter().find(|m| m.isolated) {
        return Err(Refusal::Unsafe(format!(
            "another drill is running: '{}' is cut off; wait for it to end (it heals by itself)",
            m.name
        )));
    }
    if let Some(m) = facts.members.iter().find(|m| m.drilling) {
        return Err(Refusal::Unsafe(format!(
            "another drill is running, driven by '{}'; wait for it to end",
            m.name
        )));
    }
    let hold = hold.map(|h| h.min(MAX_HOLD));
    let member = |name: &str| -> Result<&Member, Refusal> {
        facts
            .members
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = facts.members.iter().map(|m| m.name.as_str()).collect();
                Refusal::Unknown(format!(
                    "no member is named '{name}'; the members are {} (see 'aether nodes')",
                    names.join(", ")
                ))
            })
    };
    let leader = || -> Result<&Member, Refusal> {
        facts
            .leader
            .and_then(|id| facts.members.iter().find(|m| m.id == id))
            .ok_or_else(|| {
                Refusal::Unsafe(
                    "no leader is known: the cluster is not healthy enough for a drill; check 'aether status'"
                        .into(),
                )
            })
    };
    let bound = RECOVERY_BOUND.as_millis() as u64;
    let cut = |m: &Member, hold: Duration| {
        format!(
            "cut '{}' off from its peers for at most {} (raft, forwarded writes, metrics and ingress hops to and from it fail at once)",
            m.name,
            secs(hold)
        )
    };
    Ok(match s {
        Scenario::LeaderLoss => {
            let l = leader()?;
            quorum_without(&facts.members, l.id)?;
            let hold = hold.unwrap_or(LEADER_LOSS_HOLD);
            Plan {
                scenario: s.clone(),
                node: Some(l.id),
                node_name: Some(l.name.clone()),
                fault: cut(l, hold),
                hold_ms: hold.as_millis() as u64,
                measures: vec![
                    "time until another node leads, and its name".into(),
                    "time until a probe write (every 50 ms, through a surviving node) succeeds again, and the errors before".into(),
                    "the terms used".into(),
                ],
                restore: format!(
                    "'{}' is healed as soon as a new leader takes writes (at the latest after {}) and rejoins as a follower (pre-vote keeps the new leader in place)",
                    l.name,
                    secs(hold)
                ),
                bound_ms: bound,
            }
        }
        Scenario::Partition { node } => {
            let m = member(node)?;
            leader()?;
            quorum_without(&facts.members, m.id)?;
            let hold = hold.unwrap_or(DEFAULT_PARTITION);
            Plan {
                scenario: s.clone(),
                node: Some(m.id),
                node_name: Some(m.name.clone()),
                fault: cut(m, hold),
                hold_ms: hold.as_millis() as u64,
                measures: vec![
                    "whether the leader changed".into(),
                    "whether probe writes (every 50 ms, through a node on the majority side) went on".into(),
                    format!("time for '{}' to apply up to the leader's index after healing", m.name),
                ],
                restore: format!("'{}' heals after {} and catches up from the leader", m.name, secs(hold)),
                bound_ms: bound,
            }
        }
        Scenario::NodeLoss { node } => {
            let m = member(node)?;
            leader()?;
            quorum_without(&facts.members, m.id)?;
            // Long enough to be marked down and for its instances to move; healed as soon as
            // they run elsewhere.
            let hold = hold.unwrap_or(facts.down_after + MOVE_BOUND);
            if hold <= facts.down_after {
                return Err(Refusal::Unknown(format!(
                    "--for {} is not longer than the node-down detection ({}): the node would never be marked down; leave --for out or make it longer",
                    secs(hold),
                    secs(facts.down_after)
                )));
            }
            Plan {
                scenario: s.clone(),
                node: Some(m.id),
                node_name: Some(m.name.clone()),
                fault: cut(m, hold),
                hold_ms: hold.as_millis() as u64,
                measures: vec![
                    format!(
                        "time until the leader marks '{}' down (it does after {} without metrics)",
                        m.name,
                        secs(facts.down_after)
                    ),
                    "time until every instance it held runs on another node".into(),
                    format!("time until '{}' is back ready after healing", m.name),
                ],
                restore: format!(
                    "'{}' is healed once its instances run elsewhere (at the latest after {}); the leader marks it ready again",
                    m.name,
                    secs(hold)
                ),
                bound_ms: bound,
            }
        }
        Scenario::SpotInterruption { node } => {
            let m = member(node)?;
            leader()?;
            if let Some(n) = &m.spot {
                return Err(Refusal::Unsafe(format!(
                    "'{}' has a spot notice already ({}, from {}): a drill would hide it",
                    m.name,
                    n.state_word(),
                    n.source
                )));
            }
            if m.state != crate::domain::NodeState::Ready {
                return Err(Refusal::Unsafe(format!(
                    "'{}' is {}: the drill drains a ready node; undrain it first ('aether undrain {}')",
                    m.name, m.state, m.name
                )));
            }
            let others = facts
                .members
                .iter()
                .filter(|o| o.id != m.id && o.state == crate::domain::NodeState::Ready)
                .count();
            if others == 0 {
                return Err(Refusal::Unsafe(format!(
                    "'{}' is the only ready node: its instances would have nowhere to go",
                    m.name
                )));
            }
            let hold = hold.unwrap_or(SPOT_DEADLINE);
            if hold < Duration::from_secs(10) {
                return Err(Refusal::Unknown(format!(
                    "--for {} leaves too little time before the deadline: give at least 10 s (2 min is what AWS gives)",
                    secs(hold)
                )));
            }
            Plan {
                scenario: s.clone(),
                node: Some(m.id),
                node_name: Some(m.name.clone()),
                fault: format!(
                    "give '{}' a spot interruption notice (terminate) with its deadline {} ahead, the way its signal loop writes one: the leader drains it at once",
                    m.name,
                    secs(hold)
                ),
                hold_ms: hold.as_millis() as u64,
                measures: vec![
                    "time until the leader records its interruption decision".into(),
                    format!(
                        "time until every instance '{}' held is active on another node, and where",
                        m.name
                    ),
                    format!(
                        "time until '{}' is drained, and the time left to the deadline",
                        m.name
                    ),
                ],
                restore: format!(
                    "the notice is cleared and '{}' undrained (ready again), whether or not it drained in time",
                    m.name
                ),
                bound_ms: hold.as_millis() as u64,
            }
        }
        Scenario::SliceCrash { blueprint, slice } => {
            if !facts.slice_known {
                return Err(Refusal::Unknown(format!(
                    "no slice '{blueprint}/{slice}' is stored; see 'aether blueprint list'"
                )));
            }
            if facts.slice_instances == 0 {
                return Err(Refusal::Unsafe(format!(
                    "'{blueprint}/{slice}' has no running instance to crash; check 'aether blueprint show {blueprint}'"
                )));
            }
            Plan {
                scenario: s.clone(),
                node: None,
                node_name: None,
                fault: format!(
                    "SIGKILL the process group of each of the {} instances of '{blueprint}/{slice}', each node its own",
                    facts.slice_instances
                ),
                hold_ms: 0,
                measures: vec![
                    "restarts the supervisors count".into(),
                    "time until every instance is active again".into(),
                ],
                restore: "each node's supervisor restarts its instances (with its usual backoff)"
                    .into(),
                bound_ms: hold
                    .map(|h| h.as_millis() as u64)
                    .unwrap_or(60_000)
                    .max(bound),
            }
        }
    })
}

/// What a drill did and measured. Times are ms from the fault.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DrillReport {
    pub scenario: String,
    pub target: Option<String>,
    pub dry_run: bool,
    pub plan: Option<Plan>,
    /// The cluster was whole again within the drill's bound.
    pub recovered: bool,
    /// One line: what happened.
    pub verdict: String,
    pub old_leader: Option<String>,
    pub new_leader: Option<String>,
    pub term_before: u64,
    pub term_after: u64,
    /// A node other than the old leader leads.
    pub leader_changed: bool,
    pub leader_after_ms: Option<u64>,
    pub writes_resumed_after_ms: Option<u64>,
    pub probe_writes: u32,
    pub probe_errors: u32,
    /// The first distinct probe errors.
    pub errors: Vec<String>,
    /// The value of the last probe write that succeeded (key [`runner::PROBE_KEY`]).
    pub last_probe: Option<String>,
    pub healed_after_ms: Option<u64>,
    /// After healing.
    pub caught_up_after_ms: Option<u64>,
    pub marked_down_after_ms: Option<u64>,
    pub moved_after_ms: Option<u64>,
    pub moved_instances: Option<u32>,
    pub back_ready_after_ms: Option<u64>,
    pub instances: Option<u32>,
    pub killed: Option<u32>,
    pub restarts: Option<u32>,
    pub ready_after_ms: Option<u64>,
    /// `spot-interruption`: the leader's decision (`d-12`).
    pub decision: Option<String>,
    pub decided_after_ms: Option<u64>,
    pub drained_after_ms: Option<u64>,
    /// Each instance moved: `app/web/0 → n3`.
    pub moves: Vec<String>,
    /// After the fault, when the notice's deadline was.
    pub deadline_after_ms: Option<u64>,
    /// The notice cleared and the node undrained.
    pub restored: bool,
    /// What went wrong or could not be measured.
    pub notes: Vec<String>,
}

/// `0.8 s`.
pub fn ms(v: u64) -> String {
    format!("{:.1} s", v as f64 / 1000.0)
}

/// `1 instance moved`, `3 instances moved`.
fn moved(n: u32) -> String {
    format!("{n} instance{} moved", if n == 1 { "" } else { "s" })
}

fn after(what: &str, v: Option<u64>) -> String {
    match v {
        Some(v) => format!("{what} after {}", ms(v)),
        None => format!("{what}: not seen"),
    }
}

impl DrillReport {
    /// The verdict line, e.g. `leader-loss: new leader n2 after 0.8 s; writes resumed after
    /// 1.1 s; 0 errors`.
    pub fn verdict_line(&self) -> String {
        let body = match self.scenario.as_str() {
            "leader-loss" => format!(
                "{}; {}; {} errors",
                after(
                    &format!(
                        "new leader {}",
                        self.new_leader.as_deref().unwrap_or("(none)")
                    ),
                    self.leader_after_ms.filter(|_| self.leader_changed)
                ),
                after("writes resumed", self.writes_resumed_after_ms),
                self.probe_errors
            ),
            "partition" => format!(
                "{}; writes {} ({} ok, {} errors); {}",
                if self.leader_changed {
                    format!(
                        "leader changed to {}",
                        self.new_leader.as_deref().unwrap_or("?")
                    )
                } else {
                    "leader unchanged".into()
                },
                if self.probe_writes > 0 {
                    "continued"
                } else {
                    "stopped"
                },
                self.probe_writes,
                self.probe_errors,
                after(
                    &format!("{} caught up", self.target.as_deref().unwrap_or("?")),
                    self.caught_up_after_ms
                )
            ),
            "node-loss" => format!(
                "{}; {}; {}",
                after("marked down", self.marked_down_after_ms),
                after(
                    &moved(self.moved_instances.unwrap_or(0)),
                    self.moved_after_ms
                ),
                after("back ready", self.back_ready_after_ms)
            ),
            "spot-interruption" => format!(
                "{}; {}; {}{}; {}",
                after(
                    &format!("decision {}", self.decision.as_deref().unwrap_or("(none)")),
                    self.decided_after_ms
                ),
                after(
                    &moved(self.moved_instances.unwrap_or(0)),
                    self.moved_after_ms
                ),
                after(
                    &format!("{} drained", self.target.as_deref().unwrap_or("?")),
                    self.drained_after_ms
                ),
                match (self.drained_after_ms, self.deadline_after_ms) {
                    (Some(d), Some(dl)) if d <= dl =>
                        format!(" ({} before the deadline)", ms(dl - d)),
                    (Some(_), Some(_)) => " (AFTER the deadline)".into(),
                    _ => String::new(),
                },
                if self.restored {
                    "restored"
                } else {
                    "NOT restored"
                }
            ),
            _ => format!(
                "{} of {} instances killed; {} restarts; {}",
                self.killed.unwrap_or(0),
                self.instances.unwrap_or(0),
                self.restarts.unwrap_or(0),
                after("all ready", self.ready_after_ms)
            ),
        };
        let end = if self.recovered {
            "recovered"
        } else {
            "NOT recovered within the drill's bound"
        };
        format!("{}: {body}; {end}", self.scenario)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: NodeId, name: &str) -> Member {
        Member {
            id,
            name: name.into(),
            addr: format!("127.0.0.1:{}", 7000 + id),
            voter: true,
            reachable: true,
            health: Health::Ready,
            isolated: false,
            drilling: false,
            state: crate::domain::NodeState::Ready,
            spot: None,
        }
    }

    fn facts(n: u64) -> Facts {
        Facts {
            members: (1..=n).map(|i| member(i, &format!("n{i}"))).collect(),
            leader: Some(1),
            slice_instances: 2,
            slice_known: true,
            down_after: Duration::from_secs(10),
        }
    }

    #[test]
    fn scenarios_parse_and_an_unknown_one_lists_them() {
        assert_eq!(
            Scenario::parse("leader-loss", None),
            Ok(Scenario::LeaderLoss)
        );
        assert_eq!(
            Scenario::parse("partition", Some("n3")),
            Ok(Scenario::Partition { node: "n3".into() })
        );
        assert_eq!(
            Scenario::parse("slice-crash", Some("app/web")),
            Ok(Scenario::SliceCrash {
                blueprint: "app".into(),
                slice: "web".into()
            })
        );
        let e = Scenario::parse("leader-kill", None).unwrap_err();
        assert!(e.contains("unknown drill scenario 'leader-kill'"), "{e}");
        for (name, _) in SCENARIOS {
            assert!(e.contains(name), "{e}");
        }
        assert!(
            Scenario::parse("partition", None)
                .unwrap_err()
                .contains("needs a node")
        );
        assert!(
            Scenario::parse("slice-crash", Some("web"))
                .unwrap_err()
                .contains("expected BLUEPRINT/SLICE, found 'web'")
        );
        assert!(Scenario::parse("leader-loss", Some("n1")).is_err());
    }

    #[test]
    fn a_drill_that_would_take_quorum_away_is_refused() {
        let mut f = facts(3);
        f.members[2].reachable = false;
        let e = plan(&Scenario::Partition { node: "n2".into() }, &f, None).unwrap_err();
        assert_eq!(
            e,
            Refusal::Unsafe(
                "cutting off 'n2' would leave 1 of 3 voters up and a quorum needs 2: bring back 'n3' first".into()
            )
        );
        // Cutting off the one already down leaves the quorum it had.
        assert!(plan(&Scenario::Partition { node: "n3".into() }, &f, None).is_ok());
        // Down by the leader's verdict counts as down.
        let mut f = facts(3);
        f.members[1].health = Health::Down;
        assert!(plan(&Scenario::LeaderLoss, &f, None).is_err());
        // One voter: there is nobody to take over.
        let e = plan(&Scenario::LeaderLoss, &facts(1), None).unwrap_err();
        assert!(e.to_string().contains("add voters first"), "{e}");
        // Five voters, one down: one more may go.
        let mut f = facts(5);
        f.members[4].reachable = false;
        assert!(plan(&Scenario::LeaderLoss, &f, None).is_ok());
    }

    #[test]
    fn a_second_drill_is_refused_while_one_runs() {
        let mut f = facts(3);
        f.members[2].isolated = true;
        let e = plan(
            &Scenario::SliceCrash {
                blueprint: "a".into(),
                slice: "b".into(),
            },
            &f,
            None,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("another drill is running: 'n3'"),
            "{e}"
        );
        // A slice-crash cuts nobody off: the driving node says it runs one.
        let mut f = facts(3);
        f.members[1].drilling = true;
        let e = plan(&Scenario::LeaderLoss, &f, None).unwrap_err();
        assert!(e.to_string().contains("driven by 'n2'"), "{e}");
    }

    #[test]
    fn plans_name_their_target_hold_and_bound() {
        let f = facts(3);
        let p = plan(&Scenario::LeaderLoss, &f, None).unwrap();
        assert_eq!(p.node_name.as_deref(), Some("n1"));
        assert_eq!(p.hold_ms, LEADER_LOSS_HOLD.as_millis() as u64);
        let p = plan(
            &Scenario::Partition { node: "n3".into() },
            &f,
            Some(Duration::from_secs(2)),
        )
        .unwrap();
        assert_eq!((p.node, p.hold_ms), (Some(3), 2_000));
        let p = plan(&Scenario::NodeLoss { node: "n2".into() }, &f, None).unwrap();
        assert_eq!(p.hold_ms, 40_000);
        assert!(
            plan(
                &Scenario::NodeLoss { node: "n2".into() },
                &f,
                Some(Duration::from_secs(5))
            )
            .is_err()
        );
        let e = plan(&Scenario::Partition { node: "n9".into() }, &f, None).unwrap_err();
        assert!(matches!(e, Refusal::Unknown(_)), "{e}");
        let mut f = facts(3);
        f.slice_instances = 0;
        let e = plan(
            &Scenario::SliceCrash {
                blueprint: "a".into(),
                slice: "b".into(),
            },
            &f,
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("no running instance"), "{e}");
        f.slice_known = false;
        let e = plan(
            &Scenario::SliceCrash {
                blueprint: "a".into(),
                slice: "b".into(),
            },
            &f,
            None,
        )
        .unwrap_err();
        assert!(matches!(e, Refusal::Unknown(_)), "{e}");
    }

    #[test]
    fn the_verdict_line_says_what_happened() {
        let r = DrillReport {
            scenario: "leader-loss".into(),
            new_leader: Some("n2".into()),
            leader_changed: true,
            leader_after_ms: Some(800),
            writes_resumed_after_ms: Some(1_100),
            recovered: true,
            ..DrillReport::default()
        };
        assert_eq!(
            r.verdict_line(),
            "leader-loss: new leader n2 after 0.8 s; writes resumed after 1.1 s; 0 errors; recovered"
        );
        let r = DrillReport {
            scenario: "partition".into(),
            target: Some("n3".into()),
            probe_writes: 40,
            probe_errors: 0,
            caught_up_after_ms: Some(120),
            recovered: true,
            ..DrillReport::default()
        };
        assert_eq!(
            r.verdict_line(),
            "partition: leader unchanged; writes continued (40 ok, 0 errors); n3 caught up after 0.1 s; recovered"
        );
        let r = DrillReport {
            scenario: "spot-interruption".into(),
            target: Some("n2".into()),
            decision: Some("d-4".into()),
            decided_after_ms: Some(300),
            moved_instances: Some(2),
            moved_after_ms: Some(3_100),
            drained_after_ms: Some(3_400),
            deadline_after_ms: Some(120_000),
            restored: true,
            recovered: true,
            ..DrillReport::default()
        };
        assert_eq!(
            r.verdict_line(),
            "spot-interruption: decision d-4 after 0.3 s; 2 instances moved after 3.1 s; n2 drained after 3.4 s (116.6 s before the deadline); restored; recovered"
        );
    }

    #[test]
    fn a_spot_drill_takes_a_ready_node_with_somewhere_to_go() {
        let s = Scenario::parse("spot-interruption", Some("n2")).unwrap();
        assert_eq!(s.target().as_deref(), Some("n2"));
        let p = plan(&s, &facts(3), None).unwrap();
        assert_eq!(p.hold_ms, 120_000);
        assert!(p.fault.contains("120.0 s ahead"), "{}", p.fault);
        assert!(Scenario::parse("spot-interruption", None).is_err());
        let mut f = facts(3);
        f.members[1].state = crate::domain::NodeState::Draining;
        let e = plan(&s, &f, None).unwrap_err();
        assert!(e.to_string().contains("aether undrain n2"), "{e}");
        let mut f = facts(2);
        f.members[0].state = crate::domain::NodeState::Drained;
        let e = plan(&s, &f, None).unwrap_err();
        assert!(e.to_string().contains("only ready node"), "{e}");
        let e = plan(&s, &facts(3), Some(Duration::from_secs(2))).unwrap_err();
        assert!(matches!(e, Refusal::Unknown(_)), "{e}");
    }
}
