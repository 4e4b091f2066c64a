//! Any negotiate packet: the choice obeys the rule and the reply parses back
//! as exactly the chosen versions.
#![no_main]

use hv_vss_proto::{
    HostStatus, MAX_HOST_PACKET_LEN, NEGOTIATE_MIN_REPLY_LEN, ReplyBody, RequestBody, VSS_MAXIMUM,
    negotiate, parse_host_packet, parse_host_reply, write_negotiate_reply,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut packet = data[..data.len().min(MAX_HOST_PACKET_LEN)].to_vec();
    // Steer most inputs into the negotiate parser: ic_type 0 at offset 12.
    if packet.len() >= 14 {
        packet[12] = 0;
        packet[13] = 0;
    }
    let Ok(request) = parse_host_packet(&packet) else {
        return;
    };
    let RequestBody::Negotiate(offer) = request.body else {
        return;
    };
    let Ok(chosen) = negotiate(&offer, VSS_MAXIMUM) else {
        assert!(
            offer
                .framework_versions()
                .all(|v| v > VSS_MAXIMUM.framework)
                || offer.message_versions().all(|v| v > VSS_MAXIMUM.message)
        );
        return;
    };
    assert!(chosen.framework <= VSS_MAXIMUM.framework && chosen.message <= VSS_MAXIMUM.message);
    assert!(
        offer
            .framework_versions()
            .all(|v| v > VSS_MAXIMUM.framework || v <= chosen.framework)
    );
    assert!(
        offer
            .message_versions()
            .all(|v| v > VSS_MAXIMUM.message || v <= chosen.message)
    );
    let request_len = packet.len();
    packet.resize(request_len.max(NEGOTIATE_MIN_REPLY_LEN), 0);
    let len =
        write_negotiate_reply(&mut packet, request_len, chosen).expect("buffer is big enough");
    let reply = parse_host_reply(&packet[..len]).expect("the reply parses");
    assert_eq!(reply.status(), Ok(HostStatus::Ok));
    assert_eq!(reply.body, ReplyBody::Negotiated(chosen));
});
