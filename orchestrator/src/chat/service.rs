//! The chat service: validates a turn, runs it (directly for `SQL:`/`PLAN:`
//! messages, through the agent otherwise), and records it with its runs; reads
//! threads and turns back.
//!
//! A turn is owned by a task of its own (the HTTP layer spawns [`Chat::run`]): a
//! client that goes away does not leave it half-recorded.

use std::sync::Arc;

use serde_json::{Value, json};

use super::agent::{self, Services};
use super::turn::{
    Attempt, ChatRequest, ChatResponse, LlmUsage, MAX_MESSAGE_CHARS, Outcome, PreparedTurn, Progress, ProgressSink,
    QueryMode, TurnDetails, TurnError, mode_of, summarize, tool_result,
};
use crate::access::Principal;
use crate::config::{ChatConfig, LlmConfig};
use crate::error::Error;
use crate::llm::LlmClient;
use crate::metrics::TurnLabels;
use crate::runs::{Origin, Query, Runs};
use crate::store::{Run, RunState, Store, Thread, Turn, now};

/// The chat service. A cheap handle (an `Arc` inside).
#[derive(Clone)]
pub struct Chat {
    inner: Arc<Inner>,
}

struct Inner {
    runs: Runs,
    store: Arc<dyn Store>,
    llm: Option<LlmClient>,
    /// The model settings, for saying why there is no model.
    llm_config: LlmConfig,
    settings: ChatConfig,
}

impl Chat {
    /// Whether `principal` may use the dataset `id` (a curated one granted, an upload its own).
    fn catalog_may_use(&self, principal: &Principal, id: &str) -> bool {
        self.inner.runs.catalog().may_use(principal, id)
    }

    pub fn new(
        runs: Runs,
        store: Arc<dyn Store>,
        llm: Option<LlmClient>,
        llm_config: LlmConfig,
        settings: ChatConfig,
    ) -> Chat {
        Chat { inner: Arc::new(Inner { runs, store, llm, llm_config, settings }) }
    }

    /// Whether questions in words can be answered (a model is configured).
    pub fn has_model(&self) -> bool {
        self.inner.llm.is_some()
    }

    fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }

    /// The narrow pieces the agent may use.
    fn services(&self) -> Services<'_> {
        Services {
            runs: &self.inner.runs,
            store: self.inner.store.as_ref(),
            llm: self.inner.llm.as_ref(),
            settings: &self.inner.settings,
        }
    }

    /// Validates a chat request and records its turn. Every refusal here (400, 404,
    /// 409, 503) happens before anything is stored or streamed.
    pub async fn prepare(
        &self,
        request: ChatRequest,
        principal: Principal,
        client: Option<String>,
    ) -> Result<PreparedTurn, Error> {
        let chars = request.message.chars().count();
        if request.message.trim().is_empty() {
            return Err(Error::invalid("message must not be empty"));
        }
        if chars > MAX_MESSAGE_CHARS {
            return Err(Error::invalid(format!(
                "message has {chars} characters; at most {MAX_MESSAGE_CHARS} are allowed"
            )));
        }
        let catalog = self.inner.runs.catalog();
        let dataset = catalog.dataset_for(&request.dataset_id, &principal)?;
        let (mode, body) = mode_of(&request.message);
        if mode == QueryMode::Chat && self.inner.llm.is_none() {
            let status = LlmClient::status(&self.inner.llm_config);
            let why = status.reason.unwrap_or_else(|| "no model is configured".into());
            return Err(Error::LlmNotConfigured(format!(
                "questions in words need a model ({why}): set OPENAI_API_KEY, or OPENAI_BASE_URL for any \
                 OpenAI-compatible server, or ANTHROPIC_API_KEY. Messages starting with SQL: or PLAN: run without one"
            )));
        }
        // Admission before records: a client already at its share of run slots would
        // have its turn's queries refused; refuse the turn before storing anything.
        if let Some(client) = &client {
            drop(self.inner.runs.admission().admit(client)?);
        }
        let now = now();
        let thread = match &request.thread_id {
            Some(id) => {
                let thread = self.own_thread(id, &principal).await?;
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
                    principal: Some(principal.subject.clone()),
                };
                self.store().create_thread(&thread).await?;
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
        self.store().insert_turn(&turn).await?;
        Ok(PreparedTurn { turn, thread, mode, body, client, principal, channel: "chat" })
    }

    /// Runs a prepared turn to its end and records it.
    pub async fn run(&self, prepared: PreparedTurn, endpoint: &'static str, sink: ProgressSink) -> ChatResponse {
        let PreparedTurn { turn, thread, mode, body, client, principal, channel } = prepared;
        let origin = Origin { request_id: None, turn_id: Some(turn.turn_id.clone()), client, principal, channel };
        let outcome = match mode {
            QueryMode::Sql => self.direct(&thread, origin, Query::Sql(body), &sink).await,
            QueryMode::Plan => match serde_json::from_str::<Value>(&body) {
                Ok(plan) => self.direct(&thread, origin, Query::Plan(plan), &sink).await,
                Err(e) => Outcome::failed("INVALID_REQUEST", format!("the plan after PLAN: is not valid JSON: {e}")),
            },
            QueryMode::Chat => agent::answer(self.services(), &thread, &turn, origin, &sink).await,
        };
        self.finish(turn, mode, outcome, endpoint).await
    }

    /// Records a turn that was cancelled (its client went away) or interrupted.
    pub async fn record_cancelled(&self, turn: Turn, mode: QueryMode, endpoint: &'static str) {
        let runs = self.store().runs_of_turn(&turn.turn_id).await.unwrap_or_default();
        let outcome = Outcome {
            status: "cancelled".into(),
            assistant_message: String::new(),
            runs,
            error: Some(TurnError { error_type: "CANCELLED".into(), message: "the client went away".into() }),
            warnings: Vec::new(),
            llm: LlmUsage::default(),
            context: None,
        };
        self.finish(turn, mode, outcome, endpoint).await;
    }

    /// `SQL:` and `PLAN:` turns: one run, and a templated answer.
    async fn direct(&self, thread: &Thread, origin: Origin, query: Query, sink: &ProgressSink) -> Outcome {
        sink.send(Progress::Status { stage: "running_query" });
        let limits = match self.inner.runs.limits(None, None) {
            Ok(limits) => limits,
            Err(e) => return Outcome::failed(e.error_type(), e.to_string()),
        };
        match self.inner.runs.execute(&thread.dataset_id, query, limits, origin).await {
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

    async fn finish(&self, mut turn: Turn, mode: QueryMode, outcome: Outcome, endpoint: &'static str) -> ChatResponse {
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
                query_type: mode,
                sql: compiled_sql,
                plan: plan_json,
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
        turn.finished_at = Some(now());
        if let Err(e) = self.store().finish_turn(&turn).await {
            tracing::error!(error = %e, turn_id = %turn.turn_id, "cannot record the chat turn");
        }
        self.inner
            .runs
            .metrics()
            .chat_turns
            .get_or_create(&TurnLabels { endpoint: endpoint.into(), status: turn.status.clone() })
            .inc();
        tracing::info!(turn_id = %turn.turn_id, thread_id = %turn.thread_id, status = %turn.status, "chat turn finished");
        response
    }

    /// A thread `principal` may see; another's is answered as one that does not exist.
    async fn own_thread(&self, thread_id: &str, principal: &Principal) -> Result<Thread, Error> {
        match self.store().thread(thread_id).await? {
            Some(thread)
                if principal.may_see(thread.principal.as_deref())
                    && self.catalog_may_use(principal, &thread.dataset_id) =>
            {
                Ok(thread)
            }
            _ => Err(Error::ThreadNotFound(thread_id.to_string())),
        }
    }

    /// `GET /threads/{id}/messages`: the thread's messages, oldest first.
    pub async fn messages(&self, thread_id: &str, limit: usize, principal: &Principal) -> Result<Value, Error> {
        let thread = self.own_thread(thread_id, principal).await?;
        let turns = self.store().turns(thread_id, limit.div_ceil(2).max(1)).await?;
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
    pub async fn turn_view(&self, turn_id: &str, principal: &Principal) -> Result<Value, Error> {
        let turn = self.store().turn(turn_id).await?.ok_or_else(|| Error::TurnNotFound(turn_id.to_string()))?;
        // A turn is its thread's: another's is answered as one that does not exist.
        let thread = self.store().thread(&turn.thread_id).await?;
        let visible = thread.as_ref().is_some_and(|t| {
            principal.may_see(t.principal.as_deref()) && self.catalog_may_use(principal, &t.dataset_id)
        }) || (thread.is_none() && principal.may_see(None));
        if !visible {
            return Err(Error::TurnNotFound(turn_id.to_string()));
        }
        let runs = self.store().runs_of_turn(turn_id).await?;
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

    /// `GET /threads`: one's own threads (everyone's: `all`, for the admin), most
    /// recently updated first.
    pub async fn threads(&self, limit: usize, principal: &Principal, all: bool) -> Result<Vec<Thread>, Error> {
        let mut threads = self.store().threads(limit, principal.list_scope(all)?).await?;
        threads.retain(|thread| self.catalog_may_use(principal, &thread.dataset_id));
        Ok(threads)
    }

    /// `DELETE /threads/{id}`: the thread and its turns (its runs stay, as runs).
    pub async fn delete_thread(&self, thread_id: &str, principal: &Principal) -> Result<(), Error> {
        self.own_thread(thread_id, principal).await?;
        if self.store().delete_thread(thread_id).await? {
            Ok(())
        } else {
            Err(Error::ThreadNotFound(thread_id.to_string()))
        }
    }
}
