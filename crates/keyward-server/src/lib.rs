//! keyward's HTTP service: the AWS KMS JSON 1.1 protocol over TLS 1.3, authenticated with
//! AWS Signature Version 4 against access keys keyward manages.

#![warn(missing_docs)]

pub mod access;
pub mod audit;
pub mod coherence;
pub mod limits;
pub mod metrics;
pub mod pki;
mod pki_api;
pub mod protocol;
pub mod seal;
pub mod server;
pub mod sigv4;
mod sys_api;
pub mod tls;

/// Failures of the server itself (not of a request).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The KMS failed.
    #[error(transparent)]
    Kms(#[from] keyward_kms::Error),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] keyward_store::StoreError),
    /// Something else went wrong inside the server.
    #[error("{0}")]
    Internal(String),
}
