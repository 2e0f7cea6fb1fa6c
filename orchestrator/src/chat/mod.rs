//! The analyst agent: a question in words, answered with numbers from the data.
//!
//! A chat turn belongs to a thread, and a thread to one dataset. A message starting
//! `SQL:` runs that SQL and one starting `PLAN:` runs that JSON plan, with no model;
//! any other message goes to the model (`LLM_PROVIDER`), which may call three tools
//! bound to the thread's dataset — `run_sql`, `run_plan`, `describe_column` — within
//! strict budgets (model calls, queries, wall-clock). Every query takes the same
//! path as `POST /runs` ([`crate::runs::execute`]) and is recorded as a run linked to
//! its turn. The answer's numbers are checked against the turn's results
//! ([`grounding`]); the exact messages sent to the model are stored with the turn.
//!
//! A turn is owned by a task of its own: a client that goes away does not leave it
//! half-recorded. `/chat/stream` cancels the turn when its client disconnects (the
//! model request is dropped at once) and records it `cancelled`.

pub mod agent;
pub mod context;
pub mod grounding;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedSender;

use crate::error::Error;
use crate::runs::{self, Limits, Origin, Query, Run, RunState};
use crate::state::AppState;
use crate::store::{Thread, Turn};

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

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TurnDetails {
    pub query_mode: QueryMode,
    pub compiled_sql: Option<String>,
    pub plan_json: Option<Value>,
    pub attempts: Vec<Attempt>,
    pub llm: LlmUsage,
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

/// Validates a chat request and records its turn. Every refusal here (400, 404,
/// 409, 503) happens before anything is stored or streamed.
pub async fn prepare(state: &AppState, request: ChatRequest, client: Option<String>) -> Result<PreparedTurn, Error> {
    let chars = request.message.chars().count();
    if request.message.trim().is_empty() {
        return Err(Error::invalid("message must not be empty"));
    }
    if chars > MAX_MESSAGE_CHARS {
        return Err(Error::invalid(format!("message has {chars} characters; at most {MAX_MESSAGE_CHARS} are allowed")));
    }
    let dataset = state
        .catalog()
        .dataset(&request.dataset_id)
        .ok_or_else(|| state.catalog().unknown_dataset(&request.dataset_id))?;
    let (mode, body) = mode_of(&request.message);
    if mode == QueryMode::Chat && state.llm().is_none() {
        let status = crate::llm::LlmClient::status(&state.config().llm);
        let why = status.reason.unwrap_or_else(|| "no model is configured".into());
        return Err(Error::LlmNotConfigured(format!(
            "questions in words need a model ({why}): set OPENAI_API_KEY, or OPENAI_BASE_URL for any \
             OpenAI-compatible server, or ANTHROPIC_API_KEY. Messages starting with SQL: or PLAN: run without one"
        )));
    }
    let now = runs::now();
    let thread = match &request.thread_id {
        Some(id) => {
            let thread = state.store().thread(id).await?.ok_or_else(|| Error::ThreadNotFound(id.clone()))?;
            if thread.dataset_id != dataset.id {
                return Err(Error::ThreadDatasetConflict {
                    thread_id: id.clone(),
                    thread_dataset: thread.dataset_id,
                    requested: dataset.id.clone(),
                });
            }
            thread
        }
        None => {
            let thread = Thread {
                thread_id: uuid::Uuid::new_v4().to_string(),
                dataset_id: dataset.id.clone(),
                title: request.message.chars().take(80).collect(),
                created_at: now.clone(),
                updated_at: now.clone(),
            };
            state.store().create_thread(&thread).await?;
            thread
        }
    };
    let turn = Turn {
        turn_id: uuid::Uuid::new_v4().to_string(),
        thread_id: thread.thread_id.clone(),
        status: RunState::Running.as_str().to_string(),
        user_message: request.message.clone(),
        assistant_message: None,
        response: None,
        context: None,
        created_at: now,
        finished_at: None,
    };
    state.store().insert_turn(&turn).await?;
    Ok(PreparedTurn { turn, thread, mode, body, client })
}

/// `SQL: …` and `PLAN: …` (any case, leading blanks allowed) skip the model.
fn mode_of(message: &str) -> (QueryMode, String) {
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

/// Runs a prepared turn to its end and records it.
pub async fn run(state: &AppState, prepared: PreparedTurn, endpoint: &'static str, sink: ProgressSink) -> ChatResponse {
    let PreparedTurn { turn, thread, mode, body, client } = prepared;
    let origin = Origin { request_id: None, turn_id: Some(turn.turn_id.clone()), client };
    let outcome = match mode {
        QueryMode::Sql => direct(state, &thread, origin, Query::Sql(body), &sink).await,
        QueryMode::Plan => match serde_json::from_str::<Value>(&body) {
            Ok(plan) => direct(state, &thread, origin, Query::Plan(plan), &sink).await,
            Err(e) => Outcome::failed("INVALID_REQUEST", format!("the plan after PLAN: is not valid JSON: {e}")),
        },
        QueryMode::Chat => agent::answer(state, &thread, &turn, origin, &sink).await,
    };
    finish(state, turn, mode, outcome, endpoint).await
}

/// Records a turn that was cancelled (its client went away) or interrupted.
pub async fn record_cancelled(state: &AppState, turn: Turn, mode: QueryMode, endpoint: &'static str) {
    let runs = state.store().runs_of_turn(&turn.turn_id).await.unwrap_or_default();
    let outcome = Outcome {
        status: "cancelled".into(),
        assistant_message: String::new(),
        runs,
        error: Some(TurnError { error_type: "CANCELLED".into(), message: "the client went away".into() }),
        warnings: Vec::new(),
        llm: LlmUsage::default(),
        context: None,
    };
    finish(state, turn, mode, outcome, endpoint).await;
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

/// `SQL:` and `PLAN:` turns: one run, and a templated answer.
async fn direct(state: &AppState, thread: &Thread, origin: Origin, query: Query, sink: &ProgressSink) -> Outcome {
    sink.send(Progress::Status { stage: "running_query" });
    let limits = match Limits::new(state, None, None) {
        Ok(limits) => limits,
        Err(e) => return Outcome::failed(e.error_type(), e.to_string()),
    };
    match runs::execute(state, &thread.dataset_id, query, limits, origin).await {
        Ok(run) => {
            sink.send(tool_result(&run));
            let assistant_message = summarize(&run);
            let error = run
                .error
                .as_ref()
                .map(|e| TurnError { error_type: e.error_type.as_str().to_string(), message: e.message.clone() });
            Outcome {
                status: run.status.as_str().to_string(),
                assistant_message,
                runs: vec![run],
                error,
                warnings: Vec::new(),
                llm: LlmUsage::default(),
                context: None,
            }
        }
        Err(e) => Outcome::failed(e.error_type(), e.to_string()),
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

async fn finish(
    state: &AppState,
    mut turn: Turn,
    mode: QueryMode,
    outcome: Outcome,
    endpoint: &'static str,
) -> ChatResponse {
    let last_good = outcome.runs.iter().rev().find(|r| r.status == RunState::Succeeded);
    let compiled_sql = outcome.runs.last().map(|r| r.sql.text.clone());
    let plan_json = outcome.runs.last().and_then(|r| r.plan.clone());
    let response = ChatResponse {
        turn_id: turn.turn_id.clone(),
        thread_id: turn.thread_id.clone(),
        status: outcome.status.clone(),
        assistant_message: outcome.assistant_message.clone(),
        run_id: last_good.map(|r| r.run_id.clone()),
        result: last_good.map(|r| serde_json::to_value(r).map(|v| v["result"].clone()).unwrap_or(Value::Null)),
        error: outcome.error.clone(),
        details: TurnDetails {
            query_mode: mode,
            compiled_sql,
            plan_json,
            attempts: outcome
                .runs
                .iter()
                .map(|r| Attempt {
                    run_id: r.run_id.clone(),
                    status: r.status,
                    error_type: r.error.as_ref().map(|e| e.error_type),
                })
                .collect(),
            llm: outcome.llm.clone(),
        },
        warnings: outcome.warnings.clone(),
    };
    turn.status = outcome.status;
    turn.assistant_message = Some(outcome.assistant_message);
    turn.response = serde_json::to_value(&response).ok();
    turn.context = outcome.context;
    turn.finished_at = Some(runs::now());
    if let Err(e) = state.store().finish_turn(&turn).await {
        tracing::error!(error = %e, turn_id = %turn.turn_id, "cannot record the chat turn");
    }
    state
        .metrics()
        .chat_turns
        .get_or_create(&crate::metrics::TurnLabels { endpoint: endpoint.into(), status: turn.status.clone() })
        .inc();
    tracing::info!(turn_id = %turn.turn_id, thread_id = %turn.thread_id, status = %turn.status, "chat turn finished");
    response
}

/// `GET /threads/{id}/messages`: the thread's messages, oldest first.
pub async fn messages(state: &AppState, thread_id: &str, limit: usize) -> Result<Value, Error> {
    let thread = state.store().thread(thread_id).await?.ok_or_else(|| Error::ThreadNotFound(thread_id.to_string()))?;
    let turns = state.store().turns(thread_id, limit.div_ceil(2).max(1)).await?;
    let mut messages = Vec::new();
    for turn in turns {
        messages.push(json!({
            "role": "user", "content": turn.user_message, "turn_id": turn.turn_id, "created_at": turn.created_at,
        }));
        if let Some(answer) = &turn.assistant_message {
            let run_id = turn.response.as_ref().and_then(|r| r.get("run_id")).cloned().unwrap_or(Value::Null);
            messages.push(json!({
                "role": "assistant", "content": answer, "turn_id": turn.turn_id, "run_id": run_id,
                "status": turn.status, "created_at": turn.finished_at,
            }));
        }
    }
    let skip = messages.len().saturating_sub(limit);
    Ok(json!({ "thread_id": thread.thread_id, "dataset_id": thread.dataset_id, "messages": &messages[skip..] }))
}

/// `GET /chat/turns/{id}`: the turn, its runs and the exact context the model saw.
pub async fn turn_view(state: &AppState, turn_id: &str) -> Result<Value, Error> {
    let turn = state.store().turn(turn_id).await?.ok_or_else(|| Error::TurnNotFound(turn_id.to_string()))?;
    let runs = state.store().runs_of_turn(turn_id).await?;
    let attempts: Vec<_> = runs.iter().map(Run::summary).collect();
    Ok(json!({
        "turn_id": turn.turn_id,
        "thread_id": turn.thread_id,
        "status": turn.status,
        "user_message": turn.user_message,
        "assistant_message": turn.assistant_message,
        "created_at": turn.created_at,
        "finished_at": turn.finished_at,
        "response": turn.response,
        "attempts": attempts,
        "context": turn.context,
    }))
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
