//! Batches of datagrams for `recvmmsg`/`sendmmsg`, allocated once and reused for every call.
//!
//! The socket backend and the generator's socket mode both move datagrams a batch per system
//! call; this is the one place that owns the buffers, lengths, source addresses and message
//! headers those calls need, so neither allocates per batch (the I/O vectors are built on the
//! stack for each call: they borrow the buffers, which a reusable struct cannot hold across
//! calls without borrowing itself). What to do when the kernel does not take a batch
//! (retry, count, cancel) differs between the two and stays with each caller.
//!
//! Both batches are generic over the socket's address type (`SockaddrIn` by default,
//! `SockaddrIn6` for an IPv6 socket): a socket has one family, so a batch of it needs only
//! that family's addresses, not a `sockaddr_storage` for each datagram.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::RawFd;

use nix::sys::socket::{recvmmsg, sendmmsg, MsgFlags, MultiHeaders, SockaddrIn, SockaddrLike};

/// Most datagrams per system call.
pub const MAX_BATCH: usize = 64;

/// Up to [`MAX_BATCH`] received datagrams of at most `N` bytes each (longer ones are cut to
/// `N`), with their sources (of type `A`: the socket's family).
pub struct RecvBatch<const N: usize, A: SockaddrLike + Copy = SockaddrIn> {
    bufs: Box<[[u8; N]]>,
    lens: [usize; MAX_BATCH],
    from: [Option<A>; MAX_BATCH],
    count: usize,
    headers: MultiHeaders<A>,
}

impl<const N: usize, A: SockaddrLike + Copy> Default for RecvBatch<N, A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize, A: SockaddrLike + Copy> RecvBatch<N, A> {
    pub fn new() -> Self {
        RecvBatch {
            // On the heap from the start: MAX_BATCH * N is too large for a thread's stack.
            bufs: vec![[0u8; N]; MAX_BATCH].into_boxed_slice(),
            lens: [0; MAX_BATCH],
            from: [None; MAX_BATCH],
            count: 0,
            headers: MultiHeaders::preallocate(MAX_BATCH, None),
        }
    }

    /// One `recvmmsg` of at most `max` datagrams (at least one, at most [`MAX_BATCH`]) on
    /// `fd`; returns how many arrived, which replace the batch's previous contents. On an
    /// error the batch is empty.
    pub fn recv(&mut self, fd: RawFd, max: usize, flags: MsgFlags) -> nix::Result<usize> {
        self.count = 0;
        let max = max.clamp(1, MAX_BATCH);
        let mut bufs = self.bufs.iter_mut();
        let mut iovs: [[IoSliceMut; 1]; MAX_BATCH] = std::array::from_fn(|_| {
            [IoSliceMut::new(
                bufs.next().map_or(&mut [][..], |b| &mut b[..]),
            )]
        });
        let msgs = recvmmsg(fd, &mut self.headers, iovs[..max].iter_mut(), flags, None)?;
        let mut k = 0;
        for m in msgs {
            self.lens[k] = m.bytes.min(N);
            self.from[k] = m.address;
            k += 1;
        }
        self.count = k;
        Ok(k)
    }

    /// Datagrams in the batch.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Datagram `k` (`k < len()`), cut to `N` bytes.
    pub fn datagram(&self, k: usize) -> &[u8] {
        &self.bufs[k][..self.lens[k]]
    }

    /// Datagram `k`, to be rewritten in place (an answer over its request).
    pub fn datagram_mut(&mut self, k: usize) -> &mut [u8] {
        &mut self.bufs[k][..self.lens[k]]
    }

    /// Where datagram `k` came from (`None` only if the kernel gave no address).
    pub fn source(&self, k: usize) -> Option<A> {
        self.from[k]
    }
}

/// The message headers of `sendmmsg`, for batches of up to [`MAX_BATCH`] datagrams to
/// addresses of type `A` (the socket's family).
pub struct SendBatch<A: SockaddrLike + Copy = SockaddrIn> {
    headers: MultiHeaders<A>,
}

impl<A: SockaddrLike + Copy> Default for SendBatch<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: SockaddrLike + Copy> SendBatch<A> {
    pub fn new() -> Self {
        SendBatch {
            headers: MultiHeaders::preallocate(MAX_BATCH, None),
        }
    }

    /// One `sendmmsg` on `fd`: datagram k to `to[k]` (`None`: the socket's connected peer),
    /// at most [`MAX_BATCH`] of them and no more than `to` has destinations for. Returns how
    /// many the kernel took, from the first on.
    pub fn send(&mut self, fd: RawFd, datagrams: &[&[u8]], to: &[Option<A>]) -> nix::Result<usize> {
        let n = datagrams.len().min(to.len()).min(MAX_BATCH);
        let iov: [[IoSlice; 1]; MAX_BATCH] =
            std::array::from_fn(|k| [IoSlice::new(datagrams.get(k).copied().unwrap_or(&[]))]);
        sendmmsg(
            fd,
            &mut self.headers,
            iov[..n].iter(),
            &to[..n],
            [],
            MsgFlags::empty(),
        )
        .map(|r| r.count())
    }

    /// [`send`](Self::send) on a connected socket: every datagram to its peer.
    pub fn send_connected(&mut self, fd: RawFd, datagrams: &[&[u8]]) -> nix::Result<usize> {
        // Destinations of a connected socket's datagrams: its peer.
        let connected: [Option<A>; MAX_BATCH] = [None; MAX_BATCH];
        self.send(fd, datagrams, &connected)
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::time::{Duration, Instant};

    fn pair() -> (UdpSocket, UdpSocket) {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.connect(b.local_addr().unwrap()).unwrap();
        b.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        (a, b)
    }

    /// Receives until `want` datagrams came (or 5 s passed); returns them with their sources.
    fn receive_all<const N: usize, A: SockaddrLike + Copy>(
        rx: &mut RecvBatch<N, A>,
        fd: RawFd,
        want: usize,
    ) -> Vec<(Vec<u8>, A)> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut got = Vec::new();
        while got.len() < want && Instant::now() < deadline {
            if rx.recv(fd, MAX_BATCH, MsgFlags::MSG_WAITFORONE).is_ok() {
                for k in 0..rx.len() {
                    got.push((rx.datagram(k).to_vec(), rx.source(k).unwrap()));
                }
            }
        }
        got
    }

    #[test]
    fn a_batch_goes_out_and_comes_back_whole_in_order() {
        let (a, b) = pair();
        let mut tx: SendBatch = SendBatch::new();
        let data: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 1 + usize::from(i)]).collect();
        let refs: Vec<&[u8]> = data.iter().map(|d| &d[..]).collect();
        assert_eq!(tx.send_connected(a.as_raw_fd(), &refs).unwrap(), 40);
        let mut rx = RecvBatch::<64>::new();
        let got = receive_all(&mut rx, b.as_raw_fd(), 40);
        assert_eq!(got.len(), 40);
        let from = a.local_addr().unwrap();
        for (i, (d, src)) in got.iter().enumerate() {
            assert_eq!(d, &data[i]);
            assert_eq!(std::net::SocketAddr::V4((*src).into()), from);
        }
    }

    #[test]
    fn long_datagrams_are_cut_to_the_buffer_and_batches_are_bounded() {
        let (a, b) = pair();
        let mut tx: SendBatch = SendBatch::new();
        let long = [7u8; 100];
        let refs = [&long[..]; MAX_BATCH + 10];
        // One call sends at most MAX_BATCH.
        assert_eq!(tx.send_connected(a.as_raw_fd(), &refs).unwrap(), MAX_BATCH);
        let mut rx = RecvBatch::<16>::new();
        // A receive takes no more than asked.
        assert_eq!(
            rx.recv(b.as_raw_fd(), 3, MsgFlags::MSG_WAITFORONE).unwrap(),
            3
        );
        assert_eq!(rx.datagram(0), &[7u8; 16]);
        let got = receive_all(&mut rx, b.as_raw_fd(), MAX_BATCH - 3);
        assert_eq!(got.len(), MAX_BATCH - 3);
        // Nothing more: the next call finds nothing and the batch is empty.
        assert!(rx
            .recv(b.as_raw_fd(), MAX_BATCH, MsgFlags::MSG_DONTWAIT)
            .is_err());
        assert!(rx.is_empty());
    }

    #[test]
    fn each_datagram_goes_to_its_own_destination() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (b, c) = (
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("127.0.0.1:0").unwrap(),
        );
        let addr = |s: &UdpSocket| match s.local_addr().unwrap() {
            std::net::SocketAddr::V4(v) => Some(SockaddrIn::from(v)),
            _ => unreachable!(),
        };
        let mut tx: SendBatch = SendBatch::new();
        let sent = tx
            .send(a.as_raw_fd(), &[b"to b", b"to c"], &[addr(&b), addr(&c)])
            .unwrap();
        assert_eq!(sent, 2);
        for (s, want) in [(&b, &b"to b"[..]), (&c, &b"to c"[..])] {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 16];
            let n = s.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], want);
        }
    }

    #[test]
    fn ipv6_batches_carry_ipv6_sources_and_destinations() {
        use nix::sys::socket::SockaddrIn6;
        let bind6 = || {
            let s = UdpSocket::bind("[::1]:0").unwrap();
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            s
        };
        let (a, b, c) = (bind6(), bind6(), bind6());
        let addr = |s: &UdpSocket| match s.local_addr().unwrap() {
            std::net::SocketAddr::V6(v) => Some(SockaddrIn6::from(v)),
            _ => unreachable!(),
        };
        let mut tx = SendBatch::<SockaddrIn6>::new();
        let sent = tx
            .send(a.as_raw_fd(), &[b"to b", b"to c"], &[addr(&b), addr(&c)])
            .unwrap();
        assert_eq!(sent, 2);
        for (s, want) in [(&b, &b"to b"[..]), (&c, &b"to c"[..])] {
            let mut rx = RecvBatch::<16, SockaddrIn6>::new();
            let got = receive_all(&mut rx, s.as_raw_fd(), 1);
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].0, want);
            assert_eq!(Some(got[0].1), addr(&a), "the source is the sender's");
        }
    }
}
