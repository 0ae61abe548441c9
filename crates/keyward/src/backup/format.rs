//! The backup file: a short header naming how the recovery secret becomes a wrapping key,
//! then an AWS Encryption SDK message (format version 2, committing suite 0x0478, framed)
//! whose data key is wrapped by the raw AES keyring under that wrapping key.
//!
//! ```text
//! magic            8   "KWBACKUP"
//! version          1   1
//! secret kind      1   1 = recovery passphrase (Argon2id), 2 = recovery key (32 bytes)
//! -- kind 1 only --
//! salt            16   random
//! memory_kib       4   big-endian, Argon2id m
//! iterations       4   big-endian, Argon2id t
//! parallelism      4   big-endian, Argon2id p
//! -- then --
//! message          *   AWS Encryption SDK message, encryption context
//!                      {"keyward-backup-header": hex(the bytes above)}
//! ```
//!
//! The header is bound to the message as its encryption context, which the message
//! header's authentication tag covers (and the raw AES keyring's wrap takes as AAD): a
//! changed byte anywhere, header included, fails decryption. The Argon2id costs are read
//! from the file, so they are bounded before any work is done.
//!
//! The message's plaintext (the payload) is one byte saying whether the root key follows
//! (0 or 1), the 32-byte root key if it does, and then the snapshot as JSON
//! ([`super::contents`]).

use keyward_kms::KdfParams;
use std::io::Write;

use keyward_envelope::{
    DecryptOptions, EncryptOptions, EncryptionContext, Limits, RawAesKeyring, WrappingKey,
};
use zeroize::Zeroizing;

/// The first bytes of every backup file.
pub(crate) const MAGIC: &[u8; 8] = b"KWBACKUP";
/// The format version this keyward writes and reads.
pub(crate) const VERSION: u8 = 1;
/// The encryption context key that carries the header.
const HEADER_CONTEXT_KEY: &str = "keyward-backup-header";
/// The raw AES keyring's namespace.
const KEY_NAMESPACE: &str = "keyward-backup";
/// The largest payload written or read: 1 GiB.
pub(crate) const MAX_PAYLOAD: usize = 1 << 30;
/// Plaintext bytes per frame.
const FRAME_LENGTH: u32 = 64 * 1024;
/// The largest file read: the payload plus generous room for framing.
pub(crate) const MAX_FILE: u64 = MAX_PAYLOAD as u64 + MAX_PAYLOAD as u64 / 64 + (1 << 20);

/// Why a backup could not be written or read. Decryption failures say only that: never
/// which byte or check failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BackupError {
    /// The file does not start like a backup.
    #[error("not a keyward backup file")]
    NotABackup,
    /// A backup of a newer format.
    #[error("backup format version {0} is not supported by this keyward")]
    UnsupportedVersion(u8),
    /// A header field out of bounds (Argon2id costs, an unknown secret kind).
    #[error("the backup header is not valid: {0}")]
    Header(&'static str),
    /// The recovery secret does not open the file, or the file was changed or cut short.
    #[error(
        "the backup cannot be opened: wrong recovery passphrase or key, or the file is damaged, truncated or altered"
    )]
    Undecryptable,
    /// The file or its contents are larger than this keyward reads.
    #[error("the backup is larger than this keyward reads ({MAX_PAYLOAD} bytes of contents)")]
    TooLarge,
    /// The contents authenticated but do not make sense (a writer's bug, not an attack).
    #[error("the backup's contents are not valid: {0}")]
    Contents(&'static str),
    /// The root key in the backup (or given) does not open the backup's records.
    #[error("the root key does not open this backup's records (root-key check or key material)")]
    RootKeyMismatch,
    /// The cryptographic library failed (randomness, key setup).
    #[error("cryptographic failure: {0}")]
    Crypto(&'static str),
}

/// How the wrapping key comes from the recovery secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kdf {
    /// Argon2id over the recovery passphrase.
    Passphrase {
        /// Random, per file.
        salt: [u8; 16],
        /// The costs.
        params: KdfParams,
    },
    /// The recovery key file's 32 bytes are the wrapping key.
    RecoveryKey,
}

/// The recovery secret: what an operator keeps apart from the backups.
pub(crate) enum RecoverySecret {
    /// A passphrase (at least 12 characters).
    Passphrase(keyward_kms::Passphrase),
    /// 32 random bytes from a recovery key file.
    Key(Zeroizing<[u8; 32]>),
}

impl RecoverySecret {
    /// The header kind for this secret, with a fresh salt for a passphrase.
    pub(crate) fn new_kdf(&self) -> Result<Kdf, BackupError> {
        Ok(match self {
            Self::Passphrase(_) => {
                let mut salt = [0u8; 16];
                aws_lc_rs::rand::fill(&mut salt)
                    .map_err(|_| BackupError::Crypto("random number generator failed"))?;
                Kdf::Passphrase {
                    salt,
                    params: KdfParams::DEFAULT,
                }
            }
            Self::Key(_) => Kdf::RecoveryKey,
        })
    }

    /// The wrapping key for `kdf`; `Undecryptable` for the wrong kind of secret.
    fn wrapping_key(&self, kdf: &Kdf) -> Result<WrappingKey, BackupError> {
        match (self, kdf) {
            (Self::Key(key), Kdf::RecoveryKey) => Ok(WrappingKey::from_bytes(**key)),
            (Self::Passphrase(passphrase), Kdf::Passphrase { salt, params }) => {
                let key = params
                    .derive(passphrase, salt)
                    .ok_or(BackupError::Header("Argon2id costs out of range"))?;
                Ok(WrappingKey::from_bytes(*key))
            }
            _ => Err(BackupError::Undecryptable),
        }
    }
}

impl Kdf {
    /// The header's bytes.
    pub(crate) fn header(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(38);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        match self {
            Self::Passphrase { salt, params } => {
                out.push(1);
                out.extend_from_slice(salt);
                for n in [params.memory_kib, params.iterations, params.parallelism] {
                    out.extend_from_slice(&n.to_be_bytes());
                }
            }
            Self::RecoveryKey => out.push(2),
        }
        out
    }

    /// Parses the header at the start of `file`: the KDF and the header's length.
    pub(crate) fn parse(file: &[u8]) -> Result<(Self, usize), BackupError> {
        if file.len() < MAGIC.len() + 2 || &file[..MAGIC.len()] != MAGIC {
            return Err(BackupError::NotABackup);
        }
        let version = file[MAGIC.len()];
        if version != VERSION {
            return Err(BackupError::UnsupportedVersion(version));
        }
        let rest = &file[MAGIC.len() + 2..];
        match file[MAGIC.len() + 1] {
            1 => {
                let fields = rest.get(..28).ok_or(BackupError::NotABackup)?;
                let word = |i: usize| {
                    let mut b = [0u8; 4];
                    b.copy_from_slice(&fields[16 + 4 * i..20 + 4 * i]);
                    u32::from_be_bytes(b)
                };
                let params = KdfParams {
                    memory_kib: word(0),
                    iterations: word(1),
                    parallelism: word(2),
                };
                if !params.within_bounds() {
                    return Err(BackupError::Header("Argon2id costs out of bounds"));
                }
                let mut salt = [0u8; 16];
                salt.copy_from_slice(&fields[..16]);
                Ok((Self::Passphrase { salt, params }, MAGIC.len() + 2 + 28))
            }
            2 => Ok((Self::RecoveryKey, MAGIC.len() + 2)),
            _ => Err(BackupError::Header("unknown recovery secret kind")),
        }
    }

    /// Whether this file needs a passphrase (else a recovery key file).
    pub(crate) fn needs_passphrase(&self) -> bool {
        matches!(self, Self::Passphrase { .. })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn keyring(kdf: &Kdf, secret: &RecoverySecret) -> Result<RawAesKeyring, BackupError> {
    let name = if kdf.needs_passphrase() {
        "recovery-passphrase"
    } else {
        "recovery-key"
    };
    RawAesKeyring::new(KEY_NAMESPACE, name, &secret.wrapping_key(kdf)?)
        .map_err(|_| BackupError::Crypto("keyring setup failed"))
}

fn context(header: &[u8]) -> EncryptionContext {
    [(HEADER_CONTEXT_KEY, hex(header))].into_iter().collect()
}

/// Encrypts `payload` into a whole backup file.
pub(crate) fn seal(
    payload: &[u8],
    kdf: &Kdf,
    secret: &RecoverySecret,
) -> Result<Vec<u8>, BackupError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(BackupError::TooLarge);
    }
    let header = kdf.header();
    let keyring = keyring(kdf, secret)?;
    let mut out = header.clone();
    out.reserve(payload.len() + payload.len() / 64 + 4096);
    let options = EncryptOptions {
        frame_length: FRAME_LENGTH,
        parallelism: 1,
        ..EncryptOptions::default()
    };
    keyward_envelope::encrypt(&keyring, &context(&header), &options, payload, &mut out)
        .map_err(|_| BackupError::Crypto("encryption failed"))?;
    Ok(out)
}

/// Decrypts a whole backup file with `secret`: the payload, in memory that is zeroed
/// when dropped.
pub(crate) fn open(
    file: &[u8],
    secret: &RecoverySecret,
) -> Result<Zeroizing<Vec<u8>>, BackupError> {
    if file.len() as u64 > MAX_FILE {
        return Err(BackupError::TooLarge);
    }
    let (kdf, header_len) = Kdf::parse(file)?;
    let header = &file[..header_len];
    let keyring = keyring(&kdf, secret)?;
    let options = DecryptOptions {
        required_context: context(header),
        limits: Limits {
            max_header_len: 64 * 1024,
            max_encrypted_data_keys: 1,
            max_frame_length: FRAME_LENGTH,
            max_frames: u32::try_from(MAX_PAYLOAD / FRAME_LENGTH as usize + 1).unwrap_or(u32::MAX),
        },
        parallelism: 1,
    };
    let mut payload = SecretBuf::new(file.len(), MAX_PAYLOAD);
    match keyward_envelope::decrypt(&keyring, &options, &file[header_len..], &mut payload) {
        Ok(_) => Ok(payload.bytes),
        Err(keyward_envelope::Error::Limit(_)) => Err(BackupError::TooLarge),
        Err(_) if payload.overflowed => Err(BackupError::TooLarge),
        Err(_) => Err(BackupError::Undecryptable),
    }
}

/// A growing buffer for secret bytes: each outgrown allocation is zeroed as it is
/// replaced (a plain `Vec` would leave copies behind), and it refuses to grow past its
/// limit.
pub(crate) struct SecretBuf {
    /// What was written.
    pub(crate) bytes: Zeroizing<Vec<u8>>,
    limit: usize,
    /// A write was refused for going past the limit.
    overflowed: bool,
}

impl SecretBuf {
    /// An empty buffer with room for `capacity` bytes that holds at most `limit`.
    pub(crate) fn new(capacity: usize, limit: usize) -> Self {
        Self {
            bytes: Zeroizing::new(Vec::with_capacity(capacity.min(limit))),
            limit,
            overflowed: false,
        }
    }
}

impl Write for SecretBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let needed = self.bytes.len() + buf.len();
        if needed > self.limit {
            self.overflowed = true;
            return Err(std::io::Error::other("backup payload too large"));
        }
        if needed > self.bytes.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(
                needed.max(self.bytes.capacity() * 2).min(self.limit),
            ));
            bigger.extend_from_slice(&self.bytes);
            self.bytes = bigger; // the old allocation is zeroed as it drops
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key_secret() -> RecoverySecret {
        RecoverySecret::Key(Zeroizing::new([7u8; 32]))
    }

    #[test]
    fn a_sealed_payload_opens_with_the_same_key_only() {
        let kdf = Kdf::RecoveryKey;
        let payload = vec![42u8; 200_000];
        let file = seal(&payload, &kdf, &key_secret()).unwrap();
        assert_eq!(&file[..8], MAGIC);
        assert_eq!(*open(&file, &key_secret()).unwrap(), payload);
        let wrong = RecoverySecret::Key(Zeroizing::new([8u8; 32]));
        assert!(matches!(
            open(&file, &wrong),
            Err(BackupError::Undecryptable)
        ));
    }

    #[test]
    fn every_flipped_byte_and_every_cut_fails_without_panic() {
        let file = seal(b"payload that is short", &Kdf::RecoveryKey, &key_secret()).unwrap();
        for i in 0..file.len() {
            let mut bad = file.clone();
            bad[i] ^= 0x01;
            assert!(open(&bad, &key_secret()).is_err(), "byte {i}");
        }
        for n in 0..file.len() {
            assert!(open(&file[..n], &key_secret()).is_err(), "cut at {n}");
        }
        let mut longer = file.clone();
        longer.push(0);
        assert!(open(&longer, &key_secret()).is_err());
    }

    #[test]
    fn passphrase_headers_round_trip_and_costs_are_bounded() {
        let kdf = Kdf::Passphrase {
            salt: [3; 16],
            params: KdfParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            },
        };
        let header = kdf.header();
        assert_eq!(Kdf::parse(&header).unwrap(), (kdf, header.len()));
        let secret = RecoverySecret::Passphrase(
            keyward_kms::Passphrase::new("correct horse battery".into()).unwrap(),
        );
        let file = seal(b"x", &kdf, &secret).unwrap();
        assert_eq!(*open(&file, &secret).unwrap(), b"x");
        // A key file cannot open a passphrase backup.
        assert!(matches!(
            open(&file, &key_secret()),
            Err(BackupError::Undecryptable)
        ));
        for (at, value) in [(26usize, u32::MAX), (30, 0), (30, 17), (34, 0), (34, 9)] {
            let mut bad = header.clone();
            bad[at..at + 4].copy_from_slice(&value.to_be_bytes());
            assert!(
                matches!(Kdf::parse(&bad), Err(BackupError::Header(_))),
                "{at}"
            );
        }
        assert!(matches!(
            Kdf::parse(b"KWBACKUP\x02\x01"),
            Err(BackupError::UnsupportedVersion(2))
        ));
        assert!(matches!(
            Kdf::parse(b"KWBACKUP\x01\x09"),
            Err(BackupError::Header(_))
        ));
        assert!(matches!(
            Kdf::parse(b"SQLite format 3"),
            Err(BackupError::NotABackup)
        ));
    }

    #[test]
    fn secret_buffers_are_bounded() {
        let mut buf = SecretBuf::new(0, 1000);
        for _ in 0..10 {
            buf.write_all(&[1; 100]).unwrap();
        }
        assert_eq!(*buf.bytes, [1; 1000]);
        assert!(buf.write_all(&[1]).is_err());
        assert!(buf.overflowed);
    }
}
