//! Node configuration: one serde struct, defaults, validation, and the precedence
//! flags > `AETHER_*` environment > file > defaults.
//!
//! Every leaf option `a.b_c` can be set from the environment as `AETHER_A_B_C`. The commented
//! example `config/aether.toml` lists every option; a test keeps it and this struct in step.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where the node looks for its config file when `--config` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/aether/aether.toml";

/// The longest `metrics.anomaly_window`: the metrics window keeps per-second points for this long
/// (`metrics::window` asserts it at compile time).
pub const ANOMALY_WINDOW_MAX_SECS: u64 = 15 * 60;

/// Errors from loading or validating configuration. Each names the option, where its value came
/// from and the expected form.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file '{path}': {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file '{path}': {message}")]
    File { path: PathBuf, message: String },
    #[error("invalid value for '{key}' (from {source_name}): {message}")]
    Value {
        key: String,
        source_name: String,
        message: String,
    },
}

/// The whole configuration of `aether node`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Node name, unique in the cluster (DNS-label-like). Default: this machine's hostname.
    pub name: Option<String>,
    /// UDP address of the QUIC endpoint (peers, Raft, remote admin).
    pub listen: SocketAddr,
    /// Address other nodes dial to reach this one (`host:port`). Default: the listen address;
    /// for an unspecified IP (0.0.0.0), the address of the interface the default route leaves
    /// by, or 127.0.0.1 where there is none.
    pub advertise: Option<String>,
    /// TCP address of the HTTP endpoint (`/metrics`, `/healthz`, `/readyz`). Keep it on loopback.
    pub http: SocketAddr,
    /// Data directory (`raft.redb`, `tls/`, `aether.sock`). Default: /var/lib/aether as root,
    /// else $XDG_DATA_HOME/aether.
    pub data_dir: Option<PathBuf>,
    /// Async worker threads of the node process (Raft, transport, metrics, admin; the log
    /// writer and sampling have their own threads). One measured best on a 2-core machine: less
    /// idle CPU and the same write throughput as two (README, Benchmark).
    pub worker_threads: usize,
    /// Replicated store (Raft) settings.
    pub raft: RaftConfig,
    /// Transport settings.
    pub net: NetConfig,
    /// Metrics pipeline: sampling, liveness and anomaly settings.
    pub metrics: MetricsConfig,
    /// GPU health (what the leader judges NVML's signals against) and energy per slice.
    pub gpu: GpuConfig,
    /// Workloads: moving instances off lost nodes, restarts, instance logs.
    pub deploy: DeployConfig,
    /// The controller on the leader: rules, forecast, safety bounds, grace window.
    pub controller: ControllerConfig,
    /// The request path: service ports on this node, load balancing, retries, waiting.
    pub ingress: IngressConfig,
    /// The terminal console (`aether tui`).
    pub tui: TuiConfig,
    /// Remote operators (`aether operator cert`, `aether --remote`).
    pub admin: AdminConfig,
    /// This node's certificate: its lifetime and renewal.
    pub tls: TlsConfig,
    /// Signals from outside the cluster: the cloud's spot-interruption notices.
    pub signals: SignalsConfig,
    /// Sleep and wake: the controller suspends idle nodes and resumes them ahead of load
    /// (off by default).
    pub power: PowerConfig,
    /// This node's carbon-intensity signal (carbon-aware scheduling of flexible slices).
    pub carbon: CarbonConfig,
}

/// Where this node reads the carbon intensity of its grid (gCO2eq/kWh, and a forecast when the
/// source has one). The leader holds flexible slices for a lower-carbon window and prefers
/// lower-intensity nodes for them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CarbonConfig {
    /// A JSON file, or an `http://` URL, answering in the shape of Electricity Maps
    /// (`/v3/carbon-intensity/latest` or `/forecast`), the Carbon Aware SDK
    /// (`/emissions/forecasts/current`) or WattTime (`/v3/forecast`); the shape is recognised.
    /// Empty: no signal.
    pub source: String,
    /// The zone or location the signal is for, shown beside it; empty: what the source names.
    pub zone: String,
    /// How often the source is read again.
    pub refresh: Dur,
}

impl Default for CarbonConfig {
    fn default() -> Self {
        CarbonConfig {
            source: String::new(),
            zone: String::new(),
            refresh: Dur::ms(300_000),
        }
    }
}

impl CarbonConfig {
    /// Check the section; the error names the option.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let s = self.source.trim();
        if s.starts_with("https://") {
            return Err((
                "carbon.source",
                format!(
                    "'{s}': https is not read by the node: fetch it to a file (e.g. with curl \
                     from a timer) and name the file, or use an http:// proxy on this host"
                ),
            ));
        }
        if let Some((scheme, _)) = s.split_once("://")
            && scheme != "http"
        {
            return Err((
                "carbon.source",
                format!("'{s}': expected a file path or an http:// URL, found scheme '{scheme}'"),
            ));
        }
        if self.refresh.0 < Duration::from_secs(1) || self.refresh.0 > Duration::from_secs(86_400) {
            return Err((
                "carbon.refresh",
                format!("expected 1s to 24h, found {}", self.refresh),
            ));
        }
        Ok(())
    }
}

/// Where a node's cloud announces spot interruptions (`signals.spot`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpotProvider {
    /// Not watched.
    #[default]
    None,
    /// The EC2 instance metadata service (IMDSv2): `spot/instance-action` and the rebalance
    /// recommendation.
    Aws,
}

impl fmt::Display for SpotProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpotProvider::None => "none",
            SpotProvider::Aws => "aws",
        })
    }
}

/// Signals from outside the cluster that the controller acts on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignalsConfig {
    /// Watch this node's cloud for spot interruption notices: `none` or `aws`. On a notice the
    /// node is marked interrupting and the leader drains it at once.
    pub spot: SpotProvider,
    /// Base URL of the cloud's metadata service (http only).
    pub spot_url: String,
    /// How often the metadata service is asked.
    pub spot_poll: Dur,
}

impl Default for SignalsConfig {
    fn default() -> Self {
        SignalsConfig {
            spot: SpotProvider::None,
            spot_url: "http://169.254.169.254".into(),
            spot_poll: Dur::ms(5_000),
        }
    }
}

/// Sleep and wake (`[power]`): when the cluster's measured and forecast load fits on fewer
/// nodes for `idle_for`, the controller proposes to drain a node and suspend it; when the
/// forecast needs capacity the awake nodes lack, it proposes to resume one, ahead by the wake
/// time it measured. The leader runs the commands with its own copy of this section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PowerConfig {
    /// Let the controller put nodes to sleep and wake them.
    pub enabled: bool,
    /// Program and arguments run on the leader to suspend a drained node; the node's name,
    /// address and MAC ("" when unknown) are appended, like Slurm's SuspendProgram.
    /// Required when enabled.
    pub suspend_command: Vec<String>,
    /// Program and arguments run on the leader to resume a sleeping node, with the node's
    /// name, address and MAC appended. Empty: send a Wake-on-LAN magic packet to the node's
    /// MAC (from `[power.mac]`).
    pub resume_command: Vec<String>,
    /// A resumed node whose metrics are not back within this time is marked down with the
    /// reason, and the controller stops counting on it. It is also the wake lead until a wake
    /// time has been measured.
    pub resume_timeout: Dur,
    /// How long the load must fit on fewer nodes before one is put to sleep.
    pub idle_for: Dur,
    /// Longest run of a suspend or resume command; a longer one is killed and reported.
    pub command_timeout: Dur,
    /// Share of the awake nodes' cores the measured and forecast load may use, 0.1 to 1.0:
    /// below it after a node sleeps, one may sleep; above it, one wakes.
    pub target_utilisation: f64,
    /// Nodes that never sleep, by name.
    pub never_sleep: Vec<String>,
    /// Where the Wake-on-LAN packet is sent (UDP, `host:port`).
    pub wol_address: String,
    /// Each node's MAC address by name (`n3 = "aa:bb:cc:dd:ee:ff"`), for Wake-on-LAN and the
    /// commands' third argument.
    pub mac: BTreeMap<String, String>,
}

impl Default for PowerConfig {
    fn default() -> Self {
        PowerConfig {
            enabled: false,
            suspend_command: Vec::new(),
            resume_command: Vec::new(),
            resume_timeout: Dur::ms(300_000),
            idle_for: Dur::ms(900_000),
            command_timeout: Dur::ms(60_000),
            target_utilisation: 0.7,
            never_sleep: Vec::new(),
            wol_address: "255.255.255.255:9".into(),
            mac: BTreeMap::new(),
        }
    }
}

impl SignalsConfig {
    /// Check the section; the error names the option.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.spot_poll.0 < Duration::from_millis(100)
            || self.spot_poll.0 > Duration::from_secs(60)
        {
            return Err((
                "signals.spot_poll",
                format!(
                    "expected 100ms to 60s (5s is intended), found {}",
                    self.spot_poll
                ),
            ));
        }
        let host = self
            .spot_url
            .strip_prefix("http://")
            .map(|rest| rest.split('/').next().unwrap_or_default());
        if !host.is_some_and(|h| !h.is_empty() && !h.contains('@')) {
            return Err((
                "signals.spot_url",
                format!(
                    "expected http://HOST[:PORT] (e.g. 'http://169.254.169.254'), found '{}'",
                    self.spot_url
                ),
            ));
        }
        Ok(())
    }
}

impl PowerConfig {
    /// Check the section; the error names the option.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (key, argv) in [
            ("power.suspend_command", &self.suspend_command),
            ("power.resume_command", &self.resume_command),
        ] {
            if argv.first().is_some_and(|p| p.trim().is_empty()) {
                return Err((
                    key,
                    "the program (first element) is empty: name a program, e.g. \
                     [\"/usr/local/sbin/node-power\", \"off\"]"
                        .into(),
                ));
            }
        }
        if self.enabled && self.suspend_command.is_empty() {
            return Err((
                "power.suspend_command",
                "power.enabled is true but no suspend command is set: name a program, or set \
                 power.enabled = false"
                    .into(),
            ));
        }
        for (key, d, min) in [
            ("power.resume_timeout", self.resume_timeout, 1_000),
            ("power.idle_for", self.idle_for, 1_000),
            ("power.command_timeout", self.command_timeout, 100),
        ] {
            if d.0 < Duration::from_millis(min) {
                return Err((
                    key,
                    format!("expected at least {}, found {d}", Dur::ms(min)),
                ));
            }
        }
        if !(self.target_utilisation >= 0.1 && self.target_utilisation <= 1.0) {
            return Err((
                "power.target_utilisation",
                format!(
                    "expected a number from 0.1 to 1.0, found {}",
                    self.target_utilisation
                ),
            ));
        }
        for n in &self.never_sleep {
            crate::domain::validate_name("node", n).map_err(|m| ("power.never_sleep", m))?;
        }
        parse_host_port(&self.wol_address).map_err(|m| ("power.wol_address", m))?;
        for (n, mac) in &self.mac {
            crate::domain::validate_name("node", n).map_err(|m| ("power.mac", m))?;
            mac.parse::<crate::domain::Mac>()
                .map_err(|m| ("power.mac", format!("for node '{n}': {m}")))?;
        }
        Ok(())
    }
}

/// Node certificates: how long they live. Each node renews its own once less than a third of
/// its lifetime is left, signing with the cluster CA from its replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Lifetime of a node certificate, applied when the leader signs one at join and when a
    /// node renews its own (at two thirds of it).
    pub node_cert_ttl: Dur,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            node_cert_ttl: Dur::ms(365 * 86_400_000),
        }
    }
}

/// Remote operators: their certificates and what the node accepts of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Longest lifetime `aether operator cert create --ttl` may ask for; longer is refused.
    pub operator_cert_max_ttl: Dur,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            operator_cert_max_ttl: Dur::ms(90 * 86_400_000),
        }
    }
}

/// `aether tui`. It reads the same file as the node (`--config`, else /etc/aether/aether.toml).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TuiConfig {
    /// Key overrides: an action's name and its keys, comma-separated (`veto = "x"`,
    /// `quit = "q, ctrl-q"`). The actions and their default keys are listed by `?` in the
    /// console and in aether-tui(1).
    pub keys: BTreeMap<String, String>,
}

/// The controller (DESIGN §9). Mode and pause are replicated (`aether override`), not here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControllerConfig {
    /// Run the controller when this node is the leader.
    pub enabled: bool,
    /// How often the leader decides.
    pub interval: Dur,
    /// Rule file; empty for the built-in rules (the same as config/rules.toml).
    pub rules: String,
    /// How long a guarded decision waits for a veto, unless set with
    /// `aether override mode guarded --grace`.
    pub grace: Dur,
    /// How far ahead the forecast is reported.
    pub horizon: Dur,
    /// Time from a scale-up to active instances, used to start predictive scale-ups early enough
    /// until the controller has measured it.
    pub startup: Dur,
    /// Most instances one decision adds or removes, unless max_step_percent allows more.
    pub max_step: u32,
    /// Most instances one decision adds or removes, in percent of the current count.
    pub max_step_percent: u32,
    /// Most instances one scale-in removes, unless max_step_down_percent allows more (never
    /// more than max_step and max_step_percent allow). With the down cooldown between
    /// changes, this is the most a slice shrinks per cooldown period.
    pub max_step_down: u32,
    /// Most instances one scale-in removes, in percent of the current count.
    pub max_step_down_percent: u32,
    /// After an operator sets a slice's count (`aether scale`, a blueprint apply), the
    /// controller does not scale it in below that count for this long, nor for less than the
    /// slice's down cooldown; it says so when it holds back.
    pub operator_hold: Dur,
    /// Most decisions a minute, cluster-wide.
    pub decisions_per_minute: u32,
    /// An operator's veto holds back the same action on the same target this long.
    pub veto_cooldown: Dur,
    /// A proposed decision (modes observe and propose) not approved in this time expires.
    pub proposal_ttl: Dur,
    /// An applied decision that has not converged in this time is recorded as such.
    pub converge_timeout: Dur,
    /// The outcome check runs this long after an applied decision converged.
    pub outcome_after: Dur,
    /// The on-device language model that reviews and explains proposals.
    pub model: ModelConfig,
    /// The strategic layer: advice from an OpenAI-compatible endpoint (off by default).
    pub advisor: AdvisorConfig,
}

/// The strategic layer (DESIGN §9, `[controller.advisor]`): every `interval` the leader sends a
/// shaped summary of the last hour to an OpenAI-compatible endpoint and keeps the advice it
/// answers with (`aether advice`). Advice never writes. Off by default: nothing leaves the
/// cluster unless this is enabled with a URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdvisorConfig {
    /// Ask the endpoint for advice while this node leads.
    pub enabled: bool,
    /// The endpoint's base URL, up to and including `/v1` (`http://127.0.0.1:8080/v1`); the
    /// request goes to `<url>/chat/completions`. http only.
    pub url: String,
    /// The model named in each request.
    pub model: String,
    /// The environment variable that holds the API key (sent as a bearer token); empty for
    /// none. The key itself never goes in this file.
    pub api_key_env: String,
    /// A file that holds the API key (read before each request, so it can be rotated); used
    /// when api_key_env is empty or unset.
    pub api_key_file: String,
    /// How often the leader asks: 30s to 60s is the intended range (1s to 1h is accepted).
    pub interval: Dur,
    /// Longest wait for one answer; past it the request counts as a timeout.
    pub budget: Dur,
    /// Most items kept from one answer (1 to 20).
    pub max_items: u32,
    /// How the request asks for the schema: `json_schema` (OpenAI, vLLM, llama.cpp's server) or
    /// `json_object` (`{"type": "json_object", "schema": …}`: llama-cpp-python's server).
    pub response_format: ResponseFormat,
}

/// The shape of `response_format` in an advisor request (`controller.advisor.response_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormat {
    /// `{"type": "json_schema", "json_schema": {"name": "advice", "schema": …}}`.
    JsonSchema,
    /// `{"type": "json_object", "schema": …}`.
    JsonObject,
}

impl Default for AdvisorConfig {
    fn default() -> Self {
        AdvisorConfig {
            enabled: false,
            url: String::new(),
            model: String::new(),
            api_key_env: String::new(),
            api_key_file: String::new(),
            interval: Dur::ms(60_000),
            budget: Dur::ms(20_000),
            max_items: 5,
            response_format: ResponseFormat::JsonSchema,
        }
    }
}

/// How the model's weights are held in memory (`controller.model.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelFormat {
    /// 8-bit blocks, requantised at load (about 3× smaller than f32).
    #[serde(rename = "q8_0")]
    Q8_0,
    /// Half precision (dequantised at load).
    F16,
    /// Single precision (dequantised at load; the largest, and the fastest prompt).
    F32,
    /// As stored in the file (Q4_1 has no vector kernel in candle: slow).
    Keep,
}

impl std::fmt::Display for ModelFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModelFormat::Q8_0 => "q8_0",
            ModelFormat::F16 => "f16",
            ModelFormat::F32 => "f32",
            ModelFormat::Keep => "keep",
        })
    }
}

/// The language model (DESIGN §9): SmolLM2-135M-Instruct (GGUF) run on the leader with candle.
/// It only returns a verdict and a reason; without a model file the controller runs on its rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Review proposals with the model when its file is present.
    pub enabled: bool,
    /// The GGUF file; empty for `<data-dir>/models/model.gguf`, where `aether model pull` puts it.
    pub path: String,
    /// What `aether model pull` fetches without `--from`.
    pub url: String,
    /// The model reviews at most one proposal per interval; others wait for it (up to the budget).
    pub review_interval: Dur,
    /// Longest wait for a verdict; past it the review is recorded as `timeout` and the rules decide.
    pub budget: Dur,
    /// Inference threads. One is fastest on a busy 2-core machine (two spin on each other).
    pub threads: u32,
    /// In-memory weight format of prompts: q8_0, f16, f32 or keep (see `aether model status`).
    /// Steps of one token (the reason) read the file's own Q4_1 blocks whatever the format.
    pub format: ModelFormat,
}

/// A public SmolLM2-135M-Instruct GGUF (llama architecture).
pub const DEFAULT_MODEL_URL: &str = "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/resolve/main/smollm2-135m-instruct-q8_0.gguf";

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            enabled: true,
            path: String::new(),
            url: DEFAULT_MODEL_URL.into(),
            review_interval: Dur::ms(2_000),
            budget: Dur::ms(3_000),
            threads: 1,
            format: ModelFormat::F32,
        }
    }
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            enabled: true,
            interval: Dur::ms(1_000),
            rules: String::new(),
            grace: Dur::ms(15_000),
            horizon: Dur::ms(300_000),
            startup: Dur::ms(10_000),
            max_step: 4,
            max_step_percent: 200,
            max_step_down: 2,
            max_step_down_percent: 50,
            operator_hold: Dur::ms(300_000),
            decisions_per_minute: 6,
            veto_cooldown: Dur::ms(900_000),
            proposal_ttl: Dur::ms(600_000),
            converge_timeout: Dur::ms(180_000),
            outcome_after: Dur::ms(60_000),
            model: ModelConfig::default(),
            advisor: AdvisorConfig::default(),
        }
    }
}

/// Workloads (DESIGN §8): the leader's assignment loop and each node's supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeployConfig {
    /// A node marked down keeps its instances this long before they are placed elsewhere, so a
    /// brief outage moves nothing. Counted from when the current leader saw it down.
    pub reschedule_after: Dur,
    /// Wait before restarting an instance that exited; doubled for each crash in a row.
    pub restart_backoff: Dur,
    /// Longest wait between restarts; an instance active this long has its backoff reset.
    pub restart_backoff_max: Dur,
    /// An instance's log file (`<data-dir>/logs/<blueprint>/<slice>/<index>.log`) is rotated at
    /// this size.
    pub log_max_bytes: u64,
    /// Rotated log files kept per instance (`.log.1` is the newest).
    pub log_keep: u32,
    /// The GPUs this node hands to instances, one instance each: "all" (every GPU NVML lists),
    /// "none", or NVML indices such as "0,2". Leave some out to keep them for work outside
    /// Aether; list them by hand where NVML cannot be used (a container without
    /// libnvidia-ml). An instance sees only its own (CUDA_VISIBLE_DEVICES).
    pub gpus: GpuOffer,
    /// The user instances run as when their slice names none (the node must run as root to
    /// switch users; otherwise instances run as the node's own user, and a slice that names
    /// another user is not started).
    pub user: String,
    /// Whether a slice may run as root (it must also say `user = "root"` itself).
    pub allow_root: bool,
    /// Variables of the node's own environment that instances also get, comma-separated
    /// (e.g. "HTTP_PROXY,NO_PROXY"). Instances otherwise see their blueprint's env, PORT,
    /// AETHER_*, PATH, HOME, LANG and TMPDIR only.
    pub pass_env: String,
    /// Whether each instance gets a cgroup with its slice's resources as limits: a CPU quota of
    /// its cores and a memory limit of its bytes (killed, and shown "oom-killed", beyond it).
    /// Needs a writable cgroup filesystem (v2, or v1 cpu and memory); without one, instances
    /// run without limits and the node says why at startup.
    pub limits: bool,
}

impl Default for DeployConfig {
    fn default() -> Self {
        DeployConfig {
            reschedule_after: Dur::ms(30_000),
            restart_backoff: Dur::ms(1_000),
            restart_backoff_max: Dur::ms(30_000),
            log_max_bytes: 10 << 20,
            log_keep: 3,
            gpus: GpuOffer::All,
            user: "nobody".into(),
            allow_root: false,
            pass_env: String::new(),
            limits: true,
        }
    }
}

/// The ingress (DESIGN §8): every node listens on each slice's service port and routes each
/// request to a ready instance anywhere in the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngressConfig {
    /// The address service ports are bound on ("0.0.0.0": every interface; a loopback address
    /// keeps a node's services to itself).
    pub bind: std::net::IpAddr,
    /// Per request, from sending it to an instance to the response's head, unless the slice's
    /// `service.timeout` says otherwise. Past it the client gets 504.
    pub timeout: Dur,
    /// How long a request waits for a ready instance (a slice scaling from zero, or every
    /// instance restarting) before the client gets 503 with Retry-After.
    pub queue_timeout: Dur,
    /// Requests that may wait per slice on this node; more get 503 at once.
    pub max_waiting: u32,
    /// Consecutive failures (5xx or failed connects) after which an instance is ejected from
    /// this node's balancing.
    pub eject_after: u32,
    /// The first ejection's length; each ejection in a row doubles it, up to `eject_max`.
    pub eject_for: Dur,
    /// Longest ejection.
    pub eject_max: Dur,
    /// Retries of a failed request (other than a failed connect, always retried once per
    /// instance) are allowed up to this share of the requests of the last 10 s, plus 10.
    pub retry_budget: f32,
}

impl Default for IngressConfig {
    fn default() -> Self {
        IngressConfig {
            bind: std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            timeout: Dur::ms(30_000),
            queue_timeout: Dur::ms(30_000),
            max_waiting: 1_000,
            eject_after: 5,
            eject_for: Dur::ms(10_000),
            eject_max: Dur::ms(300_000),
            retry_budget: 0.2,
        }
    }
}

/// Raft timing, membership and log compaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftConfig {
    /// Leader heartbeat period.
    pub heartbeat_interval: Dur,
    /// A voter that hears nothing from a leader for the lease (`election_timeout_max`) plus a
    /// random time in [min, max] asks for a pre-vote, then, with a majority, starts an election.
    pub election_timeout_min: Dur,
    /// Upper end of the election timeout range.
    pub election_timeout_max: Dur,
    /// Build a snapshot and compact the log after this many new entries.
    pub snapshot_after_entries: u64,
    /// Log entries kept behind a snapshot, so slow followers catch up without one.
    pub keep_after_snapshot: u64,
    /// Voting members wanted (odd, 1..=7). Later nodes join as learners and still run work.
    pub voters: u8,
    /// How long a write waits for a leader and a quorum before it fails (exit code 3).
    pub write_timeout: Dur,
    /// Page cache of the raft.redb file, in bytes (redb's own default is 1 GiB).
    pub cache_bytes: u64,
}

/// QUIC transport limits and timers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetConfig {
    /// Largest frame accepted on any stream; a larger one closes that stream with an error.
    pub max_frame_bytes: u64,
    /// Snapshot chunk size sent per RPC (below max_frame_bytes).
    pub snapshot_chunk_bytes: u64,
    /// Deadline for one peer RPC (vote, append entries, forward).
    pub rpc_timeout: Dur,
    /// Largest wait between reconnect attempts to an unreachable peer.
    pub reconnect_backoff_max: Dur,
    /// A QUIC connection with no traffic for this long is closed (keep-alives are sent at a third).
    pub idle_timeout: Dur,
}

/// Metrics pipeline (DESIGN §7): sampling, push to the leader, liveness, anomalies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// How often each node samples and pushes an update to the leader; the leader broadcasts
    /// the cluster snapshot at the same period.
    pub interval: Dur,
    /// A node whose updates stop for this long is marked suspect.
    pub suspect_after: Dur,
    /// A node whose updates stop for this long is marked down.
    pub down_after: Dur,
    /// A new leader whose last received snapshot is older than this asks every node for a fresh
    /// sample at once.
    pub refresh_after: Dur,
    /// Robust z-score above which a value is flagged as an anomaly.
    pub anomaly_threshold: f32,
    /// History the anomaly detector compares a value against.
    pub anomaly_window: Dur,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            interval: Dur::ms(1_000),
            suspect_after: Dur::ms(3_000),
            down_after: Dur::ms(10_000),
            refresh_after: Dur::ms(2_000),
            anomaly_threshold: 6.0,
            anomaly_window: Dur::ms(600_000),
        }
    }
}

/// GPU health and energy (DESIGN §7). The leader judges every GPU's temperature trend toward its
/// slowdown threshold, its XID and uncorrected ECC errors and its throttling over the metrics
/// window; each finding is an anomaly flag the controller's node rules read (`gpu_health`,
/// `gpu_errors`, `gpu_temp_margin`, `gpu_power_capped`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GpuConfig {
    /// Temperature history the trend line toward the slowdown threshold is fitted over.
    pub trend_window: Dur,
    /// A GPU whose trend reaches its slowdown threshold within this is flagged.
    pub warn_within: Dur,
    /// Smallest rise that counts as a trend, °C per minute.
    pub min_rise_per_min: f32,
    /// A new critical XID or uncorrected ECC error keeps its GPU flagged this long.
    pub errors_for: Dur,
    /// Power capping or thermal slowdown held this long (in 90% of the samples) is flagged.
    pub throttled_for: Dur,
    /// Watts one fully busy core draws: an instance's CPU power is estimated as the cores it
    /// uses × this (energy per slice in `aether metrics` and `/metrics`).
    pub cpu_watts_per_core: f64,
}

impl Default for GpuConfig {
    fn default() -> Self {
        GpuConfig {
            trend_window: Dur::ms(600_000),
            warn_within: Dur::ms(900_000),
            min_rise_per_min: 0.2,
            errors_for: Dur::ms(900_000),
            throttled_for: Dur::ms(300_000),
            cpu_watts_per_core: 5.0,
        }
    }
}

impl GpuConfig {
    /// Check the section; the error names the option.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let max = Duration::from_secs(ANOMALY_WINDOW_MAX_SECS);
        for (key, d, min) in [
            (
                "gpu.trend_window",
                self.trend_window,
                Duration::from_secs(60),
            ),
            ("gpu.errors_for", self.errors_for, Duration::from_secs(10)),
            (
                "gpu.throttled_for",
                self.throttled_for,
                Duration::from_secs(10),
            ),
        ] {
            if d.0 < min || d.0 > max {
                return Err((
                    key,
                    format!(
                        "expected {} to 15m (the metrics window keeps per-second points that long), found {d}",
                        Dur(min)
                    ),
                ));
            }
        }
        if self.warn_within.0 < Duration::from_secs(60)
            || self.warn_within.0 > Duration::from_secs(86_400)
        {
            return Err((
                "gpu.warn_within",
                format!("expected 1m to 24h, found {}", self.warn_within),
            ));
        }
        if !(self.min_rise_per_min.is_finite() && self.min_rise_per_min > 0.0) {
            return Err((
                "gpu.min_rise_per_min",
                format!(
                    "expected a number above 0 (°C per minute), found {}",
                    self.min_rise_per_min
                ),
            ));
        }
        if !(self.cpu_watts_per_core.is_finite()
            && (0.0..=1000.0).contains(&self.cpu_watts_per_core))
        {
            return Err((
                "gpu.cpu_watts_per_core",
                format!(
                    "expected 0 to 1000 watts per core, found {}",
                    self.cpu_watts_per_core
                ),
            ));
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: None,
            listen: "0.0.0.0:7420".parse().expect("literal"),
            advertise: None,
            http: "127.0.0.1:7421".parse().expect("literal"),
            data_dir: None,
            worker_threads: 1,
            raft: RaftConfig::default(),
            net: NetConfig::default(),
            metrics: MetricsConfig::default(),
            gpu: GpuConfig::default(),
            deploy: DeployConfig::default(),
            controller: ControllerConfig::default(),
            ingress: IngressConfig::default(),
            tui: TuiConfig::default(),
            admin: AdminConfig::default(),
            tls: TlsConfig::default(),
            signals: SignalsConfig::default(),
            power: PowerConfig::default(),
            carbon: CarbonConfig::default(),
        }
    }
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            heartbeat_interval: Dur::ms(50),
            election_timeout_min: Dur::ms(200),
            election_timeout_max: Dur::ms(400),
            snapshot_after_entries: 10_000,
            keep_after_snapshot: 1_000,
            voters: 3,
            write_timeout: Dur::ms(5_000),
            cache_bytes: 32 * 1024 * 1024,
        }
    }
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            max_frame_bytes: 16 * 1024 * 1024,
            snapshot_chunk_bytes: 1024 * 1024,
            rpc_timeout: Dur::ms(2_000),
            reconnect_backoff_max: Dur::ms(2_000),
            idle_timeout: Dur::ms(10_000),
        }
    }
}

impl AdvisorConfig {
    /// Check the section; the error names the option.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.interval.0 < Duration::from_secs(1) || self.interval.0 > Duration::from_secs(3600) {
            return Err((
                "controller.advisor.interval",
                format!(
                    "expected 1s to 1h (30s to 60s is intended), found {}",
                    self.interval
                ),
            ));
        }
        if self.budget.0 < Duration::from_millis(100) || self.budget.0 > self.interval.0 {
            return Err((
                "controller.advisor.budget",
                format!(
                    "expected 100ms to controller.advisor.interval ({}), found {}",
                    self.interval, self.budget
                ),
            ));
        }
        if self.max_items == 0 || self.max_items > 20 {
            return Err((
                "controller.advisor.max_items",
                format!("expected 1 to 20, found {}", self.max_items),
            ));
        }
        // The value is not echoed: it may be a key put here by mistake.
        if self
            .api_key_env
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || c == '_'))
        {
            return Err((
                "controller.advisor.api_key_env",
                "expected the name of an environment variable (letters, digits, '_'), found other \
                 characters: put the key in that variable (or in api_key_file), never here"
                    .into(),
            ));
        }
        if !self.enabled {
            return Ok(());
        }
        if self.url.is_empty() {
            return Err((
                "controller.advisor.url",
                "the advisor is enabled without a url: set it to the endpoint's base, e.g. 'http://127.0.0.1:8080/v1'".into(),
            ));
        }
        if self.url.starts_with("https://") {
            return Err((
                "controller.advisor.url",
                format!(
                    "'{}': https is not supported by this build; use http to an endpoint on this host or network (or a local TLS proxy)",
                    self.url
                ),
            ));
        }
        let Some(rest) = self.url.strip_prefix("http://") else {
            return Err((
                "controller.advisor.url",
                format!(
                    "expected a url such as 'http://127.0.0.1:8080/v1', found '{}'",
                    self.url
                ),
            ));
        };
        let host = rest.split('/').next().unwrap_or_default();
        if host.is_empty() || host.contains('@') {
            return Err((
                "controller.advisor.url",
                format!(
                    "expected http://HOST[:PORT]/PATH without credentials, found '{}'",
                    self.url
                ),
            ));
        }
        if self.model.is_empty() {
            return Err((
                "controller.advisor.model",
                "the advisor is enabled without a model: name the model the endpoint serves".into(),
            ));
        }
        Ok(())
    }
}

/// A duration written as text (`250ms`, `5s`, `1h`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn ms(ms: u64) -> Dur {
        Dur(Duration::from_millis(ms))
    }
}

impl fmt::Debug for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms % 1000 == 0 && ms > 0 {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

/// Parse a duration such as `250ms`, `5s`, `2m`, `1h30m`: whole numbers, each followed by
/// one of the units `ms`, `s`, `m`, `h`, `d`, with no spaces; `0` alone is zero.
///
/// One spelling everywhere, the one Aether prints (`1m30s`): files and flags read like the
/// output, and nothing is a guess (a looser grammar reads `2 sec` but also `1M` as a month).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "expected a duration such as '500ms', '5s', '1m30s' or '1h' \
             (units ms, s, m, h, d; no spaces), found '{s}'"
        )
    };
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = t;
    let mut total_ms: u64 = 0;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let letters = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let unit_ms: u64 = match &rest[..letters] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        rest = &rest[letters..];
        total_ms = n
            .checked_mul(unit_ms)
            .and_then(|v| v.checked_add(total_ms))
            .ok_or_else(bad)?;
    }
    Ok(Duration::from_millis(total_ms))
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

/// Which GPUs a node hands to instances (`deploy.gpus`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum GpuOffer {
    /// Every GPU NVML lists.
    #[default]
    All,
    /// Exactly these NVML indices (none: `"none"`), whatever NVML lists.
    Listed(Vec<u32>),
}

impl GpuOffer {
    /// The GPUs offered, given what NVML lists.
    pub fn resolve(&self, nvml: &[u32]) -> Vec<u32> {
        match self {
            GpuOffer::All => nvml.to_vec(),
            GpuOffer::Listed(l) => l.clone(),
        }
    }
}

impl fmt::Display for GpuOffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuOffer::All => f.write_str("all"),
            GpuOffer::Listed(l) if l.is_empty() => f.write_str("none"),
            GpuOffer::Listed(l) => {
                let ids: Vec<String> = l.iter().map(u32::to_string).collect();
                f.write_str(&ids.join(","))
            }
        }
    }
}

impl std::str::FromStr for GpuOffer {
    type Err = String;
    fn from_str(s: &str) -> Result<GpuOffer, String> {
        match s.trim() {
            "all" => return Ok(GpuOffer::All),
            "none" => return Ok(GpuOffer::Listed(Vec::new())),
            _ => {}
        }
        let mut ids: Vec<u32> = Vec::new();
        for part in s.split(',') {
            let id: u32 = part.trim().parse().map_err(|_| {
                format!("expected \"all\", \"none\" or GPU indices such as \"0,2\", found '{s}'")
            })?;
            if id > 255 {
                return Err(format!(
                    "GPU index {id} in '{s}' is out of range: NVML counts from 0 to 255"
                ));
            }
            if ids.contains(&id) {
                return Err(format!("GPU {id} is listed twice in '{s}'"));
            }
            ids.push(id);
        }
        Ok(GpuOffer::Listed(ids))
    }
}

impl Serialize for GpuOffer {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for GpuOffer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// One override from the command line: the option's dotted key, its value, and the flag name.
pub struct FlagOverride {
    pub key: &'static str,
    pub value: toml::Value,
    pub flag: &'static str,
}

impl Config {
    /// A config with every optional field set, so that its serialisation names every option.
    pub fn sample() -> Config {
        Config {
            name: Some("n1".into()),
            advertise: Some("127.0.0.1:7420".into()),
            data_dir: Some("/var/lib/aether".into()),
            tui: TuiConfig {
                keys: BTreeMap::from([("veto".into(), "v".into())]),
            },
            power: PowerConfig {
                mac: BTreeMap::from([("web".into(), "aa:bb:cc:dd:ee:ff".into())]),
                ..PowerConfig::default()
            },
            ..Config::default()
        }
    }

    /// Every leaf option as a dotted key (`raft.voters`), in file order.
    pub fn keys() -> Vec<String> {
        let v = toml::Value::try_from(Config::sample()).expect("config serialises");
        let mut out = Vec::new();
        leaf_keys(&v, "", &mut out);
        out
    }

    /// The environment variable for a dotted key: `raft.voters` → `AETHER_RAFT_VOTERS`.
    pub fn env_var(key: &str) -> String {
        format!("AETHER_{}", key.replace('.', "_").to_ascii_uppercase())
    }

    /// Load with precedence flags > environment > file > defaults. `file` is `--config`; when it
    /// is `None`, [`DEFAULT_CONFIG_FILE`] is read if it exists.
    pub fn load(
        file: Option<&Path>,
        env: &BTreeMap<String, String>,
        flags: Vec<FlagOverride>,
    ) -> Result<Config, ConfigError> {
        let path = match file {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.exists()),
        };
        let mut doc = match &path {
            Some(p) => parse_file(p)?,
            None => toml::Table::new(),
        };
        let sample = toml::Value::try_from(Config::sample()).expect("config serialises");
        for key in Config::keys() {
            let var = Config::env_var(&key);
            if let Some(raw) = env.get(&var) {
                let kind = lookup(&sample, &key).expect("key from sample");
                let value = value_from_text(kind, raw).map_err(|message| ConfigError::Value {
                    key: key.clone(),
                    source_name: format!("environment variable {var}"),
                    message,
                })?;
                set_checked(
                    &mut doc,
                    &key,
                    value,
                    &format!("environment variable {var}"),
                )?;
            }
        }
        for f in flags {
            set_checked(&mut doc, f.key, f.value, &format!("flag {}", f.flag))?;
        }
        let cfg: Config = toml::Value::Table(doc)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Value {
                key: "config".into(),
                source_name: "merged config".into(),
                message: e.message().into(),
            })?;
        cfg.validate(path.as_deref())?;
        Ok(cfg)
    }

    /// Checks that hold across options.
    pub fn validate(&self, file: Option<&Path>) -> Result<(), ConfigError> {
        let src = file
            .map(|p| format!("config file '{}' or flags", p.display()))
            .unwrap_or("flags or environment".into());
        let bad = |key: &str, message: String| ConfigError::Value {
            key: key.into(),
            source_name: src.clone(),
            message,
        };
        let r = &self.raft;
        if let Some(name) = &self.name {
            crate::domain::validate_name("node name", name).map_err(|m| bad("name", m))?;
        }
        if r.voters == 0 || r.voters > 7 || r.voters % 2 == 0 {
            return Err(bad(
                "raft.voters",
                format!("expected an odd number from 1 to 7, found {}", r.voters),
            ));
        }
        if r.election_timeout_min.0 >= r.election_timeout_max.0 {
            return Err(bad(
                "raft.election_timeout_min",
                format!(
                    "must be below raft.election_timeout_max ({} >= {})",
                    r.election_timeout_min, r.election_timeout_max
                ),
            ));
        }
        if r.heartbeat_interval.0 * 2 > r.election_timeout_min.0 {
            return Err(bad(
                "raft.heartbeat_interval",
                format!(
                    "must be at most half of raft.election_timeout_min ({} vs {})",
                    r.heartbeat_interval, r.election_timeout_min
                ),
            ));
        }
        if r.heartbeat_interval.0.is_zero() || r.write_timeout.0.is_zero() {
            return Err(bad(
                "raft.heartbeat_interval",
                "durations must be above zero".into(),
            ));
        }
        if r.cache_bytes < 1024 * 1024 {
            return Err(bad(
                "raft.cache_bytes",
                format!("expected at least 1048576, found {}", r.cache_bytes),
            ));
        }
        if r.snapshot_after_entries == 0 {
            return Err(bad(
                "raft.snapshot_after_entries",
                "expected at least 1".into(),
            ));
        }
        let n = &self.net;
        if n.max_frame_bytes < 64 * 1024 {
            return Err(bad(
                "net.max_frame_bytes",
                format!("expected at least 65536, found {}", n.max_frame_bytes),
            ));
        }
        if n.snapshot_chunk_bytes == 0 || n.snapshot_chunk_bytes + 64 * 1024 > n.max_frame_bytes {
            return Err(bad(
                "net.snapshot_chunk_bytes",
                format!(
                    "expected 1 to net.max_frame_bytes - 65536 ({}), found {}",
                    n.max_frame_bytes - 65536,
                    n.snapshot_chunk_bytes
                ),
            ));
        }
        if n.idle_timeout.0 < r.election_timeout_max.0 {
            return Err(bad(
                "net.idle_timeout",
                format!(
                    "must be at least raft.election_timeout_max ({})",
                    r.election_timeout_max
                ),
            ));
        }
        if self.worker_threads == 0 || self.worker_threads > 256 {
            return Err(bad(
                "worker_threads",
                format!("expected 1 to 256, found {}", self.worker_threads),
            ));
        }
        let c = &self.controller;
        if c.interval.0 < Duration::from_millis(100) || c.interval.0 > Duration::from_secs(60) {
            return Err(bad(
                "controller.interval",
                format!("expected 100ms to 60s, found {}", c.interval),
            ));
        }
        if c.max_step == 0 {
            return Err(bad(
                "controller.max_step",
                "expected at least 1, found 0".into(),
            ));
        }
        if c.decisions_per_minute == 0 {
            return Err(bad(
                "controller.decisions_per_minute",
                "expected at least 1, found 0".into(),
            ));
        }
        if c.horizon.0 < Duration::from_secs(10) || c.horizon.0 > Duration::from_secs(7200) {
            return Err(bad(
                "controller.horizon",
                format!("expected 10s to 2h, found {}", c.horizon),
            ));
        }
        let m = &c.model;
        if m.threads == 0 || m.threads > 64 {
            return Err(bad(
                "controller.model.threads",
                format!("expected 1 to 64, found {}", m.threads),
            ));
        }
        if m.budget.0 < Duration::from_millis(100) || m.budget.0 > Duration::from_secs(60) {
            return Err(bad(
                "controller.model.budget",
                format!("expected 100ms to 60s, found {}", m.budget),
            ));
        }
        if m.review_interval.0 > Duration::from_secs(3600) {
            return Err(bad(
                "controller.model.review_interval",
                format!("expected at most 1h, found {}", m.review_interval),
            ));
        }
        c.advisor.validate().map_err(|(k, m)| bad(k, m))?;
        self.signals.validate().map_err(|(k, m)| bad(k, m))?;
        self.carbon.validate().map_err(|(k, m)| bad(k, m))?;
        self.gpu.validate().map_err(|(k, m)| bad(k, m))?;
        if self.admin.operator_cert_max_ttl.0 < Duration::from_secs(1) {
            return Err(bad(
                "admin.operator_cert_max_ttl",
                format!(
                    "expected at least 1s, found {}",
                    self.admin.operator_cert_max_ttl
                ),
            ));
        }
        if self.tls.node_cert_ttl.0 < Duration::from_secs(10) {
            return Err(bad(
                "tls.node_cert_ttl",
                format!(
                    "expected at least 10s (365d is intended), found {}",
                    self.tls.node_cert_ttl
                ),
            ));
        }
        let d = &self.deploy;
        if d.restart_backoff.0.is_zero() || d.restart_backoff.0 > d.restart_backoff_max.0 {
            return Err(bad(
                "deploy.restart_backoff",
                format!(
                    "expected above zero and at most deploy.restart_backoff_max ({}), found {}",
                    d.restart_backoff_max, d.restart_backoff
                ),
            ));
        }
        if d.log_max_bytes < 64 * 1024 {
            return Err(bad(
                "deploy.log_max_bytes",
                format!("expected at least 65536, found {}", d.log_max_bytes),
            ));
        }
        if d.log_keep == 0 || d.log_keep > 100 {
            return Err(bad(
                "deploy.log_keep",
                format!("expected 1 to 100, found {}", d.log_keep),
            ));
        }
        let m = &self.metrics;
        if m.interval.0 < Duration::from_millis(100) || m.interval.0 > Duration::from_secs(60) {
            return Err(bad(
                "metrics.interval",
                format!("expected 100ms to 60s, found {}", m.interval),
            ));
        }
        if m.suspect_after.0 < m.interval.0 * 2 {
            return Err(bad(
                "metrics.suspect_after",
                format!(
                    "must be at least twice metrics.interval ({}), found {}",
                    m.interval, m.suspect_after
                ),
            ));
        }
        if m.down_after.0 <= m.suspect_after.0 {
            return Err(bad(
                "metrics.down_after",
                format!(
                    "must be above metrics.suspect_after ({}), found {}",
                    m.suspect_after, m.down_after
                ),
            ));
        }
        if !(m.anomaly_threshold.is_finite() && m.anomaly_threshold >= 2.0) {
            return Err(bad(
                "metrics.anomaly_threshold",
                format!(
                    "expected a number of at least 2.0, found {}",
                    m.anomaly_threshold
                ),
            ));
        }
        if m.anomaly_window.0 < m.interval.0 * 30
            || m.anomaly_window.0 > Duration::from_secs(ANOMALY_WINDOW_MAX_SECS)
        {
            return Err(bad(
                "metrics.anomaly_window",
                format!(
                    "expected 30 × metrics.interval to 15m, found {}",
                    m.anomaly_window
                ),
            ));
        }
        if let Some(a) = &self.advertise {
            parse_host_port(a).map_err(|m| bad("advertise", m))?;
        }
        self.power.validate().map_err(|(k, m)| bad(k, m))?;
        Ok(())
    }

    /// The address peers dial.
    pub fn advertise_addr(&self) -> String {
        match &self.advertise {
            Some(a) => a.clone(),
            None if self.listen.ip().is_unspecified() => SocketAddr::new(
                default_route_ip().unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
                self.listen.port(),
            )
            .to_string(),
            None => self.listen.to_string(),
        }
    }
}

/// The default data directory for this user (DESIGN §12).
pub fn default_data_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/aether");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("aether");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/aether")
}

/// The local IPv4 address the default route leaves by: a UDP socket "connected" to a
/// documentation address (RFC 5737) asks the kernel for the route; nothing is sent.
fn default_route_ip() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}

/// Check a `host:port` string.
pub fn parse_host_port(s: &str) -> Result<(), String> {
    let ok = s
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected host:port such as '10.0.0.5:7420', found '{s}'"
        ))
    }
}

fn parse_file(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    let file_err = |message: String| ConfigError::File {
        path: path.into(),
        message,
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| file_err(e.to_string()))?;
    // Deserialise the file alone so unknown keys and bad values are reported against it, with
    // the line and column toml gives.
    toml::from_str::<Config>(&text).map_err(|e| file_err(e.to_string().trim_end().to_string()))?;
    Ok(table)
}

fn leaf_keys(v: &toml::Value, prefix: &str, out: &mut Vec<String>) {
    if let toml::Value::Table(t) = v {
        for (k, v) in t {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if v.is_table() {
                leaf_keys(v, &key, out)
            } else {
                out.push(key)
            }
        }
    }
}

fn lookup<'a>(v: &'a toml::Value, key: &str) -> Option<&'a toml::Value> {
    key.split('.').try_fold(v, |v, part| v.get(part))
}

fn value_from_text(kind: &toml::Value, raw: &str) -> Result<toml::Value, String> {
    Ok(match kind {
        toml::Value::Integer(_) => toml::Value::Integer(
            raw.trim()
                .parse()
                .map_err(|_| format!("expected a whole number, found '{raw}'"))?,
        ),
        toml::Value::Boolean(_) => toml::Value::Boolean(
            raw.trim()
                .parse()
                .map_err(|_| format!("expected true or false, found '{raw}'"))?,
        ),
        toml::Value::Float(_) => toml::Value::Float(
            raw.trim()
                .parse()
                .map_err(|_| format!("expected a number, found '{raw}'"))?,
        ),
        // An argv or a list of names: a TOML array, e.g. `["/usr/bin/x", "off"]`.
        toml::Value::Array(_) => format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .filter(|v| v.is_array())
            .ok_or_else(|| {
                format!("expected a list such as [\"/usr/local/bin/x\", \"arg\"], found '{raw}'")
            })?,
        _ => toml::Value::String(raw.to_string()),
    })
}

/// Set `key` in `doc`, then check that the result still deserialises, so a bad value is reported
/// against its own source.
fn set_checked(
    doc: &mut toml::Table,
    key: &str,
    value: toml::Value,
    source_name: &str,
) -> Result<(), ConfigError> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().expect("non-empty key");
    let mut t = &mut *doc;
    for p in parts {
        t = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .expect("config sections are tables");
    }
    t.insert(last.to_string(), value);
    toml::Value::Table(doc.clone())
        .try_into::<Config>()
        .map_err(|e| ConfigError::Value {
            key: key.into(),
            source_name: source_name.into(),
            message: e.message().to_string(),
        })?;
    Ok(())
}

#[cfg(test)]
mod tests;
