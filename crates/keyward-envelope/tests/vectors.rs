//! Known-answer tests: AWS Encryption SDK v2 messages made by the AWS Encryption CLI 4.3.0
//! (and an independent encryptor it verified), each with its unwrapped data key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use keyward_envelope::{
    DataKey, DecryptOptions, DecryptionMaterials, EncryptedDataKey, EncryptionContext,
    EncryptionMaterials, Error, Keyring, decrypt,
};

/// Hands out the data key given with a vector: the vectors' EDKs were wrapped by a KMS
/// instance that no longer exists.
struct GivenDataKey(DataKey);

impl Keyring for GivenDataKey {
    fn on_encrypt(&self, _: &mut EncryptionMaterials<'_>) -> Result<(), Error> {
        unreachable!("decrypt-only")
    }
    fn on_decrypt(
        &self,
        _: &DecryptionMaterials<'_>,
        _: &[EncryptedDataKey],
    ) -> Result<Option<DataKey>, Error> {
        Ok(Some(self.0.clone()))
    }
}

struct Vector {
    description: String,
    suite: u16,
    data_key: DataKey,
    context: EncryptionContext,
    message: Vec<u8>,
    plaintext: Vec<u8>,
}

fn vectors() -> Vec<Vector> {
    let text = include_str!("data/esdk_v2_datakey_vectors.json");
    let json: serde_json::Value = serde_json::from_str(text).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    json["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap().to_owned();
            let key = hex(&s("plaintext_data_key_hex"));
            let ctx = v["encryption_context"].as_object().unwrap();
            Vector {
                description: s("description"),
                suite: u16::from_str_radix(s("suite_id").trim_start_matches("0x"), 16).unwrap(),
                data_key: DataKey::try_from_slice(&key).unwrap(),
                context: ctx
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect(),
                message: b64.decode(s("message_b64")).unwrap(),
                plaintext: b64.decode(s("plaintext_b64")).unwrap(),
            }
        })
        .collect()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn every_vector_decrypts_to_its_plaintext() {
    let vectors = vectors();
    assert_eq!(vectors.len(), 6);
    for v in vectors {
        for parallelism in [1, 2] {
            let mut out = Vec::new();
            let options = DecryptOptions {
                parallelism,
                ..Default::default()
            };
            let summary = decrypt(
                &GivenDataKey(v.data_key.clone()),
                &options,
                &v.message[..],
                &mut out,
            )
            .unwrap_or_else(|e| panic!("{}: {e}", v.description));
            assert_eq!(out, v.plaintext, "{}", v.description);
            assert_eq!(summary.header.suite.id(), v.suite, "{}", v.description);
            assert_eq!(summary.header.context, v.context, "{}", v.description);
        }
    }
}

#[test]
fn fail_every_vector_with_a_wrong_data_key() {
    for v in vectors() {
        let mut wrong = *v.data_key.expose_secret();
        wrong[0] ^= 1;
        let mut out = Vec::new();
        let r = decrypt(
            &GivenDataKey(DataKey::from_bytes(wrong)),
            &DecryptOptions::default(),
            &v.message[..],
            &mut out,
        );
        assert!(
            matches!(r, Err(Error::DecryptionFailed)),
            "{}",
            v.description
        );
        assert!(out.is_empty());
    }
}

#[test]
fn fail_every_vector_with_a_flipped_byte() {
    for v in vectors() {
        for i in 0..v.message.len() {
            let mut m = v.message.clone();
            m[i] ^= 0x01;
            let mut out = Vec::new();
            let r = decrypt(
                &GivenDataKey(v.data_key.clone()),
                &DecryptOptions::default(),
                &m[..],
                &mut out,
            );
            assert!(
                r.is_err(),
                "{}: flipping byte {i} went unnoticed",
                v.description
            );
        }
    }
}
