//! Signed checkpoints: "the log had `seq` records and the last one's hash was `hash`",
//! signed with ECDSA P-256 by a key the service keeps behind its root-key barrier. Kept
//! (and exported) apart from the records, a checkpoint proves that the log once reached
//! `seq`: a log cut short of it fails verification.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _,
    UnparsedPublicKey,
};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// A signed statement about the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The number of records the log had.
    pub seq: u64,
    /// The hash of record `seq`.
    pub hash: String,
    /// When it was made, ms since the Unix epoch.
    pub time_ms: i64,
    /// The signer's public key (uncompressed P-256 point, hex).
    pub public_key: String,
    /// ECDSA P-256 SHA-256 (ASN.1 DER, hex) over [`Checkpoint::message`].
    pub signature: String,
}

impl Checkpoint {
    /// What is signed.
    pub fn message(seq: u64, hash: &str, time_ms: i64) -> Vec<u8> {
        format!("keyward-audit-checkpoint\n{seq}\n{hash}\n{time_ms}\n").into_bytes()
    }

    /// Whether the signature is valid for `public_key` (hex), which the verifier must
    /// have from a trusted place (the service, or an export kept elsewhere).
    pub fn verify(&self, public_key: &str) -> bool {
        let (Some(key), Some(sig)) = (unhex(public_key), unhex(&self.signature)) else {
            return false;
        };
        self.public_key == public_key
            && UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key)
                .verify(&Self::message(self.seq, &self.hash, self.time_ms), &sig)
                .is_ok()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || s.len() > 1024 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Signs checkpoints.
pub struct CheckpointSigner {
    key: EcdsaKeyPair,
    public_key: String,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

impl CheckpointSigner {
    /// A new signing key, as PKCS#8 for the caller to wrap and store.
    pub fn generate() -> Option<Zeroizing<Vec<u8>>> {
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new())
            .ok()
            .map(|doc| Zeroizing::new(doc.as_ref().to_vec()))
    }

    /// The signer for a stored PKCS#8 key.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Option<Self> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8).ok()?;
        let public_key = hex(key.public_key().as_ref());
        Some(Self { key, public_key })
    }

    /// The public key (hex) verifiers need.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// A checkpoint for a log of `seq` records ending in `hash`.
    pub fn sign(&self, seq: u64, hash: &str, time_ms: i64) -> Option<Checkpoint> {
        let sig = self
            .key
            .sign(
                &SystemRandom::new(),
                &Checkpoint::message(seq, hash, time_ms),
            )
            .ok()?;
        Some(Checkpoint {
            seq,
            hash: hash.to_owned(),
            time_ms,
            public_key: self.public_key.clone(),
            signature: hex(sig.as_ref()),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn checkpoints_verify_and_refuse_changes() {
        let signer = CheckpointSigner::from_pkcs8(&CheckpointSigner::generate().unwrap()).unwrap();
        let c = signer.sign(10, &"ab".repeat(32), 5).unwrap();
        assert!(c.verify(signer.public_key()));
        let other = CheckpointSigner::from_pkcs8(&CheckpointSigner::generate().unwrap()).unwrap();
        assert!(!c.verify(other.public_key()));
        for changed in [
            Checkpoint {
                seq: 11,
                ..c.clone()
            },
            Checkpoint {
                hash: "cd".repeat(32),
                ..c.clone()
            },
            Checkpoint {
                time_ms: 6,
                ..c.clone()
            },
            Checkpoint {
                signature: "00".into(),
                ..c.clone()
            },
        ] {
            assert!(!changed.verify(signer.public_key()));
        }
    }
}
