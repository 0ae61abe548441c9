//! The store contract, written once against `&dyn Store` and run for every backend.

use keyward_store::{
    AccessKey, Alias, AuditRow, CertificateRecord, KeyRecord, KeyState, RotationType, Snapshot,
    Store, StoreError, VersionRecord,
};

pub(crate) fn key(id: &str) -> KeyRecord {
    KeyRecord {
        key_id: id.to_owned(),
        created_at: 1_700_000_000,
        description: "test key".to_owned(),
        state: KeyState::Enabled,
        deletion_date: None,
        pending_window_days: None,
        rotation_period_days: None,
        next_rotation: None,
        current_version: 1,
        on_demand_rotations: 0,
        policy: None,
        destroyed: false,
        generation: 1,
    }
}

pub(crate) fn version(id: &str, v: u32, wrapped: &[u8]) -> VersionRecord {
    VersionRecord {
        key_id: id.to_owned(),
        version: v,
        material_id: format!("{v:064x}"),
        wrapped: wrapped.to_vec(),
        created_at: 1_700_000_000 + i64::from(v),
        rotation: (v > 1).then_some(RotationType::OnDemand),
    }
}

pub(crate) fn keys_versions_and_generations(store: &dyn Store) {
    let k = key("k1");
    store
        .create_key(&k, &version("k1", 1, b"wrapped-1"))
        .unwrap();
    assert!(matches!(
        store.create_key(&k, &version("k1", 1, b"x")),
        Err(StoreError::AlreadyExists)
    ));
    assert_eq!(store.key("k1").unwrap(), Some(k.clone()));
    assert_eq!(store.key("nope").unwrap(), None);

    // An update must name the next generation; a stale writer gets Conflict.
    let mut disabled = k.clone();
    disabled.state = KeyState::Disabled;
    disabled.generation = 2;
    store.update_key(&disabled).unwrap();
    let mut stale = k.clone();
    stale.description = "lost update".to_owned();
    stale.generation = 2;
    assert!(matches!(
        store.update_key(&stale),
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.key("k1").unwrap().unwrap().state, KeyState::Disabled);

    // Rotation adds a version and moves the key in one transaction.
    let mut rotated = disabled.clone();
    rotated.current_version = 2;
    rotated.generation = 3;
    store
        .rotate_key(&rotated, &version("k1", 2, b"wrapped-2"))
        .unwrap();
    // A conflicting rotation adds nothing.
    assert!(matches!(
        store.rotate_key(&rotated, &version("k1", 3, b"w3")),
        Err(StoreError::Conflict)
    ));
    let vs = store.versions("k1").unwrap();
    assert_eq!(vs.iter().map(|v| v.version).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(
        store.version("k1", 2).unwrap().unwrap().wrapped,
        b"wrapped-2"
    );
    assert_eq!(store.version("k1", 3).unwrap(), None);

    let mut missing = key("missing");
    missing.generation = 2;
    assert!(matches!(
        store.update_key(&missing),
        Err(StoreError::NotFound)
    ));
}

pub(crate) fn listing_aliases_and_tags(store: &dyn Store) {
    for id in ["a", "b", "c"] {
        store.create_key(&key(id), &version(id, 1, b"w")).unwrap();
    }
    let page = store.keys(None, 2).unwrap();
    assert_eq!(
        page.iter().map(|k| k.key_id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    let rest = store.keys(Some("b"), 10).unwrap();
    assert_eq!(
        rest.iter().map(|k| k.key_id.as_str()).collect::<Vec<_>>(),
        ["c"]
    );

    let alias = Alias {
        name: "alias/x".into(),
        key_id: "a".into(),
        created_at: 1,
        updated_at: 1,
    };
    store.create_alias(&alias).unwrap();
    assert!(matches!(
        store.create_alias(&alias),
        Err(StoreError::AlreadyExists)
    ));
    store.update_alias("alias/x", "b", 2).unwrap();
    assert_eq!(store.alias("alias/x").unwrap().unwrap().key_id, "b");
    assert_eq!(store.aliases(Some("b"), None, 10).unwrap().len(), 1);
    assert!(store.aliases(Some("a"), None, 10).unwrap().is_empty());
    store.delete_alias("alias/x").unwrap();
    assert!(matches!(
        store.delete_alias("alias/x"),
        Err(StoreError::NotFound)
    ));

    store
        .tag(
            "a",
            &[("env".into(), "prod".into()), ("team".into(), "x".into())],
        )
        .unwrap();
    store.tag("a", &[("env".into(), "dev".into())]).unwrap();
    store.untag("a", &["team".into()]).unwrap();
    assert_eq!(
        store.tags("a").unwrap(),
        [("env".to_owned(), "dev".to_owned())]
    );
}

pub(crate) fn destroy_removes_material(store: &dyn Store) {
    store
        .create_key(&key("d"), &version("d", 1, b"material-of-d"))
        .unwrap();
    let alias = Alias {
        name: "alias/d".into(),
        key_id: "d".into(),
        created_at: 1,
        updated_at: 1,
    };
    store.create_alias(&alias).unwrap();
    // Decided on a record that has changed since: refused, nothing destroyed.
    assert!(matches!(
        store.destroy_key("d", 0),
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.versions("d").unwrap().len(), 1);
    assert!(matches!(
        store.destroy_key("nope", 1),
        Err(StoreError::NotFound)
    ));
    store.destroy_key("d", 1).unwrap();
    // A second destruction (another node's, decided on the same record) is refused.
    assert!(matches!(
        store.destroy_key("d", 1),
        Err(StoreError::Conflict)
    ));
    assert!(store.versions("d").unwrap().is_empty());
    assert_eq!(store.alias("alias/d").unwrap(), None);
    assert!(store.key("d").unwrap().unwrap().destroyed);
    assert!(
        store
            .keys(None, 10)
            .unwrap()
            .iter()
            .all(|k| k.key_id != "d")
    );
}

pub(crate) fn meta_is_set_once(store: &dyn Store) {
    assert_eq!(store.meta("root").unwrap(), None);
    assert_eq!(store.init_meta("root", b"first").unwrap(), b"first");
    assert_eq!(store.init_meta("root", b"second").unwrap(), b"first");
    assert_eq!(store.meta("root").unwrap().as_deref(), Some(&b"first"[..]));
    store.set_meta("root", b"third").unwrap();
    assert_eq!(store.meta("root").unwrap().as_deref(), Some(&b"third"[..]));
    store.set_meta("other", b"x").unwrap();
    assert_eq!(store.meta("other").unwrap().as_deref(), Some(&b"x"[..]));
}

pub(crate) fn certificates_and_revocation(store: &dyn Store) {
    let cert = |serial: &str, not_after: i64| CertificateRecord {
        serial: serial.into(),
        subject: format!("spiffe://td/{serial}"),
        not_before: 0,
        not_after,
        issued_at: 0,
        revoked_at: None,
        der: vec![1, 2, 3],
    };
    for (serial, not_after) in [("0a", 100), ("0b", 200), ("0c", 300)] {
        store.record_certificate(&cert(serial, not_after)).unwrap();
    }
    assert!(matches!(
        store.record_certificate(&cert("0a", 1)),
        Err(StoreError::AlreadyExists)
    ));
    assert_eq!(store.certificate("0b").unwrap(), Some(cert("0b", 200)));
    assert_eq!(store.certificate("ff").unwrap(), None);
    let page = store.certificates(Some("0a"), 1).unwrap();
    assert_eq!(page, [cert("0b", 200)]);
    assert!(store.revoked_certificates(0).unwrap().is_empty());
    store.revoke_certificate("0a", 50).unwrap();
    store.revoke_certificate("0c", 60).unwrap();
    assert!(matches!(
        store.revoke_certificate("0a", 70),
        Err(StoreError::AlreadyExists)
    ));
    assert!(matches!(
        store.revoke_certificate("ff", 70),
        Err(StoreError::NotFound)
    ));
    let revoked: Vec<_> = store
        .revoked_certificates(0)
        .unwrap()
        .into_iter()
        .map(|c| (c.serial, c.revoked_at))
        .collect();
    assert_eq!(revoked, [("0a".into(), Some(50)), ("0c".into(), Some(60))]);
    // An expired certificate leaves the list.
    let revoked = store.revoked_certificates(150).unwrap();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].serial, "0c");
}

pub(crate) fn access_keys(store: &dyn Store) {
    let k = AccessKey {
        access_key_id: "KWAK1".into(),
        principal: "admin".into(),
        wrapped: b"w".to_vec(),
        created_at: 1,
    };
    store.create_access_key(&k).unwrap();
    assert!(matches!(
        store.create_access_key(&k),
        Err(StoreError::AlreadyExists)
    ));
    assert_eq!(store.access_key("KWAK1").unwrap(), Some(k.clone()));
    assert_eq!(store.access_keys().unwrap(), [k]);
    store.delete_access_key("KWAK1").unwrap();
    assert_eq!(store.access_key("KWAK1").unwrap(), None);
    assert!(matches!(
        store.delete_access_key("KWAK1"),
        Err(StoreError::NotFound)
    ));
}

pub(crate) fn audit_rows_append_page_and_undo(store: &dyn Store) {
    use keyward_store::AuditRow;
    let row = |seq: u64| AuditRow {
        seq,
        time_ms: 1000 + seq as i64,
        line: format!("{{\"seq\":{seq}}}"),
    };
    assert_eq!(store.audit_tail().unwrap(), None);
    let first: Vec<_> = (1..=3).map(row).collect();
    store.append_audit(&first, None).unwrap();
    store.append_audit(&[row(4)], Some(&row(4))).unwrap();
    assert_eq!(store.audit_tail().unwrap(), Some(row(4)));
    let lines = |rows: Vec<AuditRow>| -> Vec<(u64, String)> {
        rows.into_iter().map(|r| (r.seq, r.line)).collect()
    };
    let want =
        |seqs: &[u64]| -> Vec<(u64, String)> { seqs.iter().map(|s| (*s, row(*s).line)).collect() };
    assert_eq!(lines(store.audit_records(1, 2).unwrap()), want(&[2, 3]));
    assert_eq!(
        lines(store.audit_records(0, 100).unwrap()),
        want(&[1, 2, 3, 4])
    );
    assert_eq!(store.audit_checkpoints().unwrap().len(), 1);
    // A sequence number stored twice is refused whole: nothing of the batch remains.
    assert!(store.append_audit(&[row(5), row(4)], None).is_err());
    assert_eq!(store.audit_tail().unwrap(), Some(row(4)));
    // A gap is refused too.
    assert!(store.append_audit(&[row(6)], None).is_err());
    // Undo back to 2 records (inside the first batch) and no checkpoint.
    store.truncate_audit(2, 0).unwrap();
    assert_eq!(lines(store.audit_records(0, 100).unwrap()), want(&[1, 2]));
    assert_eq!(store.audit_tail().unwrap().map(|r| r.seq), Some(2));
    assert!(store.audit_checkpoints().unwrap().is_empty());
    store.append_audit(&[row(3)], None).unwrap();
    assert_eq!(
        lines(store.audit_records(0, 100).unwrap()),
        want(&[1, 2, 3])
    );
    let mut k = key("counted");
    store.create_key(&k, &version("counted", 1, b"w")).unwrap();
    k.state = KeyState::Disabled;
    k.generation = 2;
    store.update_key(&k).unwrap();
    store
        .create_key(&key("other"), &version("other", 1, b"w"))
        .unwrap();
    assert_eq!(
        store.key_counts().unwrap(),
        vec![("Disabled".to_owned(), 1), ("Enabled".to_owned(), 1)]
    );
}

/// Fills `store` with one of everything a snapshot carries: keys (one rotated, one
/// destroyed, one with a policy), aliases, tags, meta, an access key, certificates (one
/// revoked) and an audit log with a checkpoint.
pub(crate) fn fill_for_snapshot(store: &dyn Store) {
    store
        .create_key(&key("a"), &version("a", 1, b"wrapped-a1"))
        .unwrap();
    let mut rotated = key("a");
    rotated.current_version = 2;
    rotated.on_demand_rotations = 1;
    rotated.generation = 2;
    store
        .rotate_key(&rotated, &version("a", 2, b"wrapped-a2"))
        .unwrap();
    let mut with_policy = key("b");
    with_policy.policy = Some(r#"{"Statement":[]}"#.into());
    with_policy.state = KeyState::Disabled;
    store
        .create_key(&with_policy, &version("b", 1, b"\x00\xffbinary"))
        .unwrap();
    store
        .create_key(&key("gone"), &version("gone", 1, b"w"))
        .unwrap();
    store.destroy_key("gone", 1).unwrap();
    for (name, target) in [("alias/one", "a"), ("alias/two", "b")] {
        store
            .create_alias(&Alias {
                name: name.into(),
                key_id: target.into(),
                created_at: 5,
                updated_at: 6,
            })
            .unwrap();
    }
    store
        .tag(
            "a",
            &[("env".into(), "prod".into()), ("team".into(), "pay".into())],
        )
        .unwrap();
    store.init_meta("root-key-check", b"\x01check").unwrap();
    store.init_meta("pki-ca", b"{\"ca\":1}").unwrap();
    store
        .create_access_key(&AccessKey {
            access_key_id: "KWAK1".into(),
            principal: "admin".into(),
            wrapped: b"sealed".to_vec(),
            created_at: 1,
        })
        .unwrap();
    for serial in ["0a", "0b"] {
        store
            .record_certificate(&CertificateRecord {
                serial: serial.into(),
                subject: "spiffe://td/x".into(),
                not_before: 0,
                not_after: 100,
                issued_at: 0,
                revoked_at: None,
                der: vec![0x30, 1, 2],
            })
            .unwrap();
    }
    store.revoke_certificate("0b", 50).unwrap();
    let rows: Vec<AuditRow> = (1..=5)
        .map(|seq| AuditRow {
            seq,
            time_ms: 1000 + seq as i64,
            line: format!("record {seq}"),
        })
        .collect();
    let checkpoint = AuditRow {
        seq: 3,
        time_ms: 0,
        line: "checkpoint 3".into(),
    };
    store.append_audit(&rows[..3], Some(&checkpoint)).unwrap();
    store.append_audit(&rows[3..], None).unwrap();
}

/// A snapshot of `source` (filled by [`fill_for_snapshot`]) restored into the empty
/// `target` gives back the same records; a second restore, into what is now not empty,
/// is refused and changes nothing.
pub(crate) fn snapshot_and_restore_round_trip(source: &dyn Store, target: &dyn Store) {
    assert!(source.is_empty().unwrap());
    fill_for_snapshot(source);
    assert!(!source.is_empty().unwrap());
    let snapshot = source.snapshot().unwrap();
    assert_eq!(
        snapshot
            .keys
            .iter()
            .map(|k| k.key_id.as_str())
            .collect::<Vec<_>>(),
        ["a", "b", "gone"]
    );
    assert!(snapshot.keys[2].destroyed);
    assert_eq!(snapshot.versions.len(), 3);
    assert_eq!(snapshot.versions[1].wrapped, b"wrapped-a2");
    assert_eq!(snapshot.aliases.len(), 2);
    assert_eq!(snapshot.tags.len(), 2);
    assert_eq!(snapshot.meta.len(), 2);
    assert_eq!(snapshot.access_keys.len(), 1);
    assert_eq!(snapshot.certificates[1].revoked_at, Some(50));
    let tail = snapshot.audit_tail.clone().unwrap();
    assert_eq!((tail.seq, tail.line.as_str()), (5, "record 5"));
    let checkpoint = snapshot.audit_checkpoint.clone().unwrap();
    assert_eq!(
        (checkpoint.seq, checkpoint.line.as_str()),
        (3, "checkpoint 3")
    );
    // Debug shows counts, never the sealed values.
    let shown = format!("{snapshot:?}");
    assert!(
        !shown.contains("sealed") && !shown.contains("wrapped-a"),
        "{shown}"
    );

    assert!(target.is_empty().unwrap());
    target.restore(&snapshot).unwrap();
    let again = target.snapshot().unwrap();
    assert_eq!(again.meta, snapshot.meta);
    assert_eq!(again.keys, snapshot.keys);
    assert_eq!(again.versions, snapshot.versions);
    assert_eq!(again.aliases, snapshot.aliases);
    assert_eq!(again.tags, snapshot.tags);
    assert_eq!(again.access_keys, snapshot.access_keys);
    assert_eq!(again.certificates, snapshot.certificates);
    // The audit log is not restored: the restored instance starts its own chain.
    assert_eq!(again.audit_tail, None);
    assert_eq!(again.audit_checkpoint, None);
    // Through the ordinary reads too.
    assert_eq!(target.key("a").unwrap().unwrap().current_version, 2);
    assert_eq!(target.versions("a").unwrap().len(), 2);
    assert_eq!(target.alias("alias/two").unwrap().unwrap().key_id, "b");
    assert_eq!(target.tags("a").unwrap().len(), 2);
    assert_eq!(target.revoked_certificates(10).unwrap().len(), 1);
    assert_eq!(target.keys(None, 10).unwrap().len(), 2);

    // Not empty any more: refused, nothing added or changed.
    let mut other = Snapshot::default();
    other.meta.push(("other".into(), b"x".to_vec()));
    other.keys.push(key("z"));
    assert!(matches!(target.restore(&other), Err(StoreError::NotEmpty)));
    assert!(matches!(
        target.restore(&snapshot),
        Err(StoreError::NotEmpty)
    ));
    assert_eq!(target.snapshot().unwrap(), again);
    assert_eq!(target.meta("other").unwrap(), None);
}

/// A store with only a meta value, or only audit records, is not empty either.
pub(crate) fn restore_refuses_any_non_empty_store(meta_only: &dyn Store, audit_only: &dyn Store) {
    let mut snapshot = Snapshot::default();
    snapshot.keys.push(key("k"));
    snapshot.versions.push(version("k", 1, b"w"));
    meta_only.init_meta("root-key-check", b"c").unwrap();
    audit_only
        .append_audit(
            &[AuditRow {
                seq: 1,
                time_ms: 1,
                line: "r".into(),
            }],
            None,
        )
        .unwrap();
    for store in [meta_only, audit_only] {
        assert!(!store.is_empty().unwrap());
        assert!(matches!(
            store.restore(&snapshot),
            Err(StoreError::NotEmpty)
        ));
        assert_eq!(store.key("k").unwrap(), None);
    }
}

/// Every change but the audit log's moves the changes counter on; reads and audit
/// appends do not.
pub(crate) fn changes_count_every_change(store: &dyn Store) {
    let mut last = store.changes().unwrap();
    let mut moved = |what: &str| {
        let now = store.changes().unwrap();
        assert!(now > last, "{what} did not move the changes counter");
        last = now;
    };
    let mut k = key("c");
    store.create_key(&k, &version("c", 1, b"w")).unwrap();
    moved("create_key");
    k.state = KeyState::Disabled;
    k.generation = 2;
    store.update_key(&k).unwrap();
    moved("update_key");
    k.generation = 3;
    k.current_version = 2;
    store.rotate_key(&k, &version("c", 2, b"w2")).unwrap();
    moved("rotate_key");
    let alias = Alias {
        name: "alias/c".into(),
        key_id: "c".into(),
        created_at: 1,
        updated_at: 1,
    };
    store.create_alias(&alias).unwrap();
    moved("create_alias");
    store.update_alias("alias/c", "c", 2).unwrap();
    moved("update_alias");
    store.delete_alias("alias/c").unwrap();
    moved("delete_alias");
    store.tag("c", &[("t".into(), "v".into())]).unwrap();
    moved("tag");
    store.untag("c", &["t".into()]).unwrap();
    moved("untag");
    store.set_meta("m", b"v").unwrap();
    moved("set_meta");
    store
        .create_access_key(&AccessKey {
            access_key_id: "KWAKC".into(),
            principal: "p".into(),
            wrapped: b"w".to_vec(),
            created_at: 1,
        })
        .unwrap();
    moved("create_access_key");
    store.delete_access_key("KWAKC").unwrap();
    moved("delete_access_key");
    store.destroy_key("c", 3).unwrap();
    moved("destroy_key");
    // Reads and the audit log leave it alone.
    store.key("c").unwrap();
    store
        .append_audit(
            &[keyward_store::AuditRow {
                seq: 1,
                time_ms: 1,
                line: "{}".into(),
            }],
            None,
        )
        .unwrap();
    assert_eq!(store.changes().unwrap(), last);
}

/// Chained appends see the last record and checkpoint, and store what the chainer made
/// of them; a chainer's error stores nothing.
pub(crate) fn audit_chained_appends_follow_the_tail(store: &dyn Store) {
    use keyward_store::AuditRow;
    let row = |seq: u64| AuditRow {
        seq,
        time_ms: seq as i64,
        line: format!("r{seq}"),
    };
    let mut seen = Vec::new();
    for n in [2u64, 1, 3] {
        store
            .append_audit_chained(&mut |tail, checkpoint| {
                seen.push((
                    tail.map(|t| t.line.clone()),
                    checkpoint.map(|c| c.line.clone()),
                ));
                let after = tail.map_or(0, |t| t.seq);
                let records: Vec<_> = (after + 1..=after + n).map(row).collect();
                let checkpoint = (n == 1).then(|| AuditRow {
                    seq: after + 1,
                    time_ms: 0,
                    line: format!("c{}", after + 1),
                });
                Ok((records, checkpoint))
            })
            .unwrap();
    }
    assert_eq!(
        seen,
        vec![
            (None, None),
            (Some("r2".into()), None),
            (Some("r3".into()), Some("c3".into())),
        ]
    );
    assert!(
        store
            .append_audit_chained(&mut |_, _| Err(StoreError::Corrupt("refused")))
            .is_err()
    );
    let all = store.audit_records(0, 100).unwrap();
    assert_eq!(
        all.iter().map(|r| r.line.as_str()).collect::<Vec<_>>(),
        ["r1", "r2", "r3", "r4", "r5", "r6"]
    );
    assert_eq!(
        store.audit_tail().unwrap().map(|r| r.line),
        Some("r6".into())
    );
    assert_eq!(store.audit_checkpoints().unwrap().len(), 1);
}
