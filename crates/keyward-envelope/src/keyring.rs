//! Keyrings: what produces, wraps and unwraps the data key of a message.
//!
//! Specification: `framework/keyring-interface.md`, `framework/multi-keyring.md`.

use crate::{DataKey, EncryptionContext, Error, Suite};

/// One wrapped copy of a message's data key, as stored in the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedDataKey {
    /// Who can unwrap it: `aws-kms` for KMS, the key namespace for raw keyrings.
    pub provider_id: String,
    /// Provider-specific key information: a key ARN for KMS, key name and IV for raw AES.
    pub provider_info: Vec<u8>,
    /// The wrapped data key.
    pub ciphertext: Vec<u8>,
}

/// What a keyring works on while a message is encrypted.
#[derive(Debug)]
pub struct EncryptionMaterials<'a> {
    /// The message's suite.
    pub suite: Suite,
    /// The full encryption context, including `aws-crypto-public-key` for signed suites.
    pub context: &'a EncryptionContext,
    /// The data key: set by the first keyring (the generator), wrapped by every keyring.
    pub data_key: Option<DataKey>,
    /// The wrapped copies made so far.
    pub encrypted_data_keys: Vec<EncryptedDataKey>,
}

/// What a keyring sees while a message is decrypted.
#[derive(Debug)]
pub struct DecryptionMaterials<'a> {
    /// The message's suite.
    pub suite: Suite,
    /// The message's encryption context, as read from its header.
    pub context: &'a EncryptionContext,
}

/// Produces, wraps and unwraps data keys.
///
/// Implementations must not reveal why an unwrap failed: an encrypted data key that is
/// not theirs, or that does not authenticate, is simply not unwrapped (`Ok(None)`).
pub trait Keyring: Send + Sync {
    /// Generates the data key if `materials` has none yet, then adds an encrypted copy of it.
    fn on_encrypt(&self, materials: &mut EncryptionMaterials<'_>) -> Result<(), Error>;

    /// Unwraps the first of `edks` this keyring can, or returns `Ok(None)`.
    fn on_decrypt(
        &self,
        materials: &DecryptionMaterials<'_>,
        edks: &[EncryptedDataKey],
    ) -> Result<Option<DataKey>, Error>;
}

/// Several keyrings as one: the generator makes the data key and every child wraps it
/// too, so any one of them can decrypt.
#[derive(Default)]
pub struct MultiKeyring {
    generator: Option<Box<dyn Keyring>>,
    children: Vec<Box<dyn Keyring>>,
}

impl std::fmt::Debug for MultiKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultiKeyring")
            .field("generator", &self.generator.is_some())
            .field("children", &self.children.len())
            .finish()
    }
}

impl MultiKeyring {
    /// A multi-keyring whose `generator` makes the data key.
    pub fn new(generator: Box<dyn Keyring>) -> Self {
        Self {
            generator: Some(generator),
            children: Vec::new(),
        }
    }

    /// A multi-keyring without a generator: on encrypt the data key must come from elsewhere.
    pub fn without_generator() -> Self {
        Self::default()
    }

    /// Adds a child that wraps the data key on encrypt and may unwrap it on decrypt.
    pub fn with_child(mut self, child: Box<dyn Keyring>) -> Self {
        self.children.push(child);
        self
    }

    fn all(&self) -> impl Iterator<Item = &dyn Keyring> {
        self.generator
            .iter()
            .chain(self.children.iter())
            .map(|k| &**k)
    }
}

impl Keyring for MultiKeyring {
    fn on_encrypt(&self, materials: &mut EncryptionMaterials<'_>) -> Result<(), Error> {
        if self.generator.is_none() && materials.data_key.is_none() {
            return Err(crate::InvalidInput::NoDataKey.into());
        }
        for k in self.all() {
            k.on_encrypt(materials)?;
        }
        Ok(())
    }

    /// Tries each keyring in turn. If none unwraps a key, the first error other than a
    /// plain failure to unwrap is returned (a KMS that cannot be reached says so), else
    /// `Ok(None)`.
    fn on_decrypt(
        &self,
        materials: &DecryptionMaterials<'_>,
        edks: &[EncryptedDataKey],
    ) -> Result<Option<DataKey>, Error> {
        let mut first_error = None;
        for k in self.all() {
            match k.on_decrypt(materials, edks) {
                Ok(Some(key)) => return Ok(Some(key)),
                Ok(None) | Err(Error::DecryptionFailed) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(None), Err)
    }
}
