//! Handlers of `/chat`, `/chat/stream`, `/chat/turns/{id}` and `/threads`.
//!
//! Both chat endpoints validate first (so a 400/404/409/503 is an HTTP error, not a
//! stream) and then run the turn in a task of its own. `/chat` awaits it: a client
//! that hangs up does not stop the turn from finishing and being recorded.
//! `/chat/stream` forwards the turn's progress as server-sent events and cancels the
//! turn when its client disconnects (the model request is dropped with it).

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, Authenticated, ListParams};
use crate::chat::{ChatRequest, ChatResponse, Progress, ProgressSink};
use crate::error::Error;
use crate::state::AppState;

/// Keep-alive comments on event streams.
pub const SSE_KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Threads listed when no limit is given, and at most.
const DEFAULT_THREADS: usize = 20;
const MAX_THREADS: usize = 200;

pub async fn chat(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(request): ApiJson<ChatRequest>,
) -> Result<Response, ApiError> {
    let prepared = state.chat().prepare(request, caller.principal, caller.client).await?;
    let chat = state.chat().clone();
    let task = tokio::spawn(async move { chat.run(prepared, "chat", ProgressSink::default()).await });
    let response = task.await.map_err(|e| Error::Internal(format!("the chat turn failed: {e}")))?;
    Ok(Json(response).into_response())
}

/// How often a chat stream checks that its caller's token still holds.
pub const CREDENTIALS_RECHECK: Duration = Duration::from_secs(1);

/// How a streamed turn ended.
enum Outcome {
    Finished(Box<ChatResponse>),
    ClientGone,
    /// The caller's token was revoked or expired while the turn ran.
    Unauthorized(String),
}

/// One server-sent event of a turn.
enum Streamed {
    Progress(Progress),
    Result(Box<ChatResponse>),
    Error { error_type: String, message: String },
    Done { turn_id: String },
}

pub async fn chat_stream(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(request): ApiJson<ChatRequest>,
) -> Result<Response, ApiError> {
    let principal = caller.principal.clone();
    let prepared = state.chat().prepare(request, caller.principal, caller.client).await?;
    let auth = state.auth().clone();
    let (events, receiver) = mpsc::unbounded_channel::<Streamed>();
    let (progress, mut progress_receiver) = mpsc::unbounded_channel::<Progress>();
    let turn = prepared.turn.clone();
    let mode = prepared.mode;
    let chat = state.chat().clone();
    tokio::spawn(async move {
        let turn_id = turn.turn_id.clone();
        // Boxed, so that it can be dropped (and the model request with it) before the
        // cancelled turn is recorded.
        let mut work = Box::pin(chat.run(prepared, "chat_stream", ProgressSink::new(progress)));
        // The stream outlives the request that opened it: its credentials are checked
        // again while it runs, and a revoked or expired token ends it.
        let mut recheck = tokio::time::interval(CREDENTIALS_RECHECK);
        recheck.tick().await;
        let outcome = loop {
            tokio::select! {
                response = work.as_mut() => break Outcome::Finished(Box::new(response)),
                Some(p) = progress_receiver.recv() => {
                    let _ = events.send(Streamed::Progress(p));
                }
                () = events.closed() => break Outcome::ClientGone,
                _ = recheck.tick() => {
                    if let Err(why) = auth.still_valid(&principal).await {
                        break Outcome::Unauthorized(why);
                    }
                }
            }
        };
        match outcome {
            Outcome::Unauthorized(why) => {
                drop(work);
                tracing::info!(turn_id = %turn_id, "chat stream ended: {why}");
                chat.record_cancelled(turn, mode, "chat_stream").await;
                let _ = events.send(Streamed::Error { error_type: "UNAUTHORIZED".into(), message: why });
                let _ = events.send(Streamed::Done { turn_id });
            }
            Outcome::Finished(response) => {
                // Progress sent just before the end goes out first.
                while let Ok(p) = progress_receiver.try_recv() {
                    let _ = events.send(Streamed::Progress(p));
                }
                if let Some(error) = &response.error
                    && response.run_id.is_none()
                {
                    let _ = events
                        .send(Streamed::Error { error_type: error.error_type.clone(), message: error.message.clone() });
                }
                let _ = events.send(Streamed::Result(response));
                let _ = events.send(Streamed::Done { turn_id });
            }
            Outcome::ClientGone => {
                // The client went away: `work` (and with it the model request) is
                // dropped here; runs already started finish on their own.
                drop(work);
                tracing::info!(turn_id = %turn_id, "chat stream client disconnected; turn cancelled");
                chat.record_cancelled(turn, mode, "chat_stream").await;
            }
        }
    });
    let sse = Sse::new(event_stream(receiver)).keep_alive(KeepAlive::new().interval(SSE_KEEP_ALIVE));
    let mut response = sse.into_response();
    let headers = response.headers_mut();
    headers.insert("cache-control", "no-cache".parse().expect("a valid header"));
    headers.insert("x-accel-buffering", "no".parse().expect("a valid header"));
    Ok(response)
}

fn event_stream(mut receiver: mpsc::UnboundedReceiver<Streamed>) -> impl Stream<Item = Result<Event, Infallible>> {
    async_stream::stream! {
        let mut id: u64 = 0;
        while let Some(streamed) = receiver.recv().await {
            id += 1;
            let last = matches!(streamed, Streamed::Done { .. });
            let (name, data) = match streamed {
                Streamed::Progress(Progress::Status { stage }) => ("status", json!({ "stage": stage })),
                Streamed::Progress(Progress::Token { content }) => ("token", json!({ "content": content })),
                Streamed::Progress(Progress::ToolCall { name, input }) => ("tool_call", json!({ "name": name, "input": input })),
                Streamed::Progress(Progress::ToolResult { run_id, status, row_count, error }) => (
                    "tool_result",
                    json!({ "run_id": run_id, "status": status, "row_count": row_count, "error": error }),
                ),
                Streamed::Result(response) => ("result", serde_json::to_value(*response).unwrap_or(Value::Null)),
                Streamed::Error { error_type, message } => ("error", json!({ "type": error_type, "message": message })),
                Streamed::Done { turn_id } => ("done", json!({ "turn_id": turn_id })),
            };
            yield Ok(Event::default().id(id.to_string()).event(name).data(data.to_string()));
            if last {
                break;
            }
        }
    }
}

pub async fn get_turn(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(turn_id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.chat().turn_view(&turn_id, &caller.principal).await?))
}

pub async fn list_threads(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = params?;
    let limit = params.limit.unwrap_or(DEFAULT_THREADS);
    if limit == 0 || limit > MAX_THREADS {
        return Err(Error::invalid(format!("limit must be between 1 and {MAX_THREADS}")).into());
    }
    let threads = state.chat().threads(limit, &caller.principal, params.all).await?;
    Ok(Json(json!({ "threads": threads })))
}

pub async fn thread_messages(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(thread_id): ApiPath<String>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = params?;
    let limit = params.limit.unwrap_or(50);
    if limit == 0 || limit > 500 {
        return Err(Error::invalid("limit must be between 1 and 500").into());
    }
    Ok(Json(state.chat().messages(&thread_id, limit, &caller.principal).await?))
}

pub async fn delete_thread(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(thread_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    state.chat().delete_thread(&thread_id, &caller.principal).await?;
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}
