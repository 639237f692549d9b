//! The crate's one error type.
//!
//! Invariants:
//! 1. Every variant carries the typed context a caller needs to act on it: the path and offset of
//!    damaged bytes, the index and bound of a refused read, the rule a refused write broke.
//! 2. `Corrupt` is only returned for bytes that fail verification; it never means "I/O failed".
//! 3. `Poisoned` is returned by every write after a failed write or fsync, until reopen.

use std::io;
use std::ops::Range;
use std::path::PathBuf;

use crate::hard_state::HardState;

/// The result type of every fallible `raftlog` call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `raftlog`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("write", "sync_data", "create", ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Bytes on disk failed verification. Nothing was cut or changed.
    #[error("corrupt {path} at offset {offset}{}: {reason}", fmt_indexes(.indexes))]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte position of the damage in `path`.
        offset: u64,
        /// The log indexes affected, `[lo, hi)`, when known.
        indexes: Option<Range<u64>>,
        /// What failed.
        reason: Corruption,
    },
    /// Another `LogStore` (in this or another process) holds the directory.
    #[error("{path} is locked by another open store")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A write or fsync failed earlier; the store refuses writes until it is reopened.
    #[error("a previous write or fsync failed; reopen the store")]
    Poisoned,
    /// The index lies before the first retained entry.
    #[error("index {index} is compacted (first index {first_index})")]
    Compacted {
        /// The index asked for.
        index: u64,
        /// The first index still in the log.
        first_index: u64,
    },
    /// The index lies beyond the last entry.
    #[error("index {index} is unavailable (last index {last_index})")]
    Unavailable {
        /// The index asked for.
        index: u64,
        /// The last index in the log.
        last_index: u64,
    },
    /// A range `[lo, hi)` with `lo > hi`.
    #[error("invalid range [{lo}, {hi})")]
    InvalidRange {
        /// Start of the range, inclusive.
        lo: u64,
        /// End of the range, exclusive.
        hi: u64,
    },
    /// An appended entry does not follow the previous one (a gap or an overlap).
    #[error("entry {got} does not follow index {}", .expected - 1)]
    NotContiguous {
        /// The index the entry should have had.
        expected: u64,
        /// The index it had.
        got: u64,
    },
    /// An index beyond `INDEX_MAX`, or arithmetic on indexes that would pass it.
    #[error("index {index} is beyond the largest index {max}")]
    IndexTooLarge {
        /// The index refused (saturated when the arithmetic itself overflowed).
        index: u64,
        /// `INDEX_MAX`.
        max: u64,
    },
    /// An appended entry's term is below its predecessor's.
    #[error("entry {index} has term {term}, below the previous term {previous_term}")]
    TermRegression {
        /// The entry's index.
        index: u64,
        /// The entry's term.
        term: u64,
        /// The term of the entry before it.
        previous_term: u64,
    },
    /// An entry's payload exceeds `Options::entry_bytes_max`.
    #[error("entry {index} has {bytes} payload bytes, over the limit of {max}")]
    EntryTooLarge {
        /// The entry's index.
        index: u64,
        /// Its payload size.
        bytes: u64,
        /// The configured limit.
        max: u64,
    },
    /// The operation would drop entries at or below the commit index.
    #[error("index {index} is at or below the commit index {commit}")]
    Committed {
        /// The first index the operation would drop.
        index: u64,
        /// The hard state's commit index.
        commit: u64,
    },
    /// Too many committed entries await the state machine; appends wait until `applied_to`
    /// catches up.
    #[error("busy: {unapplied} committed entries not yet applied (limit {max})")]
    Busy {
        /// Committed entries not yet applied.
        unapplied: u64,
        /// The configured limit.
        max: u64,
    },
    /// The index is not committed yet.
    #[error("index {index} is not committed (commit index {commit})")]
    NotCommitted {
        /// The index asked for.
        index: u64,
        /// The commit index.
        commit: u64,
    },
    /// The index is not applied yet.
    #[error("index {index} is not applied (applied index {applied})")]
    NotApplied {
        /// The index asked for.
        index: u64,
        /// The applied index.
        applied: u64,
    },
    /// A hard state that breaks a Raft rule was refused.
    #[error("hard state {proposed:?} refused ({rule}); current {current:?}")]
    HardStateRefused {
        /// The durable hard state, unchanged.
        current: HardState,
        /// The refused one.
        proposed: HardState,
        /// The rule it breaks.
        rule: HardStateRule,
    },
    /// `Options` that cannot work.
    #[error("invalid options: {0}")]
    InvalidOptions(&'static str),
    /// A snapshot file name that could escape its directory or clash on disk.
    #[error("invalid snapshot file name {name:?}: {reason}")]
    InvalidName {
        /// The name refused.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// A size or count, from a caller, a file or a peer, beyond its configured limit.
    #[error("{what} {value} over the limit of {max}")]
    LimitExceeded {
        /// What was counted.
        what: &'static str,
        /// Its value.
        value: u64,
        /// The limit.
        max: u64,
    },
    /// A snapshot manifest of another Raft group.
    #[error("snapshot of group {found}, expected group {expected}")]
    ForeignGroup {
        /// This store's group.
        expected: u64,
        /// The manifest's.
        found: u64,
    },
    /// A format version this build does not read.
    #[error("{what} format version {found} is not supported (this build reads {supported})")]
    UnsupportedVersion {
        /// The format.
        what: &'static str,
        /// The version found.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// A snapshot file the manifest does not name.
    #[error("no file {name:?} in slot {slot} of the snapshot")]
    UnknownFile {
        /// The slot asked for.
        slot: u32,
        /// The name asked for.
        name: String,
    },
    /// A slot the snapshot does not hold.
    #[error("no slot {slot} in the snapshot")]
    UnknownSlot {
        /// The slot asked for.
        slot: u32,
    },
    /// A file added twice to one snapshot.
    #[error("file {name:?} of slot {slot} is already in the snapshot")]
    DuplicateFile {
        /// The slot.
        slot: u32,
        /// The name.
        name: String,
    },
    /// A message from a peer or a client failed the wire format's checks (format/SPEC.md,
    /// "Replication messages"). Nothing was changed.
    #[error("bad message: {reason}")]
    BadMessage {
        /// Which check failed.
        reason: &'static str,
    },
    /// A write or a leader-only call reached a node that is not the leader.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this node knows of, if any.
        leader: Option<u64>,
    },
    /// A membership change was refused (format/SPEC.md, "Membership"); nothing was appended.
    #[error("membership change refused: {reason}")]
    MembershipChange {
        /// Why: another change in progress, an unknown or existing member, a learner not
        /// caught up, a configuration left without a voter.
        reason: &'static str,
    },
    /// This node was removed from its group (a committed configuration excludes it): it
    /// serves nothing.
    #[error("node removed from the group")]
    Removed,
    /// A call named a term this node has passed (or may not use).
    #[error("term {term} refused: this node is at term {current}")]
    StaleTerm {
        /// The term given.
        term: u64,
        /// This node's term.
        current: u64,
    },
    /// Entry `index` is damaged on disk (a record of a sealed segment failed verification):
    /// it is never returned. `LogStore::damaged` lists every damaged entry found so far, and
    /// `LogStore::repair` rewrites one from a peer's copy.
    #[error("entry {index} is damaged in {path} at offset {offset}: {reason}")]
    Damaged {
        /// The damaged entry.
        index: u64,
        /// The segment holding it.
        path: PathBuf,
        /// Where its record starts.
        offset: u64,
        /// What failed.
        reason: Corruption,
    },
    /// `LogStore::repair` refused an entry; nothing was written.
    #[error("repair of entry {index} refused: {reason}")]
    RepairRefused {
        /// The entry given.
        index: u64,
        /// Why: not live in a sealed segment, another term than the index records, a record
        /// on disk that verifies, bytes that do not re-encode to the damaged record's extent.
        reason: &'static str,
    },
    /// An install before every byte of a file was received.
    #[error("file {name:?} of slot {slot} lacks {missing_bytes} bytes")]
    Incomplete {
        /// The slot.
        slot: u32,
        /// The file.
        name: String,
        /// Bytes not yet received.
        missing_bytes: u64,
    },
}

fn fmt_indexes(indexes: &Option<Range<u64>>) -> String {
    match indexes {
        Some(range) => format!(" (indexes [{}, {}))", range.start, range.end),
        None => String::new(),
    }
}

/// Why bytes on disk were rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Corruption {
    /// A checksum does not match the bytes it covers.
    #[error("checksum mismatch")]
    Checksum,
    /// A header field holds a value the format does not allow.
    #[error("invalid {0}")]
    Field(&'static str),
    /// The file belongs to another store, another segment or a newer format.
    #[error("identity mismatch: {0}")]
    Identity(&'static str),
    /// A record is damaged and a later record proves it had been made durable.
    #[error("damaged record followed by records written after it was synced")]
    DamagedBeforeDurable,
    /// A sealed segment does not end with a valid seal record.
    #[error("sealed segment is not sealed or its seal does not match its entries")]
    BadSeal,
    /// Entries are missing between two segments or before the first one.
    #[error("entries missing")]
    MissingEntries,
    /// A segment does not continue the segment and term it was created after.
    #[error("segment does not continue its predecessor")]
    BrokenChain,
    /// The hard state commits entries the log does not hold.
    #[error("commit index {commit} lies beyond the last index {last_index}")]
    CommitBeyondLog {
        /// The persisted commit index.
        commit: u64,
        /// The last index recovered.
        last_index: u64,
    },
    /// The meta file is missing while segments exist, or both of its slots are damaged.
    #[error("meta file missing or unreadable")]
    Meta,
    /// A file a snapshot manifest names is missing.
    #[error("file missing")]
    MissingFile,
}

/// The Raft rule a refused hard state breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HardStateRule {
    /// The term went backwards.
    #[error("term below the current term")]
    TermRegression,
    /// The vote changed within a term.
    #[error("another vote in the same term")]
    VoteChange,
    /// The commit index went backwards.
    #[error("commit below the current commit")]
    CommitRegression,
    /// The commit index lies beyond the last index of the log.
    #[error("commit beyond the last index")]
    CommitBeyondLog,
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io { op, path: path.into(), source }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        indexes: Option<Range<u64>>,
        reason: Corruption,
    ) -> Self {
        Error::Corrupt { path: path.into(), offset, indexes, reason }
    }
}

/// Attaches an operation name and a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| Error::io(op, path, source))
    }
}
