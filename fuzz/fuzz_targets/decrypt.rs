//! Decrypts arbitrary bytes with a fixed raw AES key: the parser and the frame layer must
//! never panic, hang or allocate past the limits, and nothing unauthenticated may come out.
//! Seeds: `cargo run -p keyward-envelope --example fuzz_seeds -- fuzz/corpus/decrypt`.

#![no_main]

use keyward_envelope::{DecryptOptions, Limits, RawAesKeyring, WrappingKey, decrypt};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let keyring = RawAesKeyring::new("keyward", "default", &WrappingKey::from_bytes([0x42; 32]))
        .expect("valid keyring");
    let limits = Limits { max_frame_length: 1 << 16, ..Limits::default() };
    for parallelism in [1, 2] {
        let options = DecryptOptions { limits, parallelism, ..Default::default() };
        let mut out = Vec::new();
        if decrypt(&keyring, &options, data, &mut out).is_ok() {
            // Only a message made with the fixed key can decrypt; fuzzing from seeds finds
            // them, and their output must then be deterministic.
            let mut again = Vec::new();
            decrypt(&keyring, &options, data, &mut again).expect("decrypts twice");
            assert_eq!(out, again);
        }
    }
});
