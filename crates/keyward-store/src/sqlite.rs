//! The embedded SQLite store.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use crate::common::{self, cert_columns, key_columns, snapshot_sql};
use crate::{
    AccessKey, Alias, AuditRow, CertificateRecord, ChainAudit, KeyRecord, KeyState, RotationType,
    Snapshot, Store, StoreError, VersionRecord,
};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
/// Never edit one that has shipped: add another.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE keys (
    key_id               TEXT PRIMARY KEY,
    created_at           INTEGER NOT NULL,
    description          TEXT NOT NULL,
    state                TEXT NOT NULL,
    deletion_date        INTEGER,
    pending_window_days  INTEGER,
    rotation_period_days INTEGER,
    next_rotation        INTEGER,
    current_version      INTEGER NOT NULL,
    on_demand_rotations  INTEGER NOT NULL,
    policy               TEXT,
    destroyed            INTEGER NOT NULL,
    generation           INTEGER NOT NULL
);
CREATE TABLE key_versions (
    key_id      TEXT NOT NULL REFERENCES keys (key_id),
    version     INTEGER NOT NULL,
    material_id TEXT NOT NULL,
    wrapped     BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    rotation    TEXT,
    PRIMARY KEY (key_id, version)
);
CREATE TABLE aliases (
    name       TEXT PRIMARY KEY,
    key_id     TEXT NOT NULL REFERENCES keys (key_id),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX aliases_by_key ON aliases (key_id);
CREATE TABLE tags (
    key_id    TEXT NOT NULL REFERENCES keys (key_id),
    tag_key   TEXT NOT NULL,
    tag_value TEXT NOT NULL,
    PRIMARY KEY (key_id, tag_key)
);
"#,
    r#"
CREATE TABLE access_keys (
    access_key_id TEXT PRIMARY KEY,
    principal     TEXT NOT NULL,
    wrapped       BLOB NOT NULL,
    created_at    INTEGER NOT NULL
);
"#,
    r#"
CREATE TABLE certificates (
    serial     TEXT PRIMARY KEY,
    subject    TEXT NOT NULL,
    not_before INTEGER NOT NULL,
    not_after  INTEGER NOT NULL,
    issued_at  INTEGER NOT NULL,
    revoked_at INTEGER,
    der        BLOB NOT NULL
);
CREATE INDEX certificates_revoked ON certificates (revoked_at) WHERE revoked_at IS NOT NULL;
"#,
    r#"
CREATE TABLE audit_batches (
    first_seq INTEGER PRIMARY KEY,
    last_seq  INTEGER NOT NULL,
    first_ms  INTEGER NOT NULL,
    last_ms   INTEGER NOT NULL,
    lines     TEXT NOT NULL
);
CREATE TABLE audit_checkpoints (
    n    INTEGER PRIMARY KEY,
    seq  INTEGER NOT NULL,
    line TEXT NOT NULL
);
"#,
    r#"
CREATE TABLE changes (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n  INTEGER NOT NULL
);
INSERT INTO changes (id, n) VALUES (1, 0);
"#,
];

const CERT_COLUMNS: &str = cert_columns!();

fn cert_from_row(r: &Row<'_>) -> rusqlite::Result<CertificateRecord> {
    Ok(CertificateRecord {
        serial: r.get(0)?,
        subject: r.get(1)?,
        not_before: r.get(2)?,
        not_after: r.get(3)?,
        issued_at: r.get(4)?,
        revoked_at: r.get(5)?,
        der: r.get(6)?,
    })
}

const KEY_COLUMNS: &str = key_columns!();

/// SQLite in one file: WAL journal, `synchronous = FULL`, `secure_delete` so destroyed
/// key material is overwritten in the file, and a checkpoint after each destruction so
/// no copy lingers in the write-ahead log.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// The audit log's own connection, so that a batch's commit never holds up the KMS's
    /// reads; WAL lets both work at once. It commits with `synchronous = NORMAL` (no
    /// fsync: durable against a crash of the process, not of the machine): the audit
    /// log's power-loss copy is its file sink, fsynced before a request is answered, and
    /// the server copies any records the store lost from it at start.
    audit: Mutex<Connection>,
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(backend)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(backend)?;
    for (name, value) in [
        ("synchronous", "FULL"),
        ("foreign_keys", "ON"),
        ("secure_delete", "ON"),
    ] {
        conn.pragma_update(None, name, value).map_err(backend)?;
    }
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(backend)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = connect(path)?;
        let audit = connect(path)?;
        audit
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(backend)?;
        let store = Self {
            conn: Mutex::new(conn),
            audit: Mutex::new(audit),
        };
        store.migrate()?;
        Ok(store)
    }

    fn lock_audit(&self) -> MutexGuard<'_, Connection> {
        self.audit
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Exclusive)
            .map_err(backend)?;
        let done: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(backend)?;
        let done =
            usize::try_from(done).map_err(|_| StoreError::Corrupt("negative schema version"))?;
        if done > MIGRATIONS.len() {
            return Err(StoreError::Corrupt(
                "database schema is newer than this keyward",
            ));
        }
        for sql in &MIGRATIONS[done..] {
            tx.execute_batch(sql).map_err(backend)?;
        }
        tx.pragma_update(None, "user_version", MIGRATIONS.len() as i64)
            .map_err(backend)?;
        tx.commit().map_err(backend)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite itself consistent (transactions
        // roll back on drop), so the connection stays usable.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` in an immediate (write) transaction, moves [`Store::changes`] on, and
    /// commits. Every change but the audit log's goes through here.
    fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        let out = f(&tx)?;
        tx.prepare_cached("UPDATE changes SET n = n + 1 WHERE id = 1")
            .and_then(|mut stmt| stmt.execute([]))
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(out)
    }
}

fn backend(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::AlreadyExists
        }
        e => StoreError::Backend(Box::new(e)),
    }
}

fn key_from_row(r: &Row<'_>) -> rusqlite::Result<KeyRecord> {
    let state: String = r.get(3)?;
    let state = KeyState::parse(&state).ok_or_else(|| corrupt_column(3, "key state"))?;
    Ok(KeyRecord {
        key_id: r.get(0)?,
        created_at: r.get(1)?,
        description: r.get(2)?,
        state,
        deletion_date: r.get(4)?,
        pending_window_days: r.get(5)?,
        rotation_period_days: r.get(6)?,
        next_rotation: r.get(7)?,
        current_version: r.get(8)?,
        on_demand_rotations: r.get(9)?,
        policy: r.get(10)?,
        destroyed: r.get(11)?,
        generation: r.get::<_, i64>(12)? as u64,
    })
}

fn version_from_row(r: &Row<'_>) -> rusqlite::Result<VersionRecord> {
    let rotation: Option<String> = r.get(5)?;
    let rotation = match rotation {
        None => None,
        Some(s) => Some(RotationType::parse(&s).ok_or_else(|| corrupt_column(5, "rotation type"))?),
    };
    Ok(VersionRecord {
        key_id: r.get(0)?,
        version: r.get(1)?,
        material_id: r.get(2)?,
        wrapped: r.get(3)?,
        created_at: r.get(4)?,
        rotation,
    })
}

fn alias_from_row(r: &Row<'_>) -> rusqlite::Result<Alias> {
    Ok(Alias {
        name: r.get(0)?,
        key_id: r.get(1)?,
        created_at: r.get(2)?,
        updated_at: r.get(3)?,
    })
}

fn corrupt_column(i: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        i,
        rusqlite::types::Type::Text,
        what.to_owned().into(),
    )
}

fn insert_key(tx: &rusqlite::Transaction<'_>, k: &KeyRecord) -> Result<(), StoreError> {
    tx.execute(
        &format!("INSERT INTO keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"),
        params![
            k.key_id, k.created_at, k.description, k.state.as_str(), k.deletion_date,
            k.pending_window_days, k.rotation_period_days, k.next_rotation, k.current_version,
            k.on_demand_rotations, k.policy, k.destroyed, k.generation as i64
        ],
    )
    .map_err(backend)?;
    Ok(())
}

/// Writes `k` over the stored record if that record's generation is `k.generation - 1`.
fn replace_key(tx: &rusqlite::Transaction<'_>, k: &KeyRecord) -> Result<(), StoreError> {
    let previous = k.generation.checked_sub(1).ok_or(StoreError::Conflict)? as i64;
    let n = tx
        .execute(
            "UPDATE keys SET description = ?2, state = ?3, deletion_date = ?4, \
             pending_window_days = ?5, rotation_period_days = ?6, next_rotation = ?7, \
             current_version = ?8, on_demand_rotations = ?9, policy = ?10, destroyed = ?11, \
             generation = ?12 WHERE key_id = ?1 AND generation = ?13",
            params![
                k.key_id,
                k.description,
                k.state.as_str(),
                k.deletion_date,
                k.pending_window_days,
                k.rotation_period_days,
                k.next_rotation,
                k.current_version,
                k.on_demand_rotations,
                k.policy,
                k.destroyed,
                k.generation as i64,
                previous
            ],
        )
        .map_err(backend)?;
    match n {
        1 => Ok(()),
        _ if exists(tx, "SELECT 1 FROM keys WHERE key_id = ?1", &k.key_id)? => {
            Err(StoreError::Conflict)
        }
        _ => Err(StoreError::NotFound),
    }
}

fn insert_version(tx: &rusqlite::Transaction<'_>, v: &VersionRecord) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO key_versions (key_id, version, material_id, wrapped, created_at, rotation) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            v.key_id,
            v.version,
            v.material_id,
            v.wrapped,
            v.created_at,
            v.rotation.map(RotationType::as_str)
        ],
    )
    .map_err(backend)?;
    Ok(())
}

fn exists(tx: &rusqlite::Transaction<'_>, sql: &str, id: &str) -> Result<bool, StoreError> {
    tx.query_row(sql, [id], |_| Ok(()))
        .optional()
        .map(|r| r.is_some())
        .map_err(backend)
}

impl Store for SqliteStore {
    fn create_key(&self, key: &KeyRecord, first: &VersionRecord) -> Result<(), StoreError> {
        self.write(|tx| {
            insert_key(tx, key)?;
            insert_version(tx, first)
        })
    }

    fn key(&self, key_id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let conn = self.lock();
        conn.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM keys WHERE key_id = ?1"))
            .and_then(|mut stmt| stmt.query_row([key_id], key_from_row).optional())
            .map_err(backend)
    }

    fn keys(&self, after: Option<&str>, limit: usize) -> Result<Vec<KeyRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {KEY_COLUMNS} FROM keys WHERE key_id > ?1 AND destroyed = 0 ORDER BY key_id LIMIT ?2"
            ))
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![after.unwrap_or(""), limit as i64], key_from_row)
            .map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)
    }

    fn update_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        self.write(|tx| replace_key(tx, key))
    }

    fn rotate_key(&self, key: &KeyRecord, version: &VersionRecord) -> Result<(), StoreError> {
        self.write(|tx| {
            replace_key(tx, key)?;
            insert_version(tx, version)
        })
    }

    fn version(&self, key_id: &str, version: u32) -> Result<Option<VersionRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT key_id, version, material_id, wrapped, created_at, rotation FROM key_versions \
                 WHERE key_id = ?1 AND version = ?2",
            )
            .map_err(backend)?;
        stmt.query_row(params![key_id, version], version_from_row)
            .optional()
            .map_err(backend)
    }

    fn versions(&self, key_id: &str) -> Result<Vec<VersionRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT key_id, version, material_id, wrapped, created_at, rotation FROM key_versions \
                 WHERE key_id = ?1 ORDER BY version",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([key_id], version_from_row)
            .map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)
    }

    fn destroy_key(&self, key_id: &str, generation: u64) -> Result<(), StoreError> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE keys SET destroyed = 1, generation = generation + 1 \
                     WHERE key_id = ?1 AND generation = ?2",
                    params![key_id, generation as i64],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(
                    if exists(tx, "SELECT 1 FROM keys WHERE key_id = ?1", key_id)? {
                        StoreError::Conflict
                    } else {
                        StoreError::NotFound
                    },
                );
            }
            for sql in [
                "DELETE FROM key_versions WHERE key_id = ?1",
                "DELETE FROM aliases WHERE key_id = ?1",
                "DELETE FROM tags WHERE key_id = ?1",
            ] {
                tx.execute(sql, [key_id]).map_err(backend)?;
            }
            Ok(())
        })?;
        // secure_delete zeroed the freed pages in the database; the write-ahead log
        // still holds the old page images until it is checkpointed and truncated.
        let conn = self.lock();
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(backend)
    }

    fn create_alias(&self, alias: &Alias) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO aliases (name, key_id, created_at, updated_at) VALUES (?1, ?2, ?3, ?4)",
                params![alias.name, alias.key_id, alias.created_at, alias.updated_at],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn update_alias(&self, name: &str, key_id: &str, now: i64) -> Result<(), StoreError> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE aliases SET key_id = ?2, updated_at = ?3 WHERE name = ?1",
                    params![name, key_id, now],
                )
                .map_err(backend)?;
            if n == 0 {
                Err(StoreError::NotFound)
            } else {
                Ok(())
            }
        })
    }

    fn delete_alias(&self, name: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            let n = tx
                .execute("DELETE FROM aliases WHERE name = ?1", [name])
                .map_err(backend)?;
            if n == 0 {
                Err(StoreError::NotFound)
            } else {
                Ok(())
            }
        })
    }

    fn alias(&self, name: &str) -> Result<Option<Alias>, StoreError> {
        let conn = self.lock();
        conn.prepare_cached(
            "SELECT name, key_id, created_at, updated_at FROM aliases WHERE name = ?1",
        )
        .and_then(|mut stmt| stmt.query_row([name], alias_from_row).optional())
        .map_err(backend)
    }

    fn aliases(
        &self,
        key_id: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Alias>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT name, key_id, created_at, updated_at FROM aliases \
                 WHERE name > ?1 AND (?2 IS NULL OR key_id = ?2) ORDER BY name LIMIT ?3",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(
                params![after.unwrap_or(""), key_id, limit as i64],
                alias_from_row,
            )
            .map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)
    }

    fn tag(&self, key_id: &str, tags: &[(String, String)]) -> Result<(), StoreError> {
        self.write(|tx| {
            for (k, v) in tags {
                tx.execute(
                    "INSERT INTO tags (key_id, tag_key, tag_value) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (key_id, tag_key) DO UPDATE SET tag_value = excluded.tag_value",
                    params![key_id, k, v],
                )
                .map_err(backend)?;
            }
            Ok(())
        })
    }

    fn untag(&self, key_id: &str, tag_keys: &[String]) -> Result<(), StoreError> {
        self.write(|tx| {
            for k in tag_keys {
                tx.execute(
                    "DELETE FROM tags WHERE key_id = ?1 AND tag_key = ?2",
                    params![key_id, k],
                )
                .map_err(backend)?;
            }
            Ok(())
        })
    }

    fn tags(&self, key_id: &str) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT tag_key, tag_value FROM tags WHERE key_id = ?1 ORDER BY tag_key",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([key_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let conn = self.lock();
        conn.prepare_cached("SELECT value FROM meta WHERE name = ?1")
            .and_then(|mut stmt| stmt.query_row([name], |r| r.get(0)).optional())
            .map_err(backend)
    }

    fn init_meta(&self, name: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO meta (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                params![name, value],
            )
            .map_err(backend)?;
            tx.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .map_err(backend)
        })
    }

    fn set_meta(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO meta (name, value) VALUES (?1, ?2) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                params![name, value],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn record_certificate(&self, cert: &CertificateRecord) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                &format!(
                    "INSERT INTO certificates ({CERT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                ),
                params![
                    cert.serial,
                    cert.subject,
                    cert.not_before,
                    cert.not_after,
                    cert.issued_at,
                    cert.revoked_at,
                    cert.der
                ],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError> {
        let conn = self.lock();
        conn.prepare_cached(&format!(
            "SELECT {CERT_COLUMNS} FROM certificates WHERE serial = ?1"
        ))
        .and_then(|mut stmt| stmt.query_row([serial], cert_from_row).optional())
        .map_err(backend)
    }

    fn certificates(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {CERT_COLUMNS} FROM certificates WHERE serial > ?1 ORDER BY serial LIMIT ?2"
            ))
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![after.unwrap_or(""), limit as i64], cert_from_row)
            .map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)
    }

    fn revoke_certificate(&self, serial: &str, at: i64) -> Result<(), StoreError> {
        self.write(|tx| {
            let revoked: Option<Option<i64>> = tx
                .query_row(
                    "SELECT revoked_at FROM certificates WHERE serial = ?1",
                    [serial],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            match revoked {
                None => Err(StoreError::NotFound),
                Some(Some(_)) => Err(StoreError::AlreadyExists),
                Some(None) => {
                    tx.execute(
                        "UPDATE certificates SET revoked_at = ?2 WHERE serial = ?1",
                        params![serial, at],
                    )
                    .map_err(backend)?;
                    Ok(())
                }
            }
        })
    }

    fn revoked_certificates(&self, now: i64) -> Result<Vec<CertificateRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {CERT_COLUMNS} FROM certificates \
                 WHERE revoked_at IS NOT NULL AND not_after > ?1 ORDER BY serial"
            ))
            .map_err(backend)?;
        let rows = stmt.query_map([now], cert_from_row).map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)
    }

    fn create_access_key(&self, key: &AccessKey) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO access_keys (access_key_id, principal, wrapped, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![key.access_key_id, key.principal, key.wrapped, key.created_at],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn access_key(&self, access_key_id: &str) -> Result<Option<AccessKey>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT access_key_id, principal, wrapped, created_at FROM access_keys WHERE access_key_id = ?1",
            )
            .map_err(backend)?;
        stmt.query_row([access_key_id], access_key_from_row)
            .optional()
            .map_err(backend)
    }

    fn access_keys(&self) -> Result<Vec<AccessKey>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT access_key_id, principal, wrapped, created_at FROM access_keys ORDER BY access_key_id")
            .map_err(backend)?;
        let rows = stmt.query_map([], access_key_from_row).map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)
    }

    fn delete_access_key(&self, access_key_id: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "DELETE FROM access_keys WHERE access_key_id = ?1",
                    [access_key_id],
                )
                .map_err(backend)?;
            if n == 0 {
                Err(StoreError::NotFound)
            } else {
                Ok(())
            }
        })
    }

    fn changes(&self) -> Result<u64, StoreError> {
        let conn = self.lock();
        let n: i64 = conn
            .prepare_cached("SELECT n FROM changes WHERE id = 1")
            .and_then(|mut stmt| stmt.query_row([], |r| r.get(0)))
            .map_err(backend)?;
        Ok(n as u64)
    }

    fn shared(&self) -> bool {
        false
    }

    fn key_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT CASE WHEN destroyed THEN 'Destroyed' ELSE state END AS s, count(*) \
                 FROM keys GROUP BY s ORDER BY s",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64)))
            .map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)
    }

    fn append_audit(
        &self,
        records: &[AuditRow],
        checkpoint: Option<&AuditRow>,
    ) -> Result<(), StoreError> {
        let mut conn = self.lock_audit();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        insert_audit(&tx, last_seq(&tx)?, records, checkpoint)?;
        tx.commit().map_err(backend)
    }

    fn append_audit_chained(&self, chain: &mut ChainAudit<'_>) -> Result<(), StoreError> {
        let mut conn = self.lock_audit();
        // Immediate: the write lock first, so no other writer appends in between.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        let tail = tail(&tx)?;
        let checkpoint = tx
            .prepare_cached("SELECT seq, 0, line FROM audit_checkpoints ORDER BY n DESC LIMIT 1")
            .and_then(|mut stmt| stmt.query_row([], audit_row).optional())
            .map_err(backend)?;
        let (records, checkpoint) = chain(tail.as_ref(), checkpoint.as_ref())?;
        insert_audit(
            &tx,
            tail.map_or(0, |t| t.seq),
            &records,
            checkpoint.as_ref(),
        )?;
        tx.commit().map_err(backend)
    }

    fn truncate_audit(&self, records_after: u64, checkpoints_kept: u64) -> Result<(), StoreError> {
        let mut conn = self.lock_audit();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        let after = records_after as i64;
        // A batch that straddles the cut keeps its first lines.
        let straddling: Option<(i64, String)> = tx
            .query_row(
                "SELECT first_seq, lines FROM audit_batches WHERE first_seq <= ?1 AND last_seq > ?1",
                [after],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(backend)?;
        if let Some((first, lines)) = straddling {
            tx.execute(
                "UPDATE audit_batches SET last_seq = ?2, lines = ?3 WHERE first_seq = ?1",
                params![first, after, common::cut_batch(first, &lines, after)],
            )
            .map_err(backend)?;
        }
        tx.execute("DELETE FROM audit_batches WHERE first_seq > ?1", [after])
            .map_err(backend)?;
        tx.execute(
            "DELETE FROM audit_checkpoints WHERE n > ?1",
            [checkpoints_kept as i64],
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)
    }

    fn audit_records(&self, after: u64, limit: usize) -> Result<Vec<AuditRow>, StoreError> {
        let conn = self.lock_audit();
        let mut stmt = conn
            .prepare_cached(
                "SELECT first_seq, first_ms, lines FROM audit_batches \
                 WHERE last_seq > ?1 ORDER BY first_seq",
            )
            .map_err(backend)?;
        let mut rows = stmt.query([after as i64]).map_err(backend)?;
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(row) = rows.next().map_err(backend)? else {
                break;
            };
            let first: i64 = row.get(0).map_err(backend)?;
            let time_ms: i64 = row.get(1).map_err(backend)?;
            let lines: String = row.get(2).map_err(backend)?;
            common::unpack_batch(first, time_ms, &lines, after, limit, &mut out);
        }
        Ok(out)
    }

    fn audit_tail(&self) -> Result<Option<AuditRow>, StoreError> {
        let conn = self.lock_audit();
        tail(&conn)
    }

    fn audit_checkpoints(&self) -> Result<Vec<AuditRow>, StoreError> {
        let conn = self.lock_audit();
        let mut stmt = conn
            .prepare_cached("SELECT seq, 0, line FROM audit_checkpoints ORDER BY n")
            .map_err(backend)?;
        let rows = stmt.query_map([], audit_row).map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)
    }

    fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let mut conn = self.lock();
        // Deferred: the first read starts the read transaction, and WAL keeps every
        // later read in it at that moment while the service writes on.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(backend)?;
        let snapshot = read_snapshot(&tx)?;
        tx.commit().map_err(backend)?;
        Ok(snapshot)
    }

    fn is_empty(&self) -> Result<bool, StoreError> {
        let conn = self.lock();
        conn.query_row(snapshot_sql::ANY_ROW, [], |_| Ok(()))
            .optional()
            .map(|row| row.is_none())
            .map_err(backend)
    }

    fn restore(&self, s: &Snapshot) -> Result<(), StoreError> {
        // An immediate transaction holds SQLite's one write lock: nothing (the audit
        // connection included) writes between the check and the inserts.
        self.write(|tx| {
            if tx
                .query_row(snapshot_sql::ANY_ROW, [], |_| Ok(()))
                .optional()
                .map_err(backend)?
                .is_some()
            {
                return Err(StoreError::NotEmpty);
            }
            for (name, value) in &s.meta {
                tx.execute(snapshot_sql::INSERT_META, params![name, value])
                    .map_err(backend)?;
            }
            for k in &s.keys {
                insert_key(tx, k)?;
            }
            for v in &s.versions {
                insert_version(tx, v)?;
            }
            for a in &s.aliases {
                tx.execute(
                    snapshot_sql::INSERT_ALIAS,
                    params![a.name, a.key_id, a.created_at, a.updated_at],
                )
                .map_err(backend)?;
            }
            for (key_id, k, v) in &s.tags {
                tx.execute(snapshot_sql::INSERT_TAG, params![key_id, k, v])
                    .map_err(backend)?;
            }
            for a in &s.access_keys {
                tx.execute(
                    snapshot_sql::INSERT_ACCESS_KEY,
                    params![a.access_key_id, a.principal, a.wrapped, a.created_at],
                )
                .map_err(backend)?;
            }
            for c in &s.certificates {
                tx.execute(
                    snapshot_sql::INSERT_CERTIFICATE,
                    params![
                        c.serial,
                        c.subject,
                        c.not_before,
                        c.not_after,
                        c.issued_at,
                        c.revoked_at,
                        c.der
                    ],
                )
                .map_err(backend)?;
            }
            Ok(())
        })
    }
}

fn access_key_from_row(r: &Row<'_>) -> rusqlite::Result<AccessKey> {
    Ok(AccessKey {
        access_key_id: r.get(0)?,
        principal: r.get(1)?,
        wrapped: r.get(2)?,
        created_at: r.get(3)?,
    })
}

/// The last audit record's sequence number (0 for none).
/// The last audit record stored.
fn tail(conn: &Connection) -> Result<Option<AuditRow>, StoreError> {
    conn.prepare_cached(
        "SELECT last_seq, last_ms, lines FROM audit_batches ORDER BY first_seq DESC LIMIT 1",
    )
    .and_then(|mut stmt| {
        stmt.query_row([], |r| {
            let lines: String = r.get(2)?;
            Ok(AuditRow {
                seq: r.get::<_, i64>(0)?.max(0) as u64,
                time_ms: r.get(1)?,
                line: common::last_line(&lines),
            })
        })
        .optional()
    })
    .map_err(backend)
}

/// Stores `records` (following record `stored`) as one batch row, and `checkpoint`.
fn insert_audit(
    tx: &rusqlite::Transaction<'_>,
    stored: u64,
    records: &[AuditRow],
    checkpoint: Option<&AuditRow>,
) -> Result<(), StoreError> {
    if let (Some(first), Some(last)) = (records.first(), records.last()) {
        // One row per batch: the records must follow the last one stored, in order.
        let lines = common::pack_batch(stored, records)?;
        tx.prepare_cached(
            "INSERT INTO audit_batches (first_seq, last_seq, first_ms, last_ms, lines) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                first.seq as i64,
                last.seq as i64,
                first.time_ms,
                last.time_ms,
                lines
            ])
        })
        .map_err(backend)?;
    }
    if let Some(c) = checkpoint {
        tx.prepare_cached("INSERT INTO audit_checkpoints (seq, line) VALUES (?1, ?2)")
            .and_then(|mut stmt| stmt.execute(params![c.seq as i64, c.line]))
            .map_err(backend)?;
    }
    Ok(())
}

fn last_seq(tx: &rusqlite::Transaction<'_>) -> Result<u64, StoreError> {
    let last: Option<i64> = tx
        .prepare_cached("SELECT last_seq FROM audit_batches ORDER BY first_seq DESC LIMIT 1")
        .and_then(|mut stmt| stmt.query_row([], |r| r.get(0)).optional())
        .map_err(backend)?;
    Ok(last.unwrap_or(0).max(0) as u64)
}

fn audit_row(r: &Row<'_>) -> rusqlite::Result<AuditRow> {
    Ok(AuditRow {
        seq: r.get::<_, i64>(0)?.max(0) as u64,
        time_ms: r.get(1)?,
        line: r.get(2)?,
    })
}

/// Every row of `sql`, read with `f`.
fn all<T>(
    tx: &rusqlite::Transaction<'_>,
    sql: &str,
    f: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = tx.prepare(sql).map_err(backend)?;
    let rows = stmt.query_map([], f).map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}

/// The whole store, read inside `tx`.
fn read_snapshot(tx: &rusqlite::Transaction<'_>) -> Result<Snapshot, StoreError> {
    let audit_tail = tx
        .query_row(snapshot_sql::AUDIT_TAIL, [], |r| {
            let lines: String = r.get(2)?;
            Ok(AuditRow {
                seq: r.get::<_, i64>(0)?.max(0) as u64,
                time_ms: r.get(1)?,
                line: common::last_line(&lines),
            })
        })
        .optional()
        .map_err(backend)?;
    let audit_checkpoint = tx
        .query_row(snapshot_sql::AUDIT_CHECKPOINT, [], |r| {
            Ok(AuditRow {
                seq: r.get::<_, i64>(0)?.max(0) as u64,
                time_ms: 0,
                line: r.get(1)?,
            })
        })
        .optional()
        .map_err(backend)?;
    Ok(Snapshot {
        meta: all(tx, snapshot_sql::META, |r| Ok((r.get(0)?, r.get(1)?)))?,
        keys: all(tx, snapshot_sql::KEYS, key_from_row)?,
        versions: all(tx, snapshot_sql::VERSIONS, version_from_row)?,
        aliases: all(tx, snapshot_sql::ALIASES, alias_from_row)?,
        tags: all(tx, snapshot_sql::TAGS, |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?,
        access_keys: all(tx, snapshot_sql::ACCESS_KEYS, access_key_from_row)?,
        certificates: all(tx, snapshot_sql::CERTIFICATES, cert_from_row)?,
        audit_tail,
        audit_checkpoint,
    })
}
