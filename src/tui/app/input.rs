//! Keys: each mode's handling (normal, filter, the `:` command line, a confirm dialog) turns a
//! key into a change of the console's state and the [`Effect`]s it asks of the outside world.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::*;
use crate::admin::protocol::RolloutView;
use crate::domain::RolloutOp;
use crate::tui::keymap::Action;

impl App {
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
                    // A slice's instances come with their log tail (Enter again: a fresh one).
                    if self.view == View::Blueprints
                        && let Some((b, s)) = self.selected_slice()
                    {
                        let target = format!("{b}/{s}");
                        self.logs = Some(LogTail {
                            target: target.clone(),
                            asked: self.now,
                            chunks: None,
                        });
                        out.push(Effect::Logs { target });
                    }
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
            Action::Take => {
                if self.refuse_readonly("take") {
                    return;
                }
                match self.data.advice.as_ref().and_then(|a| a.items.first()) {
                    Some(i) => {
                        self.mode = Mode::Command;
                        self.input = format!("take {}", i.id);
                    }
                    None => self.say(
                        "take: no advice items (the leader's strategic layer is off, or had nothing to advise)",
                        true,
                    ),
                }
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
            Action::Promote | Action::Abort | Action::Undo => {
                let verb = match a {
                    Action::Promote => "promote",
                    Action::Abort => "abort",
                    _ => "undo",
                };
                if self.refuse_readonly(verb) {
                    return;
                }
                if self.view != View::Blueprints {
                    let k = self.keys.keys_of(Action::Blueprints);
                    self.say(
                        format!("{verb}: select a slice in the Blueprints view ({k}) first"),
                        true,
                    );
                    return;
                }
                match self.selected_slice() {
                    Some((b, s)) => self.ask_rollout(a, &b, &s),
                    None => self.say(format!("{verb}: no slice selected"), true),
                }
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

    /// Open the confirm dialog for promoting, aborting or undoing `blueprint/slice`'s rollout
    /// (`a` says which); what the console knows rules out acts the cluster would refuse.
    fn ask_rollout(&mut self, a: Action, blueprint: &str, slice: &str) {
        let target = format!("{blueprint}/{slice}");
        let r = self
            .data
            .rollouts
            .iter()
            .find(|r| r.blueprint == blueprint && r.slice == slice)
            .cloned();
        let open = r.as_ref().filter(|r| r.open);
        let summary = |r: &RolloutView| {
            let at = if r.open {
                format!(", {} at {}", r.state, r.step)
            } else {
                format!(", {}", r.state)
            };
            format!("{target} {} v{} → v{}{at}", r.strategy, r.from, r.to)
        };
        let (title, detail, op, what) = match (a, open) {
            (Action::Promote, None) | (Action::Abort, None) => {
                let verb = if a == Action::Promote {
                    "promote"
                } else {
                    "abort"
                };
                return self.say(
                    format!(
                        "{verb}: {target} has no rollout in progress ('aether rollout history {target}' shows the past ones)"
                    ),
                    true,
                );
            }
            (Action::Promote, Some(r)) => {
                if !r.promotable {
                    return self.say(
                        format!(
                            "promote: {} is {} at '{}': only a canary before its promotion is promoted",
                            r.name, r.state, r.step
                        ),
                        true,
                    );
                }
                (
                    format!("Promote {}?", r.name),
                    vec![
                        summary(r),
                        format!(
                            "the canary phase ends: v{} replaces the rest of the copies now",
                            r.to
                        ),
                    ],
                    RolloutOp::Promote,
                    format!("promoted {}", r.name),
                )
            }
            (Action::Abort, Some(r)) => (
                format!("Abort {}?", r.name),
                vec![
                    summary(r),
                    format!(
                        "it goes back to v{} at once: v{} copies start, v{} copies stop",
                        r.from, r.from, r.to
                    ),
                ],
                RolloutOp::Abort,
                format!("aborted {}: going back to v{}", r.name, r.from),
            ),
            (_, Some(r)) => (
                format!("Undo {}?", r.name),
                vec![
                    summary(r),
                    format!("it goes back to v{} at once (as abort does)", r.from),
                ],
                RolloutOp::Undo { to: None },
                format!("undid {}: going back to v{}", r.name, r.from),
            ),
            (_, None) => match &r {
                Some(r) if r.state == "succeeded" => (
                    format!("Undo {} of {target}?", r.name),
                    vec![
                        summary(r),
                        format!(
                            "v{}'s {slice} is stored again and rolled out to every copy at once",
                            r.from
                        ),
                    ],
                    RolloutOp::Undo { to: None },
                    format!("undo of {}: rolling {target} back to v{}", r.name, r.from),
                ),
                Some(r) => {
                    return self.say(
                        format!(
                            "undo: the last rollout of {target} ({}) is {}: nothing finished to undo; 'aether rollout undo {target} --to VERSION' names a version",
                            r.name, r.state
                        ),
                        true,
                    );
                }
                None => {
                    return self.say(
                        format!(
                            "undo: {target} has never rolled out; 'aether rollout undo {target} --to VERSION' names a version"
                        ),
                        true,
                    );
                }
            },
        };
        self.mode = Mode::Confirm(Box::new(Confirm {
            title,
            detail,
            cmd: Command::RolloutOp {
                blueprint: blueprint.into(),
                slice: slice.into(),
                op,
            },
            what,
        }));
    }

    /// Open the confirm dialog for setting `blueprint/slice`'s instances to `n`: the same
    /// write as `aether scale B/S N`. What the console knows rules out a count the cluster
    /// would refuse.
    fn ask_scale(&mut self, target: &str, n: u32) {
        let found = target.split_once('/').and_then(|(b, s)| {
            self.data
                .blueprints
                .iter()
                .flatten()
                .find(|v| v.blueprint.name == b)
                .and_then(|v| v.blueprint.slices.iter().find(|x| x.name == s))
                .map(|slice| (b.to_string(), slice.clone()))
        });
        let Some((blueprint, slice)) = found else {
            let known: Vec<String> = self
                .data
                .blueprints
                .iter()
                .flatten()
                .flat_map(|b| {
                    b.blueprint
                        .slices
                        .iter()
                        .map(move |s| format!("{}/{}", b.blueprint.name, s.name))
                })
                .collect();
            return self.say(
                format!(
                    ":scale: no slice '{target}' (BLUEPRINT/SLICE); slices: {}",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
                true,
            );
        };
        if n < slice.min || n > slice.max {
            return self.say(
                format!(
                    ":scale: {target} takes {}..{} instances (its min and max); {n} is outside",
                    slice.min, slice.max
                ),
                true,
            );
        }
        self.mode = Mode::Confirm(Box::new(Confirm {
            title: format!("Scale {target} to {n}?"),
            detail: vec![
                format!(
                    "desired instances {} → {n} (range {}..{})",
                    slice.instances, slice.min, slice.max
                ),
                "the same as 'aether scale' from the shell; the controller may change it later"
                    .into(),
            ],
            cmd: Command::ScaleSlice {
                blueprint,
                slice: slice.name.clone(),
                instances: n,
            },
            what: format!("scaled {target} to {n}"),
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
        (
            "scale B/S N",
            "set a slice's instances (N alone: the selected slice)",
        ),
        ("drain NODE", "move every instance off a node"),
        ("undrain NODE", "let a node take instances again"),
        ("take ID", "propose advice item ID (a-3) as a decision"),
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
            "veto", "approve", "pause", "resume", "mode", "drain", "undrain", "scale", "take",
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
                        "a slice and a count" => "shop/web 4",
                        "an advice item" => "a-3",
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
            "scale" => {
                // `:scale shop/web 4`, or `:scale 4` for the slice selected in Blueprints.
                let (target, count) = match (arg, rest.as_deref()) {
                    (Some(t), Some(n)) => (Some(t.to_string()), n),
                    (Some(n), None) => (
                        self.selected_slice()
                            .filter(|_| self.view == View::Blueprints)
                            .map(|(b, s)| format!("{b}/{s}")),
                        n,
                    ),
                    _ => return need(self, "a slice and a count"),
                };
                let Some(target) = target else {
                    return need(self, "a slice and a count");
                };
                let Ok(n) = count.trim().parse::<u32>() else {
                    return self.say(
                        format!(":scale: '{count}' is not a count of instances, e.g. ':scale {target} 4'"),
                        true,
                    );
                };
                self.ask_scale(&target, n);
            }
            "take" => {
                let Some(id) = arg else {
                    return need(self, "an advice item");
                };
                self.say(format!("take {id}: sent, waiting for the cluster…"), false);
                out.push(Effect::Take { id: id.to_string() });
            }
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
                         scale, drain, undrain, take, overview, nodes, blueprints, controller, events, help, quit"
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
