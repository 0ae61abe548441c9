//! The KMS with a manual clock: the cases in kms/cases.rs run over SQLite and over
//! PostgreSQL with the development root key file, and over SQLite once per other
//! root-key provider (unseal shares; a key in SoftHSM2); what is particular to a
//! provider runs here once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::ctx;
use keyward_kms::{AesRootKey, Error, Kms, KmsConfig, ManualClock};
use keyward_store::SqliteStore;

/// The cases, over SQLite in the data directory.
mod sqlite {
    fn db() -> Option<crate::common::Db> {
        crate::common::Db::sqlite()
    }
    include!("kms/cases.rs");
}

/// The cases, over a throwaway PostgreSQL cluster (skipped without PostgreSQL).
mod postgres {
    fn db() -> Option<crate::common::Db> {
        crate::common::Db::postgres()
    }
    include!("kms/cases.rs");
}

/// The cases, with the root key sealed by unseal shares (two of three given at every
/// open of the KMS).
mod shamir {
    fn db() -> Option<crate::common::Db> {
        crate::common::Db::sqlite_with(crate::common::Provider::Shamir(Default::default()))
    }
    include!("kms/cases.rs");
}

/// The cases, with the root key sealed by a key in SoftHSM2. They run only in the
/// process that [`the_cases_run_with_the_root_key_in_softhsm2`] starts with the token
/// set up (SoftHSM2 reads its configuration from the environment, which a test cannot
/// set for itself without `unsafe`); elsewhere `db()` is `None` and they return at once.
mod pkcs11 {
    fn db() -> Option<crate::common::Db> {
        crate::common::Db::pkcs11()
    }
    include!("kms/cases.rs");

    /// The wrapping key is sensitive and was never extractable: the token refuses its
    /// value; and the token's key is what opens the store.
    #[test]
    fn the_wrapping_key_never_leaves_the_token() {
        use keyward_kms::seal::Seal;
        let Some(db) = db() else { return };
        let kms = db
            .open_kms(std::sync::Arc::new(keyward_kms::ManualClock::new(0)))
            .unwrap();
        let Seal::Pkcs11(seal) = Seal::load(&**kms.store()).unwrap() else {
            panic!("not sealed by the HSM")
        };
        let spec = std::env::var("KEYWARD_TEST_PKCS11").unwrap();
        let mut parts = spec.splitn(3, ':');
        let (module, pin) = (parts.next().unwrap(), parts.next().unwrap());
        let access = keyward_kms::hsm::HsmAccess::new(
            std::path::Path::new(module),
            std::path::Path::new(pin),
        )
        .unwrap();
        assert!(seal.key_stays_in_token(&access).unwrap());
        assert_eq!(seal.unseal(&access).unwrap().to_vec(), db.root_secret());
    }
}

/// Runs the `pkcs11::` cases in a child process of this test binary, with a throwaway
/// SoftHSM2 token. Skipped (and says so) without SoftHSM2, except in CI.
#[test]
fn the_cases_run_with_the_root_key_in_softhsm2() {
    if std::env::var_os("KEYWARD_TEST_PKCS11").is_some() {
        return; // the child itself
    }
    let Some(hsm) = keyward_testpg::SoftHsm::start("the KMS cases under SoftHSM2") else {
        return;
    };
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["pkcs11::", "--test-threads", "4"])
        .env("SOFTHSM2_CONF", hsm.conf())
        .env(
            "KEYWARD_TEST_PKCS11",
            format!(
                "{}:{}:{}",
                hsm.module().display(),
                hsm.pin_file().display(),
                hsm.token()
            ),
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the cases failed under SoftHSM2");
    let cases = include_str!("kms/cases.rs").matches("#[test]").count() + 1;
    assert!(
        text.contains(&format!("test result: ok. {cases} passed")),
        "expected all {cases} cases to run under SoftHSM2"
    );
}

fn new_key(kms: &Kms) -> String {
    common::new_key(kms)
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
