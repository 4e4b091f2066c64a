//! The hv_vss engine behind a narrow C ABI, for the FreeBSD kernel module
//! `hv_vss_rs.ko`. The C side is `kmod/glue/hv_vss_rs.h` (declarations) and
//! `kmod/glue/hv_vss_rs.c` (the KPI).
//!
//! Contract, for every `hvvss_engine_*` function: the engine pointer comes
//! from memory of `hvvss_engine_size()` bytes aligned to
//! `hvvss_engine_align()` that `hvvss_engine_init` initialised, and the
//! caller holds the softc mutex, so no two calls overlap. `ctx` is passed
//! back unchanged to the `hvvss_glue_*` callbacks (it is the softc).
//!
//! No allocation, no unwinding: a Rust panic (none is reachable from input)
//! calls the kernel's panic(9).
// Host tests (`cargo +stable test --target x86_64-unknown-linux-gnu`) link
// std and provide the glue callbacks themselves.
#![cfg_attr(not(test), no_std)]
// LLVM must not turn code into calls to libc functions the kernel lacks.
#![no_builtins]

use core::ffi::{CStr, c_char, c_int, c_uint, c_ulong, c_void};
use core::fmt::Write;
use core::mem::{align_of, size_of};
#[cfg(not(test))]
use core::panic::PanicInfo;

use hv_vss_kmod::proto::ioctl::{FREEBSD_READ, FREEBSD_WRITE};
use hv_vss_kmod::proto::{DEVICE_MESSAGE_LEN, DeviceMessage, VSS_CLASS_GUID};
use hv_vss_kmod::{Config, Counters, Device, Effects, Engine, Event, Millis};
use zerocopy::{FromBytes, IntoBytes};

/// `hvvss_engine_open` result: opened.
pub const HVVSS_OK: c_int = 0;
/// `hvvss_engine_open` result: already open (the glue returns EBUSY).
pub const HVVSS_BUSY: c_int = 1;
/// Invalid device index or arguments (the glue returns EINVAL).
pub const HVVSS_INVALID: c_int = 2;
/// `hvvss_engine_ioctl` result: not one of our ioctls (ENOTTY).
pub const HVVSS_UNKNOWN_IOCTL: c_int = 3;

// Implemented by the C glue (`hv_vss_rs.c`).
unsafe extern "C" {
    /// `vmbus_chan_send` of `len` bytes with VMBus transaction id `xid`.
    fn hvvss_glue_send(ctx: *mut c_void, xid: u64, reply: *const u8, len: usize);
    /// `selwakeup` of the device's selinfo.
    fn hvvss_glue_wake(ctx: *mut c_void, device: c_int);
    /// `callout_reset_sbt` to fire at `at_ms` on the uptime clock.
    fn hvvss_glue_timer_arm(ctx: *mut c_void, at_ms: u64);
    /// `callout_stop`.
    fn hvvss_glue_timer_cancel(ctx: *mut c_void);
    /// log(9) of a NUL-terminated line if `level` is within the `log` sysctl.
    fn hvvss_glue_log(ctx: *mut c_void, level: c_int, line: *const c_char);
    /// The kernel's panic(9).
    #[cfg(not(test))]
    fn panic(fmt: *const c_char, ...) -> !;
}

/// The engine's effects, forwarded to the glue.
struct Glue {
    ctx: *mut c_void,
}

impl Effects for Glue {
    fn send_to_host(&mut self, xid: u64, reply: &[u8]) {
        // SAFETY: `reply` is valid for `reply.len()` bytes for the call; the
        // glue copies it into the ring buffer before returning.
        unsafe { hvvss_glue_send(self.ctx, xid, reply.as_ptr(), reply.len()) }
    }

    fn wake(&mut self, device: Device) {
        // SAFETY: plain values; ctx is the glue's softc.
        unsafe { hvvss_glue_wake(self.ctx, c_int::from(device as u8)) }
    }

    fn arm_timer(&mut self, deadline: Millis) {
        // SAFETY: plain values; ctx is the glue's softc.
        unsafe { hvvss_glue_timer_arm(self.ctx, deadline.0) }
    }

    fn cancel_timer(&mut self) {
        // SAFETY: ctx is the glue's softc.
        unsafe { hvvss_glue_timer_cancel(self.ctx) }
    }

    fn log(&mut self, event: &Event) {
        let mut line = Line::new();
        // A line longer than the buffer is cut, never an error.
        let _ = write!(line, "{event}");
        // SAFETY: `line.as_c_str()` is NUL-terminated and lives until the
        // call returns.
        unsafe {
            hvvss_glue_log(self.ctx, c_int::from(event.level() as u8), line.as_c_str());
        }
    }
}

/// A fixed, NUL-terminated text buffer on the stack (no allocation).
struct Line {
    buf: [u8; 160],
    len: usize,
}

impl Line {
    const fn new() -> Self {
        Self {
            buf: [0; 160],
            len: 0,
        }
    }

    /// The text with its terminating NUL (the last byte is never written).
    const fn as_c_str(&self) -> *const c_char {
        self.buf.as_ptr().cast()
    }

    /// Copies `text` (or as much as fits) as a NUL-terminated string into
    /// `out` of `out_len` bytes; returns the length without the NUL.
    ///
    /// # Safety
    /// `out` must be valid for writes of `out_len` bytes (or `out_len` 0).
    unsafe fn copy_out(text: &[u8], out: *mut c_char, out_len: usize) -> usize {
        if out.is_null() || out_len == 0 {
            return 0;
        }
        let n = text.len().min(out_len - 1);
        // SAFETY: the caller guarantees `out` holds `out_len` > n bytes;
        // `text` holds at least `n`.
        unsafe {
            core::ptr::copy_nonoverlapping(text.as_ptr(), out.cast::<u8>(), n);
            out.add(n).write(0);
        }
        n
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        // Keep the last byte for the NUL; a NUL inside the text would cut
        // the C string short, so it becomes '?'.
        for &byte in s.as_bytes() {
            if self.len + 1 >= self.buf.len() {
                break;
            }
            // Checked access: no panic path in the kernel for a log line.
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = if byte == 0 { b'?' } else { byte };
                self.len += 1;
            }
        }
        Ok(())
    }
}

/// # Safety
/// See the crate documentation: `engine` was initialised by
/// `hvvss_engine_init` and the caller holds the softc mutex.
unsafe fn engine_mut<'a>(engine: *mut Engine) -> &'a mut Engine {
    // SAFETY: guaranteed by the caller (crate-level contract).
    unsafe { &mut *engine }
}

/// # Safety
/// As [`engine_mut`].
unsafe fn engine_ref<'a>(engine: *const Engine) -> &'a Engine {
    // SAFETY: guaranteed by the caller (crate-level contract).
    unsafe { &*engine }
}

fn device(index: c_int) -> Option<Device> {
    usize::try_from(index).ok().and_then(Device::from_index)
}

// ----- exported ABI (declared in glue/hv_vss_rs.h) ---------------------------

/// Bytes the glue must allocate for the engine.
#[unsafe(no_mangle)]
pub extern "C" fn hvvss_engine_size() -> usize {
    size_of::<Engine>()
}

/// Alignment that allocation must have.
#[unsafe(no_mangle)]
pub extern "C" fn hvvss_engine_align() -> usize {
    align_of::<Engine>()
}

/// Number of counters (`hvvss_engine_counter` indices 0..n).
#[unsafe(no_mangle)]
pub extern "C" fn hvvss_engine_ncounters() -> c_int {
    // 12, far below c_int::MAX.
    c_int::try_from(Counters::NAMES.len()).unwrap_or(0)
}

/// Initialises the engine in place.
///
/// # Safety
/// `engine` points to `hvvss_engine_size()` writable bytes aligned to
/// `hvvss_engine_align()`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hvvss_engine_init(
    engine: *mut Engine,
    timeout_ms: c_uint,
    rollback_timeout_ms: c_uint,
    msgid_seed: u64,
) {
    let config = Config {
        timeout_ms,
        rollback_timeout_ms,
    };
    // SAFETY: the caller guarantees size and alignment.
    unsafe { Engine::init_in_place(engine, config, msgid_seed) }
}

/// A packet from the host (`len` bytes at `packet`, VMBus transaction id
/// `xid`).
///
/// # Safety
/// Crate contract; `packet` is readable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hvvss_engine_host_packet(
    engine: *mut Engine,
    ctx: *mut c_void,
    packet: *const u8,
    len: usize,
    xid: u64,
    now_ms: u64,
) {
    if packet.is_null() {
        return;
    }
    // SAFETY: the caller guarantees `packet` is readable for `len` bytes.
    let packet = unsafe { core::slice::from_raw_parts(packet, len) };
    // SAFETY: crate contract.
    let engine = unsafe { engine_mut(engine) };
    engine.on_host_packet(packet, xid, Millis(now_ms), &mut Glue { ctx });
}

/// The deadline callout fired.
///
/// # Safety
/// Crate contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hvvss_engine_timer(engine: *mut Engine, ctx: *mut c_void, now_ms: u64) {
    // SAFETY: crate contract.
    unsafe { engine_mut(engine) }.on_timer(Millis(now_ms), &mut Glue { ctx });
}

/// Detach: answers a request in progress with failure and cancels the timer.
///
/// # Safety
/// Crate contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hvvss_engine_shutdown(engine: *mut Engine, ctx: *mut c_void) {
    // SAFETY: crate contract.
    unsafe { engine_mut(engine) }.shutdown(&mut Glue { ctx });
}

/// open(2): `HVVSS_OK`, `HVVSS_BUSY` (second opener) or `HVVSS_INVALID`.
///
/// # Safety
/// Crate contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hvvss_engine_open(engine: *mut Engine, dev: c_int) -> c_int {
    let Some(device) = device(dev) else {
        return HVVSS_INVALID;
    };
    // SAFETY: crate contract.
    match unsafe { engine_mut(engine) }.open(device) {
        Ok(()) => HVVSS_OK,
        Err(_) => HVVSS_BUSY,
    }
}

/// Last close(2).
///
/// # Safety
/// Crate contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hvvss_engine_close(
    engine: *mut Engine,
    ctx: *mut c_void,
    dev: c_int,
    now_ms: u64,
) {
    if let Some(device) = device(dev) {
        // SAFETY: crate contract.
        unsafe { engine_mut(engine) }.close(device, Millis(now_ms), &mut Glue { ctx });
    }
}

/// poll(2): 1 if IOCHVVSSREAD would hand out a message, else 0.
///
/// # Safety
/// Crate contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hvvss_engine_readable(engine: *const Engine, dev: c_int) -> c_int {
    device(dev).map_or(0, |device| {
        // SAFETY: crate contract.
        c_int::from(unsafe { engine_ref(engine) }.readable(device))
    })
}

/// ioctl(2) on device `dev`: IOCHVVSSREAD fills the 64-byte `data`,
/// IOCHVVSSWRITE consumes it. Returns `HVVSS_OK` (also for a rejected
/// answer, which is counted and logged: the base daemon exits on an ioctl
/// error), `HVVSS_UNKNOWN_IOCTL` or `HVVSS_INVALID`.
///
/// # Safety
/// Crate contract; `data` is the kernel's ioctl buffer of at least
/// `IOCPARM_LEN(cmd)` bytes (64 for our two commands), any alignment.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hvvss_engine_ioctl(
    engine: *mut Engine,
    ctx: *mut c_void,
    dev: c_int,
    cmd: c_ulong,
    data: *mut u8,
    now_ms: u64,
) -> c_int {
    let Some(device) = device(dev) else {
        return HVVSS_INVALID;
    };
    if data.is_null() {
        return HVVSS_INVALID;
    }
    // SAFETY: crate contract.
    let engine = unsafe { engine_mut(engine) };
    // SAFETY: for our two commands the kernel provides DEVICE_MESSAGE_LEN
    // bytes (the size is encoded in the command); other commands return
    // before the slice is used.
    let buffer = unsafe { core::slice::from_raw_parts_mut(data, DEVICE_MESSAGE_LEN) };
    if cmd == c_ulong::from(FREEBSD_READ) {
        buffer.copy_from_slice(engine.read(device).as_bytes());
        HVVSS_OK
    } else if cmd == c_ulong::from(FREEBSD_WRITE) {
        if let Ok(answer) = DeviceMessage::read_from_bytes(buffer) {
            // A rejection is counted and logged by the engine.
            let _ = engine.write(device, &answer, Millis(now_ms), &mut Glue { ctx });
        }
        HVVSS_OK
    } else {
        HVVSS_UNKNOWN_IOCTL
    }
}

/// Sets the tunables (sysctls `timeout_ms`, `rollback_timeout_ms`); they
/// apply from the next request. `HVVSS_INVALID` (and no change) when a value
/// is outside [`Config::TIMEOUT_MS_RANGE`] / [`Config::ROLLBACK_TIMEOUT_MS_RANGE`].
///
/// # Safety
/// Crate contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hvvss_engine_set_timeouts(
    engine: *mut Engine,
    timeout_ms: c_uint,
    rollback_timeout_ms: c_uint,
) -> c_int {
    let config = Config {
        timeout_ms,
        rollback_timeout_ms,
    };
    if !config.is_valid() {
        return HVVSS_INVALID;
    }
    // SAFETY: crate contract.
    unsafe { engine_mut(engine) }.set_config(config);
    HVVSS_OK
}

/// The node names under /dev, NUL-terminated for make_dev_s(9); checked
/// against hv-vss-proto's names at compile time.
static DEVICE_NAMES: [&CStr; 2] = [c"hv_fsvss_dev", c"hv_appvss_dev"];

const fn same_name(c: &CStr, name: &str) -> bool {
    let (c, name) = (c.to_bytes(), name.as_bytes());
    if c.len() != name.len() {
        return false;
    }
    let mut i = 0;
    while i < c.len() {
        if c[i] != name[i] {
            return false;
        }
        i += 1;
    }
    true
}

const _: () = {
    assert!(same_name(
        DEVICE_NAMES[Device::Fs.index()],
        Device::Fs.name()
    ));
    assert!(same_name(
        DEVICE_NAMES[Device::App.index()],
        Device::App.name()
    ));
};

/// The node name of device `dev` ("hv_fsvss_dev", "hv_appvss_dev"), or an
/// empty string for a bad index.
#[unsafe(no_mangle)]
pub extern "C" fn hvvss_engine_device_name(dev: c_int) -> *const c_char {
    device(dev).map_or(c"".as_ptr(), |d| DEVICE_NAMES[d.index()].as_ptr())
}

/// Writes the VSS channel's VMBus class GUID (16 bytes, in VMBus byte order)
/// for the probe.
///
/// # Safety
/// `out` is writable for 16 bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hvvss_engine_class_guid(out: *mut u8) {
    if out.is_null() {
        return;
    }
    // SAFETY: the caller guarantees 16 writable bytes.
    unsafe {
        core::ptr::copy_nonoverlapping(VSS_CLASS_GUID.as_ptr(), out, VSS_CLASS_GUID.len());
    }
}

/// Current `timeout_ms` (`which` 0) or `rollback_timeout_ms` (1).
///
/// # Safety
/// Crate contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hvvss_engine_timeout(engine: *const Engine, which: c_int) -> c_uint {
    // SAFETY: crate contract.
    let config = unsafe { engine_ref(engine) }.config();
    if which == 0 {
        config.timeout_ms
    } else {
        config.rollback_timeout_ms
    }
}

/// Counter `index` (0 ≤ index < `hvvss_engine_ncounters()`), 0 otherwise.
///
/// # Safety
/// Crate contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hvvss_engine_counter(engine: *const Engine, index: c_int) -> u64 {
    // SAFETY: crate contract.
    let values = unsafe { engine_ref(engine) }.counters().values();
    usize::try_from(index)
        .ok()
        .and_then(|i| values.get(i).copied())
        .unwrap_or(0)
}

/// Writes counter `index`'s name (NUL-terminated, cut to fit) into `out`;
/// returns its length, 0 for a bad index.
///
/// # Safety
/// `out` is writable for `out_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hvvss_engine_counter_name(
    index: c_int,
    out: *mut c_char,
    out_len: usize,
) -> usize {
    let name = usize::try_from(index)
        .ok()
        .and_then(|i| Counters::NAMES.get(i))
        .map_or(&b""[..], |name| name.as_bytes());
    // SAFETY: the caller guarantees `out` holds `out_len` bytes.
    unsafe { Line::copy_out(name, out, out_len) }
}

/// Writes the last result ("FREEZE ok", "THAW failed: deadline passed",
/// "none") into `out` (NUL-terminated, cut to fit); returns its length.
///
/// # Safety
/// Crate contract; `out` is writable for `out_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hvvss_engine_last_result(
    engine: *const Engine,
    out: *mut c_char,
    out_len: usize,
) -> usize {
    let mut line = Line::new();
    // SAFETY: crate contract.
    let _ = match unsafe { engine_ref(engine) }.last_result() {
        Some(result) => write!(line, "{result}"),
        None => line.write_str("none"),
    };
    let text = line.buf.get(..line.len).unwrap_or_default();
    // SAFETY: the caller guarantees `out` holds `out_len` bytes.
    unsafe { Line::copy_out(text, out, out_len) }
}

/// The negotiated framework and message version words (0 before the first
/// negotiation), for the IC softc's `fw_version` / `msg_version` sysctls.
///
/// # Safety
/// Crate contract; `fw` and `msg` are writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hvvss_engine_versions(engine: *const Engine, fw: *mut u32, msg: *mut u32) {
    // SAFETY: crate contract.
    let (f, m) = unsafe { engine_ref(engine) }
        .negotiated()
        .map_or((0, 0), |v| (v.framework.to_wire(), v.message.to_wire()));
    // SAFETY: the caller guarantees both pointers are writable (null is skipped).
    unsafe {
        if !fw.is_null() {
            fw.write(f);
        }
        if !msg.is_null() {
            msg.write(m);
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn on_panic(info: &PanicInfo<'_>) -> ! {
    let mut line = Line::new();
    let _ = match info.location() {
        Some(at) => write!(line, "{}:{}", at.file(), at.line()),
        None => line.write_str("unknown location"),
    };
    // SAFETY: a constant NUL-terminated format with one %s whose argument
    // is NUL-terminated; panic(9) never returns.
    unsafe { panic(c"hv_vss_rs: Rust panic at %s".as_ptr(), line.as_c_str()) }
}

#[cfg(test)]
mod tests;
