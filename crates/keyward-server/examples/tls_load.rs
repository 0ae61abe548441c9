//! A TLS load generator for any HTTPS server (keyward's listener, nginx): full or resumed
//! TLS 1.3 handshakes per second, or bulk download throughput.
//!
//! ```text
//! tls_load --url https://127.0.0.1:PORT --ca CA.pem --mode full|resumed|bulk
//!          [--path /bench/bytes/0] [--conns 16] [--seconds 10]
//! ```
//! Handshakes: each loop connects, completes a TLS 1.3 handshake (X25519 and ECDSA, as
//! every server here offers), sends `GET <path>` on HTTP/1.1, reads the answer (so session
//! tickets are in) and closes. `full` never resumes; `resumed` shares one session cache
//! (warmed first) and counts handshakes that did not resume. `bulk` keeps one connection
//! per loop and downloads `<path>` again and again.
//! Prints one line: `mode=… conns=… per_s=… mb_per_s=… not_resumed=… errors=…`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use rustls::client::Resumption;
use rustls::crypto::aws_lc_rs::{self, kx_group};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Full,
    Resumed,
    Bulk,
}

fn usage(msg: &str) -> ! {
    eprintln!("tls_load: {msg}");
    std::process::exit(64)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut url, mut ca, mut mode) = (None, None, None);
    let (mut path, mut conns, mut seconds) = ("/bench/bytes/0".to_owned(), 16usize, 10.0f64);
    while let Some(flag) = args.next() {
        let v = args.next().unwrap_or_else(|| usage("missing value"));
        match flag.as_str() {
            "--url" => url = Some(v),
            "--ca" => ca = Some(v),
            "--mode" => {
                mode = Some(match v.as_str() {
                    "full" => Mode::Full,
                    "resumed" => Mode::Resumed,
                    "bulk" => Mode::Bulk,
                    _ => usage("--mode full|resumed|bulk"),
                })
            }
            "--path" => path = v,
            "--conns" => conns = v.parse().unwrap_or_else(|_| usage("bad --conns")),
            "--seconds" => seconds = v.parse().unwrap_or_else(|_| usage("bad --seconds")),
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    let url = url.unwrap_or_else(|| usage("--url"));
    let authority = url
        .strip_prefix("https://")
        .unwrap_or_else(|| usage("--url https://HOST:PORT"))
        .to_owned();
    let (host, port) = authority.rsplit_once(':').unwrap_or_else(|| usage("port"));
    let (host, port): (String, u16) = (host.to_owned(), port.parse().unwrap());
    let mode = mode.unwrap_or_else(|| usage("--mode"));
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca.unwrap_or_else(|| usage("--ca"))).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        kx_groups: vec![kx_group::X25519],
        ..aws_lc_rs::default_provider()
    });
    let config = move || {
        let mut c = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        c.resumption = match mode {
            Mode::Resumed => Resumption::in_memory_sessions(4 * conns),
            _ => Resumption::disabled(),
        };
        Arc::new(c)
    };
    let shared = config();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (done, bytes, not_resumed, errors) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    runtime.block_on(async {
        if mode == Mode::Resumed {
            // Warm the cache: one full handshake per loop's worth of tickets.
            for _ in 0..conns {
                let _ = once(&host, port, &shared, &path).await;
            }
        }
        let end = Instant::now() + Duration::from_secs_f64(seconds);
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (host, path, shared) = (host.clone(), path.clone(), shared.clone());
            let (done, bytes, not_resumed, errors) = (
                done.clone(),
                bytes.clone(),
                not_resumed.clone(),
                errors.clone(),
            );
            tasks.push(tokio::spawn(async move {
                if mode == Mode::Bulk {
                    match bulk(&host, port, &shared, &path, end, &done, &bytes).await {
                        Ok(()) => {}
                        Err(e) => {
                            eprintln!("tls_load: {e}");
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    return;
                }
                while Instant::now() < end {
                    match once(&host, port, &shared, &path).await {
                        Ok((kind, n)) => {
                            done.fetch_add(1, Ordering::Relaxed);
                            bytes.fetch_add(n, Ordering::Relaxed);
                            if kind != rustls::HandshakeKind::Resumed {
                                not_resumed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(e) => {
                            if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                                eprintln!("tls_load: {e}");
                            }
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let n = done.load(Ordering::Relaxed);
    println!(
        "mode={} conns={conns} per_s={:.0} mb_per_s={:.1} not_resumed={} errors={}",
        format!("{mode:?}").to_lowercase(),
        n as f64 / seconds,
        bytes.load(Ordering::Relaxed) as f64 / seconds / 1e6,
        if mode == Mode::Resumed {
            not_resumed.load(Ordering::Relaxed)
        } else {
            0
        },
        errors.load(Ordering::Relaxed)
    );
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(
    host: &str,
    port: u16,
    config: &Arc<rustls::ClientConfig>,
) -> Result<(Sender, rustls::HandshakeKind), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|x| e(&x))?;
    tcp.set_nodelay(true).map_err(|x| e(&x))?;
    let name = ServerName::try_from(host.to_owned()).map_err(|x| e(&x))?;
    let tls = tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .map_err(|x| e(&x))?;
    let kind = tls
        .get_ref()
        .1
        .handshake_kind()
        .unwrap_or(rustls::HandshakeKind::Full);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|x| e(&x))?;
    tokio::spawn(conn);
    Ok((sender, kind))
}

async fn get(sender: &mut Sender, host: &str, port: u16, path: &str) -> Result<u64, String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    sender.ready().await.map_err(|x| e(&x))?;
    let req = hyper::Request::get(path)
        .header("host", format!("{host}:{port}"))
        .body(Empty::<Bytes>::new())
        .map_err(|x| e(&x))?;
    let resp = sender.send_request(req).await.map_err(|x| e(&x))?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    let mut body = resp.into_body();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.map_err(|x| e(&x))?.into_data() {
            n += data.len() as u64;
        }
    }
    Ok(n)
}

async fn once(
    host: &str,
    port: u16,
    config: &Arc<rustls::ClientConfig>,
    path: &str,
) -> Result<(rustls::HandshakeKind, u64), String> {
    let (mut sender, kind) = connect(host, port, config).await?;
    let n = get(&mut sender, host, port, path).await?;
    Ok((kind, n))
}

async fn bulk(
    host: &str,
    port: u16,
    config: &Arc<rustls::ClientConfig>,
    path: &str,
    end: Instant,
    done: &AtomicU64,
    bytes: &AtomicU64,
) -> Result<(), String> {
    let (mut sender, _) = connect(host, port, config).await?;
    while Instant::now() < end {
        let n = get(&mut sender, host, port, path).await?;
        done.fetch_add(1, Ordering::Relaxed);
        bytes.fetch_add(n, Ordering::Relaxed);
    }
    Ok(())
}
