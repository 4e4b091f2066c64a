//! Linux FIFREEZE/FITHAW (ioctl_fsfreeze(2)), for development and tests.
//! A freeze survives the process: the engine records it in the state file.
//!
//! The handle is a read-only descriptor of the mount point's directory,
//! opened before the freeze: FITHAW goes through it, so a thaw works even
//! when the mount point was covered by another mount, lazily unmounted or
//! hijacked by a stopped FUSE server in the meantime.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;

use super::{FreezeError, Freezer, Leftover};
use crate::mounts::{FsId, Mount};

// linux/fs.h: FIFREEZE _IOWR('X', 119, int), FITHAW _IOWR('X', 120, int).
nix::ioctl_readwrite!(fifreeze, b'X', 119, libc::c_int);
nix::ioctl_readwrite!(fithaw, b'X', 120, libc::c_int);

/// The Linux freezer: holds nothing itself; each handle is a descriptor.
#[derive(Debug, Default)]
pub struct Fifreeze;

/// Opens the mount point at `path` if it shows filesystem `fs_id`.
///
/// First as O_PATH: no open request reaches the filesystem (a FUSE server
/// mounted there would be asked, and may never answer), and statx with
/// AT_STATX_DONT_SYNC reads the device number without asking it either.
/// Only once the descriptor is known to be the planned filesystem is it
/// reopened for reading as `.` relative to itself, which names that very
/// directory: a lookup of `.` steps nowhere, not even onto a mount made on
/// the path meanwhile (fs/namei.c, handle_dots).
fn open_planned(path: &Path, fs_id: FsId, action: &'static str) -> Result<File, FreezeError> {
    let fail = |errno| FreezeError {
        mount: path.to_owned(),
        action,
        errno,
    };
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| fail(Errno::EINVAL))?;
    // SAFETY: `c_path` is a NUL-terminated string alive for the call; the
    // returned descriptor, if any, is owned by the OwnedFd below.
    let raw = unsafe {
        libc::open(
            c_path.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(fail(Errno::last()));
    }
    // SAFETY: `raw` is a descriptor we just opened and own.
    let located = unsafe { OwnedFd::from_raw_fd(raw) };
    let shown = device_of(&located).map_err(fail)?;
    if shown != fs_id {
        return Err(fail(Errno::ESTALE));
    }
    nix::fcntl::openat(
        &located,
        ".",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map(File::from)
    .map_err(fail)
}

/// The filesystem a descriptor is on, as mountinfo's major:minor, read
/// from cached attributes only.
fn device_of(fd: &OwnedFd) -> Result<FsId, Errno> {
    // SAFETY: statx is plain old data; all-zero is a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open, the empty path is NUL-terminated, and `stx` is a
    // valid, writable statx buffer for the duration of the call.
    let rc = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_STATX_DONT_SYNC,
            libc::STATX_TYPE,
            &raw mut stx,
        )
    };
    if rc < 0 {
        return Err(Errno::last());
    }
    Ok(FsId([
        i64::from(stx.stx_dev_major),
        i64::from(stx.stx_dev_minor),
    ]))
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
    type Handle = File;

    fn open(&mut self, mount: &Mount) -> Result<File, FreezeError> {
        open_planned(&mount.path, mount.fs_id, "freeze")
    }

    fn freeze(&mut self, dir: &mut File, mount: &Mount) -> Result<(), FreezeError> {
        call(dir, &mount.path, "freeze", fifreeze)
    }

    fn thaw(&mut self, dir: &mut File, mount: &Mount) -> Result<(), FreezeError> {
        match call(dir, &mount.path, "thaw", fithaw) {
            // EINVAL: not frozen (someone else thawed it): thawed all the same.
            Err(e) if e.errno == Errno::EINVAL => Ok(()),
            other => other,
        }
    }

    fn freeze_outlives_process(&self) -> bool {
        true
    }

    /// syncfs(2) of each: Linux's sync(2) would wait for every dirty
    /// filesystem on the machine, which is not this backup's business.
    fn flush_unfreezable(&mut self, mounts: &[&Mount]) -> Result<(), FreezeError> {
        for mount in mounts {
            let dir = open_planned(&mount.path, mount.fs_id, "flush")?;
            nix::unistd::syncfs(&dir).map_err(|errno| FreezeError {
                mount: mount.path.clone(),
                action: "flush",
                errno,
            })?;
        }
        Ok(())
    }

    fn thaw_leftover(&mut self, path: &Path, fs_id: FsId) -> Result<Leftover, FreezeError> {
        let dir = open_planned(path, fs_id, "thaw")?;
        match call(&dir, path, "thaw", fithaw) {
            Ok(()) => Ok(Leftover::Thawed),
            Err(e) if e.errno == Errno::EINVAL => Ok(Leftover::NotFrozen),
            Err(e) => Err(e),
        }
    }
}
