//! `aether doctor`: checks of this machine (CPU, kernel and cgroups, open-file limit, clock,
//! disk, ports, data dir, certificates, GPU, model) and, where a node runs, of its cluster (Raft,
//! peers, clock skew). Each check is a pure verdict over facts gathered by `gather` (the OS
//! probes in `platform::probe`, the node through `admin::Client`), rendered one line per check
//! with the fix for each problem under it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use crate::admin::protocol::{DoctorView, PeerPing};
use crate::platform::probe::{CgroupFacts, ClockFacts, FileFacts, Space};

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Skip,
    Warn,
    Fail,
}

impl Status {
    /// The mark the text output shows.
    fn mark(self) -> &'static str {
        match self {
            Status::Ok => "✓",
            Status::Warn => "!",
            Status::Fail => "✗",
            Status::Skip => "-",
        }
    }
}

/// One check's result (`--output json` prints a list of these).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub name: String,
    pub status: Status,
    /// One line: what was found.
    pub summary: String,
    /// What to do about a warning or failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// The numbers behind the verdict.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub figures: BTreeMap<String, Value>,
}

impl Outcome {
    fn new(name: &str, status: Status, summary: impl Into<String>) -> Outcome {
        Outcome {
            name: name.into(),
            status,
            summary: summary.into(),
            fix: None,
            figures: BTreeMap::new(),
        }
    }

    fn fix(mut self, fix: impl Into<String>) -> Outcome {
        self.fix = Some(fix.into());
        self
    }

    fn figure(mut self, key: &str, v: impl Into<Value>) -> Outcome {
        self.figures.insert(key.into(), v.into());
        self
    }
}

/// Every check, in the order they run, with what it looks at.
pub const CHECKS: &[(&str, &str)] = &[
    (
        "cpu",
        "the CPU baseline this binary was built for, and whether this CPU has it",
    ),
    (
        "kernel",
        "kernel version; cgroup v2 with the cpu and memory controllers the instance limits use",
    ),
    (
        "fd-limit",
        "the open-file limit (RLIMIT_NOFILE), soft and hard",
    ),
    ("clock", "the system clock is kept synchronised (adjtimex)"),
    (
        "disk",
        "free space of the data dir's filesystem, and its fdatasync latency (a 1 s probe)",
    ),
    (
        "ports",
        "the node's QUIC (UDP) and HTTP (TCP) ports are free, or held by this node",
    ),
    (
        "data-dir",
        "the data dir's owner and mode, and the modes of the TLS keys and the admin socket",
    ),
    (
        "certs",
        "expiry of the node and CA certificates in the data dir's tls/",
    ),
    (
        "gpu",
        "whether NVIDIA GPUs can be read (NVML or nvidia-smi)",
    ),
    (
        "model",
        "the controller's language model file is present and readable",
    ),
    (
        "raft",
        "with a running node: a leader is known, this node's lag in entries, the voters",
    ),
    (
        "peers",
        "with a running node: every other member answers its ping, and the round trip",
    ),
    (
        "skew",
        "with a running node: every other member's clock against this node's",
    ),
];

/// The checks that need a running node.
pub const CLUSTER_CHECKS: &[&str] = &["raft", "peers", "skew"];

/// The checks `names` asks for, in [`CHECKS`]' order (all of them when `names` is empty), or
/// the error for a name that is not a check.
pub fn select(names: &[String]) -> Result<Vec<&'static str>, String> {
    if let Some(bad) = names.iter().find(|n| !CHECKS.iter().any(|(c, _)| c == n)) {
        let all: Vec<&str> = CHECKS.iter().map(|(c, _)| *c).collect();
        return Err(format!(
            "unknown check '{bad}': the checks are {} ('aether doctor --list' says what each looks at)",
            all.join(", ")
        ));
    }
    Ok(CHECKS
        .iter()
        .map(|(c, _)| *c)
        .filter(|c| names.is_empty() || names.iter().any(|n| n == c))
        .collect())
}

/// The exit code: 1 when a check failed, else 0 (warnings allowed).
pub fn exit_code(outcomes: &[Outcome]) -> i32 {
    if outcomes.iter().any(|o| o.status == Status::Fail) {
        super::exit::FAILED
    } else {
        super::exit::OK
    }
}

// ---- thresholds ----

/// Below this soft open-file limit a node with many peers, slices and connections runs out.
pub const NOFILE_WANT: u64 = 65_536;
/// Free space below this share of the filesystem is a warning …
pub const DISK_WARN_PCT: f64 = 10.0;
/// … as is less than this many bytes.
pub const DISK_WARN_BYTES: u64 = 1 << 30;
/// Free space below this share fails: Raft's log and snapshots need room to be written.
pub const DISK_FAIL_PCT: f64 = 1.0;
/// An fdatasync p99 above this fails (etcd's guidance for a consensus log's disk).
pub const FSYNC_P99_MAX: Duration = Duration::from_millis(10);
/// Certificates that expire within this many days are a warning.
pub const CERT_WARN_DAYS: i64 = 30;
/// A follower further behind the leader's commit than this many entries is a warning.
pub const LAG_WARN_ENTRIES: u64 = 1_000;
/// Clock skew between members above this is a warning …
pub const SKEW_WARN: Duration = Duration::from_millis(500);
/// … and above this a failure.
pub const SKEW_FAIL: Duration = Duration::from_secs(5);

/// The `p`-quantile (0.0–1.0) of `sorted` by nearest rank; zero when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The UTC date of `secs` since the Unix epoch, `YYYY-MM-DD` (the civil-from-days algorithm).
pub fn date(secs: i64) -> String {
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn gib(b: u64) -> String {
    format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
}

// ---- verdicts ----

/// `cpu`: the baseline the binary was built for against the features this CPU lacks.
pub fn cpu(baseline: &str, needs: &[String], missing: &[String]) -> Outcome {
    let o = Outcome::new("cpu", Status::Ok, "")
        .figure("baseline", baseline)
        .figure("missing", missing.to_vec());
    if !missing.is_empty() {
        return Outcome {
            summary: format!(
                "built for {baseline}; this cpu lacks {}",
                missing.join(", ")
            ),
            status: Status::Fail,
            ..o
        }
        .fix("install the baseline build: AETHER_ARTIFACT=aether-x86_64-baseline sh install.sh (in a VM, passing the host CPU through may be enough)");
    }
    let summary = if needs.is_empty() {
        format!("built for {baseline}; any cpu of this architecture runs it")
    } else {
        format!("built for {baseline}; this cpu has {}", needs.join(", "))
    };
    Outcome { summary, ..o }
}

/// The cgroup v2 controllers the supervisor's instance limits use (`deploy::supervisor`'s
/// cgroup: `cpu.max`, `memory.max`).
pub const CGROUP_CONTROLLERS: &[&str] = &["cpu", "memory"];

/// `kernel`: the release, and whether instance limits can be enforced with cgroup v2.
pub fn kernel(release: Result<&str, String>, cg: &CgroupFacts) -> Outcome {
    let release = match release {
        Ok(r) => r.to_string(),
        Err(e) => format!("unknown ({e})"),
    };
    let o = Outcome::new("kernel", Status::Ok, "")
        .figure("release", release.as_str())
        .figure("cgroup_v2", cg.v2)
        .figure("controllers", cg.controllers.clone())
        .figure("cgroup_writable", cg.writable);
    if !cg.v2 {
        let o = o.figure("cgroup_v1", cg.v1.clone());
        let v1_complete = CGROUP_CONTROLLERS
            .iter()
            .all(|c| cg.v1.iter().any(|have| have == c));
        if v1_complete && cg.writable {
            return Outcome {
                summary: format!(
                    "kernel {release}; cgroup v1 with {} hierarchies, writable: instance limits use v1 (cgroup v2 is not mounted at /sys/fs/cgroup)",
                    CGROUP_CONTROLLERS.join(", ")
                ),
                ..o
            };
        }
        return Outcome {
            status: Status::Warn,
            summary: format!(
                "kernel {release}; no cgroup v2 at /sys/fs/cgroup and no writable v1 cpu and memory hierarchies: instances run without cpu and memory limits"
            ),
            ..o
        }
        .fix("boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1 on the kernel command line), and run the node as root or in a systemd unit with Delegate=yes");
    }
    let lacking: Vec<&str> = CGROUP_CONTROLLERS
        .iter()
        .copied()
        .filter(|c| !cg.controllers.iter().any(|have| have == c))
        .collect();
    if !lacking.is_empty() {
        return Outcome {
            status: Status::Warn,
            summary: format!(
                "kernel {release}; cgroup v2 lacks the {} controller(s): instances run without those limits",
                lacking.join(", ")
            ),
            ..o
        }
        .fix("enable them in the parent cgroup (echo '+cpu +memory' > cgroup.subtree_control), or run the node in a systemd unit with Delegate=yes");
    }
    if !cg.writable {
        let at = cg
            .own
            .as_deref()
            .unwrap_or(Path::new("/sys/fs/cgroup"))
            .display()
            .to_string();
        return Outcome {
            status: Status::Warn,
            summary: format!(
                "kernel {release}; cgroup v2 with {}, but '{at}' is not writable by this user: instances run without cpu and memory limits",
                CGROUP_CONTROLLERS.join(", ")
            ),
            ..o
        }
        .fix("run the node as root, or in a systemd unit with Delegate=yes (install.sh's unit has it)");
    }
    Outcome {
        summary: format!(
            "kernel {release}; cgroup v2 with {} delegated and writable",
            CGROUP_CONTROLLERS.join(", ")
        ),
        ..o
    }
}

fn limit(n: u64) -> Value {
    if n == u64::MAX {
        json!("unlimited")
    } else {
        json!(n)
    }
}

fn limit_text(n: u64) -> String {
    if n == u64::MAX {
        "unlimited".into()
    } else {
        n.to_string()
    }
}

/// `fd-limit`: the soft limit against [`NOFILE_WANT`].
pub fn fd_limit(soft: u64, hard: u64) -> Outcome {
    let summary = format!(
        "open files: soft {}, hard {}",
        limit_text(soft),
        limit_text(hard)
    );
    let o = Outcome::new("fd-limit", Status::Ok, summary)
        .figure("soft", limit(soft))
        .figure("hard", limit(hard))
        .figure("want", NOFILE_WANT);
    if soft >= NOFILE_WANT {
        return o;
    }
    let summary = format!("{} (want at least {NOFILE_WANT})", o.summary);
    Outcome {
        status: Status::Warn,
        summary,
        ..o
    }
    .fix(format!(
        "raise it: LimitNOFILE={NOFILE_WANT} in the node's systemd unit, or 'ulimit -n {NOFILE_WANT}' before 'aether node'{}",
        if hard < NOFILE_WANT {
            " (the hard limit too: /etc/security/limits.conf)"
        } else {
            ""
        }
    ))
}

/// `clock`: whether the kernel says something disciplines the clock.
pub fn clock(facts: Result<ClockFacts, String>) -> Outcome {
    let fix = "run a time service: chrony (chronyc tracking) or systemd-timesyncd (timedatectl set-ntp true)";
    match facts {
        Err(e) => Outcome::new(
            "clock",
            Status::Warn,
            format!("cannot read the clock's state: {e}"),
        )
        .fix(fix),
        Ok(c) => {
            let o = Outcome::new("clock", Status::Ok, "")
                .figure("synchronised", !c.unsynced)
                .figure("max_error_ms", c.max_error_us as f64 / 1e3)
                .figure("est_error_ms", c.est_error_us as f64 / 1e3);
            if c.unsynced {
                Outcome {
                    status: Status::Warn,
                    summary: "the system clock is not synchronised to a time source (STA_UNSYNC)"
                        .into(),
                    ..o
                }
                .fix(fix)
            } else {
                Outcome {
                    summary: format!(
                        "synchronised (estimated error {:.3} ms)",
                        c.est_error_us as f64 / 1e3
                    ),
                    ..o
                }
            }
        }
    }
}

/// What the fsync probe measured: every fdatasync's latency and how long it all took.
#[derive(Debug, Clone, PartialEq)]
pub struct Fsync {
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
}

/// `disk`: free space of the data dir's filesystem (warn below [`DISK_WARN_PCT`] or
/// [`DISK_WARN_BYTES`], fail below [`DISK_FAIL_PCT`]) and the fsync probe (fail when its p99 is
/// above [`FSYNC_P99_MAX`]).
pub fn disk(dir: &Path, space: Result<Space, String>, fsync: Result<Fsync, String>) -> Outcome {
    let mut o = Outcome::new("disk", Status::Ok, "");
    let mut parts = Vec::new();
    let mut fixes = Vec::new();
    match space {
        Ok(s) => {
            let pct = if s.total == 0 {
                100.0
            } else {
                s.available as f64 * 100.0 / s.total as f64
            };
            o = o
                .figure("free_bytes", s.available)
                .figure("total_bytes", s.total)
                .figure("free_pct", (pct * 10.0).round() / 10.0);
            parts.push(format!(
                "{} free of {} ({pct:.1} %)",
                gib(s.available),
                gib(s.total)
            ));
            let st = if pct < DISK_FAIL_PCT {
                Status::Fail
            } else if pct < DISK_WARN_PCT || s.available < DISK_WARN_BYTES {
                Status::Warn
            } else {
                Status::Ok
            };
            if st != Status::Ok {
                fixes.push(format!(
                    "free space on the filesystem of '{}' (warning below {DISK_WARN_PCT} % or {}, failure below {DISK_FAIL_PCT} %)",
                    dir.display(),
                    gib(DISK_WARN_BYTES)
                ));
            }
            o.status = o.status.max(st);
        }
        Err(e) => {
            parts.push(format!("free space unknown ({e})"));
            o.status = o.status.max(Status::Warn);
        }
    }
    match fsync {
        Ok(f) if !f.latencies.is_empty() => {
            let mut sorted = f.latencies.clone();
            sorted.sort();
            let (p50, p99) = (percentile(&sorted, 0.50), percentile(&sorted, 0.99));
            let rate = sorted.len() as f64 / f.elapsed.as_secs_f64().max(1e-9);
            let pass = p99 <= FSYNC_P99_MAX;
            o = o
                .figure("fsync_writes", sorted.len())
                .figure("fsync_p50_ms", ms(p50))
                .figure("fsync_p99_ms", ms(p99))
                .figure("fsync_threshold_ms", ms(FSYNC_P99_MAX))
                .figure("writes_per_s", rate.round())
                .figure("fsync", if pass { "pass" } else { "fail" });
            parts.push(format!(
                "fdatasync p50 {:.2} ms, p99 {:.2} ms, {:.0} writes/s: {} (p99 must be at most {} ms)",
                ms(p50),
                ms(p99),
                rate,
                if pass { "PASS" } else { "FAIL" },
                ms(FSYNC_P99_MAX)
            ));
            if !pass {
                o.status = Status::Fail;
                fixes.push(
                    "put the data dir on a faster disk (local SSD/NVMe, not network storage), or one other programs do not keep busy"
                        .into(),
                );
            }
        }
        Ok(_) => parts.push("fdatasync not measured".into()),
        Err(e) => {
            parts.push(format!("fdatasync not measured ({e})"));
            o.status = o.status.max(Status::Warn);
        }
    }
    o.summary = parts.join("; ");
    if !fixes.is_empty() {
        o.fix = Some(fixes.join("; "));
    }
    o
}

/// How binding one of the node's ports went.
#[derive(Debug, Clone, PartialEq)]
pub struct Port {
    /// `udp` or `tcp`.
    pub proto: &'static str,
    /// What it is for (`quic`, `http`).
    pub role: &'static str,
    pub addr: std::net::SocketAddr,
    /// `None`: it could be bound (free); else why not.
    pub error: Option<std::io::ErrorKind>,
}

/// `ports`: each port free, or in use while this node runs and holds it (its QUIC port is
/// checked against `node_listen`, the address the running node reports; its HTTP port is
/// taken to be the node's); anything else names the port and how to find its holder.
pub fn ports(
    ports: &[Port],
    node_running: bool,
    node_listen: Option<std::net::SocketAddr>,
) -> Outcome {
    let mut o = Outcome::new("ports", Status::Ok, "");
    let mut parts = Vec::new();
    let mut fixes = Vec::new();
    for p in ports {
        let port = p.addr.port();
        let other_listen = node_listen.filter(|l| p.proto == "udp" && l.port() != port);
        let (state, st) = match p.error {
            None => ("free".to_string(), Status::Ok),
            Some(std::io::ErrorKind::AddrInUse) if node_running => match other_listen {
                None => ("held by this node".to_string(), Status::Ok),
                Some(l) => (
                    format!("in use by another program (this node listens on {l})"),
                    Status::Fail,
                ),
            },
            Some(std::io::ErrorKind::AddrInUse) => {
                ("in use by another program".to_string(), Status::Fail)
            }
            Some(std::io::ErrorKind::PermissionDenied) => {
                ("not permitted".to_string(), Status::Fail)
            }
            Some(std::io::ErrorKind::AddrNotAvailable) => {
                ("address not on this host".to_string(), Status::Fail)
            }
            Some(_) => ("cannot be bound".to_string(), Status::Fail),
        };
        o.figures.insert(
            format!("{}_{}", p.role, p.proto),
            json!({ "addr": p.addr.to_string(), "state": state }),
        );
        parts.push(format!("{} {} {}: {state}", p.role, p.proto, p.addr));
        if st == Status::Fail {
            let ss = if p.proto == "udp" {
                "ss -lunp"
            } else {
                "ss -ltnp"
            };
            let flag = if p.role == "http" {
                "--http"
            } else {
                "--listen"
            };
            fixes.push(format!(
                "{} port {port}: find its holder with '{ss} sport = :{port}' and stop it, or give the node another {flag}",
                p.proto
            ));
        }
        o.status = o.status.max(st);
    }
    o.summary = parts.join("; ");
    if !fixes.is_empty() {
        o.fix = Some(fixes.join("; "));
    }
    o
}

/// What `data-dir` looks at.
#[derive(Debug, Clone, PartialEq)]
pub struct DirFacts {
    pub dir: PathBuf,
    /// `None`: it does not exist.
    pub facts: Option<FileFacts>,
    /// This process's user id and name.
    pub euid: u32,
    pub user: String,
    /// The private keys under `tls/` (`*.key`).
    pub keys: Vec<(PathBuf, FileFacts)>,
    /// The admin socket, where it exists.
    pub socket: Option<(PathBuf, FileFacts)>,
}

/// `data-dir`: the dir exists, belongs to this user and is not group/world writable; keys
/// and the admin socket are the owner's alone (0600).
pub fn data_dir(d: &DirFacts) -> Outcome {
    let dir = d.dir.display().to_string();
    let o = Outcome::new("data-dir", Status::Ok, "").figure("path", dir.as_str());
    let Some(f) = d.facts else {
        return Outcome {
            status: Status::Warn,
            summary: format!("'{dir}' does not exist yet"),
            ..o
        }
        .fix("'aether node' creates it on its first start (or: mkdir -m 0700 -p the dir)");
    };
    let o = o.figure("mode", format!("{:04o}", f.mode));
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    if !f.is_dir {
        problems.push(format!("'{dir}' is not a directory"));
        fixes.push("point --data-dir at a directory".to_string());
    }
    if f.uid != d.euid {
        problems.push(format!(
            "'{dir}' belongs to uid {}, not to '{}' (uid {})",
            f.uid, d.user, d.euid
        ));
        fixes.push(format!("chown -R {} '{dir}'", d.user));
    }
    if f.mode & 0o022 != 0 {
        problems.push(format!(
            "'{dir}' is writable by others (mode {:04o})",
            f.mode
        ));
        fixes.push(format!("chmod 0700 '{dir}'"));
    }
    for (path, k) in &d.keys {
        if k.mode & 0o077 != 0 {
            problems.push(format!(
                "key '{}' is readable by others (mode {:04o})",
                path.display(),
                k.mode
            ));
            fixes.push(format!("chmod 0600 '{}'", path.display()));
        }
    }
    if let Some((path, s)) = &d.socket
        && s.mode & 0o077 != 0
    {
        problems.push(format!(
            "admin socket '{}' is open to others (mode {:04o})",
            path.display(),
            s.mode
        ));
        fixes.push(format!("chmod 0600 '{}'", path.display()));
    }
    if problems.is_empty() {
        return Outcome {
            summary: format!(
                "'{dir}' owned by '{}', mode {:04o}; {}{}",
                d.user,
                f.mode,
                if d.keys.is_empty() {
                    "no keys yet".to_string()
                } else {
                    format!("{} key(s) 0600", d.keys.len())
                },
                if d.socket.is_some() {
                    ", admin socket 0600"
                } else {
                    ""
                }
            ),
            ..o
        };
    }
    Outcome {
        status: Status::Fail,
        summary: problems.join("; "),
        ..o
    }
    .fix(fixes.join("; "))
}

/// One certificate file and when it expires (seconds since the Unix epoch), or why that is
/// not known.
#[derive(Debug, Clone, PartialEq)]
pub struct Cert {
    /// `node` or `ca`.
    pub which: &'static str,
    pub path: PathBuf,
    pub not_after: Result<i64, String>,
}

/// `certs`: each certificate's days left (warn within [`CERT_WARN_DAYS`], fail once expired);
/// skipped before the node has made any.
pub fn certs(tls_dir: &Path, certs: &[Cert], now_s: i64) -> Outcome {
    let o = Outcome::new("certs", Status::Ok, "");
    if certs.is_empty() {
        return Outcome {
            status: Status::Skip,
            summary: format!(
                "no certificates in '{}' yet: the node makes them on its first start",
                tls_dir.display()
            ),
            ..o
        };
    }
    let mut o = o;
    let mut parts = Vec::new();
    let mut fixes = Vec::new();
    for c in certs {
        match &c.not_after {
            Err(e) => {
                parts.push(format!("{}: {e}", c.which));
                fixes.push(format!(
                    "restore '{}' from a backup, or rejoin this node from an empty data dir",
                    c.path.display()
                ));
                o.status = Status::Fail;
            }
            Ok(t) => {
                let days = (t - now_s).div_euclid(86_400);
                o.figures
                    .insert(format!("{}_days_left", c.which), json!(days));
                let day = date(*t);
                let (st, text) = if *t <= now_s {
                    (Status::Fail, format!("{} expired {}", c.which, day))
                } else if days < CERT_WARN_DAYS {
                    (
                        Status::Warn,
                        format!("{} expires in {days} day(s) ({day})", c.which),
                    )
                } else {
                    (
                        Status::Ok,
                        format!("{} valid until {day} ({days} days)", c.which),
                    )
                };
                if st != Status::Ok {
                    fixes.push(if c.which == "ca" {
                        "the cluster CA must be replaced: start a new cluster and move the workloads over".to_string()
                    } else {
                        "a running node renews its own certificate from its replica at two thirds of tls.node_cert_ttl: start the node (it renews at start when expired), and if the warning stays, read its log".to_string()
                    });
                }
                parts.push(text);
                o.status = o.status.max(st);
            }
        }
    }
    o.summary = parts.join("; ");
    if !fixes.is_empty() {
        fixes.dedup();
        o.fix = Some(fixes.join("; "));
    }
    o
}

/// `gpu`: the GPUs found, or why none can be read (skipped: a machine without GPUs is fine).
pub fn gpu(found: Result<Vec<String>, String>) -> Outcome {
    match found {
        Ok(g) if g.is_empty() => Outcome::new(
            "gpu",
            Status::Skip,
            "the GPU driver answers but lists no GPU; GPU-health rules stay quiet here",
        ),
        Ok(g) => Outcome::new(
            "gpu",
            Status::Ok,
            format!("{} GPU(s): {}", g.len(), g.join(", ")),
        )
        .figure("count", g.len()),
        Err(why) => Outcome::new(
            "gpu",
            Status::Skip,
            format!("no GPU metrics on this machine: {why}; GPU-health rules stay quiet here"),
        ),
    }
}

/// `model`: the model file's size, or why it cannot be read.
pub fn model(path: &Path, size: Result<u64, String>) -> Outcome {
    let o = Outcome::new("model", Status::Ok, "").figure("path", path.display().to_string());
    match size {
        Ok(b) => Outcome {
            summary: format!("'{}' ({:.0} MiB)", path.display(), b as f64 / 1048576.0),
            ..o
        }
        .figure("bytes", b),
        Err(e) => Outcome {
            status: Status::Warn,
            summary: format!(
                "no readable model at '{}' ({e}): the controller decides without its review",
                path.display()
            ),
            ..o
        }
        .fix("'aether model pull' fetches it (or set controller.model.path)"),
    }
}

/// A cluster check where no node answers on the admin socket.
pub fn no_node(name: &str, socket: &Path) -> Outcome {
    Outcome::new(
        name,
        Status::Skip,
        format!("no node running at '{}'", socket.display()),
    )
}

/// `raft`: a leader is known; this node's lag behind the commit; voters against those wanted.
pub fn raft(v: &DoctorView) -> Outcome {
    let s = &v.status;
    let voters = s.members.iter().filter(|m| m.role == "voter").count();
    let lag = s
        .commit_index
        .unwrap_or(0)
        .saturating_sub(s.node.applied_index);
    let o = Outcome::new("raft", Status::Ok, "")
        .figure("term", s.term)
        .figure("lag_entries", lag)
        .figure("voters", voters)
        .figure("voters_wanted", s.voters_wanted)
        .figure("members", s.members.len());
    let Some(leader) = &s.leader else {
        return Outcome {
            status: Status::Fail,
            summary: format!(
                "no leader known (term {}, {voters} voter(s)): the cluster cannot write",
                s.term
            ),
            ..o
        }
        .fix("a majority of the voters must be up and reach each other: 'aether nodes' shows which are not");
    };
    let o = o.figure("leader", leader.name.as_str());
    let summary = format!(
        "leader '{}' (term {}); this node '{}' {lag} entries behind; {voters} voter(s) of {} wanted",
        leader.name, s.term, s.node.name, s.voters_wanted
    );
    if s.leader_unreachable() {
        return Outcome {
            status: Status::Fail,
            summary: format!("{summary}; the leader does not answer this node"),
            ..o
        }
        .fix(
            "check the network between this node and the leader ('aether nodes' on another member)",
        );
    }
    if lag > LAG_WARN_ENTRIES {
        return Outcome {
            status: Status::Warn,
            summary,
            ..o
        }
        .fix(format!(
            "this node is more than {LAG_WARN_ENTRIES} entries behind: check its disk ('aether doctor disk') and its link to the leader"
        ));
    }
    Outcome { summary, ..o }
}

fn rtt_ms(us: u64) -> f64 {
    (us as f64 / 10.0).round() / 100.0
}

/// `peers`: every other member answered the node's ping; a silent one fails with its address.
pub fn peers(v: &DoctorView) -> Outcome {
    let mut o = Outcome::new("peers", Status::Ok, "");
    if v.peers.is_empty() {
        o.summary = "no other members".into();
        return o;
    }
    let mut down = Vec::new();
    let mut up = Vec::new();
    for p in &v.peers {
        let fig = match (p.rtt_us, &p.error) {
            (Some(us), _) => {
                up.push(format!("{} {:.2} ms", p.name, rtt_ms(us)));
                json!({ "addr": p.addr, "reachable": true, "rtt_ms": rtt_ms(us) })
            }
            (None, e) => {
                let e = e.clone().unwrap_or_default();
                down.push(format!("'{}' ({}) unreachable: {e}", p.name, p.addr));
                json!({ "addr": p.addr, "reachable": false, "error": e })
            }
        };
        o.figures.insert(p.name.clone(), fig);
    }
    if down.is_empty() {
        o.summary = format!("{} answered: {}", up.len(), up.join(", "));
        return o;
    }
    o.status = Status::Fail;
    o.summary = down.join("; ");
    if !up.is_empty() {
        o.summary
            .push_str(&format!("; answered: {}", up.join(", ")));
    }
    o.fix(
        "check that 'aether node' runs on each unreachable member, and that its UDP port is open from this node ('aether nodes' shows what the cluster sees)",
    )
}

/// `skew`: every answering member's clock against this node's (warn above [`SKEW_WARN`], fail
/// above [`SKEW_FAIL`]).
pub fn skew(v: &DoctorView) -> Outcome {
    let answered: Vec<(&PeerPing, i64)> = v
        .peers
        .iter()
        .filter_map(|p| p.skew_us.map(|s| (p, s)))
        .collect();
    let mut o = Outcome::new("skew", Status::Ok, "");
    if answered.is_empty() {
        o.status = Status::Skip;
        o.summary = if v.peers.is_empty() {
            "no other members".into()
        } else {
            "no member answered: skew not measured".into()
        };
        return o;
    }
    let mut parts = Vec::new();
    for (p, s) in &answered {
        let skew_ms = *s as f64 / 1e3;
        o.figures.insert(p.name.clone(), json!(skew_ms));
        let abs = Duration::from_micros(s.unsigned_abs());
        let st = if abs > SKEW_FAIL {
            Status::Fail
        } else if abs > SKEW_WARN {
            Status::Warn
        } else {
            Status::Ok
        };
        o.status = o.status.max(st);
        parts.push(format!("{} {skew_ms:+.1} ms", p.name));
    }
    o.summary = format!(
        "against this node's clock: {} (warning above {} ms, failure above {} s)",
        parts.join(", "),
        SKEW_WARN.as_millis(),
        SKEW_FAIL.as_secs()
    );
    if o.status != Status::Ok {
        o.fix = Some(
            "synchronise every node's clock: chrony or systemd-timesyncd ('aether doctor clock' on each)"
                .into(),
        );
    }
    o
}

// ---- rendering ----

/// The checks' results: one line each (mark, name, summary) and the fix under each problem,
/// then a count; or the JSON list.
pub fn render(w: &mut dyn Write, outcomes: &[Outcome], json: bool) -> std::io::Result<()> {
    if json {
        serde_json::to_writer_pretty(&mut *w, outcomes)?;
        return writeln!(w);
    }
    let width = outcomes.iter().map(|o| o.name.len()).max().unwrap_or(0);
    for o in outcomes {
        writeln!(w, "{} {:width$}  {}", o.status.mark(), o.name, o.summary)?;
        if let Some(fix) = &o.fix {
            writeln!(w, "  {:width$}  fix: {fix}", "")?;
        }
    }
    let count = |s: Status| outcomes.iter().filter(|o| o.status == s).count();
    writeln!(
        w,
        "\n{} check(s): {} ok, {} warning(s), {} failed, {} skipped",
        outcomes.len(),
        count(Status::Ok),
        count(Status::Warn),
        count(Status::Fail),
        count(Status::Skip)
    )
}

/// `--list`: every check's name and what it looks at.
pub fn render_list(w: &mut dyn Write, json: bool) -> std::io::Result<()> {
    if json {
        let list: Vec<Value> = CHECKS
            .iter()
            .map(|(n, d)| json!({ "name": n, "description": d }))
            .collect();
        serde_json::to_writer_pretty(&mut *w, &list)?;
        return writeln!(w);
    }
    let width = CHECKS.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (n, d) in CHECKS {
        writeln!(w, "{n:width$}  {d}")?;
    }
    Ok(())
}

pub mod gather;
#[cfg(test)]
mod tests;
