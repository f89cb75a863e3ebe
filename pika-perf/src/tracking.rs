//! Counting what arrived: sequence numbers seen by a consumer (lost and
//! duplicated messages), and publisher confirms by delivery tag.

use std::collections::VecDeque;

/// Which of the sequence numbers `0..n` arrived, and how often.
///
/// ```
/// let mut seen = pika_perf::tracking::SeqTracker::new(3);
/// seen.record(Some(0));
/// seen.record(Some(2));
/// seen.record(Some(2));
/// assert_eq!((seen.lost(), seen.dup()), (1, 1));
/// ```
#[derive(Debug, Clone)]
pub struct SeqTracker {
    bits: Vec<u64>,
    n: u64,
    distinct: u64,
    dup: u64,
}

impl SeqTracker {
    /// Expects the sequence numbers `0..n`.
    pub fn new(n: u64) -> SeqTracker {
        SeqTracker {
            bits: vec![0; n.div_ceil(64) as usize],
            n,
            distinct: 0,
            dup: 0,
        }
    }

    /// Records one message; a number seen before, out of range or missing
    /// (`None`: the body was too short) counts as a duplicate. Returns
    /// true when the number was new.
    pub fn record(&mut self, seq: Option<u64>) -> bool {
        let Some(seq) = seq.filter(|&s| s < self.n) else {
            self.dup += 1;
            return false;
        };
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if self.bits[word] & bit != 0 {
            self.dup += 1;
            return false;
        }
        self.bits[word] |= bit;
        self.distinct += 1;
        true
    }

    /// True once every number arrived.
    pub fn is_complete(&self) -> bool {
        self.distinct == self.n
    }

    /// Distinct numbers seen.
    pub fn distinct(&self) -> u64 {
        self.distinct
    }

    /// Numbers that did not arrive (yet).
    pub fn lost(&self) -> u64 {
        self.n - self.distinct
    }

    /// Messages that arrived more than once (or made no sense).
    pub fn dup(&self) -> u64 {
        self.dup
    }
}

/// The messages of one queue of W: the sequence numbers `seq` of `0..n`
/// with `seq % w == i` (see [`share`](crate::scenario::share)), and their
/// index `seq / w` in the queue's own [`SeqTracker`].
///
/// ```
/// use pika_perf::tracking::Share;
/// let share = Share::new(10, 4, 1);
/// assert_eq!(share.seqs().collect::<Vec<_>>(), [1, 5, 9]);
/// let mut seen = share.tracker();
/// seen.record(share.local(Some(5)));
/// seen.record(share.local(Some(6))); // another queue's: a duplicate
/// assert_eq!((seen.lost(), seen.dup()), (2, 1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    n: u64,
    w: u64,
    i: u64,
}

impl Share {
    /// Queue `i` of `w`, out of the messages `0..n`.
    pub fn new(n: u64, w: u32, i: u32) -> Share {
        Share {
            n,
            w: u64::from(w.max(1)),
            i: u64::from(i),
        }
    }

    /// Its sequence numbers, in order.
    pub fn seqs(&self) -> impl Iterator<Item = u64> {
        (self.i..self.n).step_by(self.w as usize)
    }

    /// How many there are.
    pub fn len(&self) -> u64 {
        crate::scenario::share(self.n, self.w as u32, self.i as u32)
    }

    /// True when the share holds no message (more queues than messages).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A tracker of this share's messages.
    pub fn tracker(&self) -> SeqTracker {
        SeqTracker::new(self.len())
    }

    /// The index of `seq` in [`tracker`](Self::tracker), or `None` (which
    /// the tracker counts as a duplicate) when it is not of this share.
    pub fn local(&self, seq: Option<u64>) -> Option<u64> {
        seq.filter(|&s| s < self.n && s % self.w == self.i)
            .map(|s| s / self.w)
    }
}

/// Publisher confirms of one channel: delivery tags 1, 2, ... in publish
/// order, settled by `basic.ack`/`basic.nack` one at a time or with
/// `multiple`.
///
/// ```
/// let mut confirms = pika_perf::tracking::ConfirmTracker::default();
/// for _ in 0..3 { confirms.published(); }
/// confirms.settle(2, true, true);
/// assert_eq!((confirms.acked(), confirms.in_flight()), (2, 1));
/// confirms.settle(3, false, false);
/// assert_eq!((confirms.nacked(), confirms.in_flight()), (1, 0));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ConfirmTracker {
    /// The lowest tag not settled yet, minus one.
    base: u64,
    /// Settled flags of the tags `base + 1 ..= published`.
    settled: VecDeque<bool>,
    published: u64,
    acked: u64,
    nacked: u64,
}

impl ConfirmTracker {
    /// Records one more publish; returns its delivery tag.
    pub fn published(&mut self) -> u64 {
        self.published += 1;
        self.settled.push_back(false);
        self.published
    }

    /// Records an ack (`ack`) or nack of `tag`, and with `multiple` of
    /// every earlier tag. Tags settled before or never published are
    /// ignored.
    pub fn settle(&mut self, tag: u64, multiple: bool, ack: bool) {
        if tag <= self.base {
            return;
        }
        let index = (tag - self.base - 1) as usize;
        if index >= self.settled.len() {
            return;
        }
        let first = if multiple { 0 } else { index };
        let mut count = 0;
        for flag in self.settled.range_mut(first..=index) {
            if !*flag {
                *flag = true;
                count += 1;
            }
        }
        if ack {
            self.acked += count;
        } else {
            self.nacked += count;
        }
        while self.settled.front() == Some(&true) {
            self.settled.pop_front();
            self.base += 1;
        }
    }

    /// Publishes not settled yet.
    pub fn in_flight(&self) -> u64 {
        self.published - self.acked - self.nacked
    }

    /// Publishes so far.
    pub fn published_count(&self) -> u64 {
        self.published
    }

    /// Acked publishes.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Nacked publishes.
    pub fn nacked(&self) -> u64 {
        self.nacked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirms_out_of_order_and_multiple_settle_each_tag_once() {
        let mut confirms = ConfirmTracker::default();
        for _ in 0..5 {
            confirms.published();
        }
        confirms.settle(3, false, true);
        assert_eq!((confirms.acked(), confirms.in_flight()), (1, 4));
        confirms.settle(4, true, true);
        assert_eq!((confirms.acked(), confirms.in_flight()), (4, 1));
        confirms.settle(2, false, true);
        confirms.settle(9, false, true);
        assert_eq!(confirms.acked(), 4, "settled and unknown tags are ignored");
        confirms.settle(5, true, false);
        assert_eq!((confirms.nacked(), confirms.in_flight()), (1, 0));
    }

    #[test]
    fn sequence_numbers_out_of_range_count_as_duplicates() {
        let mut seen = SeqTracker::new(130);
        for seq in 0..130 {
            assert!(seen.record(Some(seq)));
        }
        assert!(seen.is_complete());
        assert!(!seen.record(Some(129)));
        assert!(!seen.record(Some(130)));
        assert!(!seen.record(None));
        assert_eq!((seen.lost(), seen.dup(), seen.distinct()), (0, 3, 130));
    }
}
