//! What a follower received on one channel: how many times each seq arrived
//! (from a first seq on), and, as messages arrive, the resets the server
//! announced and the gaps and repeats no reset explains.

/// The seqs one client received on one channel, from `base` on.
#[derive(Debug, Clone)]
pub struct Tally {
    base: u64,
    /// Times each seq `base + i` arrived (saturating).
    counts: Vec<u8>,
    /// The highest seq received, `base − 1` before any.
    pub last: u64,
    /// Where the stream is: the last seq received, or where a reset put it.
    pub position: u64,
    /// Resets received: the server said it cannot deliver from the position asked.
    pub resets: u64,
    /// Messages that came past `position + 1` with no reset before them.
    pub gaps: u64,
    /// Messages at or below `position` with no reset before them (received again).
    pub repeats: u64,
}

impl Tally {
    /// A tally that counts seqs from `base` on (the first one expected).
    pub fn new(base: u64) -> Tally {
        let last = base.saturating_sub(1);
        Tally { base, counts: Vec::new(), last, position: last, resets: 0, gaps: 0, repeats: 0 }
    }

    /// A message `seq` arrived.
    pub fn record(&mut self, seq: u64) {
        if seq > self.position + 1 {
            self.gaps += 1;
        } else if seq <= self.position {
            self.repeats += 1;
        }
        self.position = seq;
        self.last = self.last.max(seq);
        let Some(i) = seq.checked_sub(self.base) else { return }; // history from before `base`
        let i = i as usize;
        if i >= self.counts.len() {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] = self.counts[i].saturating_add(1);
    }

    /// A reset arrived: the stream goes on after `seq` (in a new epoch, perhaps).
    pub fn reset(&mut self, seq: u64) {
        self.resets += 1;
        self.position = seq;
    }

    /// Times `seq` arrived.
    pub fn count(&self, seq: u64) -> u8 {
        seq.checked_sub(self.base).and_then(|i| self.counts.get(i as usize)).copied().unwrap_or(0)
    }

    /// This client's account of the `published` seqs (others, such as a
    /// foreign publisher's, are left out).
    pub fn judge(&self, published: &[u64]) -> Judged {
        let mut judged = Judged::default();
        for &seq in published {
            let count = self.count(seq);
            judged.deliveries += u64::from(count);
            judged.missing += u64::from(count == 0);
            judged.duplicates += u64::from(count.saturating_sub(1));
        }
        judged
    }
}

/// Published messages received (copies included), never received, and received again.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Judged {
    pub deliveries: u64,
    pub missing: u64,
    pub duplicates: u64,
}

impl std::ops::AddAssign for Judged {
    fn add_assign(&mut self, other: Judged) {
        self.deliveries += other.deliveries;
        self.missing += other.missing;
        self.duplicates += other.duplicates;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_tells_missing_and_duplicate_seqs_of_the_published_ones() {
        let mut tally = Tally::new(11);
        assert_eq!(tally.last, 10);
        for seq in [3, 11, 12, 12, 14, 14, 14, 20] {
            tally.record(seq);
        }
        assert_eq!(tally.last, 20);
        // 13 and 15 missing; 12 once extra, 14 twice; 20 was not ours; 3 predates the run.
        assert_eq!(tally.judge(&[11, 12, 13, 14, 15]), Judged { deliveries: 6, missing: 2, duplicates: 3 });
        assert_eq!(Tally::new(1).judge(&[1, 2]), Judged { deliveries: 0, missing: 2, duplicates: 0 });
    }

    #[test]
    fn gaps_and_repeats_are_told_on_arrival_unless_a_reset_explains_them() {
        let mut tally = Tally::new(1);
        for seq in [1, 2, 4, 4, 3] {
            tally.record(seq);
        }
        // 4 skipped 3 (a gap); the second 4 and the late 3 came at or below the position.
        assert_eq!((tally.gaps, tally.repeats), (1, 2));
        tally.reset(10);
        tally.record(11);
        tally.reset(0); // a new epoch starts over
        tally.record(1);
        assert_eq!((tally.resets, tally.gaps, tally.repeats, tally.last, tally.position), (2, 1, 2, 11, 1));
    }
}
