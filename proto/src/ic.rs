//! The VMBus integration-component (IC) message header and its values.
//!
//! FreeBSD folds the 8-byte VMBus pipe header into a 28-byte IC header; Linux
//! keeps them as two structs (8 + 20 bytes). The bytes on the wire are the
//! same. Every multi-byte field is little-endian and unaligned.

use core::mem::{offset_of, size_of};

use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::version::Version;
use crate::wire_enum::{UnknownValue, wire_enum};

/// Size of [`IcHeader`]: every host message starts with it.
pub const IC_HEADER_LEN: usize = 28;

/// Largest host packet the guest must accept: the IC receive buffer
/// (4 pages). A FREEZE with LUN data is about 6,260 bytes, AUTO_RECOVER up to
/// 12,500.
pub const MAX_HOST_PACKET_LEN: usize = 16 * 1024;

/// VMBus class GUID of the VSS channel, {35fa2e29-ea23-4236-96ae-3a6ebacba440},
/// in the byte order VMBus offers it (first three groups little-endian).
pub const VSS_CLASS_GUID: [u8; 16] = [
    0x29, 0x2e, 0xfa, 0x35, 0x23, 0xea, 0x36, 0x42, 0x96, 0xae, 0x3a, 0x6e, 0xba, 0xcb, 0xa4, 0x40,
];

/// [`VSS_CLASS_GUID`] in its usual text form.
pub const VSS_CLASS_GUID_STR: &str = "35fa2e29-ea23-4236-96ae-3a6ebacba440";

/// The IC header (`struct vmbus_icmsg_hdr`), 28 bytes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct IcHeader {
    /// VMBus pipe header: flags.
    pub pipe_flags: U32,
    /// VMBus pipe header: message size.
    pub pipe_size: U32,
    /// Framework version word (see [`Version`]).
    pub framework_version: U32,
    /// Message type ([`IcType`]).
    pub ic_type: U16,
    /// Message version word.
    pub message_version: U32,
    /// Bytes after this header.
    pub data_size: U16,
    /// Status: [`HostStatus`] in replies.
    pub status: U32,
    /// The IC's own one-byte transaction id (the VMBus packet carries the
    /// 64-bit id that replies must echo).
    pub transaction_id: u8,
    /// [`IcFlags`].
    pub flags: u8,
    pub reserved: U16,
}

const _: () = {
    assert!(size_of::<IcHeader>() == IC_HEADER_LEN);
    assert!(offset_of!(IcHeader, pipe_flags) == 0);
    assert!(offset_of!(IcHeader, pipe_size) == 4);
    assert!(offset_of!(IcHeader, framework_version) == 8);
    assert!(offset_of!(IcHeader, ic_type) == 12);
    assert!(offset_of!(IcHeader, message_version) == 14);
    assert!(offset_of!(IcHeader, data_size) == 18);
    assert!(offset_of!(IcHeader, status) == 20);
    assert!(offset_of!(IcHeader, transaction_id) == 24);
    assert!(offset_of!(IcHeader, flags) == 25);
    assert!(offset_of!(IcHeader, reserved) == 26);
};

impl IcHeader {
    /// The message type, if it is one the IC protocol defines.
    pub fn ic_type(&self) -> Result<IcType, UnknownValue> {
        IcType::try_from(self.ic_type.get())
    }

    #[must_use]
    pub fn flags(&self) -> IcFlags {
        IcFlags(self.flags)
    }

    /// The status word, if it is one hyperv-vss knows.
    pub fn status(&self) -> Result<HostStatus, UnknownValue> {
        HostStatus::try_from(self.status.get())
    }

    #[must_use]
    pub fn framework_version(&self) -> Version {
        Version::from_wire(self.framework_version.get())
    }

    #[must_use]
    pub fn message_version(&self) -> Version {
        Version::from_wire(self.message_version.get())
    }

    /// Turns a request header into the header of its reply: flags
    /// TRANSACTION | RESPONSE and the given status, everything else kept.
    pub fn make_reply(&mut self, status: HostStatus) {
        self.flags = IcFlags::REPLY.0;
        self.status.set(status.to_wire());
    }
}

wire_enum! {
    /// IC message types. Only [`IcType::Negotiate`] and [`IcType::Vss`] belong
    /// on the VSS channel; the others name the sibling IC services.
    pub enum IcType: u16 as "IC message type" {
        Negotiate = 0,
        Heartbeat = 1,
        Kvp = 2,
        Shutdown = 3,
        TimeSync = 4,
        Vss = 5,
    }
}

wire_enum! {
    /// Status values in the IC header (HRESULTs).
    pub enum HostStatus: u32 as "IC status" {
        /// HV_S_OK.
        Ok = 0,
        /// HV_E_FAIL.
        Fail = 0x8000_4005,
    }
}

/// IC header flags (a bit set, so a newtype rather than an enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IcFlags(pub u8);

impl IcFlags {
    pub const TRANSACTION: Self = Self(0x01);
    pub const REQUEST: Self = Self(0x02);
    pub const RESPONSE: Self = Self(0x04);
    /// What the host sets on a request.
    pub const HOST_REQUEST: Self = Self(Self::TRANSACTION.0 | Self::REQUEST.0);
    /// What every guest reply carries: TRANSACTION | RESPONSE = 0x05.
    pub const REPLY: Self = Self(Self::TRANSACTION.0 | Self::RESPONSE.0);

    #[must_use]
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_flags_are_transaction_and_response() {
        assert_eq!(IcFlags::REPLY.0, 0x05);
        assert_eq!(IcFlags::HOST_REQUEST.0, 0x03);
        assert!(IcFlags(0x07).contains(IcFlags::REPLY));
        assert!(!IcFlags(0x03).contains(IcFlags::RESPONSE));
    }

    #[test]
    fn status_values_are_the_hresults() {
        assert_eq!(HostStatus::Ok.to_wire(), 0);
        assert_eq!(HostStatus::Fail.to_wire(), 0x8000_4005);
        assert_eq!(HostStatus::try_from(0x8000_4005), Ok(HostStatus::Fail));
        assert!(HostStatus::try_from(22).is_err());
    }

    #[test]
    fn ic_types_follow_the_service_numbering() {
        assert_eq!(IcType::try_from(0), Ok(IcType::Negotiate));
        assert_eq!(IcType::try_from(5), Ok(IcType::Vss));
        assert_eq!(
            IcType::try_from(6),
            Err(UnknownValue {
                what: "IC message type",
                value: 6
            })
        );
    }

    #[test]
    fn guid_bytes_match_the_text_form() {
        // First three groups little-endian, the rest as written.
        assert_eq!(&VSS_CLASS_GUID[..4], &0x35fa_2e29_u32.to_le_bytes());
        assert_eq!(&VSS_CLASS_GUID[4..6], &0xea23_u16.to_le_bytes());
        assert_eq!(&VSS_CLASS_GUID[6..8], &0x4236_u16.to_le_bytes());
        assert_eq!(
            VSS_CLASS_GUID[8..],
            [0x96, 0xae, 0x3a, 0x6e, 0xba, 0xcb, 0xa4, 0x40]
        );
        assert!(VSS_CLASS_GUID_STR.starts_with("35fa2e29-ea23-4236-96ae"));
    }
}
