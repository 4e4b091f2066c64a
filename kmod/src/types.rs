//! Small value types of the engine's interface.

use core::fmt;

use hv_vss_proto::{APP_DEVICE_NAME, FS_DEVICE_NAME};
use thiserror::Error;

/// A point on the caller's monotonic clock, in milliseconds. Only
/// differences matter; the FreeBSD glue uses `getsbinuptime()`, the
/// simulator the time since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl Millis {
    /// `self` plus `ms` milliseconds, saturating (a clock near `u64::MAX`
    /// must not wrap a deadline into the past).
    #[must_use]
    pub const fn plus(self, ms: u32) -> Self {
        Self(self.0.saturating_add(ms as u64))
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ms", self.0)
    }
}

/// One of the module's two character devices. The discriminants are the
/// values of the C ABI (`HVVSS_DEV_FS`, `HVVSS_DEV_APP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Device {
    /// `/dev/hv_fsvss_dev`: the daemon that freezes filesystems.
    Fs = 0,
    /// `/dev/hv_appvss_dev`: an application that quiesces itself.
    App = 1,
}

impl Device {
    /// Both devices, in index order.
    pub const ALL: [Self; 2] = [Self::Fs, Self::App];

    /// Index into per-device arrays (0 or 1).
    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The device for a C ABI value.
    #[must_use]
    pub const fn from_index(index: usize) -> Option<Self> {
        match index {
            0 => Some(Self::Fs),
            1 => Some(Self::App),
            _ => None,
        }
    }

    /// The node name under `/dev`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Fs => FS_DEVICE_NAME,
            Self::App => APP_DEVICE_NAME,
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Tunables. Changing them with [`crate::VssEngine::set_config`] affects the
/// next request, never one in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Config {
    /// Deadline for one host request's whole chain (app and daemon), from
    /// its arrival. The base driver's 15 s.
    pub timeout_ms: u32,
    /// Extra time, after a failure or the deadline, for the parties to
    /// acknowledge the rollback THAW before the host is answered anyway. The
    /// host therefore always gets its reply within `timeout_ms +
    /// rollback_timeout_ms` of the request.
    pub rollback_timeout_ms: u32,
}

impl Config {
    /// 15 s for the chain (as the base driver), 5 s for a rollback.
    pub const DEFAULT: Self = Self {
        timeout_ms: 15_000,
        rollback_timeout_ms: 5_000,
    };

    /// Accepted range of [`Self::timeout_ms`] for the sysctl: 1 s to 10 min.
    pub const TIMEOUT_MS_RANGE: (u32, u32) = (1_000, 600_000);
    /// Accepted range of [`Self::rollback_timeout_ms`]: 100 ms to 1 min.
    /// Never 0: the parties must get a chance to thaw before the reply.
    pub const ROLLBACK_TIMEOUT_MS_RANGE: (u32, u32) = (100, 60_000);

    /// Whether both values are within their ranges (what the glue's
    /// sysctls accept; [`crate::VssEngine::set_config`] itself takes any).
    #[must_use]
    pub const fn is_valid(&self) -> bool {
        let (t_min, t_max) = Self::TIMEOUT_MS_RANGE;
        let (r_min, r_max) = Self::ROLLBACK_TIMEOUT_MS_RANGE;
        self.timeout_ms >= t_min
            && self.timeout_ms <= t_max
            && self.rollback_timeout_ms >= r_min
            && self.rollback_timeout_ms <= r_max
    }

    /// The latest a request arriving at `arrival` is answered.
    #[must_use]
    pub const fn reply_bound(&self, arrival: Millis) -> Millis {
        arrival.plus(self.timeout_ms).plus(self.rollback_timeout_ms)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a device could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum OpenError {
    /// One opener at a time (EBUSY): close the other descriptor first, or
    /// stop the other daemon/application that holds it.
    #[error("device is already open: only one process may hold it (EBUSY)")]
    Busy,
}
