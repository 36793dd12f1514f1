//! `shake fleet`: push a live config to every node of the event, and see the fleet.
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use shake::activity::Activity;
use shake::fleet::etcd::{self, EtcdTarget, FleetStatus};
use shake::fleet::Names;
use shake::node_config::NodeConfig;
use shake::time::unix_ms;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Validate an activity document (the activity file, with an optional [live] table) and
    /// publish it as the event's live config: every node applies it between bursts.
    Push(PushArgs),
    /// Every registered node: its address, the revision it applied, its rates and lag; and
    /// which nodes are missing.
    Status(StatusArgs),
}

/// Where the fleet is: read from a node's config (`[fleet]`, `[node] count`, its activity).
#[derive(clap::Args)]
struct Fleet {
    /// A node config of the fleet (any node's): its [fleet] section names etcd and the event.
    #[arg(long)]
    config: PathBuf,
}

#[derive(clap::Args)]
struct PushArgs {
    #[command(flatten)]
    fleet: Fleet,
    /// The document to publish.
    file: PathBuf,
    /// Publish only if the live config is still at this revision (the one you reviewed);
    /// by default, the revision read just before publishing.
    #[arg(long)]
    if_revision: Option<i64>,
}

#[derive(clap::Args)]
struct StatusArgs {
    #[command(flatten)]
    fleet: Fleet,
    /// One JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Wait (up to --timeout-s) until every one of the fleet's nodes is registered and has
    /// applied this revision (or a later one); then show how long each took from the push.
    #[arg(long)]
    wait_revision: Option<i64>,
    #[arg(long, default_value_t = 30)]
    timeout_s: u64,
    /// Also write Prometheus file-SD targets of the registered nodes and their shippers into
    /// this directory (`nodes/EVENT.json`, `ship/EVENT.json`: the `targets/` directory beside
    /// nic-config/fleet/prometheus.yml). Run it again as nodes come and go.
    #[arg(long)]
    prometheus_sd: Option<PathBuf>,
}

/// The fleet's etcd target and node count, from a node config.
fn target(f: &Fleet) -> anyhow::Result<(EtcdTarget, NodeConfig, Activity)> {
    let config = NodeConfig::load(&f.config)?;
    let activity = config.activity()?;
    let Some(fleet) = config.fleet.as_ref().filter(|f| !f.etcd.is_empty()) else {
        bail!(
            "{}: no [fleet] etcd endpoints: this node is not in a fleet",
            f.config.display()
        );
    };
    let t = EtcdTarget {
        endpoints: fleet.etcd.clone(),
        names: Names::of(fleet),
        activity: activity.header.id,
    };
    Ok((t, config, activity))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Push(a) => push(a),
        Command::Status(a) => status(a),
    }
}

fn push(a: PushArgs) -> anyhow::Result<ExitCode> {
    let (t, config, seeds_activity) = target(&a.fleet)?;
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("{}: cannot read", a.file.display()))?;
    // Checked as a node checks it, so that no node refuses what was pushed.
    let doc = Activity::parse(&a.file, &text)?;
    doc.check_same_ids(&seeds_activity)?;
    config.live_versioned(&doc, 0, 0)?;
    let rt = runtime()?;
    let expect = match a.if_revision {
        Some(r) => r,
        None => rt.block_on(etcd::current(&t))?.0,
    };
    let p = rt.block_on(etcd::push(&t, &text, expect))?;
    println!(
        "shake: pushed {} as revision {} of {} (replacing revision {}) at {}",
        a.file.display(),
        p.revision,
        t.names.live_key(t.activity),
        p.previous,
        p.pushed_ms
    );
    Ok(ExitCode::SUCCESS)
}

fn status(a: StatusArgs) -> anyhow::Result<ExitCode> {
    let (t, config, _) = target(&a.fleet)?;
    let count = config.node.count;
    let rt = runtime()?;
    let deadline = Instant::now() + Duration::from_secs(a.timeout_s);
    let st = loop {
        let st = rt.block_on(etcd::status(&t))?;
        let Some(want) = a.wait_revision else {
            break st;
        };
        let done = st.missing(count).is_empty() && st.nodes.iter().all(|n| n.revision >= want);
        if done {
            break st;
        }
        if Instant::now() >= deadline {
            print_status(&st, count, &t, a.json);
            bail!(
                "not every node applied revision {want} within {} s",
                a.timeout_s
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    print_status(&st, count, &t, a.json);
    if let Some(dir) = &a.prometheus_sd {
        let targets =
            |f: fn(&etcd::Registration) -> Option<&String>| -> Vec<(u32, std::net::SocketAddr)> {
                st.nodes
                    .iter()
                    .filter_map(|n| Some((n.node, f(n)?.parse().ok()?)))
                    .collect()
            };
        let nodes = targets(|n| n.metrics.as_ref());
        let ship = targets(|n| n.ship_metrics.as_ref());
        shake::fleet::prometheus::write_fleet_targets(dir, t.names.event(), &nodes, &ship)
            .with_context(|| format!("{}: writing Prometheus targets", dir.display()))?;
    }
    let missing = st.missing(count);
    Ok(if missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_status(st: &FleetStatus, count: u32, t: &EtcdTarget, json: bool) {
    let missing = st.missing(count);
    let now = unix_ms();
    // Behind: how long since the push a node has not applied (0 when it has).
    let lag_ms = |rev: i64| match st.pushed_ms {
        Some(p) if rev < st.revision => now.saturating_sub(p),
        _ => 0,
    };
    if json {
        let nodes: Vec<_> = st
            .nodes
            .iter()
            .map(|n| {
                serde_json::json!({
                    "registration": n,
                    "lag_ms": lag_ms(n.revision),
                    "push_to_applied_ms": st.pushed_ms
                        .filter(|_| n.revision >= st.revision)
                        .map(|p| n.applied_ms.saturating_sub(p)),
                })
            })
            .collect();
        let v = serde_json::json!({
            "event": t.names.event(),
            "revision": st.revision,
            "pushed_ms": st.pushed_ms,
            "count": count,
            "nodes": nodes,
            "missing": missing,
            "unreadable": st.unreadable,
        });
        println!("{v}");
        return;
    }
    println!(
        "fleet {}: live config revision {}{}, {} of {count} nodes registered",
        t.names.event(),
        st.revision,
        st.pushed_ms
            .map(|p| format!(
                " (pushed {:.1} s ago)",
                now.saturating_sub(p) as f64 / 1000.0
            ))
            .unwrap_or_default(),
        st.nodes.len()
    );
    println!(
        "{:>5} {:<22} {:>9} {:>9} {:>10} {:>12} {:>11} {:<22} refused",
        "node", "addr", "revision", "lag_s", "answers/s", "answers", "red_packets", "metrics"
    );
    for n in &st.nodes {
        println!(
            "{:>5} {:<22} {:>9} {:>9.1} {:>10.0} {:>12} {:>11} {:<22} {}",
            n.node,
            n.addr,
            n.revision,
            lag_ms(n.revision) as f64 / 1000.0,
            n.answer_rate,
            n.answers,
            n.red_packets,
            n.metrics.as_deref().unwrap_or("-"),
            n.refused.as_deref().unwrap_or("")
        );
    }
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|m| m.to_string()).collect();
        println!("missing: {}", list.join(", "));
    }
    for u in &st.unreadable {
        println!("unreadable registration: {u}");
    }
}
