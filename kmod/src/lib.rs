//! The hv_vss kernel engine: every decision of the VSS kernel module, as a
//! pure, deterministic state machine.
//!
//! The engine does no I/O, takes no locks, never allocates and never panics
//! on input. The caller (the FreeBSD C glue through `kmod/ffi`, or the
//! simulator in `sim/`) holds one mutex around it, feeds it events with the
//! current monotonic time, and performs the [`Effects`] the engine asks for:
//!
//! | input | method |
//! |---|---|
//! | a packet from the host on the VSS channel | [`VssEngine::on_host_packet`] |
//! | open / close of a device | [`VssEngine::open`] / [`VssEngine::close`] |
//! | IOCHVVSSREAD / IOCHVVSSWRITE | [`VssEngine::read`] / [`VssEngine::write`] |
//! | poll | [`VssEngine::readable`] |
//! | the deadline timer fired | [`VssEngine::on_timer`] |
//!
//! | effect | [`Effects`] method |
//! |---|---|
//! | send these bytes to the host with this VMBus transaction id | [`Effects::send_to_host`] |
//! | wake the pollers of a device | [`Effects::wake`] |
//! | arm (or re-arm) / cancel the one deadline timer | [`Effects::arm_timer`] / [`Effects::cancel_timer`] |
//! | something worth a log line | [`Effects::log`] |
//!
//! The rules (see `man4/hv_vss_rs.4` for the user-facing description):
//! - negotiation is always answered, whether or not anyone opened a device;
//! - HOT_BACKUP (CHECK) and FREEZE go app (if its device is open) → daemon →
//!   host; THAW goes daemon → app → host;
//! - GET_DM_INFO, CREATE, DELETE, BU_COMPLETE and AUTO_RECOVER are answered
//!   HV_S_OK by the engine;
//! - one request at a time: another CHECK/FREEZE/THAW meanwhile is answered
//!   with failure at once; so is one while the daemon's device is closed;
//! - one deadline covers the whole chain; after any failure every party that
//!   may be frozen is told THAW (rollback) before the host is answered, within
//!   a bounded rollback window;
//! - an answer from user space must match the device, msgid and operation
//!   of what that device read, or it is rejected and counted;
//! - the reply is written into the engine's own copy of the request.
//!
//! # Example: one HOT_BACKUP, as the glue drives it
//!
//! ```
//! use hv_vss_kmod::proto::{DeviceStatus, HostOperation, HostStatus, build_vss_request, parse_host_reply};
//! use hv_vss_kmod::{Config, Device, Effects, Engine, Millis};
//!
//! #[derive(Default)]
//! struct Glue { sent: Vec<(u64, Vec<u8>)>, timer: Option<Millis> }
//! impl Effects for Glue {
//!     fn send_to_host(&mut self, xid: u64, reply: &[u8]) { self.sent.push((xid, reply.to_vec())) }
//!     fn wake(&mut self, _device: Device) {}
//!     fn arm_timer(&mut self, deadline: Millis) { self.timer = Some(deadline) }
//!     fn cancel_timer(&mut self) { self.timer = None }
//! }
//!
//! let mut engine = Box::new(Engine::new(Config::DEFAULT, 1));
//! let mut glue = Glue::default();
//! engine.open(Device::Fs)?; // the daemon opens /dev/hv_fsvss_dev
//!
//! let mut packet = [0u8; 40];
//! build_vss_request(&mut packet, HostOperation::HotBackup, 0)?;
//! engine.on_host_packet(&packet, 77, Millis(0), &mut glue);
//! assert_eq!(glue.timer, Some(Millis(15_000)));
//!
//! assert!(engine.readable(Device::Fs)); // poll(2) says POLLIN
//! let request = engine.read(Device::Fs); // IOCHVVSSREAD
//! engine.write(Device::Fs, &request.with_status(DeviceStatus::Success), Millis(5), &mut glue)?;
//!
//! let (xid, reply) = &glue.sent[0];
//! assert_eq!(*xid, 77);
//! assert_eq!(parse_host_reply(reply)?.status(), Ok(HostStatus::Ok));
//! assert_eq!(glue.timer, None);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![no_std]

#[cfg(test)]
extern crate std;

mod counters;
mod effects;
mod engine;
mod event;
mod types;

/// The wire formats the engine speaks, re-exported so that callers (the
/// kernel ABI crate, the simulator) use exactly the engine's version.
pub use hv_vss_proto as proto;

pub use counters::{Counters, LastResult};
pub use effects::Effects;
pub use engine::{Engine, Outstanding, Party, Stage, Transaction, VssEngine};
pub use event::{AckRejection, Event, FailReason, LogLevel};
pub use types::{Config, Device, Millis, OpenError};
