//! The node supervises its loops: one that dies while the node runs stops the node with a
//! non-zero exit, saying which loop and why, after tearing the others down in reverse.

use std::time::Duration;

use crate::harness::*;

#[test]
fn a_loop_that_dies_stops_the_node() {
    let root = tempfile::tempdir().unwrap();
    let mut n = Node::new(root.path(), "lonely");
    n.env = vec![("AETHER_FAIL_LOOP".into(), "controller".into())];
    let out = n.run_to_exit(None, Duration::from_secs(60));
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a dead loop must stop the node with exit 1; stderr:\n{err}"
    );
    assert!(
        err.contains(
            "the controller panicked: failure injected by AETHER_FAIL_LOOP=controller \
             while the node was running"
        ),
        "the node names the loop that died and why; stderr:\n{err}"
    );
    // Teardown still runs, last started first: the store watch stops before the metrics
    // pipeline, and the store is closed.
    let pos = |s: &str| {
        err.find(s)
            .unwrap_or_else(|| panic!("'{s}' missing from stderr:\n{err}"))
    };
    assert!(pos("stopped the raft store watch") < pos("stopped the metrics pipeline"));
    assert!(pos("stopped the metrics pipeline") < pos("store closed"));
    assert!(!err.contains("node stopped cleanly"), "{err}");
}
