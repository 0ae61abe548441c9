//! keyward's audit log: one record for every request that reaches authentication, allowed
//! or not, chained by SHA-256 so that no record can be changed, removed, inserted or
//! reordered without breaking the chain, with checkpoints signed by a key behind the
//! root-key barrier so that a cut tail is detected too.
//!
//! - [`record`]: what a record holds and how it is hashed.
//! - [`checkpoint`]: signed checkpoints.
//! - [`verify`]: proving a log complete and unaltered.
//! - [`writer`]: the group-commit writer; an operation is answered only once its record
//!   is durable in every sink (fail-closed).
//! - [`sink`]: the JSON-lines file sink.

#![warn(missing_docs)]

pub mod checkpoint;
pub mod record;
pub mod sink;
pub mod verify;
pub mod writer;

pub use checkpoint::{Checkpoint, CheckpointSigner};
pub use record::{Event, Outcome, Prepared, Record, context_hmac};
pub use verify::{Broken, Verified, verify};
pub use writer::{AuditLog, AuditUnavailable, Chain, Line, SharedSink, Sink};
