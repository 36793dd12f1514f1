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
//! IPv6 (a node with `node.ipv6`): each worker also has an IPv6 socket of its own,
//! `IPV6_V6ONLY` and `SO_REUSEPORT` on the node's IPv6 address, rather than one dual-stack
//! socket: a dual-stack socket takes IPv4 only when bound to the wildcard `::` (an IPv4
//! address and an IPv6 one cannot both be bound by one socket), so it would serve every
//! address of the host and give IPv4 phones IPv4-mapped sources. With two sockets each
//! family keeps its own address, and a node without IPv6 runs exactly as before. A worker
//! with two sockets waits on both with one `poll(2)` a loop (not a datagram) and reads each
//! that is ready without blocking; one with an IPv4 socket alone blocks in `recvmmsg` as
//! before. Answers go back through the socket their request came in on, and a shake handed
//! to its owner carries its source, of either family, so the owner answers through its own
//! socket of that family. A user is one user whichever family it shakes over: its owner
//! worker decides, by user id.
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
//! is a reflection); over IPv6 the same for the unspecified address, multicast and
//! IPv4-mapped addresses. Loopback (127/8, `::1`) and the node's own addresses are
//! answered here, unlike on the DPDK frame path: the kernel drops them as martians when they
//! come from a wire (RFC 1122 3.2.1.3 (g), RFC 4291 2.5.3; Linux, unless `route_localnet`
//! or `accept_local` is set), so on a socket they can only come from a process on this host,
//! which is a legitimate client (the tests and the socket benchmark are exactly that).

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam::channel::{Receiver, Sender};
use crossbeam::queue::ArrayQueue;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{MsgFlags, SockaddrIn, SockaddrIn6, SockaddrLike};

pub use super::mmsg::MAX_BATCH;
use super::mmsg::{RecvBatch, SendBatch};
use crate::backend::{Backend, NotStarted, Running, Stopped};
use crate::counters::{bump, Counters, DropReason, Reply};
use crate::engine::config::{owner_worker, Live};
use crate::engine::Worker;
use crate::journal::ClaimSink;
use crate::seed::SeedSource;
use crate::time::unix_ms;
use crate::wire::shake::{Outcome, PAYLOAD_LEN};
use crate::wire::{ipv4, ipv6};

/// Largest datagram read; anything longer is truncated and then dropped for its length.
const BUF: usize = 2048;
/// How long a worker blocks in `recvmmsg` (or `poll`, with two sockets) before it looks at
/// its inbox and the stop flag.
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
    #[error("the socket backend's IPv4 address ([socket] bind) must be IPv4, not {0}; IPv6 goes to [socket] bind6")]
    NotIpv4(SocketAddr),
    #[error("the socket backend's IPv6 address ([socket] bind6) must be IPv6, not {0}")]
    NotIpv6(SocketAddr),
    #[error("starting worker thread: {0}")]
    Spawn(std::io::Error),
    #[error("a socket worker thread panicked")]
    Panicked,
}

/// Binds `n` `SO_REUSEPORT` sockets to one address, of either family (an IPv6 one with
/// `IPV6_V6ONLY`: IPv4 has sockets of its own). Port 0 picks a free port for all of them.
pub fn bind(addr: SocketAddr, n: usize) -> Result<Vec<UdpSocket>, SocketError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut at = addr;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let err = |source| SocketError::Bind { addr: at, source };
        let s =
            Socket::new(Domain::for_address(at), Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
        if at.is_ipv6() {
            s.set_only_v6(true).map_err(err)?;
        }
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

/// One worker's sockets: IPv4, and IPv6 when the node serves it.
#[derive(Debug)]
pub struct WorkerSockets {
    pub v4: UdpSocket,
    pub v6: Option<UdpSocket>,
}

impl WorkerSockets {
    /// Pairs `v4[i]` with `v6[i]` (`v6` empty: IPv4 only).
    pub fn pair(v4: Vec<UdpSocket>, v6: Vec<UdpSocket>) -> Vec<WorkerSockets> {
        let mut v6 = v6.into_iter();
        v4.into_iter()
            .map(|v4| WorkerSockets { v4, v6: v6.next() })
            .collect()
    }
}

/// A shake handed from the thread that received it to the worker that owns its user: its
/// source (either family: the answer goes back over the same one) and its payload.
type Handoff = (SocketAddr, [u8; PAYLOAD_LEN]);

/// What [`serve`] gives back: the workers (`None` where one failed) and the first failure.
pub type Served<S, J> = (Vec<Option<Worker<S, J>>>, Option<SocketError>);

/// Runs one thread per worker until `stop` is set; returns the workers (so the caller can
/// close their journals) in the order given, `None` for one whose thread panicked (a bug: it
/// also stops the others, and its journal is left to recovery), and the first failure.
/// `reloads[i]` delivers new snapshots to worker i.
pub fn serve<S, J>(
    sockets: Vec<WorkerSockets>,
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
    sock: WorkerSockets,
    worker: Worker<S, J>,
    inboxes: Arc<Vec<ArrayQueue<Handoff>>>,
    reload: Receiver<Arc<Live>>,
}

/// A source address of one family, as a socket of that family gives it.
trait Source: SockaddrLike + Copy {
    /// Whether a datagram from here must get no answer on this backend (see the module
    /// doc).
    fn never_answered(&self) -> bool;
    /// The address handed to the owning worker with the shake.
    fn handed_off(self) -> SocketAddr;
}

impl Source for SockaddrIn {
    #[inline]
    fn never_answered(&self) -> bool {
        ipv4::never_a_source(self.ip().octets()[0]) | (self.port() == 0)
    }
    #[inline]
    fn handed_off(self) -> SocketAddr {
        SocketAddr::V4(self.into())
    }
}

impl Source for SockaddrIn6 {
    /// `ipv6::never_a_source` but for loopback `::1`, which only a local client can send
    /// from over a socket (as 127/8 over IPv4).
    #[inline]
    fn never_answered(&self) -> bool {
        let a = self.ip().octets();
        (ipv6::never_a_source(a) & (u128::from_be_bytes(a) != 1)) | (self.port() == 0)
    }
    #[inline]
    fn handed_off(self) -> SocketAddr {
        SocketAddr::V6(self.into())
    }
}

/// Counts one receiving thread out when dropped, also on unwinding.
struct Receiving<'a>(&'a AtomicUsize);

impl Drop for Receiving<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

/// A worker's batches for one socket family, allocated once.
struct Family<A: SockaddrLike + Copy> {
    fd: i32,
    rx: RecvBatch<BUF, A>,
    tx: SendBatch<A>,
}

impl<A: SockaddrLike + Copy> Family<A> {
    fn new(sock: &UdpSocket) -> Self {
        Family {
            fd: sock.as_raw_fd(),
            rx: RecvBatch::new(),
            tx: SendBatch::new(),
        }
    }
}

/// Waits up to [`POLL`] for either socket to have a datagram; says which have. An error
/// (EINTR on a signal) says neither: the caller looks at its flags and comes back.
fn ready(v4: &UdpSocket, v6: &UdpSocket) -> (bool, bool) {
    let mut fds = [
        PollFd::new(v4.as_fd(), PollFlags::POLLIN),
        PollFd::new(v6.as_fd(), PollFlags::POLLIN),
    ];
    let timeout = PollTimeout::try_from(POLL).unwrap_or(PollTimeout::ZERO);
    if !matches!(nix::poll::poll(&mut fds, timeout), Ok(n) if n > 0) {
        return (false, false);
    }
    // Errors (POLLERR) are also "ready": the receive takes them off the socket.
    let any = |f: &PollFd| f.any().unwrap_or(false);
    (any(&fds[0]), any(&fds[1]))
}

impl<S: SeedSource, J: ClaimSink> Thread<S, J> {
    fn run(&mut self, batch: usize, stop: &AtomicBool, receiving: &AtomicUsize) {
        let mut v4 = Family::<SockaddrIn>::new(&self.sock.v4);
        let mut v6 = self.sock.v6.as_ref().map(Family::<SockaddrIn6>::new);
        let still = Receiving(receiving);
        while !stop.load(Ordering::Relaxed) {
            if let Ok(live) = self.reload.try_recv() {
                self.worker.reload(live);
            }
            self.drain_inbox(&mut v4, v6.as_mut());

            match v6.as_mut() {
                Some(fam6) => {
                    // Two sockets: one poll, then whatever each has, without blocking.
                    let (r4, r6) = match &self.sock.v6 {
                        Some(sock6) => ready(&self.sock.v4, sock6),
                        None => (false, false),
                    };
                    if r4 {
                        self.receive(&mut v4, batch, MsgFlags::MSG_DONTWAIT);
                    }
                    if r6 {
                        self.receive(fam6, batch, MsgFlags::MSG_DONTWAIT);
                    }
                }
                // One socket: block in the receive itself, up to its read timeout.
                None => self.receive(&mut v4, batch, MsgFlags::MSG_WAITFORONE),
            }
        }
        // This thread hands nothing more over; decide what the others hand over until
        // every one of them has stopped receiving.
        drop(still);
        let deadline = std::time::Instant::now() + HANDOFF_DRAIN;
        loop {
            let done = receiving.load(Ordering::Acquire) == 0;
            while self.drain_inbox(&mut v4, v6.as_mut()) > 0 {}
            if done || std::time::Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// One `recvmmsg` of up to `batch` datagrams on one family's socket: decides those of
    /// this worker's users, hands the others to their owners, and answers through the same
    /// socket.
    fn receive<A: Source>(&mut self, fam: &mut Family<A>, batch: usize, flags: MsgFlags) {
        let counters = self.worker.counters().clone();
        let mut answer: [Option<Outcome>; MAX_BATCH] = [None; MAX_BATCH];
        // An error is EAGAIN after the poll interval (or with nothing there), or EINTR on a
        // signal: the caller looks at the flags.
        let received = fam.rx.recv(fam.fd, batch, flags).unwrap_or(0);
        if received == 0 {
            return;
        }
        bump(&counters.rx, received as u64);
        self.worker.begin_burst(unix_ms());
        for (k, answer) in answer[..received].iter_mut().enumerate() {
            let Some(addr) = fam.rx.source(k) else {
                // UDP always has a source; counted rather than lost.
                counters.dropped(DropReason::Internal);
                continue;
            };
            if addr.never_answered() {
                counters.dropped(DropReason::Source);
                continue;
            }
            let payload = fam.rx.datagram_mut(k);
            if payload.len() == PAYLOAD_LEN && self.workers > 1 {
                let user = u64::from_be_bytes(payload[8..16].try_into().unwrap_or([0; 8]));
                let owner = owner_worker(user, self.node_count, self.workers) as usize;
                if owner != self.index {
                    let mut copy = [0u8; PAYLOAD_LEN];
                    copy.copy_from_slice(payload);
                    if self.inboxes[owner].push((addr.handed_off(), copy)).is_err() {
                        counters.dropped(DropReason::HandoffFull);
                    }
                    continue;
                }
            }
            *answer = self.worker.shake(payload).ok();
        }
        let mut out: [&[u8]; MAX_BATCH] = [&[]; MAX_BATCH];
        let mut to: [Option<A>; MAX_BATCH] = [None; MAX_BATCH];
        let mut outcomes = [Outcome::Nothing; MAX_BATCH];
        let mut m = 0;
        for (k, answer) in answer[..received].iter().enumerate() {
            if let Some(o) = *answer {
                // Answered: the datagram was a whole payload, now its answer.
                out[m] = fam.rx.datagram(k);
                to[m] = fam.rx.source(k);
                outcomes[m] = o;
                m += 1;
            }
        }
        send_batch(
            fam.fd,
            &mut fam.tx,
            &out[..m],
            &to[..m],
            &outcomes[..m],
            &counters,
        );
    }

    /// Decides and answers shakes other threads handed to this worker (a batch at most),
    /// each through this worker's socket of its source's family; returns how many it took.
    fn drain_inbox(
        &mut self,
        v4: &mut Family<SockaddrIn>,
        v6: Option<&mut Family<SockaddrIn6>>,
    ) -> usize {
        if self.inboxes[self.index].is_empty() {
            return 0;
        }
        let counters = self.worker.counters().clone();
        self.worker.begin_burst(unix_ms());
        let mut bufs = [[0u8; PAYLOAD_LEN]; MAX_BATCH];
        // Per family: which buffers, to where, with what outcome.
        let mut at4 = [0usize; MAX_BATCH];
        let mut to4: [Option<SockaddrIn>; MAX_BATCH] = [None; MAX_BATCH];
        let mut out4 = [Outcome::Nothing; MAX_BATCH];
        let mut at6 = [0usize; MAX_BATCH];
        let mut to6: [Option<SockaddrIn6>; MAX_BATCH] = [None; MAX_BATCH];
        let mut out6 = [Outcome::Nothing; MAX_BATCH];
        let (mut taken, mut m4, mut m6) = (0, 0, 0);
        while taken < MAX_BATCH {
            let Some((addr, payload)) = self.inboxes[self.index].pop() else {
                break;
            };
            let k = taken;
            taken += 1;
            // Counted in `rx` by the thread that received it.
            bufs[k] = payload;
            let Ok(o) = self.worker.shake(&mut bufs[k]) else {
                continue;
            };
            match addr {
                SocketAddr::V4(a) => {
                    (at4[m4], to4[m4], out4[m4]) = (k, Some(a.into()), o);
                    m4 += 1;
                }
                SocketAddr::V6(a) if v6.is_some() => {
                    (at6[m6], to6[m6], out6[m6]) = (k, Some(a.into()), o);
                    m6 += 1;
                }
                // Only an IPv6 socket receives from IPv6 sources, and every worker has
                // one if any has: a bug, counted as the answer lost.
                SocketAddr::V6(_) => counters.dropped(lost_as(o)),
            }
        }
        let d4: [&[u8]; MAX_BATCH] = std::array::from_fn(|j| &bufs[at4[j]][..]);
        send_batch(
            v4.fd,
            &mut v4.tx,
            &d4[..m4],
            &to4[..m4],
            &out4[..m4],
            &counters,
        );
        if let Some(v6) = v6 {
            let d6: [&[u8]; MAX_BATCH] = std::array::from_fn(|j| &bufs[at6[j]][..]);
            send_batch(
                v6.fd,
                &mut v6.tx,
                &d6[..m6],
                &to6[..m6],
                &out6[..m6],
                &counters,
            );
        }
        taken
    }
}

/// Sends a batch of answers with `sendmmsg` (see [`send_all`]).
fn send_batch<A: SockaddrLike + Copy>(
    fd: i32,
    tx: &mut SendBatch<A>,
    out: &[&[u8]],
    to: &[Option<A>],
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
    /// Where to bind the IPv4 sockets; port 0 picks a free port.
    pub addr: SocketAddr,
    /// Where to bind the IPv6 sockets (`None`: the node serves IPv4 only); port 0 picks a
    /// free port, of its own.
    pub addr6: Option<SocketAddr>,
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
    bound6: Option<SocketAddr>,
    counters: Vec<Arc<Counters>>,
    server: std::thread::JoinHandle<Served<S, J>>,
}

/// Each worker's sockets, and where the first of each family is bound.
type Bound = (Vec<WorkerSockets>, SocketAddr, Option<SocketAddr>);

impl SocketBackend {
    /// Binds `n` sockets of each family the node serves.
    fn bind(&self, n: usize) -> Result<Bound, SocketError> {
        if !self.addr.is_ipv4() {
            return Err(SocketError::NotIpv4(self.addr));
        }
        if let Some(a) = self.addr6.filter(|a| !a.is_ipv6()) {
            return Err(SocketError::NotIpv6(a));
        }
        let local = |s: &UdpSocket, addr: SocketAddr| {
            s.local_addr()
                .map_err(|source| SocketError::Bind { addr, source })
        };
        let v4 = bind(self.addr, n)?;
        let bound = local(&v4[0], self.addr)?;
        let (v6, bound6) = match self.addr6 {
            Some(addr6) => {
                let v6 = bind(addr6, n)?;
                let bound6 = local(&v6[0], addr6)?;
                (v6, Some(bound6))
            }
            None => (Vec::new(), None),
        };
        Ok((WorkerSockets::pair(v4, v6), bound, bound6))
    }
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
        let (sockets, bound, bound6) = match self.bind(workers.len()) {
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
                bound6,
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

    /// `udp ADDR with N socket worker(s)`, or `udp ADDR and udp6 [ADDR6]:PORT with ...`:
    /// the IPv4 address stays first, where tools read it.
    fn describe(&self) -> String {
        let v6 = self
            .bound6
            .map(|a| format!(" and udp6 {a}"))
            .unwrap_or_default();
        format!(
            "udp {}{v6} with {} socket worker(s)",
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
            assert_eq!(from.never_answered(), never, "{from}");
        }
    }

    #[test]
    fn ipv6_sources_no_host_sends_from_are_never_answered() {
        for (a, port, never) in [
            ("::", 4000, true),
            ("ff02::1", 4000, true),
            ("ff05::1:3", 4000, true),
            ("::ffff:10.0.0.1", 4000, true),
            ("::ffff:127.0.0.1", 4000, true),
            ("2001:db8::7", 0, true),
            ("2001:db8::7", 4000, false),
            ("fe80::1", 4000, false),
            ("::2", 4000, false),
            // Only a local process can send from loopback to a socket: a client, as 127/8.
            ("::1", 4000, false),
            ("::1", 0, true),
        ] {
            let ip: std::net::Ipv6Addr = a.parse().unwrap();
            let from = SockaddrIn6::from(std::net::SocketAddrV6::new(ip, port, 0, 0));
            assert_eq!(from.never_answered(), never, "{from}");
        }
    }

    #[test]
    fn each_family_binds_its_own_sockets() {
        // IPv6 sockets are V6ONLY: an IPv4 socket on the same port beside them binds.
        let v6 = bind("[::1]:0".parse().unwrap(), 2).unwrap();
        let port = v6[0].local_addr().unwrap().port();
        assert!(v6.iter().all(|s| s.local_addr().unwrap().port() == port));
        assert!(socket2::SockRef::from(&v6[1]).only_v6().unwrap());
        let v4 = bind(SocketAddr::from(([127, 0, 0, 1], port)), 2).unwrap();
        assert_eq!(v4[1].local_addr().unwrap().port(), port);
        // The backend refuses an address of the wrong family for each.
        let backend = |addr: &str, addr6: Option<&str>| SocketBackend {
            addr: addr.parse().unwrap(),
            addr6: addr6.map(|a| a.parse().unwrap()),
            workers: None,
            batch: 8,
            node_count: 1,
        };
        assert!(matches!(
            backend("[::1]:0", None).bind(1),
            Err(SocketError::NotIpv4(_))
        ));
        assert!(matches!(
            backend("127.0.0.1:0", Some("127.0.0.1:0")).bind(1),
            Err(SocketError::NotIpv6(_))
        ));
        let (sockets, bound, bound6) = backend("127.0.0.1:0", Some("[::1]:0")).bind(3).unwrap();
        assert_eq!(sockets.len(), 3);
        assert!(sockets.iter().all(|s| s.v6.is_some()));
        assert!(bound.is_ipv4() && bound6.is_some_and(|a| a.is_ipv6()));
        let (sockets, _, bound6) = backend("127.0.0.1:0", None).bind(2).unwrap();
        assert!(sockets.iter().all(|s| s.v6.is_none()) && bound6.is_none());
    }
}
