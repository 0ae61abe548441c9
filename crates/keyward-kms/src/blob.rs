//! The KMS ciphertext blob, format version 1 (see docs/KMS.md).
//!
//! ```text
//! 01 | key id (16, the UUID's bytes) | key version (4, big-endian) | salt (32) | ciphertext | tag (16)
//! blob key = HKDF-SHA256(IKM = version material, salt, info = "keyward kms blob key v1\0" | bytes 0..21)
//! AAD      = "keyward kms ciphertext v1\0" | bytes 0..21 | canonical context
//! IV       = 12 zero bytes: every blob key seals exactly one message
//! canonical context = pair count (4) | per pair, sorted by key bytes: key length (4) | key
//!                     | value length (4) | value
//! ```
//!
//! A fresh key per blob, from a random 256-bit salt, removes the 2^32-messages-per-key
//! bound that random 96-bit GCM IVs would put on a key version.

use std::collections::BTreeMap;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::hkdf;
use zeroize::Zeroizing;

use crate::Error;

const VERSION: u8 = 1;
const AAD_LABEL: &[u8] = b"keyward kms ciphertext v1\0";
const KEY_LABEL: &[u8] = b"keyward kms blob key v1\0";
const HEADER_LEN: usize = 1 + 16 + 4;
const SALT_LEN: usize = 32;
/// Bytes a blob adds to its plaintext.
pub(crate) const OVERHEAD: usize = HEADER_LEN + SALT_LEN + 16;

/// The encryption context: string pairs, iterated in key byte order.
pub type EncryptionContext = BTreeMap<String, String>;

/// What a blob says about itself before it is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlobHeader {
    pub(crate) key_id: [u8; 16],
    pub(crate) version: u32,
}

impl BlobHeader {
    fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = VERSION;
        b[1..17].copy_from_slice(&self.key_id);
        b[17..].copy_from_slice(&self.version.to_be_bytes());
        b
    }
}

fn aad(header: &[u8], context: &EncryptionContext) -> Vec<u8> {
    let mut out = Vec::with_capacity(AAD_LABEL.len() + HEADER_LEN + 64);
    out.extend_from_slice(AAD_LABEL);
    out.extend_from_slice(header);
    out.extend_from_slice(&(context.len() as u32).to_be_bytes());
    for (k, v) in context {
        for field in [k, v] {
            out.extend_from_slice(&(field.len() as u32).to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
    }
    out
}

struct Len32;

impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

/// The one-message key for a blob.
fn blob_key(material: &[u8], header: &[u8], salt: &[u8]) -> Result<LessSafeKey, Error> {
    let fail = |_| Error::Internal("blob key derivation failed");
    let mut key = Zeroizing::new([0u8; 32]);
    hkdf::Salt::new(hkdf::HKDF_SHA256, salt)
        .extract(material)
        .expand(&[KEY_LABEL, header], Len32)
        .map_err(fail)?
        .fill(&mut key[..])
        .map_err(fail)?;
    Ok(LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, &key[..]).map_err(fail)?,
    ))
}

pub(crate) fn seal(
    material: &[u8],
    header: BlobHeader,
    context: &EncryptionContext,
    plaintext: &[u8],
) -> Result<Vec<u8>, Error> {
    let header = header.to_bytes();
    let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
    out.extend_from_slice(&header);
    out.resize(HEADER_LEN + SALT_LEN, 0);
    aws_lc_rs::rand::fill(&mut out[HEADER_LEN..])
        .map_err(|_| Error::Internal("random number generator failed"))?;
    let key = blob_key(material, &header, &out[HEADER_LEN..])?;
    out.extend_from_slice(plaintext);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::from(&aad(&header, context)[..]),
            &mut out[HEADER_LEN + SALT_LEN..],
        )
        .map_err(|_| Error::Internal("encryption failed"))?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// Reads the header of a blob; anything malformed is an invalid ciphertext.
pub(crate) fn parse(blob: &[u8]) -> Result<BlobHeader, Error> {
    if blob.len() < OVERHEAD || blob[0] != VERSION {
        return Err(invalid());
    }
    let mut key_id = [0u8; 16];
    key_id.copy_from_slice(&blob[1..17]);
    let mut version = [0u8; 4];
    version.copy_from_slice(&blob[17..21]);
    Ok(BlobHeader {
        key_id,
        version: u32::from_be_bytes(version),
    })
}

pub(crate) fn open(
    material: &[u8],
    blob: &[u8],
    context: &EncryptionContext,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    if blob.len() < OVERHEAD {
        return Err(invalid());
    }
    let (header, rest) = blob.split_at(HEADER_LEN);
    let (salt, sealed) = rest.split_at(SALT_LEN);
    let key = blob_key(material, header, salt)?;
    let mut buf = Zeroizing::new(sealed.to_vec());
    let len = key
        .open_in_place(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::from(&aad(header, context)[..]),
            &mut buf,
        )
        .map_err(|_| invalid())?
        .len();
    buf.truncate(len);
    Ok(buf)
}

pub(crate) fn invalid() -> Error {
    Error::InvalidCiphertext(
        "The ciphertext is invalid or its encryption context does not match.".into(),
    )
}
