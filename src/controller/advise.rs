//! The strategic layer's loop (DESIGN §9): on the leader, every `controller.advisor.interval`,
//! build the summary ([`super::advisor::summary`]), POST it to the OpenAI-compatible endpoint
//! within the budget, validate the answer, and keep the latest advice with its counters. The
//! metrics pipeline carries them to every member (`aether advice`, the console, `/metrics`).
//!
//! It runs beside the controller and never blocks it: an endpoint that is down, slow or
//! answers garbage is counted, and said in the log once per change, not every interval.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::advisor::{self, AdviceError};
use super::flow::Controller;
use crate::config::AdvisorConfig;
use crate::domain::{AdviceView, now_millis};
use crate::ingress::client::{PostError, post_json};
use crate::metrics::pipeline::Pipeline;
use crate::raft::Cluster;

/// How one request ended.
#[derive(Debug)]
pub enum Asked {
    /// Valid advice (possibly no items).
    Advice(Vec<crate::domain::AdviceItem>),
    /// The answer was refused.
    Invalid(AdviceError),
    /// No answer within the budget.
    Timeout,
    /// The endpoint is down, answered an HTTP error, or the key could not be read.
    Failed(String),
}

impl Asked {
    /// What the log says of it, the same while the condition lasts.
    fn said(&self) -> String {
        match self {
            Asked::Advice(_) => "answering".into(),
            Asked::Invalid(e) => format!("answering invalid advice ({})", e.word()),
            Asked::Timeout => "too slow".into(),
            Asked::Failed(m) => m.clone(),
        }
    }
}

/// The strategic layer of one node (it asks only while the node leads).
pub struct Advisor {
    cluster: Arc<Cluster>,
    metrics: Arc<Pipeline>,
    controller: Arc<Controller>,
    cfg: AdvisorConfig,
    view: Mutex<AdviceView>,
}

/// Record the outcome of one request into `view`: counters, the latest valid items, the last
/// error.
pub fn record(view: &mut AdviceView, asked: &Asked, at: u64, latency: Duration) {
    view.requests += 1;
    let error = |v: &mut AdviceView, m: String| {
        v.last_error = Some(m);
        v.last_error_at = Some(at);
    };
    match asked {
        Asked::Advice(items) => {
            view.ok += 1;
            view.items = items.clone();
            view.at = Some(at);
            view.latency_ms = Some(latency.as_millis() as u64);
        }
        Asked::Invalid(e) => {
            view.invalid += 1;
            error(view, format!("refused: {e}"));
        }
        Asked::Timeout => {
            view.timeouts += 1;
            error(
                view,
                format!(
                    "no answer within {}",
                    crate::domain::human_millis(latency.as_millis() as u64)
                ),
            );
        }
        Asked::Failed(m) => {
            view.failed += 1;
            error(view, m.clone());
        }
    }
}

/// The endpoint's `host:port` (what the view shows of the URL).
fn endpoint(url: &str) -> String {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

impl Advisor {
    /// The strategic layer of this node, asking with `cfg` (validated) and summarising what
    /// `controller` sees; its reports go out through `metrics`.
    pub fn new(
        cluster: Arc<Cluster>,
        metrics: Arc<Pipeline>,
        controller: Arc<Controller>,
        cfg: AdvisorConfig,
    ) -> Arc<Advisor> {
        let view = AdviceView {
            node: cluster.name.clone(),
            model: cfg.model.clone(),
            endpoint: endpoint(&cfg.url),
            interval_ms: cfg.interval.0.as_millis() as u64,
            ..Default::default()
        };
        Arc::new(Advisor {
            cluster,
            metrics,
            controller,
            cfg,
            view: Mutex::new(view),
        })
    }

    /// The API key: the variable named by `api_key_env` if set and not empty, else the first
    /// line of `api_key_file` if one is named; read before each request (rotation). Never
    /// logged.
    fn key(&self) -> Result<Option<String>, String> {
        let c = &self.cfg;
        if !c.api_key_env.is_empty()
            && let Ok(k) = std::env::var(&c.api_key_env)
            && !k.trim().is_empty()
        {
            return Ok(Some(k.trim().to_string()));
        }
        if c.api_key_file.is_empty() {
            return Ok(None);
        }
        std::fs::read_to_string(&c.api_key_file)
            .map(|t| t.lines().next().map(|l| l.trim().to_string()))
            .map_err(|e| {
                format!(
                    "cannot read the api key file '{}' (controller.advisor.api_key_file): {e}",
                    c.api_key_file
                )
            })
    }

    /// Ask once: the summary of now, posted within the budget, its answer validated.
    async fn ask(&self, next_id: u64) -> Asked {
        let inputs = match self.controller.advice_inputs() {
            Ok(i) => i,
            Err(e) => return Asked::Failed(format!("cannot read this node's replica: {e}")),
        };
        let summary = advisor::summary(&inputs);
        let body = advisor::request(
            &self.cfg.model,
            &summary,
            self.cfg.max_items,
            self.cfg.response_format,
        );
        let mut headers = Vec::new();
        match self.key() {
            Ok(Some(k)) => headers.push(("authorization", format!("Bearer {k}"))),
            Ok(None) => {}
            Err(m) => return Asked::Failed(m),
        }
        let url = format!("{}/chat/completions", self.cfg.url.trim_end_matches('/'));
        let body = serde_json::to_vec(&body).expect("a json value serialises");
        match post_json(&url, &headers, body, self.cfg.budget.0).await {
            Err(PostError::Timeout(_)) => Asked::Timeout,
            Err(e) => Asked::Failed(e.to_string()),
            Ok((status, body)) if !(200..300).contains(&status) => Asked::Failed(format!(
                "'{url}' answered HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(120)])
                    .replace(char::is_control, " ")
            )),
            Ok((_, body)) => {
                match advisor::content(&body)
                    .and_then(|m| advisor::parse(&m, &inputs.world, self.cfg.max_items, next_id))
                {
                    Ok(items) => Asked::Advice(items),
                    Err(e) => Asked::Invalid(e),
                }
            }
        }
    }

    /// Run until `shutdown`: ask every interval while this node leads.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        // Leadership is looked at every second (a node that stops leading stops reporting
        // at once); the endpoint is asked every interval.
        let mut tick = tokio::time::interval(self.cfg.interval.0.min(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut asked_at: Option<Instant> = None;
        let mut said: Option<String> = None;
        let mut next_id = 1u64;
        tracing::info!(
            "advisor: asking {} (model {}) every {} while this node leads",
            endpoint(&self.cfg.url),
            self.cfg.model,
            self.cfg.interval
        );
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let leads =
                self.cluster.raft.metrics().borrow().current_leader == Some(self.cluster.id);
            if !leads {
                self.metrics.set_advice(None);
                asked_at = None;
                continue;
            }
            if asked_at.is_some_and(|at| at.elapsed() < self.cfg.interval.0) {
                continue;
            }
            let started = Instant::now();
            asked_at = Some(started);
            let asked = tokio::select! {
                _ = shutdown.cancelled() => return,
                a = self.ask(next_id) => a,
            };
            let latency = started.elapsed();
            if let Asked::Advice(items) = &asked {
                next_id += items.len() as u64;
            }
            let now = asked.said();
            if said.as_deref() != Some(now.as_str()) {
                match &asked {
                    Asked::Advice(items) => tracing::info!(
                        "advisor: the endpoint is answering ({} items in {} ms)",
                        items.len(),
                        latency.as_millis()
                    ),
                    Asked::Invalid(e) => {
                        tracing::warn!("advisor: refused an answer: {e}; counted as invalid")
                    }
                    Asked::Timeout => tracing::warn!(
                        "advisor: no answer within controller.advisor.budget ({}); counted as a timeout",
                        self.cfg.budget
                    ),
                    Asked::Failed(m) => tracing::warn!("advisor: {m}; counted as failed"),
                }
                said = Some(now);
            }
            let view = {
                let mut v = self.view.lock().expect("advice view");
                record(&mut v, &asked, now_millis(), latency);
                v.clone()
            };
            self.metrics.set_advice(Some(view));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AdviceItem, AdviceKind};

    #[test]
    fn each_outcome_is_counted_and_the_last_advice_stands() {
        let mut v = AdviceView::default();
        let item = AdviceItem {
            id: "a-1".into(),
            kind: AdviceKind::Note,
            target: String::new(),
            count: None,
            when: None,
            reason: "quiet".into(),
        };
        let ms = Duration::from_millis;
        record(&mut v, &Asked::Advice(vec![item.clone()]), 10, ms(40));
        record(&mut v, &Asked::Timeout, 20, ms(2000));
        record(
            &mut v,
            &Asked::Invalid(AdviceError::NotJson("x".into())),
            30,
            ms(5),
        );
        record(&mut v, &Asked::Failed("cannot connect".into()), 40, ms(1));
        assert_eq!(
            (v.requests, v.ok, v.invalid, v.timeouts, v.failed),
            (4, 1, 1, 1, 1)
        );
        assert_eq!(v.items, vec![item], "a failure keeps the last advice");
        assert_eq!((v.at, v.latency_ms), (Some(10), Some(40)));
        assert_eq!(v.last_error.as_deref(), Some("cannot connect"));
        assert_eq!(v.last_error_at, Some(40));
        assert_eq!(endpoint("http://127.0.0.1:8080/v1"), "127.0.0.1:8080");
    }

    #[test]
    fn a_condition_is_said_once_while_it_lasts() {
        let a = Asked::Failed("cannot connect to '127.0.0.1:9': refused".into());
        let b = Asked::Failed("cannot connect to '127.0.0.1:9': refused".into());
        assert_eq!(a.said(), b.said());
        assert_ne!(Asked::Timeout.said(), a.said());
        assert_eq!(
            Asked::Invalid(AdviceError::NotJson("a".into())).said(),
            Asked::Invalid(AdviceError::NotJson("b".into())).said(),
        );
    }
}
