//! The channels with held commands, in the order they take turns to send
//! them (see `ConnectionState::release_held`).

use std::collections::VecDeque;

/// Channel numbers in turn order, each at most once. Whether a number is
/// queued is a bit, so queuing costs the same with 2,047 channels as with
/// one (a search of the queue made each held publish cost in proportion
/// to the channels holding).
///
/// A number stands for whichever channel has it when its turn comes: a
/// channel closed and opened again under the same number keeps the turn.
#[derive(Debug, Default)]
pub(crate) struct HoldingQueue {
    order: VecDeque<u16>,
    /// Bit `id` set: `id` is in `order`.
    queued: Vec<u64>,
}

impl HoldingQueue {
    fn bit(id: u16) -> (usize, u64) {
        (usize::from(id / 64), 1 << (id % 64))
    }

    /// Queues `id` at the back, unless it is queued already.
    pub(crate) fn push(&mut self, id: u16) {
        let (word, bit) = Self::bit(id);
        if self.queued.len() <= word {
            self.queued.resize(word + 1, 0);
        }
        if self.queued[word] & bit == 0 {
            self.queued[word] |= bit;
            self.order.push_back(id);
        }
    }

    /// The channel whose turn it is.
    pub(crate) fn front(&self) -> Option<u16> {
        self.order.front().copied()
    }

    /// Ends the turn of the channel at the front.
    pub(crate) fn pop_front(&mut self) -> Option<u16> {
        let id = self.order.pop_front()?;
        let (word, bit) = Self::bit(id);
        self.queued[word] &= !bit;
        Some(id)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        self.order.iter().copied()
    }

    pub(crate) fn clear(&mut self) {
        self.order.clear();
        self.queued.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_channel_is_queued_once_in_turn_order() {
        let mut q = HoldingQueue::default();
        for id in [5, 2047, 5, 1, 2047, 64, 63] {
            q.push(id);
        }
        assert_eq!(q.iter().collect::<Vec<_>>(), [5, 2047, 1, 64, 63]);
        assert_eq!(q.pop_front(), Some(5));
        q.push(5);
        q.push(2047);
        assert_eq!(q.iter().collect::<Vec<_>>(), [2047, 1, 64, 63, 5]);
        q.clear();
        assert_eq!(q.front(), None);
        q.push(2047);
        assert_eq!(q.pop_front(), Some(2047));
        assert_eq!(q.pop_front(), None);
    }
}
