//! The state machine.

use core::fmt;
use core::ptr::addr_of_mut;

use hv_vss_proto::{
    DeviceMessage, DeviceOperation, DeviceStatus, HostOperation, HostStatus, MAX_HOST_PACKET_LEN,
    NEGOTIATE_MIN_REPLY_LEN, Negotiated, RequestBody, VSS_MAXIMUM, negotiate, parse_host_packet,
    write_failure_reply, write_negotiate_reply, write_vss_reply,
};

use crate::counters::{Counters, LastResult};
use crate::effects::Effects;
use crate::event::{AckRejection, Event, FailReason};
use crate::types::{Config, Device, Millis, OpenError};

/// The engine with a receive-sized buffer: what the kernel and the
/// simulator use.
pub type Engine = VssEngine<MAX_HOST_PACKET_LEN>;

/// The engine, holding two `N`-byte packet buffers: its own copy of the
/// request in progress (the reply is written into it) and a scratch buffer
/// for immediate replies. Host packets longer than `N` are answered with
/// failure. Use [`Engine`] (`N` = [`MAX_HOST_PACKET_LEN`], the IC receive
/// buffer); tests use a small `N` to keep model-checker states small.
#[derive(Clone)]
pub struct VssEngine<const N: usize> {
    config: Config,
    parties: [Party; 2],
    transaction: Option<Transaction>,
    /// The deadline the caller's timer is armed for, as far as we asked.
    timer: Option<Millis>,
    next_msgid: u64,
    negotiated: Option<Negotiated>,
    counters: Counters,
    last_result: Option<LastResult>,
    request: [u8; N],
    scratch: [u8; N],
}

/// What the engine knows about one device and the process that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Party {
    /// Someone holds the device open (one opener at a time).
    pub open: bool,
    /// The party read a FREEZE and has not answered a THAW since: it may
    /// hold filesystems or application state frozen. Closing clears it (a
    /// dead daemon's UFS suspensions end with its descriptors).
    pub maybe_frozen: bool,
    /// The message queued for, or handed to, this party and not answered
    /// yet. At most one per device.
    pub outstanding: Option<Outstanding>,
}

/// A message for a party that awaits its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Outstanding {
    pub operation: DeviceOperation,
    /// Fresh for every message, so a late answer to an earlier one never
    /// matches.
    pub msgid: u64,
    /// Read with IOCHVVSSREAD (otherwise still queued; poll reports it).
    pub delivered: bool,
}

/// The host request in progress (CHECK, FREEZE or THAW).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Transaction {
    /// The VMBus transaction id the reply must carry.
    pub xid: u64,
    pub operation: HostOperation,
    /// What the parties are asked.
    pub device_operation: DeviceOperation,
    /// Bytes of the request kept in the engine's buffer.
    pub len: usize,
    pub arrival: Millis,
    /// End of the chain's time (arrival + [`Config::timeout_ms`]).
    pub deadline: Millis,
    /// [`Config::rollback_timeout_ms`] at arrival: a configuration change
    /// affects the next request, never the bound promised to this one.
    pub rollback_timeout_ms: u32,
    pub stage: Stage,
}

/// Where a [`Transaction`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Asking the parties in chain order; `step` indexes the chain
    /// (CHECK/FREEZE: app, daemon; THAW: daemon, app). A THAW goes on to
    /// the next party after a failure, which `failed` remembers.
    Forward {
        step: u8,
        failed: Option<FailReason>,
    },
    /// The request failed; waiting (until `deadline`) for the parties to
    /// answer the THAW they were sent before the host gets HV_E_FAIL.
    Rollback {
        deadline: Millis,
        reason: FailReason,
    },
}

/// The order in which parties are asked.
const fn chain(operation: DeviceOperation) -> [Device; 2] {
    match operation {
        DeviceOperation::Thaw => [Device::Fs, Device::App],
        DeviceOperation::None | DeviceOperation::Check | DeviceOperation::Freeze => {
            [Device::App, Device::Fs]
        }
    }
}

/// How to answer a packet at once.
#[derive(Clone, Copy)]
enum Immediate {
    Failure,
    Vss(HostStatus),
    Negotiated(Negotiated),
}

impl<const N: usize> fmt::Debug for VssEngine<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VssEngine")
            .field("config", &self.config)
            .field("parties", &self.parties)
            .field("transaction", &self.transaction)
            .field("timer", &self.timer)
            .field("next_msgid", &self.next_msgid)
            .field("negotiated", &self.negotiated)
            .field("counters", &self.counters)
            .field("last_result", &self.last_result)
            .finish_non_exhaustive()
    }
}

impl<const N: usize> VssEngine<N> {
    /// Compile-time check that `N` can hold the smallest negotiate reply.
    const BUFFER_HOLDS_A_NEGOTIATE_REPLY: () = assert!(
        N >= NEGOTIATE_MIN_REPLY_LEN,
        "buffer too small for a negotiate reply"
    );

    /// A new engine: both devices closed, nothing in progress. `msgid_seed`
    /// is where message ids start (the glue passes the boot time in
    /// nanoseconds, so ids differ across module loads, as the base driver's
    /// do).
    #[must_use]
    pub const fn new(config: Config, msgid_seed: u64) -> Self {
        let () = Self::BUFFER_HOLDS_A_NEGOTIATE_REPLY;
        Self {
            config,
            parties: [Party {
                open: false,
                maybe_frozen: false,
                outstanding: None,
            }; 2],
            transaction: None,
            timer: None,
            next_msgid: first_msgid(msgid_seed),
            negotiated: None,
            counters: Counters {
                host_packets: 0,
                requests: 0,
                replies_ok: 0,
                replies_failed: 0,
                malformed: 0,
                unanswerable: 0,
                busy: 0,
                daemon_absent: 0,
                timeouts: 0,
                rollbacks: 0,
                rollback_timeouts: 0,
                rejected_acks: 0,
            },
            last_result: None,
            request: [0; N],
            scratch: [0; N],
        }
    }

    /// Initialises an engine in place, without building it on the stack
    /// first (kernel stacks are a few pages; the engine holds two packet
    /// buffers). Equivalent to writing [`Self::new`] to `slot`.
    ///
    /// # Safety
    /// `slot` must be valid for writes of `size_of::<Self>()` bytes and
    /// aligned for `Self`. Any previous value is overwritten without being
    /// dropped (the engine owns no resources, so nothing leaks).
    pub unsafe fn init_in_place(slot: *mut Self, config: Config, msgid_seed: u64) {
        let () = Self::BUFFER_HOLDS_A_NEGOTIATE_REPLY;
        // SAFETY: the caller guarantees `slot` is valid and aligned for a
        // `Self`; every field is written exactly once through a raw field
        // pointer, so no reference to uninitialised memory is created and
        // the two buffers are zeroed in place instead of being copied from
        // a stack temporary.
        unsafe {
            addr_of_mut!((*slot).config).write(config);
            addr_of_mut!((*slot).parties).write([Party::default(); 2]);
            addr_of_mut!((*slot).transaction).write(None);
            addr_of_mut!((*slot).timer).write(None);
            addr_of_mut!((*slot).next_msgid).write(first_msgid(msgid_seed));
            addr_of_mut!((*slot).negotiated).write(None);
            addr_of_mut!((*slot).counters).write(Counters::default());
            addr_of_mut!((*slot).last_result).write(None);
            addr_of_mut!((*slot).request).cast::<u8>().write_bytes(0, N);
            addr_of_mut!((*slot).scratch).cast::<u8>().write_bytes(0, N);
        }
    }

    // ----- introspection -------------------------------------------------

    #[must_use]
    pub const fn config(&self) -> Config {
        self.config
    }

    /// Sets the tunables; the request in progress keeps its deadlines.
    pub const fn set_config(&mut self, config: Config) {
        self.config = config;
    }

    #[must_use]
    pub const fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The outcome of the last CHECK/FREEZE/THAW that was answered.
    #[must_use]
    pub const fn last_result(&self) -> Option<LastResult> {
        self.last_result
    }

    /// The versions of the last successful negotiation.
    #[must_use]
    pub const fn negotiated(&self) -> Option<Negotiated> {
        self.negotiated
    }

    /// What the engine knows about `device`'s holder.
    #[must_use]
    pub const fn party(&self, device: Device) -> &Party {
        &self.parties[device.index()]
    }

    /// The request in progress, if any.
    #[must_use]
    pub const fn transaction(&self) -> Option<&Transaction> {
        self.transaction.as_ref()
    }

    /// When the engine wants the timer to fire, if at all.
    #[must_use]
    pub const fn timer(&self) -> Option<Millis> {
        self.timer
    }

    // ----- host side -----------------------------------------------------

    /// A packet from the host on the VSS channel, with the VMBus transaction
    /// id of its packet. Every packet that has a whole IC header is answered
    /// exactly once: at once, or (CHECK/FREEZE/THAW) when the chain ends,
    /// within [`Config::reply_bound`] of `now`.
    pub fn on_host_packet(&mut self, packet: &[u8], xid: u64, now: Millis, fx: &mut dyn Effects) {
        self.counters.host_packets += 1;
        if packet.len() > N {
            self.counters.malformed += 1;
            fx.log(&Event::TooLong { len: packet.len() });
            self.answer_now(packet, xid, Immediate::Failure, fx);
            return;
        }
        let request = match parse_host_packet(packet) {
            Ok(request) => request,
            Err(error) => {
                self.counters.malformed += 1;
                let answered = error.answerable();
                fx.log(&Event::Malformed { error, answered });
                if answered {
                    self.answer_now(packet, xid, Immediate::Failure, fx);
                } else {
                    self.counters.unanswerable += 1;
                }
                return;
            }
        };
        match request.body {
            RequestBody::Negotiate(offer) => match negotiate(&offer, VSS_MAXIMUM) {
                Ok(chosen) => {
                    self.negotiated = Some(chosen);
                    fx.log(&Event::Negotiated(chosen));
                    self.answer_now(packet, xid, Immediate::Negotiated(chosen), fx);
                }
                Err(error) => {
                    fx.log(&Event::NegotiationFailed(error));
                    self.answer_now(packet, xid, Immediate::Failure, fx);
                }
            },
            RequestBody::Vss { operation, .. } => match operation.device_operation() {
                // GET_DM_INFO, CREATE, DELETE, BU_COMPLETE, AUTO_RECOVER: the
                // guest has nothing to do; answering (as Linux does) keeps the
                // host from waiting for a reply that the base driver never sent.
                None => {
                    fx.log(&Event::AnsweredByEngine(operation));
                    self.answer_now(packet, xid, Immediate::Vss(HostStatus::Ok), fx);
                }
                Some(device_operation) => {
                    self.start(packet, xid, operation, device_operation, now, fx);
                }
            },
        }
    }

    /// The timer armed through [`Effects::arm_timer`] fired (or the glue's
    /// callout ran at all: an early or stale call is harmless).
    pub fn on_timer(&mut self, now: Millis, fx: &mut dyn Effects) {
        self.timer = None;
        let Some(transaction) = self.transaction else {
            return;
        };
        let due = match transaction.stage {
            Stage::Forward { .. } => transaction.deadline,
            Stage::Rollback { deadline, .. } => deadline,
        };
        if now < due {
            self.arm(due, fx);
            return;
        }
        match transaction.stage {
            Stage::Forward { .. } => {
                self.counters.timeouts += 1;
                self.fail(FailReason::TimedOut, now, fx);
            }
            Stage::Rollback { reason, .. } => {
                self.counters.rollback_timeouts += 1;
                fx.log(&Event::RollbackTimedOut);
                self.finish(HostStatus::Fail, Some(reason), fx);
            }
        }
    }

    /// The module is being detached: a request still in progress is
    /// answered HV_E_FAIL now, while the channel is still open (its parties
    /// are losing their devices and cannot be told anything any more), and
    /// the timer is cancelled. Call it before closing the channel.
    pub fn shutdown(&mut self, fx: &mut dyn Effects) {
        let reason = match self.transaction.map(|t| t.stage) {
            Some(Stage::Rollback { reason, .. }) => reason,
            Some(Stage::Forward { .. }) => FailReason::Detached,
            None => {
                self.disarm(fx);
                return;
            }
        };
        if let Some(transaction) = self.transaction {
            fx.log(&Event::Failed {
                operation: transaction.operation,
                reason,
            });
        }
        self.finish(HostStatus::Fail, Some(reason), fx);
    }

    // ----- device side ---------------------------------------------------

    /// open(2) of `device`. One opener at a time: a second open gets
    /// [`OpenError::Busy`] (EBUSY) until the first descriptor is closed.
    pub const fn open(&mut self, device: Device) -> Result<(), OpenError> {
        let party = &mut self.parties[device.index()];
        if party.open {
            return Err(OpenError::Busy);
        }
        *party = Party {
            open: true,
            maybe_frozen: false,
            outstanding: None,
        };
        Ok(())
    }

    /// Last close of `device` (also when its holder dies). A message the
    /// party had not answered counts as its failure; a THAW it owed counts
    /// as done (the daemon's UFS suspensions end with its descriptors).
    pub fn close(&mut self, device: Device, now: Millis, fx: &mut dyn Effects) {
        let party = &mut self.parties[device.index()];
        if !party.open {
            return;
        }
        let had_outstanding = party.outstanding.is_some();
        *party = Party::default();
        if had_outstanding {
            self.party_done(device, Some(FailReason::PartyClosed(device)), now, fx);
        }
    }

    /// Whether IOCHVVSSREAD would hand out a message (poll's POLLIN).
    #[must_use]
    pub const fn readable(&self, device: Device) -> bool {
        let party = &self.parties[device.index()];
        match party.outstanding {
            Some(outstanding) => party.open && !outstanding.delivered,
            None => false,
        }
    }

    /// IOCHVVSSREAD: hands out the queued message, or
    /// [`DeviceMessage::nothing_queued`] (status FAIL) when there is none;
    /// it never blocks.
    pub const fn read(&mut self, device: Device) -> DeviceMessage {
        let party = &mut self.parties[device.index()];
        if !party.open {
            return DeviceMessage::nothing_queued();
        }
        match &mut party.outstanding {
            Some(outstanding) if !outstanding.delivered => {
                outstanding.delivered = true;
                if matches!(outstanding.operation, DeviceOperation::Freeze) {
                    party.maybe_frozen = true;
                }
                DeviceMessage::new(outstanding.operation, outstanding.msgid)
            }
            _ => DeviceMessage::nothing_queued(),
        }
    }

    /// IOCHVVSSWRITE: a party's answer. Accepted only if it names the
    /// msgid and operation of the message this device read and has not
    /// answered; otherwise it changes nothing, is counted in
    /// [`Counters::rejected_acks`], and the rejection is returned (the glue
    /// still returns 0 to user space, as the base driver does, because the
    /// base daemon exits on an ioctl error). A status other than success or
    /// failure is taken as failure.
    pub fn write(
        &mut self,
        device: Device,
        answer: &DeviceMessage,
        now: Millis,
        fx: &mut dyn Effects,
    ) -> Result<(), AckRejection> {
        let party = &mut self.parties[device.index()];
        let checked = if party.open {
            match party.outstanding {
                None => Err(AckRejection::NothingOutstanding),
                Some(outstanding) if !outstanding.delivered => Err(AckRejection::NotRead),
                Some(outstanding) if answer.msgid() != outstanding.msgid => {
                    Err(AckRejection::WrongMsgid {
                        expected: outstanding.msgid,
                        got: answer.msgid(),
                    })
                }
                Some(outstanding) if answer.opt != outstanding.operation.to_wire() => {
                    Err(AckRejection::WrongOperation {
                        expected: outstanding.operation,
                        got: answer.opt,
                    })
                }
                Some(outstanding) => Ok(outstanding),
            }
        } else {
            Err(AckRejection::NotOpen)
        };
        let outstanding = match checked {
            Ok(outstanding) => outstanding,
            Err(rejection) => {
                self.counters.rejected_acks += 1;
                fx.log(&Event::AckRejected { device, rejection });
                return Err(rejection);
            }
        };
        party.outstanding = None;
        if outstanding.operation == DeviceOperation::Thaw {
            party.maybe_frozen = false;
        }
        let status = answer.status().unwrap_or_else(|_| {
            fx.log(&Event::BadStatus {
                device,
                status: answer.status,
            });
            DeviceStatus::Fail
        });
        fx.log(&Event::Answered {
            device,
            operation: outstanding.operation,
            status,
        });
        let failure = match status {
            DeviceStatus::Success => None,
            DeviceStatus::Fail => Some(FailReason::PartyFailed(device)),
        };
        self.party_done(device, failure, now, fx);
        Ok(())
    }

    // ----- the chain -----------------------------------------------------

    /// A CHECK/FREEZE/THAW from the host.
    fn start(
        &mut self,
        packet: &[u8],
        xid: u64,
        operation: HostOperation,
        device_operation: DeviceOperation,
        now: Millis,
        fx: &mut dyn Effects,
    ) {
        self.counters.requests += 1;
        // One at a time; a rollback THAW that outlived its request also
        // blocks new ones, so that a party is never asked two things at once.
        let busy =
            self.transaction.is_some() || self.parties.iter().any(|p| p.outstanding.is_some());
        if busy {
            self.counters.busy += 1;
            fx.log(&Event::Failed {
                operation,
                reason: FailReason::Busy,
            });
            self.answer_now(packet, xid, Immediate::Failure, fx);
            return;
        }
        let len = packet.len();
        // on_host_packet rejected packets longer than N.
        if let (Some(own), Some(source)) = (self.request.get_mut(..len), packet.get(..len)) {
            own.copy_from_slice(source);
        }
        let deadline = now.plus(self.config.timeout_ms);
        self.transaction = Some(Transaction {
            xid,
            operation,
            device_operation,
            len,
            arrival: now,
            deadline,
            rollback_timeout_ms: self.config.rollback_timeout_ms,
            stage: Stage::Forward {
                step: 0,
                failed: None,
            },
        });
        fx.log(&Event::Started(operation));
        self.arm(deadline, fx);
        if device_operation != DeviceOperation::Thaw && !self.parties[Device::Fs.index()].open {
            // Do not freeze an application for a backup that cannot happen.
            self.counters.daemon_absent += 1;
            self.fail(FailReason::DaemonAbsent, now, fx);
            return;
        }
        self.advance(now, fx);
    }

    /// Asks the party at the current step, skipping a closed app device;
    /// ends the chain when every step is done.
    fn advance(&mut self, now: Millis, fx: &mut dyn Effects) {
        loop {
            let Some(transaction) = self.transaction.as_mut() else {
                return;
            };
            let Stage::Forward { step, failed } = transaction.stage else {
                return;
            };
            let operation = transaction.device_operation;
            let Some(&device) = chain(operation).get(usize::from(step)) else {
                match failed {
                    None => self.finish(HostStatus::Ok, None, fx),
                    Some(reason) => self.fail(reason, now, fx),
                }
                return;
            };
            if self.parties[device.index()].open {
                self.queue(device, operation, fx);
                return;
            }
            let next = step.saturating_add(1);
            match device {
                Device::App => {
                    transaction.stage = Stage::Forward { step: next, failed };
                }
                Device::Fs => {
                    self.counters.daemon_absent += 1;
                    if operation == DeviceOperation::Thaw {
                        // The app must still be thawed.
                        transaction.stage = Stage::Forward {
                            step: next,
                            failed: failed.or(Some(FailReason::DaemonAbsent)),
                        };
                    } else {
                        self.fail(FailReason::DaemonAbsent, now, fx);
                        return;
                    }
                }
            }
        }
    }

    /// `device` answered (`failure` is `None` on success) or closed with a
    /// message outstanding.
    fn party_done(
        &mut self,
        device: Device,
        failure: Option<FailReason>,
        now: Millis,
        fx: &mut dyn Effects,
    ) {
        let Some(transaction) = self.transaction.as_mut() else {
            // A rollback THAW answered after its request was answered.
            return;
        };
        match transaction.stage {
            Stage::Forward { step, failed } => {
                let current = chain(transaction.device_operation)
                    .get(usize::from(step))
                    .copied();
                if current != Some(device) {
                    // Only the current step's party has a message in the
                    // forward stage; nothing else can be answered.
                    return;
                }
                let next = step.saturating_add(1);
                match failure {
                    None => {
                        transaction.stage = Stage::Forward { step: next, failed };
                        self.advance(now, fx);
                    }
                    Some(reason) if transaction.device_operation == DeviceOperation::Thaw => {
                        // Keep thawing the others; the host gets failure.
                        transaction.stage = Stage::Forward {
                            step: next,
                            failed: failed.or(Some(reason)),
                        };
                        self.advance(now, fx);
                    }
                    Some(reason) => self.fail(reason, now, fx),
                }
            }
            Stage::Rollback { reason, .. } => {
                if self.parties.iter().all(|p| p.outstanding.is_none()) {
                    self.finish(HostStatus::Fail, Some(reason), fx);
                }
            }
        }
    }

    /// The request failed: withdraw what is no longer needed, send THAW to
    /// every party that may be frozen, and answer the host once they have
    /// answered or the rollback window closed.
    fn fail(&mut self, reason: FailReason, now: Millis, fx: &mut dyn Effects) {
        let Some(transaction) = self.transaction else {
            return;
        };
        fx.log(&Event::Failed {
            operation: transaction.operation,
            reason,
        });
        let mut thaw = [false; 2];
        for device in Device::ALL {
            let party = &mut self.parties[device.index()];
            // A CHECK or FREEZE nobody needs any more is withdrawn (an answer
            // to it will be rejected). A party that read a FREEZE is
            // `maybe_frozen` and gets a THAW below. A THAW stays.
            if party
                .outstanding
                .is_some_and(|o| o.operation != DeviceOperation::Thaw)
            {
                party.outstanding = None;
            }
            if party.open && party.maybe_frozen && party.outstanding.is_none() {
                self.queue(device, DeviceOperation::Thaw, fx);
                thaw[device.index()] = true;
            }
        }
        let waiting = self.parties.iter().any(|p| p.outstanding.is_some());
        if !waiting {
            self.finish(HostStatus::Fail, Some(reason), fx);
            return;
        }
        self.counters.rollbacks += 1;
        fx.log(&Event::RollingBack { thaw });
        // Measured from the deadline at the latest, so the host's reply is
        // bounded by arrival + timeout + rollback timeout whatever happens.
        let deadline = now
            .min(transaction.deadline)
            .plus(transaction.rollback_timeout_ms);
        if let Some(transaction) = self.transaction.as_mut() {
            transaction.stage = Stage::Rollback { deadline, reason };
        }
        self.arm(deadline, fx);
    }

    /// Answers the request in progress from the engine's own copy.
    fn finish(&mut self, status: HostStatus, reason: Option<FailReason>, fx: &mut dyn Effects) {
        let Some(transaction) = self.transaction.take() else {
            return;
        };
        self.disarm(fx);
        let len = transaction.len.min(N);
        if let Some(reply) = self.request.get_mut(..len) {
            // The request parsed as a VSS message, so it holds one.
            if write_vss_reply(reply, status).is_ok() {
                fx.send_to_host(transaction.xid, reply);
                self.count_reply(status);
            }
        }
        self.last_result = Some(LastResult {
            operation: transaction.operation,
            status,
            reason,
        });
        fx.log(&Event::Replied {
            operation: transaction.operation,
            status,
        });
    }

    // ----- helpers -------------------------------------------------------

    /// Answers `packet` at once from the scratch buffer (so the request in
    /// progress keeps its own copy intact).
    fn answer_now(&mut self, packet: &[u8], xid: u64, how: Immediate, fx: &mut dyn Effects) {
        let len = packet.len().min(N);
        let (Some(buf), Some(source)) = (self.scratch.get_mut(..len), packet.get(..len)) else {
            return;
        };
        buf.copy_from_slice(source);
        let written = match how {
            Immediate::Failure => write_failure_reply(buf).map(|()| (len, HostStatus::Fail)),
            Immediate::Vss(status) => write_vss_reply(buf, status).map(|()| (len, status)),
            Immediate::Negotiated(chosen) => {
                write_negotiate_reply(&mut self.scratch, len, chosen).map(|l| (l, HostStatus::Ok))
            }
        };
        match written {
            Ok((reply_len, status)) => {
                if let Some(reply) = self.scratch.get(..reply_len) {
                    fx.send_to_host(xid, reply);
                    self.count_reply(status);
                }
            }
            // Only a packet without a whole IC header gets here, and parsing
            // already classified those as unanswerable.
            Err(_) => self.counters.unanswerable += 1,
        }
    }

    const fn count_reply(&mut self, status: HostStatus) {
        match status {
            HostStatus::Ok => self.counters.replies_ok += 1,
            HostStatus::Fail => self.counters.replies_failed += 1,
        }
    }

    fn queue(&mut self, device: Device, operation: DeviceOperation, fx: &mut dyn Effects) {
        let msgid = self.next_msgid;
        self.next_msgid = first_msgid(msgid.wrapping_add(1));
        self.parties[device.index()].outstanding = Some(Outstanding {
            operation,
            msgid,
            delivered: false,
        });
        fx.log(&Event::Queued {
            device,
            operation,
            msgid,
        });
        fx.wake(device);
    }

    fn arm(&mut self, deadline: Millis, fx: &mut dyn Effects) {
        if self.timer != Some(deadline) {
            self.timer = Some(deadline);
            fx.arm_timer(deadline);
        }
    }

    fn disarm(&mut self, fx: &mut dyn Effects) {
        if self.timer.take().is_some() {
            fx.cancel_timer();
        }
    }
}

/// Message ids are never 0: 0 is the msgid of "nothing queued".
const fn first_msgid(candidate: u64) -> u64 {
    if candidate == 0 { 1 } else { candidate }
}
