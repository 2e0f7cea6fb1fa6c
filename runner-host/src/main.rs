//! `runner-host`: run one SQL query over one dataset inside the wasm sandbox.
//!
//! - `run`: for people and scripts: resolves the dataset through `registry.json`.
//! - `exec`: the Kubernetes Job's entry point: the request comes in
//!   `RUNNER_REQUEST_JSON` (or on stdin) and the result goes out as one JSON line.
//! - `precompile`: writes the guest compiled for this host, for container images.

mod render;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use protocol::registry::Registry;
use protocol::{ErrorType, RunRequest, RunResult, RunStatus, defaults};
use runner_host::sandbox::{self, CpuTarget};
use runner_host::{ModuleSource, Profiler, Sandbox, SandboxOptions, module, request_for};

/// Exit status for a query that ran and failed (error or timeout).
const EXIT_QUERY_ERROR: u8 = 1;
/// Exit status for bad usage: what clap uses for bad flags, and ours for an
/// unknown dataset or an unreadable registry.
const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "runner-host",
    version,
    about = "Run SQL over CSV datasets inside a WebAssembly sandbox (DataFusion on wasmtime)",
    long_about = "Run SQL over CSV datasets inside a WebAssembly sandbox.\n\n\
        The query runs in Apache DataFusion compiled to wasm32-wasip1, executed by wasmtime with \
        only the dataset's folder visible (read-only, at /data), no network, no environment, \
        a wall-clock deadline, a memory cap and an output cap. A query that needs more memory \
        spills to a scratch directory of its own (read-write, at /scratch, removed when it \
        ends), up to a disk cap the host enforces.\n\n\
        The first start after a build compiles the guest with Cranelift (minutes) and caches \
        the result; later starts load it in milliseconds."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ModuleArgs {
    /// The guest module: a .wasm, .wat or precompiled .cwasm file. Default: the guest
    /// embedded in this binary.
    #[arg(long, env = "RUNNER_MODULE", value_name = "PATH")]
    module: Option<PathBuf>,
    /// Where compiled modules are cached. Default: $XDG_CACHE_HOME/csv-analyst or
    /// ~/.cache/csv-analyst.
    #[arg(long, env = "RUNNER_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

impl ModuleArgs {
    fn options(&self) -> SandboxOptions {
        SandboxOptions {
            module: ModuleSource::from_option(self.module.clone()),
            cache_dir: self.cache_dir.clone().or_else(module::default_cache_dir),
            profiler: Profiler::None,
            ..SandboxOptions::default()
        }
    }
}

#[derive(clap::Args)]
struct SpillArgs {
    /// Where a run that spills gets its own scratch directory, removed when it ends
    /// (directories left by a process that crashed are removed at start). Default:
    /// the system's temporary folder.
    #[arg(long, env = "RUN_SPILL_DIR", value_name = "DIR")]
    spill_dir: Option<PathBuf>,
}

impl SpillArgs {
    fn options(&self, module: &ModuleArgs) -> SandboxOptions {
        let mut options = module.options();
        if let Some(dir) = &self.spill_dir {
            options.spill_dir = dir.clone();
        }
        options
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run a query over a dataset of a datasets folder and print the result.
    ///
    /// Exit status: 0 on success, 1 when the query fails or times out, 2 on bad usage.
    Run(RunArgs),
    /// Run the request in $RUNNER_REQUEST_JSON (or on stdin) and print one JSON line.
    ///
    /// This is the runner container's entry point. File paths in the request are under
    /// /data, which maps to --data-dir. The exit status is 0 whenever a result was
    /// printed, failed queries included: the result says what happened.
    Exec(ExecArgs),
    /// Compile the guest for this host and write it as a precompiled artifact (.cwasm).
    Precompile(PrecompileArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// The folder holding registry.json and the CSV files.
    #[arg(long, env = "DATASETS_DIR", default_value = "datasets", value_name = "DIR")]
    datasets_dir: PathBuf,
    /// The dataset id, as in registry.json.
    #[arg(long, value_name = "ID")]
    dataset: String,
    /// The SQL query. Tables are named after their CSV files (tickets.csv → tickets).
    #[arg(long, value_name = "SQL")]
    sql: String,
    /// Wall-clock limit.
    #[arg(long, env = "RUNNER_TIMEOUT_MS", default_value_t = defaults::TIMEOUT_MS, value_name = "N")]
    timeout_ms: u64,
    /// Rows returned at most; more set `truncated`.
    #[arg(long, env = "RUNNER_MAX_ROWS", default_value_t = defaults::MAX_ROWS, value_name = "N")]
    max_rows: u64,
    /// Memory the guest may use, in MiB.
    #[arg(long, env = "RUNNER_MEMORY_MB", default_value_t = defaults::MEMORY_LIMIT_BYTES >> 20, value_name = "N")]
    memory_mb: u64,
    /// Serialized size of the returned rows at most; more set `truncated`.
    #[arg(long, env = "RUNNER_MAX_OUTPUT_BYTES", default_value_t = defaults::MAX_OUTPUT_BYTES, value_name = "N")]
    max_output_bytes: u64,
    /// Scratch disk the query may spill to when a sort, an aggregate or a window
    /// does not fit in memory, in MiB; 0 turns spilling off.
    #[arg(long, env = "RUN_SPILL_MAX_MB", default_value_t = defaults::SPILL_LIMIT_BYTES >> 20, value_name = "N")]
    spill_max_mb: u64,
    #[command(flatten)]
    spill: SpillArgs,
    /// Output format.
    #[arg(long, env = "RUNNER_FORMAT", value_enum, default_value_t = Format::Json)]
    format: Format,
    #[command(flatten)]
    module: ModuleArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// The RunResult as one JSON line.
    Json,
    /// A readable grid.
    Table,
    /// CSV with a header row.
    Csv,
}

#[derive(Clone, Copy, ValueEnum)]
enum Cpu {
    /// This machine's CPU.
    Native,
    /// x86-64-v2: SSE4.2 and POPCNT, any x86-64 machine of the last fifteen years.
    #[value(name = "x86-64-v2")]
    X86_64V2,
    /// x86-64-v3: AVX2, BMI2 and FMA (Haswell, Zen and later).
    #[value(name = "x86-64-v3")]
    X86_64V3,
}

#[derive(clap::Args)]
struct ExecArgs {
    /// The host folder the request's /data paths refer to.
    #[arg(long, env = "RUNNER_DATA_DIR", default_value = protocol::DATA_MOUNT, value_name = "DIR")]
    data_dir: PathBuf,
    /// (The request's `spill_limit_bytes` says how much the run may spill.)
    #[command(flatten)]
    spill: SpillArgs,
    #[command(flatten)]
    module: ModuleArgs,
}

#[derive(clap::Args)]
struct PrecompileArgs {
    /// Where to write the artifact.
    #[arg(long, value_name = "PATH")]
    out: PathBuf,
    /// The CPUs the artifact must run on. `native` uses every feature of this one;
    /// container images want a portable level.
    #[arg(long, env = "RUNNER_PRECOMPILE_CPU", value_enum, default_value_t = Cpu::Native)]
    cpu: Cpu,
    #[command(flatten)]
    module: ModuleArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(args),
        Command::Exec(args) => exec(args),
        Command::Precompile(args) => precompile(args),
    }
}

fn usage_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("runner-host: {message}");
    ExitCode::from(EXIT_USAGE)
}

fn run(args: RunArgs) -> ExitCode {
    let registry = match Registry::load(&args.datasets_dir) {
        Ok(registry) => registry,
        Err(e) => return usage_error(e),
    };
    let Some(dataset) = registry.dataset(&args.dataset) else {
        return usage_error(format!(
            "no dataset {:?} in {}; datasets: {}",
            args.dataset,
            args.datasets_dir.display(),
            registry.ids().join(", ")
        ));
    };
    let mut request = request_for(dataset, &args.sql);
    request.timeout_ms = args.timeout_ms;
    request.max_rows = args.max_rows;
    request.max_output_bytes = args.max_output_bytes;
    request.memory_limit_bytes = args.memory_mb.saturating_mul(1024 * 1024);
    request.spill_limit_bytes = args.spill_max_mb.saturating_mul(1024 * 1024);

    let sandbox = match Sandbox::new(&args.spill.options(&args.module)) {
        Ok(sandbox) => sandbox,
        Err(e) => return usage_error(e),
    };
    let result = sandbox.run_mounted(&args.datasets_dir, request);
    let text = match (args.format, result.status) {
        (Format::Json, _) => format!("{}\n", result.to_json_line()),
        (Format::Table, RunStatus::Success) => render::table(&result),
        (Format::Csv, RunStatus::Success) => match render::csv(&result) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("error: cannot write the result as CSV: {e}");
                return ExitCode::from(EXIT_QUERY_ERROR);
            }
        },
        (Format::Table | Format::Csv, _) => {
            // The message may quote the query or the data: shown escaped, like a table.
            let error = result.error.as_ref();
            let kind = error.map_or("INTERNAL", |e| e.error_type.as_str());
            eprintln!("error [{kind}]: {}", render::printable(error.map_or("", |e| e.message.as_str())));
            String::new()
        }
    };
    let mut stdout = std::io::stdout().lock();
    if stdout.write_all(text.as_bytes()).and_then(|_| stdout.flush()).is_err() {
        return ExitCode::from(EXIT_QUERY_ERROR);
    }
    if result.status == RunStatus::Success { ExitCode::SUCCESS } else { ExitCode::from(EXIT_QUERY_ERROR) }
}

fn exec(args: ExecArgs) -> ExitCode {
    let result = match read_exec_request() {
        Err(message) => RunResult::failure(ErrorType::InvalidRequest, message),
        Ok(request) => match Sandbox::new(&args.spill.options(&args.module)) {
            Ok(sandbox) => sandbox.run_mounted(&args.data_dir, request),
            Err(e) => RunResult::failure(ErrorType::SandboxError, e.to_string()),
        },
    };
    println!("{}", result.to_json_line());
    ExitCode::SUCCESS
}

fn read_exec_request() -> Result<RunRequest, String> {
    let text = match std::env::var("RUNNER_REQUEST_JSON") {
        Ok(text) => text,
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err("RUNNER_REQUEST_JSON is not UTF-8".to_string());
        }
        Err(std::env::VarError::NotPresent) => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(|e| format!("cannot read the request on stdin: {e}"))?;
            text
        }
    };
    serde_json::from_str(&text).map_err(|e| format!("the request is not a valid RunRequest: {e}"))
}

fn precompile(args: PrecompileArgs) -> ExitCode {
    let started = Instant::now();
    let cpu = match args.cpu {
        Cpu::Native => CpuTarget::Native,
        Cpu::X86_64V2 => CpuTarget::X86_64V2,
        Cpu::X86_64V3 => CpuTarget::X86_64V3,
    };
    let options = args.module.options();
    let written = sandbox::precompile(&options.module, cpu, options.cache_dir.as_deref())
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            std::fs::write(&args.out, &bytes).map_err(|e| format!("cannot write {}: {e}", args.out.display()))?;
            Ok(bytes.len())
        });
    match written {
        Ok(size) => {
            eprintln!(
                "runner-host: wrote {} ({:.1} MB) in {:.1} s",
                args.out.display(),
                size as f64 / 1e6,
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(message) => usage_error(message),
    }
}
