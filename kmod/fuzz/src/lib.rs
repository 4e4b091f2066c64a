//! The `engine_events` fuzz target: bytes → a sequence of events for the
//! kernel engine, with the engine's invariants checked after every event.
//!
//! The harness is an independent account of the world around the engine: a
//! host that knows which of its requests await a reply and by when, two
//! parties (`/dev/hv_fsvss_dev`, `/dev/hv_appvss_dev`) that know whether they
//! read a FREEZE, and a punctual timer. A violated invariant panics with the
//! step and the event, which libFuzzer reports as a crash.
//!
//! Invariants (after every event, and after every timer firing inside a wait):
//! - every reply answers a request that awaits one (so: at most one reply
//!   per request), parses as a reply, and comes by arrival + `timeout_ms` +
//!   `rollback_timeout_ms` of the config in force at arrival (timers fire on
//!   time here, so no slack is needed);
//! - requests the engine answers alone (negotiate, malformed, too long,
//!   non-chain operations, refusals while busy) are answered within the
//!   event, with the right status; packets without a whole IC header never;
//! - a CHECK/FREEZE/THAW failure reply (other than an at-once refusal) never
//!   leaves a party that read a FREEZE without a THAW outstanding for it;
//!   a THAW answered OK leaves nobody frozen; a FREEZE answered OK has the
//!   daemon frozen;
//! - at most one chain request pends, it is the engine's transaction, and a
//!   timer no later than its bound (and not in the past) is armed; the
//!   glue's timer is the engine's;
//! - the engine never forgets a frozen party; opens are exclusive; poll
//!   agrees with read; msgids are never 0 and never repeat back to back; an
//!   answer is accepted exactly when it names the device's delivered message;
//! - the counters match what the harness counted;
//! - once the input ends, running the timer answers whatever still pends.
//!
//! Nothing here allocates: the engine is reused (re-initialised in place),
//! packets are built in a fixed buffer, replies are recorded in a fixed array.

use core::cell::RefCell;
use core::fmt::{self, Write as _};

use hv_vss_kmod::proto::{
    DeviceMessage, DeviceOperation, DeviceStatus, HostOperation, HostStatus, IC_HEADER_LEN,
    MAX_HOST_PACKET_LEN, RequestBody, VSS_MESSAGE_LEN, Version, build_negotiate_request,
    build_vss_request, parse_host_packet, parse_host_reply,
};
use hv_vss_kmod::{Config, Counters, Device, Effects, Engine, Event, Millis};

/// Events per input: enough for several whole transactions with rollbacks,
/// few enough that one input stays cheap.
const MAX_EVENTS: usize = 96;
/// Timer firings one wait or the final drain may need (deadline, rollback
/// deadline, and a re-arm or two).
const MAX_FIRINGS: usize = 8;
/// Room for the longest packet we send: a few bytes over the engine's buffer.
const PACKET_ROOM: usize = MAX_HOST_PACKET_LEN + 64;

/// Configs the input picks from: the default, the ends of the sysctl ranges,
/// and mixes of them.
const CONFIGS: [Config; 8] = [
    Config::DEFAULT,
    Config {
        timeout_ms: 1_000,
        rollback_timeout_ms: 100,
    },
    Config {
        timeout_ms: 600_000,
        rollback_timeout_ms: 60_000,
    },
    Config {
        timeout_ms: 1_000,
        rollback_timeout_ms: 60_000,
    },
    Config {
        timeout_ms: 600_000,
        rollback_timeout_ms: 100,
    },
    Config {
        timeout_ms: 2_000,
        rollback_timeout_ms: 500,
    },
    Config {
        timeout_ms: 15_000,
        rollback_timeout_ms: 100,
    },
    Config {
        timeout_ms: 1_000,
        rollback_timeout_ms: 5_000,
    },
];

/// What one input reached, for checking that the seed corpus covers the
/// engine's paths (the fuzz target ignores it).
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    /// The engine's counters at the end.
    pub counters: Counters,
    /// CHECK/FREEZE/THAW requests answered OK (chain order: HOT_BACKUP,
    /// FREEZE, THAW).
    pub chains_ok: [u32; 3],
    /// CHECK/FREEZE/THAW requests answered with failure after they started.
    pub chains_failed: u32,
    /// Events run.
    pub events: usize,
}

/// Runs one input. Panics when an invariant breaks.
pub fn run(data: &[u8]) -> Outcome {
    thread_local! {
        static ENGINE: RefCell<Box<Engine>> =
            RefCell::new(Box::new(Engine::new(Config::DEFAULT, 1)));
        static PACKET: RefCell<Box<[u8; PACKET_ROOM]>> =
            RefCell::new(Box::new([0; PACKET_ROOM]));
    }
    ENGINE.with_borrow_mut(|engine| {
        PACKET.with_borrow_mut(|packet| {
            let mut input = Input { data, pos: 0 };
            let setup = Setup::decode(&mut input);
            // SAFETY: `engine` is a live, aligned `Box<Engine>`; init_in_place
            // overwrites it without dropping (the engine owns no resources).
            unsafe {
                Engine::init_in_place(
                    core::ptr::from_mut::<Engine>(&mut **engine),
                    setup.config,
                    setup.msgid_seed,
                );
            }
            let mut world = World::new(engine, &mut packet[..], setup);
            let mut step = 0;
            while step < MAX_EVENTS && !input.is_empty() {
                let action = Action::decode(&mut input);
                world.step = step;
                world.action = action;
                if !world.apply(action, data) {
                    break;
                }
                step += 1;
            }
            world.drain();
            world.outcome.counters = *world.engine.counters();
            world.outcome.events = step;
            world.outcome
        })
    })
}

// ----- decoding --------------------------------------------------------

/// A cursor over the input; reads past the end give zeros.
struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Input<'_> {
    fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }
}

#[derive(Debug, Clone, Copy)]
struct Setup {
    config: Config,
    msgid_seed: u64,
    start: Millis,
}

impl Setup {
    fn decode(input: &mut Input<'_>) -> Self {
        let b = input.byte();
        let config = CONFIGS[usize::from(b & 7)];
        let msgid_seed = match (b >> 3) & 3 {
            0 => 1,
            1 => u64::MAX, // the next msgid wraps past 0
            2 => 0,
            _ => input.u64(),
        };
        let start = match (b >> 5) & 3 {
            0 => 0,
            1 => u64::MAX - 30_000, // deadlines saturate mid-run
            2 => u64::MAX,
            _ => input.u64(),
        };
        Self {
            config,
            msgid_seed,
            start: Millis(start),
        }
    }
}

/// One event of the world.
#[derive(Debug, Clone, Copy)]
enum Action {
    Host(Packet),
    Open(Device),
    Close(Device),
    Read(Device),
    Answer(Device, Answer),
    /// Time moves to the armed timer, which fires.
    FireTimer,
    /// The callout runs although nothing is due (early or stale).
    SpuriousTimer,
    /// Time passes; the timer fires on time on the way.
    Wait(u32),
    SetConfig(Config),
    /// kldunload: the last event.
    Shutdown,
}

/// How to build a host packet.
#[derive(Debug, Clone, Copy)]
struct Packet {
    kind: PacketKind,
    /// Cut the packet to this length (if shorter).
    cut: Option<usize>,
    /// XOR this byte into the packet at this position (modulo its length).
    garble: Option<(u16, u8)>,
}

#[derive(Debug, Clone, Copy)]
enum PacketKind {
    Vss {
        operation: HostOperation,
        lun: usize,
    },
    Negotiate {
        framework: [Version; 3],
        framework_count: u8,
        message: [Version; 3],
        message_count: u8,
    },
    /// Input bytes `start..start + len`, taken as they are.
    Raw { start: usize, len: usize },
}

/// What a party writes (IOCHVVSSWRITE).
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// The message it read last, with this status, maybe with dirty
    /// reserved bytes.
    Held { status: u32, dirty: bool },
    /// That message with one msgid bit flipped.
    FlipMsgid(u8),
    /// That message with another operation value.
    OtherOperation(u32),
    /// The message it read before the last one.
    Stale,
    /// Made up from nothing.
    MadeUp { opt: u32, msgid: u64, status: u32 },
}

fn device(b: u8) -> Device {
    if b & 0x10 == 0 {
        Device::Fs
    } else {
        Device::App
    }
}

/// LUN data lengths: small, spread over the buffer, at the top of the
/// buffer, just past it.
fn lun_len(b: u8) -> usize {
    let b = usize::from(b);
    let max = MAX_HOST_PACKET_LEN - VSS_MESSAGE_LEN;
    match b {
        0..64 => b,
        64..128 => (b - 64) * 256,
        128..192 => max - (b - 128),
        192..224 => max + 1 + (b - 192),
        _ => (b - 224) * 512 + 1_000,
    }
}

fn version(b: u8) -> Version {
    Version::new(u16::from(b >> 4), u16::from(b & 3))
}

impl Action {
    fn decode(input: &mut Input<'_>) -> Self {
        let b = input.byte();
        let variant = b >> 4;
        match b & 0x0f {
            0 | 1 => {
                let operation = match variant % 3 {
                    0 => HostOperation::HotBackup,
                    1 => HostOperation::Freeze,
                    _ => HostOperation::Thaw,
                };
                let lun = lun_len(input.byte());
                Self::host(input, PacketKind::Vss { operation, lun }, variant & 8 != 0)
            }
            2 => {
                // Any operation, the engine-answered ones included.
                let operation =
                    HostOperation::ALL[usize::from(variant & 7) % HostOperation::ALL.len()];
                let lun = usize::from(input.byte() & 0x3f);
                Self::host(input, PacketKind::Vss { operation, lun }, variant & 8 != 0)
            }
            3 => {
                let framework_count = variant & 3;
                let message_count = (variant >> 2) & 3;
                let mut framework = [Version::new(0, 0); 3];
                let mut message = [Version::new(0, 0); 3];
                for v in framework.iter_mut().take(usize::from(framework_count)) {
                    *v = version(input.byte());
                }
                for v in message.iter_mut().take(usize::from(message_count)) {
                    *v = version(input.byte());
                }
                let kind = PacketKind::Negotiate {
                    framework,
                    framework_count,
                    message,
                    message_count,
                };
                Self::host(input, kind, true)
            }
            4 => {
                let len = usize::from(input.byte()) * (usize::from(variant) + 1);
                let start = input.pos;
                input.pos = input.pos.saturating_add(len);
                Self::Host(Packet {
                    kind: PacketKind::Raw { start, len },
                    cut: None,
                    garble: None,
                })
            }
            5 => Self::Open(device(b)),
            6 => Self::Close(device(b)),
            7 | 8 => Self::Read(device(b)),
            9 | 10 => {
                let how = match variant & 0xe {
                    0..=5 => Answer::Held {
                        status: DeviceStatus::Success.to_wire(),
                        dirty: false,
                    },
                    6 | 8 => Answer::Held {
                        status: DeviceStatus::Fail.to_wire(),
                        dirty: variant & 0xe == 8,
                    },
                    10 => Answer::Held {
                        status: input.u32(),
                        dirty: false,
                    },
                    12 => match input.byte() {
                        b @ 0..128 => Answer::FlipMsgid(b & 63),
                        b @ 128..192 => Answer::OtherOperation(u32::from(b & 7)),
                        192..224 => Answer::Stale,
                        _ => Answer::OtherOperation(input.u32()),
                    },
                    _ => Answer::MadeUp {
                        opt: u32::from(input.byte() & 3),
                        msgid: u64::from(input.byte()),
                        status: u32::from(input.byte() & 1),
                    },
                };
                Self::Answer(device(b), how)
            }
            11 => Self::FireTimer,
            12 => Self::Wait(match variant {
                0..4 => u32::from(input.byte()),
                4..8 => u32::from(input.byte()) * 64,
                8..12 => u32::from(input.byte()) * 1_000,
                12 => 15_000,
                13 => 5_000,
                14 => 20_000,
                _ => input.u32(),
            }),
            13 => Self::SetConfig(CONFIGS[usize::from(variant & 7)]),
            14 => Self::SpuriousTimer,
            _ if variant == 0xf => Self::Shutdown,
            _ => Self::FireTimer,
        }
    }

    /// A built packet, maybe cut short or garbled as the next byte says.
    fn host(input: &mut Input<'_>, kind: PacketKind, may_mangle: bool) -> Self {
        let mut packet = Packet {
            kind,
            cut: None,
            garble: None,
        };
        if may_mangle {
            let how = input.byte();
            if how & 1 != 0 {
                packet.cut = Some(usize::from(how >> 1) % (VSS_MESSAGE_LEN + 8));
            }
            if how & 2 != 0 {
                packet.garble = Some((input.u16(), input.byte() | 1));
            }
        }
        Self::Host(packet)
    }
}

// ----- the world -------------------------------------------------------

/// What the host expects for a request it sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A CHECK/FREEZE/THAW the engine took on.
    Chain(HostOperation),
    /// Answered within the event, with this status (`None`: either).
    Now(Option<HostStatus>),
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    xid: u64,
    arrival: Millis,
    /// Arrival + `timeout_ms` + `rollback_timeout_ms` of the config in force
    /// at arrival.
    bound: Millis,
    /// `timeout_ms` at arrival.
    timeout_ms: u32,
    expect: Expect,
}

/// One reply the engine sent, as the host read it.
#[derive(Debug, Clone, Copy)]
struct Reply {
    xid: u64,
    len: usize,
    /// `None`: the reply did not parse, or its status is unknown.
    status: Option<HostStatus>,
    is_response: bool,
}

/// The effects, recorded without allocating.
#[derive(Debug)]
struct Glue {
    replies: [Reply; 4],
    count: usize,
    overflow: bool,
    timer: Option<Millis>,
    /// Replies sent, by the status the host read.
    ok: u64,
    failed: u64,
}

/// A `fmt::Write` that drops everything: log lines are formatted (their
/// `Display` must not panic) but not kept.
struct Discard;

impl fmt::Write for Discard {
    fn write_str(&mut self, _: &str) -> fmt::Result {
        Ok(())
    }
}

impl Effects for Glue {
    fn send_to_host(&mut self, xid: u64, reply: &[u8]) {
        let parsed = parse_host_reply(reply);
        let record = Reply {
            xid,
            len: reply.len(),
            status: parsed.ok().and_then(|r| r.status().ok()),
            is_response: parsed.is_ok_and(|r| r.is_reply()),
        };
        match record.status {
            Some(HostStatus::Ok) => self.ok += 1,
            Some(HostStatus::Fail) => self.failed += 1,
            None => {}
        }
        match self.replies.get_mut(self.count) {
            Some(slot) => {
                *slot = record;
                self.count += 1;
            }
            None => self.overflow = true,
        }
    }
    fn wake(&mut self, _device: Device) {}
    fn arm_timer(&mut self, deadline: Millis) {
        self.timer = Some(deadline);
    }
    fn cancel_timer(&mut self) {
        self.timer = None;
    }
    fn log(&mut self, event: &Event) {
        let _ = event.level();
        let _ = write!(Discard, "{event}");
    }
}

/// A party as seen from outside the engine.
#[derive(Debug, Clone, Copy, Default)]
struct PartyView {
    open: bool,
    /// Read a FREEZE and no THAW since.
    frozen: bool,
    held: Option<DeviceMessage>,
    previous: Option<DeviceMessage>,
}

/// Counters as the harness counts them.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    host_packets: u64,
    requests: u64,
    malformed: u64,
    unanswerable: u64,
    busy: u64,
    rejected_acks: u64,
}

struct World<'a> {
    engine: &'a mut Engine,
    packet: &'a mut [u8],
    glue: Glue,
    now: Millis,
    parties: [PartyView; 2],
    pending: [Option<Pending>; 3],
    next_xid: u64,
    last_msgid: u64,
    tally: Tally,
    counters_before: [u64; 12],
    shutting_down: bool,
    outcome: Outcome,
    // For the panic message.
    setup: Setup,
    step: usize,
    action: Action,
}

macro_rules! violated {
    ($world:expr, $($arg:tt)*) => {
        panic!(
            "invariant violated at step {} ({:?}), now {}, setup {:?}: {}\nengine: {:?}\nparties: {:?}\npending: {:?}",
            $world.step,
            $world.action,
            $world.now,
            $world.setup,
            format_args!($($arg)*),
            $world.engine,
            $world.parties,
            $world.pending,
        )
    };
}

impl<'a> World<'a> {
    fn new(engine: &'a mut Engine, packet: &'a mut [u8], setup: Setup) -> Self {
        Self {
            engine,
            packet,
            glue: Glue {
                replies: [Reply {
                    xid: 0,
                    len: 0,
                    status: None,
                    is_response: false,
                }; 4],
                count: 0,
                overflow: false,
                timer: None,
                ok: 0,
                failed: 0,
            },
            now: setup.start,
            parties: [PartyView::default(); 2],
            pending: [None; 3],
            next_xid: 1,
            last_msgid: 0,
            tally: Tally::default(),
            counters_before: [0; 12],
            shutting_down: false,
            outcome: Outcome::default(),
            setup,
            step: 0,
            action: Action::SpuriousTimer,
        }
    }

    fn busy(&self) -> bool {
        self.engine.transaction().is_some()
            || Device::ALL
                .iter()
                .any(|&d| self.engine.party(d).outstanding.is_some())
    }

    /// Performs one event and checks everything; `false` ends the input.
    fn apply(&mut self, action: Action, data: &[u8]) -> bool {
        self.counters_before = self.engine.counters().values();
        match action {
            Action::Host(packet) => self.host(packet, data),
            Action::Open(device) => {
                let was_open = self.parties[device.index()].open;
                if self.engine.open(device).is_ok() == was_open {
                    violated!(
                        self,
                        "open of {device} (open before: {was_open}) gave the wrong answer"
                    );
                }
                if !was_open {
                    self.parties[device.index()] = PartyView {
                        open: true,
                        ..PartyView::default()
                    };
                }
            }
            Action::Close(device) => {
                // The holder's death ends whatever it froze.
                self.parties[device.index()] = PartyView::default();
                self.engine.close(device, self.now, &mut self.glue);
            }
            Action::Read(device) => self.read(device),
            Action::Answer(device, how) => self.answer(device, how),
            Action::FireTimer => {
                if let Some(at) = self.glue.timer {
                    self.fire(at);
                }
            }
            Action::SpuriousTimer => {
                // The callout ran (early, or after the request ended): the
                // glue's timer is spent, as after any firing.
                let before = self.engine.timer();
                self.glue.timer = None;
                self.engine.on_timer(self.now, &mut self.glue);
                // Early: nothing happens but re-arming the same deadline.
                if before.is_some_and(|at| at > self.now) && self.engine.timer() != before {
                    violated!(self, "an early timer call moved the timer from {before:?}");
                }
            }
            Action::Wait(ms) => {
                let until = self.now.plus(ms);
                let mut firings = 0;
                while let Some(at) = self.glue.timer.filter(|&at| at <= until) {
                    firings += 1;
                    if firings > MAX_FIRINGS {
                        violated!(self, "timer keeps firing without progress");
                    }
                    self.fire(at);
                    self.check_replies(None);
                    self.check_state();
                }
                self.now = until;
            }
            Action::SetConfig(config) => {
                // A request in flight keeps the bound of its arrival config.
                self.engine.set_config(config);
            }
            Action::Shutdown => {
                self.shutting_down = true;
                self.engine.shutdown(&mut self.glue);
                self.check_replies(None);
                if let Some(p) = self.pending.iter().flatten().next() {
                    violated!(self, "xid {} still pending after shutdown", p.xid);
                }
                if self.glue.timer.is_some() || self.engine.timer().is_some() {
                    violated!(self, "timer armed after shutdown");
                }
                return false;
            }
        }
        if !matches!(action, Action::Host(_)) {
            self.check_replies(None);
        }
        self.check_state();
        true
    }

    fn host(&mut self, packet: Packet, data: &[u8]) {
        let len = self.build(packet, data);
        let xid = self.next_xid;
        self.next_xid += 1;
        let busy_before = self.busy();
        let bytes = &self.packet[..len];
        self.tally.host_packets += 1;
        let expect = if len > MAX_HOST_PACKET_LEN {
            self.tally.malformed += 1;
            Some(Expect::Now(Some(HostStatus::Fail)))
        } else {
            match parse_host_packet(bytes) {
                Err(error) => {
                    self.tally.malformed += 1;
                    if len < IC_HEADER_LEN || !error.answerable() {
                        self.tally.unanswerable += 1;
                        None
                    } else {
                        Some(Expect::Now(Some(HostStatus::Fail)))
                    }
                }
                Ok(request) => match request.body {
                    RequestBody::Negotiate(_) => Some(Expect::Now(None)),
                    RequestBody::Vss { operation, .. } => {
                        if operation.device_operation().is_none() {
                            Some(Expect::Now(Some(HostStatus::Ok)))
                        } else {
                            self.tally.requests += 1;
                            if busy_before {
                                self.tally.busy += 1;
                                Some(Expect::Now(Some(HostStatus::Fail)))
                            } else {
                                Some(Expect::Chain(operation))
                            }
                        }
                    }
                },
            }
        };
        if let Some(expect) = expect {
            let pending = Pending {
                xid,
                arrival: self.now,
                bound: self.engine.config().reply_bound(self.now),
                timeout_ms: self.engine.config().timeout_ms,
                expect,
            };
            match self.pending.iter_mut().find(|p| p.is_none()) {
                Some(slot) => *slot = Some(pending),
                None => violated!(self, "more requests pending than the harness holds"),
            }
        }
        self.engine
            .on_host_packet(&self.packet[..len], xid, self.now, &mut self.glue);
        self.check_replies(Some(xid));
        // Whatever the engine answers alone is answered now.
        for p in self.pending.iter().flatten() {
            if matches!(p.expect, Expect::Now(_)) {
                violated!(self, "xid {} ({:?}) not answered at once", p.xid, p.expect);
            }
        }
    }

    /// Writes the packet into the buffer; returns its length.
    fn build(&mut self, packet: Packet, data: &[u8]) -> usize {
        let mut len = match packet.kind {
            PacketKind::Vss { operation, lun } => {
                build_vss_request(self.packet, operation, lun).unwrap_or(0)
            }
            PacketKind::Negotiate {
                framework,
                framework_count,
                message,
                message_count,
            } => build_negotiate_request(
                self.packet,
                &framework[..usize::from(framework_count)],
                &message[..usize::from(message_count)],
            )
            .unwrap_or(0),
            PacketKind::Raw { start, len } => {
                let len = len.min(self.packet.len());
                let tail = data.get(start..).unwrap_or(&[]);
                let n = len.min(tail.len());
                self.packet[..n].copy_from_slice(&tail[..n]);
                self.packet[n..len].fill(0);
                len
            }
        };
        if let Some(cut) = packet.cut {
            len = len.min(cut);
        }
        if let Some((at, xor)) = packet.garble
            && len > 0
        {
            self.packet[usize::from(at) % len] ^= xor;
        }
        len
    }

    fn read(&mut self, device: Device) {
        let readable = self.engine.readable(device);
        let message = self.engine.read(device);
        let party = &mut self.parties[device.index()];
        let operation = match message.operation() {
            Ok(op) => op,
            Err(e) => violated!(self, "read on {device} gave {e}"),
        };
        if readable != (operation != DeviceOperation::None) {
            violated!(self, "poll said {readable} but read gave {operation:?}");
        }
        if operation == DeviceOperation::None {
            if message != DeviceMessage::nothing_queued() {
                violated!(self, "an empty read is not 'nothing queued': {message:?}");
            }
            return;
        }
        if !party.open {
            violated!(self, "{device} is closed but read gave {operation:?}");
        }
        if message.msgid() == 0 || message.msgid() == self.last_msgid {
            violated!(
                self,
                "msgid {:#x} handed out (last {:#x})",
                message.msgid(),
                self.last_msgid
            );
        }
        self.last_msgid = message.msgid();
        party.previous = party.held.replace(message);
        match operation {
            DeviceOperation::Freeze => party.frozen = true,
            DeviceOperation::Thaw => party.frozen = false,
            DeviceOperation::Check | DeviceOperation::None => {}
        }
    }

    fn answer(&mut self, device: Device, how: Answer) {
        let party = &self.parties[device.index()];
        let held = party
            .held
            .unwrap_or_else(|| DeviceMessage::new(DeviceOperation::Check, 1));
        let mut answer = match how {
            Answer::Held { status, dirty } => {
                let mut m = held;
                m.status = status;
                if dirty {
                    m.reserved[7] = 0x5a;
                }
                m
            }
            Answer::FlipMsgid(bit) => {
                let mut m = held.with_status(DeviceStatus::Success);
                m.msgid ^= 1u64 << bit;
                m
            }
            Answer::OtherOperation(opt) => {
                let mut m = held.with_status(DeviceStatus::Success);
                m.opt = if opt == m.opt {
                    opt.wrapping_add(1)
                } else {
                    opt
                };
                m
            }
            Answer::Stale => party
                .previous
                .unwrap_or(held)
                .with_status(DeviceStatus::Success),
            Answer::MadeUp { opt, msgid, status } => {
                let mut m = DeviceMessage::new(DeviceOperation::None, msgid);
                m.opt = opt;
                m.status = status;
                m
            }
        };
        if !matches!(how, Answer::Held { dirty: true, .. }) {
            answer.reserved = [0; 48];
        }
        let engine_party = *self.engine.party(device);
        let matches = engine_party.open
            && engine_party.outstanding.is_some_and(|o| {
                o.delivered && o.msgid == answer.msgid() && o.operation.to_wire() == answer.opt
            });
        let result = self.engine.write(device, &answer, self.now, &mut self.glue);
        if result.is_ok() != matches {
            violated!(
                self,
                "answer {answer:?} on {device}: result {result:?}, but matching={matches}"
            );
        }
        match result {
            Ok(()) => {
                if answer.opt == DeviceOperation::Thaw.to_wire() {
                    // Answering a THAW: the party is thawed (it thawed
                    // before answering; the view already says so).
                    self.parties[device.index()].frozen = false;
                }
            }
            Err(_) => self.tally.rejected_acks += 1,
        }
    }

    /// The timer fires at `at`; time moves there first.
    fn fire(&mut self, at: Millis) {
        if at < self.now {
            violated!(self, "timer armed in the past: {at}");
        }
        self.now = at;
        self.glue.timer = None;
        self.engine.on_timer(at, &mut self.glue);
        // Progress: a firing answers, or moves the deadline forward.
        if self.glue.count == 0
            && let Some(next) = self.glue.timer
            && next <= at
            && at < Millis(u64::MAX)
        {
            violated!(self, "timer re-armed at {next}, not after {at}");
        }
    }

    /// Checks the replies recorded since the last call. `arrived`: the xid
    /// of the packet of this event, if it brought one.
    fn check_replies(&mut self, arrived: Option<u64>) {
        if self.glue.overflow {
            violated!(
                self,
                "more than {} replies in one event",
                self.glue.replies.len()
            );
        }
        for i in 0..self.glue.count {
            let reply = self.glue.replies[i];
            let Some(slot) = self
                .pending
                .iter_mut()
                .find(|p| p.is_some_and(|p| p.xid == reply.xid))
            else {
                violated!(
                    self,
                    "reply to xid {}, which awaits none (a second reply?)",
                    reply.xid
                );
            };
            let Some(request) = slot.take() else {
                unreachable!("the slot was found by its content");
            };
            if !reply.is_response {
                violated!(self, "reply to xid {} does not parse as a reply", reply.xid);
            }
            if reply.len < IC_HEADER_LEN {
                violated!(self, "reply of {} bytes", reply.len);
            }
            let Some(status) = reply.status else {
                violated!(self, "reply to xid {} has no known status", reply.xid);
            };
            if self.now > request.bound {
                violated!(
                    self,
                    "xid {} (arrived {}) answered after its bound {}",
                    reply.xid,
                    request.arrival,
                    request.bound
                );
            }
            match request.expect {
                Expect::Now(expected) => {
                    if arrived != Some(reply.xid) {
                        violated!(self, "xid {} answered later than at once", reply.xid);
                    }
                    if expected.is_some_and(|e| e != status) {
                        violated!(
                            self,
                            "xid {} answered {status:?}, expected {expected:?}",
                            reply.xid
                        );
                    }
                }
                Expect::Chain(operation) => self.check_chain_reply(operation, status),
            }
        }
        self.glue.count = 0;
    }

    fn check_chain_reply(&mut self, operation: HostOperation, status: HostStatus) {
        let views = self.parties;
        let frozen = |d: Device| views[d.index()].frozen;
        match status {
            HostStatus::Ok => {
                let i = match operation {
                    HostOperation::HotBackup => 0,
                    HostOperation::Freeze => 1,
                    _ => 2,
                };
                self.outcome.chains_ok[i] += 1;
            }
            HostStatus::Fail => self.outcome.chains_failed += 1,
        }
        match status {
            HostStatus::Ok => match operation {
                HostOperation::Thaw => {
                    if let Some(d) = Device::ALL.into_iter().find(|&d| frozen(d)) {
                        violated!(self, "THAW answered OK with {d} still frozen");
                    }
                }
                HostOperation::Freeze if !frozen(Device::Fs) => {
                    violated!(self, "FREEZE answered OK but the daemon did not freeze");
                }
                _ => {}
            },
            HostStatus::Fail => {
                if self.shutting_down {
                    // Detach: the devices go away with their holders.
                    return;
                }
                for device in Device::ALL {
                    let thaw_outstanding = self
                        .engine
                        .party(device)
                        .outstanding
                        .is_some_and(|o| o.operation == DeviceOperation::Thaw);
                    if frozen(device) && !thaw_outstanding {
                        violated!(
                            self,
                            "{} answered with failure while {device} is frozen with no THAW outstanding",
                            operation.name()
                        );
                    }
                }
            }
        }
    }

    /// State invariants after an event.
    fn check_state(&self) {
        if self.glue.timer != self.engine.timer() {
            violated!(
                self,
                "glue timer {:?} differs from engine timer {:?}",
                self.glue.timer,
                self.engine.timer()
            );
        }
        let mut chains = 0;
        for p in self.pending.iter().flatten() {
            chains += 1;
            let Some(at) = self.glue.timer else {
                violated!(self, "xid {} pending with no timer armed", p.xid);
            };
            if at > p.bound {
                violated!(
                    self,
                    "xid {}: timer at {at} is past its bound {}",
                    p.xid,
                    p.bound
                );
            }
            if at < self.now {
                violated!(self, "xid {}: timer at {at} is in the past", p.xid);
            }
            if self.engine.transaction().map(|t| t.xid) != Some(p.xid) {
                violated!(
                    self,
                    "xid {} pending but not the engine's transaction",
                    p.xid
                );
            }
        }
        if chains > 1 {
            violated!(self, "{chains} requests pending at once");
        }
        for device in Device::ALL {
            let view = &self.parties[device.index()];
            let party = self.engine.party(device);
            if view.open != party.open {
                violated!(self, "{device}: open differs");
            }
            if view.frozen && !party.maybe_frozen {
                violated!(self, "{device} is frozen but the engine forgot it");
            }
        }
        self.check_counters();
    }

    fn check_counters(&self) {
        let c = self.engine.counters();
        let t = &self.tally;
        let expected = [
            ("host_packets", c.host_packets, t.host_packets),
            ("requests", c.requests, t.requests),
            ("malformed", c.malformed, t.malformed),
            ("unanswerable", c.unanswerable, t.unanswerable),
            ("busy", c.busy, t.busy),
            ("rejected_acks", c.rejected_acks, t.rejected_acks),
        ];
        for (name, got, want) in expected {
            if got != want {
                violated!(self, "counter {name} is {got}, expected {want}");
            }
        }
        let values = c.values();
        if let Some(i) = (0..values.len()).find(|&i| values[i] < self.counters_before[i]) {
            violated!(self, "counter {} went down", Counters::NAMES[i]);
        }
        if c.rollback_timeouts > c.rollbacks || c.timeouts > c.requests {
            violated!(self, "counters disagree: {c:?}");
        }
        if (c.replies_ok, c.replies_failed) != (self.glue.ok, self.glue.failed) {
            violated!(
                self,
                "counters count {} OK and {} failed replies, the host got {} and {}",
                c.replies_ok,
                c.replies_failed,
                self.glue.ok,
                self.glue.failed
            );
        }
    }

    /// The input ended: the timer alone must answer whatever still pends.
    fn drain(&mut self) {
        self.action = Action::FireTimer;
        self.step += 1;
        let mut firings = 0;
        while let Some(at) = self.glue.timer {
            firings += 1;
            if firings > MAX_FIRINGS {
                violated!(self, "timer keeps firing without progress");
            }
            self.counters_before = self.engine.counters().values();
            self.fire(at);
            self.check_replies(None);
            self.check_state();
        }
        if let Some(p) = self.pending.iter().flatten().next() {
            violated!(self, "xid {} never answered", p.xid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs every file of `dir`; returns how many and what they reached
    /// together (counters and chain outcomes summed).
    fn run_dir(dir: &str) -> (usize, Outcome) {
        let mut total = Outcome::default();
        let mut inputs = 0;
        for entry in std::fs::read_dir(dir).expect("corpus directory") {
            let path = entry.expect("directory entry").path();
            let data = std::fs::read(&path).expect("corpus file");
            let outcome = run(&data);
            inputs += 1;
            let (c, t) = (outcome.counters, &mut total.counters);
            for (sum, n) in [
                (&mut t.host_packets, c.host_packets),
                (&mut t.requests, c.requests),
                (&mut t.replies_ok, c.replies_ok),
                (&mut t.replies_failed, c.replies_failed),
                (&mut t.malformed, c.malformed),
                (&mut t.unanswerable, c.unanswerable),
                (&mut t.busy, c.busy),
                (&mut t.daemon_absent, c.daemon_absent),
                (&mut t.timeouts, c.timeouts),
                (&mut t.rollbacks, c.rollbacks),
                (&mut t.rollback_timeouts, c.rollback_timeouts),
                (&mut t.rejected_acks, c.rejected_acks),
            ] {
                *sum += n;
            }
            for (sum, n) in total.chains_ok.iter_mut().zip(outcome.chains_ok) {
                *sum += n;
            }
            total.chains_failed += outcome.chains_failed;
            total.events += outcome.events;
        }
        (inputs, total)
    }

    /// Every checked-in seed runs clean, and together they reach each path
    /// the invariants are about (so the fuzzer starts from all of them).
    #[test]
    fn seed_corpus_reaches_every_path() {
        let (seeds, total) = run_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/corpus/engine_events"));
        println!("{seeds} seeds, together: {total:?}");
        let c = total.counters;
        for (what, n) in [
            ("malformed", c.malformed),
            ("unanswerable", c.unanswerable),
            ("busy", c.busy),
            ("daemon_absent", c.daemon_absent),
            ("timeouts", c.timeouts),
            ("rollbacks", c.rollbacks),
            ("rollback_timeouts", c.rollback_timeouts),
            ("rejected_acks", c.rejected_acks),
            ("HOT_BACKUP ok", total.chains_ok[0].into()),
            ("FREEZE ok", total.chains_ok[1].into()),
            ("THAW ok", total.chains_ok[2].into()),
            ("chain failed", total.chains_failed.into()),
        ] {
            assert!(n > 0, "no seed reaches {what}");
        }
    }

    /// What a grown corpus reaches: `HVVSS_FUZZ_CORPUS=dir cargo test --
    /// --ignored --nocapture`.
    #[test]
    #[ignore = "needs HVVSS_FUZZ_CORPUS"]
    fn corpus_summary() {
        let dir = std::env::var("HVVSS_FUZZ_CORPUS")
            .expect("set HVVSS_FUZZ_CORPUS to a corpus directory");
        let (inputs, total) = run_dir(&dir);
        println!("{inputs} inputs, together: {total:?}");
    }
}
