//! One request's way through the ingress: accept on a service port, find the entry point,
//! choose an instance, forward (TCP to a local instance, a hop to a remote one), retry what is
//! safe to retry, wait for an instance when none is ready, pass upgrades through, count it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_util::sync::CancellationToken;

use super::balance::Tried;
use super::table::{Backend, Route};
use super::{HOP_ROUTE, HopOpen, Ingress};
use crate::metrics::requests::Outcome;

/// The body type on both sides of the proxy.
pub(super) type Body = BoxBody<Bytes, hyper::Error>;

/// The instance a hop request is for (set by the sending node, removed before the instance
/// sees the request).
pub(super) const INSTANCE_HEADER: &str = "x-aether-instance";
/// Set on a 503 by a node that would not take a hop request (its instance is draining or
/// gone): the sender tries another instance when it still can.
pub(super) const REFUSED_HEADER: &str = "x-aether-refused";

/// Open connections to local instances (by port) and to other nodes' hop service (by
/// address). A connection goes back as soon as its response's head came and is handed out
/// again once its response has been read to the end (it is ready).
#[derive(Default)]
pub(super) struct Pool {
    local: Mutex<HashMap<u16, Vec<SendRequest<Body>>>>,
    remote: Mutex<HashMap<String, Vec<SendRequest<Body>>>>,
}

/// Idle connections kept per key.
const POOL_MAX: usize = 512;

impl Pool {
    fn take(&self, target: Target<'_>) -> Option<SendRequest<Body>> {
        let ready = |v: &mut Vec<SendRequest<Body>>| {
            v.retain(|s| !s.is_closed());
            let i = v.iter().rposition(|s| s.is_ready())?;
            Some(v.swap_remove(i))
        };
        match target {
            Target::Local(port) => ready(self.local.lock().expect("pool lock").get_mut(&port)?),
            Target::Remote(addr) => ready(self.remote.lock().expect("pool lock").get_mut(addr)?),
        }
    }

    /// Keep `s` (dropped, and its connection closed once idle, when the pool is full).
    fn put(&self, target: Target<'_>, s: SendRequest<Body>) {
        let keep = |v: &mut Vec<SendRequest<Body>>| {
            if v.len() < POOL_MAX {
                v.push(s);
            }
        };
        match target {
            Target::Local(port) => keep(
                self.local
                    .lock()
                    .expect("pool lock")
                    .entry(port)
                    .or_default(),
            ),
            Target::Remote(addr) => {
                let mut g = self.remote.lock().expect("pool lock");
                match g.get_mut(addr) {
                    Some(v) => keep(v),
                    None => keep(g.entry(addr.to_string()).or_default()),
                }
            }
        }
    }
}

/// Where a try goes.
#[derive(Clone, Copy)]
pub(super) enum Target<'a> {
    /// An instance on this node, at its port.
    Local(u16),
    /// Another node's hop service.
    Remote(&'a str),
}

/// How a try ended.
pub(super) enum Sent {
    Response(Response<Body>),
    /// Nothing was sent: the request is back for another try.
    Unsent(Request<Body>, String),
    /// Sent, then the connection broke before the response's head.
    Failed(String),
    TimedOut,
}

/// A response the ingress writes itself.
pub(super) fn reply(status: StatusCode, text: String) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(text + "\n"))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn with_retry_after(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

impl Ingress {
    /// Send `req` to `target` within `timeout` (to the response's head), on a pooled
    /// connection or a new one.
    pub(super) async fn send(
        self: &Arc<Self>,
        target: Target<'_>,
        req: Request<Body>,
        timeout: Duration,
    ) -> Sent {
        let mut req = req;
        // A pooled connection may have been closed by its peer since: one more try on a new
        // connection (nothing was sent).
        for pooled in [true, false] {
            let sender = if pooled {
                match self.pool.take(target) {
                    Some(s) => s,
                    None => continue,
                }
            } else {
                match self.connect(target).await {
                    Ok(s) => s,
                    Err(e) => return Sent::Unsent(req, e),
                }
            };
            let mut sender = sender;
            let fut = sender.try_send_request(req);
            match tokio::time::timeout(timeout, fut).await {
                Err(_) => return Sent::TimedOut,
                Ok(Ok(resp)) => {
                    self.pool.put(target, sender);
                    return Sent::Response(resp.map(|b| b.boxed()));
                }
                Ok(Err(mut e)) => match e.take_message() {
                    Some(back) if pooled => req = back,
                    Some(back) => return Sent::Unsent(back, e.into_error().to_string()),
                    None => return Sent::Failed(e.into_error().to_string()),
                },
            }
        }
        unreachable!("the second pass returns")
    }

    async fn connect(self: &Arc<Self>, target: Target<'_>) -> Result<SendRequest<Body>, String> {
        match target {
            Target::Local(port) => {
                let tcp = tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    tokio::net::TcpStream::connect(("127.0.0.1", port)),
                )
                .await
                .map_err(|_| format!("connecting to 127.0.0.1:{port} timed out"))?
                .map_err(|e| format!("cannot connect to 127.0.0.1:{port}: {e}"))?;
                let _ = tcp.set_nodelay(true);
                handshake(TokioIo::new(tcp)).await
            }
            Target::Remote(addr) => {
                let stream = self
                    .cluster
                    .ep
                    .open_stream(addr, HOP_ROUTE, &HopOpen::Http1)
                    .await
                    .map_err(|e| e.to_string())?;
                handshake(TokioIo::new(stream)).await
            }
        }
    }

    /// Forward to the local copy `pid` at `port`, counted in flight for its drain until the
    /// response's body has been sent on.
    pub(super) async fn forward_local(
        self: &Arc<Self>,
        port: u16,
        pid: u32,
        req: Request<Body>,
        timeout: Duration,
    ) -> Sent {
        let guard = self.begin(pid);
        match self.send(Target::Local(port), req, timeout).await {
            Sent::Response(resp) => Sent::Response(keep_until_done(resp, guard)),
            other => other,
        }
    }

    /// Serve one request that arrived on service port `port` from `client`.
    pub(super) async fn serve(
        self: Arc<Self>,
        port: u16,
        client: SocketAddr,
        mut req: Request<Incoming>,
    ) -> Response<Body> {
        let started = Instant::now();
        let Some(route) = self.route(port) else {
            return reply(
                StatusCode::NOT_FOUND,
                format!("no service on port {port} any more"),
            );
        };
        let entry = route
            .service
            .entry_for(req.method().as_str(), req.uri().path())
            .to_string();
        let timeout = route
            .service
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(self.cfg.timeout.0);
        prepare_headers(&mut req, client);
        let upgrade = wants_upgrade(&req);
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        // A request without a body and of an idempotent method can be sent again.
        let replayable =
            is_idempotent(req.method()) && hyper::body::Body::is_end_stream(req.body());
        let (parts, body) = req.into_parts();
        let again = replayable.then(|| {
            let mut p = Request::new(());
            *p.method_mut() = parts.method.clone();
            *p.uri_mut() = parts.uri.clone();
            *p.version_mut() = parts.version;
            *p.headers_mut() = parts.headers.clone();
            p
        });
        let rebuild = |again: &Option<Request<()>>| {
            again.as_ref().map(|p| {
                let mut r = Request::new(empty());
                *r.method_mut() = p.method().clone();
                *r.uri_mut() = p.uri().clone();
                *r.version_mut() = p.version();
                *r.headers_mut() = p.headers().clone();
                r
            })
        };
        let mut req = Some(Request::from_parts(parts, body.boxed()));
        self.balancer
            .lock()
            .expect("balancer lock")
            .count_request(Instant::now());
        let mut tried: Vec<String> = Vec::new();
        let mut route = route;
        let deadline = tokio::time::Instant::now() + self.cfg.queue_timeout.0;
        let (resp, outcome, instance) = loop {
            // Every way round the loop hands the request back (or a copy of it); the others
            // break out.
            let mut r = req.take().expect("the request is back for another try");
            let Some(b) = self.choose(&route, &tried) else {
                // Nothing (left) to try, and the request is still ours: wait for the routes
                // to offer an instance — none is ready yet (scaling from zero, restarting), or
                // every one tried was unreachable or refused it (stopping).
                match self
                    .wait_for_instance(port, &route, !tried.is_empty(), deadline)
                    .await
                {
                    Ok(fresh) => {
                        route = fresh;
                        tried.clear();
                        req = Some(r);
                        continue;
                    }
                    Err(why) => {
                        // After tries, none of which reached an instance: unreachable.
                        let outcome = if tried.is_empty() {
                            Outcome::ServerError(503)
                        } else {
                            Outcome::ConnectFailed
                        };
                        break (
                            with_retry_after(reply(StatusCode::SERVICE_UNAVAILABLE, why)),
                            outcome,
                            None,
                        );
                    }
                }
            };
            let key = b.key.clone();
            tried.push(key.clone());
            self.balancer.lock().expect("balancer lock").start(&key);
            // A client that goes away drops this future mid-try: the try still ends.
            let mut unfinished = Unfinished(&self, &key, true);
            let t0 = Instant::now();
            let sent = if b.node == self.cluster.id {
                self.forward_local(b.port, b.pid, r, timeout).await
            } else {
                if let Ok(v) = HeaderValue::from_str(&b.instance) {
                    r.headers_mut().insert(INSTANCE_HEADER, v);
                }
                self.send(Target::Remote(&b.addr), r, timeout).await
            };
            unfinished.2 = false;
            let took = t0.elapsed();
            let end = |t: Tried| {
                self.balancer
                    .lock()
                    .expect("balancer lock")
                    .end(&key, t, took, Instant::now())
            };
            // Each try that reached an instance counts for its version (a rollout's analysis
            // sees a canary's failures even when a retry hid them from the client).
            let reached = match &sent {
                Sent::Response(r) if r.headers().contains_key(REFUSED_HEADER) => None,
                Sent::Response(r) => Some(r.status().is_server_error()),
                Sent::Failed(_) | Sent::TimedOut => Some(true),
                Sent::Unsent(..) => None,
            };
            if let Some(error) = reached {
                self.recorder
                    .record_try(&route.slice, b.version, error, took);
            }
            match sent {
                Sent::Response(mut resp) => {
                    let status = resp.status();
                    if resp.headers().contains_key(REFUSED_HEADER) {
                        // Draining or gone there: not the instance's failure.
                        end(Tried::Ok);
                        req = rebuild(&again);
                        if req.is_some() {
                            continue;
                        }
                        resp.headers_mut().remove(REFUSED_HEADER);
                        break (resp, Outcome::ServerError(503), None);
                    }
                    if status.is_server_error() {
                        end(Tried::ServerError);
                        if again.is_some()
                            && self.has_other(&route, &tried)
                            && self
                                .balancer
                                .lock()
                                .expect("balancer lock")
                                .take_retry(Instant::now())
                        {
                            req = rebuild(&again);
                            continue;
                        }
                        break (resp, Outcome::ServerError(status.as_u16()), Some(b.index));
                    }
                    end(Tried::Ok);
                    if status == StatusCode::SWITCHING_PROTOCOLS
                        && let Some(client_upgrade) = client_upgrade
                    {
                        let instance_upgrade = hyper::upgrade::on(&mut resp);
                        tokio::spawn(tunnel(client_upgrade, instance_upgrade));
                        break (resp.map(|_| empty()), Outcome::Answered(101), Some(b.index));
                    }
                    break (resp, Outcome::Answered(status.as_u16()), Some(b.index));
                }
                Sent::Unsent(back, why) => {
                    tracing::debug!("ingress: {} not reached: {why}", b.instance);
                    end(Tried::ConnectFailed);
                    req = Some(back);
                }
                Sent::Failed(why) => {
                    end(Tried::Broken);
                    let budget = again.is_some()
                        && self.has_other(&route, &tried)
                        && self
                            .balancer
                            .lock()
                            .expect("balancer lock")
                            .take_retry(Instant::now());
                    if budget {
                        req = rebuild(&again);
                        continue;
                    }
                    break (
                        reply(
                            StatusCode::BAD_GATEWAY,
                            format!("{}: {} broke off: {why}", route.slice, b.instance),
                        ),
                        Outcome::ServerError(502),
                        Some(b.index),
                    );
                }
                Sent::TimedOut => {
                    end(Tried::Broken);
                    break (
                        reply(
                            StatusCode::GATEWAY_TIMEOUT,
                            format!(
                                "{}: {} did not answer within {} ms",
                                route.slice,
                                b.instance,
                                timeout.as_millis()
                            ),
                        ),
                        Outcome::Timeout,
                        Some(b.index),
                    );
                }
            }
        };
        self.recorder
            .record(&route.slice, &entry, instance, outcome, started.elapsed());
        resp
    }

    fn route(&self, port: u16) -> Option<Arc<Route>> {
        self.table.borrow().routes.get(&port).cloned()
    }

    /// This node's choice among the route's instances it has not tried (draining local ones
    /// left out).
    fn choose(&self, route: &Route, tried: &[String]) -> Option<Backend> {
        let usable = |b: &&Backend| {
            (b.node != self.cluster.id || !self.is_draining(b.pid)) && !tried.contains(&b.key)
        };
        let offered = route.offered((rand::random::<u32>() % 100) as u8);
        // The split's side first; the other side only when that one has nothing left to try.
        let candidates: Vec<&Backend> = if offered.iter().any(usable) {
            offered
        } else {
            route.backends.iter().collect()
        };
        let candidates: Vec<&Backend> = candidates
            .into_iter()
            .filter(|b| b.node != self.cluster.id || !self.is_draining(b.pid))
            .collect();
        let keys: Vec<&str> = candidates.iter().map(|b| b.key.as_str()).collect();
        let i = self.balancer.lock().expect("balancer lock").pick(
            &keys,
            tried,
            Instant::now(),
            rand::random::<u32>() as usize,
            rand::random::<u32>() as usize,
        )?;
        Some(candidates[i].clone())
    }

    fn has_other(&self, route: &Route, tried: &[String]) -> bool {
        route.backends.iter().any(|b| !tried.contains(&b.key))
    }

    /// Wait (until `deadline`, `ingress.queue_timeout` after the request came) until the
    /// slice on `port` has an instance this node can choose — with `changed`, in routes that
    /// differ from `route` (its instances were all tried). Counted as waiting meanwhile, so the
    /// leader starts an instance when the slice is at zero.
    async fn wait_for_instance(
        &self,
        port: u16,
        route: &Route,
        changed: bool,
        deadline: tokio::time::Instant,
    ) -> Result<Arc<Route>, String> {
        let slice = route.slice.as_str();
        let _counted = Waiting(self, slice);
        let n = self.recorder.waiting(slice, 1);
        if n > self.cfg.max_waiting {
            return Err(format!(
                "{slice}: no instance is ready and {} requests already wait on this node; \
                 raise ingress.max_waiting or the slice's min",
                n - 1
            ));
        }
        let mut rx = self.table.subscribe();
        loop {
            let current = rx.borrow_and_update().routes.get(&port).cloned();
            match current {
                None => break Err(format!("{slice}: the service on port {port} was removed")),
                Some(r) if (!changed || *r != *route) && self.choose(&r, &[]).is_some() => {
                    break Ok(r);
                }
                Some(_) => {}
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    break Err(format!(
                        "{slice}: no instance became ready within {} (ingress.queue_timeout); 'aether blueprint show' says why",
                        self.cfg.queue_timeout
                    ));
                }
                r = rx.changed() => if r.is_err() {
                    break Err(format!("{slice}: this node is stopping; send the request to another node"));
                },
            }
        }
    }
}

/// A try under way; dropped while armed (the client went away), it ends in the balancer.
struct Unfinished<'a>(&'a Ingress, &'a str, bool);

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if self.2 {
            self.0
                .balancer
                .lock()
                .expect("balancer lock")
                .abandon(self.1);
        }
    }
}

/// A request counted as waiting for an instance of a slice, until dropped.
struct Waiting<'a>(&'a Ingress, &'a str);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.recorder.waiting(self.1, -1);
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

async fn handshake<T>(io: TokioIo<T>) -> Result<SendRequest<Body>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(io)
        .await
        .map_err(|e| format!("http handshake failed: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("ingress: connection to an instance ended: {e}");
        }
    });
    Ok(sender)
}

/// Accept client connections on a service port until `stop`.
pub(super) async fn accept(
    ingress: Arc<Ingress>,
    port: u16,
    listener: std::net::TcpListener,
    stop: CancellationToken,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("ingress: port {port}: {e}");
            return;
        }
    };
    loop {
        let (tcp, client) = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, typically: back off a little.
                    tracing::warn!("ingress: accepting on port {port}: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let ingress = ingress.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let ingress = ingress.clone();
                async move { Ok::<_, std::convert::Infallible>(ingress.serve(port, client, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!("ingress: client connection from {client} ended: {e}");
            }
        });
    }
}

/// Copy both ways between the client's and the instance's upgraded connections.
pub(super) async fn tunnel(client: hyper::upgrade::OnUpgrade, instance: hyper::upgrade::OnUpgrade) {
    let (Ok(c), Ok(i)) = tokio::join!(client, instance) else {
        return;
    };
    let (mut c, mut i) = (TokioIo::new(c), TokioIo::new(i));
    let _ = tokio::io::copy_bidirectional(&mut c, &mut i).await;
}

pub(super) fn empty() -> Body {
    http_body_util::Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

pub(super) fn wants_upgrade<B>(req: &Request<B>) -> bool {
    req.headers().contains_key(header::UPGRADE)
        && req.headers().get_all(header::CONNECTION).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
        })
}

/// Headers a proxy sets or must not pass on: `X-Forwarded-For` gets the client, `-Proto`
/// and `-Host` are set when absent; hop-by-hop headers go (an upgrade's `Connection` and
/// `Upgrade` stay); a client cannot name an instance.
fn prepare_headers<B>(req: &mut Request<B>, client: SocketAddr) {
    let upgrade = wants_upgrade(req);
    let h = req.headers_mut();
    h.remove(INSTANCE_HEADER);
    for name in [
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "trailer",
    ] {
        h.remove(name);
    }
    if !upgrade {
        h.remove(header::CONNECTION);
    }
    let xff = HeaderName::from_static("x-forwarded-for");
    let ip = client.ip().to_string();
    let value = match h.get(&xff).and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {ip}"),
        None => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.insert(xff, v);
    }
    h.entry(HeaderName::from_static("x-forwarded-proto"))
        .or_insert(HeaderValue::from_static("http"));
    if let Some(host) = h.get(header::HOST).cloned() {
        h.entry(HeaderName::from_static("x-forwarded-host"))
            .or_insert(host);
    }
}

/// A response whose body holds `guard` until it has been sent on (or dropped).
fn keep_until_done(resp: Response<Body>, guard: super::InFlight) -> Response<Body> {
    resp.map(|inner| {
        Guarded {
            inner,
            _guard: guard,
        }
        .boxed()
    })
}

/// A body that keeps a request counted in flight until it ends.
struct Guarded {
    inner: Body,
    _guard: super::InFlight,
}

impl hyper::body::Body for Guarded {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
