//! The group-commit writer with the file sink: concurrent records, checkpoints, a sink
//! that fails (disk full) and recovers, and a crash's partial line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyward_audit::sink::{CHECKPOINTS, FileSink, RECORDS, read_checkpoints};
use keyward_audit::writer::CheckpointEvery;
use keyward_audit::{
    AuditLog, AuditUnavailable, CheckpointSigner, Event, Outcome, Record, Sink, verify,
};

fn event(i: u64) -> Event {
    Event {
        time_ms: i as i64,
        request_id: format!("r{i}"),
        principal: Some(format!("p{}", i % 4)),
        source: "127.0.0.1:9".into(),
        tls_identity: None,
        operation: "GenerateDataKey".into(),
        key_arn: Some("arn:aws:kms:us-east-1:111122223333:key/k".into()),
        key_version: Some(1),
        outcome: Outcome::Allowed,
        error_type: None,
        context: Default::default(),
    }
}

fn signer() -> (CheckpointSigner, Vec<u8>) {
    let pkcs8 = CheckpointSigner::generate().unwrap().to_vec();
    (CheckpointSigner::from_pkcs8(&pkcs8).unwrap(), pkcs8)
}

fn lines(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(dir.join(RECORDS))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn concurrent_records_are_chained_once_each_with_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let sink = FileSink::open(dir.path()).unwrap();
    let chain = sink.chain().unwrap();
    let (signer, _) = signer();
    let pk = signer.public_key().to_owned();
    let every = CheckpointEvery {
        records: 100,
        interval: Duration::from_secs(3600),
    };
    let log = AuditLog::start(vec![Box::new(sink)], chain, signer, every);
    let seqs = Arc::new(Mutex::new(BTreeSet::new()));
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let (log, seqs) = (log.clone(), seqs.clone());
            s.spawn(move || {
                for i in 0..200 {
                    let seq = log.record_blocking(event(t * 1000 + i)).unwrap();
                    assert!(seqs.lock().unwrap().insert(seq));
                }
            });
        }
    });
    assert_eq!(*seqs.lock().unwrap(), (1..=1600).collect());
    drop(log);
    std::thread::sleep(Duration::from_millis(100));
    let cps = read_checkpoints(&dir.path().join(CHECKPOINTS)).unwrap();
    assert!(cps.len() >= 15, "{} checkpoints", cps.len());
    let v = verify(lines(dir.path()), &cps, &pk).unwrap();
    assert_eq!(v.records, 1600);
    // Every request id appears exactly once.
    let ids: BTreeSet<String> = lines(dir.path())
        .iter()
        .map(|l| serde_json::from_str::<Record>(l).unwrap().event.request_id)
        .collect();
    assert_eq!(ids.len(), 1600);
}

/// A sink that fails while `fail` is set, beside the real file sink.
struct Flaky {
    fail: Arc<Mutex<bool>>,
}

impl Sink for Flaky {
    fn append(
        &mut self,
        _: &[Record],
        _: &[String],
        _: Option<&keyward_audit::Checkpoint>,
    ) -> std::io::Result<()> {
        if *self.fail.lock().unwrap() {
            Err(std::io::Error::other("no space left on device"))
        } else {
            Ok(())
        }
    }
    fn undo_last(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failing_sink_refuses_records_leaves_nothing_behind_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let fail = Arc::new(Mutex::new(false));
    let sink = FileSink::open(dir.path()).unwrap();
    let chain = sink.chain().unwrap();
    let (signer, _) = signer();
    let pk = signer.public_key().to_owned();
    let every = CheckpointEvery {
        records: 3,
        interval: Duration::from_secs(3600),
    };
    // The file sink first, so that its append must be undone when the second fails.
    let log = AuditLog::start(
        vec![Box::new(sink), Box::new(Flaky { fail: fail.clone() })],
        chain,
        signer,
        every,
    );
    for i in 1..=5 {
        assert_eq!(log.record_blocking(event(i)), Ok(i));
    }
    *fail.lock().unwrap() = true;
    for i in 6..=8 {
        assert_eq!(log.record_blocking(event(i)), Err(AuditUnavailable));
        assert!(!log.healthy());
    }
    assert_eq!(
        lines(dir.path()).len(),
        5,
        "a refused record stayed in the file"
    );
    *fail.lock().unwrap() = false;
    assert_eq!(log.record_blocking(event(9)), Ok(6));
    assert!(log.healthy());
    let cps = read_checkpoints(&dir.path().join(CHECKPOINTS)).unwrap();
    assert_eq!(verify(lines(dir.path()), &cps, &pk).unwrap().records, 6);
}

#[test]
fn a_full_disk_refuses_records() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/dev/full", dir.path().join(RECORDS)).unwrap();
    let sink = FileSink::open(dir.path()).unwrap();
    let (signer, _) = signer();
    let every = CheckpointEvery {
        records: 100,
        interval: Duration::from_secs(3600),
    };
    let chain = keyward_audit::Chain {
        seq: 0,
        hash: keyward_audit::record::GENESIS.into(),
    };
    let log = AuditLog::start(vec![Box::new(sink)], chain, signer, every);
    assert_eq!(log.record_blocking(event(1)), Err(AuditUnavailable));
}

#[test]
fn a_partial_last_line_from_a_crash_is_dropped_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let r1 = Record::chain(1, keyward_audit::record::GENESIS, event(1));
    let r2 = Record::chain(2, &r1.hash, event(2));
    let torn = &r2.line()[..40];
    std::fs::write(dir.path().join(RECORDS), format!("{}\n{torn}", r1.line())).unwrap();
    let sink = FileSink::open(dir.path()).unwrap();
    assert_eq!(sink.chain().unwrap().seq, 1);
    assert_eq!(lines(dir.path()), [r1.line()]);
}

/// A sink whose undo fails too (the disk is full for the undo as well).
struct Stuck;

impl Sink for Stuck {
    fn append(
        &mut self,
        _: &[Record],
        _: &[String],
        _: Option<&keyward_audit::Checkpoint>,
    ) -> std::io::Result<()> {
        Ok(())
    }
    fn undo_last(&mut self) -> std::io::Result<()> {
        Err(std::io::Error::other("no space left on device"))
    }
}

#[test]
fn a_failed_undo_stops_the_log_for_good() {
    let fail = Arc::new(Mutex::new(false));
    let (signer, _) = signer();
    let every = CheckpointEvery {
        records: 1000,
        interval: Duration::from_millis(200),
    };
    let log = AuditLog::start(
        vec![Box::new(Stuck), Box::new(Flaky { fail: fail.clone() })],
        keyward_audit::Chain {
            seq: 0,
            hash: keyward_audit::record::GENESIS.to_owned(),
        },
        signer,
        every,
    );
    assert_eq!(log.record_blocking(event(1)), Ok(1));
    *fail.lock().unwrap() = true;
    assert_eq!(log.record_blocking(event(2)), Err(AuditUnavailable));
    // The second sink recovers, but the first still holds the refused record: nothing
    // may be built on it, retries included.
    *fail.lock().unwrap() = false;
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!log.healthy());
    assert_eq!(log.record_blocking(event(3)), Err(AuditUnavailable));
}

#[test]
fn a_checkpoint_never_reaches_the_disk_before_its_records() {
    use keyward_audit::sink::SyncPolicy;
    let dir = tempfile::tempdir().unwrap();
    let mut sink =
        FileSink::open_with(dir.path(), SyncPolicy::Within(Duration::from_secs(3600))).unwrap();
    let r = Record::chain(1, keyward_audit::record::GENESIS, event(1));
    sink.append(std::slice::from_ref(&r), &[r.line()], None)
        .unwrap();
    assert!(sink.needs_sync(), "written, not yet synced");
    let (signer, _) = signer();
    let c = signer.sign(1, &r.hash, 0).unwrap();
    sink.append(&[], &[], Some(&c)).unwrap();
    assert!(
        !sink.needs_sync(),
        "the records were synced before the checkpoint"
    );
}
