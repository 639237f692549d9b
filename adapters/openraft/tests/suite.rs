//! openraft's own conformance suite, `openraft::testing::Suite::test_all`, on `LogStore` and
//! this crate's `StateMachine` (with the `Kv` application), each test on fresh directories.

use std::io::Cursor;

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use raftlog_openraft::kv::{Kv, KvRequest, KvResponse};
use raftlog_openraft::{LogStore, StateMachine};

openraft::declare_raft_types!(
    pub TypeConfig:
        D = KvRequest,
        R = KvResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

struct Builder;

type Store = LogStore<TypeConfig>;
type Machine = StateMachine<TypeConfig, Kv>;

impl StoreBuilder<TypeConfig, Store, Machine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, Store, Machine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open(dir.path().join("log"), raftlog::Options::default())
            .expect("the log opens");
        let machine = Machine::open(dir.path().join("snapshots"), Kv::default())
            .expect("the state machine opens");
        Ok((dir, store, machine))
    }
}

#[test]
fn openraft_suite_passes() {
    if let Err(e) = Suite::test_all(Builder) {
        panic!("openraft's suite failed: {e}");
    }
}
