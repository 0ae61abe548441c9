//! Shared by the KMS tests: a KMS with a file root key in a data directory, over SQLite
//! in that directory or over a throwaway PostgreSQL cluster.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keyward_kms::{AesRootKey, Clock, CreateKeyRequest, EncryptionContext, Error, Kms, KmsConfig};
use keyward_store::{DatabaseUrl, PostgresStore, SqliteStore, Store};
use keyward_testpg::PgCluster;

/// A KMS over SQLite in `dir`, with the file root key in `dir`.
pub(crate) fn open_kms(dir: &Path, clock: Arc<dyn Clock>) -> Result<Kms, Error> {
    let store = Arc::new(SqliteStore::open(&dir.join("keyward.db"))?);
    let (root, _) = AesRootKey::load_or_create_file(&dir.join("root.key"))?;
    Kms::open(store, Box::new(root), clock, KmsConfig::default())
}

/// Where a test's KMS keeps its data: a data directory (root key, and the SQLite
/// database unless a PostgreSQL cluster holds the records).
pub(crate) struct Db {
    pub(crate) dir: tempfile::TempDir,
    pg: Option<PgCluster>,
}

impl Db {
    pub(crate) fn sqlite() -> Option<Self> {
        Some(Self {
            dir: tempfile::tempdir().unwrap(),
            pg: None,
        })
    }

    /// `None` when PostgreSQL is not installed (and CI is not set): skip the test.
    pub(crate) fn postgres() -> Option<Self> {
        let pg = PgCluster::start()?;
        Some(Self {
            dir: tempfile::tempdir().unwrap(),
            pg: Some(pg),
        })
    }

    /// A new store on the same data (a second node, or the same one restarted).
    pub(crate) fn store(&self) -> Arc<dyn Store> {
        match &self.pg {
            Some(pg) => {
                Arc::new(PostgresStore::open(&DatabaseUrl::parse(&pg.url()).unwrap()).unwrap())
            }
            None => Arc::new(SqliteStore::open(&self.dir.path().join("keyward.db")).unwrap()),
        }
    }

    pub(crate) fn open_kms(&self, clock: Arc<dyn Clock>) -> Result<Kms, Error> {
        let (root, _) = AesRootKey::load_or_create_file(&self.dir.path().join("root.key"))?;
        Kms::open(self.store(), Box::new(root), clock, KmsConfig::default())
    }

    /// Every file the records may have reached, once the database has written out
    /// what it committed: the data directory, and the cluster's table files (with
    /// `wal`, its write-ahead log too).
    pub(crate) fn files(&self, wal: bool) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(self.dir.path(), &mut out);
        if let Some(pg) = &self.pg {
            pg.psql("keyward", "CHECKPOINT");
            let oid = pg.psql(
                "keyward",
                "SELECT oid FROM pg_database WHERE datname = current_database()",
            );
            walk(&pg.data_dir().join("base").join(oid.trim()), &mut out);
            if wal {
                walk(&pg.data_dir().join("pg_wal"), &mut out);
            }
        }
        out
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Whether `haystack` holds any of `needles` (each at least 2 bytes): one pass over
/// the bytes with a table of the needles' first two, so that megabytes of table files
/// and logs stay quick to search in an unoptimised test build.
pub(crate) fn contains_any(haystack: &[u8], needles: &[Vec<u8>]) -> bool {
    let mut starts = vec![false; 1 << 16];
    for n in needles {
        starts[usize::from(u16::from_le_bytes([n[0], n[1]]))] = true;
    }
    haystack.windows(2).enumerate().any(|(i, w)| {
        starts[usize::from(u16::from_le_bytes([w[0], w[1]]))]
            && needles.iter().any(|n| haystack[i..].starts_with(n))
    })
}

pub(crate) fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub(crate) fn new_key(kms: &Kms) -> String {
    kms.create_key(&CreateKeyRequest::default()).unwrap().key_id
}
