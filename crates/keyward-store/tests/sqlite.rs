//! The store contract on SQLite, plus what is particular to the SQLite file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;

use keyward_store::{SqliteStore, Store};

fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("keyward.db")).unwrap();
    (dir, store)
}

#[test]
fn keys_versions_and_generations() {
    suite::keys_versions_and_generations(&open().1);
}

#[test]
fn listing_aliases_and_tags() {
    suite::listing_aliases_and_tags(&open().1);
}

#[test]
fn destroy_removes_material() {
    suite::destroy_removes_material(&open().1);
}

#[test]
fn access_keys() {
    suite::access_keys(&open().1);
}

#[test]
fn meta_is_set_once() {
    suite::meta_is_set_once(&open().1);
}

#[test]
fn certificates_and_revocation() {
    suite::certificates_and_revocation(&open().1);
}

/// Destroyed material must leave the files themselves, not just the tables.
#[test]
fn destroyed_material_is_gone_from_every_file() {
    let (dir, store) = open();
    let material = b"\x8b\x17wrapped-material-that-must-vanish\x91\x03";
    store
        .create_key(&suite::key("gone"), &suite::version("gone", 1, material))
        .unwrap();
    for i in 0..50 {
        let id = format!("other-{i}");
        store
            .create_key(&suite::key(&id), &suite::version(&id, 1, b"filler"))
            .unwrap();
    }
    assert!(files_contain(dir.path(), material));
    store.destroy_key("gone", 1).unwrap();
    assert!(
        !files_contain(dir.path(), material),
        "destroyed material still in the data directory"
    );
}

fn files_contain(dir: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|e| {
        let bytes = std::fs::read(e.unwrap().path()).unwrap_or_default();
        bytes.windows(needle.len()).any(|w| w == needle)
    })
}

#[test]
fn reopening_keeps_everything_and_newer_schemas_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyward.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        store
            .create_key(&suite::key("k"), &suite::version("k", 1, b"w"))
            .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.key("k").unwrap(), Some(suite::key("k")));
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    assert!(matches!(
        SqliteStore::open(&path),
        Err(keyward_store::StoreError::Corrupt(_))
    ));
}

#[test]
fn audit_rows_append_page_and_undo() {
    suite::audit_rows_append_page_and_undo(&open().1);
}

#[test]
fn snapshot_and_restore_round_trip() {
    let (_a, source) = open();
    let (_b, target) = open();
    suite::snapshot_and_restore_round_trip(&source, &target);
}

#[test]
fn restore_refuses_any_non_empty_store() {
    let (_a, meta_only) = open();
    let (_b, audit_only) = open();
    suite::restore_refuses_any_non_empty_store(&meta_only, &audit_only);
}

/// A snapshot taken while another connection writes sees one moment: every version it
/// holds belongs to a key it holds, at that key's current version or before.
#[test]
fn snapshot_is_consistent_while_another_connection_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyward.db");
    let writer = std::sync::Arc::new(SqliteStore::open(&path).unwrap());
    let reader = SqliteStore::open(&path).unwrap();
    let w = writer.clone();
    let handle = std::thread::spawn(move || {
        for i in 0..200 {
            let id = format!("k{i:03}");
            w.create_key(&suite::key(&id), &suite::version(&id, 1, b"w"))
                .unwrap();
        }
    });
    for _ in 0..20 {
        let s = reader.snapshot().unwrap();
        assert_eq!(s.keys.len(), s.versions.len());
        for (k, v) in s.keys.iter().zip(&s.versions) {
            assert_eq!(k.key_id, v.key_id);
        }
    }
    handle.join().unwrap();
    assert_eq!(reader.snapshot().unwrap().keys.len(), 200);
}

#[test]
fn changes_count_every_change() {
    suite::changes_count_every_change(&open().1);
}

#[test]
fn audit_chained_appends_follow_the_tail() {
    suite::audit_chained_appends_follow_the_tail(&open().1);
}
