//! What the simulator needs from the machine, checked up front so that
//! commands and tests can say precisely what is missing instead of failing
//! halfway (or passing without having tested anything).
//!
//! Linux: root, `/dev/fuse`, loop devices, mkfs.ext4/mkfs.xfs. FreeBSD:
//! root, `/dev/cuse` (`kldload cuse`), md(4) (`/dev/mdctl`), newfs, and
//! for ZFS `/dev/zfs` (`kldload zfs`).

use std::path::Path;

use crate::loopfs::FsType;

/// Something the machine lacks for a simulated run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing(pub String);

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The device nodes the platform's device layer needs, with how to get each.
#[cfg(target_os = "linux")]
const DEVICE_LAYER: (&str, &str) = ("/dev/fuse", "load the fuse module (modprobe fuse)");
#[cfg(target_os = "freebsd")]
const DEVICE_LAYER: (&str, &str) = ("/dev/cuse", "load the cuse module (kldload cuse)");

/// The block-device layer for the scratch filesystems.
#[cfg(target_os = "linux")]
const DISK_LAYER: (&str, &str) = ("/dev/loop-control", "load the loop module (modprobe loop)");
#[cfg(target_os = "freebsd")]
const DISK_LAYER: (&str, &str) = ("/dev/mdctl", "load md(4) (kldload md)");

/// Tools every run needs besides the mkfs programs.
#[cfg(target_os = "linux")]
const TOOLS: (&[&str], &str) = (
    &["losetup", "mount", "umount"],
    "install util-linux / mount",
);
#[cfg(target_os = "freebsd")]
const TOOLS: (&[&str], &str) = (
    &["mdconfig", "mount", "umount"],
    "they are part of FreeBSD's base system",
);

/// Root and the device layer (FUSE on Linux, CUSE on FreeBSD): enough to
/// expose the simulated devices.
pub fn check_devices() -> Result<(), Missing> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Missing(
            "must run as root: making the simulated devices, the scratch disks and \
             freezing filesystems all need root"
                .to_owned(),
        ));
    }
    let (node, how) = DEVICE_LAYER;
    if !Path::new(node).exists() {
        return Err(Missing(format!("{node} is missing: {how}")));
    }
    Ok(())
}

/// Why this machine cannot create `fs_type`, with what to do about it;
/// `None` when it can.
pub fn fs_missing(fs_type: FsType) -> Option<String> {
    if !fs_type.supported() {
        return Some(format!(
            "{fs_type} cannot be made on {}",
            std::env::consts::OS
        ));
    }
    let tool = fs_type.mkfs_tool();
    if which(tool).is_none() {
        return Some(format!("{tool} not found: {}", fs_type.install_hint()));
    }
    if fs_type == FsType::Zfs && !Path::new("/dev/zfs").exists() {
        return Some(format!("/dev/zfs is missing: {}", fs_type.install_hint()));
    }
    None
}

/// Root, the device layer, the disk layer and the tools for `fs_types`.
pub fn check_backup(fs_types: &[FsType]) -> Result<(), Missing> {
    check_devices()?;
    let (node, how) = DISK_LAYER;
    if !Path::new(node).exists() {
        return Err(Missing(format!("{node} is missing: {how}")));
    }
    if let Some(reason) = fs_types.iter().find_map(|&fs| fs_missing(fs)) {
        return Err(Missing(reason));
    }
    let (tools, how) = TOOLS;
    for tool in tools {
        if which(tool).is_none() {
            return Err(Missing(format!("{tool} not found: {how}")));
        }
    }
    Ok(())
}

/// Finds an executable on `PATH` (plus the sbin directories root uses).
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(Into::into))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Set to 1 (CI does) to make a missing prerequisite fail a test instead
/// of skipping it.
pub const REQUIRED_ENV: &str = "HV_VSS_E2E_REQUIRED";

/// For a test that cannot run here: prints `SKIP <test>: <why>` where a
/// test run shows it (straight to the stderr descriptor: the harness
/// captures `eprintln!` of passing tests, and a skipped test passes), or
/// panics when [`REQUIRED_ENV`] is 1.
pub fn report_skip(test: &str, missing: &Missing) {
    use std::io::Write;
    assert!(
        std::env::var(REQUIRED_ENV).as_deref() != Ok("1"),
        "{test}: {missing} ({REQUIRED_ENV}=1: a failure, not a skip)"
    );
    let _ = writeln!(std::io::stderr().lock(), "SKIP {test}: {missing}");
}
