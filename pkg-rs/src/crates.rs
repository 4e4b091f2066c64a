//! The ports side of a Cargo.lock: `CARGO_CRATES` for `Makefile.crates`
//! (what `make cargo-crates` prints) and the crate lines of `distinfo`.
//! The lock's `checksum` is the SHA-256 of the `.crate` file, which is what
//! distinfo records, so only the sizes need the downloaded crates.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A crate fetched from crates.io.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedCrate {
    /// Crate name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// SHA-256 of the `.crate` file, hex.
    pub checksum: String,
}

impl LockedCrate {
    /// `name-version`, the CARGO_CRATES spelling and the distfile stem.
    pub fn id(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }
}

/// Why the lock could not be turned into ports data.
#[derive(Debug, thiserror::Error)]
pub enum CratesError {
    /// The lock file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The lock is not valid TOML of the expected shape.
    #[error("{path}: {source}\nfix: regenerate it with `cargo generate-lockfile`")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message with line and column.
        source: Box<toml::de::Error>,
    },
    /// A dependency comes from somewhere the port cannot fetch as a crate.
    #[error(
        "{path}: {name} {version} comes from {source_url}, which CARGO_CRATES cannot express\nfix: depend on a crates.io release instead"
    )]
    UnsupportedSource {
        /// The lock file.
        path: PathBuf,
        /// Crate.
        name: String,
        /// Version.
        version: String,
        /// Its source.
        source_url: String,
    },
    /// A registry crate has no checksum.
    #[error(
        "{path}: {name} {version} has no checksum\nfix: regenerate the lock with a current cargo"
    )]
    NoChecksum {
        /// The lock file.
        path: PathBuf,
        /// Crate.
        name: String,
        /// Version.
        version: String,
    },
    /// The downloaded crate file is missing, so its size is unknown.
    #[error("{id}.crate is not in {searched}\nfix: run `cargo fetch --locked` first")]
    NotDownloaded {
        /// name-version.
        id: String,
        /// Where it was looked for.
        searched: String,
    },
}

#[derive(Deserialize)]
struct Lock {
    #[serde(default)]
    package: Vec<LockPackage>,
}

#[derive(Deserialize)]
struct LockPackage {
    name: String,
    version: String,
    source: Option<String>,
    checksum: Option<String>,
}

const CRATES_IO: &str = "registry+https://github.com/rust-lang/crates.io-index";

/// Every crates.io package in a Cargo.lock, sorted by name then version.
/// Workspace members (no `source`) are skipped.
pub fn read_lock(path: &Path) -> Result<Vec<LockedCrate>, CratesError> {
    let text = fs::read_to_string(path).map_err(|source| CratesError::Read {
        path: path.to_owned(),
        source,
    })?;
    let lock: Lock = toml::from_str(&text).map_err(|source| CratesError::Parse {
        path: path.to_owned(),
        source: Box::new(source),
    })?;
    let mut crates = Vec::new();
    for package in lock.package {
        let Some(source) = package.source else {
            continue;
        };
        if source != CRATES_IO && !source.starts_with("sparse+https://index.crates.io") {
            return Err(CratesError::UnsupportedSource {
                path: path.to_owned(),
                name: package.name,
                version: package.version,
                source_url: source,
            });
        }
        let checksum = package.checksum.ok_or_else(|| CratesError::NoChecksum {
            path: path.to_owned(),
            name: package.name.clone(),
            version: package.version.clone(),
        })?;
        crates.push(LockedCrate {
            name: package.name,
            version: package.version,
            checksum,
        });
    }
    crates.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    Ok(crates)
}

/// The text of `Makefile.crates`.
pub fn makefile_crates(crates: &[LockedCrate]) -> String {
    let mut out = String::from(
        "# Generated from Cargo.lock by `cargo freebsd-pkg cargo-crates`; do not edit.\n",
    );
    for (i, krate) in crates.iter().enumerate() {
        let lead = if i == 0 { "CARGO_CRATES=\t" } else { "\t\t" };
        let tail = if i + 1 == crates.len() { "" } else { " \\" };
        let _ = writeln!(out, "{lead}{}{tail}", krate.id());
    }
    if crates.is_empty() {
        out.push_str("CARGO_CRATES=\n");
    }
    out
}

/// distinfo lines for the crates: SHA-256 from the lock, size from the
/// downloaded `.crate` in one of `cache_dirs` (checked against the lock).
pub fn distinfo_lines(
    crates: &[LockedCrate],
    cache_dirs: &[PathBuf],
) -> Result<String, CratesError> {
    let mut out = String::new();
    for krate in crates {
        let id = krate.id();
        let size = cache_dirs
            .iter()
            .map(|dir| dir.join(format!("{id}.crate")))
            .find_map(|file| fs::metadata(file).ok())
            .map(|m| m.len())
            .ok_or_else(|| CratesError::NotDownloaded {
                id: id.clone(),
                searched: cache_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let _ = writeln!(out, "SHA256 (rust/crates/{id}.crate) = {}", krate.checksum);
        let _ = writeln!(out, "SIZE (rust/crates/{id}.crate) = {size}");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = r#"
version = 4

[[package]]
name = "zeta"
version = "1.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "aa"

[[package]]
name = "member"
version = "0.1.0"

[[package]]
name = "alpha"
version = "0.2.1"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "bb"
"#;

    fn lock_file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Cargo.lock");
        fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn makefile_crates_lists_registry_crates_sorted_in_ports_layout() {
        let (_dir, path) = lock_file(LOCK);
        let crates = read_lock(&path).unwrap();
        assert_eq!(
            makefile_crates(&crates),
            "# Generated from Cargo.lock by `cargo freebsd-pkg cargo-crates`; do not edit.\n\
             CARGO_CRATES=\talpha-0.2.1 \\\n\t\tzeta-1.0.0\n"
        );
    }

    #[test]
    fn git_sources_are_refused_with_a_fix() {
        let (_dir, path) = lock_file(&LOCK.replace(
            "source = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"aa\"",
            "source = \"git+https://example.org/z#abc\"",
        ));
        let err = read_lock(&path).unwrap_err().to_string();
        assert!(
            err.contains("zeta 1.0.0 comes from git+https://example.org/z#abc"),
            "{err}"
        );
    }

    #[test]
    fn distinfo_takes_sums_from_the_lock_and_sizes_from_the_cache() {
        let (dir, path) = lock_file(LOCK);
        let crates = read_lock(&path).unwrap();
        fs::write(dir.path().join("alpha-0.2.1.crate"), b"12345").unwrap();
        let err = distinfo_lines(&crates, &[dir.path().to_owned()])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("zeta-1.0.0.crate is not in"), "{err}");
        fs::write(dir.path().join("zeta-1.0.0.crate"), b"1").unwrap();
        let lines = distinfo_lines(&crates, &[dir.path().to_owned()]).unwrap();
        assert_eq!(
            lines,
            "SHA256 (rust/crates/alpha-0.2.1.crate) = bb\nSIZE (rust/crates/alpha-0.2.1.crate) = 5\n\
             SHA256 (rust/crates/zeta-1.0.0.crate) = aa\nSIZE (rust/crates/zeta-1.0.0.crate) = 1\n"
        );
    }
}
