//! `shake pay`: the example payment consumer of the claims stream.
//!
//! A durable pull consumer with explicit acknowledgements: each message is acknowledged only
//! after every claim in it has been paid (here: a line appended to `--out` and synced), so a
//! crash between paying and acknowledging redelivers the message, and paying is idempotent by
//! packet id (the ids already in `--out` are read at start). Forfeit records are in the stream
//! for reconciliation; nobody is paid for them.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, consumer, AckKind};
use futures::StreamExt;
use shake::fleet::stream::{parse_subject, Batch};
use shake::fleet::Names;
use shake::journal::Kind;
use shake::node_config::NodeConfig;

#[derive(clap::Args)]
pub struct Args {
    /// A node config whose `[fleet]` names the NATS server and the event (or --nats and
    /// --fleet-name).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// NATS URL, e.g. nats://127.0.0.1:4222 (overrides the config's).
    #[arg(long)]
    pub nats: Option<String>,
    /// The event's name (overrides the config's).
    #[arg(long)]
    pub fleet_name: Option<String>,
    /// The durable consumer's name: the payment system's place in the stream.
    #[arg(long, default_value = "pay")]
    pub consumer: String,
    /// Where payments are recorded, one line per claim: `packet_id user_id amount_cents
    /// sponsor round activity.node.worker seq`. Without it, lines go to stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Stop after this many messages.
    #[arg(long)]
    pub max: Option<u64>,
    /// Stop when no message came for this many milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub idle_ms: u64,
}

/// Where the payment lines go, and which packets they already pay.
struct Ledger {
    file: Option<File>,
    paid: HashSet<u64>,
}

impl Ledger {
    fn open(out: Option<&PathBuf>) -> anyhow::Result<Ledger> {
        let mut paid = HashSet::new();
        let Some(path) = out else {
            return Ok(Ledger { file: None, paid });
        };
        if let Ok(f) = File::open(path) {
            for (i, line) in BufReader::new(f).lines().enumerate() {
                let line = line.with_context(|| format!("reading {}", path.display()))?;
                let id = line
                    .split_whitespace()
                    .next()
                    .and_then(|t| t.parse::<u64>().ok())
                    .with_context(|| format!("{}:{}: not a payment line", path.display(), i + 1))?;
                paid.insert(id);
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Ledger {
            file: Some(file),
            paid,
        })
    }

    /// Makes what was written durable: then the message may be acknowledged.
    fn sync(&mut self) -> anyhow::Result<()> {
        if let Some(f) = &mut self.file {
            f.sync_data().context("syncing the payment file")?;
        }
        Ok(())
    }

    fn write(&mut self, line: &str) -> anyhow::Result<()> {
        match &mut self.file {
            Some(f) => writeln!(f, "{line}").context("writing the payment file"),
            None => {
                println!("{line}");
                Ok(())
            }
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let fleet = match &args.config {
        Some(c) => NodeConfig::load(c)?.fleet,
        None => None,
    };
    let nats = args
        .nats
        .clone()
        .or_else(|| fleet.as_ref().and_then(|f| f.nats.clone()))
        .context("no NATS URL: give --nats or a --config with [fleet] nats")?;
    let name = args
        .fleet_name
        .clone()
        .or_else(|| fleet.as_ref().map(|f| f.name.clone()))
        .context("no event name: give --fleet-name or a --config with [fleet] name")?;
    let names = Names::new(&name);
    let mut ledger = Ledger::open(args.out.as_ref())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(pay(&args, &nats, &names, &mut ledger))
}

async fn pay(
    args: &Args,
    nats: &str,
    names: &Names,
    ledger: &mut Ledger,
) -> anyhow::Result<ExitCode> {
    let client = shake::fleet::stream::connect(nats).await?;
    let js = jetstream::new(client);
    let stream = js
        .get_stream(names.stream())
        .await
        .with_context(|| format!("stream {}", names.stream()))?;
    let consumer = stream
        .get_or_create_consumer(
            &args.consumer,
            consumer::pull::Config {
                durable_name: Some(args.consumer.clone()),
                ack_policy: consumer::AckPolicy::Explicit,
                deliver_policy: consumer::DeliverPolicy::All,
                ack_wait: Duration::from_secs(30),
                filter_subject: names.claims_subjects(),
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("consumer {}", args.consumer))?;
    let mut messages = consumer.messages().await?;
    let (mut n, mut paid, mut again, mut cents, mut bad) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let idle = Duration::from_millis(args.idle_ms);
    while args.max.map_or(true, |m| n < m) {
        let m = match tokio::time::timeout(idle, messages.next()).await {
            Err(_) | Ok(None) => break,
            Ok(Some(m)) => m?,
        };
        n += 1;
        let subject = m.subject.to_string();
        let batch = Batch::from_message(m.headers.as_ref(), m.payload.to_vec());
        let (Some(id), Ok(batch)) = (parse_subject(names, &subject), batch) else {
            // Not a claims batch: never paid, never silently dropped.
            bad += 1;
            eprintln!("shake pay: message on {subject} is not a claims batch: terminated");
            m.ack_with(AckKind::Term)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            continue;
        };
        for (r, _) in batch.records() {
            if r.kind != Kind::Claim {
                continue;
            }
            let c = r.claim;
            if !ledger.paid.insert(c.packet_id) {
                again += 1;
                continue;
            }
            ledger.write(&format!(
                "{} {} {} {} {} {}.{}.{} {}",
                c.packet_id,
                c.user_id,
                c.amount_cents,
                c.sponsor_id,
                c.round_id,
                id.activity_id,
                id.node,
                id.worker,
                r.seq
            ))?;
            paid += 1;
            cents += c.amount_cents as u64;
        }
        ledger.sync()?;
        // Acknowledged once paid, and confirmed by the server before the next.
        m.double_ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    eprintln!(
        "shake pay: {n} messages, {paid} claims paid ({cents} cents), {again} already paid, {bad} not claims"
    );
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
