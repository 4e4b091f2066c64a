//! FreeBSD-only scenarios: what the daemon does with each kind of mount a
//! FreeBSD guest has, on real md(4)-backed filesystems. UFS2 in its three
//! soft-updates settings is suspended (UFSSUSPEND) and writes to it block
//! until the thaw; a ZFS pool is flushed with `zpool sync` and never
//! blocks; a read-only UFS and a nullfs mount are skipped. The scenarios
//! shared with Linux are in `e2e.rs` and `faults.rs`.
//!
//! Run as `.ci/freebsd/run` does (root, `kldload cuse zfs`):
//! `cargo test -p hv-vss-e2e --test freebsd -- --ignored --test-threads=1`.
#![cfg(target_os = "freebsd")]
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use hv_vss_e2e::e2e;
use hv_vss_e2e::scenario::{
    assert_exactly_once, assert_nothing_frozen, backup_passes_every_check, frozen, options,
    request_ok, started,
};
use hv_vss_proto::HostOperation;
use hv_vss_sim::loopfs::FsType;

/// Writes a file in `dir` in a thread; the receiver gets the result when
/// the write (create, write, fsync) is done.
fn write_in(dir: &Path) -> mpsc::Receiver<std::io::Result<()>> {
    let path = dir.join("written-during-the-freeze");
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let outcome = std::fs::File::create(&path).and_then(|mut file| {
            std::io::Write::write_all(&mut file, b"during the snapshot\n")?;
            file.sync_all()
        });
        let _ = done.send(outcome);
    });
    result
}

// 1. A full backup of UFS2 with SU+J, with soft updates only, and with
// neither: each is suspended, a write to each blocks until THAW and then
// completes, and nothing stays suspended (the backup timeline's checks).
#[test]
#[ignore = "FreeBSD end-to-end: needs root, cuse and md; run by .ci/freebsd/run"]
fn freebsd_1_every_ufs_flavour_is_suspended_and_its_writes_wait_for_the_thaw() {
    let ufs = [FsType::UfsSuj, FsType::UfsSu, FsType::Ufs];
    e2e("freebsd_1_ufs", Duration::from_secs(180), &ufs, move || {
        backup_passes_every_check(&ufs);
    });
}

// 2. Next to a UFS: a ZFS pool (synced with `zpool sync <pool>` before the
// FREEZE reply, never suspended, writes go through), a read-only UFS and a
// nullfs mount (both skipped and logged so). Only the UFS is frozen.
#[test]
#[ignore = "FreeBSD end-to-end: needs root, cuse, md and zfs; run by .ci/freebsd/run"]
fn freebsd_2_zfs_is_synced_and_read_only_and_nullfs_mounts_are_skipped() {
    let kinds = [
        FsType::UfsSuj,
        FsType::Zfs,
        FsType::UfsReadOnly,
        FsType::Nullfs,
    ];
    e2e(
        "freebsd_2_policy",
        Duration::from_secs(180),
        &kinds,
        move || {
            let mut sim = started(&options(&kinds));
            let filesystems: Vec<_> = sim.filesystems.iter().collect();
            let (ufs, zfs, read_only, nullfs) = (
                filesystems[0].mount_point().to_owned(),
                filesystems[1].mount_point().to_owned(),
                filesystems[2].mount_point().to_owned(),
                filesystems[3].mount_point().to_owned(),
            );
            let pool = filesystems[1].pool().unwrap().to_owned();
            request_ok(&mut sim, HostOperation::HotBackup, "HOT_BACKUP");
            request_ok(&mut sim, HostOperation::Freeze, "FREEZE");
            assert_eq!(frozen(&sim), vec![ufs.clone()], "only the UFS is suspended");
            let pool_write = write_in(&zfs);
            let suspended_write = write_in(&ufs);
            assert!(
                matches!(pool_write.recv_timeout(Duration::from_secs(5)), Ok(Ok(()))),
                "a write to the ZFS pool completes during the freeze"
            );
            assert!(
                suspended_write
                    .recv_timeout(Duration::from_millis(500))
                    .is_err(),
                "a write to the suspended UFS waits"
            );
            request_ok(&mut sim, HostOperation::Thaw, "THAW");
            assert!(
                matches!(
                    suspended_write.recv_timeout(Duration::from_secs(10)),
                    Ok(Ok(()))
                ),
                "the UFS write completes after THAW"
            );
            assert_nothing_frozen(&sim);
            let log = sim.daemon_log();
            for expected in [
                format!("zpool sync {pool}:"),
                format!("skipping {} (ufs", read_only.display()),
                format!("skipping {} (nullfs", nullfs.display()),
            ] {
                assert!(log.contains(&expected), "{expected:?} not in:\n{log}");
            }
            assert!(
                !log.contains(&format!("froze {}", zfs.display()))
                    && !log.contains(&format!("froze {}", read_only.display()))
                    && !log.contains(&format!("froze {}", nullfs.display())),
                "only the UFS was frozen:\n{log}"
            );
            assert_exactly_once(&mut sim);
        },
    );
}
