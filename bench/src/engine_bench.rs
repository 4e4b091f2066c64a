//! The kernel engine's own cost per transaction: `hv-vss-kmod`'s engine
//! called directly, as the FreeBSD glue calls it under its mutex, with the
//! daemon's answers written back at once. One transaction = a FREEZE host
//! packet → daemon READ → WRITE success → reply to the host, then the same
//! for THAW. No I/O, no devices, no threads: what the kernel adds.

use std::hint::black_box;
use std::time::{Duration, Instant};

use hv_vss_kmod::{Config, Device, Effects, Engine, Millis};
use hv_vss_proto::{
    DeviceStatus, HostOperation, MAX_HOST_PACKET_LEN, build_negotiate_request, build_vss_request,
};

/// Counts what the engine asks for; copies nothing (the glue's
/// `vmbus_chan_send` copies into the ring, which we do not have).
#[derive(Debug, Default)]
struct CountingEffects {
    replies: u64,
    wakes: u64,
    timers: u64,
}

impl Effects for CountingEffects {
    fn send_to_host(&mut self, xid: u64, reply: &[u8]) {
        black_box((xid, reply));
        self.replies += 1;
    }

    fn wake(&mut self, device: Device) {
        black_box(device);
        self.wakes += 1;
    }

    fn arm_timer(&mut self, deadline: Millis) {
        black_box(deadline);
        self.timers += 1;
    }

    fn cancel_timer(&mut self) {
        self.timers += 1;
    }
}

/// Result of the micro-benchmark.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EngineCost {
    pub(crate) transactions: u64,
    pub(crate) per_transaction: Duration,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum EngineBenchError {
    #[error("building a host packet: {0}")]
    Build(String),
    #[error("the engine did not behave as the protocol requires: {0}")]
    Protocol(String),
}

fn packet(operation: HostOperation) -> Result<Vec<u8>, EngineBenchError> {
    let mut buf = vec![0u8; MAX_HOST_PACKET_LEN];
    let len = build_vss_request(&mut buf, operation, 0)
        .map_err(|e| EngineBenchError::Build(format!("{e:?}")))?;
    buf.truncate(len);
    Ok(buf)
}

/// Runs `transactions` FREEZE+THAW transactions; returns the median cost per
/// transaction over `batches` equal batches.
pub(crate) fn run(transactions: u64, batches: u32) -> Result<EngineCost, EngineBenchError> {
    let freeze = packet(HostOperation::Freeze)?;
    let thaw = packet(HostOperation::Thaw)?;
    let mut negotiate = vec![0u8; MAX_HOST_PACKET_LEN];
    let len = build_negotiate_request(
        &mut negotiate,
        &hv_vss_sim::host::HOST_FRAMEWORK_VERSIONS,
        &hv_vss_sim::host::HOST_MESSAGE_VERSIONS,
    )
    .map_err(|e| EngineBenchError::Build(format!("{e:?}")))?;
    negotiate.truncate(len);

    // Two 16 KiB buffers inside: keep it off the stack.
    let mut engine = Box::new(Engine::new(Config::DEFAULT, 0x5eed));
    let mut fx = CountingEffects::default();
    engine
        .open(Device::Fs)
        .map_err(|e| EngineBenchError::Protocol(format!("open: {e}")))?;
    engine.on_host_packet(&negotiate, 1, Millis(0), &mut fx);

    let batches = batches.max(1);
    let per_batch = (transactions / u64::from(batches)).max(1);
    let mut xid = 2u64;
    let mut batch_costs = Vec::with_capacity(batches as usize);
    for _ in 0..batches {
        let started = Instant::now();
        for _ in 0..per_batch {
            for request in [&freeze, &thaw] {
                let now = Millis(xid);
                engine.on_host_packet(black_box(request), xid, now, &mut fx);
                if !engine.readable(Device::Fs) {
                    return Err(EngineBenchError::Protocol(
                        "no message queued for the daemon".to_owned(),
                    ));
                }
                let message = engine.read(Device::Fs);
                let answer = message.with_status(DeviceStatus::Success);
                engine
                    .write(Device::Fs, &answer, now, &mut fx)
                    .map_err(|e| EngineBenchError::Protocol(format!("answer rejected: {e}")))?;
                xid += 1;
            }
        }
        batch_costs.push(started.elapsed() / u32::try_from(per_batch).unwrap_or(u32::MAX));
    }
    let expected_replies = 1 + 2 * per_batch * u64::from(batches);
    if fx.replies != expected_replies {
        return Err(EngineBenchError::Protocol(format!(
            "{} host replies for {expected_replies} requests",
            fx.replies
        )));
    }
    let median = crate::stats::Summary::of(&batch_costs).map_or(Duration::ZERO, |s| s.median);
    Ok(EngineCost {
        transactions: per_batch * u64::from(batches),
        per_transaction: median,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_request_gets_exactly_one_reply() {
        let cost = super::run(1_000, 2).expect("engine transactions");
        assert_eq!(cost.transactions, 1_000);
    }
}
