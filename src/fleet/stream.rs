//! The claims stream: how journal records travel in JetStream messages, and what the stream
//! says about where shipping resumes.
//!
//! One message carries a run of consecutive records of one worker's journal, on that journal's
//! own subject ([`Names::claims_subject`]); its payload is the raw 64-byte journal records, so
//! a message checks itself (each record's CRC and sequence number) and the stream holds
//! exactly the journal's bytes. Because each subject carries one journal in order, the last
//! message on a subject says how far that journal has been shipped: the stream itself, not a
//! file beside the shipper that a crash could leave behind the truth, decides where to
//! resume. The format is documented in `seeds/FORMAT.md`; the messages as data (what a
//! payload and a subject mean) are in [`super::message`], which needs no NATS client.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use futures::StreamExt;

pub use super::message::{
    parse_subject, Batch, BatchError, StreamMessage, HDR_FIRST_SEQ, HDR_LAST_SEQ,
};
use super::Names;
use crate::journal::format::RECORD_LEN;

/// How long the stream remembers message ids (`Nats-Msg-Id`) to drop a duplicate publish. It
/// is the second line of defence only: resuming from the stream with an expected last
/// subject sequence is the first.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Errors talking to the stream; library errors, each saying what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("connecting to NATS at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("stream {stream}: {what}: {source}")]
    Api {
        stream: String,
        what: String,
        #[source]
        source: async_nats::Error,
    },
    #[error("stream {stream}: message {sequence} on {subject}: {what}")]
    BadMessage {
        stream: String,
        sequence: u64,
        subject: String,
        what: String,
    },
}

impl StreamError {
    fn api(stream: &str, what: &str, source: impl Into<async_nats::Error>) -> StreamError {
        StreamError::Api {
            stream: stream.to_string(),
            what: what.to_string(),
            source: source.into(),
        }
    }
}

impl Batch {
    /// Like [`Batch::decode`], and the headers (when present) must agree with the records.
    pub fn from_message(
        headers: Option<&HeaderMap>,
        payload: Vec<u8>,
    ) -> Result<Batch, BatchError> {
        Batch::with_headers(|name| Some(headers?.get(name)?.as_str()), payload)
    }

    /// The headers a shipper publishes this batch with: the sequence range, a message id (the
    /// subject and first sequence number, for the duplicate window) and the stream sequence
    /// of the subject's last message, which the stream checks (0: the subject has none).
    pub fn headers(&self, subject: &str, expect_last_subject_seq: u64) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HDR_FIRST_SEQ, self.first_seq.to_string().as_str());
        h.insert(HDR_LAST_SEQ, self.last_seq().to_string().as_str());
        h.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("{subject}:{}", self.first_seq).as_str(),
        );
        h.insert(
            async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            expect_last_subject_seq.to_string().as_str(),
        );
        h
    }
}

/// The stream's config when a shipper creates it: file storage, every claims subject of the
/// event, no limits (nothing is ever discarded: the stream is the paid side of the books).
pub fn stream_config(names: &Names) -> stream::Config {
    stream::Config {
        name: names.stream(),
        subjects: vec![names.claims_subjects()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::New,
        max_messages: -1,
        max_bytes: -1,
        max_age: Duration::ZERO,
        duplicate_window: DUPLICATE_WINDOW,
        num_replicas: 1,
        ..Default::default()
    }
}

/// Connects to NATS with the fleet's options: reconnect for ever, quickly (a NATS restart
/// must cost the fund flow seconds, not minutes).
pub async fn connect(url: &str) -> Result<async_nats::Client, StreamError> {
    async_nats::ConnectOptions::new()
        .name("shake")
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((attempts as u64 * 100).min(1000))
        })
        .connection_timeout(Duration::from_secs(2))
        .connect(url)
        .await
        .map_err(|source| StreamError::Connect {
            url: url.to_string(),
            source,
        })
}

/// The event's stream, created if missing.
pub async fn ensure_stream(
    js: &jetstream::Context,
    names: &Names,
) -> Result<stream::Stream, StreamError> {
    js.get_or_create_stream(stream_config(names))
        .await
        .map_err(|e| StreamError::api(&names.stream(), "get or create", e))
}

/// Where shipping of one journal resumes, as the stream says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// The journal's next record to ship: one past the last record the stream holds.
    pub next_seq: u64,
    /// The stream sequence of the subject's last message (0: none), which the next publish
    /// expects.
    pub last_subject_seq: u64,
    /// The last record the stream holds of the journal (zeros: none), to check against the
    /// journal's own before shipping after it.
    pub last_record: [u8; RECORD_LEN],
}

impl Default for Resume {
    fn default() -> Resume {
        Resume {
            next_seq: 0,
            last_subject_seq: 0,
            last_record: [0; RECORD_LEN],
        }
    }
}

/// Asks the stream for the last message on `subject`.
pub async fn resume_point(stream: &stream::Stream, subject: &str) -> Result<Resume, StreamError> {
    let name = stream.cached_info().config.name.clone();
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(m) => {
            let b = Batch::from_message(Some(&m.headers), m.payload.to_vec()).map_err(|e| {
                StreamError::BadMessage {
                    stream: name.clone(),
                    sequence: m.sequence,
                    subject: subject.to_string(),
                    what: e.to_string(),
                }
            })?;
            let mut last_record = [0; RECORD_LEN];
            last_record.copy_from_slice(&b.bytes[b.bytes.len() - RECORD_LEN..]);
            Ok(Resume {
                next_seq: b.last_seq() + 1,
                last_subject_seq: m.sequence,
                last_record,
            })
        }
        Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
            Ok(Resume::default())
        }
        Err(e) => Err(StreamError::api(
            &name,
            &format!("last message on {subject}"),
            e,
        )),
    }
}

/// Reads every message the stream holds now (up to its last sequence when the read starts),
/// in stream order, through an ordered consumer. `Ok(None)` when the stream does not exist.
pub async fn read_all(
    js: &jetstream::Context,
    names: &Names,
) -> Result<Option<Vec<StreamMessage>>, StreamError> {
    let name = names.stream();
    let mut stream = match js.get_stream(&name).await {
        Ok(s) => s,
        Err(e)
            if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(StreamError::api(&name, "get", e)),
    };
    let info = stream
        .info()
        .await
        .map_err(|e| StreamError::api(&name, "info", e))?;
    let last = info.state.last_sequence;
    let count = info.state.messages;
    let mut out = Vec::with_capacity(count as usize);
    if count == 0 {
        return Ok(Some(out));
    }
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| StreamError::api(&name, "create ordered consumer", e))?;
    let mut msgs = consumer
        .messages()
        .await
        .map_err(|e| StreamError::api(&name, "read", e))?;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), msgs.next())
            .await
            .map_err(|e| StreamError::api(&name, "read (no message for 10 s)", e))?;
        let m = match next {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(StreamError::api(&name, "read", e)),
            None => break,
        };
        let seq = m
            .info()
            .map_err(|e| StreamError::api(&name, "message info", e))?
            .stream_sequence;
        let subject = m.subject.to_string();
        out.push(StreamMessage {
            sequence: seq,
            journal: parse_subject(names, &subject),
            subject,
            batch: Batch::from_message(m.headers.as_ref(), m.payload.to_vec()),
        });
        if seq >= last {
            break;
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::message::tests::payload;

    #[test]
    fn headers_must_agree_with_the_records() {
        let b = Batch::decode(payload(3..6)).unwrap();
        let h = b.headers("s", 9);
        assert_eq!(h.get(HDR_FIRST_SEQ).unwrap().as_str(), "3");
        assert_eq!(h.get(HDR_LAST_SEQ).unwrap().as_str(), "5");
        assert_eq!(
            h.get(async_nats::header::NATS_MESSAGE_ID).unwrap().as_str(),
            "s:3"
        );
        assert!(Batch::from_message(Some(&h), b.bytes.clone()).is_ok());
        let other = Batch::decode(payload(3..7)).unwrap();
        assert!(matches!(
            Batch::from_message(Some(&h), other.bytes),
            Err(BatchError::Header {
                name: HDR_LAST_SEQ,
                ..
            })
        ));
    }
}
