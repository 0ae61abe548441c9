//! What a scan found, the findings against a profile, and how both are shown: a table for
//! people, a stable JSON document (serde) for machines.

use std::fmt::Write as _;

use serde::Serialize;

/// Everything a scan found, before any profile is applied.
#[derive(Clone, Debug, Serialize)]
pub struct ScanResult {
    /// HOST:PORT as given.
    pub target: String,
    /// The name sent as SNI (unless an IP) and checked against the certificate.
    pub server_name: String,
    /// SSLv3 to TLSv1.3, in that order.
    pub versions: Vec<VersionResult>,
    /// Key exchange groups accepted, probed one at a time with `groups_probed_with`.
    pub groups: Vec<GroupResult>,
    /// The version the groups were probed with (the highest supported), if any.
    pub groups_probed_with: Option<String>,
    /// The leaf certificate and its chain, if one was received.
    pub certificate: Option<CertReport>,
    /// Why there is no certificate, if there is none.
    pub certificate_error: Option<String>,
    /// Whether the server asks for a client certificate: `not_requested`, `optional`,
    /// `required` or `unknown`.
    pub client_auth: String,
    /// Whether the server agreed to TLS compression (TLS 1.2 and older; `None` if it
    /// supports none of them).
    pub compression: Option<bool>,
    /// Whether the server refused a downgrade signalled with TLS_FALLBACK_SCSV (RFC 7507);
    /// `None` when it supports fewer than two versions.
    pub fallback_scsv: Option<bool>,
    /// Whether the server echoed extended_master_secret (TLS 1.2 and older).
    pub extended_master_secret: Option<bool>,
    /// Whether the server echoed renegotiation_info (TLS 1.2 and older).
    pub secure_renegotiation: Option<bool>,
    /// Whether the scan's time budget ran out before every probe was done (then the
    /// result may miss accepted versions, suites or groups).
    pub incomplete: bool,
    /// How long the scan took, in milliseconds.
    pub duration_ms: u64,
}

impl ScanResult {
    /// The names of the supported versions.
    pub fn supported_versions(&self) -> Vec<&str> {
        self.versions
            .iter()
            .filter(|v| v.supported)
            .map(|v| v.version.as_str())
            .collect()
    }
}

/// One protocol version.
#[derive(Clone, Debug, Serialize)]
pub struct VersionResult {
    /// `SSLv3`, `TLSv1`, `TLSv1.1`, `TLSv1.2` or `TLSv1.3`.
    pub version: String,
    /// Whether any cipher suite was accepted with it.
    pub supported: bool,
    /// The accepted suites, in the order the server chose them.
    pub cipher_suites: Vec<SuiteResult>,
}

/// One accepted cipher suite.
#[derive(Clone, Debug, Serialize)]
pub struct SuiteResult {
    /// The IANA id, as `0xc02f`.
    pub id: String,
    /// The IANA name.
    pub name: String,
    /// AEAD cipher.
    pub aead: bool,
    /// Forward secret key exchange.
    pub forward_secret: bool,
    /// `anonymous`, `NULL`, `EXPORT`, `RC4`, `3DES`, `DES`, `MD5`, `CBC`.
    pub weaknesses: Vec<String>,
    /// The ephemeral key the server used with it, if known.
    pub key_exchange: Option<KeyExchange>,
}

/// The server's ephemeral key exchange parameters.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct KeyExchange {
    /// `ECDH` or `DH`.
    pub kind: String,
    /// The group name (for ECDH and named DH groups).
    pub group: Option<String>,
    /// Size in bits (X25519 counts as 256).
    pub bits: u32,
}

/// One accepted group.
#[derive(Clone, Debug, Serialize)]
pub struct GroupResult {
    /// The name (`X25519`, `secp256r1`, `ffdhe2048`, `X25519MLKEM768`, ...).
    pub name: String,
    /// The IANA id.
    pub id: u16,
    /// Size in bits.
    pub bits: u32,
    /// An elliptic curve (what sslyze and Mozilla's `tls_curves` cover).
    pub elliptic_curve: bool,
}

/// The certificate the server presented.
#[derive(Clone, Debug, Serialize)]
pub struct CertReport {
    /// How it was obtained: `TLSv1.3 handshake` or `TLSv1.2 Certificate message` etc.
    pub source: String,
    /// Certificates sent, leaf included.
    pub chain_length: usize,
    /// The leaf's subject (RFC 4514).
    pub subject: String,
    /// The leaf's issuer (RFC 4514).
    pub issuer: String,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// IP SANs.
    pub ip_addresses: Vec<String>,
    /// URI SANs (SPIFFE IDs).
    pub uris: Vec<String>,
    /// `ecdsa`, `rsa`, `ed25519`, `ed448` or the algorithm OID.
    pub key_type: String,
    /// For ECDSA: the curve (`secp256r1`, `secp384r1`, `secp521r1`).
    pub key_curve: Option<String>,
    /// Key size in bits.
    pub key_bits: u32,
    /// The signature algorithm (OpenSSL/cryptography name, e.g. `ecdsa-with-SHA256`).
    pub signature_algorithm: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// Whole days from notBefore to notAfter.
    pub lifetime_days: i64,
    /// Whole days until notAfter (negative once expired).
    pub days_left: i64,
    /// The fraction of the lifetime left (0 when expired, 1 when not yet valid).
    pub fraction_left: f64,
    /// `valid`, `invalid` or `not_validated`.
    pub validation: String,
    /// Why validation failed or was not done.
    pub validation_error: Option<String>,
    /// Whether a SAN covers the server name.
    pub hostname_matches: bool,
    /// Whether an OCSP response was stapled.
    pub ocsp_stapled: bool,
}

/// A profile rule the target breaks.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Finding {
    /// The criterion, named as in sslyze's Mozilla checker (`tls_versions`, `ciphers`,
    /// ...) or keyward's own (`certificate_expiry`, `tls13_missing`).
    pub criterion: String,
    /// What is wrong.
    pub message: String,
}

/// A scan judged against a profile.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The facts.
    #[serde(flatten)]
    pub scan: ScanResult,
    /// The profile applied.
    pub profile: String,
    /// Every rule broken.
    pub findings: Vec<Finding>,
    /// `compliant` or `not compliant`.
    pub verdict: String,
}

impl Report {
    /// Whether there are no findings.
    pub fn is_compliant(&self) -> bool {
        self.findings.is_empty()
    }

    /// The human-readable table.
    pub fn to_text(&self) -> String {
        let s = &self.scan;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Target        {} (server name {})",
            s.target, s.server_name
        );
        let _ = writeln!(out, "\nProtocol versions");
        for v in &s.versions {
            let _ = writeln!(
                out,
                "  {:<9} {}",
                v.version,
                if v.supported { "accepted" } else { "rejected" }
            );
        }
        let _ = writeln!(out, "\nCipher suites");
        for v in s.versions.iter().filter(|v| v.supported) {
            for c in &v.cipher_suites {
                let kx = c.key_exchange.as_ref().map_or(String::new(), |k| {
                    format!("{} {} {}", k.kind, k.group.as_deref().unwrap_or(""), k.bits)
                });
                let line = format!(
                    "  {:<8} {:<48} {:<5} {:<6} {:<22} {}",
                    v.version,
                    c.name,
                    if c.aead { "AEAD" } else { "-" },
                    if c.forward_secret { "FS" } else { "no-FS" },
                    kx,
                    c.weaknesses.join(",")
                );
                let _ = writeln!(out, "{}", line.trim_end());
            }
        }
        let names: Vec<_> = s.groups.iter().map(|g| g.name.as_str()).collect();
        let _ = writeln!(
            out,
            "\nGroups ({})   {}",
            s.groups_probed_with.as_deref().unwrap_or("none"),
            names.join(", ")
        );
        let _ = writeln!(out, "Client auth   {}", s.client_auth);
        if let Some(c) = &s.certificate {
            let _ = writeln!(
                out,
                "\nCertificate   ({}, chain of {})",
                c.source, c.chain_length
            );
            let subject = if c.subject.is_empty() {
                "(empty)"
            } else {
                &c.subject
            };
            let _ = writeln!(out, "  subject     {subject}");
            let _ = writeln!(out, "  issuer      {}", c.issuer);
            let mut sans = c.dns_names.clone();
            sans.extend(c.ip_addresses.iter().cloned());
            sans.extend(c.uris.iter().cloned());
            let _ = writeln!(out, "  names       {}", sans.join(", "));
            let curve = c
                .key_curve
                .as_deref()
                .map_or(String::new(), |k| format!(" {k}"));
            let _ = writeln!(
                out,
                "  key         {}{} {} bits",
                c.key_type, curve, c.key_bits
            );
            let _ = writeln!(out, "  signature   {}", c.signature_algorithm);
            #[expect(clippy::cast_precision_loss, reason = "hours, for display")]
            let hours = |secs: i64| secs as f64 / 3600.0;
            let life = c.not_after - c.not_before;
            let left = c.not_after - time::OffsetDateTime::now_utc().unix_timestamp();
            let _ = if life < 2 * 86_400 {
                writeln!(
                    out,
                    "  lifetime    {:.1} h, {:.1} h left ({:.0}%)",
                    hours(life),
                    hours(left),
                    c.fraction_left * 100.0
                )
            } else {
                writeln!(
                    out,
                    "  lifetime    {} days, {} days left ({:.0}%)",
                    c.lifetime_days,
                    c.days_left,
                    c.fraction_left * 100.0
                )
            };
            let why = c
                .validation_error
                .as_deref()
                .map_or(String::new(), |e| format!(": {e}"));
            let _ = writeln!(out, "  chain       {}{}", c.validation, why);
            let _ = writeln!(
                out,
                "  hostname    {}",
                if c.hostname_matches {
                    "matches"
                } else {
                    "does not match"
                }
            );
            let _ = writeln!(
                out,
                "  OCSP staple {}",
                if c.ocsp_stapled { "yes" } else { "no" }
            );
        } else {
            let why = s.certificate_error.as_deref().unwrap_or("");
            let _ = writeln!(out, "\nCertificate   none received: {why}");
        }
        let _ = writeln!(
            out,
            "\nProfile {}: {}",
            self.profile,
            self.verdict.to_uppercase()
        );
        for f in &self.findings {
            let _ = writeln!(out, "  * {}: {}", f.criterion, f.message);
        }
        out
    }
}
