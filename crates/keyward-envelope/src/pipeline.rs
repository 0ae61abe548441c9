//! Overlaps reading, sealing or opening, and writing.
//!
//! The calling thread reads batches and writes them out in order; worker threads do the
//! AEAD work between. Memory is bounded by the number of batches in flight, whatever the
//! input size. Messages that fit in one batch are processed on the calling thread alone.

use std::sync::mpsc::sync_channel;
use std::thread;

use crate::Error;
use crate::frame::Batch;

/// Batches queued per worker.
const DEPTH: usize = 2;

/// The number of worker threads for `parallelism` (0 = one per available core).
pub(crate) fn workers(parallelism: usize) -> usize {
    match parallelism {
        0 => thread::available_parallelism().map_or(1, usize::from),
        n => n,
    }
}

/// Runs `fill` (returns true on the last batch), `work` and `drain` over batches, in order.
pub(crate) fn run(
    workers: usize,
    mut fill: impl FnMut(&mut Batch) -> Result<bool, Error>,
    work: impl Fn(&mut Batch) + Sync,
    mut drain: impl FnMut(&mut Batch) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut first = Batch::default();
    let last = fill(&mut first)?;
    if last || workers == 0 {
        let mut batch = first;
        let mut last = last;
        loop {
            work(&mut batch);
            drain(&mut batch)?;
            if last {
                return Ok(());
            }
            last = fill(&mut batch)?;
        }
    }

    thread::scope(|s| {
        let work = &work;
        let mut to_workers = Vec::with_capacity(workers);
        let mut from_workers = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = sync_channel::<Batch>(DEPTH);
            let (done_tx, done_rx) = sync_channel::<Batch>(DEPTH);
            s.spawn(move || {
                for mut batch in rx {
                    work(&mut batch);
                    if done_tx.send(batch).is_err() {
                        break;
                    }
                }
            });
            to_workers.push(tx);
            from_workers.push(done_rx);
        }

        // Batch i goes to worker i % workers; each worker keeps order, so receiving
        // round-robin returns batches in order.
        let (mut sent, mut received) = (0usize, 0usize);
        let mut spare = Vec::new();
        let mut next = Some(first);
        let mut done = false;
        loop {
            if let Some(batch) = next.take() {
                to_workers[sent % workers]
                    .send(batch)
                    .map_err(|_| worker_gone())?;
                sent += 1;
            }
            if done && received == sent {
                return Ok(());
            }
            if !done && sent - received < workers * DEPTH {
                let mut batch = spare.pop().unwrap_or_default();
                done = fill(&mut batch)?;
                next = Some(batch);
                continue;
            }
            let mut batch = from_workers[received % workers]
                .recv()
                .map_err(|_| worker_gone())?;
            received += 1;
            drain(&mut batch)?;
            spare.push(batch);
        }
    })
}

fn worker_gone() -> Error {
    Error::Io(std::io::Error::other("encryption worker thread stopped"))
}
