//! Support for the end-to-end tests in `tests/tests/`: the real
//! `hv_vssd` and `hv_vss_app` binaries, the simulated host and kernel
//! from `hv-vss-sim`, and real scratch filesystems (loop-mounted on Linux,
//! md(4)-backed on FreeBSD; [`platform`] holds what differs).
//!
//! Every test runs through [`e2e`], which
//! - prints `SKIP <test>: <reason>` and returns when the machine lacks root,
//!   the device layer (`/dev/fuse`, `/dev/cuse`), loop or md devices or mkfs
//!   tools — unless
//!   `HV_VSS_E2E_REQUIRED=1` is set (CI sets it), then it fails instead;
//! - serializes the tests (they share loop devices and FUSE), within the
//!   process and across processes (a lock file);
//! - runs the body in a thread under a deadline; on expiry it thaws every
//!   simulator filesystem and kills the children it knows, so the body's
//!   own cleanup can finish, then fails the test ([`platform::emergency_release`]).
//!
//! The bodies build on [`scenario`]: the simulation, reply checks, the safe
//! "which filesystems are frozen" probe, a full backup, the exactly-once
//! accounting and the soak actions that both suites share.

pub mod platform;
pub mod scenario;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use hv_vss_sim::binaries::Program;
use hv_vss_sim::loopfs::FsType;

pub use hv_vss_sim;

pub use hv_vss_sim::environment::REQUIRED_ENV;

static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `body` as one end-to-end test (see the crate docs).
pub fn e2e(
    name: &str,
    timeout: Duration,
    fs_types: &[FsType],
    body: impl FnOnce() + Send + 'static,
) {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    if let Err(missing) = hv_vss_sim::environment::check_backup(fs_types) {
        hv_vss_sim::environment::report_skip(name, &missing);
        return;
    }
    if let Err(e) = built_binaries() {
        panic!("{name}: {e}");
    }
    let _lock = cross_process_lock();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            body();
            let _ = done_tx.send(());
        })
        .unwrap_or_else(|e| panic!("{name}: cannot spawn the test thread: {e}"));
    match done_rx.recv_timeout(timeout) {
        Ok(()) => {
            let _ = thread.join();
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            // The body panicked: re-raise its panic with its message.
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            platform::emergency_release();
            let _ = done_rx.recv_timeout(Duration::from_secs(60));
            panic!(
                "{name}: timed out after {timeout:?}; filesystems were thawed and children killed"
            );
        }
    }
}

fn cross_process_lock() -> Option<nix::fcntl::Flock<std::fs::File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("hv-vss-e2e.lock"))
        .ok()?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).ok()
}

/// Paths of the real binaries under test.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub daemon: PathBuf,
    pub app: PathBuf,
    pub ctl: PathBuf,
}

/// Builds (once per test process) and returns `hv_vssd`, `hv_vss_app` and
/// `hv_vssctl`, from the same target directory and profile as the test,
/// unless `HV_VSSD_BIN` / `HV_VSS_APP_BIN` / `HV_VSSCTL_BIN` name them.
///
/// Cargo's `CARGO_BIN_EXE_*` only covers binaries of the test's own
/// package, so the test runs `cargo build` itself; cargo does not hold the
/// target directory's lock while tests run, so this cannot deadlock.
pub fn built_binaries() -> Result<Binaries, String> {
    static BUILT: OnceLock<Result<Binaries, String>> = OnceLock::new();
    BUILT.get_or_init(build).clone()
}

fn build() -> Result<Binaries, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    // target/<profile>/deps/<test binary>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("test binary is not in target/<profile>/deps")?;
    let overridden = |program: Program| std::env::var_os(program.env_var()).map(PathBuf::from);
    if let (Some(daemon), Some(app), Some(ctl)) = (
        overridden(Program::Daemon),
        overridden(Program::App),
        overridden(Program::Ctl),
    ) {
        return Ok(Binaries { daemon, app, ctl });
    }
    let target_dir = profile_dir.parent().ok_or("no target directory")?;
    let mut cargo = std::process::Command::new(env!("CARGO"));
    cargo
        .args([
            "build",
            "--quiet",
            "-p",
            "hv-vssd",
            "-p",
            "hv-vss-app",
            "-p",
            "hv-vssctl",
        ])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cargo.arg("--release");
    }
    let output = cargo
        .output()
        .map_err(|e| format!("running cargo build: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo build -p hv-vssd -p hv-vss-app -p hv-vssctl failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(Binaries {
        daemon: overridden(Program::Daemon)
            .unwrap_or_else(|| profile_dir.join(Program::Daemon.file_name())),
        app: overridden(Program::App).unwrap_or_else(|| profile_dir.join(Program::App.file_name())),
        ctl: overridden(Program::Ctl).unwrap_or_else(|| profile_dir.join(Program::Ctl.file_name())),
    })
}
