//! CLOCK_MONOTONIC in nanoseconds: the clock the probe shim stamps its
//! records with, so host-side times and in-process freeze times compare.

use nix::time::{ClockId, clock_gettime};

/// Nanoseconds on CLOCK_MONOTONIC.
pub(crate) fn now_ns() -> u64 {
    // CLOCK_MONOTONIC cannot fail on Linux; 0 would only make a sample odd.
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000_000
            + u64::try_from(t.tv_nsec()).unwrap_or(0)
    })
}

/// `later - earlier` as a Duration (zero if the order is reversed).
pub(crate) fn between(earlier: u64, later: u64) -> std::time::Duration {
    std::time::Duration::from_nanos(later.saturating_sub(earlier))
}
