//! openraft's own conformance suite, `openraft::testing::Suite::test_all`, on `LogStore` and
//! this crate's `StateMachine` (with the `Kv` application), each test on fresh directories.

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use raftlog_openraft::kv::Kv;
use raftlog_openraft::{LogStore, StateMachine};

mod common;

use common::TypeConfig;

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
