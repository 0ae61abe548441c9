//! The cipher suites and key exchange groups the scanner knows: IANA code points
//! (<https://www.iana.org/assignments/tls-parameters>) with the IANA names sslyze
//! prints, and how each suite is classified.

/// A cipher suite the scanner offers, by IANA id and name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suite {
    /// The IANA code point.
    pub id: u16,
    /// The IANA name, e.g. `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`.
    pub name: &'static str,
}

impl Suite {
    /// A TLS 1.3 suite (RFC 8446 §B.4): it names no key exchange or authentication.
    pub fn is_tls13(&self) -> bool {
        (0x1301..=0x1305).contains(&self.id)
    }
    /// An AEAD cipher (GCM, CCM, ChaCha20-Poly1305).
    pub fn is_aead(&self) -> bool {
        self.name.contains("_GCM") || self.name.contains("_CCM") || self.name.contains("POLY1305")
    }
    /// Forward secret: ephemeral (EC)DH key exchange, and every TLS 1.3 suite.
    pub fn is_forward_secret(&self) -> bool {
        self.is_tls13() || self.name.contains("_DHE_") || self.name.contains("_ECDHE_")
    }
    /// Ephemeral finite-field Diffie-Hellman (the server sends DH parameters).
    pub fn is_dhe(&self) -> bool {
        self.name.contains("_DHE_") || self.name.contains("_DH_anon_")
    }
    /// Ephemeral elliptic-curve Diffie-Hellman (the server names a curve).
    pub fn is_ecdhe(&self) -> bool {
        self.name.contains("_ECDHE_") || self.name.contains("_ECDH_anon_")
    }
    /// The weaknesses in the name: `anonymous`, `NULL`, `EXPORT`, `RC4`, `3DES`, `DES`,
    /// `MD5`, `CBC`.
    pub fn weaknesses(&self) -> Vec<&'static str> {
        let n = self.name;
        let mut out = Vec::new();
        if n.contains("_anon_") {
            out.push("anonymous");
        }
        if n.contains("_NULL_") || n.ends_with("_NULL") {
            out.push("NULL");
        }
        if n.contains("EXPORT") {
            out.push("EXPORT");
        }
        if n.contains("RC4") {
            out.push("RC4");
        }
        if n.contains("3DES") {
            out.push("3DES");
        } else if n.contains("_DES") {
            out.push("DES");
        }
        if n.ends_with("_MD5") {
            out.push("MD5");
        }
        if n.contains("_CBC_") {
            out.push("CBC");
        }
        out
    }
}

macro_rules! suites {
    ($($id:literal $name:ident,)*) => {
        &[$(Suite { id: $id, name: stringify!($name) },)*]
    };
}

/// The TLS 1.3 suites (RFC 8446 §B.4).
pub const TLS13_SUITES: &[Suite] = suites! {
    0x1301 TLS_AES_128_GCM_SHA256,
    0x1302 TLS_AES_256_GCM_SHA384,
    0x1303 TLS_CHACHA20_POLY1305_SHA256,
    0x1304 TLS_AES_128_CCM_SHA256,
    0x1305 TLS_AES_128_CCM_8_SHA256,
};

/// The SSL 3.0 to TLS 1.2 suites the scanner offers: everything OpenSSL 1.0 to 3.x can
/// negotiate with a certificate, plus the anonymous, NULL and EXPORT ones.
pub const LEGACY_SUITES: &[Suite] = suites! {
    0x0001 TLS_RSA_WITH_NULL_MD5,
    0x0002 TLS_RSA_WITH_NULL_SHA,
    0x0003 TLS_RSA_EXPORT_WITH_RC4_40_MD5,
    0x0004 TLS_RSA_WITH_RC4_128_MD5,
    0x0005 TLS_RSA_WITH_RC4_128_SHA,
    0x0006 TLS_RSA_EXPORT_WITH_RC2_CBC_40_MD5,
    0x0007 TLS_RSA_WITH_IDEA_CBC_SHA,
    0x0008 TLS_RSA_EXPORT_WITH_DES40_CBC_SHA,
    0x0009 TLS_RSA_WITH_DES_CBC_SHA,
    0x000A TLS_RSA_WITH_3DES_EDE_CBC_SHA,
    0x0011 TLS_DHE_DSS_EXPORT_WITH_DES40_CBC_SHA,
    0x0012 TLS_DHE_DSS_WITH_DES_CBC_SHA,
    0x0013 TLS_DHE_DSS_WITH_3DES_EDE_CBC_SHA,
    0x0014 TLS_DHE_RSA_EXPORT_WITH_DES40_CBC_SHA,
    0x0015 TLS_DHE_RSA_WITH_DES_CBC_SHA,
    0x0016 TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA,
    0x0017 TLS_DH_anon_EXPORT_WITH_RC4_40_MD5,
    0x0018 TLS_DH_anon_WITH_RC4_128_MD5,
    0x0019 TLS_DH_anon_EXPORT_WITH_DES40_CBC_SHA,
    0x001A TLS_DH_anon_WITH_DES_CBC_SHA,
    0x001B TLS_DH_anon_WITH_3DES_EDE_CBC_SHA,
    0x002F TLS_RSA_WITH_AES_128_CBC_SHA,
    0x0032 TLS_DHE_DSS_WITH_AES_128_CBC_SHA,
    0x0033 TLS_DHE_RSA_WITH_AES_128_CBC_SHA,
    0x0034 TLS_DH_anon_WITH_AES_128_CBC_SHA,
    0x0035 TLS_RSA_WITH_AES_256_CBC_SHA,
    0x0038 TLS_DHE_DSS_WITH_AES_256_CBC_SHA,
    0x0039 TLS_DHE_RSA_WITH_AES_256_CBC_SHA,
    0x003A TLS_DH_anon_WITH_AES_256_CBC_SHA,
    0x003B TLS_RSA_WITH_NULL_SHA256,
    0x003C TLS_RSA_WITH_AES_128_CBC_SHA256,
    0x003D TLS_RSA_WITH_AES_256_CBC_SHA256,
    0x0040 TLS_DHE_DSS_WITH_AES_128_CBC_SHA256,
    0x0041 TLS_RSA_WITH_CAMELLIA_128_CBC_SHA,
    0x0044 TLS_DHE_DSS_WITH_CAMELLIA_128_CBC_SHA,
    0x0045 TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA,
    0x0046 TLS_DH_anon_WITH_CAMELLIA_128_CBC_SHA,
    0x0067 TLS_DHE_RSA_WITH_AES_128_CBC_SHA256,
    0x006A TLS_DHE_DSS_WITH_AES_256_CBC_SHA256,
    0x006B TLS_DHE_RSA_WITH_AES_256_CBC_SHA256,
    0x006C TLS_DH_anon_WITH_AES_128_CBC_SHA256,
    0x006D TLS_DH_anon_WITH_AES_256_CBC_SHA256,
    0x0084 TLS_RSA_WITH_CAMELLIA_256_CBC_SHA,
    0x0087 TLS_DHE_DSS_WITH_CAMELLIA_256_CBC_SHA,
    0x0088 TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA,
    0x0089 TLS_DH_anon_WITH_CAMELLIA_256_CBC_SHA,
    0x0096 TLS_RSA_WITH_SEED_CBC_SHA,
    0x009A TLS_DHE_RSA_WITH_SEED_CBC_SHA,
    0x009C TLS_RSA_WITH_AES_128_GCM_SHA256,
    0x009D TLS_RSA_WITH_AES_256_GCM_SHA384,
    0x009E TLS_DHE_RSA_WITH_AES_128_GCM_SHA256,
    0x009F TLS_DHE_RSA_WITH_AES_256_GCM_SHA384,
    0x00A2 TLS_DHE_DSS_WITH_AES_128_GCM_SHA256,
    0x00A3 TLS_DHE_DSS_WITH_AES_256_GCM_SHA384,
    0x00A6 TLS_DH_anon_WITH_AES_128_GCM_SHA256,
    0x00A7 TLS_DH_anon_WITH_AES_256_GCM_SHA384,
    0x00BA TLS_RSA_WITH_CAMELLIA_128_CBC_SHA256,
    0x00BE TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA256,
    0x00C0 TLS_RSA_WITH_CAMELLIA_256_CBC_SHA256,
    0x00C4 TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA256,
    0xC006 TLS_ECDHE_ECDSA_WITH_NULL_SHA,
    0xC007 TLS_ECDHE_ECDSA_WITH_RC4_128_SHA,
    0xC008 TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA,
    0xC009 TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
    0xC00A TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
    0xC010 TLS_ECDHE_RSA_WITH_NULL_SHA,
    0xC011 TLS_ECDHE_RSA_WITH_RC4_128_SHA,
    0xC012 TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA,
    0xC013 TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
    0xC014 TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
    0xC015 TLS_ECDH_anon_WITH_NULL_SHA,
    0xC016 TLS_ECDH_anon_WITH_RC4_128_SHA,
    0xC017 TLS_ECDH_anon_WITH_3DES_EDE_CBC_SHA,
    0xC018 TLS_ECDH_anon_WITH_AES_128_CBC_SHA,
    0xC019 TLS_ECDH_anon_WITH_AES_256_CBC_SHA,
    0xC023 TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
    0xC024 TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384,
    0xC027 TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
    0xC028 TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384,
    0xC02B TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    0xC02C TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    0xC02F TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    0xC030 TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    0xC050 TLS_RSA_WITH_ARIA_128_GCM_SHA256,
    0xC051 TLS_RSA_WITH_ARIA_256_GCM_SHA384,
    0xC052 TLS_DHE_RSA_WITH_ARIA_128_GCM_SHA256,
    0xC053 TLS_DHE_RSA_WITH_ARIA_256_GCM_SHA384,
    0xC05C TLS_ECDHE_ECDSA_WITH_ARIA_128_GCM_SHA256,
    0xC05D TLS_ECDHE_ECDSA_WITH_ARIA_256_GCM_SHA384,
    0xC060 TLS_ECDHE_RSA_WITH_ARIA_128_GCM_SHA256,
    0xC061 TLS_ECDHE_RSA_WITH_ARIA_256_GCM_SHA384,
    0xC072 TLS_ECDHE_ECDSA_WITH_CAMELLIA_128_CBC_SHA256,
    0xC073 TLS_ECDHE_ECDSA_WITH_CAMELLIA_256_CBC_SHA384,
    0xC076 TLS_ECDHE_RSA_WITH_CAMELLIA_128_CBC_SHA256,
    0xC077 TLS_ECDHE_RSA_WITH_CAMELLIA_256_CBC_SHA384,
    0xC09C TLS_RSA_WITH_AES_128_CCM,
    0xC09D TLS_RSA_WITH_AES_256_CCM,
    0xC09E TLS_DHE_RSA_WITH_AES_128_CCM,
    0xC09F TLS_DHE_RSA_WITH_AES_256_CCM,
    0xC0A0 TLS_RSA_WITH_AES_128_CCM_8,
    0xC0A1 TLS_RSA_WITH_AES_256_CCM_8,
    0xC0A2 TLS_DHE_RSA_WITH_AES_128_CCM_8,
    0xC0A3 TLS_DHE_RSA_WITH_AES_256_CCM_8,
    0xC0AC TLS_ECDHE_ECDSA_WITH_AES_128_CCM,
    0xC0AD TLS_ECDHE_ECDSA_WITH_AES_256_CCM,
    0xC0AE TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
    0xC0AF TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8,
    0xCCA8 TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    0xCCA9 TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    0xCCAA TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
};

/// The suite with IANA id `id`, if the scanner knows it.
pub fn suite(id: u16) -> Option<&'static Suite> {
    TLS13_SUITES
        .iter()
        .chain(LEGACY_SUITES)
        .find(|s| s.id == id)
}

/// A key exchange group (RFC 8446 §4.2.7, RFC 8422 §5.1.1, RFC 7919), by IANA id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Group {
    /// The IANA code point.
    pub id: u16,
    /// The SECG / RFC name sslyze prints (`X25519`, `secp256r1`, ...).
    pub name: &'static str,
    /// Security-relevant size in bits: the curve order or the DH modulus (X25519 counts
    /// as 256, as sslyze does).
    pub bits: u32,
    /// An elliptic curve (what sslyze's `tls_curves` looks at); else finite-field or
    /// hybrid post-quantum.
    pub is_ec: bool,
}

/// The groups the scanner probes, one at a time.
pub const GROUPS: &[Group] = &[
    Group {
        id: 0x0015,
        name: "secp224r1",
        bits: 224,
        is_ec: true,
    },
    Group {
        id: 0x0016,
        name: "secp256k1",
        bits: 256,
        is_ec: true,
    },
    Group {
        id: 0x0017,
        name: "secp256r1",
        bits: 256,
        is_ec: true,
    },
    Group {
        id: 0x0018,
        name: "secp384r1",
        bits: 384,
        is_ec: true,
    },
    Group {
        id: 0x0019,
        name: "secp521r1",
        bits: 521,
        is_ec: true,
    },
    Group {
        id: 0x001A,
        name: "brainpoolP256r1",
        bits: 256,
        is_ec: true,
    },
    Group {
        id: 0x001B,
        name: "brainpoolP384r1",
        bits: 384,
        is_ec: true,
    },
    Group {
        id: 0x001C,
        name: "brainpoolP512r1",
        bits: 512,
        is_ec: true,
    },
    Group {
        id: 0x001D,
        name: "X25519",
        bits: 256,
        is_ec: true,
    },
    Group {
        id: 0x001E,
        name: "X448",
        bits: 448,
        is_ec: true,
    },
    Group {
        id: 0x0100,
        name: "ffdhe2048",
        bits: 2048,
        is_ec: false,
    },
    Group {
        id: 0x0101,
        name: "ffdhe3072",
        bits: 3072,
        is_ec: false,
    },
    Group {
        id: 0x0102,
        name: "ffdhe4096",
        bits: 4096,
        is_ec: false,
    },
    Group {
        id: 0x0103,
        name: "ffdhe6144",
        bits: 6144,
        is_ec: false,
    },
    Group {
        id: 0x0104,
        name: "ffdhe8192",
        bits: 8192,
        is_ec: false,
    },
    Group {
        id: 0x11EC,
        name: "X25519MLKEM768",
        bits: 256,
        is_ec: false,
    },
];

/// X25519's IANA id: the key share every TLS 1.3 probe carries.
pub const X25519: u16 = 0x001D;

/// The group with IANA id `id`, if the scanner knows it.
pub fn group(id: u16) -> Option<&'static Group> {
    GROUPS.iter().find(|g| g.id == id)
}

/// The name of group `id`: the known name or `group-0x....`.
pub fn group_name(id: u16) -> String {
    group(id).map_or_else(|| format!("group-0x{id:04x}"), |g| g.name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_classified() {
        let all: Vec<_> = TLS13_SUITES.iter().chain(LEGACY_SUITES).collect();
        for (i, a) in all.iter().enumerate() {
            assert!(all[i + 1..].iter().all(|b| b.id != a.id), "{}", a.name);
        }
        let s = |id| suite(id).unwrap();
        assert!(s(0xC02F).is_aead() && s(0xC02F).is_forward_secret() && s(0xC02F).is_ecdhe());
        assert!(!s(0x002F).is_aead() && !s(0x002F).is_forward_secret());
        assert_eq!(s(0x002F).weaknesses(), ["CBC"]);
        assert_eq!(s(0x000A).weaknesses(), ["3DES", "CBC"]);
        assert_eq!(s(0x0003).weaknesses(), ["EXPORT", "RC4", "MD5"]);
        assert_eq!(s(0x0001).weaknesses(), ["NULL", "MD5"]);
        assert_eq!(s(0x0034).weaknesses(), ["anonymous", "CBC"]);
        assert!(s(0x1303).is_tls13() && s(0x1303).is_aead() && s(0x1303).is_forward_secret());
        assert!(s(0x009E).is_dhe() && !s(0x009E).is_ecdhe());
        assert_eq!(group_name(0x001D), "X25519");
        assert_eq!(group_name(0x9999), "group-0x9999");
    }
}
