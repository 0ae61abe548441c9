//! keyward's own endpoints beside the KMS protocol (which is `POST /`):
//!
//! | endpoint | who may call | answer |
//! |---|---|---|
//! | `GET /v1/pki/ca` | anyone | the root certificate (PEM) |
//! | `GET /v1/pki/crl` | anyone | the current CRL (DER) |
//! | `GET /v1/pki/whoami` | a client with a certificate | `{"principal": ...}` |
//! | `POST /v1/pki/renew` | a client with a valid SVID | a new SVID for the same identity, for the CSR's key |
//!
//! Errors are `{"error": <code>, "message": <text>}` with a matching status, made in one
//! place, [`PkiError::to_wire`].

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use keyward_pki::{CertInfo, LeafRequest};
use serde_json::json;
use time::OffsetDateTime;

use crate::pki;
use crate::seal::Running;
use crate::server::{State, read_body, request_id};

struct Reply {
    content_type: &'static str,
    body: Bytes,
}

/// `GET /bench/bytes/<n>` (n zero bytes, up to 64 MiB) exists only with
/// `KEYWARD_BENCH_ENDPOINTS=1`: it measures the listener's bulk throughput.
fn bench_endpoints() -> bool {
    std::env::var_os("KEYWARD_BENCH_ENDPOINTS").is_some_and(|v| v == "1")
}

fn bench_zeros() -> Bytes {
    static ZEROS: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    ZEROS
        .get_or_init(|| Bytes::from(vec![0u8; 64 << 20]))
        .clone()
}

/// What can go wrong on these endpoints.
#[derive(Debug)]
enum PkiError {
    NotFound,
    MethodNotAllowed,
    Unauthenticated(&'static str),
    Refused(String),
    Internal,
    /// The audit log could not keep the renewal's record: nothing was issued.
    AuditUnavailable,
}

impl PkiError {
    /// The one mapping of these errors to the wire.
    fn to_wire(&self) -> (StatusCode, serde_json::Value) {
        let (status, code, message) = match self {
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint".into(),
            ),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed here".into(),
            ),
            Self::Unauthenticated(why) => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                (*why).to_owned(),
            ),
            Self::Refused(why) => (StatusCode::BAD_REQUEST, "refused", why.clone()),
            Self::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "an internal error occurred; retry the request".into(),
            ),
            Self::AuditUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                "the audit log is unavailable: nothing was issued; retry later".into(),
            ),
        };
        (status, json!({ "error": code, "message": message }))
    }
}

pub(crate) async fn handle(
    run: &Arc<Running>,
    peer: Option<&CertInfo>,
    source: std::net::SocketAddr,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let id = request_id();
    let renewal = req.uri().path() == "/v1/pki/renew" && req.method() == Method::POST;
    let mut result = route(run, peer, req).await;
    // A renewal reaches authentication (the client certificate): it is audited, and the
    // new certificate is released only once its record is durable. Refused before the
    // CSR is signed if the audit log is failing.
    if renewal && let Some(audit) = &run.audit {
        let principal = peer.and_then(CertInfo::principal);
        let event = keyward_audit::Event {
            time_ms: crate::audit::now_ms(),
            request_id: id.clone(),
            principal: principal.clone(),
            source: source.to_string(),
            tls_identity: principal,
            operation: "RenewCertificate".into(),
            key_arn: None,
            key_version: None,
            outcome: match &result {
                Ok(_) => keyward_audit::Outcome::Allowed,
                Err(PkiError::Unauthenticated(_)) => keyward_audit::Outcome::Denied,
                Err(_) => keyward_audit::Outcome::Failed,
            },
            error_type: result.as_ref().err().map(|e| {
                e.to_wire().1["error"]
                    .as_str()
                    .unwrap_or("error")
                    .to_owned()
            }),
            context: Default::default(),
        };
        if audit.record(event).await.is_err() {
            result = Err(PkiError::AuditUnavailable);
        }
    }
    let (status, content_type, body) = match result {
        Ok(reply) => (StatusCode::OK, reply.content_type, reply.body),
        Err(e) => {
            let (status, body) = e.to_wire();
            (status, "application/json", Bytes::from(body.to_string()))
        }
    };
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("x-request-id", id)
        .body(Full::new(body))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

async fn route(
    run: &Arc<Running>,
    peer: Option<&CertInfo>,
    req: Request<Incoming>,
) -> Result<Reply, PkiError> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let get = parts.method == Method::GET;
    match path {
        "/v1/pki/ca" if get => Ok(Reply {
            content_type: "application/x-pem-file",
            body: run.tls.root_pem().into(),
        }),
        "/v1/pki/crl" if get => Ok(Reply {
            content_type: "application/pkix-crl",
            body: run.tls.crl_der().ok_or(PkiError::Internal)?.to_vec().into(),
        }),
        "/v1/pki/whoami" if get => {
            let peer = peer.ok_or(PkiError::Unauthenticated("no client certificate"))?;
            let body = json!({
                "principal": peer.principal(),
                "spiffe_id": peer.spiffe_id.as_ref().map(ToString::to_string),
                "serial": peer.serial_hex(),
                "not_after": peer.not_after,
            });
            Ok(json_reply(&body))
        }
        "/v1/pki/renew" if parts.method == Method::POST => {
            let peer = peer
                .ok_or(PkiError::Unauthenticated(
                    "renewal needs the current certificate",
                ))?
                .clone();
            let csr = tokio::time::timeout(crate::server::BODY_TIMEOUT, read_body(body))
                .await
                .map_err(|_| PkiError::Refused("request body not received in time".into()))?
                .map_err(|e| PkiError::Refused(e.to_string()))?;
            let csr = String::from_utf8(csr.to_vec())
                .map_err(|_| PkiError::Refused("the CSR must be PEM".into()))?;
            if run.audit.as_ref().is_some_and(|a| !a.healthy()) {
                return Err(PkiError::AuditUnavailable);
            }
            let run = run.clone();
            tokio::task::spawn_blocking(move || renew(&run, &peer, &csr))
                .await
                .map_err(|_| PkiError::Internal)?
        }
        _ if get && path.starts_with("/bench/bytes/") && bench_endpoints() => {
            let n: usize = path["/bench/bytes/".len()..]
                .parse()
                .map_err(|_| PkiError::Refused("/bench/bytes/<n>".into()))?;
            let zeros = bench_zeros();
            if n > zeros.len() {
                return Err(PkiError::Refused(format!("at most {} bytes", zeros.len())));
            }
            Ok(Reply {
                content_type: "application/octet-stream",
                body: zeros.slice(..n),
            })
        }
        "/v1/pki/ca" | "/v1/pki/crl" | "/v1/pki/whoami" | "/v1/pki/renew" => {
            Err(PkiError::MethodNotAllowed)
        }
        _ => Err(PkiError::NotFound),
    }
}

fn json_reply(body: &serde_json::Value) -> Reply {
    Reply {
        content_type: "application/json",
        body: body.to_string().into(),
    }
}

/// A new SVID for the identity the client proved with its certificate (verified, chain
/// and CRL, by the TLS handshake), for the key in its CSR, with the same names and the
/// same lifetime (at most the CA's maximum).
fn renew(run: &Running, peer: &CertInfo, csr_pem: &str) -> Result<Reply, PkiError> {
    let ca = run.tls.ca();
    let kms = &run.kms;
    let Some(spiffe_id) = peer.spiffe_id.clone() else {
        return Err(PkiError::Refused(
            "only SPIFFE identities renew themselves".into(),
        ));
    };
    // Only a certificate this CA issued and nobody revoked since the CRL was loaded.
    match kms.store().certificate(&peer.serial_hex()) {
        Ok(Some(c)) if c.revoked_at.is_none() => {}
        Ok(_) => return Err(PkiError::Unauthenticated("certificate revoked or unknown")),
        Err(e) => {
            tracing::error!(error = %e, "renewal: store");
            return Err(PkiError::Internal);
        }
    }
    // The same lifetime as asked for at first: the old one less its backdating.
    let ttl = (time::Duration::seconds(peer.lifetime()) - keyward_pki::ca::BACKDATE)
        .max(time::Duration::seconds(60))
        .min(ca.max_ttl);
    let mut req = LeafRequest::new(Some(spiffe_id), OffsetDateTime::now_utc(), ttl);
    req.dns = peer.dns.clone();
    req.ips = peer.ips.clone();
    let issued = pki::sign_csr(kms, ca, csr_pem, &req).map_err(|e| match e {
        pki::IssueError::Refused(e) => PkiError::Refused(e.to_string()),
        pki::IssueError::Server(e) => {
            tracing::error!(error = %e, "renewal failed");
            PkiError::Internal
        }
    })?;
    tracing::info!(
        principal = peer.principal().as_deref().unwrap_or(""),
        old = %peer.serial_hex(),
        new = %issued.info.serial_hex(),
        "certificate renewed"
    );
    Ok(Reply {
        content_type: "application/x-pem-file",
        body: pki::chain_pem(ca, &issued.cert).into(),
    })
}

/// Prometheus text: the server's own figures, and, while unsealed, those of the running
/// service. Blocking: key counts come from the store.
pub(crate) fn metrics(state: &State, run: Option<&Running>) -> String {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let mut out = format!(
        "# HELP keyward_sealed 1 while the server is sealed (holds no root key).\n\
         # TYPE keyward_sealed gauge\nkeyward_sealed {}\n",
        u8::from(run.is_none())
    );
    state.metrics.render(&mut out);
    let Some(run) = run else {
        return out;
    };
    out.push_str(
        "# HELP keyward_certificate_expiry_seconds Seconds until a certificate keyward serves or depends on expires.\n\
         # TYPE keyward_certificate_expiry_seconds gauge\n",
    );
    for (name, not_after) in run.tls.expiries() {
        out.push_str(&format!(
            "keyward_certificate_expiry_seconds{{certificate=\"{name}\"}} {}\n",
            not_after - now
        ));
    }
    if let Some(audit) = &run.audit {
        audit.metrics(&mut out);
    }
    match run.kms.store().key_counts() {
        Ok(counts) => {
            out.push_str("# HELP keyward_keys KMS keys by state.\n# TYPE keyward_keys gauge\n");
            for state in ["Enabled", "Disabled", "PendingDeletion", "Destroyed"] {
                let n = counts
                    .iter()
                    .find(|(s, _)| s == state)
                    .map_or(0, |(_, n)| *n);
                out.push_str(&format!("keyward_keys{{state=\"{state}\"}} {n}\n"));
            }
        }
        Err(e) => tracing::error!(error = %e, "metrics: key counts"),
    }
    out
}
