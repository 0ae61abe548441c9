//! `keyward backup`, `keyward backup verify` and `keyward restore` end to end with the
//! real binary: a disaster-recovery drill (serve, keys and ciphertexts over the API, a
//! backup while serving, the data directory lost, a restore into a new instance on the
//! other backend, every ciphertext decrypted there, the audit log verified), both ways
//! between SQLite and PostgreSQL; and the failures: a wrong passphrase, a changed byte, a
//! cut file, a non-empty target, missing settings.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const PASSPHRASE: &str = "correct horse battery staple";

fn keyward(args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(args)
        .env_remove("AWS_PROFILE")
        .env_remove("KEYWARD_RECOVERY_PASSPHRASE")
        .env_remove("KEYWARD_DATABASE_URL")
        .env_remove("KEYWARD_DATA_DIR")
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn with_passphrase(p: &str) -> Vec<(String, String)> {
    vec![("KEYWARD_RECOVERY_PASSPHRASE".into(), p.into())]
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Fails with exit `code`, without a panic; returns stderr.
fn fails(out: &Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn stop(server: &mut common::Server) {
    let pid = server.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(server.child.wait().unwrap().success());
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `--data-dir DIR` and, for PostgreSQL, `--database-url URL`.
fn instance(dir: &Path, url: Option<&str>) -> Vec<String> {
    let mut args = vec!["--data-dir".to_owned(), s(dir).to_owned()];
    if let Some(url) = url {
        args.extend(["--database-url".to_owned(), url.to_owned()]);
    }
    args
}

fn start(dir: &Path, url: Option<&str>) -> common::Server {
    let mut args = vec!["--audit-checkpoint-records", "5"];
    if let Some(url) = url {
        args.extend(["--database-url", url]);
    }
    common::start_with(dir, &args)
}

/// A key made over the API: (id, ARN).
fn create_key(env: &[(String, String)], extra: &[&str]) -> (String, String) {
    let out = ok(&keyward(&[&["key", "create"], extra].concat(), env));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    (
        v["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned(),
        v["KeyMetadata"]["Arn"].as_str().unwrap().to_owned(),
    )
}

/// Envelope-encrypts `plain` with the KMS keys (GenerateDataKey under the first,
/// Encrypt under the others).
fn encrypt(env: &[(String, String)], keys: &[&str], plain: &Path, out: &Path) {
    let mut args = vec!["encrypt"];
    for k in keys {
        args.extend(["--kms-key", k]);
    }
    args.extend(["--in", s(plain), "--out", s(out)]);
    ok(&keyward(&args, env));
}

/// Decrypts with one key ARN (Decrypt of that key's encrypted data key).
fn decrypt(env: &[(String, String)], arn: &str, message: &Path) -> Vec<u8> {
    let out = keyward(
        &[
            "decrypt",
            "--kms-key",
            arn,
            "--in",
            s(message),
            "--out",
            "-",
        ],
        env,
    );
    ok(&out);
    out.stdout
}

/// The restored server's endpoint and CA with the original administrator's credentials.
fn client_env(server: &common::Server, creds: &[(String, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = server
        .env
        .iter()
        .filter(|(k, _)| !k.starts_with("AWS_ACCESS") && !k.starts_with("AWS_SECRET"))
        .cloned()
        .collect();
    env.extend(creds.iter().cloned());
    env
}

/// The whole drill from `from` (PostgreSQL if a URL) to `to`.
fn drill(from: Option<&str>, to: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = start(&data, from);
    let env = server.env.clone();
    let creds: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| k.starts_with("AWS_ACCESS") || k.starts_with("AWS_SECRET"))
        .cloned()
        .collect();
    assert_eq!(creds.len(), 2);

    // Keys: one with an alias and a policy, one rotated between two ciphertexts, one plain.
    let policy = dir.path().join("policy.json");
    fs::write(
        &policy,
        concat!(
            r#"{"Version":"2012-10-17","Statement":["#,
            r#"{"Effect":"Allow","Principal":{"AWS":"admin"},"Action":"kms:*","Resource":"*"},"#,
            r#"{"Effect":"Deny","Principal":{"AWS":"admin"},"Action":"kms:DisableKey","Resource":"*"}]}"#
        ),
    )
    .unwrap();
    let (payments, payments_arn) =
        create_key(&env, &["--alias", "alias/payments", "--policy", s(&policy)]);
    let (rotated, rotated_arn) = create_key(&env, &["--description", "rotated"]);
    let (_plain_key, plain_arn) = create_key(&env, &[]);
    let text = dir.path().join("plain.txt");
    fs::write(&text, b"card 4111 1111 1111 1111, exp 12/29").unwrap();
    let ct = |n: &str| dir.path().join(n);
    encrypt(&env, &[&rotated], &text, &ct("v1.msg"));
    ok(&keyward(&["key", "rotate", &rotated], &env));
    encrypt(&env, &["alias/payments", &rotated], &text, &ct("both.msg"));
    encrypt(&env, &[&plain_arn], &text, &ct("plain.msg"));

    // A backup while the server runs.
    let backup = dir.path().join("keyward.backup");
    let source = instance(&data, from);
    let args: Vec<&str> = ["backup", "--out", s(&backup)]
        .into_iter()
        .chain(source.iter().map(String::as_str))
        .collect();
    let made = ok(&keyward(&args, &with_passphrase(PASSPHRASE)));
    assert!(made.contains("3 keys"), "{made}");
    assert!(made.contains("4 key versions"), "{made}");
    assert!(made.contains("1 aliases"), "{made}");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Nothing secret in clear in the file.
    let bytes = fs::read(&backup).unwrap();
    let root_key = fs::read(data.join("root.key")).unwrap();
    assert!(!bytes.windows(32).any(|w| w == root_key.as_slice()));
    assert!(!bytes.windows(7).any(|w| w == b"payment"));
    let verified = ok(&keyward(
        &["backup", "verify", s(&backup)],
        &with_passphrase(PASSPHRASE),
    ));
    assert!(
        verified.contains("opens the root-key check and key"),
        "{verified}"
    );

    stop(&mut server);
    let old_ca = fs::read_to_string(data.join("ca.pem")).unwrap();
    let export = dir.path().join("old-audit");
    let args: Vec<&str> = ["audit", "export", "--out", s(&export)]
        .into_iter()
        .chain(source.iter().map(String::as_str))
        .collect();
    ok(&keyward(&args, &[]));

    // The site is lost: data directory and (for PostgreSQL) the database with it.
    fs::remove_dir_all(&data).unwrap();

    let fresh = dir.path().join("restored");
    let target = instance(&fresh, to);
    let args: Vec<&str> = ["restore", "--from", s(&backup)]
        .into_iter()
        .chain(target.iter().map(String::as_str))
        .collect();
    let restored = ok(&keyward(&args, &with_passphrase(PASSPHRASE)));
    assert!(
        restored.contains("a new chain began with record 1"),
        "{restored}"
    );
    assert_eq!(
        fs::metadata(fresh.join("root.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(fs::read(fresh.join("root.key")).unwrap(), root_key);
    // A second restore into it is refused and changes nothing.
    let again = keyward(&args, &with_passphrase(PASSPHRASE));
    assert!(fails(&again, 73).contains("refusing to restore"));

    let mut server = start(&fresh, to);
    let env = client_env(&server, &creds);
    assert_eq!(fs::read_to_string(fresh.join("ca.pem")).unwrap(), old_ca);
    let plain = fs::read(&text).unwrap();
    assert_eq!(decrypt(&env, &rotated_arn, &ct("v1.msg")), plain);
    assert_eq!(decrypt(&env, &payments_arn, &ct("both.msg")), plain);
    assert_eq!(decrypt(&env, &rotated_arn, &ct("both.msg")), plain);
    assert_eq!(decrypt(&env, &plain_arn, &ct("plain.msg")), plain);
    let described: serde_json::Value =
        serde_json::from_str(&ok(&keyward(&["key", "describe", "alias/payments"], &env))).unwrap();
    assert_eq!(described["KeyMetadata"]["KeyId"], payments.as_str());
    // Its policy came back with it: what it denies is still denied.
    let refused = keyward(&["key", "disable", "alias/payments"], &env);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("AccessDeniedException"),
        "{refused:?}"
    );
    // New work on the restored instance.
    encrypt(&env, &["alias/payments"], &text, &ct("after.msg"));
    assert_eq!(decrypt(&env, &payments_arn, &ct("after.msg")), plain);
    stop(&mut server);

    // The restored log verifies; it starts with the Restore record naming the old chain.
    let args: Vec<&str> = ["audit", "verify"]
        .into_iter()
        .chain(target.iter().map(String::as_str))
        .collect();
    let v = ok(&keyward(&args, &[]));
    assert!(!v.contains("BROKEN"), "{v}");
    let args: Vec<&str> = ["audit", "query", "--operation", "Restore"]
        .into_iter()
        .chain(target.iter().map(String::as_str))
        .collect();
    let first: serde_json::Value =
        serde_json::from_str(ok(&keyward(&args, &[])).lines().next().unwrap()).unwrap();
    assert_eq!(first["seq"], 1);
    let old_records = fs::read_to_string(export.join("audit.jsonl")).unwrap();
    let old_last: serde_json::Value =
        serde_json::from_str(old_records.lines().last().unwrap()).unwrap();
    let tail_seq: u64 = first["context"]["previous_tail_seq"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(tail_seq > 0 && tail_seq <= old_last["seq"].as_u64().unwrap());
    let checkpoint_seq: u64 = first["context"]["previous_checkpoint_seq"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(checkpoint_seq > 0 && checkpoint_seq <= tail_seq);
    // The hash it names is the old log's record at that place.
    let named = old_records
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["seq"] == tail_seq)
        .unwrap();
    assert_eq!(first["context"]["previous_tail_hash"], named["hash"]);
    // The signing key was kept: the old export verifies against the restored key.
    let new_export = dir.path().join("new-audit");
    let args: Vec<&str> = ["audit", "export", "--out", s(&new_export)]
        .into_iter()
        .chain(target.iter().map(String::as_str))
        .collect();
    ok(&keyward(&args, &[]));
    let key = fs::read_to_string(new_export.join("audit-public-key")).unwrap();
    assert_eq!(
        key,
        fs::read_to_string(export.join("audit-public-key")).unwrap()
    );
    ok(&keyward(
        &[
            "audit",
            "verify",
            "--file",
            s(&export.join("audit.jsonl")),
            "--public-key",
            key.trim(),
        ],
        &[],
    ));
}

#[test]
fn disaster_recovery_drill_sqlite_to_postgres() {
    let Some(pg) = keyward_testpg::PgCluster::start() else {
        return;
    };
    drill(None, Some(&pg.url()));
}

#[test]
fn disaster_recovery_drill_postgres_to_sqlite() {
    let Some(pg) = keyward_testpg::PgCluster::start() else {
        return;
    };
    let url = pg.url();
    drill(Some(&url), None);
}

/// A small instance with one key, stopped; returns its data directory.
fn small_instance(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    let mut server = common::start(&data);
    create_key(&server.env, &["--alias", "alias/x"]);
    stop(&mut server);
    data
}

#[test]
fn verify_passes_and_fails_on_wrong_passphrase_flipped_byte_and_cut_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_instance(dir.path());
    let backup = dir.path().join("b.backup");
    ok(&keyward(
        &["backup", "--out", s(&backup), "--data-dir", s(&data)],
        &with_passphrase(PASSPHRASE),
    ));
    let good = ok(&keyward(
        &["backup", "verify", s(&backup)],
        &with_passphrase(PASSPHRASE),
    ));
    assert!(good.contains("authentic and complete"), "{good}");
    assert!(good.contains("1 keys"), "{good}");
    assert!(
        good.contains("root key: opens the root-key check"),
        "{good}"
    );

    let wrong = keyward(
        &["backup", "verify", s(&backup)],
        &with_passphrase("not the right passphrase"),
    );
    let said = fails(&wrong, 1);
    assert!(said.contains("cannot be opened"), "{said}");

    let bytes = fs::read(&backup).unwrap();
    let bad = dir.path().join("bad.backup");
    // A byte of the salt, of the message header, of the content, of the last frame.
    for at in [12, 60, bytes.len() / 2, bytes.len() - 5] {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x20;
        fs::write(&bad, &flipped).unwrap();
        let out = keyward(&["backup", "verify", s(&bad)], &with_passphrase(PASSPHRASE));
        let said = fails(&out, 1);
        assert!(said.contains("backup"), "byte {at}: {said}");
    }
    for len in [0, 5, 40, bytes.len() / 2, bytes.len() - 1] {
        fs::write(&bad, &bytes[..len]).unwrap();
        let out = keyward(&["backup", "verify", s(&bad)], &with_passphrase(PASSPHRASE));
        fails(&out, 1);
    }
    // A restore from a damaged file touches nothing.
    let target = dir.path().join("target");
    let out = keyward(
        &["restore", "--from", s(&bad), "--data-dir", s(&target)],
        &with_passphrase(PASSPHRASE),
    );
    fails(&out, 1);
    assert!(!target.exists());
}

#[test]
fn recovery_key_files_and_backups_without_the_root_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_instance(dir.path());
    let key = dir.path().join("recovery.key");
    let backup = dir.path().join("k.backup");
    ok(&keyward(
        &[
            "backup",
            "--out",
            s(&backup),
            "--data-dir",
            s(&data),
            "--new-recovery-key",
            s(&key),
            "--without-root-key",
        ],
        &[],
    ));
    let text = fs::read_to_string(&key).unwrap();
    assert_eq!(text.trim().len(), 64, "{text}");
    let verify = |extra: &[&str]| {
        keyward(
            &[&["backup", "verify", s(&backup)], extra].concat(),
            &with_passphrase(PASSPHRASE),
        )
    };
    let out = ok(&verify(&["--recovery-key", s(&key)]));
    assert!(out.contains("root key: not checked"), "{out}");
    let out = ok(&verify(&[
        "--recovery-key",
        s(&key),
        "--root-key",
        s(&data.join("root.key")),
    ]));
    assert!(out.contains("root key: opens"), "{out}");
    // The key as raw bytes works too; another key does not; a passphrase is refused.
    let raw = dir.path().join("raw.key");
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&text.trim()[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    fs::write(&raw, &bytes).unwrap();
    ok(&verify(&["--recovery-key", s(&raw)]));
    fs::write(&raw, [7u8; 32]).unwrap();
    fails(&verify(&["--recovery-key", s(&raw)]), 1);
    assert!(fails(&verify(&[]), 64).contains("--recovery-key"));
    // A root key that is not the instance's is refused.
    let other_root = dir.path().join("other.key");
    fs::write(&other_root, [1u8; 32]).unwrap();
    fails(
        &verify(&["--recovery-key", s(&key), "--root-key", s(&other_root)]),
        1,
    );

    // Restore needs --root-key for such a backup.
    let target = dir.path().join("target");
    let restore = |extra: &[&str]| {
        keyward(
            &[
                &[
                    "restore",
                    "--from",
                    s(&backup),
                    "--data-dir",
                    s(&target),
                    "--recovery-key",
                    s(&key),
                ],
                extra,
            ]
            .concat(),
            &[],
        )
    };
    assert!(fails(&restore(&[]), 64).contains("--root-key"));
    assert!(!target.exists());
    fails(&restore(&["--root-key", s(&other_root)]), 1);
    assert!(!target.exists());
    ok(&restore(&["--root-key", s(&data.join("root.key"))]));
    ok(&keyward(
        &["audit", "verify", "--data-dir", s(&target)],
        &[],
    ));
    let listed = ok(&keyward(
        &["access-key", "list", "--data-dir", s(&target)],
        &[],
    ));
    assert!(listed.contains("\tadmin\t"), "{listed}");
}

#[test]
fn settings_errors_exit_64_and_non_empty_targets_73_touching_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_instance(dir.path());
    let backup = dir.path().join("b.backup");
    // No passphrase and no terminal to ask on.
    let out = keyward(
        &["backup", "--out", s(&backup), "--data-dir", s(&data)],
        &[],
    );
    assert!(fails(&out, 64).contains("KEYWARD_RECOVERY_PASSPHRASE"));
    assert!(!backup.exists());
    // Too short a passphrase.
    let out = keyward(
        &["backup", "--out", s(&backup), "--data-dir", s(&data)],
        &with_passphrase("short"),
    );
    assert!(fails(&out, 64).contains("KEYWARD_RECOVERY_PASSPHRASE"));
    // No --out; a bad database URL; no instance there; a missing recovery key file.
    assert_eq!(
        keyward(&["backup", "--data-dir", s(&data)], &[])
            .status
            .code(),
        Some(64)
    );
    let out = keyward(
        &[
            "backup",
            "--out",
            s(&backup),
            "--data-dir",
            s(&data),
            "--database-url",
            "mysql://kw:hunter2@db/kw",
        ],
        &with_passphrase(PASSPHRASE),
    );
    let said = fails(&out, 64);
    assert!(
        said.contains("database_url") && !said.contains("hunter2"),
        "{said}"
    );
    let out = keyward(
        &[
            "backup",
            "--out",
            s(&backup),
            "--data-dir",
            s(&dir.path().join("none")),
        ],
        &with_passphrase(PASSPHRASE),
    );
    assert!(fails(&out, 64).contains("data_dir"));
    let out = keyward(
        &[
            "backup",
            "--out",
            s(&backup),
            "--data-dir",
            s(&data),
            "--recovery-key",
            s(&dir.path().join("missing.key")),
        ],
        &[],
    );
    assert!(fails(&out, 64).contains("--recovery-key"));
    assert!(!backup.exists());

    ok(&keyward(
        &["backup", "--out", s(&backup), "--data-dir", s(&data)],
        &with_passphrase(PASSPHRASE),
    ));
    // Restoring over the live instance is refused, and leaves it as it was.
    let db_before = fs::read(data.join("keyward.db")).unwrap();
    let out = keyward(
        &["restore", "--from", s(&backup), "--data-dir", s(&data)],
        &with_passphrase(PASSPHRASE),
    );
    assert!(fails(&out, 73).contains("refusing to restore"));
    assert_eq!(fs::read(data.join("keyward.db")).unwrap(), db_before);
    // So is a directory with only a database in it (no root.key).
    let other = dir.path().join("other");
    fs::create_dir(&other).unwrap();
    fs::copy(data.join("keyward.db"), other.join("keyward.db")).unwrap();
    let out = keyward(
        &["restore", "--from", s(&backup), "--data-dir", s(&other)],
        &with_passphrase(PASSPHRASE),
    );
    assert!(fails(&out, 73).contains("database holds records"));
    assert!(!other.join("root.key").exists());
    // A missing backup file is a bad setting.
    let out = keyward(
        &[
            "restore",
            "--from",
            s(&dir.path().join("nope")),
            "--data-dir",
            s(&dir.path().join("t")),
        ],
        &with_passphrase(PASSPHRASE),
    );
    assert!(fails(&out, 64).contains("--from"));
}

/// A restored instance is backed up and restored again (the second disaster): the
/// second restore replaces the first restore's record of where it came from.
#[test]
fn a_restored_instance_is_backed_up_and_restored_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = small_instance(dir.path());
    for round in 0..2 {
        let backup = dir.path().join(format!("{round}.backup"));
        ok(&keyward(
            &["backup", "--out", s(&backup), "--data-dir", s(&data)],
            &with_passphrase(PASSPHRASE),
        ));
        let target = dir.path().join(format!("restored-{round}"));
        ok(&keyward(
            &["restore", "--from", s(&backup), "--data-dir", s(&target)],
            &with_passphrase(PASSPHRASE),
        ));
        let root = fs::metadata(target.join("root.key")).unwrap();
        assert_eq!(root.len(), 32);
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&root.permissions()) & 0o777,
            0o600
        );
        assert!(
            fs::read_dir(&target).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".root.key")),
            "a temporary root key file was left behind"
        );
        ok(&keyward(
            &["audit", "verify", "--data-dir", s(&target)],
            &[],
        ));
        data = target;
    }
    let mut server = common::start(&data);
    let mut env = server.env.clone();
    let admin = fs::read_to_string(data.join("admin.env")).unwrap();
    env.extend(admin.lines().filter_map(|l| {
        let (k, v) = l.strip_prefix("export ")?.split_once('=')?;
        Some((k.to_owned(), v.to_owned()))
    }));
    let described = keyward(&["key", "describe", "alias/x"], &env);
    stop(&mut server);
    ok(&described);
}
