//! The internal CA as keyward keeps it: its certificates in the store and its private
//! keys wrapped by the root key, every issued certificate recorded, revocations, and CRLs.

use base64::Engine as _;
use keyward_kms::Kms;
use keyward_pki::ca::{self, pem};
use keyward_pki::{Ca, CaCert, Issued, KeyAlgorithm, LeafRequest, Revoked};
use keyward_store::{CertificateRecord, StoreError};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ServerError;

const CA_META: &str = "pki-ca";
const ROOT_KEY_PURPOSE: &str = "pki-root-key";
const INTERMEDIATE_KEY_PURPOSE: &str = "pki-intermediate-key";

/// The trust domain a CA made on first start gets.
pub const DEFAULT_TRUST_DOMAIN: &str = "keyward.internal";
/// Default certificate lifetime (`--ttl`).
pub const DEFAULT_TTL: time::Duration = time::Duration::hours(24);
/// Default longest lifetime the CA issues.
pub const DEFAULT_MAX_TTL: time::Duration = time::Duration::days(90);

#[derive(Serialize, Deserialize)]
struct Stored {
    trust_domain: String,
    max_ttl_seconds: i64,
    root_cert: String,
    root_key: Option<String>,
    intermediate_cert: String,
    intermediate_key: String,
}

/// The CA with its settings.
#[derive(Debug)]
pub struct StoredCa {
    /// Root, intermediate, trust domain.
    pub ca: Ca,
    /// The longest lifetime it issues.
    pub max_ttl: time::Duration,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(s: &str) -> Result<Vec<u8>, ServerError> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|_| ServerError::Internal("corrupt CA record".into()))
}

fn pki_error(e: keyward_pki::Error) -> ServerError {
    ServerError::Internal(e.to_string())
}

fn encode(kms: &Kms, stored: &StoredCa) -> Result<Vec<u8>, ServerError> {
    let ca = &stored.ca;
    let wrap = |purpose: &str, cert: &CaCert| -> Result<Option<String>, ServerError> {
        cert.key_pkcs8()
            .map(|k| kms.seal_secret(purpose, &k).map(|w| b64(&w)))
            .transpose()
            .map_err(ServerError::from)
    };
    let record = Stored {
        trust_domain: ca.trust_domain.clone(),
        max_ttl_seconds: stored.max_ttl.whole_seconds(),
        root_cert: b64(&ca.root.cert),
        root_key: wrap(ROOT_KEY_PURPOSE, &ca.root)?,
        intermediate_cert: b64(&ca.intermediate.cert),
        intermediate_key: wrap(INTERMEDIATE_KEY_PURPOSE, &ca.intermediate)?
            .ok_or_else(|| ServerError::Internal("the intermediate has no key".into()))?,
    };
    serde_json::to_vec(&record).map_err(|e| ServerError::Internal(e.to_string()))
}

/// Makes and stores a new CA. Fails with `AlreadyExists` if there is one.
pub fn init(
    kms: &Kms,
    trust_domain: &str,
    alg: KeyAlgorithm,
    max_ttl: time::Duration,
) -> Result<StoredCa, ServerError> {
    if kms.store().meta(CA_META)?.is_some() {
        return Err(StoreError::AlreadyExists.into());
    }
    let ca = Ca::init(trust_domain, alg, OffsetDateTime::now_utc()).map_err(pki_error)?;
    let stored = StoredCa { ca, max_ttl };
    let value = encode(kms, &stored)?;
    if kms.store().init_meta(CA_META, &value)? != value {
        return Err(StoreError::AlreadyExists.into());
    }
    Ok(stored)
}

/// The stored CA, if there is one.
pub fn load(kms: &Kms) -> Result<Option<StoredCa>, ServerError> {
    let Some(value) = kms.store().meta(CA_META)? else {
        return Ok(None);
    };
    let s: Stored = serde_json::from_slice(&value)
        .map_err(|_| ServerError::Internal("corrupt CA record".into()))?;
    let unwrap = |purpose: &str, wrapped: &str| -> Result<_, ServerError> {
        Ok(kms.open_secret(purpose, &unb64(wrapped)?)?)
    };
    let root_key = s
        .root_key
        .as_deref()
        .map(|w| unwrap(ROOT_KEY_PURPOSE, w))
        .transpose()?;
    let int_key = unwrap(INTERMEDIATE_KEY_PURPOSE, &s.intermediate_key)?;
    let root = CaCert::from_parts(
        CertificateDer::from(unb64(&s.root_cert)?),
        root_key.as_deref().map(|k| &k[..]),
    )
    .map_err(pki_error)?;
    let intermediate = CaCert::from_parts(
        CertificateDer::from(unb64(&s.intermediate_cert)?),
        Some(&int_key),
    )
    .map_err(pki_error)?;
    Ok(Some(StoredCa {
        ca: Ca {
            root,
            intermediate,
            trust_domain: s.trust_domain,
        },
        max_ttl: time::Duration::seconds(s.max_ttl_seconds),
    }))
}

/// The stored CA, made with the defaults if there is none yet (first start).
pub fn load_or_init(kms: &Kms) -> Result<StoredCa, ServerError> {
    if let Some(ca) = load(kms)? {
        return Ok(ca);
    }
    match init(
        kms,
        DEFAULT_TRUST_DOMAIN,
        KeyAlgorithm::P256,
        DEFAULT_MAX_TTL,
    ) {
        Err(ServerError::Store(StoreError::AlreadyExists)) => {
            load(kms)?.ok_or_else(|| ServerError::Internal("CA vanished".into()))
        }
        other => other,
    }
}

/// The root's certificate and key as PEM, for offline keeping.
pub fn export_root(stored: &StoredCa) -> Result<(String, zeroize::Zeroizing<String>), ServerError> {
    let key = stored
        .ca
        .root
        .key_pkcs8()
        .ok_or_else(|| ServerError::Internal("the root key is not on this server".into()))?;
    let mut key_pem = zeroize::Zeroizing::new(String::from("-----BEGIN PRIVATE KEY-----\n"));
    let key_b64 = zeroize::Zeroizing::new(b64(&key));
    for line in key_b64.as_bytes().chunks(64) {
        key_pem.push_str(&String::from_utf8_lossy(line));
        key_pem.push('\n');
    }
    key_pem.push_str("-----END PRIVATE KEY-----\n");
    Ok((stored.ca.root.pem(), key_pem))
}

/// Removes the root's private key from the store; the root certificate stays.
pub fn remove_root_key(kms: &Kms, stored: &StoredCa) -> Result<(), ServerError> {
    let without = StoredCa {
        ca: Ca {
            root: stored.ca.root.without_key(),
            intermediate: CaCert::from_parts(
                stored.ca.intermediate.cert.clone(),
                stored
                    .ca
                    .intermediate
                    .key_pkcs8()
                    .as_deref()
                    .map(|k| &k[..]),
            )
            .map_err(pki_error)?,
            trust_domain: stored.ca.trust_domain.clone(),
        },
        max_ttl: stored.max_ttl,
    };
    kms.store().set_meta(CA_META, &encode(kms, &without)?)?;
    Ok(())
}

/// Who a certificate names, for the record.
fn subject(issued: &Issued) -> String {
    let info = &issued.info;
    info.principal()
        .or_else(|| info.dns.first().cloned())
        .or_else(|| info.ips.first().map(ToString::to_string))
        .unwrap_or_default()
}

fn record(kms: &Kms, issued: &Issued) -> Result<(), ServerError> {
    let info = &issued.info;
    kms.store().record_certificate(&CertificateRecord {
        serial: info.serial_hex(),
        subject: subject(issued),
        not_before: info.not_before,
        not_after: info.not_after,
        issued_at: OffsetDateTime::now_utc().unix_timestamp(),
        revoked_at: None,
        der: issued.cert.to_vec(),
    })?;
    Ok(())
}

fn check_ttl(stored: &StoredCa, req: &LeafRequest) -> Result<(), keyward_pki::Error> {
    if req.not_after - req.not_before > stored.max_ttl + ca::BACKDATE {
        return Err(keyward_pki::Error::Refused(format!(
            "the lifetime asked for is longer than this CA's maximum of {}",
            stored.max_ttl
        )));
    }
    Ok(())
}

/// Issues and records a certificate for `public_key`.
pub fn issue(
    kms: &Kms,
    stored: &StoredCa,
    public_key: &impl rcgen::PublicKeyData,
    req: &LeafRequest,
) -> Result<Issued, IssueError> {
    check_ttl(stored, req)?;
    let issued = stored.ca.issue(public_key, req)?;
    record(kms, &issued)?;
    Ok(issued)
}

/// Signs and records a CSR.
pub fn sign_csr(
    kms: &Kms,
    stored: &StoredCa,
    csr_pem: &str,
    req: &LeafRequest,
) -> Result<Issued, IssueError> {
    check_ttl(stored, req)?;
    let issued = stored.ca.sign_csr(csr_pem, req)?;
    record(kms, &issued)?;
    Ok(issued)
}

/// Why issuance failed: the request (tell the caller) or the server (log it).
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The request was refused.
    #[error(transparent)]
    Refused(#[from] keyward_pki::Error),
    /// The server failed.
    #[error(transparent)]
    Server(#[from] ServerError),
}

impl From<StoreError> for IssueError {
    fn from(e: StoreError) -> Self {
        Self::Server(e.into())
    }
}

/// The chain to hand out with a leaf: leaf, intermediate (PEM).
pub fn chain_pem(stored: &StoredCa, leaf: &CertificateDer<'_>) -> String {
    let mut out = pem(leaf);
    out.push_str(&stored.ca.intermediate.pem());
    out
}

/// Revokes a certificate by serial (hex).
pub fn revoke(kms: &Kms, serial_hex: &str) -> Result<(), ServerError> {
    let serial = keyward_pki::identity::parse_serial(serial_hex).map_err(pki_error)?;
    let serial = keyward_pki::identity::serial_hex(&serial);
    kms.store()
        .revoke_certificate(&serial, OffsetDateTime::now_utc().unix_timestamp())?;
    Ok(())
}

/// How long a CRL is valid for; keyward re-signs it well before.
pub const CRL_VALIDITY: time::Duration = time::Duration::days(7);

/// The revocations that a CRL must list now, as `(serial, revoked_at)`.
pub fn revocations(kms: &Kms) -> Result<Vec<(String, i64)>, ServerError> {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    Ok(kms
        .store()
        .revoked_certificates(now)?
        .into_iter()
        .map(|c| (c.serial, c.revoked_at.unwrap_or(now)))
        .collect())
}

/// A CRL for `revocations`, signed now.
pub fn crl(
    stored: &StoredCa,
    revocations: &[(String, i64)],
) -> Result<CertificateRevocationListDer<'static>, ServerError> {
    let now = OffsetDateTime::now_utc();
    let revoked: Vec<Revoked> = revocations
        .iter()
        .filter_map(|(serial, at)| {
            Some(Revoked {
                serial: keyward_pki::identity::parse_serial(serial).ok()?,
                revoked_at: OffsetDateTime::from_unix_timestamp(*at).ok()?,
            })
        })
        .collect();
    let number = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    stored
        .ca
        .crl(&revoked, now, now + CRL_VALIDITY, number)
        .map_err(pki_error)
}
