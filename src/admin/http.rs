//! The node's HTTP endpoint (default 127.0.0.1:7421): `/healthz` (the process answers),
//! `/readyz` (a leader is known and the state machine has applied what is committed) and
//! `/metrics` (Prometheus text format, see [`crate::metrics::prometheus`]).
//! Served by the ingress's HTTP stack ([`crate::ingress::plain`]): GET and HEAD, keep-alive.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::controller::model::{ModelState, ModelStatus};
use crate::metrics::prometheus::{self, Extra, ModelGauges};
use crate::view::Sources;

/// Bind the HTTP port.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr).await.map_err(|e| {
        format!("cannot bind the http endpoint on {addr}: {e}; pick another with --http")
    })
}

const TEXT: &str = "text/plain; charset=utf-8";

/// The model's figures for `/metrics`.
fn model_gauges(m: &ModelStatus) -> ModelGauges {
    ModelGauges {
        state: match m.state {
            ModelState::Disabled => "disabled",
            ModelState::Absent => "absent",
            ModelState::Idle => "idle",
            ModelState::Loading => "loading",
            ModelState::Ready => "ready",
            ModelState::Failed(_) => "failed",
        }
        .into(),
        load_seconds: m.load_ms.map(|ms| ms as f64 / 1000.0),
        last_latency_seconds: m.last_latency_ms.map(|ms| ms as f64 / 1000.0),
        reviews: m.reviews,
        timeouts: m.timeouts,
    }
}

/// What `/metrics` reads from this node's replica and its model.
fn extra(src: &Sources) -> Result<Extra, std::io::Error> {
    let store = &src.cluster.store;
    let keep = crate::raft::control::DECISIONS_KEEP as usize;
    Ok(Extra {
        instances: store.instances()?,
        decisions: prometheus::decision_counts(&store.decisions(keep, true, 0, 0)?),
        model: Some(model_gauges(&src.model.status())),
    })
}

/// The status, content type and body for `path`.
pub fn respond(path: &str, src: &Sources) -> (u16, &'static str, String) {
    let (cluster, metrics) = (&*src.cluster, &*src.metrics);
    match path {
        "/healthz" => (200, TEXT, "ok\n".into()),
        "/readyz" => match cluster.readiness() {
            Ok(()) => (200, TEXT, "ready\n".into()),
            Err(why) => (503, TEXT, format!("not ready: {why}\n")),
        },
        "/metrics" => match cluster
            .local_status()
            .map_err(|e| e.to_string())
            .and_then(|s| Ok((s, extra(src).map_err(|e| e.to_string())?)))
        {
            Ok((status, extra)) => (
                200,
                prometheus::CONTENT_TYPE,
                prometheus::render(metrics, &status, &cluster.ep.stats, &extra),
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
    src: Sources,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    crate::ingress::plain::serve(
        listener,
        Arc::new(move |path: &str| respond(path, &src)),
        shutdown,
    )
}
