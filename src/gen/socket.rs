//! Socket mode: shakes over kernel UDP sockets to a node's address, in batches of
//! `sendmmsg`/`recvmmsg`. One thread drives every socket; each socket is connected to the
//! server from its own source port, so a node with several `SO_REUSEPORT` workers sees the
//! load spread over them.

use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::errno::Errno;
use nix::sys::socket::{recvmmsg, sendmmsg, MsgFlags, MultiHeaders, SockaddrIn};

use super::load::{Generator, Request};
use super::pcap::PcapWriter;
use crate::client::{payload, Flow};
use crate::wire::shake::PAYLOAD_LEN;

/// Most datagrams per system call.
pub const MAX_BATCH: usize = 64;

#[derive(Debug, Clone)]
pub struct Options {
    pub server: SocketAddrV4,
    /// Sockets (source ports).
    pub sockets: usize,
    /// Datagrams per system call, at most [`MAX_BATCH`].
    pub batch: usize,
}

/// Runs the load until the generator is finished or `stop` is set; `live` gets a line a
/// second. Returns nanoseconds elapsed.
pub fn run(
    gen: &mut Generator,
    o: &Options,
    stop: &AtomicBool,
    mut pcap: Option<&mut PcapWriter<std::fs::File>>,
    live: &mut dyn FnMut(String),
) -> anyhow::Result<u64> {
    let batch = o.batch.clamp(1, MAX_BATCH);
    let mut socks = Vec::with_capacity(o.sockets.max(1));
    for _ in 0..o.sockets.max(1) {
        let s = UdpSocket::bind("0.0.0.0:0").context("binding a UDP socket")?;
        s.connect(o.server)
            .with_context(|| format!("connecting to {}", o.server))?;
        s.set_nonblocking(true)?;
        let s2 = socket2::SockRef::from(&s);
        let _ = s2.set_recv_buffer_size(4 << 20);
        let _ = s2.set_send_buffer_size(4 << 20);
        socks.push(s);
    }
    // The frames a pcap replay needs: loopback-style addresses, each socket's own port.
    let flows: Vec<Flow> = socks
        .iter()
        .map(|s| {
            let local = match s.local_addr() {
                Ok(std::net::SocketAddr::V4(a)) => a,
                _ => SocketAddrV4::new([127, 0, 0, 1].into(), 0),
            };
            let src_ip = if local.ip().is_unspecified() {
                [127, 0, 0, 1]
            } else {
                local.ip().octets()
            };
            Flow {
                src_mac: [2, 0, 0, 0, 0, 2],
                dst_mac: [2, 0, 0, 0, 0, 1],
                vlan: None,
                src_ip,
                dst_ip: o.server.ip().octets(),
                src_port: local.port(),
                dst_port: o.server.port(),
            }
        })
        .collect();

    let start = Instant::now();
    let now = || start.elapsed().as_nanos() as u64;
    let mut out = vec![[0u8; PAYLOAD_LEN]; MAX_BATCH];
    let mut reqs: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    let mut inb = vec![[0u8; 256]; MAX_BATCH];
    let mut tx_headers = MultiHeaders::<SockaddrIn>::preallocate(MAX_BATCH, None);
    let mut rx_headers = MultiHeaders::<SockaddrIn>::preallocate(MAX_BATCH, None);
    let to: [Option<SockaddrIn>; MAX_BATCH] = [None; MAX_BATCH];
    let mut frame = [0u8; 128];
    let mut turn = 0usize;
    let mut stopped = false;
    loop {
        let t = now();
        if !stopped && stop.load(Ordering::Relaxed) {
            gen.stop_sending(t);
            stopped = true;
        }
        if gen.finished(t) {
            break;
        }
        let mut busy = false;

        // Send a batch on the next socket.
        let n = gen.budget(t, batch);
        if n > 0 {
            let si = turn % socks.len();
            turn += 1;
            reqs.clear();
            for slot in out.iter_mut().take(n) {
                let Some(r) = gen.next(t) else { break };
                *slot = payload(&r.repr);
                reqs.push(r);
            }
            if !reqs.is_empty() {
                busy = true;
                let fd = socks[si].as_raw_fd();
                let iov: Vec<[IoSlice; 1]> = out[..reqs.len()]
                    .iter()
                    .map(|p| [IoSlice::new(p)])
                    .collect();
                let sent = match sendmmsg(
                    fd,
                    &mut tx_headers,
                    iov.iter(),
                    &to[..reqs.len()],
                    [],
                    MsgFlags::empty(),
                ) {
                    Ok(r) => r.count(),
                    Err(Errno::EAGAIN | Errno::ENOBUFS | Errno::ECONNREFUSED | Errno::EINTR) => 0,
                    Err(e) => return Err(anyhow::anyhow!("sendmmsg to {}: {e}", o.server)),
                };
                gen.cancel_tail(&reqs[sent..]);
                if let Some(w) = pcap.as_deref_mut() {
                    for (r, p) in reqs[..sent].iter().zip(&out) {
                        let len = flows[si].emit(&mut frame, p, r.repr.seq as u16);
                        w.write(r.repr.client_ts, &frame[..len])?;
                    }
                }
            }
        }

        // Receive whatever is there on every socket.
        for s in &socks {
            let fd = s.as_raw_fd();
            let lens: Vec<usize> = {
                let mut iovs: Vec<[IoSliceMut; 1]> =
                    inb.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
                match recvmmsg(
                    fd,
                    &mut rx_headers,
                    iovs.iter_mut(),
                    MsgFlags::MSG_DONTWAIT,
                    None,
                ) {
                    Ok(msgs) => msgs.map(|m| m.bytes).collect(),
                    Err(Errno::EAGAIN | Errno::EINTR | Errno::ECONNREFUSED) => Vec::new(),
                    Err(e) => return Err(anyhow::anyhow!("recvmmsg from {}: {e}", o.server)),
                }
            };
            if !lens.is_empty() {
                busy = true;
                let t = now();
                for (b, &len) in inb.iter().zip(&lens) {
                    gen.on_payload(&b[..len.min(b.len())], t);
                }
            }
        }

        if let Some(line) = gen.tick(now()) {
            live(line);
        }
        if !busy {
            // Paced below the machine's capacity, or waiting for answers: nap briefly.
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    Ok(now())
}
