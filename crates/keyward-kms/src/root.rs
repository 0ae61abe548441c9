//! The root-key barrier: every key version is stored wrapped under the root key.
//!
//! [`RootKey`] is what the KMS needs: wrap and unwrap. Providers that hold the root key
//! in memory build an [`AesRootKey`] (from a file now, from a passphrase or Shamir shares
//! next); a PKCS#11 provider implements [`RootKey`] itself so the key never leaves the HSM.

use std::fs;
use std::io::{ErrorKind, Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::Error;

/// Wraps and unwraps key material for storage.
pub trait RootKey: Send + Sync {
    /// Encrypts `material`, bound to `context` (the key id and version it belongs to).
    fn wrap(&self, material: &[u8], context: &[u8]) -> Result<Vec<u8>, Error>;
    /// Decrypts what [`RootKey::wrap`] made with the same `context`.
    fn unwrap(&self, wrapped: &[u8], context: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error>;
    /// The provider's name, for logs and `keyward doctor`: `file`, `passphrase`, ...
    fn provider(&self) -> &'static str;
}

const WRAP_VERSION: u8 = 1;
const WRAP_LABEL: &[u8] = b"keyward root-key wrap v1\0";

/// A root key held in memory: AES-256-GCM with a random IV per wrap.
///
/// Wrapped form: `01 || IV (12) || ciphertext || tag (16)`, with AAD
/// `"keyward root-key wrap v1\0" || context`.
pub struct AesRootKey {
    key: LessSafeKey,
    provider: &'static str,
}

impl std::fmt::Debug for AesRootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AesRootKey")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

impl AesRootKey {
    /// A root key from 32 bytes, for `provider`.
    pub fn new(key: &[u8; 32], provider: &'static str) -> Result<Self, Error> {
        let key = UnboundKey::new(&AES_256_GCM, key)
            .map_err(|_| Error::Internal("root key setup failed"))?;
        Ok(Self {
            key: LessSafeKey::new(key),
            provider,
        })
    }

    /// The development provider: a 32-byte file, created with mode 0600 on first use.
    ///
    /// Returns the key and whether the file was created now. Anyone who can read the file
    /// can unwrap every key: use a passphrase, Shamir shares or an HSM in production.
    pub fn load_or_create_file(path: &Path) -> Result<(Self, bool), Error> {
        let mut key = Zeroizing::new([0u8; 32]);
        let created = match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(mut f) => {
                aws_lc_rs::rand::fill(&mut key[..])
                    .map_err(|_| Error::Internal("random number generator failed"))?;
                f.write_all(&key[..])
                    .and_then(|()| f.sync_all())
                    .map_err(|_| Error::Internal("cannot write the root key file"))?;
                if let Some(dir) = path.parent() {
                    fs::File::open(dir)
                        .and_then(|d| d.sync_all())
                        .map_err(|_| Error::Internal("cannot sync the data directory"))?;
                }
                true
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let mut f = fs::File::open(path)
                    .map_err(|_| Error::Internal("cannot read the root key file"))?;
                let meta = f
                    .metadata()
                    .map_err(|_| Error::Internal("cannot read the root key file"))?;
                if meta.len() != 32 {
                    return Err(Error::Internal(
                        "the root key file must hold exactly 32 bytes",
                    ));
                }
                if meta.permissions().mode() & 0o077 != 0 {
                    return Err(Error::Internal(
                        "the root key file is readable by other users: chmod 600 it",
                    ));
                }
                f.read_exact(&mut key[..])
                    .map_err(|_| Error::Internal("cannot read the root key file"))?;
                false
            }
            Err(_) => return Err(Error::Internal("cannot create the root key file")),
        };
        Ok((Self::new(&key, "file")?, created))
    }
}

fn aad(context: &[u8]) -> Vec<u8> {
    [WRAP_LABEL, context].concat()
}

impl RootKey for AesRootKey {
    fn wrap(&self, material: &[u8], context: &[u8]) -> Result<Vec<u8>, Error> {
        let mut iv = [0u8; 12];
        aws_lc_rs::rand::fill(&mut iv)
            .map_err(|_| Error::Internal("random number generator failed"))?;
        let mut out = Vec::with_capacity(1 + 12 + material.len() + 16);
        out.push(WRAP_VERSION);
        out.extend_from_slice(&iv);
        out.extend_from_slice(material);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(iv),
                Aad::from(&aad(context)[..]),
                &mut out[13..],
            )
            .map_err(|_| Error::Internal("root key wrap failed"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    fn unwrap(&self, wrapped: &[u8], context: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let fail = || Error::Internal("stored key material does not unwrap under the root key");
        let (&version, rest) = wrapped.split_first().ok_or_else(fail)?;
        if version != WRAP_VERSION || rest.len() < 12 + 16 {
            return Err(fail());
        }
        let (iv, sealed) = rest.split_at(12);
        let iv: [u8; 12] = iv.try_into().map_err(|_| fail())?;
        let mut buf = Zeroizing::new(sealed.to_vec());
        let len = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(iv),
                Aad::from(&aad(context)[..]),
                &mut buf,
            )
            .map_err(|_| fail())?
            .len();
        buf.truncate(len);
        Ok(buf)
    }

    fn provider(&self) -> &'static str {
        self.provider
    }
}
