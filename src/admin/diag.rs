//! `aether diag bundle`'s node side: what one node adds to a diagnostics bundle ([`NodeDiag`]),
//! gathered on that node, and the peer route ([`ROUTE`]) on which the node the CLI talks to asks
//! every other member for theirs. Also the doctor's cluster view ([`doctor`]), which is part of it.
//!
//! Never gathered: the TLS files (node key, CA key, certificates), join token secrets or their
//! hashes, the environment. The configuration is serialised from the effective [`Config`] with
//! secret-looking values replaced ([`redact_config`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::protocol::{
    AdminError, DIAG_NODE_TIMEOUT_MS, DOCTOR_PING_TIMEOUT_MS, DoctorView, ErrorKind, NodeDiag,
    PeerPing,
};
use crate::config::Config;
use crate::net::{BoxFut, PeerCtx, Route, Service};
use crate::raft::Cluster;
use crate::view::Sources;

/// Diagnostics on the peer endpoint (members only).
pub const ROUTE: Route = Route {
    id: 7,
    name: "diag",
    open: false,
};

/// How long the asking node waits for another member's part before it counts as unreachable.
pub const NODE_TIMEOUT: Duration = Duration::from_millis(DIAG_NODE_TIMEOUT_MS);
/// Most bytes of the daemon's own log in one node's part (the newest).
pub const MAX_DAEMON_LOG: u64 = 1 << 20;
/// Lines read from the end of each instance's log.
pub const INSTANCE_LOG_LINES: u32 = 500;
/// Most bytes of one instance's log (the newest).
pub const MAX_INSTANCE_LOG: usize = 64 << 10;
/// Most bytes of all instance logs of one node; instances past it are listed, without log.
pub const MAX_INSTANCE_LOGS: usize = 1 << 20;
/// Longest `--since` a node honours.
pub const MAX_SINCE: Duration = Duration::from_secs(7 * 24 * 3600);
/// What a redacted value reads as.
pub const REDACTED: &str = "<redacted>";

/// "Send me your part of a diagnostics bundle."
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiagRequest {
    /// The daemon log's lines of the last this many seconds.
    pub since_secs: u64,
}

/// Gather this node's part of a bundle.
pub async fn gather(src: &Sources, since: Duration) -> NodeDiag {
    let cluster = &*src.cluster;
    let since = since.min(MAX_SINCE);
    let mut problems = Vec::new();
    let mut json = |what: &str, r: Result<String, String>| {
        r.unwrap_or_else(|e| {
            problems.push(format!("{what}: {e}"));
            "null".into()
        })
    };
    let status_json = json(
        "status",
        match cluster.status().await {
            Ok(mut s) => {
                s.controller = crate::view::status::control_view(
                    cluster,
                    &src.controller.borrow(),
                    &src.metrics,
                );
                s.workloads = crate::deploy::supervisor::user::protections();
                Ok(render(&s))
            }
            Err(e) => Err(e.message),
        },
    );
    let doctor_json = json(
        "doctor",
        doctor(cluster)
            .await
            .map(|d| render(&d))
            .map_err(|e| e.message),
    );
    let metrics_json = json("metrics", {
        let interval_ms = src.metrics.interval().as_millis() as u64;
        src.metrics
            .with_state(|st| {
                crate::view::metrics::metrics_view(
                    &st.view,
                    &cluster.name,
                    interval_ms,
                    Some(&cluster.name),
                    None,
                    crate::metrics::window::WINDOW_SECS,
                    std::time::Instant::now(),
                    &[],
                    src.metrics.cpu_watts_per_core(),
                )
            })
            .map(|v| render(&v))
            .map_err(|e| e.to_string())
    });
    let instances = match cluster.store.instances() {
        Ok(all) => Ok(all
            .into_iter()
            .filter(|i| i.node == cluster.id)
            .collect::<Vec<_>>()),
        Err(e) => Err(format!("cannot read the instances: {e}")),
    };
    // Logs of what this node runs or was assigned (an assignment is replicated before the
    // first report of its instance).
    let mut keys: std::collections::BTreeSet<String> = instances
        .as_ref()
        .map(|is| is.iter().map(|i| i.instance.clone()).collect())
        .unwrap_or_default();
    let instances_json = json("instances", instances.map(|is| render(&is)));
    match cluster.store.assignments() {
        Ok(all) => keys.extend(
            all.into_iter()
                .filter(|(_, a)| a.node == Some(cluster.id) || a.handoff == Some(cluster.id))
                .map(|(k, _)| k),
        ),
        Err(e) => problems.push(format!("cannot read the assignments: {e}")),
    }
    let mut instance_logs = Vec::new();
    let mut total = 0;
    for key in keys {
        if total >= MAX_INSTANCE_LOGS {
            problems.push(format!(
                "logs of '{key}': left out, the node's instance logs passed {MAX_INSTANCE_LOGS} bytes"
            ));
            continue;
        }
        match crate::deploy::logs::read_local(cluster.data_dir(), &key, None, INSTANCE_LOG_LINES)
            .await
        {
            Ok((text, _)) => {
                let text = tail_str(&text, MAX_INSTANCE_LOG).to_string();
                total += text.len();
                instance_logs.push((key, text));
            }
            Err(e) => problems.push(format!("logs of '{key}': {e}")),
        }
    }
    let (config_toml, redacted) = match redact_config(&src.config) {
        Ok(r) => r,
        Err(e) => {
            problems.push(format!("config: {e}"));
            (String::new(), Vec::new())
        }
    };
    let data_dir = cluster.data_dir().to_path_buf();
    let daemon_log = match tokio::task::spawn_blocking(move || {
        crate::platform::daemon_log::recent(&data_dir, since, SystemTime::now(), MAX_DAEMON_LOG)
    })
    .await
    {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            problems.push(format!("daemon log: {e}"));
            String::new()
        }
        Err(e) => {
            problems.push(format!("daemon log: {e}"));
            String::new()
        }
    };
    NodeDiag {
        node: cluster.name.clone(),
        status_json,
        config_toml,
        redacted,
        daemon_log,
        doctor_json,
        metrics_json,
        instances_json,
        instance_logs,
        problems,
    }
}

/// A view as pretty JSON.
fn render<T: Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("\"unserialisable: {e}\""))
}

/// The last `max` bytes of `s`, from a line start when cut.
fn tail_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut from = s.len() - max;
    while !s.is_char_boundary(from) {
        from += 1;
    }
    let cut = &s[from..];
    cut.find('\n').map_or(cut, |i| &cut[i + 1..])
}

/// Another member's part, asked over the peer endpoint, waiting at most [`NODE_TIMEOUT`].
pub async fn ask(cluster: &Cluster, addr: &str, since: Duration) -> Result<NodeDiag, String> {
    let req = DiagRequest {
        since_secs: since.as_secs(),
    };
    cluster
        .ep
        .call::<_, NodeDiag>(addr, ROUTE, &req, Some(NODE_TIMEOUT))
        .await
        .map_err(|e| e.to_string())
}

/// Answers [`DiagRequest`]s with this node's part.
pub struct DiagService(pub Sources);

impl Service for DiagService {
    type Req = DiagRequest;
    type Resp = NodeDiag;
    fn handle(self: Arc<Self>, _: PeerCtx, r: DiagRequest) -> BoxFut<Result<NodeDiag, String>> {
        Box::pin(async move { Ok(gather(&self.0, Duration::from_secs(r.since_secs)).await) })
    }
}

/// `aether doctor`'s cluster checks: this node's Raft status, and every other member pinged at
/// once over the peer endpoint (round trip and clock skew, or why it did not answer).
pub async fn doctor(cluster: &Cluster) -> Result<DoctorView, AdminError> {
    let status = cluster.status().await?;
    let timeout = Duration::from_millis(DOCTOR_PING_TIMEOUT_MS);
    let pings = status
        .members
        .iter()
        .filter(|m| m.id != cluster.id)
        .map(|m| async move {
            let r = crate::net::ping::ping(&cluster.ep, &m.addr, timeout).await;
            PeerPing {
                name: m.name.clone(),
                addr: m.addr.clone(),
                rtt_us: r.as_ref().ok().map(|p| p.rtt_us),
                skew_us: r.as_ref().ok().map(|p| p.skew_us),
                error: r.err().map(|e| e.to_string()),
            }
        });
    let peers = futures::future::join_all(pings).await;
    Ok(DoctorView {
        listen: cluster.ep.local_addr(),
        status,
        peers,
    })
}

/// Whether a configuration key names a secret: its last part holds `secret`, `password`,
/// `token` or `credential`, or ends in `key` (`api_key`, `ca_key`). Keys that say where a
/// secret is kept (ending `_env` or `_file`) are not secrets: the bundle never reads what
/// they point to.
pub fn secret_key(dotted: &str) -> bool {
    let last = dotted
        .rsplit('.')
        .next()
        .unwrap_or(dotted)
        .to_ascii_lowercase();
    if last.ends_with("_env") || last.ends_with("_file") {
        return false;
    }
    ["secret", "password", "token", "credential"]
        .iter()
        .any(|w| last.contains(w))
        || last.ends_with("key")
}

/// A URL's user information (`http://user:pass@host/`) replaced with [`REDACTED`]; `None` when it
/// has none.
fn redact_userinfo(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..authority_end].rfind('@')?;
    Some(format!("{scheme}://{REDACTED}@{}", &rest[at + 1..]))
}

/// Replace secrets under `v` (at `prefix`), naming each in `out`.
fn redact(v: &mut toml::Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, child) in t.iter_mut() {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                let is_table = matches!(child, toml::Value::Table(_));
                if !is_table && secret_key(&key) {
                    let empty = matches!(child, toml::Value::String(s) if s.is_empty());
                    if !empty {
                        *child = toml::Value::String(REDACTED.into());
                        out.push(key);
                    }
                } else {
                    redact(child, &key, out);
                }
            }
        }
        toml::Value::Array(a) => {
            for child in a.iter_mut() {
                redact(child, prefix, out);
            }
        }
        toml::Value::String(s) => {
            if let Some(r) = redact_userinfo(s) {
                *s = r;
                out.push(format!("{prefix} (user information in the URL)"));
            }
        }
        _ => {}
    }
}

/// The effective configuration as TOML with secrets redacted ([`secret_key`], user information
/// in URLs), headed by a comment naming what was redacted; and those keys.
pub fn redact_config(cfg: &Config) -> Result<(String, Vec<String>), AdminError> {
    let failed = |e: String| {
        AdminError::new(
            ErrorKind::Failed,
            format!("cannot serialise the configuration: {e}"),
        )
    };
    let mut v = toml::Value::try_from(cfg).map_err(|e| failed(e.to_string()))?;
    let mut redacted = Vec::new();
    redact(&mut v, "", &mut redacted);
    let body = toml::to_string_pretty(&v).map_err(|e| failed(e.to_string()))?;
    let head = if redacted.is_empty() {
        "# the node's effective configuration; no secret values were set".to_string()
    } else {
        format!(
            "# the node's effective configuration; redacted: {}",
            redacted.join(", ")
        )
    };
    Ok((format!("{head}\n{body}"), redacted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_are_named_by_their_last_part() {
        for k in [
            "token",
            "join.token",
            "controller.advisor.api_key",
            "tls.ca_key",
            "x.password",
            "x.client_secret",
            "x.credentials",
        ] {
            assert!(secret_key(k), "{k}");
        }
        for k in [
            "controller.advisor.api_key_env",
            "controller.advisor.api_key_file",
            "tui.keys.veto",
            "controller.model.path",
            "net.max_frame_bytes",
            "name",
        ] {
            assert!(!secret_key(k), "{k}");
        }
    }

    #[test]
    fn the_config_is_redacted_and_says_what_was() {
        let mut cfg = Config::default();
        cfg.controller.advisor.url = "http://bob:hunter2@llm.local:8080/v1".into();
        cfg.controller.advisor.api_key_env = "LLM_KEY".into();
        cfg.controller.advisor.api_key_file = "/etc/aether/llm.key".into();
        let (text, redacted) = redact_config(&cfg).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("bob"), "{text}");
        assert!(
            text.contains("url = \"http://<redacted>@llm.local:8080/v1\""),
            "{text}"
        );
        // Where the key is kept stays: it says where to look, not what it is.
        assert!(text.contains("api_key_env = \"LLM_KEY\""), "{text}");
        assert!(
            text.contains("api_key_file = \"/etc/aether/llm.key\""),
            "{text}"
        );
        assert_eq!(
            redacted,
            vec!["controller.advisor.url (user information in the URL)".to_string()]
        );
        assert!(
            text.starts_with(
                "# the node's effective configuration; redacted: controller.advisor.url"
            )
        );
        // It is still a configuration file.
        let body: String = text.lines().skip(1).collect::<Vec<_>>().join("\n");
        assert!(toml::from_str::<toml::Value>(&body).is_ok());
    }

    #[test]
    fn secret_values_in_any_table_are_replaced_and_empty_ones_left() {
        let mut v: toml::Value = toml::from_str(
            r#"
name = "n1"
[a]
token = "AETHER1.abc"
api_key = ""
[a.b]
private_key = "-----BEGIN"
list = ["https://u@h/x", "plain"]
"#,
        )
        .unwrap();
        let mut out = Vec::new();
        redact(&mut v, "", &mut out);
        let text = toml::to_string(&v).unwrap();
        out.sort();
        assert!(
            !text.contains("AETHER1") && !text.contains("BEGIN"),
            "{text}"
        );
        assert!(text.contains("api_key = \"\""), "{text}");
        assert!(
            text.contains("https://<redacted>@h/x") && text.contains("plain"),
            "{text}"
        );
        assert_eq!(
            out,
            vec![
                "a.b.list (user information in the URL)",
                "a.b.private_key",
                "a.token",
            ]
        );
    }

    #[test]
    fn a_tail_starts_at_a_line() {
        assert_eq!(tail_str("abc\ndef\n", 100), "abc\ndef\n");
        assert_eq!(tail_str("abc\ndef\n", 6), "def\n");
        assert_eq!(tail_str("ab\u{e9}\ndef\n", 5), "def\n");
    }
}
