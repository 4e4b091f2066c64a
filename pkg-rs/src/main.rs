//! `cargo freebsd-pkg`: the command-line face of the `freebsd_pkg` library.

use std::collections::BTreeMap;
use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use freebsd_pkg::format::PkgVersion;
use freebsd_pkg::{BuildOptions, Compression, crates, metadata, package, repo};
use sha2::Digest as _;

/// Build FreeBSD pkg(8) packages from Cargo metadata and a ports pkg-plist.
#[derive(Debug, Parser)]
#[command(name = "cargo-freebsd-pkg", bin_name = "cargo freebsd-pkg", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write <name>-<version>.pkg from the freebsd-pkg metadata.
    Build(BuildArgs),
    /// Write a repository catalogue (meta.conf, packagesite.pkg, data.pkg) for a directory of packages.
    Repo {
        /// Repository root; packages anywhere below it (e.g. All/) are indexed.
        dir: PathBuf,
        /// zstd, xz or none.
        #[arg(long, default_value = "zstd")]
        compression: Compression,
        /// Oldest pkg the repository serves: package sums as its `pkg repo` writes them.
        #[arg(long, default_value_t = PkgVersion::default())]
        min_pkg_version: PkgVersion,
    },
    /// Print (or check) the port's Makefile.crates for a Cargo.lock.
    CargoCrates {
        /// The lock file.
        #[arg(long, default_value = "Cargo.lock")]
        lock: PathBuf,
        /// Write here instead of standard output.
        #[arg(long, conflicts_with = "check")]
        output: Option<PathBuf>,
        /// Fail if this file differs from what the lock gives.
        #[arg(long)]
        check: Option<PathBuf>,
    },
    /// Print distinfo: the given distfiles, then every crate in the lock.
    Distinfo {
        /// The lock file.
        #[arg(long, default_value = "Cargo.lock")]
        lock: PathBuf,
        /// Directories holding downloaded .crate files (default: $CARGO_HOME/registry/cache/*).
        #[arg(long = "cache-dir")]
        cache_dirs: Vec<PathBuf>,
        /// NAME=PATH: a distfile recorded as NAME with the checksum and size of PATH.
        #[arg(long = "distfile", value_parser = parse_pair)]
        distfiles: Vec<(String, String)>,
        /// Write here instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Print a package's +MANIFEST, pretty.
    Inspect {
        /// The .pkg file.
        package: PathBuf,
    },
}

#[derive(Debug, Args)]
struct BuildArgs {
    /// Cargo.toml holding [package.metadata.freebsd-pkg] or [workspace.metadata.freebsd-pkg].
    #[arg(long, default_value = "Cargo.toml")]
    manifest_path: PathBuf,
    /// Output directory.
    #[arg(short, long, default_value = "dist")]
    output_dir: PathBuf,
    /// zstd (pkg ≥ 1.17 default), xz (every pkg) or none.
    #[arg(long, default_value = "zstd")]
    compression: Compression,
    /// NAME=VALUE for {NAME} in sources (bin_dir defaults to <target-dir>/x86_64-unknown-freebsd/release).
    #[arg(long = "var", value_parser = parse_pair)]
    vars: Vec<(String, String)>,
    /// Turn a declared option on.
    #[arg(long = "with")]
    with: Vec<String>,
    /// Turn a declared option off.
    #[arg(long = "without")]
    without: Vec<String>,
    /// mtime of every member (default: $SOURCE_DATE_EPOCH, else now).
    #[arg(long)]
    timestamp: Option<u64>,
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected NAME=VALUE, got `{text}`"))
}

fn main() -> ExitCode {
    // As a cargo subcommand we are run as `cargo-freebsd-pkg freebsd-pkg ...`.
    let mut args: Vec<String> = env::args().collect();
    if args.get(1).is_some_and(|a| a == "freebsd-pkg") {
        args.remove(1);
    }
    let cli = Cli::parse_from(args);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("cargo-freebsd-pkg: error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Build(args) => build(args),
        Command::Repo {
            dir,
            compression,
            min_pkg_version,
        } => {
            let entries = repo::write_catalogue(&dir, compression, min_pkg_version, mtime(None))
                .map_err(|e| e.to_string())?;
            println!("indexed {} package(s) in {}", entries.len(), dir.display());
            Ok(())
        }
        Command::CargoCrates {
            lock,
            output,
            check,
        } => {
            let text =
                crates::makefile_crates(&crates::read_lock(&lock).map_err(|e| e.to_string())?);
            if let Some(check) = check {
                let current = fs::read_to_string(&check)
                    .map_err(|e| format!("cannot read {}: {e}", check.display()))?;
                if current != text {
                    return Err(format!(
                        "{} is out of date with {}\nfix: cargo run -p cargo-freebsd-pkg -- freebsd-pkg cargo-crates --lock {} --output {}",
                        check.display(),
                        lock.display(),
                        lock.display(),
                        check.display()
                    ));
                }
                println!("{} matches {}", check.display(), lock.display());
                Ok(())
            } else {
                emit(output.as_deref(), &text)
            }
        }
        Command::Distinfo {
            lock,
            cache_dirs,
            distfiles,
            output,
        } => {
            let locked = crates::read_lock(&lock).map_err(|e| e.to_string())?;
            let cache_dirs = if cache_dirs.is_empty() {
                default_cache_dirs()
            } else {
                cache_dirs
            };
            let mut text = format!("TIMESTAMP = {}\n", mtime(None));
            for (name, path) in distfiles {
                let data =
                    fs::read(&path).map_err(|e| format!("cannot read distfile {path}: {e}"))?;
                let sum = freebsd_pkg::checksum::hex(&sha2::Sha256::digest(&data));
                let _ = write!(
                    text,
                    "SHA256 ({name}) = {}
SIZE ({name}) = {}
",
                    sum,
                    data.len()
                );
            }
            text.push_str(
                &crates::distinfo_lines(&locked, &cache_dirs).map_err(|e| e.to_string())?,
            );
            emit(output.as_deref(), &text)
        }
        Command::Inspect { package } => {
            let file =
                fs::File::open(&package).map_err(|e| format!("{}: {e}", package.display()))?;
            let manifest =
                freebsd_pkg::archive::read_member(std::io::BufReader::new(file), "+MANIFEST")
                    .map_err(|e| format!("{}: {e}", package.display()))?
                    .ok_or_else(|| format!("{}: no +MANIFEST", package.display()))?;
            let value: serde_json::Value = serde_json::from_slice(&manifest)
                .map_err(|e| format!("{}: +MANIFEST: {e}", package.display()))?;
            println!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
            Ok(())
        }
    }
}

fn build(args: BuildArgs) -> Result<(), String> {
    let loaded = metadata::load(&args.manifest_path).map_err(|e| e.to_string())?;
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let target_dir =
        env::var_os("CARGO_TARGET_DIR").map_or_else(|| loaded.root.join("target"), PathBuf::from);
    vars.insert("target_dir".to_owned(), target_dir.display().to_string());
    vars.insert(
        "bin_dir".to_owned(),
        target_dir
            .join("x86_64-unknown-freebsd/release")
            .display()
            .to_string(),
    );
    vars.extend(args.vars);
    let mut options = BTreeMap::new();
    for name in args.with {
        options.insert(name, true);
    }
    for name in args.without {
        options.insert(name, false);
    }
    let built = package::build(
        &loaded,
        &BuildOptions {
            vars,
            options,
            compression: args.compression,
            mtime: mtime(args.timestamp),
            output_dir: args.output_dir,
        },
    )
    .map_err(|e| e.to_string())?;
    println!(
        "wrote {} ({} bytes, {} files, {} directories, flatsize {})",
        built.path.display(),
        built.size,
        built.manifest.contents.files.len(),
        built.manifest.contents.directories.len(),
        built.manifest.compact.flatsize
    );
    Ok(())
}

fn mtime(explicit: Option<u64>) -> u64 {
    explicit
        .or_else(|| {
            env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|s| s.parse().ok())
        })
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        })
}

fn default_cache_dirs() -> Vec<PathBuf> {
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .unwrap_or_default();
    fs::read_dir(cargo_home.join("registry/cache"))
        .map(|dirs| dirs.filter_map(Result::ok).map(|d| d.path()).collect())
        .unwrap_or_default()
}

fn emit(output: Option<&Path>, text: &str) -> Result<(), String> {
    if let Some(path) = output {
        fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    } else {
        print!("{text}");
        Ok(())
    }
}
