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
//! count or the consumers' buffers), not the number delivered.

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
    /// Tags delivered with ack and not yet settled, in increasing order.
    waiting: VecDeque<u64>,
    /// Tags that waited when the connection was last lost (robust
    /// connections): settling them is refused as stale.
    stale: VecDeque<u64>,
}

impl Settlements {
    /// The broker delivered `tag`; a `no_ack` delivery needs no settling.
    pub(crate) fn delivered(&mut self, tag: u64, no_ack: bool) {
        if tag <= self.last_delivered {
            // Tags only grow on a channel; a broker that repeats one gets
            // no second entry (its settlement would be refused anyway).
            return;
        }
        self.last_delivered = tag;
        if !no_ack {
            self.waiting.push_back(tag);
        }
    }

    /// Settles `tag` (and, with `multiple`, every waiting tag below it).
    /// On success, says whether every delivery up to `tag` is now settled:
    /// then an ack of `tag` may be sent as an ack with `multiple` set.
    pub(crate) fn settle(&mut self, tag: u64, multiple: bool) -> Result<bool, Refused> {
        let index = match self.waiting.binary_search(&tag) {
            Ok(index) => index,
            Err(_) if tag == 0 || tag > self.last_delivered => return Err(Refused::NeverDelivered),
            Err(_) => {
                return match self.stale.binary_search(&tag) {
                    Ok(index) => {
                        self.stale.remove(index);
                        Err(Refused::Stale)
                    }
                    Err(_) => Err(Refused::AlreadySettled),
                }
            }
        };
        if multiple {
            self.waiting.drain(..=index);
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
        self.last_delivered
    }

    /// True when `tag` was delivered and is settled.
    pub(crate) fn is_settled(&self, tag: u64) -> bool {
        tag != 0 && tag <= self.last_delivered && self.waiting.binary_search(&tag).is_err()
    }

    /// True when no delivery up to and including `tag` waits.
    fn all_settled_through(&self, tag: u64) -> bool {
        self.waiting.front().is_none_or(|&first| first > tag)
    }

    /// Deliveries waiting to be settled.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.len()
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
}
