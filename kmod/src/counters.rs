//! Counters for the sysctls (`dev.hvvss_rs.0.*`) and the simulator's status.

use core::fmt;

use hv_vss_proto::{HostOperation, HostStatus};

use crate::event::FailReason;

/// Monotonic counters since the engine was created. They wrap only after
/// 2^64 events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Counters {
    /// Packets received from the host, of any kind.
    pub host_packets: u64,
    /// CHECK/FREEZE/THAW requests received (started or refused).
    pub requests: u64,
    /// Replies sent with HV_S_OK (negotiations included).
    pub replies_ok: u64,
    /// Replies sent with HV_E_FAIL (negotiations and malformed packets included).
    pub replies_failed: u64,
    /// Packets that did not parse (answered with failure when possible).
    pub malformed: u64,
    /// Malformed packets too short to carry an IC header: no reply possible.
    pub unanswerable: u64,
    /// Requests refused because another was in progress.
    pub busy: u64,
    /// Requests failed because the daemon's device was closed.
    pub daemon_absent: u64,
    /// Chains that ran past their deadline.
    pub timeouts: u64,
    /// Rollbacks started (THAW sent to parties that may be frozen).
    pub rollbacks: u64,
    /// Rollback windows that closed with a THAW still unanswered.
    pub rollback_timeouts: u64,
    /// Device answers rejected (late, wrong msgid, device or operation).
    pub rejected_acks: u64,
}

impl Counters {
    /// Names of the counters, in the order of [`Self::values`] and of the C
    /// ABI's counter indices.
    pub const NAMES: [&'static str; 12] = [
        "host_packets",
        "requests",
        "replies_ok",
        "replies_failed",
        "malformed",
        "unanswerable",
        "busy",
        "daemon_absent",
        "timeouts",
        "rollbacks",
        "rollback_timeouts",
        "rejected_acks",
    ];

    /// The values, in the order of [`Self::NAMES`].
    #[must_use]
    pub const fn values(&self) -> [u64; 12] {
        [
            self.host_packets,
            self.requests,
            self.replies_ok,
            self.replies_failed,
            self.malformed,
            self.unanswerable,
            self.busy,
            self.daemon_absent,
            self.timeouts,
            self.rollbacks,
            self.rollback_timeouts,
            self.rejected_acks,
        ]
    }
}

/// The outcome of the last CHECK/FREEZE/THAW request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LastResult {
    pub operation: HostOperation,
    pub status: HostStatus,
    /// Why it failed, when it did.
    pub reason: Option<FailReason>,
}

impl fmt::Display for LastResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.status, self.reason) {
            (HostStatus::Ok, _) => write!(f, "{} ok", self.operation.name()),
            (HostStatus::Fail, Some(reason)) => {
                write!(f, "{} failed: {reason}", self.operation.name())
            }
            (HostStatus::Fail, None) => write!(f, "{} failed", self.operation.name()),
        }
    }
}
