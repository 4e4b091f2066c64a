//! The pidfile, written without keeping a writable descriptor: UFSSUSPEND
//! refuses (EDEADLK) a process holding a file open for writing on the mount
//! it suspends, and /var/run is on the root filesystem.
//!
//! A read-only descriptor is opened (and created) first and locked with
//! flock(2); the pid is written through a second, short-lived write
//! descriptor. The lock lives as long as the daemon, so `-s` and a second
//! instance can tell whether a daemon is running.

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// A held pidfile lock (released when the daemon exits).
#[derive(Debug)]
pub struct Pidfile {
    _lock: Flock<File>,
    path: PathBuf,
}

/// Creating the pidfile failed.
#[derive(Debug, thiserror::Error)]
pub enum PidfileError {
    #[error("another hv_vssd is running (pid {pid}, pidfile {path})")]
    Running { pid: String, path: PathBuf },
    #[error("cannot write the pidfile {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Pidfile {
    pub fn create(path: &Path) -> Result<Self, PidfileError> {
        let io = |source| PidfileError::Io {
            path: path.to_owned(),
            source,
        };
        let reader = std::fs::OpenOptions::new()
            .read(true)
            .write(false)
            .create(false)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .or_else(|e| {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(e);
                }
                // Create it empty, then reopen read-only.
                File::create(path)?;
                std::fs::File::open(path)
            })
            .map_err(io)?;
        let lock = Flock::lock(reader, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
            if errno == nix::errno::Errno::EWOULDBLOCK {
                PidfileError::Running {
                    pid: std::fs::read_to_string(path)
                        .unwrap_or_default()
                        .trim()
                        .to_owned(),
                    path: path.to_owned(),
                }
            } else {
                io(errno.into())
            }
        })?;
        let mut writer = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(io)?;
        writeln!(writer, "{}", std::process::id()).map_err(io)?;
        writer.sync_all().map_err(io)?;
        drop(writer);
        Ok(Self {
            _lock: lock,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The pid of a running daemon holding `path`, if any: the file exists and
/// its lock is held.
pub fn running(path: &Path) -> Option<u32> {
    let file = File::open(path).ok()?;
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_unlocked_on_drop) => None,
        Err(_) => std::fs::read_to_string(path).ok()?.trim().parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_and_running_sees_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.pid");
        assert_eq!(running(&path), None);
        let held = Pidfile::create(&path).unwrap();
        assert_eq!(running(&path), Some(std::process::id()));
        let err = Pidfile::create(&path).unwrap_err();
        assert!(matches!(err, PidfileError::Running { .. }), "{err}");
        drop(held);
        assert_eq!(running(&path), None);
        let _again = Pidfile::create(&path).unwrap();
    }
}
