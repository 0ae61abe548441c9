//! Several KMS nodes over one store: scheduled work is done exactly once between them,
//! and a change made through one node (disable, alias, policy, rotation) reaches
//! another's caches at its next refresh.
//! Over SQLite (two connections to one file) and over PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use keyward_kms::{CreateKeyRequest, EncryptionContext, Error, Kms, ManualClock};

const NODES: usize = 3;
const DAY: i64 = 86_400;

fn nodes(db: &common::Db, clock: &Arc<ManualClock>) -> Vec<Kms> {
    (0..NODES)
        .map(|_| db.open_kms(clock.clone()).unwrap())
        .collect()
}

#[test]
fn scheduled_work_runs_once_across_nodes() {
    scheduled_work_once(&common::Db::sqlite().unwrap());
}

#[test]
fn scheduled_work_runs_once_across_nodes_postgres() {
    let Some(db) = common::Db::postgres() else {
        return;
    };
    scheduled_work_once(&db);
}

fn scheduled_work_once(db: &common::Db) {
    let clock = Arc::new(ManualClock::new(1_800_000_000));
    let nodes = nodes(db, &clock);
    let make = || {
        nodes[0]
            .create_key(&CreateKeyRequest::default())
            .unwrap()
            .key_id
    };
    let rotating: Vec<String> = (0..12).map(|_| make()).collect();
    for k in &rotating {
        nodes[0].enable_key_rotation(k, Some(90)).unwrap();
    }
    let doomed: Vec<String> = (0..12).map(|_| make()).collect();
    for k in &doomed {
        nodes[1].schedule_key_deletion(k, Some(7)).unwrap();
    }
    // One deletion is cancelled on another node before the window ends: it must live.
    nodes[2].cancel_key_deletion(&doomed[0]).unwrap();
    clock.advance(91 * DAY);

    let done: Vec<(usize, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .map(|kms| s.spawn(move || kms.run_due_work().unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let rotated: usize = done.iter().map(|d| d.0).sum();
    let destroyed: usize = done.iter().map(|d| d.1).sum();
    assert_eq!(rotated, rotating.len(), "rotations across nodes: {done:?}");
    assert_eq!(
        destroyed,
        doomed.len() - 1,
        "destructions across nodes: {done:?}"
    );
    for k in &rotating {
        assert_eq!(
            nodes[1].list_key_rotations(k).unwrap().len(),
            1,
            "key {k} was not rotated exactly once"
        );
    }
    assert!(nodes[0].describe_key(&doomed[0]).is_ok());
    for k in &doomed[1..] {
        assert!(matches!(nodes[2].describe_key(k), Err(Error::NotFound(_))));
    }
    // Nothing is due any more, on any node.
    for kms in &nodes {
        assert_eq!(kms.run_due_work().unwrap(), (0, 0));
    }
}

#[test]
fn a_change_through_one_node_reaches_another_at_its_refresh() {
    change_reaches_other_nodes(&common::Db::sqlite().unwrap());
}

#[test]
fn a_change_through_one_node_reaches_another_at_its_refresh_postgres() {
    let Some(db) = common::Db::postgres() else {
        return;
    };
    change_reaches_other_nodes(&db);
}

fn change_reaches_other_nodes(db: &common::Db) {
    let clock = Arc::new(ManualClock::new(1_800_000_000));
    let nodes = nodes(db, &clock);
    let (a, b) = (&nodes[0], &nodes[1]);
    let ctx = EncryptionContext::new();
    let key = a.create_key(&CreateKeyRequest::default()).unwrap().key_id;
    a.create_alias("alias/shared", &key).unwrap();
    b.refresh().unwrap();
    // B's caches are warm.
    let blob = b
        .encrypt("alias/shared", b"card", &ctx)
        .unwrap()
        .ciphertext_blob;
    assert!(!b.refresh().unwrap(), "nothing changed, nothing dropped");

    a.disable_key(&key).unwrap();
    assert!(b.refresh().unwrap());
    assert!(matches!(
        b.encrypt("alias/shared", b"card", &ctx),
        Err(Error::Disabled(_))
    ));
    assert!(matches!(
        b.decrypt(&blob, &ctx, None),
        Err(Error::Disabled(_))
    ));

    a.enable_key(&key).unwrap();
    let other = a.create_key(&CreateKeyRequest::default()).unwrap().key_id;
    a.update_alias("alias/shared", &other).unwrap();
    assert!(b.refresh().unwrap());
    assert!(
        b.encrypt("alias/shared", b"card", &ctx)
            .unwrap()
            .key_id
            .ends_with(&other),
        "the alias still points at the old key on node B"
    );
    assert_eq!(
        &b.decrypt(&blob, &ctx, None).unwrap().plaintext[..],
        b"card"
    );

    // A new policy through A: B authorizes by it once it refreshes.
    let only = |who: &str| keyward_kms::policy::default_policy(&["admin"], &[who]);
    a.put_key_policy(&key, "default", &only("alice")).unwrap();
    b.refresh().unwrap();
    b.authorize("alice", "Encrypt", &key, &ctx).unwrap();
    a.put_key_policy(&key, "default", &only("bob")).unwrap();
    assert!(b.refresh().unwrap());
    assert!(matches!(
        b.authorize("alice", "Encrypt", &key, &ctx),
        Err(Error::AccessDenied(_))
    ));
    b.authorize("bob", "Encrypt", &key, &ctx).unwrap();

    // A rotation on A: B encrypts under the new version once it refreshes.
    a.rotate_key_on_demand(&key).unwrap();
    assert!(b.refresh().unwrap());
    assert_eq!(b.encrypt(&key, b"card", &ctx).unwrap().key_version, 2);
}
