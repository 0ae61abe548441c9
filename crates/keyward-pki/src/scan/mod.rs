//! `keyward tls scan`: audits a TLS endpoint, any implementation, and checks what it
//! found against a profile (Mozilla's modern and intermediate, as sslyze bundles them,
//! or keyward's own `internal`).
//!
//! This is the one part of the crate that does I/O: blocking `std::net` connections to
//! the target, each with a connect timeout and a deadline on every read. Versions, cipher
//! suites and groups are found with hand-written ClientHellos ([`clienthello`]) whose
//! answers are parsed as far as they are in the clear ([`serverhello`]): that works for
//! SSL 3.0 to TLS 1.3 alike, whereas rustls here speaks only TLS 1.3. The certificate of
//! a TLS 1.3 server comes from a rustls handshake ([`cert`]); older servers send it in the
//! clear. [`profile`] turns the facts into findings named like sslyze's Mozilla checker
//! criteria, and [`report`] holds the result and prints it.
//!
//! Nothing the server sends is trusted for sizes: every length is bounded before it is
//! allocated, every read has a deadline, and a server that closes, stalls or talks
//! nonsense counts as refusing that offer.

pub mod cert;
pub mod clienthello;
pub mod probe;
pub mod profile;
pub mod report;
pub mod serverhello;
pub mod suites;

use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub use profile::Profile;
pub use report::{Finding, Report, ScanResult};

/// A malformed, hostile or absent answer on the wire.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// A length runs past the end of what was sent.
    #[error("truncated message")]
    Truncated,
    /// Something is longer than the scanner accepts (or, for writing, than TLS allows).
    #[error("{0} too long")]
    TooLong(&'static str),
    /// Violates the protocol; says where.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// A record of a type not expected here.
    #[error("unexpected record type {0}")]
    UnexpectedRecord(u8),
    /// A handshake message of a type not expected here.
    #[error("unexpected handshake message type {0}")]
    UnexpectedMessage(u8),
    /// The server closed the connection.
    #[error("connection closed")]
    Closed,
    /// The server did not answer in time.
    #[error("timed out")]
    Timeout,
    /// Another I/O failure (connection refused or reset, ...).
    #[error("I/O error: {0:?}")]
    Io(std::io::ErrorKind),
    /// The system random generator failed.
    #[error("no randomness")]
    Random,
}

impl WireError {
    fn from_io(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::UnexpectedEof => Self::Closed,
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => Self::Timeout,
            kind => Self::Io(kind),
        }
    }
}

/// Why a scan could not be done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// The target does not resolve or accept TCP connections.
    #[error("cannot connect to {target}: {reason}")]
    Connect {
        /// HOST:PORT.
        target: String,
        /// Why.
        reason: String,
    },
    /// The target accepts connections but speaks no TLS version the scanner offers.
    #[error("{0}: no TLS: no protocol version was accepted")]
    NoTls(String),
    /// The system random generator failed.
    #[error("no randomness")]
    Random,
}

/// What to scan and how.
#[derive(Debug)]
pub struct ScanOptions {
    /// Host name or IP address to connect to.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The name sent as SNI and checked against the certificate; `None` means `host`
    /// (and no SNI when `host` is an IP address).
    pub sni: Option<String>,
    /// Trust anchors for the chain; empty means the chain is not validated.
    pub roots: Vec<CertificateDer<'static>>,
    /// A client certificate chain and key for servers that require one.
    pub client_identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    /// Connect and read timeout of each probe.
    pub timeout: Duration,
}

impl ScanOptions {
    /// The name checked against the certificate: `sni`, else `host`.
    pub fn server_name(&self) -> &str {
        self.sni.as_deref().unwrap_or(&self.host)
    }

    /// The SNI to send: the server name unless it is an IP address.
    pub fn sni_to_send(&self) -> Option<&str> {
        let name = self.server_name();
        name.parse::<std::net::IpAddr>().is_err().then_some(name)
    }
}

/// Scans the target: every probe, then the certificate. See [`probe::scan`].
pub fn scan(options: &ScanOptions) -> Result<ScanResult, ScanError> {
    probe::scan(options)
}
