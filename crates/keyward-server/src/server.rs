//! The listener: TLS 1.3 over TCP, HTTP/1.1 and HTTP/2, SigV4, the KMS protocol.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::protocol::{self, ApiError, CONTENT_TYPE};
use crate::seal::{Node, Running};
use crate::{ServerError, access, sigv4};
use keyward_pki::CertInfo;

/// Largest request body accepted. KMS's largest members (a 6144-byte blob, a 32 KiB
/// policy) fit easily.
pub const MAX_BODY: usize = 256 * 1024;
/// Past [`MAX_BODY`], up to this much more is read and thrown away so that a client still
/// sending sees the error response instead of a reset connection; beyond it the
/// connection is closed.
const DRAIN_LIMIT: usize = 4 * 1024 * 1024;
/// A TLS handshake must finish within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A request's headers must arrive within this (and an idle HTTP/1.1 connection is closed
/// after it); its body within [`BODY_TIMEOUT`].
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// See [`HEADER_TIMEOUT`].
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once; more wait in the kernel's accept queue.
pub const MAX_CONNECTIONS: usize = 4096;
/// Requests in flight on one HTTP/2 connection.
pub const MAX_STREAMS: u32 = 64;

pub(crate) struct State {
    pub(crate) node: Arc<Node>,
    limits: crate::limits::RateLimits,
    /// Principals that may seal the server.
    pub(crate) operators: Vec<String>,
    pub(crate) metrics: crate::metrics::Metrics,
}

/// Serves until `shutdown` resolves, then stops accepting and lets open requests finish.
/// `operators` are the principals that may seal the server. `plain`, for benchmarks
/// only, also serves the API over plain HTTP.
pub async fn serve(
    node: Arc<Node>,
    limits: crate::limits::RateLimits,
    operators: Vec<String>,
    listener: TcpListener,
    plain: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let state = Arc::new(State {
        node,
        limits,
        operators,
        metrics: crate::metrics::Metrics::default(),
    });
    let plain = plain.map(|l| serve_plain(state.clone(), l));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Requests and answers are small: send each at once, not after the peer's
        // delayed ACK (Nagle's algorithm costs 40 ms per exchange otherwise).
        let _ = tcp.set_nodelay(true);
        let Some(config) = state.node.tls_config() else {
            break;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let state = state.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let client = crate::tls::peer_info(tls.get_ref().1.peer_certificates()).map(Arc::new);
            let service = hyper::service::service_fn(move |req| {
                handle(state.clone(), client.clone(), peer, req)
            });
            let builder = http();
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if let Some(plain) = plain {
        plain.abort();
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(30)) => tracing::warn!("closing connections still open after 30 s"),
    }
    Ok(())
}

/// HTTP/1.1 and HTTP/2 with keyward's timeouts and limits.
fn http() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(HEADER_TIMEOUT);
    builder
}

/// For benchmarks only: the same service over plain HTTP, to measure what TLS costs. No
/// client certificates, so only SigV4 authenticates.
fn serve_plain(state: Arc<State>, listener: TcpListener) -> tokio::task::JoinHandle<()> {
    tracing::warn!(
        "serving plain HTTP for benchmarks (KEYWARD_BENCH_PLAIN_LISTEN): not for production"
    );
    tokio::spawn(async move {
        loop {
            let Ok((tcp, peer)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let state = state.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req| handle(state.clone(), None, peer, req));
                let builder = http();
                let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
            });
        }
    })
}

pub(crate) fn request_id() -> String {
    let mut b = [0u8; 16];
    let _ = aws_lc_rs::rand::fill(&mut b);
    crate::sigv4::hex(&b)
}

/// What [`respond`] learned about a request, for its audit record.
#[derive(Default)]
struct Seen {
    /// The request got as far as authentication: it is audited.
    audited: bool,
    principal: Option<String>,
    operation: String,
    facts: protocol::Facts,
}

async fn handle(
    state: Arc<State>,
    peer: Option<Arc<CertInfo>>,
    source: std::net::SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    if path.starts_with("/v1/sys/") || path == "/metrics" {
        return Ok(crate::sys_api::handle(&state, peer.as_deref(), source, req).await);
    }
    let Some(run) = state.node.running() else {
        return Ok(sealed(path));
    };
    if path != "/" {
        return Ok(crate::pki_api::handle(&run, peer.as_deref(), source, req).await);
    }
    let id = request_id();
    let started = std::time::Instant::now();
    let operation = crate::metrics::operation_label(
        req.headers()
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    );
    let tls_identity = peer.as_deref().and_then(CertInfo::principal);
    let mut seen = Seen::default();
    let mut result = respond(&state, &run, tls_identity.as_deref(), req, &mut seen).await;
    if let (true, Some(audit)) = (seen.audited, &run.audit) {
        let error_type = result
            .as_ref()
            .err()
            .map(|e| e.to_wire().aws_type.to_owned());
        let event = keyward_audit::Event {
            time_ms: crate::audit::now_ms(),
            request_id: id.clone(),
            principal: seen.principal.take(),
            source: source.to_string(),
            tls_identity: tls_identity.clone(),
            operation: seen.operation,
            key_arn: seen.facts.key_arn.take(),
            key_version: seen.facts.key_version,
            outcome: match &result {
                Ok(_) => keyward_audit::Outcome::Allowed,
                Err(
                    ApiError::Auth(_)
                    | ApiError::Throttled
                    | ApiError::Kms(keyward_kms::Error::AccessDenied(_)),
                ) => keyward_audit::Outcome::Denied,
                Err(_) => keyward_audit::Outcome::Failed,
            },
            error_type,
            context: audit.context(&seen.facts.context),
        };
        if audit.record(event).await.is_err() {
            // Fail-closed: no answer leaves without its record.
            result = Err(ApiError::AuditUnavailable);
        }
    }
    drop(run);
    let outcome = match &result {
        Ok(_) => crate::metrics::Outcome::Ok,
        Err(ApiError::Throttled) => crate::metrics::Outcome::Throttled,
        Err(ApiError::Auth(_) | ApiError::Kms(keyward_kms::Error::AccessDenied(_))) => {
            crate::metrics::Outcome::Denied
        }
        Err(e) if e.to_wire().status >= 500 => crate::metrics::Outcome::ServerError,
        Err(_) => crate::metrics::Outcome::ClientError,
    };
    state.metrics.observe(operation, outcome, started.elapsed());
    let (status, body, error_type) = match result {
        Ok(body) => (StatusCode::OK, body, None),
        Err(e) => {
            if let ApiError::Kms(
                k @ (keyward_kms::Error::Internal(_) | keyward_kms::Error::Store(_)),
            ) = &e
            {
                tracing::error!(request_id = %id, error = %k, "internal error");
            }
            let wire = e.to_wire();
            let aws_type = wire.aws_type;
            (
                StatusCode::from_u16(wire.status).unwrap_or(StatusCode::BAD_REQUEST),
                wire.body(),
                Some(aws_type),
            )
        }
    };
    let mut response = Response::builder()
        .status(status)
        .header("content-type", CONTENT_TYPE)
        .header("x-amzn-requestid", &id);
    if let Some(t) = error_type {
        response = response.header("x-amzn-errortype", t);
    }
    Ok(response
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}

/// The operation name for the audit log: what the target names, kept short and plain.
fn audited_operation(target: &str) -> String {
    let op = target
        .strip_prefix(protocol::TARGET_PREFIX)
        .unwrap_or(target);
    let op: String = op
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(64)
        .collect();
    if op.is_empty() { "unknown".into() } else { op }
}

/// The answer to anything but `/v1/sys/...` while sealed: KMS requests get the KMS
/// protocol's error shape, the rest keyward's own.
fn sealed(path: &str) -> Response<Full<Bytes>> {
    let (content_type, body) = if path == "/" {
        (CONTENT_TYPE, ApiError::Sealed.to_wire().body())
    } else {
        (
            "application/json",
            serde_json::json!({"error": "sealed", "message": SEALED})
                .to_string()
                .into_bytes(),
        )
    };
    let mut response = Response::builder()
        .status(StatusCode::SERVICE_UNAVAILABLE)
        .header("content-type", content_type)
        .header("retry-after", "5");
    if path == "/" {
        response = response.header("x-amzn-errortype", ApiError::Sealed.to_wire().aws_type);
    }
    response
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// What a sealed server says.
pub(crate) const SEALED: &str = "keyward is sealed: no key can be used until it is unsealed (keyward operator unseal); retry later";

async fn respond(
    state: &Arc<State>,
    run: &Arc<Running>,
    peer: Option<&str>,
    req: Request<Incoming>,
    seen: &mut Seen,
) -> Result<Vec<u8>, ApiError> {
    let (parts, body) = req.into_parts();
    if parts.method != hyper::Method::POST || parts.uri.path() != "/" {
        return Err(ApiError::UnknownOperation(
            "keyward serves the AWS KMS JSON protocol: POST /".into(),
        ));
    }
    let body = tokio::time::timeout(BODY_TIMEOUT, read_body(body))
        .await
        .map_err(|_| ApiError::Validation("Request body not received in time".into()))??;

    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    // Other nodes change the store too: see every change made before this request came.
    if let Some(coherence) = &run.coherence {
        coherence.fresh().await.map_err(|e| {
            ApiError::Kms(keyward_kms::Error::Store(
                keyward_store::StoreError::Backend(Box::new(e)),
            ))
        })?;
    }
    seen.audited = true;
    seen.operation = audited_operation(&target);
    let caller = authenticate(run, peer, &parts, &body).await?;
    let kms = run.kms.clone();
    seen.principal = Some(caller.clone());
    tracing::debug!(principal = %caller, %target, "request");
    if !state.limits.allow(&caller) {
        return Err(ApiError::Throttled);
    }
    // A change of state is not started while its record could not be kept.
    if let Some(audit) = &run.audit
        && !audit.healthy()
        && !protocol::is_cryptographic(&target)
        && !protocol::is_read_only(&target)
    {
        return Err(ApiError::AuditUnavailable);
    }
    // Cryptographic operations on warm keys are answered here, on the async thread; what
    // needs the store goes to the blocking pool.
    if protocol::is_cryptographic(&target) {
        // A panic here would end the connection without an answer: turn it into a 500.
        let fast = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            keyward_kms::cache_only(|| {
                protocol::handle_audited(&kms, &caller, &target, &body, &mut seen.facts)
            })
        }))
        .unwrap_or_else(|_| Err(internal("request handler failed")));
        match fast {
            Err(ApiError::Kms(keyward_kms::Error::WouldBlock)) => {}
            done => return Ok(done?.to_string().into_bytes()),
        }
    }
    let (out, facts) = tokio::task::spawn_blocking(move || {
        let mut facts = protocol::Facts::default();
        let out = protocol::handle_audited(&kms, &caller, &target, &body, &mut facts);
        (out, facts)
    })
    .await
    .map_err(|_| internal("request handler failed"))?;
    seen.facts = facts;
    Ok(out?.to_string().into_bytes())
}

/// The caller of a request: its SigV4 signature's access key's principal, or, for an
/// unsigned request, the verified client certificate's identity.
pub(crate) async fn authenticate(
    run: &Arc<Running>,
    peer: Option<&str>,
    parts: &hyper::http::request::Parts,
    body: &[u8],
) -> Result<String, ApiError> {
    let mut headers = Vec::with_capacity(parts.headers.len() + 1);
    for (name, value) in &parts.headers {
        if let Ok(v) = value.to_str() {
            headers.push((name.as_str(), v));
        }
    }
    // HTTP/2 carries the host in the :authority pseudo-header.
    let authority = parts.uri.authority().map(|a| a.as_str().to_owned());
    if !parts.headers.contains_key("host") {
        if let Some(a) = &authority {
            headers.push(("host", a));
        }
    }
    let signed_request = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("authorization"));
    if let (Some(peer), false) = (peer, signed_request) {
        // A verified client certificate stands in for a signature.
        return Ok(peer.to_owned());
    }
    let signed = sigv4::Request {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &headers,
        body,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    // The caller's secret: from memory, else from the store on the blocking pool (never
    // on an async thread, where a slow store would stall every connection).
    let claimed = sigv4::access_key_id(&headers)
        .filter(|id| access::plausible_id(id))
        .map(str::to_owned);
    let found = match &claimed {
        None => None,
        Some(id) => match run.access_keys.cached(id) {
            Some(found) => found,
            None => {
                let (run, id) = (run.clone(), id.clone());
                tokio::task::spawn_blocking(move || run.access_keys.refresh(&run.kms, &id))
                    .await
                    .map_err(|_| internal("access key lookup failed"))?
                    .map_err(|e| {
                        tracing::error!(error = %e, "access key lookup failed");
                        internal("access key lookup failed")
                    })?
            }
        },
    };
    let mut principal = None;
    sigv4::verify(&signed, "kms", &run.kms.config().region, now, |akid| {
        let (secret, p) = found.filter(|_| claimed.as_deref() == Some(akid))?;
        principal = Some(p);
        Some(secret)
    })?;
    Ok(principal.unwrap_or_default())
}

fn internal(what: &'static str) -> ApiError {
    ApiError::Kms(keyward_kms::Error::Internal(what))
}

/// Reads a request body of at most [`MAX_BODY`] bytes. A longer one is read on (and
/// dropped) up to [`DRAIN_LIMIT`] so the refusal reaches the client.
pub(crate) async fn read_body(mut body: Incoming) -> Result<Bytes, ApiError> {
    let too_large = || ApiError::Validation(format!("Request body larger than {MAX_BODY} bytes"));
    let mut buf = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ApiError::Validation("Request body unreadable".into()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if seen > MAX_BODY + DRAIN_LIMIT {
            return Err(too_large());
        }
        if seen <= MAX_BODY {
            buf.extend_from_slice(&data);
        }
    }
    if seen > MAX_BODY {
        Err(too_large())
    } else {
        Ok(Bytes::from(buf))
    }
}
