//! The one key table: every action, its default keys and its help line. `[tui.keys]` in the
//! config file replaces an action's keys (`veto = "x"`, or several: `quit = "q, ctrl-q"`).

use std::collections::BTreeMap;
use std::fmt;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What a key does (in the normal mode; text entry and dialogs have their own few keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Quit,
    Help,
    Overview,
    Nodes,
    Blueprints,
    Controller,
    Events,
    NextView,
    PrevView,
    Down,
    Up,
    Top,
    Bottom,
    PageDown,
    PageUp,
    Details,
    Back,
    Filter,
    Command,
    Veto,
    Approve,
    Pause,
    Promote,
    Abort,
    Undo,
    Take,
    Narrower,
    Wider,
}

/// (action, config name, default keys, help). The help screen lists this table in order.
pub const TABLE: &[(Action, &str, &str, &str)] = &[
    (
        Action::Overview,
        "overview",
        "1",
        "Overview: cluster health, nodes",
    ),
    (
        Action::Nodes,
        "nodes",
        "2",
        "Nodes: one node's history charts",
    ),
    (
        Action::Blueprints,
        "blueprints",
        "3",
        "Blueprints: slices, placement, load",
    ),
    (
        Action::Controller,
        "controller",
        "4",
        "Controller: decisions and reasoning",
    ),
    (Action::Events, "events", "5", "Events: the audit log"),
    (Action::NextView, "next_view", "tab", "next view"),
    (Action::PrevView, "prev_view", "shift-tab", "previous view"),
    (Action::Down, "down", "j, down", "move down"),
    (Action::Up, "up", "k, up", "move up"),
    (Action::Top, "top", "g, home", "first row"),
    (Action::Bottom, "bottom", "G, end", "last row"),
    (Action::PageDown, "page_down", "pgdn, ctrl-d", "page down"),
    (Action::PageUp, "page_up", "pgup, ctrl-u", "page up"),
    (
        Action::Details,
        "details",
        "enter",
        "details of the selected row (a slice: its instances with CPU, RSS and log tail)",
    ),
    (
        Action::Back,
        "back",
        "esc",
        "back: close details, clear the filter",
    ),
    (
        Action::Filter,
        "filter",
        "/",
        "filter rows (start with ! to invert)",
    ),
    (
        Action::Command,
        "command",
        ":",
        "command line (:help lists commands)",
    ),
    (
        Action::Veto,
        "veto",
        "v",
        "veto the selected decision (asks first)",
    ),
    (
        Action::Approve,
        "approve",
        "a",
        "approve the selected decision (asks first)",
    ),
    (
        Action::Pause,
        "pause",
        "p",
        "pause or resume the controller (asks first)",
    ),
    (
        Action::Promote,
        "promote",
        "P",
        "Blueprints: promote the selected slice's canary (asks first)",
    ),
    (
        Action::Abort,
        "abort",
        "X",
        "Blueprints: abort the selected slice's rollout (asks first)",
    ),
    (
        Action::Undo,
        "undo",
        "U",
        "Blueprints: undo the selected slice's last rollout (asks first)",
    ),
    (
        Action::Take,
        "take",
        "t",
        "Controller: take an advice item as a proposed decision (fills in ':take ID')",
    ),
    (
        Action::Narrower,
        "narrower",
        "<",
        "Nodes: shorter chart range",
    ),
    (Action::Wider, "wider", ">", "Nodes: longer chart range"),
    (Action::Help, "help", "?", "this help"),
    (Action::Quit, "quit", "q, ctrl-c", "quit"),
];

/// A key as the table writes it: a code and its modifiers (shift is part of the character).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub ctrl: bool,
}

impl Key {
    /// The key of a terminal event.
    pub fn of(e: &KeyEvent) -> Key {
        let code = match e.code {
            // Terminals report shift-tab as BackTab, some with the shift bit.
            KeyCode::Tab if e.modifiers.contains(KeyModifiers::SHIFT) => KeyCode::BackTab,
            c => c,
        };
        Key {
            code,
            ctrl: e.modifiers.contains(KeyModifiers::CONTROL),
        }
    }

    /// Parse `v`, `G`, `ctrl-c`, `tab`, `shift-tab`, `enter`, `esc`, `up`, `pgdn`, `f1`, `space`.
    pub fn parse(spec: &str) -> Result<Key, String> {
        let s = spec.trim();
        let (ctrl, rest) = match s.strip_prefix("ctrl-") {
            Some(r) if !r.is_empty() => (true, r),
            _ => (false, s),
        };
        let code = match rest {
            "tab" => KeyCode::Tab,
            "shift-tab" | "backtab" => KeyCode::BackTab,
            "enter" => KeyCode::Enter,
            "esc" => KeyCode::Esc,
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            "pgup" => KeyCode::PageUp,
            "pgdn" => KeyCode::PageDown,
            "space" => KeyCode::Char(' '),
            "backspace" => KeyCode::Backspace,
            f if f.len() > 1
                && f.starts_with('f')
                && f[1..].parse::<u8>().is_ok_and(|n| (1..=12).contains(&n)) =>
            {
                KeyCode::F(f[1..].parse().expect("checked"))
            }
            c if c.chars().count() == 1 => KeyCode::Char(c.chars().next().expect("one char")),
            _ => {
                return Err(format!(
                    "'{spec}' is not a key: use one character (v, G, ?), ctrl-<char>, or one of \
                     tab, shift-tab, enter, esc, up, down, left, right, home, end, pgup, pgdn, \
                     space, backspace, f1-f12"
                ));
            }
        };
        Ok(Key { code, ctrl })
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ctrl {
            f.write_str("ctrl-")?;
        }
        match self.code {
            KeyCode::Char(' ') => f.write_str("space"),
            KeyCode::Char(c) => write!(f, "{c}"),
            KeyCode::Tab => f.write_str("tab"),
            KeyCode::BackTab => f.write_str("shift-tab"),
            KeyCode::Enter => f.write_str("enter"),
            KeyCode::Esc => f.write_str("esc"),
            KeyCode::Up => f.write_str("↑"),
            KeyCode::Down => f.write_str("↓"),
            KeyCode::Left => f.write_str("←"),
            KeyCode::Right => f.write_str("→"),
            KeyCode::Home => f.write_str("home"),
            KeyCode::End => f.write_str("end"),
            KeyCode::PageUp => f.write_str("pgup"),
            KeyCode::PageDown => f.write_str("pgdn"),
            KeyCode::Backspace => f.write_str("backspace"),
            KeyCode::F(n) => write!(f, "f{n}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// Keys to actions, built from [`TABLE`] and the config's overrides.
#[derive(Debug, Clone)]
pub struct Keymap {
    keys: Vec<(Key, Action)>,
}

impl Default for Keymap {
    fn default() -> Keymap {
        Keymap::new(&BTreeMap::new()).expect("the default table is consistent")
    }
}

impl Keymap {
    /// The table with `overrides` (config name → comma-separated keys) in place of the
    /// defaults. Unknown names, bad keys and a key bound to two actions are errors.
    pub fn new(overrides: &BTreeMap<String, String>) -> Result<Keymap, String> {
        for name in overrides.keys() {
            if !TABLE.iter().any(|(_, n, ..)| n == name) {
                let names: Vec<&str> = TABLE.iter().map(|(_, n, ..)| *n).collect();
                return Err(format!(
                    "tui.keys: unknown action '{name}'; actions: {}",
                    names.join(", ")
                ));
            }
        }
        let mut keys: Vec<(Key, Action)> = Vec::new();
        for (action, name, default, _) in TABLE {
            let spec = overrides.get(*name).map(String::as_str).unwrap_or(default);
            if spec.trim().is_empty() {
                return Err(format!("tui.keys.{name}: give at least one key"));
            }
            for part in spec.split(',').map(str::trim) {
                if part.is_empty() {
                    return Err(format!(
                        "tui.keys.{name}: empty key in '{spec}' (keys are separated by ',')"
                    ));
                }
                let key = Key::parse(part).map_err(|e| format!("tui.keys.{name}: {e}"))?;
                if let Some((_, other)) = keys.iter().find(|(k, _)| *k == key) {
                    let other = TABLE
                        .iter()
                        .find(|t| t.0 == *other)
                        .map(|t| t.1)
                        .unwrap_or("?");
                    // Name the override that caused the clash, not the default it hit.
                    let (mine, theirs) = if overrides.contains_key(*name) {
                        (*name, other)
                    } else {
                        (other, *name)
                    };
                    return Err(format!(
                        "tui.keys.{mine}: key '{key}' is already bound to '{theirs}'; \
                         bind '{theirs}' to another key too"
                    ));
                }
                keys.push((key, *action));
            }
        }
        Ok(Keymap { keys })
    }

    /// The action of a key, if any.
    pub fn action(&self, e: &KeyEvent) -> Option<Action> {
        let k = Key::of(e);
        self.keys.iter().find(|(key, _)| *key == k).map(|(_, a)| *a)
    }

    /// The keys of `action`, as the help and the status bar show them (`j/↓`).
    pub fn keys_of(&self, action: Action) -> String {
        self.keys
            .iter()
            .filter(|(_, a)| *a == action)
            .map(|(k, _)| k.to_string())
            .collect::<Vec<_>>()
            .join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(code: KeyCode, m: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, m)
    }

    #[test]
    fn defaults_follow_k9s_and_btop_habits() {
        let k = Keymap::default();
        let none = KeyModifiers::NONE;
        assert_eq!(k.action(&ev(KeyCode::Char('j'), none)), Some(Action::Down));
        assert_eq!(k.action(&ev(KeyCode::Down, none)), Some(Action::Down));
        assert_eq!(
            k.action(&ev(KeyCode::Char('G'), KeyModifiers::SHIFT)),
            Some(Action::Bottom)
        );
        assert_eq!(
            k.action(&ev(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        assert_eq!(k.action(&ev(KeyCode::Char('c'), none)), None);
        assert_eq!(
            k.action(&ev(KeyCode::BackTab, KeyModifiers::SHIFT)),
            Some(Action::PrevView)
        );
        assert_eq!(
            k.action(&ev(KeyCode::Tab, KeyModifiers::SHIFT)),
            Some(Action::PrevView)
        );
        assert_eq!(
            k.action(&ev(KeyCode::Char('4'), none)),
            Some(Action::Controller)
        );
        assert_eq!(k.keys_of(Action::Down), "j/↓");
    }

    #[test]
    fn overrides_replace_an_actions_keys() {
        let o = BTreeMap::from([("veto".to_string(), "x, ctrl-v".to_string())]);
        let k = Keymap::new(&o).unwrap();
        assert_eq!(
            k.action(&ev(KeyCode::Char('x'), KeyModifiers::NONE)),
            Some(Action::Veto)
        );
        assert_eq!(
            k.action(&ev(KeyCode::Char('v'), KeyModifiers::CONTROL)),
            Some(Action::Veto)
        );
        assert_eq!(k.action(&ev(KeyCode::Char('v'), KeyModifiers::NONE)), None);
    }

    #[test]
    fn bad_overrides_are_named() {
        let bad = |name: &str, keys: &str| {
            Keymap::new(&BTreeMap::from([(name.to_string(), keys.to_string())])).unwrap_err()
        };
        let e = bad("vetoo", "x");
        assert!(
            e.contains("unknown action 'vetoo'") && e.contains("veto"),
            "{e}"
        );
        let e = bad("veto", "ctrl-alt-x");
        assert!(
            e.contains("tui.keys.veto") && e.contains("'ctrl-alt-x' is not a key"),
            "{e}"
        );
        let e = bad("veto", "q");
        assert!(e.contains("already bound to 'quit'"), "{e}");
        let e = bad("veto", " ");
        assert!(e.contains("at least one key"), "{e}");
    }
}
