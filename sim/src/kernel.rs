//! The kernel engine from `kmod/`, driven exactly as the FreeBSD C glue
//! drives it: one mutex around the engine; every entry point (the channel
//! callback, cdevsw open/close/ioctl/poll, the callout) takes it, calls the
//! engine with the current monotonic time, and performs the actions the
//! engine returns before releasing it. A timer thread stands in for the
//! callout.

use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hv_vss_kmod::{Config, Device, Effects, Engine, Event, Millis};
use hv_vss_proto::DeviceMessage;
use zerocopy::{FromBytes, IntoBytes};

use crate::devices::{DeviceBackend, DeviceErrno, DeviceKind, PollWaker, Readiness};
use crate::host::{GuestChannel, GuestPacket, TransactionId};

/// Settings of the simulated kernel (the glue's sysctls).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelOptions {
    /// The deadline for one host request's whole chain (app, then daemon).
    pub deadline: Duration,
    /// After a failure or the deadline, how long the parties get to
    /// acknowledge the rollback THAW before the host is answered anyway.
    pub rollback: Duration,
}

impl Default for KernelOptions {
    /// The engine's defaults (the base driver's 15 s, plus 5 s rollback).
    fn default() -> Self {
        let config = hv_vss_kmod::Config::DEFAULT;
        KernelOptions {
            deadline: Duration::from_millis(u64::from(config.timeout_ms)),
            rollback: Duration::from_millis(u64::from(config.rollback_timeout_ms)),
        }
    }
}

/// What the glue does on the engine's behalf.
#[derive(Debug)]
enum Effect {
    SendToHost {
        transaction: TransactionId,
        bytes: Vec<u8>,
    },
    Wake(DeviceKind),
    ArmTimer(Instant),
    CancelTimer,
}

/// The simulated kernel: engine, timer, devices' and channel's entry points.
pub struct SimKernel {
    inner: Mutex<Inner>,
    /// Wakes the timer thread when the deadline changes or on shutdown.
    timer_changed: Condvar,
    /// The engine's clock starts here ("boot").
    epoch: Instant,
    waker: Mutex<PollWaker>,
    host_replies: Mutex<Option<Receiver<GuestPacket>>>,
}

struct Inner {
    /// 32 KiB (two packet buffers): boxed, as the kernel mallocs it.
    engine: Box<Engine>,
    /// The engine's log events, as the glue would printf them.
    log: Vec<String>,
    to_host: Sender<GuestPacket>,
    timer: Option<Instant>,
    stopping: bool,
}

impl std::fmt::Debug for SimKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("SimKernel")
            .field("engine", &inner.engine)
            .field("timer", &inner.timer)
            .finish_non_exhaustive()
    }
}

impl SimKernel {
    /// Creates the engine and starts the timer thread; call
    /// [`Self::shutdown`] to stop it.
    pub fn start(options: &KernelOptions) -> Arc<SimKernel> {
        let (to_host, host_replies) = std::sync::mpsc::channel();
        let kernel = Arc::new(SimKernel {
            inner: Mutex::new(Inner {
                engine: Box::new(Engine::new(
                    Config {
                        timeout_ms: millis_u32(options.deadline),
                        rollback_timeout_ms: millis_u32(options.rollback),
                    },
                    msgid_seed(),
                )),
                log: Vec::new(),
                to_host,
                timer: None,
                stopping: false,
            }),
            timer_changed: Condvar::new(),
            epoch: Instant::now(),
            waker: Mutex::new(PollWaker::default()),
            host_replies: Mutex::new(Some(host_replies)),
        });
        let timer = Arc::clone(&kernel);
        std::thread::Builder::new()
            .name("hv-vss-sim-callout".to_owned())
            .spawn(move || timer.callout_thread())
            .map_or_else(
                // Without a timer thread deadlines would never fire; the
                // simulator cannot run meaningfully.
                |e| panic!("cannot start the simulated callout thread: {e}"),
                drop,
            );
        kernel
    }

    /// Stops the timer thread (pending deadlines no longer fire).
    pub fn shutdown(&self) {
        self.lock().stopping = true;
        self.timer_changed.notify_all();
    }

    /// The host's end of the channel (the first caller gets it).
    pub fn take_host_replies(&self) -> Receiver<GuestPacket> {
        self.host_replies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or_else(|| std::sync::mpsc::channel().1)
    }

    /// Whether `device` is open right now.
    pub fn is_open(&self, kind: DeviceKind) -> bool {
        self.lock().engine.party(device(kind)).open
    }

    /// Checks `condition` every 5 ms until it holds or `timeout` passes.
    pub fn wait_until(&self, timeout: Duration, condition: impl Fn(&SimKernel) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if condition(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The engine's clock: milliseconds since the kernel started.
    fn now(&self) -> Millis {
        Millis(u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// Runs one engine entry point with the lock held and performs its
    /// effects before the lock is released, as the glue does.
    fn call<T>(&self, entry: impl FnOnce(&mut Engine, Millis, &mut Recorder<'_>) -> T) -> T {
        let mut inner = self.lock();
        let now = self.now();
        let inner_ref = &mut *inner;
        let mut recorder = Recorder {
            epoch: self.epoch,
            effects: Vec::new(),
            log: &mut inner_ref.log,
            now,
        };
        let result = entry(&mut inner_ref.engine, now, &mut recorder);
        let effects = recorder.effects;
        self.perform(&mut inner, effects);
        result
    }

    /// The engine's log so far, one line per event ("<ms> <event>").
    pub fn log(&self) -> Vec<String> {
        self.lock().log.clone()
    }

    /// The engine's counters, as the glue's sysctls show them.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        let inner = self.lock();
        let counters = inner.engine.counters();
        hv_vss_kmod::Counters::NAMES
            .iter()
            .copied()
            .zip(counters.values())
            .collect()
    }

    /// Performs the engine's actions; called with the mutex held, as the
    /// glue does (selwakeup and callout_reset are fine under it).
    fn perform(&self, inner: &mut Inner, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::SendToHost { transaction, bytes } => {
                    // The host may have gone away (end of a test): the
                    // packet is dropped, as VMBus would on a closed channel.
                    let _ = inner.to_host.send(GuestPacket {
                        transaction,
                        bytes,
                        at: Instant::now(),
                    });
                }
                Effect::Wake(device) => self
                    .waker
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .wake(device),
                Effect::ArmTimer(at) => {
                    inner.timer = Some(at);
                    self.timer_changed.notify_all();
                }
                Effect::CancelTimer => {
                    inner.timer = None;
                    self.timer_changed.notify_all();
                }
            }
        }
    }

    /// The callout: sleeps until the armed deadline, then tells the engine.
    fn callout_thread(&self) {
        let mut inner = self.lock();
        loop {
            if inner.stopping {
                return;
            }
            match inner.timer {
                None => {
                    inner = self
                        .timer_changed
                        .wait(inner)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                Some(at) if Instant::now() >= at => {
                    inner.timer = None;
                    drop(inner);
                    self.call(|engine, now, fx| engine.on_timer(now, fx));
                    inner = self.lock();
                }
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    inner = self
                        .timer_changed
                        .wait_timeout(inner, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
    }
}

impl GuestChannel for SimKernel {
    /// The channel callback, once per packet.
    fn deliver(&self, transaction: TransactionId, packet: &[u8]) {
        self.call(|engine, now, fx| engine.on_host_packet(packet, transaction, now, fx));
    }
}

impl DeviceBackend for SimKernel {
    fn open(&self, kind: DeviceKind) -> Result<(), DeviceErrno> {
        match self.lock().engine.open(device(kind)) {
            Ok(()) => Ok(()),
            Err(hv_vss_kmod::OpenError::Busy) => Err(DeviceErrno::BUSY),
        }
    }

    fn close(&self, kind: DeviceKind) {
        self.call(|engine, now, fx| engine.close(device(kind), now, fx));
    }

    fn read_request(&self, kind: DeviceKind) -> Result<[u8; 64], DeviceErrno> {
        let message = self.lock().engine.read(device(kind));
        let mut bytes = [0u8; 64];
        bytes.copy_from_slice(message.as_bytes());
        Ok(bytes)
    }

    /// A rejected answer (late, wrong msgid or operation) still returns
    /// success, as the FreeBSD glue does (the base daemon exits on an ioctl
    /// error); the engine counts and logs it.
    fn write_answer(&self, kind: DeviceKind, message: &[u8; 64]) -> Result<(), DeviceErrno> {
        let answer = DeviceMessage::read_from_bytes(message).map_err(|_| DeviceErrno::INVALID)?;
        let _rejected = self.call(|engine, now, fx| engine.write(device(kind), &answer, now, fx));
        Ok(())
    }

    fn readiness(&self, kind: DeviceKind) -> Readiness {
        Readiness {
            readable: self.lock().engine.readable(device(kind)),
        }
    }

    fn attach_waker(&self, waker: PollWaker) {
        *self.waker.lock().unwrap_or_else(PoisonError::into_inner) = waker;
    }
}

fn millis_u32(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

/// Where message ids start: the time in nanoseconds, as the glue passes
/// the boot time, so ids differ between runs.
fn msgid_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_nanos()).unwrap_or(1))
}

/// The glue's side of [`hv_vss_kmod::Effects`]: records what the engine
/// asks for, to be performed by [`SimKernel::perform`] with the lock held.
struct Recorder<'a> {
    epoch: Instant,
    effects: Vec<Effect>,
    log: &'a mut Vec<String>,
    now: Millis,
}

impl Effects for Recorder<'_> {
    fn send_to_host(&mut self, xid: u64, reply: &[u8]) {
        self.effects.push(Effect::SendToHost {
            transaction: xid,
            bytes: reply.to_vec(),
        });
    }

    fn wake(&mut self, device: Device) {
        self.effects.push(Effect::Wake(device_kind(device)));
    }

    fn arm_timer(&mut self, deadline: Millis) {
        self.effects.push(Effect::ArmTimer(
            self.epoch + Duration::from_millis(deadline.0),
        ));
    }

    fn cancel_timer(&mut self) {
        self.effects.push(Effect::CancelTimer);
    }

    fn log(&mut self, event: &Event) {
        self.log.push(format!("{:>8} {event}", self.now));
    }
}

fn device(kind: DeviceKind) -> Device {
    match kind {
        DeviceKind::Fs => Device::Fs,
        DeviceKind::App => Device::App,
    }
}

fn device_kind(device: Device) -> DeviceKind {
    match device {
        Device::Fs => DeviceKind::Fs,
        Device::App => DeviceKind::App,
    }
}
