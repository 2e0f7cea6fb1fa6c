//! The agent loop: ask the model, run the tools it calls in the sandbox, give it the
//! results (or the errors, with `did_you_mean` hints), until it answers or a budget
//! runs out.
//!
//! Budgets: `LLM_MAX_STEPS` model calls, `LLM_MAX_SQL_ATTEMPTS` queries,
//! `CHAT_TURN_TIMEOUT_SECONDS` for the whole turn. Past one, the turn ends `failed`
//! with `AGENT_STEP_LIMIT` (or `timed_out` with `TIMEOUT`), still returning the
//! last good result. Unknown tools, malformed arguments, empty replies go back to
//! the model as tool errors, within the budget.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::context;
use super::grounding::{self, Evidence};
use super::turn::{
    HISTORY_MESSAGES, LlmUsage, Outcome, Progress, ProgressSink, TurnError, Warning, summarize, tool_result,
};
use crate::config::{ChatConfig, DataExposure};
use crate::error::Error;
use crate::llm::{LlmClient, LlmError, Message, ModelReply, ModelRequest, Role, ToolCall};
use crate::metrics::{LlmLabels, ProviderLabels, TokenLabels};
use crate::runs::{Origin, Query, Runs};
use crate::store::{Run, RunState, Store, Thread, Turn};

/// What the agent may use: the narrow pieces of the chat service.
#[derive(Clone, Copy)]
pub struct Services<'a> {
    pub runs: &'a Runs,
    pub store: &'a dyn Store,
    pub llm: Option<&'a LlmClient>,
    pub settings: &'a ChatConfig,
}

/// Tokens a reply may have.
const MAX_REPLY_TOKENS: u32 = 1024;

/// Answers a question in words.
pub async fn answer(
    services: Services<'_>,
    thread: &Thread,
    turn: &Turn,
    origin: Origin,
    sink: &ProgressSink,
) -> Outcome {
    let timeout = Duration::from_secs_f64(services.settings.chat_turn_timeout_seconds);
    let mut agent = match Agent::new(services, thread, turn, origin, sink).await {
        Ok(agent) => agent,
        Err(outcome) => return *outcome,
    };
    let deadline = Instant::now() + timeout;
    match tokio::time::timeout_at(deadline.into(), agent.run()).await {
        Ok(()) => agent.outcome,
        Err(_) => {
            agent.end(
                RunState::TimedOut.as_str(),
                "TIMEOUT",
                format!("the turn did not finish within CHAT_TURN_TIMEOUT_SECONDS={}", timeout.as_secs_f64()),
            );
            agent.outcome
        }
    }
}

struct Agent<'a> {
    services: Services<'a>,
    thread: &'a Thread,
    origin: Origin,
    sink: &'a ProgressSink,
    request: ModelRequest,
    exposure: DataExposure,
    question: String,
    /// Every column and table name of the dataset, for `did_you_mean`.
    names: Vec<String>,
    queries: u32,
    outcome: Outcome,
}

impl<'a> Agent<'a> {
    async fn new(
        services: Services<'a>,
        thread: &'a Thread,
        turn: &Turn,
        origin: Origin,
        sink: &'a ProgressSink,
    ) -> Result<Agent<'a>, Box<Outcome>> {
        sink.send(Progress::Status { stage: "preparing" });
        let chat = services.settings;
        let dataset = services
            .runs
            .catalog()
            .dataset(&thread.dataset_id)
            .ok_or_else(|| Box::new(Outcome::failed("UNKNOWN_DATASET", "the thread's dataset is gone")))?;
        let schema = services
            .runs
            .schema(&dataset.id)
            .await
            .map_err(|e| Box::new(Outcome::failed(e.error_type(), e.to_string())))?;
        // The last HISTORY_MESSAGES messages: half as many earlier turns (each is a
        // question and an answer), not counting this one.
        let earlier = services
            .store
            .turns(&thread.thread_id, HISTORY_MESSAGES / 2 + 1)
            .await
            .map_err(|e| Box::new(Outcome::failed("STORE_UNAVAILABLE", e.to_string())))?;
        let earlier: Vec<Turn> = earlier.into_iter().filter(|t| t.turn_id != turn.turn_id).collect();
        let skip = earlier.len().saturating_sub(HISTORY_MESSAGES / 2);

        let mut messages =
            vec![Message::user(context::dataset_message(&dataset.description, &schema, chat.llm_data_exposure))];
        messages.push(Message::assistant("Understood. I will query only this dataset.", Vec::new()));
        messages.extend(context::history(&earlier[skip..]));
        messages.push(Message::user(turn.user_message.clone()));

        let mut names: Vec<String> = Vec::new();
        for table in &schema.tables {
            names.push(table.name.clone());
            names.extend(table.columns.iter().map(|c| c.name.clone()));
        }
        let llm = services.llm.map(|c| (c.provider().to_string(), c.model().to_string()));
        Ok(Agent {
            services,
            thread,
            origin,
            sink,
            request: ModelRequest {
                system: context::system_prompt(&dataset.id, chat.llm_data_exposure, chat.llm_max_sql_attempts),
                messages,
                tools: context::tools(),
                max_tokens: MAX_REPLY_TOKENS,
            },
            exposure: chat.llm_data_exposure,
            question: turn.user_message.clone(),
            names,
            queries: 0,
            outcome: Outcome {
                status: RunState::Running.as_str().into(),
                assistant_message: String::new(),
                runs: Vec::new(),
                error: None,
                warnings: Vec::new(),
                llm: LlmUsage {
                    provider: llm.as_ref().map(|l| l.0.clone()),
                    model: llm.map(|l| l.1),
                    ..LlmUsage::default()
                },
                context: None,
            },
        })
    }

    async fn run(&mut self) {
        let chat = self.services.settings;
        loop {
            if self.outcome.llm.steps >= chat.llm_max_steps {
                let message = format!("the model did not answer within LLM_MAX_STEPS={} calls", chat.llm_max_steps);
                return self.end(RunState::Failed.as_str(), "AGENT_STEP_LIMIT", message);
            }
            self.sink.send(Progress::Status { stage: "thinking" });
            let reply = match self.ask().await {
                Ok(reply) => reply,
                Err(e) => return self.model_failed(&e),
            };
            if reply.tool_calls.is_empty() {
                if reply.text.trim().is_empty() {
                    self.request.messages.push(Message::assistant(String::new(), Vec::new()));
                    self.request.messages.push(Message::user(
                        "Your reply was empty. Call a tool, or answer the question in words.".to_string(),
                    ));
                    continue;
                }
                return self.answered(reply.text);
            }
            self.request.messages.push(Message::assistant(reply.text.clone(), reply.tool_calls.clone()));
            for call in &reply.tool_calls {
                let content = match self.call_tool(call).await {
                    Ok(content) => content,
                    Err(stop) => return stop,
                };
                self.request.messages.push(Message::tool_result(call.id.clone(), content.to_string()));
            }
        }
    }

    /// One model call, streamed when the turn streams.
    async fn ask(&mut self) -> Result<ModelReply, LlmError> {
        let client = self.services.llm.expect("chat mode is only entered with a model").clone();
        self.outcome.llm.steps += 1;
        self.outcome.context = Some(request_json(&self.request));
        let started = Instant::now();
        let reply = if self.sink.streaming() {
            let sink = self.sink.clone();
            let mut on_text = move |text: &str| sink.send(Progress::Token { content: text.to_string() });
            client.complete_streaming(&self.request, &mut on_text).await
        } else {
            client.complete(&self.request).await
        };
        let metrics = self.services.runs.metrics();
        let provider = client.provider().to_string();
        let outcome = match &reply {
            Ok(_) => "ok",
            Err(e) => e.error_type(),
        };
        metrics.llm_requests.get_or_create(&LlmLabels { provider: provider.clone(), outcome: outcome.into() }).inc();
        metrics.llm_duration.get_or_create(&ProviderLabels { provider }).observe(started.elapsed().as_secs_f64());
        if let Ok(reply) = &reply {
            self.outcome.llm.input_tokens += reply.usage.input_tokens;
            self.outcome.llm.output_tokens += reply.usage.output_tokens;
            metrics
                .llm_tokens
                .get_or_create(&TokenLabels { direction: "input".into() })
                .inc_by(reply.usage.input_tokens);
            metrics
                .llm_tokens
                .get_or_create(&TokenLabels { direction: "output".into() })
                .inc_by(reply.usage.output_tokens);
        }
        reply
    }

    /// Runs one tool call; `Err` ends the turn (a budget ran out).
    async fn call_tool(&mut self, call: &ToolCall) -> Result<Value, ()> {
        let input: Value =
            match serde_json::from_str(if call.arguments.trim().is_empty() { "{}" } else { &call.arguments }) {
                Ok(value @ Value::Object(_)) => value,
                Ok(_) | Err(_) => {
                    self.sink.send(Progress::ToolCall {
                        name: call.name.clone(),
                        input: Value::String(call.arguments.clone()),
                    });
                    return Ok(tool_error(&format!(
                        "the arguments of {} are not a JSON object: {}",
                        call.name,
                        truncate(&call.arguments, 200)
                    )));
                }
            };
        self.sink.send(Progress::ToolCall { name: call.name.clone(), input: input.clone() });
        let query = match call.name.as_str() {
            "run_sql" => match input.get("sql").and_then(Value::as_str) {
                Some(sql) if !sql.trim().is_empty() => Query::Sql(sql.to_string()),
                _ => return Ok(tool_error("run_sql needs {\"sql\": \"SELECT ...\"}")),
            },
            "run_plan" => match input.get("plan") {
                Some(plan) => Query::Plan(plan.clone()),
                None => return Ok(tool_error("run_plan needs {\"plan\": {...}} (see its schema)")),
            },
            "describe_column" => return Ok(self.describe_column(&input).await),
            other => {
                return Ok(tool_error(&format!(
                    "there is no tool {other:?}; the tools are run_sql, run_plan and describe_column"
                )));
            }
        };
        let chat = self.services.settings;
        if self.queries >= chat.llm_max_sql_attempts {
            let message = format!("the model used its LLM_MAX_SQL_ATTEMPTS={} queries", chat.llm_max_sql_attempts);
            self.end(RunState::Failed.as_str(), "AGENT_STEP_LIMIT", message);
            return Err(());
        }
        self.queries += 1;
        self.sink.send(Progress::Status { stage: "running_query" });
        let sql_text = match &query {
            Query::Sql(sql) => sql.clone(),
            Query::Plan(_) => String::new(),
        };
        let run = match self.execute(query).await {
            Ok(run) => run,
            Err(e) => return Ok(tool_error(&e.to_string())),
        };
        self.sink.send(tool_result(&run));
        let content = self.run_content(&run, &sql_text);
        self.outcome.runs.push(run);
        Ok(content)
    }

    async fn execute(&self, query: Query) -> Result<Run, Error> {
        let runs = self.services.runs;
        let limits = runs.limits(None, None)?;
        runs.execute(&self.thread.dataset_id, query, limits, self.origin.clone()).await
    }

    /// What the model is told about a run.
    fn run_content(&self, run: &Run, sql: &str) -> Value {
        match (&run.result, &run.error) {
            (Some(result), None) => {
                let mut content = json!({
                    "run_id": run.run_id,
                    "status": run.status,
                    "columns": result.columns,
                    "column_types": result.column_types,
                    "row_count": result.row_count,
                    "truncated": result.truncated,
                });
                if self.exposure == DataExposure::Results {
                    let rows = self.services.settings.llm_result_rows;
                    content["rows"] = json!(result.rows.iter().take(rows).collect::<Vec<_>>());
                }
                content
            }
            (_, Some(error)) => {
                let unknown = context::unknown_names(&error.message, sql, &self.names);
                let mut did_you_mean: Vec<String> = Vec::new();
                for name in unknown {
                    for close in context::close_names(&name, &self.names) {
                        if !did_you_mean.contains(&close) {
                            did_you_mean.push(close);
                        }
                    }
                }
                let message = if self.exposure == DataExposure::Schema {
                    // An execution error can quote a cell ("cannot cast 'abc'"): keep its type only.
                    match error.error_type {
                        protocol::ErrorType::SqlExecutionError | protocol::ErrorType::DatasetError => {
                            format!("the query failed while running ({})", error.error_type)
                        }
                        _ => error.message.clone(),
                    }
                } else {
                    error.message.clone()
                };
                json!({
                    "run_id": run.run_id,
                    "status": run.status,
                    "error_type": error.error_type,
                    "message": message,
                    "did_you_mean": did_you_mean,
                })
            }
            (None, None) => tool_error("the run produced no result"),
        }
    }

    /// `describe_column`: computed in the sandbox, as recorded runs.
    async fn describe_column(&mut self, input: &Value) -> Value {
        let (Some(table), Some(column)) =
            (input.get("table").and_then(Value::as_str), input.get("column").and_then(Value::as_str))
        else {
            return tool_error("describe_column needs {\"table\", \"column\"}");
        };
        let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
        let (t, c) = (quote(table), quote(column));
        let stats_sql = format!(
            "SELECT COUNT(*) - COUNT({c}) AS null_count, COUNT(DISTINCT {c}) AS distinct_count, \
             MIN({c}) AS min, MAX({c}) AS max FROM {t}"
        );
        let stats = match self.execute(Query::Sql(stats_sql.clone())).await {
            Ok(run) => run,
            Err(e) => return tool_error(&e.to_string()),
        };
        self.sink.send(tool_result(&stats));
        let Some(result) = stats.result.as_ref().filter(|r| r.error.is_none()) else {
            let content = self.run_content(&stats, &stats_sql);
            self.outcome.runs.push(stats);
            return content;
        };
        let row = result.rows.first().cloned().unwrap_or_default();
        let mut content = json!({
            "table": table, "column": column,
            "null_count": row.first(), "distinct_count": row.get(1),
        });
        self.outcome.runs.push(stats.clone());
        if self.exposure != DataExposure::Schema {
            content["min"] = row.get(2).cloned().unwrap_or(Value::Null);
            content["max"] = row.get(3).cloned().unwrap_or(Value::Null);
            let top_sql = format!("SELECT {c} AS value, COUNT(*) AS n FROM {t} GROUP BY {c} ORDER BY n DESC LIMIT 5");
            if let Ok(top) = self.execute(Query::Sql(top_sql)).await {
                self.sink.send(tool_result(&top));
                if let Some(rows) = top.result.as_ref().filter(|r| r.error.is_none()).map(|r| r.rows.clone()) {
                    content["top_values"] = json!(rows);
                }
                self.outcome.runs.push(top);
            }
        }
        content
    }

    /// The model answered: check its numbers and finish.
    fn answered(&mut self, text: String) {
        let mut evidence = Evidence::default();
        evidence.add_text(&self.question);
        for run in &self.outcome.runs {
            if let Some(result) = run.result.as_ref().filter(|r| r.error.is_none()) {
                evidence.add_value(result.row_count as f64);
                for row in &result.rows {
                    row.iter().for_each(|cell| evidence.add_cell(cell));
                }
            }
        }
        for value in grounding::ungrounded(&text, &evidence) {
            self.outcome.warnings.push(Warning {
                warning_type: "UNGROUNDED_NUMBER",
                value: Some(value),
                message: None,
            });
        }
        self.outcome.assistant_message = text;
        self.outcome.status = match self.outcome.runs.iter().rev().find(|r| r.status != RunState::Running) {
            // The answer stands on its last query: a failed last query is a failed turn
            // unless an earlier one succeeded.
            Some(last)
                if last.status != RunState::Succeeded
                    && !self.outcome.runs.iter().any(|r| r.status == RunState::Succeeded) =>
            {
                last.status.as_str().into()
            }
            _ => RunState::Succeeded.as_str().into(),
        };
    }

    fn model_failed(&mut self, e: &LlmError) {
        let succeeded = self.outcome.runs.iter().rev().find(|r| r.status == RunState::Succeeded).cloned();
        match succeeded {
            Some(run) => {
                // The data is there: answer with the service's own summary.
                self.outcome.assistant_message = summarize(&run);
                self.outcome.status = RunState::Succeeded.as_str().into();
                self.outcome.warnings.push(Warning {
                    warning_type: "LLM_SUMMARY_FAILED",
                    value: None,
                    message: Some(format!(
                        "the model failed ({}); this answer is the service's summary",
                        e.error_type()
                    )),
                });
            }
            None => self.end(RunState::Failed.as_str(), e.error_type(), e.to_string()),
        }
    }

    /// Ends the turn with an error, keeping any result it has.
    fn end(&mut self, status: &str, error_type: &str, message: String) {
        self.outcome.status = status.to_string();
        if self.outcome.assistant_message.is_empty() {
            self.outcome.assistant_message =
                match self.outcome.runs.iter().rev().find(|r| r.status == RunState::Succeeded) {
                    Some(run) => format!("{} ({message})", summarize(run)),
                    None => format!("No answer: {message}."),
                };
        }
        self.outcome.error = Some(TurnError { error_type: error_type.to_string(), message });
    }
}

fn tool_error(message: &str) -> Value {
    json!({ "error_type": "TOOL_ERROR", "message": message })
}

fn truncate(text: &str, chars: usize) -> String {
    let mut cut: String = text.chars().take(chars).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut
}

/// The request as the model received it, for the turn's record.
fn request_json(request: &ModelRequest) -> Value {
    json!({
        "system": request.system,
        "messages": request.messages.iter().map(|m| json!({
            "role": match m.role { Role::User => "user", Role::Assistant => "assistant", Role::Tool => "tool" },
            "content": m.content,
            "tool_calls": m.tool_calls.iter().map(|c| json!({"id": c.id, "name": c.name, "arguments": c.arguments})).collect::<Vec<_>>(),
            "tool_call_id": m.tool_call_id,
        })).collect::<Vec<_>>(),
        "tools": request.tools.iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
    })
}
