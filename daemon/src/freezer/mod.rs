//! Freezing one filesystem, behind one trait. The platform implementation
//! is chosen here, in the only `cfg` of the freeze path.

use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::config::Config;
use crate::log::Escaped;
use crate::mounts::{FsId, Mount};

#[cfg(target_os = "linux")]
mod fifreeze;
#[cfg(target_os = "freebsd")]
mod ufs;

/// The freezer of this platform.
#[cfg(target_os = "freebsd")]
pub type PlatformFreezer = ufs::UfsSuspend;
/// The freezer of this platform.
#[cfg(target_os = "linux")]
pub type PlatformFreezer = fifreeze::Fifreeze;

/// Where `zpool` lives on both FreeBSD and Linux (zfsutils).
pub const ZPOOL: &str = "/sbin/zpool";

/// Freezes and thaws single filesystems. Order, rollback and bookkeeping are
/// the engine's job; an implementation only talks to the kernel.
///
/// A freeze is held, not looked up again: [`Self::open`] is the only step
/// that resolves the mount point, before anything is frozen; the freeze and
/// the thaw go through the [`Self::Handle`] it returns. A path can be
/// covered by another mount, unmounted lazily, or hijacked by a FUSE server
/// that stops answering while the filesystem is frozen; a held descriptor
/// reaches the frozen filesystem whatever happens to its path.
pub trait Freezer {
    /// What reaches one filesystem from open to thaw (a descriptor).
    type Handle;
    /// Opens what the freeze and the thaw of `mount` go through, checking
    /// that its mount point still shows the planned filesystem (ESTALE if
    /// not: that filesystem must never be frozen in its place). Freezes
    /// nothing.
    fn open(&mut self, mount: &Mount) -> Result<Self::Handle, FreezeError>;
    /// Freezes the filesystem. It stays frozen until [`Self::thaw`] (on
    /// FreeBSD: or until the handle is closed, also by process exit).
    fn freeze(&mut self, handle: &mut Self::Handle, mount: &Mount) -> Result<(), FreezeError>;
    /// Thaws a filesystem frozen through `handle`, looking nothing up. An
    /// error means it may still be frozen: keep the handle and retry.
    fn thaw(&mut self, handle: &mut Self::Handle, mount: &Mount) -> Result<(), FreezeError>;
    /// Whether a freeze outlives this process (Linux FIFREEZE), so the daemon
    /// must record it in the state file and thaw it at its next start.
    fn freeze_outlives_process(&self) -> bool;
    /// Thaws a filesystem left frozen by an earlier process (from the state
    /// file) through `path`, if `path` still shows filesystem `fs_id`. An
    /// error (ESTALE: `path` shows another filesystem; ENOENT: it is gone)
    /// means it could not be reached there, not that it is thawed.
    fn thaw_leftover(&mut self, path: &Path, fs_id: FsId) -> Result<Leftover, FreezeError>;
    /// Flushes, before the freeze, the read-write filesystems nothing can
    /// freeze (msdosfs, ...), so the snapshot has at least their data.
    /// Best effort: a failure is the caller's to log, not a veto.
    fn flush_unfreezable(&mut self, mounts: &[&Mount]) -> Result<(), FreezeError>;
}

/// What [`Freezer::thaw_leftover`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftover {
    /// It was frozen and is thawed now.
    Thawed,
    /// It was not frozen (any more).
    NotFrozen,
}

/// A freeze or thaw the kernel refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} {}: {errno}{}", Escaped(mount.as_os_str()), hint(action, *errno))]
pub struct FreezeError {
    pub mount: PathBuf,
    pub action: &'static str,
    pub errno: Errno,
}

fn hint(action: &str, errno: Errno) -> &'static str {
    match (action, errno) {
        (_, Errno::EPERM) => " (run as root, outside a jail)",
        ("freeze", Errno::EBUSY) => " (already frozen or suspended by someone else)",
        ("freeze", Errno::EDEADLK) => {
            " (the daemon holds a file open for writing there, or is multi-threaded)"
        }
        (_, Errno::ESTALE) => {
            " (no longer the planned filesystem: it was unmounted, covered or replaced since)"
        }
        _ => "",
    }
}

/// Refuses configurations that are unsafe on this platform. Linux builds
/// exist for development and tests: freezing the build machine's own root
/// would hang it, so they only freeze mounts named by `include`.
pub fn check_platform_config(config: &Config) -> Result<(), String> {
    if cfg!(target_os = "linux") && config.include.is_empty() {
        return Err(
            "on Linux (development and tests only) set `include = <globs>` to the \
                    mounts that may be frozen"
                .to_owned(),
        );
    }
    Ok(())
}
