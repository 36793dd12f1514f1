//! The claims stream's messages as data: a message's payload (a [`Batch`] of journal
//! records), its subject ([`parse_subject`]) and a message as read back ([`StreamMessage`]).
//!
//! Apart from [`super::stream`], which talks to NATS, so that what checks the paid side
//! ([`crate::reconcile`]) and the fuzz targets build without the NATS client (feature
//! `fleet`). Headers reach this module as plain strings; `stream` maps NATS's header map onto
//! them. The format is documented in `seeds/FORMAT.md`.

use super::Names;
use crate::journal::format::{decode, Slot, RECORD_LEN};
use crate::journal::{JournalId, JournalRecord};
use crate::le::le_u64;

/// Header: the first record's sequence number in its journal.
pub const HDR_FIRST_SEQ: &str = "Shake-First-Seq";
/// Header: the last record's sequence number.
pub const HDR_LAST_SEQ: &str = "Shake-Last-Seq";

/// Why a message's payload is not a run of records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("empty payload")]
    Empty,
    #[error("payload of {0} bytes is not a whole number of 64-byte records")]
    Length(usize),
    #[error("record {index} (seq {seq}): {what}")]
    Record {
        index: usize,
        seq: u64,
        what: &'static str,
    },
    #[error("header {name} says {header}, the records say {records}")]
    Header {
        name: &'static str,
        header: String,
        records: u64,
    },
}

/// A run of consecutive records of one journal, as one message carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub first_seq: u64,
    /// The raw records, `RECORD_LEN` bytes each, sequence numbers `first_seq..`.
    pub bytes: Vec<u8>,
}

impl Batch {
    /// Checks a payload: whole records, each valid (CRC, kind, padding) and numbered one after
    /// the other from the first one's number.
    pub fn decode(payload: Vec<u8>) -> Result<Batch, BatchError> {
        if payload.is_empty() {
            return Err(BatchError::Empty);
        }
        if payload.len() % RECORD_LEN != 0 {
            return Err(BatchError::Length(payload.len()));
        }
        let first_seq = le_u64(&payload, crate::journal::format::field::record::SEQ);
        let b = Batch {
            first_seq,
            bytes: payload,
        };
        for (i, r) in b.bytes.chunks_exact(RECORD_LEN).enumerate() {
            let seq = first_seq + i as u64;
            match decode(r, seq) {
                Slot::Record(_) => {}
                Slot::Invalid(what) => {
                    return Err(BatchError::Record {
                        index: i,
                        seq,
                        what,
                    })
                }
                Slot::Empty => {
                    return Err(BatchError::Record {
                        index: i,
                        seq,
                        what: "empty record",
                    })
                }
            }
        }
        Ok(b)
    }

    /// Like [`Batch::decode`], and the sequence headers (by name, through `header`; `None`:
    /// absent) must agree with the records.
    pub fn with_headers<'h>(
        header: impl Fn(&str) -> Option<&'h str>,
        payload: Vec<u8>,
    ) -> Result<Batch, BatchError> {
        let b = Batch::decode(payload)?;
        for (name, want) in [(HDR_FIRST_SEQ, b.first_seq), (HDR_LAST_SEQ, b.last_seq())] {
            if let Some(v) = header(name) {
                if v.parse::<u64>().ok() != Some(want) {
                    return Err(BatchError::Header {
                        name,
                        header: v.to_string(),
                        records: want,
                    });
                }
            }
        }
        Ok(b)
    }

    pub fn len(&self) -> usize {
        self.bytes.len() / RECORD_LEN
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn last_seq(&self) -> u64 {
        self.first_seq + self.len() as u64 - 1
    }

    /// The records with their raw bytes (valid: [`Batch::decode`] checked them).
    pub fn records(&self) -> impl Iterator<Item = (JournalRecord, &[u8])> + '_ {
        self.bytes
            .chunks_exact(RECORD_LEN)
            .enumerate()
            .filter_map(move |(i, r)| match decode(r, self.first_seq + i as u64) {
                Slot::Record(rec) => Some((rec, r)),
                _ => None,
            })
    }
}

/// Parses a claims subject back into the journal it carries.
pub fn parse_subject(names: &Names, subject: &str) -> Option<JournalId> {
    let all = names.claims_subjects();
    let prefix = all.strip_suffix('>')?;
    let mut it = subject.strip_prefix(prefix)?.split('.');
    let mut num = || it.next()?.parse::<u32>().ok();
    let id = JournalId {
        activity_id: num()?,
        node: num()?,
        worker: num()?,
    };
    (it.next().is_none()).then_some(id)
}

/// One message of the stream.
#[derive(Debug, Clone)]
pub struct StreamMessage {
    /// The stream sequence.
    pub sequence: u64,
    pub subject: String,
    /// The journal the subject names (`None`: not a claims subject of this event).
    pub journal: Option<JournalId>,
    /// The records, or why the payload is not a run of records.
    pub batch: Result<Batch, BatchError>,
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::journal::format::{encode, Kind};
    use crate::journal::Claim;

    fn rec(seq: u64) -> [u8; RECORD_LEN] {
        encode(
            seq,
            if seq % 5 == 4 {
                Kind::Forfeit
            } else {
                Kind::Claim
            },
            &Claim {
                packet_id: 1000 + seq,
                user_id: 7,
                amount_cents: 100,
                sponsor_id: 1,
                round_id: 1,
                time_ms: 1,
            },
        )
    }

    pub(in crate::fleet) fn payload(seqs: impl Iterator<Item = u64>) -> Vec<u8> {
        seqs.flat_map(rec).collect()
    }

    #[test]
    fn a_batch_checks_every_record() {
        let b = Batch::decode(payload(10..20)).unwrap();
        assert_eq!((b.first_seq, b.last_seq(), b.len()), (10, 19, 10));
        assert_eq!(b.records().count(), 10);
        assert_eq!(Batch::decode(Vec::new()), Err(BatchError::Empty));
        assert_eq!(Batch::decode(vec![1u8; 65]), Err(BatchError::Length(65)));
        // A gap: 12 follows 10.
        let gap = payload([10, 12].into_iter());
        assert!(matches!(
            Batch::decode(gap),
            Err(BatchError::Record {
                index: 1,
                seq: 11,
                ..
            })
        ));
        let mut torn = payload(0..3);
        torn[RECORD_LEN + 3] ^= 1;
        assert!(matches!(
            Batch::decode(torn),
            Err(BatchError::Record { index: 1, .. })
        ));
        let mut zero = payload(0..2);
        zero[RECORD_LEN..].fill(0);
        assert!(matches!(
            Batch::decode(zero),
            Err(BatchError::Record { index: 1, .. })
        ));
    }

    #[test]
    fn subjects_parse_back() {
        let n = Names::new("ev");
        let id = JournalId {
            activity_id: 4,
            node: 17,
            worker: 3,
        };
        assert_eq!(parse_subject(&n, &n.claims_subject(4, 17, 3)), Some(id));
        assert_eq!(parse_subject(&n, "shake.ev.claims.4.17"), None);
        assert_eq!(parse_subject(&n, "shake.ev.claims.4.17.3.1"), None);
        assert_eq!(parse_subject(&n, "shake.other.claims.4.17.3"), None);
    }
}
