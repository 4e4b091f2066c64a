//! `LD_PRELOAD` shim for `hv-vss-bench`: records when a process freezes and
//! thaws filesystems, so the benchmark can measure how long filesystems stay
//! frozen inside programs it cannot instrument (`hv_vssd`, `qemu-ga`).
//!
//! It interposes glibc's `ioctl`. Calls other than FIFREEZE/FITHAW and the
//! VSS device's READ/WRITE (Linux encoding, as the simulator's devices use)
//! go straight to the real `ioctl`. For those four it reads
//! CLOCK_MONOTONIC before and after the real call and appends one 32-byte
//! record to the file named by `HV_VSS_BENCH_PROBE_LOG` (no variable: no
//! records). The record layout, little-endian, is read back by
//! `hv-vss-bench` (`bench/src/probe.rs`):
//!
//! | offset | type | field |
//! |---|---|---|
//! | 0 | u32 | 1 = FIFREEZE, 2 = FITHAW, 3 = device READ, 4 = device WRITE |
//! | 4 | i32 | return value of the real ioctl |
//! | 8 | i32 | errno after the call (0 on success) |
//! | 12 | u32 | pid |
//! | 16 | u64 | CLOCK_MONOTONIC ns before the call |
//! | 24 | u64 | CLOCK_MONOTONIC ns after the call |
//!
//! The cost per recorded call is two clock reads and one `write(2)` of 32
//! bytes to a file outside the frozen filesystems (about a microsecond).
#![cfg(target_os = "linux")]

use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use libc::{c_int, c_ulong, c_void};

/// linux/fs.h: FIFREEZE = _IOWR('X', 119, int), FITHAW = _IOWR('X', 120, int).
/// Spelled out because this shim must not link anything that calls `ioctl`.
const FIFREEZE: c_ulong = 0xC004_5877;
const FITHAW: c_ulong = 0xC004_5878;

const KIND_FREEZE: u32 = 1;
const KIND_THAW: u32 = 2;
const KIND_DEVICE_READ: u32 = 3;
const KIND_DEVICE_WRITE: u32 = 4;

const DEVICE_READ: c_ulong = hv_vss_proto::ioctl::LINUX_READ as c_ulong;
const DEVICE_WRITE: c_ulong = hv_vss_proto::ioctl::LINUX_WRITE as c_ulong;

/// The environment variable naming the record file.
const LOG_VAR: &core::ffi::CStr = c"HV_VSS_BENCH_PROBE_LOG";

type IoctlFn = unsafe extern "C" fn(c_int, c_ulong, *mut c_void) -> c_int;

/// The next `ioctl` in the lookup order (glibc's), resolved on first use.
static REAL_IOCTL: AtomicUsize = AtomicUsize::new(0);
/// -2: not opened yet; -1: no log wanted (or it cannot be opened); else fd.
static LOG_FD: AtomicI32 = AtomicI32::new(-2);

fn real_ioctl() -> Option<IoctlFn> {
    let mut address = REAL_IOCTL.load(Ordering::Acquire);
    if address == 0 {
        // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name is always
        // allowed; it returns null or the address of the next `ioctl`.
        address = unsafe { libc::dlsym(libc::RTLD_NEXT, c"ioctl".as_ptr()) } as usize;
        REAL_IOCTL.store(address, Ordering::Release);
    }
    if address == 0 {
        return None;
    }
    // SAFETY: `address` is glibc's `ioctl`, whose ABI for a call with one
    // pointer-sized variadic argument is the same as this fixed signature on
    // x86-64 and aarch64 (variadic integer arguments go in the same
    // registers).
    Some(unsafe { core::mem::transmute::<usize, IoctlFn>(address) })
}

fn log_fd() -> c_int {
    let fd = LOG_FD.load(Ordering::Acquire);
    if fd != -2 {
        return fd;
    }
    // SAFETY: getenv with a NUL-terminated name; the result is null or a
    // NUL-terminated string that stays valid while we use it (nobody in the
    // probed programs calls setenv while freezing).
    let path = unsafe { libc::getenv(LOG_VAR.as_ptr()) };
    let opened = if path.is_null() {
        -1
    } else {
        // SAFETY: `path` is a valid C string (above); open has no other
        // preconditions.
        unsafe {
            libc::open(
                path,
                libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC,
                0o600,
            )
        }
        .max(-1)
    };
    match LOG_FD.compare_exchange(-2, opened, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => opened,
        Err(winner) => {
            if opened >= 0 {
                // SAFETY: `opened` is our own descriptor, unused elsewhere.
                unsafe { libc::close(opened) };
            }
            winner
        }
    }
}

fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut now) };
    u64::try_from(now.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(now.tv_nsec).unwrap_or(0)
}

fn errno_location() -> *mut c_int {
    // SAFETY: __errno_location has no preconditions and returns the
    // calling thread's errno slot.
    unsafe { libc::__errno_location() }
}

/// The interposed `ioctl`.
///
/// # Safety
///
/// Same contract as ioctl(2): `arg` must be what `request` expects.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioctl(fd: c_int, request: c_ulong, arg: *mut c_void) -> c_int {
    let Some(real) = real_ioctl() else {
        // SAFETY: writing the calling thread's errno.
        unsafe { *errno_location() = libc::ENOSYS };
        return -1;
    };
    let kind = match request {
        FIFREEZE => KIND_FREEZE,
        FITHAW => KIND_THAW,
        DEVICE_READ => KIND_DEVICE_READ,
        DEVICE_WRITE => KIND_DEVICE_WRITE,
        // SAFETY: forwarded unchanged; the caller upholds ioctl's contract.
        _ => return unsafe { real(fd, request, arg) },
    };
    let before = monotonic_ns();
    // SAFETY: forwarded unchanged; the caller upholds ioctl's contract.
    let ret = unsafe { real(fd, request, arg) };
    let after = monotonic_ns();
    let errno = if ret == 0 {
        0
    } else {
        // SAFETY: reading the calling thread's errno.
        unsafe { *errno_location() }
    };
    let log = log_fd();
    if log >= 0 {
        let mut record = [0u8; 32];
        record[0..4].copy_from_slice(&kind.to_le_bytes());
        record[4..8].copy_from_slice(&ret.to_le_bytes());
        record[8..12].copy_from_slice(&errno.to_le_bytes());
        record[12..16].copy_from_slice(&std::process::id().to_le_bytes());
        record[16..24].copy_from_slice(&before.to_le_bytes());
        record[24..32].copy_from_slice(&after.to_le_bytes());
        // SAFETY: writes 32 bytes from a live buffer to our own descriptor;
        // a short or failed write only loses a record.
        let _ = unsafe { libc::write(log, record.as_ptr().cast(), record.len()) };
        // write(2) may have changed errno; the caller must see the ioctl's.
        // SAFETY: writing the calling thread's errno.
        unsafe { *errno_location() = errno };
    }
    ret
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    /// Calls through the shim (the test binary's own `ioctl`) and checks the
    /// record and that the caller still sees the ioctl's errno.
    #[test]
    fn records_fithaw_and_keeps_errno_and_ignores_other_requests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("probe.log");
        // SAFETY: the only test in this binary; nothing reads the
        // environment concurrently.
        unsafe { std::env::set_var("HV_VSS_BENCH_PROBE_LOG", &log) };
        let target = std::fs::File::open(dir.path()).expect("open dir");
        let mut unused: c_int = 0;
        // SAFETY: FITHAW on an open directory that is not frozen: fails with
        // EINVAL and changes nothing; the int argument is valid.
        let ret = unsafe { ioctl(target.as_raw_fd(), FITHAW, (&raw mut unused).cast()) };
        let errno = std::io::Error::last_os_error().raw_os_error();
        assert_eq!(ret, -1);
        assert_eq!(errno, Some(libc::EINVAL));
        let mut pending: c_int = 0;
        // SAFETY: FIONREAD on a directory fails (ENOTTY) without effect; it
        // must not be recorded.
        let _ = unsafe {
            ioctl(
                target.as_raw_fd(),
                libc::FIONREAD as c_ulong,
                (&raw mut pending).cast(),
            )
        };
        let bytes = std::fs::read(&log).expect("probe log written");
        assert_eq!(bytes.len(), 32, "exactly one record");
        assert_eq!(&bytes[0..4], &KIND_THAW.to_le_bytes());
        assert_eq!(&bytes[4..8], &(-1i32).to_le_bytes());
        assert_eq!(&bytes[8..12], &libc::EINVAL.to_le_bytes());
        let start = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
        let end = u64::from_le_bytes(bytes[24..32].try_into().expect("8 bytes"));
        assert!(start > 0 && end >= start);
    }
}
