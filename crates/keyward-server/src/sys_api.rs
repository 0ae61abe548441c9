//! The server's own state, answered sealed or not:
//!
//! | endpoint | who may call | answer |
//! |---|---|---|
//! | `GET /v1/sys/health` | anyone | the seal status; 200 unsealed, 503 sealed |
//! | `GET /v1/sys/seal-status` | anyone | the seal status, always 200 |
//! | `POST /v1/sys/unseal` | anyone: the share is the credential | `{"share": ...}` (or `{}` for providers that take none); the seal status |
//! | `POST /v1/sys/seal` | an operator (SigV4 or client certificate), audited | seals at once; the seal status |
//! | `GET /metrics` | anyone | Prometheus text |
//!
//! Unseal is not audited: the audit log's keys are behind the seal. Each share taken or
//! refused is logged (never the share). Errors are `{"error": <code>, "message": <text>}`,
//! made in one place, [`SysError::to_wire`].

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use keyward_pki::CertInfo;
use serde_json::json;

use crate::seal::{SealStatus, UnsealError};
use crate::server::{State, read_body, request_id};

/// Largest unseal request body: a share is about 70 characters.
const MAX_UNSEAL_BODY: usize = 4096;

#[derive(Debug)]
enum SysError {
    NotFound,
    MethodNotAllowed,
    BadRequest(String),
    Unseal(UnsealError),
    Unauthenticated(String),
    Forbidden(String),
    Internal,
}

impl SysError {
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
            Self::BadRequest(why) => (StatusCode::BAD_REQUEST, "bad_request", why.clone()),
            Self::Unseal(e @ UnsealError::Share(_)) => {
                (StatusCode::BAD_REQUEST, "bad_share", e.to_string())
            }
            Self::Unseal(e @ UnsealError::Refused(_)) => {
                (StatusCode::BAD_REQUEST, "refused", e.to_string())
            }
            Self::Unseal(e @ UnsealError::Failed(_)) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "unseal_failed",
                e.to_string(),
            ),
            Self::Unauthenticated(why) => {
                (StatusCode::UNAUTHORIZED, "unauthenticated", why.clone())
            }
            Self::Forbidden(why) => (StatusCode::FORBIDDEN, "forbidden", why.clone()),
            Self::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "an internal error occurred; retry the request".into(),
            ),
        };
        (status, json!({ "error": code, "message": message }))
    }
}

struct Reply {
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
}

fn status_reply(status: &SealStatus, code: StatusCode) -> Reply {
    Reply {
        status: code,
        content_type: "application/json",
        body: serde_json::to_vec(status).unwrap_or_default().into(),
    }
}

pub(crate) async fn handle(
    state: &Arc<State>,
    peer: Option<&CertInfo>,
    source: std::net::SocketAddr,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let id = request_id();
    let (status, content_type, body) = match route(state, peer, source, &id, req).await {
        Ok(r) => (r.status, r.content_type, r.body),
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
    state: &Arc<State>,
    peer: Option<&CertInfo>,
    source: std::net::SocketAddr,
    id: &str,
    req: Request<Incoming>,
) -> Result<Reply, SysError> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    match (path.as_str(), method) {
        ("/v1/sys/health", Method::GET) => {
            let status = state.node.status();
            let code = if status.sealed {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            Ok(status_reply(&status, code))
        }
        ("/v1/sys/seal-status", Method::GET) => {
            Ok(status_reply(&state.node.status(), StatusCode::OK))
        }
        ("/v1/sys/unseal", Method::POST) => unseal(state, source, req).await,
        ("/v1/sys/seal", Method::POST) => seal(state, peer, source, id, req).await,
        ("/metrics", Method::GET) => {
            let state = state.clone();
            let body = tokio::task::spawn_blocking(move || {
                let run = state.node.running();
                crate::pki_api::metrics(&state, run.as_deref())
            })
            .await
            .map_err(|_| SysError::Internal)?;
            Ok(Reply {
                status: StatusCode::OK,
                content_type: "text/plain; version=0.0.4",
                body: body.into(),
            })
        }
        (
            "/v1/sys/health"
            | "/v1/sys/seal-status"
            | "/v1/sys/unseal"
            | "/v1/sys/seal"
            | "/metrics",
            _,
        ) => Err(SysError::MethodNotAllowed),
        _ => Err(SysError::NotFound),
    }
}

async fn unseal(
    state: &Arc<State>,
    source: std::net::SocketAddr,
    req: Request<Incoming>,
) -> Result<Reply, SysError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        share: Option<String>,
    }
    let body = tokio::time::timeout(crate::server::BODY_TIMEOUT, read_body(req.into_body()))
        .await
        .map_err(|_| SysError::BadRequest("request body not received in time".into()))?
        .map_err(|e| SysError::BadRequest(e.to_string()))?;
    if body.len() > MAX_UNSEAL_BODY {
        return Err(SysError::BadRequest(format!(
            "an unseal request is at most {MAX_UNSEAL_BODY} bytes"
        )));
    }
    let body = zeroize::Zeroizing::new(body.to_vec());
    let parsed: Body = if body.is_empty() {
        Body { share: None }
    } else {
        serde_json::from_slice(&body).map_err(|_| {
            SysError::BadRequest("the body must be {\"share\": \"kws1-...\"}".into())
        })?
    };
    let share = parsed.share.map(zeroize::Zeroizing::new);
    let node = state.node.clone();
    let result =
        tokio::task::spawn_blocking(move || node.unseal(share.as_deref().map(String::as_str)))
            .await
            .map_err(|_| SysError::Internal)?;
    match result {
        Ok(status) => {
            tracing::info!(%source, sealed = status.sealed, progress = status.progress, "unseal share taken");
            Ok(status_reply(&status, StatusCode::OK))
        }
        Err(e) => {
            tracing::warn!(%source, error = %e, "unseal refused");
            Err(SysError::Unseal(e))
        }
    }
}

/// Seals the server for an operator. The request is audited (allowed or denied) before
/// the seal; sealing goes ahead even if its record cannot be kept, since it takes no key
/// into use.
async fn seal(
    state: &Arc<State>,
    peer: Option<&CertInfo>,
    source: std::net::SocketAddr,
    id: &str,
    req: Request<Incoming>,
) -> Result<Reply, SysError> {
    let Some(run) = state.node.running() else {
        return Ok(status_reply(&state.node.status(), StatusCode::OK));
    };
    let (parts, body) = req.into_parts();
    let body = tokio::time::timeout(crate::server::BODY_TIMEOUT, read_body(body))
        .await
        .map_err(|_| SysError::BadRequest("request body not received in time".into()))?
        .map_err(|e| SysError::BadRequest(e.to_string()))?;
    let tls_identity = peer.and_then(CertInfo::principal);
    let caller = crate::server::authenticate(&run, tls_identity.as_deref(), &parts, &body).await;
    let allowed = match &caller {
        Ok(p) if state.operators.iter().any(|o| o == p) => Ok(()),
        Ok(p) => Err(SysError::Forbidden(format!(
            "{p} is not an operator: only {} may seal",
            state.operators.join(", ")
        ))),
        Err(e) => Err(SysError::Unauthenticated(e.to_string())),
    };
    if let Some(audit) = &run.audit {
        let event = keyward_audit::Event {
            time_ms: crate::audit::now_ms(),
            request_id: id.to_owned(),
            principal: caller.as_ref().ok().cloned(),
            source: source.to_string(),
            tls_identity,
            operation: "Seal".into(),
            key_arn: None,
            key_version: None,
            outcome: if allowed.is_ok() {
                keyward_audit::Outcome::Allowed
            } else {
                keyward_audit::Outcome::Denied
            },
            error_type: match &caller {
                Err(e) => Some(e.to_wire().aws_type.to_owned()),
                Ok(_) if allowed.is_err() => Some("forbidden".into()),
                Ok(_) => None,
            },
            context: Default::default(),
        };
        if audit.record(event).await.is_err() && allowed.is_ok() {
            tracing::error!("the seal's audit record could not be kept; sealing all the same");
        }
    }
    allowed?;
    drop(run);
    let node = state.node.clone();
    let status = tokio::task::spawn_blocking(move || node.seal())
        .await
        .map_err(|_| SysError::Internal)?;
    tracing::warn!(principal = caller.as_deref().unwrap_or(""), %source, "sealed by an operator");
    Ok(status_reply(&status, StatusCode::OK))
}
