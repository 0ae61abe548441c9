//! Proving a log complete and unaltered.

use crate::checkpoint::Checkpoint;
use crate::record::{GENESIS, Record};

/// What a successful verification proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records checked (1..=records).
    pub records: u64,
    /// The last record's hash.
    pub last_hash: String,
    /// Checkpoints whose signature and hash matched.
    pub checkpoints: usize,
}

/// The first thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    /// A line that is not a record.
    #[error("line {line}: not an audit record")]
    Unparsable {
        /// 1-based line number.
        line: u64,
    },
    /// A record out of sequence: one is missing, inserted or moved.
    #[error(
        "record {found} where record {expected} should be (missing, inserted or moved records)"
    )]
    Sequence {
        /// The sequence number expected.
        expected: u64,
        /// The one found.
        found: u64,
    },
    /// A record whose content does not match its hash: it was edited.
    #[error("record {seq} was altered: its content does not match its hash")]
    Altered {
        /// The record.
        seq: u64,
    },
    /// A record that does not follow the previous one's hash.
    #[error("record {seq} does not follow record {prev}: the chain is broken")]
    Chain {
        /// The record.
        seq: u64,
        /// The one before.
        prev: u64,
    },
    /// A checkpoint with a bad signature.
    #[error("checkpoint at record {seq}: bad signature")]
    CheckpointSignature {
        /// Its sequence number.
        seq: u64,
    },
    /// A checkpoint whose hash differs from the record's: the log was rewritten.
    #[error("checkpoint at record {seq}: the log there has a different hash (rewritten)")]
    CheckpointMismatch {
        /// Its sequence number.
        seq: u64,
    },
    /// The log ends before a checkpoint: its tail was cut.
    #[error(
        "the log ends at record {last} but a checkpoint proves it reached {seq}: records were removed from the end"
    )]
    Truncated {
        /// The last record present.
        last: u64,
        /// The checkpoint's sequence number.
        seq: u64,
    },
}

impl Broken {
    /// The first record concerned.
    pub fn seq(&self) -> u64 {
        match self {
            Self::Unparsable { line } => *line,
            Self::Sequence { expected, .. } => *expected,
            Self::Altered { seq } | Self::Chain { seq, .. } => *seq,
            Self::CheckpointSignature { seq } | Self::CheckpointMismatch { seq } => *seq,
            Self::Truncated { last, .. } => last + 1,
        }
    }
}

/// Verifies `lines` (one JSON record each, in order, from record 1) and `checkpoints`
/// signed by `public_key` (hex). Reads the lines once, keeping only the hashes the
/// checkpoints need.
pub fn verify<I, S>(
    lines: I,
    checkpoints: &[Checkpoint],
    public_key: &str,
) -> Result<Verified, Broken>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    for c in checkpoints {
        if !c.verify(public_key) {
            return Err(Broken::CheckpointSignature { seq: c.seq });
        }
    }
    let mut prev = GENESIS.to_owned();
    let mut last = 0u64;
    let mut matched = 0usize;
    for (i, line) in lines.into_iter().enumerate() {
        let line_no = i as u64 + 1;
        let record: Record = serde_json::from_str(line.as_ref())
            .map_err(|_| Broken::Unparsable { line: line_no })?;
        if record.seq != last + 1 {
            return Err(Broken::Sequence {
                expected: last + 1,
                found: record.seq,
            });
        }
        if record.computed_hash() != record.hash {
            return Err(Broken::Altered { seq: record.seq });
        }
        if record.prev != prev {
            return Err(Broken::Chain {
                seq: record.seq,
                prev: last,
            });
        }
        for c in checkpoints.iter().filter(|c| c.seq == record.seq) {
            if c.hash != record.hash {
                return Err(Broken::CheckpointMismatch { seq: c.seq });
            }
            matched += 1;
        }
        last = record.seq;
        prev = record.hash;
    }
    if let Some(c) = checkpoints
        .iter()
        .filter(|c| c.seq > last)
        .min_by_key(|c| c.seq)
    {
        return Err(Broken::Truncated { last, seq: c.seq });
    }
    Ok(Verified {
        records: last,
        last_hash: prev,
        checkpoints: matched,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::checkpoint::CheckpointSigner;
    use crate::record::{Event, Outcome};

    fn event(n: u64) -> Event {
        Event {
            time_ms: n as i64,
            request_id: format!("r{n}"),
            principal: Some(format!("p{}", n % 3)),
            source: "127.0.0.1:1".into(),
            tls_identity: None,
            operation: "Encrypt".into(),
            key_arn: None,
            key_version: None,
            outcome: Outcome::Allowed,
            error_type: None,
            context: Default::default(),
        }
    }

    fn log(n: u64) -> Vec<String> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let r = Record::chain(seq, &prev, event(seq));
                prev = r.hash.clone();
                r.line()
            })
            .collect()
    }

    #[test]
    fn every_kind_of_tampering_is_found() {
        let signer = CheckpointSigner::from_pkcs8(&CheckpointSigner::generate().unwrap()).unwrap();
        let pk = signer.public_key().to_owned();
        let lines = log(10);
        let hash_of = |l: &str| serde_json::from_str::<Record>(l).unwrap().hash;
        let cps = vec![
            signer.sign(5, &hash_of(&lines[4]), 0).unwrap(),
            signer.sign(10, &hash_of(&lines[9]), 0).unwrap(),
        ];
        let ok = verify(&lines, &cps, &pk).unwrap();
        assert_eq!((ok.records, ok.checkpoints), (10, 2));

        let mut edited = lines.clone();
        edited[3] = edited[3].replace("\"p1\"", "\"p2\"");
        assert_eq!(verify(&edited, &cps, &pk), Err(Broken::Altered { seq: 4 }));

        let mut deleted = lines.clone();
        deleted.remove(6);
        assert_eq!(
            verify(&deleted, &cps, &pk),
            Err(Broken::Sequence {
                expected: 7,
                found: 8
            })
        );

        let mut inserted = lines.clone();
        inserted.insert(2, lines[2].clone());
        assert!(matches!(
            verify(&inserted, &cps, &pk),
            Err(Broken::Sequence { .. })
        ));

        let mut swapped = lines.clone();
        swapped.swap(1, 2);
        assert!(matches!(
            verify(&swapped, &cps, &pk),
            Err(Broken::Sequence { .. })
        ));

        // A rewritten, re-chained log passes the chain but not the checkpoints.
        let mut rewritten: Vec<String> = Vec::new();
        let mut prev = GENESIS.to_owned();
        for l in &lines {
            let mut r: Record = serde_json::from_str(l).unwrap();
            r.event.principal = Some("innocent".into());
            let r = Record::chain(r.seq, &prev, r.event);
            prev = r.hash.clone();
            rewritten.push(r.line());
        }
        assert_eq!(
            verify(&rewritten, &cps, &pk),
            Err(Broken::CheckpointMismatch { seq: 5 })
        );

        let cut = &lines[..8];
        assert_eq!(
            verify(cut, &cps, &pk),
            Err(Broken::Truncated { last: 8, seq: 10 })
        );
        // Without the checkpoint, a cut tail is undetectable: that is what they are for.
        assert!(verify(cut, &cps[..1], &pk).is_ok());

        let mut bad_sig = cps.clone();
        bad_sig[0].signature = "00".into();
        assert_eq!(
            verify(&lines, &bad_sig, &pk),
            Err(Broken::CheckpointSignature { seq: 5 })
        );
        assert_eq!(
            verify(["{not json"], &[], &pk),
            Err(Broken::Unparsable { line: 1 })
        );
    }
}
