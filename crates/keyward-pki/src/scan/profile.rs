//! The profiles a scan is judged against and the rules of each.
//!
//! `modern` and `intermediate` are Mozilla's Server Side TLS 5.7 configurations exactly as
//! sslyze 6 bundles them (`sslyze/mozilla_tls_profile/5.7.json`), and the checks mirror
//! sslyze's `tls_config_checker.py`: a version, suite or curve that is accepted but not in
//! the profile is a finding (one that is in the profile but not accepted is not); the leaf
//! key type and signature algorithm must be among the profile's; the chain must validate
//! (the host name included); the lifetime must not exceed the maximum; the smallest
//! (EC)DH key must reach the minimum. Findings carry sslyze's criterion names.
//!
//! `internal` is keyward's profile for its short-lived internal PKI: TLS 1.3 only (and
//! TLS 1.3 must be there), the three TLS 1.3 AEAD suites, groups X25519, P-256, P-384 and
//! X25519MLKEM768, an ECDSA P-256/P-384 leaf signed with ECDSA, a chain that validates for
//! the host name, and a certificate that is valid now with more than a third of its
//! lifetime left (keyward renews at two thirds). It asks for no OCSP or CRL.

use std::collections::BTreeSet;

use super::report::{Finding, Report, ScanResult};

/// A profile to judge a scan against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Mozilla modern (5.7).
    Modern,
    /// Mozilla intermediate (5.7).
    Intermediate,
    /// keyward's internal PKI profile.
    Internal,
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "modern" => Ok(Self::Modern),
            "intermediate" => Ok(Self::Intermediate),
            "internal" => Ok(Self::Internal),
            _ => Err(format!("{s:?}: use modern, intermediate or internal")),
        }
    }
}

/// What a profile allows.
struct Rules {
    tls_versions: &'static [&'static str],
    ciphersuites: &'static [&'static str],
    ciphers: &'static [&'static str],
    /// Allowed groups; `curves_only` limits the check to elliptic curves, as sslyze's
    /// curve probe sees only those.
    tls_curves: &'static [&'static str],
    curves_only: bool,
    certificate_types: &'static [&'static str],
    certificate_curves: &'static [&'static str],
    certificate_signatures: &'static [&'static str],
    rsa_key_size: Option<u32>,
    dh_param_size: Option<u32>,
    ecdh_param_size: u32,
    maximum_certificate_lifespan: Option<i64>,
    internal: bool,
}

const TLS13_SUITES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];
const ECDSA_SIGNATURES: &[&str] = &[
    "ecdsa-with-SHA256",
    "ecdsa-with-SHA384",
    "ecdsa-with-SHA512",
];

const MODERN: Rules = Rules {
    tls_versions: &["TLSv1.3"],
    ciphersuites: TLS13_SUITES,
    ciphers: &[],
    tls_curves: &["X25519", "secp256r1", "secp384r1"],
    curves_only: true,
    certificate_types: &["ecdsa"],
    certificate_curves: &["secp256r1", "secp384r1"],
    certificate_signatures: ECDSA_SIGNATURES,
    rsa_key_size: None,
    dh_param_size: None,
    ecdh_param_size: 256,
    maximum_certificate_lifespan: Some(90),
    internal: false,
};

const INTERMEDIATE: Rules = Rules {
    tls_versions: &["TLSv1.2", "TLSv1.3"],
    ciphersuites: TLS13_SUITES,
    ciphers: &[
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    ],
    tls_curves: &["X25519", "secp256r1", "secp384r1"],
    curves_only: true,
    certificate_types: &["ecdsa", "rsa"],
    certificate_curves: &["secp256r1", "secp384r1"],
    certificate_signatures: &[
        "sha256WithRSAEncryption",
        "ecdsa-with-SHA256",
        "ecdsa-with-SHA384",
        "ecdsa-with-SHA512",
    ],
    rsa_key_size: Some(2048),
    dh_param_size: Some(2048),
    ecdh_param_size: 256,
    maximum_certificate_lifespan: Some(366),
    internal: false,
};

const INTERNAL: Rules = Rules {
    tls_versions: &["TLSv1.3"],
    ciphersuites: TLS13_SUITES,
    ciphers: &[],
    tls_curves: &["X25519", "secp256r1", "secp384r1", "X25519MLKEM768"],
    curves_only: false,
    certificate_types: &["ecdsa"],
    certificate_curves: &["secp256r1", "secp384r1"],
    certificate_signatures: ECDSA_SIGNATURES,
    rsa_key_size: None,
    dh_param_size: None,
    ecdh_param_size: 256,
    maximum_certificate_lifespan: None,
    internal: true,
};

/// `{'a', 'b'}`, as sslyze prints a set.
fn set(items: &BTreeSet<&str>) -> String {
    let inner: Vec<String> = items.iter().map(|i| format!("'{i}'")).collect();
    format!("{{{}}}", inner.join(", "))
}

impl Profile {
    /// The profile's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Modern => "modern",
            Self::Intermediate => "intermediate",
            Self::Internal => "internal",
        }
    }

    fn rules(self) -> &'static Rules {
        match self {
            Self::Modern => &MODERN,
            Self::Intermediate => &INTERMEDIATE,
            Self::Internal => &INTERNAL,
        }
    }

    /// Every rule of the profile `scan` breaks, one finding per criterion.
    pub fn check(self, scan: &ScanResult) -> Vec<Finding> {
        let rules = self.rules();
        let mut out = Vec::new();
        let mut add = |criterion: &str, message: String| {
            out.push(Finding {
                criterion: criterion.to_owned(),
                message,
            });
        };

        if scan.incomplete {
            add(
                "scan_incomplete",
                "The scan ran out of time before every probe was done; the server may accept more than reported.".into(),
            );
        }

        // The certificate.
        match &scan.certificate {
            None => add(
                "certificate_path_validation",
                format!(
                    "No certificate was received: {}.",
                    scan.certificate_error.as_deref().unwrap_or("unknown")
                ),
            ),
            Some(c) => {
                if c.validation != "valid" {
                    let mut why = c.validation_error.clone().unwrap_or_default();
                    if !c.hostname_matches {
                        why.push_str(&format!(
                            "; the certificate does not cover {:?}",
                            scan.server_name
                        ));
                    }
                    add(
                        "certificate_path_validation",
                        format!(
                            "Certificate path validation failed for {}: {why}.",
                            c.subject
                        ),
                    );
                }
                if c.key_type == "ecdsa" {
                    let curve = c.key_curve.as_deref().unwrap_or("unknown");
                    if !rules.certificate_curves.contains(&curve) {
                        add(
                            "certificate_curves",
                            format!(
                                "Certificate curve is {curve}, should be one of {}.",
                                set(&rules.certificate_curves.iter().copied().collect())
                            ),
                        );
                    }
                }
                if c.key_type == "rsa" {
                    if let Some(min) = rules.rsa_key_size {
                        if c.key_bits < min {
                            add(
                                "rsa_key_size",
                                format!(
                                    "RSA key size is {}, minimum allowed is {min}.",
                                    c.key_bits
                                ),
                            );
                        }
                    }
                }
                if let Some(max) = rules.maximum_certificate_lifespan {
                    if c.lifetime_days > max {
                        add(
                            "maximum_certificate_lifespan",
                            format!(
                                "Certificate life span is {} days, should be less than {max}.",
                                c.lifetime_days
                            ),
                        );
                    }
                }
                if !rules.certificate_types.contains(&c.key_type.as_str()) {
                    add(
                        "certificate_types",
                        format!(
                            "Deployed certificate types are {}, should have at least one of {}.",
                            set(&[c.key_type.as_str()].into()),
                            set(&rules.certificate_types.iter().copied().collect())
                        ),
                    );
                }
                if !rules
                    .certificate_signatures
                    .contains(&c.signature_algorithm.as_str())
                {
                    add(
                        "certificate_signatures",
                        format!(
                            "Deployed certificate signatures are {}, should have at least one of {}.",
                            set(&[c.signature_algorithm.as_str()].into()),
                            set(&rules.certificate_signatures.iter().copied().collect())
                        ),
                    );
                }
                if rules.internal {
                    let now = time::OffsetDateTime::now_utc().unix_timestamp();
                    let problem = if now < c.not_before {
                        Some("The certificate is not valid yet.".to_owned())
                    } else if now >= c.not_after {
                        Some("The certificate has expired.".to_owned())
                    } else if c.fraction_left * 3.0 <= 1.0 {
                        Some(format!(
                            "Only {:.0}% of the certificate's lifetime is left, should be more than a third (renew at two thirds).",
                            c.fraction_left * 100.0
                        ))
                    } else {
                        None
                    };
                    if let Some(p) = problem {
                        add("certificate_expiry", p);
                    }
                }
            }
        }

        // Versions and suites.
        let supported: BTreeSet<&str> = scan.supported_versions().into_iter().collect();
        let bad: BTreeSet<&str> = supported
            .iter()
            .copied()
            .filter(|v| !rules.tls_versions.contains(v))
            .collect();
        let mut version_problems = Vec::new();
        if !bad.is_empty() {
            version_problems.push(format!(
                "TLS versions {} are supported, but should be rejected.",
                set(&bad)
            ));
        }
        if rules.internal && !supported.contains("TLSv1.3") {
            version_problems.push("TLSv1.3 is not supported, but is required.".to_owned());
        }
        if !version_problems.is_empty() {
            add("tls_versions", version_problems.join(" "));
        }
        let mut tls13 = BTreeSet::new();
        let mut legacy = BTreeSet::new();
        let mut smallest_ecdh = u32::MAX;
        let mut smallest_dh = u32::MAX;
        for v in scan.versions.iter().filter(|v| v.supported) {
            for s in &v.cipher_suites {
                if v.version == "TLSv1.3" {
                    tls13.insert(s.name.as_str());
                } else {
                    legacy.insert(s.name.as_str());
                }
                match &s.key_exchange {
                    Some(k) if k.kind == "ECDH" => smallest_ecdh = smallest_ecdh.min(k.bits),
                    Some(k) if k.kind == "DH" => smallest_dh = smallest_dh.min(k.bits),
                    _ => {}
                }
            }
        }
        let bad13: BTreeSet<&str> = tls13
            .into_iter()
            .filter(|s| !rules.ciphersuites.contains(s))
            .collect();
        if !bad13.is_empty() {
            add(
                "ciphersuites",
                format!(
                    "TLS 1.3 cipher suites {} are supported, but should be rejected.",
                    set(&bad13)
                ),
            );
        }
        let bad_legacy: BTreeSet<&str> = legacy
            .into_iter()
            .filter(|s| !rules.ciphers.contains(s))
            .collect();
        if !bad_legacy.is_empty() {
            add(
                "ciphers",
                format!(
                    "Cipher suites {} are supported, but should be rejected.",
                    set(&bad_legacy)
                ),
            );
        }
        if smallest_ecdh < rules.ecdh_param_size {
            add(
                "ecdh_param_size",
                format!(
                    "ECDH parameter size is {smallest_ecdh}, should be superior or equal to {}.",
                    rules.ecdh_param_size
                ),
            );
        }
        if let Some(min) = rules.dh_param_size {
            if smallest_dh < min {
                add(
                    "dh_param_size",
                    format!(
                        "DH parameter size is {smallest_dh}, should be superior or equal to {min}."
                    ),
                );
            }
        }

        // Groups.
        let bad_groups: BTreeSet<&str> = scan
            .groups
            .iter()
            .filter(|g| g.elliptic_curve || !rules.curves_only)
            .map(|g| g.name.as_str())
            .filter(|g| !rules.tls_curves.contains(g))
            .collect();
        if !bad_groups.is_empty() {
            add(
                "tls_curves",
                format!(
                    "TLS curves {} are supported, but should be rejected.",
                    set(&bad_groups)
                ),
            );
        }

        // The protocol weaknesses sslyze's checker also names, where the probes see them.
        if scan.compression == Some(true) {
            add(
                "tls_vulnerability_compression",
                "Server is vulnerable to TLS compression attacks.".into(),
            );
        }
        if scan.fallback_scsv == Some(false) {
            add(
                "tls_vulnerability_fallback_scsv",
                "Server is vulnerable to TLS downgrade attacks because it does not support the TLS_FALLBACK_SCSV mechanism.".into(),
            );
        }
        if scan.secure_renegotiation == Some(false) {
            add(
                "tls_vulnerability_renegotiation",
                "Server is vulnerable to the insecure renegotiation attack.".into(),
            );
        }
        if scan.extended_master_secret == Some(false) {
            add(
                "tls_vulnerability_extended_master_secret",
                "Server does not support the Extended Master Secret TLS extension.".into(),
            );
        }
        out
    }

    /// The report of `scan` against this profile.
    pub fn judge(self, scan: ScanResult) -> Report {
        let findings = self.check(&scan);
        let verdict = if findings.is_empty() {
            "compliant"
        } else {
            "not compliant"
        };
        Report {
            scan,
            profile: self.name().to_owned(),
            findings,
            verdict: verdict.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests;
