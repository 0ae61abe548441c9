use super::*;
use crate::scan::report::{CertReport, GroupResult, KeyExchange, SuiteResult, VersionResult};

fn suite(name: &str, kx: Option<(&str, u32)>) -> SuiteResult {
    SuiteResult {
        id: "0x0000".into(),
        name: name.into(),
        aead: true,
        forward_secret: true,
        weaknesses: vec![],
        key_exchange: kx.map(|(kind, bits)| KeyExchange {
            kind: kind.into(),
            group: None,
            bits,
        }),
    }
}

fn group(name: &str, ec: bool) -> GroupResult {
    GroupResult {
        name: name.into(),
        id: 0,
        bits: 256,
        elliptic_curve: ec,
    }
}

/// What a fresh `keyward serve` looks like.
fn keyward_like() -> ScanResult {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let versions = ["SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]
        .iter()
        .map(|v| VersionResult {
            version: (*v).into(),
            supported: *v == "TLSv1.3",
            cipher_suites: if *v == "TLSv1.3" {
                TLS13_SUITES
                    .iter()
                    .map(|s| suite(s, Some(("ECDH", 256))))
                    .collect()
            } else {
                vec![]
            },
        })
        .collect();
    ScanResult {
        target: "localhost:1".into(),
        server_name: "localhost".into(),
        versions,
        groups: vec![
            group("X25519", true),
            group("secp256r1", true),
            group("secp384r1", true),
            group("X25519MLKEM768", false),
        ],
        groups_probed_with: Some("TLSv1.3".into()),
        certificate: Some(CertReport {
            source: "TLSv1.3 handshake".into(),
            chain_length: 2,
            subject: "CN=keyward".into(),
            issuer: "CN=keyward intermediate".into(),
            dns_names: vec!["localhost".into()],
            ip_addresses: vec![],
            uris: vec![],
            key_type: "ecdsa".into(),
            key_curve: Some("secp256r1".into()),
            key_bits: 256,
            signature_algorithm: "ecdsa-with-SHA256".into(),
            not_before: now - 3600,
            not_after: now + 23 * 3600,
            lifetime_days: 1,
            days_left: 0,
            fraction_left: 23.0 / 24.0,
            validation: "valid".into(),
            validation_error: None,
            hostname_matches: true,
            ocsp_stapled: false,
        }),
        certificate_error: None,
        incomplete: false,
        client_auth: "optional".into(),
        compression: None,
        fallback_scsv: None,
        extended_master_secret: None,
        secure_renegotiation: None,
        duration_ms: 1,
    }
}

fn criteria(p: Profile, scan: &ScanResult) -> Vec<String> {
    let mut c: Vec<String> = p.check(scan).into_iter().map(|f| f.criterion).collect();
    c.sort();
    c
}

#[test]
fn keyward_serve_is_compliant_everywhere() {
    let scan = keyward_like();
    for p in [Profile::Modern, Profile::Intermediate, Profile::Internal] {
        assert_eq!(p.check(&scan), vec![], "{p:?}");
    }
}

#[test]
fn a_weak_server_breaks_named_rules() {
    let mut scan = keyward_like();
    for v in &mut scan.versions {
        if v.version == "TLSv1" || v.version == "TLSv1.2" {
            v.supported = true;
            v.cipher_suites = vec![
                suite("TLS_RSA_WITH_AES_128_CBC_SHA", None),
                suite("TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", Some(("DH", 1024))),
                suite("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", Some(("ECDH", 256))),
            ];
        }
    }
    scan.groups.push(group("secp521r1", true));
    scan.groups.push(group("ffdhe2048", false));
    let cert = scan.certificate.as_mut().unwrap();
    cert.key_type = "rsa".into();
    cert.key_curve = None;
    cert.key_bits = 1024;
    cert.signature_algorithm = "sha1WithRSAEncryption".into();
    cert.lifetime_days = 400;
    assert_eq!(
        criteria(Profile::Intermediate, &scan),
        [
            "certificate_signatures",
            "ciphers",
            "dh_param_size",
            "maximum_certificate_lifespan",
            "rsa_key_size",
            "tls_curves",
            "tls_versions"
        ]
    );
    assert_eq!(
        criteria(Profile::Modern, &scan),
        [
            "certificate_signatures",
            "certificate_types",
            "ciphers",
            "maximum_certificate_lifespan",
            "tls_curves",
            "tls_versions"
        ]
    );
    let f = Profile::Intermediate.check(&scan);
    let versions = f.iter().find(|f| f.criterion == "tls_versions").unwrap();
    assert_eq!(
        versions.message,
        "TLS versions {'TLSv1'} are supported, but should be rejected."
    );
    // ffdhe2048 is not an elliptic curve: Mozilla's tls_curves (like sslyze) ignores it,
    // keyward's internal profile does not.
    let curves = f.iter().find(|f| f.criterion == "tls_curves").unwrap();
    assert!(!curves.message.contains("ffdhe"), "{}", curves.message);
    let internal = Profile::Internal.check(&scan);
    let curves = internal
        .iter()
        .find(|f| f.criterion == "tls_curves")
        .unwrap();
    assert!(curves.message.contains("ffdhe2048"), "{}", curves.message);
}

#[test]
fn internal_wants_tls13_a_valid_chain_and_lifetime_left() {
    let mut scan = keyward_like();
    let cert = scan.certificate.as_mut().unwrap();
    cert.fraction_left = 0.2;
    cert.validation = "not_validated".into();
    cert.validation_error = Some("no trust anchors given".into());
    cert.hostname_matches = false;
    for v in &mut scan.versions {
        v.supported = v.version == "TLSv1.2";
    }
    assert_eq!(
        criteria(Profile::Internal, &scan),
        [
            "certificate_expiry",
            "certificate_path_validation",
            "tls_versions"
        ]
    );
    // Mozilla's profiles do not ask for TLS 1.3 to be there, nor for lifetime left.
    assert_eq!(
        criteria(Profile::Intermediate, &scan),
        ["certificate_path_validation"]
    );
    let f = Profile::Internal.check(&scan);
    assert!(
        f.iter()
            .any(|f| f.message.contains("does not cover \"localhost\""))
    );
    assert!(
        f.iter()
            .any(|f| f.message.contains("TLSv1.3 is not supported"))
    );
}

#[test]
fn profiles_parse() {
    assert_eq!("modern".parse(), Ok(Profile::Modern));
    assert_eq!("internal".parse(), Ok(Profile::Internal));
    assert!("old".parse::<Profile>().is_err());
}

#[test]
fn an_incomplete_scan_is_never_compliant() {
    let mut scan = keyward_like();
    scan.incomplete = true;
    for p in [Profile::Modern, Profile::Intermediate, Profile::Internal] {
        assert_eq!(criteria(p, &scan), ["scan_incomplete"]);
    }
    scan.incomplete = false;
    scan.fallback_scsv = Some(false);
    scan.extended_master_secret = Some(false);
    assert_eq!(
        criteria(Profile::Intermediate, &scan),
        [
            "tls_vulnerability_extended_master_secret",
            "tls_vulnerability_fallback_scsv"
        ]
    );
    scan.fallback_scsv = None;
    scan.extended_master_secret = None;
    scan.certificate = None;
    scan.certificate_error = Some("TLS 1.3 handshake: boom".into());
    let f = Profile::Modern.check(&scan);
    assert_eq!(f.len(), 1);
    assert!(f[0].message.contains("boom"), "{}", f[0].message);
}
