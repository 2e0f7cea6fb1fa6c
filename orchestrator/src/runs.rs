//! Runs: accept a query, check it, run it in a sandbox, record it.
//!
//! These are plain async functions over [`AppState`]; the HTTP handlers only
//! translate. A run is recorded when it starts and again when it ends (a refused
//! query is recorded once, already finished), so the store always knows about
//! anything that reached a sandbox.

use std::time::{Duration, Instant};

use protocol::{ErrorType, RunError, RunResult, RunStats, RunStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::app::AppState;
use crate::error::{ApiError, kind};
use crate::metrics::{ProviderLabels, RunLabels};
use crate::policy::{self, Scope};
use crate::store::{Finish, RunRecord, RunState, now};

/// Runs listed by `GET /runs` when no limit is given, and at most.
pub const DEFAULT_LIST_LIMIT: usize = 20;
pub const MAX_LIST_LIMIT: usize = 500;

/// `POST /runs`.
#[derive(Debug, Clone, Deserialize)]
pub struct RunSubmission {
    pub dataset_id: String,
    /// Only `sql` is supported; absent means `sql`.
    #[serde(default)]
    pub query_type: Option<String>,
    pub sql: String,
    /// Fewer rows than the service's MAX_ROWS, if wanted.
    #[serde(default)]
    pub max_rows: Option<u64>,
    /// A shorter timeout than the service's RUN_TIMEOUT_SECONDS, if wanted.
    #[serde(default)]
    pub timeout_seconds: Option<f64>,
}

/// The result part of a run, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiResult {
    pub columns: Vec<String>,
    pub column_types: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    pub row_count: u64,
    pub truncated: bool,
    pub exec_time_ms: u64,
    pub error: Option<RunError>,
    pub stats: RunStats,
}

impl From<RunResult> for ApiResult {
    fn from(r: RunResult) -> Self {
        ApiResult {
            columns: r.columns,
            column_types: r.column_types,
            rows: r.rows,
            row_count: r.row_count,
            truncated: r.truncated,
            exec_time_ms: r.exec_time_ms,
            error: r.error,
            stats: r.stats,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunDetails {
    pub dataset_id: String,
    pub dataset_version_hash: Option<String>,
    pub query_mode: String,
    /// The SQL as it was run.
    pub compiled_sql: String,
    pub sandbox_provider: String,
    pub job_name: Option<String>,
    /// The dataset tables the query reads (empty when it was refused).
    pub tables: Vec<String>,
    pub request_id: Option<String>,
    pub queued_ms: f64,
    pub total_ms: f64,
}

/// `POST /runs` answers with this, whatever the run's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct RunResponse {
    pub run_id: String,
    pub status: RunState,
    pub result: ApiResult,
    pub details: RunDetails,
}

/// The run's state, from its result.
pub fn state_for(result: &RunResult) -> RunState {
    match (result.status, result.error_type()) {
        (RunStatus::Success, _) => RunState::Succeeded,
        (RunStatus::Timeout, _) | (_, Some(ErrorType::Timeout)) => RunState::TimedOut,
        (RunStatus::Error, Some(ErrorType::SqlNotAllowed | ErrorType::UnknownTable)) => RunState::Rejected,
        (RunStatus::Error, _) => RunState::Failed,
    }
}

/// Accepts, checks, runs and records one query.
pub async fn submit(
    state: &AppState,
    submission: RunSubmission,
    raw_request: Value,
    request_id: Option<String>,
) -> Result<RunResponse, ApiError> {
    let accepted = Instant::now();
    let query_type = submission.query_type.as_deref().unwrap_or("sql");
    if query_type != "sql" {
        return Err(ApiError::bad_request(format!(
            "query_type {query_type:?} is not supported: send SQL with \"query_type\": \"sql\""
        )));
    }
    if submission.sql.trim().is_empty() {
        return Err(ApiError::bad_request("sql must not be empty"));
    }
    let dataset =
        state.catalog.dataset(&submission.dataset_id).ok_or_else(|| unknown_dataset(state, &submission.dataset_id))?;
    let limits = Limits::for_submission(state, &submission)?;

    let scope = Scope { dataset_id: dataset.id.clone(), tables: dataset.table_names() };
    let sql = submission.sql.clone();
    let verdict = tokio::task::spawn_blocking(move || policy::check(&sql, &scope))
        .await
        .map_err(|e| ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, kind::INTERNAL, e.to_string()))?;

    let provider = state.provider.kind().as_str().to_string();
    let mut record = RunRecord {
        run_id: uuid::Uuid::new_v4().to_string(),
        status: RunState::Running,
        dataset_id: dataset.id.clone(),
        dataset_version_hash: state.catalog.version_hash(dataset),
        query_type: query_type.to_string(),
        sql: submission.sql.clone(),
        request: raw_request,
        result: None,
        error_type: None,
        error_message: None,
        sandbox_provider: provider.clone(),
        job_name: None,
        request_id,
        created_at: now(),
        started_at: None,
        finished_at: None,
        queued_ms: None,
        run_ms: None,
        total_ms: None,
    };

    let approved = match verdict {
        Ok(approved) => approved,
        Err(refusal) => {
            // Refused before any sandbox: recorded once, already finished.
            let result = RunResult::failure(refusal.error_type, refusal.message);
            let total_ms = ms(accepted.elapsed());
            record.finished_at = Some(record.created_at.clone());
            record.total_ms = Some(total_ms);
            return finish_refused(state, record, result, total_ms).await;
        }
    };

    state.provider.accepting().map_err(|reason| ApiError::unavailable(kind::SANDBOX_NOT_READY, reason, 5))?;
    let permit = state.acquire_slot().await?;

    let queued_ms = ms(accepted.elapsed());
    record.started_at = Some(now());
    record.queued_ms = Some(queued_ms);
    state.store.insert(record.clone()).await.map_err(store_unavailable)?;

    let request = state.run_request(dataset, &submission.sql, limits.timeout_ms, limits.max_rows);
    state.metrics.in_flight.inc();
    let started = Instant::now();
    let execution = state.provider.run(&record.run_id, request, permit).await;
    state.metrics.in_flight.dec();
    let run_ms = ms(started.elapsed());
    let total_ms = ms(accepted.elapsed());

    let result = execution.result;
    let status = state_for(&result);
    let finish = Finish {
        status,
        result: serde_json::to_value(&result).unwrap_or(Value::Null),
        error_type: result.error.as_ref().map(|e| e.error_type.as_str().to_string()),
        error_message: result.error.as_ref().map(|e| e.message.clone()),
        job_name: execution.job_name.clone(),
        finished_at: now(),
        run_ms: Some(run_ms),
        total_ms,
    };
    state.store.finish(&record.run_id, finish).await.map_err(store_unavailable)?;
    observe(state, &record, status, &result, total_ms);

    Ok(RunResponse {
        run_id: record.run_id,
        status,
        details: RunDetails {
            dataset_id: record.dataset_id,
            dataset_version_hash: record.dataset_version_hash,
            query_mode: record.query_type,
            compiled_sql: record.sql,
            sandbox_provider: provider,
            job_name: execution.job_name,
            tables: approved.tables,
            request_id: record.request_id,
            queued_ms,
            total_ms,
        },
        result: result.into(),
    })
}

async fn finish_refused(
    state: &AppState,
    mut record: RunRecord,
    result: RunResult,
    total_ms: f64,
) -> Result<RunResponse, ApiError> {
    let status = state_for(&result);
    record.status = status;
    record.result = Some(serde_json::to_value(&result).unwrap_or(Value::Null));
    record.error_type = result.error.as_ref().map(|e| e.error_type.as_str().to_string());
    record.error_message = result.error.as_ref().map(|e| e.message.clone());
    state.store.insert(record.clone()).await.map_err(store_unavailable)?;
    observe(state, &record, status, &result, total_ms);
    Ok(RunResponse {
        run_id: record.run_id,
        status,
        details: RunDetails {
            dataset_id: record.dataset_id,
            dataset_version_hash: record.dataset_version_hash,
            query_mode: record.query_type,
            compiled_sql: record.sql,
            sandbox_provider: record.sandbox_provider,
            job_name: None,
            tables: Vec::new(),
            request_id: record.request_id,
            queued_ms: 0.0,
            total_ms,
        },
        result: result.into(),
    })
}

/// Metrics and the one log line per run.
fn observe(state: &AppState, record: &RunRecord, status: RunState, result: &RunResult, total_ms: f64) {
    let provider = record.sandbox_provider.clone();
    state
        .metrics
        .runs
        .get_or_create(&RunLabels { status: status.as_str().to_string(), provider: provider.clone() })
        .inc();
    state.metrics.run_duration.get_or_create(&ProviderLabels { provider }).observe(total_ms / 1000.0);
    tracing::info!(
        run_id = %record.run_id,
        dataset = %record.dataset_id,
        status = status.as_str(),
        error_type = result.error.as_ref().map(|e| e.error_type.as_str()).unwrap_or(""),
        rows = result.row_count,
        duration_ms = total_ms,
        provider = %record.sandbox_provider,
        request_id = record.request_id.as_deref().unwrap_or(""),
        "run finished"
    );
}

/// The limits of one run: the service's, or tighter ones the request asked for.
struct Limits {
    timeout_ms: u64,
    max_rows: u64,
}

impl Limits {
    fn for_submission(state: &AppState, submission: &RunSubmission) -> Result<Limits, ApiError> {
        let service_timeout_ms = state.config.run_timeout().as_millis() as u64;
        let timeout_ms = match submission.timeout_seconds {
            None => service_timeout_ms,
            Some(t) if t > 0.0 && t.is_finite() => ((t * 1000.0).ceil() as u64).clamp(1, service_timeout_ms),
            Some(_) => {
                return Err(ApiError::bad_request("timeout_seconds must be a positive number"));
            }
        };
        let max_rows = match submission.max_rows {
            None => state.config.max_rows,
            Some(n) => n.min(state.config.max_rows),
        };
        Ok(Limits { timeout_ms, max_rows })
    }
}

pub fn unknown_dataset(state: &AppState, id: &str) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        kind::UNKNOWN_DATASET,
        format!("no dataset {id:?}; datasets: {}", state.catalog.ids().join(", ")),
    )
}

fn store_unavailable(e: crate::store::StoreError) -> ApiError {
    tracing::error!(error = %e, "run store failure");
    ApiError::unavailable(kind::STORE_UNAVAILABLE, format!("the run store is unavailable: {e}"), 5)
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}

/// `GET /runs/{id}`: the stored record.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecordView {
    pub run_id: String,
    pub status: RunState,
    pub dataset_id: String,
    pub dataset_version_hash: Option<String>,
    pub query_type: String,
    pub sql: String,
    pub request: Value,
    pub result: Option<ApiResult>,
    pub error: Option<Value>,
    pub sandbox_provider: String,
    pub job_name: Option<String>,
    pub request_id: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub timings: Timings,
}

#[derive(Debug, Clone, Serialize)]
pub struct Timings {
    pub queued_ms: Option<f64>,
    pub run_ms: Option<f64>,
    pub total_ms: Option<f64>,
}

impl From<RunRecord> for RunRecordView {
    fn from(r: RunRecord) -> Self {
        let result = r.result.and_then(|v| serde_json::from_value::<RunResult>(v).ok()).map(ApiResult::from);
        let error =
            r.error_type.map(|t| serde_json::json!({ "type": t, "message": r.error_message.unwrap_or_default() }));
        RunRecordView {
            run_id: r.run_id,
            status: r.status,
            dataset_id: r.dataset_id,
            dataset_version_hash: r.dataset_version_hash,
            query_type: r.query_type,
            sql: r.sql,
            request: r.request,
            result,
            error,
            sandbox_provider: r.sandbox_provider,
            job_name: r.job_name,
            request_id: r.request_id,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            timings: Timings { queued_ms: r.queued_ms, run_ms: r.run_ms, total_ms: r.total_ms },
        }
    }
}

/// One line of `GET /runs`.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub status: RunState,
    pub dataset_id: String,
    pub sql: String,
    pub sandbox_provider: String,
    pub job_name: Option<String>,
    pub error_type: Option<String>,
    pub created_at: String,
    pub finished_at: Option<String>,
    pub total_ms: Option<f64>,
}

impl From<RunRecord> for RunSummary {
    fn from(r: RunRecord) -> Self {
        RunSummary {
            run_id: r.run_id,
            status: r.status,
            dataset_id: r.dataset_id,
            sql: r.sql,
            sandbox_provider: r.sandbox_provider,
            job_name: r.job_name,
            error_type: r.error_type,
            created_at: r.created_at,
            finished_at: r.finished_at,
            total_ms: r.total_ms,
        }
    }
}

pub async fn get(state: &AppState, run_id: &str) -> Result<RunRecord, ApiError> {
    state.store.get(run_id).await.map_err(store_unavailable)?.ok_or_else(|| {
        ApiError::new(axum::http::StatusCode::NOT_FOUND, kind::RUN_NOT_FOUND, format!("no run {run_id:?}"))
    })
}

pub async fn list(state: &AppState, limit: Option<usize>) -> Result<Vec<RunSummary>, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIST_LIMIT);
    if limit == 0 || limit > MAX_LIST_LIMIT {
        return Err(ApiError::bad_request(format!("limit must be between 1 and {MAX_LIST_LIMIT}")));
    }
    let records = state.store.list(limit).await.map_err(store_unavailable)?;
    Ok(records.into_iter().map(RunSummary::from).collect())
}
