//! Every operation in every key state, against the AWS KMS key-state table
//! (docs.aws.amazon.com/kms/latest/developerguide/key-state.html): the result, or the
//! exact exception type. "Deleted" is a key whose deletion window has ended.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use keyward_kms::{CreateKeyRequest, EncryptionContext, Error, Kms, ManualClock};

const OK: &str = "ok";
const DISABLED: &str = "DisabledException";
const INVALID_STATE: &str = "KMSInvalidStateException";
const NOT_FOUND: &str = "NotFoundException";
const INVALID_CIPHERTEXT: &str = "InvalidCiphertextException";

#[derive(Clone, Copy, Debug)]
enum State {
    Enabled,
    Disabled,
    PendingDeletion,
    Deleted,
}

/// A key in the state under test, with what the operations need made beforehand.
struct Fixture {
    key: String,
    other: String,
    blob: Vec<u8>,
}

type Op = fn(&Kms, &Fixture) -> Result<(), Error>;

fn ctx() -> EncryptionContext {
    EncryptionContext::new()
}

/// (operation, [Enabled, Disabled, PendingDeletion, Deleted])
const TABLE: &[(&str, Op, [&str; 4])] = &[
    (
        "Encrypt",
        |k, f| k.encrypt(&f.key, b"x", &ctx()).map(drop),
        [OK, DISABLED, INVALID_STATE, NOT_FOUND],
    ),
    (
        "Decrypt",
        |k, f| k.decrypt(&f.blob, &ctx(), None).map(drop),
        [OK, DISABLED, INVALID_STATE, INVALID_CIPHERTEXT],
    ),
    (
        "Decrypt with KeyId",
        |k, f| k.decrypt(&f.blob, &ctx(), Some(&f.key)).map(drop),
        [OK, DISABLED, INVALID_STATE, NOT_FOUND],
    ),
    (
        "ReEncrypt from",
        |k, f| {
            k.re_encrypt(&f.blob, &ctx(), None, &f.other, &ctx())
                .map(drop)
        },
        [OK, DISABLED, INVALID_STATE, INVALID_CIPHERTEXT],
    ),
    (
        "ReEncrypt to",
        |k, f| {
            let blob = k.encrypt(&f.other, b"x", &ctx())?.ciphertext_blob;
            k.re_encrypt(&blob, &ctx(), None, &f.key, &ctx()).map(drop)
        },
        [OK, DISABLED, INVALID_STATE, NOT_FOUND],
    ),
    (
        "GenerateDataKey",
        |k, f| k.generate_data_key(&f.key, 32, &ctx()).map(drop),
        [OK, DISABLED, INVALID_STATE, NOT_FOUND],
    ),
    (
        "GenerateDataKeyWithoutPlaintext",
        |k, f| {
            k.generate_data_key_without_plaintext(&f.key, 32, &ctx())
                .map(drop)
        },
        [OK, DISABLED, INVALID_STATE, NOT_FOUND],
    ),
    (
        "DescribeKey",
        |k, f| k.describe_key(&f.key).map(drop),
        [OK, OK, OK, NOT_FOUND],
    ),
    (
        "EnableKey",
        |k, f| k.enable_key(&f.key),
        [OK, OK, INVALID_STATE, NOT_FOUND],
    ),
    (
        "DisableKey",
        |k, f| k.disable_key(&f.key),
        [OK, OK, INVALID_STATE, NOT_FOUND],
    ),
    (
        "ScheduleKeyDeletion",
        |k, f| k.schedule_key_deletion(&f.key, None).map(drop),
        [OK, OK, INVALID_STATE, NOT_FOUND],
    ),
    (
        "CancelKeyDeletion",
        |k, f| k.cancel_key_deletion(&f.key).map(drop),
        [INVALID_STATE, INVALID_STATE, OK, NOT_FOUND],
    ),
    (
        "EnableKeyRotation",
        |k, f| k.enable_key_rotation(&f.key, None),
        [OK, DISABLED, INVALID_STATE, NOT_FOUND],
    ),
    (
        "DisableKeyRotation",
        |k, f| k.disable_key_rotation(&f.key),
        [OK, DISABLED, INVALID_STATE, NOT_FOUND],
    ),
    (
        "GetKeyRotationStatus",
        |k, f| k.get_key_rotation_status(&f.key).map(drop),
        [OK, OK, OK, NOT_FOUND],
    ),
    (
        "RotateKeyOnDemand",
        |k, f| k.rotate_key_on_demand(&f.key).map(drop),
        [OK, DISABLED, INVALID_STATE, NOT_FOUND],
    ),
    (
        "ListKeyRotations",
        |k, f| k.list_key_rotations(&f.key).map(drop),
        [OK, OK, OK, NOT_FOUND],
    ),
    (
        "CreateAlias",
        |k, f| k.create_alias("alias/new", &f.key),
        [OK, OK, INVALID_STATE, NOT_FOUND],
    ),
    (
        "UpdateAlias",
        |k, f| k.update_alias("alias/other", &f.key),
        [OK, OK, INVALID_STATE, NOT_FOUND],
    ),
    (
        "DeleteAlias",
        |k, _| k.delete_alias("alias/under-test"),
        [OK, OK, OK, NOT_FOUND],
    ),
    (
        "ListAliases",
        |k, f| k.list_aliases(Some(&f.key), 100, None).map(drop),
        [OK, OK, OK, NOT_FOUND],
    ),
    (
        "TagResource",
        |k, f| k.tag_resource(&f.key, &[("a".into(), "b".into())]),
        [OK, OK, INVALID_STATE, NOT_FOUND],
    ),
    (
        "UntagResource",
        |k, f| k.untag_resource(&f.key, &["t".into()]),
        [OK, OK, INVALID_STATE, NOT_FOUND],
    ),
    (
        "ListResourceTags",
        |k, f| k.list_resource_tags(&f.key).map(drop),
        [OK, OK, OK, NOT_FOUND],
    ),
    (
        "UpdateKeyDescription",
        |k, f| k.update_key_description(&f.key, "d"),
        [OK, OK, INVALID_STATE, NOT_FOUND],
    ),
];

fn fixture(kms: &Kms, clock: &ManualClock, state: State) -> Fixture {
    let key = kms.create_key(&CreateKeyRequest::default()).unwrap().key_id;
    let other = kms.create_key(&CreateKeyRequest::default()).unwrap().key_id;
    let blob = kms
        .encrypt(&key, b"made while enabled", &ctx())
        .unwrap()
        .ciphertext_blob;
    kms.create_alias("alias/under-test", &key).unwrap();
    kms.create_alias("alias/other", &other).unwrap();
    kms.tag_resource(&key, &[("t".into(), "v".into())]).unwrap();
    match state {
        State::Enabled => {}
        State::Disabled => kms.disable_key(&key).unwrap(),
        State::PendingDeletion => drop(kms.schedule_key_deletion(&key, Some(7)).unwrap()),
        State::Deleted => {
            kms.schedule_key_deletion(&key, Some(7)).unwrap();
            clock.advance(7 * 86_400);
            // Keys left pending by earlier cells fall due too.
            assert!(kms.run_due_work().unwrap().1 >= 1);
        }
    }
    Fixture { key, other, blob }
}

#[test]
fn every_operation_in_every_state() {
    every_operation_in_every_state_on(common::Db::sqlite());
}

#[test]
fn every_operation_in_every_state_postgres() {
    every_operation_in_every_state_on(common::Db::postgres());
}

fn every_operation_in_every_state_on(db: Option<common::Db>) {
    let Some(db) = db else { return };
    let clock = Arc::new(ManualClock::new(1_800_000_000));
    let kms = db.open_kms(clock.clone()).unwrap();

    let mut failures = Vec::new();
    for (name, op, expected) in TABLE {
        for (state, want) in [
            State::Enabled,
            State::Disabled,
            State::PendingDeletion,
            State::Deleted,
        ]
        .into_iter()
        .zip(expected)
        {
            // Fresh keys for every cell: aliases are unique, so free the names first.
            for alias in ["alias/under-test", "alias/other", "alias/new"] {
                let _ = kms.delete_alias(alias);
            }
            let f = fixture(&kms, &clock, state);
            let got = match op(&kms, &f) {
                Ok(()) => OK,
                Err(e) => e.aws_type(),
            };
            if got != *want {
                failures.push(format!(
                    "{name} on a {state:?} key: expected {want}, got {got}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} cells differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn state_errors_carry_the_aws_messages() {
    let dir = tempfile::tempdir().unwrap();
    let kms = common::open_kms(dir.path(), Arc::new(ManualClock::new(0))).unwrap();
    let key = kms.create_key(&CreateKeyRequest::default()).unwrap();
    kms.disable_key(&key.key_id).unwrap();
    let e = kms.encrypt(&key.key_id, b"x", &ctx()).unwrap_err();
    assert_eq!(e.to_string(), format!("{} is disabled.", key.arn));
    kms.enable_key(&key.key_id).unwrap();
    let e = kms.cancel_key_deletion(&key.key_id).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{} is not pending deletion.", key.arn)
    );
    kms.schedule_key_deletion(&key.key_id, None).unwrap();
    let e = kms.encrypt(&key.key_id, b"x", &ctx()).unwrap_err();
    assert_eq!(e.to_string(), format!("{} is pending deletion.", key.arn));
}
