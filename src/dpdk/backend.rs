//! The DPDK appliance as a node backend ([`crate::backend::Backend`]): the node's lifecycle opens
//! it (ports, queues, rings) before any seed file changes, learns the worker count from the
//! worker lcores, then starts the engine workers behind the frame layer on them.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crossbeam::channel::Receiver;

use super::appliance::{open, Appliance, Opened};
use super::capture::Capture;
use super::eal::Eal;
use super::error::DpdkError;
use super::processor::{frame_configs, FrameProcessor};
use super::telemetry;
use crate::backend::{Backend, NotStarted, Running, Stopped};
use crate::counters::Counters;
use crate::engine::config::Live;
use crate::engine::Worker;
use crate::journal::ClaimSink;
use crate::node_config::NodeConfig;
use crate::seed::SeedSource;

/// The appliance opened on a node config, its workers not started yet.
pub struct DpdkBackend<'eal> {
    opened: Opened<'eal>,
    eal: &'eal Eal,
    node: crate::node_config::NodeSection,
    telemetry: bool,
    capture: Option<Capture<'eal>>,
}

/// The appliance's workers running.
pub struct DpdkRunning<'eal, S: SeedSource + Send + 'static, J: ClaimSink + Send + 'static> {
    app: Appliance<'eal, FrameProcessor<S, J>>,
    describe: String,
    telemetry: bool,
    /// Registered until the workers are joined.
    _capture: Option<Capture<'eal>>,
}

impl<'eal> DpdkBackend<'eal> {
    /// Starts the ports of the config's `[[port]]` list with one queue pair per worker lcore,
    /// and with `[dpdk] capture`, the packet-capture framework.
    pub fn open(eal: &'eal Eal, config: &NodeConfig) -> Result<DpdkBackend<'eal>, DpdkError> {
        let section = super::appliance::section(config)?;
        let telemetry = section.telemetry;
        let capture = match section.capture {
            true => Some(Capture::init(eal)?),
            false => None,
        };
        Ok(DpdkBackend {
            opened: open(eal, config)?,
            eal,
            node: config.node.clone(),
            telemetry,
            capture,
        })
    }
}

impl<'eal> Backend for DpdkBackend<'eal> {
    type Error = DpdkError;
    type Running<S: SeedSource + Send + 'static, J: ClaimSink + Send + 'static> =
        DpdkRunning<'eal, S, J>;

    fn workers(&self) -> Option<usize> {
        Some(self.opened.workers())
    }

    fn workers_setting(&self) -> &'static str {
        "[dpdk] lcores (its worker lcores)"
    }

    fn start<S: SeedSource + Send + 'static, J: ClaimSink + Send + 'static>(
        self,
        workers: Vec<Worker<S, J>>,
        reloads: Vec<Receiver<Arc<Live>>>,
        stop: Arc<AtomicBool>,
    ) -> Result<DpdkRunning<'eal, S, J>, NotStarted<S, J, DpdkError>> {
        let frame = frame_configs(&self.node, self.opened.ports());
        let processors = workers
            .into_iter()
            .zip(reloads)
            .map(|(worker, reload)| FrameProcessor {
                worker,
                frame: frame.clone(),
                reload: Some(reload),
            })
            .collect();
        let ports: Vec<&str> = self
            .opened
            .ports()
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        let describe = format!(
            "dpdk port(s) {} with {} worker(s) on lcores {:?} (main lcore {}){}",
            ports.join(","),
            self.opened.workers(),
            self.opened.lcores(),
            self.eal.main_lcore(),
            self.capture
                .as_ref()
                .map(|c| format!(", {}", c.describe()))
                .unwrap_or_default()
        );
        let app = match self.opened.start(stop, processors) {
            Ok(app) => app,
            Err((error, processors)) => {
                let workers = processors.into_iter().map(|p| p.worker).collect();
                return Err(NotStarted { error, workers });
            }
        };
        if self.telemetry {
            // The counters on the telemetry socket are a convenience: serve without them.
            if let Err(e) = telemetry::publish(app.stats().clone()) {
                eprintln!(
                    "shake: {} not published on the telemetry socket: {e}",
                    telemetry::COMMAND
                );
            }
        }
        Ok(DpdkRunning {
            app,
            describe,
            telemetry: self.telemetry,
            _capture: self.capture,
        })
    }
}

impl<S: SeedSource + Send + 'static, J: ClaimSink + Send + 'static> Running<S, J>
    for DpdkRunning<'_, S, J>
{
    type Error = DpdkError;

    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn counters(&self) -> Vec<Arc<Counters>> {
        self.app.stats().workers.clone()
    }

    fn finished(&self) -> bool {
        // A worker that fails sets the stop flag for the node.
        self.app
            .stop_flag()
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn join(self) -> Stopped<S, J, DpdkError> {
        if self.telemetry {
            telemetry::withdraw();
        }
        let (processors, error) = self.app.join_each();
        Stopped {
            workers: processors
                .into_iter()
                .map(|p| p.map(|p| p.worker))
                .collect(),
            error,
        }
    }
}
