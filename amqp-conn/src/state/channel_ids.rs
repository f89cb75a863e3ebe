//! Channel number allocation within channel_max, reusing freed numbers.

/// Which channel numbers (1..=channel_max) are in use: one bit each
/// (256 bytes for 2,047 channels).
#[derive(Debug)]
pub(crate) struct ChannelIds {
    in_use: Vec<u64>,
    channel_max: u16,
    /// Where the next search starts: numbers are handed out in rising
    /// order and wrap around, so a just-freed number is not reused at
    /// once (late frames for the old channel cannot be mistaken).
    next: u16,
}

impl ChannelIds {
    pub(crate) fn new(channel_max: u16) -> Self {
        ChannelIds {
            in_use: vec![0; (usize::from(channel_max) + 1).div_ceil(64)],
            channel_max,
            next: 1,
        }
    }

    pub(crate) fn channel_max(&self) -> u16 {
        self.channel_max
    }

    fn is_used(&self, id: u16) -> bool {
        self.in_use[usize::from(id / 64)] & (1 << (id % 64)) != 0
    }

    fn set(&mut self, id: u16, used: bool) {
        let (word, bit) = (&mut self.in_use[usize::from(id / 64)], 1u64 << (id % 64));
        if used {
            *word |= bit;
        } else {
            *word &= !bit;
        }
    }

    /// A free number, or `None` when all are in use.
    pub(crate) fn allocate(&mut self) -> Option<u16> {
        let max = u32::from(self.channel_max);
        for offset in 0..max {
            // In u32: with channel_max 65,535 the sum passes u16::MAX.
            let id = ((u32::from(self.next) - 1 + offset) % max + 1) as u16;
            if !self.is_used(id) {
                self.set(id, true);
                self.next = (u32::from(id) % max + 1) as u16;
                return Some(id);
            }
        }
        None
    }

    /// Takes a specific number; false when it is 0, above channel_max or
    /// in use.
    pub(crate) fn take(&mut self, id: u16) -> bool {
        if id == 0 || id > self.channel_max || self.is_used(id) {
            return false;
        }
        self.set(id, true);
        true
    }

    pub(crate) fn release(&mut self, id: u16) {
        if id <= self.channel_max {
            self.set(id, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_within_channel_max_and_reuses_freed_numbers() {
        let mut ids = ChannelIds::new(3);
        assert_eq!(
            [ids.allocate(), ids.allocate(), ids.allocate()],
            [Some(1), Some(2), Some(3)]
        );
        assert_eq!(ids.allocate(), None);
        ids.release(2);
        assert_eq!(ids.allocate(), Some(2));
        assert_eq!(ids.allocate(), None);
    }

    #[test]
    fn freed_numbers_are_not_reused_at_once_when_others_are_free() {
        let mut ids = ChannelIds::new(10);
        assert_eq!(ids.allocate(), Some(1));
        ids.release(1);
        assert_eq!(ids.allocate(), Some(2));
    }

    #[test]
    fn explicit_numbers() {
        let mut ids = ChannelIds::new(5);
        assert!(ids.take(4));
        assert!(!ids.take(4), "in use");
        assert!(!ids.take(0), "channel 0 is the connection");
        assert!(!ids.take(6), "above channel_max");
        assert_eq!(ids.allocate(), Some(1));
        assert_eq!(ids.allocate(), Some(2));
        assert_eq!(ids.allocate(), Some(3));
        assert_eq!(ids.allocate(), Some(5));
    }

    #[test]
    fn every_number_up_to_the_largest_channel_max() {
        let mut ids = ChannelIds::new(u16::MAX);
        for id in 1..=u16::MAX {
            assert_eq!(ids.allocate(), Some(id));
        }
        assert_eq!(ids.allocate(), None);
        ids.release(u16::MAX);
        ids.release(64);
        assert!(!ids.take(63), "in use");
        // The search wrapped around to 1.
        assert_eq!(ids.allocate(), Some(64));
        assert_eq!(ids.allocate(), Some(u16::MAX));
    }
}
