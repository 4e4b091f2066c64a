//! Real filesystems to freeze, in a temporary directory, cleaned up in
//! every path (also during a panic):
//! - Linux ([`linux`]): sparse images formatted with mkfs.ext4/mkfs.xfs
//!   and loop-mounted; frozen with FIFREEZE;
//! - FreeBSD ([`freebsd`]): md(4) vnode disks with UFS2 (three soft
//!   updates settings), a ZFS pool, a read-only UFS and a nullfs mount;
//!   suspended with UFSSUSPEND.
//!
//! The names the tests use ([`FsType`], [`LoopFilesystem`],
//! [`LoopFilesystems`]) are the same on both; each platform module
//! implements one `LoopFilesystem` with the same methods. External tools
//! run under a timeout so a wedged `mkfs` cannot hang a test run.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

#[cfg(target_os = "freebsd")]
pub mod freebsd;
#[cfg(target_os = "linux")]
pub mod linux;

#[cfg(target_os = "freebsd")]
pub use freebsd::LoopFilesystem;
#[cfg(target_os = "linux")]
pub use linux::LoopFilesystem;

/// How long any external tool (mkfs, mount, losetup, mdconfig, zpool) may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// A filesystem type the harness can create. Every variant exists on every
/// platform (so code naming one compiles everywhere); [`FsType::supported`]
/// says which this machine's platform can create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsType {
    /// Linux ext4 (mkfs.ext4), frozen with FIFREEZE.
    Ext4,
    /// Linux xfs (mkfs.xfs, from xfsprogs), frozen with FIFREEZE.
    Xfs,
    /// FreeBSD UFS2 with journaled soft updates (`newfs -j`, the
    /// installer's default), suspended with UFSSUSPEND.
    UfsSuj,
    /// UFS2 with soft updates only (`newfs -U`).
    UfsSu,
    /// UFS2 with neither soft updates nor journal (plain `newfs`).
    Ufs,
    /// A ZFS pool on an md(4) disk: never frozen, flushed with `zpool sync`.
    Zfs,
    /// UFS2 mounted read-only: the daemon skips it.
    UfsReadOnly,
    /// A nullfs(5) mount of a UFS2 that is not in the daemon's `include`:
    /// the daemon skips it (pseudo filesystem).
    Nullfs,
}

/// What the daemon is expected to do with a filesystem of a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Treatment {
    /// Frozen on FREEZE, thawed on THAW; writes block in between.
    Frozen,
    /// Flushed with `zpool sync` before the FREEZE reply; never frozen.
    Synced,
    /// Left alone (read-only, pseudo), and logged as skipped.
    Skipped,
}

impl FsType {
    /// Every type, in the order of `--fs` help texts.
    pub const ALL: [FsType; 8] = [
        FsType::Ext4,
        FsType::Xfs,
        FsType::UfsSuj,
        FsType::UfsSu,
        FsType::Ufs,
        FsType::Zfs,
        FsType::UfsReadOnly,
        FsType::Nullfs,
    ];

    /// What `hv-vss-sim backup` creates when `--fs` is not given (before
    /// dropping those whose tools are missing, see [`select_available`]).
    #[cfg(target_os = "linux")]
    pub const BACKUP_DEFAULTS: &'static [FsType] = &[FsType::Ext4, FsType::Xfs];
    #[cfg(target_os = "freebsd")]
    pub const BACKUP_DEFAULTS: &'static [FsType] = &[
        FsType::UfsSuj,
        FsType::UfsSu,
        FsType::Ufs,
        FsType::Zfs,
        FsType::UfsReadOnly,
        FsType::Nullfs,
    ];

    /// The platform's main frozen filesystem (ext4 on Linux, UFS2 with
    /// SU+J on FreeBSD): what a one-filesystem scenario uses.
    #[cfg(target_os = "linux")]
    pub const PRIMARY: FsType = FsType::Ext4;
    #[cfg(target_os = "freebsd")]
    pub const PRIMARY: FsType = FsType::UfsSuj;

    /// A second frozen type for mixed scenarios (xfs on Linux, UFS2
    /// without soft updates on FreeBSD).
    #[cfg(target_os = "linux")]
    pub const SECONDARY: FsType = FsType::Xfs;
    #[cfg(target_os = "freebsd")]
    pub const SECONDARY: FsType = FsType::Ufs;

    pub fn name(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
            FsType::UfsSuj => "ufs-suj",
            FsType::UfsSu => "ufs-su",
            FsType::Ufs => "ufs",
            FsType::Zfs => "zfs",
            FsType::UfsReadOnly => "ufs-ro",
            FsType::Nullfs => "nullfs",
        }
    }

    /// The program that creates it.
    pub fn mkfs_tool(self) -> &'static str {
        match self {
            FsType::Ext4 => "mkfs.ext4",
            FsType::Xfs => "mkfs.xfs",
            FsType::UfsSuj | FsType::UfsSu | FsType::Ufs | FsType::UfsReadOnly | FsType::Nullfs => {
                "newfs"
            }
            FsType::Zfs => "zpool",
        }
    }

    /// The Debian package with [`Self::mkfs_tool`] (Linux types only).
    pub fn debian_package(self) -> &'static str {
        match self {
            FsType::Ext4 => "e2fsprogs",
            FsType::Xfs => "xfsprogs",
            _ => "(none: not a Linux filesystem)",
        }
    }

    /// What to do when [`Self::mkfs_tool`] is missing.
    pub fn install_hint(self) -> String {
        match self {
            FsType::Ext4 | FsType::Xfs => format!(
                "install {} (apt-get install {})",
                self.debian_package(),
                self.debian_package()
            ),
            FsType::Zfs => "load ZFS (kldload zfs); zpool is in FreeBSD's base system".to_owned(),
            _ => "newfs is in FreeBSD's base system".to_owned(),
        }
    }

    /// Whether this platform can create it.
    pub fn supported(self) -> bool {
        // The crate builds for Linux and FreeBSD only: every type that is
        // not Linux's is FreeBSD's.
        let linux_type = matches!(self, FsType::Ext4 | FsType::Xfs);
        linux_type == cfg!(target_os = "linux")
    }

    /// What the daemon does with it.
    pub fn treatment(self) -> Treatment {
        match self {
            FsType::Zfs => Treatment::Synced,
            FsType::UfsReadOnly | FsType::Nullfs => Treatment::Skipped,
            _ => Treatment::Frozen,
        }
    }

    /// Whether the daemon freezes it ([`Treatment::Frozen`]).
    pub fn freezes(self) -> bool {
        self.treatment() == Treatment::Frozen
    }

    /// The names this platform accepts, for error messages.
    fn supported_names() -> String {
        FsType::ALL
            .into_iter()
            .filter(|t| t.supported())
            .map(FsType::name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for FsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FsType {
    type Err = LoopError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FsType::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| LoopError::UnknownFsType(s.to_owned()))
    }
}

/// Parses a comma-separated list such as `ext4,xfs,ext4`.
pub fn parse_fs_list(list: &str) -> Result<Vec<FsType>, LoopError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect()
}

/// A default filesystem left out because this machine cannot create it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    pub fs_type: FsType,
    /// Why, and how to add it (`mkfs.xfs not found: install xfsprogs ...`).
    pub reason: String,
}

/// The filesystems of `candidates` this machine can create, and the others
/// with the reason each is missing. `missing` answers for one type: `None`
/// when it can be created, else why not (in production,
/// [`crate::environment::fs_missing`]; tests inject their own).
pub fn select_available(
    candidates: &[FsType],
    missing: impl Fn(FsType) -> Option<String>,
) -> (Vec<FsType>, Vec<Unavailable>) {
    let mut available = Vec::new();
    let mut unavailable = Vec::new();
    for &fs_type in candidates {
        match missing(fs_type) {
            None => available.push(fs_type),
            Some(reason) => unavailable.push(Unavailable { fs_type, reason }),
        }
    }
    (available, unavailable)
}

#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error("unknown filesystem type {0:?}: use {names}", names = FsType::supported_names())]
    UnknownFsType(String),
    #[error("{0} cannot be created on this platform: use {names}", names = FsType::supported_names())]
    Unsupported(FsType),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Tool {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("`{command}` did not finish within {timeout:?}; it was killed")]
    ToolTimeout { command: String, timeout: Duration },
    #[error("{what} on {mount}: {errno}")]
    Ioctl {
        what: &'static str,
        mount: PathBuf,
        errno: nix::errno::Errno,
    },
}

/// An ioctl (or mount call) `what` on `mount` failed with `errno`.
fn ioctl_error(what: &'static str, mount: &Path, errno: nix::errno::Errno) -> LoopError {
    LoopError::Ioctl {
        what,
        mount: mount.to_owned(),
        errno,
    }
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LoopError {
    let what = what.into();
    move |source| LoopError::Io { what, source }
}

/// Runs an external tool with a timeout; returns its stdout.
pub(crate) fn run_tool(program: &str, args: &[&str]) -> Result<String, LoopError> {
    let command = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_error(format!("cannot run `{command}`")))?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() > TOOL_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(LoopError::ToolTimeout {
                    command,
                    timeout: TOOL_TIMEOUT,
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(io_error(format!("waiting for `{command}`"))(e)),
        }
    }
    let output = child
        .wait_with_output()
        .map_err(io_error(format!("reading output of `{command}`")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(LoopError::Tool {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Creates the sparse image file `path` of `size` bytes.
fn create_image(path: &Path, size: u64) -> Result<(), LoopError> {
    let file =
        std::fs::File::create(path).map_err(io_error(format!("creating {}", path.display())))?;
    file.set_len(size)
        .map_err(io_error(format!("sizing {}", path.display())))
}

fn path_str(path: &Path) -> Result<String, LoopError> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| LoopError::Io {
            what: format!("path {} is not UTF-8", path.display()),
            source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        })
}

/// A set of loop filesystems in one temporary directory, removed on drop
/// (filesystems first, in reverse creation order, then the directory).
#[derive(Debug)]
pub struct LoopFilesystems {
    filesystems: Vec<LoopFilesystem>,
    dir: tempfile::TempDir,
}

/// Prefix of the temporary directory: emergency cleanups look for it in
/// the mount table to find the simulator's filesystems.
pub const SCRATCH_PREFIX: &str = "hv-vss-sim-fs.";

impl LoopFilesystems {
    /// Creates `fs_types.len()` filesystems named `fs0`, `fs1`, ….
    pub fn create(fs_types: &[FsType]) -> Result<Self, LoopError> {
        if let Some(&unsupported) = fs_types.iter().find(|t| !t.supported()) {
            return Err(LoopError::Unsupported(unsupported));
        }
        let dir = tempfile::Builder::new()
            .prefix(SCRATCH_PREFIX)
            .tempdir()
            .map_err(io_error("creating a temporary directory for the images"))?;
        let mut set = LoopFilesystems {
            filesystems: Vec::new(),
            dir,
        };
        for (index, &fs_type) in fs_types.iter().enumerate() {
            let fs = LoopFilesystem::create(set.dir.path(), &format!("fs{index}"), fs_type)?;
            set.filesystems.push(fs);
        }
        Ok(set)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, LoopFilesystem> {
        self.filesystems.iter()
    }

    pub fn len(&self) -> usize {
        self.filesystems.len()
    }

    pub fn is_empty(&self) -> bool {
        self.filesystems.is_empty()
    }

    /// Mount points of every filesystem that is frozen right now.
    pub fn frozen(&self) -> Result<Vec<PathBuf>, LoopError> {
        let mut frozen = Vec::new();
        for fs in &self.filesystems {
            if fs.is_frozen()? {
                frozen.push(fs.mount_point().to_owned());
            }
        }
        Ok(frozen)
    }

    /// Thaws every filesystem; returns the mount points that were frozen.
    pub fn thaw_all(&self) -> Vec<PathBuf> {
        self.filesystems
            .iter()
            .filter(|fs| matches!(fs.thaw(), Ok(true)))
            .map(|fs| fs.mount_point().to_owned())
            .collect()
    }
}

impl<'a> IntoIterator for &'a LoopFilesystems {
    type Item = &'a LoopFilesystem;
    type IntoIter = std::slice::Iter<'a, LoopFilesystem>;

    fn into_iter(self) -> Self::IntoIter {
        self.filesystems.iter()
    }
}

impl Drop for LoopFilesystems {
    fn drop(&mut self) {
        while let Some(mut fs) = self.filesystems.pop() {
            fs.cleanup();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_to_its_type() {
        for fs_type in FsType::ALL {
            assert_eq!(fs_type.name().parse::<FsType>().unwrap(), fs_type);
        }
        assert!(matches!(
            "btrfs".parse::<FsType>(),
            Err(LoopError::UnknownFsType(name)) if name == "btrfs"
        ));
        assert_eq!(
            parse_fs_list("ext4, xfs,,ufs-suj").unwrap(),
            vec![FsType::Ext4, FsType::Xfs, FsType::UfsSuj]
        );
    }

    #[test]
    fn each_platform_supports_exactly_its_own_types_and_its_defaults() {
        for fs_type in FsType::BACKUP_DEFAULTS {
            assert!(fs_type.supported(), "{fs_type}");
        }
        assert!(FsType::PRIMARY.freezes() && FsType::SECONDARY.freezes());
        assert_ne!(FsType::PRIMARY, FsType::SECONDARY);
        assert_eq!(FsType::Ext4.supported(), cfg!(target_os = "linux"));
        assert_eq!(FsType::UfsSuj.supported(), cfg!(target_os = "freebsd"));
    }
}
