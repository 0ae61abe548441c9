//! The two committing algorithm suites and their key schedule.
//!
//! Specification: `framework/algorithm-suites.md` and `framework/transitive-requirements.md`
//! of the AWS Encryption SDK specification.

use aws_lc_rs::{constant_time, hkdf};
use zeroize::Zeroizing;

use crate::aead::Aes256Gcm;
use crate::{DataKey, Error, Malformed};

/// Length of the message id of message format version 2, in bytes.
pub(crate) const MESSAGE_ID_LEN: usize = 32;
/// Length of the key commitment (the header's algorithm suite data), in bytes.
pub(crate) const COMMITMENT_LEN: usize = 32;
/// AES-GCM IV length, in bytes.
pub(crate) const IV_LEN: usize = 12;
/// AES-GCM tag length, in bytes.
pub(crate) const TAG_LEN: usize = 16;

/// A committing algorithm suite of message format version 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Suite {
    /// 0x0478 `ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY`: AES-256-GCM, HKDF-SHA512, key commitment.
    #[default]
    AesGcmHkdfCommit,
    /// 0x0578 `ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384`: the same plus an ECDSA
    /// P-384 / SHA-384 signature over the whole message.
    AesGcmHkdfCommitEcdsaP384,
}

impl Suite {
    /// The suite's two-byte identifier.
    pub fn id(self) -> u16 {
        match self {
            Self::AesGcmHkdfCommit => 0x0478,
            Self::AesGcmHkdfCommitEcdsaP384 => 0x0578,
        }
    }

    /// The suite with this identifier, if it is one of the committing suites.
    pub fn from_id(id: u16) -> Result<Self, Malformed> {
        match id {
            0x0478 => Ok(Self::AesGcmHkdfCommit),
            0x0578 => Ok(Self::AesGcmHkdfCommitEcdsaP384),
            other => Err(Malformed::UnsupportedSuite(other)),
        }
    }

    /// Whether messages of this suite end with a signature footer.
    pub fn is_signed(self) -> bool {
        matches!(self, Self::AesGcmHkdfCommitEcdsaP384)
    }
}

/// The per-message keys derived from a data key and a message id.
pub(crate) struct MessageKeys {
    pub(crate) content: Aes256Gcm,
    pub(crate) commitment: Zeroizing<[u8; COMMITMENT_LEN]>,
}

impl MessageKeys {
    /// Derives the content encryption key and the key commitment:
    ///
    /// ```text
    /// PRK        = HKDF-Extract(SHA-512, salt = message id, IKM = data key)
    /// content    = HKDF-Expand(PRK, suite id (2 bytes BE) || "DERIVEKEY", 32)
    /// commitment = HKDF-Expand(PRK, "COMMITKEY", 32)
    /// ```
    pub(crate) fn derive(
        suite: Suite,
        data_key: &DataKey,
        message_id: &[u8; MESSAGE_ID_LEN],
    ) -> Result<Self, Error> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA512, message_id).extract(data_key.expose_secret());

        let id = suite.id().to_be_bytes();
        let info = [&id[..], b"DERIVEKEY"];
        let mut content = Zeroizing::new([0u8; 32]);
        prk.expand(&info, Len32)?.fill(&mut content[..])?;

        let mut commitment = Zeroizing::new([0u8; COMMITMENT_LEN]);
        prk.expand(&[b"COMMITKEY"], Len32)?
            .fill(&mut commitment[..])?;

        let content = Aes256Gcm::new(&content)?;
        Ok(Self {
            content,
            commitment,
        })
    }

    /// Compares the derived commitment with the one in a header, in constant time.
    pub(crate) fn commitment_matches(&self, header_commitment: &[u8]) -> bool {
        constant_time::verify_slices_are_equal(&self.commitment[..], header_commitment).is_ok()
    }
}

struct Len32;

impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_only_committing_suites_parse() {
        for s in [Suite::AesGcmHkdfCommit, Suite::AesGcmHkdfCommitEcdsaP384] {
            assert_eq!(Suite::from_id(s.id()), Ok(s));
        }
        for id in [0x0014, 0x0178, 0x0378, 0x0000, 0xffff] {
            assert_eq!(Suite::from_id(id), Err(Malformed::UnsupportedSuite(id)));
        }
    }
}
