//! What a certificate says: serial, SPIFFE ID, names, validity; and the principal a peer
//! certificate stands for.

use std::net::IpAddr;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer as _;

use crate::{Error, SpiffeId};

/// The facts keyward reads from a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// Serial number, big-endian bytes.
    pub serial: Vec<u8>,
    /// The SPIFFE ID, when the certificate has exactly one URI SAN and it is one.
    pub spiffe_id: Option<SpiffeId>,
    /// How many URI SANs it has (an SVID has exactly one).
    pub uri_count: usize,
    /// The subject common name.
    pub common_name: Option<String>,
    /// DNS SANs.
    pub dns: Vec<String>,
    /// IP SANs.
    pub ips: Vec<IpAddr>,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// Whether basicConstraints says cA.
    pub is_ca: bool,
    /// The SubjectPublicKeyInfo (DER).
    pub spki: Vec<u8>,
}

impl CertInfo {
    /// Parses a DER certificate.
    pub fn parse(der: &[u8]) -> Result<Self, Error> {
        let (rest, cert) = x509_parser::certificate::X509Certificate::from_der(der)
            .map_err(|_| Error::Malformed("not an X.509 certificate".into()))?;
        if !rest.is_empty() {
            return Err(Error::Malformed(
                "trailing data after the certificate".into(),
            ));
        }
        let mut uris = Vec::new();
        let (mut dns, mut ips) = (Vec::new(), Vec::new());
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(u) => uris.push(*u),
                    GeneralName::DNSName(d) => dns.push((*d).to_owned()),
                    GeneralName::IPAddress(b) => {
                        if let Ok(v4) = <[u8; 4]>::try_from(*b) {
                            ips.push(IpAddr::from(v4));
                        } else if let Ok(v6) = <[u8; 16]>::try_from(*b) {
                            ips.push(IpAddr::from(v6));
                        }
                    }
                    _ => {}
                }
            }
        }
        let spiffe_id = match uris.as_slice() {
            [one] => SpiffeId::parse(one).ok(),
            _ => None,
        };
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);
        let is_ca = cert
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|bc| bc.value.ca);
        Ok(Self {
            serial: cert.raw_serial().to_vec(),
            spiffe_id,
            uri_count: uris.len(),
            common_name,
            dns,
            ips,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            is_ca,
            spki: cert.public_key().raw.to_vec(),
        })
    }

    /// The principal this certificate stands for: its SPIFFE ID, else its common name.
    pub fn principal(&self) -> Option<String> {
        self.spiffe_id
            .as_ref()
            .map(|id| id.as_str().to_owned())
            .or_else(|| self.common_name.clone())
    }

    /// The serial number in lowercase hex, as `keyward cert` prints and takes it.
    pub fn serial_hex(&self) -> String {
        serial_hex(&self.serial)
    }

    /// The lifetime in seconds.
    pub fn lifetime(&self) -> i64 {
        self.not_after - self.not_before
    }
}

/// A serial number in lowercase hex, leading zero bytes dropped.
pub fn serial_hex(serial: &[u8]) -> String {
    let start = serial.iter().position(|&b| b != 0).unwrap_or(serial.len());
    serial[start..].iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a serial number written in hex (colons allowed).
pub fn parse_serial(hex: &str) -> Result<Vec<u8>, Error> {
    let digits: String = hex.chars().filter(|c| *c != ':').collect();
    let bad = || Error::Refused(format!("{hex:?} is not a serial number in hex"));
    if digits.is_empty() || digits.len() > 40 {
        return Err(bad());
    }
    let digits = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits
    };
    let bytes: Result<Vec<u8>, _> = (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(digits.get(i..i + 2).unwrap_or("x"), 16))
        .collect();
    let bytes = bytes.map_err(|_| bad())?;
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    Ok(bytes[start..].to_vec())
}
