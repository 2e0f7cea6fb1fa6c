use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Success,
    Error,
    Timeout,
}

/// The closed set of error types a run can end with.
///
/// Every error a user can see carries one of these, so callers (people, scripts,
/// LLM agents) can branch on the type and show the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorType {
    /// The SQL does not parse (syntax error, or nested deeper than the parser allows).
    SqlParseError,
    /// The SQL parses but cannot be planned: unknown column or function, type mismatch.
    SqlPlanError,
    /// The query failed while running: a bad cast, division by zero, ...
    SqlExecutionError,
    /// The statement is not a read-only query (DDL, DML, COPY, SET, several
    /// statements, a file path or a table function that reads files).
    SqlNotAllowed,
    /// The query names a table that is not in the dataset.
    UnknownTable,
    /// The run exceeded its wall-clock limit.
    Timeout,
    /// The run exceeded its memory limit.
    MemoryLimit,
    /// The guest wrote more output than the sandbox accepts.
    OutputLimit,
    /// The query needed more scratch disk than the run may spill to
    /// (`RUN_SPILL_MAX_MB`), or the guest wrote past it.
    SpillLimit,
    /// The request itself is malformed (unknown dataset, bad limits, ...).
    InvalidRequest,
    /// A dataset file is missing, unreadable, or does not parse as declared.
    DatasetError,
    /// The sandbox could not run the query (a Kubernetes Job that cannot start,
    /// a runner that printed no result, ...).
    SandboxError,
    /// A bug: the guest panicked or trapped for a reason none of the above names.
    Internal,
    /// The service replica running the query stopped before recording its end (set
    /// by another replica once the run's lease passed; never by a sandbox).
    ReplicaLost,
}

impl ErrorType {
    /// The wire name, e.g. `SQL_PARSE_ERROR`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::SqlParseError => "SQL_PARSE_ERROR",
            ErrorType::SqlPlanError => "SQL_PLAN_ERROR",
            ErrorType::SqlExecutionError => "SQL_EXECUTION_ERROR",
            ErrorType::SqlNotAllowed => "SQL_NOT_ALLOWED",
            ErrorType::UnknownTable => "UNKNOWN_TABLE",
            ErrorType::Timeout => "TIMEOUT",
            ErrorType::MemoryLimit => "MEMORY_LIMIT",
            ErrorType::OutputLimit => "OUTPUT_LIMIT",
            ErrorType::SpillLimit => "SPILL_LIMIT",
            ErrorType::InvalidRequest => "INVALID_REQUEST",
            ErrorType::DatasetError => "DATASET_ERROR",
            ErrorType::SandboxError => "SANDBOX_ERROR",
            ErrorType::Internal => "INTERNAL",
            ErrorType::ReplicaLost => "REPLICA_LOST",
        }
    }

    /// Every error type, in documentation order.
    pub const ALL: [ErrorType; 14] = [
        ErrorType::SqlParseError,
        ErrorType::SqlPlanError,
        ErrorType::SqlExecutionError,
        ErrorType::SqlNotAllowed,
        ErrorType::UnknownTable,
        ErrorType::Timeout,
        ErrorType::MemoryLimit,
        ErrorType::OutputLimit,
        ErrorType::SpillLimit,
        ErrorType::InvalidRequest,
        ErrorType::DatasetError,
        ErrorType::SandboxError,
        ErrorType::Internal,
        ErrorType::ReplicaLost,
    ];
}

impl std::fmt::Display for ErrorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunError {
    #[serde(rename = "type")]
    pub error_type: ErrorType,
    pub message: String,
}

/// Measurements of one run. Each party fills in what it can see; absent
/// figures are omitted from the JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunStats {
    /// CSV bytes the guest read from `/data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_read: Option<u64>,
    /// Time the guest spent planning and executing the query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_query_ms: Option<f64>,
    /// High-water mark of the guest's linear memory (host-measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory_bytes: Option<u64>,
    /// Bytes the guest wrote to stdout (host-measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_bytes: Option<u64>,
    /// Time to create the sandbox instance (host-measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instantiate_ms: Option<f64>,
    /// Bytes the guest wrote to its scratch directory: what the query spilled
    /// (host-measured; absent when spilling is off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spilled_bytes: Option<u64>,
}

/// The outcome of a run.
///
/// `rows` are JSON arrays in `columns` order, with natural JSON types: integers
/// and floats as numbers (NaN and infinities as null), booleans, null, strings;
/// dates and timestamps as ISO-8601 strings; decimals as numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub status: RunStatus,
    pub columns: Vec<String>,
    /// The SQL type of each column (`BIGINT`, `DOUBLE`, `VARCHAR`, `TIMESTAMP`, ...).
    #[serde(default)]
    pub column_types: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    /// The number of rows in `rows`.
    pub row_count: u64,
    /// True when the query produced more rows than `rows` holds (cut by
    /// `max_rows` or `max_output_bytes`).
    pub truncated: bool,
    /// Wall-clock time of the run inside the sandbox, in milliseconds.
    pub exec_time_ms: u64,
    pub error: Option<RunError>,
    #[serde(default)]
    pub stats: RunStats,
}

impl RunResult {
    /// A successful result.
    pub fn success(columns: Vec<String>, column_types: Vec<String>, rows: Vec<Vec<Value>>, truncated: bool) -> Self {
        RunResult {
            status: RunStatus::Success,
            columns,
            column_types,
            row_count: rows.len() as u64,
            rows,
            truncated,
            exec_time_ms: 0,
            error: None,
            stats: RunStats::default(),
        }
    }

    /// A failed result. [`ErrorType::Timeout`] gives status `timeout`, every other type `error`.
    pub fn failure(error_type: ErrorType, message: impl Into<String>) -> Self {
        let status = if error_type == ErrorType::Timeout { RunStatus::Timeout } else { RunStatus::Error };
        RunResult {
            status,
            columns: Vec::new(),
            column_types: Vec::new(),
            rows: Vec::new(),
            row_count: 0,
            truncated: false,
            exec_time_ms: 0,
            error: Some(RunError { error_type, message: message.into() }),
            stats: RunStats::default(),
        }
    }

    /// The error type, if the run failed.
    pub fn error_type(&self) -> Option<ErrorType> {
        self.error.as_ref().map(|e| e.error_type)
    }

    /// The result as one JSON line (no trailing newline).
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("a RunResult always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_sets_status_from_type() {
        assert_eq!(RunResult::failure(ErrorType::Timeout, "slow").status, RunStatus::Timeout);
        assert_eq!(RunResult::failure(ErrorType::MemoryLimit, "big").status, RunStatus::Error);
    }

    #[test]
    fn error_types_serialize_to_their_documented_names() {
        for ty in ErrorType::ALL {
            let json = serde_json::to_string(&ty).unwrap();
            assert_eq!(json, format!("\"{}\"", ty.as_str()));
            assert_eq!(serde_json::from_str::<ErrorType>(&json).unwrap(), ty);
        }
    }

    #[test]
    fn result_json_shape() {
        let r = RunResult::success(vec!["n".into()], vec!["BIGINT".into()], vec![vec![Value::from(3)]], false);
        let v: Value = serde_json::from_str(&r.to_json_line()).unwrap();
        assert_eq!(v["status"], "success");
        assert_eq!(v["rows"], serde_json::json!([[3]]));
        assert_eq!(v["row_count"], 1);
        assert_eq!(v["error"], Value::Null);
        let f: Value =
            serde_json::from_str(&RunResult::failure(ErrorType::SqlParseError, "bad").to_json_line()).unwrap();
        assert_eq!(f["error"], serde_json::json!({"type": "SQL_PARSE_ERROR", "message": "bad"}));
    }
}
