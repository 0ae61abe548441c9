//! Writing ClientHello messages by hand (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2), so that any
//! protocol version from SSL 3.0 to TLS 1.3 can be offered, with exactly the cipher suites
//! and groups a probe wants.
//!
//! Only the writing side: nothing here reads what a peer sent.

use super::WireError;

/// Protocol version code points (RFC 8446 §B.1 and earlier).
pub mod version {
    /// SSL 3.0 (RFC 6101).
    pub const SSL3: u16 = 0x0300;
    /// TLS 1.0 (RFC 2246).
    pub const TLS10: u16 = 0x0301;
    /// TLS 1.1 (RFC 4346).
    pub const TLS11: u16 = 0x0302;
    /// TLS 1.2 (RFC 5246).
    pub const TLS12: u16 = 0x0303;
    /// TLS 1.3 (RFC 8446).
    pub const TLS13: u16 = 0x0304;

    /// The name sslyze and Mozilla's profiles use: `SSLv3`, `TLSv1`, ... `TLSv1.3`.
    pub fn name(v: u16) -> &'static str {
        match v {
            SSL3 => "SSLv3",
            TLS10 => "TLSv1",
            TLS11 => "TLSv1.1",
            TLS12 => "TLSv1.2",
            TLS13 => "TLSv1.3",
            _ => "unknown",
        }
    }
}

/// Extension types (IANA "TLS ExtensionType Values").
pub mod ext {
    /// server_name (RFC 6066 §3).
    pub const SERVER_NAME: u16 = 0;
    /// status_request (RFC 6066 §8).
    pub const STATUS_REQUEST: u16 = 5;
    /// supported_groups (RFC 8422 §5.1.1, RFC 8446 §4.2.7).
    pub const SUPPORTED_GROUPS: u16 = 10;
    /// ec_point_formats (RFC 8422 §5.1.2).
    pub const EC_POINT_FORMATS: u16 = 11;
    /// signature_algorithms (RFC 8446 §4.2.3).
    pub const SIGNATURE_ALGORITHMS: u16 = 13;
    /// extended_master_secret (RFC 7627).
    pub const EXTENDED_MASTER_SECRET: u16 = 23;
    /// supported_versions (RFC 8446 §4.2.1).
    pub const SUPPORTED_VERSIONS: u16 = 43;
    /// psk_key_exchange_modes (RFC 8446 §4.2.9).
    pub const PSK_KEY_EXCHANGE_MODES: u16 = 45;
    /// key_share (RFC 8446 §4.2.8).
    pub const KEY_SHARE: u16 = 51;
    /// renegotiation_info (RFC 5746).
    pub const RENEGOTIATION_INFO: u16 = 0xff01;
}

/// Signature schemes offered (RFC 8446 §4.2.3): ECDSA, RSA-PSS, PKCS#1, EdDSA, and the
/// SHA-1 ones so that old servers still answer.
const SIGNATURE_SCHEMES: &[u16] = &[
    0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0807, 0x0808, 0x0201,
    0x0203,
];

/// A ClientHello to be written; [`ClientHello::encode`] makes the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientHello {
    /// `legacy_version` (for TLS 1.3, 0x0303 with supported_versions).
    pub version: u16,
    /// The version in the record header.
    pub record_version: u16,
    /// The client random.
    pub random: [u8; 32],
    /// The legacy session id (32 random bytes for TLS 1.3 middlebox compatibility).
    pub session_id: Vec<u8>,
    /// Offered cipher suites, in order.
    pub cipher_suites: Vec<u16>,
    /// Extensions in order, as (type, body).
    pub extensions: Vec<(u16, Vec<u8>)>,
}

/// What a probe's ClientHello offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer<'a> {
    /// The protocol version to offer (TLS 1.3 through supported_versions).
    pub version: u16,
    /// Cipher suites.
    pub suites: &'a [u16],
    /// supported_groups.
    pub groups: &'a [u16],
    /// TLS 1.3 key shares as (group, public value); may be empty (then a server that
    /// supports one of `groups` answers with a HelloRetryRequest).
    pub key_shares: &'a [(u16, Vec<u8>)],
    /// server_name, when the target is a DNS name.
    pub sni: Option<&'a str>,
}

fn random_bytes<const N: usize>() -> Result<[u8; N], WireError> {
    let mut out = [0u8; N];
    aws_lc_rs::rand::fill(&mut out).map_err(|_| WireError::Random)?;
    Ok(out)
}

/// A random X25519 public value: any 32 bytes are one (RFC 7748 §5), enough to be
/// answered with a ServerHello; the scanner never finishes the handshake.
pub fn x25519_share() -> Result<Vec<u8>, WireError> {
    Ok(random_bytes::<32>()?.to_vec())
}

impl ClientHello {
    /// The ClientHello for `offer`, with fresh randoms.
    pub fn new(offer: &Offer<'_>) -> Result<Self, WireError> {
        let tls13 = offer.version >= version::TLS13;
        let mut extensions = Vec::new();
        if let Some(name) = offer.sni {
            // ServerNameList with one host_name (RFC 6066 §3).
            let mut entry = vec![0u8];
            put_vec16(&mut entry, name.as_bytes())?;
            let mut body = Vec::new();
            put_vec16(&mut body, &entry)?;
            extensions.push((ext::SERVER_NAME, body));
        }
        let mut groups = Vec::new();
        put_vec16(&mut groups, &u16s(offer.groups))?;
        extensions.push((ext::SUPPORTED_GROUPS, groups));
        extensions.push((ext::EC_POINT_FORMATS, vec![1, 0]));
        let mut sigs = Vec::new();
        put_vec16(&mut sigs, &u16s(SIGNATURE_SCHEMES))?;
        extensions.push((ext::SIGNATURE_ALGORITHMS, sigs));
        // OCSP status request with no responder ids and no extensions.
        extensions.push((ext::STATUS_REQUEST, vec![1, 0, 0, 0, 0]));
        extensions.push((ext::EXTENDED_MASTER_SECRET, Vec::new()));
        extensions.push((ext::RENEGOTIATION_INFO, vec![0]));
        if tls13 {
            let mut versions = Vec::new();
            put_vec8(&mut versions, &u16s(&[version::TLS13]))?;
            extensions.push((ext::SUPPORTED_VERSIONS, versions));
            extensions.push((ext::PSK_KEY_EXCHANGE_MODES, vec![1, 1]));
            let mut shares = Vec::new();
            for (group, public) in offer.key_shares {
                shares.extend_from_slice(&group.to_be_bytes());
                put_vec16(&mut shares, public)?;
            }
            let mut body = Vec::new();
            put_vec16(&mut body, &shares)?;
            extensions.push((ext::KEY_SHARE, body));
        }
        Ok(Self {
            version: offer.version.min(version::TLS12),
            record_version: offer.version.min(version::TLS10),
            random: random_bytes()?,
            session_id: if tls13 {
                random_bytes::<32>()?.to_vec()
            } else {
                Vec::new()
            },
            cipher_suites: offer.suites.to_vec(),
            extensions,
        })
    }

    /// The handshake message (type 1, RFC 8446 §4) without the record header.
    pub fn handshake(&self) -> Result<Vec<u8>, WireError> {
        let mut body = Vec::new();
        body.extend_from_slice(&self.version.to_be_bytes());
        body.extend_from_slice(&self.random);
        put_vec8(&mut body, &self.session_id)?;
        put_vec16(&mut body, &u16s(&self.cipher_suites))?;
        put_vec8(&mut body, &[0])?; // the null compression method only
        let mut exts = Vec::new();
        for (kind, data) in &self.extensions {
            exts.extend_from_slice(&kind.to_be_bytes());
            put_vec16(&mut exts, data)?;
        }
        put_vec16(&mut body, &exts)?;
        let len = u32::try_from(body.len())
            .ok()
            .filter(|l| *l < 1 << 24)
            .ok_or(WireError::TooLong("ClientHello"))?;
        let mut msg = vec![1u8];
        msg.extend_from_slice(&len.to_be_bytes()[1..]);
        msg.extend_from_slice(&body);
        Ok(msg)
    }

    /// The whole record (RFC 8446 §5.1, content type handshake), ready to write.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let msg = self.handshake()?;
        if msg.len() > 1 << 14 {
            return Err(WireError::TooLong("ClientHello"));
        }
        let mut record = vec![22u8];
        record.extend_from_slice(&self.record_version.to_be_bytes());
        put_vec16(&mut record, &msg)?;
        Ok(record)
    }
}

fn u16s(values: &[u16]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

fn put_vec8(out: &mut Vec<u8>, data: &[u8]) -> Result<(), WireError> {
    let len = u8::try_from(data.len()).map_err(|_| WireError::TooLong("vector"))?;
    out.push(len);
    out.extend_from_slice(data);
    Ok(())
}

fn put_vec16(out: &mut Vec<u8>, data: &[u8]) -> Result<(), WireError> {
    let len = u16::try_from(data.len()).map_err(|_| WireError::TooLong("vector"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be16(b: &[u8], at: usize) -> usize {
        usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
    }

    /// Walks the record like a server would and returns the extensions found.
    type Parsed = (u16, Vec<u16>, Vec<(u16, Vec<u8>)>);

    fn parse(record: &[u8]) -> Parsed {
        assert_eq!(record[0], 22);
        assert_eq!(be16(record, 3), record.len() - 5, "record length");
        let hs = &record[5..];
        assert_eq!(hs[0], 1);
        let len = usize::from(hs[1]) << 16 | be16(hs, 2);
        assert_eq!(len, hs.len() - 4, "handshake length");
        let b = &hs[4..];
        let version = u16::from_be_bytes([b[0], b[1]]);
        let mut at = 34;
        at += 1 + usize::from(b[at]);
        let n = be16(b, at);
        let suites = (0..n / 2)
            .map(|i| u16::from_be_bytes([b[at + 2 + 2 * i], b[at + 3 + 2 * i]]))
            .collect();
        at += 2 + n;
        assert_eq!(&b[at..at + 2], &[1, 0], "null compression only");
        at += 2;
        let total = be16(b, at);
        at += 2;
        assert_eq!(total, b.len() - at, "extensions length");
        let mut exts = Vec::new();
        while at < b.len() {
            let kind = u16::from_be_bytes([b[at], b[at + 1]]);
            let n = be16(b, at + 2);
            exts.push((kind, b[at + 4..at + 4 + n].to_vec()));
            at += 4 + n;
        }
        assert_eq!(at, b.len());
        (version, suites, exts)
    }

    #[test]
    fn tls13_hello_has_versions_shares_and_sni() {
        let share = x25519_share().unwrap();
        let hello = ClientHello::new(&Offer {
            version: version::TLS13,
            suites: &[0x1301, 0x1302],
            groups: &[0x001D, 0x0017],
            key_shares: &[(0x001D, share.clone())],
            sni: Some("localhost"),
        })
        .unwrap();
        let record = hello.encode().unwrap();
        assert_eq!(
            &record[1..3],
            &[3, 1],
            "record version TLS 1.0 for compatibility"
        );
        let (version, suites, exts) = parse(&record);
        assert_eq!(version, version::TLS12);
        assert_eq!(suites, [0x1301, 0x1302]);
        let get = |k| exts.iter().find(|(t, _)| *t == k).unwrap().1.clone();
        assert_eq!(get(ext::SUPPORTED_VERSIONS), [2, 3, 4]);
        assert_eq!(get(ext::SUPPORTED_GROUPS), [0, 4, 0, 0x1D, 0, 0x17]);
        let mut ks = vec![0, 36, 0, 0x1D, 0, 32];
        ks.extend_from_slice(&share);
        assert_eq!(get(ext::KEY_SHARE), ks);
        let mut sni = vec![0, 12, 0, 0, 9];
        sni.extend_from_slice(b"localhost");
        assert_eq!(get(ext::SERVER_NAME), sni);
        assert_eq!(hello.session_id.len(), 32);
    }

    #[test]
    fn legacy_hello_has_no_tls13_extensions() {
        for v in [version::SSL3, version::TLS10, version::TLS12] {
            let hello = ClientHello::new(&Offer {
                version: v,
                suites: &[0x002F],
                groups: &[],
                key_shares: &[],
                sni: None,
            })
            .unwrap();
            let record = hello.encode().unwrap();
            assert_eq!(
                u16::from_be_bytes([record[1], record[2]]),
                v.min(version::TLS10)
            );
            let (version, suites, exts) = parse(&record);
            assert_eq!((version, suites), (v, vec![0x002F]));
            assert!(exts.iter().all(|(t, _)| {
                ![ext::SUPPORTED_VERSIONS, ext::KEY_SHARE, ext::SERVER_NAME].contains(t)
            }));
            assert!(hello.session_id.is_empty());
        }
    }

    proptest::proptest! {
        #[test]
        fn what_is_offered_is_what_is_encoded(
            v in proptest::sample::select(vec![version::SSL3, version::TLS10, version::TLS11, version::TLS12, version::TLS13]),
            suites in proptest::collection::vec(proptest::prelude::any::<u16>(), 1..200),
            groups in proptest::collection::vec(proptest::prelude::any::<u16>(), 0..40),
            shares in proptest::collection::vec((proptest::prelude::any::<u16>(), proptest::collection::vec(proptest::prelude::any::<u8>(), 1..200)), 0..4),
            sni in proptest::option::of("[a-z]{1,20}(\\.[a-z]{1,10}){0,3}"),
        ) {
            let hello = ClientHello::new(&Offer {
                version: v,
                suites: &suites,
                groups: &groups,
                key_shares: &shares,
                sni: sni.as_deref(),
            })
            .unwrap();
            let (version, got, exts) = parse(&hello.encode().unwrap());
            proptest::prop_assert_eq!(version, v.min(version::TLS12));
            proptest::prop_assert_eq!(got, suites);
            let get = |k| exts.iter().find(|(t, _)| *t == k).map(|(_, d)| d.clone());
            let mut want = u16::try_from(groups.len() * 2).unwrap().to_be_bytes().to_vec();
            want.extend(u16s(&groups));
            proptest::prop_assert_eq!(get(ext::SUPPORTED_GROUPS), Some(want));
            proptest::prop_assert_eq!(get(ext::SERVER_NAME).is_some(), sni.is_some());
            if v == version::TLS13 {
                let mut ks = Vec::new();
                for (g, public) in &shares {
                    ks.extend(g.to_be_bytes());
                    ks.extend(u16::try_from(public.len()).unwrap().to_be_bytes());
                    ks.extend(public);
                }
                let mut want = u16::try_from(ks.len()).unwrap().to_be_bytes().to_vec();
                want.extend(ks);
                proptest::prop_assert_eq!(get(ext::KEY_SHARE), Some(want));
            } else {
                proptest::prop_assert_eq!(get(ext::KEY_SHARE), None);
            }
        }
    }

    #[test]
    fn oversized_vectors_are_refused() {
        let long = "a".repeat(70_000);
        let offer = Offer {
            version: version::TLS12,
            suites: &[0x002F],
            groups: &[],
            key_shares: &[],
            sni: Some(&long),
        };
        assert!(matches!(
            ClientHello::new(&offer),
            Err(WireError::TooLong(_))
        ));
    }
}
