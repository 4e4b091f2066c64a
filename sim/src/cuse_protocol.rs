//! The server side of FreeBSD's CUSE (character devices in userspace), as
//! the kernel module speaks it through `/dev/cuse`: the structures and
//! request numbers of sys/fs/cuse/cuse_ioctl.h, the command and error codes
//! of sys/fs/cuse/cuse_defs.h, and [`answer`], which turns one command
//! from the kernel into a call of a [`DeviceBackend`] entry point.
//!
//! Why the ioctls and not libcuse(3): libcuse opens `/dev/cuse` without
//! close-on-exec, so every process the simulator starts (the daemon under
//! test, its hooks, `hv_vss_app`) would inherit the server's descriptor,
//! and it signals its worker threads with SIGHUP (pthread_kill) when a
//! peer is interrupted, which ends a process that has no SIGHUP handler.
//! No crate binds either; the protocol is seven ioctls on one descriptor
//! (lib/libcuse/cuse_lib.c uses the same ones), written here once.
//!
//! This module is plain data and logic, compiled and unit-tested on every
//! platform with a fake peer; [`crate::cuse_devices`] (FreeBSD only) does
//! the ioctls. The layouts are those of an LP64 FreeBSD (amd64, arm64).

use std::os::raw::{c_int, c_ulong};

use hv_vss_proto::ioctl;

use crate::devices::{DeviceBackend, DeviceErrno, DeviceKind};

/// The ioctl group of `/dev/cuse`.
const GROUP: u8 = b'C';

/// Where the kernel puts an ioctl's argument for the server: the peer
/// pointer of a command is this offset into the client's ioctl buffer
/// (`CUSE_BUF_MIN_PTR`).
pub const BUF_MIN_PTR: usize = 0x10000;

/// `struct cuse_command`: one call of a client, handed to the server.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Command {
    /// The server's own `struct cuse_dev *` from [`CreateDev::dev`]; the
    /// simulator stores a key there, never a pointer.
    pub dev: usize,
    /// `CUSE_FFLAG_*` of the client's open file.
    pub fflags: c_ulong,
    pub per_file_handle: usize,
    /// Read/write: the peer's buffer; ioctl: where the argument is
    /// ([`BUF_MIN_PTR`] when the request has a size).
    pub data_pointer: usize,
    /// Read/write: the length; ioctl: the request number; poll: the
    /// `CUSE_POLL_*` events wanted.
    pub argument: c_ulong,
    /// One of [`CommandCode`].
    pub command: c_ulong,
}

/// `struct cuse_data_chunk`: a copy between the server and a peer.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataChunk {
    pub local_ptr: usize,
    pub peer_ptr: usize,
    pub length: c_ulong,
}

/// `struct cuse_create_dev`: a device node to create (`/dev/<devname>`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CreateDev {
    pub dev: usize,
    pub user_id: u32,
    pub group_id: u32,
    pub permissions: c_int,
    /// NUL-terminated; the kernel turns anything but `a-z A-Z 0-9 . _ /`
    /// into `_` (cuse_str_filter).
    pub devname: [u8; 80],
}

#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(size_of::<Command>() == 48);
    assert!(size_of::<DataChunk>() == 24);
    assert!(size_of::<CreateDev>() == 104);
};

const fn request(number: u32) -> c_ulong {
    number as c_ulong
}

/// `CUSE_IOCTL_GET_COMMAND`: wait for the next command.
pub const GET_COMMAND: c_ulong = request(ioctl::freebsd_ior(GROUP, 0, size_of::<Command>()));
/// `CUSE_IOCTL_WRITE_DATA`: copy server → peer.
pub const WRITE_DATA: c_ulong = request(ioctl::freebsd_iow(GROUP, 1, size_of::<DataChunk>()));
/// `CUSE_IOCTL_READ_DATA`: copy peer → server.
pub const READ_DATA: c_ulong = request(ioctl::freebsd_iow(GROUP, 2, size_of::<DataChunk>()));
/// `CUSE_IOCTL_SYNC_COMMAND`: the command's result (an `int`).
pub const SYNC_COMMAND: c_ulong = request(ioctl::freebsd_iow(GROUP, 3, size_of::<c_int>()));
/// `CUSE_IOCTL_CREATE_DEV`.
pub const CREATE_DEV: c_ulong = request(ioctl::freebsd_iow(GROUP, 8, size_of::<CreateDev>()));
/// `CUSE_IOCTL_DESTROY_DEV`: takes the `dev` value of [`CreateDev`].
pub const DESTROY_DEV: c_ulong = request(ioctl::freebsd_iow(GROUP, 9, size_of::<usize>()));
/// `CUSE_IOCTL_SELWAKEUP`: wake every poller of this server's devices.
pub const SELWAKEUP: c_ulong = request(ioctl::freebsd_iow(GROUP, 12, size_of::<c_int>()));

/// `CUSE_CMD_*` (cuse_defs.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandCode {
    Open,
    Close,
    Read,
    Write,
    Ioctl,
    Poll,
    Signal,
    Other(c_ulong),
}

impl CommandCode {
    pub fn of(command: &Command) -> CommandCode {
        match command.command {
            1 => CommandCode::Open,
            2 => CommandCode::Close,
            3 => CommandCode::Read,
            4 => CommandCode::Write,
            5 => CommandCode::Ioctl,
            6 => CommandCode::Poll,
            7 => CommandCode::Signal,
            other => CommandCode::Other(other),
        }
    }
}

/// `CUSE_ERR_*`: what a command returns on failure; the kernel turns each
/// into an errno for the client (cuse_convert_error in sys/fs/cuse/cuse.c).
pub const ERR_NONE: c_int = 0;
pub const ERR_BUSY: c_int = -1;
pub const ERR_WOULDBLOCK: c_int = -2;
pub const ERR_INVALID: c_int = -3;
pub const ERR_NO_MEMORY: c_int = -4;
pub const ERR_FAULT: c_int = -5;
pub const ERR_SIGNAL: c_int = -6;
/// Becomes ENXIO.
pub const ERR_OTHER: c_int = -7;

/// `CUSE_POLL_READ`, the only readiness the devices have.
pub const POLL_READ: c_int = 1;

/// The errno a client sees for a backend's error. CUSE can carry only its
/// own codes: EBUSY, EWOULDBLOCK, EINVAL, ENOMEM, EFAULT and EINTR pass
/// unchanged, anything else arrives as ENXIO.
pub fn error_code(errno: DeviceErrno) -> c_int {
    match errno.0 {
        libc::EBUSY => ERR_BUSY,
        libc::EWOULDBLOCK => ERR_WOULDBLOCK,
        libc::EINVAL => ERR_INVALID,
        libc::ENOMEM => ERR_NO_MEMORY,
        libc::EFAULT => ERR_FAULT,
        libc::EINTR => ERR_SIGNAL,
        _ => ERR_OTHER,
    }
}

/// The other side of a command's data pointers (the calling process):
/// `CUSE_IOCTL_WRITE_DATA` and `CUSE_IOCTL_READ_DATA` on the real server.
pub trait Peer {
    /// Copies `bytes` to the peer's `peer_ptr`.
    fn copy_out(&self, bytes: &[u8], peer_ptr: usize) -> Result<(), DeviceErrno>;
    /// Fills `buffer` from the peer's `peer_ptr`.
    fn copy_in(&self, peer_ptr: usize, buffer: &mut [u8]) -> Result<(), DeviceErrno>;
}

const MESSAGE_LEN: usize = hv_vss_proto::device::DEVICE_MESSAGE_LEN;

/// Carries out one command for `device` on `backend`; the result is what
/// the server passes to `CUSE_IOCTL_SYNC_COMMAND` (0 or a `CUSE_ERR_*`;
/// for poll, a `CUSE_POLL_*` mask).
///
/// The ioctls are the FreeBSD encodings of IOCHVVSSREAD/IOCHVVSSWRITE
/// (`ioctl::FREEBSD_*`): CUSE passes the caller's request number through
/// unchanged. The real devices have no read or write entry point (devfs
/// answers ENODEV); CUSE cannot say ENODEV, so those get ENXIO, as does an
/// unknown ioctl (the driver's ENOTTY).
pub fn answer(
    command: &Command,
    device: DeviceKind,
    backend: &dyn DeviceBackend,
    peer: &dyn Peer,
) -> c_int {
    let result = match CommandCode::of(command) {
        CommandCode::Open => backend.open(device).map(|()| ERR_NONE),
        CommandCode::Close => {
            backend.close(device);
            Ok(ERR_NONE)
        }
        CommandCode::Ioctl => ioctl(command, device, backend, peer),
        CommandCode::Poll => {
            let wanted = c_int::try_from(command.argument).unwrap_or(0);
            let readable = backend.readiness(device).readable;
            Ok(if readable { wanted & POLL_READ } else { 0 })
        }
        // Nothing here blocks, so there is no call to interrupt.
        CommandCode::Signal => Ok(ERR_NONE),
        CommandCode::Read | CommandCode::Write | CommandCode::Other(_) => Ok(ERR_OTHER),
    };
    result.unwrap_or_else(error_code)
}

fn ioctl(
    command: &Command,
    device: DeviceKind,
    backend: &dyn DeviceBackend,
    peer: &dyn Peer,
) -> Result<c_int, DeviceErrno> {
    let request = u32::try_from(command.argument).map_err(|_| DeviceErrno(libc::ENXIO))?;
    if request == ioctl::FREEBSD_READ {
        let message = backend.read_request(device)?;
        peer.copy_out(&message, command.data_pointer)?;
        Ok(ERR_NONE)
    } else if request == ioctl::FREEBSD_WRITE {
        let mut message = [0u8; MESSAGE_LEN];
        peer.copy_in(command.data_pointer, &mut message)?;
        backend.write_answer(device, &message)?;
        Ok(ERR_NONE)
    } else {
        Ok(ERR_OTHER)
    }
}

/// The `devname` field for `name`, or `None` if it does not fit (with
/// its NUL) or has a character CUSE would replace.
pub fn device_name(name: &str) -> Option<[u8; 80]> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/');
    let mut field = [0u8; 80];
    if name.is_empty() || name.len() >= field.len() || !name.bytes().all(allowed) {
        return None;
    }
    field[..name.len()].copy_from_slice(name.as_bytes());
    Some(field)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;
    use std::sync::Mutex;

    use hv_vss_proto::{DeviceMessage, DeviceOperation};
    use zerocopy::IntoBytes;

    use super::*;
    use crate::scripted::ScriptedDevices;

    /// The calling process's memory, as the kernel's ioctl buffer.
    #[derive(Default)]
    struct FakePeer {
        memory: Mutex<HashMap<usize, Vec<u8>>>,
    }

    impl Peer for FakePeer {
        fn copy_out(&self, bytes: &[u8], peer_ptr: usize) -> Result<(), DeviceErrno> {
            self.memory.lock().unwrap().insert(peer_ptr, bytes.to_vec());
            Ok(())
        }

        fn copy_in(&self, peer_ptr: usize, buffer: &mut [u8]) -> Result<(), DeviceErrno> {
            let memory = self.memory.lock().unwrap();
            let bytes = memory.get(&peer_ptr).ok_or(DeviceErrno(libc::EFAULT))?;
            buffer.copy_from_slice(bytes.get(..buffer.len()).ok_or(DeviceErrno(libc::EFAULT))?);
            Ok(())
        }
    }

    fn command(code: c_ulong, argument: c_ulong) -> Command {
        Command {
            dev: 1,
            command: code,
            argument,
            data_pointer: BUF_MIN_PTR,
            ..Command::default()
        }
    }

    const OPEN: c_ulong = 1;
    const CLOSE: c_ulong = 2;
    const READ: c_ulong = 3;
    const IOCTL: c_ulong = 5;
    const POLL: c_ulong = 6;

    #[test]
    fn request_numbers_are_those_of_cuse_ioctl_h() {
        // _IOR('C', 0, struct cuse_command) with the 48-byte LP64 struct, etc.
        assert_eq!(GET_COMMAND, 0x4030_4300);
        assert_eq!(WRITE_DATA, 0x8018_4301);
        assert_eq!(READ_DATA, 0x8018_4302);
        assert_eq!(SYNC_COMMAND, 0x8004_4303);
        assert_eq!(CREATE_DEV, 0x8068_4308);
        assert_eq!(DESTROY_DEV, 0x8008_4309);
        assert_eq!(SELWAKEUP, 0x8004_430c);
    }

    #[test]
    fn a_second_open_is_busy_until_the_first_closes() {
        let backend = ScriptedDevices::default();
        let peer = FakePeer::default();
        let fs = DeviceKind::Fs;
        assert_eq!(answer(&command(OPEN, 0), fs, &backend, &peer), ERR_NONE);
        assert_eq!(answer(&command(OPEN, 0), fs, &backend, &peer), ERR_BUSY);
        assert_eq!(
            answer(&command(OPEN, 0), DeviceKind::App, &backend, &peer),
            ERR_NONE,
            "each device has its own opener"
        );
        assert_eq!(answer(&command(CLOSE, 0), fs, &backend, &peer), ERR_NONE);
        assert_eq!(answer(&command(OPEN, 0), fs, &backend, &peer), ERR_NONE);
    }

    #[test]
    fn the_freebsd_read_ioctl_copies_the_queued_request_to_the_caller() {
        let backend = ScriptedDevices::default();
        let peer = FakePeer::default();
        let request = DeviceMessage::new(DeviceOperation::Freeze, 77);
        backend.queue(DeviceKind::Fs, request);
        let read = command(IOCTL, c_ulong::from(ioctl::FREEBSD_READ));
        assert_eq!(answer(&read, DeviceKind::Fs, &backend, &peer), ERR_NONE);
        let copied = peer.memory.lock().unwrap()[&BUF_MIN_PTR].clone();
        assert_eq!(copied, request.as_bytes());
    }

    #[test]
    fn the_freebsd_write_ioctl_hands_the_callers_answer_to_the_backend() {
        let backend = ScriptedDevices::default();
        let peer = FakePeer::default();
        let reply = DeviceMessage::new(DeviceOperation::Thaw, 9);
        peer.copy_out(reply.as_bytes(), BUF_MIN_PTR).unwrap();
        let write = command(IOCTL, c_ulong::from(ioctl::FREEBSD_WRITE));
        assert_eq!(answer(&write, DeviceKind::App, &backend, &peer), ERR_NONE);
        assert_eq!(backend.answers(), vec![(DeviceKind::App, reply)]);
    }

    #[test]
    fn linux_encoded_and_unknown_ioctls_and_plain_reads_are_refused() {
        let backend = ScriptedDevices::default();
        let peer = FakePeer::default();
        backend.queue(
            DeviceKind::Fs,
            DeviceMessage::new(DeviceOperation::Check, 1),
        );
        for request in [ioctl::LINUX_READ, ioctl::LINUX_WRITE, 0x2000_7600] {
            let call = command(IOCTL, c_ulong::from(request));
            assert_eq!(
                answer(&call, DeviceKind::Fs, &backend, &peer),
                ERR_OTHER,
                "{request:#x}"
            );
        }
        assert_eq!(
            answer(&command(READ, 64), DeviceKind::Fs, &backend, &peer),
            ERR_OTHER
        );
        assert!(peer.memory.lock().unwrap().is_empty(), "nothing was copied");
        assert!(
            backend.readiness(DeviceKind::Fs).readable,
            "the request is still queued"
        );
    }

    #[test]
    fn poll_reports_readable_only_when_asked_and_a_request_is_queued() {
        let backend = ScriptedDevices::default();
        let peer = FakePeer::default();
        let poll = |wanted| answer(&command(POLL, wanted), DeviceKind::Fs, &backend, &peer);
        assert_eq!(poll(1), 0, "nothing queued");
        backend.queue(
            DeviceKind::Fs,
            DeviceMessage::new(DeviceOperation::Check, 1),
        );
        assert_eq!(poll(1), POLL_READ);
        assert_eq!(poll(2), 0, "only write readiness asked");
    }

    #[test]
    fn a_copy_the_kernel_refuses_is_a_fault_for_the_caller() {
        let backend = ScriptedDevices::default();
        let peer = FakePeer::default();
        // Nothing at the argument pointer: the copy-in fails.
        let write = command(IOCTL, c_ulong::from(ioctl::FREEBSD_WRITE));
        assert_eq!(answer(&write, DeviceKind::Fs, &backend, &peer), ERR_FAULT);
        assert!(backend.answers().is_empty());
    }

    #[test]
    fn device_names_are_checked_against_cuse_filter() {
        assert!(device_name("hvvsssim/12.3/hv_fsvss_dev").is_some());
        assert!(
            device_name("hv-vss-sim/x").is_none(),
            "CUSE turns '-' into '_'"
        );
        assert!(
            device_name(&"a".repeat(80)).is_none(),
            "no room for the NUL"
        );
        assert!(device_name("").is_none());
    }
}
