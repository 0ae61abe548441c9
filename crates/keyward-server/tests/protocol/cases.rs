// The protocol cases run once per store backend: included by protocol.rs into a
// module that defines `fn kms() -> Option<(Guard, Kms)>` (`None`: skip).

use keyward_kms::Kms;
use keyward_server::protocol::{ApiError, WireError, handle};
use serde_json::{Value, json};

use crate::{call, err};

#[test]
fn envelope_flow_as_boto3_sends_it() {
    let Some((_d, kms)) = kms() else { return };
    let meta = call(
        &kms,
        "CreateKey",
        json!({ "Description": "cards", "Tags": [{ "TagKey": "env", "TagValue": "prod" }] }),
    )
    .unwrap()["KeyMetadata"]
        .clone();
    let arn = meta["Arn"].as_str().unwrap().to_owned();
    assert_eq!(meta["KeyState"], "Enabled");
    assert_eq!(meta["KeySpec"], "SYMMETRIC_DEFAULT");
    assert_eq!(meta["EncryptionAlgorithms"], json!(["SYMMETRIC_DEFAULT"]));
    assert!(meta["CreationDate"].is_i64());
    assert_eq!(meta["CurrentKeyMaterialId"].as_str().unwrap().len(), 64);
    call(
        &kms,
        "CreateAlias",
        json!({ "AliasName": "alias/cards", "TargetKeyId": meta["KeyId"] }),
    )
    .unwrap();

    let ctx = json!({ "purpose": "cards" });
    let dk = call(
        &kms,
        "GenerateDataKey",
        json!({ "KeyId": "alias/cards", "KeySpec": "AES_256", "EncryptionContext": ctx }),
    )
    .unwrap();
    assert_eq!(dk["KeyId"], arn);
    let plaintext = dk["Plaintext"].as_str().unwrap().to_owned();
    let back = call(
        &kms,
        "Decrypt",
        json!({ "CiphertextBlob": dk["CiphertextBlob"], "EncryptionContext": ctx }),
    )
    .unwrap();
    assert_eq!(back["Plaintext"], plaintext);
    assert_eq!(back["KeyId"], arn);
    assert_eq!(back["EncryptionAlgorithm"], "SYMMETRIC_DEFAULT");

    let bare = call(
        &kms,
        "GenerateDataKeyWithoutPlaintext",
        json!({ "KeyId": arn, "NumberOfBytes": 32 }),
    )
    .unwrap();
    assert!(bare.get("Plaintext").is_none());
    let enc = call(
        &kms,
        "Encrypt",
        json!({ "KeyId": arn, "Plaintext": "aGVsbG8=" }),
    )
    .unwrap();
    let re = call(&kms, "ReEncrypt", json!({ "CiphertextBlob": enc["CiphertextBlob"], "DestinationKeyId": "alias/cards", "DestinationEncryptionContext": ctx })).unwrap();
    let moved = call(
        &kms,
        "Decrypt",
        json!({ "CiphertextBlob": re["CiphertextBlob"], "EncryptionContext": ctx }),
    )
    .unwrap();
    assert_eq!(moved["Plaintext"], "aGVsbG8=");
    assert_eq!(
        call(&kms, "GenerateRandom", json!({ "NumberOfBytes": 16 })).unwrap()["Plaintext"]
            .as_str()
            .unwrap()
            .len(),
        24
    );
    let tags = call(&kms, "ListResourceTags", json!({ "KeyId": arn })).unwrap();
    assert_eq!(
        tags["Tags"],
        json!([{ "TagKey": "env", "TagValue": "prod" }])
    );
}

#[test]
fn errors_on_the_wire() {
    let Some((_d, kms)) = kms() else { return };
    let key = call(&kms, "CreateKey", json!({})).unwrap()["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    let enc = call(
        &kms,
        "Encrypt",
        json!({ "KeyId": key, "Plaintext": "aGk=", "EncryptionContext": { "a": "1" } }),
    )
    .unwrap();

    // Key ids that are almost UUIDs are unknown keys, never a panic.
    for almost in [
        "00000000-0000-0000-0000-00000000000-",
        "00000000-0000-0000-0000-0000000000-0",
        "0000000000000-0000-0000-000000000000",
    ] {
        let found = err(
            &kms,
            "Encrypt",
            json!({ "KeyId": almost, "Plaintext": "aGk=" }),
        );
        assert_eq!(found, (404, "NotFoundException"), "{almost}");
    }

    assert_eq!(
        err(
            &kms,
            "Decrypt",
            json!({ "CiphertextBlob": enc["CiphertextBlob"], "EncryptionContext": { "a": "2" } })
        ),
        (400, "InvalidCiphertextException")
    );
    assert_eq!(
        err(&kms, "Encrypt", json!({ "Plaintext": "aGk=" })),
        (400, "ValidationException")
    );
    assert_eq!(
        err(
            &kms,
            "Encrypt",
            json!({ "KeyId": key, "Plaintext": "not base64!" })
        ),
        (400, "SerializationException")
    );
    assert_eq!(
        err(
            &kms,
            "Encrypt",
            json!({ "KeyId": "alias/none", "Plaintext": "aGk=" })
        ),
        (404, "NotFoundException")
    );
    assert_eq!(
        err(
            &kms,
            "GenerateDataKey",
            json!({ "KeyId": key, "KeySpec": "AES_256", "NumberOfBytes": 32 })
        ),
        (400, "ValidationException")
    );
    assert_eq!(
        err(&kms, "CreateKey", json!({ "KeySpec": "RSA_2048" })),
        (400, "UnsupportedOperationException")
    );
    assert_eq!(
        err(&kms, "Frobnicate", json!({})),
        (400, "UnknownOperationException")
    );
    call(&kms, "DisableKey", json!({ "KeyId": key })).unwrap();
    assert_eq!(
        err(
            &kms,
            "Encrypt",
            json!({ "KeyId": key, "Plaintext": "aGk=" })
        ),
        (409, "DisabledException")
    );
    call(
        &kms,
        "ScheduleKeyDeletion",
        json!({ "KeyId": key, "PendingWindowInDays": 7 }),
    )
    .unwrap();
    assert_eq!(
        err(
            &kms,
            "Encrypt",
            json!({ "KeyId": key, "Plaintext": "aGk=" })
        ),
        (409, "KMSInvalidStateException")
    );

    for body in [&b"{"[..], b"[]", b"{\"KeyId\": 5}", b"\xff"] {
        let e = handle(&kms, "admin", "TrentService.DescribeKey", body)
            .unwrap_err()
            .to_wire();
        assert_eq!(
            (e.status, e.aws_type),
            (400, "SerializationException"),
            "{body:?}"
        );
    }
    let e = handle(&kms, "admin", "Other.DescribeKey", b"{}")
        .unwrap_err()
        .to_wire();
    assert_eq!(e.aws_type, "UnknownOperationException");
    let body: Value = serde_json::from_slice(&e.body()).unwrap();
    assert_eq!(body["__type"], "UnknownOperationException");
    assert!(body["message"].is_string());
}

#[test]
fn list_keys_pages_with_markers() {
    let Some((_d, kms)) = kms() else { return };
    for _ in 0..5 {
        call(&kms, "CreateKey", json!({})).unwrap();
    }
    let mut seen = 0;
    let mut marker: Option<String> = None;
    loop {
        let mut body = json!({ "Limit": 2 });
        if let Some(m) = &marker {
            body["Marker"] = json!(m);
        }
        let page = call(&kms, "ListKeys", body).unwrap();
        seen += page["Keys"].as_array().unwrap().len();
        if page["Truncated"] == json!(true) {
            marker = Some(page["NextMarker"].as_str().unwrap().to_owned());
        } else {
            assert!(page.get("NextMarker").is_none());
            break;
        }
    }
    assert_eq!(seen, 5);
    assert_eq!(
        err(&kms, "ListKeys", json!({ "Limit": 0 })),
        (400, "ValidationException")
    );
}

#[test]
fn key_policies_are_checked_kept_and_returned() {
    let Some((_d, kms)) = kms() else { return };
    let malformed = err(
        &kms,
        "CreateKey",
        json!({ "Policy": "{\"Statement\": {\"Effect\": \"Perhaps\"}}" }),
    );
    assert_eq!(malformed, (400, "MalformedPolicyDocumentException"));
    let key = call(&kms, "CreateKey", json!({})).unwrap()["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    let got = call(&kms, "GetKeyPolicy", json!({ "KeyId": key })).unwrap();
    assert_eq!(got["PolicyName"], "default");
    let default: Value = serde_json::from_str(got["Policy"].as_str().unwrap()).unwrap();
    assert_eq!(default["Statement"][0]["Principal"]["AWS"][0], "admin");
    assert_eq!(
        call(&kms, "ListKeyPolicies", json!({ "KeyId": key })).unwrap()["PolicyNames"],
        json!(["default"])
    );
    let policy = json!({ "Statement": [
        { "Effect": "Allow", "Principal": { "AWS": "admin" }, "Action": "kms:*Policy*", "Resource": "*" },
        { "Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*" },
    ] })
    .to_string();
    call(
        &kms,
        "PutKeyPolicy",
        json!({ "KeyId": key, "Policy": policy }),
    )
    .unwrap();
    assert_eq!(
        call(&kms, "GetKeyPolicy", json!({ "KeyId": key })).unwrap()["Policy"],
        policy.as_str()
    );
    let bad = json!({ "Statement": [{ "Effect": "Allow", "Principal": "*",
        "Action": "s3:GetObject", "Resource": "*" }] })
    .to_string();
    assert_eq!(
        err(&kms, "PutKeyPolicy", json!({ "KeyId": key, "Policy": bad })),
        (400, "MalformedPolicyDocumentException")
    );
    assert_eq!(
        err(
            &kms,
            "GetKeyPolicy",
            json!({ "KeyId": key, "PolicyName": "other" })
        ),
        (404, "NotFoundException")
    );
}

fn call_as(kms: &Kms, principal: &str, op: &str, body: Value) -> Result<Value, WireError> {
    handle(
        kms,
        principal,
        &format!("TrentService.{op}"),
        body.to_string().as_bytes(),
    )
    .map_err(|e: ApiError| e.to_wire())
}

/// The server consults key policies: an administrator who may not use the key, a user
/// who may not manage it, a context condition, and keys made without a policy.
#[test]
fn key_policies_decide_who_may_do_what() {
    let Some((_d, kms)) = kms() else { return };
    let api = "spiffe://pay/api";
    let policy = json!({ "Statement": [
        { "Sid": "admins", "Effect": "Allow", "Principal": { "AWS": "admin" },
          "Action": ["kms:Describe*", "kms:Disable*", "kms:Enable*", "kms:*Policy*", "kms:CreateAlias"], "Resource": "*" },
        { "Sid": "users", "Effect": "Allow", "Principal": { "AWS": api },
          "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*",
          "Condition": { "StringEquals": { "kms:EncryptionContext:tenant": "t1" } } },
    ] })
    .to_string();
    let key = call(&kms, "CreateKey", json!({ "Policy": policy })).unwrap()["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    let denied = |r: Result<Value, WireError>| matches!(r, Err(w) if w.aws_type == "AccessDeniedException" && w.status == 400);
    let t1 = json!({ "tenant": "t1" });
    // The administrator manages, but cannot use.
    assert!(call_as(&kms, "admin", "DescribeKey", json!({ "KeyId": key })).is_ok());
    assert!(
        call_as(
            &kms,
            "admin",
            "CreateAlias",
            json!({ "AliasName": "alias/p", "TargetKeyId": key })
        )
        .is_ok()
    );
    assert!(denied(call_as(
        &kms,
        "admin",
        "Encrypt",
        json!({ "KeyId": key, "Plaintext": "aGk=", "EncryptionContext": t1 })
    )));
    // The user uses, within its context, but cannot manage.
    let blob = call_as(
        &kms,
        api,
        "Encrypt",
        json!({ "KeyId": "alias/p", "Plaintext": "aGk=", "EncryptionContext": t1 }),
    )
    .unwrap()["CiphertextBlob"]
        .clone();
    assert!(
        call_as(
            &kms,
            api,
            "Decrypt",
            json!({ "CiphertextBlob": blob, "EncryptionContext": t1 })
        )
        .is_ok()
    );
    assert!(denied(call_as(
        &kms,
        "admin",
        "Decrypt",
        json!({ "CiphertextBlob": blob, "EncryptionContext": t1 })
    )));
    assert!(denied(call_as(
        &kms,
        api,
        "Encrypt",
        json!({ "KeyId": key, "Plaintext": "aGk=", "EncryptionContext": { "tenant": "t2" } })
    )));
    assert!(denied(call_as(
        &kms,
        api,
        "DisableKey",
        json!({ "KeyId": key })
    )));
    assert!(denied(call_as(
        &kms,
        "mallory",
        "DescribeKey",
        json!({ "KeyId": key })
    )));
    // Operations on no key are open to any authenticated principal; a missing key is
    // still NotFound.
    assert!(call_as(&kms, "mallory", "ListKeys", json!({})).is_ok());
    let missing = call_as(
        &kms,
        "mallory",
        "DescribeKey",
        json!({ "KeyId": "alias/none" }),
    );
    assert!(matches!(missing, Err(w) if w.aws_type == "NotFoundException"));
    // The default policy: the creator administers and uses; nobody else does.
    let mine = call_as(&kms, api, "CreateKey", json!({})).unwrap()["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        call_as(
            &kms,
            api,
            "Encrypt",
            json!({ "KeyId": mine, "Plaintext": "aGk=" })
        )
        .is_ok()
    );
    assert!(call_as(&kms, api, "DisableKey", json!({ "KeyId": mine })).is_ok());
    assert!(denied(call_as(
        &kms,
        "admin",
        "DescribeKey",
        json!({ "KeyId": mine })
    )));
}

/// Encryption contexts are bounded (8192 bytes, keys and values, as in AWS KMS) before
/// anything else happens, so that no request can make a huge audit record.
#[test]
fn oversized_encryption_contexts_are_refused() {
    let Some((_d, kms)) = kms() else { return };
    let key = call(&kms, "CreateKey", json!({})).unwrap()["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    let big: serde_json::Map<String, Value> =
        (0..2000).map(|i| (format!("k{i:04}"), json!(""))).collect();
    for (op, member) in [
        ("Encrypt", "EncryptionContext"),
        ("GenerateDataKey", "EncryptionContext"),
        ("Decrypt", "EncryptionContext"),
        ("ReEncrypt", "DestinationEncryptionContext"),
    ] {
        let mut body = json!({ "KeyId": key, "Plaintext": "eA==", "KeySpec": "AES_256",
            "CiphertextBlob": "eA==", "DestinationKeyId": key });
        body[member] = Value::Object(big.clone());
        assert_eq!(err(&kms, op, body), (400, "ValidationException"), "{op}");
    }
    // 8192 bytes exactly is fine.
    let fits: serde_json::Map<String, Value> = [("k".to_owned(), json!("v".repeat(8191)))]
        .into_iter()
        .collect();
    let out = call(
        &kms,
        "Encrypt",
        json!({ "KeyId": key, "Plaintext": "eA==", "EncryptionContext": fits }),
    );
    assert!(out.is_ok(), "{out:?}");
}
