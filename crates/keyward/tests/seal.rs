//! The root key's seal end to end: `keyward operator init` with unseal shares, a server
//! that starts sealed and refuses every KMS operation, unseal with exactly the threshold
//! in any order, bad shares named without losing the good ones, `operator seal`, rekey,
//! and migration from the development file to shares and back with old ciphertexts
//! still decrypting.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

fn keyward(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The shares a command printed.
fn shares(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("Unseal share ")?.split_once(": "))
        .map(|(_, s)| s.to_owned())
        .collect()
}

fn init(data: &Path, n: u8, t: u8) -> Vec<String> {
    let out = keyward(
        &[
            "operator",
            "init",
            "--shares",
            &n.to_string(),
            "--threshold",
            &t.to_string(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        "",
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let s = shares(&out);
    assert_eq!(s.len(), usize::from(n));
    s
}

struct Node {
    server: common::Server,
    data: std::path::PathBuf,
    client: Arc<common::kms::Client>,
    runtime: tokio::runtime::Runtime,
}

fn admin(data: &Path) -> (String, String) {
    let env = std::fs::read_to_string(data.join("admin.env")).unwrap();
    let get = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("export {k}=")))
            .unwrap()
            .to_owned()
    };
    (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY"))
}

impl Node {
    fn start(data: &Path) -> Self {
        Self::start_with(data, &[], &[], None)
    }

    fn start_with(data: &Path, args: &[&str], env: &[(&str, &str)], log: Option<&Path>) -> Self {
        let server = common::start_logging(data, "127.0.0.1:0", args, env, log);
        let (id, secret) = admin(data);
        let mut client =
            common::kms::Client::new(vec![server.port()], &data.join("ca.pem"), &id, &secret);
        // Report a refusal at once instead of retrying it.
        client.give_up_after = Duration::ZERO;
        Self {
            server,
            data: data.to_owned(),
            client: Arc::new(client),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    fn endpoint(&self) -> Vec<String> {
        vec![
            "--endpoint".into(),
            format!("https://127.0.0.1:{}", self.server.port()),
            "--ca".into(),
            self.data.join("ca.pem").display().to_string(),
        ]
    }

    fn operator(&self, verb: &str, stdin: &str, env: &[(&str, &str)]) -> Output {
        let mut args = vec!["operator".to_owned(), verb.to_owned()];
        args.extend(self.endpoint());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        keyward(&args, stdin, env)
    }

    fn unseal(&self, share: &str) -> Output {
        self.operator("unseal", &format!("{share}\n"), &[])
    }

    fn health(&self) -> u16 {
        self.get("/v1/sys/health").0
    }

    fn call(&self, op: &str, body: Value) -> Result<Value, String> {
        let mut session = self.client.session(0);
        self.runtime
            .block_on(session.call(op, &body))
            .map_err(|e| e.to_string())
    }

    fn get(&self, path: &str) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-s", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
            .arg(self.data.join("ca.pem"))
            .arg(format!("https://127.0.0.1:{}{path}", self.server.port()))
            .output()
            .unwrap();
        let body = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = body.rsplit_once('\n').unwrap();
        (code.parse().unwrap(), body.to_owned())
    }

    fn assert_sealed(&self) {
        let (code, body) = self.get("/v1/sys/health");
        assert_eq!(code, 503, "{body}");
        assert!(body.contains("\"sealed\":true"), "{body}");
        for op in keyward_server::protocol::OPERATIONS {
            let err = self
                .call(
                    op,
                    json!({ "KeyId": "alias/x", "Plaintext": "AA==", "CiphertextBlob": "AA==" }),
                )
                .expect_err(op);
            assert!(
                err.contains("503 ServiceUnavailableException"),
                "{op} while sealed: {err}"
            );
        }
        let (code, body) = self.get("/v1/pki/ca");
        assert_eq!(code, 503, "{body}");
    }
}

fn encrypt(node: &Node) -> (String, String) {
    let key = node.call("CreateKey", json!({})).unwrap();
    let key_id = key["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let out = node
        .call(
            "Encrypt",
            json!({ "KeyId": key_id, "Plaintext": "c2VjcmV0", "EncryptionContext": {"a": "b"} }),
        )
        .unwrap();
    (key_id, out["CiphertextBlob"].as_str().unwrap().to_owned())
}

fn decrypts(node: &Node, blob: &str) {
    let out = node
        .call(
            "Decrypt",
            json!({ "CiphertextBlob": blob, "EncryptionContext": {"a": "b"} }),
        )
        .unwrap();
    assert_eq!(out["Plaintext"], "c2VjcmV0");
}

#[test]
fn a_sealed_server_refuses_everything_until_threshold_shares_in_any_order() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let shares = init(&data, 5, 3);
    assert!(!data.join("root.key").exists());
    let node = Node::start(&data);
    assert!(
        node.server.banner.iter().any(|l| l.contains("SEALED")),
        "{:?}",
        node.server.banner
    );
    node.assert_sealed();

    // Two shares of three: still sealed.
    for (i, share) in [&shares[4], &shares[1]].into_iter().enumerate() {
        let out = node.unseal(share);
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            text(&out).contains(&format!("{} of 3 shares given", i + 1)),
            "{}",
            text(&out)
        );
    }
    node.assert_sealed();

    // Bad shares are named, and do not lose the two given.
    let mut typo = shares[0].clone();
    let c = typo.pop().unwrap();
    typo.push(if c == 'x' { 'y' } else { 'x' });
    let other = init(&dir.path().join("other"), 3, 2);
    for (bad, why) in [
        (typo.as_str(), "corrupted"),
        (other[0].as_str(), "another set of shares"),
        (shares[1].as_str(), "share 2 was given already"),
        ("not a share", "not a keyward unseal share"),
    ] {
        let out = node.unseal(bad);
        assert!(!out.status.success(), "{bad} was taken");
        assert!(text(&out).contains(why), "{bad}: {}", text(&out));
    }
    let out = node.operator("status", "", &[]);
    assert!(text(&out).contains("2 of 3 shares given"), "{}", text(&out));
    assert_eq!(out.status.code(), Some(2), "status exits 2 while sealed");

    // The third share unseals.
    let out = node.unseal(&shares[3]);
    assert!(text(&out).contains("unsealed"), "{}", text(&out));
    assert_eq!(node.get("/v1/sys/health").0, 200);
    let (_, blob) = encrypt(&node);
    decrypts(&node, &blob);

    // Only an operator may seal; sealing is at once.
    let out = keyward(
        &[
            "access-key",
            "create",
            "--principal",
            "alice",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &format!("{}\n{}\n{}\n", shares[0], shares[2], shares[4]),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let alice = String::from_utf8_lossy(&out.stdout).to_string();
    let var = |k: &str| {
        alice
            .lines()
            .find_map(|l| l.strip_prefix(&format!("export {k}=")))
            .unwrap()
            .to_owned()
    };
    let (alice_id, alice_secret) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"));
    let out = node.operator(
        "seal",
        "",
        &[
            ("AWS_ACCESS_KEY_ID", &alice_id),
            ("AWS_SECRET_ACCESS_KEY", &alice_secret),
        ],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("not an operator"), "{}", text(&out));
    decrypts(&node, &blob);

    let (id, secret) = admin(&data);
    let out = node.operator(
        "seal",
        "",
        &[
            ("AWS_ACCESS_KEY_ID", &id),
            ("AWS_SECRET_ACCESS_KEY", &secret),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    node.assert_sealed();

    // Another three, in another order, unseal again; the data is there.
    for share in [&shares[2], &shares[0]] {
        assert!(node.unseal(share).status.success());
    }
    node.assert_sealed();
    assert!(node.unseal(&shares[1]).status.success());
    decrypts(&node, &blob);

    // The seal and the denied seal are in the audit log, with who asked.
    drop(node);
    let out = keyward(
        &[
            "audit",
            "query",
            "--operation",
            "Seal",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        "",
        &[],
    );
    let log = text(&out);
    assert!(log.contains("alice") && log.contains("admin"), "{log}");

    // A restart starts sealed again.
    let node = Node::start(&data);
    node.assert_sealed();
    for share in [&shares[0], &shares[1], &shares[2]] {
        assert!(node.unseal(share).status.success());
    }
    decrypts(&node, &blob);
}

#[test]
fn migration_to_shares_rekey_and_back_leave_the_data_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let dd = data.to_str().unwrap();

    // A development instance with a key and a ciphertext.
    let node = Node::start(&data);
    let (_, blob) = encrypt(&node);
    drop(node);
    assert!(data.join("root.key").exists());

    // To shares: the file is gone, the server starts sealed, the old blob decrypts.
    let out = keyward(
        &[
            "operator",
            "migrate-seal",
            "--to",
            "shamir",
            "--shares",
            "3",
            "--threshold",
            "2",
            "--data-dir",
            dd,
        ],
        "",
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let first = shares(&out);
    assert_eq!(first.len(), 3);
    assert!(!data.join("root.key").exists());
    let node = Node::start(&data);
    node.assert_sealed();
    node.unseal(&first[0]);
    node.unseal(&first[2]);
    decrypts(&node, &blob);
    drop(node);

    // Rekey: two old shares make three new ones; the old ones no longer unseal.
    let out = keyward(
        &[
            "operator",
            "rekey",
            "--shares",
            "3",
            "--threshold",
            "2",
            "--data-dir",
            dd,
        ],
        &format!("{}\n{}\n", first[1], first[0]),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let second = shares(&out);
    let node = Node::start(&data);
    let out = node.unseal(&first[0]);
    assert!(
        text(&out).contains("another set of shares"),
        "{}",
        text(&out)
    );
    node.unseal(&second[1]);
    node.unseal(&second[2]);
    decrypts(&node, &blob);
    drop(node);

    // Too few shares on standard input: refused, nothing changed.
    let out = keyward(
        &["operator", "migrate-seal", "--to", "file", "--data-dir", dd],
        &format!("{}\n", second[0]),
        &[],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("ended after 1 of 2"), "{}", text(&out));
    assert!(!data.join("root.key").exists());

    // Back to the file: the server starts unsealed and the blob decrypts.
    let out = keyward(
        &["operator", "migrate-seal", "--to", "file", "--data-dir", dd],
        &format!("{}\n{}\n", second[0], second[2]),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(data.join("root.key").exists());
    let node = Node::start(&data);
    assert_eq!(node.get("/v1/sys/health").0, 200);
    decrypts(&node, &blob);
}

#[test]
fn init_refuses_an_instance_that_has_a_root_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    init(&data, 2, 2);
    let out = keyward(
        &["operator", "init", "--data-dir", data.to_str().unwrap()],
        "",
        &[],
    );
    assert_eq!(out.status.code(), Some(73), "{}", text(&out));
    assert!(
        text(&out).contains("already has a root key"),
        "{}",
        text(&out)
    );
    for (n, t) in [("3", "1"), ("2", "3"), ("0", "0")] {
        let out = keyward(
            &[
                "operator",
                "init",
                "--shares",
                n,
                "--threshold",
                t,
                "--data-dir",
                dir.path().join("fresh").to_str().unwrap(),
            ],
            "",
            &[],
        );
        assert_eq!(out.status.code(), Some(64), "{n}/{t}: {}", text(&out));
        assert!(
            text(&out).contains("--shares/--threshold"),
            "{}",
            text(&out)
        );
    }
}

/// The flags and environment of a server whose root key SoftHSM2 seals.
fn hsm_setup(hsm: &keyward_testpg::SoftHsm) -> (Vec<String>, Vec<(String, String)>) {
    (
        vec![
            "--pkcs11-module".into(),
            hsm.module().display().to_string(),
            "--pkcs11-pin-file".into(),
            hsm.pin_file().display().to_string(),
        ],
        vec![("SOFTHSM2_CONF".into(), hsm.conf().display().to_string())],
    )
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn pairs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
}

#[test]
fn an_hsm_sealed_instance_unseals_itself_and_is_lost_with_the_token() {
    let Some(hsm) = keyward_testpg::SoftHsm::start("HSM-sealed instance") else {
        return;
    };
    let (flags, env) = hsm_setup(&hsm);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut args = vec!["operator", "init", "--provider", "pkcs11", "--data-dir"];
    args.push(data.to_str().unwrap());
    args.extend(strs(&flags));
    let out = keyward(&args, "", &pairs(&env));
    assert!(out.status.success(), "{}", text(&out));
    assert!(shares(&out).is_empty());
    assert!(!data.join("root.key").exists());

    // It unseals itself at start, and keys made under it survive a restart.
    let node = Node::start_with(&data, &strs(&flags), &pairs(&env), None);
    assert_eq!(node.health(), 200);
    let (_, blob) = encrypt(&node);
    drop(node);
    let node = Node::start_with(&data, &strs(&flags), &pairs(&env), None);
    decrypts(&node, &blob);

    // Sealed by an operator, it unseals again on asking the token.
    let (id, secret) = admin(&data);
    let out = node.operator(
        "seal",
        "",
        &[
            ("AWS_ACCESS_KEY_ID", &id),
            ("AWS_SECRET_ACCESS_KEY", &secret),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    node.assert_sealed();
    let out = node.operator("unseal", "\n", &[]);
    assert!(text(&out).contains("unsealed"), "{}", text(&out));
    decrypts(&node, &blob);
    drop(node);

    // Without its PIN file the server refuses to start, naming the setting.
    let out = keyward(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        "",
        &pairs(&env),
    );
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(text(&out).contains("pkcs11_module"), "{}", text(&out));

    // Without the token, the keys are unusable: the server starts sealed and stays so.
    hsm.delete_token();
    let node = Node::start_with(&data, &strs(&flags), &pairs(&env), None);
    assert!(
        node.server.banner.iter().any(|l| l.contains("SEALED")),
        "{:?}",
        node.server.banner
    );
    node.assert_sealed();
    let out = node.operator("unseal", "\n", &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("no token labelled"), "{}", text(&out));
    node.assert_sealed();
}

/// Every file under `dir`.
fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn migration_between_the_file_and_the_hsm_keeps_the_data_and_never_writes_the_root_key() {
    let Some(hsm) = keyward_testpg::SoftHsm::start("migration to and from the HSM") else {
        return;
    };
    let (flags, env) = hsm_setup(&hsm);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let dd = data.to_str().unwrap();
    let node = Node::start(&data);
    let (_, blob) = encrypt(&node);
    drop(node);
    let root = std::fs::read(data.join("root.key")).unwrap();
    assert_eq!(root.len(), 32);

    let mut args = vec![
        "operator",
        "migrate-seal",
        "--to",
        "pkcs11",
        "--data-dir",
        dd,
    ];
    args.extend(strs(&flags));
    let out = keyward(&args, "", &pairs(&env));
    assert!(out.status.success(), "{}", text(&out));
    assert!(!data.join("root.key").exists());

    let log = dir.path().join("server.log");
    let node = Node::start_with(&data, &strs(&flags), &pairs(&env), Some(&log));
    decrypts(&node, &blob);
    encrypt(&node);
    drop(node);

    // The root key, in any encoding, is in no file of the data directory and not in
    // the server's debug log.
    use base64::Engine as _;
    let hex: String = root.iter().map(|b| format!("{b:02x}")).collect();
    let needles = [
        root.clone(),
        hex.clone().into_bytes(),
        hex.to_uppercase().into_bytes(),
        base64::engine::general_purpose::STANDARD
            .encode(&root)
            .into_bytes(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(&root)
            .into_bytes(),
    ];
    let mut all = Vec::new();
    files(&data, &mut all);
    all.push(log.clone());
    assert!(std::fs::metadata(&log).unwrap().len() > 0, "no server log");
    for path in &all {
        let bytes = std::fs::read(path).unwrap();
        for needle in &needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == &needle[..]),
                "the root key is in {}",
                path.display()
            );
        }
    }

    // And back: the same root key in the file, the HSM's key gone, the data as it was.
    let mut args = vec!["operator", "migrate-seal", "--to", "file", "--data-dir", dd];
    args.extend(strs(&flags));
    let out = keyward(&args, "", &pairs(&env));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read(data.join("root.key")).unwrap(), root);
    let node = Node::start(&data);
    assert_eq!(node.health(), 200);
    decrypts(&node, &blob);
    drop(node);

    // Shares to the HSM and the HSM to shares, the same way.
    let out = keyward(
        &[
            "operator",
            "migrate-seal",
            "--to",
            "shamir",
            "--shares",
            "2",
            "--threshold",
            "2",
            "--data-dir",
            dd,
        ],
        "",
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let two = shares(&out);
    let mut args = vec![
        "operator",
        "migrate-seal",
        "--to",
        "pkcs11",
        "--pkcs11-key-label",
        "second",
        "--data-dir",
        dd,
    ];
    args.extend(strs(&flags));
    let out = keyward(&args, &format!("{}\n{}\n", two[0], two[1]), &pairs(&env));
    assert!(out.status.success(), "{}", text(&out));
    let node = Node::start_with(&data, &strs(&flags), &pairs(&env), None);
    decrypts(&node, &blob);
    drop(node);
    let mut args = vec![
        "operator",
        "migrate-seal",
        "--to",
        "shamir",
        "--shares",
        "1",
        "--threshold",
        "1",
        "--data-dir",
        dd,
    ];
    args.extend(strs(&flags));
    let out = keyward(&args, "", &pairs(&env));
    assert!(out.status.success(), "{}", text(&out));
    let one = shares(&out);
    let node = Node::start(&data);
    node.assert_sealed();
    node.unseal(&one[0]);
    decrypts(&node, &blob);
}

fn doctor(node: &Node) -> Output {
    let mut args = vec!["doctor".to_owned()];
    args.extend(node.endpoint());
    args.extend(["--data-dir".into(), node.data.display().to_string()]);
    keyward(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        "",
        &[],
    )
}

/// Whether `doctor`'s output says `verdict` for `item`.
fn says(out: &Output, verdict: &str, item: &str) -> bool {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with(verdict) && l[4..].trim_start().starts_with(item))
}

#[test]
fn doctor_fails_a_development_instance_and_passes_a_production_one() {
    let dir = tempfile::tempdir().unwrap();

    // The development default: the root key in a file, a key without rotation, no
    // backup. Each is named with its fix; TLS, certificates and audit pass.
    let dev = dir.path().join("dev");
    let node = Node::start(&dev);
    encrypt(&node);
    let out = doctor(&node);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    for item in ["seal", "rotation", "backups"] {
        assert!(says(&out, "FAIL", item), "{item}: {}", text(&out));
    }
    for item in ["tls", "certificates", "audit"] {
        assert!(says(&out, "PASS", item), "{item}: {}", text(&out));
    }
    assert!(
        text(&out).contains("fix: keyward operator migrate-seal"),
        "{}",
        text(&out)
    );
    drop(node);

    // Sealed by shares, every key rotating, a backup just made: all pass.
    let prod = dir.path().join("prod");
    let shares = init(&prod, 3, 2);
    let node = Node::start(&prod);
    let out = doctor(&node);
    assert!(says(&out, "FAIL", "seal"), "{}", text(&out));
    node.unseal(&shares[0]);
    node.unseal(&shares[1]);
    let (key, _) = encrypt(&node);
    node.call("EnableKeyRotation", json!({ "KeyId": key }))
        .unwrap();
    let out = keyward(
        &[
            "backup",
            "--without-root-key",
            "--out",
            dir.path().join("b.kwb").to_str().unwrap(),
            "--data-dir",
            prod.to_str().unwrap(),
        ],
        "",
        &[("KEYWARD_RECOVERY_PASSPHRASE", "a long recovery passphrase")],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = doctor(&node);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("6 of 6 checks passed"),
        "{}",
        text(&out)
    );
}

#[test]
fn shares_encrypted_to_their_holders_open_only_with_their_own_keys() {
    let ids: Vec<age::x25519::Identity> =
        (0..3).map(|_| age::x25519::Identity::generate()).collect();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut args = vec![
        "operator".to_owned(),
        "init".into(),
        "--shares".into(),
        "3".into(),
        "--threshold".into(),
        "2".into(),
        "--data-dir".into(),
        data.display().to_string(),
    ];
    for id in &ids {
        args.extend(["--recipient".into(), id.to_public().to_string()]);
    }
    // One recipient per share, or none.
    let out = keyward(&strs(&args[..args.len() - 2]), "", &[]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(text(&out).contains("--recipient"), "{}", text(&out));

    let out = keyward(&strs(&args), "", &[]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!stdout.contains("kws1-"), "a share in plain: {stdout}");
    let blocks: Vec<String> = stdout
        .split("-----BEGIN AGE ENCRYPTED FILE-----")
        .skip(1)
        .map(|b| {
            let end = b.find("-----END AGE ENCRYPTED FILE-----").unwrap();
            format!(
                "-----BEGIN AGE ENCRYPTED FILE-----{}-----END AGE ENCRYPTED FILE-----\n",
                &b[..end]
            )
        })
        .collect();
    assert_eq!(blocks.len(), 3);
    let open = |i: usize, id: &age::x25519::Identity| age::decrypt(id, blocks[i].as_bytes());
    assert!(
        open(0, &ids[1]).is_err(),
        "share 1 opened with holder 2's key"
    );
    let shares: Vec<String> = (0..3)
        .map(|i| String::from_utf8(open(i, &ids[i]).unwrap()).unwrap())
        .collect();
    assert!(shares.iter().all(|s| s.starts_with("kws1-")));

    let node = Node::start(&data);
    node.assert_sealed();
    node.unseal(&shares[2]);
    let out = node.unseal(&shares[0]);
    assert!(text(&out).contains("unsealed"), "{}", text(&out));
}

#[test]
fn a_backup_of_a_sealed_instance_restores_sealed_by_the_same_shares() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let shares = init(&data, 3, 2);
    let node = Node::start(&data);
    node.unseal(&shares[0]);
    node.unseal(&shares[1]);
    let (_, blob) = encrypt(&node);
    drop(node);

    let pass = [("KEYWARD_RECOVERY_PASSPHRASE", "a long recovery passphrase")];
    let backup = dir.path().join("b.kwb");
    let out = keyward(
        &[
            "backup",
            "--out",
            backup.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        "",
        &pass,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("the backup holds the seal"),
        "{}",
        text(&out)
    );

    let restored = dir.path().join("restored");
    let out = keyward(
        &[
            "restore",
            "--from",
            backup.to_str().unwrap(),
            "--data-dir",
            restored.to_str().unwrap(),
        ],
        &format!("{}\n{}\n", shares[2], shares[0]),
        &pass,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!restored.join("root.key").exists());
    let node = Node::start(&restored);
    node.assert_sealed();
    node.unseal(&shares[1]);
    node.unseal(&shares[2]);
    decrypts(&node, &blob);
}

#[test]
fn operator_commands_present_a_client_certificate_when_the_server_requires_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let node = Node::start_with(&data, &["--client-auth", "required"], &[], None);
    let ops = dir.path().join("ops");
    let out = keyward(
        &[
            "cert",
            "issue",
            "--spiffe-id",
            "spiffe://keyward.internal/ops",
            "--out",
            ops.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        "",
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let with_cert = |verb: &str, env: &[(&str, &str)]| {
        let mut args = vec!["operator".to_owned(), verb.to_owned()];
        args.extend(node.endpoint());
        args.extend([
            "--client-cert".into(),
            ops.join("cert.pem").display().to_string(),
            "--client-key".into(),
            ops.join("key.pem").display().to_string(),
        ]);
        keyward(&strs(&args), "", env)
    };
    let out = node.operator("status", "", &[]);
    assert!(
        !out.status.success(),
        "no client certificate, yet: {}",
        text(&out)
    );
    let out = with_cert("status", &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("unsealed"), "{}", text(&out));

    let (id, secret) = admin(&data);
    let out = with_cert(
        "seal",
        &[
            ("AWS_ACCESS_KEY_ID", &id),
            ("AWS_SECRET_ACCESS_KEY", &secret),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    // Sealed, the listener asks for no certificate: anyone can reach seal status and unseal.
    let out = node.operator("status", "", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
