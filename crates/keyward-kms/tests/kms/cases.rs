// The KMS cases run once per store backend: included by kms.rs into a module that
// defines `fn db() -> Option<Db>` (`None`: the backend is not installed, skip).

use std::sync::Arc;

use crate::common::{Db, contains_any, ctx, new_key};
use keyward_kms::{Error, KeyState, Kms, ManualClock};

const DAY: i64 = 86_400;

struct Env {
    db: Db,
    clock: Arc<ManualClock>,
    kms: Kms,
}

fn env() -> Option<Env> {
    let db = db()?;
    let clock = Arc::new(ManualClock::new(1_800_000_000));
    let kms = db.open_kms(clock.clone()).unwrap();
    Some(Env { db, clock, kms })
}

#[test]
fn encrypt_decrypt_with_context_ids_arns_and_aliases() {
    let Some(e) = env() else { return };
    let id = new_key(&e.kms);
    let arn = e.kms.config().key_arn(&id);
    e.kms.create_alias("alias/payments", &id).unwrap();
    let c = ctx(&[("tenant", "a"), ("purpose", "cards")]);
    for key_ref in [
        id.as_str(),
        arn.as_str(),
        "alias/payments",
        &e.kms.config().alias_arn("alias/payments"),
    ] {
        let out = e.kms.encrypt(key_ref, b"4111 1111 1111 1111", &c).unwrap();
        assert_eq!(out.key_id, arn);
        let back = e.kms.decrypt(&out.ciphertext_blob, &c, None).unwrap();
        assert_eq!(&back.plaintext[..], b"4111 1111 1111 1111");
        assert_eq!(back.key_id, arn);
        let named = e
            .kms
            .decrypt(&out.ciphertext_blob, &c, Some(key_ref))
            .unwrap();
        assert_eq!(&named.plaintext[..], b"4111 1111 1111 1111");
    }
}

#[test]
fn fail_changed_context_byte_or_key() {
    let Some(e) = env() else { return };
    let (a, b) = (new_key(&e.kms), new_key(&e.kms));
    let c = ctx(&[("k", "v")]);
    let blob = e.kms.encrypt(&a, b"secret", &c).unwrap().ciphertext_blob;
    for wrong in [
        ctx(&[]),
        ctx(&[("k", "w")]),
        ctx(&[("k", "v"), ("x", "y")]),
        ctx(&[("kv", "")]),
    ] {
        assert!(matches!(
            e.kms.decrypt(&blob, &wrong, None),
            Err(Error::InvalidCiphertext(_))
        ));
    }
    for i in 0..blob.len() {
        let mut m = blob.clone();
        m[i] ^= 0x01;
        let r = e.kms.decrypt(&m, &c, None);
        assert!(
            matches!(r, Err(Error::InvalidCiphertext(_))),
            "byte {i}: {r:?}"
        );
    }
    for n in [0, 1, 48] {
        assert!(e.kms.decrypt(&blob[..n], &c, None).is_err());
    }
    assert!(matches!(
        e.kms.decrypt(&blob, &c, Some(&b)),
        Err(Error::IncorrectKey(_))
    ));
}

#[test]
fn limits_on_sizes() {
    let Some(e) = env() else { return };
    let id = new_key(&e.kms);
    let c = ctx(&[]);
    assert!(matches!(
        e.kms.encrypt(&id, b"", &c),
        Err(Error::Validation(_))
    ));
    assert!(matches!(
        e.kms.encrypt(&id, &[0; 4097], &c),
        Err(Error::Validation(_))
    ));
    assert!(
        e.kms
            .encrypt(&id, &[0; 4096], &c)
            .unwrap()
            .ciphertext_blob
            .len()
            <= 6144
    );
    for n in [0, 1025] {
        assert!(matches!(
            e.kms.generate_data_key(&id, n, &c),
            Err(Error::Validation(_))
        ));
        assert!(matches!(
            e.kms.generate_random(n),
            Err(Error::Validation(_))
        ));
    }
    for n in [1, 16, 32, 1024] {
        let dk = e.kms.generate_data_key(&id, n, &c).unwrap();
        assert_eq!(dk.plaintext.len(), n);
        assert_eq!(
            &e.kms
                .decrypt(&dk.ciphertext_blob, &c, None)
                .unwrap()
                .plaintext[..],
            &dk.plaintext[..]
        );
        let bare = e
            .kms
            .generate_data_key_without_plaintext(&id, n, &c)
            .unwrap();
        assert!(bare.plaintext.is_empty());
        assert_eq!(
            e.kms
                .decrypt(&bare.ciphertext_blob, &c, None)
                .unwrap()
                .plaintext
                .len(),
            n
        );
        assert_eq!(e.kms.generate_random(n).unwrap().len(), n);
    }
    assert!(matches!(
        e.kms.decrypt(&[1; 6145], &c, None),
        Err(Error::Validation(_))
    ));
}

#[test]
fn every_version_decrypts_after_ten_rotations() {
    let Some(e) = env() else { return };
    let id = new_key(&e.kms);
    let c = ctx(&[("v", "x")]);
    let mut blobs = vec![e.kms.encrypt(&id, b"version 1", &c).unwrap()];
    for i in 2..=11 {
        e.kms.rotate_key_on_demand(&id).unwrap();
        blobs.push(
            e.kms
                .encrypt(&id, format!("version {i}").as_bytes(), &c)
                .unwrap(),
        );
    }
    let materials: std::collections::HashSet<_> =
        blobs.iter().map(|b| b.key_material_id.clone()).collect();
    assert_eq!(materials.len(), 11);
    // A fresh KMS on the same directory (cold caches) decrypts them all.
    drop(e.kms);
    let kms = e.db.open_kms(e.clock.clone()).unwrap();
    for (i, b) in blobs.iter().enumerate() {
        let out = kms.decrypt(&b.ciphertext_blob, &c, None).unwrap();
        assert_eq!(&out.plaintext[..], format!("version {}", i + 1).as_bytes());
        assert_eq!(out.key_material_id, b.key_material_id);
    }
    assert_eq!(kms.list_key_rotations(&id).unwrap().len(), 10);
}

#[test]
fn on_demand_rotation_limit_and_automatic_rotation() {
    let Some(e) = env() else { return };
    let id = new_key(&e.kms);
    for _ in 0..25 {
        e.kms.rotate_key_on_demand(&id).unwrap();
    }
    assert!(matches!(
        e.kms.rotate_key_on_demand(&id),
        Err(Error::LimitExceeded(_))
    ));

    let auto = new_key(&e.kms);
    assert!(matches!(
        e.kms.enable_key_rotation(&auto, Some(89)),
        Err(Error::Validation(_))
    ));
    assert!(matches!(
        e.kms.enable_key_rotation(&auto, Some(2561)),
        Err(Error::Validation(_))
    ));
    e.kms.enable_key_rotation(&auto, Some(90)).unwrap();
    let status = e.kms.get_key_rotation_status(&auto).unwrap();
    assert!(status.key_rotation_enabled);
    assert_eq!(status.next_rotation_date, Some(1_800_000_000 + 90 * DAY));
    e.clock.advance(89 * DAY);
    assert_eq!(e.kms.run_due_work().unwrap(), (0, 0));
    e.clock.advance(DAY);
    assert_eq!(e.kms.run_due_work().unwrap(), (1, 0));
    assert_eq!(e.kms.run_due_work().unwrap(), (0, 0));
    e.clock.advance(90 * DAY);
    assert_eq!(e.kms.run_due_work().unwrap(), (1, 0));
    let rotations = e.kms.list_key_rotations(&auto).unwrap();
    assert_eq!(rotations.len(), 2);
    assert!(
        rotations
            .iter()
            .all(|r| r.rotation_type == keyward_kms::RotationType::Automatic)
    );
}

#[test]
fn disabling_takes_effect_at_once_and_deletion_shreds() {
    let Some(e) = env() else { return };
    let id = new_key(&e.kms);
    let c = ctx(&[]);
    let blob = e.kms.encrypt(&id, b"data", &c).unwrap().ciphertext_blob;
    e.kms.disable_key(&id).unwrap();
    assert!(matches!(
        e.kms.encrypt(&id, b"x", &c),
        Err(Error::Disabled(_))
    ));
    assert!(matches!(
        e.kms.decrypt(&blob, &c, None),
        Err(Error::Disabled(_))
    ));
    e.kms.enable_key(&id).unwrap();
    assert!(e.kms.decrypt(&blob, &c, None).is_ok());

    assert!(matches!(
        e.kms.schedule_key_deletion(&id, Some(6)),
        Err(Error::Validation(_))
    ));
    assert!(matches!(
        e.kms.schedule_key_deletion(&id, Some(31)),
        Err(Error::Validation(_))
    ));
    let scheduled = e.kms.schedule_key_deletion(&id, None).unwrap();
    assert_eq!(scheduled.pending_window_in_days, 30);
    assert!(matches!(
        e.kms.decrypt(&blob, &c, None),
        Err(Error::InvalidState(_))
    ));
    e.kms.cancel_key_deletion(&id).unwrap();
    assert_eq!(
        e.kms.describe_key(&id).unwrap().key_state,
        KeyState::Disabled
    );
    e.kms.enable_key(&id).unwrap();

    let material = e.kms.dangerous_export_material_for_tests(&id).unwrap();
    let wrapped: Vec<Vec<u8>> = {
        e.db.store()
            .versions(&id)
            .unwrap()
            .into_iter()
            .map(|v| v.wrapped)
            .collect()
    };
    assert!(!wrapped.is_empty());
    e.kms.schedule_key_deletion(&id, Some(7)).unwrap();
    e.clock.advance(7 * DAY - 1);
    assert_eq!(e.kms.run_due_work().unwrap(), (0, 0));
    e.clock.advance(1);
    assert_eq!(e.kms.run_due_work().unwrap(), (0, 1));
    assert!(matches!(e.kms.describe_key(&id), Err(Error::NotFound(_))));
    assert!(matches!(
        e.kms.decrypt(&blob, &c, None),
        Err(Error::InvalidCiphertext(_))
    ));
    // The material never reached the disk in plain, and its wrapped form is gone from
    // every file of the data directory (database, write-ahead log, shared memory) or,
    // on PostgreSQL, from the table files (its write-ahead log keeps old row images
    // until the segment is recycled: see docs/OPERATIONS.md).
    let gone: Vec<Vec<u8>> = material
        .iter()
        .map(|m| m.to_vec())
        .chain(wrapped.iter().cloned())
        .collect();
    for path in e.db.files(false) {
        let bytes = std::fs::read(&path).unwrap();
        assert!(!contains_any(&bytes, &gone), "{}", path.display());
    }
}

#[test]
fn no_key_material_in_plain_anywhere_in_the_data_directory() {
    let Some(e) = env() else { return };
    let mut secrets = Vec::new();
    for _ in 0..5 {
        let id = new_key(&e.kms);
        e.kms.rotate_key_on_demand(&id).unwrap();
        for dk in 0..5 {
            let out = e
                .kms
                .generate_data_key(&id, 32, &ctx(&[("n", &dk.to_string())]))
                .unwrap();
            secrets.push(out.plaintext.to_vec());
        }
        secrets.extend(
            e.kms
                .dangerous_export_material_for_tests(&id)
                .unwrap()
                .iter()
                .map(|m| m.to_vec()),
        );
    }
    secrets.push(e.db.root_secret());
    for path in e.db.files(true) {
        if path.file_name().is_some_and(|n| n == "root.key") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !contains_any(&bytes, &secrets),
            "plain key material or the root key in {}",
            path.display()
        );
    }
}

#[test]
fn a_different_root_key_is_refused_at_open() {
    let Some(e) = env() else { return };
    new_key(&e.kms);
    drop(e.kms);
    e.db.replace_root_key();
    let r = e.db.open_kms(e.clock.clone());
    assert!(matches!(r, Err(Error::Internal(_))));
}

#[test]
fn re_encrypt_moves_between_keys_and_contexts() {
    let Some(e) = env() else { return };
    let (a, b) = (new_key(&e.kms), new_key(&e.kms));
    let (ca, cb) = (ctx(&[("a", "1")]), ctx(&[("b", "2")]));
    let blob = e.kms.encrypt(&a, b"move me", &ca).unwrap().ciphertext_blob;
    let out = e.kms.re_encrypt(&blob, &ca, Some(&a), &b, &cb).unwrap();
    assert_eq!(out.key_id, e.kms.config().key_arn(&b));
    assert_eq!(
        &e.kms
            .decrypt(&out.ciphertext_blob, &cb, None)
            .unwrap()
            .plaintext[..],
        b"move me"
    );
    assert!(matches!(
        e.kms.re_encrypt(&blob, &cb, None, &b, &cb),
        Err(Error::InvalidCiphertext(_))
    ));
}

#[test]
fn aliases_tags_descriptions_and_listing() {
    let Some(e) = env() else { return };
    let ids: Vec<_> = (0..5).map(|_| new_key(&e.kms)).collect();
    for bad in ["x", "alias/aws/x", "alias/a b"] {
        assert!(matches!(
            e.kms.create_alias(bad, &ids[0]),
            Err(Error::InvalidAliasName(_))
        ));
    }
    e.kms.create_alias("alias/a", &ids[0]).unwrap();
    assert!(matches!(
        e.kms.create_alias("alias/a", &ids[1]),
        Err(Error::AlreadyExists(_))
    ));
    e.kms.update_alias("alias/a", &ids[1]).unwrap();
    assert_eq!(e.kms.describe_key("alias/a").unwrap().key_id, ids[1]);
    e.kms.delete_alias("alias/a").unwrap();
    assert!(matches!(
        e.kms.describe_key("alias/a"),
        Err(Error::NotFound(_))
    ));

    e.kms
        .tag_resource(&ids[0], &[("env".into(), "prod".into())])
        .unwrap();
    assert_eq!(
        e.kms.list_resource_tags(&ids[0]).unwrap(),
        [("env".to_owned(), "prod".to_owned())]
    );
    e.kms.untag_resource(&ids[0], &["env".into()]).unwrap();
    assert!(e.kms.list_resource_tags(&ids[0]).unwrap().is_empty());
    e.kms.update_key_description(&ids[0], "card data").unwrap();
    // NUL is refused the same on every backend (PostgreSQL text cannot hold it).
    for bad in [
        e.kms.update_key_description(&ids[0], "card\0data"),
        e.kms.tag_resource(&ids[0], &[("e\0nv".into(), "prod".into())]),
        e.kms.tag_resource(&ids[0], &[("env".into(), "pr\0od".into())]),
    ] {
        assert!(matches!(bad, Err(Error::Validation(_))), "{bad:?}");
    }
    assert_eq!(
        e.kms.describe_key(&ids[0]).unwrap().description,
        "card data"
    );

    let mut seen = Vec::new();
    let mut marker = None;
    loop {
        let page = e.kms.list_keys(2, marker.as_deref()).unwrap();
        seen.extend(page.items.into_iter().map(|k| k.key_id));
        match page.next_marker {
            Some(m) => marker = Some(m),
            None => break,
        }
    }
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(seen, expected);
    assert!(matches!(
        e.kms.list_keys(0, None),
        Err(Error::Validation(_))
    ));
}

#[test]
fn the_alias_cache_follows_every_change() {
    let Some(e) = env() else { return };
    let (a, b) = (new_key(&e.kms), new_key(&e.kms));
    let used = |kms: &Kms| kms.encrypt("alias/x", b"p", &ctx(&[])).map(|o| o.key_id);
    e.kms.create_alias("alias/x", &a).unwrap();
    assert!(used(&e.kms).unwrap().ends_with(&a)); // now cached
    e.kms.update_alias("alias/x", &b).unwrap();
    assert!(used(&e.kms).unwrap().ends_with(&b));
    e.kms.delete_alias("alias/x").unwrap();
    assert!(matches!(used(&e.kms), Err(Error::NotFound(_))));
    e.kms.create_alias("alias/x", &a).unwrap();
    assert!(used(&e.kms).unwrap().ends_with(&a));
    // Destroying the key removes its aliases.
    e.kms.schedule_key_deletion(&a, Some(7)).unwrap();
    e.clock.advance(8 * DAY);
    e.kms.run_due_work().unwrap();
    assert!(matches!(used(&e.kms), Err(Error::NotFound(_))));
}

#[test]
fn cache_only_answers_warm_keys_and_refuses_to_touch_the_store() {
    let Some(e) = env() else { return };
    let id = new_key(&e.kms);
    e.kms.create_alias("alias/warm", &id).unwrap();
    let blob = e
        .kms
        .encrypt("alias/warm", b"secret", &ctx(&[]))
        .unwrap()
        .ciphertext_blob;
    // A second KMS over the same data starts cold.
    let cold = e.db.open_kms(e.clock.clone()).unwrap();
    let would_block = |r: Result<_, Error>| matches!(r, Err(Error::WouldBlock));
    assert!(would_block(keyward_kms::cache_only(|| {
        cold.encrypt("alias/warm", b"p", &ctx(&[])).map(drop)
    })));
    assert!(would_block(keyward_kms::cache_only(|| {
        cold.decrypt(&blob, &ctx(&[]), None).map(drop)
    })));
    // Outside, the same calls read the store and warm the caches ...
    cold.decrypt(&blob, &ctx(&[]), None).unwrap();
    cold.encrypt("alias/warm", b"p", &ctx(&[])).unwrap();
    // ... after which they need nothing else.
    keyward_kms::cache_only(|| {
        let out = cold.decrypt(&blob, &ctx(&[]), None).unwrap();
        assert_eq!(&out.plaintext[..], b"secret");
        cold.encrypt("alias/warm", b"p", &ctx(&[])).unwrap();
        cold.generate_data_key("alias/warm", 32, &ctx(&[])).unwrap();
        // A change is never made from the cache.
        assert!(would_block(cold.disable_key(&id)));
    });
    // A change made outside is seen at once inside.
    cold.disable_key(&id).unwrap();
    assert!(matches!(
        keyward_kms::cache_only(|| cold.encrypt("alias/warm", b"p", &ctx(&[]))),
        Err(Error::Disabled(_))
    ));
}
