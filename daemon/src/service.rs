//! The device loop: one thread, one poll(2) over the device and a signal
//! self-pipe, with the watchdog deadline as the poll timeout.
//!
//! Single-threaded on purpose: FreeBSD's UFSSUSPEND refuses (EDEADLK) a
//! process with more than one thread. Hooks and `zpool sync` are child
//! processes; signals only set flags and write a byte to the self-pipe.

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hv_vss_proto::{DeviceOperation, DeviceStatus};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::config::Config;
use crate::device::Device;
use crate::engine::Engine;
use crate::freezer::Freezer;
use crate::watchdog::Clock;

/// Signal flags plus the self-pipe that wakes poll(2).
#[derive(Debug)]
pub struct Signals {
    pub terminate: Arc<AtomicBool>,
    pub hangup: Arc<AtomicBool>,
    wakeup: UnixStream,
}

impl Signals {
    /// Installs handlers for SIGTERM, SIGINT (thaw and exit) and SIGHUP
    /// (reload the configuration).
    pub fn install() -> std::io::Result<Self> {
        let (wakeup, notifier) = UnixStream::pair()?;
        wakeup.set_nonblocking(true)?;
        notifier.set_nonblocking(true)?;
        let terminate = Arc::new(AtomicBool::new(false));
        let hangup = Arc::new(AtomicBool::new(false));
        for signal in [SIGTERM, SIGINT] {
            signal_hook::flag::register(signal, terminate.clone())?;
            signal_hook::low_level::pipe::register(signal, notifier.try_clone()?)?;
        }
        signal_hook::flag::register(SIGHUP, hangup.clone())?;
        signal_hook::low_level::pipe::register(SIGHUP, notifier)?;
        Ok(Self {
            terminate,
            hangup,
            wakeup,
        })
    }

    /// Flags and a wakeup pipe without handlers (tests set the flags).
    pub fn unregistered() -> std::io::Result<(Self, UnixStream)> {
        let (wakeup, notifier) = UnixStream::pair()?;
        wakeup.set_nonblocking(true)?;
        Ok((
            Self {
                terminate: Arc::new(AtomicBool::new(false)),
                hangup: Arc::new(AtomicBool::new(false)),
                wakeup,
            },
            notifier,
        ))
    }

    fn drain(&mut self) {
        let mut buf = [0u8; 64];
        while matches!(self.wakeup.read(&mut buf), Ok(n) if n > 0) {}
    }
}

/// Why the loop ended with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("waiting on the device failed: {0}")]
    Poll(nix::errno::Errno),
    #[error("the device went away (driver unloaded?): {0}")]
    DeviceGone(String),
}

/// Serves requests until SIGTERM/SIGINT (then thaws, answers what is still
/// queued, and returns `Ok`) or until the device fails (thaws, `Err`).
/// `reload` reads the configuration again on SIGHUP.
pub fn serve<D: Device, F: Freezer, C: Clock>(
    device: &mut D,
    engine: &mut Engine<F, C>,
    signals: &mut Signals,
    reload: &mut dyn FnMut() -> Result<Config, String>,
) -> Result<(), ServeError> {
    // A FREEZE under way checks it before freezing and before answering.
    engine.set_stop_flag(signals.terminate.clone());
    loop {
        if signals.terminate.load(Ordering::SeqCst) {
            engine
                .log
                .notice("terminating on signal: thawing and answering pending requests");
            engine.shutdown();
            answer_pending(device, engine);
            return Ok(());
        }
        if signals.hangup.swap(false, Ordering::SeqCst) {
            match reload() {
                Ok(config) => engine.reload(config),
                Err(e) => engine
                    .log
                    .error(format!("SIGHUP: keeping the old configuration: {e}")),
            }
        }
        let timeout = engine.next_timeout().map_or(PollTimeout::NONE, |d| {
            // Round up so the watchdog is never woken a hair early.
            let millis = d.as_millis() + u128::from(d.subsec_nanos() % 1_000_000 != 0);
            PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
        });
        let (device_events, signal_ready) = {
            let mut fds = [
                PollFd::new(device.as_fd(), PollFlags::POLLIN),
                PollFd::new(signals.wakeup.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    engine.shutdown();
                    return Err(ServeError::Poll(e));
                }
            }
            (
                fds[0].revents().unwrap_or(PollFlags::empty()),
                fds[1].revents().is_some_and(|r| !r.is_empty()),
            )
        };
        if signal_ready {
            signals.drain();
        }
        if device_events.intersects(PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL) {
            engine.shutdown();
            return Err(ServeError::DeviceGone(format!(
                "poll reported {device_events:?}"
            )));
        }
        if device_events.contains(PollFlags::POLLIN) {
            if let Err(e) = serve_one(device, engine) {
                engine.shutdown();
                return Err(ServeError::DeviceGone(e.to_string()));
            }
        }
        engine.on_timer();
    }
}

/// Reads one request (if any), answers it, then does what the host does
/// not wait for (thaw hooks, held logs, the status).
fn serve_one<D: Device, F: Freezer, C: Clock>(
    device: &mut D,
    engine: &mut Engine<F, C>,
) -> std::io::Result<()> {
    let Some(request) = device.read_request()? else {
        return Ok(());
    };
    // The request budget counts from here.
    let read_at = engine.now();
    let status = match request.operation() {
        Ok(operation) => engine.handle(operation, request.msgid(), read_at),
        Err(unknown) => {
            engine.log.error(format!(
                "request msgid {} has {unknown}: answering failure",
                request.msgid()
            ));
            DeviceStatus::Fail
        }
    };
    if let Err(e) = device.write_reply(&request.with_status(status)) {
        // The driver may have given up on this request (its deadline
        // passed); log and keep serving.
        engine
            .log
            .error(format!("cannot answer msgid {}: {e}", request.msgid()));
    }
    engine.after_answer();
    Ok(())
}

/// On the way out, after thawing: answer whatever is queued, so no request
/// waits for the kernel's timeout. Nothing is frozen any more, so THAW
/// succeeds and CHECK/FREEZE fail (the daemon is leaving).
fn answer_pending<D: Device, F: Freezer, C: Clock>(device: &mut D, engine: &mut Engine<F, C>) {
    for _ in 0..16 {
        let mut fds = [PollFd::new(device.as_fd(), PollFlags::POLLIN)];
        if !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0) {
            return;
        }
        let Ok(Some(request)) = device.read_request() else {
            return;
        };
        let status = match request.operation() {
            Ok(DeviceOperation::Thaw) => DeviceStatus::Success,
            _ => DeviceStatus::Fail,
        };
        engine.log.notice(format!(
            "answering pending msgid {} with {status:?} before exiting",
            request.msgid()
        ));
        let _ = device.write_reply(&request.with_status(status));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::io::Write as _;
    use std::os::fd::BorrowedFd;
    use std::time::{Duration, Instant};

    use hv_vss_proto::DeviceMessage;

    use crate::config::Config;
    use crate::log::Log;
    use crate::testing::{FakeFreezer, Harness, mount};
    use crate::watchdog::SystemClock;

    /// Requests queued by the test; readable while the queue is not empty.
    /// Sets `terminate` once the last request has been read, if asked to.
    struct FakeDevice {
        queue: VecDeque<DeviceMessage>,
        replies: Vec<DeviceMessage>,
        readable: UnixStream,
        notify: UnixStream,
        terminate_when_drained: Option<Arc<AtomicBool>>,
    }

    impl FakeDevice {
        fn new(requests: &[DeviceMessage]) -> Self {
            let (readable, mut notify) = UnixStream::pair().unwrap();
            readable.set_nonblocking(true).unwrap();
            if !requests.is_empty() {
                notify.write_all(&[1]).unwrap();
            }
            Self {
                queue: requests.iter().copied().collect(),
                replies: Vec::new(),
                readable,
                notify,
                terminate_when_drained: None,
            }
        }
    }

    impl Device for FakeDevice {
        fn as_fd(&self) -> BorrowedFd<'_> {
            self.readable.as_fd()
        }
        fn read_request(&mut self) -> std::io::Result<Option<DeviceMessage>> {
            let next = self.queue.pop_front();
            if self.queue.is_empty() {
                let mut buf = [0u8; 16];
                while matches!(self.readable.read(&mut buf), Ok(n) if n > 0) {}
                if let Some(flag) = &self.terminate_when_drained {
                    flag.store(true, Ordering::SeqCst);
                    let _ = self.notify.write_all(&[1]);
                }
            }
            Ok(next)
        }
        fn write_reply(&mut self, reply: &DeviceMessage) -> std::io::Result<()> {
            self.replies.push(*reply);
            Ok(())
        }
    }

    fn request(op: DeviceOperation, msgid: u64) -> DeviceMessage {
        DeviceMessage::new(op, msgid)
    }

    fn no_reload() -> Result<Config, String> {
        Err("not in this test".to_owned())
    }

    #[test]
    fn answers_each_request_echoing_op_and_msgid() {
        let mounts = vec![mount("/", "ufs", 1), mount("/var", "ufs", 2)];
        let mut h = Harness::new(mounts, "", FakeFreezer::default());
        let mut unknown = request(DeviceOperation::Check, 40);
        unknown.opt = 9;
        let mut device = FakeDevice::new(&[
            request(DeviceOperation::Check, 10),
            request(DeviceOperation::Freeze, 20),
            request(DeviceOperation::Thaw, 30),
            unknown,
        ]);
        let (mut signals, _notifier) = Signals::unregistered().unwrap();
        device.terminate_when_drained = Some(signals.terminate.clone());
        serve(&mut device, &mut h.engine, &mut signals, &mut no_reload).unwrap();
        let answered: Vec<(u32, u64, u32)> = device
            .replies
            .iter()
            .map(|r| (r.opt, r.msgid, r.status))
            .collect();
        assert_eq!(answered, [(1, 10, 0), (2, 20, 0), (3, 30, 0), (9, 40, 1)]);
        assert_eq!(
            h.calls(),
            ["freeze /var", "freeze /", "thaw /", "thaw /var"]
        );
        assert!(h.log_contains("unknown"), "{:?}", h.log.borrow());
    }

    #[test]
    fn terminate_thaws_and_answers_what_is_still_queued() {
        let mounts = vec![mount("/", "ufs", 1)];
        let mut h = Harness::new(mounts, "", FakeFreezer::default());
        h.send(DeviceOperation::Freeze, 1);
        let mut device = FakeDevice::new(&[
            request(DeviceOperation::Freeze, 2),
            request(DeviceOperation::Thaw, 3),
        ]);
        let (mut signals, _notifier) = Signals::unregistered().unwrap();
        signals.terminate.store(true, Ordering::SeqCst);
        serve(&mut device, &mut h.engine, &mut signals, &mut no_reload).unwrap();
        assert!(h.freezer.frozen.borrow().is_empty());
        let answered: Vec<(u64, u32)> =
            device.replies.iter().map(|r| (r.msgid, r.status)).collect();
        assert_eq!(answered, [(2, 1), (3, 0)]);
    }

    #[test]
    fn the_loop_wakes_up_for_the_watchdog_in_real_time() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::parse(&format!(
            "freeze_limit = 1\nhooks_dir = {0}/none\nstatus_file = {0}/status\nstate_file = {0}/frozen",
            dir.path().display()
        ))
        .unwrap();
        let freezer = FakeFreezer::default();
        let (log, lines) = Log::memory(false);
        let mut engine = Engine::new(
            config,
            freezer.clone(),
            SystemClock,
            log,
            Box::new(|| Ok(vec![mount("/", "ufs", 1)])),
            0,
        );
        let mut device = FakeDevice::new(&[request(DeviceOperation::Freeze, 5)]);
        let (mut signals, mut notifier) = Signals::unregistered().unwrap();
        let terminate = signals.terminate.clone();
        // Before the stopper starts its 1.8 s, so the loop cannot seem to
        // have run for less than that.
        let started = Instant::now();
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1800));
            terminate.store(true, Ordering::SeqCst);
            notifier.write_all(&[1]).unwrap();
        });
        serve(&mut device, &mut engine, &mut signals, &mut no_reload).unwrap();
        stopper.join().unwrap();
        assert!(started.elapsed() >= Duration::from_millis(1800));
        assert_eq!(*freezer.calls.borrow(), ["freeze /", "thaw /"]);
        let lines = lines.borrow();
        assert!(lines.iter().any(|l| l.contains("WATCHDOG")), "{lines:?}");
        assert!(!lines.iter().any(|l| l.contains("SHUTDOWN")), "{lines:?}");
    }

    #[test]
    fn sighup_reloads_and_a_bad_file_keeps_the_old_config() {
        let mut h = Harness::new(vec![], "freeze_limit = 7", FakeFreezer::default());
        let mut device = FakeDevice::new(&[]);
        let (mut signals, _notifier) = Signals::unregistered().unwrap();
        signals.hangup.store(true, Ordering::SeqCst);
        let mut calls = 0;
        let mut reload = || {
            calls += 1;
            Err("line 3: bad".to_owned())
        };
        // One pass: reload fails, then terminate.
        signals.terminate.store(false, Ordering::SeqCst);
        let terminate = signals.terminate.clone();
        device.terminate_when_drained = Some(terminate);
        // Make the device readable once so the loop runs a pass and stops.
        device.queue.push_back(request(DeviceOperation::Check, 1));
        device.notify.write_all(&[1]).unwrap();
        serve(&mut device, &mut h.engine, &mut signals, &mut reload).unwrap();
        assert_eq!(calls, 1);
        assert_eq!(h.engine.config().freeze_limit, Duration::from_secs(7));
        assert!(h.log_contains("SIGHUP: keeping the old configuration: line 3: bad"));
    }
}
