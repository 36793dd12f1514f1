use std::path::PathBuf;
use std::process::ExitCode;

use shake::reconcile::{tally_shard, StateTally};
use shake::seed::manifest::{verify, Manifest, MANIFEST_FILE};
use shake::seed::shard::ShardExpect;
use shake::seed::ShardImage;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Check every shard under DIR against DIR/manifest.toml (checksums, counts, totals).
    Verify { dir: PathBuf },
    /// Issued, unissued and forfeited packets and cents per sponsor and round.
    Status { dir: PathBuf },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Verify { dir } => {
            let m = Manifest::load(&dir.join(MANIFEST_FILE))?;
            let problems = verify(&dir, &m);
            for p in &problems {
                eprintln!("{p}");
            }
            if problems.is_empty() {
                println!(
                    "{}: {} shards, {} packets, {} cents: ok",
                    dir.display(),
                    m.shard.len(),
                    m.manifest.packets,
                    m.manifest.cents
                );
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("{}: {} problems", dir.display(), problems.len());
                Ok(ExitCode::FAILURE)
            }
        }
        Command::Status { dir } => {
            let m = Manifest::load(&dir.join(MANIFEST_FILE))?;
            let (ns, nr) = (m.sponsor.len(), m.round.len());
            let mut by_sponsor = vec![StateTally::default(); ns];
            let mut by_round = vec![StateTally::default(); nr];
            let mut missing = 0;
            for e in &m.shard {
                let path = dir.join(&e.file);
                let img = match ShardImage::load(
                    &path,
                    &ShardExpect {
                        activity_id: Some(m.manifest.activity_id),
                        node: Some(e.node),
                        worker: Some(e.worker),
                        sponsors: Some(ns),
                        rounds: Some(nr),
                        checksum: Some(e.checksum),
                    },
                ) {
                    Ok(i) => i,
                    Err(err) => {
                        eprintln!("{err}");
                        missing += 1;
                        continue;
                    }
                };
                let (s, r) = tally_shard(&img, ns, nr);
                for (acc, t) in by_sponsor
                    .iter_mut()
                    .zip(s)
                    .chain(by_round.iter_mut().zip(r))
                {
                    add(acc, &t);
                }
            }
            println!(
                "{:<12} {:>28} {:>28} {:>28}",
                "", "issued", "unissued", "forfeited"
            );
            for (s, t) in m.sponsor.iter().zip(&by_sponsor) {
                row(&format!("sponsor {}", s.id), t);
            }
            for (r, t) in m.round.iter().zip(&by_round) {
                row(&format!("round {}", r.id), t);
            }
            Ok(if missing == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

fn add(acc: &mut StateTally, t: &StateTally) {
    for (a, b) in [
        (&mut acc.issued, t.issued),
        (&mut acc.unissued, t.unissued),
        (&mut acc.forfeited, t.forfeited),
    ] {
        a.packets += b.packets;
        a.cents += b.cents;
    }
}

fn row(name: &str, t: &StateTally) {
    let cell = |m: shake::reconcile::Money| format!("{} pk / {} c", m.packets, m.cents);
    println!(
        "{:<12} {:>28} {:>28} {:>28}",
        name,
        cell(t.issued),
        cell(t.unissued),
        cell(t.forfeited)
    );
}
