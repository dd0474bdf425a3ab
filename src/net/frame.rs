//! Length-prefixed frames: `u32` big-endian length of what follows, one protocol-version byte,
//! then a postcard payload. Used on QUIC streams and on the admin Unix socket.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Wire protocol version carried by every frame. Bump on an incompatible change.
/// 2: a peer request carries its route's id first (see `net::router`).
/// 3: slices carry a service, metrics updates carry request counts, stream routes (ingress
/// hops).
/// 4: slices carry an update policy, assignments a version, request counts per version,
/// rollout commands.
/// 5: slices carry a user.
/// 6: status says whether the leader answered; the console's live nodes carry process samples.
/// 7: pre-votes (`raft::elect`); the metrics view travels as deltas through relays
/// (`MetricsMsg::View`, `Relay`, `Resync` replace the whole `Snapshot`).
/// 8: membership changes for the leader (`aether remove`, a member's new address), the
/// read barrier of a backup (`ReadQuery::AppliedIndex`), token lists, the clock ping route
/// (`aether doctor`).
/// 9: spot notices (`Command::SetSpotNotice`, members' `spot`, the `spot-interruption` drill
/// and its report); GPU samples carry the health signals (slowdown threshold, XID and ECC
/// counts, throttle bits); the metrics answer carries GPU health per node and power per slice;
/// a member in a status answer carries its sleep-and-wake record (`Command::SetPower`).
/// Also in 9: node info carries the carbon signal; flexible-slice commands.
pub const PROTOCOL_VERSION: u8 = 9;

/// What can go wrong with one frame. The stream it came on is closed; the process carries on.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {len} bytes is over the limit of {max} bytes (net.max_frame_bytes)")]
    TooLarge { len: u64, max: u64 },
    #[error("empty frame")]
    Empty,
    #[error(
        "peer speaks protocol {got}, this aether speaks {want}: run one aether version on every node (upgrade the rest one node at a time, or go back to theirs)"
    )]
    Version { got: u8, want: u8 },
    #[error("frame does not decode: {0}")]
    Decode(String),
    #[error("cannot encode frame: {0}")]
    Encode(String),
}

/// Encode `msg` as one frame.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    encode_versioned(PROTOCOL_VERSION, msg)
}

/// Encode `msg` as one frame that says protocol `version`: only for what every version reads
/// alike (the refusal a peer of another version gets, in its own version; tests).
pub fn encode_versioned<T: Serialize>(version: u8, msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![0u8; 5];
    out[4] = version;
    let out = postcard::to_extend(msg, out).map_err(|e| FrameError::Encode(e.to_string()))?;
    let len = (out.len() - 4) as u32;
    let mut out = out;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}

/// Write `msg` as one frame.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    msg: &T,
) -> Result<(), FrameError> {
    let buf = encode(msg)?;
    w.write_all(&buf).await?;
    Ok(())
}

/// Read one frame of at most `max` bytes and decode it. A clean end of stream before the first
/// byte is [`FrameError::Closed`].
pub async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(
    r: &mut R,
    max: u64,
) -> Result<T, FrameError> {
    read_frame_sized(r, max).await.map(|(t, _)| t)
}

/// [`read_frame`], also returning the frame's size on the wire.
pub async fn read_frame_sized<R: AsyncRead + Unpin, T: DeserializeOwned>(
    r: &mut R,
    max: u64,
) -> Result<(T, u64), FrameError> {
    let (body, size) = read_frame_body(r, max).await?;
    Ok((decode_body(&body)?, size))
}

/// Read one frame of at most `max` bytes without decoding it: its body (version byte, then
/// the payload; see [`payload`]) and its size on the wire.
pub async fn read_frame_body<R: AsyncRead + Unpin>(
    r: &mut R,
    max: u64,
) -> Result<(Vec<u8>, u64), FrameError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as u64;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    if len == 0 {
        return Err(FrameError::Empty);
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            FrameError::Decode(format!("truncated frame: expected {len} bytes"))
        }
        _ => FrameError::Io(e),
    })?;
    Ok((buf, len + 4))
}

/// Encode `msg` as a frame body without the length prefix (a QUIC datagram carries its own
/// length): version byte, then postcard.
pub fn encode_body<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    postcard::to_extend(msg, vec![PROTOCOL_VERSION]).map_err(|e| FrameError::Encode(e.to_string()))
}

/// Decode a frame body (version byte, then postcard).
pub fn decode_body<T: DeserializeOwned>(buf: &[u8]) -> Result<T, FrameError> {
    decode_payload(payload(buf)?)
}

/// The payload of a frame body, once its version byte is checked.
pub fn payload(body: &[u8]) -> Result<&[u8], FrameError> {
    let Some((&version, payload)) = body.split_first() else {
        return Err(FrameError::Empty);
    };
    if version != PROTOCOL_VERSION {
        return Err(FrameError::Version {
            got: version,
            want: PROTOCOL_VERSION,
        });
    }
    Ok(payload)
}

/// Decode a payload (postcard).
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    postcard::from_bytes(payload).map_err(|e| FrameError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    enum Msg {
        Hello { name: String, n: u64 },
        Bye,
    }

    async fn decode(bytes: &[u8], max: u64) -> Result<Msg, FrameError> {
        let mut r = bytes;
        read_frame(&mut r, max).await
    }

    #[tokio::test]
    async fn round_trip() {
        let m = Msg::Hello {
            name: "n1".into(),
            n: 7,
        };
        let bytes = encode(&m).unwrap();
        assert_eq!(decode(&bytes, 1024).await.unwrap(), m);
    }

    #[tokio::test]
    async fn a_frame_of_another_version_names_both() {
        let old = PROTOCOL_VERSION - 1;
        let bytes = encode_versioned(old, &Msg::Bye).unwrap();
        let e = decode(&bytes, 1024).await.unwrap_err();
        assert!(
            matches!(e, FrameError::Version { got, want } if got == old && want == PROTOCOL_VERSION)
        );
        assert_eq!(
            e.to_string(),
            format!(
                "peer speaks protocol {old}, this aether speaks {PROTOCOL_VERSION}: run one aether version on every node (upgrade the rest one node at a time, or go back to theirs)"
            )
        );
        // Only the version byte differs from this version's frame.
        let mut ours = encode(&Msg::Bye).unwrap();
        ours[4] = old;
        assert_eq!(ours, bytes);
    }

    #[tokio::test]
    async fn bad_frames_are_errors() {
        let bytes = encode(&Msg::Hello {
            name: "n1".into(),
            n: 7,
        })
        .unwrap();
        assert!(
            matches!(decode(&bytes[..bytes.len() - 2], 1024).await, Err(FrameError::Decode(m)) if m.contains("truncated"))
        );
        assert!(matches!(
            decode(&bytes, 4).await,
            Err(FrameError::TooLarge { .. })
        ));
        let mut wrong = bytes.clone();
        let newer = PROTOCOL_VERSION + 1;
        wrong[4] = newer;
        assert!(matches!(
            decode(&wrong, 1024).await,
            Err(FrameError::Version { got, want: PROTOCOL_VERSION }) if got == newer
        ));
        let mut garbage = bytes.clone();
        garbage[5] = 0xff;
        assert!(matches!(
            decode(&garbage, 1024).await,
            Err(FrameError::Decode(_))
        ));
        assert!(matches!(decode(&[], 1024).await, Err(FrameError::Closed)));
        let body = encode_body(&Msg::Bye).unwrap();
        assert_eq!(decode_body::<Msg>(&body).unwrap(), Msg::Bye);
        assert!(matches!(decode_body::<Msg>(&[]), Err(FrameError::Empty)));
        // A version this build does not speak (a newer one) is refused, never misread.
        assert!(matches!(
            decode_body::<Msg>(&[PROTOCOL_VERSION + 1, 1]),
            Err(FrameError::Version { got, .. }) if got == PROTOCOL_VERSION + 1
        ));
        assert!(matches!(
            decode(&[0, 0, 0, 0], 1024).await,
            Err(FrameError::Empty)
        ));
    }
}
