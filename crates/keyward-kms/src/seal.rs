//! The seal: how the root key is kept at rest, and how a server gets it back.
//!
//! - `file` (the development default): the root key itself in `root.key`, mode 0600.
//! - `shamir`: the root key wrapped under a key-encryption key that exists only split
//!   into shares ([`crate::shamir`]); `threshold` of them, given one at a time, unseal.
//! - `pkcs11`: the root key wrapped by a key inside an HSM that never leaves it
//!   ([`crate::hsm`]); the server unseals itself at start.
//!
//! The root key never changes when the seal does: a rekey or a migration wraps that one
//! key again and leaves every key version and ciphertext as it was. The stored seal (the
//! store's [`SEAL_META`] entry; none means `file`) is not secret: the wrapped root key,
//! the split's shape, and a digest per share so that a wrong share is named at once.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::hsm::Pkcs11Seal;
use crate::shamir::{self, SECRET_LEN, Share};
use crate::{AesRootKey, Error, RootKey as _};

/// The store entry that says how the root key is sealed.
pub const SEAL_META: &str = "root-key-seal";

/// How a share is written: this prefix, then base64url of
/// `version (1) || set (8) || threshold (1) || x (1) || y (32) || check (4)`.
const SHARE_PREFIX: &str = "kws1-";
const SHARE_VERSION: u8 = 1;
const SHARE_BODY: usize = 1 + 8 + 1 + 1 + SECRET_LEN;
const SHARE_LEN: usize = SHARE_BODY + 4;
const CHECK_LABEL: &[u8] = b"keyward unseal share check\0";
const DIGEST_LABEL: &[u8] = b"keyward unseal share digest\0";
const WRAP_LABEL: &[u8] = b"keyward shamir seal v1\0";

/// How this store's root key is sealed.
#[derive(Debug)]
pub enum Seal {
    /// The development default: `root.key` in the data directory.
    File,
    /// Unseal shares.
    Shamir(ShamirSeal),
    /// A key in a PKCS#11 token.
    Pkcs11(Pkcs11Seal),
}

impl Seal {
    /// The seal `store` records (`File` if none).
    pub fn load(store: &dyn keyward_store::Store) -> Result<Self, Error> {
        Self::parse(store.meta(SEAL_META)?.as_deref())
    }

    /// The seal a [`SEAL_META`] entry says (`File` if there is none).
    pub fn parse(entry: Option<&[u8]>) -> Result<Self, Error> {
        let Some(bytes) = entry else {
            return Ok(Self::File);
        };
        let stored: Stored = serde_json::from_slice(bytes)
            .map_err(|_| Error::Internal("the stored seal is unreadable"))?;
        match stored {
            Stored::File => Ok(Self::File),
            Stored::Shamir(s) => Ok(Self::Shamir(ShamirSeal::from_stored(s)?)),
            Stored::Pkcs11(s) => Ok(Self::Pkcs11(Pkcs11Seal {
                token: s.token,
                key_label: s.key_label,
                wrapped_root: STANDARD
                    .decode(&s.root)
                    .map_err(|_| Error::Internal("the stored seal is unreadable"))?,
            })),
        }
    }

    /// The provider's name: `file` or `shamir`.
    pub fn provider(&self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Shamir(_) => "shamir",
            Self::Pkcs11(_) => "pkcs11",
        }
    }

    /// Records this seal in `store`, in place of whatever was there.
    pub fn save(&self, store: &dyn keyward_store::Store) -> Result<(), Error> {
        let stored = match self {
            Self::File => Stored::File,
            Self::Shamir(s) => Stored::Shamir(s.to_stored()),
            Self::Pkcs11(s) => Stored::Pkcs11(StoredPkcs11 {
                token: s.token.clone(),
                key_label: s.key_label.clone(),
                root: STANDARD.encode(&s.wrapped_root),
            }),
        };
        let bytes = serde_json::to_vec(&stored).map_err(|_| Error::Internal("seal encoding"))?;
        store.set_meta(SEAL_META, &bytes)?;
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "provider", rename_all = "lowercase")]
enum Stored {
    File,
    Shamir(StoredShamir),
    Pkcs11(StoredPkcs11),
}

#[derive(Serialize, Deserialize)]
struct StoredPkcs11 {
    token: String,
    key_label: String,
    /// IV, ciphertext and tag (base64).
    root: String,
}

#[derive(Serialize, Deserialize)]
struct StoredShamir {
    /// Names this split; every share carries it.
    set: String,
    shares: u8,
    threshold: u8,
    /// The root key wrapped under the split key (base64).
    root: String,
    /// SHA-256 over each share, by x (hex).
    digests: Vec<String>,
}

/// The root key sealed by unseal shares.
#[derive(Clone, PartialEq, Eq)]
pub struct ShamirSeal {
    set: [u8; 8],
    shares: u8,
    threshold: u8,
    wrapped_root: Vec<u8>,
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for ShamirSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShamirSeal")
            .field("shares", &self.shares)
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

/// A share as shown to its holder, once.
pub type ShareText = Zeroizing<String>;

fn digest(set: &[u8; 8], x: u8, y: &[u8; SECRET_LEN]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        &[DIGEST_LABEL, set, &[x], y].concat(),
    );
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn check(body: &[u8]) -> [u8; 4] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &[CHECK_LABEL, body].concat());
    let mut out = [0u8; 4];
    out.copy_from_slice(&d.as_ref()[..4]);
    out
}

fn kek(secret: &[u8; SECRET_LEN]) -> Result<AesRootKey, Error> {
    AesRootKey::new(secret, "shamir")
}

impl ShamirSeal {
    /// Seals `root` under a fresh split key cut into `shares` shares, `threshold` of
    /// which unseal. Returns the seal and the shares' text, to be shown once.
    pub fn create(
        root: &[u8; SECRET_LEN],
        shares: u8,
        threshold: u8,
    ) -> Result<(Self, Vec<ShareText>), Error> {
        shamir::check_split(shares, threshold)?;
        let rng = |buf: &mut [u8]| {
            aws_lc_rs::rand::fill(buf)
                .map_err(|_| Error::Internal("random number generator failed"))
        };
        let mut set = [0u8; 8];
        rng(&mut set)?;
        let mut split_key = Zeroizing::new([0u8; SECRET_LEN]);
        rng(&mut split_key[..])?;
        let wrapped_root = kek(&split_key)?.wrap(root, &[WRAP_LABEL, &set].concat())?;
        let parts = shamir::split(&split_key, shares, threshold)?;
        let digests = parts.iter().map(|s| digest(&set, s.x, &s.y)).collect();
        let texts = parts
            .iter()
            .map(|s| {
                let mut raw = Zeroizing::new(Vec::with_capacity(SHARE_LEN));
                raw.push(SHARE_VERSION);
                raw.extend_from_slice(&set);
                raw.push(threshold);
                raw.push(s.x);
                raw.extend_from_slice(&s.y[..]);
                let sum = check(&raw);
                raw.extend_from_slice(&sum);
                Zeroizing::new(format!(
                    "{SHARE_PREFIX}{}",
                    URL_SAFE_NO_PAD.encode(&raw[..])
                ))
            })
            .collect();
        Ok((
            Self {
                set,
                shares,
                threshold,
                wrapped_root,
                digests,
            },
            texts,
        ))
    }

    /// Shares in all.
    pub fn shares(&self) -> u8 {
        self.shares
    }

    /// Shares needed to unseal.
    pub fn threshold(&self) -> u8 {
        self.threshold
    }

    /// A fresh collection of shares towards unsealing.
    pub fn unsealing(&self) -> Unsealing {
        Unsealing {
            seal: self.clone(),
            given: Vec::new(),
        }
    }

    fn to_stored(&self) -> StoredShamir {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        StoredShamir {
            set: hex(&self.set),
            shares: self.shares,
            threshold: self.threshold,
            root: STANDARD.encode(&self.wrapped_root),
            digests: self.digests.iter().map(|d| hex(d)).collect(),
        }
    }

    fn from_stored(s: StoredShamir) -> Result<Self, Error> {
        let bad = || Error::Internal("the stored seal is unreadable");
        fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
            if s.len() != 2 * N || !s.is_ascii() {
                return None;
            }
            let mut out = [0u8; N];
            for (i, o) in out.iter_mut().enumerate() {
                *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
            }
            Some(out)
        }
        shamir::check_split(s.shares, s.threshold).map_err(|_| bad())?;
        if s.digests.len() != usize::from(s.shares) {
            return Err(bad());
        }
        Ok(Self {
            set: unhex(&s.set).ok_or_else(bad)?,
            shares: s.shares,
            threshold: s.threshold,
            wrapped_root: STANDARD.decode(&s.root).map_err(|_| bad())?,
            digests: s
                .digests
                .iter()
                .map(|d| unhex(d).ok_or_else(bad))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// Why a share was not taken. None of these lose the shares given before.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    /// Not a keyward unseal share at all.
    #[error("not a keyward unseal share (they begin with {SHARE_PREFIX})")]
    Malformed,
    /// The share's own checksum fails: a typo or a damaged copy.
    #[error("the share is corrupted: its checksum does not match (a typo, or a damaged copy)")]
    Corrupted,
    /// A well-formed share of another split: another keyward, or one from before a rekey.
    #[error("the share belongs to another set of shares (another keyward, or before a rekey)")]
    OtherSet,
    /// A share of this set whose value is not the one made for its number.
    #[error("share {0} is not the share {0} this keyward made: it was altered")]
    Altered(u8),
    /// This share was given already.
    #[error("share {0} was given already")]
    Duplicate(u8),
    /// Every share checked, yet they do not open the stored root key: the stored seal
    /// was altered. The shares given are dropped.
    #[error("the shares do not open the stored root key: the stored seal was altered")]
    NoRootKey,
}

/// Where unsealing stands after a share.
pub enum Progress {
    /// More shares are needed.
    Need {
        /// Shares taken so far.
        given: u8,
        /// Shares needed.
        threshold: u8,
    },
    /// The threshold was reached: the root key.
    Unsealed(Zeroizing<[u8; SECRET_LEN]>),
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Need { given, threshold } => write!(f, "Need({given}/{threshold})"),
            Self::Unsealed(_) => f.write_str("Unsealed(<root key>)"),
        }
    }
}

/// Shares collected towards unsealing, each checked as it comes.
pub struct Unsealing {
    seal: ShamirSeal,
    given: Vec<Share>,
}

impl std::fmt::Debug for Unsealing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unsealing")
            .field("given", &self.given.len())
            .field("threshold", &self.seal.threshold)
            .finish()
    }
}

impl Unsealing {
    /// Shares taken so far.
    pub fn given(&self) -> u8 {
        self.given.len() as u8
    }

    /// The seal these shares are for.
    pub fn seal(&self) -> &ShamirSeal {
        &self.seal
    }

    /// Drops the shares given so far.
    pub fn reset(&mut self) {
        self.given.clear();
    }

    /// Takes one share (surrounding whitespace ignored). A share that fails a check is
    /// refused and leaves the ones before it in place.
    pub fn give(&mut self, text: &str) -> Result<Progress, ShareError> {
        let share = self.parse(text.trim())?;
        self.given.push(share);
        if self.given() < self.seal.threshold {
            return Ok(Progress::Need {
                given: self.given(),
                threshold: self.seal.threshold,
            });
        }
        let given = std::mem::take(&mut self.given);
        let split_key = shamir::combine(&given).map_err(|_| ShareError::NoRootKey)?;
        let root = kek(&split_key)
            .and_then(|k| {
                k.unwrap(
                    &self.seal.wrapped_root,
                    &[WRAP_LABEL, &self.seal.set].concat(),
                )
            })
            .map_err(|_| ShareError::NoRootKey)?;
        let mut out = Zeroizing::new([0u8; SECRET_LEN]);
        if root.len() != SECRET_LEN {
            return Err(ShareError::NoRootKey);
        }
        out.copy_from_slice(&root);
        Ok(Progress::Unsealed(out))
    }

    fn parse(&self, text: &str) -> Result<Share, ShareError> {
        let body = text
            .strip_prefix(SHARE_PREFIX)
            .ok_or(ShareError::Malformed)?;
        let raw = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(body)
                .map_err(|_| ShareError::Corrupted)?,
        );
        if raw.len() != SHARE_LEN {
            return Err(ShareError::Corrupted);
        }
        let (content, sum) = raw.split_at(SHARE_BODY);
        if !constant_time_eq(&check(content), sum) {
            return Err(ShareError::Corrupted);
        }
        if content[0] != SHARE_VERSION {
            return Err(ShareError::Malformed);
        }
        if content[1..9] != self.seal.set || content[9] != self.seal.threshold {
            return Err(ShareError::OtherSet);
        }
        let x = content[10];
        let mut y = Zeroizing::new([0u8; SECRET_LEN]);
        y.copy_from_slice(&content[11..]);
        let expected = (x != 0)
            .then(|| self.seal.digests.get(usize::from(x) - 1))
            .flatten()
            .ok_or(ShareError::Altered(x))?;
        if !constant_time_eq(&digest(&self.seal.set, x, &y), expected) {
            return Err(ShareError::Altered(x));
        }
        if self.given.iter().any(|s| s.x == x) {
            return Err(ShareError::Duplicate(x));
        }
        Ok(Share { x, y })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> [u8; SECRET_LEN] {
        let mut r = [0u8; SECRET_LEN];
        aws_lc_rs::rand::fill(&mut r).unwrap();
        r
    }

    fn unsealed(p: Progress) -> [u8; SECRET_LEN] {
        match p {
            Progress::Unsealed(k) => *k,
            Progress::Need { .. } => panic!("not unsealed"),
        }
    }

    #[test]
    fn threshold_shares_in_any_order_unseal_and_fewer_do_not() {
        let r = root();
        let (seal, shares) = ShamirSeal::create(&r, 5, 3).unwrap();
        for order in [[0, 1, 2], [4, 2, 0], [3, 4, 1]] {
            let mut u = seal.unsealing();
            for (n, &i) in order[..2].iter().enumerate() {
                match u.give(&shares[i]).unwrap() {
                    Progress::Need { given, threshold } => {
                        assert_eq!((given, threshold), (n as u8 + 1, 3));
                    }
                    Progress::Unsealed(_) => panic!("unsealed with {} shares", n + 1),
                }
            }
            assert_eq!(unsealed(u.give(&shares[order[2]]).unwrap()), r);
            assert_eq!(u.given(), 0, "the shares are dropped once used");
        }
    }

    #[test]
    fn bad_shares_are_named_and_do_not_poison_the_ones_given() {
        let r = root();
        let (seal, shares) = ShamirSeal::create(&r, 3, 2).unwrap();
        let (_, others) = ShamirSeal::create(&r, 3, 2).unwrap();
        let mut u = seal.unsealing();
        assert!(matches!(
            u.give(&shares[0]).unwrap(),
            Progress::Need { given: 1, .. }
        ));

        // A typo: one character changed.
        let mut typo = shares[1].to_string();
        let last = typo.pop().unwrap();
        typo.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(u.give(&typo).unwrap_err(), ShareError::Corrupted);
        assert_eq!(u.give("hello").unwrap_err(), ShareError::Malformed);
        assert_eq!(u.give("kws1-!!!").unwrap_err(), ShareError::Corrupted);
        assert_eq!(u.give(&others[1]).unwrap_err(), ShareError::OtherSet);
        assert_eq!(u.give(&shares[0]).unwrap_err(), ShareError::Duplicate(1));

        // Altered with a fresh checksum: caught by the stored digest, and named.
        let raw = URL_SAFE_NO_PAD
            .decode(shares[1].strip_prefix(SHARE_PREFIX).unwrap())
            .unwrap();
        let mut body = raw[..SHARE_BODY].to_vec();
        body[20] ^= 0x40;
        let sum = check(&body);
        body.extend_from_slice(&sum);
        let forged = format!("{SHARE_PREFIX}{}", URL_SAFE_NO_PAD.encode(&body));
        assert_eq!(u.give(&forged).unwrap_err(), ShareError::Altered(2));

        assert_eq!(u.given(), 1, "share 1 is still there");
        assert_eq!(
            unsealed(u.give(&format!("  {}\n", &*shares[2])).unwrap()),
            r
        );
    }

    #[test]
    fn a_stored_seal_reads_back_and_an_altered_one_opens_nothing() {
        let r = root();
        let (seal, shares) = ShamirSeal::create(&r, 2, 2).unwrap();
        let back = ShamirSeal::from_stored(
            serde_json::from_slice::<StoredShamir>(&serde_json::to_vec(&seal.to_stored()).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(back, seal);
        let mut altered = seal.clone();
        altered.wrapped_root[20] ^= 1;
        let mut u = altered.unsealing();
        u.give(&shares[0]).unwrap();
        assert_eq!(u.give(&shares[1]).unwrap_err(), ShareError::NoRootKey);
        assert_eq!(u.given(), 0);
    }
}
