//! The crash-safety record for freezes that outlive the process (Linux
//! FIFREEZE): before freezing, the daemon writes which mounts it is about to
//! freeze; once everything is thawed it removes the file. A daemon that
//! starts and finds the file thaws what it lists, before it touches any
//! other path. On FreeBSD the kernel resumes a UFS suspension when the
//! daemon dies, so no file is needed.
//!
//! The file is written before the first freeze and removed after the last
//! thaw, so it never needs writing while anything is frozen (a thaw that
//! fails leaves it in place: it lists a superset of what is still frozen,
//! and a thaw of something not frozen is harmless). It is written without
//! fsync: it guards against the daemon dying, not the machine (a reboot
//! thaws everything), and the host is waiting while it is written.
//!
//! Mount points are bytes; the file stores each as text with `\ooo` octal
//! escapes (as mountinfo does) for a backslash and every byte outside
//! printable ASCII, so any path survives the round trip.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::mounts::{FsId, Mount, unescape_octal};
use crate::safefile::{Staged, write_atomically};

/// A record is a few hundred bytes per mount; anything this large is not one.
const MAX_RECORD: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrozenRecord {
    pub pid: u32,
    /// In freeze order.
    pub frozen: Vec<FrozenMount>,
}

/// A mount point and the filesystem that was mounted there: the thaw at the
/// next start must not thaw whatever is mounted at that path by then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrozenMount {
    #[serde(serialize_with = "path_as_text", deserialize_with = "path_from_text")]
    pub path: PathBuf,
    pub fs_id: FsId,
}

impl From<&Mount> for FrozenMount {
    fn from(mount: &Mount) -> Self {
        Self {
            path: mount.path.clone(),
            fs_id: mount.fs_id,
        }
    }
}

fn path_as_text<S: Serializer>(path: &Path, serializer: S) -> Result<S::Ok, S::Error> {
    let mut text = String::new();
    for &byte in path.as_os_str().as_bytes() {
        if byte == b'\\' || !(0x20..0x7f).contains(&byte) {
            let _ = write!(text, "\\{byte:03o}");
        } else {
            text.push(char::from(byte));
        }
    }
    serializer.serialize_str(&text)
}

fn path_from_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<PathBuf, D::Error> {
    let text = String::deserialize(deserializer)?;
    Ok(PathBuf::from(OsString::from_vec(unescape_octal(
        text.as_bytes(),
    ))))
}

/// Records `frozen` (before freezing them), replacing any earlier record.
pub fn record(path: &Path, frozen: &[FrozenMount]) -> std::io::Result<()> {
    write_atomically(path, &encode(frozen)?)
}

/// Writes the record of `frozen` ahead (at CHECK), to be put in place by
/// the FREEZE that follows with a single rename.
pub fn stage(path: &Path, frozen: &[FrozenMount]) -> std::io::Result<Staged> {
    Staged::write(path, &encode(frozen)?)
}

fn encode(frozen: &[FrozenMount]) -> std::io::Result<Vec<u8>> {
    let record = FrozenRecord {
        pid: std::process::id(),
        frozen: frozen.to_vec(),
    };
    serde_json::to_vec(&record).map_err(std::io::Error::other)
}

/// Removes the record (after thawing). A missing file is fine.
pub fn clear(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Reads a record left by an earlier daemon; `Ok(None)` when there is none.
pub fn read(path: &Path) -> Result<Option<FrozenRecord>, String> {
    // A regular file of bounded size, opened without blocking: recovery
    // runs first at start and must not hang on a FIFO planted there.
    match crate::safefile::read_regular(path, MAX_RECORD) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            format!(
                "{} is damaged ({e}); remove it after checking that nothing is frozen",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::mount;

    #[test]
    fn record_read_clear_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frozen");
        assert_eq!(read(&path).unwrap(), None);
        let mounts = [mount("/b", "ext4", 7), mount("/", "ext4", 1)];
        let frozen: Vec<FrozenMount> = mounts.iter().map(FrozenMount::from).collect();
        record(&path, &frozen).unwrap();
        let r = read(&path).unwrap().unwrap();
        let frozen: Vec<_> = r
            .frozen
            .iter()
            .map(|f| (f.path.as_path(), f.fs_id))
            .collect();
        assert_eq!(
            frozen,
            [
                (Path::new("/b"), FsId([7, 0])),
                (Path::new("/"), FsId([1, 0]))
            ]
        );
        assert_eq!(r.pid, std::process::id());
        clear(&path).unwrap();
        clear(&path).unwrap();
        assert_eq!(read(&path).unwrap(), None);
        std::fs::write(&path, "{").unwrap();
        assert!(read(&path).unwrap_err().contains("damaged"));
    }

    #[test]
    fn any_mount_point_bytes_survive_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frozen");
        let odd = PathBuf::from(OsString::from_vec(b"/mnt/caf\xe9 \\x\n\"q\"".to_vec()));
        let frozen = [FrozenMount {
            path: odd.clone(),
            fs_id: FsId([7, 3]),
        }];
        record(&path, &frozen).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(r"/mnt/caf\\351 \\134x\\012"), "{text}");
        assert_eq!(read(&path).unwrap().unwrap().frozen[0].path, odd);
    }

    proptest::proptest! {
        #[test]
        fn every_path_round_trips(bytes in proptest::collection::vec(1u8..=255, 1..40)) {
            let path = PathBuf::from(OsString::from_vec(bytes));
            let json = serde_json::to_vec(&FrozenMount { path: path.clone(), fs_id: FsId([1, 2]) }).unwrap();
            let back: FrozenMount = serde_json::from_slice(&json).unwrap();
            proptest::prop_assert_eq!(back.path, path);
        }
    }
}
