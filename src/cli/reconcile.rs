use std::path::PathBuf;
use std::process::ExitCode;

#[cfg(feature = "fleet")]
use anyhow::Context;
use shake::fleet::message::StreamMessage;
use shake::reconcile::reconcile_with_stream;

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
    /// The paid side: the NATS server (nats://HOST:PORT) of the event's claims stream, read
    /// whole and checked against the journals (needs --fleet-name).
    #[arg(long, requires = "fleet_name")]
    pub stream: Option<String>,
    /// The event's name (`[fleet] name`), which names the stream and its subjects.
    #[arg(long, requires = "stream")]
    pub fleet_name: Option<String>,
}

/// The claims stream, read whole; `None` when not asked for.
#[cfg(feature = "fleet")]
fn read_stream(args: &Args) -> anyhow::Result<Option<Vec<StreamMessage>>> {
    let (Some(url), Some(name)) = (&args.stream, &args.fleet_name) else {
        return Ok(None);
    };
    let names = shake::fleet::Names::new(name);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let msgs = rt.block_on(async {
        let client = shake::fleet::stream::connect(url).await?;
        let js = async_nats::jetstream::new(client);
        anyhow::Ok(shake::fleet::stream::read_all(&js, &names).await?)
    })?;
    Ok(Some(msgs.with_context(|| {
        format!("{url}: no stream {}", names.stream())
    })?))
}

/// Without the NATS client (feature `fleet`) the stream cannot be read: said, not skipped.
#[cfg(not(feature = "fleet"))]
fn read_stream(args: &Args) -> anyhow::Result<Option<Vec<StreamMessage>>> {
    if args.stream.is_some() {
        anyhow::bail!(
            "--stream: this shake was built without the `fleet` feature (no NATS client)"
        );
    }
    Ok(None)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stream = read_stream(&args)?;
    let rep = reconcile_with_stream(
        &args.manifest,
        &args.seeds,
        &args.journals,
        stream.as_deref(),
    )?;
    println!(
        "{} shards, {} journals, {} journal records",
        rep.shards, rep.journals, rep.journal_records
    );
    if let Some(t) = rep.stream {
        println!(
            "{} stream messages, {} stream records",
            t.messages, t.records
        );
    }
    let with_stream = rep.stream.is_some();
    print!(
        "{:>10} {:>14} {:>14} {:>14} {:>14} {:>14}",
        "sponsor", "budget", "issued", "unissued", "forfeited", "journal paid"
    );
    if with_stream {
        print!(" {:>14}", "stream paid");
    }
    println!();
    for s in &rep.sponsors {
        print!(
            "{:>10} {:>14} {:>14} {:>14} {:>14} {:>14}",
            s.id,
            s.budget_cents,
            s.shards.issued.cents,
            s.shards.unissued.cents,
            s.shards.forfeited.cents,
            s.journal_claims.cents
        );
        if with_stream {
            print!(" {:>14}", s.stream_claims.cents);
        }
        println!();
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
