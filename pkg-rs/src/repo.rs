//! A pkg repository catalogue for a directory of packages (what `pkg repo`
//! writes, unsigned; libpkg/pkg_repo_create.c): `meta.conf` (and the older
//! `meta`) naming the files as `pkg_repo_meta_to_ucl` does,
//! `packagesite.pkg` holding `packagesite.yaml` (one compact manifest per
//! line with `sum`, `path`, `repopath`, `pkgsize`), and `data.pkg` holding
//! `data` (`{"groups":[],"expired_packages":[],"packages":[...]}`, the
//! catalogue pkg 2.x reads). Clients use it with `signature_type: "none"`
//! in their repository configuration.

use std::fs;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use crate::archive::{self, Compression, Member, MemberKind};
use crate::format::{ManifestFormat, PkgVersion};
pub use crate::manifest::CatalogueEntry;
use crate::manifest::{CompactManifest, RepoFields};

/// Why a catalogue could not be written.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A `.pkg` has no usable `+COMPACT_MANIFEST`.
    #[error(
        "{path}: not a pkg package: {problem}\nfix: rebuild it with cargo freebsd-pkg or pkg create, or move it out of the repository"
    )]
    BadPackage {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Nothing to index.
    #[error(
        "{path}: no .pkg files found\nfix: put packages (e.g. under All/) in the repository directory first"
    )]
    Empty {
        /// The directory.
        path: PathBuf,
    },
}

/// The `data` catalogue in pkg_repo_create's key order: "groups" and
/// "expired_packages" (both empty unless `pkg repo` is given -g / -e), then
/// "packages".
#[derive(serde::Serialize)]
struct Data<'a> {
    groups: Vec<serde_json::Value>,
    expired_packages: Vec<serde_json::Value>,
    packages: &'a [CatalogueEntry],
}

/// Files the catalogue itself writes at the root: never indexed as packages.
const CATALOGUE_FILES: [&str; 2] = ["packagesite.pkg", "data.pkg"];

/// Index every `.pkg` below `root` and write the catalogue files into
/// `root`, with package sums as `pkg repo` of `min_pkg_version` writes them.
pub fn write_catalogue(
    root: &Path,
    compression: Compression,
    min_pkg_version: PkgVersion,
    mtime: u64,
) -> Result<Vec<CatalogueEntry>, RepoError> {
    let format = ManifestFormat::from(min_pkg_version);
    let mut packages = Vec::new();
    find_packages(root, root, &mut packages)?;
    if packages.is_empty() {
        return Err(RepoError::Empty {
            path: root.to_owned(),
        });
    }
    let mut entries = packages
        .iter()
        .map(|path| entry_for(root, path, format))
        .collect::<Result<Vec<_>, _>>()?;
    entries.sort_by(|a, b| {
        (&a.manifest.name, &a.manifest.version).cmp(&(&b.manifest.name, &b.manifest.version))
    });

    let mut site = Vec::new();
    for entry in &entries {
        // Serializing plain structs cannot fail.
        site.extend(serde_json::to_vec(entry).unwrap_or_default());
        site.push(b'\n');
    }
    let data = serde_json::to_vec(&Data {
        groups: Vec::new(),
        expired_packages: Vec::new(),
        packages: &entries,
    })
    .unwrap_or_default();

    write_archive(
        root,
        "packagesite.pkg",
        "packagesite.yaml",
        site,
        compression,
        mtime,
    )?;
    write_archive(root, "data.pkg", "data", data, compression, mtime)?;
    // pkg_repo_meta_to_ucl's keys and pkg_repo_meta_set_default's names,
    // in its order; it writes no data_archive (the client's default is
    // "data") and names the file list "files" even when none is written.
    let meta = format!(
        "version = 2;\npacking_format = \"{}\";\nmanifests = \"packagesite.yaml\";\ndata = \"data\";\n\
         filesite = \"files\";\nmanifests_archive = \"packagesite\";\nfilesite_archive = \"files\";\n",
        compression.packing_format()
    );
    for name in ["meta.conf", "meta"] {
        let path = root.join(name);
        fs::write(&path, &meta).map_err(|source| RepoError::Io { path, source })?;
    }
    Ok(entries)
}

fn find_packages(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), RepoError> {
    let io_err = |source| RepoError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut children: Vec<_> = fs::read_dir(dir)
        .map_err(io_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_err)?;
    children.sort_by_key(fs::DirEntry::file_name);
    for child in children {
        let name = child.file_name();
        let name = name.to_string_lossy();
        let path = child.path();
        if name.starts_with('.') || name == "Latest" {
            continue;
        }
        if path.is_dir() {
            find_packages(root, &path, out)?;
        } else if name.ends_with(".pkg")
            && !(dir == root && CATALOGUE_FILES.contains(&name.as_ref()))
        {
            out.push(path);
        }
    }
    Ok(())
}

fn entry_for(
    root: &Path,
    path: &Path,
    format: ManifestFormat,
) -> Result<CatalogueEntry, RepoError> {
    let io_err = |source| RepoError::Io {
        path: path.to_owned(),
        source,
    };
    let bytes = fs::read(path).map_err(io_err)?;
    let bad = |problem: String| RepoError::BadPackage {
        path: path.to_owned(),
        problem,
    };
    let compact = archive::read_member(std::io::Cursor::new(bytes.clone()), "+COMPACT_MANIFEST")
        .map_err(|e| bad(format!("cannot read the archive: {e}")))?
        .ok_or_else(|| bad("no +COMPACT_MANIFEST member".to_owned()))?;
    let manifest: CompactManifest =
        serde_json::from_slice(&compact).map_err(|e| bad(format!("+COMPACT_MANIFEST: {e}")))?;
    let relative = path
        .strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned();
    Ok(CatalogueEntry {
        manifest,
        repo: RepoFields {
            sum: format.checksum.package_sum(&bytes),
            path: relative.clone(),
            repopath: relative,
            pkgsize: bytes.len() as u64,
        },
    })
}

fn write_archive(
    root: &Path,
    archive_name: &str,
    member_name: &str,
    data: Vec<u8>,
    compression: Compression,
    mtime: u64,
) -> Result<(), RepoError> {
    let path = root.join(archive_name);
    let io_err = |source| RepoError::Io {
        path: path.clone(),
        source,
    };
    let member = Member {
        path: member_name.to_owned(),
        kind: MemberKind::File(data),
        mode: 0o644,
        uname: "root".to_owned(),
        gname: "wheel".to_owned(),
    };
    let file = fs::File::create(&path).map_err(io_err)?;
    archive::write(std::io::BufWriter::new(file), compression, mtime, &[member])
        .and_then(|mut w| w.flush())
        .map_err(io_err)
}

/// Read a catalogue back (for tests and `pkg-rs` users checking a repository).
pub fn read_packagesite(root: &Path) -> Result<Vec<CatalogueEntry>, RepoError> {
    let path = root.join("packagesite.pkg");
    let io_err = |source| RepoError::Io {
        path: path.clone(),
        source,
    };
    let file = fs::File::open(&path).map_err(io_err)?;
    let site = archive::read_member(BufReader::new(file), "packagesite.yaml")
        .map_err(io_err)?
        .ok_or_else(|| RepoError::BadPackage {
            path: path.clone(),
            problem: "no packagesite.yaml".to_owned(),
        })?;
    site.split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            serde_json::from_slice(line).map_err(|e| RepoError::BadPackage {
                path: path.clone(),
                problem: format!("packagesite.yaml: {e}"),
            })
        })
        .collect()
}
