//! Round trips, tampering, truncation, reordering and limits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use keyward_envelope::{
    DecryptOptions, EncryptOptions, EncryptionContext, Error, Limit, Limits, Malformed,
    MultiKeyring, RawAesKeyring, Suite, WrappingKey, decrypt, encrypt,
};
use proptest::prelude::*;

const SUITES: [Suite; 2] = [Suite::AesGcmHkdfCommit, Suite::AesGcmHkdfCommitEcdsaP384];

fn keyring(key: &WrappingKey) -> RawAesKeyring {
    RawAesKeyring::new("keyward", "default", key).unwrap()
}

fn seal(
    key: &WrappingKey,
    suite: Suite,
    frame_length: u32,
    ctx: &EncryptionContext,
    pt: &[u8],
) -> Vec<u8> {
    let options = EncryptOptions {
        suite,
        frame_length,
        parallelism: 2,
    };
    let mut out = Vec::new();
    encrypt(&keyring(key), ctx, &options, pt, &mut out).unwrap();
    out
}

fn open(key: &WrappingKey, msg: &[u8], options: &DecryptOptions) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    decrypt(&keyring(key), options, msg, &mut out).map(|_| out)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 251) as u8).collect()
}

/// Frame offsets of a message with `frames` frames: (start of each frame, start of footer).
fn frame_starts(msg_header_len: usize, frame_len: usize, n_regular: usize) -> Vec<usize> {
    (0..=n_regular)
        .map(|i| msg_header_len + i * (frame_len + 32))
        .collect()
}

/// The header's length, walked from its structure: version (1), suite (2), id (32),
/// AAD (2 + n), EDKs (2 + 3 fields each), content type (1), frame length (4),
/// commitment (32), tag (16).
fn header_len(msg: &[u8]) -> usize {
    let mut at = 35;
    let aad = u16::from_be_bytes([msg[at], msg[at + 1]]) as usize;
    at += 2 + aad;
    let edks = u16::from_be_bytes([msg[at], msg[at + 1]]) as usize;
    at += 2;
    for _ in 0..edks * 3 {
        let n = u16::from_be_bytes([msg[at], msg[at + 1]]) as usize;
        at += 2 + n;
    }
    at + 1 + 4 + 32 + 16
}

#[test]
fn sizes_around_frame_boundaries_both_suites() {
    let key = WrappingKey::generate().unwrap();
    let ctx: EncryptionContext = [("tenant", "a"), ("purpose", "test")].into_iter().collect();
    let fl = 4096u32;
    for suite in SUITES {
        for len in [
            0,
            1,
            15,
            16,
            4095,
            4096,
            4097,
            8192,
            3 * 4096 + 7,
            300 * 4096,
            300 * 4096 + 1,
        ] {
            let pt = pattern(len);
            let msg = seal(&key, suite, fl, &ctx, &pt);
            for parallelism in [1, 2, 3] {
                let options = DecryptOptions {
                    parallelism,
                    required_context: ctx.clone(),
                    ..Default::default()
                };
                assert_eq!(
                    open(&key, &msg, &options).unwrap(),
                    pt,
                    "suite {suite:?} len {len}"
                );
            }
        }
    }
}

#[test]
fn exact_multiple_ends_with_an_empty_final_frame() {
    // The AWS Encryption SDK for Python refuses a full final frame.
    let key = WrappingKey::generate().unwrap();
    let ctx = EncryptionContext::new();
    let msg = seal(&key, Suite::AesGcmHkdfCommit, 16, &ctx, &pattern(48));
    let h = header_len(&msg);
    // Three regular frames, then an empty final frame.
    assert_eq!(msg.len(), h + 3 * (16 + 32) + 4 + 4 + 12 + 4 + 16);
    assert_eq!(&msg[h + 3 * 48..h + 3 * 48 + 4], &[0xff; 4]);
}

#[test]
fn fail_single_byte_flips_anywhere() {
    let key = WrappingKey::generate().unwrap();
    let ctx: EncryptionContext = [("k", "v")].into_iter().collect();
    for suite in SUITES {
        let msg = seal(&key, suite, 64, &ctx, &pattern(200));
        for i in 0..msg.len() {
            for bit in [0x01, 0x80] {
                let mut m = msg.clone();
                m[i] ^= bit;
                assert!(
                    open(&key, &m, &DecryptOptions::default()).is_err(),
                    "{suite:?} byte {i}"
                );
            }
        }
    }
}

#[test]
fn fail_truncation_at_every_byte_and_frame_boundary() {
    let key = WrappingKey::generate().unwrap();
    for suite in SUITES {
        let msg = seal(
            &key,
            suite,
            64,
            &EncryptionContext::new(),
            &pattern(64 * 5 + 10),
        );
        for cut in 0..msg.len() {
            let r = open(&key, &msg[..cut], &DecryptOptions::default());
            assert!(r.is_err(), "{suite:?} truncated at {cut} accepted");
        }
        let h = header_len(&msg);
        for cut in frame_starts(h, 64, 5) {
            assert!(matches!(
                open(&key, &msg[..cut], &DecryptOptions::default()),
                Err(Error::Malformed(Malformed::Truncated))
            ));
        }
    }
}

#[test]
fn fail_reordered_dropped_and_duplicated_frames() {
    let key = WrappingKey::generate().unwrap();
    let msg = seal(
        &key,
        Suite::AesGcmHkdfCommit,
        64,
        &EncryptionContext::new(),
        &pattern(64 * 4 + 10),
    );
    let h = header_len(&msg);
    let (head, frames, last) = (&msg[..h], &msg[h..h + 4 * 96], &msg[h + 4 * 96..]);
    let frame = |i: usize| &frames[i * 96..(i + 1) * 96];
    let swapped = [head, frame(1), frame(0), frame(2), frame(3), last].concat();
    let dropped = [head, frame(0), frame(2), frame(3), last].concat();
    let duplicated = [head, frame(0), frame(1), frame(1), frame(2), frame(3), last].concat();
    let final_early = [head, frame(0), last].concat();
    let doubled_final = [&msg[..], last].concat();
    for (name, m) in [
        ("swapped", swapped),
        ("dropped", dropped),
        ("duplicated", duplicated),
        ("final early", final_early),
        ("final twice", doubled_final),
    ] {
        let r = open(&key, &m, &DecryptOptions::default());
        assert!(r.is_err(), "{name} accepted");
    }
}

#[test]
fn fail_wrong_key_and_context_mismatch() {
    let key = WrappingKey::generate().unwrap();
    let ctx: EncryptionContext = [("purpose", "test")].into_iter().collect();
    let msg = seal(
        &key,
        Suite::AesGcmHkdfCommitEcdsaP384,
        4096,
        &ctx,
        b"secret",
    );
    let other = WrappingKey::generate().unwrap();
    assert!(matches!(
        open(&other, &msg, &DecryptOptions::default()),
        Err(Error::DecryptionFailed)
    ));
    for required in [[("purpose", "other")], [("missing", "x")]] {
        let options = DecryptOptions {
            required_context: required.into_iter().collect(),
            ..Default::default()
        };
        assert!(matches!(
            open(&key, &msg, &options),
            Err(Error::ContextMismatch)
        ));
    }
}

#[test]
fn multi_keyring_any_member_decrypts() {
    let (a, b) = (
        WrappingKey::generate().unwrap(),
        WrappingKey::generate().unwrap(),
    );
    let multi = MultiKeyring::new(Box::new(keyring(&a))).with_child(Box::new(
        RawAesKeyring::new("keyward", "second", &b).unwrap(),
    ));
    let mut msg = Vec::new();
    let summary = encrypt(
        &multi,
        &EncryptionContext::new(),
        &EncryptOptions::default(),
        &b"hi"[..],
        &mut msg,
    )
    .unwrap();
    assert_eq!(summary.header.encrypted_data_keys.len(), 2);
    let only_b = RawAesKeyring::new("keyward", "second", &b).unwrap();
    let mut out = Vec::new();
    decrypt(&only_b, &DecryptOptions::default(), &msg[..], &mut out).unwrap();
    assert_eq!(out, b"hi");
    assert_eq!(open(&a, &msg, &DecryptOptions::default()).unwrap(), b"hi");
}

#[test]
fn limits_are_enforced_with_typed_errors() {
    let key = WrappingKey::generate().unwrap();
    let ctx: EncryptionContext = [("k", "v".repeat(1000))].into_iter().collect();
    let msg = seal(
        &key,
        Suite::AesGcmHkdfCommit,
        1024,
        &ctx,
        &pattern(10 * 1024),
    );
    let with = |limits: Limits| DecryptOptions {
        limits,
        ..Default::default()
    };
    let d = Limits::default();
    assert!(matches!(
        open(
            &key,
            &msg,
            &with(Limits {
                max_header_len: 500,
                ..d
            })
        ),
        Err(Error::Limit(Limit::HeaderLength(500)))
    ));
    assert!(matches!(
        open(
            &key,
            &msg,
            &with(Limits {
                max_frame_length: 512,
                ..d
            })
        ),
        Err(Error::Limit(Limit::FrameLength(512)))
    ));
    assert!(matches!(
        open(&key, &msg, &with(Limits { max_frames: 5, ..d })),
        Err(Error::Limit(Limit::FrameCount(5)))
    ));
    let multi = MultiKeyring::new(Box::new(keyring(&key)))
        .with_child(Box::new(keyring(&key)))
        .with_child(Box::new(keyring(&key)));
    let mut three = Vec::new();
    encrypt(
        &multi,
        &ctx,
        &EncryptOptions::default(),
        &b"x"[..],
        &mut three,
    )
    .unwrap();
    assert!(matches!(
        open(
            &key,
            &three,
            &with(Limits {
                max_encrypted_data_keys: 2,
                ..d
            })
        ),
        Err(Error::Limit(Limit::EncryptedDataKeys(2)))
    ));
    assert_eq!(
        open(&key, &three, &DecryptOptions::default()).unwrap(),
        b"x"
    );
}

#[test]
fn fail_trailing_data_and_reserved_context() {
    let key = WrappingKey::generate().unwrap();
    for suite in SUITES {
        let mut msg = seal(&key, suite, 64, &EncryptionContext::new(), b"abc");
        msg.push(0);
        assert!(matches!(
            open(&key, &msg, &DecryptOptions::default()),
            Err(Error::Malformed(Malformed::TrailingData))
        ));
    }
    let reserved: EncryptionContext = [("aws-crypto-public-key", "x")].into_iter().collect();
    let r = encrypt(
        &keyring(&key),
        &reserved,
        &EncryptOptions::default(),
        &b""[..],
        Vec::new(),
    );
    assert!(matches!(r, Err(Error::InvalidInput(_))));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip_random_sizes_and_contexts(
        frame_length in prop::sample::select(vec![1u32, 16, 17, 64, 4096]),
        extra in 0usize..3,
        frames in 0usize..6,
        ctx in prop::collection::btree_map("[a-z]{1,8}", "\\PC{0,16}", 0..5),
        signed in any::<bool>(),
    ) {
        let key = WrappingKey::generate().unwrap();
        let ctx: EncryptionContext = ctx.into_iter().collect();
        let len = (frames * frame_length as usize + extra).saturating_sub(1);
        let pt = pattern(len);
        let suite = if signed { Suite::AesGcmHkdfCommitEcdsaP384 } else { Suite::AesGcmHkdfCommit };
        let msg = seal(&key, suite, frame_length, &ctx, &pt);
        let options = DecryptOptions { required_context: ctx, ..Default::default() };
        prop_assert_eq!(open(&key, &msg, &options).unwrap(), pt);
    }
}

#[test]
fn many_batches_any_parallelism_and_failures_midway() {
    let key = WrappingKey::generate().unwrap();
    let pt = pattern(5 * 1024 * 1024 + 123);
    for suite in SUITES {
        let msg = seal(&key, suite, 64 * 1024, &EncryptionContext::new(), &pt);
        for parallelism in [1, 2, 3] {
            let options = DecryptOptions {
                parallelism,
                ..Default::default()
            };
            assert_eq!(open(&key, &msg, &options).unwrap(), pt);

            // A bad frame in the fourth batch: the batches before it are released, then
            // decryption fails.
            let mut bad = msg.clone();
            let at = 3 * 1024 * 1024 + 500;
            bad[at] ^= 0x40;
            let mut out = Vec::new();
            let r = decrypt(&keyring(&key), &options, &bad[..], &mut out);
            assert!(matches!(r, Err(Error::DecryptionFailed)));
            assert!(out.len() < at && pt.starts_with(&out));

            let r = open(&key, &msg[..msg.len() / 2], &options);
            assert!(matches!(r, Err(Error::Malformed(Malformed::Truncated))));
        }
    }
}

/// A signed message's final frame is written only after its signature verifies.
#[test]
fn signed_final_frame_waits_for_the_signature() {
    let key = WrappingKey::generate().unwrap();
    let suite = Suite::AesGcmHkdfCommitEcdsaP384;
    let pt = pattern(100);
    for (frame_length, released) in [(4096u32, 0usize), (64, 64)] {
        let mut msg = seal(&key, suite, frame_length, &EncryptionContext::new(), &pt);
        let last = msg.len() - 1;
        msg[last] ^= 1; // inside the signature
        let mut out = Vec::new();
        let r = decrypt(
            &keyring(&key),
            &DecryptOptions::default(),
            &msg[..],
            &mut out,
        );
        assert!(matches!(r, Err(Error::DecryptionFailed)), "{r:?}");
        assert_eq!(out, pt[..released], "frame length {frame_length}");
    }
}

/// An unsigned message whose context carries a verification key is refused: a signature
/// may have been stripped.
#[test]
fn unsigned_message_with_a_verification_key_is_refused() {
    let key = WrappingKey::generate().unwrap();
    let ctx: EncryptionContext = [("xws-crypto-public-key", "x")].into_iter().collect();
    let mut msg = seal(&key, Suite::AesGcmHkdfCommit, 64, &ctx, b"abc");
    let at = msg
        .windows(21)
        .position(|w| w == b"xws-crypto-public-key")
        .unwrap();
    msg[at] = b'a';
    assert!(matches!(
        open(&key, &msg, &DecryptOptions::default()),
        Err(Error::Malformed(Malformed::UnexpectedVerificationKey))
    ));
}
