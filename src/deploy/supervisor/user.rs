//! Who an instance runs as, and with what environment (DESIGN §6, issue 18): an unprivileged
//! user per workload (the slice's `user`, else the node's `deploy.user`), root only where both
//! the blueprint and the node say so, and a clean environment — the blueprint's `env`, the
//! supervisor's variables, a minimal `PATH`, `HOME`, `LANG`, `TMPDIR` and the node's
//! `deploy.pass_env` — never the rest of the daemon's (a join token, a cloud credential).

use std::ffi::{CStr, CString};
use std::path::Path;

use crate::config::DeployConfig;

/// The user an instance's processes switch to (the node runs as root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// What this node's supervisor said of its protections when it started (see
/// [`protections`]).
static PROTECTIONS: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Record how this node isolates its instances (once, when its supervisor starts).
pub fn set_protections(said: String) {
    let _ = PROTECTIONS.set(said);
}

/// How this node isolates its instances, and what is off and why; `None` before its
/// supervisor started (or when workloads are disabled here).
pub fn protections() -> Option<String> {
    PROTECTIONS.get().cloned()
}

/// The `PATH` an instance gets.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `(uid, gid)` of user `name`, if this host has one.
pub fn lookup(name: &str) -> Option<(u32, u32)> {
    let c = CString::new(name).ok()?;
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwnam_r writes into `pw` and `buf`, both ours and large enough (it reports
    // ERANGE otherwise, which is a miss here).
    let rc =
        unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
    (rc == 0 && !out.is_null()).then_some((pw.pw_uid, pw.pw_gid))
}

/// The name of user `uid` (its number when the host has no name for it).
pub fn name_of(uid: u32) -> String {
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: as in `lookup`; the name is copied out before `buf` goes.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
    if rc == 0 && !out.is_null() {
        // SAFETY: getpwuid_r set pw_name to a NUL-terminated string inside `buf`.
        unsafe { CStr::from_ptr(pw.pw_name) }
            .to_string_lossy()
            .into_owned()
    } else {
        uid.to_string()
    }
}

/// The user this node's process runs as (effective).
pub fn node_uid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// Who an instance of a slice asking for `wanted` runs as on a node running as `node_uid`
/// with `cfg`: `Ok(None)` runs it as the node's own user; `Err` says why it does not run here.
pub fn resolve(
    wanted: Option<&str>,
    cfg: &DeployConfig,
    node_uid: u32,
) -> Result<Option<RunAs>, String> {
    if node_uid != 0 {
        let me = name_of(node_uid);
        return match wanted {
            Some(u) if u != me => Err(format!(
                "the slice runs as '{u}', and this node runs as '{me}' (not root), which cannot switch users: run the node as root, or leave 'user' out of the slice"
            )),
            _ => Ok(None),
        };
    }
    // No user named anywhere: the node's own, root.
    let name = wanted
        .or(Some(cfg.user.as_str()).filter(|u| !u.is_empty()))
        .unwrap_or("root");
    let Some((uid, gid)) = lookup(name) else {
        return Err(format!(
            "user '{name}' does not exist on this node: create it (useradd --system {name}), or name another in the slice's 'user' or the node's deploy.user"
        ));
    };
    if uid == 0 && !(wanted == Some(name) && cfg.allow_root) {
        return Err(if cfg.allow_root {
            format!(
                "the slice would run as '{name}' (root) without asking: write user = \"root\" in its blueprint to mean it"
            )
        } else {
            format!(
                "the slice runs as '{name}' (root), which this node does not allow: set deploy.allow_root = true in its config, or run the slice as another user"
            )
        });
    }
    Ok(Some(RunAs {
        name: name.to_string(),
        uid,
        gid,
    }))
}

/// The first directory on the way to `path` (itself included) that user `u` cannot pass
/// through, with its mode (supplementary groups are not looked at).
pub fn blocked_on_the_way(path: &Path, u: &RunAs) -> Option<(std::path::PathBuf, u32)> {
    use std::os::unix::fs::MetadataExt;
    let mut at = std::path::PathBuf::new();
    for c in path.components() {
        at.push(c);
        let Ok(m) = std::fs::metadata(&at) else {
            continue;
        };
        if !m.is_dir() {
            continue;
        }
        let mode = m.mode() & 0o7777;
        let passes = if m.uid() == u.uid {
            mode & 0o100 != 0
        } else if m.gid() == u.gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !passes {
            return Some((at, mode));
        }
    }
    None
}

/// Why `u` cannot reach `work`, when a directory on the way is closed to it.
pub fn unreachable(work: &Path, u: &RunAs) -> Option<String> {
    let (dir, mode) = blocked_on_the_way(work, u)?;
    Some(format!(
        "'{}' (mode {mode:o}) is closed to '{}' on the way to its working dir '{}': chmod o+x '{}', or keep the data dir under a path every user may pass through (as /var/lib is)",
        dir.display(),
        u.name,
        work.display(),
        dir.display()
    ))
}

/// The daemon's variables named in `pass_env` (comma-separated) that it has.
pub fn passed(pass_env: &str) -> Vec<(String, String)> {
    pass_env
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .filter_map(|n| std::env::var(n).ok().map(|v| (n.to_string(), v)))
        .collect()
}

/// An instance's whole environment, in the order later entries win: the base (`PATH`,
/// `HOME` and `TMPDIR` its working dir, `LANG`), the variables passed through, the blueprint's
/// `env`, then the supervisor's own.
pub fn environment(
    work: &Path,
    passed: &[(String, String)],
    blueprint: &std::collections::BTreeMap<String, String>,
    supervisor: &[(String, String)],
) -> Vec<(String, String)> {
    let home = work.display().to_string();
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), PATH.into()),
        ("HOME".into(), home.clone()),
        ("TMPDIR".into(), home),
        ("LANG".into(), "C.UTF-8".into()),
    ];
    let later = passed
        .iter()
        .cloned()
        .chain(blueprint.iter().map(|(k, v)| (k.clone(), v.clone())))
        .chain(supervisor.iter().cloned());
    for (k, v) in later {
        env.retain(|(x, _)| *x != k);
        env.push((k, v));
    }
    env
}

/// Keep `<data-dir>` private from instances running as other users: the dir itself
/// traversable only (an instance reaches its working dir under `work/`, lists nothing), every
/// other entry readable by the node's user alone.
pub fn seal_data_dir(data_dir: &Path) {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let set = |p: &Path, mode: u32| {
        if let Err(e) = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)) {
            tracing::warn!("cannot set mode {mode:o} on '{}': {e}", p.display());
        }
    };
    set(data_dir, 0o711);
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if e.file_name() == "work" {
            set(&path, 0o711);
            continue;
        }
        match e.file_type() {
            Ok(t) if t.is_dir() => set(&path, 0o700),
            Ok(t) if t.is_file() || t.is_socket() => set(&path, 0o600),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(user: &str, allow_root: bool) -> DeployConfig {
        DeployConfig {
            user: user.into(),
            allow_root,
            ..DeployConfig::default()
        }
    }

    #[test]
    fn root_needs_the_blueprint_and_the_node_and_unknown_users_say_so() {
        let nobody = lookup("nobody").expect("this host has 'nobody'");
        assert_eq!(
            resolve(None, &cfg("nobody", false), 0),
            Ok(Some(RunAs {
                name: "nobody".into(),
                uid: nobody.0,
                gid: nobody.1
            }))
        );
        let no = resolve(Some("root"), &cfg("nobody", false), 0).unwrap_err();
        assert!(
            no.contains("which this node does not allow: set deploy.allow_root = true"),
            "{no}"
        );
        assert_eq!(
            resolve(Some("root"), &cfg("nobody", true), 0)
                .unwrap()
                .unwrap()
                .uid,
            0
        );
        let implicit = resolve(None, &cfg("root", true), 0).unwrap_err();
        assert!(
            implicit.contains("write user = \"root\" in its blueprint"),
            "{implicit}"
        );
        let missing = resolve(Some("no-such-user-x"), &cfg("nobody", false), 0).unwrap_err();
        assert!(
            missing.starts_with("user 'no-such-user-x' does not exist on this node"),
            "{missing}"
        );
        // A node that is not root runs instances as itself, and refuses another user.
        assert_eq!(resolve(None, &cfg("nobody", false), 4242), Ok(None));
        let other = resolve(Some("nobody"), &cfg("nobody", false), 4242).unwrap_err();
        assert!(other.contains("cannot switch users"), "{other}");
    }

    #[test]
    fn a_closed_directory_on_the_way_is_named() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("d/work/x");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let someone = RunAs {
            name: "someone".into(),
            uid: 4242,
            gid: 4242,
        };
        let why = unreachable(&work, &someone).unwrap();
        assert!(
            why.starts_with(&format!(
                "'{}' (mode 700) is closed to 'someone'",
                dir.path().display()
            )),
            "{why}"
        );
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        assert_eq!(unreachable(&work, &someone), None);
    }

    #[test]
    fn the_environment_is_built_from_the_allowed_parts_only() {
        let bp = std::collections::BTreeMap::from([("GREETING".to_string(), "hi".to_string())]);
        let env = environment(
            Path::new("/w/shop/web/0"),
            &[("HTTP_PROXY".into(), "p".into())],
            &bp,
            &[("PORT".into(), "8080".into())],
        );
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "PATH",
                "HOME",
                "TMPDIR",
                "LANG",
                "HTTP_PROXY",
                "GREETING",
                "PORT"
            ]
        );
        assert_eq!(env[1].1, "/w/shop/web/0");
    }
}
