//! A KMS client for the KMS keyring: the AWS KMS JSON protocol over HTTPS with SigV4,
//! configured from the environment the AWS SDKs read (AWS_ENDPOINT_URL_KMS or
//! AWS_ENDPOINT_URL, AWS_CA_BUNDLE, AWS_REGION or AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID,
//! AWS_SECRET_ACCESS_KEY).

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use keyward_envelope::{DataKey, EncryptionContext, Error, KmsClient, data_key_from_kms};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::files::CliError;

/// An HTTPS endpoint: where, and the roots its certificate must chain to.
pub(crate) struct Endpoint {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) tls: Arc<rustls::ClientConfig>,
}

impl Endpoint {
    /// `endpoint` (`https://host[:port]`), trusting the certificates in `bundle` (PEM);
    /// errors name `setting` and `bundle_setting`.
    pub(crate) fn new(
        endpoint: &str,
        setting: &str,
        bundle: &str,
        bundle_setting: &str,
        identity: Option<(
            Vec<CertificateDer<'static>>,
            rustls::pki_types::PrivateKeyDer<'static>,
        )>,
    ) -> Result<Self, CliError> {
        let bad =
            |setting: &str, why: &str| CliError::usage(format!("invalid setting {setting}: {why}"));
        let authority = endpoint
            .strip_prefix("https://")
            .ok_or_else(|| bad(setting, "must start with https://"))?
            .trim_end_matches('/');
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h.to_owned(),
                p.parse().map_err(|_| bad(setting, "bad port"))?,
            ),
            _ => (authority.to_owned(), 443),
        };
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(bundle)
            .map_err(|e| bad(bundle_setting, &format!("{bundle}: {e}")))?;
        for cert in certs {
            let cert = cert.map_err(|e| bad(bundle_setting, &format!("{bundle}: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| bad(bundle_setting, &format!("{bundle}: {e}")))?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| CliError::failed(format!("TLS: {e}")))?
            .with_root_certificates(roots);
        let tls = match identity {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| CliError::usage(format!("invalid setting --client-key: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        Ok(Self {
            host,
            port,
            tls: Arc::new(tls),
        })
    }

    /// `host[:port]` as the `Host` header says it.
    pub(crate) fn authority(&self) -> String {
        if self.port == 443 {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// An HTTPS KMS endpoint with credentials.
pub(crate) struct HttpKms {
    endpoint: Endpoint,
    region: String,
    access_key_id: String,
    secret: Zeroizing<String>,
    runtime: tokio::runtime::Runtime,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The endpoint the AWS SDKs would use, else `fallback`.
pub(crate) fn env_endpoint() -> Option<String> {
    env("AWS_ENDPOINT_URL_KMS").or_else(|| env("AWS_ENDPOINT_URL"))
}

/// The CA bundle the AWS SDKs would trust.
pub(crate) fn env_bundle() -> String {
    env("AWS_CA_BUNDLE")
        .or_else(|| env("SSL_CERT_FILE"))
        .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".to_owned())
}

impl HttpKms {
    pub(crate) fn from_env() -> Result<Self, CliError> {
        let region = env("AWS_REGION")
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .ok_or_else(|| CliError::usage("invalid setting AWS_DEFAULT_REGION: not set"))?;
        let endpoint =
            env_endpoint().unwrap_or_else(|| format!("https://kms.{region}.amazonaws.com"));
        let endpoint = Endpoint::new(
            &endpoint,
            "AWS_ENDPOINT_URL_KMS",
            &env_bundle(),
            "AWS_CA_BUNDLE",
            None,
        )?;
        Self::with_endpoint(endpoint, region)
    }

    /// Credentials from the environment, for `endpoint`.
    pub(crate) fn with_endpoint(endpoint: Endpoint, region: String) -> Result<Self, CliError> {
        let bad =
            |setting: &str, why: &str| CliError::usage(format!("invalid setting {setting}: {why}"));
        let access_key_id =
            env("AWS_ACCESS_KEY_ID").ok_or_else(|| bad("AWS_ACCESS_KEY_ID", "not set"))?;
        let secret = Zeroizing::new(
            env("AWS_SECRET_ACCESS_KEY").ok_or_else(|| bad("AWS_SECRET_ACCESS_KEY", "not set"))?,
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::failed(format!("runtime: {e}")))?;
        Ok(Self {
            endpoint,
            region,
            access_key_id,
            secret,
            runtime,
        })
    }

    /// A SigV4-signed POST of `body` to `path` with `headers`: the status and body.
    pub(crate) fn post_signed(
        &self,
        path: &str,
        extra: &[(&str, &str)],
        body: String,
    ) -> Result<(u16, Bytes), String> {
        let authority = self.endpoint.authority();
        let mut headers = vec![("host", authority.as_str())];
        headers.extend_from_slice(extra);
        let signed = keyward_server::sigv4::Request {
            method: "POST",
            path,
            query: "",
            headers: &headers,
            body: body.as_bytes(),
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let (date, authorization) = keyward_server::sigv4::sign(
            &signed,
            &self.access_key_id,
            &self.secret,
            &self.region,
            "kms",
            now,
        )
        .map_err(|e| e.to_string())?;
        let mut request = hyper::Request::post(path);
        for (k, v) in headers {
            request = request.header(k, v);
        }
        let request = request
            .header("x-amz-date", date)
            .header("authorization", authorization)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        self.runtime.block_on(crate::https::send(
            &self.endpoint.host,
            self.endpoint.port,
            self.endpoint.tls.clone(),
            request,
            std::time::Duration::from_secs(60),
        ))
    }

    /// One KMS call; `Err` carries the AWS error type and message.
    pub(crate) fn call(
        &self,
        operation: &str,
        body: &Value,
    ) -> Result<Result<Value, (String, String)>, Error> {
        let io = |e: &dyn std::fmt::Display| {
            Error::Keyring(format!("KMS at {}: {e}", self.endpoint.authority()).into())
        };
        let target = format!("TrentService.{operation}");
        let (status, bytes) = self
            .post_signed(
                "/",
                &[
                    ("content-type", "application/x-amz-json-1.1"),
                    ("x-amz-target", target.as_str()),
                ],
                body.to_string(),
            )
            .map_err(|e| io(&e))?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| io(&e))?;
        if (200..300).contains(&status) {
            return Ok(Ok(value));
        }
        let kind = value["__type"].as_str().unwrap_or("UnknownError");
        let kind = kind.rsplit('#').next().unwrap_or(kind).to_owned();
        Ok(Err((
            kind,
            value["message"].as_str().unwrap_or("").to_owned(),
        )))
    }
}

fn context(ctx: &EncryptionContext) -> Value {
    Value::Object(ctx.iter().map(|(k, v)| (k.to_owned(), json!(v))).collect())
}

fn b64(v: &Value) -> Result<Vec<u8>, Error> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap_or(""))
        .map_err(|_| Error::Keyring("the KMS returned bad base64".into()))
}

fn refused((kind, message): (String, String)) -> Error {
    Error::Keyring(format!("the KMS refused: {kind}: {message}").into())
}

impl KmsClient for HttpKms {
    fn generate_data_key(
        &self,
        key_id: &str,
        ctx: &EncryptionContext,
    ) -> Result<(DataKey, Vec<u8>, String), Error> {
        let out = self
            .call(
                "GenerateDataKey",
                &json!({ "KeyId": key_id, "NumberOfBytes": 32, "EncryptionContext": context(ctx) }),
            )?
            .map_err(refused)?;
        let plaintext = Zeroizing::new(b64(&out["Plaintext"])?);
        Ok((
            data_key_from_kms(&plaintext)?,
            b64(&out["CiphertextBlob"])?,
            out["KeyId"].as_str().unwrap_or("").to_owned(),
        ))
    }

    fn encrypt(
        &self,
        key_id: &str,
        key: &DataKey,
        ctx: &EncryptionContext,
    ) -> Result<(Vec<u8>, String), Error> {
        let plaintext = base64::engine::general_purpose::STANDARD.encode(key.expose_secret());
        let out = self
            .call("Encrypt", &json!({ "KeyId": key_id, "Plaintext": plaintext, "EncryptionContext": context(ctx) }))?
            .map_err(refused)?;
        Ok((
            b64(&out["CiphertextBlob"])?,
            out["KeyId"].as_str().unwrap_or("").to_owned(),
        ))
    }

    fn decrypt(
        &self,
        key_id: &str,
        blob: &[u8],
        ctx: &EncryptionContext,
    ) -> Result<Option<(DataKey, String)>, Error> {
        let blob = base64::engine::general_purpose::STANDARD.encode(blob);
        let body =
            json!({ "KeyId": key_id, "CiphertextBlob": blob, "EncryptionContext": context(ctx) });
        match self.call("Decrypt", &body)? {
            Ok(out) => {
                let plaintext = Zeroizing::new(b64(&out["Plaintext"])?);
                Ok(Some((
                    data_key_from_kms(&plaintext)?,
                    out["KeyId"].as_str().unwrap_or("").to_owned(),
                )))
            }
            // A ciphertext this key cannot open is not ours: let other keyrings try.
            Err((kind, _))
                if kind == "InvalidCiphertextException" || kind == "IncorrectKeyException" =>
            {
                Ok(None)
            }
            Err(e) => Err(refused(e)),
        }
    }
}
