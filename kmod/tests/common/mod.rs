//! Helpers shared by the engine's test suites: a recording `Effects`, host
//! packets built with hv-vss-proto's host side, and shortcuts for the
//! parties' side of the devices.
#![allow(dead_code, unreachable_pub)]

pub mod world;

use hv_vss_kmod::{Device, Effects, Event, Millis, VssEngine};
use hv_vss_proto::{
    DeviceMessage, DeviceOperation, DeviceStatus, HostOperation, HostReply, HostStatus, Version,
    build_negotiate_request, build_vss_request, parse_host_reply,
};

/// Records every effect, in order.
#[derive(Debug, Default, Clone)]
pub struct Recorder {
    /// (xid, bytes) of every packet sent to the host.
    pub sent: Vec<(u64, Vec<u8>)>,
    pub woken: Vec<Device>,
    /// The timer as the caller would hold it.
    pub timer: Option<Millis>,
    pub arms: usize,
    pub cancels: usize,
    pub log: Vec<String>,
}

impl Effects for Recorder {
    fn send_to_host(&mut self, xid: u64, reply: &[u8]) {
        self.sent.push((xid, reply.to_vec()));
    }
    fn wake(&mut self, device: Device) {
        self.woken.push(device);
    }
    fn arm_timer(&mut self, deadline: Millis) {
        self.timer = Some(deadline);
        self.arms += 1;
    }
    fn cancel_timer(&mut self) {
        self.timer = None;
        self.cancels += 1;
    }
    fn log(&mut self, event: &Event) {
        self.log.push(format!("{:?}: {event}", event.level()));
    }
}

impl Recorder {
    /// Takes the replies sent so far, parsed as the host reads them.
    pub fn take_replies(&mut self) -> Vec<(u64, HostReply, usize)> {
        self.sent
            .drain(..)
            .map(|(xid, bytes)| {
                let reply = parse_host_reply(&bytes).expect("the guest sent an unreadable reply");
                assert!(reply.is_reply(), "reply without TRANSACTION|RESPONSE flags");
                (xid, reply, bytes.len())
            })
            .collect()
    }

    /// The one reply sent since the last call: its status.
    pub fn one_status(&mut self, xid: u64) -> HostStatus {
        let replies = self.take_replies();
        assert_eq!(
            replies.len(),
            1,
            "expected exactly one reply, got {replies:?}"
        );
        assert_eq!(replies[0].0, xid, "reply carries the wrong transaction id");
        replies[0].1.status().expect("unknown status in reply")
    }
}

/// A VSS request for `operation` with `payload` bytes of LUN data after it.
pub fn vss(operation: HostOperation, payload: usize) -> Vec<u8> {
    let mut buf = vec![0; 40 + payload];
    let len = build_vss_request(&mut buf, operation, payload).unwrap();
    buf.truncate(len);
    buf
}

/// A negotiate request offering framework 1.0 and 3.0, messages 3.0, 4.0, 5.0.
pub fn negotiate_request() -> Vec<u8> {
    let mut buf = vec![0; 128];
    let len = build_negotiate_request(
        &mut buf,
        &[Version::new(1, 0), Version::new(3, 0)],
        &[Version::new(3, 0), Version::new(4, 0), Version::new(5, 0)],
    )
    .unwrap();
    buf.truncate(len);
    buf
}

/// Reads `device` and answers what it got with `status`; returns the operation.
pub fn read_and_answer<const N: usize>(
    engine: &mut VssEngine<N>,
    device: Device,
    status: DeviceStatus,
    now: Millis,
    fx: &mut Recorder,
) -> DeviceOperation {
    let message = engine.read(device);
    let operation = message.operation().unwrap();
    assert_ne!(
        operation,
        DeviceOperation::None,
        "nothing was queued on {device}"
    );
    engine
        .write(device, &message.with_status(status), now, fx)
        .expect("answer rejected");
    operation
}

/// Reads what `device` has queued (or `None`).
pub fn read_op<const N: usize>(
    engine: &mut VssEngine<N>,
    device: Device,
) -> (DeviceOperation, DeviceMessage) {
    let message = engine.read(device);
    (message.operation().unwrap(), message)
}
