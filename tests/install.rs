//! `install.sh`, run for real with `sh`: against a release site served on loopback
//! (`python3 -m http.server`), into a temp `AETHER_ROOT`, with `systemctl`, `useradd`, `userdel`,
//! `getent` and `uname` replaced by stubs that log their arguments. Nothing on the host changes.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_aether");
/// The artifacts a release holds.
const ARTIFACTS: &[&str] = &["aether-x86_64", "aether-x86_64-baseline", "aether-aarch64"];
/// A CPU with the x86-64-v3 flags the optimised build needs.
const V3_FLAGS: &str = "flags\t\t: fpu vme de pse tsc msr sse sse2 ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand abm bmi1 avx2 bmi2\n";
/// A join token in the shape `aether token create` prints.
const TOKEN: &str = "AETHER1.00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff.0123456789ab.0123456789abcdef0123456789abcdef01234567";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("install.sh")
}

fn sha256_hex(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("open '{}': {e}", path.display()));
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).unwrap();
    hex::encode(h.finalize())
}

/// The built binary's sha256, computed once per test process (it is large).
fn bin_sha() -> &'static str {
    static SHA: OnceLock<String> = OnceLock::new();
    SHA.get_or_init(|| sha256_hex(Path::new(BIN)))
}

/// The same content at `to`: a hard link where the file system allows, else a copy.
fn link_or_copy(from: &Path, to: &Path) {
    if fs::hard_link(from, to).is_err() {
        fs::copy(from, to).unwrap_or_else(|e| panic!("copy to '{}': {e}", to.display()));
    }
}

/// Polls `f` until it returns true, panicking with `what` after `timeout`.
fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A release site in the layout scripts/release.sh produces, served over HTTP on loopback.
struct Site {
    dir: tempfile::TempDir,
    server: Child,
    port: u16,
    log: PathBuf,
}

impl Site {
    /// Version 0.1.0, the latest, whose artifacts are all the built binary.
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("site");
        fs::create_dir(&root).unwrap();
        let log = dir.path().join("server.log");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .arg("--directory")
            .arg(&root)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("python3 serves the release site: install python3");
        let mut exited = None;
        wait_until(
            &format!("python3 http.server to answer on 127.0.0.1:{port}"),
            Duration::from_secs(30),
            || {
                exited = server.try_wait().unwrap();
                exited.is_some() || TcpStream::connect(("127.0.0.1", port)).is_ok()
            },
        );
        if let Some(status) = exited {
            panic!(
                "python3 http.server exited ({status}): {}",
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
        let site = Site {
            dir,
            server,
            port,
            log,
        };
        site.publish("0.1.0", None);
        site.set_latest("0.1.0");
        site
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("site")
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Publishes `version`: every artifact is the built binary, with `appended` bytes after it
    /// when given (an ELF file still runs with bytes appended). Returns the artifacts' sha256.
    fn publish(&self, version: &str, appended: Option<&[u8]>) -> String {
        let dir = self.root().join(version);
        fs::create_dir(&dir).unwrap();
        let first = dir.join(ARTIFACTS[0]);
        let sha = match appended {
            None => {
                link_or_copy(Path::new(BIN), &first);
                bin_sha().to_string()
            }
            Some(bytes) => {
                fs::copy(BIN, &first).unwrap();
                let mut f = fs::OpenOptions::new().append(true).open(&first).unwrap();
                f.write_all(bytes).unwrap();
                drop(f);
                sha256_hex(&first)
            }
        };
        let mut sums = String::new();
        for (i, a) in ARTIFACTS.iter().enumerate() {
            if i > 0 {
                link_or_copy(&first, &dir.join(a));
            }
            sums.push_str(&format!("{sha}  {a}\n"));
        }
        fs::write(dir.join("SHA256SUMS"), sums).unwrap();
        sha
    }

    fn set_latest(&self, version: &str) {
        fs::write(self.root().join("latest"), format!("{version}\n")).unwrap();
    }

    /// The request lines the server logged.
    fn requests(&self) -> String {
        fs::read_to_string(&self.log).unwrap()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// What one run of a script did.
struct Run {
    what: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn output(&self) -> String {
        format!(
            "{} exited {:?}\n--- stdout\n{}--- stderr\n{}",
            self.what, self.code, self.stdout, self.stderr
        )
    }

    fn ok(self) -> Run {
        assert_eq!(self.code, Some(0), "{}", self.output());
        self
    }

    fn refused(self) -> Run {
        assert!(
            matches!(self.code, Some(c) if c != 0),
            "expected a refusal: {}",
            self.output()
        );
        self
    }

    fn says(&self, text: &str) -> &Run {
        assert!(
            self.stdout.contains(text) || self.stderr.contains(text),
            "expected '{text}' in the output: {}",
            self.output()
        );
        self
    }

    fn never_says(&self, text: &str) -> &Run {
        assert!(
            !self.stdout.contains(text) && !self.stderr.contains(text),
            "did not expect '{text}' in the output: {}",
            self.output()
        );
        self
    }
}

/// A host to install on: `root/` is AETHER_ROOT, `stub/` comes first on PATH, `calls.log` holds
/// the stubs' argv, `users/` the users useradd made, `tmp/` is TMPDIR.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    /// A host where systemd runs (AETHER_ROOT/run/systemd/system exists).
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        for d in ["root/run/systemd/system", "stub", "users", "tmp"] {
            fs::create_dir_all(p.join(d)).unwrap();
        }
        fs::write(p.join("calls.log"), "").unwrap();
        fs::write(p.join("cpuinfo"), V3_FLAGS).unwrap();
        let log = p.join("calls.log");
        let users = p.join("users");
        let (log, users) = (log.display(), users.display());
        let stubs = [
            ("systemctl", format!("printf '%s\\n' \"systemctl $*\" >>'{log}'\n")),
            (
                "useradd",
                format!(
                    "printf '%s\\n' \"useradd $*\" >>'{log}'\nfor u; do :; done\n: >'{users}'/\"$u\"\n"
                ),
            ),
            (
                "userdel",
                format!("printf '%s\\n' \"userdel $*\" >>'{log}'\nrm -f '{users}'/\"$1\"\n"),
            ),
            (
                "getent",
                format!(
                    "[ \"$1\" = passwd ] && [ -e '{users}'/\"$2\" ] || exit 2\necho \"$2:x:999:999::/nonexistent:/usr/sbin/nologin\"\n"
                ),
            ),
            (
                "uname",
                "case $1 in -s) echo \"${AETHER_TEST_OS:-Linux}\" ;; -m) echo \"${AETHER_TEST_ARCH:-x86_64}\" ;; *) exit 1 ;; esac\n".to_string(),
            ),
        ];
        for (name, body) in stubs {
            let path = p.join("stub").join(name);
            fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
        Host { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// Runs `sh <script> args` with AETHER_ROOT and the stubs, no AETHER_ variable of ours, the
    /// fetched site (if any) and `env`; checks that the script left nothing in TMPDIR.
    fn sh(&self, script: &Path, args: &[&str], site: Option<&Site>, env: &[(&str, &str)]) -> Run {
        let p = self.dir.path();
        let mut cmd = Command::new("sh");
        cmd.arg(script).args(args).current_dir(p);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AETHER_") {
                cmd.env_remove(&k);
            }
        }
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{}:{path}", p.join("stub").display()))
            .env("TMPDIR", p.join("tmp"))
            .env("AETHER_ROOT", self.root())
            .env("AETHER_CPUINFO", p.join("cpuinfo"));
        if let Some(site) = site {
            cmd.env("AETHER_BASE_URL", site.url());
        }
        cmd.envs(env.iter().copied());
        let (out, err) = (p.join("stdout"), p.join("stderr"));
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        let what = format!("sh {} {}", script.display(), args.join(" "));
        let mut status = None;
        wait_until(&what, Duration::from_secs(300), || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        let run = Run {
            what,
            code: status.unwrap().code(),
            stdout: fs::read_to_string(&out).unwrap(),
            stderr: fs::read_to_string(&err).unwrap(),
        };
        let left: Vec<_> = fs::read_dir(p.join("tmp")).unwrap().collect();
        assert!(
            left.is_empty(),
            "the script left {left:?} in TMPDIR: {}",
            run.output()
        );
        run
    }

    fn install(&self, site: Option<&Site>, env: &[(&str, &str)]) -> Run {
        self.sh(&script(), &[], site, env)
    }

    /// Installs the built binary as a local file (AETHER_BINARY): no site needed.
    fn install_local(&self, env: &[(&str, &str)]) -> Run {
        let mut all = vec![("AETHER_BINARY", BIN)];
        all.extend_from_slice(env);
        self.install(None, &all)
    }

    fn uninstall(&self, args: &[&str]) -> Run {
        self.sh(
            &self.path("usr/local/bin/aether-uninstall.sh"),
            args,
            None,
            &[],
        )
    }

    /// The stubs' calls so far, one per line.
    fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.dir.path().join("calls.log"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Every path under the root with its kind, mode, inode, size and mtime (and content for
    /// small files): two equal snapshots mean nothing was written.
    fn tree(&self) -> BTreeMap<PathBuf, String> {
        fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
            for e in fs::read_dir(dir).unwrap() {
                let path = e.unwrap().path();
                let m = fs::symlink_metadata(&path).unwrap();
                let mut desc = format!(
                    "mode {:o} ino {} len {} mtime {}.{}",
                    m.mode(),
                    m.ino(),
                    m.len(),
                    m.mtime(),
                    m.mtime_nsec()
                );
                if m.is_file() && m.len() < 1 << 20 {
                    desc.push_str(&format!(" {:?}", fs::read(&path).unwrap()));
                }
                out.insert(path.strip_prefix(root).unwrap().to_path_buf(), desc);
                if m.is_dir() {
                    walk(root, &path, out);
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.root(), &self.root(), &mut out);
        out
    }

    fn mode(&self, rel: &str) -> u32 {
        fs::metadata(self.path(rel))
            .unwrap_or_else(|e| panic!("'{rel}': {e}"))
            .permissions()
            .mode()
            & 0o7777
    }

    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("'{rel}': {e}"))
    }

    /// The installed binary answers `--version`.
    fn assert_binary_runs(&self) {
        let out = Command::new(self.path("usr/local/bin/aether"))
            .arg("--version")
            .output()
            .unwrap();
        assert!(out.status.success(), "installed aether --version: {out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("aether "));
    }
}

#[test]
fn installs_then_changes_nothing_then_upgrades() {
    let site = Site::new();
    let host = Host::new();

    let run = host.install(Some(&site), &[("AETHER_NAME", "n1")]).ok();
    run.says("installed aether 0.1.0 as");
    host.assert_binary_runs();
    assert_eq!(host.mode("usr/local/bin/aether"), 0o755);
    assert_eq!(sha256_hex(&host.path("usr/local/bin/aether")), bin_sha());
    assert_eq!(host.mode("etc/aether"), 0o700);
    assert_eq!(host.mode("etc/aether/aether.env"), 0o600);
    let env = host.read("etc/aether/aether.env");
    for line in [
        "AETHER_DATA_DIR=/var/lib/aether",
        "AETHER_DEPLOY_USER=aether",
        "AETHER_NAME=n1",
    ] {
        assert!(
            env.lines().any(|l| l == line),
            "'{line}' in the env file:\n{env}"
        );
    }
    assert!(
        !env.contains("AETHER_JOIN") && !env.contains("AETHER_TOKEN"),
        "{env}"
    );
    let unit = host.read("etc/systemd/system/aether.service");
    for line in [
        "Type=notify",
        "EnvironmentFile=/etc/aether/aether.env",
        "ExecStart=/usr/local/bin/aether node",
        "Delegate=yes",
        "WantedBy=multi-user.target",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "'{line}' in the unit:\n{unit}"
        );
    }
    assert_eq!(host.mode("etc/systemd/system/aether.service"), 0o644);
    assert_eq!(host.mode("usr/local/bin/aether-uninstall.sh"), 0o755);
    assert_eq!(host.mode("var/lib/aether"), 0o700);
    assert!(
        host.read("usr/local/share/man/man1/aether.1")
            .contains(".TH AETHER 1")
    );
    assert!(host.path("usr/local/share/man/man1/aether-node.1").exists());
    let calls = host.calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(
        calls[0].starts_with("useradd --system --no-create-home --shell ")
            && calls[0].ends_with("nologin aether"),
        "{calls:?}"
    );
    assert_eq!(
        calls[1..],
        ["systemctl daemon-reload", "systemctl enable --now aether"]
    );

    // The same inputs again: nothing is written, nothing restarted, the binary not downloaded.
    let before = host.tree();
    let downloads = site.requests().matches("/0.1.0/aether-x86_64 ").count();
    let run = host.install(Some(&site), &[("AETHER_NAME", "n1")]).ok();
    run.says("aether 0.1.0 is already installed; nothing changed");
    assert_eq!(host.tree(), before);
    assert_eq!(host.calls(), calls);
    assert_eq!(
        site.requests().matches("/0.1.0/aether-x86_64 ").count(),
        downloads
    );

    // A new version: the binary is replaced and the service restarted; AETHER_NAME, not given
    // this time, stays as it was.
    let sha2 = site.publish("0.2.0", Some(b"\naether test build 0.2.0\n"));
    site.set_latest("0.2.0");
    let run = host.install(Some(&site), &[]).ok();
    run.says("installed aether 0.2.0 as");
    assert_eq!(sha256_hex(&host.path("usr/local/bin/aether")), sha2);
    host.assert_binary_runs();
    assert_eq!(host.calls()[calls.len()..], ["systemctl restart aether"]);
    assert!(
        host.read("etc/aether/aether.env")
            .lines()
            .any(|l| l == "AETHER_NAME=n1")
    );
    let left: Vec<_> = fs::read_dir(host.path("usr/local/bin"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "only aether and its uninstaller: {left:?}");
}

#[test]
fn a_wrong_checksum_is_refused_and_changes_nothing() {
    let site = Site::new();
    let host = Host::new();
    host.install(Some(&site), &[]).ok();
    let calls = host.calls();

    let real = site.publish("0.2.0", Some(b"tampered"));
    let wrong = "0".repeat(64);
    fs::write(
        site.root().join("0.2.0/SHA256SUMS"),
        ARTIFACTS
            .iter()
            .map(|a| format!("{wrong}  {a}\n"))
            .collect::<String>(),
    )
    .unwrap();
    site.set_latest("0.2.0");
    let before = host.tree();
    let run = host.install(Some(&site), &[]).refused();
    run.says("checksum mismatch")
        .says(&wrong)
        .says(&real)
        .says(&format!("{}/0.2.0/aether-x86_64", site.url()))
        .says("nothing was changed");
    assert_eq!(host.tree(), before);
    assert_eq!(host.calls(), calls);

    // A pinned AETHER_SHA256 that the local file does not have: refused the same way.
    let run = host
        .install_local(&[("AETHER_SHA256", &"f".repeat(64))])
        .refused();
    run.says("checksum mismatch").says(bin_sha());
    assert_eq!(host.tree(), before);
}

#[test]
fn a_dry_run_says_what_it_would_do_and_changes_nothing() {
    let site = Site::new();
    let host = Host::new();
    let token_file = host.dir.path().join("token");
    fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let before = host.tree();
    let run = host
        .install(
            Some(&site),
            &[
                ("AETHER_DRY_RUN", "1"),
                ("AETHER_JOIN", "10.0.0.1:7420"),
                ("AETHER_TOKEN_FILE", token_file.to_str().unwrap()),
            ],
        )
        .ok();
    run.says("would download")
        .says("would install")
        .says("would write")
        .says("AETHER_JOIN=10.0.0.1:7420")
        .says("AETHER_TOKEN=<redacted>")
        .says("would run: useradd")
        .says("would run: systemctl enable --now aether")
        .never_says(TOKEN);
    assert_eq!(host.tree(), before);
    assert_eq!(host.calls(), Vec::<String>::new());
    assert!(
        !site.requests().contains("/0.1.0/aether-x86_64 "),
        "a dry run does not download the binary:\n{}",
        site.requests()
    );
}

#[test]
fn joining_needs_a_token_which_stays_out_of_the_output() {
    let host = Host::new();
    let token_file = host.dir.path().join("token");
    fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let token_file = token_file.to_str().unwrap();
    let before = host.tree();

    host.install_local(&[("AETHER_JOIN", "10.0.0.1:7420")])
        .refused()
        .says("AETHER_JOIN='10.0.0.1:7420' needs a join token")
        .says("AETHER_TOKEN_FILE");
    host.install_local(&[("AETHER_TOKEN_FILE", token_file)])
        .refused()
        .says("without AETHER_JOIN")
        .never_says(TOKEN);
    host.install_local(&[("AETHER_NAME", "a name")])
        .refused()
        .says("AETHER_NAME='a name'");
    assert_eq!(host.tree(), before);
    assert_eq!(host.calls(), Vec::<String>::new());

    let run = host
        .install_local(&[
            ("AETHER_JOIN", "10.0.0.1:7420"),
            ("AETHER_TOKEN_FILE", token_file),
            ("AETHER_ADVERTISE", "10.0.0.2:7420"),
        ])
        .ok();
    run.never_says(TOKEN);
    let env = host.read("etc/aether/aether.env");
    for line in [
        "AETHER_JOIN=10.0.0.1:7420",
        "AETHER_ADVERTISE=10.0.0.2:7420",
        &format!("AETHER_TOKEN={TOKEN}"),
    ] {
        assert!(
            env.lines().any(|l| l == line),
            "'{line}' in the env file:\n{env}"
        );
    }
    assert!(!host.calls().iter().any(|c| c.contains(TOKEN)));

    // A line the operator added survives a changed setting, which reloads and restarts.
    fs::write(
        host.path("etc/aether/aether.env"),
        format!("{env}RUST_LOG=debug\n"),
    )
    .unwrap();
    let calls = host.calls();
    host.install_local(&[("AETHER_NAME", "n2")])
        .ok()
        .never_says(TOKEN);
    let env = host.read("etc/aether/aether.env");
    for line in [
        "AETHER_NAME=n2",
        "RUST_LOG=debug",
        "AETHER_JOIN=10.0.0.1:7420",
    ] {
        assert!(
            env.lines().any(|l| l == line),
            "'{line}' in the env file:\n{env}"
        );
    }
    assert_eq!(
        host.calls()[calls.len()..],
        ["systemctl daemon-reload", "systemctl restart aether"]
    );
}

#[test]
fn a_cpu_without_avx2_gets_the_baseline_build() {
    let site = Site::new();
    let host = Host::new();
    fs::write(
        host.dir.path().join("cpuinfo"),
        V3_FLAGS.replace(" avx2", ""),
    )
    .unwrap();
    host.install(Some(&site), &[]).ok().says(
        "this CPU lacks avx2: installing the baseline build (the on-device model runs slower)",
    );
    let requests = site.requests();
    assert!(
        requests.contains("GET /0.1.0/aether-x86_64-baseline "),
        "{requests}"
    );
    assert!(
        !requests.contains("GET /0.1.0/aether-x86_64 "),
        "{requests}"
    );
    host.assert_binary_runs();

    // aarch64 takes its own build; an architecture without one is refused by name.
    let host = Host::new();
    host.install(Some(&site), &[("AETHER_TEST_ARCH", "aarch64")])
        .ok();
    assert!(site.requests().contains("GET /0.1.0/aether-aarch64 "));
    let host = Host::new();
    let before = host.tree();
    host.install(Some(&site), &[("AETHER_TEST_ARCH", "riscv64")])
        .refused()
        .says("unsupported architecture 'riscv64'");
    host.install(Some(&site), &[("AETHER_TEST_OS", "Darwin")])
        .refused()
        .says("Linux only, and this is 'Darwin'");
    assert_eq!(host.tree(), before);
}

#[test]
fn uninstall_keeps_the_data_dir_unless_purged() {
    let host = Host::new();
    host.install_local(&[]).ok();
    fs::write(host.path("var/lib/aether/raft.redb"), "state").unwrap();
    let calls = host.calls().len();

    let run = host.uninstall(&[]).ok();
    run.says(&format!(
        "kept the data dir {}",
        host.path("var/lib/aether").display()
    ));
    for gone in [
        "usr/local/bin/aether",
        "usr/local/bin/aether-uninstall.sh",
        "etc/systemd/system/aether.service",
        "etc/aether/aether.env",
        "etc/aether",
        "usr/local/share/man/man1/aether.1",
        "usr/local/share/man/man1/aether-node.1",
    ] {
        assert!(!host.path(gone).exists(), "'{gone}' is still there");
    }
    assert_eq!(host.read("var/lib/aether/raft.redb"), "state");
    assert_eq!(
        host.calls()[calls..],
        ["systemctl disable --now aether", "systemctl daemon-reload"]
    );

    // Installed again, then purged through install.sh --uninstall --purge: the data dir and
    // the user go too.
    host.install_local(&[]).ok();
    let calls = host.calls().len();
    host.sh(&script(), &["--uninstall", "--purge"], None, &[])
        .ok();
    assert!(!host.path("var/lib/aether").exists());
    assert!(!host.path("usr/local/bin/aether").exists());
    assert_eq!(
        host.calls()[calls..],
        [
            "systemctl disable --now aether",
            "systemctl daemon-reload",
            "userdel aether"
        ]
    );
}

#[test]
fn without_systemd_it_says_how_to_run_the_node() {
    let host = Host::new();
    fs::remove_dir_all(host.path("run")).unwrap();
    host.install_local(&[])
        .ok()
        .says("set -a; . /etc/aether/aether.env; set +a; /usr/local/bin/aether node");
    assert!(host.calls().iter().all(|c| !c.starts_with("systemctl")));
    host.assert_binary_runs();
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let Ok(found) = Command::new("systemd-analyze").arg("--version").output() else {
        println!("skipped: systemd-analyze is not installed");
        return;
    };
    assert!(found.status.success());
    let host = Host::new();
    host.install_local(&[]).ok();
    // verify checks that ExecStart's program exists: a copy of the unit points at the binary
    // and env file under AETHER_ROOT. --man=no: the man page aether(1) is not installed here.
    let unit = host.read("etc/systemd/system/aether.service");
    let root = host.root();
    let unit = unit
        .replace(
            "ExecStart=/usr/local/bin/aether",
            &format!("ExecStart={}/usr/local/bin/aether", root.display()),
        )
        .replace(
            "EnvironmentFile=/etc/aether/aether.env",
            &format!("EnvironmentFile={}/etc/aether/aether.env", root.display()),
        );
    let dir = host.dir.path().join("verify");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("aether.service"), unit).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.join("aether.service"))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "systemd-analyze verify: {said}");
    assert!(
        !said.contains("aether.service"),
        "systemd-analyze verify: {said}"
    );
}

#[test]
fn the_scripts_pass_shellcheck() {
    if Command::new("shellcheck")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("skipped: shellcheck is not installed");
        return;
    }
    let host = Host::new();
    host.install_local(&[]).ok();
    for file in [script(), host.path("usr/local/bin/aether-uninstall.sh")] {
        let out = Command::new("shellcheck")
            .args(["-s", "sh"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "shellcheck -s sh {}:\n{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn refusals_name_what_to_do() {
    let host = Host::new();
    let before = host.tree();
    host.sh(&script(), &["--frobnicate"], None, &[])
        .refused()
        .says("unknown argument '--frobnicate'");
    host.install_local(&[("AETHER_DRY_RUN", "maybe")])
        .refused()
        .says("AETHER_DRY_RUN='maybe' is not 1 or 0");
    host.install(None, &[("AETHER_BINARY", "/nonexistent/aether")])
        .refused()
        .says("AETHER_BINARY='/nonexistent/aether' is not a readable file");
    // A release site that is not there.
    host.install(None, &[("AETHER_BASE_URL", "http://127.0.0.1:9/releases")])
        .refused()
        .says("download of 'http://127.0.0.1:9/releases/latest' failed");
    assert_eq!(host.tree(), before);
    assert_eq!(host.calls(), Vec::<String>::new());

    // Without root and without AETHER_ROOT it refuses before it touches anything.
    if unsafe { libc::geteuid() } != 0 {
        host.install_local(&[("AETHER_ROOT", "")])
            .refused()
            .says("run as root: curl -fsSL");
    } else {
        println!("skipped the not-root refusal: the tests run as root");
    }
}
