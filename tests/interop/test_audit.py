"""Audit completeness over the real API: a mixed workload from several principals (the
administrator, an application and an intruder with SigV4 access keys, a service with only
an mTLS certificate, a caller with a wrong secret), allowed and denied, one request at a
time and without retries. Afterwards every request appears in the audit log exactly once,
in the order it was made, with its principal, operation, key and outcome, and
`keyward audit verify` passes on the database and on its JSON-lines copy."""

import json
import os
import ssl
import subprocess
import time
import urllib.request

import boto3
import pytest
from botocore.config import Config

NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})


def access_key(keyward_bin, server, principal):
    made = subprocess.run(
        [keyward_bin, "access-key", "create", "--principal", principal, "--data-dir", server.data_dir],
        capture_output=True, text=True, check=True,
    ).stdout
    exports = dict(line[len("export "):].split("=", 1) for line in made.splitlines() if line.startswith("export "))
    return boto3.client(
        "kms",
        aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"],
        config=NO_RETRIES,
    )


def test_every_request_is_audited_once_in_order(server, client_env, keyward_bin, tmp_path):
    made = []  # (request id, principal, operation, outcome, key id or None)

    def call(client, principal, op, key=None, outcome="allowed", error=None, **kwargs):
        try:
            out = getattr(client, op)(**kwargs)
            assert error is None, f"{op} by {principal} should have failed with {error}"
            rid = out["ResponseMetadata"]["RequestId"]
        except client.exceptions.ClientError as e:
            assert error is not None, f"{op} by {principal} failed: {e}"
            assert e.response["Error"]["Code"] == error, e.response
            rid = e.response["ResponseMetadata"]["RequestId"]
            out = None
        name = "".join(part.capitalize() for part in op.split("_"))
        made.append((rid, principal, name, outcome, key))
        return out

    admin = boto3.client("kms", config=NO_RETRIES)
    app = access_key(keyward_bin, server, "app")
    intruder = access_key(keyward_bin, server, "intruder")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "admins", "Effect": "Allow", "Principal": {"AWS": "admin"},
             "Action": ["kms:Describe*", "kms:Put*", "kms:Get*", "kms:List*", "kms:Disable*",
                        "kms:Enable*", "kms:Create*", "kms:ScheduleKeyDeletion"], "Resource": "*"},
            {"Sid": "app", "Effect": "Allow", "Principal": {"AWS": "app"},
             "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*",
             "Condition": {"StringEquals": {"kms:EncryptionContext:purpose": "cards"}}},
        ],
    }
    key = call(admin, "admin", "create_key", Policy=json.dumps(policy))["KeyMetadata"]["KeyId"]
    # The key's id is known only now: fill it in.
    made[-1] = made[-1][:4] + (key,)
    call(admin, "admin", "create_alias", key, AliasName="alias/cards", TargetKeyId=key)
    ctx = {"purpose": "cards"}
    dk = call(app, "app", "generate_data_key", key, KeyId="alias/cards", KeySpec="AES_256", EncryptionContext=ctx)
    call(app, "app", "decrypt", key, CiphertextBlob=dk["CiphertextBlob"], EncryptionContext=ctx)
    call(app, "app", "generate_data_key", key, "denied", "AccessDeniedException",
         KeyId=key, KeySpec="AES_256", EncryptionContext={"purpose": "other"})
    call(intruder, "intruder", "decrypt", key, "denied", "AccessDeniedException",
         CiphertextBlob=dk["CiphertextBlob"], EncryptionContext=ctx)
    call(admin, "admin", "decrypt", key, "denied", "AccessDeniedException",
         CiphertextBlob=dk["CiphertextBlob"], EncryptionContext=ctx)
    call(app, "app", "decrypt", key, "failed", "InvalidCiphertextException",
         CiphertextBlob=dk["CiphertextBlob"][:-1] + bytes([dk["CiphertextBlob"][-1] ^ 1]), EncryptionContext=ctx)
    call(admin, "admin", "disable_key", key, KeyId=key)
    call(app, "app", "encrypt", key, "failed", "DisabledException", KeyId=key, Plaintext=b"4111", EncryptionContext=ctx)
    call(admin, "admin", "enable_key", key, KeyId=key)
    call(app, "app", "encrypt", key, KeyId=key, Plaintext=b"4111", EncryptionContext=ctx)
    call(admin, "admin", "list_keys")
    wrong = boto3.client("kms", aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                         aws_secret_access_key="W" * 40, config=NO_RETRIES)
    call(wrong, None, "list_keys", None, "denied", "InvalidSignatureException")

    # A service known only by its mTLS certificate (no SigV4): its SPIFFE ID is the principal.
    spiffe = "spiffe://keyward.internal/ns/prod/sa/reporting"
    certs = tmp_path / "svc"
    subprocess.run(
        [keyward_bin, "cert", "issue", "--data-dir", server.data_dir, "--spiffe-id", spiffe, "--out", certs],
        check=True, capture_output=True,
    )
    context = ssl.create_default_context(cafile=os.environ["AWS_CA_BUNDLE"])
    context.load_cert_chain(certs / "cert.pem", certs / "key.pem")
    req = urllib.request.Request(
        os.environ["AWS_ENDPOINT_URL_KMS"] + "/", data=b"{}", method="POST",
        headers={"X-Amz-Target": "TrentService.ListKeys", "Content-Type": "application/x-amz-json-1.1"},
    )
    with urllib.request.urlopen(req, context=context) as r:
        made.append((r.headers["x-amzn-requestid"], spiffe, "ListKeys", "allowed", None))

    # The database copy follows the file within milliseconds of the answers.
    deadline = time.monotonic() + 5
    while True:
        out = subprocess.run(
            [keyward_bin, "audit", "query", "--data-dir", server.data_dir],
            capture_output=True, text=True, check=True,
        ).stdout
        records = [json.loads(line) for line in out.splitlines()]
        if len(records) >= len(made) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    ids = [r["request_id"] for r in records]
    assert ids == [m[0] for m in made], "the audit log does not hold exactly the requests made, in order"
    assert [r["seq"] for r in records] == list(range(1, len(made) + 1))
    for r, (rid, principal, op, outcome, key_id) in zip(records, made):
        assert (r["principal"], r["operation"], r["outcome"]) == (principal, op, outcome), r
        if key_id is not None:
            assert r["key_arn"].endswith("key/" + key_id), r
        assert r["source"].startswith("127.0.0.1:"), r
    assert records[-1]["tls_identity"] == spiffe
    by_op = {r["request_id"]: r for r in records}
    gdk = by_op[made[2][0]]
    assert gdk["key_version"] == 1 and gdk["context"]["purpose"].startswith("hmac-sha256:")
    assert by_op[made[4][0]]["error_type"] == "AccessDeniedException"

    verify = subprocess.run([keyward_bin, "audit", "verify", "--data-dir", server.data_dir],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert f"verified {len(made)} records" in verify.stdout, verify.stdout

    report = subprocess.run(
        [keyward_bin, "audit", "report", "--data-dir", server.data_dir, "--key", key, "--format", "json"],
        capture_output=True, text=True, check=True,
    ).stdout
    rows = {(r["principal"], r["operation"], r["outcome"]): r["count"] for r in json.loads(report)}
    assert rows[("app", "Decrypt", "allowed")] == 1
    assert rows[("intruder", "Decrypt", "denied")] == 1
    assert rows[("admin", "Decrypt", "denied")] == 1
    assert sum(rows.values()) == sum(1 for m in made if m[4] == key)
