//! The audit log of a real `keyward serve`: `keyward audit verify` catches every kind of
//! tampering (an edited field, a deleted, inserted or swapped record, a cut tail against
//! an exported checkpoint), and the log is fail-closed: with its file sink's disk full,
//! cryptographic operations and changes are refused and nothing is done unaudited; they
//! resume when the disk has room again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn keyward(args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(args)
        .env_remove("AWS_PROFILE")
        .envs(env.iter().cloned())
        .output()
        .unwrap()
}

fn verify(args: &[&str]) -> (i32, String) {
    let out = keyward(&[&["audit", "verify"], args].concat(), &[]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn stop(server: &mut common::Server) {
    let pid = server.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(server.child.wait().unwrap().success());
}

/// A few allowed and failed requests through the API.
fn workload(env: &[(String, String)], n: usize) {
    for i in 0..n {
        let alias = format!("alias/a{i}");
        let out = keyward(&["key", "create", "--alias", &alias], env);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // A failed request (NotFoundException) is audited too.
        assert!(
            !keyward(&["key", "describe", "alias/none"], env)
                .status
                .success()
        );
    }
}

/// Starts `keyward serve` on `data`, which must refuse to start; returns what it said.
fn refused_start(data: &str) -> String {
    let out = Command::new("timeout")
        .arg("30")
        .arg(env!("CARGO_BIN_EXE_keyward"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", data])
        .output()
        .unwrap();
    assert!(!out.status.success(), "it started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write_lines(path: &Path, lines: &[String]) {
    fs::write(
        path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

#[test]
fn verify_catches_every_kind_of_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = common::start(&data);
    workload(&server.env, 4);
    stop(&mut server); // signs a final checkpoint
    let data_s = data.to_str().unwrap();
    let (code, out) = verify(&["--data-dir", data_s]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("verified 12 records"), "{out}"); // 4 x (CreateKey, CreateAlias, failed DescribeKey)

    let export = dir.path().join("export");
    assert!(
        keyward(
            &[
                "audit",
                "export",
                "--data-dir",
                data_s,
                "--out",
                export.to_str().unwrap()
            ],
            &[]
        )
        .status
        .success()
    );
    let records = export.join("audit.jsonl");
    let original: Vec<String> = fs::read_to_string(&records)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(original.len(), 12);
    let file = records.to_str().unwrap();
    assert_eq!(verify(&["--file", file]).0, 0);

    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "edited",
            {
                let mut l = original.clone();
                l[4] = l[4].replace("\"principal\":\"admin\"", "\"principal\":\"someone\"");
                assert_ne!(l[4], original[4]);
                l
            },
            "BROKEN at record 5: record 5 was altered",
        ),
        (
            "deleted",
            {
                let mut l = original.clone();
                l.remove(6);
                l
            },
            "BROKEN at record 7",
        ),
        (
            "inserted",
            {
                let mut l = original.clone();
                l.insert(3, original[8].clone());
                l
            },
            "BROKEN at record 4",
        ),
        (
            "swapped",
            {
                let mut l = original.clone();
                l.swap(2, 3);
                l
            },
            "BROKEN at record 3",
        ),
        (
            "cut",
            original[..9].to_vec(),
            "BROKEN at record 10: the log ends at record 9 but a checkpoint proves it reached 12",
        ),
    ];
    for (what, lines, expect) in cases {
        write_lines(&records, &lines);
        let (code, out) = verify(&["--file", file]);
        assert_eq!(code, 1, "{what} not detected: {out}");
        assert!(out.contains(expect), "{what}: {out}");
    }
    write_lines(&records, &original);
    assert_eq!(verify(&["--file", file]).0, 0);

    // Someone with the database and the audit directory cuts the tail and the checkpoints
    // that cover it, everywhere on this machine: only the exported checkpoint proves it.
    {
        use keyward_store::Store as _;
        let db = keyward_store::SqliteStore::open(&data.join("keyward.db")).unwrap();
        db.truncate_audit(9, 0).unwrap();
    }
    let local = data.join("audit");
    let kept: Vec<String> = original[..9].to_vec();
    write_lines(&local.join("audit.jsonl"), &kept);
    fs::write(local.join("checkpoints.jsonl"), "").unwrap();
    let (code, out) = verify(&["--data-dir", data_s]);
    assert_eq!(code, 0, "without the export the cut is invisible: {out}");
    let exported = export.join("checkpoints.jsonl");
    let (code, out) = verify(&[
        "--data-dir",
        data_s,
        "--checkpoints",
        exported.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("checkpoint proves it reached 12"), "{out}");

    // A wrong public key is refused.
    let (code, _) = verify(&["--file", file, "--public-key", &"04".repeat(65)]);
    assert_eq!(code, 1);
}

/// Mounts a 1 MiB tmpfs at `dir` (needs root); unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path) -> Option<Self> {
        fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `dir` with a file `filler`.
fn fill(dir: &Path) {
    use std::io::Write as _;
    let mut f = fs::File::create(dir.join("filler")).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    // tmpfs hands out whole pages: fill the last one byte by byte.
    while f.write_all(&[0]).is_ok() {}
    let _ = f.sync_all();
}

#[test]
fn a_full_audit_disk_refuses_operations_until_it_has_room() {
    // Synced per batch by the writer, and written through by each request.
    for sync in ["batch", "interval"] {
        full_audit_disk(sync);
    }
}

fn full_audit_disk(sync: &str) {
    let dir = tempfile::tempdir().unwrap();
    let audit_dir = dir.path().join("audit");
    let Some(_mount) = Tmpfs::mount(&audit_dir) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this test as root (it mounts a small tmpfs)"
        );
        eprintln!(
            "SKIPPED a_full_audit_disk_refuses_operations_until_it_has_room: mounting a tmpfs needs root"
        );
        return;
    };
    let data = dir.path().join("data");
    let audit_s = audit_dir.to_str().unwrap();
    let mut server = common::start_with(&data, &["--audit-dir", audit_s, "--audit-sync", sync]);
    let env = server.env.clone();
    let created = keyward(&["key", "create", "--alias", "alias/files"], &env);
    assert!(created.status.success());
    let created: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    let arn = created["KeyMetadata"]["Arn"].as_str().unwrap().to_owned();
    let plain = dir.path().join("plain");
    fs::write(&plain, b"audited data").unwrap();
    let encrypt = |out: &str| {
        keyward(
            &[
                "encrypt",
                "--kms-key",
                "alias/files",
                "--in",
                plain.to_str().unwrap(),
                "--out",
                out,
            ],
            &env,
        )
    };
    let sealed = dir.path().join("sealed");
    assert!(encrypt(sealed.to_str().unwrap()).status.success());
    fill(&audit_dir);
    // The records file's last page may still take a few records; once it is full, a
    // cryptographic operation is performed but its result withheld without a record.
    let mut refused = None;
    for i in 0..100 {
        let out = encrypt(dir.path().join(format!("out{i}")).to_str().unwrap());
        if !out.status.success() {
            assert!(!dir.path().join(format!("out{i}")).exists());
            refused = Some(out);
            break;
        }
    }
    let refused = refused.expect("encryption kept working with the audit disk full");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("DependencyTimeoutException"), "{err}");
    let records_before = fs::read_to_string(audit_dir.join("audit.jsonl"))
        .unwrap()
        .lines()
        .count();
    // A change of state: not started.
    let created = keyward(&["key", "create", "--alias", "alias/unaudited"], &env);
    assert!(
        !created.status.success(),
        "a key was created with the audit log failing"
    );
    let decrypted = dir.path().join("decrypted");
    let decrypt = || {
        keyward(
            &[
                "decrypt",
                "--kms-key",
                &arn,
                "--in",
                sealed.to_str().unwrap(),
                "--out",
                decrypted.to_str().unwrap(),
            ],
            &env,
        )
    };
    assert!(!decrypt().status.success());

    // Room again: service resumes (the writer retries every second).
    fs::remove_file(audit_dir.join("filler")).unwrap();
    let mut resumed = false;
    for _ in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(200));
        if decrypt().status.success() {
            resumed = true;
            break;
        }
    }
    assert!(
        resumed,
        "service did not resume once the audit disk had room"
    );
    assert_eq!(fs::read(&decrypted).unwrap(), b"audited data");
    stop(&mut server);

    // Nothing was done unaudited: the refused CreateKey made no key, and the log holds
    // exactly the requests that were answered, and verifies.
    let (code, out) = verify(&["--data-dir", data.to_str().unwrap(), "--audit-dir", audit_s]);
    assert_eq!(code, 0, "{out}");
    let log = fs::read_to_string(audit_dir.join("audit.jsonl")).unwrap();
    assert!(!log.contains("alias/unaudited"));
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        records.len(),
        records_before + 1,
        "only the decrypt after recovery was added"
    );
    assert_eq!(records.last().unwrap()["operation"], "Decrypt");
    let db = rusqlite::Connection::open(data.join("keyward.db")).unwrap();
    let keys: i64 = db
        .query_row("SELECT count(*) FROM keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(keys, 1, "a key was made while the audit log was failing");
}

/// After a crash between the two copies' appends (or a power loss that took the
/// database's last commits, which it makes without fsync), a start copies what one copy
/// lacks from the other; copies that disagree stop the server from starting.
#[test]
fn a_start_repairs_a_lagging_copy_and_refuses_disagreeing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();
    let mut server = common::start(&data);
    workload(&server.env, 2);
    stop(&mut server);
    let records = data.join("audit/audit.jsonl");
    let full = fs::read_to_string(&records).unwrap();
    assert_eq!(full.lines().count(), 6);

    // The database lost its last 3 records.
    let db = rusqlite::Connection::open(data.join("keyward.db")).unwrap();
    db.execute("DELETE FROM audit_batches WHERE first_seq > 3", [])
        .unwrap();
    drop(db);
    let mut server = common::start(&data);
    stop(&mut server);
    let (code, out) = verify(&["--data-dir", data_s]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("database: verified 6 records"), "{out}");

    // The file lost its last 2.
    let lines: Vec<String> = full.lines().map(str::to_owned).collect();
    write_lines(&records, &lines[..4]);
    let mut server = common::start(&data);
    stop(&mut server);
    let (code, out) = verify(&["--data-dir", data_s]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(fs::read_to_string(&records).unwrap(), full);

    // The file's last record differs from the database's: no start.
    let mut changed = lines.clone();
    changed[5] = changed[5].replace("\"principal\":\"admin\"", "\"principal\":\"nobody\"");
    write_lines(&records, &changed);
    let err = refused_start(data_s);
    assert!(err.contains("disagree at record 6"), "{err}");
    write_lines(&records, &lines);

    // A swapped checkpoint public key (to pass off checkpoints signed by another key):
    // no start.
    let db = rusqlite::Connection::open(data.join("keyward.db")).unwrap();
    db.execute(
        "UPDATE meta SET value = ?1 WHERE name = 'audit.public_key'",
        [format!("04{}", "ab".repeat(64)).into_bytes()],
    )
    .unwrap();
    drop(db);
    let err = refused_start(data_s);
    assert!(err.contains("public key is not the signing key"), "{err}");
}

/// The log kept in PostgreSQL: verify, query and report read it with --database-url,
/// and verify catches a record edited in the database.
#[test]
fn a_log_in_postgres_verifies_and_catches_an_edit() {
    let Some(pg) = keyward_testpg::PgCluster::start() else {
        return;
    };
    let url = pg.url();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = common::start_with(&data, &["--database-url", &url]);
    workload(&server.env, 3);
    stop(&mut server);
    let data_s = data.to_str().unwrap();
    let db = ["--data-dir", data_s, "--database-url", url.as_str()];
    let (code, out) = verify(&db);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("verified 9 records"), "{out}");
    let queried = keyward(
        &[&["audit", "query"][..], &db, &["--operation", "CreateKey"]].concat(),
        &[],
    );
    assert!(queried.status.success(), "{queried:?}");
    assert_eq!(String::from_utf8_lossy(&queried.stdout).lines().count(), 3);
    let report = keyward(&[&["audit", "report"][..], &db].concat(), &[]);
    assert!(report.status.success(), "{report:?}");
    assert!(String::from_utf8_lossy(&report.stdout).contains("CreateKey"));

    pg.psql(
        "keyward",
        "UPDATE audit_batches SET lines = replace(lines, '\"principal\":\"admin\"', \
         '\"principal\":\"someone\"') WHERE first_seq = (SELECT min(first_seq) FROM audit_batches)",
    );
    let (code, out) = verify(&db);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("BROKEN at record 1"), "{out}");
}
