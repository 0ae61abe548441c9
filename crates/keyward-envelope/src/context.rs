//! The encryption context and its canonical serialization.
//!
//! Specification: `framework/structures.md` §Encryption Context, Serialization, and
//! `data-format/message-header.md` §AAD: a UInt16 pair count followed by each pair as
//! `UInt16 key length || key || UInt16 value length || value`, sorted by key in ascending
//! order of UTF-8 bytes, without duplicates. An empty context serializes to no bytes at all.

use std::collections::BTreeMap;

use crate::{Error, InvalidInput, Malformed};

/// The prefix of context keys reserved for the format itself.
pub const RESERVED_PREFIX: &str = "aws-crypto-";
/// The reserved key that carries a signed suite's verification key.
pub const PUBLIC_KEY_FIELD: &str = "aws-crypto-public-key";

/// Non-secret key-value pairs bound to a message.
///
/// `String`'s ordering is the ordering of its UTF-8 bytes, so iteration order is the
/// canonical serialization order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncryptionContext(BTreeMap<String, String>);

impl EncryptionContext {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a pair.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.insert(key.into(), value.into());
    }

    /// The value of a key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The pairs in canonical order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether every pair of `required` is present here with the same value.
    pub fn contains_all(&self, required: &EncryptionContext) -> bool {
        required.iter().all(|(k, v)| self.get(k) == Some(v))
    }

    /// Refuses keys with the reserved `aws-crypto-` prefix (caller-supplied contexts).
    pub(crate) fn check_no_reserved_keys(&self) -> Result<(), Error> {
        match self.0.keys().find(|k| k.starts_with(RESERVED_PREFIX)) {
            Some(k) => Err(InvalidInput::ReservedContextKey(k.clone()).into()),
            None => Ok(()),
        }
    }

    /// The canonical serialization: pair count then pairs; empty for an empty context.
    pub fn serialize(&self) -> Result<Vec<u8>, Error> {
        if self.0.is_empty() {
            return Ok(Vec::new());
        }
        let count = u16::try_from(self.0.len()).map_err(|_| InvalidInput::ContextTooLarge)?;
        let mut out = Vec::new();
        out.extend_from_slice(&count.to_be_bytes());
        for (k, v) in &self.0 {
            for field in [k, v] {
                let len = u16::try_from(field.len()).map_err(|_| InvalidInput::ContextTooLarge)?;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(field.as_bytes());
            }
        }
        if out.len() > usize::from(u16::MAX) {
            return Err(InvalidInput::ContextTooLarge.into());
        }
        Ok(out)
    }

    /// Parses a canonical serialization (the bytes after the header's AAD length).
    ///
    /// Refuses anything another serializer could not have produced: a zero pair count,
    /// invalid UTF-8, keys out of order or repeated, and trailing bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, Malformed> {
        if bytes.is_empty() {
            return Ok(Self::new());
        }
        let mut r = bytes;
        let count = take_u16(&mut r)?;
        if count == 0 {
            return Err(Malformed::EncryptionContext);
        }
        let mut map = BTreeMap::new();
        let mut previous: Option<String> = None;
        for _ in 0..count {
            let key = take_str(&mut r)?;
            let value = take_str(&mut r)?;
            if previous
                .as_deref()
                .is_some_and(|p| p.as_bytes() >= key.as_bytes())
            {
                return Err(Malformed::EncryptionContext);
            }
            previous = Some(key.clone());
            map.insert(key, value);
        }
        if !r.is_empty() {
            return Err(Malformed::EncryptionContext);
        }
        Ok(Self(map))
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for EncryptionContext {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

fn take_u16(r: &mut &[u8]) -> Result<u16, Malformed> {
    let (head, rest) = r
        .split_first_chunk::<2>()
        .ok_or(Malformed::EncryptionContext)?;
    *r = rest;
    Ok(u16::from_be_bytes(*head))
}

fn take_str(r: &mut &[u8]) -> Result<String, Malformed> {
    let len = usize::from(take_u16(r)?);
    if r.len() < len {
        return Err(Malformed::EncryptionContext);
    }
    let (field, rest) = r.split_at(len);
    *r = rest;
    String::from_utf8(field.to_vec()).map_err(|_| Malformed::EncryptionContext)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn empty_context_is_empty_bytes() {
        assert_eq!(EncryptionContext::new().serialize().ok(), Some(vec![]));
        assert_eq!(EncryptionContext::parse(&[]), Ok(EncryptionContext::new()));
    }

    #[test]
    fn known_encoding() {
        let ec: EncryptionContext = [("purpose", "test"), ("a", "1")].into_iter().collect();
        let expected = b"\x00\x02\x00\x01a\x00\x011\x00\x07purpose\x00\x04test";
        assert_eq!(ec.serialize().ok().as_deref(), Some(&expected[..]));
    }

    #[test]
    fn fail_non_canonical_encodings() {
        let cases: [&[u8]; 6] = [
            b"\x00\x00",                                   // zero count
            b"\x00\x02\x00\x01b\x00\x00\x00\x01a\x00\x00", // out of order
            b"\x00\x02\x00\x01a\x00\x00\x00\x01a\x00\x00", // duplicate
            b"\x00\x01\x00\x01\xff\x00\x00",               // invalid UTF-8
            b"\x00\x01\x00\x05a",                          // short field
            b"\x00\x01\x00\x01a\x00\x00\x00",              // trailing byte
        ];
        for c in cases {
            assert_eq!(
                EncryptionContext::parse(c),
                Err(Malformed::EncryptionContext),
                "{c:?}"
            );
        }
    }

    #[test]
    fn reserved_prefix_refused() {
        let ec: EncryptionContext = [("aws-crypto-x", "1")].into_iter().collect();
        assert!(matches!(
            ec.check_no_reserved_keys(),
            Err(Error::InvalidInput(InvalidInput::ReservedContextKey(_)))
        ));
    }

    proptest! {
        #[test]
        fn serialize_parse_round_trip(pairs in prop::collection::btree_map(".{0,12}", ".{0,12}", 0..8)) {
            let ec = EncryptionContext(pairs);
            let bytes = ec.serialize().map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(EncryptionContext::parse(&bytes), Ok(ec));
        }
    }
}
