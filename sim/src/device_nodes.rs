//! Where processes find the simulated devices, chosen here once per
//! platform: files in a FUSE mount on Linux ([`crate::fuse_devices`]), real
//! character devices made with CUSE on FreeBSD ([`crate::cuse_devices`]).
//! Both expose the same [`DeviceMount`]: `new(dir, backend)`, `dir()`,
//! `path(device)`, `abort()`, and cleanup on drop.

#[cfg(target_os = "freebsd")]
pub use crate::cuse_devices::{DeviceMount, MountError};
#[cfg(target_os = "linux")]
pub use crate::fuse_devices::{DeviceMount, MountError};
