//! Every wire format of hyperv-vss, in one place.
//!
//! Two interfaces meet here:
//! - the **host wire**: VMBus integration-component (IC) messages that the
//!   Hyper-V host sends on the VSS channel ([`ic`], [`negotiate`], [`vss`]),
//!   little-endian and unaligned;
//! - the **device ABI**: the 64-byte `hv_vss_opt_msg` exchanged through
//!   `/dev/hv_fsvss_dev` and `/dev/hv_appvss_dev` with two ioctls
//!   ([`device`], [`ioctl`]), native-endian, compatible with FreeBSD's
//!   `hv_snapshot.h`.
//!
//! Raw bytes are parsed once, at the edge, into typed values
//! ([`parse_host_packet`], [`DeviceMessage::operation`]); everything inside the
//! kernel engine, the daemon and the simulator matches on those types. Replies
//! are written in place into the engine's own copy of the request, because
//! the host expects its own bytes back with status and flags changed.
//!
//! The crate is `no_std` and allocation-free so that the kernel engine can use
//! it unchanged.
#![no_std]

pub mod device;
pub mod host;
pub mod ic;
pub mod ioctl;
pub mod negotiate;
pub mod packet;
pub mod version;
pub mod vss;
mod wire_enum;

pub use device::{
    APP_DEVICE_NAME, DEVICE_MESSAGE_LEN, DeviceMessage, DeviceOperation, DeviceStatus,
    FS_DEVICE_NAME,
};
pub use host::{
    HostReply, ReplyBody, build_negotiate_request, build_vss_request, parse_host_reply,
};
pub use ic::{
    HostStatus, IC_HEADER_LEN, IcFlags, IcHeader, IcType, MAX_HOST_PACKET_LEN, VSS_CLASS_GUID,
    VSS_CLASS_GUID_STR,
};
pub use negotiate::{
    NEGOTIATE_HEADER_LEN, NEGOTIATE_MIN_REPLY_LEN, NegotiateError, NegotiateHeader, NegotiateOffer,
    Negotiated, negotiate, write_negotiate_reply,
};
pub use packet::{
    HostRequest, ParseError, RequestBody, WriteError, parse_host_packet, write_failure_reply,
    write_vss_reply,
};
pub use version::{VSS_FRAMEWORK_MAX, VSS_MAXIMUM, VSS_MESSAGE_MAX, Version};
pub use vss::{HOT_BACKUP_NO_AUTO_RECOVERY, HostOperation, VSS_MESSAGE_LEN, VssMessage};
pub use wire_enum::UnknownValue;
