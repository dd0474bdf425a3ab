//! The binary on CPUs it was and was not built for, under qemu's user-mode emulator (Debian
//! `qemu-user`; `.ci/run` installs it): below its baseline it refuses with a message, never
//! "Illegal instruction".

use std::process::Command;

const AETHER: &str = env!("CARGO_BIN_EXE_aether");

fn qemu() -> Option<&'static str> {
    let ok = Command::new("qemu-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Some("qemu-x86_64")
    } else {
        eprintln!("skipped: qemu-x86_64 is not installed (apt-get install qemu-user)");
        None
    }
}

#[test]
#[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
fn a_v3_build_refuses_an_older_cpu_with_a_message_and_runs_on_a_newer_one() {
    let Some(qemu) = qemu() else { return };
    // Nehalem (2008): SSE4.2, no AVX.
    let old = Command::new(qemu)
        .args(["-cpu", "Nehalem", AETHER, "version"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&old.stderr);
    assert_eq!(old.status.code(), Some(1), "stderr: {err}");
    assert!(
        err.starts_with("error: this aether is built for x86-64-v3 CPUs")
            && err.contains("aether-x86_64-baseline"),
        "{err}"
    );
    assert!(old.stdout.is_empty());
    // Sandy Bridge (2011) has AVX but not AVX2: refused too.
    let avx1 = Command::new(qemu)
        .args(["-cpu", "SandyBridge", AETHER, "version"])
        .output()
        .unwrap();
    assert_eq!(
        avx1.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&avx1.stderr)
    );
    let new = Command::new(qemu)
        .args(["-cpu", "max", AETHER, "version"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&new.stdout);
    assert!(
        new.status.success(),
        "{}",
        String::from_utf8_lossy(&new.stderr)
    );
    assert!(
        out.contains("cpu:     built for x86-64-v3") && out.contains("this cpu has them all"),
        "{out}"
    );
}

#[test]
fn version_says_what_the_binary_is() {
    let out = Command::new(AETHER)
        .args(["version", "--output", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["target"].as_str().unwrap().contains("linux"), "{v}");
    assert_ne!(v["commit"], "", "{v}");
    assert_eq!(v["cpu_missing"], serde_json::json!([]), "{v}");
}
