//! Composition root of `aether node`: resolves the node's identity (new cluster, join, or
//! restart), builds every subsystem, spawns every loop with one shutdown token, and tears them
//! down in reverse order, logging each step.

use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod certs;
mod loops;
mod notify;

use crate::config::Config;
use crate::controller::flow::Controller;
use crate::controller::rules::Rules;
use crate::domain::NodeId;
use crate::ingress::Ingress;
use crate::metrics::pipeline::Pipeline;
use crate::net::tls::{self, CaPem, JoinToken, NodeTls};
use crate::net::{self, Endpoint};
use crate::raft::network::{JOIN_ROUTE, JoinAccepted, JoinRefused, JoinRequest};
use crate::raft::types::RequestId;
use crate::raft::{self, Cluster};
use crate::{admin, deploy};
use loops::Loops;

/// How to start when the data dir holds no identity yet.
#[derive(Debug, Clone, Default)]
pub struct JoinArgs {
    /// A member's address (`host:port`).
    pub addr: Option<String>,
    /// Where the join token printed by `aether token create` comes from.
    pub token: Option<TokenSource>,
}

/// Where a join token comes from. Read only when the node joins: a member's restart with the
/// same settings does not need it.
#[derive(Clone)]
pub enum TokenSource {
    /// Given as a value (`--token` or `AETHER_TOKEN`); `what` names where, for errors.
    Value { token: String, what: &'static str },
    /// In a file (`--token-file` or `AETHER_TOKEN_FILE`).
    File(PathBuf),
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Value { what, .. } => write!(f, "Value({what}, <secret>)"),
            TokenSource::File(p) => write!(f, "File({})", p.display()),
        }
    }
}

/// A join token that cannot be used: bad input (exit 2), refused before anything is created.
#[derive(Debug, thiserror::Error)]
pub enum JoinTokenError {
    #[error(
        "cannot read the join token file '{path}' (--token-file, AETHER_TOKEN_FILE): {message}; check the path and that this user may read it"
    )]
    Unreadable { path: PathBuf, message: String },
    #[error(
        "the join token file '{path}' is empty: write the token printed by 'aether token create' on a member into it"
    )]
    EmptyFile { path: PathBuf },
    #[error(
        "the join token from {what} is empty: give the token printed by 'aether token create' on a member"
    )]
    EmptyValue { what: &'static str },
}

impl TokenSource {
    /// The token, with trailing whitespace trimmed (a file's newline).
    pub fn read(&self) -> Result<String, JoinTokenError> {
        let t = match self {
            TokenSource::Value { token, what } => {
                let t = token.trim_end();
                if t.is_empty() {
                    return Err(JoinTokenError::EmptyValue { what });
                }
                t.to_string()
            }
            TokenSource::File(path) => {
                let raw =
                    std::fs::read_to_string(path).map_err(|e| JoinTokenError::Unreadable {
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                let t = raw.trim_end();
                if t.is_empty() {
                    return Err(JoinTokenError::EmptyFile { path: path.clone() });
                }
                t.to_string()
            }
        };
        Ok(t)
    }
}

/// Who this node is; written once to `<data-dir>/identity.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Identity {
    id: NodeId,
    name: String,
    cluster_id: String,
}

/// Paths inside the data dir.
pub struct DataDir(pub PathBuf);

impl DataDir {
    pub fn identity(&self) -> PathBuf {
        self.0.join("identity.json")
    }
    pub fn tls(&self) -> PathBuf {
        self.0.join("tls")
    }
    pub fn socket(&self) -> PathBuf {
        self.0.join("aether.sock")
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let raw = if ok {
        String::from_utf8_lossy(&buf[..buf.iter().position(|b| *b == 0).unwrap_or(0)]).to_string()
    } else {
        String::new()
    };
    let name: String = raw
        .split('.')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    if name.is_empty() { "node".into() } else { name }
}

fn create_data_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create data dir '{}'", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot set mode 0700 on data dir '{}'", dir.display()))?;
    Ok(())
}

fn write_identity(dd: &DataDir, ident: &Identity) -> Result<()> {
    tls::write_private(
        &dd.identity(),
        serde_json::to_string_pretty(ident)?.as_bytes(),
    )?;
    Ok(())
}

/// Start a new cluster: CA, node certificate, identity.
fn bootstrap(dd: &DataDir, name: &str, ttl: Duration) -> Result<(Identity, CaPem)> {
    let cluster_id = format!("c-{}", hex::encode(rand::random::<[u8; 4]>()));
    let ca = tls::create_ca(&cluster_id)?;
    std::fs::create_dir_all(dd.tls())?;
    tls::write_private(&dd.tls().join("ca.key"), ca.key_pem.as_bytes())?;
    let now = (crate::domain::now_millis() / 1000) as i64;
    let (cert, key) = tls::issue_node_cert(&ca, name, now, ttl.as_secs() as i64)?;
    NodeTls::save(&dd.tls(), &ca.cert_pem, &cert, &key)?;
    let ident = Identity {
        id: 1,
        name: name.into(),
        cluster_id,
    };
    write_identity(dd, &ident)?;
    tracing::info!(
        "created cluster {} with CA sha256 {}",
        ident.cluster_id,
        tls::sha256_hex(&NodeTls::load(&dd.tls())?.ca)
    );
    Ok((ident, ca))
}

/// How long a joining node keeps asking while the cluster answers "not yet".
const JOIN_PATIENCE: Duration = Duration::from_secs(30);

/// Join an existing cluster through the member at `addr`.
async fn join(dd: &DataDir, cfg: &Config, name: &str, addr: &str, token: &str) -> Result<Identity> {
    let token = JoinToken::parse(token).context("the join token")?;
    let (key, csr_pem) = tls::new_csr(name)?;
    let req = JoinRequest {
        request: RequestId::new_random(),
        token_id: token.id.clone(),
        secret: token.secret.clone(),
        name: name.into(),
        addr: cfg.advertise_addr(),
        csr_pem,
    };
    tracing::info!("joining the cluster at {addr} as {name}");
    // Transient refusals (no leader yet, a cluster still writing its record) are retried with
    // the same request, so a join that did apply is answered again rather than applied twice.
    let deadline = tokio::time::Instant::now() + JOIN_PATIENCE;
    let acc = loop {
        let resp = net::join_call::<_, Result<JoinAccepted, JoinRefused>>(
            addr,
            &token.ca_sha256,
            JOIN_ROUTE,
            &req,
            &cfg.net,
            Duration::from_secs(20),
        )
        .await
        .map_err(|e| match e {
            net::NetError::NotThisCluster { .. } => anyhow::anyhow!(
                "join refused: the node at {addr} does not belong to the cluster this token is for (its CA does not match the token's CA pin): use a token created on a member of the cluster you want to join"
            ),
            e @ net::NetError::Protocol { .. } => anyhow::anyhow!("join refused: {e}"),
            e => anyhow::anyhow!(
                "join failed: {e}; check that a member listens on {addr} (UDP) and that this machine can reach it"
            ),
        })?;
        match resp {
            Ok(acc) => break acc,
            Err(r) if r.retry && tokio::time::Instant::now() < deadline => {
                tracing::warn!("join not possible yet: {r}; asking again");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(r) => bail!("join refused by {addr}: {r}"),
        }
    };
    let saved = NodeTls::save(&dd.tls(), &acc.ca_pem, &acc.cert_pem, &key.serialize_pem())?;
    if saved.ca_sha256() != token.ca_sha256 {
        bail!("join refused: the CA sent by {addr} does not match the token's CA pin");
    }
    let ident = Identity {
        id: acc.node_id,
        name: name.into(),
        cluster_id: acc.cluster_id,
    };
    write_identity(dd, &ident)?;
    tracing::info!(
        "joined cluster {} as node {} ({name})",
        ident.cluster_id,
        ident.id
    );
    Ok(ident)
}

/// Run `aether node` until SIGTERM/SIGINT, or until one of its loops ends (a failed store,
/// a loop that returned or panicked), which returns `Err`.
/// `rules`: the controller's rules and where they came from, parsed with the config so a bad
/// file is refused before anything is created.
pub async fn run(
    cfg: Config,
    data_dir: PathBuf,
    join_args: JoinArgs,
    (rules, rules_source): (Rules, String),
) -> Result<()> {
    let dd = DataDir(data_dir);
    // A data dir that already belongs to a cluster ignores the join settings (a restart under
    // systemd keeps them in its env file); a join reads its token before anything is created,
    // so a bad token file leaves no data dir behind.
    let member = dd.identity().exists();
    let join_token = match (&join_args.addr, &join_args.token) {
        (Some(_), Some(src)) if !member => Some(src.read()?),
        _ => None,
    };
    create_data_dir(&dd.0)?;
    // The daemon's own log, kept in the data dir for diagnostics bundles.
    if let Err(e) = crate::platform::daemon_log::install(&dd.0) {
        tracing::warn!(
            "cannot keep the daemon's log in '{}': {e}; logging to stderr only",
            crate::platform::daemon_log::path(&dd.0).display()
        );
    }
    let flagged_name = cfg.name.clone();

    // 1. identity: restart, join, or a new cluster.
    let (ident, founder_ca) = if dd.identity().exists() {
        let ident: Identity = serde_json::from_slice(&std::fs::read(dd.identity())?)
            .with_context(|| format!("corrupt identity file '{}'", dd.identity().display()))?;
        if let Some(n) = flagged_name.as_ref().filter(|n| **n != ident.name) {
            bail!(
                "this data dir belongs to node '{}', not '{n}': drop --name or use another --data-dir",
                ident.name
            );
        }
        if join_args.addr.is_some() || join_args.token.is_some() {
            tracing::info!(
                "already a member of cluster '{}' as node '{}': ignoring the join settings (--join, AETHER_JOIN and the token)",
                ident.cluster_id,
                ident.name
            );
        }
        let ca_key = dd.tls().join("ca.key");
        let founder_ca = if ca_key.exists() {
            let cert_pem = std::fs::read_to_string(dd.tls().join("ca.crt"))?;
            Some((
                ident.cluster_id.clone(),
                CaPem {
                    cert_pem,
                    key_pem: std::fs::read_to_string(ca_key)?,
                },
            ))
        } else {
            None
        };
        tracing::info!(
            "restarting node {} (id {}) of cluster {}",
            ident.name,
            ident.id,
            ident.cluster_id
        );
        (ident, founder_ca)
    } else {
        let name = flagged_name.clone().unwrap_or_else(hostname);
        crate::domain::validate_name("node name", &name)
            .map_err(|m| anyhow::anyhow!("{m} (set it with --name)"))?;
        match (&join_args.addr, &join_token) {
            (Some(addr), Some(token)) => (join(&dd, &cfg, &name, addr, token).await?, None),
            (None, None) => {
                let (ident, ca) = bootstrap(&dd, &name, cfg.tls.node_cert_ttl.0)?;
                let cid = ident.cluster_id.clone();
                (ident, Some((cid, ca)))
            }
            _ => bail!(
                "--join and a join token go together (--token-file, AETHER_TOKEN or --token): get a token with 'aether token create' on a member"
            ),
        }
    };
    let node_tls = NodeTls::load(&dd.tls())?;

    // 2. transport, store, raft.
    let reset_secret = NodeTls::reset_secret(&dd.tls())?;
    let ep = Endpoint::bind(cfg.listen, &node_tls, &reset_secret, &cfg.net)?;
    tracing::info!(
        "quic endpoint listening on {} (advertised as {})",
        ep.local_addr(),
        cfg.advertise_addr()
    );
    let cluster = Cluster::start(
        ident.id,
        ident.name.clone(),
        &cfg,
        &dd.0,
        ep.clone(),
        node_tls.ca_sha256(),
        founder_ca,
    )
    .await?;

    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    // Every loop runs under `loops`: one that ends while the node runs stops the node.
    let mut loops = Loops::new(shutdown.clone());

    // 3. metrics pipeline; serve peers, admin socket, http; leader upkeep; watch for fatal
    //    store errors.
    // One request recorder per node: the ingress writes it (`metrics.recorder()`), the
    // pipeline sends its deltas, `/metrics` shows its totals.
    let requests = Arc::new(crate::metrics::requests::Recorder::new());
    let metrics = Pipeline::new(
        cluster.clone(),
        cfg.metrics.clone(),
        cfg.gpu.clone(),
        cfg.deploy.gpus.clone(),
        requests.clone(),
    )?;
    loops.spawn("metrics pipeline", metrics.clone().run(shutdown.clone()));
    if !cfg.carbon.source.trim().is_empty() {
        loops.spawn(
            "carbon signal",
            crate::controller::carbon::run(metrics.clone(), cfg.carbon.clone(), shutdown.clone()),
        );
    }
    tracing::info!("metrics pipeline sampling every {}", cfg.metrics.interval);
    // 4. the request path and the workloads: the ingress routes until the workloads have
    //    stopped (so instances drain while it still routes), the assignment loop (acts while
    //    leader) and this node's reconciler, which drains each instance before stopping it.
    let workloads_stopped = CancellationToken::new();
    let ingress = Ingress::new(
        cluster.clone(),
        cfg.ingress.clone(),
        requests,
        workloads_stopped.clone(),
    );
    loops.spawn("ingress", ingress.clone().run());
    loops.spawn(
        "assignment loop",
        crate::deploy::cluster::run(
            cluster.clone(),
            metrics.clone(),
            cfg.deploy.clone(),
            shutdown.clone(),
        ),
    );
    loops.spawn("workload reconciler", {
        let run = crate::deploy::node::run(
            cluster.clone(),
            metrics.clone(),
            cfg.deploy.clone(),
            Some(ingress.clone() as Arc<dyn crate::deploy::Drain>),
            shutdown.clone(),
        );
        let stopped = workloads_stopped.clone();
        async move {
            let r = run.await;
            stopped.cancel();
            r
        }
    });
    tracing::info!("workload reconciler running");
    loops.spawn(
        "rollout engine",
        crate::rollout::run(cluster.clone(), metrics.clone(), shutdown.clone()),
    );
    // 5. the controller (decides while leader; observes everywhere) and its language model,
    //    on a thread of its own that loads the weights when this node first leads.
    let model_path = crate::controller::model::file::model_path(&cfg.controller.model.path, &dd.0);
    let model = crate::controller::model::Engine::start(
        &cfg.controller.model,
        model_path.clone(),
        cfg.controller.max_step,
    );
    tracing::info!("model {}: {}", model_path.display(), model.status().state);
    let controller = Controller::new(
        cluster.clone(),
        metrics.clone(),
        cfg.controller.clone(),
        rules,
        rules_source.clone(),
        model.clone(),
        &cfg.power,
    );
    loops.spawn("controller", controller.clone().run(shutdown.clone()));
    // Spot interruption notices: only when `signals.spot` names a provider.
    if cfg.signals.spot != crate::config::SpotProvider::None {
        loops.spawn(
            "spot signals",
            crate::controller::spot::watch::run(
                cluster.clone(),
                cfg.signals.clone(),
                shutdown.clone(),
            ),
        );
    }
    // The strategic layer: only when configured; nothing leaves the host otherwise.
    if cfg.controller.advisor.enabled {
        let advisor = crate::controller::advise::Advisor::new(
            cluster.clone(),
            metrics.clone(),
            controller.clone(),
            cfg.controller.advisor.clone(),
        );
        loops.spawn("advisor", advisor.run(shutdown.clone()));
    }
    tracing::info!(
        "controller running ({} rules{})",
        rules_source,
        if cfg.controller.enabled {
            ""
        } else {
            "; disabled by controller.enabled"
        }
    );
    let sources = crate::view::Sources {
        cluster: cluster.clone(),
        metrics: metrics.clone(),
        controller: controller.published(),
        model: model.clone(),
        proposer: controller.clone(),
        // As it runs: with the name and data dir it resolved.
        config: Arc::new(Config {
            name: Some(ident.name.clone()),
            data_dir: Some(dd.0.clone()),
            ..cfg.clone()
        }),
    };
    // Remote operators on the QUIC port: the same requests as the socket, each checked first.
    ep.serve_admin(Arc::new(admin::server::Remote {
        src: sources.clone(),
        shutdown: shutdown.clone(),
    }));
    // Each subsystem answers its own messages on the peer endpoint.
    let router = net::Router::new()
        .add(raft::network::ROUTE, cluster.clone())
        .add(JOIN_ROUTE, Arc::new(raft::Joins(cluster.clone())))
        .add(
            deploy::logs::ROUTE,
            Arc::new(deploy::logs::LogService {
                data_dir: cluster.data_dir().to_path_buf(),
            }),
        )
        .add(net::ping::ROUTE, Arc::new(net::ping::Pinger))
        .add(
            deploy::drill::runner::ROUTE,
            Arc::new(deploy::drill::runner::DrillService(cluster.clone())),
        )
        .add(
            admin::diag::ROUTE,
            Arc::new(admin::diag::DiagService(sources.clone())),
        )
        .add_stream(
            crate::ingress::HOP_ROUTE,
            Arc::new(crate::ingress::HopService(ingress.clone())),
        );
    tracing::info!("peer routes: {}", router.names().join(", "));
    loops.add(
        "peer endpoint",
        // Peers are served until the workloads have stopped: their instances' last
        // requests and stopping reports still travel.
        ep.serve(
            Arc::new(router),
            metrics.clone(),
            workloads_stopped.clone(),
            tracker.clone(),
        ),
    );
    let admin_listener = admin::server::bind(&dd.socket()).map_err(anyhow::Error::msg)?;
    loops.add(
        "admin socket",
        admin::server::serve(
            admin_listener,
            dd.socket(),
            sources.clone(),
            shutdown.clone(),
            tracker.clone(),
        ),
    );
    tracing::info!("admin socket at {}", dd.socket().display());
    let http_listener = admin::http::bind(cfg.http)
        .await
        .map_err(anyhow::Error::msg)?;
    tracing::info!("http endpoint on http://{}", http_listener.local_addr()?);
    loops.add(
        "http endpoint",
        admin::http::serve(http_listener, sources, shutdown.clone()),
    );
    // The service manager (systemd, Type=notify) hears when the node is ready, what it is,
    // and, while its loops run, the watchdog's pings.
    let notifier = Arc::new(notify::Notifier::from_env());
    if notifier.enabled() {
        loops.spawn(
            "systemd notifier",
            notify::run(notifier.clone(), cluster.clone(), shutdown.clone()),
        );
    }
    loops.spawn("elections", cluster.clone().run_elections(shutdown.clone()));
    loops.spawn(
        "certificate renewal",
        certs::run(
            cluster.clone(),
            ep.clone(),
            dd.tls(),
            cfg.tls.node_cert_ttl.0,
            shutdown.clone(),
        ),
    );
    loops.spawn(
        "membership loop",
        cluster
            .clone()
            .run_membership(Duration::from_millis(300), shutdown.clone()),
    );
    loops.spawn("raft store watch", {
        let (cluster, shutdown) = (cluster.clone(), shutdown.clone());
        let mut metrics = cluster.raft.metrics();
        async move {
            loop {
                if let Some(e) = cluster.failure() {
                    return Err(StoreFailed(e));
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    r = metrics.changed() => if r.is_err() { return Ok(()) },
                }
            }
        }
    });
    loops.up();
    tracing::info!("node {} (id {}) is up", ident.name, ident.id);

    // 6. wait for a signal or a fatal error; a second signal exits at once.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        _ = shutdown.cancelled() => {}
    }
    notifier.stopping();
    tokio::spawn(async move {
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        eprintln!("second signal: exiting at once");
        std::process::exit(130);
    });

    // 7. tear down in reverse.
    let death = loops.stop().await;
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(5), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within 5 s; stopping anyway");
    } else {
        tracing::info!("in-flight requests finished");
    }
    if let Err(e) = cluster.raft.shutdown().await {
        tracing::warn!("raft shutdown: {e}");
    }
    tracing::info!("raft stopped");
    // Raft's core has ended: a failed store is the cause even when another loop noticed first
    // (they end with it).
    let store_failed = cluster.failure();
    ep.close(Duration::from_millis(500)).await;
    tracing::info!("quic endpoint closed");
    drop(cluster);
    tracing::info!("store closed");
    if let Some(e) = store_failed {
        bail!("the raft store failed and the node stopped: {e}");
    }
    if let Some(death) = death {
        bail!("{death}; the node stopped (its supervisor, e.g. systemd, restarts it)");
    }
    tracing::info!("node stopped cleanly");
    Ok(())
}

/// The raft store stopped running; the node stops with it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct StoreFailed(String);
