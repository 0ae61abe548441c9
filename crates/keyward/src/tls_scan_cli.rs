//! `keyward tls scan`: checks the flags, runs the scan (keyward_pki::scan) and prints the
//! table or the JSON document; the exit code is the verdict.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use keyward_pki::scan::{Profile, ScanError, ScanOptions};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::cli::ScanArgs;
use crate::files::CliError;

/// Exit code when the target cannot be scanned.
const EXIT_UNREACHABLE: u8 = 2;

/// Splits HOST:PORT (`[v6]:port` too).
fn parse_target(target: &str) -> Result<(String, u16), String> {
    let bad = || format!("{target:?} is not HOST:PORT");
    let (host, port) = target.rsplit_once(':').ok_or_else(bad)?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']').ok_or_else(bad)?,
        None if host.contains(':') => return Err(bad()),
        None => host,
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

fn certs(path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, CliError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect)
        .map_err(|e| CliError::usage(format!("invalid setting {flag}: {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(CliError::usage(format!(
            "invalid setting {flag}: no certificate in {}",
            path.display()
        )));
    }
    Ok(certs)
}

/// Validates every flag into the scan's options, before any connection.
fn options(args: &ScanArgs) -> Result<(ScanOptions, Profile), CliError> {
    let (host, port) = parse_target(&args.target)
        .map_err(|e| CliError::usage(format!("invalid setting HOST:PORT: {e}")))?;
    let profile: Profile = args
        .profile
        .parse()
        .map_err(|e| CliError::usage(format!("invalid setting --profile: {e}")))?;
    if let Some(sni) = &args.sni {
        ServerName::try_from(sni.as_str()).map_err(|_| {
            CliError::usage(format!(
                "invalid setting --sni: {sni:?} is not a DNS name or IP address"
            ))
        })?;
    }
    if !(1..=60).contains(&args.timeout) {
        return Err(CliError::usage(
            "invalid setting --timeout: use 1 to 60 seconds",
        ));
    }
    let roots = match &args.ca {
        Some(path) => certs(path, "--ca")?,
        None => Vec::new(),
    };
    let client_identity = client_identity(args.client_cert.as_deref(), args.client_key.as_deref())?;
    Ok((
        ScanOptions {
            host,
            port,
            sni: args.sni.clone(),
            roots,
            client_identity,
            timeout: Duration::from_secs(args.timeout),
        },
        profile,
    ))
}

pub(crate) fn scan(args: &ScanArgs) -> Result<(), CliError> {
    let (options, profile) = options(args)?;
    let result = match keyward_pki::scan::scan(&options) {
        Ok(result) => result,
        Err(e @ (ScanError::Connect { .. } | ScanError::NoTls(_))) => {
            eprintln!("keyward: {e}");
            return Err(CliError::exit(EXIT_UNREACHABLE));
        }
        Err(e) => return Err(CliError::failed(e.to_string())),
    };
    let report = profile.judge(result);
    let out = if args.json {
        let mut json = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::failed(format!("JSON: {e}")))?;
        json.push('\n');
        json
    } else {
        report.to_text()
    };
    // A closed pipe (`| head`) is not the scan's failure; the exit code still tells.
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    if report.is_compliant() {
        Ok(())
    } else {
        Err(CliError::exit(1))
    }
}

/// A client certificate chain and its key from PEM files (both or neither), checked to
/// belong together.
pub(crate) fn client_identity(
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, CliError> {
    match (cert, key) {
        (Some(cert), Some(key)) => {
            let chain = certs(cert, "--client-cert")?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                CliError::usage(format!(
                    "invalid setting --client-key: {}: {e}",
                    key.display()
                ))
            })?;
            keyward_pki::tls::certified_key(chain.clone(), &key)
                .map_err(|e| CliError::usage(format!("invalid setting --client-key: {e}")))?;
            Ok(Some((chain, key)))
        }
        (None, None) => Ok(None),
        (Some(_), None) => Err(CliError::usage(
            "invalid setting --client-key: --client-cert needs it",
        )),
        (None, Some(_)) => Err(CliError::usage(
            "invalid setting --client-cert: --client-key needs it",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(
            parse_target("localhost:8443"),
            Ok(("localhost".into(), 8443))
        );
        assert_eq!(parse_target("[::1]:443"), Ok(("::1".into(), 443)));
        for bad in [
            "localhost",
            "::1:443",
            ":443",
            "host:0",
            "host:x",
            "[::1:443",
        ] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }
}
