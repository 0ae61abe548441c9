//! A closed-loop load generator for data-key operations over HTTPS: keyward's AWS KMS API
//! (SigV4-signed per request, as an AWS SDK does) or OpenBao's Transit engine (token header),
//! so both are driven by the same code over the same TLS 1.3 + HTTP/1.1 keep-alive transport.
//!
//! ```text
//! kms_load --target keyward|openbao --url https://127.0.0.1:PORT [--url ...] --ca CA.pem --key KEY
//!          --op generate-data-key|decrypt [--conns N] [--seconds S] [--warmup S]
//! ```
//! `--url` may be repeated (several servers behind one CA, e.g. keyward nodes on one
//! PostgreSQL database): connection i goes to URL i mod (number of URLs), round-robin.
//! keyward reads AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; OpenBao reads BAO_TOKEN.
//! Prints one line: `target=… op=… conns=… ops_per_s=… p50_us=… p99_us=… errors=…`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};

#[derive(Clone, Copy, PartialEq)]
enum Target {
    Keyward,
    OpenBao,
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    GenerateDataKey,
    Decrypt,
}

#[derive(Clone)]
struct Config {
    target: Target,
    op: Op,
    host: String,
    port: u16,
    /// Every `--url` as (host, port); connection i uses `urls[i % urls.len()]`.
    urls: Vec<(String, u16)>,
    key: String,
    conns: usize,
    seconds: f64,
    warmup: f64,
    /// `None`: plain HTTP (only against keyward's benchmark listener).
    tls: Option<Arc<rustls::ClientConfig>>,
    access_key: String,
    secret: String,
    token: String,
}

fn usage(msg: &str) -> ! {
    eprintln!("kms_load: {msg}");
    std::process::exit(64)
}

fn parse() -> Config {
    let mut args = std::env::args().skip(1);
    let (mut target, mut op, mut ca, mut key) = (None, None, None, None);
    let mut urls = Vec::new();
    let (mut conns, mut seconds, mut warmup) = (1usize, 10.0f64, 2.0f64);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--target" => {
                target = Some(match value.as_str() {
                    "keyward" => Target::Keyward,
                    "openbao" => Target::OpenBao,
                    _ => usage("--target is keyward or openbao"),
                })
            }
            "--op" => {
                op = Some(match value.as_str() {
                    "generate-data-key" => Op::GenerateDataKey,
                    "decrypt" => Op::Decrypt,
                    _ => usage("--op is generate-data-key or decrypt"),
                })
            }
            "--url" => urls.push(value),
            "--ca" => ca = Some(value),
            "--key" => key = Some(value),
            "--conns" => conns = value.parse().unwrap_or_else(|_| usage("bad --conns")),
            "--seconds" => seconds = value.parse().unwrap_or_else(|_| usage("bad --seconds")),
            "--warmup" => warmup = value.parse().unwrap_or_else(|_| usage("bad --warmup")),
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    if urls.is_empty() {
        usage("--url is required");
    }
    let split = |url: &str| -> (bool, String, u16) {
        let (plain, authority) = match url.strip_prefix("https://") {
            Some(a) => (false, a),
            None => (
                true,
                url.strip_prefix("http://").unwrap_or_else(|| {
                    usage("--url must be https://HOST:PORT or http://HOST:PORT")
                }),
            ),
        };
        let authority = authority.trim_end_matches('/');
        let (host, port) = authority
            .rsplit_once(':')
            .unwrap_or_else(|| usage("--url needs a port"));
        let port = port.parse().unwrap_or_else(|_| usage("bad port in --url"));
        (plain, host.to_owned(), port)
    };
    let parsed: Vec<_> = urls.iter().map(|u| split(u)).collect();
    let plain = parsed[0].0;
    if parsed.iter().any(|(p, _, _)| *p != plain) {
        usage("every --url must use the same scheme");
    }
    let urls: Vec<(String, u16)> = parsed.into_iter().map(|(_, h, p)| (h, p)).collect();
    let (host, port) = urls[0].clone();
    let mut roots = rustls::RootCertStore::empty();
    if !plain {
        let ca = ca.unwrap_or_else(|| usage("--ca is required"));
        for cert in
            CertificateDer::pem_file_iter(&ca).unwrap_or_else(|e| usage(&format!("{ca}: {e}")))
        {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    Config {
        target: target.unwrap_or_else(|| usage("--target is required")),
        op: op.unwrap_or_else(|| usage("--op is required")),
        host,
        port,
        urls,
        key: key.unwrap_or_else(|| usage("--key is required")),
        conns,
        seconds,
        warmup,
        tls: (!plain).then(|| Arc::new(tls)),
        access_key: env("AWS_ACCESS_KEY_ID"),
        secret: env("AWS_SECRET_ACCESS_KEY"),
        token: env("BAO_TOKEN"),
    }
}

async fn connect(cfg: &Config) -> SendRequest<Full<Bytes>> {
    let tcp = tokio::net::TcpStream::connect((cfg.host.as_str(), cfg.port))
        .await
        .expect("connect");
    tcp.set_nodelay(true).unwrap();
    let Some(tls) = &cfg.tls else {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        return sender;
    };
    let name = ServerName::try_from(cfg.host.clone()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// The request for one operation, built (and for keyward signed) afresh each time.
fn request(cfg: &Config, ciphertext: &str) -> hyper::Request<Full<Bytes>> {
    let authority = format!("{}:{}", cfg.host, cfg.port);
    match cfg.target {
        Target::Keyward => {
            let (operation, body) = match cfg.op {
                Op::GenerateDataKey => (
                    "GenerateDataKey",
                    json!({ "KeyId": cfg.key, "KeySpec": "AES_256" }),
                ),
                Op::Decrypt => (
                    "Decrypt",
                    json!({ "KeyId": cfg.key, "CiphertextBlob": ciphertext }),
                ),
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            keyward_server::sigv4::kms_request(
                &authority,
                operation,
                body.to_string(),
                &cfg.access_key,
                &cfg.secret,
                "us-east-1",
                now,
            )
            .unwrap()
        }
        Target::OpenBao => {
            let (path, body) = match cfg.op {
                Op::GenerateDataKey => (
                    format!("/v1/transit/datakey/plaintext/{}", cfg.key),
                    json!({ "bits": 256 }),
                ),
                Op::Decrypt => (
                    format!("/v1/transit/decrypt/{}", cfg.key),
                    json!({ "ciphertext": ciphertext }),
                ),
            };
            hyper::Request::post(path)
                .header("host", authority)
                .header("content-type", "application/json")
                .header("x-vault-token", &cfg.token)
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap()
        }
    }
}

async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    req: hyper::Request<Full<Bytes>>,
) -> (bool, Bytes) {
    sender.ready().await.expect("connection closed");
    let response = sender.send_request(req).await.expect("request failed");
    let ok = response.status().is_success();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (ok, body)
}

/// A ciphertext to decrypt, made by one data-key request.
async fn ciphertext(cfg: &Config) -> String {
    let generate = Config {
        op: Op::GenerateDataKey,
        ..cfg.clone()
    };
    let mut sender = connect(&generate).await;
    let (ok, body) = send(&mut sender, request(&generate, "")).await;
    let value: Value = serde_json::from_slice(&body).unwrap();
    assert!(ok, "setup request refused: {value}");
    match cfg.target {
        Target::Keyward => value["CiphertextBlob"].as_str().unwrap().to_owned(),
        Target::OpenBao => value["data"]["ciphertext"].as_str().unwrap().to_owned(),
    }
}

fn main() {
    let cfg = parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let cfg = Arc::new(cfg);
        let ct: Arc<str> = match cfg.op {
            Op::Decrypt => ciphertext(&cfg).await.into(),
            Op::GenerateDataKey => "".into(),
        };
        let start = Instant::now();
        let measure_from = start + Duration::from_secs_f64(cfg.warmup);
        let end = measure_from + Duration::from_secs_f64(cfg.seconds);
        let mut tasks = Vec::new();
        for i in 0..cfg.conns {
            let (host, port) = cfg.urls[i % cfg.urls.len()].clone();
            let cfg = Arc::new(Config {
                host,
                port,
                ..(*cfg).clone()
            });
            let ct = ct.clone();
            tasks.push(tokio::spawn(async move {
                let mut sender = connect(&cfg).await;
                let (mut latencies, mut errors, mut first_error) = (Vec::new(), 0u64, None);
                loop {
                    let req = request(&cfg, &ct);
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    let (ok, body) = send(&mut sender, req).await;
                    if t0 >= measure_from {
                        latencies.push(t0.elapsed().as_micros() as u64);
                        if !ok {
                            errors += 1;
                            first_error.get_or_insert(body);
                        }
                    }
                }
                (latencies, errors, first_error)
            }));
        }
        let (mut all, mut errors) = (Vec::new(), 0);
        for task in tasks {
            let (latencies, e, first) = task.await.unwrap();
            all.extend(latencies);
            errors += e;
            if let Some(body) = first {
                eprintln!(
                    "kms_load: error response: {}",
                    String::from_utf8_lossy(&body)
                );
            }
        }
        all.sort_unstable();
        let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
        println!(
            "target={} op={} conns={} ops={} ops_per_s={:.0} p50_us={} p99_us={} errors={}",
            match cfg.target {
                Target::Keyward => "keyward",
                Target::OpenBao => "openbao",
            },
            match cfg.op {
                Op::GenerateDataKey => "generate-data-key",
                Op::Decrypt => "decrypt",
            },
            cfg.conns,
            all.len(),
            all.len() as f64 / cfg.seconds,
            pct(0.50),
            pct(0.99),
            errors
        );
    });
}
