//! What both backends write and read alike: the column lists of the tables, the JSON
//! columns of a run, string lists as JSON, and a stored error type read back. Each
//! backend keeps only what its driver needs (parameters, row getters).

use protocol::{ErrorType, RunResult};

use super::run::Run;

/// A run's summary columns, in the order the backends' row readers expect them
/// (`result_json`, when read, comes after them).
pub(super) const COLUMNS: &str =
    "run_id, status, dataset_id, dataset_version_hash, query_type, sql, sql_bytes, sql_truncated,
    sql_sha256, plan_json, tables_json, error_type, error_message, sandbox_provider, job_name, request_id, turn_id,
    created_at, started_at, finished_at, queued_ms, run_ms, total_ms, principal, token_id, origin";

pub(super) const TOKEN_COLUMNS: &str =
    "token_id, subject, datasets_json, admin, secret_sha256, created_at, expires_at, revoked_at";

pub(super) const UPLOAD_COLUMNS: &str =
    "dataset_id, owner, description, tables_json, version_hash, size_bytes, created_at";

pub(super) const TURN_COLUMNS: &str =
    "turn_id, thread_id, status, user_message, assistant_message, response_json, context_json,
    created_at, finished_at";

/// A run's JSON columns, serialised for writing.
pub(super) struct RunJson {
    pub plan: Option<String>,
    pub tables: String,
    pub result: Option<String>,
}

impl RunJson {
    pub fn of(run: &Run) -> RunJson {
        RunJson {
            plan: run.plan.as_ref().map(|p| p.to_string()),
            tables: list_json(&run.tables),
            result: run.result.as_ref().map(RunResult::to_json_line),
        }
    }
}

/// A list of names (tables, datasets) as its JSON column holds it.
pub(super) fn list_json(names: &[String]) -> String {
    serde_json::to_string(names).unwrap_or_else(|_| "[]".into())
}

/// A stored error type's wire name read back; one this version does not know (a
/// newer version's) is shown as INTERNAL, with a warning.
pub(super) fn parse_error_type(name: &str) -> ErrorType {
    serde_json::from_value(serde_json::Value::String(name.to_string())).unwrap_or_else(|_| {
        tracing::warn!(error_type = %name, "unknown error type in the run store; shown as INTERNAL");
        ErrorType::Internal
    })
}
