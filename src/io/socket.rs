//! The kernel-socket backend: the same workers served over UDP sockets.
//!
//! This is how a node runs where DPDK is absent, and the baseline kernel bypass must beat.
//! One thread per worker, each with its own `SO_REUSEPORT` socket on the node's address,
//! moving up to [`MAX_BATCH`] datagrams per `recvmmsg`/`sendmmsg` call through the reusable
//! batches of [`super::mmsg`]. The kernel spreads
//! datagrams over the sockets by a hash of their addresses, not by user, so a thread hands a
//! shake whose user another worker owns to that worker's inbox (a lock-free queue): the
//! per-user limits then need no shared state.
//!
//! Counting (see [`crate::counters`]): the thread that receives a datagram counts it in
//! `rx`, once; the owner counts its answer when `sendmmsg` takes it. A full inbox is
//! `handoff_full`. At the stop every thread decides what the others hand over until all of
//! them have stopped receiving, so nothing received goes uncounted. An answer the kernel
//! does not take at once (EAGAIN, ENOBUFS: buffers full) is retried within a short bounded
//! backoff; one it refuses (an error for that datagram) is given up and the rest of the
//! batch still goes. What is given up is `tx_full`, or `red_packet_tx_lost` for a
//! RED_PACKET answer.
//!
//! Sources (SPEC 2): a datagram from 0.0.0.0/8, multicast, reserved 240/4 or broadcast, or
//! from UDP port 0, is dropped as `source` (no host sends from those, and an answer to one
//! is a reflection). Loopback and the node's own address are answered here, unlike on the
//! DPDK frame path: the kernel drops them as martians when they come from a wire (RFC 1122
//! 3.2.1.3 (g); Linux, unless `route_localnet` or `accept_local` is set), so on a socket
//! they can only come from a process on this host, which is a legitimate client (the
//! tests and the socket benchmark are exactly that).

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam::channel::{Receiver, Sender};
use crossbeam::queue::ArrayQueue;
use nix::sys::socket::{MsgFlags, SockaddrIn};

pub use super::mmsg::MAX_BATCH;
use super::mmsg::{RecvBatch, SendBatch};
use crate::backend::{Backend, NotStarted, Running, Stopped};
use crate::counters::{bump, Counters, DropReason, Reply};
use crate::engine::config::{owner_worker, Live};
use crate::engine::Worker;
use crate::journal::ClaimSink;
use crate::seed::SeedSource;
use crate::time::unix_ms;
use crate::wire::ipv4;
use crate::wire::shake::{Outcome, PAYLOAD_LEN};

/// Largest datagram read; anything longer is truncated and then dropped for its length.
const BUF: usize = 2048;
/// How long a worker blocks in `recvmmsg` before it looks at its inbox and the stop flag.
const POLL: Duration = Duration::from_millis(5);
/// Waits for the kernel's buffers within one batch's `sendmmsg`: 50 µs, doubling; about
/// 6 ms in all.
const SEND_WAITS: u32 = 7;
/// At the stop: how long a thread waits for the others to stop receiving (they do within
/// [`POLL`] and a batch; this only bounds a thread that died).
const HANDOFF_DRAIN: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the socket backend serves IPv4 only, not {0}")]
    NotIpv4(SocketAddr),
    #[error("starting worker thread: {0}")]
    Spawn(std::io::Error),
    #[error("a socket worker thread panicked")]
    Panicked,
}

/// Binds `n` `SO_REUSEPORT` sockets to one address. Port 0 picks a free port for all of them.
pub fn bind(addr: SocketAddr, n: usize) -> Result<Vec<UdpSocket>, SocketError> {
    use socket2::{Domain, Protocol, Socket, Type};
    if !addr.is_ipv4() {
        return Err(SocketError::NotIpv4(addr));
    }
    let mut at = addr;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let err = |source| SocketError::Bind { addr: at, source };
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
        s.set_reuse_port(true).map_err(err)?;
        s.set_read_timeout(Some(POLL)).map_err(err)?;
        // Room for a burst while a worker is busy deciding the previous one.
        let _ = s.set_recv_buffer_size(4 << 20);
        let _ = s.set_send_buffer_size(4 << 20);
        s.bind(&at.into()).map_err(err)?;
        let sock: UdpSocket = s.into();
        if at.port() == 0 {
            at = sock
                .local_addr()
                .map_err(|source| SocketError::Bind { addr, source })?;
        }
        out.push(sock);
    }
    Ok(out)
}

/// A shake handed from the thread that received it to the worker that owns its user.
type Handoff = (SocketAddrV4, [u8; PAYLOAD_LEN]);

/// What [`serve`] gives back: the workers (`None` where one failed) and the first failure.
pub type Served<S, J> = (Vec<Option<Worker<S, J>>>, Option<SocketError>);

/// Runs one thread per worker until `stop` is set; returns the workers (so the caller can
/// close their journals) in the order given, `None` for one whose thread panicked (a bug: it
/// also stops the others, and its journal is left to recovery), and the first failure.
/// `reloads[i]` delivers new snapshots to worker i.
pub fn serve<S, J>(
    sockets: Vec<UdpSocket>,
    workers: Vec<Worker<S, J>>,
    node_count: u32,
    batch: usize,
    stop: Arc<AtomicBool>,
    reloads: Vec<Receiver<Arc<Live>>>,
) -> Served<S, J>
where
    S: SeedSource + Send + 'static,
    J: ClaimSink + Send + 'static,
{
    let n = workers.len();
    let batch = batch.clamp(1, MAX_BATCH);
    let inboxes: Arc<Vec<ArrayQueue<Handoff>>> =
        Arc::new((0..n).map(|_| ArrayQueue::new(4096)).collect());
    // Threads still receiving, and so still handing over.
    let receiving = Arc::new(AtomicUsize::new(n));
    let mut handles = Vec::with_capacity(n);
    let mut failure = None;
    for (i, ((sock, worker), reload)) in sockets.into_iter().zip(workers).zip(reloads).enumerate() {
        let (thread_stop, thread_receiving) = (stop.clone(), receiving.clone());
        let inboxes = inboxes.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("shake-sock-{i}"))
            .spawn(move || {
                let mut t = Thread {
                    index: i,
                    workers: n as u32,
                    node_count,
                    sock,
                    worker,
                    inboxes,
                    reload,
                };
                let (stop, receiving) = (thread_stop, thread_receiving);
                let ran = catch_unwind(AssertUnwindSafe(|| t.run(batch, &stop, &receiving)));
                if ran.is_err() {
                    // The node stops: this worker's users have nowhere else to go.
                    stop.store(true, Ordering::Relaxed);
                    return None;
                }
                Some(t.worker)
            });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                // The threads started stop; the worker that did not start is left to
                // recovery with the rest of what did not start.
                stop.store(true, Ordering::Relaxed);
                receiving.fetch_sub(n - i, Ordering::Release);
                failure = Some(SocketError::Spawn(e));
                break;
            }
        }
    }
    let mut out = Vec::with_capacity(n);
    for h in handles {
        let w = h.join().unwrap_or(None);
        if w.is_none() {
            failure.get_or_insert(SocketError::Panicked);
        }
        out.push(w);
    }
    out.resize_with(n, || None);
    (out, failure)
}

struct Thread<S: SeedSource, J: ClaimSink> {
    index: usize,
    workers: u32,
    node_count: u32,
    sock: UdpSocket,
    worker: Worker<S, J>,
    inboxes: Arc<Vec<ArrayQueue<Handoff>>>,
    reload: Receiver<Arc<Live>>,
}

/// Whether a datagram from `from` must get no answer on this backend (see the module doc).
#[inline]
fn never_answered(from: &SockaddrIn) -> bool {
    ipv4::never_a_source(from.ip().octets()[0]) | (from.port() == 0)
}

/// Counts one receiving thread out when dropped, also on unwinding.
struct Receiving<'a>(&'a AtomicUsize);

impl Drop for Receiving<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

impl<S: SeedSource, J: ClaimSink> Thread<S, J> {
    fn run(&mut self, batch: usize, stop: &AtomicBool, receiving: &AtomicUsize) {
        let fd = self.sock.as_raw_fd();
        let mut rx = RecvBatch::<BUF>::new();
        let mut tx = SendBatch::new();
        let mut answer: [Option<Outcome>; MAX_BATCH] = [None; MAX_BATCH];
        let counters = self.worker.counters().clone();
        let still = Receiving(receiving);
        while !stop.load(Ordering::Relaxed) {
            if let Ok(live) = self.reload.try_recv() {
                self.worker.reload(live);
            }
            self.drain_inbox(fd, &mut tx);

            // An error is EAGAIN after the poll interval, or EINTR on a signal: look at the
            // flags.
            let received = rx.recv(fd, batch, MsgFlags::MSG_WAITFORONE).unwrap_or(0);
            if received == 0 {
                continue;
            }
            bump(&counters.rx, received as u64);
            self.worker.begin_burst(unix_ms());
            for (k, answer) in answer[..received].iter_mut().enumerate() {
                *answer = None;
                let Some(addr) = rx.source(k) else {
                    // UDP always has a source; counted rather than lost.
                    counters.dropped(DropReason::Internal);
                    continue;
                };
                if never_answered(&addr) {
                    counters.dropped(DropReason::Source);
                    continue;
                }
                let payload = rx.datagram_mut(k);
                if payload.len() == PAYLOAD_LEN && self.workers > 1 {
                    let user = u64::from_be_bytes(payload[8..16].try_into().unwrap_or([0; 8]));
                    let owner = owner_worker(user, self.node_count, self.workers) as usize;
                    if owner != self.index {
                        let mut copy = [0u8; PAYLOAD_LEN];
                        copy.copy_from_slice(payload);
                        if self.inboxes[owner].push((addr.into(), copy)).is_err() {
                            counters.dropped(DropReason::HandoffFull);
                        }
                        continue;
                    }
                }
                *answer = self.worker.shake(payload).ok();
            }
            let mut out: [&[u8]; MAX_BATCH] = [&[]; MAX_BATCH];
            let mut to: [Option<SockaddrIn>; MAX_BATCH] = [None; MAX_BATCH];
            let mut outcomes = [Outcome::Nothing; MAX_BATCH];
            let mut m = 0;
            for (k, answer) in answer[..received].iter().enumerate() {
                if let Some(o) = *answer {
                    // Answered: the datagram was a whole payload, now its answer.
                    out[m] = rx.datagram(k);
                    to[m] = rx.source(k);
                    outcomes[m] = o;
                    m += 1;
                }
            }
            send_batch(fd, &mut tx, &out[..m], &to[..m], &outcomes[..m], &counters);
        }
        // This thread hands nothing more over; decide what the others hand over until
        // every one of them has stopped receiving.
        drop(still);
        let deadline = std::time::Instant::now() + HANDOFF_DRAIN;
        loop {
            let done = receiving.load(Ordering::Acquire) == 0;
            while self.drain_inbox(fd, &mut tx) > 0 {}
            if done || std::time::Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Decides and answers shakes other threads handed to this worker (a batch at most);
    /// returns how many it took.
    fn drain_inbox(&mut self, fd: i32, tx: &mut SendBatch) -> usize {
        if self.inboxes[self.index].is_empty() {
            return 0;
        }
        let counters = self.worker.counters().clone();
        self.worker.begin_burst(unix_ms());
        let mut bufs = [[0u8; PAYLOAD_LEN]; MAX_BATCH];
        let mut to: [Option<SockaddrIn>; MAX_BATCH] = [None; MAX_BATCH];
        let mut outcomes = [Outcome::Nothing; MAX_BATCH];
        let (mut taken, mut m) = (0, 0);
        while taken < MAX_BATCH {
            let Some((addr, payload)) = self.inboxes[self.index].pop() else {
                break;
            };
            taken += 1;
            // Counted in `rx` by the thread that received it.
            bufs[m] = payload;
            if let Ok(o) = self.worker.shake(&mut bufs[m]) {
                to[m] = Some(addr.into());
                outcomes[m] = o;
                m += 1;
            }
        }
        let out: [&[u8]; MAX_BATCH] = std::array::from_fn(|k| &bufs[k][..]);
        send_batch(fd, tx, &out[..m], &to[..m], &outcomes[..m], &counters);
        taken
    }
}

/// Sends a batch of answers with `sendmmsg` (see [`send_all`]).
fn send_batch(
    fd: i32,
    tx: &mut SendBatch,
    out: &[&[u8]],
    to: &[Option<SockaddrIn>],
    outcomes: &[Outcome],
    counters: &Counters,
) {
    send_all(
        |from| tx.send(fd, &out[from..], &to[from..]),
        outcomes,
        counters,
        |wait| std::thread::sleep(Duration::from_micros(50 << wait)),
    );
}

/// Sends `outcomes.len()` answers: `send(i)` sends from answer `i` on and says how
/// many went (one `sendmmsg`). Counts each answer the kernel took as sent; retries what it
/// did not take for want of buffers (EAGAIN, ENOBUFS, ENOMEM) after `wait(n)` (at most
/// [`SEND_WAITS`] waits a batch); gives up an answer the kernel refused twice in a row, or
/// that still finds no room once the waits are spent, and goes on with the next. Every
/// answer given up is counted: `red_packet_tx_lost` for a RED_PACKET, else `tx_full`.
fn send_all(
    mut send: impl FnMut(usize) -> nix::Result<usize>,
    outcomes: &[Outcome],
    counters: &Counters,
    mut wait: impl FnMut(u32),
) {
    use nix::errno::Errno;
    let (mut done, mut waits, mut refused) = (0, 0, false);
    while done < outcomes.len() {
        let give_up = match send(done) {
            Ok(sent) if sent > 0 => {
                let sent = sent.min(outcomes.len() - done);
                for &o in &outcomes[done..done + sent] {
                    counters.sent(Reply::shake(o));
                }
                done += sent;
                refused = false;
                false
            }
            Err(Errno::EINTR) => false,
            Ok(_) | Err(Errno::EAGAIN | Errno::ENOBUFS | Errno::ENOMEM) => {
                if waits < SEND_WAITS {
                    wait(waits);
                    waits += 1;
                    false
                } else {
                    true
                }
            }
            // The kernel refuses this datagram (no route, a filter); once more in case the
            // error was not this datagram's, then the next one goes.
            Err(_) => std::mem::replace(&mut refused, true),
        };
        if give_up {
            counters.dropped(lost_as(outcomes[done]));
            done += 1;
            refused = false;
        }
    }
}

/// The reason an answer the kernel did not take is dropped under.
fn lost_as(o: Outcome) -> DropReason {
    if o == Outcome::RedPacket {
        DropReason::RedPacketTxLost
    } else {
        DropReason::TxFull
    }
}

/// The control loop's ends of the reload channels, one per worker.
pub type ReloadSenders = Vec<Sender<Arc<Live>>>;
/// The workers' ends.
pub type ReloadReceivers = Vec<Receiver<Arc<Live>>>;

/// Channels for handing each worker new snapshots.
pub fn reload_channels(n: usize) -> (ReloadSenders, ReloadReceivers) {
    (0..n).map(|_| crossbeam::channel::bounded(4)).unzip()
}

/// The socket backend for [`crate::node::lifecycle`]: binds one socket per worker when the
/// workers start, and serves them on their own threads.
#[derive(Debug, Clone)]
pub struct SocketBackend {
    /// Where to bind; port 0 picks a free port.
    pub addr: SocketAddr,
    /// Worker threads, when the operator said (`--workers`); otherwise the node decides.
    pub workers: Option<usize>,
    /// Datagrams per system call.
    pub batch: usize,
    /// `node.count`, for `owner_worker`.
    pub node_count: u32,
}

/// Socket workers running: the thread that runs [`serve`], and what it serves.
pub struct SocketRunning<S: SeedSource, J: ClaimSink> {
    bound: SocketAddr,
    counters: Vec<Arc<Counters>>,
    server: std::thread::JoinHandle<Served<S, J>>,
}

impl Backend for SocketBackend {
    type Error = SocketError;
    type Running<S: SeedSource + Send + 'static, J: ClaimSink + Send + 'static> =
        SocketRunning<S, J>;

    fn workers(&self) -> Option<usize> {
        self.workers
    }

    fn workers_setting(&self) -> &'static str {
        "--workers"
    }

    fn start<S: SeedSource + Send + 'static, J: ClaimSink + Send + 'static>(
        self,
        workers: Vec<Worker<S, J>>,
        reloads: Vec<Receiver<Arc<Live>>>,
        stop: Arc<AtomicBool>,
    ) -> Result<SocketRunning<S, J>, NotStarted<S, J, SocketError>> {
        let bound = bind(self.addr, workers.len()).and_then(|sockets| {
            let at = sockets[0]
                .local_addr()
                .map_err(|source| SocketError::Bind {
                    addr: self.addr,
                    source,
                })?;
            Ok((sockets, at))
        });
        let (sockets, bound) = match bound {
            Ok(b) => b,
            Err(error) => return Err(NotStarted { error, workers }),
        };
        let counters = workers.iter().map(|w| w.counters().clone()).collect();
        let (node_count, batch) = (self.node_count, self.batch);
        // The workers travel to the server thread through this slot, so that they come
        // back if the thread cannot start.
        let slot = Arc::new(std::sync::Mutex::new(Some(workers)));
        let theirs = slot.clone();
        let server = std::thread::Builder::new()
            .name("shake-sockets".into())
            .spawn(move || {
                let workers = theirs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                    .unwrap_or_default();
                serve(sockets, workers, node_count, batch, stop, reloads)
            });
        match server {
            Ok(server) => Ok(SocketRunning {
                bound,
                counters,
                server,
            }),
            Err(e) => {
                let workers = slot
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                    .unwrap_or_default();
                Err(NotStarted {
                    error: SocketError::Spawn(e),
                    workers,
                })
            }
        }
    }
}

impl<S: SeedSource, J: ClaimSink> Running<S, J> for SocketRunning<S, J> {
    type Error = SocketError;

    fn describe(&self) -> String {
        format!(
            "udp {} with {} socket worker(s)",
            self.bound,
            self.counters.len()
        )
    }

    fn counters(&self) -> Vec<Arc<Counters>> {
        self.counters.clone()
    }

    fn finished(&self) -> bool {
        self.server.is_finished()
    }

    fn join(self) -> Stopped<S, J, SocketError> {
        let n = self.counters.len();
        let (workers, error) = self
            .server
            .join()
            .unwrap_or_else(|_| ((0..n).map(|_| None).collect(), Some(SocketError::Panicked)));
        Stopped { workers, error }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use nix::errno::Errno;

    /// Runs `send_all` over `n` answers (every third a RED_PACKET) against a kernel that
    /// answers each `sendmmsg` from `script` (then takes everything); returns the counters,
    /// the answers the kernel took (by index), and the waits.
    fn run(n: usize, script: &[nix::Result<usize>]) -> (Counters, Vec<usize>, u32) {
        let outcomes: Vec<Outcome> = (0..n)
            .map(|i| {
                if i % 3 == 0 {
                    Outcome::RedPacket
                } else {
                    Outcome::Nothing
                }
            })
            .collect();
        let c = Counters::default();
        let mut calls = script.iter();
        let mut took = Vec::new();
        let mut waits = 0;
        send_all(
            |from| {
                let r = calls.next().copied().unwrap_or(Ok(n - from));
                if let Ok(k) = r {
                    took.extend(from..from + k.min(n - from));
                }
                r
            },
            &outcomes,
            &c,
            |w| {
                assert_eq!(w, waits, "waits counted from 0");
                waits += 1;
            },
        );
        (c, took, waits)
    }

    #[test]
    fn short_sends_and_full_buffers_are_retried() {
        let (c, took, waits) = run(
            6,
            &[Ok(2), Err(Errno::EAGAIN), Ok(1), Err(Errno::ENOBUFS), Ok(0)],
        );
        assert_eq!(took, (0..6).collect::<Vec<_>>());
        assert_eq!(waits, 3);
        let s = c.snapshot();
        assert_eq!(s.tx, 6);
        assert_eq!(s.outcome(Outcome::RedPacket), 2);
        assert_eq!(s.dropped_total(), 0);
    }

    #[test]
    fn a_refused_datagram_is_given_up_and_the_rest_still_go() {
        // Answer 3 (a RED_PACKET) is refused twice; answer 4 goes on.
        let (c, took, waits) = run(6, &[Ok(3), Err(Errno::EINVAL), Err(Errno::EINVAL), Ok(2)]);
        assert_eq!(took, vec![0, 1, 2, 4, 5]);
        assert_eq!(waits, 0);
        let s = c.snapshot();
        assert_eq!(s.tx, 5);
        assert_eq!(s.dropped(DropReason::RedPacketTxLost), 1);
        assert_eq!(s.dropped(DropReason::TxFull), 0);
        // A refusal once (an error that was not this datagram's) loses nothing.
        let (c, took, _) = run(4, &[Err(Errno::EPERM), Ok(4)]);
        assert_eq!((took.len(), c.snapshot().dropped_total()), (4, 0));
    }

    #[test]
    fn a_kernel_that_never_takes_them_loses_them_counted_within_the_bound() {
        let script = vec![Err(Errno::EAGAIN); 100];
        let (c, took, waits) = run(7, &script);
        assert!(took.is_empty());
        assert_eq!(waits, SEND_WAITS);
        let s = c.snapshot();
        assert_eq!(s.dropped(DropReason::RedPacketTxLost), 3);
        assert_eq!(s.dropped(DropReason::TxFull), 4);
        assert_eq!(s.tx, 0);
    }

    #[test]
    fn sources_no_host_sends_from_are_never_answered() {
        for (a, port, never) in [
            ([0, 0, 0, 0], 4000, true),
            ([0, 9, 9, 9], 4000, true),
            ([224, 0, 0, 1], 4000, true),
            ([240, 0, 0, 1], 4000, true),
            ([255, 255, 255, 255], 4000, true),
            ([10, 0, 0, 1], 0, true),
            ([10, 0, 0, 1], 4000, false),
            // Only a local process can send from loopback to a socket: a client.
            ([127, 0, 0, 1], 4000, false),
            ([223, 255, 255, 255], 1, false),
        ] {
            let from = SockaddrIn::new(a[0], a[1], a[2], a[3], port);
            assert_eq!(never_answered(&from), never, "{from}");
        }
    }
}
