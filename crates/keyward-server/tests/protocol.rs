//! The KMS JSON protocol against a real KMS: shapes of responses, and every error as the
//! wire carries it; the cases in protocol/cases.rs run over SQLite and over PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use keyward_kms::{AesRootKey, Kms, KmsConfig, SystemClock};
use keyward_server::protocol::{ApiError, WireError, handle};
use keyward_store::{DatabaseUrl, PostgresStore, SqliteStore, Store};
use serde_json::Value;

/// What a test's KMS keeps its data in, removed on drop.
struct Guard {
    dir: tempfile::TempDir,
    _pg: Option<keyward_testpg::PgCluster>,
}

fn open(store: Arc<dyn Store>, guard: Guard) -> (Guard, Kms) {
    let (root, _) = AesRootKey::load_or_create_file(&guard.dir.path().join("root.key")).unwrap();
    let kms = Kms::open(
        store,
        Box::new(root),
        Arc::new(SystemClock),
        KmsConfig::default(),
    )
    .unwrap();
    (guard, kms)
}

mod sqlite {
    use super::*;

    fn kms() -> Option<(Guard, Kms)> {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("keyward.db")).unwrap());
        Some(open(store, Guard { dir, _pg: None }))
    }

    include!("protocol/cases.rs");
}

mod postgres {
    use super::*;

    fn kms() -> Option<(Guard, Kms)> {
        let pg = keyward_testpg::PgCluster::start()?;
        let url = DatabaseUrl::parse(&pg.url()).unwrap();
        let store = Arc::new(PostgresStore::open(&url).unwrap());
        let dir = tempfile::tempdir().unwrap();
        Some(open(store, Guard { dir, _pg: Some(pg) }))
    }

    include!("protocol/cases.rs");
}

pub(crate) fn call(kms: &Kms, op: &str, body: Value) -> Result<Value, WireError> {
    handle(
        kms,
        "admin",
        &format!("TrentService.{op}"),
        body.to_string().as_bytes(),
    )
    .map_err(|e: ApiError| e.to_wire())
}

pub(crate) fn err(kms: &Kms, op: &str, body: Value) -> (u16, &'static str) {
    let e = call(kms, op, body).unwrap_err();
    (e.status, e.aws_type)
}
