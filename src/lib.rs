//! # Aether
//!
//! One binary that is a cluster node, a Raft peer over QUIC, an AI controller and a terminal
//! console. This crate is that binary's library; `main.rs` only parses and dispatches.
//!
//! ## Data flow (DESIGN.md §3)
//!
//! ```text
//!  clients ──HTTP──▶ ingress (every node, each service port) ──TCP──▶ a local instance
//!                      │        └──HTTP/1.1 on a QUIC stream (route 4)──▶ its node ──▶ instance
//!                      │ calls, errors, durations per slice and entry point (metrics::requests)
//!                      ▼
//!  admin socket (CLI, TUI) ──AdminRequest──▶ admin::server ──▶ raft::Cluster::write / read
//!                                                                 │ forwards to the leader over net
//!                                                                 ▼
//!  net (QUIC, mutual TLS) ◀──Raft RPCs──▶ openraft ──▶ raft::store (redb: log, vote)
//!                                                   └─▶ raft::state_machine (redb: kv, nodes,
//!                                                        health, tokens, blueprints,
//!                                                        assignments, instances,
//!                                                        sessions, audit;
//!                                                        snapshots as files)
//!
//!  metrics::sample ──MetricsUpdate (QUIC datagram)──▶ leader: metrics::aggregate
//!  (every node, 1 s)                                   │ liveness verdicts ──▶ raft (events only)
//!                       ◀──ClusterMetricsSnapshot (1 s)─┘
//!  every node: metrics::aggregate::View (snapshot + 2-hour window) ──▶ aether metrics, /metrics
//!
//!  blueprint apply ──▶ raft ──▶ leader: deploy::cluster (placement) ──AssignInstances──▶ raft
//!  every node: deploy::node diffs its assignments ──▶ deploy::supervisor (processes, logs)
//!                │ transitions ──ReportInstances──▶ raft ──▶ blueprint show on every node
//!
//!  blueprint apply (new processes) ──▶ raft::rollouts opens a Rollout (copies per version,
//!  traffic split); leader: rollout::run (engine: health, per-version numbers from the ingress)
//!  ──UpdateRollout──▶ raft ──▶ deploy::cluster assigns per version, ingress splits by version
//!
//!  every node: controller::brain observes (store + metrics snapshot) each second
//!  leader: controller::flow: rules → forecast → safety → model review ──RecordDecision──▶ raft
//!          at the grace deadline ──ApplyDecision──▶ raft::control executes it (or refuses:
//!          vetoed, paused, not due); operators: aether override ──Veto/Approve/Mode──▶ raft
//!  leader, only with [controller.advisor]: controller::advise ──summary of the hour (HTTP,
//!          ingress::client)──▶ an OpenAI-compatible endpoint; the advice rides the metrics
//!          snapshots to every node (aether advice); aether advice take ──▶ safety ──▶
//!          RecordDecision (proposed: waits for an approve)
//!
//!  aether tui ──Subscribe──▶ admin::live + view::live: one full frame, then what changed (Raft applied,
//!             ◀──LiveUpdate──  the metrics period); overrides go as ordinary admin writes
//! ```
//!
//! Metrics never touch Raft; the controller writes decisions through [`raft::Writer`] and never
//! executes an action itself; the console only reads its feed and sends the operator's writes.
//!
//! ## Layers (DESIGN.md §4)
//!
//! Bottom up; a module uses its own line and those below, never above (`tests/layers.rs` checks
//! every `crate::` path, and that neither modules nor the files of one module import each other
//! in a cycle).
//!
//! ```text
//!  node.rs         composition root: builds every subsystem, runs each loop under supervision
//!                  (node/loops.rs: a loop that dies stops the node), tears down in reverse
//!  cli/  tui/      presentation: clap commands and renderers to a writer (cli/output/);
//!                  the console (app state and keys, views); both talk through admin::Client
//!  admin/          wire protocol, Unix-socket server, live feeds, typed client, HTTP endpoint
//!  view/           the read model: status, metrics, blueprints, decisions, the live-feed diff
//!  metrics/ deploy/ ingress/ rollout/ controller/
//!                  subsystems over raft + net; pure cores apart from their loops
//!  raft/           openraft over redb: commands, the state machine split by job (apply,
//!                  control, reads, snapshot), membership, its own request/status types
//!  net/            QUIC endpoint, frames, the peer router (one route per subsystem), CA, tokens
//!  domain.rs config.rs platform.rs
//!                  plain types; configuration; what the binary is and needs of the CPU
//! ```
//!
//! ## Modules
//!
//! - [`node`]: composition root; builds every subsystem, supervises its loops, owns shutdown.
//! - [`config`]: the node's configuration and its precedence rules.
//! - [`platform`]: version, commit, target, CPU baseline, and the start-up gate that refuses a
//!   CPU below the baseline with a message.
//! - [`domain`]: plain types shared by all (node records, tokens, audit, decisions), no I/O.
//! - [`net`]: QUIC endpoint, framing, the peer router, the cluster CA and join tokens; the only
//!   user of quinn and rustls.
//! - [`raft`]: openraft over redb; typed commands; its own errors, status and read types; the
//!   only user of openraft and redb.
//! - [`metrics`]: sampling (sysinfo, NVML), push to the leader, snapshot broadcast, liveness,
//!   the 2-hour window, anomaly flags, Prometheus text; the only user of sysinfo and NVML.
//! - [`deploy`]: workloads: blueprint parsing, placement, the leader's assignment loop, the node
//!   reconciler, the process supervisor and instance logs (served to peers on their own route).
//! - [`ingress`]: the request path: every node listens on each slice's service port and
//!   routes to a ready instance anywhere (local TCP, or a hop over QUIC); balancing, ejection,
//!   retries, draining, waiting for an instance; a small JSON client for the strategic layer;
//!   the only user of hyper.
//! - [`rollout`]: rollouts as durable steps in Raft (rolling, canary with analysis, blue/green),
//!   the pure step machine and the leader's loop around it; automatic rollback with a reason.
//! - [`controller`]: rules, forecast, safety bounds (pure), the reviewer hook, the language model
//!   (candle; its own thread; a verdict and a reason, never a write), the leader's decision
//!   loop, and the optional strategic layer (advice from an OpenAI-compatible endpoint, never a
//!   write); decisions, modes and overrides are replicated.
//! - [`view`]: the read model the admin server sends and the CLI and console render.
//! - [`admin`]: admin protocol, Unix-socket server, live feeds, typed client, HTTP endpoint
//!   (health, `/metrics`).
//! - [`tui`]: the terminal console: app state and keymap (pure), views, the link to the node;
//!   the only user of ratatui and crossterm.
//! - [`cli`]: the clap command tree, the command handlers and their renderers.

pub mod admin;
pub mod cli;
pub mod config;
pub mod controller;
pub mod deploy;
pub mod domain;
pub mod ingress;
pub mod metrics;
pub mod net;
pub mod node;
pub mod platform;
pub mod raft;
pub mod rollout;
pub mod tui;
pub mod view;

/// Log to stderr with `RUST_LOG` if set, else `default` (`info` for the daemon, `warn` for
/// client commands); colours only when stderr is a terminal (a journal or a file gets plain
/// text). The same lines, plain, go to the daemon's log file once `aether node` has installed
/// it ([`platform::daemon_log`]).
///
/// openraft's replication modules log a WARN and an ERROR line on every retry to a peer that
/// is down (several a second): they are off by default, and `raft::network` says it instead,
/// once, then at a slowing rate ([`raft::network::PeerReports`]).
pub fn init_tracing(default: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{default},{QUIET_DEPENDENCIES}"))
    });
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(platform::daemon_log::FileWriter),
        )
        .try_init();
}

/// Directives added to the default log filter: dependencies at `warn` (raft-log says each
/// purge at `info`), openraft's per-retry replication lines off.
pub const QUIET_DEPENDENCIES: &str = "openraft=warn,quinn=warn,raft_log=warn,chunked_wal=warn,\
    openraft::replication=off,openraft::engine::handler::replication_handler=off";
