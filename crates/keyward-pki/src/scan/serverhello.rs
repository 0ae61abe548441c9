//! Reading what a server answers to a ClientHello: TLS records (RFC 8446 §5.1, RFC 5246
//! §6.2), alerts (RFC 8446 §6), ServerHello and HelloRetryRequest (RFC 8446 §4.1.3,
//! §4.1.4; RFC 5246 §7.4.1.3), and for TLS 1.2 and older the rest of the server's first
//! flight in the clear: Certificate (§7.4.2), CertificateStatus (RFC 6066 §8),
//! ServerKeyExchange (RFC 5246 §7.4.3, RFC 8422 §5.4), CertificateRequest (§7.4.4) and
//! ServerHelloDone (§7.4.5).
//!
//! Every length the server sends is checked against what remains and against a fixed
//! bound before anything is allocated; reading stops after [`MAX_FLIGHT`] bytes whatever
//! the server keeps sending.

use std::io::Read;

use super::WireError;
use super::clienthello::{ext, version};

/// The largest record accepted: 2^14 plus the expansion TLS 1.2 allows (RFC 5246 §6.2.3).
pub const MAX_RECORD: usize = (1 << 14) + 2048;
/// The largest handshake message accepted (a certificate chain is the big one).
pub const MAX_MESSAGE: usize = 256 * 1024;
/// The most bytes read for one answer.
pub const MAX_FLIGHT: usize = 512 * 1024;
/// The most certificates accepted in a chain.
pub const MAX_CERTIFICATES: usize = 32;

/// `SHA-256("HelloRetryRequest")`, the random of a HelloRetryRequest (RFC 8446 §4.1.3).
const HRR_RANDOM: [u8; 32] = [
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
    0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
];

/// A ServerHello or HelloRetryRequest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerHello {
    /// `legacy_version` (the version itself before TLS 1.3).
    pub legacy_version: u16,
    /// Whether it is a HelloRetryRequest.
    pub is_retry: bool,
    /// The chosen cipher suite.
    pub cipher_suite: u16,
    /// The chosen compression method (0 = none).
    pub compression: u8,
    /// The version in supported_versions, if any.
    pub selected_version: Option<u16>,
    /// The key_share group (the server's share, or the group a HelloRetryRequest asks for).
    pub key_share_group: Option<u16>,
    /// Whether extended_master_secret was echoed (RFC 7627).
    pub extended_master_secret: bool,
    /// Whether renegotiation_info was echoed (RFC 5746).
    pub secure_renegotiation: bool,
}

impl ServerHello {
    /// The negotiated version: supported_versions if present, else `legacy_version`.
    pub fn version(&self) -> u16 {
        self.selected_version.unwrap_or(self.legacy_version)
    }
}

/// The server's key exchange parameters in a TLS 1.2-or-older ServerKeyExchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKx {
    /// ECDHE on a named curve (RFC 8422 §5.4).
    Ecdhe {
        /// The curve's IANA id.
        group: u16,
    },
    /// Finite-field DHE (RFC 5246 §7.4.3).
    Dhe {
        /// The size of the prime `dh_p`, in bits.
        p_bits: u32,
    },
}

/// The server's answer, as far as it is in the clear.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flight {
    /// ServerHello or HelloRetryRequest.
    pub hello: ServerHello,
    /// The certificate chain (TLS 1.2 and older), DER, leaf first.
    pub certificates: Vec<Vec<u8>>,
    /// ServerKeyExchange parameters, if any.
    pub kx: Option<ServerKx>,
    /// Whether a CertificateRequest came (the server asks for a client certificate).
    pub client_cert_requested: bool,
    /// Whether a CertificateStatus (stapled OCSP response) came.
    pub ocsp_stapled: bool,
}

/// What came back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// A ServerHello or HelloRetryRequest, and what followed it.
    Hello(Flight),
    /// An alert before any ServerHello (RFC 8446 §6): the offer was refused.
    Alert {
        /// 1 warning, 2 fatal.
        level: u8,
        /// The AlertDescription, e.g. 40 handshake_failure, 70 protocol_version.
        description: u8,
    },
}

/// How far to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    /// Stop after the ServerHello.
    Hello,
    /// For TLS 1.2 and older, read on to ServerHelloDone.
    Flight,
}

/// A bounds-checked reader over a byte slice.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.0.len() {
            return Err(WireError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u24(&mut self) -> Result<usize, WireError> {
        let b = self.take(3)?;
        Ok(usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }
    fn vec8(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
    fn vec16(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
    fn vec24(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u24()?;
        self.take(n)
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn end(&self, what: &'static str) -> Result<(), WireError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(WireError::Malformed(what))
        }
    }
}

/// Parses a ServerHello or HelloRetryRequest body (after the 4-byte handshake header).
pub fn parse_server_hello(body: &[u8]) -> Result<ServerHello, WireError> {
    let mut b = Bytes(body);
    let legacy_version = b.u16()?;
    let random = b.take(32)?;
    let session_id = b.vec8()?;
    if session_id.len() > 32 {
        return Err(WireError::Malformed("session id longer than 32 bytes"));
    }
    let mut hello = ServerHello {
        legacy_version,
        is_retry: random == HRR_RANDOM,
        cipher_suite: b.u16()?,
        compression: b.u8()?,
        ..ServerHello::default()
    };
    if b.is_empty() {
        // No extensions: allowed before TLS 1.3 (RFC 5246 §7.4.1.3).
        return Ok(hello);
    }
    let mut exts = Bytes(b.vec16()?);
    b.end("bytes after the ServerHello extensions")?;
    let mut seen = Vec::new();
    while !exts.is_empty() {
        let kind = exts.u16()?;
        let mut data = Bytes(exts.vec16()?);
        if seen.contains(&kind) {
            return Err(WireError::Malformed("duplicate extension in ServerHello"));
        }
        seen.push(kind);
        match kind {
            ext::SUPPORTED_VERSIONS => {
                hello.selected_version = Some(data.u16()?);
                data.end("supported_versions")?;
            }
            ext::KEY_SHARE => {
                hello.key_share_group = Some(data.u16()?);
                if !hello.is_retry {
                    let share = data.vec16()?;
                    if share.is_empty() {
                        return Err(WireError::Malformed("empty key share"));
                    }
                }
                data.end("key_share")?;
            }
            ext::EXTENDED_MASTER_SECRET => {
                data.end("extended_master_secret")?;
                hello.extended_master_secret = true;
            }
            ext::RENEGOTIATION_INFO => {
                let _ = data.vec8()?;
                data.end("renegotiation_info")?;
                hello.secure_renegotiation = true;
            }
            _ => {}
        }
    }
    if hello.is_retry && hello.selected_version != Some(version::TLS13) {
        return Err(WireError::Malformed("HelloRetryRequest without TLS 1.3"));
    }
    Ok(hello)
}

/// Parses a TLS 1.2-or-older Certificate body: DER certificates, leaf first.
pub fn parse_certificate(body: &[u8]) -> Result<Vec<Vec<u8>>, WireError> {
    let mut b = Bytes(body);
    let mut list = Bytes(b.vec24()?);
    b.end("bytes after the certificate list")?;
    let mut out = Vec::new();
    while !list.is_empty() {
        if out.len() == MAX_CERTIFICATES {
            return Err(WireError::TooLong("certificate chain"));
        }
        let cert = list.vec24()?;
        if cert.is_empty() {
            return Err(WireError::Malformed("empty certificate"));
        }
        out.push(cert.to_vec());
    }
    Ok(out)
}

/// Parses the parameters at the start of a ServerKeyExchange for an ECDHE suite
/// (`ecdhe`) or a DHE one; the signature after them is not checked.
pub fn parse_server_key_exchange(body: &[u8], ecdhe: bool) -> Result<ServerKx, WireError> {
    let mut b = Bytes(body);
    if ecdhe {
        // ECParameters: curve_type named_curve (3), then the NamedCurve.
        if b.u8()? != 3 {
            return Err(WireError::Malformed(
                "ECDHE parameters not on a named curve",
            ));
        }
        let group = b.u16()?;
        let point = b.vec8()?;
        if point.is_empty() {
            return Err(WireError::Malformed("empty ECDH public value"));
        }
        Ok(ServerKx::Ecdhe { group })
    } else {
        let p = b.vec16()?;
        let _g = b.vec16()?;
        let _ys = b.vec16()?;
        let leading = p.iter().position(|&x| x != 0).unwrap_or(p.len());
        let significant = &p[leading..];
        let Some(first) = significant.first() else {
            return Err(WireError::Malformed("zero DH prime"));
        };
        let bits = u32::try_from(significant.len() * 8)
            .map_err(|_| WireError::TooLong("DH prime"))?
            - first.leading_zeros();
        Ok(ServerKx::Dhe { p_bits: bits })
    }
}

/// Reads exactly `buf.len()` bytes, counting them against `budget`.
fn read_exact(r: &mut impl Read, buf: &mut [u8], budget: &mut usize) -> Result<(), WireError> {
    *budget = budget
        .checked_sub(buf.len())
        .ok_or(WireError::TooLong("server flight"))?;
    r.read_exact(buf).map_err(WireError::from_io)
}

/// One record: (content type, fragment).
fn read_record(r: &mut impl Read, budget: &mut usize) -> Result<(u8, Vec<u8>), WireError> {
    let mut header = [0u8; 5];
    read_exact(r, &mut header, budget)?;
    let kind = header[0];
    if !(20..=24).contains(&kind) {
        return Err(WireError::Malformed("not a TLS record"));
    }
    if header[1] != 3 {
        return Err(WireError::Malformed("record version is not 3.x"));
    }
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    if len > MAX_RECORD {
        return Err(WireError::TooLong("record"));
    }
    if len == 0 && kind != 23 {
        return Err(WireError::Malformed("empty record"));
    }
    let mut fragment = vec![0u8; len];
    read_exact(r, &mut fragment, budget)?;
    Ok((kind, fragment))
}

/// Reads the server's answer to a ClientHello from `r`, as far as `depth` says.
///
/// A server that closes, stalls (per the reader's timeout) or sends something that is not
/// TLS gives an error; an alert before any ServerHello is [`Response::Alert`].
pub fn read_response(r: &mut impl Read, depth: Depth) -> Result<Response, WireError> {
    let mut budget = MAX_FLIGHT;
    let mut pending: Vec<u8> = Vec::new();
    let mut flight: Option<Flight> = None;
    loop {
        // Handshake messages already complete in `pending`.
        loop {
            let mut b = Bytes(&pending);
            let Ok(kind) = b.u8() else { break };
            let Ok(len) = b.u24() else { break };
            if len > MAX_MESSAGE {
                return Err(WireError::TooLong("handshake message"));
            }
            let Ok(body) = b.take(len) else { break };
            let body = body.to_vec();
            pending.drain(..4 + len);
            match (&mut flight, kind) {
                (None, 2) => {
                    let hello = parse_server_hello(&body)?;
                    let done = depth == Depth::Hello
                        || hello.is_retry
                        || hello.version() >= version::TLS13;
                    let f = Flight {
                        hello,
                        ..Flight::default()
                    };
                    if done {
                        return Ok(Response::Hello(f));
                    }
                    flight = Some(f);
                }
                (None, _) => return Err(WireError::UnexpectedMessage(kind)),
                (Some(f), 11) => f.certificates = parse_certificate(&body)?,
                (Some(f), 22) => f.ocsp_stapled = true,
                (Some(f), 12) => {
                    let suite = super::suites::suite(f.hello.cipher_suite);
                    let ecdhe = suite.is_some_and(|s| s.is_ecdhe());
                    let dhe = suite.is_some_and(|s| s.is_dhe());
                    if ecdhe || dhe {
                        f.kx = Some(parse_server_key_exchange(&body, ecdhe)?);
                    }
                }
                (Some(f), 13) => f.client_cert_requested = true,
                (Some(f), 14) => return Ok(Response::Hello(std::mem::take(f))),
                (Some(_), _) => return Err(WireError::UnexpectedMessage(kind)),
            }
        }
        let (kind, fragment) = match read_record(r, &mut budget) {
            Ok(record) => record,
            // What was read of the flight still says what the server chose.
            Err(WireError::Closed | WireError::Timeout) if flight.is_some() => {
                return Ok(Response::Hello(flight.unwrap_or_default()));
            }
            Err(e) => return Err(e),
        };
        match kind {
            21 => {
                let mut b = Bytes(&fragment);
                let (level, description) = (b.u8()?, b.u8()?);
                if let Some(f) = flight {
                    return Ok(Response::Hello(f));
                }
                return Ok(Response::Alert { level, description });
            }
            22 => {
                if pending.len() + fragment.len() > MAX_MESSAGE + 4 {
                    return Err(WireError::TooLong("handshake message"));
                }
                pending.extend_from_slice(&fragment);
            }
            // ChangeCipherSpec (TLS 1.3 middlebox compatibility) carries nothing for us.
            20 => {}
            _ => return Err(WireError::UnexpectedRecord(kind)),
        }
    }
}

#[cfg(test)]
mod tests;
