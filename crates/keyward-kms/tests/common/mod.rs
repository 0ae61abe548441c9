//! Shared by the KMS tests: a KMS over SQLite with a file root key in `dir`.

use std::path::Path;
use std::sync::Arc;

use keyward_kms::{AesRootKey, Clock, Error, Kms, KmsConfig};
use keyward_store::SqliteStore;

pub(crate) fn open_kms(dir: &Path, clock: Arc<dyn Clock>) -> Result<Kms, Error> {
    let store = Arc::new(SqliteStore::open(&dir.join("keyward.db"))?);
    let (root, _) = AesRootKey::load_or_create_file(&dir.join("root.key"))?;
    Kms::open(store, Box::new(root), clock, KmsConfig::default())
}
