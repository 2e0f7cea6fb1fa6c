//! A run: the one typed record the store keeps, and the views every API shows of
//! it (`POST /runs` and `GET /runs/{id}`: [`Run`]'s own `Serialize`; a line of
//! `GET /runs`: [`RunSummary`]), built here and nowhere else.
//!
//! Uses only `protocol`'s result types: the record knows nothing of how a run is
//! admitted, executed or stored.

use protocol::{ErrorType, RunError, RunResult, RunStatus};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// SQL longer than this is stored as a prefix of this many bytes, with its length
/// and sha256: the store keeps what explains a run, not every byte a client sent.
pub const STORED_SQL_BYTES: usize = 16 * 1024;

/// A query refused before any sandbox (by the policy, or a plan that does not
/// compile) is recorded compactly: its SQL as a prefix of at most this many bytes
/// (with `sql_bytes`, `sql_truncated` and `sql_sha256` saying what was cut), its
/// plan only when the plan's JSON is no longer, the refusal's message cut to it, and
/// no rows. A flood of refusals then costs the store about 2 KiB a query.
pub const REFUSED_QUERY_BYTES: usize = 1024;

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

/// The SQL of a run as stored: whole up to [`STORED_SQL_BYTES`] (a refused query's:
/// [`REFUSED_QUERY_BYTES`]), else a prefix with the length and sha256 of the whole.
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
    /// The SQL of a run that reached a sandbox: up to [`STORED_SQL_BYTES`].
    pub fn new(sql: &str) -> StoredSql {
        StoredSql::capped(sql, STORED_SQL_BYTES)
    }

    /// `sql` whole up to `max` bytes, else its longest prefix of at most `max` bytes
    /// that ends on a character, with the length and sha256 of the whole.
    pub fn capped(sql: &str, max: usize) -> StoredSql {
        if sql.len() <= max {
            return StoredSql { text: sql.to_string(), bytes: sql.len() as u64, truncated: false, sha256: None };
        }
        StoredSql {
            text: prefix(sql, max).to_string(),
            bytes: sql.len() as u64,
            truncated: true,
            sha256: Some(format!("{:x}", Sha256::digest(sql.as_bytes()))),
        }
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character.
fn prefix(text: &str, max: usize) -> &str {
    let mut cut = max.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
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
    /// The subject that made the run, who alone (with the admin) may read it
    /// (`None`: recorded before identities were).
    pub principal: Option<String>,
    /// The id of the token it was made with, if any (never the secret).
    pub token_id: Option<String>,
    /// Where it was asked: `api` (`POST /runs`), `chat` or `mcp` (`None`: recorded
    /// before this was).
    pub origin: Option<String>,
}

impl Run {
    /// A running SQL run over `support` (`SELECT 1`, id `r`), for tests that need a
    /// record to shape.
    #[cfg(test)]
    pub(crate) fn example() -> Run {
        Run {
            run_id: "r".into(),
            status: RunState::Running,
            dataset_id: "support".into(),
            dataset_version_hash: None,
            query_type: QueryType::Sql,
            sql: StoredSql::new("SELECT 1"),
            plan: None,
            tables: Vec::new(),
            result: None,
            error: None,
            sandbox_provider: "local".into(),
            job_name: None,
            request_id: None,
            turn_id: None,
            created_at: now(),
            started_at: None,
            finished_at: None,
            timings: Timings::default(),
            principal: Some("local".into()),
            token_id: None,
            origin: Some("api".into()),
        }
    }

    /// The result with its error, as a finished run reports it.
    pub fn finish_with(&mut self, result: RunResult) {
        self.status = RunState::of(&result);
        self.error = result.error.clone();
        self.result = Some(result);
        self.finished_at = Some(now());
    }

    /// Finishes a run refused before any sandbox, recorded compactly (see
    /// [`REFUSED_QUERY_BYTES`]): `sql` (for a plan, the SQL it compiled to, if any)
    /// capped, a plan kept only when its JSON fits, the message cut, and a result with
    /// the error and no rows.
    pub fn refuse(&mut self, sql: &str, error_type: ErrorType, message: &str) {
        self.sql = StoredSql::capped(sql, REFUSED_QUERY_BYTES);
        if self.plan.as_ref().is_some_and(|plan| plan.to_string().len() > REFUSED_QUERY_BYTES) {
            self.plan = None;
        }
        let message = if message.len() <= REFUSED_QUERY_BYTES {
            message.to_string()
        } else {
            format!("{} … (message cut: {} bytes in all)", prefix(message, REFUSED_QUERY_BYTES), message.len())
        };
        self.finish_with(RunResult::failure(error_type, message));
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
    principal: Option<&'a str>,
    token_id: Option<&'a str>,
    origin: Option<&'a str>,
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
            principal: self.principal.as_deref(),
            token_id: self.token_id.as_deref(),
            origin: self.origin.as_deref(),
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
        let mut s = serializer.serialize_struct("RunSummary", 14)?;
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
        s.serialize_field("origin", &r.origin)?;
        s.serialize_field("created_at", &r.created_at)?;
        s.serialize_field("finished_at", &r.finished_at)?;
        s.serialize_field("total_ms", &r.timings.total_ms)?;
        s.end()
    }
}

/// The current time, RFC 3339 in UTC with milliseconds.
pub fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_run_is_recorded_compactly() {
        let sql = format!("DELETE FROM tickets WHERE category = '{}'", "é".repeat(7_500));
        let mut run = Run::example();
        run.refuse(&sql, ErrorType::SqlNotAllowed, &format!("not allowed: {}", "m".repeat(5_000)));
        assert_eq!(run.status, RunState::Rejected);
        assert!(run.sql.truncated && run.sql.text.len() <= REFUSED_QUERY_BYTES && sql.starts_with(&run.sql.text));
        assert_eq!(run.sql.bytes, sql.len() as u64);
        assert_eq!(run.sql.sha256, Some(format!("{:x}", Sha256::digest(sql.as_bytes()))));
        let result = run.result.as_ref().unwrap();
        assert!(result.rows.is_empty() && result.columns.is_empty());
        let message = &run.error.as_ref().unwrap().message;
        assert!(message.len() <= REFUSED_QUERY_BYTES + 64, "{} bytes", message.len());
        assert!(message.starts_with("not allowed: mmm") && message.ends_with("(message cut: 5013 bytes in all)"));
        assert_eq!(result.error.as_ref().unwrap().message, *message);

        // A short query and message are kept whole; a plan only while its JSON is short.
        let mut run = Run::example();
        run.plan = Some(serde_json::json!({"table": "tickets", "limit": "ten"}));
        run.refuse("", ErrorType::InvalidRequest, "invalid plan at /limit: not a number");
        assert!(run.plan.is_some() && !run.sql.truncated && run.sql.text.is_empty());
        assert_eq!(run.error.unwrap().message, "invalid plan at /limit: not a number");
        let mut run = Run::example();
        run.plan = Some(serde_json::json!({"table": "tickets", "where": "x".repeat(2_000)}));
        run.refuse("", ErrorType::InvalidRequest, "invalid plan: unknown field where");
        assert_eq!(run.plan, None, "a refused plan over REFUSED_QUERY_BYTES of JSON is not kept");
    }
}
