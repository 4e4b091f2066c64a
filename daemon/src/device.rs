//! The daemon's end of `/dev/hv_fsvss_dev`: poll, IOCHVVSSREAD,
//! IOCHVVSSWRITE, with the 64-byte [`DeviceMessage`] from `hv-vss-proto`.
//!
//! The device directory can be overridden (`-D dir` or the environment
//! variable `HV_VSS_DEVICE_DIR`) for testing: the simulator serves the
//! devices through FUSE.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use hv_vss_proto::{DeviceMessage, DeviceStatus, FS_DEVICE_NAME, ioctl};
use nix::errno::Errno;

/// Environment variable naming the device directory (testing only).
pub const DEVICE_DIR_ENV: &str = "HV_VSS_DEVICE_DIR";
/// Where the kernel creates the device.
pub const DEFAULT_DEVICE_DIR: &str = "/dev";

nix::ioctl_read_bad!(ioc_read, ioctl::READ, DeviceMessage);
nix::ioctl_write_ptr_bad!(ioc_write, ioctl::WRITE, DeviceMessage);

/// The request/reply channel to the kernel, as the device loop needs it.
pub trait Device {
    /// The descriptor to poll for POLLIN.
    fn as_fd(&self) -> BorrowedFd<'_>;
    /// Takes the oldest queued request; `None` when nothing is queued (the
    /// read is non-blocking: poll first).
    fn read_request(&mut self) -> std::io::Result<Option<DeviceMessage>>;
    /// Answers a request (op and msgid echoed, status set).
    fn write_reply(&mut self, reply: &DeviceMessage) -> std::io::Result<()>;
}

/// Opening the device failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "{0} is busy: another hv_vssd (or the base system's) already has it open; \
         stop it first (the device allows one opener)"
    )]
    Busy(PathBuf),
    #[error(
        "{0} does not exist: the Hyper-V VSS driver is not loaded or this is not a Hyper-V guest"
    )]
    Missing(PathBuf),
    #[error("cannot open {0}: permission denied (run hv_vssd as root)")]
    Permission(PathBuf),
    #[error("cannot open {path}: {source}")]
    Other {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The real character device (or the simulator's FUSE file).
#[derive(Debug)]
pub struct CharDevice {
    file: File,
}

/// The device directory: the `-D` flag, else the environment, else /dev.
pub fn device_dir(flag: Option<&str>) -> PathBuf {
    flag.map(PathBuf::from)
        .or_else(|| std::env::var_os(DEVICE_DIR_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DEVICE_DIR))
}

impl CharDevice {
    /// Opens `dir/hv_fsvss_dev` read-write, as the driver requires.
    pub fn open(dir: &Path) -> Result<Self, OpenError> {
        let path = dir.join(FS_DEVICE_NAME);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EBUSY) => OpenError::Busy(path.clone()),
                Some(libc::ENOENT) => OpenError::Missing(path.clone()),
                Some(libc::EACCES | libc::EPERM) => OpenError::Permission(path.clone()),
                _ => OpenError::Other {
                    path: path.clone(),
                    source: e,
                },
            })?;
        Ok(Self { file })
    }
}

impl Device for CharDevice {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    fn read_request(&mut self) -> std::io::Result<Option<DeviceMessage>> {
        let mut message = DeviceMessage::nothing_queued();
        // SAFETY: the descriptor is open; the request is _IOR with the size of
        // DeviceMessage, so the kernel writes exactly one DeviceMessage through
        // the valid, aligned pointer.
        unsafe { ioc_read(self.file.as_raw_fd(), &raw mut message) }
            .map_err(std::io::Error::from)?;
        // Status 1 on READ means "nothing queued" (a spurious wakeup).
        Ok(match message.status() {
            Ok(DeviceStatus::Success) => Some(message),
            _ => None,
        })
    }

    fn write_reply(&mut self, reply: &DeviceMessage) -> std::io::Result<()> {
        // SAFETY: the descriptor is open; the request is _IOW with the size of
        // DeviceMessage, so the kernel reads exactly one DeviceMessage from
        // the valid pointer.
        unsafe { ioc_write(self.file.as_raw_fd(), reply) }
            .map(drop)
            .map_err(|e: Errno| std::io::Error::from(e))
    }
}
