//! The csv-analyst runner guest: Apache DataFusion over the CSV files of one dataset.
//!
//! [`run`] takes one [`RunRequest`], exposes each CSV or Parquet file under `/data`
//! as a table (`dataset`), runs the SQL, and returns one [`RunResult`]; a
//! [`RequestKind::Describe`] request reads every file whole and answers its types
//! instead (`describe`: how uploads are typed). `main.rs` wraps it for
//! `wasm32-wasip1` (request on stdin, result on stdout); the benchmark calls the same
//! code natively, to measure what the sandbox costs.
//!
//! This is the innermost of csv-analyst's defences, and it does not trust the host's
//! SQL policy: the statement's shape is bounded before parsing (`statements`),
//! DataFusion's [`SQLOptions`] refuse DDL, DML and statements, URL tables are off,
//! and a memory pool sized from the request's memory limit makes large operators
//! spill (`spill`: to the run's own scratch directory, up to the request's
//! `spill_limit_bytes`) or fail cleanly before the wasm memory cap traps. A hash
//! join cannot spill: one whose build side does not fit fails with a message saying
//! what to write instead (`errors::explain_memory`).
//!
//! The dialect is DataFusion's with the differences docs/sql.md lists: `statements`
//! rewrites spellings (FROM-first, `ORDER BY ALL`, introspection, and with `spellings`
//! DuckDB's and PostgreSQL's names for functions; `functions` adds the few DataFusion
//! lacks), `semantics` what casts and division mean and where NULLs sort,
//! `information_schema` describes the dataset, and an answer with no columns is an
//! error, never rows of nothing.
//!
//! [`SQLOptions`]: datafusion::execution::context::SQLOptions

mod csv_table;
mod dataset;
mod describe;
mod errors;
mod functions;
mod information_schema;
mod json_rows;
mod parquet_table;
mod semantics;
mod spellings;
mod spill;
mod statements;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use datafusion::catalog::SchemaProvider;
use datafusion::common::config::ConfigNonZeroUsize;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use protocol::{ErrorType, RequestKind, RunRequest, RunResult};

use crate::dataset::{BytesRead, DatasetSchema};
use crate::errors::classify;
use crate::information_schema::InformationSchema;
use crate::spill::{ScratchFiles, SortLargeFetches, SpillBudget};

/// The catalog DataFusion resolves unqualified names in; the dataset is its one schema.
const CATALOG: &str = "datafusion";
/// Rows per Arrow batch read from a CSV file.
const BATCH_SIZE: usize = 8192;
/// Share of the memory limit DataFusion's operators (hash tables, sorts) may hold.
/// The rest is for CSV batches in flight, result rows, static data and the allocator.
const MEMORY_POOL_SHARE: f64 = 0.6;
/// The share when the run may spill: an operator grows its memory before it counts
/// it (a hash table doubling holds old and new at once), and one that spills must
/// reach the pool's limit, never the wasm memory's, which would end the run.
const SPILLING_POOL_SHARE: f64 = 0.35;
/// Select-list aliases that WHERE may use (each one plans the statement again).
const MAX_ALIAS_SUBSTITUTIONS: usize = 4;
/// Spill files one merge pass reads at once (each an open file; the host allows a
/// run 512).
const MAX_SPILL_MERGE_FAN_IN: usize = 256;
/// Rows a sort with a limit keeps in memory as a top-k at most; a larger `LIMIT` plus
/// `OFFSET` sorts in full, spilling.
const MAX_TOP_K: usize = 100_000;
/// When spilling, a sort keeps back this fraction of the pool (1/n) for merging.
const SORT_MERGE_RESERVE_DIVISOR: usize = 2;
/// How deep the SQL parser may recurse: a deeper expression is a parse error.
const PARSER_RECURSION_LIMIT: usize = 64;

/// Runs `request`, whose file paths are under `/data`, spilling (when the request
/// allows it) to `/scratch`.
pub fn run(request: &RunRequest) -> RunResult {
    run_in(request, protocol::DATA_MOUNT, Path::new(protocol::SCRATCH_MOUNT))
}

/// Runs `request`, whose file paths must be under `data_root` (natively, any folder),
/// spilling to `scratch_dir` (natively, an empty folder of the caller's).
pub fn run_in(request: &RunRequest, data_root: &str, scratch_dir: &Path) -> RunResult {
    let runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => rt,
        Err(e) => {
            return RunResult::failure(ErrorType::Internal, format!("cannot start the async runtime: {e}"));
        }
    };
    let started = Instant::now();
    let bytes_read = BytesRead::default();
    let spill = (request.spill_limit_bytes > 0).then(|| SpillBudget::new(request.spill_limit_bytes));
    let scratch = spill.as_ref().map(|budget| ScratchFiles::new(scratch_dir, budget.clone()));
    let outcome = runtime.block_on(execute(request, data_root, scratch, bytes_read.clone()));
    let mut result = outcome.unwrap_or_else(|(error_type, message)| match &spill {
        Some(budget) if budget.exceeded() => RunResult::failure(
            ErrorType::SpillLimit,
            format!(
                "the query needs more than {} MiB of scratch disk to spill to (the run's limit, RUN_SPILL_MAX_MB); \
                 aggregate or filter more before sorting or grouping: {message}",
                budget.limit() >> 20
            ),
        ),
        _ => RunResult::failure(error_type, errors::explain_memory(error_type, message)),
    });
    result.stats.guest_query_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
    result.stats.bytes_read = Some(bytes_read.get());
    result.stats.spilled_bytes = spill.map(|budget| budget.written());
    result
}

pub(crate) type Failure = (ErrorType, String);

async fn execute(
    request: &RunRequest,
    data_root: &str,
    scratch: Option<ScratchFiles>,
    bytes_read: BytesRead,
) -> Result<RunResult, Failure> {
    let tables: Vec<String> = request.files.iter().map(|f| f.table.clone()).collect();
    let fail = |e: DataFusionError| classify(&e, &tables);
    let ctx = session(request, data_root, scratch, bytes_read.clone())?;
    if request.kind == RequestKind::Describe {
        return describe::describe(&ctx, &request.files, BATCH_SIZE, bytes_read).await;
    }
    let state = ctx.state();
    let mut statement = statements::prepare(&state, &request.sql, &tables).map_err(|e| (e.error_type, e.message))?;
    // A select-list alias used in WHERE is planned as its expression, where that is
    // the only thing it can mean (`statements::alias_into_where`).
    let mut attempts = 0;
    let plan = loop {
        match state.statement_to_plan(statement.clone()).await {
            Ok(plan) => break plan,
            Err(e) => match errors::missing_column(&e) {
                Some(name)
                    if attempts < MAX_ALIAS_SUBSTITUTIONS && statements::alias_into_where(&mut statement, &name) =>
                {
                    attempts += 1;
                }
                _ => return Err(fail(e)),
            },
        }
    };
    let options = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
    options.verify_plan(&plan).map_err(fail)?;
    if plan.schema().fields().is_empty() {
        return Err((
            ErrorType::SqlPlanError,
            "the query's answer has no columns; select at least one (SELECT * FROM t, or FROM t alone)".to_string(),
        ));
    }
    let frame = ctx.execute_logical_plan(plan).await.map_err(fail)?;

    let max_rows = usize::try_from(request.max_rows).unwrap_or(usize::MAX);
    // One row more than returned tells whether the result was cut, and lets
    // DataFusion stop early. EXPLAIN must stay the plan's root, and its output is small.
    let explain = matches!(frame.logical_plan(), LogicalPlan::Explain(_) | LogicalPlan::Analyze(_));
    let frame = if explain { frame } else { frame.limit(0, Some(max_rows.saturating_add(1))).map_err(fail)? };
    // The physical plan's schema: the logical plan's is from before the analyzer
    // rules (`semantics`) that may change a column's type.
    let task = Arc::new(frame.task_ctx());
    let physical = frame.create_physical_plan().await.map_err(fail)?;
    let (columns, column_types) = json_rows::describe(physical.schema().as_ref());
    let mut stream = execute_stream(physical, task).map_err(fail)?;

    let mut rows = json_rows::RowCollector::new(max_rows, request.max_output_bytes);
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(fail)?;
        if !rows.push_batch(&batch) {
            break;
        }
    }
    let truncated = rows.truncated();
    Ok(RunResult::success(columns, column_types, rows.into_rows(), truncated))
}

fn session(
    request: &RunRequest,
    data_root: &str,
    scratch: Option<ScratchFiles>,
    bytes_read: BytesRead,
) -> Result<SessionContext, Failure> {
    let memory_limit = usize::try_from(request.memory_limit_bytes).unwrap_or(usize::MAX);
    let spilling = scratch.is_some();
    let share = if spilling { SPILLING_POOL_SHARE } else { MEMORY_POOL_SHARE };
    let pool_bytes = (memory_limit as f64 * share) as usize;
    let disk = match scratch {
        None => DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        // The factory enforces the cap (DataFusion's own count covers only its
        // default files); the disk manager is told it too, for EXPLAIN ANALYZE.
        Some(files) => DiskManagerBuilder::default()
            .with_temp_file_factory(Arc::new(files))
            .with_max_temp_directory_size(request.spill_limit_bytes)
            .with_max_spill_merge_fan_in(MAX_SPILL_MERGE_FAN_IN),
    };
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(pool_bytes, 1.0)
        .with_disk_manager_builder(disk)
        .build_arc()
        .map_err(|e| (ErrorType::Internal, format!("cannot set up the query engine: {e}")))?;

    let mut config = SessionConfig::new()
        .with_target_partitions(1)
        .with_batch_size(BATCH_SIZE)
        .with_information_schema(false)
        .with_default_catalog_and_schema(CATALOG, &request.dataset_id);
    let options = config.options_mut();
    options.sql_parser.recursion_limit = ConfigNonZeroUsize::try_new(PARSER_RECURSION_LIMIT)
        .map_err(|e| (ErrorType::Internal, format!("invalid parser recursion limit: {e}")))?;
    options.sql_parser.default_null_ordering = semantics::NULL_ORDERING.to_string();
    if spilling {
        // A sort merges what it holds in memory (to write a sorted run, or to answer)
        // in memory the pool sees only as the merge goes: half the pool is kept back
        // for that, so the sort spills when the other half is full. With DataFusion's
        // fixed 10 MiB, a sort of 50 MB in a 90 MB pool never spilled and its final
        // merge ran out of memory.
        options.execution.sort_spill_reservation_bytes = pool_bytes / SORT_MERGE_RESERVE_DIVISOR;
    }

    let mut state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        // Ahead of DataFusion's planners, which `with_default_features` appends.
        .with_expr_planners(vec![Arc::new(semantics::StringSubscripts)])
        .with_default_features()
        .with_analyzer_rules(semantics::analyzer_rules());
    if spilling {
        // After DataFusion's rules, which push a limit into the sort below it.
        state = state.with_physical_optimizer_rule(Arc::new(SortLargeFetches { max_top_k: MAX_TOP_K }));
    }
    let state = state.build();
    let ctx = SessionContext::new_with_state(state);
    functions::register(&ctx);
    let schema = DatasetSchema::new(&request.files, data_root, BATCH_SIZE, bytes_read)
        .map_err(|message| (ErrorType::InvalidRequest, message))?;
    let catalog =
        ctx.catalog(CATALOG).ok_or_else(|| (ErrorType::Internal, "the default catalog is missing".to_string()))?;
    let schema: Arc<dyn SchemaProvider> = Arc::new(schema);
    let information = InformationSchema::new(CATALOG, &request.dataset_id, schema.clone());
    catalog
        .register_schema(&request.dataset_id, schema)
        .and_then(|_| catalog.register_schema(information_schema::NAME, Arc::new(information)))
        .map_err(|e| (ErrorType::Internal, format!("cannot register the dataset: {e}")))?;
    Ok(ctx)
}
