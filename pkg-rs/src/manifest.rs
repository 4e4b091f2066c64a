//! pkg's `+COMPACT_MANIFEST` and `+MANIFEST`: compact JSON (which pkg's UCL
//! parser reads), keys in the order pkg itself emits them (`pkg_emit_object`
//! in libpkg/pkg_manifest.c).
//!
//! Format choices, for pkg 1.17 and later (FreeBSD 13.0+, through pkg 2.x):
//! - file checksums are `1$<sha256 hex>` (checksum type 1, SHA256_HEX), which
//!   every pkg since 1.5 validates; pkg 2.8 writes `2$<blake2b base32>` itself
//!   but still reads type 1;
//! - `files` values are the checksum strings, the form every pkg reads (pkg ≥ 2.4
//!   also accepts objects); owner, group and mode travel in the tar headers,
//!   which is where pkg takes them from when extracting;
//! - `directories` values are `"y"` (remove when empty on deinstall);
//! - `messages` is the array form introduced with UCL pkg-message (pkg 1.12);
//! - paths, `desc` and scripts are URL-encoded the way pkg does it: only
//!   `%` and non-ASCII bytes are escaped.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::metadata::Dependency;

/// The manifest without files, directories and scripts: what
/// `+COMPACT_MANIFEST` holds and what repository catalogues list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactManifest {
    /// Package name.
    pub name: String,
    /// Ports origin.
    pub origin: String,
    /// Version.
    pub version: String,
    /// One-line summary.
    pub comment: String,
    /// Maintainer.
    pub maintainer: String,
    /// Home page.
    pub www: String,
    /// `FreeBSD:14:amd64`.
    pub abi: String,
    /// Legacy architecture string derived from `abi`.
    pub arch: String,
    /// Install prefix.
    pub prefix: String,
    /// Installed size in bytes.
    pub flatsize: u64,
    /// `single`, `and` or `or`.
    pub licenselogic: String,
    /// License names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub licenses: Vec<String>,
    /// Long description, URL-encoded.
    pub desc: String,
    /// Dependencies.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deps: BTreeMap<String, Dependency>,
    /// Categories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// Annotations; always present because some readers require the key.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// pkg-message entries. pkg emits them outside its "compact" cut, so
    /// they are part of `+COMPACT_MANIFEST` and of catalogue entries too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<Message>,
}

/// One pkg-message entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Text shown to the user.
    pub message: String,
    /// `install`, `remove` or `upgrade`; absent means always.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Upgrade messages: shown when upgrading from at least this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_version: Option<String>,
    /// Upgrade messages: shown when upgrading from at most this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_version: Option<String>,
}

/// The full `+MANIFEST`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Everything the compact manifest has.
    #[serde(flatten)]
    pub compact: CompactManifest,
    /// URL-encoded absolute path → `1$<sha256 hex>`.
    pub files: BTreeMap<String, String>,
    /// URL-encoded absolute path → `"y"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub directories: BTreeMap<String, String>,
    /// Script kind → URL-encoded shell text.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scripts: BTreeMap<String, String>,
}

impl Manifest {
    /// `+MANIFEST` bytes.
    pub fn to_json(&self) -> Vec<u8> {
        to_compact_json(self)
    }
}

impl CompactManifest {
    /// `+COMPACT_MANIFEST` bytes.
    pub fn to_json(&self) -> Vec<u8> {
        to_compact_json(self)
    }
}

fn to_compact_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs of strings, ints and maps cannot fail.
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// pkg's checksum notation for file contents: type 1 (SHA256_HEX).
pub fn file_checksum(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("1${}", hex(&Sha256::digest(data)))
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

/// URL-encode as libpkg does: `%` and every non-ASCII byte become `%xx`.
pub fn urlencode(text: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte == b'%' || !byte.is_ascii() {
            let _ = write!(out, "%{byte:02x}");
        } else {
            out.push(char::from(byte));
        }
    }
    out
}

/// The inverse of [`urlencode`], for readers.
pub fn urldecode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        if let Some(byte) = decoded {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The legacy `arch` string pkg derives from an ABI (`pkg_arch_to_legacy`):
/// `FreeBSD:14:amd64` → `freebsd:14:x86:64`. `None` for an unknown machine.
pub fn legacy_arch(abi: &str) -> Option<String> {
    let mut parts = abi.splitn(3, ':');
    let (os, major, machine) = (parts.next()?, parts.next()?, parts.next()?);
    if os.is_empty() || major.is_empty() || !major.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let machine = match machine {
        "amd64" => "x86:64",
        "i386" => "x86:32",
        "aarch64" => "aarch64:64",
        "armv7" => "armv7:32:el:eabi:hardfp",
        "armv6" => "armv6:32:el:eabi:hardfp",
        "powerpc64" => "powerpc:64:eb",
        "powerpc64le" => "powerpc:64:el",
        "riscv64" => "riscv:64:hf",
        "*" => "*",
        _ => return None,
    };
    Some(format!("{}:{major}:{machine}", os.to_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_type_1_sha256_hex() {
        // SHA-256("abc") from FIPS 180-2, appendix B.1.
        assert_eq!(
            file_checksum(b"abc"),
            "1$ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn urlencode_escapes_only_percent_and_non_ascii() {
        assert_eq!(urlencode("a b/c%d\u{e9}"), "a b/c%25d%c3%a9");
        assert_eq!(urldecode(&urlencode("50% caf\u{e9}\n")), "50% caf\u{e9}\n");
    }

    #[test]
    fn legacy_arch_matches_pkg() {
        assert_eq!(
            legacy_arch("FreeBSD:14:amd64").as_deref(),
            Some("freebsd:14:x86:64")
        );
        assert_eq!(
            legacy_arch("FreeBSD:15:aarch64").as_deref(),
            Some("freebsd:15:aarch64:64")
        );
        assert_eq!(legacy_arch("FreeBSD:14:*").as_deref(), Some("freebsd:14:*"));
        assert_eq!(legacy_arch("FreeBSD:14:vax"), None);
        assert_eq!(legacy_arch("FreeBSD:x:amd64"), None);
        assert_eq!(legacy_arch("FreeBSD"), None);
    }

    #[test]
    fn manifest_keys_come_in_pkg_order_with_files_last() {
        let manifest = Manifest {
            compact: CompactManifest {
                name: "n".into(),
                origin: "o/n".into(),
                version: "1".into(),
                comment: "c".into(),
                maintainer: "m".into(),
                www: "w".into(),
                abi: "FreeBSD:14:amd64".into(),
                arch: "freebsd:14:x86:64".into(),
                prefix: "/usr/local".into(),
                flatsize: 3,
                licenselogic: "single".into(),
                licenses: vec![],
                desc: "d".into(),
                deps: BTreeMap::new(),
                categories: vec![],
                annotations: BTreeMap::new(),
                messages: vec![],
            },
            files: BTreeMap::from([("/usr/local/x".into(), file_checksum(b"abc"))]),
            directories: BTreeMap::new(),
            scripts: BTreeMap::new(),
        };
        let json = String::from_utf8(manifest.to_json()).unwrap();
        let keys = [
            "\"name\"",
            "\"origin\"",
            "\"version\"",
            "\"abi\"",
            "\"arch\"",
            "\"flatsize\"",
            "\"desc\"",
            "\"annotations\"",
            "\"files\"",
        ];
        let positions: Vec<_> = keys.iter().map(|k| json.find(k).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{json}");
        assert!(json.ends_with("}\n") && !json[..json.len() - 1].contains('\n'));
        let back: Manifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, manifest);
    }
}
