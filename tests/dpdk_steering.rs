//! The DPDK poll loop end to end on a ring-backed port with two workers and two queues:
//! frames go in on both RX queues, each SHAKE/1 frame, over IPv4 or IPv6, is decided by the
//! worker that owns its user (handed over between workers when it arrived on the other's
//! queue) and its answer
//! leaves on that worker's TX queue, trimmed to the length the processor chose. Non-SHAKE
//! frames are answered where they arrived; dropped frames and leftovers are freed (the test
//! pool is whole again at the end). A burst a worker received on its own queue is staged
//! for one pass: all its frames, and only those, go to the processor's stage hook before
//! the burst is decided as staged, with the stage they filled; frames handed over are
//! decided as not staged. `/shake/stats` answers on the telemetry socket. The frames of one
//! queue come flagged as if a NIC had verified their checksums: a ring port has no RX
//! checksum offload, so the processor is told of none (every sum is checked in software).
//!
//! One EAL per process, so this file has one test. Safe on a shared machine: `--no-pci`,
//! `--no-huge`, its own `--file-prefix`, no device but the rings it creates; every loop is
//! bounded in time.
#![cfg(feature = "dpdk")]

mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::appliance::{file_prefix, RuntimeDir};
use common::ring_wire::{feed_flagged, two_worker_config};
use shake::activity::Activity;
use shake::counters::{Counters, DropReason, Reply};
use shake::dpdk::{self, Burst, BurstProcessor, Eal, Mempool, RingPort, Verdict};
use shake::engine::config::owner_worker;
use shake::engine::users::UserTable;
use shake::engine::winners::WinnerTable;
use shake::engine::{Identity, Live, Throttle, Worker};
use shake::frame::shake_payload;
use shake::frame::{RxChecked, Staged};
use shake::journal::MemoryJournal;
use shake::mac::MacKey;
use shake::seed::MemorySource;

const USERS: u64 = 3000;
const ARPS_PER_QUEUE: usize = 16;
/// Shake frames carry this much junk after the IP packet; answers are trimmed to the packet.
const TRAILER: usize = 20;
const SHAKE_FRAME: usize = 14 + 20 + 8 + 64;
const SHAKE_FRAME6: usize = 14 + 40 + 8 + 64;
const ARP_FRAME: usize = 60;
const DEADLINE: Duration = Duration::from_secs(20);

/// Answers every SHAKE/1 frame with the frame up to its payload's end (106 bytes over IPv4,
/// 126 over IPv6) and this worker's index in the padding, drops users divisible by 7, answers ARP-like frames with 60 bytes, and records
/// which users it decided and which it was told to prefetch.
struct Echo {
    index: u8,
    counters: Arc<Counters>,
    users: Vec<u64>,
    prefetched: RefCell<Vec<u64>>,
    /// A real engine worker, only to stage with ([`Staged::stage`] needs its table).
    stager: Worker<MemorySource, MemoryJournal>,
    /// Per burst decided as staged: how many frames it had, and how many its stage held.
    stage_sizes: Vec<(usize, usize)>,
    /// The users of the bursts decided as staged.
    staged: Vec<u64>,
    /// The users of the bursts decided as not staged.
    unstaged: Vec<u64>,
    /// Frames the processor was told the NIC had verified a checksum of.
    told_verified: usize,
    now_ms: u64,
}

impl BurstProcessor for Echo {
    fn begin(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
    }

    fn stage<'a>(&self, frames: impl Iterator<Item = &'a [u8]>, staged: &mut Staged) {
        let frames: Vec<&[u8]> = frames.collect();
        self.prefetched
            .borrow_mut()
            .extend(frames.iter().filter_map(|f| dpdk::peek_user(f)));
        staged.stage(&self.stager, frames);
    }

    fn process_staged(
        &mut self,
        port: usize,
        frames: &mut [&mut [u8]],
        checked: &[RxChecked],
        staged: &mut Staged,
        verdicts: &mut [Verdict],
    ) {
        self.told_verified += checked.iter().filter(|c| !c.is_empty()).count();
        self.stage_sizes.push((frames.len(), staged.len()));
        staged.clear();
        self.staged
            .extend(frames.iter().filter_map(|f| dpdk::peek_user(f)));
        self.process(port, frames, verdicts);
    }

    fn process_checked(
        &mut self,
        port: usize,
        frames: &mut [&mut [u8]],
        checked: &[RxChecked],
        verdicts: &mut [Verdict],
    ) {
        self.told_verified += checked.iter().filter(|c| !c.is_empty()).count();
        self.unstaged
            .extend(frames.iter().filter_map(|f| dpdk::peek_user(f)));
        self.process(port, frames, verdicts);
    }

    fn process(&mut self, port: usize, frames: &mut [&mut [u8]], verdicts: &mut [Verdict]) {
        assert_eq!(port, 0);
        for (f, v) in frames.iter_mut().zip(verdicts.iter_mut()) {
            *v = match dpdk::peek_user(f) {
                Some(user) if user % 7 == 0 => {
                    self.users.push(user);
                    self.counters.dropped(DropReason::Magic);
                    Verdict::Drop(DropReason::Magic)
                }
                Some(user) => {
                    self.users.push(user);
                    let payload = shake_payload(f).expect("a shake frame");
                    f[payload + 48] = self.index;
                    Verdict::Answer {
                        len: payload + 64,
                        reply: Reply::shake(shake::wire::shake::Outcome::Greeting),
                    }
                }
                None => {
                    f[59] = self.index;
                    Verdict::Answer {
                        len: ARP_FRAME,
                        reply: Reply::ARP,
                    }
                }
            };
        }
    }

    fn tick(&mut self, now_ms: u64) {
        assert!(now_ms >= self.now_ms.saturating_sub(1000));
    }

    fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }
}

/// An engine worker of a one-sponsor activity, for [`Staged::stage`].
fn stager() -> Worker<MemorySource, MemoryJournal> {
    let a = Activity::parse(
        Path::new("steer.toml"),
        "[activity]\nid = 1\nname = \"steer\"\nepoch = 1000\n[limits]\nper_user = 1\n\
         per_sponsor = 1\n[[sponsor]]\nid = 1\nbudget_cents = 100\npackets = 1\n\
         [[round]]\nid = 1\nstart_s = 0\nduration_s = 10\nwin_probability = 0.5\n\
         greeting_probability = 0.1\n",
    )
    .expect("activity");
    let identity = Identity {
        node_index: 0,
        node_count: 1,
        token_key: MacKey::from_bytes([1; 16]),
        claim_key: MacKey::from_bytes([2; 16]),
    };
    let live = Live::new(
        &a,
        identity,
        Throttle::default(),
        None,
        0,
        Default::default(),
        1,
    );
    Worker::new(
        live,
        UserTable::new(USERS as usize, 0),
        WinnerTable::with_capacity(1),
        MemorySource::new(Vec::new(), a.rounds.len()),
        MemoryJournal::with_capacity(1),
        1,
    )
}

/// Users divisible by 3 shake over IPv6.
fn over_ipv6(user: u64) -> bool {
    user % 3 == 0
}

fn shake_frame(user: u64) -> Vec<u8> {
    if over_ipv6(user) {
        return shake_frame6(user);
    }
    let mut f = vec![0xee; SHAKE_FRAME + TRAILER];
    f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip.fill(0);
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&92u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    udp[2..4].copy_from_slice(&7000u16.to_be_bytes());
    udp[4..6].copy_from_slice(&72u16.to_be_bytes());
    udp[6..8].fill(0);
    let p = &mut f[42..106];
    p.fill(0);
    p[..4].copy_from_slice(b"SK\x01\x01");
    p[4..6].copy_from_slice(&1u16.to_be_bytes());
    p[8..16].copy_from_slice(&user.to_be_bytes());
    f
}

/// The IPv6 twin of [`shake_frame`]: fd00::1 to fd00::2, hop limit 64, no extension header.
fn shake_frame6(user: u64) -> Vec<u8> {
    let mut f = vec![0xee; SHAKE_FRAME6 + TRAILER];
    f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    let ip = &mut f[14..54];
    ip.fill(0);
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&72u16.to_be_bytes());
    ip[6] = 17;
    ip[7] = 64;
    ip[8..10].copy_from_slice(&[0xfd, 0]);
    ip[23] = 1;
    ip[24..26].copy_from_slice(&[0xfd, 0]);
    ip[39] = 2;
    let udp = &mut f[54..62];
    udp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    udp[2..4].copy_from_slice(&7000u16.to_be_bytes());
    udp[4..6].copy_from_slice(&72u16.to_be_bytes());
    udp[6..8].copy_from_slice(&[0xff, 0xff]);
    let p = &mut f[62..126];
    p.fill(0);
    p[..4].copy_from_slice(b"SK\x01\x01");
    p[4..6].copy_from_slice(&1u16.to_be_bytes());
    p[8..16].copy_from_slice(&user.to_be_bytes());
    f
}

fn arp_frame() -> Vec<u8> {
    let mut f = vec![0; ARP_FRAME];
    f[..6].fill(0xff);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    f
}

#[test]
fn two_workers_steer_users_and_answer_on_their_queues() {
    let prefix = file_prefix("steer");
    let _runtime_dir = RuntimeDir::new(&prefix);
    let config = two_worker_config(&prefix, "steer", 1024, true);
    let args = dpdk::node_eal_args(&config, &["--no-shconf".to_owned()]).unwrap();
    assert!(args.contains(&"--no-pci".to_owned()) && args.contains(&"--no-huge".to_owned()));
    let eal = Eal::init(&args).expect("EAL init");
    assert_eq!(eal.worker_lcores(), [1, 2]);
    assert!(matches!(
        Eal::init(&args),
        Err(dpdk::DpdkError::EalAlreadyInitialised)
    ));

    // The wire: wire.rx[q] feeds RX queue q, TX queue q fills wire.tx[q].
    let mut wire = RingPort::new(&eal, "steer", &[4096, 4096], &[8192, 8192]).expect("ring port");
    let port = wire.id;
    let pool = Mempool::new(&eal, "t_pool", 8191, 0, 0).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let app = dpdk::launch(&eal, &config, stop, |workers, ports| {
        assert_eq!(workers, 2);
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].id, port);
        assert_eq!(ports[0].queues, 2);
        (0..workers)
            .map(|index| Echo {
                index: index as u8,
                counters: Arc::default(),
                users: Vec::new(),
                prefetched: RefCell::default(),
                stager: stager(),
                stage_sizes: Vec::new(),
                staged: Vec::new(),
                unstaged: Vec::new(),
                told_verified: 0,
                now_ms: 0,
            })
            .collect()
    })
    .expect("launch");
    dpdk::telemetry::publish(app.stats().clone()).expect("telemetry command");

    // Users alternate between the queues, so about half arrive at the wrong worker.
    let deadline = Instant::now() + DEADLINE;
    for q in 0..2u64 {
        let frames = (1..=USERS)
            .filter(|u| u % 2 == q)
            .map(shake_frame)
            .chain((0..ARPS_PER_QUEUE).map(|_| arp_frame()))
            .collect::<Vec<_>>()
            .into_iter();
        // Queue 1's mbufs say a NIC verified both checksums; the port never enabled that.
        let flags = match q {
            0 => RxChecked::empty(),
            _ => RxChecked::all(),
        };
        feed_flagged(&pool, &mut wire.rx[q as usize], frames, flags, deadline);
    }

    let owner = |u: u64| owner_worker(u, 1, 2) as usize;
    let answered_users = (1..=USERS).filter(|u| u % 7 != 0).count();
    let expected = answered_users + 2 * ARPS_PER_QUEUE;
    let mut seen_users = BTreeMap::new();
    let mut arps = [0usize; 2];
    let mut got = 0;
    let mut burst = Burst::new();
    while got < expected {
        assert!(
            Instant::now() < deadline,
            "only {got} of {expected} answers in time"
        );
        let mut idle = true;
        for (q, ring) in wire.tx.iter_mut().enumerate() {
            while ring.dequeue(&mut burst) > 0 {
                idle = false;
                for m in burst.take() {
                    got += 1;
                    let f = m.data();
                    assert_eq!(m.pkt_len(), f.len());
                    match dpdk::peek_user(f) {
                        Some(user) => {
                            let (len, payload) = match over_ipv6(user) {
                                false => (SHAKE_FRAME, 14 + 20 + 8),
                                true => (SHAKE_FRAME6, 14 + 40 + 8),
                            };
                            assert_eq!(f.len(), len, "answer trimmed to the verdict");
                            assert_eq!(usize::from(f[payload + 48]), q, "decided by queue owner");
                            assert_eq!(owner(user), q, "user {user} answered by its owner");
                            assert_eq!(seen_users.insert(user, q), None, "one answer per user");
                        }
                        None => {
                            assert_eq!(f.len(), ARP_FRAME);
                            assert_eq!(
                                usize::from(f[59]),
                                q,
                                "non-SHAKE answered where it came in"
                            );
                            arps[q] += 1;
                        }
                    }
                }
            }
        }
        if idle {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert_eq!(seen_users.len(), answered_users);
    assert_eq!(arps, [ARPS_PER_QUEUE; 2]);
    // Both workers got some users, and some arrived on the other worker's queue.
    let per_worker = (1..=USERS).fold([0usize; 2], |mut n, u| {
        n[owner(u)] += 1;
        n
    });
    assert!(
        per_worker[0] > USERS as usize / 4 && per_worker[1] > USERS as usize / 4,
        "{per_worker:?}"
    );

    let total = app.stats().total();
    // The loop counts rx (once, where a frame arrived) and each answer TX took.
    assert_eq!(total.rx, USERS + 2 * ARPS_PER_QUEUE as u64);
    assert_eq!(total.tx, expected as u64);
    assert_eq!(total.replies(Reply::ARP), 2 * ARPS_PER_QUEUE as u64);
    assert_eq!(total.dropped(DropReason::TxFull), 0);
    assert_eq!(total.dropped(DropReason::HandoffFull), 0);
    assert_eq!(total.dropped(DropReason::Magic), USERS / 7);
    assert_eq!(total.accounted(), total.rx, "{}", total.line());

    let telemetry = query_telemetry(eal.runtime_dir(), dpdk::telemetry::COMMAND);
    assert!(telemetry.contains("\"workers\":2"), "{telemetry}");
    assert!(
        telemetry.contains(&format!("\"tx\":{expected}")),
        "{telemetry}"
    );
    assert!(
        telemetry.contains(&format!("\"drop_magic\":{}", USERS / 7)),
        "{telemetry}"
    );
    dpdk::telemetry::withdraw();

    let processors = app.join().expect("workers stop cleanly");
    for (w, p) in processors.iter().enumerate() {
        assert!(
            p.users.iter().all(|&u| owner(u) == w),
            "worker {w} decided only its users"
        );
        assert_eq!(
            p.told_verified, 0,
            "worker {w} read RX checksum flags of a port without the offload"
        );
    }
    assert_eq!(
        processors.iter().map(|p| p.users.len() as u64).sum::<u64>(),
        USERS
    );
    // Staged: the users of each burst that arrived on its owner's queue were prefetched, a
    // pass before the owner decided the burst as staged, and no others were;
    // handed-over users were decided as not staged.
    for (w, p) in processors.iter().enumerate() {
        let decided: HashSet<u64> = p.users.iter().copied().collect();
        let prefetched = p.prefetched.borrow();
        let own: HashSet<u64> = (1..=USERS)
            .filter(|&u| owner(u) == w && u % 2 == w as u64)
            .collect();
        assert!(!prefetched.is_empty(), "worker {w} prefetched");
        // Each staged burst came with its own stage: the loop swaps them together.
        assert!(
            p.stage_sizes
                .iter()
                .all(|&(frames, staged)| frames == staged),
            "worker {w} decided each burst with its own stage: {:?}",
            p.stage_sizes
        );
        assert_eq!(
            *prefetched, p.staged,
            "worker {w} prefetched the users of its staged bursts"
        );
        assert!(prefetched
            .iter()
            .all(|u| own.contains(u) && decided.contains(u)));
        let handed: HashSet<u64> = (1..=USERS)
            .filter(|&u| owner(u) == w && u % 2 != w as u64)
            .collect();
        assert!(!handed.is_empty());
        assert!(
            handed.iter().all(|u| p.unstaged.contains(u)),
            "worker {w} decided what was handed over as not staged"
        );
    }
    assert!(
        processors[0].now_ms > 1_600_000_000_000,
        "TSC clock gives unix ms"
    );

    // Every mbuf came back: answers freed above, drops freed by the workers.
    assert_eq!(pool.available(), pool.size(), "no mbuf leaked");
    drop(pool);
    drop(wire);
    drop(eal);
}

/// One command over the telemetry socket (`SOCK_SEQPACKET`, protocol v2): the server first
/// sends its info, then answers each command with one JSON message.
fn query_telemetry(runtime_dir: &Path, command: &str) -> String {
    use socket2::{Domain, SockAddr, Socket, Type};
    let path = runtime_dir.join("dpdk_telemetry.v2");
    let sock = Socket::new(Domain::UNIX, Type::SEQPACKET, None).expect("unix socket");
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.connect(&SockAddr::unix(&path).unwrap())
        .unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
    let mut sock = std::fs::File::from(std::os::fd::OwnedFd::from(sock));
    let mut buf = vec![0u8; 16384];
    let n = sock.read(&mut buf).expect("telemetry greeting");
    assert!(n > 0);
    sock.write_all(command.as_bytes()).unwrap();
    let n = sock.read(&mut buf).expect("telemetry answer");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}
