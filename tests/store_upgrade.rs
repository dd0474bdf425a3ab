//! Upgrades keep the data: a `raft.redb` written by a released aether (store format 2, committed
//! as `tests/fixtures/store-format-2.redb.gz`) opens with this binary and reads back exactly.
//!
//! If this fails after a bump of `STORE_FORMAT`: add a migration from format 2 (a step and a row
//! in `raft::store::OLDER_FORMATS`) and keep this fixture. Regenerate it only while format 2 is
//! the current format (e.g. after adding a record to the generator), with
//! `cargo test --test store_upgrade -- --ignored generate_the_format_2_fixture`.

#[path = "cluster/harness.rs"]
mod harness;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use aether::raft::store::{STORE_FORMAT, Store, reads_format};
use harness::*;

/// The fixture's format: the first released one.
const FIXTURE_FORMAT: u32 = 2;
const KV_KEY: &str = "fixture/greeting";
const KV_VALUE: &str = "hello from format 2";
const BLUEPRINT: &str = "name = \"shop\"\n\n[[slices]]\nname = \"web\"\ncommand = [\"sleep\", \"3600\"]\ninstances = 2\nmin = 1\nmax = 4\nresources = { cpu = 0.01, memory = \"16MiB\" }\n";
/// After `aether scale shop/web 3`.
const INSTANCES: u32 = 3;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-format-2.redb.gz")
}

/// A slice: name, instances, min, max.
type SliceRow = (String, u32, u32, u32);

/// What the fixture holds, read through the store's own readers.
#[derive(Debug, PartialEq)]
struct Records {
    kv: Option<String>,
    nodes: Vec<String>,
    blueprints: Vec<(String, u64, Vec<SliceRow>)>,
    assignments: Vec<String>,
    /// The kept versions of `shop`.
    versions: Vec<u64>,
    cluster_id: Option<String>,
}

fn records(store: &Store) -> Records {
    Records {
        kv: store
            .kv_get(KV_KEY)
            .unwrap()
            .map(|v| String::from_utf8(v).unwrap()),
        nodes: store.nodes().unwrap().into_iter().map(|n| n.name).collect(),
        blueprints: store
            .blueprints()
            .unwrap()
            .into_iter()
            .map(|b| {
                let slices = b
                    .blueprint
                    .slices
                    .iter()
                    .map(|s| (s.name.clone(), s.instances, s.min, s.max))
                    .collect();
                (b.blueprint.name, b.version, slices)
            })
            .collect(),
        assignments: store.assignments().unwrap().into_keys().collect(),
        versions: store
            .blueprint_versions("shop")
            .unwrap()
            .into_iter()
            .map(|b| b.version)
            .collect(),
        cluster_id: store.cluster().unwrap().map(|c| c.init.cluster_id),
    }
}

/// What the fixture must read back as (the cluster id is random: checked for its shape).
fn expected(cluster_id: Option<String>) -> Records {
    Records {
        kv: Some(KV_VALUE.into()),
        nodes: vec!["fx1".into()],
        // Version 1 applied, 2 by the scale.
        blueprints: vec![("shop".into(), 2, vec![("web".into(), INSTANCES, 1, 4)])],
        assignments: (0..INSTANCES).map(|i| format!("shop/web/{i}")).collect(),
        versions: vec![1, 2],
        cluster_id,
    }
}

/// Open the store in `dir`, waiting (up to 10 s) for a just-dropped handle to let go of the file.
fn open(dir: &Path) -> std::sync::Arc<Store> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Store::open(dir) {
            Ok(s) => return s,
            Err(e)
                if e.to_string().contains("already open")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::yield_now()
            }
            Err(e) => panic!(
                "this aether cannot open a format-{FIXTURE_FORMAT} store: {e}\n\
                 add a migration from format {FIXTURE_FORMAT} and keep this fixture"
            ),
        }
    }
}

#[test]
fn a_format_2_store_opens_and_reads_back_exactly() {
    assert!(
        STORE_FORMAT == FIXTURE_FORMAT || reads_format(FIXTURE_FORMAT),
        "STORE_FORMAT is {STORE_FORMAT} and nothing migrates format {FIXTURE_FORMAT}: add a migration from format {FIXTURE_FORMAT} and keep this fixture"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut gz = flate2::read::GzDecoder::new(std::fs::File::open(fixture()).unwrap());
    let mut bytes = Vec::new();
    gz.read_to_end(&mut bytes).unwrap();
    std::fs::write(dir.path().join("raft.redb"), &bytes).unwrap();

    let store = open(dir.path());
    let got = records(&store);
    let id = got.cluster_id.clone();
    assert!(
        id.as_deref().is_some_and(|c| c.starts_with("c-")),
        "the cluster record reads back: {id:?}"
    );
    assert_eq!(got, expected(id), "the format-2 records read back exactly");
    assert!(store.applied_index() > 0, "the applied log id reads back");
    // Format 3 added the operators table: there, empty.
    assert!(store.operators().unwrap().is_empty());
    drop(store);
    // And again: the open (a migration, once there is one) leaves a store that opens.
    let again = open(dir.path());
    assert_eq!(records(&again), got);
}

/// Writes the fixture with a real node: a kv value, a blueprint with one slice scaled to 3
/// (three assignments), then a clean stop. Run by hand (see the top of this file).
#[test]
#[ignore = "generates tests/fixtures/store-format-2.redb.gz"]
fn generate_the_format_2_fixture() {
    assert_eq!(
        STORE_FORMAT, FIXTURE_FORMAT,
        "the fixture is of format {FIXTURE_FORMAT}: regenerate it only with a binary of that format"
    );
    let root = tempfile::tempdir().unwrap();
    let _reaper = Reaper(format!("fixture-{}", std::process::id()));
    let mut n = Node::new(root.path(), "fx1");
    n.env = vec![("TEST_RUN".into(), _reaper.0.clone())];
    n.start(None);
    wait_for("fx1 is ready", Duration::from_secs(30), || {
        (n.http_status("/readyz") == Some(200)).then_some(())
    });
    let ok = |args: &[&str]| {
        let out = n.cli(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    };
    ok(&["kv", "put", KV_KEY, KV_VALUE]);
    let file = root.path().join("shop.toml");
    std::fs::write(&file, BLUEPRINT).unwrap();
    ok(&["blueprint", "apply", file.to_str().unwrap()]);
    ok(&["scale", "shop/web", &INSTANCES.to_string()]);
    wait_for(
        "three assignments placed on fx1",
        Duration::from_secs(30),
        || {
            let out = n.cli(&["blueprint", "show", "shop", "--output", "json"]);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            let rows = v[0]["instances"].as_array()?;
            (rows.len() == INSTANCES as usize
                && rows.iter().all(|r| r["node"].as_str() == Some("fx1")))
            .then_some(())
        },
    );
    assert!(n.terminate().success(), "clean stop:\n{}", n.log_text());

    let store = open(&n.dir);
    let got = records(&store);
    assert_eq!(
        got,
        expected(got.cluster_id.clone()),
        "what the fixture holds"
    );
    drop(store);
    let raw = std::fs::read(n.dir.join("raft.redb")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&raw).unwrap();
    let packed = gz.finish().unwrap();
    std::fs::create_dir_all(fixture().parent().unwrap()).unwrap();
    std::fs::write(fixture(), &packed).unwrap();
    eprintln!(
        "wrote {} ({} bytes from {} bytes)",
        fixture().display(),
        packed.len(),
        raw.len()
    );
}
