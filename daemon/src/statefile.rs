//! The crash-safety record for freezes that outlive the process (Linux
//! FIFREEZE): before freezing, the daemon writes which mounts it is about to
//! freeze; after thawing it removes the file. A daemon that starts and finds
//! the file thaws what it lists. On FreeBSD the kernel resumes a UFS
//! suspension when the daemon dies, so no file is needed.
//!
//! The file is written before the first freeze and removed after the last
//! thaw, so it never needs writing while anything is frozen; reading it from
//! a frozen filesystem works.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::mounts::{FsId, Mount};
use crate::safefile::write_atomically;

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
    pub path: PathBuf,
    pub fs_id: FsId,
}

/// Records `frozen` (before freezing them).
pub fn record(path: &Path, frozen: &[Mount]) -> std::io::Result<()> {
    let record = FrozenRecord {
        pid: std::process::id(),
        frozen: frozen
            .iter()
            .map(|m| FrozenMount {
                path: m.path.clone(),
                fs_id: m.fs_id,
            })
            .collect(),
    };
    let json = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
    write_atomically(path, &json)
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
    match std::fs::read(path) {
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
        record(&path, &mounts).unwrap();
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
}
