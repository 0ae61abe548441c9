//! The PKCS#11 seal: an AES-256 key made inside a token (an HSM, or SoftHSM2 in tests),
//! sensitive and not extractable, so that it never leaves it. It wraps keyward's root
//! key with AES-GCM, the encryption and decryption done by the token; the root key is
//! in memory only while the server is unsealed, and at rest only as the token wrapped it.
//!
//! This is how Vault and OpenBao use an HSM ("auto-unseal"): the token is asked once per
//! unseal, not once per key version, and moving to or from the HSM wraps one key again
//! instead of every key version.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use crate::Error;

/// The AAD of the root key's wrap, and its version.
const WRAP_AAD: &[u8] = b"keyward pkcs11 seal v1\0";
const IV_LEN: usize = 12;
const TAG_BITS: u64 = 128;

/// Where the token is and how to log in; never stored (the PIN is read from its file).
pub struct HsmAccess {
    /// The PKCS#11 module (for SoftHSM2: /usr/lib/softhsm/libsofthsm2.so).
    pub module: PathBuf,
    /// The user PIN.
    pub pin: Zeroizing<String>,
}

impl std::fmt::Debug for HsmAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HsmAccess")
            .field("module", &self.module)
            .finish_non_exhaustive()
    }
}

impl HsmAccess {
    /// The module, and the PIN from the first line of `pin_file` (never a command-line
    /// argument or a variable, where `ps` and `/proc` would show it).
    pub fn new(module: &Path, pin_file: &Path) -> Result<Self, Error> {
        let text = Zeroizing::new(std::fs::read_to_string(pin_file).map_err(|e| {
            Error::Validation(format!(
                "cannot read the PIN file {}: {e}",
                pin_file.display()
            ))
        })?);
        let pin = Zeroizing::new(text.lines().next().unwrap_or("").to_owned());
        if pin.is_empty() {
            return Err(Error::Validation(format!(
                "the PIN file {} is empty",
                pin_file.display()
            )));
        }
        Ok(Self {
            module: module.to_owned(),
            pin,
        })
    }
}

/// What went wrong with the token, named for the operator (never with the PIN).
fn hsm(what: &str) -> impl Fn(cryptoki::error::Error) -> Error + '_ {
    move |e| Error::Hsm(format!("{what}: {e}"))
}

/// The module at `path`, loaded and initialized once per process: PKCS#11 allows one
/// `C_Initialize` per process, and sessions from several threads share it.
fn context(path: &Path) -> Result<Pkcs11, Error> {
    static LOADED: Mutex<Vec<(PathBuf, Pkcs11)>> = Mutex::new(Vec::new());
    let mut loaded = LOADED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, c)) = loaded.iter().find(|(p, _)| p == path) {
        return Ok(c.clone());
    }
    let context = Pkcs11::new(path).map_err(|e| {
        Error::Hsm(format!(
            "cannot load the PKCS#11 module {}: {e}",
            path.display()
        ))
    })?;
    context
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(hsm("initializing the PKCS#11 module"))?;
    loaded.push((path.to_owned(), context.clone()));
    Ok(context)
}

/// A logged-in session on the token labelled `token`. One at a time per process: the
/// token is asked a few times per unseal, and SoftHSM2 corrupts its object store when
/// sessions make token objects concurrently.
struct Token {
    session: Session,
    _one: std::sync::MutexGuard<'static, ()>,
}

impl Token {
    fn open(access: &HsmAccess, token: &str) -> Result<Self, Error> {
        static ONE: Mutex<()> = Mutex::new(());
        let one = ONE.lock().unwrap_or_else(|p| p.into_inner());
        let context = context(&access.module)?;
        let slot = context
            .get_slots_with_initialized_token()
            .map_err(hsm("listing the tokens"))?
            .into_iter()
            .find(|s| {
                context
                    .get_token_info(*s)
                    .is_ok_and(|i| i.label().trim_end() == token)
            })
            .ok_or_else(|| Error::Hsm(format!("no token labelled {token:?} is present")))?;
        let session = context
            .open_rw_session(slot)
            .map_err(hsm("opening a session"))?;
        match session.login(UserType::User, Some(&AuthPin::from(access.pin.as_str()))) {
            // Another session of this process is logged in already: so is this one.
            Ok(())
            | Err(cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::UserAlreadyLoggedIn,
                _,
            )) => {}
            Err(e) => return Err(hsm("logging in (is the PIN right?)")(e)),
        }
        Ok(Self { session, _one: one })
    }

    fn keys(&self, label: &str) -> Result<Vec<ObjectHandle>, Error> {
        self.session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .map_err(hsm("looking for the key"))
    }

    fn key(&self, label: &str) -> Result<ObjectHandle, Error> {
        match self.keys(label)?.as_slice() {
            [one] => Ok(*one),
            [] => Err(Error::Hsm(format!(
                "the token holds no AES key labelled {label:?}"
            ))),
            _ => Err(Error::Hsm(format!(
                "the token holds several AES keys labelled {label:?}"
            ))),
        }
    }
}

/// The root key sealed by a key in a PKCS#11 token.
#[derive(Clone, PartialEq, Eq)]
pub struct Pkcs11Seal {
    /// The token's label.
    pub token: String,
    /// The wrapping key's label in the token.
    pub key_label: String,
    /// `IV (12) || ciphertext || tag (16)`, made by the token.
    pub(crate) wrapped_root: Vec<u8>,
}

impl std::fmt::Debug for Pkcs11Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Seal")
            .field("token", &self.token)
            .field("key_label", &self.key_label)
            .finish_non_exhaustive()
    }
}

impl Pkcs11Seal {
    /// Makes a new wrapping key labelled `key_label` in the token labelled `token`
    /// (refusing if one with that label is there already) and wraps `root` with it.
    pub fn create(
        access: &HsmAccess,
        token: &str,
        key_label: &str,
        root: &[u8; 32],
    ) -> Result<Self, Error> {
        let t = Token::open(access, token)?;
        if !t.keys(key_label)?.is_empty() {
            return Err(Error::Hsm(format!(
                "the token already holds a key labelled {key_label:?}: choose another label"
            )));
        }
        let key = t
            .session
            .generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                    Attribute::ValueLen(32.into()),
                    Attribute::Label(key_label.as_bytes().to_vec()),
                ],
            )
            .map_err(hsm("making the wrapping key"))?;
        let mut iv = [0u8; IV_LEN];
        aws_lc_rs::rand::fill(&mut iv)
            .map_err(|_| Error::Internal("random number generator failed"))?;
        let mut params_iv = iv;
        let sealed = t
            .session
            .encrypt(
                &Mechanism::AesGcm(
                    GcmParams::new(&mut params_iv, WRAP_AAD, TAG_BITS.into())
                        .map_err(hsm("GCM parameters"))?,
                ),
                key,
                root,
            )
            .map_err(hsm("wrapping the root key"))?;
        Ok(Self {
            token: token.to_owned(),
            key_label: key_label.to_owned(),
            wrapped_root: [&iv[..], &sealed].concat(),
        })
    }

    /// Has the token unwrap the root key.
    pub fn unseal(&self, access: &HsmAccess) -> Result<Zeroizing<[u8; 32]>, Error> {
        let t = Token::open(access, &self.token)?;
        let key = t.key(&self.key_label)?;
        let (iv, sealed) = self
            .wrapped_root
            .split_at_checked(IV_LEN)
            .ok_or(Error::Internal("the stored HSM seal is damaged"))?;
        let mut iv: [u8; IV_LEN] = iv
            .try_into()
            .map_err(|_| Error::Internal("the stored HSM seal is damaged"))?;
        let plain = Zeroizing::new(
            t.session
                .decrypt(
                    &Mechanism::AesGcm(
                        GcmParams::new(&mut iv, WRAP_AAD, TAG_BITS.into())
                            .map_err(hsm("GCM parameters"))?,
                    ),
                    key,
                    sealed,
                )
                .map_err(|_| {
                    Error::Hsm(format!(
                        "the key labelled {:?} does not unwrap the stored root key",
                        self.key_label
                    ))
                })?,
        );
        let mut root = Zeroizing::new([0u8; 32]);
        if plain.len() != 32 {
            return Err(Error::Internal("the stored HSM seal is damaged"));
        }
        root.copy_from_slice(&plain);
        Ok(root)
    }

    /// Whether the wrapping key is still one that cannot leave the token: sensitive, never
    /// extractable, and its value refused when asked for. For `keyward doctor`.
    pub fn key_stays_in_token(&self, access: &HsmAccess) -> Result<bool, Error> {
        use cryptoki::object::{AttributeInfo, AttributeType};
        let t = Token::open(access, &self.token)?;
        let key = t.key(&self.key_label)?;
        let flags = t
            .session
            .get_attributes(
                key,
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::NeverExtractable,
                ],
            )
            .map_err(hsm("reading the key's attributes"))?;
        let flag = |want: &dyn Fn(&Attribute) -> Option<bool>| flags.iter().find_map(want);
        let sensitive = flag(&|a| match a {
            Attribute::Sensitive(b) => Some(*b),
            _ => None,
        });
        let extractable = flag(&|a| match a {
            Attribute::Extractable(b) => Some(*b),
            _ => None,
        });
        let never = flag(&|a| match a {
            Attribute::NeverExtractable(b) => Some(*b),
            _ => None,
        });
        let value = t
            .session
            .get_attribute_info(key, &[AttributeType::Value])
            .map_err(hsm("reading the key's attributes"))?;
        Ok(sensitive == Some(true)
            && extractable == Some(false)
            && never == Some(true)
            && matches!(value.as_slice(), [AttributeInfo::Sensitive]))
    }

    /// Removes the wrapping key from the token (after a migration away from it).
    pub fn destroy_key(&self, access: &HsmAccess) -> Result<(), Error> {
        let t = Token::open(access, &self.token)?;
        let key = t.key(&self.key_label)?;
        t.session
            .destroy_object(key)
            .map_err(hsm("removing the wrapping key"))
    }
}
