//! The client commands: each talks to a node through [`Client`]'s typed requests and hands
//! the answer to its renderer in `output`, writing to stdout.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::CommandFactory;

use super::args::{
    AdviceCmd, BlueprintCmd, Cli, Cmd, DecisionsCmd, DiagCmd, DrillCmd, KvCmd, ModelCmd, NodeArgs,
    OperatorCertCmd, OperatorCmd, OutputFormat, OverrideCmd, RolloutCmd, SnapshotCmd, TokenCmd,
};
use super::output;
use super::{Failure, exit};
use crate::admin::client::{Client, Target};
use crate::config::{self, Config, FlagOverride};
use crate::domain::{NodeState, RolloutOp, now_millis};
use crate::raft::backup::{self, BackupError, BackupInfo};
use crate::raft::types::Command;

/// Resolve `aether node`'s configuration from its flags, the environment and the file.
/// The node's config, data dir and rules (with where they came from), or why not.
pub fn node_config(
    cli: &Cli,
    args: &NodeArgs,
) -> Result<(Config, PathBuf, (crate::controller::rules::Rules, String)), Failure> {
    let mut flags = Vec::new();
    if let Some(n) = &args.name {
        flags.push(FlagOverride {
            key: "name",
            value: n.clone().into(),
            flag: "--name",
        });
    }
    if let Some(a) = &args.listen {
        flags.push(FlagOverride {
            key: "listen",
            value: a.to_string().into(),
            flag: "--listen",
        });
    }
    if let Some(a) = &args.advertise {
        flags.push(FlagOverride {
            key: "advertise",
            value: a.clone().into(),
            flag: "--advertise",
        });
    }
    if let Some(a) = &args.http {
        flags.push(FlagOverride {
            key: "http",
            value: a.to_string().into(),
            flag: "--http",
        });
    }
    flags.extend(data_dir_flag(cli));
    let env = aether_env();
    let cfg = Config::load(args.config.as_deref(), &env, flags)
        .map_err(|e| Failure::new(exit::USAGE, e.to_string()))?;
    // The rule file is configuration too: refused before the node touches its data dir.
    let rules = crate::controller::flow::load_rules(&cfg.controller)
        .map_err(|e| Failure::new(exit::USAGE, e.to_string()))?;
    let dir = cfg
        .data_dir
        .clone()
        .unwrap_or_else(config::default_data_dir);
    Ok((cfg, dir, rules))
}

/// The node this command talks to: `--remote` with its identity, else the local socket.
fn node_target(cli: &Cli) -> Target {
    match &cli.remote {
        Some(addr) => Target::Remote {
            addr: addr.clone(),
            identity: cli.identity(),
        },
        None => Target::Socket(cli.socket()),
    }
}

/// A connection to the node this command talks to.
async fn client(cli: &Cli) -> Result<Client, Failure> {
    Ok(Client::connect_to(&node_target(cli)).await?)
}

/// Stdout, locked, for a renderer.
fn stdout() -> std::io::StdoutLock<'static> {
    std::io::stdout().lock()
}

/// The `AETHER_*` variables of this process, as `Config::load` reads them.
pub(super) fn aether_env() -> BTreeMap<String, String> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("AETHER_"))
        .collect()
}

/// `--data-dir`, when given, as an override of the config's `data_dir`.
pub(super) fn data_dir_flag(cli: &Cli) -> Option<FlagOverride> {
    cli.data_dir.as_ref().map(|d| FlagOverride {
        key: "data_dir",
        value: d.display().to_string().into(),
        flag: "--data-dir",
    })
}

/// A renderer could not write its output.
fn unwritten(e: std::io::Error) -> Failure {
    Failure::new(exit::FAILED, format!("cannot write the output: {e}"))
}

/// Run a client command (everything but `node`).
pub async fn run_client(cli: &Cli) -> Result<(), Failure> {
    let json = cli.output == OutputFormat::Json;
    match &cli.command {
        Cmd::Node(_) => unreachable!("node is dispatched by main"),
        Cmd::Status => {
            let s = client(cli).await?.status().await?;
            output::status(&mut stdout(), &s, now_millis(), json).map_err(unwritten)?;
        }
        Cmd::Events { limit } => {
            let a = client(cli).await?.audit(*limit).await?;
            output::events(&mut stdout(), &a, now_millis(), json).map_err(unwritten)?;
        }
        Cmd::Nodes => {
            let n = client(cli).await?.nodes().await?;
            output::nodes(&mut stdout(), &n, json).map_err(unwritten)?;
        }
        Cmd::Token(TokenCmd::Create { ttl, uses }) => {
            let ttl_ms = ttl.0.map(|d| d.as_millis() as u64);
            let t = client(cli).await?.token_create(ttl_ms, *uses).await?;
            output::token(
                &mut stdout(),
                &mut std::io::stderr().lock(),
                &t,
                now_millis(),
                json,
            )
            .map_err(unwritten)?;
        }
        Cmd::Token(TokenCmd::List) => {
            let t = client(cli).await?.tokens().await?;
            output::tokens(&mut stdout(), &t, now_millis(), json).map_err(unwritten)?;
        }
        Cmd::Token(TokenCmd::Revoke { id }) => {
            let mut c = client(cli).await?;
            let known = c.tokens().await?;
            if !known.iter().any(|t| t.id == *id) {
                let ids: Vec<&str> = known.iter().map(|t| t.id.as_str()).collect();
                return Err(Failure::new(
                    exit::USAGE,
                    format!(
                        "no join token with id '{id}'; known: {}",
                        if ids.is_empty() {
                            "none".into()
                        } else {
                            ids.join(", ")
                        }
                    ),
                ));
            }
            c.write(Command::RevokeJoinToken { id: id.clone() }).await?;
            output::ok(&mut stdout(), json).map_err(unwritten)?;
        }
        Cmd::Remove { node } => {
            let done = client(cli).await?.remove(node.clone()).await?;
            output::done(&mut stdout(), &done, json).map_err(unwritten)?;
        }
        Cmd::Kv(kv) => run_kv(cli, kv, json).await?,
        Cmd::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "aether", &mut stdout());
        }
        Cmd::Drain { node } => set_node_state(cli, node, NodeState::Draining, json).await?,
        Cmd::Undrain { node } => set_node_state(cli, node, NodeState::Ready, json).await?,
        Cmd::Blueprint(b) => run_blueprint(cli, b, json).await?,
        Cmd::Scale { target, instances } => {
            let Some((blueprint, slice)) = target.split_once('/') else {
                return Err(Failure::new(
                    exit::USAGE,
                    format!("expected BLUEPRINT/SLICE (e.g. shop/web), found '{target}'"),
                ));
            };
            let v = client(cli)
                .await?
                .scale(blueprint.into(), slice.into(), *instances)
                .await?;
            output::version(&mut stdout(), blueprint, v, json).map_err(unwritten)?;
        }
        Cmd::Logs {
            target,
            follow,
            lines,
        } => run_logs(cli, target, *follow, *lines, json).await?,
        Cmd::Metrics {
            node,
            series,
            since,
        } => {
            let m = client(cli)
                .await?
                .metrics(node.clone(), series.clone(), Some(since.as_secs().max(1)))
                .await?;
            output::metrics(&mut stdout(), &m, node.is_some(), json).map_err(unwritten)?;
        }
        Cmd::Traffic { target } => {
            let t = client(cli).await?.traffic(target.clone()).await?;
            output::traffic(&mut stdout(), &t, now_millis(), json).map_err(unwritten)?;
        }
        Cmd::Rollout(r) => run_rollout(cli, r, json).await?,
        Cmd::Decisions { cmd, all, limit } => match cmd {
            None | Some(DecisionsCmd::List) => {
                let d = client(cli).await?.decisions(*all, *limit).await?;
                output::decisions(&mut stdout(), &d, now_millis(), json).map_err(unwritten)?;
            }
            Some(DecisionsCmd::Show { id }) => {
                let id = decision_id(id)?;
                let d = client(cli).await?.decision(id).await?;
                output::decision(&mut stdout(), &d, now_millis(), json).map_err(unwritten)?;
            }
        },
        Cmd::Advice { cmd } => match cmd {
            None | Some(AdviceCmd::List) => {
                let a = client(cli).await?.advice().await?;
                output::advice(&mut stdout(), a.as_ref(), now_millis(), json).map_err(unwritten)?;
            }
            Some(AdviceCmd::Take { id }) => {
                let d = client(cli).await?.advice_take(id.clone()).await?;
                output::advice_taken(&mut stdout(), &d, json).map_err(unwritten)?;
            }
        },
        Cmd::Override(o) => {
            let cmd = match o {
                OverrideCmd::Veto { id, reason } => Command::VetoDecision {
                    id: decision_id(id)?,
                    reason: reason.clone(),
                },
                OverrideCmd::Approve { id } => Command::ApproveDecision {
                    id: decision_id(id)?,
                },
                OverrideCmd::Pause { reason } => Command::PauseController {
                    reason: reason.clone(),
                },
                OverrideCmd::Resume => Command::ResumeController,
                OverrideCmd::Mode { mode, grace } => Command::SetControllerMode {
                    mode: *mode,
                    grace_ms: grace.map(|g| g.as_millis() as u64),
                },
            };
            client(cli).await?.write(cmd).await?;
            output::ok(&mut stdout(), json).map_err(unwritten)?;
        }
        Cmd::Tui { readonly, config } => {
            let env: BTreeMap<String, String> = std::env::vars().collect();
            let cfg = Config::load(config.as_deref(), &env, Vec::new())
                .map_err(|e| Failure::new(exit::USAGE, e.to_string()))?;
            let keys = crate::tui::keymap::Keymap::new(&cfg.tui.keys)
                .map_err(|e| Failure::new(exit::USAGE, e))?;
            let opts = crate::tui::Options {
                socket: node_target(cli),
                readonly: *readonly,
                keys,
            };
            let rt = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || crate::tui::run(opts, rt))
                .await
                .map_err(|e| Failure::new(exit::FAILED, format!("the console stopped: {e}")))??;
        }
        Cmd::Model(ModelCmd::Pull { from, sha256 }) => {
            let from = match from {
                Some(f) => f.clone(),
                None => {
                    let cfg = config::Config::load(None, &std::env::vars().collect(), Vec::new())
                        .map_err(|e| Failure::new(exit::USAGE, e.to_string()))?;
                    cfg.controller.model.url
                }
            };
            let dir = cli.data_dir().join("models");
            let pulled = crate::controller::model::pull(&from, &dir, sha256.as_deref())
                .map_err(|e| Failure::new(exit::FAILED, e.to_string()))?;
            output::pulled(&mut stdout(), &pulled, json).map_err(unwritten)?;
        }
        Cmd::Model(ModelCmd::Status) => match client(cli).await {
            Ok(mut c) => {
                let m = c.model().await?;
                output::model(&mut stdout(), &m, json).map_err(unwritten)?;
            }
            Err(f) => {
                // The file can still be described without the node.
                let path = crate::controller::model::file::model_path("", &cli.data_dir());
                match crate::controller::model::inspect(&path) {
                    Ok(info) => eprintln!(
                        "the node is not reachable; its default model file '{}' holds {} ({}, {})",
                        path.display(),
                        info.name,
                        info.arch,
                        info.quant
                    ),
                    Err(e) => eprintln!("the node is not reachable; {e}"),
                }
                return Err(f);
            }
        },
        Cmd::Model(ModelCmd::Review { example: true, .. }) => {
            std::io::Write::write_all(
                &mut stdout(),
                crate::controller::review::file::EXAMPLE.as_bytes(),
            )
            .map_err(unwritten)?;
        }
        Cmd::Model(ModelCmd::Review {
            file: Some(file), ..
        }) => {
            let text = if file.as_os_str() == "-" {
                let mut t = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut t).map(|_| t)
            } else {
                std::fs::read_to_string(file)
            }
            .map_err(|e| {
                Failure::new(
                    exit::USAGE,
                    format!("cannot read '{}': {e}", file.display()),
                )
            })?;
            // Checked here first, so a bad file is named without asking the node.
            crate::controller::review::file::parse(&text, crate::domain::now_millis())
                .map_err(|e| Failure::new(exit::USAGE, format!("'{}': {e}", file.display())))?;
            let r = client(cli).await?.model_review(text).await?;
            output::model_review(&mut stdout(), &r, json).map_err(unwritten)?;
        }
        Cmd::Model(ModelCmd::Review { file: None, .. }) => {
            return Err(Failure::new(
                exit::USAGE,
                "give a situation FILE or --example".to_string(),
            ));
        }
        Cmd::Model(ModelCmd::Bench { seconds }) => {
            let b = client(cli).await?.model_bench(*seconds).await?;
            output::model_bench(&mut stdout(), &b, json).map_err(unwritten)?;
        }
        Cmd::Version => {
            let b = crate::platform::BuildInfo::current();
            output::build_info(&mut stdout(), &b, json).map_err(unwritten)?;
        }
        Cmd::Snapshot(cmd) => return run_snapshot(cli, cmd, json).await,
        Cmd::Diag(_) if cli.remote.is_some() => {
            return Err(Failure::new(
                exit::USAGE,
                "'diag bundle' gathers through a node's local socket: run it on a node (over ssh), without --remote",
            ));
        }
        Cmd::Doctor { .. } if cli.remote.is_some() => {
            return Err(Failure::new(
                exit::USAGE,
                "'doctor' checks the machine it runs on and its node: run it on the node (over ssh), without --remote",
            ));
        }
        Cmd::Doctor { list, checks } => super::doctor::gather::run(cli, *list, checks).await?,
        Cmd::Diag(DiagCmd::Bundle { file, since }) => {
            super::diag::bundle(cli, file.as_deref(), *since, json).await?
        }
        Cmd::Drill(DrillCmd::Run {
            scenario,
            target,
            hold,
            dry_run,
        }) => {
            let scenario = crate::deploy::drill::Scenario::parse(scenario, target.as_deref())
                .map_err(|m| Failure::new(exit::USAGE, m))?;
            let hold_ms = hold.map(|h| h.as_millis() as u64);
            // Progress goes to stderr as it comes; the report to stdout at the end.
            let progress = |line: &str| eprintln!("drill: {line}");
            let r = client(cli)
                .await?
                .drill(scenario, hold_ms, *dry_run, progress)
                .await?;
            output::drill(&mut stdout(), &r, json).map_err(unwritten)?;
            if !r.recovered {
                return Err(Failure::new(
                    exit::FAILED,
                    "the cluster did not recover within the drill's bound; check 'aether status' and 'aether events'",
                ));
            }
        }
        Cmd::Operator(OperatorCmd::Cert(c)) => run_operator_cert(cli, c, json).await?,
        Cmd::Man { dir: Some(dir) } => {
            super::args::write_man_pages(dir).map_err(|e| {
                Failure::new(
                    exit::FAILED,
                    format!("cannot write man pages to '{}': {e}", dir.display()),
                )
            })?;
        }
        Cmd::Man { dir: None } => {
            let mut cmd = Cli::command().disable_help_subcommand(true);
            cmd.build();
            super::args::man_page(cmd)
                .and_then(|(_, page)| std::io::Write::write_all(&mut stdout(), page.as_bytes()))
                .map_err(|e| {
                    Failure::new(exit::FAILED, format!("cannot print the man page: {e}"))
                })?;
        }
    }
    Ok(())
}

/// A backup file's problem: bad input (exit 2) when the file or the target dir is at fault.
fn backup_failure(e: BackupError) -> Failure {
    let code = if e.is_bad_input() {
        exit::USAGE
    } else {
        exit::FAILED
    };
    Failure::new(code, e.to_string())
}

/// `aether snapshot …`.
async fn run_snapshot(cli: &Cli, cmd: &SnapshotCmd, json: bool) -> Result<(), Failure> {
    match cmd {
        SnapshotCmd::Save { file } => {
            let saved = snapshot_save(cli, file).await?;
            output::snapshot_saved(&mut stdout(), file, &saved, json).map_err(unwritten)
        }
        SnapshotCmd::Inspect { file } => {
            let info = backup::inspect(file).map_err(backup_failure)?;
            output::snapshot_info(&mut stdout(), file, &info, now_millis(), json).map_err(unwritten)
        }
        SnapshotCmd::Restore { file } => {
            let Some(dir) = &cli.data_dir else {
                return Err(Failure::new(
                    exit::USAGE,
                    "restore needs --data-dir DIR: the new cluster's data dir (empty or absent)",
                ));
            };
            let r = backup::restore(file, dir).map_err(backup_failure)?;
            output::snapshot_restored(&mut stdout(), &r, json).map_err(unwritten)
        }
    }
}

/// Stream the node's backup into a temp file beside `file` (mode 0600), verify it, then
/// rename it into place: `file` is the whole verified backup or untouched.
async fn snapshot_save(cli: &Cli, file: &std::path::Path) -> Result<BackupInfo, Failure> {
    let bad = |m: String| Failure::new(exit::USAGE, m);
    if file.file_name().is_none() {
        return Err(bad(format!("'{}' is not a file name", file.display())));
    }
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(bad(format!(
            "cannot save to '{}': its directory '{}' does not exist",
            file.display(),
            dir.display()
        )));
    }
    let mut c = client(cli).await?;
    let failed = |m: String| Failure::new(exit::FAILED, m);
    let (tmp, f) = super::diag::create_partial(file)?;
    let result = async {
        let mut w = std::io::BufWriter::new(f);
        let sum = c.snapshot_save(&mut w).await?;
        let f = w
            .into_inner()
            .map_err(|e| failed(format!("cannot write '{}': {e}", tmp.display())))?;
        f.sync_all()
            .map_err(|e| failed(format!("cannot write '{}': {e}", tmp.display())))?;
        let info = backup::inspect(&tmp).map_err(|e| {
            failed(format!(
                "the snapshot the node sent does not verify ({e}); nothing was saved"
            ))
        })?;
        if info.sha256 != sum.sha256 || info.size != sum.size {
            return Err(failed(format!(
                "the node sent {} bytes with sha256 '{}', '{}' holds {} bytes with sha256 '{}'; nothing was saved",
                sum.size,
                sum.sha256,
                tmp.display(),
                info.size,
                info.sha256
            )));
        }
        std::fs::rename(&tmp, file).map_err(|e| {
            failed(format!(
                "cannot move the snapshot into place at '{}': {e}",
                file.display()
            ))
        })?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(info)
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `aether kv …`.
async fn run_kv(cli: &Cli, kv: &KvCmd, json: bool) -> Result<(), Failure> {
    let mut c = client(cli).await?;
    match kv {
        KvCmd::Put { key, value } => {
            c.write(Command::Put {
                key: key.clone(),
                value: value.as_bytes().to_vec(),
            })
            .await?;
        }
        KvCmd::Del { key } => {
            if c.kv_delete(key.clone()).await?.is_none() {
                return Err(Failure::new(exit::FAILED, format!("key '{key}' not found")));
            }
        }
        KvCmd::Get { key, local } => {
            let Some(v) = c.kv_get(key.clone(), *local).await? else {
                return Err(Failure::new(exit::FAILED, format!("key '{key}' not found")));
            };
            return output::value(&mut stdout(), key, &v, json).map_err(unwritten);
        }
        KvCmd::List {
            prefix,
            limit,
            local,
        } => {
            let items = c.kv_list(prefix.clone(), *limit, *local).await?;
            return output::list(&mut stdout(), &items, json).map_err(unwritten);
        }
    }
    output::ok(&mut stdout(), json).map_err(unwritten)
}

/// `aether drain` / `undrain`: mark a member so placement stops (or starts again) giving it
/// instances.
async fn set_node_state(
    cli: &Cli,
    node: &str,
    state: NodeState,
    json: bool,
) -> Result<(), Failure> {
    let mut c = client(cli).await?;
    let members = c.nodes().await?;
    let Some(m) = members.iter().find(|m| m.name == node) else {
        let known: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
        return Err(Failure::new(
            exit::FAILED,
            format!("no member named '{node}'; members: {}", known.join(", ")),
        ));
    };
    c.write(Command::SetNodeState { id: m.id, state }).await?;
    output::ok(&mut stdout(), json).map_err(unwritten)
}

/// `aether blueprint …`.
async fn run_blueprint(cli: &Cli, b: &BlueprintCmd, json: bool) -> Result<(), Failure> {
    match b {
        BlueprintCmd::Apply { file, dry_run } => {
            let text = read_input("blueprint file", file)?;
            let name = file.display().to_string();
            // Refuse a bad file here, without a node; the node checks it again.
            crate::deploy::blueprint::parse(&name, &text)
                .map_err(|e| Failure::new(exit::USAGE, e.to_string()))?;
            let p = client(cli)
                .await?
                .blueprint_apply(name, text, *dry_run)
                .await?;
            output::plan(&mut stdout(), &p, json).map_err(unwritten)
        }
        BlueprintCmd::List | BlueprintCmd::Show { .. } => {
            let name = match b {
                BlueprintCmd::Show { name } => Some(name.clone()),
                _ => None,
            };
            let detail = name.is_some();
            let list = client(cli).await?.blueprints(name).await?;
            output::blueprints(&mut stdout(), &list, detail, now_millis(), json).map_err(unwritten)
        }
        BlueprintCmd::Rm { name } => {
            client(cli)
                .await?
                .write(Command::RemoveBlueprint { name: name.clone() })
                .await?;
            output::ok(&mut stdout(), json).map_err(unwritten)
        }
    }
}

/// The text of an input file the operator named (`what`: "blueprint file"). A file that is
/// missing, unreadable to this user, a directory or not UTF-8 is bad input (exit 2), told by the
/// error's kind; any other I/O failure is a failure (exit 1).
pub(super) fn read_input(what: &str, file: &std::path::Path) -> Result<String, Failure> {
    use std::io::ErrorKind as K;
    std::fs::read_to_string(file).map_err(|e| {
        let code = match e.kind() {
            K::NotFound | K::PermissionDenied | K::IsADirectory | K::InvalidData => exit::USAGE,
            _ => exit::FAILED,
        };
        Failure::new(
            code,
            format!(
                "cannot read {what} '{}': {e}: name a readable TOML file",
                file.display()
            ),
        )
    })
}

/// `aether logs`: once, or with `follow` every half second from where the last answer ended.
async fn run_logs(
    cli: &Cli,
    target: &str,
    follow: bool,
    lines: u32,
    json: bool,
) -> Result<(), Failure> {
    let mut c = client(cli).await?;
    let mut cursors: Vec<(String, u64)> = Vec::new();
    loop {
        let chunks = c.logs(target.into(), cursors.clone(), lines).await?;
        output::logs(
            &mut stdout(),
            &chunks,
            target.matches('/').count() < 2,
            json,
            follow,
        )
        .map_err(unwritten)?;
        if !follow {
            return Ok(());
        }
        cursors = chunks
            .iter()
            .map(|ch| (format!("{}@{}", ch.instance, ch.node), ch.next))
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// `BLUEPRINT/SLICE` (`slice_optional`: or `BLUEPRINT`), names checked; anything else is bad
/// input (exit 2).
fn target(s: &str, slice_optional: bool) -> Result<(String, Option<String>), Failure> {
    let bad = |m: String| Failure::new(exit::USAGE, m);
    let (blueprint, slice) = match s.split_once('/') {
        Some((b, sl)) => (b, Some(sl)),
        None if slice_optional => (s, None),
        None => {
            return Err(bad(format!(
                "expected BLUEPRINT/SLICE (e.g. shop/web), found '{s}': name the slice"
            )));
        }
    };
    crate::domain::validate_name("blueprint name", blueprint).map_err(bad)?;
    if let Some(sl) = slice {
        crate::domain::validate_name("slice name", sl).map_err(bad)?;
    }
    Ok((blueprint.to_string(), slice.map(str::to_string)))
}

/// `aether rollout …`.
async fn run_rollout(cli: &Cli, r: &RolloutCmd, json: bool) -> Result<(), Failure> {
    let op = |t: &String, op: RolloutOp| -> Result<(String, String, RolloutOp), Failure> {
        let (b, s) = target(t, false)?;
        Ok((b, s.expect("a slice is required"), op))
    };
    let (blueprint, slice, op) = match r {
        RolloutCmd::List => {
            let l = client(cli).await?.rollouts().await?;
            return output::rollouts(&mut stdout(), &l, now_millis(), json).map_err(unwritten);
        }
        RolloutCmd::History { target: t, limit } => {
            let (b, s) = match t {
                Some(t) => target(t, true)?,
                None => (String::new(), None),
            };
            let b = (!b.is_empty()).then_some(b);
            let l = client(cli).await?.rollout_history(b, s, *limit).await?;
            return output::rollout_history(&mut stdout(), &l, t.as_deref(), now_millis(), json)
                .map_err(unwritten);
        }
        RolloutCmd::Status { target: t, watch } => {
            let (b, s) = target(t, true)?;
            return rollout_status(cli, b, s, *watch, json).await;
        }
        RolloutCmd::Promote { target } => op(target, RolloutOp::Promote)?,
        RolloutCmd::Pause { target } => op(target, RolloutOp::Pause)?,
        RolloutCmd::Resume { target } => op(target, RolloutOp::Resume)?,
        RolloutCmd::Abort { target } => op(target, RolloutOp::Abort)?,
        RolloutCmd::Undo { target, to } => op(target, RolloutOp::Undo { to: *to })?,
    };
    let a = client(cli).await?.rollout_op(blueprint, slice, op).await?;
    output::rollout_acted(&mut stdout(), &a, json).map_err(unwritten)
}

/// `aether rollout status [--watch]`: once, or every second until the rollout ends (exit 0 if
/// it succeeded, 1 otherwise). On a terminal each frame replaces the last; piped, a frame is
/// printed when it changed.
async fn rollout_status(
    cli: &Cli,
    blueprint: String,
    slice: Option<String>,
    watch: bool,
    json: bool,
) -> Result<(), Failure> {
    use std::io::{IsTerminal, Write};
    let mut c = client(cli).await?;
    let first = c.rollout(blueprint.clone(), slice).await?;
    if !watch {
        return output::rollout(&mut stdout(), &first, now_millis(), json, false)
            .map_err(unwritten);
    }
    // Follow the slice it resolved to (a newer apply may replace the rollout with another).
    let slice = Some(first.slice.clone());
    let tty = std::io::stdout().is_terminal() && !json;
    let mut last: Option<crate::admin::protocol::RolloutView> = None;
    let second = std::time::Duration::from_secs(1);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + second, second);
    let mut view = first;
    loop {
        let changed = last.as_ref() != Some(&view);
        if tty || changed {
            let mut out = stdout();
            if tty {
                // Home and clear: the frame replaces the last one.
                write!(out, "[H[2J").map_err(unwritten)?;
            } else if last.is_some() && !json {
                writeln!(out).map_err(unwritten)?;
            }
            output::rollout(&mut out, &view, now_millis(), json, true).map_err(unwritten)?;
            out.flush().map_err(unwritten)?;
        }
        if let Some(code) = output::watch_exit(&view) {
            return match code {
                0 => Ok(()),
                _ => Err(Failure::new(
                    exit::FAILED,
                    format!(
                        "{} {}{}",
                        view.name,
                        view.state,
                        view.reason
                            .as_ref()
                            .map(|r| format!(": {r}"))
                            .unwrap_or_default()
                    ),
                )),
            };
        }
        last = Some(view);
        tick.tick().await;
        view = c.rollout(blueprint.clone(), slice.clone()).await?;
    }
}

/// A decision id (`d-12` or `12`); anything else is bad input (exit 2).
fn decision_id(s: &str) -> Result<u64, Failure> {
    crate::domain::parse_decision_id(s).map_err(|m| Failure::new(exit::USAGE, m))
}

/// `aether operator cert create|list|revoke`.
async fn run_operator_cert(cli: &Cli, cmd: &OperatorCertCmd, json: bool) -> Result<(), Failure> {
    match cmd {
        OperatorCertCmd::Create {
            name,
            role,
            ttl,
            out,
        } => {
            crate::domain::validate_name("operator name", name)
                .map_err(|m| Failure::new(exit::USAGE, m))?;
            let dir = out
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("aether-identity-{name}")));
            // Checked before the node signs anything: a refused create records nothing.
            if dir.join("operator.key").exists() {
                return Err(Failure::new(
                    exit::USAGE,
                    format!(
                        "'{}' already holds an identity: remove it, or pass another -o DIR",
                        dir.display()
                    ),
                ));
            }
            let (key_pem, view) = client(cli)
                .await?
                .operator_cert_create(name.clone(), *role, ttl.as_millis() as u64)
                .await?;
            crate::net::tls::OperatorIdentity::save(&dir, &view.ca_pem, &view.cert_pem, &key_pem)
                .map_err(|e| {
                    Failure::new(
                        exit::FAILED,
                        format!(
                            "operator '{name}' is recorded but its identity could not be written: {e}; revoke it ('aether operator cert revoke {name}') and create it again"
                        ),
                    )
                })?;
            output::operator_created(&mut stdout(), &view.record, &dir, now_millis(), json)
                .map_err(unwritten)?;
        }
        OperatorCertCmd::List => {
            let o = client(cli).await?.operator_certs().await?;
            output::operators(&mut stdout(), &o, now_millis(), json).map_err(unwritten)?;
        }
        OperatorCertCmd::Revoke { name } => {
            let mut c = client(cli).await?;
            let known = c.operator_certs().await?;
            if !known.iter().any(|o| o.name == *name) {
                let names: Vec<&str> = known.iter().map(|o| o.name.as_str()).collect();
                return Err(Failure::new(
                    exit::USAGE,
                    format!(
                        "no operator '{name}'; known: {}",
                        if names.is_empty() {
                            "none".into()
                        } else {
                            names.join(", ")
                        }
                    ),
                ));
            }
            c.write(Command::RevokeOperatorCert { name: name.clone() })
                .await?;
            output::ok(&mut stdout(), json).map_err(unwritten)?;
        }
    }
    Ok(())
}
