//! Key ids, ARNs and alias names, with the rules AWS KMS applies to them.

use crate::{Error, KmsConfig};

/// A fresh key id: a random (version 4) UUID, lowercase and hyphenated.
pub(crate) fn new_key_id() -> Result<String, Error> {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| Error::Internal("random number generator failed"))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    Ok(format_uuid(&b))
}

pub(crate) fn format_uuid(b: &[u8; 16]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The 16 bytes of a canonical lowercase hyphenated UUID.
pub(crate) fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut nibbles = [0u8; 32];
    let mut n = 0;
    for (i, &c) in b.iter().enumerate() {
        if [8, 13, 18, 23].contains(&i) {
            if c != b'-' {
                return None;
            }
        } else {
            *nibbles.get_mut(n)? = digit(c)?;
            n += 1;
        }
    }
    let mut out = [0u8; 16];
    for (o, pair) in out.iter_mut().zip(nibbles.chunks_exact(2)) {
        *o = pair[0] << 4 | pair[1];
    }
    Some(out)
}

/// What a `KeyId` parameter names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyRef {
    Id(String),
    Alias(String),
}

impl KmsConfig {
    /// `arn:<partition>:kms:<region>:<account>:key/<id>`.
    pub fn key_arn(&self, key_id: &str) -> String {
        format!(
            "arn:{}:kms:{}:{}:key/{key_id}",
            self.partition, self.region, self.account
        )
    }

    /// `arn:<partition>:kms:<region>:<account>:alias/<name>` (the name includes `alias/`).
    pub fn alias_arn(&self, alias: &str) -> String {
        format!(
            "arn:{}:kms:{}:{}:{alias}",
            self.partition, self.region, self.account
        )
    }

    /// Parses a key id, key ARN, alias name or alias ARN. ARNs must be this service's.
    pub(crate) fn parse_key_ref(&self, s: &str) -> Result<KeyRef, Error> {
        let not_found = || Error::NotFound(format!("Invalid keyId '{s}'"));
        if s.is_empty() || s.len() > 2048 {
            return Err(Error::Validation(
                "KeyId must be 1 to 2048 characters long".into(),
            ));
        }
        let (is_arn, resource) = match s.strip_prefix("arn:") {
            Some(rest) => {
                let prefix = format!("{}:kms:{}:{}:", self.partition, self.region, self.account);
                let resource = rest
                    .strip_prefix(&prefix)
                    .ok_or_else(|| Error::NotFound(format!("Invalid arn {s}")))?;
                (true, resource)
            }
            None => (false, s),
        };
        if resource.starts_with("alias/") {
            return Ok(KeyRef::Alias(resource.to_owned()));
        }
        // `key/<id>` appears only inside an ARN; a bare id stands alone.
        let id = if is_arn {
            resource.strip_prefix("key/").ok_or_else(not_found)?
        } else {
            resource
        };
        parse_uuid(id).ok_or_else(not_found)?;
        Ok(KeyRef::Id(id.to_owned()))
    }
}

/// Checks an alias name against the AWS rules.
pub(crate) fn check_alias_name(name: &str) -> Result<(), Error> {
    let invalid = |why: &str| Error::InvalidAliasName(format!("Alias {name} {why}"));
    if !name.starts_with("alias/") {
        return Err(invalid("must begin with alias/"));
    }
    if name.starts_with("alias/aws/") {
        return Err(invalid(
            "must not begin with alias/aws/, which is reserved for AWS managed keys",
        ));
    }
    if name.len() > 256 || name.len() <= "alias/".len() {
        return Err(invalid("must be 7 to 256 characters long"));
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b":/_-".contains(&c))
    {
        return Err(invalid(
            "must contain only alphanumeric characters, '/', '_', '-' and ':'",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_round_trip_and_are_version_4() {
        let id = new_key_id().unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_eq!(format_uuid(&parse_uuid(&id).unwrap()), id);
        assert!(parse_uuid("1234abcd-12ab-34cd-56ef-1234567890aB").is_none());
        assert!(parse_uuid("1234abcd-12ab-34cd-56ef-1234567890a").is_none());
    }

    #[test]
    fn key_refs() {
        let c = KmsConfig::default();
        let id = "1234abcd-12ab-34cd-56ef-1234567890ab";
        assert_eq!(c.parse_key_ref(id).unwrap(), KeyRef::Id(id.into()));
        assert_eq!(
            c.parse_key_ref(&c.key_arn(id)).unwrap(),
            KeyRef::Id(id.into())
        );
        assert_eq!(
            c.parse_key_ref("alias/x").unwrap(),
            KeyRef::Alias("alias/x".into())
        );
        assert_eq!(
            c.parse_key_ref(&c.alias_arn("alias/x")).unwrap(),
            KeyRef::Alias("alias/x".into())
        );
        for bad in [
            "nope",
            "key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:eu-west-1:111122223333:key/x",
        ] {
            assert!(
                matches!(c.parse_key_ref(bad), Err(Error::NotFound(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn uuids_are_canonical_or_refused() {
        let id = "0123abcd-4567-89ef-0123-456789abcdef";
        assert_eq!(parse_uuid(id).map(|b| format_uuid(&b)).as_deref(), Some(id));
        for bad in [
            "00000000-0000-0000-0000-00000000000-",
            "00000000-0000-0000-0000-0000000000-0",
            "0000000000000-0000-0000-000000000000",
            "00000000-0000-0000-0000-00000000000A",
            "00000000-0000-0000-0000-0000000000000",
            "",
        ] {
            assert_eq!(parse_uuid(bad), None, "{bad}");
        }
    }

    #[test]
    fn alias_rules() {
        assert!(check_alias_name("alias/my-key_1:a/b").is_ok());
        for bad in [
            "my-key",
            "alias/",
            "alias/aws/x",
            "alias/sp ace",
            &format!("alias/{}", "a".repeat(251)),
        ] {
            assert!(
                matches!(check_alias_name(bad), Err(Error::InvalidAliasName(_))),
                "{bad}"
            );
        }
    }
}
