//! Membership: joining nodes (a token consumed through Raft, a signed certificate) and the loop
//! that promotes learners to voters and keeps the voter count at `raft.voters`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::{BasicNode, ChangeMembers};
use tokio_util::sync::CancellationToken;

use super::Cluster;
use super::api::ErrorKind;
use super::network::{JOIN_ROUTE, JoinAccepted, JoinRefused, JoinRequest};
use super::types::{ClusterInit, Command, Request, RequestId, Response};
use crate::domain::{NodeId, now_millis, validate_name};
use crate::net::tls::{self, CaPem, TlsError};
use crate::net::{BoxFut, PeerCtx, Service};

impl Cluster {
    /// Handle a join request: on the leader, consume the token through Raft and sign the CSR;
    /// elsewhere, forward to the leader.
    pub async fn join(&self, j: JoinRequest, forward: bool) -> Result<JoinAccepted, JoinRefused> {
        validate_name("node name", &j.name)?;
        crate::config::parse_host_port(&j.addr)
            .map_err(|m| JoinRefused::fatal(format!("bad advertise address: {m}")))?;
        let deadline = Instant::now() + self.write_timeout;
        loop {
            match self.leader() {
                Some((id, _)) if id == self.id => break,
                Some((_, addr)) if forward => {
                    return match self
                        .ep
                        .call::<_, Result<JoinAccepted, JoinRefused>>(
                            &addr,
                            JOIN_ROUTE,
                            &j,
                            Some(self.write_timeout),
                        )
                        .await
                    {
                        Ok(r) => r,
                        Err(e) => Err(JoinRefused::transient(format!(
                            "the member could not reach its leader: {e}"
                        ))),
                    };
                }
                Some(_) => return Err(JoinRefused::transient("this node is no longer the leader")),
                None if Instant::now() > deadline => {
                    return Err(JoinRefused::transient(
                        "the cluster has no leader: retry when 'aether status' shows one",
                    ));
                }
                None => {
                    let _ = tokio::time::timeout(
                        Duration::from_millis(200),
                        self.raft.metrics().changed(),
                    )
                    .await;
                }
            }
        }
        // Refuse bad tokens before they cost a log entry; the state machine checks again, with
        // the same rules, when the join is applied.
        let secret_sha256 = tls::hash_secret(&j.secret);
        let at = now_millis();
        let known = self.store.token(&j.token_id).map_err(|e| e.to_string())?;
        let taken = self
            .store
            .nodes()
            .map_err(|e| e.to_string())?
            .iter()
            .any(|n| n.name == j.name);
        let pre = match &known {
            None => Err(crate::domain::TokenRefusal::Unknown(j.token_id.clone())),
            Some(t) => t.check(&secret_sha256, at).and_then(|()| match taken {
                true => Err(crate::domain::TokenRefusal::NameTaken(j.name.clone())),
                false => Ok(()),
            }),
        };
        if let Err(r) = pre {
            tracing::warn!("refused a join of '{}' from {}: {r}", j.name, j.addr);
            return Err(JoinRefused::fatal(r.to_string()));
        }
        if self.store.cluster().map_err(|e| e.to_string())?.is_none() {
            return Err(JoinRefused::transient(
                "the new cluster has not written its record yet",
            ));
        }
        let req = Request {
            id: j.request,
            actor: format!("join:{}", j.name),
            at,
            cmd: Command::Join {
                token_id: j.token_id.clone(),
                secret_sha256,
                name: j.name.clone(),
                addr: j.addr.clone(),
            },
        };
        let node_id = match self.write(req, false).await {
            Ok(Response::Joined { id }) => id,
            Ok(Response::TokenRefused(r)) => return Err(JoinRefused::fatal(r.to_string())),
            Ok(Response::Refused(m)) => return Err(JoinRefused::fatal(m)),
            Ok(other) => return Err(JoinRefused::fatal(format!("unexpected answer {other:?}"))),
            Err(e) if e.kind == ErrorKind::Failed || e.kind == ErrorKind::Invalid => {
                return Err(JoinRefused::fatal(e.message));
            }
            Err(e) => return Err(JoinRefused::transient(e.message)),
        };
        let meta = self
            .store
            .cluster()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| JoinRefused::fatal("the cluster record is missing"))?;
        let ca = CaPem {
            cert_pem: meta.init.ca_cert_pem.clone(),
            key_pem: meta.init.ca_key_pem.clone(),
        };
        let cert_pem =
            tls::sign_csr(&ca, &j.csr_pem, &j.name).map_err(|e: TlsError| e.to_string())?;
        if let Err(e) = self
            .raft
            .add_learner(node_id, BasicNode::new(&j.addr), false)
            .await
        {
            // The membership loop adds registered nodes it finds missing; not fatal here.
            tracing::warn!("adding {} as a learner failed for now: {e}", j.name);
        }
        tracing::info!("{} joined as node {node_id} from {}", j.name, j.addr);
        Ok(JoinAccepted {
            node_id,
            cluster_id: meta.init.cluster_id,
            ca_pem: meta.init.ca_cert_pem,
            cert_pem,
        })
    }

    /// Leader-only upkeep, every `period` until `shutdown`: write the cluster record (founder),
    /// add registered nodes as learners, promote caught-up learners while voters are wanted.
    pub async fn run_membership(self: Arc<Self>, period: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if self.raft.metrics().borrow().current_leader != Some(self.id) {
                continue;
            }
            if let Err(e) = self.membership_step().await {
                tracing::warn!("membership upkeep: {e}");
            }
        }
    }

    async fn membership_step(&self) -> Result<(), String> {
        if let Some((cluster_id, ca)) = &self.founder_ca {
            if self.store.cluster().map_err(|e| e.to_string())?.is_none() {
                let init = ClusterInit {
                    cluster_id: cluster_id.clone(),
                    ca_cert_pem: ca.cert_pem.clone(),
                    ca_key_pem: ca.key_pem.clone(),
                    founder_id: self.id,
                    founder_name: self.name.clone(),
                    founder_addr: self
                        .raft
                        .metrics()
                        .borrow()
                        .membership_config
                        .membership()
                        .get_node(&self.id)
                        .map(|n| n.addr.clone())
                        .unwrap_or_default(),
                };
                let req = Request {
                    id: RequestId {
                        client: self.id as u128,
                        serial: 1,
                    },
                    actor: format!("node:{}", self.name),
                    at: now_millis(),
                    cmd: Command::InitCluster(init),
                };
                self.write(req, false).await.map_err(|e| e.message)?;
            }
        }
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        for rec in self.store.nodes().map_err(|e| e.to_string())? {
            if membership.get_node(&rec.id).is_none() {
                tracing::info!("adding {} (id {}) as a learner", rec.name, rec.id);
                self.raft
                    .add_learner(rec.id, BasicNode::new(&rec.addr), false)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        if voters.len() >= self.voters_wanted {
            return Ok(());
        }
        // Promote caught-up learners, two at a time past the first voter, so the number of
        // voters stays odd (a 2-voter cluster would stop on either failure).
        let last = m.last_log_index.unwrap_or(0);
        let replication = m.replication.unwrap_or_default();
        let ready: Vec<NodeId> = membership
            .learner_ids()
            .filter(|id| {
                replication
                    .get(id)
                    .cloned()
                    .flatten()
                    .is_some_and(|l| l.index + 50 >= last)
            })
            .collect();
        let step = if voters.len() % 2 == 1 { 2 } else { 1 };
        if ready.len() >= step && voters.len() + step <= self.voters_wanted {
            let add: BTreeSet<NodeId> = ready.into_iter().take(step).collect();
            tracing::info!("promoting {add:?} to voters");
            self.raft
                .change_membership(ChangeMembers::AddVoterIds(add), true)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// Joins on the peer endpoint ([`JOIN_ROUTE`]): a joining node may ask any member, which
/// forwards to the leader; a member forwarding to us expects us to be the leader.
pub struct Joins(pub Arc<Cluster>);

impl Service for Joins {
    type Req = JoinRequest;
    type Resp = Result<JoinAccepted, JoinRefused>;

    fn handle(self: Arc<Self>, ctx: PeerCtx, j: JoinRequest) -> BoxFut<Result<Self::Resp, String>> {
        Box::pin(async move { Ok(self.0.join(j, !ctx.authenticated).await) })
    }
}
