//! The Hyper-V host's part: send VSS integration-component packets to the
//! guest and collect its replies with their timing.
//!
//! Every packet is built with proto's host-side builders; raw and malformed
//! packets can be sent too. The host keeps a ledger of everything it sent
//! and every reply it got, so tests can check that each request was
//! answered exactly once.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use hv_vss_proto::{
    HostOperation, HostReply, HostStatus, IC_HEADER_LEN, MAX_HOST_PACKET_LEN, Negotiated,
    ParseError, ReplyBody, VSS_FRAMEWORK_MAX, VSS_MESSAGE_MAX, Version, build_negotiate_request,
    build_vss_request, parse_host_reply,
};

/// The VMBus transaction id of a request; the guest's reply carries it back.
pub type TransactionId = u64;

/// Where host packets go: the simulated VMBus channel of the guest.
pub trait GuestChannel: Send + Sync {
    /// Delivers one packet, as the VMBus channel callback would.
    fn deliver(&self, transaction: TransactionId, packet: &[u8]);
}

/// A packet the guest sent to the host.
#[derive(Debug, Clone)]
pub struct GuestPacket {
    pub transaction: TransactionId,
    pub bytes: Vec<u8>,
    pub at: Instant,
}

/// A reply as the host sees it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub transaction: TransactionId,
    pub bytes: Vec<u8>,
    /// How long after sending the request the reply came.
    pub latency: Duration,
    pub parsed: Result<HostReply, ParseError>,
}

impl Reply {
    /// The IC status, if the reply parsed and carries a known one.
    pub fn status(&self) -> Option<HostStatus> {
        self.parsed.as_ref().ok().and_then(|r| r.status().ok())
    }

    pub fn succeeded(&self) -> bool {
        self.status() == Some(HostStatus::Ok)
    }

    /// The VSS body flags (5 on HOT_BACKUP replies: no auto-recovery).
    pub fn vss_flags(&self) -> Option<u32> {
        match self.parsed.as_ref().ok()?.body {
            ReplyBody::Vss { flags, .. } => Some(flags),
            _ => None,
        }
    }

    pub fn negotiated(&self) -> Option<Negotiated> {
        match self.parsed.as_ref().ok()?.body {
            ReplyBody::Negotiated(chosen) => Some(chosen),
            _ => None,
        }
    }

    /// "HV_S_OK", "HV_E_FAIL" or what was actually received.
    pub fn status_text(&self) -> String {
        match &self.parsed {
            Ok(reply) => match reply.status() {
                Ok(HostStatus::Ok) => "HV_S_OK".to_owned(),
                Ok(HostStatus::Fail) => "HV_E_FAIL".to_owned(),
                Err(unknown) => format!("unknown status {unknown:?}"),
            },
            Err(e) => format!("unparsable reply ({e})"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("no reply to {what} (transaction {transaction}) within {waited:?}")]
    NoReply {
        what: String,
        transaction: TransactionId,
        waited: Duration,
    },
    #[error("the guest channel is gone (simulated kernel stopped)")]
    Disconnected,
    #[error("cannot build the {what} packet: {problem}")]
    Build { what: String, problem: String },
}

/// One request in the ledger.
#[derive(Debug, Clone)]
pub struct Sent {
    pub what: String,
    pub at: Instant,
    pub replies: Vec<GuestPacket>,
    /// False for packets shorter than an IC header: no reply can be built
    /// for them (there is nothing to echo), so none is expected.
    pub answerable: bool,
}

/// The simulated host.
pub struct Host {
    channel: std::sync::Arc<dyn GuestChannel>,
    replies: Receiver<GuestPacket>,
    next_transaction: TransactionId,
    ledger: BTreeMap<TransactionId, Sent>,
    /// Replies whose transaction id the host never used.
    strays: Vec<GuestPacket>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("next_transaction", &self.next_transaction)
            .field("sent", &self.ledger.len())
            .finish_non_exhaustive()
    }
}

/// Versions a current Hyper-V host offers, oldest first.
pub const HOST_FRAMEWORK_VERSIONS: [Version; 2] = [Version::new(1, 0), VSS_FRAMEWORK_MAX];
pub const HOST_MESSAGE_VERSIONS: [Version; 3] =
    [Version::new(1, 0), Version::new(4, 0), VSS_MESSAGE_MAX];

impl Host {
    pub fn new(channel: std::sync::Arc<dyn GuestChannel>, replies: Receiver<GuestPacket>) -> Self {
        Host {
            channel,
            replies,
            // Hyper-V's request ids are arbitrary; start high to notice
            // truncation to narrower integers.
            next_transaction: 0x1_0000_0000,
            ledger: BTreeMap::new(),
            strays: Vec::new(),
        }
    }

    /// Sends raw bytes; returns the transaction id to wait on.
    pub fn send_raw(&mut self, what: &str, packet: &[u8]) -> TransactionId {
        let transaction = self.next_transaction;
        self.next_transaction += 1;
        self.ledger.insert(
            transaction,
            Sent {
                what: what.to_owned(),
                at: Instant::now(),
                replies: Vec::new(),
                answerable: packet.len() >= IC_HEADER_LEN,
            },
        );
        self.channel.deliver(transaction, packet);
        transaction
    }

    /// Sends a negotiation offering the given versions.
    pub fn send_negotiate(
        &mut self,
        framework: &[Version],
        message: &[Version],
    ) -> Result<TransactionId, HostError> {
        let mut buf = [0u8; MAX_HOST_PACKET_LEN];
        let len = build_negotiate_request(&mut buf, framework, message).map_err(|e| {
            HostError::Build {
                what: "NEGOTIATE".to_owned(),
                problem: format!("{e:?}"),
            }
        })?;
        Ok(self.send_raw("NEGOTIATE", &buf[..len]))
    }

    /// Sends a VSS operation followed by `payload_len` bytes of body (LUN
    /// data on FREEZE, for example).
    pub fn send_operation(
        &mut self,
        operation: HostOperation,
        payload_len: usize,
    ) -> Result<TransactionId, HostError> {
        let mut buf = vec![0u8; MAX_HOST_PACKET_LEN.max(payload_len + 64)];
        let len =
            build_vss_request(&mut buf, operation, payload_len).map_err(|e| HostError::Build {
                what: operation.name().to_owned(),
                problem: format!("{e:?}"),
            })?;
        Ok(self.send_raw(operation.name(), &buf[..len]))
    }

    /// Builds the packet for `operation` without sending it (to corrupt it).
    pub fn build_operation(operation: HostOperation) -> Result<Vec<u8>, HostError> {
        let mut buf = vec![0u8; MAX_HOST_PACKET_LEN];
        let len = build_vss_request(&mut buf, operation, 0).map_err(|e| HostError::Build {
            what: operation.name().to_owned(),
            problem: format!("{e:?}"),
        })?;
        buf.truncate(len);
        Ok(buf)
    }

    /// Whether a reply to `transaction` can exist (see [`Sent::answerable`]).
    pub fn answerable(&self, transaction: TransactionId) -> bool {
        self.ledger.get(&transaction).is_some_and(|s| s.answerable)
    }

    /// Waits for the reply to `transaction`.
    pub fn wait(
        &mut self,
        transaction: TransactionId,
        timeout: Duration,
    ) -> Result<Reply, HostError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(sent) = self.ledger.get(&transaction) {
                if let Some(packet) = sent.replies.first() {
                    return Ok(Reply {
                        transaction,
                        bytes: packet.bytes.clone(),
                        latency: packet.at.saturating_duration_since(sent.at),
                        parsed: parse_host_reply(&packet.bytes),
                    });
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.replies.recv_timeout(left) {
                Ok(packet) => self.record(packet),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(HostError::NoReply {
                        what: self
                            .ledger
                            .get(&transaction)
                            .map_or_else(|| "?".to_owned(), |s| s.what.clone()),
                        transaction,
                        waited: timeout,
                    });
                }
                Err(RecvTimeoutError::Disconnected) => return Err(HostError::Disconnected),
            }
        }
    }

    /// Negotiates as Hyper-V does; returns the reply.
    pub fn negotiate(&mut self, timeout: Duration) -> Result<Reply, HostError> {
        let transaction = self.send_negotiate(&HOST_FRAMEWORK_VERSIONS, &HOST_MESSAGE_VERSIONS)?;
        self.wait(transaction, timeout)
    }

    /// Sends `operation` and waits for its reply.
    pub fn request(
        &mut self,
        operation: HostOperation,
        timeout: Duration,
    ) -> Result<Reply, HostError> {
        let transaction = self.send_operation(operation, 0)?;
        self.wait(transaction, timeout)
    }

    /// Collects replies that arrive within `period` (to catch duplicates).
    pub fn drain(&mut self, period: Duration) {
        let deadline = Instant::now() + period;
        while let Ok(packet) = self
            .replies
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.record(packet);
        }
    }

    fn record(&mut self, packet: GuestPacket) {
        match self.ledger.get_mut(&packet.transaction) {
            Some(sent) => sent.replies.push(packet),
            None => self.strays.push(packet),
        }
    }

    /// Every request sent so far with the replies it got.
    pub fn ledger(&self) -> &BTreeMap<TransactionId, Sent> {
        &self.ledger
    }

    /// Requests answered other than exactly once (unanswerable packets:
    /// other than never), and stray replies, as readable lines; empty when
    /// all is well.
    pub fn answered_exactly_once(&self) -> Vec<String> {
        let mut problems: Vec<String> = self
            .ledger
            .iter()
            .filter(|(_, sent)| sent.replies.len() != usize::from(sent.answerable))
            .map(|(id, sent)| {
                format!(
                    "{} (transaction {id}) got {} replies, expected {}",
                    sent.what,
                    sent.replies.len(),
                    usize::from(sent.answerable)
                )
            })
            .collect();
        problems.extend(
            self.strays
                .iter()
                .map(|p| format!("reply for unknown transaction {}", p.transaction)),
        );
        problems
    }
}
