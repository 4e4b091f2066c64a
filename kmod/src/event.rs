//! Log events and the reasons behind failures and rejections.

use core::fmt;

use hv_vss_proto::{
    DeviceOperation, DeviceStatus, HostOperation, HostStatus, NegotiateError, Negotiated,
    ParseError,
};
use thiserror::Error;

use crate::types::Device;

/// How much an [`Event`] matters; the glue's `log` sysctl picks the
/// highest level it prints (0: nothing, 1: errors, 2: notices, 3: debug).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum LogLevel {
    /// Something failed: a host request answered with failure, a rejected
    /// answer, a malformed packet.
    Error = 1,
    /// A request and its reply, a negotiation.
    Notice = 2,
    /// Every step of a chain.
    Debug = 3,
}

/// Why the engine answered a VSS request with failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum FailReason {
    /// `/dev/hv_fsvss_dev` is not open: no daemon runs (start
    /// `hv_vssd`, which devd normally does).
    #[error("no daemon has {} open", Device::Fs.name())]
    DaemonAbsent,
    /// Another request is still in progress (or a rollback THAW is still
    /// unanswered); only one at a time.
    #[error("another request is still in progress")]
    Busy,
    /// A party answered with failure.
    #[error("{0} answered with failure")]
    PartyFailed(Device),
    /// A party closed its device before answering.
    #[error("{0} was closed before answering")]
    PartyClosed(Device),
    /// The deadline passed before every party answered.
    #[error("deadline passed")]
    TimedOut,
    /// The module was detached (kldunload) while the request was in progress.
    #[error("driver detached")]
    Detached,
}

/// Why an answer (IOCHVVSSWRITE) was not accepted. It changes nothing and
/// is counted in [`crate::Counters::rejected_acks`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum AckRejection {
    /// The device is not open (no caller should get here).
    #[error("device is not open")]
    NotOpen,
    /// Nothing was handed out on this device that awaits an answer: late,
    /// after a timeout or a withdrawal, or never asked.
    #[error("no request awaits an answer on this device (late answer?)")]
    NothingOutstanding,
    /// A request is queued but was not read yet: the answer cannot be for it.
    #[error("the queued request was not read yet")]
    NotRead,
    /// The msgid is not the one handed out (stale or made up).
    #[error("msgid {got:#x} does not match the request handed out ({expected:#x})")]
    WrongMsgid { expected: u64, got: u64 },
    /// The msgid matches but the operation does not.
    #[error("operation {got} does not match the request handed out ({expected:?})")]
    WrongOperation { expected: DeviceOperation, got: u32 },
}

/// Something the engine did, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Versions agreed with the host.
    Negotiated(Negotiated),
    /// The host offered no version we speak; answered with failure.
    NegotiationFailed(NegotiateError),
    /// A packet that does not parse; `answered` says whether a failure reply
    /// could be sent (it needs a whole IC header).
    Malformed { error: ParseError, answered: bool },
    /// A packet longer than the engine's buffer: answered with failure,
    /// truncated to the buffer.
    TooLong { len: usize },
    /// An operation the guest does not act on, answered HV_S_OK.
    AnsweredByEngine(HostOperation),
    /// A request that involves user space has started.
    Started(HostOperation),
    /// A message was queued for a device.
    Queued {
        device: Device,
        operation: DeviceOperation,
        msgid: u64,
    },
    /// A device answered, and the answer was accepted.
    Answered {
        device: Device,
        operation: DeviceOperation,
        status: DeviceStatus,
    },
    /// A device answered with a status that is neither success nor failure;
    /// taken as failure.
    BadStatus { device: Device, status: u32 },
    /// A device answer was rejected.
    AckRejected {
        device: Device,
        rejection: AckRejection,
    },
    /// The request failed; what follows is the rollback (if anything may
    /// be frozen) and the failure reply.
    Failed {
        operation: HostOperation,
        reason: FailReason,
    },
    /// Rollback: THAW is being sent to these parties ([`Device::index`]).
    RollingBack { thaw: [bool; 2] },
    /// The rollback window closed with THAW still unanswered by some party;
    /// the host is answered now and the THAW stays queued for that party.
    RollbackTimedOut,
    /// The host was answered.
    Replied {
        operation: HostOperation,
        status: HostStatus,
    },
}

impl Event {
    /// How important the event is.
    #[must_use]
    pub const fn level(&self) -> LogLevel {
        match self {
            Self::NegotiationFailed(_)
            | Self::Malformed { .. }
            | Self::TooLong { .. }
            | Self::BadStatus { .. }
            | Self::AckRejected { .. }
            | Self::Failed { .. }
            | Self::RollingBack { .. }
            | Self::RollbackTimedOut => LogLevel::Error,
            Self::Negotiated(_) | Self::Started(_) | Self::Replied { .. } => LogLevel::Notice,
            Self::AnsweredByEngine(_) | Self::Queued { .. } | Self::Answered { .. } => {
                LogLevel::Debug
            }
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Negotiated(v) => write!(
                f,
                "negotiated framework {} message {}",
                v.framework, v.message
            ),
            Self::NegotiationFailed(e) => write!(f, "negotiation failed: {e}"),
            Self::Malformed { error, answered } => write!(
                f,
                "malformed host packet ({error}); {}",
                if *answered {
                    "answered with failure"
                } else {
                    "no reply possible"
                }
            ),
            Self::TooLong { len } => {
                write!(
                    f,
                    "host packet of {len} bytes is too long; answered with failure"
                )
            }
            Self::AnsweredByEngine(op) => write!(f, "{} answered HV_S_OK", op.name()),
            Self::Started(op) => write!(f, "{} started", op.name()),
            Self::Queued {
                device,
                operation,
                msgid,
            } => write!(
                f,
                "{} queued for {device} (msgid {msgid:#x})",
                operation.name()
            ),
            Self::Answered {
                device,
                operation,
                status,
            } => write!(f, "{device} answered {}: {status:?}", operation.name()),
            Self::BadStatus { device, status } => write!(
                f,
                "{device} answered with unknown status {status}; taken as failure"
            ),
            Self::AckRejected { device, rejection } => {
                write!(f, "answer on {device} rejected: {rejection}")
            }
            Self::Failed { operation, reason } => {
                write!(f, "{} failed: {reason}", operation.name())
            }
            Self::RollingBack { thaw } => write!(
                f,
                "rollback: thawing{}{}",
                if thaw[0] { " daemon" } else { "" },
                if thaw[1] { " app" } else { "" }
            ),
            Self::RollbackTimedOut => {
                f.write_str("rollback THAW unanswered in time; host answered, THAW stays queued")
            }
            Self::Replied { operation, status } => write!(
                f,
                "{} answered {}",
                operation.name(),
                match status {
                    HostStatus::Ok => "HV_S_OK",
                    HostStatus::Fail => "HV_E_FAIL",
                }
            ),
        }
    }
}
