//! `keyward tls scan` against a fresh `keyward serve`: TLS 1.3 only, the three TLS 1.3
//! suites, its groups, an ECDSA P-256 leaf that validates to the data directory's CA;
//! compliant with Mozilla modern and keyward's internal profile, not with anything when
//! the chain cannot be validated; exit 2 for a port with nothing listening, 64 for a bad
//! flag (named), a client certificate presented to a server that requires one, and the
//! internal profile refusing a certificate with too little of its lifetime left.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn scan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["tls", "scan"])
        .args(args)
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn names(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn scans_keyward_serve() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = common::start(&data);
    let target = format!("localhost:{}", server.port());
    let ca = data.join("ca.pem");
    let ca = ca.to_str().unwrap();

    for profile in ["modern", "internal", "intermediate"] {
        let started = Instant::now();
        let out = scan(&[&target, "--ca", ca, "--profile", profile, "--json"]);
        assert!(started.elapsed() < Duration::from_secs(20));
        let report = json(&out);
        assert_eq!(out.status.code(), Some(0), "{profile}: {report:#}");
        assert_eq!(report["verdict"], "compliant");
        assert_eq!(report["findings"], serde_json::json!([]));
        assert_eq!(report["profile"], profile);
        let versions = report["versions"].as_array().unwrap();
        let supported: Vec<_> = versions
            .iter()
            .filter(|v| v["supported"] == true)
            .map(|v| v["version"].as_str().unwrap())
            .collect();
        assert_eq!(supported, ["TLSv1.3"]);
        let mut suites = names(&versions[4]["cipher_suites"]);
        suites.sort();
        assert_eq!(
            suites,
            [
                "TLS_AES_128_GCM_SHA256",
                "TLS_AES_256_GCM_SHA384",
                "TLS_CHACHA20_POLY1305_SHA256"
            ]
        );
        let mut groups = names(&report["groups"]);
        groups.sort();
        assert_eq!(
            groups,
            ["X25519", "X25519MLKEM768", "secp256r1", "secp384r1"]
        );
        let cert = &report["certificate"];
        assert_eq!(cert["key_type"], "ecdsa");
        assert_eq!(cert["key_curve"], "secp256r1");
        assert_eq!(cert["signature_algorithm"], "ecdsa-with-SHA256");
        assert_eq!(cert["validation"], "valid");
        assert_eq!(cert["hostname_matches"], true);
        assert_eq!(cert["source"], "TLSv1.3 handshake");
        assert_eq!(report["client_auth"], "optional");
    }

    // By IP address: the IP SAN matches, no SNI is sent.
    let by_ip = format!("127.0.0.1:{}", server.port());
    let out = scan(&[&by_ip, "--ca", ca, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{:#}", json(&out));

    // The table is the default.
    let out = scan(&[&target, "--ca", ca]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("TLSv1.3   accepted") && text.contains("Profile modern: COMPLIANT"));

    // Without trust anchors, or for a name the certificate does not cover: not compliant,
    // and the finding says why.
    for (args, why) in [
        (vec![target.as_str()], "no trust anchors given"),
        (
            vec![by_ip.as_str(), "--ca", ca, "--sni", "wrong.example"],
            "does not cover \"wrong.example\"",
        ),
    ] {
        let mut args = args.clone();
        args.push("--json");
        let out = scan(&args);
        let report = json(&out);
        assert_eq!(out.status.code(), Some(1), "{report:#}");
        let findings = report["findings"].as_array().unwrap();
        assert_eq!(findings.len(), 1, "{report:#}");
        assert_eq!(findings[0]["criterion"], "certificate_path_validation");
        assert!(
            findings[0]["message"].as_str().unwrap().contains(why),
            "{report:#}"
        );
    }
}

#[test]
fn client_certificate_for_a_server_that_requires_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = common::start_with(&data, &["--client-auth", "required"]);
    let target = format!("localhost:{}", server.port());
    let ca = data.join("ca.pem");
    let ca = ca.to_str().unwrap();
    let out = scan(&[&target, "--ca", ca, "--json"]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["client_auth"], "required");

    let dir = tmp.path().join("client");
    let issued = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args([
            "cert",
            "issue",
            "--spiffe-id",
            "spiffe://keyward.internal/scanner",
        ])
        .arg("--out")
        .arg(&dir)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );
    let p = |n: &str| dir.join(n).to_str().unwrap().to_owned();
    let out = scan(&[
        &target,
        "--ca",
        ca,
        "--client-cert",
        &p("cert.pem"),
        "--client-key",
        &p("key.pem"),
        "--json",
    ]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["client_auth"], "requested");
}

#[test]
fn refusals() {
    // Nothing listening: exit 2.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = scan(&[&format!("127.0.0.1:{port}")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));

    // Something listening that speaks no TLS and closes: exit 2.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
        }
    });
    let out = scan(&[&addr.to_string(), "--timeout", "2"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Hostile servers: one that accepts and never answers, one that dribbles a byte at a
    // time, one that sends endless garbage records. Each probe is cut off at its
    // deadline, so the whole scan stays within a few timeouts, and the verdict is exit 2.
    for behaviour in ["stall", "dribble", "flood"] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                std::thread::spawn(move || {
                    use std::io::Write as _;
                    let end = Instant::now() + Duration::from_secs(8);
                    let mut first = true;
                    while Instant::now() < end {
                        let sent = match behaviour {
                            "stall" => Ok(()),
                            // A record header promising 16 KiB, then one byte every 100 ms.
                            "dribble" if first => conn.write_all(&[22, 3, 3, 0x40, 0]),
                            "dribble" => conn.write_all(&[2]),
                            // Endless ChangeCipherSpec records.
                            _ => conn.write_all(&[20, 3, 3, 0, 1, 1].repeat(1000)),
                        };
                        if sent.is_err() {
                            break;
                        }
                        first = false;
                        std::thread::sleep(Duration::from_millis(100));
                    }
                });
            }
        });
        let started = Instant::now();
        let out = scan(&[&addr.to_string(), "--timeout", "1"]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{behaviour}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "{behaviour}: took {:?}",
            started.elapsed()
        );
    }

    // Bad flags: exit 64 naming the flag, before any connection.
    let missing = Path::new("/nonexistent/ca.pem").to_str().unwrap();
    for (args, flag) in [
        (vec!["localhost:1", "--profile", "old"], "--profile"),
        (vec!["localhost"], "HOST:PORT"),
        (vec!["localhost:1", "--ca", missing], "--ca"),
        (vec!["localhost:1", "--timeout", "0"], "--timeout"),
        (vec!["localhost:1", "--sni", "not a name"], "--sni"),
        (
            vec!["localhost:1", "--client-cert", missing],
            "--client-key",
        ),
        (vec!["localhost:1", "--bogus"], "--bogus"),
    ] {
        let out = scan(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?}: {err}");
    }
}

/// A certificate with a sixth of its lifetime left: fine for Mozilla modern, not for
/// keyward's internal profile, which wants more than a third left.
#[test]
fn internal_wants_a_third_of_the_lifetime_left() {
    use keyward_pki::ca::{self, Ca, KeyAlgorithm, LeafRequest};
    use time::{Duration as Span, OffsetDateTime};

    let tmp = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let ca = Ca::init("scan.test", KeyAlgorithm::P256, now).unwrap();
    let key = ca::generate_key(KeyAlgorithm::P256).unwrap();
    let mut req = LeafRequest::new(None, now, Span::hours(4));
    req.not_before = now - Span::hours(20);
    req.dns = vec!["localhost".into()];
    let issued = ca.issue(&*key, &req).unwrap();
    let p = |n: &str| tmp.path().join(n).to_str().unwrap().to_owned();
    std::fs::write(
        p("cert.pem"),
        ca::pem(&issued.cert) + &ca::pem(&ca.intermediate.cert),
    )
    .unwrap();
    std::fs::write(p("key.pem"), ca::key_pem(&key).as_bytes()).unwrap();
    std::fs::write(p("ca.pem"), ca.root.pem()).unwrap();
    let server = common::start_with(
        &tmp.path().join("data"),
        &["--tls-cert", &p("cert.pem"), "--tls-key", &p("key.pem")],
    );
    let target = format!("localhost:{}", server.port());

    let out = scan(&[
        &target,
        "--ca",
        &p("ca.pem"),
        "--profile",
        "internal",
        "--json",
    ]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{report:#}");
    assert_eq!(findings[0]["criterion"], "certificate_expiry");
    assert!(report["certificate"]["fraction_left"].as_f64().unwrap() < 0.2);

    let out = scan(&[
        &target,
        "--ca",
        &p("ca.pem"),
        "--profile",
        "modern",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{:#}", json(&out));
}
