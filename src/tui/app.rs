//! The console's state: what the node sent ([`Data`]) and where the operator is (view,
//! selection, filter, dialog). Keys become [`Effect`]s here; there is no I/O and no terminal
//! in this module, so it is unit-tested as plain data.

use std::collections::{BTreeMap, HashMap, VecDeque};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::keymap::{Action, Keymap};
use crate::admin::protocol::{
    BlueprintView, LiveNode, LiveUpdate, MemberView, NodeHistory, SliceLoad, StatusView, Watch,
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
    Quit,
}

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

    /// Handle one key; what it asks of the outside world.
    pub fn key(&mut self, e: KeyEvent) -> Vec<Effect> {
        let mut out = Vec::new();
        match self.mode.clone() {
            Mode::Normal => self.normal_key(e, &mut out),
            Mode::Filter => self.filter_key(e),
            Mode::Command => self.command_key(e, &mut out),
            Mode::Confirm(c) => self.confirm_key(e, *c, &mut out),
        }
        out.extend(self.sync_watch());
        out
    }

    fn set_view(&mut self, v: View) {
        self.view = v;
        self.detail = false;
        self.help = false;
        self.scroll = 0;
    }

    fn move_sel(&mut self, to: impl Fn(usize, usize) -> usize) {
        if self.detail || self.help {
            let max = usize::from(self.scroll_max.get());
            // From where the view is (the text may have shrunk or the terminal grown).
            let at = usize::from(self.scroll).min(max);
            self.scroll = to(at, max + 1).min(max) as u16;
            return;
        }
        let n = self.rows();
        let i = self.list();
        self.sel[i] = to(self.sel[i], n).min(n.saturating_sub(1));
    }

    fn normal_key(&mut self, e: KeyEvent, out: &mut Vec<Effect>) {
        let Some(a) = self.keys.action(&e) else {
            return;
        };
        if self.help
            && !matches!(
                a,
                Action::Help
                    | Action::Back
                    | Action::Quit
                    | Action::Down
                    | Action::Up
                    | Action::PageDown
                    | Action::PageUp
                    | Action::Top
                    | Action::Bottom
            )
        {
            self.help = false;
        }
        let page = self.page();
        match a {
            Action::Quit => {
                self.quit = true;
                out.push(Effect::Quit);
            }
            Action::Help => {
                self.help = !self.help;
                self.scroll = 0;
            }
            Action::Overview => self.set_view(View::Overview),
            Action::Nodes => self.set_view(View::Nodes),
            Action::Blueprints => self.set_view(View::Blueprints),
            Action::Controller => self.set_view(View::Controller),
            Action::Events => self.set_view(View::Events),
            Action::NextView => self.set_view(View::ALL[(self.view.index() + 1) % 5]),
            Action::PrevView => self.set_view(View::ALL[(self.view.index() + 4) % 5]),
            Action::Down => self.move_sel(|s, _| s + 1),
            Action::Up => self.move_sel(|s, _| s.saturating_sub(1)),
            Action::Top => self.move_sel(|_, _| 0),
            Action::Bottom => self.move_sel(|_, n| n.saturating_sub(1)),
            Action::PageDown => self.move_sel(|s, _| s + page),
            Action::PageUp => self.move_sel(|s, _| s.saturating_sub(page)),
            Action::Details => {
                if self.view == View::Overview {
                    if self.rows() > 0 {
                        self.set_view(View::Nodes);
                    }
                } else if self.rows() > 0 {
                    self.detail = true;
                    self.scroll = 0;
                }
            }
            Action::Back => {
                if self.help {
                    self.help = false;
                } else if self.detail {
                    self.detail = false;
                } else if !self.filter().is_empty() {
                    let i = self.list();
                    self.filters[i].clear();
                }
            }
            Action::Filter => {
                self.mode = Mode::Filter;
                self.input = self.filter().to_string();
            }
            Action::Command => {
                self.mode = Mode::Command;
                self.input.clear();
            }
            Action::Veto | Action::Approve => {
                let verb = if a == Action::Veto { "veto" } else { "approve" };
                if self.refuse_readonly(verb) {
                    return;
                }
                if self.view != View::Controller {
                    let k = self.keys.keys_of(Action::Controller);
                    self.say(
                        format!("{verb}: select a decision in the Controller view ({k}) first"),
                        true,
                    );
                    return;
                }
                match self.selected_decision().map(|d| d.id) {
                    Some(id) => self.ask_decision(verb, id, None),
                    None => self.say(format!("{verb}: no decision selected"), true),
                }
            }
            Action::Pause => {
                if self.refuse_readonly("pause/resume") {
                    return;
                }
                let paused = self
                    .data
                    .status
                    .as_ref()
                    .and_then(|s| s.controller.as_ref())
                    .is_some_and(|c| c.paused.is_some());
                self.ask_pause(!paused, None);
            }
            Action::Narrower | Action::Wider => {
                if self.view != View::Nodes {
                    self.say("the chart range applies to the Nodes view (2)", true);
                    return;
                }
                self.range = if a == Action::Narrower {
                    self.range.saturating_sub(1)
                } else {
                    (self.range + 1).min(RANGES.len() - 1)
                };
            }
        }
    }

    fn refuse_readonly(&mut self, what: &str) -> bool {
        if self.readonly {
            self.say(
                format!("read-only console (--readonly): {what} is disabled"),
                true,
            );
        }
        self.readonly
    }

    /// Open the confirm dialog for vetoing or approving decision `id`.
    fn ask_decision(&mut self, verb: &str, id: u64, reason: Option<String>) {
        let Some(d) = self.data.decisions.iter().find(|d| d.id == id) else {
            self.say(
                format!(
                    "{verb}: no decision d-{id} in this console (it shows the newest {DECISIONS})"
                ),
                true,
            );
            return;
        };
        let open = d.status.is_open()
            || (verb == "veto" && d.mode == ControllerMode::Auto && d.status.word() == "applied");
        if !open {
            self.say(
                format!(
                    "{verb}: {} is {}; only proposed or pending decisions (or, in auto mode, applied ones for a veto) can be {}",
                    d.name(),
                    d.status.word(),
                    if verb == "veto" { "vetoed" } else { "approved" }
                ),
                true,
            );
            return;
        }
        let mut detail = vec![format!("{}  ({})", d.action, self.status_text(d))];
        if verb == "veto" {
            detail.push(if d.status.word() == "applied" {
                "the change is reverted and the same action on this target is held back".into()
            } else {
                "it will not run on any node; the same action on this target is held back".into()
            });
        } else {
            detail.push("it is applied now".into());
        }
        if let Some(r) = &reason {
            detail.push(format!("reason: {r}"));
        }
        let name = d.name();
        let (title, cmd, what) = if verb == "veto" {
            (
                format!("Veto {name}?"),
                Command::VetoDecision { id, reason },
                format!("vetoed {name}"),
            )
        } else {
            (
                format!("Approve {name}?"),
                Command::ApproveDecision { id },
                format!("approved {name}"),
            )
        };
        self.mode = Mode::Confirm(Box::new(Confirm {
            title,
            detail,
            cmd,
            what,
        }));
    }

    fn ask_pause(&mut self, pause: bool, reason: Option<String>) {
        let c = if pause {
            Confirm {
                title: "Pause the controller?".into(),
                detail: vec![
                    "no new decisions; pending ones are not applied while paused".into(),
                    format!("reason: {}", reason.as_deref().unwrap_or("(none)")),
                ],
                cmd: Command::PauseController { reason },
                what: "paused the controller".into(),
            }
        } else {
            Confirm {
                title: "Resume the controller?".into(),
                detail: vec!["it makes and applies decisions again".into()],
                cmd: Command::ResumeController,
                what: "resumed the controller".into(),
            }
        };
        self.mode = Mode::Confirm(Box::new(c));
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
            s => s.word().into(),
        }
    }

    pub fn paused(&self) -> bool {
        self.data
            .status
            .as_ref()
            .and_then(|s| s.controller.as_ref())
            .is_some_and(|c| c.paused.is_some())
    }

    fn filter_key(&mut self, e: KeyEvent) {
        let i = self.list();
        match e.code {
            KeyCode::Esc => {
                self.filters[i].clear();
                self.mode = Mode::Normal;
            }
            KeyCode::Enter => self.mode = Mode::Normal,
            KeyCode::Backspace => {
                self.input.pop();
                self.filters[i] = self.input.clone();
            }
            KeyCode::Char(c) if !e.modifiers.contains(KeyModifiers::CONTROL) => {
                self.input.push(c);
                self.filters[i] = self.input.clone();
            }
            KeyCode::Char('c') => {
                self.filters[i].clear();
                self.mode = Mode::Normal;
            }
            _ => {}
        }
        self.sel[i] = 0;
        self.clamp_selection();
    }

    fn command_key(&mut self, e: KeyEvent, out: &mut Vec<Effect>) {
        match e.code {
            KeyCode::Esc => self.mode = Mode::Normal,
            KeyCode::Char('c') if e.modifiers.contains(KeyModifiers::CONTROL) => {
                self.mode = Mode::Normal
            }
            KeyCode::Backspace if self.input.pop().is_none() => self.mode = Mode::Normal,
            KeyCode::Backspace => {}
            KeyCode::Enter => {
                self.mode = Mode::Normal;
                let line = std::mem::take(&mut self.input);
                self.run_command(line.trim(), out);
            }
            KeyCode::Char(c) => self.input.push(c),
            _ => {}
        }
    }

    /// The `:` commands, for the help and for errors.
    pub const COMMANDS: &'static [(&'static str, &'static str)] = &[
        ("veto ID [REASON]", "veto a decision (d-12 or 12)"),
        ("approve ID", "approve a decision"),
        ("pause [REASON]", "pause the controller"),
        ("resume", "resume the controller"),
        ("mode MODE", "observe, propose, guarded or auto"),
        ("drain NODE", "move every instance off a node"),
        ("undrain NODE", "let a node take instances again"),
        ("overview … events", "switch view (or 1-5)"),
        ("help", "this help"),
        ("q, quit", "quit"),
    ];

    fn run_command(&mut self, line: &str, out: &mut Vec<Effect>) {
        let mut words = line.split_whitespace();
        let Some(verb) = words.next() else {
            return;
        };
        let arg = words.next();
        let rest: Vec<&str> = words.collect();
        let rest = (!rest.is_empty()).then(|| rest.join(" "));
        let writes = [
            "veto", "approve", "pause", "resume", "mode", "drain", "undrain",
        ];
        if writes.contains(&verb) && self.refuse_readonly(verb) {
            return;
        }
        let need = |this: &mut App, what: &str| {
            this.say(
                format!(
                    ":{verb} needs {what}, e.g. ':{verb} {}'",
                    match what {
                        "a decision id" => "d-12",
                        "a mode" => "guarded",
                        _ => "n2",
                    }
                ),
                true,
            )
        };
        match verb {
            "q" | "quit" => {
                self.quit = true;
                out.push(Effect::Quit);
            }
            "help" | "h" => {
                self.help = true;
                self.scroll = 0;
            }
            "veto" | "approve" => match arg.map(crate::domain::parse_decision_id) {
                None => need(self, "a decision id"),
                Some(Err(e)) => self.say(e, true),
                Some(Ok(id)) => {
                    let reason = if verb == "veto" { rest } else { None };
                    self.ask_decision(verb, id, reason)
                }
            },
            "pause" => {
                let reason = match (arg, rest) {
                    (Some(a), Some(r)) => Some(format!("{a} {r}")),
                    (Some(a), None) => Some(a.to_string()),
                    _ => None,
                };
                self.ask_pause(true, reason)
            }
            "resume" => self.ask_pause(false, None),
            "mode" => match arg.map(str::parse::<ControllerMode>) {
                None => need(self, "a mode"),
                Some(Err(e)) => self.say(e, true),
                Some(Ok(mode)) => {
                    self.mode = Mode::Confirm(Box::new(Confirm {
                        title: format!("Set the controller's mode to {mode}?"),
                        detail: vec![match mode {
                            ControllerMode::Observe => "record decisions only; nothing is applied",
                            ControllerMode::Propose => "apply a decision only when an operator approves it",
                            ControllerMode::Guarded => "apply after the grace window unless vetoed",
                            ControllerMode::Auto => "apply at once; a veto reverts",
                        }
                        .into()],
                        cmd: Command::SetControllerMode {
                            mode,
                            grace_ms: None,
                        },
                        what: format!("mode set to {mode}"),
                    }))
                }
            },
            "drain" | "undrain" => {
                let Some(name) = arg else {
                    return need(self, "a node name");
                };
                let members = self
                    .data
                    .status
                    .as_ref()
                    .map(|s| s.members.clone())
                    .unwrap_or_default();
                let Some(m) = members.iter().find(|m| m.name == name) else {
                    let known: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
                    return self.say(
                        format!("no member named '{name}'; members: {}", known.join(", ")),
                        true,
                    );
                };
                let (state, title, detail) = if verb == "drain" {
                    (
                        NodeState::Draining,
                        format!("Drain {name}?"),
                        "replacements start elsewhere first, then its instances stop; nothing new is placed there",
                    )
                } else {
                    (
                        NodeState::Ready,
                        format!("Undrain {name}?"),
                        "placement may give it instances again",
                    )
                };
                self.mode = Mode::Confirm(Box::new(Confirm {
                    title,
                    detail: vec![detail.into()],
                    cmd: Command::SetNodeState { id: m.id, state },
                    what: format!("{verb}ed {name}"),
                }));
            }
            v => match View::ALL
                .iter()
                .position(|x| x.title().eq_ignore_ascii_case(v) || (x.index() + 1).to_string() == v)
            {
                Some(i) => self.set_view(View::ALL[i]),
                None => self.say(
                    format!(
                        "unknown command ':{v}'; commands: veto, approve, pause, resume, mode, \
                         drain, undrain, overview, nodes, blueprints, controller, events, help, quit"
                    ),
                    true,
                ),
            },
        }
    }

    fn confirm_key(&mut self, e: KeyEvent, c: Confirm, out: &mut Vec<Effect>) {
        match e.code {
            KeyCode::Char('y') | KeyCode::Char('Y') => {
                self.mode = Mode::Normal;
                self.say(
                    format!(
                        "{}: sent, waiting for the cluster…",
                        c.title.trim_end_matches('?')
                    ),
                    false,
                );
                out.push(Effect::Write {
                    cmd: c.cmd,
                    what: c.what,
                });
            }
            KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => {
                self.mode = Mode::Normal;
                self.say("cancelled", false);
            }
            KeyCode::Char('c') if e.modifiers.contains(KeyModifiers::CONTROL) => {
                self.mode = Mode::Normal;
                self.say("cancelled", false);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DecisionStatus;
    use crate::tui::fixture::{NOW, update};

    fn app(readonly: bool) -> App {
        let mut a = App::new(Keymap::default(), readonly);
        a.apply(update(false), NOW);
        a.tick(NOW);
        a
    }

    fn press(a: &mut App, code: KeyCode) -> Vec<Effect> {
        a.key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn typed(a: &mut App, text: &str) -> Vec<Effect> {
        let mut out = Vec::new();
        for c in text.chars() {
            out.extend(press(a, KeyCode::Char(c)));
        }
        out
    }

    fn names(a: &App) -> Vec<String> {
        a.nodes().into_iter().map(|r| r.name).collect()
    }

    fn flash(a: &App) -> String {
        a.flash.as_ref().map(|f| f.text.clone()).unwrap_or_default()
    }

    #[test]
    fn filter_narrows_inverts_and_clears() {
        let mut a = app(false);
        assert_eq!(names(&a), ["gpu-box", "n1", "n3"]);
        typed(&mut a, "/n3");
        assert_eq!(a.mode, Mode::Filter);
        assert_eq!(names(&a), ["n3"], "the filter applies while typing");
        press(&mut a, KeyCode::Enter);
        assert_eq!(a.mode, Mode::Normal);
        assert_eq!(names(&a), ["n3"], "enter keeps it");
        // Matching covers role, state and health too, case-insensitively.
        typed(&mut a, "/");
        press(&mut a, KeyCode::Backspace);
        press(&mut a, KeyCode::Backspace);
        typed(&mut a, "DRAINING");
        assert_eq!(names(&a), ["n3"]);
        press(&mut a, KeyCode::Backspace);
        for _ in 0..8 {
            press(&mut a, KeyCode::Backspace);
        }
        typed(&mut a, "!n");
        assert_eq!(names(&a), ["gpu-box"], "! inverts: rows without 'n'");
        press(&mut a, KeyCode::Enter);
        press(&mut a, KeyCode::Esc);
        assert_eq!(names(&a).len(), 3, "esc clears the filter");
        // Each list has its own filter.
        typed(&mut a, "4/vetoed");
        press(&mut a, KeyCode::Enter);
        assert_eq!(a.decisions().len(), 1);
        typed(&mut a, "1");
        assert_eq!(names(&a).len(), 3);
    }

    #[test]
    fn navigation_and_views() {
        let mut a = app(false);
        assert_eq!(a.view, View::Overview);
        press(&mut a, KeyCode::Tab);
        assert_eq!(a.view, View::Nodes);
        a.key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT));
        a.key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT));
        assert_eq!(a.view, View::Events, "shift-tab wraps around");
        typed(&mut a, "1G");
        assert_eq!(a.selected(), 2);
        typed(&mut a, "jjj");
        assert_eq!(a.selected(), 2, "the selection stops at the last row");
        typed(&mut a, "k");
        assert_eq!(a.selected(), 1);
        // Enter on a node opens its charts, and the feed is asked for its history.
        let fx = press(&mut a, KeyCode::Enter);
        assert_eq!(a.view, View::Nodes);
        assert_eq!(
            fx,
            vec![Effect::Watch(Watch {
                node: Some("n1".into()),
                range_secs: 900,
                points: 60,
            })]
        );
        let fx = typed(&mut a, ">");
        assert!(
            matches!(&fx[..], [Effect::Watch(w)] if w.range_secs == 1800),
            "{fx:?}"
        );
        let fx = typed(&mut a, "3");
        assert_eq!(
            fx,
            vec![Effect::Watch(Watch::default())],
            "no history off the Nodes view"
        );
        typed(&mut a, "g");
        press(&mut a, KeyCode::Enter);
        assert!(a.detail, "enter opens the slice's instances");
        press(&mut a, KeyCode::Esc);
        assert!(!a.detail);
        typed(&mut a, "?");
        assert!(a.help);
        press(&mut a, KeyCode::Esc);
        assert!(!a.help);
        let fx = a.key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert_eq!(fx, vec![Effect::Quit]);
        let mut b = app(false);
        assert_eq!(typed(&mut b, "q"), vec![Effect::Quit]);
        assert!(b.quit);
    }

    #[test]
    fn veto_and_approve_ask_first_and_show_the_action() {
        let mut a = app(false);
        typed(&mut a, "v");
        assert_eq!(a.mode, Mode::Normal);
        assert!(flash(&a).contains("Controller view (4)"), "{}", flash(&a));
        typed(&mut a, "4v");
        let Mode::Confirm(c) = &a.mode else {
            panic!("no confirm dialog: {:?}", a.mode)
        };
        assert_eq!(c.title, "Veto d-12?");
        assert_eq!(
            c.detail[0],
            "scale shop/web 2 → 4  (pending, applies in 12s)"
        );
        // Other keys do nothing in the dialog; n cancels.
        assert!(typed(&mut a, "jx").is_empty());
        assert!(matches!(a.mode, Mode::Confirm(_)));
        assert!(typed(&mut a, "n").is_empty());
        assert_eq!(a.mode, Mode::Normal);
        assert_eq!(flash(&a), "cancelled");
        typed(&mut a, "v");
        let fx = typed(&mut a, "y");
        assert_eq!(
            fx,
            vec![Effect::Write {
                cmd: Command::VetoDecision {
                    id: 12,
                    reason: None
                },
                what: "vetoed d-12".into(),
            }]
        );
        // A final decision cannot be vetoed: said, nothing asked.
        typed(&mut a, "j");
        assert_eq!(a.selected_decision().unwrap().id, 11);
        assert!(typed(&mut a, "v").is_empty());
        assert_eq!(a.mode, Mode::Normal);
        assert!(flash(&a).contains("d-11 is vetoed"), "{}", flash(&a));
        typed(&mut a, "k");
        typed(&mut a, "a");
        let fx = typed(&mut a, "y");
        assert_eq!(
            fx,
            vec![Effect::Write {
                cmd: Command::ApproveDecision { id: 12 },
                what: "approved d-12".into(),
            }]
        );
        // p pauses (the controller runs), with a dialog.
        typed(&mut a, "p");
        assert!(
            matches!(&a.mode, Mode::Confirm(c) if c.cmd == Command::PauseController { reason: None })
        );
        press(&mut a, KeyCode::Esc);
        let mut b = App::new(Keymap::default(), false);
        b.apply(update(true), NOW);
        typed(&mut b, "p");
        assert!(matches!(&b.mode, Mode::Confirm(c) if c.cmd == Command::ResumeController));
    }

    #[test]
    fn command_line() {
        let mut a = app(false);
        typed(&mut a, ":veto d-12 load test ends soon");
        assert_eq!(a.input, "veto d-12 load test ends soon");
        press(&mut a, KeyCode::Enter);
        let Mode::Confirm(c) = a.mode.clone() else {
            panic!("no confirm dialog: {:?}", a.mode)
        };
        assert_eq!(
            c.cmd,
            Command::VetoDecision {
                id: 12,
                reason: Some("load test ends soon".into())
            }
        );
        assert!(c.detail.iter().any(|l| l == "reason: load test ends soon"));
        press(&mut a, KeyCode::Esc);
        typed(&mut a, ":drain n3");
        press(&mut a, KeyCode::Enter);
        assert!(
            matches!(&a.mode, Mode::Confirm(c) if c.cmd == Command::SetNodeState { id: 3, state: NodeState::Draining })
        );
        assert_eq!(typed(&mut a, "y").len(), 1);
        typed(&mut a, ":mode propose");
        press(&mut a, KeyCode::Enter);
        assert!(
            matches!(&a.mode, Mode::Confirm(c) if c.cmd == Command::SetControllerMode { mode: ControllerMode::Propose, grace_ms: None })
        );
        press(&mut a, KeyCode::Esc);
        // Bad commands are named, with the fix, and change nothing.
        for (line, says) in [
            (":mode yolo", "observe, propose, guarded or auto"),
            (
                ":drain n9",
                "no member named 'n9'; members: n1, gpu-box, n3",
            ),
            (":veto twelve", "expected d-<number>"),
            (":veto", "needs a decision id, e.g. ':veto d-12'"),
            (":approve d-999", "no decision d-999"),
            (":frobnicate", "unknown command ':frobnicate'"),
        ] {
            typed(&mut a, line);
            assert!(press(&mut a, KeyCode::Enter).is_empty(), "{line}");
            assert_eq!(a.mode, Mode::Normal, "{line}");
            assert!(flash(&a).contains(says), "{line}: {}", flash(&a));
        }
        // Esc and an emptied line leave the command line.
        typed(&mut a, ":ve");
        press(&mut a, KeyCode::Esc);
        assert_eq!(a.mode, Mode::Normal);
        typed(&mut a, ":v");
        press(&mut a, KeyCode::Backspace);
        press(&mut a, KeyCode::Backspace);
        assert_eq!(a.mode, Mode::Normal);
        typed(&mut a, ":events");
        press(&mut a, KeyCode::Enter);
        assert_eq!(a.view, View::Events);
        typed(&mut a, ":2");
        press(&mut a, KeyCode::Enter);
        assert_eq!(a.view, View::Nodes);
        typed(&mut a, ":q");
        assert_eq!(press(&mut a, KeyCode::Enter), vec![Effect::Quit]);
    }

    #[test]
    fn readonly_refuses_every_change_and_keeps_navigation() {
        let mut a = app(true);
        typed(&mut a, "4");
        for keys in [
            "v",
            "a",
            "p",
            ":veto d-12\n",
            ":approve 12\n",
            ":pause\n",
            ":resume\n",
            ":mode auto\n",
            ":drain n3\n",
            ":undrain n3\n",
        ] {
            let mut fx = Vec::new();
            for c in keys.chars() {
                fx.extend(if c == '\n' {
                    press(&mut a, KeyCode::Enter)
                } else {
                    press(&mut a, KeyCode::Char(c))
                });
            }
            assert!(fx.is_empty(), "{keys}: {fx:?}");
            assert_eq!(a.mode, Mode::Normal, "{keys}");
            assert!(
                flash(&a).contains("read-only console (--readonly)"),
                "{keys}: {}",
                flash(&a)
            );
        }
        typed(&mut a, "j");
        assert_eq!(a.selected(), 1, "navigation still works");
        press(&mut a, KeyCode::Enter);
        assert!(a.detail);
    }

    #[test]
    fn frames_merge_and_a_full_frame_replaces() {
        let mut a = app(false);
        let mut d = a.data.decisions[0].clone();
        d.status = DecisionStatus::Vetoed {
            at: NOW,
            by: "op".into(),
            reason: None,
            reverted: None,
        };
        let mut newer = d.clone();
        newer.id = 13;
        let event = AuditRecord {
            seq: 43,
            at: NOW,
            actor: "op".into(),
            what: "veto d-12".into(),
            outcome: "ok".into(),
        };
        a.apply(
            LiveUpdate {
                at: NOW + 1_000,
                decisions: vec![newer, d],
                events: vec![event],
                ..LiveUpdate::default()
            },
            NOW + 1_000,
        );
        let ids: Vec<u64> = a.data.decisions.iter().map(|d| d.id).collect();
        assert_eq!(ids, [13, 12, 11, 10], "newest first, no duplicate");
        assert_eq!(a.data.decisions[1].status.word(), "vetoed");
        assert_eq!(a.events()[0].seq, 43, "events newest first");
        assert_eq!(a.data.nodes.len(), 3, "parts not in the frame are kept");
        assert_eq!(a.data.sparks["n1"].cpu.len(), 60);
        a.lost("gone".into());
        assert!(matches!(a.link, LinkState::Reconnecting { .. }));
        a.apply(update(false), NOW + 2_000);
        assert_eq!(a.link, LinkState::Live);
        assert_eq!(a.data.decisions.len(), 3, "a full frame replaces");
        assert_eq!(a.data.sparks["n1"].cpu.len(), 60);
    }
}
