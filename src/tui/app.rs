//! The console's state: what the node sent ([`Data`]) and where the operator is (view,
//! selection, filter, dialog). Keys become [`Effect`]s here; there is no I/O and no terminal
//! in this module, so it is unit-tested as plain data.

use std::collections::{BTreeMap, HashMap, VecDeque};

mod input;

use super::keymap::Keymap;
use crate::admin::protocol::{
    BlueprintView, LiveNode, LiveUpdate, MemberView, NodeHistory, RolloutView, SliceLoad,
    StatusView, Watch,
};
use crate::controller::model::ModelStatus;
use crate::domain::{AuditRecord, ControllerMode, Decision, Millis, NodeState, Slice};
use crate::raft::types::Command;

/// Sparkline points kept per node and series.
pub const SPARK_POINTS: usize = 120;
/// Audit records kept.
const EVENTS: usize = 2000;
/// Decisions kept.
const DECISIONS: usize = 500;
/// How long a message stays in the status bar.
const FLASH_MS: u64 = 6_000;
/// The chart ranges of the Nodes view, in seconds.
pub const RANGES: [u64; 5] = [300, 900, 1800, 3600, 7200];

/// The five views, in key order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Overview,
    Nodes,
    Blueprints,
    Controller,
    Events,
}

impl View {
    pub const ALL: [View; 5] = [
        View::Overview,
        View::Nodes,
        View::Blueprints,
        View::Controller,
        View::Events,
    ];

    pub fn index(self) -> usize {
        View::ALL.iter().position(|v| *v == self).expect("listed")
    }

    pub fn title(self) -> &'static str {
        match self {
            View::Overview => "Overview",
            View::Nodes => "Nodes",
            View::Blueprints => "Blueprints",
            View::Controller => "Controller",
            View::Events => "Events",
        }
    }
}

/// What the app asks of the outside world.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// A write through Raft, confirmed by the operator; `what` names it in the status bar.
    Write {
        cmd: Command,
        what: String,
    },
    /// Move the live feed's watch (the Nodes view's node and range).
    Watch(Watch),
    /// Read the last lines of `blueprint/slice`'s instance logs (the link task asks the node on
    /// a connection of its own, as for a write; the answer comes back as an input).
    Logs {
        target: String,
    },
    /// Propose advice item `id` (`a-3`) as a decision (`aether advice take`): the link task
    /// asks the node on a connection of its own; the outcome comes back as a status line.
    Take {
        id: String,
    },
    Quit,
}

/// The log tail shown under a slice's instances.
#[derive(Debug, Clone, PartialEq)]
pub struct LogTail {
    /// `blueprint/slice`.
    pub target: String,
    /// When it was asked for (the node's clock).
    pub asked: Millis,
    /// `None` while the answer is on its way; the chunks per instance, or why not.
    pub chunks: Option<Result<Vec<crate::deploy::logs::LogChunk>, String>>,
}

/// Lines of log asked for per instance.
pub const LOG_TAIL: u32 = 20;

/// A state change waiting for the operator's yes.
#[derive(Debug, Clone, PartialEq)]
pub struct Confirm {
    /// `Veto d-12?`
    pub title: String,
    /// The exact action, e.g. `scale shop/web 2 → 4 (pending, applies in 12s)`.
    pub detail: Vec<String>,
    pub cmd: Command,
    /// Past tense for the status bar: `vetoed d-12`.
    pub what: String,
}

/// Where keys go.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Normal,
    /// Typing a filter after `/`.
    Filter,
    /// Typing a command after `:`.
    Command,
    Confirm(Box<Confirm>),
}

/// The connection to the node.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkState {
    Connecting,
    Live,
    /// Lost; the data shown is as of `since`.
    Reconnecting {
        reason: String,
        since: Millis,
    },
}

/// A message in the status bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Flash {
    pub text: String,
    pub error: bool,
    pub at: Millis,
}

/// Sparkline history of one node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spark {
    pub cpu: VecDeque<f32>,
    pub mem: VecDeque<f32>,
    pub gpu: VecDeque<f32>,
}

/// What the node sent, merged frame by frame.
#[derive(Debug, Clone, Default)]
pub struct Data {
    pub status: Option<StatusView>,
    pub leader: Option<String>,
    pub snapshot_age_ms: Option<u64>,
    /// Whether any metrics frame arrived.
    pub have_metrics: bool,
    pub nodes: Vec<LiveNode>,
    pub sparks: HashMap<String, Spark>,
    pub blueprints: Option<Vec<BlueprintView>>,
    pub loads: Vec<SliceLoad>,
    /// Newest first.
    pub decisions: Vec<Decision>,
    /// Oldest first.
    pub events: VecDeque<AuditRecord>,
    pub model: Option<ModelStatus>,
    pub history: Option<NodeHistory>,
    /// Per slice with rollouts: its open one, else its latest.
    pub rollouts: Vec<RolloutView>,
    /// The leader's strategic layer: its latest advice (`None`: off, or not asked yet).
    pub advice: Option<crate::domain::AdviceView>,
    /// The node's clock minus ours, in ms (grace countdowns follow the node's clock).
    pub clock_offset: i64,
}

/// One node row: its membership and its metrics, either of which may be missing.
pub struct NodeRow<'a> {
    pub name: String,
    pub member: Option<&'a MemberView>,
    pub metrics: Option<&'a LiveNode>,
}

/// One slice row of the Blueprints view.
pub struct SliceRow<'a> {
    pub blueprint: &'a BlueprintView,
    pub slice: &'a Slice,
}

impl SliceRow<'_> {
    pub fn target(&self) -> String {
        format!("{}/{}", self.blueprint.blueprint.name, self.slice.name)
    }

    /// Its open rollout, else its latest, as the node sent it.
    pub fn rollout<'d>(&self, data: &'d Data) -> Option<&'d RolloutView> {
        data.rollouts
            .iter()
            .find(|r| r.blueprint == self.blueprint.blueprint.name && r.slice == self.slice.name)
    }

    /// The rows of its instances.
    pub fn instances(&self) -> impl Iterator<Item = &crate::admin::protocol::InstanceView> {
        let prefix = format!("{}/", self.target());
        self.blueprint
            .instances
            .iter()
            .filter(move |i| i.instance.starts_with(&prefix))
    }
}

/// The console.
pub struct App {
    pub data: Data,
    pub link: LinkState,
    pub view: View,
    pub readonly: bool,
    pub keys: Keymap,
    pub mode: Mode,
    pub help: bool,
    /// The selected row's details are open.
    pub detail: bool,
    /// Scroll offset of the details or help.
    pub scroll: u16,
    /// The furthest `scroll` goes (the last line at the bottom), as the last draw measured it.
    pub scroll_max: std::cell::Cell<u16>,
    /// The text being typed after `/` or `:`.
    pub input: String,
    pub flash: Option<Flash>,
    /// Index into [`RANGES`].
    pub range: usize,
    /// The time shown: the node's clock as of the last tick.
    pub now: Millis,
    /// Terminal size, for page moves and chart widths.
    pub width: u16,
    pub height: u16,
    pub quit: bool,
    /// The log tail of the slice whose instances are open.
    pub logs: Option<LogTail>,
    sel: [usize; 5],
    filters: [String; 5],
    watching: Watch,
}

impl App {
    pub fn new(keys: Keymap, readonly: bool) -> App {
        App {
            data: Data::default(),
            link: LinkState::Connecting,
            view: View::Overview,
            readonly,
            keys,
            mode: Mode::Normal,
            help: false,
            detail: false,
            scroll: 0,
            scroll_max: std::cell::Cell::new(u16::MAX),
            input: String::new(),
            flash: None,
            range: 1,
            now: 0,
            width: 80,
            height: 24,
            quit: false,
            logs: None,
            sel: [0; 5],
            filters: Default::default(),
            watching: Watch::default(),
        }
    }

    /// Merge one frame of the live feed, received at `local_now` on our clock.
    pub fn apply(&mut self, u: LiveUpdate, local_now: Millis) {
        let d = &mut self.data;
        if u.full {
            let offset = d.clock_offset;
            *d = Data {
                clock_offset: offset,
                ..Data::default()
            };
        }
        d.clock_offset = u.at as i64 - local_now as i64;
        if let Some(s) = u.status {
            d.status = Some(*s);
        }
        if let Some(m) = u.metrics {
            d.have_metrics = true;
            d.leader = m.leader;
            d.snapshot_age_ms = m.snapshot_age_ms;
            for n in &m.nodes {
                let s = d.sparks.entry(n.name.clone()).or_default();
                for (series, points) in &n.spark {
                    let ring = match series.as_str() {
                        "cpu" => &mut s.cpu,
                        "mem" => &mut s.mem,
                        "gpu" => &mut s.gpu,
                        _ => continue,
                    };
                    ring.extend(points.iter().copied());
                    while ring.len() > SPARK_POINTS {
                        ring.pop_front();
                    }
                }
            }
            d.sparks.retain(|k, _| m.nodes.iter().any(|n| n.name == *k));
            d.nodes = m.nodes;
        }
        if let Some(b) = u.blueprints {
            d.blueprints = Some(b);
        }
        if let Some(l) = u.loads {
            d.loads = l;
        }
        if let Some(m) = u.model {
            d.model = Some(*m);
        }
        if let Some(h) = u.history {
            d.history = Some(h);
        }
        if let Some(r) = u.rollouts {
            d.rollouts = r;
        }
        if let Some(a) = u.advice {
            // An empty view (no leader's name) says the advice is gone.
            d.advice = Some(*a).filter(|a| !a.node.is_empty());
        }
        for dec in u.decisions {
            match d.decisions.iter_mut().find(|x| x.id == dec.id) {
                Some(x) => *x = dec,
                None => d.decisions.push(dec),
            }
        }
        d.decisions.sort_by_key(|d| std::cmp::Reverse(d.id));
        d.decisions.truncate(DECISIONS);
        d.events.extend(u.events);
        while d.events.len() > EVENTS {
            d.events.pop_front();
        }
        self.link = LinkState::Live;
        self.clamp_selection();
    }

    /// The link went down: keep the data, say so.
    pub fn lost(&mut self, reason: String) {
        if !matches!(self.link, LinkState::Reconnecting { .. }) {
            self.link = LinkState::Reconnecting {
                reason,
                since: self.now,
            };
        } else if let LinkState::Reconnecting { reason: r, .. } = &mut self.link {
            *r = reason;
        }
    }

    /// Advance the clock shown to `local_now` (our clock) plus the node's offset.
    pub fn tick(&mut self, local_now: Millis) {
        self.now = (local_now as i64 + self.data.clock_offset).max(0) as Millis;
        if self
            .flash
            .as_ref()
            .is_some_and(|f| self.now.saturating_sub(f.at) > FLASH_MS)
        {
            self.flash = None;
        }
    }

    /// The log tail of `target` arrived (or could not be read).
    pub fn logs_arrived(
        &mut self,
        target: String,
        r: Result<Vec<crate::deploy::logs::LogChunk>, String>,
    ) {
        if let Some(l) = self.logs.as_mut().filter(|l| l.target == target) {
            l.chunks = Some(r);
        }
    }

    /// A write finished: `Ok(what)` or the node's error.
    pub fn done(&mut self, r: Result<String, String>) {
        match r {
            Ok(what) => self.say(what, false),
            Err(e) => self.say(e, true),
        }
    }

    pub fn say(&mut self, text: impl Into<String>, error: bool) {
        self.flash = Some(Flash {
            text: text.into(),
            error,
            at: self.now,
        });
    }

    /// The list behind the current view: Overview and Nodes share the node list, its
    /// selection and its filter.
    fn list(&self) -> usize {
        match self.view {
            View::Overview => View::Nodes.index(),
            v => v.index(),
        }
    }

    /// The filter of the current view (`!` first: rows that do not match).
    pub fn filter(&self) -> &str {
        &self.filters[self.list()]
    }

    /// The selected row of the current view, among the filtered rows.
    pub fn selected(&self) -> usize {
        self.sel[self.list()]
    }

    fn matches(&self, text: &str) -> bool {
        let f = self.filter();
        let (invert, needle) = match f.strip_prefix('!') {
            Some(n) => (true, n),
            None => (false, f),
        };
        if needle.is_empty() {
            return true;
        }
        text.to_lowercase().contains(&needle.to_lowercase()) != invert
    }

    /// Nodes, by name: the members joined with their metrics.
    pub fn nodes(&self) -> Vec<NodeRow<'_>> {
        let mut rows: BTreeMap<String, NodeRow<'_>> = BTreeMap::new();
        if let Some(s) = &self.data.status {
            for m in &s.members {
                rows.insert(
                    m.name.clone(),
                    NodeRow {
                        name: m.name.clone(),
                        member: Some(m),
                        metrics: None,
                    },
                );
            }
        }
        for n in &self.data.nodes {
            rows.entry(n.name.clone())
                .or_insert_with(|| NodeRow {
                    name: n.name.clone(),
                    member: None,
                    metrics: None,
                })
                .metrics = Some(n);
        }
        rows.into_values()
            .filter(|r| {
                let mut text = r.name.clone();
                if let Some(m) = r.member {
                    text.push_str(&format!(" {} {} {}", m.role, m.state, m.health));
                    if m.leader {
                        text.push_str(" leader");
                    }
                }
                self.matches(&text)
            })
            .collect()
    }

    /// Slices of every stored blueprint, filtered.
    pub fn slices(&self) -> Vec<SliceRow<'_>> {
        let Some(bps) = &self.data.blueprints else {
            return Vec::new();
        };
        bps.iter()
            .flat_map(|b| {
                b.blueprint.slices.iter().map(move |s| SliceRow {
                    blueprint: b,
                    slice: s,
                })
            })
            .filter(|r| self.matches(&r.target()))
            .collect()
    }

    /// Decisions, newest first, filtered.
    pub fn decisions(&self) -> Vec<&Decision> {
        self.data
            .decisions
            .iter()
            .filter(|d| {
                self.matches(&format!(
                    "{} {} {} {}",
                    d.name(),
                    d.status.word(),
                    d.action,
                    d.rule
                ))
            })
            .collect()
    }

    /// The drill running now, from the audit trail: the newest drill record when it is a start
    /// (`partition started on n3`) no older than a drill can last; `None` once it ended.
    pub fn running_drill(&self) -> Option<String> {
        /// The longest fault plus the recovery bound, with room: a start record older than
        /// this belongs to a drill whose driver died (its fault has healed by itself).
        const DRILL_MAX_MS: u64 = 10 * 60 * 1000;
        let last = self
            .data
            .events
            .iter()
            .rev()
            .find(|e| e.what.starts_with("drill "))?;
        let what = last.what.strip_prefix("drill ")?;
        let (head, _) = what.split_once(':').unwrap_or((what, ""));
        (head.contains(" started") && self.now.saturating_sub(last.at) < DRILL_MAX_MS)
            .then(|| head.to_string())
    }

    /// Audit records, newest first, filtered.
    pub fn events(&self) -> Vec<&AuditRecord> {
        self.data
            .events
            .iter()
            .rev()
            .filter(|e| self.matches(&format!("{} {} {}", e.actor, e.what, e.outcome)))
            .collect()
    }

    fn rows(&self) -> usize {
        match self.view {
            View::Overview | View::Nodes => self.nodes().len(),
            View::Blueprints => self.slices().len(),
            View::Controller => self.decisions().len(),
            View::Events => self.events().len(),
        }
    }

    fn clamp_selection(&mut self) {
        for v in View::ALL {
            let saved = self.view;
            self.view = v;
            let n = self.rows();
            self.view = saved;
            let s = &mut self.sel[v.index()];
            *s = (*s).min(n.saturating_sub(1));
        }
    }

    /// The slice selected in the Blueprints view: `blueprint/slice`.
    pub fn selected_slice(&self) -> Option<(String, String)> {
        self.slices()
            .get(self.sel[View::Blueprints.index()])
            .map(|r| (r.blueprint.blueprint.name.clone(), r.slice.name.clone()))
    }

    /// The decision selected in the Controller view.
    pub fn selected_decision(&self) -> Option<&Decision> {
        self.decisions()
            .get(self.sel[View::Controller.index()])
            .copied()
    }

    /// The node selected in the Overview and Nodes views (they share it).
    pub fn selected_node(&self) -> Option<String> {
        self.nodes()
            .get(self.sel[View::Nodes.index()])
            .map(|r| r.name.clone())
    }

    /// Rows per page of the current list.
    fn page(&self) -> usize {
        (self.height as usize).saturating_sub(12).max(3)
    }

    /// What the feed should chart now.
    fn wanted_watch(&self) -> Watch {
        match self.view {
            View::Nodes => Watch {
                node: self.selected_node(),
                range_secs: RANGES[self.range],
                points: self.width.saturating_sub(20).max(20) as u32,
            },
            _ => Watch::default(),
        }
    }

    /// The watch to ask for, if it changed.
    pub fn sync_watch(&mut self) -> Option<Effect> {
        let w = self.wanted_watch();
        (w != self.watching).then(|| {
            self.watching = w.clone();
            Effect::Watch(w)
        })
    }

    /// `pending, applies in 12s`, `proposed, needs an approve`, `applied` …
    pub fn status_text(&self, d: &Decision) -> String {
        match &d.status {
            crate::domain::DecisionStatus::Pending { deadline } => {
                if self.paused() {
                    "pending, held: the controller is paused".into()
                } else if *deadline > self.now {
                    format!(
                        "pending, applies in {}",
                        crate::domain::human_millis((*deadline - self.now).div_ceil(1000) * 1000)
                    )
                } else {
                    "pending, applying".into()
                }
            }
            crate::domain::DecisionStatus::Proposed if d.mode == ControllerMode::Propose => {
                "proposed, needs an approve".into()
            }
            _ => outcome(d),
        }
    }

    pub fn paused(&self) -> bool {
        self.data
            .status
            .as_ref()
            .and_then(|s| s.controller.as_ref())
            .is_some_and(|c| c.paused.is_some())
    }
}

/// A closed decision's status and who closed it: `applied by uid:1000@n1` (an operator's
/// approve), `applied at grace` (the controller, when a guarded decision's window ran out),
/// `applied (auto)` (the controller at once, mode auto), `vetoed by …`; otherwise the word.
pub fn outcome(d: &Decision) -> String {
    use crate::domain::DecisionStatus as S;
    match &d.status {
        // The leader's controller writes as `controller@<node>`.
        S::Applied { by, .. } if by == "controller" || by.starts_with("controller@") => {
            match d.mode {
                ControllerMode::Auto => "applied (auto)".into(),
                ControllerMode::Guarded => "applied at grace".into(),
                _ => "applied by controller".into(),
            }
        }
        S::Applied { by, .. } => format!("applied by {by}"),
        S::Vetoed { by, .. } => format!("vetoed by {by}"),
        s => s.word().into(),
    }
}

#[cfg(test)]
mod tests;
