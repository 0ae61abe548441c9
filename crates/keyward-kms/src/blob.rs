//! The KMS ciphertext blob, format version 1 (see docs/KMS.md).
//!
//! ```text
//! 01 | key id (16, the UUID's bytes) | key version (4, big-endian) | IV (12) | ciphertext | tag (16)
//! AAD = "keyward kms ciphertext v1\0" | the first 21 bytes above | canonical context
//! canonical context = pair count (4) | per pair, sorted by key bytes: key length (4) | key
//!                     | value length (4) | value
//! ```

use std::collections::BTreeMap;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce};
use zeroize::Zeroizing;

use crate::Error;

const VERSION: u8 = 1;
const LABEL: &[u8] = b"keyward kms ciphertext v1\0";
const HEADER_LEN: usize = 1 + 16 + 4;
/// Bytes a blob adds to its plaintext.
pub(crate) const OVERHEAD: usize = HEADER_LEN + 12 + 16;

/// The encryption context: string pairs, iterated in key byte order.
pub type EncryptionContext = BTreeMap<String, String>;

/// What a blob says about itself before it is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlobHeader {
    pub(crate) key_id: [u8; 16],
    pub(crate) version: u32,
}

fn aad(header: &[u8], context: &EncryptionContext) -> Vec<u8> {
    let mut out = Vec::with_capacity(LABEL.len() + HEADER_LEN + 64);
    out.extend_from_slice(LABEL);
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

pub(crate) fn seal(
    key: &LessSafeKey,
    header: BlobHeader,
    context: &EncryptionContext,
    plaintext: &[u8],
) -> Result<Vec<u8>, Error> {
    let mut iv = [0u8; 12];
    aws_lc_rs::rand::fill(&mut iv)
        .map_err(|_| Error::Internal("random number generator failed"))?;
    let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
    out.push(VERSION);
    out.extend_from_slice(&header.key_id);
    out.extend_from_slice(&header.version.to_be_bytes());
    let aad = aad(&out, context);
    out.extend_from_slice(&iv);
    let start = out.len();
    out.extend_from_slice(plaintext);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(&aad[..]),
            &mut out[start..],
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
    key: &LessSafeKey,
    blob: &[u8],
    context: &EncryptionContext,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    if blob.len() < OVERHEAD {
        return Err(invalid());
    }
    let aad = aad(&blob[..HEADER_LEN], context);
    let iv: [u8; 12] = blob[HEADER_LEN..HEADER_LEN + 12]
        .try_into()
        .map_err(|_| invalid())?;
    let mut buf = Zeroizing::new(blob[HEADER_LEN + 12..].to_vec());
    let len = key
        .open_in_place(
            Nonce::assume_unique_for_key(iv),
            Aad::from(&aad[..]),
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
