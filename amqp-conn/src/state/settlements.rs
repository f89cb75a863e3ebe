//! Which of a channel's delivery tags the application has settled (acked,
//! nacked or rejected, or delivered without ack), so that consecutive acks
//! can be merged into one `basic.ack` with `multiple` set.
//!
//! The broker numbers deliveries (`basic.deliver` and `basic.get-ok`) on a
//! channel 1, 2, 3, ... An ack of tag `t` with `multiple` acks every
//! unacked tag up to `t`. Sending it in place of single acks means the
//! same only when every tag up to `t` is already settled by the
//! application: [`Settlements::all_settled_through`] tells exactly that.
//! With merging, a consumer that acks each message one by one costs the
//! broker about one ack frame per read buffer instead of one per message.

use std::collections::VecDeque;

/// Past this many tags waiting behind an unsettled one, tracking stops for
/// the channel (acks then go out as the application sent them): memory
/// stays bounded when one delivery is never settled.
const TRACKED_TAGS_MAX: usize = 64 * 1024;

/// The settled delivery tags of one channel.
#[derive(Debug)]
pub(crate) struct Settlements {
    /// Every tag below this one is settled.
    first_unsettled: u64,
    /// Whether each tag from `first_unsettled` on, as delivered, is settled.
    settled: VecDeque<bool>,
    /// Tracking stopped (a gap in the numbering or too many tags held
    /// back): nothing is merged any more on this channel.
    stopped: bool,
}

impl Default for Settlements {
    fn default() -> Self {
        Settlements {
            first_unsettled: 1,
            settled: VecDeque::new(),
            stopped: false,
        }
    }
}

impl Settlements {
    /// The broker delivered `tag`; `no_ack` deliveries are settled already.
    pub(crate) fn delivered(&mut self, tag: u64, no_ack: bool) {
        if self.stopped {
            return;
        }
        let expected = self.first_unsettled + self.settled.len() as u64;
        if tag != expected || self.settled.len() >= TRACKED_TAGS_MAX {
            self.stop();
            return;
        }
        self.settled.push_back(no_ack);
        self.advance();
    }

    /// The application settled `tag` (and every tag below it when
    /// `multiple`). False when `tag` was not waiting to be settled (settled
    /// before, never delivered, or tracking stopped): such an ack must go
    /// out as sent, for the broker to refuse it.
    pub(crate) fn settle(&mut self, tag: u64, multiple: bool) -> bool {
        if self.stopped || tag < self.first_unsettled {
            return false;
        }
        let index = (tag - self.first_unsettled) as usize;
        if index >= self.settled.len() || self.settled[index] {
            return false;
        }
        if multiple {
            for flag in self.settled.range_mut(..=index) {
                *flag = true;
            }
        } else {
            self.settled[index] = true;
        }
        self.advance();
        true
    }

    /// True when every tag up to and including `tag` is settled: an ack of
    /// `tag` with `multiple` then acks nothing the application still holds.
    pub(crate) fn all_settled_through(&self, tag: u64) -> bool {
        !self.stopped && tag < self.first_unsettled
    }

    fn advance(&mut self) {
        while self.settled.front() == Some(&true) {
            self.settled.pop_front();
            self.first_unsettled += 1;
        }
    }

    fn stop(&mut self) {
        self.stopped = true;
        self.settled = VecDeque::new();
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
    fn in_order_acks_settle_everything_below() {
        let mut s = delivered(1..=3);
        assert!(!s.all_settled_through(1));
        s.settle(1, false);
        assert!(s.all_settled_through(1));
        s.settle(2, false);
        assert!(s.all_settled_through(2));
        assert!(!s.all_settled_through(3));
    }

    #[test]
    fn an_unsettled_tag_holds_back_the_ones_after_it() {
        let mut s = delivered(1..=3);
        s.settle(2, false);
        s.settle(3, false);
        assert!(!s.all_settled_through(3));
        s.settle(1, false);
        assert!(s.all_settled_through(3));
    }

    #[test]
    fn a_multiple_settle_covers_every_tag_below() {
        let mut s = delivered(1..=5);
        s.settle(4, true);
        assert!(s.all_settled_through(4));
        assert!(!s.all_settled_through(5));
    }

    #[test]
    fn no_ack_deliveries_are_settled_on_arrival() {
        let mut s = Settlements::default();
        s.delivered(1, true);
        s.delivered(2, false);
        s.delivered(3, true);
        assert!(s.all_settled_through(1));
        assert!(!s.all_settled_through(3));
        s.settle(2, false);
        assert!(s.all_settled_through(3));
    }

    #[test]
    fn unknown_and_repeated_tags_change_nothing() {
        let mut s = delivered(1..=3);
        assert!(!s.settle(7, false));
        assert!(!s.all_settled_through(1));
        assert!(s.settle(1, false));
        assert!(!s.settle(1, false));
        assert!(!s.all_settled_through(2));
        assert!(s.settle(3, false));
        assert!(!s.settle(3, false));
    }

    #[test]
    fn a_gap_in_the_numbering_stops_tracking() {
        let mut s = delivered(1..=2);
        s.delivered(4, false);
        s.settle(1, true);
        assert!(!s.all_settled_through(1));
    }

    #[test]
    fn one_unsettled_delivery_cannot_grow_memory_without_bound() {
        let mut s = Settlements::default();
        s.delivered(1, false);
        for tag in 2..=(TRACKED_TAGS_MAX as u64 + 10) {
            s.delivered(tag, true);
        }
        assert!(s.stopped);
        assert!(s.settled.is_empty());
        s.settle(1, false);
        assert!(!s.all_settled_through(1));
    }
}
