//! The host's side of the wire, for the simulator and tests: build the
//! requests Hyper-V sends and read the guest's replies.

use core::mem::size_of;

use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, IntoBytes};

use crate::ic::{HostStatus, IC_HEADER_LEN, IcFlags, IcHeader, IcType};
use crate::negotiate::{NEGOTIATE_HEADER_LEN, NegotiateHeader, Negotiated};
use crate::packet::{ParseError, RequestBody, WriteError, parse_host_packet};
use crate::version::{VSS_FRAMEWORK_MAX, VSS_MESSAGE_MAX, Version};
use crate::vss::{HostOperation, VSS_MESSAGE_LEN, VssMessage};
use crate::wire_enum::UnknownValue;

/// Size of the VMBus pipe header folded into [`IcHeader`].
const PIPE_HEADER_LEN: usize = 8;

/// A request header as the simulated host writes it. The pipe size counts
/// the bytes after the pipe header; data size the bytes after the IC header.
fn request_header(
    ic_type: IcType,
    len: usize,
    versions: Negotiated,
) -> Result<IcHeader, WriteError> {
    let too_long = WriteError::BufferTooSmall {
        needed: len,
        capacity: usize::from(u16::MAX),
    };
    let data_size = u16::try_from(len - IC_HEADER_LEN).map_err(|_| too_long)?;
    let pipe_size = u32::try_from(len - PIPE_HEADER_LEN).map_err(|_| too_long)?;
    Ok(IcHeader {
        pipe_flags: U32::new(0),
        pipe_size: U32::new(pipe_size),
        framework_version: U32::new(versions.framework.to_wire()),
        ic_type: U16::new(ic_type.to_wire()),
        message_version: U32::new(versions.message.to_wire()),
        data_size: U16::new(data_size),
        status: U32::new(HostStatus::Ok.to_wire()),
        transaction_id: 0,
        flags: IcFlags::HOST_REQUEST.0,
        reserved: U16::new(0),
    })
}

fn sized(out: &mut [u8], len: usize) -> Result<&mut [u8], WriteError> {
    let capacity = out.len();
    out.get_mut(..len).ok_or(WriteError::BufferTooSmall {
        needed: len,
        capacity,
    })
}

/// Writes a negotiate request offering `framework` then `message` versions
/// into `out`; returns its length. Empty lists are allowed so that tests can
/// send what a broken host would.
pub fn build_negotiate_request(
    out: &mut [u8],
    framework: &[Version],
    message: &[Version],
) -> Result<usize, WriteError> {
    let count = |list: &[Version]| {
        u16::try_from(list.len()).map_err(|_| WriteError::BufferTooSmall {
            needed: list.len(),
            capacity: usize::from(u16::MAX),
        })
    };
    let len = NEGOTIATE_HEADER_LEN + size_of::<U32>() * (framework.len() + message.len());
    let packet = sized(out, len)?;
    let header = NegotiateHeader {
        ic: request_header(
            IcType::Negotiate,
            len,
            Negotiated {
                framework: Version::new(1, 0),
                message: Version::new(1, 0),
            },
        )?,
        framework_count: U16::new(count(framework)?),
        message_count: U16::new(count(message)?),
        reserved: U32::new(0),
    };
    let (head, versions) = packet.split_at_mut(NEGOTIATE_HEADER_LEN);
    head.copy_from_slice(header.as_bytes());
    for (slot, version) in versions
        .chunks_exact_mut(size_of::<U32>())
        .zip(framework.iter().chain(message))
    {
        slot.copy_from_slice(U32::new(version.to_wire()).as_bytes());
    }
    Ok(len)
}

/// Writes a VSS request for `operation` into `out`, followed by
/// `payload_len` zero bytes (as LUN data would follow a FREEZE); returns its
/// length.
pub fn build_vss_request(
    out: &mut [u8],
    operation: HostOperation,
    payload_len: usize,
) -> Result<usize, WriteError> {
    let len = VSS_MESSAGE_LEN + payload_len;
    let packet = sized(out, len)?;
    let message = VssMessage {
        ic: request_header(
            IcType::Vss,
            len,
            Negotiated {
                framework: VSS_FRAMEWORK_MAX,
                message: VSS_MESSAGE_MAX,
            },
        )?,
        operation: operation.to_wire(),
        reserved: [0; 7],
        flags: U32::new(0),
    };
    let (head, payload) = packet.split_at_mut(VSS_MESSAGE_LEN);
    head.copy_from_slice(message.as_bytes());
    payload.fill(0);
    Ok(len)
}

/// A guest reply as the host reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostReply {
    pub header: IcHeader,
    pub body: ReplyBody,
}

/// What a reply says beyond its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyBody {
    /// A successful negotiation: the versions the guest chose.
    Negotiated(Negotiated),
    /// A VSS reply: the operation echoed and the body flags.
    Vss {
        operation: HostOperation,
        flags: u32,
    },
    /// A failure reply to a request whose body could not be parsed; only the
    /// header means anything.
    HeaderOnly,
}

impl HostReply {
    /// The reply's status.
    pub fn status(&self) -> Result<HostStatus, UnknownValue> {
        self.header.status()
    }

    /// Whether the flags mark it as a reply (TRANSACTION | RESPONSE).
    #[must_use]
    pub fn is_reply(&self) -> bool {
        self.header.flags().contains(IcFlags::REPLY)
    }
}

/// Reads a reply from the guest. A successful negotiate reply must name
/// exactly one version per list.
pub fn parse_host_reply(packet: &[u8]) -> Result<HostReply, ParseError> {
    let (header, _) = IcHeader::read_from_prefix(packet).map_err(|_| ParseError::TooShort {
        what: "IC header",
        needed: IC_HEADER_LEN,
        got: packet.len(),
    })?;
    let body = match parse_host_packet(packet) {
        Ok(request) => match request.body {
            RequestBody::Negotiate(offer) => {
                let (mut framework, mut message) =
                    (offer.framework_versions(), offer.message_versions());
                match (
                    framework.len(),
                    message.len(),
                    framework.next(),
                    message.next(),
                ) {
                    (1, 1, Some(framework), Some(message)) => {
                        ReplyBody::Negotiated(Negotiated { framework, message })
                    }
                    _ if header.status().is_ok_and(|s| s == HostStatus::Fail) => {
                        ReplyBody::HeaderOnly
                    }
                    _ => {
                        return Err(ParseError::BadVersionCounts {
                            framework: u16::try_from(offer.framework_versions().len())
                                .unwrap_or(u16::MAX),
                            message: u16::try_from(offer.message_versions().len())
                                .unwrap_or(u16::MAX),
                            len: packet.len(),
                        });
                    }
                }
            }
            RequestBody::Vss { operation, flags } => ReplyBody::Vss { operation, flags },
        },
        // A failure reply echoes whatever the host sent, malformed or not.
        Err(_) if header.status().is_ok_and(|s| s == HostStatus::Fail) => ReplyBody::HeaderOnly,
        Err(error) => return Err(error),
    };
    Ok(HostReply { header, body })
}
