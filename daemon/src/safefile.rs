//! The files the daemon writes (status, state), locks (pidfile, freeze
//! lock) and reads (configuration), opened so that nobody else can redirect
//! them.
//!
//! The daemon runs as root and its files live in directories such as
//! /var/run, so a path must never lead it somewhere else:
//! - a replaced file is written to a new temporary file in the same
//!   directory, created with `O_EXCL | O_NOFOLLOW` under a random name
//!   (a predictable `<path>.tmp.<pid>` lets a user who can write there plant
//!   a symbolic link and have root overwrite any file), then renamed over
//!   the target; everything happens relative to one descriptor of the
//!   directory, opened once;
//! - a target that exists must be a regular file: `status_file =
//!   /dev/null` would otherwise replace /dev/null, and a symbolic link is
//!   refused rather than replaced;
//! - a file read (the configuration) must be a regular file of bounded
//!   size, opened without blocking: a FIFO would block the daemon, a link
//!   to /dev/zero would read until memory runs out;
//! - a file locked (the pidfile, the freeze lock) is opened read-only,
//!   without following a link or blocking, and must be a regular file;
//! - a temporary file left by a process that died between writing and
//!   renaming it is removed by the next start
//!   ([`remove_stale_temporaries`]).

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};

/// Between a file's name and the random part of its temporary's name.
const TEMPORARY_INFIX: &str = ".tmp.";
/// Attempts at a fresh temporary name before giving up (each collision
/// means someone created that random name first).
const TEMPORARY_NAME_TRIES: usize = 8;

/// Replaces `path` with a file holding `bytes`, atomically: readers see the
/// old file or the new one, never half. Refuses (`InvalidInput`) when `path`
/// exists and is not a regular file (a symbolic link included).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    Staged::write(path, bytes)?.commit()
}

/// A replacement of a file written ahead and not yet in place: the new
/// content sits in its temporary file until [`Self::commit`] renames it over
/// the target (one system call, for a moment when time counts); dropped
/// without a commit, the temporary file is removed.
#[derive(Debug)]
pub struct Staged {
    dir: OwnedFd,
    temporary: std::ffi::OsString,
    name: std::ffi::OsString,
    committed: bool,
}

impl Staged {
    /// Writes `bytes` to a new temporary file next to `path` (with the same
    /// checks as [`write_atomically`]), leaving `path` as it is.
    pub fn write(path: &Path, bytes: &[u8]) -> io::Result<Self> {
        let (dir_path, name) = split(path)?;
        let dir = open_directory(dir_path)?;
        if let Some(kind) = non_regular_kind(fstat_entry(&dir, name)?.as_ref()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is {kind}, not a regular file: not replaced",
                    path.display()
                ),
            ));
        }
        let (temporary, file) = create_temporary(&dir, name)?;
        let staged = Self {
            dir,
            temporary,
            name: name.to_owned(),
            committed: false,
        };
        // No fsync: the rename is what makes the swap atomic for readers,
        // and these files need only outlive the daemon, not the machine (a
        // reboot thaws everything). An fsync here would sit between the
        // host's FREEZE and the first freeze, and between thaw and answer.
        File::from(file).write_all(bytes)?;
        Ok(staged)
    }

    /// Puts the new content in place.
    pub fn commit(mut self) -> io::Result<()> {
        renameat(
            &self.dir,
            self.temporary.as_os_str(),
            &self.dir,
            self.name.as_os_str(),
        )?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = unlinkat(
                &self.dir,
                self.temporary.as_os_str(),
                UnlinkatFlags::NoRemoveDir,
            );
        }
    }
}

/// Reads `path`, which must be a regular file (symbolic links to one are
/// fine) of at most `max` bytes. The open never blocks: a FIFO is refused,
/// not waited on.
pub fn read_regular(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)?;
    let meta = file.metadata()?;
    let kind = describe(&meta.file_type());
    if !meta.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it is {kind}, not a regular file"),
        ));
    }
    let too_big = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("it is larger than {max} bytes"),
        )
    };
    if meta.len() > max {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    // Bounded even if the file grows while it is read.
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_big());
    }
    Ok(bytes)
}

/// Opens an existing file the daemon locks (the pidfile, the freeze lock)
/// read-only: no link followed, never blocking, and only a regular file.
/// `Ok(None)`: there is none.
pub fn open_existing_regular(path: &Path) -> io::Result<Option<File>> {
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "it is a symbolic link (hv_vssd does not follow links for its files)",
            ));
        }
        Err(e) => return Err(e),
    };
    let file_type = file.metadata()?.file_type();
    if file_type.is_file() {
        Ok(Some(file))
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it is {}, not a regular file", describe(&file_type)),
        ))
    }
}

/// Why `path` cannot be a file the daemon creates, replaces or locks, if it
/// cannot: its directory is missing, or it exists and is not a regular file
/// (a directory, a device, a FIFO, a symbolic link). For `hv_vssd -t`.
pub fn unusable_target(path: &Path) -> Option<String> {
    let (dir, _) = match split(path) {
        Ok(parts) => parts,
        Err(e) => return Some(e.to_string()),
    };
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Some(format!("{} is not a directory", dir.display())),
        Err(e) => return Some(format!("its directory {}: {e}", dir.display())),
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Some(
            "is a symbolic link (hv_vssd does not follow links for the files it writes)".to_owned(),
        ),
        Ok(meta) if !meta.is_file() => Some(format!(
            "is {}, not a regular file",
            describe(&meta.file_type())
        )),
        Ok(_) => None,
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => Some(e.to_string()),
    }
}

/// What a file is, for messages (`a FIFO`, `a directory`...).
pub fn describe(file_type: &std::fs::FileType) -> &'static str {
    if file_type.is_file() {
        "a regular file"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// The directory and file name of `path`.
fn split(path: &Path) -> io::Result<(&Path, &OsStr)> {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) if !dir.as_os_str().is_empty() => Ok((dir, name)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} does not name a file in a directory", path.display()),
        )),
    }
}

fn open_directory(path: &Path) -> io::Result<OwnedFd> {
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)?;
    Ok(OwnedFd::from(dir))
}

/// The entry `name` in `dir`, not following a symbolic link; `None` when
/// there is none.
fn fstat_entry(dir: &impl AsFd, name: &OsStr) -> io::Result<Option<FileStat>> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some(stat)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `None` for a missing entry or a regular file, else what it is.
fn non_regular_kind(stat: Option<&FileStat>) -> Option<&'static str> {
    let stat = stat?;
    let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
    match kind {
        SFlag::S_IFREG => None,
        SFlag::S_IFLNK => Some("a symbolic link"),
        SFlag::S_IFDIR => Some("a directory"),
        SFlag::S_IFIFO => Some("a FIFO"),
        SFlag::S_IFCHR => Some("a character device"),
        SFlag::S_IFBLK => Some("a block device"),
        SFlag::S_IFSOCK => Some("a socket"),
        _ => Some("not a regular file"),
    }
}

/// Creates `<name>.tmp.<16 random hex digits>` in `dir`, exclusively and
/// without following a symbolic link planted under that name.
fn create_temporary(dir: &OwnedFd, name: &OsStr) -> io::Result<(std::ffi::OsString, OwnedFd)> {
    let mut last = io::Error::from(Errno::EEXIST);
    for _ in 0..TEMPORARY_NAME_TRIES {
        let mut temporary = name.to_owned();
        temporary.push(TEMPORARY_INFIX);
        temporary.push(format!("{:016x}", random_u64()?));
        match openat(
            dir,
            temporary.as_os_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        ) {
            Ok(fd) => return Ok((temporary, fd)),
            Err(Errno::EEXIST) => last = io::Error::from(Errno::EEXIST),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last)
}

/// Removes the temporary files of `path` that a process left behind when
/// it died before committing or dropping them (see [`Staged`]); other
/// files are left alone. Returns how many.
pub fn remove_stale_temporaries(path: &Path) -> usize {
    let Ok((dir, name)) = split(path) else {
        return 0;
    };
    let mut prefix = name.as_bytes().to_vec();
    prefix.extend_from_slice(TEMPORARY_INFIX.as_bytes());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| {
            let entry_name = entry.file_name();
            let bytes = entry_name.as_bytes();
            bytes.len() == prefix.len() + 16
                && bytes.starts_with(&prefix)
                && bytes[prefix.len()..].iter().all(u8::is_ascii_hexdigit)
                && entry.file_type().is_ok_and(|t| t.is_file())
        })
        .filter(|entry| std::fs::remove_file(entry.path()).is_ok())
        .count()
}

/// 64 bits from the kernel's random generator: getrandom(2), which both
/// Linux (3.17+) and FreeBSD (12+) have; nix does not wrap it.
fn random_u64() -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    // SAFETY: the kernel writes at most `bytes.len()` bytes into the valid,
    // writable buffer `bytes`; flags 0 blocks only until the generator is
    // seeded, which it is long before the daemon starts.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if usize::try_from(n).ok() == Some(bytes.len()) {
        Ok(u64::from_ne_bytes(bytes))
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// Whether `name` holds printable ASCII only.
    fn is_plain(name: &OsStr) -> bool {
        name.as_bytes().iter().all(u8::is_ascii_graphic)
    }

    #[test]
    fn a_temporary_abandoned_by_a_dead_writer_is_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frozen");
        let staged = Staged::write(&path, b"record").unwrap();
        std::mem::forget(staged); // the writer died here
        std::fs::write(dir.path().join("frozen.tmp.notmine"), "").unwrap();
        std::fs::write(dir.path().join("other.tmp.0123456789abcdef"), "").unwrap();
        assert_eq!(remove_stale_temporaries(&path), 1);
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["frozen.tmp.notmine", "other.tmp.0123456789abcdef"]);
    }

    #[test]
    fn replaces_a_regular_file_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["status"]);
    }

    #[test]
    fn a_symbolic_link_at_the_target_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let path = dir.path().join("status");
        symlink(&victim, &path).unwrap();
        let err = write_atomically(&path, b"overwritten").unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(
            std::fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn a_fifo_or_directory_target_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
        let err = write_atomically(&fifo, b"x").unwrap_err();
        assert!(err.to_string().contains("a FIFO"), "{err}");
        assert!(
            std::fs::symlink_metadata(&fifo)
                .unwrap()
                .file_type()
                .is_fifo()
        );
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        assert!(write_atomically(&sub, b"x").is_err());
        assert!(sub.is_dir());
    }

    #[test]
    fn a_link_planted_at_the_old_predictable_temporary_name_is_never_followed() {
        // What an attacker who can write the directory would plant for the
        // old `<path>.tmp.<pid>` scheme: the write must not go through it.
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let path = dir.path().join("status");
        let mut planted = path.as_os_str().to_owned();
        planted.push(format!(".tmp.{}", std::process::id()));
        symlink(&victim, &planted).unwrap();
        write_atomically(&path, b"status").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(std::fs::read(&path).unwrap(), b"status");
    }

    #[test]
    fn temporary_names_are_random() {
        let dir = tempfile::tempdir().unwrap();
        let fd = open_directory(dir.path()).unwrap();
        let (a, _) = create_temporary(&fd, OsStr::new("s")).unwrap();
        let (b, _) = create_temporary(&fd, OsStr::new("s")).unwrap();
        assert_ne!(a, b);
        assert!(is_plain(&a) && a.as_bytes().starts_with(b"s.tmp."), "{a:?}");
    }

    #[test]
    fn read_regular_refuses_fifos_devices_and_big_files_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
        // No writer: a blocking open would hang here.
        let err = read_regular(&fifo, 64).unwrap_err();
        assert!(err.to_string().contains("a FIFO"), "{err}");
        let zero = dir.path().join("zero");
        symlink("/dev/zero", &zero).unwrap();
        let err = read_regular(&zero, 64).unwrap_err();
        assert!(err.to_string().contains("character device"), "{err}");
        let big = dir.path().join("big");
        std::fs::write(&big, [b'x'; 65]).unwrap();
        assert!(
            read_regular(&big, 64)
                .unwrap_err()
                .to_string()
                .contains("larger")
        );
        std::fs::write(&big, [b'x'; 64]).unwrap();
        assert_eq!(read_regular(&big, 64).unwrap().len(), 64);
    }

    #[test]
    fn unusable_targets_are_named() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(unusable_target(&dir.path().join("new")), None);
        assert!(
            unusable_target(Path::new("/dev/null"))
                .unwrap()
                .contains("character device")
        );
        assert!(unusable_target(dir.path()).unwrap().contains("a directory"));
        let link = dir.path().join("link");
        symlink("/etc/passwd", &link).unwrap();
        assert!(unusable_target(&link).unwrap().contains("symbolic link"));
        assert!(
            unusable_target(&dir.path().join("missing/x"))
                .unwrap()
                .contains("missing")
        );
    }
}
