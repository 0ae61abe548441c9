//! The store contract on PostgreSQL, plus what is particular to a shared server:
//! restarts, several nodes (pools) writing at once, passwords in URLs.
//!
//! Each test starts its own throwaway cluster (keyward-testpg); without PostgreSQL
//! installed they say SKIPPED and pass, except under CI=true.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;

use std::sync::{Arc, Barrier};

use keyward_store::{AuditRow, DatabaseUrl, PostgresStore, Store, StoreError};
use keyward_testpg::PgCluster;

fn open(pg: &PgCluster) -> PostgresStore {
    PostgresStore::open(&DatabaseUrl::parse(&pg.url()).unwrap()).unwrap()
}

/// A cluster and a store on it, or `None` to skip.
fn store() -> Option<(PgCluster, PostgresStore)> {
    let pg = PgCluster::start()?;
    let store = open(&pg);
    Some((pg, store))
}

#[test]
fn keys_versions_and_generations() {
    let Some((_pg, store)) = store() else { return };
    suite::keys_versions_and_generations(&store);
}

#[test]
fn listing_aliases_and_tags() {
    let Some((_pg, store)) = store() else { return };
    suite::listing_aliases_and_tags(&store);
}

#[test]
fn destroy_removes_material() {
    let Some((_pg, store)) = store() else { return };
    suite::destroy_removes_material(&store);
}

#[test]
fn access_keys() {
    let Some((_pg, store)) = store() else { return };
    suite::access_keys(&store);
}

#[test]
fn meta_is_set_once() {
    let Some((_pg, store)) = store() else { return };
    suite::meta_is_set_once(&store);
}

#[test]
fn certificates_and_revocation() {
    let Some((_pg, store)) = store() else { return };
    suite::certificates_and_revocation(&store);
}

#[test]
fn audit_rows_append_page_and_undo() {
    let Some((_pg, store)) = store() else { return };
    suite::audit_rows_append_page_and_undo(&store);
}

#[test]
fn reopening_keeps_everything_and_newer_schemas_are_refused() {
    let Some((pg, store)) = store() else { return };
    store
        .create_key(&suite::key("k"), &suite::version("k", 1, b"w"))
        .unwrap();
    drop(store);
    let store = open(&pg);
    assert_eq!(store.key("k").unwrap(), Some(suite::key("k")));
    drop(store);
    pg.psql("keyward", "UPDATE keyward_schema SET version = 99");
    assert!(matches!(
        PostgresStore::open(&DatabaseUrl::parse(&pg.url()).unwrap()),
        Err(StoreError::Corrupt(_))
    ));
}

/// Deleted rows linger in a table's pages; destruction must rewrite them away.
#[test]
fn destroyed_material_leaves_the_table_files() {
    let Some((pg, store)) = store() else { return };
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
    pg.psql("keyward", "CHECKPOINT");
    let base = pg.data_dir().join("base");
    assert!(files_contain(&base, material));
    store.destroy_key("gone", 1).unwrap();
    pg.psql("keyward", "CHECKPOINT");
    assert!(
        !files_contain(&base, material),
        "destroyed material still in a table file"
    );
    assert_eq!(store.versions("other-7").unwrap().len(), 1);
}

fn files_contain(dir: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|e| {
        let path = e.unwrap().path();
        if path.is_dir() {
            return files_contain(&path, needle);
        }
        let bytes = std::fs::read(&path).unwrap_or_default();
        bytes.windows(needle.len()).any(|w| w == needle)
    })
}

#[test]
fn reconnects_after_a_restart() {
    let Some((pg, store)) = store() else { return };
    store
        .create_key(&suite::key("before"), &suite::version("before", 1, b"w"))
        .unwrap();
    pg.restart();
    // A read first: its pooled connection is dead, and a fresh one serves it.
    assert_eq!(store.key("before").unwrap(), Some(suite::key("before")));
    pg.restart();
    // A write first: the dead connection fails at BEGIN, before anything was done.
    store
        .create_key(&suite::key("after"), &suite::version("after", 1, b"w"))
        .unwrap();
    assert_eq!(store.keys(None, 10).unwrap().len(), 2);
}

#[test]
fn works_from_tokio_blocking_threads_and_plain_threads() {
    let Some((_pg, store)) = store() else { return };
    let store = Arc::new(store);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let s = store.clone();
    let found = runtime.block_on(async move {
        tokio::task::spawn_blocking(move || {
            s.create_key(&suite::key("b"), &suite::version("b", 1, b"w"))?;
            s.key("b")
        })
        .await
        .unwrap()
    });
    assert_eq!(found.unwrap(), Some(suite::key("b")));
    let s = store.clone();
    let plain = std::thread::spawn(move || s.key("b").unwrap())
        .join()
        .unwrap();
    assert_eq!(plain, Some(suite::key("b")));
    drop(runtime);
}

/// Two nodes (two pools) race to update one key from the same generation, again and
/// again: each round exactly one wins and the others get Conflict.
#[test]
fn concurrent_conflicting_updates_from_two_pools_one_wins() {
    let Some((pg, a)) = store() else { return };
    let b = open(&pg);
    let stores: [Arc<dyn Store>; 2] = [Arc::new(a), Arc::new(b)];
    stores[0]
        .create_key(&suite::key("hot"), &suite::version("hot", 1, b"w"))
        .unwrap();
    const WRITERS: usize = 6;
    for round in 2..12u64 {
        let barrier = Arc::new(Barrier::new(WRITERS));
        let handles: Vec<_> = (0..WRITERS)
            .map(|i| {
                let store = stores[i % 2].clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let mut k = suite::key("hot");
                    k.generation = round;
                    k.description = format!("writer {i}");
                    barrier.wait();
                    store.update_key(&k)
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let won = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {results:?}");
        assert!(
            results
                .iter()
                .all(|r| r.is_ok() || matches!(r, Err(StoreError::Conflict))),
            "{results:?}"
        );
        assert_eq!(stores[1].key("hot").unwrap().unwrap().generation, round);
    }
}

/// Writers on two pools append to the audit log, each following the tail it read:
/// every record lands exactly once, in one unbroken sequence.
#[test]
fn audit_appends_from_two_pools_never_interleave_or_fork() {
    let Some((pg, a)) = store() else { return };
    let b = open(&pg);
    let stores: [Arc<dyn Store>; 2] = [Arc::new(a), Arc::new(b)];
    const WRITERS: usize = 4;
    const BATCHES: usize = 25;
    let handles: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = stores[w % 2].clone();
            std::thread::spawn(move || {
                let mut refused = 0;
                for n in 0..BATCHES {
                    loop {
                        let tail = store.audit_tail().unwrap().map_or(0, |r| r.seq);
                        let batch: Vec<_> = (1..=3)
                            .map(|i| AuditRow {
                                seq: tail + i,
                                time_ms: 0,
                                line: format!("w{w}-b{n}-r{i}"),
                            })
                            .collect();
                        match store.append_audit(&batch, None) {
                            Ok(()) => break,
                            Err(StoreError::AlreadyExists) => refused += 1,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                refused
            })
        })
        .collect();
    let refused: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let all = stores[0].audit_records(0, 100_000).unwrap();
    assert_eq!(all.len(), WRITERS * BATCHES * 3);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1);
    }
    // Batches stay whole: each writer's three lines sit together, in order.
    for chunk in all.chunks(3) {
        let prefix = chunk[0].line.trim_end_matches("-r1");
        for (i, r) in chunk.iter().enumerate() {
            assert_eq!(r.line, format!("{prefix}-r{}", i + 1));
        }
    }
    let mut lines: Vec<_> = all.iter().map(|r| r.line.clone()).collect();
    lines.sort();
    lines.dedup();
    assert_eq!(lines.len(), all.len());
    eprintln!("{refused} appends refused for following a stale tail, then retried");
}

#[test]
fn the_password_is_in_no_error_and_no_debug_output() {
    let Some((pg, store)) = store() else { return };
    let password = pg.password().to_owned();
    let url = DatabaseUrl::parse(&pg.url()).unwrap();
    for shown in [format!("{url}"), format!("{url:?}"), format!("{store:?}")] {
        assert!(!shown.contains(&password), "{shown}");
        assert!(shown.contains("keyward@127.0.0.1"), "{shown}");
    }
    // A wrong password, a closed port, a malformed URL: none says the password.
    let wrong = pg.url().replace(&password, "not-the-password-3b1f");
    // Port 9 (discard) on loopback: nothing listens there.
    let closed = format!("postgres://keyward:{password}@127.0.0.1:9/keyward");
    for (url, secret) in [
        (wrong, "not-the-password-3b1f"),
        (closed, password.as_str()),
    ] {
        let err = PostgresStore::open(&DatabaseUrl::parse(&url).unwrap()).unwrap_err();
        assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
        for shown in [format!("{err}"), format!("{err:?}")] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
    for bad in [
        "postgres://keyward:hunter2-secret@127.0.0.1:notaport/keyward",
        "postgres://keyward:hunter2-secret@127.0.0.1/keyward?nosuch=1",
        "mysql://keyward:hunter2-secret@127.0.0.1/keyward",
        "postgres://keyward:hunter2-secret@127.0.0.1/keyward?sslmode=require",
    ] {
        let err = DatabaseUrl::parse(bad).unwrap_err();
        assert!(matches!(err, StoreError::InvalidUrl(_)), "{err:?}");
        for shown in [format!("{err}"), format!("{err:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }
}

/// Nodes starting together on a new database: both migrate (one waits for the other's
/// advisory lock) and both open.
#[test]
fn two_nodes_opening_a_new_database_at_once_both_open() {
    let Some(pg) = PgCluster::start() else { return };
    let url = DatabaseUrl::parse(&pg.url()).unwrap();
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                PostgresStore::open(&url).map(drop)
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
    assert_eq!(
        pg.psql("keyward", "SELECT count(*) FROM keyward_schema")
            .trim(),
        "1"
    );
}

/// init_meta and revocation from two pools at once: one value wins everywhere, one
/// revocation succeeds and the rest are told it was revoked already.
#[test]
fn racing_init_meta_and_revocations_from_two_pools() {
    let Some((pg, a)) = store() else { return };
    let b = open(&pg);
    let stores: [Arc<dyn Store>; 2] = [Arc::new(a), Arc::new(b)];
    stores[0]
        .record_certificate(&keyward_store::CertificateRecord {
            serial: "0a".into(),
            subject: "spiffe://td/x".into(),
            not_before: 0,
            not_after: 100,
            issued_at: 0,
            revoked_at: None,
            der: vec![1],
        })
        .unwrap();
    const RACERS: usize = 6;
    let barrier = Arc::new(Barrier::new(RACERS));
    let handles: Vec<_> = (0..RACERS)
        .map(|i| {
            let (store, barrier) = (stores[i % 2].clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let meta = store.init_meta("root", format!("value {i}").as_bytes());
                let revoked = store.revoke_certificate("0a", i as i64);
                (meta.unwrap(), revoked)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let stored = stores[1].meta("root").unwrap().unwrap();
    assert!(results.iter().all(|(m, _)| *m == stored), "{results:?}");
    assert_eq!(results.iter().filter(|(_, r)| r.is_ok()).count(), 1);
    assert!(
        results
            .iter()
            .all(|(_, r)| r.is_ok() || matches!(r, Err(StoreError::AlreadyExists)))
    );
}

#[test]
fn snapshot_and_restore_round_trip() {
    let Some((_pg, source)) = store() else { return };
    let Some((_pg2, target)) = store() else {
        return;
    };
    suite::snapshot_and_restore_round_trip(&source, &target);
}

#[test]
fn restore_refuses_any_non_empty_store() {
    let Some((pg, meta_only)) = store() else {
        return;
    };
    pg.psql("postgres", "CREATE DATABASE other OWNER keyward");
    let url = pg.url();
    let other = format!("{}/other", url.rsplit_once('/').unwrap().0);
    let audit_only = PostgresStore::open(&DatabaseUrl::parse(&other).unwrap()).unwrap();
    suite::restore_refuses_any_non_empty_store(&meta_only, &audit_only);
}

/// Across backends both ways: a PostgreSQL snapshot into SQLite, a SQLite one into
/// PostgreSQL.
#[test]
fn snapshots_restore_across_backends() {
    let Some((_pg, postgres)) = store() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sqlite = keyward_store::SqliteStore::open(&dir.path().join("a.db")).unwrap();
    suite::snapshot_and_restore_round_trip(&postgres, &sqlite);
    let Some((_pg2, postgres2)) = store() else {
        return;
    };
    let sqlite2 = keyward_store::SqliteStore::open(&dir.path().join("b.db")).unwrap();
    suite::snapshot_and_restore_round_trip(&sqlite2, &postgres2);
}

/// A snapshot taken while another pool writes sees one moment.
#[test]
fn snapshot_is_consistent_while_another_node_writes() {
    let Some((pg, reader)) = store() else { return };
    let writer = Arc::new(open(&pg));
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
    let Some((_pg, store)) = store() else { return };
    suite::changes_count_every_change(&store);
}

#[test]
fn audit_chained_appends_follow_the_tail() {
    let Some((_pg, store)) = store() else { return };
    suite::audit_chained_appends_follow_the_tail(&store);
}
