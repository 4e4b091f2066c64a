//! The simulated kernel without FUSE or root: the real engine behind the
//! glue-equivalent entry points, including the callout thread's deadlines.
#![cfg(any(target_os = "linux", target_os = "freebsd"))]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hv_vss_proto::{DeviceMessage, DeviceOperation, DeviceStatus, HostOperation, HostStatus};
use hv_vss_sim::devices::{DeviceBackend, DeviceKind, PollWaker};
use hv_vss_sim::host::Host;
use hv_vss_sim::kernel::{KernelOptions, SimKernel};
use zerocopy::{FromBytes, IntoBytes};

const WAIT: Duration = Duration::from_secs(10);

fn kernel(options: KernelOptions) -> (Arc<SimKernel>, Host) {
    let kernel = SimKernel::start(&options);
    let host = Host::new(kernel.clone(), kernel.take_host_replies());
    (kernel, host)
}

fn read(kernel: &SimKernel, device: DeviceKind) -> DeviceMessage {
    DeviceMessage::read_from_bytes(&kernel.read_request(device).unwrap()).unwrap()
}

fn answer(kernel: &SimKernel, device: DeviceKind, request: DeviceMessage, status: DeviceStatus) {
    let bytes: [u8; 64] = request.with_status(status).as_bytes().try_into().unwrap();
    kernel.write_answer(device, &bytes).unwrap();
}

#[test]
fn negotiation_is_answered_with_no_device_open() {
    let (kernel, mut host) = kernel(KernelOptions::default());
    let reply = host.negotiate(WAIT).unwrap();
    assert!(reply.succeeded(), "{}", reply.status_text());
    let chosen = reply.negotiated().unwrap();
    assert_eq!(chosen.framework, hv_vss_proto::VSS_FRAMEWORK_MAX);
    assert_eq!(chosen.message, hv_vss_proto::VSS_MESSAGE_MAX);
    kernel.shutdown();
}

#[test]
fn freeze_without_daemon_fails_at_once() {
    let (kernel, mut host) = kernel(KernelOptions::default());
    let reply = host.request(HostOperation::Freeze, WAIT).unwrap();
    assert_eq!(reply.status(), Some(HostStatus::Fail));
    assert!(
        reply.latency < Duration::from_millis(100),
        "{:?}",
        reply.latency
    );
    kernel.shutdown();
}

#[test]
fn a_queued_request_wakes_pollers_and_the_answer_reaches_the_host() {
    let (kernel, mut host) = kernel(KernelOptions::default());
    let wakes = Arc::new(AtomicUsize::new(0));
    let counter = wakes.clone();
    kernel.attach_waker(PollWaker::new(move |device| {
        assert_eq!(device, DeviceKind::Fs);
        counter.fetch_add(1, Ordering::SeqCst);
    }));
    kernel.open(DeviceKind::Fs).unwrap();
    assert_eq!(
        kernel.open(DeviceKind::Fs),
        Err(hv_vss_sim::devices::DeviceErrno::BUSY)
    );
    assert!(!kernel.readiness(DeviceKind::Fs).readable);

    let transaction = host.send_operation(HostOperation::HotBackup, 0).unwrap();
    assert_eq!(
        wakes.load(Ordering::SeqCst),
        1,
        "queuing CHECK woke the poller"
    );
    assert!(kernel.readiness(DeviceKind::Fs).readable);
    let request = read(&kernel, DeviceKind::Fs);
    assert_eq!(request.operation(), Ok(DeviceOperation::Check));
    answer(&kernel, DeviceKind::Fs, request, DeviceStatus::Success);
    let reply = host.wait(transaction, WAIT).unwrap();
    assert_eq!(reply.status(), Some(HostStatus::Ok));
    assert_eq!(
        reply.vss_flags(),
        Some(hv_vss_proto::HOT_BACKUP_NO_AUTO_RECOVERY)
    );
    kernel.shutdown();
}

#[test]
fn the_callout_thread_fails_a_request_at_its_deadline() {
    let (kernel, mut host) = kernel(KernelOptions {
        deadline: Duration::from_millis(300),
        rollback: Duration::from_millis(200),
    });
    kernel.open(DeviceKind::Fs).unwrap();
    let transaction = host.send_operation(HostOperation::Freeze, 0).unwrap();
    // The daemon reads FREEZE and never answers: at the deadline the engine
    // sends it THAW (rollback), and answers the host when the rollback
    // window closes unanswered.
    assert_eq!(
        read(&kernel, DeviceKind::Fs).operation(),
        Ok(DeviceOperation::Freeze)
    );
    let reply = host.wait(transaction, WAIT).unwrap();
    assert_eq!(reply.status(), Some(HostStatus::Fail));
    assert!(
        reply.latency >= Duration::from_millis(300) && reply.latency < Duration::from_secs(3),
        "answered after {:?}",
        reply.latency
    );
    assert_eq!(
        read(&kernel, DeviceKind::Fs).operation(),
        Ok(DeviceOperation::Thaw)
    );
    assert!(
        kernel.log().iter().any(|line| line.contains("deadline")),
        "{:?}",
        kernel.log()
    );
    kernel.shutdown();
}

#[test]
fn a_late_answer_is_accepted_by_the_ioctl_but_rejected_by_the_engine() {
    let (kernel, mut host) = kernel(KernelOptions {
        deadline: Duration::from_millis(200),
        rollback: Duration::from_millis(100),
    });
    kernel.open(DeviceKind::Fs).unwrap();
    let transaction = host.send_operation(HostOperation::HotBackup, 0).unwrap();
    let request = read(&kernel, DeviceKind::Fs);
    let reply = host.wait(transaction, WAIT).unwrap();
    assert_eq!(reply.status(), Some(HostStatus::Fail));
    // Like the FreeBSD glue: the ioctl succeeds, the engine counts it.
    answer(&kernel, DeviceKind::Fs, request, DeviceStatus::Success);
    let rejected = kernel
        .counters()
        .into_iter()
        .find(|(name, _)| name.contains("reject"))
        .map(|(_, value)| value);
    assert_eq!(rejected, Some(1), "{:?}", kernel.counters());
    host.drain(Duration::from_millis(100));
    assert!(host.answered_exactly_once().is_empty());
    kernel.shutdown();
}
