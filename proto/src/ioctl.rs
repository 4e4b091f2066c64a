//! Request numbers of the two device ioctls, in both encodings.
//!
//! FreeBSD and Linux pack direction, size, group and number into the request
//! word differently (and give "read" and "write" opposite direction bits), so
//! the same `_IOR('v', 2, 64)` is 0x40407602 on FreeBSD and 0x80407602 on
//! Linux. The daemon and apps use [`READ`] and [`WRITE`], which follow the
//! compile target; the simulator's FUSE devices, on Linux, see the Linux
//! numbers.

use core::mem::size_of;

use crate::device::DeviceMessage;

/// The ioctl group of both requests.
pub const GROUP: u8 = b'v';
/// IOCHVVSSREAD's number in [`GROUP`].
pub const READ_NUMBER: u8 = 2;
/// IOCHVVSSWRITE's number in [`GROUP`].
pub const WRITE_NUMBER: u8 = 3;

const FREEBSD_IOC_OUT: u32 = 0x4000_0000;
const FREEBSD_IOC_IN: u32 = 0x8000_0000;
const FREEBSD_IOCPARM_MASK: u32 = 0x1fff;

const LINUX_IOC_WRITE: u32 = 1;
const LINUX_IOC_READ: u32 = 2;
const LINUX_IOC_SIZEMASK: u32 = 0x3fff;

#[expect(
    clippy::cast_possible_truncation,
    reason = "the size field is masked, as C does"
)]
const fn freebsd_ioc(direction: u32, group: u8, number: u8, size: usize) -> u32 {
    direction | ((size as u32 & FREEBSD_IOCPARM_MASK) << 16) | (group as u32) << 8 | number as u32
}

#[expect(
    clippy::cast_possible_truncation,
    reason = "the size field is masked, as C does"
)]
const fn linux_ioc(direction: u32, group: u8, number: u8, size: usize) -> u32 {
    direction << 30
        | ((size as u32 & LINUX_IOC_SIZEMASK) << 16)
        | (group as u32) << 8
        | number as u32
}

/// FreeBSD's `_IOR(group, number, size)`: data flows kernel → user.
#[must_use]
pub const fn freebsd_ior(group: u8, number: u8, size: usize) -> u32 {
    freebsd_ioc(FREEBSD_IOC_OUT, group, number, size)
}

/// FreeBSD's `_IOW(group, number, size)`: data flows user → kernel.
#[must_use]
pub const fn freebsd_iow(group: u8, number: u8, size: usize) -> u32 {
    freebsd_ioc(FREEBSD_IOC_IN, group, number, size)
}

/// Linux's `_IOR(group, number, size)`.
#[must_use]
pub const fn linux_ior(group: u8, number: u8, size: usize) -> u32 {
    linux_ioc(LINUX_IOC_READ, group, number, size)
}

/// Linux's `_IOW(group, number, size)`.
#[must_use]
pub const fn linux_iow(group: u8, number: u8, size: usize) -> u32 {
    linux_ioc(LINUX_IOC_WRITE, group, number, size)
}

/// IOCHVVSSREAD on FreeBSD: 0x40407602.
pub const FREEBSD_READ: u32 = freebsd_ior(GROUP, READ_NUMBER, size_of::<DeviceMessage>());
/// IOCHVVSSWRITE on FreeBSD: 0x80407603.
pub const FREEBSD_WRITE: u32 = freebsd_iow(GROUP, WRITE_NUMBER, size_of::<DeviceMessage>());
/// IOCHVVSSREAD with Linux's encoding (the simulator): 0x80407602.
pub const LINUX_READ: u32 = linux_ior(GROUP, READ_NUMBER, size_of::<DeviceMessage>());
/// IOCHVVSSWRITE with Linux's encoding (the simulator): 0x40407603.
pub const LINUX_WRITE: u32 = linux_iow(GROUP, WRITE_NUMBER, size_of::<DeviceMessage>());

/// IOCHVVSSREAD for the target this is compiled for.
#[cfg(target_os = "freebsd")]
pub const READ: u32 = FREEBSD_READ;
/// IOCHVVSSWRITE for the target this is compiled for.
#[cfg(target_os = "freebsd")]
pub const WRITE: u32 = FREEBSD_WRITE;
/// IOCHVVSSREAD for the target this is compiled for.
#[cfg(not(target_os = "freebsd"))]
pub const READ: u32 = LINUX_READ;
/// IOCHVVSSWRITE for the target this is compiled for.
#[cfg(not(target_os = "freebsd"))]
pub const WRITE: u32 = LINUX_WRITE;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freebsd_numbers_match_hv_snapshot_h() {
        assert_eq!(FREEBSD_READ, 0x4040_7602);
        assert_eq!(FREEBSD_WRITE, 0x8040_7603);
    }

    #[test]
    fn linux_numbers_use_linux_direction_bits() {
        // Linux: _IOC_READ = 2, _IOC_WRITE = 1, shifted by 30.
        assert_eq!(LINUX_READ, 0x8040_7602);
        assert_eq!(LINUX_WRITE, 0x4040_7603);
    }

    #[test]
    fn known_ioctls_of_other_drivers_encode_alike() {
        // FreeBSD's UFSSUSPEND is _IOW('U', 1, fsid_t) with an 8-byte fsid_t.
        assert_eq!(freebsd_iow(b'U', 1, 8), 0x8008_5501);
        // Linux's FIFREEZE is _IOWR('X', 119, int); its _IOR sibling
        // FS_IOC_GETFLAGS is _IOR('f', 1, long) = 0x80086601.
        assert_eq!(linux_ior(b'f', 1, 8), 0x8008_6601);
    }
}
