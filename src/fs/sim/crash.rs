//! What a crash of the simulated disk keeps: every durable image, plus, chosen by the seed, a
//! prefix of each directory's unsynced name changes and a subset of each file's unsynced
//! writes (each kept whole, dropped, or torn at 512-byte sectors).
//!
//! Invariant: every choice comes from `SplitMix` seeded by the crash's seed, walking ordered
//! collections, so the same seed on the same history gives the same disk (module invariant 3).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::namespace::NameChange;
use super::{set_len_of, write_into, State, Unsynced};

/// Sector size at which unsynced writes tear.
const SECTOR_BYTES: u64 = 512;

/// A small deterministic generator (SplitMix64) so crashes replay from their seed.
pub(super) struct SplitMix(pub(super) u64);

impl SplitMix {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.next() % one_in == 0
    }
}

impl State {
    /// Builds the next boot's disk (see the module's doc) and resets handles, locks, faults.
    pub(super) fn crash(&mut self, seed: u64) {
        let mut rng = SplitMix(seed);
        let dirs: BTreeSet<PathBuf> =
            self.name_changes.iter().filter_map(|c| c.dir().map(Path::to_path_buf)).collect();
        for dir in dirs {
            let changes: Vec<NameChange> = self
                .name_changes
                .iter()
                .filter(|c| c.dir() == Some(dir.as_path()))
                .cloned()
                .collect();
            let kept = usize::try_from(rng.next() % (changes.len() as u64 + 1)).unwrap_or(0);
            for change in changes.into_iter().take(kept) {
                self.durable.apply(change);
            }
        }
        self.name_changes.clear();
        // Names under a directory whose own creation was lost are unreachable: gone from
        // both images (the live one is what the machine sees when it boots).
        self.durable.drop_orphans();
        self.live = self.durable.clone();
        let reachable: BTreeSet<u64> = self.durable.names.values().copied().collect();
        self.inodes.retain(|ino, _| reachable.contains(ino));
        for inode in self.inodes.values_mut() {
            let mut image = std::mem::take(&mut inode.durable);
            for unsynced in inode.unsynced.drain(..) {
                if rng.chance(2) {
                    continue;
                }
                match unsynced {
                    Unsynced::SetLen(len) => set_len_of(&mut image, len),
                    Unsynced::Write { offset, data } => {
                        apply_torn_write(&mut image, offset, &data, &mut rng)
                    }
                }
            }
            inode.live = image.clone();
            inode.durable = image;
        }
        self.generation += 1;
        self.locks.clear();
        self.halt_countdown = None;
        self.faults.clear();
    }
}

/// Applies `data` whole (half the time) or sector by sector, each sector kept or not.
fn apply_torn_write(image: &mut Vec<u8>, offset: u64, data: &[u8], rng: &mut SplitMix) {
    if rng.chance(2) {
        write_into(image, offset, data);
        return;
    }
    let end = offset + data.len() as u64;
    let mut sector_start = offset - offset % SECTOR_BYTES;
    while sector_start < end {
        let lo = sector_start.max(offset);
        let hi = (sector_start + SECTOR_BYTES).min(end);
        if rng.chance(2) {
            let range = usize::try_from(lo - offset).unwrap_or(0)
                ..usize::try_from(hi - offset).unwrap_or(0);
            write_into(image, lo, &data[range]);
        }
        sector_start += SECTOR_BYTES;
    }
}
