//! A chat turn's vocabulary: the request, the response and its details, progress
//! events, and what a turn produced before it is recorded ([`Outcome`]); with the
//! service's own plain-words summary of a run ([`summarize`]).
//!
//! Pure data and pure functions: used by the service and the agent alike.

use crate::access::Principal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedSender;

use crate::store::{Run, RunState, Thread, Turn};

/// Longest message accepted, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4000;
/// Messages of a thread's history the model sees.
pub const HISTORY_MESSAGES: usize = 12;

/// `POST /chat` and `POST /chat/stream`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    pub dataset_id: String,
    pub message: String,
    #[serde(default)]
    pub thread_id: Option<String>,
}

/// How a turn was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryMode {
    Sql,
    Plan,
    Chat,
}

/// One query of a turn, as the response lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub run_id: String,
    pub status: RunState,
    pub error_type: Option<protocol::ErrorType>,
}

/// What the model did in a turn.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LlmUsage {
    pub provider: Option<String>,
    pub model: Option<String>,
    pub steps: u32,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// How a turn ran, in the vocabulary of `POST /runs`' `details`: `query_type`
/// (`sql`, `plan`, or `chat` for a question the model answered), `sql` (the SQL of
/// the turn's last run) and `plan`.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnDetails {
    pub query_type: QueryMode,
    pub sql: Option<String>,
    pub plan: Option<Value>,
    pub attempts: Vec<Attempt>,
    pub llm: LlmUsage,
}

/// The wire form. `query_mode`, `compiled_sql` and `plan_json` are the names of
/// the first release, still written for one more release (deprecated; README,
/// "API"), with the same values.
impl Serialize for TurnDetails {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("TurnDetails", 8)?;
        s.serialize_field("query_type", &self.query_type)?;
        s.serialize_field("sql", &self.sql)?;
        s.serialize_field("plan", &self.plan)?;
        s.serialize_field("attempts", &self.attempts)?;
        s.serialize_field("llm", &self.llm)?;
        s.serialize_field("query_mode", &self.query_type)?;
        s.serialize_field("compiled_sql", &self.sql)?;
        s.serialize_field("plan_json", &self.plan)?;
        s.end()
    }
}

/// A warning attached to an answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Warning {
    #[serde(rename = "type")]
    pub warning_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Why a turn did not succeed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TurnError {
    #[serde(rename = "type")]
    pub error_type: String,
    pub message: String,
}

/// The body of `POST /chat` (and the `result` event of `/chat/stream`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatResponse {
    pub turn_id: String,
    pub thread_id: String,
    /// A run status (`succeeded`, `failed`, `rejected`, `timed_out`) or `cancelled`.
    pub status: String,
    pub assistant_message: String,
    /// The last successful run of the turn, as `POST /runs` returns it.
    pub run_id: Option<String>,
    pub result: Option<Value>,
    pub error: Option<TurnError>,
    pub details: TurnDetails,
    pub warnings: Vec<Warning>,
}

/// What `/chat/stream` reports while a turn runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    Status { stage: &'static str },
    Token { content: String },
    ToolCall { name: String, input: Value },
    ToolResult { run_id: Option<String>, status: String, row_count: Option<u64>, error: Option<Value> },
}

/// Where a turn sends its progress (nowhere, for `POST /chat`).
#[derive(Clone, Default)]
pub struct ProgressSink(Option<UnboundedSender<Progress>>);

impl ProgressSink {
    pub fn new(sender: UnboundedSender<Progress>) -> ProgressSink {
        ProgressSink(Some(sender))
    }

    pub fn send(&self, progress: Progress) {
        if let Some(sender) = &self.0 {
            let _ = sender.send(progress);
        }
    }

    pub fn streaming(&self) -> bool {
        self.0.is_some()
    }
}

/// A turn that passed validation: its thread exists (or was just created) and its
/// turn record says `running`.
pub struct PreparedTurn {
    pub turn: Turn,
    pub thread: Thread,
    pub mode: QueryMode,
    /// The message without its `SQL:` / `PLAN:` prefix.
    pub body: String,
    /// The fairness key, for MAX_RUNS_PER_CLIENT (set by the HTTP layer).
    pub client: Option<String>,
    /// Who asked: the turn's runs are theirs.
    pub principal: Principal,
    /// Where the turn was asked: `chat` (the HTTP routes) or `mcp` (the `ask` tool).
    pub channel: &'static str,
}

/// `SQL: …` and `PLAN: …` (any case, leading blanks allowed) skip the model.
pub fn mode_of(message: &str) -> (QueryMode, String) {
    let trimmed = message.trim_start();
    for (prefix, mode) in [("SQL:", QueryMode::Sql), ("PLAN:", QueryMode::Plan)] {
        if trimmed.len() >= prefix.len() && trimmed[..prefix.len()].eq_ignore_ascii_case(prefix) {
            return (mode, trimmed[prefix.len()..].trim().to_string());
        }
    }
    (QueryMode::Chat, message.to_string())
}

/// What a turn produced, before it is recorded.
pub struct Outcome {
    pub status: String,
    pub assistant_message: String,
    pub runs: Vec<Run>,
    pub error: Option<TurnError>,
    pub warnings: Vec<Warning>,
    pub llm: LlmUsage,
    /// The exact messages sent to the model (the last request, which holds the earlier ones).
    pub context: Option<Value>,
}

impl Outcome {
    pub fn failed(error_type: &str, message: impl Into<String>) -> Outcome {
        Outcome {
            status: RunState::Failed.as_str().into(),
            assistant_message: String::new(),
            runs: Vec::new(),
            error: Some(TurnError { error_type: error_type.into(), message: message.into() }),
            warnings: Vec::new(),
            llm: LlmUsage::default(),
            context: None,
        }
    }
}

/// The progress event of a finished run.
pub fn tool_result(run: &Run) -> Progress {
    Progress::ToolResult {
        run_id: Some(run.run_id.clone()),
        status: run.status.as_str().to_string(),
        row_count: run.result.as_ref().filter(|r| r.error.is_none()).map(|r| r.row_count),
        error: run.error.as_ref().map(|e| json!({ "type": e.error_type, "message": e.message })),
    }
}

/// A plain-words summary of a run's result, written by the service (no model).
///
/// Any shape is summarised, never indexed blindly: no rows, no columns, and rows
/// with fewer (or more) cells than there are columns, which a faulty or hostile
/// sandbox may return (a missing cell reads `(no value)`; extra cells are left out).
pub fn summarize(run: &Run) -> String {
    let Some(result) = run.result.as_ref().filter(|r| r.error.is_none()) else {
        return match &run.error {
            Some(e) => format!("The query did not run ({}): {}", e.error_type, e.message),
            None => "The query did not run.".to_string(),
        };
    };
    let columns = result.columns.as_slice();
    let cell = |row: &[Value], i: usize| match row.get(i) {
        None => "(no value)".to_string(),
        Some(Value::Null) => "NULL".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let pairs = |row: &[Value]| -> String {
        columns.iter().enumerate().map(|(i, c)| format!("{c} = {}", cell(row, i))).collect::<Vec<_>>().join(", ")
    };
    let more = if result.truncated { " (truncated)" } else { "" };
    match (result.rows.as_slice(), columns) {
        ([], []) => format!("No rows{more} and no columns."),
        (rows, []) => {
            let rows = if rows.len() == 1 { "One row".to_string() } else { format!("{} rows", rows.len()) };
            format!("{rows}{more} with no columns.")
        }
        ([row], [column]) => format!("{column}: {}", cell(row, 0)),
        ([row], _) => format!("One row: {}.", pairs(row)),
        (rows, _) => {
            let mut text = format!("{} rows{more} with columns {}.", rows.len(), columns.join(", "));
            if let Some(first) = rows.first() {
                text.push_str(&format!(" First row: {}.", pairs(first)));
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_choose_the_mode() {
        assert_eq!(mode_of("SQL: SELECT 1"), (QueryMode::Sql, "SELECT 1".to_string()));
        assert_eq!(mode_of("  sql:SELECT 1"), (QueryMode::Sql, "SELECT 1".to_string()));
        assert_eq!(mode_of("PLAN: {}"), (QueryMode::Plan, "{}".to_string()));
        assert_eq!(mode_of("How many SQL: tickets?").0, QueryMode::Chat);
        assert_eq!(mode_of("SQ").0, QueryMode::Chat);
    }

    fn run_with(columns: &[&str], rows: Vec<Vec<Value>>) -> Run {
        let columns = columns.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        let types = vec!["BIGINT".to_string(); columns.len()];
        let mut run = Run::example();
        run.finish_with(protocol::RunResult::success(columns, types, rows, false));
        run
    }

    #[test]
    fn every_result_shape_is_summarised_without_a_panic() {
        type Case = (&'static [&'static str], Vec<Vec<Value>>, &'static str);
        let cases: Vec<Case> = vec![
            (&["n"], vec![vec![json!(6000)]], "n: 6000"),
            (&["n"], vec![], "0 rows with columns n."),
            (&[], vec![], "No rows and no columns."),
            (&[], vec![vec![]], "One row with no columns."),
            (&[], vec![vec![], vec![]], "2 rows with no columns."),
            (&[], vec![vec![json!(1)]], "One row with no columns."),
            (&["n"], vec![vec![]], "n: (no value)"),
            (&["a", "b"], vec![vec![]], "One row: a = (no value), b = (no value)."),
            (&["a", "b"], vec![vec![json!(1)]], "One row: a = 1, b = (no value)."),
            (&["a"], vec![vec![json!(1), json!(2)]], "a: 1"),
            (&["a", "b"], vec![vec![], vec![]], "2 rows with columns a, b. First row: a = (no value), b = (no value)."),
            (&["a"], vec![vec![], vec![json!(null)]], "2 rows with columns a. First row: a = (no value)."),
        ];
        for (columns, rows, want) in cases {
            let run = run_with(columns, rows.clone());
            assert_eq!(summarize(&run), want, "columns {columns:?}, rows {rows:?}");
        }
    }
}
