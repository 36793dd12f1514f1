//! One module per subcommand; each exposes `Args` and `run(Args) -> anyhow::Result<ExitCode>`.
//! `fleet`, `ship` and `pay` talk to the fleet's engines: feature `fleet`, as their clients.
pub mod activity;
#[cfg(feature = "fleet")]
pub mod fleet;
pub mod journal;
#[cfg(feature = "fleet")]
pub mod pay;
pub mod reconcile;
pub mod recover;
pub mod seedgen;
pub mod seeds;
pub mod serve;
#[cfg(feature = "fleet")]
pub mod ship;
