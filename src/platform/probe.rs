//! Read-only facts about this machine for `aether doctor`: kernel, cgroups, open-file limit,
//! clock synchronisation, filesystem space, fsync latency, file owners and modes, and whether a
//! port can be bound. Each returns data; judging it is the caller's (`cli::doctor`).

use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/osrelease")?
        .trim()
        .to_string())
}

/// The cgroup facts the supervisor's limits depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupFacts {
    /// cgroup v2 is mounted at `/sys/fs/cgroup` (it has `cgroup.controllers`).
    pub v2: bool,
    /// The controllers available at the root (`cgroup.controllers`); empty without v2.
    pub controllers: Vec<String>,
    /// This process's own v2 cgroup (from `/proc/self/cgroup`), as a path under the mount.
    pub own: Option<PathBuf>,
    /// Without v2: the v1 hierarchies mounted under `/sys/fs/cgroup/<controller>` among `cpu`
    /// and `memory` (the two the supervisor's v1 limits use).
    pub v1: Vec<String>,
    /// The folders the supervisor would create instance cgroups under are writable by this
    /// user: with v2 its own cgroup where it has one other than the root, else the root; with
    /// v1 each of the `v1` hierarchies.
    pub writable: bool,
}

/// What `/sys/fs/cgroup` offers this process.
pub fn cgroups() -> CgroupFacts {
    let root = Path::new("/sys/fs/cgroup");
    let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).ok();
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("0::").map(|p| p.trim().to_string()))
        })
        .map(|p| root.join(p.trim_start_matches('/')));
    let v1: Vec<String> = ["cpu", "memory"]
        .into_iter()
        .filter(|c| controllers.is_none() && root.join(c).join("cgroup.procs").exists())
        .map(str::to_string)
        .collect();
    let writable = if controllers.is_some() {
        writable(
            &own.clone()
                .filter(|p| p != root && p.exists())
                .unwrap_or_else(|| root.to_path_buf()),
        )
    } else {
        !v1.is_empty() && v1.iter().all(|c| writable(&root.join(c)))
    };
    CgroupFacts {
        v2: controllers.is_some(),
        controllers: controllers
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect(),
        own,
        v1,
        writable,
    }
}

/// `access(path, W_OK)`: whether this user may write there.
fn writable(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: a NUL-terminated path; access has no other preconditions.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// `RLIMIT_NOFILE`: (soft, hard); `u64::MAX` is unlimited.
pub fn open_files_limit() -> io::Result<(u64, u64)> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((r.rlim_cur, r.rlim_max))
}

/// The kernel's clock discipline as `adjtimex(2)` reports it (read only: modes 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockFacts {
    /// `STA_UNSYNC` is set (or the call returned `TIME_ERROR`): nothing keeps the clock in
    /// step with a time source.
    pub unsynced: bool,
    /// The kernel's maximum error estimate, µs.
    pub max_error_us: i64,
    /// The kernel's estimated error, µs.
    pub est_error_us: i64,
}

/// Whether something (chrony, systemd-timesyncd, ntpd) disciplines the system clock.
pub fn clock() -> io::Result<ClockFacts> {
    // SAFETY: an all-zero timex is a valid "read only" request (modes 0).
    let mut t: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: adjtimex reads and writes the struct it is given.
    let state = unsafe { libc::adjtimex(&mut t) };
    if state < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ClockFacts {
        unsynced: state == libc::TIME_ERROR || t.status & libc::STA_UNSYNC != 0,
        max_error_us: t.maxerror as i64,
        est_error_us: t.esterror as i64,
    })
}

/// Size and free space of a filesystem, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub total: u64,
    /// Free for unprivileged users (`f_bavail`).
    pub available: u64,
}

/// `statvfs` of the filesystem that holds `path`.
pub fn space(path: &Path) -> io::Result<Space> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs fills the zeroed struct it is given from a NUL-terminated path.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let frsize = s.f_frsize as u64;
    Ok(Space {
        total: s.f_blocks as u64 * frsize,
        available: s.f_bavail as u64 * frsize,
    })
}

/// The block each fsync probe write appends.
pub const FSYNC_BLOCK: usize = 4096;

/// Append [`FSYNC_BLOCK`]-byte blocks to a new temporary file in `dir`, each followed by
/// `fdatasync`, for `budget` or `max_writes` writes, whichever comes first (like `etcdctl check
/// perf`, briefly): the latency of every fdatasync and the time it all took. The file is
/// removed, also when a write fails.
pub fn fsync_probe(
    dir: &Path,
    budget: Duration,
    max_writes: usize,
) -> io::Result<(Vec<Duration>, Duration)> {
    remove_stale_probes(dir);
    // On its own thread: a hung disk blocks one fdatasync without limit, the doctor must not.
    let (tx, rx) = std::sync::mpsc::channel();
    let d = dir.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(fsync_probe_here(&d, budget, max_writes));
    });
    let limit = budget + HUNG_SYNC;
    rx.recv_timeout(limit).unwrap_or_else(|_| {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "fdatasync did not return within {} s: the disk is hung or far too slow",
                limit.as_secs()
            ),
        ))
    })
}

/// How long past its budget the fsync probe waits for a write that does not return.
const HUNG_SYNC: Duration = Duration::from_secs(10);

const PROBE_PREFIX: &str = ".aether-doctor-fsync-";

/// Remove probe files that a doctor killed mid-probe left behind (their process is gone).
fn remove_stale_probes(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) = name.strip_prefix(PROBE_PREFIX) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn fsync_probe_here(
    dir: &Path,
    budget: Duration,
    max_writes: usize,
) -> io::Result<(Vec<Duration>, Duration)> {
    let path = dir.join(format!("{PROBE_PREFIX}{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        let block = vec![0xa5u8; FSYNC_BLOCK];
        let mut syncs = Vec::new();
        let start = Instant::now();
        while syncs.len() < max_writes && start.elapsed() < budget {
            f.write_all(&block)?;
            let t = Instant::now();
            f.sync_data()?;
            syncs.push(t.elapsed());
        }
        Ok((syncs, start.elapsed()))
    })();
    let _ = std::fs::remove_file(&path);
    result
}

/// Owner and permission bits of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileFacts {
    pub uid: u32,
    /// The permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub is_dir: bool,
}

/// Owner and mode of `path` (not following a final symlink).
pub fn file(path: &Path) -> io::Result<FileFacts> {
    let m = std::fs::symlink_metadata(path)?;
    Ok(FileFacts {
        uid: m.uid(),
        mode: m.mode() & 0o7777,
        is_dir: m.is_dir(),
    })
}

/// This process's effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// Whether a UDP socket could be bound at `addr` now (it is dropped at once).
pub fn udp_bindable(addr: std::net::SocketAddr) -> io::Result<()> {
    std::net::UdpSocket::bind(addr).map(drop)
}

/// Whether a TCP listener could be bound at `addr` now (it is dropped at once).
pub fn tcp_bindable(addr: std::net::SocketAddr) -> io::Result<()> {
    std::net::TcpListener::bind(addr).map(drop)
}
