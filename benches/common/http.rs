//! A minimal HTTP/1.1 client for the benchmarks: one request at a time on a keep-alive
//! connection, blocking.
#![allow(dead_code)]

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Where `needle` starts in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A complete response at the start of `buf`: (status, head length, total length, whether
/// the server closes the connection); `None` while incomplete.
pub fn parse_response(buf: &[u8]) -> std::io::Result<Option<(u16, usize, usize, bool)>> {
    let bad = |why: &str| std::io::Error::new(ErrorKind::InvalidData, why.to_string());
    let Some(head_end) = find(buf, b"\r\n\r\n").map(|i| i + 4) else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("head not UTF-8"))?;
    let status: u16 = head
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let (mut length, mut chunked, mut close) = (None, false, false);
    for line in head.split("\r\n").skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse::<usize>().ok();
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.to_ascii_lowercase().contains("chunked");
            } else if k.eq_ignore_ascii_case("connection") {
                close = v.trim().eq_ignore_ascii_case("close");
            }
        }
    }
    if let Some(n) = length {
        Ok((buf.len() >= head_end + n).then_some((status, head_end, head_end + n, close)))
    } else if chunked {
        Ok(find(&buf[head_end..], b"0\r\n\r\n")
            .map(|i| (status, head_end, head_end + i + 5, close)))
    } else if status >= 200 && status != 204 && status != 304 {
        Err(bad("a response without a length"))
    } else {
        Ok(Some((status, head_end, head_end, close)))
    }
}

/// A connection with no Nagle delay and 10 s read and write timeouts.
pub fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}
