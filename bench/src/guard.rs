//! Never leave the machine frozen: Ctrl-C and panics.
//!
//! - SIGINT, SIGTERM and SIGHUP only set a flag; the benchmark checks it
//!   between cycles and returns, so every RAII guard (daemon, qemu-ga, FUSE
//!   devices, loop filesystems) unwinds in its normal order. Children run
//!   in their own process groups, so a terminal's Ctrl-C reaches only us.
//! - The release profile aborts on panic, which skips destructors. Every
//!   resource is therefore also registered here, and a panic hook kills the
//!   children, thaws, unmounts and detaches whatever is still registered.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Installs the flag-setting handlers.
pub(crate) fn install_signal_handlers() -> nix::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe { sigaction(signal, &action) }?;
    }
    Ok(())
}

/// Whether the user asked us to stop.
pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

#[derive(Debug, thiserror::Error)]
#[error("interrupted by a signal; everything was thawed, unmounted and detached")]
pub(crate) struct Interrupted;

/// `Err(Interrupted)` once a stop signal arrived.
pub(crate) fn check() -> Result<(), Interrupted> {
    if interrupted() {
        Err(Interrupted)
    } else {
        Ok(())
    }
}

/// Resources to release if the process dies by panic.
#[derive(Debug, Default)]
struct Registry {
    children: Vec<i32>,
    frozen_candidates: Vec<PathBuf>,
    fuse_mounts: Vec<PathBuf>,
    loop_devices: Vec<PathBuf>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    children: Vec::new(),
    frozen_candidates: Vec::new(),
    fuse_mounts: Vec::new(),
    loop_devices: Vec::new(),
});

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn register_child(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        registry().children.push(pid);
    }
}

pub(crate) fn unregister_child(pid: u32) {
    registry()
        .children
        .retain(|&p| i64::from(p) != i64::from(pid));
}

/// A loop filesystem: thawed, unmounted and its device detached on panic.
pub(crate) fn register_filesystem(mount_point: &Path, loop_device: Option<&Path>) {
    let mut r = registry();
    r.frozen_candidates.push(mount_point.to_owned());
    if let Some(device) = loop_device {
        r.loop_devices.push(device.to_owned());
    }
}

pub(crate) fn register_fuse_mount(dir: &Path) {
    registry().fuse_mounts.push(dir.to_owned());
}

/// Forgets everything (the owners cleaned up normally).
pub(crate) fn unregister_all_mounts() {
    let mut r = registry();
    r.frozen_candidates.clear();
    r.fuse_mounts.clear();
    r.loop_devices.clear();
}

nix::ioctl_readwrite!(fithaw, b'X', 120, libc::c_int);

/// The panic path: kill, thaw, unmount, detach.
fn emergency_cleanup() {
    // Never block on the registry here: the panicking thread may hold it.
    let Ok(mut r) = REGISTRY.try_lock() else {
        eprintln!("hv-vss-bench: panic while cleaning up; check `losetup -a` and `mount`");
        return;
    };
    for &pid in &r.children {
        // The daemon's own SIGTERM path needs the FUSE devices we are about
        // to tear down: SIGKILL, we thaw ourselves below.
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    }
    r.children.clear();
    for mount in &r.frozen_candidates {
        if let Ok(dir) = std::fs::File::open(mount) {
            use std::os::fd::AsRawFd;
            let mut unused: libc::c_int = 0;
            // Freezes nest; thaw until the kernel says "not frozen".
            for _ in 0..8 {
                // SAFETY: FITHAW on an open directory; the int is ignored.
                if unsafe { fithaw(dir.as_raw_fd(), &raw mut unused) }.is_err() {
                    break;
                }
            }
        }
    }
    for mount in r.fuse_mounts.iter().chain(&r.frozen_candidates) {
        let _ = nix::mount::umount2(mount, nix::mount::MntFlags::MNT_DETACH);
    }
    for device in &r.loop_devices {
        let _ = Command::new("losetup").arg("--detach").arg(device).status();
    }
    r.frozen_candidates.clear();
    r.fuse_mounts.clear();
    r.loop_devices.clear();
}

/// With `panic = "abort"` (the release profile), destructors do not run on
/// panic: clean up from the hook instead. With unwinding, the guards do it.
pub(crate) fn install_panic_hook() {
    if cfg!(panic = "abort") {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            default(info);
            emergency_cleanup();
            eprintln!("hv-vss-bench: emergency cleanup done after the panic above");
        }));
    }
}
