//! The group-commit writer.
//!
//! A request chains its own record on the thread it runs on (under a short lock: a hash
//! and a serialization) and waits; one writer thread takes every record chained since its
//! last pass, appends them to the primary sink in one write (durable when it returns:
//! one `fdatasync` for the batch), and only then answers them all. While it writes, the
//! next batch forms. Under load a batch holds many records for one fsync and there is
//! one thread wake-up per batch, not per record; alone, a record waits for its own.
//!
//! Records durable in the primary (the file) are then copied to the follower (the
//! store) in larger batches, after their requests were answered: a crash in between
//! leaves the follower behind, and the start-up check copies what it lacks.
//!
//! A primary that acknowledges a record once it is written, not synced
//! ([`Sink::write_through`]: the file sink syncing within a bounded time) is appended to
//! by the requests themselves, with no hand-off to the writer thread. A request that
//! finds no write under way lets the others its thread has ready reach the log (it
//! yields once), then appends every record chained meanwhile in one write, without the
//! chain lock; requests chained while it writes form the next group, which one of them
//! writes when it is told. The writer thread then only syncs the primary (without
//! holding its lock), copies records to the follower and makes checkpoints.
//!
//! Fail-closed: if the primary fails, the batch is undone, the chain goes back to the
//! last durable record, and every request chained since gets [`AuditUnavailable`]: the
//! caller must refuse the operation. The next batch tries again, so service resumes when
//! the sink recovers. A follower that fails stops the log too (no record is acknowledged
//! that the store may never get) until a retry, every [`RETRY_EVERY`], succeeds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use crate::checkpoint::{Checkpoint, CheckpointSigner};
use crate::record::{Event, Prepared, Record};

/// Most records in one append to a sink.
pub const MAX_BATCH: usize = 4096;
/// While a sink fails, how often the writer tries it again.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Records durable in the primary are copied to the follower once this many wait, or
/// after [`FOLLOW_WITHIN`], or with a checkpoint.
const FOLLOW_BATCH: usize = MAX_BATCH;
/// Longest a durable record waits to be copied to the follower.
const FOLLOW_WITHIN: Duration = Duration::from_millis(100);
/// How often the writer looks for sinks that owe a sync.
const SYNC_POLL: Duration = Duration::from_millis(5);

/// Where the chain stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// The last record's number (0 for none).
    pub seq: u64,
    /// Its hash.
    pub hash: String,
}

/// A chained record as a sink keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The record's number.
    pub seq: u64,
    /// Its time, milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// The record as one line of JSON ([`Record::line`]), without a newline.
    pub text: String,
}

impl Line {
    /// `record`'s line.
    pub fn of(record: &Record) -> Self {
        Self {
            seq: record.seq,
            time_ms: record.event.time_ms,
            text: record.line(),
        }
    }
}

/// A durable destination for records and checkpoints.
pub trait Sink: Send {
    /// Appends records and, if given, a checkpoint; durable when it returns `Ok`. On
    /// error, the writer calls [`Sink::undo_last`] to remove whatever part of it was
    /// written.
    fn append(&mut self, records: &[Line], checkpoint: Option<&Checkpoint>) -> std::io::Result<()>;
    /// Removes what the last `append` added.
    fn undo_last(&mut self) -> std::io::Result<()>;
    /// Whether the sink holds appended records that it has not yet forced to stable
    /// storage (a sink that syncs within a bounded time rather than per batch); the
    /// writer syncs it once no records have come for a few milliseconds.
    fn needs_sync(&self) -> bool {
        false
    }
    /// Forces what was appended to stable storage.
    fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    /// Whether an append is acknowledged once it returns without a sync of its own
    /// (the sink syncs within a bounded time, see [`Sink::take_sync`]): requests then
    /// append their own records.
    fn write_through(&self) -> bool {
        false
    }
    /// For a write-through sink that owes a sync: takes that duty, as a step that needs
    /// no access to the sink, so that appends go on while it runs. `None` if nothing is
    /// owed (or the sink cannot sync apart from itself: then [`Sink::sync`] is used).
    fn take_sync(&mut self) -> Option<Box<dyn FnOnce() -> std::io::Result<()> + Send>> {
        None
    }
}

/// A primary that several writers share (a database that every node appends to). It
/// chains records itself, after whatever the others stored, when it stores them.
pub trait SharedSink: Send {
    /// Chains `events` after the last stored record and stores them, with the checkpoint
    /// that `checkpoint` makes of the new tip (given the last stored checkpoint, if any),
    /// in one durable step; returns the records as chained. On error nothing is stored.
    fn append(
        &mut self,
        events: &[Event],
        checkpoint: &mut dyn FnMut(&Chain, Option<&Checkpoint>) -> Option<Checkpoint>,
    ) -> std::io::Result<Vec<Record>>;
}

/// The audit log could not make a record durable; the operation must be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the audit log is unavailable")]
pub struct AuditUnavailable;

type Done = tokio::sync::oneshot::Sender<Result<u64, AuditUnavailable>>;

/// What a request waiting in a write-through group is told.
enum Turn {
    /// Its group was written (or refused).
    Done(Result<(), AuditUnavailable>),
    /// Its group is next: it writes the group itself.
    Lead,
}

/// A record handed to the log.
enum Submitted {
    /// Refused at once.
    Refused,
    /// Waiting for the writer, which answers with its number.
    Waiting(tokio::sync::oneshot::Receiver<Result<u64, AuditUnavailable>>),
    /// Chained as `seq` into a write-through group that no one writes yet: the submitter
    /// writes it ([`Shared::lead`]).
    Lead(u64),
    /// Chained as `seq` into a write-through group that another request writes.
    Joined(u64, tokio::sync::oneshot::Receiver<Turn>),
}

/// Checkpoint every this many records or this long, whichever comes first.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointEvery {
    /// Records.
    pub records: u64,
    /// Time.
    pub interval: Duration,
}

/// Records chained (or, over a shared sink, events to chain) but not yet taken by the
/// writer.
#[derive(Default)]
struct Batch {
    records: Vec<Line>,
    events: Vec<Event>,
    waiting: Vec<Done>,
}

#[derive(Default)]
struct Queue {
    batch: Batch,
    /// Callers of [`AuditLog::checkpoint_blocking`].
    asks: Vec<mpsc::Sender<bool>>,
    /// Every handle is gone: checkpoint and stop.
    closed: bool,
    /// The writer is asleep on `Shared::wake` (a request must wake it).
    sleeping: bool,
}

/// The primary, never locked while the head lock is held.
type Primary = Arc<Mutex<Box<dyn Sink>>>;

/// Records chained for a write-through primary while another group is being written:
/// the next write takes them all.
#[derive(Default)]
struct Group {
    lines: Vec<Line>,
    /// Their requests, but for the one that writes the group.
    waiting: Vec<tokio::sync::oneshot::Sender<Turn>>,
}

struct Head {
    /// The last record chained (durable or not yet).
    chain: Chain,
    queue: Queue,
    /// Over a write-through primary: the group that the next write takes.
    group: Group,
    /// A request is writing a group, or is about to: records chained meanwhile join
    /// `group`. (Not writing implies `group` is empty.)
    writing: bool,
    /// The last record written to the write-through primary.
    written_tip: Chain,
    /// What requests wrote to a write-through primary since the writer's last pass.
    written: Vec<Line>,
    /// The record that, written through, is due a checkpoint by count: it wakes the
    /// writer (once; then `u64::MAX` until the writer's next pass).
    checkpoint_due: u64,
}

/// What the log's health is made of, readable by requests without a lock.
#[derive(Default)]
struct Status {
    /// The primary's last append failed (the next one tries again).
    primary_failed: AtomicBool,
    /// A sync of a write-through primary failed: records already acknowledged may not
    /// be on stable storage, so none are taken until a sync succeeds.
    sync_failed: AtomicBool,
    /// The follower failed: none are taken until it takes what it is owed.
    follower_failed: AtomicBool,
    /// An undo failed: the primary may hold records of refused requests, so nothing
    /// more is written until a restart, whose start-up check compares the copies.
    poisoned: AtomicBool,
}

impl Status {
    /// Appends to `sink`; on failure undoes it, noting the failure (and, if the undo
    /// fails too, that the log is poisoned). True if it succeeded.
    fn append(
        &self,
        sink: &mut dyn Sink,
        records: &[Line],
        checkpoint: Option<&Checkpoint>,
    ) -> bool {
        let failed = &self.primary_failed;
        match sink.append(records, checkpoint) {
            Ok(()) => {
                failed.store(false, Ordering::Release);
                true
            }
            Err(e) => {
                if !failed.swap(true, Ordering::AcqRel) {
                    eprintln!("keyward: audit sink failed, refusing audited operations: {e}");
                }
                if let Err(e) = sink.undo_last() {
                    eprintln!(
                        "keyward: audit: undoing a failed write failed ({e}); refusing audited operations until restarted"
                    );
                    self.poisoned.store(true, Ordering::Release);
                }
                false
            }
        }
    }

    /// Whether a record may be taken at all (a failed append alone does not stop the
    /// next from trying).
    fn refusing(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
            || self.sync_failed.load(Ordering::Acquire)
            || self.follower_failed.load(Ordering::Acquire)
    }
}

struct Shared {
    head: Mutex<Head>,
    wake: Condvar,
    healthy: AtomicBool,
    status: Status,
    /// A write-through primary: requests append to it themselves.
    through: Option<Primary>,
    /// Requests chain their own records; false over a [`SharedSink`], which chains them
    /// when it stores them.
    chains_here: bool,
}

/// Locks `m`, taking over a poisoned lock: a panic while holding one leaves a consistent
/// state (each field is updated whole).
fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Head> {
        lock(&self.head)
    }

    /// Publishes whether records can be kept now.
    fn update_health(&self) {
        let now = !self.status.refusing() && !self.status.primary_failed.load(Ordering::Acquire);
        let was = self.healthy.swap(now, Ordering::AcqRel);
        if now && !was {
            eprintln!("keyward: audit sinks writable again, serving");
        }
    }

    /// Writes the group of records chained for the write-through primary, as the one
    /// request that does (the first to find no write under way, or the one a previous
    /// writer chose): one append for all of them, without the head lock, so that the
    /// next group forms meanwhile. Then answers the group and hands the next group to
    /// one of its requests. If the append failed, the chain goes back to the last record
    /// written and the next group is refused too: it was chained onto this one. Whether
    /// this group was written.
    fn lead_through(&self) -> bool {
        let Some(primary) = self.through.as_deref() else {
            return false;
        };
        let first = self.write_group(primary);
        let mut again = first.1;
        // The next group's requests were all dropped: no one else will write it.
        while again {
            again = self.write_group(primary).1;
        }
        first.0
    }

    /// One group's write: whether it was written, and whether the next one is left to
    /// the caller to write.
    fn write_group(&self, primary: &Mutex<Box<dyn Sink>>) -> (bool, bool) {
        let (group, tip) = {
            let mut head = self.lock();
            (std::mem::take(&mut head.group), head.chain.clone())
        };
        let was_healthy = self.healthy.load(Ordering::Acquire);
        let ok =
            !self.status.refusing() && self.status.append(&mut **lock(primary), &group.lines, None);
        if ok != was_healthy {
            self.update_health();
        }
        let mut head = self.lock();
        let mut refused = Vec::new();
        let mut wake = false;
        if ok {
            let seq = tip.seq;
            head.written_tip = tip;
            head.written.extend(group.lines);
            // The writer is woken if it sleeps with nothing to do, or for a checkpoint
            // due by count.
            wake = std::mem::take(&mut head.queue.sleeping);
            if seq >= head.checkpoint_due {
                head.checkpoint_due = u64::MAX;
                wake = true;
            }
        } else {
            head.chain = head.written_tip.clone();
            refused = std::mem::take(&mut head.group).waiting;
        }
        // The next group's writer: any of its requests still waiting.
        let mut handed = false;
        while let Some(w) = head.group.waiting.pop() {
            if w.send(Turn::Lead).is_ok() {
                handed = true;
                break;
            }
        }
        let again = !handed && !head.group.lines.is_empty();
        head.writing = handed || again;
        drop(head);
        if wake {
            self.wake.notify_one();
        }
        let turn = if ok { Ok(()) } else { Err(AuditUnavailable) };
        for w in group.waiting {
            let _ = w.send(Turn::Done(turn));
        }
        for w in refused {
            let _ = w.send(Turn::Done(Err(AuditUnavailable)));
        }
        (ok, again)
    }
}

/// What a writer takes on one pass.
struct Work {
    batch: Batch,
    /// Records requests wrote to a write-through primary.
    written: Vec<Line>,
    /// A write-through primary's sync, owed.
    sync: Option<Box<dyn FnOnce() -> std::io::Result<()> + Send>>,
    asks: Vec<mpsc::Sender<bool>>,
    closed: bool,
    /// The last record chained (by requests; unused over a shared sink).
    tip: Chain,
}

impl Shared {
    /// Waits, at most `idle`, for records, a checkpoint request or the end, and takes
    /// whatever is there. Over a write-through primary, records do not wake the writer
    /// unless it sleeps with nothing to do: while some are written but not yet synced
    /// or copied (`owes`: the writer holds some to copy), it wakes every [`SYNC_POLL`]
    /// by itself.
    fn take_work(&self, idle: Duration, owes: bool, checkpoint_due: u64) -> Work {
        // The primary is never locked under the head lock here: a request writing a
        // group holds it, and requests chaining the next group need the head lock.
        let owes_sync = self.through.as_ref().is_some_and(|p| lock(p).needs_sync());
        let mut head = self.lock();
        head.checkpoint_due = checkpoint_due;
        if head.queue.batch.waiting.is_empty() && head.queue.asks.is_empty() && !head.queue.closed {
            let pending = self.through.is_some() && (owes || owes_sync || !head.written.is_empty());
            head.queue.sleeping = !pending;
            let idle = if pending { idle.min(SYNC_POLL) } else { idle };
            head = self
                .wake
                .wait_timeout(head, idle)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
            head.queue.sleeping = false;
        }
        let work = Work {
            batch: std::mem::take(&mut head.queue.batch),
            written: std::mem::take(&mut head.written),
            sync: None,
            asks: std::mem::take(&mut head.queue.asks),
            closed: head.queue.closed,
            tip: if self.through.is_some() {
                head.written_tip.clone()
            } else {
                head.chain.clone()
            },
        };
        drop(head);
        // Taken after `written`: it syncs at least what those records were written in.
        let sync = self.through.as_ref().and_then(|p| lock(p).take_sync());
        Work { sync, ..work }
    }
}

/// Ends the writer when the last [`AuditLog`] goes.
struct Handle(Arc<Shared>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.lock().queue.closed = true;
        self.0.wake.notify_one();
    }
}

/// The running audit log.
#[derive(Clone)]
pub struct AuditLog {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("healthy", &self.healthy())
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl AuditLog {
    /// Starts the writer after `chain`: records go to `primary` before they are answered,
    /// and to `follower` after. Fails only if the writer thread cannot be started.
    pub fn start(
        primary: Box<dyn Sink>,
        follower: Option<Box<dyn Sink>>,
        chain: Chain,
        signer: CheckpointSigner,
        every: CheckpointEvery,
    ) -> std::io::Result<Self> {
        let through = primary.write_through();
        let primary: Primary = Arc::new(Mutex::new(primary));
        let shared = Arc::new(Shared {
            head: Mutex::new(Head {
                chain: chain.clone(),
                queue: Queue::default(),
                group: Group::default(),
                writing: false,
                written_tip: chain.clone(),
                written: Vec::new(),
                checkpoint_due: u64::MAX,
            }),
            wake: Condvar::new(),
            healthy: AtomicBool::new(true),
            status: Status::default(),
            through: through.then(|| primary.clone()),
            chains_here: true,
        });
        let writer = Writer {
            shared: shared.clone(),
            primary,
            follower,
            owed: Owed::default(),
            follower_failed: None,
            checkpointed: chain.seq,
            durable: chain,
            signer,
            every,
            checkpoint_at: Instant::now(),
        };
        std::thread::Builder::new()
            .name("keyward-audit".into())
            .spawn(move || writer.run())?;
        Ok(Self {
            handle: Arc::new(Handle(shared)),
        })
    }

    /// Starts a writer over `sink`, a log that other writers (nodes) append to as well:
    /// each batch is chained after whatever is stored when it is written, and checkpoints
    /// are made when the stored log is due one, whoever wrote what. Fails only if the
    /// writer thread cannot be started.
    pub fn start_shared(
        sink: Box<dyn SharedSink>,
        signer: CheckpointSigner,
        every: CheckpointEvery,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            head: Mutex::new(Head {
                chain: Chain {
                    seq: 0,
                    hash: String::new(),
                },
                queue: Queue::default(),
                group: Group::default(),
                writing: false,
                written_tip: Chain {
                    seq: 0,
                    hash: String::new(),
                },
                written: Vec::new(),
                checkpoint_due: u64::MAX,
            }),
            wake: Condvar::new(),
            healthy: AtomicBool::new(true),
            status: Status::default(),
            through: None,
            chains_here: false,
        });
        let writer = SharedWriter {
            shared: shared.clone(),
            sink,
            signer,
            every,
            started_ms: now_ms(),
            tried_at: Instant::now(),
            failed: false,
        };
        std::thread::Builder::new()
            .name("keyward-audit".into())
            .spawn(move || writer.run())?;
        Ok(Self {
            handle: Arc::new(Handle(shared)),
        })
    }

    fn shared(&self) -> &Shared {
        &self.handle.0
    }

    /// Chains `event` into the write-through group, or hands it to the writer.
    fn submit(&self, event: Event) -> Submitted {
        let shared = self.shared();
        if shared.through.is_some() {
            let event = Prepared::new(event);
            let mut head = shared.lock();
            if shared.status.refusing() {
                return Submitted::Refused;
            }
            let seq = head.chain.seq + 1;
            let (line, hash) = event.chain(seq, &head.chain.hash);
            head.chain.seq = seq;
            head.chain.hash = hash;
            head.group.lines.push(line);
            if !std::mem::replace(&mut head.writing, true) {
                return Submitted::Lead(seq);
            }
            let (turn, wait) = tokio::sync::oneshot::channel();
            head.group.waiting.push(turn);
            return Submitted::Joined(seq, wait);
        }
        let (done, wait) = tokio::sync::oneshot::channel();
        let mut head = shared.lock();
        if shared.chains_here {
            let seq = head.chain.seq + 1;
            let (line, hash) = Prepared::new(event).chain(seq, &head.chain.hash);
            head.chain.seq = seq;
            head.chain.hash = hash;
            head.queue.batch.records.push(line);
        } else {
            head.queue.batch.events.push(event);
        }
        let queue = &mut head.queue;
        queue.batch.waiting.push(done);
        if std::mem::take(&mut queue.sleeping) {
            drop(head);
            shared.wake.notify_one();
        }
        Submitted::Waiting(wait)
    }

    /// Records `event`; resolves once it is durable, with its sequence number.
    pub async fn record(&self, event: Event) -> Result<u64, AuditUnavailable> {
        match self.submit(event) {
            Submitted::Refused => Err(AuditUnavailable),
            Submitted::Waiting(wait) => wait.await.map_err(|_| AuditUnavailable)?,
            Submitted::Lead(seq) => {
                let lead = Leading(Some(self.shared()));
                // Lets the requests this thread has ready reach their records first, so
                // that one write takes them all.
                tokio::task::yield_now().await;
                lead.write().then_some(seq).ok_or(AuditUnavailable)
            }
            Submitted::Joined(seq, wait) => Joined(self.shared(), wait).finish(seq).await,
        }
    }

    /// [`AuditLog::record`] for threads that may block.
    pub fn record_blocking(&self, event: Event) -> Result<u64, AuditUnavailable> {
        match self.submit(event) {
            Submitted::Refused => Err(AuditUnavailable),
            Submitted::Waiting(wait) => wait.blocking_recv().map_err(|_| AuditUnavailable)?,
            Submitted::Lead(seq) => Leading(Some(self.shared()))
                .write()
                .then_some(seq)
                .ok_or(AuditUnavailable),
            Submitted::Joined(seq, wait) => {
                let ok = match wait.blocking_recv() {
                    Ok(Turn::Done(result)) => result.is_ok(),
                    Ok(Turn::Lead) => Leading(Some(self.shared())).write(),
                    Err(_) => false,
                };
                ok.then_some(seq).ok_or(AuditUnavailable)
            }
        }
    }

    /// Signs a checkpoint of the log as it stands now (for a clean shutdown or an
    /// export) and copies everything to the follower; blocks until that is durable.
    /// False if it could not be written.
    pub fn checkpoint_blocking(&self) -> bool {
        let (done, wait) = mpsc::channel();
        let shared = self.shared();
        let mut head = shared.lock();
        head.queue.asks.push(done);
        let wake = std::mem::take(&mut head.queue.sleeping);
        drop(head);
        if wake {
            shared.wake.notify_one();
        }
        wait.recv().unwrap_or(false)
    }

    /// Whether the last write succeeded. Operations that change state check this first,
    /// so that they are not done while records cannot be kept.
    pub fn healthy(&self) -> bool {
        self.shared().healthy.load(Ordering::Acquire)
    }
}

/// The duty to write the current write-through group. It is done even if the request
/// holding it is dropped (a client gone): records already chained must be written, or the
/// log would stall.
struct Leading<'a>(Option<&'a Shared>);

impl Leading<'_> {
    /// Writes the group; whether it was written.
    fn write(mut self) -> bool {
        self.0.take().is_some_and(Shared::lead_through)
    }
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.lead_through();
        }
    }
}

/// A request waiting in a write-through group; if it is dropped after being chosen to
/// write the next group, it still writes it.
struct Joined<'a>(&'a Shared, tokio::sync::oneshot::Receiver<Turn>);

impl Joined<'_> {
    async fn finish(mut self, seq: u64) -> Result<u64, AuditUnavailable> {
        let ok = match (&mut self.1).await {
            Ok(Turn::Done(result)) => result.is_ok(),
            Ok(Turn::Lead) => Leading(Some(self.0)).write(),
            Err(_) => false,
        };
        ok.then_some(seq).ok_or(AuditUnavailable)
    }
}

impl Drop for Joined<'_> {
    fn drop(&mut self) {
        self.1.close();
        if let Ok(Turn::Lead) = self.1.try_recv() {
            self.0.lead_through();
        }
    }
}

/// Durable records (and a checkpoint) not yet copied to the follower.
#[derive(Default)]
struct Owed {
    records: Vec<Line>,
    checkpoint: Option<Checkpoint>,
    since: Option<Instant>,
}

struct Writer {
    shared: Arc<Shared>,
    /// Requests lock it too when it is write-through.
    primary: Primary,
    follower: Option<Box<dyn Sink>>,
    owed: Owed,
    /// When a follower last failed (it is retried every [`RETRY_EVERY`]).
    follower_failed: Option<Instant>,
    /// The last record durable in the primary.
    durable: Chain,
    signer: CheckpointSigner,
    every: CheckpointEvery,
    checkpointed: u64,
    checkpoint_at: Instant,
}

impl Writer {
    fn healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Acquire)
    }

    fn status(&self) -> &Status {
        &self.shared.status
    }

    fn primary(&self) -> MutexGuard<'_, Box<dyn Sink>> {
        lock(&self.primary)
    }

    /// How long the writer may sleep with nothing to do.
    fn idle_wait(&self) -> Duration {
        let mut wait = self.every.interval;
        if !self.healthy() {
            wait = wait.min(RETRY_EVERY);
        }
        if self.primary().needs_sync() {
            wait = wait.min(SYNC_POLL);
        }
        if let Some(since) = self.owed.since
            && self.follower_failed.is_none()
        {
            wait = wait.min(FOLLOW_WITHIN.saturating_sub(since.elapsed()));
        }
        wait
    }

    fn run(mut self) {
        loop {
            let Work {
                batch,
                written,
                sync,
                asks,
                closed,
                tip,
            } = self.shared.take_work(
                self.idle_wait(),
                !self.owed.records.is_empty(),
                self.checkpointed + self.every.records,
            );
            if let Some(sync) = sync {
                self.synced(sync());
            }
            if !written.is_empty() {
                self.durable = tip.clone();
                self.owe(written);
            }
            if batch.records.is_empty() {
                self.idle();
            } else {
                self.commit(batch, tip);
            }
            if !asks.is_empty() || closed {
                self.idle_checkpoint();
                self.follow();
                let done = self.checkpointed == self.durable.seq && self.owed.records.is_empty();
                for ask in asks {
                    let _ = ask.send(done);
                }
            }
            if closed {
                return;
            }
        }
    }

    /// Takes note of how a sync of the primary ended: a failure stops the log until a
    /// sync succeeds.
    fn synced(&self, result: std::io::Result<()>) {
        let failed = &self.status().sync_failed;
        match result {
            Ok(()) => {
                if failed.swap(false, Ordering::AcqRel) {
                    self.shared.update_health();
                }
            }
            Err(e) => {
                if !failed.swap(true, Ordering::AcqRel) {
                    eprintln!(
                        "keyward: audit sink failed to sync, refusing audited operations: {e}"
                    );
                }
                self.shared.update_health();
            }
        }
    }

    /// Durable records, to copy to the follower.
    fn owe(&mut self, records: Vec<Line>) {
        self.owed.since.get_or_insert_with(Instant::now);
        self.owed.records.extend(records);
    }

    /// Whether the follower may be tried now (it is not failing, or its retry is due).
    fn follow_due(&self) -> bool {
        self.follower_failed
            .is_none_or(|failed| failed.elapsed() >= RETRY_EVERY)
    }

    /// No batch came: sync what is owed, copy to the follower, retry, checkpoint.
    fn idle(&mut self) {
        // A write-through primary's sync is taken with the work (so that it runs
        // without the lock), except to retry one that failed.
        let owes_sync = self.shared.through.is_none() && self.primary().needs_sync();
        if owes_sync || self.status().sync_failed.load(Ordering::Acquire) {
            let result = self.primary().sync();
            self.synced(result);
        }
        if self.follow_due()
            && self.owed.since.is_some_and(|s| {
                s.elapsed() >= FOLLOW_WITHIN || self.owed.records.len() >= FOLLOW_BATCH
            })
        {
            self.follow();
        }
        if self.due(self.durable.seq)
            || self.checkpoint_at.elapsed() >= self.every.interval
            || !self.healthy()
        {
            self.idle_checkpoint();
        }
    }

    fn due(&self, seq: u64) -> bool {
        seq > self.checkpointed
            && (seq - self.checkpointed >= self.every.records
                || self.checkpoint_at.elapsed() >= self.every.interval)
    }

    /// Appends to the primary; on failure undoes it and refuses the log.
    fn write(&mut self, records: &[Line], checkpoint: Option<&Checkpoint>) -> bool {
        if self.status().poisoned.load(Ordering::Acquire) {
            return false;
        }
        // While the follower cannot take records, acknowledge none until it can.
        if self.follower_failed.is_some() && !(self.follow_due() && self.follow()) {
            return false;
        }
        let ok = self
            .status()
            .append(&mut **self.primary(), records, checkpoint);
        self.shared.update_health();
        ok
    }

    fn commit(&mut self, batch: Batch, tip: Chain) {
        let Batch {
            records, waiting, ..
        } = batch;
        let checkpoint = if self.due(tip.seq) {
            self.signer.sign(tip.seq, &tip.hash, now_ms())
        } else {
            None
        };
        // One append, whatever its size: a batch is durable whole or refused whole.
        if !self.write(&records, checkpoint.as_ref()) {
            // Everything chained after the last durable record is refused, including
            // records chained onto this batch while it was being written.
            let mut head = self.shared.lock();
            head.chain = self.durable.clone();
            let later = std::mem::take(&mut head.queue.batch).waiting;
            drop(head);
            for done in waiting.into_iter().chain(later) {
                let _ = done.send(Err(AuditUnavailable));
            }
            return;
        }
        self.durable = tip;
        for (done, r) in waiting.into_iter().zip(&records) {
            let _ = done.send(Ok(r.seq));
        }
        self.owe(records);
        if let Some(c) = checkpoint {
            self.checkpointed = c.seq;
            self.checkpoint_at = Instant::now();
            self.owed.checkpoint = Some(c);
            // Copied at once, so that at most one checkpoint is ever owed.
            self.follow();
        } else if self.owed.records.len() >= FOLLOW_BATCH
            || self
                .owed
                .since
                .is_some_and(|s| s.elapsed() >= FOLLOW_WITHIN)
        {
            self.follow();
        }
    }

    /// Copies the owed records (and checkpoint) to the follower, at most [`MAX_BATCH`]
    /// records per append. False if it failed: what it did not take is kept and retried,
    /// and the log refuses records meanwhile.
    fn follow(&mut self) -> bool {
        let Some(follower) = self.follower.as_mut() else {
            self.owed = Owed::default();
            return true;
        };
        let owed = &mut self.owed;
        while !owed.records.is_empty() || owed.checkpoint.is_some() {
            let n = owed.records.len().min(MAX_BATCH);
            let last = n == owed.records.len();
            let checkpoint = owed.checkpoint.as_ref().filter(|_| last);
            if let Err(e) = follower.append(&owed.records[..n], checkpoint) {
                if self.follower_failed.is_none() {
                    eprintln!(
                        "keyward: audit copy to the store failed, refusing audited operations: {e}"
                    );
                }
                self.follower_failed = Some(Instant::now());
                self.shared
                    .status
                    .follower_failed
                    .store(true, Ordering::Release);
                self.shared.update_health();
                return false;
            }
            owed.records.drain(..n);
            if last {
                owed.checkpoint = None;
            }
        }
        owed.since = None;
        if self.follower_failed.take().is_some() {
            self.shared
                .status
                .follower_failed
                .store(false, Ordering::Release);
            self.shared.update_health();
        }
        true
    }

    fn idle_checkpoint(&mut self) {
        let failing = !self.healthy();
        if (self.durable.seq > self.checkpointed || failing)
            && let Some(c) = self
                .signer
                .sign(self.durable.seq, &self.durable.hash, now_ms())
            && self.write(&[], Some(&c))
        {
            self.checkpointed = self.durable.seq;
            self.checkpoint_at = Instant::now();
            self.owed.checkpoint = Some(c);
            self.follow();
        }
    }
}

/// The writer over a [`SharedSink`]: one append (one transaction) per batch.
struct SharedWriter {
    shared: Arc<Shared>,
    sink: Box<dyn SharedSink>,
    signer: CheckpointSigner,
    every: CheckpointEvery,
    /// When this writer started: the age of a log that has no checkpoint yet.
    started_ms: i64,
    /// When the writer last looked for a checkpoint due by time.
    tried_at: Instant,
    /// The last append failed: requests are refused until one succeeds.
    failed: bool,
}

impl SharedWriter {
    fn run(mut self) {
        loop {
            let idle = if self.failed {
                RETRY_EVERY
            } else {
                self.every.interval
            };
            let Work {
                batch,
                asks,
                closed,
                ..
            } = self.shared.take_work(idle, false, u64::MAX);
            if !batch.events.is_empty() {
                let records = self.append(&batch.events, false);
                for (i, done) in batch.waiting.into_iter().enumerate() {
                    let seq = records.as_ref().and_then(|r| r.get(i)).map(|r| r.seq);
                    let _ = done.send(seq.ok_or(AuditUnavailable));
                }
            } else if self.failed || self.tried_at.elapsed() >= self.every.interval {
                // A checkpoint due by time (whoever wrote the records since the last
                // one), or a probe of whether the store is back.
                self.append(&[], false);
            }
            if !asks.is_empty() || closed {
                let done = self.append(&[], true).is_some();
                for ask in asks {
                    let _ = ask.send(done);
                }
            }
            if closed {
                return;
            }
        }
    }

    /// Appends `events` with a checkpoint if one is due (or, with `force`, if any record
    /// is not yet covered by one). `None` if it failed.
    fn append(&mut self, events: &[Event], force: bool) -> Option<Vec<Record>> {
        let (signer, every, started_ms) = (&self.signer, self.every, self.started_ms);
        let now = now_ms();
        let interval_ms = i64::try_from(every.interval.as_millis()).unwrap_or(i64::MAX);
        let result = self.sink.append(events, &mut |tip, last| {
            let (seq, at) = last.map_or((0, started_ms), |c| (c.seq, c.time_ms));
            let due = tip.seq > seq
                && (force
                    || tip.seq - seq >= every.records
                    || now.saturating_sub(at) >= interval_ms);
            if due {
                signer.sign(tip.seq, &tip.hash, now)
            } else {
                None
            }
        });
        if events.is_empty() {
            self.tried_at = Instant::now();
        }
        match result {
            Ok(records) => {
                if self.failed {
                    eprintln!("keyward: audit log writable again, serving");
                }
                self.failed = false;
                self.shared.healthy.store(true, Ordering::Release);
                Some(records)
            }
            Err(e) => {
                if !self.failed {
                    eprintln!("keyward: audit log append failed, refusing audited operations: {e}");
                }
                self.failed = true;
                self.shared.healthy.store(false, Ordering::Release);
                None
            }
        }
    }
}
