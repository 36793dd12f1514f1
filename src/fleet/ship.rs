//! The shipper (`shake ship`): every worker journal of a node, published to the event's claims
//! stream exactly once.
//!
//! It is a service of its own beside the node, not a thread of it: it survives a node's
//! SIGKILL and recovery, ships a stopped node's journals, restarts on its own, and keeps every
//! network client out of the process whose lcores serve packets. It only reads the journals.
//!
//! Exactly once comes from the stream, not from the shipper's memory nor from the duplicate
//! window. One subject per worker journal; one message carries a run of consecutive records;
//! so the last message on a subject says how far that journal is shipped. At start and after
//! any publish error, a journal's task asks the stream for that last message and resumes one
//! record after it, publishing with `Nats-Expected-Last-Subject-Sequence` set to that message's
//! stream sequence. The stream refuses a publish whose expectation is stale, so a publish that
//! landed although its acknowledgement was lost (or that the client library resent after a
//! reconnect, or that a second shipper made) can never be followed by a second copy of the same
//! records: the refused publisher re-derives and goes on from what the stream holds. With one
//! message in flight per subject there is never more than one candidate for the next position.
//! `Nats-Msg-Id` (subject and first sequence number) is belt and braces.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, context::Publish, context::PublishErrorKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::follow::Follower;
use super::stream::{ensure_stream, resume_point, Batch, Resume};
use super::Names;
use crate::journal::format::{worker_dir, JournalId, RECORD_LEN};
use crate::journal::reader::list_segments;

/// What the shipper needs to know.
#[derive(Debug, Clone)]
pub struct ShipConfig {
    pub names: Names,
    /// The node's journal root (`[activity] journal`): `worker-<w>/seg-*.jnl`.
    pub journal: PathBuf,
    pub nats: String,
    /// Most records per message.
    pub batch: usize,
    /// How often an idle journal is looked at again.
    pub poll: Duration,
    /// Most records read ahead per journal.
    pub read_ahead: usize,
}

impl ShipConfig {
    pub fn new(names: Names, journal: PathBuf, nats: String) -> ShipConfig {
        ShipConfig {
            names,
            journal,
            nats,
            batch: 512,
            poll: Duration::from_millis(2),
            read_ahead: 1 << 16,
        }
    }
}

/// One journal's gauges.
#[derive(Debug, Default, Clone, Copy)]
pub struct WorkerGauges {
    pub records: u64,
    pub lag_records: u64,
    pub lag_seconds: f64,
    /// The next record to ship (what the stream holds of this journal).
    pub shipped_to: u64,
}

/// The shipper's counters, for its metrics endpoint and its status line.
#[derive(Debug, Default)]
pub struct ShipMetrics {
    pub workers: Mutex<BTreeMap<u32, WorkerGauges>>,
    pub connected: AtomicBool,
    pub errors: Mutex<BTreeMap<&'static str, u64>>,
    pub messages: AtomicU64,
}

impl ShipMetrics {
    fn error(&self, kind: &'static str) {
        *self.errors.lock().unwrap().entry(kind).or_default() += 1;
    }

    fn worker(&self, w: u32, f: impl FnOnce(&mut WorkerGauges)) {
        f(self.workers.lock().unwrap().entry(w).or_default());
    }

    /// Prometheus text.
    pub fn prometheus(&self) -> String {
        let mut out = String::from(
            "# TYPE shake_ship_records_total counter\n# TYPE shake_ship_lag_records gauge\n\
             # TYPE shake_ship_lag_seconds gauge\n# TYPE shake_ship_connected gauge\n\
             # TYPE shake_ship_errors_total counter\n",
        );
        for (w, g) in self.workers.lock().unwrap().iter() {
            out += &format!(
                "shake_ship_records_total{{worker=\"{w}\"}} {}\nshake_ship_lag_records{{worker=\"{w}\"}} {}\nshake_ship_lag_seconds{{worker=\"{w}\"}} {:.3}\n",
                g.records, g.lag_records, g.lag_seconds
            );
        }
        out += &format!(
            "shake_ship_connected {}\n",
            self.connected.load(Ordering::Relaxed) as u8
        );
        for (k, n) in self.errors.lock().unwrap().iter() {
            out += &format!("shake_ship_errors_total{{kind=\"{k}\"}} {n}\n");
        }
        out
    }

    /// One status line.
    pub fn line(&self) -> String {
        let w = self.workers.lock().unwrap();
        let records: u64 = w.values().map(|g| g.records).sum();
        let lag: u64 = w.values().map(|g| g.lag_records).sum();
        let lag_s = w.values().map(|g| g.lag_seconds).fold(0.0, f64::max);
        let errors: u64 = self.errors.lock().unwrap().values().sum();
        format!(
            "ship journals={} records={records} messages={} lag_records={lag} lag_seconds={lag_s:.3} connected={} errors={errors}",
            w.len(),
            self.messages.load(Ordering::Relaxed),
            self.connected.load(Ordering::Relaxed) as u8,
        )
    }
}

/// Worker journals under `root`: `worker-<w>` directories holding a segment, with the id
/// their first segment names.
pub fn journals(root: &Path) -> Vec<(JournalId, PathBuf)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(root) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(w) = name
            .to_str()
            .and_then(|n| n.strip_prefix("worker-"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = worker_dir(root, w);
        if let Ok(segs) = list_segments(&dir, None) {
            if let Some(s) = segs.first() {
                out.push((s.header.id, dir));
            }
        }
    }
    out.sort_by_key(|(id, _)| id.worker);
    out
}

/// Runs the shipper until `stop` is set: connects (retrying), creates the stream if missing,
/// and ships every worker journal found under the root (looking for new ones as it goes).
pub async fn run(cfg: ShipConfig, metrics: Arc<ShipMetrics>, stop: Arc<AtomicBool>) {
    let client = loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        match super::stream::connect(&cfg.nats).await {
            Ok(c) => break c,
            Err(e) => {
                metrics.error("connect");
                eprintln!("shake ship: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let mut js = jetstream::new(client.clone());
    js.set_timeout(Duration::from_secs(2));
    {
        let m = metrics.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                m.connected.store(
                    client.connection_state() == async_nats::connection::State::Connected,
                    Ordering::Relaxed,
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
    let mut tasks: BTreeMap<u32, tokio::task::JoinHandle<()>> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        for (id, dir) in journals(&cfg.journal) {
            if tasks.contains_key(&id.worker) {
                continue;
            }
            let job = Journal {
                subject: cfg.names.claims_subject(id.activity_id, id.node, id.worker),
                worker: id.worker,
                dir,
                cfg: cfg.clone(),
                js: js.clone(),
                metrics: metrics.clone(),
                stop: stop.clone(),
            };
            metrics.worker(id.worker, |_| {});
            tasks.insert(id.worker, tokio::spawn(job.run()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (_, t) in tasks {
        let _ = t.await;
    }
}

/// One worker journal's shipping task.
struct Journal {
    subject: String,
    worker: u32,
    dir: PathBuf,
    cfg: ShipConfig,
    js: jetstream::Context,
    metrics: Arc<ShipMetrics>,
    stop: Arc<AtomicBool>,
}

/// What went wrong in one step; the task counts it by kind, then re-derives from the stream.
enum Step {
    Shipped,
    Idle,
    Retry(&'static str, Option<String>),
}

impl Journal {
    async fn run(self) {
        let mut follower = Some(Follower::new(&self.dir, self.cfg.read_ahead));
        let mut stream: Option<jetstream::stream::Stream> = None;
        let mut at: Option<Resume> = None;
        let mut backoff = Duration::ZERO;
        let mut last_said = String::new();
        while !self.stop.load(Ordering::Relaxed) {
            let step = self.step(&mut follower, &mut stream, &mut at).await;
            match step {
                Step::Shipped => backoff = Duration::ZERO,
                Step::Idle => tokio::time::sleep(self.cfg.poll).await,
                Step::Retry(kind, why) => {
                    self.metrics.error(kind);
                    if let Some(why) = why {
                        // Said once per kind of trouble, not once per retry.
                        if why != last_said {
                            eprintln!("shake ship: {}: {why}", self.subject);
                            last_said = why;
                        }
                    }
                    at = None;
                    if kind == "no_stream" {
                        stream = None;
                    }
                    // A refused expectation is news, not trouble: re-derive at once.
                    if kind != "wrong_last_sequence" && kind != "duplicate" {
                        backoff =
                            (backoff * 2).clamp(Duration::from_millis(50), Duration::from_secs(1));
                        tokio::time::sleep(backoff).await;
                    }
                }
            }
        }
    }

    async fn step(
        &self,
        follower: &mut Option<Follower>,
        stream: &mut Option<jetstream::stream::Stream>,
        at: &mut Option<Resume>,
    ) -> Step {
        if stream.is_none() {
            match ensure_stream(&self.js, &self.cfg.names).await {
                Ok(s) => *stream = Some(s),
                Err(e) => return Step::Retry("stream", Some(e.to_string())),
            }
        }
        let Some(s) = stream.as_ref() else {
            return Step::Idle;
        };
        // Where the stream says this journal is.
        if at.is_none() {
            let r = match resume_point(s, &self.subject).await {
                Ok(r) => r,
                Err(e) => return Step::Retry("resume", Some(e.to_string())),
            };
            let mut f = follower.take().expect("follower is put back");
            let (f, checked) = tokio::task::spawn_blocking(move || {
                f.seek(r.next_seq);
                let c = match r.next_seq.checked_sub(1) {
                    None => Ok(true),
                    Some(last) => f.record_at(last).map(|j| j == Some(r.last_record)),
                };
                (f, c)
            })
            .await
            .expect("follower task");
            *follower = Some(f);
            match checked {
                Ok(true) => {}
                // The stream holds a record this journal does not (yet): a journal from
                // another run under the same event name, or a journal replaced. Never ship
                // over it: say so and keep checking.
                Ok(false) => {
                    return Step::Retry(
                        "stream_ahead",
                        Some(format!(
                            "the stream's record {} of this journal is not the journal's own: not shipping",
                            r.next_seq - 1
                        )),
                    )
                }
                Err(e) => return Step::Retry("journal", Some(e.to_string())),
            }
            self.metrics
                .worker(self.worker, |g| g.shipped_to = r.next_seq);
            *at = Some(r);
        }
        let mut f = follower.take().expect("follower is put back");
        let (f, filled) = tokio::task::spawn_blocking(move || {
            let r = f.fill();
            (f, r)
        })
        .await
        .expect("follower task");
        let f = follower.insert(f);
        if let Err(e) = filled {
            return Step::Retry("journal", Some(e.to_string()));
        }
        let lag_s = f
            .oldest_time_ms()
            .map(|t| crate::time::unix_ms().saturating_sub(t) as f64 / 1e3)
            .unwrap_or(0.0);
        let buffered = f.buffered();
        self.metrics.worker(self.worker, |g| {
            g.lag_records = buffered as u64;
            g.lag_seconds = lag_s;
        });
        if buffered == 0 {
            return Step::Idle;
        }
        let r = at.as_mut().expect("derived above");
        let n = buffered.min(self.cfg.batch);
        let batch = Batch {
            first_seq: f.start(),
            bytes: f.peek(n).to_vec(),
        };
        debug_assert_eq!(batch.first_seq, r.next_seq);
        let headers = batch.headers(&self.subject, r.last_subject_seq);
        let publish = Publish::build()
            .payload(batch.bytes.into())
            .headers(headers);
        let ack = match self.js.send_publish(self.subject.clone(), publish).await {
            Ok(fut) => fut.await,
            Err(e) => Err(e),
        };
        match ack {
            Ok(a) if a.duplicate => Step::Retry("duplicate", None),
            Ok(a) => {
                r.last_subject_seq = a.sequence;
                r.next_seq += n as u64;
                r.last_record
                    .copy_from_slice(&f.peek(n)[(n - 1) * RECORD_LEN..]);
                f.consume(n);
                self.metrics.messages.fetch_add(1, Ordering::Relaxed);
                let left = f.buffered() as u64;
                self.metrics.worker(self.worker, |g| {
                    g.records += n as u64;
                    g.lag_records = left;
                    g.shipped_to = r.next_seq;
                });
                Step::Shipped
            }
            Err(e) => {
                let kind = match e.kind() {
                    PublishErrorKind::WrongLastSequence => "wrong_last_sequence",
                    PublishErrorKind::StreamNotFound => "no_stream",
                    PublishErrorKind::TimedOut => "timeout",
                    _ => "publish",
                };
                let why = (kind != "wrong_last_sequence").then(|| e.to_string());
                Step::Retry(kind, why)
            }
        }
    }
}

/// Serves the metrics as Prometheus text on `listener` until `stop` is set.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: Arc<ShipMetrics>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        let Ok(Ok((mut conn, _))) = accepted else {
            continue;
        };
        let body = metrics.prometheus();
        tokio::spawn(async move {
            let mut req = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_millis(500), conn.read(&mut req)).await;
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(resp.as_bytes()).await;
        });
    }
}

/// Binds the metrics endpoint (a port in use is a start-up error).
pub async fn bind_metrics(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}
