//! Tune negotiation: channel_max, frame_max and heartbeat.

use std::time::Duration;

use amqp_wire::constants::FRAME_MIN_SIZE;

/// The negotiated limits of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// Highest channel number.
    pub channel_max: u16,
    /// Largest frame in bytes, header and frame-end octet included.
    pub frame_max: u32,
    /// Heartbeat interval in seconds (0: no heartbeats).
    pub heartbeat: u16,
}

impl Tuning {
    /// The heartbeat interval, if heartbeats are on.
    pub fn heartbeat_interval(&self) -> Option<Duration> {
        (self.heartbeat > 0).then(|| Duration::from_secs(u64::from(self.heartbeat)))
    }
}

/// The smaller of two limits where 0 means "no limit".
fn smaller_nonzero<T: Ord + Default + Copy>(a: T, b: T) -> T {
    let zero = T::default();
    match (a == zero, b == zero) {
        (true, _) => b,
        (_, true) => a,
        _ => a.min(b),
    }
}

/// Negotiates what the server proposed in `connection.tune` with what we
/// accept (`ours`, from the configuration):
///
/// - heartbeat: if either side is 0 the other wins, else the smaller;
/// - channel_max and frame_max: the smaller non-zero value (0 is "no
///   limit"), capped by our own limit; frame_max never below 4096.
pub(crate) fn negotiate(ours: Tuning, server: Tuning) -> Tuning {
    let heartbeat = match (ours.heartbeat, server.heartbeat) {
        (0, other) | (other, 0) => other,
        (a, b) => a.min(b),
    };
    let channel_max = smaller_nonzero(ours.channel_max, server.channel_max);
    let frame_max = smaller_nonzero(ours.frame_max, server.frame_max).max(FRAME_MIN_SIZE);
    Tuning {
        channel_max: if channel_max == 0 {
            crate::config::MAX_CHANNELS
        } else {
            channel_max
        },
        frame_max: if frame_max == 0 {
            crate::config::MAX_FRAME_SIZE
        } else {
            frame_max
        },
        heartbeat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(channel_max: u16, frame_max: u32, heartbeat: u16) -> Tuning {
        Tuning {
            channel_max,
            frame_max,
            heartbeat,
        }
    }

    #[test]
    fn heartbeat_zero_on_either_side_lets_the_other_win() {
        assert_eq!(negotiate(t(10, 8192, 0), t(10, 8192, 60)).heartbeat, 60);
        assert_eq!(negotiate(t(10, 8192, 30), t(10, 8192, 0)).heartbeat, 30);
        assert_eq!(negotiate(t(10, 8192, 0), t(10, 8192, 0)).heartbeat, 0);
    }

    #[test]
    fn heartbeat_takes_the_smaller_when_both_set() {
        assert_eq!(negotiate(t(10, 8192, 30), t(10, 8192, 60)).heartbeat, 30);
        assert_eq!(negotiate(t(10, 8192, 90), t(10, 8192, 60)).heartbeat, 60);
    }

    #[test]
    fn channel_max_is_the_smaller_nonzero() {
        assert_eq!(negotiate(t(2047, 8192, 0), t(0, 8192, 0)).channel_max, 2047);
        assert_eq!(
            negotiate(t(2047, 8192, 0), t(100, 8192, 0)).channel_max,
            100
        );
        assert_eq!(negotiate(t(10, 8192, 0), t(2047, 8192, 0)).channel_max, 10);
    }

    #[test]
    fn frame_max_is_the_smaller_nonzero_never_below_4096_and_capped_by_ours() {
        assert_eq!(negotiate(t(1, 131_072, 0), t(1, 0, 0)).frame_max, 131_072);
        assert_eq!(
            negotiate(t(1, 131_072, 0), t(1, 1 << 30, 0)).frame_max,
            131_072
        );
        assert_eq!(
            negotiate(t(1, 131_072, 0), t(1, 65_536, 0)).frame_max,
            65_536
        );
        // A server proposing less than the minimum is refused when its
        // tune frame is decoded; negotiation still never goes below it.
        assert_eq!(negotiate(t(1, 131_072, 0), t(1, 100, 0)).frame_max, 4096);
    }
}
