//! `keyward ca ...` and `keyward cert ...`: the internal CA of a data directory (whoever
//! can open the data directory and its root key is its administrator), and the renewal
//! client any service runs with its own certificate.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use keyward_pki::expiry::{self, Standing};
use keyward_pki::{CertInfo, LeafRequest, SpiffeId};
use keyward_server::pki::{self, StoredCa};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;

use crate::access_key::kms;
use crate::cli::{CaCommand, CertCommand, DataDirArgs, NameArgs, parse_ttl};
use crate::files::{CliError, write_atomic};
use crate::serve::{data_dir, database_url, failed, open_kms};

fn server_error(what: &str) -> impl Fn(keyward_server::ServerError) -> CliError + '_ {
    move |e| CliError::failed(format!("{what}: {e}"))
}

fn load_ca(kms: &keyward_kms::Kms) -> Result<StoredCa, CliError> {
    pki::load(kms)
        .map_err(server_error("reading the CA"))?
        .ok_or_else(|| CliError::failed("there is no CA here yet: run `keyward ca init`"))
}

pub(crate) fn ca(command: &CaCommand) -> Result<(), CliError> {
    match command {
        CaCommand::Init {
            trust_domain,
            algorithm,
            max_ttl,
            dir,
        } => {
            let alg = algorithm
                .parse()
                .map_err(|e| CliError::usage(format!("invalid setting --algorithm: {e}")))?;
            keyward_pki::spiffe::check_trust_domain(trust_domain)
                .map_err(|e| CliError::usage(format!("invalid setting --trust-domain: {e}")))?;
            let max_ttl = parse_ttl(max_ttl)
                .map_err(|e| CliError::usage(format!("invalid setting --max-ttl: {e}")))?;
            let path = data_dir(dir.data_dir.as_deref()).ok_or_else(|| {
                CliError::usage("invalid setting data_dir: set --data-dir or KEYWARD_DATA_DIR")
            })?;
            std::fs::create_dir_all(&path).map_err(|e| failed("data directory")(&e))?;
            let database = database_url(dir.database_url.as_deref())?;
            let kms = open_kms(&path, database.as_ref(), keyward_kms::KmsConfig::default())?;
            let stored = pki::init(&kms, trust_domain, alg, max_ttl).map_err(|e| match e {
                keyward_server::ServerError::Store(keyward_store::StoreError::AlreadyExists) => {
                    CliError::failed("this data directory already has a CA")
                }
                e => server_error("making the CA")(e),
            })?;
            print_ca(&stored);
        }
        CaCommand::Show { dir } => print_ca(&load_ca(&kms(dir)?)?),
        CaCommand::ExportRoot { out, dir } => {
            let stored = load_ca(&kms(dir)?)?;
            let (cert, key) = pki::export_root(&stored).map_err(server_error("export"))?;
            if out.exists() {
                return Err(CliError::usage(format!(
                    "invalid setting --out: {} exists",
                    out.display()
                )));
            }
            let mut both = zeroize::Zeroizing::new(cert);
            both.push_str(&key);
            write_atomic(out, both.as_bytes(), 0o600)?;
            eprintln!(
                "keyward: root certificate and key written to {}",
                out.display()
            );
        }
        CaCommand::RemoveRoot { exported, dir } => {
            let kms = kms(dir)?;
            let stored = load_ca(&kms)?;
            let key = PrivateKeyDer::from_pem_file(exported)
                .map_err(|e| CliError::usage(format!("invalid setting --exported: {e}")))?;
            let cert = CertificateDer::pem_file_iter(exported)
                .ok()
                .and_then(|mut i| i.next())
                .and_then(Result::ok)
                .ok_or_else(|| CliError::usage("invalid setting --exported: no certificate"))?;
            let matches = cert == stored.ca.root.cert
                && keyward_pki::tls::certified_key(vec![cert], &key).is_ok();
            if !matches {
                return Err(CliError::usage(
                    "invalid setting --exported: it does not hold this CA's root key",
                ));
            }
            pki::remove_root_key(&kms, &stored).map_err(server_error("removing the root key"))?;
            eprintln!("keyward: the root key is no longer on this service");
        }
    }
    Ok(())
}

fn print_ca(stored: &StoredCa) {
    let ca = &stored.ca;
    println!("trust domain: {}", ca.trust_domain);
    for (name, cert) in [("root", &ca.root), ("intermediate", &ca.intermediate)] {
        if let Ok(info) = CertInfo::parse(&cert.cert) {
            println!(
                "{name}: serial {} valid until {} (key {})",
                info.serial_hex(),
                date(info.not_after),
                if cert.key_pkcs8().is_some() {
                    "here"
                } else {
                    "offline"
                }
            );
        }
    }
    println!("longest lifetime issued: {}", stored.max_ttl);
}

fn date(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

fn leaf_request(names: &NameArgs) -> Result<LeafRequest, CliError> {
    let ttl = parse_ttl(&names.ttl)
        .map_err(|e| CliError::usage(format!("invalid setting --ttl: {e}")))?;
    let spiffe_id = names
        .spiffe_id
        .as_deref()
        .map(SpiffeId::parse)
        .transpose()
        .map_err(|e| CliError::usage(format!("invalid setting --spiffe-id: {e}")))?;
    let mut req = LeafRequest::new(spiffe_id, OffsetDateTime::now_utc(), ttl);
    req.dns = names.dns.clone();
    req.ips = names.ip.clone();
    Ok(req)
}

fn issue_error(e: pki::IssueError) -> CliError {
    match e {
        pki::IssueError::Refused(e) => CliError::usage(format!("refused: {e}")),
        pki::IssueError::Server(e) => server_error("issuing")(e),
    }
}

pub(crate) fn cert(command: &CertCommand) -> Result<(), CliError> {
    match command {
        CertCommand::Issue { names, out, dir } => {
            let req = leaf_request(names)?;
            if req.spiffe_id.is_none() && req.dns.is_empty() && req.ips.is_empty() {
                return Err(CliError::usage(
                    "invalid setting --spiffe-id: give a SPIFFE ID, --dns or --ip",
                ));
            }
            let kms = kms(dir)?;
            let stored = load_ca(&kms)?;
            let key = keyward_pki::ca::generate_key(keyward_pki::KeyAlgorithm::P256)
                .map_err(|e| CliError::failed(e.to_string()))?;
            let issued = pki::issue(&kms, &stored, &*key, &req).map_err(issue_error)?;
            std::fs::create_dir_all(out).map_err(|e| failed("--out")(&e))?;
            write_atomic(
                &out.join("key.pem"),
                keyward_pki::ca::key_pem(&key).as_bytes(),
                0o600,
            )?;
            write_atomic(
                &out.join("cert.pem"),
                pki::chain_pem(&stored, &issued.cert).as_bytes(),
                0o644,
            )?;
            write_atomic(&out.join("ca.pem"), stored.ca.root.pem().as_bytes(), 0o644)?;
            println!("{}", issued.info.serial_hex());
        }
        CertCommand::Sign {
            csr,
            names,
            out,
            dir,
        } => {
            let req = leaf_request(names)?;
            let csr = std::fs::read_to_string(csr)
                .map_err(|e| CliError::usage(format!("invalid setting --csr: {e}")))?;
            let kms = kms(dir)?;
            let stored = load_ca(&kms)?;
            let issued = pki::sign_csr(&kms, &stored, &csr, &req).map_err(issue_error)?;
            write_atomic(out, pki::chain_pem(&stored, &issued.cert).as_bytes(), 0o644)?;
            println!("{}", issued.info.serial_hex());
        }
        CertCommand::Revoke { serial, dir } => {
            let kms = kms(dir)?;
            pki::revoke(&kms, serial).map_err(|e| match e {
                keyward_server::ServerError::Store(keyward_store::StoreError::NotFound) => {
                    CliError::failed(format!("no certificate with serial {serial}"))
                }
                keyward_server::ServerError::Store(keyward_store::StoreError::AlreadyExists) => {
                    CliError::failed(format!("{serial} was already revoked"))
                }
                e => server_error("revoking")(e),
            })?;
            eprintln!("keyward: revoked {serial}");
        }
        CertCommand::List { dir } => list(dir)?,
        CertCommand::Check { cert } => return check(cert),
        CertCommand::Renew {
            cert,
            key,
            ca,
            server,
            daemon,
            exec,
            signal,
        } => {
            let renewer = Renewer::new(cert, key, ca, server, exec.clone(), signal.clone())?;
            if *daemon {
                renewer.run_forever()?;
            } else {
                renewer.renew_once()?;
            }
        }
    }
    Ok(())
}

fn list(dir: &DataDirArgs) -> Result<(), CliError> {
    let kms = kms(dir)?;
    let mut after: Option<String> = None;
    loop {
        let page = kms
            .store()
            .certificates(after.as_deref(), 500)
            .map_err(|e| failed("listing")(&e))?;
        for c in &page {
            let state = match c.revoked_at {
                Some(at) => format!("revoked {}", date(at)),
                None => format!("valid until {}", date(c.not_after)),
            };
            println!("{}  {}  {}", c.serial, c.subject, state);
        }
        match page.last() {
            Some(last) if page.len() == 500 => after = Some(last.serial.clone()),
            _ => return Ok(()),
        }
    }
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CliError> {
    let chain: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?
        .collect();
    let chain = chain.map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?;
    if chain.is_empty() {
        return Err(CliError::usage(format!(
            "{}: no certificate in it",
            path.display()
        )));
    }
    Ok(chain)
}

fn check(path: &Path) -> Result<(), CliError> {
    let chain = read_chain(path)?;
    let info = CertInfo::parse(&chain[0]).map_err(|e| CliError::usage(e.to_string()))?;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let who = info.principal().unwrap_or_else(|| info.serial_hex());
    match expiry::standing(info.not_before, info.not_after, now) {
        Standing::Fine => {
            println!(
                "{who}: valid until {} ({}s left)",
                date(info.not_after),
                info.not_after - now
            );
            Ok(())
        }
        Standing::Warning { seconds_left, .. } => {
            println!(
                "{who}: expires {} ({seconds_left}s left): renew it",
                date(info.not_after)
            );
            Err(CliError::exit(1))
        }
        Standing::Expired => {
            println!("{who}: expired {}", date(info.not_after));
            Err(CliError::exit(2))
        }
        Standing::NotYetValid => {
            println!("{who}: not valid before {}", date(info.not_before));
            Err(CliError::exit(2))
        }
    }
}

/// Renews a certificate with the service over mTLS.
struct Renewer<'a> {
    cert: &'a Path,
    key: &'a Path,
    roots: Vec<CertificateDer<'static>>,
    host: String,
    port: u16,
    exec: Option<String>,
    signal: Option<(i32, String)>,
}

impl<'a> Renewer<'a> {
    fn new(
        cert: &'a Path,
        key: &'a Path,
        ca: &Path,
        server: &str,
        exec: Option<String>,
        signal: Option<String>,
    ) -> Result<Self, CliError> {
        let authority = server
            .strip_prefix("https://")
            .ok_or_else(|| CliError::usage("invalid setting --server: https://HOST:PORT"))?
            .trim_end_matches('/');
        let (host, port) = authority
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(['[', ']']).to_owned(), p.parse().ok()?)))
            .ok_or_else(|| CliError::usage("invalid setting --server: https://HOST:PORT"))?;
        let signal = signal
            .map(|s| {
                let (pid, sig) = s.split_once(':').unwrap_or((&s, "HUP"));
                pid.parse::<i32>()
                    .ok()
                    .filter(|p| *p > 0)
                    .map(|p| (p, sig.to_owned()))
                    .ok_or_else(|| CliError::usage("invalid setting --signal: PID or PID:SIGNAL"))
            })
            .transpose()?;
        Ok(Self {
            cert,
            key,
            roots: read_chain(ca)?,
            host,
            port,
            exec,
            signal,
        })
    }

    fn current(&self) -> Result<(Vec<CertificateDer<'static>>, CertInfo), CliError> {
        let chain = read_chain(self.cert)?;
        let info = CertInfo::parse(&chain[0]).map_err(|e| CliError::usage(e.to_string()))?;
        Ok((chain, info))
    }

    /// One renewal: a new key, a CSR, the service's answer checked, then the key and the
    /// certificate replaced (each atomically; the key first), then the hooks.
    fn renew_once(&self) -> Result<CertInfo, CliError> {
        let (chain, old) = self.current()?;
        let key = PrivateKeyDer::from_pem_file(self.key)
            .map_err(|e| CliError::usage(format!("invalid setting --key: {e}")))?;
        let tls = keyward_pki::tls::client_config(&self.roots, Some((chain, key)))
            .map_err(|e| CliError::failed(e.to_string()))?;
        let new_key = keyward_pki::ca::generate_key(keyward_pki::KeyAlgorithm::P256)
            .map_err(|e| CliError::failed(e.to_string()))?;
        let csr =
            keyward_pki::ca::csr_pem(&new_key).map_err(|e| CliError::failed(e.to_string()))?;
        let (status, body) = self.post(Arc::new(tls), "/v1/pki/renew", csr)?;
        if status != 200 {
            return Err(CliError::failed(format!(
                "the service refused the renewal ({status}): {}",
                String::from_utf8_lossy(&body)
            )));
        }
        let new_chain: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&body).collect();
        let new_chain = new_chain
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| CliError::failed("the service sent no certificate"))?;
        let info = CertInfo::parse(&new_chain[0]).map_err(|e| CliError::failed(e.to_string()))?;
        // Before anything is replaced: same identity, a valid chain, our new key.
        if info.spiffe_id != old.spiffe_id {
            return Err(CliError::failed(
                "the renewed certificate names someone else",
            ));
        }
        keyward_pki::tls::check_client_certificate(&new_chain, &self.roots)
            .map_err(|e| CliError::failed(format!("the renewed certificate: {e}")))?;
        if info.spki != rcgen::PublicKeyData::subject_public_key_info(&*new_key) {
            return Err(CliError::failed(
                "the renewed certificate is not for our key",
            ));
        }
        write_atomic(
            self.key,
            keyward_pki::ca::key_pem(&new_key).as_bytes(),
            0o600,
        )?;
        write_atomic(self.cert, String::from_utf8_lossy(&body).as_bytes(), 0o644)?;
        eprintln!(
            "keyward: renewed {} (serial {}, valid until {})",
            info.principal().unwrap_or_default(),
            info.serial_hex(),
            date(info.not_after)
        );
        self.hooks();
        Ok(info)
    }

    fn hooks(&self) {
        if let Some(cmd) = &self.exec {
            match std::process::Command::new("sh").args(["-c", cmd]).status() {
                Ok(s) if s.success() => {}
                Ok(s) => eprintln!("keyward: --exec exited with {s}"),
                Err(e) => eprintln!("keyward: --exec: {e}"),
            }
        }
        if let Some((pid, sig)) = &self.signal {
            let sent = std::process::Command::new("kill")
                .args([&format!("-{sig}"), &pid.to_string()])
                .status();
            if !sent.is_ok_and(|s| s.success()) {
                eprintln!("keyward: could not send SIG{sig} to {pid}");
            }
        }
    }

    fn run_forever(&self) -> Result<(), CliError> {
        loop {
            let (_, info) = self.current()?;
            let at = expiry::renew_at(info.not_before, info.not_after, expiry::random_jitter());
            let now = OffsetDateTime::now_utc().unix_timestamp();
            if at > now {
                std::thread::sleep(Duration::from_secs((at - now) as u64));
            }
            // Retry until it works or the certificate expires (then there is no way back).
            let mut wait = 1u64;
            while let Err(e) = self.renew_once() {
                let now = OffsetDateTime::now_utc().unix_timestamp();
                if now >= info.not_after {
                    return Err(CliError::failed(format!(
                        "the certificate expired before it could be renewed: {e}"
                    )));
                }
                eprintln!("keyward: renewal failed, retrying in {wait}s: {e}");
                std::thread::sleep(Duration::from_secs(wait));
                wait = (wait * 2).min(((info.not_after - now) / 10).max(1) as u64);
            }
        }
    }

    fn post(
        &self,
        tls: Arc<rustls::ClientConfig>,
        path: &str,
        body: String,
    ) -> Result<(u16, Bytes), CliError> {
        let io = |e: &dyn std::fmt::Display| {
            CliError::failed(format!("{}:{}: {e}", self.host, self.port))
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| io(&e))?;
        let request = hyper::Request::post(path)
            .header("host", format!("{}:{}", self.host, self.port))
            .header("content-type", "application/x-pem-file")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| io(&e))?;
        runtime
            .block_on(crate::https::send(
                &self.host,
                self.port,
                tls,
                request,
                Duration::from_secs(30),
            ))
            .map_err(|e| io(&e))
    }
}
