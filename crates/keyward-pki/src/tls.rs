//! The TLS 1.3 configurations keyward uses, on the aws-lc-rs provider: the three TLS 1.3
//! AEAD suites; X25519MLKEM768, X25519, P-256 and P-384 for key exchange; no 0-RTT; and
//! client-certificate verification against the CA with its CRLs.

use std::sync::{Arc, RwLock};

use rustls::client::danger::ServerCertVerifier as _;
use rustls::crypto::CryptoProvider;
use rustls::crypto::aws_lc_rs::{self, cipher_suite, kx_group};
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;

use crate::Error;

/// Whether a listener asks for client certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// Never asks.
    Off,
    /// Asks; a client may go without, but one that presents a certificate must present a
    /// valid, unrevoked one.
    Optional,
    /// Refuses clients without a valid, unrevoked certificate.
    Required,
}

impl std::str::FromStr for ClientAuth {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "off" => Ok(Self::Off),
            "optional" => Ok(Self::Optional),
            "required" => Ok(Self::Required),
            _ => Err(Error::Refused(format!(
                "{s:?}: use off, optional or required"
            ))),
        }
    }
}

/// keyward's crypto provider: aws-lc-rs with the suites and groups above, in that order.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        cipher_suites: vec![
            cipher_suite::TLS13_AES_256_GCM_SHA384,
            cipher_suite::TLS13_AES_128_GCM_SHA256,
            cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ],
        kx_groups: vec![
            kx_group::X25519MLKEM768,
            kx_group::X25519,
            kx_group::SECP256R1,
            kx_group::SECP384R1,
        ],
        ..aws_lc_rs::default_provider()
    })
}

fn tls_error(what: &str) -> impl Fn(rustls::Error) -> Error + '_ {
    move |e| Error::Refused(format!("{what}: {e}"))
}

fn root_store(roots: &[CertificateDer<'static>]) -> Result<rustls::RootCertStore, Error> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).map_err(tls_error("trust root"))?;
    }
    Ok(store)
}

/// A server configuration: TLS 1.3 only, ALPN h2 and http/1.1, no 0-RTT, certificates
/// from `certs` (which can change them at any time). With client auth on, client
/// certificates are verified against `roots` and the leaf against `crls` (an expired CRL
/// is still used). Sessions resume by stateless tickets; each configuration has its own
/// ticket keys, so a new one (made when a CRL changes) ends every resumption of sessions
/// from the old one.
pub fn server_config(
    certs: Arc<dyn ResolvesServerCert>,
    client_auth: ClientAuth,
    roots: &[CertificateDer<'static>],
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<rustls::ServerConfig, Error> {
    let provider = provider();
    let verifier: Arc<dyn ClientCertVerifier> = match client_auth {
        ClientAuth::Off => WebPkiClientVerifier::no_client_auth(),
        ClientAuth::Optional | ClientAuth::Required => {
            let builder = WebPkiClientVerifier::builder_with_provider(
                Arc::new(root_store(roots)?),
                provider.clone(),
            )
            .with_crls(crls)
            // The CRL is the intermediate's and lists leaves; the intermediate itself
            // would need the root's CRL, and the root key may be offline.
            .only_check_end_entity_revocation();
            let builder = if client_auth == ClientAuth::Optional {
                builder.allow_unauthenticated()
            } else {
                builder
            };
            builder
                .build()
                .map_err(|e| Error::Refused(format!("client verifier: {e}")))?
        }
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error("TLS versions"))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.max_early_data_size = 0;
    // Resumption by stateless tickets (AES-256-GCM, keys rotated by rustls). A new
    // configuration has a new ticketer, so tickets from before it no longer resume.
    config.ticketer = aws_lc_rs::Ticketer::new().map_err(tls_error("session tickets"))?;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(config)
}

/// A certificate chain and its key, ready to serve; fails if they do not match.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'static>,
) -> Result<CertifiedKey, Error> {
    let signing_key = provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(tls_error("server key"))?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(tls_error("server key"))?;
    Ok(certified)
}

/// The server's certificate, replaceable while connections come and go: a handshake
/// takes whichever is current when it starts.
#[derive(Debug)]
pub struct SwappableCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl SwappableCert {
    /// Starts with `first`.
    pub fn new(first: CertifiedKey) -> Self {
        Self {
            current: RwLock::new(Arc::new(first)),
        }
    }

    /// Serves `next` from the next handshake on.
    pub fn swap(&self, next: CertifiedKey) {
        if let Ok(mut current) = self.current.write() {
            *current = Arc::new(next);
        }
    }

    /// The certificate now served.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.clone())
    }
}

impl ResolvesServerCert for SwappableCert {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

/// A client configuration trusting `roots`, presenting `identity` (chain, key) if given.
pub fn client_config(
    roots: &[CertificateDer<'static>],
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<rustls::ClientConfig, Error> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error("TLS versions"))?
        .with_root_certificates(root_store(roots)?);
    match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(tls_error("client certificate")),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// Checks a server certificate before it is published: the chain verifies to `roots`
/// now and every name in `names` (DNS names or IPs) is covered. (That the key matches is
/// checked by [`certified_key`].)
pub fn check_server_certificate(
    chain: &[CertificateDer<'static>],
    roots: &[CertificateDer<'static>],
    names: &[String],
) -> Result<(), Error> {
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or_else(|| Error::Refused("empty certificate chain".into()))?;
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(root_store(roots)?),
        provider(),
    )
    .build()
    .map_err(|e| Error::Refused(format!("verifier: {e}")))?;
    for name in names {
        let server_name = ServerName::try_from(name.as_str())
            .map_err(|_| Error::Refused(format!("{name:?} is not a DNS name or IP")))?;
        verifier
            .verify_server_cert(leaf, intermediates, &server_name, &[], UnixTime::now())
            .map_err(tls_error(name))?;
    }
    Ok(())
}

/// Checks a client certificate chain (leaf first) against `roots` now, as a server
/// verifying it would (without revocation).
pub fn check_client_certificate(
    chain: &[CertificateDer<'static>],
    roots: &[CertificateDer<'static>],
) -> Result<(), Error> {
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or_else(|| Error::Refused("empty certificate chain".into()))?;
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(root_store(roots)?), provider())
            .build()
            .map_err(|e| Error::Refused(format!("verifier: {e}")))?;
    verifier
        .verify_client_cert(leaf, intermediates, UnixTime::now())
        .map(|_| ())
        .map_err(tls_error("client certificate"))
}
