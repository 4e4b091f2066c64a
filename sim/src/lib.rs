//! Hyper-V host simulator for hyperv-vss.
//!
//! Nobody can run Hyper-V here, so this crate brings the host to the code:
//! - [`kernel`]: the real kernel engine from `kmod/`, driven as the FreeBSD
//!   glue drives it (one mutex, a timer thread for the deadline);
//! - [`devices`] and [`fuse_devices`]: the engine's two character devices,
//!   `hv_fsvss_dev` and `hv_appvss_dev`, as files in a FUSE mount with real
//!   `open`/`ioctl`/`poll` semantics ([`scripted`]: a hand-driven backend
//!   for testing device clients without the engine);
//! - [`host`] and [`script`]: the Hyper-V host's side of the VSS channel;
//! - [`loopfs`]: sparse loop-mounted ext4/xfs filesystems for real freezes,
//!   cleaned up in every path;
//! - [`daemon`] and [`binaries`]: the real `hv_vssd` as a child
//!   process confined to a scratch directory;
//! - [`simulation`] and [`backup`]: all of the above together, and the
//!   `hv-vss-sim backup` demo.
#![cfg(target_os = "linux")]

pub mod backup;
pub mod binaries;
pub mod daemon;
pub mod devices;
pub mod environment;
pub mod fuse_devices;
pub mod host;
pub mod kernel;
pub mod loopfs;
pub mod script;
pub mod scripted;
pub mod simulation;
