//! DPDK mode: the generator's own EAL and one port (a net_memif client on a node's socket,
//! net_pcap, net_ring, a NIC), whole Ethernet/IPv4/UDP frames written from a
//! [`RequestTemplate`] (the bytes of [`Flow::emit`], cheaper), and every frame that comes
//! back read through [`shake::wire::Datagram`]. The main lcore does everything: build a burst, transmit it, poll RX, once
//! per pass; the TSC, read once a pass, is the clock that goes into client_ts.
//!
//! IPv6 phones (the population's IPv6 share) send Ethernet/IPv6/UDP frames of a template of
//! their own to the node's global IPv6 address and the same destination MAC: like the IPv4
//! phones, the generator answers nothing (no ARP, no NDP); answers come back to the port's
//! MAC and are read through [`shake::wire::Datagram6`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use shake::client::{Flow, Flow6};
use shake::dpdk::{Burst, Eal, Port, TscClock, BURST};
use shake::node_config::PortSection;

use crate::load::{Generator, Request};
use crate::pcap::PcapWriter;
use crate::template::RequestTemplate;
use crate::GenError;

#[derive(Debug, Clone)]
pub struct Options {
    /// The port's device name, e.g. "net_memif0".
    pub port: String,
    pub rx_desc: u16,
    pub tx_desc: u16,
    /// Addresses of every request; the source MAC is the port's unless set.
    pub flow: Flow,
    /// Addresses of the IPv6 share's requests (MACs as `flow`'s); `None`: no phone may
    /// shake over IPv6.
    pub flow6: Option<Flow6>,
    pub src_mac_from_port: bool,
    /// Source UDP ports used, from `flow.src_port` on: user k sends from port base + k mod n.
    pub src_ports: u16,
    /// How long to wait for the link (a memif client waits for its server).
    pub link_wait: Duration,
    /// Nap this long in a pass that moved nothing while paced or draining (0: spin).
    pub idle_sleep: Duration,
}

/// Nanoseconds from TSC cycles, as a 32.32 fixed-point multiplier.
struct Nanos {
    tsc0: u64,
    mult: u128,
}

impl Nanos {
    fn new(eal: &Eal) -> Nanos {
        let hz = TscClock::anchor_now(eal).hz().max(1);
        Nanos {
            tsc0: TscClock::tsc(),
            mult: (1_000_000_000u128 << 32) / u128::from(hz),
        }
    }

    #[inline]
    fn now(&self) -> u64 {
        ((u128::from(TscClock::tsc().wrapping_sub(self.tsc0)) * self.mult) >> 32) as u64
    }
}

/// EAL init with `eal_args` (`argv[0]` included), the port, then the load until the generator
/// is finished or `stop` is set. Returns nanoseconds elapsed.
pub fn run(
    gen: &mut Generator,
    eal_args: &[String],
    o: &Options,
    stop: &AtomicBool,
    mut pcap: Option<&mut PcapWriter<std::fs::File>>,
    live: &mut dyn FnMut(String),
) -> Result<u64, GenError> {
    let eal = Eal::init(eal_args)?;
    let section = PortSection {
        name: Some(o.port.clone()),
        id: None,
        rx_desc: o.rx_desc,
        tx_desc: o.tx_desc,
        mbufs: None,
        mempool_cache: 256,
        mtu: 1500,
        promiscuous: true,
        // Checksums are ours: the generator's frames are what a phone's kernel would send.
        offloads: false,
        rss: false,
    };
    let mut port = Port::open(&eal, 0, &section, 1, 0)?;
    let link = port.wait_link(o.link_wait);
    let info = port.info().clone();
    eprintln!("gen: port {} (id {}): {link}", info.name, info.id);
    if !link.starts_with("Link up") {
        return Err(GenError::LinkDown {
            port: info.name,
            wait: o.link_wait,
        });
    }
    let mut flow = o.flow;
    if o.src_mac_from_port {
        flow.src_mac = info.mac;
    }
    let flow6 = match o.flow6 {
        Some(f) => Some(Flow6 {
            src_mac: flow.src_mac,
            dst_mac: flow.dst_mac,
            vlan: flow.vlan,
            ..f
        }),
        None if gen.population().ipv6_users() > 0 => return Err(GenError::NoServer6),
        None => None,
    };
    let ports = o.src_ports.max(1);
    let src_port_of = |user: usize| {
        flow.src_port
            .wrapping_add((user % usize::from(ports)) as u16)
    };
    let template = RequestTemplate::new(&flow);
    let template6 = flow6.as_ref().map(RequestTemplate::new6);

    let clock = Nanos::new(&eal);
    gen.clock_started(crate::seconds::unix_ns());
    // One queue pair, opened above: its handles are taken once, here.
    let Some((mut rxq, mut txq)) = port.take_queues().and_then(|q| q.into_iter().next()) else {
        return Err(shake::dpdk::DpdkError::Config(format!("port {}: no queue", info.name)).into());
    };
    let mut tx = Burst::new();
    let mut rx = Burst::new();
    let mut reqs: Vec<Request> = Vec::with_capacity(BURST);
    let mut stopped = false;
    let mut no_mbufs = 0u64;
    loop {
        let t = clock.now();
        if !stopped && stop.load(Ordering::Relaxed) {
            gen.stop_sending(t);
            stopped = true;
        }
        if gen.finished(t) {
            break;
        }
        let mut moved = false;
        let n = gen.budget(t, BURST);
        if n > 0 && !port.pool().alloc_bulk(&mut tx, n) {
            // Answers hold the rest; they come back as RX frees them.
            no_mbufs += 1;
        } else if n > 0 {
            reqs.clear();
            for m in tx.as_mut_slice() {
                let Some(r) = gen.next(t) else { break };
                let template = match &template6 {
                    Some(t6) if r.ipv6 => t6,
                    _ => &template,
                };
                if !m.set_len(template.len()) {
                    return Err(GenError::MbufTooSmall(template.len()));
                }
                let ident = r.repr.seq as u16;
                template.write(m.data_mut(), src_port_of(r.user), &r.repr, ident);
                if let Some(w) = pcap.as_deref_mut() {
                    w.write(t, m.data()).map_err(GenError::Pcap)?;
                }
                reqs.push(r);
            }
            tx.truncate(reqs.len());
            let sent = txq.tx(&mut tx);
            gen.cancel_tail(&reqs[sent..]);
            tx.clear();
            moved |= sent > 0;
        }
        // Two clock reads a pass: the send time above, the receive time here (also the
        // tick's); TSC reads are not free in a VM.
        let got = rxq.rx(&mut rx);
        let t = clock.now();
        if got > 0 {
            moved = true;
            for m in rx.iter() {
                gen.on_frame(m.data(), &flow, flow6.as_ref(), t);
            }
            rx.clear();
        }
        if let Some(line) = gen.tick(t) {
            live(line);
        }
        if !moved
            && !o.idle_sleep.is_zero()
            && (gen.plan().rate.is_some() || stopped || gen.sending_done(t))
        {
            std::thread::sleep(o.idle_sleep);
        }
    }
    if no_mbufs > 0 {
        eprintln!("gen: the mempool ran dry {no_mbufs} times (answers slower than requests)");
    }
    let elapsed = clock.now();
    drop((rxq, txq, port));
    drop(eal);
    Ok(elapsed)
}
