//! The kernel-socket backend: the same workers served over UDP sockets.
//!
//! This is how a node runs where DPDK is absent, and the baseline kernel bypass must beat.
//! One thread per worker, each with its own `SO_REUSEPORT` socket on the node's address,
//! moving up to [`MAX_BATCH`] datagrams per `recvmmsg`/`sendmmsg` call. The kernel spreads
//! datagrams over the sockets by a hash of their addresses, not by user, so a thread hands a
//! shake whose user another worker owns to that worker's inbox (a lock-free queue): the
//! per-user limits then need no shared state.

use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam::channel::{Receiver, Sender};
use crossbeam::queue::ArrayQueue;
use nix::sys::socket::{recvmmsg, sendmmsg, MsgFlags, MultiHeaders, SockaddrIn};

use crate::counters::{bump, DropReason};
use crate::engine::config::{owner_worker, Live};
use crate::engine::Worker;
use crate::journal::ClaimSink;
use crate::node::unix_ms;
use crate::seed::SeedSource;
use crate::wire::shake::PAYLOAD_LEN;

/// Most datagrams per system call.
pub const MAX_BATCH: usize = 64;
/// Largest datagram read; anything longer is truncated and then dropped for its length.
const BUF: usize = 2048;
/// How long a worker blocks in `recvmmsg` before it looks at its inbox and the stop flag.
const POLL: Duration = Duration::from_millis(5);

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

/// Runs one thread per worker until `stop` is set; returns the workers (so the caller can
/// close their journals) in the order given. `reloads[i]` delivers new snapshots to worker i.
pub fn serve<S, J>(
    sockets: Vec<UdpSocket>,
    workers: Vec<Worker<S, J>>,
    node_count: u32,
    batch: usize,
    stop: Arc<AtomicBool>,
    reloads: Vec<Receiver<Arc<Live>>>,
) -> Result<Vec<Worker<S, J>>, SocketError>
where
    S: SeedSource + Send + 'static,
    J: ClaimSink + Send + 'static,
{
    let n = workers.len();
    let batch = batch.clamp(1, MAX_BATCH);
    let inboxes: Arc<Vec<ArrayQueue<Handoff>>> =
        Arc::new((0..n).map(|_| ArrayQueue::new(4096)).collect());
    let mut handles = Vec::with_capacity(n);
    for (i, ((sock, worker), reload)) in sockets.into_iter().zip(workers).zip(reloads).enumerate() {
        let stop = stop.clone();
        let inboxes = inboxes.clone();
        let h = std::thread::Builder::new()
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
                t.run(batch, &stop);
                t.worker
            })
            .map_err(SocketError::Spawn)?;
        handles.push(h);
    }
    Ok(handles
        .into_iter()
        .map(|h| h.join().expect("socket worker thread panicked"))
        .collect())
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

impl<S: SeedSource, J: ClaimSink> Thread<S, J> {
    fn run(&mut self, batch: usize, stop: &AtomicBool) {
        let fd = self.sock.as_raw_fd();
        let mut bufs: Box<[[u8; BUF]; MAX_BATCH]> = Box::new([[0u8; BUF]; MAX_BATCH]);
        let mut lens = [0usize; MAX_BATCH];
        let mut from: [Option<SockaddrIn>; MAX_BATCH] = [None; MAX_BATCH];
        let mut answer = [false; MAX_BATCH];
        let mut rx_headers = MultiHeaders::<SockaddrIn>::preallocate(MAX_BATCH, None);
        let mut tx_headers = MultiHeaders::<SockaddrIn>::preallocate(MAX_BATCH, None);
        let counters = self.worker.counters().clone();
        while !stop.load(Ordering::Relaxed) {
            if let Ok(live) = self.reload.try_recv() {
                self.worker.reload(live);
            }
            self.drain_inbox(fd, &mut tx_headers);

            let received = {
                let mut iovs: [[IoSliceMut; 1]; MAX_BATCH] =
                    bufs.each_mut().map(|b| [IoSliceMut::new(b)]);
                match recvmmsg(
                    fd,
                    &mut rx_headers,
                    iovs[..batch].iter_mut(),
                    MsgFlags::MSG_WAITFORONE,
                    None,
                ) {
                    Ok(msgs) => {
                        let mut k = 0;
                        for m in msgs {
                            lens[k] = m.bytes;
                            from[k] = m.address;
                            k += 1;
                        }
                        k
                    }
                    // EAGAIN after the poll interval, EINTR on a signal: look at the flags.
                    Err(_) => 0,
                }
            };
            if received == 0 {
                continue;
            }
            bump(&counters.rx, received as u64);
            self.worker.begin_burst(unix_ms());
            for k in 0..received {
                answer[k] = false;
                let payload = &mut bufs[k][..lens[k].min(BUF)];
                if payload.len() == PAYLOAD_LEN && self.workers > 1 {
                    let user = u64::from_be_bytes(payload[8..16].try_into().unwrap_or([0; 8]));
                    let owner = owner_worker(user, self.node_count, self.workers) as usize;
                    if owner != self.index {
                        if let Some(addr) = from[k] {
                            let mut copy = [0u8; PAYLOAD_LEN];
                            copy.copy_from_slice(payload);
                            if self.inboxes[owner].push((addr.into(), copy)).is_err() {
                                counters.dropped(DropReason::TxFull);
                            }
                        }
                        continue;
                    }
                }
                if self.worker.shake(payload).is_ok() {
                    answer[k] = true;
                }
            }
            let mut out: [[IoSlice; 1]; MAX_BATCH] = std::array::from_fn(|_| [IoSlice::new(&[])]);
            let mut to: [Option<SockaddrIn>; MAX_BATCH] = [None; MAX_BATCH];
            let mut m = 0;
            for k in 0..received {
                if answer[k] {
                    out[m] = [IoSlice::new(&bufs[k][..PAYLOAD_LEN])];
                    to[m] = from[k];
                    m += 1;
                }
            }
            send_all(fd, &mut tx_headers, &out[..m], &to[..m], &counters);
        }
        self.drain_inbox(fd, &mut tx_headers);
    }

    /// Decides and answers shakes other threads handed to this worker.
    fn drain_inbox(&mut self, fd: i32, tx: &mut MultiHeaders<SockaddrIn>) {
        if self.inboxes[self.index].is_empty() {
            return;
        }
        let counters = self.worker.counters().clone();
        self.worker.begin_burst(unix_ms());
        let mut bufs = [[0u8; PAYLOAD_LEN]; MAX_BATCH];
        let mut to: [Option<SockaddrIn>; MAX_BATCH] = [None; MAX_BATCH];
        let mut m = 0;
        while m < MAX_BATCH {
            let Some((addr, payload)) = self.inboxes[self.index].pop() else {
                break;
            };
            bump(&counters.rx, 1);
            bufs[m] = payload;
            if self.worker.shake(&mut bufs[m]).is_ok() {
                to[m] = Some(addr.into());
                m += 1;
            }
        }
        let out: [[IoSlice; 1]; MAX_BATCH] = std::array::from_fn(|k| [IoSlice::new(&bufs[k])]);
        send_all(fd, tx, &out[..m], &to[..m], &counters);
    }
}

/// sendmmsg until everything is sent or the kernel refuses; counts what was sent and lost.
fn send_all(
    fd: i32,
    headers: &mut MultiHeaders<SockaddrIn>,
    out: &[[IoSlice; 1]],
    to: &[Option<SockaddrIn>],
    counters: &crate::counters::Counters,
) {
    let mut done = 0;
    while done < out.len() {
        match sendmmsg(
            fd,
            headers,
            out[done..].iter(),
            &to[done..],
            [],
            MsgFlags::empty(),
        ) {
            Ok(r) => {
                let sent = r.count();
                if sent == 0 {
                    break;
                }
                done += sent;
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    bump(&counters.tx, done as u64);
    for _ in done..out.len() {
        counters.dropped(DropReason::TxFull);
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
