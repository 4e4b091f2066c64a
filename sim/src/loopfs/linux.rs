//! Linux: sparse images formatted with mkfs.ext4/mkfs.xfs and
//! loop-mounted (losetup), frozen with FIFREEZE.
//!
//! A [`LoopFilesystem`] cleans up when dropped, also during a panic: it thaws
//! (FITHAW), unmounts (lazily if something still holds it) and detaches the
//! loop device, in that order, because unmounting a frozen filesystem would
//! block.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::{FsType, LoopError, create_image, io_error, ioctl_error, path_str, run_tool};

// Linux's FIFREEZE/FITHAW: _IOWR('X', 119/120, int). The argument is unused.
nix::ioctl_readwrite!(fifreeze, b'X', 119, libc::c_int);
nix::ioctl_readwrite!(fithaw, b'X', 120, libc::c_int);

/// Image size: mkfs.xfs refuses filesystems under 300 MB. The files are
/// sparse, so only the metadata mkfs writes takes disk space.
fn image_size(fs_type: FsType) -> u64 {
    match fs_type {
        FsType::Xfs => 320 << 20,
        _ => 64 << 20,
    }
}

fn mkfs_args(fs_type: FsType) -> &'static [&'static str] {
    match fs_type {
        // Initialise inode tables and journal now: otherwise ext4 zeroes
        // them in the background after mount, and that I/O lands in the
        // middle of the backups and benchmarks that follow.
        FsType::Ext4 => &["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"],
        _ => &["-q", "-f"],
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
        create_image(&image, image_size(fs_type))?;
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
        let mut mkfs_args = mkfs_args(fs_type).to_vec();
        mkfs_args.push(&image_arg);
        run_tool(fs_type.mkfs_tool(), &mkfs_args)?;
        let device = PathBuf::from(run_tool("losetup", &["--find", "--show", &image_arg])?.trim());
        fs.loop_device = Some(device.clone());
        Self::mount_device(fs_type, &device, &fs.mount_point)?;
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

    /// The ZFS pool's name: none on Linux, which makes no pools.
    pub fn pool(&self) -> Option<&str> {
        None
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
            Err(errno) => Err(ioctl_error("FIFREEZE probe", &self.mount_point, errno)),
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
            .map_err(|errno| ioctl_error("FIFREEZE", &self.mount_point, errno))
    }

    /// Thaws the filesystem; `Ok(false)` if it was not frozen.
    pub fn thaw(&self) -> Result<bool, LoopError> {
        let dir = self.open_mount_point()?;
        let mut unused: libc::c_int = 0;
        // SAFETY: FITHAW on an open directory fd; the argument is ignored.
        match unsafe { fithaw(dir.as_raw_fd(), &raw mut unused) } {
            Ok(_) => Ok(true),
            Err(nix::errno::Errno::EINVAL) => Ok(false),
            Err(errno) => Err(ioctl_error("FITHAW", &self.mount_point, errno)),
        }
    }

    /// Unmounts it (for tests of a mount that disappears); the loop
    /// device stays attached, so [`Self::remount`] can put it back.
    pub fn unmount(&self) -> Result<(), LoopError> {
        nix::mount::umount2(&self.mount_point, nix::mount::MntFlags::empty())
            .map_err(|errno| ioctl_error("umount", &self.mount_point, errno))
    }

    /// Mounts the filesystem's device on `mount_point` (its own after
    /// [`Self::unmount`], or another directory).
    pub fn mount_on(&self, mount_point: &Path) -> Result<(), LoopError> {
        let device = self.loop_device.as_deref().ok_or_else(|| LoopError::Io {
            what: format!("{} has no loop device", self.image.display()),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })?;
        Self::mount_device(self.fs_type, device, mount_point)
    }

    /// Mounts `device`, holding a filesystem of `fs_type`, on `mount_point`
    /// (for guards that put a mount back without borrowing the filesystem).
    pub fn mount_device(
        fs_type: FsType,
        device: &Path,
        mount_point: &Path,
    ) -> Result<(), LoopError> {
        let (device, target) = (path_str(device)?, path_str(mount_point)?);
        run_tool("mount", &["-t", fs_type.name(), &device, &target]).map(drop)
    }

    /// Unmounts a mount point made with [`Self::mount_on`] elsewhere,
    /// thawing it first; lazily if it is busy. Never fails: for cleanups.
    pub fn unmount_other(mount_point: &Path) {
        if let Ok(dir) = std::fs::File::open(mount_point) {
            let mut unused: libc::c_int = 0;
            // SAFETY: FITHAW on an open directory fd; the argument is ignored.
            let _ = unsafe { fithaw(dir.as_raw_fd(), &raw mut unused) };
        }
        let _ = nix::mount::umount2(mount_point, nix::mount::MntFlags::MNT_DETACH);
    }

    fn open_mount_point(&self) -> Result<std::fs::File, LoopError> {
        // Opening a directory read-only never blocks on a frozen filesystem.
        std::fs::File::open(&self.mount_point)
            .map_err(io_error(format!("opening {}", self.mount_point.display())))
    }

    pub(super) fn cleanup(&mut self) {
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
