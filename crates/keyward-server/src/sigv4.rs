//! Verifying AWS Signature Version 4 on the server.
//!
//! Specification: the AWS IAM guide, "Create a signed AWS API request". The server
//! rebuilds the canonical request from what it received (method, path, query, the signed
//! headers as sent, `Host` with its port, the SHA-256 of the raw body), derives the signing
//! key from the caller's secret, and compares signatures in constant time.

use aws_lc_rs::{constant_time, digest, hmac};
use zeroize::Zeroizing;

/// Accepted clock skew between the client and the server: 15 minutes, as AWS.
pub const MAX_SKEW_SECONDS: i64 = 15 * 60;

/// Why a request was refused. Each maps to the error a client of AWS expects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("Request is missing Authentication Token")]
    MissingAuthenticationToken,
    /// The `Authorization` header or a header it needs is malformed or missing.
    #[error("{0}")]
    IncompleteSignature(String),
    /// The access key id is not known.
    #[error("The security token included in the request is invalid.")]
    UnrecognizedClient,
    /// The signature does not match.
    #[error(
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
    )]
    InvalidSignature,
    /// The request was signed too long ago or too far in the future.
    #[error("{0}")]
    SignatureExpired(String),
}

impl AuthError {
    /// The AWS error type (`__type`) a client expects.
    pub fn aws_type(&self) -> &'static str {
        match self {
            Self::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            Self::IncompleteSignature(_) => "IncompleteSignatureException",
            Self::UnrecognizedClient => "UnrecognizedClientException",
            Self::InvalidSignature | Self::SignatureExpired(_) => "InvalidSignatureException",
        }
    }
}

/// An HTTP request as received, for verification.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `POST`, ...
    pub method: &'a str,
    /// The path as sent (already percent-encoded by the client), `/` for KMS.
    pub path: &'a str,
    /// The query string as sent, without `?`.
    pub query: &'a str,
    /// Every header as received: names in any case, repeated names allowed.
    pub headers: &'a [(&'a str, &'a str)],
    /// The raw body.
    pub body: &'a [u8],
}

/// Who signed a verified request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The access key id.
    pub access_key_id: String,
    /// The region the request was signed for.
    pub region: String,
}

/// The parsed `Authorization` header.
struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn incomplete(why: &str) -> AuthError {
    AuthError::IncompleteSignature(why.to_owned())
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, AuthError> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ").ok_or_else(|| {
        incomplete("Authorization header requires the AWS4-HMAC-SHA256 algorithm")
    })?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| incomplete("Authorization header is malformed"))?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => return Err(incomplete("Authorization header has an unknown component")),
        }
    }
    let missing = |what| incomplete(&format!("Authorization header requires '{what}' parameter"));
    let credential = credential.ok_or_else(|| missing("Credential"))?;
    let signed = signed.ok_or_else(|| missing("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| missing("Signature"))?;
    let mut scope = credential.split('/');
    let (Some(access_key_id), Some(date), Some(region), Some(service), Some("aws4_request"), None) = (
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
    ) else {
        return Err(incomplete(
            "Credential should be scoped to a valid region, service and aws4_request",
        ));
    };
    let signed_headers: Vec<&str> = signed.split(';').collect();
    if signed_headers
        .iter()
        .any(|h| h.is_empty() || h.bytes().any(|c| c.is_ascii_uppercase()))
        || !signed_headers.is_sorted()
    {
        return Err(incomplete(
            "SignedHeaders must be lowercase, sorted names separated by ';'",
        ));
    }
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers,
        signature,
    })
}

/// A header's value as SigV4 canonicalizes it: every value for the name, trimmed, inner
/// runs of spaces collapsed, joined with commas.
fn canonical_header(headers: &[(&str, &str)], name: &str) -> Option<String> {
    let mut out = String::new();
    push_canonical_header(&mut out, headers, name).then_some(out)
}

/// Appends `name`'s canonical value to `out`; false if there is no such header.
fn push_canonical_header(out: &mut String, headers: &[(&str, &str)], name: &str) -> bool {
    let mut found = false;
    for (_, value) in headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)) {
        if found {
            out.push(',');
        }
        found = true;
        for (i, word) in value.split_whitespace().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(word);
        }
    }
    found
}

/// Parses `YYYYMMDD'T'HHMMSS'Z'` into Unix seconds.
fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

fn hmac(key: &[u8], data: &[u8]) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
}

/// The canonical request of `req` for the given signed headers.
fn canonical_request(req: &Request<'_>, signed_headers: &[&str]) -> Result<String, AuthError> {
    let mut query: Vec<&str> = req.query.split('&').filter(|p| !p.is_empty()).collect();
    query.sort_unstable();
    let mut out = String::with_capacity(512);
    for part in [req.method, "\n", req.path, "\n", &query.join("&"), "\n"] {
        out.push_str(part);
    }
    for name in signed_headers {
        out.push_str(name);
        out.push(':');
        if !push_canonical_header(&mut out, req.headers, name) {
            return Err(incomplete(&format!("signed header '{name}' is missing")));
        }
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed_headers.join(";"));
    out.push('\n');
    out.push_str(&hex(digest::digest(&digest::SHA256, req.body).as_ref()));
    Ok(out)
}

/// The hex signature of `req` over `signed_headers` (sorted, lowercase).
fn signature(
    req: &Request<'_>,
    signed_headers: &[&str],
    secret: &str,
    amz_date: &str,
    region: &str,
    service: &str,
) -> Result<String, AuthError> {
    let date = amz_date
        .get(..8)
        .ok_or_else(|| incomplete("X-Amz-Date is too short"))?;
    let canonical = canonical_request(req, signed_headers)?;
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
    );
    let k_secret = Zeroizing::new(format!("AWS4{secret}"));
    let k_date = hmac(k_secret.as_bytes(), date.as_bytes());
    let k_region = hmac(k_date.as_ref(), region.as_bytes());
    let k_service = hmac(k_region.as_ref(), service.as_bytes());
    let k_signing = hmac(k_service.as_ref(), b"aws4_request");
    Ok(hex(hmac(k_signing.as_ref(), to_sign.as_bytes()).as_ref()))
}

/// Formats Unix seconds as `YYYYMMDD'T'HHMMSS'Z'`.
pub fn amz_date(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    // Civil date from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The request an AWS SDK sends for the KMS `operation` (`Encrypt`, `Decrypt`, ...) with
/// JSON `body`, to the server at `authority` (`host:port`), signed at `now` (Unix
/// seconds). For keyward's own clients, load generators and tests.
pub fn kms_request(
    authority: &str,
    operation: &str,
    body: String,
    access_key_id: &str,
    secret: &str,
    region: &str,
    now: i64,
) -> Result<hyper::Request<http_body_util::Full<bytes::Bytes>>, AuthError> {
    let target = format!("TrentService.{operation}");
    let headers = [
        ("content-type", "application/x-amz-json-1.1"),
        ("host", authority),
        ("x-amz-target", target.as_str()),
    ];
    let to_sign = Request {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        body: body.as_bytes(),
    };
    let (date, authorization) = sign(&to_sign, access_key_id, secret, region, "kms", now)?;
    let mut builder = hyper::Request::post("/");
    for (k, v) in headers {
        builder = builder.header(k, v);
    }
    builder
        .header("x-amz-date", date)
        .header("authorization", authorization)
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .map_err(|_| AuthError::IncompleteSignature("a header value that HTTP cannot carry".into()))
}

/// Signs a request as an AWS SDK would: returns the `X-Amz-Date` and `Authorization`
/// header values for `req`, whose headers must already include `host` and every other
/// header to sign (all of `req.headers` are signed, plus `x-amz-date`).
pub fn sign(
    req: &Request<'_>,
    access_key_id: &str,
    secret: &str,
    region: &str,
    service: &str,
    now: i64,
) -> Result<(String, String), AuthError> {
    let date = amz_date(now);
    let mut headers: Vec<(&str, &str)> = req.headers.to_vec();
    headers.push(("x-amz-date", &date));
    let mut names: Vec<String> = headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    names.sort();
    names.dedup();
    let signed: Vec<&str> = names.iter().map(String::as_str).collect();
    let with_date = Request {
        headers: &headers,
        ..*req
    };
    let sig = signature(&with_date, &signed, secret, &date, region, service)?;
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={access_key_id}/{}/{region}/{service}/aws4_request, SignedHeaders={}, Signature={sig}",
        &date[..8],
        signed.join(";")
    );
    Ok((date, auth))
}

/// Headers that must be signed whenever they are sent: they choose what a request does,
/// so an unsigned one would let a captured request be replayed as another operation.
const SIGNED_IF_PRESENT: [&str; 3] = ["content-type", "x-amz-target", "x-amz-security-token"];

/// The access key id a request's `Authorization` header names, if it has one.
pub fn access_key_id<'a>(headers: &[(&str, &'a str)]) -> Option<&'a str> {
    let (_, value) = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))?;
    let credential = value.split("Credential=").nth(1)?;
    credential.split('/').next()
}

/// Verifies `req`'s SigV4 signature for `service` in `region` at time `now` (Unix
/// seconds), finding the caller's secret with `secret_for`.
pub fn verify(
    req: &Request<'_>,
    service: &str,
    region: &str,
    now: i64,
    secret_for: impl FnOnce(&str) -> Option<Zeroizing<String>>,
) -> Result<Verified, AuthError> {
    let auth = canonical_header(req.headers, "authorization")
        .ok_or(AuthError::MissingAuthenticationToken)?;
    let auth = parse_authorization(&auth)?;
    if auth.service != service {
        return Err(incomplete(&format!(
            "Credential should be scoped to correct service: '{service}'"
        )));
    }
    if auth.region != region {
        return Err(incomplete(&format!(
            "Credential should be scoped to a valid region, not '{}'",
            auth.region
        )));
    }
    for required in ["host", "x-amz-date"] {
        if !auth.signed_headers.contains(&required) {
            return Err(incomplete(&format!("'{required}' must be a signed header")));
        }
    }
    for name in SIGNED_IF_PRESENT {
        if canonical_header(req.headers, name).is_some() && !auth.signed_headers.contains(&name) {
            return Err(incomplete(&format!("'{name}' must be a signed header")));
        }
    }
    let amz_date = canonical_header(req.headers, "x-amz-date")
        .ok_or_else(|| incomplete("X-Amz-Date is missing"))?;
    let signed_at = parse_amz_date(&amz_date)
        .ok_or_else(|| incomplete("X-Amz-Date must be YYYYMMDD'T'HHMMSS'Z'"))?;
    if !amz_date.starts_with(auth.date) || auth.date.len() != 8 {
        return Err(incomplete(
            "Date in Credential scope does not match X-Amz-Date",
        ));
    }
    if (now - signed_at).abs() > MAX_SKEW_SECONDS {
        return Err(AuthError::SignatureExpired(format!(
            "Signature expired: {amz_date} is now outside the {} minute window around the server's time",
            MAX_SKEW_SECONDS / 60
        )));
    }

    let secret = secret_for(auth.access_key_id).ok_or(AuthError::UnrecognizedClient)?;
    let expected = signature(
        req,
        &auth.signed_headers,
        &secret,
        &amz_date,
        auth.region,
        auth.service,
    )?;
    constant_time::verify_slices_are_equal(expected.as_bytes(), auth.signature.as_bytes())
        .map_err(|_| AuthError::InvalidSignature)?;
    Ok(Verified {
        access_key_id: auth.access_key_id.to_owned(),
        region: auth.region.to_owned(),
    })
}

#[cfg(test)]
mod tests;
