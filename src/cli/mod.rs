//! One module per subcommand; each exposes `Args` and `run(Args) -> anyhow::Result<ExitCode>`.
pub mod activity;
pub mod fleet;
pub mod journal;
pub mod pay;
pub mod reconcile;
pub mod recover;
pub mod seedgen;
pub mod seeds;
pub mod serve;
pub mod ship;
