//! Crash safety: a child process writes in a loop and is killed with SIGKILL at random
//! moments, many times. After each kill the store must open cleanly and hold every write
//! the child had reported as done.
//!
//! The child is this test binary itself, run with KEYWARD_CRASH_CHILD set (and, for
//! PostgreSQL, KEYWARD_CRASH_DATABASE_URL). Over PostgreSQL the server is also restarted
//! under the writer now and then.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward_kms::{CreateKeyRequest, EncryptionContext, Kms, SystemClock};

fn open(dir: &Path, url: Option<&str>) -> Kms {
    match url {
        None => common::open_kms(dir, Arc::new(SystemClock)).unwrap(),
        Some(url) => {
            let url = keyward_store::DatabaseUrl::parse(url).unwrap();
            let store = Arc::new(keyward_store::PostgresStore::open(&url).unwrap());
            let (root, _) =
                keyward_kms::AesRootKey::load_or_create_file(&dir.join("root.key")).unwrap();
            Kms::open(
                store,
                Box::new(root),
                Arc::new(SystemClock),
                keyward_kms::KmsConfig::default(),
            )
            .unwrap()
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The child: writes forever, printing each write once it has returned.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os("KEYWARD_CRASH_CHILD") else {
        return;
    };
    let url = std::env::var("KEYWARD_CRASH_DATABASE_URL").ok();
    let kms = open(Path::new(&dir), url.as_deref());
    let ctx = EncryptionContext::new();
    let mut out = std::io::stdout().lock();
    loop {
        let key = kms.create_key(&CreateKeyRequest::default()).unwrap().key_id;
        writeln!(out, "key {key}").unwrap();
        out.flush().unwrap();
        for n in 0..3 {
            kms.rotate_key_on_demand(&key).unwrap();
            writeln!(out, "version {key} {}", n + 2).unwrap();
            out.flush().unwrap();
            let blob = kms
                .encrypt(&key, key.as_bytes(), &ctx)
                .unwrap()
                .ciphertext_blob;
            writeln!(out, "blob {key} {}", hex(&blob)).unwrap();
            out.flush().unwrap();
        }
        kms.disable_key(&key).unwrap();
        writeln!(out, "disabled {key}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    sigkill_rounds(None, 30, 5);
}

#[test]
fn acknowledged_writes_survive_sigkill_and_server_restarts_postgres() {
    let Some(pg) = keyward_testpg::PgCluster::start() else {
        return;
    };
    sigkill_rounds(Some(&pg), 15, 50);
}

/// Kills the writing child after `min_ms` to `min_ms + 144` ms, `rounds` times, and
/// checks every acknowledged write after each kill.
fn sigkill_rounds(pg: Option<&keyward_testpg::PgCluster>, rounds: usize, min_ms: u64) {
    let dir = tempfile::tempdir().unwrap();
    let url = pg.map(|pg| pg.url());
    let exe = std::env::current_exe().unwrap();
    let ctx = EncryptionContext::new();
    let mut seed = u64::from(std::process::id()) | 1;
    let mut acknowledged = Vec::new();
    for round in 0..rounds {
        let mut child = Command::new(&exe);
        child
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env("KEYWARD_CRASH_CHILD", dir.path());
        if let Some(url) = &url {
            child.env("KEYWARD_CRASH_DATABASE_URL", url);
        }
        let mut child = child
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill after a random 5-150 ms of writing.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let wait = Duration::from_millis(min_ms + seed % 145);
        let start = Instant::now();
        while start.elapsed() < wait {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Every fifth round the server restarts under the writer first: writes in
        // flight fail (and the child with them); acknowledged ones must stay.
        if let Some(pg) = pg.filter(|_| round % 5 == 4) {
            pg.restart();
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Everything the child printed had returned before the kill.
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        acknowledged.extend(
            lines
                .map_while(Result::ok)
                .filter(|l| !l.starts_with("running") && !l.is_empty()),
        );

        let kms = open(dir.path(), url.as_deref());
        for line in &acknowledged {
            let mut parts = line.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("key"), Some(key), None) => drop(kms.describe_key(key).unwrap()),
                (Some("version"), Some(key), Some(v)) => {
                    let have = kms.list_key_rotations(key).unwrap().len() + 1;
                    assert!(
                        have >= v.parse::<usize>().unwrap(),
                        "{line}: lost a rotation"
                    );
                }
                (Some("blob"), Some(key), Some(blob)) => {
                    // Decrypt needs the key enabled; a later write may have disabled it.
                    kms.enable_key(key).unwrap();
                    let out = kms.decrypt(&unhex(blob), &ctx, None).unwrap();
                    assert_eq!(&out.plaintext[..], key.as_bytes());
                }
                (Some("disabled"), Some(_), None) => {}
                _ => {}
            }
        }
    }
    assert!(
        acknowledged
            .iter()
            .filter(|l| l.starts_with("key "))
            .count()
            >= rounds / 2,
        "the child barely ran"
    );
    eprintln!(
        "{} acknowledged writes survived {rounds} SIGKILLs",
        acknowledged.len()
    );
}
