//! The JSON-lines file sink: `audit.jsonl` (one record per line) and `checkpoints.jsonl`
//! (one checkpoint per line) in a directory, appended and `fdatasync`ed before a batch is
//! acknowledged.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use crate::checkpoint::Checkpoint;
use crate::record::{GENESIS, Record};
use crate::writer::{Chain, Line, Sink};

/// The records file's name.
pub const RECORDS: &str = "audit.jsonl";
/// The checkpoints file's name.
pub const CHECKPOINTS: &str = "checkpoints.jsonl";

/// The longest line a reader of the log accepts. A record is far shorter (its
/// encryption context is at most 8 KiB): a longer line is damage, and reading it whole
/// could exhaust memory.
pub const MAX_LINE: usize = 1 << 20;

/// The non-empty lines of a log file, each at most [`MAX_LINE`] bytes; the first error
/// (a read error, a longer line, invalid UTF-8) ends them.
pub fn lines(file: impl io::Read) -> impl Iterator<Item = io::Result<String>> {
    let mut reader = BufReader::new(file);
    let mut done = false;
    std::iter::from_fn(move || {
        while !done {
            let mut buf = Vec::new();
            let read = (&mut reader)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut buf);
            let line = match read {
                Ok(0) => return None,
                Ok(_) if buf.last() == Some(&b'\n') => {
                    buf.pop();
                    Ok(buf)
                }
                Ok(_) if buf.len() > MAX_LINE => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a line longer than {MAX_LINE} bytes"),
                )),
                Ok(_) => Ok(buf),
                Err(e) => Err(e),
            };
            match line {
                Ok(buf) if buf.is_empty() => {}
                Ok(buf) => {
                    return Some(String::from_utf8(buf).map_err(|e| {
                        done = true;
                        io::Error::new(io::ErrorKind::InvalidData, e)
                    }));
                }
                Err(e) => {
                    done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    })
}

/// When appended records reach stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// `fdatasync` before a batch is acknowledged: a record survives a power loss.
    EveryBatch,
    /// Written to the operating system before a batch is acknowledged (a record survives
    /// the process being killed), `fdatasync`ed within this long: a power loss may lose
    /// the records of that last interval. Checkpoints are always synced at once.
    Within(std::time::Duration),
}

/// Appends to `audit.jsonl` and `checkpoints.jsonl` in a directory.
#[derive(Debug)]
pub struct FileSink {
    dir: PathBuf,
    records: File,
    /// The records file again, to sync it while appends go on.
    records_sync: std::sync::Arc<File>,
    checkpoints: File,
    /// The files' lengths as this sink left them.
    len: (u64, u64),
    /// File lengths before the last append, to undo it.
    before: Option<(u64, u64)>,
    /// The records of one append, as one write.
    text: Vec<u8>,
    policy: SyncPolicy,
    /// Since when records have been written but not synced.
    unsynced: Option<std::time::Instant>,
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(0o600)
        .open(path)
}

/// Cuts a partial last line (a write that a crash interrupted, never acknowledged).
fn drop_partial_line(file: &mut File) -> io::Result<()> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(());
    }
    // Find the last newline, reading backwards in blocks.
    let mut end = len;
    let mut keep = 0;
    'search: while end > 0 {
        let start = end.saturating_sub(64 * 1024);
        let mut buf = vec![0u8; (end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf)?;
        if let Some(i) = buf.iter().rposition(|&b| b == b'\n') {
            keep = start + i as u64 + 1;
            break 'search;
        }
        end = start;
    }
    file.set_len(keep)?;
    file.sync_data()
}

impl FileSink {
    /// Opens (creating, mode 0700/0600) the sink in `dir`, syncing every batch.
    pub fn open(dir: &Path) -> io::Result<Self> {
        Self::open_with(dir, SyncPolicy::EveryBatch)
    }

    /// [`FileSink::open`] with a sync policy.
    pub fn open_with(dir: &Path, policy: SyncPolicy) -> io::Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let mut records = open_append(&dir.join(RECORDS))?;
        let mut checkpoints = open_append(&dir.join(CHECKPOINTS))?;
        drop_partial_line(&mut records)?;
        drop_partial_line(&mut checkpoints)?;
        let len = (records.metadata()?.len(), checkpoints.metadata()?.len());
        Ok(Self {
            dir: dir.to_owned(),
            records_sync: std::sync::Arc::new(records.try_clone()?),
            records,
            checkpoints,
            len,
            before: None,
            text: Vec::new(),
            policy,
            unsynced: None,
        })
    }

    /// The last record (read from the file's last line; `keyward audit verify` checks
    /// the whole chain).
    pub fn last_record(&self) -> io::Result<Option<Record>> {
        let mut last = None;
        for line in lines(File::open(self.dir.join(RECORDS))?) {
            last = Some(line?);
        }
        last.map(|line| {
            serde_json::from_str(&line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
        })
        .transpose()
    }

    /// Where the chain stands: the last record's number and hash.
    pub fn chain(&self) -> io::Result<Chain> {
        Ok(match self.last_record()? {
            None => Chain {
                seq: 0,
                hash: GENESIS.to_owned(),
            },
            Some(r) => Chain {
                seq: r.seq,
                hash: r.hash,
            },
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Reads the checkpoints in `dir`.
pub fn read_checkpoints(path: &Path) -> io::Result<Vec<Checkpoint>> {
    let mut out = Vec::new();
    for line in lines(File::open(path)?) {
        let line = line?;
        out.push(
            serde_json::from_str(&line)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
        );
    }
    Ok(out)
}

impl Sink for FileSink {
    fn append(&mut self, records: &[Line], checkpoint: Option<&Checkpoint>) -> io::Result<()> {
        let before = self.len;
        self.before = Some(before);
        if !records.is_empty() {
            self.text.clear();
            for line in records {
                self.text.extend_from_slice(line.text.as_bytes());
                self.text.push(b'\n');
            }
            self.records.write_all(&self.text)?;
            self.len.0 += self.text.len() as u64;
            if self.text.capacity() > 1 << 20 {
                self.text = Vec::new();
            }
            match self.policy {
                SyncPolicy::EveryBatch => self.records.sync_data()?,
                SyncPolicy::Within(d) => {
                    let since = *self.unsynced.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() >= d {
                        self.records.sync_data()?;
                        self.unsynced = None;
                    }
                }
            }
        }
        if let Some(c) = checkpoint {
            // A checkpoint must never reach the disk before the records it covers.
            if self.unsynced.is_some() {
                self.records.sync_data()?;
                self.unsynced = None;
            }
            let mut line = serde_json::to_string(c)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            line.push('\n');
            self.checkpoints.write_all(line.as_bytes())?;
            self.len.1 += line.len() as u64;
            self.checkpoints.sync_data()?;
        }
        Ok(())
    }

    fn needs_sync(&self) -> bool {
        self.unsynced.is_some()
    }

    fn sync(&mut self) -> io::Result<()> {
        self.records.sync_data()?;
        self.unsynced = None;
        Ok(())
    }

    fn write_through(&self) -> bool {
        matches!(self.policy, SyncPolicy::Within(_))
    }

    fn take_sync(&mut self) -> Option<Box<dyn FnOnce() -> io::Result<()> + Send>> {
        // Not before half the bound has passed: one sync then covers the records of
        // that half, and each sync costs a journal commit whatever it covers.
        let since = self.unsynced?;
        if let SyncPolicy::Within(d) = self.policy
            && since.elapsed() < d / 2
        {
            return None;
        }
        self.unsynced = None;
        let file = self.records_sync.clone();
        Some(Box::new(move || file.sync_data()))
    }

    fn undo_last(&mut self) -> io::Result<()> {
        if let Some((records, checkpoints)) = self.before {
            self.records.set_len(records)?;
            self.checkpoints.set_len(checkpoints)?;
            self.records.sync_data()?;
            self.checkpoints.sync_data()?;
            self.len = (records, checkpoints);
            self.before = None;
        }
        Ok(())
    }
}
