//! Linux FIFREEZE/FITHAW (ioctl_fsfreeze(2)), for development and tests.
//! A freeze survives the process: the engine records it in the state file.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use nix::errno::Errno;

use super::{FreezeError, Freezer};
use crate::mounts::{FsId, Mount};

// linux/fs.h: FIFREEZE _IOWR('X', 119, int), FITHAW _IOWR('X', 120, int).
nix::ioctl_readwrite!(fifreeze, b'X', 119, libc::c_int);
nix::ioctl_readwrite!(fithaw, b'X', 120, libc::c_int);

/// The Linux freezer: stateless, any descriptor on the filesystem will do.
#[derive(Debug, Default)]
pub struct Fifreeze;

/// Opens the mount point read-only: the ioctl needs a descriptor on the
/// filesystem, never a writable one.
fn open_mount_point(path: &Path, action: &'static str) -> Result<File, FreezeError> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| FreezeError {
            mount: path.to_owned(),
            action,
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })
}

/// Opens the mount point and checks that it still shows the planned
/// filesystem. A mount that went away since planning leaves its path to the
/// filesystem underneath (in the worst case root), which must never be
/// frozen or thawed in its place: ESTALE, with a hint in the error.
fn open_planned(path: &Path, fs_id: FsId, action: &'static str) -> Result<File, FreezeError> {
    let dir = open_mount_point(path, action)?;
    let fail = |errno| FreezeError {
        mount: path.to_owned(),
        action,
        errno,
    };
    let dev = dir
        .metadata()
        .map_err(|e| fail(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))))?
        .dev();
    // mountinfo's major:minor is the st_dev of the files on that mount.
    let shown = FsId([i64::from(libc::major(dev)), i64::from(libc::minor(dev))]);
    if shown == fs_id {
        Ok(dir)
    } else {
        Err(fail(Errno::ESTALE))
    }
}

fn call(
    dir: &File,
    path: &Path,
    action: &'static str,
    op: unsafe fn(libc::c_int, *mut libc::c_int) -> nix::Result<libc::c_int>,
) -> Result<(), FreezeError> {
    let mut unused: libc::c_int = 0;
    // SAFETY: `dir` is an open descriptor for the duration of the call and the
    // kernel reads/writes at most one int through the valid pointer `unused`.
    unsafe { op(dir.as_raw_fd(), &raw mut unused) }
        .map(drop)
        .map_err(|errno| FreezeError {
            mount: path.to_owned(),
            action,
            errno,
        })
}

impl Freezer for Fifreeze {
    fn freeze(&mut self, mount: &Mount) -> Result<(), FreezeError> {
        let dir = open_planned(&mount.path, mount.fs_id, "freeze")?;
        call(&dir, &mount.path, "freeze", fifreeze)
    }

    fn thaw(&mut self, mount: &Mount) -> Result<(), FreezeError> {
        let dir = open_planned(&mount.path, mount.fs_id, "thaw")?;
        call(&dir, &mount.path, "thaw", fithaw)
    }

    fn freeze_outlives_process(&self) -> bool {
        true
    }

    /// syncfs(2) of each: Linux's sync(2) would wait for every dirty
    /// filesystem on the machine, which is not this backup's business.
    fn flush_unfreezable(&mut self, mounts: &[&Mount]) -> Result<(), FreezeError> {
        for mount in mounts {
            let dir = open_mount_point(&mount.path, "flush")?;
            nix::unistd::syncfs(&dir).map_err(|errno| FreezeError {
                mount: mount.path.clone(),
                action: "flush",
                errno,
            })?;
        }
        Ok(())
    }

    fn thaw_leftover(&mut self, path: &Path, fs_id: FsId) -> Result<bool, FreezeError> {
        match open_planned(path, fs_id, "thaw").and_then(|dir| call(&dir, path, "thaw", fithaw)) {
            Ok(()) => Ok(true),
            // EINVAL: not frozen. ENOENT: the mount point is gone. ESTALE:
            // another filesystem is there now; not ours to thaw.
            Err(e) if matches!(e.errno, Errno::EINVAL | Errno::ENOENT | Errno::ESTALE) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
