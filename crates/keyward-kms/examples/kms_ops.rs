//! In-process KMS throughput: Encrypt, Decrypt and GenerateDataKey (32 bytes), ops/s on
//! one thread (one core), over SQLite in a temporary directory.
//!
//! `cargo run --release -p keyward-kms --example kms_ops -- [seconds per op]`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward_kms::{AesRootKey, CreateKeyRequest, EncryptionContext, Kms, KmsConfig, SystemClock};
use keyward_store::SqliteStore;

fn rate(seconds: f64, mut op: impl FnMut()) -> f64 {
    // Warm up, then count whole batches until the time is up.
    for _ in 0..1000 {
        op();
    }
    let (start, mut n) = (Instant::now(), 0u64);
    while start.elapsed() < Duration::from_secs_f64(seconds) {
        for _ in 0..1000 {
            op();
        }
        n += 1000;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .map_or(3.0, |s| s.parse().expect("seconds"));
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("keyward.db")).unwrap());
    let (root, _) = AesRootKey::load_or_create_file(&dir.path().join("root.key")).unwrap();
    let kms = Kms::open(
        store,
        Box::new(root),
        Arc::new(SystemClock),
        KmsConfig::default(),
    )
    .unwrap();
    let key = kms.create_key(&CreateKeyRequest::default()).unwrap().key_id;
    // What the AWS Encryption SDK sends: a context with its signing key.
    let context: EncryptionContext = [
        ("aws-crypto-public-key".to_owned(), "A".repeat(68)),
        ("purpose".to_owned(), "bench".to_owned()),
    ]
    .into_iter()
    .collect();
    let data_key = [7u8; 32];
    let blob = kms
        .encrypt(&key, &data_key, &context)
        .unwrap()
        .ciphertext_blob;

    // The floor under every operation: one AES-256-GCM seal of 32 bytes with a random IV.
    let raw = aws_lc_rs::aead::LessSafeKey::new(
        aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, &[9u8; 32]).unwrap(),
    );
    let seal = rate(seconds, || {
        let mut iv = [0u8; 12];
        aws_lc_rs::rand::fill(&mut iv).unwrap();
        let mut buf = data_key;
        let nonce = aws_lc_rs::aead::Nonce::assume_unique_for_key(iv);
        let aad = aws_lc_rs::aead::Aad::empty();
        drop(
            raw.seal_in_place_separate_tag(nonce, aad, &mut buf)
                .unwrap(),
        );
    });
    let encrypt = rate(seconds, || {
        drop(kms.encrypt(&key, &data_key, &context).unwrap())
    });
    let decrypt = rate(seconds, || {
        drop(kms.decrypt(&blob, &context, None).unwrap())
    });
    let generate = rate(seconds, || {
        drop(kms.generate_data_key(&key, 32, &context).unwrap())
    });
    println!(
        "aes_gcm_seal_32b_ops={seal:.0} encrypt_ops={encrypt:.0} decrypt_ops={decrypt:.0} generate_data_key_ops={generate:.0}"
    );
}
