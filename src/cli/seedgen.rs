use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use shake::activity::Activity;
use shake::seed::manifest::{generate, MANIFEST_FILE};

#[derive(clap::Args)]
pub struct Args {
    /// Activity file (TOML).
    #[arg(long)]
    pub activity: PathBuf,
    /// Nodes the activity is served by.
    #[arg(long)]
    pub nodes: u32,
    /// Workers per node.
    #[arg(long)]
    pub workers: u32,
    /// Output directory: DIR/manifest.toml and DIR/node-<n>/worker-<w>.shard.
    #[arg(long)]
    pub out: PathBuf,
    /// Random seed: the same seed gives the same shards.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let a = Activity::load(&args.activity)?;
    let t = Instant::now();
    let m = generate(&a, args.nodes, args.workers, args.seed, &args.out)?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{}: activity {} {:?}: {} packets, {} cents in {} shards ({} nodes x {} workers) in {:.2} s ({:.1} M packets/s)",
        args.out.join(MANIFEST_FILE).display(),
        m.manifest.activity_id,
        m.manifest.activity_name,
        m.manifest.packets,
        m.manifest.cents,
        m.shard.len(),
        args.nodes,
        args.workers,
        secs,
        m.manifest.packets as f64 / secs.max(1e-9) / 1e6
    );
    Ok(ExitCode::SUCCESS)
}
