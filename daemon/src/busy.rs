//! The freeze lock: one freeze at a time on this machine, whether the host
//! asked for it (the daemon, from FREEZE until everything is thawed) or an
//! administrator (`hv_vssctl test`). flock(2) on a file next to the pid
//! file, held through a read-only descriptor (UFSSUSPEND refuses a process
//! holding a file open for writing on a filesystem it suspends) and
//! released with the descriptor, so a process that dies never leaves it
//! held.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::safefile;

/// Where the freeze lock of a daemon with this pid file lives.
pub fn lock_path(pid_file: &Path) -> PathBuf {
    pid_file.with_extension("freezing")
}

/// The lock file, opened once (while nothing is frozen) and locked for the
/// duration of each freeze.
#[derive(Debug)]
pub struct FreezeLock {
    path: PathBuf,
    file: Option<File>,
    held: Option<Flock<File>>,
}

impl FreezeLock {
    /// Opens (creating it if needed) the lock file; no lock is taken yet.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = if let Some(file) = safefile::open_existing_regular(path)? {
            file
        } else {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
                .open(path)?;
            safefile::open_existing_regular(path)?
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?
        };
        Ok(Self {
            path: path.to_owned(),
            file: Some(file),
            held: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the lock without waiting. `Ok(false)`: somebody else holds it.
    pub fn try_lock(&mut self) -> std::io::Result<bool> {
        if self.held.is_some() {
            return Ok(true);
        }
        let Some(file) = self.file.take() else {
            return Err(std::io::Error::other("freeze lock lost"));
        };
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(held) => {
                self.held = Some(held);
                Ok(true)
            }
            Err((file, Errno::EWOULDBLOCK)) => {
                self.file = Some(file);
                Ok(false)
            }
            Err((file, errno)) => {
                self.file = Some(file);
                Err(errno.into())
            }
        }
    }

    /// Releases the lock (keeping the file open for the next freeze).
    pub fn unlock(&mut self) {
        if let Some(held) = self.held.take() {
            match held.unlock() {
                Ok(file) => self.file = Some(file),
                // Unlocking failed: closing the descriptor releases it.
                Err((held, _)) => drop(held),
            }
        }
        if self.file.is_none() {
            self.file = safefile::open_existing_regular(&self.path).ok().flatten();
        }
    }

    pub fn is_locked(&self) -> bool {
        self.held.is_some()
    }
}

/// Whether someone holds the freeze lock at `path` now, i.e. a freeze is
/// under way, without taking it and without writing anything (read-only,
/// no creation: it works while the lock file's filesystem is frozen).
pub fn is_held(path: &Path) -> bool {
    let Ok(Some(file)) = safefile::open_existing_regular(path) else {
        return false;
    };
    matches!(
        Flock::lock(file, FlockArg::LockSharedNonblock),
        Err((_, Errno::EWOULDBLOCK))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_released_on_unlock() {
        let dir = tempfile::tempdir().unwrap();
        let path = lock_path(&dir.path().join("hv_vssd.pid"));
        assert!(path.ends_with("hv_vssd.freezing"));
        let mut daemon = FreezeLock::open(&path).unwrap();
        let mut admin = FreezeLock::open(&path).unwrap();
        assert!(!is_held(&path));
        assert!(daemon.try_lock().unwrap());
        assert!(is_held(&path));
        assert!(daemon.try_lock().unwrap(), "taking it again is harmless");
        assert!(!admin.try_lock().unwrap());
        daemon.unlock();
        assert!(!daemon.is_locked());
        assert!(admin.try_lock().unwrap());
        assert!(!daemon.try_lock().unwrap());
        drop(admin);
        assert!(daemon.try_lock().unwrap(), "a closed holder releases it");
    }

    #[test]
    fn a_symlink_a_directory_or_a_fifo_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
        assert!(FreezeLock::open(&link).is_err());
        assert!(FreezeLock::open(dir.path()).is_err());
        // Refused at once, not waited on for a writer.
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let refused = FreezeLock::open(&fifo).unwrap_err();
        assert!(refused.to_string().contains("a FIFO"), "{refused}");
        assert!(!is_held(&fifo));
    }
}
