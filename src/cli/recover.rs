//! `shake recover`: start-up recovery on its own, for the operator.
//!
//! `serve` refuses to start when a node's journals cannot explain its shards' marks (the
//! wrong journal directory, an emptied one, seeds generated again): forfeiting what the journal
//! does not record would forget paid packets and reset their winners' limits, so that is never
//! done silently. This command shows what recovery would do, and, with
//! `--forfeit-unjournaled`, does the one deliberate thing left when a journal is really lost:
//! records a forfeit for every marked packet the journal does not have, then closes the shards
//! cleanly so the next `serve` starts from a consistent state.

use std::path::PathBuf;
use std::process::ExitCode;

use shake::node::{unix_ms, Node};

#[derive(clap::Args)]
pub struct Args {
    /// Node config file (TOML).
    #[arg(long)]
    pub config: PathBuf,
    /// Forfeit every marked packet the journal cannot explain, instead of refusing. Their
    /// claims are lost: payment will not see them and their winners may win again.
    #[arg(long)]
    pub forfeit_unjournaled: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let node = Node::load(&args.config)?;
    let now = unix_ms();
    let plan = node.check_durable(now, args.forfeit_unjournaled)?;
    let summary = plan.summary();
    for w in &summary.workers {
        println!(
            "worker {}: {} records, {}, {} claims and {} forfeits in the journal, {} marks to set from it, {} marks past its end, {} packets to forfeit",
            w.worker,
            w.records,
            if !w.unclean {
                "closed cleanly"
            } else if w.power_cut {
                "not closed, by another boot"
            } else {
                "not closed, in this boot"
            },
            w.claims,
            w.forfeits,
            w.marks_fixed,
            w.unjournaled_marks,
            w.forfeited_now
        );
    }
    if !args.forfeit_unjournaled {
        println!(
            "recover: the journals explain the shards; `shake serve` will start ({} claims, {} packets to forfeit, {} cents). Nothing was changed.",
            summary.claims, summary.forfeited_now, summary.forfeited_cents
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (workers, flushers, done) = node.durable_workers_from(plan, now)?;
    for (f, w) in flushers.into_iter().zip(workers) {
        f.close(w)?;
    }
    println!(
        "recover: forfeited {} packets ({} cents) that the journals did not record; the shards are closed cleanly",
        done.forfeited_now, done.forfeited_cents
    );
    Ok(ExitCode::SUCCESS)
}
