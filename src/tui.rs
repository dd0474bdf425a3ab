//! `aether tui`: the terminal console (DESIGN §10). The only module that knows ratatui.
//!
//! ```text
//!  terminal ──keys, resize──▶ ┐
//!  (reader thread)            │ std mpsc   ┌──────────── UI thread ─────────────┐
//!                             ├──────────▶ │ app::App (state, keys → effects)    │
//!  link (async task) ──frames,┘            │ views::draw when something changed │
//!    live feed on the admin socket         └──────────────┬─────────────────────┘
//!    writes on their own connections ◀── link::Request ───┘ (unbounded, never blocks)
//! ```
//!
//! The UI thread never touches the network: it waits on one channel, with a timeout for the
//! once-a-second tick (countdowns, ages), and draws only after an input, a frame, a resize or
//! that tick. The terminal is restored on quit, on error, on panic and on SIGTERM/SIGHUP.

pub mod app;
pub mod keymap;
mod link;
pub mod views;

use std::sync::mpsc;
use std::time::Duration;

use ratatui::crossterm::event::{self, Event, KeyEventKind};

use crate::admin::protocol::LiveUpdate;
use crate::domain::now_millis;
use app::{App, Effect};
use keymap::Keymap;
use views::Theme;

/// What the UI thread waits on.
#[derive(Debug)]
pub enum Input {
    Key(event::KeyEvent),
    Resize,
    Live(Box<LiveUpdate>),
    /// The feed was lost, and why.
    Lost(String),
    /// A write finished.
    Done(Result<String, String>),
    /// A log tail arrived: its `blueprint/slice` and the chunks, or why not.
    Logs(String, Result<Vec<crate::deploy::logs::LogChunk>, String>),
    /// A signal asked us to stop, or the terminal went away.
    Stop,
}

/// How `aether tui` was asked to run.
pub struct Options {
    pub socket: crate::admin::client::Target,
    pub readonly: bool,
    pub keys: Keymap,
}

/// The idle tick: countdowns and ages move once a second.
const TICK: Duration = Duration::from_secs(1);

/// Run the console until the operator quits. Call from a blocking thread of a tokio runtime:
/// the link runs on that runtime.
pub fn run(opts: Options, rt: tokio::runtime::Handle) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        anyhow::bail!(
            "cannot set up the terminal: 'aether tui' needs a terminal on stdin and stdout \
             (over ssh, use 'ssh -t'); for scripts, 'aether status' and 'aether decisions' print the same data"
        );
    }
    let (tx, rx) = mpsc::channel::<Input>();
    let (req_tx, req_rx) = tokio::sync::mpsc::unbounded_channel();
    rt.spawn(link::run(opts.socket.clone(), req_rx, tx.clone()));
    {
        let tx = tx.clone();
        rt.spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut hup)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
            ) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = hup.recv() => {}
            }
            let _ = tx.send(Input::Stop);
        });
    }
    let mut terminal =
        ratatui::try_init().context("cannot set up the terminal (is this a tty?)")?;
    // Keys arrive on their own thread; it ends with the process.
    {
        let tx = tx.clone();
        std::thread::Builder::new()
            .name("aether-tui-keys".into())
            .spawn(move || {
                loop {
                    let input = match event::read() {
                        Ok(Event::Key(k)) if k.kind != KeyEventKind::Release => Input::Key(k),
                        Ok(Event::Resize(..)) => Input::Resize,
                        Ok(_) => continue,
                        // The terminal went away (a closed ssh session): stop, restoring it.
                        Err(_) => Input::Stop,
                    };
                    let stop = matches!(input, Input::Stop);
                    if tx.send(input).is_err() || stop {
                        return;
                    }
                }
            })
            .context("cannot start the key reader")?;
    }
    drop(tx);
    let result = ui_loop(&mut terminal, opts, rx, req_tx);
    ratatui::restore();
    result
}

fn ui_loop(
    terminal: &mut ratatui::DefaultTerminal,
    opts: Options,
    rx: mpsc::Receiver<Input>,
    link: tokio::sync::mpsc::UnboundedSender<link::Request>,
) -> anyhow::Result<()> {
    let theme = Theme::from_env();
    let mut app = App::new(opts.keys, opts.readonly);
    let size = terminal.size()?;
    (app.width, app.height) = (size.width, size.height);
    app.tick(now_millis());
    let mut next_tick = std::time::Instant::now() + TICK;
    loop {
        // Only here: after an input, a frame, a resize or the tick (ratatui then writes only the
        // cells that changed).
        terminal.draw(|f| views::draw(f, &app, &theme))?;
        let wait = next_tick.saturating_duration_since(std::time::Instant::now());
        let input = match rx.recv_timeout(wait) {
            Ok(i) => Some(i),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        };
        app.tick(now_millis());
        let mut effects = Vec::new();
        match input {
            None => {
                next_tick = std::time::Instant::now() + TICK;
            }
            Some(Input::Key(k)) => effects = app.key(k),
            Some(Input::Resize) => {
                let size = terminal.size()?;
                (app.width, app.height) = (size.width, size.height);
                terminal.autoresize()?;
                effects.extend(app.sync_watch());
            }
            Some(Input::Live(u)) => {
                app.apply(*u, now_millis());
                // The first frame may give the Nodes view its node.
                effects.extend(app.sync_watch());
            }
            Some(Input::Lost(reason)) => app.lost(reason),
            Some(Input::Done(r)) => app.done(r),
            Some(Input::Logs(target, r)) => app.logs_arrived(target, r),
            Some(Input::Stop) => return Ok(()),
        }
        for e in effects {
            match e {
                Effect::Quit => return Ok(()),
                Effect::Watch(w) => {
                    let _ = link.send(link::Request::Watch(w));
                }
                Effect::Write { cmd, what } => {
                    let _ = link.send(link::Request::Write { cmd, what });
                }
                Effect::Logs { target } => {
                    let _ = link.send(link::Request::Logs { target });
                }
                Effect::Take { id } => {
                    let _ = link.send(link::Request::Take { id });
                }
            }
        }
    }
}

#[cfg(test)]
mod fixture;

#[cfg(test)]
mod tests;
