//! Framed message bodies, sealed and opened a batch of frames at a time.
//!
//! Specification: `data-format/message-body.md` and `data-format/message-body-aad.md`:
//!
//! ```text
//! regular frame = seq (4) || IV (12) || ciphertext (frame length) || tag (16)
//! final frame   = 0xFFFFFFFF || seq (4) || IV (12) || content length (4) || ciphertext || tag (16)
//! IV            = 8 zero bytes || seq (4)
//! AAD           = message id (32) || "AWSKMSEncryptionClient Frame" (or "... Final Frame")
//!                 || seq (4) || content length (8)
//! ```
//!
//! A [`Batch`] holds consecutive frames exactly as they appear on the wire, so reading,
//! sealing or opening in place, and writing need no copies.

use std::io::{ErrorKind, Read};

use crate::Error;
use crate::aead::Aes256Gcm;

use crate::suite::{IV_LEN, MESSAGE_ID_LEN, TAG_LEN};

/// The marker that starts a final frame in place of a sequence number.
pub(crate) const FINAL_MARKER: u32 = u32::MAX;
/// Bytes of a regular frame besides its content.
pub(crate) const REGULAR_OVERHEAD: usize = 4 + IV_LEN + TAG_LEN;
/// Bytes of a final frame before its content.
pub(crate) const FINAL_PREFIX: usize = 4 + 4 + IV_LEN + 4;
/// Extra bytes a final frame has over a regular frame of the same content length.
pub(crate) const FINAL_EXTRA: usize = FINAL_PREFIX - 4 - IV_LEN;

/// Frames per batch are chosen so that a batch holds about this many bytes.
const BATCH_TARGET: usize = 1 << 20;

/// Reads until `buf` is full or the input ends; returns the bytes read.
pub(crate) fn read_full(input: &mut impl Read, buf: &mut [u8]) -> Result<usize, Error> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(n)
}

/// Where one frame's content sits in its batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameRef {
    pub(crate) seq: u32,
    pub(crate) is_final: bool,
    /// Offset of the content (ciphertext or plaintext); the tag follows it.
    pub(crate) start: usize,
    pub(crate) len: usize,
}

/// Consecutive frames in wire layout.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub(crate) buf: Vec<u8>,
    pub(crate) frames: Vec<FrameRef>,
    /// Bytes of `buf` that belong to the frames.
    pub(crate) len: usize,
    /// Set by [`FrameCipher::open`]: whether every frame authenticated.
    pub(crate) ok: bool,
}

/// Frame geometry for one message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub(crate) frame_len: usize,
    pub(crate) per_batch: usize,
}

impl Layout {
    pub(crate) fn new(frame_length: u32) -> Self {
        let frame_len = frame_length as usize;
        // Counted with the per-frame overhead, so that tiny frames from a hostile header
        // cannot multiply a batch's size.
        Self {
            frame_len,
            per_batch: (BATCH_TARGET / (frame_len + REGULAR_OVERHEAD)).max(1),
        }
    }

    /// Wire size of a regular frame.
    pub(crate) fn stride(&self) -> usize {
        self.frame_len + REGULAR_OVERHEAD
    }

    /// Bytes of regular frames a full batch holds.
    pub(crate) fn batch_bytes(&self) -> usize {
        self.per_batch * self.stride()
    }
}

impl Batch {
    /// Empties the batch for reuse, keeping its allocations.
    pub(crate) fn clear(&mut self) {
        self.frames.clear();
        self.len = 0;
        self.ok = false;
    }

    /// Grows `buf` to at least `len` bytes. Buffers grow only as far as a message needs,
    /// so small messages stay cheap; reused batches keep their size.
    pub(crate) fn reserve_to(&mut self, len: usize) {
        if self.buf.is_empty() {
            self.buf = vec![0; len];
        } else if self.buf.len() < len {
            self.buf.resize(len, 0);
        }
    }
}

/// The frame IV: the sequence number, big-endian, left-padded to 12 bytes.
pub(crate) fn frame_iv(seq: u32) -> [u8; IV_LEN] {
    let mut iv = [0u8; IV_LEN];
    iv[8..].copy_from_slice(&seq.to_be_bytes());
    iv
}

/// Seals and opens frames of one message.
pub(crate) struct FrameCipher<'a> {
    pub(crate) key: &'a Aes256Gcm,
    pub(crate) message_id: &'a [u8; MESSAGE_ID_LEN],
}

impl FrameCipher<'_> {
    fn aad(&self, f: &FrameRef) -> ([u8; 80], usize) {
        let label: &[u8] = if f.is_final {
            b"AWSKMSEncryptionClient Final Frame"
        } else {
            b"AWSKMSEncryptionClient Frame"
        };
        let mut aad = [0u8; 80];
        let mut n = 0;
        for part in [
            &self.message_id[..],
            label,
            &f.seq.to_be_bytes(),
            &(f.len as u64).to_be_bytes(),
        ] {
            aad[n..n + part.len()].copy_from_slice(part);
            n += part.len();
        }
        (aad, n)
    }

    /// Encrypts every frame of the batch in place and writes its tag.
    pub(crate) fn seal(&self, batch: &mut Batch) {
        for f in &batch.frames {
            let (aad, n) = self.aad(f);
            let (content, rest) = batch.buf[f.start..].split_at_mut(f.len);
            // Sealing fails only for inputs over 64 GiB; frames are at most 16 MiB.
            if let Ok(tag) = self.key.seal(frame_iv(f.seq), &aad[..n], content) {
                rest[..TAG_LEN].copy_from_slice(&tag);
                batch.ok = true;
            } else {
                batch.ok = false;
                return;
            }
        }
    }

    /// Decrypts every frame of the batch in place; `batch.ok` says whether all authenticated.
    pub(crate) fn open(&self, batch: &mut Batch) {
        batch.ok = batch.frames.iter().all(|f| {
            let (aad, n) = self.aad(f);
            let frame = &mut batch.buf[f.start..f.start + f.len + TAG_LEN];
            self.key.open(frame_iv(f.seq), &aad[..n], frame).is_ok()
        });
    }
}
