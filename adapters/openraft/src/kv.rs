//! `Kv`: a small key-value `Application`, the state machine of this crate's tests and of its
//! `kv` example. Its snapshot is one file (slot 0, `kv`): bincode 2 of the map.

use std::collections::BTreeMap;

use openraft::RaftTypeConfig;
use raftlog::fs::FileSystem;
use raftlog::snapshot::SnapshotWriter;
use serde::{Deserialize, Serialize};

use crate::state_machine::Application;

/// A write to the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvRequest {
    /// Sets `key` to `value`.
    Set {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Removes `key`.
    Delete {
        /// The key.
        key: String,
    },
}

/// The value a write replaced, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvResponse {
    /// The previous value.
    pub previous: Option<String>,
}

/// The map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kv {
    /// The current contents.
    pub map: BTreeMap<String, String>,
}

const SLOT: u32 = 0;
const FILE: &str = "kv";

impl<C, F> Application<C, F> for Kv
where
    C: RaftTypeConfig<D = KvRequest, R = KvResponse>,
    F: FileSystem,
{
    fn apply(&mut self, data: &KvRequest) -> KvResponse {
        let previous = match data {
            KvRequest::Set { key, value } => self.map.insert(key.clone(), value.clone()),
            KvRequest::Delete { key } => self.map.remove(key),
        };
        KvResponse { previous }
    }

    fn snapshot(&self, writer: &mut SnapshotWriter<'_, F>) -> raftlog::Result<()> {
        let bytes = bincode::serde::encode_to_vec(&self.map, bincode::config::standard())
            .map_err(|_| raftlog::Error::InvalidOptions("the map does not encode"))?;
        writer.add_bytes(SLOT, FILE, &bytes)?;
        Ok(())
    }

    fn restore(
        &mut self,
        snapshot: Option<(&raftlog::SnapshotStore<F>, &raftlog::SnapshotMeta)>,
    ) -> raftlog::Result<()> {
        let Some((store, meta)) = snapshot else {
            self.map.clear();
            return Ok(());
        };
        if meta.file(SLOT, FILE).is_none() {
            self.map.clear();
            return Ok(());
        }
        let bytes = store.read(meta, SLOT, FILE)?;
        let (map, _) = bincode::serde::decode_from_slice(&bytes, bincode::config::standard())
            .map_err(|_| raftlog::Error::Corrupt {
                path: store.dir().join(FILE),
                offset: 0,
                indexes: None,
                reason: raftlog::Corruption::Field("kv snapshot"),
            })?;
        self.map = map;
        Ok(())
    }
}
