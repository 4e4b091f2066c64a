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

use crate::status::write_atomically;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrozenRecord {
    pub pid: u32,
    /// Mount points, in freeze order.
    pub frozen: Vec<PathBuf>,
}

/// Records `frozen` (before freezing them).
pub fn record(path: &Path, frozen: &[PathBuf]) -> std::io::Result<()> {
    let record = FrozenRecord {
        pid: std::process::id(),
        frozen: frozen.to_vec(),
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

    #[test]
    fn record_read_clear_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frozen");
        assert_eq!(read(&path).unwrap(), None);
        record(&path, &[PathBuf::from("/b"), PathBuf::from("/")]).unwrap();
        let r = read(&path).unwrap().unwrap();
        assert_eq!(r.frozen, [PathBuf::from("/b"), PathBuf::from("/")]);
        assert_eq!(r.pid, std::process::id());
        clear(&path).unwrap();
        clear(&path).unwrap();
        assert_eq!(read(&path).unwrap(), None);
        std::fs::write(&path, "{").unwrap();
        assert!(read(&path).unwrap_err().contains("damaged"));
    }
}
