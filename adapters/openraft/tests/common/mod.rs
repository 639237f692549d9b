//! The type configuration this crate's tests run openraft with: the `Kv` application.

use std::io::Cursor;

use raftlog_openraft::kv::{KvRequest, KvResponse};

openraft::declare_raft_types!(
    pub TypeConfig:
        D = KvRequest,
        R = KvResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);
