//! What a simulated `/dev/hv_*vss_dev` device does, independent of how it
//! is exposed to processes ([`crate::device_nodes`]: FUSE on Linux, CUSE on
//! FreeBSD).
//!
//! The kernel's cdevsw entry points (open, close, ioctl READ/WRITE, poll)
//! become the methods of [`DeviceBackend`]; the backend's only way back to
//! the exposing layer is a [`PollWaker`], the userspace stand-in for
//! `selwakeup(9)`.

use std::fmt;
use std::sync::{Arc, OnceLock};

use hv_vss_proto::{APP_DEVICE_NAME, FS_DEVICE_NAME};

/// Which of the two character devices a call is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// `hv_fsvss_dev`, opened by `hv_vssd(8)`.
    Fs,
    /// `hv_appvss_dev`, opened by applications (`hv_vss_app`).
    App,
}

impl DeviceKind {
    pub const ALL: [DeviceKind; 2] = [DeviceKind::Fs, DeviceKind::App];

    /// The file name under `/dev` (and in the simulator's device directory).
    pub fn file_name(self) -> &'static str {
        match self {
            DeviceKind::Fs => FS_DEVICE_NAME,
            DeviceKind::App => APP_DEVICE_NAME,
        }
    }

    /// 0 for `Fs`, 1 for `App`: for per-device arrays.
    pub fn index(self) -> usize {
        match self {
            DeviceKind::Fs => 0,
            DeviceKind::App => 1,
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.file_name())
    }
}

/// An errno a device entry point returns to the calling process, as the
/// kernel driver would (`EBUSY` on a second open, `EINVAL` on a bad message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceErrno(pub i32);

impl DeviceErrno {
    pub const BUSY: DeviceErrno = DeviceErrno(libc::EBUSY);
    pub const INVALID: DeviceErrno = DeviceErrno(libc::EINVAL);
    pub const NOT_OPEN: DeviceErrno = DeviceErrno(libc::EBADF);
}

/// Readiness of a device for `poll(2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Readiness {
    /// A request is queued: `IOCHVVSSREAD` will return it (POLLIN).
    pub readable: bool,
}

/// The device side of the simulated kernel: one implementation runs the
/// real engine from `kmod/`, tests may plug in others.
///
/// Every method is one cdevsw entry point; none may block (the FUSE session
/// and the CUSE server each serve all callers from one thread, like a
/// non-sleeping d_ioctl).
pub trait DeviceBackend: Send + Sync + 'static {
    /// `d_open`: at most one opener per device (`EBUSY` otherwise).
    fn open(&self, device: DeviceKind) -> Result<(), DeviceErrno>;
    /// `d_close`: the opener went away (also when it was killed).
    fn close(&self, device: DeviceKind);
    /// `IOCHVVSSREAD`: the next queued request as a 64-byte device message.
    fn read_request(&self, device: DeviceKind) -> Result<[u8; 64], DeviceErrno>;
    /// `IOCHVVSSWRITE`: the opener's answer to the current request.
    fn write_answer(&self, device: DeviceKind, message: &[u8; 64]) -> Result<(), DeviceErrno>;
    /// `d_poll`: what the opener could do now.
    fn readiness(&self, device: DeviceKind) -> Readiness;
    /// Called once by the exposing layer so the backend can wake pollers.
    fn attach_waker(&self, waker: PollWaker);
}

/// Wakes every process polling a device; cheap to clone.
///
/// Until the exposing layer installs its wake function, waking is a no-op
/// (nobody can be polling a device that is not exposed yet).
type WakeFn = Box<dyn Fn(DeviceKind) + Send + Sync>;

#[derive(Clone, Default)]
pub struct PollWaker {
    wake: Arc<OnceLock<WakeFn>>,
}

impl fmt::Debug for PollWaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PollWaker")
            .field("installed", &self.wake.get().is_some())
            .finish()
    }
}

impl PollWaker {
    pub fn new(wake: impl Fn(DeviceKind) + Send + Sync + 'static) -> Self {
        let slot = OnceLock::new();
        // A fresh OnceLock accepts its first value.
        let _ = slot.set(Box::new(wake) as WakeFn);
        PollWaker {
            wake: Arc::new(slot),
        }
    }

    /// `selwakeup` for `device`.
    pub fn wake(&self, device: DeviceKind) {
        if let Some(wake) = self.wake.get() {
            wake(device);
        }
    }
}
