//! Take part in Hyper-V VSS backups as an application.
//!
//! The kernel module tells registered applications through
//! `/dev/hv_appvss_dev` before it freezes the filesystems (CHECK, FREEZE)
//! and after it thaws them (THAW), so that a database can flush and pause
//! writes for an application-consistent snapshot. An application holds the
//! device open (one opener at a time), waits for a request, does its work
//! and answers within the kernel's deadline (15 s for the whole chain):
//!
//! ```no_run
//! use hv_vss_app::{AppDevice, Outcome};
//! use std::time::Duration;
//!
//! let device = AppDevice::open(AppDevice::DEFAULT_PATH.as_ref())?;
//! loop {
//!     if let Some(request) = device.wait(Some(Duration::from_secs(1)))? {
//!         // ... flush on request.operation() == Freeze, resume on Thaw ...
//!         device.answer(&request, Outcome::Success)?;
//!     }
//! }
//! # Ok::<(), hv_vss_app::AppError>(())
//! ```
//!
//! The protocol is the FreeBSD base driver's (`hv_snapshot.h`), so programs
//! written against it keep working with hyperv-vss's module and vice versa.

pub mod command;

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hv_vss_proto::{APP_DEVICE_NAME, DeviceMessage, DeviceOperation, DeviceStatus, ioctl};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};

// IOCHVVSSREAD / IOCHVVSSWRITE, encoded for the platform we are built for.
nix::ioctl_read_bad!(ioc_read_request, ioctl::READ, DeviceMessage);
nix::ioctl_write_ptr_bad!(ioc_write_answer, ioctl::WRITE, DeviceMessage);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(
        "{path} is already open by another application (only one may register); \
         stop the other hv_vss_app or program first"
    )]
    Busy { path: PathBuf },
    #[error(
        "{path} does not exist: the Hyper-V VSS kernel module is not loaded or this is not \
         a Hyper-V guest (kldload hv_vss / check `kldstat`)"
    )]
    NoDevice { path: PathBuf },
    #[error("permission denied opening {path}: the device is root:wheel 0640; run as root")]
    Permission { path: PathBuf },
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{call} on {path} failed: {errno}")]
    Device {
        call: &'static str,
        path: PathBuf,
        errno: Errno,
    },
    #[error("the kernel sent an unknown operation {opt} (msgid {msgid}); answering failure")]
    UnknownOperation { opt: u32, msgid: u64 },
}

/// A request from the kernel, to be answered with [`AppDevice::answer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    operation: DeviceOperation,
    message: DeviceMessage,
}

impl Request {
    /// CHECK (can you quiesce?), FREEZE or THAW.
    pub fn operation(&self) -> DeviceOperation {
        self.operation
    }

    /// The kernel's id for this request; the answer must carry it back.
    pub fn msgid(&self) -> u64 {
        self.message.msgid()
    }
}

/// What the application tells the kernel about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The backup fails; on FREEZE the kernel does not freeze filesystems.
    Failure,
}

impl From<Outcome> for DeviceStatus {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Success => DeviceStatus::Success,
            Outcome::Failure => DeviceStatus::Fail,
        }
    }
}

/// The open application device. Closing it (drop, or process exit)
/// unregisters the application.
#[derive(Debug)]
pub struct AppDevice {
    file: File,
    path: PathBuf,
}

impl AppDevice {
    pub const DEFAULT_PATH: &'static str = "/dev/hv_appvss_dev";

    /// Opens the device at `path` (normally [`Self::DEFAULT_PATH`]).
    pub fn open(path: &Path) -> Result<Self, AppError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| {
                let path = path.to_owned();
                match source.raw_os_error() {
                    Some(libc::EBUSY) => AppError::Busy { path },
                    Some(libc::ENOENT) => AppError::NoDevice { path },
                    Some(libc::EACCES | libc::EPERM) => AppError::Permission { path },
                    _ => AppError::Open { path, source },
                }
            })?;
        Ok(AppDevice {
            file,
            path: path.to_owned(),
        })
    }

    /// Opens `hv_appvss_dev` inside `dir` (the simulator's device directory).
    pub fn open_in(dir: &Path) -> Result<Self, AppError> {
        Self::open(&dir.join(APP_DEVICE_NAME))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits up to `timeout` (forever if `None`) for a request.
    ///
    /// Returns `Ok(None)` on timeout, and when a signal interrupted the
    /// wait, so callers can check their shutdown flag.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<Option<Request>, AppError> {
        let timeout = match timeout {
            None => PollTimeout::NONE,
            Some(t) => PollTimeout::try_from(t).unwrap_or(PollTimeout::MAX),
        };
        let mut fds = [PollFd::new(self.file.as_fd(), PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, timeout) {
            Ok(0) | Err(Errno::EINTR) => return Ok(None),
            Ok(_) => {}
            Err(errno) => return Err(self.device_error("poll", errno)),
        }
        self.read_request()
    }

    /// Reads the next queued request without waiting (`None`: nothing queued).
    pub fn read_request(&self) -> Result<Option<Request>, AppError> {
        let mut message = DeviceMessage::nothing_queued();
        // SAFETY: the fd is open for the lifetime of `self`, and `message` is
        // a valid, writable 64-byte `hv_vss_opt_msg` for the kernel to fill.
        unsafe { ioc_read_request(self.file.as_raw_fd(), &raw mut message) }
            .map_err(|errno| self.device_error("IOCHVVSSREAD", errno))?;
        match message.operation() {
            // "Nothing queued": the driver reports NONE with status fail.
            Ok(DeviceOperation::None) => Ok(None),
            Ok(operation) => Ok(Some(Request { operation, message })),
            Err(_) => {
                // Answer failure so the kernel's chain is not left waiting,
                // then report it.
                let unknown = Request {
                    operation: DeviceOperation::None,
                    message,
                };
                self.answer(&unknown, Outcome::Failure)?;
                Err(AppError::UnknownOperation {
                    opt: message.opt,
                    msgid: message.msgid(),
                })
            }
        }
    }

    /// Answers `request`.
    pub fn answer(&self, request: &Request, outcome: Outcome) -> Result<(), AppError> {
        let answer = request.message.with_status(outcome.into());
        // SAFETY: the fd is open, and `answer` is a valid 64-byte message
        // the kernel only reads.
        unsafe { ioc_write_answer(self.file.as_raw_fd(), &raw const answer) }
            .map(drop)
            .map_err(|errno| self.device_error("IOCHVVSSWRITE", errno))
    }

    fn device_error(&self, call: &'static str, errno: Errno) -> AppError {
        AppError::Device {
            call,
            path: self.path.clone(),
            errno,
        }
    }
}
