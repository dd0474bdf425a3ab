//! The peer router: each subsystem registers its own request enum under a [`Route`], so they
//! share the endpoint without sharing a message type. A request frame carries the route's id
//! before the request; the reply frame is the route's [`Reply`].
//!
//! Routes in use: 1 raft (votes, entries, snapshots, forwarded writes and reads, status), 2 joins
//! (the only one open to callers without a cluster certificate), 3 instance logs, 4 ingress hops
//! (a stream route: after its opening request the stream is the service's, e.g. HTTP to an
//! instance on this node), 5 clock pings (`aether doctor`), 6 fire drills (`aether drill run`;
//! the one route a node cut off by a drill still serves), 7 diagnostics (`aether diag bundle`).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::frame::{self, FrameError};
use super::{BoxFut, PeerCtx, PeerStream, Reply, Service, StreamService};

/// A subsystem's place on the peer endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Sent before the request; unique per node.
    pub id: u8,
    /// Shown in errors and logs.
    pub name: &'static str,
    /// Callers without a cluster certificate (a joining node) may use it.
    pub open: bool,
}

/// What a request frame leads to: a reply frame to send, or a service that takes the stream.
pub(super) enum Dispatched {
    Reply(BoxFut<Vec<u8>>),
    Stream(Box<dyn FnOnce(PeerStream) -> BoxFut<()> + Send>),
}

/// Decodes one request of a route and answers it (with an encoded reply frame, or by taking
/// the stream).
type Handler =
    Box<dyn Fn(PeerCtx, &[u8]) -> Result<Dispatched, FrameError> + Send + Sync + 'static>;

/// The routes a node serves, built before the endpoint starts serving.
#[derive(Default)]
pub struct Router {
    routes: BTreeMap<u8, (Route, Handler)>,
}

impl Router {
    pub fn new() -> Router {
        Router::default()
    }

    /// Serve `route` with `svc`.
    ///
    /// # Panics
    /// When another service holds the route's id: two subsystems on one id is a bug in the
    /// program, found the first time a node starts.
    pub fn add<S: Service>(self, route: Route, svc: Arc<S>) -> Router {
        let handler: Handler = Box::new(move |ctx, payload| {
            let req: S::Req = frame::decode_payload(payload)?;
            let svc = svc.clone();
            Ok(Dispatched::Reply(Box::pin(async move {
                let reply = match svc.handle(ctx, req).await {
                    Ok(r) => Reply::Ok(r),
                    Err(e) => Reply::Err(e),
                };
                frame::encode(&reply).unwrap_or_else(|e| error_reply(format!("{e}")))
            })))
        });
        self.insert(route, handler)
    }

    /// Serve `route` with the stream service `svc`: after the opening request, the stream is
    /// the service's.
    ///
    /// # Panics
    /// As [`Router::add`].
    pub fn add_stream<S: StreamService>(self, route: Route, svc: Arc<S>) -> Router {
        let handler: Handler = Box::new(move |ctx, payload| {
            let req: S::Req = frame::decode_payload(payload)?;
            let svc = svc.clone();
            Ok(Dispatched::Stream(Box::new(move |stream| {
                svc.serve(ctx, req, stream)
            })))
        });
        self.insert(route, handler)
    }

    fn insert(mut self, route: Route, handler: Handler) -> Router {
        if let Some((taken, _)) = self.routes.insert(route.id, (route, handler)) {
            panic!(
                "route {} is taken by '{}' and asked for by '{}'",
                route.id, taken.name, route.name
            );
        }
        self
    }

    /// The routes, for logs.
    pub fn names(&self) -> Vec<&'static str> {
        self.routes.values().map(|(r, _)| r.name).collect()
    }

    /// Answer one request frame's payload (route id, then the request) with the reply frame to
    /// send, or the service that takes the stream. A payload that does not decode is an error
    /// (the stream gets a "bad frame" reply); a closed route for a caller without a
    /// certificate is refused in the reply.
    pub(super) fn dispatch(&self, ctx: PeerCtx, payload: &[u8]) -> Result<Dispatched, FrameError> {
        let Some((&id, request)) = payload.split_first() else {
            return Err(FrameError::Empty);
        };
        let Some((route, handle)) = self.routes.get(&id) else {
            let known: Vec<String> = self
                .routes
                .values()
                .map(|(r, _)| format!("{} ({})", r.id, r.name))
                .collect();
            return Err(FrameError::Decode(format!(
                "no route {id} on this node (it serves {}): run the same aether version on every node",
                known.join(", ")
            )));
        };
        if !route.open && !ctx.authenticated {
            let msg = format!(
                "refused: '{}' requests need a cluster certificate; only a join may be sent without one",
                route.name
            );
            return Ok(Dispatched::Reply(Box::pin(async move { error_reply(msg) })));
        }
        handle(ctx, request)
    }
}

/// The reply frame of an error, whatever the route's reply type.
pub(super) fn error_reply(message: String) -> Vec<u8> {
    frame::encode(&Reply::<()>::Err(message)).expect("a string always encodes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Ask {
        Double(u32),
    }

    struct Doubler;

    impl Service for Doubler {
        type Req = Ask;
        type Resp = u32;
        fn handle(self: Arc<Self>, _: PeerCtx, req: Ask) -> BoxFut<Result<u32, String>> {
            Box::pin(async move {
                match req {
                    Ask::Double(n) => n.checked_mul(2).ok_or_else(|| format!("{n} is too big")),
                }
            })
        }
    }

    const MATH: Route = Route {
        id: 7,
        name: "math",
        open: false,
    };

    fn ctx(authenticated: bool) -> PeerCtx {
        PeerCtx {
            remote: "127.0.0.1:1".parse().unwrap(),
            authenticated,
        }
    }

    /// What a caller sends: the route's id, then the request (postcard of the pair).
    fn payload(route: u8, req: &Ask) -> Vec<u8> {
        postcard::to_allocvec(&(route, req)).unwrap()
    }

    async fn answer(r: &Router, ctx: PeerCtx, p: &[u8]) -> Result<Reply<u32>, FrameError> {
        let Dispatched::Reply(reply) = r.dispatch(ctx, p)? else {
            panic!("a call route took the stream");
        };
        let bytes = reply.await;
        frame::read_frame(&mut bytes.as_slice(), 1 << 20).await
    }

    #[tokio::test]
    async fn requests_reach_their_route_and_strangers_only_open_ones() {
        let r = Router::new().add(MATH, Arc::new(Doubler));
        let ok = answer(&r, ctx(true), &payload(7, &Ask::Double(21))).await;
        assert!(matches!(ok, Ok(Reply::Ok(42))), "{ok:?}");
        let failed = answer(&r, ctx(true), &payload(7, &Ask::Double(u32::MAX))).await;
        assert!(
            matches!(failed, Ok(Reply::Err(ref m)) if m.contains("too big")),
            "{failed:?}"
        );
        let stranger = answer(&r, ctx(false), &payload(7, &Ask::Double(1))).await;
        assert!(
            matches!(stranger, Ok(Reply::Err(ref m)) if m.starts_with("refused") && m.contains("'math'")),
            "{stranger:?}"
        );
        let open = Router::new().add(Route { open: true, ..MATH }, Arc::new(Doubler));
        let joined = answer(&open, ctx(false), &payload(7, &Ask::Double(2))).await;
        assert!(matches!(joined, Ok(Reply::Ok(4))), "{joined:?}");
    }

    #[tokio::test]
    async fn unknown_routes_and_garbage_are_bad_frames() {
        let r = Router::new().add(MATH, Arc::new(Doubler));
        let unknown = answer(&r, ctx(true), &payload(9, &Ask::Double(1))).await;
        assert!(
            matches!(unknown, Err(FrameError::Decode(ref m)) if m.contains("no route 9") && m.contains("7 (math)")),
            "{unknown:?}"
        );
        assert!(matches!(
            answer(&r, ctx(true), &[7, 0xff, 0xff]).await,
            Err(FrameError::Decode(_))
        ));
        assert!(matches!(
            answer(&r, ctx(true), &[]).await,
            Err(FrameError::Empty)
        ));
    }

    #[test]
    #[should_panic(expected = "route 7 is taken by 'math'")]
    fn two_services_on_one_route_is_a_bug() {
        let _ = Router::new().add(MATH, Arc::new(Doubler)).add(
            Route {
                name: "other",
                ..MATH
            },
            Arc::new(Doubler),
        );
    }
}
