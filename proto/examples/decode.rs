//! Decodes host packets and prints what the guest would answer.
//!
//! `cargo run -p hv-vss-proto --example decode` walks through a sample
//! backup (negotiate, HOT_BACKUP, FREEZE with LUN data, THAW) and some broken
//! packets. Pass hex strings to decode your own: `... -- 0000...`.

use hv_vss_proto::{
    HostOperation, HostStatus, MAX_HOST_PACKET_LEN, ParseError, RequestBody, VSS_MAXIMUM, Version,
    build_negotiate_request, build_vss_request, negotiate, parse_host_packet, parse_host_reply,
    write_failure_reply, write_negotiate_reply, write_vss_reply,
};

fn main() {
    let packets: Vec<(String, Vec<u8>)> = if std::env::args().len() > 1 {
        std::env::args()
            .skip(1)
            .enumerate()
            .filter_map(|(i, hex)| {
                let bytes = decode_hex(&hex);
                if bytes.is_none() {
                    eprintln!("argument {}: not a hex string, skipped", i + 1);
                }
                Some((format!("argument {}", i + 1), bytes?))
            })
            .collect()
    } else {
        samples()
    };
    for (name, packet) in packets {
        println!("== {name} ({} bytes)", packet.len());
        println!("   host:  {}", hex(&packet));
        let (reply, summary) = answer(&packet);
        println!("   parsed: {summary}");
        match reply {
            Some(reply) => {
                println!("   guest: {}", hex(&reply));
                match parse_host_reply(&reply) {
                    Ok(parsed) => println!(
                        "   reply: status {:?}, flags {:#04x}, {:?}",
                        parsed.status(),
                        parsed.header.flags,
                        parsed.body
                    ),
                    Err(error) => println!("   reply unreadable: {error}"),
                }
            }
            None => println!("   guest: no reply possible (no whole IC header)"),
        }
    }
}

/// What the guest answers, without the user-space parties: CHECK, FREEZE and
/// THAW are shown as if they had succeeded.
fn answer(packet: &[u8]) -> (Option<Vec<u8>>, String) {
    let mut reply = packet.to_vec();
    match parse_host_packet(packet) {
        Ok(request) => match request.body {
            RequestBody::Negotiate(offer) => {
                let offered = format!(
                    "negotiate: framework {:?}, message {:?}",
                    offer
                        .framework_versions()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>(),
                    offer
                        .message_versions()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                );
                match negotiate(&offer, VSS_MAXIMUM) {
                    Ok(chosen) => {
                        reply.resize(packet.len().max(hv_vss_proto::NEGOTIATE_MIN_REPLY_LEN), 0);
                        let len = write_negotiate_reply(&mut reply, packet.len(), chosen)
                            .unwrap_or(packet.len());
                        reply.truncate(len);
                        let chosen = format!(
                            "; chose framework {}, message {}",
                            chosen.framework, chosen.message
                        );
                        (Some(reply), offered + &chosen)
                    }
                    Err(error) => {
                        let answerable = write_failure_reply(&mut reply).is_ok();
                        (answerable.then_some(reply), format!("{offered}; {error}"))
                    }
                }
            }
            RequestBody::Vss { operation, flags } => {
                let _ = write_vss_reply(&mut reply, HostStatus::Ok);
                let user = operation.device_operation().map_or_else(
                    || "answered by the kernel".to_owned(),
                    |op| format!("goes to user space as {}", op.name()),
                );
                (
                    Some(reply),
                    format!("{} (flags {flags:#x}), {user}", operation.name()),
                )
            }
        },
        Err(error) => failure(&mut reply, error),
    }
}

fn failure(reply: &mut [u8], error: ParseError) -> (Option<Vec<u8>>, String) {
    let answerable = error.answerable() && write_failure_reply(reply).is_ok();
    (
        answerable.then(|| reply.to_vec()),
        format!("malformed: {error}"),
    )
}

fn samples() -> Vec<(String, Vec<u8>)> {
    let mut samples = Vec::new();
    let mut buf = vec![0_u8; MAX_HOST_PACKET_LEN];
    let framework = [Version::new(1, 0), Version::new(3, 0)];
    let message = [
        Version::new(3, 0),
        Version::new(4, 0),
        Version::new(5, 0),
        Version::new(6, 0),
    ];
    if let Ok(len) = build_negotiate_request(&mut buf, &framework, &message) {
        samples.push(("negotiate".to_owned(), buf[..len].to_vec()));
    }
    for (name, operation, payload) in [
        ("HOT_BACKUP (check)", HostOperation::HotBackup, 0),
        (
            "FREEZE with 64 bytes of LUN data",
            HostOperation::Freeze,
            64,
        ),
        ("THAW", HostOperation::Thaw, 0),
        ("BU_COMPLETE", HostOperation::BuComplete, 0),
    ] {
        if let Ok(len) = build_vss_request(&mut buf, operation, payload) {
            samples.push((name.to_owned(), buf[..len].to_vec()));
        }
    }
    if let Ok(len) = build_vss_request(&mut buf, HostOperation::Freeze, 0) {
        samples.push(("FREEZE cut to 30 bytes".to_owned(), buf[..30].to_vec()));
        buf[28] = 9;
        samples.push(("unknown operation 9".to_owned(), buf[..len].to_vec()));
        samples.push(("12 stray bytes".to_owned(), buf[..12].to_vec()));
    }
    samples
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    const SHOWN: usize = 48;
    let mut text = String::new();
    for byte in bytes.iter().take(SHOWN) {
        let _ = write!(text, "{byte:02x}");
    }
    if bytes.len() > SHOWN {
        let _ = write!(text, "… (+{} bytes)", bytes.len() - SHOWN);
    }
    text
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if digits.len() % 2 != 0 {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}
