//! Renewal of this node's certificate: once less than a third of its lifetime is left
//! ([`tls::renew_due`]), the node signs a new one for itself with the cluster CA from its
//! replica (same name, new key), stores it under `<data-dir>/tls` and presents it on new
//! connections. Connections already open keep working.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::net::Endpoint;
use crate::net::tls::{self, CaPem, NodeTls};
use crate::raft::Cluster;

/// How often the certificate is looked at: a thirtieth of its lifetime, from 1 s to 1 min.
fn check_every(ttl: Duration) -> Duration {
    (ttl / 30).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

fn now_secs() -> i64 {
    (crate::domain::now_millis() / 1000) as i64
}

/// Renew this node's certificate whenever it is due, until `shutdown`. A renewal that fails
/// (no cluster record in the replica yet, a full disk) is logged and tried again later.
pub async fn run(
    cluster: Arc<Cluster>,
    ep: Arc<Endpoint>,
    dir: PathBuf,
    ttl: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(check_every(ttl));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match renew_if_due(&cluster, &ep, &dir, ttl) {
            Ok(_) => failing = false,
            Err(e) if !failing => {
                failing = true;
                tracing::warn!("renewing this node's certificate failed (retrying): {e:#}");
            }
            Err(_) => {}
        }
    }
}

/// One look: renew if due. Returns whether it renewed.
fn renew_if_due(
    cluster: &Cluster,
    ep: &Endpoint,
    dir: &std::path::Path,
    ttl: Duration,
) -> anyhow::Result<bool> {
    let path = dir.join("node.crt");
    let (not_before, not_after) = tls::cert_validity(&path)?;
    let now = now_secs();
    let ttl_secs = ttl.as_secs() as i64;
    if !tls::renew_due(now, not_before, not_after, ttl_secs) {
        return Ok(false);
    }
    let meta = cluster
        .store
        .cluster()
        .context("reading the cluster record")?
        .context("this node's replica has no cluster record (and so no CA) yet")?;
    let ca = CaPem {
        cert_pem: meta.init.ca_cert_pem,
        key_pem: meta.init.ca_key_pem,
    };
    let (cert, key) = tls::issue_node_cert(&ca, &cluster.name, now, ttl_secs)?;
    let node_tls = NodeTls::replace(dir, &cert, &key)?;
    ep.set_identity(&node_tls)?;
    tracing::info!(
        "renewed this node's certificate: the old one expires at {not_after}, the new one at {} (unix seconds)",
        now + ttl_secs
    );
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_is_looked_at_often_enough() {
        assert_eq!(check_every(Duration::from_secs(30)), Duration::from_secs(1));
        assert_eq!(
            check_every(Duration::from_secs(300)),
            Duration::from_secs(10)
        );
        assert_eq!(
            check_every(Duration::from_secs(365 * 86_400)),
            Duration::from_secs(60)
        );
    }
}
