//! csv-analyst's benchmark: what the sandbox costs, measured side by side in one run,
//! on the same data, as ratios (the machines are shared and noisy: absolute times
//! vary, ratios measured together hold).
//!
//! 1. Sandbox overhead: the same DataFusion code (the guest's own library) in the wasm
//!    sandbox and natively in this process, single partition both → `wasm_over_native`.
//! 2. Engine comparison: the same queries in DuckDB (the Python package), in process
//!    and as a fresh process per query (what the upstream service paid) → `wasm_over_duckdb`.
//! 3. Cold start: a fresh `runner-host run` process with the precompiled guest →
//!    `cold_run_ms`; module load from the artifact, the cache, and a full compile.
//! 4. Service: `POST /runs` with the seed query against the local provider: p50/p99
//!    sequentially, runs per second at concurrency 1, 2, 8 → `local_p50_ms`, `local_runs_per_s`.
//! 5. Scaling: the aggregate over growing CSVs: time and guest peak memory → `scaling`.
//!
//! Prints a Markdown table, then one JSON line with every figure.

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
use runner_host::{ModuleSource, Sandbox, SandboxOptions};
use serde_json::{Value, json};

use crate::measure::{Samples, time_n};

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
    #[arg(long, default_value_t = 25)]
    mb: u32,
}

/// Sizes and repetitions of a run.
struct Plan {
    overhead_mb: u32,
    scaling_mb: Vec<u32>,
    repeats: usize,
    cold_runs: usize,
    latency_requests: usize,
    throughput_seconds: f64,
    full_compile: bool,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                overhead_mb: 25,
                scaling_mb: vec![5, 25, 100],
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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let plan = Plan::new(cli.quick);
    let data = cli.data_dir.clone().unwrap_or_else(|| std::env::temp_dir().join("csv-analyst-bench"));
    std::fs::create_dir_all(&data)?;
    let started = Instant::now();
    let mut report = Report::default();

    eprintln!("bench: loading the sandbox (the first run after a build compiles the guest)");
    let cache = runner_host::module::default_cache_dir();
    let sandbox = Sandbox::new(&SandboxOptions { module: ModuleSource::Embedded, cache_dir: cache.clone() })?;
    if let (Some(sql), Some(id)) = (&cli.sql, &cli.dataset) {
        return compare_one(&sandbox, &data, id, sql, cli.mb, plan.repeats);
    }

    // 1 and 2: the same queries in wasm, natively, and in DuckDB.
    let tickets_scale = scale_for(plan.overhead_mb as f64, TICKETS_MB_PER_SCALE);
    let tickets = dataset(&data, "support", tickets_scale)?;
    let items_scale = scale_for(plan.overhead_mb as f64, ITEMS_MB_PER_SCALE);
    let shop = dataset(&data, "ecommerce", items_scale)?;
    for (name, dir, id, sql) in [("aggregate", &tickets, "support", AGGREGATE), ("join", &shop, "ecommerce", JOIN)] {
        eprintln!("bench: {name} query, wasm vs native vs DuckDB");
        let request = big_request(dir, id, sql)?;
        let wasm = time_n(plan.repeats, || check(sandbox.run_mounted(dir, request.clone())))?;
        let native_request = native_paths(dir, &request);
        let root = dir.display().to_string();
        let native = time_n(plan.repeats, || check(runner_guest::run_in(&native_request, &root)))?;
        let duck = duckdb(&cli.python, dir, id, sql, plan.repeats);
        report.engine.push(EngineRow { query: name, csv_mb: csv_mb(dir, id)?, wasm, native, duckdb: duck });
    }

    // 3: cold start.
    eprintln!("bench: cold start");
    report.cold = cold_start(&sandbox, &datasets_dir(), &plan, cache.as_deref())?;

    // 4: the service.
    eprintln!("bench: service latency and throughput");
    report.service = service::measure(&datasets_dir(), &plan)?;

    // 5: scaling.
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

/// `--sql`: one query, wasm against native.
fn compare_one(sandbox: &Sandbox, data: &Path, id: &str, sql: &str, mb: u32, repeats: usize) -> anyhow::Result<()> {
    let per_scale = if id == "support" { TICKETS_MB_PER_SCALE } else { ITEMS_MB_PER_SCALE };
    let dir = dataset(data, id, scale_for(mb as f64, per_scale))?;
    let request = big_request(&dir, id, sql)?;
    let mut guest_ms = 0.0;
    let wasm = time_n(repeats, || {
        let result = sandbox.run_mounted(&dir, request.clone());
        guest_ms = result.stats.guest_query_ms.unwrap_or(0.0);
        check(result)
    })?;
    let native_request = native_paths(&dir, &request);
    let root = dir.display().to_string();
    let native = time_n(repeats, || check(runner_guest::run_in(&native_request, &root)))?;
    println!(
        "wasm {:.1} ms (guest {:.1} ms), native {:.1} ms: {:.2}x  [{sql}]",
        wasm.median_ms(),
        guest_ms,
        native.median_ms(),
        wasm.median_ms() / native.median_ms()
    );
    Ok(())
}

fn datasets_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets")
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
        Sandbox::new(&SandboxOptions { module: ModuleSource::File(artifact.clone()), cache_dir: None })
            .map(drop)
            .map_err(anyhow::Error::from)
    })?;
    let load_cached = time_n(plan.cold_runs, || {
        Sandbox::new(&SandboxOptions { module: ModuleSource::Embedded, cache_dir: cache.map(Path::to_path_buf) })
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
    engine: Vec<EngineRow>,
    cold: ColdRow,
    service: service::ServiceRow,
    scaling: Vec<ScalingRow>,
}

struct EngineRow {
    query: &'static str,
    csv_mb: f64,
    wasm: Samples,
    native: Samples,
    duckdb: Option<(Samples, Samples)>,
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

impl Report {
    fn print(&self, quick: bool, elapsed: Duration) {
        let ratio = |a: &Samples, b: &Samples| a.median().as_secs_f64() / b.median().as_secs_f64();
        let wasm_over_native = self.engine.iter().map(|e| ratio(&e.wasm, &e.native)).fold(0.0, f64::max);
        let wasm_over_duckdb =
            self.engine.iter().filter_map(|e| e.duckdb.as_ref().map(|(d, _)| ratio(&e.wasm, d))).reduce(f64::max);
        let cold_run_ms = self.cold.process.median_ms();
        let s = &self.service;
        let best_rps = s.runs_per_s.iter().map(|(_, r)| *r).fold(0.0, f64::max);
        let (smallest, largest) = (self.scaling.first(), self.scaling.last());

        println!("## csv-analyst benchmark ({})\n", if quick { "quick" } else { "full" });
        println!("| figure | value | target |");
        println!("|---|---|---|");
        for e in &self.engine {
            println!(
                "| {} over {:.0} MB CSV: wasm / native DataFusion | {:.0} ms / {:.0} ms = **{:.2}×** | ≤ 1.5× ({}) |",
                e.query,
                e.csv_mb,
                e.wasm.median_ms(),
                e.native.median_ms(),
                ratio(&e.wasm, &e.native),
                verdict(ratio(&e.wasm, &e.native) <= 1.5)
            );
            match &e.duckdb {
                Some((duck, fresh)) => {
                    println!(
                        "| {}: wasm / DuckDB in process (1 thread) | {:.0} ms / {:.0} ms = **{:.2}×** | — |",
                        e.query,
                        e.wasm.median_ms(),
                        duck.median_ms(),
                        ratio(&e.wasm, duck)
                    );
                    println!(
                        "| {}: DuckDB in a fresh Python process per query | {:.0} ms ({:.2}× the wasm run) | — |",
                        e.query,
                        fresh.median_ms(),
                        ratio(fresh, &e.wasm)
                    );
                }
                None => println!("| {}: DuckDB | not measured (no `duckdb` Python package) | — |", e.query),
            }
        }
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
            "| `POST /runs` seed query, sequential: p50 / p99 | **{:.1} ms** / {:.1} ms | p50 ≤ 15 ms ({}) |",
            s.p50_ms,
            s.p99_ms,
            verdict(s.p50_ms <= 15.0)
        );
        for (c, rps) in &s.runs_per_s {
            println!("| `POST /runs` throughput at concurrency {c} | {rps:.0} runs/s | — |");
        }
        println!("| best throughput | **{best_rps:.0} runs/s** | ≥ 100 ({}) |", verdict(best_rps >= 100.0));
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
            "\n(measured on {} CPUs in {:.0} s)\n",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            elapsed.as_secs_f64()
        );

        let figures = json!({
            "mode": if quick { "quick" } else { "full" },
            "wasm_over_native": round(wasm_over_native),
            "wasm_over_native_by_query": self.engine.iter().map(|e| (e.query.to_string(), json!(round(ratio(&e.wasm, &e.native))))).collect::<serde_json::Map<String, Value>>(),
            "wasm_over_duckdb": wasm_over_duckdb.map(round),
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
