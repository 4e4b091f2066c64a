//! Property tests: what the host builds, the guest parses back unchanged;
//! negotiation obeys its rule for any offer; no input makes a parser panic.

use hv_vss_proto::{
    DeviceMessage, DeviceOperation, DeviceStatus, HOT_BACKUP_NO_AUTO_RECOVERY, HostOperation,
    HostStatus, IcFlags, MAX_HOST_PACKET_LEN, NEGOTIATE_MIN_REPLY_LEN, Negotiated, ReplyBody,
    RequestBody, VSS_MAXIMUM, Version, build_negotiate_request, build_vss_request, negotiate,
    parse_host_packet, parse_host_reply, write_failure_reply, write_negotiate_reply,
    write_vss_reply,
};
use proptest::prelude::*;
use zerocopy::{FromBytes, IntoBytes};

fn version() -> impl Strategy<Value = Version> {
    // Mostly small, realistic versions; sometimes anything.
    prop_oneof![
        3 => (0_u16..8, 0_u16..3).prop_map(|(major, minor)| Version::new(major, minor)),
        1 => any::<(u16, u16)>().prop_map(|(major, minor)| Version::new(major, minor)),
    ]
}

fn operation() -> impl Strategy<Value = HostOperation> {
    proptest::sample::select(HostOperation::ALL)
}

proptest! {
    #[test]
    fn version_word_round_trips(major: u16, minor: u16) {
        let version = Version::new(major, minor);
        prop_assert_eq!(Version::from_wire(version.to_wire()), version);
        prop_assert_eq!(version.to_wire() & 0xffff, u32::from(major));
    }

    #[test]
    fn version_order_is_major_then_minor(a in version(), b in version()) {
        prop_assert_eq!(a.cmp(&b), (a.major, a.minor).cmp(&(b.major, b.minor)));
    }

    #[test]
    fn negotiate_request_round_trips(
        framework in prop::collection::vec(version(), 1..8),
        message in prop::collection::vec(version(), 1..8),
    ) {
        let mut buf = [0_u8; 256];
        let len = build_negotiate_request(&mut buf, &framework, &message).unwrap();
        let request = parse_host_packet(&buf[..len]).unwrap();
        let RequestBody::Negotiate(offer) = request.body else { panic!("{request:?}") };
        prop_assert_eq!(offer.framework_versions().collect::<Vec<_>>(), framework);
        prop_assert_eq!(offer.message_versions().collect::<Vec<_>>(), message);
    }

    #[test]
    fn negotiation_chooses_highest_offered_not_above_ours(
        framework in prop::collection::vec(version(), 1..8),
        message in prop::collection::vec(version(), 1..8),
    ) {
        let mut buf = [0_u8; 256];
        let len = build_negotiate_request(&mut buf, &framework, &message).unwrap();
        let RequestBody::Negotiate(offer) = parse_host_packet(&buf[..len]).unwrap().body else {
            panic!()
        };
        let best = |list: &[Version], max| list.iter().copied().filter(|v| *v <= max).max();
        match negotiate(&offer, VSS_MAXIMUM) {
            Ok(chosen) => {
                prop_assert_eq!(Some(chosen.framework), best(&framework, VSS_MAXIMUM.framework));
                prop_assert_eq!(Some(chosen.message), best(&message, VSS_MAXIMUM.message));
                // The reply parses back as exactly the chosen pair.
                let reply_len = write_negotiate_reply(&mut buf, len, chosen).unwrap();
                prop_assert_eq!(reply_len, len.max(NEGOTIATE_MIN_REPLY_LEN));
                let reply = parse_host_reply(&buf[..reply_len]).unwrap();
                prop_assert!(reply.is_reply());
                prop_assert_eq!(reply.status(), Ok(HostStatus::Ok));
                prop_assert_eq!(reply.body, ReplyBody::Negotiated(chosen));
            }
            Err(_) => prop_assert!(
                best(&framework, VSS_MAXIMUM.framework).is_none()
                    || best(&message, VSS_MAXIMUM.message).is_none()
            ),
        }
    }

    #[test]
    fn vss_request_round_trips_and_reply_follows_the_rules(
        op in operation(),
        payload_len in 0_usize..(MAX_HOST_PACKET_LEN - 40),
        ok: bool,
    ) {
        let mut buf = vec![0_u8; MAX_HOST_PACKET_LEN];
        let len = build_vss_request(&mut buf, op, payload_len).unwrap();
        prop_assert_eq!(len, 40 + payload_len);
        let request = parse_host_packet(&buf[..len]).unwrap();
        prop_assert_eq!(request.body, RequestBody::Vss { operation: op, flags: 0 });
        prop_assert_eq!(request.header.flags(), IcFlags::HOST_REQUEST);

        let status = if ok { HostStatus::Ok } else { HostStatus::Fail };
        write_vss_reply(&mut buf[..len], status).unwrap();
        let reply = parse_host_reply(&buf[..len]).unwrap();
        prop_assert!(reply.is_reply());
        prop_assert_eq!(reply.status(), Ok(status));
        let expected_flags = if op == HostOperation::HotBackup { HOT_BACKUP_NO_AUTO_RECOVERY } else { 0 };
        prop_assert_eq!(reply.body, ReplyBody::Vss { operation: op, flags: expected_flags });
    }

    #[test]
    fn device_message_round_trips(op in proptest::sample::select(DeviceOperation::ALL), msgid: u64, fail: bool) {
        let status = if fail { DeviceStatus::Fail } else { DeviceStatus::Success };
        let message = DeviceMessage::new(op, msgid).with_status(status);
        let parsed = DeviceMessage::read_from_bytes(message.as_bytes()).unwrap();
        prop_assert_eq!(parsed.operation(), Ok(op));
        prop_assert_eq!(parsed.status(), Ok(status));
        prop_assert_eq!(parsed.msgid(), msgid);
        prop_assert!(parsed.reserved.iter().all(|b| *b == 0));
    }

    /// Any bytes of any length: parsing returns, and whatever it says about
    /// answerability holds (a failure reply can then be written).
    #[test]
    fn parsing_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let mut packet = bytes.clone();
        match parse_host_packet(&bytes) {
            Ok(request) => {
                if let RequestBody::Negotiate(offer) = request.body {
                    if let Ok(chosen) = negotiate(&offer, VSS_MAXIMUM) {
                        let mut buf = bytes.clone();
                        buf.resize(bytes.len().max(NEGOTIATE_MIN_REPLY_LEN), 0);
                        prop_assert!(write_negotiate_reply(&mut buf, bytes.len(), chosen).is_ok());
                    }
                } else {
                    prop_assert!(write_vss_reply(&mut packet, HostStatus::Fail).is_ok());
                }
            }
            Err(error) => prop_assert_eq!(error.answerable(), write_failure_reply(&mut packet).is_ok()),
        }
        let _ = parse_host_reply(&bytes);
    }

    /// Headers that look right with random bodies reach the deeper parsers.
    #[test]
    fn parsing_plausible_headers_never_panics(
        ic_type in 0_u16..7,
        op: u8,
        counts: (u16, u16),
        tail in prop::collection::vec(any::<u8>(), 0..128),
    ) {
        let mut packet = vec![0_u8; 40];
        packet[12..14].copy_from_slice(&ic_type.to_le_bytes());
        packet[28] = op;
        packet[28..30].copy_from_slice(&counts.0.to_le_bytes());
        packet[30..32].copy_from_slice(&counts.1.to_le_bytes());
        packet.extend_from_slice(&tail);
        for len in 0..=packet.len() {
            let _ = parse_host_packet(&packet[..len]);
            let _ = parse_host_reply(&packet[..len]);
        }
    }
}

#[test]
fn negotiated_maximum_is_three_and_five() {
    assert_eq!(
        VSS_MAXIMUM,
        Negotiated {
            framework: Version::new(3, 0),
            message: Version::new(5, 0)
        }
    );
}
