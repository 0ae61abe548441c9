"""Fixtures for the interop suite: each test module gets a freshly started `keyward serve`
in its own temporary data directory, and clients configured only through the `export`
lines it prints.

Run from the repository root with the pinned venv (tests/interop/setup-venv):

    KEYWARD_BIN=target/debug/keyward target/interop-venv/bin/python -m pytest tests/interop

`cargo nextest` runs it this way (crates/keyward/tests/serve.rs, `pytest_interop_suite`).

With KEYWARD_TEST_DATABASE_URLS (space-separated PostgreSQL URLs of empty databases, one
per module), each module's server keeps its records in the next database instead of
SQLite, and KEYWARD_DATABASE_URL points the module's `keyward` commands at it too
(crates/keyward/tests/serve.rs, `pytest_interop_suite_on_postgres`).
"""

import os
import pathlib
import shutil
import signal
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def keyward_bin():
    path = pathlib.Path(os.environ.get("KEYWARD_BIN", ROOT / "target/debug/keyward"))
    if not path.is_file():
        pytest.fail(f"no keyward binary at {path}: build it or set KEYWARD_BIN")
    return path


class Server:
    def __init__(self, keyward_bin, data_dir, log_level="warn"):
        self.bin = keyward_bin
        self.data_dir = data_dir
        self.log_path = data_dir.parent / "server.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [keyward_bin, "serve", "--data-dir", data_dir, "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env={**os.environ, "KEYWARD_LOG": log_level},
        )
        self.env = {}
        for line in self.proc.stdout:
            if line.startswith("export ") and "=" in line:
                name, value = line[len("export ") :].strip().split("=", 1)
                self.env[name] = value
            if line.startswith("export AWS_SECRET_ACCESS_KEY=") or line.startswith(". "):
                break
        if "AWS_ENDPOINT_URL_KMS" not in self.env:
            self.proc.kill()
            raise RuntimeError(f"keyward serve printed no endpoint: {self.env}")

    def stop(self):
        """SIGTERM: a graceful stop, which must exit 0."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(keyward_bin, tmp_path_factory, request):
    """A fresh `keyward serve` per test module; a module may set KEYWARD_LOG (its log
    level, default warn). Its log is kept in `server.log_path`."""
    level = getattr(request.module, "KEYWARD_LOG", "warn")
    database = next(_databases, None)
    if database is not None:
        os.environ["KEYWARD_DATABASE_URL"] = database
    try:
        s = Server(keyward_bin, tmp_path_factory.mktemp("keyward") / "data", level)
        s.database = database
        yield s
        if s.proc.poll() is None:
            assert s.stop() == 0, "keyward serve did not stop cleanly on SIGTERM"
        s.log.close()
    finally:
        os.environ.pop("KEYWARD_DATABASE_URL", None)


# One empty PostgreSQL database per module, when given.
_databases = iter(os.environ.get("KEYWARD_TEST_DATABASE_URLS", "").split())


@pytest.fixture
def client_env(server, monkeypatch):
    """The process environment a boto3 or aws-cli user would have after pasting the
    printed `export` lines, and nothing else of AWS's."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name, value in server.env.items():
        monkeypatch.setenv(name, value)
    # boto3's default session caches the credentials it first found: start afresh.
    import boto3

    boto3.DEFAULT_SESSION = None
    return dict(os.environ)


@pytest.fixture(scope="module")
def sslyze():
    """The pinned sslyze, in its own venv (target/sslyze-venv)."""
    path = pathlib.Path(os.environ.get("KEYWARD_SSLYZE", ROOT / "target/sslyze-venv/bin/sslyze"))
    if not path.exists():
        pytest.fail(f"no sslyze at {path}: run tests/interop/setup-venv")
    return str(path)


def tool(name):
    """A console script of this venv (aws, aws-encryption-cli)."""
    import sys

    path = pathlib.Path(sys.executable).with_name(name)
    return str(path) if path.exists() else shutil.which(name)
