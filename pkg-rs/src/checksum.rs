//! pkg's checksum strings: `<type>$<digest>` for packaged files, and the
//! sum of a whole `.pkg` in a repository catalogue.
//!
//! The types are libpkg's `pkg_checksum_type_t` (libpkg/pkg/checksum.h):
//! 1 is SHA-256 in lower-case hex, 2 is BLAKE2b-512 in pkg's own base32.
//! `pkg_checksum_validate_fileat` (libpkg/pkg_checksum.c) reads the type
//! from the string, so every pkg since 1.17 verifies either kind; which one a
//! package carries is what `pkg create` of its target version writes (see
//! [`crate::format`]).

use blake2::{Blake2b512, Digest as _};
use sha2::Sha256;

/// Which digest a package's checksums use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumKind {
    /// Type 1, `SHA256_HEX`: what `pkg create` and `pkg repo` wrote before 2.8.
    Sha256Hex,
    /// Type 2, `BLAKE2_BASE32`: what they write since pkg 2.8.0.
    Blake2bBase32,
}

impl ChecksumKind {
    /// libpkg's type number, the part before the `$`.
    fn type_number(self) -> u8 {
        match self {
            Self::Sha256Hex => 1,
            Self::Blake2bBase32 => 2,
        }
    }

    /// The digest alone, encoded as this type encodes it.
    fn digest(self, data: &[u8]) -> String {
        match self {
            Self::Sha256Hex => hex(&Sha256::digest(data)),
            Self::Blake2bBase32 => pkg_base32(&Blake2b512::digest(data)),
        }
    }

    /// A packaged file's `sum`: `1$<hex>` or `2$<base32>`.
    pub fn file_sum(self, data: &[u8]) -> String {
        format!("{}${}", self.type_number(), self.digest(data))
    }

    /// A `.pkg` file's `sum` in a catalogue: `pkg repo` before 2.8 wrote the
    /// bare SHA-256 hex (`pkg_checksum_file`), 2.8 writes `2$<base32>`
    /// (`pkg_checksum_generate_file`, libpkg/pkg_repo_create.c); clients
    /// check it with `pkg_checksum_validate_file`, which reads both.
    pub fn package_sum(self, data: &[u8]) -> String {
        match self {
            Self::Sha256Hex => self.digest(data),
            Self::Blake2bBase32 => self.file_sum(data),
        }
    }
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// pkg's base32 (`pkg_checksum_encode_base32`): the bytes read as one
/// little-endian bit stream, cut into 5-bit groups from the lowest bit up,
/// each group a letter of the alphabet below; a last partial group is
/// written as it is. No standard base32 (RFC 4648 or z-base-32 as crates
/// implement it) groups the bits this way, hence this function.
fn pkg_base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut bits, mut count) = (0u32, 0u32);
    for &byte in bytes {
        bits |= u32::from(byte) << count;
        count += 8;
        while count >= 5 {
            out.push(char::from(ALPHABET[(bits & 0x1f) as usize]));
            bits >>= 5;
            count -= 5;
        }
    }
    if count > 0 {
        out.push(char::from(ALPHABET[(bits & 0x1f) as usize]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_file_sum_is_type_1_hex() {
        // SHA-256("abc") from FIPS 180-2, appendix B.1.
        assert_eq!(
            ChecksumKind::Sha256Hex.file_sum(b"abc"),
            "1$ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn blake2b_file_sum_matches_pkgs_own_test_vector() {
        // freebsd/pkg tests/frontend/create.sh (since 3ad388ece, pkg 2.8.0):
        // an empty file, which it also lists as 1$e3b0c442... before.
        assert_eq!(
            ChecksumKind::Blake2bBase32.file_sum(b""),
            "2$au4ro5mebesgyd5a7xbmnjj41mr91dbeb8sqwojtgwaxt59dwkgrpxbnt3m7qcpkuenjgnp1qnczrek8e5sebr7siki9gajd69gfq8d"
        );
        assert_eq!(
            ChecksumKind::Sha256Hex.file_sum(b""),
            "1$e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn package_sum_is_bare_hex_before_2_8_and_typed_after() {
        let data = b"package bytes";
        let hex_sum = ChecksumKind::Sha256Hex.package_sum(data);
        assert_eq!(hex_sum.len(), 64);
        assert!(!hex_sum.contains('$'));
        assert!(
            ChecksumKind::Blake2bBase32
                .package_sum(data)
                .starts_with("2$")
        );
    }

    #[test]
    fn base32_takes_bits_lowest_first_and_keeps_a_partial_group() {
        // 0b000_00001: the first group is the low five bits (1 → 'b'), the
        // last three bits form a partial group (0 → 'y').
        assert_eq!(pkg_base32(&[1]), "by");
        // 0xff, 0x03: groups 11111, 11111 (bits 5-7 of byte 0, 0-1 of
        // byte 1), 00000, then the one bit left over → "99" + "y" + "y".
        assert_eq!(pkg_base32(&[0xff, 0x03]), "99yy");
        assert_eq!(pkg_base32(&[0u8; 64]).len(), 103);
    }
}
