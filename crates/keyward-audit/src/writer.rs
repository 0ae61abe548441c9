//! The group-commit writer. Requests hand their [`Event`] to [`AuditLog::record`] and wait;
//! one thread takes every event waiting, chains them, appends the batch to every sink
//! (each durable before it returns) and only then answers them all. Under load a batch
//! holds many records for one fsync; alone, a record waits for its own.
//!
//! Fail-closed: if any sink fails, the batch is undone in the sinks that took it, the chain
//! does not move, and every request in it gets [`AuditUnavailable`]: the caller must refuse
//! the operation. The next batch tries again, so service resumes when the sink recovers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::checkpoint::{Checkpoint, CheckpointSigner};
use crate::record::{Event, Record};

/// Most records in one batch.
pub const MAX_BATCH: usize = 4096;
/// While a sink fails, how often the writer tries it again with a checkpoint.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Where the chain stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// The last record's number (0 for none).
    pub seq: u64,
    /// Its hash.
    pub hash: String,
}

/// A durable destination for records and checkpoints.
pub trait Sink: Send {
    /// Appends records (with their lines, `lines[i]` being `records[i].line()`) and, if
    /// given, a checkpoint; durable when it returns `Ok`. On error, nothing of this call
    /// may remain.
    fn append(
        &mut self,
        records: &[Record],
        lines: &[String],
        checkpoint: Option<&Checkpoint>,
    ) -> std::io::Result<()>;
    /// Removes what the last successful `append` added (when a later sink failed).
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
}

/// How often the writer looks for sinks that owe a sync.
const SYNC_POLL: Duration = Duration::from_millis(5);

/// The audit log could not make a record durable; the operation must be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the audit log is unavailable")]
pub struct AuditUnavailable;

struct Pending {
    event: Event,
    done: tokio::sync::oneshot::Sender<Result<u64, AuditUnavailable>>,
}

#[expect(
    clippy::large_enum_variant,
    reason = "records are the traffic; boxing each would cost an allocation per request"
)]
enum Msg {
    Record(Pending),
    /// Checkpoint the chain now (if it moved since the last one); answers whether the
    /// log is checkpointed up to its last record.
    Checkpoint(mpsc::Sender<bool>),
}

/// Checkpoint every this many records or this long, whichever comes first.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointEvery {
    /// Records.
    pub records: u64,
    /// Time.
    pub interval: Duration,
}

/// The running audit log.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
    healthy: Arc<AtomicBool>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl AuditLog {
    /// Starts the writer thread after `chain`, writing to `sinks`.
    pub fn start(
        sinks: Vec<Box<dyn Sink>>,
        chain: Chain,
        signer: CheckpointSigner,
        every: CheckpointEvery,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<Msg>();
        let healthy = Arc::new(AtomicBool::new(true));
        let flag = healthy.clone();
        std::thread::Builder::new()
            .name("keyward-audit".into())
            .spawn(move || Writer::new(sinks, chain, signer, every, flag).run(&rx))
            .ok();
        Self { tx, healthy }
    }

    /// Records `event`; resolves once it is durable, with its sequence number.
    pub async fn record(&self, event: Event) -> Result<u64, AuditUnavailable> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.tx
            .send(Msg::Record(Pending { event, done }))
            .map_err(|_| AuditUnavailable)?;
        wait.await.map_err(|_| AuditUnavailable)?
    }

    /// Signs a checkpoint of the log as it stands now (for a clean shutdown or an
    /// export); blocks until it is durable. False if it could not be written.
    pub fn checkpoint_blocking(&self) -> bool {
        let (done, wait) = mpsc::channel();
        self.tx.send(Msg::Checkpoint(done)).is_ok() && wait.recv().unwrap_or(false)
    }

    /// [`AuditLog::record`] for threads that may block.
    pub fn record_blocking(&self, event: Event) -> Result<u64, AuditUnavailable> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.tx
            .send(Msg::Record(Pending { event, done }))
            .map_err(|_| AuditUnavailable)?;
        wait.blocking_recv().map_err(|_| AuditUnavailable)?
    }

    /// Whether the last batch was written. Operations that change state check this first,
    /// so that they are not done while records cannot be kept.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }
}

struct Writer {
    sinks: Vec<Box<dyn Sink>>,
    chain: Chain,
    signer: CheckpointSigner,
    every: CheckpointEvery,
    checkpointed: u64,
    checkpoint_at: Instant,
    healthy: Arc<AtomicBool>,
    /// An undo failed: the copies may disagree, so nothing more is written.
    poisoned: bool,
}

impl Writer {
    fn new(
        sinks: Vec<Box<dyn Sink>>,
        chain: Chain,
        signer: CheckpointSigner,
        every: CheckpointEvery,
        healthy: Arc<AtomicBool>,
    ) -> Self {
        Self {
            sinks,
            checkpointed: chain.seq,
            chain,
            signer,
            every,
            checkpoint_at: Instant::now(),
            healthy,
            poisoned: false,
        }
    }

    fn run(mut self, rx: &mpsc::Receiver<Msg>) {
        loop {
            // While failing, try a checkpoint every second, so that service resumes when
            // the sink recovers even if only refused (never written) requests arrive.
            let wait = if self.healthy.load(Ordering::Acquire) {
                self.every.interval
            } else {
                RETRY_EVERY.min(self.every.interval)
            };
            let owed = self.sinks.iter().any(|s| s.needs_sync());
            let wait = if owed { wait.min(SYNC_POLL) } else { wait };
            let first = match rx.recv_timeout(wait) {
                Ok(Msg::Record(p)) => p,
                Err(mpsc::RecvTimeoutError::Timeout) if owed => {
                    self.sync_sinks();
                    continue;
                }
                Ok(Msg::Checkpoint(done)) => {
                    self.idle_checkpoint();
                    let _ = done.send(self.checkpointed == self.chain.seq);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.idle_checkpoint();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.idle_checkpoint();
                    return;
                }
            };
            let mut batch = vec![first];
            let mut asked = Vec::new();
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(Msg::Record(p)) => batch.push(p),
                    Ok(Msg::Checkpoint(done)) => asked.push(done),
                    Err(_) => break,
                }
            }
            self.commit(batch);
            if !asked.is_empty() {
                self.idle_checkpoint();
                for done in asked {
                    let _ = done.send(self.checkpointed == self.chain.seq);
                }
            }
        }
    }

    fn due(&self, seq: u64) -> bool {
        seq > self.checkpointed
            && (seq - self.checkpointed >= self.every.records
                || self.checkpoint_at.elapsed() >= self.every.interval)
    }

    fn write(
        &mut self,
        records: &[Record],
        lines: &[String],
        checkpoint: Option<&Checkpoint>,
    ) -> bool {
        if self.poisoned {
            return false;
        }
        for i in 0..self.sinks.len() {
            if let Err(e) = self.sinks[i].append(records, lines, checkpoint) {
                if self.healthy.load(Ordering::Acquire) {
                    eprintln!("keyward: audit sink failed, refusing audited operations: {e}");
                }
                for sink in &mut self.sinks[..i] {
                    if let Err(e) = sink.undo_last() {
                        // A copy now holds records of requests that were refused: no
                        // later batch may build on it. Stay failed until a restart,
                        // whose start-up check compares the copies.
                        eprintln!(
                            "keyward: audit: undoing a failed batch failed ({e}); refusing audited operations until restarted"
                        );
                        self.poisoned = true;
                    }
                }
                self.healthy.store(false, Ordering::Release);
                return false;
            }
        }
        if !self.healthy.swap(true, Ordering::AcqRel) {
            eprintln!("keyward: audit sinks writable again, serving");
        }
        true
    }

    fn commit(&mut self, batch: Vec<Pending>) {
        let mut seq = self.chain.seq;
        let mut prev = self.chain.hash.clone();
        let mut records = Vec::with_capacity(batch.len());
        let mut lines = Vec::with_capacity(batch.len());
        let mut waiting = Vec::with_capacity(batch.len());
        for p in batch {
            seq += 1;
            let (r, line) = Record::chain_line(seq, &prev, p.event);
            prev.clone_from(&r.hash);
            records.push(r);
            lines.push(line);
            waiting.push(p.done);
        }
        let checkpoint = if self.due(seq) {
            self.signer.sign(seq, &prev, now_ms())
        } else {
            None
        };
        if self.write(&records, &lines, checkpoint.as_ref()) {
            self.chain = crate::writer::Chain { seq, hash: prev };
            if checkpoint.is_some() {
                self.checkpointed = seq;
                self.checkpoint_at = Instant::now();
            }
            for (done, r) in waiting.into_iter().zip(&records) {
                let _ = done.send(Ok(r.seq));
            }
        } else {
            for done in waiting {
                let _ = done.send(Err(AuditUnavailable));
            }
        }
    }

    fn sync_sinks(&mut self) {
        for sink in &mut self.sinks {
            if sink.needs_sync()
                && let Err(e) = sink.sync()
            {
                eprintln!("keyward: audit sink failed to sync, refusing audited operations: {e}");
                self.healthy.store(false, Ordering::Release);
            }
        }
    }

    fn idle_checkpoint(&mut self) {
        let failing = !self.healthy.load(Ordering::Acquire);
        if (self.chain.seq > self.checkpointed || failing)
            && let Some(c) = self.signer.sign(self.chain.seq, &self.chain.hash, now_ms())
            && self.write(&[], &[], Some(&c))
        {
            self.checkpointed = self.chain.seq;
            self.checkpoint_at = Instant::now();
        }
    }
}
