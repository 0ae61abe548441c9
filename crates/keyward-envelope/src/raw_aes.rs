//! The raw AES keyring: wraps data keys with a local AES-256-GCM key.
//!
//! Specification: `framework/raw-aes-keyring.md`. The encrypted data key is
//!
//! ```text
//! provider id   = key namespace
//! provider info = key name || UInt32 tag length in bits (128) || UInt32 IV length (12) || IV
//! ciphertext    = AES-256-GCM(wrapping key, IV, data key, AAD = serialized context) || tag
//! ```
//!
//! so messages interoperate with the raw AES keyrings and raw master keys of the other
//! AWS Encryption SDK implementations.

use crate::aead::Aes256Gcm;
use crate::keyring::{DecryptionMaterials, EncryptedDataKey, EncryptionMaterials, Keyring};
use crate::suite::{IV_LEN, TAG_LEN};
use crate::{DATA_KEY_LEN, DataKey, Error, InvalidInput, WrappingKey};

const TAG_BITS: u32 = 128;

/// A keyring holding one 256-bit AES wrapping key under a namespace and a name.
pub struct RawAesKeyring {
    namespace: String,
    name: String,
    key: Aes256Gcm,
}

impl std::fmt::Debug for RawAesKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawAesKeyring")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl RawAesKeyring {
    /// A keyring for `key` under `namespace` and `name`. The namespace `aws-kms` is
    /// reserved for KMS and refused.
    pub fn new(namespace: &str, name: &str, key: &WrappingKey) -> Result<Self, Error> {
        if namespace == "aws-kms" {
            return Err(InvalidInput::ReservedNamespace.into());
        }
        if namespace.len() > usize::from(u16::MAX) {
            return Err(InvalidInput::FieldTooLong("key namespace").into());
        }
        if name.len() + 8 + IV_LEN > usize::from(u16::MAX) {
            return Err(InvalidInput::FieldTooLong("key name").into());
        }
        let key = Aes256Gcm::new(key.expose_secret())?;
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            key,
        })
    }

    /// The IV of an encrypted data key that this keyring wrote, if it is one.
    fn iv_if_ours(&self, edk: &EncryptedDataKey) -> Option<[u8; IV_LEN]> {
        if edk.provider_id != self.namespace || edk.ciphertext.len() != DATA_KEY_LEN + TAG_LEN {
            return None;
        }
        let rest = edk.provider_info.strip_prefix(self.name.as_bytes())?;
        let (tag_bits, rest) = rest.split_first_chunk::<4>()?;
        let (iv_len, iv) = rest.split_first_chunk::<4>()?;
        if u32::from_be_bytes(*tag_bits) != TAG_BITS || u32::from_be_bytes(*iv_len) != IV_LEN as u32
        {
            return None;
        }
        iv.try_into().ok()
    }
}

impl Keyring for RawAesKeyring {
    fn on_encrypt(&self, materials: &mut EncryptionMaterials<'_>) -> Result<(), Error> {
        let data_key = match &materials.data_key {
            Some(k) => k.clone(),
            None => DataKey::generate()?,
        };
        let aad = materials.context.serialize()?;
        let mut iv = [0u8; IV_LEN];
        aws_lc_rs::rand::fill(&mut iv)?;

        let mut ciphertext = data_key.expose_secret().to_vec();
        let tag = self.key.seal(iv, &aad, &mut ciphertext)?;
        ciphertext.extend_from_slice(&tag);

        let mut provider_info = Vec::with_capacity(self.name.len() + 8 + IV_LEN);
        provider_info.extend_from_slice(self.name.as_bytes());
        provider_info.extend_from_slice(&TAG_BITS.to_be_bytes());
        provider_info.extend_from_slice(&(IV_LEN as u32).to_be_bytes());
        provider_info.extend_from_slice(&iv);

        materials.encrypted_data_keys.push(EncryptedDataKey {
            provider_id: self.namespace.clone(),
            provider_info,
            ciphertext,
        });
        materials.data_key.get_or_insert(data_key);
        Ok(())
    }

    fn on_decrypt(
        &self,
        materials: &DecryptionMaterials<'_>,
        edks: &[EncryptedDataKey],
    ) -> Result<Option<DataKey>, Error> {
        let aad = materials.context.serialize()?;
        for edk in edks {
            let Some(iv) = self.iv_if_ours(edk) else {
                continue;
            };
            let mut buf = zeroize::Zeroizing::new(edk.ciphertext.clone());
            if let Ok(plain) = self.key.open(iv, &aad, &mut buf) {
                return Ok(DataKey::try_from_slice(plain));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EncryptionContext, Suite};

    fn wrap(k: &RawAesKeyring, ec: &EncryptionContext) -> (DataKey, Vec<EncryptedDataKey>) {
        let mut m = EncryptionMaterials {
            suite: Suite::default(),
            context: ec,
            data_key: None,
            encrypted_data_keys: vec![],
        };
        k.on_encrypt(&mut m).unwrap();
        (m.data_key.unwrap(), m.encrypted_data_keys)
    }

    #[test]
    fn wrap_unwrap_and_refuse_others() {
        let key = WrappingKey::generate().unwrap();
        let k = RawAesKeyring::new("ns", "name", &key).unwrap();
        let ec: EncryptionContext = [("a", "b")].into_iter().collect();
        let (dk, edks) = wrap(&k, &ec);
        assert_eq!(edks[0].provider_info.len(), 4 + 8 + 12);
        let dm = DecryptionMaterials {
            suite: Suite::default(),
            context: &ec,
        };
        let got = k.on_decrypt(&dm, &edks).unwrap().unwrap();
        assert_eq!(got.expose_secret(), dk.expose_secret());

        let other_ec: EncryptionContext = [("a", "c")].into_iter().collect();
        let dm2 = DecryptionMaterials {
            suite: Suite::default(),
            context: &other_ec,
        };
        assert!(k.on_decrypt(&dm2, &edks).unwrap().is_none());

        let other_name = RawAesKeyring::new("ns", "other", &key).unwrap();
        assert!(other_name.on_decrypt(&dm, &edks).unwrap().is_none());
        let other_key =
            RawAesKeyring::new("ns", "name", &WrappingKey::generate().unwrap()).unwrap();
        assert!(other_key.on_decrypt(&dm, &edks).unwrap().is_none());
    }

    #[test]
    fn aws_kms_namespace_refused() {
        let key = WrappingKey::generate().unwrap();
        assert!(matches!(
            RawAesKeyring::new("aws-kms", "x", &key),
            Err(Error::InvalidInput(InvalidInput::ReservedNamespace))
        ));
    }
}
