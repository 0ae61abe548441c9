//! `keyward serve` end to end: first start in an empty data directory, a stock boto3
//! client configured only through the environment it prints, refused requests, SIGTERM.
//! Needs the pinned Python venv (tests/interop/setup-venv); skips without it, except in CI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

struct Server {
    child: Child,
    env: Vec<(String, String)>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `keyward serve` on a free port and reads the `export` lines it prints.
fn start(data_dir: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0"])
        .env("KEYWARD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut env = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some((k, v)) = line.strip_prefix("export ").and_then(|l| l.split_once('=')) {
            env.push((k.to_owned(), v.to_owned()));
        }
        if line.starts_with("export AWS_SECRET_ACCESS_KEY=") || line.starts_with(". ") {
            break;
        }
    }
    Server { child, env }
}

#[test]
fn boto3_envelope_example_and_refused_requests() {
    let Some(python) = common::python("boto3, cryptography", "serve tests") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = start(&data);
    assert_eq!(server.env.len(), 5, "banner: {:?}", server.env);
    for name in ["ca.pem", "admin.env", "root.key", "keyward.db"] {
        assert!(data.join(name).exists(), "{name} not created");
    }

    let out = Command::new(&python)
        .arg(common::repo_root().join("tests/interop/boto3_envelope.py"))
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .envs(server.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));

    // SIGTERM: a graceful stop with status 0.
    let pid = server.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(server.child.wait().unwrap().success());

    // A second start reuses everything: no new credentials.
    let again = start(&data);
    assert!(again.env.iter().all(|(k, _)| k != "AWS_SECRET_ACCESS_KEY"));
}

#[test]
fn bad_settings_exit_64_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    for (args, named) in [
        (vec!["--listen", "nonsense"], "listen"),
        (vec!["--region", "US EAST"], "region"),
        (vec!["--account", "12"], "account"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_keyward"))
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path().join("d"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(named),
            "{args:?}"
        );
        assert!(
            !dir.path().join("d").exists(),
            "{args:?}: created the data directory before validating"
        );
    }
}

/// TLS 1.3 only, HTTP/2 and HTTP/1.1 by ALPN; a client that will not go above TLS 1.2 is
/// refused, and one that never finishes its handshake is dropped.
#[test]
fn transport_tls13_only_http2_and_http1() {
    if Command::new("curl").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "curl is missing");
        eprintln!("SKIPPED transport test: no curl");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"));
    let get = |k: &str| {
        server
            .env
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let (endpoint, ca) = (get("AWS_ENDPOINT_URL_KMS"), get("AWS_CA_BUNDLE"));
    let curl = |extra: &[&str]| {
        Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code}",
                "--cacert",
                &ca,
            ])
            .args([
                "-X",
                "POST",
                "-H",
                "X-Amz-Target: TrentService.ListKeys",
                "--data",
                "{}",
            ])
            .args(extra)
            .arg(format!("{endpoint}/"))
            .output()
            .unwrap()
    };
    // Unsigned, so refused with 403, but over the protocol negotiated.
    assert_eq!(String::from_utf8_lossy(&curl(&["--http2"]).stdout), "2 403");
    assert_eq!(
        String::from_utf8_lossy(&curl(&["--http1.1"]).stdout),
        "1.1 403"
    );
    let old = curl(&["--tls-max", "1.2"]);
    assert!(!old.status.success(), "a TLS 1.2 client was served");

    // A client that connects and says nothing is dropped after the handshake timeout.
    let addr = endpoint.trim_start_matches("https://").to_owned();
    let mut idle = std::net::TcpStream::connect(&addr).unwrap();
    idle.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1];
    let n = std::io::Read::read(&mut idle, &mut buf).unwrap_or(0);
    assert_eq!(n, 0, "expected the server to close the idle connection");
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_secs(9) && waited < std::time::Duration::from_secs(25),
        "{waited:?}"
    );
}

/// `keyward access-key create|list|delete` against a running server: a new key works at
/// once, a deleted one is refused at once, and listing never shows secrets.
#[test]
fn access_keys_are_made_listed_and_revoked() {
    let Some(python) = common::python("boto3", "access key test") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start(&data);
    let kw = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_keyward"))
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap()
    };
    let created = kw(&["access-key", "create", "--principal", "app"]);
    assert!(created.status.success(), "{created:?}");
    let exports: Vec<(String, String)> = String::from_utf8_lossy(&created.stdout)
        .lines()
        .filter_map(|l| {
            l.strip_prefix("export ")?
                .split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect();
    assert_eq!(exports.len(), 2);
    let id = exports[0].1.clone();
    let secret = exports[1].1.clone();

    let listed = String::from_utf8_lossy(&kw(&["access-key", "list"]).stdout).into_owned();
    assert!(listed.contains(&format!("{id}\tapp")), "{listed}");
    assert!(!listed.contains(&secret), "list showed a secret");

    let call = || {
        let mut env: Vec<(String, String)> = server
            .env
            .iter()
            .filter(|(k, _)| !k.starts_with("AWS_ACCESS") && !k.starts_with("AWS_SECRET"))
            .cloned()
            .collect();
        env.extend(exports.iter().cloned());
        Command::new(&python)
            .args(["-c", "import boto3\ntry:\n    boto3.client('kms').list_keys(); print('ok')\nexcept Exception as e:\n    print(e.response['Error']['Code'])"])
            .env_remove("AWS_PROFILE")
            .envs(env)
            .output()
            .unwrap()
    };
    assert_eq!(String::from_utf8_lossy(&call().stdout).trim(), "ok");
    assert!(kw(&["access-key", "delete", &id]).status.success());
    // The server re-reads a key it has seen at most FRESH_FOR later.
    std::thread::sleep(keyward_server::access::FRESH_FOR + std::time::Duration::from_millis(200));
    assert_eq!(
        String::from_utf8_lossy(&call().stdout).trim(),
        "UnrecognizedClientException"
    );
    assert_eq!(kw(&["access-key", "delete", &id]).status.code(), Some(1));
    let nowhere = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["access-key", "list", "--data-dir"])
        .arg(dir.path().join("nothing-here"))
        .output()
        .unwrap();
    assert_eq!(nowhere.status.code(), Some(64));
}

/// The KMS keyring against `keyward serve`, both directions with the AWS Encryption CLI
/// 4.3.0 (pinned): keyward encrypts with `--kms-key` and the CLI decrypts; the CLI
/// encrypts with a keyward key and keyward decrypts. Both suites, many frames.
#[test]
fn aws_encryption_cli_reads_and_writes_with_a_keyward_kms_key() {
    let Some(python) = common::python("boto3, aws_encryption_sdk_cli", "AWS Encryption CLI test")
    else {
        return;
    };
    let esdk_cli = python.with_file_name("aws-encryption-cli");
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let server = start(&p("data"));
    let env: Vec<(String, String)> = server.env.clone();

    let created = Command::new(&python)
        .args([
            "-c",
            "import boto3\nk = boto3.client('kms')\nm = k.create_key()['KeyMetadata']\n\
             k.create_alias(AliasName='alias/files', TargetKeyId=m['KeyId'])\nprint(m['Arn'])",
        ])
        .env_remove("AWS_PROFILE")
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let arn = String::from_utf8_lossy(&created.stdout).trim().to_owned();

    let pt: Vec<u8> = (0..300 * 1024 + 7).map(|i| (i * 13 % 251) as u8).collect();
    std::fs::write(p("pt"), &pt).unwrap();
    let run = |cmd: &mut Command| {
        let out = cmd
            .env_remove("AWS_PROFILE")
            .envs(env.iter().cloned())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    for (suite, algorithm) in [
        ("0x0478", "AES_256_GCM_HKDF_SHA512_COMMIT_KEY"),
        ("0x0578", "AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384"),
    ] {
        for f in ["kw.enc", "cli.dec", "cli.enc", "kw.dec"] {
            let _ = std::fs::remove_file(p(f));
        }
        // keyward encrypts through the KMS (by alias); the AWS Encryption CLI decrypts.
        run(Command::new(env!("CARGO_BIN_EXE_keyward"))
            .args([
                "encrypt",
                "--kms-key",
                "alias/files",
                "--suite",
                suite,
                "--frame-length",
                "4096",
            ])
            .args(["--context", "purpose=interop"])
            .arg("--in")
            .arg(p("pt"))
            .arg("--out")
            .arg(p("kw.enc")));
        run(Command::new(&esdk_cli)
            .args([
                "--decrypt",
                "-S",
                "-w",
                &format!("key={arn}"),
                "-c",
                "purpose=interop",
            ])
            .arg("-i")
            .arg(p("kw.enc"))
            .arg("-o")
            .arg(p("cli.dec")));
        // The CLI exits 0 even when it skips a file: check the output itself.
        assert_eq!(
            std::fs::read(p("cli.dec")).unwrap(),
            pt,
            "keyward -> AWS Encryption CLI, {suite}"
        );

        // The AWS Encryption CLI encrypts with the keyward key; keyward decrypts.
        run(Command::new(&esdk_cli)
            .args([
                "--encrypt",
                "-S",
                "-w",
                &format!("key={arn}"),
                "-c",
                "purpose=interop",
            ])
            .args(["--algorithm", algorithm, "--frame-length", "4096"])
            .arg("-i")
            .arg(p("pt"))
            .arg("-o")
            .arg(p("cli.enc")));
        run(Command::new(env!("CARGO_BIN_EXE_keyward"))
            .args([
                "decrypt",
                "--kms-key",
                &arn,
                "--require-context",
                "purpose=interop",
            ])
            .arg("--in")
            .arg(p("cli.enc"))
            .arg("--out")
            .arg(p("kw.dec")));
        assert_eq!(
            std::fs::read(p("kw.dec")).unwrap(),
            pt,
            "AWS Encryption CLI -> keyward, {suite}"
        );
    }
}

/// `keyward key ...` administers keys over the service's API with the printed credentials.
#[test]
fn key_admin_commands_over_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"));
    let key = |args: &[&str]| -> (bool, serde_json::Value, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_keyward"))
            .arg("key")
            .args(args)
            .env_remove("AWS_PROFILE")
            .envs(server.env.iter().cloned())
            .output()
            .unwrap();
        let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        (
            out.status.success(),
            json,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, created, err) = key(&[
        "create",
        "--description",
        "payments",
        "--alias",
        "alias/payments",
    ]);
    assert!(ok, "{err}");
    let id = created["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    assert_eq!(
        key(&["describe", "alias/payments"]).1["KeyMetadata"]["KeyId"],
        id.as_str()
    );
    assert!(
        key(&["list"]).1["Keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["KeyId"] == id.as_str())
    );
    assert!(key(&["alias", "alias/other", "alias/payments"]).0);
    assert_eq!(
        key(&["describe", "alias/other"]).1["KeyMetadata"]["KeyId"],
        id.as_str()
    );
    assert!(key(&["rotate", "alias/payments"]).0);
    assert!(key(&["disable", "alias/payments"]).0);
    assert_eq!(
        key(&["describe", &id]).1["KeyMetadata"]["KeyState"],
        "Disabled"
    );
    assert!(key(&["enable", &id]).0);
    let (ok, scheduled, _) = key(&["schedule-deletion", &id, "--days", "7"]);
    assert!(ok);
    assert_eq!(scheduled["PendingWindowInDays"], 7);
    assert!(key(&["cancel-deletion", &id]).0);
    assert_eq!(
        key(&["describe", &id]).1["KeyMetadata"]["KeyState"],
        "Disabled"
    );
    let (ok, _, err) = key(&["describe", "alias/none"]);
    assert!(!ok && err.contains("NotFoundException"), "{err}");
}

/// aws-cli v1 (pinned), configured only by the printed environment.
#[test]
fn aws_cli_against_keyward() {
    let Some(python) = common::python("awscli", "aws-cli test") else {
        return;
    };
    let aws_bin = python.with_file_name("aws");
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"));
    let aws = |args: &[&str]| -> Result<serde_json::Value, String> {
        let out = Command::new(&aws_bin)
            .arg("kms")
            .args(args)
            .args(["--output", "json"])
            .env_remove("AWS_PROFILE")
            .envs(server.env.iter().cloned())
            .output()
            .unwrap();
        if out.status.success() {
            Ok(serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    };
    let plain = dir.path().join("plain.txt");
    std::fs::write(&plain, b"cardholder data").unwrap();
    let plain_arg = format!("fileb://{}", plain.display());

    let id = aws(&["create-key", "--description", "cli"]).unwrap()["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    aws(&[
        "create-alias",
        "--alias-name",
        "alias/cli",
        "--target-key-id",
        &id,
    ])
    .unwrap();
    for ctx in [None, Some("purpose=test,team=pay")] {
        let mut enc = vec![
            "encrypt",
            "--key-id",
            "alias/cli",
            "--plaintext",
            &plain_arg,
        ];
        if let Some(c) = ctx {
            enc.extend(["--encryption-context", c]);
        }
        let blob = aws(&enc).unwrap()["CiphertextBlob"]
            .as_str()
            .unwrap()
            .to_owned();
        let blob_file = dir.path().join("blob");
        std::fs::write(&blob_file, base64_decode(&blob)).unwrap();
        let blob_arg = format!("fileb://{}", blob_file.display());
        let mut dec = vec!["decrypt", "--ciphertext-blob", &blob_arg];
        if let Some(c) = ctx {
            dec.extend(["--encryption-context", c]);
        }
        let out = aws(&dec).unwrap();
        assert_eq!(
            base64_decode(out["Plaintext"].as_str().unwrap()),
            b"cardholder data"
        );
        if ctx.is_some() {
            let wrong = aws(&[
                "decrypt",
                "--ciphertext-blob",
                &blob_arg,
                "--encryption-context",
                "purpose=other",
            ]);
            assert!(wrong.unwrap_err().contains("InvalidCiphertextException"));
            let re = aws(&[
                "re-encrypt",
                "--ciphertext-blob",
                &blob_arg,
                "--source-encryption-context",
                c_str(ctx),
                "--destination-key-id",
                &id,
            ])
            .unwrap();
            assert!(re["CiphertextBlob"].is_string());
        }
    }
    aws(&[
        "tag-resource",
        "--key-id",
        &id,
        "--tags",
        "TagKey=env,TagValue=prod",
    ])
    .unwrap();
    assert_eq!(
        aws(&["list-resource-tags", "--key-id", &id]).unwrap()["Tags"][0]["TagValue"],
        "prod"
    );
    aws(&["enable-key-rotation", "--key-id", &id]).unwrap();
    assert_eq!(
        aws(&["get-key-rotation-status", "--key-id", &id]).unwrap()["KeyRotationEnabled"],
        true
    );
    aws(&["rotate-key-on-demand", "--key-id", &id]).unwrap();
    assert_eq!(
        aws(&["list-key-rotations", "--key-id", &id]).unwrap()["Rotations"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    for _ in 0..3 {
        aws(&["create-key"]).unwrap();
    }
    let page = aws(&["list-keys", "--max-items", "2"]).unwrap();
    assert_eq!(page["Keys"].as_array().unwrap().len(), 2);
    assert!(page["NextToken"].is_string(), "{page}");

    aws(&["disable-key", "--key-id", &id]).unwrap();
    let e = aws(&["encrypt", "--key-id", &id, "--plaintext", &plain_arg]).unwrap_err();
    assert!(e.contains("DisabledException"), "{e}");
    aws(&[
        "schedule-key-deletion",
        "--key-id",
        &id,
        "--pending-window-in-days",
        "7",
    ])
    .unwrap();
    let e = aws(&["encrypt", "--key-id", &id, "--plaintext", &plain_arg]).unwrap_err();
    assert!(e.contains("KMSInvalidStateException"), "{e}");
}

fn c_str(ctx: Option<&str>) -> &str {
    ctx.unwrap_or_default()
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}
