//! The node's long-running loops under supervision: each is spawned with a name, a loop that
//! ends while the node runs (it returned, failed or panicked) is reported with its error and
//! stops the node, and teardown awaits the loops in the reverse order of their start, logging
//! each step.

use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The environment variable that makes the named loop fail once the node is up: a fault hook
/// for the tests that check that a dying loop stops the node. Unset in production.
pub const FAIL_LOOP_ENV: &str = "AETHER_FAIL_LOOP";

/// How a loop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// It returned without an error.
    Returned,
    /// It returned an error (the error's text).
    Failed(String),
    /// It panicked (the panic's message, when it was a string).
    Panicked(String),
    /// It was aborted (only at teardown).
    Aborted,
}

impl Ended {
    fn is_clean(&self) -> bool {
        matches!(self, Ended::Returned)
    }
}

impl Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Returned => f.write_str("returned"),
            Ended::Failed(e) => write!(f, "failed: {e}"),
            Ended::Panicked(m) => write!(f, "panicked: {m}"),
            Ended::Aborted => f.write_str("was aborted"),
        }
    }
}

/// What a loop's future returns: nothing, or a result whose error is shown.
pub trait LoopOutput: Send + 'static {
    /// Why the loop ended, as far as its output says.
    fn ended(self) -> Ended;
}

impl LoopOutput for () {
    fn ended(self) -> Ended {
        Ended::Returned
    }
}

impl<E: Display + Send + 'static> LoopOutput for Result<(), E> {
    fn ended(self) -> Ended {
        match self {
            Ok(()) => Ended::Returned,
            Err(e) => Ended::Failed(e.to_string()),
        }
    }
}

/// A loop that ended while the node was running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Death {
    /// The loop's name, as given to [`Loops::spawn`].
    pub name: &'static str,
    /// How it ended.
    pub ended: Ended,
}

impl Display for Death {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the {} {} while the node was running",
            self.name, self.ended
        )
    }
}

/// The node's loops, in the order they started.
pub struct Loops {
    shutdown: CancellationToken,
    loops: Vec<(&'static str, JoinHandle<Ended>)>,
    death: Arc<Mutex<Option<Death>>>,
    /// Set once the node is up; the fault hook waits for it.
    up: watch::Sender<bool>,
    fail: Option<String>,
}

impl Loops {
    /// Loops that stop on `shutdown`; the first loop to die cancels it.
    pub fn new(shutdown: CancellationToken) -> Loops {
        Loops {
            shutdown,
            loops: Vec::new(),
            death: Arc::default(),
            up: watch::channel(false).0,
            fail: std::env::var(FAIL_LOOP_ENV).ok().filter(|s| !s.is_empty()),
        }
    }

    /// Spawn `fut` as the loop `name`.
    pub fn spawn<O: LoopOutput>(
        &mut self,
        name: &'static str,
        fut: impl Future<Output = O> + Send + 'static,
    ) {
        let task = if self.fail.as_deref() == Some(name) {
            let mut up = self.up.subscribe();
            tokio::spawn(async move {
                tokio::select! {
                    o = fut => o.ended(),
                    _ = up.wait_for(|u| *u) => {
                        panic!("failure injected by {FAIL_LOOP_ENV}={name}")
                    }
                }
            })
        } else {
            tokio::spawn(async move { fut.await.ended() })
        };
        self.watch(name, task);
    }

    /// Supervise a task spawned elsewhere as the loop `name`.
    pub fn add<O: LoopOutput>(&mut self, name: &'static str, task: JoinHandle<O>) {
        self.watch(
            name,
            tokio::spawn(async move { flatten(task.await.map(LoopOutput::ended)) }),
        )
    }

    fn watch(&mut self, name: &'static str, task: JoinHandle<Ended>) {
        let (shutdown, death) = (self.shutdown.clone(), self.death.clone());
        let guard = tokio::spawn(async move {
            let ended = flatten(task.await);
            if !shutdown.is_cancelled() {
                tracing::error!("the {name} {ended} while the node was running; stopping the node");
                death.lock().expect("lock").get_or_insert(Death {
                    name,
                    ended: ended.clone(),
                });
                shutdown.cancel();
            }
            ended
        });
        self.loops.push((name, guard));
    }

    /// Every loop has started: the node is up.
    pub fn up(&self) {
        self.up.send_replace(true);
    }

    /// Cancel the shutdown token and await every loop, last started first, logging each.
    /// Returns the first loop that died while the node ran.
    pub async fn stop(self) -> Option<Death> {
        self.shutdown.cancel();
        for (name, task) in self.loops.into_iter().rev() {
            match flatten(task.await) {
                e if e.is_clean() => tracing::info!("stopped the {name}"),
                e => tracing::warn!("the {name} {e}"),
            }
        }
        self.death.lock().expect("lock").take()
    }
}

/// A task's result: how it ended, or how its join failed.
fn flatten(r: Result<Ended, tokio::task::JoinError>) -> Ended {
    match r {
        Ok(ended) => ended,
        Err(e) if e.is_panic() => {
            let p = e.into_panic();
            let text = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
            Ended::Panicked(text.unwrap_or_else(|| "a panic without a message".into()))
        }
        Err(_) => Ended::Aborted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn wait_cancelled(t: &CancellationToken) {
        tokio::time::timeout(std::time::Duration::from_secs(10), t.cancelled())
            .await
            .expect("a dying loop cancels the shutdown token within 10 s");
    }

    #[tokio::test]
    async fn a_loop_that_fails_while_running_stops_the_node() {
        let shutdown = CancellationToken::new();
        let mut loops = Loops::new(shutdown.clone());
        let s = shutdown.clone();
        loops.spawn("steady loop", async move { s.cancelled().await });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        loops.spawn("flaky loop", async move {
            let _ = rx.await;
            Err::<(), _>("disk 'x' is full")
        });
        loops.up();
        assert!(!shutdown.is_cancelled());
        tx.send(()).unwrap();
        wait_cancelled(&shutdown).await;
        let death = loops.stop().await.expect("the death is reported");
        assert_eq!(death.name, "flaky loop");
        assert_eq!(death.ended, Ended::Failed("disk 'x' is full".into()));
        assert_eq!(
            death.to_string(),
            "the flaky loop failed: disk 'x' is full while the node was running"
        );
    }

    fn out_of_range() {
        panic!("index 'out' of range")
    }

    #[tokio::test]
    async fn a_panic_or_a_plain_return_is_a_death_too() {
        let shutdown = CancellationToken::new();
        let mut loops = Loops::new(shutdown.clone());
        loops.add("panicking loop", tokio::spawn(async { out_of_range() }));
        wait_cancelled(&shutdown).await;
        let death = loops.stop().await.unwrap();
        assert_eq!(death.ended, Ended::Panicked("index 'out' of range".into()));

        let shutdown = CancellationToken::new();
        let mut loops = Loops::new(shutdown.clone());
        loops.spawn("returning loop", async {});
        wait_cancelled(&shutdown).await;
        assert_eq!(loops.stop().await.unwrap().ended, Ended::Returned);
    }

    #[tokio::test]
    async fn loops_that_end_at_shutdown_are_no_death() {
        let shutdown = CancellationToken::new();
        let mut loops = Loops::new(shutdown.clone());
        for name in ["first loop", "second loop"] {
            let s = shutdown.clone();
            loops.spawn(name, async move {
                s.cancelled().await;
                Err::<(), _>("stopped by the token")
            });
        }
        loops.up();
        assert!(!shutdown.is_cancelled());
        assert_eq!(loops.stop().await, None);
    }
}
