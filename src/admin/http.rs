//! The node's HTTP endpoint (default 127.0.0.1:7421): `/healthz` (the process answers),
//! `/readyz` (a leader is known and the state machine has applied what is committed) and
//! `/metrics` (Prometheus text format, see [`crate::metrics::prometheus`]).
//! Served by the ingress's HTTP stack ([`crate::ingress::plain`]): GET and HEAD, keep-alive.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::controller::model::ModelStatus;
use crate::domain::{Decision, Millis, StoredBlueprint, now_millis};
use crate::metrics::prometheus::{self, ControllerGauges, Extra, ModelGauges};
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
        state: m.state.word().into(),
        load_seconds: m.load_ms.map(|ms| ms as f64 / 1000.0),
        last_latency_seconds: m.last_latency_ms.map(|ms| ms as f64 / 1000.0),
        reviews: m.reviews,
        timeouts: m.timeouts,
        replaced_reasons: m.replaced_reasons,
    }
}

/// The slices' and the controller's figures from the stored blueprints and decisions (newest
/// first) at `now`.
pub fn controller_gauges(
    blueprints: &[StoredBlueprint],
    decisions: &[Decision],
    now: Millis,
) -> ControllerGauges {
    let slices = blueprints
        .iter()
        .flat_map(|b| {
            b.blueprint.slices.iter().map(|s| {
                (
                    format!("{}/{}", b.blueprint.name, s.name),
                    (s.instances, s.min, s.max),
                )
            })
        })
        .collect::<BTreeMap<_, _>>();
    let desired = |b: &str, s: &str| slices.get(&format!("{b}/{s}")).map(|v| v.0);
    let capped = crate::controller::decide::capped(decisions, desired, now)
        .into_iter()
        .map(|c| (c.target, c.bound, c.wanted))
        .collect();
    let open: Vec<&Decision> = decisions.iter().filter(|d| d.status.is_open()).collect();
    let mut reviews = BTreeMap::new();
    let mut latencies = Vec::new();
    for r in decisions.iter().filter_map(|d| d.review.as_ref()) {
        *reviews.entry(r.verdict.clone()).or_default() += 1;
        // Reviews that ran: not those skipped without a model.
        if latencies.len() < prometheus::REVIEW_SAMPLE && r.latency_ms > 0 {
            latencies.push(r.latency_ms as f64 / 1000.0);
        }
    }
    ControllerGauges {
        slices,
        recorded: decisions.iter().map(|d| d.id).max().unwrap_or(0),
        open: open.len() as u64,
        oldest_open_seconds: open
            .iter()
            .map(|d| d.at)
            .min()
            .map(|at| now.saturating_sub(at) as f64 / 1000.0),
        capped,
        reviews,
        review_p50_seconds: prometheus::quantile(&latencies, 0.5),
        review_p95_seconds: prometheus::quantile(&latencies, 0.95),
        leader_model: None,
    }
}

/// What `/metrics` reads from this node's replica and its model.
fn extra(src: &Sources) -> Result<Extra, std::io::Error> {
    let store = &src.cluster.store;
    let keep = crate::raft::control::DECISIONS_KEEP as usize;
    let decisions = store.decisions(keep, true, 0, 0)?;
    Ok(Extra {
        instances: store.instances()?,
        decisions: prometheus::decision_counts(&decisions),
        model: Some(model_gauges(&src.model.status())),
        controller: Some(ControllerGauges {
            leader_model: src
                .metrics
                .leader_reviewer()
                .map(|r| (r.view.node, r.view.state)),
            ..controller_gauges(&store.blueprints()?, &decisions, now_millis())
        }),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DecisionStatus, ReviewRecord};
    use crate::view::fixture::{NOW, decision, scale};

    fn review(verdict: &str, latency_ms: u64) -> Option<ReviewRecord> {
        Some(ReviewRecord {
            verdict: verdict.into(),
            adjust_to: None,
            reason: String::new(),
            reviewer: "model".into(),
            latency_ms,
        })
    }

    /// What `/metrics` tells of the controller is assembled from the stored blueprints and
    /// decisions: the same on every node.
    #[test]
    fn the_controller_gauges_come_from_the_store() {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/blueprints/shop.toml"),
        )
        .unwrap();
        let mut bp = crate::deploy::blueprint::parse("shop.toml", &text).unwrap();
        let web = bp.slices.iter_mut().find(|s| s.name == "web").unwrap();
        web.instances = web.max;
        let max = web.max;
        let stored = [StoredBlueprint {
            version: 3,
            applied_at: NOW - 600_000,
            blueprint: bp,
        }];
        let mut capped = decision(
            14,
            scale("web", max, max),
            DecisionStatus::Rejected {
                reason: format!("shop/web is at max={max} already (wanted 20)"),
            },
            None,
        );
        capped.inputs = vec![
            ("stopped".into(), format!("at max={max}")),
            ("wanted".into(), "20".into()),
        ];
        let decisions = [
            capped,
            decision(
                13,
                scale("web", 2, 4),
                DecisionStatus::Pending { deadline: NOW },
                review("approve", 1_000),
            ),
            decision(
                12,
                scale("web", 2, 3),
                DecisionStatus::Superseded { reason: "x".into() },
                review("timeout", 3_000),
            ),
            decision(
                11,
                scale("web", 2, 3),
                DecisionStatus::Superseded { reason: "x".into() },
                review("skipped", 0),
            ),
        ];
        let g = controller_gauges(&stored, &decisions, NOW);
        assert_eq!(g.slices.get("shop/web"), Some(&(max, 1, max)));
        assert_eq!(g.recorded, 14);
        assert_eq!(g.open, 1);
        assert_eq!(g.oldest_open_seconds, Some(210.0));
        assert_eq!(g.capped, vec![("shop/web".into(), "max".into(), Some(20))]);
        assert_eq!(
            g.reviews,
            BTreeMap::from([
                ("approve".into(), 1),
                ("skipped".into(), 1),
                ("timeout".into(), 1)
            ])
        );
        // Skipped reviews did not run: not in the latency.
        assert_eq!(
            (g.review_p50_seconds, g.review_p95_seconds),
            (Some(1.0), Some(3.0))
        );
    }
}
