//! Sleep and wake (`[power]`): the pure core that decides, every tick on the leader, which node
//! to put to sleep when the load fits on fewer nodes, which to wake ahead of load, what the
//! power loop does next (suspend a drained node, resume a waking one), and which waking node
//! is given up on. No I/O: the loop gathers [`PowerNode`]s and the load, and carries out the
//! [`Step`]s; sleep and wake themselves are proposals, decided like any other (safety, mode,
//! grace, veto).
//!
//! - Consolidation: a node may sleep when, without it, the measured load and the forecast peak
//!   stay within `target_utilisation` of the awake nodes' cores, its instances' reserved cores
//!   fit in the free cores of the others, it is not in `never_sleep`, and — if it is a voter —
//!   the awake voters left are still a majority of all voters (a sleeping voter still counts).
//!   The leader never sleeps (it runs the commands). That must hold for `idle_for` ([`Tracker`]) before a sleep is proposed.
//! - Wake: when the measured load, or the forecast within a sleeping node's wake time (the last
//!   one measured, else `resume_timeout`), exceeds `target_utilisation` of the awake cores, the
//!   node that wakes quickest is proposed to wake.
//! - A waking node not back within `resume_timeout` is marked down with the reason; the
//!   controller no longer counts on it (it is never proposed to wake or sleep again until an
//!   operator brings it back).
//! - One change at a time: while a node is going to sleep or waking, or a sleep or wake decision
//!   is open (proposed, pending), no other sleep or wake is proposed; an open sleep is proposed
//!   again only for its own node (so it stands rather than a second one being recorded).
//! - Spot notices: a node with one is never put to sleep (nor one with an open drain or
//!   undrain); while any node is being interrupted nothing is consolidated; power never sets a
//!   node with a notice back to ready (its drain is the interruption policy's).
//! - The leader is never suspended: a node going to sleep that leads now (after a failover)
//!   stays awake.

use super::brain::Proposal;
use crate::domain::{
    Action, Millis, NodeId, NodeState, PowerRecord, PowerState, SpotKind, human_millis,
};

/// The rule name of sleep and wake decisions.
pub const RULE: &str = "power";

/// The `[power]` settings the core needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// How long the load must fit on fewer nodes before a sleep is proposed.
    pub idle_for_ms: u64,
    /// How long a waking node has to come back; also the wake lead until one is measured.
    pub resume_timeout_ms: u64,
    /// Share of the awake cores the load may use, 0.1–1.0.
    pub target: f64,
    /// Nodes that never sleep, by name.
    pub never_sleep: Vec<String>,
}

/// One member as sleep and wake sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PowerNode {
    pub id: NodeId,
    pub name: String,
    /// Its state in the replicated store (`asleep` once suspended).
    pub state: NodeState,
    /// The leader has fresh metrics from it (liveness `ready`).
    pub live: bool,
    /// A Raft voter.
    pub voter: bool,
    /// The leader: it runs the commands, so it never sleeps.
    pub leader: bool,
    /// Its CPU cores (from its last sample; 0 when none came).
    pub cores: f64,
    /// Cores in use now.
    pub used: f64,
    /// Cores its instances reserve.
    pub reserved: f64,
    /// Instances placed on it.
    pub instances: u32,
    /// When its newest metrics sample arrived (Unix ms).
    pub seen_at: Option<Millis>,
    /// Its sleep-and-wake record; `None`: it never slept.
    pub power: Option<PowerRecord>,
    /// What its cloud announced about its machine, if anything (a spot notice).
    pub spot: Option<SpotKind>,
    /// The action of the open (proposed or pending) decision on it, if one.
    pub open: Option<Action>,
}

impl PowerNode {
    fn power_state(&self) -> PowerState {
        self.power
            .as_ref()
            .map(|p| p.state)
            .unwrap_or(PowerState::Awake)
    }

    /// Ready, live and counted on: its cores serve the load.
    fn awake(&self) -> bool {
        self.state == NodeState::Ready && self.live && self.power_state() != PowerState::Down
    }

    fn asleep(&self) -> bool {
        self.state == NodeState::Asleep && self.power_state() == PowerState::Asleep
    }

    /// The state power gives it when it stays awake: ready, unless a spot notice leaves it to
    /// the interruption policy (`None`: its state is left alone).
    fn awake_state(&self) -> Option<NodeState> {
        self.spot.is_none().then_some(NodeState::Ready)
    }

    fn open_sleep(&self) -> bool {
        matches!(self.open, Some(Action::Sleep { .. }))
    }

    fn open_wake(&self) -> bool {
        matches!(self.open, Some(Action::Wake { .. }))
    }
}

/// The cluster's load in cores: its workloads', which move when a node sleeps (what else
/// runs on a host stays with it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Load {
    /// Cores the slices use or reserve now, whichever is more, per slice.
    pub measured: f64,
    /// Forecast cores ahead: (when, cores), in time order.
    pub forecast: Vec<(Millis, f64)>,
}

impl Load {
    /// The highest of the measured load and the forecast up to `until`.
    fn peak_until(&self, until: Millis) -> f64 {
        self.forecast
            .iter()
            .filter(|(t, _)| *t <= until)
            .map(|(_, v)| *v)
            .fold(self.measured, f64::max)
    }

    /// The highest of the measured load and the whole forecast.
    fn peak(&self) -> f64 {
        self.peak_until(Millis::MAX)
    }
}

/// One slice's forecast for [`forecast_cores`]: its cores now, its load now in its unit, and
/// its forecast (when, load in that unit).
pub type SliceForecast = (f64, f64, Vec<(Millis, f64)>);

/// The cluster's forecast in cores: `measured` now, changed by each forecast slice's expected
/// change, scaled from its load unit to cores.
pub fn forecast_cores(measured: f64, parts: &[SliceForecast]) -> Vec<(Millis, f64)> {
    let mut at: std::collections::BTreeMap<Millis, f64> = std::collections::BTreeMap::new();
    for (cores, level, points) in parts {
        if *level <= 0.0 {
            continue;
        }
        for (t, v) in points {
            *at.entry(*t).or_insert(measured) += cores * (v / level - 1.0);
        }
    }
    at.into_iter().map(|(t, v)| (t, v.max(0.0))).collect()
}

/// What the loop remembers between ticks: since when the load has fitted on fewer nodes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tracker {
    pub fits_since: Option<Millis>,
}

/// What the power loop does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Propose a decision (sleep or wake), like any rule's proposal.
    Propose(Proposal),
    /// A node put to sleep is drained: run its suspend command.
    Suspend { node: NodeId, name: String },
    /// A node is waking: run its resume command (once per waking record, `since`).
    Resume {
        node: NodeId,
        name: String,
        since: Millis,
    },
    /// Write this record (and the node's state): back from sleep, or given up on.
    Record {
        record: PowerRecord,
        state: Option<NodeState>,
    },
}

/// Everything the core decides this tick (`now`), in the order the loop carries it out.
pub fn plan(
    nodes: &[PowerNode],
    load: &Load,
    s: &Settings,
    tracker: &mut Tracker,
    now: Millis,
) -> Vec<Step> {
    let mut steps = Vec::new();
    for n in nodes {
        let Some(p) = &n.power else { continue };
        match p.state {
            PowerState::Sleeping => steps.extend(sleeping(n, p, s, now)),
            PowerState::Waking => steps.push(waking(n, p, s, now)),
            // Back by other means (powered on by hand): ready again, counted on again.
            PowerState::Down if back(n, p) => steps.push(Step::Record {
                record: PowerRecord {
                    state: PowerState::Awake,
                    since: now,
                    reason: None,
                    ..p.clone()
                },
                state: Some(NodeState::Ready),
            }),
            _ => {}
        }
    }
    // One change at a time: a node going to sleep or waking, or an open wake decision.
    let changing = nodes.iter().any(|n| {
        matches!(n.power_state(), PowerState::Sleeping | PowerState::Waking) || n.open_wake()
    });
    let waking = nodes
        .iter()
        .any(|n| n.power_state() == PowerState::Waking || n.open_wake());
    if let Some(p) = wake(nodes, load, s, now).filter(|_| !waking) {
        tracker.fits_since = None;
        steps.push(Step::Propose(p));
        return steps;
    }
    match consolidate(nodes, load, s).filter(|_| !changing) {
        Some(fit) => {
            let since = *tracker.fits_since.get_or_insert(now);
            if now.saturating_sub(since) >= s.idle_for_ms {
                steps.push(Step::Propose(fit.proposal(s, now - since)));
            }
        }
        None => tracker.fits_since = None,
    }
    steps
}

/// Its metrics arrived after the record was written, and it is live.
fn back(n: &PowerNode, p: &PowerRecord) -> bool {
    n.live && n.seen_at.is_some_and(|t| t > p.since)
}

/// A node going to sleep: suspended once drained; kept awake when an operator made it ready
/// again, when it leads now, or when it has not drained within `resume_timeout` (instances
/// that cannot stop). Kept awake, it is ready again unless it has a spot notice.
fn sleeping(n: &PowerNode, p: &PowerRecord, s: &Settings, now: Millis) -> Option<Step> {
    let awake = |reason: Option<String>, state| Step::Record {
        record: PowerRecord {
            state: PowerState::Awake,
            since: now,
            reason,
            ..p.clone()
        },
        state,
    };
    match n.state {
        // It runs the commands now (a failover since the sleep was decided).
        NodeState::Drained | NodeState::Draining if n.leader => Some(awake(
            Some(format!(
                "{} leads the cluster now and runs the power commands: it stays awake",
                n.name
            )),
            n.awake_state(),
        )),
        NodeState::Drained => Some(Step::Suspend {
            node: n.id,
            name: n.name.clone(),
        }),
        NodeState::Ready => Some(awake(None, None)),
        NodeState::Draining if now.saturating_sub(p.since) > s.resume_timeout_ms => Some(awake(
            Some(format!(
                "not drained within {} (power.resume_timeout): it stays awake",
                human_millis(s.resume_timeout_ms)
            )),
            n.awake_state(),
        )),
        _ => None,
    }
}

/// A waking node: back (its metrics arrived after the resume), given up on (past
/// `resume_timeout`), or its resume command is due.
fn waking(n: &PowerNode, p: &PowerRecord, s: &Settings, now: Millis) -> Step {
    if back(n, p) {
        let took = n.seen_at.unwrap_or(now).saturating_sub(p.since);
        return Step::Record {
            record: PowerRecord {
                state: PowerState::Awake,
                since: now,
                wake_ms: Some(took),
                reason: None,
                ..p.clone()
            },
            state: Some(NodeState::Ready),
        };
    }
    let waited = now.saturating_sub(p.since);
    if waited > s.resume_timeout_ms {
        return Step::Record {
            record: PowerRecord {
                state: PowerState::Down,
                since: now,
                reason: Some(format!(
                    "not back {} after its resume (power.resume_timeout {}): check its power \
                     and network; the controller no longer counts on it",
                    human_millis(waited),
                    human_millis(s.resume_timeout_ms)
                )),
                ..p.clone()
            },
            state: None,
        };
    }
    Step::Resume {
        node: n.id,
        name: n.name.clone(),
        since: p.since,
    }
}

/// The wake time to count on for `n`: the one measured last, else `resume_timeout`.
fn wake_lead(n: &PowerNode, s: &Settings) -> (u64, bool) {
    match n.power.as_ref().and_then(|p| p.wake_ms) {
        Some(ms) => (ms, true),
        None => (s.resume_timeout_ms, false),
    }
}

fn wake_line(n: &PowerNode, s: &Settings) -> String {
    match wake_lead(n, s) {
        (ms, true) => format!("{} woke in {} last time", n.name, human_millis(ms)),
        (ms, false) => format!(
            "{}'s wake time is not measured yet: {} (power.resume_timeout) is assumed",
            n.name,
            human_millis(ms)
        ),
    }
}

/// A proposal to wake the sleeping node that wakes quickest, when the load within its wake
/// time needs more than the awake cores give.
fn wake(nodes: &[PowerNode], load: &Load, s: &Settings, now: Millis) -> Option<Proposal> {
    let awake: f64 = nodes
        .iter()
        .filter(|n| n.awake())
        .map(|n| n.cores)
        .fold(0.0, |a, b| a + b);
    let capacity = s.target * awake;
    let n = nodes
        .iter()
        .filter(|n| n.asleep())
        .min_by_key(|n| (wake_lead(n, s).0, n.id))?;
    let (lead, _) = wake_lead(n, s);
    let peak = load.peak_until(now.saturating_add(lead));
    if peak <= capacity {
        return None;
    }
    let why = if load.measured > capacity {
        format!(
            "the slices need {:.1} cores, above {:.0}% of the {:.1} awake cores ({capacity:.1})",
            load.measured,
            s.target * 100.0,
            awake
        )
    } else {
        format!(
            "the forecast reaches {peak:.1} cores within {}, above {:.0}% of the {:.1} awake \
             cores ({capacity:.1}); waking now has {} ready in time",
            human_millis(lead),
            s.target * 100.0,
            awake,
            n.name
        )
    };
    Some(Proposal {
        rule: RULE.into(),
        action: Action::Wake {
            node: n.id,
            name: n.name.clone(),
        },
        layers: vec![format!("rules:{RULE}"), "forecast".into()],
        reasoning: vec![why, wake_line(n, s)],
        inputs: vec![
            ("cores_awake".into(), format!("{awake:.1}")),
            ("cores_used".into(), format!("{:.1}", load.measured)),
            ("forecast_peak".into(), format!("{peak:.1}")),
            ("target_utilisation".into(), format!("{:.2}", s.target)),
            ("wake_lead".into(), human_millis(lead)),
        ],
    })
}

/// A node the load fits without, and the figures that show it.
#[derive(Debug, Clone, PartialEq)]
struct Fit<'a> {
    node: &'a PowerNode,
    awake: f64,
    rest: f64,
    measured: f64,
    peak: f64,
    free_elsewhere: f64,
    voters: usize,
    voters_awake: usize,
}

impl Fit<'_> {
    fn proposal(&self, s: &Settings, fitted_ms: u64) -> Proposal {
        let n = self.node;
        let mut reasoning = vec![
            format!(
                "the load fits without {}: {:.1} cores needed now and {:.1} at the forecast peak, \
                 within {:.0}% of the {:.1} cores left ({:.1}), for {} (power.idle_for {})",
                n.name,
                self.measured,
                self.peak,
                s.target * 100.0,
                self.rest,
                s.target * self.rest,
                human_millis(fitted_ms),
                human_millis(s.idle_for_ms)
            ),
            format!(
                "its {} instances ({:.1} cores reserved) move to the {:.1} cores free elsewhere",
                n.instances, n.reserved, self.free_elsewhere
            ),
        ];
        if n.voter {
            reasoning.push(format!(
                "{} of {} voters stay awake, a majority",
                self.voters_awake - 1,
                self.voters
            ));
        }
        reasoning.push(wake_line(n, s));
        Proposal {
            rule: RULE.into(),
            action: Action::Sleep {
                node: n.id,
                name: n.name.clone(),
            },
            layers: vec![format!("rules:{RULE}"), "forecast".into()],
            reasoning,
            inputs: vec![
                ("cores_awake".into(), format!("{:.1}", self.awake)),
                ("cores_left".into(), format!("{:.1}", self.rest)),
                ("cores_used".into(), format!("{:.1}", self.measured)),
                ("forecast_peak".into(), format!("{:.1}", self.peak)),
                ("target_utilisation".into(), format!("{:.2}", s.target)),
                ("instances".into(), n.instances.to_string()),
                ("reserved".into(), format!("{:.1}", n.reserved)),
                ("voters_awake".into(), self.voters_awake.to_string()),
                ("voters".into(), self.voters.to_string()),
            ],
        }
    }
}

/// The node the load can do without, if one: the cheapest to move (fewest reserved cores,
/// then least used, then the newest). None while a node is being interrupted; never one with
/// a spot notice or another open decision on it.
fn consolidate<'a>(nodes: &'a [PowerNode], load: &Load, s: &Settings) -> Option<Fit<'a>> {
    let awake: Vec<&PowerNode> = nodes.iter().filter(|n| n.awake()).collect();
    let interrupting = nodes
        .iter()
        .any(|n| matches!(n.spot, Some(SpotKind::Interruption { .. })));
    if awake.len() < 2 || interrupting {
        return None;
    }
    // An open sleep is proposed again for its own node only.
    let open_sleep = nodes.iter().find(|n| n.open_sleep()).map(|n| n.id);
    let total: f64 = awake.iter().map(|n| n.cores).fold(0.0, |a, b| a + b);
    let peak = load.peak();
    let voters = nodes.iter().filter(|n| n.voter).count();
    let voters_awake = awake.iter().filter(|n| n.voter).count();
    let mut candidates: Vec<Fit> = awake
        .iter()
        .filter(|n| !n.leader && !s.never_sleep.contains(&n.name) && n.cores > 0.0)
        .filter(|n| n.spot.is_none() && open_sleep.is_none_or(|id| id == n.id))
        .filter(|n| n.open.is_none() || n.open_sleep())
        .filter(|n| !n.voter || voters_awake - 1 > voters / 2)
        .filter_map(|n| {
            let rest = total - n.cores;
            let free_elsewhere: f64 = awake
                .iter()
                .filter(|o| o.id != n.id)
                .map(|o| (o.cores - o.reserved).max(0.0))
                .fold(0.0, |a, b| a + b);
            (peak <= s.target * rest && n.reserved <= free_elsewhere).then_some(Fit {
                node: n,
                awake: total,
                rest,
                measured: load.measured,
                peak,
                free_elsewhere,
                voters,
                voters_awake,
            })
        })
        .collect();
    candidates.sort_by(|a, b| {
        a.node
            .reserved
            .total_cmp(&b.node.reserved)
            .then(a.node.used.total_cmp(&b.node.used))
            .then(b.node.id.cmp(&a.node.id))
    });
    candidates.into_iter().next()
}

/// What is stuck on a leader without `[power] enabled`, if anything: the nodes going to sleep,
/// asleep or waking in `records`, which nothing suspends, resumes or wakes there.
pub fn stuck_without_power<'a>(
    records: impl IntoIterator<Item = &'a PowerRecord>,
    leader: &str,
) -> Option<String> {
    let stuck: Vec<String> = records
        .into_iter()
        .filter_map(|r| {
            let what = match r.state {
                PowerState::Sleeping => "going to sleep",
                PowerState::Asleep => "asleep",
                PowerState::Waking => "waking",
                PowerState::Awake | PowerState::Down => return None,
            };
            Some(format!("{} is {what}", r.name))
        })
        .collect();
    (!stuck.is_empty()).then(|| {
        format!(
            "{} but [power] is not enabled on this leader ({leader}): nothing suspends, resumes or \
             wakes them; enable [power] with the same settings on every node that may lead",
            stuck.join(", ")
        )
    })
}

pub mod exec;
pub mod run;

#[cfg(test)]
mod tests;
