"""No secret in any log: after a workload that handles data keys, plaintexts and access-key
secrets (allowed and refused requests, a second access key), neither the server's log (at
debug level), nor /metrics, nor the audit log (its JSON-lines copy and an export of the
database's) contains any of them, in any encoding a log might use. Encryption-context
values reach the audit log only HMAC'd."""

import base64
import itertools
import os
import ssl
import subprocess
import time
import urllib.request

import boto3
import pytest

KEYWARD_LOG = "debug"
# An encryption-context value the audit log must keep only as an HMAC.
CARD = "4111111111111111"


def encodings(secret: bytes):
    yield secret.hex()
    yield base64.b64encode(secret).decode()
    try:
        text = secret.decode()
        if len(text) >= 8:
            yield text
    except UnicodeDecodeError:
        pass


def test_no_secret_in_logs_or_metrics(server, client_env, keyward_bin):
    kms = boto3.client("kms")
    secrets = [os.environ["AWS_SECRET_ACCESS_KEY"].encode()]
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    for i in range(5):
        dk = kms.generate_data_key(KeyId=key, KeySpec="AES_256", EncryptionContext={"n": str(i), "card": CARD})
        secrets.append(dk["Plaintext"])
        again = kms.decrypt(CiphertextBlob=dk["CiphertextBlob"], EncryptionContext={"n": str(i), "card": CARD})
        assert again["Plaintext"] == dk["Plaintext"]
        with pytest.raises(kms.exceptions.InvalidCiphertextException):
            kms.decrypt(CiphertextBlob=dk["CiphertextBlob"], EncryptionContext={"n": "wrong"})
    plaintext = b"cardholder 4111 1111 1111 1111"
    secrets.append(plaintext)
    blob = kms.encrypt(KeyId=key, Plaintext=plaintext)["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == plaintext
    random = kms.generate_random(NumberOfBytes=32)["Plaintext"]
    secrets.append(random)

    # A second access key, used once, and a request signed with a wrong secret.
    made = subprocess.run(
        [keyward_bin, "access-key", "create", "--principal", "batch", "--data-dir", server.data_dir],
        capture_output=True, text=True, check=True,
    ).stdout
    exports = dict(line[len("export "):].split("=", 1) for line in made.splitlines() if line.startswith("export "))
    secrets.append(exports["AWS_SECRET_ACCESS_KEY"].encode())
    other = boto3.client(
        "kms",
        aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"],
    )
    with pytest.raises(Exception):
        other.encrypt(KeyId=key, Plaintext=b"x")  # not in the key's policy
    wrong = boto3.client(
        "kms", aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"], aws_secret_access_key="W" * 40
    )
    with pytest.raises(Exception):
        wrong.list_keys()
    secrets.append(b"W" * 40)

    root_key = (server.data_dir / "root.key").read_bytes()
    secrets.append(root_key)

    context = ssl.create_default_context(cafile=os.environ["AWS_CA_BUNDLE"])
    metrics = urllib.request.urlopen(os.environ["AWS_ENDPOINT_URL_KMS"] + "/metrics", context=context).read()
    server.log.flush()
    log = server.log_path.read_text()
    assert "GenerateDataKey" in log or "request" in log, "the debug log is not being written"
    secrets.append(CARD.encode())
    # The export reads the database copy, which follows the file within milliseconds.
    deadline = time.monotonic() + 5
    for attempt in itertools.count():
        exported = server.data_dir.parent / f"audit-export-{attempt}"
        subprocess.run(
            [keyward_bin, "audit", "export", "--data-dir", server.data_dir, "--out", exported],
            check=True, capture_output=True,
        )
        audit_export = (exported / "audit.jsonl").read_text()
        if server.database is not None:
            # On PostgreSQL the database is the log's one copy: no file sink.
            audit_file = audit_export
            break
        audit_file = (server.data_dir / "audit" / "audit.jsonl").read_text()
        if audit_export == audit_file or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert audit_file.count("\n") >= 20 and audit_export == audit_file, "the audit log is not being written"
    assert '"card":"hmac-sha256:' in audit_file
    for haystack, name in [
        (log, "server log"),
        (metrics.decode(), "/metrics"),
        (audit_file, "audit file"),
        (audit_export, "audit export"),
    ]:
        for s in secrets:
            for form in encodings(s):
                assert form not in haystack, f"a secret appears in the {name}"
