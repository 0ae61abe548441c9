//! The certificate authority: a root, an intermediate that signs everything else, SPIFFE
//! X.509-SVID leaves, CSR signing and revocation lists.
//!
//! Leaves follow the X.509-SVID standard: exactly one URI SAN (the SPIFFE ID), `cA=false`,
//! key usage `digitalSignature` only (critical), extended key usage serverAuth and
//! clientAuth. DNS and IP SANs may stand beside the URI so that a server's SVID also
//! matches the names clients dial.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PublicKeyData, RevokedCertParams, SanType,
    SerialNumber,
};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::identity::CertInfo;
use crate::{Error, SpiffeId};

/// How long the root CA is valid.
pub const ROOT_LIFETIME: time::Duration = time::Duration::days(3650);
/// How long the intermediate CA is valid.
pub const INTERMEDIATE_LIFETIME: time::Duration = time::Duration::days(1825);
/// How far back `not_before` is set on leaves, for clocks a little behind.
pub const BACKDATE: time::Duration = time::Duration::minutes(1);

/// The CA's key algorithm (ECDSA; Mozilla's `modern` profile wants ECDSA certificates).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// ECDSA P-256 with SHA-256.
    P256,
    /// ECDSA P-384 with SHA-384.
    P384,
}

impl std::str::FromStr for KeyAlgorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "p256" | "p-256" | "ecdsa-p256" => Ok(Self::P256),
            "p384" | "p-384" | "ecdsa-p384" => Ok(Self::P384),
            _ => Err(Error::Refused(format!(
                "unknown key algorithm {s:?}: use p256 or p384"
            ))),
        }
    }
}

impl KeyAlgorithm {
    fn rcgen(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            Self::P256 => &PKCS_ECDSA_P256_SHA256,
            Self::P384 => &PKCS_ECDSA_P384_SHA384,
        }
    }
}

fn internal(what: &'static str) -> impl Fn(rcgen::Error) -> Error {
    move |e| Error::Internal(format!("{what}: {e}"))
}

/// A new private key (PKCS#8 held in memory that is wiped on drop).
pub fn generate_key(alg: KeyAlgorithm) -> Result<Zeroizing<KeyPair>, Error> {
    KeyPair::generate_for(alg.rcgen())
        .map(Zeroizing::new)
        .map_err(internal("key generation"))
}

/// Reads a PKCS#8 private key (DER).
pub fn key_from_pkcs8(der: &[u8]) -> Result<Zeroizing<KeyPair>, Error> {
    KeyPair::try_from(der)
        .map(Zeroizing::new)
        .map_err(|_| Error::Malformed("not a usable PKCS#8 ECDSA private key".into()))
}

/// A CA certificate, with its private key when this process holds it.
pub struct CaCert {
    /// The certificate (DER).
    pub cert: CertificateDer<'static>,
    key: Option<Zeroizing<KeyPair>>,
}

impl std::fmt::Debug for CaCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaCert")
            .field("has_key", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

impl CaCert {
    /// A CA certificate and, optionally, its PKCS#8 key, as stored.
    pub fn from_parts(
        cert: CertificateDer<'static>,
        key_pkcs8: Option<&[u8]>,
    ) -> Result<Self, Error> {
        let info = CertInfo::parse(&cert)?;
        if !info.is_ca {
            return Err(Error::Malformed("not a CA certificate".into()));
        }
        let key = key_pkcs8.map(key_from_pkcs8).transpose()?;
        if let Some(k) = &key
            && k.subject_public_key_info() != info.spki
        {
            return Err(Error::Malformed(
                "the CA key does not match its certificate".into(),
            ));
        }
        Ok(Self { cert, key })
    }

    /// The certificate in PEM.
    pub fn pem(&self) -> String {
        pem(&self.cert)
    }

    /// The private key as PKCS#8 DER, for the caller to wrap and store.
    pub fn key_pkcs8(&self) -> Option<Zeroizing<Vec<u8>>> {
        self.key.as_ref().map(|k| Zeroizing::new(k.serialize_der()))
    }

    /// This certificate without its key.
    pub fn without_key(&self) -> Self {
        Self {
            cert: self.cert.clone(),
            key: None,
        }
    }

    fn issuer(&self) -> Result<Issuer<'static, &KeyPair>, Error> {
        let key = self
            .key
            .as_deref()
            .ok_or_else(|| Error::Refused("this CA's private key is not here".into()))?;
        Issuer::from_ca_cert_der(&self.cert, key).map_err(internal("CA certificate"))
    }
}

/// A certificate in PEM.
pub fn pem(cert: &CertificateDer<'_>) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(cert);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// The root and the intermediate.
#[derive(Debug)]
pub struct Ca {
    /// The root: its certificate is what clients trust; its key may be kept offline.
    pub root: CaCert,
    /// The intermediate: signs leaves and CRLs.
    pub intermediate: CaCert,
    /// The SPIFFE trust domain.
    pub trust_domain: String,
}

fn ca_params(
    cn: &str,
    trust_domain: &str,
    path_len: u8,
    not_before: OffsetDateTime,
    lifetime: time::Duration,
) -> Result<CertificateParams, Error> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "keyward");
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    // A signing certificate carries the trust domain's ID, without a path (X509-SVID §4).
    let td = SpiffeId::of_trust_domain(trust_domain)?;
    params.subject_alt_names = vec![uri(&td)?];
    params.serial_number = Some(random_serial()?);
    params.not_before = not_before;
    params.not_after = not_before + lifetime;
    params.key_identifier_method = KeyIdMethod::Sha256;
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn uri(id: &SpiffeId) -> Result<SanType, Error> {
    id.as_str()
        .try_into()
        .map(SanType::URI)
        .map_err(|_| Error::InvalidSpiffeId("not ASCII".into()))
}

/// A random positive 128-bit serial number.
fn random_serial() -> Result<SerialNumber, Error> {
    let mut serial = [0u8; 16];
    aws_lc_rs::rand::fill(&mut serial)
        .map_err(|_| Error::Internal("random number generator failed".into()))?;
    serial[0] = (serial[0] & 0x7f) | 0x40; // positive, and always 16 bytes long
    Ok(SerialNumber::from_slice(&serial))
}

impl Ca {
    /// Makes a new root and intermediate for `trust_domain`, valid from `now`.
    pub fn init(trust_domain: &str, alg: KeyAlgorithm, now: OffsetDateTime) -> Result<Self, Error> {
        crate::spiffe::check_trust_domain(trust_domain)?;
        let root_key = generate_key(alg)?;
        let root_params = ca_params("keyward root CA", trust_domain, 1, now, ROOT_LIFETIME)?;
        let root_cert = root_params
            .self_signed(&*root_key)
            .map_err(internal("root certificate"))?;
        let root = CaCert {
            cert: root_cert.der().clone(),
            key: Some(root_key),
        };
        let int_key = generate_key(alg)?;
        let int_params = ca_params(
            "keyward intermediate CA",
            trust_domain,
            0,
            now,
            INTERMEDIATE_LIFETIME,
        )?;
        let int_cert = int_params
            .signed_by(&*int_key, &root.issuer()?)
            .map_err(internal("intermediate certificate"))?;
        Ok(Self {
            root,
            intermediate: CaCert {
                cert: int_cert.der().clone(),
                key: Some(int_key),
            },
            trust_domain: trust_domain.to_owned(),
        })
    }

    /// The chain a leaf presents after itself: the intermediate.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.intermediate.cert.clone()]
    }

    /// Issues a leaf for `public_key` (an SVID when `req.spiffe_id` is set).
    pub fn issue(
        &self,
        public_key: &impl PublicKeyData,
        req: &LeafRequest,
    ) -> Result<Issued, Error> {
        let int = CertInfo::parse(&self.intermediate.cert)?;
        if let Some(id) = &req.spiffe_id {
            if id.trust_domain() != self.trust_domain {
                return Err(Error::Refused(format!(
                    "{id} is not in this CA's trust domain {}",
                    self.trust_domain
                )));
            }
            if id.path().is_empty() {
                return Err(Error::Refused("a workload's SPIFFE ID needs a path".into()));
            }
        }
        if req.spiffe_id.is_none() && req.dns.is_empty() && req.ips.is_empty() {
            return Err(Error::Refused(
                "a certificate needs a SPIFFE ID, a DNS name or an IP".into(),
            ));
        }
        if req.not_after <= req.not_before {
            return Err(Error::Refused("the lifetime must be positive".into()));
        }
        if req.not_after.unix_timestamp() > int.not_after {
            return Err(Error::Refused(
                "the certificate would outlive the intermediate CA".into(),
            ));
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        if let Some(cn) = &req.common_name {
            params
                .distinguished_name
                .push(DnType::CommonName, cn.as_str());
        }
        if let Some(id) = &req.spiffe_id {
            params.subject_alt_names.push(uri(id)?);
        }
        for name in &req.dns {
            let name = name
                .as_str()
                .try_into()
                .map_err(|_| Error::Refused(format!("{name:?} is not a DNS name")))?;
            params.subject_alt_names.push(SanType::DnsName(name));
        }
        for ip in &req.ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        // basicConstraints with cA false, DER-encoded: the default value is left out, so
        // the extension is an empty SEQUENCE (rcgen's ExplicitNoCa writes cA FALSE, which
        // strict parsers such as Python's cryptography refuse).
        params.is_ca = IsCa::NoCa;
        let mut basic_constraints =
            rcgen::CustomExtension::from_oid_content(&[2, 5, 29, 19], vec![0x30, 0x00]);
        basic_constraints.set_criticality(true);
        params.custom_extensions.push(basic_constraints);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.serial_number = Some(random_serial()?);
        params.not_before = req.not_before;
        params.not_after = req.not_after;
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::Sha256;
        let cert = params
            .signed_by(public_key, &self.intermediate.issuer()?)
            .map_err(internal("leaf certificate"))?;
        let cert = cert.der().clone();
        let info = CertInfo::parse(&cert)?;
        Ok(Issued { cert, info })
    }

    /// Signs a PEM certificate signing request: its signature is checked and only its
    /// public key is used; the names come from `req`, or, when `req` names nothing, from
    /// the CSR's single URI SAN.
    pub fn sign_csr(&self, csr_pem: &str, req: &LeafRequest) -> Result<Issued, Error> {
        let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| Error::Malformed(format!("certificate signing request: {e}")))?;
        let mut req = req.clone();
        if req.spiffe_id.is_none() && req.dns.is_empty() && req.ips.is_empty() {
            let uris: Vec<_> = csr
                .params
                .subject_alt_names
                .iter()
                .filter_map(|s| match s {
                    SanType::URI(u) => Some(u.as_str().to_owned()),
                    _ => None,
                })
                .collect();
            let [one] = uris.as_slice() else {
                return Err(Error::Refused(
                    "the CSR must name exactly one SPIFFE ID (URI SAN), or give --spiffe-id".into(),
                ));
            };
            req.spiffe_id = Some(SpiffeId::parse(one)?);
        }
        self.issue(&csr.public_key, &req)
    }

    /// A CRL listing `revoked`, signed by the intermediate. `number` must grow with every
    /// CRL issued (callers use the issue time in seconds).
    pub fn crl(
        &self,
        revoked: &[Revoked],
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
        number: u64,
    ) -> Result<CertificateRevocationListDer<'static>, Error> {
        let params = CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|r| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&r.serial),
                    revocation_time: r.revoked_at,
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params
            .signed_by(&self.intermediate.issuer()?)
            .map_err(internal("CRL"))?;
        Ok(crl.der().clone())
    }
}

/// What a leaf should say.
#[derive(Clone, Debug)]
pub struct LeafRequest {
    /// The SPIFFE ID (the one URI SAN).
    pub spiffe_id: Option<SpiffeId>,
    /// DNS names.
    pub dns: Vec<String>,
    /// IP addresses.
    pub ips: Vec<IpAddr>,
    /// A subject common name; SVIDs usually have none.
    pub common_name: Option<String>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

impl LeafRequest {
    /// A request valid for `ttl` from `now` (backdated by [`BACKDATE`]).
    pub fn new(spiffe_id: Option<SpiffeId>, now: OffsetDateTime, ttl: time::Duration) -> Self {
        Self {
            spiffe_id,
            dns: Vec::new(),
            ips: Vec::new(),
            common_name: None,
            not_before: now - BACKDATE,
            not_after: now + ttl,
        }
    }
}

/// An issued certificate.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The certificate (DER).
    pub cert: CertificateDer<'static>,
    /// What it says.
    pub info: CertInfo,
}

/// A revoked certificate, for a CRL.
#[derive(Clone, Debug)]
pub struct Revoked {
    /// Its serial number (big-endian bytes).
    pub serial: Vec<u8>,
    /// When it was revoked.
    pub revoked_at: OffsetDateTime,
}

/// A certificate signing request (PEM) for `key`, naming nothing: the CA decides the names.
pub fn csr_pem(key: &KeyPair) -> Result<String, Error> {
    CertificateParams::default()
        .serialize_request(key)
        .and_then(|csr| csr.pem())
        .map_err(internal("CSR"))
}

/// `key` as PKCS#8 PEM, in memory that is wiped on drop.
pub fn key_pem(key: &KeyPair) -> Zeroizing<String> {
    Zeroizing::new(key.serialize_pem())
}
