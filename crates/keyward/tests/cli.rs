//! The `keyward` binary: keygen, encrypt and decrypt, and what a failure leaves behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn keyward(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(args)
        .output()
        .unwrap()
}

fn keyward_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command refused early exits without reading its input: ignore a broken pipe.
    let _ = child.stdin.take().unwrap().write_all(input);
    child.wait_with_output().unwrap()
}

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
    fn s(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_owned()
    }
    /// Names of the files in the directory, temporary ones included.
    fn names(&self) -> Vec<String> {
        let mut v: Vec<_> = fs::read_dir(self.0.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }
    fn key(&self, name: &str) -> String {
        let out = keyward(&["keygen", "--out", &self.s(name)]);
        assert!(out.status.success(), "{out:?}");
        self.s(name)
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Decrypting `message` must fail, say "decryption failed" without naming a check (a
/// tampered size field may instead trip a named limit), and leave no file behind.
fn assert_decrypt_fails(dir: &Dir, key: &str, message: &[u8], extra: &[&str], what: &str) {
    fs::write(dir.path("bad.enc"), message).unwrap();
    let before = dir.names();
    let (input, output) = (dir.s("bad.enc"), dir.s("bad.dec"));
    let mut args = vec![
        "decrypt",
        "--key-file",
        key,
        "--in",
        &input,
        "--out",
        &output,
    ];
    args.extend_from_slice(extra);
    let out = keyward(&args);
    assert_eq!(out.status.code(), Some(1), "{what}: {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr == "keyward: decryption failed\n"
            || stderr.starts_with("keyward: decryption failed: message exceeds a limit: "),
        "{what}: {stderr}"
    );
    assert_eq!(dir.names(), before, "{what}: decrypt left a file behind");
}

#[test]
fn keygen_writes_a_private_key_once() {
    let dir = Dir::new();
    let key = dir.key("k");
    let meta = fs::metadata(&key).unwrap();
    assert_eq!(meta.len(), 32);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let again = keyward(&["keygen", "--out", &key]);
    assert_eq!(again.status.code(), Some(1));
}

#[test]
fn file_and_stream_round_trips() {
    let dir = Dir::new();
    let key = dir.key("k");
    for (suite, len) in [
        ("0x0478", 0),
        ("0x0478", 200_000),
        ("0x0578", 1),
        ("0x0578", 3 * 65536),
    ] {
        let pt = pattern(len);
        fs::write(dir.path("p"), &pt).unwrap();
        let enc = keyward(&[
            "encrypt",
            "--key-file",
            &key,
            "--in",
            &dir.s("p"),
            "--out",
            &dir.s("p.enc"),
            "--context",
            "purpose=test",
            "--context",
            "tenant=a",
            "--suite",
            suite,
            "--frame-length",
            "4096",
        ]);
        assert!(enc.status.success(), "{enc:?}");
        let dec = keyward(&[
            "decrypt",
            "--key-file",
            &key,
            "--in",
            &dir.s("p.enc"),
            "--out",
            &dir.s("p.dec"),
            "--require-context",
            "purpose=test",
        ]);
        assert!(dec.status.success(), "{dec:?}");
        assert_eq!(fs::read(dir.path("p.dec")).unwrap(), pt);

        let enc = keyward_stdin(&["encrypt", "--key-file", &key, "--suite", suite], &pt);
        assert!(enc.status.success());
        let dec = keyward_stdin(
            &["decrypt", "--key-file", &key, "--in", "-", "--out", "-"],
            &enc.stdout,
        );
        assert!(dec.status.success());
        assert_eq!(dec.stdout, pt);
    }
}

#[test]
fn several_key_files_any_one_decrypts() {
    let dir = Dir::new();
    let (a, b) = (dir.key("a"), dir.key("b"));
    let enc = keyward_stdin(&["encrypt", "--key-file", &a, "--key-file", &b], b"both");
    assert!(enc.status.success());
    for k in [&a, &b] {
        let dec = keyward_stdin(&["decrypt", "--key-file", k], &enc.stdout);
        assert_eq!(dec.stdout, b"both");
    }
}

#[test]
fn fail_tampering_truncation_reordering_wrong_key_and_context() {
    let dir = Dir::new();
    let key = dir.key("k");
    let other = dir.key("other");
    for suite in ["0x0478", "0x0578"] {
        let pt = pattern(4 * 64 + 10);
        let enc = keyward_stdin(
            &[
                "encrypt",
                "--key-file",
                &key,
                "--suite",
                suite,
                "--frame-length",
                "64",
                "--context",
                "a=1",
            ],
            &pt,
        );
        let msg = enc.stdout;
        for i in 0..msg.len() {
            let mut m = msg.clone();
            m[i] ^= 0x10;
            assert_decrypt_fails(&dir, &key, &m, &[], &format!("{suite} flip {i}"));
        }
        // The body starts after the header; frames are 96 bytes (4 + 12 + 64 + 16).
        let body = msg.len()
            - (4 * 96 + 4 + 4 + 12 + 4 + 10 + 16)
            - if suite == "0x0578" {
                2 + sig_len(&msg)
            } else {
                0
            };
        for cut in (0..=4).map(|i| body + i * 96) {
            assert_decrypt_fails(
                &dir,
                &key,
                &msg[..cut],
                &[],
                &format!("{suite} cut at {cut}"),
            );
        }
        let frame = |i: usize| &msg[body + i * 96..body + (i + 1) * 96];
        let swapped = [&msg[..body], frame(1), frame(0), &msg[body + 2 * 96..]].concat();
        let duplicated = [&msg[..body + 96], frame(0), &msg[body + 96..]].concat();
        assert_decrypt_fails(&dir, &key, &swapped, &[], "swapped frames");
        assert_decrypt_fails(&dir, &key, &duplicated, &[], "duplicated frame");
        assert_decrypt_fails(&dir, &other, &msg, &[], "wrong key");
        assert_decrypt_fails(
            &dir,
            &key,
            &msg,
            &["--require-context", "a=2"],
            "context mismatch",
        );
        assert_decrypt_fails(
            &dir,
            &key,
            &msg,
            &["--require-context", "b=1"],
            "missing context",
        );
    }
}

/// The signature length at the end of a signed message (its footer is 2 + length bytes).
fn sig_len(msg: &[u8]) -> usize {
    (100..=110)
        .find(|&n| {
            msg.len() > n + 2
                && u16::from_be_bytes([msg[msg.len() - n - 2], msg[msg.len() - n - 1]]) as usize
                    == n
        })
        .unwrap()
}

#[test]
fn fail_to_stdout_exits_non_zero_after_partial_output() {
    let dir = Dir::new();
    let key = dir.key("k");
    let pt = pattern(3 * 1024 * 1024 + 100);
    let enc = keyward_stdin(&["encrypt", "--key-file", &key], &pt);
    let mut m = enc.stdout;
    let n = m.len();
    m[n - 20] ^= 1; // in the last frame's tag
    let dec = keyward_stdin(&["decrypt", "--key-file", &key], &m);
    assert_eq!(dec.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&dec.stderr).starts_with("keyward: decryption failed"));
    assert!(pt.starts_with(&dec.stdout) && dec.stdout.len() < pt.len());
}

#[test]
fn bad_settings_exit_64_and_name_the_setting() {
    let dir = Dir::new();
    let key = dir.key("k");
    fs::write(dir.path("short"), [0u8; 31]).unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["encrypt", "--key-file", &dir.s("short")], "--key-file"),
        (&["encrypt", "--key-file", &dir.s("missing")], "--key-file"),
        (
            &["encrypt", "--key-file", &key, "--suite", "0x0014"],
            "--suite",
        ),
        (
            &["encrypt", "--key-file", &key, "--frame-length", "0"],
            "--frame-length",
        ),
        (
            &["encrypt", "--key-file", &key, "--context", "aws-crypto-x=1"],
            "aws-crypto-",
        ),
    ];
    for (args, named) in cases {
        let out = keyward_stdin(args, b"x");
        assert_eq!(out.status.code(), Some(64), "{args:?}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(named),
            "{args:?}: {out:?}"
        );
    }
    let same = keyward(&["encrypt", "--key-file", &key, "--in", &key, "--out", &key]);
    assert_eq!(same.status.code(), Some(64));
}

#[test]
fn limits_are_named() {
    let dir = Dir::new();
    let key = dir.key("k");
    let enc = keyward_stdin(
        &[
            "encrypt",
            "--key-file",
            &key,
            "--key-file",
            &key,
            "--key-file",
            &key,
        ],
        b"x",
    );
    let dec = keyward_stdin(
        &[
            "decrypt",
            "--key-file",
            &key,
            "--max-encrypted-data-keys",
            "2",
        ],
        &enc.stdout,
    );
    assert_eq!(dec.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&dec.stderr).contains("more than 2 encrypted data keys"));
}

/// On a terminal, a large input gets a progress bar on stderr; without a terminal, none.
#[test]
fn progress_bar_on_a_terminal_for_large_inputs() {
    if Command::new("script").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "script (util-linux) is missing"
        );
        eprintln!("SKIPPED progress bar test: no `script`");
        return;
    }
    let dir = Dir::new();
    let key = dir.key("k");
    let big = dir.path("big");
    let f = fs::File::create(&big).unwrap();
    f.set_len(65 * 1024 * 1024).unwrap();
    let encrypt = format!(
        "{} encrypt --key-file {key} --in {} --out {}",
        env!("CARGO_BIN_EXE_keyward"),
        big.display(),
        dir.s("big.enc")
    );
    // `script` runs the command on a pseudo-terminal and copies what it shows to stdout.
    let shown = Command::new("script")
        .args(["-qec", &encrypt, "/dev/null"])
        .output()
        .unwrap();
    assert!(shown.status.success(), "{shown:?}");
    let screen = String::from_utf8_lossy(&shown.stdout);
    assert!(
        screen.contains("MiB"),
        "no progress bar on the terminal: {screen:?}"
    );
    // Not on a terminal: nothing on stderr.
    let quiet = Command::new("sh")
        .args(["-c", &format!("{encrypt} 2>&1")])
        .output()
        .unwrap();
    assert!(quiet.status.success());
    assert!(
        quiet.stdout.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&quiet.stdout)
    );
}
