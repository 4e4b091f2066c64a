//! The floor: raw FIFREEZE on every mount, then FITHAW on every mount in
//! reverse order, from this process with the directories already open.
//! Nothing can freeze and thaw these filesystems faster.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::clock::now_ns;
use crate::cycle::Cycle;

nix::ioctl_readwrite!(fifreeze, b'X', 119, libc::c_int);
nix::ioctl_readwrite!(fithaw, b'X', 120, libc::c_int);

#[derive(Debug, thiserror::Error)]
pub(crate) enum FloorError {
    #[error("opening {0}: {1}")]
    Open(PathBuf, std::io::Error),
    #[error("FIFREEZE on {0}: {1}")]
    Freeze(PathBuf, nix::errno::Errno),
    #[error("FITHAW on {0}: {1}")]
    Thaw(PathBuf, nix::errno::Errno),
}

/// The mounts, opened once (a tight loop does not reopen them).
#[derive(Debug)]
pub(crate) struct Floor {
    mounts: Vec<(PathBuf, File)>,
}

/// Thaws whatever it still holds when dropped, whatever happened.
struct Frozen<'a> {
    floor: &'a Floor,
    count: usize,
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        for (_, dir) in self.floor.mounts[..self.count].iter().rev() {
            let _ = thaw(dir);
        }
    }
}

fn freeze(dir: &File) -> nix::Result<()> {
    let mut unused: libc::c_int = 0;
    // SAFETY: FIFREEZE on an open directory fd; the int argument is ignored
    // by the kernel and valid for the call.
    unsafe { fifreeze(dir.as_raw_fd(), &raw mut unused) }.map(drop)
}

fn thaw(dir: &File) -> nix::Result<()> {
    let mut unused: libc::c_int = 0;
    // SAFETY: as in `freeze`.
    unsafe { fithaw(dir.as_raw_fd(), &raw mut unused) }.map(drop)
}

impl Floor {
    pub(crate) fn open<'a>(
        mount_points: impl IntoIterator<Item = &'a Path>,
    ) -> Result<Floor, FloorError> {
        let mounts = mount_points
            .into_iter()
            .map(|path| {
                File::open(path)
                    .map(|dir| (path.to_owned(), dir))
                    .map_err(|e| FloorError::Open(path.to_owned(), e))
            })
            .collect::<Result<_, _>>()?;
        Ok(Floor { mounts })
    }

    /// One freeze-all, thaw-all cycle. The "host" here is this loop: it
    /// knows everything is frozen when the last FIFREEZE returns and asks
    /// for the thaw at once.
    pub(crate) fn cycle(&self) -> Result<Cycle, FloorError> {
        let mut frozen = Frozen {
            floor: self,
            count: 0,
        };
        let t0 = now_ns();
        let mut first_freeze_start = None;
        for (path, dir) in &self.mounts {
            let start = now_ns();
            freeze(dir).map_err(|e| FloorError::Freeze(path.clone(), e))?;
            first_freeze_start.get_or_insert(start);
            frozen.count += 1;
        }
        let t1 = now_ns();
        let t2 = t1;
        // Thaw in reverse; the guard only thaws what this loop did not reach.
        while frozen.count > 0 {
            let (path, dir) = &self.mounts[frozen.count - 1];
            thaw(dir).map_err(|e| FloorError::Thaw(path.clone(), e))?;
            frozen.count -= 1;
        }
        let t3 = now_ns();
        Ok(Cycle {
            t0,
            t1,
            t2,
            t3,
            first_freeze_start,
            last_thaw_end: Some(t3),
        })
    }
}
