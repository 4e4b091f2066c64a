//! The VSS message: what the host asks the guest to do.

use core::mem::{offset_of, size_of};

use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::device::DeviceOperation;
use crate::ic::IcHeader;
use crate::wire_enum::wire_enum;

/// Size of [`VssMessage`]. Longer packets are valid: a FREEZE may carry LUN
/// data after it.
pub const VSS_MESSAGE_LEN: usize = 40;

/// Body flags of every HOT_BACKUP reply: VSS_HBU_NO_AUTO_RECOVERY. The guest
/// declares it cannot auto-recover, so the host never sends AUTO_RECOVER.
pub const HOT_BACKUP_NO_AUTO_RECOVERY: u32 = 0x0000_0005;

/// `struct hv_vss_msg`, 40 bytes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct VssMessage {
    pub ic: IcHeader,
    /// [`HostOperation`].
    pub operation: u8,
    pub reserved: [u8; 7],
    /// Check-feature flags (HOT_BACKUP) or DM-info flags (GET_DM_INFO).
    pub flags: U32,
}

const _: () = {
    assert!(size_of::<VssMessage>() == VSS_MESSAGE_LEN);
    assert!(offset_of!(VssMessage, operation) == 28);
    assert!(offset_of!(VssMessage, reserved) == 29);
    assert!(offset_of!(VssMessage, flags) == 36);
};

wire_enum! {
    /// Operations the host sends in a [`VssMessage`].
    pub enum HostOperation: u8 as "host VSS operation" {
        Create = 0,
        Delete = 1,
        /// "Can you quiesce?": CHECK for the parties in user space.
        HotBackup = 2,
        GetDmInfo = 3,
        BuComplete = 4,
        Freeze = 5,
        Thaw = 6,
        AutoRecover = 7,
    }
}

impl HostOperation {
    /// The request user space gets for this operation, for the three that
    /// involve it. The others are answered without user space.
    #[must_use]
    pub const fn device_operation(self) -> Option<DeviceOperation> {
        match self {
            Self::HotBackup => Some(DeviceOperation::Check),
            Self::Freeze => Some(DeviceOperation::Freeze),
            Self::Thaw => Some(DeviceOperation::Thaw),
            Self::Create
            | Self::Delete
            | Self::GetDmInfo
            | Self::BuComplete
            | Self::AutoRecover => None,
        }
    }

    /// The name the host-side documentation uses.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Delete => "DELETE",
            Self::HotBackup => "HOT_BACKUP",
            Self::GetDmInfo => "GET_DM_INFO",
            Self::BuComplete => "BU_COMPLETE",
            Self::Freeze => "FREEZE",
            Self::Thaw => "THAW",
            Self::AutoRecover => "AUTO_RECOVER",
        }
    }
}
