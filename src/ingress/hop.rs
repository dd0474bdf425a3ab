//! The hop service: the peer route on which a node takes requests that another node's ingress
//! chose one of this node's instances for, and forwards them to it over local TCP.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};

use super::proxy::{Body, INSTANCE_HEADER, REFUSED_HEADER, Sent, empty, reply};
use super::{HopOpen, Ingress};
use crate::net::{BoxFut, PeerCtx, PeerStream, StreamService};

/// Serves [`super::HOP_ROUTE`] streams with this node's ingress.
pub struct HopService(pub Arc<Ingress>);

impl StreamService for HopService {
    type Req = HopOpen;

    fn serve(self: Arc<Self>, ctx: PeerCtx, req: HopOpen, stream: PeerStream) -> BoxFut<()> {
        let ingress = self.0.clone();
        Box::pin(async move {
            let HopOpen::Http1 = req;
            let stop = ingress.stop.clone();
            let svc = hyper::service::service_fn(move |req| {
                let ingress = ingress.clone();
                async move { Ok::<_, std::convert::Infallible>(ingress.serve_hop(req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            tokio::pin!(conn);
            let r = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.cancelled() => {
                    // Finish the request in flight, take no other.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = r {
                tracing::debug!("ingress: hop stream from {} ended: {e}", ctx.remote);
            }
        })
    }
}

/// A refusal the sending node may retry elsewhere.
fn refused(why: String) -> Response<Body> {
    let mut r = reply(StatusCode::SERVICE_UNAVAILABLE, why);
    r.headers_mut()
        .insert(REFUSED_HEADER, HeaderValue::from_static("1"));
    r
}

impl Ingress {
    /// One request another node sent for one of this node's instances: to it, or — when it
    /// is draining or gone — to another local instance of its slice, or refused.
    async fn serve_hop(self: Arc<Self>, mut req: Request<Incoming>) -> Response<Body> {
        let Some(instance) = req
            .headers_mut()
            .remove(INSTANCE_HEADER)
            .and_then(|v| v.to_str().ok().map(str::to_string))
        else {
            return reply(
                StatusCode::BAD_REQUEST,
                format!("a hop request needs the '{INSTANCE_HEADER}' header"),
            );
        };
        let slice = instance.rsplit_once('/').map_or("", |(s, _)| s).to_string();
        let me = self.cluster.id;
        let (target, timeout) = {
            let table = self.table.borrow();
            let Some(route) = table.routes.values().find(|r| r.slice == slice) else {
                return refused(format!("{slice}: no such service on this node"));
            };
            let target = route
                .backends
                .iter()
                .filter(|b| b.node == me && !self.is_draining(b.pid))
                .min_by_key(|b| b.instance != instance)
                .map(|b| (b.instance.clone(), b.port, b.pid));
            let timeout = route
                .service
                .timeout_ms
                .map(Duration::from_millis)
                .unwrap_or(self.cfg.timeout.0);
            (target, timeout)
        };
        let Some((target, port, pid)) = target else {
            return refused(format!("{instance}: draining or gone on this node"));
        };
        let upgrade = super::proxy::wants_upgrade(&req);
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let req = req.map(|b| b.boxed());
        match self.forward_local(port, pid, req, timeout).await {
            Sent::Response(mut resp) => {
                if resp.status() == StatusCode::SWITCHING_PROTOCOLS
                    && let Some(c) = client_upgrade
                {
                    let i = hyper::upgrade::on(&mut resp);
                    tokio::spawn(super::proxy::tunnel(c, i));
                    return resp.map(|_| empty());
                }
                resp
            }
            Sent::Unsent(_, why) => refused(format!("{target}: not reached: {why}")),
            Sent::Failed(why) => reply(
                StatusCode::BAD_GATEWAY,
                format!("{target} broke off: {why}"),
            ),
            Sent::TimedOut => reply(
                StatusCode::GATEWAY_TIMEOUT,
                format!("{target} did not answer within {} ms", timeout.as_millis()),
            ),
        }
    }
}
