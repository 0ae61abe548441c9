//! The PostgreSQL store: one database that several processes may write at once (the
//! KMS above it is not yet ready for several nodes: docs/OPERATIONS.md).
//!
//! The same schema as SQLite, the same rules. Where SQLite leans on its single writer,
//! PostgreSQL gets explicit locks: the migration takes an advisory lock, audit appends
//! and undos lock the audit tables against each other (readers are not held up), a
//! revocation locks its row. Generation-guarded key updates need nothing more:
//! `UPDATE ... WHERE generation = $n` re-checks the row a concurrent writer changed.
//!
//! The client is the synchronous `postgres` crate, which drives each connection on a
//! runtime of its own: call the store from plain threads or tokio's blocking pool, never
//! from an async task. Connections come from a small pool; one found dead (the server
//! restarted) is dropped and the call starts over on a fresh one, as long as nothing of
//! it had reached the server.

use std::fmt;

use ::postgres::Row;

mod pool;
mod schema;
mod url;

use self::pool::{Conn, Pool};
use self::schema::MIGRATIONS;
pub use self::url::DatabaseUrl;

use crate::common::{self, cert_columns, key_columns, snapshot_sql};
use crate::{
    AccessKey, Alias, AuditRow, CertificateRecord, ChainAudit, KeyRecord, KeyState, RotationType,
    Snapshot, Store, StoreError, VersionRecord,
};

/// The advisory lock a migration holds, so that nodes starting together take turns.
const MIGRATION_LOCK: i64 = 0x6b65_7977_6172_6401;

/// The store in a PostgreSQL database. The user must be allowed to create tables in it
/// (owning the database is simplest); the first open creates the schema.
pub struct PostgresStore {
    url: DatabaseUrl,
    pool: Pool,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects and brings the schema up to date; refuses a schema newer than this
    /// keyward knows.
    pub fn open(url: &DatabaseUrl) -> Result<Self, StoreError> {
        let store = Self {
            url: url.clone(),
            pool: Pool::new(url.config().clone()),
        };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        self.write(|db| {
            db.batch(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))?;
            db.batch("CREATE TABLE IF NOT EXISTS keyward_schema (version BIGINT NOT NULL)")?;
            let rows = db.query("SELECT version FROM keyward_schema FOR UPDATE", &[])?;
            let done: i64 = match rows.first() {
                Some(row) => row.try_get(0).map_err(backend)?,
                None => {
                    db.execute("INSERT INTO keyward_schema (version) VALUES (0)", &[])?;
                    0
                }
            };
            let done = usize::try_from(done)
                .map_err(|_| StoreError::Corrupt("negative schema version"))?;
            if rows.len() > 1 {
                return Err(StoreError::Corrupt("more than one schema version"));
            }
            if done > MIGRATIONS.len() {
                return Err(StoreError::Corrupt(
                    "database schema is newer than this keyward",
                ));
            }
            for sql in &MIGRATIONS[done..] {
                db.batch(sql)?;
            }
            db.execute(
                "UPDATE keyward_schema SET version = $1",
                &[&(MIGRATIONS.len() as i64)],
            )?;
            Ok(())
        })
    }

    /// Runs `f` on a connection outside any transaction (one statement: one
    /// transaction). For reads and other statements that may run twice: one that fails
    /// because its connection had died is tried once more on a fresh one.
    fn read<T>(&self, f: impl Fn(&mut Conn) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut lease = self.pool.get()?;
        match f(lease.conn()?) {
            Err(_) if lease.reused && lease.is_closed() => {
                drop(lease);
                self.pool.flush();
                f(self.pool.get()?.conn()?)
            }
            r => r,
        }
    }

    /// [`PostgresStore::write`] for a change to anything but the audit log: moves
    /// [`Store::changes`] on in the same transaction. The counter's row is taken last,
    /// after the rows `f` changed, so transactions never wait on each other in a cycle.
    fn change<T>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write(|db| {
            let out = f(db)?;
            db.execute("UPDATE changes SET n = n + 1 WHERE id = 1", &[])?;
            Ok(out)
        })
    }

    /// Runs `f` in a read-committed transaction and commits.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut lease = self.pool.get()?;
        if let Err(e) = lease.begin() {
            if !(lease.reused && lease.is_closed()) {
                return Err(e);
            }
            // The connection died while idle (the server restarted): nothing was sent.
            drop(lease);
            self.pool.flush();
            lease = self.pool.get()?;
            lease.begin()?;
        }
        match f(lease.conn()?) {
            Ok(out) => lease.end(true).map(|()| out),
            Err(e) => {
                // Should the rollback fail, the connection is closed when given back.
                let _ = lease.end(false);
                Err(e)
            }
        }
    }
}

/// Integrity violations (a duplicate key, a missing referenced key) are
/// `AlreadyExists`, as SQLite's constraint violations are.
fn backend(e: ::postgres::Error) -> StoreError {
    match e.code() {
        Some(state) if state.code().starts_with("23") => StoreError::AlreadyExists,
        _ => StoreError::Backend(Box::new(e)),
    }
}

fn get<'a, T: ::postgres::types::FromSql<'a>>(r: &'a Row, i: usize) -> Result<T, StoreError> {
    r.try_get(i).map_err(backend)
}

fn get_u32(r: &Row, i: usize) -> Result<u32, StoreError> {
    u32::try_from(get::<i64>(r, i)?).map_err(|_| StoreError::Corrupt("a number out of range"))
}

fn get_opt_u32(r: &Row, i: usize) -> Result<Option<u32>, StoreError> {
    get::<Option<i64>>(r, i)?
        .map(|n| u32::try_from(n).map_err(|_| StoreError::Corrupt("a number out of range")))
        .transpose()
}

fn get_u64(r: &Row, i: usize) -> Result<u64, StoreError> {
    u64::try_from(get::<i64>(r, i)?).map_err(|_| StoreError::Corrupt("a negative number"))
}

fn key_from_row(r: &Row) -> Result<KeyRecord, StoreError> {
    let state: String = get(r, 3)?;
    Ok(KeyRecord {
        key_id: get(r, 0)?,
        created_at: get(r, 1)?,
        description: get(r, 2)?,
        state: KeyState::parse(&state).ok_or(StoreError::Corrupt("key state"))?,
        deletion_date: get(r, 4)?,
        pending_window_days: get_opt_u32(r, 5)?,
        rotation_period_days: get_opt_u32(r, 6)?,
        next_rotation: get(r, 7)?,
        current_version: get_u32(r, 8)?,
        on_demand_rotations: get_u32(r, 9)?,
        policy: get(r, 10)?,
        destroyed: get(r, 11)?,
        generation: get_u64(r, 12)?,
    })
}

fn version_from_row(r: &Row) -> Result<VersionRecord, StoreError> {
    let rotation: Option<String> = get(r, 5)?;
    let rotation = match rotation {
        None => None,
        Some(s) => Some(RotationType::parse(&s).ok_or(StoreError::Corrupt("rotation type"))?),
    };
    Ok(VersionRecord {
        key_id: get(r, 0)?,
        version: get_u32(r, 1)?,
        material_id: get(r, 2)?,
        wrapped: get(r, 3)?,
        created_at: get(r, 4)?,
        rotation,
    })
}

fn alias_from_row(r: &Row) -> Result<Alias, StoreError> {
    Ok(Alias {
        name: get(r, 0)?,
        key_id: get(r, 1)?,
        created_at: get(r, 2)?,
        updated_at: get(r, 3)?,
    })
}

fn cert_from_row(r: &Row) -> Result<CertificateRecord, StoreError> {
    Ok(CertificateRecord {
        serial: get(r, 0)?,
        subject: get(r, 1)?,
        not_before: get(r, 2)?,
        not_after: get(r, 3)?,
        issued_at: get(r, 4)?,
        revoked_at: get(r, 5)?,
        der: get(r, 6)?,
    })
}

fn access_key_from_row(r: &Row) -> Result<AccessKey, StoreError> {
    Ok(AccessKey {
        access_key_id: get(r, 0)?,
        principal: get(r, 1)?,
        wrapped: get(r, 2)?,
        created_at: get(r, 3)?,
    })
}

fn rows<T>(rows: Vec<Row>, f: fn(&Row) -> Result<T, StoreError>) -> Result<Vec<T>, StoreError> {
    rows.iter().map(f).collect()
}

/// A row limit as SQL takes it (SQLite reads a negative one as none; PostgreSQL refuses it).
fn sql_limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn opt_u32(n: Option<u32>) -> Option<i64> {
    n.map(i64::from)
}

fn insert_key(db: &mut Conn, k: &KeyRecord) -> Result<(), StoreError> {
    db.execute(
        concat!(
            "INSERT INTO keys (",
            key_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ),
        &[
            &k.key_id,
            &k.created_at,
            &k.description,
            &k.state.as_str(),
            &k.deletion_date,
            &opt_u32(k.pending_window_days),
            &opt_u32(k.rotation_period_days),
            &k.next_rotation,
            &i64::from(k.current_version),
            &i64::from(k.on_demand_rotations),
            &k.policy,
            &k.destroyed,
            &(k.generation as i64),
        ],
    )?;
    Ok(())
}

/// Writes `k` over the stored record if that record's generation is `k.generation - 1`.
fn replace_key(db: &mut Conn, k: &KeyRecord) -> Result<(), StoreError> {
    let previous = k.generation.checked_sub(1).ok_or(StoreError::Conflict)? as i64;
    let n = db.execute(
        "UPDATE keys SET description = $2, state = $3, deletion_date = $4, \
         pending_window_days = $5, rotation_period_days = $6, next_rotation = $7, \
         current_version = $8, on_demand_rotations = $9, policy = $10, destroyed = $11, \
         generation = $12 WHERE key_id = $1 AND generation = $13",
        &[
            &k.key_id,
            &k.description,
            &k.state.as_str(),
            &k.deletion_date,
            &opt_u32(k.pending_window_days),
            &opt_u32(k.rotation_period_days),
            &k.next_rotation,
            &i64::from(k.current_version),
            &i64::from(k.on_demand_rotations),
            &k.policy,
            &k.destroyed,
            &(k.generation as i64),
            &previous,
        ],
    )?;
    match n {
        1 => Ok(()),
        _ if db
            .query_opt("SELECT 1 FROM keys WHERE key_id = $1", &[&k.key_id])?
            .is_some() =>
        {
            Err(StoreError::Conflict)
        }
        _ => Err(StoreError::NotFound),
    }
}

fn insert_version(db: &mut Conn, v: &VersionRecord) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO key_versions (key_id, version, material_id, wrapped, created_at, rotation) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &v.key_id,
            &i64::from(v.version),
            &v.material_id,
            &v.wrapped,
            &v.created_at,
            &v.rotation.map(RotationType::as_str),
        ],
    )?;
    Ok(())
}

fn one_changed(n: u64) -> Result<(), StoreError> {
    if n == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

/// The last audit record stored (only its line crosses the wire, not its batch's).
fn audit_tail(db: &mut Conn) -> Result<Option<AuditRow>, StoreError> {
    let Some(row) = db.query_opt(
        "SELECT last_seq, last_ms, reverse(split_part(reverse(lines), E'\\n', 1)) \
         FROM audit_batches ORDER BY first_seq DESC LIMIT 1",
        &[],
    )?
    else {
        return Ok(None);
    };
    Ok(Some(AuditRow {
        seq: get_u64(&row, 0)?,
        time_ms: get(&row, 1)?,
        line: get(&row, 2)?,
    }))
}

/// Stores `records` (following record `stored`) as one batch row, and `checkpoint`.
fn insert_audit(
    db: &mut Conn,
    stored: u64,
    records: &[AuditRow],
    checkpoint: Option<&AuditRow>,
) -> Result<(), StoreError> {
    if let (Some(first), Some(last)) = (records.first(), records.last()) {
        // One row per batch: the records must follow the last one stored, in order.
        let lines = common::pack_batch(stored, records)?;
        db.execute(
            "INSERT INTO audit_batches (first_seq, last_seq, first_ms, last_ms, lines) \
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &(first.seq as i64),
                &(last.seq as i64),
                &first.time_ms,
                &last.time_ms,
                &lines,
            ],
        )?;
    }
    if let Some(c) = checkpoint {
        // Numbered as SQLite's rowids are: one more than the last kept.
        db.execute(
            "INSERT INTO audit_checkpoints (n, seq, line) \
             SELECT coalesce(max(n), 0) + 1, $1, $2 FROM audit_checkpoints",
            &[&(c.seq as i64), &c.line],
        )?;
    }
    Ok(())
}

/// Takes the audit writers' lock: appends and undos, from every node, one at a time,
/// each seeing the last record the one before it stored. Readers go on meanwhile.
fn lock_audit(db: &mut Conn) -> Result<(), StoreError> {
    db.batch("LOCK TABLE audit_batches, audit_checkpoints IN EXCLUSIVE MODE")
}

impl Store for PostgresStore {
    fn create_key(&self, key: &KeyRecord, first: &VersionRecord) -> Result<(), StoreError> {
        self.change(|db| {
            insert_key(db, key)?;
            insert_version(db, first)
        })
    }

    fn key(&self, key_id: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.read(|db| {
            db.query_opt(
                concat!("SELECT ", key_columns!(), " FROM keys WHERE key_id = $1"),
                &[&key_id],
            )?
            .as_ref()
            .map(key_from_row)
            .transpose()
        })
    }

    fn keys(&self, after: Option<&str>, limit: usize) -> Result<Vec<KeyRecord>, StoreError> {
        self.read(|db| {
            let found = db.query(
                concat!(
                    "SELECT ",
                    key_columns!(),
                    " FROM keys WHERE key_id > $1 AND NOT destroyed ORDER BY key_id LIMIT $2"
                ),
                &[&after.unwrap_or(""), &sql_limit(limit)],
            )?;
            rows(found, key_from_row)
        })
    }

    fn update_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        self.change(|db| replace_key(db, key))
    }

    fn rotate_key(&self, key: &KeyRecord, version: &VersionRecord) -> Result<(), StoreError> {
        self.change(|db| {
            replace_key(db, key)?;
            insert_version(db, version)
        })
    }

    fn version(&self, key_id: &str, version: u32) -> Result<Option<VersionRecord>, StoreError> {
        self.read(|db| {
            db.query_opt(
                "SELECT key_id, version, material_id, wrapped, created_at, rotation \
                 FROM key_versions WHERE key_id = $1 AND version = $2",
                &[&key_id, &i64::from(version)],
            )?
            .as_ref()
            .map(version_from_row)
            .transpose()
        })
    }

    fn versions(&self, key_id: &str) -> Result<Vec<VersionRecord>, StoreError> {
        self.read(|db| {
            let found = db.query(
                "SELECT key_id, version, material_id, wrapped, created_at, rotation \
                 FROM key_versions WHERE key_id = $1 ORDER BY version",
                &[&key_id],
            )?;
            rows(found, version_from_row)
        })
    }

    fn destroy_key(&self, key_id: &str, generation: u64) -> Result<(), StoreError> {
        self.change(|db| {
            let n = db.execute(
                "UPDATE keys SET destroyed = TRUE, generation = generation + 1 \
                 WHERE key_id = $1 AND generation = $2",
                &[&key_id, &(generation as i64)],
            )?;
            if n != 1 {
                let exists = db
                    .query_opt("SELECT 1 FROM keys WHERE key_id = $1", &[&key_id])?
                    .is_some();
                return Err(if exists {
                    StoreError::Conflict
                } else {
                    StoreError::NotFound
                });
            }
            db.execute("DELETE FROM key_versions WHERE key_id = $1", &[&key_id])?;
            db.execute("DELETE FROM aliases WHERE key_id = $1", &[&key_id])?;
            db.execute("DELETE FROM tags WHERE key_id = $1", &[&key_id])?;
            Ok(())
        })?;
        // A deleted row stays in the table's pages until they are rewritten: VACUUM FULL
        // writes the table anew without it (and truncates the old file). The server's
        // write-ahead log and backups keep their copies until they are recycled.
        self.read(|db| db.batch("VACUUM FULL key_versions"))
    }

    fn create_alias(&self, alias: &Alias) -> Result<(), StoreError> {
        self.change(|db| {
            db.execute(
                "INSERT INTO aliases (name, key_id, created_at, updated_at) VALUES ($1, $2, $3, $4)",
                &[&alias.name, &alias.key_id, &alias.created_at, &alias.updated_at],
            )?;
            Ok(())
        })
    }

    fn update_alias(&self, name: &str, key_id: &str, now: i64) -> Result<(), StoreError> {
        self.change(|db| {
            one_changed(db.execute(
                "UPDATE aliases SET key_id = $2, updated_at = $3 WHERE name = $1",
                &[&name, &key_id, &now],
            )?)
        })
    }

    fn delete_alias(&self, name: &str) -> Result<(), StoreError> {
        self.change(|db| one_changed(db.execute("DELETE FROM aliases WHERE name = $1", &[&name])?))
    }

    fn alias(&self, name: &str) -> Result<Option<Alias>, StoreError> {
        self.read(|db| {
            db.query_opt(
                "SELECT name, key_id, created_at, updated_at FROM aliases WHERE name = $1",
                &[&name],
            )?
            .as_ref()
            .map(alias_from_row)
            .transpose()
        })
    }

    fn aliases(
        &self,
        key_id: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Alias>, StoreError> {
        self.read(|db| {
            let found = db.query(
                "SELECT name, key_id, created_at, updated_at FROM aliases \
                 WHERE name > $1 AND ($2::text IS NULL OR key_id = $2::text) \
                 ORDER BY name LIMIT $3",
                &[&after.unwrap_or(""), &key_id, &sql_limit(limit)],
            )?;
            rows(found, alias_from_row)
        })
    }

    fn tag(&self, key_id: &str, tags: &[(String, String)]) -> Result<(), StoreError> {
        self.change(|db| {
            for (k, v) in tags {
                db.execute(
                    "INSERT INTO tags (key_id, tag_key, tag_value) VALUES ($1, $2, $3) \
                     ON CONFLICT (key_id, tag_key) DO UPDATE SET tag_value = excluded.tag_value",
                    &[&key_id, k, v],
                )?;
            }
            Ok(())
        })
    }

    fn untag(&self, key_id: &str, tag_keys: &[String]) -> Result<(), StoreError> {
        self.change(|db| {
            for k in tag_keys {
                db.execute(
                    "DELETE FROM tags WHERE key_id = $1 AND tag_key = $2",
                    &[&key_id, k],
                )?;
            }
            Ok(())
        })
    }

    fn tags(&self, key_id: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.read(|db| {
            db.query(
                "SELECT tag_key, tag_value FROM tags WHERE key_id = $1 ORDER BY tag_key",
                &[&key_id],
            )?
            .iter()
            .map(|r| Ok((get(r, 0)?, get(r, 1)?)))
            .collect()
        })
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|db| {
            db.query_opt("SELECT value FROM meta WHERE name = $1", &[&name])?
                .map(|r| get(&r, 0))
                .transpose()
        })
    }

    fn init_meta(&self, name: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.change(|db| {
            // A concurrent insert of the same name waits for the other to commit and
            // then does nothing; the select (a fresh snapshot) sees the winner's value.
            db.execute(
                "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &value],
            )?;
            let row = db
                .query_opt("SELECT value FROM meta WHERE name = $1", &[&name])?
                .ok_or(StoreError::NotFound)?;
            get(&row, 0)
        })
    }

    fn set_meta(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.change(|db| {
            db.execute(
                "INSERT INTO meta (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                &[&name, &value],
            )?;
            Ok(())
        })
    }

    fn record_certificate(&self, cert: &CertificateRecord) -> Result<(), StoreError> {
        self.change(|db| {
            db.execute(
                concat!(
                    "INSERT INTO certificates (",
                    cert_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
                ),
                &[
                    &cert.serial,
                    &cert.subject,
                    &cert.not_before,
                    &cert.not_after,
                    &cert.issued_at,
                    &cert.revoked_at,
                    &cert.der,
                ],
            )?;
            Ok(())
        })
    }

    fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError> {
        self.read(|db| {
            db.query_opt(
                concat!(
                    "SELECT ",
                    cert_columns!(),
                    " FROM certificates WHERE serial = $1"
                ),
                &[&serial],
            )?
            .as_ref()
            .map(cert_from_row)
            .transpose()
        })
    }

    fn certificates(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        self.read(|db| {
            let found = db.query(
                concat!(
                    "SELECT ",
                    cert_columns!(),
                    " FROM certificates WHERE serial > $1 ORDER BY serial LIMIT $2"
                ),
                &[&after.unwrap_or(""), &sql_limit(limit)],
            )?;
            rows(found, cert_from_row)
        })
    }

    fn revoke_certificate(&self, serial: &str, at: i64) -> Result<(), StoreError> {
        self.change(|db| {
            let row = db.query_opt(
                "SELECT revoked_at FROM certificates WHERE serial = $1 FOR UPDATE",
                &[&serial],
            )?;
            match row.map(|r| get::<Option<i64>>(&r, 0)).transpose()? {
                None => Err(StoreError::NotFound),
                Some(Some(_)) => Err(StoreError::AlreadyExists),
                Some(None) => {
                    db.execute(
                        "UPDATE certificates SET revoked_at = $2 WHERE serial = $1",
                        &[&serial, &at],
                    )?;
                    Ok(())
                }
            }
        })
    }

    fn revoked_certificates(&self, now: i64) -> Result<Vec<CertificateRecord>, StoreError> {
        self.read(|db| {
            let found = db.query(
                concat!(
                    "SELECT ",
                    cert_columns!(),
                    " FROM certificates WHERE revoked_at IS NOT NULL AND not_after > $1 \
                     ORDER BY serial"
                ),
                &[&now],
            )?;
            rows(found, cert_from_row)
        })
    }

    fn create_access_key(&self, key: &AccessKey) -> Result<(), StoreError> {
        self.change(|db| {
            db.execute(
                "INSERT INTO access_keys (access_key_id, principal, wrapped, created_at) \
                 VALUES ($1, $2, $3, $4)",
                &[
                    &key.access_key_id,
                    &key.principal,
                    &key.wrapped,
                    &key.created_at,
                ],
            )?;
            Ok(())
        })
    }

    fn access_key(&self, access_key_id: &str) -> Result<Option<AccessKey>, StoreError> {
        self.read(|db| {
            db.query_opt(
                "SELECT access_key_id, principal, wrapped, created_at FROM access_keys \
                 WHERE access_key_id = $1",
                &[&access_key_id],
            )?
            .as_ref()
            .map(access_key_from_row)
            .transpose()
        })
    }

    fn access_keys(&self) -> Result<Vec<AccessKey>, StoreError> {
        self.read(|db| {
            let found = db.query(
                "SELECT access_key_id, principal, wrapped, created_at FROM access_keys \
                 ORDER BY access_key_id",
                &[],
            )?;
            rows(found, access_key_from_row)
        })
    }

    fn delete_access_key(&self, access_key_id: &str) -> Result<(), StoreError> {
        self.change(|db| {
            one_changed(db.execute(
                "DELETE FROM access_keys WHERE access_key_id = $1",
                &[&access_key_id],
            )?)
        })
    }

    fn changes(&self) -> Result<u64, StoreError> {
        self.read(|db| {
            let row = db.query_opt("SELECT n FROM changes WHERE id = 1", &[])?;
            row.map_or(
                Err(StoreError::Corrupt("the changes counter is missing")),
                |r| get_u64(&r, 0),
            )
        })
    }

    fn shared(&self) -> bool {
        true
    }

    fn key_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(|db| {
            db.query(
                "SELECT CASE WHEN destroyed THEN 'Destroyed' ELSE state END AS s, count(*) \
                 FROM keys GROUP BY s ORDER BY s",
                &[],
            )?
            .iter()
            .map(|r| Ok((get(r, 0)?, get_u64(r, 1)?)))
            .collect()
        })
    }

    fn append_audit(
        &self,
        records: &[AuditRow],
        checkpoint: Option<&AuditRow>,
    ) -> Result<(), StoreError> {
        self.write(|db| {
            lock_audit(db)?;
            let stored = db
                .query_opt(
                    "SELECT last_seq FROM audit_batches ORDER BY first_seq DESC LIMIT 1",
                    &[],
                )?
                .map(|r| get_u64(&r, 0))
                .transpose()?
                .unwrap_or(0);
            insert_audit(db, stored, records, checkpoint)
        })
    }

    fn append_audit_chained(&self, chain: &mut ChainAudit<'_>) -> Result<(), StoreError> {
        self.write(|db| {
            lock_audit(db)?;
            let tail = audit_tail(db)?;
            let checkpoint = db
                .query_opt(
                    "SELECT seq, line FROM audit_checkpoints ORDER BY n DESC LIMIT 1",
                    &[],
                )?
                .map(|r| {
                    Ok::<_, StoreError>(AuditRow {
                        seq: get_u64(&r, 0)?,
                        time_ms: 0,
                        line: get(&r, 1)?,
                    })
                })
                .transpose()?;
            let (records, checkpoint) = chain(tail.as_ref(), checkpoint.as_ref())?;
            insert_audit(db, tail.map_or(0, |t| t.seq), &records, checkpoint.as_ref())
        })
    }

    fn truncate_audit(&self, records_after: u64, checkpoints_kept: u64) -> Result<(), StoreError> {
        let after = records_after as i64;
        self.write(|db| {
            lock_audit(db)?;
            // A batch that straddles the cut keeps its first lines.
            let straddling = db.query_opt(
                "SELECT first_seq, lines FROM audit_batches \
                 WHERE first_seq <= $1 AND last_seq > $1",
                &[&after],
            )?;
            if let Some(row) = straddling {
                let first: i64 = get(&row, 0)?;
                let lines: String = get(&row, 1)?;
                db.execute(
                    "UPDATE audit_batches SET last_seq = $2, lines = $3 WHERE first_seq = $1",
                    &[&first, &after, &common::cut_batch(first, &lines, after)],
                )?;
            }
            db.execute("DELETE FROM audit_batches WHERE first_seq > $1", &[&after])?;
            db.execute(
                "DELETE FROM audit_checkpoints WHERE n > $1",
                &[&(checkpoints_kept as i64)],
            )?;
            Ok(())
        })
    }

    fn audit_records(&self, after: u64, limit: usize) -> Result<Vec<AuditRow>, StoreError> {
        self.read(|db| {
            // Every batch past `after` gives at least one record: `limit` batches suffice.
            let batches = db.query(
                "SELECT first_seq, first_ms, lines FROM audit_batches \
                 WHERE last_seq > $1 ORDER BY first_seq LIMIT $2",
                &[&(after as i64), &sql_limit(limit)],
            )?;
            let mut out = Vec::new();
            for row in &batches {
                let lines: String = get(row, 2)?;
                common::unpack_batch(get(row, 0)?, get(row, 1)?, &lines, after, limit, &mut out);
            }
            Ok(out)
        })
    }

    fn audit_tail(&self) -> Result<Option<AuditRow>, StoreError> {
        self.read(audit_tail)
    }

    fn audit_checkpoints(&self) -> Result<Vec<AuditRow>, StoreError> {
        self.read(|db| {
            db.query("SELECT seq, line FROM audit_checkpoints ORDER BY n", &[])?
                .iter()
                .map(|r| {
                    Ok(AuditRow {
                        seq: get_u64(r, 0)?,
                        time_ms: 0,
                        line: get(r, 1)?,
                    })
                })
                .collect()
        })
    }

    fn snapshot(&self) -> Result<Snapshot, StoreError> {
        self.write(|db| {
            // Must come first in the transaction: every read then sees one snapshot.
            db.batch("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")?;
            read_snapshot(db)
        })
    }

    fn is_empty(&self) -> Result<bool, StoreError> {
        self.read(|db| Ok(db.query_opt(snapshot_sql::ANY_ROW, &[])?.is_none()))
    }

    fn restore(&self, s: &Snapshot) -> Result<(), StoreError> {
        self.change(|db| {
            // Writers from anywhere wait until the check and the inserts are done.
            db.batch(
                "LOCK TABLE meta, keys, key_versions, aliases, tags, access_keys, certificates, \
                 audit_batches, audit_checkpoints IN EXCLUSIVE MODE",
            )?;
            if db.query_opt(snapshot_sql::ANY_ROW, &[])?.is_some() {
                return Err(StoreError::NotEmpty);
            }
            for (name, value) in &s.meta {
                db.execute(snapshot_sql::INSERT_META, &[name, value])?;
            }
            for k in &s.keys {
                insert_key(db, k)?;
            }
            for v in &s.versions {
                insert_version(db, v)?;
            }
            for a in &s.aliases {
                db.execute(
                    snapshot_sql::INSERT_ALIAS,
                    &[&a.name, &a.key_id, &a.created_at, &a.updated_at],
                )?;
            }
            for (key_id, k, v) in &s.tags {
                db.execute(snapshot_sql::INSERT_TAG, &[key_id, k, v])?;
            }
            for a in &s.access_keys {
                db.execute(
                    snapshot_sql::INSERT_ACCESS_KEY,
                    &[&a.access_key_id, &a.principal, &a.wrapped, &a.created_at],
                )?;
            }
            for c in &s.certificates {
                db.execute(
                    snapshot_sql::INSERT_CERTIFICATE,
                    &[
                        &c.serial,
                        &c.subject,
                        &c.not_before,
                        &c.not_after,
                        &c.issued_at,
                        &c.revoked_at,
                        &c.der,
                    ],
                )?;
            }
            Ok(())
        })
    }
}

/// The whole store, read on `db` inside a snapshot transaction.
fn read_snapshot(db: &mut Conn) -> Result<Snapshot, StoreError> {
    let audit_tail = match db.query_opt(snapshot_sql::AUDIT_TAIL, &[])? {
        Some(row) => Some(AuditRow {
            seq: get_u64(&row, 0)?,
            time_ms: get(&row, 1)?,
            line: common::last_line(&get::<String>(&row, 2)?),
        }),
        None => None,
    };
    let audit_checkpoint = match db.query_opt(snapshot_sql::AUDIT_CHECKPOINT, &[])? {
        Some(row) => Some(AuditRow {
            seq: get_u64(&row, 0)?,
            time_ms: 0,
            line: get(&row, 1)?,
        }),
        None => None,
    };
    let pairs = |r: &Row| -> Result<(String, Vec<u8>), StoreError> { Ok((get(r, 0)?, get(r, 1)?)) };
    let triples = |r: &Row| -> Result<(String, String, String), StoreError> {
        Ok((get(r, 0)?, get(r, 1)?, get(r, 2)?))
    };
    Ok(Snapshot {
        meta: db
            .query(snapshot_sql::META, &[])?
            .iter()
            .map(pairs)
            .collect::<Result<_, _>>()?,
        keys: rows(db.query(snapshot_sql::KEYS, &[])?, key_from_row)?,
        versions: rows(db.query(snapshot_sql::VERSIONS, &[])?, version_from_row)?,
        aliases: rows(db.query(snapshot_sql::ALIASES, &[])?, alias_from_row)?,
        tags: db
            .query(snapshot_sql::TAGS, &[])?
            .iter()
            .map(triples)
            .collect::<Result<_, _>>()?,
        access_keys: rows(
            db.query(snapshot_sql::ACCESS_KEYS, &[])?,
            access_key_from_row,
        )?,
        certificates: rows(db.query(snapshot_sql::CERTIFICATES, &[])?, cert_from_row)?,
        audit_tail,
        audit_checkpoint,
    })
}
