//! FreeBSD UFS suspension through `/dev/ufssuspend` (sys/ufs/ffs/ffs_suspend.c).
//!
//! One descriptor holds at most one suspended filesystem, so each mount gets
//! its own; closing the descriptor resumes the filesystem, also when the
//! process dies, which we keep on purpose ("death = thaw"). One death does
//! not thaw: a core dump is written before the descriptors are closed
//! (sys/kern/kern_sig.c), and a write to a suspended UFS waits for the
//! resume, so a process dumping core onto a suspended filesystem never
//! ends; the daemon turns core dumps off at start ([`crate::hardening`]).
//! The kernel refuses (EDEADLK) a multi-threaded caller or one holding a
//! descriptor open for writing on the mount: the daemon is single-threaded
//! and keeps none.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::{FreezeError, Freezer};
use crate::mounts::{FsId, Mount};

const UFSSUSPEND_DEVICE: &str = "/dev/ufssuspend";

/// `fsid_t` as ufs/ffs/fs.h passes it (libc keeps its field private).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct Fsid {
    val: [i32; 2],
}

// ufs/ffs/fs.h: UFSSUSPEND _IOW('U', 1, fsid_t); UFSRESUME _IO('U', 2).
nix::ioctl_write_ptr!(ufs_suspend, b'U', 1, Fsid);
nix::ioctl_none!(ufs_resume, b'U', 2);

/// One open `/dev/ufssuspend` per suspended mount.
#[derive(Debug, Default)]
pub struct UfsSuspend {
    held: HashMap<PathBuf, File>,
}

impl Freezer for UfsSuspend {
    fn freeze(&mut self, mount: &Mount) -> Result<(), FreezeError> {
        let fail = |errno| FreezeError {
            mount: mount.path.clone(),
            action: "freeze",
            errno,
        };
        if self.held.contains_key(&mount.path) {
            return Err(fail(Errno::EBUSY));
        }
        let [a, b] = mount.fs_id.0;
        let fsid = Fsid {
            val: [
                i32::try_from(a).map_err(|_| fail(Errno::EINVAL))?,
                i32::try_from(b).map_err(|_| fail(Errno::EINVAL))?,
            ],
        };
        // The suspension device (on devfs, never on the suspended mount)
        // must be opened read-write, as UFSSUSPEND requires.
        let device = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(UFSSUSPEND_DEVICE)
            .map_err(|e| fail(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))))?;
        // SAFETY: `device` is open for the call; the kernel reads one fsid_t
        // through the valid pointer to `fsid`, which has fsid_t's layout.
        unsafe { ufs_suspend(device.as_raw_fd(), &raw const fsid) }.map_err(fail)?;
        self.held.insert(mount.path.clone(), device);
        Ok(())
    }

    fn thaw(&mut self, mount: &Mount) -> Result<(), FreezeError> {
        let Some(device) = self.held.remove(&mount.path) else {
            return Err(FreezeError {
                mount: mount.path.clone(),
                action: "thaw",
                errno: Errno::EINVAL,
            });
        };
        // SAFETY: `device` is an open /dev/ufssuspend descriptor holding this
        // mount's suspension; UFSRESUME takes no argument.
        let resumed = unsafe { ufs_resume(device.as_raw_fd()) };
        // Closing resumes too, so the filesystem is thawed either way; the
        // ioctl is only there to report what the kernel said.
        drop(device);
        resumed.map(drop).map_err(|errno| FreezeError {
            mount: mount.path.clone(),
            action: "thaw",
            errno,
        })
    }

    fn freeze_outlives_process(&self) -> bool {
        false
    }

    fn thaw_leftover(&mut self, _path: &Path, _fs_id: FsId) -> Result<bool, FreezeError> {
        // A suspension ends with its descriptor, so nothing outlives a daemon.
        Ok(false)
    }

    /// sync(2), whatever the list: FreeBSD has no per-filesystem sync call,
    /// and its sync only schedules the writes (MNT_NOWAIT), so it also
    /// shortens the suspensions that follow without waiting for them.
    fn flush_unfreezable(&mut self, _mounts: &[&Mount]) -> Result<(), FreezeError> {
        nix::unistd::sync();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    /// Runs on FreeBSD only (this module is FreeBSD-only); the values are
    /// those of ufs/ffs/fs.h.
    #[test]
    fn request_numbers_match_ufs_ffs_fs_h() {
        let suspend = nix::request_code_write!(b'U', 1, std::mem::size_of::<super::Fsid>());
        assert_eq!(suspend, 0x8008_5501);
        assert_eq!(nix::request_code_none!(b'U', 2), 0x2000_5502);
    }
}
