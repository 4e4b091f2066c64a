//! IC version words.

use core::fmt;

/// A framework or message version as the IC protocol encodes it: one `u32`
/// word holding `major | minor << 16`.
///
/// Fields are declared major first so that the derived ordering compares the
/// major number first, as version negotiation requires (the raw word would
/// compare the minor first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u16,
    pub minor: u16,
}

impl Version {
    #[must_use]
    pub const fn new(major: u16, minor: u16) -> Self {
        Self { major, minor }
    }

    /// Decodes a version word from the wire.
    #[must_use]
    pub const fn from_wire(word: u32) -> Self {
        Self {
            major: (word & 0xffff) as u16,
            minor: (word >> 16) as u16,
        }
    }

    /// Encodes the version as its wire word.
    #[must_use]
    pub const fn to_wire(self) -> u32 {
        self.major as u32 | (self.minor as u32) << 16
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Highest IC framework version the VSS guest speaks (3.0, as FreeBSD and Linux).
pub const VSS_FRAMEWORK_MAX: Version = Version::new(3, 0);

/// Highest VSS message version the guest speaks (5.0: the first with FREEZE,
/// THAW and AUTO_RECOVER as separate operations).
pub const VSS_MESSAGE_MAX: Version = Version::new(5, 0);

/// The two maxima together, as [`crate::negotiate`] takes them.
pub const VSS_MAXIMUM: crate::Negotiated = crate::Negotiated {
    framework: VSS_FRAMEWORK_MAX,
    message: VSS_MESSAGE_MAX,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_word_puts_major_in_the_low_half() {
        assert_eq!(Version::new(3, 0).to_wire(), 0x0000_0003);
        assert_eq!(Version::new(5, 0).to_wire(), 0x0000_0005);
        assert_eq!(Version::new(1, 2).to_wire(), 0x0002_0001);
        assert_eq!(Version::from_wire(0x0002_0001), Version::new(1, 2));
    }

    #[test]
    fn ordering_compares_major_before_minor() {
        // 4.0 is newer than 3.9, although 3.9's wire word (0x0009_0003) is larger.
        assert!(Version::new(4, 0) > Version::new(3, 9));
        assert!(Version::new(4, 0).to_wire() < Version::new(3, 9).to_wire());
        assert!(Version::new(3, 1) > Version::new(3, 0));
    }
}
