//! `orchestrator`: csv-analyst's HTTP service.
//!
//! `orchestrator` (or `orchestrator serve`) serves the API; `orchestrator render-job`
//! prints the Kubernetes Job a run would create.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use orchestrator::Config;
use orchestrator::config::LogFormat;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "orchestrator",
    version,
    about = "csv-analyst: run untrusted SQL over curated CSV datasets in a WebAssembly sandbox",
    long_about = "csv-analyst's HTTP service. POST /runs with {\"dataset_id\", \"sql\"} runs the query in a \
        WebAssembly sandbox: in this process (SANDBOX_PROVIDER=local, the default) or as one Kubernetes \
        Job per run (SANDBOX_PROVIDER=k8s). Every flag can also be set through the environment variable \
        shown with it."
)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(message) = init_logging(&cli.config) {
        eprintln!("orchestrator: {message}");
        return ExitCode::from(2);
    }
    let outcome = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("orchestrator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(orchestrator::server::run(config))
}

fn init_logging(config: &Config) -> Result<(), String> {
    let filter = EnvFilter::try_new(&config.log_level)
        .map_err(|e| format!("invalid LOG_LEVEL {:?}: {e}", config.log_level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}
