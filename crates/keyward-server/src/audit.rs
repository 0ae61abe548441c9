//! The service's audit log: one record for every request that reaches authentication,
//! made durable in the JSON-lines file sink before the request is answered (fail-closed;
//! see [`keyward_audit::writer`]) and copied to the store within milliseconds after. Over
//! a store that several nodes share (PostgreSQL), the store is the one copy instead, and
//! every node chains its records onto the same log there.
//!
//! Its two keys live behind the root-key barrier like all key material: an HMAC key for
//! encryption-context values (so equal values can be matched without the log revealing
//! them) and the ECDSA P-256 key that signs checkpoints. The checkpoint key's public half
//! is kept in clear (meta `audit.public_key`) for verifiers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
pub use keyward_audit::writer::CheckpointEvery;
use keyward_audit::{
    AuditLog, AuditUnavailable, Chain, CheckpointSigner, Event, Line, Record, Sink,
};
use keyward_kms::Kms;
use keyward_store::{AuditRow, Store};
use zeroize::Zeroizing;

use crate::ServerError;

/// Meta entry: the HMAC key for context values, wrapped by the root key.
const HMAC_META: &str = "audit.hmac_key";
/// Meta entry: the checkpoint signing key (PKCS#8), wrapped by the root key.
const SIGNING_META: &str = "audit.signing_key";
/// Meta entry: the checkpoint key's public half (hex), in clear.
pub const PUBLIC_KEY_META: &str = "audit.public_key";
/// The file sink's directory under the data directory, unless configured.
pub const DEFAULT_DIR: &str = "audit";
/// The exported public key's file name, beside `audit.jsonl` and `checkpoints.jsonl`.
pub const PUBLIC_KEY_FILE: &str = "audit-public-key";

/// How the audit log is set up.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// The file sink's directory.
    pub dir: PathBuf,
    /// Checkpoint every this many records or this long.
    pub every: CheckpointEvery,
    /// When the file sink's records reach stable storage.
    pub sync: keyward_audit::sink::SyncPolicy,
}

/// The running audit log with its keys and its numbers for `/metrics`.
#[derive(Debug)]
pub struct Auditor {
    log: AuditLog,
    hmac: hmac::Key,
    public_key: String,
    backlog: AtomicI64,
    latency: crate::metrics::Histogram,
}

/// The audit keys, creating them on first use. Concurrent first starts agree through
/// `init_meta`: whichever signing key is stored first wins, and the public key is derived
/// from the stored one. A stored public key that is not the signing key's is refused:
/// someone swapped it to pass off checkpoints of their own.
fn keys(kms: &Kms) -> Result<(hmac::Key, CheckpointSigner), ServerError> {
    let store = kms.store();
    let bad = |what: &str| ServerError::Internal(format!("audit keys: {what}"));
    if store.meta(SIGNING_META)?.is_none() {
        let mut hmac_key = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(hmac_key.as_mut()).map_err(|_| bad("no randomness"))?;
        let pkcs8 = CheckpointSigner::generate().ok_or_else(|| bad("key generation failed"))?;
        store.init_meta(HMAC_META, &kms.seal_secret(HMAC_META, hmac_key.as_ref())?)?;
        store.init_meta(SIGNING_META, &kms.seal_secret(SIGNING_META, &pkcs8)?)?;
    }
    let hmac_key = kms.open_secret(
        HMAC_META,
        &store
            .meta(HMAC_META)?
            .ok_or_else(|| bad("missing HMAC key"))?,
    )?;
    let pkcs8 = kms.open_secret(
        SIGNING_META,
        &store
            .meta(SIGNING_META)?
            .ok_or_else(|| bad("missing signing key"))?,
    )?;
    let signer = CheckpointSigner::from_pkcs8(&pkcs8).ok_or_else(|| bad("bad signing key"))?;
    let public = store.init_meta(PUBLIC_KEY_META, signer.public_key().as_bytes())?;
    if public != signer.public_key().as_bytes() {
        return Err(bad(
            "the stored checkpoint public key is not the signing key's: the database was altered",
        ));
    }
    Ok((hmac::Key::new(hmac::HMAC_SHA256, &hmac_key), signer))
}

/// The audit log's sink in the store.
struct StoreSink {
    store: Arc<dyn Store>,
    records: u64,
    checkpoints: u64,
    before: Option<(u64, u64)>,
}

fn row(r: &Record, line: String) -> AuditRow {
    AuditRow {
        seq: r.seq,
        time_ms: r.event.time_ms,
        line,
    }
}

/// A line as the store keeps it.
fn line_row(l: &Line) -> AuditRow {
    AuditRow {
        seq: l.seq,
        time_ms: l.time_ms,
        line: l.text.clone(),
    }
}

fn io_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl Sink for StoreSink {
    fn append(
        &mut self,
        records: &[Line],
        checkpoint: Option<&keyward_audit::Checkpoint>,
    ) -> std::io::Result<()> {
        let rows: Vec<AuditRow> = records.iter().map(line_row).collect();
        let checkpoint = checkpoint.map(checkpoint_row).transpose()?;
        self.store
            .append_audit(&rows, checkpoint.as_ref())
            .map_err(io_error)?;
        self.before = Some((self.records, self.checkpoints));
        if let Some(last) = records.last() {
            self.records = last.seq;
        }
        if checkpoint.is_some() {
            self.checkpoints += 1;
        }
        Ok(())
    }

    fn undo_last(&mut self) -> std::io::Result<()> {
        if let Some((records, checkpoints)) = self.before.take() {
            self.store
                .truncate_audit(records, checkpoints)
                .map_err(io_error)?;
            self.records = records;
            self.checkpoints = checkpoints;
        }
        Ok(())
    }
}

/// The audit log in a store that several nodes append to: each batch is chained in the
/// database transaction that stores it, after whatever any node stored before.
struct SharedStoreSink {
    store: Arc<dyn Store>,
}

fn checkpoint_row(c: &keyward_audit::Checkpoint) -> std::io::Result<AuditRow> {
    Ok(AuditRow {
        seq: c.seq,
        time_ms: c.time_ms,
        line: serde_json::to_string(c).map_err(io_error)?,
    })
}

impl keyward_audit::SharedSink for SharedStoreSink {
    fn append(
        &mut self,
        events: &[Event],
        checkpoint: &mut dyn FnMut(
            &Chain,
            Option<&keyward_audit::Checkpoint>,
        ) -> Option<keyward_audit::Checkpoint>,
    ) -> std::io::Result<Vec<Record>> {
        let mut made = Vec::new();
        self.store
            .append_audit_chained(&mut |tail, last| {
                let corrupt = |_| keyward_store::StoreError::Corrupt("a stored audit line");
                let mut tip = match tail {
                    None => Chain {
                        seq: 0,
                        hash: keyward_audit::record::GENESIS.to_owned(),
                    },
                    Some(r) => {
                        let r: Record = serde_json::from_str(&r.line).map_err(corrupt)?;
                        Chain {
                            seq: r.seq,
                            hash: r.hash,
                        }
                    }
                };
                let last: Option<keyward_audit::Checkpoint> = last
                    .map(|c| serde_json::from_str(&c.line))
                    .transpose()
                    .map_err(corrupt)?;
                made.clear();
                let mut rows = Vec::with_capacity(events.len());
                for event in events {
                    let (record, line) = Record::chain_line(tip.seq + 1, &tip.hash, event.clone());
                    tip = Chain {
                        seq: record.seq,
                        hash: record.hash.clone(),
                    };
                    rows.push(row(&record, line));
                    made.push(record);
                }
                let checkpoint = checkpoint(&tip, last.as_ref())
                    .map(|c| checkpoint_row(&c))
                    .transpose()
                    .map_err(|_| keyward_store::StoreError::Corrupt("a checkpoint"))?;
                Ok((rows, checkpoint))
            })
            .map_err(io_error)?;
        Ok(made)
    }
}

fn chain_of(row: Option<AuditRow>) -> Result<Chain, ServerError> {
    match row {
        None => Ok(Chain {
            seq: 0,
            hash: keyward_audit::record::GENESIS.to_owned(),
        }),
        Some(r) => {
            let record: Record = serde_json::from_str(&r.line)
                .map_err(|_| ServerError::Internal(format!("audit record {} is corrupt", r.seq)))?;
            Ok(Chain {
                seq: record.seq,
                hash: record.hash,
            })
        }
    }
}

/// The file sink's records after `after`, to copy into the store.
fn file_records_after(dir: &Path, after: u64) -> Result<Vec<Record>, ServerError> {
    let file = std::fs::File::open(dir.join(keyward_audit::sink::RECORDS))
        .map_err(|e| ServerError::Internal(format!("audit file: {e}")))?;
    let mut out = Vec::new();
    for line in keyward_audit::sink::lines(file) {
        let line = line.map_err(|e| ServerError::Internal(format!("audit file: {e}")))?;
        let r: Record = serde_json::from_str(&line)
            .map_err(|_| ServerError::Internal("audit file: a corrupt record".into()))?;
        if r.seq > after {
            out.push(r);
        }
    }
    Ok(out)
}

/// Checks that `records` continue the chain at `after` (`prev` hash) record by record.
fn check_continues(records: &[Record], after: &Chain) -> bool {
    let mut seq = after.seq;
    let mut prev = after.hash.as_str();
    for r in records {
        if r.seq != seq + 1 || r.prev != prev || r.computed_hash() != r.hash {
            return false;
        }
        seq = r.seq;
        prev = &r.hash;
    }
    true
}

/// Brings the two sinks level after a crash between their appends (records that were
/// never acknowledged, but that are kept: what they describe may have happened). They
/// must agree where both have records; otherwise the log was tampered with and the
/// service refuses to start.
fn reconcile(
    store: &Arc<dyn Store>,
    file: &mut keyward_audit::sink::FileSink,
) -> Result<Chain, ServerError> {
    let in_store = chain_of(store.audit_tail()?)?;
    // The file's last record, read once: its place in the chain, and for two level
    // copies the record to compare.
    let last_in_file = file
        .last_record()
        .map_err(|e| ServerError::Internal(format!("audit file: {e}")))?;
    let in_file = last_in_file.as_ref().map_or_else(
        || Chain {
            seq: 0,
            hash: keyward_audit::record::GENESIS.to_owned(),
        },
        |r| Chain {
            seq: r.seq,
            hash: r.hash.clone(),
        },
    );
    let disagree = |seq: u64| {
        ServerError::Internal(format!(
            "the audit log in the store and in {} disagree at record {seq}; run `keyward audit verify`",
            file.dir().display()
        ))
    };
    if in_store.seq > in_file.seq {
        let missing: Vec<Record> = store
            .audit_records(in_file.seq, usize::MAX >> 1)?
            .iter()
            .map(|r| serde_json::from_str(&r.line))
            .collect::<Result<_, _>>()
            .map_err(|_| disagree(in_file.seq + 1))?;
        // The store runs ahead of the file by at most one batch (a crash between the
        // two appends); more means the store was written behind the service's back.
        if missing.len() > keyward_audit::writer::MAX_BATCH || !check_continues(&missing, &in_file)
        {
            return Err(disagree(in_file.seq + 1));
        }
        tracing::warn!(
            records = missing.len(),
            "audit: copying records the file sink lacks from the store"
        );
        let lines: Vec<Line> = missing.iter().map(Line::of).collect();
        file.append(&lines, None)
            .map_err(|e| ServerError::Internal(format!("audit file: {e}")))?;
    } else if in_file.seq > in_store.seq {
        let missing = file_records_after(file.dir(), in_store.seq)?;
        if !check_continues(&missing, &in_store) {
            return Err(disagree(in_store.seq + 1));
        }
        tracing::warn!(
            records = missing.len(),
            "audit: copying records the store lacks from the file sink"
        );
        let rows: Vec<AuditRow> = missing.iter().map(|r| row(r, r.line())).collect();
        store.append_audit(&rows, None)?;
    } else if in_store.seq > 0 {
        // Level: the last records must be the same record, member for member.
        let last_in_store = store
            .audit_tail()?
            .and_then(|r| serde_json::from_str::<Record>(&r.line).ok());
        if last_in_file != last_in_store
            || last_in_store.is_none_or(|r| r.computed_hash() != r.hash)
        {
            return Err(disagree(in_store.seq));
        }
    }
    chain_of(store.audit_tail()?)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Auditor {
    /// Opens the audit log of `kms`'s store and the file sink in `settings.dir`, creating
    /// the audit keys on first start, and starts the writer.
    ///
    /// Over a store that several nodes share, the store is the log's one copy: every
    /// node's records join one chain there, each batch durable at its commit, and there
    /// is no file sink (a node's file would hold only its own records, not a chain).
    pub fn start(kms: &Kms, settings: &AuditSettings) -> Result<Self, ServerError> {
        let (hmac, signer) = keys(kms)?;
        let public_key = signer.public_key().to_owned();
        if kms.store().shared() {
            let sink = SharedStoreSink {
                store: kms.store().clone(),
            };
            let log = AuditLog::start_shared(Box::new(sink), signer, settings.every)
                .map_err(|e| ServerError::Internal(format!("audit writer: {e}")))?;
            return Ok(Self::running(log, hmac, public_key));
        }
        let mut file = keyward_audit::sink::FileSink::open_with(&settings.dir, settings.sync)
            .map_err(|e| {
                ServerError::Internal(format!("audit directory {}: {e}", settings.dir.display()))
            })?;
        let chain = reconcile(kms.store(), &mut file)?;
        let store_sink = StoreSink {
            store: kms.store().clone(),
            records: chain.seq,
            checkpoints: kms.store().audit_checkpoints()?.len() as u64,
            before: None,
        };
        let log = AuditLog::start(
            Box::new(file),
            Some(Box::new(store_sink)),
            chain,
            signer,
            settings.every,
        )
        .map_err(|e| ServerError::Internal(format!("audit writer: {e}")))?;
        Ok(Self::running(log, hmac, public_key))
    }

    fn running(log: AuditLog, hmac: hmac::Key, public_key: String) -> Self {
        Self {
            log,
            hmac,
            public_key,
            backlog: AtomicI64::new(0),
            latency: crate::metrics::Histogram::default(),
        }
    }

    /// The checkpoint key's public half (hex).
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// An encryption context as the log keeps it: keys in clear, values HMAC'd.
    pub fn context(&self, context: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        context
            .iter()
            .map(|(k, v)| (k.clone(), keyward_audit::context_hmac(&self.hmac, v)))
            .collect()
    }

    /// Makes `event` durable; the caller answers only on `Ok`.
    pub async fn record(&self, event: Event) -> Result<u64, AuditUnavailable> {
        let started = Instant::now();
        self.backlog.fetch_add(1, Ordering::Relaxed);
        let result = self.log.record(event).await;
        self.backlog.fetch_sub(1, Ordering::Relaxed);
        self.latency.observe(started.elapsed());
        if result.is_err() {
            tracing::error!("audit record could not be made durable: request refused");
        }
        result
    }

    /// Signs a checkpoint of the log as it stands (at shutdown); false if it failed.
    pub fn checkpoint_blocking(&self) -> bool {
        self.log.checkpoint_blocking()
    }

    /// Whether the last write succeeded: state-changing operations are not started while
    /// it is false.
    pub fn healthy(&self) -> bool {
        self.log.healthy()
    }

    /// Prometheus text for the audit log's numbers.
    pub fn metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(
            out,
            "# HELP keyward_audit_backlog Requests waiting for their audit record to be durable.\n\
             # TYPE keyward_audit_backlog gauge\nkeyward_audit_backlog {}",
            self.backlog.load(Ordering::Relaxed).max(0)
        );
        let _ = writeln!(
            out,
            "# HELP keyward_audit_healthy 1 if the last audit write succeeded, 0 while requests are refused.\n\
             # TYPE keyward_audit_healthy gauge\nkeyward_audit_healthy {}",
            u8::from(self.healthy())
        );
        self.latency.write(
            out,
            "keyward_audit_write_seconds",
            "Time from handing a record to the audit log until it was durable.",
        );
    }
}

/// Default checkpoint cadence.
pub const DEFAULT_EVERY: CheckpointEvery = CheckpointEvery {
    records: 10_000,
    interval: Duration::from_secs(60),
};
