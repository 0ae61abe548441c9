//! The listener's TLS: its certificate from the internal CA, renewed by the server itself
//! and swapped without a restart; client-certificate verification with the CA's CRL,
//! rebuilt when a certificate is revoked; expiry warnings and figures for `/metrics`.

use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use keyward_kms::Kms;
use keyward_pki::expiry::{self, Standing};
use keyward_pki::tls::{SwappableCert, certified_key, check_server_certificate};
use keyward_pki::{CertInfo, ClientAuth, LeafRequest, SpiffeId};
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs8KeyDer,
};
use time::OffsetDateTime;

use crate::ServerError;
use crate::pki::{self, StoredCa};

/// How often the server looks for revocations and for its certificate's renewal time.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);
/// How often the CRL is signed again when nothing changed.
const CRL_RESIGN: i64 = 86_400;

/// What the listener's TLS is made from.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// DNS names and IP addresses the server certificate names (and is checked against).
    pub names: Vec<String>,
    /// Client certificates: off, optional or required.
    pub client_auth: ClientAuth,
    /// The server certificate's lifetime; it is renewed at 2/3 of it.
    pub cert_ttl: time::Duration,
    /// A certificate chain and key to serve instead of one from the internal CA (from an
    /// organisation's CA, say). keyward does not renew it; it warns as it runs out.
    pub provided: Option<Provided>,
    /// Where to keep the current certificate and its key ([`LISTENER_FILE`]), for the
    /// listener of a server that starts sealed and has no CA key until unsealed.
    pub keep: Option<PathBuf>,
}

/// The file in [`TlsSettings::keep`]: the chain, then the key (PEM, mode 0600).
pub const LISTENER_FILE: &str = "listener.pem";

/// An operator's own certificate chain (leaf first) and key.
pub struct Provided {
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key.
    pub key: zeroize::Zeroizing<PrivateKeyDer<'static>>,
}

impl Clone for Provided {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: zeroize::Zeroizing::new(self.key.clone_key()),
        }
    }
}

impl std::fmt::Debug for Provided {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provided")
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

struct Crl {
    revocations: Vec<(String, i64)>,
    der: CertificateRevocationListDer<'static>,
    signed_at: i64,
}

struct Served {
    info: CertInfo,
    renew_at: i64,
    warned: Option<i64>,
}

/// The TLS side of a running server.
pub struct TlsState {
    kms: Arc<Kms>,
    ca: StoredCa,
    settings: TlsSettings,
    spiffe_id: SpiffeId,
    cert: Arc<SwappableCert>,
    served: Mutex<Served>,
    crl: Mutex<Crl>,
    config: RwLock<Arc<rustls::ServerConfig>>,
}

impl std::fmt::Debug for TlsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsState")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn pki_error(e: keyward_pki::Error) -> ServerError {
    ServerError::Internal(e.to_string())
}

impl TlsState {
    /// Loads the CA (making one on first start), issues this start's certificate and
    /// builds the configuration.
    pub fn start(kms: Arc<Kms>, settings: TlsSettings) -> Result<Self, ServerError> {
        let ca = pki::load_or_init(&kms)?;
        if settings.cert_ttl > ca.max_ttl {
            return Err(ServerError::Internal(format!(
                "the server certificate lifetime {} is longer than the CA's maximum {}",
                settings.cert_ttl, ca.max_ttl
            )));
        }
        let spiffe_id = SpiffeId::parse(&format!("spiffe://{}/keyward/server", ca.ca.trust_domain))
            .map_err(pki_error)?;
        let (certified, info) = match &settings.provided {
            None => issue_server_cert(&kms, &ca, &spiffe_id, &settings)?,
            Some(p) => {
                let info = CertInfo::parse(p.chain.first().ok_or_else(|| {
                    ServerError::Internal("the provided certificate file is empty".into())
                })?)
                .map_err(pki_error)?;
                (
                    certified_key(p.chain.clone(), &p.key).map_err(pki_error)?,
                    info,
                )
            }
        };
        let cert = Arc::new(SwappableCert::new(certified));
        let revocations = pki::revocations(&kms)?;
        let crl = Crl {
            der: pki::crl(&ca, &revocations)?,
            revocations,
            signed_at: now(),
        };
        let config = build_config(&cert, &ca, &settings, &crl)?;
        let renew_at = if settings.provided.is_some() {
            i64::MAX
        } else {
            expiry::renew_at(info.not_before, info.not_after, expiry::random_jitter())
        };
        let served = Served {
            renew_at,
            info,
            warned: None,
        };
        Ok(Self {
            kms,
            ca,
            settings,
            spiffe_id,
            cert,
            served: Mutex::new(served),
            crl: Mutex::new(crl),
            config: RwLock::new(Arc::new(config)),
        })
    }

    /// The configuration for the next handshake.
    pub fn config(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.config.read().ok().map(|c| c.clone())
    }

    /// The listener's configuration while sealed: the current certificate, no client
    /// certificates.
    pub fn sealed_config(&self) -> Result<rustls::ServerConfig, ServerError> {
        keyward_pki::tls::server_config(self.cert.clone(), ClientAuth::Off, &[], Vec::new())
            .map_err(pki_error)
    }

    /// The CA.
    pub fn ca(&self) -> &StoredCa {
        &self.ca
    }

    /// The KMS.
    pub fn kms(&self) -> &Arc<Kms> {
        &self.kms
    }

    /// The root certificate clients trust (write it to `ca.pem`).
    pub fn root_pem(&self) -> String {
        self.ca.ca.root.pem()
    }

    /// The current CRL (DER).
    pub fn crl_der(&self) -> Option<CertificateRevocationListDer<'static>> {
        self.crl.lock().ok().map(|c| c.der.clone())
    }

    /// `(name, not_after)` of the certificates this server depends on, for `/metrics`.
    pub fn expiries(&self) -> Vec<(&'static str, i64)> {
        let mut out = Vec::new();
        if let Ok(s) = self.served.lock() {
            out.push(("server", s.info.not_after));
        }
        for (name, cert) in [
            ("intermediate", &self.ca.ca.intermediate.cert),
            ("root", &self.ca.ca.root.cert),
        ] {
            if let Ok(info) = CertInfo::parse(cert) {
                out.push((name, info.not_after));
            }
        }
        out
    }

    /// One round of upkeep (blocking: it reads the store): renews the server certificate
    /// when due, rebuilds the configuration when revocations changed, re-signs the CRL
    /// daily, and warns about certificates running out.
    pub fn maintain(&self) -> Result<(), ServerError> {
        let t = now();
        let due = self.served.lock().map(|s| t >= s.renew_at).unwrap_or(false);
        if due {
            self.renew()?;
        }
        let revocations = pki::revocations(&self.kms)?;
        let changed = match self.crl.lock() {
            Ok(crl) => crl.revocations != revocations || t - crl.signed_at > CRL_RESIGN,
            Err(_) => true,
        };
        if changed {
            let crl = Crl {
                der: pki::crl(&self.ca, &revocations)?,
                revocations,
                signed_at: t,
            };
            let config = build_config(&self.cert, &self.ca, &self.settings, &crl)?;
            if let Ok(mut c) = self.config.write() {
                *c = Arc::new(config);
            }
            if let Ok(mut slot) = self.crl.lock() {
                *slot = crl;
            }
            tracing::info!("CRL signed; client verification now uses it");
        }
        self.warn_expiry(t);
        Ok(())
    }

    /// Issues a new server certificate, checks it, and serves it from the next handshake.
    pub fn renew(&self) -> Result<(), ServerError> {
        let (certified, info) =
            issue_server_cert(&self.kms, &self.ca, &self.spiffe_id, &self.settings)?;
        self.cert.swap(certified);
        tracing::info!(
            serial = %info.serial_hex(),
            not_after = info.not_after,
            "server certificate renewed"
        );
        if let Ok(mut s) = self.served.lock() {
            s.renew_at = expiry::renew_at(info.not_before, info.not_after, expiry::random_jitter());
            s.info = info;
            s.warned = None;
        }
        Ok(())
    }

    fn warn_expiry(&self, t: i64) {
        let Ok(mut s) = self.served.lock() else {
            return;
        };
        match expiry::standing(s.info.not_before, s.info.not_after, t) {
            Standing::Warning {
                seconds_left,
                threshold,
            } if s.warned != Some(threshold) => {
                tracing::warn!(seconds_left, "the server certificate is running out");
                s.warned = Some(threshold);
            }
            Standing::Expired if s.warned != Some(0) => {
                tracing::error!("the server certificate has expired");
                s.warned = Some(0);
            }
            _ => {}
        }
    }
}

fn build_config(
    cert: &Arc<SwappableCert>,
    ca: &StoredCa,
    settings: &TlsSettings,
    crl: &Crl,
) -> Result<rustls::ServerConfig, ServerError> {
    keyward_pki::tls::server_config(
        cert.clone(),
        settings.client_auth,
        std::slice::from_ref(&ca.ca.root.cert),
        vec![crl.der.clone()],
    )
    .map_err(pki_error)
}

/// A fresh key and certificate for the server, checked against the root and every name
/// before it is used.
fn issue_server_cert(
    kms: &Kms,
    ca: &StoredCa,
    spiffe_id: &SpiffeId,
    settings: &TlsSettings,
) -> Result<(rustls::sign::CertifiedKey, CertInfo), ServerError> {
    let key = keyward_pki::ca::generate_key(keyward_pki::KeyAlgorithm::P256).map_err(pki_error)?;
    let mut req = LeafRequest::new(
        Some(spiffe_id.clone()),
        OffsetDateTime::now_utc(),
        settings.cert_ttl,
    );
    for name in &settings.names {
        match name.parse::<IpAddr>() {
            Ok(ip) => req.ips.push(ip),
            Err(_) => req.dns.push(name.clone()),
        }
    }
    let issued = pki::issue(kms, ca, &*key, &req).map_err(|e| match e {
        pki::IssueError::Refused(e) => pki_error(e),
        pki::IssueError::Server(e) => e,
    })?;
    let chain = vec![issued.cert.clone(), ca.ca.intermediate.cert.clone()];
    let key_der = zeroize::Zeroizing::new(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        key.serialize_der(),
    )));
    check_server_certificate(
        &chain,
        std::slice::from_ref(&ca.ca.root.cert),
        &settings.names,
    )
    .map_err(pki_error)?;
    if let Some(dir) = &settings.keep {
        keep(dir, &chain, &key)?;
    }
    let certified = certified_key(chain, &key_der).map_err(pki_error)?;
    Ok((certified, issued.info))
}

/// Writes the chain and key to `dir`/[`LISTENER_FILE`] so that readers see the old file
/// or the whole new one.
fn keep(
    dir: &Path,
    chain: &[CertificateDer<'static>],
    key: &rcgen::KeyPair,
) -> Result<(), ServerError> {
    let fail = |e: std::io::Error| {
        ServerError::Internal(format!(
            "keeping the listener certificate in {}: {e}",
            dir.display()
        ))
    };
    let mut text = zeroize::Zeroizing::new(String::new());
    for cert in chain {
        text.push_str(&keyward_pki::ca::pem(cert));
    }
    text.push_str(&keyward_pki::ca::key_pem(key));
    let tmp = dir.join(format!(".{LISTENER_FILE}.partial"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(fail)?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(fail)?;
    std::fs::rename(&tmp, dir.join(LISTENER_FILE)).map_err(fail)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(fail)
}

/// The sealed listener's configuration from the certificate a server kept in `dir`, and
/// what that certificate says. Fails if there is none, or it does not match its key.
pub fn kept_config(dir: &Path) -> Result<(rustls::ServerConfig, CertInfo), ServerError> {
    use rustls::pki_types::pem::PemObject as _;
    let path = dir.join(LISTENER_FILE);
    let fail = |e: &dyn std::fmt::Display| {
        ServerError::Internal(format!(
            "the kept listener certificate {}: {e}",
            path.display()
        ))
    };
    let chain = CertificateDer::pem_file_iter(&path)
        .map_err(|e| fail(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(&e))?;
    let key = zeroize::Zeroizing::new(PrivateKeyDer::from_pem_file(&path).map_err(|e| fail(&e))?);
    let info = CertInfo::parse(chain.first().ok_or_else(|| fail(&"no certificate"))?)
        .map_err(|e| fail(&e))?;
    let certified = certified_key(chain, &key).map_err(|e| fail(&e))?;
    let config = keyward_pki::tls::server_config(
        Arc::new(SwappableCert::new(certified)),
        ClientAuth::Off,
        &[],
        Vec::new(),
    )
    .map_err(pki_error)?;
    Ok((config, info))
}

/// What a verified client certificate chain's leaf says.
pub fn peer_info(chain: Option<&[CertificateDer<'_>]>) -> Option<CertInfo> {
    CertInfo::parse(chain?.first()?).ok()
}
