//! Build facts for `aether version`: the commit (from `AETHER_COMMIT`, else git, else
//! "unknown") and the target triple.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=AETHER_COMMIT");
    let commit = std::env::var("AETHER_COMMIT")
        .ok()
        .filter(|c| !c.is_empty());
    let commit = commit.or_else(|| {
        // Rebuild when HEAD moves: HEAD itself and the refs it may point at.
        for p in [
            git(&["rev-parse", "--git-path", "HEAD"]),
            git(&["rev-parse", "--git-path", "refs/heads"]),
            git(&["rev-parse", "--git-path", "packed-refs"]),
        ]
        .into_iter()
        .flatten()
        {
            if Path::new(&p).exists() {
                println!("cargo:rerun-if-changed={p}");
            }
        }
        git(&["rev-parse", "--short=12", "HEAD"])
    });
    println!(
        "cargo:rustc-env=AETHER_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    println!(
        "cargo:rustc-env=AETHER_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
}
