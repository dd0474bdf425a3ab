//! A private OpenSSH server on 127.0.0.1 for the console's SSH test: its own host key, one
//! client key, a free port, no PAM and no passwords; stopped on drop. `start` says why when
//! this machine cannot run one (no sshd, not allowed to bind, …).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Sshd {
    child: Child,
    port: u16,
    key: PathBuf,
    log: PathBuf,
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let o = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok(())
}

impl Sshd {
    pub fn start(dir: &Path) -> Result<Sshd, String> {
        let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or("no sshd (Debian package openssh-server)")?;
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        // sshd insists on its privilege-separation directory.
        std::fs::create_dir_all("/run/sshd")
            .map_err(|e| format!("cannot create /run/sshd: {e}"))?;
        let host_key = dir.join("host_key");
        let key = dir.join("client_key");
        for k in [&host_key, &key] {
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(k))?;
        }
        let authorized = dir.join("authorized_keys");
        std::fs::copy(key.with_extension("pub"), &authorized).map_err(|e| e.to_string())?;
        let user = user()?;
        let port = crate::harness::free_port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PidFile {}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nAllowUsers {user}\n\
                 PrintMotd no\nPrintLastLog no\nAcceptEnv TERM\n",
                host_key.display(),
                authorized.display(),
                dir.join("sshd.pid").display(),
            ),
        )
        .map_err(|e| e.to_string())?;
        let log = dir.join("sshd.log");
        let child = Command::new(&sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", sshd.display()))?;
        let mut s = Sshd {
            child,
            port,
            key,
            log,
        };
        // Up when a real login runs a command.
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = s.child.try_wait() {
                return Err(format!("sshd exited with {st}: {}", s.log_text()));
            }
            let probe = Command::new("ssh")
                .args(s.ssh_args())
                .arg("true")
                .stdin(Stdio::null())
                .output();
            if probe.is_ok_and(|o| o.status.success()) {
                return Ok(s);
            }
            if start.elapsed() > Duration::from_secs(15) {
                return Err(format!(
                    "no ssh login to 127.0.0.1:{port} within 15 s; sshd log: {}",
                    s.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn ssh_args(&self) -> Vec<String> {
        let user = user().unwrap_or_else(|_| "root".into());
        vec![
            // Neither the user's ssh config nor an agent's keys get a say.
            "-F".into(),
            "/dev/null".into(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-i".into(),
            self.key.display().to_string(),
            "-p".into(),
            self.port.to_string(),
            "-o".into(),
            "StrictHostKeyChecking=no".into(),
            "-o".into(),
            "UserKnownHostsFile=/dev/null".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
            format!("{user}@127.0.0.1"),
        ]
    }

    /// `ssh -tt … REMOTE`: a terminal on the far side running `remote` (a shell command line).
    pub fn ssh_command(&self, remote: &str) -> Vec<String> {
        let mut v = vec!["ssh".to_string(), "-tt".into()];
        v.extend(self.ssh_args());
        v.push(remote.into());
        v
    }
}

/// Who we log in as (`USER` is often unset under CI).
fn user() -> Result<String, String> {
    let o = Command::new("id")
        .arg("-un")
        .output()
        .map_err(|e| format!("cannot run 'id -un': {e}"))?;
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string()).and_then(|u: String| {
        if u.is_empty() {
            Err("'id -un' printed no user name".to_string())
        } else {
            Ok(u)
        }
    })
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
