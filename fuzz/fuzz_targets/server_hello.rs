//! `keyward tls scan`'s parser of what a server answers to a ClientHello: records,
//! alerts, ServerHello/HelloRetryRequest and the TLS 1.2 flight. It must never panic,
//! allocate beyond its bounds or loop, whatever the bytes.

#![no_main]

use keyward_pki::scan::serverhello::{self, Depth};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serverhello::read_response(&mut &data[..], Depth::Flight);
    let _ = serverhello::read_response(&mut &data[..], Depth::Hello);
    let _ = serverhello::parse_server_hello(data);
    let _ = serverhello::parse_certificate(data);
    let _ = serverhello::parse_server_key_exchange(data, true);
    let _ = serverhello::parse_server_key_exchange(data, false);
});
