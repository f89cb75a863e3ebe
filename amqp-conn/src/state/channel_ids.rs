//! Channel number allocation within channel_max, reusing freed numbers.

/// Which channel numbers (1..=channel_max) are in use.
#[derive(Debug)]
pub(crate) struct ChannelIds {
    in_use: Vec<bool>,
    /// Where the next search starts: numbers are handed out in rising
    /// order and wrap around, so a just-freed number is not reused at
    /// once (late frames for the old channel cannot be mistaken).
    next: u16,
}

impl ChannelIds {
    pub(crate) fn new(channel_max: u16) -> Self {
        ChannelIds {
            in_use: vec![false; usize::from(channel_max) + 1],
            next: 1,
        }
    }

    pub(crate) fn channel_max(&self) -> u16 {
        (self.in_use.len() - 1) as u16
    }

    /// A free number, or `None` when all are in use.
    pub(crate) fn allocate(&mut self) -> Option<u16> {
        let max = self.channel_max();
        for offset in 0..max {
            let id = (self.next - 1 + offset) % max + 1;
            if !self.in_use[usize::from(id)] {
                self.in_use[usize::from(id)] = true;
                self.next = id % max + 1;
                return Some(id);
            }
        }
        None
    }

    /// Takes a specific number; false when it is 0, above channel_max or
    /// in use.
    pub(crate) fn take(&mut self, id: u16) -> bool {
        match self.in_use.get_mut(usize::from(id)) {
            Some(used) if id != 0 && !*used => {
                *used = true;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn release(&mut self, id: u16) {
        if let Some(used) = self.in_use.get_mut(usize::from(id)) {
            *used = false;
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
}
