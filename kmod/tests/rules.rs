//! One test per rule of the engine (issue 4), driven through the public API
//! with packets built by hv-vss-proto's host side.

// Tests: a panic is a failed test, and byte patterns are truncated on purpose.
#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::too_many_lines
)]

mod common;

use common::{Recorder, negotiate_request, read_and_answer, read_op, vss};
use hv_vss_kmod::{AckRejection, Config, Device, Engine, FailReason, Millis, OpenError, Stage};
use hv_vss_proto::{
    DeviceMessage, DeviceOperation, DeviceStatus, HOT_BACKUP_NO_AUTO_RECOVERY, HostOperation,
    HostStatus, ReplyBody, Version, build_negotiate_request,
};

const T0: Millis = Millis(1_000);
const XID: u64 = 0x1234_5678_9abc;

fn engine() -> Box<Engine> {
    Box::new(Engine::new(Config::DEFAULT, 0xfeed_0000))
}

/// An engine with the daemon's device (and the app's, if asked) open.
fn engine_with(app: bool) -> Box<Engine> {
    let mut engine = engine();
    engine.open(Device::Fs).unwrap();
    if app {
        engine.open(Device::App).unwrap();
    }
    engine
}

fn at(ms: u64) -> Millis {
    Millis(T0.0 + ms)
}

// ----- negotiation --------------------------------------------------------

#[test]
fn negotiation_is_answered_before_any_device_is_opened() {
    let mut engine = engine();
    let mut fx = Recorder::default();
    engine.on_host_packet(&negotiate_request(), XID, T0, &mut fx);
    let replies = fx.take_replies();
    assert_eq!(replies.len(), 1);
    let (xid, reply, len) = &replies[0];
    assert_eq!(*xid, XID);
    assert_eq!(reply.status(), Ok(HostStatus::Ok));
    assert_eq!(*len, 56, "the reply keeps the request's length");
    let ReplyBody::Negotiated(chosen) = reply.body else {
        panic!("not a negotiate reply: {reply:?}");
    };
    assert_eq!(chosen.framework, Version::new(3, 0));
    assert_eq!(chosen.message, Version::new(5, 0));
    assert_eq!(engine.negotiated(), Some(chosen));
}

#[test]
fn negotiation_without_a_common_version_is_answered_hv_e_fail() {
    let mut engine = engine();
    let mut fx = Recorder::default();
    let mut buf = [0u8; 64];
    let len =
        build_negotiate_request(&mut buf, &[Version::new(9, 0)], &[Version::new(5, 0)]).unwrap();
    engine.on_host_packet(&buf[..len], XID, T0, &mut fx);
    // HV_E_FAIL, not an errno as the base driver sends.
    assert_eq!(fx.one_status(XID), HostStatus::Fail);
    assert_eq!(engine.negotiated(), None);
}

// ----- chain order --------------------------------------------------------

#[test]
fn check_asks_app_then_daemon_then_answers_host() {
    let mut engine = engine_with(true);
    let mut fx = Recorder::default();
    engine.on_host_packet(&vss(HostOperation::HotBackup, 0), XID, T0, &mut fx);
    assert_eq!(fx.woken, [Device::App]);
    assert!(
        !engine.readable(Device::Fs),
        "daemon asked before the app answered"
    );
    assert_eq!(
        read_and_answer(
            &mut engine,
            Device::App,
            DeviceStatus::Success,
            at(1),
            &mut fx
        ),
        DeviceOperation::Check
    );
    assert!(fx.sent.is_empty());
    assert_eq!(fx.woken, [Device::App, Device::Fs]);
    assert_eq!(
        read_and_answer(
            &mut engine,
            Device::Fs,
            DeviceStatus::Success,
            at(2),
            &mut fx
        ),
        DeviceOperation::Check
    );
    let replies = fx.take_replies();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].1.status(), Ok(HostStatus::Ok));
    // HOT_BACKUP replies declare no auto-recovery.
    assert_eq!(
        replies[0].1.body,
        ReplyBody::Vss {
            operation: HostOperation::HotBackup,
            flags: HOT_BACKUP_NO_AUTO_RECOVERY
        }
    );
    assert_eq!(fx.timer, None, "timer left armed after the reply");
    assert!(engine.transaction().is_none());
}

#[test]
fn freeze_without_an_app_asks_only_the_daemon() {
    let mut engine = engine_with(false);
    let mut fx = Recorder::default();
    engine.on_host_packet(&vss(HostOperation::Freeze, 0), XID, T0, &mut fx);
    assert_eq!(fx.woken, [Device::Fs]);
    assert_eq!(
        read_and_answer(
            &mut engine,
            Device::Fs,
            DeviceStatus::Success,
            at(5),
            &mut fx
        ),
        DeviceOperation::Freeze
    );
    assert_eq!(fx.one_status(XID), HostStatus::Ok);
    assert!(engine.party(Device::Fs).maybe_frozen);
}

#[test]
fn freeze_asks_app_before_daemon() {
    let mut engine = engine_with(true);
    let mut fx = Recorder::default();
    engine.on_host_packet(&vss(HostOperation::Freeze, 0), XID, T0, &mut fx);
    assert!(engine.readable(Device::App));
    assert!(!engine.readable(Device::Fs));
    read_and_answer(
        &mut engine,
        Device::App,
        DeviceStatus::Success,
        at(1),
        &mut fx,
    );
    read_and_answer(
        &mut engine,
        Device::Fs,
        DeviceStatus::Success,
        at(2),
        &mut fx,
    );
    assert_eq!(fx.woken, [Device::App, Device::Fs]);
    assert_eq!(fx.one_status(XID), HostStatus::Ok);
}

#[test]
fn thaw_asks_daemon_then_app_then_answers_host() {
    let mut engine = engine_with(true);
    let mut fx = Recorder::default();
    engine.on_host_packet(&vss(HostOperation::Freeze, 0), 1, T0, &mut fx);
    read_and_answer(
        &mut engine,
        Device::App,
        DeviceStatus::Success,
        at(1),
        &mut fx,
    );
    read_and_answer(
        &mut engine,
        Device::Fs,
        DeviceStatus::Success,
        at(2),
        &mut fx,
    );
    fx = Recorder::default();
    engine.on_host_packet(&vss(HostOperation::Thaw, 0), 2, at(10), &mut fx);
    assert_eq!(fx.woken, [Device::Fs]);
    assert_eq!(
        read_and_answer(
            &mut engine,
            Device::Fs,
            DeviceStatus::Success,
            at(11),
            &mut fx
        ),
        DeviceOperation::Thaw
    );
    assert_eq!(
        read_and_answer(
            &mut engine,
            Device::App,
            DeviceStatus::Success,
            at(12),
            &mut fx
        ),
        DeviceOperation::Thaw
    );
    assert_eq!(fx.woken, [Device::Fs, Device::App]);
    assert_eq!(fx.one_status(2), HostStatus::Ok);
    assert!(!engine.party(Device::Fs).maybe_frozen);
    assert!(!engine.party(Device::App).maybe_frozen);
}

#[test]
fn thaw_failure_at_the_daemon_still_thaws_the_app_and_fails() {
    let mut engine = engine_with(true);
    let mut fx = Recorder::default();
    engine.on_host_packet(&vss(HostOperation::Freeze, 0), 1, T0, &mut fx);
    read_and_answer(
        &mut engine,
        Device::App,
        DeviceStatus::Success,
        at(1),
        &mut fx,
    );
    read_and_answer(
        &mut engine,
        Device::Fs,
        DeviceStatus::Success,
        at(2),
        &mut fx,
    );
    fx.take_replies();
    engine.on_host_packet(&vss(HostOperation::Thaw, 0), 2, at(10), &mut fx);
    read_and_answer(&mut engine, Device::Fs, DeviceStatus::Fail, at(11), &mut fx);
    assert!(
        fx.sent.is_empty(),
        "host answered before the app was thawed"
    );
    assert_eq!(
        read_and_answer(
            &mut engine,
            Device::App,
            DeviceStatus::Success,
            at(12),
            &mut fx
        ),
        DeviceOperation::Thaw
    );
    assert_eq!(fx.one_status(2), HostStatus::Fail);
    assert_eq!(
        engine.last_result().unwrap().reason,
        Some(FailReason::PartyFailed(Device::Fs))
    );
}

// ----- operations answered by the engine ------------------------------------

#[test]
fn get_dm_info_is_answered_by_the_engine_with_flags_zero() {
    let mut engine = engine();
    let mut fx = Recorder::default();
    let mut packet = vss(HostOperation::GetDmInfo, 0);
    packet[36] = 0xff; // the host's flags are replaced by 0
    engine.on_host_packet(&packet, XID, T0, &mut fx);
    let replies = fx.take_replies();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].1.status(), Ok(HostStatus::Ok));
    assert_eq!(
        replies[0].1.body,
        ReplyBody::Vss {
            operation: HostOperation::GetDmInfo,
            flags: 0
        }
    );
    assert!(fx.woken.is_empty(), "user space involved in GET_DM_INFO");
}

#[test]
fn create_delete_bu_complete_auto_recover_are_answered_ok_even_while_busy() {
    let mut engine = engine_with(true);
    let mut fx = Recorder::default();
    // A FREEZE in progress must not delay or block them.
    engine.on_host_packet(&vss(HostOperation::Freeze, 0), 99, T0, &mut fx);
    for (xid, operation) in [
        HostOperation::Create,
        HostOperation::Delete,
        HostOperation::BuComplete,
        HostOperation::AutoRecover,
    ]
    .into_iter()
    .enumerate()
    {
        let xid = xid as u64;
        engine.on_host_packet(&vss(operation, 0), xid, at(1), &mut fx);
        assert_eq!(fx.one_status(xid), HostStatus::Ok, "{operation:?}");
    }
    assert_eq!(
        fx.woken,
        [Device::App],
        "only the FREEZE reached user space"
    );
    assert!(engine.transaction().is_some(), "FREEZE lost");
}

// ----- lengths and malformed packets -----------------------------------------

#[test]
fn freeze_with_lun_data_is_valid_and_the_reply_keeps_every_byte() {
    let mut engine = engine_with(false);
    let mut fx = Recorder::default();
    let mut packet = vss(HostOperation::Freeze, 6_260 - 40);
    for (i, byte) in packet.iter_mut().enumerate().skip(40) {
        *byte = (i % 251) as u8;
    }
    engine.on_host_packet(&packet, XID, T0, &mut fx);
    read_and_answer(
        &mut engine,
        Device::Fs,
        DeviceStatus::Success,
        at(1),
        &mut fx,
    );
    let (xid, reply) = fx.sent.pop().unwrap();
    assert_eq!(xid, XID);
    assert_eq!(reply.len(), packet.len());
    assert_eq!(reply[40..], packet[40..], "LUN data changed in the reply");
    assert_eq!(
        reply[..20],
        packet[..20],
        "header fields before status changed"
    );
}

#[test]
fn a_packet_of_the_whole_receive_buffer_is_accepted() {
    let mut engine = engine_with(false);
    let mut fx = Recorder::default();
    let packet = vss(
        HostOperation::Freeze,
        hv_vss_proto::MAX_HOST_PACKET_LEN - 40,
    );
    engine.on_host_packet(&packet, XID, T0, &mut fx);
    assert_eq!(fx.woken, [Device::Fs]);
    assert_eq!(engine.counters().malformed, 0);
}

#[test]
fn truncated_vss_message_gets_a_failure_reply_and_is_counted() {
    let mut engine = engine_with(true);
    let mut fx = Recorder::default();
    let packet = vss(HostOperation::Freeze, 0);
    engine.on_host_packet(&packet[..33], XID, T0, &mut fx);
    let (xid, reply) = fx.sent.pop().unwrap();
    assert_eq!(xid, XID);
    assert_eq!(reply.len(), 33);
    let header = hv_vss_proto::parse_host_reply(&reply).unwrap().header;
    assert_eq!(header.status(), Ok(HostStatus::Fail));
    assert!(fx.woken.is_empty(), "a malformed FREEZE reached user space");
    assert_eq!(engine.counters().malformed, 1);
    assert_eq!(engine.counters().replies_failed, 1);
}

#[test]
fn unknown_operation_gets_a_failure_reply() {
    let mut engine = engine_with(true);
    let mut fx = Recorder::default();
    let mut packet = vss(HostOperation::Freeze, 0);
    packet[28] = 8;
    engine.on_host_packet(&packet, XID, T0, &mut fx);
    assert_eq!(fx.one_status(XID), HostStatus::Fail);
    assert_eq!(engine.counters().malformed, 1);
}

#[test]
fn packet_shorter_than_an_ic_header_is_counted_as_unanswerable() {
    let mut engine = engine();
    let mut fx = Recorder::default();
    engine.on_host_packet(&[0u8; 27], XID, T0, &mut fx);
    assert!(fx.sent.is_empty());
    assert_eq!(engine.counters().malformed, 1);
    assert_eq!(engine.counters().unanswerable, 1);
}

#[test]
fn packet_longer_than_the_buffer_gets_a_failure_reply() {
    let mut engine = Box::new(hv_vss_kmod::VssEngine::<64>::new(Config::DEFAULT, 1));
    let mut fx = Recorder::default();
    engine.open(Device::Fs).unwrap();
    engine.on_host_packet(&vss(HostOperation::Freeze, 100), XID, T0, &mut fx);
    assert_eq!(fx.one_status(XID), HostStatus::Fail);
    assert!(fx.woken.is_empty());
}

// ----- one at a time, daemon absent ------------------------------------------

#[test]
fn request_while_one_is_pending_is_refused_and_the_first_completes() {
    let mut engine = engine_with(false);
    let mut fx = Recorder::default();
    engine.on_host_packet(&vss(HostOperation::Freeze, 8), 1, T0, &mut fx);
    engine.on_host_packet(&vss(HostOperation::HotBackup, 0), 2, at(1), &mut fx);
    assert_eq!(fx.one_status(2), HostStatus::Fail);
    assert_eq!(engine.counters().busy, 1);
    read_and_answer(
        &mut engine,
        Device::Fs,
        DeviceStatus::Success,
        at(2),
        &mut fx,
    );
    let replies = fx.take_replies();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].0, 1);
    assert_eq!(
        replies[0].2, 48,
        "the FREEZE reply was overwritten by the busy reply"
    );
    assert_eq!(replies[0].1.status(), Ok(HostStatus::Ok));
}

#[test]
fn daemon_absent_fails_freeze_at_once_without_asking_the_app() {
    let mut engine = engine();
    engine.open(Device::App).unwrap();
    let mut fx = Recorder::default();
    engine.on_host_packet(&vss(HostOperation::Freeze, 0), XID, T0, &mut fx);
    assert_eq!(fx.one_status(XID), HostStatus::Fail);
    assert!(
        fx.woken.is_empty(),
        "the app was asked to freeze with no daemon"
    );
    assert_eq!(engine.counters().daemon_absent, 1);
    assert_eq!(fx.timer, None);
    assert_eq!(
        engine.last_result().unwrap().to_string(),
        "FREEZE failed: no daemon has hv_fsvss_dev open"
    );
}

#[test]
fn check_with_no_device_open_fails_at_once() {
    let mut engine = engine();
    let mut fx = Recorder::default();
    engine.on_host_packet(&vss(HostOperation::HotBackup, 0), XID, T0, &mut fx);
    assert_eq!(fx.one_status(XID), HostStatus::Fail);
}

#[test]
fn thaw_with_the_daemon_gone_still_thaws_the_app() {
    let mut engine = engine_with(true);
    let mut fx = Recorder::default();
    engine.on_host_packet(&vss(HostOperation::Freeze, 0), 1, T0, &mut fx);
    read_and_answer(
        &mut engine,
        Device::App,
        DeviceStatus::Success,
        at(1),
        &mut fx,
    );
    read_and_answer(
        &mut engine,
        Device::Fs,
        DeviceStatus::Success,
        at(2),
        &mut fx,
    );
    fx.take_replies();
    engine.close(Device::Fs, at(3), &mut fx);
    engine.on_host_packet(&vss(HostOperation::Thaw, 0), 2, at(10), &mut fx);
    assert!(fx.sent.is_empty());
    assert_eq!(
        read_and_answer(
            &mut engine,
            Device::App,
            DeviceStatus::Success,
            at(11),
            &mut fx
        ),
        DeviceOperation::Thaw
    );
    assert_eq!(fx.one_status(2), HostStatus::Fail);
}

// ----- deadline --------------------------------------------------------------

#[test]
fn one_deadline_covers_the_whole_chain() {
    let mut engine = engine_with(true);
    let mut fx = Recorder::default();
    engine.on_host_packet(&vss(HostOperation::HotBackup, 0), XID, T0, &mut fx);
    assert_eq!(fx.timer, Some(at(15_000)));
    // The app takes 10 s; the daemon does not get a fresh 15 s.
    read_and_answer(
        &mut engine,
        Device::App,
        DeviceStatus::Success,
        at(10_000),
        &mut fx,
    );
    assert_eq!(
        fx.timer,
        Some(at(15_000)),
        "deadline restarted for the daemon"
    );
    engine.read(Device::Fs);
    engine.on_timer(at(15_000), &mut fx);
    assert_eq!(fx.one_status(XID), HostStatus::Fail);
    assert_eq!(engine.counters().timeouts, 1);
}

#[test]
fn an_early_timer_is_rearmed_and_changes_nothing() {
    let mut engine = engine_with(false);
    let mut fx = Recorder::default();
    engine.on_host_packet(&vss(HostOperation::Freeze, 0), XID, T0, &mut fx);
    fx.timer = None;
    engine.on_timer(at(14_999), &mut fx);
    assert_eq!(fx.timer, Some(at(15_000)));
    assert!(fx.sent.is_empty());
    assert!(engine.readable(Device::Fs));
}

#[test]
fn a_stale_timer_with_nothing_pending_is_ignored() {
    let mut engine = engine_with(false);
    let mut fx = Recorder::default();
    engine.on_timer(at(1), &mut fx);
    assert!(fx.sent.is_empty() && fx.woken.is_empty() && fx.timer.is_none());
}

#[test]
fn timeout_is_tunable_for_the_next_request() {
    let mut engine = engine_with(false);
    let mut fx = Recorder::default();
    engine.set_config(Config {
        timeout_ms: 2_000,
        ..Config::DEFAULT
    });
    engine.on_host_packet(&vss(HostOperation::HotBackup, 0), XID, T0, &mut fx);
    assert_eq!(fx.timer, Some(at(2_000)));
}

#[test]
fn a_config_change_never_moves_the_bound_of_a_request_in_flight() {
    let mut engine = engine_with(false);
    let mut fx = Recorder::default();
    engine.on_host_packet(&vss(HostOperation::Freeze, 0), XID, T0, &mut fx);
    read_op(&mut engine, Device::Fs); // the daemon may now be frozen
    engine.set_config(Config {
        rollback_timeout_ms: 60_000,
        ..Config::DEFAULT
    });
    // The deadline passes: rollback, bounded by the arrival config's
    // 15 s + 5 s, not by the new 60 s.
    engine.on_timer(at(15_000), &mut fx);
    assert!(matches!(
        engine.transaction().map(|t| t.stage),
        Some(Stage::Rollback { .. })
    ));
    assert_eq!(fx.timer, Some(at(20_000)));
    engine.on_timer(at(20_000), &mut fx);
    assert_eq!(fx.one_status(XID), HostStatus::Fail);
}

// ----- answers that must be rejected ----------------------------------------

#[test]
fn late_answer_after_a_timeout_is_rejected_and_counted() {
    let mut engine = engine_with(false);
    let mut fx = Recorder::default();
    engine.on_host_packet(&vss(HostOperation::HotBackup, 0), 1, T0, &mut fx);
    let (_, late) = read_op(&mut engine, Device::Fs);
    engine.on_timer(at(15_000), &mut fx);
    assert_eq!(fx.one_status(1), HostStatus::Fail);
    let result = engine.write(
        Device::Fs,
        &late.with_status(DeviceStatus::Success),
        at(16_000),
        &mut fx,
    );
    assert_eq!(result, Err(AckRejection::NothingOutstanding));
    assert!(fx.sent.is_empty(), "a late answer produced a second reply");
    assert_eq!(engine.counters().rejected_acks, 1);
}

#[test]
fn late_answer_does_not_complete_the_next_request() {
    let mut engine = engine_with(false);
    let mut fx = Recorder::default();
    engine.on_host_packet(&vss(HostOperation::HotBackup, 0), 1, T0, &mut fx);
    let (_, late) = read_op(&mut engine, Device::Fs);
    engine.on_timer(at(15_000), &mut fx);
    fx.take_replies();
    engine.on_host_packet(&vss(HostOperation::HotBackup, 0), 2, at(16_000), &mut fx);
    engine.read(Device::Fs);
    let result = engine.write(
        Device::Fs,
        &late.with_status(DeviceStatus::Success),
        at(16_001),
        &mut fx,
    );
    assert!(
        matches!(result, Err(AckRejection::WrongMsgid { .. })),
        "{result:?}"
    );
    assert!(fx.sent.is_empty());
}

#[test]
fn answer_with_the_wrong_operation_is_rejected() {
    let mut engine = engine_with(false);
    let mut fx = Recorder::default();
    engine.on_host_packet(&vss(HostOperation::Freeze, 0), 1, T0, &mut fx);
    let (_, message) = read_op(&mut engine, Device::Fs);
    let mut forged = message.with_status(DeviceStatus::Success);
    forged.opt = DeviceOperation::Thaw.to_wire();
    assert!(matches!(
        engine.write(Device::Fs, &forged, at(1), &mut fx),
        Err(AckRejection::WrongOperation { .. })
    ));
    assert!(fx.sent.is_empty());
    // The right answer is still accepted afterwards.
    engine
        .write(
            Device::Fs,
            &message.with_status(DeviceStatus::Success),
            at(2),
            &mut fx,
        )
        .unwrap();
    assert_eq!(fx.one_status(1), HostStatus::Ok);
}

#[test]
fn answer_on_the_wrong_device_is_rejected() {
    let mut engine = engine_with(true);
    let mut fx = Recorder::default();
    engine.on_host_packet(&vss(HostOperation::Freeze, 0), 1, T0, &mut fx);
    let (_, message) = read_op(&mut engine, Device::App);
    // The daemon echoes the app's message: not its own.
    assert_eq!(
        engine.write(
            Device::Fs,
            &message.with_status(DeviceStatus::Success),
            at(1),
            &mut fx
        ),
        Err(AckRejection::NothingOutstanding)
    );
    assert!(
        !engine.readable(Device::Fs),
        "the chain advanced on a forged answer"
    );
    assert_eq!(engine.counters().rejected_acks, 1);
}

#[test]
fn answer_before_reading_is_rejected() {
    let mut engine = engine_with(false);
    let mut fx = Recorder::default();
    engine.on_host_packet(&vss(HostOperation::Freeze, 0), 1, T0, &mut fx);
    let guess = DeviceMessage::new(
        DeviceOperation::Freeze,
        engine.party(Device::Fs).outstanding.unwrap().msgid,
    );
    assert_eq!(
        engine.write(Device::Fs, &guess, at(1), &mut fx),
        Err(AckRejection::NotRead)
    );
}

#[test]
fn unknown_status_is_taken_as_failure() {
    let mut engine = engine_with(false);
    let mut fx = Recorder::default();
    engine.on_host_packet(&vss(HostOperation::HotBackup, 0), 1, T0, &mut fx);
    let (_, message) = read_op(&mut engine, Device::Fs);
    let mut answer = message;
    answer.status = 7;
    engine.write(Device::Fs, &answer, at(1), &mut fx).unwrap();
    assert_eq!(fx.one_status(1), HostStatus::Fail);
}

// ----- rollback --------------------------------------------------------------

#[test]
fn failed_freeze_thaws_every_party_that_read_it_before_the_host_is_answered() {
    let mut engine = engine_with(true);
    let mut fx = Recorder::default();
    engine.on_host_packet(&vss(HostOperation::Freeze, 0), XID, T0, &mut fx);
    read_and_answer(
        &mut engine,
        Device::App,
        DeviceStatus::Success,
        at(1),
        &mut fx,
    );
    read_and_answer(&mut engine, Device::Fs, DeviceStatus::Fail, at(2), &mut fx);
    assert!(fx.sent.is_empty(), "host answered before the rollback");
    assert!(matches!(
        engine.transaction().unwrap().stage,
        Stage::Rollback { .. }
    ));
    assert_eq!(
        read_and_answer(
            &mut engine,
            Device::App,
            DeviceStatus::Success,
            at(3),
            &mut fx
        ),
        DeviceOperation::Thaw
    );
    assert!(
        fx.sent.is_empty(),
        "host answered before the daemon's rollback"
    );
    // The daemon failed its FREEZE, but may have suspended some filesystems
    // before failing (the base daemon does not undo a partial freeze).
    assert_eq!(
        read_and_answer(
            &mut engine,
            Device::Fs,
            DeviceStatus::Success,
            at(4),
            &mut fx
        ),
        DeviceOperation::Thaw
    );
    assert_eq!(fx.one_status(XID), HostStatus::Fail);
    assert_eq!(engine.counters().rollbacks, 1);
    assert!(!engine.party(Device::App).maybe_frozen);
    assert!(!engine.party(Device::Fs).maybe_frozen);
    assert_eq!(fx.timer, None);
}

#[test]
fn timed_out_freeze_tells_the_daemon_that_read_it_to_thaw() {
    let mut engine = engine_with(true);
    let mut fx = Recorder::default();
    engine.on_host_packet(&vss(HostOperation::Freeze, 0), XID, T0, &mut fx);
    read_and_answer(
        &mut engine,
        Device::App,
        DeviceStatus::Success,
        at(1),
        &mut fx,
    );
    let (_, freeze) = read_op(&mut engine, Device::Fs); // the daemon is slow
    engine.on_timer(at(15_000), &mut fx);
    assert!(fx.sent.is_empty());
    assert_eq!(fx.timer, Some(at(20_000)), "rollback window not armed");
    // The daemon finishes freezing late: rejected, then reads the THAW.
    assert!(
        engine
            .write(
                Device::Fs,
                &freeze.with_status(DeviceStatus::Success),
                at(15_500),
                &mut fx
            )
            .is_err()
    );
    assert_eq!(
        read_and_answer(
            &mut engine,
            Device::Fs,
            DeviceStatus::Success,
            at(15_600),
            &mut fx
        ),
        DeviceOperation::Thaw
    );
    assert!(fx.sent.is_empty(), "host answered before the app thawed");
    assert_eq!(
        read_and_answer(
            &mut engine,
            Device::App,
            DeviceStatus::Success,
            at(15_700),
            &mut fx
        ),
        DeviceOperation::Thaw
    );
    assert_eq!(fx.one_status(XID), HostStatus::Fail);
    assert_eq!(
        engine.last_result().unwrap().reason,
        Some(FailReason::TimedOut)
    );
}

#[test]
fn queued_freeze_is_withdrawn_not_thawed_when_never_read() {
    let mut engine = engine_with(false);
    let mut fx = Recorder::default();
    engine.on_host_packet(&vss(HostOperation::Freeze, 0), XID, T0, &mut fx);
    engine.on_timer(at(15_000), &mut fx);
    assert_eq!(fx.one_status(XID), HostStatus::Fail);
    assert_eq!(read_op(&mut engine, Device::Fs).0, DeviceOperation::None);
    assert_eq!(engine.counters().rollbacks, 0);
}

#[test]
fn rollback_window_bounds_the_reply_and_the_thaw_stays_queued() {
    let mut engine = engine_with(false);
    let mut fx = Recorder::default();
    engine.on_host_packet(&vss(HostOperation::Freeze, 0), 1, T0, &mut fx);
    let (_, freeze) = read_op(&mut engine, Device::Fs); // the daemon hangs in freeze
    engine.on_timer(at(15_000), &mut fx);
    engine.on_timer(at(20_000), &mut fx);
    assert_eq!(fx.one_status(1), HostStatus::Fail);
    assert_eq!(engine.counters().rollback_timeouts, 1);
    assert!(Config::DEFAULT.reply_bound(T0) >= at(20_000));
    // Until the daemon takes its THAW, new requests are refused at once.
    engine.on_host_packet(&vss(HostOperation::HotBackup, 0), 2, at(30_000), &mut fx);
    assert_eq!(fx.one_status(2), HostStatus::Fail);
    // The daemon wakes up: its FREEZE answer is rejected, the THAW is there.
    assert!(
        engine
            .write(
                Device::Fs,
                &freeze.with_status(DeviceStatus::Success),
                at(31_000),
                &mut fx
            )
            .is_err()
    );
    assert_eq!(
        read_and_answer(
            &mut engine,
            Device::Fs,
            DeviceStatus::Success,
            at(31_001),
            &mut fx
        ),
        DeviceOperation::Thaw
    );
    assert!(fx.sent.is_empty(), "the orphan THAW produced a reply");
    assert!(!engine.party(Device::Fs).maybe_frozen);
    // And the next backup works.
    engine.on_host_packet(&vss(HostOperation::HotBackup, 0), 3, at(32_000), &mut fx);
    read_and_answer(
        &mut engine,
        Device::Fs,
        DeviceStatus::Success,
        at(32_001),
        &mut fx,
    );
    assert_eq!(fx.one_status(3), HostStatus::Ok);
}

#[test]
fn failure_late_in_the_chain_still_gets_the_full_rollback_window_from_the_deadline() {
    let mut engine = engine_with(true);
    let mut fx = Recorder::default();
    engine.on_host_packet(&vss(HostOperation::Freeze, 0), 1, T0, &mut fx);
    read_and_answer(
        &mut engine,
        Device::App,
        DeviceStatus::Success,
        at(1),
        &mut fx,
    );
    read_and_answer(
        &mut engine,
        Device::Fs,
        DeviceStatus::Fail,
        at(14_000),
        &mut fx,
    );
    assert_eq!(fx.timer, Some(at(19_000)));
    assert!(at(19_000) <= Config::DEFAULT.reply_bound(T0));
}

#[test]
fn daemon_closing_mid_freeze_fails_and_thaws_the_app() {
    let mut engine = engine_with(true);
    let mut fx = Recorder::default();
    engine.on_host_packet(&vss(HostOperation::Freeze, 0), XID, T0, &mut fx);
    read_and_answer(
        &mut engine,
        Device::App,
        DeviceStatus::Success,
        at(1),
        &mut fx,
    );
    engine.read(Device::Fs);
    engine.close(Device::Fs, at(2), &mut fx);
    assert_eq!(
        read_and_answer(
            &mut engine,
            Device::App,
            DeviceStatus::Success,
            at(3),
            &mut fx
        ),
        DeviceOperation::Thaw
    );
    assert_eq!(fx.one_status(XID), HostStatus::Fail);
    assert_eq!(
        engine.last_result().unwrap().reason,
        Some(FailReason::PartyClosed(Device::Fs))
    );
}

#[test]
fn app_closing_during_rollback_completes_it() {
    let mut engine = engine_with(true);
    let mut fx = Recorder::default();
    engine.on_host_packet(&vss(HostOperation::Freeze, 0), XID, T0, &mut fx);
    read_and_answer(
        &mut engine,
        Device::App,
        DeviceStatus::Success,
        at(1),
        &mut fx,
    );
    read_and_answer(&mut engine, Device::Fs, DeviceStatus::Fail, at(2), &mut fx);
    engine.close(Device::App, at(3), &mut fx);
    assert!(
        fx.sent.is_empty(),
        "the daemon's rollback THAW is still unanswered"
    );
    read_and_answer(
        &mut engine,
        Device::Fs,
        DeviceStatus::Success,
        at(4),
        &mut fx,
    );
    assert_eq!(fx.one_status(XID), HostStatus::Fail);
}

#[test]
fn check_failure_thaws_parties_left_frozen_by_an_earlier_freeze() {
    let mut engine = engine_with(false);
    let mut fx = Recorder::default();
    engine.on_host_packet(&vss(HostOperation::Freeze, 0), 1, T0, &mut fx);
    read_and_answer(
        &mut engine,
        Device::Fs,
        DeviceStatus::Success,
        at(1),
        &mut fx,
    );
    fx.take_replies();
    // The host never thaws but starts another backup, which fails.
    engine.on_host_packet(&vss(HostOperation::HotBackup, 0), 2, at(100), &mut fx);
    read_and_answer(
        &mut engine,
        Device::Fs,
        DeviceStatus::Fail,
        at(101),
        &mut fx,
    );
    assert!(fx.sent.is_empty());
    assert_eq!(
        read_and_answer(
            &mut engine,
            Device::Fs,
            DeviceStatus::Success,
            at(102),
            &mut fx
        ),
        DeviceOperation::Thaw
    );
    assert_eq!(fx.one_status(2), HostStatus::Fail);
}

// ----- own copy of the request ---------------------------------------------

#[test]
fn reply_is_built_from_the_engines_own_copy_of_the_request() {
    let mut engine = engine_with(false);
    let mut fx = Recorder::default();
    let mut buffer = vss(HostOperation::Freeze, 16);
    buffer[40..].fill(0xab);
    let original = buffer.clone();
    engine.on_host_packet(&buffer, 7, T0, &mut fx);
    // The channel's receive buffer is reused for the next packets.
    buffer.fill(0x55);
    let other = vss(HostOperation::Thaw, 16);
    engine.on_host_packet(&other, 8, at(1), &mut fx);
    assert_eq!(fx.one_status(8), HostStatus::Fail);
    read_and_answer(
        &mut engine,
        Device::Fs,
        DeviceStatus::Success,
        at(2),
        &mut fx,
    );
    let (xid, reply) = fx.sent.pop().unwrap();
    assert_eq!(xid, 7);
    assert_eq!(reply[28], HostOperation::Freeze.to_wire());
    assert_eq!(reply[40..], original[40..]);
    assert_eq!(reply[..20], original[..20]);
}

// ----- devices ------------------------------------------------------------

#[test]
fn second_open_is_busy_until_the_first_closes() {
    let mut engine = engine();
    let mut fx = Recorder::default();
    engine.open(Device::Fs).unwrap();
    assert_eq!(engine.open(Device::Fs), Err(OpenError::Busy));
    engine.open(Device::App).unwrap();
    assert_eq!(engine.open(Device::App), Err(OpenError::Busy));
    engine.close(Device::Fs, T0, &mut fx);
    engine.open(Device::Fs).unwrap();
}

/// The glue tells the engine one close per successful open (a cdevpriv
/// destructor, `kmod/glue/hv_vss_rs.c`), and none for a refused one: the
/// holder keeps its device, and the request it was handed, untouched.
#[test]
fn a_refused_open_leaves_the_holder_and_its_request_untouched() {
    let mut engine = engine_with(false);
    let mut fx = Recorder::default();
    engine.on_host_packet(&vss(HostOperation::Freeze, 0), XID, T0, &mut fx);
    let freeze = engine.read(Device::Fs);
    assert_eq!(freeze.operation(), Ok(DeviceOperation::Freeze));
    assert_eq!(engine.open(Device::Fs), Err(OpenError::Busy));
    assert!(engine.party(Device::Fs).open);
    assert!(fx.take_replies().is_empty());
    engine
        .write(
            Device::Fs,
            &freeze.with_status(DeviceStatus::Success),
            at(1),
            &mut fx,
        )
        .unwrap();
    assert_eq!(fx.one_status(XID), HostStatus::Ok);
}

#[test]
fn read_with_nothing_queued_returns_status_fail_and_poll_is_not_readable() {
    let mut engine = engine_with(true);
    for device in Device::ALL {
        assert!(!engine.readable(device));
        let message = engine.read(device);
        assert_eq!(message, DeviceMessage::nothing_queued());
        assert_eq!(message.status(), Ok(DeviceStatus::Fail));
    }
}

#[test]
fn poll_is_readable_until_the_message_is_read() {
    let mut engine = engine_with(false);
    let mut fx = Recorder::default();
    engine.on_host_packet(&vss(HostOperation::HotBackup, 0), 1, T0, &mut fx);
    assert!(engine.readable(Device::Fs));
    assert!(!engine.readable(Device::App));
    engine.read(Device::Fs);
    assert!(!engine.readable(Device::Fs));
}

#[test]
fn every_message_gets_a_fresh_nonzero_msgid() {
    let mut engine = Box::new(Engine::new(Config::DEFAULT, u64::MAX));
    engine.open(Device::Fs).unwrap();
    engine.open(Device::App).unwrap();
    let mut fx = Recorder::default();
    let mut ids = Vec::new();
    engine.on_host_packet(&vss(HostOperation::HotBackup, 0), 1, T0, &mut fx);
    for device in [Device::App, Device::Fs] {
        let (_, message) = read_op(&mut engine, device);
        ids.push(message.msgid());
        engine
            .write(
                device,
                &message.with_status(DeviceStatus::Success),
                at(1),
                &mut fx,
            )
            .unwrap();
    }
    assert!(ids.iter().all(|&id| id != 0));
    assert_ne!(ids[0], ids[1]);
}

// ----- counters, construction ----------------------------------------------

#[test]
fn counters_follow_a_mixed_session() {
    let mut engine = engine_with(false);
    let mut fx = Recorder::default();
    engine.on_host_packet(&negotiate_request(), 1, T0, &mut fx);
    engine.on_host_packet(&vss(HostOperation::HotBackup, 0), 2, T0, &mut fx);
    engine.on_host_packet(&vss(HostOperation::Freeze, 0), 3, T0, &mut fx);
    read_and_answer(
        &mut engine,
        Device::Fs,
        DeviceStatus::Success,
        at(1),
        &mut fx,
    );
    engine.on_host_packet(&[1, 2, 3], 4, at(2), &mut fx);
    let c = *engine.counters();
    assert_eq!(c.host_packets, 4);
    assert_eq!(c.requests, 2);
    assert_eq!(c.replies_ok, 2);
    assert_eq!(c.replies_failed, 1);
    assert_eq!(c.busy, 1);
    assert_eq!(c.unanswerable, 1);
    assert_eq!(hv_vss_kmod::Counters::NAMES.len(), c.values().len());
    assert_eq!(engine.last_result().unwrap().to_string(), "HOT_BACKUP ok");
}

#[test]
fn init_in_place_builds_the_same_engine_as_new() {
    let built = Engine::new(Config::DEFAULT, 42);
    let mut slot = Box::<Engine>::new_uninit();
    // SAFETY: a Box allocation is valid and aligned for an Engine.
    unsafe { Engine::init_in_place(slot.as_mut_ptr(), Config::DEFAULT, 42) };
    // SAFETY: init_in_place wrote every field.
    let placed = unsafe { slot.assume_init() };
    assert_eq!(format!("{built:?}"), format!("{placed:?}"));
}

#[test]
fn shutdown_answers_the_request_in_progress_once() {
    let mut engine = engine_with(true);
    let mut fx = Recorder::default();
    engine.on_host_packet(&vss(HostOperation::Freeze, 0), XID, T0, &mut fx);
    engine.shutdown(&mut fx);
    assert_eq!(fx.one_status(XID), HostStatus::Fail);
    assert_eq!(fx.timer, None);
    assert_eq!(
        engine.last_result().unwrap().reason,
        Some(FailReason::Detached)
    );
    engine.shutdown(&mut fx);
    engine.on_timer(at(20_000), &mut fx);
    assert!(fx.sent.is_empty(), "answered twice");
}

#[test]
fn sysctl_ranges_reject_zero_and_absurd_timeouts() {
    assert!(Config::DEFAULT.is_valid());
    for bad in [
        Config {
            timeout_ms: 0,
            ..Config::DEFAULT
        },
        Config {
            timeout_ms: 600_001,
            ..Config::DEFAULT
        },
        Config {
            rollback_timeout_ms: 0,
            ..Config::DEFAULT
        },
        Config {
            rollback_timeout_ms: 60_001,
            ..Config::DEFAULT
        },
    ] {
        assert!(!bad.is_valid(), "{bad:?}");
    }
}
