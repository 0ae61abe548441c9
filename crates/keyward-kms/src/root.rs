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
                key = read_key_file(path)?;
                false
            }
            Err(_) => return Err(Error::Internal("cannot create the root key file")),
        };
        tracing::warn!(
            path = %path.display(),
            "root key provider `file` is for development only: anyone who can read this file \
             and the database can unwrap every key; use a passphrase, Shamir shares or an HSM"
        );
        Ok((Self::new(&key, "file")?, created))
    }

    /// The development provider's key from an existing file (never creating one).
    pub fn load_file(path: &Path) -> Result<Self, Error> {
        Self::new(&*read_key_file(path)?, "file")
    }
}

/// The 32 bytes of a root key file, which must be readable by its owner only.
pub fn read_key_file(path: &Path) -> Result<Zeroizing<[u8; 32]>, Error> {
    let mut key = Zeroizing::new([0u8; 32]);
    let mut f =
        fs::File::open(path).map_err(|_| Error::Internal("cannot read the root key file"))?;
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
    Ok(key)
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

/// A passphrase, zeroized on drop and never printed.
pub struct Passphrase(Zeroizing<String>);

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

impl Passphrase {
    /// Wraps a passphrase; it must be at least 12 characters.
    pub fn new(passphrase: String) -> Result<Self, Error> {
        let p = Zeroizing::new(passphrase);
        if p.chars().count() < 12 {
            return Err(Error::Validation(
                "the passphrase must be at least 12 characters".into(),
            ));
        }
        Ok(Self(p))
    }

    /// Asks for the passphrase on the terminal, without echo (never from the command line).
    pub fn prompt(message: &str) -> Result<Self, Error> {
        let p = rpassword::prompt_password(message)
            .map_err(|_| Error::Validation("cannot read a passphrase from the terminal".into()))?;
        Self::new(p)
    }

    /// The passphrase itself. Every call site is a place it leaves this type.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Reads a passphrase from the first line of a file (never from the command line).
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = Zeroizing::new(
            fs::read_to_string(path)
                .map_err(|_| Error::Validation("cannot read the passphrase file".into()))?,
        );
        Self::new(text.lines().next().unwrap_or("").to_owned())
    }
}

/// Argon2id costs for the passphrase provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl KdfParams {
    /// 64 MiB, 3 passes, 1 lane (RFC 9106's second recommended option).
    pub const DEFAULT: Self = Self {
        memory_kib: 64 * 1024,
        iterations: 3,
        parallelism: 1,
    };
    /// The most a stored parameter set may ask for: the file is not trusted to set costs.
    const MAX: Self = Self {
        memory_kib: 1024 * 1024,
        iterations: 16,
        parallelism: 8,
    };

    fn to_bytes(self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&self.memory_kib.to_be_bytes());
        b[4..8].copy_from_slice(&self.iterations.to_be_bytes());
        b[8..].copy_from_slice(&self.parallelism.to_be_bytes());
        b
    }

    fn from_bytes(b: &[u8]) -> Option<Self> {
        let word = |i: usize| Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?));
        let p = Self {
            memory_kib: word(0)?,
            iterations: word(4)?,
            parallelism: word(8)?,
        };
        p.within_bounds().then_some(p)
    }

    /// Whether costs read from an untrusted place are ones keyward accepts: at most
    /// 1 GiB, 16 passes and 8 lanes (and what Argon2 itself requires).
    pub fn within_bounds(self) -> bool {
        (1..=Self::MAX.parallelism).contains(&self.parallelism)
            && (1..=Self::MAX.iterations).contains(&self.iterations)
            && (8 * self.parallelism..=Self::MAX.memory_kib).contains(&self.memory_kib)
    }

    /// Argon2id(`passphrase`, `salt`) with these costs: a 32-byte key. `None` if the
    /// costs or the salt are out of Argon2's range.
    pub fn derive(self, passphrase: &Passphrase, salt: &[u8]) -> Option<Zeroizing<[u8; 32]>> {
        let costs =
            argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
                .ok()?;
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, costs);
        let mut key = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(passphrase.0.as_bytes(), salt, &mut key[..])
            .ok()?;
        Some(key)
    }
}

/// Where the passphrase provider keeps its salt and costs (not secret).
pub const PASSPHRASE_META: &str = "root-key-passphrase-kdf";

impl AesRootKey {
    /// The passphrase provider: the root key is Argon2id(passphrase, salt). The salt and
    /// costs are made on first use and stored under [`PASSPHRASE_META`]; a wrong
    /// passphrase is caught by [`crate::Kms::open`]'s check value.
    pub fn from_passphrase(
        passphrase: &Passphrase,
        store: &dyn keyward_store::Store,
        params: KdfParams,
    ) -> Result<Self, Error> {
        let mut fresh = [0u8; 16 + 12];
        aws_lc_rs::rand::fill(&mut fresh[..16])
            .map_err(|_| Error::Internal("random number generator failed"))?;
        fresh[16..].copy_from_slice(&params.to_bytes());
        let stored = store.init_meta(PASSPHRASE_META, &fresh)?;
        let (salt, costs) = stored
            .split_at_checked(16)
            .ok_or(Error::Internal("corrupt passphrase parameters"))?;
        let costs = KdfParams::from_bytes(costs)
            .ok_or(Error::Internal("stored passphrase costs are out of bounds"))?;
        let key = costs
            .derive(passphrase, salt)
            .ok_or(Error::Internal("passphrase key derivation failed"))?;
        Self::new(&key, "passphrase")
    }
}
