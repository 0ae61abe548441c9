//! Audit records and their hashes.
//!
//! A record is one JSON object on one line. Its `hash` is SHA-256 over the record's JSON
//! without the `hash` member, exactly as serialized here (fields in a fixed order, the
//! encryption context sorted by key); `prev` is the previous record's hash (64 zeros for
//! the first). Changing any byte of a record changes its hash; removing, inserting or
//! reordering records breaks `prev` or `seq`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use aws_lc_rs::{digest, hmac};

use crate::writer::Line;
use serde::{Deserialize, Serialize};

/// The `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Authenticated, authorized and done.
    Allowed,
    /// Refused: authentication, authorization or a rate limit.
    Denied,
    /// Authenticated but failed otherwise (bad input, key state, internal).
    Failed,
}

/// What the service knows about one request. Never holds plaintext, key material or
/// secrets; encryption-context values arrive already HMAC'd ([`context_hmac`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// The request id returned to the client.
    pub request_id: String,
    /// Who made the request, if authentication got that far.
    pub principal: Option<String>,
    /// The client's address.
    pub source: String,
    /// The verified client certificate's identity (SPIFFE ID or CN), if any.
    pub tls_identity: Option<String>,
    /// The operation, e.g. `Decrypt`.
    pub operation: String,
    /// The key the operation used, as an ARN.
    pub key_arn: Option<String>,
    /// The key version the operation used.
    pub key_version: Option<u32>,
    /// How it ended.
    pub outcome: Outcome,
    /// The error type sent to the client, if any.
    pub error_type: Option<String>,
    /// The encryption context: keys in clear, values as `hmac-sha256:<hex>`.
    pub context: BTreeMap<String, String>,
}

/// A chained record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// 1, 2, 3, ... with no gaps.
    pub seq: u64,
    /// The previous record's hash.
    pub prev: String,
    /// The request.
    #[serde(flatten)]
    pub event: Event,
    /// SHA-256 (hex) of this record's JSON without this member.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// A record without its hash, borrowed: what the hash covers, serialized exactly as
/// [`Record`] is but for its last member.
#[derive(Serialize)]
struct Unhashed<'a> {
    seq: u64,
    prev: &'a str,
    #[serde(flatten)]
    event: &'a Event,
}

/// `body` (a JSON object) with `"hash"` appended as its last member: what serde writes
/// for the whole [`Record`], without serializing it again.
fn with_hash(mut body: String, hash: &str) -> String {
    body.pop(); // the closing brace
    body.push_str(",\"hash\":\"");
    body.push_str(hash);
    body.push_str("\"}");
    body
}

/// An event serialized, ready to be chained: the costly part of making a record, done
/// before its place in the chain is known (outside the chain's lock).
#[derive(Debug)]
pub struct Prepared {
    event: Event,
    /// The event's JSON object.
    json: String,
}

impl Prepared {
    /// Serializes `event`.
    pub fn new(event: Event) -> Self {
        let json = serde_json::to_string(&event).unwrap_or_default();
        Self { event, json }
    }

    /// Chains the event after a record whose hash is `prev`, as number `seq`: its line
    /// and hash. The line is `{"seq":..,"prev":"..",` then the event's members, as serde
    /// writes the whole [`Record`].
    pub fn chain(self, seq: u64, prev: &str) -> (Line, String) {
        self.line(seq, prev)
    }

    /// [`Prepared::chain`], keeping the record too.
    pub fn chain_record(self, seq: u64, prev: &str) -> (Record, Line) {
        let (line, hash) = self.line(seq, prev);
        let record = Record {
            seq,
            prev: prev.to_owned(),
            event: self.event,
            hash,
        };
        (record, line)
    }

    fn line(&self, seq: u64, prev: &str) -> (Line, String) {
        let members = self.json.strip_prefix('{').unwrap_or_default();
        // Room for seq, prev and hash, so that the line is built in one allocation.
        let mut body = String::with_capacity(self.json.len() + prev.len() + 200);
        let _ = write!(
            body,
            "{{\"seq\":{seq},\"prev\":{}",
            serde_json::to_string(prev).unwrap_or_default()
        );
        if members != "}" {
            body.push(',');
        }
        body.push_str(members);
        let hash = hex(digest::digest(&digest::SHA256, body.as_bytes()).as_ref());
        let line = Line {
            seq,
            time_ms: self.event.time_ms,
            text: with_hash(body, &hash),
        };
        (line, hash)
    }
}

impl Record {
    /// Chains `event` after a record whose hash is `prev`, as number `seq`.
    pub fn chain(seq: u64, prev: &str, event: Event) -> Self {
        Self::chain_line(seq, prev, event).0
    }

    /// [`Record::chain`], also giving the record's line (serialized once for both).
    pub fn chain_line(seq: u64, prev: &str, event: Event) -> (Self, String) {
        let (record, line) = Prepared::new(event).chain_record(seq, prev);
        (record, line.text)
    }

    /// The JSON the hash covers: this record without `hash`.
    pub fn body(&self) -> String {
        serde_json::to_string(&Unhashed {
            seq: self.seq,
            prev: &self.prev,
            event: &self.event,
        })
        .unwrap_or_default()
    }

    /// The hash this record should have.
    pub fn computed_hash(&self) -> String {
        hex(digest::digest(&digest::SHA256, self.body().as_bytes()).as_ref())
    }

    /// The record as one line of JSON (no newline).
    pub fn line(&self) -> String {
        with_hash(self.body(), &self.hash)
    }
}

/// An encryption-context value as the audit log keeps it: HMAC-SHA256 under the audit
/// key, so equal values can be matched without the log revealing them.
pub fn context_hmac(audit_key: &hmac::Key, value: &str) -> String {
    format!(
        "hmac-sha256:{}",
        hex(hmac::sign(audit_key, value.as_bytes()).as_ref())
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    pub(crate) fn event(n: u32) -> Event {
        Event {
            time_ms: 1_800_000_000_000 + i64::from(n),
            request_id: format!("req-{n}"),
            principal: Some("spiffe://td/app".into()),
            source: "127.0.0.1:5000".into(),
            tls_identity: None,
            operation: "Decrypt".into(),
            key_arn: Some("arn:aws:kms:us-east-1:111122223333:key/k".into()),
            key_version: Some(1),
            outcome: Outcome::Allowed,
            error_type: None,
            context: [("purpose".to_owned(), "hmac-sha256:00".to_owned())].into(),
        }
    }

    #[test]
    fn a_record_round_trips_and_its_hash_covers_every_field() {
        let r = Record::chain(1, GENESIS, event(1));
        let parsed: Record = serde_json::from_str(&r.line()).unwrap();
        assert_eq!(parsed, r);
        assert_eq!(parsed.computed_hash(), r.hash);
        let mut changed = r.clone();
        changed.event.principal = Some("someone else".into());
        assert_ne!(changed.computed_hash(), r.hash);
        let mut changed = r.clone();
        changed.prev = "1".repeat(64);
        assert_ne!(changed.computed_hash(), r.hash);
    }

    #[test]
    fn the_line_is_what_serde_writes_for_the_record() {
        let mut odd = event(8);
        odd.request_id = "a \"quoted\" \\ id\n".into();
        odd.principal = None;
        odd.context.clear();
        for (seq, e) in [(7, event(7)), (u64::MAX, odd)] {
            let (r, line) = Record::chain_line(seq, GENESIS, e.clone());
            assert_eq!(line, serde_json::to_string(&r).unwrap());
            assert_eq!(r.line(), line);
            assert_eq!(r.computed_hash(), r.hash);
            assert_eq!(r, Record::chain(seq, GENESIS, e));
        }
    }

    #[test]
    fn context_values_are_hmaced() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &[7; 32]);
        let v = context_hmac(&key, "card-4111");
        assert!(v.starts_with("hmac-sha256:") && !v.contains("4111"));
        assert_eq!(v, context_hmac(&key, "card-4111"));
        assert_ne!(v, context_hmac(&key, "card-4112"));
    }
}
