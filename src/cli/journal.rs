use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use shake::journal::{JournalReader, Kind, TailPolicy};
use shake::reconcile::journal_dirs;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Check every record of a journal: a segment FILE, a worker's directory, or a node's root.
    Verify { path: PathBuf },
    /// Write every record (claims and forfeits) to stdout, for the payment system.
    Export {
        path: PathBuf,
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
    },
}

/// Readers for a segment file, or for every journal directory under a directory.
fn readers(path: &Path) -> anyhow::Result<Vec<(PathBuf, JournalReader)>> {
    if path.is_file() {
        return Ok(vec![(
            path.to_path_buf(),
            JournalReader::open_file(path, TailPolicy::Strict)?,
        )]);
    }
    let dirs = journal_dirs(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if dirs.is_empty() {
        anyhow::bail!("{}: no journal segments (seg-*.jnl) found", path.display());
    }
    dirs.into_iter()
        .map(|d| {
            let r = JournalReader::open_dir(&d, None, TailPolicy::Strict)?;
            Ok((d, r))
        })
        .collect()
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Verify { path } => {
            let mut bad = 0;
            for (p, mut r) in readers(&path)? {
                let (mut claims, mut forfeits, mut cents) = (0u64, 0u64, 0u64);
                loop {
                    match r.next_record() {
                        Ok(Some(rec)) => match rec.kind {
                            Kind::Claim => {
                                claims += 1;
                                cents += rec.claim.amount_cents as u64;
                            }
                            Kind::Forfeit => forfeits += 1,
                        },
                        Ok(None) => {
                            let end = r.end().unwrap_or_default();
                            println!(
                                "{}: {} segments, {claims} claims ({cents} cents), {forfeits} forfeits{}: ok",
                                p.display(),
                                r.segments().len(),
                                if end.torn { ", torn last record ignored" } else { "" }
                            );
                            break;
                        }
                        Err(e) => {
                            eprintln!("{e}");
                            bad += 1;
                            break;
                        }
                    }
                }
            }
            Ok(if bad == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Export { path, format } => {
            let out = std::io::stdout();
            let mut w = BufWriter::new(out.lock());
            if let Format::Csv = format {
                writeln!(w, "node,worker,seq,kind,packet_id,user_id,amount_cents,sponsor_id,round_id,time_ms")?;
            }
            for (_, mut r) in readers(&path)? {
                let id = r
                    .segments()
                    .first()
                    .map(|s| s.header.id)
                    .unwrap_or_default();
                while let Some(rec) = r.next_record()? {
                    let c = rec.claim;
                    match format {
                        Format::Csv => writeln!(
                            w,
                            "{},{},{},{},{},{},{},{},{},{}",
                            id.node, id.worker, rec.seq, rec.kind.name(), c.packet_id, c.user_id,
                            c.amount_cents, c.sponsor_id, c.round_id, c.time_ms
                        )?,
                        Format::Jsonl => writeln!(
                            w,
                            "{{\"node\":{},\"worker\":{},\"seq\":{},\"kind\":\"{}\",\"packet_id\":{},\"user_id\":{},\"amount_cents\":{},\"sponsor_id\":{},\"round_id\":{},\"time_ms\":{}}}",
                            id.node, id.worker, rec.seq, rec.kind.name(), c.packet_id, c.user_id,
                            c.amount_cents, c.sponsor_id, c.round_id, c.time_ms
                        )?,
                    }
                }
            }
            w.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
