//! A small HTTP/1.1 server for the node's own endpoint (`/metrics`, `/healthz`, `/readyz`) on
//! the same stack as the ingress, so hyper stays known to this module alone.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use http_body_util::Full;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Answers a GET of a path (query left out) with status, content type and body.
pub type Handler = Arc<dyn Fn(&str) -> (u16, &'static str, String) + Send + Sync>;

/// Serve GET (and HEAD) with `handler` until `shutdown`; keep-alive, any other method 405.
pub fn serve(
    listener: TcpListener,
    handler: Handler,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
            };
            let (handler, shutdown) = (handler.clone(), shutdown.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<_>| {
                    let handler = handler.clone();
                    async move {
                        let (status, ctype, body) = match *req.method() {
                            Method::GET | Method::HEAD => handler(req.uri().path()),
                            _ => (
                                405,
                                "text/plain; charset=utf-8",
                                "only GET is supported\n".to_string(),
                            ),
                        };
                        let mut r = Response::new(Full::new(Bytes::from(body)));
                        *r.status_mut() = StatusCode::from_u16(status)
                            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                        r.headers_mut().insert(
                            header::CONTENT_TYPE,
                            header::HeaderValue::from_static(ctype),
                        );
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .serve_connection(TokioIo::new(tcp), svc);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = shutdown.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
            });
        }
        tracing::info!("http endpoint closed");
    })
}
