//! `freebsd_pkg`: write FreeBSD pkg(8) packages without FreeBSD.
//!
//! In the spirit of cargo-deb and cargo-generate-rpm: package metadata lives
//! in Cargo.toml (`[package.metadata.freebsd-pkg]` or
//! `[workspace.metadata.freebsd-pkg]`, see [`metadata`]), the file list is the
//! ports `pkg-plist` the FreeBSD port uses too (see [`plist`]), and each plist
//! path is mapped to a built or checked-in file. [`package::build`] writes a
//! `.pkg` (tar + zstd/xz, manifests first, see [`archive`] and [`manifest`])
//! in the form `pkg create` of the target pkg version writes ([`format`]),
//! with what it learns from the binaries ([`elf`]) and the scripts of the
//! ports' keywords ([`keywords`]);
//! [`repo::write_catalogue`] indexes a directory of packages as a repository;
//! [`crates`] produces the port's `CARGO_CRATES` and distinfo lines from
//! Cargo.lock.

pub mod archive;
pub mod checksum;
pub mod crates;
pub mod elf;
pub mod format;
pub mod keywords;
pub mod manifest;
pub mod metadata;
pub mod package;
pub mod plist;
pub mod repo;

pub use archive::Compression;
pub use metadata::{LoadedMetadata, PackageMetadata};
pub use package::{BuildError, BuildOptions, BuiltPackage, build};
