//! What the simulator needs from the machine, checked up front so that
//! commands and tests can say precisely what is missing instead of failing
//! halfway (or passing without having tested anything).

use std::path::Path;

/// Something the machine lacks for a simulated run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing(pub String);

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Root and `/dev/fuse`: enough to expose the simulated devices.
pub fn check_fuse() -> Result<(), Missing> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Missing(
            "must run as root: mounting the simulated devices (FUSE), loop devices and \
             freezing filesystems all need CAP_SYS_ADMIN"
                .to_owned(),
        ));
    }
    if !Path::new("/dev/fuse").exists() {
        return Err(Missing(
            "/dev/fuse is missing: load the fuse module (modprobe fuse)".to_owned(),
        ));
    }
    Ok(())
}

/// Root, `/dev/fuse`, loop devices and the mkfs tools for `fs_types`.
pub fn check_backup(fs_types: &[crate::loopfs::FsType]) -> Result<(), Missing> {
    check_fuse()?;
    if !Path::new("/dev/loop-control").exists() {
        return Err(Missing(
            "/dev/loop-control is missing: load the loop module (modprobe loop)".to_owned(),
        ));
    }
    for fs in fs_types {
        let tool = fs.mkfs_tool();
        if which(tool).is_none() {
            return Err(Missing(format!(
                "{tool} not found: install {} (apt-get install {})",
                fs.debian_package(),
                fs.debian_package()
            )));
        }
    }
    for tool in ["losetup", "mount", "umount"] {
        if which(tool).is_none() {
            return Err(Missing(format!(
                "{tool} not found: install util-linux / mount"
            )));
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
