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
pub use freebsd::discover;
#[cfg(target_os = "linux")]
pub use linux::{discover, parse_mountinfo};

/// Which filesystem a mount shows: FreeBSD's `fsid_t`, Linux's device
/// number. Two mounts with the same id are the same filesystem (bind or
/// nullfs mounts), which must be frozen only once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct FsId(pub [i64; 2]);

/// One mounted filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted.
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

/// Text of a fixed-size, NUL-terminated C name field (statfs's
/// `f_mntonname` and friends); the whole field if it has no NUL.
#[cfg_attr(not(target_os = "freebsd"), allow(dead_code))]
fn c_string(field: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = field
        .iter()
        .map(|&c| u8::from_ne_bytes(c.to_ne_bytes()))
        .take_while(|&b| b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
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
    fn c_string_stops_at_the_nul_or_the_end() {
        assert_eq!(c_string(&field(b"ufs", 16)), "ufs");
        assert_eq!(c_string(&field(b"/mnt/resource", 1024)), "/mnt/resource");
        assert_eq!(
            c_string(&field(b"0123456789abcdef", 16)),
            "0123456789abcdef"
        );
        assert_eq!(c_string(&field(b"", 16)), "");
    }
}
