//! keyward's storage: the records the KMS keeps, the [`Store`] trait over them,
//! [`SqliteStore`], the embedded default, and [`PostgresStore`], for several nodes
//! sharing one database.
//!
//! Every method is one transaction: it either happens whole and durably (SQLite WAL with
//! `synchronous = FULL`, PostgreSQL's commit: an acknowledged write survives kill -9 and
//! power loss) or not at all. Updates to a key are guarded by its `generation`, so two writers can never
//! silently overwrite each other. Key material arrives here already wrapped by the root
//! key: the store never sees it in plain.

#![warn(missing_docs)]

mod common;
mod postgres;
mod records;
mod snapshot;
mod sqlite;

pub use crate::postgres::{DatabaseUrl, PostgresStore};
pub use records::{
    AccessKey, Alias, AuditRow, CertificateRecord, KeyRecord, KeyState, RotationType, VersionRecord,
};
pub use snapshot::Snapshot;
pub use sqlite::SqliteStore;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A record with this identity exists already.
    #[error("already exists")]
    AlreadyExists,
    /// The record does not exist.
    #[error("not found")]
    NotFound,
    /// The record changed since it was read (its generation moved on): re-read and retry.
    #[error("conflicting update")]
    Conflict,
    /// The stored data does not make sense (a bad enum value, a wrong-sized id).
    #[error("corrupt record: {0}")]
    Corrupt(&'static str),
    /// A database URL that cannot be used (it is never shown: it may hold a password).
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// The database itself failed: I/O, a full disk, a locked or damaged file, a lost
    /// connection to the database server.
    #[error("database error: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
    /// A restore into a store that already holds records: it restores only into an
    /// empty one.
    #[error("the store is not empty: a backup is restored only into a new instance")]
    NotEmpty,
}

/// What [`Store::append_audit_chained`] calls under the writers' lock: given the last
/// stored record and the last checkpoint, the records to append and maybe a checkpoint.
pub type ChainAudit<'a> = dyn FnMut(
        Option<&AuditRow>,
        Option<&AuditRow>,
    ) -> Result<(Vec<AuditRow>, Option<AuditRow>), StoreError>
    + 'a;

/// Everything the KMS keeps, behind one interface for every backend.
pub trait Store: Send + Sync {
    /// Adds a key with its first version.
    fn create_key(&self, key: &KeyRecord, first: &VersionRecord) -> Result<(), StoreError>;
    /// A key by id, in any state.
    fn key(&self, key_id: &str) -> Result<Option<KeyRecord>, StoreError>;
    /// Keys in id order, after `after`, at most `limit`.
    fn keys(&self, after: Option<&str>, limit: usize) -> Result<Vec<KeyRecord>, StoreError>;
    /// Replaces a key's record if its stored generation is `key.generation - 1`.
    fn update_key(&self, key: &KeyRecord) -> Result<(), StoreError>;
    /// Replaces a key's record (as [`Store::update_key`]) and adds a version, atomically.
    fn rotate_key(&self, key: &KeyRecord, version: &VersionRecord) -> Result<(), StoreError>;
    /// One version of a key.
    fn version(&self, key_id: &str, version: u32) -> Result<Option<VersionRecord>, StoreError>;
    /// Every version of a key, oldest first.
    fn versions(&self, key_id: &str) -> Result<Vec<VersionRecord>, StoreError>;
    /// Destroys a key for good: its versions (the wrapped material), aliases and tags are
    /// deleted and overwritten; the key record stays, with no versions, to answer
    /// "not found" consistently. Only if the key is still at `generation` (else
    /// [`StoreError::Conflict`]): the caller decided on the record it read, and a
    /// cancellation or another node's destruction since then wins.
    fn destroy_key(&self, key_id: &str, generation: u64) -> Result<(), StoreError>;

    /// Adds an alias.
    fn create_alias(&self, alias: &Alias) -> Result<(), StoreError>;
    /// Points an existing alias at another key.
    fn update_alias(&self, name: &str, key_id: &str, now: i64) -> Result<(), StoreError>;
    /// Removes an alias.
    fn delete_alias(&self, name: &str) -> Result<(), StoreError>;
    /// An alias by name.
    fn alias(&self, name: &str) -> Result<Option<Alias>, StoreError>;
    /// Aliases in name order, optionally only those of one key.
    fn aliases(
        &self,
        key_id: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Alias>, StoreError>;

    /// Sets tags on a key, replacing values of existing tag keys.
    fn tag(&self, key_id: &str, tags: &[(String, String)]) -> Result<(), StoreError>;
    /// Removes tags from a key.
    fn untag(&self, key_id: &str, tag_keys: &[String]) -> Result<(), StoreError>;
    /// A key's tags in tag-key order.
    fn tags(&self, key_id: &str) -> Result<Vec<(String, String)>, StoreError>;

    /// A value stored by name (root-key check values, settings).
    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores a value by name if none is stored yet; returns the value now stored.
    fn init_meta(&self, name: &str, value: &[u8]) -> Result<Vec<u8>, StoreError>;

    /// Sets `name` to `value`, replacing what was there.
    fn set_meta(&self, name: &str, value: &[u8]) -> Result<(), StoreError>;

    /// Records a certificate the CA issued. `AlreadyExists` for a serial seen before.
    fn record_certificate(&self, cert: &CertificateRecord) -> Result<(), StoreError>;
    /// A certificate by serial (lowercase hex).
    fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError>;
    /// Certificates in serial order, after `after`, at most `limit`.
    fn certificates(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<CertificateRecord>, StoreError>;
    /// Marks a certificate revoked at `at`. `NotFound` if unknown, `AlreadyExists` if it
    /// was revoked before.
    fn revoke_certificate(&self, serial: &str, at: i64) -> Result<(), StoreError>;
    /// Revoked certificates that have not expired by `now` (what a CRL must list).
    fn revoked_certificates(&self, now: i64) -> Result<Vec<CertificateRecord>, StoreError>;

    /// Adds an API access key.
    fn create_access_key(&self, key: &AccessKey) -> Result<(), StoreError>;
    /// An API access key by id.
    fn access_key(&self, access_key_id: &str) -> Result<Option<AccessKey>, StoreError>;
    /// Every API access key, by id.
    fn access_keys(&self) -> Result<Vec<AccessKey>, StoreError>;
    /// Removes an API access key.
    fn delete_access_key(&self, access_key_id: &str) -> Result<(), StoreError>;

    /// A number that moves on with every committed change to anything but the audit log
    /// (keys, versions, aliases, tags, settings, certificates, access keys). A node that
    /// caches records compares it with what it saw: unchanged means its cache is current.
    fn changes(&self) -> Result<u64, StoreError>;
    /// Whether other processes may change the records at any time (several nodes on one
    /// database): caches must then be checked against [`Store::changes`] per request,
    /// and the audit log chained in the store ([`Store::append_audit_chained`]).
    fn shared(&self) -> bool;

    /// How many keys are in each state (`Enabled`, `Disabled`, `PendingDeletion`,
    /// `Destroyed`), for metrics.
    fn key_counts(&self) -> Result<Vec<(String, u64)>, StoreError>;

    /// Appends audit records (in sequence order, following the last one stored) and, if
    /// given, a checkpoint, in one transaction. Unlike every other method, it need only
    /// survive a crash of the process, not a power loss: the audit log's file sink is its
    /// power-loss copy, from which the server restores what the store lacks at start.
    fn append_audit(
        &self,
        records: &[AuditRow],
        checkpoint: Option<&AuditRow>,
    ) -> Result<(), StoreError>;
    /// Appends to an audit log that several writers share: under the writers' lock (one
    /// at a time across every node), calls `chain` with the last stored record and the
    /// last checkpoint, and stores the records (following that record, in order) and the
    /// checkpoint it returns, in one durable transaction. Nothing is stored if `chain` or
    /// the transaction fails.
    fn append_audit_chained(&self, chain: &mut ChainAudit<'_>) -> Result<(), StoreError>;
    /// Removes the audit records after `records_after` and the checkpoints after the
    /// first `checkpoints_kept`: undoes an append that another audit sink refused.
    fn truncate_audit(&self, records_after: u64, checkpoints_kept: u64) -> Result<(), StoreError>;
    /// Audit records after sequence number `after`, in order, at most `limit`.
    fn audit_records(&self, after: u64, limit: usize) -> Result<Vec<AuditRow>, StoreError>;
    /// The last audit record.
    fn audit_tail(&self) -> Result<Option<AuditRow>, StoreError>;
    /// Every audit checkpoint, oldest first (`time_ms` is 0: it is inside the line).
    fn audit_checkpoints(&self) -> Result<Vec<AuditRow>, StoreError>;

    /// Everything needed to rebuild this store, read in one transaction (a consistent
    /// snapshot: SQLite's read transaction, PostgreSQL's REPEATABLE READ READ ONLY), while
    /// the service goes on writing.
    fn snapshot(&self) -> Result<Snapshot, StoreError>;
    /// Whether the store holds no records at all (no meta, keys, access keys,
    /// certificates or audit log): a new instance's.
    fn is_empty(&self) -> Result<bool, StoreError>;
    /// Inserts `snapshot` (all but its audit position, which only informs) into this
    /// store in one transaction; [`StoreError::NotEmpty`] and nothing changed if the
    /// store holds any record.
    fn restore(&self, snapshot: &Snapshot) -> Result<(), StoreError>;
}
