//! The recovery decision table: every finding of recovery, named after its row, and `decide`,
//! the one function that turns a finding into a repair or a refusal.
//!
//! The decision table (format/SPEC.md, "Recovery") in the order it is applied:
//!
//! | # | Finding | Decision |
//! |---|---------|----------|
//! | R1 | no meta file and no segment | new store: write the meta, fsync the directory |
//! | R2 | meta missing or both slots damaged while segments exist | `Corrupt` (meta) |
//! | R3 | one meta slot damaged | use the other, report `damaged_meta_slot` |
//! | R4 | segment id below `segment_id_min` | dead (compacted or reset): remove, report |
//! | R5 | last segment's header damaged, no valid record in the file | unfinished creation: remove, report as torn |
//! | R6 | any other damaged or foreign header | `Corrupt` |
//! | R7 | damaged record in the last segment, no later record or sync mark proving it durable | torn tail: cut, report bytes, indexes and durability (unsynced when the damage follows an intact sync mark, else unknown) |
//! | R8 | damaged record followed by a record written after it was synced, or by a sync mark covering it | `Corrupt` |
//! | R9 | a segment other than the last is not sealed, or damaged | `Corrupt` |
//! | R10 | a segment starts after its predecessor ends, or the first after `first_index` | if the commit index the segment carries covers the missing entries: the log restarts at the segment, what precedes it is lost here and reported (`lost_prefix`), the meta compacted; otherwise `Corrupt` (missing entries) |
//! | R11 | a segment starts inside an older one | override: the older suffix is dead; remove segments left empty |
//! | R12 | a segment does not continue the segment and term recorded in its header | `Corrupt` (broken chain) |
//! | R13 | commit index beyond the recovered last index | `Corrupt` |
//! | R14 | a sealed segment's index missing, damaged or disagreeing with the segment | rebuilt from a scan of the segment, reported |
//! | R15 | an index file of no sealed live segment | removed, reported |
//! | R16 | the hard state (format 2) | the newest a live segment carries, or the meta's if newer (decided in `recover`, not a finding: it refuses nothing) |
//!
//! Invariants:
//! 1. `decide` touches no file: it records repairs, applied only once every row is decided.
//! 2. Every refusing row returns `Error::Corrupt` naming the file, offset and indexes.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use super::report::{LostPrefix, RecoveryReport, TailDurability, TornTail};
use crate::error::{Corruption, Error, Result};
use crate::index::IndexProblem;

/// Changes to make once every row of the table has been decided.
pub(super) struct Repairs<H> {
    /// Files to remove (missing ones are fine).
    pub remove: Vec<PathBuf>,
    pub cut: Option<Cut<H>>,
    /// Sealed segments (by id) whose index must be rebuilt, and why.
    pub rebuild: Vec<(u64, u64, IndexProblem)>,
    /// The meta's new `(first_index, prev_term, segment_id_min)` when a lost prefix is
    /// dropped (R10).
    pub restart: Option<(u64, u64, u64)>,
}

/// What recovery found, named after the row of the decision table that decides it.
#[derive(Debug)]
pub(super) enum Finding<H> {
    /// R1: no store in the directory; a new one was created.
    NewStore,
    /// R2: the meta file is missing or both slots are damaged while segments exist.
    MetaUnreadable { path: PathBuf },
    /// R3: one meta slot is damaged; the other was used.
    MetaSlotDamaged { slot: usize },
    /// R4: a segment below `segment_id_min` (compacted or reset) came back.
    DeadSegment { path: PathBuf },
    /// R5: the last segment's header is damaged and the file holds no valid record.
    UnfinishedSegment { path: PathBuf, file_len: u64 },
    /// R6: any other damaged header, or one naming another store or segment.
    DamagedHeader { path: PathBuf, offset: u64, reason: Corruption },
    /// R7: a damaged record in the last segment that nothing proves durable.
    TornTail { cut: Cut<H>, file_len: u64, indexes: Range<u64>, durability: TailDurability },
    /// R8: a damaged record followed by one written after it was synced.
    DamagedBeforeDurable { path: PathBuf, offset: u64, indexes: Range<u64> },
    /// R9: a segment other than the last is damaged or not sealed.
    DamagedSealed { path: PathBuf, offset: u64, indexes: Range<u64>, reason: Corruption },
    /// R10: entries are missing between two segments or before the first.
    MissingEntries { path: PathBuf, offset: u64, indexes: Range<u64> },
    /// R10, when the missing entries are committed: the log restarts at the segment after
    /// them (`first_index`, `prev_term`, `segment_id_min`); `dead` segments precede it.
    LostPrefix { dead: Vec<PathBuf>, lost: LostPrefix, restart: (u64, u64, u64) },
    /// R11: a segment overridden by a newer one starting inside it, left without entries.
    Overridden { path: PathBuf },
    /// R12: a segment does not continue the segment and term its header records.
    BrokenChain { path: PathBuf, index: u64 },
    /// R13: the commit index lies beyond the recovered last index.
    CommitBeyondLog { path: PathBuf, offset: u64, commit: u64, last_index: u64 },
    /// R14: a sealed segment's index cannot be used (its seal lies at `seal_offset`).
    IndexUnusable { segment_id: u64, seal_offset: u64, problem: IndexProblem },
    /// R15: an index file beside the unsealed last segment or of no live segment.
    StaleIndex { path: PathBuf },
}

/// Where a torn tail is cut (R7).
#[derive(Debug)]
pub(super) struct Cut<H> {
    pub file: Arc<H>,
    pub path: PathBuf,
    pub offset: u64,
}

/// The decision table: what each finding does to the repairs and the report, or the error
/// that refuses the open. Nothing here touches the disk.
pub(super) fn decide<H>(
    finding: Finding<H>,
    repairs: &mut Repairs<H>,
    report: &mut RecoveryReport,
) -> Result<()> {
    match finding {
        Finding::NewStore => report.created = true,
        Finding::MetaUnreadable { path } => {
            return Err(Error::corrupt(path, 0, None, Corruption::Meta));
        }
        Finding::MetaSlotDamaged { slot } => report.damaged_meta_slot = Some(slot),
        Finding::DeadSegment { path } | Finding::Overridden { path } => {
            repairs.remove.push(path.with_extension("idx"));
            repairs.remove.push(path);
        }
        Finding::UnfinishedSegment { path, file_len } => {
            report.torn_tail = Some(TornTail {
                path: path.clone(),
                offset: 0,
                bytes_cut: file_len,
                indexes_cut: 0..0,
                durability: TailDurability::Unsynced,
            });
            repairs.remove.push(path.with_extension("idx"));
            repairs.remove.push(path);
        }
        Finding::DamagedHeader { path, offset, reason } => {
            return Err(Error::corrupt(path, offset, None, reason));
        }
        Finding::TornTail { cut, file_len, indexes, durability } => {
            report.torn_tail = Some(TornTail {
                path: cut.path.clone(),
                offset: cut.offset,
                bytes_cut: file_len - cut.offset,
                indexes_cut: indexes,
                durability,
            });
            repairs.cut = Some(cut);
        }
        Finding::DamagedBeforeDurable { path, offset, indexes } => {
            let reason = Corruption::DamagedBeforeDurable;
            return Err(Error::corrupt(path, offset, Some(indexes), reason));
        }
        Finding::DamagedSealed { path, offset, indexes, reason } => {
            return Err(Error::corrupt(path, offset, Some(indexes), reason));
        }
        Finding::MissingEntries { path, offset, indexes } => {
            return Err(Error::corrupt(path, offset, Some(indexes), Corruption::MissingEntries));
        }
        Finding::LostPrefix { dead, lost, restart } => {
            for path in dead {
                repairs.remove.push(path.with_extension("idx"));
                repairs.remove.push(path);
            }
            report.lost_prefix = Some(lost);
            repairs.restart = Some(restart);
        }
        Finding::BrokenChain { path, index } => {
            return Err(Error::corrupt(path, 32, Some(index..index + 1), Corruption::BrokenChain));
        }
        Finding::CommitBeyondLog { path, offset, commit, last_index } => {
            let reason = Corruption::CommitBeyondLog { commit, last_index };
            return Err(Error::corrupt(path, offset, Some(last_index + 1..commit + 1), reason));
        }
        Finding::IndexUnusable { segment_id, seal_offset, problem } => {
            repairs.rebuild.push((segment_id, seal_offset, problem))
        }
        Finding::StaleIndex { path } => repairs.remove.push(path),
    }
    Ok(())
}

/// `decide` for a row that refuses the open.
pub(super) fn refuse<H>(
    finding: Finding<H>,
    repairs: &mut Repairs<H>,
    report: &mut RecoveryReport,
) -> Error {
    match decide(finding, repairs, report) {
        Err(error) => error,
        Ok(()) => unreachable!("a refusing row of the decision table let the open proceed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a row does: refuse with a reason, or proceed with repairs and a report.
    #[derive(Debug, PartialEq)]
    enum Outcome {
        Refused(Corruption),
        Proceeds { removed: usize, cut: bool, rebuilt: usize, torn: bool, created: bool },
    }

    fn outcome(finding: Finding<()>) -> Outcome {
        let mut repairs =
            Repairs { remove: Vec::new(), cut: None, rebuild: Vec::new(), restart: None };
        let mut report = RecoveryReport::default();
        match decide(finding, &mut repairs, &mut report) {
            Err(Error::Corrupt { reason, .. }) => Outcome::Refused(reason),
            Err(other) => panic!("not a Corrupt refusal: {other}"),
            Ok(()) => Outcome::Proceeds {
                removed: repairs.remove.len(),
                cut: repairs.cut.is_some(),
                rebuilt: repairs.rebuild.len(),
                torn: report.torn_tail.is_some(),
                created: report.created,
            },
        }
    }

    fn proceeds(removed: usize, cut: bool, rebuilt: usize, torn: bool) -> Outcome {
        Outcome::Proceeds { removed, cut, rebuilt, torn, created: false }
    }

    #[test]
    fn every_row_of_the_table_decides_as_specified() {
        let path = || PathBuf::from("/store/0000000000000002.seg");
        let cut = || Cut { file: Arc::new(()), path: path(), offset: 96 };
        let field = Corruption::Field("record type or index");
        let rows: Vec<(&str, Finding<()>, Outcome)> = vec![
            (
                "R1",
                Finding::NewStore,
                Outcome::Proceeds {
                    removed: 0,
                    cut: false,
                    rebuilt: 0,
                    torn: false,
                    created: true,
                },
            ),
            ("R2", Finding::MetaUnreadable { path: path() }, Outcome::Refused(Corruption::Meta)),
            ("R3", Finding::MetaSlotDamaged { slot: 1 }, proceeds(0, false, 0, false)),
            ("R4", Finding::DeadSegment { path: path() }, proceeds(2, false, 0, false)),
            (
                "R5",
                Finding::UnfinishedSegment { path: path(), file_len: 40 },
                proceeds(2, false, 0, true),
            ),
            (
                "R6",
                Finding::DamagedHeader { path: path(), offset: 0, reason: Corruption::Checksum },
                Outcome::Refused(Corruption::Checksum),
            ),
            (
                "R7",
                Finding::TornTail {
                    cut: cut(),
                    file_len: 200,
                    indexes: 3..5,
                    durability: TailDurability::Unknown,
                },
                proceeds(0, true, 0, true),
            ),
            (
                "R8",
                Finding::DamagedBeforeDurable { path: path(), offset: 96, indexes: 3..5 },
                Outcome::Refused(Corruption::DamagedBeforeDurable),
            ),
            (
                "R9",
                Finding::DamagedSealed {
                    path: path(),
                    offset: 96,
                    indexes: 3..4,
                    reason: field.clone(),
                },
                Outcome::Refused(field),
            ),
            (
                "R10",
                Finding::MissingEntries { path: path(), offset: 24, indexes: 7..9 },
                Outcome::Refused(Corruption::MissingEntries),
            ),
            (
                "R10 (committed)",
                Finding::LostPrefix {
                    dead: vec![path()],
                    lost: LostPrefix { indexes: 1..9, missing: 7..9 },
                    restart: (9, 2, 3),
                },
                proceeds(2, false, 0, false),
            ),
            ("R11", Finding::Overridden { path: path() }, proceeds(2, false, 0, false)),
            (
                "R12",
                Finding::BrokenChain { path: path(), index: 6 },
                Outcome::Refused(Corruption::BrokenChain),
            ),
            (
                "R13",
                Finding::CommitBeyondLog { path: path(), offset: 0, commit: 9, last_index: 7 },
                Outcome::Refused(Corruption::CommitBeyondLog { commit: 9, last_index: 7 }),
            ),
            (
                "R14",
                Finding::IndexUnusable {
                    segment_id: 2,
                    seal_offset: 96,
                    problem: IndexProblem::Missing,
                },
                proceeds(0, false, 1, false),
            ),
            ("R15", Finding::StaleIndex { path: path() }, proceeds(1, false, 0, false)),
        ];
        for (row, finding, expected) in rows {
            assert_eq!(outcome(finding), expected, "{row}");
        }
    }
}
