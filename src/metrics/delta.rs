//! The cluster view as it travels from the leader to the other nodes (DESIGN §7, "1,000
//! nodes"): a full [`ClusterMetricsSnapshot`] when a node starts (a new term, or a node that
//! asked for one), and otherwise a [`ViewDelta`]: per node, only the fields that changed since
//! the previous snapshot of the same term, and the nodes that left. A node applies a delta
//! only onto exactly the snapshot it was computed against (same term, `base` = the held
//! `seq`); anything else is a [`Gap`], and the node asks the leader for a full view.
//!
//! Also [`RelayPlan`]: how the leader spreads one view over many nodes through relays
//! (a two-level tree), so that it sends about √N copies rather than N.
//!
//! Pure: data in, data out, no I/O, no clock.

use super::update::{ClusterMetricsSnapshot, NodeEntry, NodeInfo, NodeMetrics};
pub use super::update::{Field, NodePatch, ViewDelta, ViewUpdate};
use crate::domain::Health;

/// A delta that does not apply to the view held: the node needs a full view.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "metrics view delta {term}/{base}→{seq} does not apply to the view held ({held}): a full view is needed"
)]
pub struct Gap {
    pub term: u64,
    pub base: u64,
    pub seq: u64,
    /// `term/seq` of the view held, or `none`.
    pub held: String,
}

/// f32s compared by bits: a NaN that stays NaN is not a change.
fn same_f32(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits()
}

/// The fields of `new` that differ from `old` (every field when `old` is `None`).
pub fn diff_entry(old: Option<&NodeEntry>, new: &NodeEntry) -> Vec<Field> {
    let mut f = Vec::new();
    if old.is_none_or(|o| o.info != new.info) {
        f.push(Field::Info(new.info.clone()));
    }
    if old.is_none_or(|o| o.age_ms != new.age_ms) {
        f.push(Field::AgeMs(new.age_ms));
    }
    if old.is_none_or(|o| o.health != new.health) {
        f.push(Field::Health(new.health));
    }
    if old.is_none_or(|o| o.member != new.member) {
        f.push(Field::Member(new.member));
    }
    let (m, o) = (&new.m, old.map(|o| &o.m));
    if old.is_none_or(|o| o.anomalies != new.anomalies) {
        f.push(Field::Anomalies(new.anomalies.clone()));
    }
    if o.is_none_or(|o| o.at != m.at) {
        f.push(Field::At(m.at));
    }
    if o.is_none_or(|o| !same_f32(o.cpu, m.cpu)) {
        f.push(Field::Cpu(m.cpu));
    }
    if o.is_none_or(|o| o.cores != m.cores) {
        f.push(Field::Cores(m.cores.clone()));
    }
    if o.is_none_or(|o| o.mem_used != m.mem_used) {
        f.push(Field::MemUsed(m.mem_used));
    }
    if o.is_none_or(|o| o.mem_total != m.mem_total) {
        f.push(Field::MemTotal(m.mem_total));
    }
    if o.is_none_or(|o| o.swap_used != m.swap_used) {
        f.push(Field::SwapUsed(m.swap_used));
    }
    if o.is_none_or(|o| o.swap_total != m.swap_total) {
        f.push(Field::SwapTotal(m.swap_total));
    }
    if o.is_none_or(|o| (0..3).any(|i| !same_f32(o.load[i], m.load[i]))) {
        f.push(Field::Load(m.load));
    }
    if o.is_none_or(|o| o.disks != m.disks) {
        f.push(Field::Disks(m.disks.clone()));
    }
    if o.is_none_or(|o| o.nets != m.nets) {
        f.push(Field::Nets(m.nets.clone()));
    }
    if o.is_none_or(|o| o.gpus != m.gpus) {
        f.push(Field::Gpus(m.gpus.clone()));
    }
    if o.is_none_or(|o| o.procs != m.procs) {
        f.push(Field::Procs(m.procs.clone()));
    }
    if o.is_none_or(|o| o.traffic != m.traffic) {
        f.push(Field::Traffic(m.traffic.clone()));
    }
    if o.is_none_or(|o| o.waiting != m.waiting) {
        f.push(Field::Waiting(m.waiting.clone()));
    }
    if o.is_none_or(|o| o.listen_errors != m.listen_errors) {
        f.push(Field::ListenErrors(m.listen_errors.clone()));
    }
    f
}

/// Set `fields` on `e`.
pub fn patch_entry(e: &mut NodeEntry, fields: Vec<Field>) {
    let m = &mut e.m;
    for f in fields {
        match f {
            Field::Info(v) => e.info = v,
            Field::AgeMs(v) => e.age_ms = v,
            Field::Health(v) => e.health = v,
            Field::Member(v) => e.member = v,
            Field::Anomalies(v) => e.anomalies = v,
            Field::At(v) => m.at = v,
            Field::Cpu(v) => m.cpu = v,
            Field::Cores(v) => m.cores = v,
            Field::MemUsed(v) => m.mem_used = v,
            Field::MemTotal(v) => m.mem_total = v,
            Field::SwapUsed(v) => m.swap_used = v,
            Field::SwapTotal(v) => m.swap_total = v,
            Field::Load(v) => m.load = v,
            Field::Disks(v) => m.disks = v,
            Field::Nets(v) => m.nets = v,
            Field::Gpus(v) => m.gpus = v,
            Field::Procs(v) => m.procs = v,
            Field::Traffic(v) => m.traffic = v,
            Field::Waiting(v) => m.waiting = v,
            Field::ListenErrors(v) => m.listen_errors = v,
        }
    }
}

/// The delta from `prev` to `next`, or `None` when `next` does not follow `prev` directly
/// within one term of one leader (then only a full view will do).
pub fn diff(prev: &ClusterMetricsSnapshot, next: &ClusterMetricsSnapshot) -> Option<ViewDelta> {
    if prev.leader != next.leader || prev.term != next.term || prev.seq >= next.seq {
        return None;
    }
    // Both are in node order (the aggregator sorts them); merge-walk them.
    let (mut i, mut j) = (0, 0);
    let (mut changed, mut removed) = (Vec::new(), Vec::new());
    while i < prev.nodes.len() || j < next.nodes.len() {
        let (p, n) = (prev.nodes.get(i), next.nodes.get(j));
        match (p, n) {
            (Some(p), Some(n)) if p.node == n.node => {
                let fields = diff_entry(Some(p), n);
                if !fields.is_empty() {
                    changed.push(NodePatch {
                        node: n.node,
                        fields,
                    });
                }
                i += 1;
                j += 1;
            }
            (Some(p), Some(n)) if p.node < n.node => {
                removed.push(p.node);
                i += 1;
            }
            (Some(p), None) => {
                removed.push(p.node);
                i += 1;
            }
            (_, Some(n)) => {
                changed.push(NodePatch {
                    node: n.node,
                    fields: diff_entry(None, n),
                });
                j += 1;
            }
            (None, None) => unreachable!("loop condition"),
        }
    }
    Some(ViewDelta {
        leader: next.leader,
        term: next.term,
        base: prev.seq,
        seq: next.seq,
        built_at: next.built_at,
        changed,
        removed,
    })
}

/// What applying an update to a held view did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The view moved to the update's snapshot.
    Taken,
    /// The update is not newer than the view held (a late duplicate, or an older term's):
    /// nothing changed, and nothing is missing.
    Stale,
    /// A delta that came ahead of the view held: kept until the ones before it come (see
    /// [`apply_in_order`]).
    Early,
}

/// Apply `u` to the view `held` (in place). A full view replaces any older one; a delta
/// applies only to the exact snapshot it was computed against, else it is a [`Gap`] and
/// `held` is left as it was.
pub fn apply(held: &mut Option<ClusterMetricsSnapshot>, u: ViewUpdate) -> Result<Applied, Gap> {
    let cur = held.as_ref().map(|s| (s.term, s.seq));
    if cur.is_some_and(|c| u.position() <= c) {
        return Ok(Applied::Stale);
    }
    let d = match u {
        ViewUpdate::Full(s) => {
            *held = Some(s);
            return Ok(Applied::Taken);
        }
        ViewUpdate::Delta(d) => d,
    };
    let snap = match held.as_mut() {
        Some(s) if s.leader == d.leader && s.term == d.term && s.seq == d.base => s,
        other => {
            return Err(Gap {
                term: d.term,
                base: d.base,
                seq: d.seq,
                held: other
                    .map(|s| format!("{}/{}", s.term, s.seq))
                    .unwrap_or_else(|| "none".into()),
            });
        }
    };
    if !d.removed.is_empty() {
        snap.nodes
            .retain(|e| d.removed.binary_search(&e.node).is_err());
    }
    for p in d.changed {
        match snap.nodes.binary_search_by_key(&p.node, |e| e.node) {
            Ok(i) => patch_entry(&mut snap.nodes[i], p.fields),
            Err(i) => {
                let mut e = NodeEntry {
                    node: p.node,
                    info: NodeInfo::default(),
                    m: NodeMetrics::default(),
                    age_ms: 0,
                    health: Health::default(),
                    member: false,
                    anomalies: Vec::new(),
                };
                patch_entry(&mut e, p.fields);
                snap.nodes.insert(i, e);
            }
        }
    }
    snap.seq = d.seq;
    snap.built_at = d.built_at;
    Ok(Applied::Taken)
}

/// Deltas that came ahead of the view held: views travel on separate QUIC streams (and through
/// different relays), so a delta may overtake the one before it, or the full view it follows.
/// At most [`EARLY_MAX`] wait; one more is a [`Gap`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Early(Vec<ViewDelta>);

/// Deltas kept while waiting for the one before (about this many seconds).
pub const EARLY_MAX: usize = 2;

/// [`apply`], tolerant of reordering: a delta of the held term that comes ahead of the view
/// held waits in `early` (answered [`Applied::Early`]) until the views before it came, and the
/// deltas waiting are applied as soon as they follow on. Without a view held, or with more
/// than [`EARLY_MAX`] waiting, a delta is a [`Gap`] (and the waiting ones are dropped).
pub fn apply_in_order(
    held: &mut Option<ClusterMetricsSnapshot>,
    early: &mut Early,
    u: ViewUpdate,
) -> Result<Applied, Gap> {
    if let (ViewUpdate::Delta(d), Some(h)) = (&u, held.as_ref())
        && (d.leader, d.term) == (h.leader, h.term)
        && d.base > h.seq
    {
        if early.0.len() >= EARLY_MAX {
            early.0.clear();
            return Err(Gap {
                term: d.term,
                base: d.base,
                seq: d.seq,
                held: format!("{}/{}", h.term, h.seq),
            });
        }
        if !early.0.iter().any(|e| e.seq == d.seq) {
            let ViewUpdate::Delta(d) = u else {
                unreachable!("matched above")
            };
            early.0.push(d);
        }
        return Ok(Applied::Early);
    }
    let r = apply(held, u)?;
    if r == Applied::Taken {
        // The ones waiting for this view, in turn; drop what no longer can apply.
        while let Some(h) = held.as_ref() {
            let (term, seq) = (h.term, h.seq);
            early.0.retain(|e| e.term == term && e.seq > seq);
            let Some(i) = early.0.iter().position(|e| e.base == seq) else {
                break;
            };
            let next = early.0.swap_remove(i);
            apply(held, ViewUpdate::Delta(next))?;
        }
    }
    Ok(r)
}

/// Nodes a view goes to directly from the leader while there are at most this many; beyond,
/// it goes through relays.
pub const DIRECT_MAX: usize = 16;

/// How one view reaches every recipient: the leader sends it to each relay with that relay's
/// targets, and each relay forwards it to them (DESIGN §7).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RelayPlan {
    /// (relay, the recipients it forwards to); a relay with no targets is a direct send.
    pub sends: Vec<(usize, Vec<usize>)>,
}

/// Plan the fan-out of one view to recipients `0..n`. `can_relay[i]` says whether recipient
/// `i` is fit to relay (heard from recently). Up to [`DIRECT_MAX`] recipients get it directly;
/// beyond, the recipients are cut into about √n groups of neighbours (in the order given, so
/// groups stay put from tick to tick while membership does) and the first fit node of each
/// group relays to the rest. A group without a fit node gets it directly.
pub fn plan_relays(can_relay: &[bool]) -> RelayPlan {
    let n = can_relay.len();
    if n <= DIRECT_MAX {
        return RelayPlan {
            sends: (0..n).map(|i| (i, Vec::new())).collect(),
        };
    }
    let groups = (n as f64).sqrt().ceil() as usize;
    let size = n.div_ceil(groups);
    let mut sends = Vec::with_capacity(groups);
    for start in (0..n).step_by(size) {
        let group: Vec<usize> = (start..(start + size).min(n)).collect();
        match group.iter().position(|&i| can_relay[i]) {
            Some(k) => {
                let relay = group[k];
                let rest = group.into_iter().filter(|&i| i != relay).collect();
                sends.push((relay, rest));
            }
            None => sends.extend(group.into_iter().map(|i| (i, Vec::new()))),
        }
    }
    RelayPlan { sends }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Millis, NodeId};
    use crate::metrics::requests::TrafficSample;
    use crate::metrics::update::{DiskSample, NetSample};

    fn entry(node: NodeId, cpu: f32, at: Millis) -> NodeEntry {
        NodeEntry {
            node,
            info: NodeInfo {
                name: format!("n{node}"),
                gpu_unavailable: Some("no driver".into()),
                version: "test".into(),
                gpu_offer: None,
                ..Default::default()
            },
            m: NodeMetrics {
                at,
                cpu,
                cores: vec![10, 20],
                mem_used: 1 << 30,
                mem_total: 4 << 30,
                load: [0.1, 0.2, 0.3],
                disks: vec![DiskSample {
                    mount: "/".into(),
                    read_bps: 1.0,
                    write_bps: 2.0,
                    free_bytes: 10,
                    total_bytes: 20,
                }],
                ..Default::default()
            },
            age_ms: 100,
            health: Health::Ready,
            member: true,
            anomalies: Vec::new(),
        }
    }

    fn snap(term: u64, seq: u64, nodes: Vec<NodeEntry>) -> ClusterMetricsSnapshot {
        ClusterMetricsSnapshot {
            leader: 1,
            term,
            seq,
            built_at: 1_000 * seq,
            nodes,
        }
    }

    /// A follower that got the full view and then every delta holds exactly the leader's
    /// snapshots, through changes, additions and removals.
    #[test]
    fn a_follower_reconstructs_the_leaders_view_from_deltas() {
        let s1 = snap(3, 1, vec![entry(1, 0.1, 1_000), entry(2, 0.2, 1_000)]);
        let mut s2 = snap(3, 2, vec![entry(1, 0.1, 1_000), entry(2, 0.5, 2_000)]);
        s2.nodes[1].m.traffic = vec![TrafficSample {
            slice: "shop/web".into(),
            entry: "home".into(),
            calls: 3,
            ..Default::default()
        }];
        s2.nodes[1].health = Health::Suspect;
        s2.nodes.push(entry(5, 0.9, 2_000));
        // Node 1 removed, node 3 added in between, node 5 changes its info.
        let mut s3 = snap(3, 3, vec![entry(2, 0.5, 2_000), entry(3, 0.3, 3_000)]);
        s3.nodes[0].m.traffic = s2.nodes[1].m.traffic.clone();
        s3.nodes[0].health = Health::Suspect;
        let mut e5 = entry(5, 0.9, 2_000);
        e5.info.version = "newer".into();
        e5.m.nets = vec![NetSample {
            iface: "eth0".into(),
            rx_bps: 1.0,
            tx_bps: 2.0,
        }];
        s3.nodes.push(e5);

        let mut held = None;
        assert_eq!(
            apply(&mut held, ViewUpdate::Full(s1.clone())),
            Ok(Applied::Taken)
        );
        let mut prev = s1;
        for next in [s2, s3] {
            let d = diff(&prev, &next).expect("same term");
            assert!(d.changed.len() < next.nodes.len() + 1);
            assert_eq!(apply(&mut held, ViewUpdate::Delta(d)), Ok(Applied::Taken));
            assert_eq!(held.as_ref(), Some(&next));
            prev = next;
        }
        // Node 1's removal travelled as such.
        let d = diff(
            &snap(3, 3, vec![entry(1, 0.1, 1), entry(2, 0.1, 1)]),
            &snap(3, 4, vec![entry(2, 0.1, 1)]),
        )
        .unwrap();
        assert_eq!(d.removed, vec![1]);
        assert!(d.changed.is_empty(), "nothing else changed: {d:?}");
    }

    /// Only the changed fields travel: an unchanged node is left out, a node whose CPU and
    /// sample time moved carries those two.
    #[test]
    fn a_delta_carries_only_what_changed() {
        let a = snap(1, 1, vec![entry(1, 0.1, 1_000), entry(2, 0.2, 1_000)]);
        let b = snap(1, 2, vec![entry(1, 0.1, 1_000), entry(2, 0.3, 2_000)]);
        let d = diff(&a, &b).unwrap();
        assert_eq!(
            d.changed,
            vec![NodePatch {
                node: 2,
                fields: vec![Field::At(2_000), Field::Cpu(0.3)],
            }]
        );
        let full = crate::net::frame::encode_body(&ViewUpdate::Full(b))
            .unwrap()
            .len();
        let delta = crate::net::frame::encode_body(&ViewUpdate::Delta(d))
            .unwrap()
            .len();
        assert!(delta * 5 < full, "delta {delta} B vs full {full} B");
    }

    /// A missed delta (or none held) is a gap: the view is left as it was, and the node asks
    /// for a full view; a late duplicate is stale, not a gap.
    #[test]
    fn a_missed_delta_is_a_gap_and_a_full_view_resyncs() {
        let s1 = snap(2, 1, vec![entry(1, 0.1, 1_000)]);
        let s2 = snap(2, 2, vec![entry(1, 0.2, 2_000)]);
        let s3 = snap(2, 3, vec![entry(1, 0.3, 3_000)]);
        let d12 = diff(&s1, &s2).unwrap();
        let d23 = diff(&s2, &s3).unwrap();

        let mut none = None;
        let gap = apply(&mut none, ViewUpdate::Delta(d12.clone())).unwrap_err();
        assert_eq!(gap.held, "none");
        assert!(none.is_none());

        let mut held = Some(s1.clone());
        let gap = apply(&mut held, ViewUpdate::Delta(d23.clone())).unwrap_err();
        assert_eq!((gap.base, gap.seq, gap.held.as_str()), (2, 3, "2/1"));
        assert_eq!(held.as_ref(), Some(&s1), "left as it was");
        // The full view the node then asks for puts it back in step; deltas follow on.
        assert_eq!(
            apply(&mut held, ViewUpdate::Full(s2.clone())),
            Ok(Applied::Taken)
        );
        assert_eq!(
            apply(&mut held, ViewUpdate::Delta(d12)),
            Ok(Applied::Stale),
            "late duplicate"
        );
        assert_eq!(apply(&mut held, ViewUpdate::Delta(d23)), Ok(Applied::Taken));
        assert_eq!(held, Some(s3));
    }

    /// A new leader (a new term) never sends a delta against the old leader's view: its first
    /// view is full, everyone starts from it, and an old term's update is stale.
    #[test]
    fn a_new_leader_starts_everyone_from_full() {
        let old = snap(2, 40, vec![entry(1, 0.1, 1_000), entry(2, 0.1, 1_000)]);
        let mut new = snap(3, 1, vec![entry(1, 0.1, 1_000), entry(2, 0.1, 2_000)]);
        new.leader = 2;
        assert_eq!(diff(&old, &new), None, "no delta across terms");
        let mut held = Some(old.clone());
        // A delta of the new term against anything but its own view is a gap.
        let mut next = new.clone();
        next.seq = 2;
        let d = diff(&new, &next).unwrap();
        assert!(apply(&mut held, ViewUpdate::Delta(d.clone())).is_err());
        assert_eq!(
            apply(&mut held, ViewUpdate::Full(new.clone())),
            Ok(Applied::Taken)
        );
        assert_eq!(apply(&mut held, ViewUpdate::Delta(d)), Ok(Applied::Taken));
        assert_eq!(held.as_ref(), Some(&next));
        assert_eq!(
            apply(&mut held, ViewUpdate::Full(old)),
            Ok(Applied::Stale),
            "the deposed leader's view"
        );
    }

    /// A small cluster's delta of an ordinary second (CPU, 16 cores, memory, load and network
    /// moved on every node) fits one QUIC datagram (about 1,200 bytes); a full view, and a
    /// large cluster's delta, go on a stream (`net::Endpoint::send_oneway` picks).
    #[test]
    fn a_small_clusters_delta_fits_a_datagram() {
        let busy = |node, k: u64| {
            let mut e = entry(node, 0.1 * k as f32, 1_000 * k);
            e.m.cores = (0..16).map(|c| ((c * 7 + k) % 100) as u8).collect();
            e.m.mem_used += k << 20;
            e.m.load = [k as f32 * 0.1, 0.2, 0.3];
            e.m.nets = vec![NetSample {
                iface: "eth0".into(),
                rx_bps: 1_000.0 * k as f32,
                tx_bps: 500.0 * k as f32,
            }];
            e.age_ms = 100 + k;
            e
        };
        let a = snap(1, 1, (1..=3).map(|n| busy(n, 1)).collect());
        let b = snap(1, 2, (1..=3).map(|n| busy(n, 2)).collect());
        let msg = |u| crate::metrics::update::MetricsMsg::View(u);
        let d = crate::net::frame::encode_body(&msg(ViewUpdate::Delta(diff(&a, &b).unwrap())))
            .unwrap()
            .len();
        assert!(d < 1_200, "a 3-node delta is {d} bytes");
    }

    /// A delta that overtakes the one before it (another stream, another relay) waits and
    /// applies once that one came; the full view a node waits for may come after the deltas
    /// that follow it; too many waiting is a gap.
    #[test]
    fn a_delta_that_overtakes_the_one_before_waits_for_it() {
        let s: Vec<ClusterMetricsSnapshot> = (1..=6)
            .map(|k| snap(4, k, vec![entry(1, 0.1 * k as f32, 1_000 * k)]))
            .collect();
        let d = |k: usize| ViewUpdate::Delta(diff(&s[k - 1], &s[k]).unwrap());
        let (mut held, mut early) = (Some(s[0].clone()), Early::default());
        assert_eq!(
            apply_in_order(&mut held, &mut early, d(2)),
            Ok(Applied::Early)
        );
        assert_eq!(held.as_ref().unwrap().seq, 1, "not yet");
        assert_eq!(
            apply_in_order(&mut held, &mut early, d(1)),
            Ok(Applied::Taken)
        );
        assert_eq!(held.as_ref(), Some(&s[2]), "both applied, in order");
        // A full view overtaken by the next delta.
        let (mut held, mut early) = (Some(s[0].clone()), Early::default());
        assert_eq!(
            apply_in_order(&mut held, &mut early, d(4)),
            Ok(Applied::Early)
        );
        let full = ViewUpdate::Full(s[3].clone());
        assert_eq!(
            apply_in_order(&mut held, &mut early, full),
            Ok(Applied::Taken)
        );
        assert_eq!(held.as_ref(), Some(&s[4]));
        // Three ahead: a gap, and nothing kept.
        let (mut held, mut early) = (Some(s[0].clone()), Early::default());
        assert_eq!(
            apply_in_order(&mut held, &mut early, d(3)),
            Ok(Applied::Early)
        );
        assert_eq!(
            apply_in_order(&mut held, &mut early, d(4)),
            Ok(Applied::Early)
        );
        assert!(apply_in_order(&mut held, &mut early, d(5)).is_err());
        assert_eq!(early, Early::default());
        assert_eq!(held.as_ref(), Some(&s[0]));
        // Nothing held: a delta is a gap at once.
        let mut none = None;
        assert!(apply_in_order(&mut none, &mut Early::default(), d(1)).is_err());
    }

    #[test]
    fn relays_cover_every_recipient_once() {
        assert_eq!(plan_relays(&[true; 3]).sends.len(), 3, "small: direct");
        for n in [17, 100, 1000, 1001] {
            let mut fit = vec![true; n];
            // Every third node unfit, and one whole group unfit.
            for (i, f) in fit.iter_mut().enumerate() {
                *f = i % 3 != 0 && !(40..80).contains(&i);
            }
            let plan = plan_relays(&fit);
            let mut seen = vec![0; n];
            for (relay, targets) in &plan.sends {
                seen[*relay] += 1;
                if !targets.is_empty() {
                    assert!(fit[*relay], "relay {relay} is fit");
                }
                for t in targets {
                    seen[*t] += 1;
                }
            }
            assert!(seen.iter().all(|&s| s == 1), "n={n}: every recipient once");
            let relays = plan.sends.iter().filter(|(_, t)| !t.is_empty()).count();
            let direct = plan.sends.len();
            assert!(
                direct <= 2 * (n as f64).sqrt().ceil() as usize + 40,
                "n={n}: the leader sends {direct} copies ({relays} relays)"
            );
        }
    }
}
