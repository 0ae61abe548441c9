//! Many threads doing mixed operations on shared keys: no errors, no lost rotation;
//! over SQLite and over PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use keyward_kms::{CreateKeyRequest, EncryptionContext, Kms, SystemClock};

#[test]
fn mixed_operations_on_shared_keys() {
    let db = common::Db::sqlite().unwrap();
    mixed_operations(&db.open_kms(Arc::new(SystemClock)).unwrap());
}

#[test]
fn mixed_operations_on_shared_keys_postgres() {
    let Some(db) = common::Db::postgres() else {
        return;
    };
    mixed_operations(&db.open_kms(Arc::new(SystemClock)).unwrap());
}

fn mixed_operations(kms: &Kms) {
    let rotated = kms.create_key(&CreateKeyRequest::default()).unwrap().key_id;
    let shared = kms.create_key(&CreateKeyRequest::default()).unwrap().key_id;

    const THREADS: usize = 8;
    const ROTATIONS_EACH: usize = 3; // 24 in all, under the limit of 25
    let blobs = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (rotated, shared) = (&rotated, &shared);
                s.spawn(move || {
                    let ctx: EncryptionContext =
                        [("thread".to_owned(), t.to_string())].into_iter().collect();
                    let mut blobs = Vec::new();
                    for i in 0..300 {
                        let key = if i % 2 == 0 { rotated } else { shared };
                        let plaintext = format!("{t}-{i}");
                        let out = kms.encrypt(key, plaintext.as_bytes(), &ctx).unwrap();
                        assert_eq!(
                            &kms.decrypt(&out.ciphertext_blob, &ctx, None)
                                .unwrap()
                                .plaintext[..],
                            plaintext.as_bytes()
                        );
                        blobs.push((out.ciphertext_blob, ctx.clone(), plaintext));
                        match i % 100 {
                            10 => drop(kms.rotate_key_on_demand(rotated).unwrap()),
                            20 => kms
                                .tag_resource(shared, &[(format!("t{t}"), i.to_string())])
                                .unwrap(),
                            30 => kms
                                .update_key_description(shared, &format!("by {t}"))
                                .unwrap(),
                            40 => drop(kms.generate_data_key(shared, 32, &ctx).unwrap()),
                            50 => drop(kms.describe_key(rotated).unwrap()),
                            _ => {}
                        }
                    }
                    blobs
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });

    let rotations = kms.list_key_rotations(&rotated).unwrap();
    assert_eq!(
        rotations.len(),
        THREADS * ROTATIONS_EACH,
        "a rotation was lost"
    );
    let versions: std::collections::HashSet<_> = rotations
        .iter()
        .map(|r| r.key_material_id.clone())
        .collect();
    assert_eq!(versions.len(), THREADS * ROTATIONS_EACH);
    assert_eq!(kms.list_resource_tags(&shared).unwrap().len(), THREADS);
    for (blob, ctx, plaintext) in &blobs {
        assert_eq!(
            &kms.decrypt(blob, ctx, None).unwrap().plaintext[..],
            plaintext.as_bytes()
        );
    }
}
