//! Host packets in, replies out: the guest's side of the wire.

use thiserror::Error;
use zerocopy::FromBytes;

use crate::ic::{HostStatus, IC_HEADER_LEN, IcHeader, IcType};
use crate::negotiate::NegotiateOffer;
use crate::vss::{HOT_BACKUP_NO_AUTO_RECOVERY, HostOperation, VSS_MESSAGE_LEN, VssMessage};

/// A host packet, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRequest<'a> {
    pub header: IcHeader,
    pub body: RequestBody<'a>,
}

/// What the host asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBody<'a> {
    /// Version negotiation.
    Negotiate(NegotiateOffer<'a>),
    /// A VSS operation, with the body flags as sent.
    Vss {
        operation: HostOperation,
        flags: u32,
    },
}

/// Why a host packet could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("{what} too short: {got} bytes, need {needed}")]
    TooShort {
        what: &'static str,
        needed: usize,
        got: usize,
    },
    #[error(
        "negotiate offers {framework} framework and {message} message versions, \
         which a {len}-byte packet cannot hold (or a count is zero)"
    )]
    BadVersionCounts {
        framework: u16,
        message: u16,
        len: usize,
    },
    #[error("unknown IC message type {0}")]
    UnknownIcType(u16),
    #[error("IC message type {0:?} does not belong on the VSS channel")]
    UnexpectedIcType(IcType),
    #[error("unknown VSS operation {0}")]
    UnknownOperation(u8),
}

impl ParseError {
    /// Whether the packet still had a whole IC header, so that a failure
    /// reply can be written into it ([`write_failure_reply`]).
    #[must_use]
    pub const fn answerable(&self) -> bool {
        !matches!(self, Self::TooShort { got, .. } if *got < IC_HEADER_LEN)
    }
}

/// Parses a packet from the host: a negotiate or a VSS message.
///
/// Trailing bytes beyond the message (LUN data on FREEZE) are accepted. The
/// header's `data_size` is not checked against the length, as no known
/// guest does; the packet length from VMBus is what bounds every read.
pub fn parse_host_packet(packet: &[u8]) -> Result<HostRequest<'_>, ParseError> {
    let (header, _) = IcHeader::read_from_prefix(packet).map_err(|_| ParseError::TooShort {
        what: "IC header",
        needed: IC_HEADER_LEN,
        got: packet.len(),
    })?;
    let ic_type = header
        .ic_type()
        .map_err(|_| ParseError::UnknownIcType(header.ic_type.get()))?;
    let body = match ic_type {
        IcType::Negotiate => RequestBody::Negotiate(NegotiateOffer::parse(packet)?),
        IcType::Vss => {
            let (message, _) =
                VssMessage::ref_from_prefix(packet).map_err(|_| ParseError::TooShort {
                    what: "VSS message",
                    needed: VSS_MESSAGE_LEN,
                    got: packet.len(),
                })?;
            let operation = HostOperation::try_from(message.operation)
                .map_err(|_| ParseError::UnknownOperation(message.operation))?;
            RequestBody::Vss {
                operation,
                flags: message.flags.get(),
            }
        }
        other => return Err(ParseError::UnexpectedIcType(other)),
    };
    Ok(HostRequest { header, body })
}

/// Why a reply could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum WriteError {
    #[error("packet too short for this reply: {got} bytes, need {needed}")]
    TooShort { needed: usize, got: usize },
    #[error("reply needs {needed} bytes, buffer holds {capacity}")]
    BufferTooSmall { needed: usize, capacity: usize },
}

/// Turns a VSS request (the whole packet, in place) into its reply: flags
/// TRANSACTION | RESPONSE, `status`, and the body flags the host expects:
/// [`HOT_BACKUP_NO_AUTO_RECOVERY`] on HOT_BACKUP (success or not), 0 on
/// GET_DM_INFO. The reply has the request's length.
pub fn write_vss_reply(packet: &mut [u8], status: HostStatus) -> Result<(), WriteError> {
    let got = packet.len();
    let (message, _) = VssMessage::mut_from_prefix(packet).map_err(|_| WriteError::TooShort {
        needed: VSS_MESSAGE_LEN,
        got,
    })?;
    message.ic.make_reply(status);
    match HostOperation::try_from(message.operation) {
        Ok(HostOperation::HotBackup) => message.flags.set(HOT_BACKUP_NO_AUTO_RECOVERY),
        Ok(HostOperation::GetDmInfo) => message.flags.set(0),
        _ => {}
    }
    Ok(())
}

/// Turns any packet with a whole IC header into a failure reply, touching
/// only the header: for malformed requests and failed negotiations.
pub fn write_failure_reply(packet: &mut [u8]) -> Result<(), WriteError> {
    let got = packet.len();
    let (header, _) = IcHeader::mut_from_prefix(packet).map_err(|_| WriteError::TooShort {
        needed: IC_HEADER_LEN,
        got,
    })?;
    header.make_reply(HostStatus::Fail);
    Ok(())
}
