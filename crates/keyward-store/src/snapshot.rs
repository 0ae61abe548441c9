//! A whole store as one value: what a backup holds and what a restore inserts.

use std::fmt;

use crate::{AccessKey, Alias, AuditRow, CertificateRecord, KeyRecord, VersionRecord};

/// Everything a store holds that is needed to rebuild it, read in one transaction so
/// that every part is of the same moment: settings and sealed secrets (`meta`), keys
/// (destroyed ones included, so that they keep answering "not found"), every version of
/// their material (still wrapped by the root key), aliases, tags, access keys (their
/// secrets sealed), certificates, and where the audit log stood.
///
/// The audit log itself is not part of it, only its last record and last checkpoint:
/// the log is exported and kept apart (`keyward audit export`), and a restored store
/// starts a new chain that names this one's end.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Named values (root-key check, CA, audit keys, passphrase parameters), by name.
    pub meta: Vec<(String, Vec<u8>)>,
    /// Every key, by id.
    pub keys: Vec<KeyRecord>,
    /// Every version, by key id and version.
    pub versions: Vec<VersionRecord>,
    /// Every alias, by name.
    pub aliases: Vec<Alias>,
    /// Every tag as `(key_id, tag_key, tag_value)`, by key id and tag key.
    pub tags: Vec<(String, String, String)>,
    /// Every API access key, by id.
    pub access_keys: Vec<AccessKey>,
    /// Every certificate the CA issued, by serial.
    pub certificates: Vec<CertificateRecord>,
    /// The last audit record, if any.
    pub audit_tail: Option<AuditRow>,
    /// The last audit checkpoint, if any (`time_ms` is 0: it is inside the line).
    pub audit_checkpoint: Option<AuditRow>,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("meta", &self.meta.len())
            .field("keys", &self.keys.len())
            .field("versions", &self.versions.len())
            .field("aliases", &self.aliases.len())
            .field("tags", &self.tags.len())
            .field("access_keys", &self.access_keys.len())
            .field("certificates", &self.certificates.len())
            .field("audit_tail", &self.audit_tail.as_ref().map(|r| r.seq))
            .field(
                "audit_checkpoint",
                &self.audit_checkpoint.as_ref().map(|r| r.seq),
            )
            .finish()
    }
}
