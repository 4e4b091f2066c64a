//! Any bytes from the host: parsing and the reply writers must return, and a
//! packet called answerable must take a failure reply.
#![no_main]

use hv_vss_proto::{
    HostStatus, MAX_HOST_PACKET_LEN, RequestBody, parse_host_packet, parse_host_reply,
    write_failure_reply, write_vss_reply,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let data = &data[..data.len().min(MAX_HOST_PACKET_LEN)];
    let mut packet = data.to_vec();
    match parse_host_packet(data) {
        Ok(request) => {
            if let RequestBody::Vss { .. } = request.body {
                assert!(write_vss_reply(&mut packet, HostStatus::Fail).is_ok());
                let reply = parse_host_reply(&packet).expect("a reply to a valid request parses");
                assert!(reply.is_reply());
            }
        }
        Err(error) => assert_eq!(error.answerable(), write_failure_reply(&mut packet).is_ok()),
    }
    let _ = parse_host_reply(data);
});
