//! The running pipeline on every node (DESIGN §7): sample every `metrics.interval` and push a
//! [`MetricsUpdate`] to the leader over QUIC datagrams; on the leader, aggregate the
//! [`ClusterMetricsSnapshot`](super::update::ClusterMetricsSnapshot) at the same period, judge
//! liveness (written through Raft only when a verdict changes: an event, never a metric), and
//! spread the snapshot to every node; on every node, keep the newest snapshot and the 2-hour
//! window built from the snapshots.
//!
//! Spreading (the "1,000 nodes" design): the leader sends what changed since its previous
//! snapshot ([`ViewUpdate::Delta`]), not the whole snapshot, and beyond
//! [`delta::DIRECT_MAX`] recipients it sends it to about √N relays, each forwarding it to its
//! group ([`delta::plan_relays`]). Every node rebuilds the full snapshot from the deltas, so
//! every reader of the view (console, controller, `aether top`, `/metrics`) reads it as before.
//! A node whose deltas have a gap (one missed, none for [`RESYNC_AFTER`] intervals, a relay
//! down) asks the leader for a full view ([`MetricsMsg::Resync`]), which goes through that
//! node's relay (directly when it asks again within [`FULL_REPEAT`] intervals), about √N per
//! tick; the first view of a term is full for everyone. A delta that overtakes the one before
//! it waits for it ([`delta::apply_in_order`]). Recipients: every member, and any other node
//! while it sends updates (at the address it sends from).
//!
//! Failover: a new leader starts from the last snapshot it received; when that is older than
//! `metrics.refresh_after`, it asks every member for a fresh sample at once. Every node also
//! pushes at once when it learns of a new leader.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::aggregate::{Aggregator, Settings, View};
use super::delta::{self, Applied, ViewUpdate};
use super::requests::{Recorder, TrafficSample};
use super::sample::Sampler;
use super::update::{
    ClusterMetricsSnapshot, INFO_EVERY, LeaderAdvice, LeaderReviewer, MetricsMsg, MetricsUpdate,
    NodeInfo, NodeMetrics,
};
use crate::config::{GpuConfig, GpuOffer, MetricsConfig};
use crate::domain::{Health, Millis, NodeId, NodeRecord, now_millis};
use crate::net::{Inbox, PeerCtx};
use crate::raft::Cluster;
use crate::raft::types::{Command, Request, RequestId};

/// Counters for `/metrics` and the benchmarks.
#[derive(Debug, Default)]
pub struct PipelineStats {
    pub updates_sent: AtomicU64,
    pub updates_received: AtomicU64,
    /// Updates that arrived at a node that is not the leader (sent during a leader change).
    pub updates_misdirected: AtomicU64,
    pub snapshots_sent: AtomicU64,
    pub snapshots_received: AtomicU64,
    /// Snapshots ignored as older than the one held.
    pub snapshots_stale: AtomicU64,
    /// Bytes of the last full snapshot built or received (postcard).
    pub snapshot_bytes: AtomicU64,
    /// Bytes of the last view message built or received (a delta, or full).
    pub view_bytes: AtomicU64,
    /// Views this node forwarded as a relay, one per target.
    pub views_relayed: AtomicU64,
    /// Full views asked for (a follower's gap) or sent on request (the leader).
    pub resyncs: AtomicU64,
}

/// What the pipeline holds, for the admin API and `/metrics`.
pub struct State {
    pub view: View,
    /// Some while this node is the leader.
    agg: Option<Aggregator>,
    /// The newest sample and when it was taken, reused when asked again within 250 ms.
    last_sample: Option<(Instant, NodeMetrics)>,
    /// The request deltas and waiting counts the last update carried, by its sample's `at`:
    /// an update built from the same (reused) sample carries them again rather than taking
    /// new ones, so the leader and every view count them once per `at`.
    last_traffic: Carry,
    info_due: bool,
    /// While leading: where the nodes that are not members send their updates from (they get
    /// the view there while they send), and when they last did.
    senders: std::collections::HashMap<NodeId, (std::net::SocketAddr, Instant)>,
    /// While leading: nodes that asked for a full view, and where they asked from.
    resync: std::collections::HashMap<NodeId, std::net::SocketAddr>,
    /// While leading: when each node was last sent a full view on request, and when the last
    /// full view went to everyone. A node asking again within [`FULL_IN_FLIGHT`] intervals is
    /// not answered again (its full view is on the way: a delta overtook it).
    fulls_sent: std::collections::HashMap<NodeId, Instant>,
    full_to_all: Option<Instant>,
    /// While leading: the term and the recipients that have had a full view in it (all of them
    /// when a full view went to everyone). A new recipient (a node that just joined or started
    /// sending) gets a full view at once rather than a delta it cannot apply.
    had_full: (u64, HashSet<NodeId>),
    /// When this node last asked the leader for a full view.
    asked_resync: Option<Instant>,
}

/// The request counts the node's last update carried (see [`State`]'s `last_traffic`).
#[derive(Default)]
struct Carry(Option<Carried>);

impl Carry {
    /// The request counts an update of the sample taken at `at` carries: those of the last
    /// update when it was of the same sample, else new deltas from `recorder`.
    fn counts_for(
        &mut self,
        at: Millis,
        recorder: &Recorder,
    ) -> (Vec<TrafficSample>, Vec<(String, u32)>) {
        match &self.0 {
            // The same sample again: the same deltas, counted once downstream by `at`.
            Some(c) if c.at == at => (c.traffic.clone(), c.waiting.clone()),
            _ => {
                let (traffic, waiting) = recorder.take();
                self.0 = Some(Carried {
                    at,
                    traffic: traffic.clone(),
                    waiting: waiting.clone(),
                    sent: false,
                });
                (traffic, waiting)
            }
        }
    }

    /// The update of the sample taken at `at` left: its request counts are out.
    fn sent(&mut self, at: Millis) {
        if let Some(c) = self.0.as_mut()
            && c.at == at
        {
            c.sent = true;
        }
    }

    /// The update of the sample taken at `at` did not leave: unless an earlier update carried
    /// them out, its deltas go back to `recorder` for the next update.
    fn unsent(&mut self, at: Millis, recorder: &Recorder) {
        if self.0.as_ref().is_some_and(|c| c.at == at && !c.sent)
            && let Some(c) = self.0.take()
        {
            recorder.put_back(c.traffic);
        }
    }
}

/// The request counts one update carried, and the sample time it carried them with.
struct Carried {
    at: Millis,
    traffic: Vec<TrafficSample>,
    waiting: Vec<(String, u32)>,
    /// An update with them left (or reached this node's own aggregator) at least once: a
    /// later failure to send them again must not give them back.
    sent: bool,
}

/// The metrics pipeline of one node.
pub struct Pipeline {
    cluster: Arc<Cluster>,
    cfg: MetricsConfig,
    /// GPU health settings and the CPU power estimate.
    gpu: GpuConfig,
    state: Mutex<State>,
    sampler: Arc<Mutex<Sampler>>,
    /// PIDs whose CPU and RSS go into each update (the supervised instances).
    pids: Mutex<Vec<u32>>,
    gpu_unavailable: Option<String>,
    /// Which GPUs this node hands to instances (`deploy.gpus`).
    gpu_offer: GpuOffer,
    /// Whether a listed offer was checked against NVML (once).
    gpu_offer_checked: std::sync::atomic::AtomicBool,
    sample_now: Notify,
    /// Ask the leader for a full view now (a gap in the deltas).
    resync_now: Notify,
    /// Nodes whose liveness verdict is being written.
    health_writes: Mutex<std::collections::HashSet<NodeId>>,
    seq: AtomicU64,
    /// This node's request counters (written by the ingress).
    recorder: Arc<Recorder>,
    /// This node's reviewer while it leads (set by the controller), sent with each snapshot.
    reviewer: Mutex<Option<LeaderReviewer>>,
    /// The leader's reviewer as it last sent it, and when it came.
    leader_reviewer: Mutex<Option<(LeaderReviewer, Instant)>>,
    /// This node's carbon signal and the error of its last read, sent with its info.
    carbon: Mutex<(Option<super::carbon::CarbonSignal>, Option<String>)>,
    /// This node's strategic layer while it leads (set by the advisor loop), sent with each
    /// snapshot.
    advice: Mutex<Option<LeaderAdvice>>,
    /// The leader's strategic layer as it last sent it, and when it came.
    leader_advice: Mutex<Option<(LeaderAdvice, Instant)>>,
    pub stats: PipelineStats,
    /// When the pipeline started (a node without any view yet asks for one after a while).
    started: Instant,
}

/// A leader's reviewer report older than this is no longer shown (it comes every second).
const REVIEWER_FRESH: Duration = Duration::from_secs(5);

/// A sample younger than this is reused rather than taken again (CPU needs an interval).
const RESAMPLE_AFTER: Duration = Duration::from_millis(250);
/// After becoming leader, the first snapshot waits this long for the fresh samples it asked for.
const FIRST_SNAPSHOT_AFTER: Duration = Duration::from_millis(250);
/// A node whose view is this many intervals old asks the leader for a full one (its relay may
/// be down), and asks again no sooner than this many intervals later.
const RESYNC_AFTER: u32 = 3;
/// A full view sent this many intervals ago may still be on its way (a large view on a busy
/// node): the leader does not answer the same node's request again before.
const FULL_IN_FLIGHT: u32 = 2;
/// A node sent a full view on request within this many intervals gets the next one it asks
/// for directly from the leader, not through its relay (which may be what fails it).
const FULL_REPEAT: u32 = 10;

impl Pipeline {
    /// Build the pipeline (initialises NVML once; logs once when it is unavailable).
    /// `gpu_offer` is what the node's updates say it hands to instances; `recorder` holds the
    /// node's request counts (the same one the ingress writes), whose deltas each update
    /// carries.
    pub fn new(
        cluster: Arc<Cluster>,
        cfg: MetricsConfig,
        gpu: GpuConfig,
        gpu_offer: GpuOffer,
        recorder: Arc<Recorder>,
    ) -> anyhow::Result<Arc<Pipeline>> {
        let sampler = Sampler::new()?;
        let gpu_unavailable = sampler.gpu_unavailable();
        Ok(Arc::new(Pipeline {
            cluster,
            cfg,
            gpu,
            state: Mutex::new(State {
                view: View::default(),
                agg: None,
                last_sample: None,
                last_traffic: Carry::default(),
                info_due: true,
                senders: Default::default(),
                resync: Default::default(),
                fulls_sent: Default::default(),
                full_to_all: None,
                had_full: Default::default(),
                asked_resync: None,
            }),
            sampler: Arc::new(Mutex::new(sampler)),
            pids: Mutex::default(),
            gpu_unavailable,
            gpu_offer,
            gpu_offer_checked: Default::default(),
            sample_now: Notify::new(),
            resync_now: Notify::new(),
            health_writes: Mutex::default(),
            seq: AtomicU64::new(0),
            recorder,
            reviewer: Mutex::default(),
            leader_reviewer: Mutex::default(),
            advice: Mutex::default(),
            carbon: Mutex::default(),
            leader_advice: Mutex::default(),
            stats: PipelineStats::default(),
            started: Instant::now(),
        }))
    }

    /// Set this node's carbon signal (the last good one) and the error of the last read; a
    /// change goes to the leader with the next update.
    pub fn set_carbon(&self, signal: Option<super::carbon::CarbonSignal>, error: Option<String>) {
        let changed = {
            let mut c = self.carbon.lock().expect("carbon lock");
            let changed = c.0 != signal || c.1 != error;
            *c = (signal, error);
            changed
        };
        if changed {
            self.state.lock().expect("state lock").info_due = true;
        }
    }

    /// This node's request counters: the ingress records into them, `/metrics` reads their
    /// totals, and every update carries their deltas.
    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.recorder
    }

    /// What this node's reviewer is while it leads (the controller sets it each tick, `None`
    /// when it stops deciding); sent to every member with each snapshot.
    pub fn set_reviewer(&self, r: Option<LeaderReviewer>) {
        *self.reviewer.lock().expect("reviewer lock") = r;
    }

    /// The leader's reviewer: this node's own while it leads, else the leader's last report
    /// if it is fresh.
    pub fn leader_reviewer(&self) -> Option<LeaderReviewer> {
        if let Some(own) = self.reviewer.lock().expect("reviewer lock").clone() {
            return Some(own);
        }
        let got = self.leader_reviewer.lock().expect("reviewer lock");
        got.as_ref()
            .filter(|(_, at)| at.elapsed() < REVIEWER_FRESH)
            .map(|(r, _)| r.clone())
    }

    /// What this node's strategic layer says while it leads (the advisor loop sets it after
    /// each answer, `None` when it stops leading); sent to every member with each snapshot.
    pub fn set_advice(&self, a: Option<crate::domain::AdviceView>) {
        *self.advice.lock().expect("advice lock") = a.map(|view| LeaderAdvice {
            view,
            ..Default::default()
        });
    }

    /// The leader's advice: this node's own while it leads, else the leader's last report if
    /// it is fresh.
    pub fn leader_advice(&self) -> Option<crate::domain::AdviceView> {
        if let Some(own) = self.advice.lock().expect("advice lock").clone() {
            return Some(own.view);
        }
        let got = self.leader_advice.lock().expect("advice lock");
        got.as_ref()
            .filter(|(_, at)| at.elapsed() < REVIEWER_FRESH)
            .map(|(a, _)| a.view.clone())
    }

    /// Sample these processes (CPU, RSS) in every update from now on.
    pub fn set_processes(&self, pids: Vec<u32>) {
        *self.pids.lock().expect("pids lock") = pids;
    }

    /// Read the pipeline's state (snapshot, window, own update) under its lock.
    pub fn with_state<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.lock().expect("metrics state lock"))
    }

    /// The GPUs (NVML indices) this node hands to instances: `deploy.gpus`, resolved against
    /// its newest sample (taking the first one when there is none yet). `None` when NVML cannot
    /// be used and nothing was listed, so instances' environments are left alone.
    pub async fn gpus_offered(&self) -> Option<Vec<u32>> {
        let known: Option<Vec<u32>> = self.with_state(|st| {
            st.last_sample
                .as_ref()
                .map(|(_, m)| m.gpus.iter().map(|g| g.index).collect())
        });
        let nvml = match known {
            Some(g) => g,
            None => self
                .take_sample()
                .await
                .gpus
                .iter()
                .map(|g| g.index)
                .collect(),
        };
        if let GpuOffer::Listed(l) = &self.gpu_offer
            && self.gpu_unavailable.is_none()
            && !self.gpu_offer_checked.swap(true, Ordering::Relaxed)
        {
            let unknown: Vec<String> = l
                .iter()
                .filter(|g| !nvml.contains(g))
                .map(u32::to_string)
                .collect();
            if !unknown.is_empty() {
                tracing::warn!(
                    "deploy.gpus lists GPU {} that NVML does not list on this node (it lists {:?}); \
                     instances given them will find no device: fix deploy.gpus",
                    unknown.join(", "),
                    nvml
                );
            }
        }
        match &self.gpu_offer {
            // Without NVML nothing is known of GPUs: leave the environment alone. With it,
            // even a sample that misses a device keeps instances to their own.
            GpuOffer::All if self.gpu_unavailable.is_some() => None,
            offer => Some(offer.resolve(&nvml)),
        }
    }

    /// After how long without an update the leader marks a node down.
    pub fn down_after(&self) -> Duration {
        self.cfg.down_after.0
    }

    /// The sampling and broadcast period.
    pub fn interval(&self) -> Duration {
        self.cfg.interval.0
    }

    fn settings(&self) -> Settings {
        Settings {
            suspect_after: self.cfg.suspect_after.0,
            down_after: self.cfg.down_after.0,
            anomaly_threshold: self.cfg.anomaly_threshold,
            anomaly_window_secs: self.cfg.anomaly_window.0.as_secs(),
            gpu: super::gpu_health::Settings {
                trend_secs: self.gpu.trend_window.0.as_secs(),
                warn_within_secs: self.gpu.warn_within.0.as_secs(),
                min_rise_per_min: self.gpu.min_rise_per_min,
                errors_for_secs: self.gpu.errors_for.0.as_secs(),
                throttled_for_secs: self.gpu.throttled_for.0.as_secs(),
            },
        }
    }

    /// Watts one fully busy core is estimated to draw (`gpu.cpu_watts_per_core`).
    pub fn cpu_watts_per_core(&self) -> f64 {
        self.gpu.cpu_watts_per_core
    }

    /// Run every loop until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        tokio::join!(
            self.clone().sample_loop(shutdown.clone()),
            self.clone().leader_loop(shutdown),
        );
    }

    async fn take_sample(&self) -> NodeMetrics {
        if let Some((t, m)) = &self.state.lock().expect("state lock").last_sample
            && t.elapsed() < RESAMPLE_AFTER
        {
            return m.clone();
        }
        let pids = self.pids.lock().expect("pids lock").clone();
        let sampler = self.sampler.clone();
        // sysinfo and NVML read files and call into the driver: keep them off the runtime.
        let m = tokio::task::spawn_blocking(move || {
            sampler.lock().expect("sampler lock").sample(&pids)
        })
        .await
        .expect("sampling does not panic");
        self.state.lock().expect("state lock").last_sample = Some((Instant::now(), m.clone()));
        m
    }

    async fn push(&self) {
        let mut m = self.take_sample().await;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let info_due = {
            let mut st = self.state.lock().expect("state lock");
            (m.traffic, m.waiting) = st.last_traffic.counts_for(m.at, &self.recorder);
            m.listen_errors = self.recorder.listen_errors();
            std::mem::take(&mut st.info_due)
        };
        let (carbon, carbon_error) = self.carbon.lock().expect("carbon lock").clone();
        let info = (info_due || seq % INFO_EVERY == 1).then(|| NodeInfo {
            name: self.cluster.name.clone(),
            gpu_unavailable: self.gpu_unavailable.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            gpu_offer: match &self.gpu_offer {
                GpuOffer::All => None,
                GpuOffer::Listed(l) => Some(l.clone()),
            },
            carbon,
            carbon_error,
        });
        let u = MetricsUpdate {
            node: self.cluster.id,
            seq,
            info,
            m,
        };
        let leader = self.cluster.leader();
        {
            let mut st = self.state.lock().expect("state lock");
            if leader
                .as_ref()
                .is_some_and(|(id, _)| *id == self.cluster.id)
            {
                if let Some(agg) = st.agg.as_mut() {
                    let at = u.m.at;
                    agg.receive(u, Instant::now());
                    st.last_traffic.sent(at);
                    return;
                }
            }
        }
        let target = leader.filter(|(id, _)| *id != self.cluster.id);
        let Some((id, addr)) = target else {
            // No leader to take it (or this node leads but does not aggregate yet): the
            // requests count in the next update.
            self.unsent(u.m.at);
            return;
        };
        let at = u.m.at;
        match self
            .cluster
            .ep
            .send_oneway(&addr, &MetricsMsg::Update(Box::new(u)))
            .await
        {
            Ok(_) => {
                self.stats.updates_sent.fetch_add(1, Ordering::Relaxed);
                self.state.lock().expect("state lock").last_traffic.sent(at);
            }
            Err(e) => {
                // The leader may be restarting; the next update retries. Re-send the info then.
                self.state.lock().expect("state lock").info_due = true;
                self.unsent(at);
                tracing::debug!("metrics update to leader {id} at {addr} not sent: {e}");
            }
        }
    }

    /// The update of the sample taken at `at` did not leave: its request deltas go back to
    /// the recorder, so the next update carries them (a datagram lost on the way is lost).
    fn unsent(&self, at: Millis) {
        self.state
            .lock()
            .expect("state lock")
            .last_traffic
            .unsent(at, &self.recorder);
    }

    async fn sample_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.cfg.interval.0);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Server metrics change on role and leader changes only (not per heartbeat).
        let mut raft = self.cluster.raft.server_metrics();
        let mut leader = raft.borrow().current_leader;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
                _ = self.sample_now.notified() => {
                    self.state.lock().expect("state lock").info_due = true;
                }
                _ = self.resync_now.notified() => {
                    self.ask_resync(false).await;
                    continue;
                }
                r = raft.changed() => {
                    if r.is_err() {
                        return;
                    }
                    let now = raft.borrow().current_leader;
                    if now == leader {
                        continue;
                    }
                    leader = now;
                    if leader.is_none() {
                        continue;
                    }
                    // A new leader: tell it at once, with this node's info.
                    self.state.lock().expect("state lock").info_due = true;
                }
            }
            self.push().await;
            self.ask_resync(true).await;
        }
    }

    /// Ask the leader for a full view: on a gap (`only_if_stale` false; at most once per
    /// interval), or when the view held is [`RESYNC_AFTER`] intervals old, or missing that long
    /// after start-up (its relay may be down; at most once per [`RESYNC_AFTER`] intervals).
    /// Never on the leader.
    async fn ask_resync(&self, only_if_stale: bool) {
        let Some((leader, addr)) = self.cluster.leader() else {
            return;
        };
        if leader == self.cluster.id {
            return;
        }
        let term = self
            .cluster
            .raft
            .server_metrics()
            .borrow()
            .vote
            .leader_id()
            .get_term();
        let patience = self.cfg.interval.0 * RESYNC_AFTER;
        let now = Instant::now();
        {
            let mut st = self.state.lock().expect("state lock");
            if st.agg.is_some() {
                return;
            }
            // A view missing since start-up counts as old once the first full one is overdue.
            let age = st
                .view
                .age(now)
                .unwrap_or_else(|| now.duration_since(self.started));
            if only_if_stale && age < patience {
                return;
            }
            // A gap: once per interval; a view grown old: once per patience.
            let wait = if only_if_stale {
                patience
            } else {
                self.cfg.interval.0
            };
            if st
                .asked_resync
                .is_some_and(|t| now.duration_since(t) < wait)
            {
                return;
            }
            st.asked_resync = Some(now);
        }
        self.stats.resyncs.fetch_add(1, Ordering::Relaxed);
        let msg = MetricsMsg::Resync {
            node: self.cluster.id,
            term,
        };
        if let Err(e) = self.cluster.ep.send_oneway(&addr, &msg).await {
            tracing::debug!("metrics: asking leader {leader} for a full view failed: {e}");
        }
    }

    async fn leader_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut raft = self.cluster.raft.server_metrics();
        let mut next = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(next) => {}
                r = raft.changed() => if r.is_err() { return },
            }
            let (is_leader, term) = {
                let m = raft.borrow();
                (
                    m.current_leader == Some(self.cluster.id)
                        && m.state == openraft::ServerState::Leader,
                    m.vote.leader_id().get_term(),
                )
            };
            let now = Instant::now();
            if !is_leader {
                let mut st = self.state.lock().expect("state lock");
                if st.agg.take().is_some() {
                    tracing::info!("metrics: no longer the leader; stopped aggregating");
                    st.senders.clear();
                    st.resync.clear();
                    st.fulls_sent.clear();
                    st.full_to_all = None;
                }
                next = tokio::time::Instant::now() + self.cfg.interval.0;
                continue;
            }
            let started = {
                let mut st = self.state.lock().expect("state lock");
                if st.agg.as_ref().is_some_and(|a| a.term == term) {
                    None
                } else {
                    let seed = st
                        .view
                        .snapshot
                        .as_ref()
                        .zip(st.view.received)
                        .filter(|(s, _)| s.term < term);
                    let age = st.view.age(now);
                    st.agg = Some(Aggregator::new(
                        self.cluster.id,
                        term,
                        self.settings(),
                        seed,
                        now,
                    ));
                    Some(age)
                }
            };
            if let Some(age) = started {
                let stale = age.is_none_or(|a| a > self.cfg.refresh_after.0);
                tracing::info!(
                    "metrics: aggregating as leader of term {term}, starting from {}",
                    match age {
                        Some(a) => format!("a snapshot {:.1} s old", a.as_secs_f32()),
                        None => "nothing".into(),
                    }
                );
                if stale {
                    match self.cluster.store.nodes() {
                        Ok(members) => self.broadcast(&MetricsMsg::SampleNow { term }, &members),
                        Err(e) => tracing::warn!("metrics: cannot read members: {e}"),
                    }
                }
                self.sample_now.notify_one();
                next = tokio::time::Instant::now() + FIRST_SNAPSHOT_AFTER;
                continue;
            }
            if tokio::time::Instant::now() < next {
                continue;
            }
            next += self.cfg.interval.0;
            if next < tokio::time::Instant::now() {
                next = tokio::time::Instant::now() + self.cfg.interval.0;
            }
            self.leader_tick(now);
        }
    }

    fn leader_tick(self: &Arc<Self>, now: Instant) {
        let store = &self.cluster.store;
        let (members, recorded) = match (store.nodes(), store.health()) {
            (Ok(m), Ok(h)) => (m, h),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!("metrics: cannot read members: {e}");
                return;
            }
        };
        let (snap, transitions, missing) = {
            let mut st = self.state.lock().expect("state lock");
            let st = &mut *st;
            let Some(agg) = st.agg.as_mut() else { return };
            let (snap, tr) = agg.tick(now, now_millis(), &members, &recorded, &st.view.window);
            (snap, tr, agg.missing_info())
        };
        let term = snap.term;
        // The leader's reviewer and advice travel with the view, the same way.
        let mut also = Vec::new();
        let own = self.reviewer.lock().expect("reviewer lock").clone();
        if let Some(mut r) = own {
            (r.leader, r.term) = (self.cluster.id, term);
            also.push(MetricsMsg::Reviewer(r));
        }
        let own = self.advice.lock().expect("advice lock").clone();
        if let Some(mut a) = own {
            (a.leader, a.term) = (self.cluster.id, term);
            also.push(MetricsMsg::Advice(a));
        }
        self.spread(snap, also, &members, now);
        // Members whose first update (with their info) was lost: ask them again.
        let missing: Vec<NodeRecord> = members
            .iter()
            .filter(|m| missing.contains(&m.id))
            .cloned()
            .collect();
        if !missing.is_empty() {
            self.broadcast(&MetricsMsg::SampleNow { term }, &missing);
        }
        for t in transitions {
            // One write per node at a time: a verdict still being written is not written again.
            if !self.health_writes.lock().expect("lock").insert(t.node) {
                continue;
            }
            let me = self.clone();
            let name = members
                .iter()
                .find(|m| m.id == t.node)
                .map(|m| m.name.clone())
                .unwrap_or_default();
            match t.health {
                Health::Ready => tracing::info!("node {name} is ready again: {}", t.why),
                h => tracing::warn!("node {name} is {h}: {}", t.why),
            }
            tokio::spawn(async move {
                let req = Request {
                    // Writes for different nodes may apply in any order: each is its own client.
                    id: RequestId::new_random(),
                    actor: format!("node:{}", me.cluster.name),
                    at: now_millis(),
                    cmd: Command::SetNodeHealth {
                        id: t.node,
                        name,
                        health: t.health,
                        why: t.why,
                    },
                };
                if let Err(e) = me.cluster.write(req, false).await {
                    tracing::warn!(
                        "metrics: recording node {} {} failed: {e}",
                        t.node,
                        t.health
                    );
                }
                me.health_writes.lock().expect("lock").remove(&t.node);
            });
        }
    }

    /// Spread this tick's snapshot to every recipient (see the module doc): a delta against the
    /// previous snapshot (full at the start of a term), directly or through relays, with the
    /// messages `also` (reviewer, advice); and a full view to each node that asked; then take
    /// it into this node's own view.
    fn spread(
        self: &Arc<Self>,
        snap: ClusterMetricsSnapshot,
        also: Vec<MetricsMsg>,
        members: &[NodeRecord],
        now: Instant,
    ) {
        let suspect_ms = self.cfg.suspect_after.0.as_millis() as u64;
        let me = self.cluster.id;
        let (recipients, mut asked, delta) = {
            let mut st = self.state.lock().expect("state lock");
            let st = &mut *st;
            let down = self.cfg.down_after.0;
            st.senders
                .retain(|_, (_, t)| now.saturating_duration_since(*t) < down);
            // Fit to relay: heard from within `suspect_after`, and not judged otherwise.
            let fit: HashMap<NodeId, bool> = snap
                .nodes
                .iter()
                .map(|e| (e.node, e.age_ms < suspect_ms && e.health == Health::Ready))
                .collect();
            let is_fit = |id: &NodeId| fit.get(id).copied().unwrap_or(false);
            let mut recipients: Vec<(NodeId, String, bool)> = members
                .iter()
                .filter(|m| m.id != me)
                .map(|m| (m.id, m.addr.clone(), is_fit(&m.id)))
                .collect();
            let member_ids: HashSet<NodeId> = members.iter().map(|m| m.id).collect();
            for (id, (from, _)) in &st.senders {
                if *id != me && !member_ids.contains(id) {
                    recipients.push((*id, from.to_string(), is_fit(id)));
                }
            }
            recipients.sort_by_key(|r| r.0);
            if st.had_full.0 != snap.term {
                st.had_full = (snap.term, HashSet::new());
            }
            for (id, addr, _) in &recipients {
                if !st.had_full.1.contains(id)
                    && let Ok(sa) = addr.parse::<std::net::SocketAddr>()
                {
                    st.resync.entry(*id).or_insert(sa);
                }
            }
            let within =
                |t: &Instant, n: u32| now.saturating_duration_since(*t) < self.cfg.interval.0 * n;
            st.fulls_sent.retain(|_, t| within(t, FULL_REPEAT));
            let everyone_had_one = st
                .full_to_all
                .as_ref()
                .is_some_and(|t| within(t, FULL_IN_FLIGHT));
            let fulls_sent = &st.fulls_sent;
            let mut asked: Vec<(NodeId, std::net::SocketAddr)> = st
                .resync
                .drain()
                .filter(|(id, _)| {
                    *id != me
                        && !everyone_had_one
                        && !fulls_sent
                            .get(id)
                            .is_some_and(|t| within(t, FULL_IN_FLIGHT))
                })
                .collect();
            // Full views on request: at most so many per tick (about two copies per relay at
            // most); the rest wait for the next tick.
            let cap = (recipients.len() as f64).sqrt().ceil() as usize;
            let cap = cap.max(delta::DIRECT_MAX);
            if asked.len() > cap {
                st.resync.extend(asked.drain(cap..));
            }
            // (node, address, asked again soon after a full view: send it directly)
            let asked: Vec<(NodeId, String, bool)> = asked
                .into_iter()
                .map(|(id, from)| {
                    let addr = members
                        .iter()
                        .find(|m| m.id == id)
                        .map(|m| m.addr.clone())
                        .unwrap_or_else(|| from.to_string());
                    (id, addr, fulls_sent.contains_key(&id))
                })
                .collect();
            let delta = st
                .view
                .snapshot
                .as_ref()
                .and_then(|prev| delta::diff(prev, &snap));
            (recipients, asked, delta)
        };
        let plan = delta::plan_relays(&recipients.iter().map(|r| r.2).collect::<Vec<_>>());
        self.stats
            .snapshot_bytes
            .store(encoded_len(&snap) as u64, Ordering::Relaxed);
        let update = match delta {
            Some(d) => ViewUpdate::Delta(d),
            None => {
                asked.clear();
                let mut st = self.state.lock().expect("state lock");
                st.full_to_all = Some(now);
                st.had_full.1.extend(recipients.iter().map(|r| r.0));
                ViewUpdate::Full(snap.clone())
            }
        };
        self.state
            .lock()
            .expect("state lock")
            .had_full
            .1
            .extend(asked.iter().map(|a| a.0));
        let mut sends: Vec<(String, Arc<Vec<u8>>)> = Vec::new();
        let encode = |msg: &MetricsMsg| match crate::net::frame::encode_body(msg) {
            Ok(b) => Some(Arc::new(b)),
            Err(e) => {
                tracing::warn!("metrics: cannot encode the view: {e}");
                None
            }
        };
        if !asked.is_empty() {
            self.stats
                .resyncs
                .fetch_add(asked.len() as u64, Ordering::Relaxed);
            // Through the node's relay, as one message per relay (the leader keeps connections
            // to the relays only); directly for a node asking again, or without a relay.
            let index: HashMap<NodeId, usize> = recipients
                .iter()
                .enumerate()
                .map(|(i, r)| (r.0, i))
                .collect();
            let relay_of: HashMap<usize, usize> = plan
                .sends
                .iter()
                .flat_map(|(relay, targets)| targets.iter().map(move |t| (*t, *relay)))
                .collect();
            let mut via: std::collections::BTreeMap<usize, Vec<String>> = Default::default();
            let mut direct = Vec::new();
            {
                let mut st = self.state.lock().expect("state lock");
                for (id, addr, again) in asked {
                    st.fulls_sent.insert(id, now);
                    match index.get(&id).and_then(|i| relay_of.get(i)) {
                        Some(relay) if !again => via.entry(*relay).or_default().push(addr),
                        _ => direct.push(addr),
                    }
                }
            }
            if !direct.is_empty()
                && let Some(full) = encode(&MetricsMsg::View(ViewUpdate::Full(snap.clone())))
            {
                sends.extend(direct.into_iter().map(|a| (a, full.clone())));
            }
            for (relay, to) in via {
                let msg = MetricsMsg::Relay {
                    to,
                    view: ViewUpdate::Full(snap.clone()),
                    also: Vec::new(),
                };
                if let Some(b) = encode(&msg) {
                    sends.push((recipients[relay].1.clone(), b));
                }
            }
        }
        let msg = MetricsMsg::View(update);
        let Some(body) = encode(&msg) else {
            self.state.lock().expect("state lock").view.apply(snap, now);
            return;
        };
        self.stats
            .view_bytes
            .store(body.len() as u64, Ordering::Relaxed);
        let MetricsMsg::View(update) = msg else {
            unreachable!("built above")
        };
        let also_bodies: Vec<Arc<Vec<u8>>> = also.iter().filter_map(encode).collect();
        for (relay, targets) in plan.sends {
            let addr = recipients[relay].1.clone();
            if targets.is_empty() {
                sends.push((addr.clone(), body.clone()));
                sends.extend(also_bodies.iter().map(|b| (addr.clone(), b.clone())));
                continue;
            }
            let relayed = MetricsMsg::Relay {
                to: targets.iter().map(|&t| recipients[t].1.clone()).collect(),
                view: update.clone(),
                also: also.clone(),
            };
            if let Some(b) = encode(&relayed) {
                sends.push((addr, b));
            }
        }
        self.send_all(sends, true);
        self.state.lock().expect("state lock").view.apply(snap, now);
    }

    /// Send `msg` to every member but this node, concurrently, bounded by the interval.
    fn broadcast(self: &Arc<Self>, msg: &MetricsMsg, members: &[NodeRecord]) {
        let body = match crate::net::frame::encode_body(msg) {
            Ok(b) => Arc::new(b),
            Err(e) => {
                tracing::warn!("metrics: cannot encode: {e}");
                return;
            }
        };
        let sends = members
            .iter()
            .filter(|m| m.id != self.cluster.id)
            .map(|m| (m.addr.clone(), body.clone()))
            .collect();
        self.send_all(sends, false);
    }

    /// Send each body to its address, concurrently, bounded by the interval; `views` counts
    /// the successful sends as views sent.
    fn send_all(self: &Arc<Self>, sends: Vec<(String, Arc<Vec<u8>>)>, views: bool) {
        let mut set = tokio::task::JoinSet::new();
        for (addr, body) in sends {
            let ep = self.cluster.ep.clone();
            set.spawn(async move { ep.send_oneway_body(&addr, &body).await.is_ok() });
        }
        // Never hold the caller up: a dead member costs a connect attempt, not a stalled tick.
        let me = self.clone();
        let limit = self.cfg.interval.0;
        tokio::spawn(async move {
            let mut ok = 0u64;
            let _ = tokio::time::timeout(limit, async {
                while let Some(r) = set.join_next().await {
                    ok += u64::from(r.unwrap_or(false));
                }
            })
            .await;
            if views {
                me.stats.snapshots_sent.fetch_add(ok, Ordering::Relaxed);
            }
        });
    }

    /// Take a view from the leader or a relay; on a gap, ask the leader for a full one.
    fn take_view(&self, u: ViewUpdate, size: usize) {
        let mut st = self.state.lock().expect("state lock");
        // The leader builds its own; a view from elsewhere is only taken when this node is
        // not aggregating.
        if st.agg.is_some() || u.leader() == self.cluster.id {
            return;
        }
        let full = matches!(u, ViewUpdate::Full(_));
        match st.view.apply_update(u, Instant::now()) {
            Ok(Applied::Taken) => {
                self.stats
                    .snapshots_received
                    .fetch_add(1, Ordering::Relaxed);
                self.stats.view_bytes.store(size as u64, Ordering::Relaxed);
                if full {
                    self.stats
                        .snapshot_bytes
                        .store(size as u64, Ordering::Relaxed);
                }
            }
            Ok(Applied::Stale) => {
                self.stats.snapshots_stale.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Applied::Early) => {}
            Err(gap) => {
                drop(st);
                tracing::debug!("{gap}");
                self.resync_now.notify_one();
            }
        }
    }
}

/// Bytes `v` takes in postcard, without building them.
fn encoded_len<T: serde::Serialize>(v: &T) -> usize {
    struct Count(usize);
    impl Extend<u8> for Count {
        fn extend<I: IntoIterator<Item = u8>>(&mut self, it: I) {
            self.0 += it.into_iter().count();
        }
    }
    postcard::to_extend(v, Count(0)).map_or(0, |c| c.0)
}

impl Inbox for Pipeline {
    type Msg = MetricsMsg;

    fn deliver(&self, ctx: PeerCtx, msg: MetricsMsg, size: usize) {
        // Handled in place (a map insert, or recording one snapshot): no task hop per datagram.
        match msg {
            MetricsMsg::Update(u) => {
                let mut st = self.state.lock().expect("state lock");
                match st.agg.as_mut() {
                    Some(agg) => {
                        self.stats.updates_received.fetch_add(1, Ordering::Relaxed);
                        let now = Instant::now();
                        let node = u.node;
                        agg.receive(*u, now);
                        // Where it sends from: a node that is not a member gets the view there.
                        st.senders.insert(node, (ctx.remote, now));
                    }
                    None => {
                        self.stats
                            .updates_misdirected
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            MetricsMsg::View(u) => self.take_view(u, size),
            MetricsMsg::Relay { to, view, also } => {
                // Forward first, so the group does not wait on this node's own apply.
                let mut bodies = Vec::with_capacity(1 + also.len());
                for m in std::iter::once(&MetricsMsg::View(view.clone())).chain(&also) {
                    match crate::net::frame::encode_body(m) {
                        Ok(b) => bodies.push(Arc::new(b)),
                        Err(e) => tracing::warn!("metrics: cannot encode a relayed message: {e}"),
                    }
                }
                self.stats
                    .views_relayed
                    .fetch_add(to.len() as u64, Ordering::Relaxed);
                let ep = self.cluster.ep.clone();
                tokio::spawn(async move {
                    let mut set = tokio::task::JoinSet::new();
                    for addr in to {
                        let (ep, bodies) = (ep.clone(), bodies.clone());
                        set.spawn(async move {
                            for b in bodies {
                                let _ = ep.send_oneway_body(&addr, &b).await;
                            }
                        });
                    }
                    while set.join_next().await.is_some() {}
                });
                self.take_view(view, size);
                for m in also {
                    // Only the leader's reports ride along; nothing relays twice.
                    if matches!(m, MetricsMsg::Reviewer(_) | MetricsMsg::Advice(_)) {
                        self.deliver(ctx, m, 0);
                    }
                }
            }
            MetricsMsg::Resync { node, .. } => {
                let mut st = self.state.lock().expect("state lock");
                if st.agg.is_some() {
                    st.resync.insert(node, ctx.remote);
                }
            }
            MetricsMsg::SampleNow { .. } => self.sample_now.notify_one(),
            MetricsMsg::Reviewer(r) => {
                let mut got = self.leader_reviewer.lock().expect("reviewer lock");
                if takes_reviewer(got.as_ref().map(|(r, _)| r), &r, self.cluster.id) {
                    *got = Some((r, Instant::now()));
                }
            }
            MetricsMsg::Advice(a) => {
                let mut got = self.leader_advice.lock().expect("advice lock");
                let held = got.as_ref().map(|(a, _)| (a.leader, a.term));
                if takes_report(held, (a.leader, a.term), self.cluster.id) {
                    *got = Some((a, Instant::now()));
                }
            }
        }
    }
}

/// Whether a leader's reviewer report replaces the one `held`: not this node's own, and not
/// from an older term than the one held (a deposed leader's).
fn takes_reviewer(held: Option<&LeaderReviewer>, r: &LeaderReviewer, me: NodeId) -> bool {
    takes_report(held.map(|h| (h.leader, h.term)), (r.leader, r.term), me)
}

/// Whether a leader's report sent by `(leader, term)` replaces the one held (sent by `held`):
/// not this node's own, and not from an older term than the one held.
fn takes_report(held: Option<(NodeId, u64)>, (leader, term): (NodeId, u64), me: NodeId) -> bool {
    leader != me && held.is_none_or(|(_, old)| term >= old)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leaders_reviewer_report_is_taken_unless_older() {
        let report = |leader, term| LeaderReviewer {
            leader,
            term,
            view: crate::raft::status::ReviewerView {
                state: "ready".into(),
                ..Default::default()
            },
        };
        assert!(takes_reviewer(None, &report(1, 3), 2));
        assert!(!takes_reviewer(None, &report(2, 3), 2), "this node's own");
        assert!(takes_reviewer(Some(&report(1, 3)), &report(1, 3), 2));
        assert!(takes_reviewer(Some(&report(1, 3)), &report(3, 4), 2));
        assert!(
            !takes_reviewer(Some(&report(3, 4)), &report(1, 3), 2),
            "a deposed leader's"
        );
    }
    use crate::metrics::requests::Outcome;

    fn call(r: &Recorder) {
        r.record(
            "shop/web",
            "home",
            Some(0),
            Outcome::Answered(200),
            Duration::from_millis(3),
        );
    }

    fn calls(t: &[TrafficSample]) -> u32 {
        t.iter().map(|s| s.calls).sum()
    }

    #[test]
    fn request_counts_leave_once_per_sample_and_come_back_when_unsent() {
        let (r, mut c) = (Recorder::new(), Carry::default());
        call(&r);
        let (t, _) = c.counts_for(1_000, &r);
        assert_eq!(calls(&t), 1);
        c.sent(1_000);
        // The same sample again (re-sent within 250 ms): the same counts, nothing new taken.
        call(&r);
        assert_eq!(calls(&c.counts_for(1_000, &r).0), 1);
        // Its re-send failing gives nothing back: the first one carried them out.
        c.unsent(1_000, &r);
        let (t, _) = c.counts_for(2_000, &r);
        assert_eq!(calls(&t), 1, "only the call since: {t:?}");
        // An update that never left gives its counts back to the next one.
        c.unsent(2_000, &r);
        call(&r);
        assert_eq!(calls(&c.counts_for(3_000, &r).0), 2);
    }
}
