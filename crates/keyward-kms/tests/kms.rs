//! The KMS over SQLite with a file root key and a manual clock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::open_kms;
use keyward_kms::{
    AesRootKey, CreateKeyRequest, EncryptionContext, Error, KeyState, Kms, KmsConfig, ManualClock,
};
use keyward_store::SqliteStore;

const DAY: i64 = 86_400;

struct Env {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    kms: Kms,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_800_000_000));
    let kms = open_kms(dir.path(), clock.clone()).unwrap();
    Env { dir, clock, kms }
}

fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn new_key(kms: &Kms) -> String {
    kms.create_key(&CreateKeyRequest::default()).unwrap().key_id
}

#[test]
fn encrypt_decrypt_with_context_ids_arns_and_aliases() {
    let e = env();
    let id = new_key(&e.kms);
    let arn = e.kms.config().key_arn(&id);
    e.kms.create_alias("alias/payments", &id).unwrap();
    let c = ctx(&[("tenant", "a"), ("purpose", "cards")]);
    for key_ref in [
        id.as_str(),
        arn.as_str(),
        "alias/payments",
        &e.kms.config().alias_arn("alias/payments"),
    ] {
        let out = e.kms.encrypt(key_ref, b"4111 1111 1111 1111", &c).unwrap();
        assert_eq!(out.key_id, arn);
        let back = e.kms.decrypt(&out.ciphertext_blob, &c, None).unwrap();
        assert_eq!(&back.plaintext[..], b"4111 1111 1111 1111");
        assert_eq!(back.key_id, arn);
        let named = e
            .kms
            .decrypt(&out.ciphertext_blob, &c, Some(key_ref))
            .unwrap();
        assert_eq!(&named.plaintext[..], b"4111 1111 1111 1111");
    }
}

#[test]
fn fail_changed_context_byte_or_key() {
    let e = env();
    let (a, b) = (new_key(&e.kms), new_key(&e.kms));
    let c = ctx(&[("k", "v")]);
    let blob = e.kms.encrypt(&a, b"secret", &c).unwrap().ciphertext_blob;
    for wrong in [
        ctx(&[]),
        ctx(&[("k", "w")]),
        ctx(&[("k", "v"), ("x", "y")]),
        ctx(&[("kv", "")]),
    ] {
        assert!(matches!(
            e.kms.decrypt(&blob, &wrong, None),
            Err(Error::InvalidCiphertext(_))
        ));
    }
    for i in 0..blob.len() {
        let mut m = blob.clone();
        m[i] ^= 0x01;
        let r = e.kms.decrypt(&m, &c, None);
        assert!(
            matches!(r, Err(Error::InvalidCiphertext(_))),
            "byte {i}: {r:?}"
        );
    }
    for n in [0, 1, 48] {
        assert!(e.kms.decrypt(&blob[..n], &c, None).is_err());
    }
    assert!(matches!(
        e.kms.decrypt(&blob, &c, Some(&b)),
        Err(Error::IncorrectKey(_))
    ));
}

#[test]
fn data_key_length_takes_exactly_one_of_spec_and_bytes() {
    use keyward_kms::data_key_length;
    assert_eq!(data_key_length(Some("AES_256"), None).unwrap(), 32);
    assert_eq!(data_key_length(Some("AES_128"), None).unwrap(), 16);
    assert_eq!(data_key_length(None, Some(64)).unwrap(), 64);
    for (spec, n) in [
        (None, None),
        (Some("AES_256"), Some(32)),
        (Some("AES_512"), None),
    ] {
        assert!(matches!(
            data_key_length(spec, n),
            Err(Error::Validation(_))
        ));
    }
}

#[test]
fn limits_on_sizes() {
    let e = env();
    let id = new_key(&e.kms);
    let c = ctx(&[]);
    assert!(matches!(
        e.kms.encrypt(&id, b"", &c),
        Err(Error::Validation(_))
    ));
    assert!(matches!(
        e.kms.encrypt(&id, &[0; 4097], &c),
        Err(Error::Validation(_))
    ));
    assert!(
        e.kms
            .encrypt(&id, &[0; 4096], &c)
            .unwrap()
            .ciphertext_blob
            .len()
            <= 6144
    );
    for n in [0, 1025] {
        assert!(matches!(
            e.kms.generate_data_key(&id, n, &c),
            Err(Error::Validation(_))
        ));
        assert!(matches!(
            e.kms.generate_random(n),
            Err(Error::Validation(_))
        ));
    }
    for n in [1, 16, 32, 1024] {
        let dk = e.kms.generate_data_key(&id, n, &c).unwrap();
        assert_eq!(dk.plaintext.len(), n);
        assert_eq!(
            &e.kms
                .decrypt(&dk.ciphertext_blob, &c, None)
                .unwrap()
                .plaintext[..],
            &dk.plaintext[..]
        );
        let bare = e
            .kms
            .generate_data_key_without_plaintext(&id, n, &c)
            .unwrap();
        assert!(bare.plaintext.is_empty());
        assert_eq!(
            e.kms
                .decrypt(&bare.ciphertext_blob, &c, None)
                .unwrap()
                .plaintext
                .len(),
            n
        );
        assert_eq!(e.kms.generate_random(n).unwrap().len(), n);
    }
    assert!(matches!(
        e.kms.decrypt(&[1; 6145], &c, None),
        Err(Error::Validation(_))
    ));
}

#[test]
fn every_version_decrypts_after_ten_rotations() {
    let e = env();
    let id = new_key(&e.kms);
    let c = ctx(&[("v", "x")]);
    let mut blobs = vec![e.kms.encrypt(&id, b"version 1", &c).unwrap()];
    for i in 2..=11 {
        e.kms.rotate_key_on_demand(&id).unwrap();
        blobs.push(
            e.kms
                .encrypt(&id, format!("version {i}").as_bytes(), &c)
                .unwrap(),
        );
    }
    let materials: std::collections::HashSet<_> =
        blobs.iter().map(|b| b.key_material_id.clone()).collect();
    assert_eq!(materials.len(), 11);
    // A fresh KMS on the same directory (cold caches) decrypts them all.
    drop(e.kms);
    let kms = open_kms(e.dir.path(), e.clock.clone()).unwrap();
    for (i, b) in blobs.iter().enumerate() {
        let out = kms.decrypt(&b.ciphertext_blob, &c, None).unwrap();
        assert_eq!(&out.plaintext[..], format!("version {}", i + 1).as_bytes());
        assert_eq!(out.key_material_id, b.key_material_id);
    }
    assert_eq!(kms.list_key_rotations(&id).unwrap().len(), 10);
}

#[test]
fn on_demand_rotation_limit_and_automatic_rotation() {
    let e = env();
    let id = new_key(&e.kms);
    for _ in 0..25 {
        e.kms.rotate_key_on_demand(&id).unwrap();
    }
    assert!(matches!(
        e.kms.rotate_key_on_demand(&id),
        Err(Error::LimitExceeded(_))
    ));

    let auto = new_key(&e.kms);
    assert!(matches!(
        e.kms.enable_key_rotation(&auto, Some(89)),
        Err(Error::Validation(_))
    ));
    assert!(matches!(
        e.kms.enable_key_rotation(&auto, Some(2561)),
        Err(Error::Validation(_))
    ));
    e.kms.enable_key_rotation(&auto, Some(90)).unwrap();
    let status = e.kms.get_key_rotation_status(&auto).unwrap();
    assert!(status.key_rotation_enabled);
    assert_eq!(status.next_rotation_date, Some(1_800_000_000 + 90 * DAY));
    e.clock.advance(89 * DAY);
    assert_eq!(e.kms.run_due_work().unwrap(), (0, 0));
    e.clock.advance(DAY);
    assert_eq!(e.kms.run_due_work().unwrap(), (1, 0));
    assert_eq!(e.kms.run_due_work().unwrap(), (0, 0));
    e.clock.advance(90 * DAY);
    assert_eq!(e.kms.run_due_work().unwrap(), (1, 0));
    let rotations = e.kms.list_key_rotations(&auto).unwrap();
    assert_eq!(rotations.len(), 2);
    assert!(
        rotations
            .iter()
            .all(|r| r.rotation_type == keyward_kms::RotationType::Automatic)
    );
}

#[test]
fn disabling_takes_effect_at_once_and_deletion_shreds() {
    let e = env();
    let id = new_key(&e.kms);
    let c = ctx(&[]);
    let blob = e.kms.encrypt(&id, b"data", &c).unwrap().ciphertext_blob;
    e.kms.disable_key(&id).unwrap();
    assert!(matches!(
        e.kms.encrypt(&id, b"x", &c),
        Err(Error::Disabled(_))
    ));
    assert!(matches!(
        e.kms.decrypt(&blob, &c, None),
        Err(Error::Disabled(_))
    ));
    e.kms.enable_key(&id).unwrap();
    assert!(e.kms.decrypt(&blob, &c, None).is_ok());

    assert!(matches!(
        e.kms.schedule_key_deletion(&id, Some(6)),
        Err(Error::Validation(_))
    ));
    assert!(matches!(
        e.kms.schedule_key_deletion(&id, Some(31)),
        Err(Error::Validation(_))
    ));
    let scheduled = e.kms.schedule_key_deletion(&id, None).unwrap();
    assert_eq!(scheduled.pending_window_in_days, 30);
    assert!(matches!(
        e.kms.decrypt(&blob, &c, None),
        Err(Error::InvalidState(_))
    ));
    e.kms.cancel_key_deletion(&id).unwrap();
    assert_eq!(
        e.kms.describe_key(&id).unwrap().key_state,
        KeyState::Disabled
    );
    e.kms.enable_key(&id).unwrap();

    let material = e.kms.dangerous_export_material_for_tests(&id).unwrap();
    let wrapped: Vec<Vec<u8>> = {
        use keyward_store::Store as _;
        let second = SqliteStore::open(&e.dir.path().join("keyward.db")).unwrap();
        second
            .versions(&id)
            .unwrap()
            .into_iter()
            .map(|v| v.wrapped)
            .collect()
    };
    assert!(!wrapped.is_empty());
    e.kms.schedule_key_deletion(&id, Some(7)).unwrap();
    e.clock.advance(7 * DAY - 1);
    assert_eq!(e.kms.run_due_work().unwrap(), (0, 0));
    e.clock.advance(1);
    assert_eq!(e.kms.run_due_work().unwrap(), (0, 1));
    assert!(matches!(e.kms.describe_key(&id), Err(Error::NotFound(_))));
    assert!(matches!(
        e.kms.decrypt(&blob, &c, None),
        Err(Error::InvalidCiphertext(_))
    ));
    // The material never reached the disk in plain, and its wrapped form is gone from
    // every file of the data directory (database, write-ahead log, shared memory).
    for entry in std::fs::read_dir(e.dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        for m in material
            .iter()
            .map(|m| m.to_vec())
            .chain(wrapped.iter().cloned())
        {
            assert!(!bytes.windows(m.len()).any(|w| w == &m[..]));
        }
    }
}

#[test]
fn no_key_material_in_plain_anywhere_in_the_data_directory() {
    let e = env();
    let mut secrets = Vec::new();
    for _ in 0..5 {
        let id = new_key(&e.kms);
        e.kms.rotate_key_on_demand(&id).unwrap();
        for dk in 0..5 {
            let out = e
                .kms
                .generate_data_key(&id, 32, &ctx(&[("n", &dk.to_string())]))
                .unwrap();
            secrets.push(out.plaintext.to_vec());
        }
        secrets.extend(
            e.kms
                .dangerous_export_material_for_tests(&id)
                .unwrap()
                .iter()
                .map(|m| m.to_vec()),
        );
    }
    let root = std::fs::read(e.dir.path().join("root.key")).unwrap();
    for entry in std::fs::read_dir(e.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n == "root.key") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for s in &secrets {
            assert!(
                !bytes.windows(s.len()).any(|w| w == &s[..]),
                "plain key material in {}",
                path.display()
            );
        }
        assert!(
            !bytes.windows(32).any(|w| w == &root[..]),
            "root key in {}",
            path.display()
        );
    }
}

#[test]
fn a_different_root_key_is_refused_at_open() {
    let e = env();
    new_key(&e.kms);
    drop(e.kms);
    std::fs::remove_file(e.dir.path().join("root.key")).unwrap();
    let r = open_kms(e.dir.path(), e.clock.clone());
    assert!(matches!(r, Err(Error::Internal(_))));
}

#[test]
fn re_encrypt_moves_between_keys_and_contexts() {
    let e = env();
    let (a, b) = (new_key(&e.kms), new_key(&e.kms));
    let (ca, cb) = (ctx(&[("a", "1")]), ctx(&[("b", "2")]));
    let blob = e.kms.encrypt(&a, b"move me", &ca).unwrap().ciphertext_blob;
    let out = e.kms.re_encrypt(&blob, &ca, Some(&a), &b, &cb).unwrap();
    assert_eq!(out.key_id, e.kms.config().key_arn(&b));
    assert_eq!(
        &e.kms
            .decrypt(&out.ciphertext_blob, &cb, None)
            .unwrap()
            .plaintext[..],
        b"move me"
    );
    assert!(matches!(
        e.kms.re_encrypt(&blob, &cb, None, &b, &cb),
        Err(Error::InvalidCiphertext(_))
    ));
}

#[test]
fn aliases_tags_descriptions_and_listing() {
    let e = env();
    let ids: Vec<_> = (0..5).map(|_| new_key(&e.kms)).collect();
    for bad in ["x", "alias/aws/x", "alias/a b"] {
        assert!(matches!(
            e.kms.create_alias(bad, &ids[0]),
            Err(Error::InvalidAliasName(_))
        ));
    }
    e.kms.create_alias("alias/a", &ids[0]).unwrap();
    assert!(matches!(
        e.kms.create_alias("alias/a", &ids[1]),
        Err(Error::AlreadyExists(_))
    ));
    e.kms.update_alias("alias/a", &ids[1]).unwrap();
    assert_eq!(e.kms.describe_key("alias/a").unwrap().key_id, ids[1]);
    e.kms.delete_alias("alias/a").unwrap();
    assert!(matches!(
        e.kms.describe_key("alias/a"),
        Err(Error::NotFound(_))
    ));

    e.kms
        .tag_resource(&ids[0], &[("env".into(), "prod".into())])
        .unwrap();
    assert_eq!(
        e.kms.list_resource_tags(&ids[0]).unwrap(),
        [("env".to_owned(), "prod".to_owned())]
    );
    e.kms.untag_resource(&ids[0], &["env".into()]).unwrap();
    assert!(e.kms.list_resource_tags(&ids[0]).unwrap().is_empty());
    e.kms.update_key_description(&ids[0], "card data").unwrap();
    assert_eq!(
        e.kms.describe_key(&ids[0]).unwrap().description,
        "card data"
    );

    let mut seen = Vec::new();
    let mut marker = None;
    loop {
        let page = e.kms.list_keys(2, marker.as_deref()).unwrap();
        seen.extend(page.items.into_iter().map(|k| k.key_id));
        match page.next_marker {
            Some(m) => marker = Some(m),
            None => break,
        }
    }
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(seen, expected);
    assert!(matches!(
        e.kms.list_keys(0, None),
        Err(Error::Validation(_))
    ));
}

#[test]
fn passphrase_root_key_reopens_and_refuses_a_wrong_passphrase() {
    use keyward_kms::{KdfParams, PASSPHRASE_META, Passphrase};
    use keyward_store::Store as _;
    let dir = tempfile::tempdir().unwrap();
    let cheap = KdfParams {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
    };
    let open = |pass: &str| -> Result<Kms, Error> {
        let store = Arc::new(SqliteStore::open(&dir.path().join("keyward.db")).unwrap());
        let root = AesRootKey::from_passphrase(&Passphrase::new(pass.into())?, &*store, cheap)?;
        Kms::open(
            store,
            Box::new(root),
            Arc::new(ManualClock::new(0)),
            KmsConfig::default(),
        )
    };
    assert!(matches!(
        Passphrase::new("short".into()),
        Err(Error::Validation(_))
    ));
    let kms = open("correct horse battery staple").unwrap();
    let id = new_key(&kms);
    let blob = kms
        .encrypt(&id, b"under a passphrase", &ctx(&[]))
        .unwrap()
        .ciphertext_blob;
    drop(kms);
    assert!(matches!(
        open("correct horse battery stapler"),
        Err(Error::Internal(_))
    ));
    let kms = open("correct horse battery staple").unwrap();
    assert_eq!(
        &kms.decrypt(&blob, &ctx(&[]), None).unwrap().plaintext[..],
        b"under a passphrase"
    );
    drop(kms);

    // Costs come from the database, which is not trusted to set them: 4 GiB is refused.
    let other = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&other.path().join("keyward.db")).unwrap();
    let mut tampered = vec![0u8; 16];
    tampered.extend_from_slice(&(4u32 * 1024 * 1024).to_be_bytes());
    tampered.extend_from_slice(&1u32.to_be_bytes());
    tampered.extend_from_slice(&1u32.to_be_bytes());
    store.init_meta(PASSPHRASE_META, &tampered).unwrap();
    let pass = Passphrase::new("correct horse battery staple".into()).unwrap();
    assert!(matches!(
        AesRootKey::from_passphrase(&pass, &store, cheap),
        Err(Error::Internal(_))
    ));
}

/// Counts WARN events: enough of a subscriber to see the file provider's warning.
struct WarnCounter(std::sync::atomic::AtomicUsize);

impl tracing::Subscriber for WarnCounter {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn the_file_root_key_warns_at_every_start_and_must_be_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("root.key");
    let counter = Arc::new(WarnCounter(std::sync::atomic::AtomicUsize::new(0)));
    tracing::subscriber::with_default(counter.clone(), || {
        assert!(
            AesRootKey::load_or_create_file(&path).unwrap().1,
            "created on first start"
        );
        assert!(!AesRootKey::load_or_create_file(&path).unwrap().1);
    });
    assert_eq!(
        counter.0.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "one warning per start"
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        AesRootKey::load_or_create_file(&path),
        Err(Error::Internal(_))
    ));
}

/// The child of the prompt test: reads a passphrase at a terminal prompt and reports it.
#[test]
fn prompt_child() {
    if std::env::var_os("KEYWARD_PROMPT_CHILD").is_none() {
        return;
    }
    let p = keyward_kms::Passphrase::prompt("passphrase: ").unwrap();
    let root = AesRootKey::from_passphrase(
        &p,
        &SqliteStore::open(&std::path::PathBuf::from(
            std::env::var_os("KEYWARD_PROMPT_CHILD").unwrap(),
        ))
        .unwrap(),
        keyward_kms::KdfParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        },
    );
    println!("PROMPT-OK {}", root.is_ok());
}

#[test]
fn passphrase_prompt_reads_the_terminal() {
    // `script` gives the child a pseudo-terminal; what we write goes to its prompt.
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED passphrase_prompt_reads_the_terminal: no `script` (util-linux)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let cmd = format!(
        "{} prompt_child --exact --nocapture --test-threads=1",
        exe.display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("KEYWARD_PROMPT_CHILD", dir.path().join("db"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Type only once the prompt is up (echo goes off just after it).
    let mut stdout = child.stdout.take().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::Read as _;
        let (mut seen, mut buf, mut ready_tx) = (Vec::new(), [0u8; 256], Some(ready_tx));
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains("passphrase: ") {
                if let Some(tx) = ready_tx.take() {
                    let _ = tx.send(());
                }
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    ready_rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("no prompt within 30 s");
    std::thread::sleep(std::time::Duration::from_millis(100));
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a passphrase long enough\n")
        .unwrap();
    child.wait().unwrap();
    let text = reader.join().unwrap();
    assert!(text.contains("passphrase: "), "{text}");
    assert!(text.contains("PROMPT-OK true"), "{text}");
    assert!(
        !text.contains("a passphrase long enough"),
        "the passphrase was echoed: {text}"
    );
}

#[test]
fn the_alias_cache_follows_every_change() {
    let e = env();
    let (a, b) = (new_key(&e.kms), new_key(&e.kms));
    let used = |kms: &Kms| kms.encrypt("alias/x", b"p", &ctx(&[])).map(|o| o.key_id);
    e.kms.create_alias("alias/x", &a).unwrap();
    assert!(used(&e.kms).unwrap().ends_with(&a)); // now cached
    e.kms.update_alias("alias/x", &b).unwrap();
    assert!(used(&e.kms).unwrap().ends_with(&b));
    e.kms.delete_alias("alias/x").unwrap();
    assert!(matches!(used(&e.kms), Err(Error::NotFound(_))));
    e.kms.create_alias("alias/x", &a).unwrap();
    assert!(used(&e.kms).unwrap().ends_with(&a));
    // Destroying the key removes its aliases.
    e.kms.schedule_key_deletion(&a, Some(7)).unwrap();
    e.clock.advance(8 * DAY);
    e.kms.run_due_work().unwrap();
    assert!(matches!(used(&e.kms), Err(Error::NotFound(_))));
}

#[test]
fn cache_only_answers_warm_keys_and_refuses_to_touch_the_store() {
    let e = env();
    let id = new_key(&e.kms);
    e.kms.create_alias("alias/warm", &id).unwrap();
    let blob = e
        .kms
        .encrypt("alias/warm", b"secret", &ctx(&[]))
        .unwrap()
        .ciphertext_blob;
    // A second KMS over the same data starts cold.
    let cold = open_kms(e.dir.path(), e.clock.clone()).unwrap();
    let would_block = |r: Result<_, Error>| matches!(r, Err(Error::WouldBlock));
    assert!(would_block(keyward_kms::cache_only(|| {
        cold.encrypt("alias/warm", b"p", &ctx(&[])).map(drop)
    })));
    assert!(would_block(keyward_kms::cache_only(|| {
        cold.decrypt(&blob, &ctx(&[]), None).map(drop)
    })));
    // Outside, the same calls read the store and warm the caches ...
    cold.decrypt(&blob, &ctx(&[]), None).unwrap();
    cold.encrypt("alias/warm", b"p", &ctx(&[])).unwrap();
    // ... after which they need nothing else.
    keyward_kms::cache_only(|| {
        let out = cold.decrypt(&blob, &ctx(&[]), None).unwrap();
        assert_eq!(&out.plaintext[..], b"secret");
        cold.encrypt("alias/warm", b"p", &ctx(&[])).unwrap();
        cold.generate_data_key("alias/warm", 32, &ctx(&[])).unwrap();
        // A change is never made from the cache.
        assert!(would_block(cold.disable_key(&id)));
    });
    // A change made outside is seen at once inside.
    cold.disable_key(&id).unwrap();
    assert!(matches!(
        keyward_kms::cache_only(|| cold.encrypt("alias/warm", b"p", &ctx(&[]))),
        Err(Error::Disabled(_))
    ));
}
