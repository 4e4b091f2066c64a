//! FreeBSD: getmntinfo(3).

use std::path::PathBuf;

use super::{FsId, Mount, MountError, c_string};

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

fn to_mount(s: &libc::statfs) -> Mount {
    let flags = s.f_flags;
    // SAFETY: fsid_t is `struct { int32_t val[2]; }` (sys/mount.h); libc
    // keeps the field private, so it is read as the same 8 bytes.
    let fsid: [i32; 2] = unsafe { std::mem::transmute::<libc::fsid_t, [i32; 2]>(s.f_fsid) };
    Mount {
        path: PathBuf::from(c_string(&s.f_mntonname)),
        fs_type: c_string(&s.f_fstypename),
        source: c_string(&s.f_mntfromname),
        read_only: flags & u64::from(libc::MNT_RDONLY.unsigned_abs()) != 0,
        local: flags & libc::MNT_LOCAL != 0,
        fs_id: FsId([i64::from(fsid[0]), i64::from(fsid[1])]),
    }
}
