//! From metadata + plist + built files to a `.pkg` on disk.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::{Compression as GzLevel, GzBuilder};

use crate::archive::{self, Compression, Member, MemberKind};
use crate::elf::{self, ElfOs};
use crate::format::ManifestFormat;
use crate::manifest::{self, CompactManifest, Contents, DirEntry, FileEntry, Manifest, Message};
use crate::metadata::LoadedMetadata;
use crate::plist::{self, Plist, PlistFile, ScriptKind, Substitutions};

/// Choices made when building, on top of the metadata.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Values for `{name}` placeholders in `sources`.
    pub vars: BTreeMap<String, String>,
    /// Option overrides (`--with` / `--without`); must be declared in the metadata.
    pub options: BTreeMap<String, bool>,
    /// Compression of the archive.
    pub compression: Compression,
    /// mtime of every archive member (seconds since the epoch).
    pub mtime: u64,
    /// Where `<name>-<version>.pkg` is written.
    pub output_dir: PathBuf,
}

/// A package that was written.
#[derive(Debug, Clone)]
pub struct BuiltPackage {
    /// The `.pkg` file.
    pub path: PathBuf,
    /// Its full manifest.
    pub manifest: Manifest,
    /// Size of the `.pkg` in bytes.
    pub size: u64,
}

/// Why a package could not be built. Each names the file to change and how.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The plist is wrong.
    #[error(transparent)]
    Plist(#[from] plist::PlistError),
    /// A file named by the metadata could not be read.
    #[error(
        "cannot read {path} ({what}, from {manifest}): {source}\nfix: create the file or correct `{what}` in {manifest}"
    )]
    Read {
        /// Which metadata key named it.
        what: String,
        /// The file.
        path: PathBuf,
        /// The Cargo.toml.
        manifest: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A plist file has no source.
    #[error(
        "{plist}:{line}: no source for `{key}`\n\
         fix: add \"{key}\" = \"<path>\" (or a directory key ending in /) under sources in the freebsd-pkg metadata of {manifest}"
    )]
    NoSource {
        /// The plist.
        plist: PathBuf,
        /// Its line.
        line: usize,
        /// The plist path.
        key: String,
        /// The Cargo.toml.
        manifest: PathBuf,
    },
    /// A plist file's source does not exist.
    #[error(
        "{plist}:{line}: `{key}` comes from {source_path}, which cannot be read: {source}\n\
         fix: build or write {source_path} first (scripts/build-pkg cross-builds the binaries), or correct its source in {manifest}"
    )]
    MissingSource {
        /// The plist.
        plist: PathBuf,
        /// Its line.
        line: usize,
        /// The plist path.
        key: String,
        /// Where it should come from.
        source_path: PathBuf,
        /// The Cargo.toml.
        manifest: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A source is listed but no plist line uses it: something built would be left out.
    #[error(
        "{manifest}: sources \"{key}\" matches no line of {plist}\n\
         fix: list the file in {plist} (so it is packaged) or remove the source"
    )]
    UnusedSource {
        /// The Cargo.toml.
        manifest: PathBuf,
        /// The source key.
        key: String,
        /// The plist.
        plist: PathBuf,
    },
    /// A `{var}` placeholder has no value.
    #[error(
        "{manifest}: sources \"{key}\" uses {{{var}}}, which has no value\nfix: pass --var {var}=<value>"
    )]
    UnknownVar {
        /// The Cargo.toml.
        manifest: PathBuf,
        /// The source key.
        key: String,
        /// The placeholder.
        var: String,
    },
    /// `--with`/`--without` named an undeclared option.
    #[error(
        "{manifest}: option {option} is not declared\nfix: declare it under options in the freebsd-pkg metadata, or use one of: {known}"
    )]
    UnknownOption {
        /// The Cargo.toml.
        manifest: PathBuf,
        /// The option.
        option: String,
        /// Declared options.
        known: String,
    },
    /// The ABI string is not `OS:major:machine`.
    #[error(
        "{manifest}: abi \"{abi}\" is not OS:major:machine with a known machine\nfix: write e.g. abi = \"FreeBSD:14:amd64\""
    )]
    BadAbi {
        /// The Cargo.toml.
        manifest: PathBuf,
        /// The value.
        abi: String,
    },
    /// The message file is neither plain text nor a JSON array of messages.
    #[error(
        "{path}: not a valid pkg-message: {source}\nfix: write a JSON/UCL array of {{\"message\": ..., \"type\": \"install\"}} objects, or plain text"
    )]
    BadMessage {
        /// The file.
        path: PathBuf,
        /// The JSON error (with line and column).
        source: serde_json::Error,
    },
    /// `scripts` has a key pkg does not know.
    #[error(
        "{manifest}: unknown script kind \"{kind}\"\nfix: use pre-install, post-install, pre-deinstall or post-deinstall"
    )]
    BadScriptKind {
        /// The Cargo.toml.
        manifest: PathBuf,
        /// The key.
        kind: String,
    },
    /// A substitution in an `.in` file or the message has no value.
    #[error(
        "{path}: unknown substitution %%{key}%%\nfix: define {key} under plist-sub in {manifest}"
    )]
    UnknownSubstitution {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The Cargo.toml.
        manifest: PathBuf,
    },
    /// `rc-scripts` is set but `files-dir` is not.
    #[error(
        "{manifest}: rc-scripts needs files-dir\nfix: set files-dir = \"files\" (the directory holding <name>.in)"
    )]
    NoFilesDir {
        /// The Cargo.toml.
        manifest: PathBuf,
    },
    /// A packaged binary was built for another FreeBSD release than `abi` says.
    #[error(
        "{path} was built for FreeBSD {found} (__FreeBSD_version {version}), but abi is \"{abi}\"\n\
         fix: build it for FreeBSD {expected}, or set abi in {manifest} to the release it was built for"
    )]
    AbiMismatch {
        /// The install path of the binary.
        path: String,
        /// Its `__FreeBSD_version`.
        version: u32,
        /// The major release that means.
        found: u32,
        /// The metadata's `abi`.
        abi: String,
        /// The major release of `abi`.
        expected: u32,
        /// The Cargo.toml.
        manifest: PathBuf,
    },
    /// The package could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// One file ready to go into the archive.
struct StagedFile {
    path: String,
    data: Vec<u8>,
    mode: u32,
    owner: String,
    group: String,
}

/// Build the package described by `loaded` with `options`.
pub fn build(loaded: &LoadedMetadata, options: &BuildOptions) -> Result<BuiltPackage, BuildError> {
    let meta = &loaded.metadata;
    let manifest_path = &loaded.manifest_path;
    let bad_abi = || BuildError::BadAbi {
        manifest: manifest_path.clone(),
        abi: meta.abi.clone(),
    };
    let abi = manifest::split_abi(&meta.abi).ok_or_else(bad_abi)?;
    let arch = manifest::legacy_arch(abi).ok_or_else(bad_abi)?;
    let subs = substitutions(loaded, options)?;
    // What `.in` files and the message get (see `Substitutions::for_files`).
    let file_subs = subs.for_files();

    let plist_path = loaded.root.join(&meta.plist);
    let plist_text = read_text(loaded, "plist", &plist_path)?;
    let plist = plist::parse(&plist_text, &plist_path, &meta.prefix, &subs)?;

    let mut files = Vec::new();
    let mut used_sources = Vec::new();
    for entry in &plist.files {
        let (key, source) = resolve_source(loaded, options, &plist_path, entry)?;
        used_sources.push(key);
        files.push(stage_file(loaded, &file_subs, &plist_path, entry, &source)?);
    }
    files.extend(rc_scripts(loaded, &file_subs)?);
    check_unused_sources(loaded, &plist, &used_sources)?;

    let desc_path = loaded.root.join(&meta.description_file);
    let desc = read_text(loaded, "description-file", &desc_path)?;
    let messages = match &meta.message_file {
        Some(file) => read_messages(loaded, &file_subs, &loaded.root.join(file))?,
        None => Vec::new(),
    };
    let scripts = scripts(loaded, &plist)?;
    let binaries = BinaryFacts::of(loaded, abi, &files)?;
    let mut annotations = meta.annotations.clone();
    annotations
        .entry("FreeBSD_version".to_owned())
        .or_insert_with(|| binaries.freebsd_version.to_string());

    let compact = CompactManifest {
        name: meta.name.clone(),
        origin: meta.origin.clone(),
        version: loaded.version.clone(),
        comment: meta.comment.clone(),
        maintainer: loaded.maintainer.clone(),
        www: meta.www.clone(),
        abi: meta.abi.clone(),
        arch,
        prefix: meta.prefix.clone(),
        flatsize: files.iter().map(|f| f.data.len() as u64).sum(),
        licenselogic: meta.license_logic.as_str().to_owned(),
        licenses: meta.licenses.clone(),
        desc: manifest::urlencode(desc.trim_end()),
        deps: meta.deps.clone(),
        categories: meta.categories.clone(),
        shlibs_required: binaries.shlibs_required,
        annotations,
        messages,
    };
    let format = ManifestFormat::from(meta.min_pkg_version);
    let manifest = Manifest {
        compact,
        contents: Contents {
            files: files
                .iter()
                .map(|f| {
                    (
                        manifest::urlencode(&f.path),
                        file_entry(format, f, options.mtime),
                    )
                })
                .collect(),
            directories: plist
                .dirs
                .iter()
                .map(|d| (manifest::urlencode(&d.path), dir_entry(format, d)))
                .collect(),
            scripts,
            lua_scripts: plist
                .lua_scripts
                .iter()
                .map(|(kind, chunks)| (kind.as_str().to_owned(), chunks.clone()))
                .collect(),
        },
    };

    let members = members(&manifest, files, &plist);
    let file_name = format!("{}-{}.pkg", meta.name, loaded.version);
    let path = options.output_dir.join(&file_name);
    write_atomically(&path, options, &members)?;
    let size = fs::metadata(&path)
        .map_err(|source| BuildError::Write {
            path: path.clone(),
            source,
        })?
        .len();
    Ok(BuiltPackage {
        path,
        manifest,
        size,
    })
}

fn substitutions(
    loaded: &LoadedMetadata,
    options: &BuildOptions,
) -> Result<Substitutions, BuildError> {
    let meta = &loaded.metadata;
    let mut opts = meta.options.clone();
    for (name, &on) in &options.options {
        match opts.get_mut(name) {
            Some(value) => *value = on,
            None => {
                return Err(BuildError::UnknownOption {
                    manifest: loaded.manifest_path.clone(),
                    option: name.clone(),
                    known: meta.options.keys().cloned().collect::<Vec<_>>().join(", "),
                });
            }
        }
    }
    let mut vars = meta.plist_sub.clone();
    vars.entry("PREFIX".to_owned())
        .or_insert_with(|| meta.prefix.clone());
    vars.entry("LOCALBASE".to_owned())
        .or_insert_with(|| meta.prefix.clone());
    Ok(Substitutions {
        vars,
        options: opts,
    })
}

fn read_text(loaded: &LoadedMetadata, what: &str, path: &Path) -> Result<String, BuildError> {
    fs::read_to_string(path).map_err(|source| BuildError::Read {
        what: what.to_owned(),
        path: path.to_owned(),
        manifest: loaded.manifest_path.clone(),
        source,
    })
}

/// Exact key first, then the longest directory key (ending in `/`) that is a prefix.
fn resolve_source(
    loaded: &LoadedMetadata,
    options: &BuildOptions,
    plist_path: &Path,
    entry: &PlistFile,
) -> Result<(String, PathBuf), BuildError> {
    let sources = &loaded.metadata.sources;
    let found = sources
        .get_key_value(&entry.key)
        .map(|(k, v)| (k, v.clone()))
        .or_else(|| {
            sources
                .iter()
                .filter(|(k, _)| k.ends_with('/') && entry.key.starts_with(k.as_str()))
                .max_by_key(|(k, _)| k.len())
                .map(|(k, v)| {
                    (
                        k,
                        format!("{}/{}", v.trim_end_matches('/'), &entry.key[k.len()..]),
                    )
                })
        });
    let (key, template) = found.ok_or_else(|| BuildError::NoSource {
        plist: plist_path.to_owned(),
        line: entry.line,
        key: entry.key.clone(),
        manifest: loaded.manifest_path.clone(),
    })?;
    let expanded = expand_vars(&template, &options.vars).map_err(|var| BuildError::UnknownVar {
        manifest: loaded.manifest_path.clone(),
        key: key.clone(),
        var,
    })?;
    Ok((key.clone(), loaded.root.join(expanded)))
}

/// Replace `{name}` with its value; `Err(name)` for the first unknown one.
fn expand_vars(template: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            out.push_str(&rest[open..]);
            return Ok(out);
        };
        let name = &rest[open + 1..open + close];
        out.push_str(vars.get(name).ok_or_else(|| name.to_owned())?);
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn stage_file(
    loaded: &LoadedMetadata,
    file_subs: &Substitutions,
    plist_path: &Path,
    entry: &PlistFile,
    source: &Path,
) -> Result<StagedFile, BuildError> {
    let missing = |err| BuildError::MissingSource {
        plist: plist_path.to_owned(),
        line: entry.line,
        key: entry.key.clone(),
        source_path: source.to_owned(),
        manifest: loaded.manifest_path.clone(),
        source: err,
    };
    let raw = fs::read(source).map_err(missing)?;
    let executable = is_executable(source);
    let data = transform(loaded, file_subs, source, &entry.path, raw)?;
    let attrs = &entry.attributes;
    Ok(StagedFile {
        mode: attrs
            .mode
            .unwrap_or_else(|| default_mode(&entry.path, executable)),
        path: entry.path.clone(),
        data,
        owner: attrs.owner_or_root(),
        group: attrs.group_or_wheel(),
    })
}

/// The mode a port's install macros give a file (Mk/bsd.port.mk with
/// share/mk/bsd.own.mk's BINMODE 555 and MANMODE 444): INSTALL_PROGRAM and
/// INSTALL_SCRIPT 0555, INSTALL_KLD 0555, INSTALL_MAN 0444, INSTALL_DATA
/// 0644 (`_SHAREMODE`). Data must stay writable by its owner: pkg.copy gives
/// a configuration file the mode of its `@sample`.
fn default_mode(install_path: &str, executable: bool) -> u32 {
    let is_man_page = install_path
        .split('/')
        .collect::<Vec<_>>()
        .windows(2)
        .any(|w| w[0] == "man" && w[1].starts_with("man"));
    let is_kernel_module = Path::new(install_path)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("ko"));
    if executable || is_kernel_module {
        0o555
    } else if is_man_page {
        0o444
    } else {
        0o644
    }
}

/// A file's `files` entry in the form `format` asks for.
fn file_entry(format: ManifestFormat, file: &StagedFile, mtime: u64) -> FileEntry {
    let sum = format.checksum.file_sum(&file.data);
    if !format.file_objects {
        return FileEntry::Sum(sum);
    }
    FileEntry::Attributes {
        sum,
        uname: file.owner.clone(),
        gname: file.group.clone(),
        perm: manifest::perm_string(file.mode),
        // pkg create writes mtime only when it is set (not 0).
        mtime: (mtime > 0).then_some(mtime),
    }
}

/// A directory's `directories` entry in the form `format` asks for.
fn dir_entry(format: ManifestFormat, dir: &plist::PlistDir) -> DirEntry {
    if !format.file_objects {
        return DirEntry::Keep("y".to_owned());
    }
    DirEntry::Attributes {
        uname: dir.attributes.owner_or_root(),
        gname: dir.attributes.group_or_wheel(),
        perm: manifest::perm_string(dir_mode(dir)),
    }
}

/// `@dir` without a mode: 0755, as the ports' MKDIR leaves it.
fn dir_mode(dir: &plist::PlistDir) -> u32 {
    dir.attributes.mode.unwrap_or(0o755)
}

/// What the packaged ELF files say, as `pkg create` reads it.
struct BinaryFacts {
    /// Sorted `DT_NEEDED` of the native FreeBSD files, minus what the
    /// package provides itself (`pkg_cleanup_shlibs_required`).
    shlibs_required: Vec<String>,
    /// The highest `__FreeBSD_version` among them, or `abi`'s release
    /// (`major * 100000`, what `pkg create` writes for an ABI given without
    /// OSVERSION) when no binary carries one.
    freebsd_version: u32,
}

impl BinaryFacts {
    /// `abi` is the package's ABI, as [`manifest::split_abi`] splits it.
    fn of(
        loaded: &LoadedMetadata,
        (_, major, machine): (&str, u32, &str),
        files: &[StagedFile],
    ) -> Result<Self, BuildError> {
        let meta = &loaded.metadata;
        let native_machine = elf::machine_for_abi(machine);
        let mut required = std::collections::BTreeSet::new();
        let mut provided = std::collections::BTreeSet::new();
        let mut freebsd_version = None;
        for file in files {
            let Some(facts) = elf::analyse(&file.data) else {
                continue;
            };
            if facts.os != ElfOs::FreeBsd || native_machine.is_some_and(|m| m != facts.machine) {
                continue;
            }
            if let Some(version) = facts.freebsd_version {
                if version / 100_000 != major {
                    return Err(BuildError::AbiMismatch {
                        path: file.path.clone(),
                        version,
                        found: version / 100_000,
                        abi: meta.abi.clone(),
                        expected: major,
                        manifest: loaded.manifest_path.clone(),
                    });
                }
                freebsd_version = freebsd_version.max(Some(version));
            }
            required.extend(facts.needed);
            provided.extend(facts.soname);
        }
        Ok(Self {
            shlibs_required: required.difference(&provided).cloned().collect(),
            freebsd_version: freebsd_version.unwrap_or(major * 100_000),
        })
    }
}

/// `.in` sources get `%%KEY%%` substitution (the ports' SUB_FILES); a `.gz`
/// destination from an uncompressed source is gzipped (the ports compress man
/// pages), without a timestamp so the package is reproducible.
fn transform(
    loaded: &LoadedMetadata,
    file_subs: &Substitutions,
    source: &Path,
    dest: &str,
    raw: Vec<u8>,
) -> Result<Vec<u8>, BuildError> {
    let source_name = source.to_string_lossy();
    let has_extension = |path: &str, ext: &str| {
        Path::new(path)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case(ext))
    };
    let mut data = raw;
    if has_extension(&source_name, "in") {
        let text = String::from_utf8_lossy(&data);
        data = file_subs
            .expand(&text)
            .map_err(|key| BuildError::UnknownSubstitution {
                path: source.to_owned(),
                key,
                manifest: loaded.manifest_path.clone(),
            })?
            .into_bytes();
    }
    if has_extension(dest, "gz") && !has_extension(&source_name, "gz") {
        let mut encoder = GzBuilder::new().mtime(0).write(Vec::new(), GzLevel::best());
        let written = encoder.write_all(&data).and_then(|()| encoder.finish());
        data = written.map_err(|source_err| BuildError::Write {
            path: PathBuf::from(dest),
            source: source_err,
        })?;
    }
    Ok(data)
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(_path: &Path) -> bool {
    false
}

/// USE_RC_SUBR: `<files-dir>/<name>.in` → `etc/rc.d/<name>`, 0555.
fn rc_scripts(
    loaded: &LoadedMetadata,
    file_subs: &Substitutions,
) -> Result<Vec<StagedFile>, BuildError> {
    let meta = &loaded.metadata;
    if meta.rc_scripts.is_empty() {
        return Ok(Vec::new());
    }
    let files_dir = meta
        .files_dir
        .as_ref()
        .ok_or_else(|| BuildError::NoFilesDir {
            manifest: loaded.manifest_path.clone(),
        })?;
    meta.rc_scripts
        .iter()
        .map(|name| {
            let source = loaded.root.join(files_dir).join(format!("{name}.in"));
            let raw = fs::read(&source).map_err(|source_err| BuildError::Read {
                what: format!("rc-scripts \"{name}\""),
                path: source.clone(),
                manifest: loaded.manifest_path.clone(),
                source: source_err,
            })?;
            let path = format!("{}/etc/rc.d/{name}", meta.prefix.trim_end_matches('/'));
            Ok(StagedFile {
                data: transform(loaded, file_subs, &source, &path, raw)?,
                path,
                mode: 0o555,
                owner: "root".to_owned(),
                group: "wheel".to_owned(),
            })
        })
        .collect()
}

fn check_unused_sources(
    loaded: &LoadedMetadata,
    plist: &Plist,
    used: &[String],
) -> Result<(), BuildError> {
    for key in loaded.metadata.sources.keys() {
        let used_here = used.iter().any(|u| u == key);
        let disabled = plist
            .disabled
            .iter()
            .any(|d| d == key || (key.ends_with('/') && d.starts_with(key.as_str())));
        if !used_here && !disabled {
            return Err(BuildError::UnusedSource {
                manifest: loaded.manifest_path.clone(),
                key: key.clone(),
                plist: loaded.metadata.plist.clone(),
            });
        }
    }
    Ok(())
}

fn read_messages(
    loaded: &LoadedMetadata,
    file_subs: &Substitutions,
    path: &Path,
) -> Result<Vec<Message>, BuildError> {
    let mut text = read_text(loaded, "message-file", path)?;
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("in"))
    {
        text = file_subs
            .expand(&text)
            .map_err(|key| BuildError::UnknownSubstitution {
                path: path.to_owned(),
                key,
                manifest: loaded.manifest_path.clone(),
            })?;
    }
    if text.trim_start().starts_with('[') {
        serde_json::from_str(&text).map_err(|source| BuildError::BadMessage {
            path: path.to_owned(),
            source,
        })
    } else {
        Ok(vec![Message {
            message: text.trim_end().to_owned(),
            kind: None,
            minimum_version: None,
            maximum_version: None,
        }])
    }
}

/// Scripts from the metadata first, then the lines plist keywords add.
fn scripts(loaded: &LoadedMetadata, plist: &Plist) -> Result<BTreeMap<String, String>, BuildError> {
    let mut by_kind: BTreeMap<ScriptKind, Vec<String>> = BTreeMap::new();
    for (kind_name, file) in &loaded.metadata.scripts {
        let kind = ScriptKind::from_name(kind_name).ok_or_else(|| BuildError::BadScriptKind {
            manifest: loaded.manifest_path.clone(),
            kind: kind_name.clone(),
        })?;
        let text = read_text(
            loaded,
            &format!("scripts.{kind_name}"),
            &loaded.root.join(file),
        )?;
        by_kind
            .entry(kind)
            .or_default()
            .push(text.trim_end().to_owned());
    }
    for (kind, lines) in &plist.scripts {
        by_kind
            .entry(*kind)
            .or_default()
            .extend(lines.iter().cloned());
    }
    Ok(by_kind
        .into_iter()
        .map(|(kind, parts)| {
            (
                kind.as_str().to_owned(),
                manifest::urlencode(&(parts.join("\n") + "\n")),
            )
        })
        .collect())
}

fn members(manifest: &Manifest, files: Vec<StagedFile>, plist: &Plist) -> Vec<Member> {
    let meta_file = |path: &str, data: Vec<u8>| Member {
        path: path.to_owned(),
        kind: MemberKind::File(data),
        mode: 0o644,
        uname: "root".to_owned(),
        gname: "wheel".to_owned(),
    };
    let mut members = vec![
        meta_file("+COMPACT_MANIFEST", manifest.compact.to_json()),
        meta_file("+MANIFEST", manifest.to_json()),
    ];
    members.extend(files.into_iter().map(|f| Member {
        path: f.path,
        kind: MemberKind::File(f.data),
        mode: f.mode,
        uname: f.owner,
        gname: f.group,
    }));
    members.extend(plist.dirs.iter().map(|d| Member {
        path: d.path.clone(),
        kind: MemberKind::Directory,
        mode: dir_mode(d),
        uname: d.attributes.owner_or_root(),
        gname: d.attributes.group_or_wheel(),
    }));
    members
}

fn write_atomically(
    path: &Path,
    options: &BuildOptions,
    members: &[Member],
) -> Result<(), BuildError> {
    let write_err = |source| BuildError::Write {
        path: path.to_owned(),
        source,
    };
    fs::create_dir_all(&options.output_dir).map_err(write_err)?;
    let partial = path.with_extension("pkg.partial");
    let file = fs::File::create(&partial).map_err(write_err)?;
    let result = archive::write(
        std::io::BufWriter::new(file),
        options.compression,
        options.mtime,
        members,
    )
    .and_then(|mut w| w.flush());
    if let Err(err) = result {
        let _ = fs::remove_file(&partial);
        return Err(write_err(err));
    }
    fs::rename(&partial, path).map_err(write_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_modes_follow_the_ports_install_macros() {
        assert_eq!(default_mode("/usr/local/sbin/d", true), 0o555);
        assert_eq!(default_mode("/boot/modules/x.ko", false), 0o555);
        assert_eq!(
            default_mode("/usr/local/share/man/man8/d.8.gz", false),
            0o444
        );
        assert_eq!(default_mode("/usr/local/etc/d.conf.sample", false), 0o644);
        assert_eq!(default_mode("/usr/local/share/doc/man/x", false), 0o644);
    }

    #[test]
    fn expand_vars_replaces_known_and_names_unknown() {
        let vars = BTreeMap::from([("bin_dir".to_owned(), "/t/release".to_owned())]);
        assert_eq!(expand_vars("{bin_dir}/d", &vars).unwrap(), "/t/release/d");
        assert_eq!(
            expand_vars("{kmod_dir}/x.ko", &vars).unwrap_err(),
            "kmod_dir"
        );
        assert_eq!(expand_vars("plain/{", &vars).unwrap(), "plain/{");
    }
}
