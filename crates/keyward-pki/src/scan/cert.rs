//! The server's certificate: obtained from a rustls TLS 1.3 handshake (with a verifier
//! that accepts anything and keeps what it was shown) or from a TLS 1.2-or-older
//! Certificate message; then validated against the given trust anchors with rustls'
//! WebPKI verifier, checked against the server name and described (key, signature,
//! lifetime).

use std::io::Read as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, aws_lc_rs};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{AlertDescription, DigitallySignedStruct, SignatureScheme};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer as _, X509Certificate};
use x509_parser::public_key::PublicKey;

use super::ScanOptions;
use super::probe::{Deadline, Prober};
use super::report::CertReport;
use super::serverhello::Flight;

/// What the dangerous verifier was shown: the chain and whether an OCSP response came.
type Seen = Option<(Vec<CertificateDer<'static>>, bool)>;

/// A server certificate verifier that accepts every certificate and records it.
///
/// DANGEROUS in any client that sends or trusts data: it authenticates nothing. It is
/// safe here because the scanner only reports: nothing is sent on the connection and
/// nothing received is believed, and the recorded chain is validated afterwards, offline,
/// by [`validate`] with rustls' WebPKI verifier. Handshake signatures are still checked,
/// so the chain reported is one the server holds the key for.
#[derive(Debug)]
struct DangerousCapturingVerifier {
    seen: Mutex<Seen>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for DangerousCapturingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some((chain, !ocsp_response.is_empty()));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Presents the configured client certificate, if any, and records that the server
/// asked for one.
#[derive(Debug)]
struct RecordingResolver {
    key: Option<Arc<CertifiedKey>>,
    asked: AtomicBool,
}

impl ResolvesClientCert for RecordingResolver {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.asked.store(true, Ordering::SeqCst);
        self.key.clone()
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// What was learnt about the certificate and client authentication.
#[derive(Debug)]
pub struct Obtained {
    /// The certificate, if one was received and parsed.
    pub report: Option<CertReport>,
    /// `not_requested`, `optional`, `required`, `requested` or `unknown`.
    pub client_auth: String,
    /// Why there is no certificate.
    pub error: Option<String>,
}

fn unknown(error: String) -> Obtained {
    Obtained {
        report: None,
        client_auth: "unknown".to_owned(),
        error: Some(error),
    }
}

/// The certificate and client-auth requirement of a TLS 1.3 server, from a rustls
/// handshake (presenting `--client-cert` if given).
pub fn from_tls13(options: &ScanOptions, prober: &Prober) -> Obtained {
    let provider = Arc::new(aws_lc_rs::default_provider());
    let verifier = Arc::new(DangerousCapturingVerifier {
        seen: Mutex::new(None),
        algorithms: provider.signature_verification_algorithms,
    });
    let key = options
        .client_identity
        .as_ref()
        .and_then(|(chain, key)| crate::tls::certified_key(chain.clone(), key).ok())
        .map(Arc::new);
    let presenting = key.is_some();
    let resolver = Arc::new(RecordingResolver {
        key,
        asked: AtomicBool::new(false),
    });
    let builder = match rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
    {
        Ok(b) => b,
        Err(e) => return unknown(format!("TLS client: {e}")),
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_client_cert_resolver(resolver.clone());
    let Ok(name) = ServerName::try_from(options.server_name().to_owned()) else {
        return unknown("the server name is not a DNS name or IP address".into());
    };
    let mut conn = match rustls::ClientConnection::new(Arc::new(config), name) {
        Ok(c) => c,
        Err(e) => return unknown(format!("TLS client: {e}")),
    };
    let (sock, allowance) = match prober.connect().and_then(|s| Ok((s, prober.allowance()?))) {
        Ok(s) => s,
        Err(e) => return unknown(format!("TLS 1.3 handshake: {e}")),
    };
    // The whole handshake within one probe's allowance, however the server paces it.
    let mut stream = Deadline {
        stream: &sock,
        until: Instant::now() + allowance,
    };
    let mut handshake_error = None;
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut stream) {
            handshake_error = Some(format!("TLS 1.3 handshake: {e}"));
            break;
        }
    }
    let handshake_ok = handshake_error.is_none();
    // A server that requires a client certificate refuses the empty one after the
    // handshake, with an alert on the first read.
    let mut refused = false;
    if handshake_ok {
        stream.until = Instant::now() + allowance.min(Duration::from_millis(800));
        let mut buf = [0u8; 1];
        if let Err(e) = rustls::Stream::new(&mut conn, &mut stream).read(&mut buf) {
            refused = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .is_some_and(|e| {
                    matches!(
                        e,
                        rustls::Error::AlertReceived(
                            AlertDescription::CertificateRequired
                                | AlertDescription::HandshakeFailure
                                | AlertDescription::BadCertificate
                                | AlertDescription::CertificateUnknown
                                | AlertDescription::AccessDenied
                        )
                    )
                });
        }
    }
    let client_auth = match (resolver.asked.load(Ordering::SeqCst), refused, presenting) {
        (false, _, _) => "not_requested",
        (true, true, _) => "required",
        (true, false, true) => "requested",
        (true, false, false) => "optional",
    };
    let seen = verifier.seen.lock().ok().and_then(|s| s.clone());
    let report =
        seen.and_then(|(chain, ocsp)| describe(&chain, ocsp, options, "TLSv1.3 handshake"));
    let error = match (&report, handshake_error) {
        (Some(_), _) => None,
        (None, Some(e)) => Some(e),
        (None, None) => Some("the leaf certificate could not be parsed".to_owned()),
    };
    Obtained {
        report,
        client_auth: client_auth.to_owned(),
        error,
    }
}

/// The certificate and client-auth request of a TLS 1.2-or-older server, from its flight.
pub fn from_flight(options: &ScanOptions, flight: &Flight, version: &str) -> Obtained {
    let chain: Vec<CertificateDer<'static>> = flight
        .certificates
        .iter()
        .map(|c| CertificateDer::from(c.clone()))
        .collect();
    let source = format!("{version} Certificate message");
    let client_auth = if flight.client_cert_requested {
        "requested"
    } else {
        "not_requested"
    };
    let report = describe(&chain, flight.ocsp_stapled, options, &source);
    let error = report
        .is_none()
        .then(|| format!("the leaf certificate in the {source} could not be parsed"));
    Obtained {
        report,
        client_auth: client_auth.to_owned(),
        error,
    }
}

/// Validates `chain` (leaf first) to `roots` for `name` now: `Ok(())`, or why not.
pub fn validate(
    chain: &[CertificateDer<'static>],
    roots: &[CertificateDer<'static>],
    name: &str,
) -> Result<(), String> {
    let (leaf, intermediates) = chain.split_first().ok_or("empty chain")?;
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store
            .add(root.clone())
            .map_err(|e| format!("trust anchor: {e}"))?;
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(
        Arc::new(store),
        Arc::new(aws_lc_rs::default_provider()),
    )
    .build()
    .map_err(|e| format!("verifier: {e}"))?;
    let name = ServerName::try_from(name.to_owned())
        .map_err(|_| format!("{name:?} is not a DNS name or IP address"))?;
    verifier
        .verify_server_cert(leaf, intermediates, &name, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Whether `pattern` (a DNS SAN, possibly `*.` wildcard) covers `name`.
fn dns_matches(pattern: &str, name: &str) -> bool {
    let (pattern, name) = (pattern.to_ascii_lowercase(), name.to_ascii_lowercase());
    let name = name.trim_end_matches('.');
    match pattern.strip_prefix("*.") {
        Some(rest) => name
            .split_once('.')
            .is_some_and(|(label, tail)| !label.is_empty() && tail == rest),
        None => pattern == name,
    }
}

fn oid_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "1.2.840.10045.4.1" => "ecdsa-with-SHA1",
        "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256",
        "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384",
        "1.2.840.10045.4.3.4" => "ecdsa-with-SHA512",
        "1.2.840.113549.1.1.4" => "md5WithRSAEncryption",
        "1.2.840.113549.1.1.5" => "sha1WithRSAEncryption",
        "1.2.840.113549.1.1.10" => "RSASSA-PSS",
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption",
        "1.2.840.113549.1.1.12" => "sha384WithRSAEncryption",
        "1.2.840.113549.1.1.13" => "sha512WithRSAEncryption",
        "1.3.101.112" => "ed25519",
        "1.3.101.113" => "ed448",
        "1.2.840.10045.3.1.7" => "secp256r1",
        "1.3.132.0.34" => "secp384r1",
        "1.3.132.0.35" => "secp521r1",
        "1.3.132.0.33" => "secp224r1",
        "1.3.132.0.10" => "secp256k1",
        _ => return None,
    })
}

/// Describes the leaf of `chain` for the server name in `options`.
pub fn describe(
    chain: &[CertificateDer<'static>],
    ocsp_stapled: bool,
    options: &ScanOptions,
    source: &str,
) -> Option<CertReport> {
    let leaf = chain.first()?;
    let (_, cert) = X509Certificate::from_der(leaf.as_ref()).ok()?;
    let (mut dns_names, mut ip_addresses, mut uris) = (Vec::new(), Vec::new(), Vec::new());
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns_names.push((*d).to_owned()),
                GeneralName::URI(u) => uris.push((*u).to_owned()),
                GeneralName::IPAddress(b) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*b) {
                        ip_addresses.push(std::net::IpAddr::from(v4).to_string());
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*b) {
                        ip_addresses.push(std::net::IpAddr::from(v6).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let spki = cert.public_key();
    let alg = spki.algorithm.algorithm.to_id_string();
    let (key_type, key_curve, key_bits) = match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => ("rsa".to_owned(), None, rsa.key_size()),
        Ok(PublicKey::EC(point)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            let curve = curve.map(|c| oid_name(&c).map_or(c.clone(), str::to_owned));
            ("ecdsa".to_owned(), curve, point.key_size())
        }
        _ => match alg.as_str() {
            "1.3.101.112" => ("ed25519".to_owned(), None, 256),
            "1.3.101.113" => ("ed448".to_owned(), None, 456),
            other => (other.to_owned(), None, 0),
        },
    };
    let sig = cert.signature_algorithm.algorithm.to_id_string();
    let signature_algorithm = oid_name(&sig).map_or(sig.clone(), str::to_owned);
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let lifetime = (not_after - not_before).max(0);
    #[expect(
        clippy::cast_precision_loss,
        reason = "seconds of a certificate lifetime"
    )]
    let fraction_left = if now < not_before {
        1.0
    } else if lifetime == 0 {
        0.0
    } else {
        ((not_after - now) as f64 / lifetime as f64).clamp(0.0, 1.0)
    };
    let name = options.server_name();
    let hostname_matches = match name.parse::<std::net::IpAddr>() {
        Ok(ip) => ip_addresses.contains(&ip.to_string()),
        Err(_) => dns_names.iter().any(|d| dns_matches(d, name)),
    };
    let (validation, validation_error) = if options.roots.is_empty() {
        (
            "not_validated",
            Some("not validated: no trust anchors given (use --ca)".to_owned()),
        )
    } else {
        match validate(chain, &options.roots, name) {
            Ok(()) => ("valid", None),
            Err(e) => ("invalid", Some(e)),
        }
    };
    Some(CertReport {
        source: source.to_owned(),
        chain_length: chain.len(),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        dns_names,
        ip_addresses,
        uris,
        key_type,
        key_curve,
        key_bits: u32::try_from(key_bits).unwrap_or(0),
        signature_algorithm,
        not_before,
        not_after,
        lifetime_days: lifetime / 86_400,
        days_left: (not_after - now).div_euclid(86_400),
        fraction_left,
        validation: validation.to_owned(),
        validation_error,
        hostname_matches,
        ocsp_stapled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(dns_matches("*.example.com", "a.example.com"));
        assert!(dns_matches("Example.COM", "example.com."));
        assert!(!dns_matches("*.example.com", "a.b.example.com"));
        assert!(!dns_matches("*.example.com", "example.com"));
        assert!(!dns_matches("a.example.com", "b.example.com"));
    }
}
