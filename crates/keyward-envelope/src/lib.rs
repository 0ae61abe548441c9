//! Envelope encryption in the AWS Encryption SDK message format, version 2.
//!
//! Messages use the committing algorithm suites only (0x0478, and 0x0578 with an ECDSA
//! P-384 signature), framed content, and keyrings to wrap the data key. They interoperate
//! with the AWS Encryption SDKs and the AWS Encryption CLI.
//!
//! The crate does no I/O but through [`std::io::Read`] and [`std::io::Write`]: [`encrypt`]
//! and [`decrypt`] stream in memory bounded by a few batches of frames, overlapping the
//! AEAD work with reading and writing on worker threads.
//!
//! ```
//! use keyward_envelope::{decrypt, encrypt, DecryptOptions, EncryptOptions, EncryptionContext,
//!     RawAesKeyring, WrappingKey};
//!
//! let keyring = RawAesKeyring::new("keyward", "default", &WrappingKey::generate()?)?;
//! let context: EncryptionContext = [("purpose", "example")].into_iter().collect();
//! let mut message = Vec::new();
//! encrypt(&keyring, &context, &EncryptOptions::default(), &b"hello"[..], &mut message)?;
//!
//! let mut plaintext = Vec::new();
//! let options = DecryptOptions { required_context: context, ..Default::default() };
//! decrypt(&keyring, &options, &message[..], &mut plaintext)?;
//! assert_eq!(plaintext, b"hello");
//! # Ok::<(), keyward_envelope::Error>(())
//! ```

#![warn(missing_docs)]

mod aead;
mod context;
mod decrypt;
mod encrypt;
mod error;
mod frame;
mod header;
mod keyring;
mod kms_keyring;
mod pipeline;
mod raw_aes;
mod secret;
mod suite;

pub use context::{EncryptionContext, PUBLIC_KEY_FIELD, RESERVED_PREFIX};
pub use decrypt::{DecryptOptions, DecryptSummary, decrypt};
pub use encrypt::{EncryptOptions, EncryptSummary, encrypt};
pub use error::{Error, InvalidInput, Limit, Malformed};
pub use header::Header;
pub use keyring::{
    DecryptionMaterials, EncryptedDataKey, EncryptionMaterials, Keyring, MultiKeyring,
};
pub use kms_keyring::{KMS_PROVIDER_ID, KmsClient, KmsKeyring, data_key_from_kms};
pub use raw_aes::RawAesKeyring;
pub use secret::{DATA_KEY_LEN, DataKey, WrappingKey};
pub use suite::Suite;

/// The default frame length: 64 KiB of plaintext per frame.
pub const DEFAULT_FRAME_LENGTH: u32 = 64 * 1024;
/// The largest frame length this crate writes: 16 MiB.
pub const MAX_FRAME_LENGTH: u32 = 16 * 1024 * 1024;

/// Bounds on what a message being decrypted may demand. Each is refused with
/// [`Error::Limit`] before the work or memory it would cost is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest header, in bytes (the format allows about 12 MiB). Default 256 KiB.
    pub max_header_len: usize,
    /// Most encrypted data keys, each of which may cost a keyring call. Default 16.
    pub max_encrypted_data_keys: usize,
    /// Longest frame, which sets the memory used. Default 4 MiB.
    pub max_frame_length: u32,
    /// Most frames in a message. Default 2^32 - 1, the format's own limit.
    pub max_frames: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_len: 256 * 1024,
            max_encrypted_data_keys: 16,
            max_frame_length: 4 * 1024 * 1024,
            max_frames: u32::MAX,
        }
    }
}
