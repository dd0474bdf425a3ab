//! The systemd notify protocol for a `Type=notify` unit (`NotifyAccess=main`, `WatchdogSec=`):
//! `READY=1` once the node is ready in the sense of `/readyz`, `STATUS=` (role, leader, term)
//! when it changes, `WATCHDOG=1` every half `WATCHDOG_USEC` while the node runs, `STOPPING=1`
//! when shutdown begins. Without `NOTIFY_SOCKET` nothing is sent. The only user of `sd-notify`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use crate::domain::NodeId;
use crate::raft::Cluster;

/// The service manager's socket, when the node runs under one (`NOTIFY_SOCKET`).
#[derive(Debug)]
pub struct Notifier {
    enabled: bool,
    watchdog: Option<Duration>,
    /// A failed send is logged once; the node carries on.
    warned: AtomicBool,
}

impl Notifier {
    /// From the environment: `NOTIFY_SOCKET`, and `WATCHDOG_USEC` when `WATCHDOG_PID` is unset
    /// or this process.
    pub fn from_env() -> Notifier {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty());
        Notifier {
            enabled,
            watchdog: if enabled {
                sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
            } else {
                None
            },
            warned: AtomicBool::new(false),
        }
    }

    /// Whether a service manager listens.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn send(&self, state: &[NotifyState]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(state)
            && !self.warned.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                "cannot notify the service manager at NOTIFY_SOCKET: {e}; the node runs on, but systemd may think it is not ready (check the unit's NotifyAccess=)"
            );
        }
    }

    /// Shutdown has begun: `STOPPING=1`.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }
}

/// What the `STATUS=` line says: role, leader id, term, the leader's name once known.
type StatusKey = (String, Option<NodeId>, u64, Option<String>);

/// The `STATUS=` line: this node's role, the leader it knows and the term.
fn status_line(role: &str, leader: Option<(NodeId, &str)>, term: u64) -> String {
    match leader {
        Some((id, name)) => format!("role: {role}; leader: '{name}' (id {id}); term: {term}"),
        None => format!("role: {role}; leader: none known; term: {term}"),
    }
}

/// Tell the service manager what the node does until `shutdown`: `READY=1` the first time
/// [`Cluster::readiness`] holds, `STATUS=` when role, leader or term change, and `WATCHDOG=1`
/// while the node's loops run (this runs as one of them: when another loop dies the node
/// shuts down and the pings stop; a failed Raft core stops them at once).
pub async fn run(notifier: Arc<Notifier>, cluster: Arc<Cluster>, shutdown: CancellationToken) {
    let mut metrics = cluster.raft.metrics();
    let mut applied = cluster.store.subscribe_applied();
    let mut ready = false;
    let mut last_status: Option<StatusKey> = None;
    // Readiness can also turn on by a read that nothing signals (the cluster record): look
    // again now and then.
    let mut recheck = tokio::time::interval(Duration::from_millis(500));
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watchdog = notifier.watchdog.map(|d| {
        let mut i = tokio::time::interval(d / 2);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    if let Some(d) = notifier.watchdog {
        tracing::info!("systemd watchdog: pinging every {:?}", d / 2);
    }
    loop {
        // Only a change of role, leader or term makes a new line (metrics change on every
        // apply); the leader's name is read when the leader changes, until it is known.
        let (role, leader, term) = {
            let m = metrics.borrow_and_update();
            (
                format!("{:?}", m.state).to_lowercase(),
                m.current_leader,
                m.current_term,
            )
        };
        let name = match (&last_status, leader) {
            (Some(s), Some(id)) if s.1 == Some(id) && s.3.is_some() => s.3.clone(),
            (_, Some(id)) => cluster
                .store
                .nodes()
                .ok()
                .and_then(|ns| ns.into_iter().find(|n| n.id == id).map(|n| n.name)),
            (_, None) => None,
        };
        let key = (role, leader, term, name);
        if last_status.as_ref() != Some(&key) {
            let (role, leader, term, name) = &key;
            let leader = leader.map(|id| (id, name.as_deref().unwrap_or("?")));
            notifier.send(&[NotifyState::Status(&status_line(role, leader, *term))]);
            last_status = Some(key);
        }
        // After the status, so that the manager knows the role it is ready in.
        if !ready && cluster.readiness().is_ok() {
            ready = true;
            notifier.send(&[NotifyState::Ready]);
            tracing::info!("told systemd the node is ready");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = metrics.changed() => if r.is_err() { shutdown.cancelled().await; return },
            _ = applied.changed(), if !ready => {}
            _ = recheck.tick(), if !ready => {}
            _ = async { watchdog.as_mut().expect("guarded").tick().await }, if watchdog.is_some() => {
                if cluster.failure().is_none() && !shutdown.is_cancelled() {
                    notifier.send(&[NotifyState::Watchdog]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_names_role_leader_and_term() {
        assert_eq!(
            status_line("follower", Some((2, "n2")), 7),
            "role: follower; leader: 'n2' (id 2); term: 7"
        );
        assert_eq!(
            status_line("candidate", None, 3),
            "role: candidate; leader: none known; term: 3"
        );
    }
}
