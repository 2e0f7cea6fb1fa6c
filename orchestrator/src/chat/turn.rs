//! A chat turn's vocabulary: the request, the response and its details, progress
//! events, and what a turn produced before it is recorded ([`Outcome`]); with the
//! service's own plain-words summary of a run ([`summarize`]).
//!
//! Pure data and pure functions: used by the service and the agent alike.

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
    /// Who asked, for MAX_RUNS_PER_CLIENT (set by the HTTP layer).
    pub client: Option<String>,
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
pub fn summarize(run: &Run) -> String {
    let Some(result) = run.result.as_ref().filter(|r| r.error.is_none()) else {
        return match &run.error {
            Some(e) => format!("The query did not run ({}): {}", e.error_type, e.message),
            None => "The query did not run.".to_string(),
        };
    };
    let cell = |v: &Value| match v {
        Value::Null => "NULL".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match (result.rows.as_slice(), result.columns.as_slice()) {
        ([row], [column]) => format!("{column}: {}", cell(&row[0])),
        ([row], columns) => {
            let pairs: Vec<String> = columns.iter().zip(row).map(|(c, v)| format!("{c} = {}", cell(v))).collect();
            format!("One row: {}.", pairs.join(", "))
        }
        (rows, columns) => {
            let more = if result.truncated { " (truncated)" } else { "" };
            let mut text = format!("{} rows{more} with columns {}.", rows.len(), columns.join(", "));
            if let Some(first) = rows.first() {
                let pairs: Vec<String> = columns.iter().zip(first).map(|(c, v)| format!("{c} = {}", cell(v))).collect();
                text.push_str(&format!(" First row: {}.", pairs.join(", ")));
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
}
