//! The spot signal loop (every node with `signals.spot` set): every `signals.spot_poll` it asks
//! the cloud's metadata service whether this node's machine is about to be interrupted or is
//! advised to rebalance, and keeps the answer in the replicated store (`SetSpotNotice`,
//! forwarded to the leader), where the leader's controller acts on it.
//!
//! AWS, IMDSv2: `PUT /latest/api/token` (with `X-aws-ec2-metadata-token-ttl-seconds`) gives a
//! session token; `GET /latest/meta-data/spot/instance-action` and `GET
//! /latest/meta-data/events/recommendations/rebalance` (with `X-aws-ec2-metadata-token`)
//! answer JSON, or 404 when there is nothing: a 404 is the quiet normal. A service that cannot
//! be reached or answers nonsense is logged once while it lasts (and once when it answers
//! again), never every poll; the loop keeps asking.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{observed, parse_instance_action, parse_rebalance, to_write};
use crate::config::{SignalsConfig, SpotProvider};
use crate::domain::SpotNotice;
use crate::ingress::client::{PostError, request};
use crate::raft::types::{Command, Response};
use crate::raft::{Cluster, Writer};

/// The session token's lifetime asked for (6 h, the most IMDSv2 grants); it is renewed at
/// half of it, or at once when the service refuses it.
const TOKEN_TTL_SECS: u64 = 21_600;
const TOKEN_PATH: &str = "/latest/api/token";
const ACTION_PATH: &str = "/latest/meta-data/spot/instance-action";
const REBALANCE_PATH: &str = "/latest/meta-data/events/recommendations/rebalance";
/// The longest one request to the service may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Why one poll learnt nothing.
#[derive(Debug, thiserror::Error)]
enum PollError {
    /// The service could not be reached or did not answer in time.
    #[error("cannot reach the metadata service: {0}")]
    Unreachable(#[from] PostError),
    /// It answered with a status other than 200 or 404.
    #[error("'{url}' answered HTTP {status}")]
    Status { url: String, status: u16 },
    /// It answered 200 with a body that is not the notice's shape.
    #[error("'{url}' answered something else than a notice: {error}")]
    Shape {
        url: String,
        error: super::NoticeError,
    },
}

impl PollError {
    /// The condition, for saying it once while it lasts: the kind and the status, not the
    /// message (which carries addresses and OS words).
    fn condition(&self) -> String {
        match self {
            PollError::Unreachable(_) => "unreachable".into(),
            PollError::Status { status, .. } => format!("status {status}"),
            PollError::Shape { .. } => "shape".into(),
        }
    }
}

/// One node's watcher of its cloud's notices.
struct Watcher {
    base: String,
    source: String,
    timeout: Duration,
    /// The IMDSv2 session token and when it was issued.
    token: Option<(String, Instant)>,
}

impl Watcher {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.trim_end_matches('/'))
    }

    async fn token(&mut self) -> Result<String, PollError> {
        if let Some((t, at)) = &self.token
            && at.elapsed() < Duration::from_secs(TOKEN_TTL_SECS / 2)
        {
            return Ok(t.clone());
        }
        let url = self.url(TOKEN_PATH);
        let headers = [(
            "x-aws-ec2-metadata-token-ttl-seconds",
            TOKEN_TTL_SECS.to_string(),
        )];
        let (status, body) =
            request(http::Method::PUT, &url, &headers, Vec::new(), self.timeout).await?;
        if status != 200 {
            return Err(PollError::Status { url, status });
        }
        let t = String::from_utf8_lossy(&body).trim().to_string();
        self.token = Some((t.clone(), Instant::now()));
        Ok(t)
    }

    /// GET `path` with the session token: the body on 200, `None` on 404.
    async fn get(&mut self, path: &str) -> Result<Option<bytes::Bytes>, PollError> {
        let token = self.token().await?;
        let url = self.url(path);
        let headers = [("x-aws-ec2-metadata-token", token)];
        let (status, body) =
            request(http::Method::GET, &url, &headers, Vec::new(), self.timeout).await?;
        match status {
            200 => Ok(Some(body)),
            404 => Ok(None),
            401 => {
                // Expired or refused: a new one next time.
                self.token = None;
                Err(PollError::Status { url, status })
            }
            _ => Err(PollError::Status { url, status }),
        }
    }

    /// What the service says now.
    async fn poll(&mut self) -> Result<Option<SpotNotice>, PollError> {
        let action =
            match self.get(ACTION_PATH).await? {
                Some(b) => Some(parse_instance_action(&b, &self.source).map_err(|error| {
                    PollError::Shape {
                        url: self.url(ACTION_PATH),
                        error,
                    }
                })?),
                None => None,
            };
        let rebalance = match self.get(REBALANCE_PATH).await? {
            Some(b) => {
                Some(
                    parse_rebalance(&b, &self.source).map_err(|error| PollError::Shape {
                        url: self.url(REBALANCE_PATH),
                        error,
                    })?,
                )
            }
            None => None,
        };
        Ok(observed(action, rebalance))
    }
}

/// Run until `shutdown`: poll every `cfg.spot_poll` and keep this node's notice in the store.
/// Returns at once when `signals.spot` is `none`.
pub async fn run(
    cluster: Arc<Cluster>,
    cfg: SignalsConfig,
    shutdown: CancellationToken,
) -> Result<(), std::io::Error> {
    if cfg.spot == SpotProvider::None {
        return Ok(());
    }
    let source = cfg.spot.to_string();
    tracing::info!(
        "spot: watching {} ({source}) every {} for interruption notices",
        cfg.spot_url,
        cfg.spot_poll
    );
    let mut w = Watcher {
        base: cfg.spot_url.clone(),
        source: source.clone(),
        timeout: REQUEST_TIMEOUT.min(cfg.spot_poll.0),
        token: None,
    };
    let mut writer = Writer::forwarding(cluster.clone(), "signals");
    let mut tick = tokio::time::interval(cfg.spot_poll.0);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The failing condition said last (`None`: all well), so each is logged once.
    let mut said: Option<String> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let seen = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = w.poll() => r,
        };
        let seen = match seen {
            Ok(s) => {
                if said.take().is_some() {
                    tracing::info!("spot: {} answers again", cfg.spot_url);
                }
                s
            }
            Err(e) => {
                let c = e.condition();
                if said.as_deref() != Some(c.as_str()) {
                    tracing::warn!(
                        "spot: {e}; asking again every {} (said once while it lasts)",
                        cfg.spot_poll
                    );
                    said = Some(c);
                }
                continue;
            }
        };
        let stored = cluster.store.spot_notices()?.remove(&cluster.id);
        let Some(notice) = to_write(seen.as_ref(), stored.as_ref(), &source) else {
            continue;
        };
        match &notice {
            Some(n) => tracing::warn!(
                "spot: {source} announces this node {}; the leader drains it",
                n.state_word()
            ),
            None => tracing::info!("spot: {source} no longer announces anything for this node"),
        }
        let cmd = Command::SetSpotNotice {
            id: cluster.id,
            name: cluster.name.clone(),
            notice,
        };
        match writer.call(cmd).await {
            Ok(Response::Refused(m)) => tracing::warn!("spot: the notice was refused: {m}"),
            Ok(_) => {}
            // Compared with the store again next poll, so it is written then.
            Err(e) => tracing::warn!("spot: writing the notice failed: {e}; trying again"),
        }
    }
}
