//! The boto3 vector from the research notes (a real boto3 1.44.5 Encrypt request), then
//! every way a request can be refused.

use super::*;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const BODY: &str = r#"{"KeyId": "alias/test", "Plaintext": "aGVsbG8=", "EncryptionContext": {"b": "2", "a": "1"}}"#;
const AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261122/us-east-1/kms/aws4_request, \
    SignedHeaders=content-type;host;x-amz-date;x-amz-target, \
    Signature=214b69f8273787e83dd5adc4d785e0b5e9b14642ebbdb48c70de0369acbb885f";

fn now() -> i64 {
    parse_amz_date("20261122T084458Z").unwrap()
}

fn headers(auth: &str, host: &str, date: &str) -> Vec<(String, String)> {
    vec![
        ("Content-Type".into(), "application/x-amz-json-1.1".into()),
        ("Host".into(), host.into()),
        ("X-Amz-Date".into(), date.into()),
        ("X-Amz-Target".into(), "TrentService.Encrypt".into()),
        ("Authorization".into(), auth.into()),
    ]
}

fn check(
    headers: &[(String, String)],
    body: &str,
    now: i64,
    secret: &str,
) -> Result<Verified, AuthError> {
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let req = Request {
        method: "POST",
        path: "/",
        query: "",
        headers: &h,
        body: body.as_bytes(),
    };
    verify(&req, "kms", "us-east-1", now, |akid| {
        (akid == "AKIDEXAMPLE").then(|| Zeroizing::new(secret.to_owned()))
    })
}

#[test]
fn boto3_vector_verifies() {
    assert_eq!(
        hex(digest::digest(&digest::SHA256, BODY.as_bytes()).as_ref()),
        "b1892ae155baa0d673ffa33b898f6f808399300ae9a8c29339b85e35dd04ad3b"
    );
    let h = headers(AUTH, "kms.internal.example:8443", "20261122T084458Z");
    let hv: Vec<(&str, &str)> = h.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let req = Request {
        method: "POST",
        path: "/",
        query: "",
        headers: &hv,
        body: BODY.as_bytes(),
    };
    let auth = parse_authorization(AUTH).unwrap();
    let canonical = canonical_request(&req, &auth.signed_headers).unwrap();
    assert_eq!(
        hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref()),
        "a5a44bef6c2adffa678c4a17b690199d749a23294f9acfd24f2b69528c44875d"
    );
    let v = check(&h, BODY, now(), SECRET).unwrap();
    assert_eq!(
        v,
        Verified {
            access_key_id: "AKIDEXAMPLE".into(),
            region: "us-east-1".into()
        }
    );
    // Within the window on either side.
    assert!(check(&h, BODY, now() + MAX_SKEW_SECONDS, SECRET).is_ok());
    assert!(check(&h, BODY, now() - MAX_SKEW_SECONDS, SECRET).is_ok());
}

#[test]
fn fail_wrong_secret_tampered_body_and_host_without_port() {
    let h = headers(AUTH, "kms.internal.example:8443", "20261122T084458Z");
    assert_eq!(
        check(&h, BODY, now(), "wrong"),
        Err(AuthError::InvalidSignature)
    );
    let tampered = BODY.replace("aGVsbG8=", "aGVsbG9=");
    assert_eq!(
        check(&h, &tampered, now(), SECRET),
        Err(AuthError::InvalidSignature)
    );
    let no_port = headers(AUTH, "kms.internal.example", "20261122T084458Z");
    assert_eq!(
        check(&no_port, BODY, now(), SECRET),
        Err(AuthError::InvalidSignature)
    );
    let flipped = AUTH.replace("214b69f8", "214b69f9");
    let h = headers(&flipped, "kms.internal.example:8443", "20261122T084458Z");
    assert_eq!(
        check(&h, BODY, now(), SECRET),
        Err(AuthError::InvalidSignature)
    );
}

#[test]
fn fail_unknown_key_missing_auth_and_expired() {
    let unknown = AUTH.replace("AKIDEXAMPLE", "AKIDOTHER");
    let h = headers(&unknown, "kms.internal.example:8443", "20261122T084458Z");
    assert_eq!(
        check(&h, BODY, now(), SECRET),
        Err(AuthError::UnrecognizedClient)
    );

    let mut h = headers(AUTH, "kms.internal.example:8443", "20261122T084458Z");
    h.retain(|(n, _)| n != "Authorization");
    assert_eq!(
        check(&h, BODY, now(), SECRET),
        Err(AuthError::MissingAuthenticationToken)
    );

    let h = headers(AUTH, "kms.internal.example:8443", "20261122T084458Z");
    for skew in [MAX_SKEW_SECONDS + 1, -MAX_SKEW_SECONDS - 1, 86_400] {
        let r = check(&h, BODY, now() + skew, SECRET);
        assert!(
            matches!(r, Err(AuthError::SignatureExpired(_))),
            "{skew}: {r:?}"
        );
        assert_eq!(r.unwrap_err().aws_type(), "InvalidSignatureException");
    }
}

#[test]
fn fail_malformed_authorization() {
    let cases = [
        AUTH.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512"),
        AUTH.replace("/kms/", "/s3/"),
        AUTH.replace("/aws4_request", "/aws5_request"),
        AUTH.replace(
            "content-type;host;x-amz-date;x-amz-target",
            "content-type;x-amz-date;x-amz-target",
        ),
        AUTH.replace(
            "content-type;host;x-amz-date;x-amz-target",
            "content-type;host;x-amz-target",
        ),
        AUTH.replace(
            "content-type;host;x-amz-date;x-amz-target",
            "host;content-type;x-amz-date;x-amz-target",
        ),
        AUTH.replace("content-type;host", "content-type;host;x-missing"),
        // What chooses the operation must be signed.
        AUTH.replace(
            "content-type;host;x-amz-date;x-amz-target",
            "content-type;host;x-amz-date",
        ),
        AUTH.replace(
            "content-type;host;x-amz-date;x-amz-target",
            "host;x-amz-date;x-amz-target",
        ),
        AUTH.replace("/us-east-1/", "/eu-west-1/"),
        AUTH.replace("20261122/", "20261121/"),
        AUTH.replace(", Signature=", ", Sig="),
        "garbage".to_owned(),
    ];
    for auth in cases {
        let h = headers(&auth, "kms.internal.example:8443", "20261122T084458Z");
        let r = check(&h, BODY, now(), SECRET);
        assert!(
            matches!(r, Err(AuthError::IncompleteSignature(_))),
            "{auth}: {r:?}"
        );
    }
    let h = headers(AUTH, "kms.internal.example:8443", "2026-11-22T08:44:58Z");
    assert!(matches!(
        check(&h, BODY, now(), SECRET),
        Err(AuthError::IncompleteSignature(_))
    ));
}

#[test]
fn amz_dates_parse_to_unix_time() {
    assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
    assert_eq!(parse_amz_date("20000301T000000Z"), Some(951_868_800));
    assert_eq!(parse_amz_date("20261122T084458Z"), Some(1_795_337_098));
    for bad in [
        "20261322T000000Z",
        "20261122T250000Z",
        "20261122 084458Z",
        "2026112T084458Z",
    ] {
        assert_eq!(parse_amz_date(bad), None, "{bad}");
    }
}

#[test]
fn signing_reproduces_boto3_and_round_trips() {
    assert_eq!(amz_date(now()), "20261122T084458Z");
    assert_eq!(amz_date(0), "19700101T000000Z");
    assert_eq!(amz_date(951_868_800), "20000301T000000Z");
    let headers = [
        ("content-type", "application/x-amz-json-1.1"),
        ("host", "kms.internal.example:8443"),
        ("x-amz-target", "TrentService.Encrypt"),
    ];
    let req = Request {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        body: BODY.as_bytes(),
    };
    let (date, auth) = sign(&req, "AKIDEXAMPLE", SECRET, "us-east-1", "kms", now()).unwrap();
    assert_eq!(date, "20261122T084458Z");
    assert_eq!(auth, AUTH.split_whitespace().collect::<Vec<_>>().join(" "));
    // And what we sign, we verify; with another secret, we do not.
    let mut all: Vec<(String, String)> = headers
        .iter()
        .map(|(a, b)| ((*a).into(), (*b).into()))
        .collect();
    all.push(("x-amz-date".into(), date));
    all.push(("authorization".into(), auth));
    assert!(check(&all, BODY, now(), SECRET).is_ok());
    assert_eq!(
        check(&all, BODY, now(), "other"),
        Err(AuthError::InvalidSignature)
    );
}

#[test]
fn the_access_key_id_is_read_from_the_credential() {
    let h = [("Authorization", AUTH)];
    assert_eq!(access_key_id(&h), Some("AKIDEXAMPLE"));
    assert_eq!(access_key_id(&[("authorization", "garbage")]), None);
    assert_eq!(access_key_id(&[]), None);
}
