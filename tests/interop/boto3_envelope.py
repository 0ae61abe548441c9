"""Against a running `keyward serve`, configured only through the environment
(AWS_ENDPOINT_URL_KMS, AWS_CA_BUNDLE, AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY):

1. the envelope-encryption example as AWS documents it: GenerateDataKey with KeySpec
   AES_256 under an alias, AES-256-GCM locally with `cryptography`, then Decrypt;
2. requests keyward must refuse, each with the AWS error a client expects, changing nothing.

Prints one line per check; exits non-zero on the first failure.
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
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

kms = boto3.client("kms")

# Setup an administrator would do.
key = kms.create_key(Description="envelope example")["KeyMetadata"]
alias = "alias/envelope-" + uuid.uuid4().hex[:8]
kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])

# The example itself, unchanged from AWS's documentation.
data_key = kms.generate_data_key(KeyId=alias, KeySpec="AES_256")
nonce = os.urandom(12)
ciphertext = AESGCM(data_key["Plaintext"]).encrypt(nonce, b"card 4111 1111 1111 1111", None)
encrypted_key = data_key["CiphertextBlob"]
del data_key

plaintext_key = kms.decrypt(CiphertextBlob=encrypted_key)["Plaintext"]
assert AESGCM(plaintext_key).decrypt(nonce, ciphertext, None) == b"card 4111 1111 1111 1111"
print("envelope example: ok")

endpoint = os.environ["AWS_ENDPOINT_URL_KMS"]
region = os.environ["AWS_DEFAULT_REGION"]
context = ssl.create_default_context(cafile=os.environ["AWS_CA_BUNDLE"])
keys_before = len(kms.list_keys()["Keys"])


def raw(body, headers):
    req = urllib.request.Request(endpoint + "/", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, context=context) as r:
            return r.status, json.loads(r.read() or b"{}"), r.headers
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}"), e.headers


def signed(body, secret=None, when=None, tamper=None):
    creds = Credentials(os.environ["AWS_ACCESS_KEY_ID"], secret or os.environ["AWS_SECRET_ACCESS_KEY"])
    req = AWSRequest(
        method="POST",
        url=endpoint + "/",
        data=body,
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "TrentService.CreateKey"},
    )
    auth = SigV4Auth(creds, "kms", region)
    saved = botocore.auth.get_current_datetime
    if when is not None:  # sign as of another time
        botocore.auth.get_current_datetime = lambda *args, **kwargs: when
    try:
        auth.add_auth(req)
    finally:
        botocore.auth.get_current_datetime = saved
    return raw(tamper if tamper is not None else body, dict(req.headers.items()))


def expect(name, result, status, error_type):
    got_status, body, headers = result
    assert got_status == status, f"{name}: status {got_status}, body {body}"
    assert body.get("__type") == error_type, f"{name}: {body}"
    assert headers.get("X-Amzn-ErrorType") == error_type, f"{name}: header {headers.get('X-Amzn-ErrorType')}"
    assert headers.get("x-amzn-RequestId"), f"{name}: no request id"
    print(f"refused {name}: {error_type}")


body = b'{"Description": "must not be created"}'
expect("unsigned", raw(body, {"X-Amz-Target": "TrentService.CreateKey"}), 403, "MissingAuthenticationTokenException")
expect("wrong secret", signed(body, secret="x" * 40), 400, "InvalidSignatureException")
expect("tampered body", signed(body, tamper=b'{"Description": "tampered after signing"}'), 400, "InvalidSignatureException")
old = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(minutes=20)
expect("outside the clock window", signed(body, when=old), 400, "InvalidSignatureException")
expect("oversized body", signed(b'{"Description": "' + b"x" * (300 * 1024) + b'"}'), 400, "ValidationException")
status, _, _ = signed(body)
assert status == 200, "a correctly signed request must work"
assert len(kms.list_keys()["Keys"]) == keys_before + 1, "a refused request changed something"
print("nothing changed by refused requests: ok")
