//! A small HTTP/1.1 client: JSON posts (the controller's strategic layer asks an
//! OpenAI-compatible endpoint with it) and plain requests (the spot signal loop asks the
//! cloud's metadata service). hyper stays inside the ingress; http only.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;

/// Largest response body read.
pub const MAX_RESPONSE: usize = 1 << 20;

/// Why a post got no response.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// The URL is not `http://host[:port]/path`.
    #[error("bad url '{0}': expected http://HOST[:PORT]/PATH")]
    Url(String),
    /// Nothing answered at the address (refused, unreachable, unknown host).
    #[error("cannot connect to '{addr}': {message}")]
    Connect { addr: String, message: String },
    /// No complete response within the time allowed.
    #[error("no response within {}", crate::domain::human_millis(.0.as_millis() as u64))]
    Timeout(Duration),
    /// The connection broke, or the response was not HTTP or too large.
    #[error("http exchange with '{addr}' failed: {message}")]
    Http { addr: String, message: String },
}

/// `http://host:port/path` split into the address to dial, the Host header and the path.
fn split(url: &str) -> Result<(String, String, String), PostError> {
    let bad = || PostError::Url(url.to_string());
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(bad());
    }
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.contains(']'));
    let addr = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((addr, authority.to_string(), path.to_string()))
}

/// POST `body` as JSON to `url` (http only) with `headers`, and return the status and body.
/// Everything, from connecting to the last byte, is within `timeout`.
pub async fn post_json(
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(u16, Bytes), PostError> {
    let mut all = vec![
        ("content-type", "application/json".to_string()),
        ("accept", "application/json".to_string()),
    ];
    all.extend(headers.iter().cloned());
    request(http::Method::POST, url, &all, body, timeout).await
}

/// Send `method` to `url` (http only) with `headers` and `body` (empty for none), and return
/// the status and body. Everything, from connecting to the last byte, is within `timeout`.
pub async fn request(
    method: http::Method,
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(u16, Bytes), PostError> {
    let (addr, host, path) = split(url)?;
    tokio::time::timeout(
        timeout,
        exchange(method, &addr, &host, &path, headers, body),
    )
    .await
    .map_err(|_| PostError::Timeout(timeout))?
}

async fn exchange(
    method: http::Method,
    addr: &str,
    host: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Result<(u16, Bytes), PostError> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| PostError::Connect {
            addr: addr.to_string(),
            message: e.to_string(),
        })?;
    let _ = tcp.set_nodelay(true);
    let http = |message: String| PostError::Http {
        addr: addr.to_string(),
        message,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| http(e.to_string()))?;
    // The connection is driven until the response is read; dropped with the sender after.
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, host)
        .header(header::CONTENT_LENGTH, body.len());
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| http(e.to_string()))?;
    let result = async {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| http(e.to_string()))?;
        let status = resp.status().as_u16();
        let bytes = Limited::new(resp.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| http(format!("reading the body: {e}")))?
            .to_bytes();
        Ok((status, bytes))
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_address_host_and_path() {
        let (a, h, p) = split("http://127.0.0.1:8080/v1/chat/completions").unwrap();
        assert_eq!(
            (a.as_str(), h.as_str(), p.as_str()),
            ("127.0.0.1:8080", "127.0.0.1:8080", "/v1/chat/completions")
        );
        let (a, h, p) = split("http://llm.internal").unwrap();
        assert_eq!(
            (a.as_str(), h.as_str(), p.as_str()),
            ("llm.internal:80", "llm.internal", "/")
        );
        let (a, _, _) = split("http://[::1]/v1").unwrap();
        assert_eq!(a, "[::1]:80");
        for bad in [
            "https://x/v1",
            "ftp://x",
            "http:///v1",
            "http://user:pw@x/v1",
        ] {
            assert!(matches!(split(bad), Err(PostError::Url(_))), "{bad}");
        }
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connect_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let e = post_json(
            &format!("http://{addr}/v1"),
            &[],
            b"{}".to_vec(),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, PostError::Connect { .. }), "{e}");
    }
}
