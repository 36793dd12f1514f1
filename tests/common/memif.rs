//! The test process as a DPDK client of the appliance over net_memif: its own EAL (once per
//! process: `--no-pci --no-huge --no-shconf`, its own `--file-prefix`, only the memif vdev),
//! a port in role=client on the appliance's socket, and a bounded send/receive loop.

use std::path::Path;
use std::time::{Duration, Instant};

use shake::dpdk::{Burst, Eal, Port, RxQueue, TxQueue};
use shake::node_config::PortSection;

use super::appliance::RuntimeDir;

/// A connected memif client port. The EAL lives as long as the test process (it cannot be
/// initialised twice anyway), so the port borrows it for `'static`.
pub struct MemifClient {
    port: Port<'static>,
    rx: RxQueue<'static>,
    tx: TxQueue<'static>,
    _runtime: RuntimeDir,
}

/// What a [`MemifClient::drive`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Driven {
    pub sent: u64,
    pub received: u64,
}

impl MemifClient {
    /// Initialises this process's EAL with a net_memif client on `socket` (abstract socket
    /// name, the default of net_memif) and waits at most `link_wait` for the appliance.
    pub fn connect(prefix: &str, socket: &Path, link_wait: Duration) -> MemifClient {
        Self::connect_with(prefix, socket, link_wait, "")
    }

    /// [`connect`](Self::connect) with more net_memif arguments, e.g. `,rsize=5` for rings of
    /// 32 slots (the client sets the rings' size).
    pub fn connect_with(
        prefix: &str,
        socket: &Path,
        link_wait: Duration,
        vdev_args: &str,
    ) -> MemifClient {
        let runtime = RuntimeDir::new(prefix);
        let args: Vec<String> = [
            "shake-test-client".to_owned(),
            "--lcores=0".into(),
            "-m".into(),
            "256".into(),
            "--no-huge".into(),
            "--no-pci".into(),
            "--no-shconf".into(),
            "--no-telemetry".into(),
            format!("--file-prefix={prefix}"),
            format!(
                "--vdev=net_memif_client0,role=client,id=0,socket={}{vdev_args}",
                socket.display()
            ),
            "--log-level=error".into(),
        ]
        .into();
        let eal: &'static Eal = Box::leak(Box::new(Eal::init(&args).expect("client EAL")));
        let section = PortSection {
            name: Some("net_memif_client0".into()),
            id: None,
            rx_desc: 1024,
            tx_desc: 1024,
            mbufs: Some(8191),
            mempool_cache: 32,
            mtu: 1500,
            promiscuous: false,
            offloads: true,
            rss: false,
        };
        let mut port = Port::open(eal, 0, &section, 1, 64).expect("client memif port");
        let link = port.wait_link(link_wait);
        assert!(
            link.starts_with("Link up"),
            "memif client did not connect to the appliance at {}: {link}",
            socket.display()
        );
        let (rx, tx) = port.take_queues().unwrap().remove(0);
        MemifClient {
            port,
            rx,
            tx,
            _runtime: runtime,
        }
    }

    /// Sends every frame, reading nothing (the appliance's answers pile up on its side);
    /// returns how many went before `deadline`.
    pub fn send_only(&mut self, frames: &[Vec<u8>], deadline: Instant) -> u64 {
        let pool = self.port.pool();
        let mut tx = Burst::new();
        let mut frames = frames.iter();
        let mut sent = 0;
        while Instant::now() < deadline {
            while !tx.is_full() {
                let Some(frame) = frames.next() else { break };
                let mut m = pool.alloc().expect("the client's pool has room");
                assert!(m.set_len(frame.len()), "frame fits an mbuf");
                m.data_mut().copy_from_slice(frame);
                tx.push(m).expect("burst has room");
            }
            if tx.is_empty() {
                break;
            }
            let n = self.tx.tx(&mut tx);
            sent += n as u64;
            if n == 0 {
                std::thread::yield_now();
            }
        }
        sent
    }

    /// Reads answers until `expected` came, nothing came for `idle`, or `deadline`; hands
    /// each to `on_answer` and returns how many came.
    pub fn receive(
        &mut self,
        expected: u64,
        idle: Duration,
        deadline: Instant,
        mut on_answer: impl FnMut(&[u8]),
    ) -> u64 {
        let mut rx = Burst::new();
        let mut got = 0;
        let mut last = Instant::now();
        while got < expected && Instant::now() < deadline && last.elapsed() < idle {
            let n = self.rx.rx(&mut rx);
            for m in rx.take() {
                on_answer(m.data());
            }
            if n > 0 {
                got += n as u64;
                last = Instant::now();
            } else {
                std::thread::yield_now();
            }
        }
        got
    }

    /// Sends one frame and returns its answer (within 10 s), or fails the test: e.g. the
    /// first shake, from which the worker paces the round's red packets.
    pub fn exchange_one(&mut self, frame: Vec<u8>) -> Vec<u8> {
        let mut once = Some(frame);
        let mut answer = Vec::new();
        let d = self.drive(
            || once.take(),
            1,
            Duration::from_secs(5),
            Instant::now() + Duration::from_secs(10),
            |a| answer = a.to_vec(),
        );
        assert_eq!((d.sent, d.received), (1, 1), "the first shake is answered");
        answer
    }

    /// Sends the frames `next` gives (until it gives `None`) with at most `window` unanswered
    /// at a time, and hands every frame received to `on_answer`. Returns when everything sent
    /// was answered and `next` is done, when nothing came for `idle` while answers were
    /// outstanding, or at `deadline`.
    pub fn drive(
        &mut self,
        mut next: impl FnMut() -> Option<Vec<u8>>,
        window: u64,
        idle: Duration,
        deadline: Instant,
        mut on_answer: impl FnMut(&[u8]),
    ) -> Driven {
        let pool = self.port.pool();
        let mut d = Driven::default();
        let mut tx = Burst::new();
        let mut rx = Burst::new();
        let mut done = false;
        let mut last_answer = Instant::now();
        while Instant::now() < deadline {
            // Fill the TX burst within the window (frames TX did not take stay in it).
            while !done && !tx.is_full() && d.sent + (tx.len() as u64) < d.received + window {
                let mut m = pool.alloc().expect("the client's pool outlasts its window");
                let Some(frame) = next() else {
                    done = true;
                    break;
                };
                assert!(m.set_len(frame.len()), "frame fits an mbuf");
                m.data_mut().copy_from_slice(&frame);
                tx.push(m).expect("burst has room");
            }
            d.sent += self.tx.tx(&mut tx) as u64;
            let n = self.rx.rx(&mut rx);
            for m in rx.take() {
                on_answer(m.data());
            }
            if n > 0 {
                d.received += n as u64;
                last_answer = Instant::now();
            }
            let outstanding = d.sent > d.received;
            if done && tx.is_empty() && !outstanding {
                break;
            }
            if outstanding && last_answer.elapsed() >= idle {
                break;
            }
            if n == 0 && (done || tx.is_full() || d.sent + tx.len() as u64 >= d.received + window) {
                // Nothing to do until answers come: yield the shared CPU.
                std::thread::yield_now();
            }
        }
        d
    }
}
