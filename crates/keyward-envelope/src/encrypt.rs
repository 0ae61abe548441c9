//! Streaming encryption.
//!
//! Specification: `client-apis/encrypt.md`.

use std::io::{Read, Write};

use aws_lc_rs::digest;
use aws_lc_rs::encoding::{AsBigEndian, EcPublicKeyCompressedBin};
use aws_lc_rs::signature::{ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;

use crate::frame::{
    Batch, FINAL_EXTRA, FINAL_MARKER, FINAL_PREFIX, FrameCipher, FrameRef, Layout, frame_iv,
    read_full,
};
use crate::header::Header;
use crate::keyring::{EncryptionMaterials, Keyring};
use crate::suite::{MESSAGE_ID_LEN, MessageKeys};
use crate::{
    EncryptionContext, Error, InvalidInput, MAX_FRAME_LENGTH, PUBLIC_KEY_FIELD, Suite, pipeline,
};

/// How to encrypt.
#[derive(Debug, Clone)]
pub struct EncryptOptions {
    /// The algorithm suite; 0x0478 by default.
    pub suite: Suite,
    /// Plaintext bytes per frame, 1 to [`MAX_FRAME_LENGTH`]; 64 KiB by default.
    pub frame_length: u32,
    /// Worker threads for the AEAD work; 0 means one per available core.
    pub parallelism: usize,
}

impl Default for EncryptOptions {
    fn default() -> Self {
        Self {
            suite: Suite::default(),
            frame_length: crate::DEFAULT_FRAME_LENGTH,
            parallelism: 0,
        }
    }
}

/// What an encryption produced.
#[derive(Debug, Clone)]
pub struct EncryptSummary {
    /// The header that was written.
    pub header: Header,
    /// Plaintext bytes read.
    pub plaintext_len: u64,
}

/// Encrypts everything `input` yields into one message written to `output`.
///
/// `context` must not use the reserved `aws-crypto-` prefix. Memory use is bounded by a
/// few batches of frames, whatever the input size. The output is not flushed to stable
/// storage: callers writing files should sync and rename.
pub fn encrypt(
    keyring: &dyn Keyring,
    context: &EncryptionContext,
    options: &EncryptOptions,
    input: impl Read + Send,
    mut output: impl Write,
) -> Result<EncryptSummary, Error> {
    if options.frame_length == 0 || options.frame_length > MAX_FRAME_LENGTH {
        return Err(InvalidInput::FrameLength(options.frame_length).into());
    }
    context.check_no_reserved_keys()?;
    let suite = options.suite;

    let mut full_context = context.clone();
    let signer = if suite.is_signed() {
        let pair = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_ASN1_SIGNING)?;
        let point: EcPublicKeyCompressedBin<'_> = pair.public_key().as_be_bytes()?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(point.as_ref());
        full_context.insert(PUBLIC_KEY_FIELD, encoded);
        Some(pair)
    } else {
        None
    };

    let mut materials = EncryptionMaterials {
        suite,
        context: &full_context,
        data_key: None,
        encrypted_data_keys: Vec::new(),
    };
    keyring.on_encrypt(&mut materials)?;
    let EncryptionMaterials {
        data_key,
        encrypted_data_keys,
        ..
    } = materials;
    let (Some(data_key), false) = (data_key, encrypted_data_keys.is_empty()) else {
        return Err(InvalidInput::NoDataKey.into());
    };

    let mut message_id = [0u8; MESSAGE_ID_LEN];
    aws_lc_rs::rand::fill(&mut message_id)?;
    let keys = MessageKeys::derive(suite, &data_key, &message_id)?;
    drop(data_key);
    let header = Header {
        suite,
        message_id,
        context: full_context,
        encrypted_data_keys,
        frame_length: options.frame_length,
        commitment: *keys.commitment,
    };
    let header_bytes = header.to_bytes(&keys)?;
    output.write_all(&header_bytes)?;
    let mut hasher = signer
        .as_ref()
        .map(|_| digest::Context::new(&digest::SHA384));
    if let Some(h) = hasher.as_mut() {
        h.update(&header_bytes);
    }

    let cipher = FrameCipher {
        key: &keys.content,
        message_id: &header.message_id,
    };
    let mut source = PlainSource::new(input, Layout::new(options.frame_length));
    pipeline::run(
        pipeline::workers(options.parallelism),
        |batch| source.fill(batch),
        |batch| cipher.seal(batch),
        |batch| {
            if !batch.ok {
                return Err(Error::Crypto);
            }
            let bytes = &batch.buf[..batch.len];
            if let Some(h) = hasher.as_mut() {
                h.update(bytes);
            }
            output.write_all(bytes)?;
            Ok(())
        },
    )?;

    if let (Some(pair), Some(h)) = (signer, hasher) {
        let signature = pair.sign_digest(&h.finish())?;
        let sig = signature.as_ref();
        // A DER ECDSA P-384 signature is at most 104 bytes.
        output.write_all(&(sig.len() as u16).to_be_bytes())?;
        output.write_all(sig)?;
    }
    output.flush()?;
    Ok(EncryptSummary {
        header,
        plaintext_len: source.plaintext_len,
    })
}

/// Reads plaintext into batches in wire layout, deciding which frame is final.
///
/// A frame that fills completely is a regular frame; the first frame the input cannot
/// fill is the final frame. So a plaintext that is an exact multiple of the frame length
/// ends with an empty final frame. The specification prefers a full final frame, but the
/// AWS Encryption SDK for Python (3.x) and the AWS Encryption CLI refuse one ("Invalid
/// final frame length: 4096 >= 4096"), while every implementation accepts an empty one.
struct PlainSource<R> {
    input: R,
    layout: Layout,
    next_seq: u32,
    plaintext_len: u64,
}

impl<R: Read> PlainSource<R> {
    fn new(input: R, layout: Layout) -> Self {
        Self {
            input,
            layout,
            next_seq: 1,
            plaintext_len: 0,
        }
    }

    /// Fills a batch; returns true when it holds the final frame.
    fn fill(&mut self, batch: &mut Batch) -> Result<bool, Error> {
        let layout = self.layout;
        batch.clear();
        let stride = layout.stride();
        for i in 0..layout.per_batch {
            let at = i * stride;
            batch.reserve_to(at + stride + FINAL_EXTRA);
            let n = read_full(
                &mut self.input,
                &mut batch.buf[at + 16..at + 16 + layout.frame_len],
            )?;
            self.plaintext_len += n as u64;
            let seq = self.next_seq;
            if seq == FINAL_MARKER {
                return Err(InvalidInput::TooManyFrames.into());
            }
            self.next_seq += 1;
            let frame = FrameRef {
                seq,
                is_final: false,
                start: at + 16,
                len: n,
            };
            if n < layout.frame_len {
                write_final(batch, frame);
                return Ok(true);
            }
            batch.buf[at..at + 4].copy_from_slice(&seq.to_be_bytes());
            batch.buf[at + 4..at + 16].copy_from_slice(&frame_iv(seq));
            batch.frames.push(frame);
            batch.len = at + stride;
        }
        Ok(false)
    }
}

/// Lays out `frame`, read as if it were a regular frame, as the final frame and adds it.
fn write_final(batch: &mut Batch, mut frame: FrameRef) {
    let at = frame.start - 16;
    batch
        .buf
        .copy_within(frame.start..frame.start + frame.len, at + FINAL_PREFIX);
    batch.buf[at..at + 4].copy_from_slice(&FINAL_MARKER.to_be_bytes());
    batch.buf[at + 4..at + 8].copy_from_slice(&frame.seq.to_be_bytes());
    batch.buf[at + 8..at + 20].copy_from_slice(&frame_iv(frame.seq));
    batch.buf[at + 20..at + 24].copy_from_slice(&(frame.len as u32).to_be_bytes());
    frame.is_final = true;
    frame.start = at + FINAL_PREFIX;
    batch.len = frame.start + frame.len + crate::suite::TAG_LEN;
    batch.frames.push(frame);
}
