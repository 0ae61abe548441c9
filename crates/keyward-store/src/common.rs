//! What the backends share: column lists and the audit log's batch rows.
//!
//! The audit log is kept one row per appended batch (`first_seq`, `last_seq`, `first_ms`,
//! `last_ms`, and the batch's JSON lines joined by newlines); these helpers pack and
//! unpack such rows so that every backend applies the same rules.

use crate::{AuditRow, StoreError};

/// The `keys` columns in the order the backends' row readers expect.
macro_rules! key_columns {
    () => {
        "key_id, created_at, description, state, deletion_date, pending_window_days, \
         rotation_period_days, next_rotation, current_version, on_demand_rotations, policy, \
         destroyed, generation"
    };
}
pub(crate) use key_columns;

/// The `certificates` columns in the order the backends' row readers expect.
macro_rules! cert_columns {
    () => {
        "serial, subject, not_before, not_after, issued_at, revoked_at, der"
    };
}
pub(crate) use cert_columns;

/// Checks that `records` follow the last stored sequence number `stored`, one by one,
/// and joins their lines into one batch row's text. `AlreadyExists` for a batch that
/// overlaps what is stored or leaves a gap.
pub(crate) fn pack_batch(stored: u64, records: &[AuditRow]) -> Result<String, StoreError> {
    let consecutive = records.windows(2).all(|w| w[1].seq == w[0].seq + 1);
    if records.first().is_none_or(|r| r.seq != stored + 1) || !consecutive {
        return Err(StoreError::AlreadyExists);
    }
    let mut lines = String::with_capacity(records.iter().map(|r| r.line.len() + 1).sum());
    for (i, r) in records.iter().enumerate() {
        if r.line.contains('\n') {
            return Err(StoreError::Corrupt("an audit line holds a newline"));
        }
        if i > 0 {
            lines.push('\n');
        }
        lines.push_str(&r.line);
    }
    Ok(lines)
}

/// The lines a batch starting at `first` keeps when the log is cut after `after`.
pub(crate) fn cut_batch(first: i64, lines: &str, after: i64) -> String {
    let keep = usize::try_from(after - first + 1).unwrap_or(0);
    lines.split('\n').take(keep).collect::<Vec<_>>().join("\n")
}

/// Adds to `out` the records of a stored batch that come after `after`, until `out`
/// holds `limit`. Each carries the batch's first time.
pub(crate) fn unpack_batch(
    first: i64,
    time_ms: i64,
    lines: &str,
    after: u64,
    limit: usize,
    out: &mut Vec<AuditRow>,
) {
    for (i, line) in lines.split('\n').enumerate() {
        let seq = first.max(0) as u64 + i as u64;
        if seq > after && out.len() < limit {
            out.push(AuditRow {
                seq,
                time_ms,
                line: line.to_owned(),
            });
        }
    }
}

/// The last line of a stored batch.
pub(crate) fn last_line(lines: &str) -> String {
    lines.rsplit('\n').next().unwrap_or_default().to_owned()
}

/// The statements a snapshot and a restore run, the same on every backend: `$N`
/// placeholders are PostgreSQL's and, bound by position, SQLite's too.
pub(crate) mod snapshot_sql {
    /// Rows in any table a fresh store has none in (1 if there is one, else nothing).
    pub(crate) const ANY_ROW: &str = "SELECT 1 FROM meta UNION ALL SELECT 1 FROM keys \
         UNION ALL SELECT 1 FROM access_keys UNION ALL SELECT 1 FROM certificates \
         UNION ALL SELECT 1 FROM audit_batches UNION ALL SELECT 1 FROM audit_checkpoints \
         LIMIT 1";
    pub(crate) const META: &str = "SELECT name, value FROM meta ORDER BY name";
    pub(crate) const KEYS: &str = concat!("SELECT ", key_columns!(), " FROM keys ORDER BY key_id");
    pub(crate) const VERSIONS: &str = "SELECT key_id, version, material_id, wrapped, created_at, rotation FROM key_versions \
         ORDER BY key_id, version";
    pub(crate) const ALIASES: &str =
        "SELECT name, key_id, created_at, updated_at FROM aliases ORDER BY name";
    pub(crate) const TAGS: &str =
        "SELECT key_id, tag_key, tag_value FROM tags ORDER BY key_id, tag_key";
    pub(crate) const ACCESS_KEYS: &str = "SELECT access_key_id, principal, wrapped, created_at \
         FROM access_keys ORDER BY access_key_id";
    pub(crate) const CERTIFICATES: &str = concat!(
        "SELECT ",
        cert_columns!(),
        " FROM certificates ORDER BY serial"
    );
    pub(crate) const AUDIT_TAIL: &str =
        "SELECT last_seq, last_ms, lines FROM audit_batches ORDER BY first_seq DESC LIMIT 1";
    pub(crate) const AUDIT_CHECKPOINT: &str =
        "SELECT seq, line FROM audit_checkpoints ORDER BY n DESC LIMIT 1";

    pub(crate) const INSERT_META: &str = "INSERT INTO meta (name, value) VALUES ($1, $2)";
    pub(crate) const INSERT_ALIAS: &str =
        "INSERT INTO aliases (name, key_id, created_at, updated_at) VALUES ($1, $2, $3, $4)";
    pub(crate) const INSERT_TAG: &str =
        "INSERT INTO tags (key_id, tag_key, tag_value) VALUES ($1, $2, $3)";
    pub(crate) const INSERT_ACCESS_KEY: &str = "INSERT INTO access_keys \
         (access_key_id, principal, wrapped, created_at) VALUES ($1, $2, $3, $4)";
    pub(crate) const INSERT_CERTIFICATE: &str = concat!(
        "INSERT INTO certificates (",
        cert_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
    );
}
