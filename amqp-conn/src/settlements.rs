//! Which of a channel's deliveries wait to be settled (acked, nacked or
//! rejected): the one authority on it, shared by the channel's handles
//! (which settle) and the connection task (which records deliveries).
//!
//! The broker numbers the deliveries of a channel (`basic.deliver` and
//! `basic.get-ok`) 1, 2, 3, ... A tag can be settled once: a second ack,
//! nack or reject of it, alone or covered by an earlier `multiple`, makes
//! the broker close the channel with 406 PRECONDITION_FAILED. Settling
//! here first, under the same lock that queues the frame, refuses such a
//! second settlement locally and keeps the frames in the order of the
//! book.
//!
//! Memory is the number of deliveries waiting (bounded by the prefetch
//! count or the consumers' buffers), not the number delivered: at most
//! twice that, plus a few entries (see [`TagSet`]).
//!
//! Settling costs the same whatever the number waiting: with many
//! consumers on one channel, each acking its own deliveries, tags are
//! settled out of the order they were delivered in, and removing each
//! from the middle of a list of thousands took a third of the
//! connection's work in the `fanout` benchmark (10 consumers, prefetch
//! 1,000 each).

use std::collections::VecDeque;

/// Why a settlement was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The tag was settled before (alone, or covered by a `multiple`), or
    /// was delivered without ack.
    AlreadySettled,
    /// No delivery with this tag was made on the channel.
    NeverDelivered,
    /// The delivery came over a connection that was lost before it was
    /// settled: the broker gives the message again.
    Stale,
}

/// The deliveries of one channel that wait to be settled.
#[derive(Debug, Default)]
pub(crate) struct Settlements {
    /// The highest tag delivered so far (0: none).
    last_delivered: u64,
    /// Tags delivered with ack and not yet settled.
    waiting: TagSet,
    /// Tags that waited when the connection was last lost (robust
    /// connections): settling them is refused as stale.
    stale: TagSet,
}

impl Settlements {
    /// The broker delivered `tag`; a `no_ack` delivery needs no settling.
    pub(crate) fn delivered(&mut self, tag: u64, no_ack: bool) {
        if tag >= TagSet::LIMIT {
            // A broker that counts a channel's deliveries this far is
            // broken; settling such a tag is refused as never delivered.
            return;
        }
        if tag <= self.last_delivered {
            // Tags only grow on a channel; a broker that repeats one gets
            // no second entry (its settlement would be refused anyway).
            return;
        }
        self.last_delivered = tag;
        if !no_ack {
            self.waiting.push(tag);
        }
    }

    /// Settles `tag` (and, with `multiple`, every waiting tag below it).
    /// On success, says whether every delivery up to `tag` is now settled:
    /// then an ack of `tag` may be sent as an ack with `multiple` set.
    pub(crate) fn settle(&mut self, tag: u64, multiple: bool) -> Result<bool, Refused> {
        let Some(index) = self.waiting.find(tag) else {
            if tag == 0 || tag > self.last_delivered {
                return Err(Refused::NeverDelivered);
            }
            return match self.stale.find(tag) {
                Some(index) => {
                    self.stale.remove(index);
                    Err(Refused::Stale)
                }
                None => Err(Refused::AlreadySettled),
            };
        };
        if multiple {
            self.waiting.remove_through(index);
        } else {
            self.waiting.remove(index);
        }
        Ok(self.all_settled_through(tag))
    }

    /// The connection was lost and the channel opens again: what waited
    /// can no longer be settled (the broker requeued it), and the new
    /// channel's deliveries are numbered after the last tag delivered.
    /// Returns that last tag: the offset of the new channel's tags.
    pub(crate) fn start_generation(&mut self) -> u64 {
        self.stale = std::mem::take(&mut self.waiting);
        self.stale.compact();
        self.last_delivered
    }

    /// True when `tag` was delivered and is settled.
    pub(crate) fn is_settled(&self, tag: u64) -> bool {
        tag != 0 && tag <= self.last_delivered && self.waiting.find(tag).is_none()
    }

    /// True when no delivery up to and including `tag` waits.
    fn all_settled_through(&self, tag: u64) -> bool {
        self.waiting.first().is_none_or(|first| first > tag)
    }

    /// Deliveries waiting to be settled.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

/// Increasing delivery tags, of which any may be removed, each removal in
/// constant time (amortised) after a binary search.
///
/// A tag removed from the middle is only marked ([`TagSet::REMOVED`]) and
/// stays in place, so the entries stay sorted; marked entries at the
/// front are dropped at once, and when marked entries are more than half
/// of all, they are all dropped in one pass. So the set holds at most
/// twice its tags plus [`TagSet::COMPACT_MIN`] entries, and the first
/// entry is always a tag in the set.
#[derive(Debug, Default)]
pub(crate) struct TagSet {
    /// Increasing tags; the ones with [`TagSet::REMOVED`] set are gone.
    entries: VecDeque<u64>,
    /// How many entries are marked removed.
    removed: usize,
}

impl TagSet {
    /// The mark of a removed entry: the top bit (tags are below 2^63:
    /// the broker numbers a channel's deliveries from 1).
    const REMOVED: u64 = 1 << 63;

    /// Tags from here on cannot be held.
    pub(crate) const LIMIT: u64 = Self::REMOVED;

    /// Below this many entries, marked ones are not swept (a sweep of a
    /// short list is not worth its pass).
    const COMPACT_MIN: usize = 64;

    /// Adds `tag`, greater than every tag added before.
    fn push(&mut self, tag: u64) {
        debug_assert!(tag < Self::LIMIT, "checked by Settlements::delivered");
        self.entries.push_back(tag);
    }

    /// Where `tag` is, if it is in the set.
    fn find(&self, tag: u64) -> Option<usize> {
        // Deliveries are mostly settled in order: the first, at once.
        if self.entries.front() == Some(&tag) {
            return Some(0);
        }
        let index = self
            .entries
            .binary_search_by_key(&tag, |&entry| entry & !Self::REMOVED)
            .ok()?;
        (self.entries[index] & Self::REMOVED == 0).then_some(index)
    }

    /// Removes the tag at `index` (from [`TagSet::find`]).
    fn remove(&mut self, index: usize) {
        if index == 0 {
            self.entries.pop_front();
            self.drop_removed_front();
            return;
        }
        self.entries[index] |= Self::REMOVED;
        self.removed += 1;
        self.sweep_if_mostly_removed();
    }

    /// Removes the tag at `index` and every tag before it.
    fn remove_through(&mut self, index: usize) {
        let marked = self
            .entries
            .drain(..=index)
            .filter(|&entry| entry & Self::REMOVED != 0)
            .count();
        self.removed -= marked;
        self.drop_removed_front();
        // Taking tags from the front can leave the rest mostly marked.
        self.sweep_if_mostly_removed();
    }

    /// Drops the marked entries once they are more than half of all.
    fn sweep_if_mostly_removed(&mut self) {
        if self.entries.len() >= Self::COMPACT_MIN && self.removed * 2 > self.entries.len() {
            self.compact();
        }
    }

    /// The smallest tag in the set.
    fn first(&self) -> Option<u64> {
        self.entries.front().copied()
    }

    /// How many tags are in the set.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len() - self.removed
    }

    /// Drops the entries marked removed.
    fn compact(&mut self) {
        if self.removed > 0 {
            self.entries.retain(|&entry| entry & Self::REMOVED == 0);
            self.removed = 0;
        }
    }

    /// Keeps the first entry a tag in the set.
    fn drop_removed_front(&mut self) {
        while let Some(&front) = self.entries.front() {
            if front & Self::REMOVED == 0 {
                break;
            }
            self.entries.pop_front();
            self.removed -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivered(tags: std::ops::RangeInclusive<u64>) -> Settlements {
        let mut s = Settlements::default();
        for tag in tags {
            s.delivered(tag, false);
        }
        s
    }

    #[test]
    fn in_order_settlements_say_everything_below_is_settled() {
        let mut s = delivered(1..=3);
        assert_eq!(s.settle(1, false), Ok(true));
        assert_eq!(s.settle(2, false), Ok(true));
        assert_eq!(s.waiting(), 1);
    }

    #[test]
    fn an_unsettled_tag_holds_back_the_ones_after_it() {
        let mut s = delivered(1..=3);
        assert_eq!(s.settle(2, false), Ok(false));
        assert_eq!(s.settle(3, false), Ok(false));
        assert_eq!(s.settle(1, false), Ok(true));
    }

    #[test]
    fn a_multiple_settle_covers_every_tag_below() {
        let mut s = delivered(1..=5);
        assert_eq!(s.settle(4, true), Ok(true));
        for tag in 1..=4 {
            assert!(s.is_settled(tag));
            assert_eq!(s.settle(tag, false), Err(Refused::AlreadySettled));
        }
        assert!(!s.is_settled(5));
    }

    #[test]
    fn a_second_settlement_is_refused() {
        let mut s = delivered(1..=3);
        assert_eq!(s.settle(2, false), Ok(false));
        assert_eq!(s.settle(2, false), Err(Refused::AlreadySettled));
        assert_eq!(s.settle(2, true), Err(Refused::AlreadySettled));
        // A multiple over a settled tag is fine: the broker skips it.
        assert_eq!(s.settle(3, true), Ok(true));
    }

    #[test]
    fn tags_never_delivered_are_refused() {
        let mut s = delivered(1..=3);
        assert_eq!(s.settle(0, false), Err(Refused::NeverDelivered));
        assert_eq!(s.settle(4, false), Err(Refused::NeverDelivered));
        assert!(!s.is_settled(4));
    }

    #[test]
    fn no_ack_deliveries_are_settled_on_arrival() {
        let mut s = Settlements::default();
        s.delivered(1, true);
        s.delivered(2, false);
        s.delivered(3, true);
        assert!(s.is_settled(1));
        assert_eq!(s.settle(1, false), Err(Refused::AlreadySettled));
        assert_eq!(s.settle(2, false), Ok(true));
    }

    #[test]
    fn what_waited_when_the_connection_was_lost_is_stale() {
        let mut s = delivered(1..=4);
        assert_eq!(s.settle(2, false), Ok(false));
        assert_eq!(s.start_generation(), 4);
        assert_eq!(s.settle(1, false), Err(Refused::Stale));
        assert_eq!(s.settle(1, false), Err(Refused::AlreadySettled));
        assert_eq!(s.settle(2, false), Err(Refused::AlreadySettled));
        assert_eq!(s.settle(4, true), Err(Refused::Stale));
        // The new channel's deliveries come after the offset.
        s.delivered(5, false);
        s.delivered(6, false);
        assert_eq!(s.settle(6, true), Ok(true));
        assert!(s.is_settled(5));
        assert_eq!(s.settle(3, false), Err(Refused::Stale));
    }

    #[test]
    fn memory_is_the_deliveries_waiting_not_the_deliveries_made() {
        let mut s = Settlements::default();
        s.delivered(1, false);
        for tag in 2..=100_000 {
            s.delivered(tag, false);
            assert_eq!(s.settle(tag, false), Ok(false));
        }
        assert_eq!(s.waiting(), 1);
        assert_eq!(s.settle(1, false), Ok(true));
    }

    /// Random deliveries, settlements (single and multiple, in any order,
    /// repeated, of tags never delivered) and lost connections, against a
    /// plain set of the tags that wait; with enough tags waiting that
    /// marked entries are swept many times.
    #[test]
    fn any_order_of_settlements_agrees_with_a_set_of_waiting_tags() {
        use std::collections::BTreeSet;
        let mut next = crate::test_random::below_from(0x9e37_79b9_7f4a_7c15u64);
        for _ in 0..100 {
            let mut s = Settlements::default();
            let (mut waiting, mut stale) = (BTreeSet::new(), BTreeSet::new());
            let mut last = 0u64;
            for _ in 0..2_000 {
                match next(10) {
                    0..=3 => {
                        last += 1;
                        let no_ack = next(8) == 0;
                        s.delivered(last, no_ack);
                        if !no_ack {
                            waiting.insert(last);
                        }
                    }
                    4 if next(50) == 0 => {
                        assert_eq!(s.start_generation(), last);
                        stale = std::mem::take(&mut waiting);
                    }
                    _ => {
                        let tag = next(last + 2);
                        let multiple = next(6) == 0;
                        let expected = if waiting.contains(&tag) {
                            if multiple {
                                waiting.retain(|&t| t > tag);
                            } else {
                                waiting.remove(&tag);
                            }
                            Ok(waiting.first().is_none_or(|&first| first > tag))
                        } else if tag == 0 || tag > last {
                            Err(Refused::NeverDelivered)
                        } else if stale.remove(&tag) {
                            Err(Refused::Stale)
                        } else {
                            Err(Refused::AlreadySettled)
                        };
                        assert_eq!(s.settle(tag, multiple), expected, "tag {tag}");
                    }
                }
                assert_eq!(s.waiting(), waiting.len());
                assert!(s.waiting.entries.len() <= 2 * waiting.len() + TagSet::COMPACT_MIN);
            }
            for tag in 1..=last {
                assert_eq!(s.is_settled(tag), !waiting.contains(&tag));
            }
        }
    }

    #[test]
    fn a_multiple_settle_of_the_front_leaves_no_mostly_marked_rest() {
        let mut s = delivered(1..=300);
        // 149 tags settled one by one: just short of a sweep (150 of 300).
        for tag in 150..=298 {
            assert_eq!(s.settle(tag, false), Ok(false));
        }
        assert_eq!(s.waiting.entries.len(), 300);
        // Taking the 100 at the front leaves 149 marked of 200.
        assert_eq!(s.settle(100, true), Ok(true));
        assert_eq!(s.waiting(), 51);
        assert!(s.waiting.entries.len() <= 2 * 51 + TagSet::COMPACT_MIN);
    }

    #[test]
    fn a_tag_too_large_to_hold_is_refused_as_never_delivered() {
        let mut s = delivered(1..=2);
        s.delivered(u64::MAX, false);
        assert_eq!(s.settle(u64::MAX, false), Err(Refused::NeverDelivered));
        assert_eq!(s.settle(2, true), Ok(true));
    }
}
