//! `HardState`: the Raft hard state (term, vote, commit) as a value. A leaf: the meta file
//! (`meta.rs`) persists it, and errors carry it.
//!
//! Invariants (enforced where it is persisted):
//! 1. `term` never decreases; `vote` changes only with a new term or from 0.
//! 2. `commit` never decreases and never exceeds the last index of the log.

/// The Raft hard state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HardState {
    /// Current term.
    pub term: u64,
    /// Node voted for in `term`; 0 means none.
    pub vote: u64,
    /// Highest index known committed.
    pub commit: u64,
}

impl HardState {
    /// A hard state.
    pub fn new(term: u64, vote: u64, commit: u64) -> Self {
        HardState { term, vote, commit }
    }
}

impl std::fmt::Display for HardState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "term {} vote {} commit {}", self.term, self.vote, self.commit)
    }
}
