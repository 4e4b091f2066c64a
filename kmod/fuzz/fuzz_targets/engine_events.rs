//! Any bytes become a sequence of engine events (host packets, device
//! opens/closes/reads/answers, timer firings, time passing); the engine's
//! invariants are checked after every event. See `src/lib.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = hv_vss_kmod_fuzz::run(data);
});
