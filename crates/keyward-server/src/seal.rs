//! Sealed and unsealed: a server either holds its root key, and with it the KMS, the
//! CA, the audit keys and the access keys' secrets ([`Running`]), or holds none of them
//! and answers only health, seal status and unseal.
//!
//! Sealing drops the [`Running`] at once: no request starts on it afterwards, its
//! background tasks are stopped, and once the requests already under way end (they keep
//! their own reference) the root key and every unwrapped secret are freed and zeroed.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use keyward_kms::seal::{Progress, Seal, ShareError, Unsealing};
use keyward_kms::{AesRootKey, Kms, RootKey};

use crate::ServerError;
use crate::audit::Auditor;
use crate::tls::TlsState;

/// How often the KMS's scheduled work (rotations, deletions that came due) runs.
const DUE_WORK_EVERY: Duration = Duration::from_secs(60);

/// What a server runs on once it holds its root key.
pub struct Running {
    pub(crate) kms: Arc<Kms>,
    /// `None` only with the benchmark-only switch that turns auditing off.
    pub(crate) audit: Option<Arc<Auditor>>,
    pub(crate) tls: Arc<TlsState>,
    pub(crate) access_keys: Arc<crate::access::AccessKeyCache>,
    /// Over a store that other nodes change: the check each request waits for.
    pub(crate) coherence: Option<Arc<crate::coherence::Coherence>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("kms", &self.kms)
            .finish_non_exhaustive()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Running {
    /// Starts the background work of a server made of these parts (certificate and CRL
    /// upkeep, the KMS's scheduled work). Must be called within a Tokio runtime.
    pub fn start(tls: Arc<TlsState>, audit: Option<Arc<Auditor>>) -> Self {
        let kms = tls.kms().clone();
        let access_keys = Arc::new(crate::access::AccessKeyCache::default());
        let coherence = kms.store().shared().then(|| {
            let cleared = access_keys.clone();
            Arc::new(crate::coherence::Coherence::new(
                kms.clone(),
                Box::new(move || cleared.clear()),
            ))
        });
        let upkeep = tls.clone();
        let upkeep = tokio::spawn(async move {
            let mut every = tokio::time::interval(crate::tls::CHECK_EVERY);
            loop {
                every.tick().await;
                let tls = upkeep.clone();
                match tokio::task::spawn_blocking(move || tls.maintain()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "TLS upkeep failed"),
                    Err(e) => tracing::error!(error = %e, "TLS upkeep panicked"),
                }
            }
        });
        let ticker = kms.clone();
        let due = tokio::spawn(async move {
            let mut every = tokio::time::interval(DUE_WORK_EVERY);
            loop {
                every.tick().await;
                let kms = ticker.clone();
                match tokio::task::spawn_blocking(move || kms.run_due_work()).await {
                    Ok(Ok((0, 0))) => {}
                    Ok(Ok((rotated, destroyed))) => {
                        tracing::info!(rotated, destroyed, "scheduled work done")
                    }
                    Ok(Err(e)) => tracing::error!(error = %e, "scheduled work failed"),
                    Err(e) => tracing::error!(error = %e, "scheduled work panicked"),
                }
            }
        });
        Self {
            kms,
            audit,
            tls,
            access_keys,
            coherence,
            tasks: vec![upkeep, due],
        }
    }

    /// The KMS.
    pub fn kms(&self) -> &Arc<Kms> {
        &self.kms
    }

    /// The audit log, if on.
    pub fn audit(&self) -> Option<&Arc<Auditor>> {
        self.audit.as_ref()
    }
}

/// Why unsealing did not happen.
#[derive(Debug, thiserror::Error)]
pub enum UnsealError {
    /// The share was refused; the ones given before are kept (but for
    /// [`ShareError::NoRootKey`]).
    #[error(transparent)]
    Share(#[from] ShareError),
    /// This provider takes no shares, or needs one.
    #[error("{0}")]
    Refused(String),
    /// The root key was had, but the service could not be started on it.
    #[error("unsealed, but the service could not start: {0}")]
    Failed(String),
}

/// Gets the root key back: from shares, a file, an HSM.
pub trait Unsealer: Send + Sync {
    /// The provider's name, as `keyward operator status` shows it.
    fn provider(&self) -> &'static str;
    /// `(given, threshold, shares)` for a provider that takes shares.
    fn progress(&self) -> Option<(u8, u8, u8)>;
    /// Takes one share (or none, for providers that need none): the root key once enough
    /// were given.
    fn give(&self, share: Option<&str>) -> Result<Option<Box<dyn RootKey>>, UnsealError>;
    /// Starts over, reading the seal afresh (it may have been rekeyed meanwhile); called
    /// whenever the server seals.
    fn reset(&self);
}

/// The development provider: the root key is read from its file.
#[derive(Debug)]
pub struct FileUnsealer(pub std::path::PathBuf);

impl Unsealer for FileUnsealer {
    fn provider(&self) -> &'static str {
        "file"
    }
    fn progress(&self) -> Option<(u8, u8, u8)> {
        None
    }
    fn give(&self, share: Option<&str>) -> Result<Option<Box<dyn RootKey>>, UnsealError> {
        if share.is_some() {
            return Err(UnsealError::Refused(
                "the root key is in a file (provider `file`): no shares to give".into(),
            ));
        }
        let root =
            AesRootKey::load_file(&self.0).map_err(|e| UnsealError::Failed(e.to_string()))?;
        Ok(Some(Box::new(root)))
    }
    fn reset(&self) {}
}

/// Unseal shares: the seal in the store, and the shares given so far.
pub struct ShamirUnsealer {
    store: Arc<dyn keyward_store::Store>,
    unsealing: Mutex<Option<Unsealing>>,
}

impl std::fmt::Debug for ShamirUnsealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShamirUnsealer").finish_non_exhaustive()
    }
}

impl ShamirUnsealer {
    /// Shares towards the seal `store` records (read now, and again at every seal, so
    /// that seal status never reads the store on an async thread).
    pub fn new(store: Arc<dyn keyward_store::Store>) -> Self {
        let unsealer = Self {
            store,
            unsealing: Mutex::new(None),
        };
        unsealer.reset();
        unsealer
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Unsealing>> {
        self.unsealing.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn load(&self) -> Result<Unsealing, UnsealError> {
        match Seal::load(&*self.store) {
            Ok(Seal::Shamir(s)) => Ok(s.unsealing()),
            Ok(other) => Err(UnsealError::Refused(format!(
                "the store's root key is sealed by `{}`, not by shares",
                other.provider()
            ))),
            Err(e) => Err(UnsealError::Failed(e.to_string())),
        }
    }
}

impl Unsealer for ShamirUnsealer {
    fn provider(&self) -> &'static str {
        "shamir"
    }

    fn progress(&self) -> Option<(u8, u8, u8)> {
        self.lock()
            .as_ref()
            .map(|u| (u.given(), u.seal().threshold(), u.seal().shares()))
    }

    fn give(&self, share: Option<&str>) -> Result<Option<Box<dyn RootKey>>, UnsealError> {
        let share =
            share.ok_or_else(|| UnsealError::Refused("give one unseal share at a time".into()))?;
        let mut slot = self.lock();
        if slot.is_none() {
            *slot = Some(self.load()?);
        }
        let Some(unsealing) = slot.as_mut() else {
            return Err(UnsealError::Failed("no seal".into()));
        };
        match unsealing.give(share)? {
            Progress::Need { .. } => Ok(None),
            Progress::Unsealed(root) => {
                // Its shares are used; a fresh start for the next unseal.
                *slot = self.load().ok();
                let root = AesRootKey::new(&root, "shamir")
                    .map_err(|e| UnsealError::Failed(e.to_string()))?;
                Ok(Some(Box::new(root)))
            }
        }
    }

    fn reset(&self) {
        *self.lock() = self.load().ok();
    }
}

/// A key in an HSM: the token unwraps the root key, with no share from anyone.
pub struct Pkcs11Unsealer {
    store: Arc<dyn keyward_store::Store>,
    access: keyward_kms::hsm::HsmAccess,
}

impl std::fmt::Debug for Pkcs11Unsealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Unsealer").finish_non_exhaustive()
    }
}

impl Pkcs11Unsealer {
    /// Unseals the seal `store` records with the token `access` reaches.
    pub fn new(store: Arc<dyn keyward_store::Store>, access: keyward_kms::hsm::HsmAccess) -> Self {
        Self { store, access }
    }
}

impl Unsealer for Pkcs11Unsealer {
    fn provider(&self) -> &'static str {
        "pkcs11"
    }
    fn progress(&self) -> Option<(u8, u8, u8)> {
        None
    }
    fn give(&self, share: Option<&str>) -> Result<Option<Box<dyn RootKey>>, UnsealError> {
        if share.is_some() {
            return Err(UnsealError::Refused(
                "the root key is sealed by an HSM (provider `pkcs11`): no shares to give".into(),
            ));
        }
        let Seal::Pkcs11(seal) =
            Seal::load(&*self.store).map_err(|e| UnsealError::Failed(e.to_string()))?
        else {
            return Err(UnsealError::Refused(
                "the store's root key is not sealed by an HSM".into(),
            ));
        };
        let root = seal
            .unseal(&self.access)
            .map_err(|e| UnsealError::Failed(e.to_string()))?;
        let root =
            AesRootKey::new(&root, "pkcs11").map_err(|e| UnsealError::Failed(e.to_string()))?;
        Ok(Some(Box::new(root)))
    }
    fn reset(&self) {}
}

/// Builds the running service on a root key: opens the KMS (checking that the key is
/// this store's), the CA and the audit log.
pub type Opener = Box<
    dyn Fn(Box<dyn RootKey>) -> Result<(Arc<TlsState>, Option<Arc<Auditor>>), ServerError>
        + Send
        + Sync,
>;

/// A server's seal state.
pub struct Node {
    running: RwLock<Option<Arc<Running>>>,
    /// The listener's configuration while sealed: the last certificate the server had,
    /// no client certificates (nothing but unseal needs them, and that takes shares).
    sealed_tls: RwLock<Option<Arc<rustls::ServerConfig>>>,
    unsealer: Box<dyn Unsealer>,
    opener: Opener,
    /// Held while a share is taken and the service opened, so that two shares arriving
    /// together do not open it twice.
    unsealing: Mutex<()>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("sealed", &self.running().is_none())
            .field("provider", &self.unsealer.provider())
            .finish_non_exhaustive()
    }
}

/// What `GET /v1/sys/seal-status` says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SealStatus {
    /// Whether the root key is out of memory.
    pub sealed: bool,
    /// `file`, `shamir`, ...
    pub provider: &'static str,
    /// Shares given towards unsealing (shamir only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<u8>,
    /// Shares needed (shamir only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u8>,
    /// Shares made (shamir only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shares: Option<u8>,
}

impl Node {
    /// A server that starts unsealed on `running`.
    pub fn unsealed(running: Running, unsealer: Box<dyn Unsealer>, opener: Opener) -> Self {
        Self {
            running: RwLock::new(Some(Arc::new(running))),
            sealed_tls: RwLock::new(None),
            unsealer,
            opener,
            unsealing: Mutex::new(()),
        }
    }

    /// A server that starts sealed, serving `tls` until it is unsealed.
    pub fn sealed(
        tls: Arc<rustls::ServerConfig>,
        unsealer: Box<dyn Unsealer>,
        opener: Opener,
    ) -> Self {
        Self {
            running: RwLock::new(None),
            sealed_tls: RwLock::new(Some(tls)),
            unsealer,
            opener,
            unsealing: Mutex::new(()),
        }
    }

    /// The running service, `None` while sealed.
    pub fn running(&self) -> Option<Arc<Running>> {
        self.running
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The listener's configuration for the next handshake.
    pub fn tls_config(&self) -> Option<Arc<rustls::ServerConfig>> {
        match self.running() {
            Some(r) => r.tls.config(),
            None => self
                .sealed_tls
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// Where sealing stands.
    pub fn status(&self) -> SealStatus {
        let sealed = self.running().is_none();
        let progress = self.unsealer.progress();
        SealStatus {
            sealed,
            provider: self.unsealer.provider(),
            progress: progress.map(|p| if sealed { p.0 } else { 0 }),
            threshold: progress.map(|p| p.1),
            shares: progress.map(|p| p.2),
        }
    }

    /// Takes a share (or none), and once the root key is back opens the service on it.
    /// Blocking: run it off the async threads (but within the runtime).
    pub fn unseal(&self, share: Option<&str>) -> Result<SealStatus, UnsealError> {
        let _one = self.unsealing.lock().unwrap_or_else(|p| p.into_inner());
        if self.running().is_some() {
            return Ok(self.status());
        }
        let Some(root) = self.unsealer.give(share)? else {
            return Ok(self.status());
        };
        let (tls, audit) = (self.opener)(root).map_err(|e| UnsealError::Failed(e.to_string()))?;
        let running = Running::start(tls, audit);
        *self.running.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(running));
        tracing::info!(provider = self.unsealer.provider(), "unsealed");
        Ok(self.status())
    }

    /// Seals at once: no request starts on the running service from now on, and its root
    /// key and secrets go when the requests under way end. The audit log is checkpointed
    /// first. Blocking.
    pub fn seal(&self) -> SealStatus {
        let _one = self.unsealing.lock().unwrap_or_else(|p| p.into_inner());
        let taken = self
            .running
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(running) = taken {
            // The listener goes on with the certificate it had, without client
            // certificates: the sealed server needs none.
            match running.tls.sealed_config() {
                Ok(config) => {
                    *self.sealed_tls.write().unwrap_or_else(|p| p.into_inner()) =
                        Some(Arc::new(config))
                }
                Err(e) => tracing::error!(error = %e, "sealed listener configuration"),
            }
            if let Some(audit) = &running.audit
                && !audit.checkpoint_blocking()
            {
                tracing::error!("sealing: the audit checkpoint could not be written");
            }
            drop(running);
            tracing::warn!("sealed: key operations are refused until unsealed");
        }
        self.unsealer.reset();
        self.status()
    }
}
