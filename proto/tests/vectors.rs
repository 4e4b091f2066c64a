//! Golden byte vectors written out by hand from the documented offsets
//! (DESIGN.md §4, FreeBSD's vmbus_icreg.h and hv_snapshot.h). If an offset,
//! size, constant or negotiation rule changes, one of these fails.

use hv_vss_proto::{
    DeviceMessage, DeviceOperation, DeviceStatus, HostOperation, HostStatus, IcType,
    NegotiateError, Negotiated, ParseError, RequestBody, VSS_MAXIMUM, Version, negotiate,
    parse_host_packet, write_failure_reply, write_negotiate_reply, write_vss_reply,
};

/// A negotiate from the host offering framework 1.0, 3.0, 3.1 and message
/// 3.0, 4.0, 5.0, 6.0: 36 fixed bytes + 7 versions = 64 bytes.
#[rustfmt::skip]
const NEGOTIATE_OFFER: [u8; 64] = [
    0x00, 0x00, 0x00, 0x00,   // pipe flags
    0x38, 0x00, 0x00, 0x00,   // pipe size (56)
    0x01, 0x00, 0x00, 0x00,   // framework version 1.0
    0x00, 0x00,               // ic_type NEGOTIATE
    0x01, 0x00, 0x00, 0x00,   // message version 1.0
    0x24, 0x00,               // data size 36
    0x00, 0x00, 0x00, 0x00,   // status
    0x07,                     // IC transaction id
    0x03,                     // flags TRANSACTION | REQUEST
    0x00, 0x00,               // reserved
    0x03, 0x00,               // 3 framework versions
    0x04, 0x00,               // 4 message versions
    0x00, 0x00, 0x00, 0x00,   // reserved
    0x01, 0x00, 0x00, 0x00,   // framework 1.0
    0x03, 0x00, 0x00, 0x00,   // framework 3.0
    0x03, 0x00, 0x01, 0x00,   // framework 3.1 (minor in the high half)
    0x03, 0x00, 0x00, 0x00,   // message 3.0
    0x04, 0x00, 0x00, 0x00,   // message 4.0
    0x05, 0x00, 0x00, 0x00,   // message 5.0
    0x06, 0x00, 0x00, 0x00,   // message 6.0
];

/// The guest's answer: counts 1 and 1, framework 3.0 (3.1 is above our 3.0),
/// message 5.0, data size 16, flags 0x05, status 0, same 64-byte length with
/// the tail left as received.
#[rustfmt::skip]
const NEGOTIATE_REPLY: [u8; 64] = [
    0x00, 0x00, 0x00, 0x00,
    0x38, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00,
    0x00, 0x00,
    0x01, 0x00, 0x00, 0x00,
    0x10, 0x00,               // data size 16
    0x00, 0x00, 0x00, 0x00,   // status HV_S_OK
    0x07,
    0x05,                     // flags TRANSACTION | RESPONSE
    0x00, 0x00,
    0x01, 0x00,               // 1 framework version
    0x01, 0x00,               // 1 message version
    0x00, 0x00, 0x00, 0x00,
    0x03, 0x00, 0x00, 0x00,   // chosen framework 3.0
    0x05, 0x00, 0x00, 0x00,   // chosen message 5.0
    0x03, 0x00, 0x01, 0x00,   // the rest as received
    0x03, 0x00, 0x00, 0x00,
    0x04, 0x00, 0x00, 0x00,
    0x05, 0x00, 0x00, 0x00,
    0x06, 0x00, 0x00, 0x00,
];

/// A 40-byte VSS message for `op` with body flags `flags`.
#[rustfmt::skip]
fn vss_request(op: u8, flags: [u8; 4]) -> [u8; 40] {
    [
        0x00, 0x00, 0x00, 0x00,
        0x20, 0x00, 0x00, 0x00,   // pipe size 32
        0x03, 0x00, 0x00, 0x00,   // framework 3.0
        0x05, 0x00,               // ic_type VSS
        0x05, 0x00, 0x00, 0x00,   // message 5.0
        0x0c, 0x00,               // data size 12
        0x00, 0x00, 0x00, 0x00,
        0x2a,
        0x03,
        0x00, 0x00,
        op,                       // operation @28
        0, 0, 0, 0, 0, 0, 0,      // reserved
        flags[0], flags[1], flags[2], flags[3], // flags @36
    ]
}

#[test]
fn negotiate_offer_lists_versions_in_order() {
    let request = parse_host_packet(&NEGOTIATE_OFFER).unwrap();
    assert_eq!(request.header.ic_type(), Ok(IcType::Negotiate));
    assert_eq!(request.header.transaction_id, 7);
    let RequestBody::Negotiate(offer) = request.body else {
        panic!("not a negotiate: {request:?}")
    };
    let framework: Vec<_> = offer.framework_versions().collect();
    let message: Vec<_> = offer.message_versions().collect();
    assert_eq!(
        framework,
        [Version::new(1, 0), Version::new(3, 0), Version::new(3, 1)]
    );
    assert_eq!(
        message,
        [
            Version::new(3, 0),
            Version::new(4, 0),
            Version::new(5, 0),
            Version::new(6, 0)
        ]
    );
}

#[test]
fn negotiation_picks_highest_offered_at_or_below_ours() {
    let request = parse_host_packet(&NEGOTIATE_OFFER).unwrap();
    let RequestBody::Negotiate(offer) = request.body else {
        panic!()
    };
    let chosen = negotiate(&offer, VSS_MAXIMUM).unwrap();
    assert_eq!(
        chosen,
        Negotiated {
            framework: Version::new(3, 0),
            message: Version::new(5, 0)
        }
    );
}

#[test]
fn negotiate_reply_matches_golden_bytes() {
    let mut buf = NEGOTIATE_OFFER;
    let chosen = Negotiated {
        framework: Version::new(3, 0),
        message: Version::new(5, 0),
    };
    let len = write_negotiate_reply(&mut buf, NEGOTIATE_OFFER.len(), chosen).unwrap();
    assert_eq!(len, 64);
    assert_eq!(buf, NEGOTIATE_REPLY);
}

#[test]
fn short_negotiate_reply_grows_to_44_bytes() {
    // One version per list: exactly 44 bytes already. Cut the request to
    // the fixed part plus one version (a host can't send less and be valid);
    // the reply must still be 44 bytes long.
    let mut buf = [0xee_u8; 64];
    buf[..40].copy_from_slice(&NEGOTIATE_OFFER[..40]);
    let chosen = Negotiated {
        framework: Version::new(3, 0),
        message: Version::new(5, 0),
    };
    let len = write_negotiate_reply(&mut buf, 40, chosen).unwrap();
    assert_eq!(len, 44);
    assert_eq!(
        &buf[28..44],
        &[1, 0, 1, 0, 0, 0, 0, 0, 3, 0, 0, 0, 5, 0, 0, 0]
    );
    assert_eq!(buf[44], 0xee, "nothing written past the reply");
    // A buffer that cannot hold 44 bytes is an error, not a panic.
    let mut small = [0_u8; 40];
    small.copy_from_slice(&NEGOTIATE_OFFER[..40]);
    assert!(write_negotiate_reply(&mut small, 40, chosen).is_err());
}

#[test]
fn negotiation_fails_clearly_when_nothing_fits() {
    let mut packet = NEGOTIATE_OFFER;
    // Offer only framework 4.0 (all three framework slots).
    for slot in 0..3 {
        packet[36 + 4 * slot..40 + 4 * slot].copy_from_slice(&[4, 0, 0, 0]);
    }
    let RequestBody::Negotiate(offer) = parse_host_packet(&packet).unwrap().body else {
        panic!()
    };
    let error = negotiate(&offer, VSS_MAXIMUM).unwrap_err();
    assert_eq!(
        error,
        NegotiateError::NoFrameworkVersion {
            ours: Version::new(3, 0),
            lowest: Version::new(4, 0)
        }
    );
    assert_eq!(
        error.to_string(),
        "host offers no framework version at or below 3.0 (lowest offered: 4.0)"
    );

    // Message versions 6.0 only.
    let mut packet = NEGOTIATE_OFFER;
    for slot in 3..7 {
        packet[36 + 4 * slot..40 + 4 * slot].copy_from_slice(&[6, 0, 0, 0]);
    }
    let RequestBody::Negotiate(offer) = parse_host_packet(&packet).unwrap().body else {
        panic!()
    };
    assert_eq!(
        negotiate(&offer, VSS_MAXIMUM),
        Err(NegotiateError::NoMessageVersion {
            ours: Version::new(5, 0),
            lowest: Version::new(6, 0)
        })
    );
}

#[test]
fn negotiate_with_bad_counts_is_rejected() {
    let mut zero = NEGOTIATE_OFFER;
    zero[28] = 0;
    assert_eq!(
        parse_host_packet(&zero).unwrap_err(),
        ParseError::BadVersionCounts {
            framework: 0,
            message: 4,
            len: 64
        }
    );
    let mut too_many = NEGOTIATE_OFFER;
    too_many[30] = 5; // 3 + 5 versions do not fit in 64 bytes
    let error = parse_host_packet(&too_many).unwrap_err();
    assert_eq!(
        error,
        ParseError::BadVersionCounts {
            framework: 3,
            message: 5,
            len: 64
        }
    );
    assert!(error.answerable());
    assert!(matches!(
        parse_host_packet(&NEGOTIATE_OFFER[..35]),
        Err(ParseError::TooShort {
            what: "negotiate message",
            needed: 36,
            got: 35
        })
    ));
}

#[test]
fn every_vss_operation_parses_from_its_byte() {
    let expected = [
        (0, HostOperation::Create),
        (1, HostOperation::Delete),
        (2, HostOperation::HotBackup),
        (3, HostOperation::GetDmInfo),
        (4, HostOperation::BuComplete),
        (5, HostOperation::Freeze),
        (6, HostOperation::Thaw),
        (7, HostOperation::AutoRecover),
    ];
    for (byte, operation) in expected {
        let packet = vss_request(byte, [0x11, 0x22, 0x33, 0x44]);
        let request = parse_host_packet(&packet).unwrap();
        assert_eq!(request.header.ic_type(), Ok(IcType::Vss));
        assert_eq!(
            request.body,
            RequestBody::Vss {
                operation,
                flags: 0x4433_2211
            }
        );
    }
    assert_eq!(
        parse_host_packet(&vss_request(8, [0; 4])),
        Err(ParseError::UnknownOperation(8))
    );
}

#[test]
fn operations_map_to_device_requests() {
    assert_eq!(
        HostOperation::HotBackup.device_operation(),
        Some(DeviceOperation::Check)
    );
    assert_eq!(
        HostOperation::Freeze.device_operation(),
        Some(DeviceOperation::Freeze)
    );
    assert_eq!(
        HostOperation::Thaw.device_operation(),
        Some(DeviceOperation::Thaw)
    );
    for op in [
        HostOperation::Create,
        HostOperation::Delete,
        HostOperation::GetDmInfo,
        HostOperation::BuComplete,
        HostOperation::AutoRecover,
    ] {
        assert_eq!(op.device_operation(), None, "{op:?}");
    }
}

#[test]
fn freeze_with_lun_data_is_valid() {
    let mut packet = vec![0_u8; 6260];
    packet[..40].copy_from_slice(&vss_request(5, [0; 4]));
    let request = parse_host_packet(&packet).unwrap();
    assert_eq!(
        request.body,
        RequestBody::Vss {
            operation: HostOperation::Freeze,
            flags: 0
        }
    );
    write_vss_reply(&mut packet, HostStatus::Ok).unwrap();
    assert_eq!(packet.len(), 6260);
    assert_eq!(packet[25], 0x05);
}

#[test]
fn hot_backup_replies_carry_no_auto_recovery_flag() {
    for (status, status_bytes) in [
        (HostStatus::Ok, [0, 0, 0, 0]),
        (HostStatus::Fail, [0x05, 0x40, 0x00, 0x80]),
    ] {
        let mut packet = vss_request(2, [0, 0, 0, 0]);
        write_vss_reply(&mut packet, status).unwrap();
        let mut expected = vss_request(2, [0x05, 0, 0, 0]);
        expected[20..24].copy_from_slice(&status_bytes);
        expected[25] = 0x05;
        assert_eq!(packet, expected, "{status:?}");
    }
}

#[test]
fn get_dm_info_reply_clears_flags() {
    let mut packet = vss_request(3, [0xff; 4]);
    write_vss_reply(&mut packet, HostStatus::Ok).unwrap();
    let mut expected = vss_request(3, [0; 4]);
    expected[25] = 0x05;
    assert_eq!(packet, expected);
}

#[test]
fn freeze_and_thaw_replies_keep_body_flags() {
    for op in [5, 6, 0, 1, 4] {
        let mut packet = vss_request(op, [0x12, 0, 0, 0]);
        write_vss_reply(&mut packet, HostStatus::Fail).unwrap();
        let mut expected = vss_request(op, [0x12, 0, 0, 0]);
        expected[20..24].copy_from_slice(&[0x05, 0x40, 0x00, 0x80]);
        expected[25] = 0x05;
        assert_eq!(packet, expected, "op {op}");
    }
}

#[test]
fn malformed_packets_get_a_header_only_failure_reply() {
    // A VSS header with a truncated body: answerable.
    let mut packet = vss_request(5, [0; 4])[..30].to_vec();
    let error = parse_host_packet(&packet).unwrap_err();
    assert_eq!(
        error,
        ParseError::TooShort {
            what: "VSS message",
            needed: 40,
            got: 30
        }
    );
    assert!(error.answerable());
    write_failure_reply(&mut packet).unwrap();
    assert_eq!(&packet[20..26], &[0x05, 0x40, 0x00, 0x80, 0x2a, 0x05]);
    assert_eq!(packet[28], 5, "body untouched");

    // Less than an IC header: nothing to answer with.
    let error = parse_host_packet(&packet[..27]).unwrap_err();
    assert!(!error.answerable());
    assert!(write_failure_reply(&mut packet[..27]).is_err());
}

#[test]
fn foreign_ic_types_are_rejected() {
    let mut packet = vss_request(5, [0; 4]);
    packet[12] = 1; // HEARTBEAT
    assert_eq!(
        parse_host_packet(&packet),
        Err(ParseError::UnexpectedIcType(IcType::Heartbeat))
    );
    packet[12] = 9;
    assert_eq!(
        parse_host_packet(&packet),
        Err(ParseError::UnknownIcType(9))
    );
    packet[13] = 1; // 0x0109: both bytes of the u16 are read, little-endian
    assert_eq!(
        parse_host_packet(&packet),
        Err(ParseError::UnknownIcType(0x0109))
    );
}

#[test]
#[cfg(target_endian = "little")]
fn device_message_layout_matches_hv_snapshot_h() {
    use zerocopy::{FromBytes, IntoBytes};
    let message = DeviceMessage::new(DeviceOperation::Freeze, 0x0102_0304_0506_0708);
    let mut expected = [0_u8; 64];
    expected[..4].copy_from_slice(&[2, 0, 0, 0]); // opt FREEZE
    expected[4..8].copy_from_slice(&[0, 0, 0, 0]); // status success
    expected[8..16].copy_from_slice(&[8, 7, 6, 5, 4, 3, 2, 1]); // msgid
    assert_eq!(message.as_bytes(), expected);

    let answer = message.with_status(DeviceStatus::Fail);
    assert_eq!(&answer.as_bytes()[4..8], &[1, 0, 0, 0]);
    assert_eq!(answer.operation(), Ok(DeviceOperation::Freeze));
    assert_eq!(answer.msgid(), 0x0102_0304_0506_0708);

    let mut bytes = expected;
    bytes[0] = 4; // DEVICE op COUNT: not an operation
    let parsed = DeviceMessage::read_from_bytes(&bytes).unwrap();
    assert!(parsed.operation().is_err());

    let empty = DeviceMessage::nothing_queued();
    assert_eq!(empty.operation(), Ok(DeviceOperation::None));
    assert_eq!(empty.status(), Ok(DeviceStatus::Fail));
}
