"""boto3 against a fresh `keyward serve`, configured only through the environment it
prints (AWS_ENDPOINT_URL_KMS, AWS_CA_BUNDLE, AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY):

- the envelope-encryption example exactly as AWS documents it;
- requests keyward must refuse, each with the AWS error a client expects, changing nothing.
"""

import datetime
import json
import os
import ssl
import urllib.error
import urllib.request
import uuid

import boto3
import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def test_first_start_prints_what_a_client_needs(server):
    assert sorted(server.env) == [
        "AWS_ACCESS_KEY_ID",
        "AWS_CA_BUNDLE",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL_KMS",
        "AWS_SECRET_ACCESS_KEY",
    ]
    assert server.env["AWS_ENDPOINT_URL_KMS"].startswith("https://127.0.0.1:")
    # On PostgreSQL the records are in the database, not in keyward.db.
    for name in ["ca.pem", "admin.env", "root.key"] + ([] if server.database else ["keyward.db"]):
        assert (server.data_dir / name).exists(), f"{name} not created"
    assert (server.data_dir / "admin.env").stat().st_mode & 0o077 == 0


def test_envelope_encryption_example_unchanged(client_env):
    kms = boto3.client("kms")
    # Setup an administrator would do.
    key = kms.create_key(Description="envelope example")["KeyMetadata"]
    alias = "alias/envelope-" + uuid.uuid4().hex[:8]
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])

    # The example itself, as AWS's documentation has it.
    data_key = kms.generate_data_key(KeyId=alias, KeySpec="AES_256")
    nonce = os.urandom(12)
    ciphertext = AESGCM(data_key["Plaintext"]).encrypt(nonce, b"card 4111 1111 1111 1111", None)
    encrypted_key = data_key["CiphertextBlob"]
    del data_key

    plaintext_key = kms.decrypt(CiphertextBlob=encrypted_key)["Plaintext"]
    assert AESGCM(plaintext_key).decrypt(nonce, ciphertext, None) == b"card 4111 1111 1111 1111"


def _raw(body, headers):
    req = urllib.request.Request(
        os.environ["AWS_ENDPOINT_URL_KMS"] + "/", data=body, headers=headers, method="POST"
    )
    context = ssl.create_default_context(cafile=os.environ["AWS_CA_BUNDLE"])
    try:
        with urllib.request.urlopen(req, context=context) as r:
            return r.status, json.loads(r.read() or b"{}"), r.headers
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}"), e.headers


def _signed(body, secret=None, when=None, tamper=None):
    creds = Credentials(os.environ["AWS_ACCESS_KEY_ID"], secret or os.environ["AWS_SECRET_ACCESS_KEY"])
    req = AWSRequest(
        method="POST",
        url=os.environ["AWS_ENDPOINT_URL_KMS"] + "/",
        data=body,
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "TrentService.CreateKey"},
    )
    auth = SigV4Auth(creds, "kms", os.environ["AWS_DEFAULT_REGION"])
    saved = botocore.auth.get_current_datetime
    if when is not None:  # sign as of another time
        botocore.auth.get_current_datetime = lambda *args, **kwargs: when
    try:
        auth.add_auth(req)
    finally:
        botocore.auth.get_current_datetime = saved
    return _raw(tamper if tamper is not None else body, dict(req.headers.items()))


BODY = b'{"Description": "must not be created"}'
TWENTY_MINUTES_AGO = datetime.timedelta(minutes=-20)


@pytest.mark.parametrize(
    "request_, status, error_type",
    [
        (lambda: _raw(BODY, {"X-Amz-Target": "TrentService.CreateKey"}), 403, "MissingAuthenticationTokenException"),
        (lambda: _signed(BODY, secret="x" * 40), 400, "InvalidSignatureException"),
        (lambda: _signed(BODY, tamper=b'{"Description": "tampered after signing"}'), 400, "InvalidSignatureException"),
        (
            lambda: _signed(
                BODY,
                when=datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) + TWENTY_MINUTES_AGO,
            ),
            400,
            "InvalidSignatureException",
        ),
        (lambda: _signed(b'{"Description": "' + b"x" * (300 * 1024) + b'"}'), 400, "ValidationException"),
    ],
    ids=["unsigned", "wrong secret", "body tampered after signing", "date outside the window", "oversized body"],
)
def test_refused_requests_change_nothing(client_env, request_, status, error_type):
    kms = boto3.client("kms")
    keys_before = len(kms.list_keys()["Keys"])
    got_status, body, headers = request_()
    assert got_status == status, body
    assert body.get("__type") == error_type
    assert headers.get("X-Amzn-ErrorType") == error_type
    assert headers.get("x-amzn-RequestId")
    assert len(kms.list_keys()["Keys"]) == keys_before, "a refused request changed something"
    # The same request, signed properly, is accepted: the refusal was for the reason named.
    assert _signed(BODY)[0] == 200
    assert len(kms.list_keys()["Keys"]) == keys_before + 1


def test_unknown_operation_and_malformed_body(client_env):
    status, body, _ = _signed(b"[1, 2")
    assert status == 400 and body["__type"] == "SerializationException", body
    kms = boto3.client("kms")
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.describe_key(KeyId="alias/does-not-exist")
