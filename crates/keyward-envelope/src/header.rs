//! The message header, version 2.0.
//!
//! Specification: `data-format/message-header.md`. All integers are big-endian:
//!
//! ```text
//! Version (1) = 0x02 | Suite (2) | Message ID (32)
//! AAD length (2) | encryption context (AAD length bytes, empty if 0)
//! EDK count (2) | EDKs: provider id (2+n) | provider info (2+n) | ciphertext (2+n)
//! Content type (1) = 0x02 framed | Frame length (4) | Algorithm suite data (32) = commitment
//! Header auth tag (16): AES-GCM over the bytes above, IV = 12 zero bytes, empty plaintext
//! ```

use std::io::Read;

use crate::keyring::EncryptedDataKey;
use crate::suite::{COMMITMENT_LEN, IV_LEN, MESSAGE_ID_LEN, MessageKeys, TAG_LEN};
use crate::{EncryptionContext, Error, InvalidInput, Limit, Limits, Malformed, Suite};

const VERSION: u8 = 0x02;
const CONTENT_TYPE_FRAMED: u8 = 0x02;

/// A parsed message header (everything but the authentication tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The algorithm suite.
    pub suite: Suite,
    /// The message id: random, and the HKDF salt.
    pub message_id: [u8; MESSAGE_ID_LEN],
    /// The encryption context, including reserved keys.
    pub context: EncryptionContext,
    /// The wrapped copies of the data key.
    pub encrypted_data_keys: Vec<EncryptedDataKey>,
    /// Plaintext bytes in each regular frame.
    pub frame_length: u32,
    /// The key commitment.
    pub commitment: [u8; COMMITMENT_LEN],
}

impl Header {
    /// Serializes the header body (the bytes the header tag authenticates).
    pub(crate) fn body_bytes(&self) -> Result<Vec<u8>, Error> {
        let ec = self.context.serialize()?;
        let edk_count = u16::try_from(self.encrypted_data_keys.len())
            .map_err(|_| InvalidInput::FieldTooLong("encrypted data key list"))?;
        if edk_count == 0 {
            return Err(InvalidInput::NoDataKey.into());
        }
        let mut out = Vec::with_capacity(128 + ec.len());
        out.push(VERSION);
        out.extend_from_slice(&self.suite.id().to_be_bytes());
        out.extend_from_slice(&self.message_id);
        put_field(&mut out, &ec, "encryption context")?;
        out.extend_from_slice(&edk_count.to_be_bytes());
        for edk in &self.encrypted_data_keys {
            put_field(&mut out, edk.provider_id.as_bytes(), "provider id")?;
            put_field(&mut out, &edk.provider_info, "provider info")?;
            put_field(&mut out, &edk.ciphertext, "encrypted data key")?;
        }
        out.push(CONTENT_TYPE_FRAMED);
        out.extend_from_slice(&self.frame_length.to_be_bytes());
        out.extend_from_slice(&self.commitment);
        Ok(out)
    }

    /// The full serialized header: body followed by its authentication tag.
    pub(crate) fn to_bytes(&self, keys: &MessageKeys) -> Result<Vec<u8>, Error> {
        let mut out = self.body_bytes()?;
        let tag = keys.content.seal([0; IV_LEN], &out, &mut [])?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Checks the header tag over `body` (the serialized header without the tag).
    pub(crate) fn authenticate(
        keys: &MessageKeys,
        body: &[u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), Error> {
        let mut t = *tag;
        keys.content.open([0; IV_LEN], body, &mut t).map(|_| ())
    }

    /// Reads a header from `input`, refusing anything over `limits`.
    ///
    /// Returns the header, its raw bytes (body and tag, the start of what a signature
    /// covers), and the tag.
    pub(crate) fn read(
        input: &mut impl Read,
        limits: &Limits,
    ) -> Result<(Header, Vec<u8>, [u8; TAG_LEN]), Error> {
        let mut r = HeaderReader {
            input,
            raw: Vec::with_capacity(512),
            limit: limits.max_header_len,
        };
        let version = r.u8()?;
        if version != VERSION {
            return Err(Malformed::UnsupportedVersion(version).into());
        }
        let suite = Suite::from_id(r.u16()?)?;
        let message_id: [u8; MESSAGE_ID_LEN] = r.array()?;
        let ec_len = usize::from(r.u16()?);
        let context = EncryptionContext::parse(r.take(ec_len)?)?;

        let edk_count = usize::from(r.u16()?);
        if edk_count == 0 {
            return Err(Malformed::EncryptedDataKeys.into());
        }
        if edk_count > limits.max_encrypted_data_keys {
            return Err(Limit::EncryptedDataKeys(limits.max_encrypted_data_keys).into());
        }
        let mut encrypted_data_keys = Vec::with_capacity(edk_count);
        for _ in 0..edk_count {
            let provider_id = r.field()?.to_vec();
            let provider_id =
                String::from_utf8(provider_id).map_err(|_| Malformed::EncryptedDataKeys)?;
            if provider_id.is_empty() {
                return Err(Malformed::EncryptedDataKeys.into());
            }
            let provider_info = r.field()?.to_vec();
            let ciphertext = r.field()?.to_vec();
            encrypted_data_keys.push(EncryptedDataKey {
                provider_id,
                provider_info,
                ciphertext,
            });
        }

        let content_type = r.u8()?;
        if content_type != CONTENT_TYPE_FRAMED {
            return Err(Malformed::UnsupportedContentType(content_type).into());
        }
        let frame_length = u32::from_be_bytes(r.array()?);
        if frame_length == 0 {
            return Err(Malformed::ZeroFrameLength.into());
        }
        if frame_length > limits.max_frame_length {
            return Err(Limit::FrameLength(limits.max_frame_length).into());
        }
        let commitment: [u8; COMMITMENT_LEN] = r.array()?;
        let tag: [u8; TAG_LEN] = r.array()?;
        let header = Header {
            suite,
            message_id,
            context,
            encrypted_data_keys,
            frame_length,
            commitment,
        };
        Ok((header, r.raw, tag))
    }
}

fn put_field(out: &mut Vec<u8>, field: &[u8], what: &'static str) -> Result<(), Error> {
    let len = u16::try_from(field.len()).map_err(|_| InvalidInput::FieldTooLong(what))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(field);
    Ok(())
}

/// Reads header fields one at a time, keeping the raw bytes and enforcing the size limit
/// before reading anything.
struct HeaderReader<'a, R> {
    input: &'a mut R,
    raw: Vec<u8>,
    limit: usize,
}

impl<R: Read> HeaderReader<'_, R> {
    fn take(&mut self, n: usize) -> Result<&[u8], Error> {
        let start = self.raw.len();
        if start + n > self.limit {
            return Err(Limit::HeaderLength(self.limit).into());
        }
        self.raw.resize(start + n, 0);
        read_exact_or_truncated(self.input, &mut self.raw[start..])?;
        Ok(&self.raw[start..])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, Error> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn field(&mut self) -> Result<&[u8], Error> {
        let len = usize::from(self.u16()?);
        self.take(len)
    }
}

/// `read_exact`, with a short read reported as a truncated message.
pub(crate) fn read_exact_or_truncated(input: &mut impl Read, buf: &mut [u8]) -> Result<(), Error> {
    input.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => Malformed::Truncated.into(),
        _ => Error::Io(e),
    })
}
