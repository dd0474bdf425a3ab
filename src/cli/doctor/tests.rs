//! The doctor's verdicts (thresholds) on fixed facts, and its renderer's snapshots.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::admin::protocol::{DoctorView, PeerPing};
use crate::cli::fixture;
use crate::platform::probe::{CgroupFacts, ClockFacts, FileFacts, Space};

fn text(outcomes: &[Outcome]) -> String {
    let mut out = Vec::new();
    render(&mut out, outcomes, false).unwrap();
    String::from_utf8(out).unwrap()
}

fn json_of(outcomes: &[Outcome]) -> String {
    let mut out = Vec::new();
    render(&mut out, outcomes, true).unwrap();
    let s = String::from_utf8(out).unwrap();
    serde_json::from_str::<serde_json::Value>(&s).expect("--output json prints valid JSON");
    s
}

fn ping(name: &str, rtt_us: Option<u64>, skew_ms: i64) -> PeerPing {
    PeerPing {
        name: name.into(),
        addr: format!("10.0.0.{}:7420", name.len()),
        rtt_us,
        skew_us: rtt_us.map(|_| skew_ms * 1000),
        error: rtt_us.is_none().then(|| {
            format!(
                "request to 10.0.0.{}:7420 timed out after 2000 ms",
                name.len()
            )
        }),
    }
}

fn view(peers: Vec<PeerPing>) -> DoctorView {
    DoctorView {
        listen: "0.0.0.0:7420".parse().unwrap(),
        status: fixture::status(false),
        peers,
    }
}

#[test]
fn checks_are_selected_by_name_and_unknown_names_are_refused() {
    assert_eq!(select(&[]).unwrap().len(), CHECKS.len());
    let picked = select(&["skew".into(), "disk".into()]).unwrap();
    assert_eq!(picked, vec!["disk", "skew"], "in the checks' order");
    let e = select(&["disk".into(), "dsik".into()]).unwrap_err();
    assert!(
        e.starts_with("unknown check 'dsik': the checks are cpu, kernel,"),
        "{e}"
    );
    assert!(e.contains("--list"), "{e}");
}

#[test]
fn the_exit_code_fails_only_on_a_failure() {
    let ok = Outcome::new("a", Status::Ok, "");
    let warn = Outcome::new("b", Status::Warn, "");
    let skip = Outcome::new("c", Status::Skip, "");
    let fail = Outcome::new("d", Status::Fail, "");
    assert_eq!(exit_code(&[ok.clone(), warn.clone(), skip.clone()]), 0);
    assert_eq!(exit_code(&[ok, warn, skip, fail]), 1);
}

#[test]
fn percentiles_take_the_nearest_rank() {
    let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
    assert_eq!(percentile(&d, 0.50), Duration::from_millis(50));
    assert_eq!(percentile(&d, 0.99), Duration::from_millis(99));
    assert_eq!(percentile(&d[..1], 0.99), Duration::from_millis(1));
    assert_eq!(percentile(&[], 0.5), Duration::ZERO);
}

#[test]
fn the_open_file_limit_warns_below_65536() {
    assert_eq!(fd_limit(65_536, 65_536).status, Status::Ok);
    assert_eq!(fd_limit(u64::MAX, u64::MAX).status, Status::Ok);
    let low = fd_limit(1024, 524_288);
    assert_eq!(low.status, Status::Warn);
    assert!(low.fix.as_deref().unwrap().contains("LimitNOFILE=65536"));
    assert!(!low.fix.as_deref().unwrap().contains("hard limit"));
    assert!(fd_limit(1024, 4096).fix.unwrap().contains("hard limit"));
}

#[test]
fn the_disk_fails_below_one_percent_and_on_slow_fsync() {
    let dir = Path::new("/d");
    let space = |avail: u64, total: u64| {
        Ok(Space {
            total,
            available: avail,
        })
    };
    let fast = || {
        Ok(Fsync {
            latencies: vec![Duration::from_micros(500); 100],
            elapsed: Duration::from_millis(100),
        })
    };
    const G: u64 = 1 << 30;
    assert_eq!(disk(dir, space(50 * G, 100 * G), fast()).status, Status::Ok);
    assert_eq!(
        disk(dir, space(9 * G, 100 * G), fast()).status,
        Status::Warn
    );
    assert_eq!(
        disk(dir, space(G / 2, 2 * G), fast()).status,
        Status::Warn,
        "under 1 GiB"
    );
    assert_eq!(
        disk(dir, space(G / 2, 100 * G), fast()).status,
        Status::Fail
    );
    // p99 above 10 ms fails, whatever the median.
    let mut lat = vec![Duration::from_millis(1); 98];
    lat.extend([Duration::from_millis(11); 2]);
    let slow = disk(
        dir,
        space(50 * G, 100 * G),
        Ok(Fsync {
            latencies: lat,
            elapsed: Duration::from_secs(1),
        }),
    );
    assert_eq!(slow.status, Status::Fail);
    assert!(
        slow.summary.contains("FAIL (p99 must be at most 10 ms)"),
        "{}",
        slow.summary
    );
    assert_eq!(slow.figures["fsync_p99_ms"], 11.0);
    assert_eq!(slow.figures["writes_per_s"], 100.0);
}

#[test]
fn skew_warns_above_half_a_second_and_fails_above_five() {
    assert_eq!(
        skew(&view(vec![ping("a", Some(300), 499)])).status,
        Status::Ok
    );
    assert_eq!(
        skew(&view(vec![ping("a", Some(300), -501)])).status,
        Status::Warn
    );
    assert_eq!(
        skew(&view(vec![ping("a", Some(300), 5_001)])).status,
        Status::Fail
    );
    assert_eq!(skew(&view(vec![ping("a", None, 0)])).status, Status::Skip);
}

#[test]
fn an_unreachable_peer_fails_with_its_address() {
    let o = peers(&view(vec![
        ping("gpu-box", Some(420), 0),
        ping("edge", None, 0),
    ]));
    assert_eq!(o.status, Status::Fail);
    assert!(
        o.summary.starts_with("'edge' (10.0.0.4:7420) unreachable"),
        "{}",
        o.summary
    );
    assert_eq!(o.figures["gpu-box"]["rtt_ms"], 0.42);
}

#[test]
fn certificates_warn_within_30_days_and_fail_once_expired() {
    let now = 1_000_000_000;
    let cert = |days: i64| Cert {
        which: "node",
        path: PathBuf::from("/d/tls/node.crt"),
        not_after: Ok(now + days * 86_400 + 5),
    };
    let tls = Path::new("/d/tls");
    assert_eq!(certs(tls, &[cert(30)], now).status, Status::Ok);
    assert_eq!(certs(tls, &[cert(29)], now).status, Status::Warn);
    assert_eq!(certs(tls, &[cert(-1)], now).status, Status::Fail);
    assert_eq!(certs(tls, &[], now).status, Status::Skip);
}

#[test]
fn a_data_dir_open_to_others_fails_with_the_chmod() {
    let facts = |mode| FileFacts {
        uid: 1000,
        mode,
        is_dir: true,
    };
    let mut d = DirFacts {
        dir: "/d".into(),
        facts: Some(facts(0o700)),
        euid: 1000,
        user: "ops".into(),
        keys: vec![(
            "/d/tls/node.key".into(),
            FileFacts {
                is_dir: false,
                ..facts(0o600)
            },
        )],
        socket: None,
    };
    assert_eq!(data_dir(&d).status, Status::Ok);
    d.facts = Some(facts(0o777));
    let o = data_dir(&d);
    assert_eq!(o.status, Status::Fail);
    assert_eq!(o.fix.as_deref(), Some("chmod 0700 '/d'"));
    d.facts = Some(facts(0o700));
    d.keys[0].1.mode = 0o644;
    assert!(
        data_dir(&d)
            .fix
            .unwrap()
            .contains("chmod 0600 '/d/tls/node.key'")
    );
    d.keys[0].1.mode = 0o600;
    d.euid = 0;
    d.user = "root".into();
    assert!(data_dir(&d).fix.unwrap().contains("chown -R root '/d'"));
    d.facts = None;
    assert_eq!(data_dir(&d).status, Status::Warn);
}

#[test]
fn cgroups_limit_instances_with_v2_or_v1_else_warn() {
    let v2 = CgroupFacts {
        v2: true,
        controllers: vec!["cpu".into(), "memory".into()],
        own: None,
        v1: vec![],
        writable: true,
    };
    assert_eq!(kernel(Ok("6.8"), &v2).status, Status::Ok);
    let no_memory = CgroupFacts {
        controllers: vec!["cpu".into(), "pids".into()],
        ..v2.clone()
    };
    let o = kernel(Ok("6.8"), &no_memory);
    assert_eq!(o.status, Status::Warn);
    assert!(
        o.summary.contains("lacks the memory controller"),
        "{}",
        o.summary
    );
    let read_only = CgroupFacts {
        writable: false,
        ..v2.clone()
    };
    assert!(
        kernel(Ok("6.8"), &read_only)
            .fix
            .unwrap()
            .contains("Delegate=yes")
    );
    let v1 = CgroupFacts {
        v2: false,
        controllers: vec![],
        v1: vec!["cpu".into(), "memory".into()],
        ..v2.clone()
    };
    assert_eq!(kernel(Ok("5.4"), &v1).status, Status::Ok);
    let half_v1 = CgroupFacts {
        v1: vec!["cpu".into()],
        ..v1
    };
    assert_eq!(kernel(Ok("5.4"), &half_v1).status, Status::Warn);
}

#[test]
fn a_port_in_use_is_fine_only_when_the_running_node_holds_it() {
    let quic = |error| Port {
        proto: "udp",
        role: "quic",
        addr: "0.0.0.0:7420".parse().unwrap(),
        error,
    };
    let in_use = Some(std::io::ErrorKind::AddrInUse);
    assert_eq!(ports(&[quic(None)], false, None).status, Status::Ok);
    let other = ports(&[quic(in_use)], false, None);
    assert_eq!(other.status, Status::Fail);
    assert!(
        other.fix.unwrap().contains("'ss -lunp sport = :7420'"),
        "names the tool that finds the holder"
    );
    let ours = Some("0.0.0.0:7420".parse().unwrap());
    assert_eq!(ports(&[quic(in_use)], true, ours).status, Status::Ok);
    let elsewhere = ports(
        &[quic(in_use)],
        true,
        Some("127.0.0.1:9000".parse().unwrap()),
    );
    assert_eq!(elsewhere.status, Status::Fail);
    assert!(
        elsewhere
            .summary
            .contains("this node listens on 127.0.0.1:9000")
    );
}

#[test]
fn dates_are_utc_days() {
    assert_eq!(date(0), "1970-01-01");
    assert_eq!(date(67_090_118_400), "4096-01-01");
    assert_eq!(date(1_709_164_800), "2024-02-29");
    assert_eq!(date(-86_400), "1969-12-31");
}

/// Every check's result on a fixed machine: a healthy node with one silent peer, a low
/// open-file limit, an unsynchronised clock.
fn sample() -> Vec<Outcome> {
    let cg = CgroupFacts {
        v2: true,
        controllers: vec!["cpu".into(), "memory".into(), "pids".into()],
        own: Some("/sys/fs/cgroup/system.slice/aether.service".into()),
        v1: vec![],
        writable: true,
    };
    let v = view(vec![ping("gpu-box", Some(412), 3), ping("edge", None, 0)]);
    vec![
        cpu(
            "x86-64-v3",
            &["avx2".into(), "fma".into(), "bmi2".into()],
            &[],
        ),
        kernel(Ok("6.8.0-45-generic"), &cg),
        fd_limit(1024, 524_288),
        clock(Ok(ClockFacts {
            unsynced: true,
            max_error_us: 16_000_000,
            est_error_us: 16_000_000,
        })),
        disk(
            Path::new("/var/lib/aether"),
            Ok(Space {
                total: 100 << 30,
                available: 42 << 30,
            }),
            Ok(Fsync {
                latencies: (1..=200)
                    .map(|i| Duration::from_micros(400 + i * 10))
                    .collect(),
                elapsed: Duration::from_millis(500),
            }),
        ),
        ports(
            &[
                Port {
                    proto: "udp",
                    role: "quic",
                    addr: "0.0.0.0:7420".parse().unwrap(),
                    error: Some(std::io::ErrorKind::AddrInUse),
                },
                Port {
                    proto: "tcp",
                    role: "http",
                    addr: "127.0.0.1:7421".parse().unwrap(),
                    error: Some(std::io::ErrorKind::AddrInUse),
                },
            ],
            true,
            Some("0.0.0.0:7420".parse().unwrap()),
        ),
        data_dir(&DirFacts {
            dir: "/var/lib/aether".into(),
            facts: Some(FileFacts {
                uid: 0,
                mode: 0o700,
                is_dir: true,
            }),
            euid: 0,
            user: "root".into(),
            keys: vec![(
                "/var/lib/aether/tls/node.key".into(),
                FileFacts {
                    uid: 0,
                    mode: 0o600,
                    is_dir: false,
                },
            )],
            socket: Some((
                "/var/lib/aether/aether.sock".into(),
                FileFacts {
                    uid: 0,
                    mode: 0o600,
                    is_dir: false,
                },
            )),
        }),
        certs(
            Path::new("/var/lib/aether/tls"),
            &[
                Cert {
                    which: "node",
                    path: "/var/lib/aether/tls/node.crt".into(),
                    not_after: Ok(fixture::NOW as i64 / 1000 + 12 * 86_400),
                },
                Cert {
                    which: "ca",
                    path: "/var/lib/aether/tls/ca.crt".into(),
                    not_after: Ok(67_090_118_400),
                },
            ],
            fixture::NOW as i64 / 1000,
        ),
        gpu(Err("NVML: libnvidia-ml.so not found".into())),
        model(
            Path::new("/var/lib/aether/models/model.gguf"),
            Ok(270 << 20),
        ),
        raft(&v),
        peers(&v),
        skew(&v),
    ]
}

#[test]
fn doctor_text() {
    insta::assert_snapshot!("doctor", text(&sample()));
}

#[test]
fn doctor_json() {
    insta::assert_snapshot!("doctor_json", json_of(&sample()));
}

#[test]
fn doctor_without_a_node() {
    let socket = Path::new("/var/lib/aether/aether.sock");
    let outcomes: Vec<Outcome> = CLUSTER_CHECKS
        .iter()
        .map(|c| no_node(c, socket))
        .chain([model(
            Path::new("/var/lib/aether/models/model.gguf"),
            Err("No such file or directory (os error 2)".into()),
        )])
        .collect();
    insta::assert_snapshot!("doctor_without_a_node", text(&outcomes));
}

#[test]
fn doctor_list() {
    let mut out = Vec::new();
    render_list(&mut out, false).unwrap();
    insta::assert_snapshot!("doctor_list", String::from_utf8(out).unwrap());
}
