//! Writes seed messages for the `decrypt` fuzz target (fixed key 0x42 * 32).
//!
//! `cargo run -p keyward-envelope --example fuzz_seeds -- fuzz/corpus/decrypt`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use keyward_envelope::{
    EncryptOptions, EncryptionContext, MultiKeyring, RawAesKeyring, Suite, WrappingKey, encrypt,
};

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("output directory"));
    std::fs::create_dir_all(&dir).unwrap();
    let key = WrappingKey::from_bytes([0x42; 32]);
    let keyring = RawAesKeyring::new("keyward", "default", &key).unwrap();
    let two = MultiKeyring::new(Box::new(
        RawAesKeyring::new("keyward", "default", &key).unwrap(),
    ))
    .with_child(Box::new(RawAesKeyring::new("other", "x", &key).unwrap()));
    let ctx: EncryptionContext = [("a", "1"), ("purpose", "fuzz")].into_iter().collect();
    let mut n = 0;
    for suite in [Suite::AesGcmHkdfCommit, Suite::AesGcmHkdfCommitEcdsaP384] {
        for (len, frame_length) in [(0, 16), (1, 16), (32, 16), (100, 16), (5000, 4096)] {
            for (k, c) in [
                (&keyring as &dyn keyward_envelope::Keyring, &ctx),
                (&two, &EncryptionContext::new()),
            ] {
                let options = EncryptOptions {
                    suite,
                    frame_length,
                    parallelism: 1,
                };
                let mut out = Vec::new();
                encrypt(k, c, &options, &vec![0x61u8; len][..], &mut out).unwrap();
                std::fs::write(dir.join(format!("seed-{n}")), out).unwrap();
                n += 1;
            }
        }
    }
}
