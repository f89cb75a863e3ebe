//! The CPU time of this process (`getrusage(RUSAGE_SELF)`: every thread,
//! user and system), and a timed region that measures it with the wall
//! clock.

use std::time::{Duration, Instant};

use nix::sys::resource::{getrusage, UsageWho};
use nix::sys::time::TimeValLike;

/// User and system CPU time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTime {
    /// Time spent in user mode.
    pub user: Duration,
    /// Time spent in the kernel on the process's behalf.
    pub sys: Duration,
}

impl CpuTime {
    /// The process's CPU time so far (zero if `getrusage` fails, which it
    /// does not for `RUSAGE_SELF`).
    pub fn now() -> CpuTime {
        match getrusage(UsageWho::RUSAGE_SELF) {
            Ok(usage) => CpuTime {
                user: micros(usage.user_time().num_microseconds()),
                sys: micros(usage.system_time().num_microseconds()),
            },
            Err(_) => CpuTime::default(),
        }
    }

    /// The CPU time spent between `earlier` and `self`.
    pub fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            sys: self.sys.saturating_sub(earlier.sys),
        }
    }

    /// User plus system time.
    pub fn total(self) -> Duration {
        self.user + self.sys
    }
}

fn micros(us: i64) -> Duration {
    Duration::from_micros(us.max(0) as u64)
}

/// A timed region: wall clock and CPU time from [`start`](Self::start)
/// to [`stop`](Self::stop).
#[derive(Debug, Clone, Copy)]
pub struct Timer {
    wall: Instant,
    cpu: CpuTime,
}

/// What a [`Timer`] measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Elapsed {
    /// Wall-clock time.
    pub wall: Duration,
    /// CPU time of the whole process.
    pub cpu: CpuTime,
}

impl Timer {
    /// Starts measuring.
    pub fn start() -> Timer {
        Timer {
            cpu: CpuTime::now(),
            wall: Instant::now(),
        }
    }

    /// Stops measuring.
    pub fn stop(self) -> Elapsed {
        let wall = self.wall.elapsed();
        Elapsed {
            wall,
            cpu: CpuTime::now().since(self.cpu),
        }
    }
}
