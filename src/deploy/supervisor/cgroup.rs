//! CPU and memory limits of an instance (issue 18): a cgroup per instance, written by hand over
//! the cgroup filesystem (mkdir, the limit files, the pid, the OOM-kill count, rmdir). No crate:
//! cgroups-rs pulls in D-Bus (zbus, ~180 crates) for what is a few file writes.
//!
//! - **v1** (separate `cpu` and `memory` hierarchies, and `cpuacct` where it is mounted apart):
//!   `<mount>/aether/<node>-<hash of its data dir>/<blueprint>_<slice>_<index>` in each; `cpu.cfs_period_us` 100000 and
//!   `cpu.cfs_quota_us` = cores × 100000; `memory.limit_in_bytes` (and the same
//!   `memory.memsw.limit_in_bytes` where swap is accounted, so a hog cannot swap instead).
//!   OOM kills are counted by the `oom_kill` line of `memory.oom_control` (kernels since 4.13),
//!   else by `memory.failcnt` (hits of the limit: a SIGKILL after one counts as an OOM kill).
//! - **v2** (`<root>/cgroup.controllers` exists): where the node has a cgroup of its own (a
//!   systemd unit with `Delegate=yes`: its `cgroup.procs` holds the node alone), the node moves
//!   itself into `<own>/node` (`cpu.weight` 1000: ten times an instance's, so a runaway cannot
//!   starve Raft) and instances go in `<own>/instances/<instance>`, inside the unit, so systemd
//!   still stops them with it. Otherwise `<root>/aether.slice/<node>/<instance>`. `+cpu
//!   +memory` is enabled in each parent's `cgroup.subtree_control`; `cpu.max` = "<quota>
//!   100000", `memory.max` (and `memory.swap.max` 0); OOM kills from `memory.events`'s
//!   `oom_kill`.
//!
//! The child moves itself in before it execs: [`Cgroups::prepare`] makes the cgroup, and the
//! child writes "0" into its `cgroup.procs` from `pre_exec` while it still has the node's
//! privileges (a v2 move needs write access to the common ancestor's `cgroup.procs`), then
//! switches to its user. So everything it touches and everything it forks counts. The daemon
//! writes the pid again after the spawn returns (a no-op then; the fallback where the child's
//! write failed). What it forks later (its process group) inherits the cgroup. Where cgroups cannot be written (no mount, read-only, not
//! root), instances run without limits and [`Cgroups::status`] says which and why.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The CFS period: 100 ms.
pub(super) const PERIOD_US: u64 = 100_000;

/// What an instance may use (its slice's `resources`); 0 is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// Cores.
    pub cpu: f32,
    /// Bytes.
    pub memory: u64,
}

impl Limits {
    fn is_none(&self) -> bool {
        self.cpu <= 0.0 && self.memory == 0
    }
}

/// The CFS quota (µs per [`PERIOD_US`]) of `cores`; at least the kernel's 1 ms.
pub(super) fn quota_us(cores: f32) -> u64 {
    ((cores as f64 * PERIOD_US as f64).round() as u64).max(1000)
}

/// v2's `cpu.max` for `cores` (0: no limit).
pub(super) fn cpu_max(cores: f32) -> String {
    if cores <= 0.0 {
        format!("max {PERIOD_US}")
    } else {
        format!("{} {PERIOD_US}", quota_us(cores))
    }
}

/// The `oom_kill` count of v1's `memory.oom_control` or v2's `memory.events`.
pub(super) fn oom_kill_line(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        if it.next()? != "oom_kill" {
            return None;
        }
        it.next()?.parse().ok()
    })
}

/// An instance's cgroup name: `blueprint/slice/0` → `blueprint_slice_0`.
pub(super) fn leaf(instance: &str) -> String {
    instance.replace('/', "_")
}

/// Where this node's instance cgroups go.
#[derive(Debug, Clone)]
enum Layout {
    /// One dir per hierarchy: cpu, memory, then cpuacct when mounted apart from cpu.
    V1 {
        cpu: PathBuf,
        memory: PathBuf,
        cpuacct: Option<PathBuf>,
    },
    /// `<own>/instances` or `<root>/aether.slice/<node>`.
    V2 { node: PathBuf },
}

/// This node's cgroups: where instance cgroups go, or why there are none.
#[derive(Debug, Clone)]
pub(super) struct Cgroups {
    layout: Option<Layout>,
    status: String,
}

fn write(path: &Path, text: &str) -> io::Result<()> {
    std::fs::write(path, text)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

fn mkdir(path: &Path) -> io::Result<()> {
    std::fs::create_dir_all(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", path.display())))
}

/// `dir` offers the cpu and memory controllers.
fn has_cpu_and_memory(dir: &Path) -> Result<(), String> {
    let controllers = std::fs::read_to_string(dir.join("cgroup.controllers"))
        .map_err(|e| format!("{}: {e}", dir.join("cgroup.controllers").display()))?;
    for c in ["cpu", "memory"] {
        if !controllers.split_whitespace().any(|x| x == c) {
            return Err(format!(
                "the {c} controller is not available in {}",
                dir.display()
            ));
        }
    }
    Ok(())
}

/// Enable cpu and memory for `dir`'s children.
fn enable(dir: &Path) -> Result<(), String> {
    write(&dir.join("cgroup.subtree_control"), "+cpu +memory").map_err(|e| {
        if e.kind() == io::ErrorKind::ResourceBusy {
            format!("{e} (processes live in it, so it cannot have limited children)")
        } else {
            e.to_string()
        }
    })
}

/// This process's cgroup v2 path (`0::<path>` in `/proc/self/cgroup`), if any.
pub(super) fn own_v2() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim().to_string())
}

/// Remove the cgroups left empty under `dir` (by a previous run of this node).
fn remove_empty_children(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                // A cgroup with processes in it refuses (EBUSY) and stays.
                let _ = std::fs::remove_dir(e.path());
            }
        }
    }
}

impl Cgroups {
    /// None: every instance runs without limits, for `why`.
    pub(super) fn off(why: &str) -> Cgroups {
        Cgroups {
            layout: None,
            status: format!("cpu and memory limits off: {why}"),
        }
    }

    /// Find the cgroup filesystem under `root` (`/sys/fs/cgroup`), make this node's dirs and
    /// remove the empty ones a previous run left. Off when `enabled` is false or they cannot
    /// be written.
    /// `own` is this process's v2 cgroup (the `0::` line of `/proc/self/cgroup`) and `pid` its
    /// pid, for the delegated layout.
    pub(super) fn detect(
        root: &Path,
        node: &str,
        enabled: bool,
        own: Option<&str>,
        pid: u32,
    ) -> Cgroups {
        if !enabled {
            return Cgroups::off("deploy.limits = false");
        }
        let node = leaf(node);
        let found = if root.join("cgroup.controllers").exists() {
            match own.map(|own| Self::v2_delegated(root, own, pid)) {
                Some(Ok(c)) => Ok(c),
                Some(Err(delegated)) => {
                    Self::v2(root, &node).map_err(|e| format!("{delegated}; and {e}"))
                }
                None => Self::v2(root, &node),
            }
        } else if root.join("cpu/cpu.cfs_quota_us").exists()
            && root.join("memory/memory.limit_in_bytes").exists()
        {
            Self::v1(root, &node)
        } else {
            Err(format!(
                "no cgroup v2 at {r} and no v1 cpu and memory hierarchies under {r}",
                r = root.display()
            ))
        };
        match found {
            Ok(c) => c,
            Err(why) => Cgroups::off(&why),
        }
    }

    fn v1(root: &Path, node: &str) -> Result<Cgroups, String> {
        let at = |h: &str| root.join(h).join("aether").join(node);
        let (cpu, memory) = (at("cpu"), at("memory"));
        // cpuacct: for usage, when it is its own hierarchy (co-mounted, it is cpu's).
        let canon = |h: &str| std::fs::canonicalize(root.join(h)).ok();
        let cpuacct = (root.join("cpuacct/cpuacct.usage").exists()
            && canon("cpuacct") != canon("cpu"))
        .then(|| at("cpuacct"));
        for d in [&cpu, &memory].into_iter().chain(&cpuacct) {
            mkdir(d).map_err(|e| e.to_string())?;
            remove_empty_children(d);
        }
        let oom = if std::fs::read_to_string(root.join("memory/memory.oom_control"))
            .is_ok_and(|t| oom_kill_line(&t).is_some())
        {
            "OOM kills from memory.oom_control"
        } else {
            "OOM kills from memory.failcnt"
        };
        Ok(Cgroups {
            status: format!(
                "cpu and memory limits on (cgroup v1: {} and {}; {oom})",
                cpu.display(),
                memory.display()
            ),
            layout: Some(Layout::V1 {
                cpu,
                memory,
                cpuacct,
            }),
        })
    }

    /// Under the root: `<root>/aether.slice/<node>`.
    fn v2(root: &Path, node: &str) -> Result<Cgroups, String> {
        has_cpu_and_memory(root)?;
        let slice = root.join("aether.slice");
        let node_dir = slice.join(node);
        mkdir(&node_dir).map_err(|e| e.to_string())?;
        for d in [root, &slice, &node_dir] {
            enable(d)?;
        }
        remove_empty_children(&node_dir);
        Ok(Cgroups {
            status: format!(
                "cpu and memory limits on (cgroup v2: {}; OOM kills from memory.events)",
                node_dir.display()
            ),
            layout: Some(Layout::V2 { node: node_dir }),
        })
    }

    /// Inside the node's own cgroup `own` (relative to `root`), when it holds this process
    /// alone (or already has the `node` + `instances` split from an earlier start).
    fn v2_delegated(root: &Path, own: &str, pid: u32) -> Result<Cgroups, String> {
        let rel = own.trim_start_matches('/');
        let base = root.join(rel);
        // Restarted in place: the node already sits in `<own>/node`.
        let base = if rel.ends_with("/node") || rel == "node" {
            base.parent().unwrap_or(root).to_path_buf()
        } else {
            base
        };
        if base == root {
            return Err("the node runs in the root cgroup, not one of its own".into());
        }
        has_cpu_and_memory(&base)?;
        let procs = std::fs::read_to_string(base.join("cgroup.procs"))
            .map_err(|e| format!("{}: {e}", base.join("cgroup.procs").display()))?;
        // The node and its own helpers (nvidia-smi children) move together; anything else
        // shares the cgroup.
        let (ours, others): (Vec<&str>, Vec<&str>) = procs.split_whitespace().partition(|p| {
            *p == pid.to_string()
                || p.parse()
                    .ok()
                    .and_then(super::process::proc_stat)
                    .is_some_and(|s| s.ppid == pid)
        });
        if !others.is_empty() {
            return Err(format!(
                "the node's cgroup {} also holds {} other process{} (run it as a systemd unit with Delegate=yes to give it one of its own)",
                base.display(),
                others.len(),
                if others.len() == 1 { "" } else { "es" }
            ));
        }
        let node_dir = base.join("node");
        let instances = base.join("instances");
        mkdir(&node_dir).map_err(|e| e.to_string())?;
        mkdir(&instances).map_err(|e| e.to_string())?;
        for p in ours {
            write(&node_dir.join("cgroup.procs"), p).map_err(|e| e.to_string())?;
        }
        enable(&base)?;
        enable(&instances)?;
        // The node's own share: ten times an instance's default weight (100).
        let _ = write(&node_dir.join("cpu.weight"), "1000");
        remove_empty_children(&instances);
        Ok(Cgroups {
            status: format!(
                "cpu and memory limits on (cgroup v2, delegated: instances in {}, the node in {} with cpu.weight 1000; OOM kills from memory.events)",
                instances.display(),
                node_dir.display()
            ),
            layout: Some(Layout::V2 { node: instances }),
        })
    }

    /// Which protections are on, or which are off and why (said once at startup).
    pub(super) fn status(&self) -> &str {
        &self.status
    }

    /// Whether instances get limits.
    pub(super) fn on(&self) -> bool {
        self.layout.is_some()
    }

    /// Put `pid` (just spawned) into a fresh cgroup of `instance` with `limits`. `None` when
    /// limits are off or the instance has none.
    pub(super) fn attach(
        &self,
        instance: &str,
        limits: Limits,
        pid: u32,
    ) -> io::Result<Option<Group>> {
        let Some(layout) = &self.layout else {
            return Ok(None);
        };
        if limits.is_none() {
            return Ok(None);
        }
        self.group(layout, instance).enter(limits, pid)
    }

    /// Before a spawn: make `instance`'s cgroup with `limits`; the child writes "0" into the
    /// `cgroup.procs` files returned, before it switches to its user and execs, so everything it
    /// touches or forks counts. None where limits are off or anything fails (then
    /// [`Cgroups::attach`] moves it in after the spawn).
    pub(super) fn prepare(&self, instance: &str, limits: Limits) -> Vec<PathBuf> {
        let Some(layout) = &self.layout else {
            return Vec::new();
        };
        if limits.is_none() {
            return Vec::new();
        }
        let mut g = self.group(layout, instance);
        if g.set_up(limits).is_err() {
            return Vec::new();
        }
        g.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    fn group(&self, layout: &Layout, instance: &str) -> Group {
        let name = leaf(instance);
        match layout {
            Layout::V1 {
                cpu,
                memory,
                cpuacct,
            } => Group {
                dirs: [cpu.join(&name), memory.join(&name)]
                    .into_iter()
                    .chain(cpuacct.as_ref().map(|a| a.join(&name)))
                    .collect(),
                v2: false,
                oom_before: 0,
            },
            Layout::V2 { node } => Group {
                dirs: vec![node.join(&name)],
                v2: true,
                oom_before: 0,
            },
        }
    }
}

/// An instance's cgroup (one dir per v1 hierarchy: cpu, memory, cpuacct; one dir on v2).
#[derive(Debug)]
pub(super) struct Group {
    dirs: Vec<PathBuf>,
    v2: bool,
    /// OOM kills counted in it when the run started.
    oom_before: u64,
}

impl Group {
    /// The dir that holds the memory files.
    fn memory(&self) -> &Path {
        if self.v2 {
            &self.dirs[0]
        } else {
            &self.dirs[1]
        }
    }

    /// Make the dirs, write the limits, read the OOM count, then move `pid` in. A dir removed
    /// meanwhile (the empty leftovers of another node of the same name) is made again. `None`
    /// when `pid` has already ended (nothing to limit).
    fn enter(mut self, limits: Limits, pid: u32) -> io::Result<Option<Group>> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.try_enter(limits, pid) {
                Err(e) if e.kind() == io::ErrorKind::NotFound && tries < 3 => continue,
                Err(e) => {
                    self.remove_now();
                    if e.raw_os_error() == Some(libc::ESRCH) {
                        return Ok(None);
                    }
                    return Err(e);
                }
                Ok(()) => return Ok(Some(self)),
            }
        }
    }

    fn try_enter(&mut self, limits: Limits, pid: u32) -> io::Result<()> {
        self.set_up(limits)?;
        self.oom_before = self.oom_kills();
        for d in &self.dirs {
            let procs = d.join("cgroup.procs");
            std::fs::write(&procs, pid.to_string()).map_err(|e| match e.raw_os_error() {
                // Ended already: said as such (the error keeps its code).
                Some(libc::ESRCH) => e,
                _ => io::Error::new(e.kind(), format!("{}: {e}", procs.display())),
            })?;
        }
        Ok(())
    }

    /// Make the dirs and write the limits.
    fn set_up(&mut self, limits: Limits) -> io::Result<()> {
        for d in &self.dirs {
            mkdir(d)?;
        }
        let mem = self.memory().to_path_buf();
        if self.v2 {
            let d = &self.dirs[0];
            write(&d.join("cpu.max"), &cpu_max(limits.cpu))?;
            let max = if limits.memory == 0 {
                "max".to_string()
            } else {
                limits.memory.to_string()
            };
            write(&d.join("memory.max"), &max)?;
            if limits.memory > 0 {
                // Absent without swap accounting.
                let _ = std::fs::write(d.join("memory.swap.max"), "0");
            }
        } else {
            let cpu = &self.dirs[0];
            write(&cpu.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
            let quota = if limits.cpu <= 0.0 {
                "-1".to_string()
            } else {
                quota_us(limits.cpu).to_string()
            };
            write(&cpu.join("cpu.cfs_quota_us"), &quota)?;
            let bytes = if limits.memory == 0 {
                "-1".to_string()
            } else {
                limits.memory.to_string()
            };
            write(&mem.join("memory.limit_in_bytes"), &bytes)?;
            // Where swap is accounted: no swapping past the limit either (absent otherwise).
            let _ = std::fs::write(mem.join("memory.memsw.limit_in_bytes"), &bytes);
            // A pid moved in after it started (when it could not move itself in, see
            // `prepare`): what it touched until then moves with it where the kernel still moves
            // charges (recent kernels refuse this deprecated file).
            let _ = std::fs::write(mem.join("memory.move_charge_at_immigrate"), "3");
        }
        Ok(())
    }

    /// The OOM kills counted in this cgroup so far.
    pub(super) fn oom_kills(&self) -> u64 {
        let read = |f: &str| std::fs::read_to_string(self.memory().join(f)).unwrap_or_default();
        if self.v2 {
            return oom_kill_line(&read("memory.events")).unwrap_or(0);
        }
        oom_kill_line(&read("memory.oom_control"))
            .or_else(|| read("memory.failcnt").trim().parse().ok())
            .unwrap_or(0)
    }

    /// How the run ended, `how`, told again with what the cgroup saw: `oom-killed` for a
    /// SIGKILL after an OOM kill in it.
    pub(super) fn explain(&self, how: String) -> String {
        if self.oom_kills() <= self.oom_before {
            how
        } else if how == "signal 9 (SIGKILL)" {
            "oom-killed".into()
        } else {
            format!("{how} (after an oom-kill in its cgroup)")
        }
    }

    fn remove_now(&self) -> bool {
        self.dirs.iter().all(|d| match std::fs::remove_dir(d) {
            Ok(()) => true,
            Err(e) => e.kind() == io::ErrorKind::NotFound,
        })
    }

    /// Remove the cgroup once its processes are gone (a killed one may take a moment to leave
    /// it); left for the next start's clean-up after 1 s.
    pub(super) async fn remove(self) {
        for _ in 0..50 {
            if self.remove_now() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::warn!(
            "cgroup {} still busy 1 s after its processes ended; left for the next start",
            self.dirs[0].display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_and_the_text_written() {
        assert_eq!(quota_us(0.5), 50_000);
        assert_eq!(quota_us(2.0), 200_000);
        assert_eq!(quota_us(0.001), 1000, "the kernel's least");
        assert_eq!(cpu_max(0.5), "50000 100000");
        assert_eq!(cpu_max(0.0), "max 100000");
        assert_eq!(leaf("shop/web/0"), "shop_web_0");
    }

    #[test]
    fn oom_kills_are_read_from_oom_control_and_events() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(oom_kill_line(v1), Some(3));
        let v2 = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(oom_kill_line(v2), Some(2));
        assert_eq!(oom_kill_line("oom_kill_disable 0\nunder_oom 0\n"), None);
    }

    fn fake_v1(root: &Path) {
        for (d, f) in [
            ("cpu", "cpu.cfs_quota_us"),
            ("memory", "memory.limit_in_bytes"),
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
            std::fs::write(root.join(d).join(f), "").unwrap();
        }
        std::fs::write(
            root.join("memory/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        )
        .unwrap();
    }

    #[test]
    fn v1_paths_limits_and_the_oom_verdict_on_a_fake_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fake_v1(root);
        // An empty leftover of a previous run goes at start.
        std::fs::create_dir_all(root.join("memory/aether/n1/old_s_0")).unwrap();
        let c = Cgroups::detect(root, "n1", true, None, 1);
        assert!(c.on(), "{}", c.status());
        assert!(
            c.status().contains("OOM kills from memory.oom_control"),
            "{}",
            c.status()
        );
        assert!(!root.join("memory/aether/n1/old_s_0").exists());
        let limits = Limits {
            cpu: 0.5,
            memory: 32 << 20,
        };
        let g = c.attach("shop/web/0", limits, 4242).unwrap().unwrap();
        let cpu = root.join("cpu/aether/n1/shop_web_0");
        let mem = root.join("memory/aether/n1/shop_web_0");
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(cpu.join("cpu.cfs_quota_us")), "50000");
        assert_eq!(read(cpu.join("cpu.cfs_period_us")), "100000");
        assert_eq!(read(mem.join("memory.limit_in_bytes")), "33554432");
        assert_eq!(read(cpu.join("cgroup.procs")), "4242");
        assert_eq!(read(mem.join("cgroup.procs")), "4242");
        assert_eq!(g.explain("signal 9 (SIGKILL)".into()), "signal 9 (SIGKILL)");
        std::fs::write(
            mem.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(g.explain("signal 9 (SIGKILL)".into()), "oom-killed");
        assert_eq!(
            g.explain("exit 1".into()),
            "exit 1 (after an oom-kill in its cgroup)"
        );
        // None asked for: no cgroup.
        assert!(c.attach("a/b/0", Limits::default(), 1).unwrap().is_none());
    }

    #[test]
    fn v2_writes_cpu_max_and_memory_max_and_enables_the_controllers() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(
            root.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        let c = Cgroups::detect(root, "n1", true, None, 1);
        assert!(c.on(), "{}", c.status());
        let node = root.join("aether.slice/n1");
        for d in [root.to_path_buf(), root.join("aether.slice"), node.clone()] {
            assert_eq!(
                std::fs::read_to_string(d.join("cgroup.subtree_control")).unwrap(),
                "+cpu +memory"
            );
        }
        let limits = Limits {
            cpu: 0.5,
            memory: 1 << 20,
        };
        let g = c.attach("shop/web/1", limits, 7).unwrap().unwrap();
        let d = node.join("shop_web_1");
        let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap();
        assert_eq!(read("cpu.max"), "50000 100000");
        assert_eq!(read("memory.max"), "1048576");
        assert_eq!(read("cgroup.procs"), "7");
        std::fs::write(d.join("memory.events"), "oom 1\noom_kill 1\n").unwrap();
        assert_eq!(g.explain("signal 9 (SIGKILL)".into()), "oom-killed");
    }

    #[test]
    fn v2_delegated_puts_the_node_and_its_instances_inside_its_own_cgroup() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let unit = root.join("system.slice/aether.service");
        std::fs::create_dir_all(&unit).unwrap();
        for d in [root, &unit] {
            std::fs::write(d.join("cgroup.controllers"), "cpu io memory pids\n").unwrap();
        }
        // The node (this test process stands in for it) and a child of its own.
        let me = std::process::id();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        std::fs::write(unit.join("cgroup.procs"), format!("{me}\n{}\n", child.id())).unwrap();
        let own = Some("/system.slice/aether.service");
        let c = Cgroups::detect(root, "n1", true, own, me);
        let _ = child.kill();
        let _ = child.wait();
        assert!(c.on(), "{}", c.status());
        assert!(c.status().contains("delegated"), "{}", c.status());
        // (A fake file keeps the last write: the child, moved after the node.)
        assert_eq!(
            std::fs::read_to_string(unit.join("node/cgroup.procs")).unwrap(),
            child.id().to_string()
        );
        assert_eq!(
            std::fs::read_to_string(unit.join("node/cpu.weight")).unwrap(),
            "1000"
        );
        for d in [unit.clone(), unit.join("instances")] {
            assert_eq!(
                std::fs::read_to_string(d.join("cgroup.subtree_control")).unwrap(),
                "+cpu +memory"
            );
        }
        c.attach(
            "shop/web/1",
            Limits {
                cpu: 1.0,
                memory: 0,
            },
            7,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(unit.join("instances/shop_web_1/cpu.max")).unwrap(),
            "100000 100000"
        );
        assert!(!root.join("aether.slice").exists());

        // Shared with another process (a shell, a test harness): the root layout instead,
        // and nothing moved.
        std::fs::remove_dir_all(unit.join("node")).unwrap();
        std::fs::write(unit.join("cgroup.procs"), format!("{me}\n1\n")).unwrap();
        let c = Cgroups::detect(root, "n1", true, own, me);
        assert!(c.on(), "{}", c.status());
        assert!(root.join("aether.slice/n1").is_dir());
        assert!(!unit.join("node").exists());
    }

    #[test]
    fn off_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cgroups::detect(dir.path(), "n1", true, None, 1);
        assert!(!c.on());
        assert!(
            c.status()
                .starts_with("cpu and memory limits off: no cgroup v2 at "),
            "{}",
            c.status()
        );
        let c = Cgroups::detect(dir.path(), "n1", false, None, 1);
        assert_eq!(
            c.status(),
            "cpu and memory limits off: deploy.limits = false"
        );
        assert!(
            c.attach(
                "a/b/0",
                Limits {
                    cpu: 1.0,
                    memory: 0
                },
                1
            )
            .unwrap()
            .is_none()
        );
    }
}
