//! A small AWS KMS JSON client for the tests: SigV4-signed requests over TLS 1.3 and
//! HTTP/1.1 (hyper + tokio-rustls, trusting the node's CA), spread round-robin over
//! several nodes, retrying what a client should retry on the next node. Borrowed from
//! keyward-server's kms_load example.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;

/// What one attempt may take (connect, handshake, request and answer).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and as whom to send requests.
pub(crate) struct Client {
    ports: Vec<u16>,
    tls: Arc<rustls::ClientConfig>,
    access_key: String,
    secret: String,
    /// Attempts that failed retryably, over all sessions.
    pub(crate) retries: AtomicU64,
    /// Why attempts failed retryably: a short class (`connect`, `timed out`, `503
    /// DependencyTimeoutException`, ...) and how often.
    pub(crate) retry_reasons: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// Requests answered with success, over all sessions.
    pub(crate) acknowledged: AtomicU64,
    /// How long one operation may keep retrying.
    pub(crate) give_up_after: Duration,
}

/// Why an operation failed for good.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A refusal a client must not retry (4xx other than throttling), or a malformed
    /// success.
    Fatal(String),
    /// Retryable failures went on until the operation's time was up.
    GaveUp(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fatal(s) => write!(f, "non-retryable: {s}"),
            Self::GaveUp(s) => write!(f, "gave up retrying: {s}"),
        }
    }
}

enum Attempt {
    Done(Value),
    /// A short class of the failure, and its details.
    Retry(String, String),
    Fatal(String),
}

fn retry(class: &str, detail: impl std::fmt::Display) -> Attempt {
    Attempt::Retry(class.to_owned(), detail.to_string())
}

impl Client {
    /// A client for nodes on 127.0.0.1 at `ports`, trusting the PEM certificates in `ca`.
    pub(crate) fn new(ports: Vec<u16>, ca: &Path, access_key: &str, secret: &str) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self {
            ports,
            tls: Arc::new(tls),
            access_key: access_key.to_owned(),
            secret: secret.to_owned(),
            retries: AtomicU64::new(0),
            retry_reasons: Default::default(),
            acknowledged: AtomicU64::new(0),
            give_up_after: Duration::from_secs(30),
        }
    }

    /// A session: its own connections, one per node, starting at node `first`.
    pub(crate) fn session(self: &Arc<Self>, first: usize) -> Session {
        Session {
            client: self.clone(),
            conns: self.ports.iter().map(|_| None).collect(),
            next: first % self.ports.len(),
        }
    }

    async fn connect(
        &self,
        node: usize,
    ) -> Result<SendRequest<Full<Bytes>>, (&'static str, String)> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.ports[node]))
            .await
            .map_err(|e| ("connect", e.to_string()))?;
        tcp.set_nodelay(true)
            .map_err(|e| ("connect", e.to_string()))?;
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| ("TLS handshake", e.to_string()))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| ("HTTP handshake", e.to_string()))?;
        tokio::spawn(conn);
        Ok(sender)
    }

    fn request(&self, node: usize, operation: &str, body: &Value) -> hyper::Request<Full<Bytes>> {
        let authority = format!("127.0.0.1:{}", self.ports[node]);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        keyward_server::sigv4::kms_request(
            &authority,
            operation,
            body.to_string(),
            &self.access_key,
            &self.secret,
            "us-east-1",
            now,
        )
        .unwrap()
    }
}

/// Whether a refusal with this status and `__type` is one to retry: 5xx (internal
/// errors, the audit log or database unavailable) and throttling.
pub(crate) fn retryable(status: u16, aws_type: &str) -> bool {
    status >= 500 || aws_type.ends_with("ThrottlingException")
}

/// One worker's view of the nodes.
pub(crate) struct Session {
    client: Arc<Client>,
    conns: Vec<Option<SendRequest<Full<Bytes>>>>,
    next: usize,
}

impl Session {
    /// Sends `operation` with `body` to the next node, and on a retryable failure to the
    /// one after (with a small backoff) until it is answered or its time is up.
    pub(crate) async fn call(&mut self, operation: &str, body: &Value) -> Result<Value, Failure> {
        let started = Instant::now();
        let mut failures = 0u32;
        loop {
            let node = self.next;
            self.next = (self.next + 1) % self.conns.len();
            let attempt =
                tokio::time::timeout(ATTEMPT_TIMEOUT, self.attempt(node, operation, body))
                    .await
                    .unwrap_or_else(|_| retry("timed out", "no answer in time"));
            match attempt {
                Attempt::Done(v) => {
                    self.client.acknowledged.fetch_add(1, Ordering::Relaxed);
                    return Ok(v);
                }
                Attempt::Fatal(why) => {
                    return Err(Failure::Fatal(format!(
                        "{operation} through node {node}: {why}"
                    )));
                }
                Attempt::Retry(class, why) => {
                    self.conns[node] = None;
                    self.client.retries.fetch_add(1, Ordering::Relaxed);
                    *self
                        .client
                        .retry_reasons
                        .lock()
                        .unwrap()
                        .entry(class.clone())
                        .or_default() += 1;
                    failures += 1;
                    if started.elapsed() >= self.client.give_up_after {
                        return Err(Failure::GaveUp(format!(
                            "{operation}, {failures} attempts, last through node {node}: {class}: {why}"
                        )));
                    }
                    let backoff = Duration::from_millis(20u64 << failures.min(5));
                    tokio::time::sleep(backoff.min(Duration::from_millis(500))).await;
                }
            }
        }
    }

    async fn attempt(&mut self, node: usize, operation: &str, body: &Value) -> Attempt {
        let client = self.client.clone();
        let sender = match &mut self.conns[node] {
            Some(s) if !s.is_closed() => s,
            slot => match client.connect(node).await {
                Ok(s) => slot.insert(s),
                Err((class, e)) => return retry(class, e),
            },
        };
        if let Err(e) = sender.ready().await {
            return retry("connection closed", e);
        }
        let response = match sender
            .send_request(client.request(node, operation, body))
            .await
        {
            Ok(r) => r,
            Err(e) => return retry("request failed", e),
        };
        let status = response.status().as_u16();
        let body = match response.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return retry("response body", e),
        };
        let value: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) if status >= 500 => {
                return retry(&status.to_string(), String::from_utf8_lossy(&body));
            }
            Err(e) => {
                return Attempt::Fatal(format!(
                    "{status}, not JSON ({e}): {}",
                    String::from_utf8_lossy(&body)
                ));
            }
        };
        if status == 200 {
            return Attempt::Done(value);
        }
        let aws_type = value["__type"].as_str().unwrap_or("");
        if retryable(status, aws_type) {
            retry(&format!("{status} {aws_type}"), value)
        } else {
            Attempt::Fatal(format!("{status} {value}"))
        }
    }
}
