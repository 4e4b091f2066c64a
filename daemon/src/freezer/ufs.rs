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
//!
//! The handle is that descriptor: the suspension is found by the fsid from
//! the mount table, never by resolving the mount point, and it is resumed
//! through the descriptor (UFSRESUME, then close).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::errno::Errno;

use super::{FreezeError, Freezer, Leftover};
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

/// The FreeBSD freezer: each handle is its own `/dev/ufssuspend` descriptor.
#[derive(Debug, Default)]
pub struct UfsSuspend;

/// One mount's `/dev/ufssuspend` descriptor and the fsid it suspends.
#[derive(Debug)]
pub struct Suspension {
    device: File,
    fsid: Fsid,
}

impl Freezer for UfsSuspend {
    type Handle = Suspension;

    fn open(&mut self, mount: &Mount) -> Result<Suspension, FreezeError> {
        let fail = |errno| FreezeError {
            mount: mount.path.clone(),
            action: "freeze",
            errno,
        };
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
        Ok(Suspension { device, fsid })
    }

    fn freeze(&mut self, handle: &mut Suspension, mount: &Mount) -> Result<(), FreezeError> {
        // SAFETY: the descriptor is open for the call; the kernel reads one
        // fsid_t through the valid pointer, which has fsid_t's layout.
        unsafe { ufs_suspend(handle.device.as_raw_fd(), &raw const handle.fsid) }
            .map(drop)
            // ENOENT: no filesystem has that fsid any more (unmounted since
            // the plan): nothing else is suspended in its place.
            .map_err(|errno| FreezeError {
                mount: mount.path.clone(),
                action: "freeze",
                errno,
            })
    }

    fn thaw(&mut self, handle: &mut Suspension, mount: &Mount) -> Result<(), FreezeError> {
        // SAFETY: the descriptor is open; UFSRESUME takes no argument.
        match unsafe { ufs_resume(handle.device.as_raw_fd()) } {
            // ENOENT: this descriptor holds no suspension (any more); the
            // kernel clears it on success, so either way it is resumed.
            Ok(_) | Err(Errno::ENOENT) => Ok(()),
            Err(errno) => Err(FreezeError {
                mount: mount.path.clone(),
                action: "thaw",
                errno,
            }),
        }
    }

    fn freeze_outlives_process(&self) -> bool {
        false
    }

    fn thaw_leftover(&mut self, _path: &Path, _fs_id: FsId) -> Result<Leftover, FreezeError> {
        // A suspension ends with its descriptor, so nothing outlives a daemon.
        Ok(Leftover::NotFrozen)
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
