//! Real filesystems to freeze: sparse image files, formatted with
//! mkfs.ext4/mkfs.xfs and loop-mounted in a temporary directory.
//!
//! A [`LoopFilesystem`] cleans up when dropped, also during a panic: it thaws
//! (FITHAW), unmounts (lazily if something still holds it) and detaches the
//! loop device, in that order, because unmounting a frozen filesystem would
//! block. External tools run under a timeout so a wedged `mkfs` cannot hang
//! a test run.

use std::fmt;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// How long any external tool (mkfs, mount, losetup) may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

// Linux's FIFREEZE/FITHAW: _IOWR('X', 119/120, int). The argument is unused.
nix::ioctl_readwrite!(fifreeze, b'X', 119, libc::c_int);
nix::ioctl_readwrite!(fithaw, b'X', 120, libc::c_int);

/// A filesystem type the harness can create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    Ext4,
    Xfs,
}

impl FsType {
    pub fn name(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
        }
    }

    pub fn mkfs_tool(self) -> &'static str {
        match self {
            FsType::Ext4 => "mkfs.ext4",
            FsType::Xfs => "mkfs.xfs",
        }
    }

    pub fn debian_package(self) -> &'static str {
        match self {
            FsType::Ext4 => "e2fsprogs",
            FsType::Xfs => "xfsprogs",
        }
    }

    /// Image size: mkfs.xfs refuses filesystems under 300 MB. The files
    /// are sparse, so only the metadata mkfs writes takes disk space.
    fn image_size(self) -> u64 {
        match self {
            FsType::Ext4 => 64 << 20,
            FsType::Xfs => 320 << 20,
        }
    }

    fn mkfs_args(self) -> &'static [&'static str] {
        match self {
            // Initialise inode tables and journal now: otherwise ext4 zeroes
            // them in the background after mount, and that I/O lands in the
            // middle of the backups and benchmarks that follow.
            FsType::Ext4 => &["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"],
            FsType::Xfs => &["-q", "-f"],
        }
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
        match s {
            "ext4" => Ok(FsType::Ext4),
            "xfs" => Ok(FsType::Xfs),
            other => Err(LoopError::UnknownFsType(other.to_owned())),
        }
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

#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error("unknown filesystem type {0:?}: use ext4 or xfs")]
    UnknownFsType(String),
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

/// One loop-mounted filesystem; thawed, unmounted and detached on drop.
#[derive(Debug)]
pub struct LoopFilesystem {
    fs_type: FsType,
    image: PathBuf,
    mount_point: PathBuf,
    loop_device: Option<PathBuf>,
    mounted: bool,
}

impl LoopFilesystem {
    /// Creates `<dir>/<name>.img`, formats it and mounts it on `<dir>/<name>`.
    pub fn create(dir: &Path, name: &str, fs_type: FsType) -> Result<Self, LoopError> {
        let image = dir.join(format!("{name}.img"));
        let mount_point = dir.join(name);
        let file = std::fs::File::create(&image)
            .map_err(io_error(format!("creating {}", image.display())))?;
        file.set_len(fs_type.image_size())
            .map_err(io_error(format!("sizing {}", image.display())))?;
        drop(file);
        std::fs::create_dir_all(&mount_point)
            .map_err(io_error(format!("creating {}", mount_point.display())))?;
        // From here on, Drop undoes whatever was done.
        let mut fs = LoopFilesystem {
            fs_type,
            image,
            mount_point,
            loop_device: None,
            mounted: false,
        };
        let image_arg = path_str(&fs.image)?;
        let mut mkfs_args = fs_type.mkfs_args().to_vec();
        mkfs_args.push(&image_arg);
        run_tool(fs_type.mkfs_tool(), &mkfs_args)?;
        let device = run_tool("losetup", &["--find", "--show", &image_arg])?;
        fs.loop_device = Some(PathBuf::from(device.trim()));
        let device_arg = device.trim().to_owned();
        let mount_arg = path_str(&fs.mount_point)?;
        run_tool("mount", &["-t", fs_type.name(), &device_arg, &mount_arg])?;
        fs.mounted = true;
        Ok(fs)
    }

    pub fn fs_type(&self) -> FsType {
        self.fs_type
    }

    pub fn mount_point(&self) -> &Path {
        &self.mount_point
    }

    pub fn loop_device(&self) -> Option<&Path> {
        self.loop_device.as_deref()
    }

    /// Whether the filesystem is frozen right now.
    ///
    /// Linux has no read-only query for this, so it probes: FIFREEZE fails
    /// with EBUSY on a frozen filesystem; if the probe froze it, it is
    /// thawed at once. Only call it while nobody else is freezing.
    pub fn is_frozen(&self) -> Result<bool, LoopError> {
        let dir = self.open_mount_point()?;
        let mut unused: libc::c_int = 0;
        // SAFETY: FIFREEZE on an open directory fd; the kernel ignores the
        // int argument, which is a valid pointer for the call's duration.
        match unsafe { fifreeze(dir.as_raw_fd(), &raw mut unused) } {
            Err(nix::errno::Errno::EBUSY) => Ok(true),
            Ok(_) => {
                self.thaw()?;
                Ok(false)
            }
            Err(errno) => Err(LoopError::Ioctl {
                what: "FIFREEZE probe",
                mount: self.mount_point.clone(),
                errno,
            }),
        }
    }

    /// Freezes the filesystem (for tests that need a frozen state the
    /// daemon did not create).
    pub fn freeze(&self) -> Result<(), LoopError> {
        let dir = self.open_mount_point()?;
        let mut unused: libc::c_int = 0;
        // SAFETY: as in `is_frozen`.
        unsafe { fifreeze(dir.as_raw_fd(), &raw mut unused) }
            .map(drop)
            .map_err(|errno| LoopError::Ioctl {
                what: "FIFREEZE",
                mount: self.mount_point.clone(),
                errno,
            })
    }

    /// Thaws the filesystem; `Ok(false)` if it was not frozen.
    pub fn thaw(&self) -> Result<bool, LoopError> {
        let dir = self.open_mount_point()?;
        let mut unused: libc::c_int = 0;
        // SAFETY: FITHAW on an open directory fd; the argument is ignored.
        match unsafe { fithaw(dir.as_raw_fd(), &raw mut unused) } {
            Ok(_) => Ok(true),
            Err(nix::errno::Errno::EINVAL) => Ok(false),
            Err(errno) => Err(LoopError::Ioctl {
                what: "FITHAW",
                mount: self.mount_point.clone(),
                errno,
            }),
        }
    }

    fn open_mount_point(&self) -> Result<std::fs::File, LoopError> {
        // Opening a directory read-only never blocks on a frozen filesystem.
        std::fs::File::open(&self.mount_point)
            .map_err(io_error(format!("opening {}", self.mount_point.display())))
    }

    fn cleanup(&mut self) {
        if self.mounted {
            // Thaw until the kernel says "not frozen": freezes nest on some
            // kernels, and unmounting a frozen filesystem would hang.
            for _ in 0..8 {
                if !matches!(self.thaw(), Ok(true)) {
                    break;
                }
            }
            let lazy =
                nix::mount::umount2(&self.mount_point, nix::mount::MntFlags::empty()).is_err();
            if lazy {
                // Something (a killed writer not yet reaped) still holds it.
                let _ = nix::mount::umount2(&self.mount_point, nix::mount::MntFlags::MNT_DETACH);
            }
            self.mounted = false;
        }
        if let Some(device) = self.loop_device.take() {
            if let Some(device) = device.to_str() {
                let _ = run_tool("losetup", &["--detach", device]);
            }
        }
        let _ = std::fs::remove_file(&self.image);
        let _ = std::fs::remove_dir(&self.mount_point);
    }
}

impl Drop for LoopFilesystem {
    fn drop(&mut self) {
        self.cleanup();
    }
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

impl LoopFilesystems {
    /// Creates `fs_types.len()` filesystems named `fs0`, `fs1`, ….
    pub fn create(fs_types: &[FsType]) -> Result<Self, LoopError> {
        let dir = tempfile::Builder::new()
            .prefix("hv-vss-sim-fs.")
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
