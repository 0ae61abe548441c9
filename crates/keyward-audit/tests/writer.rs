//! The group-commit writer with the file sink: concurrent records, checkpoints, a sink
//! that fails (disk full) and recovers, and a crash's partial line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use keyward_audit::sink::{CHECKPOINTS, FileSink, RECORDS, SyncPolicy, read_checkpoints};
use keyward_audit::writer::CheckpointEvery;
use keyward_audit::{
    AuditLog, AuditUnavailable, CheckpointSigner, Event, Line, Outcome, Record, Sink, verify,
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

/// Both ways the file sink is written: synced per batch by the writer thread, and
/// written through by each request, synced within a bound.
const POLICIES: [SyncPolicy; 2] = [
    SyncPolicy::EveryBatch,
    SyncPolicy::Within(Duration::from_millis(10)),
];

#[test]
fn concurrent_records_are_chained_once_each_with_checkpoints() {
    for policy in POLICIES {
        concurrent_records(policy);
    }
}

fn concurrent_records(policy: SyncPolicy) {
    let dir = tempfile::tempdir().unwrap();
    let sink = FileSink::open_with(dir.path(), policy).unwrap();
    let chain = sink.chain().unwrap();
    let (signer, _) = signer();
    let pk = signer.public_key().to_owned();
    let every = CheckpointEvery {
        records: 100,
        interval: Duration::from_secs(3600),
    };
    let copy = Copy::default();
    let log = AuditLog::start(
        Box::new(sink),
        Some(Box::new(copy.clone())),
        chain,
        signer,
        every,
    )
    .unwrap();
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
    // Due every 100 records: the writer that syncs every batch makes one at the batch
    // that reaches it; written through, records go on while the writer makes one (two
    // fsyncs and a signature), so later ones cover more.
    let least = if policy == SyncPolicy::EveryBatch {
        15
    } else {
        3
    };
    assert!(cps.len() >= least, "{} checkpoints", cps.len());
    assert_eq!(cps.last().map(|c| c.seq), Some(1600), "the last covers all");
    let v = verify(lines(dir.path()), &cps, &pk).unwrap();
    assert_eq!(v.records, 1600);
    // The copy got every record once, in order, and every checkpoint.
    assert_eq!(*copy.seqs.lock().unwrap(), (1..=1600).collect::<Vec<_>>());
    assert_eq!(
        *copy.checkpoints.lock().unwrap(),
        cps.iter().map(|c| c.seq).collect::<Vec<_>>()
    );
    // Every request id appears exactly once.
    let ids: BTreeSet<String> = lines(dir.path())
        .iter()
        .map(|l| serde_json::from_str::<Record>(l).unwrap().event.request_id)
        .collect();
    assert_eq!(ids.len(), 1600);
}

/// The file sink, failing after its write while `fail` is set (a write that reached the
/// file, then an fsync that failed): the writer must undo it.
struct Flaky {
    file: FileSink,
    fail: Arc<Mutex<bool>>,
    /// Records in each append that had any.
    appends: Arc<Mutex<Vec<usize>>>,
    /// If set, the next append with records says it has begun and waits to be let go.
    gate: Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>,
}

impl Flaky {
    fn new(file: FileSink, fail: Arc<Mutex<bool>>) -> Self {
        Self {
            file,
            fail,
            appends: Arc::default(),
            gate: None,
        }
    }
}

impl Sink for Flaky {
    fn append(
        &mut self,
        records: &[Line],
        checkpoint: Option<&keyward_audit::Checkpoint>,
    ) -> std::io::Result<()> {
        if !records.is_empty() {
            self.appends.lock().unwrap().push(records.len());
            if let Some((begun, go)) = self.gate.take() {
                begun.send(()).unwrap();
                go.recv().unwrap();
            }
        }
        self.file.append(records, checkpoint)?;
        if *self.fail.lock().unwrap() {
            Err(std::io::Error::other("no space left on device"))
        } else {
            Ok(())
        }
    }
    fn undo_last(&mut self) -> std::io::Result<()> {
        self.file.undo_last()
    }
    fn needs_sync(&self) -> bool {
        self.file.needs_sync()
    }
    fn sync(&mut self) -> std::io::Result<()> {
        self.file.sync()
    }
    fn write_through(&self) -> bool {
        self.file.write_through()
    }
    fn take_sync(&mut self) -> Option<Box<dyn FnOnce() -> std::io::Result<()> + Send>> {
        self.file.take_sync()
    }
}

#[test]
fn a_failing_sink_refuses_records_leaves_nothing_behind_and_recovers() {
    for policy in POLICIES {
        failing_sink(policy);
    }
}

fn failing_sink(policy: SyncPolicy) {
    let dir = tempfile::tempdir().unwrap();
    let fail = Arc::new(Mutex::new(false));
    let file = FileSink::open_with(dir.path(), policy).unwrap();
    let chain = file.chain().unwrap();
    let (signer, _) = signer();
    let pk = signer.public_key().to_owned();
    let every = CheckpointEvery {
        records: 3,
        interval: Duration::from_secs(3600),
    };
    let flaky = Flaky::new(file, fail.clone());
    let log = AuditLog::start(Box::new(flaky), None, chain, signer, every).unwrap();
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

/// A follower that keeps what it is given, failing while `fail` is set.
#[derive(Clone, Default)]
struct Copy {
    seqs: Arc<Mutex<Vec<u64>>>,
    checkpoints: Arc<Mutex<Vec<u64>>>,
    fail: Arc<Mutex<bool>>,
}

impl Sink for Copy {
    fn append(
        &mut self,
        records: &[Line],
        checkpoint: Option<&keyward_audit::Checkpoint>,
    ) -> std::io::Result<()> {
        if *self.fail.lock().unwrap() {
            return Err(std::io::Error::other("database is locked"));
        }
        self.seqs
            .lock()
            .unwrap()
            .extend(records.iter().map(|r| r.seq));
        self.checkpoints
            .lock()
            .unwrap()
            .extend(checkpoint.map(|c| c.seq));
        Ok(())
    }
    fn undo_last(&mut self) -> std::io::Result<()> {
        unreachable!("a follower is never undone")
    }
}

fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(
            std::time::Instant::now() < until,
            "timed out waiting: {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_store_copy_follows_and_a_failing_copy_stops_the_log_until_it_recovers() {
    for policy in POLICIES {
        failing_copy(policy);
    }
}

fn failing_copy(policy: SyncPolicy) {
    let dir = tempfile::tempdir().unwrap();
    let file = FileSink::open_with(dir.path(), policy).unwrap();
    let chain = file.chain().unwrap();
    let (signer, _) = signer();
    let every = CheckpointEvery {
        records: 4,
        interval: Duration::from_secs(3600),
    };
    let copy = Copy::default();
    let log = AuditLog::start(
        Box::new(file),
        Some(Box::new(copy.clone())),
        chain,
        signer,
        every,
    )
    .unwrap();
    for i in 1..=5 {
        assert_eq!(log.record_blocking(event(i)), Ok(i));
    }
    eventually("the copy has 1..=5", || {
        *copy.seqs.lock().unwrap() == [1, 2, 3, 4, 5]
    });
    // Due at record 4: made there, or written through, wherever the chain stands when
    // the writer gets to it.
    let checkpoints = copy.checkpoints.lock().unwrap().clone();
    assert!(matches!(checkpoints[..], [4] | [5]), "{checkpoints:?}");
    *copy.fail.lock().unwrap() = true;
    // Durable in the file, so acknowledged; its copy then fails.
    assert_eq!(log.record_blocking(event(6)), Ok(6));
    eventually("the failed copy stops the log", || !log.healthy());
    assert_eq!(log.record_blocking(event(7)), Err(AuditUnavailable));
    assert_eq!(
        lines(dir.path()).len(),
        6,
        "a refused record reached the file"
    );
    *copy.fail.lock().unwrap() = false;
    // Retried within a second: record 6 reaches the copy, and service resumes.
    eventually("the copy recovers", || log.healthy());
    assert_eq!(log.record_blocking(event(8)), Ok(7));
    assert!(
        log.checkpoint_blocking(),
        "checkpoint with every copy level"
    );
    assert_eq!(*copy.seqs.lock().unwrap(), (1..=7).collect::<Vec<_>>());
    assert_eq!(copy.checkpoints.lock().unwrap().last(), Some(&7));
}

#[test]
fn a_full_disk_refuses_records() {
    for policy in POLICIES {
        full_disk(policy);
    }
}

fn full_disk(policy: SyncPolicy) {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/dev/full", dir.path().join(RECORDS)).unwrap();
    let sink = FileSink::open_with(dir.path(), policy).unwrap();
    let (signer, _) = signer();
    let every = CheckpointEvery {
        records: 100,
        interval: Duration::from_secs(3600),
    };
    let chain = keyward_audit::Chain {
        seq: 0,
        hash: keyward_audit::record::GENESIS.into(),
    };
    let log = AuditLog::start(Box::new(sink), None, chain, signer, every).unwrap();
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

/// A sink whose append fails while `fail` is set, and whose undo always fails (the disk
/// is full for the undo as well).
struct Stuck {
    fail: Arc<Mutex<bool>>,
}

impl Sink for Stuck {
    fn append(&mut self, _: &[Line], _: Option<&keyward_audit::Checkpoint>) -> std::io::Result<()> {
        if *self.fail.lock().unwrap() {
            Err(std::io::Error::other("no space left on device"))
        } else {
            Ok(())
        }
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
        Box::new(Stuck { fail: fail.clone() }),
        None,
        keyward_audit::Chain {
            seq: 0,
            hash: keyward_audit::record::GENESIS.to_owned(),
        },
        signer,
        every,
    )
    .unwrap();
    assert_eq!(log.record_blocking(event(1)), Ok(1));
    *fail.lock().unwrap() = true;
    assert_eq!(log.record_blocking(event(2)), Err(AuditUnavailable));
    // The sink recovers, but may still hold part of the refused record: nothing may be
    // built on it, retries included.
    *fail.lock().unwrap() = false;
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!log.healthy());
    assert_eq!(log.record_blocking(event(3)), Err(AuditUnavailable));
}

#[test]
fn a_checkpoint_never_reaches_the_disk_before_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink =
        FileSink::open_with(dir.path(), SyncPolicy::Within(Duration::from_secs(3600))).unwrap();
    let r = Record::chain(1, keyward_audit::record::GENESIS, event(1));
    sink.append(&[Line::of(&r)], None).unwrap();
    assert!(sink.needs_sync(), "written, not yet synced");
    let (signer, _) = signer();
    let c = signer.sign(1, &r.hash, 0).unwrap();
    sink.append(&[], Some(&c)).unwrap();
    assert!(
        !sink.needs_sync(),
        "the records were synced before the checkpoint"
    );
}

#[test]
fn readers_skip_blank_lines_and_refuse_an_overlong_one() {
    use keyward_audit::sink::{MAX_LINE, lines};
    let read = |text: &[u8]| lines(text).collect::<Result<Vec<_>, _>>();
    assert_eq!(read(b"a\n\nb\n").unwrap(), ["a", "b"]);
    assert_eq!(read(b"a\nb").unwrap(), ["a", "b"]);
    let mut long = vec![b'x'; MAX_LINE];
    assert_eq!(read(&long).unwrap()[0].len(), MAX_LINE);
    long.push(b'x');
    let e = read(&long).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    // The reader stops at the error rather than reading on from the middle of the line.
    long.extend_from_slice(b"\n{}\n");
    assert_eq!(lines(long.as_slice()).count(), 1);
    assert!(read(b"\xff\n").is_err());
    // A checkpoints file holding one is refused, not read into memory whole.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(CHECKPOINTS), vec![b'{'; 3 * MAX_LINE]).unwrap();
    assert!(read_checkpoints(&dir.path().join(CHECKPOINTS)).is_err());
}

/// An in-memory log that several writers share, as nodes share a database: appends take
/// its lock, chain after whatever is stored, and fail whole while `fail` is set.
#[derive(Clone, Default)]
struct MemoryLog {
    inner: Arc<Mutex<Stored>>,
}

#[derive(Default)]
struct Stored {
    lines: Vec<String>,
    tip: Option<keyward_audit::Chain>,
    checkpoints: Vec<keyward_audit::Checkpoint>,
    fail: bool,
}

impl keyward_audit::SharedSink for MemoryLog {
    fn append(
        &mut self,
        events: &[Event],
        checkpoint: &mut dyn FnMut(
            &keyward_audit::Chain,
            Option<&keyward_audit::Checkpoint>,
        ) -> Option<keyward_audit::Checkpoint>,
    ) -> std::io::Result<Vec<Record>> {
        let mut s = self.inner.lock().unwrap();
        if s.fail {
            return Err(std::io::Error::other("the database is down"));
        }
        let mut tip = s.tip.clone().unwrap_or(keyward_audit::Chain {
            seq: 0,
            hash: keyward_audit::record::GENESIS.to_owned(),
        });
        let mut made = Vec::new();
        let mut lines = Vec::new();
        for e in events {
            let (r, line) = Record::chain_line(tip.seq + 1, &tip.hash, e.clone());
            tip = keyward_audit::Chain {
                seq: r.seq,
                hash: r.hash.clone(),
            };
            made.push(r);
            lines.push(line);
        }
        let c = checkpoint(&tip, s.checkpoints.last());
        s.lines.extend(lines);
        s.tip = Some(tip);
        s.checkpoints.extend(c);
        Ok(made)
    }
}

/// Two writers (two nodes) on one shared log: every record once, in one chain that
/// verifies, with checkpoints every N records of the shared log whoever wrote them; a
/// failing log refuses records and stores nothing, and the writers recover with it.
#[test]
fn writers_sharing_one_log_keep_one_chain_and_recover_from_its_failure() {
    let shared = MemoryLog::default();
    let (signer_a, pkcs8) = signer();
    let signer_b = CheckpointSigner::from_pkcs8(&pkcs8).unwrap();
    let pk = signer_a.public_key().to_owned();
    let every = CheckpointEvery {
        records: 100,
        interval: Duration::from_secs(3600),
    };
    let nodes = [
        AuditLog::start_shared(Box::new(shared.clone()), signer_a, every).unwrap(),
        AuditLog::start_shared(Box::new(shared.clone()), signer_b, every).unwrap(),
    ];
    let seqs = Arc::new(Mutex::new(BTreeSet::new()));
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let (log, seqs) = (nodes[t as usize % 2].clone(), seqs.clone());
            s.spawn(move || {
                for i in 0..150 {
                    let seq = log.record_blocking(event(t * 1000 + i)).unwrap();
                    assert!(seqs.lock().unwrap().insert(seq));
                }
            });
        }
    });
    assert_eq!(*seqs.lock().unwrap(), (1..=1200).collect());

    shared.inner.lock().unwrap().fail = true;
    assert_eq!(nodes[0].record_blocking(event(9000)), Err(AuditUnavailable));
    assert!(!nodes[0].healthy());
    assert_eq!(shared.inner.lock().unwrap().lines.len(), 1200);
    shared.inner.lock().unwrap().fail = false;
    assert_eq!(nodes[1].record_blocking(event(9001)), Ok(1201));
    eventually("node A probes the log and is healthy again", || {
        nodes[0].healthy()
    });
    assert_eq!(nodes[0].record_blocking(event(9002)), Ok(1202));
    // A shutdown checkpoint covers everything, once.
    assert!(nodes[0].checkpoint_blocking());
    assert!(nodes[1].checkpoint_blocking());

    let s = shared.inner.lock().unwrap();
    let v = verify(&s.lines, &s.checkpoints, &pk).unwrap();
    assert_eq!(v.records, 1202);
    let cps: Vec<u64> = s.checkpoints.iter().map(|c| c.seq).collect();
    assert!(cps.windows(2).all(|w| w[1] > w[0]), "{cps:?}");
    assert_eq!(cps.last(), Some(&1202));
    // Due every 100 records of the shared log: one per hundred (batches may overshoot),
    // not one per node.
    assert!((10..=14).contains(&cps.len()), "{cps:?}");
}

const THROUGH: SyncPolicy = SyncPolicy::Within(Duration::from_millis(10));

/// A write-through log over [`Flaky`], with what it needs to steer it.
struct Through {
    dir: tempfile::TempDir,
    log: AuditLog,
    fail: Arc<Mutex<bool>>,
    appends: Arc<Mutex<Vec<usize>>>,
    pk: String,
}

/// How a test holds up a gated append: it says on `.0` that it has begun and goes on
/// once told on `.1`.
type Steer = (mpsc::Receiver<()>, mpsc::Sender<()>);

/// With `gated`: the first append with records waits to be steered.
fn through(gated: bool) -> (Through, Option<Steer>) {
    let dir = tempfile::tempdir().unwrap();
    let file = FileSink::open_with(dir.path(), THROUGH).unwrap();
    let chain = file.chain().unwrap();
    let (signer, _) = signer();
    let pk = signer.public_key().to_owned();
    let fail = Arc::new(Mutex::new(false));
    let mut flaky = Flaky::new(file, fail.clone());
    let appends = flaky.appends.clone();
    let steer = gated.then(|| {
        let (begun_tx, begun_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel();
        flaky.gate = Some((begun_tx, go_rx));
        (begun_rx, go_tx)
    });
    let every = CheckpointEvery {
        records: 1000,
        interval: Duration::from_secs(3600),
    };
    let log = AuditLog::start(Box::new(flaky), None, chain, signer, every).unwrap();
    let t = Through {
        dir,
        log,
        fail,
        appends,
        pk,
    };
    (t, steer)
}

impl Through {
    /// The records in the file, verified: how many.
    fn verified(&self) -> u64 {
        assert!(self.log.checkpoint_blocking());
        let cps = read_checkpoints(&self.dir.path().join(CHECKPOINTS)).unwrap();
        verify(lines(self.dir.path()), &cps, &self.pk)
            .unwrap()
            .records
    }
}

type Recording<'a> = Pin<Box<dyn Future<Output = Result<u64, AuditUnavailable>> + Send + 'a>>;

fn recording(log: &AuditLog, i: u64) -> Recording<'_> {
    Box::pin(log.record(event(i)))
}

fn poll(f: &mut Recording<'_>) -> Poll<Result<u64, AuditUnavailable>> {
    f.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn requests_that_reach_the_log_together_share_one_write() {
    let (t, _) = through(false);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let seqs: BTreeSet<u64> = rt.block_on(async {
        let tasks: Vec<_> = (1..=50)
            .map(|i| {
                let log = t.log.clone();
                tokio::spawn(async move { log.record(event(i)).await.unwrap() })
            })
            .collect();
        let mut seqs = BTreeSet::new();
        for task in tasks {
            seqs.insert(task.await.unwrap());
        }
        seqs
    });
    assert_eq!(seqs, (1..=50).collect());
    // The first yields before it writes, so the other 49 join its write.
    assert_eq!(*t.appends.lock().unwrap(), [50]);
    assert_eq!(t.verified(), 50);
}

#[test]
fn a_request_dropped_before_its_write_still_gets_its_record_written() {
    // The one due to write its group, dropped while it lets the others join.
    let (t, _) = through(false);
    let mut first = recording(&t.log, 1);
    assert!(poll(&mut first).is_pending());
    drop(first);
    assert_eq!(t.log.record_blocking(event(2)), Ok(2));
    assert_eq!(t.verified(), 2);

    // Requests that joined a group while another was written, all dropped before it
    // ended: the writer of the group before writes theirs as well.
    let (t, steer) = through(true);
    let (begun, go) = steer.unwrap();
    std::thread::scope(|s| {
        let writing = s.spawn(|| t.log.record_blocking(event(1)));
        begun.recv().unwrap();
        let (mut a, mut b) = (recording(&t.log, 2), recording(&t.log, 3));
        assert!(poll(&mut a).is_pending() && poll(&mut b).is_pending());
        drop((a, b));
        go.send(()).unwrap();
        assert_eq!(writing.join().unwrap(), Ok(1));
    });
    assert_eq!(t.log.record_blocking(event(4)), Ok(4));
    assert_eq!(*t.appends.lock().unwrap(), [1, 2, 1]);
    assert_eq!(t.verified(), 4);

    // One chosen to write the next group, dropped before it noticed: it writes on drop.
    let (t, steer) = through(true);
    let (begun, go) = steer.unwrap();
    let mut a = recording(&t.log, 2);
    std::thread::scope(|s| {
        let writing = s.spawn(|| t.log.record_blocking(event(1)));
        begun.recv().unwrap();
        assert!(poll(&mut a).is_pending());
        go.send(()).unwrap();
        assert_eq!(writing.join().unwrap(), Ok(1));
    });
    assert_eq!(*t.appends.lock().unwrap(), [1], "its group waits for it");
    drop(a);
    assert_eq!(t.log.record_blocking(event(3)), Ok(3));
    assert_eq!(*t.appends.lock().unwrap(), [1, 1, 1]);
    assert_eq!(t.verified(), 3);
}

#[test]
fn a_failed_group_write_refuses_the_records_chained_after_it() {
    let (t, steer) = through(true);
    let (begun, go) = steer.unwrap();
    let (mut a, mut b) = (recording(&t.log, 2), recording(&t.log, 3));
    std::thread::scope(|s| {
        let writing = s.spawn(|| t.log.record_blocking(event(1)));
        begun.recv().unwrap();
        assert!(poll(&mut a).is_pending() && poll(&mut b).is_pending());
        *t.fail.lock().unwrap() = true;
        go.send(()).unwrap();
        assert_eq!(writing.join().unwrap(), Err(AuditUnavailable));
    });
    assert_eq!(poll(&mut a), Poll::Ready(Err(AuditUnavailable)));
    assert_eq!(poll(&mut b), Poll::Ready(Err(AuditUnavailable)));
    assert!(lines(t.dir.path()).is_empty(), "a refused record stayed");
    *t.fail.lock().unwrap() = false;
    // The chain went back: the next record is the first.
    assert_eq!(t.log.record_blocking(event(4)), Ok(1));
    assert_eq!(t.verified(), 1);
}
