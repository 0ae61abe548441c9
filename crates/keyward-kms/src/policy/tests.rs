//! The policy table: principals × actions × keys × contexts → allow or deny.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use super::*;

const KEY_A: &str = "arn:aws:kms:us-east-1:111122223333:key/aaaaaaaa-0000-0000-0000-000000000000";
const KEY_B: &str = "arn:aws:kms:us-east-1:111122223333:key/bbbbbbbb-0000-0000-0000-000000000000";

/// Key A: the default separation of administrators and users, plus an explicit Deny of
/// Decrypt for a quarantined workload (who is also a user), plus context-bound users.
fn policy_a() -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            { "Sid": "admins", "Effect": "Allow", "Principal": { "AWS": ["alice"] },
              "Action": ADMIN_ACTIONS, "Resource": "*" },
            { "Sid": "users", "Effect": "Allow",
              "Principal": { "AWS": ["spiffe://pay/api", "spiffe://pay/quarantined"] },
              "Action": USER_ACTIONS, "Resource": "*" },
            { "Sid": "quarantine", "Effect": "Deny", "Principal": { "AWS": "spiffe://pay/quarantined" },
              "Action": "kms:Decrypt", "Resource": "*" },
            { "Sid": "batch only for its tenant", "Effect": "Allow", "Principal": { "AWS": "spiffe://pay/batch" },
              "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": KEY_A,
              "Condition": {
                  "StringEquals": { "kms:EncryptionContext:tenant": ["t1", "t2"] },
                  "ForAllValues:StringEquals": { "kms:EncryptionContextKeys": ["tenant", "purpose"] }
              } },
            { "Sid": "reports by pattern", "Effect": "Allow", "Principal": "*",
              "Action": "kms:Encrypt", "Resource": "*",
              "Condition": { "StringLike": { "kms:EncryptionContext:purpose": "report-*",
                                             "aws:PrincipalArn": "spiffe://pay/reporter-?" } } },
        ]
    })
    .to_string()
}

/// Key B: everyone may use it except for context "secret", which nobody may decrypt.
fn policy_b() -> String {
    serde_json::json!({
        "Statement": [
            { "Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*" },
            { "Effect": "Deny", "Principal": { "AWS": "*" }, "Action": "kms:Decrypt", "Resource": "*",
              "Condition": { "StringEquals": { "kms:EncryptionContext:class": "secret" } } },
        ]
    })
    .to_string()
}

fn ctx(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect()
}

/// Policy, principal, operation, context, allowed.
type Row<'a> = (
    &'a Policy,
    &'a str,
    &'a str,
    &'a BTreeMap<String, String>,
    bool,
);

#[test]
fn the_policy_table() {
    let a = Policy::parse(&policy_a(), KEY_A).unwrap();
    let b = Policy::parse(&policy_b(), KEY_B).unwrap();
    let none = ctx(&[]);
    let t1 = ctx(&[("tenant", "t1")]);
    let t1p = ctx(&[("tenant", "t1"), ("purpose", "x")]);
    let t3 = ctx(&[("tenant", "t3")]);
    let extra = ctx(&[("tenant", "t1"), ("other", "y")]);
    let report = ctx(&[("purpose", "report-q3")]);
    let secret = ctx(&[("class", "secret")]);
    let public = ctx(&[("class", "public")]);
    #[rustfmt::skip]
    let table: &[Row<'_>] = &[
        // An administrator manages the key but cannot use it.
        (&a, "alice", "DisableKey", &none, true),
        (&a, "alice", "ScheduleKeyDeletion", &none, true),
        (&a, "alice", "PutKeyPolicy", &none, true),
        (&a, "alice", "DescribeKey", &none, true),
        (&a, "alice", "Decrypt", &none, false),
        (&a, "alice", "Encrypt", &none, false),
        (&a, "alice", "GenerateDataKey", &none, false),
        // A user uses it (wildcard actions) but cannot manage it.
        (&a, "spiffe://pay/api", "Decrypt", &t1, true),
        (&a, "spiffe://pay/api", "GenerateDataKeyWithoutPlaintext", &none, true),
        (&a, "spiffe://pay/api", "ReEncrypt", &none, true),
        (&a, "spiffe://pay/api", "DisableKey", &none, false),
        (&a, "spiffe://pay/api", "PutKeyPolicy", &none, false),
        // An explicit Deny wins over an Allow.
        (&a, "spiffe://pay/quarantined", "Encrypt", &none, true),
        (&a, "spiffe://pay/quarantined", "Decrypt", &none, false),
        // Context conditions: the value, and the set of keys.
        (&a, "spiffe://pay/batch", "Decrypt", &t1, true),
        (&a, "spiffe://pay/batch", "Decrypt", &t1p, true),
        (&a, "spiffe://pay/batch", "GenerateDataKey", &t1, true),
        (&a, "spiffe://pay/batch", "Decrypt", &t3, false),
        (&a, "spiffe://pay/batch", "Decrypt", &none, false),
        (&a, "spiffe://pay/batch", "Decrypt", &extra, false),
        (&a, "spiffe://pay/batch", "Encrypt", &t1, false),
        // Patterns on context values and on the caller.
        (&a, "spiffe://pay/reporter-1", "Encrypt", &report, true),
        (&a, "spiffe://pay/reporter-12", "Encrypt", &report, false),
        (&a, "spiffe://pay/reporter-1", "Encrypt", &t1, false),
        // Default deny: nobody named, nothing matching.
        (&a, "mallory", "Decrypt", &t1, false),
        (&a, "mallory", "DescribeKey", &none, false),
        // Key B: a Deny with a condition carves out one context.
        (&b, "anyone", "Decrypt", &public, true),
        (&b, "anyone", "Decrypt", &none, true),
        (&b, "anyone", "Decrypt", &secret, false),
        (&b, "anyone", "Encrypt", &secret, true),
    ];
    for (i, (policy, principal, operation, context, expected)) in table.iter().enumerate() {
        let req = Request {
            principal,
            operation,
            context,
        };
        assert_eq!(
            policy.allows(&req),
            *expected,
            "row {i}: {principal} {operation} {context:?}"
        );
    }
}

#[test]
fn malformed_policies_are_refused_with_the_reason() {
    let cases = [
        ("not json", "not JSON"),
        ("[]", "JSON object"),
        (r#"{"Statement": []}"#, "1 to 100 statements"),
        (r#"{"Version": "2008-10-17", "Statement": []}"#, "Version"),
        (r#"{"Statment": []}"#, "unknown policy element"),
        (
            r#"{"Statement": {"Effect": "Maybe", "Principal": "*", "Action": "kms:*", "Resource": "*"}}"#,
            "Effect",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Principal": {"Service": "x"}, "Action": "kms:*", "Resource": "*"}}"#,
            "Principal",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*"}}"#,
            "not kms:",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "arn:other"}}"#,
            "Resource",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "NotAction": "kms:*", "Resource": "*"}}"#,
            "unsupported element",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*", "Condition": {"NumericEquals": {"x": "1"}}}}"#,
            "unsupported operator",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*", "Condition": {"StringEquals": {"aws:SourceIp": "1"}}}}"#,
            "unsupported condition key",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*", "Condition": {"StringEquals": {"kms:EncryptionContextKeys": "a"}}}}"#,
            "ForAllValues",
        ),
    ];
    for (text, why) in cases {
        match Policy::parse(text, KEY_A) {
            Err(Error::MalformedPolicy(m)) => assert!(m.contains(why), "{text}: {m}"),
            other => panic!("{text}: {other:?}"),
        }
    }
    let huge = format!("{{\"Id\": \"{}\"}}", "x".repeat(MAX_POLICY_LEN));
    assert!(Policy::parse(&huge, KEY_A).is_err());
}

#[test]
fn the_default_policy_separates_administrators_from_users() {
    let p = Policy::parse(&default_policy(&["alice"], &["spiffe://pay/api"]), KEY_A).unwrap();
    let none = ctx(&[]);
    let allows = |principal: &str, operation: &str| {
        p.allows(&Request {
            principal,
            operation,
            context: &none,
        })
    };
    assert!(allows("alice", "EnableKeyRotation") && !allows("alice", "Decrypt"));
    assert!(allows("spiffe://pay/api", "Decrypt") && !allows("spiffe://pay/api", "DisableKey"));
}

#[test]
fn glob_patterns() {
    for (p, t, m) in [
        ("kms:*", "kms:Decrypt", true),
        ("kms:Generate*", "kms:GenerateDataKey", true),
        ("kms:Generate*", "kms:Encrypt", false),
        ("a?c", "abc", true),
        ("a?c", "ac", false),
        ("*", "", true),
        ("a*b*c", "axxbyyc", true),
        ("a*b*c", "axxbyy", false),
        ("zürich-?", "zürich-1", true),
        ("z?rich", "zürich", true),
        ("*ü", "grüß-ü", true),
    ] {
        assert_eq!(glob(p, t), m, "{p} {t}");
    }
}
