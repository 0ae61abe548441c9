//! The AWS KMS keyring: the data key comes from a KMS (keyward's, or any that speaks the
//! AWS KMS API).
//!
//! Specification: `framework/aws-kms/aws-kms-keyring.md`. Each encrypted data key has
//! provider id `aws-kms`, provider info the key ARN the KMS answered with, and the KMS
//! ciphertext blob as its ciphertext, so the AWS Encryption SDKs and CLI read these
//! messages and the reverse. The encryption context, reserved keys included, is sent to
//! the KMS and bound there.
//!
//! This crate does no network I/O: a [`KmsClient`] does the calls.

use crate::keyring::{DecryptionMaterials, EncryptedDataKey, EncryptionMaterials, Keyring};
use crate::{DATA_KEY_LEN, DataKey, EncryptionContext, Error};

/// The provider id of encrypted data keys made by a KMS.
pub const KMS_PROVIDER_ID: &str = "aws-kms";

/// What the KMS keyring needs from a KMS.
pub trait KmsClient: Send + Sync {
    /// GenerateDataKey with NumberOfBytes 32: `(plaintext, ciphertext blob, key ARN)`.
    fn generate_data_key(
        &self,
        key_id: &str,
        context: &EncryptionContext,
    ) -> Result<(DataKey, Vec<u8>, String), Error>;
    /// Encrypt of an existing data key: `(ciphertext blob, key ARN)`.
    fn encrypt(
        &self,
        key_id: &str,
        plaintext: &DataKey,
        context: &EncryptionContext,
    ) -> Result<(Vec<u8>, String), Error>;
    /// Decrypt naming the key: `(plaintext, key ARN)`; a refusal is `Ok(None)`.
    fn decrypt(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Option<(DataKey, String)>, Error>;
}

/// A keyring over one KMS key.
pub struct KmsKeyring<C> {
    client: C,
    key_id: String,
}

impl<C> std::fmt::Debug for KmsKeyring<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsKeyring")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl<C: KmsClient> KmsKeyring<C> {
    /// A keyring for `key_id`: on encrypt any form the KMS accepts (id, ARN, alias); on
    /// decrypt it unwraps only encrypted data keys whose provider info is exactly this
    /// string, so use the key ARN to decrypt (as the AWS SDKs require).
    pub fn new(client: C, key_id: impl Into<String>) -> Self {
        Self {
            client,
            key_id: key_id.into(),
        }
    }
}

fn is_key_arn(s: &str) -> bool {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && !parts[1].is_empty()
        && parts[2] == "kms"
        && !parts[3].is_empty()
        && !parts[4].is_empty()
        && parts[5].starts_with("key/")
}

impl<C: KmsClient> Keyring for KmsKeyring<C> {
    fn on_encrypt(&self, materials: &mut EncryptionMaterials<'_>) -> Result<(), Error> {
        let (blob, arn) = match &materials.data_key {
            None => {
                let (key, blob, arn) = self
                    .client
                    .generate_data_key(&self.key_id, materials.context)?;
                materials.data_key = Some(key);
                (blob, arn)
            }
            Some(key) => self.client.encrypt(&self.key_id, key, materials.context)?,
        };
        if !is_key_arn(&arn) {
            return Err(Error::Keyring(
                format!("the KMS answered with {arn:?}, which is not a key ARN").into(),
            ));
        }
        materials.encrypted_data_keys.push(EncryptedDataKey {
            provider_id: KMS_PROVIDER_ID.to_owned(),
            provider_info: arn.into_bytes(),
            ciphertext: blob,
        });
        Ok(())
    }

    fn on_decrypt(
        &self,
        materials: &DecryptionMaterials<'_>,
        edks: &[EncryptedDataKey],
    ) -> Result<Option<DataKey>, Error> {
        // As the specification asks, a failure on one encrypted data key does not stop
        // the others from being tried; the first failure is reported if none works.
        let mut first_error = None;
        for edk in edks {
            if edk.provider_id != KMS_PROVIDER_ID || edk.provider_info != self.key_id.as_bytes() {
                continue;
            }
            match self
                .client
                .decrypt(&self.key_id, &edk.ciphertext, materials.context)
            {
                // The KMS must say the key we asked for decrypted it.
                Ok(Some((key, arn))) if arn == self.key_id => return Ok(Some(key)),
                Ok(_) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(None), Err)
    }
}

/// Checks a data key the KMS returned: exactly 32 bytes.
pub fn data_key_from_kms(plaintext: &[u8]) -> Result<DataKey, Error> {
    if plaintext.len() != DATA_KEY_LEN {
        return Err(Error::Keyring(
            "the KMS returned a data key of the wrong length".into(),
        ));
    }
    DataKey::try_from_slice(plaintext).ok_or(Error::Keyring("bad data key".into()))
}

impl<T: KmsClient + ?Sized> KmsClient for std::sync::Arc<T> {
    fn generate_data_key(
        &self,
        key_id: &str,
        context: &EncryptionContext,
    ) -> Result<(DataKey, Vec<u8>, String), Error> {
        (**self).generate_data_key(key_id, context)
    }
    fn encrypt(
        &self,
        key_id: &str,
        plaintext: &DataKey,
        context: &EncryptionContext,
    ) -> Result<(Vec<u8>, String), Error> {
        (**self).encrypt(key_id, plaintext, context)
    }
    fn decrypt(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Option<(DataKey, String)>, Error> {
        (**self).decrypt(key_id, ciphertext, context)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Suite;

    const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/k";

    /// Refuses every ciphertext but `b"good"`, as a KMS would refuse a corrupt blob.
    struct Picky;

    impl KmsClient for Picky {
        fn generate_data_key(
            &self,
            _: &str,
            _: &EncryptionContext,
        ) -> Result<(DataKey, Vec<u8>, String), Error> {
            unreachable!()
        }
        fn encrypt(
            &self,
            _: &str,
            _: &DataKey,
            _: &EncryptionContext,
        ) -> Result<(Vec<u8>, String), Error> {
            unreachable!()
        }
        fn decrypt(
            &self,
            _: &str,
            ciphertext: &[u8],
            _: &EncryptionContext,
        ) -> Result<Option<(DataKey, String)>, Error> {
            if ciphertext == b"good" {
                Ok(Some((
                    DataKey::try_from_slice(&[7; 32]).unwrap(),
                    ARN.into(),
                )))
            } else {
                Err(Error::Keyring("InvalidCiphertextException".into()))
            }
        }
    }

    fn edk(ciphertext: &[u8]) -> EncryptedDataKey {
        EncryptedDataKey {
            provider_id: KMS_PROVIDER_ID.into(),
            provider_info: ARN.as_bytes().to_vec(),
            ciphertext: ciphertext.to_vec(),
        }
    }

    #[test]
    fn a_failing_data_key_does_not_stop_the_next() {
        let keyring = KmsKeyring::new(Picky, ARN);
        let ctx = EncryptionContext::new();
        let materials = DecryptionMaterials {
            suite: Suite::AesGcmHkdfCommit,
            context: &ctx,
        };
        let found = keyring
            .on_decrypt(&materials, &[edk(b"bad"), edk(b"good")])
            .unwrap();
        assert!(found.is_some());
        // Nothing works: the first failure is reported.
        assert!(matches!(
            keyring.on_decrypt(&materials, &[edk(b"bad"), edk(b"worse")]),
            Err(Error::Keyring(_))
        ));
    }
}
