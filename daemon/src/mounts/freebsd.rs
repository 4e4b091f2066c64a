//! FreeBSD: getmntinfo(3).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use super::{FsId, Mount, MountError, MountTable, c_bytes};

pub fn discover() -> Result<Vec<Mount>, MountError> {
    let mut entries: *mut libc::statfs = std::ptr::null_mut();
    // SAFETY: getmntinfo stores a pointer to a buffer it owns (reused by later
    // calls in this thread; the daemon has only one) and returns its length.
    // MNT_NOWAIT reads the kernel's cached statistics and never blocks on a
    // suspended or unresponsive filesystem.
    let count = unsafe { libc::getmntinfo(&raw mut entries, libc::MNT_NOWAIT) };
    if count <= 0 || entries.is_null() {
        return Err(MountError::List(std::io::Error::last_os_error()));
    }
    let len = usize::try_from(count).unwrap_or(0);
    // SAFETY: getmntinfo returned `count` initialised statfs entries at `entries`,
    // valid until the next getmntinfo call; we copy them out before returning.
    let slice = unsafe { std::slice::from_raw_parts(entries, len) };
    Ok(slice.iter().map(to_mount).collect())
}

/// The filesystem `path` is on (statfs(2)'s fsid, as getmntinfo reports it).
pub fn filesystem_of(path: &std::path::Path) -> std::io::Result<FsId> {
    let stat = nix::sys::statfs::statfs(path)?;
    let fsid = stat.filesystem_id();
    // SAFETY: fsid_t is `struct { int32_t val[2]; }` (sys/mount.h), as above.
    let fsid: [i32; 2] = unsafe { std::mem::transmute::<libc::fsid_t, [i32; 2]>(fsid) };
    Ok(FsId([i64::from(fsid[0]), i64::from(fsid[1])]))
}

/// The filesystem an open file is on (fstatfs(2)'s fsid).
pub fn filesystem_of_fd(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<FsId> {
    let stat = nix::sys::statfs::fstatfs(fd)?;
    let fsid = stat.filesystem_id();
    // SAFETY: fsid_t is `struct { int32_t val[2]; }` (sys/mount.h), as above.
    let fsid: [i32; 2] = unsafe { std::mem::transmute::<libc::fsid_t, [i32; 2]>(fsid) };
    Ok(FsId([i64::from(fsid[0]), i64::from(fsid[1])]))
}

/// getmntinfo(3) every time: one getfsstat(2) of the kernel's cached
/// statistics, cheap enough that FREEZE simply reads the table again and
/// reuses CHECK's plan when it is unchanged.
#[derive(Debug, Default)]
pub struct Getmntinfo;

impl Getmntinfo {
    pub fn open() -> Result<Self, MountError> {
        Ok(Self)
    }
}

impl MountTable for Getmntinfo {
    fn list(&mut self) -> Result<Vec<Mount>, MountError> {
        discover()
    }
    fn may_have_changed(&mut self) -> bool {
        true
    }
}

fn to_mount(s: &libc::statfs) -> Mount {
    let flags = s.f_flags;
    // SAFETY: fsid_t is `struct { int32_t val[2]; }` (sys/mount.h); libc
    // keeps the field private, so it is read as the same 8 bytes.
    let fsid: [i32; 2] = unsafe { std::mem::transmute::<libc::fsid_t, [i32; 2]>(s.f_fsid) };
    let text = |field: &[libc::c_char]| String::from_utf8_lossy(&c_bytes(field)).into_owned();
    Mount {
        path: PathBuf::from(OsString::from_vec(c_bytes(&s.f_mntonname))),
        fs_type: text(&s.f_fstypename),
        source: text(&s.f_mntfromname),
        read_only: flags & u64::from(libc::MNT_RDONLY.unsigned_abs()) != 0,
        local: flags & libc::MNT_LOCAL != 0,
        fs_id: FsId([i64::from(fsid[0]), i64::from(fsid[1])]),
    }
}
