//! The KMS: key resolution, the in-memory cache, and the cryptographic operations.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use keyward_store::{KeyRecord, KeyState, Store, StoreError, VersionRecord};
use zeroize::Zeroizing;

use crate::blob::{self, BlobHeader, EncryptionContext};
use crate::ids::{KeyRef, format_uuid, parse_uuid};
use crate::{Clock, Error, KmsConfig, RootKey};

/// Largest plaintext Encrypt takes.
const MAX_PLAINTEXT: usize = 4096;
/// Largest ciphertext blob Decrypt takes.
const MAX_CIPHERTEXT: usize = 6144;
/// Attempts at an update that keeps meeting concurrent writers.
const UPDATE_ATTEMPTS: usize = 16;
/// The meta entry that proves the root key matches the data directory.
/// Meta entry: a check value wrapped under the root key, which [`Kms::open`] unwraps to
/// refuse a root key that is not this store's.
pub const ROOT_CHECK: &str = "root-key-check";

/// An unwrapped key version's material and its KeyMaterialId.
type Material = (Arc<Zeroizing<Vec<u8>>>, String);

thread_local! {
    static CACHE_ONLY: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the store out of bounds on this thread: an operation that would read or
/// write it fails with [`Error::WouldBlock`] before doing anything. A server calls the
/// cryptographic operations this way on its async threads, where they are answered from
/// memory once a key is warm, and sends only the rest to a blocking pool.
pub fn cache_only<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            CACHE_ONLY.set(self.0);
        }
    }
    let _restore = Restore(CACHE_ONLY.replace(true));
    f()
}

fn may_block() -> Result<(), Error> {
    if CACHE_ONLY.get() {
        Err(Error::WouldBlock)
    } else {
        Ok(())
    }
}

/// The key management service.
///
/// Key records are cached write-through: every change goes to the store first and then
/// to the cache, never the other way, and a cached record is replaced only by a newer
/// generation, so a disabled key stops working at once. Unwrapped key material is cached
/// per version (it never changes) and dropped when the key is destroyed.
pub struct Kms {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) root: Box<dyn RootKey>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: KmsConfig,
    keys: RwLock<HashMap<String, KeyRecord>>,
    materials: RwLock<HashMap<(String, u32), Material>>,
    aliases: RwLock<AliasCache>,
    /// Parsed key policies by key id, with the generation they were parsed at.
    policies: RwLock<HashMap<String, (u64, Arc<crate::policy::Policy>)>>,
    /// Moves on whenever the caches are dropped ([`Kms::refresh`]): a record read from
    /// the store before that is not cached after it.
    epoch: AtomicU64,
    /// The store's change count the caches were last checked against.
    seen_changes: AtomicU64,
}

/// Alias name -> key id, for aliases that exist. `epoch` moves on every change so a
/// lookup that read the store before a change cannot put the old target back.
#[derive(Default)]
struct AliasCache {
    epoch: u64,
    targets: HashMap<String, String>,
}

impl std::fmt::Debug for Kms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kms")
            .field("config", &self.config)
            .field("root_key_provider", &self.root.provider())
            .finish_non_exhaustive()
    }
}

/// What DescribeKey reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMetadata {
    /// The key id (a UUID).
    pub key_id: String,
    /// The key ARN.
    pub arn: String,
    /// The account part of the ARN.
    pub aws_account_id: String,
    /// Creation time, Unix seconds.
    pub creation_date: i64,
    /// Free text.
    pub description: String,
    /// Whether the key is Enabled.
    pub enabled: bool,
    /// Lifecycle state.
    pub key_state: KeyState,
    /// When a key pending deletion will be destroyed.
    pub deletion_date: Option<i64>,
    /// The deletion window chosen.
    pub pending_deletion_window_in_days: Option<u32>,
    /// The current version's KeyMaterialId (64 hex characters).
    pub current_key_material_id: String,
}

impl KeyMetadata {
    /// `ENCRYPT_DECRYPT`: the only usage keyward's keys have.
    pub const KEY_USAGE: &'static str = "ENCRYPT_DECRYPT";
    /// `SYMMETRIC_DEFAULT`: AES-256-GCM.
    pub const KEY_SPEC: &'static str = "SYMMETRIC_DEFAULT";
    /// `AWS_KMS`: keyward made the material.
    pub const ORIGIN: &'static str = "AWS_KMS";
    /// `CUSTOMER`: customer managed keys.
    pub const KEY_MANAGER: &'static str = "CUSTOMER";
}

/// Encrypt's result.
#[derive(Debug, Clone)]
pub struct EncryptOutput {
    /// The ciphertext blob.
    pub ciphertext_blob: Vec<u8>,
    /// The key ARN.
    pub key_id: String,
    /// The KeyMaterialId of the version used.
    pub key_material_id: String,
    /// The version used.
    pub key_version: u32,
}

/// Decrypt's result.
pub struct DecryptOutput {
    /// The key ARN.
    pub key_id: String,
    /// The plaintext.
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The KeyMaterialId of the version that decrypted.
    pub key_material_id: String,
    /// The version that decrypted.
    pub key_version: u32,
}

impl std::fmt::Debug for DecryptOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptOutput")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// GenerateDataKey's result (GenerateDataKeyWithoutPlaintext leaves `plaintext` empty).
pub struct GenerateDataKeyOutput {
    /// The data key, encrypted under the KMS key.
    pub ciphertext_blob: Vec<u8>,
    /// The data key in plain.
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The key ARN.
    pub key_id: String,
    /// The KeyMaterialId of the version used.
    pub key_material_id: String,
    /// The version used.
    pub key_version: u32,
}

impl std::fmt::Debug for GenerateDataKeyOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenerateDataKeyOutput")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// ReEncrypt's result.
#[derive(Debug, Clone)]
pub struct ReEncryptOutput {
    /// The new ciphertext blob.
    pub ciphertext_blob: Vec<u8>,
    /// The source key ARN.
    pub source_key_id: String,
    /// The destination key ARN.
    pub key_id: String,
    /// KeyMaterialId of the source version.
    pub source_key_material_id: String,
    /// KeyMaterialId of the destination version.
    pub destination_key_material_id: String,
    /// The destination version.
    pub key_version: u32,
}

impl Kms {
    /// A KMS over `store`, with `root` as its barrier.
    ///
    /// The first open records a check value wrapped under the root key; later opens refuse
    /// a root key that cannot unwrap it, before any key is touched.
    pub fn open(
        store: Arc<dyn Store>,
        root: Box<dyn RootKey>,
        clock: Arc<dyn Clock>,
        config: KmsConfig,
    ) -> Result<Self, Error> {
        let check = root.wrap(b"keyward", ROOT_CHECK.as_bytes())?;
        let stored = store.init_meta(ROOT_CHECK, &check)?;
        root.unwrap(&stored, ROOT_CHECK.as_bytes())
            .map_err(|_| Error::Internal("the root key does not match this data directory"))?;
        Ok(Self {
            store,
            root,
            clock,
            config,
            keys: RwLock::new(HashMap::new()),
            materials: RwLock::new(HashMap::new()),
            aliases: RwLock::new(AliasCache::default()),
            policies: RwLock::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            seen_changes: AtomicU64::new(u64::MAX),
        })
    }

    /// Brings the caches in line with the store: if [`Store::changes`] moved on since the
    /// last call (another node, or an admin command, changed something), every cached
    /// key record, alias, policy and unwrapped material is dropped, to be read again when
    /// next needed. True if they were. Blocking: it reads the store. A server over a
    /// shared store runs this before serving a request, so that no change committed
    /// before the request arrived is missed.
    pub fn refresh(&self) -> Result<bool, Error> {
        may_block()?;
        let n = self.store.changes()?;
        if self.seen_changes.swap(n, Ordering::AcqRel) == n {
            return Ok(false);
        }
        if let Ok(mut keys) = self.keys.write() {
            // Under the keys lock, so that a reader's `cache` sees either the old epoch
            // and a full map or the new one and an empty map.
            self.epoch.fetch_add(1, Ordering::AcqRel);
            keys.clear();
        }
        self.forget_aliases(None);
        if let Ok(mut p) = self.policies.write() {
            p.clear();
        }
        if let Ok(mut m) = self.materials.write() {
            m.clear();
        }
        Ok(true)
    }

    /// The cache epoch, to pass to [`Kms::cache`] for a record read or written after it.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// This KMS's partition, region and account.
    pub fn config(&self) -> &KmsConfig {
        &self.config
    }

    /// The store, for the server's own records (access keys, TLS material).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Wraps a secret of the server's (an access key's secret, a CA key) under the root
    /// key, bound to `purpose`.
    pub fn seal_secret(&self, purpose: &str, secret: &[u8]) -> Result<Vec<u8>, Error> {
        self.root
            .wrap(secret, &[b"server-secret\0", purpose.as_bytes()].concat())
    }

    /// Unwraps what [`Kms::seal_secret`] made for the same `purpose`.
    pub fn open_secret(&self, purpose: &str, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        self.root
            .unwrap(wrapped, &[b"server-secret\0", purpose.as_bytes()].concat())
    }

    /// The root-key provider's name (`file`, `passphrase`, ...).
    pub fn root_key_provider(&self) -> &'static str {
        self.root.provider()
    }

    pub(crate) fn arn(&self, key_id: &str) -> String {
        self.config.key_arn(key_id)
    }

    /// The ARN a request's key reference names, for the audit log, without touching the
    /// store: a key id or key ARN gives the key's ARN, an alias its alias ARN; anything
    /// malformed gives `None`.
    pub fn named_arn(&self, key_ref: &str) -> Option<String> {
        match self.config.parse_key_ref(key_ref).ok()? {
            crate::ids::KeyRef::Id(id) => Some(self.arn(&id)),
            crate::ids::KeyRef::Alias(alias) => Some(self.config.alias_arn(&alias)),
        }
    }

    /// The ARN and version of the key a ciphertext blob names, for the audit log; `None`
    /// if it is not shaped like a blob. Says nothing about whether the blob is valid.
    pub fn blob_key(&self, blob: &[u8]) -> Option<(String, u32)> {
        let header = blob::parse(blob).ok()?;
        Some((self.arn(&format_uuid(&header.key_id)), header.version))
    }

    // ---- key records: the cache ----

    /// The record of a key id, from the cache or the store.
    pub(crate) fn record(&self, key_id: &str) -> Result<Option<KeyRecord>, Error> {
        if let Some(k) = self.keys.read().ok().and_then(|m| m.get(key_id).cloned()) {
            return Ok(Some(k));
        }
        may_block()?;
        let epoch = self.epoch();
        let Some(k) = self.store.key(key_id)? else {
            return Ok(None);
        };
        self.cache(k.clone(), epoch);
        Ok(Some(k))
    }

    /// Puts a record read or written since `epoch` in the cache, unless a newer
    /// generation is there already or the caches were dropped since (the record may be
    /// older than a change another node made).
    pub(crate) fn cache(&self, k: KeyRecord, epoch: u64) {
        if let Ok(mut m) = self.keys.write() {
            if self.epoch() != epoch {
                return;
            }
            match m.get(&k.key_id) {
                Some(old) if old.generation >= k.generation => {}
                _ => {
                    m.insert(k.key_id.clone(), k);
                }
            }
        }
    }

    pub(crate) fn forget_material(&self, key_id: &str) {
        if let Ok(mut m) = self.materials.write() {
            m.retain(|(id, _), _| id != key_id);
        }
    }

    /// Resolves a key id, key ARN, alias name or alias ARN to a live key.
    pub(crate) fn resolve(&self, key_ref: &str) -> Result<KeyRecord, Error> {
        let id = match self.config.parse_key_ref(key_ref)? {
            KeyRef::Id(id) => id,
            KeyRef::Alias(name) => self.alias_target(&name)?,
        };
        self.live(&id)
    }

    /// The key id an alias points at, from the cache or the store.
    fn alias_target(&self, name: &str) -> Result<String, Error> {
        let epoch = match self.aliases.read() {
            Ok(c) => match c.targets.get(name) {
                Some(id) => return Ok(id.clone()),
                None => c.epoch,
            },
            Err(_) => u64::MAX,
        };
        may_block()?;
        let Some(alias) = self.store.alias(name)? else {
            return Err(Error::NotFound(format!(
                "Alias {} is not found.",
                self.config.alias_arn(name)
            )));
        };
        if let Ok(mut c) = self.aliases.write()
            && c.epoch == epoch
        {
            c.targets.insert(alias.name, alias.key_id.clone());
        }
        Ok(alias.key_id)
    }

    /// Drops one alias (or, with `None`, every alias) from the cache; called after the
    /// store has changed.
    pub(crate) fn forget_aliases(&self, name: Option<&str>) {
        if let Ok(mut c) = self.aliases.write() {
            c.epoch += 1;
            match name {
                Some(name) => {
                    c.targets.remove(name);
                }
                None => c.targets.clear(),
            }
        }
    }

    /// Resolves a key id or key ARN only (management operations do not take aliases).
    pub(crate) fn resolve_key(&self, key_ref: &str) -> Result<KeyRecord, Error> {
        match self.config.parse_key_ref(key_ref)? {
            KeyRef::Id(id) => self.live(&id),
            KeyRef::Alias(_) => Err(Error::NotFound(format!("Invalid keyId '{key_ref}'"))),
        }
    }

    fn live(&self, id: &str) -> Result<KeyRecord, Error> {
        match self.record(id)? {
            Some(k) if !k.destroyed => Ok(k),
            _ => Err(Error::NotFound(format!(
                "Key '{}' does not exist",
                self.arn(id)
            ))),
        }
    }

    /// Whether the key `key_ref` names lets `principal` perform `action` (an operation
    /// name such as `Decrypt`, or `ReEncryptFrom`/`ReEncryptTo`) with `context`. A key
    /// that cannot be found is the operation's to report.
    pub fn authorize(
        &self,
        principal: &str,
        action: &str,
        key_ref: &str,
        context: &EncryptionContext,
    ) -> Result<(), Error> {
        let k = self.resolve(key_ref)?;
        self.authorize_key(principal, action, &k, context)
    }

    /// As [`Kms::authorize`], for the key a ciphertext blob names; a blob that names no
    /// key is left for the operation to refuse.
    pub fn authorize_blob(
        &self,
        principal: &str,
        action: &str,
        blob: &[u8],
        context: &EncryptionContext,
    ) -> Result<(), Error> {
        let Ok(header) = blob::parse(blob) else {
            return Ok(());
        };
        match self.record(&format_uuid(&header.key_id))? {
            Some(k) if !k.destroyed => self.authorize_key(principal, action, &k, context),
            _ => Ok(()),
        }
    }

    fn authorize_key(
        &self,
        principal: &str,
        action: &str,
        k: &KeyRecord,
        context: &EncryptionContext,
    ) -> Result<(), Error> {
        let Some(policy) = self.policy_of(k)? else {
            return Ok(()); // made before keys had policies
        };
        let req = crate::policy::Request {
            principal,
            operation: action,
            context,
        };
        if policy.allows(&req) {
            Ok(())
        } else {
            Err(Error::AccessDenied(format!(
                "User: {principal} is not authorized to perform: kms:{action} on resource: {} \
                 because no resource-based policy allows the kms:{action} action",
                self.arn(&k.key_id)
            )))
        }
    }

    /// The parsed policy of a key record, cached per generation.
    fn policy_of(&self, k: &KeyRecord) -> Result<Option<Arc<crate::policy::Policy>>, Error> {
        let Some(text) = &k.policy else {
            return Ok(None);
        };
        if let Some((generation, p)) = self
            .policies
            .read()
            .ok()
            .and_then(|m| m.get(&k.key_id).cloned())
            && generation == k.generation
        {
            return Ok(Some(p));
        }
        let parsed = Arc::new(crate::policy::Policy::parse(text, &self.arn(&k.key_id))?);
        if let Ok(mut m) = self.policies.write() {
            m.insert(k.key_id.clone(), (k.generation, parsed.clone()));
        }
        Ok(Some(parsed))
    }

    /// Refuses cryptographic use of a key that is not Enabled, as AWS does.
    pub(crate) fn check_usable(&self, k: &KeyRecord) -> Result<(), Error> {
        match k.state {
            KeyState::Enabled => Ok(()),
            KeyState::Disabled => Err(Error::Disabled(format!(
                "{} is disabled.",
                self.arn(&k.key_id)
            ))),
            KeyState::PendingDeletion => Err(self.pending_deletion(k)),
        }
    }

    pub(crate) fn pending_deletion(&self, k: &KeyRecord) -> Error {
        Error::InvalidState(format!("{} is pending deletion.", self.arn(&k.key_id)))
    }

    /// Applies `change` to the latest stored record and writes it, retrying on conflict.
    pub(crate) fn update(
        &self,
        key_id: &str,
        mut change: impl FnMut(&mut KeyRecord) -> Result<(), Error>,
    ) -> Result<KeyRecord, Error> {
        self.update_or_rotate(key_id, |k| change(k).map(|()| None))
    }

    /// As [`Kms::update`]; when `change` returns a version, it is added in the same
    /// transaction (a rotation).
    pub(crate) fn update_or_rotate(
        &self,
        key_id: &str,
        mut change: impl FnMut(&mut KeyRecord) -> Result<Option<VersionRecord>, Error>,
    ) -> Result<KeyRecord, Error> {
        may_block()?;
        let epoch = self.epoch();
        for _ in 0..UPDATE_ATTEMPTS {
            let Some(mut k) = self.store.key(key_id)?.filter(|k| !k.destroyed) else {
                return Err(Error::NotFound(format!(
                    "Key '{}' does not exist",
                    self.arn(key_id)
                )));
            };
            let version = change(&mut k)?;
            k.generation += 1;
            let written = match &version {
                Some(v) => self.store.rotate_key(&k, v),
                None => self.store.update_key(&k),
            };
            match written {
                Ok(()) => {
                    self.cache(k.clone(), epoch);
                    return Ok(k);
                }
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Internal("too many concurrent updates to one key"))
    }

    // ---- key material ----

    /// The wrap context binding a version's material to its key and version (what
    /// [`RootKey::wrap`] was given for it; a backup check unwraps one version with it).
    pub fn wrap_context(key_id: &str, version: u32) -> Vec<u8> {
        [key_id.as_bytes(), b"\0", &version.to_be_bytes()].concat()
    }

    /// The unwrapped material of a version and its KeyMaterialId, from the cache or the
    /// store; `None` if the version does not exist.
    fn material(&self, key_id: &str, version: u32) -> Result<Option<Material>, Error> {
        let cache_key = (key_id.to_owned(), version);
        if let Some(hit) = self
            .materials
            .read()
            .ok()
            .and_then(|m| m.get(&cache_key).cloned())
        {
            return Ok(Some(hit));
        }
        may_block()?;
        let Some(v) = self.store.version(key_id, version)? else {
            return Ok(None);
        };
        let material = self
            .root
            .unwrap(&v.wrapped, &Self::wrap_context(key_id, version))?;
        if material.len() != 32 {
            return Err(Error::Internal("stored key material has the wrong length"));
        }
        let entry = (Arc::new(material), v.material_id);
        if let Ok(mut m) = self.materials.write() {
            m.insert(cache_key, entry.clone());
        }
        Ok(Some(entry))
    }

    // ---- cryptographic operations ----

    /// Encrypt: up to 4096 bytes under the key's current version.
    pub fn encrypt(
        &self,
        key_ref: &str,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<EncryptOutput, Error> {
        if plaintext.is_empty() || plaintext.len() > MAX_PLAINTEXT {
            return Err(Error::Validation(format!(
                "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: \
                 Member must have length between 1 and {MAX_PLAINTEXT}"
            )));
        }
        let k = self.resolve(key_ref)?;
        self.check_usable(&k)?;
        self.seal(&k, plaintext, context)
    }

    fn seal(
        &self,
        k: &KeyRecord,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<EncryptOutput, Error> {
        let (key, material_id) = self
            .material(&k.key_id, k.current_version)?
            .ok_or(Error::Internal("current key version missing"))?;
        let key_id = parse_uuid(&k.key_id).ok_or(Error::Internal("stored key id is not a UUID"))?;
        let header = BlobHeader {
            key_id,
            version: k.current_version,
        };
        Ok(EncryptOutput {
            ciphertext_blob: blob::seal(&key, header, context, plaintext)?,
            key_id: self.arn(&k.key_id),
            key_material_id: material_id,
            key_version: k.current_version,
        })
    }

    /// Decrypt: the key and version come from the blob; `key_ref`, if given, must name
    /// the same key.
    pub fn decrypt(
        &self,
        blob: &[u8],
        context: &EncryptionContext,
        key_ref: Option<&str>,
    ) -> Result<DecryptOutput, Error> {
        if blob.is_empty() || blob.len() > MAX_CIPHERTEXT {
            return Err(Error::Validation(format!(
                "1 validation error detected: Value at 'ciphertextBlob' failed to satisfy constraint: \
                 Member must have length between 1 and {MAX_CIPHERTEXT}"
            )));
        }
        let header = blob::parse(blob)?;
        let key_id = format_uuid(&header.key_id);
        if let Some(r) = key_ref {
            let named = self.resolve(r)?;
            if named.key_id != key_id {
                return Err(Error::IncorrectKey(
                    "The key ID in the request does not identify a CMK that can perform this operation.".into(),
                ));
            }
        }
        // A blob naming an unknown or destroyed key is as invalid as any other damage.
        let k = match self.record(&key_id)? {
            Some(k) if !k.destroyed => k,
            _ => return Err(blob::invalid()),
        };
        self.check_usable(&k)?;
        let (key, material_id) = self
            .material(&key_id, header.version)?
            .ok_or_else(blob::invalid)?;
        Ok(DecryptOutput {
            key_id: self.arn(&key_id),
            plaintext: blob::open(&key, blob, context)?,
            key_material_id: material_id,
            key_version: header.version,
        })
    }

    /// ReEncrypt: decrypt under the source key, encrypt under the destination, without
    /// the plaintext leaving the KMS.
    pub fn re_encrypt(
        &self,
        blob: &[u8],
        source_context: &EncryptionContext,
        source_key_ref: Option<&str>,
        destination_key_ref: &str,
        destination_context: &EncryptionContext,
    ) -> Result<ReEncryptOutput, Error> {
        let destination = self.resolve(destination_key_ref)?;
        self.check_usable(&destination)?;
        let source = self.decrypt(blob, source_context, source_key_ref)?;
        let out = self.seal(&destination, &source.plaintext, destination_context)?;
        Ok(ReEncryptOutput {
            ciphertext_blob: out.ciphertext_blob,
            source_key_id: source.key_id,
            key_id: out.key_id,
            source_key_material_id: source.key_material_id,
            destination_key_material_id: out.key_material_id,
            key_version: out.key_version,
        })
    }

    /// GenerateDataKey: `number_of_bytes` (1 to 1024) random bytes, in plain and encrypted.
    /// AWS's KeySpec AES_256 is 32 bytes, AES_128 16.
    pub fn generate_data_key(
        &self,
        key_ref: &str,
        number_of_bytes: usize,
        context: &EncryptionContext,
    ) -> Result<GenerateDataKeyOutput, Error> {
        let k = self.resolve(key_ref)?;
        self.check_usable(&k)?;
        let plaintext = random(number_of_bytes, "numberOfBytes")?;
        let out = self.seal(&k, &plaintext, context)?;
        Ok(GenerateDataKeyOutput {
            ciphertext_blob: out.ciphertext_blob,
            plaintext,
            key_id: out.key_id,
            key_material_id: out.key_material_id,
            key_version: out.key_version,
        })
    }

    /// GenerateDataKeyWithoutPlaintext: as [`Kms::generate_data_key`], keeping only the
    /// encrypted copy.
    pub fn generate_data_key_without_plaintext(
        &self,
        key_ref: &str,
        number_of_bytes: usize,
        context: &EncryptionContext,
    ) -> Result<GenerateDataKeyOutput, Error> {
        let mut out = self.generate_data_key(key_ref, number_of_bytes, context)?;
        out.plaintext = Zeroizing::new(Vec::new());
        Ok(out)
    }

    /// GenerateRandom: 1 to 1024 random bytes.
    pub fn generate_random(&self, number_of_bytes: usize) -> Result<Zeroizing<Vec<u8>>, Error> {
        random(number_of_bytes, "numberOfBytes")
    }
}

/// The data key length GenerateDataKey asks for: exactly one of `KeySpec` (`AES_256` is
/// 32 bytes, `AES_128` 16) and `NumberOfBytes` (1 to 1024).
pub fn data_key_length(
    key_spec: Option<&str>,
    number_of_bytes: Option<usize>,
) -> Result<usize, Error> {
    match (key_spec, number_of_bytes) {
        (Some("AES_256"), None) => Ok(32),
        (Some("AES_128"), None) => Ok(16),
        (Some(other), None) => Err(Error::Validation(format!(
            "1 validation error detected: Value '{other}' at 'keySpec' failed to satisfy constraint: \
             Member must satisfy enum value set: [AES_256, AES_128]"
        ))),
        (None, Some(n)) => Ok(n),
        _ => Err(Error::Validation(
            "Please specify either number of bytes or key spec.".into(),
        )),
    }
}

/// `n` random bytes, 1 to 1024.
pub(crate) fn random(n: usize, field: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
    if !(1..=1024).contains(&n) {
        return Err(Error::Validation(format!(
            "1 validation error detected: Value '{n}' at '{field}' failed to satisfy constraint: \
             Member must have value between 1 and 1024"
        )));
    }
    let mut out = Zeroizing::new(vec![0u8; n]);
    aws_lc_rs::rand::fill(&mut out[..])
        .map_err(|_| Error::Internal("random number generator failed"))?;
    Ok(out)
}
