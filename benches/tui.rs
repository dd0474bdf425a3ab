//! Terminal console benchmark: `aether tui` side by side with Debian's `btop`, all on 127.0.0.1.
//!
//! A 3-node Aether cluster runs on 127.0.0.1; `aether --data-dir <n1> tui` and `btop` (at a 1 s
//! refresh, from a private btop.conf: btop 1.2.13 has no refresh flag) each run in a detached
//! tmux session of 160x48 (private tmux server on a socket in the temp dir, status line off, so
//! the pane is the full 160x48). Each pane runs its program directly (`env … PROGRAM`, and `env`
//! execs), so the pane's pid is the program's.
//!
//! 1. First frame, `--runs` launches of each, one program at a time: the time from sending
//!    `new-session` to the first `capture-pane` that shows the frame. aether: first draw = the
//!    tab bar ("Overview"); full frame = all three node names (n1, n2, n3). btop: its full frame =
//!    the titles of its cpu, mem, net and proc boxes plus data in the mem and net boxes. The
//!    panes are polled every ~5 ms through one tmux control-mode client (no process per poll);
//!    the mean poll interval, the resolution of these figures, is printed with them.
//! 2. CPU and memory: both programs started together and run for the same `--secs` (after both
//!    have drawn a full frame and 2 s of settling): CPU seconds (utime + stime of the process,
//!    every thread) over that window, peak RSS (VmRSS sampled every second, and the kernel's
//!    VmHWM), and the ratios aether/btop. Node n1's CPU (it serves the console) is printed next
//!    to n2's and n3's.
//!
//! Run it with `scripts/bench/tui.sh` (or `cargo bench --bench tui -- --help`).

#[path = "common/nodes.rs"]
mod nodes;
#[path = "common/procstat.rs"]
mod procstat;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use procstat::{alive, cpu_time, status_bytes};

const USAGE: &str = "\
tui benchmark: 'aether tui' vs btop in tmux at 160x48, 1 s refresh, on 127.0.0.1

usage: cargo bench --bench tui -- [options]

  --aether-bin PATH   aether binary [env AETHER_BIN; default target/release/aether]
  --btop-bin PATH     btop binary [env BTOP_BIN; default btop on PATH]
  --tmux-bin PATH     tmux binary [env TMUX_BIN; default tmux on PATH]
  --secs N            length of the side-by-side CPU/memory run, 0 to skip it [60]
  --runs N            first-frame launches of each program, 0 to skip them [5]
  --only aether|btop  measure one program only (no ratios)
  --tui-args ARGS     extra arguments after 'aether … tui', space separated
  --keep              keep the temp dir (data dirs, logs, btop config, tmux socket)
  -h, --help          this text
";

const WIDTH: u16 = 160;
const HEIGHT: u16 = 48;
/// Sleep between two captures while waiting for a first frame.
const POLL_SLEEP: Duration = Duration::from_millis(5);
/// Longest wait for a first frame.
const FRAME_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for one tmux command's answer.
const TMUX_TIMEOUT: Duration = Duration::from_secs(10);

struct Opts {
    aether_bin: PathBuf,
    btop_bin: PathBuf,
    tmux_bin: PathBuf,
    secs: u64,
    runs: usize,
    aether: bool,
    btop: bool,
    tui_args: Vec<String>,
    keep: bool,
}

fn env_or(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| default.into())
}

fn parse_opts() -> Result<Opts> {
    let mut o = Opts {
        aether_bin: nodes::default_aether_bin(),
        btop_bin: env_or("BTOP_BIN", "btop"),
        tmux_bin: env_or("TMUX_BIN", "tmux"),
        secs: 60,
        runs: 5,
        aether: true,
        btop: true,
        tui_args: Vec::new(),
        keep: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or_else(|| anyhow!("{name} needs a value"));
        match a.as_str() {
            "--aether-bin" => o.aether_bin = val(&a)?.into(),
            "--btop-bin" => o.btop_bin = val(&a)?.into(),
            "--tmux-bin" => o.tmux_bin = val(&a)?.into(),
            "--secs" => o.secs = val(&a)?.parse().context("--secs")?,
            "--runs" => o.runs = val(&a)?.parse().context("--runs")?,
            "--only" => match val(&a)?.as_str() {
                "aether" => o.btop = false,
                "btop" => o.aether = false,
                other => bail!("--only takes aether or btop, found '{other}'"),
            },
            "--tui-args" => o.tui_args = val(&a)?.split_whitespace().map(String::from).collect(),
            "--keep" => o.keep = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            other => bail!("unknown option '{other}'\n\n{USAGE}"),
        }
    }
    check_tool(&o.tmux_bin, "-V", "tmux", "tmux")?;
    if o.btop {
        check_tool(&o.btop_bin, "--version", "btop", "btop")?;
    }
    if o.aether {
        nodes::check_aether_bin(&o.aether_bin)?;
        // A build without the console answers 'aether tui' with "… is not built yet".
        let out = Command::new(&o.aether_bin)
            .args(["tui", "--help"])
            .output()
            .with_context(|| format!("run '{} tui --help'", o.aether_bin.display()))?;
        let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        if !out.status.success() || text.contains("not built") {
            let first = text.lines().next().unwrap_or("").trim().to_string();
            bail!(
                "'{} tui' is not available in this build ({}); rebuild, or run '--only btop'",
                o.aether_bin.display(),
                if first.is_empty() {
                    out.status.to_string()
                } else {
                    first
                }
            );
        }
    }
    Ok(o)
}

/// A clear error when a tool to benchmark against is missing.
fn check_tool(bin: &Path, version_flag: &str, what: &str, package: &str) -> Result<()> {
    match Command::new(bin)
        .arg(version_flag)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => bail!("'{} {version_flag}' failed ({s})", bin.display()),
        Err(e) => bail!(
            "{what} not found ('{}': {e}): install the Debian package {package} \
             (scripts/bench/tui.sh does) or pass --{what}-bin",
            bin.display()
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Interruption: Ctrl-C or SIGTERM stop the loops below, so that the drops clean up (the tmux
// server is a daemon outside this process group and would outlive us otherwise).

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    let handler: extern "C" fn(libc::c_int) = on_signal;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
    }
}

fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// /proc helpers

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Wait (bounded) for `pid` to exit; SIGKILL it when it does not, if it still is `name`.
fn reap(pid: u32, name: &str, timeout: Duration) {
    let start = Instant::now();
    while alive(pid) && start.elapsed() < timeout {
        std::thread::sleep(Duration::from_millis(10));
    }
    if alive(pid) && comm(pid) == name {
        // SAFETY: plain kill(2) on a pid that is still the program we started.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// tmux: a private server, driven through one control-mode client

/// Quote one word for tmux's command parser (single quotes: no escapes inside).
fn tmux_quote(s: &str) -> Result<String> {
    if s.contains('\'') || s.contains('\n') {
        bail!("cannot pass '{s}' to tmux (quote or newline in it)");
    }
    Ok(format!("'{s}'"))
}

struct Tmux {
    bin: PathBuf,
    sock: PathBuf,
    ctl: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    /// Programs started in panes: (pid, comm), reaped on drop.
    programs: Vec<(u32, String)>,
}

impl Tmux {
    /// Start a private tmux server (socket and config in `dir`) and a control client attached
    /// to a session of its own.
    fn start(bin: &Path, dir: &Path) -> Result<Tmux> {
        let sock = dir.join("tmux.sock");
        let conf = dir.join("tmux.conf");
        std::fs::write(
            &conf,
            format!(
                "set -g status off\n\
                 set -g default-terminal tmux-256color\n\
                 set -g default-size {WIDTH}x{HEIGHT}\n\
                 set -g history-limit 100\n\
                 setw -g remain-on-exit on\n"
            ),
        )?;
        let mut ctl = Command::new(bin)
            .arg("-u")
            .arg("-f")
            .arg(&conf)
            .arg("-S")
            .arg(&sock)
            .args(["-C", "new-session", "-s", "ctl", "sleep", "86400"])
            .env("LANG", "C.UTF-8")
            .env_remove("LC_ALL")
            .env_remove("TMUX")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start '{}'", bin.display()))?;
        let stdin = ctl.stdin.take().expect("piped stdin");
        let stdout = ctl.stdout.take().expect("piped stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut t = Tmux {
            bin: bin.into(),
            sock,
            ctl,
            stdin,
            lines,
            programs: Vec::new(),
        };
        // Skip whatever the client prints on attaching, up to the answer to a marker command.
        writeln!(t.stdin, "display -p aether-bench-sync")?;
        let start = Instant::now();
        loop {
            if t.block(TMUX_TIMEOUT)? == ["aether-bench-sync"] {
                break;
            }
            if start.elapsed() > TMUX_TIMEOUT {
                bail!("tmux control client did not answer");
            }
        }
        Ok(t)
    }

    /// The next `%begin … %end` block of output (notifications outside blocks are skipped).
    fn block(&mut self, timeout: Duration) -> Result<Vec<String>> {
        let deadline = Instant::now() + timeout;
        let mut body: Option<Vec<String>> = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(l) => l,
                Err(RecvTimeoutError::Timeout) => bail!("tmux did not answer in {timeout:?}"),
                Err(RecvTimeoutError::Disconnected) => bail!("the tmux control client exited"),
            };
            match &mut body {
                None if line.starts_with("%begin ") => body = Some(Vec::new()),
                None => {}
                Some(b) if line.starts_with("%end ") => return Ok(std::mem::take(b)),
                Some(b) if line.starts_with("%error ") => {
                    bail!("tmux: {}", b.join(" "))
                }
                Some(b) => b.push(line),
            }
        }
    }

    /// Run one tmux command; its output lines.
    fn cmd(&mut self, line: &str) -> Result<Vec<String>> {
        writeln!(self.stdin, "{line}").context("write to the tmux control client")?;
        self.block(TMUX_TIMEOUT)
            .with_context(|| format!("tmux command '{line}'"))
    }

    /// Start `argv` in a new detached 160x48 session `name`; the instant it was asked for.
    fn launch(&mut self, name: &str, argv: &[String]) -> Result<Instant> {
        let mut line = format!("new-session -d -s {name} -x {WIDTH} -y {HEIGHT} --");
        for a in argv {
            line.push(' ');
            line.push_str(&tmux_quote(a)?);
        }
        let t0 = Instant::now();
        self.cmd(&line)?;
        Ok(t0)
    }

    /// The pid of the program in session `name`'s pane, checked to be `expect_comm`.
    fn pane_pid(&mut self, name: &str, expect_comm: &str) -> Result<u32> {
        let out = self.cmd(&format!(
            "display -p -t {name} '#{{pane_pid}} #{{pane_width}}x#{{pane_height}}'"
        ))?;
        let line = out.first().cloned().unwrap_or_default();
        let (pid, size) = line
            .split_once(' ')
            .ok_or_else(|| anyhow!("unexpected pane info '{line}'"))?;
        let pid: u32 = pid.parse().with_context(|| format!("pane pid '{pid}'"))?;
        let c = comm(pid);
        self.programs.push((pid, c.clone()));
        if size != format!("{WIDTH}x{HEIGHT}") {
            bail!("pane '{name}' is {size}, not {WIDTH}x{HEIGHT}");
        }
        if c != expect_comm {
            bail!("pane '{name}' runs '{c}' (pid {pid}), not '{expect_comm}'");
        }
        Ok(pid)
    }

    fn capture(&mut self, name: &str) -> Result<String> {
        Ok(self.cmd(&format!("capture-pane -p -t {name}"))?.join("\n"))
    }

    /// Whether the pane's program has exited (the pane stays: remain-on-exit).
    fn dead(&mut self, name: &str) -> Result<Option<String>> {
        let out = self.cmd(&format!(
            "display -p -t {name} '#{{pane_dead}} #{{pane_dead_status}}'"
        ))?;
        let line = out.first().cloned().unwrap_or_default();
        Ok(line
            .strip_prefix("1 ")
            .map(|status| format!("exit status {}", status.trim())))
    }

    /// Close session `name` and wait (bounded) for its program to exit.
    fn kill(&mut self, name: &str, pid: Option<u32>) -> Result<()> {
        self.cmd(&format!("kill-session -t {name}"))?;
        if let Some(pid) = pid {
            let c = comm(pid);
            reap(pid, &c, Duration::from_secs(5));
        }
        Ok(())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new(&self.bin)
            .arg("-S")
            .arg(&self.sock)
            .arg("kill-server")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.ctl.kill();
        let _ = self.ctl.wait();
        for (pid, c) in &self.programs {
            reap(*pid, c, Duration::from_secs(3));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What a full frame looks like

/// Whether `word` occurs in `text` not as part of a longer word or path.
fn has_word(text: &str, word: &str) -> bool {
    let boundary = |c: Option<char>| c.is_none_or(|c| !(c.is_alphanumeric() || "_/.-".contains(c)));
    text.match_indices(word).any(|(i, _)| {
        boundary(text[..i].chars().next_back()) && boundary(text[i + word.len()..].chars().next())
    })
}

/// One program under test: how to start it, and the stages of its first frame.
struct Program {
    label: &'static str,
    comm: &'static str,
    argv: Vec<String>,
    /// The last stage is the full frame.
    stages: Vec<Stage>,
}

/// A stage of the first frame: its name, and whether a capture of the pane shows it.
struct Stage(&'static str, fn(&str) -> bool);

fn aether_program(o: &Opts, n1_dir: &Path, root: &Path) -> Program {
    let mut argv: Vec<String> = vec![
        "env".into(),
        "LANG=C.UTF-8".into(),
        format!("HOME={}", root.display()),
        o.aether_bin.display().to_string(),
        "--data-dir".into(),
        n1_dir.display().to_string(),
        "tui".into(),
    ];
    argv.extend(o.tui_args.iter().cloned());
    Program {
        label: "aether tui",
        comm: "aether",
        argv,
        stages: vec![
            Stage("first draw (tab bar 'Overview')", |s: &str| {
                s.contains("Overview")
            }),
            Stage("full frame (n1, n2, n3 shown)", |s: &str| {
                s.contains("Overview") && ["n1", "n2", "n3"].iter().all(|n| has_word(s, n))
            }),
        ],
    }
}

/// btop with a private config: 1 s refresh (btop 1.2.13 has no flag for it), all four boxes.
fn btop_program(o: &Opts, root: &Path) -> Result<Program> {
    let home = root.join("btop-home");
    let conf_dir = home.join(".config/btop");
    std::fs::create_dir_all(&conf_dir)?;
    std::fs::write(
        conf_dir.join("btop.conf"),
        "update_ms = 1000\nshown_boxes = \"cpu mem net proc\"\n",
    )?;
    let argv = vec![
        "env".into(),
        "LANG=C.UTF-8".into(),
        format!("HOME={}", home.display()),
        format!("XDG_CONFIG_HOME={}", home.join(".config").display()),
        o.btop_bin.display().to_string(),
    ];
    Ok(Program {
        label: "btop",
        comm: "btop",
        argv,
        stages: vec![Stage(
            "full frame (cpu, mem, net, proc boxes with data)",
            |s: &str| {
                ["cpu", "mem", "net", "proc"].iter().all(|b| s.contains(b))
                    && s.contains("Total:")
                    && s.contains("Byte/s")
                    && s.contains("Pid:")
                    // The refresh btop shows in its cpu box: proves it read our btop.conf.
                    && s.contains("1000ms")
            },
        )],
    })
}

struct FrameTimes {
    /// Per stage: time from launch (a stage first seen together with a later one gets its time).
    stages: Vec<Duration>,
    /// Captures after the first one, and the time from the first capture to the last.
    intervals: u64,
    polling: Duration,
}

/// The screen's non-blank lines, for error messages.
fn non_blank(screen: &str) -> String {
    screen
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Poll session `name` until the program's last stage shows; the time of each stage.
fn wait_frames(tmux: &mut Tmux, name: &str, p: &Program, t0: Instant) -> Result<FrameTimes> {
    let mut times: Vec<Option<Duration>> = vec![None; p.stages.len()];
    let mut polls = 0u64;
    let mut first_capture = None;
    loop {
        check_interrupted()?;
        let screen = tmux.capture(name)?;
        let now = t0.elapsed();
        let first_capture = *first_capture.get_or_insert_with(Instant::now);
        polls += 1;
        for (i, Stage(_, seen)) in p.stages.iter().enumerate() {
            if times[i].is_none() && seen(&screen) {
                times[i] = Some(now);
            }
        }
        if times.last().is_some_and(|t| t.is_some()) {
            let last_t = times.last().unwrap().unwrap();
            return Ok(FrameTimes {
                stages: times.into_iter().map(|t| t.unwrap_or(last_t)).collect(),
                intervals: polls - 1,
                polling: first_capture.elapsed(),
            });
        }
        if polls % 10 == 0 {
            if let Some(how) = tmux.dead(name)? {
                bail!(
                    "{} exited ({how}) before its first full frame; the pane shows:\n{}",
                    p.label,
                    non_blank(&screen)
                );
            }
        }
        if t0.elapsed() > FRAME_TIMEOUT {
            bail!(
                "no full frame from {} within {FRAME_TIMEOUT:?}; the pane shows:\n{}",
                p.label,
                non_blank(&screen)
            );
        }
        std::thread::sleep(POLL_SLEEP);
    }
}

// ---------------------------------------------------------------------------------------------
// Part 1: first frame

fn first_frame(o: &Opts, tmux: &mut Tmux, programs: &[Program], root: &Path) -> Result<()> {
    println!(
        "== first frame: {} launches of each, one at a time, {WIDTH}x{HEIGHT} ==",
        o.runs
    );
    // times[program][stage][run]
    let mut times: Vec<Vec<Vec<Duration>>> = programs
        .iter()
        .map(|p| vec![Vec::new(); p.stages.len()])
        .collect();
    let (mut intervals, mut polling) = (0u64, Duration::ZERO);
    for run in 0..o.runs {
        for (pi, p) in programs.iter().enumerate() {
            check_interrupted()?;
            let name = format!("ff-{}-{run}", p.comm);
            let t0 = tmux.launch(&name, &p.argv)?;
            let res = wait_frames(tmux, &name, p, t0);
            let pid = tmux.pane_pid(&name, p.comm).ok();
            if res.is_ok() && o.keep {
                std::fs::write(root.join(format!("{name}.txt")), tmux.capture(&name)?)?;
            }
            tmux.kill(&name, pid)?;
            let f = res?;
            intervals += f.intervals;
            polling += f.polling;
            for (si, t) in f.stages.into_iter().enumerate() {
                times[pi][si].push(t);
            }
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{:<12} {:<52} {:>8} {:>8} {:>8}",
        "program", "stage (ms from launch)", "min", "median", "max"
    );
    let mut medians = Vec::new();
    for (pi, p) in programs.iter().enumerate() {
        for (si, Stage(stage, _)) in p.stages.iter().enumerate() {
            let mut v = times[pi][si].clone();
            v.sort();
            let med = if v.len() % 2 == 1 {
                v[v.len() / 2]
            } else {
                (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2
            };
            println!(
                "{:<12} {:<52} {:>8.1} {:>8.1} {:>8.1}",
                p.label,
                stage,
                ms(v[0]),
                ms(med),
                ms(v[v.len() - 1])
            );
            if si == p.stages.len() - 1 {
                medians.push((p.label, med));
            }
        }
    }
    println!(
        "resolution: the panes were captured every {:.1} ms on average ({} ms sleep + one \
         capture-pane round trip through a tmux control client)",
        ms(polling) / intervals.max(1) as f64,
        POLL_SLEEP.as_millis()
    );
    if let Some((_, med)) = medians.iter().find(|(l, _)| *l == "aether tui") {
        println!(
            "goal: aether first full frame (median) < 150 ms: {}",
            if *med < Duration::from_millis(150) {
                "met"
            } else {
                "NOT met"
            }
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Part 2: CPU and memory side by side

fn side_by_side(
    o: &Opts,
    tmux: &mut Tmux,
    programs: &[Program],
    cluster: Option<&[nodes::AetherNode; 3]>,
) -> Result<()> {
    println!(
        "== cpu and memory: {} side by side for {} s, 1 s refresh, {WIDTH}x{HEIGHT} ==",
        programs
            .iter()
            .map(|p| p.label)
            .collect::<Vec<_>>()
            .join(" and "),
        o.secs
    );
    let names: Vec<String> = programs.iter().map(|p| format!("run-{}", p.comm)).collect();
    let t0s: Vec<Instant> = programs
        .iter()
        .zip(&names)
        .map(|(p, n)| tmux.launch(n, &p.argv))
        .collect::<Result<_>>()?;
    let mut pids = Vec::new();
    for ((p, n), t0) in programs.iter().zip(&names).zip(&t0s) {
        wait_frames(tmux, n, p, *t0)?;
        pids.push(tmux.pane_pid(n, p.comm)?);
    }
    // Settle: start-up work (first collections, first snapshots) passes.
    for _ in 0..20 {
        check_interrupted()?;
        std::thread::sleep(Duration::from_millis(100));
    }
    let node_pids: Vec<u32> = cluster
        .into_iter()
        .flatten()
        .map(|n| n.proc.pid())
        .collect();
    let load0 = load_avg();
    let cpu0: Vec<Duration> = pids.iter().map(|p| cpu_time(&[*p])).collect();
    let node_cpu0: Vec<Duration> = node_pids.iter().map(|p| cpu_time(&[*p])).collect();
    let mut rss = vec![0u64; pids.len()];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(o.secs) {
        check_interrupted()?;
        let t = Instant::now();
        for ((r, pid), p) in rss.iter_mut().zip(&pids).zip(programs) {
            if !alive(*pid) {
                bail!("{} (pid {pid}) exited during the run", p.label);
            }
            *r = (*r).max(status_bytes(*pid, "VmRSS").unwrap_or(0));
        }
        std::thread::sleep(Duration::from_secs(1).saturating_sub(t.elapsed()));
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu: Vec<f64> = pids
        .iter()
        .zip(&cpu0)
        .map(|(p, c0)| (cpu_time(&[*p]) - *c0).as_secs_f64())
        .collect();
    let total: Vec<f64> = pids.iter().map(|p| cpu_time(&[*p]).as_secs_f64()).collect();
    let hwm: Vec<u64> = pids
        .iter()
        .map(|p| status_bytes(*p, "VmHWM").unwrap_or(0))
        .collect();
    let node_cpu: Vec<f64> = node_pids
        .iter()
        .zip(&node_cpu0)
        .map(|(p, c0)| (cpu_time(&[*p]) - *c0).as_secs_f64())
        .collect();
    println!(
        "{:<12} {:>8} {:>8} {:>14} {:>11} {:>20}",
        "program", "cpu s", "cpu %", "peak RSS MiB", "VmHWM MiB", "cpu s since launch"
    );
    for (i, p) in programs.iter().enumerate() {
        println!(
            "{:<12} {:>8.2} {:>7.2}% {:>14.1} {:>11.1} {:>20.2}",
            p.label,
            cpu[i],
            cpu[i] / secs * 100.0,
            mib(rss[i]),
            mib(hwm[i]),
            total[i]
        );
    }
    println!(
        "window {secs:.1} s (after both drew a full frame + 2 s); load average {load0} at the \
         start, {} at the end",
        load_avg()
    );
    if let [n1, n2, n3] = node_cpu[..] {
        println!(
            "nodes over the window: n1 (serves the console) {:.2} cpu s, n2 {:.2}, n3 {:.2}",
            n1, n2, n3
        );
    }
    if programs.len() == 2 {
        println!(
            "ratio aether tui / btop: cpu {:.2} ({:.2} s vs {:.2} s), peak RSS {:.2} \
             ({:.1} MiB vs {:.1} MiB), VmHWM {:.2}",
            cpu[0] / cpu[1].max(1e-9),
            cpu[0],
            cpu[1],
            rss[0] as f64 / rss[1].max(1) as f64,
            mib(rss[0]),
            mib(rss[1]),
            hwm[0] as f64 / hwm[1].max(1) as f64
        );
        println!(
            "goal: aether tui cpu <= half of btop's: {}",
            if cpu[0] <= cpu[1] / 2.0 {
                "met"
            } else {
                "NOT met"
            }
        );
    }
    for (n, pid) in names.iter().zip(&pids) {
        tmux.kill(n, Some(*pid))?;
    }
    Ok(())
}

fn run(o: &Opts, root: &Path) -> Result<()> {
    let cluster = if o.aether {
        println!("starting a 3-node aether cluster on 127.0.0.1 …");
        Some(nodes::start_three(&o.aether_bin, root)?)
    } else {
        None
    };
    check_interrupted()?;
    let mut programs = Vec::new();
    if let Some(c) = &cluster {
        programs.push(aether_program(o, &c[0].dir, root));
    }
    if o.btop {
        programs.push(btop_program(o, root)?);
    }
    let mut tmux = Tmux::start(&o.tmux_bin, root)?;
    if o.runs > 0 {
        first_frame(o, &mut tmux, &programs, root)?;
    }
    if o.secs > 0 {
        side_by_side(o, &mut tmux, &programs, cluster.as_ref())?;
    }
    drop(tmux);
    drop(cluster);
    Ok(())
}

fn main() {
    let o = nodes::opts_or_exit(parse_opts());
    install_signal_handlers();
    nodes::in_temp_dir("tui", o.keep, |root| run(&o, root));
}
