//! The internal PKI end to end: `keyward ca` and `keyward cert` on a data directory, mutual
//! TLS against `keyward serve`, revocation, and renewal across short certificate lifetimes.
//! Clients are curl (OpenSSL) and a rustls client written here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::start_with;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn kw(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn issue(dir: &Path, id: &str, ttl: &str, out: &Path) -> String {
    ok(&kw(
        &[
            "cert",
            "issue",
            "--spiffe-id",
            id,
            "--ttl",
            ttl,
            "--out",
            out.to_str().unwrap(),
        ],
        dir,
    ))
}

fn check(cert: &Path) -> Option<i32> {
    Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["cert", "check", "--cert"])
        .arg(cert)
        .output()
        .unwrap()
        .status
        .code()
}

#[test]
fn ca_and_cert_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let p = |n: &str| tmp.path().join(n);
    let init = |extra: &[&str]| {
        let mut args = vec![
            "ca",
            "init",
            "--trust-domain",
            "pay.example",
            "--algorithm",
            "p384",
        ];
        args.extend_from_slice(extra);
        kw(&args, &dir)
    };
    assert_eq!(
        kw(&["ca", "init", "--trust-domain", "Bad Domain"], &dir)
            .status
            .code(),
        Some(64)
    );
    let shown = ok(&init(&["--max-ttl", "30d"]));
    assert!(shown.contains("trust domain: pay.example"), "{shown}");
    assert!(!init(&[]).status.success(), "a second CA");

    // An SVID: one URI SAN, CA false, both EKUs; the key private.
    let serial = issue(
        &dir,
        "spiffe://pay.example/ns/prod/sa/api",
        "24h",
        &p("api"),
    );
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(p("api/cert.pem"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    for expect in [
        "URI:spiffe://pay.example/ns/prod/sa/api",
        "CA:FALSE",
        "TLS Web Server Authentication, TLS Web Client Authentication",
        "Digital Signature",
        "ecdsa-with-SHA384",
    ] {
        assert!(text.contains(expect), "{expect} missing:\n{text}");
    }
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(p("api/key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0);
    let verify = Command::new("openssl")
        .args(["verify", "-purpose", "sslclient", "-CAfile"])
        .arg(p("api/ca.pem"))
        .arg("-untrusted")
        .arg(p("api/cert.pem"))
        .arg(p("api/cert.pem"))
        .output()
        .unwrap();
    assert!(verify.status.success(), "{verify:?}");

    // Refusals: another trust domain, a root path, a lifetime over the maximum.
    for (id, ttl) in [
        ("spiffe://other.example/x", "1h"),
        ("spiffe://pay.example", "1h"),
        ("spiffe://pay.example/x", "31d"),
    ] {
        let out = kw(
            &[
                "cert",
                "issue",
                "--spiffe-id",
                id,
                "--ttl",
                ttl,
                "--out",
                p("x").to_str().unwrap(),
            ],
            &dir,
        );
        assert_eq!(out.status.code(), Some(64), "{id} {ttl}");
    }

    // A CSR: only its key is used; its SPIFFE ID when no name is given.
    let key = keyward_pki::ca::generate_key(keyward_pki::KeyAlgorithm::P256).unwrap();
    std::fs::write(p("req.csr"), keyward_pki::ca::csr_pem(&key).unwrap()).unwrap();
    let signed = kw(
        &[
            "cert",
            "sign",
            "--csr",
            p("req.csr").to_str().unwrap(),
            "--spiffe-id",
            "spiffe://pay.example/batch",
            "--out",
            p("batch.pem").to_str().unwrap(),
        ],
        &dir,
    );
    ok(&signed);
    let info = keyward_pki::CertInfo::parse(&read_chain(&p("batch.pem"))[0]).unwrap();
    assert_eq!(
        info.spiffe_id.unwrap().as_str(),
        "spiffe://pay.example/batch"
    );
    assert_eq!(
        info.spki,
        rcgen::PublicKeyData::subject_public_key_info(&*key)
    );

    // check: 0 fine, 1 in the warning window (the last third), 2 expired.
    assert_eq!(check(&p("api/cert.pem")), Some(0));
    issue(&dir, "spiffe://pay.example/short", "20s", &p("short"));
    assert_eq!(check(&p("short/cert.pem")), Some(1));
    issue(&dir, "spiffe://pay.example/gone", "1s", &p("gone"));
    wait_until_expired(&p("gone/cert.pem"));
    assert_eq!(check(&p("gone/cert.pem")), Some(2));

    // list and revoke.
    let list = ok(&kw(&["cert", "list"], &dir));
    assert!(list.contains(&serial) && list.contains("spiffe://pay.example/ns/prod/sa/api"));
    ok(&kw(&["cert", "revoke", &serial], &dir));
    assert!(!kw(&["cert", "revoke", &serial], &dir).status.success());
    assert!(!kw(&["cert", "revoke", "abcdef"], &dir).status.success());
    assert!(ok(&kw(&["cert", "list"], &dir)).contains("revoked"));

    // The root goes offline: exported (0600), checked, removed; issuing goes on.
    ok(&kw(
        &[
            "ca",
            "export-root",
            "--out",
            p("root.pem").to_str().unwrap(),
        ],
        &dir,
    ));
    let mode = std::fs::metadata(p("root.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0);
    let wrong = kw(
        &[
            "ca",
            "remove-root",
            "--exported",
            p("api/key.pem").to_str().unwrap(),
        ],
        &dir,
    );
    assert_eq!(wrong.status.code(), Some(64));
    ok(&kw(
        &[
            "ca",
            "remove-root",
            "--exported",
            p("root.pem").to_str().unwrap(),
        ],
        &dir,
    ));
    let shown = ok(&kw(&["ca", "show"], &dir));
    assert!(
        shown.contains("root: serial") && shown.contains("(key offline)"),
        "{shown}"
    );
    let db = std::fs::read(dir.join("keyward.db")).unwrap();
    assert!(!String::from_utf8_lossy(&db).contains("PRIVATE KEY"));
    issue(&dir, "spiffe://pay.example/after", "1h", &p("after"));
}

/// Certificate times have whole seconds and "expired" means past `not_after`: wait until
/// the certificate is more than a second past it.
fn wait_until_expired(cert: &Path) {
    let info = keyward_pki::CertInfo::parse(&read_chain(cert)[0]).unwrap();
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        if now > info.not_after + 1 {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn read_chain(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// curl with a client certificate (or none) against `url`; `None` if the TLS layer refused.
fn curl(url: &str, ca: &Path, client: Option<&Path>) -> Option<String> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail-with-body", "--max-time", "10", "--cacert"])
        .arg(ca);
    if let Some(dir) = client {
        cmd.arg("--cert").arg(dir.join("cert.pem"));
        cmd.arg("--key").arg(dir.join("key.pem"));
    }
    let out = cmd.arg(url).output().unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn mutual_tls_identities_and_refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let p = |n: &str| tmp.path().join(n);
    ok(&kw(&["ca", "init", "--trust-domain", "pay.example"], &dir));
    let server = start_with(&dir, &["--client-auth", "required"]);
    let base = format!("https://127.0.0.1:{}", server.port());
    let ca = dir.join("ca.pem");
    let whoami = format!("{base}/v1/pki/whoami");

    let serial = issue(&dir, "spiffe://pay.example/ns/prod/sa/api", "1h", &p("api"));
    let me = curl(&whoami, &ca, Some(&p("api"))).expect("a valid SVID is accepted");
    let me: serde_json::Value = serde_json::from_str(&me).unwrap();
    assert_eq!(me["principal"], "spiffe://pay.example/ns/prod/sa/api");
    assert_eq!(me["serial"], serial.as_str());

    // The identity is a principal for the KMS API without SigV4.
    let random = Command::new("curl")
        .args(["-sS", "--fail-with-body", "--cacert"])
        .arg(&ca)
        .arg("--cert")
        .arg(p("api/cert.pem"))
        .arg("--key")
        .arg(p("api/key.pem"))
        .args(["-H", "x-amz-target: TrentService.GenerateRandom"])
        .args(["-H", "content-type: application/x-amz-json-1.1"])
        .args(["-d", r#"{"NumberOfBytes": 16}"#, &format!("{base}/")])
        .output()
        .unwrap();
    assert!(ok(&random).contains("Plaintext"));

    // Refused: no certificate, an expired one, one from another CA, a revoked one.
    assert_eq!(curl(&whoami, &ca, None), None, "no certificate");
    issue(&dir, "spiffe://pay.example/old", "1s", &p("old"));
    wait_until_expired(&p("old/cert.pem"));
    assert_eq!(curl(&whoami, &ca, Some(&p("old"))), None, "expired");
    let other = tmp.path().join("other");
    ok(&kw(
        &["ca", "init", "--trust-domain", "pay.example"],
        &other,
    ));
    issue(
        &other,
        "spiffe://pay.example/ns/prod/sa/api",
        "1h",
        &p("forged"),
    );
    assert_eq!(curl(&whoami, &ca, Some(&p("forged"))), None, "another CA");
    ok(&kw(&["cert", "revoke", &serial], &dir));
    let deadline = Instant::now() + keyward_server::tls::CHECK_EVERY * 3;
    while curl(&whoami, &ca, Some(&p("api"))).is_some() {
        assert!(Instant::now() < deadline, "revocation not picked up");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Others still work; renewal gives the same identity and lifetime for a new key, and
    // refuses a revoked identity.
    issue(&dir, "spiffe://pay.example/ns/prod/sa/web", "1h", &p("web"));
    assert!(curl(&whoami, &ca, Some(&p("web"))).is_some());
    let info =
        |d: &str| keyward_pki::CertInfo::parse(&read_chain(&p(d).join("cert.pem"))[0]).unwrap();
    let before = info("web");
    let renew = |d: &str| {
        Command::new(env!("CARGO_BIN_EXE_keyward"))
            .args(["cert", "renew", "--cert"])
            .arg(p(d).join("cert.pem"))
            .arg("--key")
            .arg(p(d).join("key.pem"))
            .arg("--ca")
            .arg(&ca)
            .args(["--server", &base])
            .output()
            .unwrap()
    };
    ok(&renew("web"));
    let after = info("web");
    assert_ne!(after.serial, before.serial);
    assert_ne!(after.spki, before.spki, "a new key");
    assert_eq!(after.spiffe_id, before.spiffe_id);
    assert_eq!(after.lifetime(), before.lifetime());
    assert!(curl(&whoami, &ca, Some(&p("web"))).is_some());
    let refused = renew("api");
    assert!(!refused.status.success());
    // The renewal is in the audit log, with the identity that asked for it. The query
    // reads the database copy, which follows the file within milliseconds.
    let deadline = Instant::now() + Duration::from_secs(5);
    let renewals = loop {
        let out = Command::new(env!("CARGO_BIN_EXE_keyward"))
            .args([
                "audit",
                "query",
                "--operation",
                "RenewCertificate",
                "--data-dir",
            ])
            .arg(&dir)
            .output()
            .unwrap();
        let renewals: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if !renewals.is_empty() || Instant::now() > deadline {
            break renewals;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(renewals.len(), 1, "{renewals:?}");
    assert_eq!(
        renewals[0]["principal"],
        "spiffe://pay.example/ns/prod/sa/web"
    );
    assert_eq!(renewals[0]["outcome"], "allowed");
}

/// One whoami over a new connection with `config` (whose session cache may resume): how
/// the handshake went, the server certificate's serial, and the answer.
fn whoami_over(
    port: u16,
    config: &Arc<rustls::ClientConfig>,
) -> Result<(rustls::HandshakeKind, String, serde_json::Value), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|x| e(&x))?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let tls = tokio_rustls::TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await
            .map_err(|x| e(&x))?;
        let kind = tls.get_ref().1.handshake_kind().unwrap();
        let server_cert = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        let server_serial = keyward_pki::CertInfo::parse(&server_cert)
            .unwrap()
            .serial_hex();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|x| e(&x))?;
        tokio::spawn(conn);
        let req = hyper::Request::get("/v1/pki/whoami")
            .header("host", format!("127.0.0.1:{port}"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.map_err(|x| e(&x))?;
        // Reading the body also brings in the session tickets sent after the handshake.
        let status = resp.status();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map_err(|x| e(&x))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
        }
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|x| e(&x))?;
        Ok((kind, server_serial, v))
    })
}

/// One request over a fresh mTLS connection: loads the client certificate and key (again
/// if they are caught between renewal's two renames), asks whoami, and reports the
/// server certificate's serial and ours.
fn request(
    port: u16,
    roots: &[CertificateDer<'static>],
    dir: &Path,
) -> Result<(String, String), String> {
    let (chain, key) = loop {
        let chain = read_chain(&dir.join("cert.pem"));
        let key = PrivateKeyDer::from_pem_file(dir.join("key.pem")).unwrap();
        if keyward_pki::tls::certified_key(chain.clone(), &key).is_ok() {
            break (chain, key);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let config = Arc::new(keyward_pki::tls::client_config(roots, Some((chain, key))).unwrap());
    let (_, server_serial, v) = whoami_over(port, &config)?;
    Ok((server_serial, v["serial"].as_str().unwrap_or("").to_owned()))
}

/// With 2-minute certificates on both sides, the server renewing its own and a client
/// running `keyward cert renew --daemon`, a continuous stream of requests sees several
/// renewals of each and no failure.
#[test]
fn renewal_keeps_requests_flowing_across_two_minute_lifetimes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let client = tmp.path().join("client");
    ok(&kw(&["ca", "init", "--trust-domain", "pay.example"], &dir));
    let server = start_with(
        &dir,
        &["--client-auth", "required", "--server-cert-ttl", "2m"],
    );
    let port = server.port();
    issue(
        &dir,
        "spiffe://pay.example/ns/prod/sa/worker",
        "2m",
        &client,
    );
    let roots = read_chain(&dir.join("ca.pem"));
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["cert", "renew", "--daemon", "--cert"])
        .arg(client.join("cert.pem"))
        .arg("--key")
        .arg(client.join("key.pem"))
        .arg("--ca")
        .arg(dir.join("ca.pem"))
        .args(["--server", &format!("https://127.0.0.1:{port}")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    let run_for = Duration::from_secs(250);
    let start = Instant::now();
    let (mut ok_count, mut failures) = (0u64, Vec::new());
    let mut server_serials = std::collections::BTreeSet::new();
    let mut client_serials = std::collections::BTreeSet::new();
    while start.elapsed() < run_for {
        match request(port, &roots, &client) {
            Ok((s, c)) => {
                ok_count += 1;
                server_serials.insert(s);
                client_serials.insert(c);
            }
            Err(e) => failures.push(format!("{:?}: {e}", start.elapsed())),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    eprintln!(
        "{ok_count} requests; server certificates {}, client certificates {}",
        server_serials.len(),
        client_serials.len()
    );
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(
        server_serials.len() >= 3,
        "server renewals: {server_serials:?}"
    );
    assert!(
        client_serials.len() >= 3,
        "client renewals: {client_serials:?}"
    );
}

fn whoami_with(
    port: u16,
    config: &Arc<rustls::ClientConfig>,
) -> Result<rustls::HandshakeKind, String> {
    whoami_over(port, config).map(|(kind, _, _)| kind)
}

/// A client that resumed sessions before a revocation cannot resume (or connect) after
/// the server picked the revocation up.
#[test]
fn no_session_resumption_after_a_revocation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let p = |n: &str| tmp.path().join(n);
    ok(&kw(&["ca", "init", "--trust-domain", "pay.example"], &dir));
    let server = start_with(&dir, &["--client-auth", "required"]);
    let port = server.port();
    let serial = issue(&dir, "spiffe://pay.example/resumer", "1h", &p("r"));
    let roots = read_chain(&dir.join("ca.pem"));
    let chain = read_chain(&p("r/cert.pem"));
    let key = PrivateKeyDer::from_pem_file(p("r/key.pem")).unwrap();
    let config = Arc::new(keyward_pki::tls::client_config(&roots, Some((chain, key))).unwrap());
    assert_eq!(whoami_with(port, &config), Ok(rustls::HandshakeKind::Full));
    assert_eq!(
        whoami_with(port, &config),
        Ok(rustls::HandshakeKind::Resumed)
    );
    ok(&kw(&["cert", "revoke", &serial], &dir));
    std::thread::sleep(keyward_server::tls::CHECK_EVERY * 2 + Duration::from_millis(500));
    let after = whoami_with(port, &config);
    assert!(
        after.is_err(),
        "still served after the revocation: {after:?}"
    );
}

/// With `--rate-limit`, a principal over its rate gets ThrottlingException; another
/// principal is not affected.
#[test]
fn rate_limits_throttle_each_principal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let p = |n: &str| tmp.path().join(n);
    ok(&kw(&["ca", "init", "--trust-domain", "pay.example"], &dir));
    // One request every 2 s, bursts of one: 12 quick calls cannot all pass.
    let server = start_with(&dir, &["--rate-limit", "0.5"]);
    let url = format!("https://127.0.0.1:{}/", server.port());
    issue(&dir, "spiffe://pay.example/busy", "1h", &p("busy"));
    issue(&dir, "spiffe://pay.example/calm", "1h", &p("calm"));
    let call = |who: &str| {
        let out = Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(dir.join("ca.pem"))
            .arg("--cert")
            .arg(p(who).join("cert.pem"))
            .arg("--key")
            .arg(p(who).join("key.pem"))
            .args(["-H", "x-amz-target: TrentService.GenerateRandom"])
            .args(["-H", "content-type: application/x-amz-json-1.1"])
            .args(["-d", r#"{"NumberOfBytes": 8}"#, &url])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let answers: Vec<String> = (0..12).map(|_| call("busy")).collect();
    let throttled = answers
        .iter()
        .filter(|a| a.contains("ThrottlingException"))
        .count();
    let served = answers.iter().filter(|a| a.contains("Plaintext")).count();
    assert_eq!(throttled + served, 12, "{answers:?}");
    assert!(
        served >= 1 && throttled >= 4,
        "served {served}, throttled {throttled}"
    );
    assert!(call("calm").contains("Plaintext"));
    // /metrics counts them.
    let metrics = curl(&format!("{url}metrics"), &dir.join("ca.pem"), None).unwrap();
    for line in [
        format!(
            "keyward_requests_total{{operation=\"GenerateRandom\",outcome=\"throttled\"}} {throttled}"
        ),
        format!(
            "keyward_requests_total{{operation=\"GenerateRandom\",outcome=\"ok\"}} {}",
            served + 1
        ),
        format!("keyward_throttled_requests_total {throttled}"),
        "keyward_certificate_expiry_seconds{certificate=\"server\"}".to_owned(),
    ] {
        assert!(metrics.contains(&line), "{line} missing:\n{metrics}");
    }
}
