//! Version negotiation: the first message on every IC channel.
//!
//! The host offers a list of framework versions and a list of message
//! versions; the guest picks, per list, the highest offered version that is
//! not above its own maximum, and answers with exactly those two.

use core::mem::{offset_of, size_of};

use thiserror::Error;
use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::ic::{HostStatus, IC_HEADER_LEN, IcHeader};
use crate::packet::{ParseError, WriteError};
use crate::version::Version;

/// Fixed part of a negotiate message, before the version list (36 bytes).
pub const NEGOTIATE_HEADER_LEN: usize = 36;

/// Smallest negotiate reply: the fixed part and the two chosen versions.
pub const NEGOTIATE_MIN_REPLY_LEN: usize = NEGOTIATE_HEADER_LEN + 2 * size_of::<U32>();

/// Size of the data after the IC header in a negotiate reply: counts,
/// reserved word and the two chosen versions.
#[expect(clippy::cast_possible_truncation, reason = "16, checked below")]
const NEGOTIATE_REPLY_DATA_SIZE: u16 = (NEGOTIATE_MIN_REPLY_LEN - IC_HEADER_LEN) as u16;

/// `struct vmbus_icmsg_negotiate` without its trailing version list.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct NegotiateHeader {
    pub ic: IcHeader,
    /// How many framework versions follow.
    pub framework_count: U16,
    /// How many message versions follow the framework versions.
    pub message_count: U16,
    pub reserved: U32,
}

const _: () = {
    assert!(size_of::<NegotiateHeader>() == NEGOTIATE_HEADER_LEN);
    assert!(offset_of!(NegotiateHeader, framework_count) == 28);
    assert!(offset_of!(NegotiateHeader, message_count) == 30);
    assert!(offset_of!(NegotiateHeader, reserved) == 32);
    assert!(NEGOTIATE_MIN_REPLY_LEN == 44);
    assert!(NEGOTIATE_REPLY_DATA_SIZE == 16);
};

/// The versions a host offers, borrowed from its packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NegotiateOffer<'a> {
    framework: &'a [U32],
    message: &'a [U32],
}

impl<'a> NegotiateOffer<'a> {
    /// Reads the version lists of a negotiate packet (IC header included).
    pub(crate) fn parse(packet: &'a [u8]) -> Result<Self, ParseError> {
        let (header, rest) =
            NegotiateHeader::ref_from_prefix(packet).map_err(|_| ParseError::TooShort {
                what: "negotiate message",
                needed: NEGOTIATE_HEADER_LEN,
                got: packet.len(),
            })?;
        let framework_count = header.framework_count.get();
        let message_count = header.message_count.get();
        let bad_counts = || ParseError::BadVersionCounts {
            framework: framework_count,
            message: message_count,
            len: packet.len(),
        };
        if framework_count == 0 || message_count == 0 {
            return Err(bad_counts());
        }
        let total = usize::from(framework_count) + usize::from(message_count);
        let (versions, _) =
            <[U32]>::ref_from_prefix_with_elems(rest, total).map_err(|_| bad_counts())?;
        let (framework, message) = versions.split_at(usize::from(framework_count));
        Ok(Self { framework, message })
    }

    /// Framework versions in the order offered.
    pub fn framework_versions(&self) -> impl ExactSizeIterator<Item = Version> + 'a {
        self.framework
            .iter()
            .map(|word| Version::from_wire(word.get()))
    }

    /// Message versions in the order offered.
    pub fn message_versions(&self) -> impl ExactSizeIterator<Item = Version> + 'a {
        self.message
            .iter()
            .map(|word| Version::from_wire(word.get()))
    }
}

/// A framework and a message version: the guest's maxima, or what was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Negotiated {
    pub framework: Version,
    pub message: Version,
}

/// Why no version could be agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NegotiateError {
    #[error("host offers no framework version at or below {ours} (lowest offered: {lowest})")]
    NoFrameworkVersion { ours: Version, lowest: Version },
    #[error("host offers no message version at or below {ours} (lowest offered: {lowest})")]
    NoMessageVersion { ours: Version, lowest: Version },
}

/// Picks the versions to speak: per list, the highest offered version that is
/// not above `ours`.
pub fn negotiate(
    offer: &NegotiateOffer<'_>,
    ours: Negotiated,
) -> Result<Negotiated, NegotiateError> {
    let framework =
        best_at_or_below(offer.framework_versions(), ours.framework).map_err(|lowest| {
            NegotiateError::NoFrameworkVersion {
                ours: ours.framework,
                lowest,
            }
        })?;
    let message = best_at_or_below(offer.message_versions(), ours.message).map_err(|lowest| {
        NegotiateError::NoMessageVersion {
            ours: ours.message,
            lowest,
        }
    })?;
    Ok(Negotiated { framework, message })
}

/// The highest version not above `max`, or the lowest offered one when none
/// qualifies (for the error message). The offer is never empty: parsing
/// rejects zero counts.
fn best_at_or_below(
    offered: impl Iterator<Item = Version>,
    max: Version,
) -> Result<Version, Version> {
    let mut best = None;
    let mut lowest = None;
    for version in offered {
        lowest = Some(lowest.map_or(version, |low: Version| low.min(version)));
        if version <= max && best.is_none_or(|b| version > b) {
            best = Some(version);
        }
    }
    best.ok_or(lowest.unwrap_or(max))
}

/// Rewrites a negotiate request in `buf` (its first `request_len` bytes) into
/// the reply: both counts 1, the two chosen versions, data size 16, flags
/// TRANSACTION | RESPONSE, status OK. Returns the reply length: the request's
/// own length, raised to [`NEGOTIATE_MIN_REPLY_LEN`] if it was shorter, as
/// the host expects its bytes back.
pub fn write_negotiate_reply(
    buf: &mut [u8],
    request_len: usize,
    chosen: Negotiated,
) -> Result<usize, WriteError> {
    if request_len < NEGOTIATE_HEADER_LEN {
        return Err(WriteError::TooShort {
            needed: NEGOTIATE_HEADER_LEN,
            got: request_len,
        });
    }
    let reply_len = request_len.max(NEGOTIATE_MIN_REPLY_LEN);
    let capacity = buf.len();
    let reply = buf.get_mut(..reply_len).ok_or(WriteError::BufferTooSmall {
        needed: reply_len,
        capacity,
    })?;
    let (header, rest) =
        NegotiateHeader::mut_from_prefix(reply).map_err(|_| WriteError::TooShort {
            needed: NEGOTIATE_HEADER_LEN,
            got: request_len,
        })?;
    header.framework_count.set(1);
    header.message_count.set(1);
    header.ic.data_size.set(NEGOTIATE_REPLY_DATA_SIZE);
    header.ic.make_reply(HostStatus::Ok);
    let (versions, _) =
        <[U32]>::mut_from_prefix_with_elems(rest, 2).map_err(|_| WriteError::BufferTooSmall {
            needed: reply_len,
            capacity,
        })?;
    versions[0].set(chosen.framework.to_wire());
    versions[1].set(chosen.message.to_wire());
    Ok(reply_len)
}
