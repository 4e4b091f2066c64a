//! The device ABI between the kernel and user space: `struct hv_vss_opt_msg`
//! from FreeBSD's `hv_snapshot.h`, exchanged with IOCHVVSSREAD and
//! IOCHVVSSWRITE ([`crate::ioctl`]).
//!
//! Unlike the host wire, this struct lives in memory: native endian, natural
//! alignment.

use core::mem::{align_of, offset_of, size_of};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::wire_enum::UnknownValue;
use crate::wire_enum::wire_enum;

/// The daemon's device, `/dev/hv_fsvss_dev`.
pub const FS_DEVICE_NAME: &str = "hv_fsvss_dev";

/// The applications' device, `/dev/hv_appvss_dev`.
pub const APP_DEVICE_NAME: &str = "hv_appvss_dev";

/// Size of [`DeviceMessage`]; it is also encoded in the ioctl numbers.
pub const DEVICE_MESSAGE_LEN: usize = 64;

/// One request or answer on a VSS device (`struct hv_vss_opt_msg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct DeviceMessage {
    /// [`DeviceOperation`].
    pub opt: u32,
    /// [`DeviceStatus`].
    pub status: u32,
    /// Transaction id chosen by the kernel; an answer echoes it.
    pub msgid: u64,
    /// Zero.
    pub reserved: [u8; 48],
}

const _: () = {
    assert!(size_of::<DeviceMessage>() == DEVICE_MESSAGE_LEN);
    assert!(align_of::<DeviceMessage>() == 8);
    assert!(offset_of!(DeviceMessage, opt) == 0);
    assert!(offset_of!(DeviceMessage, status) == 4);
    assert!(offset_of!(DeviceMessage, msgid) == 8);
    assert!(offset_of!(DeviceMessage, reserved) == 16);
};

wire_enum! {
    /// What the kernel asks a user-space party to do (`enum hv_vss_op_t`).
    pub enum DeviceOperation: u32 as "device operation" {
        /// Nothing queued (the answer of IOCHVVSSREAD on an empty queue).
        None = 0,
        /// Can you quiesce? Answer without freezing anything.
        Check = 1,
        Freeze = 2,
        Thaw = 3,
    }
}

wire_enum! {
    /// Outcome in a [`DeviceMessage`] (VSS_SUCCESS / VSS_FAIL).
    pub enum DeviceStatus: u32 as "device status" {
        Success = 0,
        Fail = 1,
    }
}

impl DeviceOperation {
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Check => "check",
            Self::Freeze => "freeze",
            Self::Thaw => "thaw",
        }
    }
}

impl DeviceMessage {
    /// A request for `operation`, as the kernel hands it out.
    #[must_use]
    pub const fn new(operation: DeviceOperation, msgid: u64) -> Self {
        Self {
            opt: operation.to_wire(),
            status: DeviceStatus::Success.to_wire(),
            msgid,
            reserved: [0; 48],
        }
    }

    /// What IOCHVVSSREAD returns when nothing is queued: status FAIL, as the
    /// base driver does (the read does not block; poll first).
    #[must_use]
    pub const fn nothing_queued() -> Self {
        Self {
            opt: DeviceOperation::None.to_wire(),
            status: DeviceStatus::Fail.to_wire(),
            msgid: 0,
            reserved: [0; 48],
        }
    }

    /// The answer to this request: same operation and msgid, `status`.
    #[must_use]
    pub const fn with_status(self, status: DeviceStatus) -> Self {
        Self {
            status: status.to_wire(),
            reserved: [0; 48],
            ..self
        }
    }

    pub fn operation(&self) -> Result<DeviceOperation, UnknownValue> {
        DeviceOperation::try_from(self.opt)
    }

    pub fn status(&self) -> Result<DeviceStatus, UnknownValue> {
        DeviceStatus::try_from(self.status)
    }

    #[must_use]
    pub const fn msgid(&self) -> u64 {
        self.msgid
    }
}
