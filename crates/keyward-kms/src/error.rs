//! The KMS's errors: one variant per AWS KMS exception, so the wire mapping is mechanical.
//!
//! Messages name keys (by ARN) and limits, never key material or plaintext.

use keyward_store::StoreError;

/// A failed KMS operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `NotFoundException`: no such key or alias.
    #[error("{0}")]
    NotFound(String),
    /// `DisabledException`: the key is disabled.
    #[error("{0}")]
    Disabled(String),
    /// `KMSInvalidStateException`: the operation is not valid in the key's state.
    #[error("{0}")]
    InvalidState(String),
    /// `InvalidCiphertextException`: the ciphertext or its encryption context is wrong.
    #[error("{0}")]
    InvalidCiphertext(String),
    /// `IncorrectKeyException`: the ciphertext belongs to another key than the one named.
    #[error("{0}")]
    IncorrectKey(String),
    /// `AlreadyExistsException`.
    #[error("{0}")]
    AlreadyExists(String),
    /// `InvalidAliasNameException`.
    #[error("{0}")]
    InvalidAliasName(String),
    /// `LimitExceededException`.
    #[error("{0}")]
    LimitExceeded(String),
    /// `ValidationException`: a parameter is out of range or missing.
    #[error("{0}")]
    Validation(String),
    /// `AccessDeniedException`: the key's policy does not allow the caller this action.
    #[error("{0}")]
    AccessDenied(String),
    /// `MalformedPolicyDocumentException`: a key policy keyward cannot accept; says why.
    #[error("{0}")]
    MalformedPolicy(String),
    /// `UnsupportedOperationException`.
    #[error("{0}")]
    Unsupported(String),
    /// `KMSInternalException`: the store or the root key failed. Retryable.
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// The operation needs the store, which [`crate::cache_only`] forbids: run it again
    /// where blocking is allowed. Never meant for the wire (`KMSInternalException` if it
    /// gets there).
    #[error("internal error: the operation needs the store")]
    WouldBlock,
    /// `KMSInternalException` from storage, with the cause kept for the operator's log.
    #[error("storage error: {0}")]
    Store(#[from] StoreError),
    /// The hardware security module (PKCS#11 token) failed or refused; says what, for the
    /// operator. `KMSInternalException` on the wire, where only the seal's endpoints can
    /// meet it.
    #[error("HSM: {0}")]
    Hsm(String),
}

impl Error {
    /// The AWS KMS exception name (`__type` on the wire).
    pub fn aws_type(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "NotFoundException",
            Self::Disabled(_) => "DisabledException",
            Self::InvalidState(_) => "KMSInvalidStateException",
            Self::InvalidCiphertext(_) => "InvalidCiphertextException",
            Self::IncorrectKey(_) => "IncorrectKeyException",
            Self::AlreadyExists(_) => "AlreadyExistsException",
            Self::InvalidAliasName(_) => "InvalidAliasNameException",
            Self::LimitExceeded(_) => "LimitExceededException",
            Self::Validation(_) => "ValidationException",
            Self::Unsupported(_) => "UnsupportedOperationException",
            Self::MalformedPolicy(_) => "MalformedPolicyDocumentException",
            Self::AccessDenied(_) => "AccessDeniedException",
            Self::Internal(_) | Self::WouldBlock | Self::Store(_) | Self::Hsm(_) => {
                "KMSInternalException"
            }
        }
    }
}
