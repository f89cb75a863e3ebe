//! Heartbeat bookkeeping, with time passed in.
//!
//! Send a heartbeat when nothing was written for half the interval;
//! declare the peer dead after two intervals with nothing read, unless
//! reading is paused (by the broker's `connection.blocked`, or by us while
//! a consumer's buffer is full), when silence proves nothing.

use std::time::Duration;

use tokio::time::Instant;

/// What the timer asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeartbeatAction {
    /// Nothing to do yet.
    Idle,
    /// Write a heartbeat frame.
    Send,
    /// Nothing was read for two intervals: the connection is dead.
    Dead {
        /// How long nothing was read.
        silent_for: Duration,
    },
}

#[derive(Debug)]
pub(crate) struct Heartbeat {
    interval: Duration,
    last_read: Instant,
    last_write: Instant,
}

impl Heartbeat {
    pub(crate) fn new(interval: Duration, now: Instant) -> Self {
        Heartbeat {
            interval,
            last_read: now,
            last_write: now,
        }
    }

    pub(crate) fn interval(&self) -> Duration {
        self.interval
    }

    pub(crate) fn on_read(&mut self, now: Instant) {
        self.last_read = now;
    }

    pub(crate) fn on_write(&mut self, now: Instant) {
        self.last_write = now;
    }

    /// When the timer should fire next.
    pub(crate) fn deadline(&self) -> Instant {
        (self.last_write + self.interval / 2).min(self.last_read + self.interval * 2)
    }

    /// Called when the timer fires (or at any time): what to do now.
    /// `reads_paused` suspends the death check and restarts its clock.
    pub(crate) fn poll(&mut self, now: Instant, reads_paused: bool) -> HeartbeatAction {
        if reads_paused {
            self.last_read = now;
        }
        let silent_for = now.saturating_duration_since(self.last_read);
        if silent_for >= self.interval * 2 {
            return HeartbeatAction::Dead { silent_for };
        }
        if now.saturating_duration_since(self.last_write) >= self.interval / 2 {
            self.last_write = now;
            return HeartbeatAction::Send;
        }
        HeartbeatAction::Idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sends_after_half_an_idle_interval() {
        let start = Instant::now();
        let mut hb = Heartbeat::new(Duration::from_secs(10), start);
        assert_eq!(hb.deadline(), start + Duration::from_secs(5));
        assert_eq!(
            hb.poll(start + Duration::from_secs(4), false),
            HeartbeatAction::Idle
        );
        hb.on_read(start + Duration::from_secs(4));
        assert_eq!(
            hb.poll(start + Duration::from_secs(5), false),
            HeartbeatAction::Send
        );
        // Writing resets the send clock.
        hb.on_write(start + Duration::from_secs(8));
        assert_eq!(
            hb.poll(start + Duration::from_secs(12), false),
            HeartbeatAction::Idle
        );
        assert_eq!(hb.deadline(), start + Duration::from_secs(13));
    }

    #[tokio::test(start_paused = true)]
    async fn dead_after_two_silent_intervals() {
        let start = Instant::now();
        let mut hb = Heartbeat::new(Duration::from_secs(10), start);
        hb.on_read(start + Duration::from_secs(1));
        assert_eq!(
            hb.poll(start + Duration::from_secs(20), false),
            HeartbeatAction::Send
        );
        assert_eq!(
            hb.poll(start + Duration::from_secs(21), false),
            HeartbeatAction::Dead {
                silent_for: Duration::from_secs(20)
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn silence_while_blocked_is_not_death() {
        let start = Instant::now();
        let mut hb = Heartbeat::new(Duration::from_secs(10), start);
        for s in (5..100).step_by(5) {
            hb.on_write(start + Duration::from_secs(s));
            assert_eq!(
                hb.poll(start + Duration::from_secs(s), true),
                HeartbeatAction::Idle
            );
        }
        // Unblocked at 95 s: the clock starts again from there.
        assert_eq!(
            hb.poll(start + Duration::from_secs(110), false),
            HeartbeatAction::Send
        );
        assert!(matches!(
            hb.poll(start + Duration::from_secs(116), false),
            HeartbeatAction::Dead { .. }
        ));
    }
}
