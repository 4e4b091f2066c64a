//! FreeBSD: the md(4)-backed harness itself. Every UFS flavour is made,
//! suspended by a holder child, seen suspended by a probe child, blocks a
//! writer until released, and everything (holders, mounts, pools, md
//! devices) is gone after a panic while suspended. Needs root and md(4);
//! SKIP otherwise (a failure with HV_VSS_E2E_REQUIRED=1, as
//! `.ci/freebsd/run` sets it).
#![cfg(target_os = "freebsd")]
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use hv_vss_sim::loopfs::{FsType, LoopFilesystems};

const UFS: [FsType; 3] = [FsType::UfsSuj, FsType::UfsSu, FsType::Ufs];

fn skip(test: &str, types: &[FsType]) -> bool {
    match hv_vss_sim::environment::check_backup(types) {
        Ok(()) => false,
        Err(missing) => {
            hv_vss_sim::environment::report_skip(test, &missing);
            true
        }
    }
}

fn output(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Mounts (`mount -p`) and md devices (`mdconfig -l -v`) naming `dir`.
fn traces_of(dir: &Path) -> Vec<String> {
    let dir = dir.to_str().unwrap();
    output("mount", &["-p"])
        .lines()
        .chain(output("mdconfig", &["-l", "-v"]).lines())
        .filter(|line| line.contains(dir))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_ufs_flavour_is_suspended_and_a_writer_waits_for_the_release() {
    if skip("every_ufs_flavour_is_suspended", &UFS) {
        return;
    }
    let set = LoopFilesystems::create(&UFS).unwrap();
    for fs in &set {
        assert!(!fs.is_frozen().unwrap(), "{} starts resumed", fs.fs_type());
        fs.freeze().unwrap();
        assert!(fs.is_frozen().unwrap(), "{} suspended", fs.fs_type());
        assert!(fs.freeze().is_err(), "a second suspension is refused");
        let target = fs.mount_point().join("written-while-suspended");
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let writer = std::thread::spawn(move || {
            std::fs::write(&target, b"data").unwrap();
            done_tx.send(()).unwrap();
        });
        assert!(
            done_rx.recv_timeout(Duration::from_millis(500)).is_err(),
            "{}: the write waits",
            fs.fs_type()
        );
        assert!(fs.thaw().unwrap());
        done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        writer.join().unwrap();
        assert!(!fs.is_frozen().unwrap(), "{} resumed", fs.fs_type());
        assert!(!fs.thaw().unwrap(), "nothing held any more");
    }
}

#[test]
fn an_unmounted_filesystem_is_never_probed_or_suspended() {
    if skip("an_unmounted_filesystem_is_never_probed", &[FsType::Ufs]) {
        return;
    }
    let set = LoopFilesystems::create(&[FsType::Ufs]).unwrap();
    let fs = set.iter().next().unwrap();
    fs.unmount().unwrap();
    // The path now shows the filesystem underneath (/tmp's): untouchable.
    assert!(!fs.is_frozen().unwrap());
    assert!(fs.freeze().is_err());
    fs.mount_on(fs.mount_point()).unwrap();
    assert!(!fs.is_frozen().unwrap());
}

#[test]
fn a_panic_while_suspended_still_cleans_up() {
    if skip("a_panic_while_suspended_still_cleans_up", &UFS) {
        return;
    }
    let mut dir = PathBuf::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let set = LoopFilesystems::create(&UFS).unwrap();
        dir = set.dir().to_owned();
        for fs in &set {
            fs.freeze().unwrap();
        }
        panic!("test panic while suspended");
    }));
    assert!(result.is_err());
    assert_eq!(
        traces_of(&dir),
        Vec::<String>::new(),
        "mounts or md devices left"
    );
    assert!(!dir.exists(), "temporary directory removed");
}
