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
    /// Print (as YAML) the Kubernetes Job that SANDBOX_PROVIDER=k8s would create
    /// for a query, with the same settings: for review, or `kubectl apply -f -`.
    RenderJob {
        /// The dataset id, as in registry.json.
        #[arg(long)]
        dataset: String,
        /// The SQL query (checked against the SQL policy first).
        #[arg(long)]
        sql: String,
        /// The run id the Job is named after. Default: a new one.
        #[arg(long)]
        run_id: Option<String>,
    },
    /// Serve the MCP tools over stdin and stdout (for Claude Desktop and other local
    /// MCP clients), with the local sandbox and these settings; logs go to stderr.
    Mcp,
    /// Mint, list and revoke the service's tokens, in the run store (RUN_STORE_PATH)
    /// the service uses: the same as POST/GET/DELETE /admin/tokens.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
}

#[derive(Subcommand)]
enum TokensCommand {
    /// Mint a token and print it (as JSON) — the only time its secret is shown.
    Create {
        /// Who the token is for; its runs and threads belong to this subject.
        #[arg(long)]
        subject: String,
        /// Dataset ids it may use, comma-separated, or `*` for all.
        #[arg(long, value_delimiter = ',', required = true)]
        datasets: Vec<String>,
        /// Lifetime, e.g. `30d`, `12h`. Default: no expiry.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
        /// The token may mint, list and revoke tokens and read every run.
        #[arg(long)]
        admin: bool,
    },
    /// List the tokens (without secrets), as JSON.
    List,
    /// Revoke a token by its id; effective at once.
    Revoke {
        /// The token's id (`token_id` in the list).
        token_id: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(message) = init_logging(&cli.config) {
        eprintln!("orchestrator: {message}");
        return ExitCode::from(2);
    }
    let outcome = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config),
        Command::RenderJob { dataset, sql, run_id } => render_job(&cli.config, &dataset, &sql, run_id),
        Command::Tokens { command } => tokens(&cli.config, command),
        Command::Mcp => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| runtime.block_on(orchestrator::server::run_mcp_stdio(cli.config))),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("orchestrator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(orchestrator::server::run(config))
}

fn render_job(config: &Config, dataset_id: &str, sql: &str, run_id: Option<String>) -> anyhow::Result<()> {
    config.validate().map_err(anyhow::Error::msg)?;
    orchestrator::sandbox::k8s::validate(&config.k8s).map_err(anyhow::Error::msg)?;
    let catalog = orchestrator::datasets::Catalog::load(&config.datasets_dir)?;
    let dataset = catalog.dataset(dataset_id).ok_or_else(|| {
        anyhow::anyhow!(
            "no dataset {dataset_id:?} in {}; datasets: {}",
            config.datasets_dir.display(),
            catalog.ids().join(", ")
        )
    })?;
    let scope = orchestrator::policy::Scope { dataset_id: dataset.id.clone(), tables: dataset.table_names() };
    if let Err(refusal) = orchestrator::policy::check(sql, &scope) {
        anyhow::bail!("the query would not run ({}): {}", refusal.error_type, refusal.message);
    }
    let settings = orchestrator::runs::RunSettings::from_config(config);
    let request = settings.request(&dataset, sql, orchestrator::runs::Limits::service(&settings));
    let namespace = orchestrator::sandbox::k8s::job_namespace(&config.k8s).map_err(anyhow::Error::msg)?;
    orchestrator::sandbox::k8s::job::check_request_size(&request).map_err(anyhow::Error::msg)?;
    let run_id = run_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let root = orchestrator::sandbox::DataRoot::Curated;
    let job = orchestrator::sandbox::k8s::job::build(config, &namespace, &run_id, &request, root);
    print!("{}", serde_yaml_ng::to_string(&job)?);
    Ok(())
}

fn tokens(config: &Config, command: TokensCommand) -> anyhow::Result<()> {
    use orchestrator::auth::tokens;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let output = runtime.block_on(async {
        let store = orchestrator::server::open_store_beside(config).await?;
        let store = store.as_ref();
        match command {
            TokensCommand::Create { subject, datasets, expires_in, admin } => {
                let catalog = orchestrator::datasets::Catalog::load(&config.datasets_dir)?;
                let request = tokens::MintRequest {
                    subject,
                    datasets,
                    expires_in_s: expires_in.map(|d| d.as_secs().max(1)),
                    admin,
                };
                let ids = catalog.ids();
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                let minted = tokens::create(store, &ids, &request).await?;
                let r = &minted.record;
                Ok::<_, anyhow::Error>(serde_json::json!({
                    "token": minted.token, "token_id": r.token_id, "subject": r.subject, "datasets": r.datasets,
                    "admin": r.admin, "expires_at": r.expires_at,
                }))
            }
            TokensCommand::List => {
                let list = tokens::list(store).await?;
                Ok(serde_json::json!({ "tokens": list.iter().map(|t| t.view()).collect::<Vec<_>>() }))
            }
            TokensCommand::Revoke { token_id } => {
                tokens::revoke(store, &token_id).await?;
                Ok(serde_json::json!({ "revoked": token_id }))
            }
        }
    })?;
    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(())
}

fn init_logging(config: &Config) -> Result<(), String> {
    let filter = match &config.log_level {
        Some(level) => EnvFilter::try_new(level).map_err(|e| format!("invalid LOG_LEVEL {level:?}: {e}"))?,
        None => match std::env::var("RUST_LOG") {
            Ok(directives) if !directives.is_empty() => {
                EnvFilter::try_new(&directives).map_err(|e| format!("invalid RUST_LOG {directives:?}: {e}"))?
            }
            _ => EnvFilter::new("info"),
        },
    };
    use std::io::IsTerminal;
    // Colours only on a terminal: a log file (an MCP client's, a container's) gets none.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}
