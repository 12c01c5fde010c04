//! Per-source sequence numbers: which of a producer's events reached the log.
//!
//! A client instance stamps every event it sends with `source` (its name and a per-process
//! id) and `source_seq`, counting 1, 2, 3… without gaps. The server keeps, per source, the
//! numbers it has seen as ranges; a number below the highest that never arrived is an event
//! the producer lost before it reached Sealtrail (a crash with a full queue, a dropped
//! spool), which no other part of the system can see.
//!
//! Numbers may arrive out of order (a retried batch behind a newer one), so a hole can
//! close later; [`SourceProgress`] keeps exact ranges up to [`MAX_RANGES`] of them, and
//! beyond that folds the oldest into a counted floor (their holes stay counted in
//! [`SourceProgress::missing`], no longer listed, and a late arrival below the floor is not
//! subtracted). No I/O here: the server's tracker persists this as JSON.

use serde::{Deserialize, Serialize};

/// Ranges kept per source before the oldest are folded into the floor.
pub const MAX_RANGES: usize = 1024;

/// The `source_seq` numbers seen from one source.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceProgress {
    /// Every number up to here is accounted for: seen, or counted in `floor_missing`.
    floor: u64,
    /// How many numbers up to `floor` never arrived.
    floor_missing: u64,
    /// Seen numbers above `floor`: sorted, disjoint, non-adjacent inclusive ranges.
    ranges: Vec<(u64, u64)>,
}

/// A run of numbers that did not arrive, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hole {
    /// The first missing number.
    pub from: u64,
    /// The last missing number.
    pub to: u64,
}

impl SourceProgress {
    /// Notes that `seq` arrived; false when it was seen already (or lies below the floor).
    pub fn record(&mut self, seq: u64) -> bool {
        if seq == 0 || seq <= self.floor {
            return false;
        }
        // The first range ending at or after seq - 1 is where seq joins or goes before.
        let at = self.ranges.partition_point(|&(_, hi)| hi + 1 < seq);
        match self.ranges.get(at).copied() {
            Some((lo, hi)) if lo <= seq && seq <= hi => return false,
            Some((lo, hi)) if hi + 1 == seq => {
                // Extends this range upwards, perhaps up to the next one.
                self.ranges[at].1 = seq;
                if let Some(&(next_lo, next_hi)) = self.ranges.get(at + 1)
                    && next_lo == seq + 1
                {
                    self.ranges[at] = (lo, next_hi);
                    self.ranges.remove(at + 1);
                }
            }
            Some((lo, _)) if lo == seq + 1 => self.ranges[at].0 = seq,
            _ => self.ranges.insert(at, (seq, seq)),
        }
        if self.ranges.len() > MAX_RANGES {
            self.fold_oldest();
        }
        true
    }

    /// The highest number seen (0: none).
    pub fn highest(&self) -> u64 {
        self.ranges.last().map_or(self.floor, |&(_, hi)| hi)
    }

    /// How many distinct numbers arrived.
    pub fn received(&self) -> u64 {
        let above: u64 = self.ranges.iter().map(|&(lo, hi)| hi - lo + 1).sum();
        self.floor - self.floor_missing + above
    }

    /// How many numbers up to the highest never arrived.
    pub fn missing(&self) -> u64 {
        self.highest() - self.received()
    }

    /// The listed holes, oldest first, at most `limit` (those folded into the floor are
    /// counted in [`Self::missing`] only).
    pub fn holes(&self, limit: usize) -> Vec<Hole> {
        let mut holes = Vec::new();
        let mut next_expected = self.floor + 1;
        for &(lo, hi) in &self.ranges {
            if holes.len() == limit {
                break;
            }
            if lo > next_expected {
                holes.push(Hole {
                    from: next_expected,
                    to: lo - 1,
                });
            }
            next_expected = hi + 1;
        }
        holes
    }

    fn fold_oldest(&mut self) {
        let (lo, hi) = self.ranges.remove(0);
        self.floor_missing += lo - self.floor - 1;
        self.floor = hi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(seqs: &[u64]) -> SourceProgress {
        let mut progress = SourceProgress::default();
        for &seq in seqs {
            progress.record(seq);
        }
        progress
    }

    #[test]
    fn in_order_numbers_make_one_range() {
        let p = progress(&[1, 2, 3, 4]);
        assert_eq!((p.highest(), p.received(), p.missing()), (4, 4, 0));
        assert!(p.holes(10).is_empty());
        assert_eq!(p.ranges, vec![(1, 4)]);
    }

    #[test]
    fn holes_are_listed_and_close_when_late_numbers_arrive() {
        let mut p = progress(&[3, 4, 8, 10]);
        assert_eq!(p.missing(), 6);
        assert_eq!(
            p.holes(10),
            vec![
                Hole { from: 1, to: 2 },
                Hole { from: 5, to: 7 },
                Hole { from: 9, to: 9 }
            ]
        );
        assert_eq!(p.holes(1).len(), 1);
        for late in [9, 1, 2, 5, 6, 7] {
            assert!(p.record(late), "{late}");
        }
        assert_eq!(p.ranges, vec![(1, 10)]);
        assert_eq!((p.missing(), p.received()), (0, 10));
    }

    #[test]
    fn repeats_are_not_counted_twice() {
        let mut p = progress(&[1, 2, 5]);
        assert!(!p.record(2));
        assert!(!p.record(5));
        assert!(!p.record(0));
        assert_eq!((p.received(), p.missing()), (3, 2));
    }

    #[test]
    fn ranges_beyond_the_bound_fold_into_a_counted_floor() {
        // Every other number: each is a range of its own.
        let seqs: Vec<u64> = (1..=(MAX_RANGES as u64 + 10)).map(|i| i * 2).collect();
        let mut p = progress(&seqs);
        assert_eq!(p.ranges.len(), MAX_RANGES);
        let highest = *seqs.last().unwrap();
        assert_eq!(p.highest(), highest);
        assert_eq!(p.received(), seqs.len() as u64);
        assert_eq!(p.missing(), highest - seqs.len() as u64);
        assert_eq!(
            p.holes(1)[0],
            Hole {
                from: p.floor + 1,
                to: p.floor + 1
            }
        );
        assert!(!p.record(1), "below the floor: no longer tracked");
        assert_eq!(p.missing(), highest - seqs.len() as u64);
    }

    #[test]
    fn any_order_gives_the_same_progress() {
        let forward = progress(&[1, 2, 3, 5, 6, 9]);
        let shuffled = progress(&[9, 5, 1, 6, 3, 2, 5]);
        assert_eq!(forward, shuffled);
        let json = serde_json::to_string(&forward).unwrap();
        assert_eq!(
            serde_json::from_str::<SourceProgress>(&json).unwrap(),
            forward
        );
    }
}
