//! Interoperability with the AWS Encryption SDK for Python (pinned in
//! tests/interop/requirements.txt), raw AES keyring on both sides: Python encrypts and
//! keyward decrypts, keyward encrypts and Python decrypts, for both suites and for empty
//! input, one byte, an exact multiple of the frame length and many frames.
//!
//! The venv comes from `tests/interop/setup-venv` (run by `.ci/run`). Without it the test
//! prints that it skipped, except under CI, where a missing peer is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The venv's Python with the AWS Encryption SDK importable, or `None` (and a skip notice).
fn python() -> Option<PathBuf> {
    let python = std::env::var_os("KEYWARD_INTEROP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/interop-venv/bin/python"));
    let ok = Command::new(&python)
        .args(["-c", "import aws_encryption_sdk"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    let why = format!("no Python with aws-encryption-sdk at {}", python.display());
    if std::env::var_os("CI").is_some() {
        panic!("{why}: .ci/run must run tests/interop/setup-venv first");
    }
    eprintln!("SKIPPED interop_python: {why} (run tests/interop/setup-venv)");
    None
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 4093) as u8).collect()
}

#[test]
fn interop_python_esdk_raw_aes_both_directions() {
    let Some(python) = python() else { return };
    let script = repo_root().join("tests/interop/esdk_raw.py");
    let kw = env!("CARGO_BIN_EXE_keyward");
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    run(Command::new(kw).args(["keygen", "--out"]).arg(p("key")));

    let frame = 4096;
    let sizes = [0, 1, 2 * frame, 300 * frame + 17];
    for suite in ["0478", "0578"] {
        for len in sizes {
            let what = format!("suite {suite}, {len} bytes");
            let pt = pattern(len);
            fs::write(p("pt"), &pt).unwrap();
            for f in ["py.enc", "kw.dec", "kw.enc", "py.dec"] {
                let _ = fs::remove_file(p(f));
            }

            // Python encrypts, keyward decrypts.
            run(Command::new(&python)
                .arg(&script)
                .args([
                    "encrypt",
                    "--suite",
                    suite,
                    "--frame-length",
                    &frame.to_string(),
                ])
                .args(["--context", "purpose=interop", "--context", "tenant=t1"])
                .arg("--key-file")
                .arg(p("key"))
                .arg("--in")
                .arg(p("pt"))
                .arg("--out")
                .arg(p("py.enc")));
            run(Command::new(kw)
                .args([
                    "decrypt",
                    "--require-context",
                    "purpose=interop",
                    "--require-context",
                    "tenant=t1",
                ])
                .arg("--key-file")
                .arg(p("key"))
                .arg("--in")
                .arg(p("py.enc"))
                .arg("--out")
                .arg(p("kw.dec")));
            assert_eq!(
                fs::read(p("kw.dec")).unwrap(),
                pt,
                "python -> keyward: {what}"
            );

            // keyward encrypts, Python decrypts.
            run(Command::new(kw)
                .args([
                    "encrypt",
                    "--suite",
                    &format!("0x{suite}"),
                    "--frame-length",
                    &frame.to_string(),
                ])
                .args(["--context", "purpose=interop", "--context", "tenant=t1"])
                .arg("--key-file")
                .arg(p("key"))
                .arg("--in")
                .arg(p("pt"))
                .arg("--out")
                .arg(p("kw.enc")));
            run(Command::new(&python)
                .arg(&script)
                .args([
                    "decrypt",
                    "--context",
                    "purpose=interop",
                    "--context",
                    "tenant=t1",
                ])
                .arg("--key-file")
                .arg(p("key"))
                .arg("--in")
                .arg(p("kw.enc"))
                .arg("--out")
                .arg(p("py.dec")));
            assert_eq!(
                fs::read(p("py.dec")).unwrap(),
                pt,
                "keyward -> python: {what}"
            );
        }
    }

    // Python refuses a keyward message under the wrong key, and keyward refuses a Python
    // message with a mismatched context: neither leaves an output file.
    run(Command::new(kw).args(["keygen", "--out"]).arg(p("other")));
    let status = Command::new(&python)
        .arg(&script)
        .arg("decrypt")
        .arg("--key-file")
        .arg(p("other"))
        .arg("--in")
        .arg(p("kw.enc"))
        .arg("--out")
        .arg(p("wrong.dec"))
        .output()
        .unwrap()
        .status;
    assert!(!status.success() && !p("wrong.dec").exists());
    let status = Command::new(kw)
        .args(["decrypt", "--require-context", "purpose=other"])
        .arg("--key-file")
        .arg(p("key"))
        .arg("--in")
        .arg(p("py.enc"))
        .arg("--out")
        .arg(p("wrong.dec"))
        .output()
        .unwrap()
        .status;
    assert!(!status.success() && !p("wrong.dec").exists());
}
