//! A small bounded pool of connections, each with its prepared statements.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ::postgres::types::ToSql;
use ::postgres::{Client, Config, NoTls, Row, Statement};

use super::backend;
use crate::StoreError;

/// At most this many connections per store.
const MAX_CONNECTIONS: usize = 16;
/// How long a call waits for a connection when all are busy.
const POOL_WAIT: Duration = Duration::from_secs(30);

/// A connection and the statements prepared on it.
pub(super) struct Conn {
    client: Client,
    prepared: HashMap<&'static str, Statement>,
}

impl Conn {
    fn statement(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).map_err(backend)?;
        self.prepared.insert(sql, s.clone());
        Ok(s)
    }

    pub(super) fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let s = self.statement(sql)?;
        self.client.execute(&s, params).map_err(backend)
    }

    pub(super) fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let s = self.statement(sql)?;
        self.client.query(&s, params).map_err(backend)
    }

    pub(super) fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        let s = self.statement(sql)?;
        self.client.query_opt(&s, params).map_err(backend)
    }

    /// Statements without parameters, sent as they are.
    pub(super) fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.client.batch_execute(sql).map_err(backend)
    }
}

#[derive(Default)]
struct PoolState {
    idle: Vec<Conn>,
    /// Connections open, idle or lent.
    open: usize,
}

pub(super) struct Pool {
    config: Config,
    state: Mutex<PoolState>,
    freed: Condvar,
}

/// No connection came free in time.
#[derive(Debug, thiserror::Error)]
#[error("no database connection came free within {0:?}")]
struct PoolExhausted(Duration);

impl Pool {
    pub(super) fn new(config: Config) -> Self {
        Self {
            config,
            state: Mutex::new(PoolState::default()),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // Every change to the state is one assignment: a panic leaves it consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An idle connection, else a new one if fewer than the maximum are open, else the
    /// first one given back within [`POOL_WAIT`].
    pub(super) fn get(&self) -> Result<Lease<'_>, StoreError> {
        let deadline = Instant::now() + POOL_WAIT;
        let mut state = self.lock();
        loop {
            if let Some(conn) = state.idle.pop() {
                return Ok(Lease::new(self, conn, true));
            }
            if state.open < MAX_CONNECTIONS {
                state.open += 1;
                drop(state);
                return match self.config.connect(NoTls) {
                    Ok(client) => Ok(Lease::new(
                        self,
                        Conn {
                            client,
                            prepared: HashMap::new(),
                        },
                        false,
                    )),
                    Err(e) => {
                        self.forget(1);
                        Err(StoreError::Backend(Box::new(e)))
                    }
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StoreError::Backend(Box::new(PoolExhausted(POOL_WAIT))));
            }
            state = self
                .freed
                .wait_timeout(state, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    fn forget(&self, n: usize) {
        let mut state = self.lock();
        state.open = state.open.saturating_sub(n);
        drop(state);
        self.freed.notify_all();
    }

    /// Closes every idle connection: after one was found dead, the rest likely are.
    pub(super) fn flush(&self) {
        let idle = std::mem::take(&mut self.lock().idle);
        self.forget(idle.len());
        drop(idle);
    }
}

/// A connection lent out of the pool; given back on drop unless it died or was left
/// inside a transaction.
pub(super) struct Lease<'p> {
    pool: &'p Pool,
    conn: Option<Conn>,
    /// It came from the idle list (and so may have died while waiting there).
    pub(super) reused: bool,
    in_transaction: bool,
}

impl<'p> Lease<'p> {
    fn new(pool: &'p Pool, conn: Conn, reused: bool) -> Self {
        Self {
            pool,
            conn: Some(conn),
            reused,
            in_transaction: false,
        }
    }

    pub(super) fn conn(&mut self) -> Result<&mut Conn, StoreError> {
        self.conn.as_mut().ok_or(StoreError::Corrupt(
            "a database connection used after release",
        ))
    }

    pub(super) fn is_closed(&self) -> bool {
        self.conn.as_ref().is_none_or(|c| c.client.is_closed())
    }

    pub(super) fn begin(&mut self) -> Result<(), StoreError> {
        self.conn()?.batch("BEGIN")?;
        self.in_transaction = true;
        Ok(())
    }

    /// Commits, or rolls back when `commit` is false.
    pub(super) fn end(&mut self, commit: bool) -> Result<(), StoreError> {
        let r = self
            .conn()?
            .batch(if commit { "COMMIT" } else { "ROLLBACK" });
        // After a failed COMMIT or ROLLBACK the connection's state is unknown: the
        // flag stays up and the connection is closed when given back.
        if r.is_ok() {
            self.in_transaction = false;
        }
        r
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if self.in_transaction || conn.client.is_closed() {
            drop(conn);
            self.pool.forget(1);
        } else {
            self.pool.lock().idle.push(conn);
            self.pool.freed.notify_one();
        }
    }
}
