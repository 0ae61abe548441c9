"""The AWS Encryption SDK for Python with a raw AES-256 wrapping key, as a command.

    esdk_raw.py encrypt --key-file F --in IN --out OUT [--namespace N] [--name K]
                        [--suite 0478|0578] [--frame-length N] [--context k=v ...]
    esdk_raw.py decrypt --key-file F --in IN --out OUT [--namespace N] [--name K]
                        [--context k=v ...]

The key file holds 32 raw bytes. On decrypt, every --context pair must be in the message's
encryption context. Exit 0 on success; on failure, print one line, leave no OUT, exit 1.
The SDK wants --frame-length to be a multiple of 128 (it checks against the AES block
size in bits, not bytes); 0 makes a non-framed message.
"""

import argparse
import logging
import os
import sys

import aws_encryption_sdk
from aws_encryption_sdk.identifiers import (
    Algorithm,
    CommitmentPolicy,
    EncryptionKeyType,
    WrappingAlgorithm,
)
from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
from aws_encryption_sdk.key_providers.raw import RawMasterKey

SUITES = {
    "0478": Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
    "0578": Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384,
}


def run(a):
    with open(a.key_file, "rb") as f:
        key = f.read()
    if len(key) != 32:
        raise ValueError(f"key file holds {len(key)} bytes, not 32")
    context = {}
    for pair in a.context:
        k, sep, v = pair.partition("=")
        if not sep:
            raise ValueError(f"--context {pair!r} is not k=v")
        context[k] = v
    master_key = RawMasterKey(
        provider_id=a.namespace,
        key_id=a.name.encode(),
        wrapping_key=WrappingKey(
            wrapping_algorithm=WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING,
            wrapping_key=key,
            wrapping_key_type=EncryptionKeyType.SYMMETRIC,
        ),
    )
    client = aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    )
    with open(a.input, "rb") as f:
        data = f.read()
    if a.op == "encrypt":
        out, _ = client.encrypt(
            source=data,
            key_provider=master_key,
            encryption_context=context,
            algorithm=SUITES[a.suite],
            frame_length=a.frame_length,
        )
    else:
        out, header = client.decrypt(source=data, key_provider=master_key)
        for k, v in context.items():
            if header.encryption_context.get(k) != v:
                raise ValueError(f"encryption context lacks {k}={v}")
    with open(a.out, "wb") as f:
        f.write(out)


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit 1, like every other failure
        sys.exit(f"esdk_raw.py: {message}")


def main():
    p = Parser()
    p.add_argument("op", choices=["encrypt", "decrypt"])
    p.add_argument("--key-file", required=True)
    p.add_argument("--in", dest="input", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--namespace", default="keyward")
    p.add_argument("--name", default="default")
    p.add_argument("--suite", choices=sorted(SUITES), default="0578")
    p.add_argument("--frame-length", type=int, default=4096)
    p.add_argument("--context", action="append", default=[])
    a = p.parse_args()
    logging.disable(logging.CRITICAL)  # the SDK logs a traceback when a failed stream closes
    try:
        run(a)
    except Exception as e:  # noqa: BLE001 - any failure is a failed run
        print(f"esdk_raw.py {a.op} failed: {type(e).__name__}: {e}", file=sys.stderr)
        if os.path.lexists(a.out):
            os.remove(a.out)
        sys.exit(1)


if __name__ == "__main__":
    main()
