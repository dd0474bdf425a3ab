//! Plain domain types shared by every subsystem. No I/O here.
//!
//! ("model" is kept for the language model; the cluster's records are "records".)

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Raft node id. Allocated by the cluster when a node joins; the founding node is 1.
pub type NodeId = u64;

/// Milliseconds since the Unix epoch. Stamped into each log entry by the node that proposes it,
/// so that applying the log is deterministic on every member.
pub type Millis = u64;

/// The wall clock in [`Millis`].
pub fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Lifecycle state of a member as recorded in the replicated store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Ready,
    Draining,
    Drained,
    Asleep,
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NodeState::Ready => "ready",
            NodeState::Draining => "draining",
            NodeState::Drained => "drained",
            NodeState::Asleep => "asleep",
        })
    }
}

/// Liveness as the leader judges it from metrics updates (DESIGN §7): a node whose updates
/// stop is `suspect`, then `down`; it is `ready` again when they resume.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    #[default]
    Ready,
    Suspect,
    Down,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Health::Ready => "ready",
            Health::Suspect => "suspect",
            Health::Down => "down",
        })
    }
}

/// A member of the cluster, as the replicated store knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: NodeId,
    /// Unique, human-chosen (defaults to the hostname).
    pub name: String,
    /// The address peers dial (`host:port`, UDP).
    pub addr: String,
    pub state: NodeState,
    pub joined_at: Millis,
}

/// A join token as stored in the replicated store: only the SHA-256 of its secret is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub secret_sha256: [u8; 32],
    pub created_at: Millis,
    /// `None`: never expires.
    pub expires_at: Option<Millis>,
    /// Joins still allowed.
    pub uses_left: u32,
    pub uses_total: u32,
    pub revoked: bool,
}

impl TokenRecord {
    /// May a node join with a secret hashing to `secret_sha256` at time `at`? Pure, so the
    /// leader's cheap pre-check and the state machine's authoritative check agree.
    pub fn check(&self, secret_sha256: &[u8; 32], at: Millis) -> Result<(), TokenRefusal> {
        if self.secret_sha256 != *secret_sha256 {
            Err(TokenRefusal::WrongSecret(self.id.clone()))
        } else if self.revoked {
            Err(TokenRefusal::Revoked(self.id.clone()))
        } else if let Some(exp) = self.expires_at.filter(|e| *e <= at) {
            Err(TokenRefusal::Expired {
                id: self.id.clone(),
                ago: human_millis(at - exp),
            })
        } else if self.uses_left == 0 {
            Err(TokenRefusal::UsedUp {
                id: self.id.clone(),
                total: self.uses_total,
            })
        } else {
            Ok(())
        }
    }
}

/// What a remote operator may do (DESIGN §6): each role may do everything the one before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads: status, nodes, events, metrics, traffic, decisions, rollouts, logs, the console.
    Viewer,
    /// Also steers: vetoes, approves, pauses and resumes, scales, drains, rollout acts.
    Operator,
    /// Also changes what the cluster is: blueprints, tokens, operators, snapshots, modes, kv.
    Admin,
}

impl Role {
    /// `viewer`, `operator`, `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// The role named `s` (as [`Role::as_str`] writes it).
    pub fn parse(s: &str) -> Option<Role> {
        [Role::Viewer, Role::Operator, Role::Admin]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operator certificate as the replicated store keeps it (never its key, which stays on the
/// machine that made it). Keyed by name: a new certificate for a name replaces the old one,
/// which is then refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorRecord {
    pub name: String,
    pub role: Role,
    /// SHA-256 of the certificate's DER, lower-case hex: the only certificate of this name
    /// that is accepted.
    pub cert_sha256: String,
    /// The certificate's serial number, hex.
    pub serial: String,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub revoked: bool,
}

impl OperatorRecord {
    /// Whether a certificate with fingerprint `cert_sha256` may act as this operator at `at`;
    /// `Err` says why not. Pure: every node decides alike from its replica.
    pub fn check(&self, cert_sha256: &str, at: Millis) -> Result<(), String> {
        if self.cert_sha256 != cert_sha256 {
            Err(format!(
                "the certificate of operator '{}' was replaced by a newer one: use the identity 'aether operator cert create' wrote last",
                self.name
            ))
        } else if self.revoked {
            Err(format!(
                "the certificate of operator '{}' is revoked: ask an admin for a new one",
                self.name
            ))
        } else if self.expires_at <= at {
            Err(format!(
                "the certificate of operator '{}' expired {} ago: ask an admin for a new one",
                self.name,
                human_millis(at - self.expires_at)
            ))
        } else {
            Ok(())
        }
    }
}

/// Why a join token was refused. Decided by the replicated state machine, so every member agrees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum TokenRefusal {
    #[error(
        "join token '{0}' is unknown to this cluster: create one with 'aether token create' on a member"
    )]
    Unknown(String),
    #[error(
        "join token '{0}' has a wrong secret: copy the whole token printed by 'aether token create'"
    )]
    WrongSecret(String),
    #[error(
        "join token '{id}' expired {ago} ago: create a new one with 'aether token create --ttl DUR'"
    )]
    Expired { id: String, ago: String },
    #[error(
        "join token '{id}' is used up ({total} of {total} joins): create a new one with 'aether token create --uses N'"
    )]
    UsedUp { id: String, total: u32 },
    #[error("join token '{0}' was revoked: create a new one with 'aether token create'")]
    Revoked(String),
    #[error("a node named '{0}' is already a member: pick another name with --name")]
    NameTaken(String),
}

/// One line of the audit trail: every command applied through Raft leaves one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    pub at: Millis,
    /// Who asked (`uid:1000@n1`, `node:n2`, `controller`).
    pub actor: String,
    /// One-line summary of the command (values are not logged, only their sizes).
    pub what: String,
    /// `ok` or the refusal.
    pub outcome: String,
}

/// A network interface's hardware address, written `aa:bb:cc:dd:ee:ff` (or with `-`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Mac(pub [u8; 6]);

impl std::str::FromStr for Mac {
    type Err = String;

    fn from_str(s: &str) -> Result<Mac, String> {
        let bad =
            || format!("'{s}' is not a MAC address: write six hex pairs, e.g. 'aa:bb:cc:dd:ee:ff'");
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut out = [0u8; 6];
        for (o, p) in out.iter_mut().zip(parts) {
            if p.len() != 2 {
                return Err(bad());
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        Ok(Mac(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// Validate a node or object name: DNS-label-like (1–63 of `a-z0-9-`, not starting or ending
/// with `-`).
pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if name.is_empty()
        || name.len() > 63
        || !ok_chars
        || name.starts_with('-')
        || name.ends_with('-')
    {
        return Err(format!(
            "{what} '{name}' is not a valid name: use 1-63 characters of a-z, 0-9 and '-', \
             not starting or ending with '-'"
        ));
    }
    Ok(())
}

/// An RFC 3339 time (`2026-12-05T06:00:00Z`, `2026-12-05T07:00:00+01:00`) as Unix ms.
pub fn parse_time(s: &str) -> Result<Millis, String> {
    let t = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
        format!("expected an RFC 3339 time such as '2026-12-05T06:00:00Z', found '{s}': {e}")
    })?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| format!("expected a time after 1970, found '{s}'"))
}

/// The UTC time of day of `at`, `14:03:07Z`.
pub fn clock_time(at: Millis) -> String {
    let s = (at / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}Z", s / 3600, (s % 3600) / 60, s % 60)
}

/// Format a duration in milliseconds as a short human string (`3s`, `4m12s`, `2h5m`).
pub fn human_millis(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dns_labels() {
        assert!(validate_name("node", "n1").is_ok());
        let mac: Mac = "AA:bb:0c:dd:ee:01".parse().unwrap();
        assert_eq!(mac.0, [0xaa, 0xbb, 0x0c, 0xdd, 0xee, 0x01]);
        assert_eq!(mac.to_string(), "aa:bb:0c:dd:ee:01");
        assert_eq!("aa-bb-cc-dd-ee-ff".parse::<Mac>().unwrap().0[5], 0xff);
        for bad in [
            "",
            "aa:bb:cc:dd:ee",
            "aa:bb:cc:dd:ee:fg",
            "aaa:b:cc:dd:ee:ff",
        ] {
            let e = bad.parse::<Mac>().unwrap_err();
            assert!(e.contains("is not a MAC address"), "{bad}: {e}");
        }
        assert!(validate_name("node", "gpu-box-7").is_ok());
        for bad in ["", "-a", "a-", "Upper", "a_b", "a.b", &"x".repeat(64)] {
            let e = validate_name("node", bad).unwrap_err();
            assert!(e.contains("not a valid name"), "{bad}: {e}");
        }
    }

    #[test]
    fn token_checks_say_which_rule_refused() {
        let secret = [7u8; 32];
        let tok = TokenRecord {
            id: "t1".into(),
            secret_sha256: secret,
            created_at: 0,
            expires_at: Some(10_000),
            uses_left: 1,
            uses_total: 2,
            revoked: false,
        };
        assert_eq!(tok.check(&secret, 5_000), Ok(()));
        assert_eq!(
            tok.check(&[0; 32], 5_000),
            Err(TokenRefusal::WrongSecret("t1".into()))
        );
        assert_eq!(
            tok.check(&secret, 13_000),
            Err(TokenRefusal::Expired {
                id: "t1".into(),
                ago: "3s".into()
            })
        );
        let used = TokenRecord {
            uses_left: 0,
            ..tok.clone()
        };
        assert_eq!(
            used.check(&secret, 5_000),
            Err(TokenRefusal::UsedUp {
                id: "t1".into(),
                total: 2
            })
        );
        let revoked = TokenRecord {
            revoked: true,
            ..tok
        };
        assert_eq!(
            revoked.check(&secret, 5_000),
            Err(TokenRefusal::Revoked("t1".into()))
        );
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_millis(250), "250ms");
        assert_eq!(human_millis(3_000), "3s");
        assert_eq!(human_millis(252_000), "4m12s");
        assert_eq!(human_millis(7_500_000), "2h5m");
    }
}

/// An application: one or more slices, declared in one TOML file (DESIGN §8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Blueprint {
    pub name: String,
    pub slices: Vec<Slice>,
}

/// A command run as supervised instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slice {
    pub name: String,
    /// Program and arguments; `${PORT}` is replaced by the instance's port.
    pub command: Vec<String>,
    /// Desired now, within `min..=max`.
    pub instances: u32,
    pub min: u32,
    pub max: u32,
    pub env: std::collections::BTreeMap<String, String>,
    pub resources: Resources,
    /// SIGTERM, then SIGKILL after this long.
    pub stop_timeout_ms: u64,
    pub health: Option<HealthCheck>,
    pub scaling: Option<ScalingPolicy>,
    /// The slice's cluster-wide service port and entry points (`[slices.service]`); `None`:
    /// the ingress does not route to it.
    pub service: Option<Service>,
    /// `[slices.update]`; `None`: the defaults ([`UpdatePolicy::default`], rolling one at a
    /// time).
    pub update: Option<UpdatePolicy>,
    /// The user its instances run as; `None`: the node's `deploy.user`. `root` only where the
    /// node allows it (`deploy.allow_root`).
    pub user: Option<String>,
}

/// A slice's traffic: every node listens on `port` and routes each request to a ready
/// instance anywhere in the cluster (DESIGN §8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub port: u16,
    /// Named routes, the unit of request metrics and latency targets. A request that matches
    /// none is still routed and counted under [`OTHER_ENTRY`].
    pub entry_points: Vec<EntryPoint>,
    /// Per request (connect to the response's head); `None`: the node's `ingress.timeout`.
    pub timeout_ms: Option<u64>,
}

/// The first service port of `bp` that a slice of another stored blueprint holds: (the slice's
/// index in `bp`, the port, `blueprint/slice` holding it).
pub fn port_taken(bp: &Blueprint, stored: &[StoredBlueprint]) -> Option<(usize, u16, String)> {
    for (i, s) in bp.slices.iter().enumerate() {
        let Some(port) = s.service.as_ref().map(|sv| sv.port) else {
            continue;
        };
        for o in stored.iter().filter(|o| o.blueprint.name != bp.name) {
            if let Some(os) = o
                .blueprint
                .slices
                .iter()
                .find(|os| os.service.as_ref().is_some_and(|sv| sv.port == port))
            {
                return Some((i, port, format!("{}/{}", o.blueprint.name, os.name)));
            }
        }
    }
    None
}

/// What requests that match no entry point are counted under.
pub const OTHER_ENTRY: &str = "other";

/// One named route of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryPoint {
    pub name: String,
    /// A path prefix, matched on `/` boundaries; the longest match wins.
    pub path: String,
    /// Upper-case HTTP method; `None`: any.
    pub method: Option<String>,
}

impl Service {
    /// The entry point a request is counted under: the longest path prefix (on `/`
    /// boundaries) whose method (if it names one) matches; [`OTHER_ENTRY`] when none does.
    pub fn entry_for(&self, method: &str, path: &str) -> &str {
        self.entry_points
            .iter()
            .filter(|e| e.method.as_deref().is_none_or(|m| m == method))
            .filter(|e| path_matches(&e.path, path))
            .max_by_key(|e| (e.path.len(), e.method.is_some()))
            .map_or(OTHER_ENTRY, |e| e.name.as_str())
    }
}

/// Whether `prefix` covers `path` on a segment boundary (`/api` covers `/api` and `/api/x`,
/// not `/apix`).
fn path_matches(prefix: &str, path: &str) -> bool {
    let path = path.split(['?', '#']).next().unwrap_or("");
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// What one instance reserves on its node.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// Cores.
    pub cpu: f32,
    /// Bytes.
    pub memory: u64,
    pub gpu: u32,
}

/// How the supervisor decides an instance is healthy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub probe: Probe,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Consecutive failures before the instance counts as unhealthy.
    pub threshold: u32,
}

/// One kind of health probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Probe {
    /// GET this path on the instance's port; 2xx or 3xx is healthy.
    Http(String),
    /// The instance's port accepts a TCP connection.
    Tcp,
    /// This command exits 0.
    Exec(Vec<String>),
}

/// Per-slice controller policy (`[slices.scaling]`); read by the controller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalingPolicy {
    /// CPU per instance (cores used / cores reserved) to aim for, 0–1.
    pub target_cpu: Option<f32>,
    /// p95 request latency (ms) to stay under, measured at the ingress.
    pub target_latency_ms: Option<u64>,
    /// Scale up ahead of forecast load.
    pub predictive: bool,
    pub up_cooldown_ms: Option<u64>,
    pub down_cooldown_ms: Option<u64>,
    /// With `min = 0`: after this long without a request the controller scales the slice to
    /// zero (a decision like any other); `None`: never.
    pub idle_to_zero_ms: Option<u64>,
    /// Calls per second one instance should serve (the ingress's rate ÷ active instances);
    /// `None`: the rule settings' `target_calls_per_instance`.
    pub target_calls_per_instance: Option<f64>,
}

/// A blueprint as the replicated store keeps it: each apply is a new version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredBlueprint {
    pub version: u64,
    pub applied_at: Millis,
    pub blueprint: Blueprint,
}

/// When a flexible slice (`[slices.flexible]`) must start at the latest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlexDeadline {
    /// An absolute time (Unix ms), `deadline = "2026-12-05T06:00:00Z"`.
    At(Millis),
    /// A duration after the blueprint is applied, `within = "6h"`.
    Within(u64),
}

/// A flexible slice's policy: batch work that may wait for a lower-carbon window. It is kept
/// beside the blueprint (never in [`Slice`]), in its own table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlexiblePolicy {
    /// When the work must be done.
    pub deadline: FlexDeadline,
    /// How long the work is expected to run: it starts by `deadline - run` at the latest.
    pub run_ms: u64,
}

impl FlexiblePolicy {
    /// The latest start of a slice with this policy applied at `applied_at`.
    pub fn latest_start(&self, applied_at: Millis) -> Millis {
        let deadline = match self.deadline {
            FlexDeadline::At(t) => t,
            FlexDeadline::Within(ms) => applied_at.saturating_add(ms),
        };
        deadline.saturating_sub(self.run_ms)
    }
}

/// A flexible slice as the replicated store keeps it: held at no instance until the controller
/// starts it (in a low-carbon window, or at its latest start whatever the signal says).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlexibleRecord {
    pub blueprint: String,
    pub slice: String,
    pub policy: FlexiblePolicy,
    /// The instances it starts with (what the blueprint asked for).
    pub instances: u32,
    /// When its blueprint version was applied.
    pub applied_at: Millis,
    /// The latest start, from the policy and `applied_at`.
    pub latest_start: Millis,
    /// Why it waits, with the numbers (the controller's latest judgement).
    pub held: Option<String>,
    /// When it started, and why.
    pub started: Option<(Millis, String)>,
}

impl FlexibleRecord {
    /// `blueprint/slice`.
    pub fn target(&self) -> String {
        format!("{}/{}", self.blueprint, self.slice)
    }
}

/// Where the leader means an instance (`blueprint/slice/index`) to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    /// The node that runs it; `None` while it is pending.
    pub node: Option<NodeId>,
    /// The node that keeps running its old copy until the copy on `node` is active (a drain's
    /// hand-off); cleared then, and that node stops its copy.
    pub handoff: Option<NodeId>,
    /// Why no node can take it (pending only), naming each node.
    pub pending: Option<String>,
    /// When it took its current node (or became pending).
    pub since: Millis,
    /// Which placement on `node` this is: stamped by the state machine, new each time the
    /// instance is created or takes another node (0 while pending). A copy reports the
    /// placement it runs for, so a report left from an earlier one (an instance removed and
    /// applied again, a scale down and up) is never taken for this one.
    pub placement: u64,
    /// The blueprint version whose slice this copy runs. Copies of a slice run the stored
    /// version unless a rollout holds some on another; a new version that needs no new
    /// processes relabels them in place.
    pub version: u64,
}

impl Assignment {
    /// `self` as the store keeps it after `prev`: the placement number of `prev` while the
    /// instance stays on its node, the next one of `seq` when the node is new (0 while
    /// pending). The state machine stamps every assignment it writes with this, whatever
    /// number the writer sent.
    pub fn stamped(self, prev: Option<&Assignment>, seq: &mut u64) -> Assignment {
        let placement = match (prev, self.node) {
            (_, None) => 0,
            (Some(p), Some(n)) if p.node == Some(n) => p.placement,
            _ => {
                *seq += 1;
                *seq
            }
        };
        Assignment { placement, ..self }
    }

    /// Whether `s` reports the copy of this placement (on `node`, with this number) rather
    /// than a hand-off's old copy or a copy left from an earlier placement.
    pub fn reported_by(&self, s: &InstanceStatus) -> bool {
        self.node == Some(s.node) && self.placement == s.placement
    }
}

/// Where an instance is in its life on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    /// Preparing the working dir, environment and log file.
    Loading,
    /// Spawned; waiting for the first passing health check.
    Activating,
    /// Running and healthy (or running, when the slice has no health check).
    Active,
    /// Running, but the health check failed `threshold` times in a row; being restarted.
    Unhealthy,
    /// Exited; waiting before the next start.
    Backoff,
    /// SIGTERM sent; SIGKILL follows after the slice's `stop_timeout`.
    Stopping,
    /// Not started: its GPUs are not free on this node yet (the health field says who holds
    /// them).
    Waiting,
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InstanceState::Loading => "loading",
            InstanceState::Activating => "activating",
            InstanceState::Active => "active",
            InstanceState::Unhealthy => "unhealthy",
            InstanceState::Backoff => "backoff",
            InstanceState::Stopping => "stopping",
            InstanceState::Waiting => "waiting",
        })
    }
}

/// An instance's state on one node, as its supervisor reported it (on transitions only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// `blueprint/slice/index`.
    pub instance: String,
    pub node: NodeId,
    /// The placement it runs for ([`Assignment::placement`]); 0 for a hand-off's copy started
    /// afresh.
    pub placement: u64,
    pub state: InstanceState,
    pub port: u16,
    pub pid: Option<u32>,
    /// Starts after the first one (crashes and failed health checks).
    pub restarts: u32,
    /// How the last run ended: `exit 1`, `signal 9`.
    pub last_exit: Option<String>,
    /// `passing`, `failing: <why>`, `pending` or `none` (no health check); while `waiting`,
    /// why.
    pub health: String,
    /// When it entered `state`.
    pub since: Millis,
    /// The GPUs (NVML indices) it holds; it sees only these.
    pub gpus: Vec<u32>,
}

/// Where a node stands in sleep and wake (`[power]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerState {
    /// Awake (it has come back from its last sleep, or never slept).
    Awake,
    /// Draining so that it can be suspended: its suspend command runs once it is drained.
    Sleeping,
    /// Suspended by its suspend command.
    Asleep,
    /// Its resume command ran; the leader waits for its metrics.
    Waking,
    /// It did not come back within `power.resume_timeout`: not counted on until it does.
    Down,
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PowerState::Awake => "awake",
            PowerState::Sleeping => "sleeping",
            PowerState::Asleep => "asleep",
            PowerState::Waking => "waking",
            PowerState::Down => "down",
        })
    }
}

/// A node's sleep-and-wake record, in its own replicated table (one per node that ever slept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowerRecord {
    pub node: NodeId,
    /// The node's name, for the audit trail.
    pub name: String,
    pub state: PowerState,
    /// When it entered `state`.
    pub since: Millis,
    /// The last wake measured: from its resume command to its metrics being ready again.
    pub wake_ms: Option<u64>,
    /// Why it is in `state` when that needs saying (down, or a command that failed).
    pub reason: Option<String>,
}

/// How far the controller may act on its own (DESIGN §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ControllerMode {
    /// Record decisions only; nothing is applied.
    Observe,
    /// Apply a decision only when an operator approves it.
    Propose,
    /// Apply after the grace window unless an operator vetoes it.
    #[default]
    Guarded,
    /// Apply at once; a veto reverts.
    Auto,
}

impl fmt::Display for ControllerMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ControllerMode::Observe => "observe",
            ControllerMode::Propose => "propose",
            ControllerMode::Guarded => "guarded",
            ControllerMode::Auto => "auto",
        })
    }
}

impl std::str::FromStr for ControllerMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "observe" => ControllerMode::Observe,
            "propose" => ControllerMode::Propose,
            "guarded" => ControllerMode::Guarded,
            "auto" => ControllerMode::Auto,
            _ => {
                return Err(format!(
                    "unknown controller mode '{s}': expected observe, propose, guarded or auto"
                ));
            }
        })
    }
}

/// The controller's replicated switches: mode, grace window, pause. `Default` is what holds
/// before anyone set them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ControlState {
    pub mode: ControllerMode,
    /// How long a `guarded` decision waits for a veto; `None`: the leader's
    /// `controller.grace`.
    pub grace_ms: Option<u64>,
    pub paused: Option<Pause>,
    /// When and by whom the mode was last set (`None`: never, the default applies).
    pub mode_set: Option<(Millis, String)>,
}

/// Who paused the controller, when and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pause {
    pub by: String,
    pub at: Millis,
    pub reason: Option<String>,
}

/// What a decision changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Set a slice's desired instances from `from` to `to`.
    Scale {
        blueprint: String,
        slice: String,
        from: u32,
        to: u32,
    },
    Drain {
        node: NodeId,
        name: String,
    },
    Undrain {
        node: NodeId,
        name: String,
    },
    /// A rollout went back to the version before (its engine did it; recorded for the
    /// reasoning, never executed by a decision).
    Rollback {
        blueprint: String,
        slice: String,
        /// The version it left.
        from: u64,
        /// The version it went back to.
        to: u64,
        /// The rollout (`r-<id>`).
        rollout: u64,
    },
    /// Drain a node, then suspend it with `power.suspend_command` once its instances moved.
    Sleep {
        node: NodeId,
        name: String,
    },
    /// Resume a sleeping node with `power.resume_command` (or Wake-on-LAN).
    Wake {
        node: NodeId,
        name: String,
    },
}

impl Action {
    /// What is acted on: `shop/web` or `node n2`.
    pub fn target(&self) -> String {
        match self {
            Action::Scale {
                blueprint, slice, ..
            } => format!("{blueprint}/{slice}"),
            Action::Drain { name, .. }
            | Action::Undrain { name, .. }
            | Action::Sleep { name, .. }
            | Action::Wake { name, .. } => format!("node {name}"),
            Action::Rollback {
                blueprint, slice, ..
            } => format!("{blueprint}/{slice}"),
        }
    }

    /// `scale_up`, `scale_down`, `drain`, `undrain`, `rollback`, `sleep` or `wake`: what a veto
    /// suppresses on a target.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::Scale { from, to, .. } if to > from => "scale_up",
            Action::Scale { .. } => "scale_down",
            Action::Drain { .. } => "drain",
            Action::Undrain { .. } => "undrain",
            Action::Rollback { .. } => "rollback",
            Action::Sleep { .. } => "sleep",
            Action::Wake { .. } => "wake",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Scale {
                blueprint,
                slice,
                from,
                to,
            } => write!(f, "scale {blueprint}/{slice} {from} → {to}"),
            Action::Drain { name, .. } => write!(f, "drain {name}"),
            Action::Undrain { name, .. } => write!(f, "undrain {name}"),
            Action::Rollback {
                blueprint,
                slice,
                from,
                to,
                rollout,
            } => write!(
                f,
                "roll back {blueprint}/{slice} v{from} → v{to} (r-{rollout})"
            ),
            Action::Sleep { name, .. } => write!(f, "sleep {name}"),
            Action::Wake { name, .. } => write!(f, "wake {name}"),
        }
    }
}

/// Where a decision is in its lifecycle. `Proposed` and `Pending` are open; the rest are final.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionStatus {
    /// Waiting for an operator's approve (mode `propose`), or recorded only (mode `observe`).
    Proposed,
    /// Applied at `deadline` unless vetoed (mode `guarded`).
    Pending {
        deadline: Millis,
    },
    Applied {
        at: Millis,
        by: String,
    },
    Vetoed {
        at: Millis,
        by: String,
        reason: Option<String>,
        /// In `auto` mode a veto of an applied decision reverts it; what happened.
        reverted: Option<String>,
    },
    /// Not to be applied: a safety bound or the reviewer stopped it.
    Rejected {
        reason: String,
    },
    /// A newer decision or a change by an operator replaced it.
    Superseded {
        reason: String,
    },
    Failed {
        error: String,
    },
    /// Not approved (or, in observe mode, not acted on) in time.
    Expired {
        reason: String,
    },
}

impl DecisionStatus {
    /// Proposed or pending.
    pub fn is_open(&self) -> bool {
        matches!(
            self,
            DecisionStatus::Proposed | DecisionStatus::Pending { .. }
        )
    }

    /// The status word: `proposed`, `pending`, `applied` …
    pub fn word(&self) -> &'static str {
        match self {
            DecisionStatus::Proposed => "proposed",
            DecisionStatus::Pending { .. } => "pending",
            DecisionStatus::Applied { .. } => "applied",
            DecisionStatus::Vetoed { .. } => "vetoed",
            DecisionStatus::Rejected { .. } => "rejected",
            DecisionStatus::Superseded { .. } => "superseded",
            DecisionStatus::Failed { .. } => "failed",
            DecisionStatus::Expired { .. } => "expired",
        }
    }
}

/// What a reviewer (the language model, issue 6) said about a proposal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewRecord {
    /// `approve`, `reject`, `adjust` or `timeout`.
    pub verdict: String,
    /// For `adjust`: the instance count it proposed (already within the safety bounds).
    pub adjust_to: Option<u32>,
    pub reason: String,
    pub reviewer: String,
    pub latency_ms: u64,
}

/// Whether an applied decision moved its metric as intended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub at: Millis,
    /// `as intended`, `not as intended` or `did not converge`.
    pub verdict: String,
    pub detail: String,
}

/// One controller decision, replicated (DESIGN §9). Its id is `d-<id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Allocated by the state machine; shown as `d-<id>`.
    pub id: u64,
    pub at: Millis,
    /// The leader that made it.
    pub by: String,
    /// The mode it was made in.
    pub mode: ControllerMode,
    /// The layers that took part, in order: `rules:<rule>`, `forecast`, `safety`, `review:<who>`.
    pub layers: Vec<String>,
    pub action: Action,
    /// The rule that fired.
    pub rule: String,
    /// Plain sentences with the numbers that drove it.
    pub reasoning: Vec<String>,
    /// The inputs it was made from: name → value, as text.
    pub inputs: Vec<(String, String)>,
    pub review: Option<ReviewRecord>,
    pub status: DecisionStatus,
    /// Every status change: when, and what.
    pub timeline: Vec<(Millis, String)>,
    pub outcome: Option<Outcome>,
}

impl Decision {
    /// A decision of `action` by `rule`, made by `by` at `at` in the default mode, with
    /// nothing else recorded yet (no layers, reasoning, inputs, review, timeline or outcome).
    pub fn bare(
        id: u64,
        at: Millis,
        by: &str,
        rule: &str,
        action: Action,
        status: DecisionStatus,
    ) -> Decision {
        Decision {
            id,
            at,
            by: by.into(),
            mode: ControllerMode::default(),
            layers: vec![],
            action,
            rule: rule.into(),
            reasoning: vec![],
            inputs: vec![],
            review: None,
            status,
            timeline: vec![],
            outcome: None,
        }
    }

    /// `d-<id>`.
    pub fn name(&self) -> String {
        format!("d-{}", self.id)
    }
}

/// Parse `d-42` (or `42`) into a decision id.
pub fn parse_decision_id(s: &str) -> Result<u64, String> {
    s.strip_prefix("d-")
        .unwrap_or(s)
        .parse()
        .map_err(|_| format!("'{s}' is not a decision id: expected d-<number>, e.g. d-12"))
}

#[cfg(test)]
mod decision_tests {
    use super::*;

    #[test]
    fn decisions_survive_the_wire_and_disk_encoding() {
        // postcard (log entries, snapshots, admin frames) has no self-describing formats:
        // internally tagged enums would fail to decode.
        let d = Decision {
            id: 7,
            at: 1,
            by: "n1".into(),
            mode: ControllerMode::Guarded,
            layers: vec!["rules:cpu-high".into()],
            action: Action::Scale {
                blueprint: "shop".into(),
                slice: "web".into(),
                from: 2,
                to: 4,
            },
            rule: "cpu-high".into(),
            reasoning: vec!["cpu".into()],
            inputs: vec![("cpu_used".into(), "1.00".into())],
            review: None,
            status: DecisionStatus::Vetoed {
                at: 2,
                by: "op".into(),
                reason: Some("no".into()),
                reverted: None,
            },
            timeline: vec![(1, "pending".into())],
            outcome: None,
        };
        let bytes = postcard::to_allocvec(&d).unwrap();
        assert_eq!(postcard::from_bytes::<Decision>(&bytes).unwrap(), d);
    }
}

/// How a slice moves to a new version (`[slices.update]`, DESIGN §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Replace `max_parallel` copies at a time: a new copy first, the old one stops when the
    /// new one has been healthy for `min_healthy_time`.
    Rolling,
    /// `canary` new copies beside the old set take `canary_traffic` of the requests and are
    /// analysed; then the rest is replaced as in a rolling update (or everything goes back).
    Canary,
    /// A whole new set beside the old one; the traffic switches in one step when all are
    /// healthy, and the old set stays up (out of traffic) for an instant undo.
    BlueGreen,
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::Rolling => "rolling",
            Strategy::Canary => "canary",
            Strategy::BlueGreen => "blue-green",
        })
    }
}

/// A canary's analysis: each `interval`, the new version's numbers at the ingress against
/// the thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisPolicy {
    pub interval_ms: u64,
    /// Fewer requests to the new version in an interval is inconclusive, never a pass.
    pub min_requests: u64,
    /// Errors ÷ calls, 0–1.
    pub max_error_rate: f64,
    pub max_p99_ms: Option<u64>,
}

/// A slice's `[slices.update]`, with its defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdatePolicy {
    pub strategy: Strategy,
    /// Copies replaced at a time (rolling, and a canary after its promotion).
    pub max_parallel: u32,
    /// A new copy must stay active this long to count as healthy.
    pub min_healthy_ms: u64,
    /// Per new copy: healthy within this long of its start, or the rollout fails.
    pub healthy_deadline_ms: u64,
    /// Without progress for this long the rollout fails (an inconclusive canary pauses).
    pub progress_deadline_ms: u64,
    /// On failure, go back to the version before at once.
    pub auto_revert: bool,
    /// Canary: new-version copies started beside the old set.
    pub canary: u32,
    /// Canary: their share of the ingress's requests, percent.
    pub canary_traffic_pct: u8,
    pub analysis: Option<AnalysisPolicy>,
    /// Canary: replace the rest once the analysis passed, else wait for `rollout promote`.
    pub auto_promote: bool,
    /// Blue/green: how long the old set stays up, out of traffic, after the switch.
    pub standby_ms: u64,
}

impl Default for UpdatePolicy {
    fn default() -> Self {
        UpdatePolicy {
            strategy: Strategy::Rolling,
            max_parallel: 1,
            min_healthy_ms: 10_000,
            healthy_deadline_ms: 120_000,
            progress_deadline_ms: 600_000,
            auto_revert: true,
            canary: 1,
            canary_traffic_pct: 10,
            analysis: None,
            auto_promote: false,
            standby_ms: 300_000,
        }
    }
}

impl Slice {
    /// Whether moving from `self` to `new` needs new processes (command, user, environment,
    /// health check, stop timeout or resources differ): such a change rolls out; any other (instances,
    /// min/max, scaling, service, update) applies to the running copies as they are.
    pub fn needs_new_processes(&self, new: &Slice) -> bool {
        self.command != new.command
            || self.user != new.user
            || self.env != new.env
            || self.health != new.health
            || self.stop_timeout_ms != new.stop_timeout_ms
            || self.resources != new.resources
    }

    /// Its `[slices.update]`, or the defaults.
    pub fn update_policy(&self) -> UpdatePolicy {
        self.update.clone().unwrap_or_default()
    }
}

/// Where a rollout is (DESIGN §8). `Running` and `Paused` are open: the rollout decides how
/// many copies of each version the slice runs. The rest are final.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    Running,
    /// Waits for an operator (`rollout resume`, `promote`, `abort`); `reason` says why.
    Paused {
        by: String,
        reason: String,
    },
    /// Failed without `auto_revert`: the copies stay as they are, the new version out of
    /// traffic, until an operator acts (`abort`/`undo` go back, `resume` tries again).
    Failed {
        reason: String,
    },
    Succeeded,
    /// Back on the version before (an automatic revert, an abort or an undo).
    RolledBack {
        reason: String,
    },
    /// A newer apply of the blueprint replaced it.
    Superseded {
        by: u64,
    },
}

impl RolloutState {
    /// Running, paused or failed-and-holding: the rollout still decides the copies.
    pub fn is_open(&self) -> bool {
        matches!(
            self,
            RolloutState::Running | RolloutState::Paused { .. } | RolloutState::Failed { .. }
        )
    }

    /// `running`, `paused`, `failed`, `succeeded`, `rolled-back`, `superseded`.
    pub fn word(&self) -> &'static str {
        match self {
            RolloutState::Running => "running",
            RolloutState::Paused { .. } => "paused",
            RolloutState::Failed { .. } => "failed",
            RolloutState::Succeeded => "succeeded",
            RolloutState::RolledBack { .. } => "rolled-back",
            RolloutState::Superseded { .. } => "superseded",
        }
    }
}

/// The step a rollout is in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutStep {
    /// Rolling (and a promoted canary): start new copies up to `want_to`, then retire as many
    /// old ones once they are healthy.
    Replace,
    /// Canary: the canaries start and become healthy.
    CanaryStart,
    /// Canary: analysis interval `round` (from 1) runs.
    Analysis { round: u32 },
    /// Canary: the analysis passed; waiting for `rollout promote` (analysis goes on).
    AwaitPromote,
    /// Blue/green: the new set starts beside the old one, out of traffic.
    GreenStart,
    /// Blue/green: the traffic switched; the old set stays up until `until`.
    Standby { until: Millis },
    /// Going back: the old version's copies start at once, the new ones stop when they are
    /// healthy.
    Revert,
    /// Final.
    Done,
}

impl RolloutStep {
    /// A short name: `replace`, `canary-start`, `analysis 2`, `await-promote`, …
    pub fn name(&self) -> String {
        match self {
            RolloutStep::Replace => "replace".into(),
            RolloutStep::CanaryStart => "canary-start".into(),
            RolloutStep::Analysis { round } => format!("analysis {round}"),
            RolloutStep::AwaitPromote => "await-promote".into(),
            RolloutStep::GreenStart => "green-start".into(),
            RolloutStep::Standby { .. } => "standby".into(),
            RolloutStep::Revert => "revert".into(),
            RolloutStep::Done => "done".into(),
        }
    }
}

/// Which copies the ingress sends a slice's requests to during a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrafficSplit {
    /// Every ready copy, by load.
    ByCopies,
    /// The new version's copies take `to_pct` percent, the others the rest (when both have a
    /// ready copy).
    Weighted { to_pct: u8 },
    /// Only this version's copies (the others stay up, out of traffic), while it has a ready
    /// copy.
    Only { version: u64 },
}

/// Calls, errors and the duration histogram of one version over an interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionNumbers {
    pub calls: u64,
    pub errors: u64,
    /// p99 in ms (`None` without calls).
    pub p99_ms: Option<f64>,
}

impl VersionNumbers {
    /// Errors ÷ calls (0 without calls).
    pub fn error_rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.errors as f64 / self.calls as f64
        }
    }
}

/// One analysis interval of a canary, as judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisRecord {
    pub round: u32,
    pub from_at: Millis,
    pub to_at: Millis,
    /// The new version's numbers.
    pub canary: VersionNumbers,
    /// The stable version's, for comparison.
    pub stable: VersionNumbers,
    /// `pass`, `fail` or `inconclusive`.
    pub verdict: String,
    /// The sentence with the numbers and the threshold.
    pub detail: String,
}

/// The counters an analysis interval started from (cluster-wide, per version), kept in the
/// record so a new leader can judge the interval it inherits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnalysisBase {
    pub at: Millis,
    /// Whose counters they are (`<node>:<start>`): another leader's are not compared.
    pub source: String,
    /// (version, calls, errors, histogram counts) when the interval began.
    pub counts: Vec<(u64, u64, u64, Vec<u64>)>,
}

/// One rollout of a slice from a version to another, replicated (DESIGN §8). Its id is
/// `r-<id>`. The leader's engine drives it; every write names the `rev` it read, so a
/// deposed leader's late write is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// Allocated by the state machine; shown as `r-<id>`.
    pub id: u64,
    pub blueprint: String,
    pub slice: String,
    /// The version the slice ran (the one a revert goes back to).
    pub from: u64,
    /// The version it moves to.
    pub to: u64,
    /// The new version's `[slices.update]` (an undo's: all at once).
    pub policy: UpdatePolicy,
    /// Why it began: `blueprint apply`, `undo to v6`.
    pub cause: String,
    pub state: RolloutState,
    pub step: RolloutStep,
    /// When the step began.
    pub step_since: Millis,
    /// Copies of `to` wanted now.
    pub want_to: u32,
    /// Copies of other versions wanted now.
    pub want_from: u32,
    pub traffic: TrafficSplit,
    /// The last time a new copy became healthy or an old one was retired.
    pub progress_at: Millis,
    pub started_at: Millis,
    pub ended_at: Option<Millis>,
    /// The open analysis interval (canary).
    pub base: Option<AnalysisBase>,
    pub analysis: Vec<AnalysisRecord>,
    /// What made it fail, pause or go back, with the numbers and the threshold.
    pub reason: Option<String>,
    /// Every step and state change: when, and what.
    pub history: Vec<(Millis, String)>,
    /// Bumped by every write.
    pub rev: u64,
}

impl Rollout {
    /// `r-<id>`.
    pub fn name(&self) -> String {
        format!("r-{}", self.id)
    }

    /// `blueprint/slice`.
    pub fn target(&self) -> String {
        format!("{}/{}", self.blueprint, self.slice)
    }
}

/// What an operator asks of a slice's rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutOp {
    Pause,
    Resume,
    /// Past the analysis (or an inconclusive pause): replace the rest.
    Promote,
    /// Stop and go back to the version before at once.
    Abort,
    /// Go back to `to` (default: the version before the last rollout); during a blue/green
    /// standby, an instant switch back.
    Undo {
        to: Option<u64>,
    },
}

impl fmt::Display for RolloutOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RolloutOp::Pause => f.write_str("pause"),
            RolloutOp::Resume => f.write_str("resume"),
            RolloutOp::Promote => f.write_str("promote"),
            RolloutOp::Abort => f.write_str("abort"),
            RolloutOp::Undo { to: None } => f.write_str("undo"),
            RolloutOp::Undo { to: Some(v) } => write!(f, "undo --to v{v}"),
        }
    }
}

/// Parse `r-7` (or `7`) into a rollout id.
pub fn parse_rollout_id(s: &str) -> Result<u64, String> {
    s.strip_prefix("r-")
        .unwrap_or(s)
        .parse()
        .map_err(|_| format!("'{s}' is not a rollout id: expected r-<number>, e.g. r-3"))
}

/// What an item of the strategic layer's advice suggests (DESIGN §9: advice only, never a
/// write). The words are the ones the endpoint answers with and `aether advice` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdviceKind {
    /// Raise a slice's `max` (a blueprint change: an operator's edit, never a decision).
    RaiseMax,
    /// Lower a slice's `max` (a blueprint change, like `raise_max`).
    LowerMax,
    /// Scale a slice ahead of an expected peak (`when` says when).
    Prescale,
    /// Scale a slice to `count` instances.
    Scale,
    /// Drain a node (e.g. a GPU trending hot).
    Drain,
    /// Bring a drained node back.
    Undrain,
    /// An observation with nothing to act on.
    Note,
}

impl AdviceKind {
    /// Every kind, in the order the schema lists them.
    pub const ALL: [AdviceKind; 7] = [
        AdviceKind::RaiseMax,
        AdviceKind::LowerMax,
        AdviceKind::Prescale,
        AdviceKind::Scale,
        AdviceKind::Drain,
        AdviceKind::Undrain,
        AdviceKind::Note,
    ];

    /// The kind's word: `raise_max`, `prescale`, …
    pub fn word(self) -> &'static str {
        match self {
            AdviceKind::RaiseMax => "raise_max",
            AdviceKind::LowerMax => "lower_max",
            AdviceKind::Prescale => "prescale",
            AdviceKind::Scale => "scale",
            AdviceKind::Drain => "drain",
            AdviceKind::Undrain => "undrain",
            AdviceKind::Note => "note",
        }
    }
}

impl fmt::Display for AdviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// One item of advice, validated (see `controller::advisor::parse`). Numbers in its reason are
/// shown as the model gave them: advice is advice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdviceItem {
    /// `a-<n>`, counted by the leader that asked, for `aether advice take`.
    pub id: String,
    pub kind: AdviceKind,
    /// `blueprint/slice` for slice kinds, a node's name for `drain`/`undrain`, empty for a
    /// `note`.
    pub target: String,
    /// The instance count (`scale`, `prescale`) or the new max (`raise_max`, `lower_max`).
    pub count: Option<u32>,
    /// For `prescale`: when, as the model said it (`08:45 UTC`, `in 20m`).
    pub when: Option<String>,
    /// One or two sentences, at most 240 characters.
    pub reason: String,
}

/// The strategic layer as the leader reports it: its latest advice and its counters since
/// the leader's node started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AdviceView {
    /// The leader that asks.
    pub node: String,
    /// The model named in the requests.
    pub model: String,
    /// The endpoint's host and port (never the key).
    pub endpoint: String,
    /// How often it asks (ms).
    pub interval_ms: u64,
    /// When the items were received (Unix ms); `None`: no valid answer yet.
    pub at: Option<Millis>,
    /// How long that answer took (ms).
    pub latency_ms: Option<u64>,
    /// The latest valid advice.
    pub items: Vec<AdviceItem>,
    /// Requests sent; answers that passed validation; answers refused as invalid; requests
    /// that failed (endpoint down, HTTP error) and those past the budget.
    pub requests: u64,
    /// Answers that passed validation.
    pub ok: u64,
    /// Answers refused by validation (not a completion, not JSON, off the schema, a bad item).
    pub invalid: u64,
    /// Requests that got no usable answer: the endpoint down, an HTTP error, no key.
    pub failed: u64,
    /// Requests past `controller.advisor.budget`.
    pub timeouts: u64,
    /// The last failure or refusal.
    pub last_error: Option<String>,
    /// When it happened (Unix ms).
    pub last_error_at: Option<Millis>,
}

/// What a cloud announced about a node's machine (DESIGN §5, cluster family): stored per node
/// in the replicated store by the node's signal loop (or a drill), read by the leader's
/// controller, the ingress and the views.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpotNotice {
    pub kind: SpotKind,
    /// For an interruption its deadline (when the machine goes); for a rebalance
    /// recommendation when the cloud made it (Unix ms).
    pub at: Millis,
    /// Who raised it: the provider (`aws`) or `drill`.
    pub source: String,
}

/// The kind of a [`SpotNotice`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpotKind {
    /// The machine is going away at the notice's time: `action` is what the cloud will do
    /// (`terminate`, `stop` or `hibernate`).
    Interruption { action: String },
    /// The cloud recommends moving work off this machine (it is at elevated risk).
    Rebalance,
}

/// The notice source a drill writes, so a provider's signal loop never clears it.
pub const SPOT_DRILL_SOURCE: &str = "drill";

/// The rule name of the controller's drain of an interrupted node (its decisions carry the
/// notice's deadline as the input `deadline`, Unix ms).
pub const SPOT_INTERRUPTION_RULE: &str = "spot-interruption";

impl SpotNotice {
    /// Whether the machine is going away (not only at risk).
    pub fn is_interruption(&self) -> bool {
        matches!(self.kind, SpotKind::Interruption { .. })
    }

    /// How a node's state shows it: `interrupting (deadline 05:12:02Z)` or `rebalance
    /// recommended (05:10:00Z)`.
    pub fn state_word(&self) -> String {
        match &self.kind {
            SpotKind::Interruption { .. } => {
                format!("interrupting (deadline {})", clock_time(self.at))
            }
            SpotKind::Rebalance => format!("rebalance recommended ({})", clock_time(self.at)),
        }
    }
}
