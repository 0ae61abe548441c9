//! keyward's HTTP service: the AWS KMS JSON 1.1 protocol over TLS, authenticated with
//! AWS Signature Version 4.
//!
//! This crate grows with issue #4: today it holds the SigV4 verifier and the protocol
//! layer (operation dispatch and the one mapping of errors to the wire); the HTTP/TLS
//! listener comes next.

#![warn(missing_docs)]

pub mod protocol;
pub mod sigv4;
