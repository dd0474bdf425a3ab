//! Elections with a pre-vote, so that a node coming back (resumed, restarted, healed) does not
//! depose a leader that its peers still follow.
//!
//! openraft 0.9 has no pre-vote: a follower that misses heartbeats raises its term and asks
//! for votes, and even when every peer refuses, its higher term reaches the leader in the next
//! append's answer and makes the leader step down. So openraft's own election timer is off
//! (`enable_elect = false`) and [`Cluster::run_elections`] decides when to stand:
//!
//! - a voter that has heard nothing from a leader for the lease (`election_timeout_max`) plus
//!   a random time in [min, max] asks every voter "would you elect me for term T+1?" without
//!   changing its own term (the pre-vote, Raft thesis §9.6);
//! - a voter says yes only when it has not heard from a leader within the lease itself (a
//!   leader, when a quorum has not answered it within the lease), the proposed term is above
//!   its own and the candidate's log is at least as long as its own;
//! - only with a majority of yes does the node start openraft's election (`trigger().elect()`),
//!   whose vote requests are checked by openraft as before.
//!
//! [`answer`], [`quorum_age`] and [`won`] are the pure core; the loop and the handlers do I/O.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use openraft::{LogId, ServerState};
use rand::Rng;
use tokio_util::sync::CancellationToken;

use super::Cluster;
use super::network::{Heard, PeerRequest, PeerResponse, PreVoteRequest, PreVoteResponse, ROUTE};
use crate::domain::NodeId;

/// What a voter knows when it answers a pre-vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterView {
    pub term: u64,
    pub last_log_id: Option<LogId<NodeId>>,
    /// How long since it last heard from a live leader: as a follower, since the last append
    /// it accepted; as the leader, since a quorum last answered it (see [`quorum_age`]).
    /// `None`: never.
    pub leader_heard: Option<Duration>,
    /// Whether it is the leader itself.
    pub leading: bool,
    /// The candidate it backed (vote or pre-vote) when that, not a leader, is what it last
    /// heard: it then refuses others for the lease, so that one candidate at a time stands.
    pub backing: Option<NodeId>,
    /// `election_timeout_max`: a leader heard from within it is alive.
    pub lease: Duration,
}

/// A voter's answer to a pre-vote (pure).
pub fn answer(req: &PreVoteRequest, me: &VoterView) -> PreVoteResponse {
    let no = |why: String| PreVoteResponse {
        granted: false,
        term: me.term,
        why,
    };
    // A candidate whose log goes beyond this voter's own is not held back by the one it backed:
    // that one may hold a shorter log that the majority's longest refuses, and voters that kept
    // backing such candidates would leave no one able to win.
    let held_back = me.leading || me.backing.is_none() || req.last_log_id <= me.last_log_id;
    if let Some(age) = me.leader_heard.filter(|age| *age <= me.lease)
        && held_back
    {
        return no(if me.leading {
            format!(
                "it leads term {} and a quorum answered {} ms ago",
                me.term,
                age.as_millis()
            )
        } else if let Some(c) = me.backing {
            format!("it backed node {c} {} ms ago", age.as_millis())
        } else {
            format!(
                "it heard from the leader of term {} {} ms ago",
                me.term,
                age.as_millis()
            )
        });
    }
    if req.term <= me.term {
        return no(format!(
            "it is at term {}, not below the proposed term {}",
            me.term, req.term
        ));
    }
    if req.last_log_id < me.last_log_id {
        return no(format!(
            "its log ends at {} beyond the candidate's {}",
            show(&me.last_log_id),
            show(&req.last_log_id)
        ));
    }
    PreVoteResponse {
        granted: true,
        term: me.term,
        why: String::new(),
    }
}

fn show(id: &Option<LogId<NodeId>>) -> String {
    match id {
        Some(id) => format!("{}-{}", id.leader_id.term, id.index),
        None => "nothing".into(),
    }
}

/// How long ago a leader last heard from a quorum: its own vote counts, and of its
/// `peer_ages` (the time since each other voter last answered an append, `None` for never)
/// the freshest `voters / 2` must have answered. `None` when they never all did.
pub fn quorum_age(voters: usize, mut peer_ages: Vec<Option<Duration>>) -> Option<Duration> {
    let needed = voters / 2;
    if needed == 0 {
        return Some(Duration::ZERO);
    }
    // `None` (never) sorts before any age: put the answered ones first, freshest first.
    peer_ages.sort_by_key(|a| a.map_or((1, Duration::ZERO), |d| (0, d)));
    peer_ages.get(needed - 1).copied().flatten()
}

/// Whether a node whose pre-vote round won still stands after it backed `backed`'s pre-vote
/// while it asked (pure). Two voters that time out together and back each other would both
/// give way and try again together, round after round, while a slow machine stretches their
/// rounds; the lower id stands and the other gives way. The one it backed passed its log
/// check, so neither log is behind the other's and either may lead.
pub fn stands_after_backing(me: NodeId, backed: NodeId) -> bool {
    me < backed
}

/// Whether the voters in `yes` (the candidate included) are a quorum of `configs`: a majority
/// of the one configuration, or while the membership changes (joint consensus) a majority of
/// each, as openraft's election will require. Counting the union instead would stand, and raise
/// the term, for ever in an election openraft cannot win when the old configuration's majority
/// is gone.
pub fn won(yes: &BTreeSet<NodeId>, configs: &[BTreeSet<NodeId>]) -> bool {
    configs
        .iter()
        .all(|c| c.iter().filter(|v| yes.contains(v)).count() * 2 > c.len())
}

/// Whether no quorum of `configs` can be had once the voters in `no` have refused.
pub fn lost(no: &BTreeSet<NodeId>, configs: &[BTreeSet<NodeId>]) -> bool {
    let could: BTreeSet<NodeId> = configs
        .iter()
        .flatten()
        .filter(|v| !no.contains(v))
        .copied()
        .collect();
    !won(&could, configs)
}

/// The configurations as the log line names them: `{1, 2, 3}`, or `{1} and {1, 2, 3}` while
/// the membership changes.
fn show_configs(configs: &[BTreeSet<NodeId>]) -> String {
    configs
        .iter()
        .map(|c| format!("{c:?}"))
        .collect::<Vec<_>>()
        .join(" and ")
}

/// Election timing, from `[raft]`.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub min: Duration,
    pub max: Duration,
}

impl Timing {
    /// A fresh wait before standing: the lease (`max`) plus a random time in [min, max].
    fn draw(&self) -> Duration {
        let (lo, hi) = (self.min.as_millis() as u64, self.max.as_millis() as u64);
        self.max + Duration::from_millis(rand::rng().random_range(lo..=hi.max(lo)))
    }
}

/// How often the loop looks at the clock.
const TICK: Duration = Duration::from_millis(20);
/// Refused pre-votes are logged at most this often (a node cut off from its peers keeps
/// asking).
const REFUSED_NOTE_GAP: Duration = Duration::from_secs(10);

impl Cluster {
    /// What this node would answer a pre-vote with now.
    fn voter_view(&self) -> Result<VoterView, String> {
        let m = self.raft.metrics().borrow().clone();
        let leading = m.state == ServerState::Leader;
        let (since, heard) = self.contact.last();
        let backing = match heard {
            Heard::Vote(c) | Heard::PreVote(c) if !leading => Some(c),
            _ => None,
        };
        let leader_heard = if leading {
            let membership = m.membership_config.membership();
            let voters: Vec<NodeId> = membership.voter_ids().collect();
            let ages = voters
                .iter()
                .filter(|v| **v != self.id)
                .map(|v| self.contact.ack_age(*v))
                .collect();
            quorum_age(voters.len(), ages)
        } else {
            Some(since)
        };
        Ok(VoterView {
            term: m.current_term,
            last_log_id: self.store.last_log_id().map_err(|e| e.to_string())?,
            leader_heard,
            leading,
            backing,
            lease: self.timing.max,
        })
    }

    /// Answer a peer's pre-vote.
    pub(super) fn pre_vote(&self, req: &PreVoteRequest) -> Result<PreVoteResponse, String> {
        let a = answer(req, &self.voter_view()?);
        if a.granted {
            self.contact.pre_voted(req.candidate);
        }
        tracing::debug!(
            "pre-vote for node {} at term {}: {}",
            req.candidate,
            req.term,
            if a.granted { "yes" } else { &a.why }
        );
        Ok(a)
    }

    /// Stand for election when no leader has been heard for the election timeout and a
    /// majority of voters would elect this node (see the module's doc). Runs until `shutdown`.
    pub async fn run_elections(self: std::sync::Arc<Self>, shutdown: CancellationToken) {
        let mut wait = self.timing.draw();
        let mut last_try: Option<Instant> = None;
        let mut last_note: Option<Instant> = None;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let m = self.raft.metrics().borrow().clone();
            let membership = m.membership_config.membership().clone();
            let configs = membership.get_joint_config().clone();
            let voters: Vec<(NodeId, String)> = membership
                .voter_ids()
                .filter_map(|v| membership.get_node(&v).map(|n| (v, n.addr.clone())))
                .collect();
            if m.state == ServerState::Leader {
                // Its own leadership counts as hearing from a leader: deposed, it lets the
                // candidate that deposed it finish before it stands itself (else it stands at
                // once, a vote it just gave not yet noted, and costs one more term).
                self.contact.heard_leader();
                continue;
            }
            if !voters.iter().any(|(v, _)| *v == self.id) {
                continue;
            }
            let quiet = self.contact.since_leader();
            let since_try = last_try.map(|t| t.elapsed());
            if quiet < wait || since_try.is_some_and(|s| s < wait) {
                continue;
            }
            let req = PreVoteRequest {
                candidate: self.id,
                term: m.current_term + 1,
                last_log_id: match self.store.last_log_id() {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!("pre-vote: reading the last log id failed: {e}");
                        continue;
                    }
                },
            };
            let asks = voters
                .iter()
                .filter(|(v, _)| *v != self.id)
                .map(|(v, addr)| {
                    let (ep, req) = (self.ep.clone(), req.clone());
                    let timeout = self.timing.min;
                    async move {
                        let r = ep
                            .call::<_, PeerResponse>(
                                addr,
                                ROUTE,
                                &PeerRequest::PreVote(req),
                                Some(timeout),
                            )
                            .await;
                        let answer = match r {
                            Ok(PeerResponse::PreVote(Ok(a))) => a,
                            Ok(PeerResponse::PreVote(Err(e))) => refused(format!("it failed: {e}")),
                            Ok(_) => refused("it answered with the wrong message".into()),
                            Err(e) => refused(format!("no answer: {e}")),
                        };
                        (*v, answer)
                    }
                });
            // Stop listening once the outcome is settled: a dead peer would otherwise hold the
            // round for the whole timeout.
            let mut pending: futures::stream::FuturesUnordered<_> = asks.collect();
            let mut answers = Vec::new();
            let (mut granted, mut refused) = (BTreeSet::from([self.id]), BTreeSet::new());
            while let Some((v, a)) = pending.next().await {
                if a.granted {
                    granted.insert(v);
                } else {
                    refused.insert(v);
                }
                answers.push((v, a));
                if won(&granted, &configs) || lost(&refused, &configs) {
                    break;
                }
            }
            drop(pending);
            last_try = Some(Instant::now());
            wait = self.timing.draw();
            let (since, heard) = self.contact.last();
            let gave_way = match heard {
                Heard::PreVote(c) => !stands_after_backing(self.id, c),
                Heard::Leader | Heard::Vote(_) => true,
            };
            if (since < quiet && gave_way) || self.raft.metrics().borrow().vote != m.vote {
                // A leader spoke up, this node voted, or it backed a candidate that goes
                // first, while it asked.
                continue;
            }
            let joint = if configs.len() > 1 {
                format!(
                    " (the membership is changing: a majority of each of {} is needed)",
                    show_configs(&configs)
                )
            } else {
                String::new()
            };
            if won(&granted, &configs) {
                tracing::info!(
                    "no leader heard for {} ms and {} of {} voters would elect this node{joint}: \
                     standing for term {}",
                    quiet.as_millis(),
                    granted.len(),
                    voters.len(),
                    req.term
                );
                if let Err(e) = self.raft.trigger().elect().await {
                    tracing::warn!("starting an election failed: {e}");
                }
            } else if last_note.is_none_or(|t| t.elapsed() >= REFUSED_NOTE_GAP) {
                last_note = Some(Instant::now());
                let why: Vec<String> = answers
                    .iter()
                    .filter(|(_, a)| !a.granted)
                    .map(|(v, a)| format!("node {v}: {}", a.why))
                    .collect();
                tracing::info!(
                    "no leader heard for {} ms, but only {} of {} voters would elect \
                     this node{joint}, so it does not stand ({})",
                    quiet.as_millis(),
                    granted.len(),
                    voters.len(),
                    why.join("; ")
                );
            }
        }
    }
}

fn refused(why: String) -> PreVoteResponse {
    PreVoteResponse {
        granted: false,
        term: 0,
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    fn log(term: u64, index: u64) -> Option<LogId<NodeId>> {
        Some(LogId::new(CommittedLeaderId::new(term, 0), index))
    }

    fn follower(heard_ms: Option<u64>) -> VoterView {
        VoterView {
            term: 2,
            last_log_id: log(2, 10),
            leader_heard: heard_ms.map(Duration::from_millis),
            leading: false,
            backing: None,
            lease: Duration::from_millis(400),
        }
    }

    fn ask(term: u64, last: Option<LogId<NodeId>>) -> PreVoteRequest {
        PreVoteRequest {
            candidate: 3,
            term,
            last_log_id: last,
        }
    }

    #[test]
    fn a_voter_that_hears_its_leader_refuses() {
        let a = answer(&ask(3, log(2, 10)), &follower(Some(50)));
        assert!(!a.granted);
        assert!(
            a.why.contains("heard from the leader of term 2 50 ms ago"),
            "{}",
            a.why
        );
        let a = answer(&ask(3, log(2, 10)), &follower(Some(400)));
        assert!(!a.granted, "the lease's last moment still counts");
    }

    #[test]
    fn a_voter_that_backed_a_candidate_refuses_others_for_the_lease() {
        let mut v = follower(Some(120));
        v.backing = Some(2);
        let a = answer(&ask(3, log(2, 10)), &v);
        assert!(!a.granted);
        assert!(a.why.contains("backed node 2 120 ms ago"), "{}", a.why);
        v.leader_heard = Some(Duration::from_millis(500));
        assert!(answer(&ask(3, log(2, 10)), &v).granted);
    }

    #[test]
    fn a_voter_that_backed_a_candidate_still_grants_a_longer_log() {
        // n3 and n5 back each other while n4, whose log is longer, refuses both: n4 must be
        // able to win their votes, or the majority never elects anyone.
        let mut v = follower(Some(120));
        v.backing = Some(5);
        let a = answer(&ask(3, log(2, 12)), &v);
        assert!(a.granted, "{}", a.why);
        // Not a log only as long as its own, and never past a live leader.
        assert!(!answer(&ask(3, log(2, 10)), &v).granted);
        v.backing = None;
        assert!(!answer(&ask(3, log(2, 12)), &v).granted);
    }

    #[test]
    fn a_voter_whose_leader_went_quiet_grants() {
        let a = answer(&ask(3, log(2, 10)), &follower(Some(401)));
        assert!(a.granted, "{}", a.why);
        assert!(answer(&ask(3, log(2, 11)), &follower(None)).granted);
    }

    #[test]
    fn a_shorter_log_or_a_stale_term_is_refused() {
        let a = answer(&ask(3, log(2, 9)), &follower(None));
        assert!(!a.granted);
        assert!(
            a.why.contains("ends at 2-10 beyond the candidate's 2-9"),
            "{}",
            a.why
        );
        // A later term's entry beats a longer log of an earlier term.
        assert!(!answer(&ask(3, log(1, 50)), &follower(None)).granted);
        let a = answer(&ask(2, log(2, 10)), &follower(None));
        assert!(!a.granted);
        assert!(
            a.why.contains("term 2, not below the proposed term 2"),
            "{}",
            a.why
        );
    }

    #[test]
    fn a_leader_with_a_quorum_refuses_and_one_without_grants() {
        let mut leader = follower(Some(30));
        leader.leading = true;
        let a = answer(&ask(3, log(2, 10)), &leader);
        assert!(!a.granted);
        assert!(a.why.contains("leads term 2"), "{}", a.why);
        leader.leader_heard = None;
        assert!(answer(&ask(3, log(2, 10)), &leader).granted);
    }

    #[test]
    fn quorum_age_takes_the_freshest_majority() {
        let ms = |m| Some(Duration::from_millis(m));
        // 3 voters: the leader and one peer make a quorum: the fresher peer counts.
        assert_eq!(quorum_age(3, vec![ms(900), ms(20)]), ms(20));
        assert_eq!(quorum_age(3, vec![None, ms(20)]), ms(20));
        assert_eq!(quorum_age(3, vec![None, None]), None);
        // 5 voters: two peers needed.
        assert_eq!(quorum_age(5, vec![ms(10), None, ms(700), ms(30)]), ms(30));
        assert_eq!(quorum_age(5, vec![ms(10), None, None, None]), None);
        // Alone: always in touch with itself.
        assert_eq!(quorum_age(1, vec![]), Some(Duration::ZERO));
    }

    #[test]
    fn of_two_voters_that_backed_each_other_exactly_one_stands() {
        assert!(stands_after_backing(2, 3));
        assert!(!stands_after_backing(3, 2));
    }

    fn ids(v: &[NodeId]) -> BTreeSet<NodeId> {
        v.iter().copied().collect()
    }

    #[test]
    fn a_majority_wins() {
        let three = [ids(&[1, 2, 3])];
        assert!(won(&ids(&[2, 3]), &three));
        assert!(!won(&ids(&[3]), &three));
        let four = [ids(&[1, 2, 3, 4])];
        assert!(!won(&ids(&[1, 2]), &four));
        assert!(won(&ids(&[1, 2, 3]), &four));
        assert!(won(&ids(&[1]), &[ids(&[1])]));
        assert!(lost(&ids(&[1, 2]), &three));
        assert!(!lost(&ids(&[1]), &three));
    }

    #[test]
    fn while_the_membership_changes_each_configuration_needs_its_majority() {
        // The leader of {1} promoted 2 and 3 and died before the new configuration reached
        // them: 2 and 3 are two of the three voters, but openraft also needs a majority of
        // {1}, so they must not stand (each try would only raise the term).
        let joint = [ids(&[1]), ids(&[1, 2, 3])];
        assert!(!won(&ids(&[2, 3]), &joint));
        assert!(lost(&ids(&[1]), &joint), "without 1 no quorum is possible");
        assert!(won(&ids(&[1, 3]), &joint));
        assert_eq!(show_configs(&joint), "{1} and {1, 2, 3}");
    }
}
