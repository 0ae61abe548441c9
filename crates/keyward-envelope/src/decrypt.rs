//! Streaming decryption.
//!
//! Specification: `client-apis/decrypt.md`. Key commitment is always required: only the
//! committing suites parse at all. Plaintext is written frame by frame, each frame only
//! after it authenticates; for signed suites, the signature over the whole message is
//! checked after the last frame, so a caller streaming to a consumer must treat what it
//! received as unverified until `decrypt` returns `Ok`.

use std::io::{ErrorKind, Read, Write};
use zeroize::Zeroizing;

use aws_lc_rs::digest;
use aws_lc_rs::signature::{ECDSA_P384_SHA384_ASN1, UnparsedPublicKey};
use base64::Engine as _;

use crate::frame::{
    Batch, FINAL_EXTRA, FINAL_MARKER, FINAL_PREFIX, FrameCipher, FrameRef, Layout, frame_iv,
    read_full,
};
use crate::header::{Header, read_exact_or_truncated};
use crate::keyring::{DecryptionMaterials, Keyring};
use crate::suite::{MessageKeys, TAG_LEN};
use crate::{EncryptionContext, Error, Limit, Limits, Malformed, PUBLIC_KEY_FIELD, pipeline};

/// The longest DER encoding of an ECDSA P-384 signature, plus slack for non-minimal
/// lengths some encoders emit.
const MAX_SIGNATURE_LEN: usize = 128;

/// How to decrypt.
#[derive(Debug, Clone, Default)]
pub struct DecryptOptions {
    /// Pairs that must be present, with these values, in the message's encryption context.
    pub required_context: EncryptionContext,
    /// Bounds on what the message may demand.
    pub limits: Limits,
    /// Worker threads for the AEAD work; 0 means one per available core.
    pub parallelism: usize,
}

/// What a decryption found.
#[derive(Debug, Clone)]
pub struct DecryptSummary {
    /// The message header.
    pub header: Header,
    /// Plaintext bytes written.
    pub plaintext_len: u64,
}

/// Decrypts one message from `input`, writing plaintext to `output` as frames authenticate.
///
/// On error some plaintext may already have been written; callers that write files should
/// write to a temporary file and rename it only after `Ok`.
pub fn decrypt(
    keyring: &dyn Keyring,
    options: &DecryptOptions,
    mut input: impl Read + Send,
    mut output: impl Write,
) -> Result<DecryptSummary, Error> {
    let limits = &options.limits;
    let (header, raw_header, tag) = Header::read(&mut input, limits)?;

    let verifier = if header.suite.is_signed() {
        let encoded = header
            .context
            .get(PUBLIC_KEY_FIELD)
            .ok_or(Malformed::MissingVerificationKey)?;
        let point = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| Malformed::MissingVerificationKey)?;
        Some(UnparsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, point))
    } else if header.context.get(PUBLIC_KEY_FIELD).is_some() {
        return Err(Malformed::UnexpectedVerificationKey.into());
    } else {
        None
    };

    let materials = DecryptionMaterials {
        suite: header.suite,
        context: &header.context,
    };
    let data_key = keyring
        .on_decrypt(&materials, &header.encrypted_data_keys)?
        .ok_or(Error::DecryptionFailed)?;
    let keys = MessageKeys::derive(header.suite, &data_key, &header.message_id)?;
    drop(data_key);
    if !keys.commitment_matches(&header.commitment) {
        return Err(Error::DecryptionFailed);
    }
    Header::authenticate(&keys, &raw_header[..raw_header.len() - TAG_LEN], &tag)?;
    if !header.context.contains_all(&options.required_context) {
        return Err(Error::ContextMismatch);
    }

    let mut hasher = verifier
        .as_ref()
        .map(|_| digest::Context::new(&digest::SHA384));
    if let Some(h) = hasher.as_mut() {
        h.update(&raw_header);
    }
    let cipher = FrameCipher {
        key: &keys.content,
        message_id: &header.message_id,
    };
    let mut source = CipherSource {
        input: &mut input,
        layout: Layout::new(header.frame_length),
        next_seq: 1,
        max_frames: limits.max_frames,
        tail: Vec::new(),
        hasher: hasher.as_mut(),
    };
    let mut plaintext_len = 0u64;
    // With a signature, the final frame's plaintext waits until the signature verifies
    // (the specification's "MUST NOT be released"): at most one frame is held back.
    let signed = verifier.is_some();
    let mut held_back = Zeroizing::new(Vec::new());
    pipeline::run(
        pipeline::workers(options.parallelism),
        |batch| source.fill(batch),
        |batch| cipher.open(batch),
        |batch| {
            if !batch.ok {
                return Err(Error::DecryptionFailed);
            }
            for f in &batch.frames {
                let plaintext = &batch.buf[f.start..f.start + f.len];
                if signed && f.is_final {
                    held_back.extend_from_slice(plaintext);
                } else {
                    output.write_all(plaintext)?;
                }
                plaintext_len += f.len as u64;
            }
            Ok(())
        },
    )?;
    let tail = std::mem::take(&mut source.tail);
    let mut rest = std::io::Cursor::new(tail).chain(input);

    if let (Some(verifier), Some(h)) = (verifier, hasher) {
        let mut len = [0u8; 2];
        read_exact_or_truncated(&mut rest, &mut len)?;
        let len = usize::from(u16::from_be_bytes(len));
        if len > MAX_SIGNATURE_LEN {
            return Err(Limit::SignatureLength(MAX_SIGNATURE_LEN).into());
        }
        let mut sig = vec![0u8; len];
        read_exact_or_truncated(&mut rest, &mut sig)?;
        verifier
            .verify_digest(&h.finish(), &sig)
            .map_err(|_| Error::DecryptionFailed)?;
    }
    expect_end(&mut rest)?;
    output.write_all(&held_back)?;
    output.flush()?;
    Ok(DecryptSummary {
        header,
        plaintext_len,
    })
}

fn expect_end(input: &mut impl Read) -> Result<(), Error> {
    let mut b = [0u8; 1];
    loop {
        match input.read(&mut b) {
            Ok(0) => return Ok(()),
            Ok(_) => return Err(Malformed::TrailingData.into()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads ciphertext frames into batches, checking their structure and order.
struct CipherSource<'a, R> {
    input: &'a mut R,
    layout: Layout,
    next_seq: u32,
    max_frames: u32,
    /// Bytes read past the final frame: the start of the footer.
    tail: Vec<u8>,
    hasher: Option<&'a mut digest::Context>,
}

impl<R: Read> CipherSource<'_, R> {
    /// Fills a batch with whole frames; returns true when it holds the final frame.
    fn fill(&mut self, batch: &mut Batch) -> Result<bool, Error> {
        let layout = self.layout;
        batch.clear();
        let (stride, want) = (layout.stride(), layout.batch_bytes());
        // Read up to a full batch, growing the buffer as the message turns out longer.
        let mut have = 0;
        let mut chunk = stride.max(64 * 1024);
        while have < want {
            let end = want.min(have + chunk);
            batch.reserve_to(end + FINAL_EXTRA);
            let n = read_full(self.input, &mut batch.buf[have..end])?;
            have += n;
            if have < end {
                break;
            }
            chunk *= 2;
        }
        let mut at = 0;
        let last = loop {
            if at == want {
                break false;
            }
            if have < at + 4 {
                return Err(Malformed::Truncated.into());
            }
            let marker = u32_at(&batch.buf, at);
            if marker != FINAL_MARKER {
                if have < at + stride {
                    return Err(Malformed::Truncated.into());
                }
                let seq = self.take_seq(marker, &batch.buf[at + 4..at + 16])?;
                batch.frames.push(FrameRef {
                    seq,
                    is_final: false,
                    start: at + 16,
                    len: layout.frame_len,
                });
                at += stride;
                continue;
            }
            // The final frame: make sure its prefix, then all of it, is in the buffer.
            // It fits: `at` is at most `want - stride`, and a final frame is at most
            // `stride + FINAL_EXTRA` bytes.
            batch.reserve_to(at + stride + FINAL_EXTRA);
            have = self.top_up(&mut batch.buf, have, at + FINAL_PREFIX)?;
            let seq = self.take_seq(u32_at(&batch.buf, at + 4), &batch.buf[at + 8..at + 20])?;
            let len = u32_at(&batch.buf, at + 20) as usize;
            if len > layout.frame_len {
                return Err(Malformed::FinalFrameLength.into());
            }
            let end = at + FINAL_PREFIX + len + TAG_LEN;
            have = self.top_up(&mut batch.buf, have, end)?;
            self.tail.extend_from_slice(&batch.buf[end..have]);
            batch.frames.push(FrameRef {
                seq,
                is_final: true,
                start: at + FINAL_PREFIX,
                len,
            });
            at = end;
            break true;
        };
        batch.len = at;
        if let Some(h) = self.hasher.as_mut() {
            h.update(&batch.buf[..at]);
        }
        Ok(last)
    }

    /// Checks a frame's sequence number and IV against the next expected ones.
    fn take_seq(&mut self, seq: u32, iv: &[u8]) -> Result<u32, Error> {
        if seq != self.next_seq || iv != frame_iv(seq) {
            return Err(Malformed::FrameSequence.into());
        }
        if seq > self.max_frames {
            return Err(Limit::FrameCount(self.max_frames).into());
        }
        self.next_seq = seq.wrapping_add(1);
        Ok(seq)
    }

    /// Reads more input so that at least `need` bytes of `buf` are filled.
    fn top_up(&mut self, buf: &mut [u8], have: usize, need: usize) -> Result<usize, Error> {
        if have >= need {
            return Ok(have);
        }
        read_exact_or_truncated(self.input, &mut buf[have..need])?;
        Ok(need)
    }
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_be_bytes(b)
}
