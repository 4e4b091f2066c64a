//! What the engine asks its caller to do.

use crate::event::Event;
use crate::types::{Device, Millis};

/// The caller's side of the engine: every effect the engine has on the
/// world goes through these methods, called synchronously from inside the
/// engine's entry points (so with the caller's mutex held).
///
/// The FreeBSD glue implements them with `vmbus_chan_send`, `selwakeup`,
/// `callout_reset_sbt`/`callout_stop` and `printf`; the simulator and the
/// tests record them.
pub trait Effects {
    /// Send `reply` to the host as one in-band VMBus packet carrying the
    /// host's 64-bit transaction id `xid`. `reply` borrows the engine's
    /// buffer: copy it if it must outlive the call.
    fn send_to_host(&mut self, xid: u64, reply: &[u8]);

    /// A message is waiting on `device`: wake its pollers (`selwakeup`).
    fn wake(&mut self, device: Device);

    /// Arm the single deadline timer to fire at `deadline` (absolute, same
    /// clock as the `now` arguments), replacing any earlier setting. When it
    /// fires, call [`crate::VssEngine::on_timer`]. Firing late is fine;
    /// firing early is harmless too (the engine re-arms).
    fn arm_timer(&mut self, deadline: Millis);

    /// Disarm the timer. A firing that races with this is harmless.
    fn cancel_timer(&mut self);

    /// Something happened that an administrator may want to see;
    /// [`Event::level`] says how important it is. The default drops it.
    fn log(&mut self, event: &Event) {
        let _ = event;
    }
}
