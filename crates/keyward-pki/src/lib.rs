//! keyward's internal PKI: a root and an intermediate certificate authority, SPIFFE
//! X.509-SVIDs for services, certificate signing requests, revocation lists, the TLS 1.3
//! configurations keyward's listeners and clients use, peer identities, and the timing of
//! renewal and expiry warnings.
//!
//! Nothing here keeps state, and nothing but [`scan`] does I/O: callers (the server and the
//! CLI) store the CA keys behind the root-key barrier and decide who may ask for what. The
//! exception, [`scan`] (`keyward tls scan`), audits a TLS endpoint over blocking
//! `std::net` connections with timeouts on every connect and read.

#![warn(missing_docs)]

pub mod ca;
pub mod expiry;
pub mod identity;
pub mod scan;
pub mod spiffe;
pub mod tls;

pub use ca::{Ca, CaCert, Issued, KeyAlgorithm, LeafRequest, Revoked};
pub use identity::CertInfo;
pub use spiffe::SpiffeId;
pub use tls::ClientAuth;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not a valid SPIFFE ID or trust domain; says why.
    #[error("invalid SPIFFE ID: {0}")]
    InvalidSpiffeId(String),
    /// A request the CA refuses (names, lifetime, CSR); says why.
    #[error("{0}")]
    Refused(String),
    /// A certificate, key or CSR that cannot be parsed or verified.
    #[error("{0}")]
    Malformed(String),
    /// The cryptographic library failed.
    #[error("{0}")]
    Internal(String),
}
