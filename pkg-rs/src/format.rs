//! Which manifest to write for the oldest pkg(8) a package must install on
//! (`min-pkg-version` in the metadata): the one `pkg create` of that
//! version writes, so every pkg from it on reads all of it.
//!
//! Two things changed in pkg's own writer (freebsd/pkg history):
//! - 2.4.0 (699f92e2c): `files` and `directories` became objects with
//!   `sum`/`uname`/`gname`/`perm` (and `mtime`, 08bf9b3d7), and the database
//!   records them. Older pkg reads the object form too, but keeps an object's
//!   `sum` only when it is exactly 64 characters (libpkg/pkg_manifest.c at
//!   1.17.0 … 2.3.x), so for them files stay `path: "1$<sha256>"` strings.
//! - 2.8.0 (3ad388ece): file sums became type 2 (BLAKE2b, base32) and so did
//!   `pkg repo`'s package sums (eb2ac2b76). Every pkg since 1.17 verifies type
//!   1 and type 2 alike, so this is about writing what pkg itself writes.

use std::fmt;
use std::str::FromStr;

use crate::checksum::ChecksumKind;

/// A pkg release, `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PkgVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl PkgVersion {
    /// The oldest pkg this crate writes for: zstd packages need 1.17.
    pub const OLDEST: Self = Self::new(1, 17);
    /// The first pkg that writes and records file owner and mode.
    pub const FILE_OBJECTS: Self = Self::new(2, 4);
    /// The first pkg that writes BLAKE2b sums.
    pub const BLAKE2: Self = Self::new(2, 8);

    /// `major.minor`.
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }
}

impl Default for PkgVersion {
    /// The current pkg: a package like the one `pkg create` writes today.
    fn default() -> Self {
        Self::BLAKE2
    }
}

impl fmt::Display for PkgVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl FromStr for PkgVersion {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not a pkg version such as \"2.8\"");
        let mut parts = text.trim().split('.');
        let major = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let minor = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        // A patch level ("2.8.4") changes nothing in the format.
        if parts.any(|p| p.parse::<u32>().is_err()) {
            return Err(bad());
        }
        let version = Self::new(major, minor);
        if version < Self::OLDEST {
            return Err(format!(
                "pkg {version} is older than {}, the oldest pkg that reads zstd packages",
                Self::OLDEST
            ));
        }
        Ok(version)
    }
}

impl<'de> serde::Deserialize<'de> for PkgVersion {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What the manifest looks like for a target pkg version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestFormat {
    /// `files`/`directories` as objects with owner, group and mode.
    pub file_objects: bool,
    /// The digest of file and package sums.
    pub checksum: ChecksumKind,
}

impl From<PkgVersion> for ManifestFormat {
    fn from(version: PkgVersion) -> Self {
        Self {
            file_objects: version >= PkgVersion::FILE_OBJECTS,
            checksum: if version >= PkgVersion::BLAKE2 {
                ChecksumKind::Blake2bBase32
            } else {
                ChecksumKind::Sha256Hex
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_order() {
        assert_eq!("2.8".parse::<PkgVersion>(), Ok(PkgVersion::new(2, 8)));
        assert_eq!("2.8.4".parse::<PkgVersion>(), Ok(PkgVersion::new(2, 8)));
        assert!(PkgVersion::new(2, 10) > PkgVersion::new(2, 8));
        assert!("2".parse::<PkgVersion>().is_err());
        assert!("two.eight".parse::<PkgVersion>().is_err());
        let old = "1.16".parse::<PkgVersion>().unwrap_err();
        assert!(old.contains("older than 1.17"), "{old}");
    }

    #[test]
    fn each_version_gets_what_its_pkg_create_writes() {
        let at = |v: &str| ManifestFormat::from(v.parse::<PkgVersion>().unwrap());
        assert_eq!(
            at("1.17"),
            ManifestFormat {
                file_objects: false,
                checksum: ChecksumKind::Sha256Hex
            }
        );
        assert_eq!(
            at("2.4"),
            ManifestFormat {
                file_objects: true,
                checksum: ChecksumKind::Sha256Hex
            }
        );
        assert_eq!(
            at("2.8"),
            ManifestFormat {
                file_objects: true,
                checksum: ChecksumKind::Blake2bBase32
            }
        );
        assert_eq!(ManifestFormat::from(PkgVersion::default()), at("2.8"));
    }
}
