//! `shake ship`: the claim shipper beside a node ([`shake::fleet::ship`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use shake::control::Signals;
use shake::fleet::ship::{self, ShipConfig, ShipMetrics};
use shake::fleet::Names;
use shake::node_config::NodeConfig;

#[derive(clap::Args)]
pub struct Args {
    /// The node's config: its `[activity] journal` is shipped to `[fleet] nats`, under
    /// `[fleet] name`; metrics on `[fleet] ship_metrics`.
    #[arg(long)]
    pub config: PathBuf,
    /// Most journal records per message.
    #[arg(long, default_value_t = 512)]
    pub batch: usize,
    /// How often an idle journal is looked at again, in milliseconds.
    #[arg(long, default_value_t = 2)]
    pub poll_ms: u64,
    /// Seconds between status lines on stdout (0: none).
    #[arg(long, default_value_t = 10)]
    pub interval_s: u64,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = NodeConfig::load(&args.config)?;
    let at = || args.config.display().to_string();
    let fleet = config
        .fleet
        .as_ref()
        .with_context(|| format!("{}: no [fleet] section: nothing to ship to", at()))?;
    let nats = fleet
        .nats
        .clone()
        .with_context(|| format!("{}: [fleet] has no nats URL", at()))?;
    let journal = config
        .activity
        .journal
        .as_ref()
        .map(|j| config.resolve(j))
        .with_context(|| format!("{}: [activity] has no journal directory", at()))?;
    anyhow::ensure!(args.batch >= 1, "--batch must be at least 1");
    let names = Names::of(fleet);
    let mut cfg = ShipConfig::new(names.clone(), journal.clone(), nats.clone());
    cfg.batch = args.batch;
    cfg.poll = Duration::from_millis(args.poll_ms);
    let signals = Signals::register().context("registering signal handlers")?;
    let stop = signals.stop.clone();
    let metrics = Arc::new(ShipMetrics::default());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("shake-ship")
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async {
        let endpoint = match fleet.ship_metrics {
            Some(addr) => {
                let l = ship::bind_metrics(addr)
                    .await
                    .with_context(|| format!("binding the metrics endpoint {addr}"))?;
                let local = l.local_addr()?;
                tokio::spawn(ship::serve_metrics(l, metrics.clone(), stop.clone()));
                format!(", metrics on http://{local}/metrics")
            }
            None => String::new(),
        };
        println!(
            "shake ship: shipping {} to {nats} stream {}{endpoint}",
            journal.display(),
            names.stream()
        );
        let shipper = tokio::spawn(ship::run(cfg, metrics.clone(), stop.clone()));
        let mut last = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if args.interval_s > 0 && last.elapsed() >= Duration::from_secs(args.interval_s) {
                last = Instant::now();
                println!("{}", metrics.line());
            }
        }
        let _ = shipper.await;
        println!("shake ship: stopped {}", metrics.line());
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
