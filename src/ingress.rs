//! The ingress (DESIGN §3, §8): every node listens on each slice's service port and routes each
//! request to a ready instance anywhere in the cluster — a local one directly over TCP, a
//! remote one through the node that runs it, over the peer endpoint's QUIC connections
//! (mutual TLS), so instances may keep binding 127.0.0.1. The only user of hyper.
//!
//! - [`table`] (pure): the routes, rebuilt from the replicated rows whenever they change.
//! - [`balance`] (pure): the better of two by latency × load, ejection, the retry budget.
//! - `proxy`: one request's way — entry point, choice, tries, waiting for an instance,
//!   upgrades, `X-Forwarded-*`, the request metrics ([`crate::metrics::requests`]).
//! - `hop`: the peer route (4) on which a node serves requests for its own instances.
//! - [`plain`]: the node's own HTTP endpoint (`/metrics`, `/healthz`, `/readyz`) on the same
//!   stack.
//!
//! Draining ([`crate::deploy::Drain`]): the supervisor asks before it stops an instance; the
//! instance leaves this node's choices at once and every other node's as soon as its
//! `stopping` report applies (a request that still arrives for it is routed to another local
//! instance or refused in a way the sender retries); its requests in flight finish; then it
//! gets SIGTERM.

pub mod balance;
pub mod client;
mod hop;
pub mod plain;
mod proxy;
pub mod table;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::config::IngressConfig;
use crate::metrics::requests::Recorder;
use crate::net::{BoxFut, Route as PeerRoute};
use crate::raft::Cluster;
use table::{Rows, Table};

pub use hop::HopService;

/// The peer route of ingress hops.
pub const HOP_ROUTE: PeerRoute = PeerRoute {
    id: 4,
    name: "ingress",
    open: false,
};

/// The opening request of a hop stream.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum HopOpen {
    /// HTTP/1.1 follows: any number of requests, each naming its instance.
    Http1,
}

/// This node's ingress.
pub struct Ingress {
    cluster: Arc<Cluster>,
    cfg: IngressConfig,
    recorder: Arc<Recorder>,
    table: watch::Sender<Arc<Table>>,
    balancer: Mutex<balance::Balancer>,
    pool: proxy::Pool,
    /// Local instance copies being drained, by pid (a restarted copy is another process).
    draining: Mutex<HashSet<u32>>,
    /// Requests in flight to each local copy (from any node), by pid, and a wake-up when one
    /// ends.
    in_flight: Mutex<HashMap<u32, u32>>,
    request_ended: Notify,
    /// Service ports this node cannot listen on, and why.
    listen_errors: Mutex<BTreeMap<u16, String>>,
    /// Cancelled when the node stops routing (after its workloads stopped).
    stop: CancellationToken,
}

impl Ingress {
    /// The ingress of `cluster`'s node, counting into `recorder`; it routes until `stop`.
    pub fn new(
        cluster: Arc<Cluster>,
        cfg: IngressConfig,
        recorder: Arc<Recorder>,
        stop: CancellationToken,
    ) -> Arc<Ingress> {
        let settings = balance::Settings {
            eject_after: cfg.eject_after.max(1),
            eject_for: cfg.eject_for.0,
            eject_max: cfg.eject_max.0,
            retry_budget: cfg.retry_budget,
        };
        Arc::new(Ingress {
            cluster,
            cfg,
            recorder,
            table: watch::Sender::new(Arc::new(Table::default())),
            balancer: Mutex::new(balance::Balancer::new(settings)),
            pool: proxy::Pool::default(),
            draining: Mutex::default(),
            in_flight: Mutex::default(),
            request_ended: Notify::new(),
            listen_errors: Mutex::default(),
            stop,
        })
    }

    fn rebuild(&self) -> Result<Arc<Table>, std::io::Error> {
        let s = &self.cluster.store;
        let (blueprints, assignments, statuses, members, health) = (
            s.blueprints()?,
            s.assignments()?,
            s.instances()?,
            s.nodes()?,
            s.health()?,
        );
        let rollouts: Vec<crate::domain::Rollout> = s.open_rollouts()?;
        let interrupting: std::collections::BTreeSet<crate::domain::NodeId> = s
            .spot_notices()?
            .into_iter()
            .filter(|(_, n)| n.is_interruption())
            .map(|(id, _)| id)
            .collect();
        let t = Arc::new(Table::build(&Rows {
            me: self.cluster.id,
            blueprints: &blueprints,
            assignments: &assignments,
            statuses: &statuses,
            members: &members,
            health: &health,
            rollouts: &rollouts,
            interrupting: &interrupting,
        }));
        let live: HashSet<&str> = t
            .routes
            .values()
            .flat_map(|r| r.backends.iter().map(|b| b.key.as_str()))
            .collect();
        self.balancer.lock().expect("balancer lock").retain(&live);
        // A drained copy is forgotten once its process is no longer reported.
        let reported: HashSet<u32> = statuses
            .iter()
            .filter(|st| st.node == self.cluster.id)
            .filter_map(|st| st.pid)
            .collect();
        self.draining
            .lock()
            .expect("draining lock")
            .retain(|pid| reported.contains(pid));
        Ok(t)
    }

    /// Keep the table current and listen on every service port until the stop token given
    /// to [`Ingress::new`] is cancelled (after the workloads stopped, so instances drain while
    /// the ingress still routes). Requests in flight carry on.
    pub async fn run(self: Arc<Self>) -> Result<(), std::io::Error> {
        let stop = self.stop.clone();
        let mut changed = self.cluster.store.subscribe_workloads();
        let mut listeners: BTreeMap<u16, CancellationToken> = BTreeMap::new();
        // Ports that failed to bind are tried again this often.
        let mut retry = tokio::time::interval(Duration::from_secs(5));
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            match self.rebuild() {
                Ok(t) => {
                    self.table.send_replace(t.clone());
                    self.listen(&t, &mut listeners, &stop);
                }
                Err(e) => tracing::warn!("ingress: reading the routes failed: {e}"),
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                r = changed.changed() => if r.is_err() { break },
                _ = retry.tick() => {}
            }
        }
        for (_, t) in listeners {
            t.cancel();
        }
        tracing::info!("ingress stopped listening");
        Ok(())
    }

    /// Open listeners for new service ports, close those of removed ones.
    fn listen(
        self: &Arc<Self>,
        t: &Table,
        listeners: &mut BTreeMap<u16, CancellationToken>,
        stop: &CancellationToken,
    ) {
        listeners.retain(|port, tok| {
            let keep = t.routes.contains_key(port);
            if !keep {
                tok.cancel();
                tracing::info!("ingress: closed service port {port}");
            }
            keep
        });
        let mut errors = self.listen_errors.lock().expect("listen errors lock");
        errors.retain(|port, _| t.routes.contains_key(port));
        for (port, route) in &t.routes {
            if listeners.contains_key(port) {
                continue;
            }
            let addr = SocketAddr::new(self.cfg.bind, *port);
            match bind(addr) {
                Ok(l) => {
                    let tok = stop.child_token();
                    listeners.insert(*port, tok.clone());
                    errors.remove(port);
                    tracing::info!("ingress: serving {} on {addr}", route.slice);
                    tokio::spawn(proxy::accept(self.clone(), *port, l, tok));
                }
                Err(e) => {
                    let message = format!(
                        "cannot listen on {addr} for {}: {e}; free the port or set ingress.bind",
                        route.slice
                    );
                    if errors.get(port) != Some(&message) {
                        tracing::warn!("ingress: {message}");
                    }
                    errors.insert(*port, message);
                }
            }
        }
        self.recorder.set_listen_errors(
            errors
                .iter()
                .map(|(port, why)| (*port, why.clone()))
                .collect(),
        );
    }

    /// One more request in flight to local `instance`; the guard ends it.
    fn begin(self: &Arc<Self>, pid: u32) -> InFlight {
        *self
            .in_flight
            .lock()
            .expect("in-flight lock")
            .entry(pid)
            .or_default() += 1;
        InFlight {
            ingress: self.clone(),
            pid,
        }
    }

    fn in_flight(&self, pid: u32) -> u32 {
        self.in_flight
            .lock()
            .expect("in-flight lock")
            .get(&pid)
            .copied()
            .unwrap_or(0)
    }

    fn is_draining(&self, pid: u32) -> bool {
        self.draining.lock().expect("draining lock").contains(&pid)
    }

    /// Wait until the store this node reads shows `instance`'s copy `pid` no longer active
    /// here (its `stopping` report applied), at most `limit`.
    async fn until_reported(&self, instance: &str, pid: u32, limit: Duration) {
        let mut table = self.table.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let active = table.borrow_and_update().routes.values().any(|r| {
                r.backends
                    .iter()
                    .any(|b| b.instance == instance && b.node == self.cluster.id && b.pid == pid)
            });
            if !active {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                r = table.changed() => if r.is_err() { return },
            }
        }
    }
}

/// How long a drained instance keeps taking requests that other nodes sent before they
/// learnt it is stopping: the replicated `stopping` report reaches every node within a few
/// milliseconds of this one; this covers a slow one.
const SETTLE: Duration = Duration::from_millis(300);

impl crate::deploy::Drain for Ingress {
    fn drain(self: Arc<Self>, instance: &str, pid: u32, limit: Duration) -> BoxFut<()> {
        let me = self.cluster.id;
        let routed = self.table.borrow().routes.values().any(|r| {
            r.backends
                .iter()
                .any(|b| b.instance == instance && b.node == me && b.pid == pid)
        });
        if !routed && self.in_flight(pid) == 0 {
            return Box::pin(async {});
        }
        self.draining.lock().expect("draining lock").insert(pid);
        let instance = instance.to_string();
        let started = Instant::now();
        Box::pin(async move {
            self.until_reported(&instance, pid, limit / 2).await;
            let settle = SETTLE.min(limit.saturating_sub(started.elapsed()));
            tokio::time::sleep(settle).await;
            loop {
                let notified = self.request_ended.notified();
                let n = self.in_flight(pid);
                if n == 0 {
                    tracing::info!(
                        "ingress: {instance} drained in {} ms",
                        started.elapsed().as_millis()
                    );
                    return;
                }
                let left = limit.saturating_sub(started.elapsed());
                if left.is_zero() {
                    tracing::warn!(
                        "ingress: {instance} still has {n} requests in flight after {} ms; stopping it anyway",
                        limit.as_millis()
                    );
                    return;
                }
                let _ = tokio::time::timeout(left, notified).await;
            }
        })
    }
}

/// A request in flight to a local copy (by pid); dropping it ends it.
struct InFlight {
    ingress: Arc<Ingress>,
    pid: u32,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut m = self.ingress.in_flight.lock().expect("in-flight lock");
        if let Some(n) = m.get_mut(&self.pid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.pid);
            }
        }
        drop(m);
        self.ingress.request_ended.notify_waiters();
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}
