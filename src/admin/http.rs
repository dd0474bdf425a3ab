//! The node's HTTP endpoint (default 127.0.0.1:7421): `/healthz` (the process answers),
//! `/readyz` (a leader is known and the state machine has applied what is committed) and
//! `/metrics` (Prometheus text format, see [`crate::metrics::prometheus`]).
//! Served by the ingress's HTTP stack ([`crate::ingress::plain`]): GET and HEAD, keep-alive.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::pipeline::Pipeline;
use crate::metrics::prometheus;
use crate::raft::Cluster;

/// Bind the HTTP port.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr).await.map_err(|e| {
        format!("cannot bind the http endpoint on {addr}: {e}; pick another with --http")
    })
}

const TEXT: &str = "text/plain; charset=utf-8";

/// The status, content type and body for `path`.
pub fn respond(path: &str, cluster: &Cluster, metrics: &Pipeline) -> (u16, &'static str, String) {
    match path {
        "/healthz" => (200, TEXT, "ok\n".into()),
        "/readyz" => match cluster.readiness() {
            Ok(()) => (200, TEXT, "ready\n".into()),
            Err(why) => (503, TEXT, format!("not ready: {why}\n")),
        },
        "/metrics" => match cluster.local_status() {
            Ok(status) => (
                200,
                prometheus::CONTENT_TYPE,
                prometheus::render(metrics, &status, &cluster.ep.stats),
            ),
            Err(e) => (503, TEXT, format!("metrics unavailable: {e}\n")),
        },
        _ => (
            404,
            TEXT,
            "not found: try /metrics, /healthz or /readyz\n".into(),
        ),
    }
}

/// Serve until `shutdown`.
pub fn serve(
    listener: TcpListener,
    cluster: Arc<Cluster>,
    metrics: Arc<Pipeline>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    crate::ingress::plain::serve(
        listener,
        Arc::new(move |path: &str| respond(path, &cluster, &metrics)),
        shutdown,
    )
}
