"""The AWS Encryption CLI (aws-encryption-sdk-cli 4.3.0, pinned) and `keyward` read each
other's files, through a keyward KMS key, in both committing suites and over many frames."""

import subprocess

import boto3
import pytest

from conftest import tool

PLAINTEXT = bytes(i * 13 % 251 for i in range(300 * 1024 + 7))


@pytest.fixture(scope="module")
def arn(server):
    kms = boto3.client(
        "kms",
        endpoint_url=server.env["AWS_ENDPOINT_URL_KMS"],
        verify=server.env["AWS_CA_BUNDLE"],
        region_name=server.env["AWS_DEFAULT_REGION"],
        aws_access_key_id=server.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=server.env["AWS_SECRET_ACCESS_KEY"],
    )
    key = kms.create_key()["KeyMetadata"]
    kms.create_alias(AliasName="alias/files", TargetKeyId=key["KeyId"])
    return key["Arn"]


def run(args, env):
    out = subprocess.run(args, capture_output=True, text=True, env=env)
    assert out.returncode == 0, f"{args}: {out.stderr}"


@pytest.mark.parametrize(
    "suite, algorithm",
    [("0x0478", "AES_256_GCM_HKDF_SHA512_COMMIT_KEY"), ("0x0578", "AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384")],
)
def test_files_cross_both_ways(server, client_env, arn, tmp_path, suite, algorithm):
    pt = tmp_path / "pt"
    pt.write_bytes(PLAINTEXT)
    esdk = tool("aws-encryption-cli")

    # keyward encrypts through the KMS (by alias); the AWS Encryption CLI decrypts.
    run(
        [server.bin, "encrypt", "--kms-key", "alias/files", "--suite", suite, "--frame-length", "4096"]
        + ["--context", "purpose=interop", "--in", pt, "--out", tmp_path / "kw.enc"],
        client_env,
    )
    run(
        [esdk, "--decrypt", "-S", "-w", f"key={arn}", "-c", "purpose=interop"]
        + ["-i", tmp_path / "kw.enc", "-o", tmp_path / "cli.dec"],
        client_env,
    )
    # The CLI exits 0 even when it skips a file: compare the output itself.
    assert (tmp_path / "cli.dec").read_bytes() == PLAINTEXT

    # The AWS Encryption CLI encrypts with the keyward key; keyward decrypts.
    run(
        [esdk, "--encrypt", "-S", "-w", f"key={arn}", "-c", "purpose=interop"]
        + ["--algorithm", algorithm, "--frame-length", "4096", "-i", pt, "-o", tmp_path / "cli.enc"],
        client_env,
    )
    run(
        [server.bin, "decrypt", "--kms-key", arn, "--require-context", "purpose=interop"]
        + ["--in", tmp_path / "cli.enc", "--out", tmp_path / "kw.dec"],
        client_env,
    )
    assert (tmp_path / "kw.dec").read_bytes() == PLAINTEXT


def test_a_wrong_context_is_refused_and_leaves_no_file(server, client_env, arn, tmp_path):
    pt = tmp_path / "pt"
    pt.write_bytes(b"x" * 1000)
    run([server.bin, "encrypt", "--kms-key", arn, "--context", "a=b", "--in", pt, "--out", tmp_path / "enc"], client_env)
    out = subprocess.run(
        [server.bin, "decrypt", "--kms-key", arn, "--require-context", "a=c"]
        + ["--in", tmp_path / "enc", "--out", tmp_path / "dec"],
        capture_output=True,
        env=client_env,
    )
    assert out.returncode != 0
    assert not (tmp_path / "dec").exists()
