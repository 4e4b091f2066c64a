//! A closed world around the engine for the model check and the property
//! tests: a host that sends requests and counts replies, two parties that
//! open, read, answer (rightly or wrongly) and close, and a punctual timer.
//! After every event the world checks the engine's invariants against its
//! own, independent account of who is frozen.

use std::collections::BTreeMap;

use hv_vss_kmod::{Config, Device, Effects, Millis, VssEngine};
use hv_vss_proto::{
    DeviceMessage, DeviceOperation, DeviceStatus, HostOperation, HostStatus, parse_host_reply,
};

use super::vss;

/// What the host sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostSend {
    /// A request the parties take part in (HOT_BACKUP, FREEZE, THAW), with
    /// this many bytes of LUN data.
    Chain(HostOperation, usize),
    /// One the engine answers alone (BU_COMPLETE).
    Other,
    /// A VSS message cut short: answerable, must get a failure reply.
    Truncated,
    /// Shorter than an IC header: must get no reply.
    Runt,
}

/// One event of the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    Host(HostSend),
    Open(Device),
    Close(Device),
    Read(Device),
    /// Answer the last message this party read, with this status.
    Answer(Device, DeviceStatus),
    /// Answer the last message read, with its msgid changed.
    AnswerWrongMsgid(Device),
    /// Answer the last message read, with another operation.
    AnswerWrongOperation(Device),
    /// Time passes until the armed timer fires.
    Tick,
    /// Time passes by this much; the timer fires on time on the way.
    Wait(u32),
}

/// A host request the world is waiting on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostRequest {
    pub arrival: Millis,
    pub send: HostSend,
}

/// The effects, as the glue would hold them.
#[derive(Debug, Clone, Default)]
pub struct Calls {
    pub sent: Vec<(u64, Vec<u8>)>,
    pub timer: Option<Millis>,
}

impl Effects for Calls {
    fn send_to_host(&mut self, xid: u64, reply: &[u8]) {
        self.sent.push((xid, reply.to_vec()));
    }
    fn wake(&mut self, _device: Device) {}
    fn arm_timer(&mut self, deadline: Millis) {
        self.timer = Some(deadline);
    }
    fn cancel_timer(&mut self) {
        self.timer = None;
    }
}

/// What a party does with what it reads, as seen from outside the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartyView {
    pub open: bool,
    /// Read a FREEZE and no THAW since (the engine must never forget it).
    pub frozen: bool,
    /// The last message read, to answer (possibly late).
    pub held: Option<DeviceMessage>,
}

/// Interesting things the run reached (the model check asserts it covered them).
#[derive(Debug, Clone, Copy, Default)]
pub struct Coverage {
    pub ok_replies: u64,
    pub failure_replies_after_rollback: u64,
    pub rollback_timeouts: u64,
    pub rejected_answers: u64,
    pub busy_refusals: u64,
}

#[derive(Debug, Clone)]
pub struct World<const N: usize> {
    pub engine: VssEngine<N>,
    pub calls: Calls,
    pub now: Millis,
    pub config: Config,
    pub parties: [PartyView; 2],
    pub pending: BTreeMap<u64, HostRequest>,
    pub next_xid: u64,
    /// Rollback windows that closed (not part of the state key).
    pub rollback_timeouts_seen: u64,
}

impl<const N: usize> World<N> {
    pub fn new(config: Config) -> Self {
        Self {
            engine: VssEngine::new(config, 1),
            calls: Calls::default(),
            now: Millis(0),
            config,
            parties: [PartyView::default(); 2],
            pending: BTreeMap::new(),
            next_xid: 1,
            rollback_timeouts_seen: 0,
        }
    }

    /// Whether `step` can happen now (a party only answers what it read).
    pub fn enabled(&self, step: Step) -> bool {
        match step {
            Step::Open(device) => !self.parties[device.index()].open,
            Step::Close(device) | Step::Read(device) => self.parties[device.index()].open,
            Step::Answer(device, _)
            | Step::AnswerWrongMsgid(device)
            | Step::AnswerWrongOperation(device) => {
                let party = &self.parties[device.index()];
                party.open && party.held.is_some()
            }
            Step::Tick => self.calls.timer.is_some(),
            Step::Host(_) | Step::Wait(_) => true,
        }
    }

    /// Performs `step` and checks every invariant; `Err` says which broke.
    pub fn step(&mut self, step: Step, coverage: &mut Coverage) -> Result<(), String> {
        let busy_before = self.engine.transaction().is_some()
            || Device::ALL
                .iter()
                .any(|&d| self.engine.party(d).outstanding.is_some());
        let mut arrived = None;
        match step {
            Step::Host(send) => {
                let xid = self.next_xid;
                self.next_xid += 1;
                let packet = match send {
                    HostSend::Chain(operation, lun) => vss(operation, lun),
                    HostSend::Other => vss(HostOperation::BuComplete, 0),
                    HostSend::Truncated => vss(HostOperation::Freeze, 0)[..33].to_vec(),
                    HostSend::Runt => vec![0; 12],
                };
                self.pending.insert(
                    xid,
                    HostRequest {
                        arrival: self.now,
                        send,
                    },
                );
                arrived = Some((xid, send));
                self.engine
                    .on_host_packet(&packet, xid, self.now, &mut self.calls);
            }
            Step::Open(device) => {
                let party = &mut self.parties[device.index()];
                if self.engine.open(device).is_err() {
                    return Err(format!("open of closed {device} refused"));
                }
                *party = PartyView {
                    open: true,
                    ..PartyView::default()
                };
                // A second opener is always refused.
                if self.engine.open(device).is_ok() {
                    return Err(format!("second open of {device} allowed"));
                }
            }
            Step::Close(device) => {
                // Death of the holder thaws what it froze.
                self.parties[device.index()] = PartyView::default();
                self.engine.close(device, self.now, &mut self.calls);
            }
            Step::Read(device) => {
                let readable = self.engine.readable(device);
                let message = self.engine.read(device);
                let operation = message
                    .operation()
                    .map_err(|e| format!("read returned {e}"))?;
                if readable != (operation != DeviceOperation::None) {
                    return Err(format!("poll said {readable} but read gave {operation:?}"));
                }
                let party = &mut self.parties[device.index()];
                match operation {
                    DeviceOperation::None => {
                        if message != DeviceMessage::nothing_queued() {
                            return Err("empty read is not 'nothing queued'".into());
                        }
                    }
                    DeviceOperation::Freeze => {
                        party.frozen = true;
                        party.held = Some(message);
                    }
                    DeviceOperation::Thaw => {
                        party.frozen = false;
                        party.held = Some(message);
                    }
                    DeviceOperation::Check => party.held = Some(message),
                }
            }
            Step::Answer(device, status) => {
                let held = self.held(device)?;
                let current = self
                    .engine
                    .party(device)
                    .outstanding
                    .is_some_and(|o| o.delivered && o.msgid == held.msgid());
                let result =
                    self.engine
                        .write(device, &held.with_status(status), self.now, &mut self.calls);
                if result.is_ok() != current {
                    return Err(format!(
                        "answer to the message in hand: accepted={} but current={current}",
                        result.is_ok()
                    ));
                }
                if result.is_err() {
                    coverage.rejected_answers += 1;
                }
            }
            Step::AnswerWrongMsgid(device) => {
                let mut forged = self.held(device)?.with_status(DeviceStatus::Success);
                forged.msgid ^= 0x8000_0000_0000;
                if self
                    .engine
                    .write(device, &forged, self.now, &mut self.calls)
                    .is_ok()
                {
                    return Err("answer with a wrong msgid accepted".into());
                }
                coverage.rejected_answers += 1;
            }
            Step::AnswerWrongOperation(device) => {
                let mut forged = self.held(device)?.with_status(DeviceStatus::Success);
                forged.opt = match forged.opt {
                    1 => 3,
                    _ => 1,
                };
                if self
                    .engine
                    .write(device, &forged, self.now, &mut self.calls)
                    .is_ok()
                {
                    return Err("answer with a wrong operation accepted".into());
                }
                coverage.rejected_answers += 1;
            }
            Step::Tick => {
                let Some(at) = self.calls.timer else {
                    return Ok(());
                };
                self.fire(at)?;
            }
            Step::Wait(ms) => {
                let until = self.now.plus(ms);
                while let Some(at) = self.calls.timer.filter(|&at| at <= until) {
                    self.fire(at)?;
                    self.check_replies(None, busy_before, coverage)?;
                }
                self.now = until;
            }
        }
        self.check_replies(arrived, busy_before, coverage)?;
        coverage.rollback_timeouts += std::mem::take(&mut self.rollback_timeouts_seen);
        self.check_state()
    }

    fn held(&self, device: Device) -> Result<DeviceMessage, String> {
        self.parties[device.index()]
            .held
            .ok_or_else(|| format!("{device} answers without having read"))
    }

    /// The timer fires at `at` (time moves there first).
    fn fire(&mut self, at: Millis) -> Result<(), String> {
        if at < self.now {
            return Err(format!("timer armed in the past: {at} < {}", self.now));
        }
        self.now = at;
        self.calls.timer = None;
        let before = self.pending.len();
        let rollback_timeouts = self.engine.counters().rollback_timeouts;
        self.engine.on_timer(at, &mut self.calls);
        if self.engine.counters().rollback_timeouts != rollback_timeouts {
            self.rollback_timeouts_seen += 1;
        }
        let replied = !self.calls.sent.is_empty() || self.pending.len() != before;
        // Progress: a firing either answers or moves the deadline forward.
        if !replied {
            if let Some(next) = self.calls.timer {
                if next <= at {
                    return Err(format!("timer re-armed at {next}, not after {at}"));
                }
            }
        }
        Ok(())
    }

    /// Replies sent during the last event: each answers a pending request,
    /// once, in time; failure replies leave nothing frozen.
    fn check_replies(
        &mut self,
        arrived: Option<(u64, HostSend)>,
        busy_before: bool,
        coverage: &mut Coverage,
    ) -> Result<(), String> {
        for (xid, bytes) in std::mem::take(&mut self.calls.sent) {
            let Some(request) = self.pending.remove(&xid) else {
                return Err(format!(
                    "reply to xid {xid}, which is not pending (a second reply?)"
                ));
            };
            let reply = parse_host_reply(&bytes).map_err(|e| format!("unreadable reply: {e}"))?;
            if !reply.is_reply() {
                return Err("reply without RESPONSE flag".into());
            }
            if self.now > self.config.reply_bound(request.arrival) {
                return Err(format!(
                    "xid {xid} answered at {}, after its bound {}",
                    self.now,
                    self.config.reply_bound(request.arrival)
                ));
            }
            let status = reply.status().map_err(|e| format!("reply status: {e}"))?;
            match (request.send, status) {
                (HostSend::Runt, _) => return Err("a runt packet was answered".into()),
                (HostSend::Truncated, HostStatus::Ok) => {
                    return Err("a truncated packet was answered OK".into());
                }
                (HostSend::Other, HostStatus::Fail) => {
                    return Err("BU_COMPLETE answered with failure".into());
                }
                (HostSend::Chain(operation, _), status) => {
                    let refused_at_once = arrived.is_some_and(|(x, _)| x == xid) && busy_before;
                    if status == HostStatus::Ok {
                        coverage.ok_replies += 1;
                        if operation == HostOperation::Thaw {
                            if let Some(d) = Device::ALL
                                .into_iter()
                                .find(|d| self.parties[d.index()].frozen)
                            {
                                return Err(format!("THAW answered OK with {d} still frozen"));
                            }
                        }
                    } else if refused_at_once {
                        coverage.busy_refusals += 1;
                    } else {
                        // Nothing may stay frozen without its THAW on the way.
                        for device in Device::ALL {
                            let view = &self.parties[device.index()];
                            let thaw_queued =
                                self.engine.party(device).outstanding.is_some_and(|o| {
                                    o.operation == DeviceOperation::Thaw && !o.delivered
                                });
                            if view.frozen && !thaw_queued {
                                return Err(format!(
                                    "{} answered with failure while {device} is frozen with no THAW queued",
                                    operation.name()
                                ));
                            }
                            if view.frozen {
                                coverage.failure_replies_after_rollback += 1;
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        // Requests answered alone must be answered at once.
        if let Some((xid, send)) = arrived {
            let immediate = matches!(send, HostSend::Other | HostSend::Truncated)
                || (busy_before && matches!(send, HostSend::Chain(..)));
            if immediate && self.pending.contains_key(&xid) {
                return Err(format!("{send:?} not answered at once"));
            }
            if send == HostSend::Runt {
                self.pending.remove(&xid);
            }
        }
        Ok(())
    }

    /// Whatever is pending has a timer that will answer it in time, and the
    /// glue's view of the timer is the engine's.
    fn check_state(&self) -> Result<(), String> {
        if self.calls.timer != self.engine.timer() {
            return Err(format!(
                "glue timer {:?} differs from engine timer {:?}",
                self.calls.timer,
                self.engine.timer()
            ));
        }
        if self.pending.len() > 1 {
            return Err(format!("{} requests pending at once", self.pending.len()));
        }
        for (xid, request) in &self.pending {
            let Some(at) = self.calls.timer else {
                return Err(format!("xid {xid} pending with no timer armed"));
            };
            if at > self.config.reply_bound(request.arrival) {
                return Err(format!("xid {xid}: timer at {at} is past its reply bound"));
            }
            if self.engine.transaction().map(|t| t.xid) != Some(*xid) {
                return Err(format!(
                    "xid {xid} pending but not the engine's transaction"
                ));
            }
        }
        for device in Device::ALL {
            let view = &self.parties[device.index()];
            let party = self.engine.party(device);
            if view.open != party.open {
                return Err(format!("{device}: open differs"));
            }
            // The engine's account may be more cautious than the party's,
            // never less.
            if view.frozen && !party.maybe_frozen {
                return Err(format!("{device} is frozen but the engine forgot it"));
            }
        }
        Ok(())
    }

    /// A key that identifies the state up to time shifts and msgid values.
    pub fn key(&self) -> WorldKey {
        let rel = |m: Millis| {
            i64::try_from(m.0).unwrap_or(i64::MAX) - i64::try_from(self.now.0).unwrap_or(0)
        };
        let transaction = self.engine.transaction().map(|t| {
            let stage = match t.stage {
                hv_vss_kmod::Stage::Forward { step, failed } => {
                    (0u8, step, failed.map(|f| f.to_string()), 0)
                }
                hv_vss_kmod::Stage::Rollback { deadline, reason } => {
                    (1u8, 0, Some(reason.to_string()), rel(deadline))
                }
            };
            (
                t.operation,
                t.device_operation,
                rel(t.deadline),
                rel(t.arrival),
                stage,
            )
        });
        let parties = Device::ALL.map(|device| {
            let party = self.engine.party(device);
            let view = &self.parties[device.index()];
            let held = view.held.map(|h| {
                (
                    h.opt,
                    party.outstanding.is_some_and(|o| o.msgid == h.msgid()),
                )
            });
            (
                party.open,
                party.maybe_frozen,
                party.outstanding.map(|o| (o.operation, o.delivered)),
                view.frozen,
                held,
            )
        });
        let pending: Vec<_> = self
            .pending
            .values()
            .map(|r| (rel(r.arrival), r.send))
            .collect();
        WorldKey {
            transaction: format!("{transaction:?}"),
            parties: format!("{parties:?}"),
            pending: format!("{pending:?}"),
            timer: self.calls.timer.map(rel),
        }
    }

    /// The state with nothing abstracted: real times, msgids and xids. Only
    /// identical states share it (the cross-check of [`Self::key`]).
    pub fn concrete_key(&self) -> (WorldKey, u64, u64, String) {
        let msgids = Device::ALL.map(|d| {
            (
                self.engine.party(d).outstanding.map(|o| o.msgid),
                self.parties[d.index()].held.map(|h| h.msgid()),
            )
        });
        (self.key(), self.now.0, self.next_xid, format!("{msgids:?}"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorldKey {
    transaction: String,
    parties: String,
    pending: String,
    timer: Option<i64>,
}
