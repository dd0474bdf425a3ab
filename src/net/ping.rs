//! Clock pings on the peer endpoint ([`ROUTE`]): a member asks another for its wall clock and
//! measures the round trip, for `aether doctor`'s reachability and clock-skew checks. The answer
//! carries nothing but the answering node's clock, so asking is free of side effects.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{BoxFut, Endpoint, NetError, PeerCtx, Route, Service};

/// Pings' place on the peer endpoint (members only).
pub const ROUTE: Route = Route {
    id: 5,
    name: "ping",
    open: false,
};

/// "What time is it on your side?"
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Ping {
    /// The asker's wall clock when it sent the ping, µs since the Unix epoch.
    pub sent_us: u64,
}

/// The answer to a [`Ping`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Pong {
    /// The answering node's wall clock when it answered, µs since the Unix epoch.
    pub clock_us: u64,
}

/// Answers pings with this node's wall clock.
pub struct Pinger;

impl Service for Pinger {
    type Req = Ping;
    type Resp = Pong;
    fn handle(self: Arc<Self>, _: PeerCtx, _: Ping) -> BoxFut<Result<Pong, String>> {
        Box::pin(async move {
            Ok(Pong {
                clock_us: wall_us(),
            })
        })
    }
}

/// This machine's wall clock, µs since the Unix epoch (0 before it).
pub fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// What one ping measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measured {
    /// Round trip, µs.
    pub rtt_us: u64,
    /// The peer's clock minus this node's, µs (positive: the peer is ahead).
    pub skew_us: i64,
}

/// The skew of a peer whose clock read `peer_us` between this node's `sent_us` and
/// `received_us`: the peer is assumed to have answered half-way through the round trip (NTP's
/// offset estimate, off by at most half the round trip).
pub fn skew_us(sent_us: u64, peer_us: u64, received_us: u64) -> i64 {
    let mid = sent_us as i128 + (received_us as i128 - sent_us as i128) / 2;
    (peer_us as i128 - mid).clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// Ping the member at `addr` once, waiting at most `timeout`: the round trip and its clock's
/// skew, or why it did not answer.
pub async fn ping(ep: &Endpoint, addr: &str, timeout: Duration) -> Result<Measured, NetError> {
    let sent_us = wall_us();
    let start = Instant::now();
    let pong: Pong = ep
        .call(addr, ROUTE, &Ping { sent_us }, Some(timeout))
        .await?;
    let rtt_us = start.elapsed().as_micros() as u64;
    Ok(Measured {
        rtt_us,
        skew_us: skew_us(sent_us, pong.clock_us, sent_us + rtt_us),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_is_measured_against_the_middle_of_the_round_trip() {
        // Sent at 1000, back at 1200: the peer answered at 1100 by its clock → no skew.
        assert_eq!(skew_us(1_000, 1_100, 1_200), 0);
        // Its clock read 1 s later than the middle: it is 1 s ahead.
        assert_eq!(skew_us(1_000, 1_001_100, 1_200), 1_000_000);
        // Behind.
        assert_eq!(skew_us(5_000_000, 1_000, 5_000_000), -4_999_000);
    }
}
