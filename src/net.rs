//! QUIC transport (quinn + rustls): one UDP endpoint per node, mutual TLS against the cluster
//! CA, one bidirectional stream per RPC on a kept-open connection per peer, reconnect with
//! backoff. The only module that knows quinn.
//!
//! Three ALPNs share the port: `aether/1` (members: a *node* certificate signed by the cluster
//! CA is required, anything else — no certificate, an operator's — is refused on its first
//! read), `aether-admin/1` (remote operators: an *operator* certificate signed by the cluster CA,
//! each stream served by the [`AdminService`] registered above this module) and `aether-join/1`
//! (a node without a certificate yet, which may only send its join request).

pub mod frame;
pub mod limit;
pub mod ping;
pub mod router;
pub mod tls;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::NetConfig;
use frame::FrameError;
pub use router::{Route, Router};
use tls::{NodeTls, TlsError};

/// ALPN of member-to-member and remote admin traffic.
pub const ALPN_PEER: &[u8] = b"aether/1";
/// ALPN of a joining node that has no certificate yet.
pub const ALPN_JOIN: &[u8] = b"aether-join/1";
/// ALPN of a remote operator (the admin protocol's frames, one connection per client).
pub const ALPN_ADMIN: &[u8] = b"aether-admin/1";
/// QUIC application close code for a refused connection.
pub const CLOSE_REFUSED: u32 = 0x41;
/// Reason sent with [`CLOSE_REFUSED`].
pub const REFUSED_REASON: &str = "refused: a certificate signed by this cluster's CA is required";
/// Reason sent with [`CLOSE_REFUSED`] to a certificate of the cluster CA that is not a node's
/// on the member protocol.
pub const NOT_A_MEMBER_REASON: &str = "refused: this certificate is not a member's (an operator certificate is for 'aether --remote' only)";
/// Reason sent with [`CLOSE_REFUSED`] to a remote admin client without an operator certificate.
pub const NOT_AN_OPERATOR_REASON: &str = "refused: remote admin needs an operator certificate signed by this cluster's CA: 'aether operator cert create' on a node makes one";

/// Transport errors. [`NetError::is_unreachable`] tells the ones worth a backoff.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot resolve '{addr}': {message}")]
    Resolve { addr: String, message: String },
    #[error("cannot connect to {addr}: {message}")]
    Connect { addr: String, message: String },
    #[error("{addr} is unreachable, retrying in {wait_ms} ms (last error: {message})")]
    Backoff {
        addr: String,
        wait_ms: u64,
        message: String,
    },
    #[error("request to {addr} timed out after {ms} ms")]
    Timeout { addr: String, ms: u64 },
    #[error("connection to {addr} lost: {message}")]
    Connection { addr: String, message: String },
    #[error("bad frame from {addr}: {source}")]
    Frame { addr: String, source: FrameError },
    #[error("{addr} answered with an error: {message}")]
    Remote { addr: String, message: String },
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    #[error("cannot open the QUIC endpoint on {addr}: {message}")]
    Bind { addr: SocketAddr, message: String },
    /// The peer speaks another wire protocol: nothing it sends can be read, nor the reverse.
    #[error(
        "peer '{addr}' speaks protocol {theirs}, this aether speaks {ours}: run one aether version on every node (upgrade the rest one node at a time, or go back to theirs)"
    )]
    Protocol { addr: String, theirs: u8, ours: u8 },
    /// A joining node refused the member's certificate: it is not of the cluster the token's CA
    /// pin names.
    #[error("{addr} is not a member of the cluster the token is for: {message}")]
    NotThisCluster { addr: String, message: String },
    /// The TLS handshake of a remote admin connection failed on a certificate: the node refused
    /// the operator's (expired, not signed by its CA), or the identity's CA refused the node's.
    #[error("{addr} refused the handshake: {message}")]
    Refused { addr: String, message: String },
}

impl NetError {
    /// True when the peer could not be reached at all (as opposed to answering badly).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            NetError::Resolve { .. }
                | NetError::Connect { .. }
                | NetError::Backoff { .. }
                | NetError::Connection { .. }
                | NetError::Timeout { .. }
                // Nothing can be said to it until one of the two is upgraded: back off.
                | NetError::Protocol { .. }
        )
    }
}

/// A reply on the wire: the service's answer, or an error the transport or service raised for
/// this one request.
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply<R> {
    Ok(R),
    Err(String),
}

/// What a service knows about the caller.
#[derive(Debug, Clone, Copy)]
pub struct PeerCtx {
    pub remote: SocketAddr,
    /// The caller presented a *node* certificate signed by the cluster CA (an operator
    /// certificate never counts: it is for remote admin only).
    pub authenticated: bool,
}

/// Boxed future returned by a [`Service`].
pub type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A remote operator as its certificate (signed by the cluster CA, checked by the handshake)
/// names it.
#[derive(Debug, Clone)]
pub struct OperatorPeer {
    pub remote: SocketAddr,
    pub name: String,
    pub role: crate::domain::Role,
    /// SHA-256 of the certificate's DER, lower-case hex.
    pub cert_sha256: String,
}

/// Serves remote admin streams (ALPN `aether-admin/1`); implemented above this module and
/// registered with [`Endpoint::serve_admin`]. What is allowed is the service's to decide, per
/// request.
pub trait AdminService: Send + Sync + 'static {
    /// Serve one bidirectional stream opened by `who`, until either side ends it.
    fn serve(self: Arc<Self>, who: OperatorPeer, stream: PeerStream) -> BoxFut<()>;
}

/// One subsystem's requests on the peer endpoint, registered on a [`Router`] under its
/// [`Route`].
pub trait Service: Send + Sync + 'static {
    type Req: DeserializeOwned + Send + 'static;
    type Resp: Serialize + Send + 'static;
    /// Handle one request. An `Err` is sent to the caller as the reply for this request only.
    fn handle(self: Arc<Self>, ctx: PeerCtx, req: Self::Req) -> BoxFut<Result<Self::Resp, String>>;
}

/// One subsystem's streams on the peer endpoint: after the opening request the stream is the
/// service's to read and write (registered with [`Router::add_stream`]).
pub trait StreamService: Send + Sync + 'static {
    type Req: DeserializeOwned + Send + 'static;
    /// Serve one stream opened with `req`. Errors are the service's to report on the stream.
    fn serve(self: Arc<Self>, ctx: PeerCtx, req: Self::Req, stream: PeerStream) -> BoxFut<()>;
}

/// A bidirectional QUIC stream as one byte pipe (`AsyncRead` + `AsyncWrite`), opened with
/// [`Endpoint::open_stream`] or handed to a [`StreamService`]. Shutting down the write side
/// finishes the stream; dropping it resets what is unfinished.
pub struct PeerStream {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
}

impl tokio::io::AsyncRead for PeerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.recv).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for PeerStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        tokio::io::AsyncWrite::poll_write(Pin::new(&mut self.send), cx, buf)
    }
    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        tokio::io::AsyncWrite::poll_flush(Pin::new(&mut self.send), cx)
    }
    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        tokio::io::AsyncWrite::poll_shutdown(Pin::new(&mut self.send), cx)
    }
}

struct PeerSlot {
    conn: tokio::sync::Mutex<Option<quinn::Connection>>,
    /// (consecutive failures, no new attempt before, last error)
    backoff: Mutex<(u32, Instant, String)>,
    last_ok: Mutex<Option<Instant>>,
}

/// Receives one-way messages: unreliable datagrams, and unidirectional streams for messages
/// too large for one datagram. Only authenticated peers can send them.
pub trait Inbox: Send + Sync + 'static {
    type Msg: DeserializeOwned + Send + 'static;
    /// Take one message of `size` bytes on the wire. Called on the connection's task: keep it
    /// short, never block.
    fn deliver(&self, ctx: PeerCtx, msg: Self::Msg, size: usize);
}

/// Counters for status and metrics.
#[derive(Debug, Default)]
pub struct NetStats {
    /// Request/response frames (Raft, admin, joins).
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub refused: AtomicU64,
    pub bad_frames: AtomicU64,
    /// One-way messages (the metrics pipeline), payload bytes.
    pub oneway_bytes_sent: AtomicU64,
    pub oneway_bytes_received: AtomicU64,
    /// One-way messages that could not be sent, or arrived and did not decode.
    pub oneway_failed: AtomicU64,
}

/// This node's QUIC endpoint: server for peers and client towards them.
pub struct Endpoint {
    ep: quinn::Endpoint,
    /// The client side of new outgoing connections; replaced when this node renews its
    /// certificate ([`Endpoint::set_identity`]).
    client: Mutex<quinn::ClientConfig>,
    /// Transport settings, kept to rebuild the TLS configs on renewal.
    net_cfg: NetConfig,
    peers: Mutex<HashMap<String, Arc<PeerSlot>>>,
    max_frame: u64,
    rpc_timeout: Duration,
    backoff_max: Duration,
    pub stats: Arc<NetStats>,
    /// Peers of another protocol version, logged once each.
    pub versions: Arc<Versions>,
    /// Remote admin, once the node registered it.
    admin: std::sync::OnceLock<Arc<dyn AdminService>>,
    /// Refused remote admin connections and requests per IP (see [`limit`]).
    refusals: Mutex<limit::Refusals>,
    /// A fire drill's isolation switch: see [`Endpoint::isolate`].
    isolation: Mutex<Option<Isolation>>,
}

/// While `until` is ahead, this node's peer traffic fails fast both ways, except on the route
/// `spared` (the drill's own, so the drill can watch and heal it).
#[derive(Debug, Clone, Copy)]
struct Isolation {
    until: Instant,
    spared: u8,
}

/// QUIC stream reset code for a stream refused while the node is isolated by a drill.
pub const RESET_ISOLATED: u32 = 0x44;

fn transport(cfg: &NetConfig) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    let idle = cfg.idle_timeout.0;
    t.max_idle_timeout(Some(idle.try_into().expect("idle timeout fits")));
    t.keep_alive_interval(Some(idle / 3));
    // Ingress hops keep one stream per concurrent request open between two nodes.
    t.max_concurrent_bidi_streams(4_096u32.into());
    Arc::new(t)
}

/// The server side of this node's endpoint: its certificate, every ALPN it serves.
fn server_config(tls: &NodeTls, cfg: &NetConfig) -> Result<quinn::ServerConfig, NetError> {
    let server_tls = tls.server_config(&[ALPN_PEER, ALPN_JOIN, ALPN_ADMIN])?;
    let q = quinn::crypto::rustls::QuicServerConfig::try_from(server_tls)
        .map_err(|e| NetError::Tls(TlsError::Rustls(rustls::Error::General(e.to_string()))))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(q));
    server.transport_config(transport(cfg));
    Ok(server)
}

fn client_config(
    rustls_cfg: rustls::ClientConfig,
    cfg: &NetConfig,
) -> Result<quinn::ClientConfig, NetError> {
    let q = quinn::crypto::rustls::QuicClientConfig::try_from(rustls_cfg)
        .map_err(|e| NetError::Tls(TlsError::Rustls(rustls::Error::General(e.to_string()))))?;
    let mut c = quinn::ClientConfig::new(Arc::new(q));
    c.transport_config(transport(cfg));
    Ok(c)
}

async fn resolve(addr: &str) -> Result<SocketAddr, NetError> {
    let mut it = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| NetError::Resolve {
            addr: addr.into(),
            message: e.to_string(),
        })?;
    it.next().ok_or_else(|| NetError::Resolve {
        addr: addr.into(),
        message: "no address found".into(),
    })
}

fn bad_oneway(stats: &NetStats, versions: &Versions, remote: SocketAddr, e: &FrameError) {
    stats.oneway_failed.fetch_add(1, Ordering::Relaxed);
    if let FrameError::Version { got, .. } = e {
        versions.note(&remote.to_string(), *got, stats);
        return;
    }
    stats.bad_frames.fetch_add(1, Ordering::Relaxed);
    tracing::warn!("bad one-way message from {remote}: {e}; dropped");
}

/// The start of the error a peer of another protocol gets for each request, in its own
/// protocol version (a [`Reply::Err`] reads alike in every version); [`refused_by`] reads it.
const REFUSAL: &str = "protocol refused: this peer speaks protocol ";

/// The reply frame that refuses a request of protocol `theirs`, encoded in `theirs`.
fn refusal(theirs: u8) -> Vec<u8> {
    let message = format!(
        "{REFUSAL}{}, the caller speaks {theirs}: run one aether version on every node (upgrade the rest one node at a time, or go back to theirs)",
        frame::PROTOCOL_VERSION
    );
    frame::encode_versioned(theirs, &Reply::<()>::Err(message)).expect("a string always encodes")
}

/// The protocol version a peer's refusal names.
fn refused_by(message: &str) -> Option<u8> {
    message
        .strip_prefix(REFUSAL)?
        .split(',')
        .next()?
        .parse()
        .ok()
}

/// Peers of another protocol version already logged: each is said once (at warn), then its
/// frames are only counted (`refused`), so a peer left on the old version does not flood the log.
#[derive(Debug, Default)]
pub struct Versions(Mutex<std::collections::HashSet<(String, u8)>>);

impl Versions {
    /// A frame of protocol `theirs` came from (or a refusal from) `peer`.
    fn note(&self, peer: &str, theirs: u8, stats: &NetStats) {
        stats.refused.fetch_add(1, Ordering::Relaxed);
        let first = self
            .0
            .lock()
            .expect("versions lock")
            .insert((peer.to_string(), theirs));
        if first {
            tracing::warn!(
                "peer '{peer}' speaks protocol {theirs}, this aether speaks {}: no request goes either way; run one aether version on every node (upgrade the rest one node at a time, or go back to theirs); said once per peer",
                frame::PROTOCOL_VERSION
            );
        }
    }

    /// Whether `peer` was seen speaking another protocol (tests).
    pub fn seen(&self, peer: &str) -> bool {
        self.0
            .lock()
            .expect("versions lock")
            .iter()
            .any(|(p, _)| p == peer)
    }
}

/// Send one request on a new stream of `conn` and read the reply.
async fn exchange<Req: Serialize, Resp: DeserializeOwned>(
    conn: &quinn::Connection,
    addr: &str,
    req: &Req,
    max_frame: u64,
    stats: &NetStats,
) -> Result<Resp, NetError> {
    let lost = |e: &dyn std::fmt::Display| NetError::Connection {
        addr: addr.into(),
        message: e.to_string(),
    };
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| lost(&e))?;
    let buf = frame::encode(req).map_err(|source| NetError::Frame {
        addr: addr.into(),
        source,
    })?;
    stats
        .bytes_sent
        .fetch_add(buf.len() as u64, Ordering::Relaxed);
    send.write_all(&buf).await.map_err(|e| lost(&e))?;
    let _ = send.finish();
    let (reply, size): (Reply<Resp>, u64) = frame::read_frame_sized(&mut recv, max_frame)
        .await
        .map_err(|source| match source {
            // A connection the peer closed says why (e.g. a refused certificate).
            FrameError::Io(e) => match conn.close_reason() {
                Some(why) => lost(&why),
                None => lost(&e),
            },
            FrameError::Closed => lost(
                &conn
                    .close_reason()
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "stream closed".into()),
            ),
            FrameError::Version { got, want } => NetError::Protocol {
                addr: addr.into(),
                theirs: got,
                ours: want,
            },
            source => NetError::Frame {
                addr: addr.into(),
                source,
            },
        })?;
    stats.bytes_received.fetch_add(size, Ordering::Relaxed);
    match reply {
        Reply::Ok(r) => Ok(r),
        Reply::Err(message) => Err(match refused_by(&message) {
            Some(theirs) => NetError::Protocol {
                addr: addr.into(),
                theirs,
                ours: frame::PROTOCOL_VERSION,
            },
            None => NetError::Remote {
                addr: addr.into(),
                message,
            },
        }),
    }
}

impl Endpoint {
    /// Bind the UDP port and build the client side. Nothing is served until [`Endpoint::serve`].
    pub fn bind(
        listen: SocketAddr,
        tls: &NodeTls,
        reset_secret: &[u8; 32],
        cfg: &NetConfig,
    ) -> Result<Arc<Endpoint>, NetError> {
        let server = server_config(tls, cfg)?;
        let reset_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, reset_secret);
        let endpoint_cfg = quinn::EndpointConfig::new(Arc::new(reset_key));
        let bind_err = |e: std::io::Error| NetError::Bind {
            addr: listen,
            message: e.to_string(),
        };
        let socket = std::net::UdpSocket::bind(listen).map_err(bind_err)?;
        let runtime = quinn::default_runtime()
            .ok_or_else(|| bind_err(std::io::Error::other("no async runtime")))?;
        let ep =
            quinn::Endpoint::new(endpoint_cfg, Some(server), socket, runtime).map_err(bind_err)?;
        Ok(Arc::new(Endpoint {
            ep,
            client: Mutex::new(client_config(tls.client_config(ALPN_PEER)?, cfg)?),
            net_cfg: cfg.clone(),
            peers: Mutex::new(HashMap::new()),
            max_frame: cfg.max_frame_bytes,
            rpc_timeout: cfg.rpc_timeout.0,
            backoff_max: cfg.reconnect_backoff_max.0,
            stats: Arc::default(),
            versions: Arc::default(),
            admin: std::sync::OnceLock::new(),
            refusals: Mutex::default(),
            isolation: Mutex::new(None),
        }))
    }

    /// Present `tls` from now on: to peers connecting to this node and on this node's new
    /// outgoing connections (a renewed certificate). Connections already open keep the
    /// identity they were made with until they close.
    pub fn set_identity(&self, tls: &NodeTls) -> Result<(), NetError> {
        let client = client_config(tls.client_config(ALPN_PEER)?, &self.net_cfg)?;
        self.ep
            .set_server_config(Some(server_config(tls, &self.net_cfg)?));
        *self.client.lock().expect("client config lock") = client;
        Ok(())
    }

    /// Cut this node off from its peers until `until` (a fire drill): requests and streams to
    /// peers fail at once, requests and streams from peers are reset, one-way messages are
    /// dropped both ways; only route `spared` still passes. It ends by itself at `until`, so a
    /// node is never left isolated by a drill that did not finish; [`Endpoint::heal`] ends it
    /// sooner. A later call replaces the deadline.
    pub fn isolate(&self, until: Instant, spared: Route) {
        *self.isolation.lock().expect("isolation lock") = Some(Isolation {
            until,
            spared: spared.id,
        });
        tracing::warn!(
            "fire drill: isolated from every peer for {} ms",
            until.saturating_duration_since(Instant::now()).as_millis()
        );
    }

    /// End an isolation now (nothing when none is on).
    pub fn heal(&self) {
        if self
            .isolation
            .lock()
            .expect("isolation lock")
            .take()
            .is_some_and(|i| i.until > Instant::now())
        {
            tracing::warn!("fire drill: isolation healed");
        }
    }

    /// How long this node stays isolated (`None`: it is not).
    pub fn isolated_for(&self) -> Option<Duration> {
        let now = Instant::now();
        self.isolation
            .lock()
            .expect("isolation lock")
            .filter(|i| i.until > now)
            .map(|i| i.until - now)
    }

    /// Whether traffic on route `id` is cut off now.
    fn cut(&self, id: Option<u8>) -> bool {
        let now = Instant::now();
        self.isolation
            .lock()
            .expect("isolation lock")
            .is_some_and(|i| i.until > now && id != Some(i.spared))
    }

    fn isolated_error(&self, addr: &str) -> NetError {
        NetError::Connection {
            addr: addr.into(),
            message: format!(
                "this node is isolated by a fire drill for {} ms more",
                self.isolated_for().unwrap_or_default().as_millis()
            ),
        }
    }

    /// Serve remote admin connections with `svc` (once; later calls are ignored). Until then
    /// they are refused.
    pub fn serve_admin(&self, svc: Arc<dyn AdminService>) {
        let _ = self.admin.set(svc);
    }

    /// A remote admin connection or request from `ip` was refused: counted against its IP
    /// (after [`limit::REFUSALS_BURST`] in a row, its new connections are refused for
    /// [`limit::REFUSALS_WINDOW`]).
    pub fn note_refused(&self, ip: std::net::IpAddr) {
        let shut = self
            .refusals
            .lock()
            .expect("refusals lock")
            .refused(ip, Instant::now());
        if shut {
            tracing::warn!(
                "{ip}: {} refused remote admin attempts in a row; its new remote admin connections are refused for {} s",
                limit::REFUSALS_BURST,
                limit::REFUSALS_WINDOW.as_secs()
            );
        }
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.ep.local_addr().expect("bound endpoint has an address")
    }

    /// Largest frame accepted.
    pub fn max_frame(&self) -> u64 {
        self.max_frame
    }

    fn slot(&self, addr: &str) -> Arc<PeerSlot> {
        let mut peers = self.peers.lock().expect("peers lock");
        peers
            .entry(addr.to_string())
            .or_insert_with(|| {
                Arc::new(PeerSlot {
                    conn: tokio::sync::Mutex::new(None),
                    backoff: Mutex::new((0, Instant::now(), String::new())),
                    last_ok: Mutex::new(None),
                })
            })
            .clone()
    }

    /// When `addr` last answered a request of ours.
    pub fn last_contact(&self, addr: &str) -> Option<Instant> {
        let slot = self.peers.lock().expect("peers lock").get(addr).cloned()?;
        *slot.last_ok.lock().expect("slot lock")
    }

    async fn connection(&self, addr: &str, slot: &PeerSlot) -> Result<quinn::Connection, NetError> {
        let mut guard = slot.conn.lock().await;
        if let Some(c) = guard.as_ref().filter(|c| c.close_reason().is_none()) {
            return Ok(c.clone());
        }
        {
            let b = slot.backoff.lock().expect("backoff lock");
            let now = Instant::now();
            if b.0 > 0 && b.1 > now {
                return Err(NetError::Backoff {
                    addr: addr.into(),
                    wait_ms: (b.1 - now).as_millis() as u64,
                    message: b.2.clone(),
                });
            }
        }
        let result = async {
            let sa = resolve(addr).await?;
            let connecting = self
                .ep
                .connect_with(
                    self.client.lock().expect("client config lock").clone(),
                    sa,
                    tls::NODE_SAN,
                )
                .map_err(|e| NetError::Connect {
                    addr: addr.into(),
                    message: e.to_string(),
                })?;
            connecting.await.map_err(|e| NetError::Connect {
                addr: addr.into(),
                message: e.to_string(),
            })
        }
        .await;
        let mut b = slot.backoff.lock().expect("backoff lock");
        match result {
            Ok(c) => {
                *b = (0, Instant::now(), String::new());
                *guard = Some(c.clone());
                Ok(c)
            }
            Err(e) => {
                let failures = b.0.saturating_add(1);
                let wait = Duration::from_millis(50u64.saturating_mul(1 << failures.min(10)))
                    .min(self.backoff_max);
                *b = (failures, Instant::now() + wait, e.to_string());
                Err(e)
            }
        }
    }

    /// `f` on the kept-open connection to `addr`. A connection that died quietly (`f` fails
    /// with [`NetError::Connection`]) is dropped and `f` runs once more on a new one.
    async fn on_connection<T, F, Fut>(
        &self,
        addr: &str,
        slot: &PeerSlot,
        f: F,
    ) -> Result<T, NetError>
    where
        F: Fn(quinn::Connection) -> Fut,
        Fut: Future<Output = Result<T, NetError>>,
    {
        let conn = self.connection(addr, slot).await?;
        match f(conn.clone()).await {
            Err(NetError::Connection { .. }) => {
                let mut g = slot.conn.lock().await;
                if g.as_ref()
                    .is_some_and(|c| c.stable_id() == conn.stable_id())
                {
                    *g = None;
                }
                drop(g);
                f(self.connection(addr, slot).await?).await
            }
            other => other,
        }
    }

    /// One request/response on `route` to the peer at `addr` (`host:port`) within `timeout`
    /// (default `net.rpc_timeout`). Reuses the open connection; reconnects once if it was lost.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        route: Route,
        req: &Req,
        timeout: Option<Duration>,
    ) -> Result<Resp, NetError> {
        if self.cut(Some(route.id)) {
            return Err(self.isolated_error(addr));
        }
        let req = &(route.id, req);
        let timeout = timeout.unwrap_or(self.rpc_timeout);
        let slot = self.slot(addr);
        let attempt = self.on_connection(addr, &slot, |conn| async move {
            exchange(&conn, addr, req, self.max_frame, &self.stats).await
        });
        let r = tokio::time::timeout(timeout, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(NetError::Timeout {
                    addr: addr.into(),
                    ms: timeout.as_millis() as u64,
                })
            });
        match &r {
            Ok(_) => *slot.last_ok.lock().expect("slot lock") = Some(Instant::now()),
            Err(NetError::Protocol { theirs, .. }) => {
                self.versions.note(addr, *theirs, &self.stats)
            }
            // The peer may have restarted behind a connection that still looks open: dial
            // afresh next time rather than wait for the idle timeout.
            Err(NetError::Timeout { .. }) => *slot.conn.lock().await = None,
            Err(_) => {}
        }
        r
    }

    /// Open a stream on `route` to the peer at `addr` with the opening request `req`; the
    /// stream is then the caller's and the route's service's. Reuses the open connection;
    /// dials again once when it was lost. Nothing of the stream's later bytes is sent yet when
    /// this fails, so the caller may try elsewhere.
    pub async fn open_stream<Req: Serialize>(
        &self,
        addr: &str,
        route: Route,
        req: &Req,
    ) -> Result<PeerStream, NetError> {
        if self.cut(Some(route.id)) {
            return Err(self.isolated_error(addr));
        }
        let buf = frame::encode(&(route.id, req)).map_err(|source| NetError::Frame {
            addr: addr.into(),
            source,
        })?;
        let slot = self.slot(addr);
        let lost = |e: &dyn std::fmt::Display| NetError::Connection {
            addr: addr.into(),
            message: e.to_string(),
        };
        let bytes = buf.as_slice();
        let attempt = self.on_connection(addr, &slot, |conn| async move {
            let (mut send, recv) = conn.open_bi().await.map_err(|e| lost(&e))?;
            send.write_all(bytes).await.map_err(|e| lost(&e))?;
            Ok(PeerStream { send, recv })
        });
        let r = tokio::time::timeout(self.rpc_timeout, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(NetError::Timeout {
                    addr: addr.into(),
                    ms: self.rpc_timeout.as_millis() as u64,
                })
            });
        if r.is_ok() {
            self.stats
                .bytes_sent
                .fetch_add(buf.len() as u64, Ordering::Relaxed);
        }
        r
    }

    /// Send `msg` to the peer at `addr` without waiting for an answer: in one unreliable
    /// datagram when it fits, else on a unidirectional stream (reliable, but not awaited).
    /// Delivery is not confirmed; a lost datagram is simply lost.
    pub async fn send_oneway<M: Serialize>(&self, addr: &str, msg: &M) -> Result<(), NetError> {
        let body = frame::encode_body(msg).map_err(|source| NetError::Frame {
            addr: addr.into(),
            source,
        })?;
        self.send_oneway_body(addr, &body).await
    }

    /// [`Endpoint::send_oneway`] of a body already encoded with [`frame::encode_body`] (to send
    /// one message to many peers).
    pub async fn send_oneway_body(&self, addr: &str, body: &[u8]) -> Result<(), NetError> {
        let r = self.send_body(addr, body).await;
        if r.is_err() {
            self.stats.oneway_failed.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    async fn send_body(&self, addr: &str, body: &[u8]) -> Result<(), NetError> {
        if self.cut(None) {
            return Err(self.isolated_error(addr));
        }
        let slot = self.slot(addr);
        let conn = tokio::time::timeout(self.rpc_timeout, self.connection(addr, &slot))
            .await
            .map_err(|_| NetError::Timeout {
                addr: addr.into(),
                ms: self.rpc_timeout.as_millis() as u64,
            })??;
        let lost = |e: &dyn std::fmt::Display| NetError::Connection {
            addr: addr.into(),
            message: e.to_string(),
        };
        if conn
            .max_datagram_size()
            .is_some_and(|max| body.len() <= max)
        {
            match conn.send_datagram(bytes::Bytes::copy_from_slice(body)) {
                Ok(()) => {
                    self.stats
                        .oneway_bytes_sent
                        .fetch_add(body.len() as u64, Ordering::Relaxed);
                    return Ok(());
                }
                Err(quinn::SendDatagramError::ConnectionLost(e)) => {
                    *slot.conn.lock().await = None;
                    return Err(lost(&e));
                }
                // Too large after all, or not supported: fall back to a stream.
                Err(_) => {}
            }
        }
        let len = u32::try_from(body.len()).map_err(|_| NetError::Frame {
            addr: addr.into(),
            source: FrameError::TooLarge {
                len: body.len() as u64,
                max: u32::MAX as u64,
            },
        })?;
        let mut send = match conn.open_uni().await {
            Ok(s) => s,
            Err(e) => {
                *slot.conn.lock().await = None;
                return Err(lost(&e));
            }
        };
        send.write_all(&len.to_be_bytes())
            .await
            .map_err(|e| lost(&e))?;
        send.write_all(body).await.map_err(|e| lost(&e))?;
        let _ = send.finish();
        self.stats
            .oneway_bytes_sent
            .fetch_add(body.len() as u64 + 4, Ordering::Relaxed);
        Ok(())
    }

    /// Accept connections until `shutdown`: answer each bidirectional stream through `router`
    /// and hand one-way messages (datagrams, unidirectional streams) to `inbox`. In-flight
    /// streams are tracked by `tracker` so shutdown can wait for them.
    pub fn serve<I: Inbox>(
        self: &Arc<Self>,
        router: Arc<Router>,
        inbox: Arc<I>,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let incoming = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    i = me.ep.accept() => match i { Some(i) => i, None => break },
                };
                let (router, inbox, me2, tracker2, shutdown2) = (
                    router.clone(),
                    inbox.clone(),
                    me.clone(),
                    tracker.clone(),
                    shutdown.clone(),
                );
                tracker.spawn(async move {
                    if let Err(e) = me2
                        .connection_loop(incoming, router, inbox, tracker2, shutdown2)
                        .await
                    {
                        tracing::debug!("peer connection ended: {e}");
                    }
                });
            }
            tracing::info!("quic endpoint stopped accepting connections");
        })
    }

    async fn connection_loop<I: Inbox>(
        self: Arc<Self>,
        incoming: quinn::Incoming,
        router: Arc<Router>,
        inbox: Arc<I>,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<(), String> {
        let remote = incoming.remote_address();
        let conn = match incoming.await {
            Ok(c) => c,
            Err(e) => {
                // A certificate refused in the handshake counts against the IP's remote admin.
                self.note_refused(remote.ip());
                return Err(format!("handshake with {remote} failed: {e}"));
            }
        };
        let alpn = conn
            .handshake_data()
            .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|h| h.protocol)
            .unwrap_or_default();
        let cert = conn
            .peer_identity()
            .and_then(|p| {
                p.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                    .ok()
            })
            .and_then(|certs| certs.first().cloned());
        // The handshake checked the chain; what the certificate is decides what it may speak.
        let kind = cert.as_ref().map(|c| tls::cert_kind(c));
        let authenticated = matches!(kind, Some(tls::CertKind::Node { .. }));
        let refuse = |why: &str, reason: &str| {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("refused a connection from {remote}: {why}");
            conn.close(CLOSE_REFUSED.into(), reason.as_bytes());
        };
        if alpn == ALPN_PEER && !authenticated {
            match kind {
                None => refuse("no client certificate", REFUSED_REASON),
                Some(k) => refuse(
                    &format!("a certificate that is not a member's ({k:?})"),
                    NOT_A_MEMBER_REASON,
                ),
            }
            return Ok(());
        }
        if alpn == ALPN_ADMIN {
            let shut = self
                .refusals
                .lock()
                .expect("refusals lock")
                .shut_out(remote.ip(), Instant::now());
            if let Some(left) = shut {
                let reason = format!(
                    "refused: too many refused attempts from {}; retry in {} s",
                    remote.ip(),
                    left.as_secs().max(1)
                );
                refuse("shut out after too many refusals", &reason);
                return Ok(());
            }
            let (Some(tls::CertKind::Operator { name, role }), Some(cert), Some(svc)) =
                (kind.clone(), cert, self.admin.get().cloned())
            else {
                self.note_refused(remote.ip());
                refuse(
                    &format!("remote admin without an operator certificate ({kind:?})"),
                    NOT_AN_OPERATOR_REASON,
                );
                return Ok(());
            };
            let who = OperatorPeer {
                remote,
                name,
                role,
                cert_sha256: tls::sha256_hex(&cert),
            };
            loop {
                let (send, recv) = tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    s = conn.accept_bi() => s.map_err(|e| format!("{remote}: {e}"))?,
                };
                tracker.spawn(svc.clone().serve(who.clone(), PeerStream { send, recv }));
            }
        }
        let ctx = PeerCtx {
            remote,
            authenticated,
        };
        // One-way messages are for members only; a joining node has nothing to send one-way.
        let oneway = alpn == ALPN_PEER;
        loop {
            let (mut send, mut recv) = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                s = conn.accept_bi() => s.map_err(|e| format!("{remote}: {e}"))?,
                d = conn.read_datagram(), if oneway => {
                    let d = d.map_err(|e| format!("{remote}: {e}"))?;
                    if self.cut(None) {
                        continue;
                    }
                    self.stats.oneway_bytes_received.fetch_add(d.len() as u64, Ordering::Relaxed);
                    match frame::decode_body::<I::Msg>(&d) {
                        Ok(msg) => inbox.deliver(ctx, msg, d.len()),
                        Err(e) => bad_oneway(&self.stats, &self.versions, remote, &e),
                    }
                    continue;
                }
                u = conn.accept_uni(), if oneway => {
                    let mut recv = u.map_err(|e| format!("{remote}: {e}"))?;
                    if self.cut(None) {
                        let _ = recv.stop(RESET_ISOLATED.into());
                        continue;
                    }
                    let (inbox, stats, max) = (inbox.clone(), self.stats.clone(), self.max_frame);
                    let versions = self.versions.clone();
                    tracker.spawn(async move {
                        match frame::read_frame_sized::<_, I::Msg>(&mut recv, max).await {
                            Ok((msg, size)) => {
                                stats.oneway_bytes_received.fetch_add(size, Ordering::Relaxed);
                                inbox.deliver(ctx, msg, size as usize);
                            }
                            Err(FrameError::Closed) => {}
                            Err(e) => bad_oneway(&stats, &versions, remote, &e),
                        }
                    });
                    continue;
                }
            };
            let (router, stats, max) = (router.clone(), self.stats.clone(), self.max_frame);
            let versions = self.versions.clone();
            let me = self.clone();
            tracker.spawn(async move {
                let answer = match frame::read_frame_body(&mut recv, max).await {
                    // Refused as an unreachable peer would be: the caller sees the stream die.
                    Ok((body, _))
                        if me.cut(frame::payload(&body).ok().and_then(|p| p.first().copied())) =>
                    {
                        let _ = send.reset(RESET_ISOLATED.into());
                        let _ = recv.stop(RESET_ISOLATED.into());
                        return;
                    }
                    Ok((body, size)) => {
                        stats.bytes_received.fetch_add(size, Ordering::Relaxed);
                        frame::payload(&body).and_then(|p| router.dispatch(ctx, p))
                    }
                    Err(FrameError::Closed) => return,
                    Err(e) => Err(e),
                };
                let buf = match answer {
                    Ok(router::Dispatched::Reply(reply)) => reply.await,
                    Ok(router::Dispatched::Stream(serve)) => {
                        return serve(PeerStream { send, recv }).await;
                    }
                    // A peer of another version is told so in its own version, and logged once.
                    Err(FrameError::Version { got, .. }) => {
                        versions.note(&remote.to_string(), got, &stats);
                        refusal(got)
                    }
                    Err(e) => {
                        stats.bad_frames.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!("bad frame from {remote}: {e}; closing that stream");
                        router::error_reply(format!("bad frame: {e}"))
                    }
                };
                stats
                    .bytes_sent
                    .fetch_add(buf.len() as u64, Ordering::Relaxed);
                let _ = send.write_all(&buf).await;
                let _ = send.finish();
                let _ = send.stopped().await;
            });
        }
    }

    /// Stop accepting and close every connection, waiting up to `grace` for peers to learn of it.
    pub async fn close(&self, grace: Duration) {
        self.ep.close(0u32.into(), b"node shutting down");
        let _ = tokio::time::timeout(grace, self.ep.wait_idle()).await;
    }
}

/// A remote admin connection's one stream, as a byte pipe (`AsyncRead` + `AsyncWrite`); it
/// keeps its connection and client endpoint open while it lives.
pub struct AdminStream {
    stream: PeerStream,
    _conn: quinn::Connection,
    _ep: quinn::Endpoint,
}

/// A connection the node closed with [`CLOSE_REFUSED`] reads and writes as an error of kind
/// `PermissionDenied` carrying the node's reason, so the client tells a refusal from a lost node
/// by its kind.
fn refused_io(e: std::io::Error) -> std::io::Error {
    let lost = e.get_ref().and_then(|i| {
        if let Some(quinn::ReadError::ConnectionLost(c)) = i.downcast_ref::<quinn::ReadError>() {
            Some(c)
        } else if let Some(quinn::WriteError::ConnectionLost(c)) =
            i.downcast_ref::<quinn::WriteError>()
        {
            Some(c)
        } else {
            None
        }
    });
    let denied = |m: String| std::io::Error::new(std::io::ErrorKind::PermissionDenied, m);
    match lost {
        Some(quinn::ConnectionError::ApplicationClosed(c))
            if c.error_code == quinn::VarInt::from_u32(CLOSE_REFUSED) =>
        {
            denied(String::from_utf8_lossy(&c.reason).into_owned())
        }
        // In TLS 1.3 the server checks the client's certificate after the client is done with
        // the handshake: its refusal arrives as the connection's close.
        Some(quinn::ConnectionError::ConnectionClosed(c)) => match tls_alert(c.error_code.into()) {
            Some(alert) => denied(format!(
                "the node refused this certificate in the TLS handshake: {alert}"
            )),
            None => e,
        },
        _ => e,
    }
}

/// What the TLS alert in a QUIC crypto error code (0x100 + alert) says, if it is one.
fn tls_alert(code: u64) -> Option<String> {
    let alert = code.checked_sub(0x100).filter(|a| *a < 0x100)?;
    let what = match alert {
        42 => "bad certificate",
        44 => "certificate revoked",
        45 => "certificate expired",
        46 => "certificate unknown",
        48 => "unknown CA (signed by another cluster's CA?)",
        116 => "certificate required",
        _ => "handshake failure",
    };
    Some(format!("{what} (TLS alert {alert})"))
}

impl tokio::io::AsyncRead for AdminStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream)
            .poll_read(cx, buf)
            .map_err(refused_io)
    }
}

impl tokio::io::AsyncWrite for AdminStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream)
            .poll_write(cx, buf)
            .map_err(refused_io)
    }
    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// `addr` resolved, and a client endpoint of its own on an ephemeral port of the same family
/// (for a caller that is not a member: an operator, a joining node).
async fn client_endpoint(addr: &str) -> Result<(SocketAddr, quinn::Endpoint), NetError> {
    let sa = resolve(addr).await?;
    let bind: SocketAddr = if sa.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
        .parse()
        .expect("literal");
    let ep = quinn::Endpoint::client(bind).map_err(|e| NetError::Bind {
        addr: bind,
        message: e.to_string(),
    })?;
    Ok((sa, ep))
}

/// Dial the node at `addr` as the remote operator `identity` (ALPN `aether-admin/1`) within
/// `timeout` and open the stream the admin protocol runs on. The node's certificate must be
/// signed by the identity's CA. A node that refuses the certificate says why at the first read.
pub async fn admin_connect(
    addr: &str,
    identity: &tls::OperatorIdentity,
    cfg: &NetConfig,
    timeout: Duration,
) -> Result<AdminStream, NetError> {
    let (sa, ep) = client_endpoint(addr).await?;
    let client = client_config(identity.client_config(ALPN_ADMIN)?, cfg)?;
    let connect = |e: &dyn std::fmt::Display| NetError::Connect {
        addr: addr.into(),
        message: e.to_string(),
    };
    // A handshake that fails on a certificate (a TLS alert either way) is a refusal.
    let handshake = |e: quinn::ConnectionError| {
        // Refused right after the handshake (the node read the certificate's kind, or shut
        // this IP out): the close can win the race with opening the stream.
        if let quinn::ConnectionError::ApplicationClosed(c) = &e
            && c.error_code == quinn::VarInt::from_u32(CLOSE_REFUSED)
        {
            return NetError::Refused {
                addr: addr.into(),
                message: String::from_utf8_lossy(&c.reason).into_owned(),
            };
        }
        let code = match &e {
            quinn::ConnectionError::ConnectionClosed(c) => Some(u64::from(c.error_code)),
            quinn::ConnectionError::TransportError(t) => Some(u64::from(t.code)),
            _ => None,
        };
        match code.and_then(tls_alert) {
            Some(alert) => NetError::Refused {
                addr: addr.into(),
                message: alert,
            },
            None => connect(&e),
        }
    };
    tokio::time::timeout(timeout, async {
        let conn = ep
            .connect_with(client, sa, tls::NODE_SAN)
            .map_err(|e| connect(&e))?
            .await
            .map_err(handshake)?;
        let (send, recv) = conn.open_bi().await.map_err(handshake)?;
        Ok(AdminStream {
            stream: PeerStream { send, recv },
            _conn: conn,
            _ep: ep.clone(),
        })
    })
    .await
    .unwrap_or_else(|_| {
        Err(NetError::Timeout {
            addr: addr.into(),
            ms: timeout.as_millis() as u64,
        })
    })
}

/// One request from a node that has no certificate yet to the member at `addr`, checking that
/// the member's CA matches `ca_sha256` before anything is sent.
pub async fn join_call<Req: Serialize, Resp: DeserializeOwned>(
    addr: &str,
    ca_sha256: &str,
    route: Route,
    req: &Req,
    cfg: &NetConfig,
    timeout: Duration,
) -> Result<Resp, NetError> {
    let (sa, ep) = client_endpoint(addr).await?;
    let (tls_cfg, refused) = tls::join_client_config(ca_sha256, ALPN_JOIN)?;
    let client = client_config(tls_cfg, cfg)?;
    let r = tokio::time::timeout(timeout, async {
        let conn = ep
            .connect_with(client, sa, tls::NODE_SAN)
            .map_err(|e| NetError::Connect {
                addr: addr.into(),
                message: e.to_string(),
            })?
            .await
            .map_err(|e| NetError::Connect {
                addr: addr.into(),
                message: e.to_string(),
            })?;
        let req = &(route.id, req);
        let r = exchange(&conn, addr, req, cfg.max_frame_bytes, &NetStats::default()).await;
        conn.close(0u32.into(), b"done");
        r
    })
    .await
    .unwrap_or_else(|_| {
        Err(NetError::Timeout {
            addr: addr.into(),
            ms: timeout.as_millis() as u64,
        })
    });
    ep.wait_idle().await;
    match (r, refused.get()) {
        (Err(_), Some(why)) => Err(NetError::NotThisCluster {
            addr: addr.into(),
            message: why.clone(),
        }),
        (r, _) => r,
    }
}

/// Test and diagnostics helper: write raw bytes on a new stream over an authenticated
/// connection and return what comes back (used to check that bad frames are refused).
pub async fn raw_exchange(ep: &Endpoint, addr: &str, bytes: &[u8]) -> Result<Vec<u8>, NetError> {
    let slot = ep.slot(addr);
    let conn = ep.connection(addr, &slot).await?;
    let lost = |e: &dyn std::fmt::Display| NetError::Connection {
        addr: addr.into(),
        message: e.to_string(),
    };
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| lost(&e))?;
    send.write_all(bytes).await.map_err(|e| lost(&e))?;
    let _ = send.finish();
    recv.read_to_end(ep.max_frame as usize)
        .await
        .map_err(|e| lost(&e))
}

/// Test helper: a client with no certificate that speaks the member ALPN. Returns what the first
/// read after sending `bytes` gives.
pub async fn unauthenticated_probe(
    addr: &str,
    ca: &rustls::pki_types::CertificateDer<'static>,
    bytes: &[u8],
) -> Result<Vec<u8>, String> {
    unauthenticated_probe_alpn(addr, ca, ALPN_PEER, bytes).await
}

/// [`unauthenticated_probe`] speaking `alpn` (e.g. [`ALPN_ADMIN`]).
pub async fn unauthenticated_probe_alpn(
    addr: &str,
    ca: &rustls::pki_types::CertificateDer<'static>,
    alpn: &[u8],
    bytes: &[u8],
) -> Result<Vec<u8>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).map_err(|e| e.to_string())?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let client = client_config(cfg, &NetConfig::default()).map_err(|e| e.to_string())?;
    let sa = resolve(addr).await.map_err(|e| e.to_string())?;
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().expect("literal"))
        .map_err(|e| e.to_string())?;
    let conn = ep
        .connect_with(client, sa, tls::NODE_SAN)
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    send.write_all(bytes).await.map_err(|e| e.to_string())?;
    let _ = send.finish();
    let r = match recv.read_to_end(1 << 20).await {
        Ok(b) => Ok(b),
        // The read error alone may not carry the peer's reason; the connection's does.
        Err(e) => Err(match conn.closed().await {
            quinn::ConnectionError::ApplicationClosed(c) => {
                format!("{e}: {}", String::from_utf8_lossy(&c.reason))
            }
            other => format!("{e}: {other}"),
        }),
    };
    ep.close(0u32.into(), b"");
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_of_another_version_is_refused_in_its_own_version() {
        let old = frame::PROTOCOL_VERSION - 1;
        let buf = refusal(old);
        assert_eq!(
            buf[4], old,
            "the refusal is written in the caller's version"
        );
        let reply: Reply<()> = postcard::from_bytes(&buf[5..]).unwrap();
        let Reply::Err(m) = reply else {
            panic!("a refusal is an error reply")
        };
        assert!(
            m.starts_with(&format!(
                "protocol refused: this peer speaks protocol {}, the caller speaks {old}: run one aether version",
                frame::PROTOCOL_VERSION
            )),
            "{m}"
        );
        assert_eq!(refused_by(&m), Some(frame::PROTOCOL_VERSION));
        assert_eq!(refused_by("bad frame: no route 9"), None);
        let e = NetError::Protocol {
            addr: "10.0.0.2:7420".into(),
            theirs: 6,
            ours: 5,
        };
        assert!(
            e.is_unreachable(),
            "raft backs off a peer it cannot speak to"
        );
        assert!(e.to_string().starts_with(
            "peer '10.0.0.2:7420' speaks protocol 6, this aether speaks 5: run one aether version on every node (upgrade the rest one node at a time"
        ));
        // Said once per peer and version.
        let (versions, stats) = (Versions::default(), NetStats::default());
        versions.note("10.0.0.2:7420", 6, &stats);
        versions.note("10.0.0.2:7420", 6, &stats);
        assert!(versions.seen("10.0.0.2:7420") && !versions.seen("10.0.0.3:7420"));
        assert_eq!(versions.0.lock().unwrap().len(), 1);
        assert_eq!(stats.refused.load(Ordering::Relaxed), 2);
    }

    /// Two endpoints of one cluster on 127.0.0.1, each serving pings (route 5) and a copy of
    /// them on route 9 (the one an isolation spares here).
    async fn pair() -> (Arc<Endpoint>, Arc<Endpoint>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let ca = tls::create_ca("c-test").unwrap();
        let mut eps = Vec::new();
        for name in ["a", "b"] {
            let (cert, key) = tls::issue_node_cert(
                &ca,
                name,
                (crate::domain::now_millis() / 1000) as i64,
                3_600,
            )
            .unwrap();
            let node = NodeTls::save(&dir.path().join(name), &ca.cert_pem, &cert, &key).unwrap();
            let ep = Endpoint::bind(
                "127.0.0.1:0".parse().unwrap(),
                &node,
                &[7; 32],
                &NetConfig::default(),
            )
            .unwrap();
            let router = Router::new()
                .add(ping::ROUTE, Arc::new(ping::Pinger))
                .add(SPARED, Arc::new(ping::Pinger));
            ep.serve(
                Arc::new(router),
                Arc::new(Nobody),
                CancellationToken::new(),
                TaskTracker::new(),
            );
            eps.push(ep);
        }
        let b = eps.pop().unwrap();
        (eps.pop().unwrap(), b, dir)
    }

    const SPARED: Route = Route {
        id: 9,
        name: "spared",
        open: false,
    };

    struct Nobody;

    impl Inbox for Nobody {
        type Msg = ();
        fn deliver(&self, _: PeerCtx, _: (), _: usize) {}
    }

    async fn ask(from: &Endpoint, to: &Endpoint, route: Route) -> Result<ping::Pong, NetError> {
        let addr = to.local_addr().to_string();
        let req = ping::Ping { sent_us: 0 };
        from.call(&addr, route, &req, Some(Duration::from_secs(5)))
            .await
    }

    #[tokio::test]
    async fn an_isolated_endpoint_is_cut_off_both_ways_but_for_the_spared_route_until_healed() {
        let (a, b, _dir) = pair().await;
        ask(&a, &b, ping::ROUTE).await.unwrap();
        ask(&b, &a, ping::ROUTE).await.unwrap();

        a.isolate(Instant::now() + Duration::from_secs(60), SPARED);
        assert!(a.isolated_for().is_some());
        // Out: refused at once, as an unreachable peer.
        let e = ask(&a, &b, ping::ROUTE).await.unwrap_err();
        assert!(e.is_unreachable(), "{e}");
        assert!(e.to_string().contains("isolated by a fire drill"), "{e}");
        // In: the stream is reset, which the caller reads as a lost peer.
        let e = ask(&b, &a, ping::ROUTE).await.unwrap_err();
        assert!(e.is_unreachable(), "{e}");
        // The spared route passes both ways.
        ask(&a, &b, SPARED).await.unwrap();
        ask(&b, &a, SPARED).await.unwrap();

        a.heal();
        assert_eq!(a.isolated_for(), None);
        ask(&a, &b, ping::ROUTE).await.unwrap();
        ask(&b, &a, ping::ROUTE).await.unwrap();
    }

    #[tokio::test]
    async fn an_isolation_ends_by_itself_at_its_deadline() {
        let (a, b, _dir) = pair().await;
        let until = Instant::now() + Duration::from_millis(300);
        a.isolate(until, SPARED);
        assert!(ask(&b, &a, ping::ROUTE).await.is_err());
        // No one heals it: the deadline does.
        tokio::time::sleep_until(until.into()).await;
        assert_eq!(a.isolated_for(), None);
        ask(&b, &a, ping::ROUTE).await.unwrap();
        ask(&a, &b, ping::ROUTE).await.unwrap();
    }
}
