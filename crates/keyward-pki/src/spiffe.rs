//! SPIFFE IDs (`spiffe://<trust-domain>/<path>`), checked as the SPIFFE-ID standard asks.

use std::fmt;

use crate::Error;

/// The longest SPIFFE ID accepted, in bytes (SPIFFE-ID §2.3).
pub const MAX_LEN: usize = 2048;
/// The longest trust domain accepted, in bytes (SPIFFE-ID §2.1).
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// A valid SPIFFE ID.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    id: String,
    path_at: usize,
}

fn bad(why: impl Into<String>) -> Error {
    Error::InvalidSpiffeId(why.into())
}

/// Checks a trust domain name: lowercase letters, digits, `.`, `-` and `_`, 1 to 255 bytes.
pub fn check_trust_domain(td: &str) -> Result<(), Error> {
    if td.is_empty() || td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(bad("the trust domain must be 1 to 255 characters"));
    }
    if !td
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b".-_".contains(&c))
    {
        return Err(bad(
            "the trust domain may hold only lowercase letters, digits, '.', '-' and '_'",
        ));
    }
    Ok(())
}

impl SpiffeId {
    /// Parses and checks `s`. The path may be empty (the ID of a trust domain itself).
    pub fn parse(s: &str) -> Result<Self, Error> {
        if s.len() > MAX_LEN {
            return Err(bad("longer than 2048 bytes"));
        }
        let rest = s
            .strip_prefix("spiffe://")
            .ok_or_else(|| bad("must start with spiffe://"))?;
        let (td, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        check_trust_domain(td)?;
        if !path.is_empty() {
            for segment in path[1..].split('/') {
                if segment.is_empty() {
                    return Err(bad("the path has an empty segment or ends in '/'"));
                }
                if segment == "." || segment == ".." {
                    return Err(bad("the path may not hold '.' or '..' segments"));
                }
                if !segment
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b".-_".contains(&c))
                {
                    return Err(bad(
                        "the path may hold only letters, digits, '.', '-', '_' and '/'",
                    ));
                }
            }
        }
        Ok(Self {
            id: s.to_owned(),
            path_at: "spiffe://".len() + td.len(),
        })
    }

    /// The ID of the trust domain `td`.
    pub fn of_trust_domain(td: &str) -> Result<Self, Error> {
        Self::parse(&format!("spiffe://{td}"))
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.id["spiffe://".len()..self.path_at]
    }

    /// The path, empty or starting with `/`.
    pub fn path(&self) -> &str {
        &self.id[self.path_at..]
    }

    /// The whole ID.
    pub fn as_str(&self) -> &str {
        &self.id
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeId({})", self.id)
    }
}

impl std::str::FromStr for SpiffeId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn valid_and_invalid_ids() {
        let id = SpiffeId::parse("spiffe://prod.example/ns/pay/sa/api").unwrap();
        assert_eq!(id.trust_domain(), "prod.example");
        assert_eq!(id.path(), "/ns/pay/sa/api");
        assert_eq!(SpiffeId::parse("spiffe://td").unwrap().path(), "");
        for bad in [
            "http://td/x",
            "spiffe://",
            "spiffe:///x",
            "spiffe://TD/x",
            "spiffe://td:8080/x",
            "spiffe://user@td/x",
            "spiffe://td/x/",
            "spiffe://td//x",
            "spiffe://td/./x",
            "spiffe://td/../x",
            "spiffe://td/x?y",
            "spiffe://td/x#y",
            "spiffe://td/a b",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "{bad}");
        }
        let long = format!("spiffe://td/{}", "a".repeat(MAX_LEN));
        assert!(SpiffeId::parse(&long).is_err());
        assert!(SpiffeId::parse(&format!("spiffe://{}/x", "a".repeat(256))).is_err());
    }
}
