//! keyward's key management service as a library: symmetric keys with versions, aliases,
//! tags, rotation, the deletion window, and the root-key barrier. No HTTP: the server
//! crate speaks the AWS KMS protocol on top of [`Kms`].
//!
//! Behaviour follows AWS KMS wherever a client can tell: the same operations, limits,
//! key states and error types ([`Error::aws_type`]).

#![warn(missing_docs)]

mod blob;
mod clock;
mod error;
pub mod hsm;
mod ids;
mod kms;
mod lifecycle;
pub mod policy;
mod root;
pub mod seal;
pub mod shamir;

pub use blob::EncryptionContext;
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::Error;
pub use keyward_store::{KeyState, RotationType};
pub use kms::{
    DecryptOutput, EncryptOutput, GenerateDataKeyOutput, KeyMetadata, Kms, ROOT_CHECK,
    ReEncryptOutput, cache_only, data_key_length,
};
pub use lifecycle::{
    AliasListEntry, CreateKeyRequest, DeletionScheduled, KeyListEntry, KeyRotation, Page,
    RotationStatus,
};
pub use root::{AesRootKey, KdfParams, PASSPHRASE_META, Passphrase, RootKey, read_key_file};

/// Where this KMS says its keys live: the parts of every ARN it hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsConfig {
    /// `aws` unless configured.
    pub partition: String,
    /// `us-east-1` unless configured: what a stock AWS SDK client assumes.
    pub region: String,
    /// A 12-digit account id.
    pub account: String,
}

impl Default for KmsConfig {
    fn default() -> Self {
        Self {
            partition: "aws".into(),
            region: "us-east-1".into(),
            account: "111122223333".into(),
        }
    }
}

/// Seconds in a day.
const DAY: i64 = 86_400;
