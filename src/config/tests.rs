//! Configuration: defaults, precedence (file, environment, flags), located errors, and the
//! shipped example kept in step with the struct.

use super::*;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn write(text: &str) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), text).unwrap();
    f
}

/// The shipped example lists every option, each under a comment, with the default value.
#[test]
fn example_file_matches_struct() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/aether.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let parsed: Config = toml::from_str(&text).expect("example parses");
    assert_eq!(
        parsed,
        Config::default(),
        "active values in config/aether.toml must be the defaults"
    );

    let mut section = String::new();
    let mut documented = Vec::new();
    let mut prev_comment = false;
    for line in text.lines() {
        let l = line.trim();
        if let Some(s) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = format!("{s}.");
            prev_comment = false;
            continue;
        }
        // `key = value` or a commented-out `# key = value` for options with no fixed default.
        let body = l.strip_prefix("# ").unwrap_or(l);
        if let Some((k, _)) = body
            .split_once(" = ")
            .filter(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        {
            assert!(
                prev_comment || l.starts_with('#'),
                "'{section}{k}' in config/aether.toml has no comment above it"
            );
            documented.push(format!("{section}{k}"));
            prev_comment = false;
            continue;
        }
        prev_comment = l.starts_with('#');
    }
    let mut want = Config::keys();
    want.sort();
    documented.sort();
    assert_eq!(documented, want, "config/aether.toml and Config differ");
}

#[test]
fn precedence_flags_over_env_over_file() {
    let f = write("name = \"from-file\"\n[raft]\nvoters = 5\nwrite_timeout = \"9s\"\n");
    let e = env(&[("AETHER_NAME", "from-env"), ("AETHER_RAFT_VOTERS", "7")]);
    let flags = vec![FlagOverride {
        key: "name",
        value: "from-flag".into(),
        flag: "--name",
    }];
    let c = Config::load(Some(f.path()), &e, flags).unwrap();
    assert_eq!(c.name.as_deref(), Some("from-flag"));
    assert_eq!(c.raft.voters, 7);
    assert_eq!(c.raft.write_timeout, Dur::ms(9000));
    assert_eq!(
        c.raft.heartbeat_interval,
        RaftConfig::default().heartbeat_interval
    );
}

#[test]
fn gpus_offered_are_all_none_or_a_list_and_a_bad_list_is_named() {
    let load = |v: &str| Config::load(None, &env(&[("AETHER_DEPLOY_GPUS", v)]), vec![]);
    assert_eq!(load("all").unwrap().deploy.gpus, GpuOffer::All);
    assert_eq!(load("none").unwrap().deploy.gpus, GpuOffer::Listed(vec![]));
    let two = load(" 2, 0").unwrap().deploy.gpus;
    assert_eq!(two, GpuOffer::Listed(vec![2, 0]));
    assert_eq!(two.to_string(), "2,0");
    assert_eq!(two.resolve(&[0, 1, 2, 3]), vec![2, 0]);
    assert_eq!(GpuOffer::All.resolve(&[0, 1]), vec![0, 1]);
    for (bad, says) in [
        (
            "0,x",
            "expected \"all\", \"none\" or GPU indices such as \"0,2\", found '0,x'",
        ),
        ("1,1", "GPU 1 is listed twice in '1,1'"),
        ("0,300", "GPU index 300 in '0,300' is out of range"),
        ("", "found ''"),
    ] {
        let e = load(bad).unwrap_err().to_string();
        assert!(
            e.contains(says) && e.contains("AETHER_DEPLOY_GPUS"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn unknown_key_names_key_and_file() {
    let f = write("[raft]\nvoterz = 3\n");
    let e = Config::load(Some(f.path()), &env(&[]), vec![])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("voterz") && e.contains(&f.path().display().to_string()),
        "{e}"
    );
    assert!(e.contains("line 2"), "{e}");
}

#[test]
fn bad_values_are_named() {
    let f = write("[raft]\nheartbeat_interval = \"fast\"\n");
    let e = Config::load(Some(f.path()), &env(&[]), vec![])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("heartbeat_interval") && e.contains("expected a duration"),
        "{e}"
    );

    let e = Config::load(None, &env(&[("AETHER_RAFT_VOTERS", "three")]), vec![])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("raft.voters") && e.contains("AETHER_RAFT_VOTERS") && e.contains("whole number"),
        "{e}"
    );

    let e = Config::load(None, &env(&[("AETHER_RAFT_VOTERS", "4")]), vec![])
        .unwrap_err()
        .to_string();
    assert!(e.contains("raft.voters") && e.contains("odd"), "{e}");

    let e = Config::load(None, &env(&[("AETHER_TLS_NODE_CERT_TTL", "5s")]), vec![])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tls.node_cert_ttl") && e.contains("at least 10s"),
        "{e}"
    );
    let ok = Config::load(None, &env(&[("AETHER_TLS_NODE_CERT_TTL", "30s")]), vec![]).unwrap();
    assert_eq!(ok.tls.node_cert_ttl.0, Duration::from_secs(30));

    let e = Config::load(None, &env(&[("AETHER_LISTEN", "nowhere")]), vec![])
        .unwrap_err()
        .to_string();
    assert!(e.contains("'listen'") && e.contains("AETHER_LISTEN"), "{e}");

    let f = write("[raft]\nelection_timeout_min = \"2s\"\n");
    let e = Config::load(Some(f.path()), &env(&[]), vec![])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("election_timeout_min") && e.contains("below"),
        "{e}"
    );

    let f = write("name = [\n");
    let e = Config::load(Some(f.path()), &env(&[]), vec![])
        .unwrap_err()
        .to_string();
    assert!(e.contains(&f.path().display().to_string()), "{e}");
}

#[test]
fn env_names() {
    assert_eq!(
        Config::env_var("raft.heartbeat_interval"),
        "AETHER_RAFT_HEARTBEAT_INTERVAL"
    );
    assert!(Config::keys().contains(&"net.max_frame_bytes".to_string()));
}

/// Listening on 0.0.0.0 without `advertise`, a node advertises an address other machines can
/// dial (the default route's interface), never 0.0.0.0; an explicit one is kept.
#[test]
fn the_default_advertise_address_is_dialable() {
    let mut c = Config {
        listen: "0.0.0.0:7420".parse().unwrap(),
        advertise: None,
        ..Config::default()
    };
    let a: SocketAddr = c.advertise_addr().parse().unwrap();
    assert!(!a.ip().is_unspecified(), "{a}");
    assert_eq!(a.port(), 7420);
    let want = default_route_ip().unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
    assert_eq!(a.ip(), want);
    c.listen = "127.0.0.1:7430".parse().unwrap();
    assert_eq!(c.advertise_addr(), "127.0.0.1:7430");
    c.advertise = Some("10.0.0.5:7420".into());
    assert_eq!(c.advertise_addr(), "10.0.0.5:7420");
}

/// Durations have one spelling, the one Aether prints: whole numbers with ms, s, m, h or d, no
/// spaces. '2 sec' (and humantime's '1M', a month) is refused with the accepted forms.
#[test]
fn durations_have_one_spelling() {
    use std::time::Duration;
    for (s, ms) in [
        ("250ms", 250),
        ("5s", 5_000),
        ("2m", 120_000),
        ("1h30m", 5_400_000),
        ("4m12s", 252_000),
        ("1d", 86_400_000),
        (" 10s ", 10_000),
        ("0", 0),
        ("0s", 0),
    ] {
        assert_eq!(parse_duration(s), Ok(Duration::from_millis(ms)), "{s}");
    }
    for s in [
        "2 sec",
        "2sec",
        "1M",
        "5",
        "",
        "s",
        "1.5s",
        "-1s",
        "1h 30m",
        "99999999999999999999d",
    ] {
        let e = parse_duration(s).unwrap_err();
        assert_eq!(
            e,
            format!(
                "expected a duration such as '500ms', '5s', '1m30s' or '1h' \
                 (units ms, s, m, h, d; no spaces), found '{s}'"
            )
        );
    }
}

/// The strategic layer is off by default; enabled, it needs an http url and a model, and its
/// errors name the option.
#[test]
fn the_advisor_section_is_checked() {
    let a = Config::default().controller.advisor;
    assert!(!a.enabled, "nothing leaves the cluster unless configured");
    let load = |text: &str| {
        let f = write(text);
        Config::load(Some(f.path()), &env(&[]), vec![]).map_err(|e| e.to_string())
    };
    let ok =
        "[controller.advisor]\nenabled = true\nurl = \"http://127.0.0.1:8080/v1\"\nmodel = \"m\"\n";
    let c = load(ok).unwrap();
    assert_eq!(c.controller.advisor.interval.0, Duration::from_secs(60));
    for (text, key, says) in [
        (
            "[controller.advisor]\nenabled = true\nmodel = \"m\"\n",
            "controller.advisor.url",
            "enabled without a url",
        ),
        (
            "[controller.advisor]\nenabled = true\nurl = \"https://api.example.com/v1\"\nmodel = \"m\"\n",
            "controller.advisor.url",
            "https is not supported",
        ),
        (
            "[controller.advisor]\nenabled = true\nurl = \"http://127.0.0.1:8080/v1\"\n",
            "controller.advisor.model",
            "without a model",
        ),
        (
            "[controller.advisor]\ninterval = \"2h\"\n",
            "controller.advisor.interval",
            "expected 1s to 1h",
        ),
        (
            "[controller.advisor]\ninterval = \"30s\"\nbudget = \"45s\"\n",
            "controller.advisor.budget",
            "expected 100ms to controller.advisor.interval",
        ),
        (
            "[controller.advisor]\napi_key_env = \"sk-live-123\"\n",
            "controller.advisor.api_key_env",
            "never here",
        ),
        (
            "[controller.advisor]\nmax_items = 0\n",
            "controller.advisor.max_items",
            "expected 1 to 20",
        ),
    ] {
        let e = load(text).unwrap_err();
        assert!(e.contains(key) && e.contains(says), "{text}: {e}");
        assert!(!e.contains("sk-live"), "a key is never echoed: {e}");
    }
}

#[test]
fn the_power_section_is_checked_and_argv_comes_from_the_environment() {
    let e = env(&[
        ("AETHER_POWER_ENABLED", "true"),
        (
            "AETHER_POWER_SUSPEND_COMMAND",
            r#"["/usr/local/sbin/node-power", "off"]"#,
        ),
        ("AETHER_POWER_NEVER_SLEEP", r#"["n1"]"#),
    ]);
    let c = Config::load(None, &e, vec![]).unwrap();
    assert!(c.power.enabled);
    assert_eq!(
        c.power.suspend_command,
        ["/usr/local/sbin/node-power", "off"]
    );
    assert_eq!(c.power.never_sleep, ["n1"]);
    assert!(c.power.resume_command.is_empty());

    let e = env(&[("AETHER_POWER_SUSPEND_COMMAND", "/bin/off")]);
    let err = Config::load(None, &e, vec![]).unwrap_err().to_string();
    assert!(
        err.contains("AETHER_POWER_SUSPEND_COMMAND") && err.contains("expected a list"),
        "{err}"
    );

    for (text, key, says) in [
        (
            "[power]\nenabled = true\n",
            "power.suspend_command",
            "no suspend command is set",
        ),
        (
            "[power]\nresume_command = [\"\"]\n",
            "power.resume_command",
            "the program (first element) is empty",
        ),
        (
            "[power]\nresume_timeout = \"0s\"\n",
            "power.resume_timeout",
            "expected at least 1s",
        ),
        (
            "[power]\ntarget_utilisation = 1.5\n",
            "power.target_utilisation",
            "expected a number from 0.1 to 1.0",
        ),
        (
            "[power]\nnever_sleep = [\"N1\"]\n",
            "power.never_sleep",
            "not a valid name",
        ),
        (
            "[power.mac]\nn3 = \"aa:bb\"\n",
            "power.mac",
            "for node 'n3': 'aa:bb' is not a MAC address",
        ),
        (
            "[power]\nwol_address = \"nowhere\"\n",
            "power.wol_address",
            "nowhere",
        ),
    ] {
        let f = write(text);
        let err = Config::load(Some(f.path()), &env(&[]), vec![])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(key) && err.contains(says) && err.contains(&*f.path().to_string_lossy()),
            "{text}: {err}"
        );
    }
}

#[test]
fn the_gpu_section_is_checked_and_names_the_option() {
    let cases = [
        (
            "AETHER_GPU_TREND_WINDOW",
            "20m",
            "gpu.trend_window",
            "to 15m",
        ),
        (
            "AETHER_GPU_ERRORS_FOR",
            "1s",
            "gpu.errors_for",
            "10s to 15m",
        ),
        (
            "AETHER_GPU_WARN_WITHIN",
            "2d",
            "gpu.warn_within",
            "1m to 24h",
        ),
        (
            "AETHER_GPU_MIN_RISE_PER_MIN",
            "0",
            "gpu.min_rise_per_min",
            "above 0",
        ),
        (
            "AETHER_GPU_CPU_WATTS_PER_CORE",
            "-3",
            "gpu.cpu_watts_per_core",
            "0 to 1000",
        ),
    ];
    for (var, value, key, says) in cases {
        let e = Config::load(None, &env(&[(var, value)]), vec![])
            .unwrap_err()
            .to_string();
        assert!(e.contains(key) && e.contains(says), "{var}={value}: {e}");
    }
    let f = write("[gpu]\nthrottled_for = \"2m\"\ncpu_watts_per_core = 7.5\n");
    let ok = Config::load(Some(f.path()), &env(&[]), vec![]).unwrap();
    assert_eq!(ok.gpu.throttled_for.0, Duration::from_secs(120));
    assert_eq!(ok.gpu.cpu_watts_per_core, 7.5);
}

#[test]
fn a_carbon_source_is_a_file_or_an_http_url() {
    let bad = |source: &str| {
        let f = write(&format!("[carbon]\nsource = \"{source}\"\n"));
        Config::load(Some(f.path()), &env(&[]), vec![])
            .unwrap_err()
            .to_string()
    };
    let e = bad("https://api.electricitymap.org/v3/carbon-intensity/latest");
    assert!(
        e.contains("'carbon.source'") && e.contains("https is not read by the node"),
        "{e}"
    );
    let e = bad("ftp://x/carbon.json");
    assert!(e.contains("found scheme 'ftp'"), "{e}");
    for ok in [
        "/var/lib/aether/carbon.json",
        "http://127.0.0.1:8080/emissions/forecasts/current",
    ] {
        let f = write(&format!("[carbon]\nsource = \"{ok}\"\nrefresh = \"1m\"\n"));
        assert_eq!(
            Config::load(Some(f.path()), &env(&[]), vec![])
                .unwrap()
                .carbon
                .source,
            ok
        );
    }
    let f = write("[carbon]\nrefresh = \"0s\"\n");
    let e = Config::load(Some(f.path()), &env(&[]), vec![])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'carbon.refresh'") && e.contains("expected 1s to 24h"),
        "{e}"
    );
}
