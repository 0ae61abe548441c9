//! One error type for the crate, grouped by who is at fault.

use std::fmt;

/// Everything that can go wrong while encrypting or decrypting a message.
///
/// Decryption failures are deliberately uninformative: a wrong key, a failed key
/// commitment, a bad header tag, a bad frame tag and a bad signature are all
/// [`Error::DecryptionFailed`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The message could not be authenticated or no keyring could unwrap its data key.
    #[error("decryption failed")]
    DecryptionFailed,
    /// The header authenticated but its encryption context lacks a required pair.
    #[error("decryption failed: the encryption context does not match the required context")]
    ContextMismatch,
    /// The message is not a well-formed message of the kind this library accepts.
    #[error("malformed message: {0}")]
    Malformed(Malformed),
    /// The message exceeds a limit set in [`crate::Limits`].
    #[error("message exceeds a limit: {0}")]
    Limit(Limit),
    /// The caller asked for something the format cannot express.
    #[error("invalid request: {0}")]
    InvalidInput(InvalidInput),
    /// A keyring could not do its job for a reason other than a failed unwrap.
    #[error("keyring error: {0}")]
    Keyring(Box<dyn std::error::Error + Send + Sync>),
    /// The underlying cryptographic library failed (random number generator, key setup).
    #[error("internal cryptographic failure")]
    Crypto,
    /// Reading the input or writing the output failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Structural problems with a message, found before or without any key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Malformed {
    /// The message ends before its structure says it should.
    Truncated,
    /// Bytes follow the end of the message.
    TrailingData,
    /// Message format versions other than 2.0 (version 1 has no key commitment).
    UnsupportedVersion(u8),
    /// An algorithm suite other than the committing suites 0x0478 and 0x0578.
    UnsupportedSuite(u16),
    /// Content type other than framed (0x02).
    UnsupportedContentType(u8),
    /// A frame length of zero.
    ZeroFrameLength,
    /// The serialized encryption context is not canonical: bad UTF-8, a zero pair count,
    /// keys out of order or repeated, or a length that does not match its contents.
    EncryptionContext,
    /// No encrypted data keys, or one with an empty provider id.
    EncryptedDataKeys,
    /// A frame whose sequence number or IV is not the one expected next.
    FrameSequence,
    /// A final frame whose content is longer than the frame length.
    FinalFrameLength,
    /// A signed suite without its verification key in the encryption context.
    MissingVerificationKey,
    /// An unsigned suite with a verification key in its context (the specification
    /// refuses it: a signature may have been stripped).
    UnexpectedVerificationKey,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("truncated"),
            Self::TrailingData => f.write_str("trailing data after the end of the message"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported message version {v:#04x}"),
            Self::UnsupportedSuite(s) => {
                write!(
                    f,
                    "unsupported algorithm suite {s:#06x} (only committing suites are accepted)"
                )
            }
            Self::UnsupportedContentType(t) => write!(f, "unsupported content type {t:#04x}"),
            Self::ZeroFrameLength => f.write_str("frame length is zero"),
            Self::EncryptionContext => f.write_str("non-canonical encryption context"),
            Self::EncryptedDataKeys => f.write_str("invalid encrypted data key list"),
            Self::FrameSequence => f.write_str("frame out of sequence"),
            Self::FinalFrameLength => f.write_str("final frame longer than the frame length"),
            Self::MissingVerificationKey => f.write_str("signed suite without a verification key"),
            Self::UnexpectedVerificationKey => {
                f.write_str("unsigned suite with a verification key in its context")
            }
        }
    }
}

/// Limits that bound the work and memory a hostile message can demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// The header is longer than [`crate::Limits::max_header_len`].
    HeaderLength(usize),
    /// More encrypted data keys than [`crate::Limits::max_encrypted_data_keys`].
    EncryptedDataKeys(usize),
    /// A frame length above [`crate::Limits::max_frame_length`].
    FrameLength(u32),
    /// More frames than [`crate::Limits::max_frames`].
    FrameCount(u32),
    /// A signature longer than any valid ECDSA P-384 DER signature.
    SignatureLength(usize),
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HeaderLength(n) => write!(f, "header longer than {n} bytes"),
            Self::EncryptedDataKeys(n) => write!(f, "more than {n} encrypted data keys"),
            Self::FrameLength(n) => write!(f, "frame length above {n} bytes"),
            Self::FrameCount(n) => write!(f, "more than {n} frames"),
            Self::SignatureLength(n) => write!(f, "signature longer than {n} bytes"),
        }
    }
}

/// Requests the format cannot express, refused before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidInput {
    /// Frame lengths must be between 1 and [`crate::MAX_FRAME_LENGTH`].
    FrameLength(u32),
    /// Keys starting with `aws-crypto-` are reserved for the format itself.
    ReservedContextKey(String),
    /// The serialized encryption context must fit in 65535 bytes.
    ContextTooLarge,
    /// A provider id, provider info or key name must fit in 65535 bytes.
    FieldTooLong(&'static str),
    /// The keyring produced no data key or no encrypted data key.
    NoDataKey,
    /// The raw AES keyring may not use the namespace reserved for AWS KMS.
    ReservedNamespace,
    /// The input needs more frames than the format can number (2^32 - 1).
    TooManyFrames,
}

impl fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FrameLength(n) => write!(
                f,
                "frame length {n} is out of range (1..={})",
                crate::MAX_FRAME_LENGTH
            ),
            Self::ReservedContextKey(k) => {
                write!(
                    f,
                    "encryption context key {k:?} uses the reserved prefix aws-crypto-"
                )
            }
            Self::ContextTooLarge => f.write_str("encryption context larger than 65535 bytes"),
            Self::FieldTooLong(what) => write!(f, "{what} longer than 65535 bytes"),
            Self::NoDataKey => f.write_str("the keyring produced no data key"),
            Self::ReservedNamespace => f.write_str("key namespace \"aws-kms\" is reserved"),
            Self::TooManyFrames => f.write_str("input needs more than 2^32 - 1 frames"),
        }
    }
}

impl From<Malformed> for Error {
    fn from(m: Malformed) -> Self {
        Self::Malformed(m)
    }
}

impl From<Limit> for Error {
    fn from(l: Limit) -> Self {
        Self::Limit(l)
    }
}

impl From<InvalidInput> for Error {
    fn from(i: InvalidInput) -> Self {
        Self::InvalidInput(i)
    }
}

impl From<aws_lc_rs::error::Unspecified> for Error {
    fn from(_: aws_lc_rs::error::Unspecified) -> Self {
        Self::Crypto
    }
}
