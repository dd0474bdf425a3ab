//! A real terminal for the console: a private tmux server (its own socket) with one session
//! of a given size running one command; keys in, screen text out.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::wait_for;

/// Whether tmux can run here.
pub fn available() -> Result<(), String> {
    match Command::new("tmux").arg("-V").output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "'tmux -V' failed: {}",
            String::from_utf8_lossy(&o.stderr)
        )),
        Err(e) => Err(format!("cannot run tmux: {e}")),
    }
}

/// One tmux server with one session; killed on drop.
pub struct Tmux {
    socket: PathBuf,
    /// Where the command's exit status is written when it ends.
    exit: PathBuf,
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl Tmux {
    /// Run `argv` in a `w`×`h` session. The pane stays open after the command ends (its exit
    /// status goes to a file), so the screen it left can still be read.
    pub fn start(dir: &Path, name: &str, argv: &[String], w: u16, h: u16) -> Tmux {
        let socket = dir.join(format!("tmux-{name}.sock"));
        let exit = dir.join(format!("tmux-{name}.exit"));
        let cmd = argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ");
        let script = format!(
            "{cmd}; echo $? > {}; exec cat",
            quote(&exit.display().to_string())
        );
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args(["-f", "/dev/null", "new-session", "-d", "-s", "t"])
            .args(["-x", &w.to_string(), "-y", &h.to_string()])
            .args(["sh", "-c", &script])
            .env_remove("TMUX")
            .env("TERM", "xterm-256color")
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmux { socket, exit }
    }

    fn tmux(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// The screen as text.
    pub fn capture(&self) -> String {
        let o = self.tmux(&["capture-pane", "-p", "-t", "t"]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Send keys in tmux's names (`q`, `Enter`, `Escape`, `C-c`).
    pub fn keys(&self, keys: &[&str]) {
        for k in keys {
            let o = self.tmux(&["send-keys", "-t", "t", k]);
            assert!(
                o.status.success(),
                "send-keys {k}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }

    /// Type text literally.
    pub fn type_text(&self, text: &str) {
        let o = self.tmux(&["send-keys", "-t", "t", "-l", text]);
        assert!(
            o.status.success(),
            "send-keys -l: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// Wait until the screen satisfies `ok`; the screen then. Panics with the last screen.
    pub fn wait_screen(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_for(what, Duration::from_secs(30), || {
                last = self.capture();
                ok(&last).then(|| last.clone())
            })
        }));
        match found {
            Ok(s) => s,
            Err(_) => panic!("timed out after 30 s waiting for: {what}; the screen:\n{last}"),
        }
    }

    /// Wait for the command to end; its exit status.
    pub fn wait_exit(&self) -> i32 {
        wait_for("the console to exit", Duration::from_secs(20), || {
            std::fs::read_to_string(&self.exit)
                .ok()
                .and_then(|s| s.trim().parse().ok())
        })
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}
