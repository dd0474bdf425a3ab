//! `aether diag bundle`: one `.tar.gz` for a bug report, laid out like `nomad operator debug`:
//!
//! ```text
//! manifest.json
//! cluster/{status,members,controller,decisions,events,blueprints,rollouts,rollout-history,tokens}.json
//! nodes/<name>/{status.json,config.toml,aether.log,doctor.json,metrics.json,instances.json}
//! nodes/<name>/logs/<blueprint>/<slice>/<index>.log
//! ```
//!
//! The node this command talks to answers the cluster-wide reads and gathers every member's
//! part (`admin::diag`). What goes in is built here as a list of files ([`Entry`]),
//! described by the [`Manifest`], and written to a temp file renamed into place (mode 0600).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::args::Cli;
use super::{Failure, exit};
use crate::admin::client::{Client, ClientError};
use crate::admin::protocol::NodeDiag;

/// What a bundle never holds, as the manifest and the README say.
pub const NEVER_INCLUDED: &[&str] = &[
    "node private keys (tls/node.key)",
    "the cluster CA key (tls/ca.key)",
    "certificates and the other files of tls/",
    "join token secrets and their hashes",
    "the environment of the node or of this command",
    "secret values of the configuration (see 'redacted')",
];

/// One file of the bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Its path inside the archive.
    pub path: String,
    pub data: Vec<u8>,
}

impl Entry {
    fn new(path: impl Into<String>, data: impl Into<Vec<u8>>) -> Entry {
        Entry {
            path: path.into(),
            data: data.into(),
        }
    }
}

/// A file as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileLine {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// A member whose part is missing, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unreachable {
    pub name: String,
    pub addr: String,
    pub reason: String,
}

/// What the manifest says apart from its file list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Head {
    pub aether_version: String,
    pub commit: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// `user@host` of whoever ran the command.
    pub created_by: String,
    /// The cluster id (`None` when the node asked did not know it).
    pub cluster: Option<String>,
    /// The node this command talked to.
    pub answered_by: String,
    /// How far back the daemon logs go, seconds.
    pub since_secs: u64,
    /// Members whose part is in the bundle.
    pub nodes_included: Vec<String>,
    pub nodes_unreachable: Vec<Unreachable>,
    /// Per member, the configuration keys whose values were redacted.
    pub redacted: BTreeMap<String, Vec<String>>,
    /// Parts that could not be gathered, and why.
    pub problems: Vec<String>,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifest {
    #[serde(flatten)]
    pub head: Head,
    pub never_included: Vec<String>,
    pub files: Vec<FileLine>,
}

/// The manifest of `files`: each one's size and sha256, in order.
pub fn manifest(head: Head, files: &[Entry]) -> Manifest {
    Manifest {
        head,
        never_included: NEVER_INCLUDED.iter().map(|s| s.to_string()).collect(),
        files: files
            .iter()
            .map(|e| FileLine {
                path: e.path.clone(),
                size: e.data.len() as u64,
                sha256: hex::encode(Sha256::digest(&e.data)),
            })
            .collect(),
    }
}

/// An instance key as a path under `logs/`: `blueprint/slice/index` of labels, else its
/// characters outside `[a-z0-9-]` replaced (never a `..` or an absolute path).
fn instance_path(key: &str) -> String {
    key.split('/')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The files of one member's part, under `nodes/<name>/`.
pub fn node_files(name: &str, part: &NodeDiag) -> Vec<Entry> {
    let dir = format!("nodes/{}", instance_path(name).replace('/', "_"));
    let mut files = vec![
        Entry::new(format!("{dir}/status.json"), part.status_json.as_str()),
        Entry::new(format!("{dir}/config.toml"), part.config_toml.as_str()),
        Entry::new(format!("{dir}/aether.log"), part.daemon_log.as_str()),
        Entry::new(format!("{dir}/doctor.json"), part.doctor_json.as_str()),
        Entry::new(format!("{dir}/metrics.json"), part.metrics_json.as_str()),
        Entry::new(
            format!("{dir}/instances.json"),
            part.instances_json.as_str(),
        ),
    ];
    for (key, text) in &part.instance_logs {
        files.push(Entry::new(
            format!("{dir}/logs/{}.log", instance_path(key)),
            text.as_str(),
        ));
    }
    files
}

/// `aether-diag-<cluster>-<UTC time>.tar.gz` (`20261205T022253Z`).
pub fn default_name(cluster: Option<&str>, now: SystemTime) -> String {
    let stamp: String = humantime::format_rfc3339_seconds(now)
        .to_string()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    format!(
        "aether-diag-{}-{stamp}.tar.gz",
        instance_path(cluster.unwrap_or("cluster")).replace('/', "_")
    )
}

/// The archive: `manifest.json` first, then `files`, each mode 0600 with time `mtime`.
pub fn write_archive(
    w: impl Write,
    manifest: &Manifest,
    files: &[Entry],
    mtime: u64,
) -> io::Result<()> {
    let gz = flate2::write::GzEncoder::new(w, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let manifest = serde_json::to_vec_pretty(manifest)?;
    let all = std::iter::once(("manifest.json", manifest.as_slice()))
        .chain(files.iter().map(|e| (e.path.as_str(), e.data.as_slice())));
    for (path, data) in all {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(mtime);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, path, data)?;
    }
    tar.into_inner()?.finish()?.flush()
}

/// `user@host` of whoever runs this.
fn who() -> String {
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        // SAFETY: getuid has no preconditions.
        .unwrap_or_else(|| format!("uid:{}", unsafe { libc::getuid() }));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    if host.is_empty() {
        user
    } else {
        format!("{user}@{host}")
    }
}

/// What was written, for the renderer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Written {
    pub file: String,
    pub size: u64,
    pub nodes_included: Vec<String>,
    pub nodes_unreachable: Vec<Unreachable>,
}

/// Say where the bundle is, its size and who is missing.
pub fn render(w: &mut dyn Write, b: &Written, json: bool) -> io::Result<()> {
    if json {
        serde_json::to_writer_pretty(&mut *w, b)?;
        return writeln!(w);
    }
    writeln!(
        w,
        "wrote {} ({})",
        b.file,
        super::output::bytes(b.size as f64)
    )?;
    writeln!(
        w,
        "nodes included: {}",
        if b.nodes_included.is_empty() {
            "none".to_string()
        } else {
            b.nodes_included.join(", ")
        }
    )?;
    if b.nodes_unreachable.is_empty() {
        writeln!(w, "unreachable: none")?;
    } else {
        writeln!(w, "unreachable:")?;
        for u in &b.nodes_unreachable {
            writeln!(w, "  {} ({}): {}", u.name, u.addr, u.reason)?;
        }
    }
    Ok(())
}

/// JSON of a cluster-wide read, or the problem that kept it out.
fn cluster_file<T: Serialize>(
    files: &mut Vec<Entry>,
    problems: &mut Vec<String>,
    name: &str,
    r: Result<T, ClientError>,
) {
    match r.map_err(|e| e.to_string()).and_then(|v| {
        serde_json::to_vec_pretty(&v).map_err(|e| format!("cannot serialise it: {e}"))
    }) {
        Ok(data) => files.push(Entry::new(format!("cluster/{name}.json"), data)),
        Err(e) => problems.push(format!("cluster/{name}.json: {e}")),
    }
}

/// Members asked at once.
const PARALLEL_NODES: usize = 8;

/// Most records of each cluster-wide list (decisions, events, rollouts).
const CLUSTER_LIMIT: u32 = 10_000;

/// `aether diag bundle [-o FILE] [--since DUR]`.
pub async fn bundle(
    cli: &Cli,
    file: Option<&Path>,
    since: Duration,
    json: bool,
) -> Result<(), Failure> {
    let bad = |m: String| Failure::new(exit::USAGE, m);
    if let Some(f) = file {
        let dir = match f.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if f.file_name().is_none() {
            return Err(bad(format!("'{}' is not a file name", f.display())));
        }
        if !dir.is_dir() {
            return Err(bad(format!(
                "cannot write to '{}': its directory '{}' does not exist",
                f.display(),
                dir.display()
            )));
        }
    }
    let mut c = Client::connect(&cli.socket()).await?;
    let status = c.status().await?;
    let now = SystemTime::now();
    let mut files = Vec::new();
    let mut problems = Vec::new();

    // Cluster-wide, once.
    cluster_file(&mut files, &mut problems, "status", Ok(&status));
    cluster_file(&mut files, &mut problems, "members", c.nodes().await);
    cluster_file(
        &mut files,
        &mut problems,
        "controller",
        Ok(&status.controller),
    );
    cluster_file(
        &mut files,
        &mut problems,
        "decisions",
        c.decisions(true, CLUSTER_LIMIT).await,
    );
    cluster_file(
        &mut files,
        &mut problems,
        "events",
        c.audit(CLUSTER_LIMIT).await,
    );
    cluster_file(
        &mut files,
        &mut problems,
        "blueprints",
        c.blueprints(None).await,
    );
    cluster_file(&mut files, &mut problems, "rollouts", c.rollouts().await);
    cluster_file(
        &mut files,
        &mut problems,
        "rollout-history",
        c.rollout_history(None, None, CLUSTER_LIMIT).await,
    );
    // Ids, expiry and uses only: the replicated store keeps no secret, and its hashes are not
    // read.
    cluster_file(&mut files, &mut problems, "tokens", c.tokens().await);

    // Every member's part.
    let mut included = Vec::new();
    let mut unreachable = Vec::new();
    let mut redacted = BTreeMap::new();
    // Several members at once, each on its own connection: a few unreachable ones cost one
    // timeout together, not one each.
    let socket = cli.socket();
    let parts: Vec<Result<NodeDiag, ClientError>> =
        futures::stream::iter(status.members.iter().map(|m| {
            let socket = socket.clone();
            async move {
                Client::connect(&socket)
                    .await?
                    .diag_node(m.name.clone(), since.as_secs())
                    .await
            }
        }))
        .buffered(PARALLEL_NODES)
        .collect()
        .await;
    for (m, part) in status.members.iter().zip(parts) {
        match part {
            Ok(part) => {
                files.extend(node_files(&m.name, &part));
                problems.extend(
                    part.problems
                        .iter()
                        .map(|p| format!("node '{}': {p}", m.name)),
                );
                if !part.redacted.is_empty() {
                    redacted.insert(m.name.clone(), part.redacted.clone());
                }
                included.push(m.name.clone());
            }
            Err(e) => unreachable.push(Unreachable {
                name: m.name.clone(),
                addr: m.addr.clone(),
                reason: e.to_string(),
            }),
        }
    }
    let head = Head {
        aether_version: crate::platform::VERSION.into(),
        commit: crate::platform::COMMIT.into(),
        created_at: humantime::format_rfc3339_seconds(now).to_string(),
        created_by: who(),
        cluster: status.cluster_id.clone(),
        answered_by: status.node.name.clone(),
        since_secs: since.as_secs(),
        nodes_included: included.clone(),
        nodes_unreachable: unreachable.clone(),
        redacted,
        problems,
    };
    let manifest = manifest(head, &files);
    let path = match file {
        Some(f) => f.to_path_buf(),
        None => PathBuf::from(default_name(status.cluster_id.as_deref(), now)),
    };
    let mtime = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let size = write_atomically(&path, |w| write_archive(w, &manifest, &files, mtime))?;
    for u in &unreachable {
        eprintln!(
            "warning: node '{}' ({}) could not be reached, its part is missing from the bundle: {}",
            u.name, u.addr, u.reason
        );
    }
    let written = Written {
        file: path.display().to_string(),
        size,
        nodes_included: included,
        nodes_unreachable: unreachable,
    };
    render(&mut std::io::stdout().lock(), &written, json)
        .map_err(|e| Failure::new(exit::FAILED, format!("cannot write the output: {e}")))
}

/// A new temp file beside `path` (`.NAME.PID.partial`, mode 0600) to be renamed onto it once
/// whole: its path and the open file.
pub(super) fn create_partial(path: &Path) -> Result<(PathBuf, std::fs::File), Failure> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.partial", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| {
            Failure::new(
                exit::FAILED,
                format!("cannot create '{}': {e}", tmp.display()),
            )
        })?;
    Ok((tmp, f))
}

/// Write `path` through a temp file beside it (mode 0600), synced and renamed into place: the
/// whole file or none. Its size.
fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut io::BufWriter<std::fs::File>) -> io::Result<()>,
) -> Result<u64, Failure> {
    let failed = |m: String| Failure::new(exit::FAILED, m);
    let (tmp, f) = create_partial(path)?;
    let result = (|| {
        let mut w = io::BufWriter::new(f);
        write(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        let size = f.metadata()?.len();
        std::fs::rename(&tmp, path)?;
        Ok::<_, io::Error>(size)
    })();
    match result {
        Ok(size) => {
            if let Some(d) = tmp.parent().and_then(|d| std::fs::File::open(d).ok()) {
                let _ = d.sync_all();
            }
            Ok(size)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(failed(format!("cannot write '{}': {e}", path.display())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part() -> NodeDiag {
        NodeDiag {
            node: "n1".into(),
            status_json: "{}".into(),
            config_toml: "name = \"n1\"\n".into(),
            redacted: vec![],
            daemon_log: "2026-12-05T02:00:00Z  INFO up\n".into(),
            doctor_json: "{}".into(),
            metrics_json: "{}".into(),
            instances_json: "[]".into(),
            instance_logs: vec![
                ("shop/web/0".into(), "hello\n".into()),
                ("../../etc/x".into(), "no\n".into()),
            ],
            problems: vec![],
        }
    }

    fn head() -> Head {
        Head {
            aether_version: "0.1.0".into(),
            commit: "abc".into(),
            created_at: "2026-12-05T02:22:53Z".into(),
            created_by: "ops@box".into(),
            cluster: Some("c-1234".into()),
            answered_by: "n1".into(),
            since_secs: 1800,
            nodes_included: vec!["n1".into()],
            nodes_unreachable: vec![Unreachable {
                name: "n2".into(),
                addr: "127.0.0.1:7420".into(),
                reason: "timed out".into(),
            }],
            redacted: BTreeMap::new(),
            problems: vec![],
        }
    }

    #[test]
    fn a_node_part_is_laid_out_under_its_name_and_never_outside() {
        let files = node_files("n1", &part());
        let paths: Vec<&str> = files.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "nodes/n1/status.json",
                "nodes/n1/config.toml",
                "nodes/n1/aether.log",
                "nodes/n1/doctor.json",
                "nodes/n1/metrics.json",
                "nodes/n1/instances.json",
                "nodes/n1/logs/shop/web/0.log",
                "nodes/n1/logs/__/__/etc/x.log",
            ]
        );
    }

    #[test]
    fn the_manifest_lists_every_file_with_its_size_and_sha256() {
        let files = vec![Entry::new("a.txt", "abc"), Entry::new("b/c.json", "")];
        let m = manifest(head(), &files);
        assert_eq!(
            m.files,
            vec![
                FileLine {
                    path: "a.txt".into(),
                    size: 3,
                    sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
                        .into(),
                },
                FileLine {
                    path: "b/c.json".into(),
                    size: 0,
                    sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                        .into(),
                },
            ]
        );
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["answered_by"], "n1");
        assert_eq!(v["nodes_unreachable"][0]["name"], "n2");
        assert_eq!(v["nodes_unreachable"][0]["reason"], "timed out");
        assert!(
            v["never_included"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s.as_str().unwrap().contains("CA key"))
        );
    }

    #[test]
    fn the_archive_holds_the_manifest_then_the_files() {
        use std::io::Read;
        let files = node_files("n1", &part());
        let m = manifest(head(), &files);
        let mut buf = Vec::new();
        write_archive(&mut buf, &m, &files, 1_700_000_000).unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(buf.as_slice()));
        let mut seen = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            assert_eq!(e.header().mode().unwrap(), 0o600);
            let path = e.path().unwrap().display().to_string();
            let mut text = String::new();
            e.read_to_string(&mut text).unwrap();
            if path == "nodes/n1/logs/shop/web/0.log" {
                assert_eq!(text, "hello\n");
            }
            seen.push(path);
        }
        assert_eq!(seen[0], "manifest.json");
        assert_eq!(seen.len(), files.len() + 1);
    }

    #[test]
    fn the_default_name_has_the_cluster_and_the_utc_time() {
        let t = humantime::parse_rfc3339("2026-12-05T02:22:53Z").unwrap();
        assert_eq!(
            default_name(Some("c-1a2b"), t),
            "aether-diag-c-1a2b-20261205T022253Z.tar.gz"
        );
    }

    #[test]
    fn the_summary_names_the_file_its_size_and_who_is_missing() {
        let w = Written {
            file: "aether-diag-c-1a2b-20261205T022253Z.tar.gz".into(),
            size: 123_456,
            nodes_included: vec!["n1".into(), "n3".into()],
            nodes_unreachable: head().nodes_unreachable,
        };
        let mut text = Vec::new();
        render(&mut text, &w, false).unwrap();
        insta::assert_snapshot!("diag_bundle", String::from_utf8(text).unwrap());
        let mut json = Vec::new();
        render(&mut json, &w, true).unwrap();
        insta::assert_snapshot!("diag_bundle_json", String::from_utf8(json).unwrap());
    }
}
