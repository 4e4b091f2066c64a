//! `[package.metadata.freebsd-pkg]` (or `[workspace.metadata.freebsd-pkg]`):
//! what pkg(8) needs to know about a package that Cargo does not.
//!
//! Every key is checked: a misspelt key is an error that names the file, the
//! line and the keys that are allowed, never a silently ignored setting.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::format::PkgVersion;

/// The `freebsd-pkg` metadata table, as written in Cargo.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PackageMetadata {
    /// Package name, e.g. `hyperv-vss`.
    pub name: String,
    /// Package version; defaults to the Cargo package (or workspace) version.
    pub version: Option<String>,
    /// Ports origin, `category/port`.
    pub origin: String,
    /// One-line summary (the port's COMMENT).
    pub comment: String,
    /// File holding the long description (the port's pkg-descr).
    pub description_file: PathBuf,
    /// Who maintains the package; default: the first Cargo `authors` entry
    /// (as cargo-deb does). A package built outside the ports tree names its
    /// own project here, not a ports-tree address such as ports@FreeBSD.org.
    pub maintainer: Option<String>,
    /// Project home page (the port's WWW).
    pub www: String,
    /// Ports license names, e.g. `BSD2CLAUSE`.
    #[serde(default)]
    pub licenses: Vec<String>,
    /// How several licenses combine.
    #[serde(default)]
    pub license_logic: LicenseLogic,
    /// Ports categories; the first is the origin's category.
    #[serde(default)]
    pub categories: Vec<String>,
    /// Installation prefix.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// pkg ABI string `OS:major:arch`, e.g. `FreeBSD:14:amd64`.
    pub abi: String,
    /// Run-time dependencies: package name → origin and version.
    #[serde(default)]
    pub deps: BTreeMap<String, Dependency>,
    /// Shell scripts run by pkg, by kind (`post-install`, ...): files, relative to
    /// the manifest directory.
    #[serde(default)]
    pub scripts: BTreeMap<String, PathBuf>,
    /// A pkg-message file: plain text, or UCL/JSON (an array of messages).
    pub message_file: Option<PathBuf>,
    /// The packing list (ports pkg-plist format).
    pub plist: PathBuf,
    /// `%%KEY%%` substitutions for the plist and `.in` files (PLIST_SUB / SUB_LIST).
    #[serde(default)]
    pub plist_sub: BTreeMap<String, String>,
    /// Options and their defaults: `%%NAME%%` lines are kept when on,
    /// `%%NO_NAME%%` lines when off (ports OPTIONS_SUB).
    #[serde(default)]
    pub options: BTreeMap<String, bool>,
    /// Where `rc-scripts` templates live (the port's FILESDIR).
    pub files_dir: Option<PathBuf>,
    /// rc.d scripts (the port's USE_RC_SUBR): `<files-dir>/<name>.in` is installed
    /// as `etc/rc.d/<name>`, mode 0555, after `%%KEY%%` substitution.
    #[serde(default)]
    pub rc_scripts: Vec<String>,
    /// Where each plist path comes from: plist path (or a directory ending in `/`)
    /// → source path relative to the manifest directory, with `{var}` placeholders.
    #[serde(default)]
    pub sources: BTreeMap<String, String>,
    /// Extra manifest annotations. `FreeBSD_version` set here wins over the
    /// one read from the packaged binaries.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The oldest pkg(8) the package must install on; it picks the manifest
    /// form and checksums that pkg's `pkg create` writes (see
    /// [`crate::format`]). Default: the current pkg, 2.8.
    #[serde(default)]
    pub min_pkg_version: PkgVersion,
}

fn default_prefix() -> String {
    "/usr/local".to_owned()
}

/// How the listed licenses combine (pkg's `licenselogic`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LicenseLogic {
    /// One license.
    #[default]
    Single,
    /// All licenses apply.
    And,
    /// The user may choose.
    Or,
}

impl LicenseLogic {
    /// The manifest spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::And => "and",
            Self::Or => "or",
        }
    }
}

/// One run-time dependency.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Dependency {
    /// Ports origin of the dependency.
    pub origin: String,
    /// Version of the dependency the package was built against.
    pub version: String,
}

/// Metadata found in a Cargo.toml, with the directory relative paths resolve from.
#[derive(Debug, Clone)]
pub struct LoadedMetadata {
    /// The manifest that was read.
    pub manifest_path: PathBuf,
    /// Directory of that manifest: relative paths in the metadata start here.
    pub root: PathBuf,
    /// The table itself.
    pub metadata: PackageMetadata,
    /// `version` from the metadata, else from `[package]`, else `[workspace.package]`.
    pub version: String,
    /// `maintainer` from the metadata, else the first Cargo author.
    pub maintainer: String,
}

/// Why the metadata could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The manifest could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax error, a misspelt key or a value of the wrong type.
    #[error(
        "{path}: invalid [*.metadata.freebsd-pkg]: {source}\n\
         fix: correct the key or value named above (keys are listed in pkg-rs/README.md)"
    )]
    Invalid {
        /// The file.
        path: PathBuf,
        /// toml's message, which carries the line and column.
        source: Box<toml::de::Error>,
    },
    /// Neither table exists.
    #[error(
        "{path}: no [package.metadata.freebsd-pkg] or [workspace.metadata.freebsd-pkg] table\n\
         fix: add one with at least name, origin, comment, description-file, www, abi and plist"
    )]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// No maintainer anywhere.
    #[error(
        "{path}: no package maintainer\n\
         fix: set `maintainer` in the freebsd-pkg table or `authors` in [package] / [workspace.package]"
    )]
    NoMaintainer {
        /// The file.
        path: PathBuf,
    },
    /// No version anywhere.
    #[error(
        "{path}: no package version\n\
         fix: set `version` in the freebsd-pkg table or a version in [package] / [workspace.package]"
    )]
    NoVersion {
        /// The file.
        path: PathBuf,
    },
}

#[derive(Deserialize)]
struct CargoManifest {
    package: Option<CargoSection>,
    workspace: Option<CargoWorkspace>,
}

#[derive(Deserialize)]
struct CargoWorkspace {
    package: Option<CargoWorkspacePackage>,
    metadata: Option<MetadataSection>,
}

#[derive(Deserialize)]
struct CargoWorkspacePackage {
    version: Option<String>,
    authors: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct CargoSection {
    version: Option<toml::Value>,
    authors: Option<toml::Value>,
    metadata: Option<MetadataSection>,
}

#[derive(Deserialize)]
struct MetadataSection {
    #[serde(rename = "freebsd-pkg")]
    freebsd_pkg: Option<PackageMetadata>,
}

/// Read the freebsd-pkg metadata from a Cargo.toml: the package table wins over
/// the workspace table.
pub fn load(manifest_path: &Path) -> Result<LoadedMetadata, MetadataError> {
    let text = fs::read_to_string(manifest_path).map_err(|source| MetadataError::Read {
        path: manifest_path.to_owned(),
        source,
    })?;
    parse(&text, manifest_path)
}

/// Parse Cargo.toml text; `manifest_path` names the file in errors and anchors
/// relative paths.
pub fn parse(text: &str, manifest_path: &Path) -> Result<LoadedMetadata, MetadataError> {
    let manifest: CargoManifest =
        toml::from_str(text).map_err(|source| MetadataError::Invalid {
            path: manifest_path.to_owned(),
            source: Box::new(source),
        })?;
    let workspace_package = manifest.workspace.as_ref().and_then(|w| w.package.as_ref());
    let workspace_version = workspace_package.and_then(|p| p.version.clone());
    let workspace_author = workspace_package
        .and_then(|p| p.authors.as_ref())
        .and_then(|a| a.first().cloned());
    // `authors.workspace = true` is a table: fall through to the workspace.
    let package_author = manifest
        .package
        .as_ref()
        .and_then(|p| p.authors.as_ref())
        .and_then(|a| a.as_array())
        .and_then(|a| a.first())
        .and_then(|a| a.as_str().map(str::to_owned));
    // `version.workspace = true` is a table, not a string: fall through to the workspace.
    let package_version = manifest
        .package
        .as_ref()
        .and_then(|p| p.version.as_ref())
        .and_then(|v| v.as_str().map(str::to_owned));
    let from_package = manifest
        .package
        .and_then(|p| p.metadata)
        .and_then(|m| m.freebsd_pkg);
    let from_workspace = manifest
        .workspace
        .and_then(|w| w.metadata)
        .and_then(|m| m.freebsd_pkg);
    let metadata = from_package
        .or(from_workspace)
        .ok_or_else(|| MetadataError::Missing {
            path: manifest_path.to_owned(),
        })?;
    let version = metadata
        .version
        .clone()
        .or(package_version)
        .or(workspace_version)
        .ok_or_else(|| MetadataError::NoVersion {
            path: manifest_path.to_owned(),
        })?;
    let maintainer = metadata
        .maintainer
        .clone()
        .or(package_author)
        .or(workspace_author)
        .ok_or_else(|| MetadataError::NoMaintainer {
            path: manifest_path.to_owned(),
        })?;
    let root = manifest_path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_owned);
    let root = if root.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        root
    };
    Ok(LoadedMetadata {
        manifest_path: manifest_path.to_owned(),
        root,
        metadata,
        version,
        maintainer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[workspace.package]
version = "1.2.3"

[workspace.metadata.freebsd-pkg]
name = "demo"
origin = "sysutils/demo"
comment = "Demo"
description-file = "descr"
maintainer = "a@example.org"
www = "https://example.org"
abi = "FreeBSD:14:amd64"
plist = "pkg-plist"
"#;

    #[test]
    fn workspace_table_and_version_are_read() {
        let loaded = parse(MINIMAL, Path::new("/x/Cargo.toml")).unwrap();
        assert_eq!(loaded.version, "1.2.3");
        assert_eq!(loaded.metadata.prefix, "/usr/local");
        assert_eq!(loaded.root, Path::new("/x"));
        assert_eq!(loaded.metadata.license_logic, LicenseLogic::Single);
        assert_eq!(loaded.maintainer, "a@example.org");
        assert_eq!(loaded.metadata.min_pkg_version, PkgVersion::new(2, 8));
    }

    #[test]
    fn maintainer_defaults_to_the_first_author() {
        let text = MINIMAL
            .replace("maintainer = \"a@example.org\"\n", "")
            .replace(
                "version = \"1.2.3\"",
                "version = \"1.2.3\"\nauthors = [\"Demo Team <t@example.org>\"]",
            );
        let loaded = parse(&text, Path::new("Cargo.toml")).unwrap();
        assert_eq!(loaded.maintainer, "Demo Team <t@example.org>");
        let err = parse(
            &MINIMAL.replace("maintainer = \"a@example.org\"\n", ""),
            Path::new("Cargo.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("no package maintainer"), "{err}");
    }

    #[test]
    fn min_pkg_version_is_checked() {
        let text = format!("{MINIMAL}min-pkg-version = \"2.4\"\n");
        let loaded = parse(&text, Path::new("Cargo.toml")).unwrap();
        assert_eq!(loaded.metadata.min_pkg_version, PkgVersion::new(2, 4));
        let err = parse(
            &format!("{MINIMAL}min-pkg-version = \"1.10\"\n"),
            Path::new("Cargo.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("older than 1.17"), "{err}");
    }

    #[test]
    fn misspelt_key_names_file_line_and_key() {
        let text = MINIMAL.replace("maintainer =", "maintainr =");
        let err = parse(&text, Path::new("Cargo.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("Cargo.toml: "), "{err}");
        assert!(err.contains("line 10"), "{err}");
        assert!(err.contains("unknown field `maintainr`"), "{err}");
        assert!(err.contains("fix:"), "{err}");
    }

    #[test]
    fn missing_table_says_how_to_add_it() {
        let err = parse("[package]\nname='x'\n", Path::new("Cargo.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no [package.metadata.freebsd-pkg]"), "{err}");
    }

    #[test]
    fn package_table_wins_and_explicit_version_wins() {
        let text = format!(
            "{MINIMAL}\n[package]\nname = \"p\"\nversion = \"9.9.9\"\n\
             [package.metadata.freebsd-pkg]\nname = \"p\"\nversion = \"2.0\"\norigin = \"a/p\"\n\
             comment = \"c\"\ndescription-file = \"d\"\nmaintainer = \"m\"\nwww = \"w\"\n\
             abi = \"FreeBSD:14:amd64\"\nplist = \"pl\"\n"
        );
        let loaded = parse(&text, Path::new("Cargo.toml")).unwrap();
        assert_eq!(loaded.metadata.name, "p");
        assert_eq!(loaded.version, "2.0");
    }
}
