//! pkg's `+COMPACT_MANIFEST` and `+MANIFEST`, and a catalogue entry: compact
//! JSON (which pkg's UCL parser reads), keys in the order `pkg_emit_object`
//! (libpkg/pkg_manifest.c) emits them, empty lists and maps left out as it
//! leaves them out.
//!
//! - `files`: URL-encoded path → `{sum, uname, gname, perm, mtime}` (or the
//!   `"<sum>"` string for pkg before 2.4, see [`crate::format`]);
//! - `directories`: path → `{uname, gname, perm}` (or `"y"`);
//! - `scripts`: kind → URL-encoded shell; `lua_scripts`: kind → array of Lua
//!   chunks, not encoded (`pkg_lua_script_to_ucl`);
//! - `messages`: the array form of UCL pkg-message (pkg ≥ 1.12);
//! - paths, `desc` and scripts are URL-encoded the way pkg does it: only `%`
//!   and non-ASCII bytes are escaped.

use std::collections::BTreeMap;

use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::metadata::Dependency;

/// The manifest without files, directories and scripts: what
/// `+COMPACT_MANIFEST` holds and what repository catalogues list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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
    #[serde(default)]
    pub licenses: Vec<String>,
    /// Long description, URL-encoded.
    pub desc: String,
    /// Dependencies.
    #[serde(default)]
    pub deps: BTreeMap<String, Dependency>,
    /// Categories.
    #[serde(default)]
    pub categories: Vec<String>,
    /// Shared libraries the packaged ELF files need (`DT_NEEDED`), sorted;
    /// pkg refuses to install when one is missing on the target.
    #[serde(default)]
    pub shlibs_required: Vec<String>,
    /// Annotations, `FreeBSD_version` among them.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// pkg-message entries. pkg emits them outside its "compact" cut, so
    /// they are part of `+COMPACT_MANIFEST` and of catalogue entries too.
    #[serde(default)]
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

/// A packaged file's entry in `files`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FileEntry {
    /// pkg ≥ 2.4: the object `pkg create` writes (keys in its order).
    Attributes {
        /// `1$<sha256 hex>` or `2$<blake2b base32>`.
        sum: String,
        /// Owner.
        uname: String,
        /// Group.
        gname: String,
        /// Mode, `%#4.4o` (`"0644"`, `"04755"`).
        perm: String,
        /// Modification time in seconds, written when not 0.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mtime: Option<u64>,
    },
    /// Older pkg: the checksum alone; owner and mode travel in the tar header.
    Sum(String),
}

impl FileEntry {
    /// The checksum, whatever the form.
    pub fn sum(&self) -> &str {
        match self {
            Self::Attributes { sum, .. } | Self::Sum(sum) => sum,
        }
    }
}

/// A packaged directory's entry in `directories`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DirEntry {
    /// pkg ≥ 2.4: owner, group and mode.
    Attributes {
        /// Owner.
        uname: String,
        /// Group.
        gname: String,
        /// Mode, `%#4.4o`.
        perm: String,
    },
    /// Older pkg: `"y"`, remove when empty on deinstall.
    Keep(String),
}

/// pkg's spelling of a mode: C's `%#4.4o`, at least four digits with a
/// leading zero (`0644`, `0555`, `04755`).
pub fn perm_string(mode: u32) -> String {
    let digits = format!("{mode:04o}");
    if digits.starts_with('0') {
        digits
    } else {
        format!("0{digits}")
    }
}

/// What `+MANIFEST` has beyond the compact manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Contents {
    /// URL-encoded absolute path → entry.
    #[serde(default)]
    pub files: BTreeMap<String, FileEntry>,
    /// URL-encoded absolute path → entry.
    #[serde(default)]
    pub directories: BTreeMap<String, DirEntry>,
    /// Script kind → URL-encoded shell text.
    #[serde(default)]
    pub scripts: BTreeMap<String, String>,
    /// Script kind → Lua chunks, run one after the other.
    #[serde(default)]
    pub lua_scripts: BTreeMap<String, Vec<String>>,
}

/// The full `+MANIFEST`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Manifest {
    /// Everything the compact manifest has.
    #[serde(flatten)]
    pub compact: CompactManifest,
    /// Files, directories and scripts.
    #[serde(flatten)]
    pub contents: Contents,
}

/// The fields `pkg repo` adds to a compact manifest in a catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RepoFields {
    /// Checksum of the `.pkg` file (see [`crate::checksum`]).
    pub sum: String,
    /// Path of the `.pkg` relative to the repository root.
    pub path: String,
    /// Same as `path` (pkg writes both, for pkg 1.2).
    pub repopath: String,
    /// Size of the `.pkg` in bytes.
    pub pkgsize: u64,
}

/// Write the keys in `pkg_emit_object`'s order. `repo` adds a catalogue
/// entry's fields where pkg puts them, `contents` the full manifest's.
fn emit<S: Serializer>(
    serializer: S,
    compact: &CompactManifest,
    repo: Option<&RepoFields>,
    contents: Option<&Contents>,
) -> Result<S::Ok, S::Error> {
    let c = compact;
    let mut map = serializer.serialize_map(None)?;
    map.serialize_entry("name", &c.name)?;
    map.serialize_entry("origin", &c.origin)?;
    map.serialize_entry("version", &c.version)?;
    map.serialize_entry("comment", &c.comment)?;
    map.serialize_entry("maintainer", &c.maintainer)?;
    map.serialize_entry("www", &c.www)?;
    map.serialize_entry("abi", &c.abi)?;
    map.serialize_entry("arch", &c.arch)?;
    map.serialize_entry("prefix", &c.prefix)?;
    if let Some(r) = repo {
        map.serialize_entry("sum", &r.sum)?;
    }
    map.serialize_entry("flatsize", &c.flatsize)?;
    if let Some(r) = repo {
        map.serialize_entry("path", &r.path)?;
        map.serialize_entry("repopath", &r.repopath)?;
    }
    map.serialize_entry("licenselogic", &c.licenselogic)?;
    if !c.licenses.is_empty() {
        map.serialize_entry("licenses", &c.licenses)?;
    }
    if let Some(r) = repo {
        map.serialize_entry("pkgsize", &r.pkgsize)?;
    }
    map.serialize_entry("desc", &c.desc)?;
    if !c.deps.is_empty() {
        map.serialize_entry("deps", &c.deps)?;
    }
    if !c.categories.is_empty() {
        map.serialize_entry("categories", &c.categories)?;
    }
    if !c.shlibs_required.is_empty() {
        map.serialize_entry("shlibs_required", &c.shlibs_required)?;
    }
    if !c.annotations.is_empty() {
        map.serialize_entry("annotations", &c.annotations)?;
    }
    if let Some(x) = contents {
        if !x.files.is_empty() {
            map.serialize_entry("files", &x.files)?;
        }
        if !x.directories.is_empty() {
            map.serialize_entry("directories", &x.directories)?;
        }
        if !x.scripts.is_empty() {
            map.serialize_entry("scripts", &x.scripts)?;
        }
        if !x.lua_scripts.is_empty() {
            map.serialize_entry("lua_scripts", &x.lua_scripts)?;
        }
    }
    if !c.messages.is_empty() {
        map.serialize_entry("messages", &c.messages)?;
    }
    map.end()
}

impl Serialize for CompactManifest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        emit(serializer, self, None, None)
    }
}

impl Serialize for Manifest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        emit(serializer, &self.compact, None, Some(&self.contents))
    }
}

/// A catalogue entry: a compact manifest with the repository's fields.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CatalogueEntry {
    /// The package's compact manifest.
    #[serde(flatten)]
    pub manifest: CompactManifest,
    /// Where and what the `.pkg` is.
    #[serde(flatten)]
    pub repo: RepoFields,
}

impl Serialize for CatalogueEntry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        emit(serializer, &self.manifest, Some(&self.repo), None)
    }
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

/// One line of compact JSON without a trailing newline, as `pkg create`
/// writes both manifests (`ucl_object_emit(..., UCL_EMIT_JSON_COMPACT)`).
fn to_compact_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs of strings, ints and maps cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
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

/// The legacy `arch` string pkg derives from an ABI (`pkg_arch_to_legacy`),
/// given as [`split_abi`] splits it: `FreeBSD:14:amd64` →
/// `freebsd:14:x86:64`. `None` for an unknown machine.
pub fn legacy_arch((os, major, machine): (&str, u32, &str)) -> Option<String> {
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

/// `FreeBSD:14:amd64` → (`FreeBSD`, 14, `amd64`).
pub fn split_abi(abi: &str) -> Option<(&str, u32, &str)> {
    let mut parts = abi.splitn(3, ':');
    let (os, major, machine) = (parts.next()?, parts.next()?, parts.next()?);
    if os.is_empty() || machine.is_empty() {
        return None;
    }
    Some((os, major.parse().ok()?, machine))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compact() -> CompactManifest {
        CompactManifest {
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
            shlibs_required: vec!["libc.so.7".into()],
            annotations: BTreeMap::from([("FreeBSD_version".into(), "1400097".into())]),
            messages: vec![Message {
                message: "hi".into(),
                kind: None,
                minimum_version: None,
                maximum_version: None,
            }],
        }
    }

    fn positions(json: &str, keys: &[&str]) -> Vec<usize> {
        keys.iter()
            .map(|k| {
                json.find(&format!("\"{k}\""))
                    .unwrap_or_else(|| panic!("{k}: {json}"))
            })
            .collect()
    }

    #[test]
    fn urlencode_escapes_only_percent_and_non_ascii() {
        assert_eq!(urlencode("a b/c%d\u{e9}"), "a b/c%25d%c3%a9");
        assert_eq!(urldecode(&urlencode("50% caf\u{e9}\n")), "50% caf\u{e9}\n");
    }

    #[test]
    fn perm_strings_are_cs_alternate_octal() {
        assert_eq!(perm_string(0o644), "0644");
        assert_eq!(perm_string(0o555), "0555");
        assert_eq!(perm_string(0o4755), "04755");
        assert_eq!(perm_string(0), "0000");
    }

    #[test]
    fn legacy_arch_matches_pkg() {
        let legacy = |abi: &str| split_abi(abi).and_then(legacy_arch);
        assert_eq!(
            legacy("FreeBSD:14:amd64").as_deref(),
            Some("freebsd:14:x86:64")
        );
        assert_eq!(
            legacy("FreeBSD:15:aarch64").as_deref(),
            Some("freebsd:15:aarch64:64")
        );
        assert_eq!(legacy("FreeBSD:14:*").as_deref(), Some("freebsd:14:*"));
        assert_eq!(legacy("FreeBSD:14:vax"), None);
        assert_eq!(legacy("FreeBSD:x:amd64"), None);
        assert_eq!(legacy("FreeBSD"), None);
    }

    #[test]
    fn manifest_keys_come_in_pkg_emit_object_order() {
        let manifest = Manifest {
            compact: compact(),
            contents: Contents {
                files: BTreeMap::from([(
                    "/usr/local/x".into(),
                    FileEntry::Attributes {
                        sum: "1$ab".into(),
                        uname: "root".into(),
                        gname: "wheel".into(),
                        perm: "0644".into(),
                        mtime: Some(7),
                    },
                )]),
                directories: BTreeMap::from([(
                    "/usr/local/d".into(),
                    DirEntry::Attributes {
                        uname: "root".into(),
                        gname: "wheel".into(),
                        perm: "0755".into(),
                    },
                )]),
                scripts: BTreeMap::from([("post-install".into(), "true\n".into())]),
                lua_scripts: BTreeMap::from([("post-install".into(), vec!["x = 1\n".into()])]),
            },
        };
        let json = String::from_utf8(manifest.to_json()).unwrap();
        let order = [
            "name",
            "origin",
            "version",
            "comment",
            "maintainer",
            "www",
            "abi",
            "arch",
            "prefix",
            "flatsize",
            "licenselogic",
            "desc",
            "shlibs_required",
            "annotations",
            "files",
            "directories",
            "scripts",
            "lua_scripts",
            "messages",
        ];
        assert!(
            positions(&json, &order).windows(2).all(|w| w[0] < w[1]),
            "{json}"
        );
        assert!(json.contains("{\"sum\":\"1$ab\",\"uname\":\"root\",\"gname\":\"wheel\",\"perm\":\"0644\",\"mtime\":7}"), "{json}");
        assert!(
            !json.contains("\"licenses\""),
            "empty lists are left out: {json}"
        );
        assert!(json.ends_with('}') && !json.contains('\n'), "{json}");
        let back: Manifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, manifest);
    }

    #[test]
    fn old_forms_read_back_as_strings() {
        let text = r#"{"name":"n","origin":"o/n","version":"1","comment":"c","maintainer":"m","www":"w",
            "abi":"FreeBSD:14:amd64","arch":"freebsd:14:x86:64","prefix":"/usr/local","flatsize":0,
            "licenselogic":"single","desc":"d","files":{"/a":"1$00"},"directories":{"/d":"y"}}"#;
        let manifest: Manifest = serde_json::from_str(text).unwrap();
        assert_eq!(manifest.contents.files["/a"], FileEntry::Sum("1$00".into()));
        assert_eq!(
            manifest.contents.directories["/d"],
            DirEntry::Keep("y".into())
        );
    }

    #[test]
    fn catalogue_entries_put_repo_fields_where_pkg_does() {
        let entry = CatalogueEntry {
            manifest: compact(),
            repo: RepoFields {
                sum: "2$x".into(),
                path: "All/n-1.pkg".into(),
                repopath: "All/n-1.pkg".into(),
                pkgsize: 9,
            },
        };
        let json = serde_json::to_string(&entry).unwrap();
        let order = [
            "prefix",
            "sum",
            "flatsize",
            "path",
            "repopath",
            "licenselogic",
            "pkgsize",
            "desc",
        ];
        assert!(
            positions(&json, &order).windows(2).all(|w| w[0] < w[1]),
            "{json}"
        );
        assert_eq!(
            serde_json::from_str::<CatalogueEntry>(&json).unwrap(),
            entry
        );
    }
}
