//! Live feeds ([`AdminRequest::Subscribe`]) over the admin socket or a remote admin stream: a frame from the read model's
//! [`Feed`] when the Raft state moves (coalesced) and on the metrics period; the client may move
//! its watch on the same connection.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::protocol::{AdminError, AdminRequest, AdminResponse, ErrorKind, MAX_ADMIN_FRAME, Watch};
use crate::net::frame::{FrameError, read_frame, write_frame};
use crate::view::Sources;
use crate::view::live::Feed;

/// Raft changes closer together than this share one frame.
const COALESCE: Duration = Duration::from_millis(50);

/// Serve one subscription until the client goes away or the node shuts down.
pub async fn serve<S>(stream: S, watch: Watch, src: Sources, shutdown: CancellationToken)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut feed = Feed::new(watch);
    let mut applied = src.cluster.store.subscribe_applied();
    let mut tick = tokio::time::interval(src.metrics.interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Watches from the client arrive on their own task so a half-read frame is never dropped.
    let (watch_tx, mut watch_rx) = tokio::sync::mpsc::channel::<Result<Watch, String>>(4);
    let reader = tokio::spawn(async move {
        loop {
            let msg = match read_frame::<_, AdminRequest>(&mut rd, MAX_ADMIN_FRAME).await {
                Ok(AdminRequest::Subscribe(w)) => Ok(w),
                Ok(_) => Err("a live feed accepts only 'Subscribe' frames".to_string()),
                Err(FrameError::Closed) => return,
                Err(e) => Err(format!("bad admin frame: {e}")),
            };
            let stop = msg.is_err();
            if watch_tx.send(msg).await.is_err() || stop {
                return;
            }
        }
    });
    let mut full = true;
    loop {
        let update = feed.update(&src, full);
        full = false;
        if let Some(u) = update
            && write_frame(&mut wr, &AdminResponse::Live(Box::new(u)))
                .await
                .is_err()
        {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
            changed = applied.changed() => {
                if changed.is_err() {
                    break;
                }
                tokio::time::sleep(COALESCE).await;
                applied.borrow_and_update();
            }
            w = watch_rx.recv() => match w {
                Some(Ok(w)) => feed.set_watch(w),
                Some(Err(m)) => {
                    let e = AdminError::new(ErrorKind::Invalid, m);
                    let _ = write_frame(&mut wr, &AdminResponse::Error(e)).await;
                    break;
                }
                None => break,
            },
        }
    }
    reader.abort();
}
