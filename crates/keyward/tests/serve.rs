//! `keyward serve` end to end: first start in an empty data directory, SIGTERM, restart,
//! bad settings, the transport, access keys and admin commands; and the pytest interop
//! suite in tests/interop (boto3, aws-cli, the AWS Encryption CLI). The Python parts need
//! the pinned venv (tests/interop/setup-venv); they skip without it, except in CI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::start;

#[test]
fn first_start_sigterm_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = start(&data);
    assert_eq!(server.env.len(), 5, "banner: {:?}", server.env);
    for name in ["ca.pem", "admin.env", "root.key", "keyward.db"] {
        assert!(data.join(name).exists(), "{name} not created");
    }
    // SIGTERM: a graceful stop with status 0.
    let pid = server.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(server.child.wait().unwrap().success());

    // A second start reuses everything: no new credentials.
    let again = start(&data);
    assert!(again.env.iter().all(|(k, _)| k != "AWS_SECRET_ACCESS_KEY"));
}

/// The pytest suite in tests/interop (boto3's envelope example, refused requests, aws-cli,
/// the AWS Encryption CLI both ways), each module against its own fresh `keyward serve`.
#[test]
fn pytest_interop_suite() {
    let Some(python) = common::python(
        "pytest, boto3, cryptography, awscli, aws_encryption_sdk_cli",
        "pytest interop suite",
    ) else {
        return;
    };
    let out = Command::new(&python)
        .args(["-m", "pytest", "-v", "tests/interop"])
        .current_dir(common::repo_root())
        .env("KEYWARD_BIN", env!("CARGO_BIN_EXE_keyward"))
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the pytest interop suite failed");
    assert!(!text.contains("SKIPPED"), "the interop suite must not skip");
}

/// The interop modules that reach the store (boto3, aws-cli, the AWS Encryption CLI,
/// the audit log, secrets in logs) again, each module's server on its own PostgreSQL
/// database of one throwaway cluster.
#[test]
fn pytest_interop_suite_on_postgres() {
    let Some(python) = common::python(
        "pytest, boto3, cryptography, awscli, aws_encryption_sdk_cli",
        "pytest interop suite on PostgreSQL",
    ) else {
        return;
    };
    let Some(pg) = keyward_testpg::PgCluster::start() else {
        return;
    };
    const MODULES: [&str; 5] = [
        "tests/interop/test_boto3.py",
        "tests/interop/test_aws_cli.py",
        "tests/interop/test_encryption_cli.py",
        "tests/interop/test_audit.py",
        "tests/interop/test_secrets.py",
    ];
    let base = pg.url();
    let (prefix, _) = base.rsplit_once('/').unwrap();
    let urls: Vec<String> = (0..MODULES.len())
        .map(|i| {
            pg.psql(
                "postgres",
                &format!("CREATE DATABASE interop{i} OWNER keyward"),
            );
            format!("{prefix}/interop{i}")
        })
        .collect();
    let out = Command::new(&python)
        .args(["-m", "pytest", "-v"])
        .args(MODULES)
        .current_dir(common::repo_root())
        .env("KEYWARD_BIN", env!("CARGO_BIN_EXE_keyward"))
        .env("KEYWARD_TEST_DATABASE_URLS", urls.join(" "))
        .env_remove("AWS_PROFILE")
        .env_remove("KEYWARD_DATABASE_URL")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "the pytest interop suite failed on PostgreSQL"
    );
    assert!(!text.contains("SKIPPED"), "the interop suite must not skip");
    for (i, module) in MODULES.iter().enumerate() {
        let keys = pg.psql(&format!("interop{i}"), "SELECT count(*) FROM keys");
        assert!(
            keys.trim().parse::<u64>().unwrap() > 0,
            "{module} did not use its database"
        );
    }
}

/// The benchmark-only switches that weaken the service are refused by a normal build.
#[test]
fn benchmark_switches_are_refused_outside_benchmark_builds() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["KEYWARD_BENCH_NO_AUDIT", "KEYWARD_BENCH_PLAIN_LISTEN"] {
        let out = Command::new(env!("CARGO_BIN_EXE_keyward"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("d"))
            .env(name, "1")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{name}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(name),
            "{name}"
        );
        assert!(!dir.path().join("d").exists());
    }
}

#[test]
fn bad_settings_exit_64_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    for (args, named) in [
        (vec!["--listen", "nonsense"], "listen"),
        (vec!["--region", "US EAST"], "region"),
        (vec!["--account", "12"], "account"),
        (
            vec!["--database-url", "mysql://kw:hunter2@127.0.0.1/kw"],
            "database_url",
        ),
        (
            vec!["--database-url", "postgres://kw:hunter2@127.0.0.1:port/kw"],
            "database_url",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_keyward"))
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path().join("d"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(named), "{args:?}");
        assert!(!stderr.contains("hunter2"), "a password shown: {stderr}");
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
/// once, a deleted one is refused within a second, and listing never shows secrets.
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

/// Two nodes on one PostgreSQL database (the same root key): a key disabled through
/// one is refused through the other at once, an alias moved or a key rotated through
/// one is seen by the other, and both nodes' requests make one audit chain that
/// verifies.
#[test]
fn two_nodes_on_one_postgres_database_agree_at_once_and_keep_one_audit_chain() {
    let Some(pg) = keyward_testpg::PgCluster::start() else {
        return;
    };
    let url = pg.url();
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    let mut a = common::start_with(&first, &["--database-url", &url]);
    let second = dir.path().join("second");
    std::fs::create_dir_all(&second).unwrap();
    std::fs::copy(first.join("root.key"), second.join("root.key")).unwrap();
    let mut b = common::start_with(&second, &["--database-url", &url]);
    // The same credentials and CA (both are in the database), B's endpoint.
    let through_b: Vec<(String, String)> = a
        .env
        .iter()
        .map(|(k, v)| match k.as_str() {
            "AWS_ENDPOINT_URL_KMS" => (k.clone(), format!("https://127.0.0.1:{}", b.port())),
            _ => (k.clone(), v.clone()),
        })
        .collect();
    let run = |env: &[(String, String)], args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_keyward"))
            .args(args)
            .env_remove("AWS_PROFILE")
            .envs(env.iter().cloned())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.stdout,
        )
    };
    let plain = dir.path().join("plain");
    std::fs::write(&plain, b"4111 1111 1111 1111").unwrap();
    let encrypt_through_b = |out: &str| {
        let out = dir.path().join(out);
        let (ok, err, _) = run(
            &through_b,
            &[
                "encrypt",
                "--kms-key",
                "alias/shared",
                "--in",
                plain.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
        );
        (ok, err, out)
    };
    let (ok, err, created) = run(&a.env, &["key", "create", "--alias", "alias/shared"]);
    assert!(ok, "{err}");
    let created: serde_json::Value = serde_json::from_slice(&created).unwrap();
    let id = created["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let (ok, err, sealed) = encrypt_through_b("one.kw");
    assert!(ok, "{err}");

    assert!(run(&a.env, &["key", "disable", &id]).0);
    let (ok, err, _) = encrypt_through_b("refused.kw");
    assert!(!ok, "a key disabled through A still encrypts through B");
    assert!(err.contains("DisabledException"), "{err}");

    assert!(run(&a.env, &["key", "enable", &id]).0);
    assert!(run(&through_b, &["key", "rotate", &id]).0);
    let (ok, _, described) = run(&a.env, &["key", "describe", &id]);
    assert!(ok);
    let described: serde_json::Value = serde_json::from_slice(&described).unwrap();
    assert_eq!(described["KeyMetadata"]["KeyState"], "Enabled");
    let (ok, err, _) = run(
        &a.env,
        &[
            "decrypt",
            "--kms-key",
            &format!("arn:aws:kms:us-east-1:111122223333:key/{id}"),
            "--in",
            sealed.to_str().unwrap(),
            "--out",
            dir.path().join("back").to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("back")).unwrap(),
        b"4111 1111 1111 1111"
    );
    // An alias moved through B is followed through A.
    let (_, _, other) = run(&through_b, &["key", "create"]);
    let other: serde_json::Value = serde_json::from_slice(&other).unwrap();
    let other = other["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    assert!(run(&through_b, &["key", "alias", "alias/shared", &other]).0);
    let (_, _, described) = run(&a.env, &["key", "describe", "alias/shared"]);
    let described: serde_json::Value = serde_json::from_slice(&described).unwrap();
    assert_eq!(described["KeyMetadata"]["KeyId"], other.as_str());

    for server in [&mut a, &mut b] {
        let pid = server.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(server.child.wait().unwrap().success());
    }
    let verified = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["audit", "verify", "--data-dir"])
        .arg(&first)
        .args(["--database-url", &url])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verified.stdout).into_owned()
        + &String::from_utf8_lossy(&verified.stderr);
    assert!(verified.status.success(), "{said}");
    // create, encrypt, disable, refused encrypt, enable, rotate, describe, decrypt,
    // create, alias, describe: at least one record each, from both nodes, in one chain.
    let n: u64 = said
        .split_whitespace()
        .skip_while(|w| *w != "verified")
        .nth(1)
        .and_then(|w| w.parse().ok())
        .unwrap_or(0);
    assert!(n >= 11, "{said}");
}

/// With a PostgreSQL URL (here from KEYWARD_DATABASE_URL) the records live in the
/// database and only the root key, CA and credentials in the data directory; a restart
/// finds everything there, and the admin commands reach the same database.
#[test]
fn serves_from_postgres() {
    let Some(pg) = keyward_testpg::PgCluster::start() else {
        return;
    };
    let url = pg.url();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [("KEYWARD_DATABASE_URL", url.as_str())];
    let mut server = common::start_with_env(&data, &[], &env);
    assert_eq!(server.env.len(), 5, "banner: {:?}", server.env);
    assert!(data.join("root.key").exists());
    assert!(
        !data.join("keyward.db").exists(),
        "SQLite used beside PostgreSQL"
    );
    let created = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["key", "create", "--alias", "alias/in-pg"])
        .env_remove("AWS_PROFILE")
        .envs(server.env.iter().cloned())
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let pid = server.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(server.child.wait().unwrap().success());
    assert!(
        pg.psql("keyward", "SELECT name FROM aliases")
            .contains("alias/in-pg")
    );

    let again = common::start_with(&data, &["--database-url", &url]);
    assert!(again.env.iter().all(|(k, _)| k != "AWS_SECRET_ACCESS_KEY"));
    let described = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["key", "describe", "alias/in-pg"])
        .env_remove("AWS_PROFILE")
        .envs(again.env.iter().cloned())
        // The first start's credentials: the second says where they are kept.
        .envs(
            server
                .env
                .iter()
                .filter(|(k, _)| k.contains("_KEY"))
                .cloned(),
        )
        .output()
        .unwrap();
    assert!(described.status.success(), "{described:?}");
    let listed = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["access-key", "list", "--data-dir"])
        .arg(&data)
        .args(["--database-url", &url])
        .output()
        .unwrap();
    assert!(listed.status.success(), "{listed:?}");
    assert!(String::from_utf8_lossy(&listed.stdout).contains("\tadmin"));
    // The banner names the database without its password.
    let banner = again.banner.join("\n");
    assert!(
        banner.contains("keyward: database postgres://keyward@127.0.0.1:"),
        "{banner}"
    );
    assert!(!banner.contains(pg.password()), "{banner}");
}
