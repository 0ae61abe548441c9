"""aws-cli (v1, pinned) against a fresh `keyward serve`: keys, aliases, contexts,
re-encrypt, tags, rotation, paging, and the errors of disabled and pending-deletion keys."""

import base64
import json
import subprocess

import pytest

from conftest import tool


@pytest.fixture
def aws(client_env):
    def run(*args, ok=True):
        out = subprocess.run(
            [tool("aws"), "kms", *args, "--output", "json"], capture_output=True, text=True, env=client_env
        )
        if ok:
            assert out.returncode == 0, out.stderr
            return json.loads(out.stdout) if out.stdout.strip() else None
        assert out.returncode != 0, out.stdout
        return out.stderr

    return run


def test_aws_cli(aws, tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_bytes(b"cardholder data")
    plain_arg = f"fileb://{plain}"

    key_id = aws("create-key", "--description", "cli")["KeyMetadata"]["KeyId"]
    aws("create-alias", "--alias-name", "alias/cli", "--target-key-id", key_id)
    for ctx in [None, "purpose=test,team=pay"]:
        with_ctx = ["--encryption-context", ctx] if ctx else []
        blob = aws("encrypt", "--key-id", "alias/cli", "--plaintext", plain_arg, *with_ctx)["CiphertextBlob"]
        blob_file = tmp_path / "blob"
        blob_file.write_bytes(base64.b64decode(blob))
        blob_arg = f"fileb://{blob_file}"
        out = aws("decrypt", "--ciphertext-blob", blob_arg, *with_ctx)
        assert base64.b64decode(out["Plaintext"]) == b"cardholder data"
        assert out["KeyId"].endswith(key_id)
        if ctx:
            wrong = aws("decrypt", "--ciphertext-blob", blob_arg, "--encryption-context", "purpose=other", ok=False)
            assert "InvalidCiphertextException" in wrong
            re = aws(
                "re-encrypt",
                "--ciphertext-blob",
                blob_arg,
                "--source-encryption-context",
                ctx,
                "--destination-key-id",
                key_id,
            )
            assert re["CiphertextBlob"]

    aws("tag-resource", "--key-id", key_id, "--tags", "TagKey=env,TagValue=prod")
    assert aws("list-resource-tags", "--key-id", key_id)["Tags"] == [{"TagKey": "env", "TagValue": "prod"}]
    aws("enable-key-rotation", "--key-id", key_id)
    assert aws("get-key-rotation-status", "--key-id", key_id)["KeyRotationEnabled"] is True
    aws("rotate-key-on-demand", "--key-id", key_id)
    assert len(aws("list-key-rotations", "--key-id", key_id)["Rotations"]) == 1

    for _ in range(3):
        aws("create-key")
    page = aws("list-keys", "--max-items", "2")
    assert len(page["Keys"]) == 2 and page["NextToken"]
    everything = aws("list-keys", "--page-size", "2")  # the CLI follows every page itself
    assert len(everything["Keys"]) == 4

    aws("disable-key", "--key-id", key_id)
    assert "DisabledException" in aws("encrypt", "--key-id", key_id, "--plaintext", plain_arg, ok=False)
    aws("schedule-key-deletion", "--key-id", key_id, "--pending-window-in-days", "7")
    assert "KMSInvalidStateException" in aws("encrypt", "--key-id", key_id, "--plaintext", plain_arg, ok=False)
