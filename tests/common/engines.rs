//! The fleet's engines from Debian's packages (`etcd`, `nats-server`, `prometheus`), each
//! started by a test on loopback with its own data directory and ports, and stopped by its
//! PID when the test ends (or when the test stops, restarts or kills it on purpose).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long an engine may take to listen after its start.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Which engine, with the ports it was given.
#[derive(Debug, Clone)]
enum Kind {
    Etcd { client: u16, peer: u16 },
    Nats { client: u16 },
    Prometheus { web: u16, config: PathBuf },
}

/// A running engine. Its data directory survives [`Engine::stop`] and [`Engine::kill`], so
/// [`Engine::start_again`] brings the same server back on the same ports.
pub struct Engine {
    kind: Kind,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Engine {
    /// A single-member etcd cluster.
    pub fn etcd() -> Engine {
        Engine::start(Kind::Etcd {
            client: free_port(),
            peer: free_port(),
        })
    }

    /// nats-server with JetStream, storing under its own directory.
    pub fn nats() -> Engine {
        Engine::start(Kind::Nats {
            client: free_port(),
        })
    }

    /// Prometheus with the given config text (written into its directory as
    /// `prometheus.yml`; file_sd paths in it may be relative to that directory).
    pub fn prometheus(config: &str) -> Engine {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prometheus.yml");
        std::fs::write(&path, config).unwrap();
        let mut e = Engine {
            kind: Kind::Prometheus {
                web: free_port(),
                config: path,
            },
            dir,
            child: None,
        };
        e.start_again();
        e
    }

    fn start(kind: Kind) -> Engine {
        let mut e = Engine {
            kind,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        e.start_again();
        e
    }

    /// The engine's own directory (data, log, config).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The client URL: `http://127.0.0.1:P` (etcd, Prometheus) or `nats://127.0.0.1:P`.
    pub fn url(&self) -> String {
        match &self.kind {
            Kind::Etcd { client, .. } => format!("http://127.0.0.1:{client}"),
            Kind::Nats { client } => format!("nats://127.0.0.1:{client}"),
            Kind::Prometheus { web, .. } => format!("http://127.0.0.1:{web}"),
        }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        let port = match &self.kind {
            Kind::Etcd { client, .. } => *client,
            Kind::Nats { client } => *client,
            Kind::Prometheus { web, .. } => *web,
        };
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Starts the engine (again, after a stop or kill) and waits until it listens.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "engine already running");
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("engine.log"))
            .unwrap();
        let mut cmd = match &self.kind {
            Kind::Etcd { client, peer } => {
                let mut c = Command::new("etcd");
                let peer_url = format!("http://127.0.0.1:{peer}");
                c.arg("--name")
                    .arg("t")
                    .arg("--data-dir")
                    .arg(d.join("etcd"))
                    .arg("--listen-client-urls")
                    .arg(self.url())
                    .arg("--advertise-client-urls")
                    .arg(self.url())
                    .arg("--listen-peer-urls")
                    .arg(&peer_url)
                    .arg("--initial-advertise-peer-urls")
                    .arg(&peer_url)
                    .arg("--initial-cluster")
                    .arg(format!("t={peer_url}"))
                    .arg("--log-outputs")
                    .arg("stderr");
                let _ = client;
                c
            }
            Kind::Nats { client } => {
                let mut c = Command::new("nats-server");
                c.args(["-js", "-a", "127.0.0.1", "-p", &client.to_string(), "-sd"])
                    .arg(d.join("jetstream"));
                c
            }
            Kind::Prometheus { web, config } => {
                let mut c = Command::new("prometheus");
                c.arg(format!("--config.file={}", config.display()))
                    .arg(format!("--storage.tsdb.path={}", d.join("tsdb").display()))
                    .arg(format!("--web.listen-address=127.0.0.1:{web}"));
                c
            }
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {:?}: {e} (run `make deps`)", self.kind));
        self.child = Some(child);
        self.wait_listening();
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + READY_WITHIN;
        while TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).is_err() {
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("{:?} exited with {st}: {}", self.kind, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "{:?} does not listen after {READY_WITHIN:?}: {}",
                self.kind,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the engine wrote to its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("engine.log")).unwrap_or_default()
    }

    /// SIGTERM, and wait for the exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-15")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }

    /// SIGKILL, and wait for the exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.kill();
    }
}
