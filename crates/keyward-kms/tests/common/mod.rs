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
    provider: Provider,
    /// The root key a sealing provider sealed, to look for in the files.
    root: std::sync::Mutex<Option<[u8; 32]>>,
}

/// Where the root key comes from each time the KMS is opened.
pub(crate) enum Provider {
    /// `root.key` in the data directory.
    File,
    /// Unseal shares: made at the first open, two of three given at every open.
    Shamir(std::sync::Mutex<Vec<String>>),
    /// A key in a PKCS#11 token, labelled afresh for each data directory.
    Pkcs11(
        keyward_kms::hsm::HsmAccess,
        String,
        std::sync::Mutex<String>,
    ),
}

impl Db {
    pub(crate) fn sqlite() -> Option<Self> {
        Self::sqlite_with(Provider::File)
    }

    pub(crate) fn sqlite_with(provider: Provider) -> Option<Self> {
        Some(Self {
            dir: tempfile::tempdir().unwrap(),
            pg: None,
            provider,
            root: Default::default(),
        })
    }

    /// `None` when PostgreSQL is not installed (and CI is not set): skip the test.
    pub(crate) fn postgres() -> Option<Self> {
        let pg = PgCluster::start()?;
        Some(Self {
            dir: tempfile::tempdir().unwrap(),
            pg: Some(pg),
            provider: Provider::File,
            root: Default::default(),
        })
    }

    /// Over SQLite with the root key sealed by SoftHSM2, when this process was started
    /// with `KEYWARD_TEST_PKCS11` (`module:pin file:token`) and `SOFTHSM2_CONF` set, as
    /// `the_cases_run_with_the_root_key_in_softhsm2` does; `None` otherwise.
    pub(crate) fn pkcs11() -> Option<Self> {
        let spec = std::env::var("KEYWARD_TEST_PKCS11").ok()?;
        let mut parts = spec.splitn(3, ':');
        let (module, pin, token) = (parts.next()?, parts.next()?, parts.next()?);
        let access = keyward_kms::hsm::HsmAccess::new(Path::new(module), Path::new(pin)).unwrap();
        let mut label = [0u8; 8];
        aws_lc_rs::rand::fill(&mut label).unwrap();
        let label = format!(
            "root-{}",
            label.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        Self::sqlite_with(Provider::Pkcs11(access, token.to_owned(), label.into()))
    }

    /// The root key as the provider gives it, sealing a fresh one at the first open.
    fn root_key(&self, store: &dyn Store) -> Result<Box<dyn keyward_kms::RootKey>, Error> {
        use keyward_kms::seal::{Progress, Seal, ShamirSeal};
        let fresh = || {
            let mut r = [0u8; 32];
            aws_lc_rs::rand::fill(&mut r).unwrap();
            r
        };
        let root = match (&self.provider, Seal::load(store)?) {
            (Provider::File, _) => {
                return Ok(Box::new(
                    AesRootKey::load_or_create_file(&self.dir.path().join("root.key"))?.0,
                ));
            }
            (Provider::Shamir(shares), Seal::File) => {
                let root = fresh();
                let (seal, made) = ShamirSeal::create(&root, 3, 2)?;
                Seal::Shamir(seal).save(store)?;
                *shares.lock().unwrap() = made.iter().map(|s| s.to_string()).collect();
                root
            }
            (Provider::Shamir(shares), Seal::Shamir(seal)) => {
                let shares = shares.lock().unwrap();
                let mut u = seal.unsealing();
                u.give(&shares[2]).unwrap();
                match u.give(&shares[0]).unwrap() {
                    Progress::Unsealed(root) => *root,
                    Progress::Need { .. } => panic!("two shares of three did not unseal"),
                }
            }
            (Provider::Pkcs11(access, token, label), Seal::File) => {
                let root = fresh();
                let label = label.lock().unwrap();
                let seal = keyward_kms::hsm::Pkcs11Seal::create(access, token, &label, &root)?;
                Seal::Pkcs11(seal).save(store)?;
                root
            }
            (Provider::Pkcs11(access, ..), Seal::Pkcs11(seal)) => *seal.unseal(access)?,
            (_, other) => panic!("unexpected seal {}", other.provider()),
        };
        *self.root.lock().unwrap() = Some(root);
        Ok(Box::new(AesRootKey::new(&root, "test")?))
    }

    /// The root key's bytes (the file's, or the one a provider sealed).
    pub(crate) fn root_secret(&self) -> Vec<u8> {
        match &self.provider {
            Provider::File => std::fs::read(self.dir.path().join("root.key")).unwrap(),
            _ => self.root.lock().unwrap().unwrap().to_vec(),
        }
    }

    /// Puts another root key in place of this store's: the next open must refuse it.
    pub(crate) fn replace_root_key(&self) {
        use keyward_kms::seal::{Seal, ShamirSeal};
        let store = self.store();
        let mut other = [0u8; 32];
        aws_lc_rs::rand::fill(&mut other).unwrap();
        match &self.provider {
            Provider::File => std::fs::remove_file(self.dir.path().join("root.key")).unwrap(),
            Provider::Shamir(shares) => {
                let (seal, made) = ShamirSeal::create(&other, 3, 2).unwrap();
                Seal::Shamir(seal).save(&*store).unwrap();
                *shares.lock().unwrap() = made.iter().map(|s| s.to_string()).collect();
            }
            Provider::Pkcs11(access, token, label) => {
                let mut label = label.lock().unwrap();
                label.push_str("-other");
                let seal =
                    keyward_kms::hsm::Pkcs11Seal::create(access, token, &label, &other).unwrap();
                Seal::Pkcs11(seal).save(&*store).unwrap();
            }
        }
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
        let store = self.store();
        let root = self.root_key(&*store)?;
        Kms::open(store, root, clock, KmsConfig::default())
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
