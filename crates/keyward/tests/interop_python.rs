//! Interoperability with the AWS Encryption SDK for Python (pinned in
//! tests/interop/requirements.txt), raw AES keyring on both sides: Python encrypts and
//! keyward decrypts, keyward encrypts and Python decrypts, for both suites and for empty
//! input, one byte, an exact multiple of the frame length and many frames.
//!
//! The venv comes from `tests/interop/setup-venv` (run by `.ci/run`). Without it the test
//! prints that it skipped, except under CI, where a missing peer is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

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

/// `keyward OP --key-file KEY --in IN --out OUT`.
fn keyward(op: &str, key: &Path, input: &Path, output: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyward"));
    cmd.arg(op)
        .arg("--key-file")
        .arg(key)
        .arg("--in")
        .arg(input)
        .arg("--out")
        .arg(output);
    cmd
}

/// `python esdk_raw.py OP --key-file KEY --in IN --out OUT`.
fn esdk(python: &Path, op: &str, key: &Path, input: &Path, output: &Path) -> Command {
    let mut cmd = Command::new(python);
    cmd.arg(common::repo_root().join("tests/interop/esdk_raw.py"))
        .arg(op);
    cmd.arg("--key-file")
        .arg(key)
        .arg("--in")
        .arg(input)
        .arg("--out")
        .arg(output);
    cmd
}

#[test]
fn interop_python_esdk_raw_aes_both_directions() {
    let Some(python) = common::python("aws_encryption_sdk", "interop_python") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let (key, other) = (p("key"), p("other"));
    for k in [&key, &other] {
        run(Command::new(env!("CARGO_BIN_EXE_keyward"))
            .arg("keygen")
            .arg("--out")
            .arg(k));
    }
    let context = ["--context", "purpose=interop", "--context", "tenant=t1"];
    let required = [
        "--require-context",
        "purpose=interop",
        "--require-context",
        "tenant=t1",
    ];

    let frame = 4096;
    for suite in ["0478", "0578"] {
        for len in [0, 1, 2 * frame, 300 * frame + 17] {
            let what = format!("suite {suite}, {len} bytes");
            let pt = pattern(len);
            fs::write(p("pt"), &pt).unwrap();
            let framing = ["--frame-length".to_owned(), frame.to_string()];

            // Python encrypts, keyward decrypts.
            run(esdk(&python, "encrypt", &key, &p("pt"), &p("py.enc"))
                .args(["--suite", suite])
                .args(&framing)
                .args(context));
            run(keyward("decrypt", &key, &p("py.enc"), &p("kw.dec")).args(required));
            assert_eq!(
                fs::read(p("kw.dec")).unwrap(),
                pt,
                "python -> keyward: {what}"
            );

            // keyward encrypts, Python decrypts.
            run(keyward("encrypt", &key, &p("pt"), &p("kw.enc"))
                .args(["--suite", &format!("0x{suite}")])
                .args(&framing)
                .args(context));
            run(esdk(&python, "decrypt", &key, &p("kw.enc"), &p("py.dec")).args(context));
            assert_eq!(
                fs::read(p("py.dec")).unwrap(),
                pt,
                "keyward -> python: {what}"
            );
        }
    }

    // Python refuses a keyward message under the wrong key, and keyward refuses a Python
    // message with a mismatched context: neither leaves an output file.
    let out = esdk(&python, "decrypt", &other, &p("kw.enc"), &p("wrong"))
        .output()
        .unwrap();
    assert!(!out.status.success() && !p("wrong").exists());
    let out = keyward("decrypt", &key, &p("py.enc"), &p("wrong"))
        .args(["--require-context", "purpose=other"])
        .output()
        .unwrap();
    assert!(!out.status.success() && !p("wrong").exists());
}
