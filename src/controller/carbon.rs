//! The carbon loop, on every node with `[carbon] source` set: reads the source (a file, or an
//! `http://` URL) every `carbon.refresh`, parses it ([`crate::metrics::carbon::parse`]) and
//! hands the signal to the metrics pipeline, which carries it to the leader when it changes.
//!
//! A source that does not read (missing, not JSON, an unknown shape, a negative value) keeps the
//! last good signal; the error, with the source and the JSON path, is logged once per change
//! (not every refresh) and shown in `aether metrics`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::CarbonConfig;
use crate::domain::now_millis;
use crate::metrics::carbon::{CarbonSignal, parse};
use crate::metrics::pipeline::Pipeline;

/// Longest wait for an http source.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Read `source` once: its text, or why not (naming the source).
async fn read(source: &str) -> Result<String, String> {
    if source.starts_with("http://") {
        let accept = [("accept", "application/json".to_string())];
        match crate::ingress::client::request(
            http::Method::GET,
            source,
            &accept,
            Vec::new(),
            HTTP_TIMEOUT,
        )
        .await
        {
            Ok((status, body)) if (200..300).contains(&status) => {
                Ok(String::from_utf8_lossy(&body).into_owned())
            }
            Ok((status, _)) => Err(format!("'{source}' answered HTTP {status}")),
            Err(e) => Err(format!("'{source}': {e}")),
        }
    } else {
        tokio::fs::read_to_string(source)
            .await
            .map_err(|e| format!("cannot read '{source}': {e}"))
    }
}

/// The signal in `source` now, or the error naming the source and the JSON path.
async fn refresh(cfg: &CarbonConfig) -> Result<CarbonSignal, String> {
    let text = read(&cfg.source).await?;
    parse(&text, now_millis(), &cfg.zone)
        .map_err(|e| format!("carbon source '{}': {e}", cfg.source))
}

/// Run until `shutdown`: read every `cfg.refresh` (validated; `cfg.source` not empty).
pub async fn run(metrics: Arc<Pipeline>, cfg: CarbonConfig, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(cfg.refresh.0);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut good: Option<CarbonSignal> = None;
    let mut said: Option<String> = None;
    tracing::info!(
        "carbon: reading '{}' every {}",
        cfg.source,
        crate::domain::human_millis(cfg.refresh.0.as_millis() as u64)
    );
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let error = match refresh(&cfg).await {
            Ok(s) => {
                if good.as_ref().is_none_or(|g| g.grams != s.grams) || said.is_some() {
                    tracing::info!(
                        "carbon: {} gCO2eq/kWh{} ({}, {} forecast windows)",
                        s.grams,
                        if s.zone.is_empty() {
                            String::new()
                        } else {
                            format!(" in '{}'", s.zone)
                        },
                        s.format.name(),
                        s.forecast.len()
                    );
                }
                good = Some(s);
                None
            }
            Err(e) => {
                if said.as_ref() != Some(&e) {
                    tracing::warn!(
                        "{e}; {}",
                        match &good {
                            Some(g) =>
                                format!("keeping the last good value ({} gCO2eq/kWh)", g.grams),
                            None => "no carbon signal until it reads".into(),
                        }
                    );
                }
                Some(e)
            }
        };
        said = error.clone();
        metrics.set_carbon(good.clone(), error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An HTTP server on 127.0.0.1 that answers every request with `status` and `body`.
    async fn serve(status: u16, body: &'static str) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
            }
        });
        format!("http://{addr}/v3/carbon-intensity/latest")
    }

    fn cfg(source: &str) -> CarbonConfig {
        CarbonConfig {
            source: source.into(),
            ..CarbonConfig::default()
        }
    }

    #[tokio::test]
    async fn an_http_source_is_read_and_its_failures_name_the_url() {
        let url = serve(200, r#"{"zone":"DE","carbonIntensity":302}"#).await;
        let s = refresh(&cfg(&url)).await.unwrap();
        assert_eq!((s.grams, s.zone.as_str()), (302.0, "DE"));
        let url = serve(404, "no").await;
        let e = refresh(&cfg(&url)).await.unwrap_err();
        assert_eq!(e, format!("'{url}' answered HTTP 404"));
        let url = serve(200, "<html>").await;
        let e = refresh(&cfg(&url)).await.unwrap_err();
        assert!(
            e.starts_with(&format!("carbon source '{url}': not JSON")),
            "{e}"
        );
        let e = refresh(&cfg("/nonexistent/carbon.json")).await.unwrap_err();
        assert!(
            e.starts_with("cannot read '/nonexistent/carbon.json'"),
            "{e}"
        );
    }
}
