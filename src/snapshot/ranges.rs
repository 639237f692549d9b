//! Byte ranges of one file received so far, merged, for a resumable snapshot transfer.
//!
//! Invariant: the map holds disjoint, non-touching ranges `start -> end` (`start < end`);
//! an insert merges every range it overlaps or touches.

use std::collections::BTreeMap;

/// Received byte ranges of one file, merged: start -> end.
#[derive(Debug, Default)]
pub(super) struct Ranges(BTreeMap<u64, u64>);

impl Ranges {
    pub fn insert(&mut self, mut start: u64, mut end: u64) {
        let touching: Vec<(u64, u64)> =
            self.0.range(..=end).filter(|(_, e)| **e >= start).map(|(s, e)| (*s, *e)).collect();
        for (s, e) in touching {
            self.0.remove(&s);
            start = start.min(s);
            end = end.max(e);
        }
        self.0.insert(start, end);
    }

    pub fn covers(&self, start: u64, end: u64) -> bool {
        start == end || self.0.range(..=start).next_back().is_some_and(|(_, e)| *e >= end)
    }

    /// The ranges of `[0, size)` not received.
    pub fn gaps(&self, size: u64) -> Vec<(u64, u64)> {
        let mut gaps = Vec::new();
        let mut at = 0;
        for (s, e) in &self.0 {
            if *s > at {
                gaps.push((at, *s));
            }
            at = at.max(*e);
        }
        if at < size {
            gaps.push((at, size));
        }
        gaps
    }

    pub fn bytes(&self) -> u64 {
        self.0.iter().map(|(s, e)| e - s).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_merge_what_they_touch_and_gaps_are_the_rest() {
        let mut ranges = Ranges::default();
        ranges.insert(10, 20);
        ranges.insert(30, 40);
        assert_eq!(ranges.gaps(50), vec![(0, 10), (20, 30), (40, 50)]);
        ranges.insert(20, 30); // touches both sides
        assert_eq!(ranges.0.len(), 1);
        assert!(ranges.covers(12, 38) && ranges.covers(5, 5) && !ranges.covers(5, 12));
        ranges.insert(0, 15);
        assert_eq!((ranges.gaps(50), ranges.bytes()), (vec![(40, 50)], 40));
    }
}
