//! API access keys: SigV4 credentials bound to a principal. Secrets are stored wrapped by
//! the root key and shown once, when made.

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
