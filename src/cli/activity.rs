use std::path::PathBuf;
use std::process::ExitCode;

use shake::activity::Activity;

#[derive(clap::Args)]
pub struct Args {
    /// Activity file (TOML).
    pub file: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let a = Activity::load(&args.file)?;
    let (packets, cents) = a.totals();
    println!(
        "activity {} {:?}: {} sponsors, {} rounds, {} packets, {} cents",
        a.header.id,
        a.header.name,
        a.sponsors.len(),
        a.rounds.len(),
        packets,
        cents
    );
    Ok(ExitCode::SUCCESS)
}
