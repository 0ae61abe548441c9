//! API access keys: SigV4 credentials bound to a principal. Secrets are stored wrapped by
//! the root key and shown once, when made.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use keyward_kms::Kms;
use keyward_store::AccessKey;
use zeroize::Zeroizing;

use crate::ServerError;

/// A new access key's credentials, to show once.
pub struct NewAccessKey {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret: Zeroizing<String>,
}

impl std::fmt::Debug for NewAccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewAccessKey")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

fn purpose(access_key_id: &str) -> String {
    format!("access-key:{access_key_id}")
}

/// Makes an access key for `principal`: id `KWAK` + 16 base32 characters, a 40-character
/// secret (the shapes AWS SDKs expect).
pub fn create(kms: &Kms, principal: &str, now: i64) -> Result<NewAccessKey, ServerError> {
    let mut id = [0u8; 10];
    let mut secret = Zeroizing::new([0u8; 30]);
    aws_lc_rs::rand::fill(&mut id)
        .map_err(|_| ServerError::Internal("random number generator failed".into()))?;
    aws_lc_rs::rand::fill(&mut secret[..])
        .map_err(|_| ServerError::Internal("random number generator failed".into()))?;
    let access_key_id = format!("KWAK{}", base32(&id));
    let secret = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&secret[..]));
    let wrapped = kms.seal_secret(&purpose(&access_key_id), secret.as_bytes())?;
    kms.store().create_access_key(&AccessKey {
        access_key_id: access_key_id.clone(),
        principal: principal.to_owned(),
        wrapped,
        created_at: now,
    })?;
    Ok(NewAccessKey {
        access_key_id,
        secret,
    })
}

/// The secret and principal of an access key, if it exists.
pub fn lookup(
    kms: &Kms,
    access_key_id: &str,
) -> Result<Option<(Zeroizing<String>, String)>, ServerError> {
    let Some(key) = kms.store().access_key(access_key_id)? else {
        return Ok(None);
    };
    let secret = kms.open_secret(&purpose(access_key_id), &key.wrapped)?;
    let secret = String::from_utf8(secret.to_vec())
        .map_err(|_| ServerError::Internal("corrupt access key".into()))?;
    Ok(Some((Zeroizing::new(secret), key.principal)))
}

/// How long the server trusts what it read about an access key. A key deleted by another
/// process (`keyward access-key delete`, another node) stops working within this time;
/// in between, requests need no store lookup and no unwrapping.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

/// The access keys a server has seen recently, and (up to [`MAX_UNKNOWN`]) ids it looked
/// up and did not find, so that a client sending made-up ids does not reach the store on
/// every request.
#[derive(Default)]
pub struct AccessKeyCache {
    entries: RwLock<HashMap<String, Cached>>,
}

/// Most unknown ids remembered at once.
pub const MAX_UNKNOWN: usize = 4096;

impl std::fmt::Debug for AccessKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.entries.read().map_or(0, |e| e.len());
        f.debug_struct("AccessKeyCache")
            .field("entries", &n)
            .finish()
    }
}

struct Cached {
    found: Option<(Zeroizing<String>, String)>,
    read_at: Instant,
}

/// A found access key: its secret and principal.
pub type Found = Option<(Zeroizing<String>, String)>;

/// Whether `id` has the shape of a keyward access key id (`KWAK` + 16 base32 characters);
/// others are refused without a lookup.
pub fn plausible_id(id: &str) -> bool {
    id.len() == 20
        && id.starts_with("KWAK")
        && id[4..]
            .bytes()
            .all(|c| c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c))
}

impl AccessKeyCache {
    /// What was read about `access_key_id` less than [`FRESH_FOR`] ago, if anything.
    pub fn cached(&self, access_key_id: &str) -> Option<Found> {
        let entries = self.entries.read().ok()?;
        let c = entries.get(access_key_id)?;
        (c.read_at.elapsed() < FRESH_FOR).then(|| c.found.clone())
    }

    /// Reads `access_key_id` from the store (blocking) and remembers the answer.
    pub fn refresh(&self, kms: &Kms, access_key_id: &str) -> Result<Found, ServerError> {
        let read_at = Instant::now();
        let found = if plausible_id(access_key_id) {
            lookup(kms, access_key_id)?
        } else {
            None
        };
        if let Ok(mut entries) = self.entries.write() {
            if found.is_none() {
                let unknown = entries.values().filter(|c| c.found.is_none()).count();
                if unknown >= MAX_UNKNOWN {
                    entries.retain(|_, c| c.found.is_some());
                }
            }
            let c = Cached {
                found: found.clone(),
                read_at,
            };
            entries.insert(access_key_id.to_owned(), c);
        }
        Ok(found)
    }

    /// Forgets everything (the store changed under it).
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.write() {
            entries.clear();
        }
    }

    /// [`Self::cached`], else [`Self::refresh`].
    pub fn lookup(&self, kms: &Kms, access_key_id: &str) -> Result<Found, ServerError> {
        match self.cached(access_key_id) {
            Some(found) => Ok(found),
            None => self.refresh(kms, access_key_id),
        }
    }
}

fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut acc, mut bits) = (0u32, 0);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    out
}
