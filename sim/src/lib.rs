//! Hyper-V host simulator for hyperv-vss.
//!
//! Nobody can run Hyper-V here, so this crate brings the host to the code:
//! - [`kernel`]: the real kernel engine from `kmod/`, driven as the FreeBSD
//!   glue drives it (one mutex, a timer thread for the deadline);
//! - [`devices`] and [`device_nodes`]: the engine's two character devices,
//!   `hv_fsvss_dev` and `hv_appvss_dev`, with real `open`/`ioctl`/`poll`
//!   semantics: files in a FUSE mount on Linux ([`fuse_devices`]), character
//!   devices made with CUSE on FreeBSD ([`cuse_devices`], over
//!   [`cuse_protocol`]); [`scripted`]: a hand-driven backend for testing
//!   device clients without the engine;
//! - [`host`] and [`script`]: the Hyper-V host's side of the VSS channel;
//! - [`loopfs`]: real filesystems to freeze (loop-mounted ext4/xfs on
//!   Linux; md(4)-backed UFS2, ZFS, read-only and nullfs on FreeBSD),
//!   cleaned up in every path;
//! - [`daemon`] and [`binaries`]: the real `hv_vssd` as a child
//!   process confined to a scratch directory;
//! - [`simulation`] and [`backup`]: all of the above together, and the
//!   `hv-vss-sim backup` demo.
#![cfg(any(target_os = "linux", target_os = "freebsd"))]

pub mod backup;
pub mod binaries;
#[cfg(target_os = "freebsd")]
pub mod cuse_devices;
pub mod cuse_protocol;
pub mod daemon;
pub mod device_nodes;
pub mod devices;
pub mod environment;
#[cfg(target_os = "linux")]
pub mod fuse_devices;
pub mod host;
pub mod kernel;
pub mod loopfs;
pub mod script;
pub mod scripted;
pub mod simulation;
