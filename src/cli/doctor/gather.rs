//! `aether doctor`'s loop: gathers each selected check's facts (the OS through
//! `platform::probe`, the node through `admin::Client`), hands them to the check's verdict and
//! prints the results.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{
    Cert, DirFacts, Fsync, Outcome, Port, Status, certs, clock, cpu, data_dir, disk, exit_code,
    fd_limit, gpu, kernel, model, no_node, peers, raft, render, render_list, select, skew,
};
use crate::admin::client::Client;
use crate::cli::args::{Cli, OutputFormat};
use crate::cli::{Failure, exit};
use crate::config::{self, Config};
use crate::platform::probe;

/// The fsync probe runs at most this long …
const FSYNC_BUDGET: Duration = Duration::from_secs(1);
/// … and writes at most this many blocks.
const FSYNC_MAX_WRITES: usize = 2_000;

/// How long the node may take to answer the cluster checks (its pings wait at most
/// `DOCTOR_PING_TIMEOUT_MS` each, all at once).
const NODE_ANSWER: Duration = Duration::from_secs(10);

/// Run `aether doctor [--list] [CHECK…]`: print the results and fail (exit 1) when a check
/// failed; an unknown check name is bad usage (exit 2) and runs nothing.
pub async fn run(cli: &Cli, list: bool, names: &[String]) -> Result<(), Failure> {
    let json = cli.output == OutputFormat::Json;
    let out = &mut std::io::stdout().lock();
    let unwritten =
        |e: std::io::Error| Failure::new(exit::FAILED, format!("cannot write the output: {e}"));
    if list {
        return render_list(out, json).map_err(unwritten);
    }
    let checks = select(names).map_err(|e| Failure::new(exit::USAGE, e))?;
    let cfg = load_config(cli)?;
    let dir = cfg
        .data_dir
        .clone()
        .unwrap_or_else(config::default_data_dir);
    // The node's socket in the data dir its config names, unless --socket says otherwise.
    let socket = cli
        .socket
        .clone()
        .unwrap_or_else(|| dir.join("aether.sock"));
    // No socket: no node here (the cluster checks are skipped). A socket that refuses: a node
    // that crashed and left it, or one this user may not reach; the cluster checks fail.
    let (mut node, refused) = match Client::connect(&socket).await {
        Ok(c) => (Some(c), None),
        Err(e) if socket.exists() => (None, Some(e)),
        Err(_) => (None, None),
    };
    let running = node.is_some();
    // One ask serves the three cluster checks and the ports (the node's QUIC address).
    let view = match &mut node {
        Some(c)
            if checks
                .iter()
                .any(|n| super::CLUSTER_CHECKS.contains(n) || *n == "ports") =>
        {
            // A node that accepts but never answers (stopped, wedged) is a failed check, not
            // a hung doctor.
            Some(match tokio::time::timeout(NODE_ANSWER, c.doctor()).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer within {} s", NODE_ANSWER.as_secs())),
            })
        }
        None => refused.map(|e| {
            Err(format!(
                "its socket is there but refuses connections ({e}); a node that crashed leaves it behind: restart the node, or, as root, check the socket's owner"
            ))
        }),
        _ => None,
    };
    let mut outcomes = Vec::new();
    for name in checks {
        let o = match name {
            "cpu" => {
                let b = crate::platform::BuildInfo::current();
                cpu(&b.cpu_baseline, &b.cpu_needs, &b.cpu_missing)
            }
            "kernel" => {
                let release = probe::kernel_release().map_err(|e| e.to_string());
                kernel(release.as_deref().map_err(Clone::clone), &probe::cgroups())
            }
            "fd-limit" => match probe::open_files_limit() {
                Ok((soft, hard)) => fd_limit(soft, hard),
                Err(e) => Outcome {
                    name: "fd-limit".into(),
                    status: Status::Warn,
                    summary: format!("cannot read RLIMIT_NOFILE: {e}"),
                    fix: None,
                    figures: BTreeMap::new(),
                },
            },
            "clock" => clock(probe::clock().map_err(|e| e.to_string())),
            "disk" => disk_check(&dir),
            "ports" => ports_check(
                &cfg,
                running,
                view.as_ref().and_then(|v| v.as_ref().ok()).map(|v| v.listen),
            ),
            "data-dir" => data_dir(&dir_facts(&dir, &socket)),
            "certs" => certs_check(&dir),
            "gpu" => gpu(gpus()),
            "model" => {
                let path = crate::controller::model::file::model_path(&cfg.controller.model.path, &dir);
                let size = std::fs::File::open(&path)
                    .and_then(|f| f.metadata())
                    .map(|m| m.len())
                    .map_err(|e| e.to_string());
                model(&path, size)
            }
            cluster => match &view {
                None => no_node(cluster, &socket),
                Some(Err(e)) => Outcome {
                    name: cluster.into(),
                    status: Status::Fail,
                    summary: format!("the node at '{}' did not answer: {e}", socket.display()),
                    fix: Some("'aether status' says more; is the node the same aether version as this CLI?".into()),
                    figures: BTreeMap::new(),
                },
                Some(Ok(v)) => match cluster {
                    "raft" => raft(v),
                    "peers" => peers(v),
                    _ => skew(v),
                },
            },
        };
        outcomes.push(o);
    }
    render(out, &outcomes, json).map_err(unwritten)?;
    match exit_code(&outcomes) {
        0 => Ok(()),
        code => {
            let failed: Vec<&str> = outcomes
                .iter()
                .filter(|o| o.status == Status::Fail)
                .map(|o| o.name.as_str())
                .collect();
            Err(Failure::new(
                code,
                format!("{} check(s) failed: {}", failed.len(), failed.join(", ")),
            ))
        }
    }
}

/// The node's configuration as `aether node` would read it (file, environment, --data-dir).
fn load_config(cli: &Cli) -> Result<Config, Failure> {
    let flags = super::super::run::data_dir_flag(cli).into_iter().collect();
    let env = super::super::run::aether_env();
    // The file `aether node` reads: AETHER_CONFIG, else the default when it exists.
    let file = env.get("AETHER_CONFIG").map(PathBuf::from);
    Config::load(file.as_deref(), &env, flags).map_err(|e| Failure::new(exit::USAGE, e.to_string()))
}

fn disk_check(dir: &Path) -> Outcome {
    if !dir.is_dir() {
        // Measure the filesystem it will be made on; write nothing outside it.
        let parent = dir
            .ancestors()
            .find(|p| p.is_dir())
            .unwrap_or(Path::new("/"));
        return disk(
            dir,
            probe::space(parent).map_err(|e| e.to_string()),
            Err(format!(
                "the data dir '{}' does not exist yet",
                dir.display()
            )),
        );
    }
    let fsync = probe::fsync_probe(dir, FSYNC_BUDGET, FSYNC_MAX_WRITES)
        .map(|(latencies, elapsed)| Fsync { latencies, elapsed })
        .map_err(|e| format!("cannot write a probe file in '{}': {e}", dir.display()));
    disk(dir, probe::space(dir).map_err(|e| e.to_string()), fsync)
}

fn ports_check(cfg: &Config, running: bool, listen: Option<std::net::SocketAddr>) -> Outcome {
    let bind = |r: std::io::Result<()>| r.err().map(|e| e.kind());
    // A running node started with `--listen` is checked where it listens, not at the config's.
    let quic = listen.unwrap_or(cfg.listen);
    super::ports(
        &[
            Port {
                proto: "udp",
                role: "quic",
                addr: quic,
                error: bind(probe::udp_bindable(quic)),
            },
            Port {
                proto: "tcp",
                role: "http",
                addr: cfg.http,
                error: bind(probe::tcp_bindable(cfg.http)),
            },
        ],
        running,
        listen,
    )
}

fn dir_facts(dir: &Path, socket: &Path) -> DirFacts {
    let euid = probe::euid();
    let tls = dir.join("tls");
    let mut keys: Vec<(PathBuf, probe::FileFacts)> = std::fs::read_dir(&tls)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "key"))
        .filter_map(|p| probe::file(&p).ok().map(|f| (p, f)))
        .collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    DirFacts {
        dir: dir.to_path_buf(),
        facts: probe::file(dir).ok(),
        euid,
        user: crate::deploy::supervisor::user::name_of(euid),
        keys,
        socket: probe::file(socket).ok().map(|f| (socket.to_path_buf(), f)),
    }
}

fn certs_check(dir: &Path) -> Outcome {
    let tls = dir.join("tls");
    let found: Vec<Cert> = [("node", "node.crt"), ("ca", "ca.crt")]
        .into_iter()
        .map(|(which, file)| (which, tls.join(file)))
        .filter(|(_, p)| p.exists())
        .map(|(which, path)| Cert {
            which,
            not_after: crate::net::tls::cert_not_after(&path).map_err(|e| e.to_string()),
            path,
        })
        .collect();
    certs(&tls, &found, (crate::domain::now_millis() / 1000) as i64)
}

/// The GPUs the metrics sampler would read, or why it cannot.
fn gpus() -> Result<Vec<String>, String> {
    use crate::metrics::gpu::{GpuState, Gpus};
    // The sampler logs why GPUs are off; here the check's line says it.
    let mut gpus =
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), Gpus::init);
    match gpus.sample() {
        GpuState::Unavailable(why) => Err(why),
        GpuState::Gpus(g) => Ok(g
            .iter()
            .map(|g| format!("{} {}", g.index, g.name))
            .collect()),
    }
}
