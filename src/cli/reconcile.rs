use std::path::PathBuf;
use std::process::ExitCode;

use shake::reconcile::reconcile;

#[derive(clap::Args)]
pub struct Args {
    /// seedgen's manifest.toml.
    #[arg(long)]
    pub manifest: PathBuf,
    /// Directories holding shards (searched recursively for *.shard); any number of nodes'.
    #[arg(long = "seeds", required = true, num_args = 1..)]
    pub seeds: Vec<PathBuf>,
    /// Directories holding journals (searched recursively for seg-*.jnl); any number of nodes'.
    #[arg(long = "journals", num_args = 0..)]
    pub journals: Vec<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rep = reconcile(&args.manifest, &args.seeds, &args.journals)?;
    println!(
        "{} shards, {} journals, {} journal records",
        rep.shards, rep.journals, rep.journal_records
    );
    println!(
        "{:>10} {:>14} {:>14} {:>14} {:>14} {:>14}",
        "sponsor", "budget", "issued", "unissued", "forfeited", "journal paid"
    );
    for s in &rep.sponsors {
        println!(
            "{:>10} {:>14} {:>14} {:>14} {:>14} {:>14}",
            s.id,
            s.budget_cents,
            s.shards.issued.cents,
            s.shards.unissued.cents,
            s.shards.forfeited.cents,
            s.journal_claims.cents
        );
    }
    // By kind, with the first few of each: one systematic fault shows as one line with its
    // count, not millions.
    for (kind, k) in &rep.problems {
        eprintln!("MISMATCH {kind}: {} occurrences", k.count);
        for e in &k.examples {
            eprintln!("  {e}");
        }
        if k.count > k.examples.len() as u64 {
            eprintln!("  ... and {} more", k.count - k.examples.len() as u64);
        }
    }
    if rep.is_exact() {
        println!("reconcile: exact");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "reconcile: {} problems of {} kinds",
            rep.problem_count,
            rep.problems.len()
        );
        Ok(ExitCode::FAILURE)
    }
}
