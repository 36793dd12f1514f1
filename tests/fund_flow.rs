//! The fund flow: claim journals shipped to NATS JetStream exactly once (`shake ship`), and
//! `shake reconcile --stream` reading the stream as the paid side.
//!
//! Every test runs a real nats-server (Debian's, with JetStream) on loopback and checks the
//! stream itself against the journals: per worker journal, the records of its subject are the
//! journal's records 0, 1, 2, ... with the same bytes, each exactly once.
#![cfg(feature = "fleet")]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::UdpSocket;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use common::engines::Engine;
use common::{run_ok, seedgen, shake_bin, unix_s, NodeDir, NodeToml, Server, CLAIM_KEY, TOKEN_KEY};
use shake::client;
use shake::fleet::ship::{self, ShipConfig, ShipMetrics};
use shake::fleet::stream::{read_all, resume_point, stream_config, Batch};
use shake::fleet::Names;
use shake::journal::format::{encode, segment_name, worker_dir, HEADER_LEN, RECORD_LEN};
use shake::journal::{
    open_journal, Claim, ClaimSink, JournalConfig, JournalId, JournalReader, Kind, TailPolicy,
};
use shake::wire::shake::Outcome;

type Raw = [u8; RECORD_LEN];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn js(rt: &tokio::runtime::Runtime, url: &str) -> jetstream::Context {
    rt.block_on(async {
        let c = shake::fleet::stream::connect(url).await.unwrap();
        jetstream::new(c)
    })
}

/// Waits for `cond`, up to `within`; panics naming `what` (and `why()`) after that.
fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not after {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every record of a worker journal directory, raw.
fn journal_records(dir: &Path) -> Vec<Raw> {
    let mut r = JournalReader::open_dir(dir, None, TailPolicy::Strict)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut out = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        out.push(encode(rec.seq, rec.kind, &rec.claim));
    }
    out
}

/// What the stream holds, per (node, worker): (seq, record) in stream order.
fn stream_records(
    rt: &tokio::runtime::Runtime,
    js: &jetstream::Context,
    names: &Names,
) -> BTreeMap<(u32, u32), Vec<(u64, Raw)>> {
    let msgs = rt
        .block_on(read_all(js, names))
        .unwrap()
        .expect("the stream exists");
    let mut out: BTreeMap<(u32, u32), Vec<(u64, Raw)>> = BTreeMap::new();
    for m in msgs {
        let id = m.journal.unwrap_or_else(|| panic!("subject {}", m.subject));
        let b = m
            .batch
            .unwrap_or_else(|e| panic!("message {}: {e}", m.sequence));
        for (r, bytes) in b.records() {
            out.entry((id.node, id.worker))
                .or_default()
                .push((r.seq, bytes.try_into().unwrap()));
        }
    }
    out
}

/// The stream holds each journal's records exactly once, in order, with the same bytes.
fn assert_exactly_once(
    stream: &BTreeMap<(u32, u32), Vec<(u64, Raw)>>,
    journals: &[((u32, u32), Vec<Raw>)],
) {
    for (key, recs) in journals {
        let held = stream.get(key).map(Vec::as_slice).unwrap_or_default();
        let mut count: HashMap<u64, usize> = HashMap::new();
        for (seq, _) in held {
            *count.entry(*seq).or_default() += 1;
        }
        let mut twice: Vec<_> = count
            .iter()
            .filter(|(_, &n)| n > 1)
            .map(|(s, _)| *s)
            .collect();
        twice.sort_unstable();
        twice.truncate(20);
        assert!(
            twice.is_empty(),
            "{key:?}: records in the stream more than once (the first 20): {twice:?}"
        );
        let missing = (0..recs.len() as u64)
            .filter(|s| !count.contains_key(s))
            .count();
        assert_eq!(
            missing, 0,
            "{key:?}: {missing} journal records not in the stream"
        );
        assert_eq!(
            held.len(),
            recs.len(),
            "{key:?}: records beyond the journal's end"
        );
        for (i, (seq, b)) in held.iter().enumerate() {
            assert_eq!(*seq, i as u64, "{key:?}: out of order at {i}");
            assert_eq!(
                b, &recs[i],
                "{key:?}: record {i} differs from the journal's"
            );
        }
    }
    let keys: Vec<_> = journals.iter().map(|(k, _)| *k).collect();
    for k in stream.keys() {
        assert!(
            keys.contains(k),
            "stream holds records of {k:?}, which has no journal"
        );
    }
}

/// How far the stream holds a journal: the next record to ship (0 if no stream yet).
fn shipped_to(
    rt: &tokio::runtime::Runtime,
    js: &jetstream::Context,
    names: &Names,
    subject: &str,
) -> u64 {
    rt.block_on(async {
        match js.get_stream(names.stream()).await {
            Ok(s) => resume_point(&s, subject).await.unwrap().next_seq,
            Err(_) => 0,
        }
    })
}

/// Creates the stream as a shipper would, but with the shortest duplicate window NATS allows (100 ms): the
/// `Nats-Msg-Id` safety net is then out of play, and only resuming from the stream with an
/// expected last subject sequence keeps shipping exactly once.
fn create_stream_without_dedup(
    rt: &tokio::runtime::Runtime,
    js: &jetstream::Context,
    names: &Names,
) {
    let mut c = stream_config(names);
    c.duplicate_window = Duration::from_millis(100);
    rt.block_on(js.create_stream(c)).unwrap();
}

fn claim(i: u64) -> Claim {
    Claim {
        packet_id: 10_000 + i,
        user_id: i * 7,
        amount_cents: 1 + (i % 300) as u32,
        sponsor_id: 1 + (i % 2) as u32,
        round_id: 1,
        time_ms: 1_700_000_000_000 + i,
    }
}

fn jid(worker: u32) -> JournalId {
    JournalId {
        activity_id: 5,
        node: 3,
        worker,
    }
}

/// An in-process shipper on its own runtime; stopped on drop.
struct InProcess {
    stop: Arc<AtomicBool>,
    metrics: Arc<ShipMetrics>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl InProcess {
    fn start(
        rt: &tokio::runtime::Runtime,
        names: &Names,
        root: &Path,
        url: &str,
        batch: usize,
    ) -> InProcess {
        let mut cfg = ShipConfig::new(names.clone(), root.to_path_buf(), url.to_string());
        cfg.batch = batch;
        let stop = Arc::new(AtomicBool::new(false));
        let metrics = Arc::new(ShipMetrics::default());
        let handle = rt.spawn(ship::run(cfg, metrics.clone(), stop.clone()));
        InProcess {
            stop,
            metrics,
            handle: Some(handle),
        }
    }

    fn stop(mut self, rt: &tokio::runtime::Runtime) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            rt.block_on(h).unwrap();
        }
    }

    fn errors(&self, kind: &str) -> u64 {
        self.metrics
            .errors
            .lock()
            .unwrap()
            .get(kind)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// (a) A journal being appended while it is shipped, with a half-written record at the live
/// end before every append (what a reader sees in the middle of the worker's 64-byte copy)
/// and segments rotating under the follower: the stream gets exactly the journal's records,
/// never a torn or not-yet-written one, and nothing is skipped.
#[test]
fn the_follower_ships_only_whole_records_of_a_live_journal() {
    let nats = Engine::nats();
    let rt = runtime();
    let js = js(&rt, &nats.url());
    let names = Names::new("ff-a");
    let root = tempfile::tempdir().unwrap();
    let dir = worker_dir(root.path(), 0);
    let seg_records = 700u64;
    let (mut w, mut fl, _) = open_journal(
        &dir,
        jid(0),
        JournalConfig {
            segment_records: seg_records,
        },
        TailPolicy::Strict,
        |_| {},
    )
    .unwrap();
    let shipper = InProcess::start(&rt, &names, root.path(), &nats.url(), 64);
    const N: u64 = 5_000;
    for i in 0..N {
        // The next slot, half-written: the record's first 40 bytes, the rest (CRC) not yet.
        let seg = dir.join(segment_name(i / seg_records));
        if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&seg) {
            let at = HEADER_LEN as u64 + (i % seg_records) * RECORD_LEN as u64;
            f.write_all_at(&encode(i, Kind::Claim, &claim(i))[..40], at)
                .unwrap();
        }
        if i % 10 == 0 {
            // Give the shipper a look at the torn slot now and then.
            std::thread::yield_now();
        }
        let kind = if i % 97 == 3 {
            Kind::Forfeit
        } else {
            Kind::Claim
        };
        w.append_kind(kind, &claim(i)).unwrap();
        if i % 50 == 0 {
            fl.flush().unwrap();
        }
    }
    fl.flush().unwrap();
    let subject = names.claims_subject(5, 3, 0);
    wait_until(Duration::from_secs(30), "shipper catches up", || {
        shipped_to(&rt, &js, &names, &subject) == N
    });
    shipper.stop(&rt);
    let stream = stream_records(&rt, &js, &names);
    assert_exactly_once(&stream, &[((3, 0), journal_records(&dir))]);
}

/// Appends `n` records (every tenth a forfeit) to a fresh journal of `worker` under `root`.
fn write_journal(root: &Path, worker: u32, n: u64) -> PathBuf {
    let dir = worker_dir(root, worker);
    let (mut w, fl, _) = open_journal(
        &dir,
        jid(worker),
        JournalConfig::default(),
        TailPolicy::Strict,
        |_| {},
    )
    .unwrap();
    for i in 0..n {
        let kind = if i % 10 == 9 {
            Kind::Forfeit
        } else {
            Kind::Claim
        };
        w.append_kind(kind, &claim(i + worker as u64 * 1_000_000))
            .unwrap();
    }
    fl.close(w).unwrap();
    dir
}

/// Publishes records `from..=to` of `recs` as one message the way a publish that landed but
/// whose acknowledgement was lost left it, without a message id (so no duplicate window can
/// hide a resend).
fn publish_raw(
    rt: &tokio::runtime::Runtime,
    js: &jetstream::Context,
    subject: &str,
    recs: &[Raw],
    from: usize,
    to: usize,
) -> u64 {
    let payload: Vec<u8> = recs[from..=to].iter().flatten().copied().collect();
    assert_eq!(
        Batch::decode(payload.clone()).unwrap().first_seq,
        from as u64
    );
    rt.block_on(async {
        js.publish(subject.to_string(), payload.into())
            .await
            .unwrap()
            .await
            .unwrap()
            .sequence
    })
}

/// (c) The stream holds messages the shipper never saw acknowledged (published, ack lost):
/// the shipper resumes after them and sends none of their records again. And a stream that
/// holds another journal's records under the same subject is never shipped over.
#[test]
fn a_publish_whose_ack_was_lost_is_not_shipped_twice() {
    let nats = Engine::nats();
    let rt = runtime();
    let js = js(&rt, &nats.url());
    let names = Names::new("ff-c");
    create_stream_without_dedup(&rt, &js, &names);
    let root = tempfile::tempdir().unwrap();
    let d0 = write_journal(root.path(), 0, 300);
    let r0 = journal_records(&d0);
    let s0 = names.claims_subject(5, 3, 0);
    publish_raw(&rt, &js, &s0, &r0, 0, 99);
    let before_141 = publish_raw(&rt, &js, &s0, &r0, 100, 140);
    // Worker 1: the stream holds a record 9 that is not this journal's.
    let d1 = write_journal(root.path(), 1, 50);
    let s1 = names.claims_subject(5, 3, 1);
    let foreign: Vec<Raw> = (0..10)
        .map(|i| encode(i, Kind::Claim, &claim(999_000 + i)))
        .collect();
    let foreign_seq = publish_raw(&rt, &js, &s1, &foreign, 0, 9);

    let shipper = InProcess::start(&rt, &names, root.path(), &nats.url(), 64);
    wait_until(Duration::from_secs(20), "worker 0 shipped", || {
        shipped_to(&rt, &js, &names, &s0) == 300
    });
    wait_until(Duration::from_secs(20), "worker 1 refused", || {
        shipper.errors("stream_ahead") > 0
    });
    // Started again (a restart with nothing new): still nothing twice.
    shipper.stop(&rt);
    let shipper = InProcess::start(&rt, &names, root.path(), &nats.url(), 64);
    wait_until(Duration::from_secs(20), "restarted shipper looked", || {
        shipper.errors("stream_ahead") > 0
    });
    shipper.stop(&rt);
    let w1 = stream_records(&rt, &js, &names).remove(&(3, 1)).unwrap();
    assert_eq!(
        w1,
        foreign
            .iter()
            .enumerate()
            .map(|(i, r)| (i as u64, *r))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        rt.block_on(async {
            resume_point(&js.get_stream(names.stream()).await.unwrap(), &s1)
                .await
                .unwrap()
        })
        .last_subject_seq,
        foreign_seq,
        "nothing shipped after the foreign record"
    );
    // A stale publish of records the stream already holds, sent long after (a client's resend
    // after a reconnect, a shipper that was not quite dead), with the headers a shipper builds
    // from its stale view, and a message id the duplicate window no longer knows: only the
    // expected last subject sequence stands between it and a second copy. The stream refuses.
    let stale = Batch::decode(r0[141..=160].iter().flatten().copied().collect()).unwrap();
    let mut h = stale.headers(&s0, before_141);
    h.insert(async_nats::header::NATS_MESSAGE_ID, "expired-window");
    let refused = rt.block_on(async {
        js.publish_with_headers(s0.clone(), h, stale.bytes.clone().into())
            .await
            .unwrap()
            .await
    });
    assert_eq!(
        refused.map(|a| a.sequence).map_err(|e| e.kind()),
        Err(jetstream::context::PublishErrorKind::WrongLastSequence)
    );
    let claims = r0.iter().filter(|r| r[44] == Kind::Claim as u8).count() + foreign.len();
    let mut stream = stream_records(&rt, &js, &names);
    stream.remove(&(3, 1));
    assert_exactly_once(&stream, &[((3, 0), r0)]);
    let _ = d1;

    // The example consumer pays every claim once, acknowledging as it goes; run again, it
    // finds nothing new.
    let out = root.path().join("paid.txt");
    let pay = || {
        run_ok(
            Command::new(shake_bin())
                .args([
                    "pay",
                    "--nats",
                    &nats.url(),
                    "--fleet-name",
                    "ff-c",
                    "--idle-ms",
                    "1000",
                ])
                .arg("--out")
                .arg(&out),
        )
    };
    pay();
    let lines = std::fs::read_to_string(&out).unwrap();
    assert_eq!(lines.lines().count(), claims, "{lines}");
    let mut ids: Vec<&str> = lines
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), claims, "a packet paid twice");
    pay();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), lines);
}

/// (d) Two shippers for one journal at once (an operator's mistake, or a shipper that is not
/// quite dead), while the journal grows, with the duplicate window out of play: the expected
/// last subject sequence alone keeps every record exactly once.
#[test]
fn two_shippers_at_once_ship_each_record_once() {
    let nats = Engine::nats();
    let rt = runtime();
    let js = js(&rt, &nats.url());
    let names = Names::new("ff-d");
    create_stream_without_dedup(&rt, &js, &names);
    let root = tempfile::tempdir().unwrap();
    let dir = worker_dir(root.path(), 0);
    let (mut w, mut fl, _) = open_journal(
        &dir,
        jid(0),
        JournalConfig::default(),
        TailPolicy::Strict,
        |_| {},
    )
    .unwrap();
    // Different batch sizes: the two shippers' messages start at different records.
    let a = InProcess::start(&rt, &names, root.path(), &nats.url(), 7);
    let b = InProcess::start(&rt, &names, root.path(), &nats.url(), 13);
    const N: u64 = 3_000;
    for i in 0..N {
        w.append(&claim(i)).unwrap();
        if i % 20 == 0 {
            fl.flush().unwrap();
            std::thread::yield_now();
        }
    }
    fl.close(w).unwrap();
    let subject = names.claims_subject(5, 3, 0);
    wait_until(Duration::from_secs(30), "shippers catch up", || {
        shipped_to(&rt, &js, &names, &subject) == N
    });
    let raced = a.errors("wrong_last_sequence") + b.errors("wrong_last_sequence");
    eprintln!("a: {}", a.metrics.line());
    eprintln!("b: {}", b.metrics.line());
    eprintln!(
        "a: {:?} b: {:?}",
        a.metrics.errors.lock().unwrap(),
        b.metrics.errors.lock().unwrap()
    );
    a.stop(&rt);
    b.stop(&rt);
    let stream = stream_records(&rt, &js, &names);
    assert_exactly_once(&stream, &[((3, 0), journal_records(&dir))]);
    eprintln!("two shippers: {raced} publishes refused by the expectation");
}

// ---------------------------------------------------------------------------------------
// (b) Exactly once under load, with the shipper, the node and nats-server killed.

const USERS: u64 = 20_000;

/// Sends shakes of all users until `answers` answers arrived (or 10 s); returns the red
/// packets answered.
fn load(server: &Server, answers: usize, seq: &mut u32) -> usize {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let expiry = (unix_s() + 3600) as u32;
    let (mut got, mut won) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut sent = HashMap::new();
    'outer: while got < answers && Instant::now() < deadline {
        for _ in 0..64 {
            *seq += 1;
            let user = (*seq as u64 * 7919) % USERS;
            let r = client::request(&TOKEN_KEY, user, *seq, expiry, 0);
            sent.insert((user, *seq), r);
            s.send_to(&client::payload(&r), server.udp).unwrap();
        }
        let mut buf = [0u8; 128];
        for _ in 0..64 {
            let Ok((n, _)) = s.recv_from(&mut buf) else {
                continue 'outer;
            };
            let user = u64::from_be_bytes(buf[8..16].try_into().unwrap());
            let sq = u32::from_be_bytes(buf[16..20].try_into().unwrap());
            let Some(r) = sent.remove(&(user, sq)) else {
                continue;
            };
            let a = client::check_answer(&r, &buf[..n], &CLAIM_KEY).unwrap();
            won += (a.outcome == Outcome::RedPacket) as usize;
            got += 1;
        }
    }
    won
}

fn start_shipper(config: &Path) -> Child {
    Command::new(shake_bin())
        .args(["ship", "--interval-s", "0", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start shake ship")
}

#[derive(Debug, Clone, Copy)]
enum Chaos {
    KillShipper,
    KillNode,
    StopNats,
    KillNats,
}

#[test]
fn exactly_once_through_kills_of_shipper_node_and_nats() {
    let mut nats = Engine::nats();
    let node = NodeDir::with_activity(&format!(
        r#"
[activity]
id = 41
name = "fund flow"
epoch = {}
[limits]
per_user = 3
per_sponsor = 1
[[sponsor]]
id = 1
budget_cents = 2000000
packets = 20000
min_cents = 10
max_cents = 190
[[sponsor]]
id = 2
budget_cents = 1000000
packets = 20000
min_cents = 5
max_cents = 95
[[round]]
id = 1
start_s = 0
duration_s = 60
win_probability = 0.5
greeting_probability = 0.2
"#,
        unix_s()
    ));
    let p = node.path();
    let config = NodeToml::new("127.0.0.1", 100_000)
        .port(0)
        .activity(r#"seeds = "seeds""#)
        .activity(r#"journal = "journal""#)
        .extra("[throttle]\nfloor_ms = 1\nceiling_ms = 2\n")
        .extra(&format!(
            "[fleet]\nname = \"ff-b\"\nnats = \"{}\"\n",
            nats.url()
        ))
        .write(p);
    seedgen(p, 2, 9);
    let names = Names::new("ff-b");
    let rt = runtime();

    // 20 shipper kills, 10 node kills, 5 nats-server stops (3 SIGTERM, 2 SIGKILL), shuffled.
    let mut chaos: Vec<Chaos> = [
        vec![Chaos::KillShipper; 20],
        vec![Chaos::KillNode; 10],
        vec![Chaos::StopNats; 3],
        vec![Chaos::KillNats; 2],
    ]
    .concat();
    let mut rng = shake::rng::Rng::new(2027);
    for i in (1..chaos.len()).rev() {
        chaos.swap(i, rng.below(i as u64 + 1) as usize);
    }

    let subjects: Vec<String> = (0..2).map(|w| names.claims_subject(41, 0, w)).collect();
    let shipped = |js: &jetstream::Context| -> u64 {
        subjects
            .iter()
            .map(|s| shipped_to(&rt, js, &names, s))
            .sum()
    };
    let mut server = Server::start_socket_with(&config, None);
    let mut shipper = start_shipper(&config);
    let (mut seq, mut won) = (0u32, 0usize);
    let mut before = 0;
    for c in &chaos {
        won += load(&server, 100 + rng.below(500) as usize, &mut seq);
        match c {
            Chaos::KillShipper => {
                // Killed while shipping: this shipper's life has put something in the stream
                // (the load above journaled new claims).
                let js = js(&rt, &nats.url());
                wait_until(Duration::from_secs(15), "the shipper ships", || {
                    shipped(&js) > before
                });
                before = shipped(&js);
                shipper.kill().unwrap(); // SIGKILL
                shipper.wait().unwrap();
                shipper = start_shipper(&config);
            }
            Chaos::KillNode => {
                server.child.kill().unwrap();
                server.child.wait().unwrap();
                server = Server::start_socket_with(&config, None);
            }
            Chaos::StopNats | Chaos::KillNats => {
                if matches!(c, Chaos::StopNats) {
                    nats.stop();
                } else {
                    nats.kill();
                }
                // Claims keep coming while the stream is away.
                won += load(&server, 200, &mut seq);
                nats.start_again();
            }
        }
    }
    won += load(&server, 300, &mut seq);
    let (status, _) = server.stop();
    assert!(status.success());
    assert!(won > 200, "only {won} red packets were won");

    // The shipper catches up with what the node journaled.
    let journals: Vec<((u32, u32), Vec<Raw>)> = (0..2)
        .map(|w| ((0, w), journal_records(&worker_dir(&p.join("journal"), w))))
        .collect();
    let js = js(&rt, &nats.url());
    for ((_, w), recs) in &journals {
        let subject = names.claims_subject(41, 0, *w);
        wait_until(Duration::from_secs(30), "shipper catches up", || {
            shipped_to(&rt, &js, &names, &subject) == recs.len() as u64
        });
    }
    let _ = Command::new("kill")
        .arg("-15")
        .arg(shipper.id().to_string())
        .status();
    assert!(
        shipper.wait().unwrap().success(),
        "shake ship stops cleanly on SIGTERM"
    );

    let stream = stream_records(&rt, &js, &names);
    assert_exactly_once(&stream, &journals);
    let out = run_ok(
        Command::new(shake_bin())
            .arg("reconcile")
            .arg("--manifest")
            .arg(p.join("seeds/manifest.toml"))
            .arg("--seeds")
            .arg(p.join("seeds"))
            .arg("--journals")
            .arg(p.join("journal"))
            .args(["--stream", &nats.url(), "--fleet-name", "ff-b"]),
    );
    assert!(out.contains("reconcile: exact"), "{out}");
    assert!(out.contains("stream paid"), "{out}");
    let records: usize = journals.iter().map(|(_, r)| r.len()).sum();
    assert!(out.contains(&format!(" {records} stream records")), "{out}");
    eprintln!("{out}");
}
