//! Process figures from Linux /proc, shared by the benchmarks (each uses a part of it).
#![allow(dead_code)]

use std::time::Duration;

/// User + system CPU time used so far by the processes `pids`.
pub fn cpu_time(pids: &[u32]) -> Duration {
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let secs: f64 = pids
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|st| {
            let rest = st
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .collect::<Vec<_>>();
            // Fields after the name: state is 3rd overall, utime the 14th, stime the 15th.
            Some(rest.get(11)?.parse::<f64>().ok()? + rest.get(12)?.parse::<f64>().ok()?)
        })
        .sum::<f64>()
        / tick;
    Duration::from_secs_f64(secs)
}

/// A `kB` field of /proc/PID/status (`VmRSS`, `VmHWM`), in bytes.
pub fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = st.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Whether `pid` is a live process (a zombie counts as gone).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|st| {
            st.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next().map(|s| s != "Z"))
        })
        .unwrap_or(false)
}

/// Raise this process's open-file limit to its hard limit (children inherit it).
pub fn raise_fd_limit() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}
