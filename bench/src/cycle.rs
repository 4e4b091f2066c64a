//! One measured freeze/thaw cycle, whoever performed it, and what the
//! benchmark derives from it.
//!
//! Timestamps are CLOCK_MONOTONIC ns. The "host" is whoever asks: the
//! simulated Hyper-V host, the qemu-ga client, or the floor's own loop.
//! - `t0`: the host sends FREEZE; `t1`: it has the reply ("all frozen");
//! - `t2`: it sends THAW (immediately: a zero-length snapshot); `t3`: reply.
//!
//! **Freeze window**: how long filesystems stay frozen beyond what the host
//! needs. The host needs them frozen from `t1` (it takes its snapshot once
//! told "frozen") to `t2` (it is done). They actually are frozen (writes
//! block) from the moment the first FIFREEZE is called until the last FITHAW
//! returns, so the window is
//! `(t1 − first FIFREEZE call) + (last FITHAW return − t2)`.
//! It includes the inherent freezing and thawing of N filesystems one after
//! the other (the floor's window) plus every delay a system adds while
//! something is already frozen: its messaging to the host, its bookkeeping,
//! its reply path.

use std::time::Duration;

use crate::clock::between;
use crate::probe::FreezeSpan;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cycle {
    pub(crate) t0: u64,
    pub(crate) t1: u64,
    pub(crate) t2: u64,
    pub(crate) t3: u64,
    /// When the first successful FIFREEZE was called (None: not observed).
    pub(crate) first_freeze_start: Option<u64>,
    /// When the last successful FITHAW returned (None: not observed).
    pub(crate) last_thaw_end: Option<u64>,
}

impl Cycle {
    /// A cycle of a probed process (qemu-ga, the daemon): the host's four
    /// timestamps `[t0, t1, t2, t3]` and when the process froze and thawed.
    pub(crate) fn probed([t0, t1, t2, t3]: [u64; 4], span: &FreezeSpan) -> Self {
        Self {
            t0,
            t1,
            t2,
            t3,
            first_freeze_start: span.first_freeze_start,
            last_thaw_end: span.last_thaw_end,
        }
    }

    /// FREEZE request to THAW reply, as the host sees it.
    pub(crate) fn round_trip(&self) -> Duration {
        between(self.t0, self.t1) + between(self.t2, self.t3)
    }

    pub(crate) fn freeze_latency(&self) -> Duration {
        between(self.t0, self.t1)
    }

    pub(crate) fn thaw_latency(&self) -> Duration {
        between(self.t2, self.t3)
    }

    /// See the module documentation.
    pub(crate) fn freeze_window(&self) -> Option<Duration> {
        Some(between(self.first_freeze_start?, self.t1) + between(self.t2, self.last_thaw_end?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_counts_frozen_time_outside_the_hosts_interval() {
        let cycle = Cycle {
            t0: 1_000,
            first_freeze_start: Some(1_400),
            t1: 2_000,
            t2: 2_100,
            last_thaw_end: Some(2_700),
            t3: 3_000,
        };
        assert_eq!(cycle.round_trip(), Duration::from_nanos(1_000 + 900));
        assert_eq!(cycle.freeze_window(), Some(Duration::from_nanos(600 + 600)));
        let unobserved = Cycle {
            first_freeze_start: None,
            ..cycle
        };
        assert_eq!(unobserved.freeze_window(), None);
    }
}
