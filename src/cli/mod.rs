//! One module per subcommand; each exposes `Args` and `run(Args) -> anyhow::Result<ExitCode>`.
pub mod activity;
pub mod serve;
