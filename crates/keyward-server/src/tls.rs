//! The minimal internal CA `keyward serve` makes on first start, and the TLS 1.3 server
//! configuration. The full PKI (issuance, renewal, revocation, mTLS) comes with issue #5.
//!
//! The CA key is stored wrapped by the root key. The server's key is made at every start
//! and lives only in memory; its certificate, signed by the CA, names `localhost`,
//! `127.0.0.1` and any names configured.

use std::sync::Arc;

use keyward_kms::Kms;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use zeroize::Zeroizing;

use crate::ServerError;

const CA_META: &str = "tls-ca";

fn internal(what: &str) -> impl Fn(rcgen::Error) -> ServerError + '_ {
    move |e| ServerError::Internal(format!("{what}: {e}"))
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "keyward internal CA");
    dn.push(DnType::OrganizationName, "keyward");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = time_now();
    params.not_before = now;
    params.not_after = now + time::Duration::days(3650);
    params
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// The CA certificate (PEM) and key, made and stored on first start.
fn ca(kms: &Kms) -> Result<(String, KeyPair), ServerError> {
    let store = kms.store();
    if store.meta(CA_META)?.is_none() {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(internal("CA key"))?;
        let cert = ca_params()
            .self_signed(&key)
            .map_err(internal("CA certificate"))?;
        let der = Zeroizing::new(key.serialize_der());
        let wrapped = kms.seal_secret(CA_META, &der)?;
        let pem = cert.pem();
        let mut value = (pem.len() as u32).to_be_bytes().to_vec();
        value.extend_from_slice(pem.as_bytes());
        value.extend_from_slice(&wrapped);
        store.init_meta(CA_META, &value)?;
    }
    let value = store
        .meta(CA_META)?
        .ok_or_else(|| ServerError::Internal("CA missing".into()))?;
    let corrupt = || ServerError::Internal("corrupt CA record".into());
    let (len, rest) = value.split_first_chunk::<4>().ok_or_else(corrupt)?;
    let (pem, wrapped) = rest
        .split_at_checked(u32::from_be_bytes(*len) as usize)
        .ok_or_else(corrupt)?;
    let pem = String::from_utf8(pem.to_vec()).map_err(|_| corrupt())?;
    let der = kms.open_secret(CA_META, wrapped)?;
    let key = KeyPair::try_from(&der[..]).map_err(internal("CA key"))?;
    Ok((pem, key))
}

/// Everything the listener needs.
pub struct Tls {
    /// The CA certificate clients trust (write it to `ca.pem`).
    pub ca_pem: String,
    /// The rustls configuration: TLS 1.3 only, no 0-RTT, HTTP/2 and HTTP/1.1.
    pub config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

/// Loads (or makes) the CA and issues this start's server certificate for `names`.
pub fn prepare(kms: &Kms, names: &[String]) -> Result<Tls, ServerError> {
    let (ca_pem, ca_key) = ca(kms)?;
    let issuer = Issuer::new(ca_params(), ca_key);

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(internal("server key"))?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(internal("server names"))?;
    params
        .distinguished_name
        .push(DnType::CommonName, "keyward server");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = time_now();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(30);
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(internal("server certificate"))?;

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ServerError::Internal(format!("TLS configuration: {e}")))?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .map_err(|e| ServerError::Internal(format!("TLS certificate: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.max_early_data_size = 0;
    Ok(Tls {
        ca_pem,
        config: Arc::new(config),
    })
}
