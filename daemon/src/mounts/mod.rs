//! Mounted filesystems, as the policy sees them.
//!
//! Discovery is per platform (getmntinfo(3) on FreeBSD, /proc/self/mountinfo
//! on Linux); both return the mounts in mount order, parents before children.

use std::path::PathBuf;

#[cfg(target_os = "freebsd")]
mod freebsd;
#[cfg(target_os = "linux")]
mod linux;

#[cfg(target_os = "freebsd")]
pub use freebsd::{Getmntinfo as PlatformMountTable, discover, filesystem_of, filesystem_of_fd};
#[cfg(target_os = "linux")]
pub use linux::{
    WatchedMountinfo as PlatformMountTable, discover, filesystem_of, filesystem_of_fd,
    parse_mountinfo,
};

/// Which filesystem a mount shows: FreeBSD's `fsid_t`, Linux's device
/// number. Two mounts with the same id are the same filesystem (bind
/// mounts on Linux), which must be frozen only once. A FreeBSD nullfs mount
/// has an fsid of its own (nullfs_mount calls vfs_getnewfsid), so it never
/// shares the id of the filesystem it shows; the policy skips nullfs by
/// type instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct FsId(pub [i64; 2]);

/// One mounted filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted: any bytes but NUL, not necessarily UTF-8. Show it
    /// with `log::Escaped`, never `display()` alone, in anything logged.
    pub path: PathBuf,
    /// Filesystem type name (`ufs`, `zfs`, `ext4`, `tmpfs`...).
    pub fs_type: String,
    /// What is mounted: a device, a dataset (`zroot/ROOT/default`), a server.
    pub source: String,
    pub read_only: bool,
    /// Whether the kernel calls the filesystem local (FreeBSD's MNT_LOCAL;
    /// on Linux derived from the type).
    pub local: bool,
    pub fs_id: FsId,
}

/// Mount discovery failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("cannot list mounted filesystems: {0}")]
    List(#[from] std::io::Error),
    #[error("cannot parse {source_name} line {line}: {problem}")]
    Parse {
        source_name: &'static str,
        line: usize,
        problem: String,
    },
}

/// Where the engine gets the mount table.
pub trait MountTable {
    /// The mounted filesystems, in mount order.
    fn list(&mut self) -> Result<Vec<Mount>, MountError>;
    /// False only when the table is known not to have changed since the
    /// last [`Self::list`]: FREEZE then reuses the plan CHECK made.
    fn may_have_changed(&mut self) -> bool;
}

/// A mount table read through a function every time (tests, tools).
impl<T: FnMut() -> Result<Vec<Mount>, MountError>> MountTable for T {
    fn list(&mut self) -> Result<Vec<Mount>, MountError> {
        self()
    }
    fn may_have_changed(&mut self) -> bool {
        true
    }
}

/// Undoes `\ooo` octal escapes (mountinfo escapes space, tab, newline and
/// backslash so; the state file escapes every byte outside printable ASCII).
/// Anything else, including a lone backslash, is kept as it is.
pub fn unescape_octal(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' && i + 4 <= field.len() {
            let digits = &field[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(value) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

/// The bytes of a fixed-size, NUL-terminated C name field (statfs's
/// `f_mntonname` and friends); the whole field if it has no NUL.
#[cfg_attr(not(target_os = "freebsd"), allow(dead_code))]
fn c_bytes(field: &[libc::c_char]) -> Vec<u8> {
    field
        .iter()
        .map(|&c| u8::from_ne_bytes(c.to_ne_bytes()))
        .take_while(|&b| b != 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(text: &[u8], len: usize) -> Vec<libc::c_char> {
        let mut f = vec![0 as libc::c_char; len];
        for (slot, &b) in f.iter_mut().zip(text) {
            *slot = libc::c_char::from_ne_bytes(b.to_ne_bytes());
        }
        f
    }

    #[test]
    fn c_bytes_stop_at_the_nul_or_the_end() {
        assert_eq!(c_bytes(&field(b"ufs", 16)), b"ufs");
        assert_eq!(c_bytes(&field(b"/mnt/caf\xe9", 1024)), b"/mnt/caf\xe9");
        assert_eq!(
            c_bytes(&field(b"0123456789abcdef", 16)),
            b"0123456789abcdef"
        );
        assert_eq!(c_bytes(&field(b"", 16)), b"");
    }
}
