//! Types that hold key material: zeroized on drop, never printed.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::Error;

/// Length of the data key of both committing suites, in bytes.
pub const DATA_KEY_LEN: usize = 32;

/// A 256-bit data key: the input to the suite's key derivation.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DataKey([u8; DATA_KEY_LEN]);

impl DataKey {
    /// Wraps existing key bytes.
    pub fn from_bytes(bytes: [u8; DATA_KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// Copies key bytes from a slice of exactly [`DATA_KEY_LEN`] bytes.
    pub fn try_from_slice(bytes: &[u8]) -> Option<Self> {
        let bytes: [u8; DATA_KEY_LEN] = bytes.try_into().ok()?;
        Some(Self(bytes))
    }

    /// A fresh random data key.
    pub fn generate() -> Result<Self, Error> {
        let mut k = [0u8; DATA_KEY_LEN];
        aws_lc_rs::rand::fill(&mut k)?;
        Ok(Self(k))
    }

    /// The key bytes. Every call site is a place key material leaves this type.
    pub fn expose_secret(&self) -> &[u8; DATA_KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// A 256-bit AES wrapping key for the raw AES keyring.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct WrappingKey([u8; 32]);

impl WrappingKey {
    /// Wraps existing key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Copies key bytes from a slice of exactly 32 bytes.
    pub fn try_from_slice(bytes: &[u8]) -> Option<Self> {
        let bytes: [u8; 32] = bytes.try_into().ok()?;
        Some(Self(bytes))
    }

    /// A fresh random wrapping key.
    pub fn generate() -> Result<Self, Error> {
        let mut k = [0u8; 32];
        aws_lc_rs::rand::fill(&mut k)?;
        Ok(Self(k))
    }

    /// The key bytes. Every call site is a place key material leaves this type.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for WrappingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WrappingKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_key_bytes() {
        let k = DataKey::from_bytes([0xab; 32]);
        let w = WrappingKey::from_bytes([0xcd; 32]);
        assert_eq!(format!("{k:?}"), "DataKey(<redacted>)");
        assert_eq!(format!("{w:?}"), "WrappingKey(<redacted>)");
    }
}
