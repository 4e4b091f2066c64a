//! The loop-mount harness: real ext4/xfs images, freeze probes, and cleanup
//! in every path including a panic while frozen.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use hv_vss_sim::loopfs::{FsType, LoopFilesystems};

fn loop_devices_backing(images: &[PathBuf]) -> Vec<String> {
    let out = std::process::Command::new("losetup")
        .arg("--list")
        .arg("--noheadings")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| {
            images
                .iter()
                .any(|image| line.contains(image.to_str().unwrap()))
        })
        .map(str::to_owned)
        .collect()
}

fn mounted(dir: &std::path::Path) -> bool {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .contains(dir.to_str().unwrap())
}

fn skip(test: &str) -> bool {
    match hv_vss_sim::environment::check_backup(&[FsType::Ext4, FsType::Xfs]) {
        Ok(()) => false,
        Err(missing) => {
            hv_vss_sim::environment::report_skip(test, &missing);
            true
        }
    }
}

#[test]
fn freeze_is_seen_and_a_writer_blocks_until_thaw() {
    if skip("freeze_is_seen_and_a_writer_blocks_until_thaw") {
        return;
    }
    let set = LoopFilesystems::create(&[FsType::Ext4, FsType::Xfs]).unwrap();
    for fs in &set {
        assert!(!fs.is_frozen().unwrap(), "{} starts thawed", fs.fs_type());
        fs.freeze().unwrap();
        assert!(fs.is_frozen().unwrap());
        let target = fs.mount_point().join("written-while-frozen");
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let writer = std::thread::spawn(move || {
            std::fs::write(&target, b"data").unwrap();
            done_tx.send(()).unwrap();
        });
        assert!(
            done_rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "write blocked"
        );
        assert!(fs.thaw().unwrap());
        done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        writer.join().unwrap();
        assert!(!fs.thaw().unwrap(), "second thaw: not frozen");
    }
}

#[test]
fn a_panic_while_frozen_still_cleans_up() {
    if skip("a_panic_while_frozen_still_cleans_up") {
        return;
    }
    let mut dir = PathBuf::new();
    let mut images = Vec::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let set = LoopFilesystems::create(&[FsType::Ext4, FsType::Ext4]).unwrap();
        dir = set.dir().to_owned();
        images = set
            .iter()
            .map(|fs| {
                set.dir().join(format!(
                    "{}.img",
                    fs.mount_point().file_name().unwrap().to_str().unwrap()
                ))
            })
            .collect();
        for fs in &set {
            fs.freeze().unwrap();
        }
        panic!("test panic while frozen");
    }));
    assert!(result.is_err());
    assert!(!mounted(&dir), "{} still mounted", dir.display());
    assert!(loop_devices_backing(&images).is_empty());
    assert!(!dir.exists(), "temporary directory removed");
}
