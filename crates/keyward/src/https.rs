//! One HTTPS request over a fresh TLS 1.3 connection (HTTP/1.1): what the CLI's clients
//! (the KMS keyring, certificate renewal) send.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use rustls::pki_types::ServerName;

/// Sends `request` to `host:port` (a bracketed IPv6 address is fine) and returns the
/// status and body, all within `timeout`.
pub(crate) async fn send(
    host: &str,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
    request: hyper::Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<(u16, Bytes), String> {
    let exchange = async {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let host = host.trim_matches(['[', ']']);
        let tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|x| e(&x))?;
        let name = ServerName::try_from(host.to_owned()).map_err(|x| e(&x))?;
        let tls = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|x| e(&x))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|x| e(&x))?;
        tokio::spawn(conn);
        let response = sender.send_request(request).await.map_err(|x| e(&x))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|x| e(&x))?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer within {} s", timeout.as_secs()))?
}
