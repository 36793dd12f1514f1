//! The `shake` command: the node and its seed and journal tools. The load generator is its
//! own binary, `shake-gen` (bench/gen/), so the appliance links no plotting or JSON.
use clap::{Parser, Subcommand};

mod cli;

#[derive(Parser)]
#[command(
    name = "shake",
    version = concat!(env!("CARGO_PKG_VERSION"), ", DPDK ", env!("SHAKE_DPDK_VERSION")),
    about = "SHAKE/1 access node"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print an activity's totals (a quick check of an activity file).
    Activity(cli::activity::Args),
    /// Serve SHAKE/1: DPDK poll-mode workers, or kernel sockets with --io socket.
    Serve(cli::serve::Args),
    /// Turn an activity into one seed shard per (node, worker) plus a manifest.
    Seedgen(cli::seedgen::Args),
    /// Verify shards against their manifest, or show what has been issued.
    Seeds(cli::seeds::Args),
    /// Verify or export claim journals.
    Journal(cli::journal::Args),
    /// Reconcile manifests, shards and journals of any number of nodes, to the cent.
    Reconcile(cli::reconcile::Args),
    /// Check a node's shards against its journals as `serve` would (changing nothing), or
    /// forfeit what a really lost journal cannot explain.
    Recover(cli::recover::Args),
    /// The fleet on etcd: push a live config to every node, see every node's state.
    #[cfg(feature = "fleet")]
    Fleet(cli::fleet::Args),
    /// Ship a node's claim journals to the fleet's JetStream stream, exactly once.
    #[cfg(feature = "fleet")]
    Ship(cli::ship::Args),
    /// The example payment consumer: take claims from the stream, pay each once, then ack.
    #[cfg(feature = "fleet")]
    Pay(cli::pay::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Activity(a) => cli::activity::run(a),
        Command::Serve(a) => cli::serve::run(a),
        Command::Seedgen(a) => cli::seedgen::run(a),
        Command::Seeds(a) => cli::seeds::run(a),
        Command::Journal(a) => cli::journal::run(a),
        Command::Reconcile(a) => cli::reconcile::run(a),
        Command::Recover(a) => cli::recover::run(a),
        #[cfg(feature = "fleet")]
        Command::Fleet(a) => cli::fleet::run(a),
        #[cfg(feature = "fleet")]
        Command::Ship(a) => cli::ship::run(a),
        #[cfg(feature = "fleet")]
        Command::Pay(a) => cli::pay::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("shake: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
