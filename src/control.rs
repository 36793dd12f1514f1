//! The control side of a node: signals, the periodic counter line, the Prometheus text
//! endpoint and live reload. Runs on the main thread (the main lcore under DPDK), never on a
//! worker.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::counters::{Counters, IssuedSnapshot, Snapshot};

/// Flags set by signal handlers; the handlers do nothing else.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    /// SIGINT or SIGTERM: stop cleanly.
    pub stop: Arc<AtomicBool>,
    /// SIGHUP: reload the config.
    pub reload: Arc<AtomicBool>,
}

impl Signals {
    pub fn register() -> std::io::Result<Signals> {
        let s = Signals::default();
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, s.stop.clone())?;
        }
        signal_hook::flag::register(signal_hook::consts::SIGHUP, s.reload.clone())?;
        Ok(s)
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// True once per SIGHUP.
    pub fn take_reload(&self) -> bool {
        self.reload.swap(false, Ordering::Relaxed)
    }
}

/// The control loop's own counters: reloads applied and refused, and the config version in
/// force.
#[derive(Debug, Default)]
pub struct ControlCounters {
    pub reloads: std::sync::atomic::AtomicU64,
    pub reloads_refused: std::sync::atomic::AtomicU64,
    pub config_version: std::sync::atomic::AtomicU64,
    /// The node is in a fleet (`[fleet] etcd`): the fleet gauges below are exported.
    pub fleet: std::sync::atomic::AtomicBool,
    /// 1 while the node holds an etcd session, else 0.
    pub fleet_connected: std::sync::atomic::AtomicU64,
    /// The newest revision of the live config the node has seen in etcd.
    pub fleet_seen: std::sync::atomic::AtomicU64,
    /// etcd sessions that ended in an error.
    pub fleet_errors: std::sync::atomic::AtomicU64,
    /// Since when (unix ms) the node has not been both connected and on the newest revision;
    /// 0 while it is.
    pub fleet_out_of_sync_ms: std::sync::atomic::AtomicU64,
}

/// Every worker's counters and the control loop's, for reporting.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub workers: Vec<Arc<Counters>>,
    pub control: Arc<ControlCounters>,
}

impl Stats {
    pub fn snapshots(&self) -> Vec<Snapshot> {
        self.workers.iter().map(|c| c.snapshot()).collect()
    }

    pub fn total(&self) -> Snapshot {
        Snapshot::total(&self.snapshots())
    }

    /// Red packets and cents issued per sponsor and round, summed over the workers.
    pub fn issued(&self) -> IssuedSnapshot {
        let mut t = IssuedSnapshot::default();
        for c in &self.workers {
            c.issued.add_to(&mut t);
        }
        t
    }

    pub fn prometheus(&self) -> String {
        let mut out = String::from(
            "# TYPE shake_rx_frames_total counter\n# TYPE shake_tx_frames_total counter\n\
             # TYPE shake_answers_total counter\n# TYPE shake_decisions_total counter\n\
             # TYPE shake_replies_total counter\n# TYPE shake_drops_total counter\n\
             # TYPE shake_events_total counter\n# TYPE shake_reloads_total counter\n\
             # TYPE shake_config_version gauge\n\
             # TYPE shake_red_packets_total counter\n# TYPE shake_red_packet_cents_total counter\n",
        );
        let c = &self.control;
        out += &format!(
            "shake_reloads_total{{result=\"applied\"}} {}\nshake_reloads_total{{result=\"refused\"}} {}\nshake_config_version {}\n",
            c.reloads.load(Ordering::Relaxed),
            c.reloads_refused.load(Ordering::Relaxed),
            c.config_version.load(Ordering::Relaxed)
        );
        if c.fleet.load(Ordering::Relaxed) {
            let since = c.fleet_out_of_sync_ms.load(Ordering::Relaxed);
            let lag_s = match since {
                0 => 0.0,
                t => crate::time::unix_ms().saturating_sub(t) as f64 / 1000.0,
            };
            out += &format!(
                "# TYPE shake_fleet_etcd_connected gauge\nshake_fleet_etcd_connected {}\n\
                 # TYPE shake_fleet_revision_seen gauge\nshake_fleet_revision_seen {}\n\
                 # TYPE shake_fleet_etcd_errors_total counter\nshake_fleet_etcd_errors_total {}\n\
                 # TYPE shake_fleet_config_lag_seconds gauge\nshake_fleet_config_lag_seconds {lag_s:.3}\n",
                c.fleet_connected.load(Ordering::Relaxed),
                c.fleet_seen.load(Ordering::Relaxed),
                c.fleet_errors.load(Ordering::Relaxed),
            );
        }
        for (i, s) in self.snapshots().iter().enumerate() {
            s.prometheus(i, &mut out);
        }
        self.issued().prometheus(&mut out);
        out
    }
}

/// Prints one counter line per interval: totals since start and the rate over the interval.
pub struct Ticker {
    interval: Duration,
    last: Instant,
    last_total: Snapshot,
}

impl Ticker {
    pub fn new(interval: Duration) -> Self {
        Ticker {
            interval,
            last: Instant::now(),
            last_total: Snapshot::default(),
        }
    }

    /// The line to print if an interval has passed.
    pub fn poll(&mut self, stats: &Stats) -> Option<String> {
        if self.interval.is_zero() || self.last.elapsed() < self.interval {
            return None;
        }
        let secs = self.last.elapsed().as_secs_f64();
        self.last = Instant::now();
        let t = stats.total();
        let rx_rate = t.rx.saturating_sub(self.last_total.rx) as f64 / secs;
        let ans_rate = t.answered().saturating_sub(self.last_total.answered()) as f64 / secs;
        // Busy share of the poll-mode worker lcores, the mean over workers.
        let busy = t
            .busy_percent_since(&self.last_total)
            .map(|b| format!(" busy={b:.1}%"))
            .unwrap_or_default();
        self.last_total = t;
        Some(format!(
            "stats rx_rate={rx_rate:.0}/s answer_rate={ans_rate:.0}/s{busy} {}",
            t.line()
        ))
    }
}

/// The metrics endpoint's socket, bound before the node changes anything (a port in use is
/// a start-up error, not one found while serving).
#[derive(Debug)]
pub struct MetricsListener {
    listener: TcpListener,
    addr: SocketAddr,
}

impl MetricsListener {
    pub fn bind(addr: SocketAddr) -> std::io::Result<MetricsListener> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        Ok(MetricsListener { listener, addr })
    }

    /// The bound address (port 0 picks one).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Serves `GET /metrics` (any path) in Prometheus text format on `metrics` until `stop` is
/// set.
pub fn serve_metrics(
    metrics: MetricsListener,
    stats: Stats,
    stop: Arc<AtomicBool>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let MetricsListener {
        listener,
        addr: local,
    } = metrics;
    let handle = std::thread::Builder::new()
        .name("shake-prometheus".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
                        let mut req = [0u8; 1024];
                        let _ = conn.read(&mut req);
                        let body = stats.prometheus();
                        let _ = write!(
                            conn,
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    // Control-plane poll, not the datapath: a short nap between accepts.
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        })?;
    Ok((local, handle))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn red_packets_are_rendered_summed_over_workers() {
        let (sponsors, rounds) = ([5, 6], [1]);
        let stats = Stats {
            workers: (0..2)
                .map(|_| Arc::new(Counters::with_issued(&sponsors, &rounds)))
                .collect(),
            ..Stats::default()
        };
        stats.workers[0].issued.issued(1, 0, 40);
        stats.workers[1].issued.issued(1, 0, 2);
        let p = stats.prometheus();
        let lines: Vec<&str> = p.lines().collect();
        for want in [
            "# TYPE shake_red_packets_total counter",
            "# TYPE shake_red_packet_cents_total counter",
            "shake_red_packets_total{sponsor=\"6\",round=\"1\"} 2",
            "shake_red_packet_cents_total{sponsor=\"6\",round=\"1\"} 42",
            "shake_red_packets_total{sponsor=\"5\",round=\"1\"} 0",
        ] {
            assert!(lines.contains(&want), "{want} not in\n{p}");
        }
        // One series per sponsor and round, not per worker.
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.starts_with("shake_red_packets_total{"))
                .count(),
            2
        );
    }
}
