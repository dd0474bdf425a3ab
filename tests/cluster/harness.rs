//! Real `aether node` processes on 127.0.0.1 and helpers that wait for conditions. Shared by
//! several test binaries (`#[path]`); each uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_aether");

/// The audit actor of a CLI command run by this process through `node`'s socket: `root@n1`
/// as root, else `uid:1000@n1`.
pub fn local_actor(node: &str) -> String {
    // SAFETY: geteuid has no preconditions and cannot fail.
    match unsafe { libc::geteuid() } {
        0 => format!("root@{node}"),
        uid => format!("uid:{uid}@{node}"),
    }
}

/// The `[settings]` of quick controller rules for tests: no cooldown up, nothing scales in, no
/// forecast (the tests want the rules' decisions only). A literal, for `concat!`.
macro_rules! quick_settings {
    () => {
        r#"
[settings]
target_cpu = 0.6
up_cooldown = "0s"
down_cooldown = "1h"
stabilization = "1h"
predictive = false
"#
    };
}

/// Quick controller rules for tests: a slice whose CPU per instance stays above target for 2 s
/// scales up (the settings of `quick_settings!`).
pub const SCALE_UP_RULES: &str = concat!(
    quick_settings!(),
    r#"
[[rules]]
name = "cpu-high"
scope = "slice"
priority = 100
when = [{ metric = "cpu_per_instance", above = "target", for = "2s" }]
action = "scale_up"
"#
);

/// Poll `f` every 50 ms until it returns `Some`, or panic after `timeout` naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills, when dropped (also on a failure), every live process whose environment has
/// `TEST_RUN=<run>`: instances inherit it from the daemons a test starts with it.
pub struct Reaper(pub String);

impl Drop for Reaper {
    fn drop(&mut self) {
        for p in live_processes() {
            if p.env.get("TEST_RUN") == Some(&self.0) {
                // SAFETY: kill(2) on a process this test run started.
                unsafe { libc::kill(p.pid as i32, libc::SIGKILL) };
            }
        }
    }
}

/// A live (not zombie) process as /proc shows it.
pub struct ProcInfo {
    pub pid: u32,
    /// The fields of /proc/PID/stat after the command name (state, ppid, pgrp, …).
    pub stat: Vec<String>,
    pub env: std::collections::BTreeMap<String, String>,
    /// Arguments joined by spaces.
    pub cmdline: String,
}

/// Every live process whose environment this user may read.
pub fn live_processes() -> Vec<ProcInfo> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let (Ok(env), Ok(stat), Ok(cmd)) = (
            std::fs::read(format!("/proc/{pid}/environ")),
            std::fs::read_to_string(format!("/proc/{pid}/stat")),
            std::fs::read(format!("/proc/{pid}/cmdline")),
        ) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let stat: Vec<String> = stat[close + 1..]
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if stat.first().is_none_or(|s| s == "Z") {
            continue;
        }
        let env = env
            .split(|b| *b == 0)
            .filter_map(|kv| {
                let kv = String::from_utf8_lossy(kv);
                let (k, v) = kv.split_once('=')?;
                Some((k.to_string(), v.to_string()))
            })
            .collect();
        out.push(ProcInfo {
            pid,
            stat,
            env,
            cmdline: String::from_utf8_lossy(&cmd).replace('\0', " "),
        });
    }
    out
}

/// A free port on 127.0.0.1 for both UDP and TCP, chosen below the kernel's ephemeral
/// range: a node killed and restarted on its port must find it free, and a port the
/// kernel may hand to any outgoing socket in the meantime would race that restart.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (base, span) = if low > 12_000 {
        (10_000, low - 10_000)
    } else {
        (61_000, 4_000)
    };
    // Spread concurrent test binaries apart; threads of one binary take turns.
    let seed = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let port = (base + (seed + NEXT.fetch_add(1, Ordering::Relaxed)) % span) as u16;
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        if udp.is_ok() && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {base}..{} on 127.0.0.1", base + span);
}

/// One node: its data dir, ports and (while running) its process.
pub struct Node {
    pub name: String,
    pub dir: PathBuf,
    pub quic: u16,
    pub http: u16,
    pub env: Vec<(String, String)>,
    child: Option<Child>,
    log: PathBuf,
}

impl Node {
    pub fn new(root: &Path, name: &str) -> Node {
        Node {
            name: name.into(),
            dir: root.join(name),
            quic: free_port(),
            http: free_port(),
            env: Vec::new(),
            child: None,
            log: root.join(format!("{name}.log")),
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.quic)
    }

    fn node_command(&self, join: Option<(&str, &str)>) -> Command {
        let mut c = Command::new(BIN);
        c.args(["node", "--data-dir"]).arg(&self.dir);
        c.args([
            "--name",
            &self.name,
            "--listen",
            &self.addr(),
            "--http",
            &format!("127.0.0.1:{}", self.http),
        ]);
        if let Some((addr, token)) = join {
            c.args(["--join", addr, "--token", token]);
        }
        // Instances see nothing of the daemon's environment but what it passes: the test-run
        // mark, so a test finds (and its reaper kills) the processes it started.
        c.env("AETHER_DEPLOY_PASS_ENV", "TEST_RUN");
        // Join settings come from the test only, never from the shell that runs it.
        for k in [
            "AETHER_JOIN",
            "AETHER_TOKEN",
            "AETHER_TOKEN_FILE",
            "NOTIFY_SOCKET",
        ] {
            c.env_remove(k);
        }
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.env_remove("RUST_LOG");
        c
    }

    /// Start the daemon in the background (log appended to `<root>/<name>.log`).
    pub fn start(&mut self, join: Option<(&str, &str)>) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = self
            .node_command(join)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn aether node");
        self.child = Some(child);
        let sock = self.dir.join("aether.sock");
        wait_for(
            &format!("{} admin socket", self.name),
            Duration::from_secs(20),
            || {
                if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                    panic!(
                        "{} exited early with {st}; log:\n{}",
                        self.name,
                        self.log_text()
                    );
                }
                std::os::unix::net::UnixStream::connect(&sock)
                    .ok()
                    .map(|_| ())
            },
        );
    }

    /// Run the daemon in the foreground and return how it ended (for refused joins).
    pub fn run_to_exit(&self, join: Option<(&str, &str)>, timeout: Duration) -> Output {
        let mut child = self
            .node_command(join)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                return child.wait_with_output().unwrap();
            }
            if start.elapsed() > timeout {
                let _ = child.kill();
                panic!(
                    "{} did not exit within {timeout:?}: a refused join must not hang",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The exit status, once the daemon has exited by itself.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        let st = self.child.as_mut()?.try_wait().unwrap()?;
        self.child = None;
        Some(st)
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Send `sig` (e.g. SIGSTOP, SIGCONT) to the running daemon.
    pub fn signal(&self, sig: i32) {
        let pid = self.pid().expect("node running") as i32;
        // SAFETY: kill(2) on a child this test started.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = c.kill();
                panic!(
                    "{} did not stop within 20 s of SIGTERM; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Run `aether --data-dir <dir> ARGS…` against this node.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    }

    /// `status --output json`, if the node answers.
    pub fn status(&self) -> Option<Value> {
        let out = self.cli(&["status", "--output", "json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    /// The leader's name as this node sees it.
    pub fn leader(&self) -> Option<String> {
        self.status()?
            .get("leader")?
            .get("name")?
            .as_str()
            .map(String::from)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// This node's local replica value of `key`.
    pub fn local_get(&self, key: &str) -> Option<String> {
        let out = self.cli(&["kv", "get", "--local", key]);
        out.status.success().then(|| {
            String::from_utf8(out.stdout)
                .unwrap()
                .trim_end()
                .to_string()
        })
    }

    /// `curl http://127.0.0.1:<http>/path` → status code.
    pub fn http_status(&self, path: &str) -> Option<u16> {
        self.http_get(path).map(|(status, _)| status)
    }

    /// GET `path` from the node's HTTP port: status and body.
    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.http)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )
        .ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        let status = buf.split_whitespace().nth(1)?.parse().ok()?;
        let body = buf.split_once("\r\n\r\n")?.1.to_string();
        Some((status, body))
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// `aether metrics --output json` (with `args`) on this node, when it answers.
    pub fn metrics(&self, args: &[&str]) -> Option<Value> {
        let mut a = vec!["metrics", "--output", "json"];
        a.extend_from_slice(args);
        let out = self.cli(&a);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim_end().to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Count the voters in a status document.
pub fn voters(status: &Value) -> usize {
    status["members"]
        .as_array()
        .map(|m| m.iter().filter(|m| m["role"] == "voter").count())
        .unwrap_or(0)
}

/// Nodes on one temp dir; dropping it kills them.
pub struct TestCluster {
    pub nodes: Vec<Node>,
    pub root: tempfile::TempDir,
}

impl Drop for TestCluster {
    /// On a failing test, the tail of every node's log goes to the test's output (CI shows
    /// it), and with `AETHER_TEST_KEEP=1` the whole directory stays for a look.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for n in &self.nodes {
            let log = n.log_text();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!("---- last {} lines of {}'s log ----", tail.len(), n.name);
            for l in tail {
                eprintln!("{l}");
            }
        }
        if std::env::var_os("AETHER_TEST_KEEP").is_some() {
            let keep = std::mem::replace(&mut self.root, tempfile::tempdir().unwrap()).keep();
            eprintln!("kept {}", keep.display());
        }
    }
}

/// `(name, value)` pairs borrowed from owned ones.
fn pairs(e: &[(String, String)]) -> Vec<(&str, &str)> {
    e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

impl TestCluster {
    /// A single founding node, ready.
    pub fn single(name: &str, env: &[(&str, &str)]) -> TestCluster {
        let root = tempfile::tempdir().unwrap();
        // Instances run as an unprivileged user (when the tests run as root): they must reach
        // the files a test writes here (an app, a config) and their working dirs below.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut n = Node::new(root.path(), name);
        n.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        n.start(None);
        wait_for(
            &format!("{name} leads its new cluster"),
            Duration::from_secs(20),
            || (n.status()?["node"]["ready"] == true && n.leader()? == name).then_some(()),
        );
        TestCluster {
            nodes: vec![n],
            root,
        }
    }

    /// Add nodes that join through node 0 with one token.
    pub fn join(&mut self, names: &[&str], env: &[(&str, &str)]) {
        let uses = names.len().to_string();
        let out = self.nodes[0].cli(&["token", "create", "--uses", &uses]);
        assert!(out.status.success(), "token create: {}", stderr(&out));
        let token = stdout(&out);
        let via = self.nodes[0].addr();
        for name in names {
            let mut n = Node::new(self.root.path(), name);
            n.env = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            n.start(Some((&via, &token)));
            self.nodes.push(n);
        }
    }

    /// Add one node that joins through node 0 with `token`.
    pub fn join_with_token(&mut self, name: &str, token: &str) {
        let mut n = Node::new(self.root.path(), name);
        n.start(Some((&self.nodes[0].addr(), token)));
        self.nodes.push(n);
    }

    /// Three nodes, three voters, all reachable from the leader.
    pub fn three() -> TestCluster {
        TestCluster::three_with(&[])
    }

    /// Three nodes with `env` (e.g. `AETHER_METRICS_DOWN_AFTER`), three voters.
    pub fn three_with(env: &[(&str, &str)]) -> TestCluster {
        let mut c = TestCluster::single("n1", env);
        c.join(&["n2", "n3"], env);
        c.wait_voters(3);
        c
    }

    /// `n` nodes, each serving slices' service ports on its own loopback address (node i on
    /// 127.0.0.1(i+1)), requests waiting up to 15 s for an instance, with `env` besides; every
    /// node a voter and in n1's metrics.
    pub fn with_ingress(n: usize, env: &[(&str, &str)]) -> TestCluster {
        let node_env = |i: usize| {
            let bind = format!("127.0.0.1{}", i + 1);
            let mut e: Vec<(String, String)> = vec![
                ("AETHER_INGRESS_BIND".into(), bind),
                ("AETHER_INGRESS_QUEUE_TIMEOUT".into(), "15s".into()),
            ];
            e.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            e
        };
        let e = node_env(0);
        let mut c = TestCluster::single("n1", &pairs(&e));
        for i in 1..n {
            let e = node_env(i);
            c.join(&[&format!("n{}", i + 1)], &pairs(&e));
        }
        c.wait_voters(n);
        wait_for(
            "every node in n1's metrics",
            Duration::from_secs(20),
            || (c.nodes[0].metrics(&[])?["nodes"].as_array()?.len() == n).then_some(()),
        );
        c
    }

    /// Wait until every running node sees `n` voters in a settled membership (not the joint
    /// configuration of a change under way, which still needs the old voters' majority: a
    /// test that kills the leader then would leave the others unable to elect), one leader
    /// and is ready.
    pub fn wait_voters(&self, n: usize) {
        wait_for(
            &format!("{n} voters, membership settled, one leader, every node ready"),
            Duration::from_secs(30),
            || {
                let mut leaders = std::collections::BTreeSet::new();
                for node in self.nodes.iter().filter(|n| n.running()) {
                    let s = node.status()?;
                    if voters(&s) != n
                        || s["membership_changing"] != false
                        || s["node"]["ready"] != true
                    {
                        return None;
                    }
                    leaders.insert(s["leader"]["name"].as_str()?.to_string());
                }
                (leaders.len() == 1).then_some(())
            },
        );
    }

    /// Index of the current leader (as the first running node sees it).
    pub fn leader_index(&self) -> usize {
        let name = wait_for("a leader", Duration::from_secs(20), || {
            self.nodes.iter().find(|n| n.running())?.leader()
        });
        self.nodes.iter().position(|n| n.name == name).unwrap()
    }
}
