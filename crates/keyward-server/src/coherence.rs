//! Keeping a node's caches in line with a store other nodes change too.
//!
//! Before a request is served, the node must have looked at the store's change count
//! ([`keyward_store::Store::changes`]) with a read that started after the request
//! arrived: then every change committed before the request was sent (a key disabled
//! through another node, an access key deleted) is seen, and caches that it outdated are
//! dropped first ([`Kms::refresh`]). Reads are shared in rounds: a request waits for the
//! next round to start and end, and one read answers every request that arrived before
//! it started. Under load that is one small query per round trip to the database, not
//! per request.

use std::sync::{Arc, Mutex};

use keyward_kms::Kms;
use tokio::sync::watch;

/// What the last finished round found: its number, and whether it could read the store.
type Finished = (u64, bool);

/// The rounds of change-count reads.
pub struct Coherence {
    kms: Arc<Kms>,
    /// Called after a round dropped the KMS's caches, to drop the server's own.
    changed: Box<dyn Fn() + Send + Sync>,
    rounds: Mutex<Rounds>,
    finished: watch::Sender<Finished>,
}

impl std::fmt::Debug for Coherence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coherence")
            .field("rounds", &self.rounds)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Rounds {
    /// The last round started.
    started: u64,
    /// A round is reading now.
    running: bool,
    /// A request is waiting for the round after the running one.
    wanted: bool,
}

/// The store could not be read, so the node cannot tell whether its caches are current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the database could not be reached to check for changes")]
pub struct Unavailable;

impl Coherence {
    /// Rounds over `kms`'s store; `changed` drops the caller's own caches of the store.
    pub fn new(kms: Arc<Kms>, changed: Box<dyn Fn() + Send + Sync>) -> Self {
        Self {
            kms,
            changed,
            rounds: Mutex::new(Rounds::default()),
            finished: watch::Sender::new((0, true)),
        }
    }

    /// Waits until a read of the change count that started after this call has ended
    /// (dropping outdated caches first). The read runs on tokio's blocking pool.
    pub async fn fresh(self: &Arc<Self>) -> Result<(), Unavailable> {
        let mut finished = self.finished.subscribe();
        let target = {
            let mut r = self.lock();
            if r.running {
                r.wanted = true;
                r.started + 1
            } else {
                r.started += 1;
                r.running = true;
                self.clone().start();
                r.started
            }
        };
        let (_, ok) = *finished
            .wait_for(|(round, _)| *round >= target)
            .await
            .map_err(|_| Unavailable)?;
        if ok { Ok(()) } else { Err(Unavailable) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rounds> {
        self.rounds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs the round just started, then the next one while requests wait for it.
    fn start(self: Arc<Self>) {
        tokio::task::spawn_blocking(move || {
            loop {
                let refreshed =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.kms.refresh()));
                let ok = match refreshed {
                    Ok(Ok(changed)) => {
                        if changed {
                            (self.changed)();
                        }
                        true
                    }
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "checking the database for changes failed");
                        false
                    }
                    Err(_) => false,
                };
                let mut r = self.lock();
                let round = r.started;
                let again = std::mem::take(&mut r.wanted);
                if again {
                    r.started += 1;
                } else {
                    r.running = false;
                }
                // Published under the lock, so that a request that saw this round
                // running is never left waiting for a round nobody starts.
                self.finished.send_replace((round, ok));
                drop(r);
                if !again {
                    return;
                }
            }
        });
    }
}
