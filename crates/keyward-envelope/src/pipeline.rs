//! Overlaps reading, sealing or opening, and writing.
//!
//! Worker threads take the input in turn: each reads the next batch, releases the input,
//! and seals or opens its batch while another worker reads. The calling thread writes
//! batches out in order. Each batch crosses threads once on its way out and once on its
//! way back, and memory is bounded by the batches each worker owns, whatever the input
//! size. A message that fits in one batch is handled on the calling thread alone.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::mpsc::{SyncSender, channel, sync_channel};
use std::thread;

use crate::Error;
use crate::frame::Batch;

/// Batches each worker owns: one being read or worked on, the rest waiting to be written.
const BATCHES_PER_WORKER: usize = 3;

/// The number of worker threads for `parallelism` (0 = one per available core).
pub(crate) fn workers(parallelism: usize) -> usize {
    match parallelism {
        0 => thread::available_parallelism().map_or(1, usize::from),
        n => n,
    }
}

/// The input side, used by one worker at a time.
struct Source<F> {
    fill: F,
    next_index: usize,
    finished: bool,
    error: Option<Error>,
}

/// A batch on its way to the writer, with its position and the worker that owns it.
struct Done {
    index: usize,
    last: bool,
    batch: Batch,
    owner: usize,
}

/// Runs `fill` (returns true on the last batch), `work` and `drain` over batches, in order.
pub(crate) fn run(
    workers: usize,
    mut fill: impl FnMut(&mut Batch) -> Result<bool, Error> + Send,
    work: impl Fn(&mut Batch) + Sync,
    mut drain: impl FnMut(&mut Batch) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut first = Batch::default();
    if fill(&mut first)? {
        work(&mut first);
        return drain(&mut first);
    }
    let source = Mutex::new(Source {
        fill,
        next_index: 1,
        finished: false,
        error: None,
    });
    let (done_tx, done_rx) = channel::<Done>();

    thread::scope(|s| {
        let mut give_back = Vec::new();
        let mut first = Some(first);
        for owner in 0..workers.max(1) {
            let (back_tx, back_rx) = sync_channel::<Batch>(BATCHES_PER_WORKER);
            give_back.push(back_tx);
            let (source, work, done_tx) = (&source, &work, done_tx.clone());
            // The first batch, already read, goes to worker 0 to be worked on.
            let mut pending = first.take().map(|batch| (0, false, batch));
            s.spawn(move || {
                let mut owned = usize::from(pending.is_some());
                loop {
                    let (index, last, mut batch) = match pending.take() {
                        Some(p) => p,
                        None => {
                            let mut batch = if owned < BATCHES_PER_WORKER {
                                owned += 1;
                                Batch::default()
                            } else {
                                match back_rx.recv() {
                                    Ok(b) => b,
                                    Err(_) => return, // the writer stopped
                                }
                            };
                            let Some((index, last)) = take_next(source, &mut batch) else {
                                return;
                            };
                            (index, last, batch)
                        }
                    };
                    work(&mut batch);
                    if done_tx
                        .send(Done {
                            index,
                            last,
                            batch,
                            owner,
                        })
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
        drop(done_tx);

        let result = write_in_order(&done_rx, &give_back, &mut drain, &source);
        // Stop every worker: none takes more input, and those waiting for a batch to be
        // given back see the channel close.
        if let Ok(mut s) = source.lock() {
            s.finished = true;
        }
        drop(give_back);
        result
    })
}

/// Writes batches in order, holding early arrivals until their turn, and gives each
/// batch back to its owner once written.
fn write_in_order<F>(
    done_rx: &std::sync::mpsc::Receiver<Done>,
    give_back: &[SyncSender<Batch>],
    drain: &mut impl FnMut(&mut Batch) -> Result<(), Error>,
    source: &Mutex<Source<F>>,
) -> Result<(), Error> {
    let mut early = BTreeMap::new();
    let mut next = 0;
    loop {
        let Ok(done) = done_rx.recv() else {
            // Every worker stopped before the last batch arrived: the input failed.
            let error = source.lock().ok().and_then(|mut s| s.error.take());
            return Err(error.unwrap_or_else(thread_failed));
        };
        early.insert(done.index, done);
        while let Some(mut done) = early.remove(&next) {
            drain(&mut done.batch)?;
            if done.last {
                return Ok(());
            }
            next += 1;
            // Never blocks: a worker owns at most as many batches as the channel holds.
            let _ = give_back[done.owner].try_send(done.batch);
        }
    }
}

/// Reads the next batch under the input lock; `None` once the input is finished or failed.
fn take_next<F>(source: &Mutex<Source<F>>, batch: &mut Batch) -> Option<(usize, bool)>
where
    F: FnMut(&mut Batch) -> Result<bool, Error>,
{
    let mut s = source.lock().ok()?;
    if s.finished {
        return None;
    }
    let index = s.next_index;
    match (s.fill)(batch) {
        Ok(last) => {
            s.next_index += 1;
            s.finished = last;
            Some((index, last))
        }
        Err(e) => {
            s.finished = true;
            s.error = Some(e);
            None
        }
    }
}

fn thread_failed() -> Error {
    Error::Io(std::io::Error::other("encryption pipeline thread stopped"))
}
