//! keyward's HTTP service: the AWS KMS JSON 1.1 protocol over TLS, authenticated with
//! AWS Signature Version 4.
//!
//! This crate grows with issue #4; today it holds the SigV4 verifier.

#![warn(missing_docs)]

pub mod sigv4;
