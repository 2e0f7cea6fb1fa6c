//! Runs: accept a query, check it, run it in a sandbox, record it.
//!
//! A run is one typed record, [`Run`]; what the API shows (`POST /runs`,
//! `GET /runs/{id}`, a line of `GET /runs`) are serde views of it, built here and
//! nowhere else.
//!
//! A run that reaches a sandbox is owned by a task of its own ([`submit`] spawns it):
//! when the HTTP client goes away mid-run, the task still finishes, records the real
//! outcome and balances the metrics. A run is recorded when it starts and again when
//! it ends (a refused query is recorded once, already finished), so the store always
//! knows about anything that reached a sandbox.

use std::time::{Duration, Instant};

use protocol::{ErrorType, RunError, RunResult, RunStatus};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::error::Error;
use crate::plan;
use crate::policy::{self, Scope};
use crate::state::AppState;

/// Runs listed by `GET /runs` when no limit is given, and at most.
pub const DEFAULT_LIST_LIMIT: usize = 20;
pub const MAX_LIST_LIMIT: usize = 500;
/// SQL longer than this is stored as a prefix of this many bytes, with its length
/// and sha256: the store keeps what explains a run, not every byte a client sent.
pub const STORED_SQL_BYTES: usize = 16 * 1024;

/// A run's lifecycle state: the one `status` the API shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    Succeeded,
    Failed,
    Rejected,
    TimedOut,
    /// The orchestrator stopped while the run was running.
    Interrupted,
}

impl RunState {
    pub const ALL: [RunState; 6] = [
        RunState::Running,
        RunState::Succeeded,
        RunState::Failed,
        RunState::Rejected,
        RunState::TimedOut,
        RunState::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Rejected => "rejected",
            RunState::TimedOut => "timed_out",
            RunState::Interrupted => "interrupted",
        }
    }

    pub fn parse(text: &str) -> Option<RunState> {
        RunState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The state a sandbox result puts a run in.
    pub fn of(result: &RunResult) -> RunState {
        match (result.status, result.error_type()) {
            (RunStatus::Success, _) => RunState::Succeeded,
            (RunStatus::Timeout, _) | (_, Some(ErrorType::Timeout)) => RunState::TimedOut,
            (RunStatus::Error, Some(ErrorType::SqlNotAllowed | ErrorType::UnknownTable)) => RunState::Rejected,
            (RunStatus::Error, _) => RunState::Failed,
        }
    }
}

/// How the query was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryType {
    /// SQL, checked by the policy.
    #[default]
    Sql,
    /// A JSON [`plan::QueryPlan`], compiled to SQL by the service.
    Plan,
}

impl QueryType {
    pub fn as_str(self) -> &'static str {
        match self {
            QueryType::Sql => "sql",
            QueryType::Plan => "plan",
        }
    }

    pub fn parse(text: &str) -> Option<QueryType> {
        [QueryType::Sql, QueryType::Plan].into_iter().find(|q| q.as_str() == text)
    }
}

/// The SQL of a run as stored: whole up to [`STORED_SQL_BYTES`], else a prefix with
/// the length and sha256 of the whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredSql {
    pub text: String,
    /// Bytes of the SQL that ran.
    pub bytes: u64,
    /// `text` is a prefix.
    pub truncated: bool,
    /// sha256 of the whole SQL, hex; set when `text` is a prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl StoredSql {
    pub fn new(sql: &str) -> StoredSql {
        if sql.len() <= STORED_SQL_BYTES {
            return StoredSql { text: sql.to_string(), bytes: sql.len() as u64, truncated: false, sha256: None };
        }
        let mut cut = STORED_SQL_BYTES;
        while !sql.is_char_boundary(cut) {
            cut -= 1;
        }
        StoredSql {
            text: sql[..cut].to_string(),
            bytes: sql.len() as u64,
            truncated: true,
            sha256: Some(format!("{:x}", Sha256::digest(sql.as_bytes()))),
        }
    }
}

/// Time spent in each phase, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Timings {
    pub queued_ms: Option<f64>,
    pub run_ms: Option<f64>,
    pub total_ms: Option<f64>,
}

/// One run: the record the store keeps and every API view is derived from.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub run_id: String,
    pub status: RunState,
    pub dataset_id: String,
    pub dataset_version_hash: Option<String>,
    pub query_type: QueryType,
    /// The SQL that ran (for a plan: the compiled SQL).
    pub sql: StoredSql,
    /// The plan, for `query_type: plan`.
    pub plan: Option<Value>,
    /// The dataset tables the query reads (empty when it was refused).
    pub tables: Vec<String>,
    /// The sandbox's result, once there is one. `None` while running, for an
    /// interrupted run, and in lists (which read only the summary columns).
    pub result: Option<RunResult>,
    /// Why the run failed, if it did.
    pub error: Option<RunError>,
    pub sandbox_provider: String,
    pub job_name: Option<String>,
    pub request_id: Option<String>,
    /// The chat turn that made this run, if any.
    pub turn_id: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub timings: Timings,
}

impl Run {
    /// The result with its error, as a finished run reports it.
    pub fn finish_with(&mut self, result: RunResult) {
        self.status = RunState::of(&result);
        self.error = result.error.clone();
        self.result = Some(result);
        self.finished_at = Some(now());
    }

    /// The view of a line of `GET /runs`.
    pub fn summary(&self) -> RunSummary<'_> {
        RunSummary(self)
    }
}

/// The result without the sandbox's own status word: a run has one `status`.
struct ResultView<'a>(&'a RunResult);

impl Serialize for ResultView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut s = serializer.serialize_struct("RunResult", 8)?;
        s.serialize_field("columns", &r.columns)?;
        s.serialize_field("column_types", &r.column_types)?;
        s.serialize_field("rows", &r.rows)?;
        s.serialize_field("row_count", &r.row_count)?;
        s.serialize_field("truncated", &r.truncated)?;
        s.serialize_field("exec_time_ms", &r.exec_time_ms)?;
        s.serialize_field("error", &r.error)?;
        s.serialize_field("stats", &r.stats)?;
        s.end()
    }
}

#[derive(Serialize)]
struct Details<'a> {
    dataset_id: &'a str,
    dataset_version_hash: Option<&'a str>,
    query_type: QueryType,
    /// The SQL that ran.
    sql: &'a str,
    sql_bytes: u64,
    sql_truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    sql_sha256: Option<&'a str>,
    plan: Option<&'a Value>,
    tables: &'a [String],
    sandbox_provider: &'a str,
    job_name: Option<&'a str>,
    request_id: Option<&'a str>,
    turn_id: Option<&'a str>,
    created_at: &'a str,
    started_at: Option<&'a str>,
    finished_at: Option<&'a str>,
    queued_ms: Option<f64>,
    run_ms: Option<f64>,
    total_ms: Option<f64>,
}

/// `POST /runs` and `GET /runs/{id}`: `{run_id, status, result, error, details}`.
impl Serialize for Run {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let details = Details {
            dataset_id: &self.dataset_id,
            dataset_version_hash: self.dataset_version_hash.as_deref(),
            query_type: self.query_type,
            sql: &self.sql.text,
            sql_bytes: self.sql.bytes,
            sql_truncated: self.sql.truncated,
            sql_sha256: self.sql.sha256.as_deref(),
            plan: self.plan.as_ref(),
            tables: &self.tables,
            sandbox_provider: &self.sandbox_provider,
            job_name: self.job_name.as_deref(),
            request_id: self.request_id.as_deref(),
            turn_id: self.turn_id.as_deref(),
            created_at: &self.created_at,
            started_at: self.started_at.as_deref(),
            finished_at: self.finished_at.as_deref(),
            queued_ms: self.timings.queued_ms,
            run_ms: self.timings.run_ms,
            total_ms: self.timings.total_ms,
        };
        let mut s = serializer.serialize_struct("Run", 5)?;
        s.serialize_field("run_id", &self.run_id)?;
        s.serialize_field("status", &self.status)?;
        s.serialize_field("result", &self.result.as_ref().map(ResultView))?;
        s.serialize_field("error", &self.error)?;
        s.serialize_field("details", &details)?;
        s.end()
    }
}

/// A line of `GET /runs`: the run without its rows.
pub struct RunSummary<'a>(&'a Run);

impl Serialize for RunSummary<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut s = serializer.serialize_struct("RunSummary", 12)?;
        s.serialize_field("run_id", &r.run_id)?;
        s.serialize_field("status", &r.status)?;
        s.serialize_field("dataset_id", &r.dataset_id)?;
        s.serialize_field("query_type", &r.query_type)?;
        s.serialize_field("sql", &r.sql.text)?;
        s.serialize_field("sql_truncated", &r.sql.truncated)?;
        s.serialize_field("error_type", &r.error.as_ref().map(|e| e.error_type))?;
        s.serialize_field("sandbox_provider", &r.sandbox_provider)?;
        s.serialize_field("job_name", &r.job_name)?;
        s.serialize_field("turn_id", &r.turn_id)?;
        s.serialize_field("created_at", &r.created_at)?;
        s.serialize_field("finished_at", &r.finished_at)?;
        s.serialize_field("total_ms", &r.timings.total_ms)?;
        s.end()
    }
}

/// `POST /runs`. Unknown fields are ignored (and not stored).
#[derive(Debug, Clone, Deserialize)]
pub struct RunSubmission {
    pub dataset_id: String,
    /// `sql` (the default) or `plan`.
    #[serde(default)]
    pub query_type: Option<String>,
    #[serde(default)]
    pub sql: Option<String>,
    #[serde(default)]
    pub plan: Option<Value>,
    /// Fewer rows than the service's MAX_ROWS, if wanted.
    #[serde(default)]
    pub max_rows: Option<u64>,
    /// A shorter timeout than the service's RUN_TIMEOUT_SECONDS, if wanted.
    #[serde(default)]
    pub timeout_seconds: Option<f64>,
}

/// The query of a submission, checked for shape (not yet by the policy).
#[derive(Debug, Clone)]
pub enum Query {
    Sql(String),
    Plan(Value),
}

impl RunSubmission {
    pub fn query(&self) -> Result<Query, Error> {
        let query_type = match self.query_type.as_deref() {
            None => QueryType::Sql,
            Some(text) => QueryType::parse(text).ok_or_else(|| {
                Error::invalid(format!("query_type {text:?} is not supported: use \"sql\" (the default) or \"plan\""))
            })?,
        };
        match (query_type, &self.sql, &self.plan) {
            (QueryType::Sql, Some(sql), None) if sql.trim().is_empty() => Err(Error::invalid("sql must not be empty")),
            (QueryType::Sql, Some(sql), None) => Ok(Query::Sql(sql.clone())),
            (QueryType::Sql, None, _) => {
                Err(Error::invalid("sql is required (or send \"query_type\": \"plan\" with a plan)"))
            }
            (QueryType::Sql, Some(_), Some(_)) => Err(Error::invalid("send either sql or a plan, not both")),
            (QueryType::Plan, None, Some(plan)) => Ok(Query::Plan(plan.clone())),
            (QueryType::Plan, _, None) => Err(Error::invalid("query_type \"plan\" needs a plan (GET /schemas/plan)")),
            (QueryType::Plan, Some(_), Some(_)) => Err(Error::invalid("send either sql or a plan, not both")),
        }
    }
}

/// The limits of one run: the service's, or tighter ones the request asked for.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout_ms: u64,
    pub max_rows: u64,
}

impl Limits {
    pub fn new(state: &AppState, max_rows: Option<u64>, timeout_seconds: Option<f64>) -> Result<Limits, Error> {
        let config = state.config();
        let service_timeout_ms = config.run_timeout().as_millis() as u64;
        let timeout_ms = match timeout_seconds {
            None => service_timeout_ms,
            Some(t) if t > 0.0 && t.is_finite() => ((t * 1000.0).ceil() as u64).clamp(1, service_timeout_ms),
            Some(_) => return Err(Error::invalid("timeout_seconds must be a positive number")),
        };
        let max_rows = max_rows.map_or(config.max_rows, |n| n.min(config.max_rows));
        Ok(Limits { timeout_ms, max_rows })
    }
}

/// Who asked for a run, for its record, its span and per-client fairness.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub request_id: Option<String>,
    pub turn_id: Option<String>,
    /// The client's `x-client-id`, else its address; `None` for the service's own queries.
    pub client: Option<String>,
}

/// Accepts, checks, runs and records one query; returns the finished run.
pub async fn submit(state: &AppState, submission: RunSubmission, origin: Origin) -> Result<Run, Error> {
    let query = submission.query()?;
    let limits = Limits::new(state, submission.max_rows, submission.timeout_seconds)?;
    execute(state, &submission.dataset_id, query, limits, origin).await
}

/// Runs `query` over `dataset_id` under `limits`: the one path every query takes,
/// from `POST /runs` and from the chat agent alike.
pub async fn execute(
    state: &AppState,
    dataset_id: &str,
    query: Query,
    limits: Limits,
    origin: Origin,
) -> Result<Run, Error> {
    let accepted = Instant::now();
    let origin_client = origin.client;
    let dataset = state.catalog().dataset(dataset_id).ok_or_else(|| state.catalog().unknown_dataset(dataset_id))?;
    let run_id = uuid::Uuid::new_v4().to_string();
    let span = tracing::info_span!(
        "run",
        run_id = %run_id,
        request_id = origin.request_id.as_deref().unwrap_or(""),
        dataset = %dataset.id,
        provider = state.provider().kind().as_str(),
        job_name = tracing::field::Empty,
    );
    let mut run = Run {
        run_id,
        status: RunState::Running,
        dataset_id: dataset.id.clone(),
        dataset_version_hash: state.catalog().version_hash(dataset),
        query_type: QueryType::Sql,
        sql: StoredSql::new(""),
        plan: None,
        tables: Vec::new(),
        result: None,
        error: None,
        sandbox_provider: state.provider().kind().as_str().to_string(),
        job_name: None,
        request_id: origin.request_id,
        turn_id: origin.turn_id,
        created_at: now(),
        started_at: None,
        finished_at: None,
        timings: Timings::default(),
    };

    // The SQL to check: as sent, or compiled from the plan.
    let sql = match query {
        Query::Sql(sql) => sql,
        Query::Plan(plan_json) => {
            run.query_type = QueryType::Plan;
            let scope = crate::datasets::plan_scope(state, dataset, limits.max_rows).await?;
            match plan::compile(&plan_json, &scope) {
                Ok(compiled) => {
                    run.plan = Some(plan_json);
                    compiled.sql
                }
                Err(e) => {
                    run.plan = Some(plan_json);
                    let result = RunResult::failure(ErrorType::InvalidRequest, plan_error_message(&e));
                    return record_refused(state, run, result, accepted).instrument(span).await;
                }
            }
        }
    };
    run.sql = StoredSql::new(&sql);

    let scope = Scope { dataset_id: dataset.id.clone(), tables: dataset.table_names() };
    let checked_sql = sql.clone();
    let verdict = tokio::task::spawn_blocking(move || policy::check(&checked_sql, &scope))
        .await
        .map_err(|e| Error::Internal(format!("the SQL policy check failed: {e}")))?;
    let approved = match verdict {
        Ok(approved) => approved,
        Err(refusal) => {
            let result = RunResult::failure(refusal.error_type, refusal.message);
            return record_refused(state, run, result, accepted).instrument(span).await;
        }
    };
    run.tables = approved.tables;

    state.provider().accepting().map_err(Error::SandboxNotReady)?;
    let ticket = origin_client.as_deref().map(|client| state.admit(client)).transpose()?;
    let permit = state.acquire_slot().await?;
    run.timings.queued_ms = Some(ms(accepted.elapsed()));
    state.metrics().queue_wait.observe(accepted.elapsed().as_secs_f64());
    run.started_at = Some(now());
    state.store().insert(&run).await?;

    let request = state.run_request(dataset, &sql, limits);
    let owned = state.clone();
    // The run's own task: it finishes and records the run even when the caller's
    // future is dropped (a client that hangs up).
    let task = tokio::spawn(
        async move {
            let _ticket = ticket;
            let metrics = owned.metrics();
            metrics.in_flight.inc();
            let started = Instant::now();
            let execution = owned.provider().run(&run.run_id, request, permit).await;
            metrics.in_flight.dec();
            if let Some(job) = &execution.job_name {
                tracing::Span::current().record("job_name", job.as_str());
            }
            run.job_name = execution.job_name;
            run.timings.run_ms = Some(ms(started.elapsed()));
            run.timings.total_ms = Some(ms(accepted.elapsed()));
            run.finish_with(execution.result);
            let stored = owned.store().finish(&run).await;
            observe(&owned, &run);
            stored.map(|()| run)
        }
        .instrument(span),
    );
    task.await.map_err(|e| Error::Internal(format!("the run's task failed: {e}")))?.map_err(Error::from)
}

fn plan_error_message(e: &plan::PlanError) -> String {
    match &e.path {
        Some(path) => format!("invalid plan at {path}: {}", e.message),
        None => format!("invalid plan: {}", e.message),
    }
}

/// A run refused before any sandbox: recorded once, already finished.
async fn record_refused(state: &AppState, mut run: Run, result: RunResult, accepted: Instant) -> Result<Run, Error> {
    run.timings.total_ms = Some(ms(accepted.elapsed()));
    run.finish_with(result);
    state.store().insert(&run).await?;
    observe(state, &run);
    Ok(run)
}

/// Metrics and the one log line per run.
fn observe(state: &AppState, run: &Run) {
    let total_ms = run.timings.total_ms.unwrap_or_default();
    state.metrics().observe_run(run.status.as_str(), &run.sandbox_provider, total_ms / 1000.0);
    let result = run.result.as_ref();
    tracing::info!(
        status = run.status.as_str(),
        error_type = run.error.as_ref().map(|e| e.error_type.as_str()).unwrap_or(""),
        rows = result.map_or(0, |r| r.row_count),
        duration_ms = total_ms,
        "run finished"
    );
}

pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}

/// `GET /runs/{id}`.
pub async fn get(state: &AppState, run_id: &str) -> Result<Run, Error> {
    state.store().get(run_id).await?.ok_or_else(|| Error::RunNotFound(run_id.to_string()))
}

/// `GET /runs`: the newest runs, from the store's summary columns (no rows).
pub async fn list(state: &AppState, limit: Option<usize>) -> Result<Vec<Run>, Error> {
    let limit = limit.unwrap_or(DEFAULT_LIST_LIMIT);
    if limit == 0 || limit > MAX_LIST_LIMIT {
        return Err(Error::invalid(format!("limit must be between 1 and {MAX_LIST_LIMIT}")));
    }
    Ok(state.store().list(limit).await?)
}

/// `GET /runs/{id}/result.csv`: the stored result as RFC 4180 CSV with a header row.
pub fn result_csv(run: &Run) -> Result<Vec<u8>, Error> {
    let result = run.result.as_ref().filter(|r| r.error.is_none()).ok_or_else(|| {
        Error::invalid(format!("run {} has no result to download (status {})", run.run_id, run.status.as_str()))
    })?;
    let mut writer = csv::Writer::from_writer(Vec::new());
    let failed = |e: csv::Error| Error::Internal(format!("cannot write the CSV: {e}"));
    writer.write_record(&result.columns).map_err(failed)?;
    for row in &result.rows {
        writer.write_record(row.iter().map(csv_field)).map_err(failed)?;
    }
    writer.into_inner().map_err(|e| Error::Internal(format!("cannot write the CSV: {e}")))
}

/// A cell as CSV text: NULL as an empty field, strings as they are, the rest as JSON.
fn csv_field(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The current time, RFC 3339 in UTC with milliseconds.
pub fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}
