//! The C ABI exercised as the glue calls it, on the host: these tests play
//! the C side, including the `hvvss_glue_*` callbacks (recorded per test
//! through `ctx`).
#![allow(clippy::unwrap_used)]

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::ffi::{CStr, c_char, c_int, c_void};
use std::vec::Vec;

use hv_vss_kmod::proto::ioctl::{FREEBSD_READ, FREEBSD_WRITE, LINUX_READ};
use hv_vss_kmod::proto::{
    DeviceMessage, DeviceOperation, DeviceStatus, HostOperation, HostStatus, build_vss_request,
    parse_host_reply,
};
use zerocopy::{FromBytes, IntoBytes};

use super::*;

/// What the glue was asked to do.
#[derive(Default)]
struct Calls {
    sent: Vec<(u64, Vec<u8>)>,
    woken: Vec<c_int>,
    armed: Option<u64>,
    log: Vec<(c_int, String)>,
}

#[unsafe(no_mangle)]
extern "C" fn hvvss_glue_send(ctx: *mut c_void, xid: u64, reply: *const u8, len: usize) {
    // SAFETY: ctx is the test's Calls; reply/len come from the engine.
    let (calls, reply) = unsafe {
        (
            &mut *ctx.cast::<Calls>(),
            core::slice::from_raw_parts(reply, len),
        )
    };
    calls.sent.push((xid, reply.to_vec()));
}

#[unsafe(no_mangle)]
extern "C" fn hvvss_glue_wake(ctx: *mut c_void, device: c_int) {
    // SAFETY: ctx is the test's Calls.
    unsafe { &mut *ctx.cast::<Calls>() }.woken.push(device);
}

#[unsafe(no_mangle)]
extern "C" fn hvvss_glue_timer_arm(ctx: *mut c_void, at_ms: u64) {
    // SAFETY: ctx is the test's Calls.
    unsafe { &mut *ctx.cast::<Calls>() }.armed = Some(at_ms);
}

#[unsafe(no_mangle)]
extern "C" fn hvvss_glue_timer_cancel(ctx: *mut c_void) {
    // SAFETY: ctx is the test's Calls.
    unsafe { &mut *ctx.cast::<Calls>() }.armed = None;
}

#[unsafe(no_mangle)]
extern "C" fn hvvss_glue_log(ctx: *mut c_void, level: c_int, line: *const c_char) {
    // SAFETY: ctx is the test's Calls; line is NUL-terminated.
    let (calls, line) = unsafe { (&mut *ctx.cast::<Calls>(), CStr::from_ptr(line)) };
    calls.log.push((level, line.to_str().unwrap().to_owned()));
}

/// Engine memory as the glue allocates it (zeroed, size and alignment
/// from the ABI), initialised with the default timeouts.
struct Owned(*mut Engine, Layout);

impl Owned {
    fn new() -> Self {
        let layout = Layout::from_size_align(hvvss_engine_size(), hvvss_engine_align()).unwrap();
        // SAFETY: non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        #[expect(
            clippy::cast_ptr_alignment,
            reason = "the layout has the engine's alignment"
        )]
        let engine = raw.cast::<Engine>();
        assert!(!engine.is_null());
        // SAFETY: fresh allocation of the right size and alignment.
        unsafe { hvvss_engine_init(engine, 15_000, 5_000, 7) };
        Self(engine, layout)
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.0.cast(), self.1) }
    }
}

fn ctx(calls: &mut Calls) -> *mut c_void {
    core::ptr::from_mut(calls).cast()
}

fn freeze_packet() -> Vec<u8> {
    let mut packet = vec![0; 40];
    build_vss_request(&mut packet, HostOperation::Freeze, 0).unwrap();
    packet
}

fn counter(engine: &Owned, name: &str) -> u64 {
    let index = Counters::NAMES.iter().position(|n| *n == name).unwrap();
    // SAFETY: initialised engine.
    unsafe { hvvss_engine_counter(engine.0, c_int::try_from(index).unwrap()) }
}

#[test]
fn freeze_round_trip_through_the_c_abi() {
    let engine = Owned::new();
    let mut calls = Calls::default();
    let c = ctx(&mut calls);
    let packet = freeze_packet();
    // SAFETY: initialised engine; buffers valid for their lengths.
    unsafe {
        assert_eq!(hvvss_engine_open(engine.0, 0), HVVSS_OK);
        assert_eq!(hvvss_engine_open(engine.0, 0), HVVSS_BUSY);
        hvvss_engine_host_packet(engine.0, c, packet.as_ptr(), packet.len(), 0xabc, 1_000);
        assert_eq!(hvvss_engine_readable(engine.0, 0), 1);
        // IOCHVVSSREAD with FreeBSD's request number, into the ioctl buffer.
        let mut data = [0xffu8; 64];
        let read = hvvss_engine_ioctl(
            engine.0,
            c,
            0,
            c_ulong::from(FREEBSD_READ),
            data.as_mut_ptr(),
            1_001,
        );
        assert_eq!(read, HVVSS_OK);
        let message = DeviceMessage::read_from_bytes(&data).unwrap();
        assert_eq!(message.operation(), Ok(DeviceOperation::Freeze));
        assert_eq!(hvvss_engine_readable(engine.0, 0), 0);
        // IOCHVVSSWRITE answers it; the host gets its reply.
        data.copy_from_slice(message.with_status(DeviceStatus::Success).as_bytes());
        let write = hvvss_engine_ioctl(
            engine.0,
            c,
            0,
            c_ulong::from(FREEBSD_WRITE),
            data.as_mut_ptr(),
            1_002,
        );
        assert_eq!(write, HVVSS_OK);
    }
    let calls = unsafe_calls(c);
    assert_eq!(calls.woken, [0]);
    assert_eq!(calls.armed, None, "timer left armed");
    assert_eq!(calls.sent.len(), 1);
    assert_eq!(calls.sent[0].0, 0xabc);
    let reply = parse_host_reply(&calls.sent[0].1).unwrap();
    assert_eq!(reply.status(), Ok(HostStatus::Ok));
    assert!(
        calls.log.iter().any(|(_, line)| line == "FREEZE started"),
        "{:?}",
        calls.log
    );
}

/// The Calls behind `ctx`, for assertions.
fn unsafe_calls<'a>(ctx: *mut c_void) -> &'a Calls {
    // SAFETY: ctx points to a Calls that outlives the test's use of it.
    unsafe { &*ctx.cast::<Calls>() }
}

#[test]
fn rejected_answer_returns_ok_to_user_space_and_is_counted() {
    let engine = Owned::new();
    let mut calls = Calls::default();
    let c = ctx(&mut calls);
    let mut data = [0u8; 64];
    data.copy_from_slice(DeviceMessage::new(DeviceOperation::Freeze, 42).as_bytes());
    // SAFETY: initialised engine; 64-byte buffer.
    unsafe {
        assert_eq!(hvvss_engine_open(engine.0, 1), HVVSS_OK);
        let result = hvvss_engine_ioctl(
            engine.0,
            c,
            1,
            c_ulong::from(FREEBSD_WRITE),
            data.as_mut_ptr(),
            5,
        );
        assert_eq!(result, HVVSS_OK);
    }
    assert_eq!(counter(&engine, "rejected_acks"), 1);
    assert!(
        unsafe_calls(c)
            .log
            .iter()
            .any(|(level, line)| *level == 1 && line.contains("rejected"))
    );
}

#[test]
fn foreign_requests_and_bad_devices_are_refused() {
    let engine = Owned::new();
    let mut calls = Calls::default();
    let c = ctx(&mut calls);
    let mut data = [0u8; 64];
    // SAFETY: initialised engine; 64-byte buffer.
    unsafe {
        // Linux's encoding of IOCHVVSSREAD is not FreeBSD's.
        assert_eq!(
            hvvss_engine_ioctl(
                engine.0,
                c,
                0,
                c_ulong::from(LINUX_READ),
                data.as_mut_ptr(),
                0
            ),
            HVVSS_UNKNOWN_IOCTL
        );
        assert_eq!(
            hvvss_engine_ioctl(
                engine.0,
                c,
                2,
                c_ulong::from(FREEBSD_READ),
                data.as_mut_ptr(),
                0
            ),
            HVVSS_INVALID
        );
        assert_eq!(
            hvvss_engine_ioctl(
                engine.0,
                c,
                0,
                c_ulong::from(FREEBSD_READ),
                core::ptr::null_mut(),
                0
            ),
            HVVSS_INVALID
        );
        assert_eq!(hvvss_engine_open(engine.0, -1), HVVSS_INVALID);
        assert_eq!(hvvss_engine_readable(engine.0, 9), 0);
        hvvss_engine_close(engine.0, c, 7, 0);
        hvvss_engine_host_packet(engine.0, c, core::ptr::null(), 40, 1, 0);
    }
    assert!(unsafe_calls(c).sent.is_empty());
}

#[test]
fn read_with_nothing_queued_reports_status_fail() {
    let engine = Owned::new();
    let mut calls = Calls::default();
    let c = ctx(&mut calls);
    let mut data = [0xffu8; 64];
    // SAFETY: initialised engine; 64-byte buffer.
    unsafe {
        assert_eq!(hvvss_engine_open(engine.0, 0), HVVSS_OK);
        hvvss_engine_ioctl(
            engine.0,
            c,
            0,
            c_ulong::from(FREEBSD_READ),
            data.as_mut_ptr(),
            0,
        );
    }
    assert_eq!(
        DeviceMessage::read_from_bytes(&data).unwrap(),
        DeviceMessage::nothing_queued()
    );
}

#[test]
fn timeouts_outside_the_sysctl_ranges_are_refused() {
    let engine = Owned::new();
    // SAFETY: initialised engine.
    unsafe {
        assert_eq!(hvvss_engine_set_timeouts(engine.0, 0, 5_000), HVVSS_INVALID);
        assert_eq!(
            hvvss_engine_set_timeouts(engine.0, 15_000, 0),
            HVVSS_INVALID
        );
        assert_eq!(hvvss_engine_timeout(engine.0, 0), 15_000);
        assert_eq!(hvvss_engine_set_timeouts(engine.0, 30_000, 2_000), HVVSS_OK);
        assert_eq!(hvvss_engine_timeout(engine.0, 0), 30_000);
        assert_eq!(hvvss_engine_timeout(engine.0, 1), 2_000);
    }
}

#[test]
fn strings_are_nul_terminated_and_cut_to_fit() {
    let engine = Owned::new();
    let mut buf = [0x55 as c_char; 8];
    // SAFETY: 8-byte buffer; initialised engine.
    unsafe {
        assert_eq!(hvvss_engine_counter_name(0, buf.as_mut_ptr(), buf.len()), 7);
        assert_eq!(CStr::from_ptr(buf.as_ptr()).to_str().unwrap(), "host_pa");
        assert_eq!(
            hvvss_engine_counter_name(99, buf.as_mut_ptr(), buf.len()),
            0
        );
        assert_eq!(
            hvvss_engine_last_result(engine.0, buf.as_mut_ptr(), buf.len()),
            4
        );
        assert_eq!(CStr::from_ptr(buf.as_ptr()).to_str().unwrap(), "none");
        assert_eq!(
            hvvss_engine_last_result(engine.0, core::ptr::null_mut(), 0),
            0
        );
        assert_eq!(
            CStr::from_ptr(hvvss_engine_device_name(0))
                .to_str()
                .unwrap(),
            "hv_fsvss_dev"
        );
        assert_eq!(
            CStr::from_ptr(hvvss_engine_device_name(1))
                .to_str()
                .unwrap(),
            "hv_appvss_dev"
        );
        assert_eq!(CStr::from_ptr(hvvss_engine_device_name(2)).to_bytes(), b"");
    }
    assert_eq!(hvvss_engine_ncounters(), 12);
}

#[test]
fn class_guid_and_versions_come_from_the_protocol_crate() {
    let engine = Owned::new();
    let mut guid = [0u8; 16];
    let (mut fw, mut msg) = (1u32, 1u32);
    // SAFETY: 16-byte buffer; initialised engine; writable words.
    unsafe {
        hvvss_engine_class_guid(guid.as_mut_ptr());
        hvvss_engine_versions(engine.0, &raw mut fw, &raw mut msg);
    }
    assert_eq!(guid, VSS_CLASS_GUID);
    assert_eq!((fw, msg), (0, 0), "versions before any negotiation");
}

#[test]
fn log_lines_are_cut_and_never_contain_nul() {
    let mut line = Line::new();
    write!(line, "a\0b{}", "x".repeat(500)).unwrap();
    assert_eq!(line.len, line.buf.len() - 1);
    // SAFETY: the buffer's last byte is never written, so it stays NUL.
    let text = unsafe { CStr::from_ptr(line.as_c_str()) };
    assert!(text.to_str().unwrap().starts_with("a?bxxx"));
    assert_eq!(text.to_bytes().len(), 159);
}

#[test]
fn detach_answers_the_request_in_progress() {
    let engine = Owned::new();
    let mut calls = Calls::default();
    let c = ctx(&mut calls);
    let packet = freeze_packet();
    // SAFETY: initialised engine; packet valid.
    unsafe {
        hvvss_engine_open(engine.0, 0);
        hvvss_engine_host_packet(engine.0, c, packet.as_ptr(), packet.len(), 5, 0);
        hvvss_engine_shutdown(engine.0, c);
    }
    let calls = unsafe_calls(c);
    assert_eq!(calls.sent.len(), 1);
    assert_eq!(
        parse_host_reply(&calls.sent[0].1).unwrap().status(),
        Ok(HostStatus::Fail)
    );
    assert_eq!(calls.armed, None);
}
