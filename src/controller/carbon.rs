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
        match crate::ingress::client::get(source, HTTP_TIMEOUT).await {
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
