//! The machine's limits for the message format: what aws-lc-rs does in memory on one
//! core with 64 KiB buffers. Prints GB/s (10^9 bytes per second) for AES-256-GCM seal and
//! open, and for SHA-384, which suite 0x0578 runs over the whole message.
//!
//! `cargo run --release -p keyward-envelope --example aead_limit -- [GiB]`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

fn main() {
    let gib: u64 = std::env::args()
        .nth(1)
        .map_or(4, |s| s.parse().expect("GiB"));
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap());
    let mut buf = vec![0x5au8; 64 * 1024];
    let mut tag = [0u8; 16];
    let rounds = gib * 1024 * 1024 * 1024 / buf.len() as u64;

    let start = Instant::now();
    for i in 0..rounds {
        let mut iv = [0u8; 12];
        iv[4..].copy_from_slice(&i.to_be_bytes());
        let t = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(iv),
                Aad::from(&[1u8; 16]),
                &mut buf,
            )
            .unwrap();
        tag.copy_from_slice(t.as_ref());
    }
    let seal = start.elapsed().as_secs_f64();

    // Open what the last seal produced, over and over (the tag matches the last IV).
    let last_iv = {
        let mut iv = [0u8; 12];
        iv[4..].copy_from_slice(&(rounds - 1).to_be_bytes());
        iv
    };
    let mut sealed = [&buf[..], &tag[..]].concat();
    let start = Instant::now();
    for _ in 0..rounds {
        let mut work = sealed.clone();
        key.open_in_place(
            Nonce::assume_unique_for_key(last_iv),
            Aad::from(&[1u8; 16]),
            &mut work,
        )
        .unwrap();
        sealed[0] ^= 0; // keep the loop honest
    }
    let open = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut h = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA384);
    for _ in 0..rounds {
        h.update(&buf);
    }
    let _ = h.finish();
    let sha = start.elapsed().as_secs_f64();

    let bytes = (rounds * buf.len() as u64) as f64;
    println!(
        "seal_gbps={:.2} open_gbps={:.2} sha384_gbps={:.2}",
        bytes / seal / 1e9,
        bytes / open / 1e9,
        bytes / sha / 1e9
    );
}
