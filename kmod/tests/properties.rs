//! Property tests: long random event sequences against the full-size
//! engine (16 KiB buffers, real LUN-data lengths, real default timeouts,
//! arbitrary waits), checked by the same invariants as the model check.
//! Unlike the model check, nothing is abstracted: msgids, times and
//! counters are the real ones.

// Tests: a panic is a failed test, and byte patterns are truncated on purpose.
#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::too_many_lines
)]

mod common;

use common::world::{Coverage, HostSend, Step, World};
use hv_vss_kmod::{Config, Device, Engine, Millis};
use hv_vss_proto::{DeviceStatus, HostOperation, MAX_HOST_PACKET_LEN};
use proptest::prelude::*;

fn device() -> impl Strategy<Value = Device> {
    prop_oneof![Just(Device::Fs), Just(Device::App)]
}

fn step() -> impl Strategy<Value = Step> {
    let chain = prop_oneof![
        Just(HostOperation::HotBackup),
        Just(HostOperation::Freeze),
        Just(HostOperation::Thaw)
    ];
    prop_oneof![
        3 => (chain, prop_oneof![Just(0usize), 1usize..7_000, Just(MAX_HOST_PACKET_LEN - 40)])
            .prop_map(|(op, lun)| Step::Host(HostSend::Chain(op, lun))),
        1 => prop_oneof![Just(HostSend::Other), Just(HostSend::Truncated), Just(HostSend::Runt)]
            .prop_map(Step::Host),
        2 => device().prop_map(Step::Open),
        1 => device().prop_map(Step::Close),
        4 => device().prop_map(Step::Read),
        4 => (device(), prop_oneof![3 => Just(DeviceStatus::Success), 1 => Just(DeviceStatus::Fail)])
            .prop_map(|(d, s)| Step::Answer(d, s)),
        1 => device().prop_map(Step::AnswerWrongMsgid),
        1 => device().prop_map(Step::AnswerWrongOperation),
        1 => Just(Step::Tick),
        2 => prop_oneof![0u32..100, 100u32..20_000, Just(15_000), Just(5_000)].prop_map(Step::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_sequences_keep_every_invariant(steps in prop::collection::vec(step(), 1..80)) {
        let mut world = World::<MAX_HOST_PACKET_LEN>::new(Config::DEFAULT);
        let mut coverage = Coverage::default();
        for (i, &step) in steps.iter().enumerate() {
            if !world.enabled(step) {
                continue;
            }
            if let Err(violation) = world.step(step, &mut coverage) {
                prop_assert!(false, "step {i} {step:?}: {violation}\nsteps: {:?}", &steps[..=i]);
            }
        }
        // Whatever is still pending is answered once time runs out.
        world.step(Step::Wait(25_000), &mut coverage).map_err(TestCaseError::fail)?;
        prop_assert!(world.pending.is_empty(), "still pending after the bound: {:?}", world.pending);
    }

    #[test]
    fn arbitrary_host_bytes_never_panic_and_are_answered_at_most_once(
        packet in prop::collection::vec(any::<u8>(), 0..200),
        xid in any::<u64>(),
    ) {
        let mut engine = Box::new(Engine::new(Config::DEFAULT, 1));
        let mut fx = common::Recorder::default();
        engine.open(Device::Fs).unwrap();
        engine.on_host_packet(&packet, xid, Millis(0), &mut fx);
        engine.on_timer(Millis(30_000), &mut fx);
        prop_assert!(fx.sent.len() <= 1);
        for (sent_xid, reply) in &fx.sent {
            prop_assert_eq!(*sent_xid, xid);
            prop_assert!(reply.len() >= packet.len().min(28));
        }
        if packet.len() >= 28 {
            prop_assert_eq!(fx.sent.len(), 1, "a packet with a whole IC header went unanswered");
        }
    }
}
