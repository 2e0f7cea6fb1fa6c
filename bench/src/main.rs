//! csv-analyst's benchmark: what the sandbox costs, measured side by side in one run,
//! on the same data, as ratios (the machines are shared and noisy: absolute times
//! vary, ratios measured together hold).
//!
//! 1. Sandbox overhead: the same DataFusion code (the guest's own library) in the wasm
//!    sandbox and natively in this process, single partition both, run alternately in
//!    pairs (`--pairs`, 10 by default, after a warm-up of each): the median of the
//!    per-pair ratios → `wasm_over_native(_by_query)`; the aggregate's CSV megabytes per
//!    second of the median run → `wasm_mb_per_s`, `native_mb_per_s`.
//! 2. Where the scan's time goes, in pairs the same way, over the aggregate's tickets
//!    table: probes that split records only (`COUNT(*)`), decode one string column, decode
//!    one float column → `probe_ratios`; and a group-by over `generate_series` that reads
//!    no CSV at all, DataFusion's operators alone, the floor any CSV work can reach →
//!    `operator_only_ratio`.
//! 3. Engine comparison: the same queries in DuckDB (the Python package), in process
//!    and as a fresh process per query (what the upstream service paid) →
//!    `wasm_over_duckdb_by_query`, `duckdb_mb_per_s`.
//! 4. Cold start: a fresh `runner-host run` process with the precompiled guest →
//!    `cold_run_ms`; module load from the artifact, the cache, and a full compile.
//! 5. Service: `POST /runs` with the seed query against the local provider: p50/p99
//!    sequentially, runs per second at concurrency 1, 2, 8 → `local_p50_ms`, `local_runs_per_s`.
//! 6. Scaling: the aggregate over growing CSVs: time and guest peak memory → `scaling`.
//!
//! Prints a Markdown table with issue 13's targets, then one JSON line with every figure.
//!
//! `--big-data` runs only the section on data bigger than a run's memory (see
//! `big_data`): the sandbox at 256 MiB, spilling, against DuckDB at one thread and
//! 256MB. It needs no native DataFusion: `cargo run --release -p bench
//! --no-default-features -- --big-data` builds in minutes.
//!
//! Two other modes, for finding where the time goes:
//! - `--sql "SELECT …" --dataset support --mb 25`: that one query, wasm against native,
//!   in pairs.
//! - `--profile [--sql … --dataset …] [--mb 25] [--profile-seconds 60]`: only the
//!   aggregate (or `--sql`), in the sandbox, over and over, with wasmtime's perf map on
//!   ([`Profiler::PerfMap`]: `/tmp/perf-<pid>.map`), so that `perf record -g -p <pid>`
//!   then `perf report` name the guest's functions instead of `[unknown]` JIT code. The
//!   compilation cache serves as usual: wasmtime registers a module's code with the
//!   profiler whenever it loads it, cached or not. The functions have their Rust names:
//!   the `guest` profile strips debug info only and keeps the `name` section.

mod big_data;
mod measure;
mod service;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use protocol::registry::Registry;
use protocol::{RunRequest, RunResult, RunStatus};
use runner_host::sandbox::CpuTarget;
use runner_host::{ModuleSource, Profiler, Sandbox, SandboxOptions};
use serde_json::{Value, json};

use crate::measure::{Pairs, Samples, paired, quantile, time_n};

#[derive(Parser)]
#[command(name = "bench", about = "Measure csv-analyst's sandbox cost side by side")]
struct Cli {
    /// About a minute: smaller data, fewer repetitions, the same figures (the full
    /// Cranelift compile is skipped).
    #[arg(long)]
    quick: bool,
    /// Where generated data goes (outside the repository). Default: $TMPDIR/csv-analyst-bench.
    #[arg(long, env = "BENCH_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Python with the duckdb package, for the engine comparison.
    #[arg(long, env = "BENCH_PYTHON", default_value = "python3")]
    python: String,
    /// Instead of the whole benchmark: time this one query, wasm against native, on
    /// --dataset generated at --mb megabytes (for finding where the time goes).
    #[arg(long, requires = "dataset")]
    sql: Option<String>,
    #[arg(long)]
    dataset: Option<String>,
    /// Size of the data --sql and --profile run over.
    #[arg(long, default_value_t = 25)]
    mb: u32,
    /// Wasm/native pairs per query and probe (after one warm-up of each), also with
    /// --quick: the ratios are medians of the per-pair ratios.
    #[arg(long, default_value_t = 10)]
    pairs: usize,
    /// Instead of the benchmark: run the aggregate (or --sql over --dataset) in the
    /// sandbox over and over with wasmtime's perf map on, for `perf record -p <pid>`.
    #[arg(long)]
    profile: bool,
    /// How long --profile keeps running the query.
    #[arg(long, default_value_t = 60)]
    profile_seconds: u64,
    /// Instead of the benchmark: data bigger than memory, the sandbox at 256 MiB
    /// (spilling) against DuckDB at one thread and 256MB (8M rows, about 260 MB).
    #[arg(long)]
    big_data: bool,
}

/// Sizes and repetitions of a run.
struct Plan {
    overhead_mb: u32,
    scaling_mb: Vec<u32>,
    /// Wasm/native pairs per query and probe.
    pairs: usize,
    /// DuckDB runs per query, and scaling runs.
    repeats: usize,
    cold_runs: usize,
    latency_requests: usize,
    throughput_seconds: f64,
    full_compile: bool,
}

impl Plan {
    fn new(quick: bool, pairs: usize) -> Plan {
        if quick {
            Plan {
                overhead_mb: 25,
                scaling_mb: vec![5, 25, 100],
                pairs,
                repeats: 3,
                cold_runs: 5,
                latency_requests: 100,
                throughput_seconds: 2.0,
                full_compile: false,
            }
        } else {
            Plan {
                overhead_mb: 100,
                scaling_mb: vec![10, 100, 1000],
                pairs,
                repeats: 5,
                cold_runs: 15,
                latency_requests: 400,
                throughput_seconds: 8.0,
                full_compile: true,
            }
        }
    }
}

/// The tickets file is about 90.5 bytes a row: scale 1 is 0.54 MB.
const TICKETS_MB_PER_SCALE: f64 = 0.543;
/// The ecommerce dataset's order_items, per scale: about 0.29 MB.
const ITEMS_MB_PER_SCALE: f64 = 0.292;

/// Scan, filter, group-by aggregate.
const AGGREGATE: &str = "SELECT category, priority, COUNT(*) AS n, AVG(resolution_time_hours) AS avg_hours, \
     SUM(CASE WHEN sla_met THEN 1 ELSE 0 END) AS met FROM tickets WHERE status <> 'Open' \
     GROUP BY category, priority ORDER BY category, priority";
/// A join of the big order lines with the product table, aggregated.
const JOIN: &str = "SELECT inv.category, COUNT(*) AS lines, SUM(i.quantity * i.price) AS revenue \
     FROM order_items i JOIN inventory inv ON inv.product_id = i.product_id \
     GROUP BY inv.category ORDER BY inv.category";
const SEED: &str = "SELECT COUNT(*) AS ticket_count FROM tickets";
/// The engine queries: name, dataset, SQL, and issue 13's target for wasm over DuckDB
/// in process (the sandboxed aggregate at least as fast as DuckDB; the join, whose hash
/// join DuckDB does far better natively too, within twice).
const QUERIES: [(&str, &str, &str, f64); 2] =
    [("aggregate", "support", AGGREGATE, 1.0), ("join", "ecommerce", JOIN, 2.0)];
/// The target for wasm over native, both queries.
const NATIVE_TARGET: f64 = 1.5;
/// The target for the sandboxed aggregate's throughput: today's native figure.
const WASM_MB_PER_S_TARGET: f64 = 400.0;
/// The scan in pieces, over the aggregate's tickets table: JSON key, what it isolates, SQL.
/// Each decodes exactly the columns it names (the provider projects), so the differences
/// between them are the splitting and the per-type decoding.
const PROBES: [(&str, &str, &str); 3] = [
    ("count_star", "`COUNT(*)`: splitting records only", "SELECT COUNT(*) AS n FROM tickets"),
    ("one_string_column", "one Utf8 column decoded", "SELECT MAX(category) AS m FROM tickets"),
    ("one_float_column", "one Float64 column decoded", "SELECT SUM(resolution_time_hours) AS s FROM tickets"),
];
/// DataFusion's operators with no CSV at all (a hash aggregate over 3 M generated rows,
/// then a sort): the wasm/native ratio no scan can beat.
const OPERATORS_ONLY: &str = "SELECT v % 1000 AS k, COUNT(*) AS n, SUM(v) AS s \
     FROM generate_series(1, 3000000) AS t(v) GROUP BY k ORDER BY k";

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    anyhow::ensure!(cli.pairs >= 1, "--pairs must be at least 1");
    let plan = Plan::new(cli.quick, cli.pairs);
    let data = cli.data_dir.clone().unwrap_or_else(|| std::env::temp_dir().join("csv-analyst-bench"));
    std::fs::create_dir_all(&data)?;
    if cli.profile {
        return profile(&cli, &data);
    }
    if cli.big_data {
        return big_data::run(&data, &cli.python, runner_host::module::default_cache_dir());
    }
    let started = Instant::now();
    let mut report = Report { pairs: plan.pairs, ..Report::default() };

    eprintln!("bench: loading the sandbox (the first run after a build compiles the guest)");
    let cache = runner_host::module::default_cache_dir();
    let options = SandboxOptions {
        module: ModuleSource::Embedded,
        cache_dir: cache.clone(),
        profiler: Profiler::None,
        ..SandboxOptions::default()
    };
    let sandbox = Sandbox::new(&options)?;
    if let (Some(sql), Some(id)) = (&cli.sql, &cli.dataset) {
        return compare_one(&sandbox, &data, id, sql, cli.mb, plan.pairs);
    }

    // 1 and 3: the same queries in wasm and natively, in pairs, then in DuckDB.
    let tickets = dataset(&data, "support", scale_for(plan.overhead_mb as f64, TICKETS_MB_PER_SCALE))?;
    let shop = dataset(&data, "ecommerce", scale_for(plan.overhead_mb as f64, ITEMS_MB_PER_SCALE))?;
    for (name, id, sql, duckdb_target) in QUERIES {
        let dir = if id == "support" { &tickets } else { &shop };
        eprintln!("bench: {name} query, {} wasm/native pairs, then DuckDB", plan.pairs);
        let request = big_request(dir, id, sql)?;
        let pairs = wasm_native_pairs(&sandbox, dir, &request, plan.pairs)
            .with_context(|| format!("the {name} query, wasm against native"))?;
        let duck = duckdb(&cli.python, dir, id, sql, plan.repeats);
        report.engine.push(EngineRow { query: name, csv_mb: csv_mb(dir, id)?, pairs, duckdb: duck, duckdb_target });
    }

    // 2: the scan in pieces, and the operators without a scan.
    for (key, label, sql) in PROBES {
        eprintln!("bench: probe {key}, {} wasm/native pairs", plan.pairs);
        let request = big_request(&tickets, "support", sql)?;
        let pairs = wasm_native_pairs(&sandbox, &tickets, &request, plan.pairs)
            .with_context(|| format!("the {key} probe, wasm against native"))?;
        report.probes.push(ProbeRow { key, label, pairs });
    }
    eprintln!("bench: operators only (generate_series), {} wasm/native pairs", plan.pairs);
    // The request names the tickets file, which the query does not read.
    let request = big_request(&tickets, "support", OPERATORS_ONLY)?;
    report.operators = wasm_native_pairs(&sandbox, &tickets, &request, plan.pairs)
        .context("the operators-only query, wasm against native")?;

    // 4: cold start.
    eprintln!("bench: cold start");
    report.cold = cold_start(&sandbox, &datasets_dir(), &plan, cache.as_deref())?;

    // 5: the service.
    eprintln!("bench: service latency and throughput");
    report.service = service::measure(&datasets_dir(), &plan)?;

    // 6: scaling.
    for mb in &plan.scaling_mb {
        eprintln!("bench: scaling, {mb} MB");
        let dir = dataset(&data, "support", scale_for(*mb as f64, TICKETS_MB_PER_SCALE))?;
        let request = big_request(&dir, "support", AGGREGATE)?;
        let mut result = RunResult::failure(protocol::ErrorType::Internal, "not run");
        let samples = time_n(if *mb >= 1000 { 1 } else { plan.repeats.min(3) }, || {
            result = sandbox.run_mounted(&dir, request.clone());
            check(result.clone())
        })?;
        report.scaling.push(ScalingRow {
            csv_mb: csv_mb(&dir, "support")?,
            seconds: samples.median().as_secs_f64(),
            peak_memory_mb: result.stats.peak_memory_bytes.unwrap_or(0) as f64 / 1048576.0,
            memory_cap_mb: (request.memory_limit_bytes >> 20) as f64,
        });
    }

    report.print(cli.quick, started.elapsed());
    Ok(())
}

/// `request` in the sandbox (a) and natively in this process (b), alternately in
/// `n` pairs after a warm-up of each.
fn wasm_native_pairs(sandbox: &Sandbox, dir: &Path, request: &RunRequest, n: usize) -> anyhow::Result<Pairs> {
    let native_request = native_paths(dir, request);
    let root = dir.display().to_string();
    paired(
        n,
        || check(sandbox.run_mounted(dir, request.clone())).context("in the sandbox"),
        || check(native_run(&native_request, &root)).context("natively"),
    )
}

/// `--sql`: one query, wasm against native, in pairs.
fn compare_one(sandbox: &Sandbox, data: &Path, id: &str, sql: &str, mb: u32, pairs: usize) -> anyhow::Result<()> {
    let dir = dataset(data, id, scale_for(mb as f64, mb_per_scale(id)))?;
    let request = big_request(&dir, id, sql)?;
    let native_request = native_paths(&dir, &request);
    let root = dir.display().to_string();
    let mut guest_ms = Vec::with_capacity(pairs + 1);
    let timed = paired(
        pairs,
        || {
            let result = sandbox.run_mounted(&dir, request.clone());
            guest_ms.push(result.stats.guest_query_ms.unwrap_or(0.0));
            check(result).context("in the sandbox")
        },
        || check(native_run(&native_request, &root)).context("natively"),
    )?;
    println!(
        "wasm {:.1} ms (guest {:.1} ms), native {:.1} ms: {:.2}x, median of {pairs} pairs (middle half {:.2}–{:.2}x)  [{sql}]",
        timed.a.median_ms(),
        quantile(&mut guest_ms, 0.5),
        timed.b.median_ms(),
        timed.ratio_median(),
        timed.ratio_quantile(0.25),
        timed.ratio_quantile(0.75),
    );
    Ok(())
}

/// `--profile`: the aggregate (or `--sql` over `--dataset`) in a sandbox whose engine
/// writes a perf map, over and over, for `perf record` to sample from outside.
fn profile(cli: &Cli, data: &Path) -> anyhow::Result<()> {
    let (id, sql) = match (&cli.sql, &cli.dataset) {
        (Some(sql), Some(id)) => (id.as_str(), sql.as_str()),
        _ => ("support", AGGREGATE),
    };
    let dir = dataset(data, id, scale_for(cli.mb as f64, mb_per_scale(id)))?;
    let request = big_request(&dir, id, sql)?;
    // The cache serves: wasmtime writes the map whenever it loads a module, compiled or
    // deserialized, and the profiler is not part of the cache key (see Profiler::PerfMap).
    let options = SandboxOptions {
        module: ModuleSource::Embedded,
        cache_dir: runner_host::module::default_cache_dir(),
        profiler: Profiler::PerfMap,
        ..SandboxOptions::default()
    };
    let sandbox = Sandbox::new(&options).context("cannot load the guest with the perf map on")?;
    check(sandbox.run_mounted(&dir, request.clone())).context("the profiled query fails")?;

    let pid = std::process::id();
    println!("bench: pid {pid}: `{sql}` over {:.0} MB, for {} s", csv_mb(&dir, id)?, cli.profile_seconds);
    println!("bench: the guest's functions are listed in /tmp/perf-{pid}.map");
    println!("bench: in another shell: perf record -g -p {pid}   (it stops when this run ends, or at Ctrl-C)");
    println!("bench: then: perf report   (as the same user: perf ignores a map file someone else owns)");

    let deadline = Instant::now() + Duration::from_secs(cli.profile_seconds);
    let mut runs = Vec::new();
    while Instant::now() < deadline {
        let started = Instant::now();
        check(sandbox.run_mounted(&dir, request.clone())).context("the profiled query fails")?;
        runs.push(started.elapsed().as_secs_f64());
    }
    println!("bench: {} runs, median {:.1} ms", runs.len(), Samples::from_secs(&runs).median_ms());
    Ok(())
}

fn datasets_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets")
}

/// CSV megabytes per unit of scale of a dataset's big table.
fn mb_per_scale(id: &str) -> f64 {
    if id == "support" { TICKETS_MB_PER_SCALE } else { ITEMS_MB_PER_SCALE }
}

fn scale_for(mb: f64, mb_per_scale: f64) -> u32 {
    ((mb / mb_per_scale).round() as u32).max(1)
}

/// A generated dataset at `scale`, made once and kept under `data`.
fn dataset(data: &Path, id: &str, scale: u32) -> anyhow::Result<PathBuf> {
    let dir = data.join(format!("{id}-x{scale}"));
    if !dir.join("registry.json").is_file() {
        eprintln!("bench: generating {id} at scale {scale} in {}", dir.display());
        dataset_generator::generate_only(&dir, scale, &[id])?;
    }
    Ok(dir)
}

fn csv_mb(dir: &Path, id: &str) -> anyhow::Result<f64> {
    let registry = Registry::load(dir)?;
    let dataset = registry.dataset(id).context("dataset")?;
    let mut bytes = 0;
    for file in &dataset.files {
        bytes += std::fs::metadata(dir.join(&file.path))?.len();
    }
    Ok(bytes as f64 / 1e6)
}

/// A request with room for big data: 60 s, 1 GiB (the scaling rows use the default cap).
fn big_request(dir: &Path, id: &str, sql: &str) -> anyhow::Result<RunRequest> {
    let registry = Registry::load(dir)?;
    let mut request = runner_host::request_for(registry.dataset(id).context("dataset")?, sql);
    request.timeout_ms = 300_000;
    Ok(request)
}

/// The request with native paths, for the guest library run in this process.
fn native_paths(dir: &Path, request: &RunRequest) -> RunRequest {
    let mut native = request.clone();
    for file in &mut native.files {
        let rest = file.path.trim_start_matches(protocol::DATA_MOUNT);
        file.path = format!("{}{rest}", dir.display());
    }
    native
}

fn check(result: RunResult) -> anyhow::Result<()> {
    if result.status != RunStatus::Success {
        bail!("the run failed: {:?}", result.error);
    }
    Ok(())
}

/// `request` run natively, in this process, by the guest's own library.
#[cfg(feature = "native")]
fn native_run(request: &RunRequest, root: &str) -> RunResult {
    runner_guest::run_in(request, root, &std::env::temp_dir())
}

/// Built without the native guest (`--no-default-features`, for `--big-data`).
#[cfg(not(feature = "native"))]
fn native_run(_request: &RunRequest, _root: &str) -> RunResult {
    RunResult::failure(protocol::ErrorType::Internal, "bench was built without its `native` feature")
}

/// DuckDB timings: in process (median) and a fresh process per query (median).
fn duckdb(python: &str, dir: &Path, id: &str, sql: &str, repeats: usize) -> Option<(Samples, Samples)> {
    let registry = Registry::load(dir).ok()?;
    let dataset = registry.dataset(id)?;
    let views: Vec<String> = dataset
        .files
        .iter()
        .map(|f| {
            format!(
                "CREATE VIEW {} AS SELECT * FROM read_csv('{}', header=true)",
                f.table_name(),
                dir.join(&f.path).display()
            )
        })
        .collect();
    let script = format!(
        "import duckdb, json, sys, time\n\
         con = duckdb.connect()\n\
         con.execute('SET threads TO 1')\n\
         for v in {views:?}: con.execute(v)\n\
         times = []\n\
         for _ in range({repeats}):\n\
         \x20   t = time.perf_counter(); con.execute({sql:?}).fetchall(); times.append(time.perf_counter() - t)\n\
         print(json.dumps(times))\n"
    );
    let output = Command::new(python).args(["-c", &script]).output().ok()?;
    if !output.status.success() {
        eprintln!(
            "bench: DuckDB unavailable ({}): {}",
            python,
            String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or("")
        );
        return None;
    }
    let times: Vec<f64> = serde_json::from_slice(&output.stdout).ok()?;
    let in_process = Samples::from_secs(&times);
    // A fresh interpreter and database per query, as the upstream service ran it.
    let fresh_script = format!(
        "import duckdb\ncon = duckdb.connect()\ncon.execute('SET threads TO 1')\nfor v in {views:?}: con.execute(v)\ncon.execute({sql:?}).fetchall()\n"
    );
    let fresh = time_n(repeats.min(3), || {
        let status = Command::new(python).args(["-c", &fresh_script]).status()?;
        anyhow::ensure!(status.success(), "duckdb process failed");
        Ok(())
    })
    .ok()?;
    Some((in_process, fresh))
}

/// A fresh `runner-host run` process with the precompiled guest, and the module loads.
fn cold_start(sandbox: &Sandbox, datasets: &Path, plan: &Plan, cache: Option<&Path>) -> anyhow::Result<ColdRow> {
    let scratch = tempfile::tempdir()?;
    let artifact = scratch.path().join("guest.cwasm");
    std::fs::write(&artifact, sandbox.precompiled().map_err(anyhow::Error::msg)?)?;
    let runner = std::env::current_exe()?.parent().context("exe dir")?.join("runner-host");
    if !runner.is_file() {
        // `cargo run -p bench` builds the library, not the CLI next to it.
        let status = Command::new(env!("CARGO")).args(["build", "--release", "-p", "runner-host"]).status()?;
        anyhow::ensure!(status.success() && runner.is_file(), "cannot build {}", runner.display());
    }
    let process = time_n(plan.cold_runs, || {
        let output = Command::new(&runner)
            .args(["run", "--dataset", "support", "--sql", SEED, "--module"])
            .arg(&artifact)
            .arg("--datasets-dir")
            .arg(datasets)
            .output()?;
        anyhow::ensure!(
            output.status.success(),
            "runner-host run failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    })?;
    let load_precompiled = time_n(plan.cold_runs, || {
        let module = ModuleSource::File(artifact.clone());
        Sandbox::new(&SandboxOptions { module, cache_dir: None, profiler: Profiler::None, ..SandboxOptions::default() })
            .map(drop)
            .map_err(anyhow::Error::from)
    })?;
    let load_cached = time_n(plan.cold_runs, || {
        let cache_dir = cache.map(Path::to_path_buf);
        Sandbox::new(&SandboxOptions {
            module: ModuleSource::Embedded,
            cache_dir,
            profiler: Profiler::None,
            ..SandboxOptions::default()
        })
        .map(drop)
        .map_err(anyhow::Error::from)
    })?;
    let compile = if plan.full_compile {
        // A full Cranelift compile, bypassing the cache (a portable target forces it).
        let started = Instant::now();
        runner_host::sandbox::precompile(&ModuleSource::Embedded, CpuTarget::X86_64V2, None)?;
        Some(started.elapsed())
    } else {
        None
    };
    Ok(ColdRow { process, load_precompiled, load_cached, compile })
}

#[derive(Default)]
struct Report {
    /// Wasm/native pairs behind each ratio.
    pairs: usize,
    engine: Vec<EngineRow>,
    probes: Vec<ProbeRow>,
    /// The operators-only query: a is wasm, b native.
    operators: Pairs,
    cold: ColdRow,
    service: service::ServiceRow,
    scaling: Vec<ScalingRow>,
}

struct EngineRow {
    query: &'static str,
    csv_mb: f64,
    /// a is wasm, b native.
    pairs: Pairs,
    duckdb: Option<(Samples, Samples)>,
    /// The target for wasm over DuckDB in process.
    duckdb_target: f64,
}

impl EngineRow {
    fn wasm(&self) -> &Samples {
        &self.pairs.a
    }

    fn native(&self) -> &Samples {
        &self.pairs.b
    }

    /// The median of the per-pair ratios.
    fn wasm_over_native(&self) -> f64 {
        self.pairs.ratio_median()
    }

    /// DuckDB ran apart, not in pairs: a ratio of medians.
    fn wasm_over_duckdb(&self) -> Option<f64> {
        let (in_process, _) = self.duckdb.as_ref()?;
        Some(seconds(self.wasm()) / seconds(in_process))
    }

    fn wasm_mb_per_s(&self) -> f64 {
        self.csv_mb / seconds(self.wasm())
    }

    fn native_mb_per_s(&self) -> f64 {
        self.csv_mb / seconds(self.native())
    }

    fn duckdb_mb_per_s(&self) -> Option<f64> {
        let (in_process, _) = self.duckdb.as_ref()?;
        Some(self.csv_mb / seconds(in_process))
    }
}

/// One probe of the scan: a is wasm, b native.
struct ProbeRow {
    key: &'static str,
    label: &'static str,
    pairs: Pairs,
}

#[derive(Default)]
struct ColdRow {
    process: Samples,
    load_precompiled: Samples,
    load_cached: Samples,
    compile: Option<Duration>,
}

struct ScalingRow {
    csv_mb: f64,
    seconds: f64,
    peak_memory_mb: f64,
    memory_cap_mb: f64,
}

/// A streamed aggregate's guest peak memory stays under this, whatever the CSV's size
/// (measured: 11–12 MB from 10 MB to 1 GB, 4 MB of it the wasm stack; the default cap
/// is 256 MB). Buffering the file, or a batch per row group, would cross it.
const FLAT_PEAK_MB: f64 = 16.0;
/// "Flat": the largest CSV's peak exceeds the smallest's by at most this (measured:
/// 1.4 MB from 10 MB to 1 GB).
const FLAT_GROWTH_MB: f64 = 4.0;

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn seconds(samples: &Samples) -> f64 {
    samples.median().as_secs_f64()
}

/// Milliseconds, with a decimal below 100.
fn ms(x: f64) -> String {
    if x < 100.0 { format!("{x:.1} ms") } else { format!("{x:.0} ms") }
}

/// "wasm ms / native ms: **ratio×** (middle half of the pairs: q1–q3×)".
fn pair_cell(pairs: &Pairs) -> String {
    format!(
        "{} / {}: **{:.2}×** (middle half of the pairs {:.2}–{:.2}×)",
        ms(pairs.a.median_ms()),
        ms(pairs.b.median_ms()),
        pairs.ratio_median(),
        pairs.ratio_quantile(0.25),
        pairs.ratio_quantile(0.75)
    )
}

/// `{"aggregate": …, "join": …}` from each engine row.
fn by_query(rows: &[EngineRow], figure: impl Fn(&EngineRow) -> Value) -> Value {
    Value::Object(rows.iter().map(|e| (e.query.to_string(), figure(e))).collect())
}

impl Report {
    fn print(&self, quick: bool, elapsed: Duration) {
        let aggregate = self.engine.iter().find(|e| e.query == "aggregate");
        let wasm_over_native = self.engine.iter().map(EngineRow::wasm_over_native).fold(0.0, f64::max);
        // The aggregate's: issue 13's targets are per query (≤ 1.0 on the aggregate,
        // ≤ 2.0 on the join), so the single figure is the one the headline target is
        // about; both are in `wasm_over_duckdb_by_query`.
        let wasm_over_duckdb = aggregate.and_then(EngineRow::wasm_over_duckdb);
        let wasm_mb_per_s = aggregate.map(EngineRow::wasm_mb_per_s);
        let cold_run_ms = self.cold.process.median_ms();
        let s = &self.service;
        let best_rps = s.runs_per_s.iter().map(|(_, r)| *r).fold(0.0, f64::max);
        let (smallest, largest) = (self.scaling.first(), self.scaling.last());

        println!("## csv-analyst benchmark ({})\n", if quick { "quick" } else { "full" });
        println!("| figure | value | target |");
        println!("|---|---|---|");
        for e in &self.engine {
            println!(
                "| {} over {:.0} MB CSV: wasm / native DataFusion, median of {} per-pair ratios | {} | ≤ {NATIVE_TARGET}× ({}) |",
                e.query,
                e.csv_mb,
                self.pairs,
                pair_cell(&e.pairs),
                verdict(e.wasm_over_native() <= NATIVE_TARGET)
            );
            match (&e.duckdb, e.wasm_over_duckdb()) {
                (Some((duck, fresh)), Some(ratio)) => {
                    println!(
                        "| {}: wasm / DuckDB in process (1 thread) | {} / {} = **{ratio:.2}×** | ≤ {:.1}× ({}) |",
                        e.query,
                        ms(e.wasm().median_ms()),
                        ms(duck.median_ms()),
                        e.duckdb_target,
                        verdict(ratio <= e.duckdb_target)
                    );
                    println!(
                        "| {}: DuckDB in a fresh Python process per query | {} ({:.2}× the wasm run) | — |",
                        e.query,
                        ms(fresh.median_ms()),
                        seconds(fresh) / seconds(e.wasm())
                    );
                }
                _ => println!(
                    "| {}: DuckDB | not measured (no `duckdb` Python package) | ≤ {:.1}× (not measured) |",
                    e.query, e.duckdb_target
                ),
            }
        }
        if let Some(e) = aggregate {
            let duck = e.duckdb_mb_per_s().map_or("not measured".to_string(), |d| format!("{d:.0} MB/s"));
            println!(
                "| aggregate throughput: wasm / native / DuckDB | **{:.0} MB/s** / {:.0} MB/s / {duck} | wasm ≥ {WASM_MB_PER_S_TARGET:.0} MB/s ({}) |",
                e.wasm_mb_per_s(),
                e.native_mb_per_s(),
                verdict(e.wasm_mb_per_s() >= WASM_MB_PER_S_TARGET)
            );
        }
        for p in &self.probes {
            println!("| probe, {}: wasm / native | {} | — |", p.label, pair_cell(&p.pairs));
        }
        println!(
            "| operators only (group-by over `generate_series`, no CSV): wasm / native | {} | — (the floor for any query) |",
            pair_cell(&self.operators)
        );
        println!(
            "| cold `runner-host run` process, precompiled guest, seed query | **{cold_run_ms:.1} ms** | ≤ 50 ms ({}) |",
            verdict(cold_run_ms <= 50.0)
        );
        println!(
            "| module load: precompiled artifact / compilation cache | {:.1} ms / {:.1} ms | — |",
            self.cold.load_precompiled.median_ms(),
            self.cold.load_cached.median_ms()
        );
        match self.cold.compile {
            Some(c) => println!(
                "| module load: full Cranelift compile (no cache) | {:.1} s | once per build |",
                c.as_secs_f64()
            ),
            None => println!("| module load: full Cranelift compile (no cache) | skipped (--quick) | once per build |"),
        }
        println!(
            "| `POST /runs` seed query, sequential: p50 / p99 | **{:.1} ms** / {:.1} ms | p50 ≤ 15 ms ({}; aim ≤ 5) |",
            s.p50_ms,
            s.p99_ms,
            verdict(s.p50_ms <= 15.0)
        );
        for (c, rps) in &s.runs_per_s {
            println!("| `POST /runs` throughput at concurrency {c} | {rps:.0} runs/s | — |");
        }
        println!(
            "| best throughput | **{best_rps:.0} runs/s** | ≥ 100 ({}; aim ≥ 400 on two cores) |",
            verdict(best_rps >= 100.0)
        );
        for row in &self.scaling {
            println!(
                "| scaling: aggregate over {:.0} MB | {:.2} s ({:.0} MB/s), guest peak memory {:.1} MB of {:.0} MB | peak ≤ {FLAT_PEAK_MB:.0} MB ({}) |",
                row.csv_mb,
                row.seconds,
                row.csv_mb / row.seconds,
                row.peak_memory_mb,
                row.memory_cap_mb,
                verdict(row.peak_memory_mb <= FLAT_PEAK_MB)
            );
        }
        if let (Some(small), Some(large)) = (smallest, largest) {
            println!(
                "| flat memory: peak over {:.0} MB minus peak over {:.0} MB | {:.1} MB − {:.1} MB = {:.1} MB | ≤ {FLAT_GROWTH_MB:.0} MB ({}) |",
                large.csv_mb,
                small.csv_mb,
                large.peak_memory_mb,
                small.peak_memory_mb,
                large.peak_memory_mb - small.peak_memory_mb,
                verdict(large.peak_memory_mb - small.peak_memory_mb <= FLAT_GROWTH_MB)
            );
        }
        println!(
            "\n(measured on {} CPUs in {:.0} s; wasm/native ratios are medians of {} interleaved pairs)\n",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            elapsed.as_secs_f64(),
            self.pairs
        );

        let figures = json!({
            "mode": if quick { "quick" } else { "full" },
            "pairs": self.pairs,
            "wasm_over_native": round(wasm_over_native),
            "wasm_over_native_by_query": by_query(&self.engine, |e| json!(round(e.wasm_over_native()))),
            // The aggregate's (see above).
            "wasm_over_duckdb": wasm_over_duckdb.map(round),
            "wasm_over_duckdb_by_query": by_query(&self.engine, |e| json!(e.wasm_over_duckdb().map(round))),
            "wasm_ms_by_query": by_query(&self.engine, |e| json!(round(e.wasm().median_ms()))),
            "native_ms_by_query": by_query(&self.engine, |e| json!(round(e.native().median_ms()))),
            "duckdb_ms_by_query": by_query(&self.engine, |e| json!(e.duckdb.as_ref().map(|(d, _)| round(d.median_ms())))),
            "wasm_mb_per_s": wasm_mb_per_s.map(round),
            "native_mb_per_s": aggregate.map(|e| round(e.native_mb_per_s())),
            "duckdb_mb_per_s": aggregate.and_then(EngineRow::duckdb_mb_per_s).map(round),
            "operator_only_ratio": round(self.operators.ratio_median()),
            "probe_ratios": self.probes.iter().map(|p| (p.key.to_string(), json!(round(p.pairs.ratio_median())))).collect::<serde_json::Map<String, Value>>(),
            "duckdb_fresh_process_ms": self.engine.iter().filter_map(|e| e.duckdb.as_ref().map(|(_, f)| round(f.median_ms()))).collect::<Vec<_>>(),
            "cold_run_ms": round(cold_run_ms),
            "module_load_precompiled_ms": round(self.cold.load_precompiled.median_ms()),
            "module_load_cached_ms": round(self.cold.load_cached.median_ms()),
            "module_compile_s": self.cold.compile.map(|c| round(c.as_secs_f64())),
            "local_p50_ms": round(s.p50_ms),
            "local_p99_ms": round(s.p99_ms),
            "local_runs_per_s": round(best_rps),
            "local_runs_per_s_by_concurrency": s.runs_per_s.iter().map(|(c, r)| (c.to_string(), json!(round(*r)))).collect::<serde_json::Map<String, Value>>(),
            "scaling": self.scaling.iter().map(|r| json!({"csv_mb": round(r.csv_mb), "seconds": round(r.seconds), "mb_per_s": round(r.csv_mb / r.seconds), "peak_memory_mb": round(r.peak_memory_mb), "memory_cap_mb": r.memory_cap_mb})).collect::<Vec<_>>(),
        });
        println!("{figures}");
    }
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
