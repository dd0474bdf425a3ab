//! The console's side of the network: a task on the async runtime that holds the live feed,
//! reconnects with backoff when the node goes away, and runs the operator's writes on their
//! own connections. It talks to the UI thread through channels only, so the UI never waits
//! on the node.

use std::sync::mpsc::Sender;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;

use super::Input;
use crate::admin::client::{Client, Target};
use crate::admin::protocol::Watch;
use crate::raft::types::Command;

/// What the UI asks of the link.
#[derive(Debug)]
pub enum Request {
    Watch(Watch),
    Write {
        cmd: Command,
        what: String,
    },
    /// The last lines of a slice's instance logs.
    Logs {
        target: String,
    },
    /// Propose an advice item as a decision.
    Take {
        id: String,
    },
}

const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Run until the UI goes away (its request channel closes or its input channel does).
pub async fn run(socket: Target, mut requests: UnboundedReceiver<Request>, ui: Sender<Input>) {
    let mut watch = Watch::default();
    let mut backoff = BACKOFF_MIN;
    loop {
        let reason = match Client::connect_to(&socket).await {
            Ok(c) => match c.subscribe(watch.clone()).await {
                Ok((mut reader, mut writer)) => {
                    let (tx, mut frames) = tokio::sync::mpsc::channel(8);
                    let read = tokio::spawn(async move {
                        loop {
                            let r = reader.next().await;
                            let stop = r.is_err();
                            if tx.send(r).await.is_err() || stop {
                                return;
                            }
                        }
                    });
                    let reason = loop {
                        tokio::select! {
                            f = frames.recv() => match f {
                                Some(Ok(u)) => {
                                    backoff = BACKOFF_MIN;
                                    if ui.send(Input::Live(Box::new(u))).is_err() {
                                        read.abort();
                                        return;
                                    }
                                }
                                Some(Err(e)) => break e.message,
                                None => break "the feed ended".to_string(),
                            },
                            r = requests.recv() => match r {
                                None => {
                                    read.abort();
                                    return;
                                }
                                Some(Request::Watch(w)) => {
                                    watch = w.clone();
                                    if let Err(e) = writer.watch(w).await {
                                        break e.message;
                                    }
                                }
                                Some(Request::Write { cmd, what }) => write(&socket, cmd, what, &ui),
                                Some(Request::Logs { target }) => logs(&socket, target, &ui),
                                Some(Request::Take { id }) => take(&socket, id, &ui),
                            },
                        }
                    };
                    read.abort();
                    reason
                }
                Err(e) => e.message,
            },
            Err(e) => e.message,
        };
        if ui.send(Input::Lost(reason)).is_err() {
            return;
        }
        // Wait before the next try, still taking the UI's requests.
        let retry = tokio::time::sleep(backoff);
        tokio::pin!(retry);
        loop {
            tokio::select! {
                _ = &mut retry => break,
                r = requests.recv() => match r {
                    None => return,
                    Some(Request::Watch(w)) => watch = w,
                    Some(Request::Write { cmd, what }) => write(&socket, cmd, what, &ui),
                    Some(Request::Logs { target }) => logs(&socket, target, &ui),
                    Some(Request::Take { id }) => take(&socket, id, &ui),
                },
            }
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Send one write on its own connection; the outcome goes back to the UI.
fn write(socket: &Target, cmd: Command, what: String, ui: &Sender<Input>) {
    let socket = socket.clone();
    let ui = ui.clone();
    tokio::spawn(async move {
        let r = match Client::connect_to(&socket).await {
            Ok(mut c) => c.write(cmd).await.map(|_| what).map_err(|e| e.message),
            Err(e) => Err(e.message),
        };
        let _ = ui.send(Input::Done(r));
    });
}

/// Propose an advice item on its own connection; the outcome goes back to the UI.
fn take(socket: &Target, id: String, ui: &Sender<Input>) {
    let socket = socket.clone();
    let ui = ui.clone();
    tokio::spawn(async move {
        let r = match Client::connect_to(&socket).await {
            Ok(mut c) => c
                .advice_take(id.clone())
                .await
                .map(|d| {
                    format!(
                        "{id} proposed as {}: {} (approve it with 'a')",
                        d.name(),
                        d.action
                    )
                })
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.message),
        };
        let _ = ui.send(Input::Done(r));
    });
}

/// Read a slice's log tail on its own connection; the lines go back to the UI.
fn logs(socket: &Target, target: String, ui: &Sender<Input>) {
    let socket = socket.clone();
    let ui = ui.clone();
    tokio::spawn(async move {
        let r = match Client::connect_to(&socket).await {
            Ok(mut c) => c
                .logs(target.clone(), Vec::new(), super::app::LOG_TAIL)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.message),
        };
        let _ = ui.send(Input::Logs(target, r));
    });
}
