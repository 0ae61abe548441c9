//! The records the KMS keeps.

use std::fmt;

/// A KMS key's lifecycle state (the subset keyward's symmetric keys use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyState {
    /// Usable.
    Enabled,
    /// Kept, but refused for cryptographic operations.
    Disabled,
    /// Waiting out its deletion window; refused for cryptographic operations.
    PendingDeletion,
}

impl KeyState {
    /// The name AWS KMS uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "Enabled",
            Self::Disabled => "Disabled",
            Self::PendingDeletion => "PendingDeletion",
        }
    }

    /// Parses the AWS name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Enabled, Self::Disabled, Self::PendingDeletion]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a version beyond the first came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RotationType {
    /// By the rotation schedule.
    Automatic,
    /// By RotateKeyOnDemand.
    OnDemand,
}

impl RotationType {
    /// The name AWS KMS uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Automatic => "AUTOMATIC",
            Self::OnDemand => "ON_DEMAND",
        }
    }

    /// Parses the AWS name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Automatic, Self::OnDemand]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// A KMS key. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// The key id: a lowercase hyphenated UUID.
    pub key_id: String,
    /// When the key was created.
    pub created_at: i64,
    /// Free text.
    pub description: String,
    /// Lifecycle state.
    pub state: KeyState,
    /// When a key pending deletion will be destroyed.
    pub deletion_date: Option<i64>,
    /// The waiting period chosen at ScheduleKeyDeletion.
    pub pending_window_days: Option<u32>,
    /// Automatic rotation period, when automatic rotation is enabled.
    pub rotation_period_days: Option<u32>,
    /// When automatic rotation next falls due.
    pub next_rotation: Option<i64>,
    /// The version new ciphertexts use.
    pub current_version: u32,
    /// How many on-demand rotations the key has had.
    pub on_demand_rotations: u32,
    /// The key policy document, if any.
    pub policy: Option<String>,
    /// Set when the material has been destroyed; the key then only answers "not found".
    pub destroyed: bool,
    /// Bumped by every update; guards against lost updates.
    pub generation: u64,
}

/// One version of a key's material, wrapped by the root key.
#[derive(Clone, PartialEq, Eq)]
pub struct VersionRecord {
    /// The key it belongs to.
    pub key_id: String,
    /// 1 for the material made at CreateKey, then one more per rotation.
    pub version: u32,
    /// The AWS KeyMaterialId: 64 lowercase hex characters, not secret.
    pub material_id: String,
    /// The material, wrapped by the root key. Opaque to the store.
    pub wrapped: Vec<u8>,
    /// When the version was made.
    pub created_at: i64,
    /// How the version was made; `None` for the first.
    pub rotation: Option<RotationType>,
}

impl fmt::Debug for VersionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VersionRecord")
            .field("key_id", &self.key_id)
            .field("version", &self.version)
            .field("material_id", &self.material_id)
            .field("created_at", &self.created_at)
            .field("rotation", &self.rotation)
            .finish_non_exhaustive()
    }
}

/// An alias: a friendly name for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    /// `alias/...`.
    pub name: String,
    /// The key it names.
    pub key_id: String,
    /// When it was created.
    pub created_at: i64,
    /// When it was last pointed at a key.
    pub updated_at: i64,
}

/// An API access key: SigV4 credentials that act as a principal.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey {
    /// The access key id (public), e.g. `KWAK...`.
    pub access_key_id: String,
    /// Who requests signed with it act as.
    pub principal: String,
    /// The secret access key, wrapped by the root key (SigV4 needs the secret itself, so a
    /// hash would not do).
    pub wrapped: Vec<u8>,
    /// When it was made.
    pub created_at: i64,
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKey")
            .field("access_key_id", &self.access_key_id)
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

/// A certificate the internal CA issued (public data only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRecord {
    /// Serial number, lowercase hex without leading zeros.
    pub serial: String,
    /// Who it names: the SPIFFE ID, else the common name, else the first DNS name or IP.
    pub subject: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// When it was issued.
    pub issued_at: i64,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
    /// The certificate (DER).
    pub der: Vec<u8>,
}

/// One audit record or checkpoint as stored: its sequence number, its time and its JSON
/// line exactly as hashed and signed (the store does not interpret it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    /// The record's sequence number (for a checkpoint: the record it covers).
    pub seq: u64,
    /// Milliseconds since the Unix epoch. Records read back from a store that keeps them
    /// in batches carry their batch's first (or, for the tail, last) time.
    pub time_ms: i64,
    /// The JSON line (no newline in it).
    pub line: String,
}
