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

/// The process's resident set size now, in KiB (`VmRSS` of
/// `/proc/self/status`; 0 where there is no such file).
pub fn rss_kib() -> u64 {
    proc_status_kib("VmRSS:")
}

/// The process's peak resident set size so far, in KiB (`VmHWM`).
pub fn peak_rss_kib() -> u64 {
    proc_status_kib("VmHWM:")
}

fn proc_status_kib(field: &str) -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rss_is_read_and_the_peak_is_at_least_the_current() {
        let (now, peak) = (super::rss_kib(), super::peak_rss_kib());
        assert!(now > 0, "VmRSS read from /proc/self/status");
        assert!(peak >= now);
    }
}
