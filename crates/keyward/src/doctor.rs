//! `keyward doctor`: a running deployment against the production checklist. Each item
//! is printed with PASS or FAIL and, when it fails, how to fix it; the exit code is 1 if
//! any item failed.
//!
//! Over the network: the seal (provider and state), the listener's TLS versions (probed
//! with the scanner), the certificates' expiry, and the audit log's health. From the
//! data directory (or its PostgreSQL database): the audit log's verification, rotation
//! on customer keys, and the last backup's age.

use std::time::Duration;

use keyward_pki::expiry::{self, Standing};
use keyward_store::{KeyState, Store};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde_json::Value;

use crate::cli::DoctorArgs;
use crate::files::CliError;
use crate::kms_client::Endpoint;

/// CA certificates this close to expiry fail the check.
const CA_MARGIN: i64 = 30 * 86_400;

struct Report {
    failed: usize,
    total: usize,
}

impl Report {
    fn item(&mut self, name: &str, result: Result<String, (String, String)>) {
        self.total += 1;
        match result {
            Ok(detail) => println!("PASS  {name:<13} {detail}"),
            Err((detail, fix)) => {
                self.failed += 1;
                println!("FAIL  {name:<13} {detail}\n      {:<13} fix: {fix}", "");
            }
        }
    }
}

fn fail<T>(detail: impl Into<String>, fix: impl Into<String>) -> Result<T, (String, String)> {
    Err((detail.into(), fix.into()))
}

pub(crate) fn run(args: &DoctorArgs) -> Result<(), CliError> {
    let endpoint = crate::operator::endpoint(&args.endpoint)?;
    let mut report = Report {
        failed: 0,
        total: 0,
    };
    let status = get_json(&endpoint, "/v1/sys/seal-status");
    report.item("seal", seal(&status));
    report.item("tls", tls(&endpoint, args));
    let metrics = get(&endpoint, "/metrics").map(|(_, body)| body);
    report.item("certificates", certificates(&endpoint, args, &metrics));
    let store = crate::serve::data_dir(args.dir.data_dir.as_deref())
        .ok_or_else(|| "no data directory: pass --data-dir".to_owned())
        .and_then(|dir| {
            let database = crate::serve::database_url(args.dir.database_url.as_deref())
                .map_err(|e| e.to_string())?;
            if database.is_none() && !dir.join("keyward.db").exists() {
                return Err(format!("{} holds no keyward database", dir.display()));
            }
            crate::serve::open_store(&dir, database.as_ref())
                .map(|s| (dir, s))
                .map_err(|e| e.to_string())
        });
    report.item("audit", audit(&metrics, args));
    report.item("rotation", rotation(&store));
    report.item("backups", backups(&store, args.backup_max_age_hours));
    println!(
        "keyward doctor: {} of {} checks passed",
        report.total - report.failed,
        report.total
    );
    if report.failed > 0 {
        return Err(CliError::exit(1));
    }
    Ok(())
}

fn get(endpoint: &Endpoint, path: &str) -> Result<(u16, String), String> {
    crate::operator::call_text(endpoint, "GET", path, None).map_err(|e| e.to_string())
}

fn get_json(endpoint: &Endpoint, path: &str) -> Result<Value, String> {
    let (_, body) = get(endpoint, path)?;
    serde_json::from_str(&body).map_err(|e| format!("{path}: {e}"))
}

fn seal(status: &Result<Value, String>) -> Result<String, (String, String)> {
    let status = match status {
        Ok(s) => s,
        Err(e) => return fail(format!("no seal status: {e}"), "is the server running?"),
    };
    let provider = status["provider"].as_str().unwrap_or("?");
    if status["sealed"].as_bool() != Some(false) {
        return fail(
            format!("the server is sealed (provider {provider})"),
            "unseal it: keyward operator unseal",
        );
    }
    if provider == "file" {
        return fail(
            "the root key is in a plain file (provider `file`, for development)",
            "keyward operator migrate-seal --to shamir (or --to pkcs11), with the server stopped",
        );
    }
    Ok(format!("root key sealed by `{provider}`, unsealed"))
}

fn scan(endpoint: &Endpoint, args: &DoctorArgs) -> Result<keyward_pki::scan::ScanResult, String> {
    let roots = match &args.endpoint.ca {
        Some(path) => CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", path.display()))?,
        None => Vec::new(),
    };
    keyward_pki::scan::scan(&keyward_pki::scan::ScanOptions {
        host: endpoint.host.trim_matches(['[', ']']).to_owned(),
        port: endpoint.port,
        sni: None,
        roots,
        client_identity: crate::tls_scan_cli::client_identity(
            args.endpoint.client_cert.as_deref(),
            args.endpoint.client_key.as_deref(),
        )
        .map_err(|e| e.to_string())?,
        timeout: Duration::from_secs(5),
    })
    .map_err(|e| e.to_string())
}

fn tls(endpoint: &Endpoint, args: &DoctorArgs) -> Result<String, (String, String)> {
    let result = match scan(endpoint, args) {
        Ok(r) => r,
        Err(e) => return fail(format!("scan failed: {e}"), "is the server running?"),
    };
    let versions = result.supported_versions();
    if versions != ["TLSv1.3"] {
        return fail(
            format!("accepts {}", versions.join(", ")),
            "serve TLS 1.3 only (keyward's default; remove the TLS 1.2 opt-in)",
        );
    }
    Ok("TLS 1.3 only".into())
}

fn certificates(
    endpoint: &Endpoint,
    args: &DoctorArgs,
    metrics: &Result<String, String>,
) -> Result<String, (String, String)> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let leaf = match scan(endpoint, args).map(|r| r.certificate) {
        Ok(Some(c)) => c,
        Ok(None) => return fail("the server showed no certificate", "check its TLS settings"),
        Err(e) => return fail(format!("scan failed: {e}"), "is the server running?"),
    };
    match expiry::standing(leaf.not_before, leaf.not_after, now) {
        Standing::Fine => {}
        other => {
            return fail(
                format!(
                    "the server certificate is {other:?} ({} days left)",
                    leaf.days_left
                ),
                "keyward serve renews its own at 2/3 of its life: check its log for renewal errors; a provided --tls-cert must be renewed by its issuer",
            );
        }
    }
    let left = leaf.not_after - now;
    let mut detail = if left < 2 * 86_400 {
        format!("server certificate has {} hours left", left / 3600)
    } else {
        format!("server certificate has {} days left", left / 86_400)
    };
    // The CA's certificates, from the server's own figures (while unsealed).
    if let Ok(text) = metrics {
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("keyward_certificate_expiry_seconds{certificate=\"")
            else {
                continue;
            };
            let Some((name, value)) = rest.split_once("\"} ") else {
                continue;
            };
            let left: i64 = value.trim().parse().unwrap_or(0);
            if name != "server" && left < CA_MARGIN {
                return fail(
                    format!(
                        "the {name} CA certificate expires in {} days",
                        left / 86_400
                    ),
                    "make a new CA generation (keyward ca init) and roll it out before then",
                );
            }
            if name != "server" {
                detail.push_str(&format!(", {name} {} days", left / 86_400));
            }
        }
    }
    Ok(detail)
}

fn audit(metrics: &Result<String, String>, args: &DoctorArgs) -> Result<String, (String, String)> {
    let metrics = match metrics {
        Ok(m) => m,
        Err(e) => return fail(format!("no metrics: {e}"), "is the server running?"),
    };
    let healthy = metrics
        .lines()
        .find_map(|l| l.strip_prefix("keyward_audit_healthy "))
        .map(str::trim);
    match healthy {
        Some("1") => {}
        Some(_) => {
            return fail(
                "the audit log's last write failed: requests are being refused",
                "make the audit directory writable and give it space (see the server's log)",
            );
        }
        None => {
            return fail(
                "the audit log is off (or the server is sealed)",
                "run keyward serve without KEYWARD_BENCH_NO_AUDIT, and unsealed",
            );
        }
    }
    let verify = crate::audit_cli::VerifyArgs {
        source: crate::audit_cli::Source {
            data_dir: args.dir.data_dir.clone(),
            database_url: args.dir.database_url.clone(),
            file: None,
        },
        audit_dir: None,
        checkpoints: Vec::new(),
        public_key: None,
    };
    println!("      (keyward audit verify:)");
    match crate::audit_cli::run(&crate::audit_cli::AuditCommand::Verify(verify)) {
        Ok(()) => Ok("on, healthy, and the log verifies".into()),
        Err(e) => fail(
            format!("keyward audit verify failed {e}"),
            "find the first broken record above; restore the log from a backup or an export",
        ),
    }
}

type Opened = Result<(std::path::PathBuf, std::sync::Arc<dyn Store>), String>;

/// The store the data-directory checks read, or their failure.
fn opened(store: &Opened) -> Result<&std::sync::Arc<dyn Store>, (String, String)> {
    store.as_ref().map(|(_, s)| s).map_err(|e| {
        (
            e.clone(),
            "pass the server's --data-dir (or --database-url)".to_owned(),
        )
    })
}

fn rotation(store: &Opened) -> Result<String, (String, String)> {
    let store = opened(store)?;
    let mut without = Vec::new();
    let mut total = 0usize;
    let mut after = None;
    loop {
        let page = match store.keys(after.as_deref(), 1000) {
            Ok(p) => p,
            Err(e) => return fail(format!("reading the keys: {e}"), "check the database"),
        };
        let Some(last) = page.last() else { break };
        after = Some(last.key_id.clone());
        for k in &page {
            if k.destroyed || k.state != KeyState::Enabled {
                continue;
            }
            total += 1;
            if k.rotation_period_days.is_none() {
                without.push(k.key_id.clone());
            }
        }
    }
    if !without.is_empty() {
        let shown: Vec<&str> = without.iter().take(5).map(String::as_str).collect();
        return fail(
            format!(
                "{} of {total} enabled keys do not rotate: {}{}",
                without.len(),
                shown.join(", "),
                if without.len() > 5 { ", ..." } else { "" }
            ),
            "EnableKeyRotation on each (aws kms enable-key-rotation --key-id ...)",
        );
    }
    Ok(format!("all {total} enabled keys rotate automatically"))
}

fn backups(store: &Opened, max_age_hours: u64) -> Result<String, (String, String)> {
    let store = opened(store)?;
    let last = match store.meta(crate::backup::LAST_BACKUP_META) {
        Ok(v) => v,
        Err(e) => return fail(format!("reading the store: {e}"), "check the database"),
    };
    let Some(ms) = last
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.parse::<i64>().ok())
    else {
        return fail(
            "no backup was ever made",
            "keyward backup --out FILE, on a schedule",
        );
    };
    let age_h = (crate::backup::now_ms() - ms) / 3_600_000;
    if age_h > max_age_hours as i64 {
        return fail(
            format!(
                "the last backup is {age_h} hours old ({})",
                crate::audit_cli::format_time(ms)
            ),
            "keyward backup --out FILE, on a schedule shorter than --backup-max-age-hours",
        );
    }
    Ok(format!("last backup {}", crate::audit_cli::format_time(ms)))
}
