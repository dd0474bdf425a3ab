//! Sleep and wake on the leader, each controller tick: gather the [`PowerNode`]s and the load,
//! ask [`plan`] what to do, carry out its steps (commands run on tasks of their own, so a slow
//! command never holds the tick) and hand its proposals to the controller's decision path.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::exec::{self, Target, Which};
use super::{Load, PowerNode, Settings, Step, Tracker, plan};
use crate::config::PowerConfig;
use crate::controller::brain::{Brain, Proposal, World};
use crate::domain::{Decision, Health, Mac, Millis, NodeId, NodeState, PowerRecord, PowerState};
use crate::metrics::pipeline::Pipeline;
use crate::raft::types::{Command, Response};
use crate::raft::{Cluster, Writer};

/// How far apart the forecast points are that the wake lead is checked against.
const FORECAST_STEP_SECS: u64 = 10;

/// The power loop's memory on this leader.
pub struct Power {
    cfg: PowerConfig,
    settings: Settings,
    tracker: Mutex<Tracker>,
    /// The commands started, by node and the record's `since`: each runs once per record.
    started: Arc<Mutex<HashSet<(NodeId, Millis)>>>,
}

impl Power {
    /// `None` unless `[power] enabled`.
    pub fn new(cfg: &PowerConfig) -> Option<Power> {
        cfg.enabled.then(|| Power {
            settings: Settings {
                idle_for_ms: cfg.idle_for.0.as_millis() as u64,
                resume_timeout_ms: cfg.resume_timeout.0.as_millis() as u64,
                target: cfg.target_utilisation,
                never_sleep: cfg.never_sleep.clone(),
            },
            cfg: cfg.clone(),
            tracker: Mutex::new(Tracker::default()),
            started: Arc::default(),
        })
    }

    /// One tick: carry out what is due and return the sleep and wake proposals. `decisions`
    /// are the recent ones, newest first (the open ones among them hold further changes back).
    pub async fn tick(
        &self,
        cluster: &Arc<Cluster>,
        metrics: &Pipeline,
        brain: &Mutex<Brain>,
        world: &World,
        decisions: &[Decision],
        w: &mut Writer,
    ) -> Result<Vec<Proposal>, std::io::Error> {
        let (nodes, addrs) = gather(cluster, metrics, world, decisions)?;
        let load = load(world, &brain.lock().expect("brain"));
        let steps = plan(
            &nodes,
            &load,
            &self.settings,
            &mut self.tracker.lock().expect("power tracker"),
            world.now,
        );
        let mut proposals = Vec::new();
        for step in steps {
            match step {
                Step::Propose(p) => proposals.push(p),
                Step::Record { record, state } => {
                    if record.state == PowerState::Down {
                        tracing::warn!(
                            "power: {} is down: {}",
                            record.name,
                            record.reason.as_deref().unwrap_or("")
                        );
                    }
                    write(w, record, state).await;
                }
                Step::Suspend { node, name } => {
                    let since = power_since(&nodes, node);
                    self.start(cluster, node, since, Which::Suspend, &name, &addrs);
                }
                Step::Resume { node, name, since } => {
                    self.start(cluster, node, since, Which::Resume, &name, &addrs);
                }
            }
        }
        Ok(proposals)
    }

    /// Run `which` for node `node` on a task of its own, once per record (`since`), and write
    /// what came of it.
    fn start(
        &self,
        cluster: &Arc<Cluster>,
        node: NodeId,
        since: Millis,
        which: Which,
        name: &str,
        addrs: &BTreeMap<NodeId, String>,
    ) {
        if !self.started.lock().expect("power").insert((node, since)) {
            return;
        }
        let target = Target {
            name: name.to_string(),
            addr: addrs.get(&node).cloned().unwrap_or_default(),
            mac: self.cfg.mac.get(name).and_then(|m| m.parse::<Mac>().ok()),
        };
        let cfg = self.cfg.clone();
        let cluster = cluster.clone();
        tokio::spawn(async move {
            let leader = cluster.name.clone();
            let timeout = cfg.command_timeout.0;
            let result = match which {
                Which::Suspend => {
                    exec::run(which, &cfg.suspend_command, &target, &leader, timeout).await
                }
                Which::Resume => resume(&cfg, &target, &leader, timeout).await,
            };
            // Forwarded: leadership may have moved while the command ran.
            let mut w = Writer::forwarding(cluster.clone(), "power");
            let record = |state, reason| PowerRecord {
                node,
                name: target.name.clone(),
                state,
                since: crate::domain::now_millis(),
                wake_ms: None,
                reason,
            };
            match (which, result) {
                (Which::Suspend, Ok(())) => {
                    tracing::info!("power: suspended {}", target.name);
                    let r = record(PowerState::Asleep, None);
                    write_keeping(&mut w, &cluster, r, Some(NodeState::Asleep)).await;
                }
                (Which::Suspend, Err(e)) => {
                    // The node keeps running: it is ready again, with the reason on record,
                    // unless a spot notice leaves its drain to the interruption policy.
                    tracing::warn!("power: {e}; {} stays awake", target.name);
                    let r = record(PowerState::Awake, Some(e.to_string()));
                    let notice = match cluster.store.spot_notices() {
                        Ok(all) => all.contains_key(&node),
                        Err(e) => {
                            tracing::warn!("power: reading the spot notices failed: {e}");
                            true
                        }
                    };
                    let state = (!notice).then_some(NodeState::Ready);
                    write_keeping(&mut w, &cluster, r, state).await;
                }
                (Which::Resume, Ok(())) => {
                    tracing::info!("power: resumed {}; waiting for its metrics", target.name)
                }
                (Which::Resume, Err(e)) => {
                    tracing::warn!("power: {e}; {} is not counted on", target.name);
                    let r = record(PowerState::Down, Some(e.to_string()));
                    write_keeping(&mut w, &cluster, r, None).await;
                }
            }
        });
    }
}

/// The resume command, or Wake-on-LAN without one.
async fn resume(
    cfg: &PowerConfig,
    t: &Target,
    leader: &str,
    timeout: Duration,
) -> Result<(), exec::PowerError> {
    if !cfg.resume_command.is_empty() {
        return exec::run(Which::Resume, &cfg.resume_command, t, leader, timeout).await;
    }
    let mac = t.mac.ok_or_else(|| exec::PowerError::NoMac {
        name: t.name.clone(),
    })?;
    exec::wake_on_lan(mac, &cfg.wol_address).await
}

/// Write `record`, keeping the node's measured wake time.
async fn write_keeping(
    w: &mut Writer,
    cluster: &Arc<Cluster>,
    mut record: PowerRecord,
    state: Option<NodeState>,
) {
    if let Ok(all) = cluster.store.power() {
        record.wake_ms = all.get(&record.node).and_then(|p| p.wake_ms);
    }
    write(w, record, state).await;
}

async fn write(w: &mut Writer, record: PowerRecord, state: Option<NodeState>) {
    let name = record.name.clone();
    match w.call(Command::SetPower { record, state }).await {
        Ok(Response::Refused(m)) => tracing::warn!("power: recording {name} was refused: {m}"),
        Ok(_) => {}
        Err(e) => tracing::warn!("power: recording {name} failed: {e}"),
    }
}

fn power_since(nodes: &[PowerNode], id: NodeId) -> Millis {
    nodes
        .iter()
        .find(|n| n.id == id)
        .and_then(|n| n.power.as_ref())
        .map_or(0, |p| p.since)
}

/// The members as sleep and wake sees them, and their addresses.
fn gather(
    cluster: &Cluster,
    metrics: &Pipeline,
    world: &World,
    decisions: &[Decision],
) -> Result<(Vec<PowerNode>, BTreeMap<NodeId, String>), std::io::Error> {
    let store = &cluster.store;
    let members = store.nodes()?;
    let health = store.health()?;
    let power = store.power()?;
    let mut spot = store.spot_notices()?;
    // The open decision on each node (newest first: the newest wins).
    let mut open: BTreeMap<NodeId, crate::domain::Action> = BTreeMap::new();
    for d in decisions.iter().filter(|d| d.status.is_open()).rev() {
        if let Some(id) = node_of(&d.action) {
            open.insert(id, d.action.clone());
        }
    }
    let voters = cluster.voters();
    let leader = cluster.leader().map(|(id, _)| id);
    // Reserved cores per node, from the assignments and each slice's reservation.
    let per_instance: BTreeMap<String, f64> = world
        .slices
        .iter()
        .map(|s| (s.target(), s.cpu_reserved))
        .collect();
    let mut reserved: BTreeMap<NodeId, (f64, u32)> = BTreeMap::new();
    for (key, a) in store.assignments()? {
        let Some(node) = a.node else { continue };
        let slice = key.rsplit_once('/').map_or(key.as_str(), |(s, _)| s);
        let r = reserved.entry(node).or_default();
        r.0 += per_instance.get(slice).copied().unwrap_or(0.0);
        r.1 += 1;
    }
    let samples: BTreeMap<NodeId, (f64, f64, Millis)> = metrics.with_state(|st| {
        st.view
            .snapshot
            .iter()
            .flat_map(|snap| &snap.nodes)
            .map(|e| {
                let cores = e.m.cores.len() as f64;
                (e.node, (cores, e.m.cpu as f64 * cores, e.m.at))
            })
            .collect()
    });
    let mut addrs = BTreeMap::new();
    let nodes = members
        .into_iter()
        .map(|m| {
            addrs.insert(m.id, m.addr.clone());
            let (cores, used, seen_at) = samples
                .get(&m.id)
                .map_or((0.0, 0.0, None), |(c, u, at)| (*c, *u, Some(*at)));
            let (res, instances) = reserved.get(&m.id).copied().unwrap_or_default();
            PowerNode {
                id: m.id,
                live: health.get(&m.id).copied().unwrap_or_default() == Health::Ready,
                voter: voters.contains(&m.id),
                leader: leader == Some(m.id),
                cores,
                used,
                reserved: res,
                instances,
                seen_at,
                power: power.get(&m.id).cloned(),
                spot: spot.remove(&m.id).map(|n| n.kind),
                open: open.remove(&m.id),
                name: m.name,
                state: m.state,
            }
        })
        .collect();
    Ok((nodes, addrs))
}

/// The node a node action is on.
fn node_of(a: &crate::domain::Action) -> Option<NodeId> {
    use crate::domain::Action;
    match a {
        Action::Drain { node, .. }
        | Action::Undrain { node, .. }
        | Action::Sleep { node, .. }
        | Action::Wake { node, .. } => Some(*node),
        Action::Scale { .. } | Action::Rollback { .. } => None,
    }
}

/// The load in cores: per slice what it uses or reserves now, whichever is more, and each
/// slice's forecast scaled from its load unit to those cores.
fn load(world: &World, brain: &Brain) -> Load {
    let cores_of = |s: &crate::controller::world::SliceView| {
        (s.desired as f64 * s.cpu_reserved).max(s.cpu_used.unwrap_or(0.0))
    };
    // Folded from 0.0: an empty f64 sum is -0.0, which would read "-0.0 cores".
    let measured = world.slices.iter().map(cores_of).fold(0.0, |a, b| a + b);
    let now_s = world.now / 1000;
    let mut parts = Vec::new();
    for s in &world.slices {
        let cores = cores_of(s);
        let Some(f) = brain.forecaster(&s.target()).filter(|f| f.warm()) else {
            continue;
        };
        let Some(level) = f.level().filter(|l| *l > 0.0) else {
            continue;
        };
        let (_, ahead) = brain.load_chart(&s.target(), now_s, FORECAST_STEP_SECS);
        parts.push((
            cores,
            level,
            ahead.into_iter().map(|(t, v)| (t * 1000, v)).collect(),
        ));
    }
    Load {
        measured,
        forecast: super::forecast_cores(measured, &parts),
    }
}
