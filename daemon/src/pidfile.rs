//! The pidfile: locked first at start, written only after recovery.
//!
//! - The lock comes before anything else the daemon does, so a second
//!   instance stops before it touches the first one's state (its state
//!   file above all, which a second instance would otherwise "recover").
//!   It survives daemon(3): flock(2) locks belong to the open file, which
//!   the forked child shares, as FreeBSD's pidfile(3) relies on too
//!   (lib/libutil/pidfile.c opens and locks before the caller daemonizes).
//! - Taking the lock writes nothing: the pidfile may live on a filesystem
//!   an earlier daemon left frozen (Linux: until the state file is
//!   recovered), where any write, even truncating the file, blocks
//!   forever. An existing file is opened read-only without `O_TRUNC`; when
//!   there is none yet, the directory is locked instead until the file is
//!   created. [`Pidfile::write_pid`] comes after recovery.
//! - No writable descriptor stays open: UFSSUSPEND refuses (EDEADLK) a
//!   process holding a file open for writing on the mount it suspends. The
//!   pid goes through a short-lived second descriptor, checked to be the
//!   locked file.
//! - No symbolic link is followed (`O_NOFOLLOW`), nothing but a regular
//!   file is used, and opens never block (`O_NONBLOCK`: a FIFO planted there
//!   is refused, not waited on).

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::safefile;

/// A held pidfile lock (released when the daemon exits).
#[derive(Debug)]
pub struct Pidfile {
    lock: Lock,
    path: PathBuf,
}

/// What holds the lock.
#[derive(Debug)]
enum Lock {
    /// The pidfile itself, open read-only.
    File(Flock<File>),
    /// Its directory, while the pidfile does not exist yet (held for the
    /// lock only).
    Directory { _lock: Flock<File> },
}

/// Taking or writing the pidfile failed.
#[derive(Debug, thiserror::Error)]
pub enum PidfileError {
    #[error("another hv_vssd is running (pid {pid}, pidfile {path})")]
    Running { pid: String, path: PathBuf },
    #[error("another hv_vssd is starting (it holds the lock on the directory of the pidfile {0})")]
    Starting(PathBuf),
    #[error("cannot use the pidfile {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Pidfile {
    /// Takes the lock without writing anything (see the module comment).
    pub fn lock(path: &Path) -> Result<Self, PidfileError> {
        let io = |source| PidfileError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(file) = safefile::open_existing_regular(path).map_err(io)? {
            return Ok(Self {
                lock: Lock::File(lock_file(file, path)?),
                path: path.to_owned(),
            });
        }
        let dir = path.parent().ok_or_else(|| {
            io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a file in a directory",
            ))
        })?;
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(dir)
            .map_err(io)?;
        let dir = Flock::lock(dir, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
            if errno == Errno::EWOULDBLOCK {
                PidfileError::Starting(path.to_owned())
            } else {
                io(errno.into())
            }
        })?;
        // Another instance may have created the file meanwhile.
        let lock = match safefile::open_existing_regular(path).map_err(io)? {
            Some(file) => Lock::File(lock_file(file, path)?),
            None => Lock::Directory { _lock: dir },
        };
        Ok(Self {
            lock,
            path: path.to_owned(),
        })
    }

    /// Writes this process's pid (creating the file if there was none), and
    /// moves the lock onto the file. Call after recovery.
    pub fn write_pid(&mut self) -> Result<(), PidfileError> {
        let io = |source| PidfileError::Io {
            path: self.path.clone(),
            source,
        };
        let pid = format!("{}\n", std::process::id());
        match &self.lock {
            Lock::File(held) => {
                let held = held.metadata().map_err(io)?;
                let mut writer = std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
                    .open(&self.path)
                    .map_err(io)?;
                let target = writer.metadata().map_err(io)?;
                if (target.dev(), target.ino()) != (held.dev(), held.ino()) {
                    return Err(io(std::io::Error::other(
                        "the file was replaced after it was locked",
                    )));
                }
                writer.set_len(0).map_err(io)?;
                writer.write_all(pid.as_bytes()).map_err(io)?;
            }
            Lock::Directory { .. } => {
                let mut writer = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(&self.path)
                    .map_err(io)?;
                writer.write_all(pid.as_bytes()).map_err(io)?;
                drop(writer);
                let file = safefile::open_existing_regular(&self.path)
                    .map_err(io)?
                    .ok_or_else(|| io(std::io::ErrorKind::NotFound.into()))?;
                // Replacing the lock drops the directory's.
                self.lock = Lock::File(lock_file(file, &self.path)?);
            }
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn lock_file(file: File, path: &Path) -> Result<Flock<File>, PidfileError> {
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(mut file, errno)| {
        if errno == Errno::EWOULDBLOCK {
            PidfileError::Running {
                pid: read_pid(&mut file).map_or_else(|| "?".to_owned(), |p| p.to_string()),
                path: path.to_owned(),
            }
        } else {
            PidfileError::Io {
                path: path.to_owned(),
                source: errno.into(),
            }
        }
    })
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// The pid of a running daemon holding `path`, if any: the file exists and
/// its lock is held.
pub fn running(path: &Path) -> Option<u32> {
    let file = safefile::open_existing_regular(path).ok()??;
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_unlocked_on_drop) => None,
        Err((mut file, _)) => read_pid(&mut file),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written_pid(path: &Path) -> Option<u32> {
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    }

    #[test]
    fn a_second_lock_is_refused_and_running_sees_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.pid");
        assert_eq!(running(&path), None);
        let mut held = Pidfile::lock(&path).unwrap();
        // Not created yet: the directory holds the lock meanwhile.
        assert!(!path.exists());
        let err = Pidfile::lock(&path).unwrap_err();
        assert!(matches!(err, PidfileError::Starting(_)), "{err}");
        held.write_pid().unwrap();
        assert_eq!(written_pid(&path), Some(std::process::id()));
        assert_eq!(running(&path), Some(std::process::id()));
        let err = Pidfile::lock(&path).unwrap_err();
        assert!(matches!(err, PidfileError::Running { .. }), "{err}");
        assert!(err.to_string().contains(&std::process::id().to_string()));
        drop(held);
        assert_eq!(running(&path), None);
        let mut again = Pidfile::lock(&path).unwrap();
        again.write_pid().unwrap();
        assert_eq!(written_pid(&path), Some(std::process::id()));
    }

    #[test]
    fn locking_an_existing_pidfile_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.pid");
        std::fs::write(&path, "12345\n").unwrap();
        let mut held = Pidfile::lock(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "12345\n");
        held.write_pid().unwrap();
        assert_eq!(written_pid(&path), Some(std::process::id()));
    }

    #[test]
    fn links_fifos_and_directories_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let link = dir.path().join("link.pid");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let err = Pidfile::lock(&link).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        let fifo = dir.path().join("fifo.pid");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = Pidfile::lock(&fifo).unwrap_err().to_string();
        assert!(err.contains("a FIFO"), "{err}");
        let err = Pidfile::lock(dir.path()).unwrap_err().to_string();
        assert!(err.contains("directory"), "{err}");
        assert_eq!(running(&link), None);
    }

    #[test]
    fn a_file_swapped_after_locking_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.pid");
        std::fs::write(&path, "1\n").unwrap();
        let mut held = Pidfile::lock(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "other\n").unwrap();
        let err = held.write_pid().unwrap_err().to_string();
        assert!(err.contains("replaced"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "other\n");
    }
}
